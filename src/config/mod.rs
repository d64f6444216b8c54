//! The configuration model: the `deployment.toml`-style rule file and the
//! users file, loaded strictly. Every load error names file, line, column and key.
//!
//! This module only reads and shapes TOML; [`crate::policy`] turns the rules into a
//! lookup index, and the layer builder turns the rest into handlers.

mod error;
mod state;
mod stores;
mod users;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
pub(crate) use toml::Spanned;

pub use error::{ConfigError, SourceMap};
pub(crate) use state::StateTable;
#[cfg(feature = "oauth2-server")]
pub(crate) use state::{StateKind, StateSettings};
pub(crate) use stores::UserStoreTable;
pub(crate) use users::{clients_from, users_from, ClientEntry, RoleEntry, UserEntry, UsersFile};
pub use users::{
    load_clients, load_clients_file, load_users, load_users_file, ClientRecord, GrantType, UnknownGrantType,
};

/// A parsed rule file. Rules keep their source positions so that the policy compiler can
/// report errors at the offending key.
///
/// ```
/// use tower_secure::config::Deployment;
///
/// let deployment = Deployment::from_toml_str("deployment.toml", r#"
///     [[resource.access_control]]
///     context = "/api/health"
///     secure = false
/// "#)?;
/// let layer = tower_secure::SecureLayer::builder().deployment(deployment).build()?;
/// assert_eq!(layer.policy().rules().len(), 1);
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Deployment {
    /// `[resource]`: the access-control rules.
    pub(crate) resource: ResourceConfig,
    /// `[authentication]`: realm, handler priorities, Basic settings.
    pub(crate) authentication: AuthenticationConfig,
    /// `[[scope]]`: scope definitions.
    pub(crate) scopes: Vec<Spanned<ScopeConfig>>,
    /// `[oauth2]`: bearer-token validation.
    pub(crate) oauth2: OAuth2Config,
    /// `[scope_validation]`: which requested scopes the token endpoint grants (read by
    /// the token server only; without it the table still loads).
    #[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
    pub(crate) scope_validation: ScopeValidationConfig,
    /// `[oauth2_server]`: the built-in token endpoint; `None` when absent.
    pub(crate) oauth2_server: Option<Spanned<OAuth2ServerConfig>>,
    /// `[client_cert]`: the `client_cert` handler; `None` when absent.
    pub(crate) client_cert: Option<Spanned<ClientCertConfig>>,
    /// `[intermediate_cert_validation]` (read by the `client_cert` handler only; without
    /// it the table still loads).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) intermediate_cert_validation: IntermediateCertValidation,
    /// `[[user_store]]`: one user store per userstore domain ([`Deployment::user_stores`]).
    pub(crate) user_store: Vec<Spanned<stores::UserStoreTable>>,
    /// `[[role]]`: the permissions of the roles an LDAP user store's groups name.
    pub(crate) role: Vec<users::RoleEntry>,
    /// `[state]`: where the token server keeps its state ([`Deployment::state_settings`]).
    pub(crate) state: Option<Spanned<state::StateTable>>,
    /// Where the text came from, for error positions.
    pub(crate) source: SourceMap,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeploymentFile {
    #[serde(default)]
    resource: ResourceConfig,
    #[serde(default)]
    authentication: AuthenticationConfig,
    #[serde(default)]
    cors: CorsConfig,
    #[serde(default)]
    scope: Vec<Spanned<ScopeConfig>>,
    #[serde(default)]
    oauth2: OAuth2Config,
    #[serde(default)]
    scope_validation: ScopeValidationConfig,
    #[serde(default)]
    oauth2_server: Option<Spanned<OAuth2ServerConfig>>,
    #[serde(default)]
    client_cert: Option<Spanned<ClientCertConfig>>,
    #[serde(default)]
    intermediate_cert_validation: IntermediateCertValidation,
    #[serde(default)]
    user_store: Vec<Spanned<stores::UserStoreTable>>,
    #[serde(default)]
    role: Vec<users::RoleEntry>,
    #[serde(default)]
    state: Option<Spanned<state::StateTable>>,
}

impl Deployment {
    /// Parses rule-file text; `file` names it in errors.
    pub fn from_toml_str(file: &str, text: &str) -> Result<Self, ConfigError> {
        let source = SourceMap::new(file, text);
        let parsed: DeploymentFile = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        parsed.cors.check(&source)?;
        stores::check_tables(&parsed.user_store, &source)?;
        users::role_permissions(&parsed.role, &source)?;
        state::check_table(parsed.state.as_ref(), &source)?;
        Ok(Self {
            resource: parsed.resource,
            authentication: parsed.authentication,
            scopes: parsed.scope,
            oauth2: parsed.oauth2,
            scope_validation: parsed.scope_validation,
            oauth2_server: parsed.oauth2_server,
            client_cert: parsed.client_cert,
            intermediate_cert_validation: parsed.intermediate_cert_validation,
            user_store: parsed.user_store,
            role: parsed.role,
            state: parsed.state,
            source,
        })
    }

    /// Reads and parses a rule file. Relative paths in it (`pem_file`, `jwks_file`,
    /// `ca_file`, `intermediates_file`) lead from the file's directory
    /// ([`SourceMap::resolve`]); in text given to [`from_toml_str`](Self::from_toml_str),
    /// from the working directory.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let (name, text) = read_file(path.as_ref())?;
        let mut deployment = Self::from_toml_str(&name, &text)?;
        deployment.source = deployment.source.read_from(path.as_ref());
        Ok(deployment)
    }

    /// Where the text came from: the file name errors carry, and the directory relative
    /// paths in it lead from.
    ///
    /// ```
    /// use tower_secure::config::Deployment;
    ///
    /// let deployment = Deployment::from_toml_str("deployment.toml", "")?;
    /// assert_eq!(&**deployment.source().file(), "deployment.toml");
    /// # Ok::<(), tower_secure::config::ConfigError>(())
    /// ```
    pub fn source(&self) -> &SourceMap {
        &self.source
    }

    /// True when the file configures bearer tokens: `[[oauth2.issuer]]`,
    /// `[oauth2.introspection]` or `[oauth2_server]` (whose tokens the layer trusts).
    ///
    /// ```
    /// use tower_secure::config::Deployment;
    ///
    /// assert!(!Deployment::default().bearer_enabled());
    /// ```
    pub fn bearer_enabled(&self) -> bool {
        !self.oauth2.issuer.is_empty() || self.oauth2.introspection.is_some() || self.oauth2_server.is_some()
    }

    /// True when the file has a `[client_cert]` table (the `client_cert` handler).
    ///
    /// ```
    /// use tower_secure::config::Deployment;
    ///
    /// assert!(Deployment::from_toml_str("deployment.toml", "[client_cert]")?.client_cert_enabled());
    /// # Ok::<(), tower_secure::config::ConfigError>(())
    /// ```
    pub fn client_cert_enabled(&self) -> bool {
        self.client_cert.is_some()
    }

    /// True when the file has an `[oauth2_server]` table (the built-in token server).
    ///
    /// ```
    /// use tower_secure::config::Deployment;
    ///
    /// assert!(!Deployment::default().token_server_enabled());
    /// ```
    pub fn token_server_enabled(&self) -> bool {
        self.oauth2_server.is_some()
    }
}

