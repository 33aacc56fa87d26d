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
use qrlogin_core::{BrowserSecret, Hint, LoginId, LoginRecord, Registration, State, User};
use std::time::Duration;

/// What a watcher keeps of its login: what the browser is shown, and the
/// id to re-read it by.
///
/// Not the whole [`LoginRecord`]: its browser context (IP and User-Agent
/// strings), secret hash and timestamps would sit in memory for every
/// waiting browser, for nothing.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: LoginId,
    /// The state as last written; [`Seen::state_at`] for the state as of now.
    pub state: State,
    pub version: u64,
    pub expires_at_ms: u64,
    /// Who scanned, once scanned.
    pub user: Option<User>,
    /// The number-matching code, and whether the scan asked the phone for
    /// it (then the browser is shown it).
    pub match_code: Option<u8>,
    pub match_required: bool,
}

impl Seen {
    fn of(rec: LoginRecord) -> Self {
        Self {
            id: rec.id,
            state: rec.state,
            version: rec.version,
            expires_at_ms: rec.expires_at_ms,
            user: rec.user,
            match_code: rec.match_code,
            match_required: rec.match_required,
        }
    }

    /// Like [`LoginRecord::state_at`]: a pending login past its expiry is
    /// expired even before anybody wrote that down.
    pub fn state_at(&self, now_ms: u64) -> State {
        self.state.at(self.expires_at_ms, now_ms)
    }
}

pub struct Watcher {
    app: AppState,
    reg: Registration,
    /// The last known state of the login (updated from hints and re-reads).
    pub rec: Seen,
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
            .get_watched(&id, app.now_ms())
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
            rec: Seen::of(rec),
            reported,
        })
    }

    /// The service this watcher belongs to.
    pub fn app(&self) -> &AppState {
        &self.app
    }

    /// The app's clock.
    pub fn now_ms(&self) -> u64 {
        self.app.now_ms()
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
            // One timer for whichever comes first, expiry or backstop: a
            // waiting browser holds this future for as long as it waits, and
            // each timer is over a hundred bytes of it.
            let expiry_first = until_expiry <= self.app.backstop;
            tokio::select! {
                hint = self.reg.next() => match hint {
                    Hint::Changed { version, state, user, match_required } => {
                        if version == self.rec.version + 1 {
                            if state == State::Scanned && self.rec.state == State::Pending {
                                // The scan script extended expiry by exactly this.
                                self.rec.expires_at_ms += self.app.store.ttls().scan_extension_ms;
                            }
                            self.rec.version = version;
                            self.rec.state = state;
                            self.rec.match_required = match_required;
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
                _ = tokio::time::sleep(until_expiry.min(self.app.backstop)) => {
                    // At expiry: confirm it (a scan may have extended it).
                    // At the backstop: only when hints may have been lost;
                    // a healthy feed makes waiting free of store reads.
                    if expiry_first
                        || !self.app.store.notifier().reliable_within(self.app.backstop)
                    {
                        self.reread().await?;
                    }
                }
            }
        }
    }

    /// Like [`next`](Self::next), for a stream that should outlive a short
    /// store outage: when a re-read fails, it is retried with backoff
    /// (250 ms doubling to 4 s) instead of ending the wait, so an open SSE
    /// stream (whose keep-alives go on meanwhile) reports the next change
    /// once the store answers again. A browser that reconnected instead
    /// would get only 503s until then, and each reconnect costs it a
    /// retry delay.
    ///
    /// Returns `None` (end the stream, claiming nothing) once the login
    /// would be over anyway: the store has not answered by its known expiry
    /// plus the final keep.
    pub async fn next_riding_out_outages(&mut self) -> Option<State> {
        loop {
            if let Ok(state) = self.next().await {
                return Some(state);
            }
            let give_up_at = self.rec.expires_at_ms + self.app.store.ttls().final_keep_ms;
            let mut backoff = Duration::from_millis(250);
            loop {
                let now = self.app.now_ms();
                if now >= give_up_at {
                    return None;
                }
                let left = Duration::from_millis(give_up_at - now);
                tokio::time::sleep(backoff.min(left)).await;
                metrics::counter!("qrlogin_watch_store_retries_total").increment(1);
                if self.reread().await.is_ok() {
                    break;
                }
                backoff = (backoff * 2).min(Duration::from_secs(4));
            }
        }
    }

    async fn reread(&mut self) -> Result<(), ApiError> {
        metrics::counter!("qrlogin_watch_rereads_total").increment(1);
        match self.app.store.get(&self.rec.id, self.app.now_ms()).await? {
            Some(rec) if rec.version >= self.rec.version => self.rec = Seen::of(rec),
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
