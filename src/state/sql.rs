// The SQL state backend (feature `sql`): PostgreSQL for instances that share state, a
// SQLite file for one durable node. Each step is one transaction; the change log is
// numbered under the meta row's lock, so its numbers commit in order.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    new_epoch, Change, CodeRecord, CodeRedemption, FamilyRevocation, Redemption, RefreshRecord, Snapshot, StateBackend,
    StateError, CODE_REPLAY_SECONDS,
};
use crate::sql_pool::{run_on, SqlPool};
use crate::telemetry::{self, Backend};

/// How many changes the log keeps for replicas that fell behind (older ones resync).
const LOG_LENGTH: i64 = 10_000;

/// How often (in stored refresh grants and codes) expired rows are removed, besides each
/// snapshot: the tables stay bounded by what is alive even when no replica resyncs.
const PRUNE_EVERY: u64 = 1000;

/// Failure counts older than this are forgotten whatever the lockout window.
const FAILURE_RETENTION_SECONDS: u64 = 86_400;

/// The tables of [`SqlState`] (`CREATE TABLE IF NOT EXISTS`, the same text on PostgreSQL
/// and SQLite), created when the backend is built. Refresh tokens are stored under the
/// hex SHA-256 of the token, never the token, and authorization codes likewise. One row of `ts_state_meta` holds the
/// epoch, the last change number and the last refresh-family number.
///
/// ```
/// assert!(tower_secure::state::SQL_STATE_SCHEMA.contains("CREATE TABLE IF NOT EXISTS ts_state_refresh "));
/// ```
pub const SQL_STATE_SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS ts_state_meta (
    id       INTEGER PRIMARY KEY,
    epoch    TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    families BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ts_state_log (
    sequence BIGINT PRIMARY KEY,
    change   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ts_state_revoked (
    jti       TEXT PRIMARY KEY,
    client_id TEXT NOT NULL,
    exp       BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ts_state_watermark (
    client_id     TEXT PRIMARY KEY,
    issued_before BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ts_state_refresh (
    digest     TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    scopes     TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires    BIGINT NOT NULL,
    family     BIGINT NOT NULL,
    access_jti TEXT NOT NULL,
    access_exp BIGINT NOT NULL,
    used       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ts_state_refresh_family ON ts_state_refresh (family);
CREATE INDEX IF NOT EXISTS ts_state_refresh_client ON ts_state_refresh (client_id);
CREATE TABLE IF NOT EXISTS ts_state_code (
    digest         TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    user_name      TEXT NOT NULL,
    scopes         TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    expires        BIGINT NOT NULL,
    family         BIGINT NOT NULL,
    used           BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS ts_state_failure (
    user_name TEXT PRIMARY KEY,
    failures  BIGINT NOT NULL,
    first_at  BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS ts_state_lock (
    user_name    TEXT PRIMARY KEY,
    locked_until BIGINT NOT NULL
)";

/// The watermark row that stands for every client (client ids are never empty).
const EVERY_CLIENT: &str = "";

/// Numbers the next change under the meta row's lock (held to commit: a later number
/// cannot commit before an earlier one), stores it and trims the log.
const NEXT_SEQUENCE: &str = "UPDATE ts_state_meta SET sequence = sequence + 1 WHERE id = 1 RETURNING sequence";
const APPEND: &str = "INSERT INTO ts_state_log (sequence, change) VALUES ($1, $2)";
const TRIM: &str = "DELETE FROM ts_state_log WHERE sequence <= $1";
/// The PostgreSQL channel changes are announced on.
const CHANNEL: &str = "ts_state_changes";
const ANNOUNCE: &str = "SELECT pg_notify('ts_state_changes', '')";

const REVOKE: &str = "INSERT INTO ts_state_revoked (jti, client_id, exp) VALUES ($1, $2, $3) \
    ON CONFLICT (jti) DO UPDATE SET exp = excluded.exp";
const WATERMARK: &str = "INSERT INTO ts_state_watermark (client_id, issued_before) VALUES ($1, $2) \
    ON CONFLICT (client_id) DO UPDATE SET issued_before = CASE \
    WHEN excluded.issued_before > ts_state_watermark.issued_before THEN excluded.issued_before \
    ELSE ts_state_watermark.issued_before END";
const PUT_REFRESH: &str = "INSERT INTO ts_state_refresh \
    (digest, client_id, user_name, scopes, issued_at, expires, family, access_jti, access_exp, used) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0) \
    ON CONFLICT (digest) DO NOTHING";
const GRANT_COLUMNS: &str = "client_id, user_name, scopes, issued_at, expires, family, access_jti, access_exp";
/// Marks an unused, unexpired grant of the client used and returns it: the one atomic step
/// of a redemption (a row lock in PostgreSQL, the write lock in SQLite).
const REDEEM: &str = "UPDATE ts_state_refresh SET used = 1 \
    WHERE digest = $1 AND client_id = $2 AND expires > $3 AND used = 0 RETURNING ";
const FIND_REFRESH: &str = "SELECT client_id, expires, used, family FROM ts_state_refresh WHERE digest = $1";
/// A refresh token the marking `UPDATE` did not take: (owner, replayable, family); used and
/// unexpired is a replay.
const REPLAYABLE_REFRESH: &str =
    "SELECT client_id, CAST(CASE WHEN used <> 0 AND expires > $2 THEN 1 ELSE 0 END AS BIGINT), \
    family FROM ts_state_refresh WHERE digest = $1";
/// The same for a code: used is a replay, expired or not ($2 unused but bound alike).
const REPLAYABLE_CODE: &str = "SELECT client_id, CAST(CASE WHEN used <> 0 AND $2 >= 0 THEN 1 ELSE 0 END AS BIGINT), \
    family FROM ts_state_code WHERE digest = $1";
const REMOVE_FAMILY: &str = "DELETE FROM ts_state_refresh WHERE family = $1 RETURNING access_jti, access_exp";
const PUT_CODE: &str = "INSERT INTO ts_state_code \
    (digest, client_id, redirect_uri, user_name, scopes, code_challenge, expires, family, used) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0) ON CONFLICT (digest) DO NOTHING";
/// Marks an unused, unexpired code of the client used and returns it (one atomic step).
const REDEEM_CODE: &str = "UPDATE ts_state_code SET used = 1 \
    WHERE digest = $1 AND client_id = $2 AND expires > $3 AND used = 0 \
    RETURNING client_id, redirect_uri, user_name, scopes, code_challenge, expires, family";
const COUNT_FAILURE: &str = "INSERT INTO ts_state_failure (user_name, failures, first_at) VALUES ($1, 1, $2) \
    ON CONFLICT (user_name) DO UPDATE SET \
    failures = CASE WHEN ts_state_failure.first_at + $3 <= $2 THEN 1 ELSE ts_state_failure.failures + 1 END, \
    first_at = CASE WHEN ts_state_failure.first_at + $3 <= $2 THEN $2 ELSE ts_state_failure.first_at END \
    RETURNING failures";
const LOCK: &str = "INSERT INTO ts_state_lock (user_name, locked_until) VALUES ($1, $2) \
    ON CONFLICT (user_name) DO UPDATE SET locked_until = CASE \
    WHEN excluded.locked_until > ts_state_lock.locked_until THEN excluded.locked_until \
    ELSE ts_state_lock.locked_until END";

/// Shared state in PostgreSQL, or durable state in a SQLite file (feature `sql`).
///
/// Every step is one transaction on the tables of [`SQL_STATE_SCHEMA`], created when the
/// backend is built: a refresh token is redeemed by one `UPDATE ... RETURNING` that marks
/// it used, a failed login is counted by one upsert, so instances sharing a PostgreSQL
/// database agree on both. Revocations, watermarks and locks are also written to a
/// numbered change log that each instance's replica follows. A SQLite file keeps state
/// across restarts of one instance (processes on one host may share the file).
///
/// ```no_run
/// # async fn run() -> Result<(), tower_secure::state::StateError> {
/// use std::time::Duration;
/// use tower_secure::state::SqlState;
///
/// let shared = SqlState::builder("postgres://api:secret@db.internal/api?sslmode=verify-full")
///     .timeout(Duration::from_millis(500))
///     .build()
///     .await?;
/// let durable = SqlState::builder("sqlite:///var/lib/orders-api/state.db").build().await?;
/// # let _ = (shared, durable); Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlState {
    pool: SqlPool,
    timeout: Duration,
    /// Refresh grants and codes stored through this handle: every [`PRUNE_EVERY`]-th write
    /// first removes what has expired.
    writes: Arc<AtomicU64>,
}

impl std::fmt::Debug for SqlState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlState").field("backend", &self.pool.kind()).finish_non_exhaustive()
    }
}

/// Builds a [`SqlState`]; start with [`SqlState::builder`].
pub struct SqlStateBuilder {
    url: String,
    max_connections: u32,
    timeout: Duration,
}

impl std::fmt::Debug for SqlStateBuilder {
    /// Leaves out the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStateBuilder")
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SqlState {
    /// A backend on the database at `url`: `postgres://user:password@host:port/database`
    /// (`?sslmode=verify-full` for TLS, rustls on aws-lc) or `sqlite://path/to/state.db`
    /// (created when missing). Separate APIs on one PostgreSQL server use separate
    /// databases or schemas.
    pub fn builder(url: impl Into<String>) -> SqlStateBuilder {
        SqlStateBuilder { url: url.into(), max_connections: 5, timeout: Duration::from_secs(1) }
    }

    /// Runs one step within the timeout; a database error or a timeout is a [`StateError`].
    /// `operation` names it in the metrics (the trait method), `what` in the error.
    async fn step<T>(
        &self,
        operation: &'static str,
        what: &str,
        step: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StateError> {
        let bounded = async {
            match tokio::time::timeout(self.timeout, step).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(e)) => Err(StateError(format!("SQL state: {what}: {e}"))),
                Err(_) => Err(StateError(format!("SQL state: {what}: timed out"))),
            }
        };
        telemetry::timed_result(Backend::State { backend: "sql", operation }, bounded).await
    }
}

impl SqlState {
    /// Removes what has expired: revocations, refresh grants, locks, old failure counts,
    /// and codes past their replay window.
    async fn prune(&self, now: u64) -> Result<(), StateError> {
        let prune = "DELETE FROM ts_state_revoked WHERE exp < $1; \
            DELETE FROM ts_state_refresh WHERE expires <= $1; \
            DELETE FROM ts_state_lock WHERE locked_until <= $1; \
            DELETE FROM ts_state_failure WHERE first_at <= $2; \
            DELETE FROM ts_state_code WHERE expires + $3 <= $1";
        let failures_before = db(now.saturating_sub(FAILURE_RETENTION_SECONDS));
        self.step("prune", "prune", async move {
            run_on!(&self.pool, |pool| {
                for statement in prune.split("; ") {
                    let query = sqlx::query(statement).bind(db(now)).bind(failures_before);
                    query.bind(db(CODE_REPLAY_SECONDS)).execute(pool).await?;
                }
                Ok::<_, sqlx::Error>(())
            })
        })
        .await
    }

    /// Counts a stored grant or code; every [`PRUNE_EVERY`]-th prunes first.
    async fn count_write(&self) -> Result<(), StateError> {
        if self.writes.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune(crate::unix_seconds()).await?;
        }
        Ok(())
    }
}

impl SqlStateBuilder {
    /// At most this many connections (default 5).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Bounds connecting and every step, waiting for a connection included (default 1 s):
    /// a slower answer is a failure.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Connects (the database must answer now), creates the tables when missing, and
    /// returns the backend. Errors never show the URL.
    pub async fn build(self) -> Result<SqlState, StateError> {
        let connect = SqlPool::connect(&self.url, self.max_connections, self.timeout, true, true);
        let pool = match tokio::time::timeout(self.timeout, connect).await {
            Ok(connected) => connected.map_err(|e| StateError(format!("SQL state: {e}")))?,
            Err(_) => return Err(StateError("SQL state: cannot connect: timed out".to_owned())),
        };
        let state = SqlState { pool, timeout: self.timeout, writes: Arc::default() };
        let epoch = new_epoch()?;
        let create = async {
            state.pool.execute_script(SQL_STATE_SCHEMA).await?;
            let first = "INSERT INTO ts_state_meta (id, epoch, sequence, families) VALUES (1, $1, 0, 0) \
                ON CONFLICT (id) DO NOTHING";
            run_on!(&state.pool, |pool| sqlx::query(first).bind(&epoch).execute(pool).await.map(drop))
        };
        state.step("create_tables", "cannot create the tables", create).await?;
        Ok(state)
    }
}

/// A number for a BIGINT column (dates and family numbers are far below `i64::MAX`).
fn db(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A BIGINT read back; a negative number (never written) counts as 0.
fn num(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn hex(digest: &[u8; 32]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn json_error(e: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// A code row in [`REDEEM_CODE`]'s order.
type CodeRow = (String, String, String, String, String, i64, i64);

fn code_of(row: CodeRow) -> Result<CodeRecord, sqlx::Error> {
    let (client_id, redirect_uri, user, scopes, code_challenge, expires, family) = row;
    Ok(CodeRecord {
        client_id,
        redirect_uri,
        user,
        scopes: serde_json::from_str(&scopes).map_err(json_error)?,
        code_challenge,
        expires: num(expires),
        family: num(family),
    })
}

/// A grant row in [`GRANT_COLUMNS`] order.
type GrantRow = (String, String, String, i64, i64, i64, String, i64);

fn grant_of(row: GrantRow) -> Result<RefreshRecord, sqlx::Error> {
    let (client_id, user, scopes, issued_at, expires, family, access_jti, access_exp) = row;
    Ok(RefreshRecord {
        client_id,
        user,
        scopes: serde_json::from_str(&scopes).map_err(json_error)?,
        issued_at: num(issued_at),
        expires: num(expires),
        family: num(family),
        access_jti,
        access_exp: num(access_exp),
    })
}

fn access_tokens(rows: Vec<(String, i64)>) -> Vec<(String, u64)> {
    rows.into_iter().map(|(jti, exp)| (jti, num(exp))).collect()
}

/// What a single-use redemption found: the row it marked used, a replay (the family it
/// ended, as access tokens), or nothing valid.
enum SingleUse<R> {
    Fresh(R),
    Replayed(Vec<(String, u64)>),
    Invalid,
}

/// One single-use redemption in one transaction: `$redeem` marks an unused, unexpired
/// row of the client used and returns it (`$row`); when it finds nothing, a replayable row
/// of the client (`$find`: owner, replayable, family) ends its family. Binds `$1` digest,
/// `$2` client (`$find`: `$2` now) and `$3` now.
macro_rules! redeem_once {
    ($self:expr, $operation:expr, $what:expr, $redeem:expr, $find:expr, $digest:expr, $client:expr, $now:expr, $row:ty) => {
        $self
            .step($operation, $what, async move {
                run_on!(&$self.pool, |pool| {
                    let mut tx = pool.begin().await?;
                    let fresh: Option<$row> = sqlx::query_as($redeem)
                        .bind($digest)
                        .bind($client)
                        .bind(db($now))
                        .fetch_optional(&mut *tx)
                        .await?;
                    let outcome = match fresh {
                        Some(row) => SingleUse::Fresh(row),
                        None => {
                            let found: Option<(String, i64, i64)> =
                                sqlx::query_as($find).bind($digest).bind(db($now)).fetch_optional(&mut *tx).await?;
                            match found {
                                Some((owner, replayable, family)) if owner == $client && replayable != 0 => {
                                    let rows = sqlx::query_as(REMOVE_FAMILY).bind(family).fetch_all(&mut *tx).await?;
                                    SingleUse::Replayed(access_tokens(rows))
                                }
                                _ => SingleUse::Invalid,
                            }
                        }
                    };
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>(outcome)
                })
            })
            .await
    };
}

/// Appends `change` to the log inside the transaction `$tx` (its first write, see
/// [`NEXT_SEQUENCE`]) and trims the log.
macro_rules! append {
    ($self:expr, $tx:expr, $change:expr) => {{
        let (sequence,): (i64,) = sqlx::query_as(NEXT_SEQUENCE).fetch_one(&mut *$tx).await?;
        let change = serde_json::to_string($change).map_err(json_error)?;
        sqlx::query(APPEND).bind(sequence).bind(change).execute(&mut *$tx).await?;
        sqlx::query(TRIM).bind(sequence - LOG_LENGTH).execute(&mut *$tx).await?;
        if matches!($self.pool, SqlPool::Postgres(_)) {
            // Delivered to every listener when the transaction commits.
            sqlx::query(ANNOUNCE).execute(&mut *$tx).await?;
        }
    }};
}

#[async_trait]
impl StateBackend for SqlState {
    async fn revoke(&self, jti: &str, client: &str, exp: u64) -> Result<(), StateError> {
        let change = Change::Revoked { jti: jti.to_owned(), exp };
        self.step("revoke", "revoke", async move {
            run_on!(&self.pool, |pool| {
                let mut tx = pool.begin().await?;
                append!(self, tx, &change);
                sqlx::query(REVOKE).bind(jti).bind(client).bind(db(exp)).execute(&mut *tx).await?;
                tx.commit().await
            })
        })
        .await
    }

    async fn revoke_issued_before(&self, client: Option<&str>, before: u64) -> Result<(), StateError> {
        let change = Change::IssuedBefore { client: client.map(str::to_owned), before };
        let row = client.unwrap_or(EVERY_CLIENT);
        self.step("revoke_issued_before", "watermark", async move {
            run_on!(&self.pool, |pool| {
                let mut tx = pool.begin().await?;
                append!(self, tx, &change);
                sqlx::query(WATERMARK).bind(row).bind(db(before)).execute(&mut *tx).await?;
                tx.commit().await
            })
        })
        .await
    }

    async fn new_family(&self) -> Result<u64, StateError> {
        let next = "UPDATE ts_state_meta SET families = families + 1 WHERE id = 1 RETURNING families";
        let family: (i64,) = self
            .step("new_family", "new family", async {
                run_on!(&self.pool, |pool| sqlx::query_as(next).fetch_one(pool).await)
            })
            .await?;
        Ok(num(family.0))
    }

    async fn put_refresh(&self, digest: &[u8; 32], record: &RefreshRecord) -> Result<(), StateError> {
        self.count_write().await?;
        let scopes = serde_json::to_string(&record.scopes).map_err(|e| StateError(format!("SQL state: {e}")))?;
        let digest = hex(digest);
        self.step("put_refresh", "store refresh", async {
            run_on!(&self.pool, |pool| sqlx::query(PUT_REFRESH)
                .bind(&digest)
                .bind(&record.client_id)
                .bind(&record.user)
                .bind(&scopes)
                .bind(db(record.issued_at))
                .bind(db(record.expires))
                .bind(db(record.family))
                .bind(&record.access_jti)
                .bind(db(record.access_exp))
                .execute(pool)
                .await
                .map(drop))
        })
        .await
        .map(drop)
    }

    async fn redeem_refresh(&self, digest: &[u8; 32], client_id: &str, now: u64) -> Result<Redemption, StateError> {
        let (digest, redeem) = (hex(digest), format!("{REDEEM}{GRANT_COLUMNS}"));
        let what = "redeem refresh";
        Ok(
            match redeem_once!(
                self,
                "redeem_refresh",
                what,
                &redeem,
                REPLAYABLE_REFRESH,
                &digest,
                client_id,
                now,
                GrantRow
            )? {
                SingleUse::Fresh(row) => {
                    Redemption::Fresh(grant_of(row).map_err(|e| StateError(format!("{what}: {e}")))?)
                }
                SingleUse::Replayed(access) => Redemption::Replayed(access),
                SingleUse::Invalid => Redemption::Invalid,
            },
        )
    }

    async fn peek_refresh(&self, digest: &[u8; 32], now: u64) -> Result<Option<RefreshRecord>, StateError> {
        let digest = hex(digest);
        let peek =
            format!("SELECT {GRANT_COLUMNS} FROM ts_state_refresh WHERE digest = $1 AND used = 0 AND expires > $2");
        let row: Option<GrantRow> = self
            .step("peek_refresh", "read refresh", async {
                run_on!(&self.pool, |pool| sqlx::query_as(&peek).bind(&digest).bind(db(now)).fetch_optional(pool).await)
            })
            .await?;
        row.map(grant_of).transpose().map_err(|e| StateError(format!("SQL state: read refresh: {e}")))
    }

    async fn revoke_refresh_family(&self, digest: &[u8; 32], client_id: &str) -> Result<FamilyRevocation, StateError> {
        let digest = hex(digest);
        // The delete comes first: a SQLite transaction that begins with a read cannot
        // always become a writer.
        let remove = "DELETE FROM ts_state_refresh WHERE family = \
            (SELECT family FROM ts_state_refresh WHERE digest = $1 AND client_id = $2) RETURNING access_jti, access_exp";
        self.step("revoke_refresh_family", "revoke refresh", async move {
            run_on!(&self.pool, |pool| {
                let mut tx = pool.begin().await?;
                let rows: Vec<(String, i64)> =
                    sqlx::query_as(remove).bind(&digest).bind(client_id).fetch_all(&mut *tx).await?;
                let outcome = if !rows.is_empty() {
                    FamilyRevocation::Revoked(access_tokens(rows))
                } else {
                    let found: Option<(String, i64, i64, i64)> =
                        sqlx::query_as(FIND_REFRESH).bind(&digest).fetch_optional(&mut *tx).await?;
                    match found {
                        Some(_) => FamilyRevocation::OtherClient,
                        None => FamilyRevocation::Unknown,
                    }
                };
                tx.commit().await?;
                Ok(outcome)
            })
        })
        .await
    }

    async fn revoke_client_refresh(&self, client_id: &str) -> Result<(), StateError> {
        let remove = "DELETE FROM ts_state_refresh WHERE client_id = $1";
        self.step("revoke_client_refresh", "revoke client refresh", async {
            run_on!(&self.pool, |pool| sqlx::query(remove).bind(client_id).execute(pool).await.map(drop))
        })
        .await
        .map(drop)
    }

    async fn put_code(&self, digest: &[u8; 32], record: &CodeRecord) -> Result<(), StateError> {
        self.count_write().await?;
        let scopes = serde_json::to_string(&record.scopes).map_err(|e| StateError(format!("SQL state: {e}")))?;
        let digest = hex(digest);
        self.step("put_code", "store code", async {
            run_on!(&self.pool, |pool| sqlx::query(PUT_CODE)
                .bind(&digest)
                .bind(&record.client_id)
                .bind(&record.redirect_uri)
                .bind(&record.user)
                .bind(&scopes)
                .bind(&record.code_challenge)
                .bind(db(record.expires))
                .bind(db(record.family))
                .execute(pool)
                .await
                .map(drop))
        })
        .await
    }

    async fn redeem_code(&self, digest: &[u8; 32], client_id: &str, now: u64) -> Result<CodeRedemption, StateError> {
        let (digest, what) = (hex(digest), "redeem code");
        Ok(
            match redeem_once!(
                self,
                "redeem_code",
                what,
                REDEEM_CODE,
                REPLAYABLE_CODE,
                &digest,
                client_id,
                now,
                CodeRow
            )? {
                SingleUse::Fresh(row) => {
                    CodeRedemption::Fresh(code_of(row).map_err(|e| StateError(format!("{what}: {e}")))?)
                }
                SingleUse::Replayed(access) => CodeRedemption::Replayed(access),
                SingleUse::Invalid => CodeRedemption::Invalid,
            },
        )
    }

    async fn record_failure(
        &self,
        user: &str,
        max_failures: u32,
        lockout_seconds: u64,
        now: u64,
    ) -> Result<Option<u64>, StateError> {
        let until = now.saturating_add(lockout_seconds);
        let change = Change::Locked { user: user.to_owned(), until };
        self.step("record_failure", "count failure", async move {
            run_on!(&self.pool, |pool| {
                let mut tx = pool.begin().await?;
                let (failures,): (i64,) = sqlx::query_as(COUNT_FAILURE)
                    .bind(user)
                    .bind(db(now))
                    .bind(db(lockout_seconds))
                    .fetch_one(&mut *tx)
                    .await?;
                // Concurrent counts of one user wait for each other's row lock: exactly
                // one of them sees the threshold.
                let locked = num(failures) == u64::from(max_failures.max(1));
                if locked {
                    sqlx::query(LOCK).bind(user).bind(db(until)).execute(&mut *tx).await?;
                    append!(self, tx, &change);
                }
                tx.commit().await?;
                Ok(locked.then_some(until))
            })
        })
        .await
    }

    async fn clear_failures(&self, user: &str) -> Result<(), StateError> {
        let clear = "DELETE FROM ts_state_failure WHERE user_name = $1";
        self.step("clear_failures", "clear failures", async {
            run_on!(&self.pool, |pool| sqlx::query(clear).bind(user).execute(pool).await.map(drop))
        })
        .await
        .map(drop)
    }

    async fn locked_until(&self, user: &str, now: u64) -> Result<Option<u64>, StateError> {
        let read = "SELECT locked_until FROM ts_state_lock WHERE user_name = $1 AND locked_until > $2";
        let until: Option<(i64,)> = self
            .step("locked_until", "read lock", async {
                run_on!(&self.pool, |pool| sqlx::query_as(read).bind(user).bind(db(now)).fetch_optional(pool).await)
            })
            .await?;
        Ok(until.map(|(until,)| num(until)))
    }

    async fn snapshot(&self, now: u64) -> Result<Snapshot, StateError> {
        self.prune(now).await?;
        let postgres = matches!(self.pool, SqlPool::Postgres(_));
        self.step("snapshot", "snapshot", async move {
            run_on!(&self.pool, |pool| {
                // One consistent view: the log position and the sets it produced.
                let mut tx = pool.begin().await?;
                if postgres {
                    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
                }
                let (epoch, sequence): (String, i64) =
                    sqlx::query_as("SELECT epoch, sequence FROM ts_state_meta WHERE id = 1")
                        .fetch_one(&mut *tx)
                        .await?;
                let revoked: Vec<(String, i64)> =
                    sqlx::query_as("SELECT jti, exp FROM ts_state_revoked").fetch_all(&mut *tx).await?;
                let marks: Vec<(String, i64)> =
                    sqlx::query_as("SELECT client_id, issued_before FROM ts_state_watermark")
                        .fetch_all(&mut *tx)
                        .await?;
                let locks: Vec<(String, i64)> =
                    sqlx::query_as("SELECT user_name, locked_until FROM ts_state_lock").fetch_all(&mut *tx).await?;
                tx.commit().await?;
                let mut snapshot = Snapshot { epoch, sequence: num(sequence), ..Snapshot::default() };
                snapshot.revoked = revoked.into_iter().map(|(jti, exp)| (jti, num(exp))).collect();
                for (client, before) in marks {
                    match client.as_str() {
                        EVERY_CLIENT => snapshot.global_watermark = num(before),
                        _ => {
                            snapshot.client_watermarks.insert(client, num(before));
                        }
                    }
                }
                snapshot.locks = locks.into_iter().map(|(user, until)| (user, num(until))).collect();
                Ok(snapshot)
            })
        })
        .await
    }

    async fn changes_since(&self, epoch: &str, sequence: u64) -> Result<Option<Vec<(u64, Change)>>, StateError> {
        let read = "SELECT sequence, change FROM ts_state_log WHERE sequence > $1 ORDER BY sequence LIMIT 10000";
        let since = db(sequence);
        let found = self
            .step("changes_since", "read changes", async move {
                run_on!(&self.pool, |pool| {
                    let mut tx = pool.begin().await?;
                    let (current, last): (String, i64) =
                        sqlx::query_as("SELECT epoch, sequence FROM ts_state_meta WHERE id = 1")
                            .fetch_one(&mut *tx)
                            .await?;
                    let (oldest,): (Option<i64>,) =
                        sqlx::query_as("SELECT MIN(sequence) FROM ts_state_log").fetch_one(&mut *tx).await?;
                    let rows: Vec<(i64, String)> = sqlx::query_as(read).bind(since).fetch_all(&mut *tx).await?;
                    tx.commit().await?;
                    Ok::<_, sqlx::Error>((current, last, oldest, rows))
                })
            })
            .await?;
        let (current, last, oldest, rows) = found;
        let oldest = oldest.unwrap_or(last + 1);
        // A new epoch (the tables were emptied), or a log that no longer reaches back.
        if current != epoch || since + 1 < oldest || since > last {
            return Ok(None);
        }
        let mut changes = Vec::with_capacity(rows.len());
        for (number, change) in rows {
            let change =
                serde_json::from_str(&change).map_err(|e| StateError(format!("SQL state: bad change: {e}")))?;
            changes.push((num(number), change));
        }
        Ok(Some(changes))
    }

    fn change_notifier(&self) -> Option<Arc<Notify>> {
        let SqlPool::Postgres(pool) = &self.pool else { return None };
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let notify = Arc::new(Notify::new());
        // A pool of its own: the listener holds its connection for good, and must not take
        // one of the steps' connections (with `max_connections(1)`, the only one).
        let options = (*pool.connect_options()).clone();
        let listening = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_lazy_with(options);
        runtime.spawn(listen(listening, Arc::downgrade(&notify), self.timeout));
        Some(notify)
    }

    fn is_shared(&self) -> bool {
        // PostgreSQL is shared by design; a SQLite file may be opened by several processes
        // on one host. Either way this process keeps a replica, loaded from the tables at
        // start, so a restart forgets nothing.
        true
    }
}

/// `LISTEN`s on [`CHANNEL`] on a connection of its own and raises `notify` for each
/// notification, and once after each (re)connection (what was announced meanwhile is
/// lost). Retries after a second when PostgreSQL fails; ends once nobody holds `notify`.
async fn listen(pool: sqlx::PgPool, notify: Weak<Notify>, timeout: Duration) {
    while notify.strong_count() > 0 {
        let connected = tokio::time::timeout(timeout, async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        })
        .await;
        let Ok(Ok(mut listener)) = connected else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut announced = true; // listening: catch up with what was missed
        loop {
            if announced {
                let Some(strong) = notify.upgrade() else { return };
                strong.notify_one();
            }
            // Wake now and then to notice that nobody listens any more.
            match tokio::time::timeout(Duration::from_secs(1), listener.try_recv()).await {
                // A notification; or the connection was lost and the next call reconnects
                // (and listens again): either way, catch up.
                Ok(Ok(_)) => announced = true,
                Ok(Err(_)) => break,
                Err(_) if notify.strong_count() == 0 => return,
                Err(_) => announced = false,
            }
        }
    }
}
