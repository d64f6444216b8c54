//! Client certificates (the `client_cert` handler and the crate's TLS server) over real TLS
//! handshakes on 127.0.0.1: the subject CN as the caller (SPEC A8, F15), the
//! intermediate-CA allow-list on the verified path (SPEC A9, F14), certificates forwarded by
//! a TLS-terminating proxy (SPEC F16), and certificate-bound tokens (RFC 8705, SPEC A11).
//!
//! The PKI is generated once per test binary with rcgen: a test root, an allowed
//! intermediate ("Allowed Intermediate CA"), a non-allowed one, an unknown root and a
//! server CA. Leaves are issued per test (P-256 keys: microseconds). Clients are reqwest
//! (rustls), `curl` and `openssl s_client`; every network step has a timeout.
//!
//! The intermediates carry an EKU extension listing `clientAuth` (EKU nesting, as many
//! enterprise CAs do); `a8_f14_intermediate_without_an_eku_extension` covers the plain
//! RFC 5280 shape, an intermediate without the extension.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PublicKeyData,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tower_secure::authn::TrustRoots;
use tower_secure::config::{load_users, Deployment};
use tower_secure::identity::{Principal, SqlUserStore, UserStore, UserStores};
use tower_secure::tls::{ClientAuth, TlsServer};
use tower_secure::SecureLayer;

const ROOT_CN: &str = "Client Cert Test Root CA";
const ALLOWED_CN: &str = "Allowed Intermediate CA";
const OTHER_CN: &str = "Other Intermediate CA";
/// The intermediates without `clientAuth` in an EKU extension.
const PLAIN_CN: &str = "Plain Intermediate CA";
const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";
const ISS: &str = "https://idp.test";
const AUD: &str = "my-api";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-client-cert";
/// Every network step (request, handshake, child process) is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------
// PKI: generated once per test binary
// ---------------------------------------------------------------------------------------

type Ca = CertifiedIssuer<'static, KeyPair>;

struct Pki {
    /// The root the server trusts for client certificates.
    root: Ca,
    /// Under `root`; its CN is the allow-listed one.
    allowed: Ca,
    /// Under `root`; not allow-listed.
    other: Ca,
    /// A root the server does not know.
    unknown_root: Ca,
    /// Under `root`, without an EKU extension (the usual RFC 5280 CA shape).
    plain: Ca,
    /// Under `root`, its EKU extension lists `serverAuth` only.
    server_only: Ca,
    /// Issues the server's certificate; clients trust it.
    server_ca: Ca,
    server_cert: String,
    server_key: String,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(generate_pki)
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "tower-secure tests");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_params(cn: &str, eku: &[ExtendedKeyUsagePurpose]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.extended_key_usages = eku.to_vec();
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    params
}

fn root_ca(cn: &str) -> Ca {
    CertifiedIssuer::self_signed(ca_params(cn, &[]), KeyPair::generate().unwrap()).unwrap()
}

/// An intermediate under `parent` whose EKU extension lists `clientAuth`.
fn intermediate_ca(cn: &str, parent: &Ca) -> Ca {
    intermediate_with_eku(cn, parent, &[ExtendedKeyUsagePurpose::ClientAuth])
}

/// An intermediate under `parent` with these EKUs (none: no EKU extension).
fn intermediate_with_eku(cn: &str, parent: &Ca, eku: &[ExtendedKeyUsagePurpose]) -> Ca {
    CertifiedIssuer::signed_by(ca_params(cn, eku), KeyPair::generate().unwrap(), parent).unwrap()
}

fn generate_pki() -> Pki {
    let root = root_ca(ROOT_CN);
    let allowed = intermediate_ca(ALLOWED_CN, &root);
    let other = intermediate_ca(OTHER_CN, &root);
    let plain = intermediate_with_eku(PLAIN_CN, &root, &[]);
    let server_only = intermediate_with_eku(PLAIN_CN, &root, &[ExtendedKeyUsagePurpose::ServerAuth]);
    let unknown_root = root_ca("Unknown Root CA");
    let server_ca = root_ca("Client Cert Test Server CA");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.distinguished_name = dn("127.0.0.1");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    let server_cert = params.signed_by(&key, &server_ca).unwrap().pem();
    Pki {
        root,
        allowed,
        other,
        unknown_root,
        plain,
        server_only,
        server_ca,
        server_cert,
        server_key: key.serialize_pem(),
    }
}

/// The roots the TLS server verifies client certificates against.
fn roots() -> TrustRoots {
    TrustRoots::from_pem(&pki().root.pem()).unwrap()
}

/// A client certificate with the key that goes with it.
struct Leaf {
    /// The leaf alone, PEM.
    cert: String,
    /// The leaf, then the intermediates the client presents, PEM.
    chain: String,
    key: String,
    der: Vec<u8>,
}

impl Leaf {
    fn new(cert: rcgen::Certificate, key: &KeyPair, presented: &[&Ca]) -> Self {
        let chain: String = std::iter::once(cert.pem()).chain(presented.iter().map(|ca| ca.pem())).collect();
        Self { cert: cert.pem(), chain, key: key.serialize_pem(), der: cert.der().to_vec() }
    }

    fn identity(&self) -> reqwest::Identity {
        reqwest::Identity::from_pem(format!("{}{}", self.chain, self.key).as_bytes()).unwrap()
    }

    /// base64url(SHA-256(DER)): RFC 8705's `x5t#S256`.
    fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(&self.der))
    }
}

/// A valid client-certificate template: CN `cn`, `clientAuth`, valid 2020..2100.
fn client_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2100, 1, 1);
    params
}

/// `params` issued by `issuer`, presented with the `presented` intermediates.
fn issue(params: &CertificateParams, issuer: &Ca, presented: &[&Ca]) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    Leaf::new(cert, &key, presented)
}

/// A client certificate for `cn` from the allowed intermediate, presented with it.
fn user_cert(cn: &str) -> Leaf {
    let pki = pki();
    issue(&client_params(cn), &pki.allowed, &[&pki.allowed])
}

