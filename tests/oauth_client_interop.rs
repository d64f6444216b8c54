//! The token endpoint driven by an OAuth2 client nobody here wrote: Python's
//! `requests-oauthlib` (over `oauthlib` and `requests`), with PyJWT verifying the issued
//! tokens against the published JWKS. The script `tests/oauth_client/client.py` only
//! records what it sent and got back; the assertions are here.
//!
//! Needs the Python environment `scripts/test` provisions (`requests-oauthlib`,
//! `pyjwt[crypto]`); without it the test fails and names the script.

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::{Principal, SecureLayer};

const SCOPE: &str = "internal_identity_mgt_view";
const API: &str = "/api/users/v1/42/challenges";
/// The password-grant client. The secret has a colon (Basic splits at the first one) and
/// only characters form-urlencoding leaves alone, as requests sends Basic unencoded.
const APP_ID: &str = "py-app";
const APP_SECRET: &str = "py:secret~with.colon_1-x";
const SERVICE_ID: &str = "py-service";
const SERVICE_SECRET: &str = "service-secret-2";

/// How long the whole Python run may take (it makes about twenty requests).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(90);

/// The quickstart's rules for the scoped route; any other route needs an authenticated caller.
fn deployment_toml(issuer: &str, key_file: &str) -> String {
    format!(
        r#"
[authentication]
realm = "interop"

[[resource.access_control]]
context = "/api/users/v1/{{user_id}}/challenges"
http_method = "GET"
scope = "{SCOPE}"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]

[[scope]]
name = "{SCOPE}"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]

[scope_validation]
whitelist = ["openid"]

[oauth2_server]
issuer = "{issuer}"
access_token_seconds = 600

[[oauth2_server.key]]
kid = "interop-rs256"
algorithm = "RS256"
pem_file = "{key_file}"
"#
    )
}

/// `common::users_toml` plus the two clients: the app (password and refresh grants) and a
/// service (client credentials, holding the identity-view role).
fn users_and_clients() -> String {
    format!(
        r#"{users}
[[client]]
id = "{APP_ID}"
secret = "{app}"
roles = ["everyone"]
grant_types = ["password", "refresh_token"]

[[client]]
id = "{SERVICE_ID}"
secret = "{service}"
roles = ["identity_viewer"]
grant_types = ["client_credentials"]
"#,
        users = common::users_toml(),
        app = common::cheap_hash(APP_SECRET),
        service = common::cheap_hash(SERVICE_SECRET),
    )
}

async fn challenges(Path(user_id): Path<String>, caller: Principal) -> Json<Value> {
    Json(json!({ "user_id": user_id, "requested_by": caller.name().to_string() }))
}

async fn me(caller: Principal) -> Json<Value> {
    Json(json!({
        "user": caller.name().to_string(),
        "scopes": caller.scopes(),
        "client_id": caller.client_id(),
        "authenticated_by": caller.authenticated_by(),
    }))
}

/// The whole app on 127.0.0.1:0 as the quickstart composes it (token router merged in, the
/// layer around both), issuer = its own address; returns the base URL.
async fn start_app(key_file: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let deployment = Deployment::from_toml_str("deployment.toml", &deployment_toml(&base, key_file)).unwrap();
    let users_text = users_and_clients();
    let users = load_users("users.toml", &users_text).unwrap();
    let clients = load_clients("users.toml", &users_text).unwrap();
    let tokens = TokenServer::builder().deployment(&deployment).user_store(users).clients(clients).build().unwrap();
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    let app = Router::new()
        .route("/api/users/v1/{user_id}/challenges", get(challenges))
        .route("/api/me", get(me))
        .merge(tokens.router())
        .layer(layer);
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    base
}

