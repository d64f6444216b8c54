//! One run: start the server pinned to its core, warm it up, measure the load and the
//! server's CPU time and peak memory over it, stop the server.

use std::path::Path;

use serde::Serialize;
use tower_secure_load::PATH;

use crate::args::Settings;
use crate::loadgen::{self, Scripts, Summary, FLOOD_SETTLE};
use crate::plan::{Load, Role, Run, Transport};
use crate::process::{cpu_ticks, pinned, probe, status_kib, Server};

/// Everything measured in one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub seq: usize,
    pub round: usize,
    /// The mode and the baseline it is compared with share a pair number.
    pub pair: usize,
    pub name: &'static str,
    pub what: &'static str,
    pub server_mode: &'static str,
    pub transport: Transport,
    pub role: Role,
    pub alg: Option<&'static str>,
    /// The measured load; `None` when the run failed (see `error`).
    pub load: Option<Summary>,
    pub error: Option<String>,
    /// Non-2xx answers or socket errors during the warm-up.
    pub warmup_errors: u64,
    pub server_cpu_s: f64,
    /// Server CPU time (user + system, all threads) per successful request.
    pub cpu_us_per_request: Option<f64>,
    /// Heap allocations of the server process (all threads) during the measured load, from
    /// its counting global allocator; `None` when the counter could not be read, and for the
    /// flood, whose own requests would be counted too.
    pub allocations: Option<u64>,
    /// `allocations` over the successful (2xx) requests; `None` without any.
    pub allocations_per_request: Option<f64>,
    /// Server CPU time over the load's duration: 1.0 is one core fully busy.
    pub server_busy: Option<f64>,
    /// The load generator's CPU time over the load's duration (includes loading its script).
    pub client_busy: Option<f64>,
    /// Peak and current resident memory of the server after the run (VmHWM, VmRSS).
    pub vm_hwm_kib: Option<u64>,
    pub vm_rss_kib: Option<u64>,
    /// The server's threads after the run (tokio workers, blocking pool, others).
    pub threads: Option<u64>,
    /// Distinct tokens available to a fresh-token run.
    pub distinct_tokens: Option<u64>,
    /// The flood's own summary (answers by status in its counters).
    pub flood: Option<Summary>,
    /// TCP connections the machine accepted during the measured load (`PassiveOpens` of
    /// /proc/net/snmp): the load generator's keep-alive connections, plus any reconnects.
    /// Over TLS each is a full handshake.
    pub connections_opened: Option<u64>,
}

impl RunResult {
    pub fn requests_per_second(&self) -> Option<f64> {
        self.load.as_ref().map(Summary::requests_per_second)
    }
}

fn server_command(run: &Run, settings: &Settings) -> std::process::Command {
    let mut command = pinned(&settings.server_cpu, settings.bin_dir.join("load-server"));
    command.arg(run.server).arg("--data").arg(&settings.data);
    command.args(["--workers", &settings.workers.to_string(), "--token-cache", &settings.token_cache.to_string()]);
    command
}

/// One request first (it must answer 200), then the warm-up load; returns how many of the
/// warm-up's answers were not 2xx.
fn warm_up(run: &Run, settings: &Settings, scripts: &Scripts, url: &str, ticks: f64) -> Result<u64, String> {
    if let Load::Static { auth } = &run.warmup {
        let status = probe(url, PATH, auth.as_deref())?;
        if status != 200 {
            return Err(format!("the first request answered {status}, not 200"));
        }
    }
    if settings.warmup == 0 {
        return Ok(0);
    }
    let generator = loadgen::start(&run.warmup, settings, scripts, url, settings.warmup)?;
    Ok(loadgen::finish(&run.warmup, generator, settings.warmup, ticks)?.errors)
}

struct Measured {
    load: Summary,
    flood: Option<Summary>,
    server_ticks: u64,
    connections_opened: Option<u64>,
    allocations: Option<u64>,
}