/// A client certificate for `cn` from the non-allowed intermediate, presented with it.
fn other_cert(cn: &str) -> Leaf {
    let pki = pki();
    issue(&client_params(cn), &pki.other, &[&pki.other])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------
// Deployments and servers
// ---------------------------------------------------------------------------------------

/// Certificate-only users (no passwords); one per CN form.
const USERS: &str = r#"
[[role]]
name = "identity_viewer"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]

[[role]]
name = "everyone"
permissions = ["/permission/admin/login"]

[[user]]
name = "alex"
roles = ["identity_viewer", "everyone"]

[[user]]
name = "bob"
roles = ["everyone"]

[[user]]
name = "SECONDARY/alex"
roles = ["everyone"]

[[user]]
name = "alex@tenant.com"
roles = ["everyone"]

[[user]]
name = "SECONDARY/alex@tenant.com"
roles = ["everyone"]

[[user]]
name = "dave"
roles = ["identity_viewer"]
disabled = true
"#;

/// The allow-list by CN, with `/scim2` exempt.
const ALLOW_BY_CN: &str = r#"
enable = true
cert_cns = ["Allowed Intermediate CA"]
exempt_contexts = ["/scim2"]
"#;

/// The rule file: `[client_cert]` holds `client_cert`, `[intermediate_cert_validation]`
/// holds `validation`, `extra` goes before the rules. `/public` is open, `/api/view` needs
/// the view permission, everything else an authenticated caller (the secure default).
fn deployment(client_cert: &str, validation: &str, extra: &str) -> String {
    format!(
        r#"
[authentication]
realm = "client-cert-tests"

[client_cert]
{client_cert}

[intermediate_cert_validation]
{validation}

{extra}

[[resource.access_control]]
context = "/public"
secure = false

[[resource.access_control]]
context = "/api/view"
permissions = ["{VIEW}"]
"#
    )
}

/// `[client_cert]` settings for certificates forwarded in `header`, written in `format`, by
/// `proxy`; the roots and both intermediates are written into `dir` (read at build time).
fn forwarded_settings(dir: &Path, header: &str, format: &str, proxy: &str) -> String {
    let pki = pki();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, pki.root.pem()).unwrap();
    let intermediates_file = dir.join("intermediates.pem");
    std::fs::write(&intermediates_file, format!("{}{}", pki.allowed.pem(), pki.other.pem())).unwrap();
    format!(
        "forwarded_header = \"{header}\"\nforwarded_format = \"{format}\"\ntrusted_proxies = [\"{proxy}\"]\nca_file = '{}'\nintermediates_file = '{}'\n",
        ca_file.display(),
        intermediates_file.display()
    )
}

fn layer(deployment_text: &str) -> SecureLayer {
    layer_with(deployment_text, load_users("users.toml", USERS).unwrap())
}

fn layer_with(deployment_text: &str, users: impl UserStore) -> SecureLayer {
    let deployment = Deployment::from_toml_str("deployment.toml", deployment_text)
        .unwrap_or_else(|e| panic!("bad test deployment: {e}\n{deployment_text}"));
    SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap()
}

fn describe(caller: &Principal) -> Value {
    let name = caller.name();
    json!({
        "name": name.to_string(),
        "user": name.user(),
        "domain": name.domain(),
        "tenant": name.tenant(),
        "authenticated_by": caller.authenticated_by(),
    })
}

/// Echoes the caller (the `Principal` extractor: secured resources only).
async fn echo(caller: Principal) -> Json<Value> {
    Json(describe(&caller))
}

/// Echoes the caller, if any (the open `/public`).
async fn echo_open(caller: Option<Principal>) -> Json<Value> {
    Json(caller.as_ref().map_or_else(|| json!({"anonymous": true}), describe))
}

fn app(deployment_text: &str) -> Router {
    app_with(layer(deployment_text))
}

fn app_with(layer: SecureLayer) -> Router {
    Router::new().route("/public", get(echo_open)).fallback(echo).layer(layer)
}

/// Serves the app over the crate's TLS server on 127.0.0.1:0; returns `https://127.0.0.1:port`.
async fn serve_tls(deployment_text: &str, client_auth: ClientAuth) -> String {
    serve_tls_app(app(deployment_text), client_auth).await
}

async fn serve_tls_app(app: Router, client_auth: ClientAuth) -> String {
    let pki = pki();
    let server = TlsServer::from_pem(&pki.server_cert, &pki.server_key, client_auth).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { server.serve(listener, app).await });
    format!("https://127.0.0.1:{port}")
}

/// The standard TLS server: client certificates optional, allow-list by CN.
async fn standard_tls() -> String {
    serve_tls(&deployment("", ALLOW_BY_CN, ""), ClientAuth::Optional(roots())).await
}

/// A rustls client that trusts only the server CA, presenting `cert` if given.
fn tls_client(cert: Option<&Leaf>) -> reqwest::Client {
    let server_ca = reqwest::Certificate::from_pem(pki().server_ca.pem().as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder().timeout(TIMEOUT).tls_certs_only([server_ca]);
    if let Some(cert) = cert {
        builder = builder.identity(cert.identity());
    }
    builder.build().unwrap()
}

struct Reply {
    status: u16,
    body: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(300).collect();
        write!(f, "{} {body}", self.status)
    }
}

