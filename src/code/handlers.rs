// Code first for the built-in authentication handlers: `BearerAuthenticator::builder()`
// (the `oauth2` handler on its own, to keep a handle on it) and `ClientCert`, the
// `[client_cert]` and `[intermediate_cert_validation]` tables in code. Like the rest of
// `code`, they fill the model a rule file fills, and the handlers are built from it by the
// code that builds the file's, so a handler made here behaves exactly as the file's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{spanned, strings, DeploymentBuilder, Issuer, Listing};
use crate::authn::BearerAuthenticator;
use crate::config::{ClientCertConfig, ConfigError, Deployment, ForwardedFormat};
use crate::identity::UserStore;

/// Builds a [`BearerAuthenticator`] in code; start with [`BearerAuthenticator::builder`].
///
/// ```
/// use std::time::Duration;
/// use tower_secure::authn::BearerAuthenticator;
/// use tower_secure::code::Issuer;
///
/// let bearer = BearerAuthenticator::builder()
///     .issuer(
///         Issuer::new("https://idp.example.com")
///             .hs256_base64("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==")
///             .audience("my-api"),
///     )
///     .leeway(Duration::from_secs(30))
///     .require_type("at+jwt")
///     .build()?;
/// # let _ = bearer;
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Default)]
pub struct BearerAuthenticatorBuilder {
    issuers: Vec<Issuer>,
    leeway: Option<Duration>,
    require_type: Option<String>,
    cache_capacity: Option<usize>,
    max_token_bytes: Option<usize>,
    store: Option<Arc<dyn UserStore>>,
}

impl std::fmt::Debug for BearerAuthenticatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthenticatorBuilder")
            .field("issuers", &self.issuers)
            .field("leeway", &self.leeway)
            .field("require_type", &self.require_type)
            .field("cache_capacity", &self.cache_capacity)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("user_store", &self.store.is_some())
            .finish()
    }
}

impl BearerAuthenticator {
    /// Builds the `oauth2` handler in code: the identity providers it trusts and how it
    /// checks their tokens. Give it to [`SecureLayerBuilder::bearer`](crate::SecureLayerBuilder::bearer).
    pub fn builder() -> BearerAuthenticatorBuilder {
        BearerAuthenticatorBuilder::default()
    }
}

