//! The README's flows, for real: the example binaries (the quickstart with its embedded
//! config and production argon2 hashes, the mTLS example with a PKI it generates) driven
//! by curl over 127.0.0.1; the SQL store example on a SQLite file and on a private
//! PostgreSQL server (tests/common/servers.rs).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::examples::{example_binary, start_example, start_example_with, Server};

fn start_quickstart() -> (Server, String) {
    start_example("quickstart", &[])
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

/// The JSON body of a `curl -i` answer.
fn json_body(text: &str) -> serde_json::Value {
    let body = text.split("\r\n\r\n").last().unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `POST /oauth2/token` as the README's quickstart client.
fn token_request(base: &str, form: &[&str]) -> (u16, String) {
    let endpoint = format!("{base}/oauth2/token");
    let mut args = vec!["-u", "quickstart-client:quickstart-secret"];
    for field in form {
        args.extend(["-d", field]);
    }
    args.push(&endpoint);
    curl(&args)
}

// SPEC D1, D2, D4, D5, C2, A7: the README's token + API flow with curl, on the shipped
// configuration (production argon2 parameters, RS256 demo key).
#[test]
fn readme_token_flow_with_curl() {
    let (_server, base) = start_quickstart();
    let challenges = format!("{base}/api/users/v1/42/challenges");
    let alex = ["grant_type=password", "username=alex", "password=alex123", "scope=internal_identity_mgt_view"];

    let (status, text) = token_request(&base, &alex);
    assert_eq!(status, 200, "{text}");
    assert!(text.to_ascii_lowercase().contains("cache-control: no-store"), "{text}");
    let answer = json_body(&text);
    assert_eq!(answer["scope"], "internal_identity_mgt_view", "{text}");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 3600);
    assert!(answer["refresh_token"].is_string(), "{text}");
    let token = answer["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Authorization: Bearer {token}");
    let (status, text) = curl(&["-H", &bearer, &challenges]);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"requested_by\":\"alex\""), "{text}");

    // bob may not have the scope: it is left out, and the API answers insufficient_scope.
    let bob = ["grant_type=password", "username=bob", "password=bob123", "scope=internal_identity_mgt_view openid"];
    let (status, text) = token_request(&base, &bob);
    assert_eq!(status, 200, "{text}");
    let answer = json_body(&text);
    assert_eq!(answer["scope"], "openid", "only the whitelisted scope: {text}");
    let bobs = format!("Authorization: Bearer {}", answer["access_token"].as_str().unwrap());
    let (status, text) = curl(&["-H", &bobs, &challenges]);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("error=\"insufficient_scope\", scope=\"internal_identity_mgt_view\""), "{text}");

    // SYSTEM: every scope admin may have, without naming it.
    let (status, text) =
        token_request(&base, &["grant_type=password", "username=admin", "password=admin", "scope=SYSTEM"]);
    assert_eq!(status, 200, "{text}");
    assert_eq!(json_body(&text)["scope"], "internal_identity_mgt_view", "{text}");

    // A wrong client secret: 401 invalid_client with a Basic challenge.
    let (status, text) = curl(&[
        "-u",
        "quickstart-client:wrong",
        "-d",
        "grant_type=client_credentials",
        &format!("{base}/oauth2/token"),
    ]);
    assert_eq!(status, 401, "{text}");
    assert_eq!(json_body(&text)["error"], "invalid_client");
    assert!(text.to_ascii_lowercase().contains("www-authenticate: basic realm=\"quickstart\""), "{text}");

    // Revocation is seen by the layer at once, though the token was verified (and cached).
    let revoke = format!("{base}/oauth2/revoke");
    let form = format!("token={token}");
    let (status, text) = curl(&["-u", "quickstart-client:quickstart-secret", "-d", &form, &revoke]);
    assert_eq!(status, 200, "{text}");
    let (status, text) = curl(&["-H", &bearer, &challenges]);
    assert_eq!(status, 401, "a revoked token: {text}");
    assert!(text.contains("error=\"invalid_token\""), "{text}");

    // SPEC E1, F1: the layer lets the token endpoint's exact raw paths through, nothing
    // else: an encoded or prefixed spelling meets the layer (the client's Basic credential is
    // no user's: 401), never a handler without its check.
    for spelling in ["/oauth2/%74oken", "/t/carbon.super/oauth2/token", "/oauth2/token/"] {
        let (status, text) = curl(&[
            "-u",
            "quickstart-client:quickstart-secret",
            "-d",
            "grant_type=client_credentials",
            &format!("{base}{spelling}"),
        ]);
        assert_eq!(status, 401, "{spelling}: {text}");
        assert!(!text.contains("access_token"), "{spelling}: {text}");
    }

    // The published keys verify what the endpoint signs.
    let (status, text) = curl(&[&format!("{base}/oauth2/jwks")]);
    assert_eq!(status, 200, "{text}");
    let jwks = json_body(&text);
    assert_eq!(jwks["keys"][0]["kid"], "quickstart-2026");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part: {text}");
}

