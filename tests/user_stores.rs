//! User stores over real HTTP on 127.0.0.1: userstore domains routed by `UserStores`
//! (SPEC G1), Basic through `SecureLayer`.

mod common;

use axum::routing::get;
use axum::Router;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use tower_secure::code::Users;
use tower_secure::config::Deployment;
use tower_secure::identity::{Permission, QualifiedName, UserRecord, UserStore, UserStoreError, UserStores};
use tower_secure::{async_trait, SecureLayer};

use common::stores::{basic, password_grant, token_api, whoami};

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
        let permissions = [Permission::parse("/permission/admin").unwrap()];
        Ok(Some(
            UserRecord::new(admin).password_hash(common::cheap_hash("x")).roles(["admin"]).permissions(permissions),
        ))
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

// ---------------------------------------------------------------------------------------
// SQL (SPEC G2, G5): PostgreSQL through tests/common/servers.rs, and a SQLite file
// ---------------------------------------------------------------------------------------

use std::time::{Duration, Instant};

use common::servers::Postgres;
use tower_secure::identity::{SqlQueries, SqlUserStore};

/// An argon2id hash at argon2's default cost (19 MiB, t = 2): one verification takes
/// milliseconds, so timing differences of skipped work show.
fn real_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"user-store-tests").unwrap();
    argon2::Argon2::default().hash_password(password.as_bytes(), &salt).unwrap().to_string()
}

/// alex/alex123 (admin, viewer), bob/bob123 (viewer), dave/dave123 (admin, disabled),
/// nopw (no password), tina@example.com/tina123 (example.com's admin), and `extra` more
/// users `u0`.. with password `pw` (for timing).
fn seed(extra: usize) -> String {
    let h = common::cheap_hash;
    let mut sql = format!(
        "INSERT INTO ts_user (name, password_hash, disabled) VALUES \
           ('alex', '{alex}', FALSE), ('bob', '{bob}', FALSE), ('dave', '{dave}', TRUE), ('nopw', NULL, FALSE);
         INSERT INTO ts_user (tenant, name, password_hash) VALUES ('example.com', 'tina', '{tina}');
         INSERT INTO ts_role (name) VALUES ('admin'), ('viewer');
         INSERT INTO ts_role (tenant, name) VALUES ('example.com', 'admin');
         INSERT INTO ts_role_permission (role_name, permission) VALUES
           ('admin', '/permission/admin'), ('viewer', '/permission/admin/login');
         INSERT INTO ts_role_permission (tenant, role_name, permission) VALUES ('example.com', 'admin', '/permission/admin');
         INSERT INTO ts_user_role (user_name, role_name) VALUES
           ('alex', 'admin'), ('alex', 'viewer'), ('bob', 'viewer'), ('dave', 'admin');
         INSERT INTO ts_user_role (tenant, user_name, role_name) VALUES ('example.com', 'tina', 'admin');\n",
        alex = h("alex123"),
        bob = h("bob123"),
        dave = h("dave123"),
        tina = h("tina123"),
    );
    if extra > 0 {
        let hash = real_hash("pw");
        let rows: Vec<String> = (0..extra).map(|i| format!("('u{i}', '{hash}')")).collect();
        sql.push_str(&format!("INSERT INTO ts_user (name, password_hash) VALUES {};\n", rows.join(", ")));
        // The reference hash is the first of the table: make it one of these.
        sql = sql.replacen(
            "INSERT INTO ts_user (name, password_hash, disabled)",
            &format!("INSERT INTO ts_user (name, password_hash) VALUES ('first', '{hash}');\nINSERT INTO ts_user (name, password_hash, disabled)"),
            1,
        );
    }
    sql
}

