//! The authorization code flow with PKCE over real HTTP on loopback: the login and consent
//! pages, every RFC 6749 / RFC 7636 error branch, open-redirect attempts, CSRF, lockout
//! through the form, single-use codes, and the clients the flow adds (public, trusted,
//! limited scopes, password grant switched off). `requests-oauthlib` runs the flow as an
//! independent client, and headless Chromium signs in through the pages
//! (`tests/browser/login.py`, Selenium).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, SET_COOKIE};
use reqwest::{redirect, Client, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::state::{CodeRecord, MemoryState, StateBackend};
use tower_secure::{Principal, SecureLayer};

const SCOPE: &str = "internal_identity_mgt_view";
const API: &str = "/api/users/v1/42/challenges";

fn deployment_toml(issuer: &str) -> String {
    format!(
        r#"
[authentication]
realm = "codeflow"

[authentication.basic]
max_failed_attempts = 3
lockout_seconds = 300

[[resource.access_control]]
context = "/callback"
secure = false

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
kid = "codeflow"
algorithm = "HS256"
secret_base64 = "Y29kZWZsb3ctdGVzdC1rZXktMzItYnl0ZXMtbG9uZy0h"
"#
    )
}

/// `common::users_toml`'s users and the flow's clients, all redirecting to `{base}/callback`.
fn users_and_clients(base: &str) -> String {
    format!(
        r#"{users}
[[client]]
id = "spa"
redirect_uris = ["{base}/callback", "com.example.app:/oauth"]

[[client]]
id = "first-party"
redirect_uris = ["{base}/callback"]
trusted = true

[[client]]
id = "limited"
redirect_uris = ["{base}/callback"]
allowed_scopes = ["openid"]
trusted = true

[[client]]
id = "web"
secret = "{web}"
redirect_uris = ["{base}/callback"]
grant_types = ["authorization_code", "refresh_token"]

[[client]]
id = "legacy"
secret = "{web}"
grant_types = ["password"]
"#,
        users = common::users_toml(),
        web = common::cheap_hash("web-secret"),
    )
}

struct App {
    base: String,
    state: MemoryState,
}

async fn challenges(caller: Principal) -> axum::Json<Value> {
    axum::Json(json!({ "requested_by": caller.name().to_string(), "scopes": caller.scopes() }))
}

async fn start() -> App {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let deployment = Deployment::from_toml_str("deployment.toml", &deployment_toml(&base)).unwrap();
    let text = users_and_clients(&base);
    let (users, clients) = (load_users("users.toml", &text).unwrap(), load_clients("users.toml", &text).unwrap());
    let state = MemoryState::new();
    let tokens = TokenServer::builder()
        .deployment(&deployment)
        .user_store(users)
        .clients(clients)
        .state(state.clone())
        .build()
        .unwrap();
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    let app = Router::new()
        .route("/callback", get(|RawQuery(query): RawQuery| async move { query.unwrap_or_default() }))
        .route("/api/users/v1/{user_id}/challenges", get(challenges))
        .merge(tokens.router())
        .layer(layer);
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    App { base, state }
}

/// A client that shows redirects instead of following them.
fn http() -> Client {
    Client::builder().redirect(redirect::Policy::none()).timeout(Duration::from_secs(10)).build().unwrap()
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    let verifier = URL_SAFE_NO_PAD.encode(bytes);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// One browser: its cookies, and the last page's hidden form fields.
struct Browser {
    http: Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(base: &str) -> Self {
        Self { http: http(), base: base.to_owned(), cookies: HashMap::new() }
    }

    fn keep_cookies(&mut self, response: &Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if text.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn get(&mut self, path_and_query: &str) -> (StatusCode, HashMap<String, String>, String) {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.read(response).await
    }

    async fn post(&mut self, form: &[(&str, &str)]) -> (StatusCode, HashMap<String, String>, String) {
        let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let response = self
            .http
            .post(format!("{}/oauth2/authorize", self.base))
            .header(COOKIE, self.cookie_header())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        self.read(response).await
    }

    async fn read(&mut self, response: Response) -> (StatusCode, HashMap<String, String>, String) {
        self.keep_cookies(&response);
        let status = response.status();
        let mut headers: HashMap<String, String> =
            response.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect();
        headers.remove("set-cookie");
        (status, headers, response.text().await.unwrap())
    }
}

/// `form`'s hidden fields plus `extra`.
fn with_fields<'a>(hidden: &'a [(String, String)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form: Vec<(&str, &str)> = hidden.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    form.extend_from_slice(extra);
    form
}

fn authorize_query(client: &str, redirect_uri: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client)
        .append_pair("redirect_uri", redirect_uri);
    query.append_pair("code_challenge", challenge).append_pair("code_challenge_method", "S256");
    query.extend_pairs(extra);
    format!("/oauth2/authorize?{}", query.finish())
}

/// The query parameters of a redirect's `Location`, after checking it goes to `prefix`.
fn redirected_to(status: StatusCode, headers: &HashMap<String, String>, prefix: &str) -> HashMap<String, String> {
    assert_eq!(status, StatusCode::SEE_OTHER, "{headers:?}");
    let location = &headers["location"];
    assert!(location.starts_with(&format!("{prefix}?")), "{location} does not go to {prefix}");
    let query = location.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

/// A public client's token request for `code` (RFC 6749 4.1.3 with the PKCE verifier).
fn exchange_form<'a>(
    code: &'a str,
    redirect_uri: &'a str,
    verifier: &'a str,
    client_id: &'a str,
) -> [(&'a str, &'a str); 5] {
    [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        ("client_id", client_id),
    ]
}

async fn token(base: &str, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (StatusCode, Value) {
    let mut request = http().post(format!("{base}/oauth2/token")).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn api(base: &str, access_token: &str) -> StatusCode {
    http()
        .get(format!("{base}{API}"))
        .header(AUTHORIZATION, format!("Bearer {access_token}"))
        .send()
        .await
        .unwrap()
        .status()
}

/// Signs in as `user` through the login page (unless the browser is signed in) and
/// approves (unless the client is trusted); the redirect's parameters.
async fn sign_in_and_approve(
    browser: &mut Browser,
    query: &str,
    user: &str,
    password: &str,
) -> HashMap<String, String> {
    let callback = format!("{}/callback", browser.base);
    let (mut status, mut headers, mut page) = browser.get(query).await;
    if page.contains("<h1>Sign in</h1>") {
        let hidden = common::hidden_fields(&page);
        let login = with_fields(&hidden, &[("username", user), ("password", password), ("action", "login")]);
        (status, headers, page) = browser.post(&login).await;
    }
    if status == StatusCode::SEE_OTHER {
        return redirected_to(status, &headers, &callback);
    }
    assert!(page.contains("Allow access?"), "consent page expected: {page}");
    let (status, headers, _) =
        browser.post(&with_fields(&common::hidden_fields(&page), &[("action", "approve")])).await;
    redirected_to(status, &headers, &callback)
}

// SPEC D6: the whole flow for a public client: the login page (no-store, no framing, a
// strict CSP, CSRF cookie, accessible labels), the consent page naming the granted scope,
// a code delivered to the registered URI with `state` untouched, exchanged once with the
// PKCE verifier (client_id in the form, no secret), and the token calls the API. A second
// exchange of the same code fails and revokes the tokens of the first one.
#[tokio::test]
async fn d6_code_flow_with_pkce_and_single_use_codes() {
    let app = start().await;
    let (verifier, challenge) = pkce();
    let callback = format!("{}/callback", app.base);
    let state = "xyz &?=/%20ünïcode";
    let query =
        authorize_query("spa", &callback, &challenge, &[("scope", &format!("openid {SCOPE}")), ("state", state)]);
    let mut browser = Browser::new(&app.base);

    let (status, headers, page) = browser.get(&query).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-frame-options"], "DENY");
    let csp = &headers["content-security-policy"];
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains(&format!("form-action 'self' {}", app.base)), "{csp}");
    assert!(!page.contains("<script"), "no JavaScript");
    assert!(page.contains(r#"<label for="username">"#) && page.contains(r#"<label for="password">"#), "{page}");
    assert!(browser.cookies.contains_key("tower_secure_csrf"));
    let hidden = common::hidden_fields(&page);
    assert!(hidden.iter().any(|(k, v)| k == "state" && v == state), "{hidden:?}");

    let login = with_fields(&hidden, &[("username", "alex"), ("password", "alex123"), ("action", "login")]);
    let (status, _, consent) = browser.post(&login).await;
    assert_eq!(status, StatusCode::OK, "{consent}");
    assert!(consent.contains(&format!("<code>{SCOPE}</code>")) && consent.contains("<code>openid</code>"), "{consent}");
    assert!(browser.cookies.contains_key("tower_secure_session"));
    let (status, headers, _) =
        browser.post(&with_fields(&common::hidden_fields(&consent), &[("action", "approve")])).await;
    let params = redirected_to(status, &headers, &callback);
    assert_eq!(params["state"], state, "state comes back untouched");
    let code = params["code"].clone();

    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", callback.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", "spa"),
    ];
    let (status, body) = token(&app.base, &exchange, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], format!("openid {SCOPE}"));
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(body["refresh_token"].is_string(), "a public client gets refresh tokens");
    assert_eq!(api(&app.base, &access).await, StatusCode::OK);

    let (status, body) = token(&app.base, &exchange, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    assert_eq!(api(&app.base, &access).await, StatusCode::UNAUTHORIZED, "the first exchange's token is revoked");

    // A signed-in browser goes straight to consent on its next request.
    let (_, challenge2) = pkce();
    let (status, _, page) = browser.get(&authorize_query("spa", &callback, &challenge2, &[("scope", SCOPE)])).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Allow access?") && page.contains("Signed in as <strong>alex</strong>"), "{page}");
}

fn body_str<'a>(body: &'a Value, key: &str) -> &'a str {
    body[key].as_str().unwrap_or("")
}

// SPEC D6: a replayed code also ends the refresh tokens its first exchange issued.
#[tokio::test]
async fn d6_replayed_code_ends_the_refresh_family() {
    let app = start().await;
    let (verifier, challenge) = pkce();
    let callback = format!("{}/callback", app.base);
    let mut browser = Browser::new(&app.base);
    let params = sign_in_and_approve(
        &mut browser,
        &authorize_query("first-party", &callback, &challenge, &[]),
        "alex",
        "alex123",
    )
    .await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", callback.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", "first-party"),
    ];
    let (status, first) = token(&app.base, &exchange, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, _) = token(&app.base, &exchange, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", body_str(&first, "refresh_token")),
        ("client_id", "first-party"),
    ];
    let (status, body) = token(&app.base, &refresh, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
}

