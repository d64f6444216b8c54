//! How fast the built-in token endpoint (SPEC D1) issues access tokens, per grant and
//! signing algorithm, side by side in one run:
//!
//! * `token_in_process`: `POST /oauth2/token` on the app's axum `Router` driven with
//!   `tower::ServiceExt::oneshot` (no network), for RS256, ES256 and HS256:
//!   - `password_cached`: the password grant for a user whose password verification is
//!     cached (the first request warms it), by a client without the refresh grant, so the
//!     work is the cached client and user checks, the scope decision and the JWT signature;
//!   - `client_credentials`: the same for the client credentials grant;
//!   - `sign_only`: `jsonwebtoken::encode` of the same claims with the same key, the floor
//!     both grants stand on;
//!   - RS256 and HS256 also `password_cached_refresh`: a client with the refresh grant,
//!     so every token comes with a stored refresh token.
//! * `refresh_store_full` (HS256, where the store's cost is not hidden behind the
//!   signature): `password_cached_refresh` again once the refresh-token store holds
//!   `max_tracked_tokens` live tokens (the default 100,000; filling it takes a few seconds),
//!   so every issuance also forgets the oldest token.
//! * `token_http_loopback`: RS256 `password_cached` and `client_credentials` over real
//!   HTTP/1.1 keep-alive on 127.0.0.1 (one connection: latency; sixteen: throughput with
//!   both cores busy), as `benches/layer.rs` drives the layer.
//!
//! Criterion reports time per token and, with `Throughput::Elements(1)`, tokens per second.
//! Run with `cargo bench --bench token` (about a minute on two cores); add
//! `-- --warm-up-time 1 --measurement-time 3` for a shorter run, or a group name
//! (`-- token_in_process`) to run one group. Credentials use the cheapest argon2
//! parameters: they are verified once, then cached, so the hash cost is only set-up.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::body::Body;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use futures_util::future::join_all;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::runtime::{Builder, Runtime};
use tower::ServiceExt as _;
use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::SecureLayer;

const ISSUER: &str = "http://127.0.0.1:3000";
const SCOPE: &str = "internal_identity_mgt_view";
const TOKEN_PATH: &str = "/oauth2/token";
const FORM: &str = "application/x-www-form-urlencoded";

// ---------------------------------------------------------------------------------------
// Shared set-up

/// An argon2id PHC hash with the cheapest legal parameters (as the tests use).
fn cheap_hash(password: &str) -> String {
    let salt = SaltString::encode_b64(b"tower-secure-tok").expect("salt");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8, 1, 1, None).expect("params"))
        .hash_password(password.as_bytes(), &salt)
        .expect("hash")
        .to_string()
}

/// alex holds the permission the scope is bound to; the clients: `bench-app` (password
/// grant only: no refresh tokens), `bench-app-rt` (password and refresh) and
/// `bench-service` (client credentials, with alex's role).
fn users_toml() -> String {
    format!(
        r#"
[[role]]
name = "identity_viewer"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]

[[user]]
name = "alex"
password = "{alex}"
roles = ["identity_viewer"]

[[client]]
id = "bench-app"
secret = "{app}"
grant_types = ["password"]

[[client]]
id = "bench-app-rt"
secret = "{app}"
grant_types = ["password", "refresh_token"]

[[client]]
id = "bench-service"
secret = "{service}"
roles = ["identity_viewer"]
grant_types = ["client_credentials"]
"#,
        alex = cheap_hash("alex123"),
        app = cheap_hash("app-secret"),
        service = cheap_hash("service-secret"),
    )
}

/// One signing algorithm: its `[[oauth2_server.key]]` table and the key for `sign_only`.
struct SigningKey {
    label: &'static str,
    algorithm: jsonwebtoken::Algorithm,
    table: String,
    encoding: jsonwebtoken::EncodingKey,
}