/// A PostgreSQL server with the schema (created by the store) and [`seed`].
async fn postgres_store(extra: usize) -> (Postgres, SqlUserStore) {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    // The schema exists before the seed; the store made for the test reads the seed.
    SqlUserStore::builder(pg.url()).create_schema(true).build().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    sqlx::raw_sql(&seed(extra)).execute(&pool).await.unwrap();
    pool.close().await;
    let store = SqlUserStore::builder(pg.url()).timeout(Duration::from_secs(1)).build().await.unwrap();
    (pg, store)
}

/// A SQLite file in `dir` with the schema (created by the store) and `seed_sql`, its users
/// of userstore domain `domain`.
async fn sqlite_store(dir: &std::path::Path, seed_sql: &str, domain: &str) -> SqlUserStore {
    let url = format!("sqlite://{}", dir.join("users.db").display());
    let store = SqlUserStore::builder(&url).create_schema(true).build().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql(seed_sql).execute(&pool).await.unwrap();
    pool.close().await;
    drop(store);
    SqlUserStore::builder(&url).domain(domain).build().await.unwrap()
}

async fn serve_with(store: impl UserStore, basic: &str) -> String {
    let deployment = Deployment::from_toml_str("deployment.toml", &format!("{RULES}\n{basic}")).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(store).build().unwrap();
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/admin", get(whoami))
        .route("/t/{tenant}/whoami", get(whoami))
        .layer(layer);
    common::serve(app).await
}

/// Basic against a seeded SQL store: permissions from roles, disabled users, users
/// without a password, tenants.
async fn check_seeded_store(store: SqlUserStore, backend: &str) {
    let base = serve_with(store, "").await;
    let ok = StatusCode::OK;
    assert_eq!(
        get_as(&base, "/whoami", "alex", "alex123").await,
        (ok, "PRIMARY|alex|admin,viewer".into()),
        "{backend}"
    );
    assert_eq!(get_as(&base, "/admin", "alex", "alex123").await.0, ok, "{backend}");
    assert_eq!(get_as(&base, "/whoami", "bob", "bob123").await, (ok, "PRIMARY|bob|viewer".into()), "{backend}");
    assert_eq!(get_as(&base, "/admin", "bob", "bob123").await.0, StatusCode::FORBIDDEN, "{backend}");
    // A store used alone serves PRIMARY: `SECONDARY/alex` is nobody, not PRIMARY's alex.
    for (user, password) in [
        ("bob", "alex123"),
        ("nobody", "bob123"),
        ("dave", "dave123"),
        ("nopw", ""),
        ("nopw", "x"),
        ("SECONDARY/alex", "alex123"),
    ] {
        assert_eq!(get_as(&base, "/whoami", user, password).await.0, StatusCode::UNAUTHORIZED, "{backend} {user}");
    }
    // Tenants: tina lives in example.com only, with that tenant's role.
    assert_eq!(
        get_as(&base, "/t/example.com/whoami", "tina@example.com", "tina123").await,
        (ok, "PRIMARY|tina|admin".into()),
        "{backend}"
    );
    assert_eq!(get_as(&base, "/whoami", "tina", "tina123").await.0, StatusCode::UNAUTHORIZED, "{backend}");
}

// SPEC G2: Basic over real HTTP against the SQL store on PostgreSQL (the schema created by
// the store): 200 with the permissions of the user's roles, 403 without them, 401 for a
// wrong password, an unknown or disabled user, a user without a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_basic_against_postgres() {
    let (_pg, store) = postgres_store(0).await;
    check_seeded_store(store, "postgres").await;
}

// SPEC G2: the same against a SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_basic_against_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path(), &seed(0), "PRIMARY").await;
    check_seeded_store(store, "sqlite").await;
}

