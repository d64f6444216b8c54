//! Fuzzes `Authorization` header parsing, Basic and Bearer: the public helpers of
//! `tower_secure::authn::header` on the raw bytes, and the whole layer (Basic against the
//! fixture users, Bearer against the HS256/HS512 issuers) on one of the routes of
//! `credential::ROUTES`. Input: one selector byte (route; bit 5: send the header twice;
//! bit 6: add identity, rewrite and override headers and a token in the query), then the
//! header value.
//!
//! * `single_authorization`, `has_scheme` and `token68` agree with SPEC F6 read
//!   independently: one header, 16 KiB cap (431), visible ASCII, case-insensitive scheme,
//!   `1*SP`, token68, no trailing data (A2, E3, F6).
//! * The layer answers exactly what `credential::expected` derives from the bytes: 400
//!   for two headers or a malformed credential, 431 over the limits, 401 for an invalid
//!   credential on open routes too, 200 or 403 for a valid one by the rule's permissions,
//!   scopes and tenant (A2-A4, A7, B2, C1-C5, F5-F7, F12); never 5xx; refusals reflect
//!   nothing (F13).
//! * Identity headers (`X-Forwarded-User`, `Remote-User`, `WSO2-Identity-User`), rewrite
//!   headers (`X-Original-URL`), method overrides and tokens in the query or a cookie
//!   change nothing (E1, F3, F4).
#![forbid(unsafe_code)]
#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tower_secure::authn::header::{has_scheme, single_authorization, token68};
use tower_secure_fuzz::credential::{self, classify, route, Judged};
use tower_secure_fuzz::drive::send;
use tower_secure_fuzz::fixtures::standard_layer;
use tower_secure_fuzz::jwt::Certainty;
use tower_secure_fuzz::oracle::check_response;

/// A valid token of `admin` (HS256, kid `hs`, until 2100), for the query and the cookie.
const ADMIN_TOKEN: &str = include_str!("../fixtures/admin.jwt");

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else { return };
    let Ok(header) = HeaderValue::from_bytes(value) else { return };
    check_helpers(&header);
    let twice = selector & 0x20 != 0;
    let noise = selector & 0x40 != 0;
    let route = route(selector & 0x1f);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let values: Vec<&[u8]> = if twice { vec![value, value] } else { vec![value] };
    let (credential, certainty) = classify(&values, now);

    let mut request = route.request().body(()).expect("a request");
    for _ in 0..values.len() {
        request.headers_mut().append(AUTHORIZATION, header.clone());
    }
    let outcome = send(standard_layer(), request);
    check_response(&outcome);
    credential::check(route, &credential, certainty, &outcome);

    if noise {
        let uri = format!("{}?access_token={}&user=admin", route.path, ADMIN_TOKEN.trim());
        let mut request = http::Request::builder().method(route.method).uri(uri).body(()).expect("a request");
        let headers = request.headers_mut();
        for _ in 0..values.len() {
            headers.append(AUTHORIZATION, header.clone());
        }
        for (name, value) in [
            ("x-forwarded-user", "admin"),
            ("remote-user", "admin"),
            ("wso2-identity-user", "admin"),
            ("x-original-url", "/public/x"),
            ("x-rewrite-url", "/public/x"),
            ("x-http-method-override", "GET"),
            ("x-http-method", "GET"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let cookie = format!("access_token={}", ADMIN_TOKEN.trim());
        headers.insert("cookie", HeaderValue::from_str(&cookie).expect("a cookie"));
        let noisy = send(standard_layer(), request);
        check_response(&noisy);
        let certain = certainty == Certainty::Certain;
        if certain {
            assert_eq!(noisy.status, outcome.status, "SPEC F4: identity headers or query tokens changed the answer");
            let name = |o: &tower_secure_fuzz::drive::Outcome| o.caller().map(|p| p.name().clone());
            assert_eq!(name(&noisy), name(&outcome), "SPEC F4: identity headers changed the caller");
        }
    }
});

/// The public header helpers against SPEC F6 read independently.
fn check_helpers(header: &HeaderValue) {
    let bytes = header.as_bytes();
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, header.clone());
    match single_authorization(&headers) {
        Ok(Some(value)) => {
            assert_eq!(value, header);
            assert!(bytes.len() <= credential::MAX_AUTHORIZATION_BYTES);
            assert!(bytes.iter().all(|&b| b == b' ' || b.is_ascii_graphic()), "SPEC F6: {bytes:?} accepted");
        }
        Ok(None) => panic!("a present header reads as absent"),
        Err(error) => {
            let expected = if bytes.len() > credential::MAX_AUTHORIZATION_BYTES { 431 } else { 400 };
            assert_eq!(error.status().as_u16(), expected, "{bytes:?}: {error:?}");
            assert!(expected == 431 || !bytes.iter().all(|&b| b == b' ' || b.is_ascii_graphic()));
        }
    }
    headers.append(AUTHORIZATION, header.clone());
    assert_eq!(single_authorization(&headers).map(|_| ()).map_err(|e| e.status().as_u16()), Err(400), "SPEC A2");

    let scheme_end = bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len());
    for scheme in ["Basic", "Bearer"] {
        assert_eq!(has_scheme(header, scheme), bytes[..scheme_end].eq_ignore_ascii_case(scheme.as_bytes()));
    }
    let result = token68(header, credential::MAX_BASIC_TOKEN);
    if !bytes.iter().all(|&b| b == b' ' || b.is_ascii_graphic()) {
        if !bytes.is_ascii() {
            assert_eq!(result.map_err(|e| e.status().as_u16()), Err(400), "SPEC F6: non-ASCII bytes are 400");
        }
        return;
    }
    let text = std::str::from_utf8(bytes).expect("visible ASCII");
    // The Basic oracle checks what token68 checks (with Basic's cap), then more.
    match (result, credential::basic(text)) {
        (Err(e), Judged::TooLarge) => assert_eq!(e.status().as_u16(), 431, "{text:?}"),
        (Err(e), Judged::Malformed) => assert_eq!(e.status().as_u16(), 400, "{text:?}"),
        (Err(e), other) => panic!("SPEC F6: {text:?}: token68 refused ({e:?}), SPEC reads {other:?}"),
        (Ok(token), Judged::TooLarge) => panic!("SPEC E3: {text:?}: token68 took an over-long {token:?}"),
        (Ok(token), _) => {
            assert!(text.ends_with(token), "the token is the end of the header");
            let body = token.trim_end_matches('=');
            assert!(!body.is_empty() && body.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)));
            let before = &text[..text.len() - token.len()];
            let (_scheme, spaces) = before.split_once(' ').expect("a space after the scheme");
            assert!(spaces.bytes().all(|b| b == b' '), "SPEC F6: only spaces between scheme and token");
        }
    }
}
