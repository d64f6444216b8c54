//! The `testing` module, used as a user would on the quickstart's own API: tokens from a
//! `TestIssuer` through the real layer over HTTP, handlers called directly with a chosen
//! principal behind their real `#[secure]` checks, and cheap password hashes in a store.

mod common;

#[path = "../examples/quickstart/api.rs"]
mod api;

use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use reqwest::header::AUTHORIZATION;
use tower::ServiceExt;
use tower_secure::code::{AccessRule, ScopeBinding, Users};
use tower_secure::config::Deployment;
use tower_secure::identity::{Permission, QualifiedName};
use tower_secure::testing::{cheap_password_hash, with_principal, TestIssuer};
use tower_secure::{AuthErrorKind, Principal, SecureLayer};

const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";
const VIEW_SCOPE: &str = "internal_identity_mgt_view";
const CHALLENGES: &str = "/api/users/v1/42/challenges";

/// The quickstart's rules in code, trusting `issuer`'s tokens, with Basic users whose
/// hashes are the cheap ones.
fn layer(issuer: &TestIssuer) -> SecureLayer {
    let deployment = Deployment::builder()
        .rule(AccessRule::new("/api/health").method("GET").open())
        .rule(AccessRule::new("/api/users/v1/{user_id}/challenges").method("GET").scope(VIEW_SCOPE).permission(VIEW))
        .rule(AccessRule::new("/api/admin/**").permission("/permission/admin"))
        .scope(ScopeBinding::new(VIEW_SCOPE).permission(VIEW))
        .issuer(issuer.issuer())
        .build()
        .unwrap();
    let users = Users::builder()
        .role("viewer", [VIEW])
        .role("admin", ["/permission/admin"])
        .user("alex", cheap_password_hash("alex123"), ["viewer"])
        .user("root", cheap_password_hash("root123"), ["admin"])
        .build()
        .unwrap();
    SecureLayer::builder().deployment(deployment).user_store(users.store).build().unwrap()
}

async fn get(base: &str, path: &str, authorization: &str) -> (StatusCode, String) {
    let response =
        common::client().get(format!("{base}{path}")).header(AUTHORIZATION, authorization).send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

// SPEC I5: a TestIssuer's tokens pass the real layer over HTTP with the claims they were
// minted with: the scope lets the caller in, a token without it is 403, an expired one and
// one from another TestIssuer (another random key, same `iss`) are 401; the handler sees
// the subject as the caller.
#[tokio::test]
async fn i5_test_issuer_tokens_pass_the_real_layer() {
    let issuer = TestIssuer::new("https://issuer.test");
    let base = common::serve(api::routes().layer(layer(&issuer))).await;

    let token = issuer.token("alex").scope(VIEW_SCOPE).sign().unwrap();
    let (status, body) = get(&base, CHALLENGES, &format!("Bearer {token}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["requested_by"], "alex");

    let no_scope = issuer.token("alex").scope("openid").sign().unwrap();
    assert_eq!(get(&base, CHALLENGES, &format!("Bearer {no_scope}")).await.0, StatusCode::FORBIDDEN);

    let expired = issuer.token("alex").scope(VIEW_SCOPE).expired(Duration::from_secs(120)).sign().unwrap();
    assert_eq!(get(&base, CHALLENGES, &format!("Bearer {expired}")).await.0, StatusCode::UNAUTHORIZED);

    let stranger = TestIssuer::new("https://issuer.test").token("alex").scope(VIEW_SCOPE).sign().unwrap();
    assert_eq!(get(&base, CHALLENGES, &format!("Bearer {stranger}")).await.0, StatusCode::UNAUTHORIZED);
}

// SPEC I5: cheap hashes are real argon2id hashes the Basic handler verifies (right password
// 200, wrong one 401), at argon2's minimum cost.
#[tokio::test]
async fn i5_cheap_password_hashes_work_in_a_store() {
    let hash = cheap_password_hash("alex123");
    assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
    assert_ne!(hash, cheap_password_hash("alex123"), "a fresh salt each time");
    let base = common::serve(api::routes().layer(layer(&TestIssuer::new("https://issuer.test")))).await;
    let basic = |user: &str, password: &str| {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    };
    assert_eq!(get(&base, CHALLENGES, &basic("alex", "alex123")).await.0, StatusCode::OK);
    assert_eq!(get(&base, CHALLENGES, &basic("alex", "alex124")).await.0, StatusCode::UNAUTHORIZED);
}

fn principal(name: &str, permissions: &[&str]) -> Principal {
    let mut builder = Principal::builder(QualifiedName::parse(name).unwrap(), "basic");
    for permission in permissions {
        builder = builder.permission(Permission::parse(permission).unwrap());
    }
    builder.build()
}

fn request(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

// SPEC I5: with_principal calls the quickstart's handlers directly, without the layer or a
// server: `admin_stats`'s own `#[secure(permission = "/permission/admin")]` still decides
// (200 for an admin, 403 for a viewer), the `Principal` extractor sees the given caller,
// and without the helper the `#[secure]` handler fails closed (500). A path the layer
// refuses before any rule is an error, not a request.
#[tokio::test]
async fn i5_with_principal_drives_handlers_behind_their_secure_rules() {
    let layer = layer(&TestIssuer::new("https://issuer.test"));
    let app = api::routes();

    let admin = with_principal(&layer, request("/api/admin/stats"), principal("root", &["/permission/admin"])).unwrap();
    assert_eq!(app.clone().oneshot(admin).await.unwrap().status(), StatusCode::OK);
    let viewer = with_principal(&layer, request("/api/admin/stats"), principal("alex", &[VIEW])).unwrap();
    assert_eq!(app.clone().oneshot(viewer).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.clone().oneshot(request("/api/admin/stats")).await.unwrap().status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let me = with_principal(&layer, request("/api/me"), principal("SECONDARY/sam@example.com", &[])).unwrap();
    let response = app.clone().oneshot(me).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (body["user"].as_str(), body["tenant"].as_str()),
        (Some("SECONDARY/sam@example.com"), Some("example.com"))
    );

    let error = with_principal(&layer, request("/api/%2e%2e/admin/stats"), principal("root", &[])).unwrap_err();
    assert_eq!(error.kind(), AuthErrorKind::InvalidRequest);
}
