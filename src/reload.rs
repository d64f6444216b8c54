//! Hot reload: the rules (and an in-memory users file) are replaced while the
//! layer serves, and so are the scopes and clients of a token server registered with it.
//! A new configuration is compiled completely, then swapped in atomically: each request is
//! decided by exactly one version, and a file that does not load is refused with its error
//! logged while the old version keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::authn::{AuthenticationHandler, BearerAuthenticator, RegisteredHandler, Registry};
use crate::authz::AuthorizationHandler;
use crate::config::{load_users, BasicConfig, ClientRecord, ConfigError, Deployment, OAuth2Config};
use crate::error::ErrorResponder;
use crate::identity::{InMemoryUserStore, UserStore};
use crate::layer::Engine;
use crate::policy::{Policy, Rule};

/// What a layer keeps between versions: the current engine and the parts every new one
/// is built from.
pub(crate) struct Shared {
    /// Shared with the layer, which reads it per request and knows nothing else of this.
    pub(crate) current: Arc<ArcSwap<Engine>>,
    pub(crate) parts: EngineParts,
    /// The handlers built from the current version's own sections.
    file_handlers: Mutex<FileHandlers>,
    /// The sections a reload cannot change (the handlers were built from them).
    restart_only: RestartOnly,
    /// Reloads one at a time.
    reloading: Mutex<()>,
    version: AtomicU64,
}

/// Everything but the rule file that an engine is made of.
pub(crate) struct EngineParts {
    /// `basic` and the plugins: the same in every version.
    pub(crate) handlers: Vec<(Arc<dyn AuthenticationHandler>, Option<i32>)>,
    /// An `oauth2` handler given to the builder, used instead of one built from `[oauth2]`.
    pub(crate) fixed_bearer: Option<BearerAuthenticator>,
    /// The store the handlers built from the file look users up in.
    pub(crate) store: Option<Arc<dyn UserStore>>,
    pub(crate) authorizers: Vec<Arc<dyn AuthorizationHandler>>,
    pub(crate) responder: Arc<dyn ErrorResponder>,
    pub(crate) token_endpoints: &'static [&'static str],
    /// The user store, when it is one [`Reloader::reload_users`] can replace.
    pub(crate) users: Option<InMemoryUserStore>,
    /// The token server registered with the layer: it reloads with it.
    #[cfg(feature = "oauth2-server")]
    pub(crate) token_server: Option<crate::oauth2::TokenServer>,
}

/// The handlers built from a version's own sections (`oauth2` from `[oauth2]`,
/// `client_cert` from `[client_cert]` and `[intermediate_cert_validation]`), with the
/// sections they were built from: a reload builds one anew only when its sections changed,
/// so its caches and key fetches survive every other reload.
#[derive(Clone)]
pub(crate) struct FileHandlers {
    oauth2: OAuth2Config,
    bearer: Option<BearerAuthenticator>,
    #[cfg(feature = "tls")]
    client_cert_sections: (Option<crate::config::ClientCertConfig>, crate::config::IntermediateCertValidation),
    #[cfg(feature = "tls")]
    client_cert: Option<crate::authn::ClientCertAuthenticator>,
}

impl EngineParts {
    /// The file's handlers for `deployment`: those of `previous` whose sections are
    /// unchanged, the others built anew (an error refuses the version).
    fn file_handlers(
        &self,
        deployment: &Deployment,
        previous: Option<&FileHandlers>,
    ) -> Result<FileHandlers, ConfigError> {
        let oauth2 = deployment.oauth2.clone();
        let bearer = match (&self.fixed_bearer, previous) {
            (Some(fixed), _) => Some(fixed.clone()),
            (None, Some(previous)) if previous.oauth2 == oauth2 => previous.bearer.clone(),
            (None, _) => BearerAuthenticator::with_local_issuer(deployment, self.store.clone(), self.local_issuer())?,
        };
        #[cfg(feature = "tls")]
        let client_cert_sections = (
            deployment.client_cert.as_ref().map(|c| c.get_ref().clone()),
            deployment.intermediate_cert_validation.clone(),
        );
        #[cfg(feature = "tls")]
        let client_cert = match previous {
            Some(previous) if previous.client_cert_sections == client_cert_sections => previous.client_cert.clone(),
            _ => self.client_cert(deployment)?,
        };
        Ok(FileHandlers {
            oauth2,
            bearer,
            #[cfg(feature = "tls")]
            client_cert_sections,
            #[cfg(feature = "tls")]
            client_cert,
        })
    }

