//! The configuration model: the `deployment.toml`-style rule file (SPEC B1, C4) and the
//! users file, loaded strictly. Every load error names file, line, column and key.
//!
//! This module only reads and shapes TOML; [`crate::policy`] turns the rules into a
//! lookup index, and the layer builder turns the rest into handlers.

mod error;
mod users;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
pub use toml::Spanned;

pub use error::{ConfigError, SourceMap};
pub use users::{load_clients, load_clients_file, load_users, load_users_file, ClientRecord, GRANT_TYPES};

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
/// assert_eq!(deployment.resource.access_control.len(), 1);
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Deployment {
    /// `[resource]`: the access-control rules.
    pub resource: ResourceConfig,
    /// `[authentication]`: realm, handler priorities, Basic settings.
    pub authentication: AuthenticationConfig,
    /// `[cors]`: how CORS preflight requests are treated (SPEC E2).
    pub cors: CorsConfig,
    /// `[[scope]]`: scope definitions (SPEC C4).
    pub scopes: Vec<Spanned<ScopeConfig>>,
    /// `[oauth2]`: bearer-token validation (SPEC A5).
    pub oauth2: OAuth2Config,
    /// `[scope_validation]`: which requested scopes the token endpoint grants (SPEC D2, D3).
    pub scope_validation: ScopeValidationConfig,
    /// `[oauth2_server]`: the built-in token endpoint (SPEC D1, D5); `None` when absent.
    pub oauth2_server: Option<Spanned<OAuth2ServerConfig>>,
    /// `[client_cert]`: the `client_cert` handler (SPEC A8); `None` when absent.
    pub client_cert: Option<Spanned<ClientCertConfig>>,
    /// `[intermediate_cert_validation]` (SPEC A9).
    pub intermediate_cert_validation: IntermediateCertValidation,
    /// Where the text came from, for error positions.
    pub source: SourceMap,
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
}

impl Deployment {
    /// Parses rule-file text; `file` names it in errors.
    pub fn from_toml_str(file: &str, text: &str) -> Result<Self, ConfigError> {
        let source = SourceMap::new(file, text);
        let parsed: DeploymentFile = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
        Ok(Self {
            resource: parsed.resource,
            authentication: parsed.authentication,
            cors: parsed.cors,
            scopes: parsed.scope,
            oauth2: parsed.oauth2,
            scope_validation: parsed.scope_validation,
            oauth2_server: parsed.oauth2_server,
            client_cert: parsed.client_cert,
            intermediate_cert_validation: parsed.intermediate_cert_validation,
            source,
        })
    }

    /// Reads and parses a rule file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let (name, text) = read_file(path.as_ref())?;
        Self::from_toml_str(&name, &text)
    }
}

impl Default for Deployment {
    /// No rules: everything needs an authenticated caller.
    fn default() -> Self {
        Self {
            resource: ResourceConfig::default(),
            authentication: AuthenticationConfig::default(),
            cors: CorsConfig::default(),
            scopes: Vec::new(),
            oauth2: OAuth2Config::default(),
            scope_validation: ScopeValidationConfig::default(),
            oauth2_server: None,
            client_cert: None,
            intermediate_cert_validation: IntermediateCertValidation::default(),
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
pub struct ResourceConfig {
    /// `[[resource.access_control]]` tables, in file order (order does not matter: the
    /// most specific rule wins, SPEC B4).
    #[serde(default)]
    pub access_control: Vec<Spanned<RuleConfig>>,
}

/// One `[[resource.access_control]]` table, as written (SPEC B1).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The path pattern (SPEC B3).
    pub context: Spanned<String>,
    /// `false` opens the resource to anonymous callers. Default `true` (see [`RuleConfig::is_secure`]).
    #[serde(default)]
    pub secure: Option<Spanned<bool>>,
    /// `all` (default), one method or a list.
    #[serde(default)]
    pub http_method: Option<Spanned<OneOrMany>>,
    /// Permissions the caller must hold.
    #[serde(default)]
    pub permissions: Option<Spanned<OneOrMany>>,
    /// Scopes the caller's token must carry (`scopes` is accepted too).
    #[serde(default, alias = "scopes")]
    pub scope: Option<Spanned<OneOrMany>>,
    /// Handlers allowed to authenticate callers of this resource. Default: all.
    #[serde(default)]
    pub allowed_auth_handlers: Option<Spanned<OneOrMany>>,
    /// `true` replaces a handler's compile-time rule instead of adding to it (SPEC B5).
    #[serde(default, rename = "override")]
    pub override_compiled: bool,
    /// `all` (default) or `any` of `permissions`.
    #[serde(default)]
    pub permissions_match: MatchMode,
    /// `all` (default) or `any` of `scope`.
    #[serde(default)]
    pub scopes_match: MatchMode,
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

/// `cross_tenant = true | false | ["tenant", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "`true`, `false` or a list of tenant names")]
pub enum CrossTenantConfig {
    /// All or no other tenants.
    Flag(bool),
    /// These tenants.
    Tenants(Vec<String>),
}

/// A string or a list of strings (`http_method = "GET"` or `["GET", "POST"]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OneOrMany(pub Vec<String>);

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
pub struct AuthenticationConfig {
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

/// `[authentication.basic]`: the verification cache, lockout and hashing throttle (SPEC A4).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BasicConfig {
    /// How long a verified credential is trusted without re-hashing. Default 300.
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

/// `[cors]` (SPEC E2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// `true` authenticates CORS preflight requests like any other. Default `false`: a
    /// preflight carries no credentials by the Fetch standard and passes to the CORS layer.
    #[serde(default)]
    pub authenticate_preflight: bool,
}

/// One `[[scope]]` table (SPEC C4).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// The scope name.
    pub name: Spanned<String>,
    /// Permissions the scope is bound to.
    #[serde(default)]
    pub permissions: Vec<Spanned<String>>,
    /// Roles that may receive the scope.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `[oauth2]`: how bearer tokens are validated (SPEC A5, F8-F12). The `oauth2` handler is
/// registered when at least one `[[oauth2.issuer]]` is configured.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OAuth2Config {
    /// Clock skew allowed for `exp`, `nbf` and `iat`, in seconds. Default 60.
    pub leeway_seconds: u64,
    /// When set (e.g. `"at+jwt"`, RFC 9068), the token's `typ` header must be this
    /// (or `application/` + this), which keeps ID tokens out.
    pub require_typ: Option<String>,
    /// The claim holding the caller's roles (an array of strings). Default `roles`.
    pub roles_claim: String,
    /// Longest token accepted, in bytes. Default 8192.
    pub max_token_bytes: usize,
    /// How many verified tokens (and introspection results) are cached at most; entries
    /// never outlive `exp`. Default 10,000.
    pub cache_capacity: usize,
    /// How often keys from a `jwks_uri` (or discovery) are fetched again. Default 300.
    pub jwks_refresh_seconds: u64,
    /// The least time between two fetches; an unknown `kid` refreshes at most this often.
    /// Default 10.
    pub jwks_min_refresh_seconds: u64,
    /// Time limit of one key fetch. Default 5.
    pub jwks_timeout_seconds: u64,
    /// The trusted token issuers.
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
            max_token_bytes: 8192,
            cache_capacity: 10_000,
            jwks_refresh_seconds: 300,
            jwks_min_refresh_seconds: 10,
            jwks_timeout_seconds: 5,
            issuer: Vec::new(),
            introspection: None,
        }
    }
}

