//! Which runs, in which order: rounds, each running every mode of the catalogue once, paired
//! with a no-layer baseline of the same transport run just before or just after it (an
//! ABAB design). The modes' order and which of a pair goes first are shuffled per round, so
//! drift of the machine over the run spreads over all modes instead of biasing some.

use std::path::PathBuf;

use tower_secure_load::data::{Alg, DataDir};
use tower_secure_load::OPAQUE_TOKEN;

/// Plain HTTP or TLS: a mode is compared with baselines of its own transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Http,
    Tls,
}

/// What the load generator sends.
#[derive(Debug, Clone)]
pub enum Load {
    /// wrk, the same request every time (with this Authorization header, if any).
    Static { auth: Option<String> },
    /// wrk, the next line of `file` (after `prefix`) as the Authorization header of each request.
    Cycle { file: PathBuf, prefix: &'static str, distinct: u64 },
    /// oha over TLS, presenting alex's client certificate on every connection.
    Tls,
    /// wrk with `auth` while a second wrk floods wrong passwords from `flood_file`.
    Flood { auth: String, flood_file: PathBuf },
}

/// What a run is for, which decides the targets it is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The same app with no layer.
    Baseline,
    /// A credential the layer has cached: target >= 0.90x of the baselines' requests/s.
    Repeated,
    /// A new token every request: target <= 1.2x the bare verification cost added.
    Fresh,
    /// Cached Basic while wrong passwords flood: target >= 0.80x of `basic_cached`.
    Flood,
    /// jwt-authorizer: the fresh-token modes should use less CPU per request.
    Reference,
    /// A minimal middleware doing only the bare verification of each fresh token: the
    /// floor the fresh-token modes are judged against, at the same request rate.
    Floor,
    /// No layer, but a bearer-sized header: how much of a mode's cost is the bytes.
    Control,
}

#[derive(Debug, Clone)]
pub struct Run {
    pub name: &'static str,
    pub what: &'static str,
    /// `load-server` mode.
    pub server: &'static str,
    pub transport: Transport,
    pub role: Role,
    pub alg: Option<Alg>,
    /// The warm-up load (cached credentials warmed, code paths hot).
    pub warmup: Load,
    pub load: Load,
    /// The round (from 1) and the pair (a mode and its baseline, numbered over the whole
    /// run from 1); 0 before scheduling.
    pub round: usize,
    pub pair: usize,
}

/// Distinct tokens minted per algorithm per second of `--duration`: about what one core
/// verifies on a fast machine (cycle.lua counts it when a run goes past the end of its file).
pub fn tokens_per_second(alg: Alg) -> u64 {
    match alg {
        Alg::Hs256 => 60_000,
        Alg::Rs256 => 20_000,
        Alg::Es256 => 15_000,
        Alg::EdDsa => 25_000,
    }
}

/// Distinct tokens to mint for `alg`: enough for `seconds`, and at least twice the token
/// cache, so that a token sent again after the file wraps was evicted long before (it is
/// verified again, as a fresh one). RS256 signing (~0.7 ms a token) dominates the one-off
/// minting time.
pub fn default_token_count(alg: Alg, seconds: u64, token_cache: u64) -> u64 {
    (tokens_per_second(alg) * seconds).max(2 * token_cache)
}

fn header_line(path: &std::path::Path) -> String {
    DataDir::read(path).lines().next().unwrap_or_default().to_owned()
}

