//! The README's flow, for real: the quickstart example binary (embedded config, users
//! with production argon2 parameters) driven by curl over 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};

/// Kills the server when the test ends, whatever happens. Holds the server's stdout open
/// for its whole life: closing it early would make the server's next `println!` fail with
/// EPIPE and panic, killing it mid-test.
struct Server {
    child: Child,
    _stdout: BufReader<ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_binary() -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/quickstart
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    profile_dir.join("examples").join(format!("quickstart{}", std::env::consts::EXE_SUFFIX))
}

fn start_quickstart() -> (Server, String) {
    let mut child = Command::new(example_binary())
        .env("ADDR", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .env_remove("TOWER_SECURE_DEPLOYMENT")
        .env_remove("TOWER_SECURE_USERS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the quickstart example is built by `cargo test`");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first_line = String::new();
    stdout.read_line(&mut first_line).unwrap();
    let mut server = Server { child, _stdout: stdout };
    let base = first_line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    if !base.starts_with("http://127.0.0.1:") {
        let _ = server.child.kill();
        let mut stderr = String::new();
        if let Some(mut pipe) = server.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
        }
        panic!("the quickstart did not start: stdout {first_line:?}, stderr {stderr:?}");
    }
    (server, base)
}

/// Runs curl with a time limit; returns (status, headers+body).
fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "20", "--noproxy", "*"])
        .args(args)
        .output()
        .expect("curl is installed (.ci/run installs it)");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    if status == 0 {
        text.push_str(&format!("\ncurl failed: {} {}", output.status, String::from_utf8_lossy(&output.stderr)));
    }
    (status, text)
}

// SPEC A3, A4, B2, C1, C3, E1: the README's curl session, step by step.
#[test]
fn readme_flow_with_curl() {
    let (_server, base) = start_quickstart();
    let challenges = format!("{base}/api/users/v1/42/challenges");

    let (status, text) = curl(&[&challenges]);
    assert_eq!(status, 401, "{text}");
    assert!(text.to_ascii_lowercase().contains("www-authenticate: basic realm=\"quickstart\""), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");

    let (status, text) = curl(&["-u", "alex:alex123", &challenges]);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"requested_by\":\"alex\""), "{text}");

    let (status, text) = curl(&["-u", "bob:bob123", &challenges]);
    assert_eq!(status, 403, "{text}");
    assert!(!text.to_ascii_lowercase().contains("www-authenticate"), "{text}");

    let (status, text) = curl(&["-u", "admin:admin", &challenges]);
    assert_eq!(status, 200, "admin holds /permission/admin, which covers the view permission: {text}");

    let (status, text) = curl(&[&format!("{base}/api/health")]);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"UP\""), "{text}");

    let (status, _) = curl(&["-u", "bob:wrong", &format!("{base}/api/health")]);
    assert_eq!(status, 401, "a bad credential on an open resource is still refused");

    let (status, _) = curl(&["--path-as-is", &format!("{base}/api/health/../admin/stats")]);
    assert_eq!(status, 400);

    let (status, _) = curl(&[&format!("{base}/api/anything-else")]);
    assert_eq!(status, 401, "secure by default");

    let (status, _) = curl(&["-u", "alex:alex123", &format!("{base}/api/admin/stats")]);
    assert_eq!(status, 403);
}
