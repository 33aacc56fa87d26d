//! Adversarial suite, part 9: a property test against a reference model
//! (SECURITY.md, properties 2–6).
//!
//! Random sequences of browser (create, cancel, redeem, status, events),
//! phone (two users: scan, approve with no / the right / a wrong code, deny
//! from the browser's network or another one), bystander (every browser
//! call with no, a forged, or another login's secret) and clock actions
//! (small steps, and jumps to 1 ms before / exactly at a login's expiry or
//! purge) run against a real store and against
//! [`qrlogin_testkit::model::Model`], and every answer is compared:
//!
//! * `store_matches_the_model` drives the [`Store`] directly (memory: a
//!   fresh store per case; Redis: one private server, fresh ids per case)
//!   and compares whole records, errors, reads and sessions.
//! * `http_matches_the_model` drives the real HTTP API (one service per
//!   store, a manual clock, number matching on-risk with 127.0.0.1 a trusted
//!   proxy so requests can come from either network) and compares statuses,
//!   error codes, states, users and the bystander's 404 bodies.
//!
//! Cases are bounded so both run in a few seconds; set `PROPTEST_CASES` to
//! run more.

#[macro_use]
mod common;
#[path = "common/security.rs"]
mod sec;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use qrlogin_core::{
    network_of, BrowserContext, BrowserSecret, Clock, LoginId, ManualClock, MatchPolicy,
    MemoryStore, NewLogin, SecretHash, SessionToken, State, Store, TransitionError, User,
};
use qrlogin_server::config::MatchMode;
use qrlogin_testkit::contract::{T0, TTLS};
use qrlogin_testkit::model::Model;
use reqwest::StatusCode;
use std::sync::Arc;

// ---------------------------------------------------------------------------
// actions

/// Where a request comes from: the browser's network, or another one.
const BROWSER_IPS: [&str; 2] = ["192.0.2.10", "2001:db8:1:2::10"];
const SAME_NET_PHONE: [&str; 2] = ["192.0.2.99", "2001:db8:1:2::99"];
const OTHER_NET_PHONE: &str = "198.51.100.1";

#[derive(Debug, Clone, Copy)]
enum Code {
    None,
    Right,
    Wrong,
}

#[derive(Debug, Clone, Copy)]
enum Policy {
    Never,
    Always,
    SameNetwork,
    OtherNetwork,
}

#[derive(Debug, Clone, Copy)]
enum Edge {
    BeforeExpiry,
    AtExpiry,
    BeforePurge,
    AtPurge,
}

#[derive(Debug, Clone, Copy)]
enum BystanderCall {
    Status,
    Events,
    Redeem,
    Cancel,
}

#[derive(Debug, Clone, Copy)]
enum Forged {
    None,
    Random,
    OtherLogins,
}

