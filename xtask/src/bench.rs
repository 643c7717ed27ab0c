//! `cargo xtask bench`: Weir's echo servers against tokio, monoio and two raw floors, side by
//! side. The floors have no runtime at all: `epoll` (an edge-triggered epoll loop, the floor
//! under `weir-poll`) and `uring-raw` (the `io-uring` crate driven by hand with multishot
//! accept and receive over a provided-buffer ring, the floor under `weir-uring`); each
//! scenario's table ends with how far each Weir backend sits from its floor.
//!
//! Every server runs the same echo logic (see `benches/src/bin/bench-server/`), pinned to CPU 1;
//! one load generator (raw epoll, closed loop) pinned to CPU 0 drives it. Rounds interleave the
//! servers, so each round gives one paired ratio against tokio `current_thread` measured minutes
//! — not days — apart; the table shows the median ratio with a bootstrap 95% interval.
//! Deterministic counts (syscalls per request from the kernel's own tracepoint via `perf`,
//! allocations per request from a counting allocator) are reported as they are.
//!
//! Two scenarios have no requests to count: B8 (resident memory per idle connection) and B9
//! (server CPU while idle connections sit in a loop of timed reads, see [`idle_timed_reads`]).
//!
//! `--full` runs more rounds and scenarios; `--micro` also runs the crates' micro benchmarks.
//! Timings are never asserted: this reports, it does not judge.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cmd::{self, cargo};

/// Micro benchmarks: (package, bench target).
const MICRO: &[(&str, &str)] = &[
    ("weir-shutdown", "primitives"),
    ("weir-bufpool", "pool"),
    ("weir-reactor", "pingpong"),
    ("weir-ring", "ops"),
];

const SERVERS: &[&str] = &[
    "weir-uring",
    "weir-poll",
    "tokio-ct",
    "tokio-mt",
    "monoio",
    "epoll",
    "uring-raw",
];
const BASELINE: &str = "tokio-ct";
/// Each Weir backend and the raw floor under it: the same kernel interface with no runtime.
const FLOORS: &[(&str, &str)] = &[("weir-uring", "uring-raw"), ("weir-poll", "epoll")];

/// tokio `current_thread`'s median B2 throughput, which sets B4's offered rates.
static TOKIO_MAX: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    what: &'static str,
    conns: usize,
    bytes: usize,
    warmup: u64,
    requests: u64,
    /// How the load generator drives the server.
    mode: Mode,
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// `conns` connections, one request outstanding on each (closed loop).
    Echo,
    /// A new connection per request: connect, one echo, close (B7).
    Churn,
    /// One connection streaming `bytes`-sized writes while the echo is read back (B5).
    Bulk,
    /// `conns` UDP flows, one datagram outstanding on each (B6).
    Udp,
    /// An open loop at this share of tokio `current_thread`'s B2 throughput (B4).
    Open(f64),
    /// `conns` idle connections, each served by a loop of timed reads; the figure is the
    /// server's CPU while they stay idle (B9).
    IdleTimed,
}

impl Mode {
    fn env(self) -> Option<&'static str> {
        match self {
            Mode::Echo => None,
            Mode::Churn => Some("churn"),
            Mode::Bulk => Some("bulk"),
            Mode::Udp => Some("udp"),
            Mode::Open(_) => Some("open"),
            Mode::IdleTimed => Some("idle-timed"),
        }
    }

    /// Servers that cannot run this mode, and why.
    fn skips(self, server: &str) -> bool {
        match self {
            // The raw epoll floor accepts all its connections before serving any; the io_uring
            // floor's multishot accept serves connections as they come, churn included.
            Mode::Churn => server == "epoll",
            // The raw floors have no timers.
            Mode::IdleTimed => FLOORS.iter().any(|(_, floor)| *floor == server),
            _ => false,
        }
    }
}

const QUICK: &[Scenario] = &[
    Scenario {
        name: "B1",
        what: "ping-pong, 1 connection, 1 KiB",
        conns: 1,
        bytes: 1024,
        warmup: 1_000,
        requests: 12_000,
        mode: Mode::Echo,
    },
    Scenario {
        name: "B2",
        what: "50 connections, 1 KiB",
        conns: 50,
        bytes: 1024,
        warmup: 5_000,
        requests: 50_000,
        mode: Mode::Echo,
    },
];

/// Connection churn, a bulk stream, UDP and fixed offered load, in quick mode too. B4 comes
/// after B2, whose tokio `current_thread` throughput sets its rate.
const QUICK_EXTRA: &[Scenario] = &[
    Scenario {
        name: "B4-50%",
        what: "fixed offered load at 50% of tokio-ct's B2 throughput, 50 connections, 1 KiB",
        conns: 50,
        bytes: 1024,
        warmup: 2_000,
        requests: 20_000,
        mode: Mode::Open(0.5),
    },
    Scenario {
        name: "B4-80%",
        what: "fixed offered load at 80% of tokio-ct's B2 throughput, 50 connections, 1 KiB",
        conns: 50,
        bytes: 1024,
        warmup: 2_000,
        requests: 30_000,
        mode: Mode::Open(0.8),
    },
    Scenario {
        name: "B5",
        what: "bulk stream of 64 KiB writes, 1 connection (req = one 64 KiB chunk echoed)",
        conns: 1,
        bytes: 64 * 1024,
        warmup: 500,
        requests: 4_000,
        mode: Mode::Bulk,
    },
    Scenario {
        name: "B6-64B",
        what: "UDP echo, 10 flows, 64 B datagrams",
        conns: 10,
        bytes: 64,
        warmup: 1_000,
        requests: 10_000,
        mode: Mode::Udp,
    },
    Scenario {
        name: "B6-1200B",
        what: "UDP echo, 10 flows, 1200 B datagrams",
        conns: 10,
        bytes: 1200,
        warmup: 1_000,
        requests: 10_000,
        mode: Mode::Udp,
    },
    Scenario {
        name: "B7",
        what: "connection churn: connect, one 64 B echo, close (req = one connection)",
        conns: 1,
        bytes: 64,
        warmup: 200,
        requests: 2_000,
        mode: Mode::Churn,
    },
];

