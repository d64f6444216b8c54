//! The effective policy as OpenAPI 3.1: security schemes for the layer's
//! authentication handlers and, for each operation of a utoipa document, the security
//! requirements the layer enforces there, computed with the policy listing's route lookup
//! and `#[secure]` handler rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use http::Method;
use serde_json::{json, Value};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    AuthorizationCode, ClientCredentials, Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes,
    SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Components, OpenApi};

use crate::config::MatchMode;
use crate::listing::{mode, route_rules, token_mode, RouteFailure};
use crate::policy::{LookupFailure, PathError, Policy, BASIC_HANDLER, CLIENT_CERT_HANDLER, OAUTH2_HANDLER};
use crate::secure_attr::{handler_rules, HandlerRule};
use crate::SecureLayer;

/// The name of the `http` `bearer` scheme that documents the `oauth2` handler beside its
/// `oauth2` scheme. The other schemes are named after their handlers: `basic`, `oauth2`,
/// `client_cert`, and a plugin's name.
pub const BEARER_SCHEME: &str = "bearer";

/// The operation extension that lists the permissions a route requires
/// (`x-permissions`): OpenAPI has no word for them.
pub const PERMISSIONS_EXTENSION: &str = "x-permissions";

/// Fills in the security of an OpenAPI 3.1 document (utoipa's model) from the policy a
/// [`SecureLayer`] enforces now and the `#[secure]` handlers linked into this program.
///
/// [`apply`](Self::apply) writes:
///
/// - `components.securitySchemes`, one per authentication handler the layer asks, named
///   after it: `basic` is `http` `basic`; `oauth2` (bearer tokens) is `bearer`, an `http`
///   `bearer` scheme with `bearerFormat: JWT`, and, when a token endpoint is known, also
///   `oauth2`, an OAuth2 scheme with the `password` and `clientCredentials` flows at that
///   `tokenUrl` whose scopes are the policy's `[[scope]]` definitions (each described by
///   the permissions it is bound to) and any other scope an operation requires;
///   `client_cert` is `mutualTLS`. A plugin handler is documented only with the scheme
///   given to [`plugin_scheme`](Self::plugin_scheme), and left out otherwise.
/// - each operation's `security`, decided for its path and method as the layer decides a
///   request: the most specific runtime rule (or the secure default when none matches:
///   any authenticated caller), a percent-encoded path's second rule, the `#[secure]`
///   handler whose declared route (`path`, `method`) is this operation unless every
///   runtime rule says `override = true` (deny wins: both apply), and the token server's
///   own endpoints, which pass anonymously. An open operation (`secure = false`, no
///   handler rule) gets `security: []`: no credential needed. A secured one gets one
///   requirement per handler that may authenticate it (in the order the layer asks them,
///   within `allowed_auth_handlers`): `{"basic": []}`, `{"client_cert": []}`, and for the
///   `oauth2` handler `{"bearer": [scopes]}` plus `{"oauth2": [scopes]}`, where the
///   scopes are those the token must carry. Scopes a rule requires with
///   `scopes_match = "any"` become one requirement per scope; the rule file's and the
///   handler's scopes are combined (all of both).
/// - `x-permissions` on each secured operation that requires permissions: a list of
///   `{"rule", "match", "permissions", "token_permissions"}` objects, one per rule that
///   requires some; every one must hold. A token caller is judged by its scopes alone
///   unless `token_permissions` is `check` (the rule file's `[[scope]]` bindings imply the
///   permissions: checked when the layer is built).
///
/// A path template segment (`{id}`) stands for one segment that no literal of any rule
/// names: it meets a rule's `{name}`, `*` and `**`, not its literal segments, and a
/// `regex:` rule only when the regex matches the braces' text. So `/api/orders/{id}` gets
/// the rule of `/api/orders/*` even when `/api/orders/export` has a rule of its own (that
/// route, if served, is another path of the document).
///
/// Not expressible, so not written: tenants (`cross_tenant`), which permissions a caller
/// without a token needs for a scope (they are in the scope's description), the failure
/// answers (401, 403), authorization plugins (they may refuse more), and a `#[secure]`
/// handler that declares no route. Operations the document does not list are still
/// secured by the layer: a route no rule covers needs an authenticated caller.
///
/// ```
/// use tower_secure::config::{load_users, Deployment};
/// use tower_secure::openapi::OpenApiSecurity;
/// use tower_secure::SecureLayer;
/// use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem, PathsBuilder};
/// use utoipa::openapi::{InfoBuilder, OpenApiBuilder};
///
/// let deployment = Deployment::from_toml_str("deployment.toml", r#"
///     [[resource.access_control]]
///     context = "/api/health"
///     secure = false
///
///     [[resource.access_control]]
///     context = "/api/orders/{id}"
///     http_method = "GET"
///     scope = "orders_read"
///
///     [[oauth2.issuer]]                 # bearer tokens: the `oauth2` handler
///     issuer = "https://idp.example.com"
///     [[oauth2.issuer.key]]
///     algorithm = "HS256"
///     secret_base64 = "YW4gZXhhbXBsZSBzZWNyZXQgb2YgMzIgYnl0ZXMgb3IgbW9yZQ=="
/// "#)?;
/// let layer = SecureLayer::builder()
///     .deployment(deployment)
///     .user_store(load_users("users.toml", "")?)
///     .build()?;
///
/// let get = |id: &str| PathItem::new(HttpMethod::Get, OperationBuilder::new().operation_id(Some(id)));
/// let paths = PathsBuilder::new()
///     .path("/api/health", get("health"))
///     .path("/api/orders/{id}", get("order"));
/// let mut doc = OpenApiBuilder::new().info(InfoBuilder::new().title("shop").version("1")).paths(paths).build();
///
/// OpenApiSecurity::new(&layer).token_url("https://idp.example.com/oauth2/token").apply(&mut doc)?;
///
/// let json = serde_json::to_value(&doc)?;
/// assert_eq!(json["paths"]["/api/health"]["get"]["security"], serde_json::json!([]));
/// // The handlers in the order the layer asks them: `oauth2` (a token you have, or one from
/// // the token endpoint's flows), then `basic`; the scope on the token alternatives.
/// assert_eq!(
///     json["paths"]["/api/orders/{id}"]["get"]["security"],
///     serde_json::json!([{ "bearer": ["orders_read"] }, { "oauth2": ["orders_read"] }, { "basic": [] }])
/// );
/// let schemes = &json["components"]["securitySchemes"];
/// assert_eq!(schemes["basic"]["scheme"], "basic");
/// assert_eq!(schemes["bearer"]["bearerFormat"], "JWT");
/// assert_eq!(schemes["oauth2"]["flows"]["clientCredentials"]["tokenUrl"], "https://idp.example.com/oauth2/token");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OpenApiSecurity<'a> {
    layer: &'a SecureLayer,
    token_url: Option<String>,
    authorization_url: Option<String>,
    plugin_schemes: BTreeMap<String, SecurityScheme>,
}

