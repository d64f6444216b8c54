//! The `basic` handler end to end, over real HTTP on 127.0.0.1: challenges, credential
//! parsing, user-name forms, the verification cache, lockout, the hashing throttle,
//! user-store failures, open resources and plugins (SPEC A1-A4, A10, E3, E7, F4-F7, F13,
//! F17).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::request::Parts;
use http::HeaderValue;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use tower_secure::authn::AuthenticationHandler;
use tower_secure::config::{load_users, Deployment};
use tower_secure::identity::{InMemoryUserStore, Principal, QualifiedName, UserRecord, UserStore, UserStoreError};
use tower_secure::{AuthError, SecureLayer};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// `user|DOMAIN|tenant|handler` of a principal.
fn describe(p: &Principal) -> String {
    format!("{}|{}|{}|{}", p.name().user(), p.name().domain(), p.name().tenant(), p.authenticated_by())
}

async fn whoami(p: Principal) -> String {
    describe(&p)
}

async fn maybe(p: Option<Principal>) -> String {
    p.as_ref().map_or_else(|| "anonymous".to_owned(), describe)
}

/// `/whoami` and `/t/{tenant}/whoami` need a caller; `/open` and `/plugin/*` take an
/// optional one.
fn app(layer: SecureLayer) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/t/{tenant}/whoami", get(whoami))
        .route("/open", get(maybe))
        .route("/plugin/secure", get(maybe))
        .route("/plugin/open", get(maybe))
        .layer(layer)
}

const OPEN_RULE: &str = r#"
[[resource.access_control]]
context = "/open"
secure = false
"#;

/// The standard users behind a deployment made of `OPEN_RULE` and `extra`.
async fn serve_standard(extra: &str) -> String {
    common::serve(app(common::layer(&format!("{OPEN_RULE}\n{extra}")))).await
}

/// A server over `store` with the given deployment text.
async fn serve_store(store: impl UserStore, deployment: &str) -> String {
    let deployment = Deployment::from_toml_str("deployment.toml", deployment).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(store).build().unwrap();
    common::serve(app(layer)).await
}

/// GET `base + path` with an optional `Authorization` value.
async fn get_with(base: &str, path: &str, authorization: Option<&str>) -> reqwest::Response {
    let mut request = common::client().get(format!("{base}{path}"));
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    request.send().await.unwrap()
}

/// Status, headers and body of a response.
async fn parts(response: reqwest::Response) -> (StatusCode, HeaderMap, String) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap();
    (status, headers, body)
}

/// Asserts a problem+json refusal with `status` (in the status line and the body) and
/// returns its headers and body.
async fn problem(response: reqwest::Response, status: u16) -> (HeaderMap, String) {
    let (got, headers, body) = parts(response).await;
    assert_eq!(got.as_u16(), status, "unexpected status, body: {body}");
    let content_type = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(content_type.starts_with("application/problem+json"), "content-type {content_type:?}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("body {body:?}: {e}"));
    assert_eq!(json["status"], status, "body {body}");
    (headers, body)
}

fn challenges(headers: &HeaderMap) -> Vec<String> {
    headers.get_all(WWW_AUTHENTICATE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// Asserts exactly one `WWW-Authenticate`, a Basic challenge with a realm.
fn assert_one_basic_challenge(headers: &HeaderMap) {
    let all = challenges(headers);
    assert_eq!(all.len(), 1, "challenges: {all:?}");
    assert!(all[0].starts_with("Basic realm=\""), "challenge {:?}", all[0]);
}

/// Asserts a 401 with exactly one Basic challenge; returns headers and body.
async fn assert_basic_401(response: reqwest::Response) -> (HeaderMap, String) {
    let (headers, body) = problem(response, 401).await;
    assert_one_basic_challenge(&headers);
    (headers, body)
}

/// Asserts a 200 whose body is `expected`.
async fn assert_ok(response: reqwest::Response, expected: &str) {
    let (status, _, body) = parts(response).await;
    assert_eq!(status, StatusCode::OK, "body: {body}");
    assert_eq!(body, expected);
}

/// Headers that must match between two refusals, `date` left out.
fn comparable(headers: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(name, _)| name.as_str() != "date")
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    all.sort();
    all
}

/// An argon2id PHC hash with `m_kib` KiB of memory and `t` passes: costlier than the
/// shared cheap hash where the order or duration of verifications matters.
fn hash_with(password: &str, m_kib: u32, t: u32) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(m_kib, t, 1, None).unwrap();
    let salt = SaltString::encode_b64(b"basic-auth-tests").unwrap();
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn record(name: &str, password: &str) -> UserRecord {
    UserRecord::new(QualifiedName::parse(name).unwrap()).password_hash(common::cheap_hash(password))
}

/// A user store whose users can be added while the server runs.
#[derive(Clone, Default)]
struct MutableStore(Arc<RwLock<HashMap<QualifiedName, UserRecord>>>);

impl MutableStore {
    fn add(&self, user: UserRecord) {
        self.0.write().unwrap().insert(user.name.clone(), user);
    }
}

#[async_trait]
impl UserStore for MutableStore {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        Ok(self.0.read().unwrap().get(name).cloned())
    }

    fn reference_password_hash(&self) -> Option<String> {
        self.0.read().unwrap().values().find_map(|u| u.password_hash.clone())
    }
}

/// The standard users, except that `broken` makes the backend fail and `slow` never
/// answers.
struct FaultyStore(InMemoryUserStore);

#[async_trait]
impl UserStore for FaultyStore {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        match name.user() {
            "broken" => Err(UserStoreError("backend down".to_owned())),
            "slow" => std::future::pending().await,
            _ => self.0.find_user(name).await,
        }
    }

    fn reference_password_hash(&self) -> Option<String> {
        self.0.reference_password_hash()
    }
}