const FULL_EXTRA: &[Scenario] = &[
    Scenario {
        name: "B3-64B",
        what: "10 connections, 64 B",
        conns: 10,
        bytes: 64,
        warmup: 5_000,
        requests: 50_000,
        mode: Mode::Echo,
    },
    Scenario {
        name: "B3-16K",
        what: "10 connections, 16 KiB",
        conns: 10,
        bytes: 16 * 1024,
        warmup: 2_000,
        requests: 20_000,
        mode: Mode::Echo,
    },
    Scenario {
        name: "B3-64K",
        what: "10 connections, 64 KiB",
        conns: 10,
        bytes: 64 * 1024,
        warmup: 1_000,
        requests: 10_000,
        mode: Mode::Echo,
    },
];

/// B9: idle connections, each served by a loop of timed reads (see
/// `benches/src/bin/bench-server/idle_timed.rs`); `bytes` is the one message each connection
/// echoes at the end, proving the server alive.
const IDLE_TIMED_QUICK: &[Scenario] = &[Scenario {
    name: "B9-1000",
    what: "1,000 idle connections, each in a loop of 25 ms timed reads",
    conns: 1_000,
    bytes: 64,
    warmup: 0,
    requests: 0,
    mode: Mode::IdleTimed,
}];

/// The load generator and the server each hold a descriptor per connection: 5,000 stays well
/// inside a 20,000 open-file limit.
const IDLE_TIMED_FULL: &[Scenario] = &[Scenario {
    name: "B9-5000",
    what: "5,000 idle connections, each in a loop of 25 ms timed reads",
    conns: 5_000,
    ..IDLE_TIMED_QUICK[0]
}];

/// One run's figures.
#[derive(Debug, Clone, Default)]
struct Sample {
    throughput: f64,
    cpu_us_per_req: f64,
    syscalls_per_req: Option<f64>,
    allocs_per_req: f64,
    p50_us: f64,
    p99_us: f64,
    p999_us: f64,
    client_bound: bool,
}

pub(crate) fn run(args: &[String]) -> Result<bool> {
    let mut full = false;
    let mut micro = false;
    let mut only: Option<Vec<String>> = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--full" => full = true,
            "--micro" => micro = true,
            "--only" => {
                let names = args
                    .next()
                    .context("--only takes scenario names, e.g. --only B1,B6")?;
                only = Some(names.split(',').map(str::to_string).collect());
            }
            unknown => {
                bail!("unknown flag {unknown} (bench takes --full, --micro and --only B1,B6,...)")
            }
        }
    }
    // `--only B6` picks B6-64B and B6-1200B; B8 and B9 are picked by their names too.
    let picked = |name: &str| {
        only.as_ref().is_none_or(|names| {
            names
                .iter()
                .any(|n| name == n || name.starts_with(&format!("{n}-")))
        })
    };
    let perf = ensure_perf();
    if let Err(why) = &perf {
        println!("NOTE: syscalls per request will read n/a: {why}");
    }
    cmd::run(cargo().args(["build", "--release", "--package", "weir-benches", "--bins"]))?;
    let bin = cmd::root().join("target/release");
    let rounds = if full { 10 } else { 5 };
    let mut scenarios: Vec<&Scenario> = QUICK.iter().chain(QUICK_EXTRA).collect();
    if full {
        scenarios.extend(FULL_EXTRA.iter());
    }
    scenarios.retain(|s| picked(s.name));
    if picked("B4") && !picked("B2") {
        bail!("B4's offered load is a share of B2's tokio-ct throughput: pick B2 with B4");
    }
    let started = Instant::now();
    let mut results: BTreeMap<&str, BTreeMap<&str, Vec<Sample>>> = BTreeMap::new();
    for scenario in &scenarios {
        for round in 0..rounds {
            // Rotate the order so no server always runs first (warm caches, thermal state).
            for offset in 0..SERVERS.len() {
                let server = SERVERS[(round + offset) % SERVERS.len()];
                if scenario.mode.skips(server) {
                    continue;
                }
                let sample = run_once(&bin, server, scenario)
                    .with_context(|| format!("{} on {server}", scenario.name))?;
                results
                    .entry(scenario.name)
                    .or_default()
                    .entry(server)
                    .or_default()
                    .push(sample);
            }
        }
        if scenario.name == "B2" {
            if let Some(samples) = results.get("B2").and_then(|r| r.get(BASELINE)) {
                let _ = TOKIO_MAX.set(median(
                    &mut samples.iter().map(|s| s.throughput).collect::<Vec<_>>(),
                ));
            }
        }
        eprintln!(
            "bench: {} done after {:.0} s",
            scenario.name,
            started.elapsed().as_secs_f64()
        );
    }
    let mut report = report(&scenarios, &results, perf.is_ok());
    let counted = match cmd::ensure_apt_program("callgrind_control", "valgrind") {
        Ok(()) => Ok(instructions(&bin, &scenarios)?),
        Err(why) => Err(why),
    };
    report.push_str(&instructions_table(&counted));
    if picked("B8") {
        report.push_str(&idle_memory(&bin)?);
    }
    let idle_timed = if picked("B9") {
        idle_timed_reads(&bin, full)
    } else {
        Vec::new()
    };
    report.push_str(&idle_timed_table(&idle_timed));
    println!("{report}");
    let counted_json = match &counted {
        Ok(table) => json!(table),
        Err(why) => json!({ "not_measured": why }),
    };
    write_outputs(&scenarios, &results, &idle_timed, &counted_json, &report)?;
    println!(
        "\nThe raw epoll floor sits out B7 (it accepts every connection before serving any); \
         the raw io_uring floor runs it. Both floors sit out B9: they have no timers."
    );
    if micro {
        run_micro(full)?;
    }
    Ok(true)
}

