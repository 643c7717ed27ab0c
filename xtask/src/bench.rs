//! `cargo xtask bench`: Weir's echo servers against tokio, monoio and two raw floors, side by
//! side. The floors have no runtime at all: `epoll` (an edge-triggered epoll loop, the floor
//! under `weir-poll`) and `uring-raw` (the `io-uring` crate driven by hand with multishot
//! accept and receive over a provided-buffer ring, the floor under `weir-uring`); each
//! scenario's table ends with how far each Weir backend sits from its floor.
//!
//! Every server runs the same echo logic (see `benches/src/bin/bench-server/`), pinned to CPU 1;
//! one load generator (raw epoll, closed loop) pinned to CPU 0 drives it. Rounds interleave the
//! servers, so each round gives one paired ratio against tokio `current_thread` measured minutes
//! — not days — apart; the table shows the median ratio with its spread: the range of the
//! rounds below 10 rounds, a bootstrap 95% interval from 10 (see [`stats`]). Deterministic
//! counts (syscalls per request from the kernel's own tracepoint via `perf`, allocations per
//! request from a counting allocator) are reported as they are. A figure that could not be
//! measured reads `n/a (why)` and is `null` in `results.json`.
//!
//! B11 runs each server's proxy (see `benches/src/bin/bench-server/proxy.rs`) in front of one
//! fixed upstream echo server ([`process::UPSTREAM`], pinned beside the load generator); its
//! figures are the proxy's.
//!
//! Two scenarios have no requests to count: B8 (resident memory per idle connection) and B9
//! (server CPU while idle connections sit in a loop of timed reads, see [`idle`]).
//!
//! The run leads with a summary of the figures that decide ([`report`]) and draws them as a
//! grid of small multiples in `target/bench/summary.svg` ([`chart`]). A server that crashes or
//! hangs fails the run, named; every server process is reaped whatever happens to its round
//! ([`process`]).
//!
//! `--full` runs more rounds and scenarios; `--micro` also runs the crates' micro benchmarks.
//! Timings are never asserted: this reports, it does not judge.

mod chart;
mod idle;
mod process;
mod report;
mod stats;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::{self, cargo};
use process::{Probe, run_server};
use stats::{Figure, Interval, measured};

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
    "compio",
    "epoll",
    "uring-raw",
];
const BASELINE: &str = "tokio-ct";
/// Each Weir backend and the raw floor under it: the same kernel interface with no runtime.
const FLOORS: &[(&str, &str)] = &[("weir-uring", "uring-raw"), ("weir-poll", "epoll")];

/// tokio `current_thread`'s median B2 throughput, which sets B4's offered rates.
static TOKIO_MAX: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
/// tokio `current_thread`'s median B10 throughput, which sets B10's fixed rate.
static TOKIO_HTTP_MAX: std::sync::OnceLock<f64> = std::sync::OnceLock::new();

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
    /// server's CPU while they stay idle over a window of `window_ms` (B9).
    IdleTimed { window_ms: u64 },
    /// hyper's HTTP/1.1 hello over `conns` keep-alive connections, one request outstanding on
    /// each (B10).
    Http,
    /// The same at this share of tokio `current_thread`'s B10 throughput (open loop).
    HttpOpen(f64),
    /// The server is a proxy in front of one fixed upstream echo server (see
    /// [`process::UPSTREAM`]); `conns` connections, one request outstanding on each (B11).
    Proxy,
    /// The same proxy, one connection streaming `bytes`-sized writes (B11-bulk).
    ProxyBulk,
}

