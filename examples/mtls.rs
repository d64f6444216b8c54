//! Client certificates over mutual TLS: the `client_cert` handler behind the crate's rustls
//! server, with an allow-list of issuing intermediate CAs (SPEC A8, A9).
//!
//! ```text
//! cargo run --example mtls -- make-certs target/mtls-dev   # a dev PKI (rcgen)
//! cargo run --example mtls -- serve target/mtls-dev        # https://127.0.0.1:8443
//! curl --cacert target/mtls-dev/ca.pem --cert target/mtls-dev/alex.pem \
//!      --key target/mtls-dev/alex.key https://127.0.0.1:8443/api/me         # 200, caller alex
//! curl --cacert target/mtls-dev/ca.pem --cert target/mtls-dev/alex-other-ca.pem \
//!      --key target/mtls-dev/alex-other-ca.key https://127.0.0.1:8443/api/me  # 401
//! ```
//!
//! `make-certs` writes a root CA (`ca.pem`), an allowed and a non-allowed intermediate
//! (`allowed-ca.pem`, `other-ca.pem`), the server's certificate for `127.0.0.1` and
//! `localhost` (`server.pem`, `server.key`), and client certificates (each file holds the
//! leaf, then its intermediate, so curl presents the chain): `alex` and `SECONDARY/alex`
//! from the allowed intermediate, and `alex` from the other one (`alex-other-ca.pem`).
//! These are development certificates: the CA keys are not kept.
//!
//! `serve` trusts `ca.pem` for client certificates (asked for, not required), allows only
//! client certificates issued by the allowed intermediate, and answers `/api/me` with the
//! caller. `ADDR` changes the listen address.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use axum::routing::get;
use axum::{Json, Router};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::{json, Value};
use tower_secure::authn::TrustRoots;
use tower_secure::config::{load_users, Deployment};
use tower_secure::tls::{ClientAuth, TlsServer};
use tower_secure::{Principal, SecureLayer};

/// The CN of the intermediate CA allowed to issue client certificates.
const ALLOWED_CA: &str = "tower-secure dev Allowed Intermediate CA";

/// The rules: `/api/me` needs an authenticated caller (the secure default), `/public` is
/// open; client certificates must come from the allowed intermediate.
const DEPLOYMENT: &str = r#"
[authentication]
realm = "mtls-example"

[client_cert]

[intermediate_cert_validation]
enable = true
cert_cns = ["tower-secure dev Allowed Intermediate CA"]

[[resource.access_control]]
context = "/public"
secure = false
"#;

/// Certificate users need no password.
const USERS: &str = r#"
[[role]]
name = "everyone"
permissions = ["/permission/admin/login"]

[[user]]
name = "alex"
roles = ["everyone"]

[[user]]
name = "SECONDARY/alex"
roles = ["everyone"]
"#;

type Ca = CertifiedIssuer<'static, KeyPair>;
type Error = Box<dyn std::error::Error>;

fn name(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "tower-secure dev");
    name.push(DnType::CommonName, cn);
    name
}

/// Parameters valid from the start of last year for `years` years after this one.
fn params(cn: &str, years: i32) -> CertificateParams {
    const SECONDS_PER_YEAR: u64 = 31_556_952; // 365.2425 days
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    // Within a day of the true year; the year before covers the error.
    let year = 1970 + i32::try_from(since_epoch.as_secs() / SECONDS_PER_YEAR).unwrap_or(0);
    let mut params = CertificateParams::default();
    params.distinguished_name = name(cn);
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + years, 1, 1);
    params
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = params(cn, 10);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn intermediate(cn: &str, root: &Ca) -> Result<Ca, Error> {
    Ok(CertifiedIssuer::signed_by(ca_params(cn), KeyPair::generate()?, root)?)
}

/// Writes `<file>.pem` (the leaf, then `chain`) and `<file>.key`.
fn write_leaf(dir: &Path, file: &str, params: &CertificateParams, issuer: &Ca, chain: &[&Ca]) -> Result<(), Error> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    let pem: String = std::iter::once(cert.pem()).chain(chain.iter().map(|ca| ca.pem())).collect();
    std::fs::write(dir.join(format!("{file}.pem")), pem)?;
    std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem())?;
    Ok(())
}

fn client_params(cn: &str) -> CertificateParams {
    let mut params = params(cn, 1);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params
}

fn make_certs(dir: &Path) -> Result<(), Error> {
    std::fs::create_dir_all(dir)?;
    let root = CertifiedIssuer::self_signed(ca_params("tower-secure dev Root CA"), KeyPair::generate()?)?;
    let allowed = intermediate(ALLOWED_CA, &root)?;
    let other = intermediate("tower-secure dev Other Intermediate CA", &root)?;
    std::fs::write(dir.join("ca.pem"), root.pem())?;
    std::fs::write(dir.join("allowed-ca.pem"), allowed.pem())?;
    std::fs::write(dir.join("other-ca.pem"), other.pem())?;

    let mut server = params("127.0.0.1", 1);
    server.subject_alt_names =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?.subject_alt_names;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    write_leaf(dir, "server", &server, &root, &[])?;

    write_leaf(dir, "alex", &client_params("alex"), &allowed, &[&allowed])?;
    write_leaf(dir, "secondary-alex", &client_params("SECONDARY/alex"), &allowed, &[&allowed])?;
    write_leaf(dir, "alex-other-ca", &client_params("alex"), &other, &[&other])?;
    println!("wrote a dev PKI to {}", dir.display());
    Ok(())
}

async fn me(caller: Principal) -> Json<Value> {
    Json(json!({
        "user": caller.name().to_string(),
        "authenticated_by": caller.authenticated_by(),
    }))
}

async fn serve(dir: &Path) -> Result<(), Error> {
    let roots = TrustRoots::from_pem_file(dir.join("ca.pem"))?;
    let tls = TlsServer::from_pem_files(dir.join("server.pem"), dir.join("server.key"), ClientAuth::Optional(roots))?;
    let layer = SecureLayer::builder()
        .deployment(Deployment::from_toml_str("examples/mtls.rs (DEPLOYMENT)", DEPLOYMENT)?)
        .user_store(load_users("examples/mtls.rs (USERS)", USERS)?)
        .build()?;
    let app =
        Router::new().route("/api/me", get(me)).route("/public", get(|| async { "open to anyone\n" })).layer(layer);
    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:8443".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let addr = listener.local_addr()?;
    // The banner is best effort: a closed stdout must not stop the server.
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "mtls example listening on https://{addr}");
    let _ = stdout.flush();
    tls.serve(listener, app).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = |i: usize| args.get(i).map_or_else(|| PathBuf::from("target/mtls-dev"), PathBuf::from);
    match args.first().map(String::as_str) {
        Some("make-certs") => make_certs(&dir(1)),
        Some("serve") => serve(&dir(1)).await,
        _ => Err("usage: mtls make-certs [DIR] | mtls serve [DIR]   (DIR defaults to target/mtls-dev)".into()),
    }
}
