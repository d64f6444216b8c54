//! The `#[secure]` attribute (SPEC B5) over real HTTP on 127.0.0.1: the handler's rule and
//! the runtime rule both apply unless the runtime rule says `override = true`; scope and
//! permission semantics as the layer's; the guard runs before every other extractor and
//! fails closed without the layer. Then the policy listing and the `tower-secure check`
//! command (SPEC B6).
//!
//! Bearer tokens are HS256 tokens signed here with `jsonwebtoken`; Basic callers are the
//! users of `common::users_toml`.

mod common;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower_secure::config::{load_users, Deployment};
use tower_secure::{secure, AuthContext, PolicyListing, SecureLayer};

const REALM: &str = "secure-attr";
const ISS: &str = "https://idp.secure-attr.test";
const HMAC_SECRET: &[u8] = b"secure-attribute-tests-hs256-secret-0123456789";
const VIEW_SCOPE: &str = "internal_identity_mgt_view";
/// This file, as compiled: the listing's origins point into it.
const THIS_FILE: &str = include_str!("secure_attribute.rs");

// ---------------------------------------------------------------------------------------
// The handlers of this test binary
// ---------------------------------------------------------------------------------------

/// `caller|rule origin` from the layer's decision.
fn who(ctx: &AuthContext) -> String {
    let caller = ctx.principal().map_or_else(|| "-".to_owned(), |p| p.name().to_string());
    format!("{caller}|{}", ctx.rule().origin())
}

/// The identity-management view permission, nothing else.
#[secure(permission = "/permission/admin/manage/identity/identitymgt/view", path = "/view", method = "GET")]
async fn view_only(ctx: AuthContext) -> String {
    who(&ctx)
}

/// `/permission/admin` or the view permission.
#[secure(
    permission = ["/permission/admin", "/permission/admin/manage/identity/identitymgt/view"],
    permissions_match = "any",
    path = "/perm-any"
)]
async fn perm_any(ctx: AuthContext) -> String {
    who(&ctx)
}

/// The login permission and the view permission.
#[secure(
    permission = ["/permission/admin/login", "/permission/admin/manage/identity/identitymgt/view"],
    path = "/perm-all",
    method = "GET"
)]
async fn perm_all(ctx: AuthContext) -> String {
    who(&ctx)
}

/// The view scope (bound to the view permission in `[[scope]]`).
#[secure(scope = "internal_identity_mgt_view", path = "/scope-view")]
async fn scope_view(ctx: AuthContext) -> String {
    who(&ctx)
}

/// Scopes `a` and `b` (neither bound to a permission).
#[secure(scope = ["a", "b"], path = "/scope-all")]
async fn scope_all(ctx: AuthContext) -> String {
    who(&ctx)
}

/// Scope `a` or `b`.
#[secure(scopes = ["a", "b"], scopes_match = "any", path = "/scope-any")]
async fn scope_any(ctx: AuthContext) -> String {
    who(&ctx)
}

/// The view scope and `/permission/admin`, which the scope's binding does not imply: a
/// token needs the scope and its user the permission (without `token_permissions = "check"`
/// no layer could be built: a token would pass without the permission).
#[secure(
    scope = "internal_identity_mgt_view",
    permission = "/permission/admin",
    token_permissions = "check",
    path = "/scope-admin"
)]
async fn scope_admin(ctx: AuthContext) -> String {
    who(&ctx)
}

#[derive(serde::Deserialize)]
struct Item {
    name: String,
}

/// A JSON body after the guard.
#[secure(permission = "/permission/admin/manage/identity/identitymgt/view", path = "/items", method = "POST")]
async fn create_item(ctx: AuthContext, Json(item): Json<Item>) -> String {
    format!("{}|created {}", who(&ctx), item.name)
}

/// No route declared: the listing cannot say which runtime rule meets it.
#[secure(permission = "/permission/admin/manage/identity/identitymgt/view")]
async fn undeclared(ctx: AuthContext) -> String {
    who(&ctx)
}

/// Not annotated: the layer alone decides.
async fn plain(ctx: AuthContext) -> String {
    who(&ctx)
}

