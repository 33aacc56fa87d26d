//! The store contract: one suite of behaviour that every [`Store`] must show,
//! so the in-memory store and the Redis store cannot drift apart (SPEC §4:
//! "Both stores pass one shared contract test suite").
//!
//! The expected behaviour is [`MemoryStore`](qrlogin_core::MemoryStore)'s,
//! which is the reference semantics, checked against SPEC §2.
//!
//! Each case is a public async function taking a store factory, so a failure
//! names its case. The [`store_contract!`](crate::store_contract) macro
//! expands one `#[tokio::test]` per case; [`run_all`] runs them in sequence.
//!
//! Time is explicit: every call gets a `now_ms` chosen by the case, starting
//! at [`T0`]. Stores must decide expiry only by comparing the caller's
//! `now_ms` with what they stored, so no case sleeps to test expiry, and a
//! store whose own garbage collection used a different clock than its
//! callers' would fail here.

use qrlogin_core::risk::{assess, network_key};
use qrlogin_core::{
    network_of, Approval, BrowserContext, BrowserSecret, Coords, EventKind, Hint, LoginId,
    LoginRecord, MatchPolicy, MobileToken, NewLogin, Place, QueuedEvent, Registration, Risk,
    RiskCheck, RiskLevel, RiskReason, ScanPolicy, Session, SessionRef, SessionToken, State, Store,
    TransitionError, Ttls, User,
};
use std::any::Any;
use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// The start of time in every case (Nov 2023, in ms since the epoch).
pub const T0: u64 = 1_700_000_000_000;

/// The TTLs every case runs with (the SPEC defaults, a 1 h session).
pub const TTLS: Ttls = Ttls {
    pending_ms: 120_000,
    scan_extension_ms: 60_000,
    final_keep_ms: 30_000,
    session_ms: 3_600_000,
};

/// How long a case waits for a hint that must come (Redis delivers hints
/// through pub/sub, so they are asynchronous).
pub const HINT_WAIT: Duration = Duration::from_secs(5);

/// How long a case waits to be sure no hint comes.
pub const NO_HINT_WAIT: Duration = Duration::from_millis(200);

/// A store for one case, plus whatever must live as long as it (e.g. the
/// private `redis-server` behind it).
pub struct StoreUnderTest {
    // Fields drop in declaration order: the store goes before its guards
    // (a Redis store before its server).
    store: Arc<dyn Store>,
    keep: Vec<Box<dyn Any + Send + Sync>>,
}

impl StoreUnderTest {
    /// Wraps a store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            keep: Vec::new(),
        }
    }

    /// Keeps `guard` alive until the case ends, e.g. a
    /// [`RedisServer`](crate::RedisServer).
    pub fn keep<T: Any + Send + Sync>(mut self, guard: T) -> Self {
        self.keep.push(Box::new(guard));
        self
    }

    /// A shared handle, for cases that spawn concurrent callers.
    pub fn arc(&self) -> Arc<dyn Store> {
        self.store.clone()
    }
}

impl Deref for StoreUnderTest {
    type Target = dyn Store;
    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl From<Arc<dyn Store>> for StoreUnderTest {
    fn from(store: Arc<dyn Store>) -> Self {
        Self::new(store)
    }
}

impl<S: Store> From<Arc<S>> for StoreUnderTest {
    fn from(store: Arc<S>) -> Self {
        Self::new(store)
    }
}

async fn open<F, Fut, S>(make: &F) -> StoreUnderTest
where
    F: Fn(Ttls) -> Fut,
    Fut: Future<Output = S>,
    S: Into<StoreUnderTest>,
{
    make(TTLS).await.into()
}

macro_rules! cases {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// The names of all cases, in order; [`store_contract!`](crate::store_contract)
        /// checks that it expands every one of them.
        pub const CASES: &[&str] = &[$(stringify!($name)),*];

        $(
            $(#[$doc])*
            pub async fn $name<F, Fut, S>(make: F)
            where
                F: Fn(Ttls) -> Fut,
                Fut: Future<Output = S>,
                S: Into<StoreUnderTest>,
            {
                imp::$name(open(&make).await).await
            }
        )*

        /// Runs every case in sequence, each on a fresh store from `make`,
        /// printing each case's name to stderr before it runs so a failure
        /// is attributable. Prefer [`store_contract!`](crate::store_contract),
        /// which reports each case as its own test.
        pub async fn run_all<F, Fut, S>(make: F)
        where
            F: Fn(Ttls) -> Fut,
            Fut: Future<Output = S>,
            S: Into<StoreUnderTest>,
        {
            $(
                eprintln!("store contract case: {}", stringify!($name));
                $name(&make).await;
            )*
        }
    };
}

cases!(
    /// create returns the stored record and get reads it back unchanged.
    create_get_round_trip,
    /// A login made for a relying party keeps its client id through every
    /// transition, and its own pending lifetime decides its expiry.
    client_logins_keep_client_and_lifetime,
    /// Grants: put/get/delete round trip, expiry by the caller's clock,
    /// replacement, kinds kept apart.
    grants_round_trip_and_expire,
    /// take_grant: the first take is First, every later one Again (the
    /// replay is seen), an expired or unknown grant is None; of concurrent
    /// takes exactly one is First.
    grant_take_is_once,
    /// pending → scanned → approved → consumed; versions 1..4; scan extends
    /// the expiry once.
    happy_path,
    /// A second scan by the same user changes nothing (a reloaded page).
    rescan_same_user_is_idempotent,
    /// A scan by another user is WrongUser and changes nothing.
    scan_by_other_user_is_refused,
    /// Only the user who scanned may approve or deny.
    approve_deny_by_other_user_is_refused,
    /// approve/deny need a scan first.
    approve_deny_from_pending_is_wrong_state,
    /// denied is final: nothing moves it afterwards.
    deny_is_final,
    /// With number matching required, the right code approves; the scan
    /// records the requirement.
    match_code_right_pick_approves,
    /// With number matching required, a wrong or missing code denies the
    /// login (WrongMatchCode) and nothing can approve it afterwards.
    match_code_wrong_pick_denies,
    /// When the scan did not require matching (or the login has no code),
    /// approve needs no code.
    match_code_not_required_ignores_code,
    /// The browser can cancel from pending, scanned and approved.
    cancel_from_each_non_final_state,
    /// Cancel with the wrong secret is NotFound and changes nothing.
    cancel_with_wrong_secret_is_not_found,
    /// Redeem with the wrong secret is NotFound, even when approved.
    redeem_with_wrong_secret_is_not_found,
    /// Redeem before approval is WrongState.
    redeem_before_approval_is_wrong_state,
    /// Redeem happens at most once; the same redeem resent (same session
    /// token) gets the same answer.
    redeem_twice_is_wrong_state,
    /// Redeem creates a session that lives session_ms and can be revoked.
    session_lifecycle,
    /// scan works at expires_at - 1 and is Expired at expires_at.
    expiry_edge_scan,
    /// approve/deny work until expires_at - 1, Expired at expires_at.
    expiry_edge_approve_deny,
    /// cancel/redeem work until expires_at - 1, Expired at expires_at.
    expiry_edge_browser_calls,
    /// Final states do not expire; they are gone after final_keep_ms.
    final_state_purged_after_keep,
    /// An expired login stays Expired for final_keep_ms, then is gone.
    expired_login_purged_after_keep,
    /// Every transition made through the store reaches a registered watcher.
    hints_follow_transitions,
    /// Refused or idempotent calls do not wake watchers.
    no_hints_for_refusals,
    /// The scan's hint says whether the phone was asked for the match
    /// code (on-risk: across networks only), so a watcher can show the
    /// code to its browser exactly then, without reading the store.
    hints_say_when_matching_is_required,
    /// Demo phone tokens: put, get, overwrite, expiry.
    mobile_tokens,
    /// Unknown ids are NotFound / None everywhere.
    unknown_ids,
    /// 50 concurrent approves: exactly one wins.
    concurrent_approves_one_wins,
    /// 50 concurrent redeems: exactly one wins, exactly one session.
    concurrent_redeems_one_wins,
    /// Concurrent approve and deny: exactly one wins.
    concurrent_approve_vs_deny_one_wins,
    /// Concurrent cancel and redeem: exactly one wins.
    concurrent_cancel_vs_redeem_one_wins,
    /// 50 users scan at once: exactly one becomes the scanner.
    concurrent_scans_one_user_wins,
    /// The store reports the TTLs it was built with, and answers ping.
    ttls_and_ping,
    /// With events on, scan/approve/deny/redeem and the revocation of an
    /// existing session each record one event (stable id, user, browser,
    /// client), in order (a wrong match code: login.denied); refusals,
    /// cancel and events off record nothing.
    events_follow_transitions,
    /// A taken event is not taken again while its consumer is alive (takes
    /// or holds within the bound); a dead consumer's events are all taken
    /// over at once, in order, same receipts and ids; acknowledging removes
    /// them; `max` bounds a take.
    events_taken_held_reclaimed_acked,
    /// A browser's GeoIP place round-trips, and the scan's risk verdict is
    /// exactly `risk::assess` of the stored place and the phone's (every
    /// reason, unknown places, the distance limit from both sides); a
    /// rescan keeps it; without a risk check there is no verdict.
    risk_verdict_is_decided_at_scan,
    /// A high verdict: approving without confirm_presence is
    /// PresenceRequired and changes nothing (no hint, match code not
    /// burnt); with it, approved. A low verdict needs no confirmation.
    high_risk_needs_presence,
    /// On-risk matching with a database (IfHighRisk) asks for the code
    /// exactly when the verdict is high.
    matching_follows_the_risk_verdict,
    /// A user lists their own live sessions (sid, browser, created,
    /// expires), revokes one by sid; another user's sid is refused like an
    /// unknown one and leaves the session alone.
    user_sessions_list_and_revoke_one,
    /// Revoke-all ends every session of one user (count returned), makes
    /// their approved, not yet redeemed logins unredeemable, and leaves
    /// other users alone.
    user_sessions_revoke_all,
    /// Expired, logged-out and never-redeemed sessions are not listed; a
    /// logout naming the wrong token hash leaves the listing alone.
    user_sessions_drop_out,
);

/// Expands one `#[tokio::test]` per contract case, each on a fresh store
/// from `$make` (an `Fn(Ttls) -> impl Future<Output = impl
/// Into<StoreUnderTest>>`, e.g. the path of an `async fn`). The calling
/// crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dependency.
///
/// ```text
/// async fn make(ttls: Ttls) -> StoreUnderTest { /* … */ }
/// qrlogin_testkit::store_contract!(make);
/// ```
#[macro_export]
macro_rules! store_contract {
    ($make:expr) => {
        $crate::__store_contract_cases!(
            $make;
            create_get_round_trip,
            client_logins_keep_client_and_lifetime,
            grants_round_trip_and_expire,
            grant_take_is_once,
            happy_path,
            rescan_same_user_is_idempotent,
            scan_by_other_user_is_refused,
            approve_deny_by_other_user_is_refused,
            approve_deny_from_pending_is_wrong_state,
            deny_is_final,
            match_code_right_pick_approves,
            match_code_wrong_pick_denies,
            match_code_not_required_ignores_code,
            cancel_from_each_non_final_state,
            cancel_with_wrong_secret_is_not_found,
            redeem_with_wrong_secret_is_not_found,
            redeem_before_approval_is_wrong_state,
            redeem_twice_is_wrong_state,
            session_lifecycle,
            expiry_edge_scan,
            expiry_edge_approve_deny,
            expiry_edge_browser_calls,
            final_state_purged_after_keep,
            expired_login_purged_after_keep,
            hints_follow_transitions,
            no_hints_for_refusals,
            hints_say_when_matching_is_required,
            mobile_tokens,
            unknown_ids,
            concurrent_approves_one_wins,
            concurrent_redeems_one_wins,
            concurrent_approve_vs_deny_one_wins,
            concurrent_cancel_vs_redeem_one_wins,
            concurrent_scans_one_user_wins,
            ttls_and_ping,
            events_follow_transitions,
            events_taken_held_reclaimed_acked,
            risk_verdict_is_decided_at_scan,
            high_risk_needs_presence,
            matching_follows_the_risk_verdict,
            user_sessions_list_and_revoke_one,
            user_sessions_revoke_all,
            user_sessions_drop_out,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_contract_cases {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::contract::$case($make).await;
            }
        )*

        #[test]
        fn contract_case_list_is_complete() {
            let expanded: &[&str] = &[$(stringify!($case)),*];
            assert_eq!(expanded, $crate::contract::CASES);
        }
    };
}

/// A user with an ordinary name.
pub fn alice() -> User {
    User {
        id: "alice".into(),
        name: "Alice Liddell".into(),
    }
}

/// Another user.
pub fn bob() -> User {
    User {
        id: "bob".into(),
        name: "Bob the Builder".into(),
    }
}

/// A user whose name needs escaping in any text format.
pub fn tricky_user() -> User {
    User {
        id: "u:{ünï}\"\\/".into(),
        name: "Ålice \"the\" \\ <Liddell> / 😀 \n\t'".into(),
    }
}

/// A fresh login request with a random id and secret.
pub fn new_login(match_code: Option<u8>) -> (NewLogin, BrowserSecret) {
    let secret = BrowserSecret::random();
    (
        NewLogin {
            id: LoginId::random(),
            secret_hash: secret.hash(),
            browser: BrowserContext {
                ip: "2001:db8::1".into(),
                user_agent: "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" ünïcode".into(),
                place: None,
            },
            match_code,
            client_id: None,
            pending_ms: None,
        },
        secret,
    )
}

/// Waits for the next hint, failing the case after [`HINT_WAIT`].
pub async fn next_hint(reg: &mut Registration) -> Hint {
    match tokio::time::timeout(HINT_WAIT, reg.next()).await {
        Ok(h) => h,
        Err(_) => panic!("no hint within {HINT_WAIT:?}"),
    }
}

/// The hint of a login's first scan (version 2) by `user`.
pub fn scanned_by(user: User) -> Hint {
    Hint::Changed {
        version: 2,
        state: State::Scanned,
        user: Some(user),
        match_required: false,
    }
}

/// Waits for the hint `want`, skipping hints about older versions (a hint
/// of a transition made before the watcher registered may still be in
/// flight; watchers compare versions, so a stale hint is harmless) and
/// re-read requests. Fails after [`HINT_WAIT`] or on any other hint.
pub async fn expect_hint(reg: &mut Registration, want: Hint) {
    let want_version = match &want {
        Hint::Changed { version, .. } => *version,
        _ => u64::MAX,
    };
    let deadline = tokio::time::Instant::now() + HINT_WAIT;
    loop {
        let got = match tokio::time::timeout_at(deadline, reg.next()).await {
            Ok(h) => h,
            Err(_) => panic!("no hint {want:?} within {HINT_WAIT:?}"),
        };
        match &got {
            Hint::Changed { version, .. } if *version < want_version => continue,
            Hint::Reread => continue,
            _ => {
                assert_eq!(got, want);
                return;
            }
        }
    }
}

/// Fails the case if a hint arrives within [`NO_HINT_WAIT`].
pub async fn assert_no_hint(reg: &mut Registration, after: &str) {
    if let Ok(h) = tokio::time::timeout(NO_HINT_WAIT, reg.next()).await {
        panic!("unexpected hint after {after}: {h:?}");
    }
}

mod imp {
    use super::*;
    use TransitionError::{
        Expired, NotFound, PresenceRequired, WrongMatchCode, WrongState, WrongUser,
    };