/// A store whose look-ups queue behind a fair lock the test holds, so that requests
/// reach verification in the order they were sent, all after being admitted.
#[derive(Clone)]
struct GatedStore {
    inner: MutableStore,
    gate: Arc<tokio::sync::Mutex<()>>,
    waiting: Arc<AtomicUsize>,
}

#[async_trait]
impl UserStore for GatedStore {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        drop(self.gate.lock().await);
        self.inner.find_user(name).await
    }

    fn reference_password_hash(&self) -> Option<String> {
        self.inner.reference_password_hash()
    }
}

/// Waits (at most 3 s) until `done` holds.
async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A trivial plugin: `X-Api-Key: let-me-in` is the user `robot`.
struct ApiKeyPlugin;

#[async_trait]
impl AuthenticationHandler for ApiKeyPlugin {
    fn name(&self) -> &str {
        "some_plugin"
    }

    fn can_handle(&self, request: &Parts) -> bool {
        request.headers.contains_key("x-api-key")
    }

    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
        if request.headers.get("x-api-key").map(HeaderValue::as_bytes) == Some(b"let-me-in".as_slice()) {
            Ok(Principal::builder(QualifiedName::parse("robot").unwrap(), "some_plugin").build())
        } else {
            Err(AuthError::invalid_credentials("unknown api key"))
        }
    }

    fn challenge(&self, realm: &str, _error: Option<&AuthError>) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("ApiKey realm=\"{realm}\"")).ok()
    }
}

// ---------------------------------------------------------------------------------------
// A3: no credential
// ---------------------------------------------------------------------------------------

// SPEC A3, F13: a secured resource without a credential answers 401 with one Basic
// challenge carrying the configured realm, and a problem+json body that reflects nothing
// the request carried.
#[tokio::test]
async fn no_credential_is_401_with_one_basic_challenge() {
    let base = serve_standard("[authentication]\nrealm = \"test-realm\"").await;
    let marker = "zq7marker";
    let response = common::client()
        .get(format!("{base}/whoami?probe={marker}"))
        .header("x-probe", marker)
        .header("user-agent", marker)
        .send()
        .await
        .unwrap();
    let (headers, body) = problem(response, 401).await;
    let all = challenges(&headers);
    assert_eq!(all.len(), 1, "challenges: {all:?}");
    assert!(all[0].starts_with("Basic realm=\"test-realm\""), "challenge {:?}", all[0]);
    assert!(!body.contains(marker) && !body.contains("whoami"), "body reflects input: {body}");
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(marker), "header {name} reflects input: {value}");
    }
}

// ---------------------------------------------------------------------------------------
// A4 / F7: Basic credentials
// ---------------------------------------------------------------------------------------

// SPEC A4, A2: valid credentials authenticate; the scheme is case-insensitive and any
// number of spaces may follow it.
#[tokio::test]
async fn valid_credentials_and_case_insensitive_scheme() {
    let base = serve_standard("").await;
    let token = STANDARD.encode("alex:alex123");
    for value in [
        basic("alex", "alex123"),
        format!("bAsIc {token}"),
        format!("BASIC {token}"),
        format!("basic {token}"),
        format!("Basic   {token}"),
    ] {
        assert_ok(get_with(&base, "/whoami", Some(&value)).await, "alex|PRIMARY|carbon.super|basic").await;
    }
}