impl fmt::Debug for OpenApiSecurity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenApiSecurity")
            .field("layer", self.layer)
            .field("token_url", &self.token_url)
            .field("plugin_schemes", &self.plugin_schemes.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a document's security could not be written; the document is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenApiError {
    /// The path is not one the layer accepts (every request to it is 400).
    #[error("{method} {path}: the layer refuses this path ({error})")]
    Path {
        /// The operation's method.
        method: Method,
        /// The document's path.
        path: String,
        /// Why the layer refuses it.
        error: PathError,
    },
    /// No rule allows the method on this path (every request to it is 405).
    #[error("{method} {path}: no rule allows this method here (405)")]
    MethodNotAllowed {
        /// The operation's method.
        method: Method,
        /// The document's path.
        path: String,
    },
    /// Two `regex:` rules of equal rank match the path (every request to it is 500).
    #[error("{method} {path}: two regex rules of equal rank match this path (500)")]
    Ambiguous {
        /// The operation's method.
        method: Method,
        /// The document's path.
        path: String,
    },
    /// The operation is secured, and no handler that may authenticate it has a scheme: a
    /// plugin given no [`OpenApiSecurity::plugin_scheme`], or no handler at all.
    #[error("{method} {path}: secured, and none of the handlers allowed here has a scheme ({})", handlers.join(", "))]
    NoScheme {
        /// The operation's method.
        method: Method,
        /// The document's path.
        path: String,
        /// The handlers allowed here, none documented.
        handlers: Vec<String>,
    },
}

