//! Rules with scopes and permissions, over real HTTP on 127.0.0.1 (SPEC C2): by default a
//! token caller is judged by its scopes alone (the rule's permissions must then follow from
//! the scopes' bindings, or the file does not load); `token_permissions = "check"` also
//! checks the token user's permissions, and refuses a token without a user.
//!
//! Tokens are HS256 JWTs signed here with `jsonwebtoken`; users are `common::users_toml`.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::json;
use tower_secure::AuthContext;

const ISS: &str = "https://idp.token-permissions.test";
const HMAC_SECRET: &[u8] = b"token-permissions-tests-hs256-secret-0123456789";
const VIEW_SCOPE: &str = "internal_identity_mgt_view";
const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";
const LOGIN: &str = "/permission/admin/login";

/// `/checked` needs the view scope and the view and login permissions, checked for tokens
/// too; `/scoped` needs the view scope and the view permission its binding implies.
fn deployment() -> String {
    format!(
        r#"
[[oauth2.issuer]]
issuer = "{ISS}"
# The tokens stand for users of the user store: their permissions are looked up.
subject_format = "qualified"

[[oauth2.issuer.key]]
algorithm = "HS256"
secret_base64 = "{secret}"

[[scope]]
name = "{VIEW_SCOPE}"
permissions = ["{VIEW}"]

[[resource.access_control]]
context = "/checked"
scope = ["{VIEW_SCOPE}"]
permissions = ["{VIEW}", "{LOGIN}"]
token_permissions = "check"

[[resource.access_control]]
context = "/scoped"
scope = ["{VIEW_SCOPE}"]
permissions = ["{VIEW}"]
"#,
        secret = STANDARD.encode(HMAC_SECRET),
    )
}

fn token(claims: serde_json::Value) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut claims = claims;
    claims["iss"] = json!(ISS);
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 600);
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(HMAC_SECRET)).unwrap()
}

/// A user's token with `scope`.
fn user_token(user: &str, scope: &str) -> String {
    token(json!({"sub": user, "scope": scope, "client_id": "web-app"}))
}

async fn serve() -> String {
    let app = Router::new()
        .fallback(|ctx: AuthContext| async move { ctx.principal().map(|p| p.name().to_string()).unwrap_or_default() })
        .layer(common::layer(&deployment()));
    common::serve(app).await
}

enum Auth<'a> {
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

/// The status, the `WWW-Authenticate` header and the body of `GET path`.
async fn get(base: &str, path: &str, auth: Auth<'_>) -> (u16, Option<String>, String) {
    let request = common::client().get(format!("{base}{path}"));
    let request = match auth {
        Auth::Bearer(token) => request.bearer_auth(token),
        Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
    };
    let response = request.send().await.expect("no response");
    let status = response.status().as_u16();
    let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
    (status, challenge, response.text().await.unwrap())
}

// SPEC C2: with `token_permissions = "check"` a token needs the scope and its user the
// rule's permissions: alex (view and login) passes, sam (view only) and bob (login only)
// are refused although their tokens carry the scope.
#[tokio::test]
async fn checked_rule_needs_scope_and_user_permissions() {
    let base = serve().await;
    let alex = user_token("alex", VIEW_SCOPE);
    assert_eq!(get(&base, "/checked", Auth::Bearer(&alex)).await, (200, None, "alex".to_owned()));
    for user in ["SECONDARY/sam", "bob"] {
        let with_scope = user_token(user, VIEW_SCOPE);
        let (status, challenge, _) = get(&base, "/checked", Auth::Bearer(&with_scope)).await;
        assert_eq!(status, 403, "{user}'s token carries the scope, {user} lacks a permission");
        // The scope is there: the refusal is not an `insufficient_scope` one.
        assert!(!challenge.unwrap_or_default().contains("insufficient_scope"), "{user}");
    }
    // The scope is still required.
    let alex_openid = user_token("alex", "openid");
    let (status, challenge, _) = get(&base, "/checked", Auth::Bearer(&alex_openid)).await;
    assert_eq!(status, 403);
    assert!(challenge.is_some_and(|c| c.contains("error=\"insufficient_scope\"")), "alex's token without the scope");
    // Basic callers: the scope's binding and the permissions, as on any rule.
    assert_eq!(get(&base, "/checked", Auth::Basic("alex", "alex123")).await.0, 200);
    assert_eq!(get(&base, "/checked", Auth::Basic("SECONDARY/sam", "sam123")).await.0, 403);
}

// SPEC C2: with `token_permissions = "check"` a token without a user is refused: a
// client-credentials token (`sub` is its client) and a token whose `sub` is no user here,
// both carrying the scope.
#[tokio::test]
async fn checked_rule_refuses_tokens_without_a_user() {
    let base = serve().await;
    let client = token(json!({"sub": "reports-job", "client_id": "reports-job", "scope": VIEW_SCOPE}));
    assert_eq!(get(&base, "/checked", Auth::Bearer(&client)).await.0, 403, "client credentials");
    let stranger = user_token("nobody-here", VIEW_SCOPE);
    assert_eq!(get(&base, "/checked", Auth::Bearer(&stranger)).await.0, 403, "no such user");
    // The control: the same tokens pass a rule that judges tokens by their scopes.
    assert_eq!(get(&base, "/scoped", Auth::Bearer(&client)).await.0, 200, "client credentials, scopes only");
    assert_eq!(get(&base, "/scoped", Auth::Bearer(&stranger)).await.0, 200, "no such user, scopes only");
}

// SPEC C2: by default a token's scopes stand for the permissions they were issued against:
// on `/scoped` (whose permission the scope's binding implies) bob's token with the scope
// passes although bob does not hold the view permission, and a token without it does not.
#[tokio::test]
async fn default_rule_judges_tokens_by_scopes_alone() {
    let base = serve().await;
    let bob = user_token("bob", VIEW_SCOPE);
    assert_eq!(get(&base, "/scoped", Auth::Bearer(&bob)).await, (200, None, "bob".to_owned()));
    let bob_openid = user_token("bob", "openid");
    assert_eq!(get(&base, "/scoped", Auth::Bearer(&bob_openid)).await.0, 403);
    // Basic bob holds neither the binding nor the permission.
    assert_eq!(get(&base, "/scoped", Auth::Basic("bob", "bob123")).await.0, 403);
}
