// The built-in `oauth2` handler (SPEC A5, A7, A12-A16, C2, F8-F12): RFC 6750 bearer
// tokens, verified by `jwt.rs` (keys only from configuration, selected by issuer and `kid`,
// every claim check ours) or by introspection for opaque ones; this module owns the cache
// of verified tokens (digest -> a principal shared by the tokens of one caller), the
// certificate binding, the principal and the token users' store look-ups.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::HeaderValue;
use jsonwebtoken::Algorithm;
use quick_cache::sync::Cache;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::claims::{seconds, ClaimRules, Subjects};
use super::header::{has_scheme, token68};
use super::introspection::Introspector;
#[cfg(feature = "remote-keys")]
use super::jwks::KeySource;
use super::jwks::RemoteKeys;
use super::jwt::{install_crypto_provider, invalid, is_jws, stale_revocations, Issuer, JwtVerifier, LocalIssuer};
use super::keys::load_issuer_keys;
use super::AuthenticationHandler;
use crate::config::{ConfigError, Deployment, IssuerConfig, OAuth2Config, SourceMap};
use crate::error::{AuthError, AuthErrorKind};
use crate::identity::{Principal, QualifiedName, UserStore};
use crate::policy::OAUTH2_HANDLER;
use crate::state::RevokedTokens;
use crate::telemetry::{CacheCounters, CacheKind};

/// Bearer-token authentication (the `oauth2` handler).
///
/// Registered by [`crate::SecureLayerBuilder::build`] when the deployment has an
/// `[[oauth2.issuer]]`; build it yourself with [`BearerAuthenticator::builder`] (in code) or
/// [`BearerAuthenticator::from_config`] (from a rule file) to share it between layers.
///
/// ```
/// use tower_secure::authn::BearerAuthenticator;
/// use tower_secure::config::Deployment;
///
/// let deployment = Deployment::from_toml_str("deployment.toml", r#"
///     [[oauth2.issuer]]
///     issuer = "https://idp.example.com"
///     audience = "my-api"
///     [[oauth2.issuer.key]]
///     kid = "hmac-1"
///     algorithm = "HS256"
///     secret_base64 = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="
/// "#)?;
/// let bearer = BearerAuthenticator::from_config(&deployment, None)?;
/// assert!(bearer.is_some());
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct BearerAuthenticator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BearerAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuthenticator").finish_non_exhaustive()
    }
}

struct Inner {
    /// The issuers and the checks every token meets.
    jwt: JwtVerifier,
    max_token_bytes: usize,
    /// Verified tokens by SHA-256 of the whole token; entries never outlive `exp`.
    cache: Cache<[u8; 32], VerifiedToken>,
    /// Hits and misses of `cache` (feature `metrics`).
    cache_counters: CacheCounters,
    /// Principals recently built, by [`Principal::content_hash`]: the tokens of one caller
    /// (a new one per hour, per device, per request) share one principal in `cache`
    /// instead of a copy each.
    principals: Cache<u64, Principal>,
    /// Where token users' permissions come from.
    store: Option<TokenUsers>,
    introspection: Option<Introspector>,
    /// Bumped by a remote key source when a key is retired: cached tokens of an older
    /// epoch are verified again, so tokens of a withdrawn key stop working at once.
    key_epoch: Arc<AtomicU64>,
    /// The revocation list of a token server in this process, for its tokens.
    revoked: Option<RevokedTokens>,
}

/// The user store of token users: their permissions, and whether they still exist.
struct TokenUsers {
    store: Arc<dyn UserStore>,
    /// How long a look-up may take.
    timeout: Duration,
    /// The longest a verification is cached (`cache_ttl_seconds`), so that a user disabled
    /// or removed behind the crate's back loses a cached token within it.
    cache_seconds: u64,
}

#[derive(Clone)]
struct VerifiedToken {
    principal: Principal,
    exp: u64,
    /// The key epoch when the token was verified; see [`Inner::key_epoch`].
    epoch: u64,
    /// The revocation generation when the token was verified; see [`RevokedTokens`].
    revocations: u64,
    /// For tokens of this process's token server: what a revocation names (`jti`, client,
    /// `iat`), looked up again when the generation moved instead of verifying anew. Shared:
    /// a cache hit clones the entry, and must not copy its strings.
    revocation_key: Option<Arc<RevocationKey>>,
    /// `cnf.x5t#S256`: the client certificate the token is bound to (RFC 8705).
    bound_to: Option<[u8; 32]>,
}

