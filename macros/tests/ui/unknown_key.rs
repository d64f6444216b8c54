// Proves an unknown key (a misspelt `scope`) is rejected, naming the valid keys. SPEC B5
use tower_secure_macros::secure;

#[secure(scop = "x")]
async fn handler() {}

fn main() {}
