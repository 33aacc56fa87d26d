//! Rate limits (governor's GCRA), per client IP and per phone user, and the
//! cap on open streams per client.
//!
//! What they stop: guessing login ids (scan), hammering the store through
//! status polls, burning CPU on argon2 (sign-in), and flooding creates. IPv6
//! clients are keyed by their /64, since one client usually has a whole /64.
//! A limited status poll answers 429 `slow_down` (as RFC 8628's device
//! flow does), telling a polling client to back off.
//!
//! Every bucket's rate and burst is configurable (`--rate-limit
//! create=600/min,burst=100`, [`RateLimitSpec`]); the defaults
//! ([`Rates::default`]) let an office behind one NAT address log in at
//! once and keep the guessing defences (scan, sign-in) tight
//! (docs/DECISIONS.md §14).

use crate::error::ApiError;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The period of a rate: `N/s`, `N/min`, `N/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Second,
    Minute,
    Hour,
}

impl Per {
    fn duration(self) -> Duration {
        match self {
            Per::Second => Duration::from_secs(1),
            Per::Minute => Duration::from_secs(60),
            Per::Hour => Duration::from_secs(3600),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Per::Second => "s",
            Per::Minute => "min",
            Per::Hour => "h",
        }
    }
}

/// One bucket's quota: `count` requests per `per` on average, and up to
/// `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Per,
    pub burst: u32,
}

impl Rate {
    /// `count` per minute, bursts of `burst`.
    pub const fn per_minute(count: u32, burst: u32) -> Rate {
        Rate {
            count,
            per: Per::Minute,
            burst,
        }
    }

    /// The time one request's worth of the bucket takes to refill; `None`
    /// when that rounds to nothing (more than one per nanosecond).
    fn interval(self) -> Option<Duration> {
        let nanos = self.per.duration().as_nanos() / u128::from(self.count.max(1));
        u64::try_from(nanos)
            .ok()
            .filter(|n| *n > 0)
            .map(Duration::from_nanos)
    }

    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        // Specs are checked when parsed; a hand-built Rate that is too fast
        // gets the fastest quota there is.
        let interval = self.interval().unwrap_or(Duration::from_nanos(1));
        Quota::with_period(interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{},burst={}", self.count, self.per.name(), self.burst)
    }
}

/// The buckets, as `--rate-limit` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Any,
    Create,
    Poll,
    SignIn,
    Scan,
    PhoneUser,
}

impl Bucket {
    pub const ALL: [Bucket; 6] = [
        Bucket::Any,
        Bucket::Create,
        Bucket::Poll,
        Bucket::SignIn,
        Bucket::Scan,
        Bucket::PhoneUser,
    ];

    /// The name in `--rate-limit` and the docs.
    pub fn name(self) -> &'static str {
        match self {
            Bucket::Any => "any",
            Bucket::Create => "create",
            Bucket::Poll => "poll",
            Bucket::SignIn => "sign-in",
            Bucket::Scan => "scan",
            Bucket::PhoneUser => "phone-user",
        }
    }

    fn named(name: &str) -> Option<Bucket> {
        Bucket::ALL.into_iter().find(|b| b.name() == name)
    }
}

/// What one `--rate-limit` entry sets a bucket to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// No limit for this bucket.
    Off,
    /// `count` per `per`; `burst` when given, else the bucket's default burst.
    Rate {
        count: u32,
        per: Per,
        burst: Option<u32>,
    },
}

/// One `--rate-limit` value: buckets and what they become, in order.
/// `create=600/min,burst=100` is one bucket; several may share one value
/// (`create=600/min,burst=100,scan=off`), which is also how a config-file
/// list (`rate-limit = ["create=600/min,burst=100", "scan=off"]`) arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSpec(pub Vec<(Bucket, Setting)>);

