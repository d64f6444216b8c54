//! The runtime side of the `#[secure]` attribute: the rule a handler carries,
//! the guard extractor the attribute inserts as the handler's first argument, the
//! link-time registry the policy listing reads, and the check, when a layer is
//! built, that no handler rule lets a token skip its permissions.
//!
//! The items here are what the attribute expands to; write `#[tower_secure::secure(...)]`
//! rather than using them directly.

use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::request::Parts;

use crate::authz::Requirements;
use crate::config::{ConfigError, MatchMode, TokenPermissions};
use crate::error::AuthError;
use crate::identity::Permission;
use crate::layer::AuthContext;
use crate::policy::{scopes_imply_permissions, Policy, ScopedRequirement};

/// A handler's own rule, written by `#[secure(...)]`.
#[derive(Debug)]
pub struct HandlerRule {
    handler: &'static str,
    module: &'static str,
    file: &'static str,
    line: u32,
    column: u32,
    scopes: &'static [&'static str],
    scopes_match: MatchMode,
    permissions: &'static [&'static str],
    permissions_match: MatchMode,
    token_permissions: TokenPermissions,
    path: Option<&'static str>,
    method: Option<&'static str>,
    /// The permissions parsed once (the attribute already checked their syntax).
    parsed: OnceLock<Result<Vec<Permission>, String>>,
}

impl HandlerRule {
    /// The rule as the attribute writes it.
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn new(
        handler: &'static str,
        module: &'static str,
        file: &'static str,
        line: u32,
        column: u32,
        scopes: &'static [&'static str],
        scopes_match: MatchMode,
        permissions: &'static [&'static str],
        permissions_match: MatchMode,
        token_permissions: TokenPermissions,
        path: Option<&'static str>,
        method: Option<&'static str>,
    ) -> Self {
        Self {
            handler,
            module,
            file,
            line,
            column,
            scopes,
            scopes_match,
            permissions,
            permissions_match,
            token_permissions,
            path,
            method,
            parsed: OnceLock::new(),
        }
    }

    /// The handler's name.
    pub fn handler(&self) -> &'static str {
        self.handler
    }

    /// The module the handler is in.
    pub fn module(&self) -> &'static str {
        self.module
    }

    /// Where the attribute is: `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }

    /// Required scopes.
    pub fn scopes(&self) -> &'static [&'static str] {
        self.scopes
    }

    /// Whether all or any of the scopes must be held.
    pub fn scopes_match(&self) -> MatchMode {
        self.scopes_match
    }

    /// Required permissions.
    pub fn permissions(&self) -> &'static [&'static str] {
        self.permissions
    }

    /// Whether all or any of the permissions must be held.
    pub fn permissions_match(&self) -> MatchMode {
        self.permissions_match
    }

    /// Whether a token caller is judged by the scopes alone or also by its user's
    /// permissions (`token_permissions = "check"`).
    pub fn token_permissions(&self) -> TokenPermissions {
        self.token_permissions
    }

    /// The route the handler serves, when the attribute names it (`path = "..."`): used by
    /// the policy listing to show which runtime rule meets it.
    pub fn path(&self) -> Option<&'static str> {
        self.path
    }

    /// The method the handler serves, when the attribute names it.
    pub fn method(&self) -> Option<&'static str> {
        self.method
    }

    fn parsed_permissions(&self) -> Result<&[Permission], &str> {
        let parsed = self.parsed.get_or_init(|| {
            self.permissions.iter().map(|p| Permission::parse(p).map_err(|e| format!("`{p}`: {e}"))).collect()
        });
        parsed.as_deref().map_err(String::as_str)
    }
}

/// `#[secure] module::handler (scope a; permissions any of /p, /q)`: the handler and what
/// it requires, as the audit log names a refusal by it.
impl fmt::Display for HandlerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#[secure] {}::{} (", self.module, self.handler)?;
        let scopes = requirement("scope", self.scopes, self.scopes_match);
        let permissions = requirement("permission", self.permissions, self.permissions_match);
        let required: Vec<String> = scopes.into_iter().chain(permissions).collect();
        write!(f, "{})", required.join("; "))
    }
}

