//! Configuration load errors: every bad rule file, handler setting or users file is
//! refused at load with the file, line, column and key (SPEC B1, B4, C2, E2, F2, F19).

use tower_secure::config::{load_users, ConfigError, Deployment};
use tower_secure::policy::{CanonicalPath, Policy};
use tower_secure::SecureLayer;

const FILE: &str = "deployment.toml";

/// Loads and compiles a rule file.
fn compile(text: &str) -> Result<Policy, ConfigError> {
    Deployment::from_toml_str(FILE, text).and_then(|d| Policy::compile(&d))
}

#[track_caller]
fn load_error(text: &str) -> ConfigError {
    match compile(text) {
        Ok(_) => panic!("this rule file must be refused:\n{text}"),
        Err(e) => e,
    }
}

#[track_caller]
fn loads(text: &str) -> Policy {
    compile(text).unwrap_or_else(|e| panic!("this rule file must load: {e}\n{text}"))
}

/// The 1-based line of the `n`th (0-based) line of `text` containing `needle`.
#[track_caller]
fn line_of_nth(text: &str, needle: &str, n: usize) -> usize {
    let found = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).nth(n);
    found.unwrap_or_else(|| panic!("{needle:?} #{n} not in the text")).0 + 1
}

/// The 1-based line of the first line after line `after` containing `needle`.
#[track_caller]
fn line_after(text: &str, after: usize, needle: &str) -> usize {
    let found = text.lines().enumerate().skip(after).find(|(_, l)| l.contains(needle));
    found.unwrap_or_else(|| panic!("{needle:?} not after line {after}")).0 + 1
}

#[track_caller]
fn line_of(text: &str, needle: &str) -> usize {
    line_of_nth(text, needle, 0)
}

/// Asserts where and what: file, line, key, message fragments, and that the Display
/// form is `file:line:col: key `k`: message`.
#[track_caller]
fn check(err: &ConfigError, file: &str, line: usize, key: &str, fragments: &[&str]) {
    assert_eq!(&*err.file, file, "{err}");
    assert_eq!(err.line, line, "line of {err}");
    assert_eq!(err.key.as_deref(), Some(key), "key of {err}");
    assert!(err.column >= 1, "column of {err}");
    for fragment in fragments {
        assert!(err.message.contains(fragment), "{err} should say {fragment:?}");
    }
    assert_eq!(err.to_string(), format!("{file}:{line}:{}: key `{key}`: {}", err.column, err.message));
}

/// One rule table with `context` and extra lines.
fn rule(context: &str, extra: &str) -> String {
    format!("[[resource.access_control]]\ncontext = \"{context}\"\n{extra}\n")
}

/// A rule file with a harmless rule first, so that positions are not trivially line 1.
fn after_a_good_rule(text: &str) -> String {
    format!("# rules\n\n[[resource.access_control]]\ncontext = \"/health\"\nsecure = false\n\n{text}")
}

// ---------------------------------------------------------------------------------------
// B1: the shape of the file
// ---------------------------------------------------------------------------------------

// SPEC B1: an unknown key in a rule is an error at that key.
#[test]
fn unknown_key_in_a_rule() {
    for bad in ["permision", "method", "http_methods", "Secure", "scope_match"] {
        let text = after_a_good_rule(&rule("/a", &format!("{bad} = true")));
        let err = load_error(&text);
        check(&err, FILE, line_of(&text, &format!("{bad} =")), bad, &["unknown field", bad]);
        // The message lists what is allowed.
        assert!(err.message.contains("`context`"), "{err}");
    }
}

// SPEC B1: unknown top-level tables and unknown keys of known tables are errors.
#[test]
fn unknown_tables_and_keys_outside_rules() {
    let text = after_a_good_rule("[logging]\nlevel = \"debug\"\n");
    check(&load_error(&text), FILE, line_of(&text, "[logging]"), "logging", &["unknown field `logging`"]);

    let text = after_a_good_rule("[[resources.access_control]]\ncontext = \"/a\"\n");
    check(&load_error(&text), FILE, line_of(&text, "[[resources."), "resources", &["unknown field `resources`"]);

    let text = after_a_good_rule("[cors]\nauthenticate_preflights = true\n");
    let line = line_of(&text, "authenticate_preflights");
    check(&load_error(&text), FILE, line, "authenticate_preflights", &["unknown field"]);

    let text = after_a_good_rule("[authentication.basic]\ncache_ttl = 5\n");
    check(&load_error(&text), FILE, line_of(&text, "cache_ttl"), "cache_ttl", &["unknown field"]);
}

// SPEC B1: a rule without `context` is an error naming `context`, at the rule's table.
#[test]
fn missing_context() {
    let text = after_a_good_rule("[[resource.access_control]]\nsecure = false\nhttp_method = \"GET\"\n");
    let header = line_of_nth(&text, "[[resource.access_control]]", 1);
    check(&load_error(&text), FILE, header, "context", &["missing field `context`"]);
}

// SPEC B1: values of the wrong type are errors at the key.
#[test]
fn wrong_types() {
    let cases = [
        ("secure = \"yes\"", "secure", "boolean"),
        ("secure = 1", "secure", "boolean"),
        ("override = \"true\"", "override", "boolean"),
        ("http_method = 5", "http_method", "a string or a list of strings"),
        ("permissions = [1]", "permissions", "string"),
        ("permissions = { all = true }", "permissions", "a string or a list of strings"),
        ("permissions_match = \"some\"", "permissions_match", "some"),
        ("scopes_match = \"none\"", "scopes_match", "none"),
        ("cross_tenant = \"yes\"", "cross_tenant", "list of tenant names"),
    ];
    for (line, key, fragment) in cases {
        let text = after_a_good_rule(&rule("/a", line));
        check(&load_error(&text), FILE, line_of(&text, line), key, &[fragment]);
    }
    let text = after_a_good_rule("[[resource.access_control]]\ncontext = 5\n");
    check(&load_error(&text), FILE, line_of(&text, "context = 5"), "context", &["string"]);
    // `cross_tenant` takes `true`, `false` or a list of non-empty tenant names.
    let text = after_a_good_rule(&rule("/a", "cross_tenant = [\"\"]"));
    check(&load_error(&text), FILE, line_of(&text, "cross_tenant"), "cross_tenant", &["empty"]);
    loads(&rule("/a", "cross_tenant = [\"example.com\"]"));
    // A single string is a one-item list.
    let policy = loads(&rule("/a", "permissions = \"/permission/admin\""));
    let permissions: Vec<&str> = policy.rules()[0].permissions().iter().map(|p| p.as_str()).collect();
    assert_eq!(permissions, ["/permission/admin"]);
}

// SPEC B1: a key written twice in one rule is an error at the second.
#[test]
fn duplicate_key_in_a_rule() {
    let text = after_a_good_rule("[[resource.access_control]]\ncontext = \"/a\"\ncontext = \"/b\"\n");
    check(&load_error(&text), FILE, line_of(&text, "context = \"/b\""), "context", &["duplicate"]);
}

// SPEC B1: `http_method` must be one method, a non-empty list, or `all` alone; HEAD is
// checked as GET so listing it is an error; names are case-insensitive.
#[test]
fn bad_http_method() {
    let cases = [
        ("\"G ET\"", "not an HTTP method"),
        ("[\"GET\", \"PO ST\"]", "not an HTTP method"),
        ("\"GET,POST\"", "not an HTTP method"),
        ("\"\"", "not an HTTP method"),
        ("\"GET\\n\"", "not an HTTP method"),
        ("[]", "at least one method"),
        ("[\"all\", \"GET\"]", "cannot be combined"),
        ("[\"GET\", \"ALL\"]", "cannot be combined"),
        ("\"HEAD\"", "HEAD is checked as GET"),
        ("[\"GET\", \"head\"]", "HEAD is checked as GET"),
        ("[\"GET\", \"get\"]", "listed twice"),
        ("\"GETT\"", "unknown HTTP method GETT"),
    ];
    for (value, fragment) in cases {
        let text = after_a_good_rule(&rule("/a", &format!("http_method = {value}")));
        let err = load_error(&text);
        check(&err, FILE, line_of(&text, "http_method"), "http_method", &[fragment]);
    }
    // Valid forms: one or a list, any case, `all` in any case, TRACE and CONNECT.
    for (value, shown) in [
        ("\"get\"", "GET"),
        ("[\"Get\", \"post\"]", "GET,POST"),
        ("\"ALL\"", "all"),
        ("[\"all\"]", "all"),
        ("\"trace\"", "TRACE"),
        ("[\"CONNECT\", \"options\", \"PATCH\", \"delete\", \"PUT\"]", "CONNECT,OPTIONS,PATCH,DELETE,PUT"),
    ] {
        let policy = loads(&rule("/a", &format!("http_method = {value}")));
        assert_eq!(policy.rules()[0].methods().to_string(), shown, "http_method = {value}");
    }
}

