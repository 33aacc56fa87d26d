//! Adversarial suite, part 3: races (SECURITY.md, property 3).
//!
//! Every transition happens at most once, atomically: of concurrent callers
//! exactly one wins. Seven kinds of race, each run many times per store:
//!
//! | race | set-up | racers | must hold |
//! |---|---|---|---|
//! | approves | scanned | N approves by the scanner | exactly one Ok |
//! | redeems | approved | N redeems, N tokens | exactly one Ok, exactly one live session |
//! | approve vs deny | scanned | N/2 approves, N/2 denies | exactly one Ok; final state is the winner's |
//! | approve vs expiry | scanned, clock 1 ms before expiry | approves and a redeem reading the clock, and a task moving it to the expiry | at most one approve, at most one session; at the expiry nothing more |
//! | approve vs cancel | scanned | approves, one cancel, one redeem | at most one approve; exactly one of cancel / redeem wins; a session iff redeem won |
//! | cancel vs redeem | approved | N/2 cancels, N/2 redeems | exactly one Ok; a session iff a redeem won |
//! | two users scan | pending | N scans, alternating users | every Ok is the same user; the other gets WrongUser; only the winner may approve |
//!
//! The bulk runs against the [`Store`] directly (5,000 trials per store,
//! 10,000 in all; the Redis trials go through two connections, like two
//! instances), plus a smaller number over real HTTP.

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use futures_util::stream::{self, StreamExt};
use qrlogin_core::{
    BrowserContext, BrowserSecret, Clock, LoginId, ManualClock, NewLogin, SessionToken, State,
    Store, TransitionError, Ttls, User,
};
use qrlogin_testkit::contract::{T0, TTLS};
use qrlogin_testkit::RedisServer;
use reqwest::StatusCode;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

per_store!(store_races_zero_double_wins, http_races_zero_double_wins);

/// Trials per store, over all kinds of race.
const STORE_TRIALS: usize = 5_000;
/// Trials in flight at once (independent logins).
const IN_FLIGHT: usize = 16;
/// Racers per trial.
const N: usize = 6;

/// The contract suite's TTLs, but final states kept for 10 minutes: the
/// trials share a store and one of them moves time to a login's expiry
/// (T0 + 180 s); with the default 30 s keep, that would purge the final
/// states of the trials running beside it before they are checked.
const RACE_TTLS: Ttls = Ttls {
    final_keep_ms: 600_000,
    ..TTLS
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Race {
    Approves,
    Redeems,
    ApproveVsDeny,
    ApproveVsExpiry,
    ApproveVsCancel,
    CancelVsRedeem,
    TwoUsersScan,
}

const RACES: [Race; 7] = [
    Race::Approves,
    Race::Redeems,
    Race::ApproveVsDeny,
    Race::ApproveVsExpiry,
    Race::ApproveVsCancel,
    Race::CancelVsRedeem,
    Race::TwoUsersScan,
];

fn user(id: &str) -> User {
    User {
        id: id.into(),
        name: id.to_uppercase(),
    }
}

/// The stores the racers use: one, or two connections to the same Redis.
struct Stores {
    all: Vec<Arc<dyn Store>>,
    _redis: Option<RedisServer>,
}

impl Stores {
    /// The store racer `i` uses.
    fn of(&self, i: usize) -> Arc<dyn Store> {
        self.all[i % self.all.len()].clone()
    }
}

async fn stores(kind: StoreKind) -> Stores {
    match kind {
        StoreKind::Memory => Stores {
            all: vec![Arc::new(qrlogin_core::MemoryStore::new(RACE_TTLS))],
            _redis: None,
        },
        StoreKind::Redis => {
            let server = redis_server().await;
            let mut all: Vec<Arc<dyn Store>> = Vec::new();
            for _ in 0..2 {
                let s =
                    qrlogin_redis::RedisStore::connect(&server.url(), TTLS, Duration::from_secs(5))
                        .await
                        .expect("connect to the private redis");
                all.push(Arc::new(s));
            }
            Stores {
                all,
                _redis: Some(server),
            }
        }
    }
}

/// A login created at T0 and brought to `state` (pending, scanned by
/// alice at T0+1, or approved at T0+2).
async fn login_in(s: &Stores, state: State) -> (LoginId, BrowserSecret) {
    let secret = BrowserSecret::random();
    let id = LoginId::random();
    let store = s.of(0);
    store
        .create(
            NewLogin {
                id,
                secret_hash: secret.hash(),
                browser: BrowserContext {
                    ip: "192.0.2.1".into(),
                    user_agent: "race".into(),
                    place: None,
                },
                match_code: None,
                client_id: None,
                pending_ms: None,
            },
            T0,
        )
        .await
        .expect("create");
    if matches!(state, State::Scanned | State::Approved) {
        store.scan(&id, &user("alice"), T0 + 1).await.expect("scan");
    }
    if state == State::Approved {
        store.approve(&id, "alice", T0 + 2).await.expect("approve");
    }
    (id, secret)
}

/// What one racer did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Act {
    Approve,
    Deny,
    Cancel,
    Redeem(Box<SessionToken>),
    Scan(String),
}

