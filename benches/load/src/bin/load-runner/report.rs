//! The results: each mode next to the no-layer runs around it, the targets judged,
//! written as Markdown (`latest.md`) and JSON (`latest.json`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use serde::Serialize;

use crate::args::Settings;
use crate::measure::RunResult;
use crate::plan::Role;

/// When, where and how the run was made.
#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub date: String,
    pub command: String,
    /// `git rev-parse HEAD` of the checkout measured, `+dirty` when it had changes.
    pub commit: String,
    pub rounds: u64,
    pub seed: u64,
    pub machine: String,
    pub load_average_at_start: String,
    pub load_average_at_end: String,
    pub settings: String,
    pub bare_verify_us: BTreeMap<String, f64>,
    pub tokens_per_algorithm: BTreeMap<String, u64>,
    /// `[oauth2] cache_capacity` of the bearer modes.
    pub token_cache: u64,
    pub elapsed_s: f64,
    /// The in-process check, when criterion's estimates were there (run.sh makes them).
    pub in_process: Vec<InProcess>,
}

/// The commit of the checkout this runs in, `+dirty` with uncommitted changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short=12", "HEAD"]) else { return "unknown".to_owned() };
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{head}+dirty")
    } else {
        head
    }
}

fn first_line(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().lines().next().unwrap_or_default().trim().to_owned()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores, {model}, Linux {}", first_line("/proc/sys/kernel/osrelease"))
}

impl Context {
    pub fn now(settings: &Settings) -> Context {
        let date = Command::new("date")
            .args(["-u", "+%Y-%m-%d %H:%M UTC"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        let settings_text = format!(
            "{} rounds; {} s per run after {} s warm-up; {} connections; server on CPU {} ({} tokio worker{}); \
             wrk/oha on CPU {}; bearer/introspection cache_capacity {}",
            settings.rounds,
            settings.duration,
            settings.warmup,
            settings.connections,
            settings.server_cpu,
            settings.workers,
            if settings.workers == 1 { "" } else { "s" },
            settings.client_cpu,
            settings.token_cache,
        );
        Context {
            date,
            command: settings.command.clone(),
            commit: commit(),
            rounds: settings.rounds,
            seed: settings.seed,
            machine: machine(),
            load_average_at_start: first_line("/proc/loadavg"),
            load_average_at_end: String::new(),
            settings: settings_text,
            bare_verify_us: BTreeMap::new(),
            tokens_per_algorithm: BTreeMap::new(),
            token_cache: settings.token_cache,
            elapsed_s: 0.0,
            in_process: Vec::new(),
        }
    }

    pub fn finish(
        self,
        bare: BTreeMap<String, f64>,
        tokens: BTreeMap<String, u64>,
        elapsed: Duration,
        in_process: Vec<InProcess>,
    ) -> Context {
        Context {
            bare_verify_us: bare,
            tokens_per_algorithm: tokens,
            elapsed_s: elapsed.as_secs_f64(),
            load_average_at_end: first_line("/proc/loadavg"),
            in_process,
            ..self
        }
    }
}

/// One run of a mode next to the baseline of its pair (same round, same transport).
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub name: &'static str,
    pub role: Role,
    pub round: usize,
    pub requests_per_second: f64,
    pub baseline_requests_per_second: Option<f64>,
    /// requests/s of the mode over its baseline's.
    pub ratio: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    pub baseline_cpu_us_per_request: Option<f64>,
    /// Server CPU per request above the baseline's.
    pub added_cpu_us_per_request: Option<f64>,
    /// The baseline's CPU per request over the mode's: the requests/s ratio a server whose
    /// core is the bottleneck would show (read this one when the client core was full).
    pub cpu_ratio: Option<f64>,
    /// Heap allocations of the server per successful request, the mode's and its baseline's.
    pub allocations_per_request: Option<f64>,
    pub baseline_allocations_per_request: Option<f64>,
    /// Allocations per request above the baseline's.
    pub added_allocations_per_request: Option<f64>,
}

/// Each mode's run compared with the baseline of its pair.
pub fn compare(results: &[RunResult]) -> Vec<Compared> {
    let mut compared = Vec::new();
    for run in results.iter().filter(|r| r.role != Role::Baseline) {
        let Some(rps) = run.requests_per_second() else { continue };
        let base = results.iter().find(|r| r.role == Role::Baseline && r.pair == run.pair && r.load.is_some());
        let baseline_rps = base.and_then(RunResult::requests_per_second);
        let baseline_cpu = base.and_then(|b| b.cpu_us_per_request);
        let baseline_allocations = base.and_then(|b| b.allocations_per_request);
        compared.push(Compared {
            name: run.name,
            role: run.role,
            round: run.round,
            requests_per_second: rps,
            baseline_requests_per_second: baseline_rps,
            ratio: baseline_rps.map(|base| rps / base),
            cpu_us_per_request: run.cpu_us_per_request,
            baseline_cpu_us_per_request: baseline_cpu,
            added_cpu_us_per_request: run.cpu_us_per_request.zip(baseline_cpu).map(|(cpu, base)| cpu - base),
            cpu_ratio: run.cpu_us_per_request.zip(baseline_cpu).map(|(cpu, base)| base / cpu),
            allocations_per_request: run.allocations_per_request,
            baseline_allocations_per_request: baseline_allocations,
            added_allocations_per_request: run
                .allocations_per_request
                .zip(baseline_allocations)
                .map(|(allocations, base)| allocations - base),
        });
    }
    compared
}

/// A quantity over the rounds: its median and quartiles (linear interpolation between
/// order statistics), and the value of each round in round order.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    pub median: f64,
    pub q1: f64,
    pub q3: f64,
    pub per_round: Vec<(usize, f64)>,
}

