// Canonical request paths (SPEC E1, F1, F18): refuse every non-canonical form before any
// rule lookup, decode percent-encoding exactly once, split off a leading `/t/{tenant}`.

use std::fmt;

/// Longest request path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most path segments accepted.
pub const MAX_SEGMENTS: usize = 128;

/// Why a request path was refused (the request gets 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The path does not start with `/` (`*`, authority form).
    #[error("path is not absolute")]
    NotAbsolute,
    /// Longer than [`MAX_PATH_BYTES`] or more than [`MAX_SEGMENTS`] segments.
    #[error("path is too long")]
    TooLong,
    /// `//` somewhere in the path.
    #[error("path has an empty segment")]
    EmptySegment,
    /// A `.` or `..` segment, raw or percent-encoded.
    #[error("path has a dot segment")]
    DotSegment,
    /// `;`, `\`, a control character or NUL, raw or encoded.
    #[error("path has a forbidden character")]
    ForbiddenCharacter,
    /// `%2F` or `%5C`: an encoded separator.
    #[error("path has an encoded separator")]
    EncodedSeparator,
    /// `%25`: double encoding.
    #[error("path is double encoded")]
    DoubleEncoding,
    /// `%` not followed by two hex digits.
    #[error("path has a malformed percent-encoding")]
    BadEncoding,
    /// The decoded path is not UTF-8 (including overlong forms).
    #[error("path is not UTF-8")]
    NotUtf8,
}

/// A request path the policy can decide on: decoded once, no dot segments, no empty
/// segments, no trailing slash (except the root), and split into tenant and rest.
///
/// ```
/// use tower_secure::policy::CanonicalPath;
///
/// let path = CanonicalPath::parse("/t/Example.com/api/%61dmin/")?;
/// assert_eq!(path.tenant(), Some("example.com"));
/// assert_eq!(path.as_str(), "/api/admin");
/// assert!(CanonicalPath::parse("/api/../admin").is_err());
/// assert!(CanonicalPath::parse("/api/%2e%2E/admin").is_err());
/// # Ok::<(), tower_secure::policy::PathError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    path: String,
    tenant: Option<String>,
}

impl CanonicalPath {
    /// Canonicalises the path part of a request target (no query).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong);
        }
        let body = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        if body.starts_with('/') {
            // `//` and `//x`: an empty first segment, even where the trailing-slash rule
            // would leave nothing.
            return Err(PathError::EmptySegment);
        }
        // A single trailing slash names the same resource (`/x/` is `/x`).
        let body = body.strip_suffix('/').unwrap_or(body);
        let path = if body.bytes().all(is_plain) { plain_path(raw, body)? } else { decoded_path(raw, body)? };
        Ok(split_tenant(path))
    }

    /// The same path as a router reads it: percent-encodings left as sent, for the rule
    /// of the route a router that matches raw text dispatches to (axum's does). `None`
    /// when `raw` has no percent-encoding (both readings are the same). Only for a `raw`
    /// that [`parse`](Self::parse) accepted.
    pub(crate) fn as_routed(raw: &str) -> Option<Self> {
        if !raw.contains('%') {
            return None;
        }
        let body = raw.strip_prefix('/')?;
        let body = body.strip_suffix('/').unwrap_or(body);
        Some(split_tenant(format!("/{body}")))
    }

    /// The decoded path the rules match on (without the `/t/{tenant}` prefix).
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The tenant named by a leading `/t/{tenant}/`, lower case; `None` for the super tenant.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// The decoded segments of [`CanonicalPath::as_str`].
    pub fn segments(&self) -> impl Iterator<Item = &str> + Clone {
        Segments { rest: &self.path[1..] }
    }
}

/// The segments of a canonical path after its leading `/`. Paths are short: a plain byte
/// loop finds each `/` sooner than a `str::split` searcher would.
#[derive(Clone)]
struct Segments<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        while !self.rest.is_empty() {
            let end = self.rest.bytes().position(|b| b == b'/').unwrap_or(self.rest.len());
            let segment = &self.rest[..end];
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            if !segment.is_empty() {
                return Some(segment);
            }
        }
        None
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(tenant) = &self.tenant {
            write!(f, "/t/{tenant}")?;
        }
        f.write_str(&self.path)
    }
}

