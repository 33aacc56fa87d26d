//! Adversarial suite, part 7: fail closed (SECURITY.md, property 8). Any
//! store error at any transition means no login, never a half-done one:
//! a clean 503 `store_unavailable` with `Retry-After`, no session, no
//! secret handed out, and after recovery nothing can be redeemed (twice or
//! at all) from before the failure, while fresh logins work.
//!
//! * Redis: the private redis-server is SIGKILLed right before create,
//!   scan, approve and redeem, and once while the browser waits on SSE;
//!   then restarted (empty, like a Redis without persistence after a
//!   crash).
//! * Both stores: a store wrapper fails one chosen operation, either
//!   *before* it reaches the store (nothing happened) or *after* it did
//!   (the change happened but its answer was lost, as on a timeout): the
//!   second case is the dangerous one; a retry must never yield a second
//!   approval or session.

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use async_trait::async_trait;
use common::*;
use qrlogin_core::{
    Approval, LoginId, LoginRecord, MemoryStore, NewLogin, Notifier, ScanPolicy, SecretHash,
    Session, SessionRef, SessionToken, Store, StoreError, TransitionError, Ttls, User,
};
use reqwest::StatusCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

per_store!(store_error_at_each_transition_fails_closed);

// ---------------------------------------------------------------------------
// helpers

/// Asserts a clean 503: `store_unavailable`, `Retry-After`, no cookie, and
/// none of `secrets` in the body.
fn assert_503(r: &Reply, what: &str) {
    assert_eq!(
        r.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {}",
        r.text()
    );
    r.assert_error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable");
    assert!(r.headers.contains_key("retry-after"), "{what}: Retry-After");
    assert!(r.set_cookies().is_empty(), "{what}: set a cookie");
    let v = r.json();
    for f in ["token", "browser_secret", "login_id", "user"] {
        assert!(v.get(f).is_none(), "{what}: 503 with {f}: {v}");
    }
}

