//! Fuzzes JWT handling up to and including the signature check, through the whole layer:
//! a `SecureLayer` with the fixture HS256/HS512 issuers answers `Authorization: Bearer
//! <fuzzed>` on one of the routes of `credential::ROUTES`. Input: one selector byte (route;
//! bit 5: the scheme as `bEaReR`), then the token.
//!
//! * A 200 on a secured route only for a token the independent oracle of `jwt::judge`
//!   accepts: signed (HMAC through aws-lc) by the key configuration selects by issuer and
//!   `kid`, `alg` equal to that key's, no `crit`, `exp` present and not past, `nbf`/`iat`
//!   not ahead, `iss` exact, `aud` containing the audience (A5, F8-F11), with the caller
//!   and scopes the token names (F12); no token from anyone else (F9: `jku`, `jwk`, `x5u`
//!   never supply keys).
//! * Otherwise exactly the oracle's answer (400 malformed, 431 oversized, 401 invalid,
//!   403 by the rule) when no time claim sits at a boundary (A7, F5, F6, F18); never 5xx;
//!   refusals reflect nothing (F13).
#![forbid(unsafe_code)]
#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_secure_fuzz::credential::{self, classify, route};
use tower_secure_fuzz::drive::send;
use tower_secure_fuzz::fixtures::standard_layer;
use tower_secure_fuzz::oracle::check_response;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, token)) = data.split_first() else { return };
    let scheme: &[u8] = if selector & 0x20 != 0 { b"bEaReR " } else { b"Bearer " };
    let value = [scheme, token].concat();
    let Ok(header) = HeaderValue::from_bytes(&value) else { return };
    let route = route(selector & 0x1f);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (credential, certainty) = classify(&[&value], now);
    let mut request = route.request().body(()).expect("a request");
    request.headers_mut().insert(AUTHORIZATION, header);
    let outcome = send(standard_layer(), request);
    check_response(&outcome);
    credential::check(route, &credential, certainty, &outcome);
});