/// User-space instructions per request, from callgrind: deterministic, so one run per server
/// and scenario. Fewer requests than the timed runs (callgrind is ~50x slower), after a warm-up.
fn instructions(
    bin: &std::path::Path,
    scenarios: &[&Scenario],
) -> Result<BTreeMap<String, BTreeMap<String, Option<f64>>>> {
    let mut table: BTreeMap<String, BTreeMap<String, Option<f64>>> = BTreeMap::new();
    for scenario in scenarios
        .iter()
        .filter(|s| matches!(s.name, "B1" | "B2" | "B6-64B"))
    {
        let short = Scenario {
            warmup: 300,
            requests: 1_000,
            ..**scenario
        };
        for server in SERVERS {
            let prefix = format!("/dev/shm/weir-callgrind-{}-{server}", std::process::id());
            let outcome = run_server(bin, server, &short, Some(&prefix));
            let per_request = outcome.ok().and_then(|_| {
                let dump = callgrind_dump(&prefix)?;
                Some(dump / short.requests as f64)
            });
            cleanup_prefix(&prefix);
            table
                .entry(scenario.name.to_string())
                .or_default()
                .insert((*server).to_string(), per_request);
        }
        eprintln!("bench: {} instructions counted", scenario.name);
    }
    Ok(table)
}

/// The table of instructions per request, with ratios against tokio `current_thread`.
fn instructions_table(
    counted: &Result<BTreeMap<String, BTreeMap<String, Option<f64>>>, String>,
) -> String {
    let mut out = String::from(
        "\nuser-space instructions per request (callgrind, counters zeroed after a warm-up; \
         one run each, deterministic)\n",
    );
    let table = match counted {
        Ok(table) => table,
        Err(why) => {
            out.push_str(&format!("  n/a: {why}\n"));
            return out;
        }
    };
    out.push_str(&format!("  {:<8}", "scenario"));
    for server in SERVERS {
        out.push_str(&format!(" {server:>20}"));
    }
    out.push('\n');
    for (scenario, row) in table {
        out.push_str(&format!("  {scenario:<8}"));
        let baseline = row.get(BASELINE).copied().flatten();
        for server in SERVERS {
            let cell = match (row.get(*server).copied().flatten(), baseline) {
                (Some(n), Some(base)) => format!("{n:.0} ({:.2}x)", n / base),
                (Some(n), None) => format!("{n:.0}"),
                (None, _) => "n/a (run failed)".to_string(),
            };
            out.push_str(&format!(" {cell:>20}"));
        }
        out.push('\n');
    }
    out
}

/// The instruction total (`Ir`) of the first dump (`<prefix>.<pid>.1`): what ran between the
/// zeroing and the dump.
fn callgrind_dump(prefix: &str) -> Option<f64> {
    let (dir, stem) = prefix.rsplit_once('/')?;
    let dump = std::fs::read_dir(dir).ok()?.flatten().find(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        name.starts_with(stem) && name.ends_with(".1")
    })?;
    let text = std::fs::read_to_string(dump.path()).ok()?;
    text.lines()
        .find_map(|line| {
            line.strip_prefix("totals:")
                .or(line.strip_prefix("summary:"))
        })
        .and_then(|total| total.split_whitespace().next()?.parse().ok())
}

fn cleanup_prefix(prefix: &str) {
    let Some((dir, stem)) = prefix.rsplit_once('/') else {
        return;
    };
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(stem) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// B8: the server's resident memory per idle connection, once per server (a count of bytes,
/// not a timing: one run is enough).
fn idle_memory(bin: &std::path::Path) -> Result<String> {
    let scenario = Scenario {
        name: "B8",
        what: "10,000 idle connections",
        conns: 10_000,
        bytes: 0,
        warmup: 0,
        requests: 0,
        mode: Mode::Echo,
    };
    let mut out = format!(
        "\nB8 - {} (server resident memory per connection, one run each)\n{:<11} {:>14} {:>18}\n",
        scenario.what, "server", "bytes/conn", "ratio vs tokio-ct"
    );
    let mut figures = Vec::new();
    for server in SERVERS {
        let line = run_raw(bin, server, &scenario)?;
        let per_conn = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("idle_bytes_per_conn="))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        figures.push((*server, per_conn));
    }
    let base = figures
        .iter()
        .find(|(s, _)| *s == BASELINE)
        .map_or(f64::NAN, |(_, v)| *v);
    for (server, per_conn) in figures {
        out.push_str(&format!(
            "{server:<11} {per_conn:>14.0} {:>18.2}\n",
            per_conn / base
        ));
    }
    Ok(out)
}