// SPEC A8, A9: the README's mTLS session: `mtls make-certs` writes a dev PKI, `mtls serve`
// serves it; curl with alex's certificate (allowed intermediate) gets 200 as alex, with
// SECONDARY/alex's as that user, with a certificate from the other intermediate 401, and
// without one 401 on the API and 200 on the open path.
#[test]
fn readme_mtls_flow_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().display().to_string();
    let made = Command::new(example_binary("mtls")).args(["make-certs", &pki]).output().unwrap();
    assert!(made.status.success(), "make-certs: {}", String::from_utf8_lossy(&made.stderr));
    let (_server, base) = start_example("mtls", &["serve", &pki]);
    let file = |name: &str| Path::new(&pki).join(name).display().to_string();
    let (ca, me) = (file("ca.pem"), format!("{base}/api/me"));
    let with_cert = |cert: &str| {
        let (pem, key) = (file(&format!("{cert}.pem")), file(&format!("{cert}.key")));
        curl(&["--cacert", &ca, "--cert", &pem, "--key", &key, &me])
    };

    let (status, text) = with_cert("alex");
    assert_eq!(status, 200, "{text}");
    assert_eq!(json_body(&text), serde_json::json!({"user": "alex", "authenticated_by": "client_cert"}));
    let (status, text) = with_cert("secondary-alex");
    assert_eq!(status, 200, "{text}");
    assert_eq!(json_body(&text)["user"], "SECONDARY/alex");
    let (status, text) = with_cert("alex-other-ca");
    assert_eq!(status, 401, "issuer not allowed: {text}");

    let (status, text) = curl(&["--cacert", &ca, &me]);
    assert_eq!(status, 401, "no certificate: {text}");
    let (status, text) = curl(&["--cacert", &ca, &format!("{base}/public")]);
    assert_eq!(status, 200, "open path: {text}");
}

// SPEC B1: the quickstart, whose `main` returns `Result<(), Box<dyn Error>>` as the
// README's example does, reports a rule file with an error as `Error: file:line:column:
// key `k`: message` (the error's `Debug` is its `Display`), not as a struct dump.
#[test]
fn quickstart_reports_a_bad_rule_file_readably() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deployment.toml");
    std::fs::write(&path, "[[resource.access_control]]\ncontext = \"/a\"\nverride = true\n").unwrap();
    let mut child = Command::new(example_binary("quickstart"))
        .env("ADDR", "127.0.0.1:0")
        .env("TOWER_SECURE_DEPLOYMENT", &path)
        .env_remove("TOWER_SECURE_USERS")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the examples are built by `cargo test`");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the quickstart kept running with a bad rule file");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!("Error: {}:3:1: key `verride`: unknown field `verride`", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!stderr.contains("ConfigError {"), "{stderr}");
}

