// Proves the same key given twice is rejected at the second one. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = "x", scope = "y")]
async fn handler() {}

fn main() {}
