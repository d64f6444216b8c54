// The built-in `basic` handler (SPEC A4, F7): RFC 7617 credentials checked against a
// user store, with a verification cache, account lockout, a throttle in front of argon2
// and dummy-hash verification for unknown users.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, Block};
use async_trait::async_trait;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::HeaderValue;
use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::header::{basic_credentials, has_scheme, read_basic_credentials};
use super::AuthenticationHandler;
use crate::config::BasicConfig;
use crate::error::{AuthError, AuthErrorKind};
use crate::identity::{PasswordCheck, Principal, QualifiedName, UserRecord, UserStore};
use crate::policy::BASIC_HANDLER;
use crate::state::{RevokedTokens, StateBackend, StateError};
use crate::telemetry::{CacheCounters, CacheKind};

/// How long an uncached verification may wait for the throttle, and then for the hashing
/// pool, before it gets 429: the queue in front of argon2 stays bounded.
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(1);

/// HTTP Basic authentication against a [`UserStore`] (the `basic` handler).
///
/// Usually created by [`crate::SecureLayerBuilder::user_store`]; build it yourself to
/// share it, or to clear its cache when users change.
///
/// ```
/// use tower_secure::authn::BasicAuthenticator;
/// use tower_secure::config::{load_users, BasicConfig};
///
/// let users = load_users("users.toml", "")?;
/// let basic = BasicAuthenticator::new(users, &BasicConfig::default());
/// basic.clear_cache();
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct BasicAuthenticator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BasicAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuthenticator").finish_non_exhaustive()
    }
}

/// A [`BasicAuthenticator`] that may have been dropped.
#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
pub(crate) struct WeakBasicAuthenticator(std::sync::Weak<Inner>);

#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
impl WeakBasicAuthenticator {
    pub(crate) fn upgrade(&self) -> Option<BasicAuthenticator> {
        self.0.upgrade().map(|inner| BasicAuthenticator { inner })
    }
}

struct Inner {
    store: Arc<dyn UserStore>,
    /// Keyed by the user part exactly as sent, so a hit needs no name parsing.
    cache: Cache<String, CachedLogin>,
    /// Hits and misses of `cache` (feature `metrics`).
    cache_counters: CacheCounters,
    cache_ttl: Duration,
    failures: Cache<QualifiedName, Failures>,
    /// Bumped whenever an account gets locked. A cached login of an older epoch checks the
    /// lock table; one of the current epoch knows no lock has been set since it was made,
    /// so the common hit reads one rarely-written atomic instead of a second cache.
    lock_epoch: AtomicU64,
    max_failed_attempts: u32,
    lockout: Duration,
    hashing: Semaphore,
    /// argon2 working memory, one buffer per hash that may run at once (see [`HashMemory`]).
    memory: Arc<HashMemory>,
    store_timeout: Duration,
    throttle: Mutex<Throttle>,
    proof_key: [u8; 32],
    dummy_hash: String,
    /// Failed-login counts and locks kept in a state backend, so that instances sharing it
    /// lock an account after exactly `max_failed_attempts` failures among them.
    shared: Option<SharedLockout>,
}

/// Lockouts in a state backend. The uncached path asks the backend; cached logins read
/// the local lock table, which the token server's sync task feeds with the locks other
/// instances set, and fail closed (503) while that replica is stale.
struct SharedLockout {
    backend: Arc<dyn StateBackend>,
    /// The token server's replica: its freshness stamp says whether the local lock table
    /// is current.
    replica: RevokedTokens,
}

#[derive(Clone)]
struct CachedLogin {
    proof: [u8; 32],
    principal: Principal,
    expires: Instant,
    /// The lock epoch when the login was verified; see [`Inner::lock_epoch`].
    epoch: u64,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    locked_until: Option<Instant>,
}

/// A token bucket in front of argon2: `rate` uncached verifications per second.
struct Throttle {
    rate: f64,
    tokens: f64,
    last: Instant,
}