/// What an answer says, with what must differ between two servers taken out: the status,
/// the challenges, the content type and the body (JSON parsed, the server's own URL
/// replaced by `BASE`, issued tokens by their presence).
fn comparable(base: &str, (status, text): (u16, String)) -> (u16, Vec<String>, serde_json::Value) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .filter(|line| {
            let line = line.to_ascii_lowercase();
            line.starts_with("www-authenticate:") || line.starts_with("content-type:")
        })
        .map(str::to_owned)
        .collect();
    let body = body.replace(base, "BASE");
    let mut body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
    for token in ["access_token", "refresh_token"] {
        if let Some(value) = body.get_mut(token) {
            *value = serde_json::Value::Bool(value.is_string());
        }
    }
    (status, headers, body)
}

// SPEC I1: the app secured in code (examples/code_first.rs: rules, scopes, users, clients
// and token server built without TOML) answers every request of the README's flows
// exactly as the quickstart with its files does: statuses, challenges, bodies, the
// published keys, token responses, and what its tokens then open.
#[test]
fn code_first_example_behaves_like_the_quickstart() {
    let servers = [start_quickstart(), start_example("code_first", &[])];
    let request = |args: &[&str]| -> Vec<_> {
        servers
            .iter()
            .map(|(_, base)| {
                let args: Vec<String> = args.iter().map(|a| a.replace("BASE", base)).collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                comparable(base, curl(&args))
            })
            .collect()
    };
    // A wrong password is tried once per server below, not per request: the lockout
    // would otherwise lock alex out for the token requests.
    let users = ["", "alex:alex123", "bob:bob123", "admin:admin", "nobody:x"];
    let paths = [
        "/api/health",
        "/api/users/v1/42/challenges",
        "/api/me",
        "/api/admin/stats",
        "/api/anything-else",
        "/oauth2/jwks",
        "/.well-known/openid-configuration",
    ];
    let mut compared = 0;
    for path in paths {
        for user in users {
            for method in ["GET", "DELETE"] {
                let url = format!("BASE{path}");
                let mut args = vec!["-X", method, url.as_str()];
                if !user.is_empty() {
                    args.extend(["-u", user]);
                }
                let answers = request(&args);
                assert_eq!(answers[0], answers[1], "{method} {path} as {user:?}: quickstart vs code_first");
                compared += 1;
            }
        }
    }
    let answers = request(&["-u", "alex:wrong", "BASE/api/users/v1/42/challenges"]);
    assert_eq!(answers[0], answers[1], "a wrong password");
    assert_eq!(answers[0].0, 401);

    let grants: [&[&str]; 4] = [
        &["grant_type=password", "username=alex", "password=alex123", "scope=internal_identity_mgt_view openid"],
        &["grant_type=password", "username=bob", "password=bob123", "scope=internal_identity_mgt_view"],
        &["grant_type=client_credentials", "scope=openid"],
        &["grant_type=password", "username=alex", "password=wrong"],
    ];
    for form in grants {
        let mut args = vec!["-u", "quickstart-client:quickstart-secret"];
        for field in form {
            args.extend(["-d", field]);
        }
        args.push("BASE/oauth2/token");
        let answers = request(&args);
        assert_eq!(answers[0], answers[1], "token request {form:?}");
        compared += 1;
    }

    // The tokens each server issues open the same doors on it, with the scope and without.
    for scope in ["scope=internal_identity_mgt_view", "scope=openid"] {
        let tokens: Vec<String> = servers
            .iter()
            .map(|(_, base)| {
                let form = ["grant_type=password", "username=alex", "password=alex123", scope];
                json_body(&token_request(base, &form).1)["access_token"].as_str().unwrap().to_owned()
            })
            .collect();
        for path in ["/api/users/v1/42/challenges", "/api/me", "/api/admin/stats"] {
            let answers: Vec<_> = servers
                .iter()
                .zip(&tokens)
                .map(|((_, base), token)| {
                    let header = format!("Authorization: Bearer {token}");
                    comparable(base, curl(&["-H", &header, &format!("{base}{path}")]))
                })
                .collect();
            assert_eq!(answers[0], answers[1], "{path} with each server's token ({scope})");
            compared += 1;
        }
    }
    assert_eq!(compared, paths.len() * users.len() * 2 + 4 + 6);
    // Not a comparison of two empty answers: both served the flows.
    assert_eq!(request(&["-u", "alex:alex123", "BASE/api/users/v1/42/challenges"])[0].0, 200);
}

