//! The bench app (one JSON route, as the criterion benches serve) and, per mode, the layer
//! in front of it. Every tower-secure mode uses the crate's public API only.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use tower_secure::authn::TrustRoots;
use tower_secure::config::{load_users, Deployment};
use tower_secure::tls::{ClientAuth, TlsServer};
use tower_secure::SecureLayer;
use tower_secure_load::data::{Alg, DataDir, CLIENT_CA_CN};
use tower_secure_load::{AUDIENCE, INTROSPECTION_CLIENT, ISSUER, ROUTE, SCOPE, VIEW_PERMISSION};

use crate::Mode;

async fn challenges(Path(user_id): Path<String>) -> Json<Value> {
    Json(json!({
        "user_id": user_id,
        "challenges": [{ "question": "Favourite food?", "answer": "(hidden)" }],
    }))
}

/// The app every mode serves; the secured ones add a layer.
fn router() -> Router {
    Router::new().route(ROUTE, get(challenges))
}

pub async fn build(mode: Mode, dir: &DataDir, token_cache: usize) -> Router {
    match mode {
        Mode::None | Mode::TlsNone => router(),
        Mode::Basic => router().layer(layer(&basic_rules(), Some(dir))),
        Mode::Bearer => router().layer(layer(&bearer_rules(dir, token_cache), None)),
        Mode::Introspection => {
            let endpoint = crate::idp::start().await;
            router().layer(layer(&introspection_rules(&endpoint, token_cache), None))
        }
        Mode::Mtls => router().layer(layer(&client_cert_rules(), Some(dir))),
        Mode::JwtAuthorizer => crate::reference::secure(router(), dir).await,
        Mode::BareJwt => crate::bare::secure(router(), dir),
    }
}

/// The crate's TLS server asking for (not requiring) client certificates from the bench root.
pub fn tls_server(dir: &DataDir) -> TlsServer {
    let roots = TrustRoots::from_pem(&DataDir::read(&dir.ca_cert())).expect("bench root CA");
    let chain = DataDir::read(&dir.server_cert());
    TlsServer::from_pem(&chain, &DataDir::read(&dir.server_key()), ClientAuth::Optional(roots)).expect("TLS server")
}

fn layer(rules: &str, users: Option<&DataDir>) -> SecureLayer {
    let deployment = Deployment::from_toml_str("load-bench.toml", rules).expect("bench deployment loads");
    let builder = SecureLayer::builder().deployment(deployment);
    let builder = match users {
        Some(dir) => {
            let path = dir.users();
            let text = DataDir::read(&path);
            builder.user_store(load_users(&path.display().to_string(), &text).expect("users.toml loads"))
        }
        None => builder,
    };
    builder.build().expect("bench layer builds")
}

/// The route needs the view permission. Lockout is off so that the flood's wrong passwords
/// reach argon2 (the worst case, as a flood spread over many user names would be); it does
/// not touch the cached good traffic. Throttle and cache keep their defaults.
fn basic_rules() -> String {
    format!(
        "[authentication.basic]\nmax_failed_attempts = 0\n\n\
         [[resource.access_control]]\ncontext = \"{ROUTE}\"\nhttp_method = \"GET\"\npermissions = [\"{VIEW_PERMISSION}\"]\n"
    )
}

fn scope_rule() -> String {
    format!("[[resource.access_control]]\ncontext = \"{ROUTE}\"\nhttp_method = \"GET\"\nscope = [\"{SCOPE}\"]\n")
}

/// One issuer with the four keys (by `kid`); the route needs the scope. Its subjects are
/// users of the store (looked up on a token's first sight, as in earlier runs).
fn bearer_rules(dir: &DataDir, token_cache: usize) -> String {
    let keys: String = Alg::ALL.into_iter().map(|alg| key_table(dir, alg)).collect();
    format!(
        "{}\n[oauth2]\ncache_capacity = {token_cache}\n\n\
         [[oauth2.issuer]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\nsubject_format = \"qualified\"\n{keys}",
        scope_rule()
    )
}

fn key_table(dir: &DataDir, alg: Alg) -> String {
    let material = match alg {
        Alg::Hs256 => {
            let secret = std::fs::read(dir.hmac_secret()).expect("read the HMAC secret");
            format!("secret_base64 = \"{}\"", base64::engine::general_purpose::STANDARD.encode(secret))
        }
        _ => format!("pem = \"\"\"\n{}\"\"\"", DataDir::read(&dir.public_key(alg))),
    };
    format!("\n[[oauth2.issuer.key]]\nkid = \"{}\"\nalgorithm = \"{}\"\n{material}\n", alg.kid(), alg.jose())
}

/// Opaque tokens checked at the local endpoint; results cached (at most 60 s, the default).
fn introspection_rules(endpoint: &str, token_cache: usize) -> String {
    let (client_id, client_secret) = INTROSPECTION_CLIENT;
    format!(
        "{}\n[oauth2]\ncache_capacity = {token_cache}\n\n\
         [oauth2.introspection]\nendpoint = \"{endpoint}\"\nclient_id = \"{client_id}\"\nclient_secret = \"{client_secret}\"\n\
         audience = \"{AUDIENCE}\"\nsubject_format = \"qualified\"\n",
        scope_rule()
    )
}

/// Certificate callers from the allow-listed intermediate; the route needs the permission.
fn client_cert_rules() -> String {
    format!(
        "[client_cert]\n\n[intermediate_cert_validation]\nenable = true\ncert_cns = [\"{CLIENT_CA_CN}\"]\n\n\
         [[resource.access_control]]\ncontext = \"{ROUTE}\"\nhttp_method = \"GET\"\npermissions = [\"{VIEW_PERMISSION}\"]\n"
    )
}
