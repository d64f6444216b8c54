// Proves the attribute refuses a non-async fn, pointing at `fn`. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = "x")]
fn handler() {}

fn main() {}
