// The built-in `oauth2` handler (SPEC A5, A7, A12-A16, C2, F8-F12): RFC 6750 bearer
// tokens, verified as JWTs with keys that come only from configuration, selected by issuer
// and `kid`, each key with the algorithms its issuer allows for it. jsonwebtoken checks the
// signature; every claim check is ours, because it leaves gaps (absent `iss`/`aud` pass,
// `iss` arrays pass, `crit` and `typ` are never checked).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::HeaderValue;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use quick_cache::sync::Cache;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::claims::{ClaimRules, Subjects};
use super::header::{has_scheme, token68};
use super::introspection::Introspector;
#[cfg(feature = "remote-keys")]
use super::jwks::KeySource;
use super::jwks::RemoteKeys;
use super::{AuthenticationHandler, RevokedTokens};
use crate::config::{ConfigError, Deployment, IssuerConfig, KeyConfig, OAuth2Config, SourceMap, Spanned};
use crate::error::{AuthError, AuthErrorKind};
use crate::identity::{Principal, QualifiedName, UserStore};

/// Bearer-token authentication (the `oauth2` handler).
///
/// Registered by [`crate::SecureLayerBuilder::build`] when the deployment has an
/// `[[oauth2.issuer]]`; build it yourself with [`BearerAuthenticator::from_config`] to share
/// it between layers.
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
    issuers: HashMap<String, Issuer>,
    leeway: u64,
    require_typ: Option<String>,
    max_token_bytes: usize,
    /// Verified tokens by SHA-256 of the whole token; entries never outlive `exp`.
    cache: Cache<[u8; 32], VerifiedToken>,
    /// The user store for token users' permissions, and how long a look-up may take.
    store: Option<(Arc<dyn UserStore>, Duration)>,
    introspection: Option<Introspector>,
    /// Bumped by a remote key source when a key is retired: cached tokens of an older
    /// epoch are verified again, so tokens of a withdrawn key stop working at once.
    key_epoch: Arc<AtomicU64>,
    /// The revocation list of a token server in this process, for its tokens.
    revoked: Option<RevokedTokens>,
}

struct Issuer {
    /// The exact `iss`.
    name: String,
    audience: Option<String>,
    /// How its claims name the caller.
    rules: ClaimRules,
    keys: Vec<VerificationKey>,
    remote: Option<Arc<RemoteKeys>>,
    /// Set for the token server of this process: its revocations apply to these tokens.
    revoked: Option<RevokedTokens>,
    /// Verified tokens are also introspected (`introspect = true`).
    introspect: bool,
}

/// What a refresh asked for by an unknown `kid` came to (only a key fetch, feature
/// `remote-keys`, makes one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "remote-keys"), allow(dead_code))]
pub(crate) enum Refreshed {
    /// A fetch ran (this caller's, or one it waited for) and stored a key set.
    Fetched,
    /// That fetch failed; the previous keys stay.
    Failed,
    /// Too soon after the last fetch: nothing ran.
    RateLimited,
}

/// The token server of this process as a trusted issuer: its keys (HMAC ones included,
/// which are never published) and its revocation list.
pub(crate) struct LocalIssuer {
    pub(crate) issuer: String,
    pub(crate) audience: Option<String>,
    pub(crate) keys: Vec<(String, Algorithm, DecodingKey)>,
    pub(crate) revoked: RevokedTokens,
}

pub(super) struct VerificationKey {
    pub(super) kid: Option<String>,
    /// The algorithms this key verifies: the one it was configured or published with, or,
    /// for a published key without `alg`, those its issuer allows that fit its type.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

#[derive(Clone)]
struct VerifiedToken {
    principal: Principal,
    exp: u64,
    /// The key epoch when the token was verified; see [`Inner::key_epoch`].
    epoch: u64,
    /// The revocation generation when the token was verified; see [`RevokedTokens`].
    revocations: u64,
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
            let keys = local.keys.into_iter().map(|(kid, alg, key)| verification_key(Some(kid), alg, key)).collect();
            let entry = Issuer {
                name: local.issuer.clone(),
                audience: local.audience,
                rules: ClaimRules::local(&config.roles_claim),
                keys,
                remote: None,
                revoked: Some(local.revoked),
                introspect: false,
            };
            if issuers.insert(local.issuer, entry).is_some() {
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
        let store_timeout = Duration::from_secs(deployment.authentication.basic.store_timeout_seconds.max(1));
        let store = store.map(|s| (s, store_timeout));
        Ok(Some(Self::new(config, issuers, store, introspection, key_epoch, revoked)))
    }