    type Sut = StoreUnderTest;

    const E_PENDING: u64 = T0 + TTLS.pending_ms;
    const E_SCANNED: u64 = T0 + TTLS.pending_ms + TTLS.scan_extension_ms;

    /// A pending login created at T0.
    async fn pending(s: &Sut) -> (LoginRecord, BrowserSecret) {
        let (new, secret) = new_login(None);
        let rec = s.create(new, T0).await.expect("create");
        (rec, secret)
    }

    /// A login created at T0 and scanned by alice at T0+1000.
    async fn scanned(s: &Sut) -> (LoginRecord, BrowserSecret) {
        let (rec, secret) = pending(s).await;
        let rec = s.scan(&rec.id, &alice(), T0 + 1000).await.expect("scan");
        (rec, secret)
    }

    /// A login approved by alice at T0+2000.
    async fn approved(s: &Sut) -> (LoginRecord, BrowserSecret) {
        let (rec, secret) = scanned(s).await;
        let rec = s
            .approve(&rec.id, "alice", T0 + 2000)
            .await
            .expect("approve");
        (rec, secret)
    }

    async fn state_of(s: &Sut, id: &LoginId) -> (State, u64) {
        let rec = s.get(id, T0).await.expect("get").expect("login exists");
        (rec.state, rec.version)
    }

    pub async fn create_get_round_trip(s: Sut) {
        let (new, secret) = new_login(Some(42));
        let rec = s.create(new.clone(), T0).await.expect("create");
        assert_eq!(rec.id, new.id);
        assert_eq!(rec.state, State::Pending);
        assert_eq!(rec.version, 1);
        assert!(rec.secret_hash.ct_eq(&secret.hash()));
        assert_eq!(rec.created_at_ms, T0);
        assert_eq!(rec.expires_at_ms, E_PENDING);
        assert_eq!(rec.browser, new.browser);
        assert_eq!(rec.match_code, Some(42));
        assert_eq!(rec.user, None);
        assert_eq!(s.get(&new.id, T0).await.expect("get"), Some(rec.clone()));
        assert_eq!(rec.state_at(E_PENDING - 1), State::Pending);
        assert_eq!(rec.state_at(E_PENDING), State::Expired);

        // No match code, empty browser context.
        let (mut new2, _) = new_login(None);
        new2.browser = BrowserContext::default();
        let rec2 = s.create(new2.clone(), T0 + 5).await.expect("create");
        assert_eq!(rec2.match_code, None);
        assert_eq!(rec2.browser, BrowserContext::default());
        assert_eq!(rec2.created_at_ms, T0 + 5);
        assert_eq!(s.get(&new2.id, T0).await.expect("get"), Some(rec2));

        // Match code edge values survive.
        for code in [0u8, 99, 255] {
            let (new3, _) = new_login(Some(code));
            let rec3 = s.create(new3.clone(), T0).await.expect("create");
            let got = s.get(&new3.id, T0).await.expect("get").expect("exists");
            assert_eq!(got.match_code, Some(code));
            assert_eq!(got, rec3);
        }
    }

    pub async fn happy_path(s: Sut) {
        let (rec, secret) = pending(&s).await;
        let id = rec.id;

        let sc = s.scan(&id, &alice(), T0 + 1000).await.expect("scan");
        assert_eq!(sc.state, State::Scanned);
        assert_eq!(sc.version, 2);
        assert_eq!(sc.user, Some(alice()));
        assert_eq!(sc.expires_at_ms, E_SCANNED, "scan extends expiry once");
        assert_eq!(sc.created_at_ms, T0);
        assert_eq!(sc.browser, rec.browser);
        assert_eq!(s.get(&id, T0).await.expect("get"), Some(sc.clone()));

        let ap = s.approve(&id, "alice", T0 + 2000).await.expect("approve");
        assert_eq!(ap.state, State::Approved);
        assert_eq!(ap.version, 3);
        assert_eq!(ap.user, Some(alice()));
        assert_eq!(ap.expires_at_ms, E_SCANNED, "approve does not extend");
        assert_eq!(s.get(&id, T0).await.expect("get"), Some(ap.clone()));

        let token = SessionToken::new_for(id);
        let user = s
            .redeem(&id, &secret.hash(), &token, T0 + 3000)
            .await
            .expect("redeem");
        assert_eq!(user, alice());
        let done = s
            .get(&id, T0)
            .await
            .expect("get")
            .expect("kept after final");
        assert_eq!(done.state, State::Consumed);
        assert_eq!(done.version, 4);
        assert_eq!(done.user, Some(alice()));
        assert_eq!(done.expires_at_ms, E_SCANNED);
        assert!(done.secret_hash.ct_eq(&secret.hash()));
    }

    pub async fn rescan_same_user_is_idempotent(s: Sut) {
        let (first, _) = scanned(&s).await;
        let again = s
            .scan(&first.id, &alice(), T0 + 5000)
            .await
            .expect("rescan");
        assert_eq!(
            again, first,
            "same record, no new version, no second extension"
        );
        assert_eq!(again.version, 2);
        assert_eq!(again.expires_at_ms, E_SCANNED);
        assert_eq!(s.get(&first.id, T0).await.expect("get"), Some(first));
    }

    pub async fn scan_by_other_user_is_refused(s: Sut) {
        let (first, _) = scanned(&s).await;
        assert_eq!(s.scan(&first.id, &bob(), T0 + 1500).await, Err(WrongUser));
        assert_eq!(
            s.get(&first.id, T0).await.expect("get"),
            Some(first.clone())
        );
        // Still refused after approval: the login is alice's.
        s.approve(&first.id, "alice", T0 + 2000)
            .await
            .expect("approve");
        assert_eq!(s.scan(&first.id, &bob(), T0 + 2500).await, Err(WrongUser));
        // Alice scanning an approved login is a wrong state, not a no-op.
        assert_eq!(
            s.scan(&first.id, &alice(), T0 + 2500).await,
            Err(WrongState(State::Approved))
        );
    }

    pub async fn approve_deny_by_other_user_is_refused(s: Sut) {
        let (first, _) = scanned(&s).await;
        assert_eq!(s.approve(&first.id, "bob", T0 + 2000).await, Err(WrongUser));
        assert_eq!(s.deny(&first.id, "bob", T0 + 2000).await, Err(WrongUser));
        assert_eq!(
            s.get(&first.id, T0).await.expect("get"),
            Some(first.clone())
        );
        // Alice still can.
        let ap = s
            .approve(&first.id, "alice", T0 + 3000)
            .await
            .expect("approve");
        assert_eq!(ap.version, 3);
        // After approval, bob is still the wrong user (checked before state).
        assert_eq!(s.deny(&first.id, "bob", T0 + 3500).await, Err(WrongUser));
    }

