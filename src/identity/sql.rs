// The SQL user store (SPEC G2, feature `sql`): users, roles and role permissions in
// PostgreSQL or a SQLite file, through sqlx, with overridable queries as WSO2's JDBC user
// store has them. The store hands out PHC hashes; the crate verifies passwords.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Permission, PermissionSet, QualifiedName, UserRecord, UserStore, UserStoreError};
use crate::sql_pool::{run_on, SqlPool};
use crate::telemetry::{self, Backend};

/// The schema [`SqlUserStoreBuilder::create_schema`] creates (`CREATE TABLE IF NOT EXISTS`,
/// the same text on PostgreSQL and SQLite). Every row belongs to a tenant (`carbon.super`
/// for names without `@tenant`); a user's name is the user part of its qualified name
/// (`alex` for `SECONDARY/alex@example.com`): the domain is the store's, as in WSO2.
/// `password_hash` is an argon2id PHC string (`tower-secure hash-password`), or NULL for a
/// user without a password; a `disabled` user cannot authenticate by any means.
///
/// ```
/// assert!(tower_secure::identity::SQL_SCHEMA.contains("CREATE TABLE IF NOT EXISTS ts_user "));
/// ```
pub const SQL_SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS ts_user (
    tenant        VARCHAR(255) NOT NULL DEFAULT 'carbon.super',
    name          VARCHAR(255) NOT NULL,
    password_hash TEXT,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS ts_role (
    tenant VARCHAR(255) NOT NULL DEFAULT 'carbon.super',
    name   VARCHAR(255) NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE IF NOT EXISTS ts_user_role (
    tenant    VARCHAR(255) NOT NULL DEFAULT 'carbon.super',
    user_name VARCHAR(255) NOT NULL,
    role_name VARCHAR(255) NOT NULL,
    PRIMARY KEY (tenant, user_name, role_name),
    FOREIGN KEY (tenant, user_name) REFERENCES ts_user (tenant, name) ON DELETE CASCADE,
    FOREIGN KEY (tenant, role_name) REFERENCES ts_role (tenant, name) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS ts_role_permission (
    tenant     VARCHAR(255) NOT NULL DEFAULT 'carbon.super',
    role_name  VARCHAR(255) NOT NULL,
    permission VARCHAR(1024) NOT NULL,
    PRIMARY KEY (tenant, role_name, permission),
    FOREIGN KEY (tenant, role_name) REFERENCES ts_role (tenant, name) ON DELETE CASCADE
);
";

/// The three queries of a look-up, each taking `$1` = tenant and `$2` = user name (the
/// user part), as WSO2's JDBC store lets you replace its SQL to read your own tables.
///
/// - `find_user`: zero or one row of two columns, the PHC hash (text, NULL for no
///   password) and whether the user is disabled (boolean; an integer on SQLite). Several
///   rows for one name are refused as a store failure (503), never one of them picked.
/// - `user_roles`: one row per role, a text column.
/// - `user_permissions`: one row per permission the user's roles grant, a text column.
///   A value that is not a permission path is left out and logged.
///
/// All three run for every look-up, known user or not, so the database work does not tell
/// them apart.
///
/// ```
/// use tower_secure::identity::SqlQueries;
///
/// let queries = SqlQueries::default()
///     .find_user("SELECT pw, NOT active FROM people WHERE realm = $1 AND login = $2");
/// assert!(queries.user_roles.contains("ts_user_role"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqlQueries {
    /// `SELECT password_hash, disabled ...`: see the type's documentation.
    pub find_user: String,
    /// `SELECT role ...`.
    pub user_roles: String,
    /// `SELECT permission ...`.
    pub user_permissions: String,
}

impl Default for SqlQueries {
    /// The queries over [`SQL_SCHEMA`].
    fn default() -> Self {
        Self {
            find_user: "SELECT password_hash, disabled FROM ts_user WHERE tenant = $1 AND name = $2".to_owned(),
            user_roles: "SELECT role_name FROM ts_user_role WHERE tenant = $1 AND user_name = $2 ORDER BY role_name"
                .to_owned(),
            user_permissions: "SELECT DISTINCT p.permission FROM ts_user_role ur \
                 JOIN ts_role_permission p ON p.tenant = ur.tenant AND p.role_name = ur.role_name \
                 WHERE ur.tenant = $1 AND ur.user_name = $2"
                .to_owned(),
        }
    }
}

impl SqlQueries {
    /// Replaces the user query.
    pub fn find_user(mut self, sql: impl Into<String>) -> Self {
        self.find_user = sql.into();
        self
    }

    /// Replaces the roles query.
    pub fn user_roles(mut self, sql: impl Into<String>) -> Self {
        self.user_roles = sql.into();
        self
    }

    /// Replaces the permissions query.
    pub fn user_permissions(mut self, sql: impl Into<String>) -> Self {
        self.user_permissions = sql.into();
        self
    }
}

/// Users, roles and permissions in PostgreSQL or a SQLite file (feature `sql`).
///
/// The store reads a user's PHC hash, disabled flag, roles and the permissions of those
/// roles ([`SqlQueries`], over [`SQL_SCHEMA`] unless replaced); the crate verifies the
/// password, so the store never sees one. A database that fails or takes longer than the
/// [`timeout`](SqlUserStoreBuilder::timeout) is a store failure: 503 with `Retry-After`,
/// never 401, never 200. Connections are pooled; a connection that broke (a restarted
/// server) is replaced on the next look-up.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use tower_secure::identity::{SqlQueries, SqlUserStore};
/// use tower_secure::SecureLayer;
///
/// let store = SqlUserStore::builder("postgres://app:secret@db.internal/users")
///     .create_schema(true)
///     .query_overrides(SqlQueries::default())
///     .build()
///     .await?;
/// let layer = SecureLayer::builder().user_store(store).build()?;
/// # let _ = layer; Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqlUserStore {
    pool: SqlPool,
    queries: Arc<SqlQueries>,
    timeout: Duration,
    reference: Option<String>,
    domain: String,
}

impl std::fmt::Debug for SqlUserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlUserStore").field("backend", &self.pool.kind()).finish_non_exhaustive()
    }
}