/// `scope a`, `scopes all of a, b` or `scopes any of a, b`; `None` for an empty list.
fn requirement(kind: &str, items: &[&str], mode: MatchMode) -> Option<String> {
    match (items, mode) {
        ([], _) => None,
        ([one], _) => Some(format!("{kind} {one}")),
        (_, MatchMode::All) => Some(format!("{kind}s all of {}", items.join(", "))),
        (_, MatchMode::Any) => Some(format!("{kind}s any of {}", items.join(", "))),
    }
}

/// An entry of the link-time registry of handler rules.
#[doc(hidden)]
#[derive(Debug)]
pub struct RegisteredRule(pub &'static HandlerRule);

inventory::collect!(RegisteredRule);

/// Every `#[secure]` handler linked into this program, in a stable order (module, then
/// handler name).
pub fn handler_rules() -> Vec<&'static HandlerRule> {
    let mut rules: Vec<&'static HandlerRule> = inventory::iter::<RegisteredRule>.into_iter().map(|r| r.0).collect();
    rules.sort_by_key(|r| (r.module, r.handler, r.line));
    rules
}

/// Names the rule of one handler; the attribute implements it on a hidden type.
#[doc(hidden)]
pub trait RuleOf: Send + Sync + 'static {
    /// The handler's rule.
    fn rule() -> &'static HandlerRule;
}

/// The guard `#[secure]` inserts as a handler's first argument: it checks the handler's
/// rule before any other extractor reads the request.
///
/// - no [`SecureLayer`](crate::SecureLayer) in front: 500, logged (fails closed);
/// - the runtime rule that applied has `override = true`: the runtime rule decided alone;
/// - otherwise the handler's rule must hold too (deny wins): an anonymous caller gets 401,
///   a caller lacking a scope or permission 403, exactly as the layer answers.
#[doc(hidden)]
pub struct Guard<R>(PhantomData<fn() -> R>);

impl<R> std::fmt::Debug for Guard<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Guard")
    }
}

impl<S: Send + Sync, R: RuleOf> FromRequestParts<S> for Guard<R> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let rule = R::rule();
        let Some(context) = parts.extensions.get::<AuthContext>() else {
            tracing::error!(target: crate::AUDIT_TARGET, handler = rule.handler, "#[secure] handler reached without SecureLayer: refusing");
            return Err(AuthError::internal("SecureLayer missing").into_response());
        };
        if context.overrides_compiled() {
            return Ok(Guard(PhantomData));
        }
        let permissions = match rule.parsed_permissions() {
            Ok(permissions) => permissions,
            Err(reason) => {
                tracing::error!(target: crate::AUDIT_TARGET, handler = rule.handler, reason, "#[secure] rule does not parse: refusing");
                return Err(AuthError::internal("handler rule does not parse").into_response());
            }
        };
        let required = Requirements {
            scopes: rule.scopes,
            scopes_match: rule.scopes_match,
            permissions,
            permissions_match: rule.permissions_match,
            token_permissions: rule.token_permissions,
        };
        match context.check_handler_rule(parts, rule, rule.handler, &required) {
            Ok(()) => Ok(Guard(PhantomData)),
            Err(response) => Err(response.map(axum::body::Body::from)),
        }
    }
}

/// Refuses a layer whose scope definitions leave a `#[secure]` handler rule open to tokens
/// without its permissions: the rule names scopes and permissions, the scopes'
/// bindings (known only now) do not imply the permissions, and it does not say
/// `token_permissions = "check"`. Every handler linked into the program is checked, as any
/// layer may serve it; the error names the attribute's file and line.
pub(crate) fn check_handler_rules(policy: &Policy) -> Result<(), ConfigError> {
    for rule in handler_rules() {
        if rule.token_permissions == TokenPermissions::Check {
            continue;
        }
        // A rule that does not parse is refused by its guard on every request.
        let Ok(permissions) = rule.parsed_permissions() else { continue };
        let required = ScopedRequirement {
            scopes: rule.scopes,
            scopes_match: rule.scopes_match,
            permissions,
            permissions_match: rule.permissions_match,
        };
        scopes_imply_permissions(&required, &|name| policy.scope(name)).map_err(|message| ConfigError {
            file: rule.file.into(),
            line: rule.line as usize,
            column: rule.column as usize,
            key: Some("scope".to_owned()),
            message: format!("#[secure] on `{}`: {message}", rule.handler),
        })?;
    }
    Ok(())
}
