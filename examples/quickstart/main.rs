//! The quickstart: an axum API secured by tower-secure with the rules and users shipped
//! beside this file (embedded, so it runs from any directory).
//!
//! ```text
//! cargo run --example quickstart
//! curl -i http://127.0.0.1:3000/api/users/v1/42/challenges                 # 401
//! curl -i -u alex:alex123 http://127.0.0.1:3000/api/users/v1/42/challenges # 200
//! curl -i -u bob:bob123 http://127.0.0.1:3000/api/users/v1/42/challenges   # 403
//! ```
//!
//! `TOWER_SECURE_DEPLOYMENT` and `TOWER_SECURE_USERS` point it at other files; `ADDR`
//! changes the listen address (default 127.0.0.1:3000).

use std::io::Write as _;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_secure::config::{load_users, load_users_file, Deployment};
use tower_secure::{Principal, SecureLayer};

const DEPLOYMENT: &str = include_str!("deployment.toml");
const USERS: &str = include_str!("users.toml");

async fn health() -> Json<Value> {
    Json(json!({ "status": "UP" }))
}

async fn challenges(Path(user_id): Path<String>, caller: Principal) -> Json<Value> {
    Json(json!({
        "user_id": user_id,
        "challenges": [{ "question": "Favourite food?", "answer": "(hidden)" }],
        "requested_by": caller.name().to_string(),
    }))
}

async fn me(caller: Principal) -> Json<Value> {
    Json(json!({
        "user": caller.name().to_string(),
        "tenant": caller.name().tenant(),
        "roles": caller.roles(),
        "authenticated_by": caller.authenticated_by(),
    }))
}

async fn admin_stats() -> Json<Value> {
    Json(json!({ "users": 3 }))
}

/// The app, secured. Public so the tests can serve exactly what the README shows.
fn app() -> Result<Router, Box<dyn std::error::Error>> {
    let deployment = match std::env::var_os("TOWER_SECURE_DEPLOYMENT") {
        Some(path) => Deployment::from_file(path)?,
        None => Deployment::from_toml_str("examples/quickstart/deployment.toml", DEPLOYMENT)?,
    };
    let users = match std::env::var_os("TOWER_SECURE_USERS") {
        Some(path) => load_users_file(path)?,
        None => load_users("examples/quickstart/users.toml", USERS)?,
    };
    let layer = SecureLayer::builder().deployment(deployment).user_store(users).build()?;
    Ok(Router::new()
        .route("/api/health", get(health))
        .route("/api/users/v1/{user_id}/challenges", get(challenges))
        .route("/api/me", get(me))
        .route("/api/admin/stats", get(admin_stats))
        .layer(layer))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app = app()?;
    // The banner is best effort: a closed stdout (`| head -1`) must not stop the server.
    let addr = listener.local_addr()?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "quickstart listening on http://{addr}");
    let _ = writeln!(stdout, "try: curl -i -u alex:alex123 http://{addr}/api/users/v1/42/challenges");
    let _ = stdout.flush();
    axum::serve(listener, app).await?;
    Ok(())
}
