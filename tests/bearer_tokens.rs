//! Bearer tokens (the `oauth2` handler) over real HTTP on 127.0.0.1: every algorithm and
//! key source, RFC 6750 challenges, scopes against rules, and the JWT invariants of
//! RFC 8725 (algorithm pinning, header injection, time and audience claims, `typ`,
//! scope syntax, size and nesting limits, the verified-token cache, store failures).
//!
//! Keys are generated once per test binary with the `openssl` CLI; tokens are minted with
//! `jsonwebtoken` (or by hand where the attack needs a token no library would make).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::{Json, Router};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower_secure::config::{load_users, ConfigError, Deployment};
use tower_secure::identity::{InMemoryUserStore, Principal, QualifiedName, UserRecord, UserStore, UserStoreError};
use tower_secure::SecureLayer;

const REALM: &str = "bearer-tests";
const ISS: &str = "https://idp.test";
const AUD: &str = "my-api";
/// A second issuer, without an audience, whose only key is `b` (the "B" RSA key).
const ISS_B: &str = "https://other.test";
/// A third issuer with one RS256 key and no `kid`: tokens need not name a key.
const ISS_SINGLE: &str = "https://single.test";
const HMAC_SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-hs256-test";
const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";

// ---------------------------------------------------------------------------------------
// Keys: generated once per test binary with openssl
// ---------------------------------------------------------------------------------------

struct Pair {
    private: String,
    public: String,
}

struct Keys {
    /// RSA 2048: kids `rs` (RS256, inline PEM), `ps` (PS256, pem_file), `jwk` (RS256, JWK).
    rsa: Pair,
    /// A second RSA 2048 key: kid `jwks` (main issuer's JWKS file), `b` (issuer B), and
    /// the attacker's key where the main issuer does not know it.
    rsa_b: Pair,
    ec: Pair,
    ed: Pair,
    /// A P-384 public key (not usable for ES256).
    ec384_public: String,
    rsa1024_public: String,
    /// Self-signed certificates over the 1024-bit and the 2048-bit RSA key.
    rsa1024_cert: String,
    rsa_cert: String,
    /// RSA moduli, base64url (for JWKs).
    rsa_n: String,
    rsa_b_n: String,
    rsa1024_n: String,
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (is it installed?): {e}"));
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(generate_keys)
}