/// One B9 run's figures.
#[derive(Debug, Clone, PartialEq)]
struct IdleTimedSample {
    /// Server CPU time over the measured window, in % of one core.
    cpu_percent: f64,
    /// Resident memory the server gained per connection, by the end of the window.
    bytes_per_conn: f64,
    /// The measured window, in seconds.
    window_s: f64,
    /// From the first final message sent to the last echo read back, in milliseconds.
    echo_ms: f64,
}

impl IdleTimedSample {
    /// Reads the load generator's `key=value` line.
    fn parse(line: &str) -> Result<IdleTimedSample> {
        let fields: BTreeMap<&str, &str> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let num = |key: &str| -> Result<f64> {
            fields
                .get(key)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("bench-load printed no {key}: {}", line.trim()))
        };
        let window_ns = num("window_ns")?;
        if window_ns <= 0.0 {
            bail!("bench-load measured an empty window: {}", line.trim());
        }
        Ok(IdleTimedSample {
            cpu_percent: num("server_cpu_ns")? / window_ns * 100.0,
            bytes_per_conn: num("idle_bytes_per_conn")?,
            window_s: window_ns / 1e9,
            echo_ms: num("echo_ns")? / 1e6,
        })
    }
}

/// One B9 scenario's runs: by server, one per round, in round order (`Err`: why it failed).
struct IdleTimedResult {
    scenario: Scenario,
    runs: BTreeMap<&'static str, Vec<Result<IdleTimedSample, String>>>,
}

impl IdleTimedResult {
    fn samples(&self, server: &str) -> impl Iterator<Item = &IdleTimedSample> {
        self.runs.get(server).into_iter().flatten().flatten()
    }

    fn median(&self, server: &str, metric: fn(&IdleTimedSample) -> f64) -> Option<f64> {
        let mut values: Vec<f64> = self.samples(server).map(metric).collect();
        (!values.is_empty()).then(|| median(&mut values))
    }

    /// Median of `server`'s per-round CPU ratios against tokio `current_thread` (rounds where
    /// both ran), with a bootstrap 95% interval.
    fn cpu_ratio(&self, server: &str) -> Option<(f64, f64, f64)> {
        let mine = self.runs.get(server)?;
        let base = self.runs.get(BASELINE)?;
        let ratios: Vec<f64> = mine
            .iter()
            .zip(base)
            .filter_map(|(m, b)| Some(m.as_ref().ok()?.cpu_percent / b.as_ref().ok()?.cpu_percent))
            .collect();
        (!ratios.is_empty()).then(|| median_with_interval(&ratios))
    }

    fn failures(&self, server: &str) -> Vec<&str> {
        self.runs
            .get(server)
            .into_iter()
            .flatten()
            .filter_map(|run| run.as_ref().err().map(String::as_str))
            .collect()
    }
}

/// B9: the server's CPU while idle connections sit in a loop of timed reads — what expiring
/// and re-arming a read's deadline costs, with nothing to read. Rounds interleave the servers as
/// the timed scenarios do; fewer of them, as each run idles for seconds. A failed run (a missing
/// echo, say) is reported in the table, not fatal.
fn idle_timed_reads(bin: &std::path::Path, full: bool) -> Vec<IdleTimedResult> {
    let rounds = if full { 5 } else { 3 };
    let mut scenarios: Vec<&Scenario> = IDLE_TIMED_QUICK.iter().collect();
    if full {
        scenarios.extend(IDLE_TIMED_FULL);
    }
    let started = Instant::now();
    let mut results = Vec::new();
    for scenario in scenarios {
        let mut runs: BTreeMap<&'static str, Vec<Result<IdleTimedSample, String>>> =
            BTreeMap::new();
        for round in 0..rounds {
            for offset in 0..SERVERS.len() {
                let server = SERVERS[(round + offset) % SERVERS.len()];
                if scenario.mode.skips(server) {
                    continue;
                }
                let run = run_raw(bin, server, scenario)
                    .and_then(|line| IdleTimedSample::parse(&line))
                    .map_err(|e| format!("{e:#}"));
                runs.entry(server).or_default().push(run);
            }
        }
        eprintln!(
            "bench: {} done after {:.0} s",
            scenario.name,
            started.elapsed().as_secs_f64()
        );
        results.push(IdleTimedResult {
            scenario: *scenario,
            runs,
        });
    }
    results
}

/// B9's tables: server CPU in % of one core and its ratio to tokio `current_thread`, the
/// memory per connection, and how long the final echoes took.
fn idle_timed_table(results: &[IdleTimedResult]) -> String {
    let mut out = String::new();
    for result in results {
        let scenario = &result.scenario;
        let window = result.median(BASELINE, |s| s.window_s).or_else(|| {
            SERVERS
                .iter()
                .find_map(|s| result.median(s, |s| s.window_s))
        });
        out.push_str(&format!(
            "\n{} — {} (server CPU over {} of idling, once every connection is accepted and \
             the server has settled; medians of {} rounds; ratio vs {BASELINE}, paired, \
             [95% interval])\n",
            scenario.name,
            scenario.what,
            window.map_or("n/a".to_string(), |w| format!("{w:.1} s")),
            result.runs.get(BASELINE).map_or(0, Vec::len),
        ));
        out.push_str(&format!(
            "{:<11} {:>16} {:>22} {:>12} {:>12}\n",
            "server", "CPU % of a core", "CPU ratio", "bytes/conn", "echo ms"
        ));
        let mut sat_out = Vec::new();
        for server in SERVERS {
            if scenario.mode.skips(server) {
                sat_out.push(*server);
                continue;
            }
            let failures = result.failures(server);
            let Some(cpu) = result.median(server, |s| s.cpu_percent) else {
                let why = failures
                    .first()
                    .map_or("no run", |f| f.lines().next().unwrap_or(f));
                out.push_str(&format!("{server:<11} n/a: {why}\n"));
                continue;
            };
            let ratio = result
                .cpu_ratio(server)
                .map_or("-".to_string(), |(m, lo, hi)| {
                    format!("{m:.2} [{lo:.2},{hi:.2}]")
                });
            let figure =
                |f: fn(&IdleTimedSample) -> f64| result.median(server, f).unwrap_or(f64::NAN);
            out.push_str(&format!(
                "{server:<11} {cpu:>16.2} {ratio:>22} {:>12.0} {:>12.1}{}\n",
                figure(|s| s.bytes_per_conn),
                figure(|s| s.echo_ms),
                match failures.first() {
                    Some(why) => format!(
                        "  ({} of its runs failed: {})",
                        failures.len(),
                        why.lines().next().unwrap_or(why)
                    ),
                    None => String::new(),
                },
            ));
        }
        out.push_str(&format!(
            "  a run counts only if every connection then echoes one {} B message\n",
            scenario.bytes
        ));
        if !sat_out.is_empty() {
            out.push_str(&format!("  sat out (no timers): {}\n", sat_out.join(", ")));
        }
    }
    out
}

