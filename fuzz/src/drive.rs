//! Driving a [`SecureLayer`] the way a server does: `oneshot` one request through the layer
//! around an inner service that records what the layer decided.

use std::convert::Infallible;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use tokio::runtime::Runtime;
use tower::{Layer as _, ServiceExt as _};
use tower_secure::{AuthContext, Principal, SecureLayer};

/// One current-thread runtime per fuzz process (the Basic handler hashes on its blocking
/// pool; user-store look-ups have a timeout).
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime"))
}

/// What the inner service saw when the layer let a request through.
#[derive(Debug, Clone)]
pub struct Passed {
    /// The caller; `None` for an anonymous caller of an open resource.
    pub principal: Option<Principal>,
    /// Whether the rule the layer reported was secured.
    pub rule_secure: bool,
    /// The `context` of that rule.
    pub rule_context: String,
    /// The tenant of the path.
    pub tenant: Option<String>,
}

/// The layer's answer to one request.
#[derive(Debug)]
pub struct Outcome {
    /// The status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The response body.
    pub body: Bytes,
    /// `Some` when the inner service ran (the layer let the request through).
    pub passed: Option<Passed>,
}

impl Outcome {
    /// The status as a number.
    pub fn code(&self) -> u16 {
        self.status.as_u16()
    }

    /// The caller the inner service saw, if it ran and the caller was authenticated.
    pub fn caller(&self) -> Option<&Principal> {
        self.passed.as_ref().and_then(|p| p.principal.as_ref())
    }

    /// The `WWW-Authenticate` values.
    pub fn challenges(&self) -> Vec<String> {
        self.headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// The inner service: answers 200 and hands what the layer decided back in the response
/// extensions. Running without an [`AuthContext`] would mean the layer let a request through
/// undecided (SPEC E8): that panics, which the fuzzer reports.
async fn echo(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let context = request
        .extensions()
        .get::<AuthContext>()
        .cloned()
        .unwrap_or_else(|| panic!("SPEC E8: the inner service ran without an AuthContext"));
    let passed = Passed {
        principal: context.principal().cloned(),
        rule_secure: context.rule().is_secure(),
        rule_context: context.rule().context().to_owned(),
        tenant: context.tenant().map(str::to_owned),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"inner")));
    response.extensions_mut().insert(passed);
    Ok(response)
}

/// Sends `request` through `layer` and collects the answer.
pub fn send(layer: &SecureLayer, request: Request<()>) -> Outcome {
    let service = layer.layer(tower::service_fn(echo));
    runtime().block_on(async move {
        let response = match service.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        let passed = parts.extensions.get::<Passed>().cloned();
        Outcome { status: parts.status, headers: parts.headers, body, passed }
    })
}
