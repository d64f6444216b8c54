//! Users in a directory: the LDAP user store (feature `ldap`) behind Basic authentication,
//! configured by a `[[user_store]]` table of the rule file (SPEC G3).
//!
//! ```text
//! # a directory with examples/ldap/seed.ldif loaded (dc=example,dc=com), then:
//! LDAP_URL=ldap://127.0.0.1:389 LDAP_BIND_PASSWORD=reader-secret cargo run --example ldap_store
//! curl -u alex:alex123 http://127.0.0.1:3002/api/me      # 200, roles admins,developers
//! curl -u sam:sam123 http://127.0.0.1:3002/api/admin     # 403: developers are not admins
//! curl -u alex:alex123 http://127.0.0.1:3002/api/admin   # 200
//! curl -u kim:kim123 http://127.0.0.1:3002/api/me        # 401: disabled in the directory
//! ```
//!
//! The service account `cn=api-reader,ou=services,dc=example,dc=com` searches people under
//! `ou=people` and their groups under `ou=groups`; its password comes from the variable
//! `LDAP_BIND_PASSWORD` (never from the rule file). Group names are roles; the rule file's
//! `[[role]]` tables say what each grants. A password is checked by binding as the user.
//! `ADDR` changes the listen address (default 127.0.0.1:3002).

use std::net::SocketAddr;

use axum::routing::get;
use axum::Router;
use tower_secure::config::Deployment;
use tower_secure::{Principal, SecureLayer};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The rule file, with the directory's URL put in.
fn rule_file(url: &str) -> String {
    format!(
        r#"
[authentication]
realm = "ldap-store-example"

[[resource.access_control]]
context = "/api/admin"
permissions = ["/permission/admin"]

[[user_store]]
type = "ldap"
url = "{url}"
bind_dn = "cn=api-reader,ou=services,dc=example,dc=com"
bind_password_env = "LDAP_BIND_PASSWORD"
user_base = "ou=people,dc=example,dc=com"
group_base = "ou=groups,dc=example,dc=com"
disabled_filter = "(employeeType=disabled)"
timeout_seconds = 3

[[role]]
name = "admins"
permissions = ["/permission/admin"]

[[role]]
name = "developers"
permissions = ["/permission/admin/manage/apis"]
"#
    )
}

async fn me(caller: Principal) -> String {
    format!("{} roles={}\n", caller.name(), caller.roles().join(","))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = std::env::var("LDAP_URL").unwrap_or_else(|_| "ldap://127.0.0.1:389".to_owned());
    let deployment = Deployment::from_toml_str("ldap_store.toml", &rule_file(&url))?;
    // Connects and binds the service account now: a wrong password fails here, naming the key.
    let stores = deployment.user_stores().await?.ok_or("the rule file has a [[user_store]] table")?;
    let layer = SecureLayer::builder().deployment(deployment).user_store(stores).build()?;
    let app = Router::new().route("/api/me", get(me)).route("/api/admin", get(me)).layer(layer);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3002".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("ldap_store example listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