/// Builds a [`SqlUserStore`]; start with [`SqlUserStore::builder`].
pub struct SqlUserStoreBuilder {
    url: String,
    create_schema: bool,
    queries: SqlQueries,
    max_connections: u32,
    timeout: Duration,
    reference: Option<String>,
    domain: String,
}

impl std::fmt::Debug for SqlUserStoreBuilder {
    /// Leaves out the URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlUserStoreBuilder")
            .field("create_schema", &self.create_schema)
            .field("queries", &self.queries)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SqlUserStore {
    /// A store on the database at `url`: `postgres://user:password@host:port/database`
    /// (`?sslmode=require` or `verify-full` for TLS, through rustls on aws-lc) or
    /// `sqlite://path/to/users.db` (a file: each pooled connection opens it; with
    /// [`create_schema`](SqlUserStoreBuilder::create_schema) a missing file is created).
    pub fn builder(url: impl Into<String>) -> SqlUserStoreBuilder {
        SqlUserStoreBuilder {
            url: url.into(),
            create_schema: false,
            queries: SqlQueries::default(),
            max_connections: 10,
            timeout: Duration::from_secs(5),
            reference: None,
            domain: super::PRIMARY_DOMAIN.to_owned(),
        }
    }

    async fn lookup(&self, name: &QualifiedName) -> Result<Option<UserRecord>, sqlx::Error> {
        let (q, tenant, user) = (&*self.queries, name.tenant(), name.user());
        // The same three queries for known and unknown users alike, on one connection.
        let (mut found, roles, permissions) = run_on!(&self.pool, |pool| {
            let mut conn = pool.acquire().await?;
            let found: Vec<(Option<String>, bool)> =
                sqlx::query_as(&q.find_user).bind(tenant).bind(user).fetch_all(&mut *conn).await?;
            let roles: Vec<(String,)> =
                sqlx::query_as(&q.user_roles).bind(tenant).bind(user).fetch_all(&mut *conn).await?;
            let permissions: Vec<(String,)> =
                sqlx::query_as(&q.user_permissions).bind(tenant).bind(user).fetch_all(&mut *conn).await?;
            (found, roles, permissions)
        });
        // A name that matches several users (a replaced query) is refused, never guessed.
        if found.len() > 1 {
            return Err(sqlx::Error::Protocol(format!("find_user returned {} rows for one user", found.len())));
        }
        let Some((password_hash, disabled)) = found.pop() else { return Ok(None) };
        let mut granted = PermissionSet::default();
        for (permission,) in permissions {
            match Permission::parse(&permission) {
                Ok(permission) => {
                    granted.insert(permission);
                }
                // Granting less is the closed side: the user keeps the rest.
                Err(e) => tracing::error!(
                    target: crate::AUDIT_TARGET,
                    user, tenant, error = %e,
                    "the SQL user store returned a permission that is not a path; left out"
                ),
            }
        }
        Ok(Some(UserRecord {
            name: name.clone(),
            password_hash,
            roles: roles.into_iter().map(|(r,)| r).collect(),
            permissions: granted,
            disabled,
        }))
    }
}

impl SqlUserStoreBuilder {
    /// Creates [`SQL_SCHEMA`]'s tables when they do not exist (and, for SQLite, the
    /// database file). Default `false`: the tables are yours.
    pub fn create_schema(mut self, create: bool) -> Self {
        self.create_schema = create;
        self
    }