/// The measured load; for the flood, the flood starts first and runs past its end.
fn measure(run: &Run, settings: &Settings, scripts: &Scripts, server: &Server, ticks: f64) -> Result<Measured, String> {
    let seconds = settings.duration;
    let flood = match &run.load {
        Load::Flood { flood_file, .. } => {
            let flood_seconds = seconds + FLOOD_SETTLE.as_secs() + 1;
            let generator = loadgen::start_flood(flood_file, settings, scripts, &server.url, flood_seconds)?;
            std::thread::sleep(FLOOD_SETTLE);
            Some((generator, flood_seconds))
        }
        _ => None,
    };
    // The allocation counter is read over a connection of its own, outside the window in which
    // the server's CPU time and the accepted connections are counted, so that asking adds to
    // neither. Not under the flood: its requests are served by the same process.
    let counted = !matches!(run.load, Load::Flood { .. });
    let allocations_before = if counted { server.allocations() } else { None };
    let opened_before = passive_opens();
    let before = cpu_ticks(server.pid()).ok_or("cannot read the server's CPU time")?;
    let generator = loadgen::start(&run.load, settings, scripts, &server.url, seconds)?;
    let load = loadgen::finish(&run.load, generator, seconds, ticks);
    let after = cpu_ticks(server.pid()).ok_or("cannot read the server's CPU time")?;
    let connections_opened = opened_before.zip(passive_opens()).map(|(before, after)| after.saturating_sub(before));
    let allocations_after = allocations_before.and_then(|_| server.allocations());
    let allocations = allocations_before.zip(allocations_after).map(|(before, after)| after.saturating_sub(before));
    let flood = match flood {
        Some((generator, flood_seconds)) => Some(loadgen::finish(&run.load, generator, flood_seconds, ticks)?),
        None => None,
    };
    Ok(Measured { load: load?, flood, server_ticks: after.saturating_sub(before), connections_opened, allocations })
}

/// TCP connections accepted by this machine so far (`Tcp: ... PassiveOpens` in
/// /proc/net/snmp): the load is on 127.0.0.1, so on a quiet machine the difference over a
/// run is the connections the load generator opened to the server.
fn passive_opens() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let column = names.split_whitespace().position(|name| name == "PassiveOpens")?;
    values.split_whitespace().nth(column)?.parse().ok()
}

fn failed(seq: usize, run: &Run, error: String) -> RunResult {
    RunResult { error: Some(error), ..RunResult::empty(seq, run) }
}

impl RunResult {
    fn empty(seq: usize, run: &Run) -> RunResult {
        RunResult {
            seq,
            round: run.round,
            pair: run.pair,
            name: run.name,
            what: run.what,
            server_mode: run.server,
            transport: run.transport,
            role: run.role,
            alg: run.alg.map(|alg| alg.jose()),
            load: None,
            error: None,
            warmup_errors: 0,
            server_cpu_s: 0.0,
            cpu_us_per_request: None,
            allocations: None,
            allocations_per_request: None,
            server_busy: None,
            client_busy: None,
            vm_hwm_kib: None,
            vm_rss_kib: None,
            threads: None,
            distinct_tokens: None,
            flood: None,
            connections_opened: None,
        }
    }
}

pub fn execute(seq: usize, run: &Run, settings: &Settings, scripts: &Scripts, logs: &Path, ticks: f64) -> RunResult {
    let log = logs.join(format!("{seq:02}-{}.server.log", run.name));
    let server = match Server::start(server_command(run, settings), &log) {
        Ok(server) => server,
        Err(error) => return failed(seq, run, error),
    };
    let warmup_errors = match warm_up(run, settings, scripts, &server.url, ticks) {
        Ok(errors) => errors,
        Err(error) => return failed(seq, run, format!("warm-up: {error}")),
    };
    let measured = match measure(run, settings, scripts, &server, ticks) {
        Ok(measured) => measured,
        Err(error) => return failed(seq, run, error),
    };
    let (vm_hwm_kib, vm_rss_kib) = (status_kib(server.pid(), "VmHWM:"), status_kib(server.pid(), "VmRSS:"));
    let threads = status_kib(server.pid(), "Threads:");
    drop(server);
    let load = measured.load;
    let server_cpu_s = measured.server_ticks as f64 / ticks;
    let per_second = |seconds: f64| (load.duration_s > 0.0).then(|| seconds / load.duration_s);
    let mut result = RunResult::empty(seq, run);
    result.error = (load.errors > 0).then(|| format!("{} requests failed or were refused", load.errors));
    result.warmup_errors = warmup_errors;
    result.server_cpu_s = server_cpu_s;
    result.cpu_us_per_request = (load.ok > 0).then(|| server_cpu_s * 1e6 / load.ok as f64);
    result.allocations = measured.allocations;
    result.allocations_per_request =
        measured.allocations.filter(|_| load.ok > 0).map(|allocations| allocations as f64 / load.ok as f64);
    result.server_busy = per_second(server_cpu_s);
    result.client_busy = per_second(load.client_cpu_s);
    result.vm_hwm_kib = vm_hwm_kib;
    result.vm_rss_kib = vm_rss_kib;
    result.threads = threads;
    result.distinct_tokens = match &run.load {
        Load::Cycle { distinct, .. } => Some(*distinct),
        _ => None,
    };
    result.flood = measured.flood;
    result.connections_opened = measured.connections_opened;
    result.load = Some(load);
    result
}
