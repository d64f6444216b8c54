//! Which rule applies to a request, over real HTTP on 127.0.0.1: secure by default,
//! the pattern language, most-specific-wins, canonical paths, methods (SPEC B2, B3, B4,
//! E1, E2, F1, F3).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{any, get};
use axum::Router;
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use tower_secure::AuthContext;

/// What the layer decided, as the application sees it: the `context` and methods of the
/// rule that applied, and the caller (`-` when anonymous).
async fn echo(ctx: AuthContext) -> String {
    let caller = ctx.principal().map_or_else(|| "-".to_owned(), |p| p.name().to_string());
    format!("{}|{}|{}", ctx.rule().context(), ctx.rule().methods(), caller)
}

/// An app that answers every path and method with [`echo`], behind a layer built from
/// `deployment`.
async fn echo_server(deployment: &str) -> String {
    common::serve(Router::new().fallback(echo).layer(common::layer(deployment))).await
}

/// The same app with no layer at all: proves that a refusal comes from the layer.
async fn unsecured_server() -> String {
    common::serve(Router::new().fallback(|| async { "unsecured" })).await
}

/// Who sends a request.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Anonymous,
    Basic(&'static str, &'static str),
}

const ANON: Caller = Caller::Anonymous;
const ALEX: Caller = Caller::Basic("alex", "alex123");
const BOB: Caller = Caller::Basic("bob", "bob123");
const ADMIN: Caller = Caller::Basic("admin", "admin");

impl Caller {
    fn authorization(self) -> Option<String> {
        match self {
            Caller::Anonymous => None,
            Caller::Basic(user, password) => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {token}"))
            }
        }
    }
}

/// Sends `method path` as `caller` with reqwest; returns the status and body.
async fn send(base: &str, method: Method, path: &str, caller: Caller) -> (StatusCode, String) {
    send_with(base, method, path, caller, &[]).await
}

