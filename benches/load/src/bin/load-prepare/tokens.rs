//! Minted bench tokens: for each algorithm one repeated token and N distinct ones (by
//! `jti`), signed on every core; and the flood's wrong-password Basic credentials.

use std::collections::BTreeMap;
use std::io::Write as _;

use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use tower_secure_load::data::{Alg, DataDir};
use tower_secure_load::{AUDIENCE, FLOODED_USER, GOOD_USER, ISSUER, SCOPE};

/// Distinct wrong passwords the flood cycles through (it sends a few thousand per run).
const FLOOD_CREDENTIALS: usize = 50_000;

pub fn encoding_key(dir: &DataDir, alg: Alg) -> EncodingKey {
    let pem = || std::fs::read(dir.private_key(alg)).expect("read a private key");
    match alg {
        Alg::Hs256 => EncodingKey::from_secret(&std::fs::read(dir.hmac_secret()).expect("read the HMAC secret")),
        Alg::Rs256 => EncodingKey::from_rsa_pem(&pem()).expect("RSA private key"),
        Alg::Es256 => EncodingKey::from_ec_pem(&pem()).expect("EC private key"),
        Alg::EdDsa => EncodingKey::from_ed_pem(&pem()).expect("Ed25519 private key"),
    }
}

fn mint(alg: Alg, key: &EncodingKey, serial: usize, exp: u64) -> String {
    let mut header = Header::new(alg.jsonwebtoken());
    header.kid = Some(alg.kid().to_owned());
    let iat = crate::now();
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": GOOD_USER.0, "exp": exp, "iat": iat, "scope": SCOPE, "jti": serial,
    });
    jsonwebtoken::encode(&header, &claims, key).expect("sign a bench token")
}

/// Tokens `first..first + count`, minted on all cores, in order.
fn mint_many(alg: Alg, key: &EncodingKey, first: usize, count: usize, exp: u64) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = count.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let start = first + t * chunk;
                let end = (start + chunk).min(first + count);
                scope.spawn(move || (start..end).map(|serial| mint(alg, key, serial, exp)).collect::<Vec<_>>())
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().expect("a minting thread panicked")).collect()
    })
}

fn write_lines(path: &std::path::Path, lines: &[String]) {
    let file = std::fs::File::create(path).expect("create a token file");
    let mut out = std::io::BufWriter::new(file);
    for line in lines {
        writeln!(out, "{line}").expect("write a token file");
    }
    out.flush().expect("write a token file");
}

pub fn write_all(dir: &DataDir, counts: &BTreeMap<String, usize>, exp: u64) {
    jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER)
        .expect("install the aws-lc crypto provider once");
    for alg in Alg::ALL {
        let key = encoding_key(dir, alg);
        let count = counts.get(alg.slug()).copied().unwrap_or(0);
        let started = std::time::Instant::now();
        write_lines(&dir.repeated_token(alg), &[mint(alg, &key, 0, exp)]);
        write_lines(&dir.fresh_tokens(alg), &mint_many(alg, &key, 1, count, exp));
        eprintln!("load-prepare: {count} {} tokens in {:.1} s", alg.jose(), started.elapsed().as_secs_f64());
    }
    let flood: Vec<String> = (0..FLOOD_CREDENTIALS)
        .map(|n| {
            let pair = format!("{FLOODED_USER}:wrong-guess-{n}");
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        })
        .collect();
    write_lines(&dir.flood_credentials(), &flood);
}
