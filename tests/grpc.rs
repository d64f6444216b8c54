//! gRPC: the example's tonic service behind the layer, called by a real tonic client over
//! HTTP/2 on loopback. Refusals are gRPC statuses (HTTP 200, `grpc-status`), rules match
//! `/package.Service/Method` paths, and the service reads the caller the layer put in the
//! request's extensions.

mod common;

#[path = "../examples/grpc/app.rs"]
mod app;

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Status};
use tower_secure::oauth2::TokenServer;
use tower_secure::{AuthErrorKind, SecureLayer};

use app::proto::inventory_client::InventoryClient;
use app::proto::inventory_server::InventoryServer;
use app::proto::{GetItemRequest, Item, SetStockRequest};

/// Accepted connections of a bound listener, as the stream tonic serves.
fn incoming(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

/// Serves `service` behind `layer` on 127.0.0.1:0 over HTTP/2; returns the address.
async fn serve_grpc(layer: SecureLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .timeout(Duration::from_secs(10))
            .layer(layer)
            .add_service(InventoryServer::new(app::InventoryService::default()))
            .serve_with_incoming(incoming(listener))
            .await
            .unwrap();
    });
    addr
}

/// The example's layer and token server; the token endpoint served over HTTP/1.1.
async fn example() -> (SocketAddr, String) {
    let token_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_base = format!("http://{}", token_listener.local_addr().unwrap());
    let deployment = app::deployment(token_base.clone()).unwrap();
    let users = app::users().unwrap();
    let tokens =
        TokenServer::builder().deployment(&deployment).user_store(users.store).clients(users.clients).build().unwrap();
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    tokio::spawn(async move { axum::serve(token_listener, tokens.router()).await.unwrap() });
    (serve_grpc(layer).await, token_base)
}

async fn client(addr: SocketAddr) -> InventoryClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    InventoryClient::new(channel)
}

/// A request with `authorization` metadata, when given.
fn with_auth<T>(message: T, authorization: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", MetadataValue::try_from(value).unwrap());
    }
    request
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

async fn get_item(client: &mut InventoryClient<Channel>, authorization: Option<&str>) -> Result<Item, Status> {
    let request = with_auth(GetItemRequest { sku: "apple".into() }, authorization);
    client.get_item(request).await.map(tonic::Response::into_inner)
}

async fn set_stock(client: &mut InventoryClient<Channel>, authorization: &str, quantity: u32) -> Result<Item, Status> {
    let request = with_auth(SetStockRequest { sku: "apple".into(), quantity }, Some(authorization));
    client.set_stock(request).await.map(tonic::Response::into_inner)
}

/// The status a refusal of `kind` must be: the code, and the crate's fixed sentence as the
/// message (a status tonic inferred from an HTTP error code would say something else).
fn assert_refused(result: Result<Item, Status>, code: Code, kind: AuthErrorKind, what: &str) -> Status {
    let status = result.expect_err(what);
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert_eq!(status.message(), kind.detail(), "{what}: the message is the layer's, not inferred");
    status
}

// SPEC I2: no credential, a wrong password and a caller without the permission are
// UNAUTHENTICATED and PERMISSION_DENIED statuses sent by the layer (the crate's message,
// the Basic challenge as metadata); the allowed caller reaches the method, which reads who
// called from the principal the layer took from the `authorization` metadata.
#[tokio::test]
async fn i2_refusals_are_grpc_statuses_and_the_caller_comes_from_metadata() {
    let (addr, _) = example().await;
    let mut client = client(addr).await;

    let status = assert_refused(
        get_item(&mut client, None).await,
        Code::Unauthenticated,
        AuthErrorKind::Unauthenticated,
        "none",
    );
    let challenges: Vec<_> =
        status.metadata().get_all("www-authenticate").iter().map(|v| v.to_str().unwrap()).collect();
    assert!(challenges.iter().any(|c| c.starts_with("Basic realm=\"inventory\"")), "{challenges:?}");
    assert!(challenges.iter().any(|c| c.starts_with("Bearer realm=\"inventory\"")), "{challenges:?}");

    let wrong = basic("alex", "not-the-password");
    let result = get_item(&mut client, Some(&wrong)).await;
    assert_refused(result, Code::Unauthenticated, AuthErrorKind::InvalidCredentials, "wrong password");

    let bob = basic("bob", "bob123");
    let item = get_item(&mut client, Some(&bob)).await.expect("bob may read stock");
    assert_eq!(item.served_to, "bob");
    let result = set_stock(&mut client, &bob, 7).await;
    assert_refused(result, Code::PermissionDenied, AuthErrorKind::Forbidden, "bob may not change stock");

    let alex = basic("alex", "alex123");
    assert_eq!(set_stock(&mut client, &alex, 7).await.expect("alex manages stock").served_to, "alex");
    let item = get_item(&mut client, Some(&bob)).await.unwrap();
    assert_eq!((item.quantity, item.served_to.as_str()), (7, "bob"), "the refused call changed nothing");
}

