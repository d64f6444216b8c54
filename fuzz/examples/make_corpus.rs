//! Writes the fixture PKI (`fuzz/fixtures/`, only when missing; `--new-pki` replaces it)
//! and the seed corpora (`fuzz/corpus/<target>/`, replaced) from the values the tests use.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example make_corpus [-- --new-pki]
//!
//! Seeds of the structured targets (`bearer_structured`, `client_cert_fields`) are found
//! by a small seeded random search that keeps one input per distinct outcome.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Unstructured};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};
use tower_secure_fuzz::certs::{
    self, fixture_path, join_chain, pki, CertInput, ALLOWED_CN, OTHER_CN, ROOT_CN, UNKNOWN_CN,
};
use tower_secure_fuzz::credential::{self, ROUTES};
use tower_secure_fuzz::fixtures::{self, AUD, ISS, ISS_B, SECRET_ATTACKER, SECRET_B, SECRET_HS, SECRET_HS5, VIEW};
use tower_secure_fuzz::jwt::{self, b64, hmac, BearerInput};

/// Tokens in the seeds stay valid until 2100-01-01.
const EXP: u64 = 4_102_444_800;
const IAT: u64 = 1_700_000_000;

fn main() {
    let new_pki = std::env::args().any(|a| a == "--new-pki");
    let fixtures_dir = fixture_path("");
    fs::create_dir_all(&fixtures_dir).expect("fixtures dir");
    if new_pki || !fixture_path("root.pem").exists() {
        write_pki();
    }
    fs::write(fixture_path("admin.jwt"), format!("{}\n", token_hs("admin", json!({})))).expect("admin.jwt");

    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    write(&corpus, "canonical_path", canonical_path());
    write(&corpus, "qualified_name", qualified_name());
    write(&corpus, "authorization_header", authorization_header());
    write(&corpus, "bearer_raw", bearer_raw());
    write(&corpus, "bearer_structured", bearer_structured());
    write(&corpus, "client_cert_der", client_cert_der());
    write(&corpus, "client_cert_fields", client_cert_fields());
    write(&corpus, "forwarded_cert", forwarded_cert());
    write(&corpus, "config_deployment", config_deployment());
    write(&corpus, "config_users", config_users());
}

fn write(corpus: &Path, target: &str, seeds: Vec<(String, Vec<u8>)>) {
    let dir = corpus.join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir).expect("old seeds");
    }
    fs::create_dir_all(&dir).expect("corpus dir");
    for (name, bytes) in &seeds {
        fs::write(dir.join(name), bytes).expect("a seed");
    }
    println!("{target}: {} seeds", seeds.len());
}

fn named<I: IntoIterator<Item = (S, Vec<u8>)>, S: Into<String>>(items: I) -> Vec<(String, Vec<u8>)> {
    items.into_iter().map(|(n, b)| (n.into(), b)).collect()
}

// ---- fixtures -------------------------------------------------------------------------

fn ca_params(cn: &str, eku: &[ExtendedKeyUsagePurpose]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = certs::dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.extended_key_usages = eku.to_vec();
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    params
}

fn write_pki() {
    let key = || KeyPair::generate().expect("a P-256 key");
    let root = CertifiedIssuer::self_signed(ca_params(ROOT_CN, &[]), key()).expect("root");
    let client_auth = [ExtendedKeyUsagePurpose::ClientAuth];
    let allowed = CertifiedIssuer::signed_by(ca_params(ALLOWED_CN, &client_auth), key(), &root).expect("allowed");
    let other = CertifiedIssuer::signed_by(ca_params(OTHER_CN, &client_auth), key(), &root).expect("other");
    let unknown = CertifiedIssuer::self_signed(ca_params(UNKNOWN_CN, &[]), key()).expect("unknown");
    for (name, ca) in [("root", &root), ("allowed", &allowed), ("other", &other), ("unknown", &unknown)] {
        fs::write(fixture_path(&format!("{name}.pem")), ca.pem()).expect("a CA");
        fs::write(fixture_path(&format!("{name}.key")), ca.key().serialize_pem()).expect("a CA key");
    }
    fs::write(fixture_path("intermediates.pem"), format!("{}{}", allowed.pem(), other.pem())).expect("intermediates");
    fs::write(fixture_path("leaf.key"), key().serialize_pem()).expect("leaf key");
    println!("wrote a new fixture PKI");
}

