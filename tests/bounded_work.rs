//! Bounded work (SPEC F18, E3) over real HTTP on 127.0.0.1: a 4,096-segment path, megabyte
//! headers, and a 10,000-rule configuration are each refused or served within a stated
//! bound, and the server keeps serving afterwards. (A 300 KB token and deeply nested JSON
//! claims are in tests/bearer_tokens.rs; oversized Basic credentials in tests/basic_auth.rs.)
//!
//! The bounds are generous on purpose (debug build, a shared 2-core machine): they tell
//! "bounded" from "proportional to the attacker's input", not fast from slow; speed is
//! measured by the benchmarks.

mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use axum::Router;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_secure::config::Deployment;
use tower_secure::policy::{CanonicalPath, PathError, Policy};

/// Every refusal or decision below must come within this.
const DECISION_BOUND: Duration = Duration::from_secs(1);

/// An app answering every path with "ok" behind a layer over `rules`.
async fn server(rules: &str) -> String {
    common::serve(Router::new().fallback(|| async { "ok" }).layer(common::layer(rules))).await
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Sends a raw request head and returns the status (0 when the server closed the
/// connection without an answer) and how long it took. Write errors (the server may stop
/// reading an oversized head and close) count as a closed connection.
async fn raw_request(base: &str, head: &[u8]) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    let _ = stream.write_all(head).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server neither answered nor closed within 10 s");
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, started.elapsed())
}

/// GET `path` as `authorization` (if any) with reqwest; the status and the time taken.
async fn timed_get(base: &str, path: &str, authorization: Option<&str>) -> (u16, Duration) {
    let started = Instant::now();
    let mut request = common::client().get(format!("{base}{path}"));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let status = request.send().await.unwrap().status().as_u16();
    (status, started.elapsed())
}

const RULES: &str = r#"
[[resource.access_control]]
context = "/open/**"
secure = false
"#;

// SPEC F18, E1: a 4,096-segment path (8 KB) and a path over the segment limit are refused
// with 400 before any rule lookup, within the bound; the canonicaliser itself stops at the
// limit instead of splitting the whole input.
#[tokio::test]
async fn f18_path_with_4096_segments_is_refused_quickly() {
    let base = server(RULES).await;
    let many_segments = "/open".to_owned() + &"/a".repeat(4096);
    let just_over_limit = "/open".to_owned() + &"/a".repeat(tower_secure::policy::MAX_SEGMENTS);
    let long_segment = format!("/open/{}", "a".repeat(tower_secure::policy::MAX_PATH_BYTES));
    for (what, path) in
        [("4,096 segments", &many_segments), ("129 segments", &just_over_limit), ("4 KB segment", &long_segment)]
    {
        let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, took) = raw_request(&base, head.as_bytes()).await;
        assert_eq!(status, 400, "{what}");
        assert!(took < DECISION_BOUND, "{what}: {took:?}");
    }
    // Controls: the same shape within the limits is served.
    let within = "/open".to_owned() + &"/a".repeat(100);
    assert_eq!(timed_get(&base, &within, None).await.0, 200);
    // The canonicaliser refuses on length before decoding: a megabyte of `%41` is refused
    // as too long, not decoded first.
    let huge = "/%41".repeat(256 * 1024);
    let started = Instant::now();
    assert_eq!(CanonicalPath::parse(&huge), Err(PathError::TooLong));
    assert!(started.elapsed() < DECISION_BOUND, "{:?}", started.elapsed());
}

// SPEC F18, E3: a 1 MB header (an `Authorization` one, or any other) is refused before the
// layer ever sees it (hyper's header buffer limit: 431, or the connection closed), never
// 200, within the bound; the server keeps serving afterwards.
#[tokio::test]
async fn f18_megabyte_headers_are_refused() {
    let base = server(RULES).await;
    let megabyte = "A".repeat(1024 * 1024);
    let heads = [
        ("1 MB Authorization", format!("GET /open/x HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {megabyte}\r\n\r\n")),
        ("1 MB other header", format!("GET /open/x HTTP/1.1\r\nHost: x\r\nX-Filler: {megabyte}\r\n\r\n")),
        ("4,096 small headers", {
            let mut head = "GET /open/x HTTP/1.1\r\nHost: x\r\n".to_owned();
            for i in 0..4096 {
                let _ = write!(head, "X-Filler-{i}: {}\r\n", "b".repeat(200));
            }
            head + "\r\n"
        }),
    ];
    for (what, head) in &heads {
        let (status, took) = raw_request(&base, head.as_bytes()).await;
        assert!(matches!(status, 0 | 400 | 431), "{what}: {status}");
        assert!(took < DECISION_BOUND * 2, "{what}: {took:?}");
    }
    // Still serving, and still deciding.
    assert_eq!(timed_get(&base, "/open/x", None).await.0, 200);
    assert_eq!(timed_get(&base, "/secured", None).await.0, 401);
    assert_eq!(timed_get(&base, "/secured", Some(&basic("alex", "alex123"))).await.0, 200);
}