fn basic_alex() -> String {
    use base64::Engine as _;
    let (user, password) = tower_secure_load::GOOD_USER;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn static_auth(auth: String) -> Load {
    Load::Static { auth: Some(auth) }
}

fn bearer_runs(dir: &DataDir, distinct: impl Fn(Alg) -> u64) -> Vec<Run> {
    let mut runs = Vec::new();
    for alg in Alg::ALL {
        let repeated = format!("Bearer {}", header_line(&dir.repeated_token(alg)));
        let (name, what) = names_repeated(alg);
        runs.push(Run {
            name,
            what,
            server: "bearer",
            transport: Transport::Http,
            role: Role::Repeated,
            alg: Some(alg),
            warmup: static_auth(repeated.clone()),
            load: static_auth(repeated.clone()),
            round: 0,
            pair: 0,
        });
        let (name, what) = names_fresh(alg);
        let load = Load::Cycle { file: dir.fresh_tokens(alg), prefix: "Bearer ", distinct: distinct(alg) };
        let (server, transport, role) = ("bearer", Transport::Http, Role::Fresh);
        let warmup = static_auth(repeated.clone());
        let (round, pair) = (0, 0);
        runs.push(Run { name, what, server, transport, role, alg: Some(alg), warmup, load: load.clone(), round, pair });
        let (name, what) = names_floor(alg);
        let (server, role, warmup) = ("bare-jwt", Role::Floor, static_auth(repeated));
        runs.push(Run { name, what, server, transport, role, alg: Some(alg), warmup, load, round, pair });
    }
    runs
}

fn names_floor(alg: Alg) -> (&'static str, &'static str) {
    match alg {
        Alg::Hs256 => ("bare_jwt_hs256_fresh", "no layer: a minimal middleware doing one jsonwebtoken::decode, HS256"),
        Alg::Rs256 => ("bare_jwt_rs256_fresh", "no layer: a minimal middleware doing one jsonwebtoken::decode, RS256"),
        Alg::Es256 => ("bare_jwt_es256_fresh", "no layer: a minimal middleware doing one jsonwebtoken::decode, ES256"),
        Alg::EdDsa => ("bare_jwt_eddsa_fresh", "no layer: a minimal middleware doing one jsonwebtoken::decode, EdDSA"),
    }
}

fn names_repeated(alg: Alg) -> (&'static str, &'static str) {
    match alg {
        Alg::Hs256 => ("bearer_hs256_repeated", "HS256 JWT, the same token every request (cached)"),
        Alg::Rs256 => ("bearer_rs256_repeated", "RS256 JWT, the same token every request (cached)"),
        Alg::Es256 => ("bearer_es256_repeated", "ES256 JWT, the same token every request (cached)"),
        Alg::EdDsa => ("bearer_eddsa_repeated", "EdDSA JWT, the same token every request (cached)"),
    }
}

fn names_fresh(alg: Alg) -> (&'static str, &'static str) {
    match alg {
        Alg::Hs256 => ("bearer_hs256_fresh", "HS256 JWT, a new token every request (verified, cached)"),
        Alg::Rs256 => ("bearer_rs256_fresh", "RS256 JWT, a new token every request (verified, cached)"),
        Alg::Es256 => ("bearer_es256_fresh", "ES256 JWT, a new token every request (verified, cached)"),
        Alg::EdDsa => ("bearer_eddsa_fresh", "EdDSA JWT, a new token every request (verified, cached)"),
    }
}

/// Every mode, baselines not included, plain HTTP ones first.
pub fn catalogue(dir: &DataDir, distinct: impl Fn(Alg) -> u64) -> Vec<Run> {
    let rs256_repeated = format!("Bearer {}", header_line(&dir.repeated_token(Alg::Rs256)));
    let http = Transport::Http;
    let mut runs = vec![Run {
        name: "basic_cached",
        what: "Basic, one user's cached credential, permission rule",
        server: "basic",
        transport: http,
        role: Role::Repeated,
        alg: None,
        warmup: static_auth(basic_alex()),
        load: static_auth(basic_alex()),
        round: 0,
        pair: 0,
    }];
    runs.push(Run {
        name: "basic_cached_under_flood",
        what: "basic_cached while a second client floods wrong passwords (argon2 default cost)",
        server: "basic",
        transport: http,
        role: Role::Flood,
        alg: None,
        warmup: static_auth(basic_alex()),
        load: Load::Flood { auth: basic_alex(), flood_file: dir.flood_credentials() },
        round: 0,
        pair: 0,
    });
    runs.extend(bearer_runs(dir, &distinct));
    runs.push(Run {
        name: "introspection_cached",
        what: "opaque token, RFC 7662 introspection answer cached",
        server: "introspection",
        transport: http,
        role: Role::Repeated,
        alg: None,
        warmup: static_auth(format!("Bearer {OPAQUE_TOKEN}")),
        load: static_auth(format!("Bearer {OPAQUE_TOKEN}")),
        round: 0,
        pair: 0,
    });
    runs.push(Run {
        name: "jwt_authorizer_rs256_repeated",
        what: "jwt-authorizer 0.15 layer, the same RS256 token every request (no cache)",
        server: "jwt-authorizer",
        transport: http,
        role: Role::Reference,
        alg: Some(Alg::Rs256),
        warmup: static_auth(rs256_repeated.clone()),
        load: static_auth(rs256_repeated.clone()),
        round: 0,
        pair: 0,
    });
    runs.push(Run {
        name: "jwt_authorizer_rs256_fresh",
        what: "jwt-authorizer 0.15 layer, a new RS256 token every request",
        server: "jwt-authorizer",
        transport: http,
        role: Role::Reference,
        alg: Some(Alg::Rs256),
        warmup: static_auth(rs256_repeated.clone()),
        load: Load::Cycle { file: dir.fresh_tokens(Alg::Rs256), prefix: "Bearer ", distinct: distinct(Alg::Rs256) },
        round: 0,
        pair: 0,
    });
    runs.push(Run {
        name: "no_layer_rs256_header",
        what: "no layer, requests carrying the RS256 token header (the bytes alone)",
        server: "none",
        transport: http,
        role: Role::Control,
        alg: None,
        warmup: static_auth(rs256_repeated.clone()),
        load: static_auth(rs256_repeated),
        round: 0,
        pair: 0,
    });
    runs.push(Run {
        name: "mtls_client_cert",
        what: "TLS 1.3 keep-alive, client certificate (allow-listed CA), permission rule",
        server: "mtls",
        transport: Transport::Tls,
        role: Role::Repeated,
        alg: None,
        warmup: Load::Tls,
        load: Load::Tls,
        round: 0,
        pair: 0,
    });
    runs
}

fn baseline(transport: Transport) -> Run {
    let (name, what, server, load) = match transport {
        Transport::Http => ("no_layer", "the same app, no layer, no credential", "none", Load::Static { auth: None }),
        Transport::Tls => ("tls_no_layer", "the same app over the same TLS server, no layer", "tls-none", Load::Tls),
    };
    Run {
        name,
        what,
        server,
        transport,
        role: Role::Baseline,
        alg: None,
        warmup: load.clone(),
        load,
        round: 0,
        pair: 0,
    }
}

/// `rounds` rounds of every mode, each mode paired with a baseline of its transport run
/// right before or right after it; modes and pair order shuffled per round with `seed`.
pub fn schedule(modes: &[Run], rounds: u64, seed: u64) -> Vec<Run> {
    let mut random = XorShift(seed.max(1));
    let mut runs = Vec::new();
    let mut pair = 0;
    for round in 1..=rounds as usize {
        let mut order: Vec<&Run> = modes.iter().collect();
        random.shuffle(&mut order);
        for mode in order {
            pair += 1;
            let base = Run { round, pair, ..baseline(mode.transport) };
            let mode = Run { round, pair, ..mode.clone() };
            if random.next().is_multiple_of(2) {
                runs.extend([base, mode]);
            } else {
                runs.extend([mode, base]);
            }
        }
    }
    runs
}

/// Marsaglia's xorshift64: enough to shuffle a schedule reproducibly from a recorded seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Fisher-Yates.
    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}