/// What one operation gets.
struct OperationSecurity {
    /// Alternatives; none: no credential needed.
    security: Vec<SecurityRequirement>,
    /// The `x-permissions` entries.
    permissions: Vec<Value>,
    /// The scopes its requirements name.
    scopes: Vec<String>,
}

impl OperationSecurity {
    fn open() -> Self {
        Self { security: Vec::new(), permissions: Vec::new(), scopes: Vec::new() }
    }
}

/// One rule's requirements, the runtime rule's or a handler's.
struct Required<'r> {
    origin: String,
    scopes: Vec<&'r str>,
    scopes_match: MatchMode,
    permissions: Vec<String>,
    permissions_match: MatchMode,
    token_permissions: &'static str,
}

impl<'a> OpenApiSecurity<'a> {
    /// The security of `layer`'s current policy. The token endpoint is the layer's token
    /// server's (`/oauth2/token`, relative to the document's server) when it has one.
    pub fn new(layer: &'a SecureLayer) -> Self {
        let endpoints = layer.engine.load().token_endpoints;
        let token_url = endpoints.first().map(|path| (*path).to_owned());
        // The token server's authorization endpoint, for the authorization code flow.
        let authorization_url =
            endpoints.iter().find(|path| path.ends_with("/authorize")).map(|path| (*path).to_owned());
        Self { layer, token_url, authorization_url, plugin_schemes: BTreeMap::new() }
    }

    /// Where clients get tokens (an absolute URL or one relative to the document's server):
    /// the `tokenUrl` of the `oauth2` scheme's flows. Without it and without a token server
    /// in the layer, bearer tokens are documented by the `bearer` scheme alone.
    pub fn token_url(mut self, url: impl Into<String>) -> Self {
        self.token_url = Some(url.into());
        self
    }

    /// Documents the plugin authentication handler registered as `handler` with `scheme`,
    /// under its name. An OAuth2 or OpenID Connect scheme gets the scopes of each
    /// operation, any other none. Names of built-in handlers are ignored: their schemes
    /// are fixed.
    pub fn plugin_scheme(mut self, handler: impl Into<String>, scheme: SecurityScheme) -> Self {
        let handler = handler.into();
        if !crate::policy::BUILT_IN_HANDLERS.contains(&handler.as_str()) {
            self.plugin_schemes.insert(handler, scheme);
        }
        self
    }

