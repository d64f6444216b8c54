//! Opaque bearer tokens checked by RFC 7662 token introspection, over real HTTP on
//! 127.0.0.1: a real in-process authorization server answers `POST /introspect` from a
//! table of tokens this file controls (active, inactive, malformed, failing, slow), counts
//! its calls and records what it was sent; the secured app runs behind `SecureLayer`.
//!
//! SPEC A6 (introspection, client authentication, a bounded cache never past `exp`),
//! A15 (answers bound to this API's audience and a trusted issuer), F11 (JWTs are never
//! introspected, `active` must be JSON `true`), F17 (endpoint failures answer 503, never
//! 200) and C2 (permissions from the user store, scopes from the answer).
//!
//! The endpoint plays WSO2 Identity Server over the same user store, so most tests read its
//! subjects as qualified names (`subject_format = "qualified"`); its answers name this
//! API's audience unless a test says otherwise.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower_secure::config::{load_users, Deployment};
use tower_secure::identity::Principal;
use tower_secure::SecureLayer;

const REALM: &str = "introspection-tests";
const CLIENT_ID: &str = "resource-api";
const CLIENT_SECRET: &str = "introspection-secret-42";
const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";
const ISS: &str = "https://idp.test";
/// The audience this API's tokens carry (`[oauth2.introspection] audience`).
const AUD: &str = "resource-api-audience";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-introspection";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------
// The authorization server: POST /introspect answered from a table of tokens
// ---------------------------------------------------------------------------------------

/// How the authorization server answers for one token.
#[derive(Clone)]
enum Answer {
    /// 200 with this JSON document.
    Json(Value),
    /// This status, content type and body, verbatim.
    Raw(u16, &'static str, String),
    /// This JSON document, after this delay.
    Slow(Duration, Value),
    /// 307 to `/elsewhere`, which would answer `active: true` for anything.
    Redirect,
}

/// One call the endpoint received.
#[derive(Clone, Debug)]
struct Seen {
    authorization: Option<String>,
    content_type: Option<String>,
    form: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Idp {
    /// Calls to `/introspect`, authorized or not.
    calls: AtomicUsize,
    /// Calls to `/elsewhere` (a redirect target that must never be reached).
    elsewhere: AtomicUsize,
    answers: Mutex<HashMap<String, Answer>>,
    seen: Mutex<Vec<Seen>>,
}

impl Idp {
    fn set(&self, token: &str, answer: Answer) {
        self.answers.lock().unwrap().insert(token.to_owned(), answer);
    }