/// B9 in `results.json`: per server the raw samples, the failed runs and the CPU ratio.
fn idle_timed_json(result: &IdleTimedResult) -> Value {
    let mut servers = serde_json::Map::new();
    for (server, runs) in &result.runs {
        let samples: Vec<Value> = result
            .samples(server)
            .map(|s| {
                json!({
                    "server_cpu_percent": s.cpu_percent, "idle_bytes_per_conn": s.bytes_per_conn,
                    "window_s": s.window_s, "echo_ms": s.echo_ms,
                })
            })
            .collect();
        let failed: Vec<&String> = runs.iter().filter_map(|r| r.as_ref().err()).collect();
        servers.insert(
            server.to_string(),
            json!({
                "samples": samples,
                "failed_runs": failed,
                "cpu_ratio_vs_tokio_ct": result.cpu_ratio(server).map(|(m, lo, hi)| json!({"median": m, "ci95": [lo, hi]})),
            }),
        );
    }
    let scenario = &result.scenario;
    json!({
        "name": scenario.name, "description": scenario.what, "connections": scenario.conns,
        "metric": "server CPU % of one core while the connections idle in timed reads",
        "echo_bytes": scenario.bytes,
        "sat_out": SERVERS.iter().filter(|s| scenario.mode.skips(s)).collect::<Vec<_>>(),
        "servers": servers,
    })
}

fn ensure_perf() -> Result<(), String> {
    let works = || cmd::succeeds("perf", &["stat", "-e", "raw_syscalls:sys_enter", "true"]);
    if works() {
        return Ok(());
    }
    cmd::ensure_apt_program("perf", "linux-perf")?;
    if works() {
        Ok(())
    } else {
        Err("perf cannot read the raw_syscalls:sys_enter tracepoint here (perf_event_paranoid or no tracefs)".into())
    }
}

fn run_once(bin: &std::path::Path, server: &str, scenario: &Scenario) -> Result<Sample> {
    let line = run_raw(bin, server, scenario)?;
    let fields: BTreeMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let num = |key: &str| -> f64 {
        fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    let requests = num("requests");
    let elapsed_s = num("elapsed_ns") / 1e9;
    Ok(Sample {
        throughput: requests / elapsed_s,
        cpu_us_per_req: num("server_cpu_ns") / 1e3 / requests,
        syscalls_per_req: fields
            .get("syscalls")
            .and_then(|v| v.parse::<f64>().ok())
            .map(|s| s / requests),
        allocs_per_req: num("allocs") / requests,
        p50_us: num("p50_ns") / 1e3,
        p99_us: num("p99_ns") / 1e3,
        p999_us: num("p999_ns") / 1e3,
        // The open loop spins by design; elsewhere a busy client means it, not the server, set
        // the pace.
        client_bound: !matches!(scenario.mode, Mode::Open(_))
            && num("client_cpu_ns") / num("elapsed_ns") > 0.9,
    })
}

/// Starts `server`, runs the load generator against it, and returns the generator's line.
fn run_raw(bin: &std::path::Path, server: &str, scenario: &Scenario) -> Result<String> {
    run_server(bin, server, scenario, None)
}

/// As [`run_raw`]; with `callgrind` (an output-file prefix) the server runs under
/// `valgrind --tool=callgrind` and the generator zeroes its counters after the warm-up and dumps
/// them after the counted requests.
fn run_server(
    bin: &std::path::Path,
    server: &str,
    scenario: &Scenario,
    callgrind: Option<&str>,
) -> Result<String> {
    let alloc_file = format!("/dev/shm/weir-bench-{}-{server}", std::process::id());
    let server_bin = bin.join("bench-server");
    let mut command = match callgrind {
        Some(prefix) => {
            let mut command = Command::new("valgrind");
            command
                .arg("--tool=callgrind")
                .arg(format!("--callgrind-out-file={prefix}.%p"))
                .arg(&server_bin);
            command
        }
        None => Command::new(&server_bin),
    };
    // A churning server sees a new connection per request, and exits after the last.
    let server_conns = match scenario.mode {
        Mode::Churn => scenario.warmup + scenario.requests,
        _ => scenario.conns as u64,
    };
    if let Some(mode) = scenario.mode.env() {
        command.env("WEIR_BENCH_MODE", mode);
    }
    let mut child = command
        .args([server, &server_conns.to_string(), &alloc_file])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("start bench-server")?;
    let mut port = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut port)?;
    let mut load = Command::new(bin.join("bench-load"));
    if callgrind.is_some() {
        load.env("WEIR_BENCH_CALLGRIND", "1");
    }
    if let Some(mode) = scenario.mode.env() {
        load.env("WEIR_BENCH_MODE", mode);
    }
    if let Mode::Open(share) = scenario.mode {
        let max = TOKIO_MAX
            .get()
            .copied()
            .context("B4 needs B2's tokio-ct throughput")?;
        load.env("WEIR_BENCH_RATE", format!("{:.0}", max * share));
    }
    let output = load
        .args([
            port.trim(),
            &scenario.conns.to_string(),
            &scenario.bytes.to_string(),
            &scenario.warmup.to_string(),
            &scenario.requests.to_string(),
            &child.id().to_string(),
            &alloc_file,
        ])
        .output()
        .context("run bench-load")?;
    let deadline = Instant::now() + Duration::from_secs(if callgrind.is_some() { 60 } else { 10 });
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = std::fs::remove_file(&alloc_file);
    if !output.status.success() {
        bail!(
            "bench-load failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    if values.is_empty() {
        return f64::NAN;
    }
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Median of `ratios` with a bootstrap 95% interval (2,000 resamples, fixed seed).
fn median_with_interval(ratios: &[f64]) -> (f64, f64, f64) {
    let mut sorted = ratios.to_vec();
    let center = median(&mut sorted);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut medians = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        let mut resample: Vec<f64> = (0..ratios.len())
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ratios[(seed % ratios.len() as u64) as usize]
            })
            .collect();
        medians.push(median(&mut resample));
    }
    medians.sort_by(|a, b| a.total_cmp(b));
    (
        center,
        medians[medians.len() * 25 / 1000],
        medians[medians.len() * 975 / 1000],
    )
}

