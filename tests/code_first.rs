//! Code-first configuration (`tower_secure::code`): what the builders accept and refuse is
//! what the files accept and refuse, and a refusal names the item by its position in the
//! builder (`<code>:N`). The whole-app equivalence with the quickstart's files is
//! `examples_curl::code_first_example_behaves_like_the_quickstart`.

mod common;

use tower_secure::code::{AccessRule, ScopeBinding, SigningKey, TokenServerSettings, Users};
use tower_secure::config::{load_clients, load_users, ConfigError, Deployment, GrantType};
use tower_secure::identity::{QualifiedName, UserStore};
use tower_secure::oauth2::TokenServer;
use tower_secure::{PolicyListing, SecureLayer};

const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0=";

fn assert_names(error: &ConfigError, line: usize, key: &str, words: &str) {
    assert_eq!((&*error.file, error.line, error.key.as_deref()), ("<code>", line, Some(key)), "{error}");
    assert!(error.message.contains(words), "{error}");
}

// SPEC I1, F19, B1: the rule checks of files apply to rules built in code, and each error
// names the rule's position among the items added.
#[test]
fn rule_errors_name_the_item() {
    let ok = AccessRule::new("/health").method("GET").open();
    let error = Deployment::builder().rule(ok.clone()).rule(AccessRule::new("/x").method("DELTE")).build().unwrap_err();
    assert_names(&error, 2, "http_method", "DELTE");
    let error = Deployment::builder().rule(AccessRule::new("/x").permission("no-slash")).build().unwrap_err();
    assert_names(&error, 1, "permissions", "");
    let error = Deployment::builder().rule(ok.clone()).rule(ok.clone()).build().unwrap_err();
    assert_eq!(error.line, 2, "the second of two identical rules: {error}");
    let error = Deployment::builder()
        .rule(AccessRule::new("/reports").scope("reports").permission("/permission/admin/reports"))
        .scope(ScopeBinding::new("reports"))
        .build()
        .unwrap_err();
    assert_names(&error, 1, "permissions", "judged by their scopes alone");
    Deployment::builder()
        .rule(AccessRule::new("/reports").scope("reports").permission("/permission/admin/reports"))
        .scope(ScopeBinding::new("reports").permission("/permission/admin/reports"))
        .build()
        .unwrap();
}

// SPEC I1, B6: a deployment built in code compiles to the same policy as the rule file
// that says the same: the listing differs only in where each rule came from.
#[test]
fn code_and_file_compile_to_the_same_policy() {
    let file = r#"
[authentication]
realm = "same"

[[resource.access_control]]
context = "/api/health"
http_method = "GET"
secure = false

[[resource.access_control]]
context = "/api/users/{id}"
http_method = ["GET", "PUT"]
scope = ["users_read", "users_write"]
scopes_match = "any"
permissions = ["/permission/admin/users"]
allowed_auth_handlers = ["basic"]

[[resource.access_control]]
context = "/api/admin/**"
permissions = ["/permission/admin"]
override = true

[[scope]]
name = "users_read"
permissions = ["/permission/admin/users"]

[[scope]]
name = "users_write"
permissions = ["/permission/admin/users"]
"#;
    let from_file = Deployment::from_toml_str("deployment.toml", file).unwrap();
    let from_code = Deployment::builder()
        .realm("same")
        .rule(AccessRule::new("/api/health").method("GET").open())
        .rule(
            AccessRule::new("/api/users/{id}")
                .method(http::Method::GET)
                .method(http::Method::PUT)
                .scope("users_read")
                .scope("users_write")
                .any_scope()
                .permission("/permission/admin/users")
                .handlers(["basic"]),
        )
        .rule(AccessRule::new("/api/admin/**").permission("/permission/admin").overrides_handler_rules())
        .scope(ScopeBinding::new("users_read").permission("/permission/admin/users"))
        .scope(ScopeBinding::new("users_write").permission("/permission/admin/users"))
        .build()
        .unwrap();
    let listing = |deployment: Deployment| {
        let store = load_users("users.toml", &common::users_toml()).unwrap();
        let layer = SecureLayer::builder().deployment(deployment).user_store(store).build().unwrap();
        let json = PolicyListing::new(&layer).to_json();
        let text = json.to_string();
        assert!(text.contains("/api/users/{id}"), "{text}");
        text.replace("deployment.toml:", "ORIGIN:").replace("<code>:", "ORIGIN:")
    };
    // Lines differ (a file line vs the item's position): compare without them.
    let strip_lines = |text: String| {
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("ORIGIN:") {
            out.push_str(&rest[..at]);
            rest = rest[at + "ORIGIN:".len()..].trim_start_matches(|c: char| c.is_ascii_digit());
        }
        out + rest
    };
    assert_eq!(strip_lines(listing(from_file)), strip_lines(listing(from_code)));
}

