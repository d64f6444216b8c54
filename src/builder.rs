//! [`SecureLayerBuilder`]: collects the deployment, user store and plugins and validates
//! all of it at build time, so a bad configuration never reaches a request.

use std::collections::HashSet;
use std::sync::Arc;

use crate::authn::{AuthenticationHandler, BasicAuthenticator, BearerAuthenticator, RegisteredHandler, Registry};
use crate::authz::AuthorizationHandler;
use crate::config::{ConfigError, Deployment};
use crate::error::{ErrorResponder, ProblemJson};
use crate::identity::UserStore;
use crate::layer::{Engine, SecureLayer};
use crate::policy::{Policy, Rule};

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
    basic: Option<BasicAuthenticator>,
    bearer: Option<BearerAuthenticator>,
    handlers: Vec<(Arc<dyn AuthenticationHandler>, Option<i32>)>,
    authorizers: Vec<Arc<dyn AuthorizationHandler>>,
    responder: Option<Arc<dyn ErrorResponder>>,
    #[cfg(feature = "oauth2-server")]
    token_server: Option<crate::oauth2::TokenServer>,
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
        self.user_store = Some(Arc::new(store));
        self
    }

    /// A `basic` handler you built yourself (to keep a handle on its cache).
    pub fn basic(mut self, basic: BasicAuthenticator) -> Self {
        self.basic = Some(basic);
        self
    }

    /// An `oauth2` handler you built yourself with [`BearerAuthenticator::from_config`] (to
    /// keep a handle for [`BearerAuthenticator::forget_token`] on revocation).
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

    /// Shapes refusal bodies (SPEC E6). Default: RFC 9457 problem+json.
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
        let (mut store, mut basic, mut local) = (self.user_store, self.basic, None);
        #[cfg_attr(not(feature = "oauth2-server"), allow(unused_mut))]
        let mut token_endpoints: &'static [&'static str] = &[];
        #[cfg(feature = "oauth2-server")]
        if let Some(server) = &self.token_server {
            if store.is_none() {
                store = Some(server.user_store());
                basic = basic.or_else(|| Some(server.basic_authenticator()));
            }
            local = Some(server.local_issuer());
            token_endpoints = &crate::oauth2::ENDPOINT_PATHS;
        }
        let basic = basic.or_else(|| {
            let store = store.clone()?;
            Some(BasicAuthenticator::from_arc(store, &deployment.authentication.basic))
        });
        if let Some(basic) = basic {
            handlers.insert(0, (Arc::new(basic), None));
        }
        let bearer = match self.bearer {
            Some(bearer) => Some(bearer),
            None => BearerAuthenticator::with_local_issuer(&deployment, store, local)?,
        };
        if let Some(bearer) = bearer {
            handlers.insert(0, (Arc::new(bearer), None));
        }
        let registry = registry(&deployment, handlers)?;
        let names: Vec<&str> = registry.handlers().iter().map(RegisteredHandler::name).collect();
        let policy = Policy::compile_with_handlers(&deployment, &names)?;
        let realm = deployment.authentication.realm.clone();
        let challenges_of = |rule: &Rule| Arc::from(registry.challenges(rule.allowed_auth_handlers(), &realm));
        let challenges = policy.rules().iter().map(|rule| challenges_of(rule)).collect();
        let default_challenges = Arc::from(registry.challenges(None, &realm));
        let engine = Engine {
            policy,
            registry,
            authorizers: self.authorizers,
            realm,
            authenticate_preflight: deployment.cors.authenticate_preflight,
            responder: self.responder.unwrap_or_else(|| Arc::new(ProblemJson)),
            challenges,
            default_challenges,
            token_endpoints,
        };
        Ok(SecureLayer { engine: Arc::new(engine) })
    }
}

/// Unique names; priorities from the configuration, then the registration, then the
/// handler's default.
fn registry(
    deployment: &Deployment,
    handlers: Vec<(Arc<dyn AuthenticationHandler>, Option<i32>)>,
) -> Result<Registry, ConfigError> {
    let source = &deployment.source;
    let priorities = &deployment.authentication.priorities;
    let mut seen = HashSet::new();
    let mut registered = Vec::with_capacity(handlers.len());
    for (handler, explicit) in handlers {
        let name = handler.name().to_owned();
        if !seen.insert(name.clone()) {
            return Err(ConfigError {
                file: source.file().clone(),
                line: 0,
                column: 0,
                key: None,
                message: format!("two authentication handlers are called `{name}`"),
            });
        }
        let configured = priorities.get(&name).map(|p| *p.get_ref());
        let priority = configured.or(explicit).unwrap_or_else(|| handler.default_priority());
        registered.push(RegisteredHandler { handler, priority });
    }
    if let Some((name, value)) = priorities.iter().find(|(name, _)| !seen.contains(name.as_str())) {
        return Err(source.error(
            value.span(),
            name,
            format!("no authentication handler called `{name}` is registered"),
        ));
    }
    Ok(Registry::new(registered))
}
