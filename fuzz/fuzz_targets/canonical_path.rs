//! Fuzzes the path canonicaliser and the rule lookup. Input: `METHOD path` (text; no
//! space means `GET`).
//!
//! * `CanonicalPath::parse` against a reference canonicaliser written from SPEC E1 with
//!   the `percent-encoding` crate: the same paths are refused, the same paths and tenants
//!   come out (E1, C5); a refused path never reaches a rule.
//! * What comes out is canonical: parsing it again gives it back (idempotence), it holds no
//!   dot or empty segment, no `;`, `\`, `%` or control character (E1); `/x/` is `/x`,
//!   `%61` is `a`, a leading `/t/{tenant}` changes the tenant and nothing else (E1, C5);
//!   over-long paths are refused quickly (F18).
//! * `Policy::lookup` over the realistic rule set of `src/rules.rs` picks exactly the rule
//!   a brute-force reading of the README's "most specific rule wins" picks (B3, B4, F1),
//!   `HEAD` as `GET`, 405 for methods outside `all` that no rule names (E2, F3).
//! * The whole layer (no credential) answers 400 for a refused path, 405, 401 on a secured
//!   rule and 200 only on an open one (E1, B2, F3), with the response invariants of
//!   `oracle::check_response`.
#![forbid(unsafe_code)]
#![no_main]

use std::time::{Duration, Instant};

use http::{Method, Request, Uri};
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use tower_secure::policy::{CanonicalPath, Methods, RuleOrigin, MAX_PATH_BYTES, MAX_SEGMENTS};
use tower_secure_fuzz::drive::send;
use tower_secure_fuzz::fixtures::standard_layer;
use tower_secure_fuzz::known;
use tower_secure_fuzz::oracle::{check_response, segments};
use tower_secure_fuzz::rules::{reference_lookup, RefLookup};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (method, raw) = match text.split_once(' ') {
        Some((method, raw)) => (method, raw),
        None => ("GET", text),
    };
    check_canonical(raw);
    let Ok(method) = Method::from_bytes(method.as_bytes()) else { return };
    if let Ok(path) = CanonicalPath::parse(raw) {
        check_lookup(&method, &path);
    }
    check_layer(method, raw);
});

/// SPEC E1, written independently: `Ok((path, tenant))` for a path the policy may decide
/// on, `Err(())` for one that must be refused with 400.
fn reference(raw: &str) -> Result<(String, Option<String>), ()> {
    if raw.len() > MAX_PATH_BYTES || !raw.starts_with('/') || raw.contains("//") {
        return Err(());
    }
    let body = &raw[1..];
    let body = body.strip_suffix('/').unwrap_or(body);
    let mut decoded: Vec<u8> = Vec::new();
    if !body.is_empty() {
        let parts: Vec<&str> = body.split('/').collect();
        if parts.len() > MAX_SEGMENTS {
            return Err(());
        }
        for part in parts {
            let bytes = part.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'%' && !(bytes.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))) {
                    return Err(());
                }
            }
            let segment: Vec<u8> = percent_decode_str(part).collect();
            // Controls (C0, DEL; C1 below, once the bytes are text), separators, `%`, `;`.
            let forbidden = |b: &u8| matches!(b, b'/' | b'\\' | b'%' | b';') || *b < 0x20 || *b == 0x7f;
            if segment.iter().any(forbidden) || segment.is_empty() || segment == b"." || segment == b".." {
                return Err(());
            }
            decoded.push(b'/');
            decoded.extend(segment);
        }
    }
    if decoded.is_empty() {
        decoded.push(b'/');
    }
    let path = String::from_utf8(decoded).map_err(|_| ())?;
    if path.chars().any(char::is_control) {
        return Err(());
    }
    Ok(match path.strip_prefix("/t/") {
        Some(rest) => {
            let (tenant, tail) = rest.split_once('/').unwrap_or((rest, ""));
            (format!("/{tail}"), Some(tenant.to_lowercase()))
        }
        None => (path, None),
    })
}

