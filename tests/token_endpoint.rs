//! The built-in OAuth2 token server (`tower_secure::oauth2`) over real HTTP on 127.0.0.1:
//! the token endpoint and its three grants, client authentication, RFC 6749 section 5.2
//! errors, role-based scope validation with whitelist, default scope and `SYSTEM`, signed
//! JWT access tokens in every supported algorithm, key rotation, the JWKS used by a
//! separate app over HTTP, refresh-token rotation and replay detection, RFC 7662
//! introspection and RFC 7009 revocation (seen at once by the layer of the same process,
//! and through introspection by a separate app), and the discovery documents.
//!
//! SPEC D1 (endpoint, grants, client auth, tokens, errors), D2 (scope decisions), D3
//! (whitelist), D4 (`SYSTEM`), D5 (JWKS, introspection, revocation), D7 (clients and
//! scopes reload with the layer), D8 (`scope` always in the response).
//!
//! Every test builds its own token server (and app) on 127.0.0.1:0. Asymmetric keys are
//! generated once per test binary with the `openssl` CLI.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};
use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::identity::{InMemoryUserStore, QualifiedName, UserRecord, UserStore, UserStoreError};
use tower_secure::oauth2::{OAuthError, ScopeRequest, ScopeValidator, TokenServer, TokenServerBuilder};
use tower_secure::{Principal, Reloader, SecureLayer};

const REALM: &str = "token-tests";
const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";
const LOGIN: &str = "/permission/admin/login";
const ACCESS_SECONDS: u64 = 600;
const REFRESH_SECONDS: u64 = 3600;
const MAX_FORM_BYTES: usize = 1024;
const HMAC_SECRET: &[u8] = b"token-endpoint-tests-hmac-secret-0123456789";

/// A client id and its secret.
type Client = (&'static str, &'static str);

/// All grants, no roles.
const WEB: Client = ("web-app", "web-secret");
/// All grants, no roles: a second client, for "another client's token".
const OTHER: Client = ("other-app", "other-secret");
/// Only the password grant (so no refresh tokens either).
const PW_ONLY: Client = ("pw-only", "pw-secret");
/// Client credentials only, with the `identity_viewer` role.
const REPORTS: Client = ("reports-job", "reports-secret");
/// Client credentials only, with the `admin` role.
const OPS: Client = ("ops-job", "ops-secret");
/// Client credentials only, no roles, and named like the user `alex`.
const ALEX_CLIENT: Client = ("alex", "alex-client-secret");
/// Disabled.
const DISABLED: Client = ("disabled-app", "disabled-secret");
/// A secret with characters that RFC 6749 section 2.3.1 form-encodes before Basic.
const ODD: Client = ("odd-secret", "a+b c:%é&=");
/// The separate resource app's client for introspection.
const RESOURCE: Client = ("resource-api", "resource-secret");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------
// Users, clients, keys and the deployment
// ---------------------------------------------------------------------------------------

/// `common::users_toml()` (alex, bob, admin, SECONDARY/sam, tina@example.com, dave) plus:
/// nora (no roles), olga (`operator`, a role without permissions), pete (`protected`:
/// `/permission/protected/x`), and the clients above.
fn users_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let h = common::cheap_hash;
        let client = |(id, secret): Client, extra: &str| {
            format!("\n[[client]]\nid = \"{id}\"\nsecret = \"{}\"\n{extra}\n", h(secret))
        };
        let mut text = common::users_toml();
        text.push_str(&format!(
            r#"
[[role]]
name = "protected"
permissions = ["/permission/protected/x"]

[[role]]
name = "operator"
permissions = []

[[user]]
name = "nora"
password = "{nora}"

[[user]]
name = "olga"
password = "{olga}"
roles = ["operator"]

[[user]]
name = "pete"
password = "{pete}"
roles = ["protected"]
"#,
            nora = h("nora123"),
            olga = h("olga123"),
            pete = h("pete123"),
        ));
        text.push_str(&client(WEB, ""));
        text.push_str(&client(OTHER, ""));
        text.push_str(&client(PW_ONLY, "grant_types = [\"password\"]"));
        text.push_str(&client(REPORTS, "roles = [\"identity_viewer\"]\ngrant_types = [\"client_credentials\"]"));
        text.push_str(&client(OPS, "roles = [\"admin\"]\ngrant_types = [\"client_credentials\"]"));
        text.push_str(&client(ALEX_CLIENT, "grant_types = [\"client_credentials\"]"));
        text.push_str(&client(DISABLED, "disabled = true"));
        text.push_str(&client(ODD, "grant_types = [\"client_credentials\"]"));
        text.push_str(&client(RESOURCE, "grant_types = [\"client_credentials\"]"));
        text
    })
}

fn users() -> InMemoryUserStore {
    load_users("users.toml", users_text()).unwrap()
}

/// The users file with alex's roles line replaced.
fn users_with_alex(roles_line: &str) -> InMemoryUserStore {
    let original = "roles = [\"identity_viewer\", \"everyone\"]";
    assert_eq!(users_text().matches(original).count(), 1, "alex's roles line must be unique");
    load_users("users.toml", &users_text().replace(original, roles_line)).unwrap()
}

/// PKCS#8 private keys, generated once per test binary.
fn key_dir() -> &'static std::path::Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        common::openssl_genpkeys(
            dir.path(),
            &[("rsa", common::RSA_2048), ("ec", common::EC_P256), ("ec_old", common::EC_P256), ("ed", common::ED25519)],
        );
        dir
    })
    .path()
}

/// A `[[oauth2_server.key]]` table for a PEM file of [`key_dir`].
fn pem_key(kid: &str, algorithm: &str, file: &str) -> String {
    let path = key_dir().join(format!("{file}.pem"));
    format!("[[oauth2_server.key]]\nkid = \"{kid}\"\nalgorithm = \"{algorithm}\"\npem_file = '{}'\n", path.display())
}

/// A `[[oauth2_server.key]]` HS256 table.
fn hmac_key(kid: &str, secret: &[u8]) -> String {
    format!(
        "[[oauth2_server.key]]\nkid = \"{kid}\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{}\"\n",
        STANDARD.encode(secret)
    )
}

/// How a test's token server differs from the standard one.
#[derive(Default)]
struct Opts {
    /// `iss`; default the server's own base URL.
    issuer: Option<String>,
    /// `[[oauth2_server.key]]` tables; default one HS256 key `hs-1`.
    keys: Option<String>,
    /// More keys of `[oauth2_server]` (`audience = ...`).
    server_extra: String,
    /// More tables (`[scope_validation]`, ...).
    extra: String,
}

/// The deployment: Basic settings that never throttle the tests, the token server, three
/// rules and the scope definitions of SPEC D2-D4.
fn deployment_toml(issuer: &str, opts: &Opts) -> String {
    let keys = opts.keys.clone().unwrap_or_else(|| hmac_key("hs-1", HMAC_SECRET));
    format!(
        r#"
[authentication]
realm = "{REALM}"

[authentication.basic]
hashes_per_second = 1000
max_concurrent_hashes = 2

[oauth2_server]
issuer = "{issuer}"
access_token_seconds = {ACCESS_SECONDS}
refresh_token_seconds = {REFRESH_SECONDS}
max_form_bytes = {MAX_FORM_BYTES}
{server_extra}

{keys}

[[resource.access_control]]
context = "/api/view"
permissions = ["{VIEW}"]

[[resource.access_control]]
context = "/api/scoped"
scope = "identity_view"

[[resource.access_control]]
context = "/api/me"

[[scope]]
name = "identity_view"
permissions = ["{VIEW}"]

[[scope]]
name = "admin_all"
permissions = ["/permission/admin"]

[[scope]]
name = "login"
permissions = ["{LOGIN}"]

[[scope]]
name = "protected_x"
permissions = ["/permission/protected/x"]

[[scope]]
name = "ops"
roles = ["admin", "operator"]

[[scope]]
name = "free"

[[scope]]
name = "view_and_login"
permissions = ["{VIEW}", "{LOGIN}"]

[[scope]]
name = "view_and_admin_role"
permissions = ["{VIEW}"]
roles = ["admin"]

{extra}
"#,
        server_extra = opts.server_extra,
        extra = opts.extra,
    )
}

// ---------------------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------------------

async fn me(caller: Principal) -> Json<Value> {
    Json(json!({
        "user": caller.name().to_string(),
        "client_id": caller.client_id(),
        "scopes": caller.scopes(),
        "authenticated_by": caller.authenticated_by(),
    }))
}

fn api() -> Router {
    Router::new()
        .route("/api/me", get(me))
        .route("/api/view", get(|| async { "view" }))
        .route("/api/scoped", get(|| async { "scoped" }))
}

async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    (listener, base)
}

fn spawn_router(listener: tokio::net::TcpListener, router: Router) {
    tokio::spawn(async move {
        axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
}

/// A running app: the API and the token server's router, under a `SecureLayer` that trusts
/// the token server.
struct App {
    base: String,
    issuer: String,
    tokens: TokenServer,
    /// The layer's reloader, which reaches the token server too (SPEC D7).
    reloader: Reloader,
    http: reqwest::Client,
}

/// The standard app with the users file's store.
async fn spawn_app(opts: Opts) -> App {
    app_with(opts, |builder| builder.user_store(users())).await
}

/// An app whose token-server builder (already given the deployment and the clients) is
/// finished by `customize` (user store, scope validator).
async fn app_with(opts: Opts, customize: impl FnOnce(TokenServerBuilder) -> TokenServerBuilder) -> App {
    let (listener, base) = listen().await;
    let issuer = opts.issuer.clone().unwrap_or_else(|| base.clone());
    let deployment = Deployment::from_toml_str("deployment.toml", &deployment_toml(&issuer, &opts)).unwrap();
    let clients = load_clients("users.toml", users_text()).unwrap();
    let tokens = customize(TokenServer::builder().deployment(&deployment).clients(clients)).build().unwrap();
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    let reloader = layer.reloader();
    // The token router under the layer, which lets exactly its paths through.
    spawn_router(listener, api().merge(tokens.router()).layer(layer));
    App { base, issuer, tokens, reloader, http: common::client() }
}

/// A separate resource app (its own layer, no token server) with this deployment text;
/// `/api/me` needs any caller, `/api/scoped` the `identity_view` scope.
async fn resource_app(deployment_text: &str) -> String {
    let (listener, base) = listen().await;
    let deployment = Deployment::from_toml_str("resource.toml", deployment_text).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).build().unwrap();
    spawn_router(listener, api().layer(layer));
    base
}

/// One HTTP answer, read whole.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        Self { status, headers, body }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// `Basic` with id and secret form-urlencoded first (RFC 6749 section 2.3.1).
fn basic((id, secret): Client) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!("Basic {}", STANDARD.encode(format!("{}:{}", encode(id), encode(secret))))
}

