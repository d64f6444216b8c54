//! The `tower-secure` command line, run as its users run it: the built binary with files on
//! disk, checked for exit codes and output. `check` reports every load error (SPEC B1),
//! `policy` prints the effective policy (SPEC B6), `hash-password` and `new-client-secret`
//! make users-file entries (SPEC A4, D1), `mint-token` signs development tokens the layer
//! accepts (SPEC A5, D1), and `dev-certs` writes a PKI that `openssl verify` and the crate's
//! TLS server accept (SPEC A8, A9).

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_secure::config::{load_users, Deployment};
use tower_secure::{Principal, SecureLayer};

const QUICKSTART_RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart/deployment.toml");
const QUICKSTART_USERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart/users.toml");
/// Every child process is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the CLI in `dir` with `args` and `stdin`; bounded by [`TIMEOUT`].
fn run_in(dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tower-secure"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the CLI is built for the tests");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let output = child.wait_with_output();
        let _ = done.send(());
        output
    });
    if finished.recv_timeout(TIMEOUT).is_err() {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        panic!("tower-secure {args:?} did not finish within {TIMEOUT:?}");
    }
    waiter.join().unwrap().unwrap()
}

/// Runs the CLI in a fresh directory that holds none of the files.
fn run(args: &[&str]) -> Output {
    let elsewhere = tempfile::tempdir().unwrap();
    run_in(elsewhere.path(), args, "")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "stdout: {}\nstderr: {}", stdout(output), stderr(output));
}

// ---------------------------------------------------------------------------------------
// Usage
// ---------------------------------------------------------------------------------------

// SPEC B6: `--help` lists the commands and each command's `--help` its usage (exit 0);
// no command, an unknown command or option is a usage error (exit 2).
#[test]
fn help_and_usage_errors() {
    let help = run(&["--help"]);
    assert_exit(&help, 0);
    let commands = ["check", "policy", "hash-password", "new-client-secret", "mint-token", "dev-certs"];
    for command in commands {
        assert!(stdout(&help).contains(command), "{command} in {}", stdout(&help));
        let own = run(&[command, "--help"]);
        assert_exit(&own, 0);
        assert!(stdout(&own).starts_with(&format!("usage: tower-secure {command}")), "{}", stdout(&own));
        assert_exit(&run(&[command, "-h"]), 0);
    }
    assert_exit(&run(&[]), 2);
    let unknown = run(&["frobnicate"]);
    assert_exit(&unknown, 2);
    assert!(stderr(&unknown).contains("unknown command `frobnicate`"), "{}", stderr(&unknown));
    let option = run(&["check", QUICKSTART_RULES, "--jsn"]);
    assert_exit(&option, 2);
    assert!(stderr(&option).contains("unknown option `--jsn`"), "{}", stderr(&option));
    assert_exit(&run(&["check"]), 2);
    assert_exit(&run(&["check", "a.toml", "b.toml"]), 2);
}

// ---------------------------------------------------------------------------------------
// check and policy
// ---------------------------------------------------------------------------------------

// SPEC B1: the quickstart's files check (exit 0) from any working directory.
#[test]
fn check_accepts_the_quickstart() {
    let output = run(&["check", QUICKSTART_RULES, "--users", QUICKSTART_USERS]);
    assert_exit(&output, 0);
    assert!(stdout(&output).starts_with("ok: "), "{}", stdout(&output));
    let json = run(&["check", QUICKSTART_RULES, "--users", QUICKSTART_USERS, "--json"]);
    assert_exit(&json, 0);
    assert_eq!(serde_json::from_slice::<Value>(&json.stdout).unwrap(), json!([]));
}

/// A rule file with a good rule and three broken ones, and a broken scope table.
const THREE_BROKEN: &str = r#"[[resource.access_control]]
context = "/health"
secure = false

[[resource.access_control]]
context = "no-slash"

[[resource.access_control]]
context = "/b"
permissions = ["relative"]

[[resource.access_control]]
context = "/c"
secure = false
scope = ["read"]

[[scope]]
name = "two words"
"#;