// SPEC G2, G5: the queries can be replaced to read tables of one's own (WSO2's JDBC
// store); a replaced query that finds several users for one name is a store failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_query_overrides_read_own_tables() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("own.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let tables = format!(
        "CREATE TABLE people (realm TEXT, login TEXT, pw TEXT, active INTEGER);
         CREATE TABLE people_groups (realm TEXT, login TEXT, grp TEXT);
         CREATE TABLE group_rights (grp TEXT, right_path TEXT);
         INSERT INTO people VALUES ('carbon.super', 'ann', '{ann}', 1), ('carbon.super', 'old', '{old}', 0);
         INSERT INTO people VALUES ('carbon.super', 'twin', '{ann}', 1), ('carbon.super', 'twin', '{old}', 1);
         INSERT INTO people_groups VALUES ('carbon.super', 'ann', 'ops'), ('carbon.super', 'old', 'ops');
         INSERT INTO group_rights VALUES ('ops', '/permission/admin'), ('ops', 'not a permission');",
        ann = common::cheap_hash("ann123"),
        old = common::cheap_hash("old123"),
    );
    sqlx::raw_sql(&tables).execute(&pool).await.unwrap();
    let queries = SqlQueries::default()
        .find_user("SELECT pw, active = 0 FROM people WHERE realm = $1 AND login = $2")
        .user_roles("SELECT grp FROM people_groups WHERE realm = $1 AND login = $2")
        .user_permissions(
            "SELECT r.right_path FROM people_groups g JOIN group_rights r ON r.grp = g.grp \
             WHERE g.realm = $1 AND g.login = $2",
        );
    let store = SqlUserStore::builder(&url).query_overrides(queries).build().await.unwrap();
    let base = serve(store).await;
    // The row that is not a permission is left out; the rest is granted.
    assert_eq!(get_as(&base, "/admin", "ann", "ann123").await, (StatusCode::OK, "PRIMARY|ann|ops".into()));
    assert_eq!(get_as(&base, "/admin", "old", "old123").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&base, "/admin", "ann", "wrong").await.0, StatusCode::UNAUTHORIZED);
    // A query that matches two users for one name fails closed: 503, with either password.
    for password in ["ann123", "old123"] {
        assert_eq!(get_as(&base, "/whoami", "twin", password).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
}

// SPEC G1, G2: `SECONDARY/alex` goes to a SQLite file while PRIMARY is PostgreSQL; each
// domain's alex has its own password and roles; a store built for one domain is refused
// under another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g1_g2_secondary_in_sqlite_primary_in_postgres() {
    let (_pg, primary) = postgres_store(0).await;
    let dir = tempfile::tempdir().unwrap();
    let secondary_seed = format!(
        "INSERT INTO ts_user (name, password_hash) VALUES ('alex', '{alex}'), ('sam', '{sam}');
         INSERT INTO ts_role (name) VALUES ('partner');
         INSERT INTO ts_role_permission (role_name, permission) VALUES ('partner', '/permission/partner');
         INSERT INTO ts_user_role (user_name, role_name) VALUES ('alex', 'partner'), ('sam', 'partner');",
        alex = common::cheap_hash("lite123"),
        sam = common::cheap_hash("sam123"),
    );
    let secondary = sqlite_store(dir.path(), &secondary_seed, "SECONDARY").await;
    // A store of one domain cannot be mounted under another.
    let error = UserStores::builder().domain("PARTNERS", secondary.clone()).build().unwrap_err();
    assert!(error.to_string().contains(r#".domain("PARTNERS")"#), "{error}");
    let stores = UserStores::builder().primary(primary).domain("SECONDARY", secondary).build().unwrap();
    let base = serve(stores).await;
    assert_eq!(get_as(&base, "/admin", "alex", "alex123").await, (StatusCode::OK, "PRIMARY|alex|admin,viewer".into()));
    assert_eq!(
        get_as(&base, "/whoami", "SECONDARY/alex", "lite123").await,
        (StatusCode::OK, "SECONDARY|alex|partner".into())
    );
    assert_eq!(get_as(&base, "/admin", "SECONDARY/alex", "lite123").await.0, StatusCode::FORBIDDEN);
    assert_eq!(get_as(&base, "/whoami", "SECONDARY/alex", "alex123").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&base, "/whoami", "alex", "lite123").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&base, "/whoami", "SECONDARY/sam", "sam123").await.0, StatusCode::OK);
    assert_eq!(get_as(&base, "/whoami", "sam", "sam123").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(get_as(&base, "/whoami", "OTHER/alex", "alex123").await.0, StatusCode::UNAUTHORIZED);
}

/// Status, whether `Retry-After` was sent, and how long the request took. One client for
/// a whole test: building one loads the system's root certificates (about 20 ms here),
/// which would hide the differences a timing test looks for.
async fn timed_get(client: &reqwest::Client, base: &str, user: &str, password: &str) -> (StatusCode, bool, Duration) {
    let started = Instant::now();
    let response =
        client.get(format!("{base}/whoami")).header(AUTHORIZATION, basic(user, password)).send().await.unwrap();
    (response.status(), response.headers().contains_key(RETRY_AFTER), started.elapsed())
}

// SPEC G2: TLS to PostgreSQL through rustls on aws-lc, against a server that accepts TLS
// connections only: `sslmode=verify-full` with the test CA connects and serves Basic as
// without TLS; plain connections and a server certificate from another CA are refused
// when the store is built, and the error never shows the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_postgres_over_tls() {
    let (ca, certificate, key) = common::loopback_server_pki();
    let pg = tokio::task::spawn_blocking(move || Postgres::start_with_tls(&certificate, &key)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trusting = |ca: &str, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, ca).unwrap();
        format!("{}?sslmode=verify-full&sslrootcert={}", pg.url(), path.display())
    };
    let url = trusting(&ca, "ca.pem");
    SqlUserStore::builder(&url).create_schema(true).build().await.unwrap();
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(&seed(0)).execute(&pool).await.unwrap();
    pool.close().await;
    check_seeded_store(SqlUserStore::builder(&url).build().await.unwrap(), "postgres over TLS").await;
    let ssl_in_use = pg.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl");
    assert!(ssl_in_use.parse::<u32>().unwrap() >= 1, "{ssl_in_use}");

    let (other_ca, _, _) = common::loopback_server_pki();
    for (url, why) in
        [(format!("{}?sslmode=disable", pg.url()), "no TLS"), (trusting(&other_ca, "other.pem"), "other CA")]
    {
        let error = SqlUserStore::builder(&url).build().await.unwrap_err();
        println!("{why}: {error}");
        assert!(error.0.contains("cannot connect"), "{why}: {error}");
        assert!(!error.0.contains(Postgres::PASSWORD), "{why}: {error}");
    }
}

