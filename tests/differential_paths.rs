//! Differential test of the layer against the router (SPEC E1, F1, F3, C5): for generated
//! request paths (percent-encodings of every byte in either hex case, dot segments, `;`,
//! repeated and trailing slashes, unicode, tenant prefixes, queries), whenever a handler
//! runs, the rule of the route axum dispatched to must be among the rules the layer
//! applied. Otherwise a handler would run without its own rule's check: the bypass class
//! of Spring's and Shiro's path-matching advisories.
//!
//! Every handler is tagged with the `context` of the rule written for its route and
//! answers (headers only, so that HEAD works) with its tag and the rules the layer applied.
//! Three placements: `Router::layer` (the layer runs after routing), the layer wrapping the
//! whole router (before routing), and the layer on a nested router only.
//!
//! The property runs in process (`oneshot` on the real router, thousands of cases); the
//! counterexamples it found run over real HTTP below. `PROPERTY_SEED` and
//! `PROPERTY_CASES` override the fixed seed and case count; a failure prints both.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, MethodRouter};
use axum::Router;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use tower::{Layer as _, ServiceExt as _};
use tower_secure::{AuthContext, SecureLayer};

/// Rules written for the routes of [`routes`], one per route, plus the open `/public/**`.
const RULES: &str = r#"
[[resource.access_control]]
context = "/api/items/public"
secure = false

[[resource.access_control]]
context = "/api/items/{id}"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/api/items/{id}/owner"
permissions = ["/permission/admin/login"]