/// The 1-based line of the `n`th (0-based) line containing `needle`.
fn line_of_nth(text: &str, needle: &str, n: usize) -> u64 {
    let found = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).nth(n);
    found.unwrap_or_else(|| panic!("{needle:?} #{n} not in the text")).0 as u64 + 1
}

// SPEC B1: every load error is listed, not only the first: three broken rules and a broken
// scope table give four `file:line:column: key` lines (exit 1), and `--json` the same as a
// JSON array of {file, line, column, key, message}.
#[test]
fn check_lists_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.toml");
    std::fs::write(&path, THREE_BROKEN).unwrap();
    let file = path.to_str().unwrap();
    let expected = [
        (line_of_nth(THREE_BROKEN, "no-slash", 0), "context"),
        (line_of_nth(THREE_BROKEN, "relative", 0), "permissions"),
        // The third broken rule's `secure = false` is the second such line.
        (line_of_nth(THREE_BROKEN, "secure = false", 1), "secure"),
        (line_of_nth(THREE_BROKEN, "two words", 0), "name"),
    ];

    let output = run(&["check", file]);
    assert_exit(&output, 1);
    let text = stderr(&output);
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(file)).collect();
    assert_eq!(lines.len(), 4, "{text}");
    for ((line, key), printed) in expected.iter().zip(&lines) {
        assert!(printed.starts_with(&format!("{file}:{line}:")), "{printed} at line {line}");
        assert!(printed.contains(&format!("key `{key}`")), "{printed} about {key}");
    }
    assert!(text.contains("4 error(s)"), "{text}");

    let json = run(&["check", file, "--json"]);
    assert_exit(&json, 1);
    let errors: Value = serde_json::from_slice(&json.stdout).unwrap();
    let errors = errors.as_array().unwrap();
    assert_eq!(errors.len(), 4, "{errors:?}");
    for ((line, key), error) in expected.iter().zip(errors) {
        assert_eq!((error["file"].as_str(), error["line"].as_u64()), (Some(file), Some(*line)), "{error}");
        assert_eq!(error["key"], *key);
        assert!(error["column"].as_u64().is_some_and(|c| c >= 1) && error["message"].is_string(), "{error}");
    }

    // A TOML syntax error stops the parse: one error, at its line.
    std::fs::write(&path, "[[resource.access_control]\ncontext = \"/a\"\n").unwrap();
    let output = run(&["check", file, "--json"]);
    assert_exit(&output, 1);
    let errors: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((errors.as_array().map(Vec::len), errors[0]["line"].as_u64()), (Some(1), Some(1)), "{errors}");
}

// SPEC A10, B1: `--handler NAME` declares a plugin the app registers, so files naming it in
// `allowed_auth_handlers` and `[authentication.priorities]` check; without it, both are
// errors.
#[test]
fn check_knows_declared_plugin_handlers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.toml");
    let text = "[authentication.priorities]\napi_key = 5\n\n[[resource.access_control]]\ncontext = \"/reports\"\nallowed_auth_handlers = [\"api_key\", \"basic\"]\n";
    std::fs::write(&path, text).unwrap();
    let file = path.to_str().unwrap();
    let output = run(&["check", file, "--users", QUICKSTART_USERS, "--json"]);
    assert_exit(&output, 1);
    let errors: Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<&str> = errors.as_array().unwrap().iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(keys, ["api_key", "allowed_auth_handlers"], "{errors}");
    let output = run(&["check", file, "--users", QUICKSTART_USERS, "--handler", "api_key"]);
    assert_exit(&output, 0);
    assert!(stdout(&output).contains("api_key (5)"), "{}", stdout(&output));
}

