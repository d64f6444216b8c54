//! Several instances of the quickstart's API behind a load balancer, sharing their
//! security state in Redis: a token revoked on one instance is refused on all of them,
//! a refresh token is redeemed once across them, and a restart forgets nothing.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:3003 cargo run --example shared_state
//! REDIS_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:3004 cargo run --example shared_state
//! # a token from one instance, revoked there, refused by the other within ~100 ms:
//! curl -s -u quickstart-client:quickstart-secret http://127.0.0.1:3003/oauth2/token \
//!      -d grant_type=password -d username=alex -d password=alex123 -d scope=internal_identity_mgt_view
//! curl -s -u quickstart-client:quickstart-secret http://127.0.0.1:3003/oauth2/revoke -d token=<access_token>
//! curl -i -H "Authorization: Bearer <access_token>" http://127.0.0.1:3004/api/users/v1/42/challenges  # 401
//! ```
//!
//! The rules, users and signing key are the quickstart's (embedded). Every instance names
//! the same issuer (`ISSUER`, default `http://quickstart.shared`) and keys, so each
//! accepts the others' tokens. `REDIS_URL` (required; `rediss://` for TLS) may carry a
//! password; `KEY_PREFIX` (default `quickstart`) keeps APIs on one Redis apart; `ADDR`
//! is the listen address (default 127.0.0.1:3003).

#[path = "quickstart/api.rs"]
mod api;

use std::io::Write as _;
use std::time::Duration;

use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::state::RedisState;
use tower_secure::SecureLayer;

const DEPLOYMENT: &str = include_str!("quickstart/deployment.toml");
const USERS: &str = include_str!("quickstart/users.toml");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let redis_url = std::env::var("REDIS_URL").map_err(|_| "set REDIS_URL (redis://host:port)")?;
    let prefix = std::env::var("KEY_PREFIX").unwrap_or_else(|_| "quickstart".to_owned());
    let issuer = std::env::var("ISSUER").unwrap_or_else(|_| "http://quickstart.shared".to_owned());
    let state = RedisState::builder(redis_url).key_prefix(prefix).timeout(Duration::from_millis(500)).build().await?;

    let deployment = Deployment::from_toml_str("examples/quickstart/deployment.toml", DEPLOYMENT)?;
    let file = "examples/quickstart/users.toml";
    let tokens = TokenServer::builder()
        .deployment(&deployment)
        .user_store(load_users(file, USERS)?)
        .clients(load_clients(file, USERS)?)
        .issuer(issuer)
        .state(state)
        .build()?;
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build()?;
    let app = api::routes().merge(tokens.router()).layer(layer);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3003".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "shared_state listening on http://{}", listener.local_addr()?);
    let _ = stdout.flush();
    axum::serve(listener, app).await?;
    Ok(())
}
