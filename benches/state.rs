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

#[path = "common/quickstart.rs"]
#[allow(dead_code)] // each benchmark uses some of it
mod quickstart;

use std::hint::black_box;
use std::time::{Duration, Instant};

use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use http::{HeaderValue, StatusCode};
use tokio::runtime::{Builder, Runtime};
use tower_secure::state::{RedisState, SqlState};

use quickstart::{app, basic, bearer, get_with, send, with};

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
    let basic = basic();
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