    /// Writes the schemes into `doc.components` (replacing schemes of the same names) and
    /// the `security` (and `x-permissions`) of every operation of `doc.paths`. Applied
    /// again, for example after a reload, it rewrites them from the policy of that moment.
    ///
    /// Fails, changing nothing, when an operation is one the layer refuses for everyone
    /// (a path it does not accept, a method no rule allows, ambiguous regex rules) or is
    /// secured with no documented handler.
    pub fn apply(&self, doc: &mut OpenApi) -> Result<(), OpenApiError> {
        let engine = self.layer.engine.load();
        let handlers: Vec<&str> = engine.registry.handlers().iter().map(|h| h.name()).collect();
        let mut computed = Vec::new();
        let mut used_scopes = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, operation) in operations(item) {
                if operation.is_some() {
                    let security = self.operation(&engine.policy, &handlers, engine.token_endpoints, &method, path)?;
                    used_scopes.extend(security.scopes.iter().cloned());
                    computed.push((path.clone(), method, security));
                }
            }
        }
        let components = doc.components.get_or_insert_with(Components::new);
        for (name, scheme) in self.schemes(&engine.policy, &handlers, &used_scopes) {
            components.add_security_scheme(name, scheme);
        }
        for (path, method, security) in computed {
            let Some(item) = doc.paths.paths.get_mut(&path) else { continue };
            let Some(operation) = operation_mut(item, &method) else { continue };
            operation.security = Some(security.security);
            let extensions = operation.extensions.get_or_insert_with(Extensions::default);
            if security.permissions.is_empty() {
                extensions.remove(PERMISSIONS_EXTENSION);
            } else {
                extensions.insert(PERMISSIONS_EXTENSION.to_owned(), Value::Array(security.permissions));
            }
            if extensions.is_empty() {
                operation.extensions = None;
            }
        }
        Ok(())
    }

    /// The security of one operation.
    fn operation(
        &self,
        policy: &Policy,
        handlers: &[&str],
        token_endpoints: &[&str],
        method: &Method,
        path: &str,
    ) -> Result<OperationSecurity, OpenApiError> {
        let rules = route_rules(policy, method, path).map_err(|failure| {
            let (method, path) = (method.clone(), path.to_owned());
            match failure {
                RouteFailure::Path(error) => OpenApiError::Path { method, path, error },
                RouteFailure::Lookup(LookupFailure::MethodNotAllowed) => {
                    OpenApiError::MethodNotAllowed { method, path }
                }
                RouteFailure::Lookup(LookupFailure::Ambiguous) => OpenApiError::Ambiguous { method, path },
            }
        })?;
        // The token server's endpoints authenticate their clients themselves: the layer lets
        // them through once a rule allows the method.
        if token_endpoints.contains(&path) {
            return Ok(OperationSecurity::open());
        }
        let overridden = rules.each().all(|rule| rule.overrides_compiled());
        let handler_rules: Vec<&HandlerRule> = if overridden { Vec::new() } else { handler_rules_of(method, path) };
        let secure = rules.each().any(|rule| rule.is_secure()) || !handler_rules.is_empty();
        if !secure {
            return Ok(OperationSecurity::open());
        }
        let mut required: Vec<Required<'_>> = rules
            .each()
            .filter(|rule| rule.is_secure())
            .map(|rule| Required {
                origin: rule.origin().to_string(),
                scopes: rule.scopes().iter().map(String::as_str).collect(),
                scopes_match: rule.scopes_match(),
                permissions: rule.permissions().iter().map(ToString::to_string).collect(),
                permissions_match: rule.permissions_match(),
                token_permissions: token_mode(rule.token_permissions()),
            })
            .collect();
        required.extend(handler_rules.iter().map(|rule| Required {
            origin: format!("#[secure] {}::{} ({})", rule.module(), rule.handler(), rule.location()),
            scopes: rule.scopes().to_vec(),
            scopes_match: rule.scopes_match(),
            permissions: rule.permissions().iter().map(|p| (*p).to_owned()).collect(),
            permissions_match: rule.permissions_match(),
            token_permissions: token_mode(rule.token_permissions()),
        }));
        let alternatives = scope_alternatives(&required);
        let allowed: Vec<&str> = handlers
            .iter()
            .copied()
            .filter(|name| {
                rules
                    .each()
                    .all(|rule| rule.allowed_auth_handlers().is_none_or(|names| names.iter().any(|n| n == name)))
            })
            .collect();
        let mut security: Vec<SecurityRequirement> = Vec::new();
        let mut push = |requirement: SecurityRequirement| {
            if !security.contains(&requirement) {
                security.push(requirement);
            }
        };
        for name in &allowed {
            for (scheme, carries_scopes) in self.schemes_of(name) {
                if carries_scopes {
                    for scopes in &alternatives {
                        push(SecurityRequirement::new(scheme.clone(), scopes.iter().copied()));
                    }
                } else {
                    push(SecurityRequirement::new(scheme, Vec::<String>::new()));
                }
            }
        }
        if security.is_empty() {
            let handlers = allowed.iter().map(|name| (*name).to_owned()).collect();
            return Err(OpenApiError::NoScheme { method: method.clone(), path: path.to_owned(), handlers });
        }
        let permissions = required
            .iter()
            .filter(|r| !r.permissions.is_empty())
            .map(|r| {
                json!({
                    "rule": r.origin,
                    "match": mode(r.permissions_match),
                    "permissions": r.permissions,
                    "token_permissions": r.token_permissions,
                })
            })
            .collect();
        let scopes = alternatives.iter().flatten().map(|scope| (*scope).to_owned()).collect();
        Ok(OperationSecurity { security, permissions, scopes })
    }

    /// The schemes a handler is documented under, and whether each carries scopes.
    fn schemes_of(&self, handler: &str) -> Vec<(String, bool)> {
        match handler {
            BASIC_HANDLER => vec![(BASIC_HANDLER.to_owned(), false)],
            CLIENT_CERT_HANDLER => vec![(CLIENT_CERT_HANDLER.to_owned(), false)],
            OAUTH2_HANDLER => {
                let mut schemes = vec![(BEARER_SCHEME.to_owned(), true)];
                if self.token_url.is_some() {
                    schemes.push((OAUTH2_HANDLER.to_owned(), true));
                }
                schemes
            }
            plugin => match self.plugin_schemes.get(plugin) {
                Some(scheme) => {
                    let scoped = matches!(scheme, SecurityScheme::OAuth2(_) | SecurityScheme::OpenIdConnect(_));
                    vec![(plugin.to_owned(), scoped)]
                }
                None => Vec::new(),
            },
        }
    }

    /// The schemes of the layer's handlers, by name.
    fn schemes(
        &self,
        policy: &Policy,
        handlers: &[&str],
        used_scopes: &BTreeSet<String>,
    ) -> Vec<(String, SecurityScheme)> {
        let mut schemes = Vec::new();
        for name in handlers {
            match *name {
                BASIC_HANDLER => {
                    let http = HttpBuilder::new()
                        .scheme(HttpAuthScheme::Basic)
                        .description(Some("HTTP Basic: a user of the layer's user store (the `basic` handler)."))
                        .build();
                    schemes.push((BASIC_HANDLER.to_owned(), SecurityScheme::Http(http)));
                }
                CLIENT_CERT_HANDLER => {
                    let description =
                        "A TLS client certificate the layer's trust anchors verify (the `client_cert` handler).";
                    schemes.push((
                        CLIENT_CERT_HANDLER.to_owned(),
                        SecurityScheme::MutualTls { description: Some(description.to_owned()), extensions: None },
                    ));
                }
                OAUTH2_HANDLER => {
                    let http = HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "A bearer access token (the `oauth2` handler); an operation's requirement lists the \
                             scopes the token must carry.",
                        ))
                        .build();
                    schemes.push((BEARER_SCHEME.to_owned(), SecurityScheme::Http(http)));
                    if let Some(token_url) = &self.token_url {
                        let scopes = scopes(policy, used_scopes);
                        let mut flows = vec![
                            Flow::Password(Password::new(token_url.clone(), scopes.clone())),
                            Flow::ClientCredentials(ClientCredentials::new(token_url.clone(), scopes.clone())),
                        ];
                        if let Some(authorization_url) = &self.authorization_url {
                            let code = AuthorizationCode::new(authorization_url.clone(), token_url.clone(), scopes);
                            flows.push(Flow::AuthorizationCode(code));
                        }
                        let description = "Access tokens from the token endpoint (the `oauth2` handler verifies them).";
                        schemes.push((
                            OAUTH2_HANDLER.to_owned(),
                            SecurityScheme::OAuth2(OAuth2::with_description(flows, description)),
                        ));
                    }
                }
                plugin => {
                    if let Some(scheme) = self.plugin_schemes.get(plugin) {
                        schemes.push((plugin.to_owned(), scheme.clone()));
                    }
                }
            }
        }
        schemes
    }
}