/// Only a *leading* `/t/{tenant}` selects a tenant.
fn split_tenant(path: String) -> CanonicalPath {
    if let Some(rest) = path.strip_prefix("/t/") {
        let (tenant, tail) = rest.split_once('/').map_or((rest, ""), |(t, tail)| (t, tail));
        let tenant = Some(tenant.to_lowercase());
        let path = format!("/{tail}");
        return CanonicalPath { path, tenant };
    }
    CanonicalPath { path, tenant: None }
}

/// A byte that stands for itself in a path and needs no check beyond the segment rules:
/// visible ASCII or space, not `%`, `\` or `;`.
fn is_plain(byte: u8) -> bool {
    (b' '..=b'~').contains(&byte) && !matches!(byte, b'%' | b'\\' | b';')
}

/// A path of plain bytes only (most requests): nothing to decode, so it is `raw` up to
/// the end of `body` once its segments pass the same checks as a decoded path's.
fn plain_path(raw: &str, body: &str) -> Result<String, PathError> {
    if !body.is_empty() {
        for (count, segment) in body.as_bytes().split(|&b| b == b'/').enumerate() {
            check_segment(count, segment)?;
        }
    }
    // `body` is `raw` after its leading `/`, so this is `/` and `body`.
    Ok(raw[..=body.len()].to_owned())
}

/// The general case: every segment percent-decoded, then the same checks.
fn decoded_path(raw: &str, body: &str) -> Result<String, PathError> {
    let mut decoded = Vec::with_capacity(raw.len());
    if !body.is_empty() {
        for (count, segment) in body.as_bytes().split(|&b| b == b'/').enumerate() {
            if count >= MAX_SEGMENTS {
                return Err(PathError::TooLong);
            }
            decoded.push(b'/');
            let start = decoded.len();
            decode_segment(segment, &mut decoded)?;
            check_segment(count, &decoded[start..])?;
        }
    }
    if decoded.is_empty() {
        decoded.push(b'/');
    }
    let path = String::from_utf8(decoded).map_err(|_| PathError::NotUtf8)?;
    // C1 controls (U+0080..U+009F, e.g. NEL) are controls too; ASCII ones were refused
    // byte by byte.
    if !path.is_ascii() && path.chars().any(char::is_control) {
        return Err(PathError::ForbiddenCharacter);
    }
    Ok(path)
}

/// The `count`-th segment (from 0), decoded: not past the segment limit, not empty, not a
/// dot segment.
fn check_segment(count: usize, segment: &[u8]) -> Result<(), PathError> {
    if count >= MAX_SEGMENTS {
        return Err(PathError::TooLong);
    }
    match segment {
        b"" => Err(PathError::EmptySegment),
        b"." | b".." => Err(PathError::DotSegment),
        _ => Ok(()),
    }
}

fn decode_segment(raw: &[u8], out: &mut Vec<u8>) -> Result<(), PathError> {
    let mut i = 0;
    while i < raw.len() {
        let byte = match raw[i] {
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(PathError::BadEncoding)?;
                i += 2;
                match (hex_value(hex[0]), hex_value(hex[1])) {
                    (Some(hi), Some(lo)) => match hi << 4 | lo {
                        b'/' | b'\\' => return Err(PathError::EncodedSeparator),
                        b'%' => return Err(PathError::DoubleEncoding),
                        decoded => decoded,
                    },
                    _ => return Err(PathError::BadEncoding),
                }
            }
            b'\\' => return Err(PathError::ForbiddenCharacter),
            raw_byte => raw_byte,
        };
        if byte == b';' || byte < 0x20 || byte == 0x7f {
            return Err(PathError::ForbiddenCharacter);
        }
        out.push(byte);
        i += 1;
    }
    Ok(())
}

fn hex_value(digit: u8) -> Option<u8> {
    (digit as char).to_digit(16).map(|d| d as u8)
}

