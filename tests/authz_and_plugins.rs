//! Authorization (permission tree, scope bindings, tenants), plugins (authentication and
//! authorization handlers, priorities, panics), audit events, the error responder and the
//! extractors, all over real HTTP on 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use axum::routing::get;
use axum::Router;
use common::audit::{Capture, Captured};
use http::request::Parts;
use http::HeaderValue;
use reqwest::header::HeaderMap;
use tower_secure::authn::AuthenticationHandler;
use tower_secure::authz::{AuthorizationHandler, AuthorizationRequest};
use tower_secure::config::{load_users, Deployment};
use tower_secure::identity::{InMemoryUserStore, Permission, Principal, QualifiedName};
use tower_secure::{AuthContext, AuthError, AuthErrorKind, ErrorBody, SecureLayer, SecureLayerBuilder, AUDIT_TARGET};
use tracing_subscriber::layer::SubscriberExt as _;

/// Basic credentials, if any, and extra headers of one request.
type Creds = Option<(&'static str, &'static str)>;
type Headers = &'static [(&'static str, &'static str)];

const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";
const ALEX: Option<(&str, &str)> = Some(("alex", "alex123"));
const BOB: Option<(&str, &str)> = Some(("bob", "bob123"));
const ADMIN: Option<(&str, &str)> = Some(("admin", "admin"));
const TINA: Option<(&str, &str)> = Some(("tina@example.com", "tina123"));

// ---------------------------------------------------------------------------------------
// Building layers and servers
// ---------------------------------------------------------------------------------------

fn deployment(toml: &str) -> Deployment {
    Deployment::from_toml_str("deployment.toml", toml).unwrap()
}

/// The standard users file plus `extra` (more `[[role]]` / `[[user]]` tables).
fn users(extra: &str) -> InMemoryUserStore {
    load_users("users.toml", &format!("{}\n{extra}", common::users_toml())).unwrap()
}

/// A builder over `toml` and the standard users, for adding plugins.
fn builder(toml: &str) -> SecureLayerBuilder {
    SecureLayer::builder().deployment(deployment(toml)).user_store(users(""))
}

/// Answers every path with `caller|handler|tenant` from the layer's decision.
async fn who(ctx: AuthContext) -> String {
    let principal = ctx.principal();
    format!(
        "{}|{}|{}",
        principal.map_or_else(|| "-".to_owned(), |p| p.name().to_string()),
        principal.map_or("-", Principal::authenticated_by),
        ctx.tenant().unwrap_or("-"),
    )
}

/// Serves [`who`] on every path behind `layer`.
async fn start(layer: SecureLayer) -> String {
    common::serve(Router::new().fallback(who).layer(layer)).await
}