impl BearerAuthenticatorBuilder {
    /// An identity provider whose tokens are accepted.
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// The clock skew allowed on `exp`, `nbf` and `iat` (whole seconds). Default 60 s.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = Some(leeway);
        self
    }

    /// The `typ` header every token must carry (`at+jwt` for RFC 9068 access tokens;
    /// `application/` may prefix it). Default: not checked.
    pub fn require_type(mut self, typ: impl Into<String>) -> Self {
        self.require_type = Some(typ.into());
        self
    }

    /// How many verified tokens are remembered. Default 10,000.
    pub fn cache_capacity(mut self, entries: usize) -> Self {
        self.cache_capacity = Some(entries);
        self
    }

    /// The longest token accepted, in bytes. Default 8 KiB.
    pub fn max_token_bytes(mut self, bytes: usize) -> Self {
        self.max_token_bytes = Some(bytes);
        self
    }

    /// Where token users' permissions come from (a rule with only permissions judges a
    /// token caller by its user's).
    pub fn user_store(mut self, store: impl UserStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Checks every issuer (keys, algorithms, claims; fetching keys of a JWKS URL or
    /// discovery starts here) and builds the handler. Errors name `<code>:N`, the N-th
    /// issuer added.
    pub fn build(self) -> Result<BearerAuthenticator, ConfigError> {
        let builder = self.issuers.into_iter().fold(Deployment::builder(), DeploymentBuilder::issuer);
        let mut deployment = builder.build()?;
        let settings = &mut deployment.oauth2;
        if let Some(leeway) = self.leeway {
            settings.leeway_seconds = leeway.as_secs();
        }
        if let Some(typ) = self.require_type {
            settings.require_typ = Some(typ);
        }
        if let Some(entries) = self.cache_capacity {
            settings.cache_capacity = entries;
        }
        if let Some(bytes) = self.max_token_bytes {
            settings.max_token_bytes = bytes;
        }
        let built = BearerAuthenticator::from_config(&deployment, self.store)?;
        built.ok_or_else(|| deployment.source.error(0..0, "issuer", "a bearer handler needs at least one issuer"))
    }
}

/// The `client_cert` handler's settings in code, as the `[client_cert]` and
/// `[intermediate_cert_validation]` tables hold them: which issuing CAs are allowed, where
/// the check is skipped, and a TLS-terminating proxy's forwarded certificate header.
/// Certificates from the crate's own TLS server need nothing here.
///
/// ```
/// use tower_secure::code::ClientCert;
/// use tower_secure::config::{Deployment, ForwardedFormat};
///
/// let deployment = Deployment::builder()
///     .client_cert(
///         ClientCert::new()
///             .allow_issuer_cn("Partner Intermediate CA")
///             .exempt_context("/scim2")
///             .forwarded("X-Forwarded-Client-Cert", ForwardedFormat::Xfcc, ["10.0.0.5"], "/etc/proxy/ca.pem"),
///     )
///     .build()?;
/// assert!(deployment.client_cert_enabled());
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientCert {
    issuer_cns: Vec<String>,
    issuer_fingerprints: Vec<String>,
    exempt_contexts: Vec<String>,
    forwarded: Option<Forwarded>,
    /// Kept whatever the order of the calls; refused at build without `forwarded`.
    intermediates_file: Option<String>,
}

#[derive(Debug, Clone)]
struct Forwarded {
    header: String,
    format: ForwardedFormat,
    proxies: Vec<String>,
    ca_file: String,
}

impl ClientCert {
    /// Any certificate that verifies against the TLS server's roots names its user.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows certificates whose verified path contains a CA with this common name. Once
    /// one CA is allowed (by name or fingerprint), certificates of other CAs are refused.
    pub fn allow_issuer_cn(mut self, common_name: impl Into<String>) -> Self {
        self.issuer_cns.push(common_name.into());
        self
    }

    /// Allows a CA by the SHA-256 (hex, `:` allowed) of its certificate or of its public
    /// key, for a CA whose name could be reissued.
    pub fn allow_issuer_fingerprint(mut self, sha256_hex: impl Into<String>) -> Self {
        self.issuer_fingerprints.push(sha256_hex.into());
        self
    }

    /// A path prefix (on segment boundaries, such as `/scim2`) where the allowed-CA check is
    /// skipped; the certificate must still verify.
    pub fn exempt_context(mut self, path: impl Into<String>) -> Self {
        self.exempt_contexts.push(path.into());
        self
    }

    /// Believes client certificates forwarded in `header`, written in `format`, only from
    /// these proxies (IP addresses), verified against the CA certificates in `ca_file`.
    pub fn forwarded(
        mut self,
        header: impl Into<String>,
        format: ForwardedFormat,
        proxies: impl IntoIterator<Item = impl Into<String>>,
        ca_file: impl AsRef<Path>,
    ) -> Self {
        self.forwarded = Some(Forwarded {
            header: header.into(),
            format,
            proxies: strings(proxies),
            ca_file: ca_file.as_ref().display().to_string(),
        });
        self
    }

    /// Intermediate CA certificates for building a forwarded certificate's path (the
    /// header carries the client certificate alone). Needs [`forwarded`](Self::forwarded)
    /// (before or after this call); without it, building is an error.
    pub fn intermediates_file(mut self, file: impl AsRef<Path>) -> Self {
        self.intermediates_file = Some(file.as_ref().display().to_string());
        self
    }

    /// Writes the settings into the deployment's two tables, as one item of `listing`.
    pub(super) fn fill(self, deployment: &mut Deployment, listing: &mut Listing) {
        let span = listing.item("client certificates");
        let validation = &mut deployment.intermediate_cert_validation;
        if !(self.issuer_cns.is_empty() && self.issuer_fingerprints.is_empty() && self.exempt_contexts.is_empty()) {
            validation.enable = Some(spanned(&span, true));
        }
        validation.cert_cns = self.issuer_cns;
        validation.cert_fingerprints = self.issuer_fingerprints.into_iter().map(|f| spanned(&span, f)).collect();
        validation.exempt_contexts = self.exempt_contexts.into_iter().map(|c| spanned(&span, c)).collect();
        let mut table = ClientCertConfig::default();
        if let Some(forwarded) = self.forwarded {
            table.forwarded_header = Some(spanned(&span, forwarded.header));
            table.forwarded_format = Some(spanned(&span, forwarded.format));
            table.trusted_proxies = forwarded.proxies.into_iter().map(|p| spanned(&span, p)).collect();
            table.ca_file = Some(spanned(&span, forwarded.ca_file));
        }
        table.intermediates_file = self.intermediates_file.map(|f| spanned(&span, f));
        deployment.client_cert = Some(spanned(&span, table));
    }
}

#[cfg(feature = "tls")]
impl crate::authn::ClientCertAuthenticator {
    /// The `client_cert` handler with these settings, its users in `store`. Errors name
    /// `<code>:1`.
    ///
    /// ```
    /// use tower_secure::authn::ClientCertAuthenticator;
    /// use tower_secure::code::ClientCert;
    /// use tower_secure::identity::InMemoryUserStore;
    ///
    /// let handler = ClientCertAuthenticator::new(
    ///     ClientCert::new().allow_issuer_cn("Partner Intermediate CA"),
    ///     InMemoryUserStore::default(),
    /// )?;
    /// # let _ = handler;
    /// # Ok::<(), tower_secure::config::ConfigError>(())
    /// ```
    pub fn new(settings: ClientCert, store: impl UserStore) -> Result<Self, ConfigError> {
        let deployment = Deployment::builder().client_cert(settings).build()?;
        let built = Self::from_config(&deployment, Arc::new(store))?;
        // `client_cert` above wrote the `[client_cert]` table `from_config` looks for.
        built.ok_or_else(|| deployment.source.error(0..0, "client_cert", "no client certificate settings"))
    }
}
