// Proves the attribute refuses an associated fn without `self` in an impl block. SPEC B5
use tower_secure::secure;

struct Api;

impl Api {
    #[secure(scope = "x")]
    async fn handler() {}
}

fn main() {}