/// One finished response.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, self.body)
    }
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Every `WWW-Authenticate` value, in order.
    fn challenges(&self) -> Vec<String> {
        self.headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    /// `(caller, handler, tenant)` from a [`who`] answer.
    fn who(&self) -> (String, String, String) {
        assert_eq!(self.status, 200, "expected a `who` answer, got {self:?}");
        let parts: Vec<&str> = self.body.split('|').collect();
        assert_eq!(parts.len(), 3, "not a `who` answer: {self:?}");
        (parts[0].to_owned(), parts[1].to_owned(), parts[2].to_owned())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// Asserts an RFC 9457 problem+json refusal with `status`.
    fn assert_problem(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{self:?}");
        let body = self.json();
        assert_eq!(body["status"], status, "{self:?}");
        assert!(body["title"].is_string() && body["detail"].is_string(), "{self:?}");
    }
}

async fn try_send(
    base: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> Result<Reply, reqwest::Error> {
    let mut request = common::client().get(format!("{base}{path}"));
    if let Some((user, password)) = basic {
        request = request.basic_auth(user, Some(password));
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await?;
    Ok(Reply { status, headers, body })
}

/// GET `path` with optional Basic credentials and extra headers.
async fn send(base: &str, path: &str, basic: Option<(&str, &str)>, headers: &[(&str, &str)]) -> Reply {
    try_send(base, path, basic, headers).await.unwrap_or_else(|e| panic!("GET {path}: no response: {e}"))
}

fn basic_challenge() -> String {
    r#"Basic realm="tower-secure", charset="UTF-8""#.to_owned()
}

// ---------------------------------------------------------------------------------------
// Plugins
// ---------------------------------------------------------------------------------------

type CanHandle = Box<dyn Fn(&Parts) -> bool + Send + Sync>;
type Authenticate = Box<dyn Fn(&Parts) -> Result<Principal, AuthError> + Send + Sync>;

/// A user-written authentication handler made of two closures.
struct PluginAuthn {
    name: &'static str,
    default_priority: i32,
    scheme: Option<&'static str>,
    can_handle: CanHandle,
    authenticate: Authenticate,
}

impl PluginAuthn {
    fn new(
        name: &'static str,
        can_handle: impl Fn(&Parts) -> bool + Send + Sync + 'static,
        authenticate: impl Fn(&Parts) -> Result<Principal, AuthError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            default_priority: 0,
            scheme: None,
            can_handle: Box::new(can_handle),
            authenticate: Box::new(authenticate),
        }
    }

    fn default_priority(mut self, priority: i32) -> Self {
        self.default_priority = priority;
        self
    }

    /// Sends `WWW-Authenticate: {scheme} realm="..."` like the built-ins do.
    fn challenge_scheme(mut self, scheme: &'static str) -> Self {
        self.scheme = Some(scheme);
        self
    }
}

#[async_trait]
impl AuthenticationHandler for PluginAuthn {
    fn name(&self) -> &str {
        self.name
    }

    fn default_priority(&self) -> i32 {
        self.default_priority
    }

    fn can_handle(&self, request: &Parts) -> bool {
        (self.can_handle)(request)
    }

    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
        (self.authenticate)(request)
    }

    fn challenge(&self, realm: &str, error: Option<&AuthError>) -> Option<HeaderValue> {
        let scheme = self.scheme?;
        if error.is_some_and(|e| e.kind() != AuthErrorKind::InvalidCredentials) {
            return None;
        }
        HeaderValue::from_str(&format!("{scheme} realm=\"{realm}\"")).ok()
    }
}

fn principal(user: &str, handler: &str, permissions: &[&str]) -> Principal {
    let mut builder = Principal::builder(QualifiedName::parse(user).unwrap(), handler);
    for p in permissions {
        builder = builder.permission(Permission::parse(p).unwrap());
    }
    builder.build()
}

/// API keys: `(key, user, permissions)`.
type Keys = &'static [(&'static str, &'static str, &'static [&'static str])];

/// An API-key handler: `header` carries a key; each key maps to a user and permissions.
fn api_key(name: &'static str, header: &'static str, keys: Keys) -> PluginAuthn {
    PluginAuthn::new(
        name,
        move |r| r.headers.contains_key(header),
        move |r| {
            let presented = r.headers.get(header).map(HeaderValue::as_bytes).unwrap_or_default();
            match keys.iter().find(|(key, _, _)| key.as_bytes() == presented) {
                Some((_, user, permissions)) => Ok(principal(user, name, permissions)),
                None => Err(AuthError::invalid_credentials("unknown api key")),
            }
        },
    )
}

/// A handler that claims every `Authorization: Basic` request: it lets everyone in as
/// `shadow` (`accept`) or refuses every one of them.
fn basic_shadow(accept: bool) -> PluginAuthn {
    PluginAuthn::new(
        "basic_shadow",
        |r| r.headers.get("authorization").is_some_and(|v| v.as_bytes().starts_with(b"Basic ")),
        move |_| {
            if accept {
                Ok(principal("shadow", "basic_shadow", &[VIEW]))
            } else {
                Err(AuthError::invalid_credentials("shadow refuses everyone"))
            }
        },
    )
    .challenge_scheme("Shadow")
}

type Decide = Box<dyn Fn(&AuthorizationRequest<'_>) -> Result<(), AuthError> + Send + Sync>;

/// A user-written authorization handler made of a closure; counts its calls.
struct PluginAuthz {
    name: &'static str,
    calls: Arc<AtomicUsize>,
    decide: Decide,
}

impl PluginAuthz {
    fn new(
        name: &'static str,
        decide: impl Fn(&AuthorizationRequest<'_>) -> Result<(), AuthError> + Send + Sync + 'static,
    ) -> Self {
        Self { name, calls: Arc::default(), decide: Box::new(decide) }
    }
}

#[async_trait]
impl AuthorizationHandler for PluginAuthz {
    fn name(&self) -> &str {
        self.name
    }

    async fn authorize(&self, request: &AuthorizationRequest<'_>) -> Result<(), AuthError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        (self.decide)(request)
    }
}

// ---------------------------------------------------------------------------------------
// C1: the permission tree
// ---------------------------------------------------------------------------------------

const ADMINISTER_USERS: &str = r#"
[[role]]
name = "administer"
permissions = ["/permission/administer"]

[[user]]
name = "ada"
password = "ADA_HASH"
roles = ["administer"]

[[user]]
name = "vic"
password = "VIC_HASH"
roles = ["identity_viewer"]

[[user]]
name = "nop"
password = "NOP_HASH"
roles = []
"#;

fn c1_users() -> InMemoryUserStore {
    users(
        &ADMINISTER_USERS
            .replace("ADA_HASH", &common::cheap_hash("ada123"))
            .replace("VIC_HASH", &common::cheap_hash("vic123"))
            .replace("NOP_HASH", &common::cheap_hash("nop123")),
    )
}

// SPEC C1: holding a permission grants everything below it on `/` boundaries, never its
// parent, never a sibling that merely shares a textual prefix.
#[tokio::test]
async fn c1_permission_tree_over_http() {
    let toml = r#"
        [[resource.access_control]]
        context = "/view/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view"]

        [[resource.access_control]]
        context = "/admin/**"
        permissions = ["/permission/admin"]

        [[resource.access_control]]
        context = "/administer/**"
        permissions = ["/permission/administer"]

        [[resource.access_control]]
        context = "/identity/**"
        permissions = ["/permission/admin/manage/identity"]
    "#;
    let layer = SecureLayer::builder().deployment(deployment(toml)).user_store(c1_users()).build().unwrap();
    let base = start(layer).await;
    let ada = Some(("ada", "ada123"));

    // A holder of /permission/admin passes a rule for a permission deep below it.
    assert_eq!(send(&base, "/view/x", ADMIN, &[]).await.who().0, "admin");
    assert_eq!(send(&base, "/view/x", ALEX, &[]).await.who().0, "alex");
    // A holder of only /permission/admin/login fails a rule for /permission/admin (its parent).
    send(&base, "/admin/x", BOB, &[]).await.assert_problem(403);
    send(&base, "/view/x", BOB, &[]).await.assert_problem(403);
    assert_eq!(send(&base, "/admin/x", ADMIN, &[]).await.who().0, "admin");
    // Holding a child never grants the parent.
    send(&base, "/identity/x", ALEX, &[]).await.assert_problem(403);
    assert_eq!(send(&base, "/identity/x", ADMIN, &[]).await.who().0, "admin");
    // `/permission/admin` does not cover `/permission/administer`, nor the other way round.
    send(&base, "/administer/x", ADMIN, &[]).await.assert_problem(403);
    assert_eq!(send(&base, "/administer/x", ada, &[]).await.who().0, "ada");
    send(&base, "/admin/x", ada, &[]).await.assert_problem(403);
}

// SPEC C1: several permissions must all be held, unless `permissions_match = "any"`.
#[tokio::test]
async fn c1_permissions_match_all_by_default_any_when_asked() {
    let toml = r#"
        [[resource.access_control]]
        context = "/all/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view", "/permission/admin/login"]

        [[resource.access_control]]
        context = "/any/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view", "/permission/admin/login"]
        permissions_match = "any"
    "#;
    let layer = SecureLayer::builder().deployment(deployment(toml)).user_store(c1_users()).build().unwrap();
    let base = start(layer).await;
    let vic = Some(("vic", "vic123")); // identity view only
    let nop = Some(("nop", "nop123")); // nothing

    // all: alex holds both; bob (login only) and vic (view only) hold one each.
    assert_eq!(send(&base, "/all/x", ALEX, &[]).await.who().0, "alex");
    send(&base, "/all/x", BOB, &[]).await.assert_problem(403);
    send(&base, "/all/x", vic, &[]).await.assert_problem(403);
    // any: one is enough, none is not.
    assert_eq!(send(&base, "/any/x", ALEX, &[]).await.who().0, "alex");
    assert_eq!(send(&base, "/any/x", BOB, &[]).await.who().0, "bob");
    assert_eq!(send(&base, "/any/x", vic, &[]).await.who().0, "vic");
    send(&base, "/any/x", nop, &[]).await.assert_problem(403);
    // A rule with neither permissions nor scopes needs only an authenticated caller (C2).
    assert_eq!(send(&base, "/elsewhere", nop, &[]).await.who().0, "nop");
}

// ---------------------------------------------------------------------------------------
// C2 / C4: scopes for Basic callers
// ---------------------------------------------------------------------------------------

const SCOPES: &str = r#"
    [[scope]]
    name = "internal_identity_mgt_view"
    permissions = ["/permission/admin/manage/identity/identitymgt/view"]

    [[scope]]
    name = "internal_login"
    permissions = ["/permission/admin/login"]

    [[scope]]
    name = "unbound"
"#;

// SPEC C2, C4: a Basic caller on a rule with scopes is judged by the permissions the scopes
// are bound to in `[[scope]]`.
#[tokio::test]
async fn c2_c4_basic_caller_is_judged_by_scope_bindings() {
    let toml = format!(
        r#"{SCOPES}
        [[resource.access_control]]
        context = "/scoped/**"
        scope = ["internal_identity_mgt_view"]

        [[resource.access_control]]
        context = "/two/**"
        scopes = ["internal_identity_mgt_view", "internal_login"]
        "#
    );
    let base = start(common::layer(&toml)).await;
    let sam = Some(("SECONDARY/sam", "sam123")); // identity view, no login

    assert_eq!(send(&base, "/scoped/x", ALEX, &[]).await.who().0, "alex");
    assert_eq!(send(&base, "/scoped/x", sam, &[]).await.who().0, "SECONDARY/sam");
    // admin holds /permission/admin, which covers the binding.
    assert_eq!(send(&base, "/scoped/x", ADMIN, &[]).await.who().0, "admin");
    send(&base, "/scoped/x", BOB, &[]).await.assert_problem(403);
    // All scopes by default: sam lacks the login binding.
    assert_eq!(send(&base, "/two/x", ALEX, &[]).await.who().0, "alex");
    send(&base, "/two/x", sam, &[]).await.assert_problem(403);
    send(&base, "/two/x", BOB, &[]).await.assert_problem(403);
}

// SPEC C2, C4: a scope with no permission binding, or no definition at all, denies a Basic
// caller, even one holding /permission/admin.
#[tokio::test]
async fn c2_c4_unbound_or_undefined_scope_denies_even_admin() {
    let toml = format!(
        r#"{SCOPES}
        [[resource.access_control]]
        context = "/unbound/**"
        scope = ["unbound"]

        [[resource.access_control]]
        context = "/undefined/**"
        scope = ["never_defined"]

        [[resource.access_control]]
        context = "/bound/**"
        scope = ["internal_identity_mgt_view"]
        "#
    );
    let base = start(common::layer(&toml)).await;
    for path in ["/unbound/x", "/undefined/x"] {
        for caller in [ADMIN, ALEX, BOB] {
            send(&base, path, caller, &[]).await.assert_problem(403);
        }
    }
    // Control: the same admin passes a bound scope on the same server.
    assert_eq!(send(&base, "/bound/x", ADMIN, &[]).await.who().0, "admin");
}

// SPEC C2: `scopes_match = "any"` needs one of the scopes; the default needs all.
#[tokio::test]
async fn c2_scopes_match_any() {
    let toml = format!(
        r#"{SCOPES}
        [[resource.access_control]]
        context = "/any/**"
        scope = ["never_defined", "internal_identity_mgt_view"]
        scopes_match = "any"

        [[resource.access_control]]
        context = "/all/**"
        scope = ["never_defined", "internal_identity_mgt_view"]

        [[resource.access_control]]
        context = "/either/**"
        scope = ["internal_identity_mgt_view", "internal_login"]
        scopes_match = "any"
        "#
    );
    let base = start(common::layer(&toml)).await;
    assert_eq!(send(&base, "/any/x", ALEX, &[]).await.who().0, "alex");
    send(&base, "/any/x", BOB, &[]).await.assert_problem(403);
    send(&base, "/all/x", ALEX, &[]).await.assert_problem(403);
    send(&base, "/all/x", ADMIN, &[]).await.assert_problem(403);
    assert_eq!(send(&base, "/either/x", BOB, &[]).await.who().0, "bob");
    assert_eq!(send(&base, "/either/x", ALEX, &[]).await.who().0, "alex");
}

// SPEC C1, C2: C2 spares only *token* callers a re-check of permissions; a Basic caller on
// a rule with both scopes and permissions must hold the rule's permissions (C1) as well as
// the scopes' bindings (C2). (The scope's binding does not imply `/permission/admin`, so
// the rule must say `token_permissions = "check"` to load.)
#[tokio::test]
async fn c1_c2_basic_caller_on_rule_with_scope_and_permissions_needs_both() {
    let toml = format!(
        r#"{SCOPES}
        [[resource.access_control]]
        context = "/both/**"
        scope = ["internal_identity_mgt_view"]
        permissions = ["/permission/admin"]
        token_permissions = "check"
        "#
    );
    let base = start(common::layer(&toml)).await;
    // admin satisfies both the binding and the rule's permission.
    assert_eq!(send(&base, "/both/x", ADMIN, &[]).await.who().0, "admin");
    // alex satisfies the scope binding but not /permission/admin.
    send(&base, "/both/x", ALEX, &[]).await.assert_problem(403);
}

// ---------------------------------------------------------------------------------------
// C3: status codes
// ---------------------------------------------------------------------------------------

// SPEC C3: authenticated but not authorized is 403 problem+json, never 401 or 404, and does
// not invite re-authentication with a Basic challenge.
#[tokio::test]
async fn c3_forbidden_is_403_problem_json_without_challenge() {
    let toml = r#"
        [[resource.access_control]]
        context = "/api/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view"]
    "#;
    let app = Router::new().route("/api/exists", get(|| async { "exists" })).layer(common::layer(toml));
    let base = common::serve(app).await;

    for path in ["/api/exists", "/api/missing"] {
        let reply = send(&base, path, BOB, &[]).await;
        reply.assert_problem(403);
        assert!(reply.challenges().is_empty(), "a 403 must not carry a challenge: {reply:?}");
        assert_eq!(reply.json()["title"], "Forbidden");
        assert!(!reply.body.contains("bob"), "the body names the caller: {reply:?}");
    }
    // Control: the same path is the router's 404 only for an authorized caller, and 200
    // where the route exists; an anonymous caller gets 401 with the challenge.
    assert_eq!(send(&base, "/api/missing", ALEX, &[]).await.status, 404);
    assert_eq!(send(&base, "/api/exists", ALEX, &[]).await.body, "exists");
    let anonymous = send(&base, "/api/missing", None, &[]).await;
    anonymous.assert_problem(401);
    assert_eq!(anonymous.challenges(), vec![basic_challenge()]);
}