fn paired(
    samples: &BTreeMap<&str, Vec<Sample>>,
    server: &str,
    metric: fn(&Sample) -> f64,
) -> Option<(f64, f64, f64)> {
    paired_against(samples, server, BASELINE, metric)
}

/// Median of `server`'s per-round ratios against `base` (same round, so minutes apart), with a
/// bootstrap 95% interval.
fn paired_against(
    samples: &BTreeMap<&str, Vec<Sample>>,
    server: &str,
    base: &str,
    metric: fn(&Sample) -> f64,
) -> Option<(f64, f64, f64)> {
    let mine = samples.get(server)?;
    let base = samples.get(base)?;
    let ratios: Vec<f64> = mine
        .iter()
        .zip(base)
        .map(|(m, b)| metric(m) / metric(b))
        .collect();
    (!ratios.is_empty()).then(|| median_with_interval(&ratios))
}

fn report(
    scenarios: &[&Scenario],
    results: &BTreeMap<&str, BTreeMap<&str, Vec<Sample>>>,
    perf: bool,
) -> String {
    let mut out = String::new();
    for scenario in scenarios {
        let Some(samples) = results.get(scenario.name) else {
            continue;
        };
        out.push_str(&format!(
            "\n{} — {} (medians of {} rounds; ratios vs {BASELINE}, paired, [95% interval])\n",
            scenario.name,
            scenario.what,
            samples.get(BASELINE).map_or(0, Vec::len)
        ));
        out.push_str(&format!(
            "{:<11} {:>10} {:>22} {:>12} {:>22} {:>10} {:>10} {:>9} {:>9} {:>9}\n",
            "server",
            "req/s",
            "throughput ratio",
            "CPU us/req",
            "CPU ratio",
            "sys/req",
            "allocs/req",
            "p50 us",
            "p99 us",
            "p99.9 us"
        ));
        for server in SERVERS {
            let Some(list) = samples.get(server) else {
                continue;
            };
            let med = |f: fn(&Sample) -> f64| median(&mut list.iter().map(f).collect::<Vec<_>>());
            let ratio = |f: fn(&Sample) -> f64| {
                paired(samples, server, f).map_or("-".to_string(), |(m, lo, hi)| {
                    format!("{m:.2} [{lo:.2},{hi:.2}]")
                })
            };
            let syscalls = if perf {
                format!("{:.2}", med(|s| s.syscalls_per_req.unwrap_or(f64::NAN)))
            } else {
                "n/a".to_string()
            };
            let client_bound = list.iter().filter(|s| s.client_bound).count();
            out.push_str(&format!(
                "{:<11} {:>10.0} {:>22} {:>12.2} {:>22} {:>10} {:>10.2} {:>9.0} {:>9.0} {:>9.0}{}\n",
                server,
                med(|s| s.throughput),
                ratio(|s| s.throughput),
                med(|s| s.cpu_us_per_req),
                ratio(|s| s.cpu_us_per_req),
                syscalls,
                med(|s| s.allocs_per_req),
                med(|s| s.p50_us),
                med(|s| s.p99_us),
                med(|s| s.p999_us),
                if client_bound > 0 { format!("  (client-bound in {client_bound} rounds)") } else { String::new() },
            ));
        }
        out.push_str(&floor_distance(samples));
        if scenario.mode == Mode::Bulk {
            out.push_str("  as bandwidth (echoed bytes, each way):");
            for server in SERVERS {
                if let Some(list) = samples.get(server) {
                    let rate = median(&mut list.iter().map(|s| s.throughput).collect::<Vec<_>>());
                    let gbits = rate * scenario.bytes as f64 * 8.0 / 1e9;
                    out.push_str(&format!(" {server} {gbits:.1} Gbit/s;"));
                }
            }
            out.push('\n');
        }
    }
    out
}

