//! What an authenticated caller may do: the tenant check (SPEC C5), the rule's
//! permissions and scopes (SPEC C1, C2, C4) and the [`AuthorizationHandler`] trait for
//! plugins, which all must allow (deny wins, SPEC C6).

use async_trait::async_trait;
use http::request::Parts;

use crate::config::MatchMode;
use crate::error::AuthError;
use crate::identity::{Principal, SUPER_TENANT};
use crate::policy::{CanonicalPath, Policy, Rule};

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
/// use async_trait::async_trait;
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

/// The built-in checks, in order: tenant, then scopes or permissions.
pub(crate) fn check_rule(policy: &Policy, request: &AuthorizationRequest<'_>) -> Result<(), AuthError> {
    check_tenant(request)?;
    let (rule, principal) = (request.rule, request.principal);
    if !rule.scopes().is_empty() {
        check_scopes(policy, rule, principal)?;
        // A token's scopes were issued against its user's permissions: not re-checked
        // (SPEC C2). Any other caller must also hold the rule's own permissions (C1).
        if principal.scopes().is_some() {
            return Ok(());
        }
    }
    check_permissions(rule, principal)
}

/// Only a leading `/t/{tenant}` names a tenant; other paths belong to the super tenant.
/// An unknown tenant answers exactly like a forbidden one (SPEC C5).
fn check_tenant(request: &AuthorizationRequest<'_>) -> Result<(), AuthError> {
    let path_tenant = request.path.tenant().unwrap_or(SUPER_TENANT);
    if request.rule.cross_tenant().allows(request.principal.name().tenant(), path_tenant) {
        Ok(())
    } else {
        Err(AuthError::forbidden("caller belongs to another tenant"))
    }
}

/// All (or any) permissions must be covered by the caller's permission tree (SPEC C1).
fn check_permissions(rule: &Rule, principal: &Principal) -> Result<(), AuthError> {
    let required = rule.permissions();
    if required.is_empty() {
        return Ok(());
    }
    let held = |p| principal.has_permission(p);
    let allowed = match rule.permissions_match() {
        MatchMode::All => required.iter().all(held),
        MatchMode::Any => required.iter().any(held),
    };
    if allowed {
        Ok(())
    } else {
        Err(AuthError::forbidden("missing permission"))
    }
}

/// SPEC C2: a token caller must carry the scopes (its user's permissions are not
/// re-checked); any other caller is judged by the permissions each scope is bound to
/// (SPEC C4), and a scope without a permission binding denies.
fn check_scopes(policy: &Policy, rule: &Rule, principal: &Principal) -> Result<(), AuthError> {
    let holds = |scope: &String| match principal.scopes() {
        Some(token_scopes) => token_scopes.iter().any(|s| s == scope),
        None => policy.scope(scope).is_some_and(|definition| {
            !definition.permissions.is_empty() && definition.permissions.iter().all(|p| principal.has_permission(p))
        }),
    };
    let allowed = match rule.scopes_match() {
        MatchMode::All => rule.scopes().iter().all(holds),
        MatchMode::Any => rule.scopes().iter().any(holds),
    };
    match (allowed, principal.scopes()) {
        (true, _) => Ok(()),
        (false, Some(_)) => Err(AuthError::insufficient_scope(rule.scopes())),
        (false, None) => Err(AuthError::forbidden("missing scope")),
    }
}