impl Default for Deployment {
    /// No rules: everything needs an authenticated caller.
    fn default() -> Self {
        Self {
            resource: ResourceConfig::default(),
            authentication: AuthenticationConfig::default(),
            scopes: Vec::new(),
            oauth2: OAuth2Config::default(),
            scope_validation: ScopeValidationConfig::default(),
            oauth2_server: None,
            client_cert: None,
            intermediate_cert_validation: IntermediateCertValidation::default(),
            user_store: Vec::new(),
            role: Vec::new(),
            state: None,
            source: SourceMap::new("<default>", ""),
        }
    }
}

/// Largest configuration file read (rules, users, keys, certificates): a path pointed at
/// `/dev/zero` or a huge file fails the load instead of hanging or exhausting memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads a UTF-8 text file of at most [`MAX_CONFIG_FILE_BYTES`]; every file the
/// configuration names is read through here.
pub(crate) fn read_text(path: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    std::fs::File::open(path)?.take(MAX_CONFIG_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_CONFIG_FILE_BYTES {
        let message = format!("larger than the {} MiB limit", MAX_CONFIG_FILE_BYTES >> 20);
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, message));
    }
    Ok(text)
}

pub(crate) fn read_file(path: &Path) -> Result<(String, String), ConfigError> {
    let name = path.display().to_string();
    read_text(path).map(|text| (name.clone(), text)).map_err(|e| ConfigError {
        file: name.into(),
        line: 0,
        column: 0,
        key: None,
        message: format!("cannot read the file: {e}"),
    })
}

/// `[resource]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResourceConfig {
    /// `[[resource.access_control]]` tables, in file order (order does not matter: the
    /// most specific rule wins).
    #[serde(default)]
    pub access_control: Vec<Spanned<RuleConfig>>,
}