fn check_canonical(raw: &str) {
    let started = Instant::now();
    let parsed = CanonicalPath::parse(raw);
    assert!(started.elapsed() < Duration::from_secs(1), "SPEC F18: parsing took {:?}", started.elapsed());
    let expected = reference(raw);
    let got = parsed.as_ref().map(|p| (p.as_str().to_owned(), p.tenant().map(str::to_owned))).map_err(|_| ());
    if got != expected {
        // Known, reported findings are told apart so a run can step over them.
        let double_slash = expected.is_err() && got.is_ok() && raw.contains("//");
        let control = got.as_ref().is_ok_and(|(path, _)| path.chars().any(char::is_control));
        let known = if double_slash {
            "path-double-slash"
        } else if control {
            "path-c1-control"
        } else {
            panic!("SPEC E1: {raw:?}: the layer reads {got:?}, SPEC reads {expected:?}");
        };
        known::check(known, false, || format!("SPEC E1: {raw:?}: the layer reads {got:?}, SPEC refuses it"));
        // Tolerated: what follows assumes a canonical input.
        return;
    }
    let Ok(path) = parsed else { return };
    let text = path.as_str();
    assert!(text.starts_with('/'), "{raw:?} -> {text:?}");
    assert!(text == "/" || !text.ends_with('/'), "trailing slash left: {raw:?} -> {text:?}");
    for segment in path.segments() {
        assert!(!segment.is_empty() && segment != "." && segment != "..", "{raw:?} -> {text:?}");
    }
    assert_eq!(path.segments().count(), segments(text).len());
    assert!(!text.contains(['%', ';', '\\']), "{raw:?} -> {text:?}");
    assert!(!text.chars().any(char::is_control), "a control character survives: {raw:?} -> {text:?}");
    if let Some(tenant) = path.tenant() {
        assert!(!tenant.is_empty() && !tenant.contains('/'), "{raw:?} -> tenant {tenant:?}");
        assert_eq!(tenant, tenant.to_lowercase(), "tenants are lower case");
    }
    // Idempotent: the canonical form parses to itself.
    let shown = path.to_string();
    assert_eq!(CanonicalPath::parse(&shown).as_ref(), Ok(&path), "not idempotent: {raw:?} -> {shown:?}");
    let fits = |candidate: &str| candidate.len() <= MAX_PATH_BYTES && candidate.split('/').count() <= MAX_SEGMENTS;
    // `/x/` is `/x`.
    if !raw.ends_with('/') {
        let slashed = format!("{raw}/");
        if fits(&slashed) {
            assert_eq!(CanonicalPath::parse(&slashed).as_ref(), Ok(&path), "{raw:?} vs {slashed:?}");
        }
    }
    // A percent-encoded unreserved character is the character (decoding happens once).
    let in_escape = |at: usize| raw[..at].bytes().rev().take(2).any(|b| b == b'%');
    let unreserved =
        raw.char_indices().find(|(at, c)| (c.is_ascii_alphanumeric() || "-._~".contains(*c)) && !in_escape(*at));
    if let Some((at, c)) = unreserved {
        let encoded = format!("{}%{:02X}{}", &raw[..at], c as u32, &raw[at + 1..]);
        if fits(&encoded) {
            assert_eq!(CanonicalPath::parse(&encoded).as_ref(), Ok(&path), "{raw:?} vs {encoded:?}");
        }
    }
    // A leading `/t/{tenant}` sets the tenant and leaves the path (C5); only when the path
    // had none (a second one would be part of the path).
    if path.tenant().is_none() && raw != "/" {
        let prefixed = format!("/t/Fuzz.Example{raw}");
        if fits(&prefixed) {
            let p = CanonicalPath::parse(&prefixed).unwrap_or_else(|e| panic!("{prefixed:?}: {e}"));
            assert_eq!((p.as_str(), p.tenant()), (text, Some("fuzz.example")), "{prefixed:?}");
        }
    }
}

fn check_lookup(method: &Method, path: &CanonicalPath) {
    let policy = standard_layer().policy();
    let started = Instant::now();
    let got = policy.lookup(method, path);
    assert!(started.elapsed() < Duration::from_secs(1), "SPEC F18: lookup took {:?}", started.elapsed());
    let expected = reference_lookup(method.as_str(), &segments(path.as_str()));
    match (got, expected) {
        (Ok(rule), RefLookup::Rule(reference)) => {
            assert_eq!(rule.context(), reference.context, "{method} {path}: wrong rule");
            let methods: Option<Vec<&str>> = match rule.methods() {
                Methods::All => None,
                Methods::Only(list) => Some(list.iter().map(Method::as_str).collect()),
            };
            assert_eq!(methods.as_deref(), reference.methods, "{method} {path}: wrong rule");
        }
        (Ok(rule), RefLookup::SecureDefault) => {
            assert_eq!(rule.origin(), &RuleOrigin::SecureDefault, "{method} {path}: {rule} instead of the default");
            assert!(rule.is_secure());
        }
        (Err(failure), RefLookup::MethodNotAllowed) => {
            assert_eq!(failure, tower_secure::policy::LookupFailure::MethodNotAllowed);
        }
        (got, expected) => panic!("{method} {path}: the index says {got:?}, the reference {expected:?}"),
    }
    if method == Method::HEAD {
        let as_get = policy.lookup(&Method::GET, path).map(|r| r.context().to_owned());
        assert_eq!(policy.lookup(method, path).map(|r| r.context().to_owned()), as_get, "SPEC E2: HEAD is GET");
    }
}

fn check_layer(method: Method, raw: &str) {
    let Ok(uri) = Uri::try_from(raw) else { return };
    if uri.scheme().is_some() || uri.authority().is_some() {
        return;
    }
    let path = uri.path().to_owned();
    let request = Request::builder().method(method.clone()).uri(uri).body(()).expect("a request");
    let outcome = send(standard_layer(), request);
    check_response(&outcome);
    let code = outcome.code();
    let Ok(canonical) = CanonicalPath::parse(&path) else {
        assert_eq!(code, 400, "SPEC E1: {method} {path:?} must be refused before any rule");
        return;
    };
    let decoded = reference_lookup(method.as_str(), &segments(canonical.as_str()));
    // A router matching raw text reads `%xx` as it is: when that reading names a stricter
    // rule the layer may hold the request to it as well.
    let routed = path.contains('%').then(|| {
        let body = path.trim_start_matches('/');
        let body = body.strip_suffix('/').unwrap_or(body);
        let rest = match body.strip_prefix("t/") {
            Some(rest) => rest.split_once('/').map_or("", |(_, tail)| tail),
            None => body,
        };
        reference_lookup(method.as_str(), &segments(rest))
    });
    let expected = |lookup: RefLookup| match lookup {
        RefLookup::MethodNotAllowed => 405,
        lookup if lookup.is_secure() => 401,
        _ => 200,
    };
    let mut acceptable = vec![expected(decoded)];
    if let Some(routed) = routed {
        acceptable.push(expected(routed));
    }
    assert!(acceptable.contains(&code), "{method} {path:?}: {code}, expected one of {acceptable:?} ({decoded:?})");
    if code == 200 {
        assert!(outcome.caller().is_none(), "an anonymous request got a caller");
        assert!(!decoded.is_secure() || routed.is_some(), "SPEC B2: {method} {path:?} passed anonymously");
    }
}
