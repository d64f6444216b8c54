//! Real servers for the user-store and state-backend tests: PostgreSQL, OpenLDAP's slapd
//! and Redis, each a private process that this harness starts (SPEC I6: `scripts/test`
//! installs them).
//!
//! Every instance lives in a temporary directory of its own and listens on 127.0.0.1 only,
//! on a free port (127.0.0.1:0 bound, then released; a clash at the server's own bind is
//! retried on another port). The server is the leader of its own process group:
//! `pause`/`resume` stop and continue the whole group (SIGSTOP/SIGCONT), `stop` asks the
//! leader to shut down, kills whatever is left of the group and reaps the leader. `Drop`
//! stops, so a panicking test leaves no process behind. Signals go by process id, never by
//! name.
//!
//! As root (CI), the servers run as the unprivileged account `tower-secure-test` that
//! `scripts/test` creates (PostgreSQL refuses to run as root), through `setpriv`, which
//! execs the server: the id the harness holds is the server's. The temporary directory
//! belongs to that account. Clients (psql, ldapsearch, redis-cli) run as the test itself.
//!
//! Everything that waits is bounded: a start waits at most [`START_TIMEOUT`] until the
//! server answers its own client, a stop [`STOP_TIMEOUT`] before SIGKILL, a client command
//! [`CLIENT_TIMEOUT`]. A failure names the server and shows the end of its log.
//!
//! The binaries come from the environment that `scripts/test` exports (`scripts/test
//! --provision` prints it): `TOWER_SECURE_PG_BIN`, `TOWER_SECURE_SLAPD`,
//! `TOWER_SECURE_LDAP_BIN`, `TOWER_SECURE_REDIS_SERVER`, `TOWER_SECURE_REDIS_CLI`,
//! `TOWER_SECURE_SERVER_USER`; unset, the Debian paths. A test that needs one that is
//! missing fails, naming `scripts/test`: it never skips.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a start waits for the server to answer its own client.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for the server to shut down before it kills the process group.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a client command (psql, ldapadd, redis-cli, ...) may run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);
/// Starts on a port another process took first, before giving up.
const PORT_TRIES: usize = 5;
const RUN_THE_SCRIPT: &str = "run `scripts/test` (or `scripts/test --provision` once, then cargo test)";
/// The unprivileged account the servers run as when the tests run as root.
pub const DEFAULT_SERVER_USER: &str = "tower-secure-test";

// ---------------------------------------------------------------------------------------
// What scripts/test provisions
// ---------------------------------------------------------------------------------------

/// The path in `var`, or else `default`; fails, naming scripts/test, when it does not exist.
fn provisioned(var: &str, what: &str, debian: &str, default: Option<PathBuf>) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.exists(),
                "{var}={} does not exist: this test needs {what}, which scripts/test provisions \
                 (Debian: apt-get install {debian}); {RUN_THE_SCRIPT}",
                path.display()
            );
            path
        }
        None => default.filter(|path| path.exists()).unwrap_or_else(|| {
            panic!("this test needs {what}, which scripts/test installs (Debian: apt-get install {debian}): {RUN_THE_SCRIPT}")
        }),
    }
}

/// `dir/name`, which must exist (`var` named `dir`).
fn tool(dir: &Path, name: &str, var: &str, debian: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing ({var}={}): scripts/test installs it (Debian: apt-get install {debian}); {RUN_THE_SCRIPT}",
        path.display(),
        dir.display()
    );
    path
}

/// PostgreSQL's bin directory: `TOWER_SECURE_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn pg_bin() -> PathBuf {
    let version = |bin: &Path| -> Vec<u32> {
        let name = bin.parent().and_then(Path::file_name).and_then(|n| n.to_str()).unwrap_or("");
        name.split('.').map(|part| part.parse().unwrap_or(0)).collect()
    };
    let newest = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| bin.join("initdb").is_file())
        .max_by_key(|bin| version(bin));
    let what = "PostgreSQL (initdb, postgres, pg_isready, psql)";
    let bin = provisioned("TOWER_SECURE_PG_BIN", what, "postgresql", newest);
    for name in ["initdb", "postgres", "pg_isready", "psql"] {
        tool(&bin, name, "TOWER_SECURE_PG_BIN", "postgresql");
    }
    bin
}

/// OpenLDAP's server: `TOWER_SECURE_SLAPD`, else `/usr/sbin/slapd`.
pub fn slapd_binary() -> PathBuf {
    provisioned("TOWER_SECURE_SLAPD", "OpenLDAP's slapd", "slapd", Some("/usr/sbin/slapd".into()))
}

/// An OpenLDAP client (`ldapadd`, `ldapsearch`, ...) in `TOWER_SECURE_LDAP_BIN`, else `/usr/bin`.
pub fn ldap_tool(name: &str) -> PathBuf {
    let what = "the OpenLDAP clients (ldapadd, ldapsearch)";
    let dir = provisioned("TOWER_SECURE_LDAP_BIN", what, "ldap-utils", Some("/usr/bin".into()));
    tool(&dir, name, "TOWER_SECURE_LDAP_BIN", "ldap-utils")
}

