//! Remote signing keys (SPEC A5, F9, F17): JWKS URLs and OIDC discovery against a real
//! in-process identity provider on 127.0.0.1. The provider counts its requests and
//! connections, can be taken down (503 answers or dropped connections) and brought back,
//! can rotate the keys it publishes, publish garbage, and answer slowly.
//!
//! Keys are generated once per test binary with the `openssl` CLI; tokens are minted with
//! `jsonwebtoken`. Every wait is bounded by small `[oauth2]` intervals and timeouts.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tower_secure::config::Deployment;
use tower_secure::identity::Principal;
use tower_secure::SecureLayer;

/// The issuer of `jwks_uri` tests (discovery tests use the provider's own base URL).
const ISS: &str = "https://idp.jwks.test";
const AUD: &str = "my-api";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256-jwks";

// ---------------------------------------------------------------------------------------
// Keys: generated once per test binary with openssl
// ---------------------------------------------------------------------------------------

/// A private key (PEM) and the public members of its JWK.
struct TestKey {
    alg: Algorithm,
    private: String,
    /// `kty` and the public members (`n`, `e` or `crv`, `x`, `y`).
    public: Value,
}

impl TestKey {
    /// The public JWK as an identity provider publishes it.
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = self.public.clone();
        let map = jwk.as_object_mut().unwrap();
        map.insert("kid".to_owned(), json!(kid));
        map.insert("alg".to_owned(), json!(format!("{:?}", self.alg)));
        map.insert("use".to_owned(), json!("sig"));
        jwk
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(self.private.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(self.private.as_bytes()).unwrap(),
        }
    }
}

struct Keys {
    /// RSA 2048, published as `rsa-a`.
    rsa_a: TestKey,
    /// RSA 2048, published as `rsa-b` once the provider rotates.
    rsa_b: TestKey,
    /// RSA 2048, never published: the attacker's key.
    rsa_c: TestKey,
    /// EC P-256, published as `ec-a`.
    ec_a: TestKey,
}

fn openssl_bytes(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (is it installed?): {e}"));
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn openssl(args: &[&str]) -> String {
    String::from_utf8(openssl_bytes(args)).unwrap()
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(generate_keys)
}

fn generate_keys() -> Keys {
    // jsonwebtoken needs a crypto provider to sign; the crate installs the same one.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(format!("{name}.pem")).display().to_string();
    let (rsa, ec) = (common::RSA_2048, common::EC_P256);
    let specs = [("rsa_a", rsa), ("rsa_b", rsa), ("rsa_c", rsa), ("ec_a", ec)];
    common::openssl_genpkeys(dir.path(), &specs);
    let private = |name: &str| std::fs::read_to_string(path(name)).unwrap();
    let rsa_key = |name: &str| {
        let text = openssl(&["rsa", "-in", &path(name), "-noout", "-modulus"]);
        let hex = text.trim().strip_prefix("Modulus=").expect("openssl -modulus output");
        let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        let details = openssl(&["rsa", "-in", &path(name), "-noout", "-text"]);
        assert!(details.contains("publicExponent: 65537"), "unexpected RSA exponent: {details}");
        TestKey {
            alg: Algorithm::RS256,
            private: private(name),
            public: json!({"kty": "RSA", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"}),
        }
    };
    let ec_key = |name: &str| {
        // The SubjectPublicKeyInfo of a P-256 key ends with the uncompressed point 04 || x || y.
        let der = openssl_bytes(&["pkey", "-in", &path(name), "-pubout", "-outform", "DER"]);
        let point = &der[der.len() - 65..];
        assert_eq!(point[0], 4, "not an uncompressed P-256 point");
        TestKey {
            alg: Algorithm::ES256,
            private: private(name),
            public: json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..]),
            }),
        }
    };
    Keys { rsa_a: rsa_key("rsa_a"), rsa_b: rsa_key("rsa_b"), rsa_c: rsa_key("rsa_c"), ec_a: ec_key("ec_a") }
}

/// The provider's usual key set: `rsa-a` and `ec-a`.
fn standard_jwks() -> Value {
    let keys = keys();
    json!({"keys": [keys.rsa_a.jwk("rsa-a"), keys.ec_a.jwk("ec-a")]})
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A fresh subject for every token, so no token is ever answered from the verified-token
/// cache: every request goes through key selection.
fn fresh_sub() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("user{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn claims(iss: &str, sub: &str) -> Value {
    let now = now();
    json!({"iss": iss, "aud": AUD, "sub": sub, "iat": now, "exp": now + 600, "jti": sub})
}

/// A token for `iss` signed by `key` whose header names `kid`; returns it with its `sub`.
fn mint(key: &TestKey, kid: &str, iss: &str) -> (String, String) {
    let mut header = Header::new(key.alg);
    header.kid = Some(kid.to_owned());
    mint_with(&header, key, iss)
}

fn mint_with(header: &Header, key: &TestKey, iss: &str) -> (String, String) {
    let sub = fresh_sub();
    (encode(header, &claims(iss, &sub), &key.encoding_key()).unwrap(), sub)
}

// ---------------------------------------------------------------------------------------
// The identity provider
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Serves discovery and JWKS.
    Up = 0,
    /// Answers every request 503.
    Unavailable = 1,
    /// Accepts connections and drops them at once.
    Refuse = 2,
}

