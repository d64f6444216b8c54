// Proves a permission that is not an absolute path is rejected at the string. SPEC B5
use tower_secure_macros::secure;

#[secure(permission = "admin")]
async fn handler() {}

fn main() {}
