//! [`SecureLayer`] and [`SecureService`]: the tower middleware. One request, end to end:
//! canonical path -> rule lookup -> handler selection -> authentication -> authorization
//! -> [`AuthContext`] in the request extensions -> inner service. The inner service is
//! only called once the decision is made.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::authn::header::single_authorization;
use crate::authn::{RegisteredHandler, Registry};
use crate::authz::{self, AuthorizationHandler, AuthorizationRequest};
use crate::error::{AuthError, AuthErrorKind, ErrorResponder, ProblemJson};
use crate::identity::Principal;
use crate::policy::{CanonicalPath, LookupFailure, Policy, Rule};

/// Everything a decision needs, built and validated once by the builder.
pub(crate) struct Engine {
    pub(crate) policy: Arc<Policy>,
    pub(crate) registry: Registry,
    pub(crate) authorizers: Vec<Arc<dyn AuthorizationHandler>>,
    pub(crate) realm: String,
    pub(crate) responder: Arc<dyn ErrorResponder>,
    /// `WWW-Authenticate` challenges per rule id, and for the secure default.
    pub(crate) challenges: Vec<Arc<[HeaderValue]>>,
    pub(crate) default_challenges: Arc<[HeaderValue]>,
    /// Request paths passed through unauthenticated, compared byte for byte with the raw
    /// path: the endpoints of a token server registered with the builder, which
    /// authenticate their own clients.
    pub(crate) token_endpoints: &'static [&'static str],
}

/// What the layer decided about a request, in its extensions for handlers and
/// extractors: the caller (if any), the rule that applied and the path it was decided on.
/// Cheap to clone (one reference count).
#[derive(Clone)]
pub struct AuthContext {
    data: Arc<ContextData>,
}

struct ContextData {
    principal: Option<Principal>,
    rules: Applied,
    path: CanonicalPath,
    /// The configuration version that decided, for the responses of the extractors and of
    /// `#[secure]` handler rules (challenges, body, scope bindings): never a newer one.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    engine: Arc<Engine>,
    /// Set when a handler's `#[secure]` rule or the `Principal` extractor refused the
    /// request the layer let through: that refusal is then the request's audit event, and
    /// the layer logs no "allow" for it.
    refused_in_handler: AtomicBool,
}

impl AuthContext {
    /// The authenticated caller; `None` for an anonymous caller of an open resource.
    pub fn principal(&self) -> Option<&Principal> {
        self.data.principal.as_ref()
    }

    /// The rule that applied (the secure default when none matched).
    pub fn rule(&self) -> &Rule {
        &self.data.rules.rule
    }

