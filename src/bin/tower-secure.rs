//! `tower-secure check <deployment.toml> [--users <users.toml>] [--json]`: loads a rule
//! file exactly as the layer would (every load error, with file, line and key), then
//! prints the effective runtime policy as a table or as JSON (SPEC B6). The users file
//! enables the `basic` handler; an `[oauth2_server]` table the token server's tokens. Exit status 0 when
//! the file loads, 1 when it does not, 2 for a usage error.
//!
//! `#[secure]` handler rules live in the program that holds the handlers; list them from
//! there with `tower_secure::PolicyListing`.

use std::process::ExitCode;

use tower_secure::config::{load_users_file, Deployment};
use tower_secure::{PolicyListing, SecureLayer};

const USAGE: &str = "usage: tower-secure check <deployment.toml> [--users <users.toml>] [--json]";

struct Args {
    rules: String,
    users: Option<String>,
    json: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Option<Args> {
    if args.next()? != "check" {
        return None;
    }
    let mut parsed = Args { rules: String::new(), users: None, json: false };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => parsed.json = true,
            "--users" => parsed.users = Some(args.next()?),
            _ if parsed.rules.is_empty() && !arg.starts_with("--") => parsed.rules = arg,
            _ => return None,
        }
    }
    (!parsed.rules.is_empty()).then_some(parsed)
}

/// Builds the layer as an app would: the users file enables `basic`; an `[oauth2_server]`
/// table builds the token server (with the users file's clients) and trusts its tokens.
fn check(args: &Args) -> Result<PolicyListing, Box<dyn std::error::Error>> {
    let deployment = Deployment::from_file(&args.rules)?;
    let users = args.users.as_deref().map(load_users_file).transpose()?;
    let mut builder = SecureLayer::builder();
    #[cfg(feature = "oauth2-server")]
    if deployment.oauth2_server.is_some() {
        let mut tokens = tower_secure::oauth2::TokenServer::builder().deployment(&deployment);
        if let (Some(path), Some(users)) = (&args.users, &users) {
            tokens = tokens.user_store(users.clone()).clients(tower_secure::config::load_clients_file(path)?);
        }
        builder = builder.token_server(&tokens.build()?);
    }
    if let Some(users) = users {
        builder = builder.user_store(users);
    }
    Ok(PolicyListing::new(&builder.deployment(deployment).build()?))
}

fn main() -> ExitCode {
    let Some(args) = parse(std::env::args().skip(1)) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    // Issuers with a JWKS URL start background fetches: they need a runtime.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let listing = runtime.block_on(async { check(&args) });
    match listing {
        Ok(listing) if args.json => {
            println!("{}", serde_json::to_string_pretty(&listing.to_json()).unwrap_or_default());
            ExitCode::SUCCESS
        }
        Ok(listing) => {
            print!("{listing}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::FAILURE
        }
    }
}
