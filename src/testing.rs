//! Support for testing an application secured by this crate, without an identity
//! provider or a server: a [`TestIssuer`] that mints tokens the layer accepts,
//! [`with_principal`] to hand a handler a caller directly (its `#[secure]` rule and the
//! `Principal` extractor still run), and [`cheap_password_hash`] for users of test stores.
//! Feature `testing`; meant for `[dev-dependencies]`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::Request;
use serde_json::{Map, Value};

use crate::code::Issuer;
use crate::config::SubjectFormat;
use crate::error::AuthError;
use crate::identity::Principal;
use crate::layer::SecureLayer;

/// An issuer of tokens for tests: a fresh random HS256 key per instance, so its tokens are
/// accepted exactly by layers configured with [`TestIssuer::issuer`], and by nothing else.
///
/// ```
/// use std::time::Duration;
/// use tower_secure::code::AccessRule;
/// use tower_secure::config::Deployment;
/// use tower_secure::testing::TestIssuer;
/// use tower_secure::SecureLayer;
///
/// let tokens = TestIssuer::new("https://issuer.test");
/// let deployment = Deployment::builder()
///     .rule(AccessRule::new("/orders/**").scope("orders:read"))
///     .issuer(tokens.issuer())
///     .build()?;
/// let layer = SecureLayer::builder().deployment(deployment).build()?;
/// let token = tokens.token("alex").scope("orders:read").expires_in(Duration::from_secs(60)).sign()?;
/// // send `Authorization: Bearer {token}` to the app behind `layer`
/// # let _ = (layer, token);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TestIssuer {
    issuer: String,
    kid: String,
    secret: [u8; 32],
}

impl std::fmt::Debug for TestIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestIssuer").field("issuer", &self.issuer).field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TestIssuer {
    /// An issuer whose tokens carry `iss = issuer`, with a new random key.
    ///
    /// # Panics
    ///
    /// When the operating system has no randomness to give (test support only).
    pub fn new(issuer: impl Into<String>) -> Self {
        let mut secret = [0u8; 32];
        #[allow(clippy::expect_used)] // test support: no randomness means no meaningful test
        getrandom::fill(&mut secret).expect("the OS random source"); // documented panic: test support only
        let kid = format!("test-{}", &URL_SAFE_NO_PAD.encode(&secret[..6]));
        Self { issuer: issuer.into(), kid, secret }
    }

    /// The issuer's settings for a deployment or a bearer handler: its `iss`, its key, and
    /// `sub` read as a user of this crate (`SECONDARY/alex@tenant`), so a user the layer's
    /// store knows brings that user's permissions; change it with
    /// [`Issuer::subject_format`].
    pub fn issuer(&self) -> Issuer {
        Issuer::new(&self.issuer)
            .hs256_base64(STANDARD.encode(self.secret))
            .kid(&self.kid)
            .subject_format(SubjectFormat::Qualified)
    }

    /// A token for `subject`, valid for five minutes unless changed.
    pub fn token(&self, subject: impl Into<String>) -> TestToken<'_> {
        let mut claims = Map::new();
        claims.insert("sub".into(), Value::String(subject.into()));
        TestToken { issuer: self, claims, lifetime: Lifetime::Valid(Duration::from_secs(300)) }
    }
}

/// A token being minted by a [`TestIssuer`]; [`sign`](Self::sign) finishes it.
#[derive(Debug)]
pub struct TestToken<'a> {
    issuer: &'a TestIssuer,
    claims: Map<String, Value>,
    lifetime: Lifetime,
}

#[derive(Debug, Clone, Copy)]
enum Lifetime {
    Valid(Duration),
    ExpiredFor(Duration),
}

