//! User stores over real HTTP on 127.0.0.1: userstore domains routed by `UserStores`
//! (SPEC G1), Basic through `SecureLayer`.

mod common;

use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use tower_secure::code::Users;
use tower_secure::config::Deployment;
use tower_secure::identity::{Permission, Principal, QualifiedName, UserRecord, UserStore, UserStoreError, UserStores};
use tower_secure::{async_trait, SecureLayer};

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

async fn whoami(p: Principal) -> String {
    let mut roles: Vec<&str> = p.roles().iter().map(String::as_str).collect();
    roles.sort_unstable();
    format!("{}|{}|{}", p.name().domain(), p.name().user(), roles.join(","))
}

const RULES: &str = r#"
[[resource.access_control]]
context = "/admin"
permissions = ["/permission/admin"]
"#;

async fn serve(store: impl UserStore) -> String {
    let deployment = Deployment::from_toml_str("deployment.toml", RULES).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(store).build().unwrap();
    common::serve(Router::new().route("/whoami", get(whoami)).route("/admin", get(whoami)).layer(layer)).await
}

async fn get_as(base: &str, path: &str, user: &str, password: &str) -> (StatusCode, String) {
    let response = common::client()
        .get(format!("{base}{path}"))
        .header(AUTHORIZATION, basic(user, password))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// PRIMARY: alex/alex123 (admin); SECONDARY: alex/sec123 (viewer), sam/sam123.
fn domains() -> UserStores {
    let h = common::cheap_hash;
    let primary = Users::builder()
        .role("admin", ["/permission/admin"])
        .user("alex", h("alex123"), ["admin"])
        .build()
        .unwrap()
        .store;
    let secondary = Users::builder()
        .role("viewer", ["/permission/admin/login"])
        .user("SECONDARY/alex", h("sec123"), ["viewer"])
        .user("SECONDARY/sam", h("sam123"), ["viewer"])
        .build()
        .unwrap()
        .store;
    UserStores::builder().primary(primary).domain("SECONDARY", secondary).build().unwrap()
}

// SPEC G1: `SECONDARY/alex` is the secondary store's alex, `alex` PRIMARY's; each has its
// own password and roles, and neither password works for the other.
#[tokio::test]
async fn g1_qualified_names_go_to_their_domain() {
    let base = serve(domains()).await;
    assert_eq!(get_as(&base, "/whoami", "alex", "alex123").await, (StatusCode::OK, "PRIMARY|alex|admin".into()));
    assert_eq!(
        get_as(&base, "/whoami", "SECONDARY/alex", "sec123").await,
        (StatusCode::OK, "SECONDARY|alex|viewer".into())
    );
    // Domains are case-insensitive, as in every user name.
    assert_eq!(get_as(&base, "/whoami", "secondary/sam", "sam123").await.0, StatusCode::OK);
    assert_eq!(get_as(&base, "/whoami", "alex", "sec123").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&base, "/whoami", "SECONDARY/alex", "alex123").await.0, StatusCode::UNAUTHORIZED);
    // Roles come from the domain's own store.
    assert_eq!(get_as(&base, "/admin", "alex", "alex123").await.0, StatusCode::OK);
    assert_eq!(get_as(&base, "/admin", "SECONDARY/alex", "sec123").await.0, StatusCode::FORBIDDEN);
    // `sam` exists only in SECONDARY: unqualified, he is PRIMARY's, and PRIMARY has none.
    assert_eq!(get_as(&base, "/whoami", "sam", "sam123").await.0, StatusCode::UNAUTHORIZED);
}

// SPEC G1: a domain no store serves is an unknown user (401), never PRIMARY's user of the
// same name, with the right password or not.
#[tokio::test]
async fn g1_unknown_domain_is_an_unknown_user() {
    let base = serve(domains()).await;
    for user in ["OTHER/alex", "PRIMARY2/alex", "SECONDARYX/alex"] {
        assert_eq!(get_as(&base, "/whoami", user, "alex123").await.0, StatusCode::UNAUTHORIZED, "{user}");
    }
    // Only PRIMARY is served: SECONDARY names are unknown, PRIMARY ones work.
    let only_primary = Users::builder().user("alex", common::cheap_hash("alex123"), Vec::<String>::new()).build();
    let base = serve(UserStores::builder().primary(only_primary.unwrap().store).build().unwrap()).await;
    assert_eq!(get_as(&base, "/whoami", "SECONDARY/alex", "alex123").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&base, "/whoami", "PRIMARY/alex", "alex123").await.0, StatusCode::OK);
}

/// A store that always fails, or answers for another domain than asked.
struct Broken {
    lie: bool,
}

#[async_trait]
impl UserStore for Broken {
    async fn find_user(&self, _: &QualifiedName) -> Result<Option<UserRecord>, UserStoreError> {
        if !self.lie {
            return Err(UserStoreError("backend down".into()));
        }
        let admin = QualifiedName::parse("alex").unwrap();
        let permissions = [Permission::parse("/permission/admin").unwrap()].into_iter().collect();
        Ok(Some(UserRecord {
            name: admin,
            password_hash: Some(common::cheap_hash("x")),
            roles: vec!["admin".into()],
            permissions,
            disabled: false,
        }))
    }
}

// SPEC G1, G5: a failing secondary store is 503 with Retry-After for its own domain only;
// a store that answers with a user of another domain is refused (503), never let in.
#[tokio::test]
async fn g1_a_domain_fails_alone_and_cannot_speak_for_another() {
    let primary = Users::builder().user("alex", common::cheap_hash("alex123"), Vec::<String>::new()).build();
    let stores = UserStores::builder()
        .primary(primary.unwrap().store)
        .domain("DOWN", Broken { lie: false })
        .domain("LIAR", Broken { lie: true })
        .build()
        .unwrap();
    let base = serve(stores).await;
    for user in ["DOWN/alex", "LIAR/alex"] {
        let response =
            common::client().get(format!("{base}/admin")).header(AUTHORIZATION, basic(user, "x")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{user}");
        assert!(response.headers().contains_key(RETRY_AFTER), "{user}");
    }
    assert_eq!(get_as(&base, "/whoami", "alex", "alex123").await.0, StatusCode::OK);
}
