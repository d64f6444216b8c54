//! Fuzzes JWT header and claims handling with structured inputs: `jwt::TokenSpec` builds
//! a token from fuzzed choices (algorithm, `kid`, `typ`, `crit`, `jku`/`x5u`/`jwk`/`x5c`,
//! issuer, audience, subject, time claims, `scope`/`scp`, roles, `client_id`, `cnf`) or
//! from fuzzed JSON bytes for the header and the payload, signed correctly, with another
//! key or algorithm, with a flipped bit, non-canonical or padded base64url, or not at all;
//! the layer answers it on one of the routes of `credential::ROUTES`.
//!
//! The oracle (`jwt::judge`, independent of the library) predicts the exact answer in
//! both directions whenever no time claim sits at a leeway boundary:
//! * accepted only with the configured key for the issuer and `kid`, `alg` equal to that
//!   key's, no `crit`, keys never from the token (A5, F8, F9);
//! * `exp` required, `nbf`/`iat` not ahead beyond the leeway, `iss` exact, `aud`
//!   containing the audience, claims of the wrong JSON type refused, `cnf` honoured
//!   (F10, F11, A11);
//! * scopes exact and space-delimited (or a `scp` array), never comma-split or matched as
//!   substrings (F12); the caller is `sub` parsed as a qualified name (F15);
//! * 401 `invalid_token` for a bad token, 403 by the rule's scopes, permissions and tenant
//!   (A7, C2, C5), on open routes too (F5); never 5xx, nothing reflected (F13).
#![forbid(unsafe_code)]
#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use tower_secure_fuzz::credential::{self, classify, route};
use tower_secure_fuzz::drive::send;
use tower_secure_fuzz::fixtures::standard_layer;
use tower_secure_fuzz::jwt::{self, BearerInput};
use tower_secure_fuzz::oracle::check_response;

fuzz_target!(|input: BearerInput| {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let token = jwt::build(&input.token, now);
    let value = format!("Bearer {token}");
    let Ok(header) = HeaderValue::from_str(&value) else { return };
    let route = route(input.route);
    let (credential, certainty) = classify(&[value.as_bytes()], now);
    let mut request = route.request().body(()).expect("a request");
    request.headers_mut().insert(AUTHORIZATION, header);
    let outcome = send(standard_layer(), request);
    check_response(&outcome);
    credential::check(route, &credential, certainty, &outcome);
});