impl Reply {
    /// The echoed caller of a 200.
    fn caller(&self) -> Value {
        assert_eq!(self.status, 200, "expected the echo, got {self:?}");
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// GET `base` + `path` with `client` and extra headers (repeated names are sent twice).
async fn send(client: &reqwest::Client, base: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client.get(format!("{base}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("GET {path}: no response: {e:?}"));
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    Reply { status, body }
}

/// GET over TLS on a new connection presenting `cert`, if any.
async fn fetch(base: &str, path: &str, cert: Option<&Leaf>) -> Reply {
    send(&tls_client(cert), base, path, &[]).await
}

/// Asserts the status of GET `path` with `cert`; `what` names the case.
async fn expect(base: &str, path: &str, cert: Option<&Leaf>, status: u16, what: &str) {
    let reply = fetch(base, path, cert).await;
    assert_eq!(reply.status, status, "{what}: GET {path}: {reply:?}");
}

// ---------------------------------------------------------------------------------------
// A8, F14: the TLS connection's certificate authenticates its CN's user
// ---------------------------------------------------------------------------------------

// SPEC A8, F14: a certificate from the allowed intermediate, presented with it over a real
// handshake, authenticates its CN; the handler sees the caller through `Principal`. The
// connection keeps its caller across keep-alive requests.
#[tokio::test]
async fn a8_allowed_chain_authenticates_the_cn_user() {
    let base = standard_tls().await;
    let alex = user_cert("alex");
    let client = tls_client(Some(&alex));
    for _ in 0..2 {
        let caller = send(&client, &base, "/api/me", &[]).await.caller();
        assert_eq!(caller["name"], "alex");
        assert_eq!(caller["authenticated_by"], "client_cert");
        assert_eq!((caller["domain"].as_str(), caller["tenant"].as_str()), (Some("PRIMARY"), Some("carbon.super")));
    }
    // On an open resource the certificate still names the caller.
    let caller = send(&client, &base, "/public", &[]).await.caller();
    assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("client_cert")));
}

// SPEC A8, F15: the four CN forms `user`, `DOMAIN/user`, `user@tenant`,
// `DOMAIN/user@tenant` map to their own users (tenant users on their tenant's paths).
#[tokio::test]
async fn a8_f15_each_cn_form_maps_to_its_user() {
    let base = standard_tls().await;
    let cases = [
        ("alex", "/api/me", "alex", "PRIMARY", "carbon.super"),
        ("SECONDARY/alex", "/api/me", "alex", "SECONDARY", "carbon.super"),
        ("alex@tenant.com", "/t/tenant.com/api/me", "alex", "PRIMARY", "tenant.com"),
        ("SECONDARY/alex@tenant.com", "/t/tenant.com/api/me", "alex", "SECONDARY", "tenant.com"),
    ];
    for (cn, path, user, domain, tenant) in cases {
        let caller = fetch(&base, path, Some(&user_cert(cn))).await.caller();
        assert_eq!(caller["name"], cn, "CN {cn}");
        assert_eq!(caller["user"], user, "CN {cn}");
        assert_eq!(caller["domain"], domain, "CN {cn}");
        assert_eq!(caller["tenant"], tenant, "CN {cn}");
        assert_eq!(caller["authenticated_by"], "client_cert", "CN {cn}");
    }
    // The same name with a different domain or tenant is another user: SECONDARY/alex's
    // certificate does not reach the tenant's resources.
    expect(&base, "/t/tenant.com/api/me", Some(&user_cert("SECONDARY/alex")), 403, "cross-tenant").await;
}

// SPEC A8, F14: validity and `clientAuth` are checked on the handshake's certificate:
// expired, not yet valid, `serverAuth` only and no EKU extension at all are refused.
#[tokio::test]
async fn a8_f14_validity_and_client_auth_eku_required() {
    let base = standard_tls().await;
    let pki = pki();
    let variant = |edit: &dyn Fn(&mut CertificateParams)| {
        let mut params = client_params("alex");
        edit(&mut params);
        issue(&params, &pki.allowed, &[&pki.allowed])
    };
    let cases = [
        (
            "expired",
            variant(&|p| {
                p.not_before = rcgen::date_time_ymd(2000, 1, 1);
                p.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }),
        ),
        (
            "not yet valid",
            variant(&|p| {
                p.not_before = rcgen::date_time_ymd(2200, 1, 1);
                p.not_after = rcgen::date_time_ymd(2201, 1, 1);
            }),
        ),
        ("serverAuth only", variant(&|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth])),
        ("no EKU extension", variant(&|p| p.extended_key_usages.clear())),
    ];
    expect(&base, "/api/me", Some(&user_cert("alex")), 200, "control: valid certificate").await;
    for (what, cert) in &cases {
        expect(&base, "/api/me", Some(cert), 401, what).await;
    }
}

// SPEC A8, F15: exactly one CN naming an existing, enabled user.
#[tokio::test]
async fn a8_f15_subject_must_name_one_enabled_user() {
    let base = standard_tls().await;
    let pki = pki();
    let mut two_cns = client_params("alex");
    // rcgen keeps one value per attribute type: a second CN goes in as a custom type with
    // the CN OID (2.5.4.3).
    two_cns.distinguished_name.push(DnType::CustomDnType(vec![2, 5, 4, 3]), "bob");
    let mut no_cn = client_params("alex");
    no_cn.distinguished_name.remove(DnType::CommonName);
    let cases = [
        ("two CNs", issue(&two_cns, &pki.allowed, &[&pki.allowed])),
        ("no CN", issue(&no_cn, &pki.allowed, &[&pki.allowed])),
        ("CN not a user name", user_cert("a/b/c")),
        ("CN of an unknown user", user_cert("nobody")),
        ("CN of a disabled user", user_cert("dave")),
    ];
    for (what, cert) in &cases {
        expect(&base, "/api/me", Some(cert), 401, what).await;
    }
}

// SPEC A8, F14: a chain that does not verify to the configured roots is refused, whatever
// its CN says (the handshake itself accepts it; the answer is an HTTP 401).
#[tokio::test]
async fn a8_f14_untrusted_issuers_are_refused() {
    let base = standard_tls().await;
    let pki = pki();
    let key = KeyPair::generate().unwrap();
    let self_signed = Leaf::new(client_params("alex").self_signed(&key).unwrap(), &key, &[]);
    let from_unknown_root = issue(&client_params("alex"), &pki.unknown_root, &[]);
    // An intermediate with the allowed CN under the unknown root: same name, other key.
    let impostor = intermediate_ca(ALLOWED_CN, &pki.unknown_root);
    let from_impostor = issue(&client_params("alex"), &impostor, &[&impostor]);
    for (what, cert) in [
        ("self-signed", &self_signed),
        ("unknown CA", &from_unknown_root),
        ("allowed CN under an unknown root", &from_impostor),
    ] {
        expect(&base, "/api/me", Some(cert), 401, what).await;
        expect(&base, "/public", Some(cert), 401, what).await;
    }
}

// SPEC A8, F14: `clientAuth` is required of the client certificate; a CA certificate
// without an EKU extension (RFC 5280 4.2.1.12: "in general, this extension will appear only
// in end entity certificates") does not restrict its leaves, so a `clientAuth` leaf under
// it is accepted. A CA whose EKU extension excludes `clientAuth` does restrict them.
#[tokio::test]
async fn a8_f14_intermediate_without_an_eku_extension() {
    let validation = format!("enable = true\ncert_cns = [\"{PLAIN_CN}\"]\n");
    let base = serve_tls(&deployment("", &validation, ""), ClientAuth::Optional(roots())).await;
    let pki = pki();
    let restricted = issue(&client_params("alex"), &pki.server_only, &[&pki.server_only]);
    expect(&base, "/api/me", Some(&restricted), 401, "issuer's EKU lists serverAuth only").await;
    let cert = issue(&client_params("alex"), &pki.plain, &[&pki.plain]);
    let caller = fetch(&base, "/api/me", Some(&cert)).await.caller();
    assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("client_cert")));
    // The leaf itself still needs the extension with `clientAuth`.
    let mut no_eku = client_params("alex");
    no_eku.extended_key_usages.clear();
    expect(&base, "/api/me", Some(&issue(&no_eku, &pki.plain, &[&pki.plain])), 401, "leaf without EKU").await;
}

