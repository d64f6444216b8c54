//! Fuzzes certificate-to-principal extraction with structured inputs (`certs::CertSpec`):
//! rcgen issues a leaf for the fixture leaf key with fuzzed subject CNs (none, one, two;
//! UTF8String, PrintableString, IA5String, BMPString), issuer (the allow-listed or the
//! other intermediate, the root, an unknown root, itself), presented chain, validity,
//! extended key usage and CA flag; it is verified against the fixture root and put in the
//! request extensions, and the layer answers one of the routes of `credential::ROUTES`,
//! with or without the intermediate allow-list.
//!
//! * Verification is predicted independently: a path to the fixture root from what was
//!   presented, valid now, `clientAuth`, not a CA (F14); the CNs are exactly the ones
//!   issued (F15); the allow-list sees the CA that signed, never what was appended (A9).
//! * The answer is then exactly `certs::expected`: the one CN parsed as a qualified name
//!   names an enabled user (A8, F15); with the allow-list, an allowed CA on the verified
//!   path or an exempt context (A9, F14); 200 or 403 by the rule's permissions, scope
//!   bindings and tenant (C1-C5); 401 otherwise, on open routes too (F5); never 5xx,
//!   nothing reflected (F13).
#![forbid(unsafe_code)]
#![no_main]

use std::sync::OnceLock;
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use tower_secure::authn::ClientCertificate;
use tower_secure::SecureLayer;
use tower_secure_fuzz::certs::{self, pki, CertInput, ALLOW_LIST};
use tower_secure_fuzz::credential::route;
use tower_secure_fuzz::drive::send;
use tower_secure_fuzz::fixtures::{layer, standard_layer};
use tower_secure_fuzz::oracle::check_response;

fn allow_list_layer() -> &'static SecureLayer {
    static LAYER: OnceLock<SecureLayer> = OnceLock::new();
    LAYER.get_or_init(|| layer("", ALLOW_LIST))
}

fuzz_target!(|input: CertInput| {
    let Some(built) = input.cert.build() else { return };
    let facts = &built.facts;
    let cert = ClientCertificate::verify(&built.chain, &pki().roots, SystemTime::now()).expect("a non-empty chain");
    if built.certain {
        assert_eq!(cert.is_verified(), facts.verified, "SPEC F14: {:?}: {:?}", input.cert, cert.verification_error());
    }
    if cert.is_verified() {
        assert_eq!(cert.common_names(), facts.common_names.as_slice(), "SPEC F15: the CNs issued");
        let allowed = cert.issuers().iter().any(|ca| ca.common_name.as_deref() == Some(certs::ALLOWED_CN));
        assert_eq!(allowed, facts.allowed_issuer, "SPEC A9: the allow-list reads the verified path");
    }
    let route = route(input.route);
    let mut request = route.request().body(()).expect("a request");
    request.extensions_mut().insert(cert);
    let layer = if input.allow_list { allow_list_layer() } else { standard_layer() };
    let outcome = send(layer, request);
    check_response(&outcome);
    certs::check(route, facts, input.allow_list, built.certain, &outcome);
});
