//! Metrics (feature `metrics`, SPEC I4) end to end: a Prometheus recorder installed in this
//! process serves `/metrics` on a loopback port; real servers with the layer on 127.0.0.1
//! answer real requests; the scrape must move by exactly what was sent, with the documented
//! names and labels, and name no user, password or path.
//!
//! The global recorder can be installed once per process: every metric assertion lives in
//! this binary, in one test, on deltas between two scrapes.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use reqwest::header::AUTHORIZATION;
use reqwest::StatusCode;
use tower_secure::config::Deployment;
use tower_secure::identity::{SqlQueries, SqlUserStore, UserStores};
use tower_secure::state::{SqlState, StateBackend};
use tower_secure::SecureLayer;

/// Distinctive secrets and names: none of them may appear in a scrape.
const ALEX_PASSWORD: &str = "alex-Pw-8841";
const WRONG_PASSWORD: &str = "wrong-Pw-3317";
const BOB_PASSWORD: &str = "bob-Pw-5529";
const PATH: &str = "/api/metrics-secret-path";
const HMAC_SECRET: &[u8] = b"metrics test secret of 32 bytes!";

const RULES: &str = r#"
[[resource.access_control]]
context = "/api/**"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]
"#;

/// One scrape: `name{labels}` -> value, the text kept to search.
struct Scrape {
    samples: BTreeMap<String, f64>,
    text: String,
}

impl Scrape {
    async fn take(url: &str) -> Scrape {
        let text = common::client().get(url).send().await.unwrap().text().await.unwrap();
        let mut samples = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            samples.insert(series.to_owned(), value.parse().unwrap());
        }
        Scrape { samples, text }
    }

    /// The value of the series `name` whose labels are exactly `labels` (any order); 0 when
    /// absent.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        wanted.sort();
        self.samples
            .iter()
            .filter(|(series, _)| {
                let (series_name, rest) = series.split_once('{').unwrap_or((series, "}"));
                let mut have: Vec<String> =
                    rest.trim_end_matches('}').split(',').filter(|l| !l.is_empty()).map(str::to_owned).collect();
                have.sort();
                series_name == name && have == wanted
            })
            .map(|(_, value)| *value)
            .sum()
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

async fn get_status(url: &str, authorization: Option<&str>) -> StatusCode {
    let mut request = common::client().get(url);
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value);
    }
    request.send().await.unwrap().status()
}