    /// An active answer with `claims`, naming this API's audience unless `claims` set `aud`
    /// (`null` leaves it out).
    fn active(&self, token: &str, claims: Value) {
        let mut document = json!({"active": true, "aud": AUD});
        let map = document.as_object_mut().unwrap();
        map.extend(claims.as_object().unwrap().clone());
        map.retain(|_, value| !value.is_null());
        self.set(token, Answer::Json(document));
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last_seen(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().expect("the endpoint was never called")
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad percent escape in {text:?}")));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

/// `application/x-www-form-urlencoded` (axum's `Form` needs a feature this crate lacks).
fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn expected_client_authorization() -> String {
    format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}")))
}

async fn introspect(State(idp): State<Arc<Idp>>, headers: HeaderMap, body: String) -> Response {
    idp.calls.fetch_add(1, Ordering::SeqCst);
    let text = |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let seen = Seen {
        authorization: text(header::AUTHORIZATION),
        content_type: text(header::CONTENT_TYPE),
        form: parse_form(&body),
    };
    idp.seen.lock().unwrap().push(seen.clone());
    // RFC 7662 section 2.1: the protected resource authenticates; a wrong client is 401.
    if seen.authorization.as_deref() != Some(expected_client_authorization().as_str()) {
        let challenge = [(header::WWW_AUTHENTICATE, "Basic realm=\"idp\"")];
        return (StatusCode::UNAUTHORIZED, challenge, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let Some(token) = seen.field("token") else {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_request"}))).into_response();
    };
    let answer = idp.answers.lock().unwrap().get(token).cloned();
    match answer {
        None => Json(json!({"active": false})).into_response(),
        Some(Answer::Json(document)) => Json(document).into_response(),
        Some(Answer::Raw(status, content_type, body)) => {
            (StatusCode::from_u16(status).unwrap(), [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Some(Answer::Slow(delay, document)) => {
            tokio::time::sleep(delay).await;
            Json(document).into_response()
        }
        Some(Answer::Redirect) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, "/elsewhere")]).into_response(),
    }
}

async fn elsewhere(State(idp): State<Arc<Idp>>) -> Json<Value> {
    idp.elsewhere.fetch_add(1, Ordering::SeqCst);
    Json(json!({"active": true, "sub": "admin", "scope": "read"}))
}

fn idp_router(idp: Arc<Idp>) -> Router {
    Router::new().route("/introspect", post(introspect)).route("/elsewhere", post(elsewhere)).with_state(idp)
}

/// Starts an authorization server; returns it and its introspection endpoint URL.
async fn start_idp() -> (Arc<Idp>, String) {
    let idp = Arc::new(Idp::default());
    let base = common::serve(idp_router(idp.clone())).await;
    (idp, format!("{base}/introspect"))
}

// ---------------------------------------------------------------------------------------
// The secured app
// ---------------------------------------------------------------------------------------

/// The deployment: `[oauth2.introspection]` at `endpoint` with `settings` added (and, unless
/// they say otherwise, `audience = AUD` and qualified subjects), and, when `issuer` holds,
/// an `[[oauth2.issuer]]` with one HS256 key.
fn deployment_text(endpoint: &str, settings: &str, issuer: bool) -> String {
    let issuer_table = if issuer {
        format!(
            r#"
[[oauth2.issuer]]
issuer = "{ISS}"
subject_format = "qualified"
[[oauth2.issuer.key]]
kid = "hs"
algorithm = "HS256"
secret_base64 = "{secret}"
"#,
            secret = STANDARD.encode(HMAC_SECRET)
        )
    } else {
        String::new()
    };
    let mut settings = if settings.contains("client_secret") {
        settings.to_owned()
    } else {
        format!("client_secret = \"{CLIENT_SECRET}\"\n{settings}")
    };
    if !settings.contains("audience") {
        settings.push_str(&format!("\naudience = \"{AUD}\""));
    }
    if !settings.contains("subject_format") {
        settings.push_str("\nsubject_format = \"qualified\"");
    }
    format!(
        r#"
[authentication]
realm = "{REALM}"

[oauth2.introspection]
endpoint = "{endpoint}"
client_id = "{CLIENT_ID}"
{settings}
{issuer_table}

[[resource.access_control]]
context = "/api/me"

[[resource.access_control]]
context = "/api/read"
scope = ["read"]

[[resource.access_control]]
context = "/api/view"
permissions = ["{VIEW}"]
"#
    )
}

/// Echoes the caller the layer decided on.
async fn echo(principal: Principal) -> Json<Value> {
    Json(json!({
        "name": principal.name().to_string(),
        "authenticated_by": principal.authenticated_by(),
        "scopes": principal.scopes(),
        "client_id": principal.client_id(),
    }))
}

struct Server {
    base: String,
    client: reqwest::Client,
}

struct Reply {
    status: u16,
    challenges: Vec<String>,
    retry_after: Option<String>,
    body: String,
    elapsed: Duration,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(300).collect();
        write!(
            f,
            "{} {:?} retry-after={:?} {body} ({:?})",
            self.status, self.challenges, self.retry_after, self.elapsed
        )
    }
}

impl Reply {
    /// The echoed caller of a 200.
    #[track_caller]
    fn caller(&self) -> Value {
        assert_eq!(self.status, 200, "expected the echo, got {self:?}");
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

async fn start_app(endpoint: &str, settings: &str, issuer: bool) -> Server {
    start_app_with(&deployment_text(endpoint, settings, issuer)).await
}

async fn start_app_with(text: &str) -> Server {
    let deployment = Deployment::from_toml_str("deployment.toml", text).unwrap();
    let users = load_users("users.toml", &common::users_toml()).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap();
    let base = common::serve(Router::new().fallback(echo).layer(layer)).await;
    Server { base, client: common::client() }
}

impl Server {
    /// GET `path` with `Authorization: Bearer {token}`.
    async fn bearer(&self, path: &str, token: &str) -> Reply {
        let started = Instant::now();
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: no response: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers();
        let challenges = headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let retry_after = headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        Reply { status, challenges, retry_after, body, elapsed: started.elapsed() }
    }
}

#[track_caller]
fn assert_invalid_token(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: expected 401, got {reply:?}");
    let expected = format!(r#"Bearer realm="{REALM}", error="invalid_token""#);
    assert_eq!(reply.challenges, vec![expected], "{what}: {reply:?}");
}

#[track_caller]
fn assert_insufficient_scope(reply: &Reply, scope: &str, what: &str) {
    assert_eq!(reply.status, 403, "{what}: expected 403, got {reply:?}");
    let expected = format!(r#"Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}""#);
    assert_eq!(reply.challenges, vec![expected], "{what}: {reply:?}");
}

/// A backend outage: 503 with `Retry-After`, no token challenge, nothing of the answer.
#[track_caller]
fn assert_unavailable(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 503, "{what}: expected 503, got {reply:?}");
    assert!(reply.retry_after.is_some(), "{what}: 503 without Retry-After: {reply:?}");
    assert!(!reply.body.contains("alex") && !reply.body.contains("admin"), "{what}: {reply:?}");
}

fn sorted_strings(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    list.sort();
    list
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".to_owned());
    encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
}

// ---------------------------------------------------------------------------------------
// A6: active and inactive tokens, client authentication
// ---------------------------------------------------------------------------------------

// SPEC A6: an active opaque token is accepted with the caller the answer describes (`sub`,
// `scope`, `client_id`); the endpoint is called once, with HTTP Basic client credentials
// and the form-encoded token exactly as the caller sent it.
#[tokio::test]
async fn a6_active_opaque_token_authenticates_the_answered_caller() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    let token = "opaque-alex-7f3a9c";
    idp.active(token, json!({"sub": "alex", "scope": "read write", "client_id": "app-1", "exp": now() + 600}));

    let caller = server.bearer("/api/me", token).await.caller();
    assert_eq!(caller["name"], "alex");
    assert_eq!(caller["authenticated_by"], "oauth2");
    assert_eq!(sorted_strings(&caller["scopes"]), ["read", "write"]);
    assert_eq!(caller["client_id"], "app-1");
    assert_eq!(idp.calls(), 1);

    let seen = idp.last_seen();
    assert_eq!(seen.authorization.as_deref(), Some(expected_client_authorization().as_str()), "{seen:?}");
    assert_eq!(seen.content_type.as_deref(), Some("application/x-www-form-urlencoded"), "{seen:?}");
    assert_eq!(seen.field("token"), Some(token), "{seen:?}");
    assert_eq!(seen.field("token_type_hint"), Some("access_token"), "{seen:?}");

    // No `sub`: RFC 7662's `username` names the user; WSO2 qualifies it with the super tenant.
    idp.active("opaque-bob-username", json!({"username": "bob", "scope": "read"}));
    let caller = server.bearer("/api/me", "opaque-bob-username").await.caller();
    assert_eq!(caller["name"], "bob");
    assert_eq!(caller["client_id"], Value::Null);
    idp.active("opaque-wso2-style", json!({"username": "alex@carbon.super", "client_id": "wso2-app"}));
    let caller = server.bearer("/api/me", "opaque-wso2-style").await.caller();
    assert_eq!(caller["name"], "alex");
    assert_eq!(caller["client_id"], "wso2-app");
    assert_eq!(idp.calls(), 3);

    // token68 characters that need form encoding reach the endpoint unchanged.
    let odd = "a+b/c~d-e_f.g==";
    idp.active(odd, json!({"sub": "alex"}));
    assert_eq!(server.bearer("/api/me", odd).await.caller()["name"], "alex");
    assert_eq!(idp.last_seen().field("token"), Some(odd));
    assert_eq!(idp.calls(), 4);

    // Only exactly two dots make a JWT: one dot or three dots are opaque and introspected.
    for dotted in ["one.dot", "three.dots.in.it"] {
        idp.active(dotted, json!({"sub": "alex"}));
        assert_eq!(server.bearer("/api/me", dotted).await.caller()["name"], "alex", "{dotted}");
        assert_eq!(idp.last_seen().field("token"), Some(dotted));
    }
    assert_eq!(idp.calls(), 6);
}

// SPEC A6, A7: an inactive or unknown token answers 401 `invalid_token` after asking the
// endpoint.
#[tokio::test]
async fn a6_inactive_token_is_invalid_token() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    // Inactive answers may carry nothing else (RFC 7662 section 2.2), or stale claims.
    idp.set("revoked-token", Answer::Json(json!({"active": false})));
    idp.set("stale-claims", Answer::Json(json!({"active": false, "sub": "admin", "scope": "read"})));
    for (i, token) in ["revoked-token", "stale-claims", "never-issued"].into_iter().enumerate() {
        assert_invalid_token(&server.bearer("/api/me", token).await, token);
        assert_eq!(idp.calls(), i + 1, "{token}");
        assert_eq!(idp.last_seen().field("token"), Some(token));
    }
    // The control: the same endpoint, an active answer.
    idp.active("live-token", json!({"sub": "alex"}));
    assert_eq!(server.bearer("/api/me", "live-token").await.caller()["name"], "alex");
}

// SPEC A6, F17: when the endpoint refuses our client credentials (401) the answer is a
// 503, never 200 and never the caller's fault (no `invalid_token`).
#[tokio::test]
async fn a6_wrong_client_credentials_fail_closed() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "client_secret = \"not-the-secret\"", false).await;
    idp.active("good-token", json!({"sub": "alex", "scope": "read"}));
    let reply = server.bearer("/api/read", "good-token").await;
    assert_unavailable(&reply, "endpoint refused the client");
    assert_eq!(idp.calls(), 1);
    let sent = idp.last_seen().authorization.unwrap();
    assert_ne!(sent, expected_client_authorization());
    assert_eq!(sent, format!("Basic {}", STANDARD.encode(format!("{CLIENT_ID}:not-the-secret"))));
}

// ---------------------------------------------------------------------------------------
// A6, F11: the cache
// ---------------------------------------------------------------------------------------

// SPEC A6: a result is cached by token: the same token twice (on any resource) is
// introspected once, and within `cache_max_seconds` (default 60) a token without `exp`
// is not asked about again; another token is.
#[tokio::test]
async fn a6_cache_same_token_is_introspected_once() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    idp.active("cached-token", json!({"sub": "alex", "scope": "read"}));
    assert_eq!(server.bearer("/api/me", "cached-token").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 1);
    assert_eq!(server.bearer("/api/read", "cached-token").await.caller()["name"], "alex");
    assert_eq!(server.bearer("/api/view", "cached-token").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 1, "a cached token was introspected again");

    // Other tokens, including a prefix and an extension of this one, are their own entries.
    for (i, other) in ["cached-toke", "cached-tokenX", "other-token"].into_iter().enumerate() {
        idp.active(other, json!({"sub": "bob"}));
        assert_eq!(server.bearer("/api/me", other).await.caller()["name"], "bob", "{other}");
        assert_eq!(idp.calls(), 2 + i, "{other}");
    }

    // 1.5 s later (well within the default 60 s) the first token is still cached.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    idp.set("cached-token", Answer::Json(json!({"active": false})));
    assert_eq!(server.bearer("/api/me", "cached-token").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 4);
}

// SPEC A6, F11: a cached result never outlives the token's `exp`: 2 s ahead, cached until
// then; 3 s later the endpoint is asked again and its `inactive` is obeyed.
#[tokio::test]
async fn a6_f11_cache_never_outlives_exp() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    idp.active("short-lived", json!({"sub": "alex", "exp": now() + 2}));
    assert_eq!(server.bearer("/api/me", "short-lived").await.caller()["name"], "alex");
    assert_eq!(server.bearer("/api/me", "short-lived").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 1, "not cached before exp");