/// 10,000 rules, a realistic mix: for service `i`, by `i % 4`: an open literal, a
/// `{param}` rule needing `/permission/admin`, a GET-only open `*` rule, a `**` rule needing
/// `/permission/admin`.
fn ten_thousand_rules() -> String {
    let mut text = String::with_capacity(1 << 20);
    for i in 0..10_000 {
        let rule = match i % 4 {
            0 => format!("context = \"/svc{i}/items\"\nsecure = false\n"),
            1 => format!("context = \"/svc{i}/{{id}}/detail\"\npermissions = [\"/permission/admin\"]\n"),
            2 => format!("context = \"/svc{i}/*/x\"\nhttp_method = \"GET\"\nsecure = false\n"),
            _ => format!("context = \"/svc{i}/**\"\npermissions = [\"/permission/admin\"]\n"),
        };
        let _ = write!(text, "[[resource.access_control]]\n{rule}\n");
    }
    text
}

// SPEC F18, B4: a 10,000-rule configuration loads and compiles within a bound, and each
// request against it is decided within the bound, with the right rule: the open literal,
// the secured `{param}`, the GET-only `*` (POST falls to the secure default, F3), the
// secured `**`, and the secure default for a path no rule names.
#[tokio::test]
async fn f18_ten_thousand_rules_load_and_decide_within_bounds() {
    let text = ten_thousand_rules();
    let started = Instant::now();
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
    Policy::compile(&deployment).unwrap();
    let load = started.elapsed();
    assert!(load < Duration::from_secs(10), "10,000 rules took {load:?} to load");

    let base = server(&text).await;
    let admin = basic("admin", "admin");
    let bob = basic("bob", "bob123");
    let cases: [(&str, &str, Option<&str>, u16); 8] = [
        ("GET", "/svc9996/items", None, 200),
        ("GET", "/svc9997/42/detail", None, 401),
        ("GET", "/svc9997/42/detail", Some(&bob), 403),
        ("GET", "/svc9997/42/detail", Some(&admin), 200),
        ("GET", "/svc9998/q/x", None, 200),
        ("POST", "/svc9998/q/x", None, 401),
        ("GET", "/svc9999/a/b/c", Some(&admin), 200),
        ("GET", "/nothing/here", None, 401),
    ];
    for (method, path, authorization, expected) in cases {
        let started = Instant::now();
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = common::client().request(method.clone(), format!("{base}{path}"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let status = request.send().await.unwrap().status().as_u16();
        let took = started.elapsed();
        assert_eq!(status, expected, "{method} {path} as {authorization:?}");
        assert!(took < DECISION_BOUND, "{method} {path}: {took:?}");
    }
}

// SPEC F18, B3: `regex:` rules are anchored and run in linear time (the regex crate has no
// backtracking): 200 of them with nested quantifiers against a 4 KB path are decided within
// the bound.
#[tokio::test]
async fn f18_regex_rules_run_in_bounded_time() {
    let mut text = String::new();
    for i in 0..200 {
        let _ = write!(text, "[[resource.access_control]]\ncontext = 'regex:/r{i}/(a+)+b'\nsecure = false\n\n");
    }
    let base = server(&text).await;
    // The classic catastrophic-backtracking input: many `a`s and no `b`.
    let path = format!("/r199/{}", "a".repeat(4000));
    let (status, took) = timed_get(&base, &path, None).await;
    assert_eq!(status, 401, "no rule matches: the secure default");
    assert!(took < DECISION_BOUND, "{took:?}");
    let (status, _) = timed_get(&base, "/r199/aaab", None).await;
    assert_eq!(status, 200, "control: the regex rule matches and is open");
}
