//! The effective policy, listed: every runtime rule with where it came from,
//! every `#[secure]` handler linked into the program, which runtime rule meets each
//! handler's route and whether it overrides the handler's rule, and the order in which
//! authentication handlers are asked. Printable as a table and as JSON, without serving.

use std::fmt;
use std::sync::Arc;

use http::Method;
use serde::Serialize;

use crate::config::{MatchMode, TokenPermissions};
use crate::policy::{CanonicalPath, LookupFailure, PathError, Policy, Rule};
use crate::secure_attr::{handler_rules, HandlerRule};
use crate::SecureLayer;

/// The effective policy of a layer and of the handlers linked into this program.
///
/// Handler rules are collected at link time, so list them from the program that holds the
/// handlers (for example behind a `--check-policy` flag); the `tower-secure check` command
/// lists and checks a rule file on its own.
///
/// ```
/// use tower_secure::config::Deployment;
/// use tower_secure::{PolicyListing, SecureLayer};
///
/// let deployment = Deployment::from_toml_str("deployment.toml", r#"
///     [[resource.access_control]]
///     context = "/api/health"
///     secure = false
/// "#)?;
/// let layer = SecureLayer::builder().deployment(deployment).build()?;
/// let listing = PolicyListing::new(&layer);
/// assert_eq!(listing.rules[0].origin, "deployment.toml:2");
/// assert!(listing.to_string().contains("/api/health"));
/// assert_eq!(listing.to_json()["rules"][0]["secure"], false);
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PolicyListing {
    /// The runtime rules, in file order.
    pub rules: Vec<ListedRule>,
    /// The `#[secure]` handlers linked into this program.
    pub handlers: Vec<ListedHandler>,
    /// Authentication handlers with their priorities, in the order they are asked.
    pub handler_order: Vec<(String, i32)>,
}

/// One runtime rule.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ListedRule {
    /// `file:line` of its table.
    pub origin: String,
    /// `all` or the methods.
    pub methods: String,
    /// The path pattern.
    pub context: String,
    /// `false` when anonymous callers pass.
    pub secure: bool,
    /// Required scopes and whether all or any.
    pub scopes: Vec<String>,
    /// `all` or `any`.
    pub scopes_match: &'static str,
    /// Required permissions.
    pub permissions: Vec<String>,
    /// `all` or `any`.
    pub permissions_match: &'static str,
    /// `scopes` (a token caller is judged by its scopes alone) or `check` (and by its
    /// user's permissions).
    pub token_permissions: &'static str,
    /// Allowed authentication handlers; `None` for all.
    pub allowed_auth_handlers: Option<Vec<String>>,
    /// `override = true`: replaces the rule of the handler it meets.
    pub overrides_handler_rules: bool,
    /// The handlers (with a declared route) whose rule this one replaces.
    pub overrides: Vec<String>,
}

/// One `#[secure]` handler.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ListedHandler {
    /// `module::handler`.
    pub handler: String,
    /// `file:line` of the attribute.
    pub origin: String,
    /// The route, when the attribute declares it (`path = "..."`, `method = "..."`).
    pub route: Option<String>,
    /// Required scopes.
    pub scopes: Vec<String>,
    /// `all` or `any`.
    pub scopes_match: &'static str,
    /// Required permissions.
    pub permissions: Vec<String>,
    /// `all` or `any`.
    pub permissions_match: &'static str,
    /// `scopes` or `check`, as for a runtime rule.
    pub token_permissions: &'static str,
    /// The runtime rule that meets the declared route (`file:line`, or `secure default`).
    pub runtime_rule: Option<String>,
    /// `both apply`, `overridden by the runtime rule`, or why it cannot be said.
    pub effect: String,
}

pub(crate) fn mode(mode: MatchMode) -> &'static str {
    match mode {
        MatchMode::All => "all",
        MatchMode::Any => "any",
    }
}

pub(crate) fn token_mode(mode: TokenPermissions) -> &'static str {
    match mode {
        TokenPermissions::Scopes => "scopes",
        TokenPermissions::Check => "check",
    }
}