// SPEC F19, F3: a method name that is neither standard nor declared in
// `extension_methods` is a load error at `http_method`, so a typo never leaves the method
// it meant to the secure default.
#[test]
fn unknown_http_methods_are_refused() {
    for (value, name) in [
        ("\"DELTE\"", "DELTE"),
        ("\"delte\"", "DELTE"),
        ("[\"GET\", \"PROPFND\"]", "PROPFND"),
        ("\"PROPFIND\"", "PROPFIND"),
        ("\"M-SEARCH\"", "M-SEARCH"),
    ] {
        let text = after_a_good_rule(&rule("/a", &format!("http_method = {value}")));
        let expected =
            format!("unknown HTTP method {name}; declare it in extension_methods if it is an extension method");
        check(&load_error(&text), FILE, line_of(&text, "http_method"), "http_method", &[&expected]);
    }
    // Declared in another rule does not count: each rule declares its own.
    let text = format!(
        "{}{}",
        rule("/dav", "http_method = \"PROPFIND\"\nextension_methods = [\"PROPFIND\"]"),
        rule("/other", "http_method = \"PROPFIND\"")
    );
    let err = load_error(&text);
    check(&err, FILE, line_of_nth(&text, "http_method", 1), "http_method", &["unknown HTTP method PROPFIND"]);
}

// SPEC F19: `extension_methods` declares what `http_method` may name; it takes method
// tokens that are not standard, each named in `http_method` too.
#[test]
fn extension_methods() {
    let policy = loads(&rule(
        "/dav/**",
        "http_method = [\"propfind\", \"GET\", \"MKCOL\"]\nextension_methods = [\"PROPFIND\", \"mkcol\"]",
    ));
    assert_eq!(policy.rules()[0].methods().to_string(), "PROPFIND,GET,MKCOL");
    let cases = [
        ("http_method = \"PROPFIND\"\nextension_methods = []", "empty list"),
        ("http_method = \"GET\"\nextension_methods = [\"GET\"]", "GET is a standard method"),
        ("http_method = \"TRACE\"\nextension_methods = [\"trace\"]", "TRACE is a standard method"),
        ("extension_methods = [\"HEAD\"]", "HEAD is a standard method"),
        ("http_method = \"PROPFIND\"\nextension_methods = [\"PROP FIND\"]", "not an HTTP method"),
        ("http_method = \"PROPFIND\"\nextension_methods = [\"PROPFIND\", \"propfind\"]", "listed twice"),
        ("http_method = \"GET\"\nextension_methods = [\"PROPFIND\"]", "`PROPFIND` is declared but http_method"),
        ("extension_methods = [\"PROPFIND\"]", "`all` stands for the standard methods only"),
        ("http_method = \"all\"\nextension_methods = [\"PROPFIND\"]", "declared but http_method does not name it"),
    ];
    for (lines, fragment) in cases {
        let text = after_a_good_rule(&rule("/a", lines));
        let err = load_error(&text);
        check(&err, FILE, line_of(&text, "extension_methods"), "extension_methods", &[fragment]);
    }
}

// SPEC E2: `[cors] authenticate_preflight = false` asked for the old pass-through of CORS
// preflights; it is refused at its key, saying to put a CORS layer outside the security
// layer. `true` (what the layer does) still loads.
#[test]
fn cors_preflight_pass_through_is_refused() {
    let text = after_a_good_rule("[cors]\nauthenticate_preflight = false\n");
    let err = load_error(&text);
    let fragments = ["no longer lets CORS preflights through", "CorsLayer", "outside the security layer"];
    check(&err, FILE, line_of(&text, "authenticate_preflight"), "authenticate_preflight", &fragments);
    loads(&after_a_good_rule("[cors]\nauthenticate_preflight = true\n"));
    loads(&after_a_good_rule("[cors]\n"));
}

/// Scopes `internal_admin` (bound to the manage permission), `deleter` (bound to the
/// delete permission) and `unbound` (no permission), then `rules`.
fn with_scopes(rules: &str) -> String {
    format!(
        "[[scope]]\nname = \"internal_admin\"\npermissions = [\"/permission/admin/manage\"]\n\n\
         [[scope]]\nname = \"deleter\"\npermissions = [\"/permission/admin/delete\"]\n\n\
         [[scope]]\nname = \"unbound\"\nroles = [\"admin\"]\n\n{rules}"
    )
}

// SPEC C2: a rule whose scopes' bindings do not imply its permissions would let a token
// through without them: a load error at `permissions` that names the permission, the
// scope and its bindings, and both fixes.
#[test]
fn scopes_that_do_not_imply_the_permissions_are_refused() {
    let text = with_scopes(&rule(
        "/api/admin/things/{id}",
        "http_method = \"DELETE\"\npermissions = [\"/permission/admin/delete\"]\nscope = [\"internal_admin\"]",
    ));
    let err = load_error(&text);
    let fragments = [
        "a token with scope `internal_admin` (bound to /permission/admin/manage) passes without `/permission/admin/delete`",
        "judged by their scopes alone",
        "Bind the scope to the permission in its [[scope]] table",
        "token_permissions = \"check\"",
    ];
    check(&err, FILE, line_of_nth(&text, "permissions = [\"/permission/admin/delete\"]", 1), "permissions", &fragments);
    // Every combination of scopes_match and permissions_match.
    let refused = [
        // any scope: `internal_admin` alone does not imply the delete permission.
        ("scope = [\"internal_admin\", \"deleter\"]\nscopes_match = \"any\"", "/permission/admin/delete", "all"),
        // all permissions: the union of both bindings lacks `/permission/admin/other`.
        ("scope = [\"internal_admin\", \"deleter\"]", "/permission/admin/other", "all"),
        // any permission, none implied.
        ("scope = [\"internal_admin\"]", "/permission/other\", \"/permission/else", "any"),
        // A scope bound to roles only, or not defined at all, implies no permission.
        ("scope = [\"unbound\"]", "/permission/admin/manage", "all"),
        ("scope = [\"undefined_scope\"]", "/permission/admin/manage", "all"),
    ];
    for (scopes, permissions, mode) in refused {
        let extra = format!("{scopes}\npermissions = [\"{permissions}\"]\npermissions_match = \"{mode}\"");
        let text = with_scopes(&rule("/a", &extra));
        let line = line_after(&text, line_of(&text, "[[resource.access_control]]"), "permissions = ");
        check(&load_error(&text), FILE, line, "permissions", &["passes without"]);
    }
    let implied = [
        // The binding covers the permission (a parent covers its children).
        ("scope = [\"internal_admin\"]", "/permission/admin/manage/users", "all"),
        // all scopes: the union of the bindings covers both.
        ("scope = [\"internal_admin\", \"deleter\"]", "/permission/admin/manage\", \"/permission/admin/delete", "all"),
        // any scope, any permission: each scope's binding covers one of them.
        (
            "scope = [\"internal_admin\", \"deleter\"]\nscopes_match = \"any\"",
            "/permission/admin/manage\", \"/permission/admin/delete",
            "any",
        ),
    ];
    for (scopes, permissions, mode) in implied {
        loads(&with_scopes(&rule(
            "/a",
            &format!("{scopes}\npermissions = [\"{permissions}\"]\npermissions_match = \"{mode}\""),
        )));
    }
    // The second fix: the token user's permissions are checked too.
    let policy = loads(&with_scopes(&rule(
        "/a",
        "permissions = [\"/permission/admin/delete\"]\nscope = [\"internal_admin\"]\ntoken_permissions = \"check\"",
    )));
    assert_eq!(policy.rules()[0].token_permissions(), tower_secure::config::TokenPermissions::Check);
}