struct IdpState {
    base: String,
    mode: AtomicU8,
    delay_ms: AtomicU64,
    jwks_body: Mutex<String>,
    /// The `issuer` the discovery document names.
    discovery_issuer: Mutex<String>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    connections: AtomicUsize,
}

impl IdpState {
    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            0 => Mode::Up,
            1 => Mode::Unavailable,
            _ => Mode::Refuse,
        }
    }

    /// Waits the configured delay, then answers `body` (or 503 when unavailable). Every
    /// answer closes the connection, so each fetch opens a new one and `Refuse` applies.
    async fn answer(&self, body: String) -> Response {
        let delay = self.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let close = (header::CONNECTION, "close");
        if self.mode() != Mode::Up {
            return (StatusCode::SERVICE_UNAVAILABLE, [close], "identity provider down").into_response();
        }
        (StatusCode::OK, [close, (header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

async fn discovery_document(State(state): State<Arc<IdpState>>) -> Response {
    state.discovery_hits.fetch_add(1, Ordering::SeqCst);
    let issuer = state.discovery_issuer.lock().unwrap().clone();
    let document = json!({
        "issuer": issuer,
        "jwks_uri": format!("{}/jwks", state.base),
        "token_endpoint": format!("{}/oauth2/token", state.base),
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    });
    state.answer(document.to_string()).await
}

async fn jwks_document(State(state): State<Arc<IdpState>>) -> Response {
    state.jwks_hits.fetch_add(1, Ordering::SeqCst);
    let body = state.jwks_body.lock().unwrap().clone();
    state.answer(body).await
}

/// A listener that counts connections and drops them while the provider refuses.
struct GatedListener {
    inner: TcpListener,
    state: Arc<IdpState>,
}

impl axum::serve::Listener for GatedListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let Ok((stream, addr)) = self.inner.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            self.state.connections.fetch_add(1, Ordering::SeqCst);
            if self.state.mode() == Mode::Refuse {
                drop(stream);
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

struct Idp {
    state: Arc<IdpState>,
}

impl Idp {
    /// A provider on 127.0.0.1:0 in `mode`, publishing `jwks`; its discovery document
    /// names its own base URL as the issuer.
    async fn start(mode: Mode, jwks: &Value) -> Idp {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", inner.local_addr().unwrap());
        let state = Arc::new(IdpState {
            base: base.clone(),
            mode: AtomicU8::new(mode as u8),
            delay_ms: AtomicU64::new(0),
            jwks_body: Mutex::new(jwks.to_string()),
            discovery_issuer: Mutex::new(base),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery_document))
            .route("/jwks", get(jwks_document))
            .with_state(state.clone());
        let listener = GatedListener { inner, state: state.clone() };
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Idp { state }
    }

    fn base(&self) -> &str {
        &self.state.base
    }

    fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.state.base)
    }

    fn set_mode(&self, mode: Mode) {
        self.state.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn set_delay(&self, delay: Duration) {
        self.state.delay_ms.store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn publish(&self, jwks: &Value) {
        self.publish_raw(&jwks.to_string());
    }

    fn publish_raw(&self, body: &str) {
        *self.state.jwks_body.lock().unwrap() = body.to_owned();
    }

    fn set_discovery_issuer(&self, issuer: &str) {
        *self.state.discovery_issuer.lock().unwrap() = issuer.to_owned();
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

/// Waits (at most `limit`) until `done` holds; returns whether it did.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

/// Sleeps until `since + duration` (not at all when that has passed).
async fn sleep_past(since: Instant, duration: Duration) {
    tokio::time::sleep((since + duration).saturating_duration_since(Instant::now())).await;
}

// ---------------------------------------------------------------------------------------
// The secured API
// ---------------------------------------------------------------------------------------

/// The caller's subject (an opaque name: this provider's subjects are not our users).
async fn echo(principal: Principal) -> String {
    assert!(principal.name().is_opaque(), "another issuer's subject is opaque");
    principal.name().user().to_owned()
}

/// `[oauth2]` intervals, in seconds.
#[derive(Clone, Copy)]
struct Timing {
    refresh: u64,
    min_refresh: u64,
    timeout: u64,
}

const QUIET: Timing = Timing { refresh: 300, min_refresh: 10, timeout: 5 };

fn deployment_text(timing: Timing, issuer: &str, key_source: &str) -> String {
    format!(
        r#"
[authentication]
realm = "jwks-tests"

[oauth2]
jwks_refresh_seconds = {refresh}
jwks_min_refresh_seconds = {min_refresh}
jwks_timeout_seconds = {timeout}

[[oauth2.issuer]]
issuer = "{issuer}"
audience = "{AUD}"
{key_source}
"#,
        refresh = timing.refresh,
        min_refresh = timing.min_refresh,
        timeout = timing.timeout,
    )
}

struct Api {
    base: String,
    client: reqwest::Client,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    body: String,
    retry_after: Option<String>,
    challenge: Option<String>,
    elapsed: Duration,
}

impl Api {
    /// The secured echo API over `deployment_text`, built (and its key fetching started)
    /// inside the test's runtime.
    async fn start(text: &str) -> Api {
        let deployment = Deployment::from_toml_str("deployment.toml", text).unwrap();
        let layer = SecureLayer::builder().deployment(deployment).build().unwrap();
        let base = common::serve(Router::new().fallback(echo).layer(layer)).await;
        Api { base, client: common::client() }
    }

    /// A server trusting `ISS` with keys from the provider's JWKS URL.
    async fn with_jwks_uri(idp: &Idp, timing: Timing) -> Api {
        let source = format!("jwks_uri = \"{}\"", idp.jwks_uri());
        Api::start(&deployment_text(timing, ISS, &source)).await
    }

    async fn call(&self, token: &str) -> Reply {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}/api/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("the secured API answers");
        let elapsed = started.elapsed();
        let text = |name: header::HeaderName| {
            response.headers().get(name).map(|v| v.to_str().unwrap_or("<not text>").to_owned())
        };
        let retry_after = text(header::RETRY_AFTER);
        let challenge = text(header::WWW_AUTHENTICATE);
        let status = response.status().as_u16();
        let body = response.text().await.unwrap();
        Reply { status, body, retry_after, challenge, elapsed }
    }

    /// A fresh token signed by `key` under `kid` must be accepted as its subject.
    async fn expect_accepted(&self, key: &TestKey, kid: &str, iss: &str) -> Reply {
        let (token, sub) = mint(key, kid, iss);
        let reply = self.call(&token).await;
        assert_eq!(reply.status, 200, "kid {kid}: {reply:?}");
        assert_eq!(reply.body, sub, "the principal is the token's subject");
        reply
    }

    /// A fresh token signed by `key` under `kid` must be refused as an invalid token.
    async fn expect_invalid(&self, key: &TestKey, kid: &str, iss: &str) -> Reply {
        let (token, _) = mint(key, kid, iss);
        let reply = self.call(&token).await;
        assert_invalid(&reply, kid);
        reply
    }

    /// A fresh token signed by `key` under `kid`, whose kid is new and cannot be refreshed
    /// yet, must get 503 with a Retry-After of 1 to `at_most` seconds.
    async fn expect_refresh_pending(&self, key: &TestKey, kid: &str, at_most: u64) -> Reply {
        let (token, _) = mint(key, kid, ISS);
        let reply = self.call(&token).await;
        assert_refresh_pending(&reply, kid, at_most);
        reply
    }

    /// A fresh token signed by `key` under `kid` must get 503 with a numeric Retry-After.
    async fn expect_unavailable(&self, key: &TestKey, kid: &str, iss: &str) -> Reply {
        let (token, _) = mint(key, kid, iss);
        let reply = self.call(&token).await;
        assert_unavailable(&reply, kid);
        reply
    }

    /// Sends fresh `rsa-a` tokens every 100 ms until one is accepted (at most `limit`);
    /// every answer before that must be 503 (never 500, never another status).
    async fn wait_for_recovery(&self, iss: &str, limit: Duration) {
        let keys = keys();
        let deadline = Instant::now() + limit;
        loop {
            let (token, sub) = mint(&keys.rsa_a, "rsa-a", iss);
            let reply = self.call(&token).await;
            if reply.status == 200 {
                assert_eq!(reply.body, sub);
                return;
            }
            assert_unavailable(&reply, "rsa-a");
            assert!(Instant::now() < deadline, "no recovery within {limit:?}: last answer {reply:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn assert_invalid(reply: &Reply, kid: &str) {
    assert_eq!(reply.status, 401, "kid {kid}: {reply:?}");
    let challenge = reply.challenge.as_deref().unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "kid {kid}: {reply:?}");
}

fn assert_unavailable(reply: &Reply, kid: &str) {
    assert_eq!(reply.status, 503, "kid {kid}: {reply:?}");
    let retry_after = reply.retry_after.as_deref().unwrap_or_else(|| panic!("503 without Retry-After: {reply:?}"));
    assert!(retry_after.parse::<u64>().is_ok(), "Retry-After is not a number of seconds: {reply:?}");
}

/// 503 with a `Retry-After` of 1 to `at_most` seconds: the wait until a refresh is allowed.
fn assert_refresh_pending(reply: &Reply, kid: &str, at_most: u64) {
    assert_unavailable(reply, kid);
    let seconds: u64 = reply.retry_after.as_deref().and_then(|r| r.parse().ok()).unwrap_or_default();
    assert!((1..=at_most).contains(&seconds), "kid {kid}: Retry-After {seconds} s, expected 1 to {at_most}: {reply:?}");
}

/// Refused, never 200: 401 `invalid_token` once a refresh confirmed the kid is unknown, or
/// 503 with `Retry-After` while no refresh could run (SPEC A16); which one depends on when
/// the request falls in the refresh schedule, as in tests with 1 s intervals.
fn assert_unknown_kid_refused(reply: &Reply, kid: &str) {
    match reply.status {
        401 => assert_invalid(reply, kid),
        _ => assert_unavailable(reply, kid),
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

// SPEC A5: keys from a JWKS URL verify tokens of both key types; known kids are served
// from the fetched set without fetching again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwks_uri_keys_verify_tokens_without_refetching() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Api::with_jwks_uri(&idp, QUIET).await;

    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    assert_eq!(idp.jwks_hits(), 1, "one initial fetch");
    for _ in 0..10 {
        api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
        api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
    }
    // A published kid with the wrong key's signature is refused, without a refetch.
    api.expect_invalid(&keys.rsa_c, "rsa-a", ISS).await;
    // Another issuer's token is refused even when its kid is known.
    api.expect_invalid(&keys.rsa_a, "rsa-a", "https://other.test").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(idp.jwks_hits(), 1, "tokens with known kids never refetch the JWKS");
    assert_eq!(idp.discovery_hits(), 0, "a jwks_uri issuer does not use discovery");
}

// SPEC A5: `discovery = true` reads the JWKS URL from the issuer's
// /.well-known/openid-configuration once, then fetches the keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovery_finds_the_jwks() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Api::start(&deployment_text(QUIET, idp.base(), "discovery = true")).await;

    api.expect_accepted(&keys.rsa_a, "rsa-a", idp.base()).await;
    for _ in 0..5 {
        api.expect_accepted(&keys.ec_a, "ec-a", idp.base()).await;
        api.expect_accepted(&keys.rsa_a, "rsa-a", idp.base()).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(idp.discovery_hits(), 1, "discovery fetched once");
    assert_eq!(idp.jwks_hits(), 1, "the discovered JWKS fetched once");
}

// SPEC A5, F17: a discovery document naming another issuer is refused: no keys are ever
// loaded from it (the JWKS it names is never fetched) and tokens get 503, never 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn discovery_naming_another_issuer_never_loads_keys() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    idp.set_discovery_issuer("https://evil.example");
    let timing = Timing { refresh: 1, min_refresh: 1, timeout: 1 };
    let api = Api::start(&deployment_text(timing, idp.base(), "discovery = true")).await;

    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        api.expect_unavailable(&keys.rsa_a, "rsa-a", idp.base()).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(idp.discovery_hits() >= 2, "discovery was retried: {}", idp.discovery_hits());
    assert_eq!(idp.jwks_hits(), 0, "the JWKS of a mismatched discovery document is never fetched");
}

// SPEC F9, A16: an unknown kid triggers at most one refresh per jwks_min_refresh_seconds;
// concurrent requests share it (and get 401 once it ran without their kid); within the
// interval no refresh runs and the answer is 503 with Retry-After, never 401; after the
// interval another unknown kid refreshes once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_kids_share_one_rate_limited_refresh() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Arc::new(Api::with_jwks_uri(&idp, Timing { refresh: 300, min_refresh: 2, timeout: 5 }).await);
    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    let fetched = Instant::now();
    assert_eq!(idp.jwks_hits(), 1);

    // Within the interval after the initial fetch: no refresh at all, so no verdict yet.
    api.expect_refresh_pending(&keys.rsa_c, "unknown-early", 2).await;
    assert_eq!(idp.jwks_hits(), 1, "an unknown kid within the minimum interval does not fetch");

    // Past the interval, 20 concurrent unknown kids (minted first, sent at once) while the
    // provider answers slowly: the ones that wait for the shared fetch get 401; one that a
    // busy machine starts only after it finished is inside the interval again (503).
    sleep_past(fetched, Duration::from_millis(2300)).await;
    idp.set_delay(Duration::from_millis(500));
    let tokens: Vec<String> = (0..20).map(|i| mint(&keys.rsa_c, &format!("unknown-{i}"), ISS).0).collect();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let api = api.clone();
            tokio::spawn(async move { api.call(&token).await })
        })
        .collect();
    let mut shared = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap_or_else(|_| panic!("request {i} did not complete within 5 s"))
            .unwrap();
        assert_unknown_kid_refused(&reply, "unknown");
        shared += usize::from(reply.status == 401);
    }
    assert!(shared >= 1, "the request that triggered the fetch got its verdict");
    let after_burst = idp.jwks_hits();
    assert_eq!(after_burst, 2, "20 concurrent unknown kids cause exactly one shared refresh");
    let burst_done = Instant::now();
    idp.set_delay(Duration::ZERO);

    // Right after: rate limited.
    api.expect_refresh_pending(&keys.rsa_c, "unknown-again", 2).await;
    api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
    assert_eq!(idp.jwks_hits(), after_burst, "no refresh within the minimum interval");

    // After the interval: exactly one more, which settles the first kid; the next one is
    // within the interval again.
    sleep_past(burst_done, Duration::from_millis(2300)).await;
    api.expect_invalid(&keys.rsa_c, "unknown-later", ISS).await;
    api.expect_refresh_pending(&keys.rsa_c, "unknown-later-2", 2).await;
    assert_eq!(idp.jwks_hits(), after_burst + 1, "one refresh after the interval, not more");
}

// SPEC F9 ("concurrent requests share it"): requests waiting for a refresh in flight take
// its result, even when the fetch takes longer than jwks_min_refresh_seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiting_requests_share_a_slow_refresh() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Arc::new(Api::with_jwks_uri(&idp, Timing { refresh: 300, min_refresh: 1, timeout: 5 }).await);
    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    let fetched = Instant::now();
    assert_eq!(idp.jwks_hits(), 1);

    sleep_past(fetched, Duration::from_millis(1200)).await;
    idp.set_delay(Duration::from_millis(1500));
    let tokens: Vec<String> = (0..8).map(|i| mint(&keys.rsa_c, &format!("unknown-{i}"), ISS).0).collect();
    let started = Instant::now();
    let tasks: Vec<_> = tokens
        .into_iter()
        .map(|token| {
            let api = api.clone();
            tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(5), api.call(&token)).await })
        })
        .collect();
    let mut late = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            // Waiting for the fetch in flight: its verdict, 401 (SPEC A16: 503 only for a
            // request a busy machine starts after the fetch, inside the interval again).
            Ok(reply) => assert_unknown_kid_refused(&reply, "unknown"),
            Err(_) => late.push(i),
        }
    }
    let hits = idp.jwks_hits() - 1;
    assert!(
        late.is_empty() && hits == 1,
        "8 concurrent unknown kids during one 1.5 s fetch: expected one shared fetch and answers in ~1.5 s; \
         observed {hits} fetches, requests {late:?} unanswered after 5 s (elapsed {:?})",
        started.elapsed()
    );
}

