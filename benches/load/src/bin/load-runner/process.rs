//! Child processes and what /proc says about them: the bench server (pinned with taskset,
//! killed when dropped) and the load generators (their CPU time read from /proc while
//! they are zombies, just before they are reaped).

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// User + system CPU time of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn process_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

/// The number on a line of /proc/PID/status (`VmHWM:` and the like are in KiB).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// `taskset -c CPUS program args...`
pub fn pinned(cpus: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("taskset");
    command.arg("-c").arg(cpus).arg(program);
    command
}

/// How long reading the server's allocation counter may take (connect, then the line).
const COUNTER_TIMEOUT: Duration = Duration::from_secs(2);

/// A running bench server; killed (by its pid, through `Child`) when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    /// Where the server answers its allocation count (its second stdout line).
    counter: SocketAddr,
}

impl Server {
    /// Starts `load-server MODE` pinned to `cpus` and waits for its first two stdout lines:
    /// the URL, then the allocation counter's address.
    pub fn start(mut command: Command, log: &Path) -> Result<Server, String> {
        let log_file = std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        command.stdout(Stdio::piped()).stderr(Stdio::from(log_file)).stdin(Stdio::null());
        let mut child = command.spawn().map_err(|e| format!("cannot start the server: {e}"))?;
        let stdout = child.stdout.take().ok_or("the server has no stdout")?;
        // One reader for both lines: the second may already sit in its buffer.
        let mut stdout = BufReader::new(stdout);
        let (mut first, mut second) = (String::new(), String::new());
        let read = stdout.read_line(&mut first).and_then(|n| Ok((n, stdout.read_line(&mut second)?)));
        let url = first.trim().to_owned();
        let counter = second.trim().parse::<SocketAddr>().ok().filter(|addr| addr.ip().is_loopback());
        match (read, counter) {
            (Ok((n, _)), Some(counter)) if n > 0 && url.contains("://127.0.0.1:") => Ok(Server { child, url, counter }),
            _ => {
                // It may still be running (it printed something else): stop it, then reap it.
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("the server did not announce its addresses; see {}", log.display()))
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's heap allocations so far (all threads), from its allocation
    /// counter; `None` when it cannot be read within a short timeout.
    pub fn allocations(&self) -> Option<u64> {
        let stream = TcpStream::connect_timeout(&self.counter, COUNTER_TIMEOUT).ok()?;
        stream.set_read_timeout(Some(COUNTER_TIMEOUT)).ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).ok()?;
        line.trim().parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished load generator printed, and the CPU time it used.
pub struct Finished {
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
    pub cpu_ticks: u64,
}

/// A load generator started in the background.
pub struct Generator {
    child: Child,
    stdout: std::thread::JoinHandle<String>,
    stderr: std::thread::JoinHandle<String>,
}

fn drain(stream: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stream) = stream {
            let _ = stream.read_to_string(&mut text);
        }
        text
    })
}

impl Generator {
    pub fn start(mut command: Command) -> Result<Generator, String> {
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null());
        let mut child = command.spawn().map_err(|e| format!("cannot start {command:?}: {e}"))?;
        let stdout = drain(child.stdout.take());
        let stderr = drain(child.stderr.take());
        Ok(Generator { child, stdout, stderr })
    }

    /// Waits for the generator to exit, reads its CPU time while it is a zombie, reaps it.
    pub fn finish(mut self, limit: Duration) -> Result<Finished, String> {
        let pid = self.child.id();
        let deadline = Instant::now() + limit;
        let mut cpu_ticks = 0;
        while let Some(state) = process_state(pid) {
            if state == 'Z' {
                cpu_ticks = self::cpu_ticks(pid).unwrap_or(0);
                break;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!("the load generator ran past {limit:?} and was stopped"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let status = self.child.wait().map_err(|e| format!("wait for the load generator: {e}"))?;
        let stdout = self.stdout.join().unwrap_or_default();
        let stderr = self.stderr.join().unwrap_or_default();
        Ok(Finished { stdout, stderr, success: status.success(), cpu_ticks })
    }
}

/// One HTTP/1.1 request over a fresh connection (plain HTTP only) with this Authorization
/// header; returns the status code. Primes a credential cache before concurrent load (64
/// first-seen Basic credentials at once would meet the hashing throttle) and checks the
/// mode answers 200 at all.
pub fn probe(url: &str, path: &str, auth: Option<&str>) -> Result<u16, String> {
    use std::io::{Read as _, Write as _};
    let host = url.strip_prefix("http://").ok_or_else(|| format!("not a plain HTTP URL: {url}"))?;
    let mut stream = std::net::TcpStream::connect(host).map_err(|e| format!("connect {host}: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| format!("socket: {e}"))?;
    let auth = auth.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream.read_to_string(&mut response).map_err(|e| format!("receive: {e}"))?;
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok());
    status.ok_or_else(|| format!("not an HTTP response: {response:?}"))
}
