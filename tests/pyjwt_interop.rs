//! Tokens minted by an implementation nobody here wrote (Python's PyJWT, provisioned by
//! `scripts/test`) are accepted, and tampered copies of them are refused.

mod common;

use std::path::Path;
use std::process::Command;

use axum::routing::get;
use axum::Router;
use tower_secure::config::Deployment;
use tower_secure::{Principal, SecureLayer};

const ISSUER: &str = "https://pyjwt.example";

/// The private key path and public PEM of key `name` made by `common::openssl_genpkeys`.
fn keypair(dir: &Path, name: &str) -> (String, String) {
    let private = dir.join(format!("{name}.pem"));
    let public = Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&private).output().unwrap();
    assert!(public.status.success());
    (private.display().to_string(), String::from_utf8(public.stdout).unwrap())
}

/// Asks PyJWT for a token signed with `key` (a file path, or the HMAC secret itself).
fn pyjwt(algorithm: &str, kid: &str, key: &str, key_is_file: bool) -> String {
    let script = r#"
import sys, time, jwt
alg, kid, key, is_file = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if is_file:
    key = open(key).read()
now = int(time.time())
claims = {"iss": "https://pyjwt.example", "aud": "api", "sub": "alex", "exp": now + 600, "iat": now,
          "scope": "read write"}
print(jwt.encode(claims, key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"}))
"#;
    let output = Command::new(common::python())
        .args(["-c", script, algorithm, kid, key, if key_is_file { "1" } else { "0" }])
        .output()
        .expect("the test environment's Python runs (scripts/test provisions it)");
    assert!(
        output.status.success(),
        "PyJWT failed (scripts/test provisions it): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// Flips one character of the payload: the signature no longer matches.
fn tamper(token: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let payload = &mut parts[1];
    let last = payload.pop().unwrap();
    payload.push(if last == 'A' { 'B' } else { 'A' });
    parts.join(".")
}

// SPEC A5, F8: RS256, PS256, ES256, EdDSA and HS256 tokens from PyJWT validate; tampered
// copies answer 401 invalid_token.
#[tokio::test]
async fn pyjwt_tokens_validate_and_tampered_copies_do_not() {
    let dir = tempfile::tempdir().unwrap();
    common::openssl_genpkeys(
        dir.path(),
        &[("rsa", common::RSA_2048), ("ec", common::EC_P256), ("ed", common::ED25519)],
    );
    let (rsa_private, rsa_public) = keypair(dir.path(), "rsa");
    let (ec_private, ec_public) = keypair(dir.path(), "ec");
    let (ed_private, ed_public) = keypair(dir.path(), "ed");
    let secret = "0123456789abcdef0123456789abcdef-pyjwt";
    let secret_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret);
    let key = |kid: &str, alg: &str, material: String| {
        format!("[[oauth2.issuer.key]]\nkid = \"{kid}\"\nalgorithm = \"{alg}\"\n{material}\n")
    };
    let pem = |text: &str| format!("pem = \"\"\"\n{text}\"\"\"");
    let toml = format!(
        "[oauth2]\nrequire_typ = \"at+jwt\"\n\n[[oauth2.issuer]]\nissuer = \"{ISSUER}\"\naudience = \"api\"\n{}{}{}{}{}",
        key("rs", "RS256", pem(&rsa_public)),
        key("ps", "PS256", pem(&rsa_public)),
        key("es", "ES256", pem(&ec_public)),
        key("ed", "EdDSA", pem(&ed_public)),
        key("hs", "HS256", format!("secret_base64 = \"{secret_b64}\"")),
    );
    let layer =
        SecureLayer::builder().deployment(Deployment::from_toml_str("pyjwt.toml", &toml).unwrap()).build().unwrap();
    let app = Router::new()
        .route(
            "/api/me",
            get(|p: Principal| async move { format!("{} {}", p.name(), p.scopes().unwrap_or_default().join(",")) }),
        )
        .layer(layer);
    let base = common::serve(app).await;
    let client = common::client();

    let cases = [
        ("RS256", "rs", rsa_private.as_str(), true),
        ("PS256", "ps", rsa_private.as_str(), true),
        ("ES256", "es", ec_private.as_str(), true),
        ("EdDSA", "ed", ed_private.as_str(), true),
        ("HS256", "hs", secret, false),
    ];
    for (algorithm, kid, key, is_file) in cases {
        let token = pyjwt(algorithm, kid, key, is_file);
        let response = client.get(format!("{base}/api/me")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(response.status(), 200, "{algorithm} token from PyJWT refused");
        // Another issuer's `sub` is an opaque name (SPEC A13).
        assert_eq!(response.text().await.unwrap(), "opaque/alex read,write", "{algorithm}");

        let response = client.get(format!("{base}/api/me")).bearer_auth(tamper(&token)).send().await.unwrap();
        assert_eq!(response.status(), 401, "tampered {algorithm} token accepted");
        let challenge = response.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
}
