// Proves a non-string value (`scope = 5`) is rejected at the value. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = 5)]
async fn handler() {}

fn main() {}
