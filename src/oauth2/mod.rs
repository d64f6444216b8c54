//! An OAuth2 token endpoint, so the whole token + API flow runs in one
//! process with nothing else installed: `POST /oauth2/token` (grants `password`,
//! `client_credentials`, `refresh_token`), `GET /oauth2/jwks`, `POST /oauth2/introspect`
//! (RFC 7662), `POST /oauth2/revoke` (RFC 7009) and the discovery document.
//!
//! Scopes are granted by a [`ScopeValidator`]; the default, [`RoleBasedScopeValidator`],
//! behaves like WSO2's role-based scope validation: a whitelist, scopes bound to
//! permissions and roles, and `SYSTEM`.
//!
//! A server registered with a layer reloads with it ([`Reloader`](crate::Reloader)): the
//! rule file's `[[scope]]` and `[scope_validation]` tables, and the users file's
//! `[[client]]` tables. A disabled or removed client gets no token from then on, and the
//! tokens it already holds are refused.
//!
//! Merge [`TokenServer::router`] into the app and put the [`SecureLayer`](crate::SecureLayer)
//! around all of it, built with [`token_server`](crate::SecureLayerBuilder::token_server): the
//! layer lets exactly the endpoint paths through (they authenticate their clients
//! themselves) and trusts the server's tokens.
//!
//! ```
//! use axum::routing::get;
//! use axum::Router;
//! use tower_secure::config::{load_clients, load_users, Deployment};
//! use tower_secure::oauth2::TokenServer;
//! use tower_secure::SecureLayer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let deployment = Deployment::from_toml_str("deployment.toml", r#"
//!     [oauth2_server]
//!     issuer = "http://127.0.0.1:3000"
//!     [[oauth2_server.key]]
//!     kid = "k1"
//!     algorithm = "HS256"
//!     secret_base64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
//! "#)?;
//! let users = load_users("users.toml", "")?;
//! let tokens = TokenServer::builder()
//!     .deployment(&deployment)
//!     .user_store(users)
//!     .clients(load_clients("users.toml", "")?)
//!     .build()?;
//! let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build()?;
//! let app: Router = Router::new()
//!     .route("/api/hello", get(|| async { "hello" }))
//!     .merge(tokens.router())
//!     .layer(layer);
//! # Ok(()) }
//! ```

mod authorize;
mod endpoints;
mod error;
mod keys;
mod pages;
mod refresh;
mod scope;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::HeaderMap;
use jsonwebtoken::Header;
use serde_json::{json, Map, Value};

pub use crate::config::GrantType;
pub use endpoints::ENDPOINT_PATHS;
pub use error::{OAuthError, OAuthErrorCode};
pub use scope::{RoleBasedScopeValidator, ScopeRequest, ScopeValidator, SYSTEM_SCOPE};

use crate::authn::{self, BasicAuthenticator, JwtVerifier, LocalIssuer};
use crate::config::{BasicConfig, ClientRecord, ConfigError, Deployment, OAuth2ServerConfig, StateKind, StateSettings};
use crate::error::AuthErrorKind;
use crate::identity::{InMemoryUserStore, Principal, QualifiedName, UserRecord, UserStore};
use crate::state::{FamilyRevocation, MemoryState, Redemption, RefreshRecord, RevokedTokens, StateBackend, StateError};
use keys::SigningKeys;

/// The token server: issues, introspects and revokes tokens. Cheap to clone (shared).
///
/// Built with [`TokenServer::builder`]; see the [module docs](self) for a whole app.
#[derive(Clone)]
pub struct TokenServer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer").field("issuer", &self.inner.issuer).finish_non_exhaustive()
    }
}

struct Inner {
    /// The `[oauth2_server]` table the server was built from: a reload may not change it.
    config: OAuth2ServerConfig,
    issuer: String,
    audience: Option<String>,
    access_seconds: u64,
    refresh_seconds: u64,
    max_form_bytes: usize,
    keys: SigningKeys,
    /// Verifies the access tokens presented to introspection and revocation, the way the
    /// `oauth2` handler verifies them.
    own_tokens: JwtVerifier,
    /// Verifies users' passwords (the password grant) exactly like the `basic` handler.
    users: BasicAuthenticator,
    store: Arc<dyn UserStore>,
    /// The store again when it is an [`InMemoryUserStore`] (reloadable).
    users_in_memory: Option<InMemoryUserStore>,
    store_timeout: Duration,
    /// The clients as users of their own store (see [`client_as_user`]), replaced on reload.
    client_store: InMemoryUserStore,
    /// Verifies client secrets against `client_store`: cache, lockout and throttle as Basic.
    client_secrets: BasicAuthenticator,
    /// What a reload replaces; a request decides with the version it loaded first.
    current: ArcSwap<Issuance>,
    /// The application's own validator; `None` for the configuration's role-based one.
    custom_validator: Option<Arc<dyn ScopeValidator>>,
    /// Refresh grants and revocations, written here first (shared with other instances
    /// when the backend is).
    state: Arc<dyn StateBackend>,
    /// This process's view of the revocations, read by the bearer handler.
    revoked: RevokedTokens,
    /// True when the application chose the backend: failed logins are counted there.
    lockouts_in_backend: bool,
    /// Other `basic` handlers counting their failures in the backend
    /// ([`TokenServer::basic_authenticator_for`]): the sync task hands them locks too.
    lock_listeners: std::sync::Mutex<Vec<authn::WeakBasicAuthenticator>>,
}

/// The server as an issuer: its name, audience, keys (HMAC ones too) and revocations.
fn local_issuer(issuer: &str, audience: Option<&str>, keys: &SigningKeys, revoked: &RevokedTokens) -> LocalIssuer {
    LocalIssuer {
        issuer: issuer.to_owned(),
        audience: audience.map(str::to_owned),
        keys: keys.keys.iter().map(|k| (k.kid.clone(), k.algorithm, k.decoding.clone())).collect(),
        revoked: revoked.clone(),
    }
}

/// The part of the server a reload replaces: the clients, and how scopes are
/// granted.
#[derive(Clone)]
struct Issuance {
    clients: HashMap<String, Arc<ClientRecord>>,
    rules: RuleFileSettings,
}

