// Proves an empty scope string is rejected at the string. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = "")]
async fn handler() {}

fn main() {}
