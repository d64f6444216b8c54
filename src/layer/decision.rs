// The decision on one request: the rules that apply, the handler that authenticates,
// authorization, the refusal responses and the audit events.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::request::Parts;
use http::{HeaderValue, Method, Response};

use crate::authn::header::single_authorization;
use crate::authn::{RegisteredHandler, Registry};
use crate::authz::{self, AuthorizationRequest};
use crate::error::{AuthError, AuthErrorKind};
use crate::identity::Principal;
use crate::policy::{CanonicalPath, LookupFailure, Policy, Rule};
use crate::telemetry::{Decisions, Outcome, RuleSlot};

use super::context::ContextData;
use super::{AuthContext, Engine};

/// The first, synchronous part of a decision.
pub(super) enum Start {
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
pub(super) struct Applied {
    pub(super) rule: Arc<Rule>,
    pub(super) routed: Option<Arc<Rule>>,
}

impl Applied {
    pub(super) fn each(&self) -> impl Iterator<Item = &Rule> {
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
    pub(super) fn start(self: &Arc<Self>, parts: &Parts) -> Start {
        let raw_path = crate::policy::request_path(parts);
        let (path, rules) = match self.rules_for(parts) {
            Ok(applied) => applied,
            Err((path, error)) => return Start::Refuse(self.refuse(parts, path.as_ref(), None, None, error)),
        };
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

    /// The canonical path of a request and the rules that apply to it: the rule of the
    /// decoded path and, when a router matching raw text dispatches it elsewhere, that rule
    /// too. An error (with the path, once it parsed) for a malformed path, a method no rule
    /// allows, or two regex rules that tie.
    pub(super) fn rules_for(
        &self,
        parts: &Parts,
    ) -> Result<(CanonicalPath, Applied), (Option<CanonicalPath>, AuthError)> {
        let raw_path = crate::policy::request_path(parts);
        let path = CanonicalPath::parse(raw_path).map_err(|e| (None, AuthError::invalid_request(e.to_string())))?;
        let rule = match self.lookup(parts, &path) {
            Ok(rule) => rule,
            Err(error) => return Err((Some(path), error)),
        };
        let routed = match CanonicalPath::as_routed(raw_path) {
            None => None,
            Some(routed_path) => match self.lookup(parts, &routed_path) {
                Ok(routed) => (!Arc::ptr_eq(&routed, &rule)).then_some(routed),
                Err(error) => return Err((Some(path), error)),
            },
        };
        Ok((path, Applied { rule, routed }))
    }

    /// The rule for `path`; an error when no rule allows the method or two regex rules tie.
    fn lookup(&self, parts: &Parts, path: &CanonicalPath) -> Result<Arc<Rule>, AuthError> {
        self.policy.lookup(&parts.method, path).cloned().map_err(|failure| match failure {
            LookupFailure::MethodNotAllowed => {
                AuthError::new(AuthErrorKind::MethodNotAllowed, "method not allowed by any rule")
            }
            LookupFailure::Ambiguous => AuthError::internal("two regex rules of equal rank match this path"),
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
    pub(super) async fn decide(
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

    pub(super) fn context(
        self: &Arc<Self>,
        principal: Option<Principal>,
        rules: Applied,
        path: CanonicalPath,
    ) -> AuthContext {
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
        let slot = rule.map_or(RuleSlot::NoRule, |rule| RuleSlot::Compiled(rule.id));
        self.decisions.record(outcome_of(&error), handler.map(RegisteredHandler::name), slot);
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
        error.to_response(&parts.headers, &challenges, &*self.responder)
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
        self.decisions.record(outcome_of(&error), Some(handler.name()), RuleSlot::Compiled(rule.id));
        audit_refusal(parts, Some(path), Some(rule), Some(handler.name()), Some(principal), &error);
        let challenge = handler_challenge(handler, &self.realm, &error);
        error.to_response(&parts.headers, &challenge.into_iter().collect::<Vec<_>>(), &*self.responder)
    }
}

/// Why the layer let a request through, for its audit event.
#[derive(Clone, Copy)]
pub(super) enum Allowed {
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
pub(super) struct PendingAllow {
    pub(super) context: AuthContext,
    pub(super) method: Method,
    pub(super) allowed: Allowed,
}

impl PendingAllow {
    pub(super) fn log(self) {
        let data = &self.context.data;
        if data.refused_in_handler.load(Ordering::Acquire) {
            return;
        }
        let rule: &dyn fmt::Display = match self.allowed {
            Allowed::TokenEndpoint => &"token endpoint",
            _ => &data.rules,
        };
        let principal = data.principal.as_ref();
        let slot = match self.allowed {
            Allowed::TokenEndpoint => RuleSlot::TokenEndpoint,
            _ => RuleSlot::Compiled(data.rules.rule.id),
        };
        data.engine.decisions.record(Outcome::Allowed, principal.map(Principal::authenticated_by), slot);
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

/// The decision counters of an engine with this policy and these handlers: rules are
/// labelled by their `file:line` origin, handlers by their registered names.
pub(crate) fn decision_counters(policy: &Policy, registry: &Registry) -> Decisions {
    let rules = policy.rules().iter().map(|rule| rule.origin().to_string());
    Decisions::new(rules, registry.handlers().iter().map(|h| h.name().to_owned()))
}

/// The `outcome` label of a refusal.
pub(super) fn outcome_of(error: &AuthError) -> Outcome {
    match error.kind() {
        AuthErrorKind::InvalidRequest => Outcome::InvalidRequest,
        AuthErrorKind::HeaderTooLarge => Outcome::HeaderTooLarge,
        AuthErrorKind::Unauthenticated => Outcome::Unauthenticated,
        AuthErrorKind::InvalidCredentials => Outcome::InvalidCredentials,
        AuthErrorKind::Forbidden => Outcome::Forbidden,
        AuthErrorKind::MethodNotAllowed => Outcome::MethodNotAllowed,
        AuthErrorKind::TooManyRequests => Outcome::TooManyRequests,
        AuthErrorKind::Unavailable => Outcome::Unavailable,
        AuthErrorKind::Internal => Outcome::Internal,
    }
}

/// A handler's challenge for its own refusal; a plugin that panics here gets none.
pub(super) fn handler_challenge(handler: &RegisteredHandler, realm: &str, error: &AuthError) -> Option<HeaderValue> {
    std::panic::catch_unwind(AssertUnwindSafe(|| handler.handler.challenge(realm, Some(error)))).ok().flatten()
}

/// A refusal's audit event. `rule` is what refused: a runtime rule, the rules a
/// request was held to, or a handler's `#[secure]` rule; `path` is `None` only when the
/// path itself was refused.
pub(super) fn audit_refusal(
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
