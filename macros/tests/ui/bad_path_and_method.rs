// Proves a route path without a leading `/` and a method that is not a word are rejected. SPEC B5
use tower_secure_macros::secure;

#[secure(scope = "x", path = "api/x")]
async fn bad_path() {}

#[secure(scope = "x", method = "GET POST")]
async fn bad_method() {}

fn main() {}