/// The full request path: axum's `OriginalUri` when routers are nested (the URI the
/// inner router sees has its prefix stripped), the request URI otherwise. Never a
/// rewrite header.
pub(crate) fn request_path(parts: &http::request::Parts) -> &str {
    #[cfg(feature = "axum")]
    if let Some(original) = parts.extensions.get::<axum::extract::OriginalUri>() {
        return original.0.path();
    }
    parts.uri.path()
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC E1: every non-canonical form is refused, with the reason.
    #[test]
    fn refuses_non_canonical_forms() {
        let cases = [
            ("/a/../b", PathError::DotSegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/%2e%2E/b", PathError::DotSegment),
            ("/a/%2E/b", PathError::DotSegment),
            ("/a/..;/b", PathError::ForbiddenCharacter),
            ("/a;x/b", PathError::ForbiddenCharacter),
            ("/a%3Bx", PathError::ForbiddenCharacter),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::ForbiddenCharacter),
            ("/a%252e", PathError::DoubleEncoding),
            ("/a//b", PathError::EmptySegment),
            ("//a", PathError::EmptySegment),
            ("//", PathError::EmptySegment),
            ("/a%C2%85", PathError::ForbiddenCharacter),
            ("/a\u{85}", PathError::ForbiddenCharacter),
            ("/a%00", PathError::ForbiddenCharacter),
            ("/a%0d%0a", PathError::ForbiddenCharacter),
            ("/a%7f", PathError::ForbiddenCharacter),
            ("/a%zz", PathError::BadEncoding),
            ("/a%2", PathError::BadEncoding),
            ("/a%c0%af", PathError::NotUtf8),
            ("/a%ff", PathError::NotUtf8),
            ("*", PathError::NotAbsolute),
        ];
        for (raw, expected) in cases {
            assert_eq!(CanonicalPath::parse(raw), Err(expected), "{raw}");
        }
    }

    // SPEC E1, F18: bounded length.
    #[test]
    fn bounds_length_and_segments() {
        assert_eq!(CanonicalPath::parse(&"/a".repeat(4096)), Err(PathError::TooLong));
        assert_eq!(CanonicalPath::parse(&"/a".repeat(MAX_SEGMENTS + 1)), Err(PathError::TooLong));
        assert!(CanonicalPath::parse(&"/a".repeat(MAX_SEGMENTS)).is_ok());
    }

    // SPEC E1, C5: decoding once, trailing slash, leading tenant only.
    #[test]
    fn canonical_forms() {
        let p = CanonicalPath::parse("/api/%61dmin/").unwrap();
        assert_eq!((p.as_str(), p.tenant()), ("/api/admin", None));
        assert_eq!(CanonicalPath::parse("/").unwrap().as_str(), "/");
        assert_eq!(CanonicalPath::parse("/caf%C3%A9").unwrap().as_str(), "/café");
        let p = CanonicalPath::parse("/t/EXAMPLE.com/api").unwrap();
        assert_eq!((p.as_str(), p.tenant()), ("/api", Some("example.com")));
        let p = CanonicalPath::parse("/api/t/example.com/x").unwrap();
        assert_eq!((p.as_str(), p.tenant()), ("/api/t/example.com/x", None));
        let p = CanonicalPath::parse("/t/example.com").unwrap();
        assert_eq!((p.as_str(), p.tenant()), ("/", Some("example.com")));
        assert_eq!(p.segments().count(), 0);
        let p = CanonicalPath::parse("/api/users/v1/42/challenges").unwrap();
        assert_eq!(p.segments().collect::<Vec<_>>(), ["api", "users", "v1", "42", "challenges"]);
    }

    // SPEC E1: the router's reading keeps percent-encodings; none without one.
    #[test]
    fn routed_reading() {
        let p = CanonicalPath::as_routed("/t/ex%61mple.com/api/%61dmin/").unwrap();
        assert_eq!((p.as_str(), p.tenant()), ("/api/%61dmin", Some("ex%61mple.com")));
        assert_eq!(CanonicalPath::as_routed("/api/admin"), None);
    }

    // SPEC E1: a path of plain bytes takes the short way (no decoding); it must answer
    // exactly as decoding would, on every mix of plain segments, dots, empties and bytes.
    #[test]
    fn plain_paths_parse_as_decoded_ones() {
        let pieces = ["a", "", ".", "..", "t", "X.y", "~-_ +!", "...", "a.b", "q=1&r"];
        let mut checked = 0;
        for first in pieces {
            for second in pieces {
                for third in pieces {
                    for tail in ["", "/"] {
                        let raw = format!("/{first}/{second}/{third}{tail}");
                        let body = raw[1..].strip_suffix('/').unwrap_or(&raw[1..]);
                        assert!(body.bytes().all(is_plain), "{raw}");
                        assert_eq!(plain_path(&raw, body), decoded_path(&raw, body), "{raw}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 2000);
        let long = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(plain_path(&long, &long[1..]), decoded_path(&long, &long[1..]));
        for byte in 0..=255u8 {
            let plain = byte.is_ascii() && !byte.is_ascii_control() && !b"%\\;".contains(&byte);
            assert_eq!(is_plain(byte), plain, "byte {byte:#04x}");
        }
    }
}