// SPEC A4: the user part carries a userstore domain (case-insensitive) and a tenant; a
// name without the domain is another user.
#[tokio::test]
async fn domain_and_tenant_names_authenticate() {
    let base = serve_standard("").await;
    let sam = "sam|SECONDARY|carbon.super|basic";
    assert_ok(get_with(&base, "/whoami", Some(&basic("SECONDARY/sam", "sam123"))).await, sam).await;
    assert_ok(get_with(&base, "/whoami", Some(&basic("secondary/sam", "sam123"))).await, sam).await;
    assert_basic_401(get_with(&base, "/whoami", Some(&basic("sam", "sam123"))).await).await;

    let tina = "tina|PRIMARY|example.com|basic";
    let path = "/t/example.com/whoami";
    assert_ok(get_with(&base, path, Some(&basic("tina@example.com", "tina123"))).await, tina).await;
    assert_ok(get_with(&base, path, Some(&basic("tina@EXAMPLE.com", "tina123"))).await, tina).await;
    assert_basic_401(get_with(&base, path, Some(&basic("tina@example.com", "tina124"))).await).await;
}

// SPEC A4, F7, F13: wrong password, unknown user, disabled user and locked user all
// answer 401 with the same headers and byte-identical bodies.
#[tokio::test]
async fn failures_are_indistinguishable() {
    let config = "[authentication.basic]\nmax_failed_attempts = 3\nlockout_seconds = 60";
    let base = serve_standard(config).await;
    let wrong = get_with(&base, "/whoami", Some(&basic("alex", "alex124"))).await;
    let unknown = get_with(&base, "/whoami", Some(&basic("nobody", "alex123"))).await;
    let disabled = get_with(&base, "/whoami", Some(&basic("dave", "dave123"))).await;
    for _ in 0..3 {
        assert_basic_401(get_with(&base, "/whoami", Some(&basic("bob", "nope"))).await).await;
    }
    let locked = get_with(&base, "/whoami", Some(&basic("bob", "bob123"))).await;

    let (wrong_h, wrong_b) = assert_basic_401(wrong).await;
    for (what, response) in [("unknown", unknown), ("disabled", disabled), ("locked", locked)] {
        let (headers, body) = assert_basic_401(response).await;
        assert_eq!(body, wrong_b, "{what} body differs from wrong-password body");
        assert_eq!(comparable(&headers), comparable(&wrong_h), "{what} headers differ");
        assert!(!body.contains("bob") && !body.contains("dave") && !body.contains("nobody"), "{body}");
    }
}

// SPEC A4: lockout after `max_failed_attempts` wrong passwords refuses the right password
// (even one cached before) until `lockout_seconds` has passed; fewer failures do not lock.
#[tokio::test]
async fn lockout_refuses_the_right_password_until_it_expires() {
    let base = serve_standard("[authentication.basic]\nmax_failed_attempts = 3\nlockout_seconds = 1").await;
    let good = basic("alex", "alex123");
    let expected = "alex|PRIMARY|carbon.super|basic";
    assert_ok(get_with(&base, "/whoami", Some(&good)).await, expected).await;
    for _ in 0..3 {
        assert_basic_401(get_with(&base, "/whoami", Some(&basic("alex", "wrong"))).await).await;
    }
    let locked_at = Instant::now();
    assert_basic_401(get_with(&base, "/whoami", Some(&good)).await).await;
    assert!(locked_at.elapsed() < Duration::from_millis(900), "the check took too long to prove the lock");

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ok(get_with(&base, "/whoami", Some(&good)).await, expected).await;

    // Two failures (below the limit) leave bob able to log in.
    for _ in 0..2 {
        assert_basic_401(get_with(&base, "/whoami", Some(&basic("bob", "wrong"))).await).await;
    }
    assert_ok(get_with(&base, "/whoami", Some(&basic("bob", "bob123"))).await, "bob|PRIMARY|carbon.super|basic").await;
}