    tokio::time::sleep(Duration::from_secs(3)).await;
    idp.set("short-lived", Answer::Json(json!({"active": false})));
    assert_invalid_token(&server.bearer("/api/me", "short-lived").await, "after exp");
    assert_eq!(idp.calls(), 2, "the endpoint was not asked again after exp");
}

// SPEC A6: with `cache_max_seconds = 1` a result is re-checked after ~1.5 s whether the
// answer has no `exp` or a far one; a revocation seen then is obeyed.
#[tokio::test]
async fn a6_cache_max_seconds_bounds_results() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "cache_max_seconds = 1", false).await;
    idp.active("no-exp", json!({"sub": "alex"}));
    idp.active("far-exp", json!({"sub": "bob", "exp": now() + 3600}));
    assert_eq!(server.bearer("/api/me", "no-exp").await.caller()["name"], "alex");
    assert_eq!(server.bearer("/api/me", "far-exp").await.caller()["name"], "bob");
    assert_eq!(idp.calls(), 2);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.bearer("/api/me", "no-exp").await.caller()["name"], "alex");
    assert_eq!(server.bearer("/api/me", "far-exp").await.caller()["name"], "bob");
    assert_eq!(idp.calls(), 4, "results were trusted past cache_max_seconds");

    idp.set("no-exp", Answer::Json(json!({"active": false})));
    idp.set("far-exp", Answer::Json(json!({"active": false})));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_invalid_token(&server.bearer("/api/me", "no-exp").await, "revoked, no exp");
    assert_invalid_token(&server.bearer("/api/me", "far-exp").await, "revoked, far exp");
    assert_eq!(idp.calls(), 6);
}