// SPEC A5, F9: readers never wait on the network: while a slow refresh (triggered by an
// unknown kid) is in flight, tokens of known kids are answered at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn known_kids_do_not_wait_for_a_refresh_in_flight() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Arc::new(Api::with_jwks_uri(&idp, Timing { refresh: 300, min_refresh: 1, timeout: 5 }).await);
    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    let fetched = Instant::now();

    sleep_past(fetched, Duration::from_millis(1200)).await;
    idp.set_delay(Duration::from_millis(2000));
    let (token, _) = mint(&keys.rsa_c, "unknown", ISS);
    let slow = {
        let api = api.clone();
        tokio::spawn(async move { api.call(&token).await })
    };
    assert!(wait_until(Duration::from_secs(2), || idp.jwks_hits() == 2).await, "the unknown kid refreshes");

    let reply = api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
    assert!(reply.elapsed < Duration::from_millis(1000), "a known kid waited for the refresh: {reply:?}");
    let reply = api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    assert!(reply.elapsed < Duration::from_millis(1000), "a known kid waited for the refresh: {reply:?}");

    let unknown = tokio::time::timeout(Duration::from_secs(5), slow).await.expect("bounded").unwrap();
    assert_invalid(&unknown, "unknown");
    assert!(unknown.elapsed >= Duration::from_millis(1500), "the refresh was in flight: {unknown:?}");
}

