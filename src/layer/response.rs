// The response future and body of `SecureService`: a refusal, the authentication still
// running, or the inner service's answer.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::request::Parts;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::error::{AuthError, ProblemJson};

use super::decision::{Allowed, PendingAllow};
use super::AuthContext;

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

/// The authentication and authorization still running, then the request's parts back.
pub(super) type AuthFuture = Pin<Box<dyn Future<Output = (Parts, Result<AuthContext, Response<Bytes>>)> + Send>>;

impl<F, S, B> ResponseFuture<F, S, B> {
    /// A refusal decided at once.
    pub(super) fn refused(response: Response<Bytes>) -> Self {
        Self { state: State::Refused { response: Some(response) }, pending: None }
    }

    /// The inner service's answer to an allowed request, logged once it runs.
    pub(super) fn inner(fut: F, pending: PendingAllow) -> Self {
        Self { state: State::Inner { fut }, pending: Some(pending) }
    }

    /// The decision still running; `inner` and `body` wait for it.
    pub(super) fn authenticating(fut: AuthFuture, inner: S, body: B) -> Self {
        Self { state: State::Authenticating { fut, inner: Some(inner), body: Some(body) }, pending: None }
    }
}

/// Only reachable if a caller polls a finished future; answer 500 rather than panic.
fn polled_after_completion() -> Response<Bytes> {
    AuthError::internal("response future polled after completion").to_response(
        &http::HeaderMap::new(),
        &[],
        &ProblemJson,
    )
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

    /// A refusal's body; an empty one (a gRPC status) ends the stream at once, so the
    /// status travels as a trailers-only response.
    fn rejection(bytes: Bytes) -> Self {
        Self { kind: BodyKind::Rejection { bytes: (!bytes.is_empty()).then_some(bytes) } }
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