    pub async fn approve_deny_from_pending_is_wrong_state(s: Sut) {
        let (rec, _) = pending(&s).await;
        assert_eq!(
            s.approve(&rec.id, "alice", T0 + 10).await,
            Err(WrongState(State::Pending))
        );
        assert_eq!(
            s.deny(&rec.id, "alice", T0 + 10).await,
            Err(WrongState(State::Pending))
        );
        assert_eq!(s.get(&rec.id, T0).await.expect("get"), Some(rec));
    }

    /// A login with match code 42 scanned by alice with matching required.
    async fn scanned_matching(s: &Sut) -> (LoginRecord, BrowserSecret) {
        let (new, secret) = new_login(Some(42));
        let rec = s.create(new, T0).await.expect("create");
        let sc = s
            .scan_with(&rec.id, &alice(), &MatchPolicy::Always, T0 + 1000)
            .await
            .expect("scan");
        assert!(sc.match_required);
        assert_eq!(sc.match_code, Some(42));
        (sc, secret)
    }

    pub async fn match_code_right_pick_approves(s: Sut) {
        let (sc, secret) = scanned_matching(&s).await;
        let got = s.get(&sc.id, T0).await.expect("get").expect("exists");
        assert!(got.match_required, "requirement is stored");
        let a = s
            .approve_with(&sc.id, "alice", Some(42), T0 + 2000)
            .await
            .expect("approve");
        assert_eq!(a.state, State::Approved);
        let token = SessionToken::new_for(sc.id);
        assert_eq!(
            s.redeem(&sc.id, &secret.hash(), &token, T0 + 3000).await,
            Ok(alice())
        );
    }

    pub async fn match_code_wrong_pick_denies(s: Sut) {
        for pick in [Some(41), None] {
            let (sc, secret) = scanned_matching(&s).await;
            let mut reg = s.notifier().register(sc.id);
            assert_eq!(
                s.approve_with(&sc.id, "alice", pick, T0 + 2000).await,
                Err(WrongMatchCode)
            );
            assert_eq!(state_of(&s, &sc.id).await, (State::Denied, 3));
            expect_hint(
                &mut reg,
                Hint::Changed {
                    version: 3,
                    state: State::Denied,
                    user: Some(alice()),
                    match_required: true,
                },
            )
            .await;
            assert_eq!(
                s.approve_with(&sc.id, "alice", Some(42), T0 + 2500).await,
                Err(WrongState(State::Denied))
            );
            let token = SessionToken::new_for(sc.id);
            assert_eq!(
                s.redeem(&sc.id, &secret.hash(), &token, T0 + 3000).await,
                Err(WrongState(State::Denied))
            );
        }
    }

    pub async fn match_code_not_required_ignores_code(s: Sut) {
        // A code on the login, but the scan did not require it.
        let (new, _) = new_login(Some(42));
        let rec = s.create(new, T0).await.expect("create");
        let sc = s
            .scan_with(&rec.id, &alice(), &MatchPolicy::Never, T0 + 1000)
            .await
            .expect("scan");
        assert!(!sc.match_required);
        let a = s
            .approve_with(&rec.id, "alice", Some(7), T0 + 2000)
            .await
            .expect("approve");
        assert_eq!(a.state, State::Approved);
        // No code on the login: requiring matching cannot apply.
        let (new, _) = new_login(None);
        let rec = s.create(new, T0).await.expect("create");
        let sc = s
            .scan_with(&rec.id, &alice(), &MatchPolicy::Always, T0 + 1000)
            .await
            .expect("scan");
        assert!(!sc.match_required);
        assert_eq!(
            s.approve(&rec.id, "alice", T0 + 2000)
                .await
                .map(|r| r.state),
            Ok(State::Approved)
        );
        // On-risk: required only when the phone's network differs from the
        // browser's (new_login's browser is at 2001:db8::1).
        for (phone_ip, want) in [("2001:db8::99", false), ("198.51.100.7", true)] {
            let (new, _) = new_login(Some(42));
            let rec = s.create(new, T0).await.expect("create");
            let policy = MatchPolicy::IfOtherNetwork(network_of(phone_ip));
            let sc = s
                .scan_with(&rec.id, &alice(), &policy, T0 + 1000)
                .await
                .expect("scan");
            assert_eq!(sc.match_required, want, "phone at {phone_ip}");
        }
    }

    pub async fn deny_is_final(s: Sut) {
        let (sc, secret) = scanned(&s).await;
        let id = sc.id;
        let d = s.deny(&id, "alice", T0 + 2000).await.expect("deny");
        assert_eq!(d.state, State::Denied);
        assert_eq!(d.version, 3);
        assert_eq!(d.user, Some(alice()));
        let t = T0 + 3000;
        assert_eq!(
            s.approve(&id, "alice", t).await,
            Err(WrongState(State::Denied))
        );
        assert_eq!(
            s.deny(&id, "alice", t).await,
            Err(WrongState(State::Denied))
        );
        assert_eq!(
            s.scan(&id, &alice(), t).await,
            Err(WrongState(State::Denied))
        );
        let token = SessionToken::new_for(id);
        assert_eq!(
            s.redeem(&id, &secret.hash(), &token, t).await,
            Err(WrongState(State::Denied))
        );
        assert_eq!(
            s.cancel(&id, &secret.hash(), t).await,
            Err(WrongState(State::Denied))
        );
        assert_eq!(
            s.session(&token.session_ref(), t).await.expect("session"),
            None
        );
        assert_eq!(state_of(&s, &id).await, (State::Denied, 3));
    }

    pub async fn cancel_from_each_non_final_state(s: Sut) {
        let t = T0 + 5000;
        let (p, ps) = pending(&s).await;
        let c = s
            .cancel(&p.id, &ps.hash(), t)
            .await
            .expect("cancel pending");
        assert_eq!(
            (c.state, c.version, c.user.clone()),
            (State::Cancelled, 2, None)
        );

        let (sc, ss) = scanned(&s).await;
        let c = s
            .cancel(&sc.id, &ss.hash(), t)
            .await
            .expect("cancel scanned");
        assert_eq!((c.state, c.version), (State::Cancelled, 3));
        assert_eq!(c.user, Some(alice()));

        let (ap, aps) = approved(&s).await;
        let c = s
            .cancel(&ap.id, &aps.hash(), t)
            .await
            .expect("cancel approved");
        assert_eq!((c.state, c.version), (State::Cancelled, 4));

        // Cancelled is final.
        let t2 = t + 1;
        assert_eq!(
            s.cancel(&ap.id, &aps.hash(), t2).await,
            Err(WrongState(State::Cancelled))
        );
        let token = SessionToken::new_for(ap.id);
        assert_eq!(
            s.redeem(&ap.id, &aps.hash(), &token, t2).await,
            Err(WrongState(State::Cancelled))
        );
        assert_eq!(
            s.approve(&sc.id, "alice", t2).await,
            Err(WrongState(State::Cancelled))
        );
        // Cancelled before anyone scanned: the answer is its state.
        assert_eq!(
            s.approve(&p.id, "alice", t2).await,
            Err(WrongState(State::Cancelled))
        );
        assert_eq!(
            s.scan(&p.id, &alice(), t2).await,
            Err(WrongState(State::Cancelled))
        );
        assert_eq!(state_of(&s, &p.id).await, (State::Cancelled, 2));
    }

    pub async fn cancel_with_wrong_secret_is_not_found(s: Sut) {
        for make in 0..3 {
            let (rec, secret) = match make {
                0 => pending(&s).await,
                1 => scanned(&s).await,
                _ => approved(&s).await,
            };
            let wrong = BrowserSecret::random();
            assert_eq!(
                s.cancel(&rec.id, &wrong.hash(), T0 + 5000).await,
                Err(NotFound)
            );
            assert_eq!(s.get(&rec.id, T0).await.expect("get"), Some(rec.clone()));
            s.cancel(&rec.id, &secret.hash(), T0 + 5000)
                .await
                .expect("right secret");
            // After a final state too: a wrong secret still says nothing.
            assert_eq!(
                s.cancel(&rec.id, &wrong.hash(), T0 + 5001).await,
                Err(NotFound)
            );
        }
    }

    pub async fn redeem_with_wrong_secret_is_not_found(s: Sut) {
        let (ap, secret) = approved(&s).await;
        let token = SessionToken::new_for(ap.id);
        let wrong = BrowserSecret::random();
        assert_eq!(
            s.redeem(&ap.id, &wrong.hash(), &token, T0 + 3000).await,
            Err(NotFound)
        );
        assert_eq!(
            s.session(&token.session_ref(), T0 + 3000)
                .await
                .expect("session"),
            None
        );
        assert_eq!(s.get(&ap.id, T0).await.expect("get"), Some(ap.clone()));
        s.redeem(&ap.id, &secret.hash(), &token, T0 + 3001)
            .await
            .expect("right secret");
        let t2 = SessionToken::new_for(ap.id);
        assert_eq!(
            s.redeem(&ap.id, &wrong.hash(), &t2, T0 + 3002).await,
            Err(NotFound),
            "consumed with a wrong secret is indistinguishable from unknown"
        );
    }

    pub async fn redeem_before_approval_is_wrong_state(s: Sut) {
        let (p, ps) = pending(&s).await;
        let token = SessionToken::new_for(p.id);
        assert_eq!(
            s.redeem(&p.id, &ps.hash(), &token, T0 + 10).await,
            Err(WrongState(State::Pending))
        );
        let (sc, ss) = scanned(&s).await;
        let token2 = SessionToken::new_for(sc.id);
        assert_eq!(
            s.redeem(&sc.id, &ss.hash(), &token2, T0 + 1500).await,
            Err(WrongState(State::Scanned))
        );
        assert_eq!(
            s.session(&token.session_ref(), T0 + 1500)
                .await
                .expect("session"),
            None
        );
        assert_eq!(
            s.session(&token2.session_ref(), T0 + 1500)
                .await
                .expect("session"),
            None
        );
        assert_eq!(s.get(&p.id, T0).await.expect("get"), Some(p));
        assert_eq!(s.get(&sc.id, T0).await.expect("get"), Some(sc));
    }

