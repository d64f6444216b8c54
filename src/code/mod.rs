//! Code first: the rules, scopes, identity providers and token-server settings of a rule
//! file, and the roles, users and clients of a users file, built in Rust instead of TOML.
//!
//! The builders fill the same model the files fill, so the same code validates both and
//! the result behaves identically. Each `build()` checks what it can on its own (rule
//! patterns, methods, permissions, scopes and their bindings; names, hashes and roles of
//! users); an error names the item instead of a file position: `<code>:N` is the N-th item
//! of that builder, counted as `build()` lists them (rules, scopes, the scope whitelist,
//! issuers, the client certificate settings, the token server and its keys, each kind in
//! the order added; roles, users and clients in the order added).
//!
//! ```
//! use tower_secure::code::{AccessRule, Users};
//! use tower_secure::config::Deployment;
//! use tower_secure::SecureLayer;
//!
//! let hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk";
//! let deployment = Deployment::builder()
//!     .realm("notes")
//!     .rule(AccessRule::new("/health").method("GET").open())
//!     .rule(AccessRule::new("/notes/**").method("DELETE").permission("/permission/admin/notes/delete"))
//!     .build()?;
//! let users = Users::builder()
//!     .role("notes_admin", ["/permission/admin/notes"])
//!     .user("alex", hash, ["notes_admin"])
//!     .build()?;
//! let layer = SecureLayer::builder().deployment(deployment).user_store(users.store).build()?;
//! assert_eq!(layer.policy().rules().len(), 2);
//! # Ok::<(), tower_secure::config::ConfigError>(())
//! ```

mod handlers;

use std::ops::Range;

use toml::Spanned;

use crate::config::{
    clients_from, default_max_form_bytes, default_max_tracked_tokens, users_from, BasicConfig, ClientEntry,
    ClientRecord, ConfigError, Deployment, GrantType, IssuerConfig, KeyConfig, MatchMode, OAuth2ServerConfig,
    OneOrMany, RoleEntry, RuleConfig, ScopeConfig, SigningKeyConfig, SourceMap, SubjectFormat, TokenPermissions,
    UserEntry, UsersFile,
};
use crate::identity::InMemoryUserStore;
use crate::policy::{Policy, BUILT_IN_HANDLERS};

pub use handlers::{BearerAuthenticatorBuilder, ClientCert};

/// The text errors point into: one line per item, in the order the items were added.
#[derive(Default)]
struct Listing(String);

impl Listing {
    /// Adds the item's line; its span is where errors about the item point.
    fn item(&mut self, description: &str) -> Range<usize> {
        let start = self.0.len();
        self.0.push_str(&description.replace('\n', " "));
        self.0.push('\n');
        start..start + 1
    }

    fn source(&self) -> SourceMap {
        SourceMap::new("<code>", &self.0)
    }
}

fn spanned<T>(span: &Range<usize>, value: T) -> Spanned<T> {
    Spanned::new(span.clone(), value)
}