impl Mode {
    /// The load generator's `WEIR_BENCH_MODE`.
    fn load_env(self) -> Option<&'static str> {
        match self {
            Mode::Echo => None,
            Mode::Churn => Some("churn"),
            Mode::Bulk => Some("bulk"),
            Mode::Udp => Some("udp"),
            Mode::Open(_) => Some("open"),
            Mode::IdleTimed { .. } => Some("idle-timed"),
            Mode::Http => Some("http"),
            Mode::HttpOpen(_) => Some("http-open"),
            Mode::Proxy => None,
            Mode::ProxyBulk => Some("bulk"),
        }
    }

    /// The server proxies to an upstream echo server rather than echoing itself.
    fn proxied(self) -> bool {
        matches!(self, Mode::Proxy | Mode::ProxyBulk)
    }

    /// One stream of large writes: its throughput is also a bandwidth.
    fn bulk(self) -> bool {
        matches!(self, Mode::Bulk | Mode::ProxyBulk)
    }

    /// The server's `WEIR_BENCH_MODE`: it serves the same whatever the load's shape.
    fn server_env(self) -> Option<&'static str> {
        match self {
            Mode::Open(_) => None,
            Mode::Http | Mode::HttpOpen(_) => Some("http"),
            Mode::Proxy | Mode::ProxyBulk => Some("proxy"),
            other => other.load_env(),
        }
    }

    /// The open loops spin by design: never client-bound.
    fn open_loop(self) -> bool {
        matches!(self, Mode::Open(_) | Mode::HttpOpen(_))
    }

    /// Whether `server` sits this mode out (see [`Mode::sits_out`]).
    fn skips(self, server: &str) -> bool {
        self.sits_out(server).is_some()
    }

    /// Why `server` cannot run this mode, if it cannot.
    fn sits_out(self, server: &str) -> Option<&'static str> {
        let floor = FLOORS.iter().any(|(_, floor)| *floor == server);
        match self {
            // The raw epoll floor accepts all its connections before serving any; the io_uring
            // floor's multishot accept serves connections as they come, churn included.
            Mode::Churn if server == "epoll" => {
                Some("it accepts every connection before serving any")
            }
            Mode::IdleTimed { .. } if floor => Some("no timers"),
            Mode::IdleTimed { .. } if server == "compio" => Some("no timed-read server written"),
            Mode::Http | Mode::HttpOpen(_) if floor => Some("no runtime for hyper"),
            // monoio's and compio's hyper glue are crates of their own.
            Mode::Http | Mode::HttpOpen(_) if matches!(server, "monoio" | "compio") => {
                Some("no hyper glue")
            }
            Mode::Proxy | Mode::ProxyBulk if server == "uring-raw" => {
                Some("no proxy written (a splice chain driven on the ring by hand)")
            }
            _ => None,
        }
    }
}

const QUICK: &[Scenario] = &[
    Scenario {
        name: "B1",
        what: "ping-pong, 1 connection, 1 KiB",
        conns: 1,
        bytes: 1024,
        warmup: 300,
        requests: 3_000,
        mode: Mode::Echo,
    },
    Scenario {
        name: "B2",
        what: "50 connections, 1 KiB",
        conns: 50,
        bytes: 1024,
        warmup: 2_000,
        requests: 20_000,
        mode: Mode::Echo,
    },
];

/// Connection churn, a bulk stream, UDP and fixed offered load, in quick mode too. B4 comes
/// after B2, whose tokio `current_thread` throughput sets its rate.
const QUICK_EXTRA: &[Scenario] = &[
    Scenario {
        name: "B4-80%",
        what: "fixed offered load at 80% of tokio-ct's B2 throughput, 50 connections, 1 KiB",
        conns: 50,
        bytes: 1024,
        warmup: 1_000,
        requests: 12_000,
        mode: Mode::Open(0.8),
    },
    Scenario {
        name: "B5",
        what: "bulk stream of 64 KiB writes, 1 connection (req = one 64 KiB chunk echoed)",
        conns: 1,
        bytes: 64 * 1024,
        warmup: 250,
        requests: 2_000,
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
        name: "B7",
        what: "connection churn: connect, one 64 B echo, close (req = one connection)",
        conns: 1,
        bytes: 64,
        warmup: 60,
        requests: 600,
        mode: Mode::Churn,
    },
    // `bytes` is the body of the hello response; the request is bench-load's fixed GET.
    Scenario {
        name: "B10",
        what: "HTTP/1.1 hello (hyper), 50 keep-alive connections",
        conns: 50,
        bytes: 13,
        warmup: 1_500,
        requests: 15_000,
        mode: Mode::Http,
    },
    Scenario {
        name: "B10-50%",
        what: "HTTP/1.1 hello (hyper) at 50% of tokio-ct's B10 throughput, 50 keep-alive connections",
        conns: 50,
        bytes: 13,
        warmup: 800,
        requests: 8_000,
        mode: Mode::HttpOpen(0.5),
    },
    // The figures are the proxy's (CPU, syscalls, allocations); the upstream echo behind it is
    // the same server for every proxy.
    Scenario {
        name: "B11",
        what: "TCP proxy in front of one tokio-ct echo, 50 connections, 1 KiB (Weir: copy loop)",
        conns: 50,
        bytes: 1024,
        warmup: 1_000,
        requests: 10_000,
        mode: Mode::Proxy,
    },
    Scenario {
        name: "B11-bulk",
        what: "TCP proxy in front of one tokio-ct echo, bulk stream of 64 KiB writes, 1 connection \
               (Weir: splice; req = one chunk echoed)",
        conns: 1,
        bytes: 64 * 1024,
        warmup: 200,
        requests: 1_500,
        mode: Mode::ProxyBulk,
    },
];