    pub async fn redeem_twice_is_wrong_state(s: Sut) {
        let (ap, secret) = approved(&s).await;
        let t1 = SessionToken::new_for(ap.id);
        let t2 = SessionToken::new_for(ap.id);
        assert_eq!(
            s.redeem(&ap.id, &secret.hash(), &t1, T0 + 3000).await,
            Ok(alice())
        );
        assert_eq!(
            s.redeem(&ap.id, &secret.hash(), &t2, T0 + 3001).await,
            Err(WrongState(State::Consumed))
        );
        // The same redeem resent (same token: a retry after a lost reply)
        // gets the same answer and changes nothing.
        let before = s.get(&ap.id, T0 + 3001).await.expect("get");
        assert_eq!(
            s.redeem(&ap.id, &secret.hash(), &t1, T0 + 3001).await,
            Ok(alice())
        );
        assert_eq!(s.get(&ap.id, T0 + 3001).await.expect("get"), before);
        // Not for a caller without the browser secret.
        assert_eq!(
            s.redeem(&ap.id, &BrowserSecret::random().hash(), &t1, T0 + 3001)
                .await,
            Err(NotFound)
        );
        assert_eq!(
            s.session(&t2.session_ref(), T0 + 3002)
                .await
                .expect("session"),
            None
        );
        assert!(s
            .session(&t1.session_ref(), T0 + 3002)
            .await
            .expect("session")
            .is_some());
        assert_eq!(
            s.approve(&ap.id, "alice", T0 + 3003).await,
            Err(WrongState(State::Consumed))
        );
        assert_eq!(
            s.cancel(&ap.id, &secret.hash(), T0 + 3003).await,
            Err(WrongState(State::Consumed))
        );
        assert_eq!(state_of(&s, &ap.id).await, (State::Consumed, 4));
    }

    pub async fn session_lifecycle(s: Sut) {
        let (rec, secret) = pending(&s).await;
        let user = tricky_user();
        s.scan(&rec.id, &user, T0 + 1000).await.expect("scan");
        s.approve(&rec.id, &user.id, T0 + 2000)
            .await
            .expect("approve");
        let r = T0 + 3000;
        let token = SessionToken::new_for(rec.id);
        assert_eq!(
            s.redeem(&rec.id, &secret.hash(), &token, r).await,
            Ok(user.clone())
        );
        let expires = r + TTLS.session_ms;
        let want = Session {
            user: user.clone(),
            expires_at_ms: expires,
        };
        assert_eq!(
            s.session(&token.session_ref(), r).await.expect("session"),
            Some(want.clone())
        );
        // A token parsed back from its text finds the same session.
        let parsed: SessionToken = token.expose().parse().expect("parse");
        assert_eq!(
            s.session(&parsed.session_ref(), expires - 1)
                .await
                .expect("session"),
            Some(want)
        );
        assert_eq!(
            s.session(&token.session_ref(), expires)
                .await
                .expect("session"),
            None
        );
        // Another token of the same login is not a session.
        let other = SessionToken::new_for(rec.id);
        assert_eq!(
            s.session(&other.session_ref(), r).await.expect("session"),
            None
        );
        // The right hash under another login's id is not a session either
        // (a JWT `sid` naming another login finds nothing).
        let elsewhere = SessionRef::new(LoginId::random(), token.hash());
        assert_eq!(s.session(&elsewhere, r).await.expect("session"), None);
        s.revoke_session(&elsewhere)
            .await
            .expect("revoke elsewhere");
        assert!(
            s.session(&token.session_ref(), r)
                .await
                .expect("session")
                .is_some(),
            "revoking under another login's id leaves the session alone"
        );
        // Revoke: gone; revoking again or an unknown token is fine.
        s.revoke_session(&token.session_ref())
            .await
            .expect("revoke");
        assert_eq!(
            s.session(&token.session_ref(), r + 1)
                .await
                .expect("session"),
            None
        );
        s.revoke_session(&token.session_ref())
            .await
            .expect("revoke twice");
        s.revoke_session(&SessionToken::new_for(LoginId::random()).session_ref())
            .await
            .expect("revoke unknown");
    }

    pub async fn expiry_edge_scan(s: Sut) {
        let (a, _) = pending(&s).await;
        let sc = s
            .scan(&a.id, &alice(), E_PENDING - 1)
            .await
            .expect("scan at expires_at - 1");
        assert_eq!(sc.expires_at_ms, E_PENDING + TTLS.scan_extension_ms);
        let (b, _) = pending(&s).await;
        assert_eq!(s.scan(&b.id, &alice(), E_PENDING).await, Err(Expired));
        assert_eq!(s.scan(&b.id, &alice(), E_PENDING + 1).await, Err(Expired));
        // Nothing was written: the stored state is still pending, which
        // reads as expired from then on.
        let got = s.get(&b.id, T0).await.expect("get").expect("kept");
        assert_eq!((got.state, got.version), (State::Pending, 1));
        assert_eq!(got.state_at(E_PENDING), State::Expired);
    }

    pub async fn expiry_edge_approve_deny(s: Sut) {
        let (a, _) = scanned(&s).await;
        assert_eq!(a.expires_at_ms, E_SCANNED);
        s.approve(&a.id, "alice", E_SCANNED - 1)
            .await
            .expect("approve at expires_at - 1");
        let (b, _) = scanned(&s).await;
        s.deny(&b.id, "alice", E_SCANNED - 1)
            .await
            .expect("deny at expires_at - 1");
        let (c, _) = scanned(&s).await;
        assert_eq!(s.approve(&c.id, "alice", E_SCANNED).await, Err(Expired));
        assert_eq!(s.deny(&c.id, "alice", E_SCANNED).await, Err(Expired));
        // Expiry is checked before the user.
        assert_eq!(s.approve(&c.id, "bob", E_SCANNED).await, Err(Expired));
        assert_eq!(s.scan(&c.id, &alice(), E_SCANNED).await, Err(Expired));
        assert_eq!(state_of(&s, &c.id).await, (State::Scanned, 2));
        // A pending login is Expired, not WrongState, once its time is up.
        let (d, _) = pending(&s).await;
        assert_eq!(s.approve(&d.id, "alice", E_PENDING).await, Err(Expired));
    }

    pub async fn expiry_edge_browser_calls(s: Sut) {
        let (a, asec) = approved(&s).await;
        let ta = SessionToken::new_for(a.id);
        assert_eq!(
            s.redeem(&a.id, &asec.hash(), &ta, E_SCANNED - 1).await,
            Ok(alice())
        );
        let (b, bsec) = approved(&s).await;
        let tb = SessionToken::new_for(b.id);
        assert_eq!(
            s.redeem(&b.id, &bsec.hash(), &tb, E_SCANNED).await,
            Err(Expired)
        );
        assert_eq!(
            s.session(&tb.session_ref(), E_SCANNED)
                .await
                .expect("session"),
            None
        );
        assert_eq!(s.cancel(&b.id, &bsec.hash(), E_SCANNED).await, Err(Expired));
        // The secret is checked first: a wrong one says nothing about expiry.
        let wrong = BrowserSecret::random();
        assert_eq!(
            s.redeem(&b.id, &wrong.hash(), &tb, E_SCANNED).await,
            Err(NotFound)
        );
        assert_eq!(
            s.cancel(&b.id, &wrong.hash(), E_SCANNED).await,
            Err(NotFound)
        );
        let (c, csec) = pending(&s).await;
        s.cancel(&c.id, &csec.hash(), E_PENDING - 1)
            .await
            .expect("cancel at expires_at - 1");
        let (d, dsec) = pending(&s).await;
        assert_eq!(s.cancel(&d.id, &dsec.hash(), E_PENDING).await, Err(Expired));
        // A consumed login does not expire: past expires_at it is still
        // consumed, not expired.
        assert_eq!(
            s.approve(&a.id, "alice", E_SCANNED + 10).await,
            Err(WrongState(State::Consumed))
        );
    }

    pub async fn final_state_purged_after_keep(s: Sut) {
        let (sc, secret) = scanned(&s).await;
        let t = T0 + 2000;
        s.deny(&sc.id, "alice", t).await.expect("deny");
        let gone = t + TTLS.final_keep_ms;
        // Reads forget at the same moment as transitions do.
        assert!(s.get(&sc.id, gone - 1).await.expect("get").is_some());
        assert_eq!(s.get(&sc.id, gone).await.expect("get"), None);
        assert_eq!(
            s.approve(&sc.id, "alice", gone - 1).await,
            Err(WrongState(State::Denied))
        );
        assert_eq!(s.approve(&sc.id, "alice", gone).await, Err(NotFound));
        assert_eq!(s.cancel(&sc.id, &secret.hash(), gone).await, Err(NotFound));

        // The grace period starts at the final transition, even for a login
        // finished just before its expiry.
        let (ap, asec) = approved(&s).await;
        let r = E_SCANNED - 1;
        let token = SessionToken::new_for(ap.id);
        s.redeem(&ap.id, &asec.hash(), &token, r)
            .await
            .expect("redeem");
        let gone = r + TTLS.final_keep_ms;
        assert_eq!(
            s.redeem(
                &ap.id,
                &asec.hash(),
                &SessionToken::new_for(ap.id),
                gone - 1
            )
            .await,
            Err(WrongState(State::Consumed))
        );
        assert_eq!(
            s.redeem(&ap.id, &asec.hash(), &SessionToken::new_for(ap.id), gone)
                .await,
            Err(NotFound)
        );
        // The session outlives the login.
        assert!(s
            .session(&token.session_ref(), gone)
            .await
            .expect("session")
            .is_some());
    }

    pub async fn expired_login_purged_after_keep(s: Sut) {
        let (p, _) = pending(&s).await;
        let gone = E_PENDING + TTLS.final_keep_ms;
        assert!(s.get(&p.id, gone - 1).await.expect("get").is_some());
        assert_eq!(s.get(&p.id, gone).await.expect("get"), None);
        assert_eq!(s.scan(&p.id, &alice(), gone - 1).await, Err(Expired));
        assert_eq!(s.scan(&p.id, &alice(), gone).await, Err(NotFound));
        // Scanning extends the purge deadline along with the expiry.
        let (sc, _) = scanned(&s).await;
        let gone = E_SCANNED + TTLS.final_keep_ms;
        assert_eq!(s.approve(&sc.id, "alice", gone - 1).await, Err(Expired));
        assert_eq!(s.approve(&sc.id, "alice", gone).await, Err(NotFound));
    }

    fn changed(version: u64, state: State, user: Option<User>) -> Hint {
        Hint::Changed {
            version,
            state,
            user,
            match_required: false,
        }
    }

    pub async fn hints_follow_transitions(s: Sut) {
        let user = tricky_user();
        let (p, secret) = pending(&s).await;
        let mut reg = s.notifier().register(p.id);
        s.scan(&p.id, &user, T0 + 1000).await.expect("scan");
        assert_eq!(
            next_hint(&mut reg).await,
            changed(2, State::Scanned, Some(user.clone()))
        );
        s.approve(&p.id, &user.id, T0 + 2000)
            .await
            .expect("approve");
        assert_eq!(
            next_hint(&mut reg).await,
            changed(3, State::Approved, Some(user.clone()))
        );
        let token = SessionToken::new_for(p.id);
        s.redeem(&p.id, &secret.hash(), &token, T0 + 3000)
            .await
            .expect("redeem");
        assert_eq!(
            next_hint(&mut reg).await,
            changed(4, State::Consumed, Some(user.clone()))
        );

        // Two watchers of one login both hear; a watcher of another does not.
        let (q, qsec) = pending(&s).await;
        let mut w1 = s.notifier().register(q.id);
        let mut w2 = s.notifier().register(q.id);
        let (other, _) = pending(&s).await;
        let mut w3 = s.notifier().register(other.id);
        s.cancel(&q.id, &qsec.hash(), T0 + 500)
            .await
            .expect("cancel");
        assert_eq!(next_hint(&mut w1).await, changed(2, State::Cancelled, None));
        assert_eq!(next_hint(&mut w2).await, changed(2, State::Cancelled, None));
        assert_no_hint(&mut w3, "a transition of another login").await;

        // A watcher that registers after a transition may still get that
        // transition's hint; the next one follows.
        let (d, _) = scanned(&s).await;
        let mut wd = s.notifier().register(d.id);
        s.deny(&d.id, "alice", T0 + 2000).await.expect("deny");
        expect_hint(&mut wd, changed(3, State::Denied, Some(alice()))).await;
    }

