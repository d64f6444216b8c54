// Proves the same scope listed twice is rejected at the repeat. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = ["x", "x"])]
async fn handler() {}

fn main() {}