impl PolicyListing {
    /// The policy `layer` enforces now, with every `#[secure]` handler of this program.
    pub fn new(layer: &SecureLayer) -> Self {
        let policy = layer.policy();
        let handlers: Vec<ListedHandler> = handler_rules()
            .into_iter()
            .map(|rule| {
                let met = met_rule(&policy, rule);
                listed_handler(rule, met.as_deref())
            })
            .collect();
        let rules = policy
            .rules()
            .iter()
            .map(|rule| {
                let overrides = handler_rules()
                    .into_iter()
                    .filter(|h| {
                        rule.overrides_compiled()
                            && met_rule(&policy, h).is_some_and(|met| std::ptr::eq(&*met, &**rule))
                    })
                    .map(|h| format!("{}::{}", h.module(), h.handler()))
                    .collect();
                listed_rule(rule, overrides)
            })
            .collect();
        Self { rules, handlers, handler_order: layer.handler_order() }
    }

    /// The listing as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The runtime rule a handler's declared route meets (see [`route_rules`]).
fn met_rule(policy: &Policy, rule: &HandlerRule) -> Option<Arc<Rule>> {
    let route = rule.path()?;
    let method = Method::from_bytes(rule.method().unwrap_or("GET").to_ascii_uppercase().as_bytes()).ok()?;
    route_rules(policy, &method, route).ok().map(|rules| rules.rule)
}

/// The runtime rules a route applies, as the layer applies them to a request.
#[derive(Debug, Clone)]
pub(crate) struct RouteRules {
    /// The rule of the canonical (decoded) path: the most specific, or the secure default.
    pub(crate) rule: Arc<Rule>,
    /// When the route has percent-encodings and a router reading them raw meets another
    /// rule: that rule, which applies too (deny wins). The listing names the first only.
    #[cfg_attr(not(feature = "openapi"), allow(dead_code))]
    pub(crate) routed: Option<Arc<Rule>>,
}

impl RouteRules {
    /// Each rule that applies.
    #[cfg_attr(not(feature = "openapi"), allow(dead_code))]
    pub(crate) fn each(&self) -> impl Iterator<Item = &Arc<Rule>> {
        std::iter::once(&self.rule).chain(&self.routed)
    }
}

/// Why a route has no rule: the layer refuses every request to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteFailure {
    /// The route is not a path the layer accepts (400).
    Path(PathError),
    /// [`Policy::lookup`] chose no rule (405 or 500).
    Lookup(LookupFailure),
}

/// The runtime rules of a route template (`/api/orders/{id}`), looked up as the layer looks
/// up a request to it (`HEAD` as `GET`, the secure default when no rule matches). A
/// `{param}` segment (and axum's `{*rest}`) stands for itself: a value no literal segment of
/// a rule can name, so it meets `{name}`, `*` and `**` patterns, and the regexes that match
/// the braces' text.
pub(crate) fn route_rules(policy: &Policy, method: &Method, route: &str) -> Result<RouteRules, RouteFailure> {
    let path = CanonicalPath::parse(route).map_err(RouteFailure::Path)?;
    let rule = policy.lookup(method, &path).map_err(RouteFailure::Lookup)?.clone();
    let routed = match CanonicalPath::as_routed(route) {
        None => None,
        Some(routed) => {
            let routed = policy.lookup(method, &routed).map_err(RouteFailure::Lookup)?;
            (!Arc::ptr_eq(routed, &rule)).then(|| routed.clone())
        }
    };
    Ok(RouteRules { rule, routed })
}

fn listed_rule(rule: &Rule, overrides: Vec<String>) -> ListedRule {
    ListedRule {
        origin: rule.origin().to_string(),
        methods: rule.methods().to_string(),
        context: rule.context().to_owned(),
        secure: rule.is_secure(),
        scopes: rule.scopes().to_vec(),
        scopes_match: mode(rule.scopes_match()),
        permissions: rule.permissions().iter().map(ToString::to_string).collect(),
        permissions_match: mode(rule.permissions_match()),
        token_permissions: token_mode(rule.token_permissions()),
        allowed_auth_handlers: rule.allowed_auth_handlers().map(<[String]>::to_vec),
        overrides_handler_rules: rule.overrides_compiled(),
        overrides,
    }
}