// SPEC A5, F9, A16: key rotation: a valid token with a newly published kid, inside the
// refresh rate limit, gets 503 with Retry-After (the seconds until the refresh is allowed),
// never 401; once the refresh is allowed it is accepted. The retired key stops verifying:
// 503 within the interval after that refresh, 401 once a later refresh confirms it is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_keys_are_picked_up_on_an_unknown_kid() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Api::with_jwks_uri(&idp, Timing { refresh: 300, min_refresh: 2, timeout: 5 }).await;
    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    let fetched = Instant::now();
    assert_eq!(idp.jwks_hits(), 1);

    // The provider rotates: rsa-a out, rsa-b in.
    idp.publish(&json!({"keys": [keys.rsa_b.jwk("rsa-b"), keys.ec_a.jwk("ec-a")]}));
    // Within the minimum interval the new kid cannot refresh yet: 503, retry within 2 s.
    let (early, early_sub) = mint(&keys.rsa_b, "rsa-b", ISS);
    assert_refresh_pending(&api.call(&early).await, "rsa-b", 2);
    assert_eq!(idp.jwks_hits(), 1, "rate limited");

    // The same token, once the refresh is allowed: the real answer.
    sleep_past(fetched, Duration::from_millis(2300)).await;
    let reply = api.call(&early).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, early_sub.as_str()), "{reply:?}");
    let refreshed = Instant::now();
    assert_eq!(idp.jwks_hits(), 2, "the new kid refreshed once");
    api.expect_accepted(&keys.rsa_b, "rsa-b", ISS).await;
    api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
    // The retired key no longer verifies fresh tokens; the set was swapped whole.
    api.expect_refresh_pending(&keys.rsa_a, "rsa-a", 2).await;
    assert_eq!(idp.jwks_hits(), 2, "no refresh within the minimum interval");
    sleep_past(refreshed, Duration::from_millis(2300)).await;
    api.expect_invalid(&keys.rsa_a, "rsa-a", ISS).await;
    assert_eq!(idp.jwks_hits(), 3, "the retired kid refreshed once");
}

