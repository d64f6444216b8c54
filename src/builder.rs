//! [`SecureLayerBuilder`]: collects the deployment, user store and plugins and validates
//! all of it at build time, so a bad configuration never reaches a request.

use std::any::Any;
use std::sync::Arc;

use crate::authn::{AuthenticationHandler, BasicAuthenticator, BearerAuthenticator};
use crate::authz::AuthorizationHandler;
use crate::config::{ConfigError, Deployment};
use crate::error::{ErrorResponder, ProblemJson};
use crate::identity::{InMemoryUserStore, UserStore};
use crate::layer::SecureLayer;
use crate::reload::{EngineParts, Shared};

/// Builds a [`SecureLayer`].
///
/// ```
/// use tower_secure::config::{load_users, Deployment};
/// use tower_secure::SecureLayer;
///
/// let layer = SecureLayer::builder()
///     .deployment(Deployment::default())          // no rules: everything needs a caller
///     .user_store(load_users("users.toml", "")?)  // enables the `basic` handler
///     .build()?;
/// assert_eq!(layer.handler_order(), vec![("basic".to_owned(), 20)]);
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Default)]
pub struct SecureLayerBuilder {
    deployment: Option<Deployment>,
    user_store: Option<Arc<dyn UserStore>>,
    /// The user store again when it is an [`InMemoryUserStore`], which reloads can replace.
    users: Option<InMemoryUserStore>,
    basic: Option<BasicAuthenticator>,
    bearer: Option<BearerAuthenticator>,
    handlers: Vec<(Arc<dyn AuthenticationHandler>, Option<i32>)>,
    authorizers: Vec<Arc<dyn AuthorizationHandler>>,
    responder: Option<Arc<dyn ErrorResponder>>,
    #[cfg(feature = "oauth2-server")]
    token_server: Option<crate::oauth2::TokenServer>,
}

impl std::fmt::Debug for SecureLayerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureLayerBuilder")
            .field("handlers", &self.handlers.len())
            .field("authorizers", &self.authorizers.len())
            .finish_non_exhaustive()
    }
}

impl SecureLayer {
    /// Starts a builder; see [`SecureLayerBuilder`].
    pub fn builder() -> SecureLayerBuilder {
        SecureLayerBuilder::default()
    }
}

impl SecureLayerBuilder {
    /// The rule file. Default: no rules (everything needs an authenticated caller).
    pub fn deployment(mut self, deployment: Deployment) -> Self {
        self.deployment = Some(deployment);
        self
    }

    /// The user store; enables the built-in `basic` handler with the
    /// `[authentication.basic]` settings of the deployment, and gives token users their
    /// permissions. (The `oauth2` handler is enabled by `[[oauth2.issuer]]` in the
    /// deployment.)
    pub fn user_store(mut self, store: impl UserStore) -> Self {
        self.users = (&store as &dyn Any).downcast_ref::<InMemoryUserStore>().cloned();
        self.user_store = Some(Arc::new(store));
        self
    }

    /// A `basic` handler you built yourself (to keep a handle on its cache).
    pub fn basic(mut self, basic: BasicAuthenticator) -> Self {
        self.basic = Some(basic);
        self
    }

    /// An `oauth2` handler you built yourself with [`BearerAuthenticator::builder`] or
    /// [`BearerAuthenticator::from_config`] (to keep a handle for
    /// [`BearerAuthenticator::forget_token`] on revocation, or to share one between layers).
    pub fn bearer(mut self, bearer: BearerAuthenticator) -> Self {
        self.bearer = Some(bearer);
        self
    }

    /// Registers an authentication handler at its default priority (or the one
    /// `[authentication.priorities]` sets for its name).
    pub fn authentication_handler(mut self, handler: impl AuthenticationHandler) -> Self {
        self.handlers.push((Arc::new(handler), None));
        self
    }

    /// Registers an authentication handler at `priority` (higher is asked first).
    pub fn authentication_handler_with_priority(mut self, handler: impl AuthenticationHandler, priority: i32) -> Self {
        self.handlers.push((Arc::new(handler), Some(priority)));
        self
    }

    /// Registers an authorization plugin; every plugin must allow (deny wins).
    pub fn authorization_handler(mut self, handler: impl AuthorizationHandler) -> Self {
        self.authorizers.push(Arc::new(handler));
        self
    }

    /// Shapes refusal bodies. Default: RFC 9457 problem+json.
    pub fn error_responder(mut self, responder: impl ErrorResponder) -> Self {
        self.responder = Some(Arc::new(responder));
        self
    }

    /// Trusts the tokens of a [`TokenServer`](crate::oauth2::TokenServer) in this process:
    /// its keys verify them (HMAC ones included) and a token it revokes is refused at once.
    /// The layer lets the server's own endpoint paths through (exactly those paths, as
    /// sent: they authenticate their clients themselves), so its router can sit under the
    /// layer with the rest of the app. Unless set otherwise, the layer also takes its user
    /// store and shares its `basic` handler, so the password grant and Basic share one
    /// cache and one lockout.
    #[cfg(feature = "oauth2-server")]
    pub fn token_server(mut self, server: &crate::oauth2::TokenServer) -> Self {
        self.token_server = Some(server.clone());
        self
    }

    /// Validates everything and builds the layer. Errors name the file, line and key.
    pub fn build(self) -> Result<SecureLayer, ConfigError> {
        let deployment = self.deployment.unwrap_or_default();
        let mut handlers = self.handlers;
        #[cfg_attr(not(feature = "oauth2-server"), allow(unused_mut))]
        let (mut store, mut basic, mut users) = (self.user_store, self.basic, self.users);
        #[cfg_attr(not(feature = "oauth2-server"), allow(unused_mut))]
        let mut token_endpoints: &'static [&'static str] = &[];
        #[cfg(feature = "oauth2-server")]
        if let Some(server) = &self.token_server {
            match &store {
                None => {
                    store = Some(server.user_store());
                    users = server.reloadable_users();
                    basic = basic.or_else(|| Some(server.basic_authenticator()));
                }
                // The layer's own store: its failed logins are counted where the token
                // server counts its users' (a shared backend: across instances).
                Some(own) => {
                    let config = &deployment.authentication.basic;
                    basic = basic.or_else(|| Some(server.basic_authenticator_for(own.clone(), config)));
                }
            }
            token_endpoints = &crate::oauth2::ENDPOINT_PATHS;
        }
        let basic = basic.or_else(|| {
            let store = store.clone()?;
            Some(BasicAuthenticator::from_arc(store, &deployment.authentication.basic))
        });
        if let Some(basic) = &basic {
            handlers.insert(0, (Arc::new(basic.clone()), None));
        }
        let parts = EngineParts {
            handlers,
            fixed_bearer: self.bearer,
            store,
            authorizers: self.authorizers,
            responder: self.responder.unwrap_or_else(|| Arc::new(ProblemJson)),
            token_endpoints,
            users,
            #[cfg(feature = "oauth2-server")]
            token_server: self.token_server,
        };
        let shared = Arc::new(Shared::new(&deployment, parts)?);
        Ok(SecureLayer { engine: Arc::clone(&shared.current), reload: shared })
    }
}