/// What the token server takes from a rule file, and takes again when it is reloaded:
/// `[[scope]]` and `[scope_validation]`, and the realm of `invalid_client` challenges.
#[derive(Clone)]
pub(crate) struct RuleFileSettings {
    role_based: RoleBasedScopeValidator,
    default_scope: Option<String>,
    realm: String,
}

impl RuleFileSettings {
    fn of(deployment: &Deployment) -> Result<Self, ConfigError> {
        Ok(Self {
            role_based: RoleBasedScopeValidator::from_config(deployment)?,
            default_scope: deployment.scope_validation.default_scope.clone(),
            realm: deployment.authentication.realm.clone(),
        })
    }
}

/// A client that proved its secret, with the configuration version that decides its
/// request: the secret it proved is the one this version holds.
struct Authenticated {
    issuance: Arc<Issuance>,
    client: Arc<ClientRecord>,
}

/// Builds a [`TokenServer`]; see the [module docs](self).
#[derive(Default)]
pub struct TokenServerBuilder {
    deployment: Option<Deployment>,
    store: Option<Arc<dyn UserStore>>,
    users_in_memory: Option<InMemoryUserStore>,
    clients: Vec<ClientRecord>,
    validator: Option<Arc<dyn ScopeValidator>>,
    issuer: Option<String>,
    state: Option<Arc<dyn StateBackend>>,
    sync: Option<SyncSettings>,
}

/// How a replica of a shared backend keeps current.
#[derive(Clone, Copy, Debug)]
struct SyncSettings {
    interval: Duration,
    max_staleness: Duration,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self { interval: Duration::from_millis(100), max_staleness: Duration::from_secs(3) }
    }
}

impl std::fmt::Debug for TokenServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServerBuilder")
            .field("issuer", &self.issuer)
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

impl TokenServerBuilder {
    /// The deployment: `[oauth2_server]` (required), `[scope_validation]`, `[[scope]]` and
    /// `[authentication.basic]` (password cache, lockout and throttle, also for clients).
    pub fn deployment(mut self, deployment: &Deployment) -> Self {
        self.deployment = Some(deployment.clone());
        self
    }

    /// The issuer (`iss` of the tokens it signs, and where its discovery document says
    /// the endpoints are), in place of `[oauth2_server] issuer`: for an address known only
    /// once the listener is bound. A reload keeps it.
    ///
    /// ```
    /// use tower_secure::config::Deployment;
    /// use tower_secure::oauth2::TokenServer;
    ///
    /// let rules = r#"
    /// [oauth2_server]
    /// issuer = "https://placeholder.invalid"
    /// [[oauth2_server.key]]
    /// algorithm = "HS256"
    /// secret_base64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0="
    /// "#;
    /// let deployment = Deployment::from_toml_str("deployment.toml", rules)?;
    /// let server = TokenServer::builder().deployment(&deployment).issuer("http://127.0.0.1:8080/").build()?;
    /// assert_eq!(server.issuer(), "http://127.0.0.1:8080");
    /// # Ok::<(), tower_secure::config::ConfigError>(())
    /// ```
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The users of the password grant.
    pub fn user_store(mut self, store: impl UserStore) -> Self {
        self.users_in_memory = (&store as &dyn std::any::Any).downcast_ref::<InMemoryUserStore>().cloned();
        self.store = Some(Arc::new(store));
        self
    }

    /// The clients (usually [`crate::config::load_clients`]).
    pub fn clients(mut self, clients: impl IntoIterator<Item = ClientRecord>) -> Self {
        self.clients.extend(clients);
        self
    }

    /// Replaces the default [`RoleBasedScopeValidator`].
    pub fn scope_validator(mut self, validator: impl ScopeValidator) -> Self {
        self.validator = Some(Arc::new(validator));
        self
    }

    /// Where refresh grants and revocations are kept, and the failed logins and locks of
    /// the users' `basic` handler ([`TokenServer::basic_authenticator`], the one a layer
    /// built with [`crate::SecureLayerBuilder::token_server`] uses; a layer given a store
    /// of its own counts there too). Default: a
    /// [`MemoryState`] of `max_tracked_tokens` entries for the tokens, and the handler's
    /// own lock table, in this process only. A write the backend refuses is 503 with
    /// `Retry-After`; so is an uncached login while the backend cannot say whether the
    /// account is locked.
    ///
    /// ```
    /// use tower_secure::oauth2::TokenServer;
    /// use tower_secure::state::MemoryState;
    ///
    /// let builder = TokenServer::builder().state(MemoryState::with_capacity(10_000));
    /// # let _ = builder;
    /// ```
    pub fn state(mut self, backend: impl StateBackend) -> Self {
        self.state = Some(Arc::new(backend));
        self
    }

    /// Connects to the state backend the rule file's `[state]` table names, with its
    /// sync settings (nothing changes without the table). The backend must answer now;
    /// an error names the file, the table and what failed, never the URL's password.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_secure::config::Deployment;
    /// use tower_secure::oauth2::TokenServer;
    ///
    /// // deployment.toml:
    /// //   [state]
    /// //   backend = "redis"
    /// //   url_env = "REDIS_URL"
    /// //   key_prefix = "orders-api"
    /// let deployment = Deployment::from_file("deployment.toml")?;
    /// let tokens = TokenServer::builder().deployment(&deployment).state_from(&deployment).await?.build()?;
    /// # let _ = tokens; Ok(()) }
    /// ```
    pub async fn state_from(mut self, deployment: &Deployment) -> Result<Self, ConfigError> {
        let Some(settings) = deployment.state_settings()? else { return Ok(self) };
        self.state = Some(connect_state(&settings).await.map_err(|e| {
            deployment.source.error(settings.span.clone(), "state", format!("cannot use the state backend: {e}"))
        })?);
        if settings.sync_interval.is_some() || settings.max_staleness.is_some() {
            let defaults = SyncSettings::default();
            let interval = settings.sync_interval.unwrap_or(defaults.interval);
            self = self.sync(interval, settings.max_staleness.unwrap_or(defaults.max_staleness));
        }
        Ok(self)
    }