/// One `[[resource.access_control]]` table, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleConfig {
    /// The path pattern.
    pub context: Spanned<String>,
    /// `false` opens the resource to anonymous callers. Default `true` (see [`RuleConfig::is_secure`]).
    #[serde(default)]
    pub secure: Option<Spanned<bool>>,
    /// `all` (default), one method or a list. Standard methods only, unless declared in
    /// [`extension_methods`](RuleConfig::extension_methods).
    #[serde(default)]
    pub http_method: Option<Spanned<OneOrMany>>,
    /// Extension methods (WebDAV's `PROPFIND`, ...) that `http_method` may name; each
    /// must be named there too.
    #[serde(default)]
    pub extension_methods: Option<Spanned<OneOrMany>>,
    /// Permissions the caller must hold.
    #[serde(default)]
    pub permissions: Option<Spanned<OneOrMany>>,
    /// Scopes the caller's token must carry (`scopes` is accepted too).
    #[serde(default, alias = "scopes")]
    pub scope: Option<Spanned<OneOrMany>>,
    /// Handlers allowed to authenticate callers of this resource. Default: all.
    #[serde(default)]
    pub allowed_auth_handlers: Option<Spanned<OneOrMany>>,
    /// `true` replaces a handler's compile-time rule instead of adding to it.
    #[serde(default, rename = "override")]
    pub override_compiled: bool,
    /// `all` (default) or `any` of `permissions`.
    #[serde(default)]
    pub permissions_match: MatchMode,
    /// `all` (default) or `any` of `scope`.
    #[serde(default)]
    pub scopes_match: MatchMode,
    /// What a token caller is judged by on a rule with scopes: `scopes` (default) or
    /// `check` (the scopes and its user's current permissions).
    #[serde(default)]
    pub token_permissions: Option<Spanned<TokenPermissions>>,
    /// Callers of other tenants: `false` (default), `true`, or a list of tenants.
    #[serde(default)]
    pub cross_tenant: Option<Spanned<CrossTenantConfig>>,
}

impl RuleConfig {
    /// The `secure` value, `true` when the key is absent.
    pub fn is_secure(&self) -> bool {
        self.secure.as_ref().is_none_or(|s| *s.get_ref())
    }
}

/// Whether all or any of a list must hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Every item must hold.
    #[default]
    All,
    /// At least one item must hold.
    Any,
}

/// What a token caller is judged by on a rule that names scopes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenPermissions {
    /// The token's scopes alone: they were issued against the user's permissions, which
    /// are not checked again (WSO2's semantics). A rule whose scopes' bindings do not
    /// imply its permissions is then a load error.
    #[default]
    Scopes,
    /// The token's scopes and its user's current permissions; a token without a user
    /// (client credentials) holds no permissions and is refused.
    Check,
}

/// `cross_tenant = true | false | ["tenant", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "`true`, `false` or a list of tenant names")]
pub(crate) enum CrossTenantConfig {
    /// All or no other tenants.
    Flag(bool),
    /// These tenants.
    Tenants(Vec<String>),
}

/// A string or a list of strings (`http_method = "GET"` or `["GET", "POST"]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;
        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

/// `[authentication]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthenticationConfig {
    /// The realm in `WWW-Authenticate` challenges. Default `tower-secure`.
    #[serde(default = "default_realm")]
    pub realm: String,
    /// Handler priorities by name (higher is asked first), overriding the handlers' own.
    #[serde(default)]
    pub priorities: BTreeMap<String, Spanned<i32>>,
    /// `[authentication.basic]`.
    #[serde(default)]
    pub basic: BasicConfig,
}

impl Default for AuthenticationConfig {
    fn default() -> Self {
        Self { realm: default_realm(), priorities: BTreeMap::new(), basic: BasicConfig::default() }
    }
}

fn default_realm() -> String {
    "tower-secure".to_owned()
}