// SPEC G4: changes made in the database, behind the crate's back, reach cached logins
// within `cache_ttl_seconds`: a disabled user and a changed password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g4_database_changes_reach_cached_logins_within_the_ttl() {
    const TTL: Duration = Duration::from_secs(1);
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path(), &seed(0), "PRIMARY").await;
    let base = serve_with(store, "[authentication.basic]\ncache_ttl_seconds = 1").await;
    assert_eq!(get_as(&base, "/whoami", "alex", "alex123").await.0, StatusCode::OK);
    assert_eq!(get_as(&base, "/admin", "bob", "bob123").await.0, StatusCode::FORBIDDEN);
    let url = format!("sqlite://{}", dir.path().join("users.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let changes = format!(
        "UPDATE ts_user SET disabled = TRUE WHERE name = 'alex';
         UPDATE ts_user SET password_hash = '{}' WHERE name = 'bob';",
        common::cheap_hash("bob456")
    );
    sqlx::raw_sql(&changes).execute(&pool).await.unwrap();
    pool.close().await;
    tokio::time::sleep(TTL + Duration::from_millis(200)).await;
    assert_eq!(get_as(&base, "/whoami", "alex", "alex123").await.0, StatusCode::UNAUTHORIZED, "disabled");
    assert_eq!(get_as(&base, "/whoami", "bob", "bob123").await.0, StatusCode::UNAUTHORIZED, "old password");
    assert_eq!(get_as(&base, "/whoami", "bob", "bob456").await.0, StatusCode::OK, "new password");
}

