//! Metrics (feature `metrics`, SPEC I4): the quickstart's Basic users behind the layer, and
//! a Prometheus exporter serving the layer's decisions, credential-cache hits and misses
//! and backend calls on a loopback port of its own.
//!
//! ```text
//! cargo run --example metrics --features metrics
//! curl -i -u alex:alex123 http://127.0.0.1:3000/api/hello   # 200 (cache miss, then hits)
//! curl -i -u bob:bob123 http://127.0.0.1:3000/api/hello     # 403
//! curl -i http://127.0.0.1:3000/api/hello                   # 401
//! curl -s http://127.0.0.1:9000/metrics | grep tower_secure_
//! ```
//!
//! `ADDR` and `METRICS_ADDR` change the two listen addresses. The recorder is installed
//! first: the layer registers its counters when it is built and when it decides.

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use tower_secure::config::{load_users, Deployment};
use tower_secure::SecureLayer;

const USERS: &str = include_str!("quickstart/users.toml");

const DEPLOYMENT: &str = r#"
[[resource.access_control]]
context = "/api/**"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]

[[resource.access_control]]
context = "/health"
secure = false
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let metrics_addr: SocketAddr = std::env::var("METRICS_ADDR").as_deref().unwrap_or("127.0.0.1:9000").parse()?;
    // Durations as Prometheus histograms (without buckets the exporter renders summaries).
    PrometheusBuilder::new()
        .with_http_listener(metrics_addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &[0.001, 0.005, 0.025, 0.1, 0.5, 2.5])?
        .install()?;

    let deployment = Deployment::from_toml_str("deployment.toml", DEPLOYMENT)?;
    let users = load_users("examples/quickstart/users.toml", USERS)?;
    let layer = SecureLayer::builder().deployment(deployment).user_store(users).build()?;
    let app = Router::new()
        .route("/api/hello", get(|| async { "hello\n" }))
        .route("/health", get(|| async { "ok\n" }))
        .layer(layer);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("metrics example on http://{}", listener.local_addr()?);
    println!("Prometheus metrics on http://{metrics_addr}/metrics");
    axum::serve(listener, app).await?;
    Ok(())
}