/// `[authentication.basic]`: the verification cache, lockout and hashing throttle. New
/// settings may be added: start from the defaults and change what you need.
///
/// ```
/// let mut basic = tower_secure::config::BasicConfig::default();
/// basic.max_failed_attempts = 3;
/// basic.lockout_seconds = 900;
/// let deployment = tower_secure::config::Deployment::builder().basic(basic).build()?;
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BasicConfig {
    /// How long a verified credential is trusted without re-hashing, and the longest a
    /// user's store record is trusted by any cached decision (Basic logins, certificate
    /// users, tokens whose users the store confirms): a change made in the store behind the
    /// crate's back applies within it. Default 300.
    pub cache_ttl_seconds: u64,
    /// How many verified credentials are cached at most. Default 10,000.
    pub cache_capacity: usize,
    /// Failed attempts before an account is locked; 0 turns lockout off. Default 5.
    pub max_failed_attempts: u32,
    /// How long a locked account stays locked. Default 300.
    pub lockout_seconds: u64,
    /// How many usernames the failure counter tracks at most. Default 100,000.
    pub lockout_capacity: usize,
    /// Password hashes computed at once (each on the blocking pool). Default 1.
    pub max_concurrent_hashes: usize,
    /// Uncached verifications allowed per second across all callers; more wait briefly,
    /// then get 429. This keeps a wrong-password flood from starving cached traffic: at
    /// argon2's default cost (~20 ms) 10 hashes a second use a fifth of one core.
    /// Default 10.
    pub hashes_per_second: u32,
    /// How long a user-store look-up may take before the request fails with 503.
    /// Default 10.
    pub store_timeout_seconds: u64,
}

impl Default for BasicConfig {
    fn default() -> Self {
        Self {
            cache_ttl_seconds: 300,
            cache_capacity: 10_000,
            max_failed_attempts: 5,
            lockout_seconds: 300,
            lockout_capacity: 100_000,
            max_concurrent_hashes: 1,
            hashes_per_second: 10,
            store_timeout_seconds: 10,
        }
    }
}

/// `[cors]`: accepted so that files written for earlier versions load. The layer checks a
/// CORS preflight like any `OPTIONS` request; preflights are answered by a CORS layer
/// placed *outside* the security layer (`tower_http::cors::CorsLayer`), which also adds
/// the CORS headers to 401 and 403 answers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CorsConfig {
    /// `true` (what the layer does) is accepted; `false`, which used to let preflights
    /// through unauthenticated, is a load error.
    #[serde(default)]
    pub authenticate_preflight: Option<Spanned<bool>>,
}

impl CorsConfig {
    /// `authenticate_preflight = false` is refused at its key, saying what to do instead.
    fn check(&self, source: &SourceMap) -> Result<(), ConfigError> {
        match &self.authenticate_preflight {
            Some(flag) if !*flag.get_ref() => Err(source.error(
                flag.span(),
                "authenticate_preflight",
                "the layer no longer lets CORS preflights through unauthenticated: put a CORS layer \
                 (tower_http::cors::CorsLayer) outside the security layer, where it answers preflights \
                 itself, and remove this key",
            )),
            _ => Ok(()),
        }
    }
}

/// One `[[scope]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ScopeConfig {
    /// The scope name.
    pub name: Spanned<String>,
    /// Permissions the scope is bound to.
    #[serde(default)]
    pub permissions: Vec<Spanned<String>>,
    /// Roles that may receive the scope.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[oauth2]`: how bearer tokens are validated. The `oauth2` handler is
/// registered when at least one `[[oauth2.issuer]]` is configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct OAuth2Config {
    /// Clock skew allowed for `exp`, `nbf` and `iat`, in seconds. Default 60.
    pub leeway_seconds: u64,
    /// When set (e.g. `"at+jwt"`, RFC 9068), the token's `typ` header must be this
    /// (or `application/` + this), which keeps ID tokens out. Not every provider sets it:
    /// Keycloak, Entra ID and Okta write `JWT`, so this refuses all their tokens.
    pub require_typ: Option<String>,
    /// The claim holding the caller's roles (an array of strings), for issuers that do not
    /// name their own: a claim name, or a dot-separated path into nested objects
    /// (`realm_access.roles`). Default `roles`.
    pub roles_claim: String,
    /// Longest token accepted, in bytes. Default 16,384: providers put group and role
    /// lists in tokens (Entra ID issues 11 KB tokens for a user in 200 groups), while every
    /// byte of a token is hashed, decoded and parsed before its signature can be checked,
    /// so the cap bounds the work an unauthenticated caller can cause. The whole
    /// `Authorization` header is capped at 16 KiB as well.
    pub max_token_bytes: usize,
    /// How many verified tokens (and introspection results) are cached at most; entries
    /// never outlive `exp`. Default 10,000.
    pub cache_capacity: usize,
    /// How often keys from a `jwks_uri` (or discovery) are fetched again. Default 300.
    /// A fetch that fails is retried sooner, with a backoff from 1 s up to this (at most a
    /// minute).
    pub jwks_refresh_seconds: u64,
    /// The least time between two fetches; an unknown `kid` refreshes at most this often,
    /// and meanwhile its token is answered 503 with `Retry-After`. Default 10.
    pub jwks_min_refresh_seconds: u64,
    /// Time limit of one key fetch. Default 5.
    pub jwks_timeout_seconds: u64,
    /// The trusted token issuers (`[[oauth2.issuer]]` tables).
    #[serde(deserialize_with = "issuer_tables")]
    pub issuer: Vec<Spanned<IssuerConfig>>,
    /// `[oauth2.introspection]`: opaque tokens checked with RFC 7662 introspection.
    pub introspection: Option<IntrospectionConfig>,
}

