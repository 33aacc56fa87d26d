//! The in-process store: the default for a single node and for trying
//! qrlogin without Redis.
//!
//! One mutex guards all state, so every transition is one short critical
//! section: check, change, done. Nothing awaits while it is held. Expired
//! entries are purged from an ordered expiry set on every write, which keeps
//! memory bounded without a background task.

use crate::events::{Event, QueuedEvent, MAX_QUEUED_EVENTS};
use crate::grant::{GrantKey, Taken};
use crate::id::{LoginId, SecretHash, SessionRef, SessionToken};
use crate::notify::{Hint, Notifier};
use crate::sessions::SessionInfo;
use crate::state::State;
use crate::store::{
    Approval, LoginRecord, NewLogin, ScanPolicy, Session, Store, StoreError, TransitionError,
    TransitionResult, Ttls, User,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Login(LoginId),
    Session(LoginId, [u8; 32]),
    Mobile([u8; 32]),
    Grant(GrantKey),
}

#[derive(Default)]
struct Inner {
    logins: HashMap<LoginId, (LoginRecord, u64)>,
    /// Keyed by (login id, token hash), like the Redis key, so a reference
    /// naming another login finds nothing in either store.
    sessions: HashMap<(LoginId, [u8; 32]), (Session, u64)>,
    mobile: HashMap<[u8; 32], (User, u64)>,
    /// The per-user session index: what the phone lists, by sid (the
    /// login id), with the token hash that names the session.
    session_info: HashMap<LoginId, (SessionInfo, [u8; 32])>,
    /// Logins whose user logged out everywhere (or of this one) before
    /// they were redeemed: redeem refuses them (Redis: the tombstone).
    revoked_logins: HashSet<LoginId>,
    /// value, used, expires at.
    grants: HashMap<GrantKey, (String, bool, u64)>,
    /// (purge at, key): what to delete when.
    expiry: BTreeSet<(u64, Key)>,
    /// The event queue (see [`crate::events`]): by sequence number, with
    /// who holds it since when.
    events: BTreeMap<u64, (Event, Option<(String, u64)>)>,
    next_event: u64,
    /// Event consumers and when each last took or held events.
    consumers: HashMap<String, u64>,
}

impl Inner {
    fn purge(&mut self, now_ms: u64) {
        while let Some(&(at, key)) = self.expiry.first() {
            if at > now_ms {
                break;
            }
            self.expiry.pop_first();
            match key {
                Key::Login(id) => {
                    if self.logins.get(&id).is_some_and(|(_, p)| *p == at) {
                        self.logins.remove(&id);
                        self.revoked_logins.remove(&id);
                    }
                }
                Key::Session(id, h) => {
                    if self.sessions.get(&(id, h)).is_some_and(|(_, p)| *p == at) {
                        self.remove_session(id, h);
                    }
                }
                Key::Mobile(h) => {
                    if self.mobile.get(&h).is_some_and(|(_, p)| *p == at) {
                        self.mobile.remove(&h);
                    }
                }
                Key::Grant(k) => {
                    if self.grants.get(&k).is_some_and(|(_, _, p)| *p == at) {
                        self.grants.remove(&k);
                    }
                }
            }
        }
    }

    /// Appends an event, dropping the oldest past the bound.
    fn push_event(&mut self, event: Event) {
        self.next_event += 1;
        self.events.insert(self.next_event, (event, None));
        while self.events.len() > MAX_QUEUED_EVENTS {
            self.events.pop_first();
        }
    }

    /// Drops a session and its index entry; the session, if it existed.
    fn remove_session(&mut self, id: LoginId, hash: [u8; 32]) -> Option<Session> {
        if self.session_info.get(&id).is_some_and(|(_, h)| *h == hash) {
            self.session_info.remove(&id);
        }
        self.sessions.remove(&(id, hash)).map(|(s, _)| s)
    }

