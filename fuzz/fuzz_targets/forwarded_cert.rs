//! Fuzzes the forwarded-certificate header: a layer with `[client_cert] forwarded_header =
//! "Client-Cert"` in one of the four `forwarded_format`s, `trusted_proxies = ["127.0.0.1",
//! "::1"]`, the fixture root as `ca_file` and the intermediates as `intermediates_file`,
//! the peer address in the request extensions as axum's `ConnectInfo<SocketAddr>`, and the
//! header value fuzzed. Input: two selector bytes, then the header value. Byte 0: route
//! (bits 0-4), peer 10.0.0.7 instead of 127.0.0.1 (bit 5), a real TLS client certificate
//! too (bit 6), the header twice (bit 7). Byte 1: no peer address at all (bit 0), the
//! intermediate allow-list (bit 1), the format (bits 2-3: `rfc9440`, `pem`,
//! `pem-urlencoded`, `xfcc`).
//!
//! * From an untrusted peer, from an unknown peer, or next to a real TLS certificate the
//!   header changes nothing: the answer equals the one without it (F4, F16).
//! * From a trusted peer: two headers, or a value that is not exactly one certificate in
//!   the configured format (decoded here independently, from the formats' documented
//!   grammar: nothing before, after or around the certificate; XFCC one element with the
//!   Hash of its Cert) is 400; a decoded certificate goes through the same chain
//!   validation as a TLS one and the answer is exactly `certs::expected` (A8, A9,
//!   F14-F16); never 5xx, nothing reflected (F13).
#![forbid(unsafe_code)]
#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::SystemTime;

use axum::extract::ConnectInfo;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use tower_secure::authn::ClientCertificate;
use tower_secure::config::ForwardedFormat;
use tower_secure::SecureLayer;
use tower_secure_fuzz::certs::{self, fixture_path, pki, Facts, ALLOW_LIST};
use tower_secure_fuzz::credential::{route, Route};
use tower_secure_fuzz::drive::{send, Outcome};
use tower_secure_fuzz::fixtures::layer;
use tower_secure_fuzz::oracle::check_response;

const HEADER: &str = "client-cert";
/// Longest forwarded header the layer reads.
const MAX_FORWARDED_BYTES: usize = 16 * 1024;

const FORMATS: [ForwardedFormat; 4] =
    [ForwardedFormat::Rfc9440, ForwardedFormat::Pem, ForwardedFormat::PemUrlencoded, ForwardedFormat::Xfcc];

fn client_cert_body(format: ForwardedFormat) -> String {
    format!(
        "forwarded_header = \"Client-Cert\"\nforwarded_format = \"{format}\"\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\nca_file = '{}'\nintermediates_file = '{}'\n",
        fixture_path("root.pem").display(),
        fixture_path("intermediates.pem").display()
    )
}

fn forwarding_layer(format: ForwardedFormat, allow_list: bool) -> &'static SecureLayer {
    static LAYERS: [[OnceLock<SecureLayer>; 2]; 4] = [const { [const { OnceLock::new() }; 2] }; 4];
    let index = FORMATS.iter().position(|f| *f == format).unwrap_or(0);
    LAYERS[index][usize::from(allow_list)]
        .get_or_init(|| layer(&client_cert_body(format), if allow_list { ALLOW_LIST } else { "" }))
}

/// A valid TLS client certificate of `bob`, from the allowed intermediate.
fn direct_cert() -> &'static ClientCertificate {
    static CERT: OnceLock<ClientCertificate> = OnceLock::new();
    CERT.get_or_init(|| {
        let pki = pki();
        let leaf = certs::issue(&certs::client_params("bob"), &pki.allowed).expect("a leaf");
        let chain = [leaf, pki.allowed_der.clone()];
        ClientCertificate::verify(&chain, &pki.roots, SystemTime::now()).expect("a certificate")
    })
}

