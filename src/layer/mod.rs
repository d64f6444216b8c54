//! [`SecureLayer`] and [`SecureService`]: the tower middleware. One request, end to end:
//! canonical path -> rule lookup -> handler selection -> authentication -> authorization
//! -> [`AuthContext`] in the request extensions -> inner service. The inner service is
//! only called once the decision is made.
//!
//! The decision is in `decision.rs`, what a handler sees of it (and the `#[secure]` check)
//! in `context.rs`, the response future and body in `response.rs`.

mod context;
mod decision;
mod response;

use std::any::Any;
use std::sync::Arc;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::authn::Registry;
use crate::authz::AuthorizationHandler;
use crate::error::{AuthError, ErrorResponder};
use crate::identity::Principal;
use crate::policy::Policy;
use crate::telemetry::Decisions;

pub use context::AuthContext;
pub(crate) use decision::decision_counters;
use decision::{PendingAllow, Start};
use response::AuthFuture;
pub use response::{ResponseFuture, SecureBody};

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
    /// This version's decision counters (feature `metrics`; empty without it).
    pub(crate) decisions: Decisions,
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
    /// The current configuration version, swapped whole by a reload.
    pub(crate) engine: Arc<ArcSwap<Engine>>,
    /// What the reloader needs (the builder's parts, the restart-only sections), opaque
    /// here: the layer serves requests and does not know how it is reloaded.
    pub(crate) reload: Arc<dyn Any + Send + Sync>,
}

impl SecureLayer {
    /// The compiled policy this layer enforces now.
    pub fn policy(&self) -> Arc<Policy> {
        self.engine.load().policy.clone()
    }

    /// What the layer would put in `request`'s extensions had it authenticated `principal`:
    /// the rules of the request's path, decided by this configuration. The rules themselves
    /// are not checked (for handler tests: `testing::with_principal`).
    #[cfg_attr(not(feature = "testing"), allow(dead_code))]
    pub(crate) fn context_for(&self, parts: &Parts, principal: Principal) -> Result<AuthContext, AuthError> {
        let engine = self.engine.load_full();
        let (path, rules) = engine.rules_for(parts).map_err(|(_, error)| error)?;
        Ok(engine.context(Some(principal), rules, path))
    }

    /// The authentication handlers by name, in the order they are asked.
    pub fn handler_order(&self) -> Vec<(String, i32)> {
        self.engine.load().registry.handlers().iter().map(|h| (h.name().to_owned(), h.priority)).collect()
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
        SecureService { inner, engine: self.engine.clone() }
    }
}

/// The service [`SecureLayer`] wraps around an inner service.
#[derive(Clone)]
pub struct SecureService<S> {
    inner: S,
    engine: Arc<ArcSwap<Engine>>,
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
        let engine = self.engine.load();
        match engine.start(&parts) {
            Start::Refuse(response) => ResponseFuture::refused(response),
            Start::Pass(context, allowed) => {
                let pending = PendingAllow { context: context.clone(), method: parts.method.clone(), allowed };
                let mut request = Request::from_parts(parts, body);
                request.extensions_mut().insert(context);
                ResponseFuture::inner(self.inner.call(request), pending)
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
                ResponseFuture::authenticating(fut, ready, body)
            }
        }
    }
}
