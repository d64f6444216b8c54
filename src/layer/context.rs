// What the layer decided about a request, as handlers and extractors see it, and the
// check of a handler's own `#[secure]` rule against it.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::Response;

use crate::authn::RegisteredHandler;
use crate::authz;
use crate::error::{AuthError, AuthErrorKind};
use crate::identity::Principal;
use crate::policy::{CanonicalPath, Rule};
use crate::telemetry::RuleSlot;

use super::decision::{audit_refusal, handler_challenge, outcome_of, Applied};
use super::Engine;

/// What the layer decided about a request, in its extensions for handlers and
/// extractors: the caller (if any), the rule that applied and the path it was decided on.
/// Cheap to clone (one reference count).
#[derive(Clone)]
pub struct AuthContext {
    pub(super) data: Arc<ContextData>,
}

pub(super) struct ContextData {
    pub(super) principal: Option<Principal>,
    pub(super) rules: Applied,
    pub(super) path: CanonicalPath,
    /// The configuration version that decided, for the responses of the extractors and of
    /// `#[secure]` handler rules (challenges, body, scope bindings): never a newer one.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(super) engine: Arc<Engine>,
    /// Set when a handler's `#[secure]` rule or the `Principal` extractor refused the
    /// request the layer let through: that refusal is then the request's audit event, and
    /// the layer logs no "allow" for it.
    pub(super) refused_in_handler: AtomicBool,
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
        let slot = RuleSlot::Compiled(self.data.rules.rule.id);
        self.refused_in_handler(parts, &self.data.rules, slot, None, None, &error);
        self.unauthenticated(parts, error)
    }

    /// A 401 for this resource, with its challenges and the configured body.
    fn unauthenticated(&self, parts: &Parts, error: AuthError) -> Response<Bytes> {
        let engine = &self.data.engine;
        error.to_response(&parts.headers, engine.challenges_for(self.rule()), &*engine.responder)
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
            self.refused_in_handler(parts, rule, RuleSlot::HandlerRule, None, None, &error);
            return Err(self.unauthenticated(parts, error));
        };
        let policy = &engine.policy;
        match authz::check_requirements(required, principal, &|name| policy.scope(name)) {
            Ok(()) => Ok(()),
            Err(error) => {
                let registered = engine.registry.handlers().iter().find(|h| h.name() == principal.authenticated_by());
                let handler = registered.map(RegisteredHandler::name);
                self.refused_in_handler(parts, rule, RuleSlot::HandlerRule, handler, Some(principal), &error);
                let challenge = registered.and_then(|h| handler_challenge(h, &engine.realm, &error));
                Err(error.to_response(&parts.headers, &challenge.into_iter().collect::<Vec<_>>(), &*engine.responder))
            }
        }
    }

    /// Logs a refusal made after the layer let the request through, in place of the
    /// layer's "allow".
    fn refused_in_handler(
        &self,
        parts: &Parts,
        rule: &dyn fmt::Display,
        slot: RuleSlot,
        handler: Option<&str>,
        principal: Option<&Principal>,
        error: &AuthError,
    ) {
        self.data.refused_in_handler.store(true, Ordering::Release);
        self.data.engine.decisions.record(outcome_of(error), handler, slot);
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
