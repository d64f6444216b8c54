//! The server harness of the user-store and state-backend tests (tests/common/servers.rs)
//! on the real thing: PostgreSQL, OpenLDAP's slapd and Redis, which `scripts/test`
//! provisions. Each is started as a private, unprivileged process on 127.0.0.1, written
//! and read back through its own client (psql, ldapadd/ldapsearch, redis-cli), restarted,
//! paused (a bounded request times out) and resumed, run twice side by side, and gone
//! without a trace once dropped, even when the test panics.

mod common;

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::servers::{
    ldap_tool, process_group_members, process_uid, run_bounded, server_account, Postgres, Redis, Slapd, CLIENT_TIMEOUT,
};

/// The bound of a request to a paused server (it must run out), and of one after resume.
const PAUSED: Duration = Duration::from_millis(500);
const RESUMED: Duration = Duration::from_secs(5);

/// Nothing is left of the server whose leader was `pid`: no /proc entry, and no process in
/// its process group (waits a little: killed members are reaped asynchronously).
fn assert_gone(pid: u32, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let leader_alive = Path::new(&format!("/proc/{pid}")).exists();
        let group = process_group_members(pid);
        if !leader_alive && group.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} (pid {pid}) left processes behind: leader alive: {leader_alive}, its group: {group:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// What a scoped thread returned; its panic, as it was, if it panicked.
fn joined<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The server never runs as root: as root the tests run it as the service account, which
/// also owns its directory; otherwise it runs as the test's own user.
fn assert_unprivileged(pid: u32, dir: &Path, name: &str) {
    let uid = process_uid(pid);
    assert_ne!(uid, 0, "{name} runs as root");
    if let Some(account) = server_account() {
        assert_eq!(uid, account.uid, "{name} runs as the account {}", account.name);
        assert_eq!(fs::metadata(dir).unwrap().uid(), account.uid, "{} belongs to {}", dir.display(), account.name);
    }
}

/// A request to a paused server runs out of time (the kernel still accepts the connection).
fn assert_times_out(answer: io::Result<()>, name: &str) {
    let error = answer.expect_err(&format!("a paused {name} answered"));
    assert!(
        matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
        "a request to a paused {name} should time out, it failed with: {error}"
    );
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

// SPEC I6: scripts/test provisions PostgreSQL. The harness runs it unprivileged on
// 127.0.0.1 with password (SCRAM) authentication; psql writes and reads back; a restart
// keeps committed rows (same port, same data directory: durability tests); paused, a
// bounded request times out, resumed, it answers; dropped, no process is left.
#[test]
fn postgres_round_trip_restart_pause_and_drop() {
    let mut pg = Postgres::start();
    let port = pg.port();
    assert_eq!(pg.url(), format!("postgres://tower:tower-pg-secret@127.0.0.1:{port}/tower_secure"));
    assert_unprivileged(pg.pid(), pg.dir(), "PostgreSQL");

    pg.psql("CREATE TABLE users (name text PRIMARY KEY, roles text[]); INSERT INTO users VALUES ('alex', '{viewer}'), ('bob', '{}');");
    assert_eq!(pg.psql("SELECT name, cardinality(roles) FROM users ORDER BY name"), "alex|1\nbob|0");
    let mut wrong_password = pg.psql_command();
    wrong_password.env("PGPASSWORD", "wrong");
    let run = run_bounded(&mut wrong_password, b"SELECT 1", CLIENT_TIMEOUT).unwrap();
    assert!(!run.status.success() && run.stderr.contains("password authentication failed"), "{run:?}");

    let before = pg.pid();
    pg.restart();
    assert_gone(before, "the PostgreSQL stopped for the restart");
    assert_eq!((pg.port(), pg.psql("SELECT name FROM users ORDER BY name")), (port, "alex\nbob".to_string()));

    pg.pause();
    assert_times_out(pg.ping(PAUSED), "PostgreSQL");
    let hung = run_bounded(&mut pg.psql_command(), b"SELECT 1", Duration::from_secs(1));
    assert!(hung.as_ref().is_err_and(|why| why.contains("did not finish")), "psql against a paused server: {hung:?}");
    pg.resume();
    pg.ping(RESUMED).unwrap();
    assert_eq!(pg.psql("SELECT count(*) FROM users"), "2");

    let pid = pg.pid();
    drop(pg);
    assert_gone(pid, "PostgreSQL");
}

// SPEC I6: two PostgreSQL servers run side by side: two processes, two ports, two data
// directories (a table in one is not in the other).
#[test]
fn two_postgres_servers_side_by_side() {
    let (a, b) = thread::scope(|s| {
        let (a, b) = (s.spawn(Postgres::start), s.spawn(Postgres::start));
        (joined(a), joined(b))
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
    a.psql("CREATE TABLE sessions (id int); INSERT INTO sessions VALUES (1);");
    assert_eq!(a.psql("SELECT id FROM sessions"), "1");
    let missing = b.try_psql("SELECT id FROM sessions").unwrap_err();
    assert!(missing.contains("does not exist"), "{missing}");
}

// ---------------------------------------------------------------------------------------
// OpenLDAP
// ---------------------------------------------------------------------------------------

const BASE_DN: &str = "dc=example,dc=com";

/// People and a group, in the schemas the harness loads (inetOrgPerson, posixAccount and
/// posixGroup from nis).
const PEOPLE: &str = "\
dn: ou=people,dc=example,dc=com
objectClass: organizationalUnit
ou: people

dn: uid=alex,ou=people,dc=example,dc=com
objectClass: inetOrgPerson
objectClass: posixAccount
uid: alex
cn: Alex Example
sn: Example
mail: alex@example.com
uidNumber: 1000
gidNumber: 1000
homeDirectory: /home/alex
userPassword: alex123

dn: cn=identity_viewer,dc=example,dc=com
objectClass: posixGroup
cn: identity_viewer
gidNumber: 2000
memberUid: alex
";

/// ldapwhoami as `dn` with `password`, as a user store would bind.
fn ldap_bind(slapd: &Slapd, dn: &str, password: &str) -> Result<String, String> {
    let mut whoami = Command::new(ldap_tool("ldapwhoami"));
    whoami.args(["-x", "-o", "nettimeout=5", "-H", &slapd.url(), "-D", dn, "-w", password]);
    let run = run_bounded(&mut whoami, b"", CLIENT_TIMEOUT)?;
    if run.status.success() {
        Ok(run.stdout.trim().to_string())
    } else {
        Err(run.stderr)
    }
}

// SPEC I6: scripts/test provisions OpenLDAP. The harness runs slapd unprivileged on
// 127.0.0.1 with the entries it was given; ldapadd writes and ldapsearch reads back; a
// user binds with its password; a restart keeps the directory; paused, a bounded bind times
// out, resumed, it answers; dropped, no process is left.
#[test]
fn slapd_round_trip_restart_pause_and_drop() {
    let mut slapd = Slapd::start(BASE_DN, PEOPLE);
    let port = slapd.port();
    assert_eq!(slapd.url(), format!("ldap://127.0.0.1:{port}"));
    assert_unprivileged(slapd.pid(), slapd.dir(), "slapd");

    let alex = slapd.search("(uid=alex)", &["mail", "uidNumber"]);
    assert!(alex.contains("dn: uid=alex,ou=people,dc=example,dc=com"), "{alex}");
    assert!(alex.contains("mail: alex@example.com") && alex.contains("uidNumber: 1000"), "{alex}");
    assert_eq!(slapd.search("(cn=identity_viewer)", &["memberUid"]).trim_end().lines().last(), Some("memberUid: alex"));
    slapd.add_ldif("dn: uid=bob,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: B\nuserPassword: bob123\n");
    slapd.modify_ldif("dn: cn=identity_viewer,dc=example,dc=com\nchangetype: modify\nadd: memberUid\nmemberUid: bob\n");
    assert!(slapd.search("(uid=bob)", &["cn"]).contains("cn: Bob"));
    assert!(slapd.search("(memberUid=bob)", &["cn"]).contains("cn: identity_viewer"));
    assert_eq!(
        ldap_bind(&slapd, "uid=alex,ou=people,dc=example,dc=com", "alex123").unwrap(),
        "dn:uid=alex,ou=people,dc=example,dc=com"
    );
    let refused = ldap_bind(&slapd, "uid=alex,ou=people,dc=example,dc=com", "wrong").unwrap_err();
    assert!(refused.contains("Invalid credentials"), "{refused}");

    let before = slapd.pid();
    slapd.restart();
    assert_gone(before, "the slapd stopped for the restart");
    assert_eq!(slapd.port(), port);
    assert!(slapd.search("(uid=bob)", &["uid"]).contains("uid: bob"), "the directory survives a restart");

    slapd.pause();
    assert_times_out(slapd.ping(PAUSED), "slapd");
    slapd.resume();
    slapd.ping(RESUMED).unwrap();
    assert!(ldap_bind(&slapd, "uid=bob,ou=people,dc=example,dc=com", "bob123").is_ok());

    let pid = slapd.pid();
    drop(slapd);
    assert_gone(pid, "slapd");
}

// SPEC I6: two slapd servers run side by side, each with its own suffix and entries (the
// harness creates `dc=` and `o=` suffix entries itself).
#[test]
fn two_slapd_servers_side_by_side() {
    let (a, b) = thread::scope(|s| {
        let a = s.spawn(|| Slapd::start(BASE_DN, PEOPLE));
        let b = s.spawn(|| Slapd::start("o=tenant", "dn: uid=tina,o=tenant\nobjectClass: account\nuid: tina\n"));
        (joined(a), joined(b))
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
    assert!(a.search("(uid=alex)", &["uid"]).contains("uid: alex"));
    assert!(b.search("(uid=tina)", &["uid"]).contains("dn: uid=tina,o=tenant"));
    assert_eq!(b.search("(uid=alex)", &["uid"]).trim(), "", "the second directory has its own entries");
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

// SPEC I6: scripts/test provisions Redis. The harness runs it unprivileged on 127.0.0.1
// with a password; redis-cli writes and reads back, a client without the password is
// refused; a restart (same port) starts empty (nothing is persisted); paused, a bounded
// PING times out, resumed, it answers; dropped while paused, no process is left.
#[test]
fn redis_round_trip_restart_pause_and_drop() {
    let mut redis = Redis::start_with_password("tower-redis-secret");
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://:tower-redis-secret@127.0.0.1:{port}"));
    assert_unprivileged(redis.pid(), redis.dir(), "Redis");

    assert_eq!(redis.cli(&["SET", "session:1", "alex"]), "OK");
    assert_eq!(redis.cli(&["GET", "session:1"]), "alex");
    assert_eq!(redis.cli(&["INCR", "logins"]), "1");
    let refused = redis.cli_without_password(&["GET", "session:1"]).unwrap();
    assert!(refused.contains("NOAUTH"), "{refused}");

    let before = redis.pid();
    redis.restart();
    assert_gone(before, "the Redis stopped for the restart");
    assert_eq!((redis.port(), redis.cli(&["GET", "session:1"])), (port, String::new()), "a restart starts empty");

    redis.pause();
    assert_times_out(redis.ping(PAUSED), "Redis");
    redis.resume();
    redis.ping(RESUMED).unwrap();
    assert_eq!(redis.cli(&["SET", "session:2", "bob"]), "OK");

    redis.pause();
    let pid = redis.pid();
    drop(redis);
    assert_gone(pid, "a paused Redis");
}

// SPEC I6: two Redis servers run side by side, with separate data.
#[test]
fn two_redis_servers_side_by_side() {
    let (a, b) = (Redis::start(), Redis::start());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
    assert_eq!(a.url(), format!("redis://127.0.0.1:{}", a.port()));
    assert_eq!(a.cli(&["SET", "k", "a"]), "OK");
    assert_eq!(b.cli(&["GET", "k"]), "");
}

// ---------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------

// SPEC I6: a test that panics while its server runs leaves no process behind (the server is
// dropped while the test unwinds).
#[test]
fn a_panicking_test_leaves_no_server_behind() {
    let (pid_sender, pid) = mpsc::channel();
    let outcome = thread::spawn(move || {
        let redis = Redis::start();
        pid_sender.send(redis.pid()).unwrap();
        panic!("this panic is the test: Redis must not outlive it");
    })
    .join();
    assert!(outcome.is_err());
    assert_gone(pid.recv().unwrap(), "the Redis of a panicking test");
}

// SPEC I6: PostgreSQL dropped while paused, with a client's backend open (a test that
// failed between pause and resume), leaves no process behind: the backends called setsid
// and are outside the postmaster's group, so they are continued by their own ids first
// (else they stayed stopped forever, orphaned).
#[test]
fn postgres_dropped_while_paused_leaves_no_backend_behind() {
    let mut pg = Postgres::start();
    let mut client = pg.psql_command();
    client.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let mut client = client.spawn().unwrap(); // holds a backend open: psql waits on stdin
    let deadline = Instant::now() + Duration::from_secs(5);
    while pg.backend_pids().len() < 6 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let backends = pg.backend_pids();
    pg.pause();
    let pid = pg.pid();
    drop(pg);
    assert_gone(pid, "PostgreSQL");
    let deadline = Instant::now() + Duration::from_secs(5);
    while backends.iter().any(|b| Path::new(&format!("/proc/{b}")).exists()) {
        let left: Vec<_> = backends.iter().filter(|b| Path::new(&format!("/proc/{b}")).exists()).collect();
        assert!(Instant::now() < deadline, "backends left behind: {left:?}");
        thread::sleep(Duration::from_millis(50));
    }
    let _ = client.kill();
    let _ = client.wait();
}

// SPEC I6: a test whose server is missing fails, naming scripts/test (it never skips): each
// server test above, run again with its binary pointed at a path that does not exist.
#[test]
fn a_missing_server_fails_the_test_naming_scripts_test() {
    let cases = [
        ("TOWER_SECURE_PG_BIN", "two_postgres_servers_side_by_side"),
        ("TOWER_SECURE_SLAPD", "two_slapd_servers_side_by_side"),
        ("TOWER_SECURE_LDAP_BIN", "two_slapd_servers_side_by_side"),
        ("TOWER_SECURE_REDIS_SERVER", "two_redis_servers_side_by_side"),
        ("TOWER_SECURE_REDIS_CLI", "two_redis_servers_side_by_side"),
    ];
    for (var, test) in cases {
        let mut again = Command::new(std::env::current_exe().unwrap());
        again.args(["--exact", test, "--test-threads=1"]).env(var, "/nonexistent/tower-secure");
        let run = run_bounded(&mut again, b"", Duration::from_secs(60)).unwrap();
        let printed = format!("{}{}", run.stdout, run.stderr);
        assert!(!run.status.success() && printed.contains("1 failed"), "{test} with {var} missing:\n{printed}");
        assert!(
            printed.contains(&format!("{var}=/nonexistent/tower-secure")) && printed.contains("run `scripts/test`"),
            "{test} with {var} missing should fail naming the variable and scripts/test:\n{printed}"
        );
    }
}
