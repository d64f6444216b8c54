//! Tokens in the shapes real identity providers issue (Entra ID, Auth0, Okta, Keycloak,
//! Spring Authorization Server), minted by PyJWT (an implementation nobody here wrote,
//! provisioned by `scripts/test`) and served by an in-process identity provider on
//! 127.0.0.1: OIDC discovery and a JWKS per provider, in that provider's form (Entra's and
//! Spring's RSA keys carry no `alg`; Keycloak publishes an encryption key beside its signing
//! key), each document counting its fetches.
//!
//! Each shape is accepted with the settings the README recommends and yields the right
//! caller, scopes and roles, and the rules judge it (SPEC A12, A13, A14, A5); then the
//! refusals: algorithms a key without `alg` does not serve, HMAC over an RSA key, `scope`
//! and `scp` that disagree, time claims beyond 64 bits, members named twice (SPEC A12, A14,
//! F8, F10).

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{OriginalUri, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use tower_secure::config::Deployment;
use tower_secure::identity::Principal;
use tower_secure::SecureLayer;

const REALM: &str = "idp-interop";
/// Entra ID's directory (tenant) id and the API's application (client) id: the `aud` of
/// v2.0 access tokens.
const ENTRA_TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const ENTRA_API: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------
// Keys: generated once per test binary with openssl
// ---------------------------------------------------------------------------------------

struct Keys {
    dir: tempfile::TempDir,
    /// The RSA modulus of `rsa.pem`, base64url (for the JWKs).
    rsa_n: String,
    /// The public half of `rsa.pem`, PEM.
    rsa_public: String,
}

impl Keys {
    /// The private key file `name.pem` (`rsa`, `enc` or `ec`).
    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.pem"))
    }
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).stdin(Stdio::null()).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        common::openssl_genpkeys(
            dir.path(),
            &[("rsa", common::RSA_2048), ("enc", common::RSA_2048), ("ec", common::EC_P256)],
        );
        let rsa = dir.path().join("rsa.pem").display().to_string();
        let modulus = openssl(&["rsa", "-in", &rsa, "-noout", "-modulus"]);
        let hex = modulus.trim().strip_prefix("Modulus=").expect("openssl -modulus output");
        let n: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        assert!(openssl(&["rsa", "-in", &rsa, "-noout", "-text"]).contains("publicExponent: 65537"));
        let rsa_public = openssl(&["pkey", "-in", &rsa, "-pubout"]);
        Keys { dir, rsa_n: URL_SAFE_NO_PAD.encode(n), rsa_public }
    })
}

/// The public RSA signing key as a JWK with `kid` and these extra members.
fn rsa_jwk(kid: &str, extra: Value) -> Value {
    let mut jwk = json!({"kty": "RSA", "kid": kid, "n": keys().rsa_n, "e": "AQAB"});
    jwk.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    jwk
}

// ---------------------------------------------------------------------------------------
// Tokens: minted by PyJWT
// ---------------------------------------------------------------------------------------

/// One token for PyJWT to mint.
struct Mint {
    alg: &'static str,
    /// The private key file name in [`Keys`] (`rsa`, `ec`).
    key: &'static str,
    headers: Value,
    /// The claims, or (`Err`) the payload's exact JSON text.
    payload: Result<Value, String>,
}

fn mint(alg: &'static str, headers: Value, claims: Value) -> Mint {
    let key = if alg.starts_with("ES") { "ec" } else { "rsa" };
    Mint { alg, key, headers, payload: Ok(claims) }
}

