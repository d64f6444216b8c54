//! Fuzzes the forwarded-certificate header: a layer with `[client_cert] forwarded_header =
//! "Client-Cert"`, `trusted_proxies = ["127.0.0.1", "::1"]`, the fixture root as `ca_file`
//! and the intermediates as `intermediates_file`, the peer address in the request
//! extensions as axum's `ConnectInfo<SocketAddr>`, and the header value fuzzed. Input: two
//! selector bytes, then the header value. Byte 0: route (bits 0-4), peer 10.0.0.7 instead
//! of 127.0.0.1 (bit 5), a real TLS client certificate too (bit 6), the header twice (bit
//! 7). Byte 1: no peer address at all (bit 0), the intermediate allow-list (bit 1).
//!
//! * From an untrusted peer, from an unknown peer, or next to a real TLS certificate the
//!   header changes nothing: the answer equals the one without it (F4, F16).
//! * From a trusted peer: two headers, or a value that is not exactly one certificate
//!   (RFC 9440 `:base64:`, PEM or URL-encoded PEM, decoded here independently) is 400;
//!   a decoded certificate goes through the same chain validation as a TLS one and the
//!   answer is exactly `certs::expected` (A8, A9, F14-F16); never 5xx, nothing reflected
//!   (F13).
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
use tower_secure::SecureLayer;
use tower_secure_fuzz::certs::{self, fixture_path, pki, Facts, ALLOW_LIST};
use tower_secure_fuzz::credential::{route, Route};
use tower_secure_fuzz::drive::{send, Outcome};
use tower_secure_fuzz::fixtures::layer;
use tower_secure_fuzz::oracle::check_response;

const HEADER: &str = "client-cert";
/// Longest forwarded header the layer reads.
const MAX_FORWARDED_BYTES: usize = 16 * 1024;

fn client_cert_body() -> String {
    format!(
        "forwarded_header = \"Client-Cert\"\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\nca_file = '{}'\nintermediates_file = '{}'\n",
        fixture_path("root.pem").display(),
        fixture_path("intermediates.pem").display()
    )
}

fn forwarding_layer(allow_list: bool) -> &'static SecureLayer {
    static PLAIN: OnceLock<SecureLayer> = OnceLock::new();
    static ALLOWED: OnceLock<SecureLayer> = OnceLock::new();
    if allow_list {
        ALLOWED.get_or_init(|| layer(&client_cert_body(), ALLOW_LIST))
    } else {
        PLAIN.get_or_init(|| layer(&client_cert_body(), ""))
    }
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

/// The certificate in a forwarded header, decoded as SPEC A8/F16 and RFC 9440 describe:
/// `:base64:`, or one PEM certificate, possibly URL-encoded. `Err` means 400.
fn decode(value: &[u8]) -> Result<Vec<u8>, ()> {
    if value.len() > MAX_FORWARDED_BYTES {
        return Err(());
    }
    let text = std::str::from_utf8(value).map_err(|_| ())?.trim();
    if text.len() >= 2 && text.starts_with(':') && text.ends_with(':') {
        return STANDARD.decode(&text[1..text.len() - 1]).map_err(|_| ());
    }
    let text = percent_encoding::percent_decode_str(text).decode_utf8().map_err(|_| ())?;
    let (begin, end) = ("-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----");
    if text.matches(begin).count() != 1 || text.matches(end).count() != 1 {
        return Err(());
    }
    let start = text.find(begin).ok_or(())? + begin.len();
    let stop = text[start..].find(end).ok_or(())? + start;
    let body: String = text[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(body).map_err(|_| ())
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
    let outcome = send(forwarding_layer(setup.allow_list), request);
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
    let der = if twice { Err(()) } else { decode(value) };
    let Ok(der) = der else {
        assert_eq!(outcome.code(), 400, "SPEC F16: not exactly one certificate: {value:?} -> {outcome:?}");
        return;
    };
    let mut chain = vec![CertificateDer::from(der)];
    chain.extend(intermediates().iter().cloned());
    let cert = ClientCertificate::verify(&chain, &pki().roots, SystemTime::now()).expect("a certificate");
    certs::check(setup.route, &Facts::of(&cert), setup.allow_list, true, &outcome);
});
