// Proves a method that is neither standard nor declared in `extension_methods` is rejected
// at its string, and that `extension_methods` declares only non-standard methods that
// `method` names. SPEC F19, F3
use tower_secure_macros::secure;

#[secure(scope = "x", method = "DELTE")]
async fn typo() {}

#[secure(scope = "x", method = "PROPFIND")]
async fn undeclared_extension() {}

#[secure(scope = "x", method = "PROPFIND", extension_methods = ["PROPFIND", "MKCOL"])]
async fn declared_but_unused() {}

#[secure(scope = "x", method = "GET", extension_methods = "get")]
async fn standard_declared() {}

fn main() {}