[[resource.access_control]]
context = "/api/admin/**"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/public/**"
secure = false

[[resource.access_control]]
context = "/nested/open"
secure = false

[[resource.access_control]]
context = "/nested/{name}"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/api/items/{id}"
http_method = "DELETE"
permissions = ["/permission/admin/manage"]
"#;

/// A handler tagged with its rule's context: answers 200 with `x-route` (the tag) and
/// `x-rules` (the contexts of every rule the layer applied, `|`-separated).
fn tagged(tag: &'static str) -> MethodRouter {
    let handler = move |context: AuthContext| async move {
        let applied: Vec<&str> = context.rules().map(|rule| rule.context()).collect();
        let mut headers = HeaderMap::new();
        headers.insert("x-route", HeaderValue::from_static(tag));
        headers.insert("x-rules", HeaderValue::from_str(&applied.join("|")).unwrap_or(HeaderValue::from_static("?")));
        (StatusCode::OK, headers).into_response()
    };
    get(handler).post(handler).delete(handler)
}

/// The nested part: `/nested/open` and `/nested/{name}`.
fn nested_routes() -> Router {
    Router::new().route("/open", tagged("/nested/open")).route("/{name}", tagged("/nested/{name}"))
}

/// The same routes with and without a leading `/t/{tenant}` (rules match the path after
/// the tenant prefix, SPEC C5). No fallback: unmatched paths get axum's 404.
fn routes() -> Router {
    let api = || {
        Router::new()
            .route("/api/items/public", tagged("/api/items/public"))
            .route("/api/items/{id}", tagged("/api/items/{id}"))
            .route("/api/items/{id}/owner", tagged("/api/items/{id}/owner"))
            .route("/api/admin/{*rest}", tagged("/api/admin/**"))
            .route("/public/{*rest}", tagged("/public/**"))
    };
    api().nest("/t/{tenant}", api())
}

fn layer() -> SecureLayer {
    common::layer(RULES)
}

/// Where the layer sits.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// `Router::layer`: runs after routing, on every route (nested ones included).
    AfterRouting,
    /// Wraps the whole router: runs before routing.
    AroundRouter,
    /// Only on the nested router (the rest of the app is not secured: only nested
    /// routes are checked in this placement).
    NestedOnly,
}

type App = tower::util::BoxCloneSyncService<Request<Body>, axum::response::Response, std::convert::Infallible>;

fn app(placement: Placement) -> App {
    match placement {
        Placement::AfterRouting => {
            let router = routes().nest("/nested", nested_routes()).layer(layer());
            tower::util::BoxCloneSyncService::new(router)
        }
        Placement::AroundRouter => {
            let secured = layer().layer(routes().nest("/nested", nested_routes()));
            let secured = tower::ServiceExt::<Request<Body>>::map_response(secured, IntoResponse::into_response);
            tower::util::BoxCloneSyncService::new(secured)
        }
        Placement::NestedOnly => {
            let router = Router::new().nest("/nested", nested_routes().layer(layer()));
            tower::util::BoxCloneSyncService::new(router)
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Caller {
    Anonymous,
    Bob,
    Admin,
}

impl Caller {
    fn authorization(self) -> Option<String> {
        let (user, password) = match self {
            Caller::Anonymous => return None,
            Caller::Bob => ("bob", "bob123"),
            Caller::Admin => ("admin", "admin"),
        };
        Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))))
    }
}

/// What one request showed: the status, and for a handler's answer its tag and the
/// rules the layer applied.
#[derive(Debug)]
struct Outcome {
    status: StatusCode,
    route: Option<String>,
    rules: Vec<String>,
}

fn outcome(status: StatusCode, headers: &HeaderMap) -> Outcome {
    let text = |name: &str| headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let rules = text("x-rules").map(|r| r.split('|').map(str::to_owned).collect()).unwrap_or_default();
    Outcome { status, route: text("x-route"), rules }
}

/// The property for one answer: a handler ran only under its own rule, and the layer
/// never answered 5xx for a path (the user store is in memory: no outage can happen).
fn check(target: &str, method: &Method, caller: Caller, got: &Outcome) -> Result<(), String> {
    if got.status.is_server_error() {
        return Err(format!("{method} {target} as {caller:?}: {}", got.status));
    }
    match &got.route {
        Some(route) if !got.rules.contains(route) => {
            Err(format!("{method} {target} as {caller:?}: handler {route} ran under {:?}, not its own rule", got.rules))
        }
        _ => Ok(()),
    }
}

async fn in_process(app: &App, method: &Method, target: &str, caller: Caller) -> Option<Outcome> {
    // Targets the http crate cannot represent never reach any server.
    let mut request = Request::builder().method(method.clone()).uri(target).body(Body::empty()).ok()?;
    if let Some(value) = caller.authorization() {
        request.headers_mut().insert("authorization", HeaderValue::from_str(&value).ok()?);
    }
    let response = app.clone().oneshot(request).await.ok()?;
    Some(outcome(response.status(), response.headers()))
}

// ---------------------------------------------------------------------------------------
// The generated paths

/// Segments the routes and rules name, their neighbours, and hostile forms.
const WORDS: &[&str] = &[
    "api",
    "items",
    "public",
    "owner",
    "admin",
    "nested",
    "open",
    "t",
    "tenant.com",
    "42",
    "me",
    "publicity",
    "Public",
    "x",
    "~",
    ".",
    "..",
    "%2e",
    "%2E%2e",
    ";",
    "a;b",
    "..;",
    "%3B",
    "%2F",
    "%5C",
    "%25",
    "%00",
    "%0a",
    "é",
    "%C3%A9",
    "%c3%a9",
    "%C0%AE",
    "%FF",
    "a b",
    "%20",
    "*",
    "{id}",
    "",
];

/// One segment: a word, possibly with some of its bytes percent-encoded (either hex case).
fn segment() -> impl Strategy<Value = String> {
    let word = prop::sample::select(WORDS);
    (word, prop::collection::vec(any::<(bool, bool)>(), 12)).prop_map(|(word, flips)| {
        let mut out = String::new();
        for (i, byte) in word.bytes().enumerate() {
            let (encode, lower) = flips.get(i).copied().unwrap_or((false, false));
            if encode && byte != b'%' {
                out.push_str(&if lower { format!("%{byte:02x}") } else { format!("%{byte:02X}") });
            } else {
                out.push(byte as char);
            }
        }
        out
    })
}

fn target() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(&["", "/t/tenant.com", "/t/TENANT.com", "/t/%74enant.com", "/nested"][..]);
    let segments = prop::collection::vec(segment(), 0..5);
    let ending = prop::sample::select(&["", "/", "//", "?a=1", "?/api/items/public", "#x"][..]);
    (prefix, segments, ending).prop_map(|(prefix, segments, ending)| {
        let mut path = prefix.to_owned();
        for segment in segments {
            path.push('/');
            path.push_str(&segment);
        }
        if path.is_empty() {
            path.push('/');
        }
        path + ending
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop::sample::select(vec![Method::GET, Method::HEAD, Method::POST, Method::DELETE, Method::OPTIONS])
}

fn caller() -> impl Strategy<Value = Caller> {
    prop::sample::select(vec![Caller::Anonymous, Caller::Bob, Caller::Admin])
}

/// The seed and case count: fixed for CI, overridable; printed so a failure names them.
fn config() -> Config {
    let seed = std::env::var("PROPERTY_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x0705_75ec_00e1);
    let cases = std::env::var("PROPERTY_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    eprintln!("differential property: PROPERTY_SEED={seed} PROPERTY_CASES={cases}");
    Config { cases, rng_seed: RngSeed::Fixed(seed), failure_persistence: None, ..Config::default() }
}

fn run_property(placement: Placement) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let app = Arc::new(app(placement));
    let mut runner = TestRunner::new(config());
    let result = runner.run(&(target(), method(), caller()), |(target, method, caller)| {
        let Some(got) = runtime.block_on(in_process(&app, &method, &target, caller)) else { return Ok(()) };
        check(&target, &method, caller, &got).map_err(TestCaseError::fail)
    });
    if let Err(failure) = result {
        panic!("{placement:?}: {failure}");
    }
}

// SPEC E1, F1, F3, C5: `Router::layer` (the layer runs after axum routed the raw path).
#[test]
fn e1_after_routing_handlers_run_only_under_their_rule() {
    run_property(Placement::AfterRouting);
}

// SPEC E1, F1, F3, C5: the layer wrapping the whole router (it runs before routing).
#[test]
fn e1_around_the_router_handlers_run_only_under_their_rule() {
    run_property(Placement::AroundRouter);
}

// SPEC E1: the layer on a nested router decides on the full path.
#[test]
fn e1_nested_router_handlers_run_only_under_their_rule() {
    run_property(Placement::NestedOnly);
}

// ---------------------------------------------------------------------------------------
// Counterexamples over real HTTP

/// Sends raw bytes (targets reqwest would normalise) and reads the status and headers.
async fn over_http(base: &str, method: &str, target: &str, caller: Caller) -> Outcome {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(value) = caller.authorization() {
        head.push_str(&format!("Authorization: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    let answer = String::from_utf8_lossy(&answer);
    let mut lines = answer.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = HeaderMap::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        if let Some((name, value)) = line.split_once(": ") {
            if let (Ok(name), Ok(value)) = (name.parse::<axum::http::HeaderName>(), HeaderValue::from_str(value)) {
                headers.append(name, value);
            }
        }
    }
    outcome(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), &headers)
}

// SPEC E1, F1: a literal segment spelled with percent-encodings (`%70ublic`) is read by the
// policy as the literal (`/api/items/public`, open) while axum's router matches the raw
// text and dispatches to `/api/items/{id}`: both rules apply, so the `{id}` handler never
// runs under the open rule alone. Anonymous 401, bob 403, admin 200 under both rules.
#[tokio::test]
async fn e1_encoded_literal_is_held_to_the_dispatched_routes_rule_too() {
    let base = common::serve(routes().nest("/nested", nested_routes()).layer(layer())).await;
    for target in ["/api/items/%70ublic", "/api/items/%70%75blic", "/api/items/publi%63"] {
        let got = over_http(&base, "GET", target, Caller::Anonymous).await;
        assert_eq!(got.status, StatusCode::UNAUTHORIZED, "{target} anonymous: {got:?}");
        let got = over_http(&base, "GET", target, Caller::Bob).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{target} bob: {got:?}");
        let got = over_http(&base, "GET", target, Caller::Admin).await;
        assert_eq!(got.status, StatusCode::OK, "{target} admin: {got:?}");
        assert_eq!(got.route.as_deref(), Some("/api/items/{id}"), "{target}");
        assert_eq!(got.rules, ["/api/items/public", "/api/items/{id}"], "{target}");
    }
    // The canonical spelling: one rule, open.
    let got = over_http(&base, "GET", "/api/items/public", Caller::Anonymous).await;
    assert_eq!((got.status, got.rules.as_slice()), (StatusCode::OK, &["/api/items/public".to_owned()][..]));
    // An encoding that does not change which rule applies changes nothing.
    let got = over_http(&base, "GET", "/api/items/%34%32", Caller::Admin).await;
    assert_eq!((got.status, got.rules.as_slice()), (StatusCode::OK, &["/api/items/{id}".to_owned()][..]));
}