fn strings(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

/// One access rule, as a `[[resource.access_control]]` table says it: a path pattern, the
/// methods it covers, and who may call it.
///
/// ```
/// use tower_secure::code::AccessRule;
/// use tower_secure::config::TokenPermissions;
///
/// let rule = AccessRule::new("/api/users/{id}")
///     .method(http::Method::PUT)
///     .scope("users_write")
///     .permission("/permission/admin/manage/users")
///     .token_permissions(TokenPermissions::Check);
/// # let _ = rule;
/// ```
#[derive(Debug, Clone)]
pub struct AccessRule {
    context: String,
    methods: Vec<String>,
    extension_methods: Vec<String>,
    open: bool,
    scopes: Vec<String>,
    scopes_match: MatchMode,
    permissions: Vec<String>,
    permissions_match: MatchMode,
    handlers: Option<Vec<String>>,
    override_compiled: bool,
    token_permissions: Option<TokenPermissions>,
}

impl AccessRule {
    /// A rule for the paths `context` matches (`/api/users/{id}`, `/api/admin/**`,
    /// `regex:...`), every method, needing an authenticated caller.
    pub fn new(context: impl Into<String>) -> Self {
        Self {
            context: context.into(),
            methods: Vec::new(),
            extension_methods: Vec::new(),
            open: false,
            scopes: Vec::new(),
            scopes_match: MatchMode::All,
            permissions: Vec::new(),
            permissions_match: MatchMode::All,
            handlers: None,
            override_compiled: false,
            token_permissions: None,
        }
    }

    /// Limits the rule to this method (call again for more): an `http::Method` or its name.
    pub fn method(mut self, method: impl AsRef<str>) -> Self {
        self.methods.push(method.as_ref().to_owned());
        self
    }

    /// Declares an extension method (`PROPFIND`) that [`method`](Self::method) names.
    pub fn extension_method(mut self, method: impl Into<String>) -> Self {
        self.extension_methods.push(method.into());
        self
    }

    /// Opens the paths to anonymous callers (credentials sent anyway are still checked).
    pub fn open(mut self) -> Self {
        self.open = true;
        self
    }

    /// A scope the caller's token must carry (call again for more; all are needed).
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Any one of the scopes is enough.
    pub fn any_scope(mut self) -> Self {
        self.scopes_match = MatchMode::Any;
        self
    }

    /// A permission the caller must hold (call again for more; all are needed).
    pub fn permission(mut self, permission: impl Into<String>) -> Self {
        self.permissions.push(permission.into());
        self
    }

    /// Any one of the permissions is enough.
    pub fn any_permission(mut self) -> Self {
        self.permissions_match = MatchMode::Any;
        self
    }

    /// Only these handlers (`basic`, `oauth2`, `client_cert`, or a plugin's name) may
    /// authenticate callers of these paths.
    pub fn handlers(mut self, names: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.handlers = Some(strings(names));
        self
    }

    /// This rule replaces the `#[secure]` rule of the handler it reaches instead of adding
    /// to it.
    pub fn overrides_handler_rules(mut self) -> Self {
        self.override_compiled = true;
        self
    }

    /// What a token caller is judged by when the rule names scopes.
    pub fn token_permissions(mut self, mode: TokenPermissions) -> Self {
        self.token_permissions = Some(mode);
        self
    }

    fn describe(&self) -> String {
        let methods = if self.methods.is_empty() { "all".to_owned() } else { self.methods.join(",") };
        format!("rule {methods} {}", self.context)
    }

    fn into_config(self, span: &Range<usize>) -> RuleConfig {
        let list = |items: Vec<String>| (!items.is_empty()).then(|| spanned(span, OneOrMany(items)));
        RuleConfig {
            context: spanned(span, self.context),
            secure: self.open.then(|| spanned(span, false)),
            http_method: list(self.methods),
            extension_methods: list(self.extension_methods),
            permissions: list(self.permissions),
            scope: list(self.scopes),
            allowed_auth_handlers: self.handlers.map(|names| spanned(span, OneOrMany(names))),
            override_compiled: self.override_compiled,
            permissions_match: self.permissions_match,
            scopes_match: self.scopes_match,
            token_permissions: self.token_permissions.map(|mode| spanned(span, mode)),
            cross_tenant: None,
        }
    }
}

/// A scope and the permissions it is bound to, as a `[[scope]]` table says it: the token
/// endpoint grants it to users holding them, and a rule naming it judges Basic callers by
/// them.
///
/// ```
/// use tower_secure::code::ScopeBinding;
///
/// let scope = ScopeBinding::new("notes_read").permission("/permission/admin/notes/view");
/// # let _ = scope;
/// ```
#[derive(Debug, Clone)]
pub struct ScopeBinding {
    name: String,
    permissions: Vec<String>,
    roles: Vec<String>,
}

impl ScopeBinding {
    /// A scope bound to nothing yet (granted to anyone who asks, unless bound).
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), permissions: Vec::new(), roles: Vec::new() }
    }

    /// A permission the scope needs (all are needed).
    pub fn permission(mut self, permission: impl Into<String>) -> Self {
        self.permissions.push(permission.into());
        self
    }

    /// A role that may receive the scope (any one is enough).
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }
}