    /// With a shared backend: how often this process polls for the revocations and locks
    /// other instances made (default 100 ms; a backend that announces changes, such as
    /// Redis or PostgreSQL, brings them sooner, and the poll bounds a lost announcement),
    /// and how old its copy
    /// may grow when the backend does not answer before tokens of this server are refused
    /// with 503 (default 3 s). Ignored for a backend of this process alone.
    pub fn sync(mut self, interval: Duration, max_staleness: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(10));
        self.sync = Some(SyncSettings { interval, max_staleness: max_staleness.max(interval) });
        self
    }

    /// Checks the configuration and loads the keys.
    pub fn build(self) -> Result<TokenServer, ConfigError> {
        authn::install_crypto_provider();
        let deployment = self.deployment.unwrap_or_default();
        let keys = SigningKeys::from_config(&deployment)?;
        let source = &deployment.source;
        // `SigningKeys::from_config` refused a deployment without `[oauth2_server]`.
        let Some(server) = deployment.oauth2_server.as_ref().map(|s| s.get_ref()) else {
            return Err(source.error(0..0, "oauth2_server", "the token server needs an [oauth2_server] table"));
        };
        let issuer = self.issuer.as_deref().unwrap_or(server.issuer.get_ref()).trim_end_matches('/').to_owned();
        if issuer.is_empty() {
            return Err(source.error(server.issuer.span(), "issuer", "the issuer must not be empty"));
        }
        let rules = RuleFileSettings::of(&deployment)?;
        let basic = &deployment.authentication.basic;
        let store = self.store.unwrap_or_else(|| Arc::new(InMemoryUserStore::default()));
        let client_store = InMemoryUserStore::new(self.clients.iter().filter_map(client_as_user));
        let client_secrets = BasicAuthenticator::new(client_store.clone(), basic);
        let clients = self.clients.into_iter().map(|c| (c.id.clone(), Arc::new(c))).collect();
        let revoked = match (&self.state, self.sync.unwrap_or_default()) {
            (Some(state), sync) if state.is_shared() => {
                RevokedTokens::replica(server.max_tracked_tokens, sync.max_staleness)
            }
            _ => RevokedTokens::new(server.max_tracked_tokens),
        };
        // A backend chosen for this server keeps the users' failed logins and locks too
        // (durable, and counted across instances); the default keeps them in the handler.
        let users = match &self.state {
            Some(state) => {
                BasicAuthenticator::with_shared_lockout(store.clone(), basic, state.clone(), revoked.clone())
            }
            None => BasicAuthenticator::from_arc(store.clone(), basic),
        };
        let lockouts_in_backend = self.state.is_some();
        let state = self.state.unwrap_or_else(|| Arc::new(MemoryState::with_capacity(server.max_tracked_tokens)));
        let local = local_issuer(&issuer, server.audience.as_deref(), &keys, &revoked);
        let own_tokens = JwtVerifier::local(local, &deployment.oauth2.roles_claim);
        let inner = Inner {
            config: server.clone(),
            issuer,
            audience: server.audience.clone(),
            access_seconds: server.access_token_seconds.max(1),
            refresh_seconds: server.refresh_token_seconds.max(1),
            max_form_bytes: server.max_form_bytes.max(256),
            keys,
            own_tokens,
            users,
            store,
            users_in_memory: self.users_in_memory,
            store_timeout: Duration::from_secs(basic.store_timeout_seconds.max(1)),
            client_store,
            client_secrets,
            current: ArcSwap::from_pointee(Issuance { clients, rules }),
            custom_validator: self.validator,
            revoked,
            lockouts_in_backend,
            lock_listeners: std::sync::Mutex::default(),
            state,
        };
        let inner = Arc::new(inner);
        if inner.state.is_shared() {
            let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
                let message = "a shared state backend needs a tokio runtime: build the token server inside one";
                source.error(0..0, "oauth2_server", message)
            })?;
            let interval = self.sync.unwrap_or_default().interval;
            runtime.spawn(sync_revocations(Arc::downgrade(&inner), interval));
            runtime.spawn(watch_freshness(Arc::downgrade(&inner), interval.min(Duration::from_millis(100))));
        }
        Ok(TokenServer { inner })
    }
}

/// Turns the replica stale once its last sync is older than the bound, checking every
/// `tick` (the sync task may be waiting on a slow backend meanwhile). Ends when the token
/// server is dropped.
async fn watch_freshness(server: std::sync::Weak<Inner>, tick: Duration) {
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = server.upgrade() else { return };
        inner.revoked.check_freshness();
    }
}

/// The backend a checked `[state]` table names, connected.
async fn connect_state(settings: &StateSettings) -> Result<Arc<dyn StateBackend>, StateError> {
    match settings.kind {
        StateKind::Memory => Ok(Arc::new(MemoryState::new())),
        #[cfg(feature = "redis")]
        StateKind::Redis => {
            let mut builder = crate::state::RedisState::builder(settings.url.clone().unwrap_or_default());
            if let Some(prefix) = &settings.key_prefix {
                builder = builder.key_prefix(prefix);
            }
            if let Some(pem) = &settings.ca_pem {
                builder = builder.ca_certificates_pem(pem.clone());
            }
            if let Some(timeout) = settings.timeout {
                builder = builder.timeout(timeout);
            }
            Ok(Arc::new(builder.build().await?))
        }
        #[cfg(feature = "sql")]
        StateKind::Postgres | StateKind::Sqlite => {
            let mut builder = crate::state::SqlState::builder(settings.url.clone().unwrap_or_default());
            if let Some(max) = settings.max_connections {
                builder = builder.max_connections(max);
            }
            if let Some(timeout) = settings.timeout {
                builder = builder.timeout(timeout);
            }
            Ok(Arc::new(builder.build().await?))
        }
        // The file's check refused backends this build lacks; a second line of defence.
        #[allow(unreachable_patterns)]
        _ => Err(StateError("this build has no such backend".to_owned())),
    }
}

