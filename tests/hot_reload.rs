//! Hot reload (SPEC B7) over real HTTP on 127.0.0.1: rules and users replaced while the
//! layer serves, by call and by watching files; refused reloads keep the old version; and
//! under a storm of concurrent requests and reloads every request is decided by exactly
//! one valid version.
//!
//! Two valid rule files, A and B, give every request of the tests a different answer, and
//! the handlers echo the origin (`file:line`) of the rule that applied, so a response
//! shows which version decided it.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing;
use axum::Router;
use tower_secure::config::{load_users, Deployment};
use tower_secure::{secure, AuthContext, Reloader, SecureLayer};

/// Config A: `/flip` open and overriding the handler's rule, `/echo` needs the view
/// permission, `/guarded` open but the handler's rule applies.
const A: &str = r#"[authentication]
realm = "realm-A"

[[resource.access_control]]
context = "/flip"
secure = false
override = true

[[resource.access_control]]
context = "/echo"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]

[[resource.access_control]]
context = "/guarded"
secure = false
"#;

/// Config B, rules at other lines: `/flip` needs the login permission (and the handler's
/// view permission), `/echo` is open, `/guarded` open and overriding.
const B: &str = r#"[authentication]
realm = "realm-B"

# B lists its rules in another order, at other lines.
[[resource.access_control]]
context = "/guarded"
secure = false
override = true

[[resource.access_control]]
context = "/echo"
secure = false

[[resource.access_control]]
context = "/flip"
permissions = ["/permission/admin/login"]
"#;

/// Invalid: A's rules and B's, with two equally specific `/echo` rules (a tie).
const C_TIE: &str = r#"[authentication]
realm = "realm-C"

[[resource.access_control]]
context = "/flip"
secure = false
override = true

[[resource.access_control]]
context = "/echo"
secure = false

[[resource.access_control]]
context = "/guarded"
secure = false
override = true

[[resource.access_control]]
context = "/echo"
permissions = ["/permission/admin/manage/identity/identitymgt/view"]
"#;

/// Invalid: a syntax error (unclosed table header).
const BROKEN_SYNTAX: &str =
    "[authentication]\nrealm = \"realm-X\"\n\n[[resource.access_control]\ncontext = \"/echo\"\n";

/// Invalid: an unknown key.
const UNKNOWN_KEY: &str = "[[resource.access_control]]\ncontext = \"/echo\"\nsecure = false\nverride = true\n";

/// Valid rules, but `[authentication.basic]` changed: needs a restart.
fn basic_changed() -> String {
    format!("{A}\n[authentication.basic]\ncache_ttl_seconds = 1\n").replace("realm-A", "realm-D")
}

// ---------------------------------------------------------------------------------------
// Handlers, servers, requests
// ---------------------------------------------------------------------------------------

fn who(ctx: &AuthContext) -> String {
    let caller = ctx.principal().map_or_else(|| "-".to_owned(), |p| p.name().to_string());
    format!("{caller}|{}", ctx.rule().origin())
}

#[secure(permission = "/permission/admin/manage/identity/identitymgt/view", path = "/flip")]
async fn flip(ctx: AuthContext) -> String {
    who(&ctx)
}

#[secure(permission = "/permission/admin/manage/identity/identitymgt/view", path = "/guarded")]
async fn guarded(ctx: AuthContext) -> String {
    who(&ctx)
}

async fn echo(ctx: AuthContext) -> String {
    who(&ctx)
}

fn routes() -> Router {
    Router::new()
        .route("/flip", routing::get(flip))
        .route("/guarded", routing::get(guarded))
        .route("/echo", routing::get(echo))
}

fn deployment(name: &str, text: &str) -> Deployment {
    Deployment::from_toml_str(name, text).unwrap()
}

fn layer_over(deployment: Deployment, users: &str) -> SecureLayer {
    let users = load_users("users.toml", users).unwrap();
    SecureLayer::builder().deployment(deployment).user_store(users).build().unwrap()
}

/// Serves [`routes`] behind `layer`.
async fn serve(layer: &SecureLayer) -> String {
    common::serve(routes().layer(layer.clone())).await
}