/// A signing key of the token server.
///
/// ```
/// use tower_secure::code::SigningKey;
///
/// let key = SigningKey::hs256_base64("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=").kid("2026-12");
/// # let _ = key;
/// ```
#[derive(Clone)]
pub struct SigningKey {
    kid: Option<String>,
    algorithm: String,
    pem: Option<String>,
    secret_base64: Option<String>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).field("algorithm", &self.algorithm).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A PKCS#8 PEM private key for `algorithm`: `RS256` (at least 2048 bits), `ES256`
    /// or `EdDSA`. Its public key is published at `/oauth2/jwks`.
    pub fn pem(algorithm: impl Into<String>, pem: impl Into<String>) -> Self {
        Self { kid: None, algorithm: algorithm.into(), pem: Some(pem.into()), secret_base64: None }
    }

    /// An HS256 secret (standard base64, at least 32 bytes); never published, so only a
    /// layer in the same process verifies its tokens.
    pub fn hs256_base64(secret: impl Into<String>) -> Self {
        Self { kid: None, algorithm: "HS256".to_owned(), pem: None, secret_base64: Some(secret.into()) }
    }

    /// The `kid`; default the key's RFC 7638 thumbprint.
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    fn into_config(self, span: &Range<usize>) -> SigningKeyConfig {
        SigningKeyConfig {
            kid: self.kid.map(|kid| spanned(span, kid)),
            algorithm: spanned(span, self.algorithm),
            pem: self.pem.map(|pem| spanned(span, pem)),
            pem_file: None,
            secret_base64: self.secret_base64.map(|secret| spanned(span, secret)),
        }
    }
}

/// The built-in token server's settings, as `[oauth2_server]` says them.
///
/// ```
/// use tower_secure::code::{SigningKey, TokenServerSettings};
///
/// let settings = TokenServerSettings::new("https://api.example.com")
///     .access_token_seconds(900)
///     .signing_key(SigningKey::hs256_base64("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0="));
/// # let _ = settings;
/// ```
#[derive(Debug, Clone)]
pub struct TokenServerSettings {
    issuer: String,
    audience: Option<String>,
    access_token_seconds: u64,
    refresh_token_seconds: u64,
    keys: Vec<SigningKey>,
}

impl TokenServerSettings {
    /// A token server with this issuer (`iss`), tokens of one hour and refresh tokens of
    /// one day, and no key yet.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: None,
            access_token_seconds: 3600,
            refresh_token_seconds: 86_400,
            keys: Vec::new(),
        }
    }

    /// The `aud` of every token; default the client id.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Lifetime of access tokens.
    pub fn access_token_seconds(mut self, seconds: u64) -> Self {
        self.access_token_seconds = seconds;
        self
    }

    /// Lifetime of refresh tokens.
    pub fn refresh_token_seconds(mut self, seconds: u64) -> Self {
        self.refresh_token_seconds = seconds;
        self
    }

    /// A signing key; the first one added signs, all are published.
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.keys.push(key);
        self
    }
}

/// An identity provider whose tokens the `oauth2` handler accepts, as an
/// `[[oauth2.issuer]]` table says it: where its keys come from, the audience its tokens
/// must carry, and how its claims name the caller.
///
/// ```
/// use tower_secure::code::Issuer;
/// use tower_secure::config::SubjectFormat;
///
/// let entra = Issuer::discovery("https://login.microsoftonline.com/TENANT/v2.0")
///     .audience("api://my-api")
///     .algorithms(["RS256"])
///     .subject_claim("oid");
/// let ours = Issuer::new("https://tokens.example.com")
///     .hs256_base64("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=")
///     .subject_format(SubjectFormat::Qualified);
/// # let _ = (entra, ours);
/// ```
#[derive(Debug, Clone)]
pub struct Issuer {
    issuer: String,
    audience: Option<String>,
    jwks_uri: Option<String>,
    discovery: bool,
    keys: Vec<(Option<String>, String, KeyMaterial)>,
    algorithms: Option<Vec<String>>,
    subject_format: SubjectFormat,
    claims: [Option<String>; 4],
}