impl BearerAuthenticator {
    /// The handler for the deployment's `[oauth2]` section, or `None` when it names no
    /// issuer. `store`, when given, supplies the permissions of token users (a
    /// token caller on a rule with only permissions is judged by its user's).
    pub fn from_config(
        deployment: &Deployment,
        store: Option<Arc<dyn UserStore>>,
    ) -> Result<Option<Self>, ConfigError> {
        Self::with_local_issuer(deployment, store, None)
    }

    /// [`from_config`](Self::from_config), also trusting the token server of this process.
    pub(crate) fn with_local_issuer(
        deployment: &Deployment,
        store: Option<Arc<dyn UserStore>>,
        local: Option<LocalIssuer>,
    ) -> Result<Option<Self>, ConfigError> {
        install_crypto_provider();
        let config = &deployment.oauth2;
        if config.issuer.is_empty() && config.introspection.is_none() && local.is_none() {
            return Ok(None);
        }
        let source = &deployment.source;
        let mut issuers = HashMap::new();
        let key_epoch = Arc::new(AtomicU64::new(0));
        for table in &config.issuer {
            let issuer = table.get_ref();
            let allowed = allowed_algorithms(issuer, source)?;
            let keys = load_issuer_keys(issuer, allowed.as_deref(), source)?;
            let remote = remote_keys(issuer, allowed, config, source, &key_epoch)?;
            if keys.is_empty() && remote.is_none() {
                let message = "an issuer needs keys: key tables, jwks_file, jwks_uri or discovery = true";
                return Err(source.error(issuer.issuer.span(), "issuer", message));
            }
            let name = issuer.issuer.get_ref().clone();
            if issuer.introspect && config.introspection.is_none() {
                let message = "introspect = true needs an [oauth2.introspection] endpoint";
                return Err(source.error(issuer.issuer.span(), "introspect", message));
            }
            let entry = Issuer {
                name: name.clone(),
                audience: issuer.audience.clone(),
                rules: ClaimRules::from_settings(issuer.claim_settings(), &config.roles_claim, source)?,
                keys,
                remote,
                revoked: None,
                introspect: issuer.introspect,
            };
            if issuers.insert(name, entry).is_some() {
                return Err(source.error(issuer.issuer.span(), "issuer", "this issuer is configured twice"));
            }
        }
        let revoked = local.as_ref().map(|l| l.revoked.clone());
        if let Some(local) = local {
            let name = local.issuer.clone();
            if issuers.insert(name, Issuer::local(local, ClaimRules::local(&config.roles_claim))).is_some() {
                let span = config.issuer.first().map_or(0..0, |i| i.span());
                let message = "the token server's own issuer is also an [[oauth2.issuer]]: remove one";
                return Err(source.error(span, "issuer", message));
            }
        }
        let introspection = match &config.introspection {
            None => None,
            Some(intro) => {
                let rules = ClaimRules::from_settings(intro.claim_settings(), &config.roles_claim, source)?;
                Some(Introspector::new(intro, rules, source)?)
            }
        };
        let basic = &deployment.authentication.basic;
        let store = store.map(|s| TokenUsers {
            store: s,
            timeout: Duration::from_secs(basic.store_timeout_seconds.max(1)),
            cache_seconds: basic.cache_ttl_seconds,
        });
        Ok(Some(Self::new(config, issuers, store, introspection, key_epoch, revoked)))
    }