    pub async fn hints_say_when_matching_is_required(s: Sut) {
        // new_login's browser is at 2001:db8::1.
        let cases = [
            (Some(42), MatchPolicy::Always, true),
            (Some(42), MatchPolicy::Never, false),
            (
                Some(42),
                MatchPolicy::IfOtherNetwork(network_of("198.51.100.7")),
                true,
            ),
            (
                Some(42),
                MatchPolicy::IfOtherNetwork(network_of("2001:db8::99")),
                false,
            ),
            (None, MatchPolicy::Always, false),
        ];
        for (code, policy, want) in cases {
            let (new, secret) = new_login(code);
            let rec = s.create(new, T0).await.expect("create");
            let mut reg = s.notifier().register(rec.id);
            s.scan_with(&rec.id, &alice(), &policy, T0 + 1000)
                .await
                .expect("scan");
            let scanned = Hint::Changed {
                version: 2,
                state: State::Scanned,
                user: Some(alice()),
                match_required: want,
            };
            assert_eq!(next_hint(&mut reg).await, scanned, "{code:?} {policy:?}");
            // Later hints of the login keep saying it.
            s.cancel(&rec.id, &secret.hash(), T0 + 2000)
                .await
                .expect("cancel");
            let cancelled = Hint::Changed {
                version: 3,
                state: State::Cancelled,
                user: Some(alice()),
                match_required: want,
            };
            assert_eq!(next_hint(&mut reg).await, cancelled, "{code:?} {policy:?}");
        }
    }

    pub async fn no_hints_for_refusals(s: Sut) {
        let (p, secret) = pending(&s).await;
        let mut reg = s.notifier().register(p.id);
        s.scan(&p.id, &alice(), T0 + 1000).await.expect("scan");
        assert_eq!(
            next_hint(&mut reg).await,
            changed(2, State::Scanned, Some(alice()))
        );
        s.scan(&p.id, &alice(), T0 + 1500).await.expect("rescan");
        assert_no_hint(&mut reg, "an idempotent rescan").await;
        assert_eq!(
            s.scan(&p.id, &bob(), T0 + 1500).await.err(),
            Some(TransitionError::WrongUser)
        );
        assert_eq!(
            s.approve(&p.id, "bob", T0 + 1500).await.err(),
            Some(TransitionError::WrongUser)
        );
        assert_eq!(
            s.cancel(&p.id, &BrowserSecret::random().hash(), T0 + 1500)
                .await
                .err(),
            Some(TransitionError::NotFound)
        );
        assert_eq!(
            s.redeem(
                &p.id,
                &secret.hash(),
                &SessionToken::new_for(p.id),
                T0 + 1500,
            )
            .await
            .err(),
            Some(TransitionError::WrongState(State::Scanned))
        );
        assert_eq!(
            s.approve(&p.id, "alice", E_SCANNED).await.err(),
            Some(TransitionError::Expired)
        );
        assert_eq!(
            s.approve(&LoginId::random(), "alice", T0 + 1500)
                .await
                .err(),
            Some(TransitionError::NotFound)
        );
        assert_no_hint(&mut reg, "refused transitions").await;
        assert_eq!(state_of(&s, &p.id).await, (State::Scanned, 2));
        // And then a real one does arrive.
        s.approve(&p.id, "alice", T0 + 2000).await.expect("approve");
        assert_eq!(
            next_hint(&mut reg).await,
            changed(3, State::Approved, Some(alice()))
        );
    }

    pub async fn mobile_tokens(s: Sut) {
        let tok = MobileToken::random();
        let h = tok.hash();
        s.put_mobile_token(&h, &tricky_user(), 10_000, T0)
            .await
            .expect("put");
        assert_eq!(
            s.mobile_token_user(&h, T0).await.expect("get"),
            Some(tricky_user())
        );
        assert_eq!(
            s.mobile_token_user(&h, T0 + 9_999).await.expect("get"),
            Some(tricky_user())
        );
        assert_eq!(
            s.mobile_token_user(&h, T0 + 10_000).await.expect("get"),
            None
        );
        let unknown = MobileToken::random().hash();
        assert_eq!(s.mobile_token_user(&unknown, T0).await.expect("get"), None);

        // Overwriting replaces the user and the lifetime.
        let tok2 = MobileToken::random();
        let h2 = tok2.hash();
        s.put_mobile_token(&h2, &alice(), 10_000, T0)
            .await
            .expect("put");
        s.put_mobile_token(&h2, &bob(), 5_000, T0 + 1)
            .await
            .expect("put");
        assert_eq!(
            s.mobile_token_user(&h2, T0 + 2).await.expect("get"),
            Some(bob())
        );
        assert_eq!(
            s.mobile_token_user(&h2, T0 + 5_000).await.expect("get"),
            Some(bob())
        );
        assert_eq!(
            s.mobile_token_user(&h2, T0 + 5_001).await.expect("get"),
            None
        );
    }

    pub async fn unknown_ids(s: Sut) {
        // Some real data around, so "unknown" is not "empty store".
        let (_ap, _) = approved(&s).await;
        let id = LoginId::random();
        let h = BrowserSecret::random().hash();
        let t = T0 + 100;
        assert_eq!(s.get(&id, T0).await.expect("get"), None);
        assert_eq!(s.scan(&id, &alice(), t).await, Err(NotFound));
        assert_eq!(s.approve(&id, "alice", t).await, Err(NotFound));
        assert_eq!(s.deny(&id, "alice", t).await, Err(NotFound));
        assert_eq!(s.cancel(&id, &h, t).await, Err(NotFound));
        let token = SessionToken::new_for(id);
        assert_eq!(s.redeem(&id, &h, &token, t).await, Err(NotFound));
        assert_eq!(
            s.session(&token.session_ref(), t).await.expect("session"),
            None
        );
        s.revoke_session(&token.session_ref())
            .await
            .expect("revoke unknown");
        assert_eq!(
            s.get(&id, T0).await.expect("get"),
            None,
            "nothing was created"
        );
    }

    const RACERS: usize = 50;

