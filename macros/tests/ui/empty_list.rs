// Proves an empty scope list is rejected at the brackets. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = [])]
async fn handler() {}

fn main() {}