/// An interquartile range wider than this cannot tell a target of two decimals.
pub const TOO_WIDE: f64 = 0.05;

impl Spread {
    pub fn of(per_round: Vec<(usize, f64)>) -> Option<Spread> {
        let mut sorted: Vec<f64> = per_round.iter().map(|(_, v)| *v).filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let quantile = |q: f64| {
            let position = q * (sorted.len() - 1) as f64;
            let (low, high) = (position.floor() as usize, position.ceil() as usize);
            sorted[low] + (sorted[high] - sorted[low]) * (position - low as f64)
        };
        Some(Spread { median: quantile(0.5), q1: quantile(0.25), q3: quantile(0.75), per_round })
    }

    pub fn iqr(&self) -> f64 {
        self.q3 - self.q1
    }

    fn text(&self, decimals: usize, suffix: &str) -> String {
        format!("{:.decimals$}{suffix} [{:.decimals$}–{:.decimals$}]", self.median, self.q1, self.q3)
    }
}

/// The values of one field of a mode's compared runs, by round.
fn by_round(compared: &[Compared], name: &str, field: impl Fn(&Compared) -> Option<f64>) -> Vec<(usize, f64)> {
    let mut values: Vec<(usize, f64)> =
        compared.iter().filter(|c| c.name == name).filter_map(|c| field(c).map(|v| (c.round, v))).collect();
    values.sort_by_key(|(round, _)| *round);
    values
}

/// Two modes' values combined round by round (rounds where both ran).
fn paired_rounds(a: &[(usize, f64)], b: &[(usize, f64)], combine: impl Fn(f64, f64) -> f64) -> Vec<(usize, f64)> {
    a.iter()
        .filter_map(|(round, x)| b.iter().find(|(r, _)| r == round).map(|(_, y)| (*round, combine(*x, *y))))
        .collect()
}

fn median_of(values: &[(usize, f64)]) -> Option<f64> {
    Spread::of(values.to_vec()).map(|s| s.median)
}

/// A mode over all its rounds.
#[derive(Debug, Clone, Serialize)]
pub struct ModeSummary {
    pub name: &'static str,
    pub role: Role,
    pub rounds: usize,
    pub requests_per_second: Option<f64>,
    pub baseline_requests_per_second: Option<f64>,
    pub ratio: Option<Spread>,
    pub cpu_ratio: Option<Spread>,
    pub cpu_us_per_request: Option<f64>,
    pub added_cpu_us_per_request: Option<Spread>,
    /// Heap allocations of the server per successful request, median over the rounds, and
    /// the same minus the pair's baseline's.
    pub allocations_per_request: Option<f64>,
    pub added_allocations_per_request: Option<Spread>,
    /// The busiest the load generator's core was in any round (near 100%: it limited the run),
    /// for the mode's runs and for its baselines'.
    pub client_busy_max: Option<f64>,
    pub baseline_client_busy_max: Option<f64>,
    pub server_busy_median: Option<f64>,
    /// Connections accepted per measured run, median over the rounds.
    pub connections_per_run: Option<f64>,
    pub peak_rss_kib: Option<u64>,
}