/// A free loopback port for the exporter (bound, then released for it).
fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A SQLite user store in `dir`: alex (identity view), bob (login only).
async fn sqlite_users(dir: &std::path::Path) -> SqlUserStore {
    let url = format!("sqlite://{}", dir.join("users.db").display());
    drop(SqlUserStore::builder(&url).create_schema(true).build().await.unwrap());
    let seed = format!(
        "INSERT INTO ts_user (name, password_hash) VALUES ('alex', '{alex}'), ('bob', '{bob}');
         INSERT INTO ts_role (name) VALUES ('viewer'), ('everyone');
         INSERT INTO ts_role_permission (role_name, permission) VALUES
           ('viewer', '/permission/admin/manage/identity/identitymgt/view'), ('everyone', '/permission/admin/login');
         INSERT INTO ts_user_role (user_name, role_name) VALUES ('alex', 'viewer'), ('bob', 'everyone');",
        alex = common::cheap_hash(ALEX_PASSWORD),
        bob = common::cheap_hash(BOB_PASSWORD),
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::raw_sql(&seed).execute(&pool).await.unwrap();
    pool.close().await;
    SqlUserStore::builder(&url).build().await.unwrap()
}

/// An HS256 token of `https://idp.metrics.test` for `sub`.
fn token(sub: &str) -> String {
    let claims = serde_json::json!({
        "iss": "https://idp.metrics.test", "sub": sub, "aud": "api", "exp": 4_000_000_000u64,
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".to_owned());
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(HMAC_SECRET)).unwrap()
}

const DECISIONS: &str = "tower_secure_decisions_total";
const CACHE: &str = "tower_secure_credential_cache_lookups_total";
const STORE_COUNT: &str = "tower_secure_user_store_duration_seconds_count";
const STORE_ERRORS: &str = "tower_secure_user_store_errors_total";
const STATE_COUNT: &str = "tower_secure_state_backend_duration_seconds_count";
const KEY_FETCH_ERRORS: &str = "tower_secure_key_fetch_errors_total";

// SPEC I4: decisions by outcome, handler and rule; credential-cache hits and misses; user
// store and state backend calls (SQLite) with their latency and errors; a failing key
// fetch; all scraped over HTTP from a real Prometheus exporter, moved by exactly what was
// sent, and free of user names, passwords and request paths.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported() {
    // SPEC I4: the recorder first (the layer registers its counters when built and used).
    let exporter = free_port();
    PrometheusBuilder::new()
        .with_http_listener(exporter)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &[0.001, 0.01, 0.1, 1.0])
        .unwrap()
        .install()
        .unwrap();
    let scrape_url = format!("http://{exporter}/metrics");
    // The listener is spawned on this runtime: wait until it answers.
    let started = Instant::now();
    while common::client().get(&scrape_url).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "the exporter never answered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // SPEC I4: a Basic server over a SQLite store (PRIMARY) and a store whose query fails
    // (domain BROKEN).
    let dir = tempfile::tempdir().unwrap();
    let broken_url = format!("sqlite://{}", dir.path().join("broken.db").display());
    let broken = SqlUserStore::builder(&broken_url)
        .create_schema(true)
        .domain("BROKEN")
        .query_overrides(SqlQueries::default().find_user("SELECT password_hash, disabled FROM no_such_table"))
        .build()
        .await
        .unwrap();
    let stores =
        UserStores::builder().primary(sqlite_users(dir.path()).await).domain("BROKEN", broken).build().unwrap();
    let deployment = Deployment::from_toml_str("deployment.toml", RULES).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(stores).build().unwrap();
    let rule = layer.policy().rules()[0].origin().to_string();
    assert_eq!(rule, "deployment.toml:2");
    let basic_base = common::serve(Router::new().route(PATH, get(|| async { "ok" })).layer(layer)).await;

    // SPEC I4: a bearer server (an HMAC issuer) with a second issuer whose JWKS URL does not
    // answer: its background fetch fails.
    let dead = free_port();
    let bearer_rules = format!(
        r#"
[[oauth2.issuer]]
issuer = "https://idp.metrics.test"
audience = "api"
[[oauth2.issuer.key]]
kid = "k1"
algorithm = "HS256"
secret_base64 = "{secret}"

[[oauth2.issuer]]
issuer = "https://down.metrics.test"
jwks_uri = "http://{dead}/jwks"
"#,
        secret = STANDARD.encode(HMAC_SECRET)
    );
    let deployment = Deployment::from_toml_str("deployment.toml", &bearer_rules).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).build().unwrap();
    let bearer_base = common::serve(Router::new().route(PATH, get(|| async { "ok" })).layer(layer)).await;

    let before = Scrape::take(&scrape_url).await;

    // SPEC I4: allowed twice (a miss, then a hit), 401 without credentials, 401 for a wrong
    // password, 403, 503 from the failing store.
    let url = format!("{basic_base}{PATH}");
    let alex = basic("alex", ALEX_PASSWORD);
    assert_eq!(get_status(&url, Some(&alex)).await, StatusCode::OK);
    assert_eq!(get_status(&url, Some(&alex)).await, StatusCode::OK);
    assert_eq!(get_status(&url, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get_status(&url, Some(&basic("alex", WRONG_PASSWORD))).await, StatusCode::UNAUTHORIZED);
    assert_eq!(get_status(&url, Some(&basic("bob", BOB_PASSWORD))).await, StatusCode::FORBIDDEN);
    assert_eq!(get_status(&url, Some(&basic("BROKEN/eve", "eve-Pw-1"))).await, StatusCode::SERVICE_UNAVAILABLE);
    // A non-canonical path is refused before any rule applies.
    assert_eq!(get_status(&format!("{basic_base}/api//x"), Some(&alex)).await, StatusCode::BAD_REQUEST);

    // SPEC I4: one token twice (a miss, then a hit) on the secure default.
    let bearer_url = format!("{bearer_base}{PATH}");
    let bearer = format!("Bearer {}", token("carol"));
    assert_eq!(get_status(&bearer_url, Some(&bearer)).await, StatusCode::OK);
    assert_eq!(get_status(&bearer_url, Some(&bearer)).await, StatusCode::OK);

    // SPEC I4: a state backend on SQLite: created, one revocation, one lock look-up.
    let state_url = format!("sqlite://{}", dir.path().join("state.db").display());
    let state = SqlState::builder(&state_url).build().await.unwrap();
    state.revoke("jti-1", "client-1", 4_000_000_000).await.unwrap();
    assert_eq!(state.locked_until("nobody", 1).await.unwrap(), None);

    // The key fetch of the dead issuer has failed at least once by now (it starts at once).
    let started = Instant::now();
    let after = loop {
        let scrape = Scrape::take(&scrape_url).await;
        if scrape.value(KEY_FETCH_ERRORS, &[("source", "jwks_uri")]) >= 1.0 {
            break scrape;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no failed key fetch recorded:\n{}", scrape.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let delta = |name: &str, labels: &[(&str, &str)]| after.value(name, labels) - before.value(name, labels);

    // Decisions, by outcome, handler and rule.
    let decision =
        |outcome, handler, rule| delta(DECISIONS, &[("outcome", outcome), ("handler", handler), ("rule", rule)]);
    assert_eq!(decision("allowed", "basic", &rule), 2.0, "{}", after.text);
    assert_eq!(decision("unauthenticated", "none", &rule), 1.0, "{}", after.text);
    assert_eq!(decision("invalid_credentials", "basic", &rule), 1.0, "{}", after.text);
    assert_eq!(decision("forbidden", "basic", &rule), 1.0, "{}", after.text);
    assert_eq!(decision("unavailable", "basic", &rule), 1.0, "{}", after.text);
    assert_eq!(decision("invalid_request", "none", "none"), 1.0, "{}", after.text);
    assert_eq!(decision("allowed", "oauth2", "secure_default"), 2.0, "{}", after.text);
    let all_decisions: f64 = after
        .samples
        .iter()
        .filter(|(series, _)| series.starts_with(&format!("{DECISIONS}{{")))
        .map(|(series, value)| value - before.samples.get(series).copied().unwrap_or(0.0))
        .sum();
    assert_eq!(all_decisions, 9.0, "one decision per request, no more:\n{}", after.text);

    // Credential caches: alex's second request hit; alex's first, the wrong password,
    // bob and eve missed. The token missed once, then hit.
    assert_eq!(delta(CACHE, &[("cache", "basic"), ("result", "hit")]), 1.0, "{}", after.text);
    assert_eq!(delta(CACHE, &[("cache", "basic"), ("result", "miss")]), 4.0, "{}", after.text);
    assert_eq!(delta(CACHE, &[("cache", "bearer"), ("result", "hit")]), 1.0, "{}", after.text);
    assert_eq!(delta(CACHE, &[("cache", "bearer"), ("result", "miss")]), 1.0, "{}", after.text);

    // User store calls: one look-up per uncached login (alex, alex wrong, bob, eve), the
    // failing one counted as an error; the cached login asked nothing.
    let sql_find = [("backend", "sql"), ("operation", "find_user")];
    assert_eq!(delta(STORE_COUNT, &sql_find), 4.0, "{}", after.text);
    assert_eq!(delta(STORE_ERRORS, &sql_find), 1.0, "{}", after.text);
    assert!(after.text.contains("tower_secure_user_store_duration_seconds_bucket{"), "histogram buckets");

    // State backend calls, by operation.
    let state_op = |operation| delta(STATE_COUNT, &[("backend", "sql"), ("operation", operation)]);
    assert_eq!(state_op("create_tables"), 1.0, "{}", after.text);
    assert_eq!(state_op("revoke"), 1.0, "{}", after.text);
    assert_eq!(state_op("locked_until"), 1.0, "{}", after.text);
    assert_eq!(delta("tower_secure_state_backend_errors_total", &[("backend", "sql"), ("operation", "revoke")]), 0.0);

    // Help text for the metrics.
    assert!(after.text.contains("# HELP tower_secure_decisions_total "), "{}", after.text);

    // No user name, password, token or request path in the scrape.
    let token_text = token("carol");
    for secret in
        ["alex", "bob", "eve", "carol", ALEX_PASSWORD, WRONG_PASSWORD, BOB_PASSWORD, PATH, "/api", &token_text[..20]]
    {
        assert!(!after.text.contains(secret), "the scrape names {secret:?}:\n{}", after.text);
    }
}
