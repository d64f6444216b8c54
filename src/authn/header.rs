//! Strict `Authorization` header parsing shared by every scheme (SPEC A2, E3, F6):
//! exactly one header, a size cap checked before anything is decoded, visible ASCII
//! only, a case-insensitive scheme, `1*SP`, a token68 credential and no trailing data.

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};

use crate::error::{AuthError, AuthErrorKind};

/// Longest `Authorization` header accepted, in bytes (SPEC E3). Schemes set tighter caps.
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
    if !value.as_bytes().iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        return Err(AuthError::invalid_request("Authorization header holds non-visible bytes"));
    }
    Ok(Some(value))
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
    let text = value.to_str().map_err(|_| AuthError::invalid_request("Authorization header is not visible ASCII"))?;
    let (_, rest) = text.split_once(' ').ok_or_else(|| AuthError::invalid_request("no credential after the scheme"))?;
    let token = rest.trim_start_matches(' ');
    if token.len() > max_len {
        return Err(AuthError::new(AuthErrorKind::HeaderTooLarge, "credential over the size limit"));
    }
    let body = token.trim_end_matches('=');
    let well_formed = !body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !well_formed {
        return Err(AuthError::invalid_request("credential is not a token68"));
    }
    Ok(token)
}

/// A Basic credential (RFC 7617): the decoded `user:password` text and the position of its
/// first `:`. Not canonical base64, not UTF-8, no `:` or an empty user is 400.
pub(crate) fn basic_credentials(value: &HeaderValue, max_len: usize) -> Result<(String, usize), AuthError> {
    let token = token68(value, max_len)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| AuthError::invalid_request("Basic credential is not canonical base64"))?;
    let text = String::from_utf8(decoded).map_err(|_| AuthError::invalid_request("Basic credential is not UTF-8"))?;
    match text.find(':') {
        None => Err(AuthError::invalid_request("Basic credential has no ':'")),
        Some(0) => Err(AuthError::invalid_request("Basic credential has an empty user")),
        Some(colon) => Ok((text, colon)),
    }
}
