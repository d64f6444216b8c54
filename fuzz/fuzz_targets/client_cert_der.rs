//! Fuzzes certificate-to-principal extraction from DER: `ClientCertificate::verify` with a
//! fuzzed chain (length-prefixed DER blobs, `certs::split_chain`) against the fixture
//! root, then the layer with that certificate in the request extensions, as the crate's
//! TLS server puts it there. Input: one selector byte (route; bit 5: the layer with the
//! intermediate allow-list), then the chain.
//!
//! * `verify` never panics and is quick (F18); the certificate it returns is the first of
//!   the chain with its SHA-256 thumbprint (A11); a verified one has its path ending at
//!   the fixture root, an unverified one no CNs, no issuers and a reason (F14).
//! * The layer answers exactly what `certs::expected` derives from those facts: 401 for
//!   an unverified certificate, for zero or several CNs, a CN that is not a user name, an
//!   unknown or disabled user, or (allow-list) no allowed CA on the verified path outside
//!   the exempt contexts, on open routes too; 200 or 403 by the rule otherwise (A8, A9,
//!   F5, F14, F15, C1-C5); a certificate is no credential where the rule does not allow
//!   `client_cert` (A2); never 5xx, nothing reflected (F13).
#![forbid(unsafe_code)]
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use tower_secure::authn::ClientCertificate;
use tower_secure::SecureLayer;
use tower_secure_fuzz::certs::{self, pki, split_chain, Facts, ALLOW_LIST};
use tower_secure_fuzz::credential::route;
use tower_secure_fuzz::drive::send;
use tower_secure_fuzz::fixtures::{layer, standard_layer};
use tower_secure_fuzz::oracle::check_response;

fn allow_list_layer() -> &'static SecureLayer {
    static LAYER: OnceLock<SecureLayer> = OnceLock::new();
    LAYER.get_or_init(|| layer("", ALLOW_LIST))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let chain = split_chain(rest);
    if chain.is_empty() {
        return;
    }
    let started = Instant::now();
    let cert = ClientCertificate::verify(&chain, &pki().roots, SystemTime::now()).expect("a non-empty chain");
    assert!(started.elapsed() < Duration::from_secs(1), "SPEC F18: verification took {:?}", started.elapsed());
    assert_eq!(cert.der(), chain[0].as_ref());
    assert_eq!(
        cert.thumbprint_sha256().as_slice(),
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert.der()).as_ref()
    );
    if cert.is_verified() {
        assert!(cert.verification_error().is_none());
        let anchor = cert.issuers().last().expect("a verified path has an anchor");
        let root_sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, pki().root_der.as_ref());
        assert_eq!(anchor.cert_sha256.as_slice(), root_sha.as_ref(), "SPEC F14: the path ends at the configured root");
    } else {
        assert!(cert.verification_error().is_some());
        assert!(cert.common_names().is_empty() && cert.issuers().is_empty(), "facts of an unverified certificate");
    }

    let allow_list = selector & 0x20 != 0;
    let route = route(selector & 0x1f);
    let mut request = route.request().body(()).expect("a request");
    request.extensions_mut().insert(cert.clone());
    let layer = if allow_list { allow_list_layer() } else { standard_layer() };
    let outcome = send(layer, request);
    check_response(&outcome);
    certs::check(route, &Facts::of(&cert), allow_list, true, &outcome);
});
