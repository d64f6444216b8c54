//! A tonic gRPC service secured by tower-secure: Basic callers and bearer tokens from the
//! built-in token server, refusals answered as gRPC statuses.
//!
//! ```text
//! cargo run --example grpc
//! # gRPC on 127.0.0.1:50051 (GRPC_ADDR), the token endpoint on 127.0.0.1:50052 (TOKEN_ADDR)
//! grpcurl -plaintext -import-path examples/grpc -proto inventory.proto \
//!     -H "authorization: Basic $(printf alex:alex123 | base64)" -d '{"sku": "apple"}' \
//!     127.0.0.1:50051 inventory.v1.Inventory/GetItem          # served_to: alex
//! grpcurl ... -H "authorization: Basic $(printf bob:bob123 | base64)" \
//!     -d '{"sku": "apple", "quantity": 3}' 127.0.0.1:50051 inventory.v1.Inventory/SetStock
//!     # ERROR: Code: PermissionDenied
//! ```

mod app;

use std::io::Write as _;

use tower_secure::oauth2::TokenServer;
use tower_secure::SecureLayer;

use app::proto::inventory_server::InventoryServer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let grpc_addr: std::net::SocketAddr = std::env::var("GRPC_ADDR").as_deref().unwrap_or("127.0.0.1:50051").parse()?;
    let token_listener =
        tokio::net::TcpListener::bind(std::env::var("TOKEN_ADDR").as_deref().unwrap_or("127.0.0.1:50052")).await?;
    let token_addr = token_listener.local_addr()?;

    let deployment = app::deployment(format!("http://{token_addr}"))?;
    let users = app::users()?;
    let tokens =
        TokenServer::builder().deployment(&deployment).user_store(users.store).clients(users.clients).build()?;
    // The layer trusts the token server's tokens and shares its user store.
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build()?;

    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "gRPC on {grpc_addr}, tokens at http://{token_addr}/oauth2/token");
    let _ = stdout.flush();
    tokio::spawn(async move { axum::serve(token_listener, tokens.router()).await });
    tonic::transport::Server::builder()
        .layer(layer)
        .add_service(InventoryServer::new(app::InventoryService::default()))
        .serve(grpc_addr)
        .await?;
    Ok(())
}