// ---------------------------------------------------------------------------------------
// C5: tenants
// ---------------------------------------------------------------------------------------

const TENANT_RULES: &str = r#"
    [[resource.access_control]]
    context = "/api/**"

    [[resource.access_control]]
    context = "/api/admin/**"
    permissions = ["/permission/admin"]

    [[resource.access_control]]
    context = "/public/**"
    secure = false
"#;

// SPEC C5: only a leading /t/{tenant}/ selects a tenant; rules match without the prefix;
// callers of another tenant get 403; tenant names compare case-insensitively.
#[tokio::test]
async fn c5_tenant_paths_and_rules_without_prefix() {
    let base = start(common::layer(TENANT_RULES)).await;

    // tina belongs to example.com: refused on a super-tenant path, allowed in her tenant.
    let refused = send(&base, "/api/x", TINA, &[]).await;
    refused.assert_problem(403);
    assert!(refused.challenges().is_empty(), "{refused:?}");
    assert_eq!(send(&base, "/t/example.com/api/x", TINA, &[]).await.who(), who_of("tina@example.com", "example.com"));
    // Case-insensitive tenant names.
    assert_eq!(send(&base, "/t/EXAMPLE.com/api/x", TINA, &[]).await.who(), who_of("tina@example.com", "example.com"));
    // alex (super tenant) is refused in example.com, allowed on super-tenant paths.
    send(&base, "/t/example.com/api/x", ALEX, &[]).await.assert_problem(403);
    assert_eq!(send(&base, "/api/x", ALEX, &[]).await.who(), who_of("alex", "-"));
    assert_eq!(send(&base, "/t/carbon.super/api/x", ALEX, &[]).await.who(), who_of("alex", "carbon.super"));
    // A `/t/` further down the path does not select a tenant.
    send(&base, "/api/t/example.com/x", TINA, &[]).await.assert_problem(403);
    assert_eq!(send(&base, "/api/t/example.com/x", ALEX, &[]).await.who(), who_of("alex", "-"));
    // Rules match the path with the prefix removed: /api/admin/** applies inside the tenant...
    send(&base, "/t/example.com/api/admin/x", TINA, &[]).await.assert_problem(403);
    // ... and so does the open /public/**, while an unlisted tenant path stays secure.
    assert_eq!(send(&base, "/t/example.com/public/x", None, &[]).await.who(), who_of("-", "example.com"));
    send(&base, "/t/example.com/other", None, &[]).await.assert_problem(401);
}

fn who_of(caller: &str, tenant: &str) -> (String, String, String) {
    let handler = if caller == "-" { "-" } else { "basic" };
    (caller.to_owned(), handler.to_owned(), tenant.to_owned())
}

// SPEC C5: `cross_tenant = true` lets callers of any tenant in; a list lets in callers of
// the listed tenants only.
#[tokio::test]
async fn c5_cross_tenant_true_and_list() {
    let toml = r#"
        [[resource.access_control]]
        context = "/open-door/**"
        cross_tenant = true

        [[resource.access_control]]
        context = "/super-only/**"
        cross_tenant = ["CARBON.SUPER"]

        [[resource.access_control]]
        context = "/other-only/**"
        cross_tenant = ["other.org"]

        [[resource.access_control]]
        context = "/closed/**"
        cross_tenant = false
    "#;
    let base = start(common::layer(toml)).await;

    assert_eq!(send(&base, "/t/example.com/open-door/x", ALEX, &[]).await.who(), who_of("alex", "example.com"));
    assert_eq!(send(&base, "/open-door/x", TINA, &[]).await.who(), who_of("tina@example.com", "-"));
    // The list names caller tenants (compared case-insensitively).
    assert_eq!(send(&base, "/t/example.com/super-only/x", ALEX, &[]).await.who(), who_of("alex", "example.com"));
    send(&base, "/super-only/x", TINA, &[]).await.assert_problem(403);
    send(&base, "/t/example.com/other-only/x", ALEX, &[]).await.assert_problem(403);
    send(&base, "/t/example.com/closed/x", ALEX, &[]).await.assert_problem(403);
    send(&base, "/closed/x", TINA, &[]).await.assert_problem(403);
    // Same-tenant callers are never affected.
    assert_eq!(
        send(&base, "/t/example.com/closed/x", TINA, &[]).await.who(),
        who_of("tina@example.com", "example.com")
    );
}

// SPEC C5: an unknown tenant answers exactly as a forbidden one (no tenant enumeration).
#[tokio::test]
async fn c5_unknown_tenant_answers_like_forbidden() {
    let base = start(common::layer(TENANT_RULES)).await;
    let pairs = [
        (("/t/nowhere.org/api/x", ALEX), ("/t/example.com/api/x", ALEX)),
        (("/t/nowhere.org/api/x", TINA), ("/api/x", TINA)),
        (("/t/NOWHERE.org/api/admin/x", ADMIN), ("/t/example.com/api/admin/x", ADMIN)),
    ];
    for ((unknown_path, caller), (forbidden_path, same_caller)) in pairs {
        let unknown = send(&base, unknown_path, caller, &[]).await;
        let forbidden = send(&base, forbidden_path, same_caller, &[]).await;
        forbidden.assert_problem(403);
        assert_eq!(unknown.status, forbidden.status, "{unknown:?} vs {forbidden:?}");
        assert_eq!(unknown.body.as_bytes(), forbidden.body.as_bytes());
        let strip = |h: &HeaderMap| {
            let mut h = h.clone();
            h.remove("date");
            h
        };
        assert_eq!(strip(&unknown.headers), strip(&forbidden.headers));
    }
}

