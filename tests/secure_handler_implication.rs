//! A `#[secure]` handler rule naming scopes and permissions (SPEC C2, B5): the scopes'
//! bindings are known only when a layer is built, so that is when a rule whose bindings do
//! not imply its permissions is refused (a token would pass without them), naming the
//! attribute's file and line. A reload that would open the same hole is refused too, and
//! the old configuration keeps serving (SPEC B7).
//!
//! This binary holds one such handler, so every layer built here is checked against it.

mod common;

use axum::routing::delete;
use axum::Router;
use tower_secure::config::{load_users, ConfigError, Deployment};
use tower_secure::{secure, SecureLayer};

/// This file, as compiled: the error points into it.
const THIS_FILE: &str = include_str!("secure_handler_implication.rs");

#[secure(scope = "internal_admin", permission = "/permission/admin/delete", path = "/things/{id}", method = "DELETE")]
async fn delete_thing() -> &'static str {
    "deleted"
}

/// `internal_admin` bound to `binding`.
fn deployment(binding: &str) -> Deployment {
    let text = format!("[[scope]]\nname = \"internal_admin\"\npermissions = [\"{binding}\"]\n");
    Deployment::from_toml_str("deployment.toml", &text).unwrap()
}

fn build(binding: &str) -> Result<SecureLayer, ConfigError> {
    let users = load_users("users.toml", &common::users_toml()).unwrap();
    SecureLayer::builder().deployment(deployment(binding)).user_store(users).build()
}

/// The 1-based line of the `#[secure(` attribute of `delete_thing`.
fn attribute_line() -> usize {
    let at = THIS_FILE.lines().position(|l| l.starts_with("#[secure(scope = \"internal_admin\""));
    at.expect("the attribute is in this file") + 1
}

#[track_caller]
fn assert_refused(err: &ConfigError) {
    assert_eq!(&*err.file, "tests/secure_handler_implication.rs", "{err}");
    assert_eq!(err.line, attribute_line(), "{err}");
    assert!(err.column >= 1, "{err}");
    assert_eq!(err.key.as_deref(), Some("scope"), "{err}");
    for fragment in [
        "#[secure] on `delete_thing`",
        "a token with scope `internal_admin` (bound to /permission/admin/manage) passes without `/permission/admin/delete`",
        "token_permissions = \"check\"",
    ] {
        assert!(err.message.contains(fragment), "{err} should say {fragment:?}");
    }
}

// SPEC C2: bound to a permission that does not cover the handler's, the layer is refused
// at build with the attribute's file, line and the permission; bound to one that covers
// it, the layer builds.
#[test]
fn handler_rule_whose_scopes_do_not_imply_its_permissions_is_refused_at_build() {
    let err = build("/permission/admin/manage").expect_err("the layer must be refused");
    assert_refused(&err);
    build("/permission/admin").expect("a binding that covers the permission");
    build("/permission/admin/delete").expect("a binding equal to the permission");
}

// SPEC C2, B7: a reload whose scope bindings would open the handler to tokens without its
// permission is refused, and the layer keeps serving the old configuration.
#[tokio::test]
async fn reload_that_would_open_the_handler_is_refused() {
    let layer = build("/permission/admin").expect("a binding that covers the permission");
    let reloader = layer.reloader();
    let base = common::serve(Router::new().route("/things/{id}", delete(delete_thing)).layer(layer)).await;
    let before = reloader.version();
    let err = reloader.reload(deployment("/permission/admin/manage")).expect_err("the reload must be refused");
    assert_refused(&err);
    assert_eq!(reloader.version(), before, "the old configuration stays");
    let client = common::client();
    let response = client.delete(format!("{base}/things/7")).basic_auth("alex", Some("alex123")).send().await.unwrap();
    assert_eq!(response.status(), 403, "alex holds neither the binding nor the permission");
    let response = client.delete(format!("{base}/things/7")).basic_auth("admin", Some("admin")).send().await.unwrap();
    assert_eq!(response.status(), 200, "the layer still serves");
    assert_eq!(response.text().await.unwrap(), "deleted");
}