/// One line: each Weir backend's throughput and CPU per request as ratios of its raw floor's,
/// paired by round (throughput 1.00 = as fast as the floor, CPU 1.00 = as cheap).
fn floor_distance(samples: &BTreeMap<&str, Vec<Sample>>) -> String {
    let mut parts = Vec::new();
    for (weir, floor) in FLOORS {
        let throughput = paired_against(samples, weir, floor, |s| s.throughput);
        let cpu = paired_against(samples, weir, floor, |s| s.cpu_us_per_req);
        if let (Some((t, t_lo, t_hi)), Some((c, c_lo, c_hi))) = (throughput, cpu) {
            parts.push(format!(
                "{weir} vs {floor}: throughput {t:.2} [{t_lo:.2},{t_hi:.2}], \
                 CPU/req {c:.2} [{c_lo:.2},{c_hi:.2}]"
            ));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("  distance to the raw floors: {}\n", parts.join("; "))
}

fn write_outputs(
    scenarios: &[&Scenario],
    results: &BTreeMap<&str, BTreeMap<&str, Vec<Sample>>>,
    idle_timed: &[IdleTimedResult],
    instructions: &Value,
    table: &str,
) -> Result<()> {
    let dir = cmd::root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let rustc = cmd::output(Command::new("rustc").arg("--version")).unwrap_or_default();
    let mut json_scenarios = Vec::new();
    for scenario in scenarios {
        let Some(samples) = results.get(scenario.name) else {
            continue;
        };
        let mut servers = serde_json::Map::new();
        for (server, list) in samples {
            let raw: Vec<Value> = list
                .iter()
                .map(|s| {
                    json!({
                        "throughput_rps": s.throughput, "server_cpu_us_per_req": s.cpu_us_per_req,
                        "syscalls_per_req": s.syscalls_per_req, "allocs_per_req": s.allocs_per_req,
                        "p50_us": s.p50_us, "p99_us": s.p99_us, "p999_us": s.p999_us, "client_bound": s.client_bound,
                    })
                })
                .collect();
            let interval = |ratio: Option<(f64, f64, f64)>| {
                json!(ratio.map(|(m, lo, hi)| json!({"median": m, "ci95": [lo, hi]})))
            };
            let throughput = paired(samples, server, |s| s.throughput);
            let cpu = paired(samples, server, |s| s.cpu_us_per_req);
            let mut entry = json!({
                "samples": raw,
                "throughput_ratio_vs_tokio_ct": interval(throughput),
                "cpu_ratio_vs_tokio_ct": interval(cpu),
            });
            if let Some((_, floor)) = FLOORS.iter().find(|(weir, _)| weir == server) {
                entry["floor"] = json!(floor);
                entry["throughput_ratio_vs_floor"] =
                    interval(paired_against(samples, server, floor, |s| s.throughput));
                entry["cpu_ratio_vs_floor"] =
                    interval(paired_against(samples, server, floor, |s| s.cpu_us_per_req));
            }
            servers.insert(server.to_string(), entry);
        }
        json_scenarios.push(json!({
            "name": scenario.name, "description": scenario.what, "connections": scenario.conns,
            "message_bytes": scenario.bytes, "requests_per_round": scenario.requests, "servers": servers,
        }));
    }
    json_scenarios.extend(idle_timed.iter().map(idle_timed_json));
    let document = json!({
        "machine": {"cpu": cpu, "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0), "kernel": kernel.trim()},
        "rustc": rustc.trim(),
        "baseline": BASELINE,
        "scenarios": json_scenarios,
        "user_instructions_per_request": instructions,
        "table": table,
    });
    let json_path = dir.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&document)?)?;
    let svg_path = dir.join("summary.svg");
    std::fs::write(&svg_path, svg(scenarios, results, idle_timed))?;
    println!("\nwrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

/// Bars of the throughput and CPU ratios vs tokio per scenario, and of B9's CPU ratios.
fn svg(
    scenarios: &[&Scenario],
    results: &BTreeMap<&str, BTreeMap<&str, Vec<Sample>>>,
    idle_timed: &[IdleTimedResult],
) -> String {
    let width = SVG_WIDTH;
    // Room for one 26 px bar per server under the row's title.
    let row_height = 44.0 + 26.0 * SERVERS.len() as f64 + 10.0;
    let rows = scenarios.len() * 2 + idle_timed.len();
    let height = 80.0 + row_height * rows as f64;
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='white'/>\n\
         <text x='20' y='30' font-size='18'>Weir vs tokio current_thread (ratio; 1.0 = tokio)</text>\n"
    );
    for (i, label) in SERVERS.iter().enumerate() {
        out.push_str(&format!(
            "<rect x='{}' y='44' width='12' height='12' fill='{}'/><text x='{}' y='55'>{label}</text>\n",
            20 + i * 130, SVG_COLORS[i % SVG_COLORS.len()], 36 + i * 130
        ));
    }
    let mut y = 80.0;
    for scenario in scenarios {
        let Some(samples) = results.get(scenario.name) else {
            continue;
        };
        for (title, metric) in [
            (
                "throughput ratio (higher is better)",
                (|s: &Sample| s.throughput) as fn(&Sample) -> f64,
            ),
            (
                "server CPU per request ratio (lower is better)",
                |s: &Sample| s.cpu_us_per_req,
            ),
        ] {
            let title = format!("{} — {}: {title}", scenario.name, scenario.what);
            svg_row(&mut out, y, row_height, &title, |server| {
                paired(samples, server, metric)
            });
            y += row_height;
        }
    }
    for result in idle_timed {
        let title = format!(
            "{} — {}: server CPU ratio (lower is better)",
            result.scenario.name, result.scenario.what
        );
        svg_row(&mut out, y, row_height, &title, |server| {
            result.cpu_ratio(server)
        });
        y += row_height;
    }
    out.push_str("</svg>\n");
    out
}

const SVG_WIDTH: f64 = 960.0;
const SVG_COLORS: [&str; 7] = [
    "#1f77b4", "#2ca02c", "#7f7f7f", "#bcbd22", "#9467bd", "#d62728", "#ff7f0e",
];

/// One row of the chart at `y`: its title, the 1.0 line and a bar per server that has a ratio
/// (median with its 95% interval).
fn svg_row(
    out: &mut String,
    y: f64,
    row_height: f64,
    title: &str,
    ratio: impl Fn(&str) -> Option<(f64, f64, f64)>,
) {
    out.push_str(&format!("<text x='20' y='{}'>{title}</text>\n", y + 14.0));
    let base_x = 200.0;
    let scale = 300.0; // px per 1.0
    out.push_str(&format!(
        "<line x1='{x}' y1='{}' x2='{x}' y2='{}' stroke='black' stroke-dasharray='4'/>\n",
        y + 20.0,
        y + row_height - 20.0,
        x = base_x + scale
    ));
    for (i, server) in SERVERS.iter().enumerate() {
        let Some((m, lo, hi)) = ratio(server) else {
            continue;
        };
        let bar_y = y + 24.0 + i as f64 * 26.0;
        let w = (m * scale).clamp(0.0, SVG_WIDTH - base_x - 40.0);
        out.push_str(&format!(
            "<text x='20' y='{}'>{server}</text><rect x='{base_x}' y='{bar_y}' width='{w:.1}' height='18' fill='{}'/>\
             <line x1='{:.1}' y1='{}' x2='{:.1}' y2='{}' stroke='black'/><text x='{:.1}' y='{}'>{m:.2}</text>\n",
            bar_y + 13.0, SVG_COLORS[i % SVG_COLORS.len()],
            base_x + lo * scale, bar_y + 9.0, base_x + hi * scale, bar_y + 9.0,
            base_x + w + 6.0, bar_y + 13.0
        ));
    }
}

fn run_micro(full: bool) -> Result<()> {
    for (package, bench) in MICRO {
        let mut command = cargo();
        command.args(["bench", "--package", package, "--bench", bench]);
        if full {
            command.env("WEIR_BENCH_FULL", "1");
        }
        cmd::run(&mut command)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cpu_percent: f64) -> Result<IdleTimedSample, String> {
        Ok(IdleTimedSample {
            cpu_percent,
            bytes_per_conn: 6_000.0,
            window_s: 3.0,
            echo_ms: 20.0,
        })
    }

    #[test]
    fn an_idle_timed_line_gives_the_servers_share_of_a_core_over_the_window() {
        let line = "requests=0 idle_conns=1000 window_ns=3000000000 server_cpu_ns=150000000 \
                    rss_before=1 rss_after=2 idle_bytes_per_conn=6000 echoed=1000 echo_ns=20000000\n";
        let parsed = IdleTimedSample::parse(line).expect("a complete line");
        assert_eq!(parsed, sample(5.0).unwrap());
    }

    #[test]
    fn an_idle_timed_line_missing_a_figure_is_an_error() {
        assert!(IdleTimedSample::parse("requests=0 window_ns=3000000000").is_err());
        assert!(
            IdleTimedSample::parse("window_ns=0 server_cpu_ns=1 idle_bytes_per_conn=1 echo_ns=1")
                .is_err()
        );
    }

    #[test]
    fn the_raw_floors_sit_out_the_timed_reads() {
        let skipped: Vec<&str> = SERVERS
            .iter()
            .copied()
            .filter(|s| Mode::IdleTimed.skips(s))
            .collect();
        assert_eq!(skipped, ["epoll", "uring-raw"]);
        assert!(Mode::Churn.skips("epoll") && !Mode::Churn.skips("uring-raw"));
    }

    #[test]
    fn idle_timed_ratios_pair_only_rounds_where_both_ran_and_failures_are_shown() {
        let result = IdleTimedResult {
            scenario: IDLE_TIMED_QUICK[0],
            runs: BTreeMap::from([
                (BASELINE, vec![sample(1.0), sample(1.0), Err("x".into())]),
                (
                    "weir-uring",
                    vec![
                        sample(2.0),
                        Err("bench-load failed: no echo\nmore".into()),
                        sample(6.0),
                    ],
                ),
                ("weir-poll", vec![Err("it broke".into())]),
            ]),
        };
        let (median, low, high) = result.cpu_ratio("weir-uring").expect("one paired round");
        assert_eq!((median, low, high), (2.0, 2.0, 2.0));
        let table = idle_timed_table(std::slice::from_ref(&result));
        assert!(
            table.contains("(1 of its runs failed: bench-load failed: no echo)"),
            "{table}"
        );
        assert!(table.contains("weir-poll   n/a: it broke"), "{table}");
        assert!(
            table.contains("sat out (no timers): epoll, uring-raw"),
            "{table}"
        );
        let json = idle_timed_json(&result);
        assert_eq!(
            json["servers"]["weir-uring"]["samples"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        assert_eq!(
            json["servers"]["weir-uring"]["cpu_ratio_vs_tokio_ct"]["median"],
            2.0
        );
    }
}
