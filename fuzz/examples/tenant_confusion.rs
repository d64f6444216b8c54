//! Shows what finding `name-roundtrip` (regressions/qualified_name/) does end to end: the
//! token endpoint writes `sub` as the canonical form of the user name, and for the
//! super-tenant user `bob@mail.com` that form is `bob@mail.com`, which the bearer handler
//! parses as user `bob` of tenant `mail.com`. The token is refused in its own tenant and
//! accepted in tenant `mail.com`, with the scopes its real owner was granted.
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example tenant_confusion
#![forbid(unsafe_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;
use tower_secure::config::{load_clients, load_users, Deployment};
use tower_secure::oauth2::TokenServer;
use tower_secure::SecureLayer;
use tower_secure_fuzz::drive::{runtime, send};
use tower_secure_fuzz::fixtures::cheap_hash;

const VIEW: &str = "/permission/admin/manage/identity/identitymgt/view";

fn main() {
    let users = format!(
        "[[role]]\nname = \"viewer\"\npermissions = [\"{VIEW}\"]\n\n\
         [[user]]\nname = \"bob@mail.com@carbon.super\"\npassword = \"{}\"\nroles = [\"viewer\"]\n\n\
         [[user]]\nname = \"bob@mail.com\"\npassword = \"{}\"\n\n\
         [[client]]\nid = \"app\"\nsecret = \"{}\"\n",
        cheap_hash("super-bob-pw"),
        cheap_hash("tenant-bob-pw"),
        cheap_hash("app-secret")
    );
    let deployment_text = format!(
        "[oauth2_server]\nissuer = \"https://as.test\"\n\n[[oauth2_server.key]]\nkid = \"k\"\nalgorithm = \"HS256\"\nsecret_base64 = \"{}\"\n\n\
         [[scope]]\nname = \"view\"\npermissions = [\"{VIEW}\"]\n\n\
         [[resource.access_control]]\ncontext = \"/api/view\"\nscope = \"view\"\n",
        STANDARD.encode([7u8; 32])
    );
    let deployment = Deployment::from_toml_str("d.toml", &deployment_text).unwrap();
    let tokens = TokenServer::builder()
        .deployment(&deployment)
        .user_store(load_users("u.toml", &users).unwrap())
        .clients(load_clients("u.toml", &users).unwrap())
        .build()
        .unwrap();
    let layer = SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    // The super-tenant user bob@mail.com asks for a token (password grant).
    let request = http::Request::post("/oauth2/token")
        .header(AUTHORIZATION, format!("Basic {}", STANDARD.encode("app:app-secret")))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(
            "grant_type=password&username=bob%40mail.com%40carbon.super&password=super-bob-pw&scope=view",
        ))
        .unwrap();
    let response = runtime().block_on(tokens.router().oneshot(request)).unwrap();
    let body = runtime().block_on(response.into_body().collect()).unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    println!("token response: scope={}", json["scope"]);
    let token = json["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    println!("claims: {}", String::from_utf8_lossy(&claims));
    let mut statuses = Vec::new();
    for path in ["/api/view", "/t/mail.com/api/view"] {
        let request = http::Request::get(path).header(AUTHORIZATION, format!("Bearer {token}")).body(()).unwrap();
        let outcome = send(&layer, request);
        let caller = outcome.caller().map(|p| format!("{:?}", p.name()));
        println!("GET {path} -> {} caller={caller:?}", outcome.status);
        statuses.push(outcome.code());
    }
    if statuses == [403, 200] {
        println!("the token of super-tenant user bob@mail.com works in tenant mail.com, not in its own");
        std::process::exit(1);
    }
    println!("no confusion");
}
