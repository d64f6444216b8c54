//! `load-runner`: the whole-process load comparison (issues 7 and 20). Prepares the data
//! (keys, PKI, tokens), times bare signature verification on the server's core, then runs
//! `--rounds` rounds of every mode of `plan.rs`, each run paired with a no-layer baseline:
//! the bench server pinned to one core, wrk or oha pinned to the other, 127.0.0.1 only,
//! each run bounded by `--duration`. Writes `results/latest.md` and `results/latest.json`
//! (medians and quartiles over the rounds). `run.sh` builds and calls it.
#![forbid(unsafe_code)]

mod args;
mod loadgen;
mod measure;
mod plan;
mod process;
mod report;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use tower_secure_load::data::{Alg, DataDir};

fn main() {
    let settings = match args::parse(std::env::args().skip(1)) {
        Ok(settings) => settings,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("load-runner: {message}");
            }
            eprintln!("{}", args::USAGE);
            std::process::exit(2);
        }
    };
    if let Err(message) = run(&settings) {
        eprintln!("load-runner: {message}");
        std::process::exit(1);
    }
}

fn run(settings: &args::Settings) -> Result<(), String> {
    let started = Instant::now();
    let context_start = report::Context::now(settings);
    require_tools()?;
    let data = DataDir::new(&settings.data);
    let counts = token_counts(settings)?;
    prepare(settings, &counts)?;
    let bare = verify_cost(settings)?;
    eprintln!("load-runner: bare verification, µs per token on CPU {}: {bare:?}", settings.server_cpu);
    let scripts = loadgen::Scripts::write(&settings.lua_dir, &settings.data)?;
    let logs = settings.out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
    let modes = selected_modes(settings, &data, &counts)?;
    let names: Vec<&'static str> = modes.iter().map(|run| run.name).collect();
    let runs = plan::schedule(&modes, settings.rounds, settings.seed);
    let ticks = process::clock_ticks_per_second();
    let mut results = Vec::with_capacity(runs.len());
    for (index, run) in runs.iter().enumerate() {
        let result = measure::execute(index + 1, run, settings, &scripts, &logs, ticks);
        eprintln!("{}", report::progress_line(&result, runs.len()));
        results.push(result);
    }
    let in_process = settings.criterion.as_deref().map(report::in_process).unwrap_or_default();
    let context = context_start.finish(bare, counts, started.elapsed(), in_process);
    report::write(settings, &context, &names, &results)
}

fn selected_modes(
    settings: &args::Settings,
    data: &DataDir,
    counts: &BTreeMap<String, u64>,
) -> Result<Vec<plan::Run>, String> {
    let all = plan::catalogue(data, |alg| counts.get(alg.slug()).copied().unwrap_or(0));
    let Some(only) = &settings.only else {
        // --quick: the modes the repeated-credential targets judge.
        return Ok(all.into_iter().filter(|run| !settings.quick || run.role == plan::Role::Repeated).collect());
    };
    if let Some(unknown) = only.iter().find(|name| !all.iter().any(|run| run.name == name.as_str())) {
        let names: Vec<&str> = all.iter().map(|run| run.name).collect();
        return Err(format!("unknown mode {unknown:?}; modes: {}", names.join(", ")));
    }
    Ok(all.into_iter().filter(|run| only.iter().any(|name| name == run.name)).collect())
}

/// wrk, oha and taskset must be on PATH (run.sh installs them).
fn require_tools() -> Result<(), String> {
    for (tool, install) in
        [("wrk", "apt-get install -y wrk"), ("oha", "cargo install oha"), ("taskset", "apt-get install -y util-linux")]
    {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output();
        if !found.is_ok_and(|out| out.status.success()) {
            return Err(format!("{tool} is not installed ({install}; run.sh does this)"));
        }
    }
    Ok(())
}

/// Distinct tokens per algorithm: `--tokens`, or `plan::default_token_count`.
fn token_counts(settings: &args::Settings) -> Result<BTreeMap<String, u64>, String> {
    let default = |alg| plan::default_token_count(alg, settings.duration, settings.token_cache);
    let mut counts: BTreeMap<String, u64> =
        Alg::ALL.into_iter().map(|alg| (alg.slug().to_owned(), default(alg))).collect();
    if let Some(list) = &settings.tokens {
        for pair in list.split(',') {
            let (slug, count) = pair.split_once('=').ok_or("--tokens takes alg=count pairs")?;
            let count = count.parse().map_err(|_| format!("--tokens: {count:?} is not a number"))?;
            Alg::from_slug(slug).ok_or_else(|| format!("--tokens: unknown algorithm {slug:?}"))?;
            counts.insert(slug.to_owned(), count);
        }
    }
    Ok(counts)
}

fn prepare(settings: &args::Settings, counts: &BTreeMap<String, u64>) -> Result<(), String> {
    let list: Vec<String> = counts.iter().map(|(alg, n)| format!("{alg}={n}")).collect();
    let status = Command::new(settings.bin_dir.join("load-prepare"))
        .arg("data")
        .arg(&settings.data)
        .args(["--tokens", &list.join(",")])
        .status()
        .map_err(|e| format!("cannot run load-prepare: {e}"))?;
    status.success().then_some(()).ok_or_else(|| "load-prepare data failed".to_owned())
}

/// µs per bare `jsonwebtoken::decode`, per algorithm, timed on the server's core.
fn verify_cost(settings: &args::Settings) -> Result<BTreeMap<String, f64>, String> {
    let output = process::pinned(&settings.server_cpu, settings.bin_dir.join("load-prepare"))
        .arg("verify-cost")
        .arg(&settings.data)
        .output()
        .map_err(|e| format!("cannot run load-prepare verify-cost: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("load-prepare verify-cost failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    serde_json::from_str(text.trim()).map_err(|e| format!("verify-cost output: {e}: {text}"))
}