/// Every mode in the catalogue's order, over its rounds.
pub fn summarize(modes: &[&'static str], compared: &[Compared], results: &[RunResult]) -> Vec<ModeSummary> {
    let mut summaries = Vec::new();
    for &name in modes {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.name == name).collect();
        let Some(first) = runs.first() else { continue };
        let values = |field: fn(&Compared) -> Option<f64>| by_round(compared, name, field);
        let of_runs = |field: fn(&RunResult) -> Option<f64>| -> Vec<(usize, f64)> {
            runs.iter().filter_map(|r| field(r).map(|v| (r.round, v))).collect()
        };
        summaries.push(ModeSummary {
            name,
            role: first.role,
            rounds: runs.iter().filter(|r| r.load.is_some()).count(),
            requests_per_second: median_of(&values(|c| Some(c.requests_per_second))),
            baseline_requests_per_second: median_of(&values(|c| c.baseline_requests_per_second)),
            ratio: Spread::of(values(|c| c.ratio)),
            cpu_ratio: Spread::of(values(|c| c.cpu_ratio)),
            cpu_us_per_request: median_of(&values(|c| c.cpu_us_per_request)),
            added_cpu_us_per_request: Spread::of(values(|c| c.added_cpu_us_per_request)),
            allocations_per_request: median_of(&of_runs(|r| r.allocations_per_request)),
            added_allocations_per_request: Spread::of(values(|c| c.added_allocations_per_request)),
            client_busy_max: runs.iter().filter_map(|r| r.client_busy).reduce(f64::max),
            baseline_client_busy_max: results
                .iter()
                .filter(|r| r.role == Role::Baseline && runs.iter().any(|m| m.pair == r.pair))
                .filter_map(|r| r.client_busy)
                .reduce(f64::max),
            server_busy_median: median_of(&of_runs(|r| r.server_busy)),
            connections_per_run: median_of(&of_runs(|r| r.connections_opened.map(|c| c as f64))),
            peak_rss_kib: runs.iter().filter_map(|r| r.vm_hwm_kib).max(),
        });
    }
    summaries
}

/// One of the issues' targets, judged on the median over the rounds.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub target: String,
    pub mode: String,
    pub measured: String,
    pub met: Option<bool>,
    /// The interquartile range of the judged quantity, when it is a ratio over rounds.
    pub iqr: Option<f64>,
}

impl Verdict {
    fn of_spread(target: &str, mode: String, spread: Option<Spread>, suffix: &str, met: impl Fn(f64) -> bool) -> Self {
        Verdict {
            target: target.to_owned(),
            mode,
            measured: spread.as_ref().map_or("n/a".to_owned(), |s| s.text(3, suffix)),
            met: spread.as_ref().map(|s| met(s.median)),
            iqr: spread.as_ref().map(Spread::iqr),
        }
    }
}

/// The repeated-credential target of the performance issue.
pub const REPEATED_TARGET: f64 = 0.92;
/// A fresh token's added cost over the bare verification's.
pub const FRESH_TARGET: f64 = 1.10;
/// A fresh RS256 token's server CPU over jwt-authorizer's.
pub const REFERENCE_TARGET: f64 = 0.90;
/// Cached Basic under a wrong-password flood over cached Basic.
pub const FLOOD_TARGET: f64 = 0.85;
/// Peak RSS with the fresh-token modes' cache full (100,000 tokens by default), in MiB.
pub const RSS_TARGET_MIB: f64 = 40.0;