/// Generates a private key (PKCS#8 PEM) with the openssl CLI.
fn openssl_private(dir: &Path, name: &str, genpkey_args: &[&str]) -> String {
    let path = dir.join(format!("{name}.pem"));
    let status = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(genpkey_args)
        .arg("-out")
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(status.success(), "openssl genpkey {name}");
    std::fs::read_to_string(&path).expect("private pem")
}

fn signing_keys(dir: &Path) -> Vec<SigningKey> {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let table = |kid: &str, alg: &str, material: String| {
        format!("[[oauth2_server.key]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\n{material}\n")
    };
    let pem = |text: &str| format!("pem = \"\"\"\n{text}\"\"\"");
    let rsa = openssl_private(dir, "rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let ec = openssl_private(dir, "ec", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    let secret = [42u8; 32];
    let secret_b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    vec![
        SigningKey {
            label: "RS256",
            algorithm: Algorithm::RS256,
            table: table("rs", "RS256", pem(&rsa)),
            encoding: EncodingKey::from_rsa_pem(rsa.as_bytes()).expect("rsa private"),
        },
        SigningKey {
            label: "ES256",
            algorithm: Algorithm::ES256,
            table: table("es", "ES256", pem(&ec)),
            encoding: EncodingKey::from_ec_pem(ec.as_bytes()).expect("ec private"),
        },
        SigningKey {
            label: "HS256",
            algorithm: Algorithm::HS256,
            table: table("hs", "HS256", format!("secret_base64 = \"{secret_b64}\"")),
            encoding: EncodingKey::from_secret(&secret),
        },
    ]
}

/// The quickstart's shape: the token endpoint merged into a secured API, the layer around
/// both (it lets the endpoint paths through), so each token request also passes the layer.
fn app(key: &SigningKey, max_tracked_tokens: usize) -> Router {
    let text = format!(
        r#"
[[resource.access_control]]
context = "/api/users/v1/{{user_id}}/challenges"
http_method = "GET"
scope = "{SCOPE}"

[[scope]]
name = "{SCOPE}"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]

[oauth2_server]
issuer = "{ISSUER}"
max_tracked_tokens = {max_tracked_tokens}
{key}"#,
        key = key.table,
    );
    let deployment = Deployment::from_toml_str("deployment.toml", &text).expect("deployment");
    let users_text = users_toml();
    let users = load_users("users.toml", &users_text).expect("users");
    let clients = load_clients("users.toml", &users_text).expect("clients");
    let tokens =
        TokenServer::builder().deployment(&deployment).user_store(users).clients(clients).build().expect("tokens");
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().expect("layer");
    Router::new()
        .route("/api/users/v1/{user_id}/challenges", get(|| async { "challenges" }))
        .merge(tokens.router())
        .layer(layer)
}

/// A token request: the client's Basic credential and the form body.
#[derive(Clone)]
struct Grant {
    auth: HeaderValue,
    body: Bytes,
}

impl Grant {
    fn new(client: &str, secret: &str, form: &str) -> Self {
        let credential = base64::engine::general_purpose::STANDARD.encode(format!("{client}:{secret}"));
        let auth = HeaderValue::from_str(&format!("Basic {credential}")).expect("header value");
        Self { auth, body: Bytes::from(form.to_owned()) }
    }

    fn password(client: &str) -> Self {
        Self::new(client, "app-secret", &format!("grant_type=password&username=alex&password=alex123&scope={SCOPE}"))
    }

    fn client_credentials() -> Self {
        Self::new("bench-service", "service-secret", &format!("grant_type=client_credentials&scope={SCOPE}"))
    }
}