/// The schemas slapd loads (core, cosine, inetorgperson, nis), installed with slapd.
const LDAP_SCHEMA_DIR: &str = "/etc/ldap/schema";
const LDAP_SCHEMAS: [&str; 4] = ["core", "cosine", "inetorgperson", "nis"];

pub fn redis_server_binary() -> PathBuf {
    provisioned("TOWER_SECURE_REDIS_SERVER", "redis-server", "redis-server", Some("/usr/bin/redis-server".into()))
}

pub fn redis_cli_binary() -> PathBuf {
    provisioned("TOWER_SECURE_REDIS_CLI", "redis-cli", "redis-tools", Some("/usr/bin/redis-cli".into()))
}

/// The account the servers run as.
#[derive(Clone, Debug)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// `None` when the tests do not run as root (the servers then run as the test's own user);
/// as root, `TOWER_SECURE_SERVER_USER` or [`DEFAULT_SERVER_USER`], which must exist.
pub fn server_account() -> Option<Account> {
    static ACCOUNT: OnceLock<Option<Account>> = OnceLock::new();
    ACCOUNT
        .get_or_init(|| {
            // /proc/self belongs to the process's effective user.
            let euid = fs::metadata("/proc/self").expect("/proc is mounted").uid();
            if euid != 0 {
                return None;
            }
            let name = std::env::var("TOWER_SECURE_SERVER_USER").unwrap_or_else(|_| DEFAULT_SERVER_USER.into());
            let passwd = fs::read_to_string("/etc/passwd").expect("/etc/passwd is readable");
            let fields =
                passwd.lines().map(|line| line.split(':').collect::<Vec<_>>()).find(|f| f.len() > 3 && f[0] == name);
            let Some(fields) = fields else {
                panic!(
                    "the tests run as root, so the servers run as the unprivileged account `{name}`, which does not \
                     exist: scripts/test creates it; {RUN_THE_SCRIPT}"
                )
            };
            let (uid, gid) = (fields[2].parse().unwrap(), fields[3].parse().unwrap());
            assert_ne!(uid, 0, "the account `{name}` is root: the servers must run unprivileged");
            Some(Account { name, uid, gid })
        })
        .clone()
}

/// A temporary directory for one server, owned by the server's account.
fn server_dir(name: &str) -> TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("tower-secure-{name}-"))
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temporary directory for {name}: {e}"));
    give_to_server_account(dir.path());
    dir
}

/// Hands `path` (and everything below it) to the server's account, when there is one.
fn give_to_server_account(path: &Path) {
    let Some(account) = server_account() else { return };
    std::os::unix::fs::chown(path, Some(account.uid), Some(account.gid))
        .unwrap_or_else(|e| panic!("cannot give {} to {}: {e}", path.display(), account.name));
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path).unwrap() {
            give_to_server_account(&entry.unwrap().path());
        }
    }
}

/// A command of the server side: `program` as the server's account, in `dir`.
fn server_command(program: &Path, dir: &Path) -> Command {
    let mut command = match server_account() {
        Some(account) => {
            // setpriv execs `program`: no process in between, the child's id is the server's.
            let mut command = Command::new("setpriv");
            command
                .arg(format!("--reuid={}", account.uid))
                .arg(format!("--regid={}", account.gid))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            command
        }
        None => Command::new(program),
    };
    command.current_dir(dir).env("HOME", dir);
    command
}

/// A free port on 127.0.0.1 (bound, then released for the server).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// Bounded client commands
// ---------------------------------------------------------------------------------------

/// What a command printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with `input` on its standard input for at most `timeout` (then kills it).
/// `Err` says why it could not run or did not finish, with what it printed.
pub fn run_bounded(command: &mut Command, input: &[u8], timeout: Duration) -> Result<Run, String> {
    let shown =
        format!("{:?}", command.get_program()) + &command.get_args().map(|a| format!(" {a:?}")).collect::<String>();
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input); // closed when dropped
    });
    let read_all = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().unwrap()));
    let stderr = read_all(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(e) => return Err(format!("cannot wait for {shown}: {e}")),
        }
    };
    let _ = writer.join();
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    match status {
        Some(status) => Ok(Run { status, stdout, stderr }),
        None => Err(format!("{shown} did not finish within {timeout:?} (killed); it printed: {stdout}{stderr}")),
    }
}

/// [`run_bounded`] with [`CLIENT_TIMEOUT`]: the standard output of a successful run, or
/// `Err` with the status and everything it printed.
fn run_client(mut command: Command, input: &[u8]) -> Result<String, String> {
    let run = run_bounded(&mut command, input, CLIENT_TIMEOUT)?;
    if run.status.success() {
        Ok(run.stdout)
    } else {
        Err(format!("{:?} failed ({}): {}{}", command.get_program(), run.status, run.stdout, run.stderr))
    }
}

// ---------------------------------------------------------------------------------------
// Processes by id
// ---------------------------------------------------------------------------------------

