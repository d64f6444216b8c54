// `[[user_store]]` tables of the rule file (SPEC G1, G2, G3): one user store per userstore
// domain, a users file, a SQL database or an LDAP directory, built into a `UserStores`
// set. Secrets (a database URL with a password, a bind password) come from a file or an
// environment variable, never from the rule file itself.

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
    /// `sql`: the database URL, inline (no password), in a file, or in a variable;
    /// `ldap`: the directory's URL, inline.
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    url_file: Option<Spanned<String>>,
    #[serde(default)]
    url_env: Option<Spanned<String>>,
    #[serde(default)]
    create_schema: Option<Spanned<bool>>,
    #[serde(default)]
    timeout_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    max_connections: Option<Spanned<u32>>,
    #[serde(default)]
    queries: Option<Spanned<QueriesTable>>,
    /// `ldap`: the service account, its password in a file or a variable.
    #[serde(default)]
    bind_dn: Option<Spanned<String>>,
    #[serde(default)]
    bind_password_file: Option<Spanned<String>>,
    #[serde(default)]
    bind_password_env: Option<Spanned<String>>,
    #[serde(default)]
    start_tls: Option<Spanned<bool>>,
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    #[serde(default)]
    user_base: Option<Spanned<String>>,
    #[serde(default)]
    user_filter: Option<Spanned<String>>,
    #[serde(default)]
    group_base: Option<Spanned<String>>,
    #[serde(default)]
    group_filter: Option<Spanned<String>>,
    #[serde(default)]
    group_name_attribute: Option<Spanned<String>>,
    #[serde(default)]
    member_of_attribute: Option<Spanned<String>>,
    #[serde(default)]
    disabled_filter: Option<Spanned<String>>,
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

/// The keys each store type takes, besides `domain` and `type`.
const FILE_KEYS: &[&str] = &["path"];
const SQL_KEYS: &[&str] =
    &["url", "url_file", "url_env", "create_schema", "timeout_seconds", "max_connections", "queries"];
const LDAP_KEYS: &[&str] = &[
    "url",
    "bind_dn",
    "bind_password_file",
    "bind_password_env",
    "start_tls",
    "ca_file",
    "timeout_seconds",
    "user_base",
    "user_filter",
    "group_base",
    "group_filter",
    "group_name_attribute",
    "member_of_attribute",
    "disabled_filter",
];