/// Quick mode counts syscalls (perf attached) in this many of its first rounds; `--full` in
/// every round.
const QUICK_SYSCALL_ROUNDS: usize = 1;

/// `--full` runs quick mode's scenarios with this many times their requests.
const FULL_REQUESTS_FACTOR: u64 = 2;

const FULL_EXTRA: &[Scenario] = &[
    // Beside their quick-mode siblings (B4-80%, B6-64B), outside quick mode's time.
    Scenario {
        name: "B4-50%",
        what: "fixed offered load at 50% of tokio-ct's B2 throughput, 50 connections, 1 KiB",
        conns: 50,
        bytes: 1024,
        warmup: 1_000,
        requests: 10_000,
        mode: Mode::Open(0.5),
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
    // Scale: many connections, each with one 1 KiB request outstanding. The server and the
    // load generator each hold a descriptor per connection, inside a 20,000 open-file limit.
    Scenario {
        name: "B2-1000",
        what: "1,000 connections, 1 KiB",
        conns: 1_000,
        bytes: 1024,
        warmup: 2_500,
        requests: 25_000,
        mode: Mode::Echo,
    },
    Scenario {
        name: "B2-10000",
        what: "10,000 connections, 1 KiB",
        conns: 10_000,
        bytes: 1024,
        warmup: 10_000,
        requests: 40_000,
        mode: Mode::Echo,
    },
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
    mode: Mode::IdleTimed { window_ms: 3_000 },
}];

/// Quick mode measures B9 over a shorter window (`--full`: 3 s) to stay within its time.
const IDLE_TIMED_QUICK_WINDOW_MS: u64 = 1_500;

/// The load generator and the server each hold a descriptor per connection: 5,000 stays well
/// inside a 20,000 open-file limit.
const IDLE_TIMED_FULL: &[Scenario] = &[Scenario {
    name: "B9-5000",
    what: "5,000 idle connections, each in a loop of 25 ms timed reads",
    conns: 5_000,
    ..IDLE_TIMED_QUICK[0]
}];

/// One run's figures; each may be missing, with why (see [`stats::Figure`]).
#[derive(Debug, Clone)]
struct Sample {
    throughput: Figure,
    cpu_us_per_req: Figure,
    syscalls_per_req: Figure,
    allocs_per_req: Figure,
    p50_us: Figure,
    p99_us: Figure,
    p999_us: Figure,
    /// The server's CPU time over the measured phase, as a share of one core.
    utilisation: Figure,
    /// The load generator's thread, not the server, set the pace (see [`stats::client_bound`]).
    client_bound: bool,
}

/// How to read one figure of a [`Sample`].
type Metric = fn(&Sample) -> &Figure;