/// The line of the `[[resource.access_control]]` header just above `context = "{context}"`.
fn rule_line(text: &str, context: &str) -> usize {
    let needle = format!("context = \"{context}\"");
    let at = text.lines().position(|l| l.trim() == needle).unwrap_or_else(|| panic!("no rule for {context}"));
    assert_eq!(text.lines().nth(at - 1).map(str::trim), Some("[[resource.access_control]]"));
    at
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Caller {
    Anonymous,
    Bob,
    Alex,
    /// The view permission without the login permission.
    Sam,
}

const CALLERS: [Caller; 4] = [Caller::Anonymous, Caller::Bob, Caller::Alex, Caller::Sam];
const PATHS: [&str; 3] = ["/flip", "/echo", "/guarded"];

impl Caller {
    fn credentials(self) -> Option<(&'static str, &'static str)> {
        match self {
            Caller::Anonymous => None,
            Caller::Bob => Some(("bob", "bob123")),
            Caller::Alex => Some(("alex", "alex123")),
            Caller::Sam => Some(("SECONDARY/sam", "sam123")),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Caller::Anonymous => "-",
            Caller::Bob => "bob",
            Caller::Alex => "alex",
            Caller::Sam => "SECONDARY/sam",
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    challenges: Vec<String>,
    content_type: Option<String>,
    body: String,
}

async fn try_get(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
) -> Result<Reply, reqwest::Error> {
    let mut request = client.get(format!("{base}{path}"));
    if let Some((user, password)) = credentials {
        request = request.basic_auth(user, Some(password));
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers();
    let challenges = headers.get_all("www-authenticate").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
    let content_type = headers.get("content-type").map(|v| v.to_str().unwrap().to_owned());
    let body = response.text().await?;
    Ok(Reply { status, challenges, content_type, body })
}

async fn get(base: &str, path: &str, caller: Caller) -> Reply {
    try_get(&common::client(), base, path, caller.credentials()).await.unwrap()
}

async fn get_as(base: &str, path: &str, user: &str, password: &str) -> Reply {
    try_get(&common::client(), base, path, Some((user, password))).await.unwrap()
}

/// One valid configuration as served: its file name, text and realm.
#[derive(Clone, Copy)]
struct Config {
    file: &'static str,
    text: &'static str,
    realm: &'static str,
}

const CONFIG_A: Config = Config { file: "A.toml", text: A, realm: "realm-A" };
const CONFIG_B: Config = Config { file: "B.toml", text: B, realm: "realm-B" };

/// What a configuration answers a request.
#[derive(Debug, PartialEq, Eq)]
enum Expected {
    /// 200 with the handler's `caller|origin`.
    Ok(String),
    /// 401 with the Basic challenge of the realm.
    Unauthenticated(&'static str),
    /// 403 problem+json.
    Forbidden,
}

impl Config {
    fn origin(&self, path: &str) -> String {
        format!("{}:{}", self.file, rule_line(self.text, path))
    }

    fn expected(&self, path: &str, caller: Caller) -> Expected {
        let ok = || Expected::Ok(format!("{}|{}", caller.name(), self.origin(path)));
        let has_view = matches!(caller, Caller::Alex | Caller::Sam);
        let has_login = matches!(caller, Caller::Alex | Caller::Bob);
        let anonymous = caller == Caller::Anonymous;
        let refused = |passes: bool| match (anonymous, passes) {
            (_, true) => ok(),
            (true, false) => Expected::Unauthenticated(self.realm),
            (false, false) => Expected::Forbidden,
        };
        match (self.file, path) {
            // A: open, and the override drops the handler's view permission.
            ("A.toml", "/flip") => ok(),
            // A: the layer requires the view permission.
            ("A.toml", "/echo") => refused(has_view),
            // A: open, but the handler's view permission applies.
            ("A.toml", "/guarded") => refused(has_view),
            // B: the login permission and the handler's view permission.
            ("B.toml", "/flip") => refused(has_view && has_login),
            ("B.toml", "/echo") | ("B.toml", "/guarded") => ok(),
            other => panic!("no expectation for {other:?}"),
        }
    }
}

fn matches(reply: &Reply, expected: &Expected) -> bool {
    match expected {
        Expected::Ok(body) => reply.status == 200 && &reply.body == body,
        Expected::Unauthenticated(realm) => {
            reply.status == 401 && reply.challenges == [format!(r#"Basic realm="{realm}", charset="UTF-8""#)]
        }
        Expected::Forbidden => reply.status == 403 && reply.content_type.as_deref() == Some("application/problem+json"),
    }
}

/// Asserts that every request of the tests gets `config`'s answer.
async fn assert_serving(base: &str, config: Config) {
    for path in PATHS {
        for caller in CALLERS {
            let reply = get(base, path, caller).await;
            let expected = config.expected(path, caller);
            assert!(
                matches(&reply, &expected),
                "{caller:?} {path} under {}: {reply:?}, expected {expected:?}",
                config.file
            );
        }
    }
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Replaces `path` atomically (write beside it, then rename).
fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

// ---------------------------------------------------------------------------------------
// B7: reload by call
// ---------------------------------------------------------------------------------------

// SPEC B7: `reload` swaps the rules while the server runs: a path open under A is refused
// under B and open again under A; `version()` counts the reloads.
#[tokio::test]
async fn b7_reload_by_call_flips_the_rules_and_counts_versions() {
    let layer = layer_over(deployment("A.toml", A), &common::users_toml());
    let reloader = layer.reloader();
    let base = serve(&layer).await;
    assert_eq!(reloader.version(), 0);
    assert_serving(&base, CONFIG_A).await;
    assert_eq!(get(&base, "/echo", Caller::Anonymous).await.status, 401, "control: /echo is refused under A");

    reloader.reload(deployment("B.toml", B)).unwrap();
    assert_eq!(reloader.version(), 1);
    assert_serving(&base, CONFIG_B).await;
    assert_eq!(get(&base, "/echo", Caller::Anonymous).await.body, format!("-|{}", CONFIG_B.origin("/echo")));

    reloader.reload(deployment("A.toml", A)).unwrap();
    assert_eq!(reloader.version(), 2);
    assert_serving(&base, CONFIG_A).await;
    // A clone of the reloader reloads the same layer.
    let clone = reloader.clone();
    clone.reload(deployment("B.toml", B)).unwrap();
    assert_eq!((reloader.version(), clone.version()), (3, 3));
    assert_serving(&base, CONFIG_B).await;
}

// SPEC B7: a file that does not load (syntax error, unknown key, tie, unreadable) is
// refused with its error, and the old rules keep serving.
#[tokio::test]
async fn b7_bad_files_are_refused_and_the_old_rules_keep_serving() {
    let dir = tempfile::tempdir().unwrap();
    let layer = layer_over(deployment("A.toml", A), &common::users_toml());
    let reloader = layer.reloader();
    let base = serve(&layer).await;

    let syntax = dir.path().join("syntax.toml");
    std::fs::write(&syntax, BROKEN_SYNTAX).unwrap();
    let error = reloader.reload_file(&syntax).unwrap_err();
    assert_eq!(error.line, 4, "{error}");
    assert!(error.to_string().starts_with(&format!("{}:4:", syntax.display())), "{error}");

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, UNKNOWN_KEY).unwrap();
    let error = reloader.reload_file(&unknown).unwrap_err();
    assert_eq!((error.line, error.key.as_deref()), (4, Some("verride")), "{error}");

    let tie = dir.path().join("tie.toml");
    std::fs::write(&tie, C_TIE).unwrap();
    let error = reloader.reload_file(&tie).unwrap_err();
    let second_echo = C_TIE.lines().collect::<Vec<_>>().iter().rposition(|l| *l == "context = \"/echo\"").unwrap() + 1;
    assert_eq!((error.line, error.key.as_deref()), (second_echo, Some("context")), "{error}");
    let error = reloader.reload(deployment("C.toml", C_TIE)).unwrap_err();
    assert_eq!(&*error.file, "C.toml", "{error}");

    let open_with_permissions =
        "[[resource.access_control]]\ncontext = \"/flip\"\nsecure = false\npermissions = [\"/p\"]\n";
    let error = reloader.reload(deployment("P.toml", open_with_permissions)).unwrap_err();
    assert_eq!((error.line, error.key.as_deref()), (3, Some("secure")), "{error}");

    let error = reloader.reload_file(dir.path().join("missing.toml")).unwrap_err();
    assert!(error.message.contains("cannot read"), "{error}");

    assert_eq!(reloader.version(), 0, "no reload succeeded");
    assert_serving(&base, CONFIG_A).await;
    // A good file after the bad ones still loads.
    let good = dir.path().join("B.toml");
    std::fs::write(&good, B).unwrap();
    reloader.reload_file(&good).unwrap();
    assert_eq!(reloader.version(), 1);
    let origin = format!("{}:{}", good.display(), rule_line(B, "/echo"));
    assert_eq!(get(&base, "/echo", Caller::Bob).await.body, format!("bob|{origin}"));
}

// SPEC B7: `[authentication.basic]` needs a restart (its handler keeps the failed-login
// counts and locks a rebuild would forget): a reload that changes or removes it is refused
// and the old rules keep serving; the same settings in another order are no change, and
// other sections (the realm, the rules) may change. `[oauth2]` is rebuilt by a reload: a
// new issuer's tokens are accepted from that version on, and refused again once it is
// gone. (The client-certificate sections:
// client_cert_tls::a9_b7_a_reloaded_allow_list_applies_at_once.)
#[tokio::test]
async fn b7_basic_needs_a_restart_and_oauth2_reloads() {
    let with_basic = |settings: &str| format!("{A}\n[authentication.basic]\n{settings}");
    let layer = layer_over(
        deployment("A.toml", &with_basic("cache_ttl_seconds = 120\nmax_failed_attempts = 7\n")),
        &common::users_toml(),
    );
    let reloader = layer.reloader();
    let base = serve(&layer).await;

    let changed = with_basic("cache_ttl_seconds = 1\nmax_failed_attempts = 7\n").replace("realm-A", "realm-D");
    let error = reloader.reload(deployment("D.toml", &changed)).unwrap_err();
    assert!(error.message.contains("[authentication.basic]") && error.message.contains("restart"), "{error}");
    assert_eq!(&*error.file, "D.toml", "{error}");
    let removed = A.replace("realm-A", "realm-D");
    let error = reloader.reload(deployment("D.toml", &removed)).unwrap_err();
    assert!(error.message.contains("[authentication.basic]"), "a removed section is a change: {error}");
    assert_eq!(reloader.version(), 0);
    assert_serving(&base, CONFIG_A).await;

    // A token of an issuer the file does not name yet: nobody can take it (401); once
    // the file names the issuer, its caller is authenticated (404: no such route);
    // without the issuer again, 401.
    let secret = b"0123456789abcdef0123456789abcdef0";
    let claims = serde_json::json!({ "iss": "https://idp.test", "sub": "robot", "exp": 4_000_000_000u64 });
    let key = jsonwebtoken::EncodingKey::from_secret(secret);
    let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap();
    let status = || async {
        let response = common::client().get(format!("{base}/no-such-route")).bearer_auth(&token).send().await;
        response.unwrap().status().as_u16()
    };
    assert_eq!(status().await, 401);
    let basic = with_basic("cache_ttl_seconds = 120\nmax_failed_attempts = 7\n");
    let oauth2 = format!(
        "{basic}\n[[oauth2.issuer]]\nissuer = \"https://idp.test\"\n\n[[oauth2.issuer.key]]\nalgorithm = \"HS256\"\nsecret_base64 = \"{}\"\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, secret)
    );
    reloader.reload(deployment("O.toml", &oauth2)).unwrap();
    assert_eq!(status().await, 404, "the new issuer's token is accepted");
    let bad_key = oauth2.replace("algorithm = \"HS256\"", "algorithm = \"none\"");
    assert!(reloader.reload(deployment("O.toml", &bad_key)).is_err(), "an [oauth2] that does not load");
    assert_eq!(status().await, 404, "the last good [oauth2] keeps deciding");
    reloader.reload(deployment("A.toml", &basic)).unwrap();
    assert_eq!(status().await, 401, "the issuer is gone again");
    assert_eq!(reloader.version(), 2);

    // The same Basic settings in another order, another realm and B's rules: accepted.
    let reordered = with_basic("max_failed_attempts = 7\ncache_ttl_seconds = 120\n");
    reloader.reload(deployment("B.toml", &reordered.replace(A, B))).unwrap();
    assert_eq!(reloader.version(), 3);
    assert_serving(&base, CONFIG_B).await;
    let realm_e = reordered.replace("realm-A", "realm-E");
    reloader.reload(deployment("A.toml", &realm_e)).unwrap();
    assert_eq!(reloader.version(), 4);
    let reply = get(&base, "/echo", Caller::Anonymous).await;
    assert_eq!(reply.challenges, [r#"Basic realm="realm-E", charset="UTF-8""#], "{reply:?}");
}

// SPEC B7: only a change of `[authentication.basic]` needs a restart: writing out the
// settings the handler already runs with (the defaults) changes nothing and is accepted.
#[tokio::test]
async fn b7_reload_restating_the_default_basic_settings_is_accepted() {
    let layer = layer_over(deployment("A.toml", A), &common::users_toml());
    let reloader = layer.reloader();
    let defaults = format!("{A}\n[authentication.basic]\ncache_ttl_seconds = 300\nmax_failed_attempts = 5\n");
    let outcome = reloader.reload(deployment("A.toml", &defaults));
    assert!(outcome.is_ok(), "restating the default Basic settings was refused: {outcome:?}");
    let outcome = reloader.reload(deployment("A.toml", &format!("{A}\n[authentication.basic]\n")));
    assert!(outcome.is_ok(), "an empty [authentication.basic] was refused: {outcome:?}");
}

/// The standard users with alex's password changed to `alex456`, bob replaced by carol
/// (login), and sam (view) given the login role too.
fn changed_users() -> String {
    let (alex, bob, sam) = (common::cheap_hash("alex123"), common::cheap_hash("bob123"), common::cheap_hash("sam123"));
    let users = common::users_toml()
        .replace(&alex, &common::cheap_hash("alex456"))
        .replace(
            &format!("name = \"bob\"\npassword = \"{bob}\""),
            &format!("name = \"carol\"\npassword = \"{}\"", common::cheap_hash("carol123")),
        )
        .replace(
            &format!("password = \"{sam}\"\nroles = [\"identity_viewer\"]"),
            &format!("password = \"{sam}\"\nroles = [\"identity_viewer\", \"everyone\"]"),
        );
    assert!(!users.contains(&alex), "alex's password changed");
    assert!(users.contains("carol") && !users.contains("name = \"bob\""), "{users}");
    assert!(users.contains("roles = [\"identity_viewer\", \"everyone\"]\n\n[[user]]\nname = \"tina"), "{users}");
    users
}

// SPEC B7: reloading the users applies at once, though the old credentials were cached: a
// changed password, a removed user and a changed role; a bad users file keeps the old users.
#[tokio::test]
async fn b7_users_reload_applies_at_once_despite_cached_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let layer = layer_over(deployment("B.toml", B), &common::users_toml());
    let reloader = layer.reloader();
    let base = serve(&layer).await;
    // Cache the credentials.
    for _ in 0..2 {
        assert_eq!(get(&base, "/flip", Caller::Alex).await.status, 200);
        assert_eq!(get(&base, "/echo", Caller::Bob).await.status, 200);
        assert_eq!(get(&base, "/guarded", Caller::Sam).await.status, 200);
    }
    assert_eq!(get(&base, "/flip", Caller::Sam).await.status, 403, "sam lacks the login permission");
    let users = changed_users();
    reloader.reload_users(load_users("users.toml", &users).unwrap()).unwrap();

    let alex = get_as(&base, "/echo", "alex", "alex123").await;
    assert_eq!(alex.status, 401, "alex's old password, cached before: {alex:?}");
    assert_eq!(get_as(&base, "/echo", "alex", "alex456").await.body, format!("alex|{}", CONFIG_B.origin("/echo")));
    let bob = get(&base, "/echo", Caller::Bob).await;
    assert_eq!(bob.status, 401, "bob was removed: {bob:?}");
    assert_eq!(get_as(&base, "/echo", "carol", "carol123").await.body, format!("carol|{}", CONFIG_B.origin("/echo")));
    // sam's new role applies at once, though sam's credential was cached.
    let sam = get(&base, "/flip", Caller::Sam).await;
    assert_eq!(sam.body, format!("SECONDARY/sam|{}", CONFIG_B.origin("/flip")), "{sam:?}");
    assert_eq!(reloader.version(), 0, "users reloads are not rule versions");

    // A bad users file is refused; the reloaded users stay.
    let bad = dir.path().join("users.toml");
    std::fs::write(&bad, "[[user]\nname = \"mallory\"\n").unwrap();
    let error = reloader.reload_users_file(&bad).unwrap_err();
    assert!(error.to_string().starts_with(&bad.display().to_string()), "{error}");
    assert!(reloader.reload_users_file(dir.path().join("missing.toml")).is_err());
    assert_eq!(get_as(&base, "/echo", "alex", "alex456").await.status, 200);
    assert_eq!(get_as(&base, "/echo", "carol", "carol123").await.status, 200);
    assert_eq!(get(&base, "/echo", Caller::Bob).await.status, 401);

    // A layer whose store is not an InMemoryUserStore (here: none) cannot reload users.
    let storeless = SecureLayer::builder().deployment(deployment("B.toml", B)).build().unwrap();
    assert!(storeless.reloader().reload_users(load_users("users.toml", &users).unwrap()).is_err());
}

// SPEC B7: role changes in a users reload apply to cached credentials at once.
#[tokio::test]
async fn b7_users_reload_applies_role_changes_to_cached_callers() {
    let layer = layer_over(deployment("A.toml", A), &common::users_toml());
    let reloader = layer.reloader();
    let base = serve(&layer).await;
    // alex (view) passes /echo under A, with a cached credential.
    assert_eq!(get(&base, "/echo", Caller::Alex).await.status, 200);
    assert_eq!(get(&base, "/echo", Caller::Alex).await.status, 200);
    let demoted =
        common::users_toml().replacen("roles = [\"identity_viewer\", \"everyone\"]", "roles = [\"everyone\"]", 1);
    assert_ne!(demoted, common::users_toml());
    reloader.reload_users(load_users("users.toml", &demoted).unwrap()).unwrap();
    let alex = get(&base, "/echo", Caller::Alex).await;
    assert_eq!(alex.status, 403, "alex lost the view role: {alex:?}");
    let alex = get(&base, "/guarded", Caller::Alex).await;
    assert_eq!(alex.status, 403, "the handler's rule sees the new roles too: {alex:?}");
}

// ---------------------------------------------------------------------------------------
// B7: watching files
// ---------------------------------------------------------------------------------------

// SPEC B7: `watch` reloads a rule file (and a users file) changed on disk; a broken edit
// is refused and the running rules stay.
#[tokio::test]
async fn b7_watch_reloads_changed_files() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("deployment.toml");
    let users = dir.path().join("users.toml");
    replace_file(&rules, A);
    replace_file(&users, &common::users_toml());
    let layer = layer_over(Deployment::from_file(&rules).unwrap(), &common::users_toml());
    let reloader = layer.reloader();
    let base = serve(&layer).await;
    let watcher = reloader.watch(&rules, Some(users.clone()), Duration::from_millis(20));
    // Let the watcher take note of the files as they are.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(reloader.version(), 0, "nothing changed yet");
    let echo_a = format!("alex|{}:{}", rules.display(), rule_line(A, "/echo"));
    assert_eq!(get(&base, "/echo", Caller::Alex).await.body, echo_a);

    replace_file(&rules, B);
    let echo_b = format!("-|{}:{}", rules.display(), rule_line(B, "/echo"));
    let flipped =
        eventually(Duration::from_secs(5), || async { get(&base, "/echo", Caller::Anonymous).await.body == echo_b })
            .await;
    assert!(flipped, "B was not loaded within 5 s");
    assert_eq!(reloader.version(), 1);

    // A broken edit: refused, B keeps serving.
    replace_file(&rules, BROKEN_SYNTAX);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reloader.version(), 1);
    assert_eq!(get(&base, "/echo", Caller::Anonymous).await.body, echo_b);

    // The users file: bob removed.
    assert_eq!(get(&base, "/echo", Caller::Bob).await.status, 200);
    replace_file(&users, &changed_users());
    let removed =
        eventually(Duration::from_secs(5), || async { get(&base, "/echo", Caller::Bob).await.status == 401 }).await;
    assert!(removed, "the users file was not reloaded within 5 s");
    assert_eq!(get_as(&base, "/echo", "carol", "carol123").await.status, 200);

    // Fixing the rule file loads it.
    replace_file(&rules, A);
    let back =
        eventually(Duration::from_secs(5), || async { get(&base, "/echo", Caller::Anonymous).await.status == 401 })
            .await;
    assert!(back, "A was not loaded again within 5 s");
    assert_eq!(reloader.version(), 2);
    watcher.abort();
}

// SPEC B7: a change written right after `watch` returns is picked up (the watcher's idea
// of the file must date from the call, not from its first poll).
#[tokio::test]
async fn b7_watch_sees_a_change_made_right_after_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("deployment.toml");
    replace_file(&rules, A);
    let layer = layer_over(Deployment::from_file(&rules).unwrap(), &common::users_toml());
    let reloader = layer.reloader();
    let base = serve(&layer).await;
    let watcher = reloader.watch(&rules, None, Duration::from_millis(20));
    // No await between `watch` and the edit.
    replace_file(&rules, B);
    let echo_b = format!("-|{}:{}", rules.display(), rule_line(B, "/echo"));
    let flipped =
        eventually(Duration::from_secs(3), || async { get(&base, "/echo", Caller::Anonymous).await.body == echo_b })
            .await;
    watcher.abort();
    assert!(flipped, "an edit made right after watch() returned was never loaded (version {})", reloader.version());
}

// ---------------------------------------------------------------------------------------
// B7: concurrent requests and reloads
// ---------------------------------------------------------------------------------------

/// What one client task saw.
#[derive(Default)]
struct Tally {
    under_a: usize,
    under_b: usize,
    mismatches: Vec<String>,
}

/// Sends the 12 requests round and round until `progress.stop`, classifying each answer.
async fn hammer(base: String, offset: usize, progress: Arc<Progress>) -> Tally {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut tally = Tally::default();
    let mut i = offset;
    while !progress.stop.load(Ordering::Relaxed) {
        progress.requests.fetch_add(1, Ordering::Relaxed);
        let (path, caller) = (PATHS[i % PATHS.len()], CALLERS[(i / PATHS.len()) % CALLERS.len()]);
        i += 1;
        let reply = match try_get(&client, &base, path, caller.credentials()).await {
            Ok(reply) => reply,
            Err(error) => {
                tally.mismatches.push(format!("{caller:?} {path}: no response: {error}"));
                continue;
            }
        };
        let invalid_in_effect = ["C.toml", "D.toml", "realm-C", "realm-D"]
            .iter()
            .any(|mark| reply.body.contains(mark) || reply.challenges.iter().any(|c| c.contains(mark)));
        if reply.status >= 500 || invalid_in_effect {
            tally.mismatches.push(format!("{caller:?} {path}: {reply:?}"));
            continue;
        }
        let a = matches(&reply, &CONFIG_A.expected(path, caller));
        let b = matches(&reply, &CONFIG_B.expected(path, caller));
        match (a, b) {
            (true, false) => tally.under_a += 1,
            (false, true) => tally.under_b += 1,
            (true, true) => tally.mismatches.push(format!("{caller:?} {path}: A and B agree? {reply:?}")),
            (false, false) => tally.mismatches.push(format!(
                "{caller:?} {path}: {reply:?} is neither A's {:?} nor B's {:?}",
                CONFIG_A.expected(path, caller),
                CONFIG_B.expected(path, caller)
            )),
        }
    }
    tally
}

/// What the reloading thread did.
#[derive(Default, Debug)]
struct Reloads {
    accepted: u64,
    refused: u64,
    wrong: Vec<String>,
}

/// Cycles A, the tie, B, the broken file, the Basic change as fast as it can until `stop`.
/// How far the storm got, shared by the clients, the reloading thread and the test.
#[derive(Default)]
struct Progress {
    stop: AtomicBool,
    requests: AtomicUsize,
    accepted_reloads: AtomicUsize,
}

fn swap_until(reloader: Reloader, broken: &Path, progress: &Progress) -> Reloads {
    let (a, b, tie, basic) = (
        deployment("A.toml", A),
        deployment("B.toml", B),
        deployment("C.toml", C_TIE),
        deployment("D.toml", &basic_changed()),
    );
    let mut reloads = Reloads::default();
    let mut step = 0usize;
    while !progress.stop.load(Ordering::Relaxed) {
        let (name, valid, outcome) = match step % 5 {
            0 => ("A", true, reloader.reload(a.clone())),
            1 => ("tie", false, reloader.reload(tie.clone())),
            2 => ("B", true, reloader.reload(b.clone())),
            3 => ("broken file", false, reloader.reload_file(broken)),
            _ => ("basic change", false, reloader.reload(basic.clone())),
        };
        step += 1;
        match (valid, outcome) {
            (true, Ok(())) => {
                reloads.accepted += 1;
                progress.accepted_reloads.fetch_add(1, Ordering::Relaxed);
            }
            (false, Err(_)) => reloads.refused += 1,
            (true, Err(error)) => reloads.wrong.push(format!("{name} refused: {error}")),
            (false, Ok(())) => reloads.wrong.push(format!("{name} accepted")),
        }
        std::thread::yield_now();
    }
    reloads
}

// SPEC B7: while 8 keep-alive clients send requests as fast as they can, another thread
// swaps the rules between A, B and invalid files as fast as it can. Every answer is the
// one A or B gives (status, body naming the rule's origin, challenge realm, never a mix of
// both), none is a 5xx, and the invalid files never take effect. The storm lasts at least
// 3 s and until it has seen 500 requests and 20 accepted reloads (on a loaded machine that
// takes longer; it gives up after 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_concurrent_requests_are_each_decided_by_one_version() {
    const TASKS: usize = 8;
    const MIN_DURATION: Duration = Duration::from_secs(3);
    const MAX_DURATION: Duration = Duration::from_secs(60);
    const MIN_REQUESTS: usize = 500;
    const MIN_RELOADS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, BROKEN_SYNTAX).unwrap();
    let layer = layer_over(deployment("A.toml", A), &common::users_toml());
    let reloader = layer.reloader();
    let base = serve(&layer).await;
    // Warm the Basic cache, and check both versions answer as designed.
    assert_serving(&base, CONFIG_A).await;
    reloader.reload(deployment("B.toml", B)).unwrap();
    assert_serving(&base, CONFIG_B).await;
    reloader.reload(deployment("A.toml", A)).unwrap();
    let version_before = reloader.version();

    let progress = Arc::new(Progress::default());
    let swapper = {
        let (reloader, progress, broken) = (reloader.clone(), progress.clone(), broken.clone());
        std::thread::spawn(move || swap_until(reloader, &broken, &progress))
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS).map(|t| tokio::spawn(hammer(base.clone(), t * 5, progress.clone()))).collect();
    while started.elapsed() < MAX_DURATION
        && (started.elapsed() < MIN_DURATION
            || progress.requests.load(Ordering::Relaxed) < MIN_REQUESTS
            || progress.accepted_reloads.load(Ordering::Relaxed) < MIN_RELOADS)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.unwrap();
        total.under_a += tally.under_a;
        total.under_b += tally.under_b;
        total.mismatches.extend(tally.mismatches);
    }
    let reloads = swapper.join().unwrap();
    let elapsed = started.elapsed();
    let requests = total.under_a + total.under_b + total.mismatches.len();
    println!(
        "{requests} requests ({} decided by A, {} by B) and {} reloads ({} accepted, {} refused) in {elapsed:?}",
        total.under_a,
        total.under_b,
        reloads.accepted + reloads.refused,
        reloads.accepted,
        reloads.refused,
    );

    assert!(
        total.mismatches.is_empty(),
        "{} of {requests} answers were wrong, first: {:#?}",
        total.mismatches.len(),
        &total.mismatches[..total.mismatches.len().min(10)]
    );
    assert!(reloads.wrong.is_empty(), "{:?}", reloads.wrong);
    assert_eq!(reloader.version(), version_before + reloads.accepted, "only the valid files counted");
    assert!(requests >= MIN_REQUESTS, "too few requests to mean anything: {requests}");
    assert!(reloads.accepted >= MIN_RELOADS as u64, "too few reloads to mean anything: {reloads:?}");
    assert!(total.under_a > 0 && total.under_b > 0, "both versions decided requests");

    // After the storm: the last valid version serves, exactly.
    reloader.reload(deployment("B.toml", B)).unwrap();
    assert_serving(&base, CONFIG_B).await;
}
