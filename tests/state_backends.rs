//! The state backends' conformance suite (SPEC H1, H2, H3, H5): the same checks against
//! the memory backend, a SQLite file, and real servers (tests/common/servers.rs, private
//! processes on 127.0.0.1): PostgreSQL and Redis. Revocations and watermarks, expiry
//! pruning, refresh rotation and replay, 20 tasks redeeming one refresh token, 50
//! concurrent failures locking at exactly the threshold, snapshot plus changes for a
//! replica; then two backends sharing one server, passwords, restarts (Redis forgets,
//! PostgreSQL and SQLite do not), and paused servers.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tower_secure::state::{
    Change, CodeRecord, CodeRedemption, FamilyRevocation, MemoryState, Redemption, RedisState, RefreshRecord, Snapshot,
    SqlState, StateBackend,
};

use tower_secure::config::Deployment;
use tower_secure::oauth2::TokenServer;

use common::servers::{Postgres, Redis};

const NOW: u64 = 1_900_000_000;

fn digest(n: u8) -> [u8; 32] {
    [n; 32]
}

fn grant(client: &str, family: u64, jti: &str) -> RefreshRecord {
    RefreshRecord {
        client_id: client.to_owned(),
        user: "SECONDARY/alex@example.com".to_owned(),
        scopes: vec!["openid".to_owned(), "internal_login".to_owned()],
        issued_at: NOW - 10,
        expires: NOW + 3600,
        family,
        access_jti: jti.to_owned(),
        access_exp: NOW + 600,
    }
}

async fn redis_backend(server: &Redis, prefix: &str) -> RedisState {
    RedisState::builder(server.url()).key_prefix(prefix).build().await.unwrap()
}

/// Every check of the suite, against one backend.
async fn conformance(state: Arc<dyn StateBackend>, name: &str) {
    revocations_and_watermarks(&*state, name).await;
    refresh_rotation_and_replay(&*state, name).await;
    concurrent_redemption(Arc::clone(&state), name).await;
    authorization_codes(Arc::clone(&state), name).await;
    concurrent_failures(Arc::clone(&state), name).await;
    replica_resync(&*state, name).await;
}

// SPEC H1: a revoked jti is in the snapshot until it expires; watermarks only move forward,
// per client and for everybody; a snapshot decides tokens as the backend would.
async fn revocations_and_watermarks(state: &dyn StateBackend, name: &str) {
    state.revoke("jti-1", "web", NOW + 100).await.unwrap();
    state.revoke("jti-old", "web", NOW - 1).await.unwrap();
    state.revoke_issued_before(Some("web"), NOW - 50).await.unwrap();
    state.revoke_issued_before(Some("web"), NOW - 90).await.unwrap();
    state.revoke_issued_before(None, NOW - 1000).await.unwrap();
    let snapshot = state.snapshot(NOW).await.unwrap();
    assert_eq!(snapshot.revoked.get("jti-1"), Some(&(NOW + 100)), "{name}");
    assert!(!snapshot.revoked.contains_key("jti-old"), "{name}: expired entries are pruned");
    assert_eq!(snapshot.client_watermarks.get("web"), Some(&(NOW - 50)), "{name}: watermarks never move back");
    assert_eq!(snapshot.global_watermark, NOW - 1000, "{name}");
    assert!(snapshot.is_revoked(Some("jti-1"), Some("app"), NOW), "{name}");
    assert!(snapshot.is_revoked(Some("jti-2"), Some("web"), NOW - 60), "{name}: before web's watermark");
    assert!(!snapshot.is_revoked(Some("jti-2"), Some("web"), NOW - 10), "{name}");
    assert!(snapshot.is_revoked(Some("jti-3"), Some("app"), NOW - 2000), "{name}: before everybody's");
    assert!(!snapshot.is_revoked(Some("jti-3"), Some("app"), NOW - 10), "{name}");
    assert!(!snapshot.epoch.is_empty(), "{name}");
}

