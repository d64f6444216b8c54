// Proves `token_permissions` takes "scopes" or "check", and that "check" needs a
// permission to check. SPEC C2
use tower_secure_macros::secure;

#[secure(scope = "x", token_permissions = "check")]
async fn nothing_to_check() {}

#[secure(scope = "x", permission = "/permission/admin", token_permissions = "always")]
async fn unknown_mode() {}

fn main() {}
