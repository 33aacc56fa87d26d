//! A reference model of the login state machine (SPEC §2), for property
//! tests that run random sequences of actions against a real [`Store`]
//! (directly, or through the HTTP API) and compare every answer.
//!
//! It is written from the SPEC and the [`Store`] documentation, not from
//! either store's code: a plain map of records, no concurrency, no I/O.
//! What it encodes:
//!
//! * `pending --scan--> scanned --approve--> approved --redeem--> consumed`,
//!   `scanned --deny--> denied`, `pending|scanned|approved --cancel--> cancelled`;
//!   every other transition is refused with the state it found.
//! * Expiry is decided by the caller's clock: a non-final login is expired
//!   from `expires_at` on (1 ms before is still alive). Scanning extends the
//!   expiry once.
//! * A login is *gone* (answers "not found") once `now >= purge`, where
//!   purge is `expires_at + final_keep` for a non-final login and
//!   `(time of the final transition) + final_keep` for a final one.
//! * Only the user who scanned may approve or deny; a second user's scan is
//!   `WrongUser`; the same user's re-scan changes nothing.
//! * Browser calls (cancel, redeem) need the browser secret: without it the
//!   login "does not exist", checked before anything else.
//! * Number matching: when the scan made it required, an approve with any
//!   code but the login's denies the login (`WrongMatchCode`).
//! * Every transition bumps the version by one; refusals and idempotent
//!   re-scans change nothing.
//! * Redeem issues exactly one session, alive until `now + session_ms`.
//!
//! [`Store`]: qrlogin_core::Store

use qrlogin_core::{
    LoginId, LoginRecord, MatchPolicy, NewLogin, SecretHash, State, TransitionError, Ttls, User,
};
use std::collections::HashMap;

/// One login as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLogin {
    /// The record a store must return for this login (its last write).
    pub rec: LoginRecord,
    /// From this time on the login is gone (transitions answer NotFound).
    pub purge_at_ms: u64,
}

impl ModelLogin {
    /// Whether the login is gone at `now_ms`.
    pub fn is_gone(&self, now_ms: u64) -> bool {
        now_ms >= self.purge_at_ms
    }
}

/// A web session as the model holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSession {
    pub user: User,
    pub expires_at_ms: u64,
}

/// The reference model. Methods mirror [`qrlogin_core::Store`]'s, with the
/// same argument meaning and the same answers.
#[derive(Debug, Clone)]
pub struct Model {
    ttls: Ttls,
    logins: HashMap<LoginId, ModelLogin>,
    /// Sessions by the SHA-256 of their token.
    sessions: HashMap<[u8; 32], ModelSession>,
}

type Answer<T> = Result<T, TransitionError>;

fn is_final(s: State) -> bool {
    matches!(
        s,
        State::Consumed | State::Denied | State::Cancelled | State::Expired
    )
}

/// The state of `rec` at `now_ms`, with expiry applied.
pub fn state_at(rec: &LoginRecord, now_ms: u64) -> State {
    if !is_final(rec.state) && now_ms >= rec.expires_at_ms {
        State::Expired
    } else {
        rec.state
    }
}

impl Model {
    pub fn new(ttls: Ttls) -> Self {
        Self {
            ttls,
            logins: HashMap::new(),
            sessions: HashMap::new(),
        }
    }

    pub fn ttls(&self) -> Ttls {
        self.ttls
    }

    /// The model's view of a login (even when gone: its last record).
    pub fn login(&self, id: &LoginId) -> Option<&ModelLogin> {
        self.logins.get(id)
    }

    /// The state a caller at `now_ms` must be told: `None` when unknown or
    /// gone, else the state with expiry applied.
    pub fn visible_state(&self, id: &LoginId, now_ms: u64) -> Option<State> {
        let l = self.logins.get(id)?;
        if l.is_gone(now_ms) {
            None
        } else {
            Some(state_at(&l.rec, now_ms))
        }
    }

    /// The live (not gone) login `id` at `now_ms`, or NotFound.
    fn live(&mut self, id: &LoginId, now_ms: u64) -> Answer<&mut ModelLogin> {
        match self.logins.get_mut(id) {
            Some(l) if !l.is_gone(now_ms) => Ok(l),
            _ => Err(TransitionError::NotFound),
        }
    }

    /// Writes a transition: the version goes up by one, the purge deadline
    /// moves.
    fn commit(ttls: Ttls, l: &mut ModelLogin, now_ms: u64) -> LoginRecord {
        l.rec.version += 1;
        l.purge_at_ms = if is_final(l.rec.state) {
            now_ms + ttls.final_keep_ms
        } else {
            l.rec.expires_at_ms + ttls.final_keep_ms
        };
        l.rec.clone()
    }

