//! The floor the fresh-token modes are judged against: one `jsonwebtoken::decode` of a
//! distinct token (signature, base64, claims JSON, `exp`/`iss`/`aud`), per algorithm,
//! on the aws-lc backend the crate uses. Prints `{"HS256": us, ...}`.

use std::io::BufRead as _;
use std::time::Instant;

use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use tower_secure_load::data::{Alg, DataDir};
use tower_secure_load::{AUDIENCE, ISSUER};

/// Passes over the sample; the fastest is reported (the least disturbed on a busy machine).
const PASSES: usize = 5;

fn decoding_key(dir: &DataDir, alg: Alg) -> DecodingKey {
    let pem = || std::fs::read(dir.public_key(alg)).expect("read a public key");
    match alg {
        Alg::Hs256 => DecodingKey::from_secret(&std::fs::read(dir.hmac_secret()).expect("read the HMAC secret")),
        Alg::Rs256 => DecodingKey::from_rsa_pem(&pem()).expect("RSA public key"),
        Alg::Es256 => DecodingKey::from_ec_pem(&pem()).expect("EC public key"),
        Alg::EdDsa => DecodingKey::from_ed_pem(&pem()).expect("Ed25519 public key"),
    }
}

fn sample(dir: &DataDir, alg: Alg, samples: usize) -> Vec<String> {
    let file = std::fs::File::open(dir.fresh_tokens(alg)).expect("open a fresh-token file (run load-prepare data)");
    std::io::BufReader::new(file).lines().take(samples).map(|line| line.expect("read a token")).collect()
}

/// Microseconds per verification: the fastest of `PASSES` passes over `tokens`.
fn time_decode(tokens: &[String], key: &DecodingKey, validation: &Validation) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..PASSES {
        let start = Instant::now();
        for token in tokens {
            let data = jsonwebtoken::decode::<Value>(token, key, validation).expect("a bench token verifies");
            std::hint::black_box(data);
        }
        best = best.min(start.elapsed().as_secs_f64() * 1e6 / tokens.len() as f64);
    }
    best
}

pub fn run(args: &[String]) {
    let dir = DataDir::new(args.first().expect("load-prepare verify-cost DIR"));
    let samples = match args.get(1..3) {
        Some([flag, value]) if flag == "--samples" => value.parse().expect("--samples takes a number"),
        _ => 2_000,
    };
    jsonwebtoken::crypto::CryptoProvider::install_default(&jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER)
        .expect("install the aws-lc crypto provider once");
    let mut result = serde_json::Map::new();
    for alg in Alg::ALL {
        let tokens = sample(&dir, alg, samples);
        assert!(!tokens.is_empty(), "no {} tokens to time", alg.jose());
        let mut validation = Validation::new(alg.jsonwebtoken());
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        let micros = time_decode(&tokens, &decoding_key(&dir, alg), &validation);
        result.insert(alg.jose().to_owned(), Value::from((micros * 100.0).round() / 100.0));
    }
    println!("{}", Value::Object(result));
}
