// `[[user_store]]` tables of the rule file (SPEC G1, G2): one user store per userstore
// domain, a users file or a SQL database, built into a `UserStores` set. Secrets (a
// database URL with a password) come from a file or an environment variable, never from
// the rule file itself.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{load_users_file, ConfigError, Deployment, SourceMap};
use crate::identity::{UserStores, PRIMARY_DOMAIN};

/// One `[[user_store]]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserStoreTable {
    #[serde(default)]
    domain: Option<Spanned<String>>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    /// `file`: the users file.
    #[serde(default)]
    path: Option<Spanned<String>>,
    /// `sql`: the database URL, inline (no password), in a file, or in a variable.
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    url_file: Option<Spanned<String>>,
    #[serde(default)]
    url_env: Option<Spanned<String>>,
    #[serde(default)]
    create_schema: bool,
    #[serde(default)]
    timeout_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    max_connections: Option<Spanned<u32>>,
    #[serde(default)]
    queries: Option<QueriesTable>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueriesTable {
    #[serde(default)]
    find_user: Option<String>,
    #[serde(default)]
    user_roles: Option<String>,
    #[serde(default)]
    user_permissions: Option<String>,
}

/// Where a SQL store's URL comes from (read only with the `sql` feature).
#[cfg_attr(not(feature = "sql"), allow(dead_code))]
enum UrlSource<'a> {
    Inline(&'a Spanned<String>),
    File(&'a Spanned<String>),
    Env(&'a Spanned<String>),
}

/// True when a URL carries a password (`scheme://user:password@host` or `password=`).
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let userinfo_password = authority.rsplit_once('@').is_some_and(|(userinfo, _)| userinfo.contains(':'));
    let query_password = url
        .split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|pair| pair.to_ascii_lowercase().starts_with("password=")));
    userinfo_password || query_password
}

impl UserStoreTable {
    fn span(&self) -> Range<usize> {
        self.kind.span()
    }

    /// The domain, upper case.
    fn domain(&self) -> String {
        self.domain.as_ref().map_or(PRIMARY_DOMAIN.to_owned(), |d| d.get_ref().to_ascii_uppercase())
    }

    /// What can be checked without reading a file, a variable or a database.
    fn check(&self, source: &SourceMap) -> Result<(), ConfigError> {
        if let Some(domain) = &self.domain {
            let plain = |c: char| c.is_ascii_alphanumeric() || "._-".contains(c);
            if domain.get_ref().is_empty() || !domain.get_ref().chars().all(plain) {
                let message = "a userstore domain is letters, digits, '.', '_' and '-'";
                return Err(source.error(domain.span(), "domain", message));
            }
        }
        let sql_keys = self.url.is_some()
            || self.url_file.is_some()
            || self.url_env.is_some()
            || self.create_schema
            || self.timeout_seconds.is_some()
            || self.max_connections.is_some()
            || self.queries.is_some();
        match self.kind.get_ref().as_str() {
            "file" => {
                if self.path.is_none() {
                    return Err(source.error(self.span(), "type", "a file user store needs `path` (a users file)"));
                }
                if sql_keys {
                    let message = "a file user store takes `domain` and `path` only";
                    return Err(source.error(self.span(), "type", message));
                }
            }
            "sql" => {
                if !cfg!(feature = "sql") {
                    let message = "a SQL user store needs tower-secure's cargo feature `sql`";
                    return Err(source.error(self.kind.span(), "type", message));
                }
                if let Some(path) = &self.path {
                    return Err(source.error(path.span(), "path", "a SQL user store takes `url`, not `path`"));
                }
                self.url_source(source)?;
            }
            _ => {
                let message = "unknown user store type; known: file, sql";
                return Err(source.error(self.kind.span(), "type", message));
            }
        }
        Ok(())
    }

