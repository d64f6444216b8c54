//! What the user-store suites share: Basic headers, an API that names its caller, and an
//! API with the built-in token server whose users live in a given store.

use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use tower_secure::code::{AccessRule, SigningKey, TokenServerSettings, Users};
use tower_secure::config::Deployment;
use tower_secure::identity::{Principal, UserStore};
use tower_secure::oauth2::TokenServer;
use tower_secure::SecureLayer;

/// `Basic base64(user:password)`.
pub fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// `DOMAIN|user|role,role` of the caller, roles sorted.
pub async fn whoami(p: Principal) -> String {
    let mut roles: Vec<&str> = p.roles().iter().map(String::as_str).collect();
    roles.sort_unstable();
    format!("{}|{}|{}", p.name().domain(), p.name().user(), roles.join(","))
}

/// `/whoami` (any caller) and `/admin` (`/permission/admin`) behind a layer that trusts the
/// built-in token server, which finds users in `store` and has the client `app` /
/// `app-secret`; its `/oauth2/token` beside them. Returns the base URL.
pub async fn token_api(store: impl UserStore) -> String {
    let deployment = Deployment::builder()
        .rule(AccessRule::new("/admin").permission("/permission/admin"))
        .token_server(
            TokenServerSettings::new("https://issuer.test")
                .signing_key(SigningKey::hs256_base64("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=")),
        )
        .build()
        .unwrap();
    let clients = Users::builder().client("app", super::cheap_hash("app-secret"), Vec::<String>::new()).build();
    let tokens =
        TokenServer::builder().deployment(&deployment).user_store(store).clients(clients.unwrap().clients).build();
    let tokens = tokens.unwrap();
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    let routes = Router::new().route("/whoami", get(whoami)).route("/admin", get(whoami)).merge(tokens.router());
    super::serve(routes.layer(layer)).await
}

/// POST /oauth2/token, password grant, client `app`; status, Retry-After, JSON body.
pub async fn password_grant(base: &str, user: &str, password: &str) -> (StatusCode, bool, serde_json::Value) {
    let form = [("grant_type", "password"), ("username", user), ("password", password)];
    let response = super::client()
        .post(format!("{base}/oauth2/token"))
        .header(AUTHORIZATION, basic("app", "app-secret"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let (status, retry_after) = (response.status(), response.headers().contains_key(RETRY_AFTER));
    (status, retry_after, response.json().await.unwrap())
}