fn routes() -> Router {
    Router::new()
        .route("/view", get(view_only))
        .route("/perm-any", get(perm_any))
        .route("/perm-all", get(perm_all))
        .route("/scope-view", get(scope_view))
        .route("/scope-all", get(scope_all))
        .route("/scope-any", get(scope_any))
        .route("/scope-admin", get(scope_admin))
        .route("/items", post(create_item))
        .route("/undeclared", get(undeclared))
        .route("/plain", get(plain))
}

// ---------------------------------------------------------------------------------------
// Deployments, servers, requests
// ---------------------------------------------------------------------------------------

/// The realm, the token issuer and the view scope's binding, then `rules`.
fn deployment_text(rules: &str) -> String {
    format!(
        r#"[authentication]
realm = "{REALM}"

[[oauth2.issuer]]
issuer = "{ISS}"
subject_format = "qualified"

[[oauth2.issuer.key]]
algorithm = "HS256"
secret_base64 = "{secret}"

[[scope]]
name = "{VIEW_SCOPE}"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]
{rules}"#,
        secret = STANDARD.encode(HMAC_SECRET),
    )
}

fn layer(rules: &str) -> SecureLayer {
    let deployment = Deployment::from_toml_str("deployment.toml", &deployment_text(rules)).unwrap();
    let users = load_users("users.toml", &common::users_toml()).unwrap();
    SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap()
}

/// Serves [`routes`] behind a layer over `rules`.
async fn start(rules: &str) -> Server {
    let base = common::serve(routes().layer(layer(rules))).await;
    Server { base, client: common::client() }
}

/// The line of the `[[resource.access_control]]` header just above `context = "{context}"`.
fn rule_line(text: &str, context: &str) -> usize {
    let needle = format!("context = \"{context}\"");
    let at = text.lines().position(|l| l.trim() == needle).unwrap_or_else(|| panic!("no rule for {context}"));
    assert_eq!(text.lines().nth(at - 1).map(str::trim), Some("[[resource.access_control]]"));
    at // 1-based line of the header = 0-based index of the context line
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

use Auth::Anonymous;
const ALEX: Auth = Auth::Basic("alex", "alex123");
const BOB: Auth = Auth::Basic("bob", "bob123");
const ADMIN: Auth = Auth::Basic("admin", "admin");
/// The view permission without the login permission.
const SAM: Auth = Auth::Basic("SECONDARY/sam", "sam123");

fn token(sub: &str, scope: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let claims = json!({"iss": ISS, "sub": sub, "iat": now, "exp": now + 600, "scope": scope});
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(HMAC_SECRET)).unwrap()
}

struct Server {
    base: String,
    client: reqwest::Client,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    challenges: Vec<String>,
    content_type: Option<String>,
    body: String,
}

impl Reply {
    /// The `caller|origin` of a [`who`] answer.
    #[track_caller]
    fn who(&self) -> &str {
        assert_eq!(self.status, 200, "expected a handler's answer: {self:?}");
        &self.body
    }
}

impl Server {
    async fn send(&self, request: reqwest::RequestBuilder, auth: Auth<'_>) -> Reply {
        let request = match auth {
            Auth::Anonymous => request,
            Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        let response = request.send().await.expect("no response");
        let status = response.status().as_u16();
        let headers = response.headers();
        let challenges = headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let content_type = headers.get("content-type").map(|v| v.to_str().unwrap().to_owned());
        let body = response.text().await.unwrap();
        Reply { status, challenges, content_type, body }
    }

    async fn get(&self, path: &str, auth: Auth<'_>) -> Reply {
        self.send(self.client.get(format!("{}{path}", self.base)), auth).await
    }

    async fn post_json(&self, path: &str, body: &str, auth: Auth<'_>) -> Reply {
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned());
        self.send(request, auth).await
    }

