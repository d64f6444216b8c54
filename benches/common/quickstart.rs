//! The quickstart's API in process for the benchmarks: its rules, users and clients, its
//! token server on a chosen state backend, and requests driven with `oneshot`.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use tower::ServiceExt as _;
use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::oauth2::{TokenServer, TokenServerBuilder};
use tower_secure::state::StateBackend;
use tower_secure::SecureLayer;

pub const DEPLOYMENT: &str = include_str!("../../examples/quickstart/deployment.toml");
pub const USERS: &str = include_str!("../../examples/quickstart/users.toml");
pub const PATH: &str = "/api/users/v1/42/challenges";

pub fn encoded(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Gives a token server builder its state backend.
pub type WithState = Box<dyn FnOnce(TokenServerBuilder) -> TokenServerBuilder>;

/// The quickstart's API secured by a token server on `state` (`None`: the default memory).
/// Like every app here it ends with `with_state(())`, as `axum::serve` does once per
/// connection: its handlers become routes once, not again at each `oneshot`.
pub async fn app(state: Option<WithState>) -> Router {
    let deployment = Deployment::from_toml_str("deployment.toml", DEPLOYMENT).expect("rules");
    let mut builder = TokenServer::builder()
        .deployment(&deployment)
        .user_store(load_users("users.toml", USERS).expect("users"))
        .clients(load_clients("users.toml", USERS).expect("clients"));
    if let Some(state) = state {
        builder = state(builder);
    }
    let tokens = builder.build().expect("token server");
    assert!(tokens.ready(Duration::from_secs(5)).await, "the state backend did not answer");
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().expect("layer");
    Router::new()
        .route("/api/users/v1/{user_id}/challenges", get(|| async { "ok" }))
        .merge(tokens.router())
        .layer(layer)
        .with_state(())
}

pub fn with(state: impl StateBackend) -> Option<WithState> {
    Some(Box::new(move |builder| builder.state(state)))
}

pub async fn send(app: &Router, request: Request<Body>) -> (StatusCode, bytes::Bytes) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    (status, response.into_body().collect().await.expect("body").to_bytes())
}

pub fn get_with(auth: &HeaderValue) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = Uri::from_static(PATH);
    request.headers_mut().insert(AUTHORIZATION, auth.clone());
    request
}

/// alex's access token from the password grant.
pub async fn bearer(app: &Router) -> HeaderValue {
    let form = "grant_type=password&username=alex&password=alex123&scope=internal_identity_mgt_view";
    let request = Request::builder()
        .method(Method::POST)
        .uri("/oauth2/token")
        .header(AUTHORIZATION, format!("Basic {}", encoded("quickstart-client", "quickstart-secret")))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .expect("request");
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let token = body["access_token"].as_str().expect("access_token");
    HeaderValue::from_str(&format!("Bearer {token}")).expect("header")
}

/// Only a route, no layer: the baseline.
pub fn plain() -> Router {
    Router::new().route("/api/users/v1/{user_id}/challenges", get(|| async { "ok" })).with_state(())
}

/// A request to the benchmarked route without credentials.
pub fn anonymous() -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = Uri::from_static(PATH);
    request
}

/// alex's Basic credential.
pub fn basic() -> HeaderValue {
    HeaderValue::from_str(&format!("Basic {}", encoded("alex", "alex123"))).expect("header")
}