// SPEC A8: without a certificate (or any other credential) a secured resource answers
// 401 and an open one 200, anonymously.
#[tokio::test]
async fn a8_no_certificate() {
    let base = standard_tls().await;
    expect(&base, "/api/me", None, 401, "no certificate, secured").await;
    let reply = fetch(&base, "/public", None).await;
    assert_eq!(reply.caller(), json!({"anonymous": true}));
}

// SPEC A8: the certificate user's roles and permissions are what rules check.
#[tokio::test]
async fn a8_certificate_user_permissions_apply() {
    let base = standard_tls().await;
    assert_eq!(fetch(&base, "/api/view", Some(&user_cert("alex"))).await.caller()["name"], "alex");
    expect(&base, "/api/view", Some(&user_cert("bob")), 403, "bob lacks the view permission").await;
    assert_eq!(fetch(&base, "/api/me", Some(&user_cert("bob"))).await.caller()["name"], "bob");
}

// SPEC F14: with `ClientAuth::Required` a client without a certificate fails the
// handshake (no HTTP answer at all); the server keeps serving clients with one.
#[tokio::test]
async fn f14_required_client_auth_fails_the_handshake_without_a_certificate() {
    let base = serve_tls(&deployment("", ALLOW_BY_CN, ""), ClientAuth::Required(roots())).await;
    let attempt = tokio::time::timeout(TIMEOUT, tls_client(None).get(format!("{base}/public")).send()).await;
    match attempt.expect("the handshake must fail, not hang") {
        Ok(response) => panic!("no certificate, Required: got an answer {}", response.status()),
        Err(error) => assert!(!error.is_timeout(), "expected a TLS failure, got a timeout: {error:?}"),
    }
    assert_eq!(fetch(&base, "/api/me", Some(&user_cert("alex"))).await.caller()["name"], "alex");
}

// ---------------------------------------------------------------------------------------
// A9, F14: the intermediate-CA allow-list, on the verified path
// ---------------------------------------------------------------------------------------

// SPEC A9: a leaf from the non-allowed intermediate is refused.
#[tokio::test]
async fn a9_leaf_from_a_non_allowed_intermediate_is_refused() {
    let base = standard_tls().await;
    expect(&base, "/api/me", Some(&other_cert("alex")), 401, "non-allowed intermediate").await;
    expect(&base, "/api/me", Some(&user_cert("alex")), 200, "control: allowed intermediate").await;
}

// SPEC A9, F14: appending the allowed intermediate to the presented chain does not help:
// the allow-list is checked on the path webpki verified, not on what the client sent.
#[tokio::test]
async fn a9_f14_allowed_intermediate_appended_to_the_chain_does_not_help() {
    let base = standard_tls().await;
    let pki = pki();
    let cert = issue(&client_params("alex"), &pki.other, &[&pki.other, &pki.allowed]);
    assert_eq!(cert.chain.matches("BEGIN CERTIFICATE").count(), 3);
    expect(&base, "/api/me", Some(&cert), 401, "allowed intermediate appended").await;
    // Ahead of the real issuer, too.
    let cert = issue(&client_params("alex"), &pki.other, &[&pki.allowed, &pki.other]);
    expect(&base, "/api/me", Some(&cert), 401, "allowed intermediate first").await;
}

// SPEC A9: exempt contexts accept the non-allowed intermediate's leaf (prefix on segment
// boundaries only); the certificate must still verify.
#[tokio::test]
async fn a9_exempt_context_accepts_a_non_allowed_intermediate() {
    let base = standard_tls().await;
    let cert = other_cert("alex");
    for path in ["/scim2", "/scim2/Users", "/scim2/Users/42"] {
        let caller = fetch(&base, path, Some(&cert)).await.caller();
        assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("client_cert")));
    }
    expect(&base, "/scim2x", Some(&cert), 401, "not under /scim2").await;
    // The caller remembered for the connection does not carry the exemption to other paths.
    let client = tls_client(Some(&cert));
    assert_eq!(send(&client, &base, "/scim2/Users", &[]).await.caller()["name"], "alex");
    let reply = send(&client, &base, "/api/me", &[]).await;
    assert_eq!(reply.status, 401, "same connection, path not exempt: {reply:?}");
    expect(&base, "/api/scim2", Some(&cert), 401, "not a prefix").await;
    let key = KeyPair::generate().unwrap();
    let self_signed = Leaf::new(client_params("alex").self_signed(&key).unwrap(), &key, &[]);
    expect(&base, "/scim2/Users", Some(&self_signed), 401, "exempt, but unverified").await;
}

