// The users file: `[[role]]` tables (name -> permissions) and `[[user]]` tables (name,
// argon2id PHC hash, roles, disabled), loaded into an in-memory user store.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{read_file, ConfigError, SourceMap};
use crate::identity::{InMemoryUserStore, Permission, PermissionSet, QualifiedName, UserRecord};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    role: Vec<RoleEntry>,
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    name: Spanned<String>,
    #[serde(default)]
    permissions: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: Spanned<String>,
    #[serde(default)]
    password: Option<Spanned<String>>,
    #[serde(default)]
    roles: Vec<Spanned<String>>,
    #[serde(default)]
    disabled: bool,
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
    let mut roles: HashMap<String, PermissionSet> = HashMap::new();
    for role in &parsed.role {
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
        let mut permissions = PermissionSet::default();
        for role in &user.roles {
            let granted = roles
                .get(role.get_ref())
                .ok_or_else(|| source.error(role.span(), "roles", "no [[role]] has this name"))?;
            permissions.extend(granted.iter().cloned());
        }
        users.push(UserRecord {
            name,
            password_hash: user.password.map(Spanned::into_inner),
            roles: user.roles.into_iter().map(Spanned::into_inner).collect(),
            permissions,
            disabled: user.disabled,
        });
    }
    Ok(InMemoryUserStore::new(users))
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