// SPEC G5: PostgreSQL stopped: 503 with Retry-After within the timeout, never 401 (wrong
// password, unknown user) and never 200; SIGSTOPped: the same, bounded by the store's
// timeout; restarted: the store recovers on its own (its broken connections replaced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g5_postgres_down_is_503_and_recovers() {
    let (mut pg, store) = postgres_store(0).await;
    let base = serve_with(store, "[authentication.basic]\nstore_timeout_seconds = 3\nmax_failed_attempts = 0").await;
    let client = common::client();
    assert_eq!(get_as(&base, "/whoami", "bob", "bob123").await.0, StatusCode::OK);

    // Stopped: connections refused.
    tokio::task::block_in_place(|| pg.stop());
    for (user, password) in [("alex", "alex123"), ("alex", "wrong"), ("nobody", "x")] {
        let (status, retry_after, elapsed) = timed_get(&client, &base, user, password).await;
        println!("postgres stopped: {user}: {status} in {elapsed:?}");
        assert_eq!((status, retry_after), (StatusCode::SERVICE_UNAVAILABLE, true), "{user}/{password}");
        assert!(elapsed < Duration::from_millis(3500), "{user}: {elapsed:?}");
    }
    // Restarted on the same port with the same data: the store recovers by itself.
    tokio::task::block_in_place(|| pg.restart());
    let started = Instant::now();
    loop {
        let (status, _, _) = timed_get(&client, &base, "alex", "alex123").await;
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "while recovering");
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery after a restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("postgres restarted: first 200 after {:?}", started.elapsed());
    // Paused (SIGSTOP): nothing answers; the store's 1 s timeout answers 503.
    assert!(!pg.backend_pids().is_empty(), "no PostgreSQL backend to pause");
    tokio::task::block_in_place(|| pg.pause());
    let (status, retry_after, elapsed) = timed_get(&client, &base, "alex", "wrong").await;
    println!("postgres paused: {status} in {elapsed:?}");
    assert_eq!((status, retry_after), (StatusCode::SERVICE_UNAVAILABLE, true));
    assert!(elapsed < Duration::from_millis(2500), "{elapsed:?}");
    tokio::task::block_in_place(|| pg.resume());
    let started = Instant::now();
    loop {
        let (status, _, _) = timed_get(&client, &base, "alex", "wrong").await;
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "while recovering");
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery after a pause");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("postgres resumed: first answer after {:?}", started.elapsed());
    assert_eq!(get_as(&base, "/whoami", "bob", "bob123").await.0, StatusCode::OK);
}