impl App {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_form(&self, path: &str, authorization: Option<&str>, form: &[(&str, &str)]) -> Reply {
        let mut request = self.http.post(self.url(path)).form(form);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    /// A raw body with this content type (or none), authenticated as `client`.
    async fn post_raw(&self, path: &str, client: Client, content_type: Option<&str>, body: String) -> Reply {
        let mut request = self.http.post(self.url(path)).header(AUTHORIZATION, basic(client)).body(body);
        if let Some(value) = content_type {
            request = request.header(CONTENT_TYPE, value);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    async fn token_request(&self, client: Client, form: &[(&str, &str)]) -> Reply {
        self.post_form("/oauth2/token", Some(&basic(client)), form).await
    }

    async fn password_reply(&self, client: Client, user: &str, password: &str, scope: &str) -> Reply {
        let mut form = vec![("grant_type", "password"), ("username", user), ("password", password)];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        self.token_request(client, &form).await
    }

    /// A successful password grant's response.
    async fn password(&self, client: Client, user: &str, password: &str, scope: &str) -> Value {
        let reply = self.password_reply(client, user, password, scope).await;
        assert_eq!(reply.status, 200, "password grant for {user}: {}", reply.body);
        assert_token_response(&reply)
    }

    /// A successful client-credentials grant's response.
    async fn client_credentials(&self, client: Client, scope: &str) -> Value {
        let mut form = vec![("grant_type", "client_credentials")];
        if !scope.is_empty() {
            form.push(("scope", scope));
        }
        let reply = self.token_request(client, &form).await;
        assert_eq!(reply.status, 200, "client credentials for {}: {}", client.0, reply.body);
        assert_token_response(&reply)
    }

    async fn refresh(&self, client: Client, refresh_token: &str, scope: Option<&str>) -> Reply {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.token_request(client, &form).await
    }

    /// The scope granted to `user` through `web-app`, checked against the token's claim.
    async fn granted(&self, user: &str, password: &str, scope: &str) -> Option<String> {
        let body = self.password(WEB, user, password, scope).await;
        scope_of(&body)
    }

    async fn get(&self, path: &str, token: &str) -> u16 {
        self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap().status().as_u16()
    }

    async fn me(&self, token: &str) -> Value {
        let response = self.http.get(self.url("/api/me")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn introspect(&self, client: Client, token: &str) -> Value {
        let reply = self.post_form("/oauth2/introspect", Some(&basic(client)), &[("token", token)]).await;
        assert_eq!(reply.status, 200, "introspection: {}", reply.body);
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        reply.json()
    }

    async fn revoke(&self, client: Client, token: &str) -> Reply {
        self.post_form("/oauth2/revoke", Some(&basic(client)), &[("token", token)]).await
    }
}

/// A token response (RFC 6749 section 5.1): no-store, JSON, the fields and their types;
/// `scope` is always there (SPEC D8) and agrees with the access token's `scope` claim,
/// which is left out when nothing was granted.
fn assert_token_response(reply: &Reply) -> Value {
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], ACCESS_SECONDS);
    let (header, claims) = decode(body["access_token"].as_str().unwrap());
    assert_eq!(header["typ"], "at+jwt");
    assert!(header["kid"].is_string());
    let scope = body["scope"].as_str().unwrap_or_else(|| panic!("a token response always has `scope`: {body}"));
    match scope {
        "" => assert!(claims.get("scope").is_none(), "an empty grant has no scope claim: {claims}"),
        _ => assert_eq!(claims["scope"], scope, "scope claim = response scope"),
    }
    assert!(!scope.split(' ').any(|s| s == "SYSTEM") && !scope.contains("  ") && scope.trim() == scope, "{scope:?}");
    if let Some(refresh) = body.get("refresh_token") {
        assert!(refresh.as_str().unwrap().len() >= 32);
    }
    body
}

/// The granted scope; `None` when nothing was granted (`scope` is then "", SPEC D8).
fn scope_of(body: &Value) -> Option<String> {
    let scope = body["scope"].as_str().unwrap_or_else(|| panic!("a token response always has `scope`: {body}"));
    (!scope.is_empty()).then(|| scope.to_owned())
}

fn access(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_owned()
}

fn refresh_token(body: &Value) -> String {
    body["refresh_token"].as_str().expect("a refresh token").to_owned()
}

/// A JWT's header and claims, without verification.
fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWS compact serialization");
    let part = |p: &str| serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (part(parts[0]), part(parts[1]))
}

/// An RFC 6749 section 5.2 error: status, code, a fixed description, no-store, and a body
/// of exactly `error` and `error_description` that carries nothing from the request.
fn assert_error(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"), "{}", reply.body);
    assert!(reply.header("content-type").unwrap().starts_with("application/json"));
    let body = reply.json();
    let object = body.as_object().unwrap();
    assert_eq!(object.len(), 2, "only error and error_description: {body}");
    assert_eq!(body["error"], code, "{body}");
    assert!(body["error_description"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(!reply.body.contains("ECHO"), "the error echoes request input: {}", reply.body);
    if code == "invalid_client" {
        let challenge = reply.header("www-authenticate").expect("invalid_client carries a Basic challenge");
        assert!(challenge.starts_with(&format!("Basic realm=\"{REALM}\"")), "{challenge}");
    } else {
        assert!(reply.header("www-authenticate").is_none());
    }
}

// ---------------------------------------------------------------------------------------
// Fault injection: a user store that can fail or change, a failing scope validator
// ---------------------------------------------------------------------------------------

/// A user store whose content can be swapped; `None` fails every look-up.
#[derive(Clone)]
struct SwitchStore {
    current: Arc<Mutex<Option<InMemoryUserStore>>>,
    reference: String,
}

impl SwitchStore {
    fn new(store: Option<InMemoryUserStore>) -> Self {
        Self { current: Arc::new(Mutex::new(store)), reference: common::cheap_hash("reference") }
    }

    fn set(&self, store: Option<InMemoryUserStore>) {
        *self.current.lock().unwrap() = store;
    }
}

#[async_trait]
impl UserStore for SwitchStore {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        let store = self.current.lock().unwrap().clone();
        match store {
            Some(store) => store.find_user(name).await,
            None => Err(UserStoreError("injected outage".to_owned())),
        }
    }

    fn reference_password_hash(&self) -> Option<String> {
        Some(self.reference.clone())
    }
}

struct BrokenValidator;

#[async_trait]
impl ScopeValidator for BrokenValidator {
    async fn validate(&self, _request: &ScopeRequest<'_>) -> Result<Vec<String>, OAuthError> {
        Err(OAuthError::server_error("scope backend unreachable"))
    }
}

// ---------------------------------------------------------------------------------------
// D1: tokens
// ---------------------------------------------------------------------------------------

// SPEC D1: the password grant issues a signed RFC 9068 access token (typ at+jwt, kid) with
// iss, sub, aud (default: the client id), exp - iat = access_token_seconds, a unique jti,
// client_id and scope, plus a refresh token; the layer of the same process accepts it.
#[tokio::test]
async fn password_grant_issues_an_at_jwt_with_its_claims() {
    let app = spawn_app(Opts::default()).await;
    let body = app.password(WEB, "alex", "alex123", "openid identity_view").await;
    assert_eq!(scope_of(&body).as_deref(), Some("openid identity_view"));
    let token = access(&body);
    let (header, claims) = decode(&token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], "hs-1");
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["iss"], app.issuer.as_str());
    assert_eq!(app.tokens.issuer(), app.issuer);
    assert_eq!(claims["sub"], "alex");
    assert_eq!(claims["aud"], "web-app");
    assert_eq!(claims["client_id"], "web-app");
    assert_eq!(claims["scope"], "openid identity_view");
    let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
    assert_eq!(exp - iat, ACCESS_SECONDS);
    assert!(iat.abs_diff(now()) <= 5, "iat is now");
    assert!(!claims["jti"].as_str().unwrap().is_empty());
    assert!(body["refresh_token"].is_string());

    let caller = app.me(&token).await;
    assert_eq!(caller["user"], "alex");
    assert_eq!(caller["client_id"], "web-app");
    assert_eq!(caller["authenticated_by"], "oauth2");
    assert_eq!(caller["scopes"], json!(["identity_view", "openid"]));
    assert_eq!(app.get("/api/scoped", &token).await, 200, "token carries identity_view");
    assert_eq!(app.get("/api/view", &token).await, 200, "alex's permissions from the store");

    // jti and refresh tokens are unique per issue.
    let mut jtis = HashSet::new();
    let mut refresh_tokens = HashSet::new();
    for _ in 0..5 {
        let body = app.password(WEB, "alex", "alex123", "openid").await;
        assert!(jtis.insert(decode(&access(&body)).1["jti"].as_str().unwrap().to_owned()));
        assert!(refresh_tokens.insert(refresh_token(&body)));
    }
    assert!(!jtis.contains(claims["jti"].as_str().unwrap()));