    fn new(
        config: &OAuth2Config,
        issuers: HashMap<String, Issuer>,
        store: Option<TokenUsers>,
        introspection: Option<Introspector>,
        key_epoch: Arc<AtomicU64>,
        revoked: Option<RevokedTokens>,
    ) -> Self {
        let jwt = JwtVerifier { issuers, leeway: config.leeway_seconds, require_typ: config.require_typ.clone() };
        let inner = Inner {
            jwt,
            max_token_bytes: config.max_token_bytes,
            cache: Cache::new(config.cache_capacity.max(1)),
            cache_counters: CacheCounters::new(CacheKind::Bearer),
            principals: Cache::new(PRINCIPALS_SHARED),
            store,
            introspection,
            key_epoch,
            revoked,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Forgets every verified token (after keys change).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// Forgets one token, so a revoked token is refused at once instead of when its cached
    /// verification runs out (the next use verifies it again, locally or by introspection).
    pub fn forget_token(&self, token: &str) {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.inner.cache.remove(&digest);
    }
}

/// How many distinct principals [`Inner::principals`] remembers for sharing.
const PRINCIPALS_SHARED: usize = 4096;

/// What a revocation of a token of this process's token server names.
#[derive(Clone)]
struct RevocationKey {
    jti: Option<String>,
    client: Option<String>,
    iat: Option<u64>,
}

impl Inner {
    fn token<'a>(&self, request: &'a Parts) -> Result<&'a str, AuthError> {
        let value = request
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| AuthError::internal("oauth2 handler called without a credential"))?;
        token68(value, self.max_token_bytes)
    }

    fn cached(&self, digest: &[u8; 32], request: &Parts) -> Option<Result<Principal, AuthError>> {
        let decided = self.cached_entry(digest, request);
        self.cache_counters.record(decided.is_some());
        decided
    }

    fn cached_entry(&self, digest: &[u8; 32], request: &Parts) -> Option<Result<Principal, AuthError>> {
        let hit = self.cache.get(digest)?;
        if hit.epoch != self.key_epoch.load(Ordering::Acquire) || crate::unix_seconds() >= hit.exp {
            return None;
        }
        if let (Some(key), Some(revoked)) = (&hit.revocation_key, &self.revoked) {
            if revoked.is_stale() {
                return Some(Err(stale_revocations()));
            }
            // A revocation since this token was verified: look the token up in the set
            // (no new signature check), and remember the generation it passed at.
            let generation = revoked.generation();
            if hit.revocations != generation {
                if revoked.is_revoked(key.jti.as_deref(), key.client.as_deref(), key.iat) {
                    self.cache.remove(digest);
                    return Some(Err(invalid("token revoked")));
                }
                self.cache.insert(*digest, VerifiedToken { revocations: generation, ..hit.clone() });
            }
        }
        Some(check_binding(hit.bound_to, request).map(|()| hit.principal))
    }

    fn revocations(&self) -> u64 {
        self.revoked.as_ref().map_or(0, RevokedTokens::generation)
    }

    /// The uncached path: `authenticate_now` already missed the cache for this token.
    async fn authenticate(&self, token: &str, request: &Parts) -> Result<Principal, AuthError> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Read before verifying: a key retired meanwhile makes this entry stale at once.
        let epoch = self.key_epoch.load(Ordering::Acquire);
        let revocations = self.revocations();
        let (claims, exp, rules, introspected, local) = if is_jws(token) {
            let (claims, exp, issuer) = self.jwt.verify(token).await?;
            let exp = self.introspect_verified(token, exp, issuer).await?;
            (claims, exp, &issuer.rules, false, issuer.revoked.is_some())
        } else {
            let (answer, until, rules) = self.introspect_opaque(token).await?;
            (answer, until, rules, true, false)
        };
        let bound_to = certificate_binding(&claims)?;
        check_binding(bound_to, request)?;
        let principal = self.shared(self.principal(&claims, rules, introspected).await?);
        let now = crate::unix_seconds();
        // A token user's store record is read again at least every `cache_ttl_seconds`.
        let exp = match &self.store {
            Some(users) => exp.min(now.saturating_add(users.cache_seconds)),
            None => exp,
        };
        if now < exp {
            let revocation_key = local.then(|| {
                let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
                Arc::new(RevocationKey {
                    jti: text("jti"),
                    client: text("client_id"),
                    iat: claims.get("iat").and_then(seconds),
                })
            });
            let verified =
                VerifiedToken { principal: principal.clone(), exp, epoch, revocations, revocation_key, bound_to };
            self.cache.insert(digest, verified);
        }
        Ok(principal)
    }

    /// An equal principal already in use, or this one (remembered for the next token).
    fn shared(&self, principal: Principal) -> Principal {
        let key = principal.content_hash();
        match self.principals.get(&key) {
            Some(known) if known == principal => known,
            _ => {
                self.principals.insert(key, principal.clone());
                principal
            }
        }
    }

    /// A verified JWT of an issuer with `introspect = true` is also sent to introspection
    /// (only a token that passed local verification is); the answer must name the
    /// issuer's audience (or the introspection audience) and this issuer. Returns
    /// how long the verification may be cached.
    async fn introspect_verified(&self, token: &str, exp: u64, issuer: &Issuer) -> Result<u64, AuthError> {
        let (true, Some(introspection)) = (issuer.introspect, &self.introspection) else { return Ok(exp) };
        let now = crate::unix_seconds();
        let answer = introspection.introspect(token, now).await?;
        let audiences = match &issuer.audience {
            Some(audience) => std::slice::from_ref(audience),
            None => introspection.audiences(),
        };
        introspection.check_audience_and_issuer(&answer, audiences, |iss| iss == issuer.name)?;
        Ok(exp.min(now.saturating_add(introspection.cache_max_seconds())))
    }

    /// A token that is not a JWT, checked by introspection (a JWT that fails local
    /// verification is never sent on). The answer must name the introspection
    /// audience and, when it names an issuer, the configured one or one of the issuers.
    /// Returns the answer, how long it may be cached, and its claim rules.
    async fn introspect_opaque(&self, token: &str) -> Result<(Value, u64, &ClaimRules), AuthError> {
        let introspection = self.introspection.as_ref().ok_or_else(|| invalid("not a JWT"))?;
        let now = crate::unix_seconds();
        let answer = introspection.introspect(token, now).await?;
        let trusted = |iss: &str| match introspection.issuer() {
            Some(issuer) => iss == issuer,
            None => self.jwt.trusts(iss),
        };
        introspection.check_audience_and_issuer(&answer, introspection.audiences(), trusted)?;
        let limit = now.saturating_add(introspection.cache_max_seconds());
        let until = answer.get("exp").and_then(seconds).map_or(limit, |exp| exp.min(limit));
        Ok((answer, until, introspection.rules()))
    }

    /// The caller the claims name under the issuer's `rules`: subject,
    /// scopes, roles, client from `client_id` or `azp`. Permissions come from the user store
    /// only for qualified subjects; a token of this process's token server is refused
    /// once its user is gone or disabled.
    async fn principal(&self, claims: &Value, rules: &ClaimRules, introspected: bool) -> Result<Principal, AuthError> {
        let subject = rules.subject(claims, introspected)?;
        let name = rules.name(claims, subject)?;
        let scopes = rules.scopes(claims)?;
        let roles = rules.roles(claims)?;
        let client_id = match claims.get("client_id").or_else(|| claims.get("azp")) {
            None => None,
            Some(Value::String(id)) => Some(id.clone()),
            Some(_) => return Err(invalid("client_id is not a string")),
        };
        // A client-credentials token names its client as `sub` (RFC 9068): it holds no
        // user's permissions, even when a user of the same name exists.
        let client_token = client_id.as_deref() == Some(subject);
        let mut builder = Principal::builder(name.clone(), OAUTH2_HANDLER).scopes(scopes).roles(roles);
        if let Some(id) = client_id {
            builder = builder.client_id(id);
        }
        if rules.subjects != Subjects::Opaque && !client_token {
            if let Some(permissions) = self.user_permissions(&name, rules.subjects).await? {
                builder = builder.permissions(permissions);
            }
        }
        Ok(builder.build())
    }

    /// The permissions of a token's user; `None` when there is no store, or (for
    /// qualified subjects of another issuer) the store does not know the user. A disabled
    /// user, and a user of this process's token server that is gone, are refused.
    async fn user_permissions(
        &self,
        name: &QualifiedName,
        subjects: Subjects,
    ) -> Result<Option<crate::identity::PermissionSet>, AuthError> {
        let Some(TokenUsers { store, timeout, .. }) = &self.store else {
            return match subjects {
                Subjects::Local => Err(invalid("no user store to confirm the token user")),
                _ => Ok(None),
            };
        };
        match super::find_user(&**store, name, *timeout).await? {
            Some(record) if record.disabled => Err(invalid("token user is disabled")),
            Some(record) => Ok(Some(record.permissions)),
            None if subjects == Subjects::Local => Err(invalid("token user no longer exists")),
            None => Ok(None),
        }
    }
}