// ---- tokens ---------------------------------------------------------------------------

fn sign(header: &Value, claims: &Value, alg: &str, secret: &[u8]) -> String {
    let message = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = hmac(alg, secret, message.as_bytes());
    format!("{message}.{}", b64(signature))
}

fn claims(sub: &str, extra: Value) -> Value {
    let mut claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": IAT, "exp": EXP});
    for (k, v) in extra.as_object().expect("an object") {
        if v.is_null() {
            claims.as_object_mut().expect("an object").remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn token_hs(sub: &str, extra: Value) -> String {
    sign(&json!({"alg": "HS256", "typ": "JWT", "kid": "hs"}), &claims(sub, extra), "HS256", SECRET_HS)
}

fn route_index(method: &str, path: &str) -> u8 {
    let i = ROUTES.iter().position(|r| r.method == method && r.path == path).expect("a known route");
    u8::try_from(i).expect("few routes")
}

// ---- seeds ----------------------------------------------------------------------------

fn canonical_path() -> Vec<(String, Vec<u8>)> {
    let lines = [
        "GET /api/users/v1/42/challenges",
        "HEAD /api/users/v1/42/challenges",
        "GET /api/health",
        "POST /api/health",
        "GET /api/admin/stats",
        "GET /api/%61dmin/stats/",
        "GET /t/Example.com/api/users/7",
        "GET /api/t/example.com/x",
        "GET /api/users/me",
        "GET /api/users/7/roles",
        "GET /api/users/7/other",
        "PUT /api/export/1",
        "DELETE /api/export/1",
        "GET /api/reports",
        "PATCH /api/reports",
        "GET /public",
        "GET /publicity",
        "GET /docs/a/b/c",
        "GET /files/x/meta",
        "GET /files//meta",
        "GET /v2/items",
        "GET /v/items",
        "GET /Mixed/a/Case",
        "GET /Mixed/a/case",
        "GET /",
        "GET /scim2/Users",
        "TRACE /trace-me",
        "TRACE /open",
        "CONNECT /open",
        "PROPFIND /items",
        "FOO /items",
        "OPTIONS /api/me",
        "GET /a/../b",
        "GET /a/%2e%2E/b",
        "GET /a/..;/b",
        "GET /a;x/b",
        "GET /a%2fb",
        "GET /a%5Cb",
        "GET /a%252e",
        "GET /a%00",
        "GET /a/%c0%ae%c0%ae/b",
        "GET /caf%C3%A9",
        "GET *",
        "GET /api/items/%70ublic",
    ];
    named(lines.iter().enumerate().map(|(i, l)| (format!("seed-{i:02}"), l.as_bytes().to_vec())))
}

fn qualified_name() -> Vec<(String, Vec<u8>)> {
    let names = [
        "alex",
        "SECONDARY/alex",
        "alex@tenant.com",
        "SECONDARY/alex@tenant.com",
        "bob@mail.com@tenant.com",
        "primary/alex@CARBON.SUPER",
        "tina@example.com",
        "",
        "/alex",
        "SECONDARY/",
        "alex@",
        " alex",
        "al\nex",
        "a/b/c",
        "DOM AIN/alex",
        "alex@ten ant",
        "Ünïcødé@example.com",
        "alex\0PRIMARY\0carbon.super",
        "alex\0secondary\0Example.COM",
    ];
    named(names.iter().enumerate().map(|(i, n)| (format!("seed-{i:02}"), n.as_bytes().to_vec())))
}

fn basic(user_password: &str) -> String {
    format!("Basic {}", STANDARD.encode(user_password))
}

fn authorization_header() -> Vec<(String, Vec<u8>)> {
    let r = route_index;
    let alex = basic("alex:alex123");
    let view = token_hs("alex", json!({"scope": "internal_identity_mgt_view"}));
    let cases: Vec<(&str, u8, String)> = vec![
        ("basic-alex-me", r("GET", "/api/me"), alex.clone()),
        ("basic-alex-view", r("GET", "/api/view"), alex.clone()),
        ("basic-alex-perm", r("GET", "/api/perm"), alex.clone()),
        ("basic-alex-challenges", r("GET", "/api/users/v1/42/challenges"), alex.clone()),
        ("basic-admin-admin", r("GET", "/api/admin/stats"), basic("admin:admin")),
        ("basic-bob-perm", r("GET", "/api/perm"), basic("bob:bob123")),
        ("basic-sam-perm", r("GET", "/api/perm"), basic("SECONDARY/sam:sam123")),
        ("basic-tina-tenant", r("GET", "/t/example.com/api/me"), basic("tina@example.com:tina123")),
        ("basic-tina-super", r("GET", "/api/me"), basic("tina@example.com:tina123")),
        ("basic-dave-disabled", r("GET", "/api/me"), basic("dave:dave123")),
        ("basic-wrong-password", r("GET", "/api/me"), basic("alex:wrong")),
        ("basic-wrong-password-open", r("GET", "/public/x"), basic("alex:wrong")),
        ("basic-qualified", r("GET", "/api/perm"), basic("primary/alex@CARBON.SUPER:alex123")),
        ("basic-unicode", r("GET", "/api/me"), basic("älex:pässwörd")),
        ("basic-colon-in-password", r("GET", "/api/me"), basic("alex:alex123:x")),
        ("basic-case", r("GET", "/api/me"), format!("bAsIc {}", &alex[6..])),
        ("basic-two-spaces", r("GET", "/api/me"), format!("Basic  {}", &alex[6..])),
        ("basic-trailing", r("GET", "/api/me"), format!("{alex} x")),
        ("basic-extra-padding", r("GET", "/api/me"), format!("{alex}=")),
        ("basic-empty-user", r("GET", "/api/me"), "Basic Og==".to_owned()),
        ("basic-no-colon", r("GET", "/api/me"), "Basic YWxleA==".to_owned()),
        ("basic-not-base64", r("GET", "/api/me"), "Basic ////".to_owned()),
        ("basic-bare", r("GET", "/api/me"), "Basic".to_owned()),
        ("basic-space", r("GET", "/public/x"), "Basic ".to_owned()),
        ("basic-on-bearer-only", r("GET", "/api/bearer-only"), alex.clone()),
        ("basic-long", r("GET", "/api/me"), basic(&format!("alex:{}", "x".repeat(800)))),
        ("bearer-alex-view", r("GET", "/api/view"), format!("Bearer {view}")),
        ("bearer-alex-me", r("GET", "/api/me"), format!("Bearer {view}")),
        ("bearer-on-basic-only", r("GET", "/api/basic-only"), format!("Bearer {view}")),
        ("bearer-space", r("GET", "/api/me"), "Bearer abc def".to_owned()),
        ("bearer-bare", r("GET", "/api/me"), "Bearer".to_owned()),
        ("digest", r("GET", "/api/me"), "Digest username=\"alex\"".to_owned()),
        ("negotiate-open", r("GET", "/api/health"), "Negotiate abc".to_owned()),
        ("empty", r("GET", "/api/me"), String::new()),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> =
        cases.into_iter().map(|(n, s, h)| (n.to_owned(), [&[s][..], h.as_bytes()].concat())).collect();
    seeds.push(("basic-twice".into(), [&[r("GET", "/api/me") | 0x20][..], alex.as_bytes()].concat()));
    seeds.push(("basic-noise".into(), [&[r("GET", "/public/x") | 0x40][..], alex.as_bytes()].concat()));
    seeds.push((
        "bearer-noise".into(),
        [&[r("GET", "/api/me") | 0x40][..], format!("Bearer {view}").as_bytes()].concat(),
    ));
    seeds.push(("no-header-noise".into(), vec![r("GET", "/api/me") | 0x40]));
    seeds
}

fn bearer_raw() -> Vec<(String, Vec<u8>)> {
    let r = route_index;
    let view = json!({"scope": "internal_identity_mgt_view"});
    let hs5 = |sub: &str, extra: Value| {
        sign(&json!({"alg": "HS512", "kid": "hs5"}), &claims(sub, extra), "HS512", SECRET_HS5)
    };
    let b = |sub: &str| {
        let claims = json!({"iss": ISS_B, "sub": sub, "exp": EXP, "scp": ["internal_identity_mgt_view"]});
        sign(&json!({"alg": "HS256"}), &claims, "HS256", SECRET_B)
    };
    let attacker = sign(
        &json!({"alg": "HS256", "kid": "hs", "jwk": {"kty": "oct", "k": b64(SECRET_ATTACKER)}, "jku": "https://attacker.example/jwks"}),
        &claims("admin", json!({})),
        "HS256",
        SECRET_ATTACKER,
    );
    let none = format!("{}.{}.", b64(json!({"alg": "none"}).to_string()), b64(claims("admin", json!({})).to_string()));
    let cases: Vec<(&str, u8, String)> = vec![
        ("alex-view", r("GET", "/api/view"), token_hs("alex", view.clone())),
        ("alex-view-any", r("GET", "/api/view-any"), token_hs("alex", json!({"scope": "openid"}))),
        ("alex-me", r("GET", "/api/me"), token_hs("alex", json!({}))),
        ("alex-public", r("GET", "/public/x"), token_hs("alex", json!({}))),
        ("alex-perm", r("GET", "/api/perm"), token_hs("alex", json!({}))),
        ("bob-perm", r("GET", "/api/perm"), token_hs("bob", json!({}))),
        ("bob-view", r("GET", "/api/view"), token_hs("bob", json!({"scope": "openid"}))),
        ("admin-hs5-perm", r("GET", "/api/perm"), hs5("admin", json!({}))),
        ("issuer-b", r("GET", "/api/view"), b("alex")),
        ("tina-tenant", r("GET", "/t/example.com/api/me"), token_hs("tina@example.com", json!({}))),
        ("tina-shared", r("GET", "/t/example.com/shared/x"), token_hs("tina@example.com", json!({}))),
        ("client-token", r("GET", "/api/perm"), token_hs("svc", json!({"client_id": "svc"}))),
        ("dave-disabled", r("GET", "/api/me"), token_hs("dave", json!({}))),
        ("expired", r("GET", "/api/me"), token_hs("alex", json!({"exp": IAT}))),
        ("no-exp", r("GET", "/public/x"), token_hs("alex", json!({"exp": null}))),
        ("nbf-future", r("GET", "/api/me"), token_hs("alex", json!({"nbf": EXP - 10}))),
        ("no-aud", r("GET", "/api/me"), token_hs("alex", json!({"aud": null}))),
        ("aud-array", r("GET", "/api/me"), token_hs("alex", json!({"aud": ["x", AUD]}))),
        ("iss-array", r("GET", "/api/me"), token_hs("alex", json!({"iss": [ISS]}))),
        ("scope-comma", r("GET", "/api/view"), token_hs("alex", json!({"scope": "a,internal_identity_mgt_view"}))),
        ("scope-both", r("GET", "/api/view"), token_hs("alex", json!({"scope": "a", "scp": ["a"]}))),
        ("scp-array", r("GET", "/api/view"), token_hs("alex", json!({"scp": ["internal_identity_mgt_view"]}))),
        ("cnf", r("GET", "/api/me"), token_hs("alex", json!({"cnf": {"x5t#S256": b64([1u8; 32])}}))),
        (
            "crit",
            r("GET", "/api/me"),
            sign(
                &json!({"alg": "HS256", "kid": "hs", "crit": ["exp"]}),
                &claims("alex", json!({})),
                "HS256",
                SECRET_HS,
            ),
        ),
        (
            "unknown-kid",
            r("GET", "/api/me"),
            sign(&json!({"alg": "HS256", "kid": "gone"}), &claims("alex", json!({})), "HS256", SECRET_HS),
        ),
        (
            "alg-mismatch",
            r("GET", "/api/me"),
            sign(&json!({"alg": "HS512", "kid": "hs"}), &claims("alex", json!({})), "HS512", SECRET_HS),
        ),
        ("attacker-jwk", r("GET", "/api/me"), attacker),
        ("alg-none", r("GET", "/public/x"), none),
        ("opaque", r("GET", "/api/me"), "opaque-token-123".to_owned()),
        ("two-parts", r("GET", "/api/me"), "eyJhbGciOiJIUzI1NiJ9.e30".to_owned()),
        ("padded", r("GET", "/api/me"), format!("{}=", token_hs("alex", json!({})))),
        ("sub-qualified", r("GET", "/api/perm"), token_hs("SECONDARY/sam", json!({}))),
    ];
    let mut seeds: Vec<(String, Vec<u8>)> =
        cases.into_iter().map(|(n, s, t)| (n.to_owned(), [&[s][..], t.as_bytes()].concat())).collect();
    seeds.push((
        "lowercase-scheme".into(),
        [&[r("GET", "/api/me") | 0x20][..], token_hs("alex", json!({})).as_bytes()].concat(),
    ));
    seeds
}

/// A tiny deterministic generator for the random searches.
struct XorShift(u64);

impl XorShift {
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 24) as u8
            })
            .collect()
    }
}