type Outcome = (Act, Result<(), TransitionError>);

/// Runs the racers at once (one task each, alternating stores) and returns
/// what each got.
async fn run_racers(
    s: &Stores,
    id: LoginId,
    secret: &BrowserSecret,
    acts: Vec<Act>,
    clock: Arc<dyn Clock>,
) -> Vec<Outcome> {
    let barrier = Arc::new(tokio::sync::Barrier::new(acts.len()));
    let mut tasks = Vec::new();
    for (i, act) in acts.into_iter().enumerate() {
        let store = s.of(i);
        let hash = secret.hash();
        let barrier = barrier.clone();
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let now = clock.now_ms();
            let r = match &act {
                Act::Approve => store.approve(&id, "alice", now).await.map(|_| ()),
                Act::Deny => store.deny(&id, "alice", now).await.map(|_| ()),
                Act::Cancel => store.cancel(&id, &hash, now).await.map(|_| ()),
                Act::Redeem(t) => store.redeem(&id, &hash, t, now).await.map(|_| ()),
                Act::Scan(u) => store.scan(&id, &user(u), now).await.map(|_| ()),
            };
            (act, r)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("racer task"));
    }
    out
}

fn wins(outs: &[Outcome], pred: impl Fn(&Act) -> bool) -> usize {
    outs.iter().filter(|(a, r)| pred(a) && r.is_ok()).count()
}

/// Live sessions among the tokens the racers used.
async fn live_sessions(s: &Stores, outs: &[Outcome], now: u64) -> usize {
    let mut n = 0;
    for (a, _) in outs {
        if let Act::Redeem(t) = a {
            if s.of(1)
                .session(&t.session_ref(), now)
                .await
                .expect("session")
                .is_some()
            {
                n += 1;
            }
        }
    }
    n
}

async fn state_of(s: &Stores, id: &LoginId) -> State {
    s.of(1)
        .get(id, T0)
        .await
        .expect("get")
        .expect("login exists")
        .state
}

/// Every loser got a refusal that names a state (not an error of the store).
fn losers_refused(outs: &[Outcome], race: Race) {
    for (a, r) in outs {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    TransitionError::WrongState(_)
                        | TransitionError::WrongUser
                        | TransitionError::Expired
                ),
                "{race:?}: {a:?} failed with {e:?}"
            );
        }
    }
}