impl Throttle {
    /// Reserves one verification; `Ok(wait)` to go after `wait`, `Err(retry)` when the
    /// wait would exceed [`MAX_THROTTLE_WAIT`].
    fn reserve(&mut self, now: Instant) -> Result<Duration, Duration> {
        if self.rate <= 0.0 {
            return Ok(Duration::ZERO);
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        self.last = now;
        let wait = Duration::from_secs_f64(((1.0 - self.tokens) / self.rate).max(0.0));
        if wait > MAX_THROTTLE_WAIT {
            return Err(wait);
        }
        self.tokens -= 1.0;
        Ok(wait)
    }
}

impl BasicAuthenticator {
    /// A handler over `store` with the cache, lockout and throttle of `config`.
    pub fn new(store: impl UserStore, config: &BasicConfig) -> Self {
        Self::from_arc(Arc::new(store), config)
    }

    pub(crate) fn from_arc(store: Arc<dyn UserStore>, config: &BasicConfig) -> Self {
        Self::build(store, config, None)
    }

    /// A handler whose failed-login counts and locks live in `backend` (the token
    /// server's, see [`crate::oauth2::TokenServerBuilder::state`]); `replica` is the token
    /// server's copy of the shared state, whose sync also brings other instances' locks
    /// here ([`BasicAuthenticator::apply_lock`]).
    #[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
    pub(crate) fn with_shared_lockout(
        store: Arc<dyn UserStore>,
        config: &BasicConfig,
        backend: Arc<dyn StateBackend>,
        replica: RevokedTokens,
    ) -> Self {
        Self::build(store, config, Some(SharedLockout { backend, replica }))
    }

    fn build(store: Arc<dyn UserStore>, config: &BasicConfig, shared: Option<SharedLockout>) -> Self {
        let mut proof_key = [0u8; 32];
        // Without OS randomness the key stays zero: proofs are still per-password hashes,
        // only less resistant to offline guessing from a memory dump; log it loudly.
        if getrandom::fill(&mut proof_key).is_err() {
            tracing::error!(target: crate::AUDIT_TARGET, "no OS randomness for the credential cache key");
        }
        let dummy_hash = dummy_hash(store.reference_password_hash().as_deref());
        let inner = Inner {
            store,
            cache: Cache::new(config.cache_capacity.max(1)),
            cache_counters: CacheCounters::new(CacheKind::Basic),
            cache_ttl: Duration::from_secs(config.cache_ttl_seconds),
            failures: Cache::new(config.lockout_capacity.max(1)),
            lock_epoch: AtomicU64::new(0),
            max_failed_attempts: config.max_failed_attempts,
            lockout: Duration::from_secs(config.lockout_seconds),
            hashing: Semaphore::new(config.max_concurrent_hashes.max(1)),
            memory: Arc::default(),
            store_timeout: Duration::from_secs(config.store_timeout_seconds.max(1)),
            throttle: Mutex::new(Throttle {
                rate: f64::from(config.hashes_per_second),
                tokens: f64::from(config.hashes_per_second),
                last: Instant::now(),
            }),
            proof_key,
            dummy_hash,
            shared,
        };
        Self { inner: Arc::new(inner) }
    }

    /// A handle that does not keep this handler alive (a token server's list of handlers
    /// to tell about locks must not outlive the layers that own them).
    #[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
    pub(crate) fn downgrade(&self) -> WeakBasicAuthenticator {
        WeakBasicAuthenticator(Arc::downgrade(&self.inner))
    }

    /// A lock another instance set (the state backend's change log): cached logins of
    /// `user` stop working here too, until `until` (Unix seconds).
    #[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
    pub(crate) fn apply_lock(&self, user: &str, until: u64) {
        let Ok(name) = QualifiedName::parse(user) else { return };
        if until > crate::unix_seconds() {
            self.inner.lock_locally(name, instant_of(until, Instant::now()));
        }
    }

    /// Forgets the cached verifications of one user (after a password or role change).
    pub fn invalidate(&self, name: &QualifiedName) {
        self.inner.cache.retain(|_, login| login.principal.name() != name);
    }

    /// Forgets every cached verification (after the users file is reloaded).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
    }

    /// True while `name` is locked out.
    pub fn is_locked(&self, name: &QualifiedName) -> bool {
        self.inner.locked(name, Instant::now())
    }

