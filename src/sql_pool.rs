// Connection pools on PostgreSQL or a SQLite file (feature `sql`), for the SQL user store
// and the SQL state backend: one way to read a URL, connect and bound the waiting.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

/// A pool on one of the two databases; `run_on!` runs the same code on either.
#[derive(Clone)]
pub(crate) enum SqlPool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the concrete pool of `$which` (a [`SqlPool`]).
macro_rules! run_on {
    ($which:expr, |$pool:ident| $body:expr) => {
        match $which {
            $crate::sql_pool::SqlPool::Postgres($pool) => $body,
            $crate::sql_pool::SqlPool::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use run_on;

impl SqlPool {
    /// Connects to `url`: `postgres://` (TLS by `sslmode`, on rustls with aws-lc) or
    /// `sqlite:` (a file, created when missing if `create` is set; in WAL mode with `wal`,
    /// so readers do not wait for a writer). The database must answer now. The error names
    /// what failed and never holds the URL.
    pub(crate) async fn connect(
        url: &str,
        max_connections: u32,
        timeout: Duration,
        create: bool,
        wal: bool,
    ) -> Result<Self, String> {
        let url = url.trim();
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| format!("bad PostgreSQL URL: {e}"))?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(timeout)
                .connect_with(options)
                .await
                .map_err(|e| format!("cannot connect: {e}"))?;
            Ok(Self::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let mut options = SqliteConnectOptions::from_str(url)
                .map_err(|e| format!("bad SQLite URL: {e}"))?
                .create_if_missing(create)
                .busy_timeout(timeout)
                .foreign_keys(true);
            if wal {
                options = options.journal_mode(SqliteJournalMode::Wal);
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(timeout)
                .connect_with(options)
                .await
                .map_err(|e| format!("cannot open: {e}"))?;
            Ok(Self::Sqlite(pool))
        } else {
            Err("the URL must start with postgres:// or sqlite:".to_owned())
        }
    }

    /// `postgres` or `sqlite`, for `Debug` and logs.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Runs each `;`-separated statement of `script` in turn (both drivers alike).
    pub(crate) async fn execute_script(&self, script: &str) -> Result<(), sqlx::Error> {
        for statement in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            run_on!(self, |pool| sqlx::query(statement).execute(pool).await.map(drop))?;
        }
        Ok(())
    }
}