const FAST: Timing = Timing { refresh: 1, min_refresh: 1, timeout: 1 };

// SPEC F17: the server starts while the provider answers 503; tokens get 503 with
// Retry-After (never 200, never 500); once the provider is back, tokens are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_answering_503_at_start_then_recovering() {
    let keys = keys();
    let idp = Idp::start(Mode::Unavailable, &standard_jwks()).await;
    let api = Api::with_jwks_uri(&idp, FAST).await;

    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        api.expect_unavailable(&keys.rsa_a, "rsa-a", ISS).await;
        api.expect_unavailable(&keys.ec_a, "ec-a", ISS).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(idp.jwks_hits() >= 1, "the keys were asked for");

    idp.set_mode(Mode::Up);
    api.wait_for_recovery(ISS, Duration::from_secs(5)).await;
    api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
    let (unknown, _) = mint(&keys.rsa_c, "unknown", ISS);
    assert_unknown_kid_refused(&api.call(&unknown).await, "unknown");
}

// SPEC F17: the same with a provider that drops every connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_refusing_connections_at_start_then_recovering() {
    let keys = keys();
    let idp = Idp::start(Mode::Refuse, &standard_jwks()).await;
    let api = Api::with_jwks_uri(&idp, FAST).await;

    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1200) {
        api.expect_unavailable(&keys.rsa_a, "rsa-a", ISS).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(idp.connections() >= 1, "the keys were asked for");
    assert_eq!(idp.jwks_hits(), 0, "no request got through");

    idp.set_mode(Mode::Up);
    api.wait_for_recovery(ISS, Duration::from_secs(5)).await;
    api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
}