/// Writes `conf/deployment.toml` in `root` with an `[oauth2_server]` (more keys of it in
/// `extra`) whose ES256 key is `keys/signing.pem`, named relatively; returns its path.
fn server_rules(root: &Path, issuer: &str, extra: &str) -> std::path::PathBuf {
    let conf = root.join("conf");
    std::fs::create_dir_all(conf.join("keys")).unwrap();
    common::openssl_genpkeys(&conf.join("keys"), &[("signing", common::EC_P256)]);
    let path = conf.join("deployment.toml");
    let text = format!(
        "[oauth2_server]\nissuer = \"{issuer}\"\n{extra}\n[[oauth2_server.key]]\nalgorithm = \"ES256\"\npem_file = \"keys/signing.pem\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

// SPEC B1, D1: a rule file names its key relative to itself: it checks from another
// working directory; a relative path that leads nowhere is an error at its key, naming the
// path as written.
#[test]
fn check_resolves_relative_paths_against_the_file() {
    let root = tempfile::tempdir().unwrap();
    let rules = server_rules(root.path(), "https://dev.example", "");
    let elsewhere = tempfile::tempdir().unwrap();
    assert_exit(&run_in(elsewhere.path(), &["check", rules.to_str().unwrap()], ""), 0);
    std::fs::rename(root.path().join("conf/keys/signing.pem"), root.path().join("conf/keys/moved.pem")).unwrap();
    let output = run_in(elsewhere.path(), &["check", rules.to_str().unwrap()], "");
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("key `pem_file`: cannot read keys/signing.pem"), "{}", stderr(&output));
}

// SPEC B6: `policy` prints the effective policy: a table, or JSON with `--json`; a file that
// does not load is reported as by `check`.
#[test]
fn policy_prints_the_effective_policy() {
    let table = run(&["policy", QUICKSTART_RULES, "--users", QUICKSTART_USERS]);
    assert_exit(&table, 0);
    assert!(stdout(&table).contains("/api/users/v1/{user_id}/challenges"), "{}", stdout(&table));
    let json = run(&["policy", QUICKSTART_RULES, "--users", QUICKSTART_USERS, "--json"]);
    assert_exit(&json, 0);
    let listing: Value = serde_json::from_slice(&json.stdout).unwrap();
    let contexts: Vec<&str> =
        listing["rules"].as_array().unwrap().iter().filter_map(|r| r["context"].as_str()).collect();
    assert!(contexts.contains(&"/api/health"), "{listing}");
    assert!(listing["handler_order"].as_array().is_some_and(|order| !order.is_empty()), "{listing}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.toml");
    std::fs::write(&path, THREE_BROKEN).unwrap();
    let broken = run(&["policy", path.to_str().unwrap()]);
    assert_exit(&broken, 1);
    assert!(stdout(&broken).is_empty() && stderr(&broken).contains("4 error(s)"), "{}", stderr(&broken));
}

// ---------------------------------------------------------------------------------------
// hash-password and new-client-secret
// ---------------------------------------------------------------------------------------

/// True when `phc` is an argon2id hash of `password` with argon2's default parameters.
fn verifies(phc: &str, password: &str) -> bool {
    let hash = PasswordHash::new(phc).unwrap();
    let params = argon2::Params::try_from(&hash).unwrap();
    let default = argon2::Params::default();
    hash.algorithm.as_str() == "argon2id"
        && (params.m_cost(), params.t_cost(), params.p_cost()) == (default.m_cost(), default.t_cost(), default.p_cost())
        && argon2::Argon2::default().verify_password(password.as_bytes(), &hash).is_ok()
}

// SPEC A4: `hash-password` prints an argon2id PHC string with argon2's default parameters,
// for a password given as an argument or read from standard input (never echoed); the
// users file accepts it; an empty password is refused.
#[test]
fn hash_password_from_argument_and_stdin() {
    let given = run(&["hash-password", "s3cret-arg"]);
    assert_exit(&given, 0);
    assert!(verifies(stdout(&given).trim(), "s3cret-arg"), "{}", stdout(&given));

    let dir = tempfile::tempdir().unwrap();
    let piped = run_in(dir.path(), &["hash-password"], "correct horse battery\n");
    assert_exit(&piped, 0);
    let phc = stdout(&piped).trim().to_owned();
    assert!(verifies(&phc, "correct horse battery"), "{phc}");
    assert!(!stdout(&piped).contains("horse") && !stderr(&piped).contains("horse"), "the password is echoed");
    let users = format!("[[user]]\nname = \"alex\"\npassword = \"{phc}\"\n");
    assert_eq!(load_users("users.toml", &users).unwrap().len(), 1);
    assert_ne!(phc, stdout(&run(&["hash-password", "correct horse battery"])).trim(), "a fresh salt each time");

    let empty = run_in(dir.path(), &["hash-password"], "\n");
    assert_exit(&empty, 1);
    assert!(stderr(&empty).contains("empty"), "{}", stderr(&empty));
}

/// Runs `hash-password` on a pseudo-terminal (Python's `pty`), types `password` at its
/// prompt, and returns everything the terminal showed.
const ON_A_TERMINAL: &str = r#"
import os, pty, select, sys, time
exe, password = sys.argv[1], sys.argv[2].encode()
pid, fd = pty.fork()
if pid == 0:
    os.execv(exe, [exe, "hash-password"])
shown, deadline, typed = b"", time.time() + 30, False
while time.time() < deadline:
    ready, _, _ = select.select([fd], [], [], 0.2)
    if ready:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    if not typed and b"password: " in shown:
        time.sleep(0.3)  # stty has turned echo off once the prompt is out; be generous
        os.write(fd, password + b"\n")
        typed = True
os.waitpid(pid, 0)
sys.stdout.write(shown.decode(errors="replace"))
"#;

// SPEC A4: on a terminal, `hash-password` asks for the password and never echoes it: the
// terminal shows the prompt and the hash, not the password.
#[test]
fn hash_password_on_a_terminal_does_not_echo() {
    let output = Command::new(common::python())
        .args(["-c", ON_A_TERMINAL, env!("CARGO_BIN_EXE_tower-secure"), "typed-on-a-tty-42"])
        .output()
        .expect("the test environment's Python");
    let shown = stdout(&output);
    assert!(shown.contains("password: "), "the prompt: {shown:?} {}", stderr(&output));
    let phc = shown.lines().find(|l| l.starts_with("$argon2id$")).unwrap_or_else(|| panic!("no hash: {shown:?}"));
    assert!(verifies(phc.trim(), "typed-on-a-tty-42"), "{phc}");
    assert!(!shown.contains("typed-on-a-tty-42"), "the password was echoed: {shown:?}");
}

// SPEC D1: `new-client-secret` prints a random 32-character secret of the characters
// form-urlencoding leaves alone, and the `secret = "..."` line of its argon2id hash, which
// a `[[client]]` table accepts.
#[test]
fn new_client_secret_prints_a_secret_and_its_hash() {
    let output = run(&["new-client-secret"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    let secret = text.lines().find_map(|l| l.strip_prefix("secret: ")).unwrap();
    let line = text.lines().find(|l| l.starts_with("secret = \"")).unwrap();
    let phc = line.trim_start_matches("secret = \"").trim_end_matches('"');
    assert_eq!(secret.len(), 32);
    assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{secret}");
    assert!(verifies(phc, secret));
    let clients = tower_secure::config::load_clients("users.toml", &format!("[[client]]\nid = \"app\"\n{line}\n"));
    assert_eq!(clients.unwrap()[0].secret_hash, phc);
    let again = stdout(&run(&["new-client-secret"]));
    assert!(!again.contains(secret), "secrets repeat");
}

// ---------------------------------------------------------------------------------------
// mint-token
// ---------------------------------------------------------------------------------------

async fn me(caller: Principal) -> Json<Value> {
    Json(json!({ "user": caller.name().to_string(), "scopes": caller.scopes() }))
}

/// Serves `/api/me` (any caller) and `/api/reports` (scope `reports:read`) behind a layer
/// trusting `issuer` with the public key in `public_pem`, called `kid`.
async fn resource_server(issuer: &str, audience: &str, public_pem: &Path, kid: &str) -> String {
    let text = format!(
        "[[oauth2.issuer]]\nissuer = \"{issuer}\"\naudience = \"{audience}\"\nsubject_format = \"qualified\"\n\n[[oauth2.issuer.key]]\nkid = \"{kid}\"\nalgorithm = \"ES256\"\npem_file = '{}'\n\n[[resource.access_control]]\ncontext = \"/api/reports\"\nscope = \"reports:read\"\n",
        public_pem.display()
    );
    let layer =
        SecureLayer::builder().deployment(Deployment::from_toml_str("api.toml", &text).unwrap()).build().unwrap();
    common::serve(Router::new().route("/api/me", get(me)).route("/api/reports", get(me)).layer(layer)).await
}

/// The public half of a private key file, with the openssl CLI.
fn public_key(private: &Path) -> std::path::PathBuf {
    let public = private.with_extension("pub.pem");
    let status = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(private)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl is installed");
    assert!(status.success());
    public
}

async fn get_with(base: &str, path: &str, token: &str) -> (u16, Value) {
    let response = common::client().get(format!("{base}{path}")).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

// SPEC D1, A5: `mint-token` refuses to run without an explicit key and says it is for
// development; a token minted with a rule file's `[oauth2_server]` key, or with a key file,
// is accepted by a layer configured with the same (public) key, with the claims asked for;
// a token of another key is refused.
#[tokio::test]
async fn mint_token_signs_what_a_layer_with_the_key_accepts() {
    let none = run(&["mint-token", "--sub", "alex"]);
    assert_exit(&none, 2);
    assert!(stderr(&none).contains("for development") && stderr(&none).contains("explicit key"), "{}", stderr(&none));

    let root = tempfile::tempdir().unwrap();
    let issuer = "https://dev.example";
    let rules = server_rules(root.path(), issuer, "audience = \"my-api\"\n");
    let public = public_key(&root.path().join("conf/keys/signing.pem"));

    let rules = rules.to_str().unwrap();
    let args = ["mint-token", "--rules", rules, "--sub", "alex", "--scope", "reports:read openid", "--ttl", "120"];
    let minted = run(&[&args[..], &["--claim", "tenant_hint=\"blue\""]].concat());
    assert_exit(&minted, 0);
    assert!(stderr(&minted).contains("development"), "{}", stderr(&minted));
    let token = stdout(&minted).trim().to_owned();
    // The key has no `kid` in the rule file: it is named by its thumbprint, as the server does.
    let kid = header_of(&token)["kid"].as_str().unwrap().to_owned();
    assert_eq!(kid.len(), 43, "{kid}");
    let base = resource_server(issuer, "my-api", &public, &kid).await;
    let (status, body) = get_with(&base, "/api/reports", &token).await;
    assert_eq!((status, &body["user"]), (200, &json!("alex")), "{body}");
    let mut scopes: Vec<&str> = body["scopes"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    scopes.sort_unstable();
    assert_eq!(scopes, ["openid", "reports:read"], "{body}");
    let claims = claims_of(&token);
    assert_eq!(claims["scope"], "reports:read openid");
    assert_eq!((claims["aud"].as_str(), claims["tenant_hint"].as_str()), (Some("my-api"), Some("blue")));
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 120);

    let key = root.path().join("conf/keys/signing.pem");
    let by_key = ["mint-token", "--key", key.to_str().unwrap(), "--iss", issuer, "--aud", "my-api", "--sub", "bob"];
    let minted = run(&by_key);
    assert_exit(&minted, 0);
    let token = stdout(&minted).trim().to_owned();
    assert_eq!(get_with(&base, "/api/me", &token).await.1["user"], "bob");
    assert_eq!(get_with(&base, "/api/reports", &token).await.0, 403, "no scope asked for, none given");

    common::openssl_genpkeys(root.path(), &[("stranger", common::EC_P256)]);
    let stranger = root.path().join("stranger.pem");
    let foreign =
        ["mint-token", "--key", stranger.to_str().unwrap(), "--iss", issuer, "--aud", "my-api", "--sub", "alex"];
    let minted = run(&[&foreign[..], &["--kid", &kid]].concat());
    assert_exit(&minted, 0);
    assert_eq!(header_of(stdout(&minted).trim())["kid"], kid.as_str());
    assert_eq!(get_with(&base, "/api/me", stdout(&minted).trim()).await.0, 401, "another key's token, same kid");
    assert_exit(&run(&["mint-token", "--key", stranger.to_str().unwrap(), "--sub", "alex"]), 2);
}

/// Part `n` of a JWT (0 the header, 1 the claims), unverified.
fn jwt_part(token: &str, n: usize) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(n).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn header_of(token: &str) -> Value {
    jwt_part(token, 0)
}

fn claims_of(token: &str) -> Value {
    jwt_part(token, 1)
}

// ---------------------------------------------------------------------------------------
// dev-certs
// ---------------------------------------------------------------------------------------

fn openssl_verify(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl").arg("verify").args(args).current_dir(dir).output().expect("openssl");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

// SPEC A8, A9: `dev-certs` writes a root, an allowed intermediate, a server certificate for
// 127.0.0.1 and client certificates for the CNs asked for, which `openssl verify` accepts
// for their purposes; keys are private to the owner; existing files are not overwritten
// without `--force`.
#[test]
fn dev_certs_writes_a_pki_openssl_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let output = run(&["dev-certs", out.to_str().unwrap(), "--client", "alex", "--client", "SECONDARY/alex"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("cert_cns = [\"tower-secure dev Allowed Intermediate CA\"]"),
        "{}",
        stdout(&output)
    );
    for (leaf, purpose) in [("alex.pem", "sslclient"), ("secondary-alex.pem", "sslclient")] {
        let verdict =
            openssl_verify(&out, &["-CAfile", "ca.pem", "-untrusted", "allowed-ca.pem", "-purpose", purpose, leaf]);
        assert!(verdict.contains(&format!("{leaf}: OK")), "{verdict}");
    }
    let verdict = openssl_verify(&out, &["-CAfile", "ca.pem", "-purpose", "sslserver", "server.pem"]);
    assert!(verdict.contains("server.pem: OK"), "{verdict}");
    let wrong_purpose = openssl_verify(
        &out,
        &["-CAfile", "ca.pem", "-untrusted", "allowed-ca.pem", "-purpose", "sslserver", "alex.pem"],
    );
    assert!(!wrong_purpose.contains("alex.pem: OK"), "a client certificate is not a server's: {wrong_purpose}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(out.join("alex.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = run(&["dev-certs", out.to_str().unwrap()]);
    assert_exit(&again, 1);
    assert!(stderr(&again).contains("--force"), "{}", stderr(&again));
    assert_exit(&run(&["dev-certs", out.to_str().unwrap(), "--force"]), 0);
}

// SPEC A8, A9: the dev PKI serves mutual TLS with the crate's own TLS server: curl with the
// `alex` client certificate is the caller `alex`, its intermediate allowed.
#[tokio::test]
async fn dev_certs_serve_mutual_tls() {
    use tower_secure::authn::TrustRoots;
    use tower_secure::tls::{ClientAuth, TlsServer};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    assert_exit(&run(&["dev-certs", out.to_str().unwrap(), "--client", "alex"]), 0);
    let rules = "[client_cert]\n\n[intermediate_cert_validation]\nenable = true\ncert_cns = [\"tower-secure dev Allowed Intermediate CA\"]\n";
    let users = load_users("users.toml", "[[user]]\nname = \"alex\"\n").unwrap();
    let deployment = Deployment::from_toml_str("deployment.toml", rules).unwrap();
    let layer = SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap();
    let roots = TrustRoots::from_pem_file(out.join("ca.pem")).unwrap();
    let tls =
        TlsServer::from_pem_files(out.join("server.pem"), out.join("server.key"), ClientAuth::Optional(roots)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/api/me", listener.local_addr().unwrap().port());
    let app = Router::new().route("/api/me", get(me)).layer(layer);
    tokio::spawn(async move { tls.serve(listener, app).await });
    let curl = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "--noproxy", "*", "--cacert"])
            .arg(out.join("ca.pem"))
            .arg("--cert")
            .arg(out.join("alex.pem"))
            .arg("--key")
            .arg(out.join("alex.key"))
            .arg(url)
            .output()
            .expect("curl is installed")
    });
    let output = curl.await.unwrap();
    let body: Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", stdout(&output), stderr(&output)));
    assert_eq!(body["user"], "alex");
}
