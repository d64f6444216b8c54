//! `tower-secure`: the crate's command line. Checks rule files without serving (every load
//! error), prints the effective policy, hashes passwords and makes client secrets
//! for the users file, mints development tokens and writes a development PKI.
//!
//! Exit status: 0 on success, 1 when a file does not load or a command fails, 2 for a
//! usage error. `tower-secure --help` and `tower-secure <command> --help` print usage.

#![forbid(unsafe_code)]

mod args;
mod check;
#[cfg(feature = "dev-certs")]
mod dev_certs;
#[cfg(feature = "oauth2-server")]
mod mint;
mod secrets;

use std::process::ExitCode;

use args::Args;

const USAGE: &str = "\
usage: tower-secure <command> [options]

commands:
  check <deployment.toml>      load a rule file as the layer would and report every error
  policy <deployment.toml>     print the effective runtime policy (table or --json)
  hash-password [PASSWORD]     an argon2id PHC hash for a users file (reads stdin without echo)
  new-client-secret            a random client secret and its hash for a [[client]] table
  mint-token                   a signed token for development (needs an explicit key)
  dev-certs <DIR>              a development PKI for mutual TLS

`tower-secure <command> --help` describes each command.";

/// Why a command did not succeed, with what to print: help was asked for (exit 0), a
/// usage error (exit 2) or a failure (exit 1).
pub(crate) enum Failure {
    Help(String),
    Usage(String),
    Failed(String),
}

impl From<args::Stop> for Failure {
    fn from(stop: args::Stop) -> Self {
        match stop {
            args::Stop::Help(help) => Self::Help(help),
            args::Stop::Usage(message) => Self::Usage(message),
        }
    }
}

type Outcome = Result<(), Failure>;

fn run(command: &str, args: Vec<String>) -> Outcome {
    match command {
        "check" => check::check(Args::parse(args, check::HELP, check::OPTIONS, check::SWITCHES)?),
        "policy" => check::policy(Args::parse(args, check::POLICY_HELP, check::OPTIONS, check::SWITCHES)?),
        "hash-password" => secrets::hash_password(Args::parse(args, secrets::HASH_HELP, &[], &[])?),
        "new-client-secret" => secrets::new_client_secret(Args::parse(args, secrets::SECRET_HELP, &[], &[])?),
        "mint-token" => mint_token(args),
        "dev-certs" => dev_certs(args),
        _ => Err(Failure::Usage(format!("unknown command `{command}`\n\n{USAGE}"))),
    }
}

#[cfg(feature = "oauth2-server")]
fn mint_token(args: Vec<String>) -> Outcome {
    mint::mint_token(Args::parse(args, mint::HELP, mint::OPTIONS, &[])?)
}

#[cfg(not(feature = "oauth2-server"))]
fn mint_token(_args: Vec<String>) -> Outcome {
    Err(Failure::Failed("this build has no token server: build it with the `oauth2-server` feature".to_owned()))
}

#[cfg(feature = "dev-certs")]
fn dev_certs(args: Vec<String>) -> Outcome {
    dev_certs::dev_certs(Args::parse(args, dev_certs::HELP, dev_certs::OPTIONS, dev_certs::SWITCHES)?)
}

#[cfg(not(feature = "dev-certs"))]
fn dev_certs(_args: Vec<String>) -> Outcome {
    Err(Failure::Failed(
        "this build has no certificate generator: `cargo install tower-secure --features dev-certs`".to_owned(),
    ))
}

fn main() -> ExitCode {
    let mut arguments = std::env::args().skip(1);
    let command = match arguments.next() {
        Some(command) if command == "--help" || command == "-h" || command == "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(command) => command,
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&command, arguments.collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Help(help)) => {
            println!("{help}");
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}
