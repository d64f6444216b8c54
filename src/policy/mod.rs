//! What applies to a request: canonical paths, the `context` pattern language, rules and
//! the index that finds the most specific one, and the
//! scope definitions.
//!
//! Matching knows nothing of credentials: this module imports neither `authn` nor `authz`.

mod implication;
mod index;
mod methods;
mod path;
mod pattern;
mod rule;

use std::collections::HashMap;
use std::sync::Arc;

use http::Method;

pub(crate) use path::request_path;
pub use path::{CanonicalPath, PathError, MAX_PATH_BYTES, MAX_SEGMENTS};
pub use rule::{CrossTenant, Methods, Rule, RuleOrigin, STANDARD_METHODS};

pub(crate) use implication::{scopes_imply_permissions, ScopedRequirement};
pub(crate) use index::LookupError;
use index::RuleIndex;
use pattern::{Pattern, Segment};

use crate::config::{
    ConfigError, CrossTenantConfig, Deployment, RuleConfig, ScopeConfig, SourceMap, Spanned, TokenPermissions,
};
use crate::identity::Permission;

/// The `basic` handler's name, as rules (`allowed_auth_handlers`) and principals
/// (`authenticated_by`) write it.
///
/// ```
/// assert_eq!(tower_secure::policy::BASIC_HANDLER, "basic");
/// ```
pub const BASIC_HANDLER: &str = "basic";
/// The `oauth2` (bearer token) handler's name.
pub const OAUTH2_HANDLER: &str = "oauth2";
/// The `client_cert` handler's name.
pub const CLIENT_CERT_HANDLER: &str = "client_cert";

/// The names of the built-in authentication handlers.
pub const BUILT_IN_HANDLERS: [&str; 3] = [OAUTH2_HANDLER, BASIC_HANDLER, CLIENT_CERT_HANDLER];

/// A scope definition: the permissions it is bound to and the roles that may
/// receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDefinition {
    /// The scope name.
    pub name: String,
    /// Permissions the scope is bound to.
    pub permissions: Vec<Permission>,
    /// Roles that may receive the scope.
    pub roles: Vec<String>,
}

/// The compiled rules of one configuration version: looked up per request, replaced
/// whole on reload.
///
/// ```
/// use http::Method;
/// use tower_secure::config::Deployment;
/// use tower_secure::policy::{CanonicalPath, Policy};
///
/// let deployment = Deployment::from_toml_str("deployment.toml", r#"
///     [[resource.access_control]]
///     context = "/api/**"
///     permissions = ["/permission/admin"]
///
///     [[resource.access_control]]
///     context = "/api/health"
///     secure = false
/// "#)?;
/// let policy = Policy::compile(&deployment)?;
/// let health = CanonicalPath::parse("/api/health")?;
/// assert!(policy.lookup(&Method::GET, &health).is_ok_and(|rule| !rule.is_secure()));
/// let elsewhere = CanonicalPath::parse("/elsewhere")?;
/// assert!(policy.lookup(&Method::GET, &elsewhere).is_ok_and(|rule| rule.is_secure()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Arc<Rule>>,
    index: RuleIndex,
    secure_default: Arc<Rule>,
    scopes: HashMap<String, ScopeDefinition>,
}

impl Policy {
    /// Compiles a deployment, checking handler names against the built-in ones.
    pub fn compile(deployment: &Deployment) -> Result<Self, ConfigError> {
        Self::compile_with_handlers(deployment, &BUILT_IN_HANDLERS)
    }

    /// Compiles a deployment; `allowed_auth_handlers` may only name `handlers`. The first
    /// error in file order refuses it.
    pub fn compile_with_handlers(deployment: &Deployment, handlers: &[&str]) -> Result<Self, ConfigError> {
        Self::compile_reporting_all(deployment, handlers).map_err(first_error)
    }

