//! What the phone is told about where the login comes from: the browser's
//! place and network beside the phone's own, a plain sentence saying
//! whether they differ, and (with `--geoip-db`) the scan's risk verdict.

use qrlogin_core::risk::network_key;
use qrlogin_core::{network_of, LoginRecord, Place};
use serde::Serialize;
use std::net::IpAddr;

/// One side's place, as far as the database knows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PlaceInfo {
    /// "Amsterdam, Netherlands"; absent when the database has no place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// ISO 3166-1 alpha-2.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_code: Option<String>,
    /// "AS64500 Example Net" when the database knows the network, else the
    /// address's /24 or /64.
    pub network: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// A hosting provider, VPN, proxy or Tor exit, says the database.
    pub hosting: bool,
}

impl PlaceInfo {
    fn of(place: &Place, ip: &str) -> Self {
        let network = match (place.asn, &place.org) {
            (Some(a), Some(o)) => format!("AS{a} {o}"),
            (Some(a), None) => format!("AS{a}"),
            _ => network_of(ip),
        };
        Self {
            text: place.describe(),
            city: place.city.clone(),
            region: place.region.clone(),
            country: place.country.clone(),
            country_code: place.country_code.clone(),
            network,
            asn: place.asn,
            org: place.org.clone(),
            hosting: place.hosting,
        }
    }
}

/// Browser versus phone.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PlaceContext {
    /// Whether a GeoIP database is configured (`--geoip-db`); without one
    /// the places are unknown and there is no risk verdict.
    pub known: bool,
    /// Where the browser that asked is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser: Option<PlaceInfo>,
    /// Where this phone is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<PlaceInfo>,
    /// Both places are known and are not the same city (or country).
    pub differs: bool,
    /// Browser and phone are on different networks.
    pub network_differs: bool,
    /// The sentence to show, e.g. "This login is from Amsterdam,
    /// Netherlands; you are in Berlin, Germany."
    pub summary: String,
}

/// The comparison for a scanned `rec`, with the phone at `phone_ip` whose
/// place is `phone` (`None`: no database).
pub fn compare(rec: &LoginRecord, phone: Option<&Place>, phone_ip: IpAddr) -> PlaceContext {
    let Some(phone) = phone else {
        return PlaceContext {
            known: false,
            browser: None,
            phone: None,
            differs: false,
            network_differs: network_of(&rec.browser.ip) != network_of(&phone_ip.to_string()),
            summary: "The place of this login is unknown.".into(),
        };
    };
    let none = Place::default();
    let browser = rec.browser.place.as_ref().unwrap_or(&none);
    let phone_ip = phone_ip.to_string();
    let b = PlaceInfo::of(browser, &rec.browser.ip);
    let p = PlaceInfo::of(phone, &phone_ip);
    let differs = match (&b.text, &p.text) {
        (Some(x), Some(y)) => x != y || browser.country_code != phone.country_code,
        _ => false,
    };
    let network_differs = network_key(browser, &rec.browser.ip) != network_key(phone, &phone_ip);
    let mut summary = match (&b.text, &p.text) {
        (Some(x), Some(y)) if differs => format!("This login is from {x}; you are in {y}."),
        (Some(x), Some(_)) => format!("This login is from {x}, where you are too."),
        (Some(x), None) => format!("This login is from {x}; where you are is unknown."),
        (None, Some(y)) => format!("The place of this login is unknown; you are in {y}."),
        (None, None) => "The place of this login is unknown.".into(),
    };
    if network_differs {
        summary.push_str(&format!(
            " It is on network {}; you are on {}.",
            b.network, p.network
        ));
    }
    if browser.hosting {
        summary.push_str(
            " Its network is a hosting provider, VPN or proxy, not a home or office connection.",
        );
    }
    PlaceContext {
        known: true,
        browser: Some(b),
        phone: Some(p),
        differs,
        network_differs,
        summary,
    }
}
