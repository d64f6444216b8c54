//! What an authenticated caller may do: the tenant check, the rule's
//! permissions and scopes and the [`AuthorizationHandler`] trait for
//! plugins, which all must allow (deny wins).

use async_trait::async_trait;
use http::request::Parts;

use crate::config::{MatchMode, TokenPermissions};
use crate::error::AuthError;
use crate::identity::{Permission, Principal, SUPER_TENANT};
use crate::policy::{CanonicalPath, Policy, Rule, ScopeDefinition};

/// What an authorization handler decides on.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct AuthorizationRequest<'a> {
    /// The request head.
    pub request: &'a Parts,
    /// The canonical path the rule was looked up with.
    pub path: &'a CanonicalPath,
    /// The rule that applies.
    pub rule: &'a Rule,
    /// The authenticated caller.
    pub principal: &'a Principal,
}

/// An authorization plugin. Runs after the built-in checks passed; any plugin's error
/// refuses the request (deny wins).
///
/// ```
/// use tower_secure::async_trait;
/// use tower_secure::authz::{AuthorizationHandler, AuthorizationRequest};
/// use tower_secure::AuthError;
///
/// /// Writes only during office hours... for robots, never.
/// struct NoRobotWrites;
///
/// #[async_trait]
/// impl AuthorizationHandler for NoRobotWrites {
///     fn name(&self) -> &str {
///         "no_robot_writes"
///     }
///     async fn authorize(&self, req: &AuthorizationRequest<'_>) -> Result<(), AuthError> {
///         let write = req.request.method != http::Method::GET;
///         if write && req.principal.has_role("robot") {
///             return Err(AuthError::forbidden("robots may not write"));
///         }
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait AuthorizationHandler: Send + Sync + 'static {
    /// A name for the audit log.
    fn name(&self) -> &str;

    /// `Ok(())` to allow; an error (usually [`AuthError::forbidden`]) to refuse.
    async fn authorize(&self, request: &AuthorizationRequest<'_>) -> Result<(), AuthError>;
}

/// The rule's own requirements, the tenant check first.
pub(crate) fn check_rule(policy: &Policy, request: &AuthorizationRequest<'_>) -> Result<(), AuthError> {
    check_tenant(request)?;
    let rule = request.rule;
    let required = Requirements {
        scopes: rule.scopes(),
        scopes_match: rule.scopes_match(),
        permissions: rule.permissions(),
        permissions_match: rule.permissions_match(),
        token_permissions: rule.token_permissions(),
    };
    check_requirements(&required, request.principal, &|name| policy.scope(name))
}

/// What a rule requires: the rule file's or a handler's `#[secure]` (one check serves both).
pub(crate) struct Requirements<'a, S> {
    pub(crate) scopes: &'a [S],
    pub(crate) scopes_match: MatchMode,
    pub(crate) permissions: &'a [Permission],
    pub(crate) permissions_match: MatchMode,
    pub(crate) token_permissions: TokenPermissions,
}

/// Scopes, then permissions. A token's scopes were issued against its user's permissions:
/// not re-checked, unless the rule says `token_permissions = "check"`. Any other
/// caller must also hold the permissions (C1).
pub(crate) fn check_requirements<'d, S: AsRef<str>>(
    required: &Requirements<'_, S>,
    principal: &Principal,
    scope_definition: &dyn Fn(&str) -> Option<&'d ScopeDefinition>,
) -> Result<(), AuthError> {
    if !required.scopes.is_empty() {
        check_scopes(required, principal, scope_definition)?;
        if principal.scopes().is_some() && required.token_permissions == TokenPermissions::Scopes {
            return Ok(());
        }
    }
    check_permissions(required, principal)
}

/// Only a leading `/t/{tenant}` names a tenant; other paths belong to the super tenant.
/// An unknown tenant answers exactly like a forbidden one.
fn check_tenant(request: &AuthorizationRequest<'_>) -> Result<(), AuthError> {
    let path_tenant = request.path.tenant().unwrap_or(SUPER_TENANT);
    if request.rule.cross_tenant().allows(request.principal.name().tenant(), path_tenant) {
        Ok(())
    } else {
        Err(AuthError::forbidden("caller belongs to another tenant"))
    }
}

/// All (or any) permissions must be covered by the caller's permission tree.
fn check_permissions<S>(required: &Requirements<'_, S>, principal: &Principal) -> Result<(), AuthError> {
    if required.permissions.is_empty() {
        return Ok(());
    }
    let held = |p| principal.has_permission(p);
    let allowed = match required.permissions_match {
        MatchMode::All => required.permissions.iter().all(held),
        MatchMode::Any => required.permissions.iter().any(held),
    };
    if allowed {
        Ok(())
    } else {
        Err(AuthError::forbidden("missing permission"))
    }
}

/// A token caller must carry the scopes (its user's permissions are not
/// re-checked); any other caller is judged by the permissions each scope is bound to,
/// and a scope without a permission binding denies.
fn check_scopes<'d, S: AsRef<str>>(
    required: &Requirements<'_, S>,
    principal: &Principal,
    scope_definition: &dyn Fn(&str) -> Option<&'d ScopeDefinition>,
) -> Result<(), AuthError> {
    let holds = |scope: &S| match principal.scopes() {
        Some(token_scopes) => token_scopes.iter().any(|s| s == scope.as_ref()),
        None => scope_definition(scope.as_ref()).is_some_and(|definition| {
            !definition.permissions.is_empty() && definition.permissions.iter().all(|p| principal.has_permission(p))
        }),
    };
    let allowed = match required.scopes_match {
        MatchMode::All => required.scopes.iter().all(holds),
        MatchMode::Any => required.scopes.iter().any(holds),
    };
    match (allowed, principal.scopes()) {
        (true, _) => Ok(()),
        (false, Some(_)) => {
            let names: Vec<String> = required.scopes.iter().map(|s| s.as_ref().to_owned()).collect();
            Err(AuthError::insufficient_scope(&names))
        }
        (false, None) => Err(AuthError::forbidden("missing scope")),
    }
}
