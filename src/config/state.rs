// The `[state]` table of the rule file (SPEC H1): which state backend the token server
// keeps refresh tokens, revocations and lockouts in, how to reach it (a URL with a
// password only from a file or an environment variable), and how current each instance's
// replica must stay. Checked when the file loads; connected by the token server.

use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::stores::{has_password, SecretSource};
use super::{ConfigError, Deployment, SourceMap};

/// The `[state]` table as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StateTable {
    #[serde(default)]
    backend: Option<Spanned<String>>,
    #[serde(default)]
    url: Option<Spanned<String>>,
    #[serde(default)]
    url_file: Option<Spanned<String>>,
    #[serde(default)]
    url_env: Option<Spanned<String>>,
    #[serde(default)]
    key_prefix: Option<Spanned<String>>,
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    #[serde(default)]
    timeout_ms: Option<Spanned<u64>>,
    #[serde(default)]
    max_connections: Option<Spanned<u32>>,
    #[serde(default)]
    sync_interval_ms: Option<Spanned<u64>>,
    #[serde(default)]
    max_staleness_seconds: Option<Spanned<u64>>,
}

/// The backends a `[state]` table names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StateKind {
    Memory,
    Redis,
    Postgres,
    Sqlite,
}

impl StateKind {
    const NAMES: &'static str = "\"memory\", \"sqlite\", \"postgres\" or \"redis\"";

    fn named(name: &str) -> Option<Self> {
        match name {
            "memory" => Some(Self::Memory),
            "redis" => Some(Self::Redis),
            "postgres" => Some(Self::Postgres),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }

    /// The backend a URL's scheme names.
    fn of_url(url: &str) -> Option<Self> {
        let scheme = url.split_once(':').map(|(scheme, _)| scheme.to_ascii_lowercase())?;
        match scheme.as_str() {
            "redis" | "rediss" => Some(Self::Redis),
            "postgres" | "postgresql" => Some(Self::Postgres),
            "sqlite" => Some(Self::Sqlite),
            _ => None,
        }
    }

    /// The cargo feature this build needs for the backend, when it was left out.
    fn missing_feature(self) -> Option<&'static str> {
        match self {
            Self::Redis if !cfg!(feature = "redis") => Some("redis"),
            Self::Postgres | Self::Sqlite if !cfg!(feature = "sql") => Some("sql"),
            _ => None,
        }
    }
}

/// A checked `[state]` table with its secret read: what the token server connects to.
/// (Builds without the token server, or without a backend's feature, read less of it.)
#[derive(Debug, Clone)]
#[cfg_attr(not(all(feature = "oauth2-server", feature = "redis", feature = "sql")), allow(dead_code))]
pub(crate) struct StateSettings {
    pub(crate) kind: StateKind,
    /// The URL (`None` for memory); may hold a password: never logged.
    pub(crate) url: Option<String>,
    pub(crate) key_prefix: Option<String>,
    /// redis: the CAs a `rediss://` server must chain to (PEM, read).
    pub(crate) ca_pem: Option<Vec<u8>>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_connections: Option<u32>,
    pub(crate) sync_interval: Option<Duration>,
    pub(crate) max_staleness: Option<Duration>,
    /// Where the table is, for errors found when connecting.
    pub(crate) span: Range<usize>,
}