#[derive(Clone)]
enum KeyMaterial {
    Pem(String),
    Jwk(String),
    Secret(String),
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyMaterial::Pem(_) => "Pem",
            KeyMaterial::Jwk(_) => "Jwk",
            KeyMaterial::Secret(_) => "Secret",
        })
    }
}

impl Issuer {
    /// An issuer (its tokens' exact `iss`) with no key yet: add keys, a JWKS URL or
    /// discovery.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: None,
            jwks_uri: None,
            discovery: false,
            keys: Vec::new(),
            algorithms: None,
            subject_format: SubjectFormat::Opaque,
            claims: Default::default(),
        }
    }

    /// An issuer whose keys are found through OpenID discovery
    /// (`{issuer}/.well-known/openid-configuration`), fetched at start and refreshed.
    pub fn discovery(issuer: impl Into<String>) -> Self {
        Self { discovery: true, ..Self::new(issuer) }
    }

    /// An issuer whose keys are published at this JWKS URL.
    pub fn jwks_uri(issuer: impl Into<String>, uri: impl Into<String>) -> Self {
        Self { jwks_uri: Some(uri.into()), ..Self::new(issuer) }
    }

    /// The `aud` its tokens must be or contain.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// A public key (SPKI PEM) for `algorithm` (`RS256`, `PS256`, `ES256`, `EdDSA`, ...).
    pub fn public_key_pem(mut self, algorithm: impl Into<String>, pem: impl Into<String>) -> Self {
        self.keys.push((None, algorithm.into(), KeyMaterial::Pem(pem.into())));
        self
    }

    /// A public key as a JWK (JSON text) for `algorithm`.
    pub fn jwk(mut self, algorithm: impl Into<String>, jwk: impl Into<String>) -> Self {
        self.keys.push((None, algorithm.into(), KeyMaterial::Jwk(jwk.into())));
        self
    }

    /// An HS256 secret (standard base64, at least 32 bytes) shared with the issuer.
    pub fn hs256_base64(mut self, secret: impl Into<String>) -> Self {
        self.keys.push((None, "HS256".to_owned(), KeyMaterial::Secret(secret.into())));
        self
    }

    /// The `kid` of the key added last (needed when the issuer has several).
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        if let Some(key) = self.keys.last_mut() {
            key.0 = Some(kid.into());
        }
        self
    }

    /// The JWS algorithms its tokens may use.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.algorithms = Some(strings(algorithms));
        self
    }

    /// How `sub` names the caller: opaque (default for other issuers) or qualified
    /// (`SECONDARY/alex@tenant`, for issuers whose users are this crate's users).
    pub fn subject_format(mut self, format: SubjectFormat) -> Self {
        self.subject_format = format;
        self
    }

    /// The claim naming the caller (default `sub`).
    pub fn subject_claim(mut self, claim: impl Into<String>) -> Self {
        self.claims[0] = Some(claim.into());
        self
    }

    /// A claim holding the caller's tenant (opaque subjects only).
    pub fn tenant_claim(mut self, claim: impl Into<String>) -> Self {
        self.claims[1] = Some(claim.into());
        self
    }

    /// The roles claim, a name or a dot-separated path (`realm_access.roles`).
    pub fn roles_claim(mut self, claim: impl Into<String>) -> Self {
        self.claims[2] = Some(claim.into());
        self
    }

    /// The one claim scopes are read from (default `scope` or `scp`).
    pub fn scope_claim(mut self, claim: impl Into<String>) -> Self {
        self.claims[3] = Some(claim.into());
        self
    }

    fn into_config(self, span: &Range<usize>) -> IssuerConfig {
        let key = self.keys.into_iter().map(|(kid, algorithm, material)| {
            let (mut pem, mut jwk, mut secret) = (None, None, None);
            match material {
                KeyMaterial::Pem(text) => pem = Some(spanned(span, text)),
                KeyMaterial::Jwk(text) => jwk = Some(spanned(span, text)),
                KeyMaterial::Secret(text) => secret = Some(spanned(span, text)),
            }
            let config =
                KeyConfig { kid, algorithm: spanned(span, algorithm), pem, pem_file: None, jwk, secret_base64: secret };
            spanned(span, config)
        });
        let [subject_claim, tenant_claim, roles_claim, scope_claim] = self.claims.map(|c| c.map(|c| spanned(span, c)));
        IssuerConfig {
            issuer: spanned(span, self.issuer),
            audience: self.audience,
            jwks_file: None,
            jwks_uri: self.jwks_uri.map(|uri| spanned(span, uri)),
            discovery: self.discovery,
            key: key.collect(),
            introspect: false,
            algorithms: self.algorithms.map(|list| spanned(span, list)),
            subject_format: self.subject_format,
            subject_claim,
            tenant_claim,
            roles_claim,
            scope_claim,
        }
    }
}