/// The modes every algorithm runs, by name.
fn grants() -> [(&'static str, Grant); 2] {
    [("password_cached", Grant::password("bench-app")), ("client_credentials", Grant::client_credentials())]
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn tune(group: &mut BenchmarkGroup<'_, WallTime>, warm_up: Duration, measurement: Duration, samples: usize) {
    group.warm_up_time(warm_up).measurement_time(measurement).sample_size(samples);
}

/// The token response of one answered grant; panics on anything but 200 (a throttled or
/// refused request must never be what is measured).
fn check_issued(status: StatusCode, body: &[u8], expect_refresh: bool) {
    assert_eq!(status, StatusCode::OK, "token refused: {}", String::from_utf8_lossy(body));
    let body: Value = serde_json::from_slice(body).expect("token response is JSON");
    assert_eq!(body["scope"], SCOPE, "scope not granted: {body}");
    assert_eq!(body.get("refresh_token").is_some(), expect_refresh, "{body}");
}

// ---------------------------------------------------------------------------------------
// 1. token_in_process

async fn oneshot(app: &Router, grant: &Grant) -> (StatusCode, Bytes) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(TOKEN_PATH)
        .header(AUTHORIZATION, grant.auth.clone())
        .header(CONTENT_TYPE, FORM)
        .body(Body::from(grant.body.clone()))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    (status, response.into_body().collect().await.expect("body").to_bytes())
}

/// `iters` token requests in one `block_on` (one runtime entry per sample, as in
/// `benches/layer.rs`); every answer must be 200.
fn oneshot_batch(rt: &Runtime, app: &Router, grant: &Grant, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let (status, body) = oneshot(app, grant).await;
            assert_eq!(status, StatusCode::OK, "token refused: {}", String::from_utf8_lossy(&body));
            black_box(body);
        }
        start.elapsed()
    })
}

/// The claims the token server signs, for `sign_only`.
fn sample_claims(serial: u64) -> Value {
    json!({
        "iss": ISSUER, "sub": "alex", "aud": "bench-app", "exp": 1_900_000_000u64, "iat": 1_800_000_000u64,
        "jti": format!("{serial:043}"), "client_id": "bench-app", "scope": SCOPE,
    })
}

