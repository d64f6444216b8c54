//! The load generators: wrk (plain HTTP, Lua scripts from ../../lua for per-request
//! credentials and the flood) and oha (TLS with a client certificate, which wrk cannot
//! present). Builds their command lines and reads their summaries.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;
use tower_secure_load::data::DataDir;
use tower_secure_load::PATH;

use crate::args::Settings;
use crate::plan::Load;
use crate::process::{pinned, Finished, Generator};

/// The flood: connections, and each one's pause between attempts (at most 400/s).
pub const FLOOD_CONNECTIONS: u64 = 32;
pub const FLOOD_PAUSE_MS: u64 = 80;
/// The flood runs this long before the good traffic is measured (the throttle's burst drains).
pub const FLOOD_SETTLE: Duration = Duration::from_secs(2);

/// One load generator's summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Responses with a 2xx status.
    pub ok: u64,
    /// Other statuses, and socket errors and timeouts.
    pub errors: u64,
    pub duration_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Script counters (cycle.lua's "wrapped", the flood's answers by status).
    pub counters: BTreeMap<String, u64>,
    pub client_cpu_s: f64,
}

impl Summary {
    pub fn requests_per_second(&self) -> f64 {
        if self.duration_s > 0.0 {
            self.ok as f64 / self.duration_s
        } else {
            0.0
        }
    }
}

/// The three wrk scripts, each with report.lua appended, written to `DIR/lua/`.
pub struct Scripts {
    pub plain: PathBuf,
    pub cycle: PathBuf,
    pub flood: PathBuf,
}