#[derive(Debug, Clone)]
enum Action {
    Create {
        code: bool,
        net: usize,
    },
    Scan {
        login: Index,
        bob: bool,
        policy: Policy,
    },
    Approve {
        login: Index,
        bob: bool,
        code: Code,
    },
    Deny {
        login: Index,
        bob: bool,
    },
    Cancel {
        login: Index,
        right: bool,
    },
    Redeem {
        login: Index,
        right: bool,
    },
    Status {
        login: Index,
        events: bool,
    },
    Bystander {
        login: Index,
        call: BystanderCall,
        cred: Forged,
    },
    Sessions,
    Advance {
        ms: u64,
    },
    ToEdge {
        login: Index,
        edge: Edge,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let code = prop_oneof![Just(Code::None), Just(Code::Right), Just(Code::Wrong)];
    let policy = prop_oneof![
        Just(Policy::Never),
        Just(Policy::Always),
        Just(Policy::SameNetwork),
        Just(Policy::OtherNetwork)
    ];
    let edge = prop_oneof![
        Just(Edge::BeforeExpiry),
        Just(Edge::AtExpiry),
        Just(Edge::BeforePurge),
        Just(Edge::AtPurge)
    ];
    let call = prop_oneof![
        Just(BystanderCall::Status),
        Just(BystanderCall::Events),
        Just(BystanderCall::Redeem),
        Just(BystanderCall::Cancel)
    ];
    let cred = prop_oneof![
        Just(Forged::None),
        Just(Forged::Random),
        Just(Forged::OtherLogins)
    ];
    prop_oneof![
        3 => (any::<bool>(), 0..2usize).prop_map(|(code, net)| Action::Create { code, net }),
        4 => (any::<Index>(), any::<bool>(), policy)
            .prop_map(|(login, bob, policy)| Action::Scan { login, bob, policy }),
        4 => (any::<Index>(), any::<bool>(), code)
            .prop_map(|(login, bob, code)| Action::Approve { login, bob, code }),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(login, bob)| Action::Deny { login, bob }),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(login, right)| Action::Cancel { login, right }),
        3 => (any::<Index>(), any::<bool>()).prop_map(|(login, right)| Action::Redeem { login, right }),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(login, events)| Action::Status { login, events }),
        2 => (any::<Index>(), call, cred)
            .prop_map(|(login, call, cred)| Action::Bystander { login, call, cred }),
        1 => Just(Action::Sessions),
        2 => prop_oneof![Just(1u64), 0..5_000u64, 0..200_000u64].prop_map(|ms| Action::Advance { ms }),
        2 => (any::<Index>(), edge).prop_map(|(login, edge)| Action::ToEdge { login, edge }),
    ]
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    // Always start with a login so the other actions have something to
    // act on.
    (
        (any::<bool>(), 0..2usize),
        prop::collection::vec(action(), 1..40),
    )
        .prop_map(|((code, net), mut rest)| {
            rest.insert(0, Action::Create { code, net });
            rest
        })
}

fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// One login as the test driver knows it.
#[derive(Clone)]
struct Known {
    id: LoginId,
    secret: BrowserSecret,
    code: Option<u8>,
    /// The browser's network (index into the IP tables).
    net: usize,
}

/// A code that is not `code` (10..=99, like real ones).
fn wrong(code: Option<u8>) -> u8 {
    match code {
        Some(c) if c < 99 => c + 1,
        _ => 10,
    }
}

/// The jump an edge action makes, if it is in the future.
fn edge_time(model: &Model, k: &Known, edge: Edge, now: u64) -> Option<u64> {
    let l = model.login(&k.id)?;
    let t = match edge {
        Edge::BeforeExpiry => l.rec.expires_at_ms.checked_sub(1)?,
        Edge::AtExpiry => l.rec.expires_at_ms,
        Edge::BeforePurge => l.purge_at_ms.checked_sub(1)?,
        Edge::AtPurge => l.purge_at_ms,
    };
    (t > now).then_some(t)
}

fn alice() -> User {
    User {
        id: ALICE_ID.into(),
        name: "Alice".into(),
    }
}

fn bob() -> User {
    User {
        id: BOB_ID.into(),
        name: "Bob".into(),
    }
}

// ---------------------------------------------------------------------------
// the store against the model