impl Default for OAuth2Config {
    fn default() -> Self {
        Self {
            leeway_seconds: 60,
            require_typ: None,
            roles_claim: "roles".to_owned(),
            max_token_bytes: 16 * 1024,
            cache_capacity: 10_000,
            jwks_refresh_seconds: 300,
            jwks_min_refresh_seconds: 10,
            jwks_timeout_seconds: 5,
            issuer: Vec::new(),
            introspection: None,
        }
    }
}

/// `issuer` must be an array of tables; `[oauth2.issuer]` (one table) is a common slip
/// that would otherwise read as "invalid type: map".
fn issuer_tables<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Spanned<IssuerConfig>>, D::Error> {
    struct IssuerTables;
    impl<'de> Visitor<'de> for IssuerTables {
        type Value = Vec<Spanned<IssuerConfig>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("[[oauth2.issuer]] tables")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut tables = Vec::new();
            while let Some(table) = seq.next_element()? {
                tables.push(table);
            }
            Ok(tables)
        }
        fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<Self::Value, A::Error> {
            Err(de::Error::custom(
                "a single [oauth2.issuer] table; use [[oauth2.issuer]] (an array of tables, one per issuer)",
            ))
        }
    }
    deserializer.deserialize_any(IssuerTables)
}

/// How the subject of a token names its caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SubjectFormat {
    /// The subject is an opaque string of the issuer (OpenID Connect Core 5.7):
    /// `svc@clients`, `https://client.example/svc` are whole names of the super tenant
    /// (see [`crate::identity::QualifiedName::opaque`]), never users of the user store.
    #[default]
    Opaque,
    /// The subject is a WSO2 name (`[DOMAIN/]user[@tenant]`) of a user of this crate's
    /// user store, whose permissions then apply to the token (for an issuer whose users
    /// are ours, such as WSO2 Identity Server over the same user store).
    Qualified,
}

/// `[[oauth2.issuer]]`: one trusted issuer and the keys that verify its tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IssuerConfig {
    /// The exact `iss` value of its tokens.
    pub issuer: Spanned<String>,
    /// When set, the token's `aud` must be or contain this value.
    #[serde(default)]
    pub audience: Option<String>,
    /// A JWKS file (`{"keys": [...]}`) with this issuer's public keys; each key needs a
    /// `kid`, and a key without `alg` serves the issuer's `algorithms`.
    #[serde(default)]
    pub jwks_file: Option<Spanned<String>>,
    /// A JWKS URL, fetched at start and in the background (and, rate limited, on an
    /// unknown `kid`).
    #[serde(default)]
    pub jwks_uri: Option<Spanned<String>>,
    /// `true`: find the JWKS URL in `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// Keys given one by one.
    #[serde(default)]
    pub key: Vec<Spanned<KeyConfig>>,
    /// `true`: a token that passed local verification is also sent to
    /// `[oauth2.introspection]` (cached like any answer), so a revocation at the issuer is
    /// seen here within `cache_max_seconds`. Default `false`.
    #[serde(default)]
    pub introspect: bool,
    /// The JWS algorithms this issuer's tokens may use (`RS256`, `PS256`, `ES256`, ...).
    /// A published key without `alg` serves those of them that fit its key type; a key
    /// with `alg` serves that one, which must be listed. Default: any algorithm a key
    /// names, and for keys without `alg` RS256 (RSA), ES256 (P-256), ES384 (P-384) or
    /// EdDSA (Ed25519).
    #[serde(default)]
    pub algorithms: Option<Spanned<Vec<String>>>,
    /// How `sub` names the caller: `opaque` (default) or `qualified`.
    #[serde(default)]
    pub subject_format: SubjectFormat,
    /// The claim naming the caller. Default `sub` (Entra ID: `oid` is stable across
    /// applications; Keycloak: `preferred_username` reads better).
    #[serde(default)]
    pub subject_claim: Option<Spanned<String>>,
    /// A claim holding the caller's tenant (opaque subjects only). Default: none, every
    /// caller of this issuer is in the super tenant.
    #[serde(default)]
    pub tenant_claim: Option<Spanned<String>>,
    /// This issuer's roles claim, overriding `[oauth2] roles_claim`: a claim name or a
    /// dot-separated path (`realm_access.roles`, `resource_access.my-api.roles`).
    #[serde(default)]
    pub roles_claim: Option<Spanned<String>>,
    /// The one claim scopes are read from (a space-delimited string or an array of
    /// strings). Default: `scope` or `scp`, whichever is present (both must agree).
    #[serde(default)]
    pub scope_claim: Option<Spanned<String>>,
}

