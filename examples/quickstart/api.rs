//! The quickstart's API, shared by the quickstart (secured by its files) and the
//! code-first example (secured in code), so the two secure exactly the same handlers.

use axum::extract::{Path, Query};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_secure::{secure, Principal};

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

/// The handler carries its own rule: the rule file's `/api/admin/**` rule and this one both
/// apply (deny wins), unless a rule file marks a rule `override = true`.
#[secure(permission = "/permission/admin", path = "/api/admin/stats", method = "GET")]
async fn admin_stats() -> Json<Value> {
    Json(json!({ "users": 3 }))
}

/// The redirect URI of the authorization code flow: shows the code to exchange.
async fn callback(Query(params): Query<std::collections::HashMap<String, String>>) -> Json<Value> {
    Json(json!({
        "code": params.get("code"),
        "state": params.get("state"),
        "error": params.get("error"),
        "next": "POST /oauth2/token with grant_type=authorization_code, this code, client_id, redirect_uri and code_verifier",
    }))
}

/// The API's routes, not yet secured: add the layer to the finished router.
pub fn routes() -> Router {
    Router::new()
        .route("/api/health", get(health))
        .route("/api/users/v1/{user_id}/challenges", get(challenges))
        .route("/api/me", get(me))
        .route("/api/admin/stats", get(admin_stats))
        .route("/callback", get(callback))
}