/// Signs every job with PyJWT in one interpreter run: `jwt.encode` for claims,
/// `jwt.api_jws.encode` for an exact payload text (members named twice, numbers as
/// written).
fn pyjwt(jobs: &[Mint]) -> Vec<String> {
    let script = r#"
import json, sys, jwt
from jwt import api_jws
tokens = []
for job in json.load(sys.stdin):
    key = open(job["key"]).read()
    headers = job["headers"]
    if "raw" in job:
        tokens.append(api_jws.encode(job["raw"].encode(), key, algorithm=job["alg"], headers=headers))
    else:
        tokens.append(jwt.encode(job["claims"], key, algorithm=job["alg"], headers=headers))
print("\n".join(tokens))
"#;
    let input: Vec<Value> = jobs
        .iter()
        .map(|job| {
            let mut value = json!({"alg": job.alg, "key": keys().file(job.key), "headers": job.headers});
            match &job.payload {
                Ok(claims) => value["claims"] = claims.clone(),
                Err(raw) => value["raw"] = json!(raw),
            }
            value
        })
        .collect();
    let mut child = Command::new(common::python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test environment's Python runs (scripts/test provisions it)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), Value::Array(input).to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "PyJWT failed: {}", String::from_utf8_lossy(&output.stderr));
    let tokens: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(tokens.len(), jobs.len(), "one token per job");
    tokens
}

// ---------------------------------------------------------------------------------------
// The identity provider: discovery and JWKS per provider, counting fetches
// ---------------------------------------------------------------------------------------

/// The providers the test IdP plays, each at a path of its own that mirrors the real one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Provider {
    Entra,
    Auth0,
    Okta,
    Keycloak,
    Spring,
}

const PROVIDERS: [Provider; 5] =
    [Provider::Entra, Provider::Auth0, Provider::Okta, Provider::Keycloak, Provider::Spring];

impl Provider {
    /// The issuer path under the IdP's base URL (Auth0's issuer ends with `/`).
    fn issuer_path(self) -> String {
        match self {
            Provider::Entra => format!("/entra/{ENTRA_TENANT}/v2.0"),
            Provider::Auth0 => "/auth0/".to_owned(),
            Provider::Okta => "/okta/oauth2/default".to_owned(),
            Provider::Keycloak => "/keycloak/realms/acme".to_owned(),
            Provider::Spring => "/spring".to_owned(),
        }
    }

    fn jwks_path(self) -> String {
        match self {
            Provider::Entra => format!("/entra/{ENTRA_TENANT}/discovery/v2.0/keys"),
            Provider::Auth0 => "/auth0/.well-known/jwks.json".to_owned(),
            Provider::Okta => "/okta/oauth2/default/v1/keys".to_owned(),
            Provider::Keycloak => "/keycloak/realms/acme/protocol/openid-connect/certs".to_owned(),
            Provider::Spring => "/spring/oauth2/jwks".to_owned(),
        }
    }

    fn discovery_path(self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer_path().trim_end_matches('/'))
    }

    /// The `kid` of its signing key.
    fn kid(self) -> &'static str {
        match self {
            Provider::Entra => "nOo3ZDrODXEK1jKWhXslHR_KXEg",
            Provider::Auth0 => "auth0-2026-q1",
            Provider::Okta => "okta-Hc2Wyt8F",
            Provider::Keycloak => "kc-sig-rs256",
            Provider::Spring => "0b5a1f58-8c36-4a51-9f0b-6d2f1f0b9f2e",
        }
    }

    /// Its JWKS, as that provider publishes it.
    fn jwks(self) -> Value {
        let kid = self.kid();
        let keys = match self {
            // No `alg`; Entra adds x5t and x5c (left out: never read here).
            Provider::Entra => vec![rsa_jwk(kid, json!({"use": "sig", "x5t": kid, "issuer": "entra"}))],
            Provider::Auth0 | Provider::Okta => vec![rsa_jwk(kid, json!({"use": "sig", "alg": "RS256"}))],
            // A signing key and an encryption key (RSA-OAEP, `use: enc`).
            Provider::Keycloak => vec![
                rsa_jwk(kid, json!({"use": "sig", "alg": "RS256"})),
                json!({"kty": "RSA", "kid": "kc-enc-oaep", "use": "enc", "alg": "RSA-OAEP", "n": keys().rsa_n, "e": "AQAB"}),
            ],
            // Spring's `RSAKey.Builder` without `algorithm(...)`: no `alg`, no `use`.
            Provider::Spring => vec![rsa_jwk(kid, json!({}))],
        };
        json!({"keys": keys})
    }
}