/// `[[oauth2.issuer.key]]`: one verification key with its one algorithm.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeyConfig {
    /// The `kid` tokens name; optional when the issuer has a single key.
    #[serde(default)]
    pub kid: Option<String>,
    /// `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256`, `ES384`, `EdDSA`,
    /// `HS256`, `HS384` or `HS512`. A token's `alg` header must equal it.
    pub algorithm: Spanned<String>,
    /// A PEM public key (or certificate), inline.
    #[serde(default)]
    pub pem: Option<Spanned<String>>,
    /// A PEM public key (or certificate) file.
    #[serde(default)]
    pub pem_file: Option<Spanned<String>>,
    /// A JWK, as JSON text.
    #[serde(default)]
    pub jwk: Option<Spanned<String>>,
    /// An HMAC secret, base64 (standard alphabet); at least as long as the hash.
    #[serde(default)]
    pub secret_base64: Option<Spanned<String>>,
}

/// `[oauth2.introspection]`: tokens that are not JWTs are checked at this
/// RFC 7662 endpoint. A JWT is never sent there, even when it fails local verification.
///
/// `audience` is required: an answer is accepted only when its `aud` names it, so a token
/// the authorization server issued for another API is refused here. The subject settings
/// are those of an `[[oauth2.issuer]]` and apply to the answers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntrospectionConfig {
    /// The introspection endpoint URL.
    pub endpoint: Spanned<String>,
    /// This API's client id at the authorization server (HTTP Basic client authentication).
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// The audience this API's tokens carry (one value, or a list of which the answer's
    /// `aud` must name one). Required. For a token of an `[[oauth2.issuer]]` with
    /// `introspect = true`, that issuer's `audience` applies when it has one.
    #[serde(default)]
    pub audience: Option<Spanned<OneOrMany>>,
    /// When set, an answer that carries `iss` must name exactly this issuer; otherwise it
    /// must name one of the `[[oauth2.issuer]]` tables. An answer without `iss` passes.
    #[serde(default)]
    pub issuer: Option<String>,
    /// How the answer's subject names the caller: `opaque` (default) or `qualified` (for
    /// WSO2 Identity Server, whose answers name users of this crate's user store).
    #[serde(default)]
    pub subject_format: SubjectFormat,
    /// The member naming the caller. Default `sub`, then `username`, then `client_id`.
    #[serde(default)]
    pub subject_claim: Option<Spanned<String>>,
    /// A member holding the caller's tenant (opaque subjects only).
    #[serde(default)]
    pub tenant_claim: Option<Spanned<String>>,
    /// The roles member, overriding `[oauth2] roles_claim` (a name or a dot-separated path).
    #[serde(default)]
    pub roles_claim: Option<Spanned<String>>,
    /// The one member scopes are read from. Default: `scope` or `scp`.
    #[serde(default)]
    pub scope_claim: Option<Spanned<String>>,
    /// The longest a result is trusted without asking again; never past the token's
    /// `exp`. Default 60.
    #[serde(default = "default_introspection_seconds")]
    pub cache_max_seconds: u64,
    /// Time limit of one call. Default 5.
    #[serde(default = "default_introspection_timeout")]
    pub timeout_seconds: u64,
}

/// The settings that turn a token's claims into a caller, as an `[[oauth2.issuer]]` or
/// `[oauth2.introspection]` table gives them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimSettings<'a> {
    pub(crate) subject_format: SubjectFormat,
    pub(crate) subject_claim: Option<&'a Spanned<String>>,
    pub(crate) tenant_claim: Option<&'a Spanned<String>>,
    pub(crate) roles_claim: Option<&'a Spanned<String>>,
    pub(crate) scope_claim: Option<&'a Spanned<String>>,
}

impl IssuerConfig {
    pub(crate) fn claim_settings(&self) -> ClaimSettings<'_> {
        ClaimSettings {
            subject_format: self.subject_format,
            subject_claim: self.subject_claim.as_ref(),
            tenant_claim: self.tenant_claim.as_ref(),
            roles_claim: self.roles_claim.as_ref(),
            scope_claim: self.scope_claim.as_ref(),
        }
    }
}