    /// Verifies a user name and password exactly as a Basic credential is verified (cache,
    /// lockout, throttle, dummy hash), for doors other than the `Authorization` header:
    /// the token endpoint's password grant and its client authentication.
    ///
    /// ```
    /// # async fn run() -> Result<(), tower_secure::AuthError> {
    /// use tower_secure::authn::BasicAuthenticator;
    /// use tower_secure::config::BasicConfig;
    /// use tower_secure::identity::InMemoryUserStore;
    ///
    /// let basic = BasicAuthenticator::new(InMemoryUserStore::default(), &BasicConfig::default());
    /// assert!(basic.verify("nobody", "guess").await.is_err());
    /// # Ok(()) }
    /// ```
    pub async fn verify(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        let proof = self.inner.proof(user, password);
        let now = Instant::now();
        match self.inner.cached(user, &proof, now) {
            Some(decided) => decided,
            None => self.inner.authenticate(user, password, proof, now).await,
        }
    }
}

impl Inner {
    /// A proof that the same password was presented: SHA-256 over a per-process random
    /// key, the length-prefixed user string and the password. The user string is the
    /// cache key, so `kim` + `bo:x` and `kimb` + `o:x` never share an entry.
    fn proof(&self, name: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.proof_key);
        hasher.update((name.len() as u64).to_be_bytes());
        hasher.update(name.as_bytes());
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    /// A cached verification of this user string and password that has not expired and
    /// whose account has not been locked since; 503 instead when the locks are shared and
    /// this process's copy of them is stale.
    fn cached(&self, user: &str, proof: &[u8; 32], now: Instant) -> Option<Result<Principal, AuthError>> {
        let decided = self.cached_entry(user, proof, now);
        self.cache_counters.record(decided.is_some());
        decided
    }

    fn cached_entry(&self, user: &str, proof: &[u8; 32], now: Instant) -> Option<Result<Principal, AuthError>> {
        let hit = self.cache.get(user)?;
        let same_password: bool = hit.proof.ct_eq(proof).into();
        let lock_unchanged = hit.epoch == self.lock_epoch.load(Ordering::Acquire);
        let usable = same_password && hit.expires > now && (lock_unchanged || !self.locked(hit.principal.name(), now));
        if usable && self.shared.as_ref().is_some_and(|s| s.replica.is_stale()) {
            tracing::warn!(target: crate::AUDIT_TARGET, "cached login refused: the shared lockout state is stale");
            return Some(Err(AuthError::unavailable("shared state is stale").with_retry_after(1)));
        }
        usable.then_some(Ok(hit.principal))
    }

    fn locked(&self, name: &QualifiedName, now: Instant) -> bool {
        self.failures.get(name).and_then(|f| f.locked_until).is_some_and(|until| until > now)
    }