// SPEC F17, A16: after a successful fetch, a provider outage (503 answers, then dropped
// connections) keeps the old keys serving; an unknown kid gets 503 with Retry-After (the
// provider cannot say whether it is new), never 200. (Before A16: 401.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_outage_after_a_fetch_keeps_the_old_keys() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Api::with_jwks_uri(&idp, FAST).await;
    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;

    idp.set_mode(Mode::Unavailable);
    let hits = idp.jwks_hits();
    assert!(wait_until(Duration::from_secs(5), || idp.jwks_hits() >= hits + 2).await, "background refreshes ran");
    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
    api.expect_unavailable(&keys.rsa_c, "unknown", ISS).await;

    idp.set_mode(Mode::Refuse);
    let connections = idp.connections();
    assert!(
        wait_until(Duration::from_secs(5), || idp.connections() >= connections + 2).await,
        "background refreshes ran"
    );
    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
    api.expect_unavailable(&keys.rsa_c, "unknown", ISS).await;
}

// SPEC F17: a provider slower than jwks_timeout_seconds at start: concurrent requests get
// 503 within a few seconds, not a hang; the keys load once the provider is fast again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_provider_at_start_answers_503_without_hanging() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    idp.set_delay(Duration::from_secs(4));
    let api = Arc::new(Api::with_jwks_uri(&idp, FAST).await);

    let started = Instant::now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let api = api.clone();
            let (token, _) = mint(&keys.rsa_a, "rsa-a", ISS);
            tokio::spawn(async move { tokio::time::timeout(Duration::from_secs(6), api.call(&token)).await })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap().unwrap_or_else(|_| {
            panic!("request {i} still unanswered after 6 s (provider delay 4 s, jwks_timeout_seconds = 1)")
        });
        assert_unavailable(&reply, "rsa-a");
        slowest = slowest.max(reply.elapsed);
    }
    assert!(
        slowest < Duration::from_millis(3500),
        "with jwks_timeout_seconds = 1 every request should get 503 within a few seconds; slowest took {slowest:?} \
         (total {:?}, {} JWKS requests)",
        started.elapsed(),
        idp.jwks_hits()
    );

    idp.set_delay(Duration::ZERO);
    api.wait_for_recovery(ISS, Duration::from_secs(6)).await;
}

// SPEC A5, F8, F17: a JWKS that is not JSON, has no `keys` array, or holds a symmetric
// key is refused whole: no keys load and tokens get 503 (never 200), also HMAC tokens
// signed with the published `oct` secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_jwks_at_start_loads_no_keys() {
    let keys = keys();
    let oct = json!({"kty": "oct", "kid": "hs", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(HMAC_SECRET)});
    let variants = [
        "<html>not json</html>".to_owned(),
        json!({"keys": "rsa-a"}).to_string(),
        json!({"keys": [keys.rsa_a.jwk("rsa-a"), oct]}).to_string(),
    ];
    for body in variants {
        let idp = Idp::start(Mode::Up, &json!({})).await;
        idp.publish_raw(&body);
        let api = Api::with_jwks_uri(&idp, QUIET).await;
        let (token, _) = mint(&keys.rsa_a, "rsa-a", ISS);
        let reply = api.call(&token).await;
        assert_unavailable(&reply, &format!("rsa-a with JWKS {body}"));
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("hs".to_owned());
        let hmac = encode(&header, &claims(ISS, &fresh_sub()), &EncodingKey::from_secret(HMAC_SECRET)).unwrap();
        let reply = api.call(&hmac).await;
        assert_unavailable(&reply, &format!("hs with JWKS {body}"));
        // Fetched at start (and retried with backoff since: at least once).
        assert!(idp.jwks_hits() >= 1, "the JWKS was fetched ({body})");
    }
}