// SPEC A6: the cache is bounded by `[oauth2] cache_capacity` (one cache for every verified
// token, introspected or not): with room for
// 2 results, 40 tokens asked about twice in turn are (nearly all) introspected twice.
#[tokio::test]
async fn a6_cache_capacity_bounds_the_cache() {
    let (idp, endpoint) = start_idp().await;
    let text = format!("[oauth2]\ncache_capacity = 2\n{}", deployment_text(&endpoint, "", false));
    let server = start_app_with(&text).await;
    let tokens: Vec<String> = (0..40).map(|i| format!("bounded-token-{i:02}")).collect();
    for token in &tokens {
        idp.active(token, json!({"sub": "alex"}));
    }
    for round in 0..2 {
        for token in &tokens {
            assert_eq!(server.bearer("/api/me", token).await.caller()["name"], "alex", "round {round} {token}");
        }
    }
    let calls = idp.calls();
    assert!(calls >= 40 + 30, "[oauth2] cache_capacity = 2 held {} of 40 results ({calls} calls)", 80 - calls);
}

// ---------------------------------------------------------------------------------------
// F11: what counts as active, and JWTs are never introspected
// ---------------------------------------------------------------------------------------

// SPEC F11: `active` must be JSON `true`; a string, a number, null, an array, or no
// `active` at all is an inactive token (401), while the same answer with `true` passes.
#[tokio::test]
async fn f11_active_must_be_json_true() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    let cases = [
        ("active-string", json!("true")),
        ("active-one", json!(1)),
        ("active-null", Value::Null),
        ("active-array", json!([true])),
        ("active-object", json!({"value": true})),
        ("active-string-upper", json!("TRUE")),
    ];
    for (i, (token, active)) in cases.iter().enumerate() {
        idp.set(token, Answer::Json(json!({"active": active, "sub": "admin", "scope": "read"})));
        assert_invalid_token(&server.bearer("/api/read", token).await, token);
        assert_eq!(idp.calls(), i + 1, "{token}");
    }
    idp.set("no-active", Answer::Json(json!({"sub": "admin", "scope": "read"})));
    assert_invalid_token(&server.bearer("/api/read", "no-active").await, "no active member");
    idp.set("active-true", Answer::Json(json!({"active": true, "sub": "admin", "scope": "read", "aud": AUD})));
    assert_eq!(server.bearer("/api/read", "active-true").await.caller()["name"], "admin");
    assert_eq!(idp.calls(), cases.len() + 2);
}