// ---------------------------------------------------------------------------------------
// A1 / A2 / A10: authentication plugins and priorities
// ---------------------------------------------------------------------------------------

const ROBOT_KEYS: Keys =
    &[("robot-key-1", "robot", &[VIEW]), ("weak-key-2", "weakbot", &[]), ("tenant-key-3", "bot@example.com", &[VIEW])];

// SPEC A1, A10: a user-written API-key handler authenticates its callers beside `basic`.
#[tokio::test]
async fn a1_a10_api_key_plugin_beside_basic() {
    let toml = r#"
        [[resource.access_control]]
        context = "/api/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view"]
    "#;
    let plugin = api_key("api_key", "x-api-key", ROBOT_KEYS).challenge_scheme("ApiKey");
    let base = start(builder(toml).authentication_handler(plugin).build().unwrap()).await;

    let robot = send(&base, "/api/x", None, &[("x-api-key", "robot-key-1")]).await;
    assert_eq!(robot.who(), ("robot".to_owned(), "api_key".to_owned(), "-".to_owned()));
    assert_eq!(send(&base, "/api/x", ALEX, &[]).await.who().1, "basic");
    // The plugin's callers are authorized like anyone else.
    send(&base, "/api/x", None, &[("x-api-key", "weak-key-2")]).await.assert_problem(403);
    send(&base, "/t/example.com/api/x", None, &[("x-api-key", "robot-key-1")]).await.assert_problem(403);
    assert_eq!(
        send(&base, "/t/example.com/api/x", None, &[("x-api-key", "tenant-key-3")]).await.who().0,
        "bot@example.com"
    );
    // A wrong key is 401 with the plugin's own challenge.
    let wrong = send(&base, "/api/x", None, &[("x-api-key", "nope")]).await;
    wrong.assert_problem(401);
    assert_eq!(wrong.challenges(), vec![r#"ApiKey realm="tower-secure""#.to_owned()]);
    // No credential: one challenge per allowed scheme, the plugin's included.
    let mut none = send(&base, "/api/x", None, &[]).await.challenges();
    none.sort();
    assert_eq!(none, vec![r#"ApiKey realm="tower-secure""#.to_owned(), basic_challenge()]);
}

const KEY_A: Keys = &[("ka", "robot_a", &[])];
const KEY_B: Keys = &[("kb", "robot_b", &[])];

// SPEC A2, A10: of two handlers that can both handle a request, the higher priority one
// decides; its refusal of a present-but-invalid credential is final (no fallthrough).
#[tokio::test]
async fn a2_a10_higher_priority_handler_decides_without_fallthrough() {
    for (a_priority, b_priority) in [(50, 40), (40, 50)] {
        let layer = builder("")
            .authentication_handler_with_priority(
                api_key("key_a", "x-api-key", KEY_A).challenge_scheme("KeyA"),
                a_priority,
            )
            .authentication_handler_with_priority(
                api_key("key_b", "x-api-key", KEY_B).challenge_scheme("KeyB"),
                b_priority,
            )
            .build()
            .unwrap();
        let (winner, loser, winner_key, loser_key, scheme) = if a_priority > b_priority {
            ("key_a", "key_b", "ka", "kb", "KeyA")
        } else {
            ("key_b", "key_a", "kb", "ka", "KeyB")
        };
        let order: Vec<String> = layer.handler_order().into_iter().map(|(name, _)| name).collect();
        assert_eq!(order, vec![winner.to_owned(), loser.to_owned(), "basic".to_owned()]);
        let base = start(layer).await;

        assert_eq!(send(&base, "/x", None, &[("x-api-key", winner_key)]).await.who().1, winner);
        // The key the lower handler would accept is refused by the higher one: 401, its challenge.
        let refused = send(&base, "/x", None, &[("x-api-key", loser_key)]).await;
        refused.assert_problem(401);
        assert_eq!(refused.challenges(), vec![format!(r#"{scheme} realm="tower-secure""#)]);
    }
}

// SPEC A2, A10: a plugin that handles Basic requests competes with the built-in `basic`
// by priority (built-in 20).
#[tokio::test]
async fn a2_a10_plugin_and_basic_compete_by_priority() {
    let above = start(builder("").authentication_handler_with_priority(basic_shadow(true), 30).build().unwrap()).await;
    assert_eq!(
        send(&above, "/x", ALEX, &[]).await.who(),
        ("shadow".to_owned(), "basic_shadow".to_owned(), "-".to_owned())
    );

    let below = start(builder("").authentication_handler_with_priority(basic_shadow(true), 10).build().unwrap()).await;
    assert_eq!(send(&below, "/x", ALEX, &[]).await.who(), who_of("alex", "-"));

    // A refusing handler above basic makes valid Basic credentials fail: no fallthrough.
    let strict =
        start(builder("").authentication_handler_with_priority(basic_shadow(false), 30).build().unwrap()).await;
    let refused = send(&strict, "/x", ALEX, &[]).await;
    refused.assert_problem(401);
    assert_eq!(refused.challenges(), vec![r#"Shadow realm="tower-secure""#.to_owned()]);
}

// SPEC A1, A10: `[authentication.priorities]` overrides the priority given in code (and a
// handler's default); `handler_order()` shows the effective order.
#[tokio::test]
async fn a1_configured_priorities_override_code() {
    let toml = r#"
        [authentication.priorities]
        key_b = 60
        key_c = 99
        basic = 5
    "#;
    let layer = builder(toml)
        .authentication_handler_with_priority(api_key("key_a", "x-api-key", KEY_A), 50)
        .authentication_handler_with_priority(api_key("key_b", "x-api-key", KEY_B), 40)
        .authentication_handler(api_key("key_c", "x-c-key", KEY_A).default_priority(1))
        .authentication_handler_with_priority(basic_shadow(false), 10)
        .build()
        .unwrap();
    let expected: Vec<(String, i32)> =
        [("key_c", 99), ("key_b", 60), ("key_a", 50), ("basic_shadow", 10), ("basic", 5)]
            .into_iter()
            .map(|(n, p)| (n.to_owned(), p))
            .collect();
    assert_eq!(layer.handler_order(), expected);
    let base = start(layer).await;
    // key_b now outranks key_a: key_a's key is refused, key_b's accepted.
    assert_eq!(send(&base, "/x", None, &[("x-api-key", "kb")]).await.who().1, "key_b");
    send(&base, "/x", None, &[("x-api-key", "ka")]).await.assert_problem(401);
    // basic now ranks below the refusing shadow handler: valid credentials are refused.
    send(&base, "/x", ALEX, &[]).await.assert_problem(401);

    // Control: without the configuration, basic (20) outranks the shadow (10).
    let plain = start(builder("").authentication_handler_with_priority(basic_shadow(false), 10).build().unwrap()).await;
    assert_eq!(send(&plain, "/x", ALEX, &[]).await.who(), who_of("alex", "-"));

    // A priority for a handler nobody registered is a configuration error.
    let unknown = builder("[authentication.priorities]\nnobody = 1\n").build();
    assert!(unknown.is_err(), "a priority for an unregistered handler must not load");
}

// SPEC A2, A10: `allowed_auth_handlers` restricts which handler may authenticate; it may
// name a plugin; a credential for a handler the resource does not allow counts as none.
#[tokio::test]
async fn a2_a10_allowed_auth_handlers_restricts() {
    let toml = r#"
        [[resource.access_control]]
        context = "/basic-only/**"
        allowed_auth_handlers = ["basic"]

        [[resource.access_control]]
        context = "/key-only/**"
        allowed_auth_handlers = ["api_key"]
    "#;
    let plugin = || api_key("api_key", "x-api-key", ROBOT_KEYS).challenge_scheme("ApiKey");
    let base = start(builder(toml).authentication_handler(plugin()).build().unwrap()).await;
    let key = [("x-api-key", "robot-key-1")];
    let key_challenge = r#"ApiKey realm="tower-secure""#.to_owned();

    let refused = send(&base, "/basic-only/x", None, &key).await;
    refused.assert_problem(401);
    assert_eq!(refused.challenges(), vec![basic_challenge()]);
    assert_eq!(send(&base, "/basic-only/x", ALEX, &[]).await.who().1, "basic");

    let refused = send(&base, "/key-only/x", ALEX, &[]).await;
    refused.assert_problem(401);
    assert_eq!(refused.challenges(), vec![key_challenge]);
    assert_eq!(send(&base, "/key-only/x", None, &key).await.who().1, "api_key");
    // Both credentials: the allowed handler decides, whatever the priorities.
    assert_eq!(send(&base, "/key-only/x", ALEX, &key).await.who().1, "api_key");
    assert_eq!(send(&base, "/basic-only/x", ALEX, &key).await.who().1, "basic");
    // Unrestricted: basic (20) outranks the plugin's default priority (0).
    assert_eq!(send(&base, "/other", ALEX, &key).await.who().1, "basic");
    assert_eq!(send(&base, "/other", None, &key).await.who().1, "api_key");

    // Naming a handler that is not registered is a load error.
    let bad = r#"
        [[resource.access_control]]
        context = "/x"
        allowed_auth_handlers = ["ldap"]
    "#;
    assert!(builder(bad).authentication_handler(plugin()).build().is_err());
}

// ---------------------------------------------------------------------------------------
// C6: authorization plugins
// ---------------------------------------------------------------------------------------

// SPEC C6: a user-written authorization handler can deny what the built-in checks allow.
#[tokio::test]
async fn c6_authorization_plugin_denies_when_builtin_allows() {
    let toml = r#"
        [[resource.access_control]]
        context = "/api/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view"]
    "#;
    let no_alex = PluginAuthz::new("no_alex", |req| {
        if req.principal.name().user() == "alex" {
            Err(AuthError::forbidden("alex is on the list"))
        } else {
            Ok(())
        }
    });
    let base = start(builder(toml).authorization_handler(no_alex).build().unwrap()).await;
    let refused = send(&base, "/api/x", ALEX, &[]).await;
    refused.assert_problem(403);
    assert!(refused.challenges().is_empty(), "{refused:?}");
    // admin passes the built-in check and the plugin; bob fails the built-in check.
    assert_eq!(send(&base, "/api/x", ADMIN, &[]).await.who().0, "admin");
    send(&base, "/api/x", BOB, &[]).await.assert_problem(403);
}

// SPEC C6: with two plugins every one must allow: deny wins, whatever the order.
#[tokio::test]
async fn c6_two_plugins_deny_wins() {
    let allow = || PluginAuthz::new("allow_all", |_| Ok(()));
    let deny = || {
        PluginAuthz::new("deny_flagged", |req| {
            if req.request.headers.contains_key("x-flagged") {
                Err(AuthError::forbidden("flagged request"))
            } else {
                Ok(())
            }
        })
    };
    let first = builder("").authorization_handler(allow()).authorization_handler(deny()).build().unwrap();
    let second = builder("").authorization_handler(deny()).authorization_handler(allow()).build().unwrap();
    for layer in [first, second] {
        let base = start(layer).await;
        send(&base, "/x", ADMIN, &[("x-flagged", "1")]).await.assert_problem(403);
        assert_eq!(send(&base, "/x", ADMIN, &[]).await.who().0, "admin");
    }
}

// SPEC C6: plugins run on secured rules only (open resources are not authorized), after
// the built-in checks passed.
#[tokio::test]
async fn c6_plugins_run_only_on_secured_rules() {
    let toml = r#"
        [[resource.access_control]]
        context = "/public/**"
        secure = false

        [[resource.access_control]]
        context = "/api/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view"]
    "#;
    let deny_all = PluginAuthz::new("deny_all", |_| Err(AuthError::forbidden("closed")));
    let calls = deny_all.calls.clone();
    let base = start(builder(toml).authorization_handler(deny_all).build().unwrap()).await;

    // Open resource: the plugin is not asked, with or without credentials.
    assert_eq!(send(&base, "/public/x", None, &[]).await.who().0, "-");
    assert_eq!(send(&base, "/public/x", ALEX, &[]).await.who().0, "alex");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // Secured: asked, and its denial holds.
    send(&base, "/api/x", ALEX, &[]).await.assert_problem(403);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    send(&base, "/elsewhere", ALEX, &[]).await.assert_problem(403);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Refused by the built-in check: the plugin is not asked.
    send(&base, "/api/x", BOB, &[]).await.assert_problem(403);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------
// F17: plugins that fail
// ---------------------------------------------------------------------------------------

// SPEC F17: an authentication plugin that panics gives 500, never 200, and the server keeps
// serving.
#[tokio::test]
async fn f17_panicking_authentication_plugin_is_500_and_server_keeps_serving() {
    let boom = PluginAuthn::new("boom", |r| r.headers.contains_key("x-boom"), |_| panic!("authentication plugin bug"));
    let base = start(builder("").authentication_handler_with_priority(boom, 100).build().unwrap()).await;
    for _ in 0..2 {
        send(&base, "/x", ALEX, &[("x-boom", "1")]).await.assert_problem(500);
        assert_eq!(send(&base, "/x", ALEX, &[]).await.who().0, "alex");
    }
}

// SPEC F17: a plugin that panics in `can_handle` (part of the plugin, asked for every
// request) also gives 500, not a dropped connection, and the server keeps serving.
#[tokio::test]
async fn f17_panicking_can_handle_is_500() {
    let fragile = PluginAuthn::new(
        "fragile",
        |r| {
            assert!(!r.headers.contains_key("x-fragile"), "can_handle plugin bug");
            false
        },
        |_| Err(AuthError::internal("never asked")),
    );
    let base = start(builder("").authentication_handler_with_priority(fragile, 100).build().unwrap()).await;
    let outcome = try_send(&base, "/x", ALEX, &[("x-fragile", "1")]).await;
    match outcome {
        Ok(reply) => reply.assert_problem(500),
        Err(e) => panic!("expected 500 for a panicking can_handle, got no response: {e}"),
    }
    assert_eq!(send(&base, "/x", ALEX, &[]).await.who().0, "alex");
}

// SPEC F17: an authorization plugin that panics gives 500.
#[tokio::test]
async fn f17_panicking_authorization_plugin_is_500() {
    let boom = PluginAuthz::new("boom", |req| {
        assert!(!req.request.headers.contains_key("x-boom"), "authorization plugin bug");
        Ok(())
    });
    let base = start(builder("").authorization_handler(boom).build().unwrap()).await;
    for _ in 0..2 {
        let reply = send(&base, "/x", ALEX, &[("x-boom", "1")]).await;
        reply.assert_problem(500);
        assert!(reply.challenges().is_empty(), "{reply:?}");
        assert_eq!(send(&base, "/x", ALEX, &[]).await.who().0, "alex");
    }
}

// SPEC F17: a plugin reporting a backend outage (`AuthError::unavailable`) gives 503.
#[tokio::test]
async fn f17_unavailable_plugin_is_503() {
    let remote = PluginAuthn::new(
        "remote",
        |r| r.headers.contains_key("x-remote"),
        |_| Err(AuthError::unavailable("backend down").with_retry_after(3)),
    );
    let policy_service = PluginAuthz::new("policy_service", |req| {
        if req.request.headers.contains_key("x-policy-down") {
            Err(AuthError::unavailable("policy service down"))
        } else {
            Ok(())
        }
    });
    let layer = builder("")
        .authentication_handler_with_priority(remote, 100)
        .authorization_handler(policy_service)
        .build()
        .unwrap();
    let base = start(layer).await;
    let reply = send(&base, "/x", None, &[("x-remote", "1")]).await;
    reply.assert_problem(503);
    assert_eq!(reply.header("retry-after"), Some("3"));
    send(&base, "/x", ALEX, &[("x-policy-down", "1")]).await.assert_problem(503);
    assert_eq!(send(&base, "/x", ALEX, &[]).await.who().0, "alex");
}

// ---------------------------------------------------------------------------------------
// E4: audit events
// ---------------------------------------------------------------------------------------

/// Sends one request and returns it with the events it caused.
///
/// The callsite interest cache is rebuilt first. With a single thread-local subscriber,
/// tracing-core computes a callsite's interest from the *registering* thread's default, so
/// a callsite first reached by another test's thread (no subscriber) is cached as
/// uninteresting. The caller warms every callsite up on this thread first; the rebuild
/// then makes them all interesting for good.
async fn audited(
    capture: &Capture,
    base: &str,
    path: &str,
    basic: Option<(&str, &str)>,
    headers: &[(&str, &str)],
) -> (Reply, Vec<Captured>) {
    tracing::callsite::rebuild_interest_cache();
    capture.take();
    let reply = send(base, path, basic, headers).await;
    (reply, capture.take())
}

/// Asserts that exactly one audit event was emitted and returns its fields.
fn one_audit_event(events: &[Captured], what: &str) -> BTreeMap<String, String> {
    let audit: Vec<&Captured> = events.iter().filter(|e| e.target == AUDIT_TARGET).collect();
    assert_eq!(audit.len(), 1, "{what}: expected one audit event, got {events:#?}");
    audit[0].fields.clone()
}

fn field<'a>(fields: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    fields.get(name).map_or_else(|| panic!("audit event without `{name}`: {fields:?}"), String::as_str)
}

// SPEC E4: every decision is one `tracing` event on a stable target, saying who, how
// authenticated, which rule, the outcome and why; secrets never appear.
#[tokio::test(flavor = "current_thread")]
async fn e4_one_audit_event_per_decision_without_secrets() {
    assert_eq!(AUDIT_TARGET, "tower_secure::audit");
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));

    let toml = r#"
        [[resource.access_control]]
        context = "/api/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view"]

        [[resource.access_control]]
        context = "/public/**"
        secure = false
    "#;
    let plugin = api_key("api_key", "x-api-key", ROBOT_KEYS);
    let base = start(builder(toml).authentication_handler(plugin).build().unwrap()).await;
    // Warm-up: reach every decision's callsite once from this thread (see `audited`).
    let warm_up: [(&str, Creds, Headers); 7] = [
        ("/api/x", ALEX, &[]),
        ("/api/x", BOB, &[]),
        ("/api/x", Some(("alex", "wrong-pass-xyz")), &[]),
        ("/api/x", None, &[]),
        ("/public/x", None, &[]),
        ("/api/x", None, &[("x-api-key", "robot-key-1")]),
        ("/api/x", None, &[("x-api-key", "not-a-key-zzz")]),
    ];
    for (path, caller, headers) in warm_up {
        send(&base, path, caller, headers).await;
    }
    let secrets = ["alex123", "bob123", "wrong-pass-xyz", "robot-key-1", "not-a-key-zzz", "querysecret"];
    let mut all = Vec::new();

    let (reply, events) = audited(&capture, &base, "/api/x?token=querysecret", ALEX, &[]).await;
    assert_eq!(reply.status, 200);
    let allow = one_audit_event(&events, "basic allow");
    all.extend(events);
    assert_eq!(field(&allow, "outcome"), "allow");
    assert_eq!(field(&allow, "caller"), "alex");
    assert_eq!(field(&allow, "handler"), "basic");
    assert!(field(&allow, "rule").contains("/api/**"), "{allow:?}");
    assert_eq!(field(&allow, "path"), "/api/x");
    assert!(!field(&allow, "reason").is_empty());

    let (reply, events) = audited(&capture, &base, "/api/x", BOB, &[]).await;
    assert_eq!(reply.status, 403);
    let forbidden = one_audit_event(&events, "403");
    all.extend(events);
    assert_eq!(field(&forbidden, "outcome"), "deny");
    assert_eq!(field(&forbidden, "status"), "403");
    assert_eq!(field(&forbidden, "caller"), "bob");
    assert_eq!(field(&forbidden, "handler"), "basic");
    assert!(field(&forbidden, "rule").contains("/api/**"), "{forbidden:?}");
    assert!(!field(&forbidden, "reason").is_empty());

    let (reply, events) = audited(&capture, &base, "/api/x", Some(("alex", "wrong-pass-xyz")), &[]).await;
    assert_eq!(reply.status, 401);
    let wrong = one_audit_event(&events, "wrong password");
    all.extend(events);
    assert_eq!(field(&wrong, "outcome"), "deny");
    assert_eq!(field(&wrong, "status"), "401");
    assert_eq!(field(&wrong, "handler"), "basic");
    assert_ne!(field(&wrong, "reason"), field(&forbidden, "reason"));

    let (reply, events) = audited(&capture, &base, "/api/x", None, &[]).await;
    assert_eq!(reply.status, 401);
    let anonymous = one_audit_event(&events, "no credential");
    all.extend(events);
    assert_eq!(field(&anonymous, "outcome"), "deny");
    assert_eq!(field(&anonymous, "caller"), "-");
    assert_eq!(field(&anonymous, "handler"), "-");

    let (reply, events) = audited(&capture, &base, "/public/x", None, &[]).await;
    assert_eq!(reply.status, 200);
    let open = one_audit_event(&events, "open resource");
    all.extend(events);
    assert_eq!(field(&open, "outcome"), "allow");
    assert!(field(&open, "rule").contains("/public/**"), "{open:?}");

    let (reply, events) = audited(&capture, &base, "/api/x", None, &[("x-api-key", "robot-key-1")]).await;
    assert_eq!(reply.status, 200);
    let robot = one_audit_event(&events, "api key allow");
    all.extend(events);
    assert_eq!((field(&robot, "caller"), field(&robot, "handler")), ("robot", "api_key"));

    let (reply, events) = audited(&capture, &base, "/api/x", None, &[("x-api-key", "not-a-key-zzz")]).await;
    assert_eq!(reply.status, 401);
    let bad_key = one_audit_event(&events, "api key deny");
    all.extend(events);
    assert_eq!((field(&bad_key, "outcome"), field(&bad_key, "handler")), ("deny", "api_key"));

    // No secret anywhere: not the passwords, not the Authorization header, not the keys.
    let headers: Vec<String> = [("alex", "alex123"), ("bob", "bob123"), ("alex", "wrong-pass-xyz")]
        .iter()
        .map(|(u, p)| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        })
        .collect();
    for event in &all {
        for (name, value) in &event.fields {
            for secret in secrets.iter().copied().chain(headers.iter().map(String::as_str)) {
                assert!(!value.contains(secret), "secret in `{name}` of {event:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// E6: the error responder
// ---------------------------------------------------------------------------------------

fn wso2_style(err: &AuthError) -> ErrorBody {
    ErrorBody {
        content_type: HeaderValue::from_static("application/json"),
        body: serde_json::json!({
            "code": err.status().as_u16(),
            "message": err.status().canonical_reason(),
            "description": err.kind().detail(),
        })
        .to_string()
        .into(),
    }
}

// SPEC E6: a custom error responder shapes the body; status codes and WWW-Authenticate
// stay as the crate sets them.
#[tokio::test]
async fn e6_custom_error_responder_changes_the_body_only() {
    let toml = r#"
        [[resource.access_control]]
        context = "/api/**"
        permissions = ["/permission/admin/manage/identity/identitymgt/view"]
    "#;
    let standard = start(common::layer(toml)).await;
    let custom = start(builder(toml).error_responder(wso2_style).build().unwrap()).await;
    let wrong = Some(("alex", "nope"));
    let cases: [(Creds, Headers, u16); 4] =
        [(None, &[], 401), (wrong, &[], 401), (BOB, &[], 403), (None, &[("authorization", "Basic !!!")], 400)];
    for (caller, headers, status) in cases {
        let a = send(&standard, "/api/x", caller, headers).await;
        let b = send(&custom, "/api/x", caller, headers).await;
        a.assert_problem(status);
        assert_eq!(b.status, status, "{b:?}");
        assert_eq!(a.challenges(), b.challenges());
        assert_eq!(b.header("content-type"), Some("application/json"));
        let body = b.json();
        assert_eq!(body["code"], status, "{b:?}");
        assert_eq!(body["message"], reqwest::StatusCode::from_u16(status).unwrap().canonical_reason().unwrap());
        assert!(body["description"].as_str().is_some_and(|d| !d.is_empty()), "{b:?}");
        assert!(body.get("type").is_none(), "still the default body: {b:?}");
    }
    // The 401s still carry the Basic challenge.
    assert_eq!(send(&custom, "/api/x", None, &[]).await.challenges(), vec![basic_challenge()]);
}

// ---------------------------------------------------------------------------------------
// E7 / E8: extractors
// ---------------------------------------------------------------------------------------

async fn hello(principal: Option<Principal>) -> String {
    match principal {
        Some(p) => format!("some:{}:{}", p.name(), p.authenticated_by()),
        None => "none".to_owned(),
    }
}

async fn me(principal: Principal) -> String {
    format!("REACHED:{}", principal.name())
}

async fn context(ctx: AuthContext) -> String {
    format!("REACHED:{}", ctx.rule().context())
}

// SPEC E7: on an open resource a valid credential still yields a principal; none without
// one; a bad one is still refused (F5).
#[tokio::test]
async fn e7_optional_principal_on_open_rule() {
    let toml = r#"
        [[resource.access_control]]
        context = "/hello"
        secure = false
    "#;
    let plugin = api_key("api_key", "x-api-key", ROBOT_KEYS);
    let layer = builder(toml).authentication_handler(plugin).build().unwrap();
    let base = common::serve(Router::new().route("/hello", get(hello)).layer(layer)).await;

    assert_eq!(send(&base, "/hello", None, &[]).await.body, "none");
    assert_eq!(send(&base, "/hello", ALEX, &[]).await.body, "some:alex:basic");
    assert_eq!(send(&base, "/hello", None, &[("x-api-key", "robot-key-1")]).await.body, "some:robot:api_key");
    send(&base, "/hello", Some(("alex", "nope")), &[]).await.assert_problem(401);
}

// SPEC E8: handlers extracting the caller on a router without the layer fail closed (500).
#[tokio::test]
async fn e8_extractors_without_layer_fail_closed() {
    let app = Router::new().route("/me", get(me)).route("/ctx", get(context)).route("/hello", get(hello));
    let base = common::serve(app).await;
    for path in ["/me", "/ctx", "/hello"] {
        for caller in [None, ALEX] {
            let reply = send(&base, path, caller, &[]).await;
            assert_eq!(reply.status, 500, "{path}: {reply:?}");
            assert!(!reply.body.contains("REACHED") && !reply.body.contains("some:"), "{reply:?}");
            assert!(!reply.body.contains("none"), "{reply:?}");
        }
    }
}

// SPEC E8: a handler taking `Principal` on an open route reached anonymously answers 401
// with the resource's challenge, never runs without a caller.
#[tokio::test]
async fn e8_principal_on_open_route_anonymous_is_401() {
    let toml = r#"
        [[resource.access_control]]
        context = "/open/**"
        secure = false
    "#;
    let app = Router::new().route("/open/me", get(me)).route("/open/ctx", get(context)).layer(common::layer(toml));
    let base = common::serve(app).await;
    let reply = send(&base, "/open/me", None, &[]).await;
    reply.assert_problem(401);
    assert_eq!(reply.challenges(), vec![basic_challenge()]);
    assert!(!reply.body.contains("REACHED"));
    assert_eq!(send(&base, "/open/me", ALEX, &[]).await.body, "REACHED:alex");
    // `AuthContext` itself is fine anonymously on an open route.
    assert_eq!(send(&base, "/open/ctx", None, &[]).await.body, "REACHED:/open/**");
}

// ---------------------------------------------------------------------------------------
// E4: one audit event for refusals after the layer (handler rules, extractors) and for
// the token endpoint
// ---------------------------------------------------------------------------------------

#[tower_secure::secure(permission = "/permission/admin/manage/identity/identitymgt/view")]
async fn guarded_view(ctx: AuthContext) -> String {
    format!("REACHED:{}", ctx.path())
}

/// The audit events among `events` that are decisions (they have an `outcome`).
fn decisions(events: &[Captured]) -> Vec<BTreeMap<String, String>> {
    let audit = events.iter().filter(|e| e.target == AUDIT_TARGET && e.fields.contains_key("outcome"));
    audit.map(|e| e.fields.clone()).collect()
}

#[track_caller]
fn one_decision(events: &[Captured], what: &str) -> BTreeMap<String, String> {
    let found = decisions(events);
    assert_eq!(found.len(), 1, "{what}: expected one decision, got {events:#?}");
    found[0].clone()
}

// SPEC E4: a request the layer lets through and a handler's `#[secure]` rule refuses is
// ONE audit event, the refusal, naming the handler and its requirements and the canonical
// path (no "allow" first); an anonymous caller meeting the rule on an open resource the
// same; an allowed request one "allow".
#[tokio::test(flavor = "current_thread")]
async fn e4_handler_rule_refusal_is_one_event_naming_the_handler_rule() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let toml = r#"
        [[resource.access_control]]
        context = "/open/**"
        secure = false
    "#;
    let app = Router::new().route("/guarded", get(guarded_view)).route("/open/guarded", get(guarded_view));
    let base = common::serve(app.layer(builder(toml).build().unwrap())).await;
    for (path, caller) in [("/guarded", BOB), ("/guarded", ALEX), ("/open/guarded", None)] {
        send(&base, path, caller, &[]).await;
    }

    let (reply, events) = audited(&capture, &base, "/guarded", BOB, &[]).await;
    reply.assert_problem(403);
    let refusal = one_decision(&events, "handler rule refusal");
    assert_eq!((field(&refusal, "outcome"), field(&refusal, "status")), ("deny", "403"));
    assert_eq!((field(&refusal, "caller"), field(&refusal, "handler")), ("bob", "basic"));
    assert_eq!(field(&refusal, "path"), "/guarded", "the canonical path");
    let rule = field(&refusal, "rule");
    assert!(rule.contains("#[secure]") && rule.contains("guarded_view") && rule.contains(VIEW), "{rule}");
    assert!(!field(&refusal, "reason").is_empty());

    let (reply, events) = audited(&capture, &base, "/open/guarded", None, &[]).await;
    reply.assert_problem(401);
    let anonymous = one_decision(&events, "anonymous caller of a handler rule");
    assert_eq!((field(&anonymous, "outcome"), field(&anonymous, "status")), ("deny", "401"));
    assert_eq!((field(&anonymous, "path"), field(&anonymous, "caller")), ("/open/guarded", "-"));
    assert!(field(&anonymous, "rule").contains("guarded_view"), "{anonymous:?}");

    let (reply, events) = audited(&capture, &base, "/guarded", ALEX, &[]).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "REACHED:/guarded"));
    let allow = one_decision(&events, "allowed");
    assert_eq!(
        (field(&allow, "outcome"), field(&allow, "caller"), field(&allow, "path")),
        ("allow", "alex", "/guarded")
    );
}

// SPEC E4, E8: the `Principal` extractor's 401 for an anonymous caller of an open resource
// is the request's one audit event (no "allow" before it), with the path and the rule.
#[tokio::test(flavor = "current_thread")]
async fn e4_principal_extractor_refusal_is_logged() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let toml = r#"
        [[resource.access_control]]
        context = "/open/**"
        secure = false
    "#;
    let app = Router::new().route("/open/me", get(me)).route("/open/hello", get(hello));
    let base = common::serve(app.layer(common::layer(toml))).await;
    for caller in [None, ALEX] {
        send(&base, "/open/me", caller, &[]).await;
        send(&base, "/open/hello", caller, &[]).await;
    }

    let (reply, events) = audited(&capture, &base, "/open/me", None, &[]).await;
    reply.assert_problem(401);
    let refusal = one_decision(&events, "extractor 401");
    assert_eq!((field(&refusal, "outcome"), field(&refusal, "status")), ("deny", "401"));
    assert_eq!((field(&refusal, "path"), field(&refusal, "caller")), ("/open/me", "-"));
    assert!(field(&refusal, "rule").contains("/open/**"), "{refusal:?}");
    assert!(field(&refusal, "reason").contains("authenticated caller"), "{refusal:?}");

    let (reply, events) = audited(&capture, &base, "/open/hello", None, &[]).await;
    assert_eq!(reply.body, "none");
    let allow = one_decision(&events, "anonymous allowed");
    assert_eq!((field(&allow, "outcome"), field(&allow, "reason")), ("allow", "open resource"));
}

// SPEC E4, D1: a token-endpoint request is logged by the layer as what it is (`rule=token
// endpoint`), not as the secure default, beside the token server's own event.
#[tokio::test(flavor = "current_thread")]
async fn e4_token_endpoint_requests_name_the_token_endpoint() {
    use tower_secure::config::load_clients;
    use tower_secure::oauth2::TokenServer;
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let deployment = deployment(
        r#"
        [oauth2_server]
        issuer = "http://127.0.0.1"
        [[oauth2_server.key]]
        algorithm = "HS256"
        secret_base64 = "YXVkaXQtdGVzdHMtYXVkaXQtdGVzdHMtYXVkaXQtdGVzdHM="
    "#,
    );
    let clients = format!("[[client]]\nid = \"app\"\nsecret = \"{}\"\n", common::cheap_hash("app-secret"));
    let tokens = TokenServer::builder()
        .deployment(&deployment)
        .user_store(users(""))
        .clients(load_clients("users.toml", &clients).unwrap())
        .build()
        .unwrap();
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    let base = common::serve(Router::new().merge(tokens.router()).layer(layer)).await;
    let request = || async {
        let form = [("grant_type", "client_credentials")];
        let response = common::client()
            .post(format!("{base}/oauth2/token"))
            .basic_auth("app", Some("app-secret"))
            .form(&form)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    };
    assert_eq!(request().await, 200);
    tracing::callsite::rebuild_interest_cache();
    capture.take();
    assert_eq!(request().await, 200);
    let events = capture.take();
    let pass = one_decision(&events, "token endpoint");
    assert_eq!((field(&pass, "outcome"), field(&pass, "rule")), ("allow", "token endpoint"));
    assert_eq!(field(&pass, "path"), "/oauth2/token");
    let issued = events.iter().filter(|e| e.fields.get("message").is_some_and(|m| m == "token issued")).count();
    assert_eq!(issued, 1, "the token server's own event: {events:#?}");
}

// ---------------------------------------------------------------------------------------
// A10, F17: plugins look users up like the built-ins
// ---------------------------------------------------------------------------------------

/// A plugin mapping `x-user-key: key-<user>` to a user of the store, looked up with
/// [`UserLookup`] (the key check itself is not the point here).
struct StoreBacked {
    users: tower_secure::authn::UserLookup,
}

#[tower_secure::async_trait]
impl AuthenticationHandler for StoreBacked {
    fn name(&self) -> &str {
        "user_key"
    }

    fn can_handle(&self, request: &Parts) -> bool {
        request.headers.contains_key("x-user-key")
    }

    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
        let key = request.headers.get("x-user-key").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let user = key.strip_prefix("key-").ok_or_else(|| AuthError::invalid_credentials("unknown key"))?;
        let name = QualifiedName::parse(user).map_err(|_| AuthError::invalid_credentials("unknown key"))?;
        self.users.principal(&name, self.name()).await
    }
}

/// A user store that fails, or answers after `delay`.
struct BrokenStore {
    delay: Option<std::time::Duration>,
}

#[tower_secure::async_trait]
impl tower_secure::identity::UserStore for BrokenStore {
    async fn find_user(
        &self,
        _name: &QualifiedName,
    ) -> Result<Option<tower_secure::identity::UserRecord>, tower_secure::identity::UserStoreError> {
        match self.delay {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                Ok(None)
            }
            None => Err(tower_secure::identity::UserStoreError("injected outage".to_owned())),
        }
    }
}

// SPEC A10, C1: a plugin's caller looked up with `UserLookup` holds the permissions its
// roles grant (a permission rule lets alex in, not bob); unknown and disabled users are
// refused alike with 401.
#[tokio::test]
async fn a10_plugin_user_lookup_gives_permissions_and_refuses_like_basic() {
    let toml = format!("[[resource.access_control]]\ncontext = \"/api/**\"\npermissions = [\"{VIEW}\"]\n");
    let store = users("");
    let lookup = tower_secure::authn::UserLookup::from_config(store.clone(), &Default::default());
    let layer = SecureLayer::builder()
        .deployment(deployment(&toml))
        .user_store(store)
        .authentication_handler(StoreBacked { users: lookup })
        .build()
        .unwrap();
    let base = start(layer).await;
    let who = send(&base, "/api/x", None, &[("x-user-key", "key-alex")]).await.who();
    assert_eq!((who.0.as_str(), who.1.as_str()), ("alex", "user_key"));
    send(&base, "/api/x", None, &[("x-user-key", "key-bob")]).await.assert_problem(403);
    let disabled = send(&base, "/api/x", None, &[("x-user-key", "key-dave")]).await;
    let unknown = send(&base, "/api/x", None, &[("x-user-key", "key-nobody")]).await;
    disabled.assert_problem(401);
    unknown.assert_problem(401);
    assert_eq!(disabled.body, unknown.body, "disabled and unknown answer alike");
}

// SPEC A10, F17, G5: a plugin's look-up in a store that fails or is slower than its timeout
// answers 503 with Retry-After, never 401 or 200, and the slow one within the timeout.
#[tokio::test]
async fn a10_f17_plugin_user_lookup_fails_closed_with_503() {
    let timeout = std::time::Duration::from_millis(300);
    for (store, what) in [
        (BrokenStore { delay: None }, "failing store"),
        (BrokenStore { delay: Some(std::time::Duration::from_secs(30)) }, "slow store"),
    ] {
        let lookup = tower_secure::authn::UserLookup::new(store, timeout);
        let layer = builder("").authentication_handler(StoreBacked { users: lookup }).build().unwrap();
        let base = start(layer).await;
        let started = std::time::Instant::now();
        let reply = send(&base, "/x", None, &[("x-user-key", "key-alex")]).await;
        reply.assert_problem(503);
        assert!(reply.header("retry-after").is_some(), "{what}: {reply:?}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{what}: bounded by the timeout");
    }
}

/// A plugin that claims to be the `basic` handler in its principals and counts how often
/// it was told the users changed.
struct Impostor {
    users_changed: Arc<AtomicUsize>,
}

#[async_trait]
impl AuthenticationHandler for Impostor {
    fn name(&self) -> &str {
        "impostor"
    }

    fn can_handle(&self, request: &Parts) -> bool {
        request.headers.contains_key("x-impostor")
    }

    async fn authenticate(&self, _request: &Parts) -> Result<Principal, AuthError> {
        Ok(principal("robot", "basic", &[VIEW]))
    }

    fn users_changed(&self) {
        self.users_changed.fetch_add(1, Ordering::SeqCst);
    }
}

// SPEC A10, A1: the layer stamps a principal with the name its handler is registered
// under: a plugin writing `basic` into its principal is still seen (by handlers, rules and
// the audit) as the plugin; and a users reload tells every handler, plugins included, to
// forget what it cached (the built-ins' caches are covered by the hot-reload tests).
#[tokio::test]
async fn a10_registry_stamps_the_handler_and_tells_plugins_of_user_changes() {
    let users_changed = Arc::new(AtomicUsize::new(0));
    let toml = r#"
        [[resource.access_control]]
        context = "/basic-only/**"
        allowed_auth_handlers = ["basic"]
    "#;
    let layer =
        builder(toml).authentication_handler(Impostor { users_changed: users_changed.clone() }).build().unwrap();
    let reloader = layer.reloader();
    let base = start(layer).await;

    let reply = send(&base, "/api/x", None, &[("x-impostor", "1")]).await;
    assert_eq!(reply.who(), ("robot".to_owned(), "impostor".to_owned(), "-".to_owned()));
    // Claiming to be `basic` opens nothing that only `basic` may authenticate.
    send(&base, "/basic-only/x", None, &[("x-impostor", "1")]).await.assert_problem(401);
    assert_eq!(send(&base, "/basic-only/x", ALEX, &[]).await.who().1, "basic");

    assert_eq!(users_changed.load(Ordering::SeqCst), 0);
    reloader.reload_users(users("")).unwrap();
    assert_eq!(users_changed.load(Ordering::SeqCst), 1, "the plugin heard of the users reload");
}
