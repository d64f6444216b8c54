// The users file: `[[role]]` tables (name -> permissions), `[[user]]` tables (name,
// argon2id PHC hash, roles, disabled) loaded into an in-memory user store, and `[[client]]`
// tables (the token endpoint's OAuth2 clients).

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{read_file, ConfigError, SourceMap};
use crate::identity::{InMemoryUserStore, Permission, PermissionSet, QualifiedName, UserRecord};

/// A users file as written (or as the code-first builder fills it).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UsersFile {
    #[serde(default)]
    pub(crate) role: Vec<RoleEntry>,
    #[serde(default)]
    pub(crate) user: Vec<UserEntry>,
    #[serde(default)]
    pub(crate) client: Vec<ClientEntry>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleEntry {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) permissions: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserEntry {
    pub(crate) name: Spanned<String>,
    #[serde(default)]
    pub(crate) password: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) disabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClientEntry {
    pub(crate) id: Spanned<String>,
    /// Absent for a public client (a browser or mobile app: it cannot keep a secret).
    #[serde(default)]
    pub(crate) secret: Option<Spanned<String>>,
    #[serde(default)]
    pub(crate) roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) grant_types: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) redirect_uris: Vec<Spanned<String>>,
    #[serde(default)]
    pub(crate) allowed_scopes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(crate) trusted: bool,
    #[serde(default)]
    pub(crate) disabled: bool,
}

/// A grant type of the token endpoint, written in files and requests by its RFC 6749 name.
///
/// ```
/// use tower_secure::config::GrantType;
///
/// let grant: GrantType = "client_credentials".parse()?;
/// assert_eq!(grant, GrantType::ClientCredentials);
/// assert_eq!(grant.as_str(), "client_credentials");
/// assert!("implicit".parse::<GrantType>().is_err());
/// # Ok::<(), tower_secure::config::UnknownGrantType>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GrantType {
    /// `authorization_code`: a code from the authorization endpoint, with its PKCE
    /// verifier (RFC 6749 section 4.1, RFC 7636).
    AuthorizationCode,
    /// `password`: a user's name and password (RFC 6749 section 4.3).
    Password,
    /// `client_credentials`: the client on its own behalf (section 4.4).
    ClientCredentials,
    /// `refresh_token`: a new access token for a refresh token (section 6).
    RefreshToken,
}

impl GrantType {
    /// Every grant type the token endpoint implements.
    pub const ALL: [GrantType; 4] =
        [GrantType::AuthorizationCode, GrantType::Password, GrantType::ClientCredentials, GrantType::RefreshToken];

    /// The grants a public client (no secret) may use, and has unless it lists its own.
    pub const PUBLIC: [GrantType; 2] = [GrantType::AuthorizationCode, GrantType::RefreshToken];

    /// The RFC 6749 name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::AuthorizationCode => "authorization_code",
            GrantType::Password => "password",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
        }
    }
}

impl std::fmt::Display for GrantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A grant type name the token endpoint does not implement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown grant type; known: authorization_code, password, client_credentials, refresh_token")]
pub struct UnknownGrantType;

impl std::str::FromStr for GrantType {
    type Err = UnknownGrantType;

    fn from_str(name: &str) -> Result<Self, UnknownGrantType> {
        GrantType::ALL.into_iter().find(|g| g.as_str() == name).ok_or(UnknownGrantType)
    }
}

/// An OAuth2 client of the token endpoint, from a `[[client]]` table of the users file,
/// or built with [`ClientRecord::new`] and its setters (the fields stay public to read and
/// change; more may come).
///
/// ```
/// use tower_secure::config::{ClientRecord, GrantType};
///
/// let batch = ClientRecord::new("nightly-batch", "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk")
///     .roles(["reporting"])
///     .grant_types([GrantType::ClientCredentials]);
/// assert_eq!(batch.grant_types, [GrantType::ClientCredentials]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientRecord {
    /// The client id: 1 to 128 of `A-Z a-z 0-9 . _ ~ -`.
    pub id: String,
    /// The client secret as an argon2id PHC string; empty for a public client, which
    /// authenticates by nothing but its `client_id` and proves each code with PKCE.
    pub secret_hash: String,
    /// Roles that stand in for a user's in the `client_credentials` grant.
    pub roles: Vec<String>,
    /// The permissions those roles grant.
    pub permissions: PermissionSet,
    /// The grants this client may use; default all of [`GrantType::ALL`] (a public
    /// client: [`GrantType::PUBLIC`]).
    pub grant_types: Vec<GrantType>,
    /// The redirect URIs of the authorization code flow, matched exactly.
    pub redirect_uris: Vec<String>,
    /// The scopes it may get at most; `None`: whatever scope validation grants.
    pub allowed_scopes: Option<Vec<String>>,
    /// Trusted (first-party) clients skip the consent page.
    pub trusted: bool,
    /// A disabled client gets no tokens.
    pub disabled: bool,
}

