//! A realistic rule set (the quickstart's rules and the shapes `tests/rules_and_paths.rs`
//! uses), written once as data: [`rules_toml`] turns it into the rule file the layer
//! loads, and [`reference_lookup`] is an independent, brute-force implementation of the
//! README's "most specific rule wins" that the rule index is compared with.

use std::cmp::Reverse;
use std::sync::OnceLock;

use crate::fixtures::{VIEW, VIEW_SCOPE};

/// Which callers of other tenants a rule admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tenants {
    /// Only the path's own tenant.
    Own,
    /// Any tenant.
    Any,
    /// The path's own and these.
    These(&'static [&'static str]),
}

/// One `[[resource.access_control]]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefRule {
    /// `context`.
    pub context: &'static str,
    /// `http_method`; `None` is `all`.
    pub methods: Option<&'static [&'static str]>,
    /// `secure`.
    pub secure: bool,
    /// `permissions`.
    pub permissions: &'static [&'static str],
    /// `permissions_match = "any"`.
    pub permissions_any: bool,
    /// `scope`.
    pub scopes: &'static [&'static str],
    /// `scopes_match = "any"`.
    pub scopes_any: bool,
    /// `allowed_auth_handlers`; `None` is all.
    pub handlers: Option<&'static [&'static str]>,
    /// `cross_tenant`.
    pub tenants: Tenants,
}

const fn rule(context: &'static str) -> RefRule {
    RefRule {
        context,
        methods: None,
        secure: true,
        permissions: &[],
        permissions_any: false,
        scopes: &[],
        scopes_any: false,
        handlers: None,
        tenants: Tenants::Own,
    }
}

const fn open(context: &'static str) -> RefRule {
    RefRule { secure: false, ..rule(context) }
}

const ADMIN: &[&str] = &["/permission/admin"];
const VIEW_ONLY: &[&str] = &[VIEW];

/// The rules, in file order.
pub const RULES: &[RefRule] = &[
    RefRule { methods: Some(&["GET"]), ..open("/api/health") },
    RefRule {
        methods: Some(&["GET"]),
        scopes: &[VIEW_SCOPE],
        permissions: VIEW_ONLY,
        ..rule("/api/users/v1/{user_id}/challenges")
    },
    RefRule { permissions: ADMIN, handlers: Some(&["basic"]), ..rule("/api/admin/**") },
    RefRule { permissions: ADMIN, ..rule("/api/**") },
    rule("/api/me"),
    RefRule { scopes: &[VIEW_SCOPE], ..rule("/api/view") },
    RefRule { scopes: &[VIEW_SCOPE, "openid"], scopes_any: true, ..rule("/api/view-any") },
    RefRule { permissions: VIEW_ONLY, ..rule("/api/perm") },
    RefRule { permissions: &["/permission/admin/login", VIEW], permissions_any: true, ..rule("/api/perm-any") },
    RefRule { handlers: Some(&["oauth2"]), ..rule("/api/bearer-only") },
    RefRule { handlers: Some(&["basic"]), ..rule("/api/basic-only") },
    RefRule { handlers: Some(&["client_cert"]), ..rule("/api/cert-only") },
    RefRule { methods: Some(&["GET"]), ..open("/api/reports") },
    RefRule { permissions: ADMIN, ..rule("/api/reports") },
    RefRule { methods: Some(&["POST", "PUT"]), ..open("/api/export/{x}") },
    RefRule { permissions: ADMIN, ..rule("/api/export/{x}") },
    RefRule { permissions: VIEW_ONLY, ..rule("/api/users/{id}") },
    open("/api/users/me"),
    open("/api/users/{id}/{part}"),
    RefRule { permissions: VIEW_ONLY, ..rule("/api/users/{id}/roles") },
    open("/public/**"),
    open("/docs/*"),
    open("/files/*/meta"),
    open("regex:/v[0-9]+/items"),
    open("/Mixed/{x}/Case"),
    open("/open"),
    open("/"),
    RefRule { permissions: VIEW_ONLY, tenants: Tenants::These(&["example.com"]), ..rule("/scim2/**") },
    RefRule { tenants: Tenants::Any, ..rule("/shared/**") },
    RefRule { methods: Some(&["TRACE"]), ..open("/trace-me") },
    RefRule { methods: Some(&["GET", "PROPFIND"]), ..open("/items") },
];

fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// [`RULES`] as `[[resource.access_control]]` tables.
pub fn rules_toml() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = String::new();
        for r in RULES {
            text.push_str(&format!("[[resource.access_control]]\ncontext = \"{}\"\n", r.context));
            if let Some(methods) = r.methods {
                text.push_str(&format!("http_method = {}\n", list(methods)));
                // Methods outside the standard ones must be declared (SPEC F19).
                let extensions: Vec<&str> = methods
                    .iter()
                    .copied()
                    .filter(|m| !STANDARD.contains(m) && !["TRACE", "CONNECT"].contains(m))
                    .collect();
                if !extensions.is_empty() {
                    text.push_str(&format!("extension_methods = {}\n", list(&extensions)));
                }
            }
            if !r.secure {
                text.push_str("secure = false\n");
            }
            if !r.permissions.is_empty() {
                text.push_str(&format!("permissions = {}\n", list(r.permissions)));
            }
            if r.permissions_any {
                text.push_str("permissions_match = \"any\"\n");
            }
            if !r.scopes.is_empty() {
                text.push_str(&format!("scope = {}\n", list(r.scopes)));
            }
            if r.scopes_any {
                text.push_str("scopes_match = \"any\"\n");
            }
            if let Some(handlers) = r.handlers {
                text.push_str(&format!("allowed_auth_handlers = {}\n", list(handlers)));
            }
            match r.tenants {
                Tenants::Own => {}
                Tenants::Any => text.push_str("cross_tenant = true\n"),
                Tenants::These(t) => text.push_str(&format!("cross_tenant = {}\n", list(t))),
            }
            text.push('\n');
        }
        text
    })
}

/// The methods `all` stands for.
pub const STANDARD: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

impl RefRule {
    fn applies_to(&self, method: &str) -> bool {
        match self.methods {
            None => STANDARD.contains(&method),
            Some(list) => list.contains(&method),
        }
    }

    /// Matches a decoded, canonical path given as its segments.
    pub fn matches(&self, segments: &[&str]) -> bool {
        if let Some(regex) = self.context.strip_prefix("regex:") {
            // The one regex rule, matched by hand: `/v[0-9]+/items`, anchored.
            assert_eq!(regex, "/v[0-9]+/items", "the reference knows only this regex");
            return matches!(segments, [v, "items"] if v.len() > 1 && v.starts_with('v') && v[1..].bytes().all(|b| b.is_ascii_digit()));
        }
        let (fixed, rest) = self.shape();
        if segments.len() < fixed.len() || (!rest && segments.len() != fixed.len()) {
            return false;
        }
        fixed.iter().zip(segments).all(|(pattern, actual)| is_wildcard(pattern) || pattern == actual)
    }

    /// The fixed segments and whether an any-rest tail follows.
    fn shape(&self) -> (Vec<&'static str>, bool) {
        let body = self.context.trim_start_matches('/');
        let mut parts: Vec<&'static str> = if body.is_empty() { Vec::new() } else { body.split('/').collect() };
        let rest = matches!(parts.last(), Some(&"**") | Some(&"*"));
        if rest {
            parts.pop();
        }
        (parts, rest)
    }

    /// README: structural before `regex:`; more literal segments; no any-rest tail; fewer
    /// wildcards (the tail counts as one); a method-specific rule before `all`.
    fn rank(&self) -> ((bool, usize, bool, Reverse<usize>), bool) {
        let specific = self.methods.is_some();
        if self.context.starts_with("regex:") {
            return ((false, 0, false, Reverse(0)), specific);
        }
        let (fixed, rest) = self.shape();
        let wildcards = fixed.iter().filter(|p| is_wildcard(p)).count();
        ((true, fixed.len() - wildcards, !rest, Reverse(wildcards + usize::from(rest))), specific)
    }
}

fn is_wildcard(pattern: &str) -> bool {
    pattern == "*" || (pattern.starts_with('{') && pattern.ends_with('}'))
}

/// What the reference decides for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefLookup {
    /// This rule applies.
    Rule(&'static RefRule),
    /// No rule matches: an authenticated caller, nothing more.
    SecureDefault,
    /// A method outside `all` that no matching rule names: 405.
    MethodNotAllowed,
}

/// The most specific rule of [`RULES`] for `method` and the segments of a canonical path,
/// by brute force. `HEAD` is looked up as `GET`.
pub fn reference_lookup(method: &str, segments: &[&str]) -> RefLookup {
    let method = if method == "HEAD" { "GET" } else { method };
    let best = RULES.iter().filter(|r| r.applies_to(method) && r.matches(segments)).max_by_key(|r| r.rank());
    if let Some(best) = best {
        let ties = RULES.iter().filter(|r| r.applies_to(method) && r.matches(segments) && r.rank() == best.rank());
        assert_eq!(ties.count(), 1, "the fixture rules must have no ties ({})", best.context);
        return RefLookup::Rule(best);
    }
    if STANDARD.contains(&method) {
        RefLookup::SecureDefault
    } else {
        RefLookup::MethodNotAllowed
    }
}

impl RefLookup {
    /// True when an anonymous caller is refused.
    pub fn is_secure(&self) -> bool {
        match self {
            RefLookup::Rule(rule) => rule.secure,
            RefLookup::SecureDefault | RefLookup::MethodNotAllowed => true,
        }
    }
}