/// Sends `signal` (a name: STOP, CONT, TERM, INT, KILL) to `target`: a process id, or
/// `-pgid` for a whole process group. The shell's `kill` is always there; errors (no such
/// process) are expected after an exit and ignored.
fn send_signal(signal: &str, target: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -s {signal} -- {target} 2>/dev/null"))
        .stdin(Stdio::null())
        .status();
}

/// The state letter of process `pid` (`R`, `S`, `T`, `Z`, ...), `None` when it is gone.
pub fn process_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The processes in process group `pgid`, zombies included.
pub fn process_group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // After "pid (comm)": state, ppid, pgrp, ...
        let fields: Vec<&str> =
            stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        if fields.get(2).and_then(|pgrp| pgrp.parse::<u32>().ok()) == Some(pgid) {
            members.push(pid);
        }
    }
    members
}

/// The real user id of process `pid`.
pub fn process_uid(pid: u32) -> u32 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|line| line.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Why a start failed.
enum StartFailure {
    /// Another process took the port first: try another.
    PortInUse,
    Failed(String),
}

/// One server process in a temporary directory: the leader of its own process group,
/// its output appended to `server.log` there. Stopped when dropped.
struct Daemon {
    name: &'static str,
    program: PathBuf,
    args: Vec<OsString>,
    port: u16,
    /// The signal asking for a clean shutdown (PostgreSQL: INT, a fast shutdown).
    stop_signal: &'static str,
    child: Option<Child>,
    dir: TempDir,
}

/// Checks that the server on `port` with process id `pid` answers: its own client, and a
/// check that it is this process and not another on the same port.
type Ready<'a> = &'a dyn Fn(u16, u32) -> bool;

impl Daemon {
    fn new(name: &'static str, dir: TempDir, program: PathBuf, stop_signal: &'static str) -> Daemon {
        Daemon { name, program, args: Vec::new(), port: 0, stop_signal, child: None, dir }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log (everything it wrote to stdout and stderr, every run).
    fn log(&self) -> String {
        fs::read(self.log_path()).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// The last lines of the log from byte `from` on.
    fn log_tail(&self, from: usize) -> String {
        let log = self.log();
        let new = log.get(from..).unwrap_or(&log);
        let lines: Vec<&str> = new.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap_or_else(|| panic!("{} is not running", self.name)).id()
    }

    /// Starts on a free port, retried on another when the server finds it taken.
    fn start_on_free_port(&mut self, args: impl Fn(u16) -> Vec<OsString>, ready: Ready) {
        for attempt in 1..=PORT_TRIES {
            let port = free_port();
            self.port = port;
            self.args = args(port);
            match self.launch(ready) {
                Ok(()) => return,
                Err(StartFailure::PortInUse) if attempt < PORT_TRIES => continue,
                Err(StartFailure::PortInUse) => panic!("{}: every port tried was taken", self.name),
                Err(StartFailure::Failed(why)) => panic!("{why}"),
            }
        }
    }

    /// Spawns the server (on `self.port`) and waits, bounded, until `ready`.
    fn launch(&mut self, ready: Ready) -> Result<(), StartFailure> {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log_start = self.log().len();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path().display()));
        let mut command = server_command(&self.program, self.dir.path());
        command.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).process_group(0);
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {} ({:?}): {e}", self.name, command));
        let pid = child.id();
        self.child = Some(child);
        let started = Instant::now();
        loop {
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if let Some(status) = exited {
                self.child = None;
                let log = self.log_tail(log_start);
                if log.contains("Address already in use") {
                    return Err(StartFailure::PortInUse);
                }
                return Err(StartFailure::Failed(format!(
                    "{} on port {} exited while starting ({status}); its log ({}):\n{log}",
                    self.name,
                    self.port,
                    self.log_path().display()
                )));
            }
            if ready(self.port, pid) {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                self.stop();
                return Err(StartFailure::Failed(format!(
                    "{} on port {} did not answer within {START_TIMEOUT:?}; its log ({}):\n{}",
                    self.name,
                    self.port,
                    self.log_path().display(),
                    self.log_tail(log_start)
                )));
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Asks the server to shut down (continuing it first, should it be paused), waits at most
    /// [`STOP_TIMEOUT`] for the leader to exit, kills what is left of its process group
    /// (all of it after a timeout), then reaps the leader. Nothing when not running.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id();
        send_signal("CONT", &format!("-{pid}"));
        send_signal(self.stop_signal, &pid.to_string());
        let deadline = Instant::now() + STOP_TIMEOUT;
        // The leader is our child: until it is reaped its id (and so the group's) stays taken.
        while !matches!(process_state(pid), None | Some('Z') | Some('X')) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(20));
        }
        send_signal("KILL", &format!("-{pid}"));
        let _ = child.wait();
    }

    /// Stops the server, then starts it again with the same port, directory and arguments.
    fn restart(&mut self, ready: Ready) {
        self.stop();
        match self.launch(ready) {
            Ok(()) => {}
            Err(StartFailure::PortInUse) => panic!("{}: port {} was taken while it was stopped", self.name, self.port),
            Err(StartFailure::Failed(why)) => panic!("restarting: {why}"),
        }
    }

    /// Stops (SIGSTOP) the whole process group, and waits until the leader is stopped.
    fn pause(&mut self) {
        let pid = self.pid();
        send_signal("STOP", &format!("-{pid}"));
        self.wait_state(pid, |state| state == 'T', "stopped");
    }

    /// Continues (SIGCONT) the whole process group, and waits until the leader runs.
    fn resume(&mut self) {
        let pid = self.pid();
        send_signal("CONT", &format!("-{pid}"));
        self.wait_state(pid, |state| state != 'T', "continued");
    }

    fn wait_state(&self, pid: u32, wanted: impl Fn(char) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !process_state(pid).is_some_and(&wanted) {
            assert!(Instant::now() < deadline, "{} (pid {pid}) was not {what} within 5 s", self.name);
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends `request` to 127.0.0.1:`port` and reads the start of the answer, everything bounded
/// by `timeout`; `Err` (TimedOut or WouldBlock) when the server does not answer in time.
fn round_trip(port: u16, request: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request)?;
    let mut answer = vec![0u8; 64];
    let n = stream.read(&mut answer)?;
    if n == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection without answering"));
    }
    answer.truncate(n);
    Ok(answer)
}