fn judge(
    summaries: &[ModeSummary],
    compared: &[Compared],
    results: &[RunResult],
    bare: &BTreeMap<String, f64>,
    token_cache: u64,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for s in summaries.iter().filter(|s| s.role == Role::Repeated) {
        let target = format!("repeated credential >= {REPEATED_TARGET:.2}x no-layer requests/s");
        verdicts.push(Verdict::of_spread(&target, s.name.to_owned(), s.ratio.clone(), "x", |r| r >= REPEATED_TARGET));
    }
    for s in summaries.iter().filter(|s| s.role == Role::Fresh) {
        let floor = s.name.replacen("bearer_", "bare_jwt_", 1);
        let added = |name: &str| by_round(compared, name, |c| c.added_cpu_us_per_request);
        let ratio = Spread::of(paired_rounds(&added(s.name), &added(&floor), |ours, floor| ours / floor));
        let target = format!("fresh token adds <= {FRESH_TARGET:.2}x the bare verification's CPU");
        let alg = s.name.trim_start_matches("bearer_").trim_end_matches("_fresh");
        let mut verdict =
            Verdict::of_spread(&target, format!("{} vs {floor}", s.name), ratio, "x", |r| r <= FRESH_TARGET);
        if let Some(us) = bare.iter().find(|(name, _)| name.eq_ignore_ascii_case(alg)).map(|(_, us)| us) {
            verdict.measured.push_str(&format!("; bare decode alone, in one thread: {us:.1} µs"));
        }
        verdicts.push(verdict);
    }
    for (ours, theirs, limit) in [
        ("bearer_rs256_fresh", "jwt_authorizer_rs256_fresh", REFERENCE_TARGET),
        ("bearer_rs256_repeated", "jwt_authorizer_rs256_repeated", 1.0),
    ] {
        let cpu = |name: &str| by_round(compared, name, |c| c.cpu_us_per_request);
        let ratio = Spread::of(paired_rounds(&cpu(ours), &cpu(theirs), |a, b| a / b));
        if ratio.is_some() {
            let target = format!("server CPU per request <= {limit:.2}x jwt-authorizer's");
            verdicts.push(Verdict::of_spread(&target, format!("{ours} vs {theirs}"), ratio, "x", |r| r <= limit));
        }
    }
    let rps = |name: &str| by_round(compared, name, |c| Some(c.requests_per_second));
    let flood = Spread::of(paired_rounds(&rps("basic_cached_under_flood"), &rps("basic_cached"), |a, b| a / b));
    if flood.is_some() {
        let target = format!("cached Basic under a wrong-password flood >= {FLOOD_TARGET:.2}x of basic_cached");
        let mode = "basic_cached_under_flood vs basic_cached".to_owned();
        verdicts.push(Verdict::of_spread(&target, mode, flood, "x", |r| r >= FLOOD_TARGET));
    }
    for s in summaries.iter().filter(|s| s.role == Role::Fresh) {
        // The run whose server cached the most tokens; only a full cache is judged.
        let fullest = results
            .iter()
            .filter(|r| r.name == s.name)
            .filter_map(|r| Some((r.load.as_ref()?.ok.min(r.distinct_tokens?), r.vm_hwm_kib?)))
            .max();
        let full = fullest.is_some_and(|(tokens, _)| tokens >= token_cache);
        verdicts.push(Verdict {
            target: format!("peak RSS with the token cache full ({token_cache} tokens) <= {RSS_TARGET_MIB:.0} MiB"),
            mode: s.name.to_owned(),
            measured: fullest.map_or("n/a".to_owned(), |(tokens, kib)| {
                format!("{:.1} MiB with {tokens} tokens cached", kib as f64 / 1024.0)
            }),
            met: fullest.filter(|_| full).map(|(_, kib)| kib as f64 / 1024.0 <= RSS_TARGET_MIB),
            iqr: None,
        });
    }
    verdicts
}

/// The layer's cost in one process (criterion, `benches/layer.rs`), for the same request
/// through the same router with and without the layer: a check on the whole-process
/// numbers that machine noise does not move.
#[derive(Debug, Clone, Serialize)]
pub struct InProcess {
    pub mode: &'static str,
    pub benchmark: String,
    /// Mean ns per request with the layer, and without it, with their 95% intervals.
    pub with_layer_ns: (f64, f64, f64),
    pub without_ns: (f64, f64, f64),
}

impl InProcess {
    /// The added ns, and the widest interval the two intervals allow.
    fn added(&self) -> (f64, f64, f64) {
        let (w, wl, wh) = self.with_layer_ns;
        let (n, nl, nh) = self.without_ns;
        (w - n, wl - nh, wh - nl)
    }
}