impl TestToken<'_> {
    /// Adds `scope` to the token's `scope` claim (space separated).
    pub fn scope(mut self, scope: &str) -> Self {
        let joined = match self.claims.get("scope") {
            Some(Value::String(scopes)) => format!("{scopes} {scope}"),
            _ => scope.to_owned(),
        };
        self.claims.insert("scope".into(), Value::String(joined));
        self
    }

    /// Sets the `aud` claim.
    pub fn audience(self, audience: &str) -> Self {
        self.claim("aud", audience)
    }

    /// Sets any claim (`client_id`, `roles`, a claim your issuer settings map, ...);
    /// `iss`, `iat` and `exp` are set by [`sign`](Self::sign).
    pub fn claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.claims.insert(name.to_owned(), value.into());
        self
    }

    /// Expires `lifetime` after signing (default five minutes).
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.lifetime = Lifetime::Valid(lifetime);
        self
    }

    /// Expired `ago` before signing, for testing refusals of stale tokens (the layer
    /// allows a leeway, 60 s unless configured: go past it).
    pub fn expired(mut self, ago: Duration) -> Self {
        self.lifetime = Lifetime::ExpiredFor(ago);
        self
    }

    /// The signed token (a compact JWS, HS256, with the issuer's `kid`).
    pub fn sign(self) -> Result<String, AuthError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|_| AuthError::internal("clock before 1970"))?;
        let (iat, exp) = match self.lifetime {
            Lifetime::Valid(lifetime) => (now, now + lifetime),
            Lifetime::ExpiredFor(ago) => {
                let exp = now.saturating_sub(ago);
                (exp.saturating_sub(Duration::from_secs(300)), exp)
            }
        };
        let mut claims = self.claims;
        claims.insert("iss".into(), Value::String(self.issuer.issuer.clone()));
        claims.insert("iat".into(), Value::from(iat.as_secs()));
        claims.insert("exp".into(), Value::from(exp.as_secs()));
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(self.issuer.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_secret(&self.issuer.secret);
        jsonwebtoken::encode(&header, &claims, &key).map_err(|e| AuthError::internal(format!("signing: {e}")))
    }
}

/// `request`, carrying `principal` as if `layer` had authenticated it: what a handler
/// test needs to call a handler directly (a router without the layer, `tower`'s
/// `oneshot`). The handler's own `#[secure]` rule is checked against `principal` with
/// `layer`'s scope bindings, and extractors such as `Principal` see it; the layer's rules
/// are not checked (send a [`TestIssuer`] token through the layer for those). An error when
/// `layer` would refuse the request before any rule (a malformed path, a method no rule
/// allows).
///
/// ```
/// use axum::{routing::get, Router};
/// use http::{Request, StatusCode};
/// use tower::ServiceExt;
/// use tower_secure::identity::{Permission, QualifiedName};
/// use tower_secure::{secure, testing, Principal, SecureLayer};
///
/// #[secure(permission = "/permission/admin", path = "/stats", method = "GET")]
/// async fn stats(caller: Principal) -> String {
///     format!("for {}", caller.name())
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let layer = SecureLayer::builder().build()?;
/// let app = Router::new().route("/stats", get(stats)); // no layer: the handler alone
/// let admin = Principal::builder(QualifiedName::parse("alex")?, "basic")
///     .permission(Permission::parse("/permission/admin")?)
///     .build();
/// let request = testing::with_principal(&layer, Request::get("/stats").body(axum::body::Body::empty())?, admin)?;
/// assert_eq!(app.clone().oneshot(request).await?.status(), StatusCode::OK);
///
/// let nobody = Principal::builder(QualifiedName::parse("bob")?, "basic").build();
/// let request = testing::with_principal(&layer, Request::get("/stats").body(axum::body::Body::empty())?, nobody)?;
/// assert_eq!(app.oneshot(request).await?.status(), StatusCode::FORBIDDEN);
/// # Ok(())
/// # }
/// ```
pub fn with_principal<B>(
    layer: &SecureLayer,
    request: Request<B>,
    principal: Principal,
) -> Result<Request<B>, AuthError> {
    let (mut parts, body) = request.into_parts();
    let context = layer.context_for(&parts, principal)?;
    parts.extensions.insert(context);
    Ok(Request::from_parts(parts, body))
}

/// An argon2id hash of `password` at the lowest cost argon2 allows (8 KiB, one pass):
/// verified in microseconds, so test suites with many users stay fast. **Never for real
/// passwords**: the cost is what makes stolen hashes hard to crack. Production hashes come
/// from `tower-secure hash-password`.
///
/// ```
/// use tower_secure::code::Users;
///
/// let hash = tower_secure::testing::cheap_password_hash("alex123");
/// assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
/// let users = Users::builder().role("viewer", ["/permission/view"]).user("alex", hash, ["viewer"]).build()?;
/// # let _ = users;
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
///
/// # Panics
///
/// When the operating system has no randomness to give for the salt (test support only).
pub fn cheap_password_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    #[allow(clippy::expect_used)] // test support: no randomness means no meaningful test
    getrandom::fill(&mut salt).expect("the OS random source"); // documented panic: test support only
    #[allow(clippy::expect_used)] // fixed, valid parameters and a 16-byte salt: infallible
    let hash = {
        let params = argon2::Params::new(8, 1, 1, None).expect("argon2's minimum parameters"); // constant, valid
        let salt = SaltString::encode_b64(&salt).expect("a 16-byte salt"); // 16 bytes: within SaltString's limits
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(password.as_bytes(), &salt)
            .expect("hashing with valid parameters") // valid params and salt: argon2 cannot fail
            .to_string()
    };
    hash
}
