//! Several instances as several processes (SPEC H2, H3, H5): examples/shared_state.rs,
//! the quickstart's API with its token server on a shared state backend (its `[state]`
//! table, the URL from the environment), started as separate processes on 127.0.0.1
//! against one private redis-server, and again against one private PostgreSQL
//! (tests/common/servers.rs); every request over real HTTP.

mod common;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use common::examples::{start_example_with, Server};
use common::servers::{Postgres, Redis};

const API: &str = "/api/users/v1/42/challenges";

/// The server the instances share.
enum Backend {
    Redis(Redis),
    Postgres(Postgres),
    /// A SQLite file in this directory.
    Sqlite(tempfile::TempDir),
}

impl Backend {
    async fn redis() -> Backend {
        Backend::Redis(tokio::task::spawn_blocking(Redis::start).await.unwrap())
    }

    async fn postgres() -> Backend {
        Backend::Postgres(tokio::task::spawn_blocking(Postgres::start).await.unwrap())
    }

    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn url(&self) -> String {
        match self {
            Backend::Redis(redis) => redis.url(),
            Backend::Postgres(postgres) => postgres.url(),
            Backend::Sqlite(dir) => format!("sqlite://{}", dir.path().join("state.db").display()),
        }
    }

    fn pause(&mut self) {
        match self {
            Backend::Redis(redis) => tokio::task::block_in_place(|| redis.pause()),
            Backend::Postgres(postgres) => tokio::task::block_in_place(|| postgres.pause()),
            Backend::Sqlite(_) => unreachable!("a file cannot be paused"),
        }
    }

    fn resume(&mut self) {
        match self {
            Backend::Redis(redis) => tokio::task::block_in_place(|| redis.resume()),
            Backend::Postgres(postgres) => tokio::task::block_in_place(|| postgres.resume()),
            Backend::Sqlite(_) => unreachable!("a file cannot be paused"),
        }
    }
}

fn instance(backend: &Backend) -> (Server, String) {
    start_example_with("shared_state", &[], &[("STATE_URL", &backend.url()), ("RUST_LOG", "warn")])
}