impl FromStr for RateLimitSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let names = || {
            Bucket::ALL
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out: Vec<(Bucket, Setting)> = Vec::new();
        for token in s.split(',').map(str::trim) {
            let (key, value) = token
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| format!("{token:?}: expected BUCKET=N/PER or burst=N"))?;
            if key == "burst" {
                let burst = value
                    .parse::<u32>()
                    .ok()
                    .filter(|b| *b > 0)
                    .ok_or_else(|| format!("burst={value:?}: expected a whole number ≥ 1"))?;
                match out.last_mut() {
                    Some((_, Setting::Rate { burst: b, .. })) => *b = Some(burst),
                    _ => {
                        return Err(format!(
                        "burst={value} must follow a bucket's rate (create=600/min,burst={value})"
                    ))
                    }
                }
                continue;
            }
            let bucket = Bucket::named(key).ok_or_else(|| {
                format!("unknown rate-limit bucket {key:?}; buckets: {}", names())
            })?;
            out.push((bucket, parse_setting(bucket, value)?));
        }
        Ok(RateLimitSpec(out))
    }
}

fn parse_setting(bucket: Bucket, value: &str) -> Result<Setting, String> {
    if value == "off" {
        return Ok(Setting::Off);
    }
    let bad = || {
        format!(
            "{}={value:?}: expected N/s, N/min, N/h or off (e.g. {}=600/min)",
            bucket.name(),
            bucket.name()
        )
    };
    let (count, per) = value.split_once('/').ok_or_else(bad)?;
    let count = count
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|c| *c > 0)
        .ok_or_else(bad)?;
    let per = match per.trim() {
        "s" | "sec" | "second" => Per::Second,
        "m" | "min" | "minute" => Per::Minute,
        "h" | "hour" => Per::Hour,
        _ => return Err(bad()),
    };
    if (Rate {
        count,
        per,
        burst: 1,
    })
    .interval()
    .is_none()
    {
        return Err(format!(
            "{}={value}: faster than one per nanosecond",
            bucket.name()
        ));
    }
    Ok(Setting::Rate {
        count,
        per,
        burst: None,
    })
}

/// The buckets keyed by client network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpBucket {
    /// Every request.
    Any,
    /// `POST /v1/logins`.
    Create,
    /// Status polls and SSE connects.
    Poll,
    /// Phone sign-in (argon2).
    SignIn,
    /// Phone scans (id guessing).
    Scan,
}

/// Every bucket's quota; `None` is a bucket that is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    pub any: Option<Rate>,
    pub create: Option<Rate>,
    pub poll: Option<Rate>,
    pub sign_in: Option<Rate>,
    pub scan: Option<Rate>,
    pub phone_user: Option<Rate>,
}

impl Default for Rates {
    /// Room for an office of a few hundred people behind one address, tight
    /// where a request guesses or costs (docs/DECISIONS.md §14):
    ///
    /// * `any` 6000/min, burst 1000: every request, pages and assets too.
    /// * `create` 600/min, burst 150: a hundred people starting a login in
    ///   the same few seconds all get one, then 10 a second.
    /// * `poll` 3000/min, burst 600: SSE connects and status polls (each one
    ///   store read).
    /// * `sign-in` 10/min, burst 10: the demo sign-in (argon2, passwords).
    /// * `scan` 30/min, burst 15: id guessing and verifier calls.
    /// * `phone-user` 120/min, burst 60: per signed-in phone user.
    fn default() -> Self {
        Self {
            any: Some(Rate::per_minute(6000, 1000)),
            create: Some(Rate::per_minute(600, 150)),
            poll: Some(Rate::per_minute(3000, 600)),
            sign_in: Some(Rate::per_minute(10, 10)),
            scan: Some(Rate::per_minute(30, 15)),
            phone_user: Some(Rate::per_minute(120, 60)),
        }
    }
}

impl Rates {
    fn slot(&mut self, bucket: Bucket) -> &mut Option<Rate> {
        match bucket {
            Bucket::Any => &mut self.any,
            Bucket::Create => &mut self.create,
            Bucket::Poll => &mut self.poll,
            Bucket::SignIn => &mut self.sign_in,
            Bucket::Scan => &mut self.scan,
            Bucket::PhoneUser => &mut self.phone_user,
        }
    }

