//! The quickstart's API, secured with no TOML at all: rules, scopes, users, clients and
//! the token server are built in code, and the app answers every request exactly as the
//! quickstart does (tests/examples_curl.rs checks it request by request).
//!
//! ```text
//! cargo run --example code_first
//! curl -i -u alex:alex123 http://127.0.0.1:3000/api/users/v1/42/challenges # 200
//! ```
//!
//! `ADDR` changes the listen address (default 127.0.0.1:3000).

use std::io::Write as _;

#[path = "quickstart/api.rs"]
mod api;

use axum::Router;
use tower_secure::code::{AccessRule, ScopeBinding, SigningKey, TokenServerSettings, Users};
use tower_secure::config::Deployment;
use tower_secure::oauth2::TokenServer;
use tower_secure::SecureLayer;

/// The permission that reading a user's challenge answers needs, and the scope bound to it.
const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";
const VIEW_SCOPE: &str = "internal_identity_mgt_view";

/// A DEMO KEY, published with the source: never use it for anything real.
const DEMO_SIGNING_KEY: &str = include_str!("code_first.pem");

/// Who may call what: the quickstart's rule file, in code.
fn deployment(issuer: String) -> Result<Deployment, tower_secure::config::ConfigError> {
    Deployment::builder()
        .realm("quickstart")
        .rule(AccessRule::new("/api/health").method("GET").open())
        .rule(AccessRule::new("/callback").method("GET").open())
        .rule(AccessRule::new("/api/users/v1/{user_id}/challenges").method("GET").scope(VIEW_SCOPE).permission(VIEW))
        .rule(AccessRule::new("/api/admin/**").permission("/permission/admin").handlers(["basic"]))
        .scope(ScopeBinding::new(VIEW_SCOPE).permission(VIEW))
        .scope_whitelist(["openid", "^device_.*"])
        .token_server(
            TokenServerSettings::new(issuer)
                .access_token_seconds(3600)
                .refresh_token_seconds(86_400)
                .signing_key(SigningKey::pem("RS256", DEMO_SIGNING_KEY).kid("quickstart-2026")),
        )
        .build()
}

/// The quickstart's users and client (passwords alex123, bob123, admin; secret
/// quickstart-secret), as argon2id hashes made with `tower-secure hash-password`.
fn users() -> Result<Users, tower_secure::config::ConfigError> {
    Users::builder()
        .role("identity_viewer", [VIEW])
        .role("admin", ["/permission/admin"])
        .role("everyone", ["/permission/admin/login"])
        .user(
            "alex",
            "$argon2id$v=19$m=19456,t=2,p=1$+1S3FD2LfbxN8we2YYXPeg$3sjxh9P53KQqyOvtTADOwTya7U1aTdAxDZhlzAgESvA",
            ["identity_viewer", "everyone"],
        )
        .user(
            "bob",
            "$argon2id$v=19$m=19456,t=2,p=1$uNc6OiBXRAiciyBQs4bfNA$dAVfc0S4QucEY2e488kbr4n3jjLuVLLtQn59UMKeVwY",
            ["everyone"],
        )
        .user(
            "admin",
            "$argon2id$v=19$m=19456,t=2,p=1$HHmXVf3iaiC2MQ3R+k3ybg$1jXY+lEHzW3sD+deQNocH2Wy25cku8eUxuNh8/1oKOQ",
            ["admin", "everyone"],
        )
        .client(
            "quickstart-client",
            "$argon2id$v=19$m=19456,t=2,p=1$gONhXvPvfhJJHigL85lNKw$qDsot0rkDJKc6Dtktwf/hsMpwPsfVE5/1f4mt2zPnss",
            ["everyone"],
        )
        .public_client("quickstart-spa", ["http://127.0.0.1:3000/callback"])
        .build()
}

/// The app, secured, with the token endpoint beside it; the issuer is where it listens.
fn app(addr: std::net::SocketAddr) -> Result<Router, Box<dyn std::error::Error>> {
    let deployment = deployment(format!("http://{addr}"))?;
    let users = users()?;
    let tokens =
        TokenServer::builder().deployment(&deployment).user_store(users.store).clients(users.clients).build()?;
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build()?;
    Ok(api::routes().merge(tokens.router()).layer(layer))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    let app = app(addr)?;
    // Best effort: a closed stdout must not stop the server.
    let _ = writeln!(std::io::stdout(), "code_first listening on http://{addr}");
    let _ = std::io::stdout().flush();
    axum::serve(listener, app).await?;
    Ok(())
}