    fn new(
        config: &OAuth2Config,
        issuers: HashMap<String, Issuer>,
        store: Option<(Arc<dyn UserStore>, Duration)>,
        introspection: Option<Introspector>,
        key_epoch: Arc<AtomicU64>,
        revoked: Option<RevokedTokens>,
    ) -> Self {
        let inner = Inner {
            issuers,
            leeway: config.leeway_seconds,
            require_typ: config.require_typ.clone(),
            max_token_bytes: config.max_token_bytes,
            cache: Cache::new(config.cache_capacity.max(1)),
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

/// jsonwebtoken panics at the first verification when no crypto backend or two are
/// enabled; features unify across a build, so a dependency enabling the other backend
/// would break us. Installing ours first settles it (a second install is a no-op error).
pub(crate) fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
}

fn invalid(reason: &'static str) -> AuthError {
    AuthError::invalid_credentials(reason)
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
        let hit = self.cache.get(digest)?;
        let current = hit.epoch == self.key_epoch.load(Ordering::Acquire) && hit.revocations == self.revocations();
        (current && crate::unix_seconds() < hit.exp)
            .then(|| check_binding(hit.bound_to, request).map(|()| hit.principal))
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
        let (claims, exp, rules, introspected) = if is_jws(token) {
            let (claims, exp, issuer) = self.verify(token).await?;
            let exp = self.introspect_verified(token, exp, issuer).await?;
            (claims, exp, &issuer.rules, false)
        } else {
            let (answer, until, rules) = self.introspect_opaque(token).await?;
            (answer, until, rules, true)
        };
        let bound_to = certificate_binding(&claims)?;
        check_binding(bound_to, request)?;
        let principal = self.principal(&claims, rules, introspected).await?;
        if crate::unix_seconds() < exp {
            let verified = VerifiedToken { principal: principal.clone(), exp, epoch, revocations, bound_to };
            self.cache.insert(digest, verified);
        }
        Ok(principal)
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
            None => self.issuers.contains_key(iss),
        };
        introspection.check_audience_and_issuer(&answer, introspection.audiences(), trusted)?;
        let limit = now.saturating_add(introspection.cache_max_seconds());
        let until = answer.get("exp").and_then(seconds).map_or(limit, |exp| exp.min(limit));
        Ok((answer, until, introspection.rules()))
    }