// SPEC C2: `token_permissions` is `scopes` or `check`, and `check` needs permissions.
#[test]
fn token_permissions_errors() {
    let text = after_a_good_rule(&rule("/a", "scope = [\"read\"]\ntoken_permissions = \"check\""));
    let err = load_error(&text);
    check(&err, FILE, line_of(&text, "token_permissions"), "token_permissions", &["names none", "add `permissions`"]);
    let text = after_a_good_rule(&rule("/a", "permissions = [\"/permission/a\"]\ntoken_permissions = \"always\""));
    check(&load_error(&text), FILE, line_of(&text, "token_permissions"), "token_permissions", &["always"]);
    let policy = loads(&rule("/a", "permissions = [\"/permission/a\"]\ntoken_permissions = \"scopes\""));
    assert_eq!(policy.rules()[0].token_permissions(), tower_secure::config::TokenPermissions::Scopes);
}

// SPEC B1: permissions are absolute paths without empty, dot or trailing segments.
#[test]
fn bad_permissions() {
    let cases = [
        ("permission/x", "must start with '/'"),
        ("/permission/admin/", "trailing"),
        ("/permission//admin", "empty"),
        ("/permission/../admin", "'..'"),
        ("/permission/ admin", "white space"),
        ("", "must start with '/'"),
    ];
    for (bad, fragment) in cases {
        let text = after_a_good_rule(&rule("/a", &format!("permissions = [\"/permission/admin\", \"{bad}\"]")));
        let err = load_error(&text);
        check(&err, FILE, line_of(&text, "permissions ="), "permissions", &[fragment]);
        assert!(err.message.contains(&format!("`{bad}`")), "the message names the bad permission: {err}");
    }
    // The same in a [[scope]] definition.
    let text = after_a_good_rule("[[scope]]\nname = \"read\"\npermissions = [\"permission/x\"]\n");
    check(&load_error(&text), FILE, line_of(&text, "permissions ="), "permissions", &["must start with '/'"]);
}

// SPEC B1: scope names are non-empty RFC 6749 scope tokens (`scope` or `scopes`).
#[test]
fn bad_scope_names() {
    for (key, value, fragment) in [
        ("scope", "[\"\"]", "not a scope token"),
        ("scope", "[\"read write\"]", "not a scope token"),
        ("scope", "[\"read\", \"a\\\"b\"]", "not a scope token"),
        ("scope", "\"tab\\there\"", "not a scope token"),
        ("scope", "[]", "empty scope list"),
        ("scopes", "[\"read write\"]", "not a scope token"),
    ] {
        let text = after_a_good_rule(&rule("/a", &format!("{key} = {value}")));
        let err = load_error(&text);
        assert_eq!(err.line, line_of(&text, &format!("{key} =")), "{err}");
        // `scopes` is an alias of `scope`: either name is a fair report.
        assert!(matches!(err.key.as_deref(), Some("scope" | "scopes")), "{err}");
        assert!(err.message.contains(fragment), "{err}");
    }
    let text = after_a_good_rule("[[scope]]\nname = \"read write\"\n");
    check(&load_error(&text), FILE, line_of(&text, "read write"), "name", &["not a scope token"]);
    let text = after_a_good_rule("[[scope]]\nname = \"read\"\n\n[[scope]]\nname = \"read\"\n");
    check(&load_error(&text), FILE, line_of_nth(&text, "name = \"read\"", 1), "name", &["defined twice"]);
    let policy = loads(&rule("/a", "scopes = [\"internal_user_mgt_view\", \"openid\"]"));
    assert_eq!(policy.rules()[0].scopes(), ["internal_user_mgt_view", "openid"]);
}

// SPEC B1: `allowed_auth_handlers` names registered handlers only, and is not empty.
#[test]
fn bad_allowed_auth_handlers() {
    let text = after_a_good_rule(&rule("/a", "allowed_auth_handlers = [\"basic\", \"saml\"]"));
    let line = line_of(&text, "allowed_auth_handlers");
    check(&load_error(&text), FILE, line, "allowed_auth_handlers", &["`saml`"]);

    let text = after_a_good_rule(&rule("/a", "allowed_auth_handlers = []"));
    let line = line_of(&text, "allowed_auth_handlers");
    check(&load_error(&text), FILE, line, "allowed_auth_handlers", &["empty"]);

    // The built-in names compile against the built-in handlers.
    let policy = loads(&rule("/a", "allowed_auth_handlers = [\"basic\", \"oauth2\"]"));
    assert_eq!(policy.rules()[0].allowed_auth_handlers(), Some(&["basic".to_owned(), "oauth2".to_owned()][..]));

    // The builder checks against the handlers actually registered.
    let build = |text: &str, with_users: bool| {
        let mut builder = SecureLayer::builder().deployment(Deployment::from_toml_str(FILE, text).unwrap());
        if with_users {
            builder = builder.user_store(load_users("users.toml", "").unwrap());
        }
        builder.build()
    };
    let text = after_a_good_rule(&rule("/a", "allowed_auth_handlers = [\"basic\"]"));
    let line = line_of(&text, "allowed_auth_handlers");
    let err = build(&text, false).expect_err("no basic handler is registered without a user store");
    check(&err, FILE, line, "allowed_auth_handlers", &["`basic`"]);
    build(&text, true).expect("basic is registered with a user store");
    let text = after_a_good_rule(&rule("/a", "allowed_auth_handlers = [\"oauth2\"]"));
    let err = build(&text, true).expect_err("oauth2 is not registered");
    check(&err, FILE, line_of(&text, "allowed_auth_handlers"), "allowed_auth_handlers", &["`oauth2`"]);
}

// SPEC B1, B2: an open resource cannot require permissions or scopes; the error names
// `secure` at the line of one of the conflicting keys.
#[test]
fn open_resource_with_requirements() {
    for (first, second) in [
        ("secure = false", "permissions = [\"/permission/admin\"]"),
        ("permissions = [\"/permission/admin\"]", "secure = false"),
        ("secure = false", "scope = [\"read\"]"),
    ] {
        let text = after_a_good_rule(&rule("/a", &format!("{first}\n{second}")));
        let err = load_error(&text);
        assert_eq!(err.key.as_deref(), Some("secure"), "{err}");
        assert!(err.message.contains("cannot require permissions or scopes"), "{err}");
        // Both keys are in the second table (the first is the good `/health` rule).
        let table = line_of_nth(&text, "[[resource.access_control]]", 1);
        let keys = [line_after(&text, table, first), line_after(&text, table, second)];
        assert!(keys.contains(&err.line), "line {} should be one of the conflicting keys {keys:?}: {err}", err.line);
    }
    // Either alone is fine.
    loads(&rule("/a", "secure = false"));
    loads(&rule("/a", "secure = true\npermissions = [\"/permission/admin\"]"));
}

// ---------------------------------------------------------------------------------------
// F2: patterns are validated at load
// ---------------------------------------------------------------------------------------

