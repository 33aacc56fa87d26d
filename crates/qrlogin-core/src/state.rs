//! The login state machine (SPEC §2).
//!
//! ```text
//! pending --scan--> scanned --approve--> approved --redeem--> consumed
//!    |                 |  \--deny--> denied
//!    +--cancel (browser, any non-final state)--> cancelled
//!    any non-final --TTL--> expired
//! ```
//!
//! The stores enforce the transitions atomically; this module only names the
//! states and says which are final, so both stores agree on the words.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Scanned,
    Approved,
    Consumed,
    Denied,
    Cancelled,
    Expired,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Scanned,
        State::Approved,
        State::Consumed,
        State::Denied,
        State::Cancelled,
        State::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Scanned => "scanned",
            State::Approved => "approved",
            State::Consumed => "consumed",
            State::Denied => "denied",
            State::Cancelled => "cancelled",
            State::Expired => "expired",
        }
    }

    /// A final state never changes again; its record is kept only briefly so
    /// late watchers still learn the outcome.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            State::Consumed | State::Denied | State::Cancelled | State::Expired
        )
    }

    /// This state as of `now_ms` for a login expiring at `expires_at_ms`: a
    /// non-final login past its expiry is expired even though nobody has
    /// written that down (expiry is not a write).
    pub fn at(self, expires_at_ms: u64, now_ms: u64) -> State {
        if !self.is_final() && now_ms >= expires_at_ms {
            State::Expired
        } else {
            self
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state")]
pub struct UnknownState;

impl FromStr for State {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or(UnknownState)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_name() {
        for st in State::ALL {
            assert_eq!(st.as_str().parse::<State>(), Ok(st));
        }
        assert!("PENDING".parse::<State>().is_err());
    }

    #[test]
    fn final_states_are_exactly_the_outcomes() {
        let finals: Vec<_> = State::ALL.into_iter().filter(|s| s.is_final()).collect();
        assert_eq!(
            finals,
            vec![
                State::Consumed,
                State::Denied,
                State::Cancelled,
                State::Expired
            ]
        );
    }
}
