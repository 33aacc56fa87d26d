//! Waiting for a login to change, for SSE and long-poll alike.
//!
//! The order matters: register with the notifier *first*, then read the
//! store, so a transition that lands between the two still wakes us. After
//! that the common case costs no store reads at all: hints carry the new
//! state and version. The store is read again only when a hint says so
//! (pub/sub reconnected), at the expiry deadline (to confirm it, since a scan
//! may have extended it), and on a backstop timer when the hint feed has not
//! proved alive within the backstop interval (a hint may have been lost).

use crate::app::AppState;
use crate::error::ApiError;
use qrlogin_core::{BrowserSecret, Hint, LoginId, LoginRecord, Registration, State};
use std::time::Duration;

pub struct Watcher {
    app: AppState,
    reg: Registration,
    /// The last known record (updated from hints and re-reads).
    pub rec: LoginRecord,
    /// The state last handed to the caller.
    reported: State,
}

impl Watcher {
    /// Opens a watch for the holder of `secret`. Unknown, wrong secret,
    /// expired and consumed logins are all the same 404.
    pub async fn open(
        app: &AppState,
        id: LoginId,
        secret: &BrowserSecret,
    ) -> Result<Self, ApiError> {
        let reg = app.store.notifier().register(id);
        let rec = app
            .store
            .get(&id, app.now_ms())
            .await?
            .ok_or(ApiError::NotFound)?;
        if !rec.secret_hash.ct_eq(&secret.hash()) {
            return Err(ApiError::NotFound);
        }
        let reported = rec.state_at(app.now_ms());
        if matches!(reported, State::Expired | State::Consumed) {
            return Err(ApiError::NotFound);
        }
        Ok(Self {
            app: app.clone(),
            reg,
            rec,
            reported,
        })
    }

    /// The state as of now.
    pub fn current(&self) -> State {
        self.rec.state_at(self.app.now_ms())
    }

    /// The state last returned by [`open`](Self::open) or [`next`](Self::next).
    pub fn reported(&self) -> State {
        self.reported
    }

    /// Waits until the state differs from the one last reported, and
    /// returns it. Never returns for a final state (callers stop there).
    pub async fn next(&mut self) -> Result<State, ApiError> {
        loop {
            let cur = self.current();
            if cur != self.reported {
                self.reported = cur;
                return Ok(cur);
            }
            if cur.is_final() {
                std::future::pending::<()>().await;
            }
            let until_expiry =
                Duration::from_millis(self.rec.expires_at_ms.saturating_sub(self.app.now_ms()) + 5);
            tokio::select! {
                hint = self.reg.next() => match hint {
                    Hint::Changed { version, state, user } => {
                        if version == self.rec.version + 1 {
                            if state == State::Scanned && self.rec.state == State::Pending {
                                // The scan script extended expiry by exactly this.
                                self.rec.expires_at_ms += self.app.store.ttls().scan_extension_ms;
                            }
                            self.rec.version = version;
                            self.rec.state = state;
                            if user.is_some() {
                                self.rec.user = user;
                            }
                        } else if version > self.rec.version {
                            // Hints collapsed (we missed one, e.g. the scan
                            // that moved the expiry): the record is the truth.
                            self.reread().await?;
                        }
                    }
                    Hint::Reread | Hint::None => self.reread().await?,
                },
                _ = tokio::time::sleep(until_expiry) => self.reread().await?,
                _ = tokio::time::sleep(self.app.backstop) => {
                    // Only when hints may have been lost: a healthy feed
                    // makes waiting free of store reads.
                    if !self.app.store.notifier().reliable_within(self.app.backstop) {
                        self.reread().await?;
                    }
                }
            }
        }
    }

    async fn reread(&mut self) -> Result<(), ApiError> {
        metrics::counter!("qrlogin_watch_rereads_total").increment(1);
        match self.app.store.get(&self.rec.id, self.app.now_ms()).await? {
            Some(rec) if rec.version >= self.rec.version => self.rec = rec,
            Some(_) => {}
            // Purged after its grace period: whatever it was, it is over.
            None => {
                if !self.rec.state.is_final() {
                    self.rec.state = State::Expired;
                }
            }
        }
        Ok(())
    }
}