// SPEC G5, F7: on each SQL backend an unknown user and a wrong password take the same
// time (the same three queries, then argon2 with the store's parameters or the dummy). The
// two kinds are sampled interleaved in rotating order and their medians compared with a
// generous factor, as in tests/basic_auth.rs: load slows both alike, while skipping the
// hash makes one 10x faster. Lockout is off so every sample verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g5_unknown_and_wrong_take_the_same_time() {
    const ROUNDS: usize = 15;
    const FACTOR: u32 = 3;
    let (_pg, postgres) = postgres_store(ROUNDS).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_store(dir.path(), &seed(ROUNDS), "PRIMARY").await;
    let settings = "[authentication.basic]\nmax_failed_attempts = 0\nhashes_per_second = 1000";
    for (backend, store) in [("postgres", postgres), ("sqlite", sqlite)] {
        // The look-up alone (three queries on loopback or a local file), in process.
        let mut lookups = Vec::new();
        for i in 0..50 {
            let name = QualifiedName::parse(if i % 2 == 0 { "alex" } else { "nobody" }).unwrap();
            let started = Instant::now();
            store.find_user(&name).await.unwrap();
            lookups.push(started.elapsed());
        }
        lookups.sort();
        println!("{backend} look-up median {:?} (50 find_user, known and unknown)", lookups[25]);
        let base = serve_with(store, settings).await;
        let client = common::client();
        // Warm the pool and the hash memory.
        timed_get(&client, &base, "first", "pw").await;
        let mut samples: [Vec<Duration>; 3] = Default::default();
        for round in 0..ROUNDS {
            for k in 0..2 {
                let kind = (round + k) % 2;
                let (status, _, elapsed) = match kind {
                    0 => timed_get(&client, &base, &format!("u{round}"), "wrong").await,
                    _ => timed_get(&client, &base, &format!("nobody{round}"), "pw").await,
                };
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{backend}");
                samples[kind].push(elapsed);
            }
            // A right password, first time (uncached), for the report.
            let (status, _, elapsed) = timed_get(&client, &base, &format!("u{round}"), "pw").await;
            assert_eq!(status, StatusCode::OK, "{backend}");
            samples[2].push(elapsed);
        }
        let [wrong, unknown, right] = samples.map(|mut v| {
            v.sort();
            v[v.len() / 2]
        });
        let mut cached = Vec::new();
        for _ in 0..ROUNDS {
            let (status, _, elapsed) = timed_get(&client, &base, "u0", "pw").await;
            assert_eq!(status, StatusCode::OK);
            cached.push(elapsed);
        }
        cached.sort();
        let cached = cached[ROUNDS / 2];
        println!(
            "{backend} medians: wrong {wrong:?}, unknown {unknown:?}, right (uncached) {right:?}; cached {cached:?}"
        );
        assert!(wrong > Duration::from_millis(5), "{backend}: verification too cheap to compare: {wrong:?}");
        assert!(unknown * FACTOR > wrong, "{backend}: unknown {unknown:?} vs wrong {wrong:?}");
        assert!(wrong * FACTOR > unknown, "{backend}: wrong {wrong:?} vs unknown {unknown:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Configuration: `[[user_store]]` tables of the rule file
// ---------------------------------------------------------------------------------------

// SPEC G1, G2: `[[user_store]]` tables build the same set in configuration: PRIMARY a
// users file (a path relative to the rule file), `DB` PostgreSQL with its URL (and
// password) in a file, `LITE` a SQLite file with its URL in an environment variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g1_g2_user_store_tables_in_the_rule_file() {
    let (pg, _) = postgres_store(0).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(conf.join("secrets")).unwrap();
    let users = format!(
        "[[role]]\nname = \"admin\"\npermissions = [\"/permission/admin\"]\n\n[[user]]\nname = \"alex\"\npassword = \"{}\"\nroles = [\"admin\"]\n",
        common::cheap_hash("file123")
    );
    std::fs::write(conf.join("users.toml"), users).unwrap();
    std::fs::write(conf.join("secrets/pg-url"), format!("{}\n", pg.url())).unwrap();
    let lite_seed = format!(
        "INSERT INTO ts_user (name, password_hash) VALUES ('alex', '{0}'), ('sam', '{0}');",
        common::cheap_hash("lite123")
    );
    let lite_dir = dir.path().join("lite");
    std::fs::create_dir_all(&lite_dir).unwrap();
    drop(sqlite_store(&lite_dir, &lite_seed, "PRIMARY").await);
    let lite_url = format!("sqlite://{}", lite_dir.join("users.db").display());
    std::env::set_var("TOWER_SECURE_TEST_LITE_URL", &lite_url);
    let rules = format!(
        "{RULES}
[[user_store]]
type = \"file\"
path = \"users.toml\"

[[user_store]]
domain = \"db\"
type = \"sql\"
url_file = \"secrets/pg-url\"
timeout_seconds = 2

[[user_store]]
domain = \"LITE\"
type = \"sql\"
url_env = \"TOWER_SECURE_TEST_LITE_URL\"
max_connections = 2
"
    );
    std::fs::write(conf.join("deployment.toml"), &rules).unwrap();
    let deployment = Deployment::from_file(conf.join("deployment.toml")).unwrap();
    assert!(deployment.has_user_stores());
    let stores = deployment.user_stores().await.unwrap().unwrap();
    assert_eq!(stores.domains().collect::<Vec<_>>(), ["DB", "LITE", "PRIMARY"]);
    let layer = SecureLayer::builder().deployment(deployment).user_store(stores).build().unwrap();
    let base =
        common::serve(Router::new().route("/whoami", get(whoami)).route("/admin", get(whoami)).layer(layer)).await;
    assert_eq!(get_as(&base, "/admin", "alex", "file123").await, (StatusCode::OK, "PRIMARY|alex|admin".into()));
    assert_eq!(get_as(&base, "/admin", "DB/alex", "alex123").await, (StatusCode::OK, "DB|alex|admin,viewer".into()));
    assert_eq!(get_as(&base, "/whoami", "LITE/alex", "lite123").await, (StatusCode::OK, "LITE|alex|".into()));
    for (user, password) in
        [("alex", "alex123"), ("DB/alex", "file123"), ("LITE/alex", "file123"), ("X/alex", "file123")]
    {
        assert_eq!(get_as(&base, "/whoami", user, password).await.0, StatusCode::UNAUTHORIZED, "{user}");
    }
}

/// The error a rule file's `[[user_store]]` tables give, at load or when built.
async fn store_error(tables: &str) -> tower_secure::config::ConfigError {
    match Deployment::from_toml_str("deployment.toml", tables) {
        Err(e) => e,
        Ok(deployment) => deployment.user_stores().await.expect_err("the tables should be refused"),
    }
}

// SPEC G1, G2: bad tables are refused naming file, line and key; a password never sits in
// the rule file, and an error never shows one.
#[tokio::test]
async fn g1_g2_user_store_tables_are_checked() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("[[user_store]]\ntype = \"nis\"\n", "type", 2, "unknown user store type; known: file, sql, ldap"),
        ("[[user_store]]\ntype = \"file\"\n", "type", 2, "needs `path`"),
        (
            "[[user_store]]\ntype = \"file\"\npath = \"u.toml\"\nurl = \"sqlite::memory:\"\n",
            "url",
            4,
            "a file user store does not take `url`",
        ),
        ("[[user_store]]\ntype = \"sql\"\nurl = \"sqlite::memory:\"\nuser_base = \"dc=x\"\n", "user_base", 4, "does not take"),
        ("[[user_store]]\ntype = \"sql\"\n", "type", 2, "exactly one of"),
        (
            "[[user_store]]\ntype = \"sql\"\nurl = \"sqlite::memory:\"\nurl_env = \"X\"\n",
            "type",
            2,
            "exactly one of",
        ),
        (
            "[[user_store]]\ntype = \"sql\"\nurl = \"postgres://app:hunter2@db/users\"\n",
            "url",
            3,
            "holds a password",
        ),
        ("[[user_store]]\ndomain = \"BAD DOMAIN\"\ntype = \"sql\"\nurl = \"sqlite::memory:\"\n", "domain", 2, "letters"),
        (
            "[[user_store]]\ntype = \"sql\"\nurl = \"sqlite::memory:\"\n\n[[user_store]]\ndomain = \"primary\"\ntype = \"sql\"\nurl = \"sqlite::memory:\"\n",
            "domain",
            6,
            "another [[user_store]]",
        ),
        ("[[user_store]]\ntype = \"sql\"\nurl_env = \"TOWER_SECURE_TEST_UNSET_VARIABLE\"\n", "url_env", 3, "is not set"),
        ("[[user_store]]\ntype = \"file\"\npath = \"/nonexistent/users.toml\"\n", "", 0, ""),
    ];
    for (tables, key, line, message) in cases {
        let error = store_error(tables).await;
        if key.is_empty() {
            continue; // only that it fails
        }
        assert_eq!(error.key.as_deref(), Some(*key), "{tables}: {error}");
        assert_eq!(error.line, *line, "{tables}: {error}");
        assert!(error.message.contains(message), "{tables}: {error}");
    }
    // A database that does not answer: the error names the key, never the password.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("url");
    let port = common::servers::free_port();
    std::fs::write(&secret, format!("postgres://app:hunter2@127.0.0.1:{port}/users")).unwrap();
    let tables = format!("[[user_store]]\ntype = \"sql\"\nurl_file = \"{}\"\ntimeout_seconds = 1\n", secret.display());
    let error = store_error(&tables).await;
    assert_eq!((error.key.as_deref(), error.line), (Some("url_file"), 3), "{error}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

// SPEC G1: the stores are built once; a reload that changes `[[user_store]]` is refused
// (restart to apply it), one that keeps them goes through.
#[tokio::test]
async fn g1_changed_user_store_tables_need_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("u.db").display());
    let tables = format!("[[user_store]]\ntype = \"sql\"\nurl = \"{url}\"\ncreate_schema = true\n");
    let deployment = Deployment::from_toml_str("deployment.toml", &tables).unwrap();
    let stores = deployment.user_stores().await.unwrap().unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(stores).build().unwrap();
    let reloader = layer.reloader();
    let same = format!("{RULES}\n{tables}");
    reloader.reload(Deployment::from_toml_str("deployment.toml", &same).unwrap()).unwrap();
    let changed = format!("{RULES}\n{}", tables.replace("create_schema = true", "max_connections = 3"));
    let error = reloader.reload(Deployment::from_toml_str("deployment.toml", &changed).unwrap()).unwrap_err();
    assert!(error.message.contains("[[user_store]] changed"), "{error}");
}