    /// Every rule that applied, all of which let the request through: [`rule`](Self::rule),
    /// and, for a path with percent-encodings that a router matching raw text (axum's)
    /// reads as another rule's path, that rule too (`/api/items/%70ublic` is
    /// `/api/items/public` for the policy, but axum dispatches it to `/api/items/{id}`).
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.data.rules.each()
    }

    /// The canonical path the layer decided on (decoded once, tenant prefix split off).
    pub fn path(&self) -> &CanonicalPath {
        &self.data.path
    }

    /// True when every rule that applied has `override = true`: a handler's own
    /// `#[secure]` rule is then replaced; otherwise it applies as well.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn overrides_compiled(&self) -> bool {
        self.rules().all(Rule::overrides_compiled)
    }

    /// The tenant of the path (`/t/{tenant}/...`), `None` for the super tenant.
    pub fn tenant(&self) -> Option<&str> {
        self.data.path.tenant()
    }

    /// Refuses an anonymous caller of an open resource whose handler needs a caller (the
    /// `Principal` extractor): 401 with the resource's challenges, logged as the request's
    /// one audit event.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn refuse_anonymous(&self, parts: &Parts) -> Response<Bytes> {
        let error = AuthError::new(AuthErrorKind::Unauthenticated, "handler requires an authenticated caller");
        self.refused_in_handler(parts, &self.data.rules, None, None, &error);
        self.unauthenticated(error)
    }

    /// A 401 for this resource, with its challenges and the configured body.
    fn unauthenticated(&self, error: AuthError) -> Response<Bytes> {
        let engine = &self.data.engine;
        error.to_response(engine.challenges_for(self.rule()), &*engine.responder)
    }

    /// Checks a handler's own `#[secure]` requirements (`rule`, of the handler called
    /// `handler`) against this request's caller, with the scope bindings,
    /// challenges and body of the configuration that decided the request. Anonymous
    /// callers get 401; others 403 as the layer would. A refusal is logged naming the
    /// handler's rule, as the request's one audit event.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    // The refusal is a response, built once on the rare refusing path.
    #[allow(clippy::result_large_err)]
    pub(crate) fn check_handler_rule<S: AsRef<str>>(
        &self,
        parts: &Parts,
        rule: &dyn fmt::Display,
        handler: &str,
        required: &authz::Requirements<'_, S>,
    ) -> Result<(), Response<Bytes>> {
        let engine = &self.data.engine;
        let Some(principal) = &self.data.principal else {
            let error = unauthenticated_for(handler);
            self.refused_in_handler(parts, rule, None, None, &error);
            return Err(self.unauthenticated(error));
        };
        let policy = &engine.policy;
        match authz::check_requirements(required, principal, &|name| policy.scope(name)) {
            Ok(()) => Ok(()),
            Err(error) => {
                let registered = engine.registry.handlers().iter().find(|h| h.name() == principal.authenticated_by());
                self.refused_in_handler(parts, rule, registered.map(RegisteredHandler::name), Some(principal), &error);
                let challenge = registered.and_then(|h| handler_challenge(h, &engine.realm, &error));
                Err(error.to_response(&challenge.into_iter().collect::<Vec<_>>(), &*engine.responder))
            }
        }
    }

    /// Logs a refusal made after the layer let the request through, in place of the
    /// layer's "allow".
    fn refused_in_handler(
        &self,
        parts: &Parts,
        rule: &dyn fmt::Display,
        handler: Option<&str>,
        principal: Option<&Principal>,
        error: &AuthError,
    ) {
        self.data.refused_in_handler.store(true, Ordering::Release);
        audit_refusal(parts, Some(&self.data.path), Some(rule), handler, principal, error);
    }
}

fn unauthenticated_for(handler: &str) -> AuthError {
    AuthError::new(AuthErrorKind::Unauthenticated, format!("handler `{handler}` requires an authenticated caller"))
}

impl fmt::Debug for AuthContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = &self.data;
        f.debug_struct("AuthContext")
            .field("principal", &data.principal)
            .field("rule", &data.rules.rule.to_string())
            .field("routed_rule", &data.rules.routed.as_ref().map(ToString::to_string))
            .field("path", &data.path.to_string())
            .finish()
    }
}

/// Secures every request of the wrapped service. Cheap to clone.
///
/// ```
/// use axum::{routing::get, Router};
/// use tower_secure::config::{load_users, Deployment};
/// use tower_secure::SecureLayer;
///
/// let deployment = Deployment::from_toml_str("deployment.toml", r#"
///     [[resource.access_control]]
///     context = "/health"
///     secure = false
/// "#)?;
/// let layer = SecureLayer::builder()
///     .deployment(deployment)
///     .user_store(load_users("users.toml", "")?)
///     .build()?;
/// let app: Router = Router::new().route("/health", get(|| async { "ok" })).layer(layer);
/// # Ok::<(), tower_secure::config::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct SecureLayer {
    pub(crate) shared: Arc<crate::reload::Shared>,
}

impl SecureLayer {
    /// The compiled policy this layer enforces now.
    pub fn policy(&self) -> Arc<Policy> {
        self.shared.current.load().policy.clone()
    }

    /// The authentication handlers by name, in the order they are asked.
    pub fn handler_order(&self) -> Vec<(String, i32)> {
        self.shared.current.load().registry.handlers().iter().map(|h| (h.name().to_owned(), h.priority)).collect()
    }

    /// A handle that reloads this layer's rules (and users) while it serves.
    pub fn reloader(&self) -> crate::Reloader {
        crate::Reloader { shared: self.shared.clone() }
    }
}

impl std::fmt::Debug for SecureLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureLayer").field("handlers", &self.handler_order()).finish_non_exhaustive()
    }
}

impl<S> Layer<S> for SecureLayer {
    type Service = SecureService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecureService { inner, shared: self.shared.clone() }
    }
}

/// The service [`SecureLayer`] wraps around an inner service.
#[derive(Clone)]
pub struct SecureService<S> {
    inner: S,
    shared: Arc<crate::reload::Shared>,
}

