// Proves `scope` and its alias `scopes` together count as a duplicate key. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = "x", scopes = "y")]
async fn handler() {}

fn main() {}