fn unexpected(server: &str, answer: &[u8]) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{server} answered {answer:?}"))
}

// ---------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------

/// A PostgreSQL server of its own (initdb in a temporary directory): TCP on 127.0.0.1 only
/// (no Unix socket), every connection authenticated with SCRAM-SHA-256, the superuser
/// [`Postgres::USER`] / [`Postgres::PASSWORD`] and the database [`Postgres::DATABASE`].
pub struct Postgres {
    daemon: Daemon,
    bin: PathBuf,
    /// Connections must use TLS ([`Postgres::start_with_tls`]).
    tls: bool,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres").field("url", &self.url()).field("dir", &self.daemon.dir.path()).finish()
    }
}

impl Postgres {
    pub const USER: &'static str = "tower";
    pub const PASSWORD: &'static str = "tower-pg-secret";
    pub const DATABASE: &'static str = "tower_secure";

    /// initdb, start, wait until `SELECT 1` answers, create [`Postgres::DATABASE`].
    pub fn start() -> Postgres {
        Self::start_with(None)
    }

    /// [`Postgres::start`] with TLS required of every connection (`hostssl` only), the
    /// server presenting `certificate` (PEM chain) with `key` (PEM).
    pub fn start_with_tls(certificate: &str, key: &str) -> Postgres {
        Self::start_with(Some((certificate, key)))
    }

    fn start_with(tls: Option<(&str, &str)>) -> Postgres {
        let bin = pg_bin();
        let dir = server_dir("postgres");
        let data = dir.path().join("data");
        let password_file = dir.path().join("password");
        fs::write(&password_file, format!("{}\n", Self::PASSWORD)).unwrap();
        give_to_server_account(&password_file);
        let mut initdb = server_command(&bin.join("initdb"), dir.path());
        initdb
            .arg("--pgdata")
            .arg(&data)
            .args(["--username", Self::USER, "--auth", "scram-sha-256", "--encoding", "UTF8", "--locale", "C"])
            .arg(format!("--pwfile={}", password_file.display()))
            .args(["--no-sync", "--no-instructions"]);
        match run_bounded(&mut initdb, b"", START_TIMEOUT) {
            Ok(run) if run.status.success() => {}
            Ok(run) => panic!("PostgreSQL's initdb failed ({}):\n{}{}", run.status, run.stdout, run.stderr),
            Err(why) => panic!("PostgreSQL's initdb: {why}"),
        }
        // 127.0.0.1 only, passwords (SCRAM) for everyone, no Unix socket; with TLS, over TLS only.
        let connection = if tls.is_some() { "hostssl" } else { "host" };
        fs::write(
            data.join("pg_hba.conf"),
            format!("# TYPE DATABASE USER ADDRESS METHOD\n{connection} all all 127.0.0.1/32 scram-sha-256\n"),
        )
        .unwrap();
        let mut conf = OpenOptions::new().append(true).open(data.join("postgresql.conf")).unwrap();
        conf.write_all(
            b"\n# tests/common/servers.rs\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\n\
              max_connections = 40\nshared_buffers = 16MB\n",
        )
        .unwrap();
        if let Some((certificate, key)) = tls {
            fs::write(data.join("server.crt"), certificate).unwrap();
            fs::write(data.join("server.key"), key).unwrap();
            // PostgreSQL refuses a key others may read.
            fs::set_permissions(data.join("server.key"), fs::Permissions::from_mode(0o600)).unwrap();
            conf.write_all(b"ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n").unwrap();
        }
        give_to_server_account(&data);

        let mut daemon = Daemon::new("PostgreSQL", dir, bin.join("postgres"), "INT");
        let args = |port: u16| vec!["-D".into(), data.clone().into(), "-p".into(), port.to_string().into()];
        daemon.start_on_free_port(args, &Self::ready_check(&bin, &data, tls.is_some()));
        let postgres = Postgres { daemon, bin, tls: tls.is_some() };
        postgres.psql_in("postgres", &format!("CREATE DATABASE {}", Self::DATABASE));
        postgres
    }

