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
    pub machine: String,
    pub load_average_at_start: String,
    pub settings: String,
    pub bare_verify_us: BTreeMap<String, f64>,
    pub tokens_per_algorithm: BTreeMap<String, u64>,
    /// `[oauth2] cache_capacity` of the bearer modes.
    pub token_cache: u64,
    pub elapsed_s: f64,
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
            "{} s per run after {} s warm-up; {} connections; server on CPU {} ({} tokio worker{}); \
             wrk/oha on CPU {}; bearer/introspection cache_capacity {}",
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
            machine: machine(),
            load_average_at_start: first_line("/proc/loadavg"),
            settings: settings_text,
            bare_verify_us: BTreeMap::new(),
            tokens_per_algorithm: BTreeMap::new(),
            token_cache: settings.token_cache,
            elapsed_s: 0.0,
        }
    }

    pub fn finish(self, bare: BTreeMap<String, f64>, tokens: BTreeMap<String, u64>, elapsed: Duration) -> Context {
        Context { bare_verify_us: bare, tokens_per_algorithm: tokens, elapsed_s: elapsed.as_secs_f64(), ..self }
    }
}

/// A mode next to the baselines just before and after it (same transport).
#[derive(Debug, Clone, Serialize)]
pub struct Compared {
    pub name: &'static str,
    pub role: Role,
    pub requests_per_second: f64,
    pub baseline_requests_per_second: Option<f64>,
    /// requests/s of the mode over the baselines' mean.
    pub ratio: Option<f64>,
    pub cpu_us_per_request: Option<f64>,
    pub baseline_cpu_us_per_request: Option<f64>,
    /// Server CPU per request above the baselines'.
    pub added_cpu_us_per_request: Option<f64>,
    /// Baselines' CPU per request over the mode's: the requests/s ratio a server whose
    /// core is the bottleneck would show (read this one when the client core was full).
    pub cpu_ratio: Option<f64>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The nearest successful baseline of the same transport on each side of `index`.
fn neighbours(results: &[RunResult], index: usize) -> Vec<&RunResult> {
    let run = &results[index];
    let is_baseline = |r: &&RunResult| r.role == Role::Baseline && r.transport == run.transport && r.load.is_some();
    let before = results[..index].iter().rev().find(is_baseline);
    let after = results[index + 1..].iter().find(is_baseline);
    before.into_iter().chain(after).collect()
}

pub fn compare(results: &[RunResult]) -> Vec<Compared> {
    let mut compared = Vec::new();
    for (index, run) in results.iter().enumerate() {
        let Some(rps) = run.requests_per_second().filter(|_| run.role != Role::Baseline) else { continue };
        let around = neighbours(results, index);
        let baseline_rps = mean(&around.iter().filter_map(|r| r.requests_per_second()).collect::<Vec<_>>());
        let baseline_cpu = mean(&around.iter().filter_map(|r| r.cpu_us_per_request).collect::<Vec<_>>());
        compared.push(Compared {
            name: run.name,
            role: run.role,
            requests_per_second: rps,
            baseline_requests_per_second: baseline_rps,
            ratio: baseline_rps.map(|base| rps / base),
            cpu_us_per_request: run.cpu_us_per_request,
            baseline_cpu_us_per_request: baseline_cpu,
            added_cpu_us_per_request: run.cpu_us_per_request.zip(baseline_cpu).map(|(cpu, base)| cpu - base),
            cpu_ratio: run.cpu_us_per_request.zip(baseline_cpu).map(|(cpu, base)| base / cpu),
        });
    }
    compared
}

/// One of the targets, judged.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub target: String,
    pub mode: String,
    pub measured: String,
    pub met: Option<bool>,
}

fn find<'a>(compared: &'a [Compared], name: &str) -> Option<&'a Compared> {
    compared.iter().find(|c| c.name == name)
}