    /// Locks `name` in this process until `until`; cached logins of it stop working.
    fn lock_locally(&self, name: QualifiedName, until: Instant) {
        let count = self.max_failed_attempts;
        self.failures.insert(name, Failures { count, locked_until: Some(until) });
        self.lock_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// True while `name` is locked: in the state backend when lockouts are shared (a
    /// backend failure is 503), else in this process.
    async fn is_locked(&self, name: &QualifiedName, now: Instant) -> Result<bool, AuthError> {
        let Some(shared) = &self.shared else { return Ok(self.locked(name, now)) };
        let until = state_call(shared.backend.locked_until(&name.to_string(), crate::unix_seconds())).await?;
        if let Some(until) = until {
            self.lock_locally(name.clone(), instant_of(until, now));
        }
        Ok(until.is_some())
    }

    /// Counts a failed login; the `max_failed_attempts`-th locks the account. With shared
    /// lockouts the backend counts (across instances and concurrent requests) and a
    /// failure to count is 503.
    async fn record_failure(&self, name: &QualifiedName, now: Instant) -> Result<(), AuthError> {
        if self.max_failed_attempts == 0 {
            return Ok(());
        }
        let locked_until = match &self.shared {
            Some(shared) => {
                let (user, seconds) = (name.to_string(), self.lockout.as_secs().max(1));
                let counted =
                    shared.backend.record_failure(&user, self.max_failed_attempts, seconds, crate::unix_seconds());
                state_call(counted).await?.map(|until| instant_of(until, now))
            }
            None => {
                let previous = self.failures.get(name).filter(|f| f.locked_until.is_none_or(|u| u > now));
                let count = previous.map_or(0, |f| f.count) + 1;
                let locked_until = (count >= self.max_failed_attempts).then(|| now + self.lockout);
                self.failures.insert(name.clone(), Failures { count, locked_until: None });
                locked_until
            }
        };
        if let Some(until) = locked_until {
            self.lock_locally(name.clone(), until);
            tracing::warn!(target: crate::AUDIT_TARGET, user = %name, "account locked after failed attempts");
        }
        Ok(())
    }

    /// Forgets the failures of `name` after a successful login.
    async fn clear_failures(&self, name: &QualifiedName) -> Result<(), AuthError> {
        self.failures.remove(name);
        match &self.shared {
            Some(shared) => state_call(shared.backend.clear_failures(&name.to_string())).await,
            None => Ok(()),
        }
    }

    async fn throttle(&self) -> Result<(), AuthError> {
        let reserved = self.throttle.lock().unwrap_or_else(PoisonError::into_inner).reserve(Instant::now());
        match reserved {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Err(retry) => Err(AuthError::new(AuthErrorKind::TooManyRequests, "password verification throttled")
                .with_retry_after(retry.as_secs().max(1))),
        }
    }

    /// Runs argon2 on the blocking pool, at most `max_concurrent_hashes` at once.
    async fn verify(&self, password: &str, record: Option<&UserRecord>) -> Result<bool, AuthError> {
        let hash = record.and_then(|r| r.password_hash.clone()).unwrap_or_else(|| self.dummy_hash.clone());
        let password = password.to_owned();
        let permit = tokio::time::timeout(MAX_THROTTLE_WAIT, self.hashing.acquire()).await;
        let _permit = match permit {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(AuthError::internal("hash pool closed")),
            Err(_) => {
                return Err(
                    AuthError::new(AuthErrorKind::TooManyRequests, "password hashing pool busy").with_retry_after(1)
                )
            }
        };
        let memory = Arc::clone(&self.memory);
        let verified = tokio::task::spawn_blocking(move || memory.verify(&hash, password.as_bytes()))
            .await
            .map_err(|_| AuthError::internal("password verification task failed"))?;
        Ok(verified && record.is_some_and(|r| r.password_hash.is_some()))
    }

    /// The user's record when the password is right, or why not. A store that checks
    /// passwords itself (an LDAP bind) answers; otherwise argon2 verifies the record's hash,
    /// or the dummy hash for an unknown user.
    async fn check(&self, name: &QualifiedName, password: &str) -> Result<Result<UserRecord, &'static str>, AuthError> {
        match super::store_call(self.store.check_password(name, password), self.store_timeout).await? {
            PasswordCheck::Verified(record) => return Ok(Ok(record)),
            PasswordCheck::Refused => return Ok(Err("wrong password or unknown user")),
            PasswordCheck::ByHash => {}
        }
        let record = super::find_user(&*self.store, name, self.store_timeout).await?;
        let verified = self.verify(password, record.as_ref()).await?;
        Ok(match record {
            Some(record) if verified => Ok(record),
            Some(_) => Err("wrong password"),
            None => Err("unknown user"),
        })
    }

    /// The uncached path: `authenticate_now` already missed the cache for this credential.
    async fn authenticate(
        &self,
        user: &str,
        password: &str,
        proof: [u8; 32],
        now: Instant,
    ) -> Result<Principal, AuthError> {
        let name =
            QualifiedName::parse(user).map_err(|_| AuthError::invalid_credentials("user name is not a valid name"))?;
        self.throttle().await?;
        if self.is_locked(&name, now).await? {
            // Same cost as a wrong password, so the lock is not visible in timing (SPEC F7).
            self.verify(password, None).await?;
            return Err(AuthError::invalid_credentials("account locked"));
        }
        let record = match self.check(&name, password).await? {
            Ok(record) => record,
            Err(why) => {
                self.record_failure(&name, Instant::now()).await?;
                return Err(AuthError::invalid_credentials(why));
            }
        };
        if record.disabled {
            return Err(AuthError::invalid_credentials("account disabled"));
        }
        // Failures of requests that were in flight alongside this one may have locked the
        // account meanwhile: the lock wins, and is not cleared.
        // Read before the check: a lock set after it bumps the epoch past this one.
        let epoch = self.lock_epoch.load(Ordering::Acquire);
        if self.is_locked(&name, Instant::now()).await? {
            return Err(AuthError::invalid_credentials("account locked"));
        }
        self.clear_failures(&name).await?;
        let principal =
            Principal::builder(record.name, BASIC_HANDLER).roles(record.roles).permissions(record.permissions).build();
        let expires = Instant::now() + self.cache_ttl;
        self.cache.insert(user.to_owned(), CachedLogin { proof, principal: principal.clone(), expires, epoch });
        Ok(principal)
    }
}