// SPEC F2, B3: patterns that do not start with `/`, are malformed, or can never match a
// canonical request path are refused at the `context` line.
#[test]
fn malformed_patterns() {
    let cases = [
        ("api", "must start with '/'"),
        ("", "must start with '/'"),
        ("api/**", "must start with '/'"),
        ("*", "must start with '/'"),
        ("/a//b", "empty segment"),
        ("/**/x", "`**` may only be the last segment"),
        ("/a/**/b/**", "`**` may only be the last segment"),
        ("/a/{x", "whole segment"),
        ("/a/x{y}", "whole segment"),
        ("/a/{}", "parameter name"),
        ("/a/{x-y}", "parameter name"),
        ("/a/b*", "wildcards must be whole segments"),
        ("/a/*b", "wildcards must be whole segments"),
        ("/a/**b", "wildcards must be whole segments"),
        ("/a/%2e", "decoded"),
        ("/a/%61", "decoded"),
        ("/a/b;c", "decoded"),
        ("/a/b?c", "decoded"),
        ("/a/b#c", "decoded"),
        ("/a/b\\\\c", "decoded"),
        ("/a/..", "never match"),
        ("/a/./b", "never match"),
        ("/..", "never match"),
        ("regex:", "needs a pattern"),
        ("regex:(", "invalid regex"),
        ("regex:/a[", "invalid regex"),
        ("regex:/a{99999999}", "invalid regex"),
        // `//` is not `/`: an empty segment, like `/a//b`.
        ("//", "empty segment"),
        // Rules match the path after `/t/{tenant}` (SPEC C5): such a rule would never
        // govern a tenant's path (found by fuzzing).
        ("/t/example.com/api/admin", "after its `/t/{tenant}` prefix"),
        ("/t/{tenant}/api", "after its `/t/{tenant}` prefix"),
        ("/t/**", "after its `/t/{tenant}` prefix"),
    ];
    for (pattern, fragment) in cases {
        let text = after_a_good_rule(&rule(pattern, "secure = false"));
        let err = load_error(&text);
        check(&err, FILE, line_of_nth(&text, "context =", 1), "context", &[fragment]);
    }
}

// SPEC F2, B3: well-formed patterns load, and `regex:` anchors cannot be escaped: no flag
// turns them into line anchors, and a newline can never reach the matcher.
#[test]
fn regex_patterns_are_anchored_at_load() {
    let policy = loads(
        r#"
[[resource.access_control]]
context = "regex:(?m)/open$"
secure = false

[[resource.access_control]]
context = "regex:(?ms)^/files/.*"
secure = false
"#,
    );
    let open = |path: &str| {
        let path = CanonicalPath::parse(path).unwrap();
        !policy.lookup(&http::Method::GET, &path).unwrap().is_secure()
    };
    assert!(open("/open"));
    assert!(open("/files/a/b"));
    assert!(!open("/open/admin"));
    assert!(!open("/x/open"));
    assert!(!open("/admin/files/a"));
    // `%0a` (and every other control) is refused before matching, raw or encoded.
    for path in ["/open%0a/admin", "/admin%0a/open", "/open%0A", "/open%0d", "/open\n/admin"] {
        assert!(CanonicalPath::parse(path).is_err(), "{path:?} must not be canonical");
    }
}

// ---------------------------------------------------------------------------------------
// B4: equally specific rules
// ---------------------------------------------------------------------------------------

/// Asserts that `first` then `second` is refused at the second rule's `context`, naming
/// both patterns and the first rule's line.
#[track_caller]
fn check_tie(first: &str, first_extra: &str, second: &str, second_extra: &str) {
    let text = after_a_good_rule(&format!("{}\n{}", rule(first, first_extra), rule(second, second_extra)));
    let err = load_error(&text);
    let second_context = line_of_nth(&text, "context =", 2);
    let first_header = line_of_nth(&text, "[[resource.access_control]]", 1);
    check(&err, FILE, second_context, "context", &[&format!("`{second}`"), &format!("`{first}`")]);
    assert!(err.message.contains(&format!("{FILE}:{first_header}")), "names where the first rule is: {err}");
}

// SPEC B4: two rules equally specific for the same method are a load error naming the
// second rule's line and `context`, whichever order they are written in.
#[test]
fn equally_specific_rules_are_refused() {
    check_tie("/a/{x}/c", "", "/a/b/{y}", "");
    check_tie("/a/b/{y}", "", "/a/{x}/c", "");
    check_tie("/a", "", "/a", "");
    check_tie("/a/{x}/c", "", "/a/*/c", "");
    check_tie("/a/**", "", "/a/*", "");
    check_tie("/a/{x}/**", "", "/a/{y}/**", "");
    check_tie("/a", "http_method = \"GET\"", "/a", "http_method = [\"POST\", \"get\"]");
    check_tie("/a/{x}/c", "http_method = \"PUT\"", "/a/b/{y}", "http_method = [\"PUT\"]");
    check_tie("/a", "secure = false", "/a", "permissions = [\"/permission/admin\"]");
    check_tie("regex:/a/.*", "", "regex:/a/.*", "");
    // A wildcard first segment against a literal one, both orders.
    check_tie("/{x}/b", "", "/a/{y}", "");
    check_tie("/a/{y}", "", "/{x}/b", "");
    check_tie("/*/b/**", "", "/a/{y}/**", "");
}

// SPEC B4: the same patterns with disjoint methods, or of different specificity, load,
// and the right one applies.
#[test]
fn disjoint_or_ranked_rules_load() {
    let policy = loads(&format!(
        "{}{}{}{}{}",
        rule("/a/{x}/c", "http_method = \"GET\"\nsecure = false"),
        rule("/a/b/{y}", "http_method = [\"POST\", \"PUT\"]"),
        rule("/a/b/{y}", "http_method = \"DELETE\"\npermissions = [\"/permission/admin\"]"),
        rule("/p", "http_method = \"GET\"\nsecure = false"),
        rule("/p", "permissions = [\"/permission/admin\"]"),
    ));
    let lookup = |method: http::Method, path: &str| {
        let rule = policy.lookup(&method, &CanonicalPath::parse(path).unwrap()).unwrap();
        format!("{} {}", rule.methods(), rule.context())
    };
    assert_eq!(lookup(http::Method::GET, "/a/b/c"), "GET /a/{x}/c");
    assert_eq!(lookup(http::Method::HEAD, "/a/b/c"), "GET /a/{x}/c");
    assert_eq!(lookup(http::Method::PUT, "/a/b/c"), "POST,PUT /a/b/{y}");
    assert_eq!(lookup(http::Method::DELETE, "/a/b/c"), "DELETE /a/b/{y}");
    assert_eq!(lookup(http::Method::PATCH, "/a/b/c"), "all /**", "no rule names PATCH: the secure default");
    assert_eq!(lookup(http::Method::GET, "/p"), "GET /p");
    assert_eq!(lookup(http::Method::POST, "/p"), "all /p");
    // Same literal count, different shape: not a tie.
    loads(&format!("{}{}", rule("/a/{x}", ""), rule("/a/**", "")));
    loads(&format!("{}{}", rule("/a/{x}/c", ""), rule("/a/b/c", "")));
    loads(&format!("{}{}", rule("/a/{x}/c", ""), rule("/a/{x}/{y}", "")));
    loads(&format!("{}{}", rule("/a/{x}/c", ""), rule("/a/b/d/{y}", "")));
}

/// Whether `pattern` matches the path of `segments`, by the README's definition: `{name}`
/// and an inner `*` match one segment, `**` or a trailing `*` any rest (none included), a
/// trailing `/` changes nothing. Written apart from the library, as the oracle.
fn reference_matches(pattern: &str, segments: &[&str]) -> bool {
    let body = pattern.trim_start_matches('/');
    let body = body.strip_suffix('/').unwrap_or(body);
    if body.is_empty() {
        return segments.is_empty();
    }
    let parts: Vec<&str> = body.split('/').collect();
    let (fixed, rest) = match parts.split_last() {
        Some((&("**" | "*"), init)) => (init, true),
        _ => (&parts[..], false),
    };
    let length_fits = if rest { segments.len() >= fixed.len() } else { segments.len() == fixed.len() };
    length_fits && fixed.iter().zip(segments).all(|(p, s)| p.starts_with('{') || *p == "*" || p == s)
}