/// `[[oauth2.issuer]]`: one trusted issuer and the keys that verify its tokens.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The exact `iss` value of its tokens.
    pub issuer: Spanned<String>,
    /// When set, the token's `aud` must be or contain this value.
    #[serde(default)]
    pub audience: Option<String>,
    /// A JWKS file (`{"keys": [...]}`) with this issuer's public keys; each key needs
    /// `kid` and `alg`.
    #[serde(default)]
    pub jwks_file: Option<Spanned<String>>,
    /// A JWKS URL, fetched in the background (and, rate limited, on an unknown `kid`).
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
}

/// `[[oauth2.issuer.key]]`: one verification key with its one algorithm (SPEC F8).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
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

/// `[oauth2.introspection]` (SPEC A6): tokens that are not JWTs are checked at this RFC 7662
/// endpoint. A JWT is never sent there, even when it fails local verification.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint URL.
    pub endpoint: Spanned<String>,
    /// This API's client id at the authorization server (HTTP Basic client authentication).
    pub client_id: String,
    /// Its client secret.
    pub client_secret: String,
    /// The longest a result is trusted without asking again; never past the token's
    /// `exp`. Default 60.
    #[serde(default = "default_introspection_seconds")]
    pub cache_max_seconds: u64,
    /// Time limit of one call. Default 5.
    #[serde(default = "default_introspection_timeout")]
    pub timeout_seconds: u64,
}

fn default_introspection_seconds() -> u64 {
    60
}

fn default_introspection_timeout() -> u64 {
    5
}

/// `[scope_validation]` (SPEC D2, D3): how the token endpoint decides which requested
/// scopes to grant. Definitions come from the `[[scope]]` tables.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScopeValidationConfig {
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

/// `[oauth2_server]` (SPEC D1, D5): the token endpoint this crate serves itself. Clients
/// are `[[client]]` tables in the users file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ServerConfig {
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

fn default_max_form_bytes() -> usize {
    8192
}

fn default_max_tracked_tokens() -> usize {
    100_000
}

/// `[[oauth2_server.key]]`: one signing key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    /// The `kid` put in token headers and in the JWKS.
    pub kid: Spanned<String>,
    /// `RS256` (with at least 2048 bits), `ES256`, `EdDSA` or `HS256`.
    pub algorithm: Spanned<String>,
    /// A PKCS#8 PEM private key, inline.
    #[serde(default)]
    pub pem: Option<Spanned<String>>,
    /// A PKCS#8 PEM private key file, relative to the working directory.
    #[serde(default)]
    pub pem_file: Option<Spanned<String>>,
    /// An HS256 secret, base64 (standard alphabet), at least 32 bytes. HMAC keys are never
    /// published; only a layer in the same process can verify such tokens.
    #[serde(default)]
    pub secret_base64: Option<Spanned<String>>,
}

/// `[client_cert]` (SPEC A8, F16): the `client_cert` handler, registered when this table is
/// present. Certificates from the crate's TLS server are verified there; forwarded ones
/// (from a TLS-terminating proxy) here.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// The header a trusted proxy forwards the client certificate in (for example
    /// `X-Forwarded-Client-Cert`, or `Client-Cert` for RFC 9440). Default: none, forwarded
    /// certificates are off.
    #[serde(default)]
    pub forwarded_header: Option<Spanned<String>>,
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

/// `[intermediate_cert_validation]` (SPEC A9): which CAs may have issued client
/// certificates, checked on the path verification built.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntermediateCertValidation {
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
