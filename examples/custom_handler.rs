//! Plugins: a user-written authentication handler (an API key in `X-API-Key`, checked
//! against a list) and a user-written authorization handler (read-only robots), registered
//! beside the built-in `basic` handler.
//!
//! ```text
//! cargo run --example custom_handler
//! curl -i -H 'X-API-Key: robot-key-1' http://127.0.0.1:3001/api/reports        # 200
//! curl -i -X POST -H 'X-API-Key: robot-key-1' http://127.0.0.1:3001/api/reports # 403 (robots read only)
//! curl -i -H 'X-API-Key: nope' http://127.0.0.1:3001/api/reports               # 401
//! curl -i -u alex:alex123 -X POST http://127.0.0.1:3001/api/reports             # 200
//! ```

use std::collections::HashMap;

use axum::routing::get;
use axum::Router;
use http::request::Parts;
use http::HeaderValue;
use subtle::ConstantTimeEq;
use tower_secure::async_trait;
use tower_secure::authn::AuthenticationHandler;
use tower_secure::authz::{AuthorizationHandler, AuthorizationRequest};
use tower_secure::config::{load_users, Deployment};
use tower_secure::identity::{Principal, QualifiedName};
use tower_secure::{AuthError, SecureLayer};

/// API keys -> robot names. Keys are compared in constant time.
struct ApiKeys(HashMap<&'static str, &'static str>);

#[async_trait]
impl AuthenticationHandler for ApiKeys {
    fn name(&self) -> &str {
        "api_key"
    }

    fn default_priority(&self) -> i32 {
        25 // asked before basic (20)
    }

    fn can_handle(&self, request: &Parts) -> bool {
        request.headers.contains_key("x-api-key")
    }

    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
        let presented = request.headers.get("x-api-key").map(HeaderValue::as_bytes).unwrap_or_default();
        let robot = self.0.iter().find(|(key, _)| bool::from(key.as_bytes().ct_eq(presented))).map(|(_, robot)| *robot);
        let robot = robot.ok_or_else(|| AuthError::invalid_credentials("unknown api key"))?;
        let name = QualifiedName::parse(robot).map_err(|_| AuthError::internal("bad robot name"))?;
        Ok(Principal::builder(name, "api_key").roles(["robot"]).build())
    }

    fn challenge(&self, realm: &str, _error: Option<&AuthError>) -> Option<HeaderValue> {
        HeaderValue::from_str(&format!("ApiKey realm=\"{realm}\"")).ok()
    }
}

/// Robots may only read.
struct ReadOnlyRobots;

#[async_trait]
impl AuthorizationHandler for ReadOnlyRobots {
    fn name(&self) -> &str {
        "read_only_robots"
    }

    async fn authorize(&self, request: &AuthorizationRequest<'_>) -> Result<(), AuthError> {
        let read = matches!(request.request.method, http::Method::GET | http::Method::HEAD);
        if request.principal.has_role("robot") && !read {
            return Err(AuthError::forbidden("robots are read-only"));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let deployment = Deployment::from_toml_str(
        "custom_handler.toml",
        r#"
        [[resource.access_control]]
        context = "/api/reports"
        allowed_auth_handlers = ["api_key", "basic"]
        "#,
    )?;
    let users = load_users("examples/quickstart/users.toml", include_str!("quickstart/users.toml"))?;
    let layer = SecureLayer::builder()
        .deployment(deployment)
        .user_store(users)
        .authentication_handler(ApiKeys(HashMap::from([("robot-key-1", "robot1")])))
        .authorization_handler(ReadOnlyRobots)
        .build()?;
    let app =
        Router::new().route("/api/reports", get(|| async { "reports\n" }).post(|| async { "saved\n" })).layer(layer);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("custom_handler listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
