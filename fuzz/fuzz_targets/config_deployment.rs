//! Fuzzes rule-file loading: `Deployment::from_toml_str`, then
//! `SecureLayer::builder().deployment(..).user_store(..).build()`. File and network
//! references the text names (`pem_file`, `jwks_file`, `jwks_uri`, `discovery`,
//! introspection, `ca_file`, `intermediates_file`) are pointed at the fixtures or removed
//! and the text written out again before it is built, so a run reads nothing but the
//! fixtures and opens no socket. Input: the text.
//!
//! * Every load error names the file, a line of the text and a column (B1); its display
//!   starts with `file:line:column`; a refused configuration never builds a layer.
//! * A layer that builds has one rule per `[[resource.access_control]]` table, each with
//!   its table's line (B6), and every rule whose `context` is a literal path can match:
//!   looking that path up finds a rule of the same pattern (B3, B4, F2); `HEAD` finds
//!   what `GET` finds (E2).
//! * Loading is bounded (F18): libFuzzer's `-timeout` (run.sh: 10 s) reports slow inputs.
#![forbid(unsafe_code)]
#![no_main]

use http::Method;
use libfuzzer_sys::fuzz_target;
use tower_secure::config::{ConfigError, Deployment};
use tower_secure::policy::{CanonicalPath, Methods, RuleOrigin};
use tower_secure::SecureLayer;
use tower_secure_fuzz::certs::fixture_path;
use tower_secure_fuzz::fixtures::user_store;
use tower_secure_fuzz::known;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(error) = Deployment::from_toml_str("deployment.toml", text) {
        return check_error(&error, text);
    }
    // The file loads: load it again without its file and network references.
    let Some((text, rules)) = neutralised(text) else { return };
    let deployment = match Deployment::from_toml_str("deployment.toml", &text) {
        Ok(deployment) => deployment,
        Err(error) => return check_error(&error, &text),
    };
    match SecureLayer::builder().deployment(deployment).user_store(user_store()).build() {
        Ok(layer) => check_layer(&layer, rules, &text),
        Err(error) => check_error(&error, &text),
    }
});

/// No file but the fixtures, no network: the text with what it names replaced by the
/// fixtures or dropped (a dropped key takes its default), and its number of
/// `[[resource.access_control]]` tables.
fn neutralised(text: &str) -> Option<(String, usize)> {
    use toml::Value;
    let mut table: toml::Table = text.parse().ok()?;
    if let Some(oauth2) = table.get_mut("oauth2").and_then(Value::as_table_mut) {
        oauth2.remove("introspection");
        let issuers = oauth2.get_mut("issuer").and_then(Value::as_array_mut).into_iter().flatten();
        for issuer in issuers.filter_map(Value::as_table_mut) {
            for key in ["jwks_file", "jwks_uri", "discovery", "introspect"] {
                issuer.remove(key);
            }
            let keys = issuer.get_mut("key").and_then(Value::as_array_mut).into_iter().flatten();
            for key in keys.filter_map(Value::as_table_mut) {
                key.remove("pem_file");
            }
        }
    }
    if let Some(client_cert) = table.get_mut("client_cert").and_then(Value::as_table_mut) {
        for (key, fixture) in [("ca_file", "root.pem"), ("intermediates_file", "intermediates.pem")] {
            if client_cert.contains_key(key) {
                client_cert.insert(key.to_owned(), Value::from(fixture_path(fixture).display().to_string()));
            }
        }
    }
    let rules = table
        .get("resource")
        .and_then(|resource| resource.get("access_control"))
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    Some((toml::to_string(&table).ok()?, rules))
}

fn check_error(error: &ConfigError, text: &str) {
    let lines = text.split('\n').count();
    assert_eq!(&*error.file, "deployment.toml");
    known::check("config-line-zero", error.line >= 1, || format!("SPEC B1: an error without a line: {error}"));
    if error.line == 0 {
        return;
    }
    assert!(error.line <= lines, "line {} of a {lines}-line text: {error}", error.line);
    assert!(error.column >= 1, "{error}");
    let line_text = text.split('\n').nth(error.line - 1).unwrap_or_default();
    assert!(error.column <= line_text.chars().count() + 1, "column {} of {line_text:?}: {error}", error.column);
    let shown = error.to_string();
    assert!(shown.starts_with(&format!("deployment.toml:{}:{}", error.line, error.column)), "{shown}");
}

fn check_layer(layer: &SecureLayer, tables: usize, text: &str) {
    let lines = text.split('\n').count();
    let policy = layer.policy();
    assert_eq!(policy.rules().len(), tables, "one rule per table");
    for rule in policy.rules() {
        match rule.origin() {
            RuleOrigin::File { file, line } => {
                assert_eq!(&**file, "deployment.toml");
                assert!((1..=lines).contains(line), "SPEC B6: rule at line {line} of {lines}");
            }
            RuleOrigin::SecureDefault => panic!("a file rule with the default's origin"),
        }
        let context = rule.context();
        let literal = !context.starts_with("regex:") && !context.contains(['{', '*']);
        let for_get = match rule.methods() {
            Methods::All => true,
            Methods::Only(list) => list.contains(&Method::GET),
        };
        if !literal || !for_get {
            continue;
        }
        let Ok(path) = CanonicalPath::parse(context) else {
            panic!("SPEC F2: the literal context {context:?} is not a path any request can have");
        };
        let found = policy.lookup(&Method::GET, &path).map(|r| r.context().trim_end_matches('/').to_owned());
        let reachable =
            found.as_deref() == Ok(context.trim_end_matches('/')) || (context == "/" && found.as_deref() == Ok(""));
        known::check("tenant-pattern-dead", reachable, || {
            format!("SPEC F2: the rule for {context:?} can match nothing: GET {path} finds {found:?}")
        });
        let head = policy.lookup(&Method::HEAD, &path).map(|r| r.context().to_owned());
        assert_eq!(head, policy.lookup(&Method::GET, &path).map(|r| r.context().to_owned()), "SPEC E2");
    }
}