// SPEC B4, F19: any two spellings that match exactly the same paths (`{x}`, `{y}` and an
// inner `*`; `**` and a trailing `/*`; a trailing `/`) are a tie, refused in either order.
// Every pattern of up to three segments over `a`, `b`, `{x}`, `{y}`, `*`, `**` is compared
// with every other on all paths of up to four segments over `a`, `b`, `c`.
#[test]
fn spellings_that_match_the_same_paths_tie() {
    let symbols = ["a", "b", "{x}", "{y}", "*", "**"];
    let mut spellings: Vec<Vec<&str>> = vec![vec![]];
    let mut patterns = vec!["/".to_owned()];
    for _ in 0..3 {
        spellings = spellings.iter().flat_map(|s| symbols.iter().map(move |x| [&s[..], &[*x]].concat())).collect();
        for spelling in &spellings {
            let pattern = format!("/{}", spelling.join("/"));
            if compile(&rule(&pattern, "")).is_ok() {
                patterns.push(format!("{pattern}/"));
                patterns.push(pattern);
            }
        }
    }
    let mut paths: Vec<Vec<&str>> = vec![vec![]];
    let mut last: Vec<Vec<&str>> = vec![vec![]];
    for _ in 0..4 {
        last = last.iter().flat_map(|p| ["a", "b", "c"].map(|s| [&p[..], &[s]].concat())).collect();
        paths.extend(last.iter().cloned());
    }
    let matched = |pattern: &str| -> Vec<bool> { paths.iter().map(|p| reference_matches(pattern, p)).collect() };
    let sets: Vec<Vec<bool>> = patterns.iter().map(|p| matched(p)).collect();
    let mut ties = 0;
    for (i, first) in patterns.iter().enumerate() {
        for (j, second) in patterns.iter().enumerate() {
            if i == j || sets[i] != sets[j] {
                continue;
            }
            let text = format!("{}{}", rule(first, ""), rule(second, ""));
            let err = compile(&text).err().unwrap_or_else(|| panic!("`{first}` and `{second}` match the same paths"));
            assert_eq!(err.key.as_deref(), Some("context"), "{err}");
            assert!(err.message.contains("is as specific as"), "`{first}` and `{second}`: {err}");
            ties += 1;
        }
    }
    // The oracle is not vacuous: the known spellings are among the pairs.
    for (first, second) in [("/a/{x}/b", "/a/*/b"), ("/a/{x}", "/a/{y}"), ("/a/**", "/a/*"), ("/a/{x}/**", "/a/*/*")] {
        let (i, j) = (patterns.iter().position(|p| p == first), patterns.iter().position(|p| p == second));
        assert!(i.zip(j).is_some_and(|(i, j)| sets[i] == sets[j]), "{first} and {second} are compared");
    }
    assert!(ties > 1000, "{ties} tied pairs");
}

// SPEC B4, F19: a trailing `/*` is an any-rest tail, not a one-segment wildcard:
// `/notes/{id}` and `/notes/*` match different paths, so they load together and the more
// specific applies, whatever the order.
#[test]
fn a_trailing_star_is_not_a_segment_wildcard() {
    for (first, second) in [("/notes/{id}", "/notes/*"), ("/notes/*", "/notes/{id}")] {
        let policy = loads(&format!("{}{}", rule(first, "secure = false"), rule(second, "permissions = [\"/p/x\"]")));
        let lookup = |path: &str| policy.lookup(&http::Method::GET, &CanonicalPath::parse(path).unwrap()).unwrap();
        assert_eq!(lookup("/notes/7").context(), "/notes/{id}");
        assert_eq!(lookup("/notes").context(), "/notes/*");
        assert_eq!(lookup("/notes/7/x").context(), "/notes/*");
    }
}

// ---------------------------------------------------------------------------------------
// B1: handler priorities
// ---------------------------------------------------------------------------------------

// SPEC B1: `[authentication.priorities]` may only name registered handlers; the error is
// at the offending key.
#[test]
fn priorities_naming_an_unknown_handler() {
    let build = |text: &str| {
        SecureLayer::builder()
            .deployment(Deployment::from_toml_str(FILE, text).unwrap())
            .user_store(load_users("users.toml", "").unwrap())
            .build()
    };
    let text = "[authentication]\nrealm = \"x\"\n\n[authentication.priorities]\nbasic = 5\nsaml = 7\n";
    let err = build(text).expect_err("saml is not registered");
    check(&err, FILE, line_of(text, "saml"), "saml", &["`saml`"]);

    let layer = build("[authentication.priorities]\nbasic = 5\n").expect("basic is registered");
    assert_eq!(layer.handler_order(), [("basic".to_owned(), 5)]);

    let text = "[authentication.priorities]\nbasic = \"high\"\n";
    let err = Deployment::from_toml_str(FILE, text).expect_err("a priority is a number");
    check(&err, FILE, 2, "basic", &["invalid type"]);
}

// ---------------------------------------------------------------------------------------
// B1: the users file
// ---------------------------------------------------------------------------------------

const HASH: &str = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk";

fn users_with(extra: &str) -> String {
    format!(
        "[[role]]\nname = \"viewer\"\npermissions = [\"/permission/admin/login\"]\n\n\
         [[user]]\nname = \"alex\"\npassword = \"{HASH}\"\nroles = [\"viewer\"]\n\n{extra}"
    )
}

#[track_caller]
fn users_error(text: &str) -> ConfigError {
    match load_users("users.toml", text) {
        Ok(_) => panic!("this users file must be refused:\n{text}"),
        Err(e) => e,
    }
}

// SPEC B1: users-file errors name the line and key: unknown role, duplicate user or role,
// a password that is not an argon2id hash (without echoing it), bad names.
#[test]
fn users_file_errors() {
    let good = users_with("");
    assert_eq!(load_users("users.toml", &good).unwrap().len(), 1);

    let text =
        users_with(&format!("[[user]]\nname = \"bob\"\npassword = \"{HASH}\"\nroles = [\"viewer\", \"ghost\"]\n"));
    check(&users_error(&text), "users.toml", line_of(&text, "ghost"), "roles", &["no [[role]]"]);

    for duplicate in ["alex", "PRIMARY/alex", "alex@carbon.super", "primary/alex@CARBON.SUPER"] {
        let text = users_with(&format!("[[user]]\nname = \"{duplicate}\"\npassword = \"{HASH}\"\n"));
        let err = users_error(&text);
        // The third `name =` of the file: the role, alex, then the duplicate.
        check(&err, "users.toml", line_of_nth(&text, "name = ", 2), "name", &["defined twice"]);
    }

    let text = users_with("[[role]]\nname = \"viewer\"\n");
    check(&users_error(&text), "users.toml", line_of_nth(&text, "name = \"viewer\"", 1), "name", &["defined twice"]);

    for (password, fragment) in [
        ("bob123", "not a PHC password hash"),
        ("$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk", "argon2id"),
        ("$2b$12$abcdefghijklmnopqrstuu5Q2v5kRr1Qv3dQnF1pQb1Vd8Kq0O2eW", ""),
    ] {
        let text = users_with(&format!("[[user]]\nname = \"bob\"\npassword = \"{password}\"\n"));
        let err = users_error(&text);
        check(&err, "users.toml", line_of(&text, &format!("password = \"{password}\"")), "password", &[fragment]);
        assert!(!err.to_string().contains(password), "the password never appears in the error: {err}");
    }

    for (name, fragment) in [
        ("", "empty"),
        (" bob", "white space"),
        ("bob ", "white space"),
        ("a/b/c", "'/'"),
        ("bob@", "empty"),
        ("/bob", "empty"),
        ("bo\\u0000b", "control"),
        ("BAD DOMAIN/bob", "domain"),
    ] {
        let text = users_with(&format!("[[user]]\nname = \"{name}\"\n"));
        let err = users_error(&text);
        check(&err, "users.toml", line_of(&text, &format!("name = \"{name}\"")), "name", &[fragment]);
    }

    let text = users_with("[[user]]\nname = \"bob\"\nrole = [\"viewer\"]\n");
    check(&users_error(&text), "users.toml", line_of(&text, "role = "), "role", &["unknown field"]);
    let text = users_with("[[role]]\nname = \"r\"\npermissions = [\"/permission/admin/\"]\n");
    check(&users_error(&text), "users.toml", line_of(&text, "admin/\"]"), "permissions", &["trailing"]);
    let text = users_with("[[users]]\nname = \"bob\"\n");
    check(&users_error(&text), "users.toml", line_of(&text, "[[users]]"), "users", &["unknown field"]);
}