    /// Ready: pg_isready, then `SHOW data_directory` names this server's directory.
    fn ready_check(bin: &Path, data: &Path, tls: bool) -> impl Fn(u16, u32) -> bool {
        let (bin, data) = (bin.to_path_buf(), data.to_path_buf());
        move |port, _pid| {
            let mut isready = Command::new(bin.join("pg_isready"));
            isready.args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "2"]);
            if !run_bounded(&mut isready, b"", Duration::from_secs(5)).is_ok_and(|run| run.status.success()) {
                return false;
            }
            let answer = run_client(psql_command(&bin, port, "postgres", tls), b"SHOW data_directory");
            answer.is_ok_and(|dir| Path::new(dir.trim()) == data)
        }
    }

    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    /// `postgres://tower:tower-pg-secret@127.0.0.1:PORT/tower_secure`
    pub fn url(&self) -> String {
        format!("postgres://{}:{}@127.0.0.1:{}/{}", Self::USER, Self::PASSWORD, self.port(), Self::DATABASE)
    }

    /// The postmaster's process id (the leader of the server's process group).
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn dir(&self) -> &Path {
        self.daemon.dir.path()
    }

    /// Everything the server logged, every run.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// psql on [`Postgres::DATABASE`] as the superuser, quiet, unaligned, tuples only,
    /// stopping at the first error; SQL on its standard input.
    pub fn psql_command(&self) -> Command {
        psql_command(&self.bin, self.port(), Self::DATABASE, self.tls)
    }

    /// Runs `sql` (one or more statements) and returns what psql printed (rows as
    /// `a|b`, one a line); fails the test, with psql's message, on an error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(Self::DATABASE, sql)
    }

    /// [`Postgres::psql`] that returns the error instead.
    pub fn try_psql(&self, sql: &str) -> Result<String, String> {
        run_client(self.psql_command(), sql.as_bytes()).map(|out| out.trim_end().to_string())
    }

    fn psql_in(&self, database: &str, sql: &str) -> String {
        let out = run_client(psql_command(&self.bin, self.port(), database, self.tls), sql.as_bytes());
        out.unwrap_or_else(|why| panic!("PostgreSQL on port {}: {sql:?}: {why}", self.port())).trim_end().to_string()
    }

    /// A protocol round trip over TCP (SSLRequest, answered `N`), bounded by `timeout`.
    pub fn ping(&self, timeout: Duration) -> io::Result<()> {
        let answer = round_trip(self.port(), &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f], timeout)?;
        if matches!(answer[0], b'N' | b'S') {
            Ok(())
        } else {
            Err(unexpected("PostgreSQL", &answer))
        }
    }

    /// Fast shutdown (SIGINT), then whatever is left of the group is killed.
    /// Continues the backends first (a test that failed while the server was paused
    /// leaves them stopped, and they called setsid: the group's SIGCONT misses them, and
    /// they would outlive the postmaster, stopped), then stops the server.
    pub fn stop(&mut self) {
        if self.daemon.child.is_some() {
            for backend in self.backend_pids() {
                send_signal("CONT", &backend.to_string());
            }
        }
        self.daemon.stop();
    }

    /// Stops and starts again on the same port with the same data directory.
    pub fn restart(&mut self) {
        let ready = Self::ready_check(&self.bin, &self.dir().join("data"), self.tls);
        self.daemon.restart(&ready);
    }

    /// SIGSTOP to the postmaster and every backend: connections hang, nothing answers.
    /// Stops (SIGSTOP) the postmaster's process group and every backend: backends call
    /// setsid, so the group alone misses the connections already open.
    pub fn pause(&mut self) {
        self.daemon.pause();
        for backend in self.backend_pids() {
            send_signal("STOP", &backend.to_string());
        }
    }

    /// Continues the backends, then the postmaster's group.
    pub fn resume(&mut self) {
        for backend in self.backend_pids() {
            send_signal("CONT", &backend.to_string());
        }
        self.daemon.resume();
    }

    /// The postmaster's child processes (backends and background workers).
    pub fn backend_pids(&self) -> Vec<u32> {
        let pid = self.pid();
        let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children.split_whitespace().filter_map(|child| child.parse().ok()).collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// psql as the superuser; over TLS (not verified: the harness's own client) when `tls`.
fn psql_command(bin: &Path, port: u16, database: &str, tls: bool) -> Command {
    let mut psql = Command::new(bin.join("psql"));
    psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", Postgres::USER, "-d", database, "-f", "-"])
        .env("PGPASSWORD", Postgres::PASSWORD)
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGSSLMODE", if tls { "require" } else { "disable" });
    psql
}

// ---------------------------------------------------------------------------------------
// OpenLDAP (slapd)
// ---------------------------------------------------------------------------------------

/// An OpenLDAP server of its own: slapd with an mdb database under `base_dn`, configured by
/// a slapd.conf written here (schemas core, cosine, inetorgperson, nis), on
/// `ldap://127.0.0.1:PORT`, with the root DN `cn=admin,<base_dn>` / [`Slapd::ROOT_PASSWORD`].
pub struct Slapd {
    daemon: Daemon,
    base_dn: String,
    /// The `ldaps://` port, when started with TLS.
    tls_port: Option<u16>,
}

/// What [`Slapd::start_with`] adds to a plain server.
#[derive(Default)]
pub struct SlapdOptions {
    /// slapd.conf lines for the global section (`referral ...`, `require ...`).
    pub global_config: String,
    /// A server certificate chain and its key (PEM): StartTLS on the `ldap://` port and an
    /// `ldaps://` port besides.
    pub tls: Option<(String, String)>,
    /// Log every operation and its result to the server log (`-d stats`).
    pub log_operations: bool,
}

impl fmt::Debug for Slapd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slapd").field("url", &self.url()).field("base_dn", &self.base_dn).finish()
    }
}

