//! Heap allocations per request, side by side: the quickstart's route with no layer, with
//! a cached Basic login, and with a cached RS256 bearer token (the quickstart's token
//! server, state in memory), each over the same `oneshot` path as `benches/layer.rs`.
//! Counted on the one thread that runs the requests (a current-thread runtime), after a
//! warm-up, over 10,000 requests each; every response must be 200.
//!
//! Run with `cargo bench --bench allocations` (seconds). Not a timing benchmark: its
//! global allocator counts, so the timing benchmarks live in other targets.

#[path = "common/quickstart.rs"]
#[allow(dead_code)] // each benchmark uses some of it
mod quickstart;

use axum::body::Body;
use axum::Router;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode};
use tokio::runtime::{Builder, Runtime};

use quickstart::{anonymous, app, basic, bearer, plain, send};

const REQUESTS: u64 = 10_000;

fn request(auth: Option<&HeaderValue>) -> Request<Body> {
    let mut request = anonymous();
    if let Some(auth) = auth {
        request.headers_mut().insert(AUTHORIZATION, auth.clone());
    }
    request
}

/// Allocations and bytes per request of `REQUESTS` requests.
fn per_request(rt: &Runtime, app: &Router, auth: Option<&HeaderValue>) -> (f64, f64) {
    let run = |n: u64| {
        rt.block_on(async {
            for _ in 0..n {
                let (status, body) = send(app, request(auth)).await;
                assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
            }
        })
    };
    run(100); // warm-up: caches filled, buffers grown
    let info = allocation_counter::measure(|| run(REQUESTS));
    (info.count_total as f64 / REQUESTS as f64, info.bytes_total as f64 / REQUESTS as f64)
}

fn main() {
    let rt = Builder::new_current_thread().enable_all().build().expect("runtime");
    let secured = rt.block_on(app(None));
    let token = rt.block_on(bearer(&secured));
    let plain = plain();
    let basic = basic();
    let rows = [
        ("no_layer", per_request(&rt, &plain, None)),
        ("basic_cached", per_request(&rt, &secured, Some(&basic))),
        ("bearer_rs256_cached", per_request(&rt, &secured, Some(&token))),
    ];
    let (base_count, base_bytes) = rows[0].1;
    println!("{:<22} {:>14} {:>14} {:>16}", "allocations", "per request", "bytes/request", "beyond no_layer");
    for (name, (count, bytes)) in rows {
        println!("{name:<22} {count:>14.1} {bytes:>14.0} {:>9.1} / {:>5.0} B", count - base_count, bytes - base_bytes);
    }
}
