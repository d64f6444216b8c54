// Proves the attribute refuses a method (a fn with `self`) in an impl block. SPEC B5
use tower_secure_macros::secure;

struct Api;

impl Api {
    #[secure(scope = "x")]
    async fn handler(&self) {}
}

fn main() {}
