//! The audit log (`--audit-log stderr|FILE`): one JSON line per login
//! transition and per session event, written by a [`Store`] wrapper, so
//! every path that changes a login (the browser and phone APIs, the OpenID
//! and device faces, every revoke) is logged without each handler knowing.
//!
//! A line holds the event type, login id, user id, the browser's IP,
//! `place` (with `--geoip-db`) and `risk` (the scan's verdict), client id
//! and time; never a secret, token or hash of one: the wrapper only ever
//! reads records and the session reference's login id.

use crate::routes::browser::rfc3339;
use async_trait::async_trait;
use qrlogin_core::{
    Approval, GrantKey, LoginId, LoginRecord, NewLogin, Notifier, QueuedEvent, ScanPolicy,
    SecretHash, Session, SessionInfo, SessionRef, SessionToken, Store, StoreError, Taken,
    TransitionError, Ttls, User,
};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Where lines go.
pub enum AuditSink {
    Stderr,
    File(Mutex<std::fs::File>),
}

impl AuditSink {
    /// `stderr`, or a file opened for appending (created if missing).
    pub fn open(target: &str) -> anyhow::Result<Self> {
        if target == "stderr" {
            return Ok(Self::Stderr);
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)
            .map_err(|e| anyhow::anyhow!("--audit-log {target}: {e}"))?;
        Ok(Self::File(Mutex::new(file)))
    }

    fn write(&self, line: &str) {
        let mut buf = line.as_bytes().to_vec();
        buf.push(b'\n');
        // One write per line, so lines from many tasks never interleave.
        let r = match self {
            AuditSink::Stderr => std::io::stderr().lock().write_all(&buf),
            AuditSink::File(f) => f.lock().unwrap_or_else(|p| p.into_inner()).write_all(&buf),
        };
        if let Err(e) = r {
            tracing::warn!(error = %e, "audit log write failed");
        }
    }
}

/// A [`Store`] that writes an audit line after every successful transition
/// and session event of the store it wraps.
pub struct AuditedStore {
    inner: Arc<dyn Store>,
    sink: AuditSink,
}

impl AuditedStore {
    pub fn new(inner: Arc<dyn Store>, sink: AuditSink) -> Self {
        Self { inner, sink }
    }

    fn line(
        &self,
        kind: &str,
        login_id: &LoginId,
        user_id: Option<&str>,
        rec: Option<&LoginRecord>,
        at_ms: u64,
    ) {
        let ip = rec.map(|r| r.browser.ip.as_str()).filter(|s| !s.is_empty());
        let client_id = rec.and_then(|r| r.client_id.as_deref());
        let line = json!({
            "timestamp": rfc3339(at_ms),
            "type": kind,
            "login_id": login_id.to_string(),
            "user_id": user_id,
            "ip": ip,
            "place": rec.and_then(|r| r.browser.place.as_ref()),
            "risk": rec.and_then(|r| r.risk.as_ref()),
            "client_id": client_id,
        });
        self.sink.write(&line.to_string());
    }

    fn transition(&self, kind: &str, rec: &LoginRecord, now_ms: u64) {
        self.line(
            kind,
            &rec.id,
            rec.user.as_ref().map(|u| u.id.as_str()),
            Some(rec),
            now_ms,
        );
    }
}

fn wall_ms() -> u64 {
    qrlogin_core::Clock::now_ms(&qrlogin_core::SystemClock)
}

#[async_trait]
impl Store for AuditedStore {
    fn notifier(&self) -> &Notifier {
        self.inner.notifier()
    }

    async fn create(&self, login: NewLogin, now_ms: u64) -> Result<LoginRecord, StoreError> {
        let rec = self.inner.create(login, now_ms).await?;
        self.transition("login.created", &rec, now_ms);
        Ok(rec)
    }

    async fn get(&self, id: &LoginId, now_ms: u64) -> Result<Option<LoginRecord>, StoreError> {
        self.inner.get(id, now_ms).await
    }

    async fn get_watched(
        &self,
        id: &LoginId,
        now_ms: u64,
    ) -> Result<Option<LoginRecord>, StoreError> {
        self.inner.get_watched(id, now_ms).await
    }

    async fn scan_assessed(
        &self,
        id: &LoginId,
        user: &User,
        policy: &ScanPolicy,
        now_ms: u64,
    ) -> Result<LoginRecord, TransitionError> {
        let rec = self.inner.scan_assessed(id, user, policy, now_ms).await?;
        self.transition("login.scanned", &rec, now_ms);
        Ok(rec)
    }