// SPEC A4: lockout holds under concurrency. Three wrong passwords and then the right one
// are sent while the store is slow; they are verified in that order, so the right one is
// decided after three failures and must be refused, and the account stays locked.
#[tokio::test]
async fn lockout_holds_for_requests_in_flight() {
    let inner = MutableStore::default();
    let mut alex = record("alex", "unused");
    // A few milliseconds per verification, so each failure is recorded well before the
    // next verification in the queue finishes.
    alex.password_hash = Some(hash_with("alex123", 4096, 1));
    inner.add(alex);
    let store = GatedStore { inner, gate: Arc::default(), waiting: Arc::default() };
    let config = "[authentication.basic]\nmax_failed_attempts = 3\nlockout_seconds = 60\nhashes_per_second = 1000";
    let base = serve_store(store.clone(), config).await;
    let closed = store.gate.clone().lock_owned().await;

    let send = |password: &'static str| {
        let base = base.clone();
        tokio::spawn(async move { parts(get_with(&base, "/whoami", Some(&basic("alex", password))).await).await })
    };
    let mut wrong = Vec::new();
    for i in 0..3 {
        wrong.push(send("wrong"));
        wait_until(|| store.waiting.load(Ordering::SeqCst) > i).await;
    }
    let right = send("alex123");
    wait_until(|| store.waiting.load(Ordering::SeqCst) > 3 || right.is_finished()).await;
    drop(closed);

    for task in wrong {
        let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "wrong password answered {status}: {body}");
    }
    let (in_flight, _, body) = tokio::time::timeout(Duration::from_secs(10), right).await.unwrap().unwrap();
    let (afterwards, _, _) = parts(get_with(&base, "/whoami", Some(&basic("alex", "alex123"))).await).await;
    assert!(
        in_flight == StatusCode::UNAUTHORIZED && afterwards == StatusCode::UNAUTHORIZED,
        "after 3 failures the right password answered {in_flight} ({body}) in flight and {afterwards} afterwards"
    );
}

// SPEC F7: unknown user, wrong password and locked account take the same time: a locked
// account or an unknown name must not answer measurably faster than a wrong password
// (realistic argon2 parameters, so one verification costs milliseconds). The three kinds
// are sampled interleaved, round after round in rotating order, and their medians compared
// with a generous factor: load on the machine slows all three alike, while skipping the
// hash makes one of them 10x or more faster.
#[tokio::test]
async fn locked_unknown_and_wrong_take_the_same_time() {
    const ROUNDS: usize = 15;
    const FACTOR: u32 = 3;
    let hash = hash_with("secret-pw", 19 * 1024, 2);
    let store = MutableStore::default();
    // One user to lock, and one fresh user per round for the wrong password (one failure
    // each, below the lockout threshold, so every "wrong" sample really verifies).
    for name in std::iter::once("tom".to_owned()).chain((0..ROUNDS).map(|i| format!("tim{i}"))) {
        let mut user = record(&name, "unused");
        user.password_hash = Some(hash.clone());
        store.add(user);
    }
    let base = serve_store(
        store,
        "[authentication.basic]\nmax_failed_attempts = 3\nlockout_seconds = 600\nhashes_per_second = 1000",
    )
    .await;
    // One client for all samples: building one per request costs more than a verification.
    let client = common::client();
    let timed = |user: String, password: &'static str| {
        let request = client.get(format!("{base}/whoami")).header(AUTHORIZATION, basic(&user, password));
        async move {
            let started = Instant::now();
            let status = request.send().await.unwrap().status();
            let elapsed = started.elapsed();
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}");
            elapsed
        }
    };
    for _ in 0..3 {
        timed("tom".to_owned(), "wrong").await;
    }

    let mut samples: [Vec<Duration>; 3] = Default::default();
    for round in 0..ROUNDS {
        for k in 0..3 {
            let kind = (round + k) % 3;
            let elapsed = match kind {
                0 => timed(format!("tim{round}"), "wrong").await,
                1 => timed("tom".to_owned(), "secret-pw").await,
                _ => timed(format!("nobody{round}"), "secret-pw").await,
            };
            samples[kind].push(elapsed);
        }
    }
    let [wrong, locked, unknown] = samples.map(|mut v| {
        v.sort();
        v[v.len() / 2]
    });
    println!("medians: wrong {wrong:?}, locked {locked:?}, unknown {unknown:?}");
    assert!(wrong > Duration::from_millis(5), "verification too cheap to compare: {wrong:?}");
    assert!(unknown * FACTOR > wrong, "unknown user {unknown:?} vs wrong password {wrong:?} (medians)");
    assert!(locked * FACTOR > wrong, "locked account {locked:?} vs wrong password {wrong:?} (medians)");
}

