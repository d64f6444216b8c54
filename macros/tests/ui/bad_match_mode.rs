// Proves a match mode other than "all" or "any" is rejected at the string. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = ["x", "y"], scopes_match = "some")]
async fn handler() {}

fn main() {}