// SPEC F17: good keys are kept when the JWKS later turns to garbage or to a set with a
// symmetric key; that key is never used. Tokens of the refused set's kids get 503 (no
// usable refresh can run, SPEC A16), never 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_jwks_later_keeps_the_previous_keys() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &json!({})).await;
    idp.publish_raw("not json");
    let api = Api::with_jwks_uri(&idp, FAST).await;
    api.expect_unavailable(&keys.rsa_a, "rsa-a", ISS).await;
    idp.publish(&standard_jwks());
    api.wait_for_recovery(ISS, Duration::from_secs(5)).await;

    let oct = json!({"kty": "oct", "kid": "hs", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(HMAC_SECRET)});
    let garbage = [
        json!({"keys": [keys.rsa_b.jwk("rsa-b"), oct]}).to_string(),
        "{\"keys\": [".to_owned(),
        "<html>maintenance</html>".to_owned(),
    ];
    for body in garbage {
        idp.publish_raw(&body);
        let hits = idp.jwks_hits();
        assert!(wait_until(Duration::from_secs(5), || idp.jwks_hits() >= hits + 2).await, "refreshes ran");
        api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
        api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
        // Nothing of the refused set was taken: neither its RSA key nor its oct secret.
        api.expect_unavailable(&keys.rsa_b, "rsa-b", ISS).await;
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("hs".to_owned());
        let hmac = encode(&header, &claims(ISS, &fresh_sub()), &EncodingKey::from_secret(HMAC_SECRET)).unwrap();
        assert_unavailable(&api.call(&hmac).await, "hs");
    }
}

// SPEC A5: identity providers publish encryption keys next to signing keys (Keycloak's
// `RSA-OAEP` key with `use: enc`); bearer.rs `keys_from_jwks` documents that each key is
// parsed on its own and "one unknown key does not void the set". The signing keys of
// such a set must verify tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_encryption_key_in_the_jwks_does_not_void_the_signing_keys() {
    let keys = keys();
    let mut enc = keys.rsa_b.public.clone();
    let map = enc.as_object_mut().unwrap();
    map.insert("kid".to_owned(), json!("enc-1"));
    map.insert("use".to_owned(), json!("enc"));
    map.insert("alg".to_owned(), json!("RSA-OAEP"));
    let idp = Idp::start(Mode::Up, &json!({"keys": [keys.rsa_a.jwk("rsa-a"), enc, keys.ec_a.jwk("ec-a")]})).await;
    let api = Api::with_jwks_uri(&idp, QUIET).await;

    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;
    api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
    // The encryption key itself never verifies a signature, and its published kid is not
    // new: refused at once, without a refresh.
    api.expect_invalid(&keys.rsa_b, "enc-1", ISS).await;
    assert_eq!(idp.jwks_hits(), 1, "a published encryption kid does not refresh");
}

// SPEC F9: `jku`, `x5u` and `jwk` headers never cause network I/O or key selection: a
// listener they point at sees no connection; a token whose embedded key is the
// attacker's is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jku_and_x5u_headers_cause_no_network_io() {
    let keys = keys();
    let trap = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_base = format!("http://{}", trap.local_addr().unwrap());
    let trapped = Arc::new(AtomicUsize::new(0));
    {
        let trapped = trapped.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = trap.accept().await {
                trapped.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
    }
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Api::with_jwks_uri(&idp, QUIET).await;
    api.expect_accepted(&keys.rsa_a, "rsa-a", ISS).await;

    // A known kid: accepted by the configured key; the headers are ignored.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-a".to_owned());
    header.jku = Some(format!("{trap_base}/jwks"));
    header.x5u = Some(format!("{trap_base}/cert.pem"));
    let (token, sub) = mint_with(&header, &keys.rsa_a, ISS);
    let reply = api.call(&token).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, sub.as_str()), "{reply:?}");

    // The attacker's key, named and embedded every way the headers allow.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("attacker".to_owned());
    header.jku = Some(format!("{trap_base}/jwks"));
    header.x5u = Some(format!("{trap_base}/cert.pem"));
    header.jwk = Some(serde_json::from_value(keys.rsa_c.jwk("attacker")).unwrap());
    let (token, _) = mint_with(&header, &keys.rsa_c, ISS);
    // An unknown kid within the refresh interval: 503 until a refresh could tell (A16).
    assert_refresh_pending(&api.call(&token).await, "attacker", 10);
    // The attacker's key under a published kid.
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-a".to_owned());
    header.jku = Some(format!("{trap_base}/jwks"));
    header.jwk = Some(serde_json::from_value(keys.rsa_c.jwk("rsa-a")).unwrap());
    let (token, _) = mint_with(&header, &keys.rsa_c, ISS);
    assert_invalid(&api.call(&token).await, "rsa-a (attacker's key)");

    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(trapped.load(Ordering::SeqCst), 0, "jku/x5u URLs were contacted");
    assert!(idp.jwks_hits() <= 2, "only the configured JWKS is fetched: {}", idp.jwks_hits());
}