    /// Structure, header, issuer, key, signature, then claims. Each part is decoded and
    /// parsed once (strictly: a member named twice refuses); jsonwebtoken only checks the
    /// signature. Returns the claims, `exp` and the issuer.
    async fn verify(&self, token: &str) -> Result<(Value, u64, &Issuer), AuthError> {
        let base64url = |b: u8| super::header::is_alphanumeric(b) | (b == b'-') | (b == b'_') | (b == b'.');
        let parts_ok = super::header::all_bytes(token.as_bytes(), base64url) && token.split('.').all(|p| !p.is_empty());
        let (Some((message, signature)), true) = (token.rsplit_once('.'), parts_ok) else {
            return Err(invalid("not a JWS compact serialization"));
        };
        let header = decode_header(message)?;
        if header.crit.is_some() {
            return Err(invalid("crit header present"));
        }
        // jku, x5u, jwk and x5c are never looked at: keys come only from configuration.
        let payload = message.split_once('.').map_or("", |(_, payload)| payload);
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| invalid("payload is not base64url"))?;
        let claims = super::json::parse(&bytes).map_err(|_| invalid("payload is not JSON without duplicates"))?;
        // `iss` chooses whose keys verify the signature; it is checked again with the claims.
        let issuer_name = match claims.get("iss") {
            Some(Value::String(iss)) => iss.as_str(),
            _ => return Err(invalid("iss missing or not a single string")),
        };
        let issuer = self.issuers.get(issuer_name).ok_or_else(|| invalid("unknown issuer"))?;
        let selected = issuer.select(header.kid.as_deref(), header.alg).await?;
        let key = selected.key();
        // `select` checked that the key verifies exactly this algorithm.
        let signed = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, header.alg)
            .map_err(|_| invalid("token refused by the verifier"))?;
        if !signed {
            return Err(invalid("bad signature"));
        }
        if let Some(required) = &self.require_typ {
            let typ = header.typ.as_deref().unwrap_or_default();
            let matches = typ.eq_ignore_ascii_case(required)
                || typ.strip_prefix("application/").is_some_and(|t| t.eq_ignore_ascii_case(required));
            if !matches {
                return Err(invalid("wrong typ (not an access token)"));
            }
        }
        let exp = self.check_claims(&claims, issuer_name, issuer)?;
        if let Some(revoked) = &issuer.revoked {
            let (jti, client) =
                (claims.get("jti").and_then(Value::as_str), claims.get("client_id").and_then(Value::as_str));
            if revoked.is_revoked(jti, client, claims.get("iat").and_then(seconds)) {
                return Err(invalid("token revoked"));
            }
        }
        Ok((claims, exp, issuer))
    }

    /// `exp` required; `nbf`/`iat` not in the future beyond the leeway;
    /// `iss` a single string equal to the issuer; `aud` containing the audience; claims of
    /// the wrong JSON type refuse. Returns `exp`.
    fn check_claims(&self, claims: &Value, issuer_name: &str, issuer: &Issuer) -> Result<u64, AuthError> {
        let claims = claims.as_object().ok_or_else(|| invalid("claims are not an object"))?;
        let now = crate::unix_seconds();
        let time = |name: &str| -> Result<Option<u64>, AuthError> {
            match claims.get(name) {
                None => Ok(None),
                Some(value) => seconds(value).map(Some).ok_or_else(|| invalid("a time claim is not a number")),
            }
        };
        let exp = time("exp")?.ok_or_else(|| invalid("exp missing"))?;
        if now > exp.saturating_add(self.leeway) {
            return Err(invalid("token expired"));
        }
        if time("nbf")?.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(invalid("token not yet valid"));
        }
        if time("iat")?.is_some_and(|iat| iat > now.saturating_add(self.leeway)) {
            return Err(invalid("token issued in the future"));
        }
        if claims.get("iss").and_then(Value::as_str) != Some(issuer_name) {
            return Err(invalid("iss mismatch"));
        }
        if let Some(audience) = &issuer.audience {
            let contains = match claims.get("aud") {
                Some(Value::String(aud)) => aud == audience,
                Some(Value::Array(list)) if list.iter().all(Value::is_string) => {
                    list.iter().any(|a| a == audience.as_str())
                }
                _ => false,
            };
            if !contains {
                return Err(invalid("audience mismatch"));
            }
        }
        Ok(exp)
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
        let mut builder = Principal::builder(name.clone(), "oauth2").scopes(scopes).roles(roles);
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
        let Some((store, timeout)) = &self.store else {
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

/// The JOSE header, parsed strictly (a member named twice refuses).
fn decode_header(message: &str) -> Result<jsonwebtoken::Header, AuthError> {
    let encoded = message.split_once('.').map_or(message, |(header, _)| header);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| invalid("header is not base64url"))?;
    let value = super::json::parse(&bytes).map_err(|_| invalid("header is not JSON without duplicates"))?;
    serde_json::from_value(value).map_err(|_| invalid("malformed JWT header"))
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

/// The key chosen for a token: one from the configuration file or one of the fetched set.
enum Selected<'a> {
    Static(&'a VerificationKey),
    Remote(Arc<KeySet>, usize),
}

impl Selected<'_> {
    fn key(&self) -> &VerificationKey {
        match self {
            Selected::Static(key) => key,
            Selected::Remote(set, index) => &set.keys[*index],
        }
    }
}