impl<S> SecureService<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for SecureService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecureService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

type AuthFuture = Pin<Box<dyn Future<Output = (Parts, Result<AuthContext, Response<Bytes>>)> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecureService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<SecureBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        // One configuration version decides the whole request (SPEC B7).
        let engine = self.shared.current.load();
        let mut pending = None;
        let state = match engine.start(&parts) {
            Start::Refuse(response) => State::Refused { response: Some(response) },
            Start::Pass(context, allowed) => {
                pending = Some(PendingAllow { context: context.clone(), method: parts.method.clone(), allowed });
                let mut request = Request::from_parts(parts, body);
                request.extensions_mut().insert(context);
                State::Inner { fut: self.inner.call(request) }
            }
            Start::Authenticate { handler, rules, path, principal } => {
                // Hand the readied service to the future and keep a fresh clone (tower idiom).
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                let engine = Arc::clone(&engine);
                let fut: AuthFuture = Box::pin(async move {
                    let decision = engine.decide(handler, rules, path, principal, &parts).await;
                    (parts, decision)
                });
                State::Authenticating { fut, inner: Some(ready), body: Some(body) }
            }
        };
        ResponseFuture { state, pending }
    }
}

/// The first, synchronous part of a decision.
enum Start {
    Refuse(Response<Bytes>),
    Pass(AuthContext, Allowed),
    /// The async part: authentication (unless `principal` is already known) and, on
    /// secured resources, authorization with the plugins.
    Authenticate {
        handler: usize,
        rules: Applied,
        path: CanonicalPath,
        principal: Option<Principal>,
    },
}

/// The rules a request is held to: the rule of its decoded path and, when the
/// raw path has percent-encodings and a router matching raw text (axum's) would read it as
/// another rule's path, that rule too. Both must let the request through (deny wins), so
/// the handler the router picks never runs without its own rule's check.
#[derive(Clone)]
struct Applied {
    rule: Arc<Rule>,
    routed: Option<Arc<Rule>>,
}

impl Applied {
    fn each(&self) -> impl Iterator<Item = &Rule> {
        std::iter::once(&*self.rule).chain(self.routed.as_deref())
    }

    fn is_secure(&self) -> bool {
        self.each().any(Rule::is_secure)
    }

    /// A handler every rule allows (`allowed_auth_handlers`).
    fn allows(&self, handler: &RegisteredHandler) -> bool {
        self.each().all(|rule| handler.allowed_by(rule.allowed_auth_handlers()))
    }

    /// The rule whose challenges a 401 carries: the first secured one.
    fn challenged(&self) -> &Rule {
        self.each().find(|rule| rule.is_secure()).unwrap_or(&self.rule)
    }
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.routed {
            None => write!(f, "{}", self.rule),
            Some(routed) => write!(f, "{} + as routed {routed}", self.rule),
        }
    }
}

impl Engine {
    fn start(self: &Arc<Self>, parts: &Parts) -> Start {
        let raw_path = crate::policy::request_path(parts);
        let path = match CanonicalPath::parse(raw_path) {
            Ok(path) => path,
            Err(e) => {
                return Start::Refuse(self.refuse(parts, None, None, None, AuthError::invalid_request(e.to_string())))
            }
        };
        let rule = match self.lookup(parts, &path) {
            Ok(rule) => rule,
            Err(refused) => return Start::Refuse(refused),
        };
        let routed = match CanonicalPath::as_routed(raw_path) {
            None => None,
            Some(routed_path) => match self.lookup(parts, &routed_path) {
                Ok(routed) => (!Arc::ptr_eq(&routed, &rule)).then_some(routed),
                Err(refused) => return Start::Refuse(refused),
            },
        };
        let rules = Applied { rule, routed };
        // The raw path, not the decoded one: the router must dispatch exactly this path.
        if self.token_endpoints.contains(&raw_path) {
            return Start::Pass(self.context(None, rules, path), Allowed::TokenEndpoint);
        }
        if let Err(error) = single_authorization(&parts.headers) {
            return Start::Refuse(self.refuse(parts, Some(&path), Some(&rules.rule), None, error));
        }
        let selected = std::panic::catch_unwind(AssertUnwindSafe(|| self.registry.select(|h| rules.allows(h), parts)));
        match selected {
            Err(_) => {
                let error = AuthError::internal("an authentication handler panicked in can_handle");
                Start::Refuse(self.refuse(parts, Some(&path), Some(&rules.rule), None, error))
            }
            Ok(Some(handler)) => self.authenticate_now(handler, rules, path, parts),
            Ok(None) if rules.is_secure() => {
                let error = AuthError::new(AuthErrorKind::Unauthenticated, "no credential");
                Start::Refuse(self.refuse(parts, Some(&path), Some(rules.challenged()), None, error))
            }
            Ok(None) => Start::Pass(self.context(None, rules, path), Allowed::OpenResource),
        }
    }