impl ClientRecord {
    /// An enabled client with this id and secret hash (argon2id PHC), no roles, and every
    /// grant type.
    pub fn new(id: impl Into<String>, secret_hash: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            secret_hash: secret_hash.into(),
            roles: Vec::new(),
            permissions: PermissionSet::default(),
            grant_types: GrantType::ALL.to_vec(),
            redirect_uris: Vec::new(),
            allowed_scopes: None,
            trusted: false,
            disabled: false,
        }
    }

    /// A public client (a browser or mobile app, which cannot keep a secret): the
    /// authorization code flow with PKCE to `redirect_uris`, and refresh tokens.
    pub fn public(id: impl Into<String>, redirect_uris: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            grant_types: GrantType::PUBLIC.to_vec(),
            redirect_uris: redirect_uris.into_iter().map(Into::into).collect(),
            ..Self::new(id, "")
        }
    }

    /// True for a public client (no secret).
    pub fn is_public(&self) -> bool {
        self.secret_hash.is_empty()
    }

    /// The redirect URIs of the authorization code flow, matched exactly.
    pub fn redirect_uris(mut self, uris: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.redirect_uris = uris.into_iter().map(Into::into).collect();
        self
    }

    /// The scopes it may get at most.
    pub fn allowed_scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allowed_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// A trusted (first-party) client skips the consent page.
    pub fn trusted(mut self, trusted: bool) -> Self {
        self.trusted = trusted;
        self
    }

    /// The roles that stand in for a user's in the `client_credentials` grant.
    pub fn roles(mut self, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The permissions those roles grant.
    pub fn permissions(mut self, permissions: impl IntoIterator<Item = crate::identity::Permission>) -> Self {
        self.permissions = permissions.into_iter().collect();
        self
    }

    /// The grants this client may use.
    pub fn grant_types(mut self, grants: impl IntoIterator<Item = GrantType>) -> Self {
        self.grant_types = grants.into_iter().collect();
        self
    }

    /// Disables (or enables) the client.
    pub fn disabled(mut self, disabled: bool) -> Self {
        self.disabled = disabled;
        self
    }
}

/// Loads a users file from text; `file` names it in errors.
///
/// ```
/// let store = tower_secure::config::load_users("users.toml", r#"
///     [[role]]
///     name = "viewer"
///     permissions = ["/permission/admin/manage/identity/identitymgt/view"]
///
///     [[user]]
///     name = "alex"
///     password = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk"
///     roles = ["viewer"]
/// "#)?;
/// assert_eq!(store.len(), 1);
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
pub fn load_users(file: &str, text: &str) -> Result<InMemoryUserStore, ConfigError> {
    let source = SourceMap::new(file, text);
    let parsed: UsersFile = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
    users_from(parsed, &source)
}

/// The user store of a users file, its roles resolved; positions in `source`.
pub(crate) fn users_from(parsed: UsersFile, source: &SourceMap) -> Result<InMemoryUserStore, ConfigError> {
    let roles = role_permissions(&parsed.role, source)?;
    let mut users = Vec::with_capacity(parsed.user.len());
    let mut seen = std::collections::HashSet::new();
    for user in parsed.user {
        let name = QualifiedName::parse(user.name.get_ref())
            .map_err(|e| source.error(user.name.span(), "name", e.to_string()))?;
        if !seen.insert(name.clone()) {
            return Err(source.error(user.name.span(), "name", "this user is defined twice"));
        }
        if let Some(hash) = &user.password {
            check_phc(hash.get_ref()).map_err(|m| source.error(hash.span(), "password", m))?;
        }
        users.push(UserRecord {
            name,
            password_hash: user.password.map(Spanned::into_inner),
            permissions: granted(&roles, &user.roles, source)?,
            roles: user.roles.into_iter().map(Spanned::into_inner).collect(),
            disabled: user.disabled,
        });
    }
    Ok(InMemoryUserStore::new(users))
}