    /// Compiles a deployment like [`compile_with_handlers`](Self::compile_with_handlers),
    /// but reports every error, in file order: each rule and each `[[scope]]` table is
    /// checked on its own; the checks across rules (ties, the regex set) run once every
    /// rule compiles.
    ///
    /// ```
    /// use tower_secure::config::Deployment;
    /// use tower_secure::policy::{Policy, BUILT_IN_HANDLERS};
    ///
    /// let deployment = Deployment::from_toml_str("deployment.toml", r#"
    ///     [[resource.access_control]]
    ///     context = "no-slash"
    ///
    ///     [[resource.access_control]]
    ///     context = "/a"
    ///     permissions = ["relative"]
    /// "#)?;
    /// let errors = Policy::compile_reporting_all(&deployment, &BUILT_IN_HANDLERS).unwrap_err();
    /// assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 7]);
    /// # Ok::<(), tower_secure::config::ConfigError>(())
    /// ```
    pub fn compile_reporting_all(deployment: &Deployment, handlers: &[&str]) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut rules = Vec::with_capacity(deployment.resource.access_control.len());
        for (id, table) in deployment.resource.access_control.iter().enumerate() {
            match compile_rule(id, table, deployment, handlers) {
                Ok(rule) => rules.push(Arc::new(rule)),
                Err(error) => errors.push(error),
            }
        }
        let (scopes, scope_errors) = scope_definitions_reporting_all(deployment);
        errors.extend(scope_errors);
        let scopes: HashMap<String, ScopeDefinition> = scopes.into_iter().map(|d| (d.name.clone(), d)).collect();
        for rule in &rules {
            if let Err(error) = check_scopes_imply_permissions(rule, deployment, &scopes) {
                errors.push(error);
            }
        }
        if !errors.is_empty() {
            errors.sort_by_key(|e| (e.line, e.column));
            return Err(errors);
        }
        let index = across_rules(&rules, deployment).map_err(|e| vec![e])?;
        Ok(Self { rules, index, secure_default: Arc::new(Rule::secure_default()), scopes })
    }

    /// The rule for a request: the most specific matching rule, or the secure default.
    /// `HEAD` is looked up as `GET`.
    pub fn lookup(&self, method: &Method, path: &CanonicalPath) -> Result<&Arc<Rule>, LookupFailure> {
        let method = if method == Method::HEAD { &Method::GET } else { method };
        match self.index.lookup(&self.rules, method, path) {
            Ok(Some(rule)) => Ok(rule),
            Ok(None) => Ok(&self.secure_default),
            Err(LookupError::MethodNotAllowed) => Err(LookupFailure::MethodNotAllowed),
            Err(LookupError::Ambiguous) => Err(LookupFailure::Ambiguous),
        }
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// The scope definition called `name`.
    pub fn scope(&self, name: &str) -> Option<&ScopeDefinition> {
        self.scopes.get(name)
    }

    /// Every scope definition.
    pub fn scopes(&self) -> impl Iterator<Item = &ScopeDefinition> {
        self.scopes.values()
    }
}

/// The checks across compiled rules: ties, then the index (the regex set as a whole).
fn across_rules(rules: &[Arc<Rule>], deployment: &Deployment) -> Result<RuleIndex, ConfigError> {
    check_ties(rules, deployment)?;
    RuleIndex::build(rules).map_err(|e| {
        // Named at the first `regex:` rule: the set as a whole is what is too large.
        let first_regex = rules.iter().find(|r| matches!(r.pattern, Pattern::Regex(_)));
        let span = first_regex.map_or(0..0, |r| deployment.resource.access_control[r.id].get_ref().context.span());
        deployment.source.error(span, "context", format!("the regex patterns together are too large: {e}"))
    })
}

/// The first of the errors a `*_reporting_all` function found (there is at least one).
fn first_error(errors: Vec<ConfigError>) -> ConfigError {
    errors.into_iter().next().unwrap_or_else(|| ConfigError {
        file: "<policy>".into(),
        line: 0,
        column: 0,
        key: None,
        message: "refused without an error".to_owned(),
    })
}

/// Why [`Policy::lookup`] chose no rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LookupFailure {
    /// The method is not one `all` stands for, and no matching rule names it (405).
    MethodNotAllowed,
    /// Two `regex:` rules of equal rank match the path (a configuration error; 500).
    Ambiguous,
}