/// The `oauth2` scheme's scopes: every `[[scope]]` definition, described by the
/// permissions it is bound to, and every other scope an operation requires.
fn scopes(policy: &Policy, used: &BTreeSet<String>) -> Scopes {
    let mut described: BTreeMap<String, String> = policy
        .scopes()
        .map(|definition| {
            let description = if definition.permissions.is_empty() {
                "Bound to no permission.".to_owned()
            } else {
                let permissions: Vec<String> = definition.permissions.iter().map(ToString::to_string).collect();
                format!("Bound to {}: a caller without a token needs them instead.", permissions.join(", "))
            };
            (definition.name.clone(), description)
        })
        .collect();
    for name in used {
        described
            .entry(name.clone())
            .or_insert_with(|| "Required by a rule; no `[[scope]]` table defines it.".to_owned());
    }
    Scopes::from_iter(described)
}

/// The scope lists a token may carry to satisfy every rule: the product of each rule's
/// choices (all its scopes, or any one of them), each list sorted and without repeats.
fn scope_alternatives<'r>(required: &[Required<'r>]) -> Vec<Vec<&'r str>> {
    let mut alternatives: Vec<BTreeSet<&'r str>> = vec![BTreeSet::new()];
    for rule in required {
        let choices: Vec<Vec<&'r str>> = match (rule.scopes.is_empty(), rule.scopes_match) {
            (true, _) => continue,
            (false, MatchMode::All) => vec![rule.scopes.clone()],
            (false, MatchMode::Any) => rule.scopes.iter().map(|scope| vec![*scope]).collect(),
        };
        alternatives = alternatives
            .iter()
            .flat_map(|held| {
                choices.iter().map(move |choice| held.iter().copied().chain(choice.iter().copied()).collect())
            })
            .collect();
    }
    let mut unique: Vec<Vec<&'r str>> = Vec::new();
    for alternative in alternatives {
        let alternative: Vec<&str> = alternative.into_iter().collect();
        if !unique.contains(&alternative) {
            unique.push(alternative);
        }
    }
    unique
}