// SPEC I1, A4: users, roles and clients built in code are checked as a users file's are,
// and equal what the same file loads.
#[test]
fn users_built_in_code_match_the_file() {
    let hash = common::cheap_hash("alex123");
    let users = Users::builder()
        .role("viewer", ["/permission/admin/view"])
        .user("SECONDARY/alex", hash.clone(), ["viewer"])
        .client("reports", hash.clone(), ["viewer"])
        .grant_types([GrantType::ClientCredentials])
        .build()
        .unwrap();
    let file = format!(
        "[[role]]\nname = \"viewer\"\npermissions = [\"/permission/admin/view\"]\n\n\
         [[user]]\nname = \"SECONDARY/alex\"\npassword = \"{hash}\"\nroles = [\"viewer\"]\n\n\
         [[client]]\nid = \"reports\"\nsecret = \"{hash}\"\nroles = [\"viewer\"]\ngrant_types = [\"client_credentials\"]\n"
    );
    assert_eq!(users.clients, load_clients("users.toml", &file).unwrap());
    let name = QualifiedName::parse("SECONDARY/alex").unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let from_code = runtime.block_on(users.store.find_user(&name)).unwrap();
    let from_file = runtime.block_on(load_users("users.toml", &file).unwrap().find_user(&name)).unwrap();
    assert_eq!(from_code, from_file);
    assert!(from_code.is_some());

    let error = Users::builder().user("alex", hash.clone(), ["viewer"]).build().unwrap_err();
    assert_names(&error, 1, "roles", "no [[role]]");
    let error = Users::builder().role("r", Vec::<String>::new()).user("bob", "plain-text", ["r"]).build().unwrap_err();
    assert_names(&error, 2, "password", "PHC");
    let error = Users::builder().client("bad id!", hash, Vec::<String>::new()).build().unwrap_err();
    assert_names(&error, 1, "id", "client id");
}

// SPEC I1, D1: a token server configured in code signs with its code-built key, and a
// missing key is refused at build, naming the token server.
#[test]
fn token_server_settings_in_code() {
    let deployment = Deployment::builder()
        .token_server(
            TokenServerSettings::new("https://api.example.com").signing_key(SigningKey::hs256_base64(SECRET).kid("k1")),
        )
        .build()
        .unwrap();
    let server = TokenServer::builder().deployment(&deployment).build().unwrap();
    assert_eq!(server.issuer(), "https://api.example.com");
    let token = server.sign_claims(&serde_json::Map::new()).unwrap();
    let header: serde_json::Value = {
        use base64::Engine as _;
        let part = token.split('.').next().unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!((header["alg"].as_str(), header["kid"].as_str()), (Some("HS256"), Some("k1")));

    let no_key =
        Deployment::builder().token_server(TokenServerSettings::new("https://api.example.com")).build().unwrap();
    let error = TokenServer::builder().deployment(&no_key).build().unwrap_err();
    assert_eq!((&*error.file, error.line), ("<code>", 1), "{error}");
    let short = Deployment::builder()
        .token_server(TokenServerSettings::new("https://a.test").signing_key(SigningKey::hs256_base64("c2hvcnQ=")))
        .build()
        .unwrap();
    let error = TokenServer::builder().deployment(&short).build().unwrap_err();
    assert_eq!((&*error.file, error.line, error.key.as_deref()), ("<code>", 2, Some("secret_base64")), "{error}");
}

// SPEC I1, A5, A13: an identity provider configured in code is trusted like the same
// `[[oauth2.issuer]]` table: its tokens with the right audience open the API, with another
// audience they are refused, and `subject_format` decides how `sub` names the caller.
#[tokio::test]
async fn issuer_in_code_verifies_tokens() {
    use axum::routing::get;
    use tower_secure::code::Issuer;
    use tower_secure::config::SubjectFormat;
    use tower_secure::Principal;

    let secret = b"an issuer secret of 32 bytes ok!";
    let deployment = Deployment::builder()
        .issuer(
            Issuer::new("https://idp.test")
                .hs256_base64(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret))
                .kid("k1")
                .audience("my-api")
                .subject_format(SubjectFormat::Qualified),
        )
        .build()
        .unwrap();
    let layer = SecureLayer::builder().deployment(deployment).build().unwrap();
    let app = axum::Router::new().route("/me", get(|caller: Principal| async move { caller.name().to_string() }));
    let base = common::serve(app.layer(layer)).await;
    let token = |aud: &str| {
        let claims = serde_json::json!({
            "iss": "https://idp.test", "sub": "SECONDARY/alex", "aud": aud, "exp": 4_000_000_000u64,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("k1".to_owned());
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
    };
    let get = |token: String| {
        let base = base.clone();
        async move { common::client().get(format!("{base}/me")).bearer_auth(token).send().await.unwrap() }
    };
    let ok = get(token("my-api")).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "SECONDARY/alex", "qualified subject");
    assert_eq!(get(token("other-api")).await.status(), 401, "wrong audience");

    // Keys are checked (and fetched) when the layer is built: an issuer without any is
    // refused there, naming the item.
    let keyless = Deployment::builder().issuer(Issuer::new("https://idp.test")).build().unwrap();
    let error = SecureLayer::builder().deployment(keyless).build().unwrap_err();
    assert_eq!((&*error.file, error.line), ("<code>", 1), "{error}");
}

/// An HS256 token of `https://idp.test` for `my-api`, with this `typ` and `exp`.
fn idp_token(secret: &[u8], typ: Option<&str>, exp: u64) -> String {
    let claims = serde_json::json!({ "iss": "https://idp.test", "sub": "alex", "aud": "my-api", "exp": exp });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    header.typ = typ.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(secret)).unwrap()
}