/// The certificate in a forwarded header written in `format`, decoded as SPEC F16 and the
/// README's format table describe, independently of the library. `Err` means 400.
fn decode(format: ForwardedFormat, value: &[u8]) -> Result<Vec<u8>, ()> {
    if value.len() > MAX_FORWARDED_BYTES {
        return Err(());
    }
    let text = std::str::from_utf8(value).map_err(|_| ())?.trim_matches(|c| c == ' ' || c == '\t');
    let der = match format {
        ForwardedFormat::Rfc9440 => byte_sequence(text)?,
        ForwardedFormat::Pem => pem(text)?,
        ForwardedFormat::PemUrlencoded => pem(&url_decode(text)?)?,
        ForwardedFormat::Xfcc => xfcc(text)?,
        other => panic!("no oracle for the forwarded format {other}: add one"),
    };
    if der.is_empty() {
        return Err(());
    }
    Ok(der)
}

fn is_base64_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='
}

/// `:` base64 `:`, nothing else.
fn byte_sequence(text: &str) -> Result<Vec<u8>, ()> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < 2 || chars[0] != ':' || chars[chars.len() - 1] != ':' {
        return Err(());
    }
    let inner: String = chars[1..chars.len() - 1].iter().collect();
    if !inner.chars().all(is_base64_char) {
        return Err(());
    }
    STANDARD.decode(inner).map_err(|_| ())
}

/// One `CERTIFICATE` block: the armor lines at both ends (whitespace around), base64 and
/// whitespace between.
fn pem(text: &str) -> Result<Vec<u8>, ()> {
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    let text = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'));
    if text.len() < begin.len() + end.len() || !text.starts_with(begin) || !text.ends_with(end) {
        return Err(());
    }
    let body = &text[begin.len()..text.len() - end.len()];
    let mut base64 = String::new();
    for c in body.chars() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {}
            c if is_base64_char(c) => base64.push(c),
            _ => return Err(()),
        }
    }
    STANDARD.decode(base64).map_err(|_| ())
}

/// `%XX` escapes and, as they are, letters, digits and `-._~+/=`; the result is text.
fn url_decode(text: &str) -> Result<String, ()> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3).ok_or(())?).map_err(|_| ())?;
            if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(());
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| ())?);
            i += 3;
        } else if b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b) {
            out.push(b);
            i += 1;
        } else {
            return Err(());
        }
    }
    String::from_utf8(out).map_err(|_| ())
}

/// Envoy XFCC, one element: split into pairs by a character state machine, then the key
/// rules (Hash, Cert once and required, Subject at most once, By/URI/DNS any number, no
/// Chain, nothing else) and Hash = SHA-256(Cert).
fn xfcc(text: &str) -> Result<Vec<u8>, ()> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let (mut key, mut value) = (String::new(), String::new());
    // 0: in a key, 1: value start, 2: unquoted value, 3: quoted, 4: escaped, 5: after the quote
    let mut state = 0;
    for c in text.chars() {
        state = match (state, c) {
            (0, '=') if !key.is_empty() => 1,
            (0, c) if c.is_ascii_alphanumeric() => {
                key.push(c);
                0
            }
            (0, _) => return Err(()),
            (1, '"') => 3,
            (1 | 2, ';') | (5, ';') => {
                pairs.push((std::mem::take(&mut key), std::mem::take(&mut value)));
                0
            }
            (1 | 2 | 5, ',') => return Err(()),
            (1 | 2, '=' | '"' | ' ' | '\t') => return Err(()),
            (1 | 2, c) => {
                value.push(c);
                2
            }
            (3, '\\') => 4,
            (3, '"') => 5,
            (3 | 4, c) => {
                value.push(c);
                3
            }
            _ => return Err(()),
        };
    }
    if !matches!(state, 1 | 2 | 5) {
        return Err(());
    }
    pairs.push((key, value));
    let count = |name: &str| pairs.iter().filter(|(k, _)| k.eq_ignore_ascii_case(name)).count();
    let known = ["By", "Hash", "Cert", "Subject", "URI", "DNS"];
    if pairs.iter().any(|(k, _)| !known.iter().any(|n| n.eq_ignore_ascii_case(k)))
        || count("Hash") != 1
        || count("Cert") != 1
        || count("Subject") > 1
    {
        return Err(());
    }
    let get = |name: &str| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let hash = get("Hash").ok_or(())?;
    let der = pem(&url_decode(get("Cert").ok_or(())?)?)?;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    if hash.len() != 64 || !hash.eq_ignore_ascii_case(&hex) {
        return Err(());
    }
    Ok(der)
}