impl Issuer {
    /// The key named by `kid` (or the only key when the token names none), which must
    /// verify exactly the header's algorithm. A `kid` the set publishes for
    /// another use is refused at once. An unknown `kid` asks the remote key source for a (rate-limited, shared) refresh once; the answer is
    /// 401 only once a fetch that completed for this request (or that it waited for) still
    /// lacks the key. While the refresh is rate limited, failed or no key set was ever
    /// fetched, it is 503 with `Retry-After`: a valid token of a key published since the
    /// last fetch is never refused.
    async fn select(&self, kid: Option<&str>, alg: Algorithm) -> Result<Selected<'_>, AuthError> {
        if let Some(index) = find(&self.keys, kid, self.remote.is_none()) {
            return checked(Selected::Static(&self.keys[index]), alg);
        }
        let Some(remote) = &self.remote else { return Err(invalid("no configured key for this kid")) };
        remote.ensure_background();
        let only_remote = self.keys.is_empty();
        let set = remote.current();
        if let Some(index) = find(&set.keys, kid, only_remote) {
            return checked(Selected::Remote(set, index), alg);
        }
        if set.is_unusable(kid) {
            return Err(invalid("the kid names a published key that does not verify signatures"));
        }
        let refreshed = remote.refresh().await;
        let set = remote.current();
        if let Some(index) = find(&set.keys, kid, only_remote) {
            return checked(Selected::Remote(set, index), alg);
        }
        match refreshed {
            Refreshed::Fetched => Err(invalid("no key for this kid")),
            Refreshed::Failed | Refreshed::RateLimited => {
                let retry_after = remote.retry_after().as_secs_f64().ceil().max(1.0) as u64;
                Err(AuthError::unavailable("signing keys cannot be refreshed yet").with_retry_after(retry_after))
            }
        }
    }
}

/// The position of the key with this `kid`; without a `kid`, of the only key when
/// `sole_source` holds it.
fn find(keys: &[VerificationKey], kid: Option<&str>, sole_source: bool) -> Option<usize> {
    match kid {
        Some(kid) => keys.iter().position(|k| k.kid.as_deref() == Some(kid)),
        None if sole_source && keys.len() == 1 => Some(0),
        None => None,
    }
}