/// Builds a [`Deployment`] in code; start with [`Deployment::builder`].
#[derive(Debug, Default)]
pub struct DeploymentBuilder {
    realm: Option<String>,
    basic: Option<BasicConfig>,
    rules: Vec<AccessRule>,
    scopes: Vec<ScopeBinding>,
    whitelist: Option<Vec<String>>,
    token_server: Option<TokenServerSettings>,
    issuers: Vec<Issuer>,
    client_cert: Option<ClientCert>,
}

impl Deployment {
    /// Builds the rules and settings of a rule file in code; see the [`code`](crate::code)
    /// module.
    pub fn builder() -> DeploymentBuilder {
        DeploymentBuilder::default()
    }
}

impl DeploymentBuilder {
    /// The realm of `WWW-Authenticate` challenges. Default `tower-secure`.
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// The Basic handler's cache, lockout and throttle settings.
    pub fn basic(mut self, settings: BasicConfig) -> Self {
        self.basic = Some(settings);
        self
    }

    /// An access rule. The most specific rule for a request's path and method decides;
    /// paths no rule covers need an authenticated caller.
    pub fn rule(mut self, rule: AccessRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// A scope and what it is bound to.
    pub fn scope(mut self, scope: ScopeBinding) -> Self {
        self.scopes.push(scope);
        self
    }

    /// Scopes the token endpoint grants without role or permission checks (regexes on
    /// the whole name). Default `openid` and `^device_.*`.
    pub fn scope_whitelist(mut self, patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.whitelist = Some(strings(patterns));
        self
    }

    /// An identity provider whose bearer tokens the layer accepts (the `oauth2` handler).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Turns on the `client_cert` handler (certificates of the crate's TLS server, or
    /// forwarded by a proxy), with these settings.
    pub fn client_cert(mut self, settings: ClientCert) -> Self {
        self.client_cert = Some(settings);
        self
    }

    /// The built-in token server's settings; its tokens are then trusted by the layer.
    pub fn token_server(mut self, settings: TokenServerSettings) -> Self {
        self.token_server = Some(settings);
        self
    }

    /// Checks the rules and scopes as a rule file's are checked and returns the
    /// deployment. Handler names, issuer keys and the token server's keys are checked when
    /// the layer and the token server are built (the layer knows the plugins, and an
    /// issuer's keys may have to be fetched).
    pub fn build(self) -> Result<Deployment, ConfigError> {
        let mut listing = Listing::default();
        let mut deployment = Deployment::default();
        if let Some(realm) = self.realm {
            deployment.authentication.realm = realm;
        }
        if let Some(basic) = self.basic {
            deployment.authentication.basic = basic;
        }
        let mut handlers: Vec<String> = BUILT_IN_HANDLERS.iter().map(|&h| h.to_owned()).collect();
        for rule in self.rules {
            handlers.extend(rule.handlers.iter().flatten().cloned());
            let span = listing.item(&rule.describe());
            deployment.resource.access_control.push(spanned(&span, rule.into_config(&span)));
        }
        for scope in self.scopes {
            let span = listing.item(&format!("scope {}", scope.name));
            let permissions = scope.permissions.into_iter().map(|p| spanned(&span, p)).collect();
            let config = ScopeConfig { name: spanned(&span, scope.name), permissions, roles: scope.roles };
            deployment.scopes.push(spanned(&span, config));
        }
        if let Some(patterns) = self.whitelist {
            let span = listing.item("scope whitelist");
            deployment.scope_validation.whitelist = patterns.into_iter().map(|p| spanned(&span, p)).collect();
        }
        for issuer in self.issuers {
            let span = listing.item(&format!("issuer {}", issuer.issuer));
            deployment.oauth2.issuer.push(spanned(&span, issuer.into_config(&span)));
        }
        if let Some(client_cert) = self.client_cert {
            client_cert.fill(&mut deployment, &mut listing);
        }
        if let Some(server) = self.token_server {
            let span = listing.item(&format!("token server {}", server.issuer));
            let key = server.keys.into_iter().map(|key| {
                let span = listing.item(&format!("signing key {}", key.kid.as_deref().unwrap_or(&key.algorithm)));
                spanned(&span, key.into_config(&span))
            });
            let config = OAuth2ServerConfig {
                issuer: spanned(&span, server.issuer),
                audience: server.audience,
                access_token_seconds: server.access_token_seconds,
                refresh_token_seconds: server.refresh_token_seconds,
                key: key.collect(),
                max_form_bytes: default_max_form_bytes(),
                max_tracked_tokens: default_max_tracked_tokens(),
            };
            deployment.oauth2_server = Some(spanned(&span, config));
        }
        deployment.source = listing.source();
        let names: Vec<&str> = handlers.iter().map(String::as_str).collect();
        Policy::compile_with_handlers(&deployment, &names)?;
        Ok(deployment)
    }
}

/// A user store and the token endpoint's clients, built in code; start with
/// [`Users::builder`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Users {
    /// The users, for [`SecureLayerBuilder::user_store`](crate::SecureLayerBuilder::user_store)
    /// and the token server's password grant.
    pub store: InMemoryUserStore,
    /// The clients, for the token server.
    pub clients: Vec<ClientRecord>,
}

