//! `--geoip-db FILE`: the operator's MaxMind-format database (GeoLite2-City,
//! GeoIP2-City/Enterprise, DB-IP Lite City, or an ASN database), read with
//! the `maxminddb` crate. It turns an address into a [`Place`]: city,
//! region, country, coordinates, and the network (AS number and
//! organisation, and whether it is a hosting provider or anonymiser) when
//! the database has them.
//!
//! The file is read whole into memory and swapped atomically on reload:
//! on SIGHUP, or when its modification time or size changes (checked every
//! [`POLL`]), so the usual weekly `geoipupdate` needs no restart. A file
//! that fails to open on reload is logged and the old one kept.

use maxminddb::Reader;
use qrlogin_core::{Coords, Place};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// How often the file's modification time and size are checked.
pub const POLL: Duration = Duration::from_secs(2);

/// The database, reloadable.
pub struct GeoIp {
    path: PathBuf,
    db: RwLock<Loaded>,
}

struct Loaded {
    reader: Arc<Reader<Vec<u8>>>,
    stamp: Option<(SystemTime, u64)>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn open(path: &Path) -> anyhow::Result<Loaded> {
    let stamp = stamp(path);
    let reader = Reader::open_readfile(path).map_err(|e| {
        anyhow::anyhow!(
            "--geoip-db {}: not a readable MaxMind database: {e}",
            path.display()
        )
    })?;
    Ok(Loaded {
        reader: Arc::new(reader),
        stamp,
    })
}

impl GeoIp {
    /// Opens `path`; an error names the file and why (missing, not a
    /// MaxMind database), which `check-config` and start-up report.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = open(path)?;
        let m = &db.reader.metadata;
        tracing::info!(
            path = %path.display(),
            database_type = %m.database_type,
            build_epoch = m.build_epoch,
            "GeoIP database loaded"
        );
        Ok(Self {
            path: path.to_path_buf(),
            db: RwLock::new(db),
        })
    }

    fn reader(&self) -> Arc<Reader<Vec<u8>>> {
        match self.db.read() {
            Ok(g) => g.reader.clone(),
            Err(p) => p.into_inner().reader.clone(),
        }
    }

    /// The place of `ip`; an empty place when the database has no entry
    /// (private and loopback addresses) or the entry cannot be read.
    pub fn lookup(&self, ip: IpAddr) -> Place {
        let reader = self.reader();
        match reader.lookup::<Entry>(ip.to_canonical()) {
            Ok(Some(e)) => e.into_place(),
            Ok(None) => Place::default(),
            Err(e) => {
                tracing::debug!(error = %e, "GeoIP entry unreadable");
                Place::default()
            }
        }
    }

    /// Reads the file again and swaps it in; on failure keeps the old one.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = open(&self.path)?;
        let kind = fresh.reader.metadata.database_type.clone();
        match self.db.write() {
            Ok(mut g) => *g = fresh,
            Err(p) => *p.into_inner() = fresh,
        }
        metrics::counter!("qrlogin_geoip_reloads_total").increment(1);
        tracing::info!(path = %self.path.display(), database_type = %kind, "GeoIP database reloaded");
        Ok(())
    }

    fn changed(&self) -> bool {
        let now = stamp(&self.path);
        let old = match self.db.read() {
            Ok(g) => g.stamp,
            Err(p) => p.into_inner().stamp,
        };
        now.is_some() && now != old
    }

    fn reload_logged(&self, why: &str) {
        if let Err(e) = self.reload() {
            // Do not retry the same broken file every poll: remember its
            // stamp (a half-written file gets a new one when complete).
            if let Ok(mut g) = self.db.write() {
                g.stamp = stamp(&self.path);
            }
            tracing::warn!(error = %e, why, "GeoIP reload failed; keeping the old database");
        }
    }

    /// The background task the builder starts: reload on SIGHUP or when the
    /// file changes. Ends when the service (the last other `Arc`) is gone.
    pub fn reloader(self: &Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let weak = Arc::downgrade(self);
        async move {
            #[cfg(unix)]
            let mut hup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let signalled = async {
                    match hup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let signalled = std::future::pending::<Option<()>>();
                let why = tokio::select! {
                    _ = signalled => "SIGHUP",
                    _ = tick.tick() => "poll",
                };
                let Some(geo) = weak.upgrade() else { break };
                if why == "SIGHUP" || geo.changed() {
                    geo.reload_logged(if why == "SIGHUP" { why } else { "file changed" });
                }
            }
        }
    }
}

/// The fields read from an entry, a union of the GeoIP2/GeoLite2 City,
/// Enterprise, ASN and Anonymous-IP layouts and DB-IP's (which follows
/// GeoIP2's). Everything optional; other fields are ignored.
#[derive(Deserialize, Default)]
struct Entry {
    city: Option<Named>,
    subdivisions: Option<Vec<Named>>,
    country: Option<Country>,
    location: Option<Location>,
    traits: Option<Traits>,
    /// GeoLite2-ASN / DB-IP ASN layout.
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
    /// GeoIP2 Anonymous IP layout (top level).
    is_hosting_provider: Option<bool>,
    is_anonymous: Option<bool>,
}

