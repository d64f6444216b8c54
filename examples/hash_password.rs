//! Prints an argon2id PHC hash for a users file: `cargo run --example hash_password -- <password>`.
//! `--new-client-secret` makes a random client secret (32 characters from the set that
//! form-urlencoding leaves alone, so clients that send it unencoded work too) and prints
//! the secret and its hash. Uses argon2's default (production) parameters; set
//! `ARGON2_CHEAP=1` for the cheap parameters the tests use.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// A random client secret: 32 characters of `A-Z a-z 0-9 - _` (192 bits).
fn new_client_secret() -> Result<String, Box<dyn std::error::Error>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes.iter().map(|b| char::from(ALPHABET[usize::from(b % 64)])).collect())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argument = std::env::args().nth(1).ok_or("usage: hash_password <password> | --new-client-secret")?;
    let secret = if argument == "--new-client-secret" { Some(new_client_secret()?) } else { None };
    let password = secret.as_deref().unwrap_or(&argument);
    let params =
        if std::env::var_os("ARGON2_CHEAP").is_some() { Params::new(8, 1, 1, None)? } else { Params::default() };
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt)?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(password.as_bytes(), &salt)?;
    if let Some(secret) = &secret {
        println!("secret: {secret}");
        println!("secret = \"{hash}\"");
    } else {
        println!("{hash}");
    }
    Ok(())
}