// SPEC I1, A5, F9, F10: the `oauth2` handler built on its own in code
// (`BearerAuthenticator::builder()`) trusts its issuer, requires the type and applies the
// leeway it was given, and serves a layer whose rules were built separately; a builder
// without issuers, or with an issuer without keys, is refused naming the item.
#[tokio::test]
async fn bearer_handler_built_in_code() {
    use axum::routing::get;
    use tower_secure::authn::BearerAuthenticator;
    use tower_secure::code::Issuer;
    use tower_secure::Principal;

    let secret = b"an issuer secret of 32 bytes ok!";
    let issuer = Issuer::new("https://idp.test")
        .hs256_base64(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret))
        .kid("k1")
        .audience("my-api");
    let serve = |bearer: BearerAuthenticator| async move {
        let rules = Deployment::builder().rule(AccessRule::new("/me").method("GET").any_scope()).build().unwrap();
        let layer = SecureLayer::builder().deployment(rules).bearer(bearer).build().unwrap();
        let app = axum::Router::new().route("/me", get(|caller: Principal| async move { caller.name().to_string() }));
        common::serve(app.layer(layer)).await
    };
    let status = |base: String, token: String| async move {
        common::client().get(format!("{base}/me")).bearer_auth(token).send().await.unwrap().status()
    };
    let strict = BearerAuthenticator::builder()
        .issuer(issuer.clone())
        .require_type("at+jwt")
        .leeway(std::time::Duration::from_secs(0))
        .build()
        .unwrap();
    let strict = serve(strict).await;
    let lenient = serve(BearerAuthenticator::builder().issuer(issuer).build().unwrap()).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(status(strict.clone(), idp_token(secret, Some("at+jwt"), now + 600)).await, 200);
    assert_eq!(status(strict.clone(), idp_token(secret, None, now + 600)).await, 401, "typ required");
    assert_eq!(status(lenient.clone(), idp_token(secret, None, now + 600)).await, 200, "typ not checked by default");
    // Five seconds past `exp` is within the default leeway of 60 s, not within 0 s.
    let expired = idp_token(secret, Some("at+jwt"), now - 5);
    assert_eq!(status(strict, expired.clone()).await, 401, "no leeway");
    assert_eq!(status(lenient, expired).await, 200, "default leeway");

    let error = BearerAuthenticator::builder().build().unwrap_err();
    assert_eq!((&*error.file, error.key.as_deref()), ("<code>", Some("issuer")), "{error}");
    let error = BearerAuthenticator::builder()
        .issuer(Issuer::new("https://a.test").hs256_base64(SECRET))
        .issuer(Issuer::new("https://b.test"))
        .build()
        .unwrap_err();
    assert_eq!((&*error.file, error.line), ("<code>", 2), "the second issuer has no keys: {error}");
    assert!(error.message.contains("needs keys"), "{error}");
}
