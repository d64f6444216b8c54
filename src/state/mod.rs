//! Security state that must outlive a process and agree across instances: revoked access
//! tokens and "issued before" watermarks, refresh-token grants and authorization codes
//! with atomic single-use redemption, failed-login counts and account locks. One trait, [`StateBackend`], with
//! [`MemoryState`] (one process, the default), `RedisState` (feature `redis`: shared by
//! every instance that points at the same Redis) and `SqlState` (feature `sql`: shared
//! in PostgreSQL, or durable in a SQLite file).
//!
//! A backend also keeps a numbered log of the changes a replica needs (revocations,
//! watermarks, locks) and an *epoch*, a random name it keeps for as long as it keeps its
//! data: a replica that finds a new epoch knows the backend lost its state, and must
//! refuse every token issued before.

mod memory;
#[cfg(feature = "redis")]
mod redis;
mod revocation;
#[cfg(feature = "sql")]
mod sql;

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use memory::MemoryState;
#[cfg(feature = "redis")]
pub use redis::{RedisState, RedisStateBuilder};
pub(crate) use revocation::RevokedTokens;
#[cfg(feature = "sql")]
pub use sql::{SqlState, SqlStateBuilder, SQL_STATE_SCHEMA};

/// A backend could not be reached, timed out or answered nonsense: the request fails
/// closed (503 with `Retry-After`); the message goes to the log, never to the caller.
#[derive(Debug, thiserror::Error)]
#[error("state backend failure: {0}")]
pub struct StateError(pub String);

/// A refresh-token grant as a backend stores it, under the SHA-256 digest of the token
/// (the token itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRecord {
    /// The client the token was issued to; only it may redeem the token.
    pub client_id: String,
    /// The user's qualified name (`DOMAIN/user@tenant`).
    pub user: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// Unix seconds when the token was issued (a client's "issued before" watermark
    /// refuses it too).
    pub issued_at: u64,
    /// Unix seconds after which the token is refused (and may be forgotten).
    pub expires: u64,
    /// Tokens rotated from one grant share a family; a replay ends the family.
    pub family: u64,
    /// The access token issued with this refresh token: its `jti`.
    pub access_jti: String,
    /// And its `exp`.
    pub access_exp: u64,
}

/// The outcome of presenting a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Redemption {
    /// Unused until now, and now used: the grant it stood for.
    Fresh(RefreshRecord),
    /// Unknown, expired, or issued to another client.
    Invalid,
    /// Used before: the whole family is gone, and the access tokens issued with it
    /// (`jti`, `exp`) must be revoked.
    Replayed(Vec<(String, u64)>),
}

/// Revoking a refresh token's family ([`StateBackend::revoke_refresh_family`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FamilyRevocation {
    /// Not a refresh token the backend knows.
    Unknown,
    /// The token belongs to another client: nothing was revoked.
    OtherClient,
    /// The family is gone; these access tokens (`jti`, `exp`) were issued with it.
    Revoked(Vec<(String, u64)>),
}

/// An authorization code as a backend stores it, under the SHA-256 digest of the code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeRecord {
    /// The client the code was issued to; only it may redeem the code.
    pub client_id: String,
    /// The redirect URI of the authorization request (the token request must repeat it).
    pub redirect_uri: String,
    /// The user's qualified name.
    pub user: String,
    /// The scopes granted.
    pub scopes: Vec<String>,
    /// The PKCE challenge (S256) the token request's verifier must match.
    pub code_challenge: String,
    /// Unix seconds after which the code is refused.
    pub expires: u64,
    /// The refresh-token family the exchange starts: a second use of the code ends it.
    pub family: u64,
}

/// The outcome of presenting an authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeRedemption {
    /// Unused until now, and now used.
    Fresh(CodeRecord),
    /// Unknown, expired, or issued to another client.
    Invalid,
    /// Used before: the family its exchange started is gone, and the access tokens issued
    /// in it (`jti`, `exp`) must be revoked.
    Replayed(Vec<(String, u64)>),
}

/// How long a used code is remembered past its expiry, so that a late second use still
/// ends what the first one issued.
pub const CODE_REPLAY_SECONDS: u64 = 3600;

/// A change a replica applies, numbered by the backend's sequence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Change {
    /// The access token `jti` is revoked until it expires at `exp`.
    Revoked {
        /// The token's `jti`.
        jti: String,
        /// Its `exp`: the entry may be forgotten after it.
        exp: u64,
    },
    /// Every token issued at or before `before` to `client` (`None`: to any client) is
    /// revoked.
    IssuedBefore {
        /// The client, or `None` for all.
        client: Option<String>,
        /// Unix seconds.
        before: u64,
    },
    /// `user` is locked out until `until` (Unix seconds).
    Locked {
        /// The user's qualified name.
        user: String,
        /// Unix seconds.
        until: u64,
    },
}

/// What a replica needs to decide cached requests without asking the backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The backend's epoch ([module docs](self)).
    pub epoch: String,
    /// The number of the last change included.
    pub sequence: u64,
    /// Revoked access tokens still unexpired: `jti` -> `exp`.
    pub revoked: HashMap<String, u64>,
    /// Per-client "issued before" watermarks.
    pub client_watermarks: HashMap<String, u64>,
    /// The watermark for every client (0: none).
    pub global_watermark: u64,
    /// Locked users and until when.
    pub locks: HashMap<String, u64>,
}

