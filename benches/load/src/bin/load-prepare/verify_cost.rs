//! The floor the fresh-token modes are judged against: one `jsonwebtoken::decode` of a
//! distinct token (signature, base64, claims JSON, `exp`/`iss`/`aud`), per algorithm,
//! on the aws-lc backend the crate uses, in CPU time of this thread (not wall time, which
//! a busy machine inflates). Prints `{"HS256": us, ...}`, plus
//! `"RS256 (jsonwebtoken 9, ring)"`: the same check with the jsonwebtoken jwt-authorizer
//! uses, so the reference comparison can tell the crypto backend from the layer; and the
//! RS256 signature check alone on aws-lc, with the key parsed on every call (what
//! jsonwebtoken 10 does) and parsed once (`ParsedPublicKey`).

use std::io::BufRead as _;

use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;
use tower_secure_load::data::{Alg, DataDir};
use tower_secure_load::{AUDIENCE, ISSUER};

/// Each figure is this much CPU time of repeated passes over the sample (the CPU clock of
/// /proc ticks 100 times a second, so this keeps it within about 1%).
const MIN_CPU_SECONDS: f64 = 1.0;

/// This thread's user + system CPU time, from /proc/thread-self/stat (clock ticks, 100/s).
fn thread_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("read /proc/thread-self/stat");
    let after_name = &stat[stat.rfind(')').expect("stat has a command name") + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    ticks as f64 / 100.0
}

/// CPU microseconds per call of `pass` (which handles `count` tokens), over whole passes
/// until `MIN_CPU_SECONDS` of CPU time have gone by; one pass first, untimed, to warm up.
fn per_token(count: usize, pass: &dyn Fn()) -> f64 {
    pass();
    let start = thread_cpu_seconds();
    let mut passes = 0;
    while thread_cpu_seconds() - start < MIN_CPU_SECONDS {
        pass();
        passes += 1;
    }
    (thread_cpu_seconds() - start) * 1e6 / (passes * count) as f64
}

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

/// CPU microseconds per verification.
fn time_decode(tokens: &[String], key: &DecodingKey, validation: &Validation) -> f64 {
    per_token(tokens.len(), &|| {
        for token in tokens {
            let data = jsonwebtoken::decode::<Value>(token, key, validation).expect("a bench token verifies");
            std::hint::black_box(data);
        }
    })
}

/// RS256 on jsonwebtoken 9 (ring), as jwt-authorizer verifies.
fn time_ring_rs256(dir: &DataDir, tokens: &[String]) -> f64 {
    let pem = std::fs::read(dir.public_key(Alg::Rs256)).expect("read the RSA public key");
    let key = jsonwebtoken9::DecodingKey::from_rsa_pem(&pem).expect("RSA public key");
    let mut validation = jsonwebtoken9::Validation::new(jsonwebtoken9::Algorithm::RS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    per_token(tokens.len(), &|| {
        for token in tokens {
            let data = jsonwebtoken9::decode::<Value>(token, &key, &validation).expect("a bench token verifies");
            std::hint::black_box(data);
        }
    })
}

/// The signed part and the signature of a compact JWS.
fn split_jws(token: &str) -> (&[u8], Vec<u8>) {
    use base64::Engine as _;
    let dot = token.rfind('.').expect("a JWS has two dots");
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token[dot + 1..]).expect("base64url");
    (&token.as_bytes()[..dot], signature)
}

/// The DER inside a one-block PEM file.
fn pem_der(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = text.lines().filter(|line| !line.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).expect("PEM body is base64")
}

/// RS256 signature checks alone on aws-lc: (key parsed per call, key parsed once), µs.
fn time_rs256_signature_only(dir: &DataDir, tokens: &[String]) -> (f64, f64) {
    use aws_lc_rs::signature::{ParsedPublicKey, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
    let der = pem_der(&DataDir::read(&dir.public_key(Alg::Rs256)));
    let parts: Vec<(&[u8], Vec<u8>)> = tokens.iter().map(|token| split_jws(token)).collect();
    let parsed = ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der).expect("aws-lc parses the RSA key");
    let unparsed = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &der);
    let cost = |check: &dyn Fn(&[u8], &[u8])| {
        per_token(parts.len(), &|| {
            for (message, signature) in &parts {
                check(message, signature);
            }
        })
    };
    let per_call = cost(&|message, signature| unparsed.verify(message, signature).expect("signature verifies"));
    let once = cost(&|message, signature| parsed.verify_sig(message, signature).expect("signature verifies"));
    (per_call, once)
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
        if alg == Alg::Rs256 {
            let ring = time_ring_rs256(&dir, &tokens);
            result.insert("RS256 (jsonwebtoken 9, ring)".to_owned(), Value::from((ring * 100.0).round() / 100.0));
            let (per_call, once) = time_rs256_signature_only(&dir, &tokens);
            let round = |us: f64| Value::from((us * 100.0).round() / 100.0);
            result.insert("RS256 signature only, aws-lc, key parsed per call".to_owned(), round(per_call));
            result.insert("RS256 signature only, aws-lc, key parsed once".to_owned(), round(once));
        }
    }
    println!("{}", Value::Object(result));
}