impl StateTable {
    #[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
    fn url_source(&self) -> Option<SecretSource<'_>> {
        match (&self.url, &self.url_file, &self.url_env) {
            (Some(url), None, None) => Some(SecretSource::Inline(url)),
            (None, Some(file), None) => Some(SecretSource::File(file)),
            (None, None, Some(env)) => Some(SecretSource::Env(env)),
            _ => None,
        }
    }

    /// The backend: `backend`, or the inline URL's scheme; `None` when only the URL in a
    /// file or a variable can tell (it is read when the token server connects).
    fn declared_kind(&self, source: &SourceMap) -> Result<Option<StateKind>, ConfigError> {
        if let Some(backend) = &self.backend {
            let kind = StateKind::named(backend.get_ref()).ok_or_else(|| {
                source.error(backend.span(), "backend", format!("the backend is {}", StateKind::NAMES))
            })?;
            return Ok(Some(kind));
        }
        self.url.as_ref().map(|url| url_kind(url.get_ref(), url.span(), source)).transpose()
    }

    /// Everything that can be checked without reading the secret or connecting.
    fn check(&self, span: Range<usize>, source: &SourceMap) -> Result<Option<StateKind>, ConfigError> {
        let kind = self.declared_kind(source)?;
        let sources = [&self.url, &self.url_file, &self.url_env].iter().filter(|s| s.is_some()).count();
        match (kind, sources) {
            (Some(StateKind::Memory), 0) => {}
            (Some(StateKind::Memory), _) => {
                return Err(source.error(span, "backend", "the memory backend takes no URL"))
            }
            (None, 0) => {
                let message = format!("name the backend ({}) or give its URL", StateKind::NAMES);
                return Err(source.error(span, "backend", message));
            }
            (_, 1) => {}
            _ => return Err(source.error(span, "url", "give exactly one of `url`, `url_file`, `url_env`")),
        }
        if let Some(url) = &self.url {
            if has_password(url.get_ref()) {
                let message = "this URL holds a password: keep it out of the rule file, in `url_file` or `url_env`";
                return Err(source.error(url.span(), "url", message));
            }
            if kind != Some(url_kind(url.get_ref(), url.span(), source)?) {
                return Err(source.error(url.span(), "url", "the URL's scheme is not the backend's"));
            }
        }
        if let Some(kind) = kind {
            self.check_kind(kind, span, source)?;
        }
        for (key, value) in [
            ("timeout_ms", self.timeout_ms.as_ref()),
            ("sync_interval_ms", self.sync_interval_ms.as_ref()),
            ("max_staleness_seconds", self.max_staleness_seconds.as_ref()),
        ] {
            if let Some(value) = value.filter(|v| *v.get_ref() == 0) {
                return Err(source.error(value.span(), key, "must be greater than 0"));
            }
        }
        if let (Some(interval), Some(staleness)) = (&self.sync_interval_ms, &self.max_staleness_seconds) {
            if *interval.get_ref() > staleness.get_ref().saturating_mul(1000) {
                let message = "a replica synced this rarely would always be stale: keep it under max_staleness_seconds";
                return Err(source.error(interval.span(), "sync_interval_ms", message));
            }
        }
        Ok(kind)
    }

    /// The settings that depend on the backend: built in, and its own keys only.
    fn check_kind(&self, kind: StateKind, span: Range<usize>, source: &SourceMap) -> Result<(), ConfigError> {
        if let Some(feature) = kind.missing_feature() {
            let at = self.backend.as_ref().map_or(span, Spanned::span);
            let message = format!("this build has no such backend: enable tower-secure's `{feature}` feature");
            return Err(source.error(at, "backend", message));
        }
        if kind != StateKind::Redis {
            if let Some(prefix) = &self.key_prefix {
                return Err(source.error(prefix.span(), "key_prefix", "`key_prefix` is for the redis backend"));
            }
            if let Some(ca) = &self.ca_file {
                let message = "`ca_file` is for the redis backend (PostgreSQL: `sslrootcert` in the URL)";
                return Err(source.error(ca.span(), "ca_file", message));
            }
        }
        if !matches!(kind, StateKind::Postgres | StateKind::Sqlite) {
            if let Some(max) = &self.max_connections {
                return Err(source.error(max.span(), "max_connections", "`max_connections` is for SQL backends"));
            }
        }
        Ok(())
    }
}

/// The backend a state URL names by its scheme.
fn url_kind(url: &str, at: Range<usize>, source: &SourceMap) -> Result<StateKind, ConfigError> {
    StateKind::of_url(url).ok_or_else(|| source.error(at, "url", URL_SCHEMES))
}

const URL_SCHEMES: &str = "a state URL starts with redis://, rediss://, postgres:// or sqlite:";

/// Checks the `[state]` table when the file loads.
pub(crate) fn check_table(table: Option<&Spanned<StateTable>>, source: &SourceMap) -> Result<(), ConfigError> {
    match table {
        Some(table) => table.get_ref().check(table.span(), source).map(drop),
        None => Ok(()),
    }
}

impl Deployment {
    /// The `[state]` table, checked, with its URL read from its file or variable; `None`
    /// without the table.
    #[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
    pub(crate) fn state_settings(&self) -> Result<Option<StateSettings>, ConfigError> {
        let Some(table) = &self.state else { return Ok(None) };
        let (span, source) = (table.span(), &self.source);
        let table = table.get_ref();
        let declared = table.check(span.clone(), source)?;
        let (kind, url) = match table.url_source() {
            Some(secret) => {
                let (url, at) = secret.read(source, ["url", "url_file", "url_env"])?;
                let key = match secret {
                    SecretSource::Inline(_) => "url",
                    SecretSource::File(_) => "url_file",
                    SecretSource::Env(_) => "url_env",
                };
                let kind = StateKind::of_url(&url).ok_or_else(|| source.error(at.clone(), key, URL_SCHEMES))?;
                if declared.is_some_and(|declared| declared != kind) {
                    return Err(source.error(at, key, "the URL's scheme is not the backend's"));
                }
                table.check_kind(kind, span.clone(), source)?;
                (kind, Some(url))
            }
            None => (declared.unwrap_or(StateKind::Memory), None),
        };
        let ca_pem = match &table.ca_file {
            Some(file) => {
                let path = source.resolve(file.get_ref());
                let text = super::read_text(&path).map_err(|e| {
                    source.error(file.span(), "ca_file", format!("cannot read {}: {e}", path.display()))
                })?;
                Some(text.into_bytes())
            }
            None => None,
        };
        let millis = |value: &Option<Spanned<u64>>| value.as_ref().map(|v| Duration::from_millis(*v.get_ref()));
        Ok(Some(StateSettings {
            kind,
            url,
            key_prefix: table.key_prefix.as_ref().map(|p| p.get_ref().clone()),
            ca_pem,
            timeout: millis(&table.timeout_ms),
            max_connections: table.max_connections.as_ref().map(|m| *m.get_ref()),
            sync_interval: millis(&table.sync_interval_ms),
            max_staleness: table.max_staleness_seconds.as_ref().map(|s| Duration::from_secs(*s.get_ref())),
            span,
        }))
    }
}
