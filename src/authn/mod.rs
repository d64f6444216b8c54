//! Who is calling: the [`AuthenticationHandler`] trait every handler implements (built-in
//! or plugin), the strict `Authorization` header parsing they share, and the built-in
//! `basic` and `oauth2` handlers.
//!
//! Nothing outside this module knows how a credential is parsed.

mod basic;
mod bearer;
mod claims;
#[cfg(feature = "tls")]
mod client_cert;
#[cfg(feature = "remote-keys")]
mod fetch;
#[cfg(feature = "tls")]
mod forwarded_cert;
pub mod header;
// Without `remote-keys`, the fetching parts are types that are never built.
#[cfg_attr(not(feature = "remote-keys"), path = "introspection_off.rs")]
mod introspection;
mod json;
#[cfg_attr(not(feature = "remote-keys"), path = "jwks_off.rs")]
mod jwks;
mod jwt;
mod keys;
mod lookup;

use std::sync::Arc;

use async_trait::async_trait;
use http::request::Parts;
use http::HeaderValue;

pub use basic::BasicAuthenticator;
pub use bearer::BearerAuthenticator;
#[cfg(feature = "tls")]
pub(crate) use client_cert::pem_certificates;
#[cfg(feature = "tls")]
pub use client_cert::{CaInfo, CertificateError, ClientCertAuthenticator, ClientCertificate, PeerAddress, TrustRoots};
pub use lookup::UserLookup;
// The token server's way in (feature `oauth2-server`).
#[cfg(feature = "oauth2-server")]
pub(crate) use basic::WeakBasicAuthenticator;
#[cfg(feature = "oauth2-server")]
pub(crate) use header::read_basic_credentials;
#[cfg(feature = "oauth2-server")]
pub(crate) use jwt::install_crypto_provider;
#[cfg(feature = "oauth2-server")]
pub(crate) use jwt::JwtVerifier;
pub(crate) use jwt::LocalIssuer;
#[cfg(feature = "oauth2-server")]
pub(crate) use keys::{check_rsa_modulus, hmac_key};

use crate::error::AuthError;
use crate::identity::{Principal, QualifiedName, UserRecord, UserStore, UserStoreError};

/// Authenticates requests that carry one kind of credential.
///
/// Handlers are asked in priority order (highest first); the first whose
/// [`can_handle`](Self::can_handle) is true authenticates the request, and its answer is
/// final: a present but invalid credential is 401, the next handler is not tried.
/// A handler only ever returns a [`Principal`] or an error, so no handler can
/// "succeed" without an identity.
///
/// An API-key plugin (to give its callers permissions from the user store, see
/// [`UserLookup`]):
///
/// ```
/// use tower_secure::async_trait;
/// use http::request::Parts;
/// use tower_secure::authn::AuthenticationHandler;
/// use tower_secure::identity::{Principal, QualifiedName};
/// use tower_secure::AuthError;
///
/// struct ApiKey;
///
/// #[async_trait]
/// impl AuthenticationHandler for ApiKey {
///     fn name(&self) -> &str {
///         "api_key"
///     }
///     fn can_handle(&self, request: &Parts) -> bool {
///         request.headers.contains_key("x-api-key")
///     }
///     async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
///         let key = request.headers.get("x-api-key").map(|v| v.as_bytes());
///         if key == Some(b"let-me-in".as_slice()) {
///             let name = QualifiedName::parse("robot").map_err(|_| AuthError::internal("bad name"))?;
///             Ok(Principal::builder(name, "api_key").build())
///         } else {
///             Err(AuthError::invalid_credentials("unknown api key"))
///         }
///     }
/// }
/// ```
#[async_trait]
pub trait AuthenticationHandler: Send + Sync + 'static {
    /// The name used in `allowed_auth_handlers` and `[authentication.priorities]`.
    fn name(&self) -> &str;

    /// The priority used unless the configuration sets one; higher is asked first.
    /// Built-ins: `oauth2` 30, `basic` 20, `client_cert` 10. Default 0.
    fn default_priority(&self) -> i32 {
        0
    }

    /// True when the request carries this handler's kind of credential. Must be cheap and
    /// must not judge validity: a malformed credential of this kind is still "handled"
    /// (and refused by [`authenticate`](Self::authenticate)).
    fn can_handle(&self, request: &Parts) -> bool;

    /// Verifies the credential. The layer calls it only after
    /// [`authenticate_now`](Self::authenticate_now) returned `None` for the same request,
    /// so work that one already did (a cache look-up) need not be repeated here.
    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError>;

    /// Answers without waiting when the handler can (a cached verification, a malformed
    /// credential); `None` sends the request to [`authenticate`](Self::authenticate).
    /// The layer always asks this first; it lets cached requests be decided without
    /// boxing a future. Default `None`.
    fn authenticate_now(&self, request: &Parts) -> Option<Result<Principal, AuthError>> {
        let _ = request;
        None
    }

    /// The `WWW-Authenticate` challenge for this scheme, sent with 401s on resources this
    /// handler may authenticate; `error` is set when this handler refused the request.
    fn challenge(&self, realm: &str, error: Option<&AuthError>) -> Option<HeaderValue> {
        let _ = (realm, error);
        None
    }

    /// Called after the layer's users were replaced (a users reload): forget whatever was
    /// cached from the old users (verified passwords, principals, their permissions), so
    /// a removed user or a changed role applies to the next request. Default: nothing.
    fn users_changed(&self) {}
}