fn users_with_bob(line: &str) -> String {
    users_with(&format!("[[user]]\nname = \"bob\"\n{line}\n"))
}

// SPEC B1: a users file with a wrong type is refused at the key.
#[test]
fn users_file_wrong_types() {
    let text = users_with_bob("disabled = \"no\"");
    check(&users_error(&text), "users.toml", line_of(&text, "disabled"), "disabled", &["boolean"]);
    let text = users_with_bob("roles = \"viewer\"");
    check(&users_error(&text), "users.toml", line_of(&text, "roles = \"viewer\""), "roles", &["sequence"]);
}

// ---------------------------------------------------------------------------------------
// B1: the Display form
// ---------------------------------------------------------------------------------------

// SPEC B1: errors display as `file:line:col: key `k`: message`, the column counted in
// characters from 1; an unreadable file names the file only.
#[test]
fn display_form() {
    let text = "# réglés\n[[resource.access_control]]\n  context = \"api\"\n";
    let err = load_error(text);
    let column = "  context = ".chars().count() + 1;
    assert_eq!((err.line, err.column), (3, column));
    assert_eq!(
        err.to_string(),
        format!("deployment.toml:3:{column}: key `context`: a pattern must start with '/' (or be `regex:...`)")
    );

    // Columns count characters, not bytes.
    let text = "[[resource.access_control]]\ncontext = \"/a\"\nscope = [\"read\", \"a b\"]\n";
    let err = Deployment::from_toml_str("rules/é.toml", text).and_then(|d| Policy::compile(&d)).unwrap_err();
    assert_eq!((err.line, err.column), (3, "scope = ".chars().count() + 1));
    assert!(err.to_string().starts_with("rules/é.toml:3:9: key `scope`: `a b` is not a scope token"), "{err}");

    // Files on disk are named by their path.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.toml");
    std::fs::write(
        &path,
        "[[resource.access_control]]\ncontext = \"/a\"\n\n[[resource.access_control]]\ncontext = \"/a\"\n",
    )
    .unwrap();
    let err = Deployment::from_file(&path).and_then(|d| Policy::compile(&d)).unwrap_err();
    let shown = path.display().to_string();
    check(&err, &shown, 5, "context", &["`/a` is as specific as `/a`", &format!("({shown}:1)")]);
    let path = dir.path().join("users.toml");
    std::fs::write(&path, "[[user]]\nname = \"bob\"\npassword = \"bob123\"\n").unwrap();
    let err = tower_secure::config::load_users_file(&path).unwrap_err();
    check(&err, &path.display().to_string(), 3, "password", &["not a PHC password hash"]);

    let missing = std::env::temp_dir().join("tower-secure-no-such-dir").join("deployment.toml");
    let err = Deployment::from_file(&missing).unwrap_err();
    assert_eq!((err.line, err.key.as_deref()), (0, None));
    let shown = missing.display().to_string();
    assert_eq!(err.to_string(), format!("{shown}: {}", err.message));
    assert!(err.message.contains("cannot read"), "{err}");
}

/// Builds a token server from rule-file text (no users, no clients).
fn token_server(text: &str) -> Result<tower_secure::oauth2::TokenServer, ConfigError> {
    let deployment = Deployment::from_toml_str(FILE, text)?;
    tower_secure::oauth2::TokenServer::builder().deployment(&deployment).build()
}

#[track_caller]
fn token_server_error(text: &str) -> ConfigError {
    match token_server(text) {
        Ok(_) => panic!("this token server configuration must be refused:\n{text}"),
        Err(e) => e,
    }
}

const HS_SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==";

// SPEC D1, D3, F2: token-server keys, the whitelist and scope definitions are checked at
// build time, each error at its key.
#[test]
fn token_server_configuration_errors() {
    let server = |key: &str| format!("[oauth2_server]\nissuer = \"http://127.0.0.1\"\n\n[[oauth2_server.key]]\n{key}");
    let good = server(&format!("kid = \"k1\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{HS_SECRET}\"\n"));
    assert!(token_server(&good).is_ok(), "{good}");

    let err = token_server_error("[[resource.access_control]]\ncontext = \"/a\"\n");
    assert!(err.message.contains("[oauth2_server]"), "{err}");
    let err = token_server_error("[oauth2_server]\nissuer = \"http://127.0.0.1\"\n");
    assert!(err.message.contains("[[oauth2_server.key]]"), "{err}");

    let text = server("kid = \"k1\"\nalgorithm = \"RS512\"\nsecret_base64 = \"x\"\n");
    check(&token_server_error(&text), FILE, line_of(&text, "RS512"), "algorithm", &["RS256, ES256, EdDSA or HS256"]);
    let text = server("kid = \"k1\"\nalgorithm = \"HS256\"\nsecret_base64 = \"c2hvcnQ=\"\n");
    check(&token_server_error(&text), FILE, line_of(&text, "c2hvcnQ="), "secret_base64", &["at least 32 bytes"]);
    let text = server("kid = \"k1\"\nalgorithm = \"RS256\"\npem = \"not a key\"\n");
    check(&token_server_error(&text), FILE, line_of(&text, "not a key"), "pem", &["PKCS#8"]);
    let text = server("kid = \"k1\"\nalgorithm = \"ES256\"\npem_file = \"/no/such/key.pem\"\n");
    check(&token_server_error(&text), FILE, line_of(&text, "no/such"), "pem_file", &["cannot read"]);
    // SPEC F18: a file that never ends is refused at the size limit, not read forever.
    let text = server("kid = \"k1\"\nalgorithm = \"ES256\"\npem_file = \"/dev/zero\"\n");
    check(&token_server_error(&text), FILE, line_of(&text, "/dev/zero"), "pem_file", &["16 MiB limit"]);
    let text = server(&format!("kid = \"k1\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{HS_SECRET}\"\n\n[[oauth2_server.key]]\nkid = \"k1\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{HS_SECRET}\"\n"));
    check(&token_server_error(&text), FILE, line_of_nth(&text, "kid = ", 1), "kid", &["two keys"]);
    // SPEC D1: `kid` defaults to the key's RFC 7638 thumbprint, the same at every start;
    // two tables of one key (two equal thumbprints) are refused, two keys are not.
    let keyless =
        |secret: &str| format!("[[oauth2_server.key]]\nalgorithm = \"HS256\"\nsecret_base64 = \"{secret}\"\n");
    let text = server(&keyless(HS_SECRET)["[[oauth2_server.key]]\n".len()..]);
    let kid = |server: tower_secure::oauth2::TokenServer| {
        let claims = serde_json::Map::from_iter([("sub".to_owned(), "alex".into())]);
        let token = server.sign_claims(&claims).unwrap();
        jsonwebtoken::decode_header(&token).unwrap().kid.unwrap()
    };
    let first = kid(token_server(&text).unwrap());
    assert_eq!(first, kid(token_server(&text).unwrap()), "stable across builds");
    assert_eq!(first.len(), 43, "a base64url SHA-256: {first}");
    let other = "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC1vdGhlci1zZWNyZXQ=";
    assert!(token_server(&format!("{text}\n{}", keyless(other))).is_ok(), "two keys, two thumbprints");
    let twice = format!("{text}\n{}", keyless(HS_SECRET));
    check(&token_server_error(&twice), FILE, line_of_nth(&twice, "[[oauth2_server.key]]", 1), "kid", &["two keys"]);

    let text = format!("[scope_validation]\nwhitelist = [\"openid\", \"(unclosed\"]\n\n{good}");
    check(&token_server_error(&text), FILE, line_of(&text, "(unclosed"), "whitelist", &["not a regex"]);
    let text = format!("[[scope]]\nname = \"a b\"\n\n{good}");
    check(&token_server_error(&text), FILE, line_of(&text, "a b"), "name", &["not a scope token"]);
    let text = format!("[scope_validation]\nwhitelisted = [\"x\"]\n\n{good}");
    check(&token_server_error(&text), FILE, line_of(&text, "whitelisted"), "whitelisted", &["unknown field"]);

    // A validating layer's `introspect = true` needs an introspection endpoint.
    let text = "[[oauth2.issuer]]\nissuer = \"https://idp.example.com\"\nintrospect = true\njwks_uri = \"https://idp.example.com/jwks\"\n";
    let deployment = Deployment::from_toml_str(FILE, text).unwrap();
    let Err(err) = SecureLayer::builder().deployment(deployment).build() else {
        panic!("introspect = true without an endpoint must be refused");
    };
    check(&err, FILE, 2, "introspect", &["[oauth2.introspection]"]);
}

