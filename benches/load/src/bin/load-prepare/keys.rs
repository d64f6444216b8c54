//! Signing keys (openssl CLI, as the criterion benches make them) and the users file.

use std::process::{Command, Stdio};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tower_secure_load::data::{Alg, DataDir};
use tower_secure_load::{FLOODED_USER, GOOD_USER, VIEW_PERMISSION};

/// `openssl genpkey` arguments for each asymmetric algorithm.
fn genpkey_args(alg: Alg) -> Option<&'static [&'static str]> {
    match alg {
        Alg::Hs256 => None,
        Alg::Rs256 => Some(&["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
        Alg::Es256 => Some(&["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
        Alg::EdDsa => Some(&["-algorithm", "ed25519"]),
    }
}

pub fn write_all(dir: &DataDir) {
    let secret: [u8; 32] = *b"tower-secure load bench hs256 k!";
    std::fs::write(dir.hmac_secret(), secret).expect("write the HMAC secret");
    for alg in Alg::ALL {
        if let Some(args) = genpkey_args(alg) {
            openssl_pair(dir, alg, args);
        }
    }
}

fn openssl_pair(dir: &DataDir, alg: Alg, genpkey_args: &[&str]) {
    let private = dir.private_key(alg);
    let status = Command::new("openssl")
        .arg("genpkey")
        .args(genpkey_args)
        .arg("-out")
        .arg(&private)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (apt-get install openssl)");
    assert!(status.success(), "openssl genpkey {} failed", alg.jose());
    let status = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(dir.public_key(alg))
        .status()
        .expect("run openssl pkey");
    assert!(status.success(), "openssl pkey -pubout {} failed", alg.jose());
}

/// An argon2id PHC string with a fixed salt (bench data, not a secret).
fn hash(params: Params, password: &str) -> String {
    let salt = SaltString::encode_b64(b"tower-secure-lod").expect("a 16-byte salt encodes");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashes a short password")
        .to_string()
}

/// alex's hash is the cheapest legal one (only the first request runs it: the rest hit the
/// cache); eve's has argon2's default (production) cost, which the flood makes the server
/// pay up to the `hashes_per_second` throttle.
pub fn write_users(dir: &DataDir) {
    let cheap = Params::new(8, 1, 1, None).expect("legal argon2 parameters");
    let (alex, alex_password) = GOOD_USER;
    let text = format!(
        "[[role]]\nname = \"identity_viewer\"\npermissions = [\"{VIEW_PERMISSION}\"]\n\n\
         [[user]]\nname = \"{alex}\"\npassword = \"{}\"\nroles = [\"identity_viewer\"]\n\n\
         [[user]]\nname = \"{FLOODED_USER}\"\npassword = \"{}\"\nroles = [\"identity_viewer\"]\n",
        hash(cheap, alex_password),
        hash(Params::default(), "eve-has-a-long-password"),
    );
    std::fs::write(dir.users(), text).expect("write users.toml");
}
