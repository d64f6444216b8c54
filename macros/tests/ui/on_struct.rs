// Proves the attribute refuses a non-function item (a struct). SPEC B5
use tower_secure_macros::secure;

#[secure(scope = "x")]
struct Handler;

fn main() {}