/// Runs the client script against `base`; its JSON report.
async fn run_client(base: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oauth_client/client.py");
    let config = json!({
        "app": { "id": APP_ID, "secret": APP_SECRET },
        "service": { "id": SERVICE_ID, "secret": SERVICE_SECRET },
        "users": { "alex": "alex123", "bob": "bob123" },
        "scope": SCOPE,
        "api": API,
    });
    let child = tokio::process::Command::new(common::python())
        .arg(script)
        .arg(base)
        .arg(config.to_string())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the test environment's Python (run scripts/test): {e}"));
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the Python OAuth2 client did not finish within {SCRIPT_TIMEOUT:?}"))
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(
        output.status.code(),
        Some(3),
        "requests-oauthlib or PyJWT is missing from the test environment: {stderr}\n\
         run scripts/test, which provisions them"
    );
    assert!(output.status.success(), "the Python OAuth2 client failed ({}): {stderr}", output.status);
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("client output is not JSON ({e}): {stdout}\n{stderr}"))
}

/// A step of the report; a step the script could not finish names its exception.
fn step<'a>(report: &'a Value, name: &str) -> &'a Value {
    let step = &report[name];
    assert!(step.is_object(), "step {name} missing from the client report: {report:#}");
    assert!(step.get("unexpected").is_none(), "step {name} raised in the client: {:#}", step["unexpected"]);
    step
}

/// The sent request's Basic credential, decoded by the script.
fn basic_id(sent: &Value) -> &str {
    sent["basic"]["id"].as_str().unwrap_or_else(|| panic!("no Basic credential sent: {sent:#}"))
}

// SPEC D1, D2, D3, D5: requests-oauthlib's password, client credentials and refresh flows
// against the whole app; tokens without the scope get 403. One Python run, checked step by step.
#[tokio::test(flavor = "multi_thread")]
async fn requests_oauthlib_password_client_credentials_refresh_and_scope() {
    let dir = tempfile::tempdir().unwrap();
    common::openssl_genpkeys(dir.path(), &[("rs", common::RSA_2048)]);
    let key_file = dir.path().join("rs.pem").display().to_string();
    let base = start_app(&key_file).await;
    let report = run_client(&base).await;
    check_discovery(&report, &base);
    check_password_grant(&report, &base);
    check_client_id_in_body(&report);
    check_client_secret_in_body_refused(&report);
    check_client_credentials(&report);
    check_refresh(&report);
    check_lacking_scope(&report);
    check_narrowed_scope(&report);
}

/// SPEC D5: the discovery document a client starts from names this server's endpoints
/// and Basic as the client authentication method (`none`: public clients, which prove
/// their codes with PKCE instead).
fn check_discovery(report: &Value, base: &str) {
    let discovery = &report["discovery"];
    assert_eq!(discovery["issuer"], base);
    assert_eq!(discovery["token_endpoint"], format!("{base}/oauth2/token"));
    assert_eq!(discovery["jwks_uri"], format!("{base}/oauth2/jwks"));
    assert_eq!(discovery["token_endpoint_auth_methods_supported"], json!(["client_secret_basic", "none"]));
}