fn bearer_structured() -> Vec<(String, Vec<u8>)> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let mut rng = XorShift(0x5eed_1234_abcd_0001);
    let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for _ in 0..600_000 {
        let len = 16 + usize::from(rng.bytes(1)[0]);
        let bytes = rng.bytes(len);
        let Ok(input) = BearerInput::arbitrary_take_rest(Unstructured::new(&bytes)) else { continue };
        let token = jwt::build(&input.token, now);
        let route = credential::route(input.route);
        let (cred, _) = credential::classify(&[format!("Bearer {token}").as_bytes()], now);
        let expected = credential::expected(route, &cred);
        let kind = match &cred {
            credential::Credential::Bearer(credential::Judged::Invalid(reason)) => format!("invalid-{reason}"),
            credential::Credential::Bearer(credential::Judged::Accepted(_)) => "accepted".to_owned(),
            other => format!("{other:?}").chars().take(12).collect(),
        };
        let accepted = kind == "accepted";
        let key = if accepted {
            format!("{}-{kind}-{}", expected.status, usize::from(input.route) % ROUTES.len())
        } else {
            format!("{}-{kind}", expected.status)
        };
        let limit = 1;
        let count = found.keys().filter(|k| k.starts_with(&key)).count();
        if count < limit {
            found.insert(format!("{key}-{count}"), bytes);
        }
    }
    named(
        found.into_iter().take(60).map(|(k, v)| (k.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"), v)),
    )
}

fn leaf(cn: &str, issuer: &rcgen::Issuer<'_, KeyPair>) -> Vec<u8> {
    certs::issue(&certs::client_params(cn), issuer).expect("a leaf").to_vec()
}

fn client_cert_der() -> Vec<(String, Vec<u8>)> {
    let pki = pki();
    let r = route_index;
    let allowed = pki.allowed_der.to_vec();
    let other = pki.other_der.to_vec();
    let root = pki.root_der.to_vec();
    let mut two_cns = certs::client_params("alex");
    two_cns.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 3]), "admin");
    let mut expired = certs::client_params("alex");
    expired.not_after = rcgen::date_time_ymd(2010, 1, 1);
    expired.not_before = rcgen::date_time_ymd(2000, 1, 1);
    let mut no_eku = certs::client_params("alex");
    no_eku.extended_key_usages.clear();
    let issue = |params: &CertificateParams| certs::issue(params, &pki.allowed).expect("a leaf").to_vec();
    let cases: Vec<(&str, u8, Vec<Vec<u8>>)> = vec![
        ("alex-me", r("GET", "/api/me"), vec![leaf("alex", &pki.allowed), allowed.clone()]),
        ("alex-perm-allow-list", r("GET", "/api/perm") | 0x20, vec![leaf("alex", &pki.allowed), allowed.clone()]),
        ("alex-other-allow-list", r("GET", "/api/me") | 0x20, vec![leaf("alex", &pki.other), other.clone()]),
        (
            "alex-other-appended",
            r("GET", "/api/me") | 0x20,
            vec![leaf("alex", &pki.other), other.clone(), allowed.clone()],
        ),
        (
            "alex-other-exempt",
            r("GET", "/t/example.com/scim2/Users") | 0x20,
            vec![leaf("alex", &pki.other), other.clone()],
        ),
        ("alex-leaf-only", r("GET", "/api/me"), vec![leaf("alex", &pki.allowed)]),
        ("alex-from-root", r("GET", "/api/view"), vec![leaf("alex", &pki.root)]),
        ("alex-with-root", r("GET", "/api/me"), vec![leaf("alex", &pki.allowed), allowed.clone(), root.clone()]),
        ("sam", r("GET", "/api/perm"), vec![leaf("SECONDARY/sam", &pki.allowed), allowed.clone()]),
        (
            "tina-tenant",
            r("GET", "/t/example.com/api/me"),
            vec![leaf("tina@example.com", &pki.allowed), allowed.clone()],
        ),
        ("bob-perm", r("GET", "/api/perm"), vec![leaf("bob", &pki.allowed), allowed.clone()]),
        ("dave-disabled", r("GET", "/api/me"), vec![leaf("dave", &pki.allowed), allowed.clone()]),
        ("unknown-user", r("GET", "/public/x"), vec![leaf("zed", &pki.allowed), allowed.clone()]),
        ("two-cns", r("GET", "/api/me"), vec![issue(&two_cns), allowed.clone()]),
        ("expired", r("GET", "/api/me"), vec![issue(&expired), allowed.clone()]),
        ("no-eku", r("GET", "/api/me"), vec![issue(&no_eku), allowed.clone()]),
        ("unknown-root", r("GET", "/api/me"), vec![leaf("alex", &pki.unknown), pki.unknown_der.to_vec()]),
        ("cert-only", r("GET", "/api/cert-only"), vec![leaf("alex", &pki.allowed), allowed.clone()]),
        ("basic-only", r("GET", "/api/basic-only"), vec![leaf("alex", &pki.allowed), allowed.clone()]),
        ("root-alone", r("GET", "/api/me"), vec![root.clone()]),
        ("garbage", r("GET", "/api/me"), vec![b"\x30\x03\x02\x01\x01".to_vec()]),
    ];
    cases
        .into_iter()
        .map(|(n, s, chain)| {
            let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
            (n.to_owned(), [&[s][..], &join_chain(&refs)].concat())
        })
        .collect()
}