/// Loads the `[[client]]` tables of a users file (their roles resolve against its
/// `[[role]]` tables); `file` names it in errors.
///
/// ```
/// let clients = tower_secure::config::load_clients("users.toml", r#"
///     [[role]]
///     name = "reporting"
///     permissions = ["/permission/admin/monitor"]
///
///     [[client]]
///     id = "reports-job"
///     secret = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk"
///     roles = ["reporting"]
///     grant_types = ["client_credentials"]
/// "#)?;
/// assert_eq!(clients[0].id, "reports-job");
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
pub fn load_clients(file: &str, text: &str) -> Result<Vec<ClientRecord>, ConfigError> {
    let source = SourceMap::new(file, text);
    let parsed: UsersFile = toml::from_str(text).map_err(|e| source.toml_error(&e))?;
    clients_from(&parsed, &source)
}

/// The clients of a users file, their roles resolved; positions in `source`.
pub(crate) fn clients_from(parsed: &UsersFile, source: &SourceMap) -> Result<Vec<ClientRecord>, ConfigError> {
    let roles = role_permissions(&parsed.role, source)?;
    let mut clients: Vec<ClientRecord> = Vec::with_capacity(parsed.client.len());
    for client in &parsed.client {
        let id = client.id.get_ref();
        let plain = |b: u8| b.is_ascii_alphanumeric() || b"._~-".contains(&b);
        if id.is_empty() || id.len() > 128 || !id.bytes().all(plain) {
            return Err(source.error(client.id.span(), "id", "a client id is 1 to 128 of A-Z a-z 0-9 . _ ~ -"));
        }
        if clients.iter().any(|c| c.id == *id) {
            return Err(source.error(client.id.span(), "id", "this client is defined twice"));
        }
        if let Some(secret) = &client.secret {
            check_phc(secret.get_ref()).map_err(|m| source.error(secret.span(), "secret", m))?;
        }
        let public = client.secret.is_none();
        let grant_types: Vec<GrantType> = match &client.grant_types {
            None if public => GrantType::PUBLIC.to_vec(),
            None => GrantType::ALL.to_vec(),
            Some(list) => list
                .iter()
                .map(|g| {
                    let grant: GrantType = g
                        .get_ref()
                        .parse()
                        .map_err(|e: UnknownGrantType| source.error(g.span(), "grant_types", e.to_string()))?;
                    if grant == GrantType::AuthorizationCode && client.redirect_uris.is_empty() {
                        return Err(source.error(g.span(), "grant_types", "authorization_code needs redirect_uris"));
                    }
                    if public && !GrantType::PUBLIC.contains(&grant) {
                        let message = "a public client (no secret) may only use authorization_code and refresh_token";
                        return Err(source.error(g.span(), "grant_types", message));
                    }
                    Ok(grant)
                })
                .collect::<Result<_, _>>()?,
        };
        for uri in &client.redirect_uris {
            check_redirect_uri(uri.get_ref()).map_err(|m| source.error(uri.span(), "redirect_uris", m))?;
        }
        if public && client.redirect_uris.is_empty() {
            let message = "a public client (no secret) needs redirect_uris for the authorization code flow";
            return Err(source.error(client.id.span(), "redirect_uris", message));
        }
        clients.push(ClientRecord {
            id: id.clone(),
            secret_hash: client.secret.as_ref().map(|s| s.get_ref().clone()).unwrap_or_default(),
            roles: client.roles.iter().map(|r| r.get_ref().clone()).collect(),
            permissions: granted(&roles, &client.roles, source)?,
            grant_types,
            redirect_uris: client.redirect_uris.iter().map(|u| u.get_ref().clone()).collect(),
            allowed_scopes: client
                .allowed_scopes
                .as_ref()
                .map(|list| list.iter().map(|s| s.get_ref().clone()).collect()),
            trusted: client.trusted,
            disabled: client.disabled,
        });
    }
    Ok(clients)
}