// SPEC I1, A8, A9: the same settings built in code (`code::ClientCert`) behave as the
// tables: through the deployment (the layer builds the handler) and as a handler built on
// its own (`ClientCertAuthenticator::new`, registered as a plugin would be); a bad
// fingerprint is refused naming the item.
#[tokio::test]
async fn a9_client_cert_settings_in_code() {
    use tower_secure::authn::ClientCertAuthenticator;
    use tower_secure::code::{AccessRule, ClientCert};

    let settings = || ClientCert::new().allow_issuer_cn("Allowed Intermediate CA").exempt_context("/scim2");
    let public = || AccessRule::new("/public").open();
    let users = || load_users("users.toml", USERS).unwrap();
    let through_deployment = Deployment::builder().rule(public()).client_cert(settings()).build().unwrap();
    let through_deployment = SecureLayer::builder().deployment(through_deployment).user_store(users()).build().unwrap();
    let handler = ClientCertAuthenticator::new(settings(), users()).unwrap();
    let alone = SecureLayer::builder()
        .deployment(Deployment::builder().rule(public()).build().unwrap())
        .authentication_handler(handler)
        .build()
        .unwrap();
    for layer in [through_deployment, alone] {
        let base = serve_tls_app(app_with(layer), ClientAuth::Optional(roots())).await;
        assert_eq!(fetch(&base, "/api/me", Some(&user_cert("alex"))).await.caller()["name"], "alex");
        expect(&base, "/api/me", Some(&other_cert("alex")), 401, "non-allowed intermediate").await;
        assert_eq!(fetch(&base, "/scim2/Users", Some(&other_cert("alex"))).await.caller()["name"], "alex");
        expect(&base, "/api/me", None, 401, "no certificate").await;
    }

    let bad = ClientCert::new().allow_issuer_fingerprint("not-hex");
    let error = Deployment::builder()
        .rule(public())
        .client_cert(bad)
        .build()
        .map(|d| SecureLayer::builder().deployment(d).user_store(users()).build().map(|_| ()));
    let error = error.and_then(|built| built).unwrap_err();
    assert_eq!((&*error.file, error.line, error.key.as_deref()), ("<code>", 2, Some("cert_fingerprints")), "{error}");

    // Intermediates serve forwarded certificates only: without `forwarded` they are an
    // error, not silently dropped.
    let error = tower_secure::authn::ClientCertAuthenticator::new(
        ClientCert::new().intermediates_file("intermediates.pem"),
        tower_secure::identity::InMemoryUserStore::default(),
    )
    .unwrap_err();
    assert_eq!((&*error.file, error.key.as_deref()), ("<code>", Some("intermediates_file")), "{error}");
}

/// A TLS server whose allow-list holds only this SHA-256 (hex).
async fn allow_fingerprint_tls(fingerprint: &str) -> String {
    let validation = format!("enable = true\ncert_fingerprints = [\"{fingerprint}\"]\n");
    serve_tls(&deployment("", &validation, ""), ClientAuth::Optional(roots())).await
}

// SPEC A9: an intermediate allowed by the SHA-256 of its certificate.
#[tokio::test]
async fn a9_allowed_by_certificate_fingerprint() {
    let base = allow_fingerprint_tls(&hex(&Sha256::digest(pki().allowed.der()))).await;
    assert_eq!(fetch(&base, "/api/me", Some(&user_cert("alex"))).await.caller()["name"], "alex");
    expect(&base, "/api/me", Some(&other_cert("alex")), 401, "other intermediate").await;
}

// SPEC A9: an intermediate allowed by the SHA-256 of its SubjectPublicKeyInfo
// (colon-separated, upper case).
#[tokio::test]
async fn a9_allowed_by_spki_fingerprint() {
    let spki = pki().allowed.key().subject_public_key_info();
    let fingerprint: Vec<String> = Sha256::digest(spki).iter().map(|b| format!("{b:02X}")).collect();
    let base = allow_fingerprint_tls(&fingerprint.join(":")).await;
    assert_eq!(fetch(&base, "/api/me", Some(&user_cert("alex"))).await.caller()["name"], "alex");
    expect(&base, "/api/me", Some(&other_cert("alex")), 401, "other intermediate").await;
}

// SPEC A9, F14: the verified path runs up to the trust anchor: allowing the root allows
// every intermediate under it, but not a certificate from another root.
#[tokio::test]
async fn a9_f14_allowed_trust_anchor_covers_its_intermediates() {
    let base = allow_fingerprint_tls(&hex(&Sha256::digest(pki().root.der()))).await;
    assert_eq!(fetch(&base, "/api/me", Some(&other_cert("alex"))).await.caller()["name"], "alex");
    assert_eq!(fetch(&base, "/api/me", Some(&user_cert("alex"))).await.caller()["name"], "alex");
    let foreign = issue(&client_params("alex"), &pki().unknown_root, &[]);
    expect(&base, "/api/me", Some(&foreign), 401, "another root").await;
}

// ---------------------------------------------------------------------------------------
// F16: certificates forwarded by a TLS-terminating proxy
// ---------------------------------------------------------------------------------------

/// RFC 9440: `:base64(DER):`.
fn rfc9440(cert: &Leaf) -> String {
    format!(":{}:", STANDARD.encode(&cert.der))
}

/// The leaf's PEM on one line, newlines as spaces (nginx `$ssl_client_cert` style).
fn pem_with_spaces(cert: &Leaf) -> String {
    cert.cert.trim().replace('\n', " ")
}