    /// The token server of this process as an issuer the `oauth2` handler trusts.
    fn local_issuer(&self) -> Option<crate::authn::LocalIssuer> {
        #[cfg(feature = "oauth2-server")]
        return self.token_server.as_ref().map(crate::oauth2::TokenServer::local_issuer);
        #[cfg(not(feature = "oauth2-server"))]
        None
    }

    #[cfg(feature = "tls")]
    fn client_cert(
        &self,
        deployment: &Deployment,
    ) -> Result<Option<crate::authn::ClientCertAuthenticator>, ConfigError> {
        match (&deployment.client_cert, &self.store) {
            (None, _) => Ok(None),
            (Some(table), None) => {
                let message = "the client_cert handler needs a user store (SecureLayerBuilder::user_store)";
                Err(deployment.source.error(table.span(), "client_cert", message))
            }
            (Some(_), Some(store)) => crate::authn::ClientCertAuthenticator::from_config(deployment, store.clone()),
        }
    }

    /// Compiles a deployment into an engine; any error leaves nothing half-built.
    fn engine(&self, deployment: &Deployment, file: &FileHandlers) -> Result<Engine, ConfigError> {
        let mut handlers: Vec<(Arc<dyn AuthenticationHandler>, Option<i32>)> = Vec::new();
        if let Some(bearer) = &file.bearer {
            handlers.push((Arc::new(bearer.clone()), None));
        }
        handlers.extend(self.handlers.iter().cloned());
        #[cfg(feature = "tls")]
        if let Some(client_cert) = &file.client_cert {
            handlers.push((Arc::new(client_cert.clone()), None));
        }
        let registry = registry(deployment, handlers)?;
        let names: Vec<&str> = registry.handlers().iter().map(RegisteredHandler::name).collect();
        let policy = Policy::compile_with_handlers(deployment, &names)?;
        #[cfg(feature = "axum")]
        crate::secure_attr::check_handler_rules(&policy)?;
        let realm = deployment.authentication.realm.clone();
        let challenges_of = |rule: &Rule| Arc::from(registry.challenges(rule.allowed_auth_handlers(), &realm));
        let challenges = policy.rules().iter().map(|rule| challenges_of(rule)).collect();
        let default_challenges = Arc::from(registry.challenges(None, &realm));
        let decisions = crate::layer::decision_counters(&policy, &registry);
        Ok(Engine {
            policy: Arc::new(policy),
            registry,
            authorizers: self.authorizers.clone(),
            realm,
            responder: self.responder.clone(),
            challenges,
            default_challenges,
            token_endpoints: self.token_endpoints,
            decisions,
        })
    }
}

/// A reload checked in full and ready to swap in: nothing of it is visible yet.
struct Prepared {
    engine: Engine,
    file_handlers: FileHandlers,
    #[cfg(feature = "oauth2-server")]
    token_server: Option<crate::oauth2::RuleFileSettings>,
}

impl Shared {
    /// Compiles everything a new rule file changes, for the layer and its token server;
    /// any error leaves both as they are.
    fn prepare(&self, deployment: &Deployment) -> Result<Prepared, ConfigError> {
        let fixed_bearer = self.parts.fixed_bearer.is_some();
        if let Some(section) = self.restart_only.changed(&RestartOnly::of(deployment, fixed_bearer)) {
            return Err(ConfigError {
                file: deployment.source.file().clone(),
                line: 0,
                column: 0,
                key: None,
                message: format!("{section} changed: the handlers were built from it, restart to apply it"),
            });
        }
        let previous = self.file_handlers.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let file_handlers = self.parts.file_handlers(deployment, Some(&previous))?;
        let engine = self.parts.engine(deployment, &file_handlers)?;
        #[cfg(feature = "oauth2-server")]
        let token_server = self.parts.token_server.as_ref().map(|s| s.prepare_reload(deployment)).transpose()?;
        Ok(Prepared {
            engine,
            file_handlers,
            #[cfg(feature = "oauth2-server")]
            token_server,
        })
    }