/// The instant `now` plus what is left until `until` (Unix seconds).
fn instant_of(until: u64, now: Instant) -> Instant {
    now + Duration::from_secs(until.saturating_sub(crate::unix_seconds()))
}

/// A call into the state backend: its failure is logged and answered 503 with
/// `Retry-After` (the backend bounds its own calls in time).
async fn state_call<T>(call: impl std::future::Future<Output = Result<T, StateError>>) -> Result<T, AuthError> {
    call.await.map_err(|e| {
        tracing::error!(target: crate::AUDIT_TARGET, error = %e, "state backend failed: login refused");
        AuthError::unavailable("state backend failure").with_retry_after(1)
    })
}

/// argon2's working memory (`m` KiB per hash: 19 MiB at the default cost), kept and reused.
/// Allocating it afresh for every verification let the allocator keep one such block per
/// blocking thread that ever hashed: a wrong-password flood grew the process by hundreds
/// of MiB. Buffers are taken under the hashing semaphore, so at most
/// `max_concurrent_hashes` exist.
#[derive(Default)]
struct HashMemory {
    free: Mutex<Vec<Vec<Block>>>,
}

impl HashMemory {
    /// Verifies `password` against an argon2 PHC string in reused memory; the computed
    /// output is compared with the stored one in constant time. Anything unparsable is
    /// `false`.
    fn verify(&self, phc: &str, password: &[u8]) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else { return false };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
        let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else { return false };
        let version = match parsed.version.map(argon2::Version::try_from).transpose() {
            Ok(version) => version.unwrap_or_default(),
            Err(_) => return false,
        };
        let Ok(params) = argon2::Params::try_from(&parsed) else { return false };
        let mut salt_bytes = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
        let mut blocks = self.free.lock().unwrap_or_else(PoisonError::into_inner).pop().unwrap_or_default();
        if blocks.len() < params.block_count() {
            blocks.resize(params.block_count(), Block::default());
        }
        // A PHC output is at most 64 bytes (`password_hash::Output::MAX_LENGTH`).
        let mut output = [0u8; 64];
        let output = &mut output[..expected.len().min(64)];
        let argon = Argon2::new(algorithm, version, params);
        let hashed = argon.hash_password_into_with_memory(password, salt, output, &mut blocks[..]).is_ok();
        self.free.lock().unwrap_or_else(PoisonError::into_inner).push(blocks);
        hashed && bool::from(output.ct_eq(expected.as_bytes()))
    }
}

/// A hash of a random password with the parameters the store's users have, so that an
/// unknown user costs the same as a wrong password.
fn dummy_hash(reference: Option<&str>) -> String {
    let params = reference
        .and_then(|r| PasswordHash::new(r).ok())
        .and_then(|h| argon2::Params::try_from(&h).ok())
        .unwrap_or_default();
    let mut secret = [0u8; 16];
    let mut salt = [0u8; 16];
    // A zero secret would only make the dummy guessable, which grants nothing: the
    // dummy is verified for users that do not exist and never yields a principal.
    let _ = getrandom::fill(&mut secret).and(getrandom::fill(&mut salt));
    let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    SaltString::encode_b64(&salt)
        .ok()
        .and_then(|salt| argon.hash_password(&secret, &salt).ok().map(|hash| hash.to_string()))
        // Fallback, a fixed valid argon2id PHC string with minimal parameters.
        .unwrap_or_else(|| {
            "$argon2id$v=19$m=8,t=1,p=1$ZHVtbXlzYWx0$zWNOvaQWOP5LH6vKlJcSYEP3DM3UO6Yz7cG7BxsMy2g".to_owned()
        })
}

