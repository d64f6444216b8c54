//! The example binaries as servers of a test: started on 127.0.0.1:0, their base URL read
//! from their banner, killed when the test ends.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

/// Kills the server when the test ends, whatever happens. Holds the server's stdout open
/// for its whole life: closing it early would make the server's next `println!` fail with
/// EPIPE and panic, killing it mid-test.
pub struct Server {
    pub child: Child,
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// The next line the server prints (without its newline); empty at the end.
    pub fn read_line(&mut self) -> String {
        let mut line = String::new();
        let _ = self._stdout.read_line(&mut line);
        line.trim_end().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn example_binary(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Starts example `name` with `args` on 127.0.0.1:0; returns the server and the base URL
/// its banner (first line) ends with.
pub fn start_example(name: &str, args: &[&str]) -> (Server, String) {
    start_example_with(name, args, &[])
}

/// [`start_example`] with extra environment variables.
pub fn start_example_with(name: &str, args: &[&str], env: &[(&str, &str)]) -> (Server, String) {
    let mut child = Command::new(example_binary(name))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_URL_FILE")
        .env_remove("LDAP_URL")
        .env_remove("LDAP_BIND_PASSWORD")
        .env_remove("REDIS_URL")
        .envs(env.iter().copied())
        .env("ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove("TOWER_SECURE_DEPLOYMENT")
        .env_remove("TOWER_SECURE_USERS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the examples are built by `cargo test`");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first_line = String::new();
    stdout.read_line(&mut first_line).unwrap();
    let mut server = Server { child, _stdout: stdout };
    let base = first_line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    if !base.starts_with("http://127.0.0.1:") && !base.starts_with("https://127.0.0.1:") {
        let _ = server.child.kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = server.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        panic!("example {name} did not start: stdout {first_line:?}, stderr {stderr:?}");
    }
    (server, base)
}