    /// Replaces the look-up queries (to read tables of your own).
    pub fn query_overrides(mut self, queries: SqlQueries) -> Self {
        self.queries = queries;
        self
    }

    /// At most this many connections (default 10).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Bounds each look-up, waiting for a connection included (default 5 s). A look-up
    /// that takes longer fails (503). The layer's `store_timeout_seconds` bounds it too.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A PHC hash with the parameters of the store's users, for the dummy verification of
    /// unknown users. Default: the first hash of the user table, read when the
    /// store is built (argon2's default parameters when it is empty).
    pub fn reference_password_hash(mut self, phc: impl Into<String>) -> Self {
        self.reference = Some(phc.into());
        self
    }

    /// The userstore domain whose users the tables hold (default `PRIMARY`): the store
    /// answers for names of that domain only (`SECONDARY/alex` is `alex` of a store built
    /// with `.domain("SECONDARY")`). Mount it in [`UserStores`](super::UserStores) under
    /// the same domain.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = domain.into().to_ascii_uppercase();
        self
    }

    /// Connects (the database must answer now), creates the schema when asked, and
    /// returns the store. Errors never show the URL's password.
    pub async fn build(self) -> Result<SqlUserStore, UserStoreError> {
        let fail = |what: &str, e: sqlx::Error| UserStoreError(format!("SQL user store: {what}: {e}"));
        if !super::domains::is_plain_domain(&self.domain) {
            return Err(UserStoreError(format!("SQL user store: {:?} is not a userstore domain", self.domain)));
        }
        let pool = SqlPool::connect(&self.url, self.max_connections, self.timeout, self.create_schema, false)
            .await
            .map_err(|e| UserStoreError(format!("SQL user store: {e}")))?;
        if self.create_schema {
            pool.execute_script(SQL_SCHEMA).await.map_err(|e| fail("cannot create the schema", e))?;
        }
        let reference = match self.reference {
            Some(reference) => Some(reference),
            None => {
                let sql = "SELECT password_hash FROM ts_user WHERE password_hash IS NOT NULL LIMIT 1";
                // Tables of your own may not have `ts_user`: then argon2's defaults.
                let found: Result<Option<(String,)>, _> =
                    run_on!(&pool, |pool| sqlx::query_as(sql).fetch_optional(pool).await);
                found.ok().flatten().map(|(hash,)| hash)
            }
        };
        Ok(SqlUserStore {
            pool,
            queries: Arc::new(self.queries),
            timeout: self.timeout,
            reference,
            domain: self.domain,
        })
    }
}

#[async_trait]
impl UserStore for SqlUserStore {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        // The subject of another issuer, or a user of another domain, is not a user here.
        if name.is_opaque() || name.domain() != self.domain {
            return Ok(None);
        }
        let bounded = async {
            match tokio::time::timeout(self.timeout, self.lookup(name)).await {
                Ok(Ok(record)) => Ok(record),
                Ok(Err(e)) => Err(UserStoreError(format!("SQL user store: {e}"))),
                Err(_) => Err(UserStoreError("SQL user store: look-up timed out".to_owned())),
            }
        };
        telemetry::timed_result(Backend::UserStore { backend: "sql", operation: "find_user" }, bounded).await
    }

    fn reference_password_hash(&self) -> Option<String> {
        self.reference.clone()
    }

    fn domain(&self) -> Option<&str> {
        Some(&self.domain)
    }
}
