//! One error type for every refusal, and the one place it becomes an HTTP response:
//! status code, `WWW-Authenticate`, `Retry-After` and an RFC 9457 problem+json body
//! that reflects nothing the caller sent.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

/// What kind of refusal an [`AuthError`] is; each kind has one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthErrorKind {
    /// 400: malformed request (non-canonical path, malformed `Authorization` header).
    InvalidRequest,
    /// 431: an `Authorization` header over the size limit.
    HeaderTooLarge,
    /// 401: no usable credential on a secured resource.
    Unauthenticated,
    /// 401: a credential was presented and is not valid.
    InvalidCredentials,
    /// 403: authenticated, not authorized.
    Forbidden,
    /// 405: a method no rule allows.
    MethodNotAllowed,
    /// 429: too many credential verifications right now.
    TooManyRequests,
    /// 503: a backend (user store, key server) failed.
    Unavailable,
    /// 500: the server is misconfigured or a plugin failed.
    Internal,
}

impl AuthErrorKind {
    /// The HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Unauthenticated | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The fixed, caller-facing sentence for this kind. Identical for every cause of the
    /// same kind, so "unknown user", "wrong password" and "locked" cannot be told apart.
    pub fn detail(self) -> &'static str {
        match self {
            Self::InvalidRequest => "The request is malformed.",
            Self::HeaderTooLarge => "A request header is too large.",
            Self::Unauthenticated => "Authentication is required to access this resource.",
            Self::InvalidCredentials => "The credentials are not valid.",
            Self::Forbidden => "The caller is not allowed to access this resource.",
            Self::MethodNotAllowed => "This method is not allowed on this resource.",
            Self::TooManyRequests => "Too many authentication attempts; retry later.",
            Self::Unavailable => "Authentication is temporarily unavailable; retry later.",
            Self::Internal => "The request could not be authorized.",
        }
    }

    /// The gRPC status code a gRPC caller gets for this kind (`UNAUTHENTICATED` = 16,
    /// `PERMISSION_DENIED` = 7, `UNAVAILABLE` = 14, ...), for a tonic service that refuses
    /// with the crate's errors itself:
    ///
    /// ```
    /// use tower_secure::{AuthError, AuthErrorKind};
    ///
    /// let error = AuthError::forbidden("needs orders:write");
    /// assert_eq!(error.kind().grpc_code(), 7); // tonic::Code::PermissionDenied
    /// assert_eq!(AuthErrorKind::Unavailable.grpc_code(), 14);
    /// ```
    pub fn grpc_code(self) -> i32 {
        match self {
            Self::InvalidRequest => 3,                              // INVALID_ARGUMENT
            Self::HeaderTooLarge | Self::TooManyRequests => 8,      // RESOURCE_EXHAUSTED
            Self::Unauthenticated | Self::InvalidCredentials => 16, // UNAUTHENTICATED
            Self::Forbidden => 7,                                   // PERMISSION_DENIED
            Self::MethodNotAllowed => 12,                           // UNIMPLEMENTED
            Self::Unavailable => 14,                                // UNAVAILABLE
            Self::Internal => 13,                                   // INTERNAL
        }
    }
}

/// True for a gRPC request (`content-type: application/grpc`, `application/grpc+proto`,
/// ...): its refusals are gRPC statuses, not HTTP errors.
pub(crate) fn is_grpc(request: &HeaderMap) -> bool {
    request.get(CONTENT_TYPE).is_some_and(|value| {
        let value = value.as_bytes();
        let prefix = b"application/grpc";
        value.len() >= prefix.len()
            && value[..prefix.len()].eq_ignore_ascii_case(prefix)
            && matches!(value.get(prefix.len()), None | Some(b'+' | b';'))
    })
}

/// Why a request was refused.
///
/// The `reason` goes to the audit log only, never to the caller; it must not hold
/// secrets. Plugins build errors with the constructors:
///
/// ```
/// use http::StatusCode;
/// use tower_secure::{AuthError, AuthErrorKind};
///
/// let err = AuthError::invalid_credentials("api key not on the list");
/// assert_eq!(err.kind(), AuthErrorKind::InvalidCredentials);
/// assert_eq!(err.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(err.reason(), "api key not on the list");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError {
    kind: AuthErrorKind,
    reason: Cow<'static, str>,
    retry_after: Option<u64>,
    required_scope: Option<Box<str>>,
}

impl AuthError {
    /// An error of `kind` with a log-only `reason`.
    pub fn new(kind: AuthErrorKind, reason: impl Into<Cow<'static, str>>) -> Self {
        Self { kind, reason: reason.into(), retry_after: None, required_scope: None }
    }