    /// Swaps a prepared reload in: the token server first, so a scope the new rules
    /// enforce is issued by the time the layer asks for it.
    fn apply(&self, prepared: Prepared) {
        #[cfg(feature = "oauth2-server")]
        if let (Some(server), Some(rules)) = (&self.parts.token_server, prepared.token_server) {
            server.apply_reload(rules);
        }
        self.current.store(Arc::new(prepared.engine));
        *self.file_handlers.lock().unwrap_or_else(PoisonError::into_inner) = prepared.file_handlers;
    }

    pub(crate) fn new(deployment: &Deployment, parts: EngineParts) -> Result<Self, ConfigError> {
        let file_handlers = parts.file_handlers(deployment, None)?;
        let engine = parts.engine(deployment, &file_handlers)?;
        let restart_only = RestartOnly::of(deployment, parts.fixed_bearer.is_some());
        Ok(Self {
            current: Arc::new(ArcSwap::from_pointee(engine)),
            file_handlers: Mutex::new(file_handlers),
            parts,
            restart_only,
            reloading: Mutex::new(()),
            version: AtomicU64::new(0),
        })
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
    let mut seen = std::collections::HashSet::new();
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

/// The sections a reload cannot change, as the handlers saw them (defaults filled in;
/// positions and formatting do not count): `[authentication.basic]`, whose handler holds
/// the failed-login counts and locks a rebuild would forget, and `[oauth2]` when the
/// builder was given its own `oauth2` handler.
#[derive(PartialEq)]
struct RestartOnly {
    basic: BasicConfig,
    oauth2: Option<OAuth2Config>,
    user_store: Vec<crate::config::UserStoreTable>,
    role: Vec<crate::config::RoleEntry>,
    state: Option<crate::config::StateTable>,
}

impl RestartOnly {
    fn of(deployment: &Deployment, fixed_bearer: bool) -> Self {
        Self {
            basic: deployment.authentication.basic.clone(),
            oauth2: fixed_bearer.then(|| deployment.oauth2.clone()),
            user_store: deployment.user_store.iter().map(|t| t.get_ref().clone()).collect(),
            role: deployment.role.clone(),
            state: deployment.state.as_ref().map(|t| t.get_ref().clone()),
        }
    }

    /// The first section that differs.
    fn changed(&self, other: &Self) -> Option<&'static str> {
        if self.basic != other.basic {
            Some("[authentication.basic]")
        } else if self.oauth2.is_some() && self.oauth2 != other.oauth2 {
            Some("[oauth2]")
        } else if self.user_store != other.user_store {
            Some("[[user_store]]")
        } else if self.role != other.role {
            Some("[[role]]")
        } else if self.state != other.state {
            Some("[state]")
        } else {
            None
        }
    }
}

/// Reloads a [`SecureLayer`](crate::SecureLayer) while it serves, and the
/// [`TokenServer`](crate::oauth2::TokenServer) registered with it. Cheap to clone.
///
/// A reload compiles the new rule file completely (every load error of the builder
/// applies), then swaps it in atomically: a request is decided by the old version or the
/// new one, never a mix. A file that does not load is refused: the error is returned and
/// logged, and the old version keeps serving. A changed `[oauth2]`, `[client_cert]` or
/// `[intermediate_cert_validation]` rebuilds its handler (the others keep their caches).
/// `[authentication.basic]` (its handler keeps the failed-login counts and locks),
/// `[[user_store]]` and `[[role]]` (the stores are built once, by the application),
/// `[state]` (the token server's state backend) and `[oauth2_server]` (the token
/// server's keys and issued tokens) need a restart, as does `[oauth2]` when the
/// builder was given its own `oauth2` handler: a reload that changes them is refused. The
/// token server takes the new
/// `[[scope]]` and `[scope_validation]` tables before the layer takes the new rules, so a
/// scope the layer starts to require is already issued.
///
/// ```
/// use tower_secure::config::Deployment;
/// use tower_secure::SecureLayer;
///
/// let layer = SecureLayer::builder().build()?;
/// let reloader = layer.reloader();
/// let open = Deployment::from_toml_str("deployment.toml", r#"
///     [[resource.access_control]]
///     context = "/health"
///     secure = false
/// "#)?;
/// reloader.reload(open)?;
/// assert_eq!(reloader.version(), 1);
/// let broken = Deployment::from_toml_str("deployment.toml", "[[resource.access_control]]\ncontext = \"/a\"\nsecure = false\npermissions = [\"/p\"]\n")?;
/// assert!(reloader.reload(broken).is_err());
/// assert_eq!(reloader.version(), 1, "the old version keeps serving");
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Reloader {
    pub(crate) shared: Arc<Shared>,
}

impl crate::SecureLayer {
    /// A handle that reloads this layer's rules (and users) while it serves.
    pub fn reloader(&self) -> Reloader {
        // The builder is the only maker of a layer, and it always hands over a `Shared`:
        // the downcast cannot fail.
        let shared =
            Arc::clone(&self.reload).downcast::<Shared>().expect("infallible: every layer is built with a Shared");
        Reloader { shared }
    }
}

impl Reloader {
    /// Replaces the rules with `deployment`'s.
    pub fn reload(&self, deployment: Deployment) -> Result<(), ConfigError> {
        let shared = &self.shared;
        let _one_at_a_time = shared.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        match shared.prepare(&deployment) {
            Ok(prepared) => {
                shared.apply(prepared);
                let version = shared.version.fetch_add(1, Ordering::AcqRel) + 1;
                tracing::info!(target: crate::AUDIT_TARGET, file = %deployment.source.file(), version, "rules reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(target: crate::AUDIT_TARGET, %error, "reload refused: the old rules keep serving");
                Err(error)
            }
        }
    }

    /// Reads and reloads a rule file.
    pub fn reload_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigError> {
        match Deployment::from_file(path) {
            Ok(deployment) => self.reload(deployment),
            Err(error) => {
                tracing::error!(target: crate::AUDIT_TARGET, %error, "reload refused: the old rules keep serving");
                Err(error)
            }
        }
    }

    /// Replaces the users of a layer whose user store is an [`InMemoryUserStore`] (as
    /// [`load_users`](crate::config::load_users) makes), and forgets every cached
    /// verification, so removed users, changed passwords and changed roles apply at once.
    /// The password grant of a registered token server sees them at once too.
    pub fn reload_users(&self, users: InMemoryUserStore) -> Result<(), ConfigError> {
        let _one_at_a_time = self.shared.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let store = self.reloadable_users()?;
        self.replace_users(store, &users);
        Ok(())
    }

    /// Reads a users file and reloads its users (see [`reload_users`](Self::reload_users))
    /// and, when a token server is registered, its `[[client]]` tables (see
    /// [`reload_clients`](Self::reload_clients)). Both load before either applies: a file
    /// with an error changes nothing.
    pub fn reload_users_file(&self, path: impl AsRef<Path>) -> Result<(), ConfigError> {
        let _one_at_a_time = self.shared.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let loaded = crate::config::read_file(path.as_ref()).and_then(|(name, text)| {
            let store = self.reloadable_users()?;
            Ok((store, load_users(&name, &text)?, self.clients_of(&name, &text)?))
        });
        let (store, users, clients) = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::error!(target: crate::AUDIT_TARGET, %error, "users reload refused: the old users stay");
                return Err(error);
            }
        };
        self.replace_users(store, &users);
        self.apply_clients(clients);
        Ok(())
    }