/// The leaf's PEM, percent-encoded (nginx `$ssl_client_escaped_cert` style).
fn url_encoded_pem(cert: &Leaf) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-._~".contains(&b);
    cert.cert.bytes().map(|b| if keep(b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// The app over plain HTTP (peer 127.0.0.1), certificates forwarded in `header` from `proxy`.
async fn serve_forwarded(header: &str, format: &str, proxy: &str, validation: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let text = deployment(&forwarded_settings(dir.path(), header, format, proxy), validation, "");
    common::serve(app(&text)).await
}

// SPEC F16: from the trusted proxy each configured format authenticates the leaf's CN (the
// intermediate comes from `intermediates_file`); the allow-list applies to forwarded
// certificates too.
#[tokio::test]
async fn f16_forwarded_certificate_from_the_trusted_proxy() {
    let client = common::client();
    let alex = user_cert("alex");

    let base = serve_forwarded("Client-Cert", "rfc9440", "127.0.0.1", ALLOW_BY_CN).await;
    let caller = send(&client, &base, "/api/me", &[("client-cert", &rfc9440(&alex))]).await.caller();
    assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("client_cert")));
    let reply = send(&client, &base, "/api/me", &[("client-cert", &rfc9440(&other_cert("alex")))]).await;
    assert_eq!(reply.status, 401, "forwarded leaf of the non-allowed intermediate: {reply:?}");

    let sam = user_cert("SECONDARY/alex");
    for (format, value) in [("pem", pem_with_spaces(&sam)), ("pem-urlencoded", url_encoded_pem(&sam))] {
        let base = serve_forwarded("X-Forwarded-Client-Cert", format, "127.0.0.1", ALLOW_BY_CN).await;
        let reply = send(&client, &base, "/api/me", &[("x-forwarded-client-cert", &value)]).await;
        assert_eq!(reply.caller()["name"], "SECONDARY/alex", "{format}");
        // The user's permissions apply to forwarded callers as well.
        let reply = send(&client, &base, "/api/view", &[("x-forwarded-client-cert", &value)]).await;
        assert_eq!(reply.status, 403, "{format}: {reply:?}");
    }
}

// SPEC F16: a forwarded header from an address that is not a trusted proxy is ignored:
// the request has no credential (401), even with a certificate that would be accepted.
#[tokio::test]
async fn f16_forwarded_header_from_an_untrusted_address_is_ignored() {
    let client = common::client();
    let alex = user_cert("alex");
    let base = serve_forwarded("Client-Cert", "rfc9440", "10.9.8.7", ALLOW_BY_CN).await;
    let reply = send(&client, &base, "/api/me", &[("client-cert", &rfc9440(&alex))]).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let reply = send(&client, &base, "/public", &[("client-cert", &rfc9440(&alex))]).await;
    assert_eq!(reply.caller(), json!({"anonymous": true}));
    // Two of them from an untrusted address: still ignored, not a 400.
    let headers = [("client-cert", rfc9440(&alex)), ("client-cert", rfc9440(&alex))];
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    assert_eq!(send(&client, &base, "/api/me", &headers).await.status, 401);
}

// SPEC F16: two forwarded headers from the trusted proxy are a bad request (400); a
// forwarded certificate from an unknown CA, or garbage, is refused.
#[tokio::test]
async fn f16_two_headers_and_unknown_ca_are_refused() {
    let client = common::client();
    let base = serve_forwarded("Client-Cert", "rfc9440", "127.0.0.1", "").await;
    let (alex, bob) = (rfc9440(&user_cert("alex")), rfc9440(&user_cert("bob")));
    let reply = send(&client, &base, "/api/me", &[("client-cert", &alex), ("client-cert", &bob)]).await;
    assert_eq!(reply.status, 400, "two forwarded headers: {reply:?}");
    let reply = send(&client, &base, "/api/me", &[("client-cert", &alex), ("client-cert", &alex)]).await;
    assert_eq!(reply.status, 400, "the same header twice: {reply:?}");

    let foreign = issue(&client_params("alex"), &pki().unknown_root, &[]);
    let reply = send(&client, &base, "/api/me", &[("client-cert", &rfc9440(&foreign))]).await;
    assert_eq!(reply.status, 401, "unknown CA: {reply:?}");
    let reply = send(&client, &base, "/api/me", &[("client-cert", ":bm90IGEgY2VydGlmaWNhdGU=:")]).await;
    assert!(matches!(reply.status, 400 | 401), "not a certificate: {reply:?}");
    // Control: one header with a good certificate.
    assert_eq!(send(&client, &base, "/api/me", &[("client-cert", &alex)]).await.caller()["name"], "alex");
}

// SPEC F16: a connection with its own TLS client certificate is never overridden by a
// forwarded header, even from a trusted address: the real certificate decides.
#[tokio::test]
async fn f16_forged_header_alongside_a_real_tls_certificate_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let settings = forwarded_settings(dir.path(), "X-Forwarded-Client-Cert", "pem-urlencoded", "127.0.0.1");
    let base = serve_tls(&deployment(&settings, ALLOW_BY_CN, ""), ClientAuth::Optional(roots())).await;
    let forged = url_encoded_pem(&user_cert("alex"));
    let header = [("x-forwarded-client-cert", forged.as_str())];

    let bob = tls_client(Some(&user_cert("bob")));
    let caller = send(&bob, &base, "/api/me", &header).await.caller();
    assert_eq!(caller["name"], "bob", "the TLS certificate decides");
    assert_eq!(send(&bob, &base, "/api/view", &header).await.status, 403, "bob's permissions, not alex's");

    let foreign = issue(&client_params("alex"), &pki().unknown_root, &[]);
    let reply = send(&tls_client(Some(&foreign)), &base, "/api/me", &header).await;
    assert_eq!(reply.status, 401, "an unverified TLS certificate is not replaced by the header: {reply:?}");
}

// ---------------------------------------------------------------------------------------
// A11: certificate-bound tokens (RFC 8705)
// ---------------------------------------------------------------------------------------

fn oauth2_issuer() -> String {
    format!(
        "[[oauth2.issuer]]\nissuer = \"{ISS}\"\naudience = \"{AUD}\"\nsubject_format = \"qualified\"\n\n[[oauth2.issuer.key]]\nkid = \"hs\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{}\"\n",
        STANDARD.encode(HMAC_SECRET)
    )
}

/// An HS256 token for `sub` with `extra` claims.
fn token(sub: &str, extra: Value) -> String {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now, "exp": now + 600});
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("hs".to_owned());
    encode(&header, &claims, &EncodingKey::from_secret(HMAC_SECRET)).unwrap()
}