// SPEC F11, A6: an `exp` in the past (or not a number) in an active answer is refused
// with 401 and not cached; the same answer with a future `exp` passes.
#[tokio::test]
async fn f11_expired_answer_is_invalid_token() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    idp.active("expired-answer", json!({"sub": "alex", "scope": "read", "exp": now() - 30}));
    assert_invalid_token(&server.bearer("/api/read", "expired-answer").await, "exp in the past");
    assert_invalid_token(&server.bearer("/api/read", "expired-answer").await, "exp in the past, again");
    assert_eq!(idp.calls(), 2, "a refused answer must not be cached as a success");
    idp.active("string-exp", json!({"sub": "alex", "scope": "read", "exp": (now() + 600).to_string()}));
    assert_invalid_token(&server.bearer("/api/read", "string-exp").await, "exp a string");
    idp.active("future-exp", json!({"sub": "alex", "scope": "read", "exp": now() + 600}));
    assert_eq!(server.bearer("/api/read", "future-exp").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 4);
}

// SPEC F11: a JWT (three parts) that fails local verification is never passed on to
// introspection, even when the endpoint would call it active; valid JWTs are verified
// locally, without a call. With an issuer configured and without one.
#[tokio::test]
async fn f11_jwts_are_never_introspected() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", true).await;
    let claims = |sub: &str, exp: u64| json!({"iss": ISS, "sub": sub, "scope": "read", "exp": exp});
    let forged = hs256(&claims("admin", now() + 600), b"an-attacker-secret-of-32-bytes-or-more!");
    let expired = hs256(&claims("admin", now() - 3600), HMAC_SECRET);
    let unknown_issuer = hs256(&json!({"iss": "https://evil.test", "sub": "admin", "exp": now() + 600}), HMAC_SECRET);
    let garbage = "eyJub3QiOiJqc29uIn0.bm90LWEtcGF5bG9hZA.c2ln".to_owned();
    let bad_chars = "not a jwt.but has.two dots".replace(' ', "+");
    for (what, token) in [
        ("forged signature", &forged),
        ("expired", &expired),
        ("unknown issuer", &unknown_issuer),
        ("garbage three parts", &garbage),
        ("three parts, not base64url", &bad_chars),
    ] {
        // The endpoint would vouch for it: it must never be asked.
        idp.active(token, json!({"sub": "admin", "scope": "read"}));
        assert_invalid_token(&server.bearer("/api/read", token).await, what);
    }
    assert_eq!(idp.calls(), 0, "a JWT was sent to introspection");

    let valid = hs256(&claims("alex", now() + 600), HMAC_SECRET);
    assert_eq!(server.bearer("/api/read", &valid).await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 0, "a valid JWT was introspected");

    // Introspection only, no issuer at all: three parts are still never sent on.
    let only = start_app(&endpoint, "", false).await;
    for token in [&valid, &garbage] {
        idp.active(token, json!({"sub": "admin", "scope": "read"}));
        assert_invalid_token(&only.bearer("/api/read", token).await, "JWT without issuers");
    }
    assert_eq!(idp.calls(), 0, "a JWT was sent to introspection");
    // The control: an opaque token on the same deployments is introspected.
    idp.active("opaque-control", json!({"sub": "alex", "scope": "read"}));
    assert_eq!(only.bearer("/api/read", "opaque-control").await.caller()["name"], "alex");
    assert_eq!(server.bearer("/api/read", "opaque-control").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 2);
}

// ---------------------------------------------------------------------------------------
// F17: the endpoint failing
// ---------------------------------------------------------------------------------------

// SPEC F17: a 200 whose body is not JSON (HTML, truncated JSON) -> 503 with Retry-After,
// never 200; once the endpoint answers properly the same token passes.
#[tokio::test]
async fn f17_non_json_answer_is_503_until_the_endpoint_recovers() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    let html = "<html><body>Login</body></html>".to_owned();
    idp.set("html-answer", Answer::Raw(200, "text/html", html));
    idp.set("truncated-answer", Answer::Raw(200, "application/json", r#"{"active": true, "sub": "ale"#.to_owned()));
    for token in ["html-answer", "truncated-answer"] {
        assert_unavailable(&server.bearer("/api/me", token).await, token);
        assert_unavailable(&server.bearer("/api/me", token).await, token);
    }
    assert_eq!(idp.calls(), 4, "a failed introspection must not be cached");

    idp.active("html-answer", json!({"sub": "alex"}));
    idp.active("truncated-answer", json!({"sub": "alex"}));
    for token in ["html-answer", "truncated-answer"] {
        assert_eq!(server.bearer("/api/me", token).await.caller()["name"], "alex", "{token} after recovery");
    }
    assert_eq!(idp.calls(), 6);
}

// SPEC F17: server errors (500 even with an "active" body, 503), a redirect (never
// followed) and an oversized answer -> 503, never 200; after recovery, 200.
#[tokio::test]
async fn f17_endpoint_errors_are_503() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    let active = json!({"active": true, "sub": "admin", "scope": "read"}).to_string();
    idp.set("err-500", Answer::Raw(500, "application/json", active.clone()));
    idp.set("err-503", Answer::Raw(503, "text/plain", "maintenance".to_owned()));
    idp.set("err-redirect", Answer::Redirect);
    for token in ["err-500", "err-503", "err-redirect"] {
        assert_unavailable(&server.bearer("/api/read", token).await, token);
    }
    assert_eq!(idp.calls(), 3);
    assert_eq!(idp.elsewhere.load(Ordering::SeqCst), 0, "a redirect from the endpoint was followed");

    // Larger than any real answer: refused without being believed.
    let padding = "x".repeat(200 * 1024);
    idp.set("huge", Answer::Json(json!({"active": true, "sub": "admin", "scope": "read", "pad": padding})));
    let reply = server.bearer("/api/read", "huge").await;
    assert_eq!(reply.status, 503, "oversized answer: {reply:?}");

    for token in ["err-500", "err-503", "err-redirect", "huge"] {
        idp.active(token, json!({"sub": "admin", "scope": "read"}));
        assert_eq!(server.bearer("/api/read", token).await.caller()["name"], "admin", "{token} after recovery");
    }
    assert_eq!(idp.calls(), 8);
}

