// Which requested scopes a token gets (SPEC D2-D4): the `ScopeValidator` plug-in point and
// the default, WSO2's role-based validator with a whitelist and `SYSTEM`.

use async_trait::async_trait;
use regex::RegexSet;

use super::OAuthError;
use crate::config::GrantType;
use crate::config::{ConfigError, Deployment};
use crate::identity::Principal;
use crate::policy::{scope_definitions, ScopeDefinition};

/// The scope that asks for every scope the caller may have; never emitted.
pub const SYSTEM_SCOPE: &str = "SYSTEM";

/// What a token request asks for, and for whom.
#[derive(Debug)]
#[non_exhaustive]
pub struct ScopeRequest<'a> {
    /// The grant the token is requested with.
    pub grant_type: GrantType,
    /// The authenticated client.
    pub client_id: &'a str,
    /// The resource owner: the user, or for `client_credentials` the client itself with its
    /// configured roles and their permissions.
    pub subject: &'a Principal,
    /// The requested scopes in request order, without duplicates.
    pub requested: &'a [String],
    /// The role-based validator of the configuration this request is decided with (its
    /// `[[scope]]` and `[scope_validation]` tables, reloaded with the rule file): a custom
    /// validator can start from its answer and so follow reloads.
    pub configured: &'a RoleBasedScopeValidator,
}

/// Decides which requested scopes are granted. The token endpoint adds the configured
/// default scope when the answer is empty.
///
/// A validator that grants what the configuration's role-based validation grants, but
/// only scopes starting with `read:` (reloading the rule file reaches it through
/// [`ScopeRequest::configured`]):
///
/// ```
/// use tower_secure::async_trait;
/// use tower_secure::oauth2::{OAuthError, ScopeRequest, ScopeValidator};
///
/// struct ReadOnly;
///
/// #[async_trait]
/// impl ScopeValidator for ReadOnly {
///     async fn validate(&self, request: &ScopeRequest<'_>) -> Result<Vec<String>, OAuthError> {
///         let granted = request.configured.validate(request).await?;
///         Ok(granted.into_iter().filter(|s| s.starts_with("read:")).collect())
///     }
/// }
/// ```
#[async_trait]
pub trait ScopeValidator: Send + Sync + 'static {
    /// The granted scopes, in the order the response lists them. Leave out what the
    /// subject may not have; return an error only when the decision cannot be made
    /// (`server_error`), never to refuse a scope.
    async fn validate(&self, request: &ScopeRequest<'_>) -> Result<Vec<String>, OAuthError>;
}

/// The default validator, as WSO2's role-based scope validator: each
/// requested scope is granted when whitelisted, or when defined in `[[scope]]` and the
/// subject holds every bound permission and, if roles are bound, one of those roles;
/// undefined scopes are left out. `SYSTEM` adds every defined scope the subject may have.
///
/// ```
/// use tower_secure::config::Deployment;
/// use tower_secure::oauth2::RoleBasedScopeValidator;
///
/// let deployment = Deployment::from_toml_str("deployment.toml", r#"
///     [scope_validation]
///     whitelist = ["openid", "^device_.*", "^public:"]
///
///     [[scope]]
///     name = "internal_identity_mgt_view"
///     permissions = ["/permission/admin/manage/identity/identitymgt/view"]
/// "#)?;
/// let validator = RoleBasedScopeValidator::from_config(&deployment)?;
/// assert!(validator.is_whitelisted("device_42"));
/// assert!(!validator.is_whitelisted("openid_extra"));
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RoleBasedScopeValidator {
    whitelist: RegexSet,
    definitions: Vec<ScopeDefinition>,
}

impl RoleBasedScopeValidator {
    /// The validator for the deployment's `[scope_validation]` and `[[scope]]` tables.
    pub fn from_config(deployment: &Deployment) -> Result<Self, ConfigError> {
        let source = &deployment.source;
        let patterns = &deployment.scope_validation.whitelist;
        for pattern in patterns {
            // Each pattern must compile on its own, so the error can point at it.
            regex::Regex::new(pattern.get_ref())
                .map_err(|e| source.error(pattern.span(), "whitelist", format!("not a regex: {e}")))?;
        }
        // Anchored at both ends: a pattern matches the whole scope name (SPEC D3).
        let anchored = patterns.iter().map(|p| format!(r"\A(?:{})\z", p.get_ref()));
        let whitelist = RegexSet::new(anchored).map_err(|e| {
            let span = patterns.first().map_or(0..0, |p| p.span());
            source.error(span, "whitelist", format!("the patterns do not compile together: {e}"))
        })?;
        Ok(Self { whitelist, definitions: scope_definitions(deployment)? })
    }

    /// True when a whitelist pattern matches the whole scope name.
    pub fn is_whitelisted(&self, scope: &str) -> bool {
        self.whitelist.is_match(scope)
    }

    /// True when the subject may have the scope without asking for it by name: it is
    /// whitelisted, or defined and its bindings hold.
    fn grantable(&self, scope: &str, subject: &Principal) -> bool {
        self.is_whitelisted(scope) || self.definitions.iter().any(|d| d.name == scope && satisfies(subject, d))
    }
}

/// Every bound permission held (the permission tree applies), and one bound role if any.
fn satisfies(subject: &Principal, definition: &ScopeDefinition) -> bool {
    definition.permissions.iter().all(|p| subject.has_permission(p))
        && (definition.roles.is_empty() || definition.roles.iter().any(|r| subject.has_role(r)))
}

#[async_trait]
impl ScopeValidator for RoleBasedScopeValidator {
    async fn validate(&self, request: &ScopeRequest<'_>) -> Result<Vec<String>, OAuthError> {
        let subject = request.subject;
        let mut granted: Vec<String> = request
            .requested
            .iter()
            .filter(|s| s.as_str() != SYSTEM_SCOPE && self.grantable(s, subject))
            .cloned()
            .collect();
        if request.requested.iter().any(|s| s == SYSTEM_SCOPE) {
            for definition in &self.definitions {
                if satisfies(subject, definition) && !granted.contains(&definition.name) {
                    granted.push(definition.name.clone());
                }
            }
        }
        Ok(granted)
    }
}