/// Keeps this process's replica of a shared backend's revocations current: the changes
/// since the last sync every `interval`, a snapshot when the log no longer reaches back,
/// and, when the backend's epoch changed (it lost its state), every earlier token refused.
/// Ends when the token server is dropped.
async fn sync_revocations(server: std::sync::Weak<Inner>, interval: Duration) {
    let mut position: Option<(String, u64)> = None;
    let mut failing = false;
    let notifier = match server.upgrade() {
        Some(inner) => inner.state.change_notifier(),
        None => return,
    };
    loop {
        let Some(inner) = server.upgrade() else { return };
        let (state, revoked) = (&inner.state, &inner.revoked);
        let now = crate::unix_seconds();
        let changes = match &position {
            Some((epoch, sequence)) => state.changes_since(epoch, *sequence).await,
            None => Ok(None),
        };
        let synced = match changes {
            Ok(Some(changes)) => {
                for (number, change) in &changes {
                    apply_change(&inner, change, now);
                    if let Some((_, sequence)) = &mut position {
                        *sequence = *number;
                    }
                }
                Ok(())
            }
            Ok(None) => state.snapshot(now).await.map(|snapshot| {
                if position.as_ref().is_some_and(|(epoch, _)| *epoch != snapshot.epoch) {
                    tracing::error!(target: crate::AUDIT_TARGET,
                        "the state backend lost its state (new epoch): every token issued so far is refused");
                    revoked.revoke_everyone(now);
                }
                for (jti, exp) in &snapshot.revoked {
                    revoked.revoke(jti, *exp, "", now);
                }
                for (client, before) in &snapshot.client_watermarks {
                    revoked.raise_client_watermark(client, *before);
                }
                if snapshot.global_watermark > 0 {
                    revoked.revoke_everyone(snapshot.global_watermark);
                }
                for (user, until) in &snapshot.locks {
                    inner.apply_lock(user, *until);
                }
                position = Some((snapshot.epoch, snapshot.sequence));
            }),
            Err(e) => Err(e),
        };
        match synced {
            Ok(()) => {
                revoked.mark_synced();
                if std::mem::take(&mut failing) {
                    tracing::info!(target: crate::AUDIT_TARGET, "the state backend answers again");
                }
            }
            Err(e) if !failing => {
                failing = true;
                tracing::error!(target: crate::AUDIT_TARGET, error = %e, "revocations cannot be synced");
            }
            Err(_) => {}
        }
        drop(inner);
        // The next poll, or earlier when the backend announces a change.
        match &notifier {
            Some(notify) => {
                let announced = std::pin::pin!(notify.notified());
                let poll = std::pin::pin!(tokio::time::sleep(interval));
                futures_util::future::select(announced, poll).await;
            }
            None => tokio::time::sleep(interval).await,
        }
    }
}

impl Inner {
    /// A lock another instance set, for every `basic` handler counting in the backend.
    fn apply_lock(&self, user: &str, until: u64) {
        self.users.apply_lock(user, until);
        let mut listeners = self.lock_listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Layers dropped since are forgotten here.
        listeners.retain(|listener| listener.upgrade().inspect(|basic| basic.apply_lock(user, until)).is_some());
    }
}

/// One change of a shared backend, applied to this process's replica: revocations to the
/// revoked set, locks to the users' `basic` handler.
fn apply_change(inner: &Inner, change: &crate::state::Change, now: u64) {
    use crate::state::Change;
    let revoked = &inner.revoked;
    match change {
        Change::Revoked { jti, exp } => revoked.revoke(jti, *exp, "", now),
        Change::IssuedBefore { client: Some(client), before } => revoked.raise_client_watermark(client, *before),
        Change::IssuedBefore { client: None, before } => revoked.revoke_everyone(*before),
        Change::Locked { user, until } => inner.apply_lock(user, *until),
    }
}

/// A state backend that failed: logged, and 503 with `Retry-After` to the caller.
fn unavailable(error: StateError) -> OAuthError {
    tracing::error!(target: crate::AUDIT_TARGET, error = %error, "state backend failed");
    OAuthError::server_error("state backend failure")
}

/// A client as a user of the client-secret store. Client ids are plain (see
/// [`crate::config::load_clients`]), so the parsed name is the id itself. Its one role is
/// its secret's hash: a verification then says which secret it proved, and a request
/// checks that against the version of the clients it decides with (a reload between the
/// two, or a verification cached before it, is seen).
fn client_as_user(client: &ClientRecord) -> Option<UserRecord> {
    // A public client has no secret to verify.
    if client.is_public() {
        return None;
    }
    Some(UserRecord {
        name: QualifiedName::parse(&client.id).ok()?,
        password_hash: Some(client.secret_hash.clone()),
        roles: vec![client.secret_hash.clone()],
        permissions: Default::default(),
        disabled: client.disabled,
    })
}

/// A successful token response (RFC 6749 section 5.1).
struct Issued {
    /// The token's `sub`, for the audit log.
    subject: String,
    access_token: String,
    expires_in: u64,
    scopes: Vec<String>,
    refresh_token: Option<String>,
}

impl Issued {
    /// `scope` is always there, empty when nothing was granted: RFC 6749 section 5.1 reads
    /// an absent `scope` as "what the client asked for".
    fn to_json(&self) -> Value {
        let mut body = json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scopes.join(" "),
        });
        if let Some(refresh) = &self.refresh_token {
            body["refresh_token"] = Value::from(refresh.as_str());
        }
        body
    }
}