    pub async fn concurrent_approves_one_wins(s: Sut) {
        let (sc, _) = scanned(&s).await;
        let store = s.arc();
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let store = store.clone();
                let id = sc.id;
                tokio::spawn(async move { store.approve(&id, "alice", T0 + 2000).await })
            })
            .collect();
        let mut wins = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(rec) => {
                    wins += 1;
                    assert_eq!((rec.state, rec.version), (State::Approved, 3));
                }
                Err(e) => assert_eq!(e, WrongState(State::Approved)),
            }
        }
        assert_eq!(wins, 1, "exactly one approve wins");
        assert_eq!(state_of(&s, &sc.id).await, (State::Approved, 3));
    }

    pub async fn concurrent_redeems_one_wins(s: Sut) {
        let (ap, secret) = approved(&s).await;
        let store = s.arc();
        let tokens: Vec<_> = (0..RACERS).map(|_| SessionToken::new_for(ap.id)).collect();
        let tasks: Vec<_> = tokens
            .iter()
            .cloned()
            .map(|token| {
                let store = store.clone();
                let id = ap.id;
                let h = secret.hash();
                tokio::spawn(async move { store.redeem(&id, &h, &token, T0 + 3000).await })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.expect("task") {
                Ok(user) => {
                    assert_eq!(user, alice());
                    winners.push(i);
                }
                Err(e) => assert_eq!(e, WrongState(State::Consumed)),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one redeem wins");
        let mut sessions = Vec::new();
        for (i, token) in tokens.iter().enumerate() {
            if s.session(&token.session_ref(), T0 + 3001)
                .await
                .expect("session")
                .is_some()
            {
                sessions.push(i);
            }
        }
        assert_eq!(sessions, winners, "exactly the winner's session exists");
        assert_eq!(state_of(&s, &ap.id).await, (State::Consumed, 4));
    }

    pub async fn concurrent_approve_vs_deny_one_wins(s: Sut) {
        let store = s.arc();
        for _round in 0..10 {
            let (sc, _) = scanned(&s).await;
            let tasks: Vec<_> = (0..RACERS)
                .map(|i| {
                    let store = store.clone();
                    let id = sc.id;
                    tokio::spawn(async move {
                        if i % 2 == 0 {
                            store.approve(&id, "alice", T0 + 2000).await
                        } else {
                            store.deny(&id, "alice", T0 + 2000).await
                        }
                    })
                })
                .collect();
            let mut winner = None;
            let mut losers = Vec::new();
            for t in tasks {
                match t.await.expect("task") {
                    Ok(rec) => {
                        assert!(winner.is_none(), "two winners");
                        winner = Some(rec.state);
                    }
                    Err(e) => losers.push(e),
                }
            }
            let winner = winner.expect("one winner");
            assert!(matches!(winner, State::Approved | State::Denied));
            for e in losers {
                assert_eq!(e, WrongState(winner));
            }
            assert_eq!(state_of(&s, &sc.id).await, (winner, 3));
        }
    }

    pub async fn concurrent_cancel_vs_redeem_one_wins(s: Sut) {
        let store = s.arc();
        for _round in 0..10 {
            let (ap, secret) = approved(&s).await;
            let tokens: Vec<_> = (0..RACERS).map(|_| SessionToken::new_for(ap.id)).collect();
            let tasks: Vec<_> = tokens
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, token)| {
                    let store = store.clone();
                    let id = ap.id;
                    let h = secret.hash();
                    tokio::spawn(async move {
                        if i % 2 == 0 {
                            store.cancel(&id, &h, T0 + 3000).await.map(|r| r.state)
                        } else {
                            store
                                .redeem(&id, &h, &token, T0 + 3000)
                                .await
                                .map(|_| State::Consumed)
                        }
                    })
                })
                .collect();
            let mut winners = Vec::new();
            let mut losers = Vec::new();
            for t in tasks {
                match t.await.expect("task") {
                    Ok(st) => winners.push(st),
                    Err(e) => losers.push(e),
                }
            }
            assert_eq!(winners.len(), 1, "exactly one of cancel/redeem wins");
            let winner = winners[0];
            for e in losers {
                assert_eq!(e, WrongState(winner));
            }
            let mut sessions = 0;
            for token in &tokens {
                if s.session(&token.session_ref(), T0 + 3001)
                    .await
                    .expect("session")
                    .is_some()
                {
                    sessions += 1;
                }
            }
            let want = usize::from(winner == State::Consumed);
            assert_eq!(sessions, want);
            assert_eq!(state_of(&s, &ap.id).await, (winner, 4));
        }
    }

    pub async fn concurrent_scans_one_user_wins(s: Sut) {
        let (p, _) = pending(&s).await;
        let store = s.arc();
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let store = store.clone();
                let id = p.id;
                let user = User {
                    id: format!("user-{i}"),
                    name: format!("User {i}"),
                };
                tokio::spawn(async move { store.scan(&id, &user, T0 + 1000).await })
            })
            .collect();
        let mut winner = None;
        for t in tasks {
            match t.await.expect("task") {
                Ok(rec) => {
                    assert!(winner.is_none(), "two scanners won");
                    winner = rec.user;
                }
                Err(e) => assert_eq!(e, WrongUser),
            }
        }
        let winner = winner.expect("one scanner");
        let got = s.get(&p.id, T0).await.expect("get").expect("exists");
        assert_eq!((got.state, got.version), (State::Scanned, 2));
        assert_eq!(got.user, Some(winner));
        assert_eq!(got.expires_at_ms, E_SCANNED);
    }

    pub async fn client_logins_keep_client_and_lifetime(s: Sut) {
        let (mut new, secret) = new_login(None);
        new.client_id = Some("shop-web \"ü\"".into());
        new.pending_ms = Some(600_000);
        let id = new.id;
        let rec = s.create(new, T0).await.expect("create");
        assert_eq!(rec.client_id.as_deref(), Some("shop-web \"ü\""));
        assert_eq!(rec.expires_at_ms, T0 + 600_000);
        // Alive past the store's own pending TTL, expired at its own.
        let later = T0 + TTLS.pending_ms + 1;
        let scanned = s.scan(&id, &alice(), later).await.expect("scan");
        assert_eq!(scanned.client_id, rec.client_id);
        s.approve(&id, "alice", later).await.expect("approve");
        let got = s.get(&id, later).await.expect("get").expect("exists");
        assert_eq!(got.client_id, rec.client_id);
        assert_eq!(got.state, State::Approved);
        let token = SessionToken::new_for(id);
        s.redeem(&id, &secret.hash(), &token, later)
            .await
            .expect("redeem");
        let (other, _) = new_login(None);
        let oid = other.id;
        let o = s.create(other, T0).await.expect("create");
        assert_eq!(o.client_id, None);
        assert_eq!(o.expires_at_ms, T0 + TTLS.pending_ms);
        assert_eq!(
            s.scan(&oid, &alice(), later).await.err(),
            Some(TransitionError::Expired)
        );
    }

    pub async fn grants_round_trip_and_expire(s: Sut) {
        use qrlogin_core::{GrantKey, GrantKind};
        let k = GrantKey::of_secret(GrantKind::Code, "a-code");
        let v = "{\"client\":\"ü \\\" / \u{1F600}\"}";
        assert_eq!(s.grant(&k, T0).await.expect("get"), None);
        s.put_grant(&k, v, 10_000, T0).await.expect("put");
        assert_eq!(
            s.grant(&k, T0 + 9_999).await.expect("get").as_deref(),
            Some(v)
        );
        assert_eq!(s.grant(&k, T0 + 10_000).await.expect("get"), None);
        // Same hash, another kind: another grant.
        let other_kind = GrantKey::of_secret(GrantKind::AccessToken, "a-code");
        assert_eq!(s.grant(&other_kind, T0).await.expect("get"), None);
        // Replaced, with its new lifetime.
        s.put_grant(&k, "second", 1_000, T0 + 1).await.expect("put");
        assert_eq!(
            s.grant(&k, T0 + 2).await.expect("get").as_deref(),
            Some("second")
        );
        assert_eq!(s.grant(&k, T0 + 1_001).await.expect("get"), None);
        // Deleted; deleting again or an unknown one is fine.
        s.put_grant(&k, v, 10_000, T0).await.expect("put");
        s.delete_grant(&k).await.expect("delete");
        assert_eq!(s.grant(&k, T0).await.expect("get"), None);
        s.delete_grant(&k).await.expect("delete again");
        // Keyed by a login id.
        let id = LoginId::random();
        let lk = GrantKey::of_login(GrantKind::AuthRequest, &id);
        s.put_grant(&lk, "req", 5_000, T0).await.expect("put");
        assert_eq!(s.grant(&lk, T0).await.expect("get").as_deref(), Some("req"));
        let ok = GrantKey::of_login(GrantKind::AuthRequest, &LoginId::random());
        assert_eq!(s.grant(&ok, T0).await.expect("get"), None);
    }

    pub async fn grant_take_is_once(s: Sut) {
        use qrlogin_core::{GrantKey, GrantKind, Taken};
        let k = GrantKey::of_secret(GrantKind::RefreshToken, "rt-1");
        assert_eq!(s.take_grant(&k, T0).await.expect("take"), None);
        s.put_grant(&k, "family-1", 10_000, T0).await.expect("put");
        assert_eq!(
            s.take_grant(&k, T0).await.expect("take"),
            Some(Taken::First("family-1".into()))
        );
        for t in [T0, T0 + 5_000, T0 + 9_999] {
            assert_eq!(
                s.take_grant(&k, t).await.expect("take"),
                Some(Taken::Again("family-1".into())),
                "at {t}"
            );
        }
        // A used grant is still readable until it expires, then gone.
        assert_eq!(
            s.grant(&k, T0 + 1).await.expect("get").as_deref(),
            Some("family-1")
        );
        assert_eq!(s.take_grant(&k, T0 + 10_000).await.expect("take"), None);
        // Expired before any take: None.
        let e = GrantKey::of_secret(GrantKind::Code, "late");
        s.put_grant(&e, "x", 60_000, T0).await.expect("put");
        assert_eq!(s.take_grant(&e, T0 + 60_000).await.expect("take"), None);
        // Concurrent takes: exactly one First.
        for round in 0..20 {
            let c = GrantKey::of_secret(GrantKind::Code, &format!("race-{round}"));
            s.put_grant(&c, "v", 60_000, T0).await.expect("put");
            let store = s.arc();
            let takes: Vec<_> = (0..8)
                .map(|_| {
                    let store = store.clone();
                    tokio::spawn(async move { store.take_grant(&c, T0).await })
                })
                .collect();
            let mut firsts = 0;
            for t in takes {
                match t.await.expect("join").expect("take") {
                    Some(Taken::First(_)) => firsts += 1,
                    Some(Taken::Again(_)) => {}
                    None => panic!("a live grant taken as None"),
                }
            }
            assert_eq!(firsts, 1, "round {round}");
        }
    }

    pub async fn ttls_and_ping(s: Sut) {
        assert_eq!(s.ttls(), TTLS);
        s.ping().await.expect("ping");
    }

    /// Everything queued, taken by one consumer.
    async fn take_all(s: &Sut) -> Vec<QueuedEvent> {
        s.events_take("contract", 1000, 3_600_000, T0)
            .await
            .expect("events_take")
    }

    pub async fn events_follow_transitions(s: Sut) {
        // Off (the default): nothing is recorded.
        let (rec, secret) = approved(&s).await;
        let token = SessionToken::new_for(rec.id);
        s.redeem(&rec.id, &secret.hash(), &token, T0 + 3000)
            .await
            .expect("redeem");
        s.revoke_session(&token.session_ref())
            .await
            .expect("revoke");
        assert_eq!(take_all(&s).await, vec![], "events off records nothing");

        s.set_events(true);
        let (mut new, secret) = new_login(None);
        new.client_id = Some("rp-1".into());
        let id = new.id;
        s.create(new.clone(), T0).await.expect("create");
        let user = tricky_user();
        s.scan(&id, &user, T0 + 1000).await.expect("scan");
        assert_eq!(
            s.scan(&id, &bob(), T0 + 1001).await,
            Err(TransitionError::WrongUser)
        );
        s.approve(&id, &user.id, T0 + 2000).await.expect("approve");
        let token = SessionToken::new_for(id);
        s.redeem(&id, &secret.hash(), &token, T0 + 3000)
            .await
            .expect("redeem");
        s.revoke_session(&token.session_ref())
            .await
            .expect("revoke");
        s.revoke_session(&token.session_ref())
            .await
            .expect("revoke again");
        // Denied, and cancelled (not reported).
        let (denied, _) = scanned(&s).await;
        s.deny(&denied.id, "alice", T0 + 2000).await.expect("deny");
        let (cancelled, csecret) = pending(&s).await;
        s.cancel(&cancelled.id, &csecret.hash(), T0 + 10)
            .await
            .expect("cancel");

        let got = take_all(&s).await;
        let kinds: Vec<_> = got.iter().map(|q| q.event.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::LoginScanned,
                EventKind::LoginApproved,
                EventKind::LoginConsumed,
                EventKind::SessionRevoked,
                EventKind::LoginScanned,
                EventKind::LoginDenied,
            ]
        );
        let ids: Vec<_> = got.iter().map(|q| q.event.id.clone()).collect();
        assert_eq!(
            ids,
            [
                format!("evt_{id}_2"),
                format!("evt_{id}_3"),
                format!("evt_{id}_4"),
                format!("evt_{id}_revoked"),
                format!("evt_{}_2", denied.id),
                format!("evt_{}_3", denied.id),
            ]
        );
        for (q, at) in got[..3].iter().zip([T0 + 1000, T0 + 2000, T0 + 3000]) {
            let e = &q.event;
            assert_eq!(e.login_id, id);
            assert_eq!(e.at_ms, at);
            assert_eq!(e.user.as_ref(), Some(&user));
            assert_eq!(e.ip.as_deref(), Some(new.browser.ip.as_str()));
            assert_eq!(
                e.user_agent.as_deref(),
                Some(new.browser.user_agent.as_str())
            );
            assert_eq!(e.client_id.as_deref(), Some("rp-1"));
        }
        let revoked = &got[3].event;
        assert_eq!(revoked.login_id, id);
        assert_eq!(revoked.user.as_ref(), Some(&user));
        assert_eq!(got[5].event.user, Some(alice()));
        assert_eq!(got[5].event.client_id, None);
        let receipts: Vec<_> = got.iter().map(|q| q.receipt.clone()).collect();
        s.events_ack(&receipts).await.expect("ack");
        assert_eq!(
            s.events_take("other", 1000, 0, T0).await.expect("take"),
            vec![]
        );

        // A wrong match code denies the login: login.denied.
        let (m, _) = scanned_matching(&s).await;
        assert_eq!(
            s.approve_with(&m.id, "alice", Some(7), T0 + 2000).await,
            Err(TransitionError::WrongMatchCode)
        );
        let got = take_all(&s).await;
        let kinds: Vec<_> = got
            .iter()
            .map(|q| (q.event.kind, q.event.id.clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (EventKind::LoginScanned, format!("evt_{}_2", m.id)),
                (EventKind::LoginDenied, format!("evt_{}_3", m.id)),
            ]
        );
        let receipts: Vec<_> = got.iter().map(|q| q.receipt.clone()).collect();
        s.events_ack(&receipts).await.expect("ack");

        // Off again: nothing more.
        s.set_events(false);
        let (rec, _) = scanned(&s).await;
        s.deny(&rec.id, "alice", T0 + 2000).await.expect("deny");
        assert_eq!(
            s.events_take("other", 1000, 0, T0).await.expect("take"),
            vec![]
        );
    }

    pub async fn events_taken_held_reclaimed_acked(s: Sut) {
        const HOUR: u64 = 3_600_000;
        s.set_events(true);
        let mut made = Vec::new();
        for _ in 0..3 {
            let (rec, _) = scanned(&s).await;
            made.push(format!("evt_{}_2", rec.id));
        }
        // `max` bounds a take; the rest comes next.
        let a1 = s.events_take("a", 2, HOUR, T0).await.expect("take");
        let a2 = s.events_take("a", 2, HOUR, T0).await.expect("take");
        let ids: Vec<_> = a1.iter().chain(&a2).map(|q| q.event.id.clone()).collect();
        assert_eq!(ids, made);
        // Taken: nobody gets them before they were idle for the bound.
        assert_eq!(
            s.events_take("b", 10, HOUR, T0).await.expect("take"),
            vec![]
        );
        // Held by a: still not idle.
        let held: Vec<_> = a1.iter().map(|q| q.receipt.clone()).collect();
        s.events_hold("a", &held, T0).await.expect("hold");
        assert_eq!(
            s.events_take("b", 10, HOUR, T0).await.expect("take"),
            vec![]
        );
        // a silent for the bound (0 here): another consumer takes all its
        // events over, the same entries with the same ids, in order.
        let b = s.events_take("b", 10, 0, T0).await.expect("take");
        let want: Vec<_> = a1.iter().chain(&a2).cloned().collect();
        assert_eq!(b, want, "all of a's events, in order");
        // Acknowledged: gone for everybody.
        let receipts: Vec<_> = b.iter().map(|q| q.receipt.clone()).collect();
        s.events_ack(&receipts[..2]).await.expect("ack");
        let rest = s.events_take("c", 10, 0, T0).await.expect("take");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].receipt, receipts[2]);
        s.events_ack(&receipts).await.expect("ack again");
        s.events_ack(&[]).await.expect("ack nothing");
        assert_eq!(s.events_take("c", 10, 0, T0).await.expect("take"), vec![]);
    }

    fn geo(cc: &str, lat: f64, lon: f64, asn: Option<u32>) -> Place {
        Place {
            city: Some(format!("City of {cc} \"ü\"")),
            region: Some("Region".into()),
            country: Some(format!("Country {cc}")),
            country_code: Some(cc.into()),
            coords: Coords::from_degrees(lat, lon),
            asn,
            org: asn.map(|a| format!("Org {a}")),
            hosting: false,
        }
    }

    fn check(phone: &Place, phone_ip: &str) -> ScanPolicy {
        ScanPolicy {
            matching: MatchPolicy::IfHighRisk,
            risk: Some(RiskCheck {
                phone: phone.clone(),
                phone_network: network_key(phone, phone_ip),
                max_distance_km: 500,
            }),
        }
    }

    /// A login (match code 42) from `place` at `ip`, scanned by alice with
    /// `policy` at T0+1000.
    async fn scanned_at(
        s: &Sut,
        place: Option<Place>,
        ip: &str,
        policy: &ScanPolicy,
    ) -> (LoginRecord, BrowserSecret) {
        let (mut new, secret) = new_login(Some(42));
        new.browser.ip = ip.into();
        new.browser.place = place;
        let rec = s.create(new.clone(), T0).await.expect("create");
        assert_eq!(rec.browser, new.browser);
        assert_eq!(s.get(&rec.id, T0).await.expect("get"), Some(rec.clone()));
        let sc = s
            .scan_assessed(&rec.id, &alice(), policy, T0 + 1000)
            .await
            .expect("scan");
        (sc, secret)
    }

    /// (name, browser place, browser ip, phone place, phone ip, reasons).
    type RiskCase = (
        &'static str,
        Option<Place>,
        &'static str,
        Place,
        &'static str,
        Vec<RiskReason>,
    );

    pub async fn risk_verdict_is_decided_at_scan(s: Sut) {
        use RiskReason::*;
        let berlin = geo("DE", 52.52, 13.405, Some(64500));
        let amsterdam = geo("NL", 52.3676, 4.9041, Some(64501));
        let vaals = geo("NL", 50.7703, 6.0181, Some(64500));
        let aachen = geo("DE", 50.7753, 6.0839, Some(64500));
        let mut hosted = berlin.clone();
        hosted.hosting = true;
        hosted.org = Some("Cloud \"Ltd\"".into());
        // From Berlin (52.52, 13.405) due south: 4.49 degrees of latitude
        // is 499.3 km, 4.5 is 500.4 km (haversine, R = 6371 km).
        let near = geo("DE", 52.52 - 4.49, 13.405, Some(64500));
        let far = geo("DE", 52.52 - 4.50, 13.405, Some(64500));
        let no_asn = Place {
            asn: None,
            org: None,
            ..berlin.clone()
        };
        let cases: Vec<RiskCase> = vec![
            (
                "same city",
                Some(berlin.clone()),
                "192.0.2.1",
                berlin.clone(),
                "198.51.100.1",
                vec![],
            ),
            (
                "other country, far, other AS",
                Some(amsterdam.clone()),
                "192.0.2.1",
                berlin.clone(),
                "192.0.2.2",
                vec![OtherCountry, FarAway, OtherNetwork],
            ),
            (
                "across a border",
                Some(vaals),
                "192.0.2.1",
                aachen,
                "198.51.100.1",
                vec![OtherCountry],
            ),
            (
                "hosting",
                Some(hosted),
                "192.0.2.1",
                berlin.clone(),
                "198.51.100.1",
                vec![HostingNetwork],
            ),
            (
                "499 km",
                Some(near),
                "192.0.2.1",
                berlin.clone(),
                "198.51.100.1",
                vec![],
            ),
            (
                "500.4 km",
                Some(far),
                "192.0.2.1",
                berlin.clone(),
                "198.51.100.1",
                vec![FarAway],
            ),
            (
                "no place, same /24",
                None,
                "192.0.2.1",
                Place::default(),
                "192.0.2.200",
                vec![],
            ),
            (
                "no place, other /24",
                None,
                "192.0.2.1",
                Place::default(),
                "198.51.100.1",
                vec![OtherNetwork],
            ),
            (
                "no AS, same /24",
                Some(no_asn.clone()),
                "192.0.2.1",
                no_asn.clone(),
                "192.0.2.9",
                vec![],
            ),
            (
                "AS versus /24",
                Some(no_asn),
                "192.0.2.1",
                berlin.clone(),
                "192.0.2.9",
                vec![OtherNetwork],
            ),
            (
                "v6 /64",
                Some(Place::default()),
                "2001:db8:1:2::1",
                Place::default(),
                "2001:db8:1:2::ff",
                vec![],
            ),
        ];
        for (name, bplace, bip, phone, pip, want) in cases {
            let policy = check(&phone, pip);
            let (sc, _) = scanned_at(&s, bplace.clone(), bip, &policy).await;
            let none = Place::default();
            let bp = bplace.as_ref().unwrap_or(&none);
            let rule = assess(
                bp,
                &network_key(bp, bip),
                &phone,
                &network_key(&phone, pip),
                500,
            );
            assert_eq!(rule, Risk::of(want.clone()), "{name}: the rule itself");
            assert_eq!(sc.risk, Some(Risk::of(want.clone())), "{name}");
            assert_eq!(sc.presence_required(), !want.is_empty(), "{name}");
            let got = s.get(&sc.id, T0).await.expect("get").expect("exists");
            assert_eq!(got, sc, "{name}: stored as scanned");
            // A reloaded phone page (same user) sees the same verdict, even
            // from elsewhere.
            let again = s
                .scan_assessed(
                    &sc.id,
                    &alice(),
                    &check(&Place::default(), "203.0.113.1"),
                    T0 + 1500,
                )
                .await
                .expect("rescan");
            assert_eq!(again, sc, "{name}: rescan");
        }
        // Random places (a fixed LCG, so a failure reproduces): the stored
        // verdict is the rule's, in Rust and in Lua alike.
        let mut seed: u64 = 0x5eed_1234;
        let mut next = move |m: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % m
        };
        for i in 0..40 {
            fn rand_place(next: &mut impl FnMut(u64) -> u64) -> Place {
                Place {
                    country_code: Some(["DE", "NL", "FR"][next(3) as usize].into()),
                    coords: Some(Coords {
                        lat_e6: next(180_000_000) as i32 - 90_000_000,
                        lon_e6: next(360_000_000) as i32 - 180_000_000,
                    }),
                    asn: (next(3) > 0).then(|| 64500 + next(2) as u32),
                    hosting: next(5) == 0,
                    ..Place::default()
                }
            }
            let bp = rand_place(&mut next);
            let pp = rand_place(&mut next);
            let km = 1 + next(20_000) as u32;
            let policy = ScanPolicy {
                matching: MatchPolicy::Never,
                risk: Some(RiskCheck {
                    phone: pp.clone(),
                    phone_network: network_key(&pp, "198.51.100.1"),
                    max_distance_km: km,
                }),
            };
            let (sc, _) = scanned_at(&s, Some(bp.clone()), "192.0.2.1", &policy).await;
            let rule = assess(
                &bp,
                &network_key(&bp, "192.0.2.1"),
                &pp,
                &policy
                    .risk
                    .as_ref()
                    .map(|r| r.phone_network.clone())
                    .unwrap_or_default(),
                km,
            );
            assert_eq!(
                sc.risk,
                Some(rule),
                "random case {i}: {bp:?} / {pp:?} / {km} km"
            );
        }

        // No database: no verdict, whatever the places.
        let never = ScanPolicy {
            matching: MatchPolicy::Never,
            risk: None,
        };
        let (sc, _) = scanned_at(&s, Some(amsterdam), "192.0.2.1", &never).await;
        assert_eq!(sc.risk, None);
        assert!(!sc.presence_required());
        assert!(!sc.match_required);
        assert_eq!(s.get(&sc.id, T0).await.expect("get"), Some(sc.clone()));
    }

    pub async fn high_risk_needs_presence(s: Sut) {
        let berlin = geo("DE", 52.52, 13.405, Some(64500));
        let amsterdam = geo("NL", 52.3676, 4.9041, Some(64500));
        let mut policy = check(&berlin, "198.51.100.1");
        policy.matching = MatchPolicy::Always;
        let (mut new, secret) = new_login(Some(42));
        new.browser.ip = "192.0.2.1".into();
        new.browser.place = Some(amsterdam);
        let rec = s.create(new, T0).await.expect("create");
        // Registered before the scan, so the scan's own hint (delivered
        // asynchronously through pub/sub) is seen first, not mistaken for
        // one of the refused approves'.
        let mut reg = s.notifier().register(rec.id);
        let sc = s
            .scan_assessed(&rec.id, &alice(), &policy, T0 + 1000)
            .await
            .expect("scan");
        assert_eq!(sc.risk.as_ref().map(|r| r.level), Some(RiskLevel::High));
        assert!(sc.match_required);
        expect_hint(
            &mut reg,
            Hint::Changed {
                version: 2,
                state: State::Scanned,
                user: Some(alice()),
                match_required: true,
            },
        )
        .await;
        // Without the tick: refused, whatever the code, nothing changes.
        for code in [Some(42), Some(41), None] {
            assert_eq!(
                s.approve_with(&sc.id, "alice", code, T0 + 2000).await,
                Err(PresenceRequired),
                "code {code:?}"
            );
        }
        let no_tick = Approval {
            match_code: Some(42),
            confirm_presence: false,
        };
        assert_eq!(
            s.approve_checked(&sc.id, "alice", &no_tick, T0 + 2000)
                .await,
            Err(PresenceRequired)
        );
        // Another user is still WrongUser, not a presence question.
        let tick = Approval {
            match_code: Some(42),
            confirm_presence: true,
        };
        assert_eq!(
            s.approve_checked(&sc.id, "bob", &tick, T0 + 2000).await,
            Err(WrongUser)
        );
        assert_eq!(state_of(&s, &sc.id).await, (State::Scanned, 2));
        assert_no_hint(&mut reg, "approve without presence").await;
        let a = s
            .approve_checked(&sc.id, "alice", &tick, T0 + 2100)
            .await
            .expect("approve with presence");
        assert_eq!(a.state, State::Approved);
        assert_eq!(a.risk, sc.risk);
        let token = SessionToken::new_for(sc.id);
        assert_eq!(
            s.redeem(&sc.id, &secret.hash(), &token, T0 + 3000).await,
            Ok(alice())
        );

        // Ticked but the wrong code: denied as always.
        let (sc, _) = scanned_at(
            &s,
            Some(geo("NL", 52.3676, 4.9041, None)),
            "192.0.2.1",
            &policy,
        )
        .await;
        let wrong = Approval {
            match_code: Some(41),
            confirm_presence: true,
        };
        assert_eq!(
            s.approve_checked(&sc.id, "alice", &wrong, T0 + 2000).await,
            Err(WrongMatchCode)
        );
        assert_eq!(state_of(&s, &sc.id).await, (State::Denied, 3));

        // Low verdict: no tick needed (and a tick is harmless).
        let (sc, _) = scanned_at(
            &s,
            Some(berlin.clone()),
            "198.51.100.2",
            &check(&berlin, "198.51.100.1"),
        )
        .await;
        assert_eq!(sc.risk, Some(Risk::of(vec![])));
        assert_eq!(
            s.approve(&sc.id, "alice", T0 + 2000).await.map(|r| r.state),
            Ok(State::Approved)
        );
        let (sc, _) = scanned_at(
            &s,
            Some(berlin.clone()),
            "198.51.100.2",
            &check(&berlin, "198.51.100.1"),
        )
        .await;
        assert_eq!(
            s.approve_checked(
                &sc.id,
                "alice",
                &Approval {
                    match_code: None,
                    confirm_presence: true
                },
                T0 + 2000
            )
            .await
            .map(|r| r.state),
            Ok(State::Approved)
        );
    }

    pub async fn matching_follows_the_risk_verdict(s: Sut) {
        let berlin = geo("DE", 52.52, 13.405, Some(64500));
        let amsterdam = geo("NL", 52.3676, 4.9041, Some(64500));
        let (low, _) = scanned_at(
            &s,
            Some(berlin.clone()),
            "192.0.2.1",
            &check(&berlin, "198.51.100.1"),
        )
        .await;
        assert!(!low.match_required, "low: no code");
        let (high, _) = scanned_at(
            &s,
            Some(amsterdam),
            "192.0.2.1",
            &check(&berlin, "198.51.100.1"),
        )
        .await;
        assert!(high.match_required, "high: the code");
        // IfHighRisk without a verdict fails closed.
        let blind = ScanPolicy {
            matching: MatchPolicy::IfHighRisk,
            risk: None,
        };
        let (sc, _) = scanned_at(&s, None, "192.0.2.1", &blind).await;
        assert!(sc.match_required, "no verdict: the code");
        assert_eq!(sc.risk, None);
    }

    /// `user` scans, approves and redeems a fresh login at `at`; its sid
    /// and session token.
    async fn logged_in(s: &Sut, user: &User, at: u64) -> (LoginId, SessionToken) {
        let (new, secret) = new_login(None);
        let rec = s.create(new, at).await.expect("create");
        s.scan(&rec.id, user, at + 1).await.expect("scan");
        s.approve(&rec.id, &user.id, at + 2).await.expect("approve");
        let token = SessionToken::new_for(rec.id);
        s.redeem(&rec.id, &secret.hash(), &token, at + 3)
            .await
            .expect("redeem");
        (rec.id, token)
    }

    async fn live(s: &Sut, t: &SessionToken, now: u64) -> bool {
        s.session(&t.session_ref(), now)
            .await
            .expect("session")
            .is_some()
    }

    async fn sids(s: &Sut, user: &str, now: u64) -> Vec<LoginId> {
        s.user_sessions(user, now)
            .await
            .expect("list")
            .into_iter()
            .map(|i| i.sid)
            .collect()
    }

    pub async fn user_sessions_list_and_revoke_one(s: Sut) {
        let (a1, t1) = logged_in(&s, &alice(), T0).await;
        let (a2, t2) = logged_in(&s, &alice(), T0 + 10).await;
        let (b1, tb) = logged_in(&s, &bob(), T0 + 20).await;
        let now = T0 + 100;
        let list = s.user_sessions("alice", now).await.expect("list");
        assert_eq!(list.iter().map(|i| i.sid).collect::<Vec<_>>(), vec![a1, a2]);
        let browser = new_login(None).0.browser;
        assert_eq!(list[0].user_id, "alice");
        assert_eq!(list[0].created_at_ms, T0 + 3);
        assert_eq!(list[0].expires_at_ms, T0 + 3 + TTLS.session_ms);
        assert_eq!(list[0].ip, browser.ip);
        assert_eq!(list[0].user_agent, browser.user_agent);
        assert_eq!(sids(&s, "bob", now).await, vec![b1]);
        assert_eq!(sids(&s, "carol", now).await, vec![]);
        // Someone else's sid: refused, and their session stays.
        assert!(!s
            .revoke_user_session("bob", &a1, now)
            .await
            .expect("revoke"));
        assert!(!s
            .revoke_user_session("alice", &LoginId::random(), now)
            .await
            .expect("revoke unknown"));
        assert!(live(&s, &t1, now).await);
        // Their own: gone from the list and from the session lookup.
        assert!(s
            .revoke_user_session("alice", &a1, now)
            .await
            .expect("revoke"));
        assert!(!live(&s, &t1, now + 1).await);
        assert!(live(&s, &t2, now + 1).await);
        assert!(live(&s, &tb, now + 1).await);
        assert_eq!(sids(&s, "alice", now + 1).await, vec![a2]);
        assert!(!s
            .revoke_user_session("alice", &a1, now + 2)
            .await
            .expect("revoke again"));
        // A user id that needs escaping in any key or text format.
        let (t, tt) = logged_in(&s, &tricky_user(), now).await;
        assert_eq!(sids(&s, &tricky_user().id, now + 10).await, vec![t]);
        assert!(s
            .revoke_user_session(&tricky_user().id, &t, now + 10)
            .await
            .expect("revoke tricky"));
        assert!(!live(&s, &tt, now + 11).await);
    }

    pub async fn user_sessions_revoke_all(s: Sut) {
        let (_, t1) = logged_in(&s, &alice(), T0).await;
        let (_, t2) = logged_in(&s, &alice(), T0 + 10).await;
        let (b1, tb) = logged_in(&s, &bob(), T0 + 20).await;
        // Approved a moment ago, not redeemed yet.
        let (new, secret) = new_login(None);
        let pending = s.create(new, T0 + 30).await.expect("create");
        s.scan(&pending.id, &alice(), T0 + 31).await.expect("scan");
        s.approve(&pending.id, "alice", T0 + 32)
            .await
            .expect("approve");
        let now = T0 + 100;
        assert_eq!(s.revoke_user_sessions("alice", now).await, Ok(2));
        assert!(!live(&s, &t1, now + 1).await);
        assert!(!live(&s, &t2, now + 1).await);
        assert_eq!(sids(&s, "alice", now + 1).await, vec![]);
        let token = SessionToken::new_for(pending.id);
        assert_eq!(
            s.redeem(&pending.id, &secret.hash(), &token, now + 2).await,
            Err(TransitionError::NotFound),
            "a login approved before log-out-everywhere must not become a session"
        );
        assert!(!live(&s, &token, now + 3).await);
        assert!(live(&s, &tb, now + 3).await, "bob is not affected");
        assert_eq!(sids(&s, "bob", now + 3).await, vec![b1]);
        assert_eq!(s.revoke_user_sessions("alice", now + 4).await, Ok(0));
        // New logins after it work as before.
        let (a3, t3) = logged_in(&s, &alice(), now + 10).await;
        assert!(live(&s, &t3, now + 20).await);
        assert_eq!(sids(&s, "alice", now + 20).await, vec![a3]);
    }

    pub async fn user_sessions_drop_out(s: Sut) {
        let (a1, t1) = logged_in(&s, &alice(), T0).await;
        let end = T0 + 3 + TTLS.session_ms;
        assert_eq!(sids(&s, "alice", end - 1).await, vec![a1]);
        assert_eq!(sids(&s, "alice", end).await, vec![], "expired");
        assert_eq!(s.revoke_user_sessions("alice", end).await, Ok(0));
        // Logout drops it; a logout naming the wrong hash does not.
        let (a2, t2) = logged_in(&s, &alice(), T0 + 10).await;
        let wrong = SessionToken::new_for(a2);
        s.revoke_session(&wrong.session_ref())
            .await
            .expect("revoke wrong");
        assert!(sids(&s, "alice", T0 + 20).await.contains(&a2));
        s.revoke_session(&t2.session_ref()).await.expect("logout");
        assert!(!sids(&s, "alice", T0 + 20).await.contains(&a2));
        assert!(!live(&s, &t1, end).await);
        // Approved but never redeemed, and a refused approve by bob: not
        // listed for anyone.
        let (new, _) = new_login(None);
        let rec = s.create(new, T0 + 30).await.expect("create");
        s.scan(&rec.id, &alice(), T0 + 31).await.expect("scan");
        assert_eq!(
            s.approve(&rec.id, "bob", T0 + 32).await,
            Err(TransitionError::WrongUser)
        );
        assert!(!s
            .revoke_user_session("bob", &rec.id, T0 + 33)
            .await
            .expect("revoke by bob"));
        s.approve(&rec.id, "alice", T0 + 34).await.expect("approve");
        assert_eq!(sids(&s, "bob", T0 + 40).await, vec![]);
        assert!(!sids(&s, "alice", T0 + 40).await.contains(&rec.id));
    }
}
