//! The risk rule: is the browser asking to log in plausibly next to the
//! phone approving it? Decided once, inside the scan's atomic step (the
//! memory store calls [`assess`]; the Redis store's `scan.lua` is a line-by-
//! line copy, and the contract suite holds both to the same verdicts).

use crate::place::{Coords, Place};
use crate::store::network_of;
use serde::{Deserialize, Serialize};

/// Default for `--risk-distance-km`: farther than a long commute, nearer
/// than most neighbouring capitals (GeoIP city accuracy is tens of km).
pub const DEFAULT_MAX_DISTANCE_KM: u32 = 500;

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    High,
}

impl RiskLevel {
    /// The snake_case name (the API's and the Redis record's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::High => "high",
        }
    }
}

/// Why a verdict is high, in this fixed order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RiskReason {
    /// Both countries are known and differ.
    OtherCountry,
    /// Both places have coordinates farther apart than the limit.
    FarAway,
    /// The browser's network is a hosting provider, VPN, proxy or Tor exit.
    HostingNetwork,
    /// Browser and phone are on different networks: different AS numbers,
    /// or (where an AS is unknown) different /24s or /64s.
    OtherNetwork,
}

impl RiskReason {
    pub const ALL: [RiskReason; 4] = [
        RiskReason::OtherCountry,
        RiskReason::FarAway,
        RiskReason::HostingNetwork,
        RiskReason::OtherNetwork,
    ];

    /// The snake_case name (the API's and the Redis record's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            RiskReason::OtherCountry => "other_country",
            RiskReason::FarAway => "far_away",
            RiskReason::HostingNetwork => "hosting_network",
            RiskReason::OtherNetwork => "other_network",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A verdict and its reasons (empty exactly when low).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Risk {
    pub level: RiskLevel,
    pub reasons: Vec<RiskReason>,
}

impl Risk {
    /// The verdict of these reasons: high when there is any.
    pub fn of(reasons: Vec<RiskReason>) -> Self {
        let level = if reasons.is_empty() {
            RiskLevel::Low
        } else {
            RiskLevel::High
        };
        Self { level, reasons }
    }

    pub fn is_high(&self) -> bool {
        self.level == RiskLevel::High
    }
}

/// What the scan compares the stored browser place with: the phone's
/// place and network, and the distance limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskCheck {
    pub phone: Place,
    /// [`network_key`] of the phone.
    pub phone_network: String,
    pub max_distance_km: u32,
}

/// The network an address counts as on for the rule: `AS<number>` when the
/// database knows it, else its /24 or /64 ([`network_of`]).
pub fn network_key(place: &Place, ip: &str) -> String {
    match place.asn {
        Some(asn) => format!("AS{asn}"),
        None => network_of(ip),
    }
}

/// Great-circle distance in km (haversine, mean Earth radius 6371 km).
/// `scan.lua` computes the same expression in the same order.
pub fn distance_km(a: Coords, b: Coords) -> f64 {
    let rad = std::f64::consts::PI / 180.0;
    let lat1 = a.lat_e6 as f64 / 1e6;
    let lon1 = a.lon_e6 as f64 / 1e6;
    let lat2 = b.lat_e6 as f64 / 1e6;
    let lon2 = b.lon_e6 as f64 / 1e6;
    let dlat = (lat2 - lat1) * rad;
    let dlon = (lon2 - lon1) * rad;
    let s1 = (dlat / 2.0).sin();
    let s2 = (dlon / 2.0).sin();
    let h = s1 * s1 + (lat1 * rad).cos() * (lat2 * rad).cos() * s2 * s2;
    2.0 * 6371.0 * h.sqrt().min(1.0).asin()
}