// SPEC H1: a refresh token is used once; a replay ends its family and names the family's
// access tokens; another client's token is invalid and survives; revocation of a family
// and of a client's tokens; introspection sees unused tokens only.
async fn refresh_rotation_and_replay(state: &dyn StateBackend, name: &str) {
    let family = state.new_family().await.unwrap();
    assert_ne!(state.new_family().await.unwrap(), family, "{name}: families are unique");
    state.put_refresh(&digest(1), &grant("web", family, "a1")).await.unwrap();
    assert_eq!(state.peek_refresh(&digest(1), NOW).await.unwrap(), Some(grant("web", family, "a1")), "{name}");
    assert_eq!(state.redeem_refresh(&digest(1), "other", NOW).await.unwrap(), Redemption::Invalid, "{name}");
    assert_eq!(state.redeem_refresh(&digest(1), "web", NOW + 3600).await.unwrap(), Redemption::Invalid, "{name}");
    assert_eq!(
        state.redeem_refresh(&digest(1), "web", NOW).await.unwrap(),
        Redemption::Fresh(grant("web", family, "a1")),
        "{name}"
    );
    assert_eq!(state.peek_refresh(&digest(1), NOW).await.unwrap(), None, "{name}: used");
    state.put_refresh(&digest(2), &grant("web", family, "a2")).await.unwrap();
    match state.redeem_refresh(&digest(1), "web", NOW).await.unwrap() {
        Redemption::Replayed(mut access) => {
            access.sort();
            assert_eq!(access, [("a1".to_owned(), NOW + 600), ("a2".to_owned(), NOW + 600)], "{name}");
        }
        other => panic!("{name}: a replay must end the family, got {other:?}"),
    }
    assert_eq!(state.redeem_refresh(&digest(2), "web", NOW).await.unwrap(), Redemption::Invalid, "{name}");

    let family = state.new_family().await.unwrap();
    state.put_refresh(&digest(3), &grant("web", family, "b1")).await.unwrap();
    assert_eq!(state.revoke_refresh_family(&digest(3), "app").await.unwrap(), FamilyRevocation::OtherClient);
    assert_eq!(
        state.revoke_refresh_family(&digest(3), "web").await.unwrap(),
        FamilyRevocation::Revoked(vec![("b1".to_owned(), NOW + 600)]),
        "{name}"
    );
    assert_eq!(state.revoke_refresh_family(&digest(3), "web").await.unwrap(), FamilyRevocation::Unknown);

    let family = state.new_family().await.unwrap();
    state.put_refresh(&digest(4), &grant("batch", family, "c1")).await.unwrap();
    state.put_refresh(&digest(5), &grant("web", family + 1000, "c2")).await.unwrap();
    state.revoke_client_refresh("batch").await.unwrap();
    assert_eq!(state.redeem_refresh(&digest(4), "batch", NOW).await.unwrap(), Redemption::Invalid, "{name}");
    assert!(matches!(state.redeem_refresh(&digest(5), "web", NOW).await.unwrap(), Redemption::Fresh(_)), "{name}");
}

// SPEC H3: 20 tasks redeem one refresh token at once: exactly one gets the grant, the
// others see a replay or an already ended family, never a second grant.
async fn concurrent_redemption(state: Arc<dyn StateBackend>, name: &str) {
    let family = state.new_family().await.unwrap();
    state.put_refresh(&digest(9), &grant("web", family, "race")).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let state = Arc::clone(&state);
            tokio::spawn(async move { state.redeem_refresh(&digest(9), "web", NOW).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    for task in tasks {
        match task.await.unwrap() {
            Redemption::Fresh(_) => fresh += 1,
            Redemption::Replayed(_) | Redemption::Invalid => {}
            other => panic!("{name}: {other:?}"),
        }
    }
    assert_eq!(fresh, 1, "{name}: exactly one redemption wins");
}

fn code(client: &str, family: u64) -> CodeRecord {
    CodeRecord {
        client_id: client.to_owned(),
        redirect_uri: "https://app.example.com/callback".to_owned(),
        user: "alex".to_owned(),
        scopes: vec!["openid".to_owned()],
        code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned(),
        expires: NOW + 60,
        family,
    }
}

// SPEC H1, H3: an authorization code is redeemed once, by its client, before it expires;
// of 20 concurrent redemptions exactly one wins; a second use ends the refresh family
// the first started and names its access tokens, even after the code expired.
async fn authorization_codes(state: Arc<dyn StateBackend>, name: &str) {
    let family = state.new_family().await.unwrap();
    state.put_code(&digest(20), &code("spa", family)).await.unwrap();
    assert_eq!(state.redeem_code(&digest(21), "spa", NOW).await.unwrap(), CodeRedemption::Invalid, "{name}");
    assert_eq!(state.redeem_code(&digest(20), "other", NOW).await.unwrap(), CodeRedemption::Invalid, "{name}");
    assert_eq!(state.redeem_code(&digest(20), "spa", NOW + 60).await.unwrap(), CodeRedemption::Invalid, "{name}");
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let state = Arc::clone(&state);
            tokio::spawn(async move { state.redeem_code(&digest(20), "spa", NOW).await.unwrap() })
        })
        .collect();
    let mut fresh = Vec::new();
    for task in tasks {
        if let CodeRedemption::Fresh(record) = task.await.unwrap() {
            fresh.push(record);
        }
    }
    assert_eq!(fresh, [code("spa", family)], "{name}: exactly one redemption wins");
    // The exchange issued a refresh token in the code's family; a late replay ends it.
    state.put_refresh(&digest(22), &grant("spa", family, "from-code")).await.unwrap();
    assert_eq!(
        state.redeem_code(&digest(20), "spa", NOW + 600).await.unwrap(),
        CodeRedemption::Replayed(vec![("from-code".to_owned(), NOW + 600)]),
        "{name}"
    );
    assert_eq!(state.redeem_refresh(&digest(22), "spa", NOW).await.unwrap(), Redemption::Invalid, "{name}");
}