impl Users {
    /// Roles, users and clients in code, as a users file holds them.
    pub fn builder() -> UsersBuilder {
        UsersBuilder::default()
    }
}

/// Builds [`Users`]: roles (name -> permissions), users with argon2id PHC hashes (make
/// them with `tower-secure hash-password`) and roles, and OAuth2 clients.
#[derive(Debug, Default)]
pub struct UsersBuilder {
    items: Vec<UsersItem>,
}

#[derive(Debug)]
enum UsersItem {
    Role { name: String, permissions: Vec<String> },
    User { name: String, password_hash: String, roles: Vec<String> },
    Client(ClientItem),
}

/// A client as added: what its `[[client]]` table would say.
#[derive(Debug, Default)]
struct ClientItem {
    id: String,
    secret_hash: Option<String>,
    roles: Vec<String>,
    grant_types: Option<Vec<GrantType>>,
    redirect_uris: Vec<String>,
    allowed_scopes: Option<Vec<String>>,
    trusted: bool,
}

impl UsersBuilder {
    /// A role and the permissions it grants.
    pub fn role(mut self, name: impl Into<String>, permissions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.items.push(UsersItem::Role { name: name.into(), permissions: strings(permissions) });
        self
    }

    /// A user (`alex`, `SECONDARY/sam`, `tina@example.com`) with an argon2id PHC hash of
    /// its password and its roles.
    pub fn user(
        mut self,
        name: impl Into<String>,
        password_hash: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let (name, password_hash, roles) = (name.into(), password_hash.into(), strings(roles));
        self.items.push(UsersItem::User { name, password_hash, roles });
        self
    }