/// The certificates of `intermediates_file`, which the layer appends to a forwarded one.
fn intermediates() -> &'static [CertificateDer<'static>] {
    static CERTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    CERTS.get_or_init(|| {
        let text = std::fs::read(fixture_path("intermediates.pem")).expect("the fixture intermediates");
        CertificateDer::pem_slice_iter(&text).map(|c| c.expect("a fixture certificate")).collect()
    })
}

struct Setup {
    format: ForwardedFormat,
    route: Route,
    peer: Option<SocketAddr>,
    direct: bool,
    allow_list: bool,
}

fn request(setup: &Setup, headers: &[&HeaderValue]) -> Outcome {
    let mut request = setup.route.request().body(()).expect("a request");
    for value in headers {
        request.headers_mut().append(HEADER, (*value).clone());
    }
    if let Some(peer) = setup.peer {
        request.extensions_mut().insert(ConnectInfo(peer));
    }
    if setup.direct {
        request.extensions_mut().insert(direct_cert().clone());
    }
    let outcome = send(forwarding_layer(setup.format, setup.allow_list), request);
    check_response(&outcome);
    outcome
}

fn same(a: &Outcome, b: &Outcome) -> bool {
    a.status == b.status && a.caller().map(|p| p.name().clone()) == b.caller().map(|p| p.name().clone())
}

fuzz_target!(|data: &[u8]| {
    let [flags, more, value @ ..] = data else { return };
    let Ok(header) = HeaderValue::from_bytes(value) else { return };
    let trusted_peer: SocketAddr = "127.0.0.1:50000".parse().expect("an address");
    let untrusted_peer: SocketAddr = "10.0.0.7:50000".parse().expect("an address");
    let setup = Setup {
        format: FORMATS[usize::from((more >> 2) & 3)],
        route: route(flags & 0x1f),
        peer: match (more & 1 != 0, flags & 0x20 != 0) {
            (true, _) => None,
            (false, true) => Some(untrusted_peer),
            (false, false) => Some(trusted_peer),
        },
        direct: flags & 0x40 != 0,
        allow_list: more & 2 != 0,
    };
    let twice = flags & 0x80 != 0;
    let headers: Vec<&HeaderValue> = if twice { vec![&header, &header] } else { vec![&header] };
    let outcome = request(&setup, &headers);

    let believed = setup.peer == Some(trusted_peer) && !setup.direct;
    if !believed {
        // SPEC F16: ignored, exactly as if it had not been sent.
        let without = request(&setup, &[]);
        assert!(same(&outcome, &without), "SPEC F16: an ignored header changed {without:?} into {outcome:?}");
        return;
    }
    if !setup.route.allows("client_cert") {
        let (lookup, _) = setup.route.lookup();
        assert_eq!(outcome.code(), if lookup.is_secure() { 401 } else { 200 }, "SPEC A2: {outcome:?}");
        assert!(outcome.caller().is_none());
        return;
    }
    let der = if twice { Err(()) } else { decode(setup.format, value) };
    let Ok(der) = der else {
        let format = setup.format;
        assert_eq!(outcome.code(), 400, "SPEC F16: not exactly one {format} certificate: {value:?} -> {outcome:?}");
        return;
    };
    let mut chain = vec![CertificateDer::from(der)];
    chain.extend(intermediates().iter().cloned());
    let cert = ClientCertificate::verify(&chain, &pki().roots, SystemTime::now()).expect("a certificate");
    certs::check(setup.route, &Facts::of(&cert), setup.allow_list, true, &outcome);
});
