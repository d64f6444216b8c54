//! Relative paths in a rule file lead from the file's directory, not from the working
//! directory: `pem_file` of `[[oauth2_server.key]]` and `[[oauth2.issuer.key]]`,
//! `jwks_file`, `ca_file` and `intermediates_file`. Text loaded from memory keeps the
//! working directory. The tests' working directory is the crate root, where none of the
//! files are.

mod common;

use std::path::Path;

use axum::routing::get;
use axum::Router;
use serde_json::json;
use tower_secure::config::{load_users, ConfigError, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::{Principal, SecureLayer};

/// Writes, under `conf`: an ES256 signing key, its public half, the token server's JWKS, a
/// CA and an intermediate; returns the rule file text naming them all relatively (to
/// `prefix`).
fn write_files(conf: &Path, prefix: &str) -> String {
    std::fs::create_dir_all(conf.join("keys")).unwrap();
    std::fs::create_dir_all(conf.join("certs")).unwrap();
    common::openssl_genpkeys(&conf.join("keys"), &[("signing", common::EC_P256)]);
    let status = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(conf.join("keys/signing.pem"))
        .arg("-out")
        .arg(conf.join("keys/public.pem"))
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    let (ca, intermediate) = certificates();
    std::fs::write(conf.join("certs/ca.pem"), ca).unwrap();
    std::fs::write(conf.join("certs/intermediates.pem"), intermediate).unwrap();
    format!(
        r#"
[oauth2_server]
issuer = "https://dev.example"

[[oauth2_server.key]]
algorithm = "ES256"
pem_file = "{prefix}keys/signing.pem"

[[oauth2.issuer]]
issuer = "https://jwks.example"
subject_format = "qualified"
jwks_file = "{prefix}keys/jwks.json"

[[oauth2.issuer]]
issuer = "https://pem.example"

[[oauth2.issuer.key]]
algorithm = "ES256"
pem_file = "{prefix}keys/public.pem"

[client_cert]
forwarded_header = "X-Forwarded-Client-Cert"
forwarded_format = "pem-urlencoded"
trusted_proxies = ["127.0.0.1"]
ca_file = "{prefix}certs/ca.pem"
intermediates_file = "{prefix}certs/intermediates.pem"
"#
    )
}

/// A CA certificate and an intermediate under it, PEM.
fn certificates() -> (String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let ca_params = |cn: &str| {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
    };
    let root = CertifiedIssuer::self_signed(ca_params("Relative Root"), KeyPair::generate().unwrap()).unwrap();
    let intermediate =
        CertifiedIssuer::signed_by(ca_params("Relative Intermediate"), KeyPair::generate().unwrap(), &root).unwrap();
    (root.pem(), intermediate.pem())
}

/// The token server of the rule file; its JWKS written where the file's issuer reads it.
fn token_server(deployment: &Deployment, jwks: &Path) -> Result<TokenServer, ConfigError> {
    let tokens = TokenServer::builder().deployment(deployment).build()?;
    std::fs::write(jwks, serde_json::to_string(tokens.jwks()).unwrap()).unwrap();
    Ok(tokens)
}

/// The layer of the rule file, with one user, trusting `tokens` when given.
fn layer(deployment: Deployment, tokens: Option<&TokenServer>) -> Result<SecureLayer, ConfigError> {
    let users = load_users("users.toml", "[[user]]\nname = \"alex\"\n")?;
    let mut builder = SecureLayer::builder().deployment(deployment).user_store(users);
    if let Some(tokens) = tokens {
        builder = builder.token_server(tokens);
    }
    builder.build()
}

async fn me(caller: Principal) -> String {
    caller.name().to_string()
}

// SPEC B1, D1, A5, A8: a rule file outside the working directory names its signing key,
// an issuer's JWKS file and public key, and the client CA and intermediates relatively:
// they are read from the file's directory (the layer builds), the token server signs, and
// the layer accepts its tokens over HTTP, in-process and through the JWKS file.
#[tokio::test]
async fn relative_paths_lead_from_the_rule_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    let text = write_files(&conf, "");
    let path = conf.join("deployment.toml");
    std::fs::write(&path, &text).unwrap();
    assert!(!Path::new("keys/signing.pem").exists(), "the working directory must not hold the files");

    let deployment = Deployment::from_file(&path).unwrap();
    assert_eq!(deployment.source().resolve("keys/jwks.json"), conf.join("keys/jwks.json"));
    let tokens = token_server(&deployment, &conf.join("keys/jwks.json")).unwrap();
    let layer = layer(deployment, Some(&tokens)).unwrap_or_else(|e| panic!("the file's relative paths must load: {e}"));
    let base = common::serve(Router::new().route("/api/me", get(me)).layer(layer.clone())).await;
    // Its own issuer, trusted in-process, and the file's issuer that reads its JWKS.
    for issuer in ["https://dev.example", "https://jwks.example"] {
        let claims = json!({ "iss": issuer, "sub": "alex", "exp": 4_102_444_800u64 });
        let token = tokens.sign_claims(claims.as_object().unwrap()).unwrap();
        let response = common::client().get(format!("{base}/api/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 200, "a token of {issuer}");
        assert_eq!(response.text().await.unwrap(), "alex");
    }
    // A reload of the same file resolves the same way.
    layer.reloader().reload_file(&path).unwrap();
}

// SPEC B1, D1: rule-file text given in memory keeps resolving against the working
// directory: the same relative names are not found there (an error at the key), and
// names relative to the working directory are.
#[test]
fn in_memory_text_resolves_against_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let text = write_files(&dir.path().join("conf"), "");
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
    assert_eq!(deployment.source().resolve("keys/signing.pem"), Path::new("keys/signing.pem"));
    let err = TokenServer::builder().deployment(&deployment).build().expect_err("not in the working directory");
    assert_eq!((err.key.as_deref(), err.message.contains("cannot read")), (Some("pem_file"), true), "{err}");

    let target = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let local = tempfile::tempdir_in(target).unwrap();
    let relative =
        local.path().strip_prefix(std::env::current_dir().unwrap()).expect("CARGO_TARGET_TMPDIR under the crate");
    let prefix = format!("{}/conf/", relative.display());
    let text = write_files(&local.path().join("conf"), &prefix);
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
    token_server(&deployment, &local.path().join("conf/keys/jwks.json")).unwrap();
    layer(deployment, None).unwrap_or_else(|e| panic!("paths relative to the working directory must load: {e}"));
}
