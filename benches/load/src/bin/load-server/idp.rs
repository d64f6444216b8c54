//! A minimal RFC 7662 introspection endpoint on its own 127.0.0.1 port, in the bench
//! server's process: the one opaque bench token is active (alex, the route's scope), any
//! other is inactive. Each call is counted on stderr, so a run's log shows the cache held.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use base64::Engine as _;
use serde_json::json;
use tower_secure_load::{AUDIENCE, GOOD_USER, INTROSPECTION_CLIENT, OPAQUE_TOKEN, SCOPE};

#[derive(Default)]
struct Calls(AtomicU64);

fn client_authorization() -> String {
    let (id, secret) = INTROSPECTION_CLIENT;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}")))
}

async fn introspect(
    State(calls): State<Arc<Calls>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let n = calls.0.fetch_add(1, Ordering::Relaxed) + 1;
    eprintln!("idp: introspection call {n}");
    if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(client_authorization().as_str()) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    if form.get("token").map(String::as_str) != Some(OPAQUE_TOKEN) {
        return Json(json!({"active": false})).into_response();
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Json(json!({
        "active": true, "sub": GOOD_USER.0, "aud": AUDIENCE, "scope": SCOPE, "client_id": "bench-client",
        "token_type": "Bearer", "exp": now + 3600, "iat": now,
    }))
    .into_response()
}

/// Starts the endpoint on the current runtime; returns its URL.
pub async fn start() -> String {
    let app = Router::new().route("/introspect", post(introspect)).with_state(Arc::new(Calls::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the introspection endpoint");
    let addr = listener.local_addr().expect("the endpoint's address");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve the introspection endpoint") });
    format!("http://{addr}/introspect")
}