/// Reads criterion's estimates under `dir` (`target/criterion`) for the modes it covers.
pub fn in_process(dir: &std::path::Path) -> Vec<InProcess> {
    let estimate = |id: &str| -> Option<(f64, f64, f64)> {
        let text = std::fs::read_to_string(dir.join(id).join("new/estimates.json")).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        let mean = &json["mean"];
        let interval = &mean["confidence_interval"];
        Some((mean["point_estimate"].as_f64()?, interval["lower_bound"].as_f64()?, interval["upper_bound"].as_f64()?))
    };
    let pairs = [
        ("basic_cached", "in_process/basic_cached_authorized", "in_process/no_layer"),
        ("bearer_hs256_repeated", "bearer/repeated_token/HS256", "bearer/no_layer"),
        ("bearer_rs256_repeated", "bearer/repeated_token/RS256", "bearer/no_layer"),
        ("bearer_es256_repeated", "bearer/repeated_token/ES256", "bearer/no_layer"),
        ("bearer_eddsa_repeated", "bearer/repeated_token/EdDSA", "bearer/no_layer"),
    ];
    pairs
        .into_iter()
        .filter_map(|(mode, with, without)| {
            Some(InProcess {
                mode,
                benchmark: with.to_owned(),
                with_layer_ns: estimate(with)?,
                without_ns: estimate(without)?,
            })
        })
        .collect()
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn percent(value: Option<f64>) -> String {
    value.map_or("–".to_owned(), |v| format!("{:.0}%", v * 100.0))
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("–".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn ms(us: Option<f64>) -> String {
    us.map_or("–".to_owned(), |us| format!("{:.2}", us / 1000.0))
}

pub fn progress_line(result: &RunResult, total: usize) -> String {
    let load = result.load.as_ref();
    format!(
        "[{:>3}/{total}] r{} {:<30} {:>9} req/s  p50 {:>6} ms  p99 {:>6} ms  {:>7} µs CPU/req  server {:>4}  client {:>4}  conns {}{}",
        result.seq,
        result.round,
        result.name,
        opt(result.requests_per_second(), 0),
        ms(load.map(|l| l.p50_us)),
        ms(load.map(|l| l.p99_us)),
        opt(result.cpu_us_per_request, 1),
        percent(result.server_busy),
        percent(result.client_busy),
        result.connections_opened.map_or("–".to_owned(), |c| c.to_string()),
        result.error.as_ref().map_or(String::new(), |e| format!("  ERROR: {e}")),
    )
}

fn header(out: &mut String, context: &Context) {
    let _ = writeln!(out, "# tower-secure load comparison\n");
    let _ = writeln!(out, "- date: {}; commit: `{}`", context.date, context.commit);
    let _ = writeln!(out, "- command: `{}`", context.command);
    let _ = writeln!(out, "- machine: {}", context.machine);
    let _ = writeln!(
        out,
        "- load average at start: {}; at end: {}",
        context.load_average_at_start, context.load_average_at_end
    );
    let _ = writeln!(out, "- settings: {}; shuffle seed {}", context.settings, context.seed);
    let _ = writeln!(out, "- whole run: {:.0} s\n", context.elapsed_s);
    let _ = writeln!(
        out,
        "Every round runs each mode once, next to a no-layer run of its own transport made just \
         before or just after it (the order of the modes and of each pair shuffled per round). A \
         mode's ratio in a round is its requests/s over its pair's baseline; the tables give the \
         **median over the rounds [first quartile–third quartile]**. A target is met when the \
         median meets it; an interquartile range wider than {TOO_WIDE} is flagged as too wide to \
         tell. \"added\" is server CPU per request above the pair's baseline. Latencies are wrk's \
         / oha's (closed loop).\n"
    );
}

fn mode_table(out: &mut String, summaries: &[ModeSummary], results: &[RunResult]) {
    let _ = writeln!(out, "## Modes\n");
    let _ = writeln!(
        out,
        "| mode | rounds | req/s | no-layer req/s | ratio [IQR] | ratio by CPU [IQR] | server CPU µs/req | added µs/req [IQR] | allocations/req | added allocations/req | server core | client core (max) | baselines' client core (max) | connections/run | peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in summaries {
        let client = |busy: Option<f64>| {
            busy.map_or("–".to_owned(), |c| {
                let saturated = if c > 0.9 { " (saturated)" } else { "" };
                format!("{:.0}%{saturated}", c * 100.0)
            })
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | **{}** | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.name,
            s.rounds,
            opt(s.requests_per_second, 0),
            opt(s.baseline_requests_per_second, 0),
            s.ratio.as_ref().map_or("–".to_owned(), |r| r.text(2, "x")),
            s.cpu_ratio.as_ref().map_or("–".to_owned(), |r| r.text(2, "x")),
            opt(s.cpu_us_per_request, 1),
            s.added_cpu_us_per_request.as_ref().map_or("–".to_owned(), |a| a.text(1, "")),
            opt(s.allocations_per_request, 1),
            s.added_allocations_per_request.as_ref().map_or("–".to_owned(), |a| format!("{:.1}", a.median)),
            percent(s.server_busy_median),
            client(s.client_busy_max),
            client(s.baseline_client_busy_max),
            opt(s.connections_per_run, 0),
            mib(s.peak_rss_kib),
        );
    }
    let _ = writeln!(out);
    for s in summaries {
        if let Some(run) = results.iter().find(|r| r.name == s.name) {
            let _ = writeln!(out, "- `{}`: {}", run.name, run.what);
        }
    }
    let _ = writeln!(
        out,
        "\n*client core (max)* above 90% means the load generator, not the server, limited that \
         mode in some round: read *ratio by CPU* there; above 90% for the baselines, the no-layer \
         figure is the client's limit and the ratio flatters the layer (*ratio by CPU* does not). *connections/run* counts the TCP \
         connections the machine accepted during a measured run (64 keep-alive connections \
         expected; over TLS each one is a handshake).\n"
    );
    let _ = writeln!(
        out,
        "*allocations/req* counts heap allocations (and reallocations) of the whole bench server, \
         every thread, by a counting global allocator in the server, over the measured load, divided \
         by the 2xx answers; *added allocations/req* is the same minus its pair's baseline's, median \
         over the rounds. Not given under the flood, whose own requests the same process serves. \
         The baselines: {}.\n",
        baseline_allocations(results),
    );
}

/// Each baseline's allocations per request, median over its runs: "`no_layer` 28.9, ...".
fn baseline_allocations(results: &[RunResult]) -> String {
    let mut by_name: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for run in results.iter().filter(|r| r.role == Role::Baseline) {
        if let Some(allocations) = run.allocations_per_request {
            by_name.entry(run.name).or_default().push((run.round, allocations));
        }
    }
    if by_name.is_empty() {
        return "not measured".to_owned();
    }
    let medians = by_name.iter().filter_map(|(name, values)| Some(format!("`{name}` {:.1}", median_of(values)?)));
    medians.collect::<Vec<_>>().join(", ")
}

fn targets_table(out: &mut String, verdicts: &[Verdict]) {
    let _ = writeln!(out, "## Targets (issues 7 and 17)\n");
    let _ = writeln!(out, "| target | mode | measured: median [IQR] | |");
    let _ = writeln!(out, "|---|---|---|---|");
    for v in verdicts {
        let mut verdict = match v.met {
            Some(true) => "met".to_owned(),
            Some(false) => "**missed**".to_owned(),
            None => "not judged".to_owned(),
        };
        if let Some(iqr) = v.iqr.filter(|iqr| *iqr > TOO_WIDE) {
            verdict.push_str(&format!(" (spread too wide to tell: IQR {iqr:.3})"));
        }
        let _ = writeln!(out, "| {} | `{}` | {} | {verdict} |", v.target, v.mode, v.measured);
    }
    let _ = writeln!(out);
}

fn rounds_table(out: &mut String, summaries: &[ModeSummary], rounds: u64) {
    let _ = writeln!(out, "## Ratio in each round\n");
    let columns: Vec<String> = (1..=rounds).map(|r| format!("r{r}")).collect();
    let _ = writeln!(out, "| mode | {} | median | IQR |", columns.join(" | "));
    let _ = writeln!(out, "|---|{}---:|---:|", "---:|".repeat(columns.len()));
    for s in summaries {
        let Some(ratio) = &s.ratio else { continue };
        let cells: Vec<String> = (1..=rounds as usize)
            .map(|r| {
                ratio
                    .per_round
                    .iter()
                    .find(|(round, _)| *round == r)
                    .map_or("–".to_owned(), |(_, v)| format!("{v:.3}"))
            })
            .collect();
        let _ = writeln!(out, "| `{}` | {} | {:.3} | {:.3} |", s.name, cells.join(" | "), ratio.median, ratio.iqr());
    }
    let _ = writeln!(out);
}

fn in_process_section(out: &mut String, context: &Context, summaries: &[ModeSummary]) {
    let _ = writeln!(out, "## In one process (criterion): the layer's own cost\n");
    if context.in_process.is_empty() {
        let _ = writeln!(out, "Not measured in this run (run.sh measures it unless given `--no-criterion`).\n");
        return;
    }
    let _ = writeln!(
        out,
        "The same request through the same router with and without the layer, in one thread \
         (`cargo bench --bench layer`), beside the whole-process figures of this run. Machine \
         noise moves the whole-process ratio; it barely moves this.\n"
    );
    let _ = writeln!(
        out,
        "| mode | in-process: with layer ns | without ns | added ns [95% interval] | whole process: added µs/req (median) | ratio (median) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for check in &context.in_process {
        let (added, low, high) = check.added();
        let summary = summaries.iter().find(|s| s.name == check.mode);
        let _ = writeln!(
            out,
            "| `{}` | {:.0} | {:.0} | {added:.0} [{low:.0}–{high:.0}] | {} | {} |",
            check.mode,
            check.with_layer_ns.0,
            check.without_ns.0,
            summary
                .and_then(|s| s.added_cpu_us_per_request.as_ref())
                .map_or("–".to_owned(), |a| format!("{:+.2}", a.median)),
            summary.and_then(|s| s.ratio.as_ref()).map_or("–".to_owned(), |r| format!("{:.3}x", r.median)),
        );
    }
    let _ = writeln!(out);
}

fn memory_section(out: &mut String, results: &[RunResult], summaries: &[ModeSummary], context: &Context) {
    let _ = writeln!(out, "## Memory\n");
    let _ = writeln!(
        out,
        "| mode | distinct tokens sent (most in a round) | peak RSS (VmHWM) MiB, highest | RSS after MiB, highest |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let baseline_peak: Vec<f64> = results
        .iter()
        .filter(|r| r.role == Role::Baseline && r.server_mode == "none")
        .filter_map(|r| r.vm_hwm_kib.map(|k| k as f64))
        .collect();
    for s in summaries {
        let runs = results.iter().filter(|r| r.name == s.name);
        let sent =
            runs.clone().filter_map(|r| r.load.as_ref().and_then(|l| r.distinct_tokens.map(|d| l.ok.min(d)))).max();
        let after = runs.filter_map(|r| r.vm_rss_kib).max();
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            s.name,
            sent.map_or("–".to_owned(), |s| s.to_string()),
            mib(s.peak_rss_kib),
            mib(after)
        );
    }
    let _ = writeln!(
        out,
        "\nNo-layer peak RSS: {} MiB (mean of its runs). Tokens minted per algorithm: {:?}. A fresh-token \
         run caches every token it verifies, up to `[oauth2] cache_capacity` (set here by `--token-cache`; \
         the crate's default is 10,000); `[authentication.basic] cache_capacity` (default 10,000) bounds \
         cached passwords and `lockout_capacity` (default 100,000) the failure counters.\n",
        mean(&baseline_peak).map_or("–".to_owned(), |k| format!("{:.1}", k / 1024.0)),
        context.tokens_per_algorithm,
    );
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

fn flood_section(out: &mut String, results: &[RunResult]) {
    let floods: Vec<_> = results.iter().filter_map(|r| r.flood.as_ref().map(|f| (r, f))).collect();
    let Some((run, _)) = floods.first() else { return };
    let seconds: f64 = floods.iter().map(|(_, f)| f.duration_s).sum::<f64>().max(1e-9);
    let count = |name: &str| floods.iter().map(|(_, f)| f.counters.get(name).copied().unwrap_or(0)).sum::<u64>();
    let attempts: u64 = floods.iter().map(|(_, f)| f.ok + f.errors).sum();
    let _ = writeln!(
        out,
        "## The flood (`{}`, all rounds)\n\n{:.0} wrong-password attempts/s for eve over {:.1} s: {:.1}/s hashed and refused (401), \
         {:.0}/s throttled (429), {:.1}/s other answers.\n",
        run.name,
        attempts as f64 / seconds,
        seconds,
        count("status_401") as f64 / seconds,
        count("status_429") as f64 / seconds,
        count("status_other") as f64 / seconds,
    );
}

/// What a wrapped token file means for a fresh-token run.
fn wrap_note(run: &RunResult, wrapped: u64, token_cache: u64) -> String {
    let distinct = run.distinct_tokens.unwrap_or(0);
    let consequence = if run.server_mode == "jwt-authorizer" {
        "no cache there, so every request was verified anyway"
    } else if distinct >= 2 * token_cache {
        "the file is at least twice the cache, so re-sent tokens had been evicted and were verified again"
    } else {
        "some re-sent tokens may have been cache hits: mint more with --tokens"
    };
    format!(" token file ({distinct} tokens) wrapped {wrapped}x: {consequence}")
}

fn sequence_table(out: &mut String, results: &[RunResult], token_cache: u64) {
    let _ = writeln!(out, "## Every run, in order\n");
    let _ = writeln!(
        out,
        "| # | round | pair | run | req/s | p50 ms | p99 ms | server CPU µs/req | allocations/req | server core | client core | connections | server threads | notes |"
    );
    let _ = writeln!(out, "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for run in results {
        let load = run.load.as_ref();
        let mut notes = run.error.clone().unwrap_or_default();
        if run.warmup_errors > 0 {
            let _ = write!(notes, " {} warm-up errors", run.warmup_errors);
        }
        if let Some(wrapped) = load.and_then(|l| l.counters.get("wrapped")).filter(|w| **w > 0) {
            notes.push_str(&wrap_note(run, *wrapped, token_cache));
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.seq,
            run.round,
            run.pair,
            run.name,
            opt(run.requests_per_second(), 0),
            ms(load.map(|l| l.p50_us)),
            ms(load.map(|l| l.p99_us)),
            opt(run.cpu_us_per_request, 1),
            opt(run.allocations_per_request, 1),
            percent(run.server_busy),
            percent(run.client_busy),
            run.connections_opened.map_or("–".to_owned(), |c| c.to_string()),
            run.threads.map_or("–".to_owned(), |t| t.to_string()),
            notes.trim(),
        );
    }
    let _ = writeln!(out);
}

fn bare_section(out: &mut String, context: &Context) {
    let _ = writeln!(out, "## Bare verification (the fresh-token floor)\n");
    let is_floor = |name: &str| ["HS256", "RS256", "ES256", "EdDSA"].contains(&name);
    let list = |floor: bool| {
        let items = context.bare_verify_us.iter().filter(|(name, _)| is_floor(name) == floor);
        items.map(|(name, us)| format!("{name} {us:.1} µs")).collect::<Vec<_>>().join(", ")
    };
    let _ = writeln!(
        out,
        "One `jsonwebtoken::decode` (aws-lc, the crate's backend) of a distinct token: signature, claims, \
         exp/iss/aud; CPU time of one thread on the server's core, over at least 1 s of passes over 2,000 \
         distinct tokens: {}.\n\n\
         For reading the reference comparison and the RS256 cost: {}.\n",
        list(true),
        list(false),
    );
}

pub fn write(
    settings: &Settings,
    context: &Context,
    modes: &[&'static str],
    results: &[RunResult],
) -> Result<(), String> {
    let compared = compare(results);
    let summaries = summarize(modes, &compared, results);
    let verdicts = judge(&summaries, &compared, results, &context.bare_verify_us, context.token_cache);
    let mut md = String::new();
    header(&mut md, context);
    mode_table(&mut md, &summaries, results);
    targets_table(&mut md, &verdicts);
    in_process_section(&mut md, context, &summaries);
    rounds_table(&mut md, &summaries, context.rounds);
    bare_section(&mut md, context);
    flood_section(&mut md, results);
    memory_section(&mut md, results, &summaries, context);
    sequence_table(&mut md, results, context.token_cache);
    let json = serde_json::json!({
        "context": context,
        "modes": summaries,
        "targets": verdicts,
        "compared": compared,
        "runs": results,
    });
    let json = serde_json::to_string_pretty(&json).map_err(|e| format!("results JSON: {e}"))?;
    let write = |name: &str, text: &str| {
        let path = settings.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write("latest.md", &md)?;
    write("latest.json", &json)?;
    print!("{md}");
    Ok(())
}