    /// The rule for `path`; a refusal when no rule allows the method or two regex rules tie.
    // The refusal is a response, built once on the rare refusing path.
    #[allow(clippy::result_large_err)]
    fn lookup(&self, parts: &Parts, path: &CanonicalPath) -> Result<Arc<Rule>, Response<Bytes>> {
        self.policy.lookup(&parts.method, path).cloned().map_err(|failure| {
            let error = match failure {
                LookupFailure::MethodNotAllowed => {
                    AuthError::new(AuthErrorKind::MethodNotAllowed, "method not allowed by any rule")
                }
                LookupFailure::Ambiguous => AuthError::internal("two regex rules of equal rank match this path"),
            };
            self.refuse(parts, Some(path), None, None, error)
        })
    }

    /// The synchronous path: every handler is first asked to answer at once (a cached
    /// credential); with no authorization plugins to await, that decides the request here.
    /// Anything else goes to [`Engine::decide`].
    fn authenticate_now(self: &Arc<Self>, handler: usize, rules: Applied, path: CanonicalPath, parts: &Parts) -> Start {
        let registered = &self.registry.handlers()[handler];
        let answer = std::panic::catch_unwind(AssertUnwindSafe(|| registered.handler.authenticate_now(parts)));
        let principal = match answer {
            Ok(None) => return Start::Authenticate { handler, rules, path, principal: None },
            Ok(Some(Ok(principal))) => principal.stamped(registered.name()),
            Ok(Some(Err(error))) => {
                return Start::Refuse(self.refuse(parts, Some(&path), Some(&rules.rule), Some(registered), error))
            }
            Err(_) => {
                let error = AuthError::internal("authentication handler panicked");
                return Start::Refuse(self.refuse(parts, Some(&path), Some(&rules.rule), Some(registered), error));
            }
        };
        if !self.authorizers.is_empty() {
            // Authorization plugins are async: decided in the future, without authenticating again.
            return Start::Authenticate { handler, rules, path, principal: Some(principal) };
        }
        for rule in rules.each().filter(|rule| rule.is_secure()) {
            let request = AuthorizationRequest { request: parts, path: &path, rule, principal: &principal };
            if let Err(error) = authz::check_rule(&self.policy, &request) {
                return Start::Refuse(self.refuse_caller(parts, &path, rule, registered, &principal, error));
            }
        }
        Start::Pass(self.context(Some(principal), rules, path), Allowed::Authorized)
    }

    /// Authentication, then (on secured resources) authorization. Plugin panics are
    /// caught and refused with 500. An allowed request is logged once its
    /// handler has started ([`PendingAllow`]).
    async fn decide(
        self: Arc<Self>,
        handler: usize,
        rules: Applied,
        path: CanonicalPath,
        known: Option<Principal>,
        parts: &Parts,
    ) -> Result<AuthContext, Response<Bytes>> {
        let registered = &self.registry.handlers()[handler];
        let outcome = match known {
            Some(principal) => Ok(Ok(principal)),
            None => AssertUnwindSafe(registered.handler.authenticate(parts)).catch_unwind().await,
        };
        let principal = match outcome {
            Ok(Ok(principal)) => principal.stamped(registered.name()),
            Ok(Err(error)) => return Err(self.refuse(parts, Some(&path), Some(&rules.rule), Some(registered), error)),
            Err(_) => {
                let error = AuthError::internal("authentication handler panicked");
                return Err(self.refuse(parts, Some(&path), Some(&rules.rule), Some(registered), error));
            }
        };
        for rule in rules.each().filter(|rule| rule.is_secure()) {
            if let Err(error) = self.authorize(parts, &path, rule, &principal).await {
                return Err(self.refuse_caller(parts, &path, rule, registered, &principal, error));
            }
        }
        Ok(self.context(Some(principal), rules, path))
    }