// SPEC I2: bearer tokens from the built-in token server (password grant over HTTP) in the
// `authorization` metadata: a token with the view scope reads, and changing stock with it
// is PERMISSION_DENIED (its scope is insufficient); a tampered token is UNAUTHENTICATED.
#[tokio::test]
async fn i2_bearer_tokens_in_metadata() {
    let (addr, token_base) = example().await;
    let response = common::client()
        .post(format!("{token_base}/oauth2/token"))
        .basic_auth("inventory-client", Some("quickstart-secret"))
        .form(&[("grant_type", "password"), ("username", "alex"), ("password", "alex123"), ("scope", app::VIEW_SCOPE)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    let bearer = format!("Bearer {token}");

    let mut client = client(addr).await;
    assert_eq!(get_item(&mut client, Some(&bearer)).await.expect("view scope reads").served_to, "alex");
    let status = assert_refused(
        set_stock(&mut client, &bearer, 1).await,
        Code::PermissionDenied,
        AuthErrorKind::Forbidden,
        "view scope may not change stock",
    );
    let challenge = status.metadata().get("www-authenticate").unwrap().to_str().unwrap().to_owned();
    assert!(challenge.contains("insufficient_scope") && challenge.contains(app::MANAGE_SCOPE), "{challenge}");

    let tampered = format!("Bearer {}x", token);
    let result = get_item(&mut client, Some(&tampered)).await;
    assert_refused(result, Code::Unauthenticated, AuthErrorKind::InvalidCredentials, "tampered token");
}

// SPEC I2: on the wire the refusal is what gRPC clients expect: HTTP/2 status 200,
// `content-type: application/grpc`, `grpc-status: 16` in the headers of a trailers-only
// response (no body); a method no rule names is secured by default. Read with a plain
// HTTP/2 client (hyper), not through tonic, which would map an HTTP 401 to a status too.
// The same request with another content type is not gRPC: a plain 401.
#[tokio::test]
async fn i2_a_refusal_on_the_wire_is_http_200_with_grpc_status() {
    use http_body::Body as _;
    use http_body_util::{BodyExt, Full};
    let (addr, _) = example().await;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut send = async |path: &str, content_type: &str| {
        let request = http::Request::post(format!("http://{addr}{path}"))
            .header("content-type", content_type)
            .header("te", "trailers")
            .body(Full::new(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), sender.send_request(request)).await.unwrap().unwrap()
    };
    for path in ["/inventory.v1.Inventory/GetItem", "/inventory.v1.Inventory/NoSuchMethod"] {
        let response = send(path, "application/grpc+proto").await;
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/grpc", "{path}");
        assert_eq!(headers["grpc-status"], "16", "{path}");
        assert_eq!(headers["grpc-message"], AuthErrorKind::Unauthenticated.detail(), "{path}");
        assert!(response.body().is_end_stream(), "{path}: a trailers-only response has no body");
        let collected = response.into_body().collect().await.unwrap();
        assert!(collected.trailers().is_none() && collected.to_bytes().is_empty(), "{path}");
    }
    for content_type in ["application/json", "application/grpcx"] {
        let response = send("/inventory.v1.Inventory/GetItem", content_type).await;
        assert_eq!(response.status(), 401, "{content_type}");
        assert_eq!(response.headers()["content-type"], "application/problem+json", "{content_type}");
        assert!(!response.headers().contains_key("grpc-status"), "{content_type}");
    }
}

// SPEC I2: the user store down is UNAVAILABLE (gRPC status 14, with Retry-After as
// metadata), never UNAUTHENTICATED and never a call that reaches the method: PostgreSQL
// started for the test, then stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i2_backend_down_is_unavailable() {
    use common::servers::Postgres;
    use tower_secure::identity::SqlUserStore;
    let mut pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let store =
        SqlUserStore::builder(pg.url()).create_schema(true).timeout(Duration::from_secs(1)).build().await.unwrap();
    let deployment = app::deployment("http://127.0.0.1:9".into()).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(store).build().unwrap();
    let mut client = client(serve_grpc(layer).await).await;
    let nobody = basic("nobody", "x");
    let result = get_item(&mut client, Some(&nobody)).await;
    assert_refused(result, Code::Unauthenticated, AuthErrorKind::InvalidCredentials, "unknown user, store up");

    tokio::task::block_in_place(|| pg.stop());
    let alex = basic("alex", "alex123");
    let status =
        assert_refused(get_item(&mut client, Some(&alex)).await, Code::Unavailable, AuthErrorKind::Unavailable, "down");
    assert!(status.metadata().get("retry-after").is_some(), "{status:?}");
}