    /// Exactly one of `url`, `url_file`, `url_env`; an inline URL holds no password.
    fn url_source(&self, source: &SourceMap) -> Result<UrlSource<'_>, ConfigError> {
        match (&self.url, &self.url_file, &self.url_env) {
            (Some(url), None, None) if has_password(url.get_ref()) => {
                let message = "this URL holds a password: keep it out of the rule file, in `url_file` or `url_env`";
                Err(source.error(url.span(), "url", message))
            }
            (Some(url), None, None) => Ok(UrlSource::Inline(url)),
            (None, Some(file), None) => Ok(UrlSource::File(file)),
            (None, None, Some(env)) => Ok(UrlSource::Env(env)),
            _ => {
                let message = "a SQL user store needs exactly one of `url`, `url_file`, `url_env`";
                Err(source.error(self.span(), "type", message))
            }
        }
    }

    async fn build(&self, source: &SourceMap) -> Result<std::sync::Arc<dyn crate::identity::UserStore>, ConfigError> {
        match self.kind.get_ref().as_str() {
            "file" => {
                let path = self.path.as_ref().ok_or_else(|| source.error(self.span(), "path", "missing"))?;
                Ok(std::sync::Arc::new(load_users_file(source.resolve(path.get_ref()))?))
            }
            _ => self.build_sql(source).await,
        }
    }

    #[cfg(feature = "sql")]
    async fn build_sql(
        &self,
        source: &SourceMap,
    ) -> Result<std::sync::Arc<dyn crate::identity::UserStore>, ConfigError> {
        use crate::identity::{SqlQueries, SqlUserStore};
        let (url, key, span) = match self.url_source(source)? {
            UrlSource::Inline(url) => (url.get_ref().clone(), "url", url.span()),
            UrlSource::File(file) => {
                let path = source.resolve(file.get_ref());
                let text = super::read_text(&path).map_err(|e| {
                    source.error(file.span(), "url_file", format!("cannot read {}: {e}", path.display()))
                })?;
                (text.trim().to_owned(), "url_file", file.span())
            }
            UrlSource::Env(env) => {
                let value = std::env::var(env.get_ref()).map_err(|_| {
                    source.error(
                        env.span(),
                        "url_env",
                        format!("the environment variable {} is not set", env.get_ref()),
                    )
                })?;
                (value.trim().to_owned(), "url_env", env.span())
            }
        };
        let mut builder = SqlUserStore::builder(url).create_schema(self.create_schema);
        if let Some(seconds) = &self.timeout_seconds {
            builder = builder.timeout(std::time::Duration::from_secs((*seconds.get_ref()).max(1)));
        }
        if let Some(max) = &self.max_connections {
            builder = builder.max_connections(*max.get_ref());
        }
        if let Some(queries) = &self.queries {
            let mut replaced = SqlQueries::default();
            if let Some(sql) = &queries.find_user {
                replaced = replaced.find_user(sql.clone());
            }
            if let Some(sql) = &queries.user_roles {
                replaced = replaced.user_roles(sql.clone());
            }
            if let Some(sql) = &queries.user_permissions {
                replaced = replaced.user_permissions(sql.clone());
            }
            builder = builder.query_overrides(replaced);
        }
        // The store's errors never show the URL.
        let store = builder.build().await.map_err(|e| source.error(span, key, e.0))?;
        Ok(std::sync::Arc::new(store))
    }

    #[cfg(not(feature = "sql"))]
    async fn build_sql(
        &self,
        source: &SourceMap,
    ) -> Result<std::sync::Arc<dyn crate::identity::UserStore>, ConfigError> {
        Err(source.error(self.kind.span(), "type", "a SQL user store needs tower-secure's cargo feature `sql`"))
    }
}

/// Checks every `[[user_store]]` table at load: domains plain and each once, types known,
/// the keys of each type, an inline URL without a password.
pub(crate) fn check_tables(tables: &[Spanned<UserStoreTable>], source: &SourceMap) -> Result<(), ConfigError> {
    let mut seen = std::collections::HashSet::new();
    for table in tables {
        let table = table.get_ref();
        table.check(source)?;
        if !seen.insert(table.domain()) {
            let span = table.domain.as_ref().map_or_else(|| table.span(), Spanned::span);
            return Err(source.error(span, "domain", "another [[user_store]] serves this domain"));
        }
    }
    Ok(())
}

impl Deployment {
    /// The `[[user_store]]` tables built into a [`UserStores`] set (`None` without any
    /// table), for [`SecureLayerBuilder::user_store`](crate::SecureLayerBuilder::user_store):
    /// reads the users files (relative paths lead from the rule file's directory), the URL
    /// files and variables, and connects to the databases (they must answer now). Errors
    /// name the table's key and never show a URL.
    ///
    /// ```
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower_secure::config::Deployment;
    ///
    /// let deployment = Deployment::from_toml_str("deployment.toml", r#"
    ///     [[user_store]]
    ///     type = "file"
    ///     path = "users.toml"
    /// "#)?;
    /// assert!(deployment.has_user_stores());
    /// # Ok(()) }
    /// ```
    pub async fn user_stores(&self) -> Result<Option<UserStores>, ConfigError> {
        if self.user_store.is_empty() {
            return Ok(None);
        }
        let mut builder = UserStores::builder();
        for table in &self.user_store {
            let table = table.get_ref();
            let store = table.build(&self.source).await?;
            builder = builder.domain_arc(table.domain(), store);
        }
        let stores = builder.build().map_err(|e| ConfigError {
            file: self.source.file().clone(),
            line: 0,
            column: 0,
            key: Some("user_store".to_owned()),
            message: e.to_string(),
        })?;
        Ok(Some(stores))
    }

    /// True when the file has `[[user_store]]` tables.
    pub fn has_user_stores(&self) -> bool {
        !self.user_store.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::has_password;

    #[test]
    fn finds_passwords_in_urls() {
        for with in [
            "postgres://app:secret@db/users",
            "postgresql://app:s%40cret@db:5432/users?sslmode=require",
            "postgres://app@db/users?sslmode=require&password=x",
            "postgres://db/users?Password=x",
        ] {
            assert!(has_password(with), "{with}");
        }
        for without in ["postgres://app@db/users", "sqlite:///var/lib/users.db", "sqlite::memory:", "postgres://db/u"] {
            assert!(!has_password(without), "{without}");
        }
    }
}
