//! Users in a database: the SQL user store (feature `sql`) on a SQLite file or PostgreSQL,
//! behind Basic authentication (SPEC G2).
//!
//! ```text
//! cargo run --example sql_store                       # SQLite: target/sql-store-example/users.db
//! DATABASE_URL_FILE=/run/secrets/db-url cargo run --example sql_store   # postgres://... in a file
//! curl -u alex:alex123 http://127.0.0.1:3001/api/me      # 200, roles viewer
//! curl -u alex:alex123 http://127.0.0.1:3001/api/admin   # 403: viewer is not admin
//! curl -u admin:admin123 http://127.0.0.1:3001/api/admin # 200
//! ```
//!
//! The store creates its tables (`identity::SQL_SCHEMA`) when they are missing; when the
//! user table is empty the example adds two demo users, `alex` (role `viewer`) and `admin`
//! (role `admin`, which grants `/permission/admin`), with argon2id hashes. The database URL
//! comes from the file named by `DATABASE_URL_FILE` (a URL with a password stays out of
//! the environment and the command line), else from `DATABASE_URL`, else the SQLite file
//! above. `ADDR` changes the listen address (default 127.0.0.1:3001).

use std::net::SocketAddr;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use axum::routing::get;
use axum::Router;
use tower_secure::code::AccessRule;
use tower_secure::config::Deployment;
use tower_secure::identity::SqlUserStore;
use tower_secure::{Principal, SecureLayer};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The database URL: `DATABASE_URL_FILE`'s content, `DATABASE_URL`, or a SQLite file.
fn database_url() -> Result<String, Error> {
    if let Some(path) = std::env::var_os("DATABASE_URL_FILE") {
        return Ok(std::fs::read_to_string(path)?.trim().to_owned());
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        return Ok(url);
    }
    let dir = std::path::Path::new("target/sql-store-example");
    std::fs::create_dir_all(dir)?;
    Ok(format!("sqlite://{}", dir.join("users.db").display()))
}

fn hash(password: &str) -> Result<String, Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Ok(Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| e.to_string())?.to_string())
}

/// Adds the demo users and roles when the user table is empty.
async fn seed_demo_users(url: &str) -> Result<(), Error> {
    let statements = [
        "INSERT INTO ts_role (name) VALUES ('viewer'), ('admin')".to_owned(),
        "INSERT INTO ts_role_permission (role_name, permission) VALUES \
         ('viewer', '/permission/admin/login'), ('admin', '/permission/admin')"
            .to_owned(),
        format!(
            "INSERT INTO ts_user (name, password_hash) VALUES ('alex', '{}'), ('admin', '{}')",
            hash("alex123")?,
            hash("admin123")?
        ),
        "INSERT INTO ts_user_role (user_name, role_name) VALUES ('alex', 'viewer'), ('admin', 'admin')".to_owned(),
    ];
    let count = "SELECT COUNT(*) FROM ts_user";
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await?;
        let (users,): (i64,) = sqlx::query_as(count).fetch_one(&pool).await?;
        if users == 0 {
            for statement in &statements {
                sqlx::query(statement).execute(&pool).await?;
            }
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await?;
        let (users,): (i64,) = sqlx::query_as(count).fetch_one(&pool).await?;
        if users == 0 {
            for statement in &statements {
                sqlx::query(statement).execute(&pool).await?;
            }
        }
        pool.close().await;
    }
    Ok(())
}

async fn me(caller: Principal) -> String {
    format!("{} roles={}\n", caller.name(), caller.roles().join(","))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let url = database_url()?;
    // The tables first (the store creates them), then the demo users, then the store the
    // layer uses (its reference hash, for unknown users, comes from the seeded table).
    drop(SqlUserStore::builder(&url).create_schema(true).build().await?);
    seed_demo_users(&url).await?;
    let store = SqlUserStore::builder(&url).build().await?;

    let deployment = Deployment::builder()
        .realm("sql-store-example")
        .rule(AccessRule::new("/api/admin").permission("/permission/admin"))
        .build()?;
    let layer = SecureLayer::builder().deployment(deployment).user_store(store).build()?;
    let app = Router::new().route("/api/me", get(me)).route("/api/admin", get(me)).layer(layer);

    let addr = std::env::var("ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("sql_store example listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
    Ok(())
}