// SPEC A5, F9: a key withdrawn from the JWKS stops working at once for tokens the layer had
// already verified and cached: once a refresh drops the kid, the cached token is verified
// again and refused, while tokens of the keys still published keep working.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retired_key_invalidates_cached_tokens() {
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    let api = Api::with_jwks_uri(&idp, FAST).await;
    let (withdrawn, _) = mint(&keys.rsa_a, "rsa-a", ISS);
    let (kept, _) = mint(&keys.ec_a, "ec-a", ISS);
    assert_eq!(api.call(&withdrawn).await.status, 200);
    assert_eq!(api.call(&kept).await.status, 200);

    idp.publish(&json!({"keys": [keys.ec_a.jwk("ec-a")]}));
    let hits = idp.jwks_hits();
    assert!(wait_until(Duration::from_secs(5), || idp.jwks_hits() >= hits + 2).await, "background refreshes ran");
    let reply = api.call(&withdrawn).await;
    assert_ne!(reply.status, 200, "a cached token of a withdrawn key still passed");
    assert_unknown_kid_refused(&reply, "rsa-a (withdrawn)");
    assert_eq!(api.call(&kept).await.status, 200);
}

// SPEC A16: a provider that is down when the server starts: the keys are fetched at start
// and retried with a backoff (1 s, 2 s, 4 s, ...), so once the provider is back they arrive
// within seconds, not after jwks_refresh_seconds (300 here) or jwks_min_refresh_seconds
// (300 here: tokens cannot trigger a fetch). Meanwhile tokens get 503 with a Retry-After
// that points at the next retry, not at the 300 s rate limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn provider_down_at_start_is_retried_with_backoff() {
    let keys = keys();
    let idp = Idp::start(Mode::Unavailable, &standard_jwks()).await;
    let api = Api::with_jwks_uri(&idp, Timing { refresh: 300, min_refresh: 300, timeout: 1 }).await;
    let started = Instant::now();

    let reply = api.expect_unavailable(&keys.rsa_a, "rsa-a", ISS).await;
    let retry_after: u64 = reply.retry_after.as_deref().and_then(|r| r.parse().ok()).unwrap_or_default();
    assert!(retry_after <= 4, "Retry-After should name the next retry (within 4 s), not the rate limit: {reply:?}");
    assert!(wait_until(Duration::from_secs(5), || idp.jwks_hits() >= 2).await, "the fetch at start is retried");
    api.expect_unavailable(&keys.rsa_a, "rsa-a", ISS).await;

    idp.set_mode(Mode::Up);
    let back = Instant::now();
    let deadline = back + Duration::from_secs(12);
    loop {
        let (token, sub) = mint(&keys.rsa_a, "rsa-a", ISS);
        let reply = api.call(&token).await;
        if reply.status == 200 {
            assert_eq!(reply.body, sub);
            break;
        }
        assert_unavailable(&reply, "rsa-a");
        assert!(Instant::now() < deadline, "keys not fetched 12 s after the provider came back: {reply:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        back.elapsed() < Duration::from_secs(12) && started.elapsed() < Duration::from_secs(30),
        "fetched {:?} after the provider came back",
        back.elapsed()
    );
    api.expect_accepted(&keys.ec_a, "ec-a", ISS).await;
}

/// A `tracing` layer that keeps every event on this thread as text: target, level and
/// every field (`name=value`).
#[derive(Clone, Default)]
struct LogCapture(Arc<Mutex<Vec<String>>>);

struct FieldText<'a>(&'a mut String);

impl tracing::field::Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LogCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        let metadata = event.metadata();
        let mut line = format!("{} {}", metadata.level(), metadata.target());
        event.record(&mut FieldText(&mut line));
        self.0.lock().unwrap().push(line);
    }
}

// SPEC A16: a discovery document that names another issuer is an error in the log that
// names both issuers (the configured one and the one the document claims), and no key is
// loaded from it.
#[tokio::test(flavor = "current_thread")]
async fn discovery_naming_another_issuer_logs_both_issuers() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let capture = LogCapture::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let keys = keys();
    let idp = Idp::start(Mode::Up, &standard_jwks()).await;
    idp.set_discovery_issuer("https://evil.example");
    let api = Api::start(&deployment_text(FAST, idp.base(), "discovery = true")).await;

    // The fetch is retried every second; the callsite interest is rebuilt each time round,
    // as another test's thread may have seen the error callsite first (without a subscriber).
    let configured = format!("{:?}", idp.base());
    let found = |lines: &[String]| {
        lines.iter().any(|l| {
            l.starts_with("ERROR tower_secure::audit") && l.contains("error=") && {
                let error = &l[l.find("error=").unwrap_or(0)..];
                error.contains("\"https://evil.example\"") && error.contains(&configured)
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    while !found(&capture.0.lock().unwrap()) {
        assert!(Instant::now() < deadline, "no error naming both issuers: {:#?}", capture.0.lock().unwrap());
        tracing::callsite::rebuild_interest_cache();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.expect_unavailable(&keys.rsa_a, "rsa-a", idp.base()).await;
    assert_eq!(idp.jwks_hits(), 0, "the JWKS of a mismatched discovery document is never fetched");
}