impl IntrospectionConfig {
    pub(crate) fn claim_settings(&self) -> ClaimSettings<'_> {
        ClaimSettings {
            subject_format: self.subject_format,
            subject_claim: self.subject_claim.as_ref(),
            tenant_claim: self.tenant_claim.as_ref(),
            roles_claim: self.roles_claim.as_ref(),
            scope_claim: self.scope_claim.as_ref(),
        }
    }
}

fn default_introspection_seconds() -> u64 {
    60
}

fn default_introspection_timeout() -> u64 {
    5
}

/// `[scope_validation]`: how the token endpoint decides which requested
/// scopes to grant. Definitions come from the `[[scope]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ScopeValidationConfig {
    /// Regex patterns, each matched against the whole scope name; a scope one of them
    /// matches is granted without role or permission checks. Default `["openid", "^device_.*"]`.
    pub whitelist: Vec<Spanned<String>>,
    /// The scope granted when no requested scope is (WSO2's `default`); none by default.
    pub default_scope: Option<String>,
}

impl Default for ScopeValidationConfig {
    fn default() -> Self {
        let pattern = |p: &str| Spanned::new(0..0, p.to_owned());
        Self { whitelist: vec![pattern("openid"), pattern("^device_.*")], default_scope: None }
    }
}

/// `[oauth2_server]`: the token endpoint this crate serves itself. Clients
/// are `[[client]]` tables in the users file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OAuth2ServerConfig {
    /// The `iss` of issued tokens and the base of the URLs in the discovery document,
    /// for example `https://api.example.com`.
    pub issuer: Spanned<String>,
    /// The `aud` of issued tokens. Default: the client id.
    #[serde(default)]
    pub audience: Option<String>,
    /// Lifetime of access tokens. Default 3600.
    #[serde(default = "default_access_token_seconds")]
    pub access_token_seconds: u64,
    /// Lifetime of refresh tokens. Default 86,400.
    #[serde(default = "default_refresh_token_seconds")]
    pub refresh_token_seconds: u64,
    /// Largest request body the endpoints read, in bytes. Default 8192.
    #[serde(default = "default_max_form_bytes")]
    pub max_form_bytes: usize,
    /// How many refresh tokens are remembered at most (beyond it the oldest is forgotten
    /// and no longer works), and how many revoked access tokens (beyond it the client with
    /// the most revocations has every token issued to it so far refused). Default 100,000.
    #[serde(default = "default_max_tracked_tokens")]
    pub max_tracked_tokens: usize,
    /// Signing keys. The first signs new tokens; all are published at `/oauth2/jwks`, so a
    /// rotation adds the new key first and keeps the old one until its tokens expire.
    #[serde(default)]
    pub key: Vec<Spanned<SigningKeyConfig>>,
}

fn default_access_token_seconds() -> u64 {
    3600
}

fn default_refresh_token_seconds() -> u64 {
    86_400
}

pub(crate) fn default_max_form_bytes() -> usize {
    8192
}

pub(crate) fn default_max_tracked_tokens() -> usize {
    100_000
}

/// `[[oauth2_server.key]]`: one signing key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SigningKeyConfig {
    /// The `kid` put in token headers and in the JWKS. Default: the key's RFC 7638
    /// thumbprint (SHA-256, base64url), which stays the same across restarts.
    #[serde(default)]
    pub kid: Option<Spanned<String>>,
    /// `RS256` (with at least 2048 bits), `ES256`, `EdDSA` or `HS256`.
    pub algorithm: Spanned<String>,
    /// A PKCS#8 PEM private key, inline.
    #[serde(default)]
    pub pem: Option<Spanned<String>>,
    /// A PKCS#8 PEM private key file; a relative path leads from the rule file's directory.
    #[serde(default)]
    pub pem_file: Option<Spanned<String>>,
    /// An HS256 secret, base64 (standard alphabet), at least 32 bytes. HMAC keys are never
    /// published; only a layer in the same process can verify such tokens.
    #[serde(default)]
    pub secret_base64: Option<Spanned<String>>,
}

