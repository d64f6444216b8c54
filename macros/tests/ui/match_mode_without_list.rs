// Proves `scopes_match` without any `scope` is rejected when a permission is given. SPEC B5
use tower_secure_macros::secure;

#[secure(permission = "/permission/admin", scopes_match = "any")]
async fn handler() {}

fn main() {}