/// A fresh-token mode's added CPU per request over that of the bare-verification
/// middleware under the same load (`bare_jwt_<alg>_fresh`); the in-thread bare cost is
/// shown beside it.
fn fresh_verdict(c: &Compared, compared: &[Compared], bare: &BTreeMap<String, f64>, results: &[RunResult]) -> Verdict {
    let alg = results.iter().find(|r| r.name == c.name).and_then(|r| r.alg).unwrap_or("?");
    let floor_name = c.name.replacen("bearer_", "bare_jwt_", 1);
    let floor = find(compared, &floor_name).and_then(|f| f.added_cpu_us_per_request);
    let ratio = c.added_cpu_us_per_request.zip(floor).map(|(added, floor)| added / floor);
    let in_thread = bare.get(alg).map_or(String::new(), |us| format!("; bare decode alone, in one thread: {us:.1} µs"));
    Verdict {
        target: "fresh token adds <= 1.2x bare verification".to_owned(),
        mode: format!("{} vs {floor_name}", c.name),
        measured: match (c.added_cpu_us_per_request, floor, ratio) {
            (Some(added), Some(floor), Some(ratio)) => {
                format!("+{added:.1} vs +{floor:.1} µs = {ratio:.2}x{in_thread}")
            }
            _ => format!("n/a{in_thread}"),
        },
        met: ratio.map(|r| r <= 1.2),
    }
}

fn judge(compared: &[Compared], bare: &BTreeMap<String, f64>, results: &[RunResult]) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    for c in compared.iter().filter(|c| c.role == Role::Repeated) {
        verdicts.push(Verdict {
            target: "repeated credential >= 0.90x no-layer requests/s".to_owned(),
            mode: c.name.to_owned(),
            measured: c.ratio.map_or("n/a".to_owned(), |r| format!("{r:.3}x")),
            met: c.ratio.map(|r| r >= 0.90),
        });
    }
    for c in compared.iter().filter(|c| c.role == Role::Fresh) {
        verdicts.push(fresh_verdict(c, compared, bare, results));
    }
    for (ours, theirs) in [
        ("bearer_rs256_fresh", "jwt_authorizer_rs256_fresh"),
        ("bearer_rs256_repeated", "jwt_authorizer_rs256_repeated"),
    ] {
        let cpu = |name: &str| find(compared, name).and_then(|c| c.cpu_us_per_request);
        if let (Some(a), Some(b)) = (cpu(ours), cpu(theirs)) {
            verdicts.push(Verdict {
                target: "less server CPU per request than jwt-authorizer".to_owned(),
                mode: format!("{ours} vs {theirs}"),
                measured: format!("{a:.1} vs {b:.1} µs ({:.2}x)", a / b),
                met: Some(a < b),
            });
        }
    }
    if let (Some(flood), Some(calm)) = (find(compared, "basic_cached_under_flood"), find(compared, "basic_cached")) {
        let ratio = flood.requests_per_second / calm.requests_per_second;
        verdicts.push(Verdict {
            target: "cached Basic under a wrong-password flood >= 0.80x of basic_cached".to_owned(),
            mode: flood.name.to_owned(),
            measured: format!(
                "{:.0} vs {:.0} req/s = {ratio:.3}x",
                flood.requests_per_second, calm.requests_per_second
            ),
            met: Some(ratio >= 0.80),
        });
    }
    verdicts
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
        "[{:>2}/{total}] {:<30} {:>9} req/s  p50 {:>6} ms  p99 {:>6} ms  {:>7} µs CPU/req  server {:>4}  client {:>4}{}",
        result.seq,
        result.name,
        opt(result.requests_per_second(), 0),
        ms(load.map(|l| l.p50_us)),
        ms(load.map(|l| l.p99_us)),
        opt(result.cpu_us_per_request, 1),
        percent(result.server_busy),
        percent(result.client_busy),
        result.error.as_ref().map_or(String::new(), |e| format!("  ERROR: {e}")),
    )
}

fn header(out: &mut String, context: &Context) {
    let _ = writeln!(out, "# tower-secure load comparison\n");
    let _ = writeln!(out, "- date: {}", context.date);
    let _ = writeln!(out, "- command: `{}`", context.command);
    let _ = writeln!(out, "- machine: {}; load average at start: {}", context.machine, context.load_average_at_start);
    let _ = writeln!(out, "- settings: {}", context.settings);
    let _ = writeln!(out, "- whole run: {:.0} s\n", context.elapsed_s);
    let _ = writeln!(
        out,
        "Each mode is compared with the mean of the no-layer runs just before and after it \
         (plain HTTP modes with `no_layer`, the mTLS mode with `tls_no_layer`). \"added\" is server \
         CPU per request above those baselines. Latencies are wrk's / oha's (closed loop, so \
         they grow with the server's time per request).\n"
    );
}