/// SPEC D1 (a): the password grant as requests-oauthlib documents it. The client id and
/// secret go in Basic (the secret's colon intact), username and password in the body.
fn check_password_grant(report: &Value, base: &str) {
    let versions = &report["versions"];
    let password = step(report, "password");
    let sent = &password["sent"];
    assert_eq!(sent["status"], 200, "password grant refused ({versions}): {sent:#}");
    assert_eq!(sent["basic"], json!({ "id": APP_ID, "secret": APP_SECRET }));
    assert_eq!(sent["body"]["grant_type"], "password");
    assert_eq!(sent["body"]["username"], "alex");
    assert_eq!(sent["body"]["scope"], SCOPE);
    assert!(sent["body"].get("client_secret").is_none(), "{sent:#}");
    assert_eq!(sent["cache_control"], "no-store");
    // SPEC D2: alex holds the permission the scope is bound to, so it is granted.
    assert_eq!(sent["response"]["scope"], SCOPE);
    assert_eq!(sent["response"]["token_type"], "Bearer");
    assert_eq!(sent["response"]["expires_in"], 600);
    let token = &password["token"];
    assert_eq!(token["scope"], json!([SCOPE]));
    assert_eq!(token["has_refresh_token"], true);
    assert_eq!(token["has_expires_at"], true);
    // PyJWT verifies the signature with the key from the JWKS, and the claims.
    let verified = &password["verified"];
    assert_eq!(verified["header"]["alg"], "RS256");
    assert_eq!(verified["header"]["kid"], "interop-rs256");
    assert_eq!(verified["header"]["typ"], "at+jwt");
    let claims = &verified["claims"];
    assert_eq!(claims["iss"], base);
    assert_eq!(claims["sub"], "alex");
    assert_eq!(claims["aud"], APP_ID);
    assert_eq!(claims["client_id"], APP_ID);
    assert_eq!(claims["scope"], SCOPE);
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 600);
    // The session's bearer token opens the scoped API and names the caller.
    assert_eq!(password["api"]["status"], 200, "{:#}", password["api"]);
    assert_eq!(password["api"]["body"], json!({ "user_id": "42", "requested_by": "alex" }));
    assert_eq!(password["me"]["status"], 200, "{:#}", password["me"]);
    assert_eq!(password["me"]["body"]["user"], "alex");
    assert_eq!(password["me"]["body"]["scopes"], json!([SCOPE]));
    assert_eq!(password["me"]["body"]["client_id"], APP_ID);
}

/// SPEC D1 (a'): client_id in the body as well as in Basic, naming the same client.
fn check_client_id_in_body(report: &Value) {
    let body_id = step(report, "password_body_client_id");
    let sent = &body_id["sent"];
    assert_eq!(sent["body"]["client_id"], APP_ID, "the client did not put client_id in the body: {sent:#}");
    assert_eq!(basic_id(sent), APP_ID);
    assert_eq!(sent["status"], 200, "client_id in body + Basic refused: {sent:#}");
    assert_eq!(body_id["api"]["status"], 200, "{body_id:#}");
}

/// SPEC D1: the secret in the body (client_secret_post, no Basic) is not accepted:
/// 401 invalid_client with a Basic challenge, which oauthlib raises as InvalidClientError.
fn check_client_secret_in_body_refused(report: &Value) {
    let secret_post = step(report, "password_secret_in_body");
    let sent = &secret_post["sent"];
    assert_eq!(sent["body"]["client_secret"], APP_SECRET, "{sent:#}");
    assert!(sent["basic"].is_null(), "{sent:#}");
    assert_eq!(sent["status"], 401, "{sent:#}");
    assert_eq!(sent["response"]["error"], "invalid_client");
    assert!(sent["www_authenticate"].as_str().unwrap_or_default().starts_with("Basic realm=\"interop\""), "{sent:#}");
    assert_eq!(secret_post["error"]["error"], "invalid_client", "{secret_post:#}");
}

/// SPEC D1, D2 (b): client_credentials with BackendApplicationClient; the service's role
/// holds the scope's permission; no refresh token (RFC 6749 4.4.3).
fn check_client_credentials(report: &Value) {
    let service = step(report, "client_credentials");
    let sent = &service["sent"];
    assert_eq!(sent["status"], 200, "client_credentials refused: {sent:#}");
    assert_eq!(basic_id(sent), SERVICE_ID);
    assert_eq!(sent["body"]["grant_type"], "client_credentials");
    assert_eq!(service["token"]["scope"], json!([SCOPE]));
    assert_eq!(service["token"]["has_refresh_token"], false);
    let claims = &service["verified"]["claims"];
    assert_eq!(claims["sub"], SERVICE_ID);
    assert_eq!(claims["client_id"], SERVICE_ID);
    assert_eq!(claims["aud"], SERVICE_ID);
    assert_eq!(service["api"]["status"], 200, "{:#}", service["api"]);
    assert_eq!(service["api"]["body"]["requested_by"], SERVICE_ID);
    assert_eq!(service["me"]["body"]["client_id"], SERVICE_ID);
}

