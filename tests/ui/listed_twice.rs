// Proves the same scope listed twice is rejected at the repeat. SPEC B5
use tower_secure::secure;

#[secure(scope = ["x", "x"])]
async fn handler() {}

fn main() {}
