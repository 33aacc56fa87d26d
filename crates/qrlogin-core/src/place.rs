//! Where an address is, as far as the operator's GeoIP database knows: the
//! phone shows the browser's place beside its own, and the risk rule
//! ([`crate::risk`]) compares them.

use serde::{Deserialize, Serialize};

/// A point on the globe in millionths of a degree. Integers, not floats,
/// so a place stores and compares exactly (and round-trips through the
/// Redis record's decimal text and Lua's numbers without drift).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coords {
    pub lat_e6: i32,
    pub lon_e6: i32,
}

impl Coords {
    /// From degrees, rounded to the nearest millionth.
    pub fn from_degrees(lat: f64, lon: f64) -> Option<Self> {
        let ok = |v: f64, max: f64| v.is_finite() && v.abs() <= max;
        (ok(lat, 90.0) && ok(lon, 180.0)).then(|| Self {
            lat_e6: (lat * 1e6).round() as i32,
            lon_e6: (lon * 1e6).round() as i32,
        })
    }
}

/// An address's approximate place and network. Every field is optional:
/// databases differ in what they hold (DB-IP Lite City has no network,
/// GeoLite2-ASN has no city) and private addresses are in none of them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Place {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The country's English name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// ISO 3166-1 alpha-2, what the risk rule compares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coords: Option<Coords>,
    /// Autonomous system number of the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    /// The network's organisation (the AS's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// The database marks the network as a hosting provider, VPN, proxy or
    /// Tor exit: somewhere a browser of a real user rarely is.
    #[serde(default)]
    pub hosting: bool,
}

impl Place {
    /// Whether the database knew anything at all about the address.
    pub fn is_known(&self) -> bool {
        self.city.is_some()
            || self.region.is_some()
            || self.country.is_some()
            || self.country_code.is_some()
            || self.coords.is_some()
            || self.asn.is_some()
    }

    /// "Amsterdam, Netherlands" — city (else region) and country, for the
    /// phone's sentence; `None` when neither is known.
    pub fn describe(&self) -> Option<String> {
        let country = self.country.as_deref().or(self.country_code.as_deref());
        let local = self.city.as_deref().or(self.region.as_deref());
        match (local, country) {
            (Some(l), Some(c)) => Some(format!("{l}, {c}")),
            (Some(l), None) => Some(l.to_string()),
            (None, Some(c)) => Some(c.to_string()),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_and_coordinates() {
        let mut p = Place::default();
        assert_eq!(p.describe(), None);
        assert!(!p.is_known());
        p.country = Some("Netherlands".into());
        assert_eq!(p.describe().as_deref(), Some("Netherlands"));
        p.city = Some("Amsterdam".into());
        assert_eq!(p.describe().as_deref(), Some("Amsterdam, Netherlands"));
        assert!(p.is_known());
        assert_eq!(
            Coords::from_degrees(52.3676, 4.9041),
            Some(Coords {
                lat_e6: 52_367_600,
                lon_e6: 4_904_100
            })
        );
        assert_eq!(Coords::from_degrees(91.0, 0.0), None);
        assert_eq!(Coords::from_degrees(f64::NAN, 0.0), None);
    }
}