    /// `create`: a pending login, version 1, expiring after `pending_ms`.
    pub fn create(&mut self, new: &NewLogin, now_ms: u64) -> LoginRecord {
        let rec = LoginRecord {
            id: new.id,
            state: State::Pending,
            version: 1,
            secret_hash: new.secret_hash,
            created_at_ms: now_ms,
            expires_at_ms: now_ms + new.pending_ms.unwrap_or(self.ttls.pending_ms),
            browser: new.browser.clone(),
            match_code: new.match_code,
            match_required: false,
            risk: None,
            user: None,
            client_id: new.client_id.clone(),
        };
        let purge_at_ms = rec.expires_at_ms + self.ttls.final_keep_ms;
        self.logins.insert(
            new.id,
            ModelLogin {
                rec: rec.clone(),
                purge_at_ms,
            },
        );
        rec
    }

    /// `scan_with`.
    pub fn scan_with(
        &mut self,
        id: &LoginId,
        user: &User,
        policy: &MatchPolicy,
        now_ms: u64,
    ) -> Answer<LoginRecord> {
        let ttls = self.ttls;
        let l = self.live(id, now_ms)?;
        match state_at(&l.rec, now_ms) {
            State::Expired => Err(TransitionError::Expired),
            State::Pending => {
                l.rec.state = State::Scanned;
                l.rec.user = Some(user.clone());
                l.rec.expires_at_ms += ttls.scan_extension_ms;
                l.rec.match_required =
                    l.rec.match_code.is_some() && policy.requires(&l.rec.browser.ip);
                Ok(Self::commit(ttls, l, now_ms))
            }
            s => match &l.rec.user {
                Some(u) if u.id != user.id => Err(TransitionError::WrongUser),
                Some(_) if s == State::Scanned => Ok(l.rec.clone()),
                _ => Err(TransitionError::WrongState(s)),
            },
        }
    }

    /// The checks of approve and deny: alive, scanned, by `user_id`.
    fn decide_check(l: &ModelLogin, user_id: &str, now_ms: u64) -> Answer<()> {
        let s = state_at(&l.rec, now_ms);
        match s {
            State::Expired => Err(TransitionError::Expired),
            State::Pending => Err(TransitionError::WrongState(State::Pending)),
            // Finished before anyone scanned: no scanner to match.
            _ if l.rec.user.is_none() => Err(TransitionError::WrongState(s)),
            _ if l.rec.user.as_ref().is_some_and(|u| u.id != user_id) => {
                Err(TransitionError::WrongUser)
            }
            State::Scanned => Ok(()),
            _ => Err(TransitionError::WrongState(s)),
        }
    }

    /// `approve_with`.
    pub fn approve_with(
        &mut self,
        id: &LoginId,
        user_id: &str,
        match_code: Option<u8>,
        now_ms: u64,
    ) -> Answer<LoginRecord> {
        let ttls = self.ttls;
        let l = self.live(id, now_ms)?;
        Self::decide_check(l, user_id, now_ms)?;
        if l.rec.match_required && match_code != l.rec.match_code {
            l.rec.state = State::Denied;
            Self::commit(ttls, l, now_ms);
            return Err(TransitionError::WrongMatchCode);
        }
        l.rec.state = State::Approved;
        Ok(Self::commit(ttls, l, now_ms))
    }

    /// `deny`.
    pub fn deny(&mut self, id: &LoginId, user_id: &str, now_ms: u64) -> Answer<LoginRecord> {
        let ttls = self.ttls;
        let l = self.live(id, now_ms)?;
        Self::decide_check(l, user_id, now_ms)?;
        l.rec.state = State::Denied;
        Ok(Self::commit(ttls, l, now_ms))
    }

    /// The checks of every browser call: the secret, then expiry.
    fn browser_check(l: &ModelLogin, secret: &SecretHash, now_ms: u64) -> Answer<State> {
        if l.rec.secret_hash != *secret {
            return Err(TransitionError::NotFound);
        }
        match state_at(&l.rec, now_ms) {
            State::Expired => Err(TransitionError::Expired),
            s => Ok(s),
        }
    }

    /// `cancel`.
    pub fn cancel(
        &mut self,
        id: &LoginId,
        secret: &SecretHash,
        now_ms: u64,
    ) -> Answer<LoginRecord> {
        let ttls = self.ttls;
        let l = self.live(id, now_ms)?;
        match Self::browser_check(l, secret, now_ms)? {
            State::Pending | State::Scanned | State::Approved => {
                l.rec.state = State::Cancelled;
                Ok(Self::commit(ttls, l, now_ms))
            }
            s => Err(TransitionError::WrongState(s)),
        }
    }