    /// An OAuth2 client with an argon2id PHC hash of its secret, the roles that stand in
    /// for a user's in the `client_credentials` grant, and every grant type.
    pub fn client(
        mut self,
        id: impl Into<String>,
        secret_hash: impl Into<String>,
        roles: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let (id, secret_hash, roles) = (id.into(), Some(secret_hash.into()), strings(roles));
        self.items.push(UsersItem::Client(ClientItem { id, secret_hash, roles, ..ClientItem::default() }));
        self
    }

    /// A public client (a browser or mobile app: no secret), for the authorization code
    /// flow with PKCE to these redirect URIs, matched exactly.
    pub fn public_client(
        mut self,
        id: impl Into<String>,
        redirect_uris: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        let (id, redirect_uris) = (id.into(), strings(redirect_uris));
        self.items.push(UsersItem::Client(ClientItem { id, redirect_uris, ..ClientItem::default() }));
        self
    }

    /// The client added last, changed.
    fn last_client(mut self, change: impl FnOnce(&mut ClientItem)) -> Self {
        if let Some(UsersItem::Client(client)) = self.items.last_mut() {
            change(client);
        }
        self
    }

    /// Limits the client added last to these grant types.
    pub fn grant_types(self, grants: impl IntoIterator<Item = GrantType>) -> Self {
        self.last_client(|client| client.grant_types = Some(grants.into_iter().collect()))
    }

    /// The redirect URIs of the client added last (the authorization code flow).
    pub fn redirect_uris(self, uris: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.last_client(|client| client.redirect_uris = strings(uris))
    }

    /// The scopes the client added last may get at most.
    pub fn allowed_scopes(self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.last_client(|client| client.allowed_scopes = Some(strings(scopes)))
    }

    /// Makes the client added last trusted: its users see no consent page.
    pub fn trusted(self) -> Self {
        self.last_client(|client| client.trusted = true)
    }

    /// Checks names, hashes and roles as a users file's are checked.
    pub fn build(self) -> Result<Users, ConfigError> {
        let mut listing = Listing::default();
        let mut file = UsersFile::default();
        for item in self.items {
            match item {
                UsersItem::Role { name, permissions } => {
                    let span = listing.item(&format!("role {name}"));
                    let permissions = permissions.into_iter().map(|p| spanned(&span, p)).collect();
                    file.role.push(RoleEntry { name: spanned(&span, name), permissions });
                }
                UsersItem::User { name, password_hash, roles } => {
                    let span = listing.item(&format!("user {name}"));
                    file.user.push(UserEntry {
                        name: spanned(&span, name),
                        password: Some(spanned(&span, password_hash)),
                        roles: roles.into_iter().map(|r| spanned(&span, r)).collect(),
                        disabled: false,
                    });
                }
                UsersItem::Client(client) => {
                    let span = listing.item(&format!("client {}", client.id));
                    let each = |list: Vec<String>| list.into_iter().map(|v| spanned(&span, v)).collect::<Vec<_>>();
                    let grant_types =
                        client.grant_types.map(|g| each(g.iter().map(|g| g.as_str().to_owned()).collect()));
                    file.client.push(ClientEntry {
                        id: spanned(&span, client.id),
                        secret: client.secret_hash.map(|hash| spanned(&span, hash)),
                        roles: each(client.roles),
                        grant_types,
                        redirect_uris: each(client.redirect_uris),
                        allowed_scopes: client.allowed_scopes.map(each),
                        trusted: client.trusted,
                        disabled: false,
                    });
                }
            }
        }
        let source = listing.source();
        let clients = clients_from(&file, &source)?;
        Ok(Users { store: users_from(file, &source)?, clients })
    }
}