async fn send_with(
    base: &str,
    method: Method,
    path: &str,
    caller: Caller,
    headers: &[(&str, &str)],
) -> (StatusCode, String) {
    let mut request = common::client().request(method, format!("{base}{path}"));
    if let Some(value) = caller.authorization() {
        request = request.header("authorization", value);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// A raw HTTP/1.1 response: status, lower-cased head, body.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Sends `method target` byte for byte over TCP (reqwest and `url` normalise `..`,
/// `%2e` and friends), with `caller`'s credential and extra header lines, and reads the
/// whole response (`Connection: close`), bounded in time and size.
async fn raw(base: &str, method: &str, target: &[u8], caller: Caller, extra: &[&str]) -> Raw {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut request = Vec::new();
    request.extend_from_slice(method.as_bytes());
    request.push(b' ');
    request.extend_from_slice(target);
    request.extend_from_slice(format!(" HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").as_bytes());
    if let Some(value) = caller.authorization() {
        request.extend_from_slice(format!("Authorization: {value}\r\n").as_bytes());
    }
    for line in extra {
        request.extend_from_slice(format!("{line}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&request).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 || buf.len() > 64 * 1024 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("response within 10 s");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Raw { status, head: head.to_ascii_lowercase(), body: body.to_owned() }
}

/// The body [`echo`] answers for `rule` (context and methods) and caller.
fn echoed(context: &str, methods: &str, caller: &str) -> String {
    format!("{context}|{methods}|{caller}")
}

// ---------------------------------------------------------------------------------------
// B2: secure by default
// ---------------------------------------------------------------------------------------

// SPEC B2: a path no rule mentions needs an authenticated caller; the secure default
// applies (no permission needed); `secure = false` opens a resource, and a bad credential
// sent to it is still refused.
#[tokio::test]
async fn unmentioned_paths_need_a_caller_and_secure_false_opens() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/open"
secure = false
"#,
    )
    .await;

    for path in ["/unmentioned", "/", "/open/child", "/opener"] {
        let (status, _) = send(&base, Method::GET, path, ANON).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous GET {path}");
        let (status, body) = send(&base, Method::GET, path, ALEX).await;
        assert_eq!(status, StatusCode::OK, "alex GET {path}");
        assert_eq!(body, echoed("/**", "all", "alex"), "alex GET {path} gets the secure default");
    }
    let (status, _) = send(&base, Method::POST, "/unmentioned", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, body) = send(&base, Method::GET, "/open", ANON).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/open", "all", "-").as_str()));
    let (status, body) = send(&base, Method::POST, "/open", ANON).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/open", "all", "-").as_str()));
    // A valid credential on an open resource still yields the caller.
    let (status, body) = send(&base, Method::GET, "/open", BOB).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/open", "all", "bob").as_str()));
    // A wrong password on an open resource is a 401, not an anonymous pass.
    let (status, _) = send(&base, Method::GET, "/open", Caller::Basic("alex", "wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

// ---------------------------------------------------------------------------------------
// B3: the pattern language
// ---------------------------------------------------------------------------------------

/// Anonymous GETs: `Some(context)` when the open rule with that context must apply,
/// `None` when the request must fall to the secure default (401).
async fn check_open(base: &str, cases: &[(&str, Option<&str>)]) {
    for (path, expected) in cases {
        let (status, body) = send(base, Method::GET, path, ANON).await;
        match expected {
            Some(context) => {
                assert_eq!(status, StatusCode::OK, "GET {path} should be opened by {context}");
                assert_eq!(body, echoed(context, "all", "-"), "GET {path}");
            }
            None => assert_eq!(status, StatusCode::UNAUTHORIZED, "GET {path} must not match an open rule: {body}"),
        }
    }
}

// SPEC B3: `{name}` and `*` match exactly one segment.
#[tokio::test]
async fn single_segment_wildcards() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/users/{id}/profile"
secure = false

[[resource.access_control]]
context = "/files/*/meta"
secure = false
"#,
    )
    .await;
    check_open(
        &base,
        &[
            ("/users/42/profile", Some("/users/{id}/profile")),
            ("/users/alex%20smith/profile", Some("/users/{id}/profile")),
            ("/users/profile", None),
            ("/users/42/43/profile", None),
            ("/users/42/profile/x", None),
            ("/users/42", None),
            ("/files/a.txt/meta", Some("/files/*/meta")),
            ("/files/meta", None),
            ("/files/a/b/meta", None),
            ("/files/a/meta/x", None),
        ],
    )
    .await;
}

// SPEC B3, E1: `**` and a trailing `/*` match any rest, including none, on segment
// boundaries only (`/public/**` never matches `/publicity`).
#[tokio::test]
async fn any_rest_wildcards_are_segment_aware() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/public/**"
secure = false

[[resource.access_control]]
context = "/docs/*"
secure = false
"#,
    )
    .await;
    check_open(
        &base,
        &[
            ("/public", Some("/public/**")),
            ("/public/", Some("/public/**")),
            ("/public/a", Some("/public/**")),
            ("/public/a/b/c", Some("/public/**")),
            ("/publicity", None),
            ("/publicx/a", None),
            ("/pub", None),
            ("/x/public", None),
            ("/docs", Some("/docs/*")),
            ("/docs/a", Some("/docs/*")),
            ("/docs/a/b", Some("/docs/*")),
            ("/docsx", None),
            ("/doc", None),
        ],
    )
    .await;
}

// SPEC B3: `regex:` patterns are anchored at both ends.
#[tokio::test]
async fn regex_patterns_are_anchored() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "regex:/api/v[0-9]+/items"
secure = false
"#,
    )
    .await;
    check_open(
        &base,
        &[
            ("/api/v2/items", Some("regex:/api/v[0-9]+/items")),
            ("/api/v10/items", Some("regex:/api/v[0-9]+/items")),
            ("/api/vx/items", None),
            ("/x/api/v2/items", None),
            ("/api/v2/items/extra", None),
            ("/api/v2/itemsx", None),
            ("/API/v2/items", None),
        ],
    )
    .await;
}

// SPEC B3, E1: matching is case-sensitive, for literals and for what wildcards follow.
#[tokio::test]
async fn matching_is_case_sensitive() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/open"
secure = false

[[resource.access_control]]
context = "/Mixed/{x}/Case"
secure = false

[[resource.access_control]]
context = "/"
secure = false
"#,
    )
    .await;
    check_open(
        &base,
        &[
            ("/open", Some("/open")),
            ("/Open", None),
            ("/OPEN", None),
            ("/Mixed/a/Case", Some("/Mixed/{x}/Case")),
            ("/mixed/a/case", None),
            ("/Mixed/a/case", None),
            // `/` is the root only.
            ("/", Some("/")),
            ("/x", None),
        ],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// B4: most specific wins
// ---------------------------------------------------------------------------------------

const IDENTITY_VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";

/// Rules as TOML tables, to be written in any order.
fn specificity_rules() -> Vec<String> {
    vec![
        // the broadest: everything under /api needs admin
        "context = \"/api/**\"\npermissions = [\"/permission/admin\"]".to_owned(),
        // one user: the identity view permission
        format!("context = \"/api/users/{{id}}\"\npermissions = [\"{IDENTITY_VIEW}\"]"),
        // one literal user: open
        "context = \"/api/users/me\"\nsecure = false".to_owned(),
        // a single-segment wildcard below users, no literal at the end
        "context = \"/api/users/{id}/{part}\"\nsecure = false".to_owned(),
        // more literals beat fewer wildcards
        format!("context = \"/api/users/{{id}}/roles\"\npermissions = [\"{IDENTITY_VIEW}\"]"),
        // method-specific beats `all` for the same pattern
        "context = \"/api/reports\"\nhttp_method = \"GET\"\nsecure = false".to_owned(),
        "context = \"/api/reports\"\npermissions = [\"/permission/admin\"]".to_owned(),
        "context = \"/api/export/{x}\"\nhttp_method = [\"post\", \"PUT\"]\nsecure = false".to_owned(),
        "context = \"/api/export/{x}\"\npermissions = [\"/permission/admin\"]".to_owned(),
    ]
}

fn deployment_of(tables: &[String]) -> String {
    tables.iter().map(|t| format!("[[resource.access_control]]\n{t}\n\n")).collect()
}

/// Requests and the decision SPEC B4 calls for: status, and for 200 the rule's context
/// and methods.
/// A request and its expected decision: status, and the rule's context and methods.
type Case = (Method, &'static str, Caller, StatusCode, Option<(&'static str, &'static str)>);

fn specificity_cases() -> Vec<Case> {
    use StatusCode as S;
    vec![
        (Method::GET, "/api/users/me", ANON, S::OK, Some(("/api/users/me", "all"))),
        (Method::GET, "/api/users/42", ANON, S::UNAUTHORIZED, None),
        (Method::GET, "/api/users/42", BOB, S::FORBIDDEN, None),
        (Method::GET, "/api/users/42", ALEX, S::OK, Some(("/api/users/{id}", "all"))),
        (Method::GET, "/api/users/42", ADMIN, S::OK, Some(("/api/users/{id}", "all"))),
        (Method::GET, "/api/users/42/roles", ANON, S::UNAUTHORIZED, None),
        (Method::GET, "/api/users/42/roles", ALEX, S::OK, Some(("/api/users/{id}/roles", "all"))),
        (Method::GET, "/api/users/42/groups", ANON, S::OK, Some(("/api/users/{id}/{part}", "all"))),
        (Method::GET, "/api/users/42/groups/1", ALEX, S::FORBIDDEN, None),
        (Method::GET, "/api/users/42/groups/1", ADMIN, S::OK, Some(("/api/**", "all"))),
        (Method::GET, "/api/users", ALEX, S::FORBIDDEN, None),
        (Method::GET, "/api", ADMIN, S::OK, Some(("/api/**", "all"))),
        (Method::GET, "/api/reports", ANON, S::OK, Some(("/api/reports", "GET"))),
        (Method::HEAD, "/api/reports", ANON, S::OK, None),
        (Method::POST, "/api/reports", ANON, S::UNAUTHORIZED, None),
        (Method::POST, "/api/reports", ALEX, S::FORBIDDEN, None),
        (Method::POST, "/api/reports", ADMIN, S::OK, Some(("/api/reports", "all"))),
        (Method::DELETE, "/api/reports", ADMIN, S::OK, Some(("/api/reports", "all"))),
        (Method::POST, "/api/export/1", ANON, S::OK, Some(("/api/export/{x}", "POST,PUT"))),
        (Method::PUT, "/api/export/1", ANON, S::OK, Some(("/api/export/{x}", "POST,PUT"))),
        (Method::GET, "/api/export/1", ANON, S::UNAUTHORIZED, None),
        (Method::GET, "/api/export/1", ADMIN, S::OK, Some(("/api/export/{x}", "all"))),
    ]
}

async fn decisions(base: &str) -> Vec<(StatusCode, String)> {
    let mut out = Vec::new();
    for (method, path, caller, _, _) in specificity_cases() {
        out.push(send(base, method, path, caller).await);
    }
    out
}

// SPEC B4: the most specific rule applies whatever the file order (more literals, then
// fewer wildcards, then a method-specific rule over `all`); two orders decide alike.
#[tokio::test]
async fn most_specific_rule_wins_in_any_file_order() {
    let forward = specificity_rules();
    let mut backward = forward.clone();
    backward.reverse();
    // A third order: interleaved, so neither "first" nor "last" wins by accident.
    let mut shuffled: Vec<String> = forward.iter().step_by(2).cloned().collect();
    shuffled.extend(forward.iter().skip(1).step_by(2).cloned());

    let mut all = Vec::new();
    for tables in [&forward, &backward, &shuffled] {
        let base = echo_server(&deployment_of(tables)).await;
        let got = decisions(&base).await;
        for ((method, path, caller, status, rule), (got_status, body)) in specificity_cases().into_iter().zip(&got) {
            assert_eq!(*got_status, status, "{method} {path} as {caller:?}: {body}");
            if let Some((context, methods)) = rule {
                let (got_context, rest) = body.split_once('|').unwrap();
                let got_methods = rest.split_once('|').unwrap().0;
                assert_eq!((got_context, got_methods), (context, methods), "{method} {path} as {caller:?}");
            }
        }
        all.push(got);
    }
    assert_eq!(all[0], all[1], "file order changed a decision");
    assert_eq!(all[0], all[2], "file order changed a decision");
}

// ---------------------------------------------------------------------------------------
// E1: paths
// ---------------------------------------------------------------------------------------

/// Request targets that are not canonical, each of which must be answered 400.
const NON_CANONICAL: &[&[u8]] = &[
    b"/a/../b",
    b"/a/..",
    b"/..",
    b"/a/./b",
    b"/a/.",
    b"/./a",
    b"/a/%2e%2e/b",
    b"/a/%2E%2E/b",
    b"/a/%2e%2E/b",
    b"/a/.%2e/b",
    b"/a/%2E./b",
    b"/a/%2e/b",
    b"/a/%2E/b",
    b"/a/..;/b",
    b"/a/..;",
    b"/a;x/b",
    b"/a/b;jsessionid=1",
    b"/a/%3B/b",
    b"/a/%3b/b",
    b"/a%3Bx/b",
    b"/a/%2F/b",
    b"/a%2fb",
    b"/a/%5C/b",
    b"/a%5cb",
    b"/a\\b",
    b"/a/..\\b",
    b"/a/%25/b",
    b"/a/%252e%252e/b",
    b"/a//b",
    b"//a",
    b"/a/b//",
    b"/a/%00/b",
    b"/a%00",
    b"/a/%0d%0a/b",
    b"/a/%0D%0A/b",
    b"/a/%0a",
    b"/a/%09",
    b"/a/%7f",
    b"/a/%ff/b",
    b"/a/%c0%af/b",
    b"/a/%c0%ae%c0%ae/b",
    b"/a/%e0%80%af/b",
    b"/a/%ed%a0%80",
    b"/a/%",
    b"/a/%zz",
    b"/a/%2",
    b"/a/%u002e%u002e/b",
    b"/;/a",
];

// SPEC E1: every non-canonical path is refused with 400 by the layer (problem+json),
// before any rule lookup: even where every rule would let the request in, and even for
// an admin. The same bytes reach an app without the layer, so the 400 is the layer's.
#[tokio::test]
async fn non_canonical_paths_are_refused_with_400() {
    let open = echo_server(
        r#"
[[resource.access_control]]
context = "/**"
secure = false
"#,
    )
    .await;
    let secured = echo_server("").await;
    let control = unsecured_server().await;
    for target in NON_CANONICAL {
        let shown = String::from_utf8_lossy(target);
        let reached = raw(&control, "GET", target, ANON, &[]).await;
        assert_eq!(reached.status, 200, "control: the server itself must pass {shown:?} on");
        for (base, caller) in [(&open, ANON), (&open, ADMIN), (&secured, ANON), (&secured, ADMIN)] {
            let got = raw(base, "GET", target, caller, &[]).await;
            assert_eq!(got.status, 400, "GET {shown:?} as {caller:?}: {got:?}");
            assert!(got.head.contains("content-type: application/problem+json"), "{shown:?}: {got:?}");
            assert!(!got.head.contains("www-authenticate"), "{shown:?} was refused before any rule: {got:?}");
        }
        let got = raw(&open, "POST", target, ANON, &["Content-Length: 0"]).await;
        assert_eq!(got.status, 400, "POST {shown:?}: {got:?}");
    }
    // The controls of the control: canonical neighbours pass on the open server.
    for target in [&b"/a/b"[..], b"/a/...", b"/a/.b", b"/a/b.", b"/a/%2e%2e%2e", b"/a/%c3%a9", b"/a/%41"] {
        let got = raw(&open, "GET", target, ANON, &[]).await;
        assert_eq!(got.status, 200, "{:?}: {got:?}", String::from_utf8_lossy(target));
    }
}

// SPEC E1: percent-encoded unreserved characters compare decoded (`/api/%61dmin` is
// `/api/admin`), decoding happens once, and `/x/` is governed like `/x`.
#[tokio::test]
async fn encoded_and_trailing_slash_forms_get_the_same_rule() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/api/**"
secure = false

[[resource.access_control]]
context = "/api/admin"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/x"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/x/**"
secure = false
"#,
    )
    .await;
    for target in [&b"/api/admin"[..], b"/api/%61dmin", b"/api/%61%64%6D%69%6E", b"/api/admin/", b"/api/%61dmin/"] {
        let shown = String::from_utf8_lossy(target);
        assert_eq!(raw(&base, "GET", target, ANON, &[]).await.status, 401, "anonymous {shown}");
        assert_eq!(raw(&base, "GET", target, ALEX, &[]).await.status, 403, "alex {shown}");
        let got = raw(&base, "GET", target, ADMIN, &[]).await;
        assert_eq!(got.status, 200, "admin {shown}");
        assert_eq!(got.body, echoed("/api/admin", "all", "admin"), "admin {shown}");
    }
    for target in [&b"/x"[..], b"/x/", b"/%78", b"/%78/"] {
        let shown = String::from_utf8_lossy(target);
        assert_eq!(raw(&base, "GET", target, ANON, &[]).await.status, 401, "anonymous {shown}");
        let got = raw(&base, "GET", target, ADMIN, &[]).await;
        assert_eq!((got.status, got.body.as_str()), (200, echoed("/x", "all", "admin").as_str()), "{shown}");
    }
    // Below them the open rules apply (the controls).
    let got = raw(&base, "GET", b"/api/other", ANON, &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, echoed("/api/**", "all", "-").as_str()));
    let got = raw(&base, "GET", b"/x/y", ANON, &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, echoed("/x/**", "all", "-").as_str()));
    // Decoding happens once: `%2561` is refused, never read as `%61` then `a`.
    assert_eq!(raw(&base, "GET", b"/api/%2561dmin", ANON, &[]).await.status, 400);
    // An absolute-form target is decided on its path, whatever the authority says.
    for target in [&b"http://127.0.0.1/api/admin"[..], b"http://example.com/api/%61dmin/"] {
        let got = raw(&base, "GET", target, ANON, &[]).await;
        assert_eq!(got.status, 401, "{:?}: {got:?}", String::from_utf8_lossy(target));
    }
}

// SPEC E1: the query string never affects the decision, and neither do rewrite headers.
#[tokio::test]
async fn query_and_rewrite_headers_are_ignored() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/open"
secure = false

[[resource.access_control]]
context = "/admin"
permissions = ["/permission/admin"]
"#,
    )
    .await;
    // The query neither opens a secured path nor closes an open one, and is never
    // canonicalised as if it were path.
    for query in ["", "?x=1", "?/open", "?path=/open&secure=false", "?a=../open", "?a=%2e%2e%2F%3B", "?a=//b;c"] {
        let admin = format!("/admin{query}");
        let got = raw(&base, "GET", admin.as_bytes(), ANON, &[]).await;
        assert_eq!(got.status, 401, "anonymous {admin}: {got:?}");
        let got = raw(&base, "GET", admin.as_bytes(), ALEX, &[]).await;
        assert_eq!(got.status, 403, "alex {admin}: {got:?}");
        let got = raw(&base, "GET", admin.as_bytes(), ADMIN, &[]).await;
        assert_eq!((got.status, got.body.as_str()), (200, echoed("/admin", "all", "admin").as_str()), "{admin}");
        let open = format!("/open{}", query.replace("/open", "/admin"));
        let got = raw(&base, "GET", open.as_bytes(), ANON, &[]).await;
        assert_eq!((got.status, got.body.as_str()), (200, echoed("/open", "all", "-").as_str()), "{open}");
    }
    // Rewrite headers name another path: ignored both ways.
    for header in ["X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Uri", "X-Forwarded-Prefix"] {
        let to_open = format!("{header}: /open");
        let got = raw(&base, "GET", b"/admin", ANON, &[&to_open]).await;
        assert_eq!(got.status, 401, "{header} must not open /admin: {got:?}");
        let got = raw(&base, "GET", b"/admin", ALEX, &[&to_open]).await;
        assert_eq!(got.status, 403, "{header} must not open /admin to alex: {got:?}");
        let to_admin = format!("{header}: /admin");
        let got = raw(&base, "GET", b"/open", ANON, &[&to_admin]).await;
        assert_eq!((got.status, got.body.as_str()), (200, echoed("/open", "all", "-").as_str()), "{header}");
        let to_bad = format!("{header}: /a/../admin");
        let got = raw(&base, "GET", b"/open", ANON, &[&to_bad]).await;
        assert_eq!(got.status, 200, "{header} is not canonicalised either: {got:?}");
    }
}

/// Rules written with the full `/api/...` path, plus decoys for the stripped paths: a
/// layer that decided on the path the nested router sees would open `/api/admin`
/// (through the `/admin` decoy) and close `/api/open`.
const NESTED_RULES: &str = r#"
[[resource.access_control]]
context = "/api/admin"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/api/open"
secure = false

[[resource.access_control]]
context = "/admin"
secure = false

[[resource.access_control]]
context = "/open"
permissions = ["/permission/admin"]
"#;

async fn check_nested(base: &str) {
    let (status, body) = send(base, Method::GET, "/api/admin", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "/api/admin anonymous: {body}");
    let (status, _) = send(base, Method::GET, "/api/admin", ALEX).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "/api/admin as alex");
    let (status, body) = send(base, Method::GET, "/api/admin", ADMIN).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/api/admin", "all", "admin").as_str()));
    let (status, body) = send(base, Method::GET, "/api/open", ANON).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/api/open", "all", "-").as_str()));
    // A trailing slash and an encoded letter are still the full path.
    let got = raw(base, "GET", b"/api/%61dmin", ANON, &[]).await;
    assert_eq!(got.status, 401, "/api/%61dmin anonymous: {got:?}");
    let got = raw(base, "GET", b"/api/%61dmin/", ADMIN, &[]).await;
    assert_eq!((got.status, got.body.as_str()), (200, echoed("/api/admin", "all", "admin").as_str()));
    let got = raw(base, "GET", b"/api/../api/open", ANON, &[]).await;
    assert_eq!(got.status, 400, "dot segments through the nest: {got:?}");
}

/// Routes for `/admin` and `/open`, and a fallback so that other forms of those paths
/// reach the layer too instead of a 404 from the router.
fn inner_router() -> Router {
    Router::new().route("/admin", get(echo)).route("/open", get(echo)).fallback(echo)
}

// SPEC E1: a layer inside a nested router decides on the full request path (the
// original URI), not the prefix-stripped one the inner router sees.
#[tokio::test]
async fn layer_inside_a_nested_router_sees_the_full_path() {
    let app = Router::new().nest("/api", inner_router().layer(common::layer(NESTED_RULES)));
    check_nested(&common::serve(app).await).await;
}

// SPEC E1: a layer outside the outer router decides on the same full path.
#[tokio::test]
async fn layer_outside_the_outer_router_sees_the_full_path() {
    let app = Router::new().nest("/api", inner_router()).layer(common::layer(NESTED_RULES));
    check_nested(&common::serve(app).await).await;
}

// SPEC E1: two nesting levels, layer at the innermost.
#[tokio::test]
async fn layer_two_nests_deep_sees_the_full_path() {
    let rules = NESTED_RULES.replace("\"/api/", "\"/v1/api/");
    let app = Router::new().nest("/v1", Router::new().nest("/api", inner_router().layer(common::layer(&rules))));
    let base = common::serve(app).await;
    let (status, _) = send(&base, Method::GET, "/v1/api/admin", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = send(&base, Method::GET, "/v1/api/admin", ADMIN).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/v1/api/admin", "all", "admin").as_str()));
    let (status, body) = send(&base, Method::GET, "/v1/api/open", ANON).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/v1/api/open", "all", "-").as_str()));
}

// ---------------------------------------------------------------------------------------
// E2: methods
// ---------------------------------------------------------------------------------------

// SPEC E2: HEAD is checked as GET: a GET-only open rule opens HEAD, and a GET-only rule
// requiring a permission holds HEAD to it.
#[tokio::test]
async fn head_is_checked_as_get() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/doc"
http_method = "GET"
secure = false

[[resource.access_control]]
context = "/secret"
http_method = "GET"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/secret"
http_method = "POST"
secure = false

[[resource.access_control]]
context = "/mixed"
http_method = "GET"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/mixed"
secure = false
"#,
    )
    .await;
    let (status, _) = send(&base, Method::HEAD, "/doc", ANON).await;
    assert_eq!(status, StatusCode::OK, "HEAD /doc is opened by the GET rule");
    let (status, _) = send(&base, Method::POST, "/doc", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "POST /doc is not");

    let (status, _) = send(&base, Method::HEAD, "/secret", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "HEAD /secret anonymous");
    let (status, _) = send(&base, Method::HEAD, "/secret", ALEX).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "HEAD /secret as alex: the GET rule's permission applies");
    let (status, _) = send(&base, Method::HEAD, "/secret", ADMIN).await;
    assert_eq!(status, StatusCode::OK, "HEAD /secret as admin");
    // The control: the POST rule on the same path is open, and HEAD never took it.
    let (status, body) = send(&base, Method::POST, "/secret", ANON).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/secret", "POST", "-").as_str()));
    // `all` stands for HEAD too, but the GET rule is more specific for HEAD, as for GET.
    for method in [Method::GET, Method::HEAD] {
        let (status, _) = send(&base, method.clone(), "/mixed", ANON).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} /mixed anonymous");
        let (status, _) = send(&base, method.clone(), "/mixed", ALEX).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} /mixed as alex");
    }
    let (status, body) = send(&base, Method::PUT, "/mixed", ANON).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/mixed", "all", "-").as_str()));
}

/// What an `OPTIONS` handler answers when a request reaches it; counts its calls.
async fn options_reached(calls: Arc<AtomicUsize>, ctx: AuthContext) -> String {
    calls.fetch_add(1, Ordering::SeqCst);
    format!("options reached|{}", ctx.principal().map_or_else(|| "-".to_owned(), |p| p.name().to_string()))
}

/// `/api/thing` and `/open-thing` answered by an `any()` handler that counts its calls.
async fn preflight_server(deployment: &str) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let handler = {
        let calls = calls.clone();
        any(move |ctx: AuthContext| options_reached(calls.clone(), ctx))
    };
    let app = Router::new()
        .route("/api/thing", handler.clone())
        .route("/open-thing", handler)
        .layer(common::layer(deployment));
    (common::serve(app).await, calls)
}

const PREFLIGHT: &[(&str, &str)] =
    &[("origin", "https://app.example.com"), ("access-control-request-method", "DELETE")];

const PREFLIGHT_RULES: &str = r#"
[[resource.access_control]]
context = "/api/thing"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/open-thing"
secure = false
"#;

// SPEC E2: a request that looks like a CORS preflight is checked like any OPTIONS: an
// anonymous one never reaches a handler that accepts OPTIONS (axum's `any()`), on a rule's
// path or under the secure default; only a caller the rule admits does.
#[tokio::test]
async fn cors_preflight_is_checked_like_any_options() {
    let (base, calls) = preflight_server(PREFLIGHT_RULES).await;
    let (status, body) = send_with(&base, Method::OPTIONS, "/api/thing", ANON, PREFLIGHT).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous preflight: {body}");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never ran for the anonymous preflight");
    let (status, _) = send_with(&base, Method::OPTIONS, "/api/thing", ALEX, PREFLIGHT).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a preflight is held to the rule's permission");
    let (status, _) = send(&base, Method::OPTIONS, "/api/thing", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "plain OPTIONS");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no refused request reached the handler");
    let (status, body) = send_with(&base, Method::OPTIONS, "/api/thing", ADMIN, PREFLIGHT).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "options reached|admin"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // The secure default holds preflights too.
    let (base, calls) = preflight_server("").await;
    let (status, _) = send_with(&base, Method::OPTIONS, "/api/thing", ANON, PREFLIGHT).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "secure default, anonymous preflight");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // The control: an open rule lets any OPTIONS through, preflight or not.
    let (base, calls) = preflight_server(PREFLIGHT_RULES).await;
    let (status, body) = send_with(&base, Method::OPTIONS, "/open-thing", ANON, PREFLIGHT).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "options reached|-"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// SPEC E2: `[cors] authenticate_preflight = true`, from files written for earlier
// versions, still loads and changes nothing: preflights are checked either way.
#[tokio::test]
async fn cors_authenticate_preflight_true_is_accepted() {
    let (base, calls) = preflight_server(&format!("[cors]\nauthenticate_preflight = true\n{PREFLIGHT_RULES}")).await;
    let (status, body) = send_with(&base, Method::OPTIONS, "/api/thing", ANON, PREFLIGHT).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, _) = send_with(&base, Method::OPTIONS, "/api/thing", ALEX, PREFLIGHT).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let (status, body) = send_with(&base, Method::OPTIONS, "/api/thing", ADMIN, PREFLIGHT).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "options reached|admin"));
}

// ---------------------------------------------------------------------------------------
// F1: wildcards never match empty or vanished segments
// ---------------------------------------------------------------------------------------

// SPEC F1: `/a/{x}/c` never matches `/a//c` or `/a/c`: the first is refused, the second
// falls to the secure default.
#[tokio::test]
async fn single_segment_wildcard_never_matches_an_empty_segment() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/a/{x}/c"
secure = false

[[resource.access_control]]
context = "/b/*/c"
secure = false
"#,
    )
    .await;
    for prefix in ["/a", "/b"] {
        let target = format!("{prefix}/x/c");
        let got = raw(&base, "GET", target.as_bytes(), ANON, &[]).await;
        assert_eq!(got.status, 200, "control {target}: {got:?}");
        for target in [format!("{prefix}//c"), format!("{prefix}/%2F/c"), format!("{prefix}/./c")] {
            let got = raw(&base, "GET", target.as_bytes(), ANON, &[]).await;
            assert_eq!(got.status, 400, "{target}: {got:?}");
        }
        for target in [format!("{prefix}/c"), format!("{prefix}/c/")] {
            let got = raw(&base, "GET", target.as_bytes(), ANON, &[]).await;
            assert_eq!(got.status, 401, "{target} must fall to the secure default: {got:?}");
            let got = raw(&base, "GET", target.as_bytes(), ALEX, &[]).await;
            assert_eq!((got.status, got.body.as_str()), (200, echoed("/**", "all", "alex").as_str()), "{target}");
        }
    }
}

// SPEC F1: a request cannot slide from a specific, strict rule to a broader, weaker one
// through an empty or vanished segment.
#[tokio::test]
async fn no_sliding_from_a_strict_rule_to_a_weaker_one() {
    let base = echo_server(
        r#"
[[resource.access_control]]
context = "/a/{x}/c"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/a/**"
secure = false
"#,
    )
    .await;
    assert_eq!(raw(&base, "GET", b"/a/x/c", ANON, &[]).await.status, 401, "the strict rule applies");
    assert_eq!(raw(&base, "GET", b"/a/x/c", ALEX, &[]).await.status, 403, "the strict rule applies");
    for target in [&b"/a//c"[..], b"/a/x//c", b"/a/%2F/c", b"/a/x/%2e/c", b"/a/x/y/../c", b"/a/x/c;"] {
        let got = raw(&base, "GET", target, ANON, &[]).await;
        assert_eq!(got.status, 400, "{:?}: {got:?}", String::from_utf8_lossy(target));
    }
}

// ---------------------------------------------------------------------------------------
// F3: methods a rule does not list
// ---------------------------------------------------------------------------------------

const GET_ONLY_OPEN: &str = r#"
[[resource.access_control]]
context = "/items"
http_method = "GET"
secure = false

[[resource.access_control]]
context = "/trace-me"
http_method = ["TRACE"]
secure = false

[[resource.access_control]]
context = "/foo-me"
http_method = "foo"
extension_methods = ["FOO"]
secure = false

[[resource.access_control]]
context = "/everything"
secure = false
"#;

// SPEC F3: a method the open GET rule does not list falls to the secure default, never
// to the open rule.
#[tokio::test]
async fn unlisted_methods_fall_to_the_secure_default() {
    let base = echo_server(GET_ONLY_OPEN).await;
    let (status, body) = send(&base, Method::GET, "/items", ANON).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/items", "GET", "-").as_str()));
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS] {
        let (status, body) = send(&base, method.clone(), "/items", ANON).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} /items anonymous: {body}");
        let (status, body) = send(&base, method.clone(), "/items", ALEX).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/**", "all", "alex").as_str()), "{method}");
    }
}

// SPEC F3: TRACE, CONNECT and unknown methods are refused with 405 unless a rule names
// them; `all` does not stand for them.
#[tokio::test]
async fn trace_connect_and_unknown_methods_are_refused() {
    let base = echo_server(GET_ONLY_OPEN).await;
    let foo = Method::from_bytes(b"FOO").unwrap();
    let bar = Method::from_bytes(b"BAR").unwrap();
    for path in ["/items", "/everything", "/unmentioned", "/trace-me", "/foo-me"] {
        for caller in [ANON, ADMIN] {
            for method in [Method::TRACE, foo.clone(), bar.clone()] {
                let named = (method == Method::TRACE && path == "/trace-me") || (method == foo && path == "/foo-me");
                let (status, body) = send(&base, method.clone(), path, caller).await;
                if named {
                    assert_eq!(status, StatusCode::OK, "{method} {path} as {caller:?} is opened by its rule: {body}");
                    let expected_methods = method.as_str().to_owned();
                    assert_eq!(body, echoed(path, &expected_methods, caller_name(caller)));
                } else {
                    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path} as {caller:?}: {body}");
                }
            }
            // CONNECT with an origin-form target, sent raw.
            let got = raw(&base, "CONNECT", path.as_bytes(), caller, &[]).await;
            assert_eq!(got.status, 405, "CONNECT {path} as {caller:?}: {got:?}");
        }
    }
    // Methods are case-sensitive on the wire: `foo` is not `FOO`.
    let got = raw(&base, "foo", b"/foo-me", ANON, &[]).await;
    assert_eq!(got.status, 405, "lower-case foo: {got:?}");
    // The named methods open only their own rule's path, and standard methods are not
    // opened by them.
    let (status, _) = send(&base, Method::GET, "/trace-me", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = send(&base, Method::GET, "/foo-me", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The control: standard methods on /everything are open.
    let (status, _) = send(&base, Method::DELETE, "/everything", ANON).await;
    assert_eq!(status, StatusCode::OK);
}

fn caller_name(caller: Caller) -> &'static str {
    match caller {
        Caller::Anonymous => "-",
        Caller::Basic(user, _) => user,
    }
}

// SPEC F3: method-override headers are not honoured: a POST stays a POST.
#[tokio::test]
async fn method_override_headers_are_ignored() {
    let base = echo_server(GET_ONLY_OPEN).await;
    for header in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"] {
        let headers = [(header, "GET")];
        let (status, body) = send_with(&base, Method::POST, "/items", ANON, &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "POST with {header}: GET: {body}");
        let (status, body) = send_with(&base, Method::POST, "/items", ALEX, &headers).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/**", "all", "alex").as_str()), "{header}");
        // Nor does an override turn a refused method into an allowed one, or the reverse.
        let (status, _) = send_with(&base, Method::TRACE, "/items", ANON, &headers).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "TRACE with {header}: GET");
        let (status, body) = send_with(&base, Method::GET, "/items", ANON, &[(header, "DELETE")]).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, echoed("/items", "GET", "-").as_str()), "{header}");
    }
    // The query-parameter form (`_method`) is ignored too.
    let (status, _) = send(&base, Method::POST, "/items?_method=GET", ANON).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