impl Snapshot {
    /// Applies one change (a replica's copy moves forward).
    pub fn apply(&mut self, sequence: u64, change: &Change) {
        match change {
            Change::Revoked { jti, exp } => {
                self.revoked.insert(jti.clone(), *exp);
            }
            Change::IssuedBefore { client: Some(client), before } => {
                let mark = self.client_watermarks.entry(client.clone()).or_default();
                *mark = (*mark).max(*before);
            }
            Change::IssuedBefore { client: None, before } => self.global_watermark = self.global_watermark.max(*before),
            Change::Locked { user, until } => {
                let lock = self.locks.entry(user.clone()).or_default();
                *lock = (*lock).max(*until);
            }
        }
        self.sequence = self.sequence.max(sequence);
    }

    /// True when a token with this `jti`, issued at `iat` to `client`, is revoked.
    pub fn is_revoked(&self, jti: Option<&str>, client: Option<&str>, iat: u64) -> bool {
        let client_mark = client.and_then(|c| self.client_watermarks.get(c)).copied().unwrap_or(0);
        iat <= self.global_watermark.max(client_mark) || jti.is_some_and(|jti| self.revoked.contains_key(jti))
    }
}

/// Where the security state lives. Every method is one atomic step on the backend, so
/// that instances sharing it agree: a refresh token is redeemed once across all of them,
/// and the n-th failed login of a user is counted once whichever instance saw it.
///
/// ```
/// # async fn run() -> Result<(), tower_secure::state::StateError> {
/// use tower_secure::state::{MemoryState, StateBackend};
///
/// let state = MemoryState::new();
/// state.revoke("token-id", "web-app", 2_000_000_000).await?;
/// assert!(state.snapshot(1_000).await?.revoked.contains_key("token-id"));
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StateBackend: Send + Sync + 'static {
    /// Revokes the access token `jti` of `client` until it expires at `exp`.
    async fn revoke(&self, jti: &str, client: &str, exp: u64) -> Result<(), StateError>;

    /// Revokes every token issued at or before `before` to `client` (`None`: to anybody).
    /// A watermark only moves forward.
    async fn revoke_issued_before(&self, client: Option<&str>, before: u64) -> Result<(), StateError>;

    /// A new refresh-token family number, unique in the backend.
    async fn new_family(&self) -> Result<u64, StateError>;

    /// Stores a refresh grant under the token's digest.
    async fn put_refresh(&self, digest: &[u8; 32], record: &RefreshRecord) -> Result<(), StateError>;

    /// Redeems a refresh token for `client_id` at `now`, atomically: of any number of
    /// concurrent redemptions of one token, one is [`Redemption::Fresh`].
    async fn redeem_refresh(&self, digest: &[u8; 32], client_id: &str, now: u64) -> Result<Redemption, StateError>;

    /// The grant of an unused, unexpired refresh token (introspection).
    async fn peek_refresh(&self, digest: &[u8; 32], now: u64) -> Result<Option<RefreshRecord>, StateError>;

    /// Ends the family of a refresh token of `client_id` (RFC 7009 revocation).
    async fn revoke_refresh_family(&self, digest: &[u8; 32], client_id: &str) -> Result<FamilyRevocation, StateError>;

    /// Forgets every refresh token of a client (removed or disabled).
    async fn revoke_client_refresh(&self, client_id: &str) -> Result<(), StateError>;

    /// Stores an authorization code under its digest.
    async fn put_code(&self, digest: &[u8; 32], record: &CodeRecord) -> Result<(), StateError>;

    /// Redeems an authorization code for `client_id` at `now`, atomically: of any number
    /// of concurrent redemptions of one code, one is [`CodeRedemption::Fresh`]; a code
    /// used before ends the refresh family its exchange started
    /// ([`CodeRedemption::Replayed`], for [`CODE_REPLAY_SECONDS`] past its expiry).
    async fn redeem_code(&self, digest: &[u8; 32], client_id: &str, now: u64) -> Result<CodeRedemption, StateError>;

    /// Counts a failed login of `user` at `now`; the `max_failures`-th failure within
    /// `lockout_seconds` locks the user for `lockout_seconds` and returns until when. Exactly
    /// one call returns `Some` for a lock, however many run at once.
    async fn record_failure(
        &self,
        user: &str,
        max_failures: u32,
        lockout_seconds: u64,
        now: u64,
    ) -> Result<Option<u64>, StateError>;

    /// Forgets the failures of `user` (after a successful login); a lock stays.
    async fn clear_failures(&self, user: &str) -> Result<(), StateError>;

    /// Until when `user` is locked, if it is at `now`.
    async fn locked_until(&self, user: &str, now: u64) -> Result<Option<u64>, StateError>;

    /// Everything a replica needs, as of one sequence number; expired entries left out.
    async fn snapshot(&self, now: u64) -> Result<Snapshot, StateError>;

    /// The changes after `sequence`, in order, with their numbers; `None` when the log no
    /// longer reaches back that far (or the epoch changed): take a new snapshot.
    async fn changes_since(&self, epoch: &str, sequence: u64) -> Result<Option<Vec<(u64, Change)>>, StateError>;

    /// A signal raised whenever the change log may have grown (Redis pub/sub, PostgreSQL
    /// `LISTEN`/`NOTIFY`), so a replica catches up at once instead of at its next poll;
    /// also raised after the backend reconnected its listener (changes may have been
    /// missed meanwhile). The backend listens in a task of its own for as long as the
    /// returned signal is held. Default `None`: replicas poll only. Polling stays on either
    /// way: a lost announcement delays a change by one interval, never longer.
    fn change_notifier(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// True when other processes share this backend: each process then keeps a replica of
    /// the revocations, synced in the background, and refuses with 503 when it falls
    /// behind. Default `false` (this process's memory is the whole truth).
    fn is_shared(&self) -> bool {
        false
    }
}

/// A random epoch name: 128 bits, hex.
pub(crate) fn new_epoch() -> Result<String, StateError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| StateError(format!("no OS randomness for the epoch: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
