//! Prints an argon2id PHC hash for a users file: `cargo run --example hash_password -- <password>`.
//! Uses argon2's default (production) parameters; set `ARGON2_CHEAP=1` for the cheap
//! parameters the tests use.

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let password = std::env::args().nth(1).ok_or("usage: hash_password <password>")?;
    let params =
        if std::env::var_os("ARGON2_CHEAP").is_some() { Params::new(8, 1, 1, None)? } else { Params::default() };
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt)?;
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params).hash_password(password.as_bytes(), &salt)?;
    println!("{hash}");
    Ok(())
}