/// One trial of `race`; returns who won (for the summary, which shows that
/// the racers really do interleave: each side wins some trials).
async fn trial(s: &Stores, race: Race) -> &'static str {
    let fixed: Arc<dyn Clock> = Arc::new(ManualClock::new(T0 + 10));
    match race {
        Race::Approves => {
            let (id, secret) = login_in(s, State::Scanned).await;
            // Token-bearing redeems would need a token made for this login.
            let outs = run_racers(s, id, &secret, vec![Act::Approve; N], fixed).await;
            losers_refused(&outs, race);
            let w = wins(&outs, |_| true);
            assert_eq!(w, 1, "{race:?}: {w} approves won: {outs:?}");
            assert_eq!(state_of(s, &id).await, State::Approved);
            "one approve"
        }
        Race::Redeems => {
            let (id, secret) = login_in(s, State::Approved).await;
            let acts = (0..N)
                .map(|_| Act::Redeem(Box::new(SessionToken::new_for(id))))
                .collect();
            let outs = run_racers(s, id, &secret, acts, fixed).await;
            losers_refused(&outs, race);
            let w = wins(&outs, |_| true);
            assert_eq!(w, 1, "{race:?}: {w} redeems won");
            assert_eq!(live_sessions(s, &outs, T0 + 20).await, 1, "{race:?}");
            assert_eq!(state_of(s, &id).await, State::Consumed);
            "one redeem"
        }
        Race::ApproveVsDeny => {
            let (id, secret) = login_in(s, State::Scanned).await;
            let acts = (0..N)
                .map(|i| if i % 2 == 0 { Act::Approve } else { Act::Deny })
                .collect();
            let outs = run_racers(s, id, &secret, acts, fixed).await;
            losers_refused(&outs, race);
            let a = wins(&outs, |a| *a == Act::Approve);
            let d = wins(&outs, |a| *a == Act::Deny);
            assert_eq!(a + d, 1, "{race:?}: {a} approves and {d} denies won");
            let want = if a == 1 {
                State::Approved
            } else {
                State::Denied
            };
            assert_eq!(state_of(s, &id).await, want);
            if a == 1 {
                "approve"
            } else {
                "deny"
            }
        }
        Race::ApproveVsExpiry => {
            let (id, secret) = login_in(s, State::Scanned).await;
            let expires = T0 + TTLS.pending_ms + TTLS.scan_extension_ms;
            let clock = Arc::new(ManualClock::new(expires - 1));
            let mut acts = vec![Act::Approve; N - 1];
            // A token made for this login, so a redeem could win.
            acts.push(Act::Redeem(Box::new(SessionToken::new_for(id))));
            let mover = {
                let clock = clock.clone();
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    clock.set_ms(expires);
                })
            };
            let outs = run_racers(s, id, &secret, acts, clock.clone()).await;
            mover.await.unwrap();
            losers_refused(&outs, race);
            let a = wins(&outs, |a| *a == Act::Approve);
            let r = wins(&outs, |a| matches!(a, Act::Redeem(_)));
            assert!(a <= 1, "{race:?}: {a} approves won");
            assert!(r <= a, "{race:?}: redeemed without an approval");
            // At the expiry: nothing more, ever.
            let late = SessionToken::new_for(id);
            let e = s
                .of(1)
                .redeem(&id, &secret.hash(), &late, expires)
                .await
                .expect_err("redeem at the expiry");
            assert!(
                matches!(
                    e,
                    TransitionError::Expired | TransitionError::WrongState(State::Consumed)
                ),
                "{race:?}: redeem at expiry: {e:?}"
            );
            let e = s
                .of(0)
                .approve(&id, "alice", expires)
                .await
                .expect_err("approve at the expiry");
            assert!(
                matches!(
                    e,
                    TransitionError::Expired | TransitionError::WrongState(State::Consumed)
                ),
                "{race:?}: approve at expiry: {e:?}"
            );
            assert!(s
                .of(0)
                .session(&late.session_ref(), expires)
                .await
                .unwrap()
                .is_none());
            assert_eq!(live_sessions(s, &outs, expires).await, r);
            match (a, r) {
                (0, _) => "expiry first",
                (_, 0) => "approve, then expiry",
                _ => "approve and redeem, then expiry",
            }
        }
        Race::ApproveVsCancel => {
            let (id, secret) = login_in(s, State::Scanned).await;
            let mut acts = vec![Act::Approve; N - 2];
            acts.insert(N / 3, Act::Cancel);
            acts.push(Act::Redeem(Box::new(SessionToken::new_for(id))));
            let outs = run_racers(s, id, &secret, acts, fixed).await;
            losers_refused(&outs, race);
            let a = wins(&outs, |a| *a == Act::Approve);
            let c = wins(&outs, |a| *a == Act::Cancel);
            let r = wins(&outs, |a| matches!(a, Act::Redeem(_)));
            assert!(a <= 1, "{race:?}: {a} approves won");
            assert_eq!(c + r, 1, "{race:?}: cancel {c}, redeem {r}: {outs:?}");
            assert!(r <= a, "{race:?}: redeemed without an approval");
            let want = if r == 1 {
                State::Consumed
            } else {
                State::Cancelled
            };
            assert_eq!(state_of(s, &id).await, want);
            assert_eq!(live_sessions(s, &outs, T0 + 20).await, r);
            match (a, r) {
                (0, _) => "cancel first",
                (_, 0) => "approve, cancel",
                _ => "approve, redeem",
            }
        }
        Race::CancelVsRedeem => {
            let (id, secret) = login_in(s, State::Approved).await;
            let acts = (0..N)
                .map(|i| {
                    if i % 2 == 0 {
                        Act::Cancel
                    } else {
                        Act::Redeem(Box::new(SessionToken::new_for(id)))
                    }
                })
                .collect();
            let outs = run_racers(s, id, &secret, acts, fixed).await;
            losers_refused(&outs, race);
            let c = wins(&outs, |a| *a == Act::Cancel);
            let r = wins(&outs, |a| matches!(a, Act::Redeem(_)));
            assert_eq!(c + r, 1, "{race:?}: cancel {c}, redeem {r}");
            assert_eq!(live_sessions(s, &outs, T0 + 20).await, r);
            if c == 1 {
                "cancel"
            } else {
                "redeem"
            }
        }
        Race::TwoUsersScan => {
            let (id, secret) = login_in(s, State::Pending).await;
            let acts = (0..N)
                .map(|i| Act::Scan(if i % 2 == 0 { "alice" } else { "bob" }.into()))
                .collect();
            let outs = run_racers(s, id, &secret, acts, fixed).await;
            losers_refused(&outs, race);
            let winners: std::collections::BTreeSet<String> = outs
                .iter()
                .filter(|(_, r)| r.is_ok())
                .map(|(a, _)| match a {
                    Act::Scan(u) => u.clone(),
                    _ => unreachable!(),
                })
                .collect();
            assert_eq!(winners.len(), 1, "{race:?}: scanned by {winners:?}");
            let winner = winners.into_iter().next().unwrap();
            for (a, r) in &outs {
                if let (Act::Scan(u), Err(e)) = (a, r) {
                    assert_ne!(*u, winner);
                    assert_eq!(*e, TransitionError::WrongUser, "{race:?}");
                }
            }
            let loser = if winner == "alice" { "bob" } else { "alice" };
            assert_eq!(
                s.of(0).approve(&id, loser, T0 + 20).await.unwrap_err(),
                TransitionError::WrongUser
            );
            let rec = s.of(1).get(&id, T0).await.unwrap().unwrap();
            assert_eq!(rec.user.map(|u| u.id), Some(winner.clone()));
            if winner == "alice" {
                "alice"
            } else {
                "bob"
            }
        }
    }
}

