//! The runner's command line; every number that shapes a run is a flag.

use std::path::PathBuf;

pub const USAGE: &str = "\
usage: load-runner [flags]
  --rounds N            rounds: every mode runs once a round next to a baseline of its own,
                        modes and pair order shuffled per round (default 5)
  --seed N              the shuffle's seed (default: from the clock; recorded)
  --quick               development: 3 rounds of 2 s, repeated-credential modes only
                        (unless --only names others)
  --duration S          seconds of measured load per run (default 5)
  --warmup S            seconds of warm-up load before each measured run (default 1)
  --connections N       keep-alive connections of the load generator (default 64)
  --client-threads N    wrk threads (default 1: the generator has one core)
  --server-cpu LIST     taskset CPU list for the server (default 0)
  --client-cpu LIST     taskset CPU list for the load generators (default 1)
  --workers N           tokio worker threads of the server (default 1)
  --token-cache N       [oauth2] cache_capacity of the bearer modes (default 100000)
  --tokens LIST         distinct tokens per algorithm, hs256=N,rs256=N,es256=N,eddsa=N
                        (default: enough for --duration at a fast machine's rate)
  --only LIST           run only these modes (comma separated; baselines are added)
  --data DIR            generated keys, PKI and tokens (default target/load-data)
  --bin-dir DIR         where load-server and load-prepare are (default target/release)
  --lua-dir DIR         the wrk scripts (default lua)
  --out DIR             results directory (default results)
  --criterion DIR       criterion's output (target/criterion) with the in-process check of
                        benches/layer.rs, shown beside the whole-process ratios (run.sh)
  --command TEXT        the command line to record in the results (run.sh passes it)";

#[derive(Debug, Clone)]
pub struct Settings {
    pub rounds: u64,
    pub seed: u64,
    pub quick: bool,
    pub duration: u64,
    pub warmup: u64,
    pub connections: u64,
    pub client_threads: u64,
    pub server_cpu: String,
    pub client_cpu: String,
    pub workers: u64,
    pub token_cache: u64,
    pub tokens: Option<String>,
    pub only: Option<Vec<String>>,
    pub data: PathBuf,
    pub bin_dir: PathBuf,
    pub lua_dir: PathBuf,
    pub out: PathBuf,
    pub command: String,
    pub criterion: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rounds: 5,
            seed: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs()),
            quick: false,
            duration: 5,
            warmup: 1,
            connections: 64,
            client_threads: 1,
            server_cpu: "0".to_owned(),
            client_cpu: "1".to_owned(),
            workers: 1,
            token_cache: 100_000,
            tokens: None,
            only: None,
            data: PathBuf::from("target/load-data"),
            bin_dir: PathBuf::from("target/release"),
            lua_dir: PathBuf::from("lua"),
            out: PathBuf::from("results"),
            command: "load-runner".to_owned(),
            criterion: None,
        }
    }
}

fn number(flag: &str, value: &str) -> Result<u64, String> {
    value.parse().map_err(|_| format!("{flag} takes a number, got {value:?}"))
}

pub fn parse(args: impl Iterator<Item = String>) -> Result<Settings, String> {
    let mut settings = Settings::default();
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        if flag == "--quick" {
            settings.quick = true;
            settings.rounds = 3;
            settings.duration = 2;
            continue;
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rounds" => settings.rounds = number(&flag, &value)?.max(1),
            "--seed" => settings.seed = number(&flag, &value)?,
            "--duration" => settings.duration = number(&flag, &value)?.max(1),
            "--warmup" => settings.warmup = number(&flag, &value)?,
            "--connections" => settings.connections = number(&flag, &value)?.max(1),
            "--client-threads" => settings.client_threads = number(&flag, &value)?.max(1),
            "--server-cpu" => settings.server_cpu = value,
            "--client-cpu" => settings.client_cpu = value,
            "--workers" => settings.workers = number(&flag, &value)?.max(1),
            "--token-cache" => settings.token_cache = number(&flag, &value)?.max(1),
            "--tokens" => settings.tokens = Some(value),
            "--only" => settings.only = Some(value.split(',').map(str::to_owned).collect()),
            "--data" => settings.data = value.into(),
            "--bin-dir" => settings.bin_dir = value.into(),
            "--lua-dir" => settings.lua_dir = value.into(),
            "--out" => settings.out = value.into(),
            "--command" => settings.command = value,
            "--criterion" => settings.criterion = Some(value.into()),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(settings)
}