fn compile_rule(
    id: usize,
    table: &Spanned<RuleConfig>,
    deployment: &Deployment,
    handlers: &[&str],
) -> Result<Rule, ConfigError> {
    let source = &deployment.source;
    let config = table.get_ref();
    let context = config.context.get_ref();
    let pattern = Pattern::parse(context).map_err(|m| source.error(config.context.span(), "context", m))?;
    let methods = methods::compile_methods(config, source)?;
    let permissions = match &config.permissions {
        None => Vec::new(),
        Some(list) => list
            .get_ref()
            .0
            .iter()
            .map(|p| Permission::parse(p).map_err(|e| source.error(list.span(), "permissions", format!("`{p}`: {e}"))))
            .collect::<Result<_, _>>()?,
    };
    let scopes = match &config.scope {
        None => Vec::new(),
        Some(list) => {
            check_scope_names(&list.get_ref().0).map_err(|m| source.error(list.span(), "scope", m))?;
            list.get_ref().0.clone()
        }
    };
    let allowed_auth_handlers = match &config.allowed_auth_handlers {
        None => None,
        Some(list) => Some(
            check_handlers(&list.get_ref().0, handlers)
                .map_err(|m| source.error(list.span(), "allowed_auth_handlers", m))?,
        ),
    };
    let secure = config.is_secure();
    if let (false, Some(flag)) = (secure, &config.secure) {
        if !permissions.is_empty() || !scopes.is_empty() {
            let message = "an open resource (`secure = false`) cannot require permissions or scopes";
            return Err(source.error(flag.span(), "secure", message));
        }
    }
    let token_permissions = token_permissions(config, &permissions, deployment)?;
    let cross_tenant = match &config.cross_tenant {
        None => CrossTenant::Deny,
        Some(value) => match value.get_ref() {
            CrossTenantConfig::Flag(false) => CrossTenant::Deny,
            CrossTenantConfig::Flag(true) => CrossTenant::Any,
            CrossTenantConfig::Tenants(list) if list.iter().any(|t| t.trim().is_empty()) => {
                return Err(source.error(value.span(), "cross_tenant", "tenant names must not be empty"));
            }
            CrossTenantConfig::Tenants(list) => CrossTenant::Tenants(list.iter().map(|t| t.to_lowercase()).collect()),
        },
    };
    let (line, _) = source.position(table.span().start);
    Ok(Rule {
        id,
        context: context.clone(),
        pattern,
        methods,
        secure,
        permissions,
        permissions_match: config.permissions_match,
        scopes,
        scopes_match: config.scopes_match,
        token_permissions,
        allowed_auth_handlers,
        override_compiled: config.override_compiled,
        cross_tenant,
        origin: RuleOrigin::File { file: source.file().clone(), line },
    })
}

/// `token_permissions`: `check` needs permissions to check.
fn token_permissions(
    config: &RuleConfig,
    permissions: &[Permission],
    deployment: &Deployment,
) -> Result<TokenPermissions, ConfigError> {
    match &config.token_permissions {
        None => Ok(TokenPermissions::Scopes),
        Some(value) if *value.get_ref() == TokenPermissions::Check && permissions.is_empty() => {
            let message = "`check` checks a token user's permissions against the rule's, and this rule names \
                           none: add `permissions` or remove the key";
            Err(deployment.source.error(value.span(), "token_permissions", message))
        }
        Some(value) => Ok(*value.get_ref()),
    }
}

/// A rule whose token callers are judged by scopes alone must not name permissions the
/// scopes' bindings do not imply: a token would pass without them.
fn check_scopes_imply_permissions(
    rule: &Rule,
    deployment: &Deployment,
    scopes: &HashMap<String, ScopeDefinition>,
) -> Result<(), ConfigError> {
    if rule.token_permissions == TokenPermissions::Check {
        return Ok(());
    }
    let required = ScopedRequirement {
        scopes: &rule.scopes,
        scopes_match: rule.scopes_match,
        permissions: &rule.permissions,
        permissions_match: rule.permissions_match,
    };
    scopes_imply_permissions(&required, &|name| scopes.get(name)).map_err(|message| {
        let table = deployment.resource.access_control[rule.id].get_ref();
        let span = table.permissions.as_ref().map_or(0..0, Spanned::span);
        deployment.source.error(span, "permissions", message)
    })
}

/// Scope names are RFC 6749 scope tokens: printable ASCII without space, `"` or `\`.
fn check_scope_names(names: &[String]) -> Result<(), String> {
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
    match names.iter().find(|s| !valid(s)) {
        Some(bad) => Err(format!(
            "`{}` is not a scope token (non-empty, printable, no space, quote or backslash)",
            bad.escape_debug()
        )),
        None if names.is_empty() => Err("an empty scope list requires nothing: leave the key out".to_owned()),
        None => Ok(()),
    }
}

fn check_handlers(names: &[String], known: &[&str]) -> Result<Vec<String>, String> {
    if names.is_empty() {
        return Err("an empty list allows no handler: leave the key out to allow all".to_owned());
    }
    match names.iter().find(|n| !known.contains(&n.as_str())) {
        Some(unknown) => {
            Err(format!("no authentication handler is called `{}` ({})", unknown.escape_debug(), known_list(known)))
        }
        None => Ok(names.to_vec()),
    }
}

