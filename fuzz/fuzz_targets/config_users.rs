//! Fuzzes users-file loading: `config::load_users` and `config::load_clients` on the
//! same text. Input: the text.
//!
//! * Every load error names the file, a line of the text and a column (B1).
//! * A store that loads holds exactly the `[[user]]` tables of the text (read here with
//!   the `toml` crate); each user is found by its name, parsed as a qualified name (A4,
//!   F15), with its `disabled` flag and roles, and holds every permission of every role
//!   it lists (C1); the client list holds exactly the `[[client]]` tables.
#![forbid(unsafe_code)]
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_secure::config::{load_clients, load_users, ConfigError};
use tower_secure::identity::{Permission, QualifiedName, UserStore as _};
use tower_secure_fuzz::drive::runtime;
use tower_secure_fuzz::known;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let users = load_users("users.toml", text);
    let clients = load_clients("users.toml", text);
    let table: Option<toml::Table> = toml::from_str(text).ok();
    match users {
        Err(error) => check_error(&error, text),
        Ok(store) => {
            let table = table.as_ref().expect("a users file that loads is TOML");
            check_store(&store, table);
        }
    }
    match clients {
        Err(error) => check_error(&error, text),
        Ok(clients) => {
            let table = table.as_ref().expect("a users file that loads is TOML");
            let count = table.get("client").and_then(toml::Value::as_array).map_or(0, Vec::len);
            assert_eq!(clients.len(), count, "one client per [[client]] table");
        }
    }
});

fn check_error(error: &ConfigError, text: &str) {
    let lines = text.split('\n').count();
    assert_eq!(&*error.file, "users.toml");
    known::check("config-line-zero", error.line >= 1, || format!("SPEC B1: an error without a line: {error}"));
    if error.line == 0 {
        return;
    }
    assert!(error.line <= lines, "line {} of a {lines}-line text: {error}", error.line);
    assert!(error.column >= 1, "{error}");
    assert!(error.to_string().starts_with(&format!("users.toml:{}:{}", error.line, error.column)));
}

fn strings(value: Option<&toml::Value>) -> Vec<String> {
    value
        .and_then(toml::Value::as_array)
        .map_or_else(Vec::new, |list| list.iter().filter_map(toml::Value::as_str).map(str::to_owned).collect())
}

fn check_store(store: &tower_secure::identity::InMemoryUserStore, table: &toml::Table) {
    let users = table.get("user").and_then(toml::Value::as_array).cloned().unwrap_or_default();
    assert_eq!(store.len(), users.len(), "one user per [[user]] table");
    let roles = table.get("role").and_then(toml::Value::as_array).cloned().unwrap_or_default();
    for user in &users {
        let raw = user.get("name").and_then(toml::Value::as_str).expect("a loaded user has a name");
        let name = QualifiedName::parse(raw).expect("a loaded user's name parses");
        let record = runtime()
            .block_on(store.find_user(&name))
            .expect("the in-memory store does not fail")
            .unwrap_or_else(|| panic!("user {raw:?} loaded but not found"));
        assert_eq!(record.name, name);
        let disabled = user.get("disabled").and_then(toml::Value::as_bool).unwrap_or(false);
        assert_eq!(record.disabled, disabled, "{raw:?}");
        let listed = strings(user.get("roles"));
        assert_eq!(record.roles, listed, "{raw:?}");
        for role in &listed {
            let table = roles
                .iter()
                .find(|r| r.get("name").and_then(toml::Value::as_str) == Some(role))
                .expect("a loaded user's roles are defined");
            for permission in strings(table.get("permissions")) {
                let required = Permission::parse(&permission).expect("a loaded permission parses");
                assert!(record.permissions.covers(&required), "{raw:?} lacks {permission:?} of role {role:?}");
            }
        }
    }
}