fn mode_table(out: &mut String, compared: &[Compared], results: &[RunResult]) {
    let _ = writeln!(out, "## Modes\n");
    let _ = writeln!(
        out,
        "| mode | req/s | no-layer req/s | ratio | p50 ms | p99 ms | server CPU µs/req | added µs/req | ratio by CPU | server core | client core | peak RSS MiB |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in compared {
        let Some(run) = results.iter().find(|r| r.name == c.name) else { continue };
        let load = run.load.as_ref();
        let _ = writeln!(
            out,
            "| `{}` | {:.0} | {} | **{}** | {} | {} | {} | {} | {} | {} | {} | {} |",
            c.name,
            c.requests_per_second,
            opt(c.baseline_requests_per_second, 0),
            c.ratio.map_or("–".to_owned(), |r| format!("{r:.2}x")),
            ms(load.map(|l| l.p50_us)),
            ms(load.map(|l| l.p99_us)),
            opt(c.cpu_us_per_request, 1),
            c.added_cpu_us_per_request.map_or("–".to_owned(), |a| format!("{a:+.1}")),
            c.cpu_ratio.map_or("–".to_owned(), |r| format!("{r:.2}x")),
            percent(run.server_busy),
            percent(run.client_busy),
            mib(run.vm_hwm_kib),
        );
    }
    let _ = writeln!(out);
    for run in results.iter().filter(|r| r.role != Role::Baseline) {
        let _ = writeln!(out, "- `{}`: {}", run.name, run.what);
    }
    let _ = writeln!(out);
}

fn targets_table(out: &mut String, verdicts: &[Verdict]) {
    let _ = writeln!(out, "## Targets (issue 7)\n");
    let _ = writeln!(out, "| target | mode | measured | |");
    let _ = writeln!(out, "|---|---|---|---|");
    for v in verdicts {
        let verdict = match v.met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(out, "| {} | `{}` | {} | {verdict} |", v.target, v.mode, v.measured);
    }
    let _ = writeln!(out);
}

fn memory_section(out: &mut String, results: &[RunResult], context: &Context) {
    let _ = writeln!(out, "## Memory\n");
    let _ = writeln!(out, "| run | distinct tokens sent | peak RSS (VmHWM) MiB | RSS after MiB |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let baseline_peak: Vec<f64> = results
        .iter()
        .filter(|r| r.role == Role::Baseline && r.server_mode == "none")
        .filter_map(|r| r.vm_hwm_kib.map(|k| k as f64))
        .collect();
    for run in results.iter().filter(|r| r.role != Role::Baseline) {
        let sent = run.load.as_ref().and_then(|l| run.distinct_tokens.map(|d| l.ok.min(d)));
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            run.name,
            sent.map_or("–".to_owned(), |s| s.to_string()),
            mib(run.vm_hwm_kib),
            mib(run.vm_rss_kib)
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

fn flood_section(out: &mut String, results: &[RunResult]) {
    let Some((run, flood)) = results.iter().find_map(|r| r.flood.as_ref().map(|f| (r, f))) else { return };
    let per_second = |name: &str| flood.counters.get(name).copied().unwrap_or(0) as f64 / flood.duration_s.max(1e-9);
    let _ = writeln!(
        out,
        "## The flood (`{}`)\n\n{:.0} wrong-password attempts/s for eve over {:.1} s: {:.1}/s hashed and refused (401), \
         {:.0}/s throttled (429), {:.1}/s other answers.\n",
        run.name,
        (flood.ok + flood.errors) as f64 / flood.duration_s.max(1e-9),
        flood.duration_s,
        per_second("status_401"),
        per_second("status_429"),
        per_second("status_other"),
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
    let _ = writeln!(out, "## Every run, in order (baseline drift)\n");
    let _ = writeln!(
        out,
        "| # | run | req/s | p50 ms | p99 ms | server CPU µs/req | server core | client core | server threads | notes |"
    );
    let _ = writeln!(out, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
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
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {} | {} |",
            run.seq,
            run.name,
            opt(run.requests_per_second(), 0),
            ms(load.map(|l| l.p50_us)),
            ms(load.map(|l| l.p99_us)),
            opt(run.cpu_us_per_request, 1),
            percent(run.server_busy),
            percent(run.client_busy),
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

pub fn write(settings: &Settings, context: &Context, results: &[RunResult]) -> Result<(), String> {
    let compared = compare(results);
    let verdicts = judge(&compared, &context.bare_verify_us, results);
    let mut md = String::new();
    header(&mut md, context);
    mode_table(&mut md, &compared, results);
    targets_table(&mut md, &verdicts);
    bare_section(&mut md, context);
    flood_section(&mut md, results);
    memory_section(&mut md, results, context);
    sequence_table(&mut md, results, context.token_cache);
    let json = serde_json::json!({
        "context": context,
        "modes": compared,
        "targets": verdicts,
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