// SPEC H3: 50 concurrent failures of one user with a threshold of 5: exactly one of them
// locks the account, and the lock is seen by every reader.
async fn concurrent_failures(state: Arc<dyn StateBackend>, name: &str) {
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let state = Arc::clone(&state);
            tokio::spawn(async move { state.record_failure("PRIMARY/kim", 5, 300, NOW).await.unwrap() })
        })
        .collect();
    let mut locks = Vec::new();
    for task in tasks {
        locks.extend(task.await.unwrap());
    }
    assert_eq!(locks, [NOW + 300], "{name}: locked once, at the threshold");
    assert_eq!(state.locked_until("PRIMARY/kim", NOW + 1).await.unwrap(), Some(NOW + 300), "{name}");
    assert_eq!(state.locked_until("PRIMARY/kim", NOW + 300).await.unwrap(), None, "{name}: expired");
    assert_eq!(state.snapshot(NOW).await.unwrap().locks.get("PRIMARY/kim"), Some(&(NOW + 300)), "{name}");
    // Four failures, a success, four more: no lock (the success forgets the count).
    for _ in 0..4 {
        assert_eq!(state.record_failure("sam", 5, 300, NOW).await.unwrap(), None, "{name}");
    }
    state.clear_failures("sam").await.unwrap();
    for _ in 0..4 {
        assert_eq!(state.record_failure("sam", 5, 300, NOW).await.unwrap(), None, "{name}");
    }
    assert_eq!(state.locked_until("sam", NOW).await.unwrap(), None, "{name}");
}