// ---------------------------------------------------------------------------------------
// The token endpoint's password grant against SQL stores
// ---------------------------------------------------------------------------------------

// SPEC G1, G2, G5: the password grant finds users in the SQL stores of their domains
// (PRIMARY PostgreSQL, SECONDARY SQLite), refuses wrong passwords, disabled users and
// unknown domains (400 invalid_grant), and answers 503 with Retry-After while PostgreSQL
// is down, while the SQLite domain keeps issuing; its tokens work on the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn g2_password_grant_against_sql_stores() {
    let (mut pg, primary) = postgres_store(0).await;
    let dir = tempfile::tempdir().unwrap();
    let seed_sql = format!(
        "INSERT INTO ts_user (name, password_hash) VALUES ('alex', '{0}'), ('sam', '{0}');",
        common::cheap_hash("lite123")
    );
    let secondary = sqlite_store(dir.path(), &seed_sql, "SECONDARY").await;
    let stores = UserStores::builder().primary(primary).domain("SECONDARY", secondary).build().unwrap();
    let base = token_api(stores).await;

    for (user, password) in [("alex", "alex123"), ("SECONDARY/alex", "lite123")] {
        let (status, _, body) = password_grant(&base, user, password).await;
        assert_eq!(status, StatusCode::OK, "{user}: {body}");
        let token = body["access_token"].as_str().unwrap();
        let response = common::client().get(format!("{base}/whoami")).bearer_auth(token).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{user}");
        let domain = if user.contains('/') { "SECONDARY" } else { "PRIMARY" };
        assert!(response.text().await.unwrap().starts_with(&format!("{domain}|alex|")), "{user}");
    }
    for (user, password) in
        [("alex", "lite123"), ("SECONDARY/alex", "alex123"), ("dave", "dave123"), ("OTHER/alex", "alex123")]
    {
        let (status, _, body) = password_grant(&base, user, password).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{user}");
    }
    tokio::task::block_in_place(|| pg.stop());
    let (status, retry_after, body) = password_grant(&base, "bob", "bob123").await;
    assert_eq!((status, retry_after), (StatusCode::SERVICE_UNAVAILABLE, true), "{body}");
    // The SQLite domain does not depend on PostgreSQL (sam's first grant: a look-up, not a
    // cached verification).
    let (status, _, body) = password_grant(&base, "SECONDARY/sam", "lite123").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