// SPEC A4, F7: lockout counts failures for names the store does not know, so a user
// created after them is locked out just like an existing one would be.
#[tokio::test]
async fn lockout_applies_to_unknown_usernames() {
    let store = MutableStore::default();
    store.add(record("alex", "alex123"));
    let base = serve_store(store.clone(), "[authentication.basic]\nmax_failed_attempts = 3\nlockout_seconds = 1").await;
    for _ in 0..3 {
        assert_basic_401(get_with(&base, "/whoami", Some(&basic("ghost", "guess"))).await).await;
    }
    store.add(record("ghost", "ghost123"));
    let good = basic("ghost", "ghost123");
    assert_basic_401(get_with(&base, "/whoami", Some(&good)).await).await;

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_ok(get_with(&base, "/whoami", Some(&good)).await, "ghost|PRIMARY|carbon.super|basic").await;
    // Control: the store itself answered all along.
    assert_ok(get_with(&base, "/whoami", Some(&basic("alex", "alex123"))).await, "alex|PRIMARY|carbon.super|basic")
        .await;
}

// SPEC A4: the cache never accepts another password for a cached user, and keys are
// unambiguous: `kim` + `bo:x` and `kimb` + `o:x` are different entries, each working only
// with its own credential (passwords split at the first ':', F7).
#[tokio::test]
async fn cache_proves_the_password_and_is_unambiguous() {
    let store = MutableStore::default();
    store.add(record("alex", "alex123"));
    store.add(record("kim", "bo:x"));
    store.add(record("kimb", "o:x"));
    // `lee` + `ro:y` would collide with `leer` + `o:y` under a naive `user + password` key.
    store.add(record("lee", "ro:y"));
    store.add(record("leer", "something-else"));
    let base = serve_store(store, "").await;

    let alex = "alex|PRIMARY|carbon.super|basic";
    assert_ok(get_with(&base, "/whoami", Some(&basic("alex", "alex123"))).await, alex).await;
    assert_basic_401(get_with(&base, "/whoami", Some(&basic("alex", "alex1234"))).await).await;
    assert_basic_401(get_with(&base, "/whoami", Some(&basic("alex", ""))).await).await;
    assert_ok(get_with(&base, "/whoami", Some(&basic("alex", "alex123"))).await, alex).await;

    let kim = "kim|PRIMARY|carbon.super|basic";
    let kimb = "kimb|PRIMARY|carbon.super|basic";
    assert_ok(get_with(&base, "/whoami", Some(&basic("kim", "bo:x"))).await, kim).await;
    assert_ok(get_with(&base, "/whoami", Some(&basic("kimb", "o:x"))).await, kimb).await;
    assert_ok(get_with(&base, "/whoami", Some(&basic("kim", "bo:x"))).await, kim).await;
    assert_basic_401(get_with(&base, "/whoami", Some(&basic("kim", "o:x"))).await).await;
    assert_basic_401(get_with(&base, "/whoami", Some(&basic("kimb", "bo:x"))).await).await;

    assert_ok(get_with(&base, "/whoami", Some(&basic("lee", "ro:y"))).await, "lee|PRIMARY|carbon.super|basic").await;
    assert_basic_401(get_with(&base, "/whoami", Some(&basic("leer", "o:y"))).await).await;
}

// SPEC A4: with `hashes_per_second = 1`, a burst of uncached wrong passwords is partly
// refused with 429 + Retry-After (never 500), while a cached credential keeps getting
// 200 at once (a repeated request does not re-run argon2).
#[tokio::test]
async fn throttle_refuses_bursts_but_not_cached_logins() {
    let base = serve_standard("[authentication.basic]\nhashes_per_second = 1\nmax_failed_attempts = 0").await;
    let good = basic("alex", "alex123");
    let expected = "alex|PRIMARY|carbon.super|basic";
    assert_ok(get_with(&base, "/whoami", Some(&good)).await, expected).await;

    let burst: Vec<_> = (0..8)
        .map(|i| {
            let base = base.clone();
            tokio::spawn(async move {
                let response = get_with(&base, "/whoami", Some(&basic(&format!("intruder{i}"), "guess"))).await;
                parts(response).await
            })
        })
        .collect();

    // A cached login never queues behind the throttle: it is answered 200 (a throttled one
    // would be 429), and without the throttle's wait of up to 1 s (the median of five, so
    // one slow answer on a loaded machine does not decide).
    let mut waits = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        assert_ok(get_with(&base, "/whoami", Some(&good)).await, expected).await;
        waits.push(started.elapsed());
    }
    waits.sort();
    assert!(waits[2] < Duration::from_millis(800), "cached logins waited {waits:?}");

    let mut throttled = 0;
    for task in burst {
        let (status, headers, body) = tokio::time::timeout(Duration::from_secs(10), task).await.unwrap().unwrap();
        match status.as_u16() {
            401 => assert_one_basic_challenge(&headers),
            429 => {
                throttled += 1;
                let retry = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
                assert!(retry.is_some_and(|s| (1..=60).contains(&s)), "Retry-After {retry:?}");
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(json["status"], 429);
            }
            other => panic!("burst request answered {other}: {body}"),
        }
    }
    assert!(throttled >= 1, "no burst request was throttled");
}

