// Proves a rule with neither a scope nor a permission (`#[secure()]`) is rejected. SPEC B5
use tower_secure_macros::secure;

#[secure()]
async fn handler() {}

fn main() {}