/// Where a secret (a SQL URL, an LDAP password, a state backend's URL) comes from.
pub(super) enum SecretSource<'a> {
    Inline(&'a Spanned<String>),
    File(&'a Spanned<String>),
    Env(&'a Spanned<String>),
}

impl SecretSource<'_> {
    /// The secret, trimmed, with the key it came from and its position.
    pub(super) fn read(
        &self,
        source: &SourceMap,
        keys: [&'static str; 3],
    ) -> Result<(String, Range<usize>), ConfigError> {
        match self {
            SecretSource::Inline(value) => Ok((value.get_ref().trim().to_owned(), value.span())),
            SecretSource::File(file) => {
                let path = source.resolve(file.get_ref());
                let text = super::read_text(&path)
                    .map_err(|e| source.error(file.span(), keys[1], format!("cannot read {}: {e}", path.display())))?;
                Ok((text.trim().to_owned(), file.span()))
            }
            SecretSource::Env(env) => {
                let value = std::env::var(env.get_ref()).map_err(|_| {
                    let message = format!("the environment variable {} is not set", env.get_ref());
                    source.error(env.span(), keys[2], message)
                })?;
                Ok((value.trim().to_owned(), env.span()))
            }
        }
    }
}

/// True when a URL carries a password (`scheme://user:password@host` or `password=`).
pub(super) fn has_password(url: &str) -> bool {
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

    /// The keys set in the table (besides `domain` and `type`), with their positions.
    fn keys(&self) -> Vec<(&'static str, Range<usize>)> {
        let strings = [
            ("path", &self.path),
            ("url", &self.url),
            ("url_file", &self.url_file),
            ("url_env", &self.url_env),
            ("bind_dn", &self.bind_dn),
            ("bind_password_file", &self.bind_password_file),
            ("bind_password_env", &self.bind_password_env),
            ("ca_file", &self.ca_file),
            ("user_base", &self.user_base),
            ("user_filter", &self.user_filter),
            ("group_base", &self.group_base),
            ("group_filter", &self.group_filter),
            ("group_name_attribute", &self.group_name_attribute),
            ("member_of_attribute", &self.member_of_attribute),
            ("disabled_filter", &self.disabled_filter),
        ];
        let mut keys: Vec<_> = strings.into_iter().filter_map(|(k, v)| Some((k, v.as_ref()?.span()))).collect();
        let flags = [("create_schema", &self.create_schema), ("start_tls", &self.start_tls)];
        keys.extend(flags.into_iter().filter_map(|(k, v)| Some((k, v.as_ref()?.span()))));
        keys.extend(self.timeout_seconds.as_ref().map(|v| ("timeout_seconds", v.span())));
        keys.extend(self.max_connections.as_ref().map(|v| ("max_connections", v.span())));
        keys.extend(self.queries.as_ref().map(|v| ("queries", v.span())));
        keys
    }

    /// What can be checked without reading a file, a variable or a backend.
    fn check(&self, source: &SourceMap) -> Result<(), ConfigError> {
        if let Some(domain) = &self.domain {
            if !crate::identity::is_plain_domain(domain.get_ref()) {
                let message = "a userstore domain is letters, digits, '.', '_' and '-'";
                return Err(source.error(domain.span(), "domain", message));
            }
        }
        let (kind, allowed, feature) = match self.kind.get_ref().as_str() {
            "file" => ("file", FILE_KEYS, true),
            "sql" => ("SQL", SQL_KEYS, cfg!(feature = "sql")),
            "ldap" => ("LDAP", LDAP_KEYS, cfg!(feature = "ldap")),
            _ => {
                let message = "unknown user store type; known: file, sql, ldap";
                return Err(source.error(self.kind.span(), "type", message));
            }
        };
        if !feature {
            let message = format!("a {kind} user store needs tower-secure's cargo feature `{}`", self.kind.get_ref());
            return Err(source.error(self.kind.span(), "type", message));
        }
        if let Some((key, span)) = self.keys().into_iter().find(|(key, _)| !allowed.contains(key)) {
            let message = format!("a {kind} user store does not take `{key}`; it takes {}", allowed.join(", "));
            return Err(source.error(span, key, message));
        }
        match kind {
            "file" if self.path.is_none() => {
                Err(source.error(self.span(), "type", "a file user store needs `path` (a users file)"))
            }
            "SQL" => self.url_source(source).map(drop),
            "LDAP" => self.check_ldap(source),
            _ => Ok(()),
        }
    }

    /// Exactly one of `url`, `url_file`, `url_env`; an inline URL holds no password.
    fn url_source(&self, source: &SourceMap) -> Result<SecretSource<'_>, ConfigError> {
        match (&self.url, &self.url_file, &self.url_env) {
            (Some(url), None, None) if has_password(url.get_ref()) => {
                let message = "this URL holds a password: keep it out of the rule file, in `url_file` or `url_env`";
                Err(source.error(url.span(), "url", message))
            }
            (Some(url), None, None) => Ok(SecretSource::Inline(url)),
            (None, Some(file), None) => Ok(SecretSource::File(file)),
            (None, None, Some(env)) => Ok(SecretSource::Env(env)),
            _ => {
                let message = "a SQL user store needs exactly one of `url`, `url_file`, `url_env`";
                Err(source.error(self.span(), "type", message))
            }
        }
    }

    /// An LDAP table: a URL, a user base, and a service account with exactly one password
    /// source (or none at all, for anonymous searches).
    fn check_ldap(&self, source: &SourceMap) -> Result<(), ConfigError> {
        let url =
            self.url.as_ref().ok_or_else(|| source.error(self.span(), "type", "an LDAP user store needs `url`"))?;
        let scheme = url.get_ref().split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("ldap" | "ldaps")) {
            return Err(source.error(url.span(), "url", "an LDAP URL starts with ldap:// or ldaps://"));
        }
        if has_password(url.get_ref()) {
            return Err(source.error(url.span(), "url", "keep passwords out of the URL: `bind_password_file`"));
        }
        if self.user_base.is_none() {
            return Err(source.error(self.span(), "type", "an LDAP user store needs `user_base`"));
        }
        self.bind_password(source).map(drop)
    }

    /// The service account's password source: one of `bind_password_file` and
    /// `bind_password_env` with `bind_dn`, none without.
    fn bind_password(&self, source: &SourceMap) -> Result<Option<SecretSource<'_>>, ConfigError> {
        match (&self.bind_dn, &self.bind_password_file, &self.bind_password_env) {
            (None, None, None) => Ok(None),
            (Some(_), Some(file), None) => Ok(Some(SecretSource::File(file))),
            (Some(_), None, Some(env)) => Ok(Some(SecretSource::Env(env))),
            (None, Some(_), _) | (None, _, Some(_)) => {
                Err(source.error(self.span(), "bind_dn", "a bind password needs `bind_dn`"))
            }
            (Some(dn), _, _) => {
                let message = "`bind_dn` needs exactly one of `bind_password_file`, `bind_password_env`";
                Err(source.error(dn.span(), "bind_dn", message))
            }
        }
    }

    async fn build(
        &self,
        source: &SourceMap,
        roles: &[super::RoleEntry],
    ) -> Result<std::sync::Arc<dyn crate::identity::UserStore>, ConfigError> {
        match self.kind.get_ref().as_str() {
            "file" => {
                let path = self.path.as_ref().ok_or_else(|| source.error(self.span(), "path", "missing"))?;
                Ok(std::sync::Arc::new(load_users_file(source.resolve(path.get_ref()))?))
            }
            "ldap" => self.build_ldap(source, roles).await,
            _ => self.build_sql(source).await,
        }
    }

    #[cfg(feature = "sql")]
    async fn build_sql(
        &self,
        source: &SourceMap,
    ) -> Result<std::sync::Arc<dyn crate::identity::UserStore>, ConfigError> {
        use crate::identity::{SqlQueries, SqlUserStore};
        let url = self.url_source(source)?;
        let key = match url {
            SecretSource::Inline(_) => "url",
            SecretSource::File(_) => "url_file",
            SecretSource::Env(_) => "url_env",
        };
        let (url, span) = url.read(source, ["url", "url_file", "url_env"])?;
        let create = self.create_schema.as_ref().is_some_and(|c| *c.get_ref());
        let mut builder = SqlUserStore::builder(url).create_schema(create).domain(self.domain());
        if let Some(seconds) = &self.timeout_seconds {
            builder = builder.timeout(std::time::Duration::from_secs((*seconds.get_ref()).max(1)));
        }
        if let Some(max) = &self.max_connections {
            builder = builder.max_connections(*max.get_ref());
        }
        if let Some(queries) = &self.queries {
            let queries = queries.get_ref();
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

    #[cfg(feature = "ldap")]
    async fn build_ldap(
        &self,
        source: &SourceMap,
        roles: &[super::RoleEntry],
    ) -> Result<std::sync::Arc<dyn crate::identity::UserStore>, ConfigError> {
        use crate::identity::LdapUserStore;
        let missing = |key| source.error(self.span(), key, "missing");
        let url = self.url.as_ref().ok_or_else(|| missing("url"))?;
        let user_base = self.user_base.as_ref().ok_or_else(|| missing("user_base"))?;
        let mut builder =
            LdapUserStore::builder(url.get_ref().clone()).user_base(user_base.get_ref().clone()).domain(self.domain());
        if let (Some(dn), Some(password)) = (&self.bind_dn, self.bind_password(source)?) {
            let (password, _) = password.read(source, ["", "bind_password_file", "bind_password_env"])?;
            builder = builder.service_account(dn.get_ref().clone(), password);
        }
        let text = |value: &Option<Spanned<String>>| value.as_ref().map(|v| v.get_ref().clone());
        if let Some(filter) = text(&self.user_filter) {
            builder = builder.user_filter(filter);
        }
        if let Some(base) = text(&self.group_base) {
            builder = builder.group_base(base);
        }
        if let Some(filter) = text(&self.group_filter) {
            builder = builder.group_filter(filter);
        }
        if let Some(attribute) = text(&self.group_name_attribute) {
            builder = builder.group_name_attribute(attribute);
        }
        if let Some(attribute) = text(&self.member_of_attribute) {
            builder = builder.member_of_attribute(attribute);
        }
        if let Some(filter) = text(&self.disabled_filter) {
            builder = builder.disabled_filter(filter);
        }
        if let Some(start_tls) = &self.start_tls {
            builder = builder.start_tls(*start_tls.get_ref());
        }
        if let Some(file) = &self.ca_file {
            let path = source.resolve(file.get_ref());
            let pem = super::read_text(&path)
                .map_err(|e| source.error(file.span(), "ca_file", format!("cannot read {}: {e}", path.display())))?;
            builder = builder.ca_certificates_pem(pem);
        }
        if let Some(seconds) = &self.timeout_seconds {
            builder = builder.timeout(std::time::Duration::from_secs((*seconds.get_ref()).max(1)));
        }
        for (name, permissions) in super::users::role_permissions(roles, source)? {
            builder = builder.role(name, permissions.iter().cloned());
        }
        // The store's errors never show the password.
        let store = builder.build().await.map_err(|e| source.error(url.span(), "url", e.0))?;
        Ok(std::sync::Arc::new(store))
    }

    #[cfg(not(feature = "ldap"))]
    async fn build_ldap(
        &self,
        source: &SourceMap,
        _roles: &[super::RoleEntry],
    ) -> Result<std::sync::Arc<dyn crate::identity::UserStore>, ConfigError> {
        Err(source.error(self.kind.span(), "type", "an LDAP user store needs tower-secure's cargo feature `ldap`"))
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
            let store = table.build(&self.source, &self.role).await?;
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