const THROUGHPUT: Metric = |s| &s.throughput;
const CPU_PER_REQ: Metric = |s| &s.cpu_us_per_req;
const SYSCALLS: Metric = |s| &s.syscalls_per_req;
const ALLOCS: Metric = |s| &s.allocs_per_req;
const P99: Metric = |s| &s.p99_us;
const UTILISATION: Metric = |s| &s.utilisation;

impl Sample {
    /// Reads the load generator's `key=value` figures; a key it did not print, or printed as
    /// no number, is a missing figure.
    fn parse(output: &str, open_loop: bool) -> Sample {
        let fields: BTreeMap<&str, &str> = output
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let num = |key: &str| -> Figure {
            let value = fields
                .get(key)
                .ok_or_else(|| format!("bench-load printed no {key}"))?;
            match value.parse::<f64>() {
                Ok(v) => measured(v, &format!("{key}={value}")),
                Err(_) if key == "syscalls" && *value == "off" => {
                    Err("not counted in this round".to_string())
                }
                Err(_) if key == "syscalls" => Err("perf counted nothing".to_string()),
                Err(_) => Err(format!("{key}={value}")),
            }
        };
        let requests = num("requests").and_then(|r| {
            if r > 0.0 {
                Ok(r)
            } else {
                Err("no requests".to_string())
            }
        });
        let elapsed_ns = num("elapsed_ns");
        let per_request = |figure: Figure, scale: f64| -> Figure {
            measured(figure? / scale / requests.clone()?, "no requests")
        };
        let micros = |key: &str| num(key).map(|ns| ns / 1e3);
        // Behind a proxy, the upstream echo shares the load generator's core: their CPU
        // together is what the client side spent.
        let client_side_cpu = if fields.contains_key("upstream_cpu_ns") {
            num("client_cpu_ns").and_then(|c| Ok(c + num("upstream_cpu_ns")?))
        } else {
            num("client_cpu_ns")
        };
        Sample {
            throughput: requests
                .clone()
                .and_then(|r| measured(r / (elapsed_ns.clone()? / 1e9), "an empty measured phase")),
            cpu_us_per_req: per_request(num("server_cpu_ns"), 1e3),
            syscalls_per_req: per_request(num("syscalls"), 1.0),
            allocs_per_req: per_request(num("allocs"), 1.0),
            p50_us: micros("p50_ns"),
            p99_us: micros("p99_ns"),
            p999_us: micros("p999_ns"),
            utilisation: num("server_cpu_ns")
                .and_then(|cpu| measured(cpu / elapsed_ns.clone()?, "an empty measured phase")),
            client_bound: stats::client_bound(open_loop, &client_side_cpu, &elapsed_ns),
        }
    }
}

/// One scenario's runs: by server, one per round in round order (`Err`: why the run failed).
type Runs = BTreeMap<&'static str, Vec<Result<Sample, String>>>;

/// `metric` of each of `runs`, a failed run as a missing figure.
fn figures(runs: &[Result<Sample, String>], metric: Metric) -> Vec<Figure> {
    figures_where(runs, metric, |_| true)
}

/// As [`figures`], counting only the rounds `keep` accepts (the others are missing).
fn figures_where(
    runs: &[Result<Sample, String>],
    metric: Metric,
    keep: fn(&Sample) -> bool,
) -> Vec<Figure> {
    runs.iter()
        .map(|run| match run {
            Ok(sample) if keep(sample) => metric(sample).clone(),
            Ok(_) => Err("left out".to_string()),
            Err(_) => Err("run failed".to_string()),
        })
        .collect()
}

/// The median of `server`'s `metric` over the rounds.
fn median_figure(runs: &Runs, server: &str, metric: Metric) -> Figure {
    let list = runs.get(server).ok_or_else(|| "no run".to_string())?;
    stats::median_of(&figures(list, metric))
}

/// `server`'s `metric` against `base`'s, paired by round.
fn paired(runs: &Runs, server: &str, base: &str, metric: Metric) -> Option<Interval> {
    paired_where(runs, server, base, metric, |_| true)
}