/// Looks a user up for any handler, failing closed: a store error or a look-up slower than
/// `timeout` is 503 with `Retry-After` and a logged reason, never a missing user.
pub(crate) async fn find_user(
    store: &dyn UserStore,
    name: &QualifiedName,
    timeout: std::time::Duration,
) -> Result<Option<UserRecord>, AuthError> {
    store_call(store.find_user(name), timeout).await
}

/// A call into a user store, failing closed as [`find_user`] does.
pub(crate) async fn store_call<T>(
    call: impl std::future::Future<Output = Result<T, UserStoreError>>,
    timeout: std::time::Duration,
) -> Result<T, AuthError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => {
            tracing::error!(target: crate::AUDIT_TARGET, error = %e, "user store failed");
            Err(AuthError::unavailable("user store failure").with_retry_after(1))
        }
        Err(_) => {
            tracing::error!(target: crate::AUDIT_TARGET, "user store timed out");
            Err(AuthError::unavailable("user store timed out").with_retry_after(1))
        }
    }
}

/// A handler with its effective priority.
#[derive(Clone)]
pub(crate) struct RegisteredHandler {
    pub(crate) handler: Arc<dyn AuthenticationHandler>,
    pub(crate) priority: i32,
}

impl RegisteredHandler {
    pub(crate) fn name(&self) -> &str {
        self.handler.name()
    }

    pub(crate) fn allowed_by(&self, allowed: Option<&[String]>) -> bool {
        allowed.is_none_or(|names| names.iter().any(|n| n == self.name()))
    }
}

/// Handlers sorted by priority, highest first (registration order breaks ties).
#[derive(Clone, Default)]
pub(crate) struct Registry {
    handlers: Vec<RegisteredHandler>,
}

impl Registry {
    pub(crate) fn new(mut handlers: Vec<RegisteredHandler>) -> Self {
        handlers.sort_by_key(|h| std::cmp::Reverse(h.priority));
        Self { handlers }
    }

    pub(crate) fn handlers(&self) -> &[RegisteredHandler] {
        &self.handlers
    }

    /// The first allowed handler that can handle the request.
    pub(crate) fn select(&self, allowed: impl Fn(&RegisteredHandler) -> bool, request: &Parts) -> Option<usize> {
        self.handlers.iter().position(|h| allowed(h) && h.handler.can_handle(request))
    }

    /// One challenge per allowed scheme.
    pub(crate) fn challenges(&self, allowed: Option<&[String]>, realm: &str) -> Vec<HeaderValue> {
        self.handlers
            .iter()
            .filter(|h| h.allowed_by(allowed))
            .filter_map(|h| {
                // Computed once at build; a plugin that panics here simply offers no challenge.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.handler.challenge(realm, None)))
                    .ok()
                    .flatten()
            })
            .collect()
    }
}