/// The rule. High when any of: both countries known and different; both
/// coordinates known and more than `max_km` apart; the browser's network
/// is a hosting provider/anonymiser; the networks ([`network_key`]) differ.
pub fn assess(
    browser: &Place,
    browser_network: &str,
    phone: &Place,
    phone_network: &str,
    max_km: u32,
) -> Risk {
    let mut reasons = Vec::new();
    if let (Some(b), Some(p)) = (&browser.country_code, &phone.country_code) {
        if b != p {
            reasons.push(RiskReason::OtherCountry);
        }
    }
    if let (Some(b), Some(p)) = (browser.coords, phone.coords) {
        if distance_km(b, p) > max_km as f64 {
            reasons.push(RiskReason::FarAway);
        }
    }
    if browser.hosting {
        reasons.push(RiskReason::HostingNetwork);
    }
    if browser_network != phone_network {
        reasons.push(RiskReason::OtherNetwork);
    }
    Risk::of(reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(cc: &str, lat: f64, lon: f64, asn: u32) -> Place {
        Place {
            country_code: Some(cc.into()),
            coords: Coords::from_degrees(lat, lon),
            asn: Some(asn),
            ..Place::default()
        }
    }

    fn verdict(b: &Place, b_ip: &str, p: &Place, p_ip: &str) -> Risk {
        assess(
            b,
            &network_key(b, b_ip),
            p,
            &network_key(p, p_ip),
            DEFAULT_MAX_DISTANCE_KM,
        )
    }

    #[test]
    fn distances_are_haversine() {
        let berlin = Coords::from_degrees(52.52, 13.405).unwrap();
        let amsterdam = Coords::from_degrees(52.3676, 4.9041).unwrap();
        let d = distance_km(berlin, amsterdam);
        assert!((d - 577.0).abs() < 5.0, "{d}");
        assert_eq!(distance_km(berlin, berlin), 0.0);
        let antipode = Coords::from_degrees(-52.52, -166.595).unwrap();
        assert!((distance_km(berlin, antipode) - 20_015.0).abs() < 5.0);
    }

    #[test]
    fn same_city_same_network_is_low() {
        let a = place("DE", 52.52, 13.405, 64500);
        let r = verdict(&a, "192.0.2.1", &a, "198.51.100.1");
        assert_eq!(r, Risk::of(vec![]));
        assert_eq!(r.level, RiskLevel::Low);
    }

    #[test]
    fn every_reason_fires_alone() {
        let berlin = place("DE", 52.52, 13.405, 64500);
        let mut amsterdam = place("NL", 52.3676, 4.9041, 64500);
        assert_eq!(
            verdict(&amsterdam, "192.0.2.1", &berlin, "192.0.2.2").reasons,
            vec![RiskReason::OtherCountry, RiskReason::FarAway]
        );
        // Near, but across a border (Aachen / Vaals).
        let aachen = place("DE", 50.7753, 6.0839, 64500);
        let vaals = place("NL", 50.7703, 6.0181, 64500);
        assert_eq!(
            verdict(&vaals, "192.0.2.1", &aachen, "192.0.2.2").reasons,
            vec![RiskReason::OtherCountry]
        );
        // Far, same country (Munich / Hamburg is ~610 km).
        let munich = place("DE", 48.1351, 11.582, 64500);
        let hamburg = place("DE", 53.5511, 9.9937, 64500);
        assert_eq!(
            verdict(&munich, "192.0.2.1", &hamburg, "192.0.2.2").reasons,
            vec![RiskReason::FarAway]
        );
        amsterdam = berlin.clone();
        amsterdam.hosting = true;
        assert_eq!(
            verdict(&amsterdam, "192.0.2.1", &berlin, "192.0.2.2").reasons,
            vec![RiskReason::HostingNetwork]
        );
        let other_as = place("DE", 52.52, 13.405, 64501);
        assert_eq!(
            verdict(&other_as, "192.0.2.1", &berlin, "192.0.2.2").reasons,
            vec![RiskReason::OtherNetwork]
        );
    }

    /// Unknown places decide nothing by themselves; without AS numbers the
    /// networks are the /24s, as on-risk number matching compares them.
    #[test]
    fn unknown_places_fall_back_to_prefixes() {
        let none = Place::default();
        assert_eq!(
            verdict(&none, "192.0.2.1", &none, "192.0.2.200").level,
            RiskLevel::Low
        );
        assert_eq!(
            verdict(&none, "192.0.2.1", &none, "198.51.100.1").reasons,
            vec![RiskReason::OtherNetwork]
        );
        let berlin = place("DE", 52.52, 13.405, 64500);
        assert_eq!(
            verdict(&none, "192.0.2.1", &berlin, "192.0.2.2").reasons,
            vec![RiskReason::OtherNetwork],
            "AS64500 is not 192.0.2.0/24"
        );
    }

    #[test]
    fn reasons_round_trip_by_name() {
        for r in RiskReason::ALL {
            assert_eq!(RiskReason::parse(r.as_str()), Some(r));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        assert_eq!(RiskReason::parse("nope"), None);
    }
}