/// `cnf.x5t#S256` (RFC 8705): the SHA-256 of the client certificate the token is bound to.
fn certificate_binding(claims: &Value) -> Result<Option<[u8; 32]>, AuthError> {
    let Some(cnf) = claims.get("cnf") else { return Ok(None) };
    let Some(thumbprint) = cnf.get("x5t#S256") else {
        // Other confirmation methods (DPoP `jkt`, ...) are not checked here: refuse, not ignore.
        return Err(invalid("unsupported cnf confirmation method"));
    };
    let bytes = thumbprint
        .as_str()
        .and_then(|t| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| invalid("cnf x5t#S256 is not a base64url SHA-256"))?;
    Ok(Some(bytes))
}

/// A certificate-bound token is accepted only over a connection whose client certificate
/// has that thumbprint; without the `tls` feature there is no such connection.
fn check_binding(bound_to: Option<[u8; 32]>, request: &Parts) -> Result<(), AuthError> {
    let Some(expected) = bound_to else { return Ok(()) };
    #[cfg(feature = "tls")]
    {
        use subtle::ConstantTimeEq as _;
        let presented = request.extensions.get::<super::ClientCertificate>().map(|c| c.thumbprint_sha256());
        if presented.is_some_and(|p| bool::from(p.ct_eq(&expected))) {
            return Ok(());
        }
    }
    let _ = (expected, request);
    Err(invalid("token bound to another client certificate"))
}