    async fn authorize(
        &self,
        parts: &Parts,
        path: &CanonicalPath,
        rule: &Rule,
        principal: &Principal,
    ) -> Result<(), AuthError> {
        let request = AuthorizationRequest { request: parts, path, rule, principal };
        authz::check_rule(&self.policy, &request)?;
        for plugin in &self.authorizers {
            match AssertUnwindSafe(plugin.authorize(&request)).catch_unwind().await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error),
                Err(_) => return Err(AuthError::internal("authorization handler panicked")),
            }
        }
        Ok(())
    }

    fn context(self: &Arc<Self>, principal: Option<Principal>, rules: Applied, path: CanonicalPath) -> AuthContext {
        let refused_in_handler = AtomicBool::new(false);
        let data = ContextData { principal, rules, path, engine: self.clone(), refused_in_handler };
        AuthContext { data: Arc::new(data) }
    }

    pub(crate) fn challenges_for(&self, rule: &Rule) -> &[HeaderValue] {
        self.challenges.get(rule.id).unwrap_or(&self.default_challenges)
    }

    /// Builds a refusal and logs it. 401s without a credential carry one challenge per
    /// allowed scheme; a handler's own refusal carries that handler's challenge.
    fn refuse(
        &self,
        parts: &Parts,
        path: Option<&CanonicalPath>,
        rule: Option<&Rule>,
        handler: Option<&RegisteredHandler>,
        error: AuthError,
    ) -> Response<Bytes> {
        audit_refusal(
            parts,
            path,
            rule.map(|r| r as &dyn fmt::Display),
            handler.map(RegisteredHandler::name),
            None,
            &error,
        );
        let challenges: Vec<HeaderValue> = match (error.kind(), handler, rule) {
            (AuthErrorKind::Unauthenticated, _, Some(rule)) => self.challenges_for(rule).to_vec(),
            (_, Some(h), _) => handler_challenge(h, &self.realm, &error).into_iter().collect(),
            _ => Vec::new(),
        };
        error.to_response(&challenges, &*self.responder)
    }

    fn refuse_caller(
        &self,
        parts: &Parts,
        path: &CanonicalPath,
        rule: &Rule,
        handler: &RegisteredHandler,
        principal: &Principal,
        error: AuthError,
    ) -> Response<Bytes> {
        audit_refusal(parts, Some(path), Some(rule), Some(handler.name()), Some(principal), &error);
        let challenge = handler_challenge(handler, &self.realm, &error);
        error.to_response(&challenge.into_iter().collect::<Vec<_>>(), &*self.responder)
    }
}

/// Why the layer let a request through, for its audit event.
#[derive(Clone, Copy)]
enum Allowed {
    /// An authenticated caller the rules (and the plugins) allow.
    Authorized,
    /// No credential on an open resource.
    OpenResource,
    /// A token server endpoint, which authenticates its clients itself.
    TokenEndpoint,
}

impl Allowed {
    fn reason(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::OpenResource => "open resource",
            Self::TokenEndpoint => "authenticates its clients itself",
        }
    }
}

/// The "allow" audit event of a request the layer let through, logged once the inner
/// service has been polled: by then a handler's `#[secure]` rule or the `Principal`
/// extractor (the first to run in an axum handler) has refused or not, and a refusal is
/// the request's one event instead.
struct PendingAllow {
    context: AuthContext,
    method: Method,
    allowed: Allowed,
}

impl PendingAllow {
    fn log(self) {
        let data = &self.context.data;
        if data.refused_in_handler.load(Ordering::Acquire) {
            return;
        }
        let rule: &dyn fmt::Display = match self.allowed {
            Allowed::TokenEndpoint => &"token endpoint",
            _ => &data.rules,
        };
        let principal = data.principal.as_ref();
        tracing::info!(
            target: crate::AUDIT_TARGET,
            outcome = "allow",
            method = %self.method,
            path = %data.path,
            rule = %rule,
            caller = %principal.map_or_else(|| "-".to_owned(), |p| p.name().to_string()),
            handler = principal.map_or("-", Principal::authenticated_by),
            reason = self.allowed.reason(),
        );
    }
}