// SPEC H1, H4: a replica built from a snapshot and moved forward by the numbered changes
// equals a new snapshot; a replica of another epoch, or one the log no longer reaches, is
// told to take a new snapshot.
async fn replica_resync(state: &dyn StateBackend, name: &str) {
    let mut replica: Snapshot = state.snapshot(NOW).await.unwrap();
    state.revoke("late-1", "web", NOW + 50).await.unwrap();
    state.revoke_issued_before(Some("mobile"), NOW - 5).await.unwrap();
    state.revoke_issued_before(None, NOW - 500).await.unwrap();
    state.record_failure("lee", 1, 60, NOW).await.unwrap();
    let changes = state.changes_since(&replica.epoch, replica.sequence).await.unwrap().unwrap();
    assert_eq!(changes.len(), 4, "{name}: {changes:?}");
    assert!(changes.windows(2).all(|w| w[0].0 < w[1].0), "{name}: numbered in order");
    assert!(matches!(&changes[0].1, Change::Revoked { jti, .. } if jti == "late-1"), "{name}");
    for (number, change) in &changes {
        replica.apply(*number, change);
    }
    assert_eq!(replica, state.snapshot(NOW).await.unwrap(), "{name}: the replica caught up");
    let nothing = state.changes_since(&replica.epoch, replica.sequence).await.unwrap().unwrap();
    assert!(nothing.is_empty(), "{name}");
    assert_eq!(state.changes_since("another-epoch", replica.sequence).await.unwrap(), None, "{name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_memory_backend_conforms() {
    conformance(Arc::new(MemoryState::new()), "memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_redis_backend_conforms() {
    let server = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    conformance(Arc::new(redis_backend(&server, "conformance").await), "redis").await;
}

// SPEC H1: with a password (`requirepass`): the right one in the URL connects, a wrong one
// is refused when the backend is built, and no error (wrong password, malformed URL,
// nothing listening) shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_redis_with_a_password() {
    let server = tokio::task::spawn_blocking(|| Redis::start_with_password("s3cret-pw")).await.unwrap();
    let url = server.url();
    assert!(url.contains("s3cret-pw"), "the harness's URL carries the password: {url}");
    let state = RedisState::builder(&url).build().await.unwrap();
    state.revoke("with-password", "web", NOW + 10).await.unwrap();
    let wrong = url.replace("s3cret-pw", "guessed-pw");
    let error = RedisState::builder(&wrong).build().await.unwrap_err();
    println!("wrong password: {error}");
    assert!(!error.0.contains("guessed-pw") && !error.0.contains("s3cret-pw"), "{error}");
    for bad in ["redis://:s3cret-pw@127.0.0.1:notaport", "redis://:s3cret-pw@[::1/0", "rediss://:s3cret-pw@127.0.0.1:1"]
    {
        let error = RedisState::builder(bad).build().await.unwrap_err();
        println!("{error}");
        assert!(!error.0.contains("s3cret-pw"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_sqlite_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    conformance(Arc::new(SqlState::builder(url).build().await.unwrap()), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_postgres_backend_conforms() {
    let server = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    conformance(Arc::new(SqlState::builder(server.url()).build().await.unwrap()), "postgres").await;
}

// SPEC H1: a wrong PostgreSQL password is refused when the backend is built, and the error
// does not show it; a URL of no known database is refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_sql_backend_refuses_bad_urls() {
    let server = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let wrong = server.url().replace(Postgres::PASSWORD, "guessed-pw");
    let error = SqlState::builder(&wrong).build().await.unwrap_err();
    println!("wrong password: {error}");
    assert!(!error.0.contains("guessed-pw") && !error.0.contains(Postgres::PASSWORD), "{error}");
    let error = SqlState::builder("mysql://db/x").build().await.unwrap_err();
    assert!(error.0.contains("postgres:// or sqlite:"), "{error}");
}

/// What two backends on one server under one name share: a revocation, a redemption and
/// a lock made through one are seen through the other.
async fn two_backends_agree(a: &dyn StateBackend, b: &dyn StateBackend) {
    a.revoke("shared", "web", NOW + 100).await.unwrap();
    assert!(b.snapshot(NOW).await.unwrap().revoked.contains_key("shared"));
    let family = a.new_family().await.unwrap();
    a.put_refresh(&digest(7), &grant("web", family, "x1")).await.unwrap();
    assert!(matches!(b.redeem_refresh(&digest(7), "web", NOW).await.unwrap(), Redemption::Fresh(_)));
    assert!(matches!(a.redeem_refresh(&digest(7), "web", NOW).await.unwrap(), Redemption::Replayed(_)));
    for instance in [&a, &b, &a, &b] {
        assert_eq!(instance.record_failure("alex", 5, 60, NOW).await.unwrap(), None);
    }
    assert_eq!(b.record_failure("alex", 5, 60, NOW).await.unwrap(), Some(NOW + 60), "the fifth, wherever it lands");
    assert_eq!(a.locked_until("alex", NOW).await.unwrap(), Some(NOW + 60));
    assert_eq!(a.snapshot(NOW).await.unwrap().epoch, b.snapshot(NOW).await.unwrap().epoch);
}

// SPEC H3: two backends (as two instances would have) on one Redis share everything under
// one prefix, and nothing across prefixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_two_backends_on_one_redis_agree() {
    let server = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let (a, b) = (redis_backend(&server, "api").await, redis_backend(&server, "api").await);
    two_backends_agree(&a, &b).await;
    let other = redis_backend(&server, "other-api").await;
    assert!(!other.snapshot(NOW).await.unwrap().revoked.contains_key("shared"), "prefixes keep APIs apart");
}

// SPEC H3: two backends on one PostgreSQL database share everything; another database on
// the same server shares nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h3_two_backends_on_one_postgres_agree() {
    let server = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let a = SqlState::builder(server.url()).build().await.unwrap();
    let b = SqlState::builder(server.url()).build().await.unwrap();
    two_backends_agree(&a, &b).await;
    server.psql("CREATE DATABASE other_api");
    let other_url = server.url().replace(Postgres::DATABASE, "other_api");
    let other = SqlState::builder(other_url).build().await.unwrap();
    assert!(!other.snapshot(NOW).await.unwrap().revoked.contains_key("shared"), "databases keep APIs apart");
}

// SPEC H2: a SQLite file opened again (a restarted instance) has everything: revocations,
// watermarks, locks, unused refresh tokens, the family counter and the epoch, so a replica
// of the earlier process may go on from where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_a_sqlite_file_keeps_everything_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("state.db").display());
    let (before, family) = {
        let state = SqlState::builder(&url).build().await.unwrap();
        state.revoke("revoked-before", "web", NOW + 100).await.unwrap();
        state.revoke_issued_before(Some("mobile"), NOW - 5).await.unwrap();
        assert_eq!(state.record_failure("alex", 1, 600, NOW).await.unwrap(), Some(NOW + 600));
        let family = state.new_family().await.unwrap();
        state.put_refresh(&digest(1), &grant("web", family, "a1")).await.unwrap();
        (state.snapshot(NOW).await.unwrap(), family)
    };
    let state = SqlState::builder(&url).build().await.unwrap();
    let after = state.snapshot(NOW).await.unwrap();
    assert_eq!(after, before, "the same epoch, sequence, revocations, watermarks and locks");
    assert_eq!(state.changes_since(&before.epoch, before.sequence).await.unwrap(), Some(vec![]));
    assert_eq!(state.locked_until("alex", NOW).await.unwrap(), Some(NOW + 600));
    assert!(state.new_family().await.unwrap() > family, "family numbers are never reused");
    assert_eq!(
        state.redeem_refresh(&digest(1), "web", NOW).await.unwrap(),
        Redemption::Fresh(grant("web", family, "a1"))
    );
}

/// The first snapshot a backend gives after its server restarted (within 10 s).
async fn first_snapshot(state: &dyn StateBackend) -> Snapshot {
    let recovered = Instant::now();
    loop {
        match state.snapshot(NOW).await {
            Ok(snapshot) => return snapshot,
            Err(e) => assert!(recovered.elapsed() < Duration::from_secs(10), "no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With the server paused (already), a write fails within the backend's timeout (0.5 s)
/// instead of hanging; after `resume`, writes work again within 10 s.
async fn fails_fast_while_paused(state: &dyn StateBackend, resume: impl FnOnce()) {
    let started = Instant::now();
    let error = state.revoke("while-paused", "web", NOW + 100).await.unwrap_err();
    println!("paused: {error} after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_millis(1500), "{:?}", started.elapsed());
    resume();
    let resumed = Instant::now();
    while state.revoke("after-resume", "web", NOW + 100).await.is_err() {
        assert!(resumed.elapsed() < Duration::from_secs(10), "no recovery after SIGCONT");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// SPEC H2, H5: PostgreSQL restarted keeps everything (the epoch too: replicas go on);
// the pool reconnects. Paused (SIGSTOP): calls fail within the timeout instead of
// hanging; continued: they work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_h5_postgres_restarted_or_paused() {
    let mut server = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let state = SqlState::builder(server.url()).timeout(Duration::from_millis(500)).build().await.unwrap();
    state.revoke("before-restart", "web", NOW + 100).await.unwrap();
    let before = state.snapshot(NOW).await.unwrap();

    tokio::task::block_in_place(|| server.restart());
    let after = first_snapshot(&state).await;
    assert_eq!(after, before, "PostgreSQL keeps the state and its epoch");

    tokio::task::block_in_place(|| server.pause());
    fails_fast_while_paused(&state, || tokio::task::block_in_place(|| server.resume())).await;
    let snapshot = state.snapshot(NOW).await.unwrap();
    assert!(snapshot.revoked.contains_key("after-resume") && snapshot.revoked.contains_key("before-restart"));
}

// SPEC H5: Redis restarted empty: the epoch changes, so a replica knows everything it held
// may be gone (`changes_since` says resync); writes work again after the restart.
// Paused (SIGSTOP): calls fail within the timeout instead of hanging; continued: they work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h5_redis_restarted_empty_or_paused() {
    let mut server = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let state = RedisState::builder(server.url()).timeout(Duration::from_millis(500)).build().await.unwrap();
    state.revoke("before-restart", "web", NOW + 100).await.unwrap();
    let before = state.snapshot(NOW).await.unwrap();

    tokio::task::block_in_place(|| server.restart());
    let after = first_snapshot(&state).await;
    assert_ne!(after.epoch, before.epoch, "an emptied Redis has a new epoch");
    assert!(!after.revoked.contains_key("before-restart"), "the harness's Redis keeps nothing");
    assert_eq!(state.changes_since(&before.epoch, before.sequence).await.unwrap(), None, "resync");

    tokio::task::block_in_place(|| server.pause());
    fails_fast_while_paused(&state, || tokio::task::block_in_place(|| server.resume())).await;
    assert!(state.snapshot(NOW).await.unwrap().revoked.contains_key("after-resume"));
}

/// The error of a rule file holding `table` (after the quickstart's rules, so that the
/// token server could be built): from loading the file, or else from connecting.
async fn state_table_error(table: &str) -> tower_secure::config::ConfigError {
    let text = format!("{table}\n{QUICKSTART}");
    let deployment = match Deployment::from_toml_str("deployment.toml", &text) {
        Ok(deployment) => deployment,
        Err(error) => return error,
    };
    match TokenServer::builder().deployment(&deployment).state_from(&deployment).await {
        Ok(_) => panic!("{table}: accepted"),
        Err(error) => error,
    }
}

const QUICKSTART: &str = include_str!("../examples/quickstart/deployment.toml");

// SPEC H1: `[state]` tables are checked when the file loads, and a URL read from a file
// when the token server connects; each error names the file, the line and the key, and
// none shows a password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_state_tables_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let url_file = |url: &str| {
        let path = dir.path().join(format!("url-{}", url.len()));
        std::fs::write(&path, url).unwrap();
        path.display().to_string()
    };
    let cases: Vec<(String, &str, usize, &str)> = vec![
        ("[state]\nbackend = \"etcd\"\n".into(), "backend", 2, "the backend is"),
        ("[state]\ntimeout_ms = 5\n".into(), "backend", 1, "name the backend"),
        ("[state]\nbackend = \"memory\"\nurl = \"redis://c\"\n".into(), "backend", 1, "takes no URL"),
        ("[state]\nurl = \"redis://:hunter2@cache/0\"\n".into(), "url", 2, "holds a password"),
        ("[state]\nbackend = \"postgres\"\nurl = \"redis://cache\"\n".into(), "url", 3, "not the backend's"),
        ("[state]\nurl = \"mysql://db/state\"\n".into(), "url", 2, "starts with redis://"),
        ("[state]\nurl = \"redis://c\"\nurl_env = \"X\"\n".into(), "url", 1, "exactly one of"),
        ("[state]\nurl = \"sqlite://s.db\"\nkey_prefix = \"api\"\n".into(), "key_prefix", 3, "redis backend"),
        ("[state]\nurl = \"redis://c\"\nmax_connections = 3\n".into(), "max_connections", 3, "SQL backends"),
        ("[state]\nurl = \"sqlite://s.db\"\nca_file = \"ca.pem\"\n".into(), "ca_file", 3, "redis backend"),
        (
            "[state]\nurl = \"rediss://127.0.0.1:1\"\nca_file = \"/nonexistent/ca.pem\"\n".into(),
            "ca_file",
            3,
            "cannot read",
        ),
        ("[state]\nurl = \"redis://c\"\ntimeout_ms = 0\n".into(), "timeout_ms", 3, "greater than 0"),
        (
            "[state]\nurl = \"redis://c\"\nsync_interval_ms = 5000\nmax_staleness_seconds = 2\n".into(),
            "sync_interval_ms",
            3,
            "always be stale",
        ),
        ("[state]\nurl_env = \"TOWER_SECURE_TEST_UNSET_VARIABLE\"\n".into(), "url_env", 2, "is not set"),
        (
            format!("[state]\nbackend = \"sqlite\"\nurl_file = \"{}\"\n", url_file("redis://:hunter2@cache")),
            "url_file",
            3,
            "not the backend's",
        ),
        (
            format!("[state]\nurl_file = \"{}\"\nkey_prefix = \"api\"\n", url_file("postgres://app:hunter2@db/state")),
            "key_prefix",
            3,
            "redis backend",
        ),
        (
            format!("[state]\nurl_file = \"{}\"\n", url_file("redis://:hunter2@127.0.0.1:1")),
            "state",
            1,
            "cannot use the state backend",
        ),
    ];
    for (table, key, line, message) in &cases {
        let error = state_table_error(table).await;
        println!("{error}");
        assert_eq!(error.key.as_deref(), Some(*key), "{table}: {error}");
        assert_eq!(error.line, *line, "{table}: {error}");
        assert!(error.message.contains(message), "{table}: {error}");
        assert!(!error.to_string().contains("hunter2"), "{table}: {error}");
    }
}

// SPEC H1: a `[state]` table names a SQLite file (its URL in a file): the token server
// keeps its state there, and is ready once its replica has read it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_h2_a_state_table_makes_the_token_server_durable() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let url_path = dir.path().join("state-url");
    std::fs::write(&url_path, format!("sqlite://{}", db.display())).unwrap();
    let table = format!("[state]\nurl_file = \"{}\"\nsync_interval_ms = 20\n", url_path.display());
    let deployment = Deployment::from_toml_str("deployment.toml", &format!("{table}\n{QUICKSTART}")).unwrap();
    let tokens = TokenServer::builder().deployment(&deployment).state_from(&deployment).await.unwrap().build().unwrap();
    assert!(tokens.ready(Duration::from_secs(5)).await);
    let state = SqlState::builder(format!("sqlite://{}", db.display())).build().await.unwrap();
    assert!(!state.snapshot(NOW).await.unwrap().epoch.is_empty(), "the token server created the tables");
}

// SPEC H1, H5: the backend is connected once; a reload that changes `[state]` is refused
// (restart to apply it) and the old configuration keeps serving; one that keeps it goes
// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_a_changed_state_table_needs_a_restart() {
    let table = "[state]\nbackend = \"memory\"\n";
    let deployment = Deployment::from_toml_str("deployment.toml", &format!("{table}\n{QUICKSTART}")).unwrap();
    let tokens = TokenServer::builder().deployment(&deployment).state_from(&deployment).await.unwrap().build().unwrap();
    let layer = tower_secure::SecureLayer::builder().deployment(deployment).token_server(&tokens).build().unwrap();
    let reloader = layer.reloader();
    let same = Deployment::from_toml_str("deployment.toml", &format!("{QUICKSTART}\n{table}")).unwrap();
    reloader.reload(same).unwrap();
    let changed = format!("[state]\nurl = \"redis://127.0.0.1:1\"\n\n{QUICKSTART}");
    let error = reloader.reload(Deployment::from_toml_str("deployment.toml", &changed).unwrap()).unwrap_err();
    assert!(error.message.contains("[state] changed"), "{error}");
}

/// A change made through `writer` raises the notifier of `reader` (another connection, as
/// another instance would have), well before any poll would have found it.
async fn changes_are_announced(reader: &dyn StateBackend, writer: &dyn StateBackend, name: &str) {
    let notify = reader.change_notifier().unwrap_or_else(|| panic!("{name}: no change notifier"));
    // The first signal says the listener is subscribed (and catching up).
    tokio::time::timeout(Duration::from_secs(5), notify.notified()).await.expect("subscribed");
    for round in 0..3 {
        let started = Instant::now();
        writer.revoke(&format!("announced-{round}"), "web", NOW + 100).await.unwrap();
        tokio::time::timeout(Duration::from_secs(2), notify.notified())
            .await
            .unwrap_or_else(|_| panic!("{name}: round {round}: no announcement"));
        println!("{name}: announced after {:?}", started.elapsed());
    }
}

// SPEC H4: Redis announces every change (pub/sub) to the replicas of other instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h4_redis_announces_changes() {
    let server = tokio::task::spawn_blocking(Redis::start).await.unwrap();
    let (a, b) = (redis_backend(&server, "api").await, redis_backend(&server, "api").await);
    changes_are_announced(&a, &b, "redis").await;
}

// SPEC H4: PostgreSQL announces every change (LISTEN/NOTIFY) to other instances; a SQLite
// file, and memory, announce nothing (replicas poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h4_postgres_announces_changes() {
    let server = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let a = SqlState::builder(server.url()).build().await.unwrap();
    let b = SqlState::builder(server.url()).build().await.unwrap();
    changes_are_announced(&a, &b, "postgres").await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqlState::builder(format!("sqlite://{}", dir.path().join("s.db").display())).build().await.unwrap();
    assert!(sqlite.change_notifier().is_none());
    assert!(MemoryState::new().change_notifier().is_none());
}

// SPEC H1: the SQL tables stay bounded by what is alive without any replica resyncing:
// every 1000th stored refresh grant first removes the expired ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_sql_tables_are_pruned_as_grants_are_stored() {
    let server = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let state = SqlState::builder(server.url()).build().await.unwrap();
    let expired = |n: u32| RefreshRecord { expires: 1, ..grant("web", 1, &format!("old-{n}")) };
    for n in 0..999u32 {
        let mut digest = [0u8; 32];
        digest[..4].copy_from_slice(&n.to_be_bytes());
        state.put_refresh(&digest, &expired(n)).await.unwrap();
    }
    let count = || server.psql("SELECT count(*) FROM ts_state_refresh");
    assert_eq!(count(), "999", "nothing pruned before the 1000th");
    state.put_refresh(&digest(200), &grant("web", 2, "alive")).await.unwrap();
    assert_eq!(count(), "1", "the 1000th store removed the 999 expired grants first");
}