fn token_in_process(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = signing_keys(dir.path());
    let rt = current_thread();
    let mut group = c.benchmark_group("token_in_process");
    tune(&mut group, Duration::from_secs(1), Duration::from_secs(3), 30);
    group.throughput(Throughput::Elements(1));
    for key in &keys {
        // A store too large to fill here, so `password_cached_refresh` never meets a full one.
        let app = app(key, 10_000_000);
        // Sanity, and the one uncached verification of each credential (the cache warms).
        for (_, grant) in grants() {
            let (status, body) = rt.block_on(oneshot(&app, &grant));
            check_issued(status, &body, false);
        }
        for (mode, grant) in grants() {
            group.bench_function(BenchmarkId::new(mode, key.label), |b| {
                b.iter_custom(|iters| oneshot_batch(&rt, &app, &grant, iters))
            });
        }
        if key.algorithm != jsonwebtoken::Algorithm::ES256 {
            let grant = Grant::password("bench-app-rt");
            let (status, body) = rt.block_on(oneshot(&app, &grant));
            check_issued(status, &body, true);
            group.bench_function(BenchmarkId::new("password_cached_refresh", key.label), |b| {
                b.iter_custom(|iters| oneshot_batch(&rt, &app, &grant, iters))
            });
        }
        let mut header = jsonwebtoken::Header::new(key.algorithm);
        header.kid = Some("k".to_owned());
        header.typ = Some("at+jwt".to_owned());
        let mut serial = 0u64;
        group.bench_function(BenchmarkId::new("sign_only", key.label), |b| {
            b.iter(|| {
                serial += 1;
                black_box(jsonwebtoken::encode(&header, &sample_claims(serial), &key.encoding).expect("sign"))
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// 2. refresh_store_full

/// The default `max_tracked_tokens`.
const TRACKED: usize = 100_000;

fn refresh_store_full(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = signing_keys(dir.path());
    let key = keys.iter().find(|k| k.label == "HS256").expect("HS256 key");
    let rt = current_thread();
    let app = app(key, TRACKED);
    let grant = Grant::password("bench-app-rt");
    // Fill the store with live refresh tokens (each issuance stores one).
    let start = Instant::now();
    oneshot_batch(&rt, &app, &grant, TRACKED as u64);
    eprintln!("refresh_store_full: {TRACKED} refresh tokens issued in {:.1} s", start.elapsed().as_secs_f64());
    // Full now: the token still comes with a refresh token; the oldest one is forgotten.
    let (status, body) = rt.block_on(oneshot(&app, &grant));
    check_issued(status, &body, true);

    let mut group = c.benchmark_group("refresh_store_full");
    tune(&mut group, Duration::from_secs(1), Duration::from_secs(3), 10);
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("password_cached_refresh", "HS256"), |b| {
        b.iter_custom(|iters| oneshot_batch(&rt, &app, &grant, iters))
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------
// 3. token_http_loopback

type Sender = SendRequest<Full<Bytes>>;

/// A two-worker server runtime (the machine has two cores) serving `app` on 127.0.0.1:0
/// until the runtime is dropped.
fn serve(rt: &Runtime, app: Router) -> SocketAddr {
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        addr
    })
}

/// One keep-alive HTTP/1.1 connection; its driver runs on the calling runtime.
async fn connect(addr: SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

async fn send(sender: &mut Sender, host: &HeaderValue, grant: &Grant) -> (StatusCode, Bytes) {
    let request = Request::builder()
        .method(Method::POST)
        .uri(TOKEN_PATH)
        .header(HOST, host.clone())
        .header(AUTHORIZATION, grant.auth.clone())
        .header(CONTENT_TYPE, FORM)
        .body(Full::new(grant.body.clone()))
        .expect("request");
    sender.ready().await.expect("connection closed");
    let response = sender.send_request(request).await.expect("request");
    let status = response.status();
    (status, response.into_body().collect().await.expect("body").to_bytes())
}

/// `iters` requests spread over the connections, which run concurrently; criterion then
/// reports time per token, the inverse of the throughput.
fn http_batch(client: &Runtime, senders: &mut [Sender], host: &HeaderValue, grant: &Grant, iters: u64) -> Duration {
    let n = senders.len() as u64;
    client.block_on(async {
        let start = Instant::now();
        join_all(senders.iter_mut().enumerate().map(|(i, sender)| async move {
            let share = iters / n + u64::from((i as u64) < iters % n);
            for _ in 0..share {
                let (status, body) = send(sender, host, grant).await;
                assert_eq!(status, StatusCode::OK, "token refused: {}", String::from_utf8_lossy(&body));
                black_box(body);
            }
        }))
        .await;
        start.elapsed()
    })
}

fn token_http_loopback(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = signing_keys(dir.path());
    let key = keys.iter().find(|k| k.label == "RS256").expect("RS256 key");
    let server = Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    // The client is a current-thread runtime on the bench thread, as in benches/layer.rs.
    let client = current_thread();
    let addr = serve(&server, app(key, 100_000));
    let host = HeaderValue::from_str(&addr.to_string()).expect("host");
    client.block_on(async {
        let mut sender = connect(addr).await;
        for (_, grant) in grants() {
            let (status, body) = send(&mut sender, &host, &grant).await;
            check_issued(status, &body, false);
        }
    });

    let mut group = c.benchmark_group("token_http_loopback");
    tune(&mut group, Duration::from_secs(1), Duration::from_secs(3), 20);
    group.throughput(Throughput::Elements(1));
    for connections in [1usize, 16] {
        let mut senders: Vec<Sender> = client.block_on(join_all((0..connections).map(|_| connect(addr))));
        for (mode, grant) in grants() {
            group.bench_function(BenchmarkId::new(format!("{mode}/RS256"), format!("{connections}conn")), |b| {
                b.iter_custom(|iters| http_batch(&client, &mut senders, &host, &grant, iters))
            });
        }
    }
    group.finish();
    drop(client);
    drop(server);
}

criterion_group!(benches, token_in_process, refresh_store_full, token_http_loopback);
criterion_main!(benches);