impl Slapd {
    pub const ROOT_PASSWORD: &'static str = "tower-ldap-secret";

    /// Starts slapd for `base_dn`, creates the base entry unless `ldif` has it (for
    /// `dc=`, `o=` and `ou=` suffixes), then adds `ldif` (entries in LDIF, may be empty).
    pub fn start(base_dn: &str, ldif: &str) -> Slapd {
        Self::start_with(base_dn, ldif, &SlapdOptions::default())
    }

    /// [`Slapd::start`] with extra configuration and, optionally, TLS.
    pub fn start_with(base_dn: &str, ldif: &str, options: &SlapdOptions) -> Slapd {
        let slapd = slapd_binary();
        for tool in ["ldapsearch", "ldapadd", "ldapmodify"] {
            ldap_tool(tool);
        }
        for schema in LDAP_SCHEMAS {
            let path = Path::new(LDAP_SCHEMA_DIR).join(format!("{schema}.schema"));
            assert!(
                path.is_file(),
                "{} is missing: slapd's schemas come with it (Debian: apt-get install slapd); {RUN_THE_SCRIPT}",
                path.display()
            );
        }
        let dir = server_dir("slapd");
        let d = dir.path();
        fs::create_dir(d.join("db")).unwrap();
        let includes: String =
            LDAP_SCHEMAS.iter().map(|schema| format!("include {LDAP_SCHEMA_DIR}/{schema}.schema\n")).collect();
        let root_dn = format!("cn=admin,{base_dn}");
        let mut global = options.global_config.clone();
        if let Some((certificate, key)) = &options.tls {
            fs::write(d.join("server.pem"), certificate).unwrap();
            fs::write(d.join("server.key"), key).unwrap();
            global.push_str(&format!(
                "\nTLSCertificateFile {d}/server.pem\nTLSCertificateKeyFile {d}/server.key\n",
                d = d.display()
            ));
        }
        let config = format!(
            "# tests/common/servers.rs\n{includes}{global}\n\
             pidfile {d}/slapd.pid\nargsfile {d}/slapd.args\n\
             modulepath /usr/lib/ldap\nmoduleload back_mdb\n\
             database mdb\nmaxsize 268435456\nsuffix \"{base_dn}\"\nrootdn \"{root_dn}\"\nrootpw {password}\n\
             directory {d}/db\nindex objectClass eq\n",
            d = d.display(),
            password = Self::ROOT_PASSWORD,
        );
        fs::write(d.join("slapd.conf"), config).unwrap();
        give_to_server_account(d);

        let config = d.join("slapd.conf");
        let mut daemon = Daemon::new("slapd", dir, slapd, "TERM");
        // `-d none`: in the foreground (no fork), only the messages that are always logged.
        let tls_port = options.tls.as_ref().map(|_| free_port());
        let args = |port: u16| {
            let mut urls = format!("ldap://127.0.0.1:{port}/");
            if let Some(tls_port) = tls_port {
                urls.push_str(&format!(" ldaps://127.0.0.1:{tls_port}/"));
            }
            let debug = if options.log_operations { "stats" } else { "none" };
            vec!["-f".into(), config.clone().into(), "-h".into(), urls.into(), "-d".into(), debug.into()]
        };
        let ready = Self::ready_check(daemon.dir.path(), format!("cn=admin,{base_dn}"));
        daemon.start_on_free_port(args, &ready);
        let server = Slapd { daemon, base_dn: base_dn.to_string(), tls_port };
        if !ldif_has_entry(ldif, base_dn) {
            server.add_ldif(&base_entry(base_dn));
        }
        if !ldif.trim().is_empty() {
            server.add_ldif(ldif);
        }
        server
    }