/// Runs `acts` on `store` and the model; the first difference, with the
/// trace of what ran, is the error.
async fn run_store(store: &dyn Store, acts: &[Action]) -> Result<(), String> {
    let mut model = Model::new(store.ttls());
    let mut now = T0;
    let mut logins: Vec<Known> = Vec::new();
    let mut tokens: Vec<SessionToken> = Vec::new();
    let mut trace = String::new();
    macro_rules! check {
        ($what:expr, $got:expr, $want:expr) => {{
            let (got, want) = ($got, $want);
            trace.push_str(&format!("{} -> {:?}\n", $what, want));
            if got != want {
                return Err(format!(
                    "{trace}MISMATCH at {}:\n  store: {got:?}\n  model: {want:?}",
                    $what
                ));
            }
        }};
    }
    for act in acts {
        let pick = |i: &Index| logins[i.index(logins.len())].clone();
        let what = format!("t+{} {act:?}", now - T0);
        match act {
            Action::Create { code, net } => {
                let secret = BrowserSecret::random();
                let k = Known {
                    id: LoginId::random(),
                    code: code.then(|| 10 + (logins.len() as u8 * 7) % 90),
                    secret,
                    net: *net,
                };
                let new = NewLogin {
                    id: k.id,
                    secret_hash: k.secret.hash(),
                    browser: BrowserContext {
                        ip: BROWSER_IPS[k.net].into(),
                        user_agent: "proptest".into(),
                        place: None,
                    },
                    match_code: k.code,
                    client_id: None,
                    pending_ms: None,
                };
                let got = store
                    .create(new.clone(), now)
                    .await
                    .map_err(|e| e.to_string())?;
                check!(what, got, model.create(&new, now));
                logins.push(k);
            }
            Action::Scan {
                login,
                bob: b,
                policy,
            } => {
                let k = pick(login);
                let user = if *b { bob() } else { alice() };
                let policy = match policy {
                    Policy::Never => MatchPolicy::Never,
                    Policy::Always => MatchPolicy::Always,
                    Policy::SameNetwork => {
                        MatchPolicy::IfOtherNetwork(network_of(SAME_NET_PHONE[k.net]))
                    }
                    Policy::OtherNetwork => {
                        MatchPolicy::IfOtherNetwork(network_of(OTHER_NET_PHONE))
                    }
                };
                check!(
                    what,
                    store.scan_with(&k.id, &user, &policy, now).await,
                    model.scan_with(&k.id, &user, &policy, now)
                );
            }
            Action::Approve {
                login,
                bob: b,
                code,
            } => {
                let k = pick(login);
                let uid = if *b { BOB_ID } else { ALICE_ID };
                let code = match code {
                    Code::None => None,
                    Code::Right => k.code,
                    Code::Wrong => Some(wrong(k.code)),
                };
                check!(
                    what,
                    store.approve_with(&k.id, uid, code, now).await,
                    model.approve_with(&k.id, uid, code, now)
                );
            }
            Action::Deny { login, bob: b } => {
                let k = pick(login);
                let uid = if *b { BOB_ID } else { ALICE_ID };
                check!(
                    what,
                    store.deny(&k.id, uid, now).await,
                    model.deny(&k.id, uid, now)
                );
            }
            Action::Cancel { login, right } => {
                let k = pick(login);
                let h = if *right {
                    k.secret.hash()
                } else {
                    BrowserSecret::random().hash()
                };
                check!(
                    what,
                    store.cancel(&k.id, &h, now).await,
                    model.cancel(&k.id, &h, now)
                );
            }
            Action::Redeem { login, right } => {
                let k = pick(login);
                let h = if *right {
                    k.secret.hash()
                } else {
                    BrowserSecret::random().hash()
                };
                let token = SessionToken::new_for(k.id);
                check!(
                    what,
                    store.redeem(&k.id, &h, &token, now).await,
                    model.redeem(&k.id, &h, &token.hash(), now)
                );
                tokens.push(token);
            }
            Action::Status { login, .. } => {
                // A read: the last record while the login is not gone,
                // nothing once it is (both stores forget at the deadline).
                let k = pick(login);
                let got = store.get(&k.id, now).await.map_err(|e| e.to_string())?;
                let l = model.login(&k.id).expect("created");
                let want = if l.is_gone(now) {
                    None
                } else {
                    Some(l.rec.clone())
                };
                check!(what, got, want);
            }
            Action::Bystander { login, call, cred } => {
                let k = pick(login);
                let h = match cred {
                    Forged::None | Forged::Random => BrowserSecret::random().hash(),
                    Forged::OtherLogins => logins
                        .iter()
                        .find(|o| o.id != k.id)
                        .map_or_else(|| BrowserSecret::random().hash(), |o| o.secret.hash()),
                };
                let got = match call {
                    BystanderCall::Redeem => store
                        .redeem(&k.id, &h, &SessionToken::new_for(k.id), now)
                        .await
                        .map(|_| ()),
                    _ => store.cancel(&k.id, &h, now).await.map(|_| ()),
                };
                check!(what, got, Err(TransitionError::NotFound));
            }
            Action::Sessions => {
                for t in &tokens {
                    let got = store
                        .session(&t.session_ref(), now)
                        .await
                        .map_err(|e| e.to_string())?
                        .map(|s| (s.user, s.expires_at_ms));
                    let want = model
                        .session(&t.hash(), now)
                        .map(|s| (s.user.clone(), s.expires_at_ms));
                    check!(format!("{what} {t:?}"), got, want);
                }
            }
            Action::Advance { ms } => {
                now += ms;
                trace.push_str(&format!("{what}\n"));
            }
            Action::ToEdge { login, edge } => {
                let k = pick(login);
                if let Some(t) = edge_time(&model, &k, *edge, now) {
                    now = t;
                }
                trace.push_str(&format!("{what} -> t+{}\n", now - T0));
            }
        }
    }
    Ok(())
}

