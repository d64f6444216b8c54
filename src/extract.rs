//! axum extractors: [`Principal`], `Option<Principal>` and [`AuthContext`].
//!
//! A handler that extracts any of them and is reached without [`crate::SecureLayer`]
//! fails closed with 500 and a logged error, never open. The `Principal`
//! extractor's 401 for an anonymous caller is an audit event like the layer's.

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::error::AuthError;
use crate::identity::Principal;
use crate::layer::AuthContext;

// axum rejections are responses; the size of the error variant is the framework's.
#[allow(clippy::result_large_err)]
fn context(parts: &Parts) -> Result<&AuthContext, Response> {
    parts.extensions.get::<AuthContext>().ok_or_else(missing_layer)
}

#[cold]
fn missing_layer() -> Response {
    tracing::error!(target: crate::AUDIT_TARGET, "handler reached without SecureLayer: refusing");
    AuthError::internal("SecureLayer missing").into_response()
}

impl<S: Send + Sync> FromRequestParts<S> for AuthContext {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        context(parts).cloned()
    }
}

/// The caller. On an open resource reached anonymously this answers 401 with the
/// resource's challenges (logged on the audit target as the request's decision); take
/// `Option<Principal>` to accept anonymous callers.
///
/// ```
/// use tower_secure::identity::Principal;
///
/// async fn me(principal: Principal) -> String {
///     principal.name().to_string()
/// }
///
/// async fn hello(principal: Option<Principal>) -> String {
///     match principal {
///         Some(p) => format!("hello {}", p.name()),
///         None => "hello stranger".to_owned(),
///     }
/// }
/// let app: axum::Router = axum::Router::new()
///     .route("/me", axum::routing::get(me))
///     .route("/hello", axum::routing::get(hello));
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let context = context(parts)?;
        match context.principal() {
            Some(principal) => Ok(principal.clone()),
            None => Err(context.refuse_anonymous(parts).map(axum::body::Body::from)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Principal {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(context(parts)?.principal().cloned())
    }
}