/// As [`paired`], over the rounds in which `keep` accepts both samples.
fn paired_where(
    runs: &Runs,
    server: &str,
    base: &str,
    metric: Metric,
    keep: fn(&Sample) -> bool,
) -> Option<Interval> {
    let mine = figures_where(runs.get(server)?, metric, keep);
    let theirs = figures_where(runs.get(base)?, metric, keep);
    Interval::of(&stats::paired_ratios(&mine, &theirs))
}

/// The throughput ratio over the rounds in which neither side was client-bound: a round the
/// client paced says nothing about the server's throughput.
fn server_bound_throughput(runs: &Runs, server: &str, base: &str) -> Option<Interval> {
    paired_where(runs, server, base, THROUGHPUT, |s| !s.client_bound)
}

/// User instructions per request, by scenario and server (see [`instructions`]).
type Counted = BTreeMap<String, BTreeMap<&'static str, Figure>>;

/// What the run was, for the table's and the chart's headers.
#[derive(Debug, Clone)]
struct RunInfo {
    machine: String,
    kernel: String,
    rustc: String,
    commit: String,
    date: String,
    rounds: usize,
    full: bool,
}

impl RunInfo {
    fn collect(rounds: usize, full: bool) -> RunInfo {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(|| "unknown CPU".to_string(), |m| m.trim().to_string());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let quiet = |command: &mut Command| {
            cmd::output(command.stderr(std::process::Stdio::null()))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let mut commit = quiet(Command::new("git").current_dir(cmd::root()).args([
            "rev-parse",
            "--short",
            "HEAD",
        ]));
        let dirty = !quiet(Command::new("git").current_dir(cmd::root()).args([
            "status",
            "--porcelain",
            "--untracked-files=no",
        ]))
        .is_empty();
        if commit.is_empty() {
            commit = "unknown commit".to_string();
        } else if dirty {
            commit.push_str("+changes");
        }
        RunInfo {
            machine: format!("{cpu}, {cores} CPUs"),
            kernel: format!("Linux {}", read("/proc/sys/kernel/osrelease").trim()),
            rustc: quiet(Command::new("rustc").arg("--version")),
            commit,
            date: quiet(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            rounds,
            full,
        }
    }

    /// The lines heading the table and the chart.
    fn header(&self) -> Vec<String> {
        vec![
            format!(
                "{} · {} · {} · commit {} · {}",
                self.machine, self.kernel, self.rustc, self.commit, self.date
            ),
            format!(
                "{} rounds ({}), interleaved; ratios vs {BASELINE} paired by round, median {}",
                self.rounds,
                if self.full { "--full" } else { "quick" },
                stats::Spread::for_rounds(self.rounds).describe()
            ) + if self.full {
                "; syscalls counted in every round"
            } else {
                "; syscalls counted in the first round only (perf costs a fifth of a second a run)"
            },
            process::pinning_line(),
        ]
    }
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
    let mut chosen: Vec<Scenario> = QUICK.iter().chain(QUICK_EXTRA).copied().collect();
    if full {
        // Twice quick mode's requests per round (its sizes are set by its time budget); the
        // scenarios only `--full` runs are sized for it already.
        for scenario in chosen.iter_mut().filter(|s| s.requests > 0) {
            scenario.requests *= FULL_REQUESTS_FACTOR;
            scenario.warmup *= FULL_REQUESTS_FACTOR;
        }
        chosen.extend(FULL_EXTRA.iter().copied());
    }
    chosen.retain(|s| picked(s.name));
    let scenarios: Vec<&Scenario> = chosen.iter().collect();
    if picked("B4") && !picked("B2") {
        bail!("B4's offered load is a share of B2's tokio-ct throughput: pick B2 with B4");
    }
    if picked("B10-50%") && !picked("B10") {
        bail!("B10-50%'s offered load is a share of B10's tokio-ct throughput: pick B10");
    }
    let started = Instant::now();
    let mut results: BTreeMap<&str, Runs> = BTreeMap::new();
    for scenario in &scenarios {
        for round in 0..rounds {
            // Rotate the order so no server always runs first (warm caches, thermal state).
            for offset in 0..SERVERS.len() {
                let server = SERVERS[(round + offset) % SERVERS.len()];
                if scenario.mode.skips(server) {
                    continue;
                }
                let open_loop = scenario.mode.open_loop();
                // Syscall counts are steady from round to round and perf costs a fifth of a
                // second a run: quick mode counts them in its first round only.
                let probe = if full || round < QUICK_SYSCALL_ROUNDS {
                    Probe::Syscalls
                } else {
                    Probe::Nothing
                };
                let run = run_server(&bin, server, scenario, probe)
                    .map(|output| Sample::parse(&output, open_loop))
                    .map_err(|e| {
                        let why = format!("{e:#}");
                        eprintln!("bench: {} on {server} failed: {why}", scenario.name);
                        why
                    });
                results
                    .entry(scenario.name)
                    .or_default()
                    .entry(server)
                    .or_default()
                    .push(run);
            }
        }
        for (closed, rate) in [("B2", &TOKIO_MAX), ("B10", &TOKIO_HTTP_MAX)] {
            if scenario.name == closed {
                if let Some(Ok(max)) = results
                    .get(closed)
                    .map(|runs| median_figure(runs, BASELINE, THROUGHPUT))
                {
                    let _ = rate.set(max);
                }
            }
        }
        eprintln!(
            "bench: {} done after {:.0} s",
            scenario.name,
            started.elapsed().as_secs_f64()
        );
    }
    let wrk = if full && picked("B10") {
        Some(wrk_cross_check(&bin, &results))
    } else {
        None
    };
    let counted = match cmd::ensure_apt_program("callgrind_control", "valgrind") {
        Ok(()) => Ok(instructions(&bin, &scenarios)),
        Err(why) => Err(why),
    };
    let idle_memory = if picked("B8") {
        Some(idle::idle_memory(&bin, full))
    } else {
        None
    };
    let idle_timed = if picked("B9") {
        idle::idle_timed_reads(&bin, full)
    } else {
        Vec::new()
    };
    eprintln!(
        "bench: all done after {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let info = RunInfo::collect(rounds, full);
    let header = info.header();
    let mut out = String::new();
    for line in &header {
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(&report::summary(&scenarios, &results, &counted));
    out.push_str(&report::tables(&scenarios, &results, perf.is_ok()));
    out.push_str(&instructions_table(&counted));
    if let Some(memory) = &idle_memory {
        out.push_str(&idle::idle_memory_table(memory));
    }
    out.push_str(&idle::idle_timed_table(&idle_timed));
    if let Some((table, _)) = &wrk {
        out.push_str(table);
    }
    println!("{out}");
    let mut document = report::json(
        &info,
        &scenarios,
        &results,
        &counted,
        idle_memory.as_ref(),
        &idle_timed,
        &out,
    );
    let chart = chart::Chart::from_run(
        &header,
        &scenarios,
        &results,
        &counted,
        idle_memory.as_ref(),
        &idle_timed,
    );
    if let Some((_, figures)) = wrk {
        document["b10_wrk_cross_check"] = figures;
    }
    write_outputs(&document, &chart.render())?;
    println!(
        "\nThe raw epoll floor sits out B7 (it accepts every connection before serving any); \
         the raw io_uring floor runs it. Both floors and compio sit out B9 (no timed-read server); \
         monoio, compio and the floors sit out B10 (no hyper glue); the raw io_uring floor sits \
         out B11 (no proxy written)."
    );
    if micro {
        run_micro(full)?;
    }
    let failures = process::server_failures();
    if !failures.is_empty() {
        eprintln!("bench: FAILED: a server crashed or hung:");
        for failure in &failures {
            eprintln!("  {failure}");
        }
        return Ok(false);
    }
    Ok(true)
}

/// `--full`'s cross-check of B10: the same servers driven by `wrk` (installed with apt where it
/// is missing), one run each, beside bench-load's median requests/s; the table and its JSON.
fn wrk_cross_check(bin: &std::path::Path, results: &BTreeMap<&str, Runs>) -> (String, Value) {
    const SECONDS: u64 = 5;
    let Some(scenario) = QUICK_EXTRA.iter().find(|s| s.mode == Mode::Http) else {
        return (String::new(), Value::Null);
    };
    if let Err(reason) = cmd::ensure_apt_program("wrk", "wrk") {
        let why = format!("{reason}: no cross-check of B10");
        return (
            format!("\n{why}\n"),
            serde_json::json!({ "not_measured": why }),
        );
    }
    let mut out = format!(
        "\nB10 cross-check: wrk -t1 -c{} -d{SECONDS}s against the same servers (one run each), \
         beside bench-load's median\n{:<11} {:>16} {:>18}\n",
        scenario.conns, "server", "wrk req/s", "bench-load req/s"
    );
    let mut figures = serde_json::Map::new();
    for server in SERVERS.iter().filter(|s| !scenario.mode.skips(s)) {
        let wrk = process::run_wrk(bin, server, scenario, SECONDS).map_err(|e| {
            eprintln!("bench: wrk on {server} failed: {e:#}");
            "run failed".to_string()
        });
        let ours = results.get(scenario.name).map_or_else(
            || Err("no run".to_string()),
            |runs| median_figure(runs, server, THROUGHPUT),
        );
        out.push_str(&format!(
            "{server:<11} {:>16} {:>18}\n",
            stats::cell(&wrk, 0),
            stats::cell(&ours, 0)
        ));
        figures.insert(
            (*server).to_string(),
            serde_json::json!({ "wrk_rps": stats::to_json(&wrk), "bench_load_rps": stats::to_json(&ours) }),
        );
    }
    (out, Value::Object(figures))
}

/// Writes `results.json` and `summary.svg` to `target/bench`, and `summary.png` beside them
/// where a renderer (`rsvg-convert` or ImageMagick's `convert`) is installed.
fn write_outputs(document: &Value, svg: &str) -> Result<()> {
    let dir = cmd::root().join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let json_path = dir.join("results.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(document)?)?;
    let svg_path = dir.join("summary.svg");
    std::fs::write(&svg_path, svg)?;
    println!("\nwrote {} and {}", json_path.display(), svg_path.display());
    let png_path = dir.join("summary.png");
    let (svg_arg, png_arg) = (
        svg_path.display().to_string(),
        png_path.display().to_string(),
    );
    let installed = cmd::ensure_apt_program("rsvg-convert", "librsvg2-bin");
    let rendered = cmd::succeeds("rsvg-convert", &["-o", &png_arg, &svg_arg])
        || cmd::succeeds("convert", &[&svg_arg, &png_arg]);
    match (rendered, installed) {
        (true, _) => println!("wrote {}", png_path.display()),
        (false, Err(why)) => println!("no PNG: no SVG renderer ({why})"),
        (false, Ok(())) => println!("no PNG: rsvg-convert failed on {}", svg_path.display()),
    }
    Ok(())
}

/// User-space instructions per request, from callgrind: deterministic, so one run per server
/// and scenario. Fewer requests than the timed runs (callgrind is ~50x slower), after a warm-up.
fn instructions(bin: &std::path::Path, scenarios: &[&Scenario]) -> Counted {
    let mut table = Counted::new();
    for scenario in scenarios
        .iter()
        .filter(|s| matches!(s.name, "B1" | "B2" | "B6-64B" | "B10"))
    {
        let short = Scenario {
            warmup: 200,
            requests: 600,
            ..**scenario
        };
        for server in SERVERS {
            if scenario.mode.skips(server) {
                table
                    .entry(scenario.name.to_string())
                    .or_default()
                    .insert(server, Err("sat out".to_string()));
                continue;
            }
            let prefix = format!("/dev/shm/weir-callgrind-{}-{server}", std::process::id());
            let per_request = match run_server(bin, server, &short, Probe::Instructions(&prefix)) {
                Ok(_) => callgrind_dump(&prefix)
                    .ok_or_else(|| "no callgrind dump".to_string())
                    .and_then(|dump| measured(dump / short.requests as f64, "no callgrind dump")),
                Err(e) => {
                    eprintln!(
                        "bench: callgrind {} on {server} failed: {e:#}",
                        scenario.name
                    );
                    Err("run failed".to_string())
                }
            };
            cleanup_prefix(&prefix);
            table
                .entry(scenario.name.to_string())
                .or_default()
                .insert(server, per_request);
        }
        eprintln!("bench: {} instructions counted", scenario.name);
    }
    table
}

/// The table of instructions per request, with ratios against tokio `current_thread`.
fn instructions_table(counted: &Result<Counted, String>) -> String {
    let mut out = String::from(
        "\nuser-space instructions per request (callgrind, counters zeroed after a warm-up; \
         one run each, deterministic)\n",
    );
    let table = match counted {
        Ok(table) => table,
        Err(why) => {
            out.push_str(&format!("  n/a ({why})\n"));
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
        let baseline = row.get(BASELINE).and_then(|f| f.as_ref().ok());
        for server in SERVERS {
            let cell = match (row.get(*server), baseline) {
                (Some(Ok(n)), Some(base)) => format!("{n:.0} ({:.2}x)", n / base),
                (Some(Ok(n)), None) => format!("{n:.0}"),
                (Some(Err(why)), _) => format!("n/a ({why})"),
                (None, _) => "n/a (no run)".to_string(),
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

    const LINE: &str = "pin=ok\nrequests=1000 elapsed_ns=1000000000 server_cpu_ns=500000000 \
                        client_cpu_ns=600000000 allocs=2000 syscalls=off p50_ns=1000 \
                        p99_ns=2000 p999_ns=3000";

    #[test]
    fn a_figures_line_is_read_and_a_missing_or_unnumbered_key_is_a_missing_figure() {
        let sample = Sample::parse(LINE, false);
        assert_eq!(sample.throughput, Ok(1000.0));
        assert_eq!(sample.cpu_us_per_req, Ok(500.0));
        assert_eq!(sample.allocs_per_req, Ok(2.0));
        assert_eq!(sample.p99_us, Ok(2.0));
        assert_eq!(sample.utilisation, Ok(0.5));
        assert_eq!(
            sample.syscalls_per_req,
            Err("not counted in this round".to_string())
        );
        assert!(!sample.client_bound, "the client was busy 60% of the time");
        let cut = Sample::parse("requests=1000 elapsed_ns=x", false);
        assert_eq!(cut.throughput, Err("elapsed_ns=x".to_string()));
        assert_eq!(
            cut.cpu_us_per_req,
            Err("bench-load printed no server_cpu_ns".to_string())
        );
    }

    #[test]
    fn behind_a_proxy_the_upstream_s_cpu_counts_on_the_client_side() {
        // 60% load generator + 35% upstream on one core: that side set the pace.
        let proxied = format!("{LINE} upstream_cpu_ns=350000000");
        assert!(Sample::parse(&proxied, false).client_bound);
        let unreadable = format!("{LINE} upstream_cpu_ns=na");
        assert!(!Sample::parse(&unreadable, false).client_bound);
        // The proxy's own figures are untouched by the upstream's.
        assert_eq!(Sample::parse(&proxied, false).cpu_us_per_req, Ok(500.0));
    }

    #[test]
    fn the_proxy_scenarios_run_every_server_but_the_raw_io_uring_floor_and_say_why() {
        let proxies: Vec<&Scenario> = QUICK_EXTRA.iter().filter(|s| s.mode.proxied()).collect();
        let names: Vec<&str> = proxies.iter().map(|s| s.name).collect();
        assert_eq!(names, ["B11", "B11-bulk"]);
        for scenario in proxies {
            assert_eq!(scenario.mode.server_env(), Some("proxy"));
            for server in SERVERS {
                let why = scenario.mode.sits_out(server);
                assert_eq!(why.is_some(), *server == "uring-raw", "{server}: {why:?}");
            }
        }
        assert!(Mode::ProxyBulk.bulk() && Mode::Bulk.bulk() && !Mode::Proxy.bulk());
        assert_eq!(Mode::ProxyBulk.load_env(), Some("bulk"));
        assert_eq!(Mode::Proxy.load_env(), None);
    }
}