async fn wait_ready(app: &App) {
    within("readyz after restart", async {
        loop {
            if send(raw_client().get(app.url("/readyz"))).await.status == StatusCode::OK {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn restart_redis(app: &mut App) {
    let mut redis = app.redis.take().expect("redis server");
    let redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    app.redis = Some(redis);
    wait_ready(app).await;
}

/// After a restart: a whole fresh login works, over SSE, exactly once.
async fn fresh_login_works(app: &App) {
    let browser = app.browser();
    let phone = app.phone(BOB).await; // tokens were in the lost Redis
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    phone.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;
    phone.approve_ok(&login.id).await;
    sse.expect_named("approved").await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], BOB_ID);
    browser
        .redeem(&login)
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
}

/// After a restart: the login from before the crash yields nothing.
async fn old_login_yields_nothing(app: &App, browser: &Browser, login: &Login) {
    let phone = app.phone(ALICE).await;
    browser
        .status(login, "")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    browser
        .redeem(login)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    phone
        .approve(&login.id)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    phone
        .scan(&login.id)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    browser
        .whoami()
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

/// A login alice has scanned while its browser waits on SSE (the
/// `pending` and `scanned` events read).
async fn scanned_on_sse(app: &App) -> (Browser, Phone, Login, SseStream) {
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    let mut sse = browser.events(&login, None).await;
    assert_eq!(sse.expect().await.state(), "pending");
    phone.scan_ok(&login.id).await;
    sse.expect_named("scanned").await;
    (browser, phone, login, sse)
}

async fn redis_app() -> App {
    let mut cfg = config();
    cfg.rate_limits = false;
    cfg.backstop = 1; // a waiting watcher re-reads (and notices) quickly
    app_with(StoreKind::Redis, cfg, None).await
}

fn kill(app: &mut App) {
    app.redis.as_mut().expect("redis server").kill();
}

// ---------------------------------------------------------------------------
// Redis killed at each transition

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_before_create_fails_closed() {
    let mut app = redis_app().await;
    kill(&mut app);
    let r = send(raw_client().post(app.url("/v1/logins"))).await;
    assert_503(&r, "create");
    let r = send(
        raw_client()
            .post(app.url("/v1/logins"))
            .json(&serde_json::json!({"binding": "header"})),
    )
    .await;
    assert_503(&r, "create, header binding");
    restart_redis(&mut app).await;
    fresh_login_works(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_before_scan_fails_closed() {
    let mut app = redis_app().await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    kill(&mut app);
    assert_503(&phone.scan(&login.id).await, "scan");
    assert_503(&browser.status(&login, "").await, "status");
    restart_redis(&mut app).await;
    // The old phone token was in Redis too: refused, not accepted blindly.
    phone
        .scan(&login.id)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    old_login_yields_nothing(&app, &browser, &login).await;
    fresh_login_works(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_before_approve_fails_closed() {
    let mut app = redis_app().await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    phone.scan_ok(&login.id).await;
    kill(&mut app);
    assert_503(&phone.approve(&login.id).await, "approve");
    assert_503(&phone.deny(&login.id).await, "deny");
    assert_503(&browser.redeem(&login).await, "redeem of a scanned login");
    restart_redis(&mut app).await;
    old_login_yields_nothing(&app, &browser, &login).await;
    fresh_login_works(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_before_redeem_fails_closed() {
    let mut app = redis_app().await;
    let browser = app.browser();
    let phone = app.phone(ALICE).await;
    let login = browser.create().await;
    phone.scan_ok(&login.id).await;
    phone.approve_ok(&login.id).await;
    kill(&mut app);
    for _ in 0..3 {
        assert_503(&browser.redeem(&login).await, "redeem");
    }
    assert_503(&browser.cancel(&login).await, "cancel");
    restart_redis(&mut app).await;
    // No stuck approved state: nothing to redeem, once or twice.
    old_login_yields_nothing(&app, &browser, &login).await;
    fresh_login_works(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_while_the_browser_waits_on_sse_fails_closed() {
    let mut app = redis_app().await;
    let (browser, phone, login, mut sse) = scanned_on_sse(&app).await;

    kill(&mut app);
    assert_503(&phone.approve(&login.id).await, "approve");
    // Reconnecting while it is down: 503, not a stream.
    let r = browser.events_reply(&login).await;
    assert_503(&r, "events while down");
    // The open stream rides the outage out (its re-reads fail and are
    // retried) ...
    wait_for_store_retries(&app).await;

    restart_redis(&mut app).await;
    // ... and once Redis answers again (empty: the login went with its
    // data), it says the login is over and ends, never claiming more.
    let mut after = Vec::new();
    within("the SSE stream to end after the restart", async {
        while let Some(ev) = sse.next().await {
            after.push(ev);
        }
    })
    .await;
    let states: Vec<String> = after.iter().map(|ev| ev.state()).collect();
    assert_eq!(states, ["expired"], "SSE after the restart: {after:?}");
    browser
        .events_reply(&login)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    old_login_yields_nothing(&app, &browser, &login).await;
    fresh_login_works(&app).await;
}

/// Redis stops answering (SIGSTOP) while the browser waits after the scan:
/// the SSE stream stays open through it, its failed re-reads retried, and
/// when Redis answers again the approval arrives on that same stream and
/// the login completes exactly once. (Ending the stream would send the
/// browser into reconnects that answer 503 for as long as the outage.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_stream_rides_out_a_stalled_redis_and_the_login_completes() {
    let mut app = redis_app().await;
    let (browser, phone, login, mut sse) = scanned_on_sse(&app).await;

    app.redis.as_mut().expect("redis server").freeze();
    assert_503(&phone.approve(&login.id).await, "approve while stalled");
    wait_for_store_retries(&app).await;
    app.redis.as_mut().expect("redis server").thaw();
    wait_ready(&app).await;

    phone.approve_ok(&login.id).await;
    sse.expect_named("approved").await;
    let v = browser.redeem(&login).await.ok_json(StatusCode::OK);
    assert_eq!(v["user"]["id"], ALICE_ID);
    sse.expect_named("consumed").await;
    sse.expect_end().await;
}

/// Waits until a waiting stream has retried a failed store read (the
/// counter `qrlogin_watch_store_retries_total` moved).
async fn wait_for_store_retries(app: &App) {
    within("an SSE stream to retry its store read", async {
        loop {
            let m = send(raw_client().get(app.url("/metrics"))).await;
            let retried = m
                .text()
                .lines()
                .find(|l| l.starts_with("qrlogin_watch_store_retries_total"))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0);
            if retried >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

// ---------------------------------------------------------------------------
// a store that fails one chosen operation, before or after it happens

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Create,
    Get,
    Scan,
    Approve,
    Deny,
    Cancel,
    Redeem,
    Session,
    MobileToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The operation never reaches the store.
    Before,
    /// The operation happens, but its answer is lost.
    After,
}

struct Faulty {
    inner: Arc<dyn Store>,
    plan: Mutex<Option<(Op, Phase)>>,
}

fn lost() -> StoreError {
    StoreError::Unavailable("injected fault".into())
}

impl Faulty {
    fn arm(&self, op: Op, phase: Phase) {
        *self.plan.lock().unwrap() = Some((op, phase));
    }
    /// The armed phase for `op`, once.
    fn take(&self, op: Op) -> Option<Phase> {
        let mut plan = self.plan.lock().unwrap();
        match *plan {
            Some((o, phase)) if o == op => {
                *plan = None;
                Some(phase)
            }
            _ => None,
        }
    }
    fn was_used(&self) -> bool {
        self.plan.lock().unwrap().is_none()
    }
}

/// Runs `$call` on the inner store unless a fault is armed for `$op`.
macro_rules! faulty {
    ($self:ident, $op:expr, $call:expr, $err:expr) => {
        match $self.take($op) {
            None => $call.await,
            Some(Phase::Before) => Err($err),
            Some(Phase::After) => {
                let _ = $call.await;
                Err($err)
            }
        }
    };
}

#[async_trait]
impl Store for Faulty {
    fn notifier(&self) -> &Notifier {
        self.inner.notifier()
    }
    async fn create(&self, login: NewLogin, now_ms: u64) -> Result<LoginRecord, StoreError> {
        faulty!(self, Op::Create, self.inner.create(login, now_ms), lost())
    }
    async fn get(&self, id: &LoginId, now_ms: u64) -> Result<Option<LoginRecord>, StoreError> {
        faulty!(self, Op::Get, self.inner.get(id, now_ms), lost())
    }
    async fn get_watched(
        &self,
        id: &LoginId,
        now_ms: u64,
    ) -> Result<Option<LoginRecord>, StoreError> {
        faulty!(self, Op::Get, self.inner.get_watched(id, now_ms), lost())
    }
    async fn scan_assessed(
        &self,
        id: &LoginId,
        user: &User,
        policy: &ScanPolicy,
        now_ms: u64,
    ) -> Result<LoginRecord, TransitionError> {
        faulty!(
            self,
            Op::Scan,
            self.inner.scan_assessed(id, user, policy, now_ms),
            lost().into()
        )
    }
    async fn approve_checked(
        &self,
        id: &LoginId,
        user_id: &str,
        approval: &Approval,
        now_ms: u64,
    ) -> Result<LoginRecord, TransitionError> {
        faulty!(
            self,
            Op::Approve,
            self.inner.approve_checked(id, user_id, approval, now_ms),
            lost().into()
        )
    }
    async fn deny(
        &self,
        id: &LoginId,
        user_id: &str,
        now_ms: u64,
    ) -> Result<LoginRecord, TransitionError> {
        faulty!(
            self,
            Op::Deny,
            self.inner.deny(id, user_id, now_ms),
            lost().into()
        )
    }
    async fn cancel(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        now_ms: u64,
    ) -> Result<LoginRecord, TransitionError> {
        faulty!(
            self,
            Op::Cancel,
            self.inner.cancel(id, secret, now_ms),
            lost().into()
        )
    }
    async fn redeem(
        &self,
        id: &LoginId,
        secret: &SecretHash,
        token: &SessionToken,
        now_ms: u64,
    ) -> Result<User, TransitionError> {
        faulty!(
            self,
            Op::Redeem,
            self.inner.redeem(id, secret, token, now_ms),
            lost().into()
        )
    }
    async fn session(
        &self,
        session: &SessionRef,
        now_ms: u64,
    ) -> Result<Option<Session>, StoreError> {
        faulty!(
            self,
            Op::Session,
            self.inner.session(session, now_ms),
            lost()
        )
    }
    async fn put_grant(
        &self,
        key: &qrlogin_core::GrantKey,
        value: &str,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.inner.put_grant(key, value, ttl_ms, now_ms).await
    }
    async fn grant(
        &self,
        key: &qrlogin_core::GrantKey,
        now_ms: u64,
    ) -> Result<Option<String>, StoreError> {
        self.inner.grant(key, now_ms).await
    }
    async fn take_grant(
        &self,
        key: &qrlogin_core::GrantKey,
        now_ms: u64,
    ) -> Result<Option<qrlogin_core::Taken>, StoreError> {
        self.inner.take_grant(key, now_ms).await
    }
    async fn delete_grant(&self, key: &qrlogin_core::GrantKey) -> Result<(), StoreError> {
        self.inner.delete_grant(key).await
    }
    async fn revoke_session(&self, session: &SessionRef) -> Result<(), StoreError> {
        self.inner.revoke_session(session).await
    }
    async fn user_sessions(
        &self,
        user_id: &str,
        now_ms: u64,
    ) -> Result<Vec<qrlogin_core::SessionInfo>, StoreError> {
        self.inner.user_sessions(user_id, now_ms).await
    }
    async fn revoke_user_session(
        &self,
        user_id: &str,
        sid: &LoginId,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.inner.revoke_user_session(user_id, sid, now_ms).await
    }
    async fn revoke_user_sessions(&self, user_id: &str, now_ms: u64) -> Result<u64, StoreError> {
        self.inner.revoke_user_sessions(user_id, now_ms).await
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
        faulty!(
            self,
            Op::MobileToken,
            self.inner.mobile_token(hash, now_ms),
            lost()
        )
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn ttls(&self) -> Ttls {
        self.inner.ttls()
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
    ) -> Result<Vec<qrlogin_core::QueuedEvent>, StoreError> {
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
}

async fn store_error_at_each_transition_fails_closed(kind: StoreKind) {
    let mut cfg = config();
    cfg.rate_limits = false;
    let (inner, _redis): (Arc<dyn Store>, _) = match kind {
        StoreKind::Memory => (Arc::new(MemoryStore::new(cfg.ttls())), None),
        StoreKind::Redis => {
            let server = redis_server().await;
            cfg.store = server.url();
            (redis_store(&server.url(), &cfg).await, Some(server))
        }
    };
    let faulty = Arc::new(Faulty {
        inner,
        plan: Mutex::new(None),
    });
    let app = spawn_on(cfg, faulty.clone(), None).await;
    let browser = app.browser();
    let alice = app.phone(ALICE).await;
    let bob = app.phone(BOB).await;
    let pending = || browser.create_header();
    let scanned = || async {
        let l = browser.create_header().await;
        alice.scan_ok(&l.id).await;
        l
    };
    let approved = || async {
        let l = scanned().await;
        alice.approve_ok(&l.id).await;
        l
    };

    for phase in [Phase::Before, Phase::After] {
        let tag = |what: &str| format!("{what} failing {phase:?}");

        // create: no login handed out.
        faulty.arm(Op::Create, phase);
        let r = send(
            raw_client()
                .post(app.url("/v1/logins"))
                .json(&serde_json::json!({"binding": "header"})),
        )
        .await;
        assert_503(&r, &tag("create"));
        assert!(faulty.was_used());

        // scan: never scanned by two users.
        let l = pending().await;
        faulty.arm(Op::Scan, phase);
        assert_503(&alice.scan(&l.id).await, &tag("scan"));
        let st = browser.state(&l).await;
        assert_eq!(
            st,
            if phase == Phase::Before {
                "pending"
            } else {
                "scanned"
            },
            "{}",
            tag("scan")
        );
        // Whoever scanned first (alice, if her scan happened) keeps it.
        let r = bob.scan(&l.id).await;
        match phase {
            Phase::Before => assert_eq!(r.ok_json(StatusCode::OK)["state"], "scanned"),
            Phase::After => r.assert_error(StatusCode::CONFLICT, "conflict"),
        }

        // approve: a retry never approves twice.
        let l = scanned().await;
        faulty.arm(Op::Approve, phase);
        assert_503(&alice.approve(&l.id).await, &tag("approve"));
        let retry = alice.approve(&l.id).await;
        match phase {
            Phase::Before => assert_eq!(retry.ok_json(StatusCode::OK)["state"], "approved"),
            Phase::After => retry.assert_error(StatusCode::CONFLICT, "conflict"),
        }
        assert_eq!(browser.state(&l).await, "approved");
        browser.redeem(&l).await.ok_json(StatusCode::OK);

        // deny: the login is not approvable afterwards if the deny happened.
        let l = scanned().await;
        faulty.arm(Op::Deny, phase);
        assert_503(&alice.deny(&l.id).await, &tag("deny"));
        if phase == Phase::After {
            alice
                .approve(&l.id)
                .await
                .assert_error(StatusCode::CONFLICT, "conflict");
            assert_eq!(browser.state(&l).await, "denied");
        }

        // cancel.
        let l = approved().await;
        faulty.arm(Op::Cancel, phase);
        assert_503(&browser.cancel(&l).await, &tag("cancel"));
        if phase == Phase::After {
            browser
                .redeem(&l)
                .await
                .assert_error(StatusCode::CONFLICT, "conflict");
        }

        // redeem: the answer is lost, so is the session; a retry never
        // yields one if the first happened.
        let l = approved().await;
        faulty.arm(Op::Redeem, phase);
        assert_503(&browser.redeem(&l).await, &tag("redeem"));
        let mut sessions = 0;
        for _ in 0..3 {
            let r = browser.redeem(&l).await;
            if r.status == StatusCode::OK {
                sessions += 1;
            } else {
                r.assert_error(StatusCode::CONFLICT, "conflict");
                assert!(r.set_cookies().is_empty());
            }
        }
        assert_eq!(
            sessions,
            usize::from(phase == Phase::Before),
            "{}",
            tag("redeem")
        );

        // reads: a failing read is a 503, never "not found" or a default.
        let l = approved().await;
        faulty.arm(Op::Get, phase);
        assert_503(&browser.status(&l, "").await, &tag("status"));
        // A freshly signed-in phone: its token is not yet in the
        // verifier's in-process cache, so the check must reach the store.
        let fresh = app.phone(ALICE).await;
        faulty.arm(Op::MobileToken, phase);
        assert_503(&fresh.scan(&l.id).await, &tag("token check"));
        let token = browser.redeem(&l).await.ok_json(StatusCode::OK)["token"]
            .as_str()
            .unwrap()
            .to_string();
        faulty.arm(Op::Session, phase);
        assert_503(&browser.whoami_bearer(&token).await, &tag("whoami"));
        assert_eq!(
            browser.whoami_bearer(&token).await.ok_json(StatusCode::OK)["user"]["id"],
            ALICE_ID
        );
    }
}