fn listed_handler(rule: &HandlerRule, met: Option<&Rule>) -> ListedHandler {
    let route = rule.path().map(|path| format!("{} {path}", rule.method().unwrap_or("GET").to_ascii_uppercase()));
    let effect = match (route.is_some(), met) {
        (false, _) => "route not declared: every runtime rule with override = true that meets its route replaces it; \
                       any other applies with it"
            .to_owned(),
        (true, None) => "its route is refused before any handler runs (no rule allows the method)".to_owned(),
        (true, Some(met)) if met.overrides_compiled() => format!("overridden by the runtime rule {}", met.origin()),
        (true, Some(met)) => format!("both apply: the runtime rule {} and this one (deny wins)", met.origin()),
    };
    ListedHandler {
        handler: format!("{}::{}", rule.module(), rule.handler()),
        origin: rule.location(),
        route,
        scopes: rule.scopes().iter().map(|s| (*s).to_owned()).collect(),
        scopes_match: mode(rule.scopes_match()),
        permissions: rule.permissions().iter().map(|s| (*s).to_owned()).collect(),
        permissions_match: mode(rule.permissions_match()),
        token_permissions: token_mode(rule.token_permissions()),
        runtime_rule: met.map(|m| m.origin().to_string()),
        effect,
    }
}

impl fmt::Display for PolicyListing {
    /// A plain-text table per part.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |items: &[String], how: &str| match items.len() {
            0 => "-".to_owned(),
            1 => items[0].clone(),
            _ => format!("{how}({})", items.join(", ")),
        };
        writeln!(f, "Runtime rules (the most specific wins; with a handler's rule both apply unless override):")?;
        let mut rows =
            vec![["ORIGIN", "METHODS", "CONTEXT", "SECURE", "SCOPES", "PERMISSIONS", "OVERRIDE"].map(String::from)];
        for rule in &self.rules {
            let overrides = match (rule.overrides_handler_rules, rule.overrides.is_empty()) {
                (false, _) => "no".to_owned(),
                (true, true) => "yes".to_owned(),
                (true, false) => format!("yes: {}", rule.overrides.join(", ")),
            };
            rows.push([
                rule.origin.clone(),
                rule.methods.clone(),
                rule.context.clone(),
                rule.secure.to_string(),
                list(&rule.scopes, rule.scopes_match),
                list(&rule.permissions, rule.permissions_match),
                overrides,
            ]);
        }
        rows.push(["secure default", "all", "(no rule matches)", "true", "-", "-", "no"].map(String::from));
        let mut widths = [0usize; 7];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in &rows {
            let cells: Vec<String> = row.iter().zip(widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
            writeln!(f, "{}", cells.join("  ").trim_end())?;
        }
        writeln!(f)?;
        writeln!(f, "#[secure] handlers:")?;
        if self.handlers.is_empty() {
            writeln!(f, "(none linked into this program)")?;
        }
        for handler in &self.handlers {
            writeln!(f, "{} ({})", handler.handler, handler.origin)?;
            writeln!(f, "    route:       {}", handler.route.as_deref().unwrap_or("(not declared)"))?;
            writeln!(f, "    scopes:      {}", list(&handler.scopes, handler.scopes_match))?;
            writeln!(f, "    permissions: {}", list(&handler.permissions, handler.permissions_match))?;
            writeln!(f, "    effect:      {}", handler.effect)?;
        }
        writeln!(f)?;
        let order: Vec<String> =
            self.handler_order.iter().map(|(name, priority)| format!("{name} ({priority})")).collect();
        writeln!(
            f,
            "Authentication handlers, asked in this order: {}",
            if order.is_empty() { "none".to_owned() } else { order.join(", ") }
        )
    }
}