    /// Revokes `user_id`'s session `sid` if it is live, and marks the
    /// login so it cannot be redeemed into one later. Whether a live
    /// session was revoked (with `events`, its session.revoked event is
    /// queued in the same critical section).
    fn revoke_sid(&mut self, user_id: &str, sid: LoginId, now_ms: u64, events: bool) -> bool {
        if self
            .logins
            .get(&sid)
            .is_some_and(|(r, _)| r.user.as_ref().is_some_and(|u| u.id == user_id))
        {
            self.revoked_logins.insert(sid);
        }
        let Some((info, hash)) = self.session_info.get(&sid) else {
            return false;
        };
        if info.user_id != user_id {
            return false;
        }
        let hash = *hash;
        let live = self
            .sessions
            .get(&(sid, hash))
            .is_some_and(|(s, _)| s.expires_at_ms > now_ms);
        match self.remove_session(sid, hash) {
            Some(s) if live => {
                if events {
                    self.push_event(Event::revoked(sid, s.user, now_ms));
                }
                true
            }
            _ => false,
        }
    }

    /// Stores `rec` to be purged at `purge_at`, replacing its old deadline.
    fn put_login(&mut self, rec: LoginRecord, purge_at: u64) {
        let id = rec.id;
        if let Some((_, old)) = self.logins.insert(id, (rec, purge_at)) {
            self.expiry.remove(&(old, Key::Login(id)));
        }
        self.expiry.insert((purge_at, Key::Login(id)));
    }
}

/// In-process [`Store`].
pub struct MemoryStore {
    inner: Mutex<Inner>,
    notifier: Notifier,
    ttls: Ttls,
    events_on: AtomicBool,
}

