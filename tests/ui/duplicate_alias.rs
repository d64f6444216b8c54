// Proves `scope` and its alias `scopes` together count as a duplicate key. SPEC B5
use tower_secure::secure;

#[secure(scope = "x", scopes = "y")]
async fn handler() {}

fn main() {}