/// `[client_cert]`: the `client_cert` handler, registered when this table is
/// present. Certificates from the crate's TLS server are verified there; forwarded ones
/// (from a TLS-terminating proxy) here.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientCertConfig {
    /// The header a trusted proxy forwards the client certificate in (for example
    /// `X-Forwarded-Client-Cert`, or `Client-Cert` for RFC 9440). Default: none, forwarded
    /// certificates are off.
    #[serde(default)]
    pub forwarded_header: Option<Spanned<String>>,
    /// How the proxy writes the certificate into `forwarded_header`; required with it, as
    /// nothing is guessed from the header's contents.
    #[serde(default)]
    pub forwarded_format: Option<Spanned<ForwardedFormat>>,
    /// The proxies (IP addresses) whose forwarded header is believed; from anyone else the
    /// header is ignored and logged.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// PEM file with the CA certificates forwarded certificates must chain to.
    #[serde(default)]
    pub ca_file: Option<Spanned<String>>,
    /// PEM file with intermediate CA certificates for building the path of a forwarded
    /// certificate (the header carries the client certificate alone).
    #[serde(default)]
    pub intermediates_file: Option<Spanned<String>>,
}

/// `[client_cert] forwarded_format`: the one shape a forwarded certificate header must
/// have. The header is parsed fully: anything else in it, before, after or around the
/// certificate, refuses the request with 400. Spaces and tabs around the whole value are
/// not part of an HTTP field value and are ignored.
///
/// ```
/// use tower_secure::config::{Deployment, ForwardedFormat};
///
/// let deployment = Deployment::from_toml_str("deployment.toml", r#"
///     [client_cert]
///     forwarded_header = "X-Forwarded-Client-Cert"
///     forwarded_format = "xfcc"
/// "#)?;
/// assert!(deployment.client_cert_enabled());
/// assert_eq!(ForwardedFormat::Xfcc.as_str(), "xfcc");
///
/// // Any other name is a load error at its line.
/// let text = "[client_cert]\nforwarded_header = \"X-Client-Cert\"\nforwarded_format = \"der\"\n";
/// assert_eq!(Deployment::from_toml_str("deployment.toml", text).unwrap_err().line, 3);
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub enum ForwardedFormat {
    /// `rfc9440`: RFC 9440 `Client-Cert`, one structured-field byte sequence
    /// (`:base64(DER):`, standard alphabet with padding), without parameters.
    #[serde(rename = "rfc9440")]
    Rfc9440,
    /// `pem`: one PEM `CERTIFICATE` block whose line breaks the proxy replaced with spaces
    /// or tabs. Spaces and tabs may separate the armor lines from the base64 body and
    /// break the body anywhere; nothing else may appear.
    #[serde(rename = "pem")]
    Pem,
    /// `pem-urlencoded`: one PEM `CERTIFICATE` block, percent-encoded, as nginx's
    /// `$ssl_client_escaped_cert`. Letters, digits and `-._~+/=` may appear as they are,
    /// anything else as `%XX`; decoded, it is a PEM block as for `pem`, with line breaks
    /// allowed as separators too.
    #[serde(rename = "pem-urlencoded")]
    PemUrlencoded,
    /// `xfcc`: Envoy's `x-forwarded-client-cert` with exactly one element (one proxy, no
    /// top-level `,`) of `key=value` pairs separated by `;`. Keys (any case): `Hash` (the
    /// hex SHA-256 of the certificate's DER) and `Cert` (the certificate as for
    /// `pem-urlencoded`), both required and once each; `Subject` at most once; `By`, `URI`
    /// and `DNS` any number of times (Envoy writes one per SAN). A value holding `,`, `;`,
    /// `=`, `"` or whitespace is double-quoted, a backslash escaping the next character.
    /// `Chain`, unknown keys and any other shape are refused: intermediates come from
    /// `intermediates_file`.
    #[serde(rename = "xfcc")]
    Xfcc,
}

impl ForwardedFormat {
    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rfc9440 => "rfc9440",
            Self::Pem => "pem",
            Self::PemUrlencoded => "pem-urlencoded",
            Self::Xfcc => "xfcc",
        }
    }
}

impl fmt::Display for ForwardedFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[intermediate_cert_validation]`: which CAs may have issued client
/// certificates, checked on the path verification built.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IntermediateCertValidation {
    /// Turns the check on. Default off; spanned so that errors can name its line.
    #[serde(default)]
    pub enable: Option<Spanned<bool>>,
    /// Common names of CAs on the verified path that make a certificate acceptable.
    #[serde(default)]
    pub cert_cns: Vec<String>,
    /// SHA-256 fingerprints (hex, `:` allowed) of an allowed CA certificate or of its
    /// public key (SubjectPublicKeyInfo), for CAs whose name could be reissued.
    #[serde(default)]
    pub cert_fingerprints: Vec<Spanned<String>>,
    /// Path prefixes (on segment boundaries) where the check is skipped.
    #[serde(default)]
    pub exempt_contexts: Vec<Spanned<String>>,
}