    async fn approve_checked(
        &self,
        id: &LoginId,
        user_id: &str,
        approval: &Approval,
        now_ms: u64,
    ) -> Result<LoginRecord, TransitionError> {
        match self
            .inner
            .approve_checked(id, user_id, approval, now_ms)
            .await
        {
            Ok(rec) => {
                self.transition("login.approved", &rec, now_ms);
                Ok(rec)
            }
            Err(TransitionError::WrongMatchCode) => {
                let rec = self.inner.get(id, now_ms).await.ok().flatten();
                self.line("login.denied", id, Some(user_id), rec.as_ref(), now_ms);
                Err(TransitionError::WrongMatchCode)
            }
            Err(e) => Err(e),
        }
    }

    async fn deny(
        &self,
        id: &LoginId,
        user_id: &str,
        now_ms: u64,
    ) -> Result<LoginRecord, TransitionError> {
        let rec = self.inner.deny(id, user_id, now_ms).await?;
        self.transition("login.denied", &rec, now_ms);
        Ok(rec)
    }

    async fn cancel(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        now_ms: u64,
    ) -> Result<LoginRecord, TransitionError> {
        let rec = self.inner.cancel(id, secret, now_ms).await?;
        self.transition("login.cancelled", &rec, now_ms);
        Ok(rec)
    }

    async fn redeem(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        token: &SessionToken,
        now_ms: u64,
    ) -> Result<User, TransitionError> {
        let user = self.inner.redeem(id, secret, token, now_ms).await?;
        // The record is kept for the final-state grace period: its IP and
        // client go in the line (one extra read, only with the log on).
        let rec = self.inner.get(id, now_ms).await.ok().flatten();
        self.line("login.consumed", id, Some(&user.id), rec.as_ref(), now_ms);
        Ok(user)
    }

    async fn session(
        &self,
        session: &SessionRef,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError> {
        self.inner.session(session, now_ms).await
    }

    async fn revoke_session(&self, session: &SessionRef) -> Result<(), StoreError> {
        let now = wall_ms();
        let before = self.inner.session(session, now).await.ok().flatten();
        self.inner.revoke_session(session).await?;
        if let Some(s) = before {
            self.line(
                "session.revoked",
                &session.login_id(),
                Some(&s.user.id),
                None,
                now,
            );
        }
        Ok(())
    }

    async fn user_sessions(
        &self,
        user_id: &str,
        now_ms: u64,
    ) -> Result<Vec<SessionInfo>, StoreError> {
        self.inner.user_sessions(user_id, now_ms).await
    }

    async fn revoke_user_session(
        &self,
        user_id: &str,
        sid: &LoginId,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let revoked = self.inner.revoke_user_session(user_id, sid, now_ms).await?;
        if revoked {
            self.line("session.revoked", sid, Some(user_id), None, now_ms);
        }
        Ok(revoked)
    }

    async fn revoke_user_sessions(&self, user_id: &str, now_ms: u64) -> Result<u64, StoreError> {
        let count = self.inner.revoke_user_sessions(user_id, now_ms).await?;
        // One line for "log out everywhere": who, when, how many.
        let line = json!({
            "timestamp": rfc3339(now_ms),
            "type": "session.revoked_all",
            "user_id": user_id,
            "count": count,
        });
        self.sink.write(&line.to_string());
        Ok(count)
    }

    async fn put_mobile_token(
        &self,
        hash: &SecretHash,
        user: &User,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.inner
            .put_mobile_token(hash, user, ttl_ms, now_ms)
            .await
    }

    async fn mobile_token(
        &self,
        hash: &SecretHash,
        now_ms: u64,
    ) -> Result<Option<(User, u64)>, StoreError> {
        self.inner.mobile_token(hash, now_ms).await
    }

    async fn put_grant(
        &self,
        key: &GrantKey,
        value: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.inner.put_grant(key, value, ttl_ms, now_ms).await
    }

    async fn grant(&self, key: &GrantKey, now_ms: u64) -> Result<Option<String>, StoreError> {
        self.inner.grant(key, now_ms).await
    }

    async fn take_grant(&self, key: &GrantKey, now_ms: u64) -> Result<Option<Taken>, StoreError> {
        self.inner.take_grant(key, now_ms).await
    }

    async fn delete_grant(&self, key: &GrantKey) -> Result<(), StoreError> {
        self.inner.delete_grant(key).await
    }

    fn set_events(&self, on: bool) {
        self.inner.set_events(on)
    }

    async fn events_take(
        &self,
        consumer: &str,
        max: usize,
        idle_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<QueuedEvent>, StoreError> {
        self.inner.events_take(consumer, max, idle_ms, now_ms).await
    }

    async fn events_hold(
        &self,
        consumer: &str,
        receipts: &[String],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.inner.events_hold(consumer, receipts, now_ms).await
    }

    async fn events_ack(&self, receipts: &[String]) -> Result<(), StoreError> {
        self.inner.events_ack(receipts).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    fn ttls(&self) -> Ttls {
        self.inner.ttls()
    }
}