/// The SQL store example's curl session against a running example.
fn sql_store_session(base: &str, what: &str) {
    let me = format!("{base}/api/me");
    let admin = format!("{base}/api/admin");
    let (status, text) = curl(&["-u", "alex:alex123", &me]);
    assert_eq!(status, 200, "{what}: {text}");
    assert!(text.contains("alex roles=viewer"), "{what}: {text}");
    assert_eq!(curl(&["-u", "alex:alex123", &admin]).0, 403, "{what}");
    assert_eq!(curl(&["-u", "admin:admin123", &admin]).0, 200, "{what}");
    assert_eq!(curl(&["-u", "alex:wrong", &me]).0, 401, "{what}");
    assert_eq!(curl(&["-u", "nobody:alex123", &me]).0, 401, "{what}");
    assert_eq!(curl(&[&me]).0, 401, "{what}");
}

// SPEC G2: `examples/sql_store.rs` as its doc comment runs it: a SQLite file through
// `DATABASE_URL` (started twice: the second start keeps the users it seeded), and
// PostgreSQL with its URL (password included) in the file `DATABASE_URL_FILE` names.
#[test]
fn sql_store_example_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("users.db").display());
    for run in ["first", "second"] {
        let (_server, base) = start_example_with("sql_store", &[], &[("DATABASE_URL", &sqlite)]);
        sql_store_session(&base, &format!("sqlite, {run} start"));
    }
    let postgres = common::servers::Postgres::start();
    let url_file = dir.path().join("pg-url");
    std::fs::write(&url_file, postgres.url()).unwrap();
    let (_server, base) = start_example_with("sql_store", &[], &[("DATABASE_URL_FILE", url_file.to_str().unwrap())]);
    sql_store_session(&base, "postgres");
    let users = postgres.psql("SELECT name FROM ts_user ORDER BY name");
    assert_eq!(users, "admin\nalex", "the example seeded PostgreSQL");
}