// SPEC D1, F2: `[[client]]` tables are checked at load: id syntax, duplicates, secret
// hashes, roles and grant types, each error at its key.
#[test]
fn client_table_errors() {
    use tower_secure::config::load_clients;
    let hash = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$LwR0gKiubpFYBdXhy9LIdt8OMLdqFvTfuyD4TQVjBFk";
    let client =
        |extra: &str| format!("[[role]]\nname = \"r\"\n\n[[client]]\nid = \"app\"\nsecret = \"{hash}\"\n{extra}");
    let clients = load_clients("users.toml", &client("roles = [\"r\"]\n")).unwrap();
    assert_eq!(clients[0].grant_types, tower_secure::config::GrantType::ALL);
    assert_eq!(clients[0].roles, ["r"]);

    let text = client("roles = [\"nope\"]\n");
    check(
        &load_clients("users.toml", &text).unwrap_err(),
        "users.toml",
        line_of(&text, "nope"),
        "roles",
        &["no [[role]]"],
    );
    let text = client("grant_types = [\"implicit\"]\n");
    let err = load_clients("users.toml", &text).unwrap_err();
    check(&err, "users.toml", line_of(&text, "implicit"), "grant_types", &["unknown grant type"]);
    let text = client("grant_types = [\"authorization_code\"]\n");
    let err = load_clients("users.toml", &text).unwrap_err();
    check(&err, "users.toml", line_of(&text, "authorization_code"), "grant_types", &["needs redirect_uris"]);
    let text = client("").replace("id = \"app\"", "id = \"app id\"");
    check(&load_clients("users.toml", &text).unwrap_err(), "users.toml", line_of(&text, "app id"), "id", &["1 to 128"]);
    let text = client("").replace(hash, "plain-secret");
    let err = load_clients("users.toml", &text).unwrap_err();
    check(&err, "users.toml", line_of(&text, "plain-secret"), "secret", &["not a PHC password hash"]);
    let text = format!("{}\n[[client]]\nid = \"app\"\nsecret = \"{hash}\"\n", client(""));
    let err = load_clients("users.toml", &text).unwrap_err();
    check(&err, "users.toml", line_of_nth(&text, "id = \"app\"", 1), "id", &["defined twice"]);
    // The users loader accepts the same file.
    assert!(load_users("users.toml", &client("")).is_ok());
}

/// Builds a layer with users from rule-file text.
fn layer_error(text: &str) -> ConfigError {
    let deployment = Deployment::from_toml_str(FILE, text).unwrap_or_else(|e| panic!("must parse: {e}\n{text}"));
    let users = load_users("users.toml", "").unwrap();
    match SecureLayer::builder().deployment(deployment).user_store(users).build() {
        Ok(_) => panic!("this configuration must be refused:\n{text}"),
        Err(e) => e,
    }
}

// SPEC A8, A9, F16, F2: `[client_cert]` and `[intermediate_cert_validation]` are checked at
// build time, each error at its key.
#[test]
fn client_certificate_configuration_errors() {
    let text = "[client_cert]\nforwarded_header = \"X-Forwarded-Client-Cert\"\n";
    check(&layer_error(text), FILE, 2, "trusted_proxies", &["trusted_proxies"]);
    let text = "[client_cert]\nforwarded_header = \"bad header\"\ntrusted_proxies = [\"127.0.0.1\"]\n";
    check(&layer_error(text), FILE, 2, "forwarded_header", &["not a header name"]);
    let text = "[client_cert]\nforwarded_header = \"Client-Cert\"\ntrusted_proxies = [\"localhost\"]\n";
    check(&layer_error(text), FILE, 3, "trusted_proxies", &["not an IP address"]);
    let text = "[client_cert]\nforwarded_header = \"Client-Cert\"\ntrusted_proxies = [\"127.0.0.1\"]\n";
    assert!(layer_error(text).message.contains("ca_file"));
    let text = "[client_cert]\nforwarded_header = \"Client-Cert\"\ntrusted_proxies = [\"::1\"]\nca_file = \"/no/such/ca.pem\"\n";
    check(&layer_error(text), FILE, 4, "ca_file", &["cannot read"]);

    let allow = |extra: &str| format!("[client_cert]\n\n[intermediate_cert_validation]\nenable = true\n{extra}");
    // SPEC F18: every file the configuration names is read up to a size limit.
    let text =
        "[client_cert]\nforwarded_header = \"Client-Cert\"\ntrusted_proxies = [\"::1\"]\nca_file = \"/dev/zero\"\n";
    check(&layer_error(text), FILE, 4, "ca_file", &["16 MiB limit"]);
    let err = Deployment::from_file("/dev/zero").map(|_| ()).unwrap_err();
    assert!(err.message.contains("16 MiB limit"), "{err}");
    let text = allow("cert_fingerprints = [\"abcd\"]\n");
    check(&layer_error(&text), FILE, 5, "cert_fingerprints", &["SHA-256"]);
    let text = allow("cert_cns = [\"CA\"]\nexempt_contexts = [\"scim2\"]\n");
    check(&layer_error(&text), FILE, 6, "exempt_contexts", &["canonical path"]);
    let text = allow("cert_cns = [\"CA\"]\nexempt_contexts = [\"/a/../b\"]\n");
    check(&layer_error(&text), FILE, 6, "exempt_contexts", &["canonical path"]);
    check(&layer_error(&allow("")), FILE, 4, "enable", &["refuse every certificate"]);

    // The handler needs a user store to look the certificate's user up.
    let deployment = Deployment::from_toml_str(FILE, "[client_cert]\n").unwrap();
    let Err(err) = SecureLayer::builder().deployment(deployment).build() else {
        panic!("[client_cert] without a user store must be refused");
    };
    check(&err, FILE, 1, "client_cert", &["user store"]);
    // With one, it is registered last.
    let deployment = Deployment::from_toml_str(FILE, "[client_cert]\n").unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(load_users("u", "").unwrap()).build().unwrap();
    assert_eq!(layer.handler_order(), vec![("basic".to_owned(), 20), ("client_cert".to_owned(), 10)]);
}