fn checked(selected: Selected<'_>, alg: Algorithm) -> Result<Selected<'_>, AuthError> {
    if selected.key().algorithms.contains(&alg) {
        Ok(selected)
    } else {
        Err(invalid("alg is not an algorithm of the key"))
    }
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

/// A NumericDate (RFC 7519): a number of seconds, integer or not, within the range of a
/// signed 64-bit count: `1e300` or `2^64` are malformed, never "no expiry".
/// A time before 1970 reads as 0 (long past).
pub(super) fn seconds(value: &Value) -> Option<u64> {
    let whole = match value.as_i64() {
        Some(whole) => whole,
        None => {
            let real = value.as_f64()?;
            // i64::MIN as f64 is exactly -2^63, i64::MAX as f64 rounds up to 2^63.
            if !(real.is_finite() && real >= i64::MIN as f64 && real < i64::MAX as f64) {
                return None;
            }
            real as i64
        }
    };
    Some(u64::try_from(whole).unwrap_or(0))
}

/// A JWS compact serialization has exactly three dot-separated parts.
fn is_jws(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

// ---- keys -----------------------------------------------------------------------------

fn load_issuer_keys(
    issuer: &IssuerConfig,
    allowed: Option<&[Algorithm]>,
    source: &SourceMap,
) -> Result<Vec<VerificationKey>, ConfigError> {
    let mut keys = Vec::new();
    for table in &issuer.key {
        let key = load_key(table, source)?;
        if allowed.is_some_and(|allowed| !key.algorithms.iter().all(|a| allowed.contains(a))) {
            let span = table.get_ref().algorithm.span();
            return Err(source.error(span, "algorithm", "not one of the issuer's algorithms"));
        }
        keys.push(key);
    }
    if let Some(file) = &issuer.jwks_file {
        let error = |m: String| source.error(file.span(), "jwks_file", m);
        let text = crate::config::read_text(source.resolve(file.get_ref()))
            .map_err(|e| error(format!("cannot read the file: {e}")))?;
        keys.extend(keys_from_jwks(&text, allowed).map_err(error)?.keys);
    }
    let mut kids: Vec<Option<&str>> = keys.iter().map(|k| k.kid.as_deref()).collect();
    kids.sort_unstable();
    if keys.len() > 1 && (kids.contains(&None) || kids.windows(2).any(|w| w[0] == w[1])) {
        return Err(source.error(issuer.issuer.span(), "kid", "with several keys, each needs a distinct kid"));
    }
    Ok(keys)
}

fn load_key(table: &Spanned<KeyConfig>, source: &SourceMap) -> Result<VerificationKey, ConfigError> {
    let config = table.get_ref();
    let span = table.span();
    let algorithm: Algorithm =
        config.algorithm.get_ref().parse().map_err(|_| {
            source.error(config.algorithm.span(), "algorithm", "not a JWS algorithm this crate verifies")
        })?;
    let error = |key: &str, m: String| source.error(span.clone(), key, m);
    let given = [config.pem.is_some(), config.pem_file.is_some(), config.jwk.is_some(), config.secret_base64.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(error("algorithm", "give exactly one of pem, pem_file, jwk, secret_base64".to_owned()));
    }
    let key = if let Some(pem) = &config.pem {
        public_key_from_pem(pem.get_ref(), algorithm).map_err(|m| error("pem", m))?
    } else if let Some(path) = &config.pem_file {
        let text = crate::config::read_text(source.resolve(path.get_ref()))
            .map_err(|e| error("pem_file", format!("cannot read the file: {e}")))?;
        public_key_from_pem(&text, algorithm).map_err(|m| error("pem_file", m))?
    } else if let Some(jwk) = &config.jwk {
        let jwk: Value = serde_json::from_str(jwk.get_ref()).map_err(|e| error("jwk", format!("not JSON: {e}")))?;
        public_key_from_jwk(&jwk, algorithm).map_err(|m| error("jwk", m))?
    } else if let Some(secret) = &config.secret_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(secret.get_ref())
            .map_err(|_| error("secret_base64", "not base64".to_owned()))?;
        hmac_key(&bytes, algorithm).map_err(|m| error("secret_base64", m))?
    } else {
        return Err(error("algorithm", "no key material".to_owned()));
    };
    Ok(verification_key(config.kid.clone(), algorithm, key))
}

fn verification_key(kid: Option<String>, algorithm: Algorithm, key: DecodingKey) -> VerificationKey {
    VerificationKey { kid, algorithms: vec![algorithm], key }
}

fn family(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => "HMAC",
        Algorithm::ES256 | Algorithm::ES384 => "EC",
        Algorithm::EdDSA => "OKP",
        _ => "RSA",
    }
}

/// HMAC keys at least as long as the hash (and never under 256 bits), for keys this crate
/// verifies with and keys its token server signs with.
pub(crate) fn hmac_key(secret: &[u8], algorithm: Algorithm) -> Result<DecodingKey, String> {
    let minimum = match algorithm {
        Algorithm::HS256 => 32,
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => return Err("secret_base64 is for HS256, HS384 and HS512 only".to_owned()),
    };
    if secret.len() < minimum {
        return Err(format!("an {algorithm:?} secret needs at least {minimum} bytes"));
    }
    Ok(DecodingKey::from_secret(secret))
}

fn public_key_from_pem(pem_text: &str, algorithm: Algorithm) -> Result<DecodingKey, String> {
    pem::parse(pem_text).map_err(|e| format!("not PEM: {e}"))?;
    let bytes = pem_text.as_bytes();
    match family(algorithm) {
        "RSA" => {
            let key = DecodingKey::from_rsa_pem(bytes).map_err(|e| format!("not an RSA public key: {e}"))?;
            check_rsa_size(key.as_bytes())?;
            Ok(key)
        }
        "EC" => {
            let key = DecodingKey::from_ec_pem(bytes).map_err(|e| format!("not an EC public key: {e}"))?;
            check_ec_curve(key.as_bytes(), algorithm)?;
            Ok(key)
        }
        "OKP" => DecodingKey::from_ed_pem(bytes).map_err(|e| format!("not an Ed25519 public key: {e}")),
        _ => Err("HMAC keys are given with secret_base64".to_owned()),
    }
}

/// RSA keys of at least 2048 bits, checked at load, for keys and certificates
/// alike (`der` is the PKCS#1 public key jsonwebtoken extracted).
fn check_rsa_size(der: &[u8]) -> Result<(), String> {
    let key = aws_lc_rs::rsa::PublicKey::from_der(der).map_err(|_| "not an RSA public key".to_owned())?;
    let bits = key.modulus().big_endian_without_leading_zero().len() * 8;
    if bits < 2048 {
        return Err(format!("RSA keys need at least 2048 bits, this one has {bits}"));
    }
    Ok(())
}

/// The modulus `n` of an RSA JWK (base64url) has at least 2048 bits: for keys this crate
/// verifies with and keys its token server signs with.
pub(crate) fn check_rsa_modulus(n: &str) -> Result<(), String> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(n).map_err(|_| "n is not base64url")?;
    let bits = bytes.iter().skip_while(|b| **b == 0).count() * 8;
    if bits < 2048 {
        return Err(format!("RSA keys need at least 2048 bits, this one has {bits}"));
    }
    Ok(())
}

