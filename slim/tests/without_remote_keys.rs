//! The crate without its `remote-keys` feature (no HTTP client in the build): every
//! setting that would fetch something over HTTP (a JWKS URL, OpenID discovery, token
//! introspection) is refused at load naming the feature, in a file and in code, while keys
//! held in the configuration verify tokens as usual, over real HTTP on loopback.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::routing::get;
use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_secure::authn::BearerAuthenticator;
use tower_secure::code::Issuer;
use tower_secure::config::Deployment;
use tower_secure::{Principal, SecureLayer};

const SECRET: &[u8] = b"a shared HS256 secret of 32 bytes";

fn secret_base64() -> String {
    base64::engine::general_purpose::STANDARD.encode(SECRET)
}

/// The layer a rule file builds: its error, if any.
fn load_error(text: &str) -> tower_secure::config::ConfigError {
    let built =
        Deployment::from_toml_str("deployment.toml", text).and_then(|d| SecureLayer::builder().deployment(d).build());
    built.map(|_| ()).unwrap_err()
}

// SPEC I1, A13: `jwks_uri`, `discovery = true` and `[oauth2.introspection]` are load
// errors naming their line, key and the missing feature.
#[test]
fn fetching_settings_are_load_errors() {
    let cases = [
        ("[[oauth2.issuer]]\nissuer = \"https://idp.test\"\njwks_uri = \"https://idp.test/jwks\"\n", 3, "jwks_uri"),
        ("[[oauth2.issuer]]\nissuer = \"https://idp.test\"\ndiscovery = true\n", 2, "discovery"),
        ("[oauth2.introspection]\nendpoint = \"https://idp.test/introspect\"\nclient_id = \"api\"\nclient_secret = \"s\"\n", 2, "endpoint"),
    ];
    for (text, line, key) in cases {
        let error = load_error(text);
        assert_eq!((error.line, error.key.as_deref()), (line, Some(key)), "{error}");
        assert!(error.message.contains("remote-keys"), "{error}");
    }
}

// SPEC I1, A13: the same in code: an issuer found by discovery or a JWKS URL is refused
// when the handler is built, naming the item.
#[test]
fn fetching_issuers_in_code_are_refused() {
    for issuer in [Issuer::discovery("https://idp.test"), Issuer::jwks_uri("https://idp.test", "https://idp.test/jwks")]
    {
        let error = BearerAuthenticator::builder().issuer(issuer).build().unwrap_err();
        assert_eq!((&*error.file, error.line), ("<code>", 1), "{error}");
        assert!(error.message.contains("remote-keys"), "{error}");
    }
}

/// Sends one HTTP/1.1 GET over loopback and returns the status code.
async fn get_status(port: u16, path: &str, token: &str) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response.split(' ').nth(1).unwrap_or_default();
    status.parse().unwrap_or_else(|_| panic!("not an HTTP response: {response:?}"))
}

fn token(audience: &str) -> String {
    let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
    let claims = serde_json::json!({ "iss": "https://idp.test", "sub": "alex", "aud": audience, "exp": exp });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(SECRET)).unwrap()
}

// SPEC A5, A13: keys from the configuration need no fetching: a rule file's inline key
// verifies tokens through the layer, served over HTTP on loopback.
#[tokio::test]
async fn configured_keys_verify_tokens() {
    let text = format!(
        "[[oauth2.issuer]]\nissuer = \"https://idp.test\"\naudience = \"api\"\n[[oauth2.issuer.key]]\nkid = \"k1\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{}\"\n",
        secret_base64()
    );
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).build().unwrap();
    let app = axum::Router::new().route("/me", get(|caller: Principal| async move { caller.name().to_string() }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app.layer(layer)).await });
    assert_eq!(get_status(port, "/me", &token("api")).await, 200);
    assert_eq!(get_status(port, "/me", &token("other")).await, 401, "wrong audience");
    assert_eq!(get_status(port, "/me", "not.a.token").await, 401);
}