// ---------------------------------------------------------------------------------------
// F6 / A2 / E3: header syntax and limits
// ---------------------------------------------------------------------------------------

// SPEC F6, F7: malformed Basic credentials are 400, never 401, 200 or 500. The
// non-canonical base64 cases decode leniently to bob's valid credential, so a lenient
// decoder would answer 200.
#[tokio::test]
async fn malformed_basic_headers_are_400() {
    let base = serve_standard("").await;
    assert_eq!(STANDARD.encode("bob:bob123"), "Ym9iOmJvYjEyMw==");
    let alex = STANDARD.encode("alex:alex123");
    let cases = [
        "Basic".to_owned(),
        "Basic a b".to_owned(),
        "Basic !!!".to_owned(),
        "Basic Ym9iOmJvYjEyMw".to_owned(),
        "Basic Ym9iOmJvYjEyMx==".to_owned(),
        "Basic Ym9iOmJvYjEyMw=".to_owned(),
        "Basic Ym9iOmJvYjEyMw===".to_owned(),
        format!("Basic {}", STANDARD.encode(b"alex:\xff\xfealex")),
        format!("Basic {}", STANDARD.encode("alexalex123")),
        format!("Basic {}", STANDARD.encode(":alex123")),
        format!("Basic {alex} trailing"),
        format!("Basic {alex},"),
        format!("Basic {alex}, Basic {alex}"),
        format!("Basic\t{alex}"),
        format!("Basic {alex}\tx"),
    ];
    for value in &cases {
        let response = get_with(&base, "/whoami", Some(value)).await;
        let (status, _, body) = parts(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value:?} answered {status}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["status"], 400, "{value:?}");
    }
    // Control: the well-formed padded credential works.
    assert_ok(get_with(&base, "/whoami", Some("Basic Ym9iOmJvYjEyMw==")).await, "bob|PRIMARY|carbon.super|basic").await;
}

// SPEC F6, A2: header bytes reqwest will not send: non-visible or non-UTF-8 bytes are
// 400, and two Authorization headers (even both valid) are 400.
#[tokio::test]
async fn raw_header_bytes_and_duplicates_are_400() {
    let base = serve_standard("").await;
    let alex = STANDARD.encode("alex:alex123");
    let head = |auth_lines: &[u8]| {
        let mut request = b"GET /whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".to_vec();
        request.extend_from_slice(auth_lines);
        request.extend_from_slice(b"\r\n");
        request
    };
    let ok = head(format!("Authorization: Basic {alex}\r\n").as_bytes());
    assert_eq!(common::raw_status(&base, &ok).await, 200, "control request");

    let mut utf8_tail = format!("Authorization: Basic {alex}").into_bytes();
    utf8_tail.extend_from_slice("\u{e9}\r\n".as_bytes());
    let mut latin1 = b"Authorization: Basic ".to_vec();
    latin1.extend_from_slice(b"\xff\xfe\xe9\r\n");
    let mut scheme_byte = b"Authorization: Basic\xa0".to_vec();
    scheme_byte.extend_from_slice(alex.as_bytes());
    scheme_byte.extend_from_slice(b"\r\n");
    let twice = format!("Authorization: Basic {alex}\r\nAuthorization: Basic {alex}\r\n");
    let cases: [(&str, Vec<u8>); 4] = [
        ("valid UTF-8 non-ASCII tail", head(&utf8_tail)),
        ("non-UTF-8 bytes", head(&latin1)),
        ("non-ASCII byte after the scheme", head(&scheme_byte)),
        ("two Authorization headers", head(twice.as_bytes())),
    ];
    for (what, request) in &cases {
        assert_eq!(common::raw_status(&base, request).await, 400, "{what}");
    }
    // The server is still fine afterwards.
    assert_eq!(common::raw_status(&base, &ok).await, 200, "control request after");
}