// SPEC G3: `examples/ldap_store.rs` as its doc comment runs it, against slapd seeded with
// examples/ldap/seed.ldif: roles from groups, permissions from the rule file's `[[role]]`
// tables, a disabled user refused; a wrong service password stops the start.
#[test]
fn ldap_store_example_with_curl() {
    let slapd = common::servers::Slapd::start("dc=example,dc=com", include_str!("../examples/ldap/seed.ldif"));
    let env = [("LDAP_URL", slapd.url()), ("LDAP_BIND_PASSWORD", "reader-secret".to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_server, base) = start_example_with("ldap_store", &[], &env);
    let (me, admin) = (format!("{base}/api/me"), format!("{base}/api/admin"));
    let (status, text) = curl(&["-u", "alex:alex123", &me]);
    assert_eq!(status, 200, "{text}");
    assert!(text.ends_with("\r\n\r\nalex roles=admins,developers\n"), "{text}");
    assert_eq!(curl(&["-u", "alex:alex123", &admin]).0, 200);
    assert_eq!(curl(&["-u", "sam:sam123", &admin]).0, 403);
    for credentials in ["kim:kim123", "alex:wrong", "nobody:alex123", "*:alex123"] {
        assert_eq!(curl(&["-u", credentials, &me]).0, 401, "{credentials}");
    }

    let output = Command::new(example_binary("ldap_store"))
        .env("LDAP_URL", slapd.url())
        .env("LDAP_BIND_PASSWORD", "wrong")
        .env("ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("ldap_store.toml:") && stderr.contains("invalidCredentials"), "{stderr}");
}

/// The hidden fields of a page's form as `name=value` arguments for curl's
/// `--data-urlencode`.
fn hidden_fields(page: &str) -> Vec<String> {
    common::hidden_fields(page).into_iter().map(|(name, value)| format!("{name}={value}")).collect()
}

/// curl posting the authorization form with `fields` plus `extra`, keeping cookies in `jar`.
fn post_form(base: &str, jar: &str, fields: &[String], extra: &[&str]) -> (u16, String) {
    let mut args: Vec<String> = vec!["-b".into(), jar.into(), "-c".into(), jar.into()];
    for field in fields.iter().map(String::as_str).chain(extra.iter().copied()) {
        args.extend(["--data-urlencode".to_owned(), field.to_owned()]);
    }
    args.push(format!("{base}/oauth2/authorize"));
    curl(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

// SPEC D6: the authorization code flow exactly as the quickstart prints it, with curl as
// the browser (a cookie jar, the forms posted as a browser posts them): open the printed
// URL, sign in as alex, allow, take the code from the redirect, run the printed token
// command with it, and call the API with the token.
#[test]
fn quickstart_code_flow_as_printed() {
    let (mut server, base) = start_quickstart();
    let mut lines = Vec::new();
    while !lines.last().is_some_and(|l: &String| l.contains("code_verifier=")) {
        let line = server.read_line();
        assert!(!line.is_empty() || lines.len() < 20, "the quickstart printed no token command: {lines:?}");
        lines.push(line);
    }
    let url = lines.iter().find_map(|l| l.strip_prefix("browser: ")).expect("a browser: line").to_owned();
    assert!(
        url.starts_with(&format!("{base}/oauth2/authorize?")) && url.contains("code_challenge_method=S256"),
        "{url}"
    );
    let at = lines.iter().position(|l| l.starts_with("then:")).unwrap();
    let command = format!("{} {}", lines[at].trim_start_matches("then:"), lines[at + 1]).replace('\\', " ");

    let jar_dir = tempfile::tempdir().unwrap();
    let jar = jar_dir.path().join("cookies").to_string_lossy().into_owned();
    let (status, page) = curl(&["-c", &jar, &url]);
    assert_eq!(status, 200, "{page}");
    let (status, consent) =
        post_form(&base, &jar, &hidden_fields(&page), &["username=alex", "password=alex123", "action=login"]);
    assert!(status == 200 && consent.contains("Allow access?"), "{consent}");
    let (status, redirect) = post_form(&base, &jar, &hidden_fields(&consent), &["action=approve"]);
    assert_eq!(status, 303, "{redirect}");
    let location = redirect.lines().find_map(|l| l.strip_prefix("location: ")).unwrap().trim();
    assert!(location.starts_with(&format!("{base}/callback?")), "{location}");
    let (status, callback) = curl(&[location]);
    assert_eq!(status, 200, "{callback}");
    let body: serde_json::Value = serde_json::from_str(callback.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let code = body["code"].as_str().unwrap();
    assert_eq!(body["state"], "demo");

    let command = command.replace("<code shown on /callback>", code);
    let args: Vec<&str> = command.split_whitespace().skip(1).filter(|a| *a != "-s").collect();
    assert!(command.trim_start().starts_with("curl "), "{command}");
    let (status, token) = curl(&args);
    assert_eq!(status, 200, "{token}");
    let token: serde_json::Value = serde_json::from_str(token.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(token["scope"], "internal_identity_mgt_view");
    let bearer = format!("Authorization: Bearer {}", token["access_token"].as_str().unwrap());
    let (status, text) = curl(&["-H", &bearer, &format!("{base}/api/users/v1/42/challenges")]);
    assert_eq!(status, 200, "{text}");
}
