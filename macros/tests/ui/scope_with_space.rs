// Proves a scope containing a space (two scopes in one string) is rejected. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = "read write")]
async fn handler() {}

fn main() {}