    // sub is the user's qualified name, canonical.
    let sam = app.password(WEB, "secondary/sam", "sam123", "").await;
    assert_eq!(decode(&access(&sam)).1["sub"], "SECONDARY/sam");
    let tina = app.password(WEB, "tina@example.com", "tina123", "").await;
    assert_eq!(decode(&access(&tina)).1["sub"], "tina@example.com");
}

// SPEC D1: a configured audience is the `aud` of every token, whatever the client.
#[tokio::test]
async fn configured_audience_is_the_aud() {
    let app = spawn_app(Opts { server_extra: "audience = \"my-api\"".into(), ..Opts::default() }).await;
    let user = app.password(WEB, "alex", "alex123", "").await;
    assert_eq!(decode(&access(&user)).1["aud"], "my-api");
    let client = app.client_credentials(REPORTS, "").await;
    assert_eq!(decode(&access(&client)).1["aud"], "my-api");
    assert_eq!(app.me(&access(&client)).await["user"], "reports-job");
}

/// SPEC D1, D5: a server signing with `algorithm` issues tokens with that `alg` and kid
/// that its layer accepts and a tampered copy it refuses; the JWKS holds the public key
/// (for asymmetric algorithms), which verifies the token independently.
async fn check_algorithm(algorithm: &str, keys: String, kty: Option<&str>) {
    let app = spawn_app(Opts { keys: Some(keys), ..Opts::default() }).await;
    let body = app.password(WEB, "alex", "alex123", "identity_view").await;
    let token = access(&body);
    let (header, _) = decode(&token);
    assert_eq!(header["alg"], algorithm);
    assert_eq!(header["kid"], "k1");
    assert_eq!(app.get("/api/scoped", &token).await, 200, "{algorithm}");
    let (message, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    assert_eq!(app.get("/api/scoped", &format!("{message}.{flipped}{}", &signature[1..])).await, 401);

    let jwks: Value = app.http.get(app.url("/oauth2/jwks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(&jwks, app.tokens.jwks());
    let keys = jwks["keys"].as_array().unwrap();
    match kty {
        None => assert!(keys.is_empty(), "HMAC keys are never published: {jwks}"),
        Some(kty) => {
            assert_eq!(keys.len(), 1, "{jwks}");
            let jwk = &keys[0];
            assert_eq!(jwk["kty"], kty);
            assert_eq!(jwk["kid"], "k1");
            assert_eq!(jwk["alg"], algorithm);
            assert_eq!(jwk["use"], "sig");
            assert_public_only(jwk);
            let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).unwrap();
            let key = jsonwebtoken::DecodingKey::from_jwk(&parsed).unwrap();
            let mut validation = jsonwebtoken::Validation::new(algorithm.parse().unwrap());
            validation.set_audience(&["web-app"]);
            validation.set_issuer(&[&app.issuer]);
            let verified = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
            assert_eq!(verified.claims["sub"], "alex");
        }
    }
}

fn assert_public_only(jwk: &Value) {
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(jwk.get(private).is_none(), "the JWKS leaks `{private}`: {jwk}");
    }
}

// SPEC D1, D5
#[tokio::test]
async fn rs256_tokens_are_accepted() {
    check_algorithm("RS256", pem_key("k1", "RS256", "rsa"), Some("RSA")).await;
}

// SPEC D1, D5
#[tokio::test]
async fn es256_tokens_are_accepted() {
    check_algorithm("ES256", pem_key("k1", "ES256", "ec"), Some("EC")).await;
}

// SPEC D1, D5
#[tokio::test]
async fn eddsa_tokens_are_accepted() {
    check_algorithm("EdDSA", pem_key("k1", "EdDSA", "ed"), Some("OKP")).await;
}

// SPEC D1, D5
#[tokio::test]
async fn hs256_tokens_are_accepted_and_never_published() {
    check_algorithm("HS256", hmac_key("k1", HMAC_SECRET), None).await;
}

// SPEC D5: every public key is published in configuration order, none with private
// parts, no HMAC key; the first key signs. (EdDSA: see `eddsa_tokens_are_accepted`.)
#[tokio::test]
async fn jwks_publishes_public_keys_only() {
    let keys =
        [pem_key("ec-1", "ES256", "ec"), hmac_key("hs-1", HMAC_SECRET), pem_key("rs-1", "RS256", "rsa")].concat();
    let app = spawn_app(Opts { keys: Some(keys), ..Opts::default() }).await;
    let response = app.http.get(app.url("/oauth2/jwks")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let jwks: Value = response.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["ec-1", "rs-1"]);
    let ktys: Vec<&str> = keys.iter().map(|k| k["kty"].as_str().unwrap()).collect();
    assert_eq!(ktys, ["EC", "RSA"]);
    for jwk in keys {
        assert_public_only(jwk);
        assert_eq!(jwk["use"], "sig");
    }
    assert!(!jwks.to_string().contains(&STANDARD.encode(HMAC_SECRET)));
    assert!(!jwks.to_string().contains(&URL_SAFE_NO_PAD.encode(HMAC_SECRET)));
    let token = access(&app.password(WEB, "bob", "bob123", "").await);
    assert_eq!(decode(&token).0["kid"], "ec-1", "the first key signs");
    assert_eq!(app.get("/api/me", &token).await, 200);
}

// SPEC D1, D5: key rotation. Server A lists only the old key; server B lists the new key
// first and keeps the old one. B signs with the new key, publishes both, and its layer
// (and a separate app reading B's JWKS over HTTP) still accepts A's old-key tokens.
#[tokio::test]
async fn key_rotation_keeps_old_tokens_valid() {
    let issuer = Some("https://rotation.test".to_owned());
    let old = pem_key("ec-old", "ES256", "ec_old");
    let new = pem_key("ec-new", "ES256", "ec");
    let a = spawn_app(Opts { issuer: issuer.clone(), keys: Some(old.clone()), ..Opts::default() }).await;
    let b = spawn_app(Opts { issuer, keys: Some(format!("{new}{old}")), ..Opts::default() }).await;

    let old_token = access(&a.password(WEB, "alex", "alex123", "identity_view").await);
    let new_token = access(&b.password(WEB, "alex", "alex123", "identity_view").await);
    assert_eq!(decode(&old_token).0["kid"], "ec-old");
    assert_eq!(decode(&new_token).0["kid"], "ec-new");
    assert_eq!(b.get("/api/scoped", &old_token).await, 200, "old-key token accepted after rotation");
    assert_eq!(b.get("/api/scoped", &new_token).await, 200);
    assert_eq!(a.get("/api/scoped", &new_token).await, 401, "A does not know the new key");

    let jwks: Value = b.http.get(b.url("/oauth2/jwks")).send().await.unwrap().json().await.unwrap();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(kids, ["ec-new", "ec-old"]);

    let resource = resource_app(&format!(
        "[[oauth2.issuer]]\nissuer = \"https://rotation.test\"\njwks_uri = \"{}/oauth2/jwks\"\n",
        b.base
    ))
    .await;
    let http = common::client();
    for token in [&old_token, &new_token] {
        let status = http.get(format!("{resource}/api/me")).bearer_auth(token).send().await.unwrap().status();
        assert_eq!(status, 200);
    }
}

// SPEC D5: a separate app whose issuer is configured with the token server's jwks_uri
// validates its tokens over real HTTP (typ, audience, scope), and refuses tokens signed
// by another key.
#[tokio::test]
async fn separate_app_validates_tokens_through_the_jwks_uri() {
    let server = spawn_app(Opts { keys: Some(pem_key("rs-1", "RS256", "rsa")), ..Opts::default() }).await;
    let resource = resource_app(&format!(
        r#"
[oauth2]
require_typ = "at+jwt"

[[oauth2.issuer]]
issuer = "{issuer}"
audience = "web-app"
jwks_uri = "{base}/oauth2/jwks"
subject_format = "qualified"

[[resource.access_control]]
context = "/api/scoped"
scope = "identity_view"
"#,
        issuer = server.issuer,
        base = server.base,
    ))
    .await;
    let http = common::client();
    let get = |path: &str, token: String| {
        let request = http.get(format!("{resource}{path}")).bearer_auth(token);
        async move { request.send().await.unwrap() }
    };

    let alex = access(&server.password(WEB, "alex", "alex123", "identity_view").await);
    let response = get("/api/me", alex.clone()).await;
    assert_eq!(response.status(), 200);
    let caller: Value = response.json().await.unwrap();
    assert_eq!(caller["user"], "alex");
    assert_eq!(caller["client_id"], "web-app");
    assert_eq!(get("/api/scoped", alex).await.status(), 200);

    let bob = access(&server.password(WEB, "bob", "bob123", "identity_view").await);
    assert_eq!(get("/api/me", bob.clone()).await.status(), 200);
    assert_eq!(get("/api/scoped", bob).await.status(), 403, "bob's token lacks identity_view");

    let other_client = access(&server.password(OTHER, "alex", "alex123", "identity_view").await);
    assert_eq!(get("/api/me", other_client).await.status(), 401, "aud is other-app");

    // Same issuer name, another key: refused.
    let forger = spawn_app(Opts {
        issuer: Some(server.issuer.clone()),
        keys: Some(pem_key("rs-1", "ES256", "ec")),
        ..Opts::default()
    })
    .await;
    let forged = access(&forger.password(WEB, "alex", "alex123", "identity_view").await);
    assert_eq!(get("/api/me", forged).await.status(), 401);
}

// SPEC D5: a separate app with `introspect = true` asks the token server's introspection
// endpoint (as a registered client) and so refuses a revoked token: at once when it was
// never used there, and within cache_max_seconds when it was.
#[tokio::test]
async fn separate_app_with_introspection_refuses_revoked_tokens() {
    let server = spawn_app(Opts { keys: Some(pem_key("ec-1", "ES256", "ec")), ..Opts::default() }).await;
    let resource = resource_app(&format!(
        r#"
[[oauth2.issuer]]
issuer = "{issuer}"
jwks_uri = "{base}/oauth2/jwks"
subject_format = "qualified"
introspect = true

[oauth2.introspection]
endpoint = "{base}/oauth2/introspect"
client_id = "{id}"
client_secret = "{secret}"
audience = "{audience}"
cache_max_seconds = 1
"#,
        issuer = server.issuer,
        base = server.base,
        id = RESOURCE.0,
        secret = RESOURCE.1,
        // The token server's `aud` is the client id when it has no audience of its own.
        audience = WEB.0,
    ))
    .await;
    let http = common::client();
    let status = |token: &str| {
        let request = http.get(format!("{resource}/api/me")).bearer_auth(token);
        async move { request.send().await.unwrap().status().as_u16() }
    };

    let kept = access(&server.password(WEB, "alex", "alex123", "").await);
    let used = access(&server.password(WEB, "alex", "alex123", "").await);
    let unused = access(&server.password(WEB, "alex", "alex123", "").await);
    assert_eq!(status(&kept).await, 200);
    assert_eq!(status(&used).await, 200);

    assert_eq!(server.revoke(WEB, &unused).await.status, 200);
    assert_eq!(status(&unused).await, 401, "revoked before its first use there");

    assert_eq!(server.revoke(WEB, &used).await.status, 200);
    let revoked_at = Instant::now();
    loop {
        match status(&used).await {
            401 => break,
            200 => assert!(revoked_at.elapsed() < Duration::from_secs(3), "revocation not seen within the cache time"),
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status(&kept).await, 200, "an unrevoked token stays valid");
}

// ---------------------------------------------------------------------------------------
// D2-D4: scopes
// ---------------------------------------------------------------------------------------

// SPEC D2, D3: whitelisted scopes are granted to anyone, in request order.
#[tokio::test]
async fn whitelisted_scopes_are_granted() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(app.granted("bob", "bob123", "device_kitchen openid").await.as_deref(), Some("device_kitchen openid"));
    assert_eq!(app.granted("alex", "alex123", "openid").await.as_deref(), Some("openid"));
}

// SPEC D2: a permission-bound scope is granted iff the user holds every bound permission;
// the permission tree applies (/permission/admin covers everything below it).
#[tokio::test]
async fn permission_bound_scopes_need_every_permission() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(app.granted("alex", "alex123", "identity_view").await.as_deref(), Some("identity_view"));
    assert_eq!(app.granted("bob", "bob123", "identity_view").await, None, "bob lacks the permission");
    assert_eq!(app.granted("admin", "admin", "identity_view").await.as_deref(), Some("identity_view"), "tree");
    assert_eq!(app.granted("alex", "alex123", "view_and_login").await.as_deref(), Some("view_and_login"));
    assert_eq!(app.granted("secondary/sam", "sam123", "view_and_login").await, None, "sam has only one");
    assert_eq!(app.granted("alex", "alex123", "admin_all").await, None);
    assert_eq!(app.granted("admin", "admin", "admin_all").await.as_deref(), Some("admin_all"));
}

// SPEC D2: a role-bound scope is granted iff the user holds any of the roles (with
// permissions too, both must hold).
#[tokio::test]
async fn role_bound_scopes_need_any_role() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(app.granted("admin", "admin", "ops").await.as_deref(), Some("ops"));
    assert_eq!(app.granted("olga", "olga123", "ops").await.as_deref(), Some("ops"), "operator is bound too");
    assert_eq!(app.granted("alex", "alex123", "ops").await, None);
    assert_eq!(app.granted("admin", "admin", "view_and_admin_role").await.as_deref(), Some("view_and_admin_role"));
    assert_eq!(app.granted("alex", "alex123", "view_and_admin_role").await, None, "permission but not the role");
    assert_eq!(app.granted("olga", "olga123", "view_and_admin_role").await, None);
}

// SPEC D2: a defined scope bound to neither permissions nor roles is granted to anyone.
#[tokio::test]
async fn unbound_scope_is_granted_to_anyone() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(app.granted("nora", "nora123", "free").await.as_deref(), Some("free"));
    assert_eq!(app.granted("bob", "bob123", "free").await.as_deref(), Some("free"));
}

// SPEC D2, D8: an undefined scope, or one the user may not have, is left out, never an
// error; when nothing is granted (and no default scope is configured) the response says so
// with an empty `scope` (absent would mean "what you asked for", RFC 6749 section 5.1),
// and the token has no scope claim.
#[tokio::test]
async fn scopes_not_granted_are_left_out() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(app.granted("alex", "alex123", "nowhere identity_view").await.as_deref(), Some("identity_view"));
    let body = app.password(WEB, "bob", "bob123", "nowhere identity_view admin_all").await;
    assert_eq!(body["scope"], "", "{body}");
    let token = access(&body);
    assert!(decode(&token).1.get("scope").is_none());
    assert_eq!(app.me(&token).await["scopes"], json!([]));
    assert_eq!(app.get("/api/scoped", &token).await, 403);
    assert_eq!(app.password(WEB, "bob", "bob123", "").await["scope"], "");
}