fn store_property(kind: StoreKind) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (redis_store, _server): (Option<Arc<dyn Store>>, _) = match kind {
        StoreKind::Memory => (None, None),
        StoreKind::Redis => rt.block_on(async {
            let server = redis_server().await;
            let store = qrlogin_redis::RedisStore::connect(
                &server.url(),
                TTLS,
                std::time::Duration::from_secs(5),
            )
            .await
            .expect("connect");
            (Some(Arc::new(store) as Arc<dyn Store>), Some(server))
        }),
    };
    let mut runner = TestRunner::new(cases(match kind {
        StoreKind::Memory => 512,
        StoreKind::Redis => 256,
    }));
    let steps = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&actions(), |acts| {
            steps.fetch_add(acts.len(), std::sync::atomic::Ordering::Relaxed);
            let store: Arc<dyn Store> = match &redis_store {
                Some(s) => s.clone(),
                None => Arc::new(MemoryStore::new(TTLS)),
            };
            rt.block_on(run_store(&*store, &acts))
                .map_err(TestCaseError::fail)
        })
        .unwrap_or_else(|e| panic!("{kind:?} store differs from the model: {e}"));
    eprintln!(
        "{kind:?}: {} actions compared with the model",
        steps.into_inner()
    );
}

mod memory {
    #[test]
    fn store_matches_the_model() {
        super::store_property(super::StoreKind::Memory);
    }
    #[test]
    fn http_matches_the_model() {
        super::http_property(super::StoreKind::Memory);
    }
}

mod redis {
    #[test]
    fn store_matches_the_model() {
        super::store_property(super::StoreKind::Redis);
    }
    #[test]
    fn http_matches_the_model() {
        super::http_property(super::StoreKind::Redis);
    }
}

// ---------------------------------------------------------------------------
// the HTTP API against the model

/// What the API must answer a phone for a model answer.
fn phone_answer<T>(r: &Result<T, TransitionError>) -> (StatusCode, &'static str) {
    match r {
        Ok(_) => (StatusCode::OK, ""),
        Err(TransitionError::NotFound) => (StatusCode::NOT_FOUND, "not_found"),
        Err(TransitionError::Expired) => (StatusCode::GONE, "gone"),
        Err(TransitionError::WrongState(_)) | Err(TransitionError::WrongUser) => {
            (StatusCode::CONFLICT, "conflict")
        }
        Err(TransitionError::WrongMatchCode) => (StatusCode::CONFLICT, "wrong_match_code"),
        Err(TransitionError::PresenceRequired) => (StatusCode::CONFLICT, "presence_required"),
        Err(TransitionError::Store(_)) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
    }
}

/// What the API must answer the browser for a model answer.
fn browser_answer<T>(r: &Result<T, TransitionError>, ok: StatusCode) -> (StatusCode, &'static str) {
    match r {
        Ok(_) => (ok, ""),
        Err(TransitionError::NotFound) | Err(TransitionError::Expired) => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        Err(TransitionError::WrongState(_)) => (StatusCode::CONFLICT, "conflict"),
        Err(e) => panic!("a browser call cannot end in {e:?}"),
    }
}

