//! `load-prepare`: writes the data directory the bench server and the runner read (keys,
//! PKI, users, minted tokens), and times bare signature verification.
//!
//! ```text
//! load-prepare data DIR --tokens hs256=N,rs256=N,es256=N,eddsa=N
//! load-prepare verify-cost DIR [--samples N]
//! ```
//! `data` keeps an existing directory when it was made for at least these token counts and
//! its tokens stay valid for more than a day; otherwise it writes everything anew.
//! `verify-cost` prints one JSON object: microseconds per `jsonwebtoken::decode` of a
//! distinct token, per algorithm (the runner pins it to the server's core).
#![forbid(unsafe_code)]

mod keys;
mod pki;
mod tokens;
mod verify_cost;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tower_secure_load::data::{Alg, DataDir};

/// Tokens are valid this long after minting; a directory is reused while more than
/// `REUSE_MARGIN` of that is left.
const TOKEN_LIFETIME: u64 = 7 * 24 * 3600;
const REUSE_MARGIN: u64 = 24 * 3600;
const MANIFEST_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Manifest {
    version: u32,
    created: u64,
    exp: u64,
    tokens: BTreeMap<String, usize>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("data") => prepare_data(&args[1..]),
        Some("verify-cost") => verify_cost::run(&args[1..]),
        _ => {
            eprintln!("usage: load-prepare data DIR --tokens hs256=N,rs256=N,es256=N,eddsa=N");
            eprintln!("       load-prepare verify-cost DIR [--samples N]");
            std::process::exit(2);
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("system clock before 1970").as_secs()
}

/// `hs256=N,rs256=N,...` -> counts per algorithm.
fn parse_token_counts(text: &str) -> BTreeMap<String, usize> {
    text.split(',')
        .map(|pair| {
            let (slug, count) = pair.split_once('=').expect("--tokens takes alg=count pairs");
            assert!(Alg::from_slug(slug).is_some(), "unknown algorithm {slug:?} in --tokens");
            (slug.to_owned(), count.parse().expect("--tokens: a count is not a number"))
        })
        .collect()
}

fn prepare_data(args: &[String]) {
    let dir = DataDir::new(args.first().expect("load-prepare data DIR"));
    let wanted = match args.get(1..3) {
        Some([flag, value]) if flag == "--tokens" => parse_token_counts(value),
        _ => panic!("load-prepare data DIR --tokens hs256=N,rs256=N,es256=N,eddsa=N"),
    };
    if reusable(&dir, &wanted) {
        eprintln!("load-prepare: reusing {}", dir.root().display());
        return;
    }
    let _ = std::fs::remove_dir_all(dir.root());
    for sub in ["keys", "pki", "tokens"] {
        std::fs::create_dir_all(dir.root().join(sub)).expect("create the data directory");
    }
    keys::write_all(&dir);
    keys::write_users(&dir);
    pki::write_all(&dir);
    let created = now();
    let exp = created + TOKEN_LIFETIME;
    tokens::write_all(&dir, &wanted, exp);
    let manifest = Manifest { version: MANIFEST_VERSION, created, exp, tokens: wanted };
    let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
    std::fs::write(dir.manifest(), text).expect("write the manifest");
}

/// An existing directory made by this version, for at least these counts, still valid.
fn reusable(dir: &DataDir, wanted: &BTreeMap<String, usize>) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.manifest()) else { return false };
    let Ok(manifest) = serde_json::from_str::<Manifest>(&text) else { return false };
    let enough = wanted.iter().all(|(alg, count)| manifest.tokens.get(alg).is_some_and(|have| have >= count));
    manifest.version == MANIFEST_VERSION && enough && manifest.exp > now() + REUSE_MARGIN
}