impl TokenServer {
    /// Starts a builder.
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder::default()
    }

    /// The `iss` of the tokens it issues.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The `aud` of the tokens it issues, when `[oauth2_server] audience` sets one (else
    /// each token's `aud` is its client id).
    pub fn audience(&self) -> Option<&str> {
        self.inner.audience.as_deref()
    }

    /// The public keys as a JWKS document (what `GET /oauth2/jwks` serves).
    pub fn jwks(&self) -> &Value {
        &self.inner.keys.jwks
    }

    /// Signs `claims` exactly as given with the signing key (header `typ` `at+jwt`, the
    /// key's `kid` and algorithm): a token with chosen claims for development and tests, as
    /// `tower-secure mint-token` makes. Nothing is added or checked, so `iss`, `exp` and
    /// the rest are the caller's to set. The endpoints never call it; such a token is
    /// trusted wherever this server's tokens are, so never sign claims a request chose.
    ///
    /// ```
    /// use serde_json::json;
    /// use tower_secure::config::Deployment;
    /// use tower_secure::oauth2::TokenServer;
    ///
    /// let deployment = Deployment::from_toml_str("deployment.toml", r#"
    ///     [oauth2_server]
    ///     issuer = "http://127.0.0.1:3000"
    ///     [[oauth2_server.key]]
    ///     algorithm = "HS256"
    ///     secret_base64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
    /// "#)?;
    /// let tokens = TokenServer::builder().deployment(&deployment).build()?;
    /// let claims = json!({ "iss": tokens.issuer(), "sub": "alex", "exp": 4_102_444_800u64 });
    /// let token = tokens.sign_claims(claims.as_object().ok_or("not an object")?)?;
    /// assert_eq!(token.split('.').count(), 3);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sign_claims(&self, claims: &Map<String, Value>) -> Result<String, OAuthError> {
        let key = self.inner.keys.signing();
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| OAuthError::server_error(format!("signing failed: {e}")))
    }

    /// Waits until this process's copy of a shared state backend has caught up once, at
    /// most `within`; `true` when it has (at once for a backend of this process alone).
    /// Until then the tokens of this server, and cached logins of its users, are answered
    /// 503: call it before taking traffic.
    ///
    /// ```
    /// # async fn run(tokens: tower_secure::oauth2::TokenServer) {
    /// use std::time::Duration;
    ///
    /// assert!(tokens.ready(Duration::from_secs(5)).await, "the state backend does not answer");
    /// # }
    /// ```
    pub async fn ready(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.inner.revoked.is_stale() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// The `basic` handler that verifies the password grant's users; a
    /// [`SecureLayer`](crate::SecureLayer) built with
    /// [`token_server`](crate::SecureLayerBuilder::token_server) shares it, so both doors
    /// share one cache and one lockout.
    pub fn basic_authenticator(&self) -> BasicAuthenticator {
        self.inner.users.clone()
    }

    /// A `basic` handler over another store (the layer's own), whose failed logins and
    /// locks live in this server's state backend like its users' do, when the application
    /// gave it one; else a handler of its own lockout.
    pub(crate) fn basic_authenticator_for(
        &self,
        store: Arc<dyn UserStore>,
        config: &BasicConfig,
    ) -> BasicAuthenticator {
        let inner = &self.inner;
        if !inner.lockouts_in_backend {
            return BasicAuthenticator::from_arc(store, config);
        }
        let basic = BasicAuthenticator::with_shared_lockout(store, config, inner.state.clone(), inner.revoked.clone());
        let mut listeners = inner.lock_listeners.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        listeners.retain(|listener| listener.upgrade().is_some());
        listeners.push(basic.downgrade());
        basic
    }

    pub(crate) fn user_store(&self) -> Arc<dyn UserStore> {
        self.inner.store.clone()
    }

    pub(crate) fn reloadable_users(&self) -> Option<InMemoryUserStore> {
        self.inner.users_in_memory.clone()
    }

    /// Forgets the cached password verifications of the password grant (after the users
    /// change).
    pub(crate) fn clear_user_cache(&self) {
        self.inner.users.clear_cache();
    }

    /// What a new rule file changes for this server, checked but not applied:
    /// `[oauth2_server]` needs a restart (the keys and endpoints were built from it);
    /// `[[scope]]`, `[scope_validation]` and the realm reload.
    pub(crate) fn prepare_reload(&self, deployment: &Deployment) -> Result<RuleFileSettings, ConfigError> {
        if deployment.oauth2_server.as_ref().map(|s| s.get_ref()) != Some(&self.inner.config) {
            let span = deployment.oauth2_server.as_ref().map_or(0..0, |s| s.span());
            let message = "[oauth2_server] changed: the token server was built from it, restart to apply it";
            return Err(deployment.source.error(span, "oauth2_server", message));
        }
        RuleFileSettings::of(deployment)
    }

    /// Applies what [`prepare_reload`](Self::prepare_reload) checked: token requests from
    /// now on are decided with the new scope definitions.
    pub(crate) fn apply_reload(&self, rules: RuleFileSettings) {
        self.inner.current.rcu(|current| Issuance { clients: current.clients.clone(), rules: rules.clone() });
    }

    /// Replaces the clients. A client removed or disabled gets no token from now
    /// on, and every token it holds, refresh or access, is refused at once.
    pub(crate) fn replace_clients(&self, clients: Vec<ClientRecord>) {
        let inner = &self.inner;
        let clients: HashMap<String, Arc<ClientRecord>> =
            clients.into_iter().map(|c| (c.id.clone(), Arc::new(c))).collect();
        let store = InMemoryUserStore::new(clients.values().filter_map(|c| client_as_user(c)));
        let previous = inner.current.rcu(|current| Issuance { clients: clients.clone(), rules: current.rules.clone() });
        inner.client_store.replace_with(&store);
        inner.client_secrets.clear_cache();
        let now = crate::unix_seconds();
        for (id, old) in &previous.clients {
            let shut_out = clients.get(id).is_none_or(|new| new.disabled);
            if shut_out && !old.disabled {
                // Its refresh tokens were issued before this watermark: the refresh grant
                // refuses them (and only an enabled client can present one).
                inner.revoked.revoke_client(id, now);
                self.forget_client_tokens(id, now);
                tracing::info!(target: crate::AUDIT_TARGET, client = %id, "client removed or disabled: its tokens are refused");
            }
        }
    }

    /// This server as an issuer the bearer handler of the same process trusts: all its
    /// keys (HMAC ones too) and its revocation list.
    pub(crate) fn local_issuer(&self) -> LocalIssuer {
        let inner = &self.inner;
        local_issuer(&inner.issuer, inner.audience.as_deref(), &inner.keys, &inner.revoked)
    }

    /// Authenticates the client of a request (HTTP Basic, RFC 6749 section 2.3.1) against
    /// one version of the clients; it decides the rest of the request.
    async fn client(&self, headers: &HeaderMap) -> Result<Authenticated, OAuthError> {
        let (id, secret) = self.client_credentials(headers)?;
        // Two tries: a reload between loading the clients and verifying the secret means
        // verifying again against the new version.
        for _ in 0..2 {
            let issuance = self.inner.current.load_full();
            let proved = self.inner.client_secrets.verify(&id, &secret).await.map_err(|e| {
                // Only a registered id is logged: an unknown one is attacker text (or a pasted secret).
                let client = issuance.clients.get_key_value(id.as_str()).map_or("(unknown)", |(id, _)| id.as_str());
                tracing::warn!(target: crate::AUDIT_TARGET, client, reason = e.reason(), "client authentication failed");
                OAuthError::from_auth(e, OAuthError::invalid_client).with_realm(&issuance.rules.realm)
            })?;
            match issuance.clients.get(id.as_str()) {
                Some(client) if !client.disabled && proved.has_role(&client.secret_hash) => {
                    let client = Arc::clone(client);
                    return Ok(Authenticated { issuance, client });
                }
                // Proved against another version of the clients: forget that proof.
                _ => self.inner.client_secrets.invalidate(proved.name()),
            }
        }
        Err(OAuthError::server_error("the clients changed during client authentication"))
    }

    /// The client id and secret of the `Authorization` header, form-decoded.
    fn client_credentials(&self, headers: &HeaderMap) -> Result<(String, String), OAuthError> {
        let realm = self.inner.current.load().rules.realm.clone();
        let refused = |reason: &'static str| OAuthError::invalid_client(reason).with_realm(&realm);
        let value = authn::header::single_authorization(headers)
            .map_err(|_| refused("malformed Authorization header"))?
            .ok_or_else(|| refused("no client authentication"))?;
        if !authn::header::has_scheme(value, "Basic") {
            return Err(refused("client authentication is not Basic"));
        }
        let decoded = authn::read_basic_credentials(value, |id, secret| (form_decode(id), form_decode(secret)))
            .map_err(|_| refused("malformed Basic credential"))?;
        match decoded {
            (Some(id), Some(secret)) => Ok((id, secret)),
            _ => Err(refused("client id or secret is not form-urlencoded UTF-8")),
        }
    }

    /// The token endpoint's work once the form is parsed.
    async fn token(&self, headers: &HeaderMap, form: &Form) -> Result<Issued, OAuthError> {
        let caller = match authorize::public_client(self, headers, form) {
            Some(public) => public,
            None => self.client(headers).await?,
        };
        let client = &*caller.client;
        form.check_client_id(&client.id)?;
        // Tokens issued in the second all of a client's tokens were revoked (it was disabled
        // and enabled again, or the revocation list overflowed) would be refused: wait it out.
        if self.inner.revoked.refuses_issued_at(&client.id, crate::unix_seconds()) {
            return Err(OAuthError::server_error("the client's tokens were revoked this second"));
        }
        let grant_type: GrantType = form
            .required("grant_type")?
            .parse()
            .map_err(|_| OAuthError::unsupported_grant_type("unknown grant type"))?;
        if !client.grant_types.contains(&grant_type) {
            return Err(OAuthError::unauthorized_client("grant type not allowed for this client"));
        }
        if grant_type == GrantType::AuthorizationCode && client.redirect_uris.is_empty() {
            return Err(OAuthError::unauthorized_client("the client has no redirect URIs for the code flow"));
        }
        let issued = match grant_type {
            GrantType::AuthorizationCode => self.code_grant(&caller, form).await,
            GrantType::Password => self.password_grant(&caller, form).await,
            GrantType::ClientCredentials => self.client_credentials_grant(&caller, form).await,
            GrantType::RefreshToken => self.refresh_grant(&caller, form).await,
        };
        match &issued {
            Ok(issued) => tracing::info!(target: crate::AUDIT_TARGET, client = %client.id, %grant_type,
                sub = %issued.subject, scope = %issued.scopes.join(" "), "token issued"),
            Err(e) => tracing::warn!(target: crate::AUDIT_TARGET, client = %client.id, %grant_type,
                error = %e.code(), reason = e.reason(), "token refused"),
        }
        issued
    }

    async fn password_grant(&self, caller: &Authenticated, form: &Form) -> Result<Issued, OAuthError> {
        let username = form.required("username")?;
        let password = form.required("password")?;
        let requested = form.scopes()?;
        let user = self
            .inner
            .users
            .verify(username, password)
            .await
            .map_err(|e| OAuthError::from_auth(e, OAuthError::invalid_grant))?;
        let scopes = self.grant_scopes(caller, GrantType::Password, &user, &requested).await?;
        self.issue(&caller.client, user.name(), &user.name().to_string(), scopes, None).await
    }

    async fn client_credentials_grant(&self, caller: &Authenticated, form: &Form) -> Result<Issued, OAuthError> {
        let client = &*caller.client;
        let requested = form.scopes()?;
        let name = QualifiedName::parse(&client.id).map_err(|_| OAuthError::server_error("client id not a name"))?;
        let subject = Principal::builder(name.clone(), "client_credentials")
            .roles(client.roles.iter().cloned())
            .permissions(client.permissions.clone())
            .client_id(&client.id)
            .build();
        let scopes = self.grant_scopes(caller, GrantType::ClientCredentials, &subject, &requested).await?;
        // No refresh token for client credentials (RFC 6749 section 4.4.3).
        let (access_token, _, _) = self.sign_access_token(&client.id, &client.id, &scopes)?;
        let subject = client.id.clone();
        Ok(Issued { subject, access_token, expires_in: self.inner.access_seconds, scopes, refresh_token: None })
    }

    async fn refresh_grant(&self, caller: &Authenticated, form: &Form) -> Result<Issued, OAuthError> {
        let client = &*caller.client;
        let digest = refresh::digest(form.required("refresh_token")?);
        let narrowed = form.scopes()?;
        let state = &self.inner.state;
        // Everything that can fail for other reasons than the token itself (scope, user
        // store, validator) is decided before the token is used up, so the retry a 503
        // asks for still works.
        let peeked = state.peek_refresh(&digest, crate::unix_seconds()).await.map_err(unavailable)?;
        let decided = match peeked {
            Some(grant) if grant.client_id == client.id => Some(self.refreshed_scopes(caller, &grant, narrowed).await?),
            _ => None,
        };
        // The client's "issued before" watermark decides below: a stale copy may miss it.
        if self.inner.revoked.is_stale() {
            return Err(unavailable(StateError("this process's copy of the shared state is stale".to_owned())));
        }
        let grant = match state.redeem_refresh(&digest, &client.id, crate::unix_seconds()).await.map_err(unavailable)? {
            Redemption::Fresh(grant) => grant,
            Redemption::Replayed(access) => {
                self.revoke_access(&access, &client.id).await?;
                tracing::warn!(target: crate::AUDIT_TARGET, client = %client.id,
                    "refresh token replayed: its grant is revoked");
                return Err(OAuthError::invalid_grant("refresh token used twice"));
            }
            _ => return Err(OAuthError::invalid_grant("unknown, expired or foreign refresh token")),
        };
        if self.inner.revoked.refuses_issued_at(&client.id, grant.issued_at) {
            return Err(OAuthError::invalid_grant("the client's tokens were revoked"));
        }
        // A token unusable when peeked never becomes fresh again; fail closed all the same.
        let Some((user, scopes)) = decided else {
            return Err(OAuthError::invalid_grant("refresh token changed while in use"));
        };
        self.issue(client, &user, &user.to_string(), scopes, Some(grant.family)).await
    }

    /// Revokes access tokens (`jti`, `exp`) of `client`: in the backend first (a failure is
    /// 503, and the caller may retry), then in this process's view.
    async fn revoke_access(&self, access: &[(String, u64)], client: &str) -> Result<(), OAuthError> {
        for (jti, exp) in access {
            self.inner.state.revoke(jti, client, *exp).await.map_err(unavailable)?;
            self.inner.revoked.revoke(jti, *exp, client, crate::unix_seconds());
        }
        Ok(())
    }

    /// Tells the backend that every token of a removed or disabled client issued until
    /// `now` is revoked, and forgets its refresh grants there. A reload is not async: this
    /// runs on the runtime when there is one; a failure is logged (this process refuses
    /// the tokens already, and the client cannot authenticate to use them).
    fn forget_client_tokens(&self, client: &str, now: u64) {
        let (state, client) = (Arc::clone(&self.inner.state), client.to_owned());
        let work = async move {
            let done = match state.revoke_issued_before(Some(&client), now).await {
                Ok(()) => state.revoke_client_refresh(&client).await,
                Err(e) => Err(e),
            };
            if let Err(e) = done {
                tracing::error!(target: crate::AUDIT_TARGET, client = %client, error = %e,
                    "the state backend did not take a removed client's revocation");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(work)),
            Err(_) => tracing::warn!(target: crate::AUDIT_TARGET,
                "a client was removed outside a tokio runtime: the state backend was not told"),
        }
    }

    /// The user of a refresh grant, looked up again (a disabled user or a lost role ends
    /// what it granted), and the scopes the new tokens get.
    async fn refreshed_scopes(
        &self,
        caller: &Authenticated,
        grant: &RefreshRecord,
        narrowed: Vec<String>,
    ) -> Result<(QualifiedName, Vec<String>), OAuthError> {
        let inner = &self.inner;
        if narrowed.iter().any(|s| !grant.scopes.contains(s)) {
            return Err(OAuthError::invalid_scope("refresh asks for a scope outside the grant"));
        }
        let user = QualifiedName::parse(&grant.user)
            .map_err(|_| OAuthError::invalid_grant("the refresh grant names no valid user"))?;
        let record = authn::find_user(&*inner.store, &user, inner.store_timeout)
            .await
            .map_err(|e| OAuthError::from_auth(e, OAuthError::invalid_grant))?;
        let record = match record {
            Some(record) if !record.disabled => record,
            _ => return Err(OAuthError::invalid_grant("the user is gone or disabled")),
        };
        let user = Principal::builder(record.name, crate::policy::OAUTH2_HANDLER)
            .roles(record.roles)
            .permissions(record.permissions)
            .build();
        let requested = if narrowed.is_empty() { grant.scopes.clone() } else { narrowed };
        let scopes = self.grant_scopes(caller, GrantType::RefreshToken, &user, &requested).await?;
        Ok((user.name().clone(), scopes))
    }

    /// Asks the validator of the request's configuration version, then applies its default
    /// scope.
    async fn grant_scopes(
        &self,
        caller: &Authenticated,
        grant_type: GrantType,
        subject: &Principal,
        requested: &[String],
    ) -> Result<Vec<String>, OAuthError> {
        let rules = &caller.issuance.rules;
        let configured = &rules.role_based;
        let request = ScopeRequest { grant_type, client_id: &caller.client.id, subject, requested, configured };
        let mut granted = match &self.inner.custom_validator {
            Some(validator) => validator.validate(&request).await?,
            None => configured.validate(&request).await?,
        };
        if let Some(allowed) = &caller.client.allowed_scopes {
            granted.retain(|scope| allowed.contains(scope));
        }
        if granted.is_empty() {
            granted.extend(rules.default_scope.iter().cloned());
        }
        Ok(granted)
    }

    /// An access token and, for a user, a refresh token of `family` (a new one if `None`),
    /// its grant stored in the state backend first.
    async fn issue(
        &self,
        client: &ClientRecord,
        user: &QualifiedName,
        subject: &str,
        scopes: Vec<String>,
        family: Option<u64>,
    ) -> Result<Issued, OAuthError> {
        let inner = &self.inner;
        let (access_token, jti, exp) = self.sign_access_token(subject, &client.id, &scopes)?;
        let mut refresh_token = None;
        if client.grant_types.contains(&GrantType::RefreshToken) {
            let family = match family {
                Some(family) => family,
                None => inner.state.new_family().await.map_err(unavailable)?,
            };
            let token = refresh::random_token().ok_or_else(|| OAuthError::server_error("no randomness"))?;
            let issued_at = crate::unix_seconds();
            let record = RefreshRecord {
                client_id: client.id.clone(),
                user: user.to_string(),
                scopes: scopes.clone(),
                issued_at,
                expires: issued_at.saturating_add(inner.refresh_seconds),
                family,
                access_jti: jti,
                access_exp: exp,
            };
            inner.state.put_refresh(&refresh::digest(&token), &record).await.map_err(unavailable)?;
            refresh_token = Some(token);
        }
        let subject = subject.to_owned();
        Ok(Issued { subject, access_token, expires_in: inner.access_seconds, scopes, refresh_token })
    }

    /// A signed JWT access token (RFC 9068 shape) and its `jti` and `exp`.
    fn sign_access_token(
        &self,
        subject: &str,
        client_id: &str,
        scopes: &[String],
    ) -> Result<(String, String, u64), OAuthError> {
        let inner = &self.inner;
        let jti = refresh::random_token().ok_or_else(|| OAuthError::server_error("no randomness"))?;
        let iat = crate::unix_seconds();
        let exp = iat.saturating_add(inner.access_seconds);
        let mut claims = Map::new();
        claims.insert("iss".into(), inner.issuer.as_str().into());
        claims.insert("sub".into(), subject.into());
        claims.insert("aud".into(), inner.audience.as_deref().unwrap_or(client_id).into());
        claims.insert("exp".into(), exp.into());
        claims.insert("iat".into(), iat.into());
        claims.insert("jti".into(), jti.as_str().into());
        claims.insert("client_id".into(), client_id.into());
        if !scopes.is_empty() {
            claims.insert("scope".into(), scopes.join(" ").into());
        }
        Ok((self.sign_claims(&claims)?, jti, exp))
    }

    /// The claims of a valid, unrevoked access token this server issued (verified as the
    /// `oauth2` handler verifies it); `None` for anything else, 503 while the revocations
    /// are stale (whether the token is revoked cannot be told).
    async fn access_claims(&self, token: &str) -> Result<Option<Map<String, Value>>, OAuthError> {
        match self.inner.own_tokens.claims(token).await {
            Ok(claims) => Ok(claims.get("sub").is_some_and(Value::is_string).then_some(claims)),
            Err(e) if e.kind() == AuthErrorKind::Unavailable => Err(unavailable(StateError(e.reason().to_owned()))),
            Err(_) => Ok(None),
        }
    }

    /// RFC 7662: what the server knows of a token, for any authenticated client.
    async fn introspect(&self, token: &str) -> Result<Value, OAuthError> {
        // Whether a token is active depends on revocations: a stale copy cannot say.
        if self.inner.revoked.is_stale() {
            return Err(unavailable(StateError("this process's copy of the shared state is stale".to_owned())));
        }
        if let Some(mut claims) = self.access_claims(token).await? {
            let sub = claims.get("sub").cloned();
            let client_token = sub.is_some() && sub == claims.get("client_id").cloned();
            if let (Some(sub), false) = (sub, client_token) {
                claims.insert("username".into(), sub);
            }
            claims.insert("active".into(), true.into());
            claims.insert("token_type".into(), "Bearer".into());
            return Ok(Value::Object(claims));
        }
        let peeked = self.inner.state.peek_refresh(&refresh::digest(token), crate::unix_seconds()).await;
        let grant =
            peeked.map_err(unavailable)?.filter(|g| !self.inner.revoked.refuses_issued_at(&g.client_id, g.issued_at));
        Ok(match grant {
            Some(grant) => json!({
                "active": true,
                "token_type": "refresh_token",
                "client_id": grant.client_id,
                "username": grant.user,
                "sub": grant.user,
                "scope": grant.scopes.join(" "),
                "exp": grant.expires,
                "iss": self.inner.issuer,
            }),
            None => json!({ "active": false }),
        })
    }

    /// RFC 7009: revokes a token of the calling client; unknown tokens are no error. A
    /// backend that fails is 503 with `Retry-After` (RFC 7009 section 2.2.1).
    async fn revoke(&self, client: &ClientRecord, token: &str) -> Result<(), OAuthError> {
        let now = crate::unix_seconds();
        let foreign = || OAuthError::invalid_grant("token issued to another client");
        let family = self.inner.state.revoke_refresh_family(&refresh::digest(token), &client.id).await;
        match family.map_err(unavailable)? {
            FamilyRevocation::Revoked(access) => {
                self.revoke_access(&access, &client.id).await?;
                tracing::info!(target: crate::AUDIT_TARGET, client = %client.id, "refresh token revoked");
                return Ok(());
            }
            FamilyRevocation::OtherClient => return Err(foreign()),
            _ => {}
        }
        if let Some(claims) = self.access_claims(token).await? {
            if claims.get("client_id").and_then(Value::as_str) != Some(client.id.as_str()) {
                return Err(foreign());
            }
            let jti = claims.get("jti").and_then(Value::as_str).unwrap_or_default().to_owned();
            let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
            self.revoke_access(&[(jti, exp)], &client.id).await?;
            tracing::info!(target: crate::AUDIT_TARGET, client = %client.id, "access token revoked");
        }
        Ok(())
    }

    /// The discovery document (RFC 8414 fields; also served as OpenID configuration).
    fn metadata(&self) -> Value {
        let base = &self.inner.issuer;
        json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth2/authorize"),
            "token_endpoint": format!("{base}/oauth2/token"),
            "jwks_uri": format!("{base}/oauth2/jwks"),
            "introspection_endpoint": format!("{base}/oauth2/introspect"),
            "revocation_endpoint": format!("{base}/oauth2/revoke"),
            "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
            "code_challenge_methods_supported": ["S256"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic"],
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": [],
            "subject_types_supported": ["public"],
        })
    }
}

