//! CORS with the security layer (SPEC E2), over real HTTP on 127.0.0.1 with tower-http's
//! `CorsLayer`, asserting what a browser gets. The supported order puts the CORS layer
//! outside the security layer: it answers preflights itself and adds its headers to 401
//! and 403 too. In the wrong order the security layer checks the preflight like any
//! `OPTIONS`, so an anonymous preflight is refused and no handler ever runs for it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::routing::any;
use axum::Router;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method};
use reqwest::StatusCode;
use tower_http::cors::CorsLayer;

const ORIGIN: &str = "https://app.example.com";

const RULES: &str = r#"
[[resource.access_control]]
context = "/api/things/{id}"
permissions = ["/permission/admin"]
"#;

/// Browsers from [`ORIGIN`] may call with GET and DELETE and send `Authorization`.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(HeaderValue::from_static(ORIGIN))
        .allow_methods([Method::GET, Method::DELETE])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE])
}

/// Which layer is outside.
#[derive(Clone, Copy)]
enum Order {
    /// `.layer(secure).layer(cors)`: the CORS layer sees every request first (supported).
    CorsOutside,
    /// `.layer(cors).layer(secure)`: the security layer sees every request first.
    CorsInside,
}

/// `/api/things/{id}` answered by an `any()` handler (OPTIONS included) that counts calls.
async fn serve(order: Order) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let handler = any(move || {
        let calls = counted.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            "handler ran"
        }
    });
    let routes = Router::new().route("/api/things/{id}", handler);
    let app = match order {
        Order::CorsOutside => routes.layer(common::layer(RULES)).layer(cors()),
        Order::CorsInside => routes.layer(cors()).layer(common::layer(RULES)),
    };
    (common::serve(app).await, calls)
}

/// What the browser sends before a cross-origin DELETE with an `Authorization` header: no
/// credentials (Fetch standard).
async fn preflight(base: &str) -> reqwest::Response {
    common::client()
        .request(Method::OPTIONS, format!("{base}/api/things/7"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .expect("no response to the preflight")
}

/// The cross-origin DELETE itself, with Basic credentials when given.
async fn delete(base: &str, credentials: Option<(&str, &str)>) -> reqwest::Response {
    let mut request = common::client().delete(format!("{base}/api/things/7")).header("origin", ORIGIN);
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await.expect("no response to the DELETE")
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response.headers().get(name).map(|v| v.to_str().unwrap_or("<not visible ASCII>").to_owned())
}

// SPEC E2: with the CORS layer outside, the preflight is answered by the CORS layer (200
// with the allowed origin and methods) and never reaches a handler; the real request is
// decided by the security layer, and its 401 and 403 carry the CORS headers, so the
// browser lets the page read them.
#[tokio::test]
async fn cors_layer_outside_answers_preflights_and_decorates_refusals() {
    let (base, calls) = serve(Order::CorsOutside).await;
    let response = preflight(&base).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some(ORIGIN));
    let methods = header(&response, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.contains("DELETE"), "allowed methods: {methods:?}");
    let headers = header(&response, "access-control-allow-headers").unwrap_or_default();
    assert!(headers.contains("authorization"), "allowed headers: {headers:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the preflight never reached the handler");

    let anonymous = delete(&base, None).await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&anonymous, "access-control-allow-origin").as_deref(), Some(ORIGIN), "401 readable by the page");
    assert!(header(&anonymous, "www-authenticate").is_some_and(|c| c.starts_with("Basic ")), "{anonymous:?}");
    let alex = delete(&base, Some(("alex", "alex123"))).await;
    assert_eq!(alex.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&alex, "access-control-allow-origin").as_deref(), Some(ORIGIN), "403 readable by the page");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "refused requests never reached the handler");

    let admin = delete(&base, Some(("admin", "admin"))).await;
    assert_eq!(admin.status(), StatusCode::OK);
    assert_eq!(header(&admin, "access-control-allow-origin").as_deref(), Some(ORIGIN));
    assert_eq!(admin.text().await.unwrap(), "handler ran");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// SPEC E2: with the CORS layer inside (the wrong order), the security layer checks the
// anonymous preflight like any OPTIONS: 401, without CORS headers (the browser reports a
// failed preflight), and the `any()` handler never runs. Only a caller the rule admits gets
// through to the CORS layer, which then answers it (still without running the handler).
#[tokio::test]
async fn cors_layer_inside_leaves_anonymous_preflights_refused() {
    let (base, calls) = serve(Order::CorsInside).await;
    let response = preflight(&base).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&response, "access-control-allow-origin"), None, "the CORS layer never saw it");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran for the anonymous preflight");

    let admin_preflight = common::client()
        .request(Method::OPTIONS, format!("{base}/api/things/7"))
        .basic_auth("admin", Some("admin"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "DELETE")
        .send()
        .await
        .expect("no response");
    assert_eq!(admin_preflight.status(), StatusCode::OK);
    assert_eq!(header(&admin_preflight, "access-control-allow-origin").as_deref(), Some(ORIGIN));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the CORS layer answered the preflight itself");

    // The control: a request the rule admits does reach the handler. (tower-http's CorsLayer
    // answers every OPTIONS itself, so the control is the DELETE.)
    let admin = delete(&base, Some(("admin", "admin"))).await;
    assert_eq!(admin.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