/// `algorithms = [...]` of an issuer: JWS algorithms this crate verifies, at least one.
fn allowed_algorithms(issuer: &IssuerConfig, source: &SourceMap) -> Result<Option<Vec<Algorithm>>, ConfigError> {
    let Some(list) = &issuer.algorithms else { return Ok(None) };
    let error = |message: String| source.error(list.span(), "algorithms", message);
    if list.get_ref().is_empty() {
        return Err(error("name at least one algorithm".to_owned()));
    }
    let parse = |name: &String| {
        name.parse::<Algorithm>().map_err(|_| error(format!("`{name}` is not a JWS algorithm this crate verifies")))
    };
    list.get_ref().iter().map(parse).collect::<Result<Vec<_>, _>>().map(Some)
}

/// Without the `remote-keys` feature nothing is fetched: a rule file that asks for it is
/// refused at load.
#[cfg(not(feature = "remote-keys"))]
fn remote_keys(
    issuer: &IssuerConfig,
    _allowed: Option<Vec<Algorithm>>,
    _config: &OAuth2Config,
    source: &SourceMap,
    _key_epoch: &Arc<AtomicU64>,
) -> Result<Option<Arc<RemoteKeys>>, ConfigError> {
    const NEEDS: &str = "fetching keys needs tower-secure's `remote-keys` feature";
    match (&issuer.jwks_uri, issuer.discovery) {
        (Some(uri), _) => Err(source.error(uri.span(), "jwks_uri", NEEDS)),
        (None, true) => Err(source.error(issuer.issuer.span(), "discovery", NEEDS)),
        (None, false) => Ok(None),
    }
}

#[cfg(feature = "remote-keys")]
fn remote_keys(
    issuer: &IssuerConfig,
    allowed: Option<Vec<Algorithm>>,
    config: &OAuth2Config,
    source: &SourceMap,
    key_epoch: &Arc<AtomicU64>,
) -> Result<Option<Arc<RemoteKeys>>, ConfigError> {
    let key_source = match (&issuer.jwks_uri, issuer.discovery) {
        (Some(uri), false) => {
            let valid = uri.get_ref().starts_with("https://") || uri.get_ref().starts_with("http://");
            if !valid {
                return Err(source.error(uri.span(), "jwks_uri", "must be an http(s) URL"));
            }
            KeySource::Jwks(uri.get_ref().clone())
        }
        (None, true) => KeySource::Discovery(issuer.issuer.get_ref().clone()),
        (Some(uri), true) => {
            return Err(source.error(uri.span(), "jwks_uri", "give jwks_uri or discovery = true, not both"))
        }
        (None, false) => return Ok(None),
    };
    let seconds = Duration::from_secs;
    let remote = RemoteKeys::new(
        key_source,
        allowed,
        seconds(config.jwks_refresh_seconds.max(1)),
        seconds(config.jwks_min_refresh_seconds),
        seconds(config.jwks_timeout_seconds.max(1)),
        Arc::clone(key_epoch),
    )
    .map_err(|m| source.error(issuer.issuer.span(), "issuer", m))?;
    let remote = Arc::new(remote);
    remote.ensure_background();
    Ok(Some(remote))
}

#[async_trait]
impl AuthenticationHandler for BearerAuthenticator {
    fn name(&self) -> &str {
        OAUTH2_HANDLER
    }

    fn users_changed(&self) {
        self.clear_cache();
    }

    fn default_priority(&self) -> i32 {
        30
    }