/// The `#[secure]` handlers whose declared route is this operation: the same path (any
/// `{param}` name matches any) and method (`GET` when not declared; `HEAD` is served by the
/// `GET` handler).
fn handler_rules_of(method: &Method, path: &str) -> Vec<&'static HandlerRule> {
    let method = if method == Method::HEAD { &Method::GET } else { method };
    handler_rules()
        .into_iter()
        .filter(|rule| {
            let declared = rule.method().unwrap_or("GET");
            rule.path().is_some_and(|route| same_template(route, path))
                && declared.eq_ignore_ascii_case(method.as_str())
        })
        .collect()
}

/// Two path templates with the same literals and parameters in the same places.
fn same_template(a: &str, b: &str) -> bool {
    let param = |segment: &str| segment.starts_with('{') && segment.ends_with('}');
    let (a, b) = (a.trim_end_matches('/'), b.trim_end_matches('/'));
    a.split('/').count() == b.split('/').count()
        && a.split('/').zip(b.split('/')).all(|(x, y)| x == y || (param(x) && param(y)))
}

/// The operations of a path item, with their methods.
fn operations(item: &utoipa::openapi::PathItem) -> [(Method, Option<&Operation>); 8] {
    [
        (Method::GET, item.get.as_ref()),
        (Method::PUT, item.put.as_ref()),
        (Method::POST, item.post.as_ref()),
        (Method::DELETE, item.delete.as_ref()),
        (Method::OPTIONS, item.options.as_ref()),
        (Method::HEAD, item.head.as_ref()),
        (Method::PATCH, item.patch.as_ref()),
        (Method::TRACE, item.trace.as_ref()),
    ]
}

fn operation_mut<'i>(item: &'i mut utoipa::openapi::PathItem, method: &Method) -> Option<&'i mut Operation> {
    let slot = match *method {
        Method::GET => &mut item.get,
        Method::PUT => &mut item.put,
        Method::POST => &mut item.post,
        Method::DELETE => &mut item.delete,
        Method::OPTIONS => &mut item.options,
        Method::HEAD => &mut item.head,
        Method::PATCH => &mut item.patch,
        Method::TRACE => &mut item.trace,
        _ => return None,
    };
    slot.as_mut()
}