/// A real `MemoryState` whose change log can be made to fail while everything else keeps
/// working: the one fault a paused server cannot produce (a replica that cannot catch up
/// while writes still succeed).
#[derive(Clone, Default)]
struct LogFails {
    state: MemoryState,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl LogFails {
    fn check(&self) -> Result<(), tower_secure::state::StateError> {
        match self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            true => Err(tower_secure::state::StateError("change log unreadable".to_owned())),
            false => Ok(()),
        }
    }
}

#[tower_secure::async_trait]
impl StateBackend for LogFails {
    async fn revoke(&self, jti: &str, client: &str, exp: u64) -> Result<(), tower_secure::state::StateError> {
        self.state.revoke(jti, client, exp).await
    }
    async fn revoke_issued_before(
        &self,
        client: Option<&str>,
        before: u64,
    ) -> Result<(), tower_secure::state::StateError> {
        self.state.revoke_issued_before(client, before).await
    }
    async fn new_family(&self) -> Result<u64, tower_secure::state::StateError> {
        self.state.new_family().await
    }
    async fn put_refresh(
        &self,
        digest: &[u8; 32],
        record: &RefreshRecord,
    ) -> Result<(), tower_secure::state::StateError> {
        self.state.put_refresh(digest, record).await
    }
    async fn redeem_refresh(
        &self,
        digest: &[u8; 32],
        client: &str,
        now: u64,
    ) -> Result<Redemption, tower_secure::state::StateError> {
        self.state.redeem_refresh(digest, client, now).await
    }
    async fn peek_refresh(
        &self,
        digest: &[u8; 32],
        now: u64,
    ) -> Result<Option<RefreshRecord>, tower_secure::state::StateError> {
        self.state.peek_refresh(digest, now).await
    }
    async fn revoke_refresh_family(
        &self,
        digest: &[u8; 32],
        client: &str,
    ) -> Result<FamilyRevocation, tower_secure::state::StateError> {
        self.state.revoke_refresh_family(digest, client).await
    }
    async fn revoke_client_refresh(&self, client: &str) -> Result<(), tower_secure::state::StateError> {
        self.state.revoke_client_refresh(client).await
    }
    async fn put_code(&self, digest: &[u8; 32], record: &CodeRecord) -> Result<(), tower_secure::state::StateError> {
        self.state.put_code(digest, record).await
    }
    async fn redeem_code(
        &self,
        digest: &[u8; 32],
        client: &str,
        now: u64,
    ) -> Result<CodeRedemption, tower_secure::state::StateError> {
        self.state.redeem_code(digest, client, now).await
    }
    async fn record_failure(
        &self,
        user: &str,
        max: u32,
        seconds: u64,
        now: u64,
    ) -> Result<Option<u64>, tower_secure::state::StateError> {
        self.state.record_failure(user, max, seconds, now).await
    }
    async fn clear_failures(&self, user: &str) -> Result<(), tower_secure::state::StateError> {
        self.state.clear_failures(user).await
    }
    async fn locked_until(&self, user: &str, now: u64) -> Result<Option<u64>, tower_secure::state::StateError> {
        self.state.locked_until(user, now).await
    }
    async fn snapshot(&self, now: u64) -> Result<Snapshot, tower_secure::state::StateError> {
        self.check()?;
        self.state.snapshot(now).await
    }
    async fn changes_since(
        &self,
        epoch: &str,
        sequence: u64,
    ) -> Result<Option<Vec<(u64, Change)>>, tower_secure::state::StateError> {
        self.check()?;
        self.state.changes_since(epoch, sequence).await
    }
    fn is_shared(&self) -> bool {
        true
    }
}