/// The curve must be the algorithm's: an uncompressed P-256 point for ES256, P-384 for
/// ES384 (otherwise every token would fail at verification time instead of at load).
fn check_ec_curve(point: &[u8], algorithm: Algorithm) -> Result<(), String> {
    let expected = if algorithm == Algorithm::ES384 { 97 } else { 65 };
    if point.len() != expected || point.first() != Some(&4) {
        return Err(format!("the EC key is not on the curve {algorithm:?} uses"));
    }
    Ok(())
}

/// A public JWK whose `kty` fits the algorithm, and whose `alg`, `use` and `key_ops`
/// (when present) agree with it. Symmetric (`oct`) keys are refused: a JWKS is public.
fn public_key_from_jwk(jwk: &Value, algorithm: Algorithm) -> Result<DecodingKey, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    if field("kty") != Some(family_kty(algorithm)) {
        return Err(format!("kty must be {} for {algorithm:?}", family_kty(algorithm)));
    }
    if let Some(alg) = field("alg") {
        if alg.parse::<Algorithm>().ok() != Some(algorithm) {
            return Err("the JWK's alg differs from the configured algorithm".to_owned());
        }
    }
    if field("use").is_some_and(|u| u != "sig") {
        return Err("the JWK's use is not sig".to_owned());
    }
    if jwk.get("d").is_some() {
        return Err("the JWK holds a private key: give only the public part".to_owned());
    }
    let curve = match algorithm {
        Algorithm::ES256 => Some("P-256"),
        Algorithm::ES384 => Some("P-384"),
        Algorithm::EdDSA => Some("Ed25519"),
        _ => None,
    };
    if curve.is_some() && field("crv") != curve {
        return Err(format!("crv must be {} for {algorithm:?}", curve.unwrap_or_default()));
    }
    if family(algorithm) == "RSA" {
        check_rsa_modulus(field("n").ok_or("an RSA JWK needs n")?)?;
    }
    let parsed: Jwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("not a supported JWK: {e}"))?;
    DecodingKey::from_jwk(&parsed).map_err(|e| format!("not a usable JWK: {e}"))
}

fn family_kty(algorithm: Algorithm) -> &'static str {
    match family(algorithm) {
        "HMAC" => "oct",
        other => other,
    }
}

/// The keys of a JWKS document.
#[derive(Default)]
pub(super) struct KeySet {
    /// The keys this crate verifies signatures with.
    pub(super) keys: Vec<VerificationKey>,
    /// The `kid`s of the other keys published (encryption keys, algorithms this issuer
    /// does not allow): a token naming one is refused without asking for a refresh.
    pub(super) unusable: Vec<String>,
}

impl KeySet {
    fn is_unusable(&self, kid: Option<&str>) -> bool {
        kid.is_some_and(|kid| self.unusable.iter().any(|k| k == kid))
    }
}

/// Keys of a JWKS document. Each key is parsed on its own: one that is not for signatures
/// this crate verifies (`use` other than `sig`, an encryption or unknown `alg`, no `kid`,
/// an `alg` outside the issuer's `allowed` algorithms) is skipped and logged, and does not
/// void the set. Symmetric keys refuse the whole set, and so does a set without
/// one usable key.
pub(super) fn keys_from_jwks(text: &str, allowed: Option<&[Algorithm]>) -> Result<KeySet, String> {
    let document: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let list = document.get("keys").and_then(Value::as_array).ok_or("a JWKS needs a `keys` array")?;
    if list.iter().any(|jwk| jwk.get("kty").and_then(Value::as_str) == Some("oct")) {
        return Err("a JWKS must not hold symmetric (oct) keys".to_owned());
    }
    let mut set = KeySet { keys: Vec::with_capacity(list.len()), unusable: Vec::new() };
    for jwk in list {
        match jwks_key(jwk, allowed) {
            Ok(key) => set.keys.push(key),
            Err(reason) => {
                tracing::warn!(target: crate::AUDIT_TARGET, %reason, "skipping a JWKS key");
                set.unusable.extend(jwk.get("kid").and_then(Value::as_str).map(str::to_owned));
            }
        }
    }
    if set.keys.is_empty() {
        return Err("the JWKS holds no usable signing key".to_owned());
    }
    Ok(set)
}