    /// Replaces the clients of the registered token server: a client removed or
    /// disabled gets no token from now on, and the tokens it holds (refresh and access) are
    /// refused at once; changed secrets, roles and grant types apply to the next request.
    /// An error when no token server is registered with the layer.
    #[cfg(feature = "oauth2-server")]
    pub fn reload_clients(&self, clients: Vec<ClientRecord>) -> Result<(), ConfigError> {
        let _one_at_a_time = self.shared.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(server) = &self.shared.parts.token_server else {
            let error = reload_error("<clients>", "no token server is registered with this layer (token_server)");
            tracing::error!(target: crate::AUDIT_TARGET, %error, "clients reload refused");
            return Err(error);
        };
        replace_clients(server, clients);
        Ok(())
    }

    /// The user store a users reload replaces; an error when the layer has none.
    fn reloadable_users(&self) -> Result<&InMemoryUserStore, ConfigError> {
        self.shared.parts.users.as_ref().ok_or_else(|| {
            let message = "this layer's user store is not an InMemoryUserStore: reload it yourself";
            let error = reload_error("<users>", message);
            tracing::error!(target: crate::AUDIT_TARGET, %error, "users reload refused");
            error
        })
    }

    /// The `[[client]]` tables of a users file, when a token server takes them.
    fn clients_of(&self, file: &str, text: &str) -> Result<Option<Vec<ClientRecord>>, ConfigError> {
        #[cfg(feature = "oauth2-server")]
        if self.shared.parts.token_server.is_some() {
            return crate::config::load_clients(file, text).map(Some);
        }
        let _ = (file, text);
        Ok(None)
    }

