//! Real MaxMind-format test databases, written by PyPI's `mmdb-writer`
//! (pinned in `tests/geoip/requirements.txt`, in the private virtualenv
//! `tests/geoip/.venv` that `scripts/test` makes) from a few networks in
//! the documentation ranges (RFC 5737), which the tests present as client
//! addresses through X-Forwarded-For from the trusted 127.0.0.1.

use serde_json::{json, Value};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/geoip")
}

/// Writes `networks` (`[{"cidr", "data"}]`) to `out` as a MaxMind DB.
/// Fails loudly, with the install command, when the writer is missing.
pub fn write(out: &Path, networks: &Value) {
    let dir = dir();
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "mmdb-writer is not installed: run ./scripts/test, or\n  \
         python3 -m venv {venv} && {venv}/bin/pip install -r {req}\n\
         (python3 -m venv needs Debian's python3-venv: apt-get install -y python3-venv)",
        venv = dir.join(".venv").display(),
        req = dir.join("requirements.txt").display(),
    );
    let mut child = Command::new(python)
        .arg(dir.join("write_mmdb.py"))
        .arg(out)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running write_mmdb.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(networks.to_string().as_bytes())
        .expect("writing the networks");
    let done = child.wait_with_output().expect("write_mmdb.py");
    assert!(
        done.status.success(),
        "write_mmdb.py failed: {}",
        String::from_utf8_lossy(&done.stderr)
    );
}

/// A GeoIP2 City record.
pub fn city(city: &str, region: &str, country: &str, cc: &str, lat: f64, lon: f64) -> Value {
    json!({
        "city": {"names": {"en": city}},
        "subdivisions": [{"iso_code": "X", "names": {"en": region}}],
        "country": {"iso_code": cc, "names": {"en": country}},
        "location": {"latitude": lat, "longitude": lon, "accuracy_radius": 20},
    })
}

/// `record` with an AS number and organisation (GeoIP2 Enterprise layout),
/// and the hosting flag when `hosting`.
pub fn on_as(mut record: Value, asn: u32, org: &str, hosting: bool) -> Value {
    record["traits"] = json!({
        "autonomous_system_number": asn,
        "autonomous_system_organization": org,
    });
    if hosting {
        record["traits"]["is_hosting_provider"] = json!(true);
    }
    record
}

/// The test world:
/// * 192.0.2.0/24 and 198.51.100.0/24: Berlin, Germany, AS64500 "Example Net"
/// * 203.0.113.0/25: Amsterdam, Netherlands, AS64501 "Voorbeeld BV"
/// * 203.0.113.128/25: Berlin, Germany, AS64502 "Cloud Hosting" (hosting)
pub fn world() -> Value {
    let berlin = city("Berlin", "Land Berlin", "Germany", "DE", 52.52, 13.405);
    let amsterdam = city(
        "Amsterdam",
        "North Holland",
        "Netherlands",
        "NL",
        52.3676,
        4.9041,
    );
    json!([
        {"cidr": "192.0.2.0/24", "data": on_as(berlin.clone(), 64500, "Example Net", false)},
        {"cidr": "198.51.100.0/24", "data": on_as(berlin.clone(), 64500, "Example Net", false)},
        {"cidr": "203.0.113.0/25", "data": on_as(amsterdam, 64501, "Voorbeeld BV", false)},
        {"cidr": "203.0.113.128/25", "data": on_as(berlin, 64502, "Cloud Hosting", true)},
    ])
}

/// [`world`] in a fresh temporary directory; returns it and the file.
pub fn world_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("GeoLite2-City.mmdb");
    write(&path, &world());
    (dir, path)
}

/// [`world`] plus loopback (127.0.0.0/8) in Berlin, AS64500, in a fresh
/// temporary directory: for tests whose browser and phone are both on
/// 127.0.0.1 but whose answers must carry full places and a verdict.
pub fn world_with_loopback_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("GeoLite2-City.mmdb");
    let mut networks = world();
    networks.as_array_mut().expect("networks").push(json!({
        "cidr": "127.0.0.0/8",
        "data": on_as(
            city("Berlin", "Land Berlin", "Germany", "DE", 52.52, 13.405),
            64500,
            "Example Net",
            false,
        ),
    }));
    write(&path, &networks);
    (dir, path)
}
