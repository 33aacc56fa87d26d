//! Rate limits (governor's GCRA), per client IP and per phone user.
//!
//! What they stop: guessing login ids (scan), hammering the store through
//! status polls, burning CPU on argon2 (sign-in), and flooding creates. IPv6
//! clients are keyed by their /64, since one client usually has a whole /64.
//! A limited status poll answers 429 `slow_down` (as RFC 8628's device
//! flow does), telling a polling client to back off.

use crate::error::ApiError;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// Requests per minute and burst for one bucket.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_minute: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        let per_minute = NonZeroU32::new(self.per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(self.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        Quota::per_minute(per_minute).allow_burst(burst)
    }
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

pub struct Limits {
    enabled: bool,
    any: DefaultKeyedRateLimiter<IpAddr>,
    create: DefaultKeyedRateLimiter<IpAddr>,
    poll: DefaultKeyedRateLimiter<IpAddr>,
    sign_in: DefaultKeyedRateLimiter<IpAddr>,
    scan: DefaultKeyedRateLimiter<IpAddr>,
    phone_user: DefaultKeyedRateLimiter<String>,
}

/// Default quotas; generous for people, tight for scripts.
pub struct Rates {
    pub any: Rate,
    pub create: Rate,
    pub poll: Rate,
    pub sign_in: Rate,
    pub scan: Rate,
    pub phone_user: Rate,
}

impl Default for Rates {
    fn default() -> Self {
        Self {
            any: Rate {
                per_minute: 3000,
                burst: 300,
            },
            create: Rate {
                per_minute: 60,
                burst: 30,
            },
            poll: Rate {
                per_minute: 300,
                burst: 60,
            },
            sign_in: Rate {
                per_minute: 10,
                burst: 10,
            },
            scan: Rate {
                per_minute: 30,
                burst: 15,
            },
            phone_user: Rate {
                per_minute: 120,
                burst: 60,
            },
        }
    }
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

/// One client's key: the address, or its /64 for IPv6.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], s[3], 0, 0, 0, 0])
        }
    }
}

impl Limits {
    pub fn new(enabled: bool, rates: Rates) -> Self {
        Self {
            enabled,
            any: RateLimiter::keyed(rates.any.quota()),
            create: RateLimiter::keyed(rates.create.quota()),
            poll: RateLimiter::keyed(rates.poll.quota()),
            sign_in: RateLimiter::keyed(rates.sign_in.quota()),
            scan: RateLimiter::keyed(rates.scan.quota()),
            phone_user: RateLimiter::keyed(rates.phone_user.quota()),
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
        limiter.check_key(&key(ip)).map_err(|nu| {
            Self::limited(
                nu.wait_time_from(DefaultClock::default().now()),
                bucket.label(),
                bucket == IpBucket::Poll,
            )
        })
    }

    /// Per signed-in phone user, on every phone call.
    pub fn check_user(&self, user_id: &str) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        self.phone_user
            .check_key(&user_id.to_owned())
            .map_err(|nu| {
                Self::limited(
                    nu.wait_time_from(DefaultClock::default().now()),
                    "PhoneUser",
                    false,
                )
            })
    }

    /// Forgets idle clients so the key maps do not grow without bound.
    pub fn forget_idle(&self) {
        self.any.retain_recent();
        self.create.retain_recent();
        self.poll.retain_recent();
        self.sign_in.retain_recent();
        self.scan.retain_recent();
        self.phone_user.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_client_and_can_be_off() {
        let rates = Rates {
            create: Rate {
                per_minute: 1,
                burst: 2,
            },
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
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let l = Limits::new(
            true,
            Rates {
                sign_in: Rate {
                    per_minute: 1,
                    burst: 1,
                },
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
    }
}
