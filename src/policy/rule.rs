// A compiled access-control rule and the method sets it applies to.

use std::fmt;
use std::sync::Arc;

use http::Method;

use super::pattern::{Pattern, Specificity};
use crate::config::{MatchMode, TokenPermissions};
use crate::identity::Permission;

/// The methods `http_method = "all"` stands for. Any other method (`TRACE`, `CONNECT`,
/// WebDAV's, made-up ones) only matches a rule that names it, and is refused with 405
/// where none does. A rule names an extension method only after declaring it in
/// `extension_methods`.
pub const STANDARD_METHODS: [Method; 7] =
    [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::OPTIONS];

/// The methods a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// `all`: the standard methods.
    All,
    /// The listed methods (`HEAD` is checked as `GET`, so it is never listed).
    Only(Vec<Method>),
}

impl Methods {
    /// True when the rule applies to `method` (already mapped from `HEAD` to `GET`).
    pub fn contains(&self, method: &Method) -> bool {
        match self {
            Methods::All => STANDARD_METHODS.contains(method),
            Methods::Only(list) => list.contains(method),
        }
    }

    pub(crate) fn overlaps(&self, other: &Methods) -> bool {
        match (self, other) {
            (Methods::Only(a), Methods::Only(b)) => a.iter().any(|m| b.contains(m)),
            _ => true,
        }
    }
}

impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Methods::All => f.write_str("all"),
            Methods::Only(list) => {
                let names: Vec<&str> = list.iter().map(Method::as_str).collect();
                f.write_str(&names.join(","))
            }
        }
    }
}

/// Which callers of other tenants a rule lets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrossTenant {
    /// Only callers of the path's own tenant (the default).
    Deny,
    /// Callers of any tenant.
    Any,
    /// Callers of these tenants (lower case) as well as the path's own.
    Tenants(Vec<String>),
}

impl CrossTenant {
    /// True when a caller of `caller_tenant` may use a resource of `path_tenant`.
    pub fn allows(&self, caller_tenant: &str, path_tenant: &str) -> bool {
        if caller_tenant.eq_ignore_ascii_case(path_tenant) {
            return true;
        }
        match self {
            CrossTenant::Deny => false,
            CrossTenant::Any => true,
            CrossTenant::Tenants(list) => list.iter().any(|t| t.eq_ignore_ascii_case(caller_tenant)),
        }
    }
}

/// Where a rule came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleOrigin {
    /// A `[[resource.access_control]]` table at this file and line.
    File {
        /// The file name.
        file: Arc<str>,
        /// The 1-based line of the table header.
        line: usize,
    },
    /// No rule matched: the secure default (an authenticated caller, nothing more).
    SecureDefault,
}

impl fmt::Display for RuleOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleOrigin::File { file, line } => write!(f, "{file}:{line}"),
            RuleOrigin::SecureDefault => f.write_str("secure default"),
        }
    }
}

/// One compiled access-control rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) id: usize,
    pub(crate) context: String,
    pub(crate) pattern: Pattern,
    pub(crate) methods: Methods,
    pub(crate) secure: bool,
    pub(crate) permissions: Vec<Permission>,
    pub(crate) permissions_match: MatchMode,
    pub(crate) scopes: Vec<String>,
    pub(crate) scopes_match: MatchMode,
    pub(crate) token_permissions: TokenPermissions,
    pub(crate) allowed_auth_handlers: Option<Vec<String>>,
    pub(crate) override_compiled: bool,
    pub(crate) cross_tenant: CrossTenant,
    pub(crate) origin: RuleOrigin,
}

impl Rule {
    pub(crate) fn secure_default() -> Self {
        Rule {
            id: usize::MAX,
            context: "/**".to_owned(),
            pattern: Pattern::Segments { segments: Vec::new(), rest: true },
            methods: Methods::All,
            secure: true,
            permissions: Vec::new(),
            permissions_match: MatchMode::All,
            scopes: Vec::new(),
            scopes_match: MatchMode::All,
            token_permissions: TokenPermissions::Scopes,
            allowed_auth_handlers: None,
            override_compiled: false,
            cross_tenant: CrossTenant::Deny,
            origin: RuleOrigin::SecureDefault,
        }
    }

    /// The `context` pattern as written.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// The methods the rule applies to.
    pub fn methods(&self) -> &Methods {
        &self.methods
    }

    /// `false` when anonymous callers may pass.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// Required permissions.
    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    /// Whether all or any of [`Rule::permissions`] must be held.
    pub fn permissions_match(&self) -> MatchMode {
        self.permissions_match
    }

    /// Required scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Whether all or any of [`Rule::scopes`] must be held.
    pub fn scopes_match(&self) -> MatchMode {
        self.scopes_match
    }

    /// Whether a token caller is judged by the rule's scopes alone or also by its user's
    /// permissions.
    pub fn token_permissions(&self) -> TokenPermissions {
        self.token_permissions
    }

    /// The handlers allowed to authenticate, or `None` for all.
    pub fn allowed_auth_handlers(&self) -> Option<&[String]> {
        self.allowed_auth_handlers.as_deref()
    }

    /// True when this rule replaces a handler's compile-time rule.
    pub fn overrides_compiled(&self) -> bool {
        self.override_compiled
    }

    /// Which callers of other tenants are let in.
    pub fn cross_tenant(&self) -> &CrossTenant {
        &self.cross_tenant
    }

    /// Where the rule came from.
    pub fn origin(&self) -> &RuleOrigin {
        &self.origin
    }

    pub(crate) fn rank(&self) -> (Specificity, bool) {
        (self.pattern.specificity(), matches!(self.methods, Methods::Only(_)))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.methods, self.context, self.origin)
    }
}
