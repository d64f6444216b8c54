//! Shared test support: cheap argon2 hashes, a standard users file, and a real axum
//! server on 127.0.0.1:0; real PostgreSQL, slapd and Redis servers in [`servers`].
#![allow(dead_code)]

pub mod audit;

pub mod examples;

pub mod servers;

pub mod stores;

use std::net::SocketAddr;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use axum::Router;
use tower_secure::config::{load_users, Deployment};
use tower_secure::SecureLayer;

/// An argon2id PHC hash with the cheapest legal parameters (tests only).
pub fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let salt = SaltString::encode_b64(b"tower-secure-tst").unwrap();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// Users of the quickstart's shape, with cheap hashes:
/// alex/alex123 (identity view), bob/bob123 (login only), admin/admin (/permission/admin),
/// SECONDARY/sam/sam123 (identity view), tina@example.com/tina123 (identity view),
/// dave/dave123 (disabled).
pub fn users_toml() -> String {
    format!(
        r#"
[[role]]
name = "identity_viewer"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]

[[role]]
name = "admin"
permissions = ["/permission/admin"]

[[role]]
name = "everyone"
permissions = ["/permission/admin/login"]

[[user]]
name = "alex"
password = "{alex}"
roles = ["identity_viewer", "everyone"]

[[user]]
name = "bob"
password = "{bob}"
roles = ["everyone"]

[[user]]
name = "admin"
password = "{admin}"
roles = ["admin"]

[[user]]
name = "SECONDARY/sam"
password = "{sam}"
roles = ["identity_viewer"]

[[user]]
name = "tina@example.com"
password = "{tina}"
roles = ["identity_viewer"]

[[user]]
name = "dave"
password = "{dave}"
roles = ["admin"]
disabled = true
"#,
        alex = cheap_hash("alex123"),
        bob = cheap_hash("bob123"),
        admin = cheap_hash("admin"),
        sam = cheap_hash("sam123"),
        tina = cheap_hash("tina123"),
        dave = cheap_hash("dave123"),
    )
}

/// A layer over [`users_toml`] and the given rule-file text.
pub fn layer(deployment_toml: &str) -> SecureLayer {
    let deployment = Deployment::from_toml_str("deployment.toml", deployment_toml).unwrap();
    let users = load_users("users.toml", &users_toml()).unwrap();
    SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap()
}

/// Serves `app` on 127.0.0.1:0 for the rest of the test; returns `http://127.0.0.1:port`.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    format!("http://{addr}")
}

/// The hidden fields of an authorization page's form (the login and consent pages of the
/// token server), unescaped.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let pattern = regex::Regex::new(r#"<input type="hidden" name="([^"]+)" value="([^"]*)">"#).unwrap();
    let unescape = |v: &str| {
        v.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    };
    pattern.captures_iter(html).map(|c| (c[1].to_owned(), unescape(&c[2]))).collect()
}

/// A reqwest client with a short timeout (every network test is bounded in time).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(std::time::Duration::from_secs(10)).build().unwrap()
}

/// Sends a raw HTTP/1.1 request over TCP and returns the status code; for request
/// targets and header bytes that well-behaved clients refuse to send.
pub async fn raw_status(base: &str, request_head: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request_head).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// `openssl genpkey` arguments for the key types the tests use.
pub const RSA_2048: &[&str] = &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"];
pub const EC_P256: &[&str] = &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
pub const ED25519: &[&str] = &["-algorithm", "ed25519"];

/// Generates private keys with the openssl CLI, all at once (RSA dominates the wait);
/// key `name` lands in `dir/{name}.pem`.
pub fn openssl_genpkeys(dir: &std::path::Path, specs: &[(&str, &[&str])]) {
    use std::process::{Command, Stdio};
    let children: Vec<_> = specs
        .iter()
        .map(|(name, args)| {
            Command::new("openssl")
                .arg("genpkey")
                .args(*args)
                .arg("-out")
                .arg(dir.join(format!("{name}.pem")))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run openssl (is it installed?): {e}"))
        })
        .collect();
    for (child, (name, _)) in children.into_iter().zip(specs) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl genpkey {name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// The Python interpreter of the test environment that `scripts/test` provisions (a
/// private virtual environment with PyJWT and requests-oauthlib). Fails, naming the
/// script, when the environment is missing: such a test never skips.
pub fn python() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("TOWER_SECURE_PYTHON") {
        return path.into();
    }
    let provisioned = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-env/venv/bin/python");
    assert!(
        provisioned.exists(),
        "this test needs the Python packages that scripts/test provisions: run `scripts/test` \
         (or `scripts/test --provision` once, then cargo test)"
    );
    provisioned
}

/// A test CA and a server certificate it signs for `127.0.0.1` and `localhost`, for the
/// TLS of the servers in [`servers`]: (CA PEM, server certificate PEM, server key PEM).
pub fn loopback_server_pki() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "tower-secure test server CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let certificate = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), certificate.pem(), key.serialize_pem())
}