impl Scripts {
    pub fn write(lua_dir: &Path, into: &Path) -> Result<Scripts, String> {
        let read = |name: &str| {
            let path = lua_dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        let (report, cycle, flood) = (read("report.lua")?, read("cycle.lua")?, read("flood.lua")?);
        let dir = into.join("lua");
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let write = |name: &str, parts: &[&str]| {
            let path = dir.join(name);
            std::fs::write(&path, parts.join("\n")).map(|()| path).map_err(|e| format!("cannot write a script: {e}"))
        };
        Ok(Scripts {
            plain: write("plain.lua", &[&report])?,
            cycle: write("cycle.lua", &[&cycle, &report])?,
            flood: write("flood.lua", &[&cycle, &flood, &report])?,
        })
    }
}

fn wrk(settings: &Settings, script: &Path, connections: u64, seconds: u64, url: &str) -> Command {
    let mut command = pinned(&settings.client_cpu, "wrk");
    let threads = settings.client_threads.min(connections);
    command
        .args(["-t", &threads.to_string(), "-c", &connections.to_string(), "-d", &format!("{seconds}s")])
        .args(["--timeout", "5s", "-s"])
        .arg(script)
        .arg(format!("{url}{PATH}"));
    command
}

fn oha(settings: &Settings, data: &DataDir, seconds: u64, url: &str) -> Command {
    let mut command = pinned(&settings.client_cpu, "oha");
    command
        .args(["-z", &format!("{seconds}s"), "-c", &settings.connections.to_string()])
        .args(["--no-tui", "--output-format", "json", "--cacert"])
        .arg(data.ca_cert())
        .arg("--cert")
        .arg(data.client_chain())
        .arg("--key")
        .arg(data.client_key())
        .arg(format!("{url}{PATH}"));
    command
}

/// wrk sending the same request every time, with this Authorization header if any.
fn plain_wrk(settings: &Settings, scripts: &Scripts, url: &str, seconds: u64, auth: Option<&str>) -> Command {
    let mut command = wrk(settings, &scripts.plain, settings.connections, seconds, url);
    if let Some(auth) = auth {
        command.arg("-H").arg(format!("Authorization: {auth}"));
    }
    command
}

/// Starts the generator for `load` (for the flood: only the good traffic; see `start_flood`).
pub fn start(
    load: &Load,
    settings: &Settings,
    scripts: &Scripts,
    url: &str,
    seconds: u64,
) -> Result<Generator, String> {
    let command = match load {
        Load::Static { auth } => plain_wrk(settings, scripts, url, seconds, auth.as_deref()),
        Load::Flood { auth, .. } => plain_wrk(settings, scripts, url, seconds, Some(auth)),
        Load::Cycle { file, prefix, .. } => {
            let mut command = wrk(settings, &scripts.cycle, settings.connections, seconds, url);
            let threads = settings.client_threads.min(settings.connections);
            command.arg("--").arg(file).arg(prefix).arg(threads.to_string());
            command
        }
        Load::Tls => oha(settings, &DataDir::new(&settings.data), seconds, url),
    };
    Generator::start(command)
}

/// The wrong-password flood for `seconds`, one wrk thread, paced.
pub fn start_flood(
    flood_file: &Path,
    settings: &Settings,
    scripts: &Scripts,
    url: &str,
    seconds: u64,
) -> Result<Generator, String> {
    let mut single = settings.clone();
    single.client_threads = 1;
    let mut command = wrk(&single, &scripts.flood, FLOOD_CONNECTIONS, seconds, url);
    command.arg("--").arg(flood_file).arg("").arg("1").arg(FLOOD_PAUSE_MS.to_string());
    Generator::start(command)
}

#[derive(Deserialize)]
struct WrkErrors {
    connect: u64,
    read: u64,
    write: u64,
    status: u64,
    timeout: u64,
}

#[derive(Deserialize)]
struct WrkLatency {
    p50: f64,
    p99: f64,
}

#[derive(Deserialize)]
struct WrkReport {
    requests: u64,
    duration_us: u64,
    errors: WrkErrors,
    latency_us: WrkLatency,
    counters: BTreeMap<String, u64>,
}

/// Reads the LOADJSON line report.lua printed.
pub fn parse_wrk(finished: &Finished, ticks_per_second: f64) -> Result<Summary, String> {
    let line = finished.stdout.lines().find_map(|line| line.strip_prefix("LOADJSON ")).ok_or_else(|| {
        format!("wrk printed no summary (exit ok: {}): {}{}", finished.success, finished.stdout, finished.stderr)
    })?;
    let report: WrkReport = serde_json::from_str(line).map_err(|e| format!("wrk summary: {e}: {line}"))?;
    let e = &report.errors;
    let socket_errors = e.connect + e.read + e.write + e.timeout;
    Ok(Summary {
        ok: report.requests.saturating_sub(e.status),
        errors: e.status + socket_errors,
        duration_s: report.duration_us as f64 / 1e6,
        p50_us: report.latency_us.p50,
        p99_us: report.latency_us.p99,
        counters: report.counters,
        client_cpu_s: finished.cpu_ticks as f64 / ticks_per_second,
    })
}

#[derive(Deserialize)]
struct OhaLatency {
    p50: f64,
    p99: f64,
}

#[derive(Deserialize)]
struct OhaMetrics {
    latency_ms: OhaLatency,
}

#[derive(Deserialize)]
struct OhaSummary {
    total: f64,
}

#[derive(Deserialize)]
struct OhaReport {
    summary: OhaSummary,
    metrics: OhaMetrics,
    #[serde(rename = "statusCodeDistribution")]
    statuses: BTreeMap<String, u64>,
    #[serde(rename = "errorDistribution")]
    errors: BTreeMap<String, u64>,
}

/// Reads oha's JSON. Requests cut off by the deadline are not counted as errors.
pub fn parse_oha(finished: &Finished, ticks_per_second: f64) -> Result<Summary, String> {
    let report: OhaReport = serde_json::from_str(finished.stdout.trim())
        .map_err(|e| format!("oha summary: {e}: {}{}", finished.stdout, finished.stderr))?;
    let ok = report.statuses.iter().filter(|(status, _)| status.starts_with('2')).map(|(_, n)| n).sum();
    let bad_status: u64 = report.statuses.iter().filter(|(status, _)| !status.starts_with('2')).map(|(_, n)| n).sum();
    let failures: u64 = report.errors.iter().filter(|(what, _)| !what.contains("deadline")).map(|(_, n)| n).sum();
    let counters = report.errors.into_iter().map(|(what, n)| (format!("error: {what}"), n)).collect();
    Ok(Summary {
        ok,
        errors: bad_status + failures,
        duration_s: report.summary.total,
        p50_us: report.metrics.latency_ms.p50 * 1e3,
        p99_us: report.metrics.latency_ms.p99 * 1e3,
        counters,
        client_cpu_s: finished.cpu_ticks as f64 / ticks_per_second,
    })
}

/// Waits for `generator` and reads its summary.
pub fn finish(load: &Load, generator: Generator, seconds: u64, ticks_per_second: f64) -> Result<Summary, String> {
    let finished = generator.finish(Duration::from_secs(seconds + 60))?;
    match load {
        Load::Tls => parse_oha(&finished, ticks_per_second),
        _ => parse_wrk(&finished, ticks_per_second),
    }
}
