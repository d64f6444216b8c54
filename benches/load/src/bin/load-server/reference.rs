//! The outside reference: `jwt-authorizer` 0.15's own tower layer checking RS256 tokens
//! (issuer, audience, `exp`, and the route's scope through its claims checker).
//!
//! Its layer is generic over the inner service but needs `Response: From<AuthError>`, which
//! axum 0.8's response cannot implement here (both foreign), so the route's responses are
//! wrapped in `Reply` below it and unwrapped above it: two moves of a response, nothing
//! else. Its validation runs unchanged: `jsonwebtoken` 9 on ring, no cache (every request
//! verifies the signature), one boxed future and one `String` per request.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use jwt_authorizer::{AuthError, IntoLayer, JwtAuthorizer, Validation};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_secure_load::data::{Alg, DataDir};
use tower_secure_load::{AUDIENCE, ISSUER, SCOPE};

#[derive(Debug, Clone, Deserialize)]
struct Claims {
    scope: String,
}

/// A response jwt-authorizer can build from its error.
struct Reply(Response);

impl From<AuthError> for Reply {
    fn from(error: AuthError) -> Self {
        let status = match error {
            AuthError::InvalidClaims() => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        Reply(status.into_response())
    }
}

pub async fn secure(router: Router, dir: &DataDir) -> Router {
    let pem = DataDir::read(&dir.public_key(Alg::Rs256));
    let authorizer = JwtAuthorizer::<Claims>::from_rsa_pem_text(&pem)
        .validation(Validation::new().iss(&[ISSUER]).aud(&[AUDIENCE]))
        .check(|claims: &Claims| claims.scope.split(' ').any(|scope| scope == SCOPE))
        .build()
        .await
        .expect("jwt-authorizer builds from the RS256 public key");
    let layer =
        ServiceBuilder::new().map_response(|reply: Reply| reply.0).layer(authorizer.into_layer()).map_response(Reply);
    router.layer(layer)
}