// SPEC D6: the token request's errors: wrong verifier, no verifier, another redirect URI,
// another client, an unknown code, an expired code (stored as the server stores codes,
// expired), and a confidential client that does not authenticate. Each is `invalid_grant`
// (or `invalid_request`/`invalid_client`) and no token; a failed attempt uses the code up.
#[tokio::test]
async fn d6_token_request_errors() {
    let app = start().await;
    let callback = format!("{}/callback", app.base);
    let mut browser = Browser::new(&app.base);
    let code_for = |client: &'static str| {
        let (verifier, challenge) = pkce();
        (client, verifier, challenge)
    };

    // Wrong verifier; the code is then used up even with the right one.
    let (client, verifier, challenge) = code_for("first-party");
    let params =
        sign_in_and_approve(&mut browser, &authorize_query(client, &callback, &challenge, &[]), "alex", "alex123")
            .await;
    let code = params["code"].as_str();
    let (wrong, _) = pkce();
    for (verifier, expected) in [(wrong.as_str(), "invalid_grant"), (verifier.as_str(), "invalid_grant")] {
        let form = exchange_form(code, &callback, verifier, client);
        let (status, body) = token(&app.base, &form, None).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some(expected)), "{body}");
    }

    // Missing or malformed verifier: invalid_request, before the code is touched.
    let (client, verifier, challenge) = code_for("first-party");
    let params =
        sign_in_and_approve(&mut browser, &authorize_query(client, &callback, &challenge, &[]), "alex", "alex123")
            .await;
    let code = params["code"].as_str();
    for bad in ["", "short", &format!("{verifier}!")] {
        let form = exchange_form(code, &callback, bad, client);
        let (status, body) = token(&app.base, &form, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
    // Another redirect URI (even one the client registered), then another client.
    let other_uri = "com.example.app:/oauth";
    let form = exchange_form(code, other_uri, &verifier, client);
    let (_, body) = token(&app.base, &form, None).await;
    assert_eq!(body["error"], "invalid_grant", "{body}");

    let (client, verifier, challenge) = code_for("first-party");
    let params =
        sign_in_and_approve(&mut browser, &authorize_query(client, &callback, &challenge, &[]), "alex", "alex123")
            .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", callback.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", "spa"),
    ];
    let (_, body) = token(&app.base, &form, None).await;
    assert_eq!(body["error"], "invalid_grant", "another client's code: {body}");
    let mut form = form;
    form[4] = ("client_id", "first-party");
    let (status, _) = token(&app.base, &form, None).await;
    assert_eq!(status, StatusCode::OK, "the code is still good for its own client");

    // Unknown and expired codes.
    let (verifier, challenge) = pkce();
    let expired = CodeRecord {
        client_id: "first-party".into(),
        redirect_uri: callback.clone(),
        user: "alex".into(),
        scopes: vec![],
        code_challenge: challenge,
        expires: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() - 1,
        family: app.state.new_family().await.unwrap(),
    };
    app.state.put_code(&Sha256::digest(b"an-expired-code").into(), &expired).await.unwrap();
    for code in ["an-expired-code", "never-issued"] {
        let form = exchange_form(code, &callback, &verifier, "first-party");
        let (_, body) = token(&app.base, &form, None).await;
        assert_eq!(body["error"], "invalid_grant", "{code}: {body}");
    }

    // A confidential client must authenticate: without its secret the client_id is not enough.
    let form = exchange_form("x", &callback, &verifier, "web");
    let (status, body) = token(&app.base, &form, None).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_client")), "{body}");
}