/// SPEC D1 (c): session.refresh_token rotates both tokens, keeps the scope, and the new
/// access token opens the API.
fn check_refresh(report: &Value) {
    let refresh = step(report, "refresh");
    let sent = &refresh["sent"];
    assert_eq!(sent["status"], 200, "refresh refused: {sent:#}");
    assert_eq!(basic_id(sent), APP_ID);
    assert_eq!(sent["body"]["grant_type"], "refresh_token");
    assert_eq!(refresh["access_rotated"], true);
    assert_eq!(refresh["refresh_rotated"], true);
    assert_eq!(refresh["token"]["scope"], json!([SCOPE]));
    assert_eq!(refresh["verified"]["claims"]["sub"], "alex");
    assert_eq!(refresh["verified"]["claims"]["scope"], SCOPE);
    assert_eq!(refresh["api"]["status"], 200, "{:#}", refresh["api"]);
    assert_eq!(refresh["api"]["body"]["requested_by"], "alex");
    // RFC 9700 4.14: the spent refresh token again is invalid_grant, and the replay ends the
    // family: the access token issued by the refresh stops working.
    let replay = &refresh["replay"];
    assert_eq!(replay["sent"]["status"], 400, "{replay:#}");
    assert_eq!(replay["error"]["error"], "invalid_grant", "{replay:#}");
    assert_eq!(refresh["api_after_replay"]["status"], 401, "{:#}", refresh["api_after_replay"]);
}

/// SPEC D2 (d): bob lacks the bound permission. The token is issued without the scope,
/// and the scoped API answers 403 insufficient_scope; routes without a scope still open.
fn check_lacking_scope(report: &Value) {
    let lacking = step(report, "lacking_scope");
    assert_eq!(lacking["sent"]["status"], 200, "{:#}", lacking["sent"]);
    assert!(lacking["verified"]["claims"].get("scope").is_none(), "{:#}", lacking["verified"]);
    assert_eq!(lacking["api"]["status"], 403, "{:#}", lacking["api"]);
    let challenge = lacking["api"]["www_authenticate"].as_str().unwrap_or_default();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert_eq!(lacking["me"]["status"], 200);
    assert_eq!(lacking["me"]["body"]["user"], "bob");
    // SPEC D8: the response's empty `scope` tells the client nothing was granted (absent, RFC
    // 6749 5.1 would read as "what you asked for"): oauthlib reports the change, and parses
    // the empty scope as one empty name.
    assert_eq!(lacking["sent"]["response"]["scope"], "", "{:#}", lacking["sent"]);
    assert_eq!(lacking["warning"]["old"], json!(["internal_identity_mgt_view"]), "{lacking:#}");
    assert_eq!(lacking["warning"]["new"], json!([""]), "{lacking:#}");
}

/// SPEC D2, D3 (d'): asking for the scope and a whitelisted one grants only the latter;
/// the response names it, so oauthlib raises its "Scope has changed" warning, and the
/// narrowed token is still refused by the scoped API.
fn check_narrowed_scope(report: &Value) {
    let narrowed = step(report, "narrowed_scope");
    assert_eq!(narrowed["sent"]["response"]["scope"], "openid", "{:#}", narrowed["sent"]);
    assert_eq!(narrowed["warning"]["old"], json!(["internal_identity_mgt_view", "openid"]), "{narrowed:#}");
    assert_eq!(narrowed["warning"]["new"], json!(["openid"]), "{narrowed:#}");
    assert_eq!(narrowed["token"]["scope"], json!(["openid"]));
    assert_eq!(narrowed["api"]["status"], 403, "{:#}", narrowed["api"]);
}