    /// Ready: the pid file names this process (slapd writes it once it listens), and the
    /// root DSE answers a search as the root DN (anonymous ones may be refused).
    fn ready_check(dir: &Path, root_dn: String) -> impl Fn(u16, u32) -> bool {
        let pid_file = dir.join("slapd.pid");
        move |port, pid| {
            let written = fs::read_to_string(&pid_file).is_ok_and(|text| text.trim() == pid.to_string());
            written && {
                let mut search = Command::new(ldap_tool("ldapsearch"));
                search.args(["-x", "-LLL", "-o", "nettimeout=2", "-H", &format!("ldap://127.0.0.1:{port}")]);
                search.args(["-D", &root_dn, "-w", Self::ROOT_PASSWORD]);
                search.args(["-b", "", "-s", "base", "objectClass=*"]);
                run_bounded(&mut search, b"", Duration::from_secs(5)).is_ok_and(|run| run.status.success())
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    /// `ldap://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port())
    }

    /// `ldaps://127.0.0.1:PORT`, when started with TLS.
    pub fn ldaps_url(&self) -> String {
        let port = self.tls_port.expect("slapd was started without TLS (SlapdOptions::tls)");
        format!("ldaps://127.0.0.1:{port}")
    }

    pub fn base_dn(&self) -> &str {
        &self.base_dn
    }

    /// `cn=admin,<base_dn>`, who may write everything (password [`Slapd::ROOT_PASSWORD`]).
    pub fn root_dn(&self) -> String {
        format!("cn=admin,{}", self.base_dn)
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn dir(&self) -> &Path {
        self.daemon.dir.path()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// An OpenLDAP client (`ldapsearch`, `ldapadd`, `ldapmodify`, `ldapwhoami`, ...) aimed at
    /// this server and bound as the root DN; add its own arguments.
    pub fn client_command(&self, tool: &str) -> Command {
        let mut command = Command::new(ldap_tool(tool));
        command.args(["-x", "-o", "nettimeout=5", "-H", &self.url(), "-D", &self.root_dn(), "-w", Self::ROOT_PASSWORD]);
        command
    }

    /// Adds the entries in `ldif` (ldapadd as the root DN); fails the test on an error.
    pub fn add_ldif(&self, ldif: &str) {
        self.try_ldif("ldapadd", ldif).unwrap_or_else(|why| panic!("slapd on port {}: ldapadd: {why}", self.port()));
    }

    /// Applies the changes in `ldif` (ldapmodify as the root DN); fails the test on an error.
    pub fn modify_ldif(&self, ldif: &str) {
        self.try_ldif("ldapmodify", ldif)
            .unwrap_or_else(|why| panic!("slapd on port {}: ldapmodify: {why}", self.port()));
    }

    /// `tool` (`ldapadd` or `ldapmodify`) with `ldif` on its standard input.
    pub fn try_ldif(&self, tool: &str, ldif: &str) -> Result<String, String> {
        run_client(self.client_command(tool), ldif.as_bytes())
    }

    /// ldapsearch below the base DN (subtree) as the root DN: the entries in LDIF, lines
    /// unwrapped, without comments.
    pub fn search(&self, filter: &str, attributes: &[&str]) -> String {
        let mut search = self.client_command("ldapsearch");
        search.args(["-LLL", "-o", "ldif-wrap=no", "-b", &self.base_dn, filter]).args(attributes);
        run_client(search, b"")
            .unwrap_or_else(|why| panic!("slapd on port {}: ldapsearch {filter}: {why}", self.port()))
    }

    /// An LDAP round trip over TCP (an anonymous bind), bounded by `timeout`.
    pub fn ping(&self, timeout: Duration) -> io::Result<()> {
        // LDAPMessage { messageID 1, BindRequest { version 3, name "", simple "" } }
        let bind = [0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00];
        let answer = round_trip(self.port(), &bind, timeout)?;
        if answer[0] == 0x30 {
            Ok(())
        } else {
            Err(unexpected("slapd", &answer))
        }
    }

    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Stops and starts again on the same port with the same database.
    pub fn restart(&mut self) {
        let ready = Self::ready_check(self.dir(), self.root_dn());
        self.daemon.restart(&ready);
    }

    pub fn pause(&mut self) {
        self.daemon.pause();
    }

    pub fn resume(&mut self) {
        self.daemon.resume();
    }
}

/// Whether `ldif` has an entry named `dn` (compared without case and spaces after commas).
fn ldif_has_entry(ldif: &str, dn: &str) -> bool {
    let normal = |dn: &str| dn.split(',').map(|rdn| rdn.trim().to_ascii_lowercase()).collect::<Vec<_>>().join(",");
    ldif.lines().filter_map(|line| line.strip_prefix("dn:")).any(|name| normal(name) == normal(dn))
}

/// The suffix entry for a `dc=`, `o=` or `ou=` base DN.
fn base_entry(base_dn: &str) -> String {
    let first = base_dn.split(',').next().unwrap_or("");
    let (attribute, value) =
        first.split_once('=').map(|(a, v)| (a.trim().to_ascii_lowercase(), v.trim())).unwrap_or_default();
    match attribute.as_str() {
        "dc" => format!("dn: {base_dn}\nobjectClass: dcObject\nobjectClass: organization\ndc: {value}\no: {value}\n"),
        "o" => format!("dn: {base_dn}\nobjectClass: organization\no: {value}\n"),
        "ou" => format!("dn: {base_dn}\nobjectClass: organizationalUnit\nou: {value}\n"),
        _ => panic!(
            "Slapd::start: put the entry {base_dn} in the LDIF (the harness creates dc=, o= and ou= suffixes only)"
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------------------

/// A Redis server of its own, in memory only (`save ""`, `appendonly no`: a restart starts
/// empty), on 127.0.0.1, optionally with a password (`requirepass`).
pub struct Redis {
    daemon: Daemon,
    cli: PathBuf,
    password: Option<String>,
    /// With TLS: the port that speaks only TLS (the plain port stays for redis-cli).
    tls_port: Option<u16>,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redis").field("url", &self.url()).finish()
    }
}

impl Redis {
    /// Starts without a password.
    pub fn start() -> Redis {
        Self::launch(None, None)
    }

    /// Starts with `requirepass password`: every client must AUTH.
    pub fn start_with_password(password: &str) -> Redis {
        Self::launch(Some(password), None)
    }

    /// Starts with a TLS port as well ([`Redis::tls_url`]), presenting `certificate`
    /// (PEM chain) with `key` (PEM); clients present no certificate.
    pub fn start_with_tls(certificate: &str, key: &str) -> Redis {
        Self::launch(None, Some((certificate, key)))
    }

    fn launch(password: Option<&str>, tls: Option<(&str, &str)>) -> Redis {
        let (server, cli) = (redis_server_binary(), redis_cli_binary());
        let dir = server_dir("redis");
        let d = dir.path();
        let mut config = format!(
            "# tests/common/servers.rs\nbind 127.0.0.1\nprotected-mode yes\ndaemonize no\nlogfile \"\"\n\
             save \"\"\nappendonly no\ndir {}\n",
            d.display()
        );
        if let Some(password) = password {
            config.push_str(&format!("requirepass {password}\n"));
        }
        let tls_port = tls.map(|(certificate, key)| {
            fs::write(d.join("server.pem"), certificate).unwrap();
            fs::write(d.join("server.key"), key).unwrap();
            let port = free_port();
            config.push_str(&format!(
                "tls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-auth-clients no\n",
                d.join("server.pem").display(),
                d.join("server.key").display()
            ));
            port
        });
        fs::write(d.join("redis.conf"), config).unwrap();
        give_to_server_account(d);
        let config = d.join("redis.conf");
        let mut daemon = Daemon::new("Redis", dir, server, "TERM");
        let args = |port: u16| vec![config.clone().into(), "--port".into(), port.to_string().into()];
        daemon.start_on_free_port(args, &Self::ready_check(&cli, password));
        Redis { daemon, cli, password: password.map(str::to_string), tls_port }
    }

    /// Ready: `INFO server` over redis-cli names this process.
    fn ready_check(cli: &Path, password: Option<&str>) -> impl Fn(u16, u32) -> bool {
        let (cli, password) = (cli.to_path_buf(), password.map(str::to_string));
        move |port, pid| {
            let info = run_client(cli_command(&cli, port, password.as_deref(), &["INFO", "server"]), b"");
            info.is_ok_and(|info| info.lines().any(|line| line.trim() == format!("process_id:{pid}")))
        }
    }

    pub fn port(&self) -> u16 {
        self.daemon.port
    }

    /// `redis://127.0.0.1:PORT`, or `redis://:PASSWORD@127.0.0.1:PORT` with a password.
    pub fn url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port()),
            None => format!("redis://127.0.0.1:{}", self.port()),
        }
    }

    /// `rediss://127.0.0.1:TLS_PORT` (an address the test certificates carry).
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port.expect("started with start_with_tls"))
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    pub fn dir(&self) -> &Path {
        self.daemon.dir.path()
    }

    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// redis-cli aimed at this server (with the password, if any) running `args`; returns
    /// the reply as redis-cli prints it without a terminal (`OK`, `bar`, an empty line for
    /// nil, `ERR ...` for an error reply); fails the test when redis-cli fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = run_client(cli_command(&self.cli, self.port(), self.password.as_deref(), args), b"");
        out.unwrap_or_else(|why| panic!("Redis on port {}: redis-cli {args:?}: {why}", self.port()))
            .trim_end()
            .to_string()
    }

    /// redis-cli aimed at this server *without* the password, for tests of refusal.
    pub fn cli_without_password(&self, args: &[&str]) -> Result<String, String> {
        run_client(cli_command(&self.cli, self.port(), None, args), b"").map(|out| out.trim_end().to_string())
    }

    /// A RESP round trip over TCP (`PING`; `+PONG`, or `-NOAUTH` with a password), bounded.
    pub fn ping(&self, timeout: Duration) -> io::Result<()> {
        let answer = round_trip(self.port(), b"PING\r\n", timeout)?;
        if matches!(answer[0], b'+' | b'-') {
            Ok(())
        } else {
            Err(unexpected("Redis", &answer))
        }
    }

    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Stops and starts again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        let ready = Self::ready_check(&self.cli, self.password.as_deref());
        self.daemon.restart(&ready);
    }

    pub fn pause(&mut self) {
        self.daemon.pause();
    }

    pub fn resume(&mut self) {
        self.daemon.resume();
    }
}

fn cli_command(cli: &Path, port: u16, password: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new(cli);
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if let Some(password) = password {
        // REDISCLI_AUTH keeps the password off the command line (and redis-cli quiet about it).
        command.env("REDISCLI_AUTH", password);
    } else {
        command.env_remove("REDISCLI_AUTH");
    }
    command.args(args);
    command
}