    /// 403 for a token that lacks scopes the resource requires; the bearer challenge
    /// names them (`error="insufficient_scope", scope="..."`, RFC 6750).
    pub fn insufficient_scope(required: &[String]) -> Self {
        let mut error = Self::forbidden("missing scope");
        error.required_scope = Some(required.join(" ").into());
        error
    }

    /// The scopes a 403 for an insufficient token scope requires, space separated.
    pub fn required_scope(&self) -> Option<&str> {
        self.required_scope.as_deref()
    }

    /// 400.
    pub fn invalid_request(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidRequest, reason)
    }

    /// 401 for a credential that was presented and is not valid.
    pub fn invalid_credentials(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::InvalidCredentials, reason)
    }

    /// 403.
    pub fn forbidden(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::Forbidden, reason)
    }

    /// 503 for a backend outage.
    pub fn unavailable(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::Unavailable, reason)
    }

    /// 500.
    pub fn internal(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(AuthErrorKind::Internal, reason)
    }

    /// Adds a `Retry-After` (seconds) to a 429 or 503.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The kind.
    pub fn kind(&self) -> AuthErrorKind {
        self.kind
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The log-only reason.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// The `Retry-After` seconds, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// Builds the response to a request with the headers `request`: `challenges` become
    /// `WWW-Authenticate` headers, the body comes from `responder`. Status and headers are
    /// not the responder's to change. A gRPC request gets a gRPC status instead.
    pub(crate) fn to_response(
        &self,
        request: &HeaderMap,
        challenges: &[HeaderValue],
        responder: &dyn ErrorResponder,
    ) -> Response<Bytes> {
        if is_grpc(request) {
            return self.to_grpc_response(challenges);
        }
        let body = responder.respond(self);
        let mut response = Response::new(body.body);
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, body.content_type);
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for challenge in challenges {
            headers.append(WWW_AUTHENTICATE, challenge.clone());
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    /// A gRPC "trailers-only" answer: HTTP 200 with `grpc-status` and `grpc-message` (the
    /// fixed sentence of the kind, nothing the caller sent) in the headers and no body, which
    /// gRPC clients read as the call's status. Challenges and `Retry-After` stay as metadata.
    fn to_grpc_response(&self, challenges: &[HeaderValue]) -> Response<Bytes> {
        let mut response = Response::new(Bytes::new());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert("grpc-status", HeaderValue::from(self.kind.grpc_code()));
        headers.insert("grpc-message", HeaderValue::from_static(self.kind.detail()));
        for challenge in challenges {
            headers.append(WWW_AUTHENTICATE, challenge.clone());
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.kind.detail(), self.reason)
    }
}

impl std::error::Error for AuthError {}

/// A response body chosen by an [`ErrorResponder`].
#[derive(Debug, Clone)]
pub struct ErrorBody {
    /// The `Content-Type` of `body`.
    pub content_type: HeaderValue,
    /// The bytes sent.
    pub body: Bytes,
}

/// Shapes refusal bodies. Status codes and `WWW-Authenticate` stay the crate's.
///
/// Any `Fn(&AuthError) -> ErrorBody` is a responder. This one answers in WSO2's shape:
///
/// ```
/// use http::HeaderValue;
/// use tower_secure::{AuthError, ErrorBody};
///
/// let wso2_style = |err: &AuthError| ErrorBody {
///     content_type: HeaderValue::from_static("application/json"),
///     body: serde_json::json!({
///         "code": err.status().as_u16(),
///         "message": err.status().canonical_reason(),
///         "description": err.kind().detail(),
///     }).to_string().into(),
/// };
/// let layer = tower_secure::SecureLayer::builder().error_responder(wso2_style).build()?;
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
pub trait ErrorResponder: Send + Sync + 'static {
    /// The body for `error`.
    fn respond(&self, error: &AuthError) -> ErrorBody;
}

impl<F> ErrorResponder for F
where
    F: Fn(&AuthError) -> ErrorBody + Send + Sync + 'static,
{
    fn respond(&self, error: &AuthError) -> ErrorBody {
        self(error)
    }
}

/// The default responder: RFC 9457 `application/problem+json` with `type`, `title`,
/// `status` and `detail`, all fixed per kind.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemJson;

impl ErrorResponder for ProblemJson {
    fn respond(&self, error: &AuthError) -> ErrorBody {
        let status = error.status();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": error.kind().detail(),
        });
        ErrorBody {
            content_type: HeaderValue::from_static("application/problem+json"),
            body: Bytes::from(body.to_string()),
        }
    }
}

#[cfg(feature = "axum")]
impl axum::response::IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        self.to_response(&HeaderMap::new(), &[], &ProblemJson).map(axum::body::Body::from)
    }
}