/// One form-urlencoded value (RFC 6749 appendix B): `+` is a space, then percent-decoding.
fn form_decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced).decode_utf8().ok().map(|s| s.into_owned())
}

/// A parsed request body: each parameter at most once (RFC 6749 section 3.2).
struct Form(HashMap<String, String>);

impl Form {
    fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if params.insert(name.into_owned(), value.into_owned()).is_some() {
                return Err(OAuthError::invalid_request("a parameter is repeated"));
            }
        }
        Ok(Self(params))
    }

    fn required(&self, name: &'static str) -> Result<&str, OAuthError> {
        match self.0.get(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(OAuthError::invalid_request(format!("{name} is missing"))),
        }
    }

    /// Client credentials belong in the `Authorization` header; a `client_id` in the body
    /// must name the same client, and a `client_secret` there is a second method.
    fn check_client_id(&self, authenticated: &str) -> Result<(), OAuthError> {
        if self.0.contains_key("client_secret") {
            return Err(OAuthError::invalid_request("client_secret in the body as well as Basic"));
        }
        match self.0.get("client_id") {
            Some(id) if id != authenticated => Err(OAuthError::invalid_request("client_id differs from Basic")),
            _ => Ok(()),
        }
    }

    /// `scope`: space-delimited scope tokens (RFC 6749 section 3.3), in order, without
    /// duplicates. Malformed is `invalid_request`.
    fn scopes(&self) -> Result<Vec<String>, OAuthError> {
        let Some(text) = self.0.get("scope").filter(|s| !s.is_empty()) else { return Ok(Vec::new()) };
        let mut scopes: Vec<String> = Vec::new();
        for token in text.split(' ') {
            let valid = !token.is_empty()
                && token.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
            if !valid {
                return Err(OAuthError::invalid_request("scope is not space-delimited scope tokens"));
            }
            if !scopes.iter().any(|s| s == token) {
                scopes.push(token.to_owned());
            }
        }
        Ok(scopes)
    }
}
