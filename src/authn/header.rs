//! Strict `Authorization` header parsing shared by every scheme:
//! exactly one header, a size cap checked before anything is decoded, visible ASCII
//! only, a case-insensitive scheme, `1*SP`, a token68 credential and no trailing data.

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use crate::error::{AuthError, AuthErrorKind};

/// Longest `Authorization` header accepted, in bytes. Schemes set tighter caps.
pub const MAX_AUTHORIZATION_BYTES: usize = 16 * 1024;

/// The request's one `Authorization` header: `Ok(None)` without one, 400 for two or more,
/// 431 when over [`MAX_AUTHORIZATION_BYTES`], 400 for bytes outside visible ASCII and
/// space (which includes every non-UTF-8 byte).
pub fn single_authorization(headers: &HeaderMap) -> Result<Option<&HeaderValue>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(AuthError::invalid_request("more than one Authorization header"));
    }
    if value.len() > MAX_AUTHORIZATION_BYTES {
        return Err(AuthError::new(AuthErrorKind::HeaderTooLarge, "Authorization header over the size limit"));
    }
    if !all_bytes(value.as_bytes(), |b| b.wrapping_sub(b' ') <= b'~' - b' ') {
        return Err(AuthError::invalid_request("Authorization header holds non-visible bytes"));
    }
    Ok(Some(value))
}

/// True when every byte passes `test`. No early exit, so the loop over a whole token (up
/// to kilobytes, on every request) is vectorized; `test` must be branch-free.
#[inline]
pub(crate) fn all_bytes(bytes: &[u8], test: impl Fn(u8) -> bool) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & test(b))
}

/// An ASCII letter or digit, branch-free (for [`all_bytes`]).
#[inline]
pub(crate) fn is_alphanumeric(b: u8) -> bool {
    ((b | 0x20).wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10)
}

/// A token68 character before the `=` padding: letters, digits, `-._~+/`.
#[inline]
fn is_token68(b: u8) -> bool {
    is_alphanumeric(b) | (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/')
}

/// True when the header's scheme is `scheme`, compared case-insensitively (RFC 7235).
///
/// ```
/// use http::HeaderValue;
/// use tower_secure::authn::header::has_scheme;
///
/// assert!(has_scheme(&HeaderValue::from_static("bAsIc YWxleDphbGV4MTIz"), "Basic"));
/// assert!(!has_scheme(&HeaderValue::from_static("Basically x"), "Basic"));
/// ```
pub fn has_scheme(value: &HeaderValue, scheme: &str) -> bool {
    let bytes = value.as_bytes();
    let end = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
    bytes[..end].eq_ignore_ascii_case(scheme.as_bytes())
}

/// The token68 credential after the scheme: `1*SP`, then `1*( ALPHA / DIGIT / "-" / "." /
/// "_" / "~" / "+" / "/" ) *"="`, then nothing. Longer than `max_len` is 431; anything else
/// malformed is 400.
///
/// ```
/// use http::HeaderValue;
/// use tower_secure::authn::header::token68;
///
/// let value = HeaderValue::from_static("Bearer  abc.def-_~+/==");
/// assert_eq!(token68(&value, 1024).ok(), Some("abc.def-_~+/=="));
/// assert!(token68(&HeaderValue::from_static("Bearer abc def"), 1024).is_err());
/// assert!(token68(&HeaderValue::from_static("Bearer"), 1024).is_err());
/// ```
pub fn token68(value: &HeaderValue, max_len: usize) -> Result<&str, AuthError> {
    let bytes = value.as_bytes();
    let space = bytes.iter().position(|&b| b == b' ');
    let rest =
        space.map(|i| &bytes[i + 1..]).ok_or_else(|| AuthError::invalid_request("no credential after the scheme"))?;
    let token = &rest[rest.iter().take_while(|&&b| b == b' ').count()..];
    if token.len() > max_len {
        return Err(AuthError::new(AuthErrorKind::HeaderTooLarge, "credential over the size limit"));
    }
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    if body.is_empty() || !all_bytes(body, is_token68) {
        return Err(AuthError::invalid_request("credential is not a token68"));
    }
    // Every byte is ASCII now: this cannot fail.
    std::str::from_utf8(token).map_err(|_| AuthError::invalid_request("credential is not a token68"))
}

/// The longest Basic credential accepted: base64 of a 255-byte user and a 512-byte
/// password, rounded up.
pub(crate) const MAX_BASIC_TOKEN: usize = 1024;

/// A Basic credential (RFC 7617), decoded on the stack and handed to `read` as user and
/// password. Not canonical base64, not UTF-8, no `:` or an empty user is 400; longer than
/// [`MAX_BASIC_TOKEN`] is 431.
pub(crate) fn read_basic_credentials<R>(
    value: &HeaderValue,
    read: impl FnOnce(&str, &str) -> R,
) -> Result<R, AuthError> {
    let token = token68(value, MAX_BASIC_TOKEN)?;
    let mut decoded = [0u8; MAX_BASIC_TOKEN / 4 * 3];
    let len = base64::engine::general_purpose::STANDARD
        .decode_slice(token, &mut decoded)
        .map_err(|_| AuthError::invalid_request("Basic credential is not canonical base64"))?;
    let text = std::str::from_utf8(&decoded[..len])
        .map_err(|_| AuthError::invalid_request("Basic credential is not UTF-8"))?;
    match text.bytes().position(|b| b == b':') {
        None => Err(AuthError::invalid_request("Basic credential has no ':'")),
        Some(0) => Err(AuthError::invalid_request("Basic credential has an empty user")),
        Some(colon) => Ok(read(&text[..colon], &text[colon + 1..])),
    }
}

/// [`read_basic_credentials`] for callers that keep the credential: the decoded
/// `user:password` text and the position of its first `:`.
pub(crate) fn basic_credentials(value: &HeaderValue) -> Result<(String, usize), AuthError> {
    read_basic_credentials(value, |user, password| (format!("{user}:{password}"), user.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC F6: the branch-free classifiers agree with RFC 7235's token68 and visible ASCII
    // on every byte.
    #[test]
    fn classifiers_match_the_grammar() {
        for b in 0..=255u8 {
            let token68 = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_token68(b), token68, "byte {b:#04x}");
            assert_eq!(all_bytes(&[b], |b| b.wrapping_sub(b' ') <= b'~' - b' '), b == b' ' || b.is_ascii_graphic());
        }
    }

    // SPEC F6: `1*SP` only (no tab), padding only at the end, nothing after it.
    #[test]
    fn token68_is_strict() {
        let parse = |text: &str| {
            let value = HeaderValue::from_bytes(text.as_bytes()).unwrap();
            token68(&value, 64).ok().map(str::to_owned)
        };
        assert_eq!(parse("Bearer   abc==").as_deref(), Some("abc=="));
        for bad in ["Bearer \tabc", "Bearer ab=c", "Bearer ==", "Bearer abc ", "Bearer a\"b", "Bearer"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        let over = HeaderValue::from_str(&format!("Bearer {}", "a".repeat(65))).unwrap();
        assert_eq!(token68(&over, 64).map_err(|e| e.kind()), Err(AuthErrorKind::HeaderTooLarge));
        let latin1 = HeaderValue::from_bytes(b"Bearer ab\xe9").unwrap();
        assert!(token68(&latin1, 64).is_err());
    }
}
