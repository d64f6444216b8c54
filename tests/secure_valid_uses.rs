//! The valid forms of `#[secure]` compile into axum handlers: single values and lists, the
//! `scopes`/`permissions` aliases, "any"/"all", path/method, a trailing comma, `pub` and
//! `pub(crate)` handlers, several extractors with a body extractor last, a declared
//! extension method and `token_permissions`; and each rule is registered as written. The
//! invalid forms are compile-fail cases in `macros/tests/ui/`.
use axum::extract::{Path, Query};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use tower_secure::config::{MatchMode, TokenPermissions};
use tower_secure::secure_attr::handler_rules;
use tower_secure::{secure, Principal};

#[derive(Deserialize)]
struct Body {
    name: String,
}

#[derive(Deserialize)]
struct Page {
    limit: u32,
}

#[secure(scope = "read")]
async fn one_scope() {}

#[secure(scopes = ["read", "write"], scopes_match = "any")]
async fn scope_list() -> &'static str {
    "ok"
}

#[secure(permissions = "/permission/admin", permissions_match = "all")]
async fn one_permission(caller: Principal) -> String {
    caller.name().to_string()
}

#[secure(
    scope = ["read"],
    permission = ["/permission/admin/view", "/permission/admin/manage"],
    permissions_match = "any",
    path = "/users/{id}",
    method = "PUT",
)]
async fn extractors_and_body(
    Path(id): Path<String>,
    Query(page): Query<Page>,
    caller: Principal,
    Json(body): Json<Body>,
) -> String {
    format!("{id} {} {} {}", page.limit, caller.name(), body.name)
}

#[secure(scope = "dav", method = "propfind", extension_methods = "PROPFIND")]
async fn dav_handler() {}

#[secure(scope = "admin", permission = "/permission/admin", token_permissions = "check", method = "TRACE")]
async fn checked_handler() {}

mod api {
    use tower_secure::secure;

    #[secure(scope = "public_api")]
    pub async fn public_handler() {}

    #[secure(scope = "crate_api", method = "post")]
    pub(crate) async fn crate_handler(body: String) -> String {
        body
    }
}

// SPEC B5, F19, C2: every valid form compiles, routes, and registers its rule as written.
#[test]
fn valid_forms_compile_and_register_as_written() {
    let _app: Router = Router::new()
        .route("/one", get(one_scope))
        .route("/list", get(scope_list))
        .route("/admin", get(one_permission))
        .route("/users/{id}", put(extractors_and_body))
        .route("/public", get(api::public_handler))
        .route("/crate", post(api::crate_handler))
        .route("/dav", axum::routing::any(dav_handler))
        .route("/checked", get(checked_handler));

    let rules = handler_rules();
    let rule =
        |name: &str| *rules.iter().find(|r| r.handler() == name).unwrap_or_else(|| panic!("{name} not registered"));
    assert_eq!(rules.len(), 8);
    assert_eq!(rule("one_scope").scopes(), ["read"]);
    assert_eq!(rule("scope_list").scopes(), ["read", "write"]);
    assert_eq!(rule("scope_list").scopes_match(), MatchMode::Any);
    assert_eq!(rule("one_permission").permissions(), ["/permission/admin"]);
    assert_eq!(rule("one_permission").permissions_match(), MatchMode::All);
    let full = rule("extractors_and_body");
    assert_eq!(full.permissions(), ["/permission/admin/view", "/permission/admin/manage"]);
    assert_eq!(full.permissions_match(), MatchMode::Any);
    assert_eq!((full.path(), full.method()), (Some("/users/{id}"), Some("PUT")));
    assert!(rule("public_handler").module().ends_with("::api"));
    assert_eq!(rule("crate_handler").method(), Some("post"));
    assert_eq!(rule("dav_handler").method(), Some("propfind"));
    assert_eq!(rule("checked_handler").token_permissions(), TokenPermissions::Check);
    assert_eq!(rule("one_scope").token_permissions(), TokenPermissions::Scopes);
}