// SPEC F16, F2: the forwarded header's format is configured, never guessed: a forwarded
// header without `forwarded_format`, an unknown format, or a format without a header is a
// load error at its key.
#[test]
fn forwarded_format_missing_unknown_or_alone() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::CertificateParams::default().self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let settings = |format: &str| {
        format!(
            "[client_cert]\nforwarded_header = \"X-Forwarded-Client-Cert\"\n{format}trusted_proxies = [\"127.0.0.1\"]\nca_file = '{}'\n",
            ca_file.display()
        )
    };

    let text = settings("");
    let err = layer_error(&text);
    check(&err, FILE, 2, "forwarded_format", &["forwarded_format", "rfc9440, pem, pem-urlencoded or xfcc"]);

    for unknown in ["PEM", "envoy", "x-forwarded-client-cert", "", "rfc 9440"] {
        let text = settings(&format!("forwarded_format = \"{unknown}\"\n"));
        let err = Deployment::from_toml_str(FILE, &text).unwrap_err();
        check(&err, FILE, 3, "forwarded_format", &["unknown variant", "`pem-urlencoded`", "`xfcc`"]);
    }
    let text = settings("forwarded_format = 9440\n");
    check(&Deployment::from_toml_str(FILE, &text).unwrap_err(), FILE, 3, "forwarded_format", &["string"]);

    let text = "[client_cert]\n\nforwarded_format = \"xfcc\"\n";
    check(&layer_error(text), FILE, 3, "forwarded_format", &["without forwarded_header"]);

    // Control: each format loads.
    for format in ["rfc9440", "pem", "pem-urlencoded", "xfcc"] {
        let text = settings(&format!("forwarded_format = \"{format}\"\n"));
        let deployment = Deployment::from_toml_str(FILE, &text).unwrap();
        let users = load_users("users.toml", "").unwrap();
        assert!(SecureLayer::builder().deployment(deployment).user_store(users).build().is_ok(), "{format}");
    }
}

const JWKS_ISSUER: &str = "[oauth2]\nleeway_seconds = 30\n\n[[oauth2.issuer]]\nissuer = \"https://idp.example.com\"\njwks_uri = \"https://idp.example.com/jwks\"\n";

// SPEC A5, B1: `[oauth2.issuer]` written as one table instead of `[[oauth2.issuer]]` is an
// error at the key `issuer` that says which form to use.
#[test]
fn issuer_written_as_a_single_table() {
    let text = "[oauth2]\nleeway_seconds = 30\n\n[oauth2.issuer]\nissuer = \"https://idp.example.com\"\n";
    let err = Deployment::from_toml_str(FILE, text).expect_err("a single [oauth2.issuer] table must be refused");
    check(&err, FILE, line_of(text, "[oauth2.issuer]"), "issuer", &["use [[oauth2.issuer]]"]);
}

// SPEC A12, A13, A14, B1: the new issuer settings are checked at load, each error at its
// key: `algorithms` names JWS algorithms (never `none`), a key's algorithm must be one of
// them, `tenant_claim` is for opaque subjects, claim names are not empty, and
// `subject_format` is `opaque` or `qualified`.
#[test]
fn issuer_claim_and_algorithm_settings_errors() {
    let issuer = |extra: &str| format!("{JWKS_ISSUER}{extra}\n");
    for good in [
        "algorithms = [\"RS256\", \"PS256\", \"ES256\"]",
        "subject_format = \"qualified\"",
        "tenant_claim = \"tid\"\nsubject_claim = \"oid\"\nroles_claim = \"realm_access.roles\"\nscope_claim = \"scp\"",
    ] {
        let text = issuer(good);
        let deployment = Deployment::from_toml_str(FILE, &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        SecureLayer::builder().deployment(deployment).build().unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
    for (extra, key, fragment) in [
        ("algorithms = [\"none\"]", "algorithms", "`none` is not a JWS algorithm"),
        ("algorithms = [\"RS256\", \"HS257\"]", "algorithms", "`HS257`"),
        ("algorithms = []", "algorithms", "at least one"),
        ("subject_format = \"qualified\"\ntenant_claim = \"tid\"", "tenant_claim", "opaque subjects"),
        ("subject_claim = \"\"", "subject_claim", "name a claim"),
        ("roles_claim = \"\"", "roles_claim", "name a claim"),
        ("scope_claim = \"\"", "scope_claim", "name a claim"),
    ] {
        let text = issuer(extra);
        let needle = extra.lines().last().unwrap_or(extra);
        check(&layer_error(&text), FILE, line_of(&text, needle), key, &[fragment]);
    }
    let text = issuer("subject_format = \"email\"");
    let err = Deployment::from_toml_str(FILE, &text).expect_err("an unknown subject format");
    check(&err, FILE, line_of(&text, "email"), "subject_format", &["opaque", "qualified"]);

    // A configured key's algorithm must be one of the issuer's algorithms.
    let text = format!(
        "[[oauth2.issuer]]\nissuer = \"https://idp.example.com\"\nalgorithms = [\"RS256\"]\n\n[[oauth2.issuer.key]]\nkid = \"h\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{HS_SECRET}\"\n"
    );
    check(&layer_error(&text), FILE, line_of(&text, "algorithm = \"HS256\""), "algorithm", &["issuer's algorithms"]);
}

// SPEC A15, B1: `[oauth2.introspection]` needs the audience its answers must name; the
// error says what to set.
#[test]
fn introspection_needs_an_audience() {
    let base = "[oauth2.introspection]\nendpoint = \"https://idp.example.com/introspect\"\nclient_id = \"api\"\nclient_secret = \"s\"\n";
    check(&layer_error(base), FILE, line_of(base, "endpoint"), "audience", &["needs an audience", "aud"]);
    let text = format!("{base}audience = []\n");
    check(&layer_error(&text), FILE, line_of(&text, "audience"), "audience", &["non-empty"]);
    for good in ["audience = \"my-api\"", "audience = [\"app-1\", \"app-2\"]"] {
        let text = format!("{base}{good}\n");
        let deployment = Deployment::from_toml_str(FILE, &text).unwrap();
        SecureLayer::builder().deployment(deployment).build().unwrap_or_else(|e| panic!("{e}\n{text}"));
    }
}

// SPEC B1: `Debug` prints what `Display` prints, so `main() -> Result<(), Box<dyn Error>>`
// (the README's shape) reports `file:line:column: key `k`: message`, not a struct dump.
#[test]
fn debug_form_is_the_display_form() {
    let text = after_a_good_rule(&rule("api", ""));
    let err = load_error(&text);
    let line = line_of(&text, "\"api\"");
    assert_eq!(format!("{err:?}"), format!("{FILE}:{line}:11: key `context`: {}", err.message));
    let boxed: Box<dyn std::error::Error> = Box::new(err.clone());
    assert_eq!(format!("{boxed:?}"), err.to_string());
    let main_like = || -> Result<(), Box<dyn std::error::Error>> { Err(load_error(&text).into()) };
    assert_eq!(format!("Error: {:?}", main_like().unwrap_err()), format!("Error: {err}"));
}

// SPEC B1: the collecting compile reports every broken rule and scope table, in file
// order, each at its line and key; the first-error compile names the first of them.
#[test]
fn every_error_is_reported_in_file_order() {
    let text = format!(
        "{}{}{}[[scope]]\nname = \"a b\"\n",
        after_a_good_rule(&rule("no-slash", "")),
        rule("/b", "permissions = [\"relative\"]"),
        rule("/c", "http_method = []"),
    );
    let deployment = Deployment::from_toml_str(FILE, &text).unwrap();
    let errors = Policy::compile_reporting_all(&deployment, &tower_secure::policy::BUILT_IN_HANDLERS).unwrap_err();
    let found: Vec<(usize, Option<&str>)> = errors.iter().map(|e| (e.line, e.key.as_deref())).collect();
    let expected = [
        (line_of(&text, "no-slash"), Some("context")),
        (line_of(&text, "relative"), Some("permissions")),
        (line_of(&text, "http_method = []"), Some("http_method")),
        (line_of(&text, "a b"), Some("name")),
    ];
    assert_eq!(found, expected, "{errors:#?}");
    assert_eq!(compile(&text).unwrap_err(), errors[0]);
}

// SPEC A9, F2: `intermediates_file` without `forwarded_header` is refused at its key,
// not ignored.
#[test]
fn intermediates_without_a_forwarded_header_are_refused() {
    let text = "[client_cert]\nintermediates_file = \"intermediates.pem\"\n";
    let deployment = Deployment::from_toml_str("deployment.toml", text).unwrap();
    let users = load_users("users.toml", "").unwrap();
    let error = SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap_err();
    check(&error, "deployment.toml", 2, "intermediates_file", &["without forwarded_header"]);
}