fn known_list(known: &[&str]) -> String {
    if known.is_empty() {
        "no handler is registered".to_owned()
    } else {
        format!("registered: {}", known.join(", "))
    }
}

/// Two rules equally specific for the same method that can match the same path are a
/// load error: file order must never decide who gets in.
fn check_ties(rules: &[Arc<Rule>], deployment: &Deployment) -> Result<(), ConfigError> {
    let mut groups: HashMap<_, Vec<&Arc<Rule>>> = HashMap::new();
    for rule in rules {
        let shape = match &rule.pattern {
            Pattern::Segments { segments, rest } => (segments.len(), *rest),
            Pattern::Regex(_) => (0, false),
        };
        groups.entry((rule.rank(), shape)).or_default().push(rule);
    }
    for group in groups.values() {
        // Patterns whose first segments are different literals never overlap, so a rule is
        // compared only with earlier rules of its first literal and with those starting
        // with a wildcard (or regexes): linear for the usual file of many services.
        let mut by_first: HashMap<&str, Vec<&Arc<Rule>>> = HashMap::new();
        let mut open_first: Vec<&Arc<Rule>> = Vec::new();
        let mut earlier_rules: Vec<&Arc<Rule>> = Vec::new();
        for later in group {
            let first = first_literal(later);
            let tied = |e: &&&Arc<Rule>| e.pattern.overlaps(&later.pattern) && e.methods.overlaps(&later.methods);
            let earlier = match first {
                Some(text) => {
                    by_first.get(text).into_iter().flatten().chain(&open_first).filter(tied).min_by_key(|e| e.id)
                }
                None => earlier_rules.iter().find(tied),
            };
            if let Some(earlier) = earlier {
                let table = &deployment.resource.access_control[later.id];
                let message = format!(
                    "`{}` is as specific as `{}` ({}) for the same method: make one more specific or split the methods",
                    later.context, earlier.context, earlier.origin
                );
                return Err(deployment.source.error(table.get_ref().context.span(), "context", message));
            }
            match first {
                Some(text) => by_first.entry(text).or_default().push(later),
                None => open_first.push(later),
            }
            earlier_rules.push(later);
        }
    }
    Ok(())
}

/// The first segment of a structural pattern when it is a literal.
fn first_literal(rule: &Rule) -> Option<&str> {
    match &rule.pattern {
        Pattern::Segments { segments, .. } => match segments.first() {
            Some(Segment::Literal(text)) => Some(text),
            _ => None,
        },
        Pattern::Regex(_) => None,
    }
}

/// The `[[scope]]` tables, checked, in file order.
#[cfg_attr(not(feature = "oauth2-server"), allow(dead_code))]
pub(crate) fn scope_definitions(deployment: &Deployment) -> Result<Vec<ScopeDefinition>, ConfigError> {
    let (scopes, errors) = scope_definitions_reporting_all(deployment);
    if errors.is_empty() {
        Ok(scopes)
    } else {
        Err(first_error(errors))
    }
}

/// The `[[scope]]` tables that check, in file order, and an error for each that does not.
fn scope_definitions_reporting_all(deployment: &Deployment) -> (Vec<ScopeDefinition>, Vec<ConfigError>) {
    let mut scopes: Vec<ScopeDefinition> = Vec::with_capacity(deployment.scopes.len());
    let mut errors = Vec::new();
    let mut names = std::collections::HashSet::new();
    for table in &deployment.scopes {
        let config = table.get_ref();
        let definition = scope_definition(config, &deployment.source).and_then(|definition| {
            if names.insert(definition.name.clone()) {
                Ok(definition)
            } else {
                Err(deployment.source.error(config.name.span(), "name", "this scope is defined twice"))
            }
        });
        match definition {
            Ok(definition) => scopes.push(definition),
            Err(error) => errors.push(error),
        }
    }
    (scopes, errors)
}

fn scope_definition(config: &ScopeConfig, source: &SourceMap) -> Result<ScopeDefinition, ConfigError> {
    let name = config.name.get_ref();
    check_scope_names(std::slice::from_ref(name)).map_err(|m| source.error(config.name.span(), "name", m))?;
    let permissions = config
        .permissions
        .iter()
        .map(|p| Permission::parse(p.get_ref()).map_err(|e| source.error(p.span(), "permissions", e.to_string())))
        .collect::<Result<_, _>>()?;
    Ok(ScopeDefinition { name: name.clone(), permissions, roles: config.roles.clone() })
}