// SPEC D8: `scope` is in every token response of every grant, empty when nothing was
// granted: password, client_credentials and refresh_token alike.
#[tokio::test]
async fn d8_scope_is_always_in_the_token_response() {
    let app = spawn_app(Opts::default()).await;
    let nothing = app.password_reply(WEB, "bob", "bob123", "identity_view").await;
    assert_eq!(nothing.status, 200, "{}", nothing.body);
    let body: Value = serde_json::from_str(&nothing.body).unwrap();
    assert_eq!(body.get("scope"), Some(&json!("")), "the raw body: {}", nothing.body);
    let client = app.client_credentials(REPORTS, "admin_all").await;
    assert_eq!(client.get("scope"), Some(&json!("")), "{client}");
    let refreshed = app.refresh(WEB, &refresh_token(&body), None).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(assert_token_response(&refreshed).get("scope"), Some(&json!("")));
    let granted = app.password(WEB, "alex", "alex123", "identity_view").await;
    assert_eq!(granted.get("scope"), Some(&json!("identity_view")));
}

// SPEC D2: each requested scope is judged in order; the response lists what was granted
// in request order, without duplicates.
#[tokio::test]
async fn granted_scopes_keep_request_order() {
    let app = spawn_app(Opts::default()).await;
    let requested = "openid identity_view admin_all ops free nowhere login view_and_login openid protected_x";
    assert_eq!(
        app.granted("alex", "alex123", requested).await.as_deref(),
        Some("openid identity_view free login view_and_login")
    );
    assert_eq!(
        app.granted("admin", "admin", requested).await.as_deref(),
        Some("openid identity_view admin_all ops free login view_and_login")
    );
}

// SPEC D3: whitelisted scopes are granted even to a user without roles.
#[tokio::test]
async fn user_without_roles_gets_whitelisted_scopes() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(
        app.granted("nora", "nora123", "openid identity_view device_42 login ops").await.as_deref(),
        Some("openid device_42")
    );
}

// SPEC D3: the whitelist regexes match the whole scope name (default: openid, ^device_.*);
// a configured whitelist replaces the default.
#[tokio::test]
async fn whitelist_matches_the_whole_name() {
    let app = spawn_app(Opts::default()).await;
    for scope in ["openid_extra", "xopenid", "OPENID", "my_device_1", "devices"] {
        assert_eq!(app.granted("nora", "nora123", scope).await, None, "{scope}");
    }
    assert_eq!(app.granted("nora", "nora123", "device_").await.as_deref(), Some("device_"));

    let custom =
        spawn_app(Opts { extra: "[scope_validation]\nwhitelist = ['read\\.[a-z]+']\n".into(), ..Opts::default() })
            .await;
    assert_eq!(custom.granted("nora", "nora123", "read.users").await.as_deref(), Some("read.users"));
    for scope in ["read.users2", "xread.users", "read.", "openid", "device_1"] {
        assert_eq!(custom.granted("nora", "nora123", scope).await, None, "{scope}");
    }
}

// SPEC D4: SYSTEM grants every defined scope whose bindings the user satisfies, requested
// or not, and is never emitted; /permission/admin does not cover /permission/protected/x.
#[tokio::test]
async fn system_grants_every_satisfied_definition() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(
        app.granted("admin", "admin", "SYSTEM").await.as_deref(),
        Some("identity_view admin_all login ops free view_and_login view_and_admin_role")
    );
    assert_eq!(app.granted("bob", "bob123", "SYSTEM").await.as_deref(), Some("login free"));
    assert_eq!(app.granted("pete", "pete123", "SYSTEM").await.as_deref(), Some("protected_x free"));
    assert_eq!(
        app.granted("alex", "alex123", "SYSTEM").await.as_deref(),
        Some("identity_view login free view_and_login")
    );
    assert_eq!(app.granted("nora", "nora123", "SYSTEM").await.as_deref(), Some("free"));
    let admin = access(&app.password(WEB, "admin", "admin", "SYSTEM").await);
    assert!(!decode(&admin).1["scope"].as_str().unwrap().split(' ').any(|s| s == "SYSTEM" || s == "protected_x"));
    assert_eq!(app.get("/api/scoped", &admin).await, 200);
}

// SPEC D4: SYSTEM with other scopes: the requested ones first (whitelisted, defined),
// then the remaining definitions the user satisfies; undefined ones are still left out.
#[tokio::test]
async fn system_with_other_scopes() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(
        app.granted("admin", "admin", "openid nowhere SYSTEM identity_view protected_x").await.as_deref(),
        Some("openid identity_view admin_all login ops free view_and_login view_and_admin_role")
    );
    assert_eq!(app.granted("bob", "bob123", "device_1 SYSTEM").await.as_deref(), Some("device_1 login free"));
}

// SPEC D2: when nothing is granted, the configured default scope is; when anything is,
// it is not added.
#[tokio::test]
async fn default_scope_when_nothing_is_granted() {
    let app =
        spawn_app(Opts { extra: "[scope_validation]\ndefault_scope = \"default\"\n".into(), ..Opts::default() }).await;
    assert_eq!(app.granted("bob", "bob123", "identity_view nowhere").await.as_deref(), Some("default"));
    assert_eq!(app.granted("bob", "bob123", "").await.as_deref(), Some("default"));
    assert_eq!(app.granted("alex", "alex123", "identity_view").await.as_deref(), Some("identity_view"));
    // The default whitelist still applies.
    assert_eq!(app.granted("nora", "nora123", "openid").await.as_deref(), Some("openid"));
    let client = app.client_credentials(WEB, "identity_view").await;
    assert_eq!(scope_of(&client).as_deref(), Some("default"));
}

// SPEC D2: for client_credentials the client's own roles (and their permissions) stand in
// for a user's; no refresh token (RFC 6749 4.4.3); sub is the client id. Its token on a
// permission-only rule is refused (403), on a scope rule with a granted scope admitted.
#[tokio::test]
async fn client_credentials_use_the_clients_roles() {
    let app = spawn_app(Opts::default()).await;
    let reports = app.client_credentials(REPORTS, "identity_view admin_all ops openid nowhere").await;
    assert_eq!(scope_of(&reports).as_deref(), Some("identity_view openid"));
    assert!(reports.get("refresh_token").is_none(), "no refresh token for client credentials");
    let ops = app.client_credentials(OPS, "ops admin_all identity_view protected_x").await;
    assert_eq!(scope_of(&ops).as_deref(), Some("ops admin_all identity_view"));
    let ops_system = app.client_credentials(OPS, "SYSTEM").await;
    assert_eq!(
        scope_of(&ops_system).as_deref(),
        Some("identity_view admin_all login ops free view_and_login view_and_admin_role")
    );
    let web = app.client_credentials(WEB, "identity_view openid free").await;
    assert_eq!(scope_of(&web).as_deref(), Some("openid free"), "web-app has no roles");
    assert!(web.get("refresh_token").is_none(), "not even for a client allowed refresh_token");

    let token = access(&reports);
    let claims = decode(&token).1;
    assert_eq!(claims["sub"], "reports-job");
    assert_eq!(claims["client_id"], "reports-job");
    assert_eq!(claims["aud"], "reports-job");
    assert_eq!(app.get("/api/scoped", &token).await, 200, "scope rule with a granted scope");
    assert_eq!(app.get("/api/view", &token).await, 403, "permission-only rule: a client holds no user's permissions");
    let caller = app.me(&token).await;
    assert_eq!(caller["user"], "reports-job");
    assert_eq!(caller["client_id"], "reports-job");
}

// SPEC D2: a client whose id equals a user's name gets none of that user's roles or
// permissions, neither at the token endpoint nor at the layer.
#[tokio::test]
async fn client_named_like_a_user_gets_none_of_its_permissions() {
    let app = spawn_app(Opts::default()).await;
    let body = app.client_credentials(ALEX_CLIENT, "identity_view login").await;
    assert_eq!(scope_of(&body), None, "alex-the-user's scopes leaked: {body}");
    let token = access(&body);
    assert_eq!(decode(&token).1["sub"], "alex");
    assert_eq!(app.get("/api/view", &token).await, 403, "alex-the-user's permissions leaked");
    assert_eq!(app.get("/api/scoped", &token).await, 403);
    let caller = app.me(&token).await;
    assert_eq!(caller["user"], "alex");
    assert_eq!(caller["client_id"], "alex");
    let answer = app.introspect(WEB, &token).await;
    assert_eq!(answer["active"], true);
    assert!(answer.get("username").is_none(), "a client token has no username: {answer}");
    // The real user alex is unaffected.
    let user = access(&app.password(WEB, "alex", "alex123", "identity_view").await);
    assert_eq!(app.get("/api/view", &user).await, 200);
}

// SPEC D2: a user-store failure is server_error (503, Retry-After), never a silent drop
// of scopes or an invalid_grant.
#[tokio::test]
async fn user_store_failure_is_server_error() {
    let store = SwitchStore::new(None);
    let app = app_with(Opts::default(), |builder| builder.user_store(store.clone())).await;
    let reply = app.password_reply(WEB, "alex", "alex123", "identity_view").await;
    assert_error(&reply, 503, "server_error");
    assert!(reply.header("retry-after").is_some());
    // The store comes back: the same request succeeds.
    store.set(Some(users()));
    assert_eq!(app.granted("alex", "alex123", "identity_view").await.as_deref(), Some("identity_view"));
}

// SPEC D2: a scope validator that cannot decide makes the request fail with
// server_error, never a token with fewer scopes.
#[tokio::test]
async fn scope_validator_failure_is_server_error() {
    let app = app_with(Opts::default(), |builder| builder.user_store(users()).scope_validator(BrokenValidator)).await;
    let reply = app.password_reply(WEB, "alex", "alex123", "identity_view").await;
    assert_error(&reply, 503, "server_error");
    assert!(reply.header("retry-after").is_some());
    let reply = app.token_request(REPORTS, &[("grant_type", "client_credentials")]).await;
    assert_error(&reply, 503, "server_error");
}

// SPEC D2, D1: a refresh looks the user up again; a store failure then is server_error.
#[tokio::test]
async fn refresh_during_a_store_outage_is_server_error() {
    let store = SwitchStore::new(Some(users()));
    let app = app_with(Opts::default(), |builder| builder.user_store(store.clone())).await;
    let body = app.password(WEB, "alex", "alex123", "identity_view").await;
    store.set(None);
    let reply = app.refresh(WEB, &refresh_token(&body), None).await;
    assert_error(&reply, 503, "server_error");
    assert!(reply.header("retry-after").is_some());
}

// SPEC D1, D2: a 503 with Retry-After invites the client to retry: after the store comes
// back, the same refresh token still works (the outage neither used it up nor made the
// retry look like a replay that revokes the grant).
#[tokio::test]
async fn refresh_token_survives_a_store_outage() {
    let store = SwitchStore::new(Some(users()));
    let app = app_with(Opts::default(), |builder| builder.user_store(store.clone())).await;
    let body = app.password(WEB, "alex", "alex123", "identity_view").await;
    let token = access(&body);
    assert_eq!(app.get("/api/scoped", &token).await, 200);
    store.set(None);
    assert_error(&app.refresh(WEB, &refresh_token(&body), None).await, 503, "server_error");
    store.set(Some(users()));
    let retry = app.refresh(WEB, &refresh_token(&body), None).await;
    assert_eq!(retry.status, 200, "retry after the outage: {}", retry.body);
    assert_eq!(app.get("/api/scoped", &token).await, 200, "the grant's access token is not revoked");
}