// SPEC A11: a token with `cnf.x5t#S256` is accepted only over a connection whose client
// certificate has that thumbprint; another certificate or none is 401.
#[tokio::test]
async fn a11_certificate_bound_token() {
    let base = serve_tls(&deployment("", ALLOW_BY_CN, &oauth2_issuer()), ClientAuth::Optional(roots())).await;
    let (alex, bob) = (user_cert("alex"), user_cert("bob"));
    let bound = format!("Bearer {}", token("alex", json!({"cnf": {"x5t#S256": alex.thumbprint()}})));
    let auth = [("authorization", bound.as_str())];

    let caller = send(&tls_client(Some(&alex)), &base, "/api/me", &auth).await.caller();
    assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("oauth2")));

    let reply = send(&tls_client(Some(&bob)), &base, "/api/me", &auth).await;
    assert_eq!(reply.status, 401, "bound token over another certificate: {reply:?}");
    let reply = send(&tls_client(None), &base, "/api/me", &auth).await;
    assert_eq!(reply.status, 401, "bound token without a certificate: {reply:?}");
    // The binding is to that exact certificate: a new one for the same CN is another.
    let alex_again = user_cert("alex");
    let reply = send(&tls_client(Some(&alex_again)), &base, "/api/me", &auth).await;
    assert_eq!(reply.status, 401, "bound token over another certificate with the same CN: {reply:?}");

    // Control: an unbound token needs no certificate.
    let unbound = format!("Bearer {}", token("alex", json!({})));
    let caller = send(&tls_client(None), &base, "/api/me", &[("authorization", &unbound)]).await.caller();
    assert_eq!(caller["authenticated_by"], "oauth2");
}

// ---------------------------------------------------------------------------------------
// Real clients: curl and openssl s_client
// ---------------------------------------------------------------------------------------

/// Runs `program` with `args`, feeding `input` on stdin, bounded by [`TIMEOUT`].
async fn run(program: &str, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} (is it installed?): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} timed out"))
        .unwrap()
}

/// Writes the client's files into `dir`: `client.pem` (leaf then intermediate),
/// `leaf.pem`, `intermediate.pem`, `client.key` and `server-ca.pem`.
fn write_client_files(dir: &Path, cert: &Leaf) {
    std::fs::write(dir.join("client.pem"), &cert.chain).unwrap();
    std::fs::write(dir.join("leaf.pem"), &cert.cert).unwrap();
    std::fs::write(dir.join("intermediate.pem"), pki().allowed.pem()).unwrap();
    std::fs::write(dir.join("client.key"), &cert.key).unwrap();
    std::fs::write(dir.join("server-ca.pem"), pki().server_ca.pem()).unwrap();
}

fn path_arg(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// `curl` GET; returns the status and the body.
async fn curl(url: &str, cert: Option<(&Path, &str, &str)>, server_ca: &str) -> (u16, String) {
    let mut args = vec!["-sS", "--max-time", "10", "--cacert", server_ca, "-w", "\n%{http_code}"];
    let files;
    if let Some((dir, cert, key)) = cert {
        files = (path_arg(dir, cert), path_arg(dir, key));
        args.extend(["--cert", files.0.as_str(), "--key", files.1.as_str()]);
    }
    args.push(url);
    let out = run("curl", &args, b"").await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "curl {args:?}: {stdout} {}", String::from_utf8_lossy(&out.stderr));
    let (body, status) = stdout.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

// SPEC A8, F14: curl (OpenSSL) with `--cert/--key/--cacert` authenticates as the CN's
// user; without a certificate the secured resource answers 401.
#[tokio::test]
async fn a8_f14_curl_with_a_client_certificate() {
    let base = standard_tls().await;
    let dir = tempfile::tempdir().unwrap();
    write_client_files(dir.path(), &user_cert("alex"));
    let server_ca = path_arg(dir.path(), "server-ca.pem");
    let url = format!("{base}/api/me");

    let (status, body) = curl(&url, Some((dir.path(), "client.pem", "client.key")), &server_ca).await;
    assert_eq!(status, 200, "{body}");
    let caller: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("client_cert")));

    let (status, body) = curl(&url, None, &server_ca).await;
    assert_eq!(status, 401, "{body}");
}

// SPEC A8, F14: `openssl s_client` with `-cert/-cert_chain/-key`, a raw HTTP/1.1 request
// on stdin: 200 and the caller.
#[tokio::test]
async fn a8_f14_openssl_s_client_with_a_client_certificate() {
    let base = standard_tls().await;
    let authority = base.trim_start_matches("https://").to_owned();
    let dir = tempfile::tempdir().unwrap();
    write_client_files(dir.path(), &user_cert("alex"));
    let (leaf, chain, key, ca) = (
        path_arg(dir.path(), "leaf.pem"),
        path_arg(dir.path(), "intermediate.pem"),
        path_arg(dir.path(), "client.key"),
        path_arg(dir.path(), "server-ca.pem"),
    );
    let args = [
        "s_client",
        "-connect",
        &authority,
        "-cert",
        &leaf,
        "-cert_chain",
        &chain,
        "-key",
        &key,
        "-CAfile",
        &ca,
        "-verify_return_error",
        "-quiet",
    ];
    let request = format!("GET /api/me HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    let out = run("openssl", &args, request.as_bytes()).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let status_line = stdout.lines().next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1.1 200"), "openssl s_client: {stdout}\n{stderr}");
    let body = stdout.split("\r\n\r\n").nth(1).unwrap_or_default();
    let caller: Value = serde_json::from_str(body.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("client_cert")));
}