struct Idp {
    base: String,
    /// Fetches per path.
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Idp {
    /// Serves every provider's discovery document and JWKS on 127.0.0.1:0.
    async fn start() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut documents = HashMap::new();
        for provider in PROVIDERS {
            let issuer = format!("{base}{}", provider.issuer_path());
            let discovery = json!({
                "issuer": issuer,
                "jwks_uri": format!("{base}{}", provider.jwks_path()),
                "token_endpoint": format!("{issuer}/token"),
                "id_token_signing_alg_values_supported": ["RS256"],
            });
            documents.insert(provider.discovery_path(), discovery.to_string());
            documents.insert(provider.jwks_path(), provider.jwks().to_string());
        }
        let hits = Arc::new(Mutex::new(HashMap::new()));
        let state = (Arc::new(documents), hits.clone());
        let app = Router::new().fallback(get(document)).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Idp { base, hits }
    }

    fn issuer(&self, provider: Provider) -> String {
        format!("{}{}", self.base, provider.issuer_path())
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

type IdpState = (Arc<HashMap<String, String>>, Arc<Mutex<HashMap<String, usize>>>);

async fn document(State((documents, hits)): State<IdpState>, OriginalUri(uri): OriginalUri) -> Response {
    let path = uri.path().to_owned();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    match documents.get(&path) {
        Some(body) => ([("content-type", "application/json")], body.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

// ---------------------------------------------------------------------------------------
// The API, configured as the README recommends for each provider
// ---------------------------------------------------------------------------------------

/// The `[[oauth2.issuer]]` table the README recommends for `provider` at this IdP.
fn issuer_table(idp: &Idp, provider: Provider) -> String {
    let issuer = idp.issuer(provider);
    let settings = match provider {
        Provider::Entra => format!("audience = \"{ENTRA_API}\"\nsubject_claim = \"oid\""),
        Provider::Auth0 => "audience = \"https://orders.example.com\"\nscope_claim = \"permissions\"".to_owned(),
        Provider::Okta => "audience = \"api://default\"\nroles_claim = \"groups\"".to_owned(),
        Provider::Keycloak => "audience = \"orders-api\"\nroles_claim = \"realm_access.roles\"".to_owned(),
        Provider::Spring => "audience = \"orders-client\"\nalgorithms = [\"RS256\", \"PS256\"]".to_owned(),
    };
    format!("[[oauth2.issuer]]\nissuer = \"{issuer}\"\ndiscovery = true\n{settings}\n\n")
}

/// Every provider's issuer, `oauth2_settings` in `[oauth2]`, and the rules: `/api/me` for
/// any caller, `GET /api/orders` needs `orders.read`, `POST /api/orders` `orders.write`.
fn deployment_text(idp: &Idp, oauth2_settings: &str) -> String {
    let issuers: String = PROVIDERS.iter().map(|p| issuer_table(idp, *p)).collect();
    format!(
        r#"
[authentication]
realm = "{REALM}"

[oauth2]
jwks_refresh_seconds = 300
jwks_min_refresh_seconds = 10
{oauth2_settings}

{issuers}
[[resource.access_control]]
context = "/api/me"

[[resource.access_control]]
context = "/api/orders"
http_method = "GET"
scope = ["orders.read"]

[[resource.access_control]]
context = "/api/orders"
http_method = "POST"
scope = ["orders.write"]
"#
    )
}

/// Echoes the caller: its display name, subject, tenant, scopes, roles and client.
async fn echo(principal: Principal) -> Json<Value> {
    let name = principal.name();
    Json(json!({
        "name": name.to_string(),
        "subject": name.user(),
        "opaque": name.is_opaque(),
        "tenant": name.tenant(),
        "scopes": principal.scopes(),
        "roles": principal.roles(),
        "client_id": principal.client_id(),
    }))
}

struct Api {
    base: String,
    client: reqwest::Client,
}

#[derive(Debug)]
struct Reply {
    status: u16,
    challenge: Option<String>,
    body: String,
}

impl Reply {
    #[track_caller]
    fn caller(&self) -> Value {
        assert_eq!(self.status, 200, "expected the echo: {self:?}");
        serde_json::from_str(&self.body).unwrap()
    }
}

impl Api {
    async fn start(text: &str) -> Api {
        let deployment = Deployment::from_toml_str("deployment.toml", text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let layer = SecureLayer::builder().deployment(deployment).build().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let app = Router::new().route("/api/orders", get(echo).post(echo)).fallback(echo).layer(layer);
        Api { base: common::serve(app).await, client: common::client() }
    }

    async fn call(&self, method: reqwest::Method, path: &str, token: &str) -> Reply {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("the API answers");
        let status = response.status().as_u16();
        let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
        Reply { status, challenge, body: response.text().await.unwrap() }
    }

    async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(reqwest::Method::GET, path, token).await
    }
}

#[track_caller]
fn assert_invalid_token(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {reply:?}");
    let challenge = reply.challenge.as_deref().unwrap_or_default();
    assert!(challenge.contains("error=\"invalid_token\""), "{what}: {reply:?}");
}

fn strings(value: &Value) -> Vec<String> {
    let mut list: Vec<String> =
        value.as_array().unwrap_or_else(|| panic!("{value}")).iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    list.sort();
    list
}

// ---------------------------------------------------------------------------------------
// The shapes
// ---------------------------------------------------------------------------------------

/// What the API must make of a shaped token.
struct Expected {
    subject: &'static str,
    /// Sorted.
    scopes: Vec<&'static str>,
    roles: Vec<&'static str>,
    client: Option<&'static str>,
}

fn expect(
    subject: &'static str,
    scopes: &[&'static str],
    roles: &[&'static str],
    client: Option<&'static str>,
) -> Expected {
    Expected { subject, scopes: scopes.to_vec(), roles: roles.to_vec(), client }
}

/// A token in `provider`'s shape for the test IdP, and what the API must make of it.
fn shaped(idp: &Idp, provider: Provider) -> (Mint, Expected) {
    let (iss, now, kid) = (idp.issuer(provider), now(), provider.kid());
    match provider {
        // Entra ID v2.0 access token for a custom API: `scp` a string, app `roles`, `oid`
        // (stable across apps) and `tid`, `azp`; header `typ: JWT` with `x5t`.
        Provider::Entra => (
            mint(
                "RS256",
                json!({"typ": "JWT", "kid": kid, "x5t": kid}),
                json!({
                    "aud": ENTRA_API, "iss": iss, "iat": now, "nbf": now, "exp": now + 3600,
                    "aio": "AXQAi/8YAAAA", "azp": "f8a1b2c3-0d4e-4f5a-8b6c-7d8e9f0a1b2c", "azpacr": "0",
                    "name": "Alice Example", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
                    "preferred_username": "alice@contoso.com", "rh": "0.AXwA",
                    "roles": ["Orders.Admin"], "scp": "orders.read User.Read",
                    "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ", "tid": ENTRA_TENANT,
                    "uti": "fqiBqXLPj0eQa82S-IYFAA", "ver": "2.0",
                }),
            ),
            expect(
                "00000000-0000-0000-66f3-3332eca7ea81",
                &["User.Read", "orders.read"],
                &["Orders.Admin"],
                Some("f8a1b2c3-0d4e-4f5a-8b6c-7d8e9f0a1b2c"),
            ),
        ),
        // Auth0 client-credentials token (RFC 9068 access token profile): `sub` is
        // `<client id>@clients`, `scope` a string, RBAC `permissions` an array, `aud` an
        // array, `gty`, `client_id`; header `typ: at+jwt`.
        Provider::Auth0 => (
            mint(
                "RS256",
                json!({"typ": "at+jwt", "kid": kid}),
                json!({
                    "iss": iss, "sub": "svc-reporting@clients",
                    "aud": ["https://orders.example.com", format!("{iss}userinfo")],
                    "iat": now, "exp": now + 86_400, "jti": "73WakrfVbNJBaAmhQtEeDv", "gty": "client-credentials",
                    "client_id": "svc-reporting", "scope": "orders.read", "permissions": ["orders.read"],
                }),
            ),
            expect("svc-reporting@clients", &["orders.read"], &[], Some("svc-reporting")),
        ),
        // Okta (custom authorization server): `scp` an array, `uid`, `cid`, `sub` the
        // user's login, a `groups` claim; header without `typ`.
        Provider::Okta => (
            mint(
                "RS256",
                json!({"typ": null, "kid": kid}),
                json!({
                    "ver": 1, "jti": "AT.Gx3mOkJ8uvqFv6mRTZVn", "iss": iss, "aud": "api://default",
                    "iat": now, "exp": now + 3600, "cid": "0oa1b2c3d4e5f6g7h8i9", "uid": "00u1a2b3c4d5e6f7g8h9",
                    "scp": ["openid", "orders.read"], "auth_time": now - 60, "sub": "alice@example.com",
                    "groups": ["Everyone", "Order Managers"],
                }),
            ),
            expect("alice@example.com", &["openid", "orders.read"], &["Everyone", "Order Managers"], None),
        ),
        // Keycloak: `realm_access.roles`, `resource_access`, `azp`, a `typ: Bearer` claim,
        // `scope` a string; header `typ: JWT`.
        Provider::Keycloak => (
            mint(
                "RS256",
                json!({"typ": "JWT", "kid": kid}),
                json!({
                    "exp": now + 300, "iat": now, "jti": "onrtac:5c3b9e7e", "iss": iss,
                    "aud": ["orders-api", "account"], "sub": "f4c0e9a2-6b1d-4c1e-9a53-2f0d1c7e8b4a", "typ": "Bearer",
                    "azp": "orders-web", "sid": "8e2d6b5a", "acr": "1",
                    "realm_access": {"roles": ["offline_access", "order-admin"]},
                    "resource_access": {"orders-api": {"roles": ["reader"]}, "account": {"roles": ["view-profile"]}},
                    "scope": "openid profile email orders.read", "email_verified": true,
                    "preferred_username": "alice",
                }),
            ),
            expect(
                "f4c0e9a2-6b1d-4c1e-9a53-2f0d1c7e8b4a",
                &["email", "openid", "orders.read", "profile"],
                &["offline_access", "order-admin"],
                Some("orders-web"),
            ),
        ),
        // Spring Authorization Server client-credentials token: `scope` an array, `sub`
        // the client id, `aud` an array with it; header without `typ`.
        Provider::Spring => (
            mint(
                "RS256",
                json!({"typ": null, "kid": kid}),
                json!({
                    "sub": "orders-client", "aud": ["orders-client"], "nbf": now, "iss": iss,
                    "scope": ["orders.read", "orders.write"], "exp": now + 300, "iat": now,
                    "jti": "6f0b3c5e-2a4d-4b8e-9c1f-7e2d0a9b8c3d",
                }),
            ),
            expect("orders-client", &["orders.read", "orders.write"], &[], None),
        ),
    }
}

// SPEC A12, A13, A14, A5: each provider's token shape, from PyJWT, is accepted with the
// README's settings for it: the caller is the subject kept whole (opaque, super tenant;
// `svc@clients` and `alice@example.com` are not split at `@`), scopes come from whichever
// claim and shape the provider uses, roles from its claim (Keycloak's nested path), and the
// scope rules judge the token (POST needs `orders.write`, which only the Spring token has).
// Entra's and Spring's JWKS keys carry no `alg`. Discovery and keys are fetched once each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_shape_is_accepted_with_the_recommended_settings() {
    let idp = Idp::start().await;
    let api = Api::start(&deployment_text(&idp, "")).await;
    let (jobs, expected): (Vec<Mint>, Vec<_>) = PROVIDERS.iter().map(|p| shaped(&idp, *p)).unzip();
    let tokens = pyjwt(&jobs);

    for ((provider, token), expected) in PROVIDERS.iter().zip(&tokens).zip(&expected) {
        let what = format!("{provider:?}");
        let subject = expected.subject;
        let caller = api.get("/api/me", token).await.caller();
        assert_eq!(caller["subject"], subject, "{what}: {caller}");
        assert_eq!(caller["name"], format!("opaque/{subject}"), "{what}");
        assert_eq!(
            (caller["opaque"].as_bool(), caller["tenant"].as_str()),
            (Some(true), Some("carbon.super")),
            "{what}"
        );
        assert_eq!(strings(&caller["scopes"]), expected.scopes, "{what}: scopes");
        let mut roles = expected.roles.clone();
        roles.sort_unstable();
        assert_eq!(strings(&caller["roles"]), roles, "{what}: roles");
        assert_eq!(caller["client_id"].as_str(), expected.client, "{what}: client");

        assert_eq!(api.get("/api/orders", token).await.caller()["subject"], subject, "{what}: GET orders");
        let post = api.call(reqwest::Method::POST, "/api/orders", token).await;
        if expected.scopes.contains(&"orders.write") {
            assert_eq!(post.status, 200, "{what}: POST orders with orders.write: {post:?}");
        } else {
            assert_eq!(post.status, 403, "{what}: POST orders without orders.write: {post:?}");
            let challenge = post.challenge.as_deref().unwrap_or_default();
            assert!(challenge.contains(r#"error="insufficient_scope", scope="orders.write""#), "{what}: {post:?}");
        }
    }
    for provider in PROVIDERS {
        assert_eq!(idp.hits(&provider.discovery_path()), 1, "{provider:?}: discovery fetched once");
        assert_eq!(idp.hits(&provider.jwks_path()), 1, "{provider:?}: keys fetched once");
    }
}

// SPEC F11: Keycloak writes `typ: JWT` in its access tokens' header, so
// `require_typ = "at+jwt"` refuses every Keycloak token (as the README warns), while
// Auth0's `at+jwt` tokens pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_typ_at_jwt_refuses_keycloak_tokens() {
    let idp = Idp::start().await;
    let api = Api::start(&deployment_text(&idp, "require_typ = \"at+jwt\"")).await;
    let tokens = pyjwt(&[shaped(&idp, Provider::Keycloak).0, shaped(&idp, Provider::Auth0).0]);
    assert_invalid_token(&api.get("/api/me", &tokens[0]).await, "Keycloak under require_typ");
    assert_eq!(api.get("/api/me", &tokens[1]).await.caller()["subject"], "svc-reporting@clients");
}

// SPEC A13: with `tenant_claim` an opaque caller belongs to the tenant its token names:
// Entra's `tid` puts the caller in that tenant, so it is served under `/t/<tid>/...` and
// refused (403) on the super tenant's paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_claim_puts_opaque_callers_in_their_tenant() {
    let idp = Idp::start().await;
    let text =
        deployment_text(&idp, "").replace("subject_claim = \"oid\"", "subject_claim = \"oid\"\ntenant_claim = \"tid\"");
    let api = Api::start(&text).await;
    let tokens = pyjwt(&[shaped(&idp, Provider::Entra).0]);
    let caller = api.get(&format!("/t/{ENTRA_TENANT}/api/me"), &tokens[0]).await.caller();
    assert_eq!(caller["tenant"], ENTRA_TENANT);
    assert_eq!(caller["name"], format!("opaque@{ENTRA_TENANT}/00000000-0000-0000-66f3-3332eca7ea81"));
    assert_eq!(api.get("/api/me", &tokens[0]).await.status, 403, "another tenant's path");
}

// ---------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------

/// Valid Entra-shaped claims at `idp` with `extra` merged in (`null` removes a claim).
fn entra_claims(idp: &Idp, extra: Value) -> Value {
    let now = now();
    let mut claims = json!({
        "aud": ENTRA_API, "iss": idp.issuer(Provider::Entra), "iat": now, "exp": now + 600,
        "oid": "00000000-0000-0000-66f3-3332eca7ea81", "tid": ENTRA_TENANT, "scp": "orders.read", "ver": "2.0",
    });
    let map = claims.as_object_mut().unwrap();
    for (name, value) in extra.as_object().unwrap() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

fn kid_header(provider: Provider) -> Value {
    json!({"typ": "JWT", "kid": provider.kid()})
}

// SPEC A12, F8: a JWKS key without `alg` serves only the algorithms its issuer allows that
// fit its type: Entra's RSA key (no `algorithms` set) serves RS256 alone, so PS256, RS384
// and ES256 tokens under its kid are refused; Spring's (`algorithms = ["RS256", "PS256"]`)
// serves PS256 too, but not RS512. An HS256 token whose secret is the RSA public key is
// refused (the key-confusion attack), and the encryption key Keycloak publishes never
// verifies a signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_without_alg_serve_only_the_allowed_algorithms() {
    let idp = Idp::start().await;
    let api = Api::start(&deployment_text(&idp, "")).await;
    let entra = entra_claims(&idp, json!({}));
    let spring = json!({"iss": idp.issuer(Provider::Spring), "aud": "orders-client", "sub": "orders-client", "exp": now() + 600});
    let keycloak =
        json!({"iss": idp.issuer(Provider::Keycloak), "aud": "orders-api", "sub": "kc-user", "exp": now() + 600});
    let tokens = pyjwt(&[
        mint("RS256", kid_header(Provider::Entra), entra.clone()),
        mint("PS256", kid_header(Provider::Entra), entra.clone()),
        mint("RS384", kid_header(Provider::Entra), entra.clone()),
        mint("ES256", kid_header(Provider::Entra), entra.clone()),
        mint("PS256", kid_header(Provider::Spring), spring.clone()),
        mint("RS512", kid_header(Provider::Spring), spring),
        mint("RS256", json!({"typ": "JWT", "kid": "kc-enc-oaep"}), keycloak),
    ]);
    assert_eq!(api.get("/api/me", &tokens[0]).await.caller()["subject"], "00000000-0000-0000-66f3-3332eca7ea81");
    for (token, what) in [(&tokens[1], "PS256"), (&tokens[2], "RS384"), (&tokens[3], "ES256 on an RSA key")] {
        assert_invalid_token(&api.get("/api/me", token).await, &format!("Entra key without alg, {what}"));
    }
    assert_eq!(api.get("/api/me", &tokens[4]).await.caller()["subject"], "orders-client", "Spring PS256");
    assert_invalid_token(&api.get("/api/me", &tokens[5]).await, "Spring RS512, not in algorithms");
    assert_invalid_token(&api.get("/api/me", &tokens[6]).await, "Keycloak's encryption key");

    // HS256 keyed with the RSA public key's PEM: PyJWT refuses to make it, so by hand.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(Provider::Entra.kid().to_owned());
    let secret = jsonwebtoken::EncodingKey::from_secret(keys().rsa_public.as_bytes());
    let confused = jsonwebtoken::encode(&header, &entra, &secret).unwrap();
    assert_invalid_token(&api.get("/api/me", &confused).await, "HS256 keyed with the RSA public key");
    let jwk_secret = jsonwebtoken::EncodingKey::from_secret(keys().rsa_n.as_bytes());
    let confused = jsonwebtoken::encode(&header, &entra, &jwk_secret).unwrap();
    assert_invalid_token(&api.get("/api/me", &confused).await, "HS256 keyed with the JWK's n");
}

// SPEC A14, F12: `scope` and `scp` both present must agree (in any order or shape);
// when they differ the token is refused, whichever would grant more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_and_scp_that_differ_are_refused() {
    let idp = Idp::start().await;
    let api = Api::start(&deployment_text(&idp, "")).await;
    let with = |scope: Value, scp: Value| {
        mint("RS256", kid_header(Provider::Entra), entra_claims(&idp, json!({"scope": scope, "scp": scp})))
    };
    let tokens = pyjwt(&[
        with(json!("orders.read User.Read"), json!(["User.Read", "orders.read"])),
        with(json!("orders.read"), json!("orders.read orders.write")),
        with(json!("orders.read orders.write"), json!("orders.read")),
        with(json!(["orders.write"]), json!("orders.read")),
    ]);
    let caller = api.get("/api/orders", &tokens[0]).await.caller();
    assert_eq!(strings(&caller["scopes"]), ["User.Read", "orders.read"], "the same scopes in both claims");
    for (token, what) in tokens[1..].iter().zip(["scp grants more", "scope grants more", "disjoint"]) {
        assert_invalid_token(&api.get("/api/orders", token).await, what);
    }
}

// SPEC F10: `exp`, `nbf` and `iat` must fit a signed 64-bit count of seconds: `exp` of
// 1e300, 2^64, 2^63 or -1e300 is malformed and refused, never read as "never expires";
// the same for `nbf` and `iat`. A negative `iat` within range is merely long ago.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_claims_beyond_64_bits_are_refused() {
    let idp = Idp::start().await;
    let api = Api::start(&deployment_text(&idp, "")).await;
    let header = kid_header(Provider::Entra);
    let raw = |claim: &str, number: &str| {
        // The number exactly as written: Python would print 2**63 as an int and 1e300 as 1e+300.
        let mut claims = entra_claims(&idp, json!({}));
        claims.as_object_mut().unwrap().remove(claim);
        let text = claims.to_string();
        let payload = format!("{},\"{claim}\":{number}}}", text.trim_end_matches('}'));
        Mint { alg: "RS256", key: "rsa", headers: header.clone(), payload: Err(payload) }
    };
    let cases = [
        ("exp", "1e300"),
        ("exp", "18446744073709551616"),
        ("exp", "18446744073709551615"),
        ("exp", "9223372036854775808"),
        ("exp", "-1e300"),
        ("nbf", "1e300"),
        ("iat", "-18446744073709551616"),
    ];
    let mut jobs: Vec<Mint> = cases.iter().map(|(claim, number)| raw(claim, number)).collect();
    jobs.push(raw("iat", "-5"));
    jobs.push(raw("exp", &(now() + 600).to_string()));
    let tokens = pyjwt(&jobs);
    for ((claim, number), token) in cases.iter().zip(&tokens) {
        assert_invalid_token(&api.get("/api/me", token).await, &format!("{claim} = {number}"));
    }
    assert_eq!(api.get("/api/me", &tokens[cases.len()]).await.status, 200, "iat -5 is long ago, not malformed");
    assert_eq!(api.get("/api/me", &tokens[cases.len() + 1]).await.status, 200, "control: an ordinary exp");
}

// SPEC F10: a payload or header that names a member twice is refused, wherever the
// duplicate is (a top-level claim, a nested one, a header parameter), and escaped
// spellings count as the same name; parsers disagree on which copy wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_named_twice_are_refused() {
    let idp = Idp::start().await;
    let api = Api::start(&deployment_text(&idp, "")).await;
    let iss = idp.issuer(Provider::Keycloak);
    let exp = now() + 600;
    let base = format!(r#""iss":"{iss}","aud":"orders-api","exp":{exp},"scope":"orders.read""#);
    let payloads = [
        format!(r#"{{{base},"sub":"alice","sub":"admin"}}"#),
        format!(r#"{{{base},"sub":"alice","s\u0075b":"admin"}}"#),
        format!(r#"{{{base},"sub":"alice","exp":1}}"#),
        format!(r#"{{{base},"sub":"alice","realm_access":{{"roles":["user"],"roles":["order-admin"]}}}}"#),
        format!(r#"{{{base},"sub":"alice"}}"#),
    ];
    let header = kid_header(Provider::Keycloak);
    let jobs: Vec<Mint> = payloads
        .iter()
        .map(|p| Mint { alg: "RS256", key: "rsa", headers: header.clone(), payload: Err(p.clone()) })
        .collect();
    let tokens = pyjwt(&jobs);
    for (token, what) in tokens.iter().zip(["sub twice", "sub twice, escaped", "exp twice", "nested roles twice"]) {
        assert_invalid_token(&api.get("/api/me", token).await, what);
    }
    assert_eq!(api.get("/api/me", &tokens[4]).await.caller()["subject"], "alice", "control");

    // A header parameter twice (PyJWT writes headers from a dict, so by hand).
    let (_, payload_and_signature) = tokens[4].split_once('.').unwrap();
    let (payload, _) = payload_and_signature.split_once('.').unwrap();
    let kid = Provider::Keycloak.kid();
    for header in [
        format!(r#"{{"alg":"RS256","kid":"{kid}","kid":"kc-enc-oaep"}}"#),
        format!(r#"{{"alg":"RS256","alg":"RS256","kid":"{kid}"}}"#),
    ] {
        let message = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(&header));
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(std::fs::read(keys().file("rsa")).unwrap().as_slice()).unwrap();
        let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::RS256).unwrap();
        assert_invalid_token(&api.get("/api/me", &format!("{message}.{signature}")).await, &header);
    }
}
