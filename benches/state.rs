//! The hot path with a shared state backend configured: cached Basic logins and cached
//! bearer tokens must cost the same whether the token server keeps its state in this
//! process's memory, in Redis or in PostgreSQL (cached decisions read the local replica;
//! the backend is touched on slow paths only). Each backend is measured in the same run,
//! side by side:
//!
//! * `state_hot_path/basic_cached/{memory,redis,postgres}`
//! * `state_hot_path/bearer_cached/{memory,redis,postgres}`
//!
//! One axum `Router` (the quickstart's rules, users and clients; its token endpoint) driven
//! with `tower::ServiceExt::oneshot`, as `benches/layer.rs` does. The Redis and PostgreSQL
//! servers are private processes on 127.0.0.1, started here with the test harness
//! (`scripts/test` installs them; `TOWER_SECURE_REDIS_SERVER`, `TOWER_SECURE_PG_BIN`).
//! Run with `cargo bench --bench state` (about a minute); `-- --quick` for a smoke run.

#[path = "../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::BodyExt;
use tokio::runtime::{Builder, Runtime};
use tower::ServiceExt as _;
use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::oauth2::{TokenServer, TokenServerBuilder};
use tower_secure::state::{RedisState, SqlState, StateBackend};
use tower_secure::SecureLayer;

const DEPLOYMENT: &str = include_str!("../examples/quickstart/deployment.toml");
const USERS: &str = include_str!("../examples/quickstart/users.toml");
const PATH: &str = "/api/users/v1/42/challenges";

fn encoded(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Gives a token server builder its state backend.
type WithState = Box<dyn FnOnce(TokenServerBuilder) -> TokenServerBuilder>;

/// The quickstart's API secured by a token server on `state` (`None`: the default memory).
async fn app(state: Option<WithState>) -> Router {
    let deployment = Deployment::from_toml_str("deployment.toml", DEPLOYMENT).expect("rules");
    let mut builder = TokenServer::builder()
        .deployment(&deployment)
        .user_store(load_users("users.toml", USERS).expect("users"))
        .clients(load_clients("users.toml", USERS).expect("clients"));
    if let Some(state) = state {
        builder = state(builder);
    }
    let tokens = builder.build().expect("token server");
    assert!(tokens.ready(Duration::from_secs(5)).await, "the state backend did not answer");
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().expect("layer");
    Router::new()
        .route("/api/users/v1/{user_id}/challenges", get(|| async { "ok" }))
        .merge(tokens.router())
        .layer(layer)
}

fn with(state: impl StateBackend) -> Option<WithState> {
    Some(Box::new(move |builder| builder.state(state)))
}

async fn send(app: &Router, request: Request<Body>) -> (StatusCode, bytes::Bytes) {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    (status, response.into_body().collect().await.expect("body").to_bytes())
}

fn get_with(auth: &HeaderValue) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = Uri::from_static(PATH);
    request.headers_mut().insert(AUTHORIZATION, auth.clone());
    request
}

/// alex's access token from the password grant.
async fn bearer(app: &Router) -> HeaderValue {
    let form = "grant_type=password&username=alex&password=alex123&scope=internal_identity_mgt_view";
    let request = Request::builder()
        .method(Method::POST)
        .uri("/oauth2/token")
        .header(AUTHORIZATION, format!("Basic {}", encoded("quickstart-client", "quickstart-secret")))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .expect("request");
    let (status, body) = send(app, request).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let token = body["access_token"].as_str().expect("access_token");
    HeaderValue::from_str(&format!("Bearer {token}")).expect("header")
}

/// `iters` requests in one `block_on`, each checked: a refusal (a stale replica answers
/// 503) must not pass for a fast cached decision.
fn batch(rt: &Runtime, app: &Router, auth: &HeaderValue, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            let (status, body) = send(app, get_with(auth)).await;
            assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            black_box(body);
        }
        start.elapsed()
    })
}

fn hot_path(c: &mut Criterion) {
    // A worker thread beside the measuring one: the backends' background tasks (the
    // replica's sync and watchdog, the connections, the change listeners) keep running
    // while a batch is measured, as they do in a server.
    let rt = Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let redis = servers::Redis::start();
    let postgres = servers::Postgres::start();
    let apps = rt.block_on(async {
        let redis_state = RedisState::builder(redis.url()).build().await.expect("redis");
        let sql_state = SqlState::builder(postgres.url()).build().await.expect("postgres");
        vec![
            ("memory", app(None).await),
            ("redis", app(with(redis_state)).await),
            ("postgres", app(with(sql_state)).await),
        ]
    });
    let basic = HeaderValue::from_str(&format!("Basic {}", encoded("alex", "alex123"))).expect("header");
    let mut group = c.benchmark_group("state_hot_path");
    group.warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3)).sample_size(30);
    group.throughput(Throughput::Elements(1));
    for (name, app) in &apps {
        let token = rt.block_on(bearer(app));
        // Sanity, and the one uncached verification of each credential.
        for auth in [&basic, &token] {
            assert_eq!(rt.block_on(send(app, get_with(auth))).0, StatusCode::OK, "{name}");
        }
        group.bench_function(format!("basic_cached/{name}"), |b| b.iter_custom(|iters| batch(&rt, app, &basic, iters)));
        group
            .bench_function(format!("bearer_cached/{name}"), |b| b.iter_custom(|iters| batch(&rt, app, &token, iters)));
    }
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