/// An instance whose layer has a user store of its own (`LAYER_STORE=1`).
fn instance_with_own_store(backend: &Backend) -> (Server, String) {
    let env = [("STATE_URL", backend.url()), ("RUST_LOG", "warn".to_owned()), ("LAYER_STORE", "1".to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    start_example_with("shared_state", &[], &env)
}

/// POSTs a form to the token server with the quickstart's client.
async fn post(http: &reqwest::Client, base: &str, path: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = http
        .post(format!("{base}{path}"))
        .basic_auth("quickstart-client", Some("quickstart-secret"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// alex's tokens (password grant): (access token, refresh token).
async fn login(http: &reqwest::Client, base: &str) -> (String, String) {
    let form = [
        ("grant_type", "password"),
        ("username", "alex"),
        ("password", "alex123"),
        ("scope", "internal_identity_mgt_view"),
    ];
    let (status, body) = post(http, base, "/oauth2/token", &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (body["access_token"].as_str().unwrap().to_owned(), body["refresh_token"].as_str().unwrap().to_owned())
}

async fn refresh(http: &reqwest::Client, base: &str, token: &str) -> (StatusCode, Value) {
    post(http, base, "/oauth2/token", &[("grant_type", "refresh_token"), ("refresh_token", token)]).await
}

async fn revoke(http: &reqwest::Client, base: &str, token: &str) -> StatusCode {
    post(http, base, "/oauth2/revoke", &[("token", token)]).await.0
}

async fn api(http: &reqwest::Client, base: &str, token: &str) -> StatusCode {
    http.get(format!("{base}{API}")).bearer_auth(token).send().await.unwrap().status()
}

/// Polls `api` on `base` until it answers `wanted`; how long that took. Fails after `limit`.
async fn until_status(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    wanted: StatusCode,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = api(http, base, token).await;
        if status == wanted {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still {status} after {limit:?}, waiting for {wanted}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// SPEC H3, H4: a token revoked on instance A is refused by instance B, which had it
// cached, within the stated bound (the backend announces the change; B also polls every
// 100 ms); A refuses it at once. The measured propagation is printed (p50, p99 of 20
// rounds).
async fn revocation_reaches_the_others(backend: Backend, name: &str) {
    let ((_a, a), (_b, b)) = (instance(&backend), instance(&backend));
    let http = common::client();
    let mut propagation = Vec::new();
    for _ in 0..20 {
        let (token, _) = login(&http, &a).await;
        assert_eq!(api(&http, &b, &token).await, StatusCode::OK, "B accepts A's token (and caches it)");
        assert_eq!(revoke(&http, &a, &token).await, StatusCode::OK);
        let revoked_at = Instant::now();
        assert_eq!(api(&http, &a, &token).await, StatusCode::UNAUTHORIZED, "A refuses at once");
        until_status(&http, &b, &token, StatusCode::UNAUTHORIZED, Duration::from_secs(3)).await;
        propagation.push(revoked_at.elapsed());
    }
    propagation.sort();
    let (p50, p99) = (propagation[10], propagation[19]);
    println!("{name}: revocation A -> B: p50 {p50:?}, p99 {p99:?} (20 rounds, announced; polled every 100 ms)");
    // Polling alone would give a median near 50-100 ms: the change is announced.
    assert!(p50 < Duration::from_millis(50), "{name}: p50 {p50:?}");
    assert!(p99 < Duration::from_secs(1), "{name}: p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_revocation_on_one_instance_reaches_the_others_redis() {
    revocation_reaches_the_others(Backend::redis().await, "redis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_revocation_on_one_instance_reaches_the_others_postgres() {
    revocation_reaches_the_others(Backend::postgres().await, "postgres").await;
}

// SPEC H3: a refresh token redeemed on A and replayed on B is refused (invalid_grant), and
// the replay ends the family: its newest tokens are refused on both instances.
async fn refresh_token_redeemed_once(backend: Backend) {
    let ((_a, a), (_b, b)) = (instance(&backend), instance(&backend));
    let http = common::client();
    let (_, first) = login(&http, &a).await;
    let (status, rotated) = refresh(&http, &a, &first).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let (access, second) = (rotated["access_token"].as_str().unwrap(), rotated["refresh_token"].as_str().unwrap());
    assert_eq!(api(&http, &b, access).await, StatusCode::OK);
    let (status, body) = refresh(&http, &b, &first).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
    for base in [&a, &b] {
        until_status(&http, base, access, StatusCode::UNAUTHORIZED, Duration::from_secs(3)).await;
        let (status, body) = refresh(&http, base, second).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "the family is gone: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_a_refresh_token_is_redeemed_once_across_instances_redis() {
    refresh_token_redeemed_once(Backend::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_a_refresh_token_is_redeemed_once_across_instances_postgres() {
    refresh_token_redeemed_once(Backend::postgres().await).await;
}

/// The quickstart's public client signs alex in on `base`'s login page and approves, with
/// reqwest as the browser (cookies carried by hand, the redirect read, not followed); the
/// code.
async fn authorization_code(base: &str, challenge: &str) -> String {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let query = format!(
        "response_type=code&client_id=quickstart-spa&redirect_uri={REDIRECT}&scope=internal_identity_mgt_view\
         &code_challenge={challenge}&code_challenge_method=S256"
    );
    let mut cookies: Vec<String> = Vec::new();
    let mut page = http.get(format!("{base}/oauth2/authorize?{query}")).send().await.unwrap();
    for extra in
        [[("username", "alex"), ("password", "alex123"), ("action", "login")].as_slice(), &[("action", "approve")]]
    {
        cookies.extend(
            page.headers()
                .get_all("set-cookie")
                .iter()
                .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned()),
        );
        let mut form = common::hidden_fields(&page.text().await.unwrap());
        form.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        page = http
            .post(format!("{base}/oauth2/authorize"))
            .header("cookie", cookies.join("; "))
            .form(&form)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    let location = page.headers()["location"].to_str().unwrap();
    let query = location.strip_prefix(&format!("{REDIRECT}?")).unwrap();
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "code").unwrap().1.into_owned()
}

/// The quickstart's public client's registered redirect URI.
const REDIRECT: &str = "http://127.0.0.1:3000/callback";

// SPEC D6, H3: an authorization code issued by instance A is redeemed on instance B (codes
// live in the shared backend); a second exchange on A is refused and revokes B's token on
// both instances.
async fn code_redeemed_once(backend: Backend) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let ((_a, a), (_b, b)) = (instance(&backend), instance(&backend));
    let http = common::client();
    let verifier = "a-verifier-of-forty-three-characters-or-more-0123456789";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier));
    let code = authorization_code(&a, &challenge).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier),
        ("client_id", "quickstart-spa"),
    ];
    let response = http.post(format!("{b}/oauth2/token")).form(&exchange).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    let access = token["access_token"].as_str().unwrap();
    assert_eq!(api(&http, &a, access).await, StatusCode::OK);
    let response = http.post(format!("{a}/oauth2/token")).form(&exchange).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST, "the code was used on B");
    for base in [&a, &b] {
        until_status(&http, base, access, StatusCode::UNAUTHORIZED, Duration::from_secs(3)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d6_an_authorization_code_is_redeemed_once_across_instances_redis() {
    code_redeemed_once(Backend::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d6_an_authorization_code_is_redeemed_once_across_instances_postgres() {
    code_redeemed_once(Backend::postgres().await).await;
}

async fn basic(http: &reqwest::Client, base: &str, password: &str) -> StatusCode {
    http.get(format!("{base}{API}")).basic_auth("alex", Some(password)).send().await.unwrap().status()
}

/// `count` wrong passwords for alex, sent at once, alternating between `a` and `b`.
async fn wrong_passwords(http: &reqwest::Client, a: &str, b: &str, count: usize) {
    let attempts = (0..count).map(|i| basic(http, if i % 2 == 0 { a } else { b }, "wrong"));
    for status in futures_util::future::join_all(attempts).await {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

/// Polls alex's cached Basic login on `base` (200) until it is refused (401); how long
/// that took. The instance that counted the 5th failure refuses at once, the other once
/// it synced (every 100 ms). Fails after 3 s.
async fn until_locked(http: &reqwest::Client, base: &str) -> Duration {
    let started = Instant::now();
    loop {
        let status = basic(http, base, "alex123").await;
        if status == StatusCode::UNAUTHORIZED {
            return started.elapsed();
        }
        assert_eq!(status, StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(3), "{base}: alex's cached login still works");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// SPEC H3: failed logins are counted across instances and concurrent requests: with
// max_failed_attempts = 5 (the quickstart's), 4 concurrent failures spread over A and B
// lock nothing, and a success starts the count again; then 5 lock the account on both,
// including the logins A and B have cached (within the sync bound), and the password
// grant. Counted per process (A 3, B 2 + 2), nothing would be locked.
async fn lockout_counts_failures_everywhere(backend: Backend) {
    let ((_a, a), (_b, b)) = (instance(&backend), instance(&backend));
    lockout_counts_failures_on(&a, &b).await;
}

/// The lockout check of `lockout_counts_failures_everywhere` on instances `a` and `b`.
async fn lockout_counts_failures_on(a: &str, b: &str) {
    let (a, b) = (a.to_owned(), b.to_owned());
    let http = common::client();
    assert_eq!(basic(&http, &b, "alex123").await, StatusCode::OK, "B caches alex's login");
    wrong_passwords(&http, &a, &b, 4).await;
    assert_eq!(basic(&http, &a, "alex123").await, StatusCode::OK, "4 failures: not locked (and now forgotten)");
    wrong_passwords(&http, &a, &b, 5).await;
    for (instance, base) in [("A", &a), ("B", &b)] {
        let locked_after = until_locked(&http, base).await;
        println!("lock -> {instance} refuses alex's cached login after {locked_after:?} (an uncached check: argon2 and the throttle)");
    }
    let form = [("grant_type", "password"), ("username", "alex"), ("password", "alex123")];
    let (status, body) = post(&http, &b, "/oauth2/token", &form).await;
    assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_a_lockout_counts_failures_on_every_instance_redis() {
    lockout_counts_failures_everywhere(Backend::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_a_lockout_counts_failures_on_every_instance_postgres() {
    lockout_counts_failures_everywhere(Backend::postgres().await).await;
}

// SPEC H3: the same when each instance's layer checks Basic logins against a store of its
// own (not the token server's): its failures are counted in the shared backend too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_a_lockout_counts_failures_on_every_instance_with_the_layers_own_store() {
    let backend = Backend::redis().await;
    let ((_a, a), (_b, b)) = (instance_with_own_store(&backend), instance_with_own_store(&backend));
    lockout_counts_failures_on(&a, &b).await;
}

// SPEC H2: an instance killed and started again forgets nothing: a token revoked before
// stays refused, another stays valid, and a refresh token issued before still works.
async fn restarted_instance_forgets_nothing(backend: Backend) {
    let http = common::client();
    let (first, a) = instance(&backend);
    let (revoked, _) = login(&http, &a).await;
    let (kept, refresh_token) = login(&http, &a).await;
    assert_eq!(revoke(&http, &a, &revoked).await, StatusCode::OK);
    drop(first); // killed
    let (_again, a) = instance(&backend);
    assert_eq!(api(&http, &a, &revoked).await, StatusCode::UNAUTHORIZED, "revoked before the restart");
    assert_eq!(api(&http, &a, &kept).await, StatusCode::OK);
    let (status, body) = refresh(&http, &a, &refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_restarted_instance_forgets_nothing_redis() {
    restarted_instance_forgets_nothing(Backend::redis().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_restarted_instance_forgets_nothing_postgres() {
    restarted_instance_forgets_nothing(Backend::postgres().await).await;
}

// SPEC H2: one durable node: the instance restarted on its SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_restarted_instance_forgets_nothing_sqlite() {
    restarted_instance_forgets_nothing(Backend::sqlite()).await;
}

// SPEC H4, H5: the backend paused (SIGSTOP): cached decisions and the introspection of an
// access token still answer at once (they read the local replica); the token endpoint answers 503 within the
// backend's timeout (0.5 s) instead of hanging, and so does an uncached Basic login (its
// failure could not be counted); cached decisions on tokens of this issuer, cached Basic
// logins and introspection turn 503 once the replica is older than its bound (3 s); continued,
// everything answers again. Returns the instance, its URL and a token issued before.
async fn paused_backend_fails_closed(backend: &mut Backend, name: &str) -> (Server, String, String) {
    let (instance_a, a) = instance(backend);
    let http = common::client();
    let (token, _) = login(&http, &a).await;
    assert_eq!(api(&http, &a, &token).await, StatusCode::OK);
    assert_eq!(basic(&http, &a, "alex123").await, StatusCode::OK, "a cached Basic login");

    backend.pause();
    let paused_at = Instant::now();
    // Cached decisions read this process's replica: no round trip, so they still answer.
    assert_eq!(api(&http, &a, &token).await, StatusCode::OK, "{name}: a cached token needs no backend");
    let (status, body) = post(&http, &a, "/oauth2/introspect", &[("token", &token)]).await;
    assert_eq!((status, &body["active"]), (StatusCode::OK, &serde_json::json!(true)), "{name}: {body}");
    assert_eq!(basic(&http, &a, "alex123").await, StatusCode::OK, "{name}: a cached login needs no backend");
    assert!(paused_at.elapsed() < Duration::from_millis(500), "{name}: {:?}", paused_at.elapsed());
    assert_eq!(
        revoke(&http, &a, &token).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "{name}: a revocation cannot be stored"
    );
    assert!(paused_at.elapsed() < Duration::from_millis(2500), "{name}: {:?}", paused_at.elapsed());
    let form = [("grant_type", "password"), ("username", "alex"), ("password", "alex123")];
    let (status, _) = post(&http, &a, "/oauth2/token", &form).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}: a refresh grant cannot be stored");
    assert_eq!(basic(&http, &a, "wrong").await, StatusCode::SERVICE_UNAVAILABLE, "{name}: a failure cannot be counted");
    until_status(&http, &a, &token, StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(8)).await;
    let stale_after = paused_at.elapsed();
    println!("{name}: cached decision 503 after {stale_after:?} without the backend (bound 3 s)");
    // The last sync was at most 100 ms before the pause.
    assert!(stale_after > Duration::from_millis(2800), "{name}: {stale_after:?}: not before the bound");
    assert_eq!(basic(&http, &a, "alex123").await, StatusCode::SERVICE_UNAVAILABLE, "{name}: cached login, stale locks");
    let (status, body) = post(&http, &a, "/oauth2/introspect", &[("token", &token)]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{name}: introspection cannot say 'active': {body}");

    backend.resume();
    until_status(&http, &a, &token, StatusCode::OK, Duration::from_secs(10)).await;
    (instance_a, a, token)
}

// SPEC H5: PostgreSQL paused, then continued (see `paused_backend_fails_closed`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h5_a_paused_backend_fails_closed_postgres() {
    let mut backend = Backend::postgres().await;
    paused_backend_fails_closed(&mut backend, "postgres").await;
}

// SPEC H5: Redis paused, then continued; then restarted empty (a new epoch): tokens issued
// before are refused, new logins work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h5_a_paused_or_emptied_backend_fails_closed_redis() {
    let mut backend = Backend::redis().await;
    let (_a, a, token) = paused_backend_fails_closed(&mut backend, "redis").await;
    let http = common::client();
    let Backend::Redis(redis) = &mut backend else { unreachable!() };
    tokio::task::block_in_place(|| redis.restart());
    until_status(&http, &a, &token, StatusCode::UNAUTHORIZED, Duration::from_secs(10)).await;
    // New logins work once the second of the restart has passed.
    let deadline = Instant::now() + Duration::from_secs(10);
    let fresh = loop {
        let form = [
            ("grant_type", "password"),
            ("username", "alex"),
            ("password", "alex123"),
            ("scope", "internal_identity_mgt_view"),
        ];
        let (status, body) = post(&http, &a, "/oauth2/token", &form).await;
        if status == StatusCode::OK {
            break body["access_token"].as_str().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "no new login after the restart: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(api(&http, &a, &fresh).await, StatusCode::OK);
    assert_eq!(api(&http, &a, &token).await, StatusCode::UNAUTHORIZED, "nothing from before comes back");
}