    /// Gives the token server the clients of a users file, when it takes them.
    fn apply_clients(&self, clients: Option<Vec<ClientRecord>>) {
        #[cfg(feature = "oauth2-server")]
        if let (Some(server), Some(clients)) = (&self.shared.parts.token_server, clients) {
            replace_clients(server, clients);
        }
        #[cfg(not(feature = "oauth2-server"))]
        let _ = clients;
    }

    /// Swaps the users in and forgets every cached verification that depended on them.
    fn replace_users(&self, store: &InMemoryUserStore, users: &InMemoryUserStore) {
        store.replace_with(users);
        #[cfg(feature = "oauth2-server")]
        if let Some(server_users) = self.shared.parts.token_server.as_ref().and_then(|s| s.reloadable_users()) {
            server_users.replace_with(users);
        }
        self.forget_users();
        tracing::info!(target: crate::AUDIT_TARGET, users = users.len(), "users reloaded");
    }

    /// Tells the layer, and the token server registered with it, that users changed in
    /// their store (a SQL table, a directory, your own store) since they were looked up:
    /// every cached verification is forgotten, so the next request of each user reads the
    /// store again. Without this call such a change reaches cached logins and tokens
    /// within `cache_ttl_seconds`.
    ///
    /// ```
    /// let layer = tower_secure::SecureLayer::builder().build()?;
    /// // After `UPDATE ts_user SET disabled = TRUE WHERE name = 'alex'`:
    /// layer.reloader().users_changed();
    /// # Ok::<(), tower_secure::config::ConfigError>(())
    /// ```
    pub fn users_changed(&self) {
        self.forget_users();
        tracing::info!(target: crate::AUDIT_TARGET, "users changed: cached verifications forgotten");
    }

    /// Every handler of the current version, plugins included, and the token server
    /// forget what they cached of the users.
    fn forget_users(&self) {
        #[cfg(feature = "oauth2-server")]
        if let Some(server) = &self.shared.parts.token_server {
            server.clear_user_cache();
        }
        for registered in self.shared.current.load().registry.handlers() {
            let handler = &registered.handler;
            // A plugin that panics here must not stop the others from forgetting theirs.
            let forgot = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler.users_changed()));
            if forgot.is_err() {
                tracing::error!(target: crate::AUDIT_TARGET, handler = handler.name(), "users_changed panicked");
            }
        }
    }

    /// How many reloads of the rules have succeeded.
    pub fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Acquire)
    }

    /// Polls the rule file (and optionally a users file) every `every` and reloads what
    /// changed (modification time or size). Runs until the returned task is aborted; needs
    /// a tokio runtime.
    pub fn watch(
        &self,
        rules: impl Into<PathBuf>,
        users: Option<PathBuf>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let reloader = self.clone();
        let rules = rules.into();
        // The versions being served are the ones on disk now, not when the task first runs:
        // an edit made in between is a change.
        let mut seen_rules = stamp(&rules);
        let mut seen_users = users.as_deref().map(stamp);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
            loop {
                ticks.tick().await;
                let now = stamp(&rules);
                if now != seen_rules {
                    seen_rules = now;
                    let _ = reloader.reload_file(&rules);
                }
                if let Some(path) = users.as_deref() {
                    let now = Some(stamp(path));
                    if now != seen_users {
                        seen_users = now;
                        let _ = reloader.reload_users_file(path);
                    }
                }
            }
        })
    }
}

#[cfg(feature = "oauth2-server")]
fn replace_clients(server: &crate::oauth2::TokenServer, clients: Vec<ClientRecord>) {
    let count = clients.len();
    server.replace_clients(clients);
    tracing::info!(target: crate::AUDIT_TARGET, clients = count, "clients reloaded");
}

/// A reload refused for a reason that has no place in a file.
fn reload_error(file: &str, message: &str) -> ConfigError {
    ConfigError { file: Arc::from(file), line: 0, column: 0, key: None, message: message.to_owned() }
}

/// What identifies a version of a file without reading it.
fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").field("version", &self.version()).finish_non_exhaustive()
    }
}