// SPEC H5: a replica that cannot catch up while writes still work: once it is stale, the
// refresh grant (a client's watermark decides it) and introspection answer 503 instead of
// deciding from what may be out of date; caught up again, both work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h5_a_stale_replica_stops_refresh_and_introspection() {
    let deployment = Deployment::from_toml_str("deployment.toml", QUICKSTART).unwrap();
    let users = include_str!("../examples/quickstart/users.toml");
    let backend = LogFails::default();
    let tokens = TokenServer::builder()
        .deployment(&deployment)
        .user_store(tower_secure::config::load_users("users.toml", users).unwrap())
        .clients(tower_secure::config::load_clients("users.toml", users).unwrap())
        .state(backend.clone())
        .sync(Duration::from_millis(20), Duration::from_millis(200))
        .build()
        .unwrap();
    assert!(tokens.ready(Duration::from_secs(5)).await);
    let base = common::serve(tokens.router()).await;
    let http = common::client();
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        let request = http.post(format!("{base}{path}")).basic_auth("quickstart-client", Some("quickstart-secret"));
        async move {
            let response = request.form(&form).send().await.unwrap();
            (response.status(), response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let login = vec![
        ("grant_type", "password".to_owned()),
        ("username", "alex".to_owned()),
        ("password", "alex123".to_owned()),
    ];
    let (status, body) = post("/oauth2/token", login.clone()).await;
    assert_eq!(status, 200, "{body}");
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();

    backend.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let refresh = vec![("grant_type", "refresh_token".to_owned()), ("refresh_token", refresh_token)];
    let (status, body) = post("/oauth2/token", refresh.clone()).await;
    assert_eq!(status, 503, "refresh from a stale replica: {body}");
    let (status, body) = post("/oauth2/introspect", vec![("token", access.clone())]).await;
    assert_eq!(status, 503, "introspection from a stale replica: {body}");

    backend.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(tokens.ready(Duration::from_secs(5)).await);
    let (status, body) = post("/oauth2/token", refresh).await;
    assert_eq!(status, 200, "the refresh token was not used up by the refusal: {body}");
    let (status, body) = post("/oauth2/introspect", vec![("token", access)]).await;
    assert_eq!((status, &body["active"]), (reqwest::StatusCode::OK, &serde_json::json!(true)), "{body}");
}

// SPEC H1: Redis over TLS (`rediss://`, rustls on aws-lc): the server's certificate is
// checked against the CA given (the conformance steps then run over it); a server whose
// certificate another CA signed, or that speaks plain TCP, is refused when the backend is
// built.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h1_redis_over_tls() {
    let (ca, certificate, key) = common::loopback_server_pki();
    let server = tokio::task::spawn_blocking(move || Redis::start_with_tls(&certificate, &key)).await.unwrap();
    let state = RedisState::builder(server.tls_url()).ca_certificates_pem(ca.as_bytes()).build().await.unwrap();
    conformance(Arc::new(state), "redis over TLS").await;
    let (other_ca, _, _) = common::loopback_server_pki();
    let error =
        RedisState::builder(server.tls_url()).ca_certificates_pem(other_ca.as_bytes()).build().await.unwrap_err();
    println!("another CA: {error}");
    let error = RedisState::builder(server.tls_url()).build().await.unwrap_err();
    println!("the system's roots: {error}");
    let plain = format!("rediss://127.0.0.1:{}", server.port());
    let error = RedisState::builder(plain).ca_certificates_pem(ca.as_bytes()).build().await.unwrap_err();
    println!("TLS to the plain port: {error}");

    // The same from a rule file's [state] table (`ca_file`).
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("redis-ca.pem"), &ca).unwrap();
    let table = format!("[state]\nurl = \"{}\"\nca_file = \"redis-ca.pem\"\n", server.tls_url());
    std::fs::write(dir.path().join("deployment.toml"), format!("{table}\n{QUICKSTART}")).unwrap();
    let deployment = Deployment::from_file(dir.path().join("deployment.toml")).unwrap();
    let tokens = TokenServer::builder().deployment(&deployment).state_from(&deployment).await.unwrap().build().unwrap();
    assert!(tokens.ready(Duration::from_secs(5)).await, "the replica synced over TLS");
}