// SPEC E3, F6: an oversized Authorization header is 431, and so is a Basic token over 1024
// characters; a token of exactly 1024 characters is judged normally (401 here).
#[tokio::test]
async fn oversized_credentials_are_431() {
    let base = serve_standard("").await;

    let huge = format!("Basic {}", "A".repeat(20 * 1024));
    let (headers, _) = problem(get_with(&base, "/whoami", Some(&huge)).await, 431).await;
    assert!(headers.get(WWW_AUTHENTICATE).is_none_or(|v| !v.to_str().unwrap().contains("AAAA")));

    // Not only for Basic: the cap is checked before any scheme is looked at.
    let huge_other = format!("Whatever {}", "A".repeat(20 * 1024));
    problem(get_with(&base, "/whoami", Some(&huge_other)).await, 431).await;

    // 768 bytes encode to exactly 1024 characters.
    let at_limit = STANDARD.encode(format!("alex:{}", "x".repeat(763)));
    assert_eq!(at_limit.len(), 1024);
    assert_basic_401(get_with(&base, "/whoami", Some(&format!("Basic {at_limit}"))).await).await;

    let over = STANDARD.encode(format!("alex:{}", "x".repeat(766)));
    assert!(over.len() > 1024 && over.len() < 2048);
    problem(get_with(&base, "/whoami", Some(&format!("Basic {over}"))).await, 431).await;
    problem(get_with(&base, "/open", Some(&format!("Basic {over}"))).await, 431).await;
}

// ---------------------------------------------------------------------------------------
// A2 / F5 / E7: open resources
// ---------------------------------------------------------------------------------------

// SPEC A2, F5, E7, B2: on an open resource no credential is anonymous, a valid one yields
// the principal, and a present-but-invalid or malformed one is refused, never anonymous.
#[tokio::test]
async fn open_resource_verifies_credentials_that_are_present() {
    let base = serve_standard("").await;
    assert_ok(get_with(&base, "/open", None).await, "anonymous").await;
    assert_ok(get_with(&base, "/open", Some(&basic("alex", "alex123"))).await, "alex|PRIMARY|carbon.super|basic").await;
    assert_ok(
        get_with(&base, "/open", Some(&basic("SECONDARY/sam", "sam123"))).await,
        "sam|SECONDARY|carbon.super|basic",
    )
    .await;
    for (user, password) in [("alex", "wrong"), ("nobody", "x"), ("dave", "dave123")] {
        assert_basic_401(get_with(&base, "/open", Some(&basic(user, password))).await).await;
    }
    problem(get_with(&base, "/open", Some("Basic !!!")).await, 400).await;
    problem(get_with(&base, "/open", Some(&format!("Basic {}", STANDARD.encode("alexalex123")))).await, 400).await;
}

// SPEC A2, A10, A3: a Basic credential on a resource whose rule allows only a plugin is
// treated as no credential: 401 with only the plugin's challenge on a secure rule,
// anonymous on an open one. The plugin's own credential works there.
#[tokio::test]
async fn credential_for_a_disallowed_handler_is_no_credential() {
    let deployment = r#"
[authentication]
realm = "plug"

[[resource.access_control]]
context = "/plugin/secure"
allowed_auth_handlers = ["some_plugin"]

[[resource.access_control]]
context = "/plugin/open"
secure = false
allowed_auth_handlers = ["some_plugin"]
"#;
    let deployment = Deployment::from_toml_str("deployment.toml", deployment).unwrap();
    let users = load_users("users.toml", &common::users_toml()).unwrap();
    let layer = SecureLayer::builder()
        .deployment(deployment)
        .user_store(users)
        .authentication_handler(ApiKeyPlugin)
        .build()
        .unwrap();
    let base = common::serve(app(layer)).await;
    let robot = "robot|PRIMARY|carbon.super|some_plugin";

    for credential in [basic("alex", "alex123"), basic("alex", "wrong"), "Basic !!!".to_owned()] {
        let (headers, _) = problem(get_with(&base, "/plugin/secure", Some(&credential)).await, 401).await;
        assert_eq!(challenges(&headers), vec!["ApiKey realm=\"plug\"".to_owned()], "{credential:?}");
        assert_ok(get_with(&base, "/plugin/open", Some(&credential)).await, "anonymous").await;
    }
    let (headers, _) = problem(get_with(&base, "/plugin/secure", None).await, 401).await;
    assert_eq!(challenges(&headers), vec!["ApiKey realm=\"plug\"".to_owned()]);

    let with_key = |path: &str| common::client().get(format!("{base}{path}")).header("x-api-key", "let-me-in").send();
    assert_ok(with_key("/plugin/secure").await.unwrap(), robot).await;
    assert_ok(with_key("/plugin/open").await.unwrap(), robot).await;
    // Basic still works where it is allowed.
    assert_ok(get_with(&base, "/whoami", Some(&basic("alex", "alex123"))).await, "alex|PRIMARY|carbon.super|basic")
        .await;
}

