// The built-in handlers' user look-up, for plugins (SPEC A10, F17): a failing or slow
// store is 503 with `Retry-After`, an unknown or disabled user is refused, and a principal
// carries the permissions its roles grant.

use std::sync::Arc;
use std::time::Duration;

use crate::config::BasicConfig;
use crate::error::AuthError;
use crate::identity::{Principal, QualifiedName, UserRecord, UserStore};

/// Looks users up for an authentication plugin exactly as the built-in handlers do: a
/// store error or a look-up slower than the timeout answers 503 with `Retry-After` (and is
/// logged), never "unknown user"; an unknown or disabled user is refused with 401, the same
/// answer for both; and the principal gets the user's roles *and the permissions they
/// grant* (the users file's `[[role]]` tables), so rules with permissions judge it like a
/// Basic caller. Cheap to clone.
///
/// A plugin that maps API keys to users of the users file (callers without a password):
///
/// ```
/// use std::time::Duration;
/// use http::request::Parts;
/// use tower_secure::async_trait;
/// use tower_secure::authn::{AuthenticationHandler, UserLookup};
/// use tower_secure::config::load_users;
/// use tower_secure::identity::{Principal, QualifiedName};
/// use tower_secure::{AuthError, SecureLayer};
///
/// struct ApiKeys {
///     users: UserLookup,
/// }
///
/// #[async_trait]
/// impl AuthenticationHandler for ApiKeys {
///     fn name(&self) -> &str {
///         "api_key"
///     }
///     fn can_handle(&self, request: &Parts) -> bool {
///         request.headers.contains_key("x-api-key")
///     }
///     async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
///         // A real plugin compares keys in constant time (see examples/custom_handler.rs).
///         let user = match request.headers.get("x-api-key").map(|v| v.as_bytes()) {
///             Some(b"reports-key") => "reports-robot",
///             _ => return Err(AuthError::invalid_credentials("unknown api key")),
///         };
///         let name = QualifiedName::parse(user).map_err(|_| AuthError::internal("bad user name"))?;
///         self.users.principal(&name, self.name()).await
///     }
/// }
///
/// let users = load_users("users.toml", r#"
///     [[role]]
///     name = "reporting"
///     permissions = ["/permission/admin/monitor"]
///
///     [[user]]
///     name = "reports-robot"
///     roles = ["reporting"]
/// "#)?;
/// let plugin = ApiKeys { users: UserLookup::new(users.clone(), Duration::from_secs(10)) };
/// let layer = SecureLayer::builder().user_store(users).authentication_handler(plugin).build()?;
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
///
/// Give it the same [`InMemoryUserStore`](crate::identity::InMemoryUserStore) as the layer
/// (clones share their users): a [`Reloader`](crate::Reloader) users reload then reaches it.
#[derive(Clone)]
pub struct UserLookup {
    store: Arc<dyn UserStore>,
    timeout: Duration,
}

impl UserLookup {
    /// Look-ups in `store`, each failing with 503 after `timeout`.
    pub fn new(store: impl UserStore, timeout: Duration) -> Self {
        Self { store: Arc::new(store), timeout }
    }

    /// Look-ups with the timeout the built-in handlers use: `store_timeout_seconds` of
    /// `[authentication.basic]`.
    pub fn from_config(store: impl UserStore, config: &BasicConfig) -> Self {
        Self::new(store, Duration::from_secs(config.store_timeout_seconds.max(1)))
    }

    /// The user's record (roles, the permissions they grant, disabled or not); `None` for
    /// an unknown user. A store error or timeout is 503 with `Retry-After`.
    pub async fn find(&self, name: &QualifiedName) -> Result<Option<UserRecord>, AuthError> {
        super::find_user(&*self.store, name, self.timeout).await
    }

    /// The principal of an enabled user, authenticated by the handler called `handler`,
    /// with its roles and their permissions. Unknown or disabled: 401 (one answer for
    /// both); a store error or timeout: 503 with `Retry-After`.
    pub async fn principal(&self, name: &QualifiedName, handler: &str) -> Result<Principal, AuthError> {
        match self.find(name).await? {
            Some(record) if !record.disabled => {
                Ok(Principal::builder(record.name, handler).roles(record.roles).permissions(record.permissions).build())
            }
            Some(_) => Err(AuthError::invalid_credentials("account disabled")),
            None => Err(AuthError::invalid_credentials("unknown user")),
        }
    }
}

impl std::fmt::Debug for UserLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLookup").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}