fn client_cert_fields() -> Vec<(String, Vec<u8>)> {
    let mut rng = XorShift(0x5eed_9876_fedc_0002);
    let mut found: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for _ in 0..30_000 {
        let len = 8 + usize::from(rng.bytes(1)[0] % 96);
        let bytes = rng.bytes(len);
        let Ok(input) = CertInput::arbitrary_take_rest(Unstructured::new(&bytes)) else { continue };
        let Some(built) = input.cert.build() else { continue };
        let route = credential::route(input.route);
        let expected = certs::expected(route, &built.facts, input.allow_list);
        let key = format!("{}-{}-{}", expected.status, built.facts.verified, built.facts.common_names.len());
        let limit = if expected.status == 200 || expected.status == 403 { 10 } else { 3 };
        let count = found.keys().filter(|k| k.starts_with(&key)).count();
        if count < limit {
            found.insert(format!("{key}-{count}"), bytes);
        }
    }
    named(found.into_iter().take(48))
}

fn forwarded_cert() -> Vec<(String, Vec<u8>)> {
    let pki = pki();
    let r = route_index;
    let alex = certs::issue(&certs::client_params("alex"), &pki.allowed).expect("a leaf").to_vec();
    let other = certs::issue(&certs::client_params("alex"), &pki.other).expect("a leaf").to_vec();
    let sam = certs::issue(&certs::client_params("SECONDARY/sam"), &pki.allowed).expect("a leaf").to_vec();
    let rfc9440 = |der: &[u8]| format!(":{}:", STANDARD.encode(der));
    let pem = |der: &[u8]| {
        let body = STANDARD.encode(der);
        let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64")).collect();
        format!("-----BEGIN CERTIFICATE----- {} -----END CERTIFICATE-----", lines.join(" "))
    };
    let url = |der: &[u8]| {
        let text = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", STANDARD.encode(der));
        percent_encoding::utf8_percent_encode(&text, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let xfcc = |hash_of: &[u8], der: &[u8]| {
        let hash: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, hash_of)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("By=spiffe://edge;Hash={hash};Cert=\"{}\";Subject=\"CN=alex,O=x\";URI=;DNS=a.example", url(der))
    };
    // Byte 1, bits 2-3: the configured format.
    let (pem_format, url_format, xfcc_format) = (1 << 2, 2 << 2, 3 << 2);
    let cases: Vec<(&str, u8, u8, String)> = vec![
        ("rfc9440-me", r("GET", "/api/me"), 0, rfc9440(&alex)),
        ("rfc9440-perm", r("GET", "/api/perm"), 0, rfc9440(&alex)),
        ("rfc9440-text-after", r("GET", "/api/me"), 0, format!("{};x", rfc9440(&alex))),
        ("pem-spaces", r("GET", "/api/me"), pem_format, pem(&alex)),
        ("pem-as-rfc9440", r("GET", "/api/me"), 0, pem(&alex)),
        ("pem-text-before", r("GET", "/api/me"), pem_format, format!("CN=alex {}", pem(&other))),
        ("url-encoded", r("GET", "/api/view"), url_format, url(&alex)),
        ("url-text-after", r("GET", "/api/view"), url_format, format!("{}alex", url(&alex))),
        ("xfcc", r("GET", "/api/me"), xfcc_format, xfcc(&sam, &sam)),
        ("xfcc-attack", r("GET", "/api/perm"), xfcc_format, xfcc(&sam, &alex)),
        ("xfcc-two-elements", r("GET", "/api/me"), xfcc_format, format!("{},{}", xfcc(&sam, &sam), xfcc(&alex, &alex))),
        ("xfcc-chain", r("GET", "/api/me"), xfcc_format, format!("{};Chain=\"{}\"", xfcc(&alex, &alex), url(&other))),
        ("sam", r("GET", "/api/perm"), 0, rfc9440(&sam)),
        ("untrusted-peer", r("GET", "/api/me") | 0x20, 0, rfc9440(&alex)),
        ("untrusted-open", r("GET", "/public/x") | 0x20, 0, rfc9440(&alex)),
        ("direct-and-header", r("GET", "/api/me") | 0x40, 0, rfc9440(&alex)),
        ("twice", r("GET", "/api/me") | 0x80, 0, rfc9440(&alex)),
        ("no-peer", r("GET", "/api/me"), 1, rfc9440(&alex)),
        ("other-allow-list", r("GET", "/api/me"), 2, rfc9440(&other)),
        ("other-exempt", r("GET", "/t/example.com/scim2/Users"), 2, rfc9440(&other)),
        ("not-base64", r("GET", "/public/x"), 0, ":not base64!:".to_owned()),
        ("two-pems", r("GET", "/api/me"), pem_format, format!("{} {}", pem(&alex), pem(&sam))),
        ("empty", r("GET", "/api/me"), 0, String::new()),
        ("garbage-der", r("GET", "/api/me"), 0, ":MAMCAQE=:".to_owned()),
        ("basic-only", r("GET", "/api/basic-only"), 0, rfc9440(&alex)),
    ];
    cases.into_iter().map(|(n, a, b, v)| (n.to_owned(), [&[a, b][..], v.as_bytes()].concat())).collect()
}

fn config_deployment() -> Vec<(String, Vec<u8>)> {
    let quickstart =
        fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/deployment.toml"))
            .expect("the quickstart deployment");
    let es256 = pki().leaf_key.public_key_pem();
    let mut texts: Vec<(&str, String)> = vec![
        ("fixture", fixtures::deployment_text("", "")),
        ("fixture-allow-list", fixtures::deployment_text("", certs::ALLOW_LIST)),
        ("quickstart", quickstart),
        ("empty", String::new()),
        ("open-rule", "[[resource.access_control]]\ncontext = \"/api/health\"\nsecure = false\n".to_owned()),
        ("methods", "[[resource.access_control]]\ncontext = \"/api/x/{id}\"\nhttp_method = [\"get\", \"PUT\"]\npermissions = [\"/permission/admin\"]\npermissions_match = \"any\"\n".to_owned()),
        ("scopes", format!("[[scope]]\nname = \"view\"\npermissions = [\"{VIEW}\"]\nroles = [\"viewer\"]\n\n[[resource.access_control]]\ncontext = \"/api/**\"\nscopes = [\"view\", \"openid\"]\nscopes_match = \"any\"\n")),
        ("regex", "[[resource.access_control]]\ncontext = \"regex:/api/v[0-9]+/.*\"\nsecure = false\n".to_owned()),
        ("cross-tenant", "[[resource.access_control]]\ncontext = \"/shared/*\"\ncross_tenant = [\"example.com\"]\n".to_owned()),
        ("handlers", "[authentication]\nrealm = \"r\"\n\n[authentication.priorities]\nbasic = 50\n\n[[resource.access_control]]\ncontext = \"/a\"\nallowed_auth_handlers = [\"basic\"]\noverride = true\n".to_owned()),
        ("basic-settings", "[authentication.basic]\ncache_ttl_seconds = 10\ncache_capacity = 5\nmax_failed_attempts = 3\nlockout_seconds = 60\nhashes_per_second = 0\n".to_owned()),
        ("cors", "[cors]\nauthenticate_preflight = true\n".to_owned()),
        ("issuer-pem", format!("[oauth2]\nleeway_seconds = 30\nrequire_typ = \"at+jwt\"\n\n[[oauth2.issuer]]\nissuer = \"https://idp\"\n\n[[oauth2.issuer.key]]\nalgorithm = \"ES256\"\npem = \"\"\"\n{es256}\"\"\"\n")),
        ("issuer-hmac", format!("[[oauth2.issuer]]\nissuer = \"https://idp\"\naudience = \"api\"\n\n[[oauth2.issuer.key]]\nkid = \"k\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{}\"\n", STANDARD.encode(SECRET_HS))),
        ("issuer-jwks-uri", "[[oauth2.issuer]]\nissuer = \"https://idp\"\njwks_uri = \"https://idp/jwks\"\n".to_owned()),
        ("client-cert", "[client_cert]\nforwarded_header = \"X-Forwarded-Client-Cert\"\nforwarded_format = \"xfcc\"\ntrusted_proxies = [\"10.0.0.1\"]\nca_file = \"ca.pem\"\n\n[intermediate_cert_validation]\nenable = true\ncert_cns = [\"Allowed Intermediate CA\"]\nexempt_contexts = [\"/scim2\"]\n".to_owned()),
        ("error-unknown-key", "[[resource.access_control]]\ncontext = \"/a\"\nsecrue = false\n".to_owned()),
        ("error-pattern", "[[resource.access_control]]\ncontext = \"api\"\n".to_owned()),
        ("error-tie", "[[resource.access_control]]\ncontext = \"/a/{x}\"\n\n[[resource.access_control]]\ncontext = \"/a/*\"\n".to_owned()),
        ("error-method", "[[resource.access_control]]\ncontext = \"/a\"\nhttp_method = [\"all\", \"GET\"]\n".to_owned()),
        ("error-open-with-permissions", "[[resource.access_control]]\ncontext = \"/a\"\nsecure = false\npermissions = [\"/permission/admin\"]\n".to_owned()),
        ("error-syntax", "[[resource.access_control]\ncontext = \"/a\"\n".to_owned()),
        ("error-weak-secret", "[[oauth2.issuer]]\nissuer = \"https://idp\"\n\n[[oauth2.issuer.key]]\nalgorithm = \"HS256\"\nsecret_base64 = \"c2hvcnQ=\"\n".to_owned()),
    ];
    texts.sort_by(|a, b| a.0.cmp(b.0));
    named(texts.into_iter().map(|(n, t)| (n, t.into_bytes())))
}

fn config_users() -> Vec<(String, Vec<u8>)> {
    let hash = fixtures::cheap_hash("secret");
    let texts: Vec<(&str, String)> = vec![
        ("fixture", fixtures::users_toml().to_owned()),
        ("empty", String::new()),
        ("one-user", format!("[[user]]\nname = \"SECONDARY/alex@example.com\"\npassword = \"{hash}\"\n")),
        ("no-password", "[[role]]\nname = \"r\"\npermissions = [\"/permission/admin/login\"]\n\n[[user]]\nname = \"svc\"\nroles = [\"r\"]\ndisabled = true\n".to_owned()),
        ("clients", format!("[[role]]\nname = \"reporting\"\npermissions = [\"/permission/admin/monitor\"]\n\n[[client]]\nid = \"reports-job\"\nsecret = \"{hash}\"\nroles = [\"reporting\"]\ngrant_types = [\"client_credentials\"]\n")),
        ("inline-tables", format!("user = [{{ name = \"a\", password = \"{hash}\" }}, {{ name = \"b@t.com\" }}]\n")),
        ("error-duplicate", "[[user]]\nname = \"alex\"\n\n[[user]]\nname = \"PRIMARY/alex@carbon.super\"\n".to_owned()),
        ("error-unknown-role", "[[user]]\nname = \"alex\"\nroles = [\"nope\"]\n".to_owned()),
        ("error-bad-name", "[[user]]\nname = \" alex\"\n".to_owned()),
        ("error-plain-password", "[[user]]\nname = \"alex\"\npassword = \"alex123\"\n".to_owned()),
        ("error-bad-permission", "[[role]]\nname = \"r\"\npermissions = [\"permission/admin\"]\n".to_owned()),
        ("error-client-id", format!("[[client]]\nid = \"bad id\"\nsecret = \"{hash}\"\n")),
        ("error-grant", format!("[[client]]\nid = \"c\"\nsecret = \"{hash}\"\ngrant_types = [\"implicit\"]\n")),
        ("error-unknown-key", "[[user]]\nname = \"alex\"\npasword = \"x\"\n".to_owned()),
    ];
    named(texts.into_iter().map(|(n, t)| (n, t.into_bytes())))
}