fn generate_keys() -> Keys {
    // jsonwebtoken needs a crypto provider to sign; the crate installs the same one.
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(format!("{name}.pem")).display().to_string();
    let specs: [(&str, &[&str]); 6] = [
        ("rsa", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        ("rsa_b", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        ("rsa1024", &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"]),
        ("ec", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        ("ec384", &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"]),
        ("ed", &["-algorithm", "ed25519"]),
    ];
    common::openssl_genpkeys(dir.path(), &specs);
    let private = |name: &str| std::fs::read_to_string(path(name)).unwrap();
    let public = |name: &str| openssl(&["pkey", "-in", &path(name), "-pubout"]);
    let pair = |name: &str| Pair { private: private(name), public: public(name) };
    let modulus = |name: &str| {
        let text = openssl(&["rsa", "-in", &path(name), "-noout", "-modulus"]);
        let hex = text.trim().strip_prefix("Modulus=").expect("openssl -modulus output");
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
        URL_SAFE_NO_PAD.encode(bytes)
    };
    let cert = |name: &str| {
        openssl(&["req", "-x509", "-new", "-key", &path(name), "-subj", "/CN=bearer-tests", "-days", "2", "-sha256"])
    };
    Keys {
        rsa: pair("rsa"),
        rsa_b: pair("rsa_b"),
        ec: pair("ec"),
        ed: pair("ed"),
        ec384_public: public("ec384"),
        rsa1024_public: public("rsa1024"),
        rsa1024_cert: cert("rsa1024"),
        rsa_cert: cert("rsa"),
        rsa_n: modulus("rsa"),
        rsa_b_n: modulus("rsa_b"),
        rsa1024_n: modulus("rsa1024"),
    }
}

fn rsa_jwk(n: &str, kid: &str) -> Value {
    json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"})
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Signer {
    Hmac,
    Rsa,
    RsaB,
    Ec,
    Ed,
}

fn encoding_key(signer: Signer) -> EncodingKey {
    let keys = keys();
    match signer {
        Signer::Hmac => EncodingKey::from_secret(HMAC_SECRET),
        Signer::Rsa => EncodingKey::from_rsa_pem(keys.rsa.private.as_bytes()).unwrap(),
        Signer::RsaB => EncodingKey::from_rsa_pem(keys.rsa_b.private.as_bytes()).unwrap(),
        Signer::Ec => EncodingKey::from_ec_pem(keys.ec.private.as_bytes()).unwrap(),
        Signer::Ed => EncodingKey::from_ed_pem(keys.ed.private.as_bytes()).unwrap(),
    }
}

/// The algorithm and signing key of each configured `kid`.
fn key_of(kid: &str) -> (Algorithm, Signer) {
    match kid {
        "hs" => (Algorithm::HS256, Signer::Hmac),
        "rs" | "jwk" => (Algorithm::RS256, Signer::Rsa),
        "ps" => (Algorithm::PS256, Signer::Rsa),
        "es" => (Algorithm::ES256, Signer::Ec),
        "ed" => (Algorithm::EdDSA, Signer::Ed),
        "jwks" | "b" => (Algorithm::RS256, Signer::RsaB),
        other => panic!("no test key {other}"),
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Valid claims for `sub` at the main issuer, with `extra` merged in (`null` removes a claim).
fn claims(sub: &str, extra: Value) -> Value {
    let now = now();
    let mut claims = json!({"iss": ISS, "aud": AUD, "sub": sub, "iat": now, "exp": now + 600});
    let map = claims.as_object_mut().unwrap();
    for (name, value) in extra.as_object().expect("extra claims are an object") {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A header for `alg` naming `kid`.
fn header(alg: Algorithm, kid: Option<&str>) -> Header {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    header
}

fn sign(header: &Header, claims: &Value, signer: Signer) -> String {
    keys();
    encode(header, claims, &encoding_key(signer)).unwrap()
}

/// A token signed with the configured key `kid`.
fn token(kid: &str, claims: &Value) -> String {
    let (alg, signer) = key_of(kid);
    sign(&header(alg, Some(kid)), claims, signer)
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A token from raw header and payload JSON text, signed with `signer` under `alg`.
fn raw_token(header_json: &str, payload_json: &str, signer: Signer, alg: Algorithm) -> String {
    keys();
    let message = format!("{}.{}", b64(header_json), b64(payload_json));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &encoding_key(signer), alg).unwrap();
    format!("{message}.{signature}")
}

// ---------------------------------------------------------------------------------------
// Deployments, servers and requests
// ---------------------------------------------------------------------------------------

/// The standard deployment: `oauth2_settings` go into `[oauth2]`; files the keys refer to
/// are written into `dir`. Its issuers name users of this crate's user store
/// (`subject_format = "qualified"`), as WSO2 Identity Server over the same store would.
fn deployment_text(oauth2_settings: &str, dir: &Path) -> String {
    let keys = keys();
    let pem_file = dir.join("rsa.pub.pem");
    std::fs::write(&pem_file, &keys.rsa.public).unwrap();
    let jwks_file = dir.join("jwks.json");
    std::fs::write(&jwks_file, json!({"keys": [rsa_jwk(&keys.rsa_b_n, "jwks")]}).to_string()).unwrap();
    format!(
        r#"
[authentication]
realm = "{REALM}"

[oauth2]
{oauth2_settings}

[[oauth2.issuer]]
issuer = "{ISS}"
audience = "{AUD}"
jwks_file = '{jwks_file}'
subject_format = "qualified"

[[oauth2.issuer.key]]
kid = "hs"
algorithm = "HS256"
secret_base64 = "{hmac}"

[[oauth2.issuer.key]]
kid = "rs"
algorithm = "RS256"
pem = """
{rsa}"""

[[oauth2.issuer.key]]
kid = "ps"
algorithm = "PS256"
pem_file = '{pem_file}'

[[oauth2.issuer.key]]
kid = "es"
algorithm = "ES256"
pem = """
{ec}"""

[[oauth2.issuer.key]]
kid = "ed"
algorithm = "EdDSA"
pem = """
{ed}"""

[[oauth2.issuer.key]]
kid = "jwk"
algorithm = "RS256"
jwk = '{jwk}'

[[oauth2.issuer]]
issuer = "{ISS_B}"
subject_format = "qualified"

[[oauth2.issuer.key]]
kid = "b"
algorithm = "RS256"
pem = """
{rsa_b}"""

[[oauth2.issuer]]
issuer = "{ISS_SINGLE}"
subject_format = "qualified"

[[oauth2.issuer.key]]
algorithm = "RS256"
pem = """
{rsa}"""

[[scope]]
name = "internal_identity_mgt_view"
permissions = ["{VIEW}"]

[[scope]]
name = "internal_admin"
permissions = ["/permission/admin"]

[[resource.access_control]]
context = "/public"
secure = false

[[resource.access_control]]
context = "/api/me"

[[resource.access_control]]
context = "/api/bearer-only"
allowed_auth_handlers = ["oauth2"]

[[resource.access_control]]
context = "/api/view"
scope = ["internal_identity_mgt_view"]

[[resource.access_control]]
context = "/api/a"
scope = ["a"]

[[resource.access_control]]
context = "/api/ab"
scope = ["a", "b"]

[[resource.access_control]]
context = "/api/ab-any"
scope = ["a", "b"]
scopes_match = "any"

[[resource.access_control]]
context = "/api/perm"
permissions = ["{VIEW}"]

[[resource.access_control]]
context = "/api/admin-scope"
scope = ["internal_admin"]
permissions = ["/permission/admin"]
"#,
        jwks_file = jwks_file.display(),
        pem_file = pem_file.display(),
        hmac = STANDARD.encode(HMAC_SECRET),
        rsa = keys.rsa.public,
        rsa_b = keys.rsa_b.public,
        ec = keys.ec.public,
        ed = keys.ed.public,
        jwk = rsa_jwk(&keys.rsa_n, "jwk"),
    )
}

fn standard_users() -> InMemoryUserStore {
    load_users("users.toml", &common::users_toml()).unwrap()
}

/// Echoes the caller the layer decided on.
async fn echo(principal: Option<Principal>) -> Json<Value> {
    Json(match principal {
        None => json!({"anonymous": true}),
        Some(p) => json!({
            "name": p.name().to_string(),
            "authenticated_by": p.authenticated_by(),
            "scopes": p.scopes(),
            "roles": p.roles(),
            "client_id": p.client_id(),
        }),
    })
}

struct Server {
    base: String,
    client: reqwest::Client,
}

/// Serves [`echo`] behind the standard deployment over `store`.
async fn start_with(oauth2_settings: &str, store: impl UserStore) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let text = deployment_text(oauth2_settings, dir.path());
    let deployment = Deployment::from_toml_str("deployment.toml", &text).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(store).build().unwrap();
    // Key files are read at build time only.
    drop(dir);
    let base = common::serve(Router::new().fallback(echo).layer(layer)).await;
    Server { base, client: common::client() }
}

async fn start(oauth2_settings: &str) -> Server {
    start_with(oauth2_settings, standard_users()).await
}

struct Reply {
    status: u16,
    challenges: Vec<String>,
    content_type: Option<String>,
    retry_after: Option<String>,
    body: String,
    elapsed: Duration,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(300).collect();
        write!(f, "{} {:?} {body}", self.status, self.challenges)
    }
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }

    /// The echoed caller of a 200.
    fn caller(&self) -> Value {
        assert_eq!(self.status, 200, "expected the echo, got {self:?}");
        self.json()
    }
}

impl Server {
    /// GET `path` with this `Authorization` header value, if any.
    async fn get(&self, path: &str, authorization: Option<&str>) -> Reply {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        let started = Instant::now();
        let response = request.send().await.unwrap_or_else(|e| panic!("GET {path}: no response: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers();
        let challenges = headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
        let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        let (content_type, retry_after) = (text("content-type"), text("retry-after"));
        let body = response.text().await.unwrap();
        Reply { status, challenges, content_type, retry_after, body, elapsed: started.elapsed() }
    }

    /// GET `path` with `Bearer {token}`.
    async fn bearer(&self, path: &str, token: &str) -> Reply {
        self.get(path, Some(&format!("Bearer {token}"))).await
    }
}

fn invalid_token_challenge() -> String {
    format!(r#"Bearer realm="{REALM}", error="invalid_token""#)
}

fn invalid_request_challenge() -> String {
    format!(r#"Bearer realm="{REALM}", error="invalid_request""#)
}

#[track_caller]
fn assert_ok(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: expected 200, got {reply:?}");
}

/// 401 with exactly the RFC 6750 `invalid_token` challenge and a problem+json body.
#[track_caller]
fn assert_invalid_token(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: expected 401, got {reply:?}");
    assert_eq!(reply.challenges, vec![invalid_token_challenge()], "{what}: {reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/problem+json"), "{what}: {reply:?}");
}

#[track_caller]
fn assert_insufficient_scope(reply: &Reply, scope: &str, what: &str) {
    assert_eq!(reply.status, 403, "{what}: expected 403, got {reply:?}");
    let expected = format!(r#"Bearer realm="{REALM}", error="insufficient_scope", scope="{scope}""#);
    assert_eq!(reply.challenges, vec![expected], "{what}: {reply:?}");
}

fn sorted(value: &Value) -> Vec<String> {
    let mut list: Vec<String> = value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    list.sort();
    list
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------
// A5: every algorithm and key source; what the principal carries
// ---------------------------------------------------------------------------------------

// SPEC A5: HS256 (secret_base64), RS256 (inline PEM, JWK, JWKS file), PS256 (pem_file),
// ES256 and EdDSA (inline PEM) tokens are accepted, and the principal carries `sub`, the
// `scope` claim split on spaces, the `roles` claim and `client_id`.
#[tokio::test]
async fn a5_every_algorithm_and_key_source_is_accepted() {
    let server = start("").await;
    for kid in ["hs", "rs", "ps", "es", "ed", "jwk", "jwks"] {
        let claims = claims(
            "alex",
            json!({"scope": "openid a b a", "roles": ["viewer", "auditor"], "client_id": format!("client-{kid}")}),
        );
        let reply = server.bearer("/api/me", &token(kid, &claims)).await;
        let caller = reply.caller();
        assert_eq!(caller["name"], "alex", "{kid}");
        assert_eq!(caller["authenticated_by"], "oauth2", "{kid}");
        assert_eq!(sorted(&caller["scopes"]), strings(&["a", "b", "openid"]), "{kid}");
        assert_eq!(sorted(&caller["roles"]), strings(&["auditor", "viewer"]), "{kid}");
        assert_eq!(caller["client_id"], format!("client-{kid}"), "{kid}");
    }
    // The second issuer's own key, and the single-key issuer without a kid.
    let b = token("b", &claims("bob", json!({"iss": ISS_B, "aud": null})));
    assert_eq!(server.bearer("/api/me", &b).await.caller()["name"], "bob");
    let single = sign(&header(Algorithm::RS256, None), &claims("bob", json!({"iss": ISS_SINGLE})), Signer::Rsa);
    assert_eq!(server.bearer("/api/me", &single).await.caller()["name"], "bob");
}

// SPEC A5: scopes from an `scp` array; the client from `azp` when there is no
// `client_id`; qualified `sub` values (userstore domain, tenant) parse like user names.
#[tokio::test]
async fn a5_scp_array_azp_and_qualified_sub() {
    let server = start("").await;
    let reply = server
        .bearer("/api/me", &token("es", &claims("SECONDARY/sam", json!({"scp": ["y", "x"], "azp": "spa"}))))
        .await;
    let caller = reply.caller();
    assert_eq!(caller["name"], "SECONDARY/sam");
    assert_eq!(sorted(&caller["scopes"]), strings(&["x", "y"]));
    assert_eq!(caller["client_id"], "spa");
    assert_eq!(sorted(&caller["roles"]), Vec::<String>::new());

    // No scope claim at all: a token caller with no scopes (not a Basic-like caller).
    let reply = server.bearer("/api/me", &token("hs", &claims("alex", json!({})))).await;
    assert_eq!(reply.caller()["scopes"], json!([]));
    assert_eq!(reply.caller()["client_id"], Value::Null);
}

// SPEC A5: the roles claim is configurable (`roles_claim`); the default is `roles`.
#[tokio::test]
async fn a5_roles_claim_is_configurable() {
    let token = token("rs", &claims("alex", json!({"roles": ["from-roles"], "groups": ["from-groups"]})));
    let default = start("").await;
    assert_eq!(sorted(&default.bearer("/api/me", &token).await.caller()["roles"]), strings(&["from-roles"]));
    let groups = start(r#"roles_claim = "groups""#).await;
    assert_eq!(sorted(&groups.bearer("/api/me", &token).await.caller()["roles"]), strings(&["from-groups"]));
}

// SPEC A5 (A2): the scheme name is case-insensitive; a run of spaces after it is allowed.
#[tokio::test]
async fn a5_scheme_is_case_insensitive() {
    let server = start("").await;
    let token = token("ed", &claims("alex", json!({})));
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let reply = server.get("/api/me", Some(&format!("{scheme} {token}"))).await;
        assert_eq!(reply.caller()["name"], "alex", "{scheme}");
    }
    assert_ok(&server.get("/api/me", Some(&format!("Bearer   {token}"))).await, "several spaces");
}

/// Builds a layer (no user store) from rule-file text; the load error, if any.
fn build(text: &str) -> Result<SecureLayer, ConfigError> {
    let deployment = Deployment::from_toml_str("deployment.toml", text)?;
    SecureLayer::builder().deployment(deployment).build()
}

#[track_caller]
fn assert_config_error(text: &str, key: &str, what: &str) -> ConfigError {
    let err = build(text).expect_err(what);
    assert_eq!(err.key.as_deref(), Some(key), "{what}: {err}");
    assert_eq!(&*err.file, "deployment.toml", "{what}: {err}");
    assert!(err.line > 0, "{what}: the error has no position: {err}");
    err
}

/// One issuer with one key made of `key_lines`.
fn one_key(key_lines: &str) -> String {
    format!("[[oauth2.issuer]]\nissuer = \"{ISS}\"\n\n[[oauth2.issuer.key]]\n{key_lines}\n")
}

fn pem_key(algorithm: &str, pem: &str) -> String {
    one_key(&format!("algorithm = \"{algorithm}\"\npem = \"\"\"\n{pem}\"\"\""))
}

// SPEC A5, F8: the key type must match the algorithm, checked at load.
#[test]
fn a5_key_type_must_match_the_algorithm() {
    let keys = keys();
    // Controls: the right type loads.
    for (alg, pem) in [("RS256", &keys.rsa.public), ("ES256", &keys.ec.public), ("EdDSA", &keys.ed.public)] {
        build(&pem_key(alg, pem)).unwrap_or_else(|e| panic!("{alg} with its own key type: {e}"));
    }
    for (alg, pem, what) in [
        ("ES256", &keys.rsa.public, "ES256 with an RSA key"),
        ("EdDSA", &keys.rsa.public, "EdDSA with an RSA key"),
        ("RS256", &keys.ec.public, "RS256 with an EC key"),
        ("PS256", &keys.ed.public, "PS256 with an Ed25519 key"),
        ("EdDSA", &keys.ec.public, "EdDSA with an EC key"),
        ("ES256", &keys.ed.public, "ES256 with an Ed25519 key"),
        ("HS256", &keys.rsa.public, "HS256 with a PEM public key"),
    ] {
        assert_config_error(&pem_key(alg, pem), "pem", what);
    }
    // A secret for a public-key algorithm, a JWK of the wrong kty, alg or use.
    let secret = STANDARD.encode(HMAC_SECRET);
    assert_config_error(
        &one_key(&format!("algorithm = \"RS256\"\nsecret_base64 = \"{secret}\"")),
        "secret_base64",
        "RS256 secret",
    );
    let mut jwk = rsa_jwk(&keys.rsa_n, "k");
    let as_key = |alg: &str, jwk: &Value| one_key(&format!("algorithm = \"{alg}\"\njwk = '{jwk}'"));
    build(&as_key("RS256", &jwk)).unwrap_or_else(|e| panic!("control: the RSA JWK loads: {e}"));
    assert_config_error(&as_key("ES256", &jwk), "jwk", "RSA JWK for ES256");
    assert_config_error(&as_key("PS256", &jwk), "jwk", "JWK alg RS256 configured as PS256");
    jwk["use"] = json!("enc");
    assert_config_error(&as_key("RS256", &jwk), "jwk", "JWK for encryption");
}

// SPEC A5, F8: an ES256 key must be a P-256 key; a P-384 key configured for ES256 would
// silently refuse every token, so it is a load error like any other key-type mismatch.
#[test]
fn a5_es256_key_must_be_p256() {
    build(&pem_key("ES256", &keys().ec.public)).expect("control: a P-256 key loads");
    assert_config_error(&pem_key("ES256", &keys().ec384_public), "pem", "ES256 with a P-384 key");
}

// ---------------------------------------------------------------------------------------
// A7: RFC 6750 status codes and challenges
// ---------------------------------------------------------------------------------------

// SPEC A7 (A3): no token on a secured rule -> 401 with a `Bearer realm` challenge, and
// Basic's too where Basic is allowed; a rule for `oauth2` only offers Bearer only.
#[tokio::test]
async fn a7_no_token_gets_the_bearer_challenge() {
    let server = start("").await;
    let reply = server.get("/api/me", None).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.content_type.as_deref(), Some("application/problem+json"));
    let bearer = format!(r#"Bearer realm="{REALM}""#);
    let basic = format!(r#"Basic realm="{REALM}", charset="UTF-8""#);
    let mut challenges = reply.challenges.clone();
    challenges.sort();
    assert_eq!(challenges, vec![basic, bearer.clone()], "{reply:?}");
    let reply = server.get("/api/bearer-only", None).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.challenges, vec![bearer], "{reply:?}");
    // The open resource answers anonymous callers.
    assert_eq!(server.get("/public", None).await.caller()["anonymous"], true);
}

// SPEC A7 (F5): an invalid or expired token -> 401 `invalid_token`, on open resources too.
#[tokio::test]
async fn a7_invalid_or_expired_token_is_invalid_token() {
    let server = start("").await;
    let good = token("rs", &claims("alex", json!({})));
    assert_ok(&server.bearer("/api/me", &good).await, "control");
    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = format!("{head}.{}", b64([7u8; 256]));
    assert_invalid_token(&server.bearer("/api/me", &forged).await, "bad signature");
    let expired = token("rs", &claims("alex", json!({"exp": now() - 3600})));
    assert_invalid_token(&server.bearer("/api/me", &expired).await, "expired");
    assert_invalid_token(&server.bearer("/api/me", "not-a-jwt").await, "garbage");
    // Present but invalid is never "absent", even where anonymous callers are welcome.
    assert_invalid_token(&server.bearer("/public", &forged).await, "bad signature on an open resource");
    assert_eq!(server.bearer("/public", &good).await.caller()["name"], "alex");
}

// SPEC A7 (F6): a malformed Authorization header -> 400 `invalid_request`.
#[tokio::test]
async fn a7_malformed_header_is_invalid_request() {
    let server = start("").await;
    let good = token("hs", &claims("alex", json!({})));
    for value in [
        "Bearer".to_owned(),
        "Bearer a b".to_owned(),
        "Bearer abc$def".to_owned(),
        "Bearer abc,def".to_owned(),
        "Bearer \"abc\"".to_owned(),
        "Bearer =abc".to_owned(),
        format!("Bearer {good} trailing"),
        format!("Bearer {good},"),
    ] {
        let reply = server.get("/api/me", Some(&value)).await;
        assert_eq!(reply.status, 400, "{value}: {reply:?}");
        assert_eq!(reply.challenges, vec![invalid_request_challenge()], "{value}");
    }
}

// SPEC A7: a token without the rule's scope -> 403 `insufficient_scope` naming the scopes.
#[tokio::test]
async fn a7_missing_scope_is_insufficient_scope() {
    let server = start("").await;
    let only_a = token("ps", &claims("alex", json!({"scope": "a"})));
    assert_ok(&server.bearer("/api/a", &only_a).await, "control");
    assert_insufficient_scope(&server.bearer("/api/ab", &only_a).await, "a b", "a for a+b");
    let none = token("ps", &claims("alex", json!({})));
    assert_insufficient_scope(&server.bearer("/api/view", &none).await, "internal_identity_mgt_view", "no scopes");
}

// ---------------------------------------------------------------------------------------
// C2, C4: scopes and permissions of token callers
// ---------------------------------------------------------------------------------------

// SPEC C2: a token caller must hold all of the rule's scopes, or any of them with
// `scopes_match = "any"`.
#[tokio::test]
async fn c2_token_scopes_all_or_any() {
    let server = start("").await;
    let with = |scope: &str| token("hs", &claims("bob", json!({"scope": scope})));
    assert_ok(&server.bearer("/api/ab", &with("a b")).await, "a b");
    assert_ok(&server.bearer("/api/ab", &with("c b a")).await, "c b a");
    assert_insufficient_scope(&server.bearer("/api/ab", &with("a")).await, "a b", "a only");
    assert_insufficient_scope(&server.bearer("/api/ab", &with("b c")).await, "a b", "b c");
    assert_ok(&server.bearer("/api/ab-any", &with("a")).await, "any: a");
    assert_ok(&server.bearer("/api/ab-any", &with("b")).await, "any: b");
    assert_insufficient_scope(&server.bearer("/api/ab-any", &with("c")).await, "a b", "any: c");
}

// SPEC C2, C4: on a rule with scopes (whose bindings imply its permissions), the token's
// scopes decide and its user's permissions are not re-checked (bob lacks /permission/admin,
// a client has no user at all); a token lacking the scope is refused even when its user
// holds the permissions the scope is bound to. Basic callers are judged by those bindings
// instead.
#[tokio::test]
async fn c2_scoped_rules_trust_token_scopes() {
    let server = start("").await;
    let bob_admin = token("rs", &claims("bob", json!({"scope": "internal_admin"})));
    assert_eq!(server.bearer("/api/admin-scope", &bob_admin).await.caller()["name"], "bob");
    let client = token("rs", &claims("svc-client", json!({"scope": "internal_admin", "client_id": "svc"})));
    assert_ok(&server.bearer("/api/admin-scope", &client).await, "client credentials with the scope");
    let admin_no_scope = token("rs", &claims("admin", json!({"scope": "b"})));
    let reply = server.bearer("/api/admin-scope", &admin_no_scope).await;
    assert_insufficient_scope(&reply, "internal_admin", "admin without internal_admin");

    let bob_view = token("rs", &claims("bob", json!({"scope": "internal_identity_mgt_view"})));
    assert_ok(&server.bearer("/api/view", &bob_view).await, "bob's token with the view scope");
    let alex_none = token("rs", &claims("alex", json!({"scope": "openid"})));
    assert_insufficient_scope(
        &server.bearer("/api/view", &alex_none).await,
        "internal_identity_mgt_view",
        "alex's token without the view scope",
    );
    // SPEC C4: Basic callers on the same rule, judged by the scope's permission binding.
    let basic = |user: &str, password: &str| format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
    assert_eq!(server.get("/api/view", Some(&basic("alex", "alex123"))).await.caller()["name"], "alex");
    assert_eq!(server.get("/api/view", Some(&basic("bob", "bob123"))).await.status, 403);
}

// SPEC C2: on a rule with only permissions, a token caller is judged by its user's
// permissions from the store; a token whose `sub` is no store user is refused (403), and
// scopes do not stand in for permissions there.
#[tokio::test]
async fn c2_permission_rules_use_the_token_users_permissions() {
    let server = start("").await;
    let alex = token("es", &claims("alex", json!({})));
    assert_eq!(server.bearer("/api/perm", &alex).await.caller()["name"], "alex");
    let sam = token("es", &claims("SECONDARY/sam", json!({})));
    assert_eq!(server.bearer("/api/perm", &sam).await.caller()["name"], "SECONDARY/sam");
    for (sub, scope) in [("bob", ""), ("svc-client", ""), ("svc-client", "internal_identity_mgt_view a")] {
        let reply = server.bearer("/api/perm", &token("es", &claims(sub, json!({"scope": scope})))).await;
        assert_eq!(reply.status, 403, "{sub} {scope:?}: {reply:?}");
        assert_eq!(reply.content_type.as_deref(), Some("application/problem+json"));
        assert!(!reply.challenges.iter().any(|c| c.contains("invalid_token")), "{reply:?}");
        // The same token is fine where only authentication is needed.
        let reply = server.bearer("/api/me", &token("es", &claims(sub, json!({"scope": scope})))).await;
        assert_eq!(reply.caller()["name"], sub);
    }
    // A disabled user's token does not authenticate.
    assert_invalid_token(&server.bearer("/api/me", &token("es", &claims("dave", json!({})))).await, "disabled user");
}

// ---------------------------------------------------------------------------------------
// F8: algorithms and keys
// ---------------------------------------------------------------------------------------

// SPEC F8: `alg: none` is never accepted, whatever its spelling or signature part.
#[tokio::test]
async fn f8_alg_none_is_refused() {
    let server = start("").await;
    let payload = claims("admin", json!({"iss": ISS_SINGLE}));
    let control = sign(&header(Algorithm::RS256, None), &payload, Signer::Rsa);
    assert_ok(&server.bearer("/api/me", &control).await, "control");
    let payload = b64(payload.to_string());
    for alg_header in [r#"{"alg":"none"}"#, r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"None"}"#, r#"{"alg":"NONE"}"#] {
        let head = b64(alg_header);
        for token in [format!("{head}.{payload}."), format!("{head}.{payload}.{}", b64("x"))] {
            assert_invalid_token(&server.bearer("/api/me", &token).await, alg_header);
        }
    }
}

// SPEC F8: an HS256 token whose HMAC secret is the RSA public key PEM is refused by an
// RS256 key (the key-confusion attack), with and without a kid.
#[tokio::test]
async fn f8_hmac_signed_with_the_rsa_public_key_is_refused() {
    let server = start("").await;
    let confused = EncodingKey::from_secret(keys().rsa.public.as_bytes());
    let single = claims("admin", json!({"iss": ISS_SINGLE}));
    let token = encode(&header(Algorithm::HS256, None), &single, &confused).unwrap();
    assert_invalid_token(&server.bearer("/api/me", &token).await, "single-key issuer");
    let token = encode(&header(Algorithm::HS256, Some("rs")), &claims("admin", json!({})), &confused).unwrap();
    assert_invalid_token(&server.bearer("/api/me", &token).await, "kid rs");
}

// SPEC F8: the header's `alg` must equal the configured key's algorithm, even for a
// signature the same key really made.
#[tokio::test]
async fn f8_alg_must_equal_the_keys_algorithm() {
    let server = start("").await;
    let claims = claims("alex", json!({}));
    assert_ok(&server.bearer("/api/me", &token("rs", &claims)).await, "control RS256");
    assert_ok(&server.bearer("/api/me", &token("ps", &claims)).await, "control PS256");
    for (alg, kid, signer) in [
        (Algorithm::PS256, "rs", Signer::Rsa),
        (Algorithm::RS256, "ps", Signer::Rsa),
        (Algorithm::RS512, "rs", Signer::Rsa),
        (Algorithm::HS512, "hs", Signer::Hmac),
    ] {
        let forged = sign(&header(alg, Some(kid)), &claims, signer);
        assert_invalid_token(&server.bearer("/api/me", &forged).await, &format!("{alg:?} on key {kid}"));
    }
    // A P-256 key cannot sign ES384: the header says ES384 over a real ES256 signature.
    let es384 = raw_token(r#"{"alg":"ES384","kid":"es"}"#, &claims.to_string(), Signer::Ec, Algorithm::ES256);
    assert_invalid_token(&server.bearer("/api/me", &es384).await, "ES384 header on the ES256 key");
    let es256 = raw_token(r#"{"alg":"ES256","kid":"es"}"#, &claims.to_string(), Signer::Ec, Algorithm::ES256);
    assert_ok(&server.bearer("/api/me", &es256).await, "control: the same by hand as ES256");
    // A single-key issuer picks its key without a kid, and still pins the algorithm.
    let mut single = claims.clone();
    single["iss"] = json!(ISS_SINGLE);
    let token = sign(&header(Algorithm::PS256, None), &single, Signer::Rsa);
    assert_invalid_token(&server.bearer("/api/me", &token).await, "PS256 on the single RS256 key");
}

// SPEC F8: weak or unsafe key material is a load error naming the key: HMAC secrets
// shorter than the hash, RSA under 2048 bits (PEM, PEM file, JWK, JWKS), symmetric keys in
// a JWKS, private JWKs. Errors never show the secret.
#[test]
fn f8_weak_or_unsafe_keys_are_config_errors() {
    let keys = keys();
    let secret = |n: usize| STANDARD.encode(vec![b'k'; n]);
    let hmac = |alg: &str, n: usize| one_key(&format!("algorithm = \"{alg}\"\nsecret_base64 = \"{}\"", secret(n)));
    build(&hmac("HS256", 32)).expect("control: a 32-byte HS256 secret loads");
    build(&hmac("HS512", 64)).expect("control: a 64-byte HS512 secret loads");
    let err = assert_config_error(&hmac("HS256", 31), "secret_base64", "31-byte HS256 secret");
    assert!(!err.to_string().contains(&secret(31)), "the error shows the secret: {err}");
    assert_config_error(&hmac("HS384", 47), "secret_base64", "47-byte HS384 secret");
    assert_config_error(&hmac("HS512", 48), "secret_base64", "48-byte HS512 secret");

    assert_config_error(&pem_key("RS256", &keys.rsa1024_public), "pem", "RSA 1024 inline");
    let dir = tempfile::tempdir().unwrap();
    let pem_file = dir.path().join("rsa1024.pub.pem");
    std::fs::write(&pem_file, &keys.rsa1024_public).unwrap();
    let text = one_key(&format!("algorithm = \"RS256\"\npem_file = '{}'", pem_file.display()));
    assert_config_error(&text, "pem_file", "RSA 1024 pem_file");
    let jwk = rsa_jwk(&keys.rsa1024_n, "weak");
    assert_config_error(&one_key(&format!("algorithm = \"RS256\"\njwk = '{jwk}'")), "jwk", "RSA 1024 JWK");

    let jwks = |name: &str, list: Value| {
        let path = dir.path().join(name);
        std::fs::write(&path, json!({ "keys": list }).to_string()).unwrap();
        format!("[[oauth2.issuer]]\nissuer = \"{ISS}\"\njwks_file = '{}'\n", path.display())
    };
    build(&jwks("good.json", json!([rsa_jwk(&keys.rsa_n, "good")]))).expect("control: a JWKS file loads");
    assert_config_error(&jwks("weak.json", json!([jwk])), "jwks_file", "RSA 1024 in a JWKS");
    let oct = json!({"kty": "oct", "kid": "sym", "alg": "HS256", "k": URL_SAFE_NO_PAD.encode(vec![b'k'; 64])});
    let good = rsa_jwk(&keys.rsa_n, "good");
    assert_config_error(&jwks("oct.json", json!([good, oct])), "jwks_file", "oct key in a JWKS");

    // A private JWK (`d` present; the values need not be real for the check).
    let mut private = rsa_jwk(&keys.rsa_n, "priv");
    private["d"] = json!(URL_SAFE_NO_PAD.encode([1u8; 256]));
    let err = assert_config_error(&one_key(&format!("algorithm = \"RS256\"\njwk = '{private}'")), "jwk", "private JWK");
    assert!(!err.to_string().contains(private["d"].as_str().unwrap()), "the error shows the private key: {err}");
    assert_config_error(&jwks("private.json", json!([private])), "jwks_file", "private JWK in a JWKS");
}

// SPEC F8: "RSA >= 2048 bits checked at load" holds for keys given as a certificate too.
#[test]
fn f8_rsa_certificate_under_2048_bits_is_a_config_error() {
    let keys = keys();
    build(&pem_key("RS256", &keys.rsa_cert)).expect("control: a 2048-bit RSA certificate loads");
    assert_config_error(&pem_key("RS256", &keys.rsa1024_cert), "pem", "1024-bit RSA certificate");
}

// ---------------------------------------------------------------------------------------
// F9: header injection
// ---------------------------------------------------------------------------------------

// SPEC F9: an unknown `kid`, or one shaped like a file path, selects no key; with several
// keys a token must name one.
#[tokio::test]
async fn f9_unknown_or_path_kid_is_refused() {
    let server = start("").await;
    let claims = claims("alex", json!({}));
    assert_ok(&server.bearer("/api/me", &token("rs", &claims)).await, "control");
    for kid in ["nope", "../../etc/passwd", "/etc/passwd", "../../../../dev/null", "", "RS", "rs "] {
        let token = sign(&header(Algorithm::RS256, Some(kid)), &claims, Signer::Rsa);
        assert_invalid_token(&server.bearer("/api/me", &token).await, &format!("kid {kid:?}"));
    }
    let token = sign(&header(Algorithm::RS256, None), &claims, Signer::Rsa);
    assert_invalid_token(&server.bearer("/api/me", &token).await, "no kid among several keys");
}

// SPEC F9: `jku`, `x5u`, `jwk` and `x5c` headers never cause network I/O or key selection:
// tokens are refused or accepted on the configured keys alone, and a listener at the
// advertised URL sees no connection.
#[tokio::test]
async fn f9_key_url_headers_cause_no_io() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    let server = start("").await;
    let claims = claims("admin", json!({}));
    let attacker_jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(rsa_jwk(&keys().rsa_b_n, "rs")).expect("attacker JWK parses");

    let mut jku = header(Algorithm::RS256, Some("rs"));
    jku.jku = Some(url.clone());
    let mut x5u = header(Algorithm::RS256, Some("attacker"));
    x5u.x5u = Some(url.clone());
    let mut embedded = header(Algorithm::RS256, Some("rs"));
    embedded.jwk = Some(attacker_jwk);
    let mut x5c = header(Algorithm::RS256, Some("rs"));
    x5c.x5c = Some(vec![STANDARD.encode(keys().rsa_b.public.as_bytes())]);
    for (what, header) in [("jku", &jku), ("x5u", &x5u), ("jwk", &embedded), ("x5c", &x5c)] {
        let forged = sign(header, &claims, Signer::RsaB);
        assert_invalid_token(&server.bearer("/api/me", &forged).await, &format!("attacker key via {what}"));
    }
    // The configured key's own signature stands, whatever the headers advertise.
    let mut all = header(Algorithm::RS256, Some("rs"));
    all.jku = Some(url.clone());
    all.x5u = Some(url);
    all.x5c = Some(vec![STANDARD.encode(b"not a certificate")]);
    assert_eq!(server.bearer("/api/me", &sign(&all, &claims, Signer::Rsa)).await.caller()["name"], "admin");

    let connection = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
    assert!(connection.is_err(), "the server fetched a token-supplied URL: {connection:?}");
}

// SPEC F9: a `crit` header is refused.
#[tokio::test]
async fn f9_crit_header_is_refused() {
    let server = start("").await;
    let claims = claims("alex", json!({}));
    let mut crit = header(Algorithm::RS256, Some("rs"));
    assert_ok(&server.bearer("/api/me", &sign(&crit, &claims, Signer::Rsa)).await, "control");
    for list in [vec!["exp".to_owned()], vec!["b64".to_owned()], Vec::new()] {
        crit.crit = Some(list.clone());
        assert_invalid_token(
            &server.bearer("/api/me", &sign(&crit, &claims, Signer::Rsa)).await,
            &format!("crit {list:?}"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// F10: time, issuer and audience claims
// ---------------------------------------------------------------------------------------

// SPEC F10: `exp` required and a number; `exp`, `nbf`, `iat` honoured with the 60 s leeway.
#[tokio::test]
async fn f10_time_claims() {
    let server = start("").await;
    let now = now();
    let check = |extra: Value| token("hs", &claims("alex", extra));
    for (what, extra) in [
        ("expired 30 s ago (within leeway)", json!({"exp": now - 30})),
        ("nbf 30 s ahead (within leeway)", json!({"nbf": now + 30})),
        ("iat 30 s ahead (within leeway)", json!({"iat": now + 30})),
        ("nbf and iat in the past", json!({"nbf": now - 100, "iat": now - 100})),
        ("no iat", json!({"iat": null})),
    ] {
        assert_ok(&server.bearer("/api/me", &check(extra)).await, what);
    }
    for (what, extra) in [
        ("no exp", json!({"exp": null})),
        ("expired 120 s ago", json!({"exp": now - 120})),
        ("exp as a string", json!({"exp": (now + 600).to_string()})),
        ("exp as a bool", json!({"exp": true})),
        ("exp negative", json!({"exp": -1})),
        ("exp an object", json!({"exp": {"value": now + 600}})),
        ("nbf 300 s ahead", json!({"nbf": now + 300})),
        ("nbf as a string", json!({"nbf": (now - 10).to_string()})),
        ("iat 300 s ahead", json!({"iat": now + 300})),
        ("iat as a string", json!({"iat": now.to_string()})),
    ] {
        assert_invalid_token(&server.bearer("/api/me", &check(extra)).await, what);
    }
}

// SPEC F10: `iss` must be one string equal to a configured issuer, and the verifying key
// must belong to that issuer.
#[tokio::test]
async fn f10_issuer_checks() {
    let server = start("").await;
    for (what, extra) in [
        ("iss array", json!({"iss": [ISS]})),
        ("trailing slash", json!({"iss": format!("{ISS}/")})),
        ("other case", json!({"iss": ISS.to_uppercase()})),
        ("unknown issuer", json!({"iss": "https://evil.test"})),
        ("no iss", json!({"iss": null})),
        ("iss a number", json!({"iss": 7})),
        ("another issuer's name over this issuer's key", json!({"iss": ISS_B, "aud": null})),
    ] {
        assert_invalid_token(&server.bearer("/api/me", &token("rs", &claims("alex", extra))).await, what);
    }
    // Issuer B's key (the same key material the main issuer has as `jwks`) is not the main
    // issuer's `b`, and the main issuer's `rs` is not issuer B's.
    let main_with_b = token("b", &claims("alex", json!({})));
    assert_invalid_token(&server.bearer("/api/me", &main_with_b).await, "main issuer, kid b");
    assert_ok(&server.bearer("/api/me", &token("jwks", &claims("alex", json!({})))).await, "control: jwks");
    let b_with_jwks = token("jwks", &claims("alex", json!({"iss": ISS_B})));
    assert_invalid_token(&server.bearer("/api/me", &b_with_jwks).await, "issuer B, kid jwks");
    assert_ok(&server.bearer("/api/me", &token("b", &claims("alex", json!({"iss": ISS_B})))).await, "control: b");
}

// SPEC F10: `aud` must be or contain the configured audience; an issuer without one
// accepts any.
#[tokio::test]
async fn f10_audience_checks() {
    let server = start("").await;
    for (what, aud) in [("string", json!(AUD)), ("array", json!(["other", AUD])), ("one-element array", json!([AUD]))] {
        assert_ok(&server.bearer("/api/me", &token("ed", &claims("alex", json!({"aud": aud})))).await, what);
    }
    for (what, aud) in [
        ("wrong aud", json!("other")),
        ("missing aud", Value::Null),
        ("array without it", json!(["other", "more"])),
        ("prefix", json!("my-api-2")),
        ("empty array", json!([])),
        ("a number", json!(7)),
        ("array with a non-string", json!([AUD, 7])),
    ] {
        assert_invalid_token(&server.bearer("/api/me", &token("ed", &claims("alex", json!({"aud": aud})))).await, what);
    }
    let b = token("b", &claims("alex", json!({"iss": ISS_B, "aud": "anything"})));
    assert_ok(&server.bearer("/api/me", &b).await, "issuer without an audience");
}

// SPEC F10: other claims of the wrong JSON type refuse.
#[tokio::test]
async fn f10_claims_of_the_wrong_type_refuse() {
    let server = start("").await;
    for (what, extra) in [
        ("sub a number", json!({"sub": 42})),
        ("no sub", json!({"sub": null})),
        ("roles a string", json!({"roles": "admin"})),
        ("roles with a number", json!({"roles": ["admin", 1]})),
        ("client_id a number", json!({"client_id": 7})),
        ("scope an object", json!({"scope": {"a": true}})),
        ("scp a number", json!({"scp": 7})),
    ] {
        assert_invalid_token(&server.bearer("/api/me", &token("es", &claims("alex", extra))).await, what);
    }
}

// ---------------------------------------------------------------------------------------
// F11: ID tokens are not access tokens
// ---------------------------------------------------------------------------------------

// SPEC F11: with `require_typ = "at+jwt"` (RFC 9068) only access tokens pass; an ID-token
// shaped JWT (`typ: JWT`) is refused. Without the setting, `typ` is not required.
#[tokio::test]
async fn f11_require_typ_keeps_id_tokens_out() {
    let server = start(r#"require_typ = "at+jwt""#).await;
    let claims = claims("alex", json!({}));
    let with_typ = |typ: Option<&str>| {
        let mut header = header(Algorithm::RS256, Some("rs"));
        header.typ = typ.map(str::to_owned);
        sign(&header, &claims, Signer::Rsa)
    };
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        assert_ok(&server.bearer("/api/me", &with_typ(Some(typ))).await, typ);
    }
    for typ in [Some("JWT"), None, Some("at+jwt+x"), Some("application/jwt"), Some("")] {
        assert_invalid_token(&server.bearer("/api/me", &with_typ(typ)).await, &format!("typ {typ:?}"));
    }
    let id_token = id_token();
    assert_invalid_token(&server.bearer("/api/me", &id_token).await, "ID token");

    let lenient = start("").await;
    assert_ok(&lenient.bearer("/api/me", &with_typ(Some("JWT"))).await, "typ JWT without require_typ");
}

/// An OpenID Connect ID token: `typ: JWT`, audience the API's (a client sharing its id).
fn id_token() -> String {
    let claims = claims("alex", json!({"nonce": "n-0S6_WzA2Mj", "auth_time": now() - 5, "azp": AUD}));
    sign(&header(Algorithm::RS256, Some("rs")), &claims, Signer::Rsa)
}

// ---------------------------------------------------------------------------------------
// F12: scope syntax
// ---------------------------------------------------------------------------------------

// SPEC F12, A14: scope tokens are exact, case-sensitive and space-delimited (or one per
// array element); never split on commas or matched as substrings; an empty token, `scope`
// and `scp` that differ, or a claim that is neither a string nor an array of strings refuse.
// (Before A14, an `scp` string and an identical `scope` + `scp` pair were refused.)
#[tokio::test]
async fn f12_scope_tokens_are_exact() {
    let server = start("").await;
    let with = |extra: Value| token("hs", &claims("alex", extra));
    assert_ok(&server.bearer("/api/a", &with(json!({"scope": "a"}))).await, "a");
    assert_ok(&server.bearer("/api/a", &with(json!({"scope": "a a a"}))).await, "duplicates");
    assert_ok(&server.bearer("/api/a", &with(json!({"scp": ["a"]}))).await, "scp");
    assert_ok(&server.bearer("/api/a", &with(json!({"scp": "a"}))).await, "scp string");
    assert_ok(&server.bearer("/api/a", &with(json!({"scope": "a", "scp": ["a"]}))).await, "identical scope and scp");
    for scope in [json!(["a,b"]), json!(["A"]), json!(["ab"])] {
        let reply = server.bearer("/api/a", &with(json!({"scp": scope}))).await;
        assert_insufficient_scope(&reply, "a", &format!("scp {scope}"));
    }
    for scope in ["a,b", "A", "ab", "b", "a:read", "", "\u{0430}"] {
        let reply = server.bearer("/api/a", &with(json!({"scope": scope}))).await;
        assert_insufficient_scope(&reply, "a", &format!("scope {scope:?}"));
    }
    let reply = server.bearer("/api/me", &with(json!({"scope": "a,b"}))).await;
    assert_eq!(sorted(&reply.caller()["scopes"]), strings(&["a,b"]), "never split on commas");
    for (what, extra) in [
        ("double space", json!({"scope": "a  b"})),
        ("leading space", json!({"scope": " a"})),
        ("trailing space", json!({"scope": "a "})),
        ("scope and scp differ", json!({"scope": "a", "scp": ["a", "b"]})),
        ("scp an empty element", json!({"scp": ["a", ""]})),
        ("scp an element with a space", json!({"scp": ["a b"]})),
        ("scp with a number", json!({"scp": ["a", 1]})),
        ("scp nested", json!({"scp": [["a"]]})),
        ("scope a number", json!({"scope": 1})),
    ] {
        assert_invalid_token(&server.bearer("/api/a", &with(extra)).await, what);
    }
}

// ---------------------------------------------------------------------------------------
// F13: refusals look alike
// ---------------------------------------------------------------------------------------

// SPEC F13: bad signature, expired token and unknown kid answer byte-identically, and
// nothing of the token is reflected.
#[tokio::test]
async fn f13_refusals_are_identical() {
    let server = start("").await;
    let good = token("rs", &claims("alex", json!({})));
    let (head, _) = good.rsplit_once('.').unwrap();
    let bad_signature = format!("{head}.{}", b64([9u8; 256]));
    let expired = token("rs", &claims("alex", json!({"exp": now() - 3600})));
    let unknown_kid =
        sign(&header(Algorithm::RS256, Some("kid-reflected-xyz")), &claims("alex", json!({})), Signer::Rsa);
    let mut replies = Vec::new();
    for token in [&bad_signature, &expired, &unknown_kid] {
        let reply = server.bearer("/api/me", token).await;
        assert_invalid_token(&reply, "refusal");
        assert!(!reply.body.contains("kid-reflected-xyz") && !reply.body.contains("alex"), "{reply:?}");
        replies.push(reply);
    }
    for reply in &replies[1..] {
        assert_eq!(reply.body.as_bytes(), replies[0].body.as_bytes());
        assert_eq!(reply.challenges, replies[0].challenges);
        assert_eq!(reply.content_type, replies[0].content_type);
    }
}

// ---------------------------------------------------------------------------------------
// F18, E3: size and nesting limits
// ---------------------------------------------------------------------------------------

// SPEC F18, E3: a 300 KB token is refused quickly with 431; a token over
// `max_token_bytes` is 431 even under the 16 KiB header cap. The default (16 KiB) admits
// the 11 KB tokens Entra ID issues for users in many groups.
#[tokio::test]
async fn f18_oversized_tokens_are_refused_early() {
    let server = start("").await;
    let part = "A".repeat(100 * 1024);
    let huge = format!("{part}.{part}.{part}");
    let reply = server.bearer("/api/me", &huge).await;
    assert_eq!(reply.status, 431, "300 KB token: {reply:?}");
    assert!(reply.elapsed < Duration::from_secs(1), "300 KB token took {:?}", reply.elapsed);

    // An Entra-sized token (200 group ids, over 10 KB) passes the default limit.
    let groups: Vec<String> = (0..200).map(|i| format!("0f3c{i:04}-5f1a-4b7e-9d2c-000000000000")).collect();
    let entra_sized = token("hs", &claims("alex", json!({"groups": groups})));
    assert!(entra_sized.len() > 10_000 && entra_sized.len() < 16_000, "{}", entra_sized.len());
    assert_ok(&server.bearer("/api/me", &entra_sized).await, "a 10 KB token under the default limit");

    // Between max_token_bytes and the header cap: padded with a long, signed claim.
    let padded = token("hs", &claims("alex", json!({"pad": "x".repeat(7000)})));
    assert!(padded.len() > 8192 && padded.len() < 16000, "{}", padded.len());
    let capped = start("max_token_bytes = 8192").await;
    let reply = capped.bearer("/api/me", &padded).await;
    assert_eq!(reply.status, 431, "{} byte token: {reply:?}", padded.len());
    assert_eq!(reply.challenges, vec![invalid_request_challenge()]);
    assert_ok(&server.bearer("/api/me", &padded).await, "the same token under the default limit");

    // A lower limit applies to ordinary tokens.
    let tight = start("max_token_bytes = 256").await;
    let ordinary = token("rs", &claims("alex", json!({})));
    assert!(ordinary.len() > 256);
    assert_eq!(tight.bearer("/api/me", &ordinary).await.status, 431);
    assert_ok(&server.bearer("/api/me", &ordinary).await, "control");
}

// SPEC F18: a token that is not three base64url parts is refused (401) before any parsing.
#[tokio::test]
async fn f18_not_three_base64url_parts_is_invalid_token() {
    let server = start("").await;
    let good = token("hs", &claims("alex", json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    for token in [
        "abc".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!("{}..{}", parts[0], parts[2]),
        format!("{}.{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[1], parts[2]),
        format!("{}.{}+.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}/.{}", parts[0], parts[1], parts[2]),
        format!("{good}=="),
        format!("{}~.{}.{}", parts[0], parts[1], parts[2]),
    ] {
        assert_invalid_token(&server.bearer("/api/me", &token).await, &token);
    }
    assert_ok(&server.bearer("/api/me", &good).await, "control");
}

/// A signed HS256 token whose claim `deep` is `depth` nested arrays (or objects).
fn nested_token(depth: usize, objects: bool) -> String {
    let (open, close) = if objects { (r#"{"a":"#, "}") } else { ("[", "]") };
    let deep = format!("{}1{}", open.repeat(depth), close.repeat(depth));
    let payload = format!(r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"alex","exp":{},"deep":{deep}}}"#, now() + 600);
    raw_token(r#"{"alg":"HS256","kid":"hs","typ":"JWT"}"#, &payload, Signer::Hmac, Algorithm::HS256)
}

// SPEC F18: deeply nested JSON claims in a validly signed token are refused with a 4xx
// (never 500, never a crash) well within a second; shallow nesting is fine.
#[tokio::test]
async fn f18_deeply_nested_claims_are_refused_quickly() {
    let server = start("max_token_bytes = 16000").await;
    assert_ok(&server.bearer("/api/me", &nested_token(10, false)).await, "control: 10 nested arrays");
    assert_ok(&server.bearer("/api/me", &nested_token(10, true)).await, "control: 10 nested objects");
    for (depth, objects) in [(5000, false), (1500, true), (10_000, false)] {
        let token = nested_token(depth, objects);
        let reply = server.bearer("/api/me", &token).await;
        assert!((400..500).contains(&reply.status), "depth {depth} ({} bytes): {reply:?}", token.len());
        assert!(reply.elapsed < Duration::from_secs(1), "depth {depth} took {:?}", reply.elapsed);
        if token.len() <= 16000 {
            // Within the size limits, so the nesting itself is what is refused.
            assert_invalid_token(&reply, &format!("depth {depth}"));
        }
    }
    // The server is still serving.
    assert_ok(&server.bearer("/api/me", &token("hs", &claims("alex", json!({})))).await, "after");
}

// ---------------------------------------------------------------------------------------
// The verified-token cache
// ---------------------------------------------------------------------------------------

// SPEC A5: a verified token is cached; the same token twice answers the same.
#[tokio::test]
async fn cache_same_token_twice() {
    let server = start("").await;
    let token = token("es", &claims("alex", json!({"scope": "a"})));
    let first = server.bearer("/api/a", &token).await;
    let second = server.bearer("/api/a", &token).await;
    assert_eq!(first.caller(), second.caller());
    // A cached token still meets each rule's scopes.
    assert_insufficient_scope(&server.bearer("/api/ab", &token).await, "a b", "cached, other rule");
}

// SPEC A5, F10: a cache entry never outlives the token's `exp`.
#[tokio::test]
async fn cache_never_outlives_exp() {
    let server = start("leeway_seconds = 0").await;
    let token = token("hs", &claims("alex", json!({"exp": now() + 2})));
    assert_ok(&server.bearer("/api/me", &token).await, "fresh");
    assert_ok(&server.bearer("/api/me", &token).await, "cached");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_invalid_token(&server.bearer("/api/me", &token).await, "expired while cached");
}

// ---------------------------------------------------------------------------------------
// F17: fail closed
// ---------------------------------------------------------------------------------------

/// The standard users; looking up `broken` fails.
struct FailingStore(InMemoryUserStore);

#[async_trait]
impl UserStore for FailingStore {
    async fn find_user(&self, name: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        if name.user() == "broken" {
            return Err(UserStoreError("backend down".to_owned()));
        }
        self.0.find_user(name).await
    }
}

// SPEC F17: a user-store failure for a token user answers 503 (never 200, never 401), is
// not cached, and does not affect other users.
#[tokio::test]
async fn f17_user_store_failure_is_503() {
    let server = start_with("", FailingStore(standard_users())).await;
    let broken = token("rs", &claims("broken", json!({"scope": "a"})));
    for attempt in 0..2 {
        for path in ["/api/me", "/api/a", "/api/perm"] {
            let reply = server.bearer(path, &broken).await;
            assert_eq!(reply.status, 503, "{path} attempt {attempt}: {reply:?}");
            assert!(reply.retry_after.is_some(), "{reply:?}");
            assert!(!reply.challenges.iter().any(|c| c.contains("invalid_token")), "{reply:?}");
        }
    }
    let alex = token("rs", &claims("alex", json!({})));
    assert_eq!(server.bearer("/api/perm", &alex).await.caller()["name"], "alex");
}
