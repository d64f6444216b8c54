// OAuth2 error responses (RFC 6749 section 5.2, RFC 7009, RFC 7662): the only place the
// token server writes an error status, body or challenge.

use std::borrow::Cow;

use axum::response::{IntoResponse, Response};
use http::header::{CACHE_CONTROL, CONTENT_TYPE, PRAGMA, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use crate::error::{AuthError, AuthErrorKind};

/// An OAuth2 error answer: an RFC 6749 error code, its status and a fixed description.
/// The reason is for the log only; nothing from the request is echoed.
///
/// ```
/// use tower_secure::oauth2::{OAuthError, OAuthErrorCode};
///
/// let error = OAuthError::server_error("scope database unreachable");
/// assert_eq!(error.code(), OAuthErrorCode::ServerError);
/// assert_eq!(error.code().as_str(), "server_error");
/// assert_eq!(error.status(), http::StatusCode::SERVICE_UNAVAILABLE);
/// ```
#[derive(Debug, Clone)]
pub struct OAuthError {
    code: OAuthErrorCode,
    status: StatusCode,
    reason: Cow<'static, str>,
    retry_after: Option<u64>,
    /// The realm for `invalid_client`'s `WWW-Authenticate: Basic` challenge.
    realm: Option<String>,
}

/// An OAuth2 error code (RFC 6749 section 5.2, and `temporarily_unavailable` and
/// `server_error` of section 4.1.2.1), as it appears in the `error` member of a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`: a parameter is missing, repeated or malformed.
    InvalidRequest,
    /// `invalid_client`: client authentication failed.
    InvalidClient,
    /// `invalid_grant`: the user's credentials or the refresh token are not valid.
    InvalidGrant,
    /// `unauthorized_client`: this client may not use this grant.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`: a refresh asks for more than the original grant.
    InvalidScope,
    /// `temporarily_unavailable`: throttled; retry later.
    TemporarilyUnavailable,
    /// `server_error`: a backend failed.
    ServerError,
}

impl OAuthErrorCode {
    /// The code as written in responses.
    pub fn as_str(self) -> &'static str {
        self.text().0
    }

    /// A fixed sentence per code: a response body never carries request data or the reason.
    fn description(self) -> &'static str {
        self.text().1
    }

    /// The code's name and its description, side by side.
    fn text(self) -> (&'static str, &'static str) {
        match self {
            OAuthErrorCode::InvalidRequest => {
                ("invalid_request", "The request is missing a parameter, repeats one or is malformed.")
            }
            OAuthErrorCode::InvalidClient => ("invalid_client", "Client authentication failed."),
            OAuthErrorCode::InvalidGrant => ("invalid_grant", "The credentials or the refresh token are not valid."),
            OAuthErrorCode::UnauthorizedClient => ("unauthorized_client", "This client may not use this grant type."),
            OAuthErrorCode::UnsupportedGrantType => ("unsupported_grant_type", "The grant type is not supported."),
            OAuthErrorCode::InvalidScope => ("invalid_scope", "The requested scope exceeds the original grant."),
            OAuthErrorCode::TemporarilyUnavailable => ("temporarily_unavailable", "Too many attempts; retry later."),
            OAuthErrorCode::ServerError => ("server_error", "The server could not complete the request; retry later."),
        }
    }
}

impl std::fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl OAuthError {
    fn new(code: OAuthErrorCode, status: StatusCode, reason: impl Into<Cow<'static, str>>) -> Self {
        Self { code, status, reason: reason.into(), retry_after: None, realm: None }
    }

    /// `invalid_request` (400): a parameter is missing, repeated or malformed.
    pub fn invalid_request(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, StatusCode::BAD_REQUEST, reason)
    }

    /// `invalid_client` (401 with a Basic challenge): client authentication failed.
    pub fn invalid_client(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, StatusCode::UNAUTHORIZED, reason)
    }

    /// `invalid_grant` (400): the user's credentials or the refresh token are not valid.
    pub fn invalid_grant(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, StatusCode::BAD_REQUEST, reason)
    }

    /// `unauthorized_client` (400): this client may not use this grant.
    pub fn unauthorized_client(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::UnauthorizedClient, StatusCode::BAD_REQUEST, reason)
    }

    /// `unsupported_grant_type` (400).
    pub fn unsupported_grant_type(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::UnsupportedGrantType, StatusCode::BAD_REQUEST, reason)
    }

    /// `invalid_scope` (400): a refresh asks for more than the original grant.
    pub fn invalid_scope(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(OAuthErrorCode::InvalidScope, StatusCode::BAD_REQUEST, reason)
    }

    /// `server_error` (503 with `Retry-After`): a backend failed; nothing is granted.
    pub fn server_error(reason: impl Into<Cow<'static, str>>) -> Self {
        let mut error = Self::new(OAuthErrorCode::ServerError, StatusCode::SERVICE_UNAVAILABLE, reason);
        error.retry_after = Some(1);
        error
    }

    /// The error code.
    pub fn code(&self) -> OAuthErrorCode {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Why, for the log.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    pub(super) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub(super) fn with_realm(mut self, realm: &str) -> Self {
        self.realm = Some(realm.replace(['"', '\\'], ""));
        self
    }

    /// The same failure as seen by the token endpoint: a wrong password is `invalid_grant`
    /// (or `invalid_client` for client secrets), throttling 429, a failed store `server_error`.
    pub(super) fn from_auth(error: AuthError, refused: fn(Cow<'static, str>) -> Self) -> Self {
        let reason: Cow<'static, str> = Cow::Owned(error.reason().to_owned());
        match error.kind() {
            AuthErrorKind::TooManyRequests => {
                let mut throttled =
                    Self::new(OAuthErrorCode::TemporarilyUnavailable, StatusCode::TOO_MANY_REQUESTS, reason);
                throttled.retry_after = error.retry_after().or(Some(1));
                throttled
            }
            AuthErrorKind::Unavailable | AuthErrorKind::Internal => Self::server_error(reason),
            _ => refused(reason),
        }
    }
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for OAuthError {}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code.as_str(), "error_description": self.code.description() });
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(PRAGMA, HeaderValue::from_static("no-cache"));
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let (Some(realm), StatusCode::UNAUTHORIZED) = (&self.realm, self.status) {
            if let Ok(challenge) = HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")) {
                headers.insert(WWW_AUTHENTICATE, challenge);
            }
        }
        response
    }
}