// SPEC D6: authorization request errors. An unknown client or an unregistered redirect
// URI (prefix, suffix, other host, other scheme, path tricks) gets an error page and never
// a redirect; once both are valid, errors go back to the client with `state`: no PKCE,
// `plain`, no method, a malformed challenge, another response type.
#[tokio::test]
async fn d6_authorization_request_errors_and_no_open_redirect() {
    let app = start().await;
    let (_, challenge) = pkce();
    let callback = format!("{}/callback", app.base);
    let mut browser = Browser::new(&app.base);

    let bad_redirects = [
        "https://evil.example/callback".to_owned(),
        format!("{callback}/x"),
        format!("{callback}?next=https://evil.example"),
        format!("{callback}/../admin"),
        format!("{}/callbac", app.base),
        callback.replace("http://", "https://"),
        callback.to_uppercase(),
        "javascript:alert(1)".to_owned(),
    ];
    for redirect_uri in &bad_redirects {
        let (status, headers, page) =
            browser.get(&authorize_query("spa", redirect_uri, &challenge, &[("state", "s")])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{redirect_uri}");
        assert!(!headers.contains_key("location"), "{redirect_uri}: redirected");
        assert!(page.contains("redirect_uri is not one the client registered"), "{page}");
        assert!(!page.contains("evil"), "the page reflects nothing sent");
    }
    for client in ["nobody", "", "legacy"] {
        let (status, headers, _) = browser.get(&authorize_query(client, &callback, &challenge, &[])).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{client}");
        assert!(!headers.contains_key("location"), "{client}");
    }
    // `spa` registered two URIs: it must say which.
    let query = format!(
        "/oauth2/authorize?response_type=code&client_id=spa&code_challenge={challenge}&code_challenge_method=S256"
    );
    assert_eq!(browser.get(&query).await.0, StatusCode::BAD_REQUEST);
    // `first-party` has one: it may leave it out.
    let query = format!("/oauth2/authorize?response_type=code&client_id=first-party&code_challenge={challenge}&code_challenge_method=S256");
    assert_eq!(browser.get(&query).await.0, StatusCode::OK);

    let plain = format!("/oauth2/authorize?response_type=code&client_id=spa&redirect_uri={callback}&code_challenge={challenge}&code_challenge_method=plain&state=s1");
    let no_method = format!("/oauth2/authorize?response_type=code&client_id=spa&redirect_uri={callback}&code_challenge={challenge}&state=s1");
    let no_pkce = format!("/oauth2/authorize?response_type=code&client_id=spa&redirect_uri={callback}&state=s1");
    let short = authorize_query("spa", &callback, "tooshort", &[("state", "s1")]);
    let token_type = authorize_query("spa", &callback, &challenge, &[("state", "s1")])
        .replace("response_type=code", "response_type=token");
    for (query, error) in [
        (plain, "invalid_request"),
        (no_method, "invalid_request"),
        (no_pkce, "invalid_request"),
        (short, "invalid_request"),
        (token_type, "unsupported_response_type"),
    ] {
        let (status, headers, _) = browser.get(&query).await;
        let params = redirected_to(status, &headers, &callback);
        assert_eq!((params["error"].as_str(), params["state"].as_str()), (error, "s1"), "{query}");
        assert!(!params.contains_key("code"));
    }
    // A repeated parameter: the page, not a redirect (which of the two would it be?).
    let repeated = format!("{}&redirect_uri=https://evil.example", authorize_query("spa", &callback, &challenge, &[]));
    let (status, headers, _) = browser.get(&repeated).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(!headers.contains_key("location"));
}

// SPEC D6: the forms: no CSRF token or another browser's is refused (403, no session, no
// code); a wrong password shows the error on the page; after `max_failed_attempts` wrong
// passwords the right one is refused too (the Basic lockout, through the form); deny goes
// back with access_denied; logout ends the session.
#[tokio::test]
async fn d6_csrf_lockout_deny_and_logout() {
    let app = start().await;
    let (_, challenge) = pkce();
    let callback = format!("{}/callback", app.base);
    let query = authorize_query("spa", &callback, &challenge, &[("state", "st")]);

    let mut browser = Browser::new(&app.base);
    let (_, _, page) = browser.get(&query).await;
    let hidden = common::hidden_fields(&page);
    let mut stranger = Browser::new(&app.base);
    stranger.get(&query).await; // its own CSRF cookie, not the one in `hidden`
    let login = with_fields(&hidden, &[("username", "alex"), ("password", "alex123"), ("action", "login")]);
    let (status, _, _) = stranger.post(&login).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a form from another browser");
    let mut no_cookie = Browser::new(&app.base);
    assert_eq!(no_cookie.post(&login).await.0, StatusCode::FORBIDDEN, "no CSRF cookie");
    let without_token: Vec<_> = login.iter().copied().filter(|(k, _)| *k != "csrf").collect();
    assert_eq!(browser.post(&without_token).await.0, StatusCode::FORBIDDEN, "no CSRF field");
    assert!(
        !stranger.cookies.contains_key("tower_secure_session") && !browser.cookies.contains_key("tower_secure_session")
    );

    // Wrong passwords: the page says so; the third locks bob out, then his right password fails.
    for attempt in 1..=3 {
        let form = with_fields(&hidden, &[("username", "bob"), ("password", "wrong"), ("action", "login")]);
        let (status, _, page) = browser.post(&form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
        assert!(page.contains("The user name or password is not correct."), "{page}");
        assert!(page.contains(r#"role="alert""#));
    }
    let form = with_fields(&hidden, &[("username", "bob"), ("password", "bob123"), ("action", "login")]);
    let (status, _, page) = browser.post(&form).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "locked out: {page}");
    assert!(!browser.cookies.contains_key("tower_secure_session"));

    // alex signs in, then denies.
    let (status, _, consent) = browser.post(&login).await;
    assert_eq!(status, StatusCode::OK, "{consent}");
    let (status, headers, _) =
        browser.post(&with_fields(&common::hidden_fields(&consent), &[("action", "deny")])).await;
    let params = redirected_to(status, &headers, &callback);
    assert_eq!((params["error"].as_str(), params["state"].as_str()), ("access_denied", "st"));
    assert!(!params.contains_key("code"));

    // Logout: the next authorization request shows the login page again.
    let (status, _, _) = browser.get("/oauth2/logout").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!browser.cookies.contains_key("tower_secure_session"));
    let (_, _, page) = browser.get(&query).await;
    assert!(page.contains("<h1>Sign in</h1>"), "{page}");
}

// SPEC D6: per-client settings: a confidential client authenticates at the token endpoint;
// its password grant is switched off (`grant_types`); `allowed_scopes` caps what a token
// gets; public clients are refused the password grant at load; discovery lists the flow.
#[tokio::test]
async fn d6_client_settings_and_discovery() {
    let app = start().await;
    let callback = format!("{}/callback", app.base);
    let mut browser = Browser::new(&app.base);

    let (verifier, challenge) = pkce();
    let params = sign_in_and_approve(
        &mut browser,
        &authorize_query("web", &callback, &challenge, &[("scope", SCOPE)]),
        "alex",
        "alex123",
    )
    .await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", callback.as_str()),
        ("code_verifier", verifier.as_str()),
    ];
    let (status, body) = token(&app.base, &form, Some(("web", "web-secret"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], SCOPE);
    let password = [("grant_type", "password"), ("username", "alex"), ("password", "alex123")];
    let (status, body) = token(&app.base, &password, Some(("web", "web-secret"))).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unauthorized_client")), "{body}");
    // The legacy client keeps its password grant.
    assert_eq!(token(&app.base, &password, Some(("legacy", "web-secret"))).await.0, StatusCode::OK);
    // A public client cannot use the password grant: it has no secret to authenticate with.
    let form = [("grant_type", "password"), ("username", "alex"), ("password", "alex123"), ("client_id", "spa")];
    assert_eq!(token(&app.base, &form, None).await.1["error"], "unauthorized_client");

    // `limited` may only get openid, whatever alex may hold.
    let (verifier, challenge) = pkce();
    let query = authorize_query("limited", &callback, &challenge, &[("scope", &format!("openid {SCOPE}"))]);
    let params = sign_in_and_approve(&mut browser, &query, "alex", "alex123").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", callback.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", "limited"),
    ];
    let (status, body) = token(&app.base, &form, None).await;
    assert_eq!((status, body["scope"].as_str()), (StatusCode::OK, Some("openid")), "{body}");
    assert_eq!(api(&app.base, body_str(&body, "access_token")).await, StatusCode::FORBIDDEN);

    let error = load_clients(
        "users.toml",
        "[[client]]\nid = \"p\"\nredirect_uris = [\"https://a.example/cb\"]\ngrant_types = [\"password\"]\n",
    )
    .unwrap_err();
    assert!(error.to_string().contains("users.toml:4") && error.to_string().contains("grant_types"), "{error}");
    let error = load_clients("users.toml", "[[client]]\nid = \"p\"\n").unwrap_err();
    assert!(error.to_string().contains("redirect_uris"), "{error}");
    for uri in ["http://example.com/cb", "https://a.example/cb#frag", "/relative", "javascript:alert(1)"] {
        let text = format!("[[client]]\nid = \"p\"\nredirect_uris = [\"{uri}\"]\n");
        let error = load_clients("users.toml", &text).unwrap_err();
        assert!(
            error.to_string().contains("users.toml:3") && error.to_string().contains("redirect_uris"),
            "{uri}: {error}"
        );
    }

    let metadata: Value = http()
        .get(format!("{}/.well-known/oauth-authorization-server", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["authorization_endpoint"], format!("{}/oauth2/authorize", app.base));
    assert_eq!(metadata["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(metadata["response_types_supported"], json!(["code"]));
    let grants = metadata["grant_types_supported"].as_array().unwrap();
    assert!(grants.contains(&json!("authorization_code")), "{grants:?}");
}

// SPEC D6: an independent client, requests-oauthlib's OAuth2Session with PKCE (S256),
// runs the whole flow: authorization URL, the login and consent forms posted as a browser
// would, the code exchanged (public client: client_id, no secret), the API called with the
// token. The script records; the assertions are here.
#[tokio::test]
async fn d6_requests_oauthlib_runs_the_code_flow() {
    let app = start().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/oauth_client/code_flow.py");
    let config = json!({ "client_id": "spa", "redirect_uri": format!("{}/callback", app.base), "scope": format!("openid {SCOPE}"),
                         "user": "alex", "password": "alex123", "api": API });
    let report = run_script(script, &[&app.base, &config.to_string()], Duration::from_secs(60)).await;
    assert_eq!(report["login_page_status"], 200, "{report}");
    assert!(report["authorization_url"].as_str().unwrap().contains("code_challenge_method=S256"), "{report}");
    assert_eq!(report["redirect_status"], 303, "{report}");
    assert_eq!(report["state_matches"], true, "{report}");
    assert_eq!(report["token"]["token_type"], "Bearer", "{report}");
    assert_eq!(report["token"]["scope"], json!(["openid", SCOPE]), "{report}");
    assert_eq!(report["api_status"], 200, "{report}");
    assert_eq!(report["api_body"]["requested_by"], "alex", "{report}");
}

/// Runs one of the Python scripts with the provisioned interpreter (offline: no proxy, no
/// Selenium Manager downloads), within `limit`; the JSON report it prints.
async fn run_script(script: &str, args: &[&str], limit: Duration) -> Value {
    let child = tokio::process::Command::new(common::python())
        .arg(script)
        .args(args)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("SE_OFFLINE", "true")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run the test environment's Python (run scripts/test): {e}"));
    let output = tokio::time::timeout(limit, child.wait_with_output()).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed: {stderr}");
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"))
}

/// A program the test script provisions (`TOWER_SECURE_<name>`), or its Debian path; the
/// test fails, naming the script, when neither exists: it never skips.
fn provisioned(variable: &str, debian_path: &str) -> String {
    let path = std::env::var(variable).unwrap_or_else(|_| debian_path.to_owned());
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} ({variable}) is missing: scripts/test provisions it (Debian packages chromium, chromium-driver)"
    );
    path
}

// SPEC D6: in a real browser (headless Chromium through its WebDriver, driven by
// Selenium): the login page renders with its labels (a screenshot is saved for the
// README), a wrong password shows the error on the page, the right one leads to the
// consent page listing the scopes, Allow lands on the redirect URI with a code and the
// state; the test exchanges the code with its verifier and calls the API with the token.
#[tokio::test]
async fn d6_login_in_a_real_browser() {
    let app = start().await;
    let (verifier, challenge) = pkce();
    let callback = format!("{}/callback", app.base);
    let query = authorize_query(
        "spa",
        &callback,
        &challenge,
        &[("scope", &format!("openid {SCOPE}")), ("state", "browser-state")],
    );
    let screenshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&screenshots).unwrap();
    let screenshot = screenshots.join("login-page.png");
    let _ = std::fs::remove_file(&screenshot);
    let config = json!({
        "authorize_url": format!("{}{query}", app.base),
        "redirect_uri": callback,
        "user": "alex", "password": "alex123", "wrong_password": "alex124",
        "screenshot": screenshot,
        "chromium": provisioned("TOWER_SECURE_CHROMIUM", "/usr/bin/chromium"),
        "chromedriver": provisioned("TOWER_SECURE_CHROMEDRIVER", "/usr/bin/chromedriver"),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/browser/login.py");
    let report = run_script(script, &[&config.to_string()], Duration::from_secs(120)).await;

    assert_eq!(report["login_title"], "Sign in", "{report}");
    assert_eq!(report["labels"], json!({ "username": "User name", "password": "Password" }), "{report}");
    let png = std::fs::read(&screenshot).expect("the login page's screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 2000, "not a PNG screenshot");
    assert_eq!(report["error_text"], "The user name or password is not correct.", "{report}");
    assert_eq!(report["consent_title"], "Allow access?", "{report}");
    assert_eq!(report["consent_scopes"], json!(["openid", SCOPE]), "{report}");

    let final_url = report["final_url"].as_str().unwrap();
    let params = redirected_to(
        StatusCode::SEE_OTHER,
        &HashMap::from([("location".to_owned(), final_url.to_owned())]),
        &callback,
    );
    assert_eq!(params["state"], "browser-state");
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", params["code"].as_str()),
        ("redirect_uri", callback.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", "spa"),
    ];
    let (status, body) = token(&app.base, &exchange, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(api(&app.base, body_str(&body, "access_token")).await, StatusCode::OK);
}
