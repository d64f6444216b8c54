// Proves a match mode alone (no scope, no permission) is rejected. SPEC B5
use tower_secure_macros::secure;

#[secure(scopes_match = "any")]
async fn handler() {}

fn main() {}
