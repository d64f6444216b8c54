// `check` and `policy`: load a rule file (and a users file) exactly as an app would and
// report every load error, not only the first (SPEC B1, B6); `policy` then prints the
// effective runtime policy.

use serde_json::json;
use tower_secure::authn::{AuthenticationHandler, BearerAuthenticator};
use tower_secure::config::{load_clients_file, load_users_file, ClientRecord, ConfigError, Deployment};
use tower_secure::identity::{InMemoryUserStore, Principal};
use tower_secure::policy::{Policy, BASIC_HANDLER, CLIENT_CERT_HANDLER, OAUTH2_HANDLER};
use tower_secure::{async_trait, AuthError, PolicyListing, SecureLayer};

use crate::args::Args;
use crate::{Failure, Outcome};

pub(crate) const OPTIONS: &[&str] = &["--users", "--handler"];
pub(crate) const SWITCHES: &[&str] = &["--json"];

pub(crate) const HELP: &str = "\
usage: tower-secure check <deployment.toml> [--users <users.toml>] [--handler NAME]... [--json]

Loads the rule file (and the users file) as the layer would and reports every load error
with file, line, column and key; exit status 1 when there is one.

  --users FILE     the users file: enables `basic`, and its [[client]] tables feed an
                   [oauth2_server] token server
  --handler NAME   an authentication plugin your app registers (repeatable), so
                   allowed_auth_handlers and [authentication.priorities] may name it
  --json           print the errors as a JSON array of {file, line, column, key, message}";

pub(crate) const POLICY_HELP: &str = "\
usage: tower-secure policy <deployment.toml> [--users <users.toml>] [--handler NAME]... [--json]

Prints the effective runtime policy: every rule with its file:line, which handler rules it
overrides, and the order in which authentication handlers are asked (a table, or JSON with
--json). #[secure] handler rules live in your program: list them there with PolicyListing.
Load errors are reported as by `check` (exit status 1).

  --users FILE     the users file (enables `basic`; clients of an [oauth2_server])
  --handler NAME   an authentication plugin your app registers (repeatable)
  --json           JSON instead of a table";

/// `check`: every error, or a one-line summary.
pub(crate) fn check(args: Args) -> Outcome {
    let json = args.switch("--json");
    let layer = load(&args, HELP)?.map_err(|errors| report(&errors, json))?;
    if json {
        println!("[]");
    } else {
        let rules = layer.policy().rules().len();
        let handlers: Vec<String> = layer.handler_order().iter().map(|(name, p)| format!("{name} ({p})")).collect();
        println!("ok: {rules} rule(s); handlers in order: {}", none_or(&handlers.join(", ")));
    }
    Ok(())
}

/// `policy`: the listing, as a table or JSON.
pub(crate) fn policy(args: Args) -> Outcome {
    let json = args.switch("--json");
    let layer = load(&args, POLICY_HELP)?.map_err(|errors| report(&errors, json))?;
    let listing = PolicyListing::new(&layer);
    if json {
        let text = serde_json::to_string_pretty(&listing.to_json())
            .map_err(|e| Failure::Failed(format!("cannot print the policy: {e}")))?;
        println!("{text}");
    } else {
        print!("{listing}");
    }
    Ok(())
}

fn none_or(text: &str) -> &str {
    if text.is_empty() {
        "none"
    } else {
        text
    }
}

/// Prints the errors (JSON on stdout, or one line each on stderr) and fails.
fn report(errors: &[ConfigError], json: bool) -> Failure {
    if json {
        let list: Vec<_> = errors
            .iter()
            .map(
                |e| json!({ "file": &*e.file, "line": e.line, "column": e.column, "key": e.key, "message": e.message }),
            )
            .collect();
        println!("{}", serde_json::Value::from(list));
        return Failure::Failed(String::new());
    }
    for error in errors {
        eprintln!("{error}");
    }
    Failure::Failed(format!("{} error(s)", errors.len()))
}

/// The arguments of `check` and `policy`.
struct Files<'a> {
    rules: &'a str,
    users: Option<&'a str>,
    plugins: Vec<&'a str>,
}