// SPEC A9, B7, F14: a reload that changes the allow-list rebuilds the client_cert
// handler: a tightened list refuses at once what it no longer allows and accepts what it
// now does; a list that does not load is refused and the last good one keeps deciding.
#[tokio::test]
async fn a9_b7_a_reloaded_allow_list_applies_at_once() {
    let pki = pki();
    let server = TlsServer::from_pem(&pki.server_cert, &pki.server_key, ClientAuth::Optional(roots())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let layer = layer(&deployment("", ALLOW_BY_CN, ""));
    let reloader = layer.reloader();
    let app = Router::new().route("/public", get(echo_open)).fallback(echo).layer(layer);
    tokio::spawn(async move { server.serve(listener, app).await });
    let rules = |validation: &str| Deployment::from_toml_str("deployment.toml", &deployment("", validation, ""));

    expect(&base, "/api/me", Some(&user_cert("alex")), 200, "allowed intermediate").await;
    expect(&base, "/api/me", Some(&other_cert("alex")), 401, "not yet allowed").await;

    reloader.reload(rules(&format!("enable = true\ncert_cns = [\"{OTHER_CN}\"]")).unwrap()).unwrap();
    expect(&base, "/api/me", Some(&user_cert("alex")), 401, "no longer allowed").await;
    expect(&base, "/api/me", Some(&other_cert("alex")), 200, "allowed now").await;

    let broken = rules("enable = true\ncert_fingerprints = [\"not-hex\"]").unwrap();
    assert!(reloader.reload(broken).is_err(), "a fingerprint that is not one");
    expect(&base, "/api/me", Some(&user_cert("alex")), 401, "the last good list decides").await;
    expect(&base, "/api/me", Some(&other_cert("alex")), 200, "the last good list decides").await;
}

// ---------------------------------------------------------------------------------------
// G1, G2: certificate users in SQL stores, routed by domain
// ---------------------------------------------------------------------------------------

/// A SQLite user store in `dir` holding certificate-only users (no password): `users` as
/// (name, disabled, role); role `viewer` grants the view permission.
async fn sqlite_cert_store(dir: &Path, domain: &str, users: &[(&str, bool, &str)]) -> SqlUserStore {
    let url = format!("sqlite://{}", dir.join("users.db").display());
    drop(SqlUserStore::builder(&url).create_schema(true).build().await.unwrap());
    let mut seed = format!(
        "INSERT INTO ts_role (name) VALUES ('viewer'), ('everyone');
         INSERT INTO ts_role_permission (role_name, permission) VALUES ('viewer', '{VIEW}');\n"
    );
    for (name, disabled, role) in users {
        seed.push_str(&format!(
            "INSERT INTO ts_user (name, disabled) VALUES ('{name}', {disabled});
             INSERT INTO ts_user_role (user_name, role_name) VALUES ('{name}', '{role}');\n"
        ));
    }
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql(&seed).execute(&pool).await.unwrap();
    pool.close().await;
    SqlUserStore::builder(&url).domain(domain).build().await.unwrap()
}

// SPEC A8, G1, G2: a certificate's CN is looked up in the SQL store of its domain: `alex`
// in PRIMARY's (with the view permission of its role), `SECONDARY/alex` in SECONDARY's
// (without it); a disabled or unknown user, or a domain no store serves, is refused.
#[tokio::test]
async fn a8_g1_g2_certificate_users_in_sql_stores() {
    let (primary_dir, secondary_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary =
        sqlite_cert_store(primary_dir.path(), "PRIMARY", &[("alex", false, "viewer"), ("dave", true, "viewer")]).await;
    let secondary = sqlite_cert_store(secondary_dir.path(), "SECONDARY", &[("alex", false, "everyone")]).await;
    let stores = UserStores::builder().primary(primary).domain("SECONDARY", secondary).build().unwrap();
    let layer = layer_with(&deployment("", ALLOW_BY_CN, ""), stores);
    let base = serve_tls_app(app_with(layer), ClientAuth::Optional(roots())).await;

    let caller = fetch(&base, "/api/me", Some(&user_cert("alex"))).await.caller();
    assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("client_cert")));
    expect(&base, "/api/view", Some(&user_cert("alex")), 200, "PRIMARY alex holds the view permission").await;
    let caller = fetch(&base, "/api/me", Some(&user_cert("SECONDARY/alex"))).await.caller();
    assert_eq!(caller["domain"], "SECONDARY");
    expect(&base, "/api/view", Some(&user_cert("SECONDARY/alex")), 403, "SECONDARY alex has no view").await;
    for cn in ["dave", "ghost", "OTHER/alex"] {
        expect(&base, "/api/me", Some(&user_cert(cn)), 401, cn).await;
    }
}

// ---------------------------------------------------------------------------------------
// G3: certificate users in an LDAP directory
// ---------------------------------------------------------------------------------------

// SPEC A8, G3: a certificate's CN is looked up in the directory (slapd seeded with
// examples/ldap/seed.ldif) by the service account: alex's groups become roles and the
// `developers` group grants the view permission; a user disabled in the directory, an
// unknown one, and a name matching two entries (503) are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a8_g3_certificate_users_in_ldap() {
    use tower_secure::identity::{LdapUserStore, Permission};
    let slapd = tokio::task::spawn_blocking(|| {
        common::servers::Slapd::start("dc=example,dc=com", include_str!("../examples/ldap/seed.ldif"))
    })
    .await
    .unwrap();
    let store = LdapUserStore::builder(slapd.url())
        .service_account("cn=api-reader,ou=services,dc=example,dc=com", "reader-secret")
        .user_base("ou=people,dc=example,dc=com")
        .group_base("ou=groups,dc=example,dc=com")
        .disabled_filter("(employeeType=disabled)")
        .role("developers", [Permission::parse(VIEW).unwrap()])
        .build()
        .await
        .unwrap();
    let layer = layer_with(&deployment("", ALLOW_BY_CN, ""), store);
    let base = serve_tls_app(app_with(layer), ClientAuth::Optional(roots())).await;

    let caller = fetch(&base, "/api/me", Some(&user_cert("alex"))).await.caller();
    assert_eq!((caller["name"].as_str(), caller["authenticated_by"].as_str()), (Some("alex"), Some("client_cert")));
    for cn in ["alex", "sam"] {
        expect(&base, "/api/view", Some(&user_cert(cn)), 200, "a developer holds the view permission").await;
    }
    for cn in ["kim", "ghost", "SECONDARY/alex"] {
        expect(&base, "/api/me", Some(&user_cert(cn)), 401, cn).await;
    }
    expect(&base, "/api/me", Some(&user_cert("twin")), 503, "two entries named twin").await;
}
