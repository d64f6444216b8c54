// Proves a permission that is not an absolute path is rejected at the string. SPEC B5
use tower_secure::secure;

#[secure(permission = "admin")]
async fn handler() {}

fn main() {}