    /// `redeem`; `token_hash` is the SHA-256 of the session token the
    /// caller made, under which the session is kept.
    pub fn redeem(
        &mut self,
        id: &LoginId,
        secret: &SecretHash,
        token_hash: &SecretHash,
        now_ms: u64,
    ) -> Answer<User> {
        let ttls = self.ttls;
        let l = self.live(id, now_ms)?;
        match Self::browser_check(l, secret, now_ms)? {
            State::Approved => {
                l.rec.state = State::Consumed;
                let rec = Self::commit(ttls, l, now_ms);
                let user = rec.user.ok_or(TransitionError::NotFound)?;
                self.sessions.insert(
                    *token_hash.as_bytes(),
                    ModelSession {
                        user: user.clone(),
                        expires_at_ms: now_ms + ttls.session_ms,
                    },
                );
                Ok(user)
            }
            s => Err(TransitionError::WrongState(s)),
        }
    }

    /// `session`: the session of a token (by its hash) alive at `now_ms`.
    pub fn session(&self, token_hash: &SecretHash, now_ms: u64) -> Option<&ModelSession> {
        self.sessions
            .get(token_hash.as_bytes())
            .filter(|s| s.expires_at_ms > now_ms)
    }

    /// `revoke_session`.
    pub fn revoke_session(&mut self, token_hash: &SecretHash) {
        self.sessions.remove(token_hash.as_bytes());
    }

    /// How many sessions were ever issued (and not revoked).
    pub fn sessions_issued(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{alice, bob, new_login, T0, TTLS};

    #[test]
    fn the_happy_path_and_its_refusals() {
        let mut m = Model::new(TTLS);
        let (new, secret) = new_login(None);
        let id = new.id;
        assert_eq!(m.create(&new, T0).version, 1);
        let never = MatchPolicy::Never;
        let r = m.scan_with(&id, &alice(), &never, T0 + 1).unwrap();
        assert_eq!((r.state, r.version), (State::Scanned, 2));
        assert_eq!(
            r.expires_at_ms,
            T0 + TTLS.pending_ms + TTLS.scan_extension_ms
        );
        assert_eq!(m.scan_with(&id, &alice(), &never, T0 + 2), Ok(r.clone()));
        assert_eq!(
            m.scan_with(&id, &bob(), &never, T0 + 2),
            Err(TransitionError::WrongUser)
        );
        assert_eq!(
            m.approve_with(&id, "bob", None, T0 + 3),
            Err(TransitionError::WrongUser)
        );
        assert_eq!(
            m.approve_with(&id, "alice", None, T0 + 3).unwrap().state,
            State::Approved
        );
        let wrong = SecretHash::of(b"not the secret");
        let tok = SecretHash::of(b"token");
        assert_eq!(
            m.redeem(&id, &wrong, &tok, T0 + 4),
            Err(TransitionError::NotFound)
        );
        assert_eq!(m.redeem(&id, &secret.hash(), &tok, T0 + 4), Ok(alice()));
        assert_eq!(
            m.redeem(&id, &secret.hash(), &tok, T0 + 5),
            Err(TransitionError::WrongState(State::Consumed))
        );
        assert_eq!(m.sessions_issued(), 1);
        assert!(m.session(&tok, T0 + 4 + TTLS.session_ms - 1).is_some());
        assert!(m.session(&tok, T0 + 4 + TTLS.session_ms).is_none());
        // Gone after final_keep.
        assert_eq!(
            m.visible_state(&id, T0 + 4 + TTLS.final_keep_ms - 1),
            Some(State::Consumed)
        );
        assert_eq!(m.visible_state(&id, T0 + 4 + TTLS.final_keep_ms), None);
    }

    #[test]
    fn expiry_edge_and_wrong_match_code() {
        let mut m = Model::new(TTLS);
        let (new, secret) = new_login(Some(42));
        let id = new.id;
        m.create(&new, T0);
        let e = T0 + TTLS.pending_ms;
        assert_eq!(m.visible_state(&id, e - 1), Some(State::Pending));
        assert_eq!(m.visible_state(&id, e), Some(State::Expired));
        assert_eq!(
            m.cancel(&id, &secret.hash(), e),
            Err(TransitionError::Expired)
        );
        let r = m
            .scan_with(&id, &alice(), &MatchPolicy::Always, e - 1)
            .unwrap();
        assert!(r.match_required);
        assert_eq!(
            m.approve_with(&id, "alice", Some(41), e),
            Err(TransitionError::WrongMatchCode)
        );
        assert_eq!(m.visible_state(&id, e), Some(State::Denied));
        assert_eq!(
            m.approve_with(&id, "alice", Some(42), e),
            Err(TransitionError::WrongState(State::Denied))
        );
    }
}