// SPEC F17: the endpoint down (connection refused) -> 503 with Retry-After, quickly;
// once it listens again the same token passes.
#[tokio::test]
async fn f17_endpoint_down_is_503_until_it_comes_back() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let endpoint = format!("http://127.0.0.1:{port}/introspect");
    let server = start_app(&endpoint, "timeout_seconds = 2", false).await;
    for _ in 0..2 {
        let reply = server.bearer("/api/me", "while-down").await;
        assert_unavailable(&reply, "endpoint down");
        assert!(reply.elapsed < Duration::from_secs(3), "took {:?}", reply.elapsed);
    }

    let idp = Arc::new(Idp::default());
    idp.active("while-down", json!({"sub": "alex"}));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let app = idp_router(idp.clone());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    assert_eq!(server.bearer("/api/me", "while-down").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 1);
}

// SPEC F17: an endpoint slower than `timeout_seconds = 1` -> 503 within a few seconds,
// never 200 (even though it would eventually say active); when it is fast again, 200.
#[tokio::test]
async fn f17_slow_endpoint_times_out_with_503() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "timeout_seconds = 1", false).await;
    let answer = json!({"active": true, "sub": "alex", "scope": "read", "aud": AUD});
    idp.set("slow-token", Answer::Slow(Duration::from_secs(4), answer.clone()));
    let reply = server.bearer("/api/read", "slow-token").await;
    assert_unavailable(&reply, "slow endpoint");
    assert!(reply.elapsed >= Duration::from_millis(900), "503 before the time limit: {reply:?}");
    assert!(reply.elapsed < Duration::from_millis(3500), "the time limit was not applied: {reply:?}");
    assert_eq!(idp.calls(), 1);

    // Within the limit it is believed.
    idp.set("slow-token", Answer::Slow(Duration::from_millis(200), answer));
    assert_eq!(server.bearer("/api/read", "slow-token").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 2);
}

// ---------------------------------------------------------------------------------------
// C2: authorization of introspected callers
// ---------------------------------------------------------------------------------------

// SPEC C2: on a rule with only permissions an introspected caller is judged by its
// user's permissions from the user store: alex (identity view through a role) passes,
// bob (login only) and a user the store does not know get 403.
#[tokio::test]
async fn c2_introspected_users_get_permissions_from_the_store() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    // The answer carries no permissions of its own: they can only come from the store.
    idp.active("alex-view", json!({"sub": "alex", "scope": "openid"}));
    idp.active("alex-wso2", json!({"username": "alex@carbon.super", "scope": "openid"}));
    idp.active("bob-view", json!({"sub": "bob", "scope": "openid"}));
    idp.active("carol-view", json!({"sub": "carol", "scope": "openid"}));
    assert_eq!(server.bearer("/api/view", "alex-view").await.caller()["name"], "alex");
    assert_eq!(server.bearer("/api/view", "alex-wso2").await.caller()["name"], "alex");
    for (token, what) in [("bob-view", "bob lacks the permission"), ("carol-view", "no such user")] {
        let reply = server.bearer("/api/view", token).await;
        assert_eq!(reply.status, 403, "{what}: {reply:?}");
        assert!(!reply.challenges.iter().any(|c| c.contains("invalid_token")), "{what}: {reply:?}");
    }
    // Cached callers keep their permissions: the same answers again, no new calls.
    assert_eq!(server.bearer("/api/view", "alex-view").await.status, 200);
    assert_eq!(server.bearer("/api/view", "bob-view").await.status, 403);
    assert_eq!(idp.calls(), 4);
}