/// Builds the layer as an app would, and every error on the way: the rule file's rules and
/// scopes one by one, the users file, the token server, the handlers, and the layer itself.
fn load(args: &Args, help: &str) -> Result<Result<SecureLayer, Vec<ConfigError>>, Failure> {
    let files = Files {
        rules: &args.positional(1, 1, help)?[0],
        users: args.option("--users")?,
        plugins: args.options("--handler").collect(),
    };
    // Issuers with a JWKS URL start background fetches: they need a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Failed(format!("cannot start a runtime: {e}")))?;
    Ok(runtime.block_on(async { load_files(&files) }))
}

fn load_files(files: &Files<'_>) -> Result<SecureLayer, Vec<ConfigError>> {
    let deployment = Deployment::from_file(files.rules).map_err(|e| vec![e])?;
    let mut errors = Errors::default();
    let users = files.users.and_then(|path| errors.keep(load_users_file(path)));
    let clients = files.users.and_then(|path| errors.keep(load_clients_file(path)));
    errors.extend(policy_errors(&deployment, files));
    errors.keep(BearerAuthenticator::from_config(&deployment, None));
    #[cfg(feature = "tls")]
    if deployment.client_cert_enabled() {
        let store = std::sync::Arc::new(users.clone().unwrap_or_default());
        errors.keep(tower_secure::authn::ClientCertAuthenticator::from_config(&deployment, store));
    }
    // Without the users the file names, the layer would lack `basic` and report that too.
    let users_loaded = files.users.is_none() || users.is_some();
    let layer = users_loaded.then(|| errors.keep(build_layer(deployment, users, clients, &files.plugins))).flatten();
    match (layer, errors.0.is_empty()) {
        (Some(layer), true) => Ok(layer),
        _ => Err(errors.sorted()),
    }
}

/// The rules and scope definitions, each checked on its own, against the handler names
/// the layer will have.
fn policy_errors(deployment: &Deployment, files: &Files<'_>) -> Vec<ConfigError> {
    let bearer = deployment.bearer_enabled();
    let mut handlers: Vec<&str> = files.plugins.clone();
    handlers.extend(bearer.then_some(OAUTH2_HANDLER));
    handlers.extend(files.users.map(|_| BASIC_HANDLER));
    handlers.extend(deployment.client_cert_enabled().then_some(CLIENT_CERT_HANDLER));
    Policy::compile_reporting_all(deployment, &handlers).err().unwrap_or_default()
}

/// The layer, with its token server when the file has `[oauth2_server]`.
fn build_layer(
    deployment: Deployment,
    users: Option<InMemoryUserStore>,
    clients: Option<Vec<ClientRecord>>,
    plugins: &[&str],
) -> Result<SecureLayer, ConfigError> {
    let mut builder = SecureLayer::builder();
    for name in plugins {
        builder = builder.authentication_handler(DeclaredPlugin((*name).to_owned()));
    }
    #[cfg(feature = "oauth2-server")]
    if deployment.token_server_enabled() {
        let mut tokens = tower_secure::oauth2::TokenServer::builder().deployment(&deployment);
        if let Some(users) = &users {
            tokens = tokens.user_store(users.clone());
        }
        builder = builder.token_server(&tokens.clients(clients.unwrap_or_default()).build()?);
    }
    #[cfg(not(feature = "oauth2-server"))]
    let _ = clients;
    if let Some(users) = users {
        builder = builder.user_store(users);
    }
    builder.deployment(deployment).build()
}

/// Errors in the order found, one per place and key (the layer's build repeats what the
/// parts said, sometimes in other words).
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        result.map_err(|error| self.extend([error])).ok()
    }

    fn extend(&mut self, errors: impl IntoIterator<Item = ConfigError>) {
        let place = |e: &ConfigError| (e.file.clone(), e.line, e.column, e.key.clone());
        for error in errors {
            if !self.0.iter().any(|known| place(known) == place(&error)) {
                self.0.push(error);
            }
        }
    }

    /// By file, then position.
    fn sorted(mut self) -> Vec<ConfigError> {
        self.0.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
        self.0
    }
}

/// An authentication plugin of the app, declared with `--handler`: it has the name, and
/// never handles a request.
struct DeclaredPlugin(String);

#[async_trait]
impl AuthenticationHandler for DeclaredPlugin {
    fn name(&self) -> &str {
        &self.0
    }

    fn can_handle(&self, _request: &http::request::Parts) -> bool {
        false
    }

    async fn authenticate(&self, _request: &http::request::Parts) -> Result<Principal, AuthError> {
        Err(AuthError::internal("a declared plugin authenticates nobody"))
    }
}