#[derive(Deserialize, Default)]
struct Named {
    names: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct Country {
    iso_code: Option<String>,
    names: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct Location {
    latitude: Option<f64>,
    longitude: Option<f64>,
}

#[derive(Deserialize, Default)]
struct Traits {
    autonomous_system_number: Option<u32>,
    autonomous_system_organization: Option<String>,
    is_hosting_provider: Option<bool>,
    is_anonymous: Option<bool>,
    is_anonymous_proxy: Option<bool>,
    is_anonymous_vpn: Option<bool>,
    is_public_proxy: Option<bool>,
    is_tor_exit_node: Option<bool>,
    /// GeoIP2 Enterprise: "hosting" for data centres.
    user_type: Option<String>,
}

/// The English name, else any.
fn name(names: &Option<BTreeMap<String, String>>) -> Option<String> {
    let names = names.as_ref()?;
    names
        .get("en")
        .or_else(|| names.values().next())
        .filter(|n| !n.is_empty())
        .cloned()
}

impl Entry {
    fn into_place(self) -> Place {
        let t = self.traits.unwrap_or_default();
        let flag = |v: Option<bool>| v == Some(true);
        let hosting = flag(t.is_hosting_provider)
            || flag(t.is_anonymous)
            || flag(t.is_anonymous_proxy)
            || flag(t.is_anonymous_vpn)
            || flag(t.is_public_proxy)
            || flag(t.is_tor_exit_node)
            || t.user_type.as_deref() == Some("hosting")
            || flag(self.is_hosting_provider)
            || flag(self.is_anonymous);
        let coords = self
            .location
            .and_then(|l| Coords::from_degrees(l.latitude?, l.longitude?));
        let country = self.country.unwrap_or_default();
        Place {
            city: self.city.and_then(|c| name(&c.names)),
            region: self
                .subdivisions
                .and_then(|s| s.into_iter().next())
                .and_then(|s| name(&s.names)),
            country: name(&country.names),
            country_code: country
                .iso_code
                .filter(|c| c.len() == 2)
                .map(|c| c.to_ascii_uppercase()),
            coords,
            asn: self.autonomous_system_number.or(t.autonomous_system_number),
            org: self
                .autonomous_system_organization
                .or(t.autonomous_system_organization),
            hosting,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(json: serde_json::Value) -> Place {
        serde_json::from_value::<Entry>(json)
            .expect("entry")
            .into_place()
    }

    #[test]
    fn city_asn_and_anonymous_layouts() {
        let p = place(serde_json::json!({
            "city": {"names": {"de": "München", "en": "Munich"}},
            "subdivisions": [{"names": {"en": "Bavaria"}}, {"names": {"en": "Upper Bavaria"}}],
            "country": {"iso_code": "de", "names": {"en": "Germany"}},
            "location": {"latitude": 48.1351, "longitude": 11.582},
            "traits": {"autonomous_system_number": 3320, "autonomous_system_organization": "DTAG"},
            "unknown": {"ignored": [1, 2, 3]}
        }));
        assert_eq!(p.describe().as_deref(), Some("Munich, Germany"));
        assert_eq!(p.region.as_deref(), Some("Bavaria"));
        assert_eq!(p.country_code.as_deref(), Some("DE"));
        assert_eq!(p.coords, Coords::from_degrees(48.1351, 11.582));
        assert_eq!((p.asn, p.org.as_deref()), (Some(3320), Some("DTAG")));
        assert!(!p.hosting);
        // GeoLite2-ASN: top-level AS fields, no place.
        let p = place(serde_json::json!({
            "autonomous_system_number": 64500, "autonomous_system_organization": "Example"
        }));
        assert_eq!((p.asn, p.describe()), (Some(64500), None));
        assert!(p.is_known());
        // Every anonymiser flag counts as hosting.
        for t in [
            serde_json::json!({"traits": {"is_hosting_provider": true}}),
            serde_json::json!({"traits": {"is_anonymous_vpn": true}}),
            serde_json::json!({"traits": {"is_tor_exit_node": true}}),
            serde_json::json!({"traits": {"user_type": "hosting"}}),
            serde_json::json!({"is_anonymous": true}),
        ] {
            assert!(place(t.clone()).hosting, "{t}");
        }
        // A bad country code or out-of-range coordinates are dropped.
        let p = place(serde_json::json!({
            "country": {"iso_code": "XYZ", "names": {"fr": "Nulle part"}},
            "location": {"latitude": 123.0, "longitude": 0.0}
        }));
        assert_eq!(p.country_code, None);
        assert_eq!(p.country.as_deref(), Some("Nulle part"));
        assert_eq!(p.coords, None);
    }

    #[test]
    fn a_missing_or_foreign_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("none.mmdb");
        let e = GeoIp::open(&missing).err().expect("error").to_string();
        assert!(e.contains("none.mmdb"), "{e}");
        let junk = dir.path().join("junk.mmdb");
        std::fs::write(&junk, b"\x00\x01 not a database").expect("write");
        let e = GeoIp::open(&junk).err().expect("error").to_string();
        assert!(e.contains("junk.mmdb") && e.contains("MaxMind"), "{e}");
    }
}