// SPEC C2, A7, F12: scopes come from the answer's `scope` field: holding `read` passes the
// scope rule whatever the user's permissions (bob); without it -> 403 `insufficient_scope`
// naming `read`, also for `read,write` (never split on commas) and `reader`.
#[tokio::test]
async fn c2_introspected_scopes_decide_scope_rules() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    idp.active("alex-read", json!({"sub": "alex", "scope": "openid read"}));
    idp.active("bob-read", json!({"sub": "bob", "scope": "read"}));
    assert_eq!(server.bearer("/api/read", "alex-read").await.caller()["name"], "alex");
    assert_eq!(server.bearer("/api/read", "bob-read").await.caller()["name"], "bob");

    idp.active("alex-openid", json!({"sub": "alex", "scope": "openid"}));
    idp.active("alex-no-scope", json!({"sub": "alex"}));
    idp.active("alex-commas", json!({"sub": "alex", "scope": "read,write"}));
    idp.active("alex-reader", json!({"sub": "alex", "scope": "reader READ"}));
    for token in ["alex-openid", "alex-no-scope", "alex-commas", "alex-reader"] {
        assert_insufficient_scope(&server.bearer("/api/read", token).await, "read", token);
    }
    // The same tokens authenticate: they only lack the scope.
    assert_eq!(server.bearer("/api/me", "alex-openid").await.caller()["name"], "alex");
    assert_eq!(idp.calls(), 6);
}

// SPEC A6: revocation invalidates the verified-token cache: after `forget_token`, the next
// request with that token asks the endpoint again and obeys its `inactive`.
#[tokio::test]
async fn a6_forgotten_token_is_introspected_again() {
    let (idp, endpoint) = start_idp().await;
    let deployment = Deployment::from_toml_str("deployment.toml", &deployment_text(&endpoint, "", false)).unwrap();
    let bearer = tower_secure::authn::BearerAuthenticator::from_config(&deployment, None).unwrap().unwrap();
    let layer = SecureLayer::builder().deployment(deployment).bearer(bearer.clone()).build().unwrap();
    let server =
        Server { base: common::serve(Router::new().fallback(echo).layer(layer)).await, client: common::client() };

    idp.active("revocable", json!({"sub": "alex"}));
    assert_eq!(server.bearer("/api/me", "revocable").await.status, 200);
    idp.set("revocable", Answer::Json(json!({"active": false})));
    assert_eq!(server.bearer("/api/me", "revocable").await.status, 200, "still cached before the revocation");
    assert_eq!(idp.calls(), 1);

    bearer.forget_token("revocable");
    let reply = server.bearer("/api/me", "revocable").await;
    assert_invalid_token(&reply, "a revoked token");
    assert_eq!(idp.calls(), 2, "the forgotten token was not introspected again");
}

// ---------------------------------------------------------------------------------------
// A15: answers are bound to this API's audience and a trusted issuer
// ---------------------------------------------------------------------------------------

// SPEC A15: an answer must name this API's audience in `aud` (a string, or an array that
// holds it); an answer for another API of the same server, without `aud`, or with a
// malformed `aud` is refused with 401. With a list of audiences, any one of them will do.
#[tokio::test]
async fn a15_answers_must_name_this_apis_audience() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    idp.active("aud-string", json!({"sub": "alex"}));
    idp.active("aud-array", json!({"sub": "alex", "aud": ["other-api", AUD]}));
    for token in ["aud-string", "aud-array"] {
        assert_eq!(server.bearer("/api/me", token).await.caller()["name"], "alex", "{token}");
    }
    for (token, aud) in [
        ("aud-other", json!("other-api")),
        ("aud-missing", Value::Null),
        ("aud-array-without", json!(["other-api", "more"])),
        ("aud-prefix", json!(format!("{AUD}-2"))),
        ("aud-number", json!(7)),
        ("aud-array-with-a-number", json!([AUD, 7])),
        ("aud-empty-array", json!([])),
    ] {
        idp.active(token, json!({"sub": "alex", "aud": aud}));
        assert_invalid_token(&server.bearer("/api/me", token).await, token);
    }

    let listed = start_app(&endpoint, "audience = [\"app-1\", \"app-2\"]", false).await;
    idp.active("for-app-2", json!({"sub": "alex", "aud": "app-2"}));
    assert_eq!(listed.bearer("/api/me", "for-app-2").await.caller()["name"], "alex");
    assert_invalid_token(&listed.bearer("/api/me", "aud-string").await, "the default audience is not listed");
}

// SPEC A15: an answer that carries `iss` must name a configured issuer: one of the
// `[[oauth2.issuer]]` tables, or exactly `[oauth2.introspection] issuer` when that is set;
// an answer without `iss` passes.
#[tokio::test]
async fn a15_answers_must_name_a_trusted_issuer() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", true).await;
    idp.active("iss-configured", json!({"sub": "alex", "iss": ISS}));
    idp.active("iss-absent", json!({"sub": "alex"}));
    for token in ["iss-configured", "iss-absent"] {
        assert_eq!(server.bearer("/api/me", token).await.caller()["name"], "alex", "{token}");
    }
    for (token, iss) in
        [("iss-other", json!("https://evil.test")), ("iss-slash", json!(format!("{ISS}/"))), ("iss-number", json!(7))]
    {
        idp.active(token, json!({"sub": "alex", "iss": iss}));
        assert_invalid_token(&server.bearer("/api/me", token).await, token);
    }

    let pinned = start_app(&endpoint, "issuer = \"https://as.example\"", true).await;
    idp.active("iss-pinned", json!({"sub": "alex", "iss": "https://as.example"}));
    assert_eq!(pinned.bearer("/api/me", "iss-pinned").await.caller()["name"], "alex");
    assert_invalid_token(&pinned.bearer("/api/me", "iss-configured").await, "another configured issuer");
    assert_eq!(pinned.bearer("/api/me", "iss-absent").await.caller()["name"], "alex");
}