    fn can_handle(&self, request: &Parts) -> bool {
        request.headers.get(AUTHORIZATION).is_some_and(|v| has_scheme(v, "Bearer"))
    }

    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
        let token = self.inner.token(request)?;
        self.inner.authenticate(token, request).await
    }

    fn authenticate_now(&self, request: &Parts) -> Option<Result<Principal, AuthError>> {
        let token = match self.inner.token(request) {
            Ok(token) => token,
            Err(error) => return Some(Err(error)),
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.inner.cached(&digest, request)
    }

    /// RFC 6750 section 3: `invalid_request` for a malformed header, `invalid_token` for
    /// a refused token, `insufficient_scope` with the required `scope` for a 403.
    fn challenge(&self, realm: &str, error: Option<&AuthError>) -> Option<HeaderValue> {
        let realm = realm.replace(['"', '\\'], "");
        let detail = match error {
            None => String::new(),
            Some(e) => match (e.kind(), e.required_scope()) {
                (AuthErrorKind::InvalidRequest | AuthErrorKind::HeaderTooLarge, _) => {
                    ", error=\"invalid_request\"".to_owned()
                }
                (AuthErrorKind::InvalidCredentials, _) => ", error=\"invalid_token\"".to_owned(),
                (AuthErrorKind::Forbidden, Some(scope)) => {
                    format!(", error=\"insufficient_scope\", scope=\"{}\"", scope.replace(['"', '\\'], ""))
                }
                _ => return None,
            },
        };
        HeaderValue::from_str(&format!("Bearer realm=\"{realm}\"{detail}")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC A7: RFC 6750 challenges.
    #[test]
    fn challenges() {
        let bearer =
            BearerAuthenticator::new(&OAuth2Config::default(), HashMap::new(), None, None, Arc::default(), None);
        let text = |e: Option<&AuthError>| bearer.challenge("api", e).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(text(None).unwrap(), r#"Bearer realm="api""#);
        assert_eq!(text(Some(&invalid("x"))).unwrap(), r#"Bearer realm="api", error="invalid_token""#);
        assert_eq!(
            text(Some(&AuthError::invalid_request("x"))).unwrap(),
            r#"Bearer realm="api", error="invalid_request""#
        );
        let scope = AuthError::insufficient_scope(&["a".to_owned(), "b".to_owned()]);
        assert_eq!(text(Some(&scope)).unwrap(), r#"Bearer realm="api", error="insufficient_scope", scope="a b""#);
        assert!(text(Some(&AuthError::forbidden("tenant"))).is_none());
    }

    // SPEC A5, issue 17: the verified-token cache keeps one principal per caller, not a copy
    // per token: distinct tokens of the same caller share it; a caller holding other
    // scopes, or another caller, gets its own.
    #[tokio::test]
    async fn tokens_of_one_caller_share_their_principal() {
        let secret = b"an issuer secret of 32 bytes ok!";
        let text = format!(
            "[[oauth2.issuer]]\nissuer = \"https://idp.test\"\n[[oauth2.issuer.key]]\nkid = \"k1\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{}\"\n",
            base64::engine::general_purpose::STANDARD.encode(secret)
        );
        let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
        let bearer = BearerAuthenticator::from_config(&deployment, None).unwrap().unwrap();
        let request = |sub: &str, jti: &str, scope: &str| {
            let claims = serde_json::json!({
                "iss": "https://idp.test", "sub": sub, "jti": jti, "scope": scope, "exp": 4_000_000_000u64,
            });
            let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
            header.kid = Some("k1".to_owned());
            let token =
                jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap();
            http::Request::builder().header(AUTHORIZATION, format!("Bearer {token}")).body(()).unwrap().into_parts().0
        };
        let first = bearer.authenticate(&request("alex", "1", "read")).await.unwrap();
        let second = bearer.authenticate(&request("alex", "2", "read")).await.unwrap();
        let other_scope = bearer.authenticate(&request("alex", "3", "write")).await.unwrap();
        let other_user = bearer.authenticate(&request("bob", "4", "read")).await.unwrap();
        assert!(first.is_same(&second), "two tokens of alex with the same scopes share one principal");
        assert_eq!(other_scope.scopes(), Some(&["write".to_owned()][..]));
        assert!(!first.is_same(&other_scope) && !first.is_same(&other_user));
        assert_eq!(other_user.name().user(), "bob");
        // The cached entry of the second token is the shared principal too.
        let cached = bearer.authenticate_now(&request("alex", "2", "read")).unwrap().unwrap();
        assert!(cached.is_same(&first));
    }
}