// SPEC D1, D2: a refresh judges the scopes again against the user's current roles (a lost
// role drops its scope, no error), and a disabled user's refresh is invalid_grant.
#[tokio::test]
async fn refresh_judges_the_user_again() {
    let store = SwitchStore::new(Some(users()));
    let app = app_with(Opts::default(), |builder| builder.user_store(store.clone())).await;
    let body = app.password(WEB, "alex", "alex123", "identity_view login").await;
    assert_eq!(scope_of(&body).as_deref(), Some("identity_view login"));

    store.set(Some(users_with_alex("roles = [\"everyone\"]")));
    let reply = app.refresh(WEB, &refresh_token(&body), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let refreshed = assert_token_response(&reply);
    assert_eq!(scope_of(&refreshed).as_deref(), Some("login"), "identity_view went with the role");

    store.set(Some(users_with_alex("roles = [\"identity_viewer\", \"everyone\"]\ndisabled = true")));
    assert_error(&app.refresh(WEB, &refresh_token(&refreshed), None).await, 400, "invalid_grant");
}

// ---------------------------------------------------------------------------------------
// D1: refresh tokens
// ---------------------------------------------------------------------------------------

// SPEC D1: refresh tokens rotate and are single use; presenting a used one is
// invalid_grant and revokes the family: the newer refresh token fails too, and the
// family's access tokens are refused by the layer (even when it had cached them).
#[tokio::test]
async fn refresh_rotation_and_replay_revokes_the_family() {
    let app = spawn_app(Opts::default()).await;
    let first = app.password(WEB, "alex", "alex123", "openid identity_view").await;
    let reply = app.refresh(WEB, &refresh_token(&first), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let second = assert_token_response(&reply);
    assert_eq!(scope_of(&second).as_deref(), Some("openid identity_view"));
    assert_ne!(refresh_token(&second), refresh_token(&first));
    assert_ne!(decode(&access(&second)).1["jti"], decode(&access(&first)).1["jti"]);
    assert_eq!(decode(&access(&second)).1["sub"], "alex");
    for token in [access(&first), access(&second)] {
        assert_eq!(app.get("/api/scoped", &token).await, 200);
        assert_eq!(app.get("/api/scoped", &token).await, 200, "cached by the layer");
    }
    // An unrelated grant of the same user.
    let unrelated = app.password(WEB, "alex", "alex123", "openid identity_view").await;

    assert_error(&app.refresh(WEB, &refresh_token(&first), None).await, 400, "invalid_grant");
    assert_error(&app.refresh(WEB, &refresh_token(&second), None).await, 400, "invalid_grant");
    assert_eq!(app.get("/api/scoped", &access(&second)).await, 401, "the family's newest access token");
    assert_eq!(app.get("/api/scoped", &access(&first)).await, 401, "the family's first access token");
    assert_eq!(app.introspect(WEB, &access(&second)).await, json!({"active": false}));

    assert_eq!(app.get("/api/scoped", &access(&unrelated)).await, 200, "another family is untouched");
    assert_eq!(app.refresh(WEB, &refresh_token(&unrelated), None).await.status, 200);
}

// SPEC D1: a refresh may narrow the scope, not widen it (invalid_scope, and the refresh
// token is not used up by the refused request).
#[tokio::test]
async fn refresh_may_narrow_but_not_widen_the_scope() {
    let app = spawn_app(Opts::default()).await;
    let first = app.password(WEB, "alex", "alex123", "openid identity_view login").await;
    assert_error(
        &app.refresh(WEB, &refresh_token(&first), Some("identity_view admin_all")).await,
        400,
        "invalid_scope",
    );
    assert_error(&app.refresh(WEB, &refresh_token(&first), Some("SYSTEM")).await, 400, "invalid_scope");

    let reply = app.refresh(WEB, &refresh_token(&first), Some("identity_view")).await;
    assert_eq!(reply.status, 200, "the refused requests did not use the token up: {}", reply.body);
    let narrowed = assert_token_response(&reply);
    assert_eq!(scope_of(&narrowed).as_deref(), Some("identity_view"));
    assert_eq!(app.get("/api/scoped", &access(&narrowed)).await, 200);

    // The narrowed grant is now the ceiling.
    assert_error(&app.refresh(WEB, &refresh_token(&narrowed), Some("openid")).await, 400, "invalid_scope");
    let reply = app.refresh(WEB, &refresh_token(&narrowed), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(scope_of(&reply.json()).as_deref(), Some("identity_view"));
}

// SPEC D1: refresh tokens only for clients allowed the refresh_token grant; a refresh
// token is bound to its client; garbage is invalid_grant.
#[tokio::test]
async fn refresh_tokens_are_bound_to_their_client() {
    let app = spawn_app(Opts::default()).await;
    let pw_only = app.password(PW_ONLY, "alex", "alex123", "openid").await;
    assert!(pw_only.get("refresh_token").is_none(), "{pw_only}");
    assert_eq!(decode(&access(&pw_only)).1["aud"], "pw-only");

    let body = app.password(WEB, "alex", "alex123", "openid").await;
    assert_error(&app.refresh(OTHER, &refresh_token(&body), None).await, 400, "invalid_grant");
    assert_error(&app.refresh(PW_ONLY, &refresh_token(&body), None).await, 400, "unauthorized_client");
    assert_eq!(app.refresh(WEB, &refresh_token(&body), None).await.status, 200, "the foreign attempt did not burn it");
    assert_error(&app.refresh(WEB, "ECHO-not-a-refresh-token", None).await, 400, "invalid_grant");
    assert_error(&app.refresh(WEB, &access(&body), None).await, 400, "invalid_grant");
}

// ---------------------------------------------------------------------------------------
// D5: revocation and introspection
// ---------------------------------------------------------------------------------------

// SPEC D5: a revoked access token is refused by the layer of the same process at once,
// even though the layer had cached it; the refresh token of its grant is untouched.
#[tokio::test]
async fn revoked_access_token_is_refused_at_once() {
    let app = spawn_app(Opts::default()).await;
    let body = app.password(WEB, "alex", "alex123", "identity_view").await;
    let token = access(&body);
    let other = access(&app.password(WEB, "alex", "alex123", "identity_view").await);
    assert_eq!(app.get("/api/scoped", &token).await, 200);
    assert_eq!(app.get("/api/scoped", &token).await, 200);
    assert_eq!(app.get("/api/scoped", &other).await, 200);

    let reply = app.revoke(WEB, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(app.get("/api/scoped", &token).await, 401);
    assert_eq!(app.get("/api/me", &token).await, 401);
    assert_eq!(app.introspect(WEB, &token).await, json!({"active": false}));
    assert_eq!(app.get("/api/scoped", &other).await, 200, "only that token");
    assert_eq!(app.revoke(WEB, &token).await.status, 200, "revoking twice is fine");

    // The hint is only a hint (RFC 7009 2.1).
    let hinted = access(&app.password(WEB, "bob", "bob123", "").await);
    let reply = app
        .post_form("/oauth2/revoke", Some(&basic(WEB)), &[("token", &hinted), ("token_type_hint", "refresh_token")])
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(app.get("/api/me", &hinted).await, 401);
}

// SPEC D5: revoking a refresh token ends its grant: it no longer refreshes, introspects as
// inactive, and the grant's access token is refused.
#[tokio::test]
async fn revoked_refresh_token_ends_its_grant() {
    let app = spawn_app(Opts::default()).await;
    let body = app.password(WEB, "alex", "alex123", "identity_view").await;
    assert_eq!(app.get("/api/scoped", &access(&body)).await, 200);
    assert_eq!(app.introspect(WEB, &refresh_token(&body)).await["active"], true);
    assert_eq!(app.revoke(WEB, &refresh_token(&body)).await.status, 200);
    assert_error(&app.refresh(WEB, &refresh_token(&body), None).await, 400, "invalid_grant");
    assert_eq!(app.introspect(WEB, &refresh_token(&body)).await, json!({"active": false}));
    assert_eq!(app.get("/api/scoped", &access(&body)).await, 401);
}

// SPEC D5: a client may revoke only its own tokens: another client's is invalid_grant
// and stays valid; an unknown token is 200 (RFC 7009 2.2); revocation needs client
// authentication and a token.
#[tokio::test]
async fn revocation_is_limited_to_the_clients_own_tokens() {
    let app = spawn_app(Opts::default()).await;
    let body = app.password(WEB, "alex", "alex123", "identity_view").await;
    assert_error(&app.revoke(OTHER, &access(&body)).await, 400, "invalid_grant");
    assert_error(&app.revoke(OTHER, &refresh_token(&body)).await, 400, "invalid_grant");
    assert_eq!(app.get("/api/scoped", &access(&body)).await, 200);
    assert_eq!(app.refresh(WEB, &refresh_token(&body), None).await.status, 200);

    let reports = access(&app.client_credentials(REPORTS, "identity_view").await);
    assert_error(&app.revoke(WEB, &reports).await, 400, "invalid_grant");
    assert_eq!(app.get("/api/scoped", &reports).await, 200);

    let unknown = app.revoke(WEB, "ECHO-unknown-token").await;
    assert_eq!(unknown.status, 200);
    assert!(!unknown.body.contains("ECHO"));

    assert_error(&app.post_form("/oauth2/revoke", None, &[("token", &reports)]).await, 401, "invalid_client");
    assert_error(&app.post_form("/oauth2/revoke", Some(&basic(WEB)), &[]).await, 400, "invalid_request");
    assert_eq!(app.get("/api/scoped", &reports).await, 200);
}

// SPEC D5: RFC 7662 answers for access and refresh tokens, for any authenticated client;
// revoked, used, foreign-signed and garbage tokens are just `{"active": false}`; the
// endpoint needs client authentication.
#[tokio::test]
async fn introspection_describes_the_servers_tokens() {
    let app = spawn_app(Opts::default()).await;
    let body = app.password(WEB, "alex", "alex123", "openid identity_view").await;
    let token = access(&body);
    let claims = decode(&token).1;

    let answer = app.introspect(WEB, &token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["scope"], "openid identity_view");
    assert_eq!(answer["client_id"], "web-app");
    assert_eq!(answer["username"], "alex");
    assert_eq!(answer["sub"], "alex");
    assert_eq!(answer["iss"], app.issuer.as_str());
    assert_eq!(answer["exp"], claims["exp"]);
    assert_eq!(answer["iat"], claims["iat"]);
    assert_eq!(answer["jti"], claims["jti"]);
    assert_eq!(app.introspect(OTHER, &token).await, answer, "any authenticated client may ask");

    let refresh = app.introspect(WEB, &refresh_token(&body)).await;
    assert_eq!(refresh["active"], true);
    assert_eq!(refresh["token_type"], "refresh_token");
    assert_eq!(refresh["client_id"], "web-app");
    assert_eq!(refresh["username"], "alex");
    assert_eq!(refresh["scope"], "openid identity_view");
    assert!(refresh["exp"].as_u64().unwrap().abs_diff(now() + REFRESH_SECONDS) <= 5);

    let inactive = json!({"active": false});
    assert_eq!(app.introspect(WEB, "ECHO-garbage").await, inactive);
    // Signed with another secret under the same kid and issuer.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("hs-1".into());
    header.typ = Some("at+jwt".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"another-secret-another-secret-another-secret"),
    )
    .unwrap();
    assert_eq!(app.introspect(WEB, &forged).await, inactive);
    assert_eq!(app.get("/api/me", &forged).await, 401);

    // A used refresh token and a revoked access token.
    let reply = app.refresh(WEB, &refresh_token(&body), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(app.introspect(WEB, &refresh_token(&body)).await, inactive);
    assert_eq!(app.revoke(WEB, &token).await.status, 200);
    assert_eq!(app.introspect(WEB, &token).await, inactive);
    let client_token = access(&app.client_credentials(REPORTS, "identity_view").await);
    let answer = app.introspect(RESOURCE, &client_token).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "reports-job");
    assert!(answer.get("username").is_none());

    assert_error(&app.post_form("/oauth2/introspect", None, &[("token", &client_token)]).await, 401, "invalid_client");
    let wrong = basic(("web-app", "ECHO-wrong"));
    let reply = app.post_form("/oauth2/introspect", Some(&wrong), &[("token", &client_token)]).await;
    assert_error(&reply, 401, "invalid_client");
    assert_error(&app.post_form("/oauth2/introspect", Some(&basic(WEB)), &[]).await, 400, "invalid_request");
}

// ---------------------------------------------------------------------------------------
// D1: client authentication and request errors
// ---------------------------------------------------------------------------------------

// SPEC D1: client authentication failures are 401 invalid_client with a Basic challenge;
// a wrong secret and an unknown client answer the same.
#[tokio::test]
async fn client_authentication_failures_are_invalid_client() {
    let app = spawn_app(Opts::default()).await;
    let form = [("grant_type", "client_credentials")];
    let wrong = app.token_request(("web-app", "ECHO-wrong-secret"), &form).await;
    assert_error(&wrong, 401, "invalid_client");
    let unknown = app.token_request(("ECHO-client", "web-secret"), &form).await;
    assert_error(&unknown, 401, "invalid_client");
    assert_eq!(wrong.body, unknown.body);
    assert_error(&app.post_form("/oauth2/token", None, &form).await, 401, "invalid_client");
    assert_error(&app.token_request(DISABLED, &form).await, 401, "invalid_client");
    assert_error(&app.post_form("/oauth2/token", Some("Bearer ECHO"), &form).await, 401, "invalid_client");
    assert_error(&app.post_form("/oauth2/token", Some("Basic !!ECHO!!"), &form).await, 401, "invalid_client");
    let no_colon = format!("Basic {}", STANDARD.encode("web-app"));
    assert_error(&app.post_form("/oauth2/token", Some(&no_colon), &form).await, 401, "invalid_client");
    // The right secret still works after the failures.
    assert_eq!(app.token_request(WEB, &form).await.status, 200);
}

// SPEC D1: the id and secret are form-urlencoded before Basic encoding (RFC 6749 2.3.1).
#[tokio::test]
async fn client_credentials_in_basic_are_form_urlencoded() {
    let app = spawn_app(Opts::default()).await;
    let form = [("grant_type", "client_credentials")];
    assert_eq!(app.token_request(ODD, &form).await.status, 200, "encoded secret");
    let raw = format!("Basic {}", STANDARD.encode(format!("{}:{}", ODD.0, ODD.1)));
    assert_error(&app.post_form("/oauth2/token", Some(&raw), &form).await, 401, "invalid_client");
}

// SPEC D1: client credentials belong in the Basic header only: a client_secret in the
// body, or a client_id there naming another client, is invalid_request.
#[tokio::test]
async fn client_id_and_secret_in_the_body() {
    let app = spawn_app(Opts::default()).await;
    let same = [("grant_type", "client_credentials"), ("client_id", "web-app")];
    assert_eq!(app.token_request(WEB, &same).await.status, 200);
    let differing = [("grant_type", "client_credentials"), ("client_id", "other-app")];
    assert_error(&app.token_request(WEB, &differing).await, 400, "invalid_request");
    let secret = [("grant_type", "client_credentials"), ("client_secret", "web-secret")];
    assert_error(&app.token_request(WEB, &secret).await, 400, "invalid_request");
}

// SPEC D1: a grant type the client is not allowed is unauthorized_client.
#[tokio::test]
async fn grant_not_allowed_for_the_client_is_unauthorized_client() {
    let app = spawn_app(Opts::default()).await;
    assert_error(
        &app.token_request(PW_ONLY, &[("grant_type", "client_credentials")]).await,
        400,
        "unauthorized_client",
    );
    assert_error(&app.password_reply(REPORTS, "alex", "alex123", "").await, 400, "unauthorized_client");
    assert_error(&app.refresh(REPORTS, "whatever", None).await, 400, "unauthorized_client");
}

// SPEC D1: missing (or empty) parameters and a malformed scope are invalid_request.
#[tokio::test]
async fn missing_parameters_are_invalid_request() {
    let app = spawn_app(Opts::default()).await;
    let cases: &[&[(&str, &str)]] = &[
        &[("username", "alex"), ("password", "alex123")],
        &[("grant_type", ""), ("username", "alex"), ("password", "alex123")],
        &[("grant_type", "password"), ("password", "alex123")],
        &[("grant_type", "password"), ("username", "alex")],
        &[("grant_type", "password"), ("username", ""), ("password", "alex123")],
        &[("grant_type", "password"), ("username", "alex"), ("password", "")],
        &[("grant_type", "refresh_token")],
        &[("grant_type", "refresh_token"), ("refresh_token", "")],
        &[("grant_type", "password"), ("username", "alex"), ("password", "alex123"), ("scope", "openid  login")],
        &[("grant_type", "password"), ("username", "alex"), ("password", "alex123"), ("scope", " openid")],
        &[("grant_type", "password"), ("username", "alex"), ("password", "alex123"), ("scope", "ECHO\"quote")],
        &[("grant_type", "client_credentials"), ("scope", "ECHO\\backslash")],
    ];
    for form in cases {
        let reply = app.token_request(WEB, form).await;
        assert_error(&reply, 400, "invalid_request");
    }
}

// SPEC D1: a repeated parameter is invalid_request (RFC 6749 3.2).
#[tokio::test]
async fn repeated_parameter_is_invalid_request() {
    let app = spawn_app(Opts::default()).await;
    let form = "application/x-www-form-urlencoded";
    for body in [
        "grant_type=client_credentials&grant_type=client_credentials",
        "grant_type=password&username=alex&password=alex123&scope=openid&scope=openid",
        "grant_type=password&username=alex&username=bob&password=alex123",
    ] {
        let reply = app.post_raw("/oauth2/token", WEB, Some(form), body.to_owned()).await;
        assert_error(&reply, 400, "invalid_request");
    }
    let reply = app.post_raw("/oauth2/revoke", WEB, Some(form), "token=a&token=b".to_owned()).await;
    assert_error(&reply, 400, "invalid_request");
}

// SPEC D1: the body must be application/x-www-form-urlencoded (parameters allowed, case
// insensitive).
#[tokio::test]
async fn wrong_content_type_is_invalid_request() {
    let app = spawn_app(Opts::default()).await;
    let json_body = r#"{"grant_type":"client_credentials"}"#.to_owned();
    let form_body = "grant_type=client_credentials".to_owned();
    let refused = [
        (Some("application/json"), json_body.clone()),
        (Some("application/json"), form_body.clone()),
        (Some("text/plain"), form_body.clone()),
        (Some("multipart/form-data; boundary=x"), form_body.clone()),
        (None, form_body.clone()),
    ];
    for (content_type, body) in refused {
        let reply = app.post_raw("/oauth2/token", WEB, content_type, body).await;
        assert_error(&reply, 400, "invalid_request");
    }
    for content_type in ["application/x-www-form-urlencoded; charset=UTF-8", "Application/X-WWW-Form-URLEncoded"] {
        let reply = app.post_raw("/oauth2/token", WEB, Some(content_type), form_body.clone()).await;
        assert_eq!(reply.status, 200, "{content_type}: {}", reply.body);
    }
    let reply = app.post_raw("/oauth2/introspect", WEB, Some("application/json"), r#"{"token":"x"}"#.into()).await;
    assert_error(&reply, 400, "invalid_request");
}

// SPEC D1: an unknown grant type is unsupported_grant_type.
#[tokio::test]
async fn unsupported_grant_type() {
    let app = spawn_app(Opts::default()).await;
    for grant in ["implicit", "urn:ietf:params:oauth:grant-type:device_code", "ECHO_grant"] {
        let reply = app.token_request(WEB, &[("grant_type", grant), ("code", "abc")]).await;
        assert_error(&reply, 400, "unsupported_grant_type");
    }
    // SPEC D6: the code grant exists, but not for a client without redirect URIs.
    let reply = app.token_request(WEB, &[("grant_type", "authorization_code"), ("code", "abc")]).await;
    assert_error(&reply, 400, "unauthorized_client");
}

// SPEC D1: a body over max_form_bytes is 413 invalid_request; exactly the limit is read.
#[tokio::test]
async fn oversized_form_is_413() {
    let app = spawn_app(Opts::default()).await;
    let prefix = "grant_type=client_credentials&pad=";
    let exact = format!("{prefix}{}", "x".repeat(MAX_FORM_BYTES - prefix.len()));
    assert_eq!(exact.len(), MAX_FORM_BYTES);
    let form = Some("application/x-www-form-urlencoded");
    let reply = app.post_raw("/oauth2/token", WEB, form, exact.clone()).await;
    assert_eq!(reply.status, 200, "exactly the limit: {}", reply.body);
    let over = format!("{exact}x");
    assert_error(&app.post_raw("/oauth2/token", WEB, form, over.clone()).await, 413, "invalid_request");
    let big = format!("{prefix}{}", "ECHO".repeat(MAX_FORM_BYTES * 4));
    assert_error(&app.post_raw("/oauth2/token", WEB, form, big).await, 413, "invalid_request");
    let token = format!("token={}", "x".repeat(MAX_FORM_BYTES));
    assert_error(&app.post_raw("/oauth2/introspect", WEB, form, token.clone()).await, 413, "invalid_request");
    assert_error(&app.post_raw("/oauth2/revoke", WEB, form, token).await, 413, "invalid_request");
}

// SPEC D1: a wrong password is invalid_grant, with exactly the body of an unknown user
// (and of a disabled one); no Basic challenge, since the client authenticated.
#[tokio::test]
async fn wrong_user_password_is_invalid_grant() {
    let app = spawn_app(Opts::default()).await;
    let wrong = app.password_reply(WEB, "alex", "ECHO-wrong-password", "openid").await;
    assert_error(&wrong, 400, "invalid_grant");
    let unknown = app.password_reply(WEB, "ECHO-nobody", "ECHO-password", "openid").await;
    assert_error(&unknown, 400, "invalid_grant");
    assert_eq!(wrong.body, unknown.body);
    let disabled = app.password_reply(WEB, "dave", "dave123", "openid").await;
    assert_error(&disabled, 400, "invalid_grant");
    assert_eq!(wrong.body, disabled.body);
    assert_eq!(app.granted("alex", "alex123", "openid").await.as_deref(), Some("openid"));
}

// SPEC D1: error bodies never echo request input (names, secrets, scopes, grant types,
// tokens).
#[tokio::test]
async fn error_bodies_do_not_echo_input() {
    let app = spawn_app(Opts::default()).await;
    let replies = [
        app.password_reply(WEB, "ECHO-user", "ECHO-pass", "ECHO-scope").await,
        app.password_reply(("ECHO-client", "ECHO-secret"), "alex", "alex123", "").await,
        app.token_request(WEB, &[("grant_type", "ECHO-grant")]).await,
        app.token_request(WEB, &[("grant_type", "password"), ("username", "ECHO-user")]).await,
        app.token_request(WEB, &[("grant_type", "client_credentials"), ("scope", "ECHO  ECHO")]).await,
        app.token_request(WEB, &[("grant_type", "client_credentials"), ("client_id", "ECHO-id")]).await,
        app.refresh(WEB, "ECHO-refresh", Some("ECHO-scope")).await,
        app.post_form("/oauth2/introspect", Some("Basic RUNITzpFQ0hP"), &[("token", "ECHO")]).await,
    ];
    for reply in &replies {
        assert!(reply.status >= 400, "{}", reply.body);
        assert!(!reply.body.contains("ECHO"), "echoed: {}", reply.body);
        assert!(!reply.headers.values().any(|v| v.to_str().unwrap_or_default().contains("ECHO")));
        assert_eq!(reply.json().as_object().unwrap().len(), 2);
    }
}

// SPEC D1, D5: both discovery documents name the server's endpoints; they work.
#[tokio::test]
async fn discovery_documents_name_the_endpoints() {
    let app = spawn_app(Opts { keys: Some(pem_key("ec-1", "ES256", "ec")), ..Opts::default() }).await;
    let base = &app.base;
    let mut documents = Vec::new();
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let document: Value = response.json().await.unwrap();
        assert_eq!(document["issuer"], base.as_str());
        assert_eq!(document["token_endpoint"], format!("{base}/oauth2/token"));
        assert_eq!(document["jwks_uri"], format!("{base}/oauth2/jwks"));
        assert_eq!(document["introspection_endpoint"], format!("{base}/oauth2/introspect"));
        assert_eq!(document["revocation_endpoint"], format!("{base}/oauth2/revoke"));
        let grants: HashSet<&str> =
            document["grant_types_supported"].as_array().unwrap().iter().map(|g| g.as_str().unwrap()).collect();
        assert_eq!(grants, HashSet::from(["authorization_code", "password", "client_credentials", "refresh_token"]));
        assert_eq!(document["token_endpoint_auth_methods_supported"], json!(["client_secret_basic", "none"]));
        assert_eq!(document["authorization_endpoint"], format!("{base}/oauth2/authorize"));
        assert_eq!(document["code_challenge_methods_supported"], json!(["S256"]));
        documents.push(document);
    }
    assert_eq!(documents[0], documents[1]);
    let document = &documents[0];

    let jwks: Value = app.http.get(document["jwks_uri"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"][0]["kid"], "ec-1");
    let response = app
        .http
        .post(document["token_endpoint"].as_str().unwrap())
        .header(AUTHORIZATION, basic(WEB))
        .form(&[("grant_type", "password"), ("username", "alex"), ("password", "alex123")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = access(&body);
    let introspection = app
        .http
        .post(document["introspection_endpoint"].as_str().unwrap())
        .header(AUTHORIZATION, basic(WEB))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(introspection.json::<Value>().await.unwrap()["active"], true);
    let revocation = app
        .http
        .post(document["revocation_endpoint"].as_str().unwrap())
        .header(AUTHORIZATION, basic(WEB))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revocation.status(), 200);
    assert_eq!(app.get("/api/me", &token).await, 401);
}

// SPEC C2, A13: a token of this process's token server names a user of the store; once
// that user is gone or disabled, a token the layer has not seen yet is refused with 401
// (it used to pass, without permissions, for a user no longer there). Client-credentials
// tokens name no user and still pass; an existing user's token passes.
#[tokio::test]
async fn local_tokens_of_removed_or_disabled_users_are_refused() {
    let store = SwitchStore::new(Some(users()));
    let app = app_with(Opts::default(), |builder| builder.user_store(store.clone())).await;
    let kept = access(&app.password(WEB, "alex", "alex123", "identity_view").await);
    let removed = access(&app.password(WEB, "alex", "alex123", "identity_view").await);
    let disabled = access(&app.password(WEB, "alex", "alex123", "identity_view").await);
    let client = access(&app.client_credentials(REPORTS, "").await);
    assert_eq!(app.me(&kept).await["user"], "alex");

    let without_alex = users_text().replacen("name = \"alex\"\n", "name = \"alexander\"\n", 1);
    assert_ne!(without_alex, users_text(), "alex's user table was renamed");
    store.set(Some(load_users("users.toml", &without_alex).unwrap()));
    assert_eq!(app.get("/api/me", &removed).await, 401, "the token's user no longer exists");
    assert_eq!(app.get("/api/me", &client).await, 200, "a client-credentials token names no user");

    store.set(Some(users_with_alex("roles = [\"identity_viewer\", \"everyone\"]\ndisabled = true")));
    assert_eq!(app.get("/api/me", &disabled).await, 401, "the token's user is disabled");

    store.set(Some(users()));
    assert_eq!(app.get("/api/me", &removed).await, 200, "the user is back");
}

// ---------------------------------------------------------------------------------------
// D7: clients and scopes reload with the layer
// ---------------------------------------------------------------------------------------

/// The `[[client]]` table of `client` as [`users_text`] writes it.
fn client_table((id, secret): Client) -> String {
    format!("\n[[client]]\nid = \"{id}\"\nsecret = \"{}\"\n", common::cheap_hash(secret))
}

/// Writes a users file and reloads it through the layer's reloader.
fn reload_users_text(app: &App, dir: &tempfile::TempDir, text: &str) {
    let path = dir.path().join("users.toml");
    std::fs::write(&path, text).unwrap();
    app.reloader.reload_users_file(&path).unwrap_or_else(|e| panic!("the users file must reload: {e}"));
}

// SPEC D7: a users-file reload reaches the token server's clients: a disabled client gets
// no token at once (not even by refresh) and the tokens it holds are refused; enabling it
// again gives new tokens but never brings the old ones back; a removed client is shut out
// the same way; a client added by the reload gets tokens; others are untouched.
#[tokio::test]
async fn d7_disabled_removed_and_added_clients_take_effect_at_once() {
    let app = spawn_app(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let web = app.password(WEB, "alex", "alex123", "identity_view").await;
    let other = app.password(OTHER, "alex", "alex123", "identity_view").await;
    assert_eq!(app.get("/api/scoped", &access(&web)).await, 200);

    let web_line = "id = \"web-app\"\n";
    assert_eq!(users_text().matches(web_line).count(), 1);
    reload_users_text(&app, &dir, &users_text().replace(web_line, &format!("{web_line}disabled = true\n")));
    assert_error(&app.password_reply(WEB, "alex", "alex123", "").await, 401, "invalid_client");
    assert_error(&app.refresh(WEB, &refresh_token(&web), None).await, 401, "invalid_client");
    assert_eq!(app.get("/api/scoped", &access(&web)).await, 401, "its access token is refused at once");
    assert_eq!(app.get("/api/scoped", &access(&other)).await, 200, "another client's token is untouched");

    reload_users_text(&app, &dir, users_text());
    // Until the second its tokens were revoked in is over, a new one would count as revoked
    // too: the server says so (503, retry), never hands out a token that does not work.
    let mut reply = app.password_reply(WEB, "alex", "alex123", "identity_view").await;
    for _ in 0..50 {
        if reply.status != 503 {
            break;
        }
        assert_eq!(reply.header("retry-after"), Some("1"), "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
        reply = app.password_reply(WEB, "alex", "alex123", "identity_view").await;
    }
    assert_eq!(reply.status, 200, "{}", reply.body);
    let fresh = assert_token_response(&reply);
    assert_eq!(app.get("/api/scoped", &access(&fresh)).await, 200);
    assert_error(&app.refresh(WEB, &refresh_token(&web), None).await, 400, "invalid_grant");
    assert_eq!(app.get("/api/scoped", &access(&web)).await, 401, "re-enabling brings no old token back");

    let other_table = client_table(OTHER);
    assert_eq!(users_text().matches(&other_table).count(), 1);
    let late = ("late-app", "late-secret");
    let next = users_text().replace(&other_table, "") + &client_table(late);
    assert_error(&app.password_reply(late, "alex", "alex123", "").await, 401, "invalid_client");
    reload_users_text(&app, &dir, &next);
    assert_error(&app.password_reply(OTHER, "alex", "alex123", "").await, 401, "invalid_client");
    assert_error(&app.refresh(OTHER, &refresh_token(&other), None).await, 401, "invalid_client");
    assert_eq!(app.get("/api/scoped", &access(&other)).await, 401);
    assert_eq!(
        scope_of(&app.password(late, "alex", "alex123", "identity_view").await).as_deref(),
        Some("identity_view")
    );
    assert_eq!(app.get("/api/scoped", &access(&fresh)).await, 200, "the web app's new token still works");
}

// SPEC D7: a client's new secret applies at the next request, although the old one was
// verified (and cached) just before; a users file whose clients do not load changes
// nothing, users included.
#[tokio::test]
async fn d7_changed_client_secret_applies_at_once_and_bad_files_change_nothing() {
    let app = spawn_app(Opts::default()).await;
    let dir = tempfile::tempdir().unwrap();
    app.client_credentials(REPORTS, "").await;
    let new_secret = ("reports-job", "reports-new-secret");
    let rotated = users_text().replace(&common::cheap_hash(REPORTS.1), &common::cheap_hash(new_secret.1));
    reload_users_text(&app, &dir, &rotated);
    let reply = app.token_request(REPORTS, &[("grant_type", "client_credentials")]).await;
    assert_error(&reply, 401, "invalid_client");
    app.client_credentials(new_secret, "").await;

    let path = dir.path().join("broken.toml");
    std::fs::write(&path, format!("{}\n[[client]]\nid = \"bad id\"\nsecret = \"x\"\n", users_text())).unwrap();
    let err = app.reloader.reload_users_file(&path).unwrap_err();
    assert_eq!((err.key.as_deref(), err.line > 0), (Some("id"), true), "{err}");
    app.client_credentials(new_secret, "").await;
    let reply = app.token_request(REPORTS, &[("grant_type", "client_credentials")]).await;
    assert_error(&reply, 401, "invalid_client");
}

/// The standard deployment with `/api/scoped` requiring `scope` instead of
/// `identity_view`, and `extra` tables.
fn deployment_with_scoped(issuer: &str, scope: &str, extra: &str) -> Deployment {
    let text = deployment_toml(issuer, &Opts { extra: extra.to_owned(), ..Opts::default() });
    let rule = "context = \"/api/scoped\"\nscope = \"identity_view\"";
    assert_eq!(text.matches(rule).count(), 1);
    let text = text.replace(rule, &format!("context = \"/api/scoped\"\nscope = \"{scope}\""));
    Deployment::from_toml_str("deployment.toml", &text).unwrap()
}

// SPEC D7: a rule-file reload reaches the token server: a scope defined by the reload is
// issued as soon as the layer enforces it, a removed one no more; the default scope
// reloads too.
#[tokio::test]
async fn d7_new_scope_is_issued_as_soon_as_the_layer_enforces_it() {
    let app = spawn_app(Opts::default()).await;
    assert_eq!(app.granted("alex", "alex123", "reports_view").await, None, "not defined yet");
    let old = app.password(WEB, "alex", "alex123", "identity_view").await;
    assert_eq!(app.get("/api/scoped", &access(&old)).await, 200);

    let extra = format!("[[scope]]\nname = \"reports_view\"\npermissions = [\"{VIEW}\"]\n\n[scope_validation]\ndefault_scope = \"basic_access\"\n");
    app.reloader.reload(deployment_with_scoped(&app.issuer, "reports_view", &extra)).unwrap();
    let new = app.password(WEB, "alex", "alex123", "reports_view").await;
    assert_eq!(scope_of(&new).as_deref(), Some("reports_view"));
    assert_eq!(app.get("/api/scoped", &access(&new)).await, 200, "the layer enforces the scope it is issued for");
    assert_eq!(app.get("/api/scoped", &access(&old)).await, 403, "the old scope no longer opens it");
    assert_eq!(app.granted("bob", "bob123", "reports_view").await.as_deref(), Some("basic_access"));

    app.reloader.reload(deployment_with_scoped(&app.issuer, "identity_view", "")).unwrap();
    assert_eq!(app.granted("alex", "alex123", "reports_view").await, None, "removed with its table");
    assert_eq!(app.granted("bob", "bob123", "reports_view").await, None, "no default scope any more");
}

/// Grants what the configuration's role-based validation grants, without `admin_all`.
struct NoAdmin;

#[tower_secure::async_trait]
impl ScopeValidator for NoAdmin {
    async fn validate(&self, request: &ScopeRequest<'_>) -> Result<Vec<String>, OAuthError> {
        let granted = request.configured.validate(request).await?;
        Ok(granted.into_iter().filter(|s| s != "admin_all").collect())
    }
}

// SPEC D7: a custom scope validator survives a reload and, through the request's
// configured validator, follows the reloaded scope definitions.
#[tokio::test]
async fn d7_custom_scope_validator_keeps_working_across_reloads() {
    let app = app_with(Opts::default(), |builder| builder.user_store(users()).scope_validator(NoAdmin)).await;
    assert_eq!(app.granted("admin", "admin", "admin_all identity_view").await.as_deref(), Some("identity_view"));
    let extra = "[[scope]]\nname = \"reports_view\"\npermissions = [\"/permission/admin\"]\n";
    app.reloader.reload(deployment_with_scoped(&app.issuer, "reports_view", extra)).unwrap();
    let granted = app.granted("admin", "admin", "admin_all reports_view").await;
    assert_eq!(granted.as_deref(), Some("reports_view"), "the custom rule still applies, to the new definitions");
}

// SPEC D7, B7: `[oauth2_server]` built the keys and endpoints: a reload that changes it is
// refused, naming the table, and the old configuration keeps serving.
#[tokio::test]
async fn d7_reload_changing_the_token_server_is_refused() {
    let app = spawn_app(Opts::default()).await;
    let text = deployment_toml(&app.issuer, &Opts::default())
        .replace(&format!("access_token_seconds = {ACCESS_SECONDS}"), "access_token_seconds = 5");
    let err = app.reloader.reload(Deployment::from_toml_str("deployment.toml", &text).unwrap()).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("oauth2_server"), "{err}");
    assert!(err.message.contains("restart"), "{err}");
    assert_eq!(app.reloader.version(), 0);
    let body = app.password(WEB, "alex", "alex123", "").await;
    assert_eq!(body["expires_in"], ACCESS_SECONDS);
}

// SPEC D7, B7: while the rule file flips between two versions whose whitelist and scope
// definitions differ, every token request is decided by one version: `a_1 x` (A) or
// `b_1` (B), never the whitelist of one with the definitions of the other.
#[tokio::test]
async fn d7_token_requests_during_reloads_see_one_version() {
    let version_a = "[scope_validation]\nwhitelist = [\"^a_.*\"]\n\n[[scope]]\nname = \"x\"\n";
    let version_b = "[scope_validation]\nwhitelist = [\"^b_.*\"]\n";
    let app = spawn_app(Opts { extra: version_a.to_owned(), ..Opts::default() }).await;
    let deployment = |extra: &str| {
        let text = deployment_toml(&app.issuer, &Opts { extra: extra.to_owned(), ..Opts::default() });
        Deployment::from_toml_str("deployment.toml", &text).unwrap()
    };
    let (a, b) = (deployment(version_a), deployment(version_b));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reloads = {
        let (reloader, stop) = (app.reloader.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut count = 0u32;
            let versions = [b, a];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                reloader.reload(versions[(count & 1) as usize].clone()).unwrap();
                count += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            count
        })
    };
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut seen = std::collections::HashMap::<String, usize>::new();
    while Instant::now() < deadline {
        let requests = (0..4).map(|_| app.client_credentials(REPORTS, "a_1 b_1 x"));
        for body in futures_util::future::join_all(requests).await {
            *seen.entry(body["scope"].as_str().unwrap().to_owned()).or_default() += 1;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reloaded = reloads.join().unwrap();
    let mixed: Vec<_> = seen.keys().filter(|s| *s != "a_1 x" && *s != "b_1").collect();
    assert!(mixed.is_empty(), "answers of no single version: {seen:?}");
    assert!(reloaded > 10 && seen.len() == 2, "both versions decided requests ({reloaded} reloads): {seen:?}");
}

// SPEC I1, D1: the builder's issuer takes the place of the file's (an address known only
// once the listener is bound): tokens carry it, the discovery document names it, the layer
// of the same process accepts its tokens, and a reload of the unchanged file keeps it.
#[tokio::test]
async fn builder_issuer_replaces_the_files() {
    let (listener, base) = listen().await;
    let text = deployment_toml("https://placeholder.invalid", &Opts::default());
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
    let clients = load_clients("users.toml", users_text()).unwrap();
    let tokens = TokenServer::builder()
        .deployment(&deployment)
        .issuer(format!("{base}/"))
        .clients(clients)
        .user_store(users())
        .build()
        .unwrap();
    assert_eq!(tokens.issuer(), base, "trailing slash trimmed");
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    let reloader = layer.reloader();
    spawn_router(listener, api().merge(tokens.router()).layer(layer));
    let app = App { base: base.clone(), issuer: base.clone(), tokens, reloader, http: common::client() };

    let token = access(&app.password(WEB, "alex", "alex123", "openid").await);
    assert_eq!(decode(&token).1["iss"], base.as_str());
    assert_eq!(app.me(&token).await["user"], "alex");
    let discovery = app.http.get(app.url("/.well-known/openid-configuration")).send().await.unwrap();
    let document: Value = discovery.json().await.unwrap();
    assert_eq!(document["issuer"], base.as_str());

    app.reloader.reload(Deployment::from_toml_str("deployment.toml", &text).unwrap()).unwrap();
    let token = access(&app.password(WEB, "alex", "alex123", "openid").await);
    assert_eq!(decode(&token).1["iss"], base.as_str());
    assert_eq!(app.me(&token).await["user"], "alex");
}

// SPEC G4, A4, D5: a change to a user reaches every cached decision within a bound. Told
// through `Reloader::users_changed`, at once: a user disabled in its store loses its cached
// Basic login and its cached tokens of the built-in issuer on the next request. Not told
// (the store changed behind the crate's back), within `cache_ttl_seconds`.
#[tokio::test]
async fn g4_user_changes_reach_cached_logins_and_tokens() {
    let (listener, base) = listen().await;
    let text = deployment_toml(&base, &Opts::default())
        .replace("max_concurrent_hashes = 2", "max_concurrent_hashes = 2\ncache_ttl_seconds = 1");
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
    let store = users();
    let clients = load_clients("users.toml", users_text()).unwrap();
    let tokens =
        TokenServer::builder().deployment(&deployment).clients(clients).user_store(store.clone()).build().unwrap();
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    let reloader = layer.reloader();
    spawn_router(listener, api().merge(tokens.router()).layer(layer));
    let app = App { base: base.clone(), issuer: base.clone(), tokens, reloader, http: common::client() };
    let enabled = users();
    let disabled = users_with_alex("roles = [\"identity_viewer\", \"everyone\"]\ndisabled = true");
    let statuses = |token: String| {
        let app = &app;
        async move {
            let bearer = app.get("/api/me", &token).await;
            let basic = app.http.get(app.url("/api/me")).basic_auth("alex", Some("alex123")).send().await.unwrap();
            (bearer, basic.status().as_u16())
        }
    };
    let token = access(&app.password(WEB, "alex", "alex123", "openid").await);
    assert_eq!(statuses(token.clone()).await, (200, 200));
    assert_eq!(statuses(token.clone()).await, (200, 200), "now cached");

    store.replace_with(&disabled);
    app.reloader.users_changed();
    assert_eq!(statuses(token.clone()).await, (401, 401), "told: at once");

    store.replace_with(&enabled);
    app.reloader.users_changed();
    assert_eq!(statuses(token.clone()).await, (200, 200), "enabled again (disabling is not revoking)");
    assert_eq!(statuses(token.clone()).await, (200, 200), "cached again");

    store.replace_with(&disabled);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = statuses(token.clone()).await;
    while seen != (401, 401) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        seen = statuses(token.clone()).await;
    }
    assert_eq!(seen, (401, 401), "not told: within cache_ttl_seconds (1 s; 10 s allowed on a busy machine)");
}

// SPEC D5, F9, F10: introspection and revocation verify a token exactly as the layer
// does: tokens signed with the server's own key that the layer refuses (a `crit` header,
// a claim named twice, `iss` as an array) are inactive, and revoking one changes nothing.
#[tokio::test]
async fn introspection_refuses_what_the_layer_refuses() {
    let app = spawn_app(Opts::default()).await;
    let genuine = access(&app.password(WEB, "alex", "alex123", "openid").await);
    let (_, claims) = decode(&genuine);
    let key = jsonwebtoken::EncodingKey::from_secret(HMAC_SECRET);
    let sign = |header: &str, payload: &str| {
        let message = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).unwrap();
        format!("{message}.{signature}")
    };
    let header = r#"{"alg":"HS256","kid":"hs-1","typ":"at+jwt"}"#;
    let payload = claims.to_string();
    // The same header and claims, re-signed: accepted by both, so the forgeries below
    // fail for what they change, not for how they were made.
    let resigned = sign(header, &payload);
    assert_eq!(app.get("/api/me", &resigned).await, 200);
    assert_eq!(app.introspect(WEB, &resigned).await["active"], true);

    let body = payload.trim_start_matches('{');
    let mut iss_array = claims.clone();
    iss_array["iss"] = json!([app.issuer.as_str()]);
    let refused = [
        ("crit", sign(r#"{"alg":"HS256","kid":"hs-1","typ":"at+jwt","crit":["exp"]}"#, &payload)),
        ("claim twice", sign(header, &format!(r#"{{"sub":"admin",{body}"#))),
        ("iss array", sign(header, &iss_array.to_string())),
    ];
    let inactive = json!({"active": false});
    for (what, token) in &refused {
        assert_eq!(app.get("/api/me", token).await, 401, "{what}: the layer refuses it");
        assert_eq!(app.introspect(WEB, token).await, inactive, "{what}: so does introspection");
        assert_eq!(app.revoke(WEB, token).await.status, 200, "{what}: an unknown token is no error");
    }
    // The server's own tokens are `at+jwt`; this layer does not ask for the type.
    let untyped = sign(r#"{"alg":"HS256","kid":"hs-1"}"#, &payload);
    assert_eq!(app.introspect(WEB, &untyped).await, inactive, "not one of the server's access tokens");
    // Revoking the refused copies revoked nothing: the genuine token still works.
    assert_eq!(app.get("/api/me", &genuine).await, 200);
    assert_eq!(app.introspect(WEB, &genuine).await["active"], true);
}