    /// The bucket's quota (`None`: off).
    pub fn get(&self, bucket: Bucket) -> Option<Rate> {
        let mut copy = *self;
        *copy.slot(bucket)
    }

    /// These rates with `specs` applied in order (later entries win). A
    /// rate without a burst keeps the burst the bucket had.
    pub fn with(mut self, specs: &[RateLimitSpec]) -> Self {
        let defaults = Rates::default();
        for (bucket, setting) in specs.iter().flat_map(|s| s.0.iter()) {
            let before = self.get(*bucket).or(defaults.get(*bucket));
            *self.slot(*bucket) = match *setting {
                Setting::Off => None,
                Setting::Rate { count, per, burst } => Some(Rate {
                    count,
                    per,
                    burst: burst.or(before.map(|r| r.burst)).unwrap_or(count),
                }),
            };
        }
        self
    }

    /// One line per bucket, for the start-up log.
    pub fn describe(&self) -> String {
        Bucket::ALL
            .iter()
            .map(|b| match self.get(*b) {
                Some(r) => format!("{}={r}", b.name()),
                None => format!("{}=off", b.name()),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub struct Limits {
    enabled: bool,
    any: Option<DefaultKeyedRateLimiter<IpAddr>>,
    create: Option<DefaultKeyedRateLimiter<IpAddr>>,
    poll: Option<DefaultKeyedRateLimiter<IpAddr>>,
    sign_in: Option<DefaultKeyedRateLimiter<IpAddr>>,
    scan: Option<DefaultKeyedRateLimiter<IpAddr>>,
    phone_user: Option<DefaultKeyedRateLimiter<String>>,
}

impl IpBucket {
    /// The metrics label (the variant's name), without formatting one on
    /// every refusal: refusals are the hot path of a flood.
    fn label(self) -> &'static str {
        match self {
            IpBucket::Any => "Any",
            IpBucket::Create => "Create",
            IpBucket::Poll => "Poll",
            IpBucket::SignIn => "SignIn",
            IpBucket::Scan => "Scan",
        }
    }
}

/// One client's key: the address, or its /64 for IPv6. Addresses are
/// canonical already (`ClientIp`); an IPv4-mapped one is still keyed as
/// IPv4 here, so no caller can put every IPv4 client into one /64.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

impl Limits {
    pub fn new(enabled: bool, rates: Rates) -> Self {
        let keyed = |r: Option<Rate>| r.map(|r| RateLimiter::keyed(r.quota()));
        Self {
            enabled,
            any: keyed(rates.any),
            create: keyed(rates.create),
            poll: keyed(rates.poll),
            sign_in: keyed(rates.sign_in),
            scan: keyed(rates.scan),
            phone_user: rates.phone_user.map(|r| RateLimiter::keyed(r.quota())),
        }
    }

    /// The refusal for a limit hit in the bucket labelled `label` (the
    /// metrics label); polls get `slow_down`, everything else `rate_limited`.
    fn limited(wait: Duration, label: &'static str, poll: bool) -> ApiError {
        let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        metrics::counter!("qrlogin_rate_limited_total", "bucket" => label).increment(1);
        if poll {
            ApiError::SlowDown { retry_after_secs }
        } else {
            ApiError::RateLimited { retry_after_secs }
        }
    }

    pub fn check_ip(&self, bucket: IpBucket, ip: IpAddr) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let limiter = match bucket {
            IpBucket::Any => &self.any,
            IpBucket::Create => &self.create,
            IpBucket::Poll => &self.poll,
            IpBucket::SignIn => &self.sign_in,
            IpBucket::Scan => &self.scan,
        };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check_key(&client_key(ip)).map_err(|nu| {
            Self::limited(
                nu.wait_time_from(DefaultClock::default().now()),
                bucket.label(),
                bucket == IpBucket::Poll,
            )
        })
    }

    /// Per signed-in phone user, on every phone call.
    pub fn check_user(&self, user_id: &str) -> Result<(), ApiError> {
        let (true, Some(limiter)) = (self.enabled, &self.phone_user) else {
            return Ok(());
        };
        limiter.check_key(&user_id.to_owned()).map_err(|nu| {
            Self::limited(
                nu.wait_time_from(DefaultClock::default().now()),
                "PhoneUser",
                false,
            )
        })
    }

    /// Forgets idle clients so the key maps do not grow without bound.
    pub fn forget_idle(&self) {
        for l in [
            &self.any,
            &self.create,
            &self.poll,
            &self.sign_in,
            &self.scan,
        ]
        .into_iter()
        .flatten()
        {
            l.retain_recent();
        }
        if let Some(l) = &self.phone_user {
            l.retain_recent();
        }
    }
}

/// Seconds a refused stream is told to wait: streams end when their login
/// does (a couple of minutes at most), and a browser retrying sooner only
/// adds load.
const STREAM_RETRY_AFTER_SECS: u64 = 5;

/// The open SSE streams and long-polls of each client (keyed like the rate
/// limits: an IPv4 address, an IPv6 /64), at most `max` each
/// (`--max-streams-per-ip`). A waiting browser costs ~13 KB of memory and a
/// connection; without a cap one address could hold as many as the
/// connection limit allows.
pub struct Streams {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One open stream, released when dropped.
pub struct StreamSlot {
    streams: Arc<Streams>,
    key: IpAddr,
}

impl Streams {
    /// `max` streams per client; 0: no cap (nothing is counted).
    pub fn new(max: u32) -> Arc<Streams> {
        Arc::new(Streams {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more stream of `ip`, or 429 `too_many_streams` when it
    /// holds `max` already. `None` when there is no cap.
    pub fn open(self: &Arc<Self>, ip: IpAddr) -> Result<Option<StreamSlot>, ApiError> {
        if self.max == 0 {
            return Ok(None);
        }
        let key = client_key(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.max {
            drop(open);
            metrics::counter!("qrlogin_rate_limited_total", "bucket" => "Streams").increment(1);
            return Err(ApiError::TooManyStreams {
                retry_after_secs: STREAM_RETRY_AFTER_SECS,
            });
        }
        *n += 1;
        Ok(Some(StreamSlot {
            streams: self.clone(),
            key,
        }))
    }

    /// Streams `ip` holds open now.
    pub fn held_by(&self, ip: IpAddr) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&client_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_client_and_can_be_off() {
        let rates = Rates {
            create: Some(Rate::per_minute(1, 2)),
            ..Rates::default()
        };
        let l = Limits::new(true, rates);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(l.check_ip(IpBucket::Create, a).is_ok());
        assert!(l.check_ip(IpBucket::Create, a).is_ok());
        let err = l.check_ip(IpBucket::Create, a).unwrap_err();
        assert!(matches!(err, ApiError::RateLimited { retry_after_secs } if retry_after_secs >= 1));
        assert!(
            l.check_ip(IpBucket::Create, b).is_ok(),
            "another client is not limited"
        );
        let off = Limits::new(false, Rates::default());
        for _ in 0..1000 {
            assert!(off.check_ip(IpBucket::SignIn, a).is_ok());
        }
        // One bucket off, the others still on.
        let l = Limits::new(
            true,
            Rates::default().with(&["sign-in=off".parse().unwrap()]),
        );
        for _ in 0..1000 {
            assert!(l.check_ip(IpBucket::SignIn, a).is_ok());
        }
        assert!((0..100).any(|_| l.check_ip(IpBucket::Scan, a).is_err()));
    }

    #[test]
    fn ipv6_clients_share_their_64_and_mapped_ipv4_is_ipv4() {
        let l = Limits::new(
            true,
            Rates {
                sign_in: Some(Rate::per_minute(1, 1)),
                ..Rates::default()
            },
        );
        assert!(l
            .check_ip(IpBucket::SignIn, "2001:db8::1".parse().unwrap())
            .is_ok());
        assert!(l
            .check_ip(IpBucket::SignIn, "2001:db8::2".parse().unwrap())
            .is_err());
        assert!(matches!(
            l.check_ip(IpBucket::Poll, "192.0.2.9".parse().unwrap()),
            Ok(())
        ));
        // Two IPv4 clients seen through a dual-stack socket: two buckets.
        assert!(l
            .check_ip(IpBucket::SignIn, "::ffff:192.0.2.1".parse().unwrap())
            .is_ok());
        assert!(l
            .check_ip(IpBucket::SignIn, "::ffff:192.0.2.2".parse().unwrap())
            .is_ok());
        assert!(l
            .check_ip(IpBucket::SignIn, "192.0.2.1".parse().unwrap())
            .is_err());
    }

    #[test]
    fn specs_parse_and_apply() {
        let spec: RateLimitSpec = "create=600/min,burst=100".parse().unwrap();
        assert_eq!(
            spec.0,
            vec![(
                Bucket::Create,
                Setting::Rate {
                    count: 600,
                    per: Per::Minute,
                    burst: Some(100)
                }
            )]
        );
        let specs: Vec<RateLimitSpec> = [
            " create = 20/s , burst = 40 , scan=off,poll=100/h",
            "sign-in=5/min",
            "create=1/h,burst=3",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        let r = Rates::default().with(&specs);
        assert_eq!(
            r.create,
            Some(Rate {
                count: 1,
                per: Per::Hour,
                burst: 3
            })
        );
        assert_eq!(r.scan, None);
        // A rate without a burst keeps the bucket's burst.
        assert_eq!(
            r.poll,
            Some(Rate {
                count: 100,
                per: Per::Hour,
                burst: 600
            })
        );
        assert_eq!(r.sign_in, Some(Rate::per_minute(5, 10)));
        assert_eq!(r.any, Rates::default().any);
        assert_eq!(r.get(Bucket::Create).unwrap().to_string(), "1/h,burst=3");
        assert!(r.describe().contains("scan=off"));

        for bad in [
            "",
            "create",
            "create=",
            "create=600",
            "create=600/fortnight",
            "create=0/min",
            "create=-1/min",
            "burst=10",
            "create=off,burst=10",
            "create=10/min,burst=0",
            "create=10/min,burst=x",
            "creates=10/min",
            "create=10/min,,scan=off",
            "create=4294967295/s",
        ] {
            let e = bad.parse::<RateLimitSpec>();
            assert!(e.is_err(), "{bad:?} parsed: {e:?}");
        }
        let e = "creates=1/s".parse::<RateLimitSpec>().unwrap_err();
        assert!(e.contains("create, poll"), "{e}");
    }

    #[test]
    fn configured_quota_holds() {
        let rates = Rates::default().with(&["create=60/min,burst=5".parse().unwrap()]);
        let l = Limits::new(true, rates);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let ok = (0..20)
            .filter(|_| l.check_ip(IpBucket::Create, a).is_ok())
            .count();
        assert_eq!(ok, 5);
    }

    #[test]
    fn the_default_create_burst_fits_an_office_of_a_hundred() {
        let l = Limits::new(true, Rates::default());
        let office: IpAddr = "203.0.113.10".parse().unwrap();
        for i in 0..100 {
            assert!(l.check_ip(IpBucket::Any, office).is_ok(), "request {i}");
            assert!(l.check_ip(IpBucket::Create, office).is_ok(), "create {i}");
        }
    }

    #[test]
    fn streams_are_capped_per_client_and_released() {
        let s = Streams::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let a_mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let one = s.open(a).unwrap();
        let two = s.open(a_mapped).unwrap();
        assert!(matches!(
            s.open(a),
            Err(ApiError::TooManyStreams { retry_after_secs }) if retry_after_secs >= 1
        ));
        assert!(s.open("192.0.2.2".parse().unwrap()).unwrap().is_some());
        assert_eq!(s.held_by(a), 2);
        drop(one);
        assert_eq!(s.held_by(a), 1);
        let three = s.open(a).unwrap();
        drop((two, three));
        assert_eq!(s.held_by(a), 0);
        assert!(
            s.open.lock().unwrap().get(&a).is_none(),
            "no empty entries kept"
        );
        let uncapped = Streams::new(0);
        for _ in 0..10_000 {
            assert!(uncapped.open(a).unwrap().is_none());
        }
    }
}
