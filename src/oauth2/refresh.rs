// Refresh tokens (SPEC D1): opaque random strings; the state backend keeps their grants
// under the SHA-256 digest, never the token itself. Single use, and a replay ends the
// family (RFC 9700 4.14): see `state::StateBackend::redeem_refresh`.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The key a refresh token's grant is stored under.
pub(super) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// 256 random bits, base64url. `None` only if the OS random source fails.
pub(super) fn random_token() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}