struct Http {
    app: App,
    clock: Arc<ManualClock>,
    alice: Phone,
    bob: Phone,
    reference_404: bytes::Bytes,
}

/// Checks a reply against an expected status and error code.
fn expect(r: &Reply, want: (StatusCode, &str), what: &str) -> Result<(), String> {
    if r.status != want.0 {
        return Err(format!(
            "{what}: got {} {}, want {} {}",
            r.status,
            r.text(),
            want.0,
            want.1
        ));
    }
    if !want.0.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| format!("{what}: error body is not JSON: {e}"))?;
        if v["error"] != want.1 {
            return Err(format!("{what}: error {} want {}", v["error"], want.1));
        }
    }
    Ok(())
}

async fn run_http(h: &Http, acts: &[Action]) -> Result<(), String> {
    let app = &h.app;
    let http = raw_client();
    let mut model = Model::new(h.app.state().store().ttls());
    let t0 = h.clock.now_ms();
    let mut logins: Vec<Known> = Vec::new();
    let mut tokens: Vec<(String, SecretHash)> = Vec::new();
    let mut trace = String::new();
    // Alternate how the browser presents its secret.
    let mut use_cookie = false;
    let mut cred = |rb: reqwest::RequestBuilder, secret: &str| {
        use_cookie = !use_cookie;
        if use_cookie {
            rb.header("cookie", format!("qrl_bs={secret}"))
        } else {
            rb.bearer_auth(secret)
        }
    };
    for act in acts {
        let now = h.clock.now_ms();
        let what = format!("{trace}t+{} {act:?}", now - t0);
        trace.push_str(&format!("t+{} {act:?}\n", now - t0));
        let pick = |i: &Index| logins[i.index(logins.len())].clone();
        match act {
            Action::Create { net, .. } => {
                let r = send(
                    http.post(app.url("/v1/logins"))
                        .header("x-forwarded-for", BROWSER_IPS[*net])
                        .json(&serde_json::json!({"binding": "header"})),
                )
                .await;
                expect(&r, (StatusCode::CREATED, ""), &what)?;
                let v = r.json();
                // On-risk: the browser is shown no code at create (only
                // with a scan that asks for it); the model needs it anyway.
                if v.get("match_code").is_some() {
                    return Err(format!("{what}: on-risk create showed a code: {v}"));
                }
                let id: LoginId = v["login_id"].as_str().unwrap().parse().unwrap();
                let stored = app
                    .store
                    .get(&id, now)
                    .await
                    .map_err(|e| format!("{what}: {e}"))?;
                let k = Known {
                    id,
                    secret: v["browser_secret"].as_str().unwrap().parse().unwrap(),
                    code: stored.and_then(|r| r.match_code),
                    net: *net,
                };
                model.create(
                    &NewLogin {
                        id: k.id,
                        secret_hash: k.secret.hash(),
                        browser: BrowserContext {
                            ip: BROWSER_IPS[*net].into(),
                            user_agent: String::new(),
                            place: None,
                        },
                        match_code: k.code,
                        client_id: None,
                        pending_ms: None,
                    },
                    now,
                );
                logins.push(k);
            }
            Action::Scan {
                login,
                bob: b,
                policy,
            } => {
                let k = pick(login);
                let (phone, user) = if *b {
                    (&h.bob, bob())
                } else {
                    (&h.alice, alice())
                };
                // The server's policy is on-risk: the phone's address picks it.
                let ip = match policy {
                    Policy::Never | Policy::SameNetwork => SAME_NET_PHONE[k.net],
                    Policy::Always | Policy::OtherNetwork => OTHER_NET_PHONE,
                };
                let policy = MatchPolicy::IfOtherNetwork(network_of(ip));
                let want = model.scan_with(&k.id, &user, &policy, now);
                let r = send(
                    http.post(app.url(&format!("/v1/mobile/logins/{}/scan", k.id)))
                        .bearer_auth(&phone.token)
                        .header("x-forwarded-for", ip),
                )
                .await;
                expect(&r, phone_answer(&want), &what)?;
                if let Ok(rec) = want {
                    let v = r.json();
                    if v["state"] != "scanned"
                        || v.get("match_choices").is_some() != rec.match_required
                    {
                        return Err(format!("{what}: scan answer {v} for {rec:?}"));
                    }
                }
            }
            Action::Approve {
                login,
                bob: b,
                code,
            } => {
                let k = pick(login);
                let (phone, uid) = if *b {
                    (&h.bob, BOB_ID)
                } else {
                    (&h.alice, ALICE_ID)
                };
                let code = match code {
                    Code::None => None,
                    Code::Right => k.code,
                    Code::Wrong => Some(wrong(k.code)),
                };
                let want = model.approve_with(&k.id, uid, code, now);
                let mut rb = http
                    .post(app.url(&format!("/v1/mobile/logins/{}/approve", k.id)))
                    .bearer_auth(&phone.token);
                if let Some(c) = code {
                    rb = rb.json(&serde_json::json!({"match_code": format!("{c:02}")}));
                }
                let r = send(rb).await;
                expect(&r, phone_answer(&want), &what)?;
            }
            Action::Deny { login, bob: b } => {
                let k = pick(login);
                let (phone, uid) = if *b {
                    (&h.bob, BOB_ID)
                } else {
                    (&h.alice, ALICE_ID)
                };
                let want = model.deny(&k.id, uid, now);
                let r = send(
                    http.post(app.url(&format!("/v1/mobile/logins/{}/deny", k.id)))
                        .bearer_auth(&phone.token),
                )
                .await;
                expect(&r, phone_answer(&want), &what)?;
            }
            Action::Cancel { login, right } => {
                let k = pick(login);
                let secret = if *right {
                    k.secret.clone()
                } else {
                    BrowserSecret::random()
                };
                let want = model.cancel(&k.id, &secret.hash(), now);
                let rb = http.delete(app.url(&format!("/v1/logins/{}", k.id)));
                let r = send(cred(rb, &secret.expose())).await;
                let want = browser_answer(&want, StatusCode::NO_CONTENT);
                expect(&r, want, &what)?;
                if want.0 == StatusCode::NOT_FOUND && r.body != h.reference_404 {
                    return Err(format!("{what}: a 404 unlike an unknown login's"));
                }
            }
            Action::Redeem { login, right } => {
                let k = pick(login);
                let secret = if *right {
                    k.secret.clone()
                } else {
                    BrowserSecret::random()
                };
                let rb = http.post(app.url(&format!("/v1/logins/{}/redeem", k.id)));
                let r = send(cred(rb, &secret.expose())).await;
                // The server made the token; the model needs its hash.
                let token = r
                    .json()
                    .get("token")
                    .and_then(|t| t.as_str())
                    .map(str::to_owned);
                let hash = token
                    .as_deref()
                    .and_then(|t| t.parse::<SessionToken>().ok())
                    .map_or_else(|| SecretHash::of(b"none"), |t| t.hash());
                let want = model.redeem(&k.id, &secret.hash(), &hash, now);
                let answer = browser_answer(&want, StatusCode::OK);
                expect(&r, answer, &what)?;
                if let Ok(user) = want {
                    let v = r.json();
                    if v["user"]["id"] != user.id.as_str() {
                        return Err(format!("{what}: redeemed as {} not {}", v["user"], user.id));
                    }
                    tokens.push((token.unwrap(), hash));
                } else if answer.0 == StatusCode::NOT_FOUND && r.body != h.reference_404 {
                    return Err(format!("{what}: a 404 unlike an unknown login's"));
                }
            }
            Action::Status { login, events } => {
                let k = pick(login);
                let visible = model.visible_state(&k.id, now);
                let want = match visible {
                    None | Some(State::Expired) | Some(State::Consumed) => None,
                    Some(s) => Some(s),
                };
                let path = if *events {
                    format!("/v1/logins/{}/events", k.id)
                } else {
                    format!("/v1/logins/{}", k.id)
                };
                let resp = within(
                    "status",
                    cred(http.get(app.url(&path)), &k.secret.expose()).send(),
                )
                .await
                .map_err(|e| e.to_string())?;
                let status = resp.status();
                let got_state = if status == StatusCode::OK {
                    if *events {
                        let mut sse = SseStream::new(resp);
                        Some(sse.expect().await.state())
                    } else {
                        let r = Reply::of(resp).await;
                        Some(r.json()["state"].as_str().unwrap_or("").to_string())
                    }
                } else {
                    let r = Reply::of(resp).await;
                    expect(&r, (StatusCode::NOT_FOUND, "not_found"), &what)?;
                    if r.body != h.reference_404 {
                        return Err(format!("{what}: a 404 unlike an unknown login's"));
                    }
                    None
                };
                let want_state = want.map(|s| s.as_str().to_string());
                if got_state != want_state {
                    return Err(format!("{what}: state {got_state:?}, model {want_state:?}"));
                }
            }
            Action::Bystander {
                login,
                call,
                cred: forged,
            } => {
                let k = pick(login);
                let eve = sec::Bystander::new(&app.base);
                let c = match forged {
                    Forged::None => sec::Cred::None,
                    Forged::Random => sec::Cred::Bearer(sec::forged_secret()),
                    Forged::OtherLogins => logins
                        .iter()
                        .find(|o| o.id != k.id)
                        .map_or(sec::Cred::None, |o| sec::Cred::Cookie(o.secret.expose())),
                };
                let id = k.id.to_string();
                let r = match call {
                    BystanderCall::Status => eve.status(&id, "", &c).await,
                    BystanderCall::Events => eve.events(&id, &c).await,
                    BystanderCall::Redeem => eve.redeem(&id, &c).await,
                    BystanderCall::Cancel => eve.cancel(&id, &c).await,
                };
                expect(&r, (StatusCode::NOT_FOUND, "not_found"), &what)?;
                if r.body != h.reference_404 {
                    return Err(format!("{what}: a bystander's 404 differs: {}", r.text()));
                }
            }
            Action::Sessions => {
                for (t, hash) in &tokens {
                    let r = send(http.get(app.url("/v1/session")).bearer_auth(t)).await;
                    match model.session(hash, now) {
                        Some(s) => {
                            expect(&r, (StatusCode::OK, ""), &what)?;
                            if r.json()["user"]["id"] != s.user.id.as_str() {
                                return Err(format!("{what}: session user {}", r.text()));
                            }
                        }
                        None => expect(&r, (StatusCode::UNAUTHORIZED, "unauthorized"), &what)?,
                    }
                }
            }
            Action::Advance { ms } => h.clock.advance_ms(*ms),
            Action::ToEdge { login, edge } => {
                let k = pick(login);
                if let Some(t) = edge_time(&model, &k, *edge, now) {
                    h.clock.set_ms(t);
                }
            }
        }
    }
    Ok(())
}

fn http_property(kind: StoreKind) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(async {
        let mut cfg = config();
        cfg.match_code = MatchMode::OnRisk;
        cfg.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        cfg.mobile_token_ttl = 100 * 365 * 86_400; // outlives every case's clock
        let (app, clock) = sec::clocked(kind, cfg).await;
        let alice = app.phone(ALICE).await;
        let bob = app.phone(BOB).await;
        let reference_404 = sec::unknown_login_404(&app.base).await.body;
        Http {
            app,
            clock,
            alice,
            bob,
            reference_404,
        }
    });
    let mut runner = TestRunner::new(cases(48));
    let steps = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&actions(), |acts| {
            steps.fetch_add(acts.len(), std::sync::atomic::Ordering::Relaxed);
            rt.block_on(run_http(&h, &acts))
                .map_err(TestCaseError::fail)
        })
        .unwrap_or_else(|e| panic!("{kind:?}: the API differs from the model: {e}"));
    eprintln!(
        "{kind:?}: {} HTTP actions compared with the model",
        steps.into_inner()
    );
    rt.block_on(async move { drop(h) });
}