async fn store_races_zero_double_wins(kind: StoreKind) {
    let s = Arc::new(stores(kind).await);
    let done = Arc::new(AtomicUsize::new(0));
    let summary: BTreeMap<(Race, &str), usize> = stream::iter(0..STORE_TRIALS)
        .map(|i| {
            let s = s.clone();
            let done = done.clone();
            async move {
                let race = RACES[i % RACES.len()];
                let won = trial(&s, race).await;
                done.fetch_add(1, Ordering::Relaxed);
                (race, won)
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .fold(BTreeMap::new(), |mut m, key| async move {
            *m.entry(key).or_insert(0) += 1;
            m
        })
        .await;
    assert_eq!(done.load(Ordering::Relaxed), STORE_TRIALS);
    eprintln!("{kind:?}: {STORE_TRIALS} race trials, zero double wins; who won:");
    for ((race, won), n) in &summary {
        eprintln!("  {race:?}: {won}: {n}");
    }
}

// ---------------------------------------------------------------------------
// over HTTP

/// HTTP trials per kind of race, per store.
const HTTP_TRIALS: usize = 15;

async fn http_race(reqs: Vec<reqwest::RequestBuilder>) -> Vec<Reply> {
    futures_util::future::join_all(reqs.into_iter().map(send)).await
}

fn oks(replies: &[Reply]) -> usize {
    replies.iter().filter(|r| r.status.is_success()).count()
}

fn losers_conflict(replies: &[Reply], what: &str) {
    for r in replies.iter().filter(|r| !r.status.is_success()) {
        assert!(
            r.status == StatusCode::CONFLICT || r.status == StatusCode::NOT_FOUND,
            "{what}: a loser got {} {}",
            r.status,
            r.text()
        );
        r.assert_json_error();
        assert!(
            r.set_cookie("qrl_session").is_none(),
            "{what}: loser got a session"
        );
    }
}

async fn http_races_zero_double_wins(kind: StoreKind) {
    let app = sec::unlimited(kind).await;
    let browser = app.browser();
    let alice = app.phone(ALICE).await;
    let bob = app.phone(BOB).await;
    let http = raw_client();
    let phone_req = |p: &Phone, id: &str, action: &str| {
        http.post(app.url(&format!("/v1/mobile/logins/{id}/{action}")))
            .bearer_auth(&p.token)
    };
    let browser_req = |l: &Login, method: reqwest::Method, path: &str| {
        http.request(method, app.url(&format!("/v1/logins/{}{path}", l.id)))
            .bearer_auth(l.secret.as_deref().unwrap())
    };
    let mut trials = 0;
    for _ in 0..HTTP_TRIALS {
        // N approves.
        let l = browser.create_header().await;
        alice.scan_ok(&l.id).await;
        let r = http_race(
            (0..N)
                .map(|_| phone_req(&alice, &l.id, "approve"))
                .collect(),
        )
        .await;
        assert_eq!(oks(&r), 1, "approves");
        losers_conflict(&r, "approves");

        // N redeems: one token, one session.
        let r = http_race(
            (0..N)
                .map(|_| browser_req(&l, reqwest::Method::POST, "/redeem"))
                .collect(),
        )
        .await;
        assert_eq!(oks(&r), 1, "redeems");
        losers_conflict(&r, "redeems");
        let token = r.iter().find(|r| r.status.is_success()).unwrap().json()["token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            browser.whoami_bearer(&token).await.ok_json(StatusCode::OK)["user"]["id"],
            ALICE_ID
        );

        // Approve vs deny.
        let l = browser.create_header().await;
        alice.scan_ok(&l.id).await;
        let r = http_race(
            (0..N)
                .map(|i| phone_req(&alice, &l.id, if i % 2 == 0 { "approve" } else { "deny" }))
                .collect(),
        )
        .await;
        assert_eq!(oks(&r), 1, "approve vs deny");
        losers_conflict(&r, "approve vs deny");
        let winner = r.iter().find(|r| r.status.is_success()).unwrap().json()["state"].clone();
        assert_eq!(browser.state(&l).await, winner.as_str().unwrap());

        // Cancel vs redeem.
        let l = browser.create_header().await;
        alice.scan_ok(&l.id).await;
        alice.approve_ok(&l.id).await;
        let r = http_race(
            (0..N)
                .map(|i| {
                    if i % 2 == 0 {
                        browser_req(&l, reqwest::Method::DELETE, "")
                    } else {
                        browser_req(&l, reqwest::Method::POST, "/redeem")
                    }
                })
                .collect(),
        )
        .await;
        assert_eq!(oks(&r), 1, "cancel vs redeem");
        losers_conflict(&r, "cancel vs redeem");

        // Two users scan.
        let l = browser.create_header().await;
        let r = http_race(
            (0..N)
                .map(|i| phone_req(if i % 2 == 0 { &alice } else { &bob }, &l.id, "scan"))
                .collect(),
        )
        .await;
        let ok_users: std::collections::BTreeSet<usize> = r
            .iter()
            .enumerate()
            .filter(|(_, r)| r.status.is_success())
            .map(|(i, _)| i % 2)
            .collect();
        assert_eq!(ok_users.len(), 1, "two users scanned one login");
        losers_conflict(&r, "two users scan");
        trials += 4;
    }
    eprintln!("{kind:?}: {trials} HTTP race trials, zero double wins");
}
