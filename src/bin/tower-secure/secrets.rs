// `hash-password` and `new-client-secret`: argon2id PHC strings (argon2's default
// parameters) for a users file's `password` and a `[[client]]` table's `secret`.

use std::io::{BufRead as _, IsTerminal as _};

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::Argon2;

use crate::args::Args;
use crate::{Failure, Outcome};

pub(crate) const HASH_HELP: &str = "\
usage: tower-secure hash-password [PASSWORD]

Prints an argon2id PHC hash (argon2's default parameters) for a users file's `password`.
Without PASSWORD it reads one line from standard input, without echo from a terminal.
Prefer that: a password on the command line stays in the shell history.";

pub(crate) const SECRET_HELP: &str = "\
usage: tower-secure new-client-secret

Prints a random client secret (32 characters of A-Z a-z 0-9 - _, 192 bits, the same
whether a client form-encodes it or not) and the `secret = \"...\"` line with its hash for
a [[client]] table.";

/// `hash-password`.
pub(crate) fn hash_password(args: Args) -> Outcome {
    let password = match args.positional(0, 1, HASH_HELP)? {
        [given] => given.clone(),
        _ => read_password()?,
    };
    if password.is_empty() {
        return Err(Failure::Failed("the password is empty".to_owned()));
    }
    println!("{}", hash(&password)?);
    Ok(())
}

/// `new-client-secret`.
pub(crate) fn new_client_secret(args: Args) -> Outcome {
    args.positional(0, 0, SECRET_HELP)?;
    let secret = client_secret()?;
    println!("secret: {secret}");
    println!("secret = \"{}\"", hash(&secret)?);
    Ok(())
}

/// An argon2id PHC string with argon2's default parameters and a random salt.
fn hash(password: &str) -> Result<String, Failure> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Failure::Failed(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Failure::Failed(e.to_string()))?;
    let hash =
        Argon2::default().hash_password(password.as_bytes(), &salt).map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(hash.to_string())
}

/// 32 characters of `A-Z a-z 0-9 - _`: form-urlencoding leaves them alone, so clients that
/// send the secret unencoded work too.
fn client_secret() -> Result<String, Failure> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| Failure::Failed(format!("no randomness: {e}")))?;
    Ok(bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 64)])).collect())
}

/// One line of standard input, without its line ending; from a terminal, asked for and
/// read with echo off.
fn read_password() -> Result<String, Failure> {
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("password: ");
        echo(false)?;
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if terminal {
        // Echo back on whatever happened; a failure to restore it is not the hash's business.
        let _ = echo(true);
        eprintln!();
    }
    read.map_err(|e| Failure::Failed(format!("cannot read the password: {e}")))?;
    let line = line.strip_suffix('\n').unwrap_or(&line);
    Ok(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// Turns the terminal's echo on or off with `stty`, which acts on its standard input:
/// this process's, the terminal.
#[cfg(unix)]
fn echo(on: bool) -> Result<(), Failure> {
    let status = std::process::Command::new("stty")
        .arg(if on { "echo" } else { "-echo" })
        .stdin(std::process::Stdio::inherit())
        .status();
    match status {
        Ok(status) if status.success() => Ok(()),
        _ => {
            Err(Failure::Failed("cannot turn the terminal's echo off: pipe the password on standard input".to_owned()))
        }
    }
}

#[cfg(not(unix))]
fn echo(_on: bool) -> Result<(), Failure> {
    Err(Failure::Failed("cannot turn the terminal's echo off here: pipe the password on standard input".to_owned()))
}