impl MemoryStore {
    pub fn new(ttls: Ttls) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            notifier: Notifier::new(),
            ttls,
            events_on: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of logins held (including final ones in their grace period).
    pub fn len(&self) -> usize {
        self.lock().logins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The one critical section of every transition: look the login up,
    /// let `step` decide, store the result, then wake watchers (after the
    /// lock is released).
    fn transition(
        &self,
        id: &LoginId,
        now_ms: u64,
        step: impl FnOnce(&mut LoginRecord) -> TransitionResult<bool>,
    ) -> TransitionResult<LoginRecord> {
        let rec = {
            let mut inner = self.lock();
            inner.purge(now_ms);
            let Some((rec, _)) = inner.logins.get(id) else {
                return Err(TransitionError::NotFound);
            };
            let mut rec = rec.clone();
            if !step(&mut rec)? {
                return Ok(rec);
            }
            rec.version += 1;
            let purge_at = self.purge_at(&rec, now_ms);
            inner.put_login(rec.clone(), purge_at);
            if self.events_on.load(Ordering::Relaxed) {
                if let Some(event) = Event::of_transition(&rec, now_ms) {
                    inner.push_event(event);
                }
            }
            rec
        };
        self.notifier.notify(
            id,
            Hint::Changed {
                version: rec.version,
                state: rec.state,
                user: rec.user.clone(),
                match_required: rec.match_required,
            },
        );
        Ok(rec)
    }

    fn purge_at(&self, rec: &LoginRecord, now_ms: u64) -> u64 {
        if rec.state.is_final() {
            now_ms + self.ttls.final_keep_ms
        } else {
            rec.expires_at_ms + self.ttls.final_keep_ms
        }
    }
}

/// Checks that applies to every browser-side call: the secret must match
/// (else the login "does not exist") and the login must not have expired.
fn browser_check(rec: &LoginRecord, secret: &SecretHash, now_ms: u64) -> TransitionResult<State> {
    if !rec.secret_hash.ct_eq(secret) {
        return Err(TransitionError::NotFound);
    }
    match rec.state_at(now_ms) {
        State::Expired => Err(TransitionError::Expired),
        s => Ok(s),
    }
}

/// Checks for phone-side calls after scan: not expired, scanned by `user_id`.
fn scanner_check(rec: &LoginRecord, user_id: &str, now_ms: u64) -> TransitionResult<()> {
    match rec.state_at(now_ms) {
        State::Expired => Err(TransitionError::Expired),
        State::Pending => Err(TransitionError::WrongState(State::Pending)),
        s => {
            if rec.user.is_none() {
                // Finished (e.g. cancelled) before anyone scanned it.
                Err(TransitionError::WrongState(s))
            } else if rec.user.as_ref().is_some_and(|u| u.id != user_id) {
                Err(TransitionError::WrongUser)
            } else if s != State::Scanned {
                Err(TransitionError::WrongState(s))
            } else {
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    async fn create(&self, login: NewLogin, now_ms: u64) -> Result<LoginRecord, StoreError> {
        let rec = LoginRecord::pending(login, now_ms, self.ttls.pending_ms);
        let mut inner = self.lock();
        inner.purge(now_ms);
        let purge_at = self.purge_at(&rec, now_ms);
        inner.put_login(rec.clone(), purge_at);
        Ok(rec)
    }

    async fn get(&self, id: &LoginId, now_ms: u64) -> Result<Option<LoginRecord>, StoreError> {
        Ok(self
            .lock()
            .logins
            .get(id)
            .filter(|(_, purge_at)| *purge_at > now_ms)
            .map(|(r, _)| r.clone()))
    }

    /// In-process hints reach every watcher: a plain read.
    async fn get_watched(
        &self,
        id: &LoginId,
        now_ms: u64,
    ) -> Result<Option<LoginRecord>, StoreError> {
        self.get(id, now_ms).await
    }

    async fn scan_assessed(
        &self,
        id: &LoginId,
        user: &User,
        policy: &ScanPolicy,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        let ext = self.ttls.scan_extension_ms;
        self.transition(id, now_ms, |rec| match rec.state_at(now_ms) {
            State::Expired => Err(TransitionError::Expired),
            State::Pending => {
                rec.state = State::Scanned;
                rec.user = Some(user.clone());
                rec.expires_at_ms += ext;
                rec.risk = policy.assess(&rec.browser);
                rec.match_required = rec.match_code.is_some()
                    && policy
                        .matching
                        .requires_with(&rec.browser.ip, rec.risk.as_ref());
                Ok(true)
            }
            s => match &rec.user {
                Some(u) if u.id == user.id && s == State::Scanned => Ok(false),
                Some(u) if u.id != user.id => Err(TransitionError::WrongUser),
                _ => Err(TransitionError::WrongState(s)),
            },
        })
    }

    async fn approve_checked(
        &self,
        id: &LoginId,
        user_id: &str,
        approval: &Approval,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        let match_code = approval.match_code;
        let rec = self.transition(id, now_ms, |rec| {
            scanner_check(rec, user_id, now_ms)?;
            if rec.presence_required() && !approval.confirm_presence {
                return Err(TransitionError::PresenceRequired);
            }
            rec.state = if rec.match_required && match_code != rec.match_code {
                State::Denied
            } else {
                State::Approved
            };
            Ok(true)
        })?;
        if rec.state == State::Denied {
            return Err(TransitionError::WrongMatchCode);
        }
        Ok(rec)
    }

    async fn deny(
        &self,
        id: &LoginId,
        user_id: &str,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        self.transition(id, now_ms, |rec| {
            scanner_check(rec, user_id, now_ms)?;
            rec.state = State::Denied;
            Ok(true)
        })
    }

    async fn cancel(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        now_ms: u64,
    ) -> TransitionResult<LoginRecord> {
        self.transition(id, now_ms, |rec| {
            match browser_check(rec, secret, now_ms)? {
                State::Pending | State::Scanned | State::Approved => {
                    rec.state = State::Cancelled;
                    Ok(true)
                }
                s => Err(TransitionError::WrongState(s)),
            }
        })
    }

    async fn redeem(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        token: &SessionToken,
        now_ms: u64,
    ) -> TransitionResult<User> {
        let key = (token.login_id(), *token.hash().as_bytes());
        // The same redeem again (its session exists) gets the same answer,
        // as in the Redis store, where a resent command can run twice.
        let retried = self.lock().sessions.contains_key(&key);
        let rec = self.transition(id, now_ms, |rec| {
            match browser_check(rec, secret, now_ms)? {
                State::Approved => {
                    rec.state = State::Consumed;
                    Ok(true)
                }
                State::Consumed if retried && rec.user.is_some() => Ok(false),
                s => Err(TransitionError::WrongState(s)),
            }
        })?;
        if retried {
            return rec
                .user
                .ok_or_else(|| StoreError::Corrupt("consumed login without a user".into()).into());
        }
        let user = rec
            .user
            .ok_or_else(|| StoreError::Corrupt("approved login without a user".into()))?;
        let expires = now_ms + self.ttls.session_ms;
        let mut inner = self.lock();
        if inner.revoked_logins.contains(id) {
            // The user logged out everywhere between approve and now.
            return Err(TransitionError::NotFound);
        }
        inner.session_info.insert(
            *id,
            (
                SessionInfo {
                    sid: *id,
                    user_id: user.id.clone(),
                    created_at_ms: now_ms,
                    expires_at_ms: expires,
                    ip: rec.browser.ip.clone(),
                    user_agent: rec.browser.user_agent.clone(),
                    place: rec.browser.place.clone(),
                },
                key.1,
            ),
        );
        inner.sessions.insert(
            key,
            (
                Session {
                    user: user.clone(),
                    expires_at_ms: expires,
                },
                expires,
            ),
        );
        inner.expiry.insert((expires, Key::Session(key.0, key.1)));
        Ok(user)
    }

    async fn session(
        &self,
        session: &SessionRef,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .sessions
            .get(&(session.login_id(), *session.hash().as_bytes()))
            .filter(|(s, _)| s.expires_at_ms > now_ms)
            .map(|(s, _)| s.clone()))
    }

    async fn revoke_session(&self, session: &SessionRef) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let removed = inner.remove_session(session.login_id(), *session.hash().as_bytes());
        if let Some(s) = removed {
            if self.events_on.load(Ordering::Relaxed) {
                // No caller clock here: the wall clock dates the event.
                let now_ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
                inner.push_event(Event::revoked(session.login_id(), s.user, now_ms));
            }
        }
        Ok(())
    }

    fn set_events(&self, on: bool) {
        self.events_on.store(on, Ordering::Relaxed);
    }

    async fn events_take(
        &self,
        consumer: &str,
        max: usize,
        idle_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        let mut inner = self.lock();
        inner.consumers.insert(consumer.to_string(), now_ms);
        // Consumers silent for the bound are dead: all they hold is taken
        // over at once, in order (as on Redis).
        let dead: Vec<String> = inner
            .consumers
            .iter()
            .filter(|(name, seen)| *name != consumer && now_ms.saturating_sub(**seen) >= idle_ms)
            .map(|(name, _)| name.clone())
            .collect();
        let mut taken = Vec::new();
        let mut fresh = Vec::new();
        for (seq, (_, holder)) in inner.events.iter() {
            match holder {
                Some((who, _)) if dead.contains(who) => taken.push(*seq),
                Some(_) => {}
                None => fresh.push(*seq),
            }
        }
        let mut out = Vec::new();
        for seq in taken.into_iter().chain(fresh).take(max) {
            if let Some((event, holder)) = inner.events.get_mut(&seq) {
                *holder = Some((consumer.to_string(), now_ms));
                out.push(QueuedEvent {
                    receipt: seq.to_string(),
                    event: event.clone(),
                });
            }
        }
        let holding: BTreeSet<String> = inner
            .events
            .values()
            .filter_map(|(_, h)| h.as_ref().map(|(who, _)| who.clone()))
            .collect();
        for name in dead {
            if !holding.contains(&name) {
                inner.consumers.remove(&name);
            }
        }
        Ok(out)
    }

    async fn events_hold(
        &self,
        consumer: &str,
        receipts: &[String],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.consumers.insert(consumer.to_string(), now_ms);
        for r in receipts {
            let Ok(seq) = r.parse::<u64>() else { continue };
            // Like Redis's XCLAIM: the holder is `consumer` from now.
            if let Some((_, holder @ Some(_))) = inner.events.get_mut(&seq) {
                *holder = Some((consumer.to_string(), now_ms));
            }
        }
        Ok(())
    }

    async fn events_ack(&self, receipts: &[String]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        for r in receipts {
            if let Ok(seq) = r.parse::<u64>() {
                inner.events.remove(&seq);
            }
        }
        Ok(())
    }

    async fn user_sessions(
        &self,
        user_id: &str,
        now_ms: u64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        let inner = self.lock();
        let mut list: Vec<SessionInfo> = inner
            .session_info
            .values()
            .filter(|(info, hash)| {
                info.user_id == user_id
                    && info.expires_at_ms > now_ms
                    && inner.sessions.contains_key(&(info.sid, *hash))
            })
            .map(|(info, _)| info.clone())
            .collect();
        list.sort_by_key(|i| (i.created_at_ms, i.sid));
        Ok(list)
    }

    async fn revoke_user_session(
        &self,
        user_id: &str,
        sid: &LoginId,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let events = self.events_on.load(Ordering::Relaxed);
        Ok(self.lock().revoke_sid(user_id, *sid, now_ms, events))
    }

    async fn revoke_user_sessions(&self, user_id: &str, now_ms: u64) -> Result<u64, StoreError> {
        let events = self.events_on.load(Ordering::Relaxed);
        let mut inner = self.lock();
        let mut sids: HashSet<LoginId> = inner
            .session_info
            .values()
            .filter(|(i, _)| i.user_id == user_id)
            .map(|(i, _)| i.sid)
            .collect();
        sids.extend(
            inner
                .logins
                .values()
                .filter(|(r, _)| r.user.as_ref().is_some_and(|u| u.id == user_id))
                .map(|(r, _)| r.id),
        );
        Ok(sids
            .into_iter()
            .filter(|sid| inner.revoke_sid(user_id, *sid, now_ms, events))
            .count() as u64)
    }

    async fn put_mobile_token(
        &self,
        hash: &SecretHash,
        user: &User,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.purge(now_ms);
        let at = now_ms + ttl_ms;
        inner.mobile.insert(*hash.as_bytes(), (user.clone(), at));
        inner.expiry.insert((at, Key::Mobile(*hash.as_bytes())));
        Ok(())
    }

    async fn mobile_token(
        &self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<(User, u64)>, StoreError> {
        Ok(self
            .lock()
            .mobile
            .get(hash.as_bytes())
            .filter(|(_, at)| *at > now_ms)
            .cloned())
    }

    async fn put_grant(
        &self,
        key: &GrantKey,
        value: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.purge(now_ms);
        let at = now_ms + ttl_ms;
        if let Some((_, _, old)) = inner.grants.insert(*key, (value.to_string(), false, at)) {
            inner.expiry.remove(&(old, Key::Grant(*key)));
        }
        inner.expiry.insert((at, Key::Grant(*key)));
        Ok(())
    }

    async fn grant(&self, key: &GrantKey, now_ms: u64) -> Result<Option<String>, StoreError> {
        Ok(self
            .lock()
            .grants
            .get(key)
            .filter(|(_, _, at)| *at > now_ms)
            .map(|(v, _, _)| v.clone()))
    }

    async fn take_grant(&self, key: &GrantKey, now_ms: u64) -> Result<Option<Taken>, StoreError> {
        let mut inner = self.lock();
        let Some((v, used, at)) = inner.grants.get_mut(key) else {
            return Ok(None);
        };
        if *at <= now_ms {
            return Ok(None);
        }
        let first = !*used;
        *used = true;
        Ok(Some(if first {
            Taken::First(v.clone())
        } else {
            Taken::Again(v.clone())
        }))
    }

    async fn delete_grant(&self, key: &GrantKey) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if let Some((_, _, at)) = inner.grants.remove(key) {
            inner.expiry.remove(&(at, Key::Grant(*key)));
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn ttls(&self) -> Ttls {
        self.ttls
    }
}