// ---------------------------------------------------------------------------------------
// F4: credentials from anywhere else
// ---------------------------------------------------------------------------------------

// SPEC F4: credentials in the query string, cookies and identity headers are ignored.
#[tokio::test]
async fn credentials_outside_authorization_are_ignored() {
    let base = serve_standard("").await;
    let token = STANDARD.encode("alex:alex123");
    let client = common::client();
    let requests = [
        client.get(format!("{base}/whoami?access_token={token}")),
        client.get(format!("{base}/whoami?username=alex&password=alex123")),
        client.get(format!("{base}/whoami?authorization=Basic%20{token}")),
        client.get(format!("{base}/whoami")).header("cookie", format!("Authorization=Basic {token}")),
        client.get(format!("{base}/whoami")).header("cookie", format!("access_token={token}; user=alex")),
        client.get(format!("{base}/whoami")).header("x-forwarded-user", "alex"),
        client.get(format!("{base}/whoami")).header("remote-user", "alex"),
        client.get(format!("{base}/whoami")).header("wso2-identity-user", "admin"),
        client.get(format!("{base}/whoami")).header("x-authorization", basic("alex", "alex123")),
        client.get(format!("{base}/whoami")).header("proxy-authorization", basic("alex", "alex123")),
    ];
    for request in requests {
        assert_basic_401(request.send().await.unwrap()).await;
    }
    // On an open resource they do not make a principal either.
    let open = client.get(format!("{base}/open?username=alex&password=alex123")).header("remote-user", "alex");
    assert_ok(open.send().await.unwrap(), "anonymous").await;
    // Control: the same user through the Authorization header.
    assert_ok(get_with(&base, "/whoami", Some(&basic("alex", "alex123"))).await, "alex|PRIMARY|carbon.super|basic")
        .await;
}

// ---------------------------------------------------------------------------------------
// F17: user-store failures
// ---------------------------------------------------------------------------------------

// SPEC F17: a user store that fails answers 503 (not 200 or 401), one that hangs answers
// 503 after `store_timeout_seconds`, and the server keeps serving meanwhile and after.
#[tokio::test]
async fn user_store_failures_are_503() {
    let users = load_users("users.toml", &common::users_toml()).unwrap();
    let config = format!("{OPEN_RULE}\n[authentication.basic]\nstore_timeout_seconds = 1");
    let base = serve_store(FaultyStore(users), &config).await;
    let alex = basic("alex", "alex123");
    let expected = "alex|PRIMARY|carbon.super|basic";

    let (headers, body) = problem(get_with(&base, "/whoami", Some(&basic("broken", "x"))).await, 503).await;
    assert!(!body.contains("backend down"), "store error leaked: {body}");
    assert!(headers.get(RETRY_AFTER).is_some(), "503 without Retry-After");
    problem(get_with(&base, "/open", Some(&basic("broken", "x"))).await, 503).await;

    let hanging = {
        let base = base.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let response = get_with(&base, "/whoami", Some(&basic("slow", "x"))).await;
            (started.elapsed(), parts(response).await)
        })
    };
    // While the slow look-up hangs, other callers are served.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    assert_ok(get_with(&base, "/whoami", Some(&alex)).await, expected).await;
    assert_ok(get_with(&base, "/open", None).await, "anonymous").await;
    assert!(started.elapsed() < Duration::from_millis(800), "served slowly: {:?}", started.elapsed());

    let (elapsed, (status, _, body)) = tokio::time::timeout(Duration::from_secs(10), hanging).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "hanging store answered {status}: {body}");
    assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5), "answered after {elapsed:?}");

    // And afterwards.
    assert_ok(get_with(&base, "/whoami", Some(&alex)).await, expected).await;
    assert_ok(get_with(&base, "/whoami", Some(&basic("bob", "bob123"))).await, "bob|PRIMARY|carbon.super|basic").await;
    assert_basic_401(get_with(&base, "/whoami", Some(&basic("alex", "wrong"))).await).await;
}
