//! The inventory service of the gRPC example, its rules and its users: shared by
//! `examples/grpc/main.rs` and `tests/grpc.rs`, so the test runs what the example serves.

use std::collections::HashMap;
use std::sync::Mutex;

use tonic::{Request, Response, Status};
use tower_secure::code::{AccessRule, ScopeBinding, SigningKey, TokenServerSettings, Users};
use tower_secure::config::{ConfigError, Deployment};
use tower_secure::AuthContext;

/// The messages, server and client generated from `inventory.proto`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    include!("inventory.v1.rs");
}

use proto::inventory_server::Inventory;
use proto::{GetItemRequest, Item, SetStockRequest};

/// Reading stock: the permission, and the scope bound to it for token callers.
pub const VIEW: &str = "/permission/inventory/view";
pub const VIEW_SCOPE: &str = "inventory_view";
/// Changing stock.
pub const MANAGE: &str = "/permission/inventory/manage";
pub const MANAGE_SCOPE: &str = "inventory_manage";

/// A DEMO KEY, published with the source: never use it for anything real.
const DEMO_SIGNING_KEY: &str = include_str!("../code_first.pem");

/// Who may call which method. gRPC methods are paths, `/package.Service/Method`, always
/// POSTed; a method no rule names still needs a caller (secure by default).
pub fn deployment(issuer: String) -> Result<Deployment, ConfigError> {
    Deployment::builder()
        .realm("inventory")
        .rule(AccessRule::new("/inventory.v1.Inventory/GetItem").scope(VIEW_SCOPE).permission(VIEW))
        .rule(AccessRule::new("/inventory.v1.Inventory/SetStock").scope(MANAGE_SCOPE).permission(MANAGE))
        .scope(ScopeBinding::new(VIEW_SCOPE).permission(VIEW))
        .scope(ScopeBinding::new(MANAGE_SCOPE).permission(MANAGE))
        .token_server(
            TokenServerSettings::new(issuer)
                .access_token_seconds(3600)
                .signing_key(SigningKey::pem("RS256", DEMO_SIGNING_KEY).kid("grpc-demo-2026")),
        )
        .build()
}

/// alex/alex123 manages stock, bob/bob123 may only read it; the token client
/// inventory-client/quickstart-secret. argon2id hashes made with `tower-secure hash-password`.
pub fn users() -> Result<Users, ConfigError> {
    Users::builder()
        .role("stock_manager", [VIEW, MANAGE])
        .role("stock_viewer", [VIEW])
        .user(
            "alex",
            "$argon2id$v=19$m=19456,t=2,p=1$+1S3FD2LfbxN8we2YYXPeg$3sjxh9P53KQqyOvtTADOwTya7U1aTdAxDZhlzAgESvA",
            ["stock_manager"],
        )
        .user(
            "bob",
            "$argon2id$v=19$m=19456,t=2,p=1$uNc6OiBXRAiciyBQs4bfNA$dAVfc0S4QucEY2e488kbr4n3jjLuVLLtQn59UMKeVwY",
            ["stock_viewer"],
        )
        .client(
            "inventory-client",
            "$argon2id$v=19$m=19456,t=2,p=1$gONhXvPvfhJJHigL85lNKw$qDsot0rkDJKc6Dtktwf/hsMpwPsfVE5/1f4mt2zPnss",
            Vec::<String>::new(),
        )
        .build()
}

/// The stock, in memory.
#[derive(Debug, Default)]
pub struct InventoryService {
    stock: Mutex<HashMap<String, u32>>,
}

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn get_item(&self, request: Request<GetItemRequest>) -> Result<Response<Item>, Status> {
        let served_to = caller(&request)?;
        let sku = request.into_inner().sku;
        let quantity = self.stock.lock().map_err(|_| Status::internal("stock lock poisoned"))?.get(&sku).copied();
        Ok(Response::new(Item { sku, quantity: quantity.unwrap_or(0), served_to }))
    }

    async fn set_stock(&self, request: Request<SetStockRequest>) -> Result<Response<Item>, Status> {
        let served_to = caller(&request)?;
        let SetStockRequest { sku, quantity } = request.into_inner();
        self.stock.lock().map_err(|_| Status::internal("stock lock poisoned"))?.insert(sku.clone(), quantity);
        Ok(Response::new(Item { sku, quantity, served_to }))
    }
}

/// The caller the layer authenticated, from the request's extensions (tonic keeps the
/// HTTP request's extensions).
fn caller<T>(request: &Request<T>) -> Result<String, Status> {
    let principal = request.extensions().get::<AuthContext>().and_then(AuthContext::principal);
    principal.map(|p| p.name().to_string()).ok_or_else(|| Status::unauthenticated("no caller"))
}