#[async_trait]
impl AuthenticationHandler for BasicAuthenticator {
    fn name(&self) -> &str {
        BASIC_HANDLER
    }

    fn users_changed(&self) {
        self.clear_cache();
    }

    fn default_priority(&self) -> i32 {
        20
    }

    fn can_handle(&self, request: &Parts) -> bool {
        request.headers.get(AUTHORIZATION).is_some_and(|v| has_scheme(v, "Basic"))
    }

    async fn authenticate(&self, request: &Parts) -> Result<Principal, AuthError> {
        let value = request
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| AuthError::internal("basic handler called without a credential"))?;
        let (text, colon) = basic_credentials(value)?;
        let (user, password) = (&text[..colon], &text[colon + 1..]);
        let proof = self.inner.proof(user, password);
        self.inner.authenticate(user, password, proof, Instant::now()).await
    }

    fn authenticate_now(&self, request: &Parts) -> Option<Result<Principal, AuthError>> {
        let Some(value) = request.headers.get(AUTHORIZATION) else {
            return Some(Err(AuthError::internal("basic handler called without a credential")));
        };
        let now = Instant::now();
        let cached = read_basic_credentials(value, |user, password| {
            let proof = self.inner.proof(user, password);
            self.inner.cached(user, &proof, now)
        });
        cached.unwrap_or_else(|error| Some(Err(error)))
    }

    fn challenge(&self, realm: &str, error: Option<&AuthError>) -> Option<HeaderValue> {
        if error.is_some_and(|e| e.kind() != AuthErrorKind::InvalidCredentials) {
            return None;
        }
        let realm = realm.replace(['"', '\\'], "");
        HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\"")).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SPEC A4: the cache key is the name, the proof covers name and password, so a
    // different split of the same `user:password` text can never hit another's entry.
    #[test]
    fn proofs_are_unambiguous() {
        let basic = BasicAuthenticator::new(crate::identity::InMemoryUserStore::default(), &BasicConfig::default());
        let inner = &basic.inner;
        assert_ne!(inner.proof("kim", "bo:x"), inner.proof("kimb", "o:x"));
        assert_eq!(inner.proof("kim", "bo:x"), inner.proof("kim", "bo:x"));
    }

    // SPEC A4: argon2 verification in reused memory: right and wrong passwords, other
    // parameters, malformed strings; one buffer serves every verification in turn.
    #[test]
    fn hash_memory_verifies_and_reuses_its_buffer() {
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let params = argon2::Params::new(64, 2, 1, Some(32)).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let phc = argon.hash_password(b"right", &salt).unwrap().to_string();
        let memory = HashMemory::default();
        assert!(memory.verify(&phc, b"right"));
        assert!(!memory.verify(&phc, b"wrong"));
        let bigger = Argon2::new(
            argon2::Algorithm::Argon2i,
            argon2::Version::V0x10,
            argon2::Params::new(128, 1, 2, None).unwrap(),
        );
        let other = bigger.hash_password(b"pw", &salt).unwrap().to_string();
        assert!(memory.verify(&other, b"pw"));
        assert!(memory.verify(&phc, b"right"), "a larger buffer serves a smaller hash");
        for bad in ["", "$argon2id$", "$pbkdf2$x", &phc.replace("m=64", "m=1")] {
            assert!(!memory.verify(bad, b"right"), "{bad}");
        }
        let free = memory.free.lock().unwrap();
        assert_eq!(free.len(), 1, "one buffer, reused");
        assert_eq!(free[0].len(), 128, "grown to the largest cost seen");
    }

    #[test]
    fn throttle_reserves_and_refuses() {
        let start = Instant::now();
        let mut throttle = Throttle { rate: 2.0, tokens: 2.0, last: start };
        assert_eq!(throttle.reserve(start), Ok(Duration::ZERO));
        assert_eq!(throttle.reserve(start), Ok(Duration::ZERO));
        assert_eq!(throttle.reserve(start), Ok(Duration::from_millis(500)));
        assert!(throttle.reserve(start).is_ok());
        assert!(throttle.reserve(start).is_err());
    }
}