/// A handler's challenge for its own refusal; a plugin that panics here gets none.
fn handler_challenge(handler: &RegisteredHandler, realm: &str, error: &AuthError) -> Option<HeaderValue> {
    std::panic::catch_unwind(AssertUnwindSafe(|| handler.handler.challenge(realm, Some(error)))).ok().flatten()
}

/// A refusal's audit event. `rule` is what refused: a runtime rule, the rules a
/// request was held to, or a handler's `#[secure]` rule; `path` is `None` only when the
/// path itself was refused.
fn audit_refusal(
    parts: &Parts,
    path: Option<&CanonicalPath>,
    rule: Option<&dyn fmt::Display>,
    handler: Option<&str>,
    principal: Option<&Principal>,
    error: &AuthError,
) {
    tracing::warn!(
        target: crate::AUDIT_TARGET,
        outcome = "deny",
        status = error.status().as_u16(),
        method = %parts.method,
        path = %path.map_or_else(|| "<not canonical>".to_owned(), ToString::to_string),
        rule = %rule.map_or_else(|| "-".to_owned(), ToString::to_string),
        caller = %principal.map_or_else(|| "-".to_owned(), |p| p.name().to_string()),
        handler = handler.unwrap_or("-"),
        reason = error.reason(),
    );
}

pin_project! {
    /// The response future of [`SecureService`]: refused, authenticating, or running the
    /// inner service.
    pub struct ResponseFuture<F, S, B> {
        #[pin]
        state: State<F, S, B>,
        // Logged after the inner service's first poll, or when dropped before it.
        pending: Option<PendingAllow>,
    }

    impl<F, S, B> PinnedDrop for ResponseFuture<F, S, B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(pending) = this.project().pending.take() {
                pending.log();
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, S, B> {
        Refused { response: Option<Response<Bytes>> },
        Authenticating { fut: AuthFuture, inner: Option<S>, body: Option<B> },
        Inner { #[pin] fut: F },
    }
}

impl<F, S, B, ResBody, E> Future for ResponseFuture<F, S, B>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    S: Service<Request<B>, Response = Response<ResBody>, Error = E, Future = F>,
{
    type Output = Result<Response<SecureBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { response } => {
                    let response = response.take().unwrap_or_else(polled_after_completion);
                    return Poll::Ready(Ok(response.map(SecureBody::rejection)));
                }
                StateProj::Authenticating { fut, inner, body } => {
                    let (parts, decision) = match fut.as_mut().poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(ready) => ready,
                    };
                    let (context, mut service, body) = match (decision, inner.take(), body.take()) {
                        (Ok(context), Some(service), Some(body)) => (context, service, body),
                        (Err(response), _, _) => return Poll::Ready(Ok(response.map(SecureBody::rejection))),
                        _ => return Poll::Ready(Ok(polled_after_completion().map(SecureBody::rejection))),
                    };
                    let allowed = Allowed::Authorized;
                    *this.pending =
                        Some(PendingAllow { context: context.clone(), method: parts.method.clone(), allowed });
                    let mut request = Request::from_parts(parts, body);
                    request.extensions_mut().insert(context);
                    let fut = service.call(request);
                    this.state.set(State::Inner { fut });
                }
                StateProj::Inner { fut } => {
                    let polled = fut.poll(cx);
                    if let Some(pending) = this.pending.take() {
                        pending.log();
                    }
                    return polled.map(|result| result.map(|response| response.map(SecureBody::inner)));
                }
            }
        }
    }
}

/// Only reachable if a caller polls a finished future; answer 500 rather than panic.
fn polled_after_completion() -> Response<Bytes> {
    AuthError::internal("response future polled after completion").to_response(&[], &ProblemJson)
}

pin_project! {
    /// The response body of [`SecureService`]: the inner service's body, or a refusal.
    pub struct SecureBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B },
        Rejection { bytes: Option<Bytes> },
    }
}

impl<B> SecureBody<B> {
    fn inner(body: B) -> Self {
        Self { kind: BodyKind::Inner { body } }
    }

    fn rejection(bytes: Bytes) -> Self {
        Self { kind: BodyKind::Rejection { bytes: Some(bytes) } }
    }
}

impl<B: Body<Data = Bytes>> Body for SecureBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Rejection { bytes } => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Rejection { bytes } => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Rejection { bytes } => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}
