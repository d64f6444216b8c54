//! `bare-jwt`: no tower-secure; a minimal middleware that checks each bearer JWT with
//! `jsonwebtoken::decode_header` and one `jsonwebtoken::decode` (aws-lc, the crate's
//! backend; key by `kid`, `exp`/`iss`/`aud` checked), no cache, no rules. Under the same
//! fresh-token load it is the whole-process floor a fresh token costs: the layer's
//! fresh-token modes are judged against it, at the same request rate and on the same core.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use tower_secure_load::data::{Alg, DataDir};
use tower_secure_load::{AUDIENCE, ISSUER};

/// Each `kid`'s key and the validation for its one algorithm.
struct Keys(HashMap<&'static str, (DecodingKey, Validation)>);

fn decoding_key(dir: &DataDir, alg: Alg) -> DecodingKey {
    let pem = || std::fs::read(dir.public_key(alg)).expect("read a public key");
    match alg {
        Alg::Hs256 => DecodingKey::from_secret(&std::fs::read(dir.hmac_secret()).expect("read the HMAC secret")),
        Alg::Rs256 => DecodingKey::from_rsa_pem(&pem()).expect("RSA public key"),
        Alg::Es256 => DecodingKey::from_ec_pem(&pem()).expect("EC public key"),
        Alg::EdDsa => DecodingKey::from_ed_pem(&pem()).expect("Ed25519 public key"),
    }
}

fn keys(dir: &DataDir) -> Keys {
    let entry = |alg: Alg| {
        let mut validation = Validation::new(alg.jsonwebtoken());
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        (alg.kid(), (decoding_key(dir, alg), validation))
    };
    Keys(Alg::ALL.into_iter().map(entry).collect())
}

fn verified(keys: &Keys, request: &Request) -> bool {
    let token = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let Some(token) = token.and_then(|value| value.strip_prefix("Bearer ")) else { return false };
    let Ok(jwt_header) = jsonwebtoken::decode_header(token) else { return false };
    let Some((key, validation)) = jwt_header.kid.as_deref().and_then(|kid| keys.0.get(kid)) else { return false };
    jsonwebtoken::decode::<Value>(token, key, validation).is_ok()
}

async fn check(State(keys): State<Arc<Keys>>, request: Request, next: Next) -> Response {
    if verified(&keys, &request) {
        next.run(request).await
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

pub fn secure(router: Router, dir: &DataDir) -> Router {
    // tower-secure installs this when its bearer handler is built; nothing of it runs here.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    router.layer(middleware::from_fn_with_state(Arc::new(keys(dir)), check))
}