    /// Asserts the status of `path` for each caller.
    async fn expect(&self, path: &str, cases: &[(&str, Auth<'_>, u16)]) {
        for (name, auth, status) in cases {
            let reply = self.get(path, *auth).await;
            assert_eq!(reply.status, *status, "{name} on {path}: {reply:?}");
        }
    }
}

/// The challenges of a layer's 401: one per handler, Bearer and Basic.
fn layer_challenges() -> Vec<String> {
    vec![format!(r#"Bearer realm="{REALM}""#), format!(r#"Basic realm="{REALM}", charset="UTF-8""#)]
}

#[track_caller]
fn assert_insufficient_scope(reply: &Reply, scope: &str, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {reply:?}");
    let expected = format!(r#"Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}""#);
    assert_eq!(reply.challenges, vec![expected], "{what}: {reply:?}");
}

// ---------------------------------------------------------------------------------------
// B5: the handler's rule with the runtime rule
// ---------------------------------------------------------------------------------------

// SPEC B5: with no runtime rule for its path, the secure default (any authenticated
// caller) and the handler's rule both apply.
#[tokio::test]
async fn b5_annotation_alone_applies_under_the_secure_default() {
    let server = start("").await;
    assert_eq!(server.get("/view", ALEX).await.who(), "alex|secure default");
    assert_eq!(server.get("/view", SAM).await.who(), "SECONDARY/sam|secure default");
    assert_eq!(server.get("/view", ADMIN).await.who(), "admin|secure default");
    let bob = server.get("/view", BOB).await;
    assert_eq!(bob.status, 403, "{bob:?}");
    assert_eq!(bob.content_type.as_deref(), Some("application/problem+json"), "{bob:?}");
    let anonymous = server.get("/view", Anonymous).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(anonymous.challenges, layer_challenges(), "{anonymous:?}");
    // Control: the unannotated handler lets bob in.
    assert_eq!(server.get("/plain", BOB).await.who(), "bob|secure default");
}

// SPEC B5: a stricter runtime rule and the handler's rule both apply (deny wins): a caller
// who passes only one of them is refused.
#[tokio::test]
async fn b5_stricter_runtime_rule_and_handler_rule_both_apply() {
    let rules = r#"
[[resource.access_control]]
context = "/view"
permissions = ["/permission/admin/login"]
"#;
    let server = start(rules).await;
    let origin = format!("deployment.toml:{}", rule_line(&deployment_text(rules), "/view"));
    assert_eq!(server.get("/view", ALEX).await.who(), format!("alex|{origin}"));
    assert_eq!(server.get("/view", ADMIN).await.who(), format!("admin|{origin}"));
    server
        .expect(
            "/view",
            &[
                ("bob (runtime rule only: no view permission)", BOB, 403),
                ("sam (handler rule only: no login permission)", SAM, 403),
                ("anonymous", Anonymous, 401),
            ],
        )
        .await;
}

// SPEC B5: a looser runtime rule without `override` does not loosen the handler's rule: an
// anonymous caller let through by `secure = false` gets the layer's 401 with its
// challenges, a caller without the permission 403.
#[tokio::test]
async fn b5_looser_runtime_rule_without_override_keeps_the_handler_rule() {
    let rules = r#"
[[resource.access_control]]
context = "/view"
secure = false

[[resource.access_control]]
context = "/plain"
secure = false
"#;
    let server = start(rules).await;
    let text = deployment_text(rules);
    let origin = format!("deployment.toml:{}", rule_line(&text, "/view"));
    // Control: the open rule lets an anonymous caller reach the unannotated handler.
    let plain = format!("-|deployment.toml:{}", rule_line(&text, "/plain"));
    assert_eq!(server.get("/plain", Anonymous).await.who(), plain);

    let anonymous = server.get("/view", Anonymous).await;
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert_eq!(anonymous.challenges, layer_challenges(), "{anonymous:?}");
    assert_eq!(anonymous.content_type.as_deref(), Some("application/problem+json"), "{anonymous:?}");
    let bob = server.get("/view", BOB).await;
    assert_eq!(bob.status, 403, "{bob:?}");
    assert_eq!(server.get("/view", ALEX).await.who(), format!("alex|{origin}"));
    // The layer still checks credentials sent to an open resource.
    server.expect("/view", &[("alex, wrong password", Auth::Basic("alex", "nope"), 401)]).await;
}

// SPEC B5: `override = true` replaces the handler's rule: an open runtime rule lets
// everybody in, anonymous callers included.
#[tokio::test]
async fn b5_override_loosens_the_handler_rule() {
    let rules = r#"
[[resource.access_control]]
context = "/view"
secure = false
override = true
"#;
    let server = start(rules).await;
    let origin = format!("deployment.toml:{}", rule_line(&deployment_text(rules), "/view"));
    assert_eq!(server.get("/view", Anonymous).await.who(), format!("-|{origin}"));
    assert_eq!(server.get("/view", BOB).await.who(), format!("bob|{origin}"));
    assert_eq!(server.get("/view", ALEX).await.who(), format!("alex|{origin}"));
    // Other annotated handlers keep their rule.
    server.expect("/perm-all", &[("anonymous", Anonymous, 401), ("bob", BOB, 403), ("alex", ALEX, 200)]).await;
}

// SPEC B5: an overriding runtime rule replaces the handler's rule when tightening too, and
// the handler's own rule is then not checked at all: a runtime override that requires
// something else lets in a caller who fails the handler's rule.
#[tokio::test]
async fn b5_override_tightens_and_replaces_the_handler_rule() {
    let admin_only = r#"
[[resource.access_control]]
context = "/view"
permissions = ["/permission/admin"]
override = true
"#;
    let server = start(admin_only).await;
    let origin = format!("deployment.toml:{}", rule_line(&deployment_text(admin_only), "/view"));
    server.expect("/view", &[("alex (view, not admin)", ALEX, 403), ("anonymous", Anonymous, 401)]).await;
    assert_eq!(server.get("/view", ADMIN).await.who(), format!("admin|{origin}"));

    let login_only = r#"
[[resource.access_control]]
context = "/view"
permissions = ["/permission/admin/login"]
override = true
"#;
    let server = start(login_only).await;
    let origin = format!("deployment.toml:{}", rule_line(&deployment_text(login_only), "/view"));
    // bob fails the handler's rule (no view permission) but the override alone decides.
    assert_eq!(server.get("/view", BOB).await.who(), format!("bob|{origin}"));
    assert_eq!(server.get("/view", ALEX).await.who(), format!("alex|{origin}"));
    // sam passes the handler's rule but not the overriding one.
    server.expect("/view", &[("sam (view, no login)", SAM, 403), ("anonymous", Anonymous, 401)]).await;
}

// SPEC B5: `permissions_match = "any" | "all"` in the attribute, as in the rule file
// (`/permission/admin` covers everything below it).
#[tokio::test]
async fn b5_permissions_all_or_any() {
    let server = start("").await;
    server
        .expect(
            "/perm-any",
            &[("alex (view)", ALEX, 200), ("admin", ADMIN, 200), ("sam (view)", SAM, 200), ("bob (login)", BOB, 403)],
        )
        .await;
    server
        .expect(
            "/perm-all",
            &[
                ("alex (login and view)", ALEX, 200),
                ("admin (covers both)", ADMIN, 200),
                ("sam (view only)", SAM, 403),
                ("bob (login only)", BOB, 403),
                ("anonymous", Anonymous, 401),
            ],
        )
        .await;
}

// SPEC B5 (with C2): token callers must carry the handler's scopes, all or any of them,
// and their permissions are then not re-checked unless the handler says
// `token_permissions = "check"`; a token lacking a scope gets 403 with the
// `insufficient_scope` challenge naming the handler's scopes.
#[tokio::test]
async fn b5_token_callers_need_the_scopes() {
    let server = start("").await;
    let bob_view = token("bob", VIEW_SCOPE);
    assert_eq!(server.get("/scope-view", Auth::Bearer(&bob_view)).await.who(), "bob|secure default");
    let alex_openid = token("alex", "openid");
    let reply = server.get("/scope-view", Auth::Bearer(&alex_openid)).await;
    assert_insufficient_scope(&reply, VIEW_SCOPE, "alex's token without the view scope");

    // Scope plus permission with `token_permissions = "check"` (SPEC C2): the scope is not
    // enough, the token's user must hold the permission too (bob lacks /permission/admin).
    let reply = server.get("/scope-admin", Auth::Bearer(&bob_view)).await;
    assert_eq!(reply.status, 403, "bob's token has the scope, bob lacks the permission: {reply:?}");
    let admin_view = token("admin", VIEW_SCOPE);
    assert_eq!(server.get("/scope-admin", Auth::Bearer(&admin_view)).await.who(), "admin|secure default");
    let admin_openid = token("admin", "openid");
    let reply = server.get("/scope-admin", Auth::Bearer(&admin_openid)).await;
    assert_insufficient_scope(&reply, VIEW_SCOPE, "admin's token without the scope");

    let with = |scope: &str| token("bob", scope);
    for (scope, all, any) in
        [("a b", true, true), ("b c a", true, true), ("a", false, true), ("b", false, true), ("c", false, false)]
    {
        let t = with(scope);
        let reply = server.get("/scope-all", Auth::Bearer(&t)).await;
        if all {
            assert_eq!(reply.who(), "bob|secure default", "all, {scope:?}");
        } else {
            assert_insufficient_scope(&reply, "a b", &format!("all, {scope:?}"));
        }
        let reply = server.get("/scope-any", Auth::Bearer(&t)).await;
        if any {
            assert_eq!(reply.who(), "bob|secure default", "any, {scope:?}");
        } else {
            assert_insufficient_scope(&reply, "a b", &format!("any, {scope:?}"));
        }
    }
    // A permission-only handler judges a token caller by its user's permissions.
    let alex_token = token("alex", "");
    assert_eq!(server.get("/view", Auth::Bearer(&alex_token)).await.who(), "alex|secure default");
    let bob_token = token("bob", VIEW_SCOPE);
    let reply = server.get("/view", Auth::Bearer(&bob_token)).await;
    assert_eq!(reply.status, 403, "a scope does not stand in for a permission: {reply:?}");
    // Anonymous on a scoped handler: the layer's 401.
    let reply = server.get("/scope-view", Anonymous).await;
    assert_eq!((reply.status, &reply.challenges), (401, &layer_challenges()), "{reply:?}");
}

// SPEC B5 (with C4): Basic callers of a scoped handler are judged by the permissions each
// scope is bound to in `[[scope]]`; a scope bound to nothing refuses them.
#[tokio::test]
async fn b5_basic_callers_are_judged_by_scope_bindings() {
    let server = start("").await;
    server
        .expect(
            "/scope-view",
            &[
                ("alex (view)", ALEX, 200),
                ("sam (view)", SAM, 200),
                ("admin (covers view)", ADMIN, 200),
                ("bob", BOB, 403),
            ],
        )
        .await;
    let bob = server.get("/scope-view", BOB).await;
    assert!(!bob.challenges.iter().any(|c| c.contains("insufficient_scope")), "a Basic caller: {bob:?}");
    // `a` and `b` are bound to no permission: even admin is refused.
    server.expect("/scope-all", &[("admin", ADMIN, 403), ("alex", ALEX, 403)]).await;
    server.expect("/scope-any", &[("admin", ADMIN, 403)]).await;
    // Scope and permission: a Basic caller needs the scope's binding and the permission.
    server.expect("/scope-admin", &[("alex (view, not admin)", ALEX, 403), ("admin", ADMIN, 200)]).await;
}

// SPEC B5: the guard runs before every other extractor: an unauthorized caller's malformed
// body is never read (403/401, not 400/422); an authorized caller's is, by axum.
#[tokio::test]
async fn b5_guard_runs_before_the_body_extractor() {
    let server = start("").await;
    let malformed = "{\"name\": ";
    let wrong_shape = r#"{"name": 5}"#;
    for body in [malformed, wrong_shape] {
        let reply = server.post_json("/items", body, BOB).await;
        assert_eq!(reply.status, 403, "bob, {body:?}: {reply:?}");
        assert_eq!(reply.content_type.as_deref(), Some("application/problem+json"), "{reply:?}");
        let reply = server.post_json("/items", body, Anonymous).await;
        assert_eq!(reply.status, 401, "anonymous, {body:?}: {reply:?}");
    }
    let reply = server.post_json("/items", malformed, ALEX).await;
    assert_eq!(reply.status, 400, "alex's malformed JSON reaches axum's extractor: {reply:?}");
    let reply = server.post_json("/items", wrong_shape, ALEX).await;
    assert_eq!(reply.status, 422, "alex's mistyped JSON reaches axum's extractor: {reply:?}");
    let reply = server.post_json("/items", r#"{"name": "pen"}"#, ALEX).await;
    assert_eq!(reply.who(), "alex|secure default|created pen");
}

// SPEC B5 (E8): an annotated handler reached without the layer fails closed with 500.
#[tokio::test]
async fn b5_handler_without_the_layer_answers_500() {
    let base = common::serve(routes()).await;
    let server = Server { base, client: common::client() };
    for (name, auth) in [("anonymous", Anonymous), ("alex", ALEX), ("admin", ADMIN)] {
        let reply = server.get("/view", auth).await;
        assert_eq!(reply.status, 500, "{name}: {reply:?}");
        assert!(!reply.body.contains('|'), "the handler ran: {reply:?}");
    }
    let reply = server.post_json("/items", r#"{"name": "pen"}"#, ALEX).await;
    assert_eq!(reply.status, 500, "{reply:?}");
}

// ---------------------------------------------------------------------------------------
// B6: the policy listing and the check command
// ---------------------------------------------------------------------------------------

/// Asserts that `origin` is `tests/secure_attribute.rs:N` and that line N is the
/// `#[secure(` attribute of `handler`.
#[track_caller]
fn assert_attribute_origin(origin: &str, handler: &str) {
    let line: usize = origin
        .strip_prefix("tests/secure_attribute.rs:")
        .unwrap_or_else(|| panic!("{handler}: origin {origin:?} is not in this file"))
        .parse()
        .unwrap_or_else(|_| panic!("{handler}: origin {origin:?} has no line"));
    let lines: Vec<&str> = THIS_FILE.lines().collect();
    assert!(lines[line - 1].starts_with("#[secure("), "{handler}: line {line} is {:?}", lines[line - 1]);
    let function = lines[line..].iter().find(|l| l.starts_with("async fn ")).unwrap();
    assert!(function.starts_with(&format!("async fn {handler}(")), "{handler}: line {line} annotates {function:?}");
}

// SPEC B6: the listing names every annotated handler of this program with its origin,
// route, requirements, the runtime rule its route meets and whether both apply or the
// runtime rule overrides it; each rule lists the handlers it overrides.
#[tokio::test]
async fn b6_policy_listing_shows_handlers_rules_and_overrides() {
    let rules = r#"
[[resource.access_control]]
context = "/view"
secure = false
override = true

[[resource.access_control]]
context = "/perm-all"
http_method = "GET"
permissions = ["/permission/admin/login"]

[[resource.access_control]]
context = "/items"
http_method = "POST"
permissions = ["/permission/admin"]
override = true

[[resource.access_control]]
context = "/nothing-declared-here"
secure = false
override = true
"#;
    let text = deployment_text(rules);
    let at = |context: &str| format!("deployment.toml:{}", rule_line(&text, context));
    let listing = PolicyListing::new(&layer(rules));

    let handler = |name: &str| {
        let full = format!("secure_attribute::{name}");
        listing.handlers.iter().find(|h| h.handler == full).unwrap_or_else(|| panic!("{full} is not listed"))
    };
    for name in [
        "view_only",
        "perm_any",
        "perm_all",
        "scope_view",
        "scope_all",
        "scope_any",
        "scope_admin",
        "create_item",
        "undeclared",
    ] {
        assert_attribute_origin(&handler(name).origin, name);
    }
    assert!(!listing.handlers.iter().any(|h| h.handler.ends_with("::plain")), "plain is not annotated");

    let view = handler("view_only");
    assert_eq!(view.route.as_deref(), Some("GET /view"));
    assert_eq!(view.permissions, vec!["/permission/admin/manage/identity/identitymgt/view"]);
    assert_eq!(view.runtime_rule, Some(at("/view")));
    assert!(view.effect.starts_with(&format!("overridden by the runtime rule {}", at("/view"))), "{view:?}");

    let all = handler("perm_all");
    assert_eq!(all.route.as_deref(), Some("GET /perm-all"));
    assert_eq!(all.permissions_match, "all");
    assert_eq!(all.runtime_rule, Some(at("/perm-all")));
    assert!(all.effect.starts_with(&format!("both apply: the runtime rule {}", at("/perm-all"))), "{all:?}");

    let any = handler("perm_any");
    assert_eq!((any.route.as_deref(), any.permissions_match), (Some("GET /perm-any"), "any"));
    assert_eq!(any.runtime_rule.as_deref(), Some("secure default"));
    assert!(any.effect.starts_with("both apply"), "{any:?}");

    let scopes = handler("scope_any");
    assert_eq!((scopes.scopes.clone(), scopes.scopes_match), (vec!["a".to_owned(), "b".to_owned()], "any"));
    assert_eq!(scopes.token_permissions, "scopes");
    // SPEC C2: the listing says when a token's user is checked too.
    assert_eq!(handler("scope_admin").token_permissions, "check");

    let items = handler("create_item");
    assert_eq!(items.route.as_deref(), Some("POST /items"));
    assert!(items.effect.starts_with(&format!("overridden by the runtime rule {}", at("/items"))), "{items:?}");

    let undeclared = handler("undeclared");
    assert_eq!((undeclared.route.as_deref(), undeclared.runtime_rule.as_deref()), (None, None));
    assert!(undeclared.effect.starts_with("route not declared"), "{undeclared:?}");

    let rule = |context: &str| listing.rules.iter().find(|r| r.context == context).unwrap();
    assert_eq!(listing.rules.len(), 4);
    let view_rule = rule("/view");
    assert_eq!(view_rule.origin, at("/view"));
    assert!(view_rule.overrides_handler_rules && !view_rule.secure);
    assert_eq!(view_rule.overrides, vec!["secure_attribute::view_only"]);
    let perm_rule = rule("/perm-all");
    assert!(!perm_rule.overrides_handler_rules && perm_rule.overrides.is_empty(), "{perm_rule:?}");
    assert_eq!(perm_rule.methods, "GET");
    assert_eq!(rule("/items").overrides, vec!["secure_attribute::create_item"]);
    let lonely = rule("/nothing-declared-here");
    assert!(lonely.overrides_handler_rules && lonely.overrides.is_empty(), "{lonely:?}");
    let order: Vec<&str> = listing.handler_order.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(order, vec!["oauth2", "basic"]);

    // The table.
    let table = listing.to_string();
    assert!(table.contains(&format!("secure_attribute::view_only ({})", view.origin)), "{table}");
    assert!(table.contains(&format!("effect:      overridden by the runtime rule {}", at("/view"))), "{table}");
    assert!(table.contains(&format!("effect:      both apply: the runtime rule {}", at("/perm-all"))), "{table}");
    assert!(table.contains("route:       GET /view") && table.contains("route:       (not declared)"), "{table}");
    assert!(table.contains("yes: secure_attribute::view_only"), "{table}");
    assert!(table.contains("yes: secure_attribute::create_item"), "{table}");
    let rule_row = table.lines().find(|l| l.starts_with(&at("/perm-all"))).expect("a row for the /perm-all rule");
    assert!(rule_row.contains("/permission/admin/login") && rule_row.trim_end().ends_with("no"), "{rule_row}");
    assert!(table.contains("secure default"), "{table}");

    // The JSON.
    let json = listing.to_json();
    let listed = json["handlers"].as_array().unwrap();
    let view_json = listed.iter().find(|h| h["handler"] == "secure_attribute::view_only").unwrap();
    assert_eq!(view_json["origin"], view.origin.as_str());
    assert_eq!(view_json["route"], "GET /view");
    assert_eq!(view_json["runtime_rule"], at("/view"));
    let view_rule_json = json["rules"].as_array().unwrap().iter().find(|r| r["context"] == "/view").unwrap();
    assert_eq!(view_rule_json["overrides"], json!(["secure_attribute::view_only"]));
    assert_eq!(view_rule_json["overrides_handler_rules"], true);
}

fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tower-secure")).args(args).output().unwrap();
    let code = out.status.code().expect("exited with a code");
    (code, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const CLI_RULES: &str = r#"# checked by the CLI
[[resource.access_control]]
context = "/api/health"
http_method = "GET"
secure = false

[[resource.access_control]]
context = "/api/admin/**"
permissions = ["/permission/admin"]
allowed_auth_handlers = ["basic"]
override = true
"#;

// SPEC B6: `tower-secure policy` loads a good rule file (exit 0) and prints the table, or
// JSON with `--json` (`check` only checks: tests/cli.rs).
#[test]
fn b6_cli_check_prints_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("deployment.toml");
    std::fs::write(&rules, CLI_RULES).unwrap();
    let users = dir.path().join("users.toml");
    std::fs::write(&users, common::users_toml()).unwrap();
    let rules_path = rules.to_str().unwrap();

    let (code, stdout, stderr) = cli(&["policy", rules_path, "--users", users.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("Runtime rules"), "{stdout}");
    let health = stdout.lines().find(|l| l.starts_with(&format!("{rules_path}:2"))).expect("a row at line 2");
    assert!(health.contains("GET") && health.contains("/api/health") && health.contains("false"), "{health}");
    let admin = stdout.lines().find(|l| l.starts_with(&format!("{rules_path}:7"))).expect("a row at line 7");
    assert!(admin.contains("/api/admin/**") && admin.contains("/permission/admin") && admin.contains("yes"), "{admin}");
    assert!(stdout.contains("(none linked into this program)"), "{stdout}");
    assert!(stdout.contains("asked in this order: basic ("), "{stdout}");

    let (code, stdout, stderr) = cli(&["policy", rules_path, "--json", "--users", users.to_str().unwrap()]);
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    let rules_json = json["rules"].as_array().unwrap();
    assert_eq!(rules_json.len(), 2);
    assert_eq!(rules_json[0]["origin"], format!("{rules_path}:2"));
    assert_eq!(rules_json[0]["secure"], false);
    assert_eq!(rules_json[0]["methods"], "GET");
    assert_eq!(rules_json[1]["context"], "/api/admin/**");
    assert_eq!(rules_json[1]["overrides_handler_rules"], true);
    assert_eq!(rules_json[1]["permissions"], json!(["/permission/admin"]));
    assert_eq!(rules_json[1]["allowed_auth_handlers"], json!(["basic"]));
    assert_eq!(json["handlers"], json!([]));
    assert_eq!(json["handler_order"][0][0], "basic");
}

// SPEC B6: a rule file that does not load exits 1 with `file:line:column: key` on stderr;
// a usage error exits 2.
#[test]
fn b6_cli_check_refuses_bad_files_and_bad_usage() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("bad.toml");
    std::fs::write(&rules, "[[resource.access_control]]\ncontext = \"/a\"\nsecrue = false\n").unwrap();
    let path = rules.to_str().unwrap();
    let (code, stdout, stderr) = cli(&["check", path]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains(&format!("{path}:3:")) && stderr.contains("key `secrue`"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    // A file that parses but does not compile: two equally specific rules.
    std::fs::write(
        &rules,
        "[[resource.access_control]]\ncontext = \"/a\"\n\n[[resource.access_control]]\ncontext = \"/a\"\n",
    )
    .unwrap();
    let (code, _, stderr) = cli(&["check", path]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("{path}:5:")) && stderr.contains("key `context`"), "{stderr}");
    let (code, stdout, _) = cli(&["check", path, "--json"]);
    let errors: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!((code, &errors[0]["line"], &errors[0]["key"]), (1, &json!(5), &json!("context")), "{errors}");

    let missing = dir.path().join("missing.toml");
    let (code, _, stderr) = cli(&["check", missing.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");

    for args in [&[][..], &["check"], &["frobnicate", path], &["check", path, "--bogus"], &["check", path, "--users"]] {
        let (code, stdout, stderr) = cli(args);
        assert_eq!(code, 2, "{args:?}: stdout {stdout} stderr {stderr}");
        assert!(stderr.contains("usage: tower-secure"), "{args:?}: {stderr}");
    }
}