/// A redirect URI a client may register (RFC 6749 3.1.2, RFC 8252, RFC 9700 4.1): absolute,
/// without a fragment; `http` only to a loopback host (a native app's local listener),
/// otherwise `https` or an app's private-use scheme (`com.example.app:/callback`).
pub(crate) fn check_redirect_uri(uri: &str) -> Result<(), &'static str> {
    if uri.len() > 2048 || uri.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err("a redirect URI is at most 2048 characters without spaces or controls");
    }
    if uri.contains('#') {
        return Err("a redirect URI has no fragment");
    }
    let Some((scheme, rest)) = uri.split_once(':') else { return Err("a redirect URI is absolute") };
    let scheme_ok = scheme.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok || rest.is_empty() {
        return Err("a redirect URI is absolute");
    }
    match scheme.to_ascii_lowercase().as_str() {
        "https" => match uri.parse::<http::Uri>() {
            Ok(parsed) if parsed.host().is_some_and(|h| !h.is_empty()) => Ok(()),
            _ => Err("not a valid https URL"),
        },
        "http" => match uri.parse::<http::Uri>().ok().and_then(|u| u.host().map(str::to_owned)) {
            Some(host) if ["127.0.0.1", "[::1]", "localhost"].contains(&host.as_str()) => Ok(()),
            _ => Err("http redirect URIs are for loopback hosts only (127.0.0.1, [::1], localhost); use https"),
        },
        "javascript" | "data" | "file" | "vbscript" => Err("this scheme cannot be a redirect URI"),
        _ if scheme.contains('.') => Ok(()),
        _ => Err("a redirect URI is https, http on loopback, or a private-use scheme (com.example.app:/path)"),
    }
}

/// Reads a users file and loads its `[[client]]` tables.
pub fn load_clients_file(path: impl AsRef<Path>) -> Result<Vec<ClientRecord>, ConfigError> {
    let (name, text) = read_file(path.as_ref())?;
    load_clients(&name, &text)
}

/// The `[[role]]` tables (of a users file or of the rule file): role name -> the
/// permissions it grants.
pub(crate) fn role_permissions(
    tables: &[RoleEntry],
    source: &SourceMap,
) -> Result<HashMap<String, PermissionSet>, ConfigError> {
    let mut roles: HashMap<String, PermissionSet> = HashMap::new();
    for role in tables {
        let mut permissions = PermissionSet::default();
        for p in &role.permissions {
            let permission =
                Permission::parse(p.get_ref()).map_err(|e| source.error(p.span(), "permissions", e.to_string()))?;
            permissions.insert(permission);
        }
        if roles.insert(role.name.get_ref().clone(), permissions).is_some() {
            return Err(source.error(role.name.span(), "name", "this role is defined twice"));
        }
    }
    Ok(roles)
}

/// The permissions a list of role names grants; every role must be defined.
fn granted(
    roles: &HashMap<String, PermissionSet>,
    names: &[Spanned<String>],
    source: &SourceMap,
) -> Result<PermissionSet, ConfigError> {
    let mut permissions = PermissionSet::default();
    for role in names {
        let grants =
            roles.get(role.get_ref()).ok_or_else(|| source.error(role.span(), "roles", "no [[role]] has this name"))?;
        permissions.extend(grants.iter().cloned());
    }
    Ok(permissions)
}

/// Reads and loads a users file.
pub fn load_users_file(path: impl AsRef<Path>) -> Result<InMemoryUserStore, ConfigError> {
    let (name, text) = read_file(path.as_ref())?;
    load_users(&name, &text)
}

/// Passwords must be argon2id PHC strings; anything else (plain text, other algorithms)
/// is refused at load instead of failing every login later.
fn check_phc(hash: &str) -> Result<(), String> {
    let parsed = argon2::PasswordHash::new(hash)
        .map_err(|e| format!("not a PHC password hash ({e}); create one with `cargo run --example hash_password`"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err("the password hash must use argon2id".to_owned());
    }
    argon2::Params::try_from(&parsed).map(|_| ()).map_err(|e| format!("bad argon2 parameters: {e}"))
}
