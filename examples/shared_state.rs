//! Several instances of the quickstart's API behind a load balancer, sharing their
//! security state in Redis or PostgreSQL: a token revoked on one instance is refused on
//! all of them, a refresh token is redeemed once across them, failed logins are counted
//! across them, and a restart forgets nothing.
//!
//! ```text
//! STATE_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:3003 cargo run --example shared_state
//! STATE_URL=redis://127.0.0.1:6379 ADDR=127.0.0.1:3004 cargo run --example shared_state
//! # a token from one instance, revoked there, refused by the other within ~100 ms:
//! curl -s -u quickstart-client:quickstart-secret http://127.0.0.1:3003/oauth2/token \
//!      -d grant_type=password -d username=alex -d password=alex123 -d scope=internal_identity_mgt_view
//! curl -s -u quickstart-client:quickstart-secret http://127.0.0.1:3003/oauth2/revoke -d token=<access_token>
//! curl -i -H "Authorization: Bearer <access_token>" http://127.0.0.1:3004/api/users/v1/42/challenges  # 401
//! ```
//!
//! The rules, users and signing key are the quickstart's (embedded); the state backend is
//! the `[state]` table of `STATE_CONFIG` (default `examples/shared_state.toml`, which reads
//! the URL from `STATE_URL`: `redis://`, `rediss://`, `postgres://...` or `sqlite://...`).
//! Every instance names the same issuer (`ISSUER`, default `http://quickstart.shared`) and
//! keys, so each accepts the others' tokens. `ADDR` is the listen address (default
//! 127.0.0.1:3003). With `LAYER_STORE=1` the layer checks Basic logins against a store of
//! its own instead of the token server's (the lockout is still shared).

#[path = "quickstart/api.rs"]
mod api;

use std::io::Write as _;
use std::time::Duration;

use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::SecureLayer;

const DEPLOYMENT: &str = include_str!("quickstart/deployment.toml");
const USERS: &str = include_str!("quickstart/users.toml");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let issuer = std::env::var("ISSUER").unwrap_or_else(|_| "http://quickstart.shared".to_owned());
    let state_config = std::env::var("STATE_CONFIG").unwrap_or_else(|_| "examples/shared_state.toml".to_owned());
    let state_config = Deployment::from_file(state_config)?;

    let deployment = Deployment::from_toml_str("examples/quickstart/deployment.toml", DEPLOYMENT)?;
    let file = "examples/quickstart/users.toml";
    let tokens = TokenServer::builder()
        .deployment(&deployment)
        .user_store(load_users(file, USERS)?)
        .clients(load_clients(file, USERS)?)
        .issuer(issuer)
        .state_from(&state_config)
        .await?
        .build()?;
    if !tokens.ready(Duration::from_secs(5)).await {
        return Err("the state backend did not answer within 5 s".into());
    }
    let mut layer = SecureLayer::builder().deployment(deployment).token_server(&tokens);
    // LAYER_STORE=1: the layer gets a store of its own (here the same users); its Basic
    // logins still count their failures in the shared backend.
    if std::env::var_os("LAYER_STORE").is_some() {
        layer = layer.user_store(load_users(file, USERS)?);
    }
    let layer = layer.build()?;
    let app = api::routes().merge(tokens.router()).layer(layer);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3003".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "shared_state listening on http://{}", listener.local_addr()?);
    let _ = stdout.flush();
    axum::serve(listener, app).await?;
    Ok(())
}