// SPEC A15, F11: a JWT of an issuer with `introspect = true` is accepted only when the
// answer names that issuer's audience and the JWT's issuer, though the JWT itself is valid.
#[tokio::test]
async fn a15_introspected_jwts_are_bound_to_their_issuer() {
    let (idp, endpoint) = start_idp().await;
    let text = format!(
        r#"
[authentication]
realm = "{REALM}"

[oauth2.introspection]
endpoint = "{endpoint}"
client_id = "{CLIENT_ID}"
client_secret = "{CLIENT_SECRET}"
audience = "{AUD}"

[[oauth2.issuer]]
issuer = "{ISS}"
audience = "jwt-api"
introspect = true
[[oauth2.issuer.key]]
kid = "hs"
algorithm = "HS256"
secret_base64 = "{secret}"
"#,
        secret = STANDARD.encode(HMAC_SECRET)
    );
    let server = start_app_with(&text).await;
    let jwt = |sub: &str| hs256(&json!({"iss": ISS, "aud": "jwt-api", "sub": sub, "exp": now() + 600}), HMAC_SECRET);
    let (good, other_aud, other_iss, no_aud) = (jwt("u1"), jwt("u2"), jwt("u3"), jwt("u4"));
    idp.active(&good, json!({"sub": "u1", "aud": "jwt-api", "iss": ISS}));
    idp.active(&other_aud, json!({"sub": "u2", "aud": AUD, "iss": ISS}));
    idp.active(&other_iss, json!({"sub": "u3", "aud": "jwt-api", "iss": "https://as.example"}));
    idp.active(&no_aud, json!({"sub": "u4", "aud": null}));
    assert_eq!(server.bearer("/api/me", &good).await.caller()["name"], "opaque/u1");
    assert_invalid_token(&server.bearer("/api/me", &other_aud).await, "answer for the introspection default audience");
    assert_invalid_token(&server.bearer("/api/me", &other_iss).await, "answer naming another issuer");
    assert_invalid_token(&server.bearer("/api/me", &no_aud).await, "answer without aud");
    assert_eq!(idp.calls(), 4);
}

// SPEC F10, F18: an answer that names a member twice (`sub` twice, parsers disagree on
// which wins) is refused with 401 `invalid_token`, not read either way.
#[tokio::test]
async fn f10_answer_with_a_duplicated_member_is_refused() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "", false).await;
    let body = format!(r#"{{"active": true, "aud": "{AUD}", "sub": "bob", "scope": "read", "sub": "admin"}}"#);
    idp.set("two-subs", Answer::Raw(200, "application/json", body));
    let nested =
        format!(r#"{{"active": true, "aud": "{AUD}", "sub": "bob", "cnf": {{"x5t#S256": "a", "x5t#S256": "b"}}}}"#);
    idp.set("nested-twice", Answer::Raw(200, "application/json", nested));
    assert_invalid_token(&server.bearer("/api/me", "two-subs").await, "sub twice");
    assert_invalid_token(&server.bearer("/api/me", "nested-twice").await, "a nested member twice");
    idp.active("once", json!({"sub": "bob", "scope": "read"}));
    assert_eq!(server.bearer("/api/me", "once").await.caller()["name"], "bob");
}

// SPEC A13: with the default `subject_format` an answer's subject is opaque: kept whole (an
// `@` is no tenant), never looked up in the user store, so a rule with only permissions
// refuses it even when a user of that name exists; `username` still stands in for `sub`.
#[tokio::test]
async fn a13_answer_subjects_are_opaque_by_default() {
    let (idp, endpoint) = start_idp().await;
    let server = start_app(&endpoint, "subject_format = \"opaque\"", false).await;
    idp.active("email-sub", json!({"sub": "tina@example.com", "scope": "read"}));
    idp.active("alex-sub", json!({"sub": "alex"}));
    idp.active("username-only", json!({"username": "svc@clients"}));
    assert_eq!(server.bearer("/api/me", "email-sub").await.caller()["name"], "opaque/tina@example.com");
    assert_eq!(server.bearer("/api/read", "email-sub").await.caller()["name"], "opaque/tina@example.com");
    assert_eq!(server.bearer("/api/me", "username-only").await.caller()["name"], "opaque/svc@clients");
    // alex holds the view permission in the user store; an opaque `alex` is not that user.
    assert_eq!(server.bearer("/api/me", "alex-sub").await.caller()["name"], "opaque/alex");
    assert_eq!(server.bearer("/api/view", "alex-sub").await.status, 403);
}