fn jwks_key(jwk: &Value, allowed: Option<&[Algorithm]>) -> Result<VerificationKey, String> {
    let kid = jwk.get("kid").and_then(Value::as_str).ok_or("a key without kid")?;
    if jwk.get("use").and_then(Value::as_str).is_some_and(|u| u != "sig") {
        return Err(format!("key {kid}: not a signing key"));
    }
    let algorithms = match jwk.get("alg") {
        Some(alg) => {
            let alg = alg.as_str().ok_or_else(|| format!("key {kid}: alg is not a string"))?;
            let algorithm: Algorithm = alg.parse().map_err(|_| format!("key {kid}: unsupported alg"))?;
            if allowed.is_some_and(|allowed| !allowed.contains(&algorithm)) {
                return Err(format!("key {kid}: alg {alg} is not one of the issuer's algorithms"));
            }
            vec![algorithm]
        }
        None => algorithms_for_key_type(jwk, allowed),
    };
    let Some(&first) = algorithms.first() else {
        return Err(format!("key {kid}: no alg, and none of the issuer's algorithms fits its key type"));
    };
    // Every algorithm of the list needs the same key type and size, so one check holds for all.
    let key = public_key_from_jwk(jwk, first).map_err(|m| format!("key {kid}: {m}"))?;
    Ok(VerificationKey { kid: Some(kid.to_owned()), algorithms, key })
}

/// The algorithms a key without `alg` serves: the issuer's `allowed` ones that fit
/// its type, or without a list RS256 for RSA and the curve's one algorithm for EC and OKP.
fn algorithms_for_key_type(jwk: &Value, allowed: Option<&[Algorithm]>) -> Vec<Algorithm> {
    use Algorithm::{EdDSA, ES256, ES384, PS256, PS384, PS512, RS256, RS384, RS512};
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let (fitting, default): (&[Algorithm], &[Algorithm]) = match (field("kty"), field("crv")) {
        (Some("RSA"), _) => (&[RS256, RS384, RS512, PS256, PS384, PS512], &[RS256]),
        (Some("EC"), Some("P-256")) => (&[ES256], &[ES256]),
        (Some("EC"), Some("P-384")) => (&[ES384], &[ES384]),
        (Some("OKP"), Some("Ed25519")) => (&[EdDSA], &[EdDSA]),
        _ => (&[], &[]),
    };
    match allowed {
        Some(allowed) => allowed.iter().copied().filter(|a| fitting.contains(a)).collect(),
        None => default.to_vec(),
    }
}

#[async_trait]
impl AuthenticationHandler for BearerAuthenticator {
    fn name(&self) -> &str {
        "oauth2"
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
    use serde_json::json;

    // SPEC F8: HMAC keys at least as long as their hash; JWKS never carries symmetric keys.
    #[test]
    fn key_strength_is_checked_at_load() {
        assert!(hmac_key(&[7; 31], Algorithm::HS256).is_err());
        assert!(hmac_key(&[7; 32], Algorithm::HS256).is_ok());
        assert!(hmac_key(&[7; 32], Algorithm::HS512).is_err());
        assert!(hmac_key(&[7; 64], Algorithm::RS256).is_err());
        let oct = r#"{"keys":[{"kty":"oct","kid":"k","alg":"HS256","k":"c2VjcmV0"}]}"#;
        assert!(keys_from_jwks(oct, None).err().unwrap().contains("symmetric"));
        let short_rsa = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"});
        assert!(public_key_from_jwk(&short_rsa, Algorithm::RS256).err().unwrap().contains("2048"));
        let wrong_kty = json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"});
        assert!(public_key_from_jwk(&wrong_kty, Algorithm::RS256).is_err());
    }

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
}
