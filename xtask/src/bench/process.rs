//! Running one benchmark round: a `bench-server` and the `bench-load` that drives it. The
//! server is owned by a guard that kills and reaps it whatever happens to the round; how the
//! machinery went (a pin that did not hold, a server that crashed or hung) is kept in
//! [`Health`] for the run's header and its exit status.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Mode, Scenario, TOKIO_HTTP_MAX, TOKIO_MAX};

/// The CPU every server but tokio `multi_thread` pins itself to (the load generator takes 0).
const SERVER_CPU: &str = "1";

/// B11's upstream behind every proxy: one fixed echo server (`bench-server` in this mode),
/// pinned beside the load generator so the proxy has CPU 1 to itself.
pub(super) const UPSTREAM: &str = "tokio-ct";
const UPSTREAM_CPU: &str = "0";
/// How the upstream is named in failures and pin reports.
const UPSTREAM_NAME: &str = "the upstream tokio-ct echo";

/// What went wrong with the machinery, not the figures, during a run.
#[derive(Debug)]
pub(super) struct Health {
    /// Each pin that did not hold, once per process kind and reason.
    pub(super) pin_failures: BTreeSet<String>,
    /// Each server that crashed or had to be killed: which, in which scenario, how.
    pub(super) server_failures: Vec<String>,
}

pub(super) static HEALTH: Mutex<Health> = Mutex::new(Health {
    pin_failures: BTreeSet::new(),
    server_failures: Vec::new(),
});

fn health() -> std::sync::MutexGuard<'static, Health> {
    HEALTH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The header line about CPU pinning: every pin held, or which did not.
pub(super) fn pinning_line() -> String {
    let failures = &health().pin_failures;
    if failures.is_empty() {
        format!(
            "CPU pinning: servers on CPU {SERVER_CPU}, load generator on CPU 0, in every run \
             (tokio-mt has two workers and is not pinned; B11's upstream echo on CPU \
             {UPSTREAM_CPU})"
        )
    } else {
        let list: Vec<&str> = failures.iter().map(String::as_str).collect();
        format!("CPU pinning FAILED: {}", list.join("; "))
    }
}

/// The servers that crashed or hung during the run (empty if none did).
pub(super) fn server_failures() -> Vec<String> {
    health().server_failures.clone()
}

/// A running `bench-server`, killed (if still running) and reaped when dropped: a round that
/// fails half-way leaves no process behind.
struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    /// Waits up to `within` for the server to exit on its own, as it does once its connections
    /// have closed; if it does not, kills it. `Err` says how it ended badly.
    fn finish(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("crashed ({status})")),
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "did not exit within {} s of the load ending, killed",
                        within.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                Err(e) => return Err(format!("could not be waited for ({e})")),
            }
        }
    }

    /// How the server ended, if it already has and not cleanly.
    fn crashed(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) if !status.success() => Some(format!("crashed ({status})")),
            _ => None,
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// Records a server failure for the run's exit status and returns the error for the round.
fn server_failed(server: &str, scenario: &Scenario, how: &str) -> anyhow::Error {
    health()
        .server_failures
        .push(format!("{server} in {}: {how}", scenario.name));
    anyhow::anyhow!("the server {how}")
}

/// Starts `server` for `scenario` (under callgrind with an output prefix) and waits for the
/// port it listens on; its pin is checked. A proxy scenario's server proxies to `upstream`.
fn start_server(
    bin: &Path,
    server: &str,
    scenario: &Scenario,
    callgrind: Option<&str>,
    alloc_file: &str,
    upstream: Option<u16>,
) -> Result<(ServerProcess, u16)> {
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
    if let Some(mode) = scenario.mode.server_env() {
        command.env("WEIR_BENCH_MODE", mode);
    }
    if let Some(port) = upstream {
        command.env("WEIR_BENCH_UPSTREAM", format!("127.0.0.1:{port}"));
    }
    if scenario.mode == Mode::Proxy {
        // 1 KiB messages: Weir's copy loop costs less than its splice (bulk streams: the
        // reverse; see BENCHMARKS.md).
        command.env("WEIR_BENCH_PROXY_COPY", "1");
    }
    command.args([server, &server_conns.to_string(), alloc_file]);
    listening(command, server, scenario, SERVER_CPU)
}

/// Spawns `command` (a `bench-server`, named `server` in failures) and waits for the port it
/// prints; checks that it is pinned to `cpu`.
fn listening(
    mut command: Command,
    server: &str,
    scenario: &Scenario,
    cpu: &str,
) -> Result<(ServerProcess, u16)> {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {server}"))?;
    let mut process = ServerProcess { child };
    let mut port = String::new();
    let stdout = process.child.stdout.take().context("server stdout")?;
    BufReader::new(stdout).read_line(&mut port)?;
    let Ok(port) = port.trim().parse::<u16>() else {
        let how = process
            .finish(Duration::from_secs(2))
            .err()
            .unwrap_or_else(|| "exited before listening".to_string());
        return Err(server_failed(server, scenario, &how));
    };
    check_server_pin(server, process.child.id(), cpu);
    Ok((process, port))
}

/// Starts B11's upstream: [`UPSTREAM`]'s echo server for `conns` connections, pinned to
/// [`UPSTREAM_CPU`]; its port. The same server stands behind every proxy.
fn start_upstream(
    bin: &Path,
    scenario: &Scenario,
    conns: usize,
    alloc_file: &str,
) -> Result<(ServerProcess, u16)> {
    // A plain echo server whatever the load's shape (no `WEIR_BENCH_MODE`).
    let mut command = Command::new(bin.join("bench-server"));
    command
        .env("WEIR_BENCH_CPU", UPSTREAM_CPU)
        .args([UPSTREAM, &conns.to_string(), alloc_file]);
    listening(command, UPSTREAM_NAME, scenario, UPSTREAM_CPU)
}

/// `--full`'s cross-check of B10 with `wrk` (one thread, the scenario's connections, pinned
/// to the load generator's CPU where `taskset` exists) for `seconds`: wrk's requests/s.
pub(super) fn run_wrk(bin: &Path, server: &str, scenario: &Scenario, seconds: u64) -> Result<f64> {
    let alloc_file = format!("/dev/shm/weir-bench-wrk-{}-{server}", std::process::id());
    let (mut process, port) = start_server(bin, server, scenario, None, &alloc_file, None)?;
    let mut wrk = if cmd_exists("taskset") {
        let mut command = Command::new("taskset");
        command.args(["-c", "0", "wrk"]);
        command
    } else {
        Command::new("wrk")
    };
    let output = wrk
        .args([
            "-t1".to_string(),
            format!("-c{}", scenario.conns),
            format!("-d{seconds}s"),
            format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .context("run wrk")?;
    let _ = std::fs::remove_file(&alloc_file);
    if let Err(how) = process.finish(Duration::from_secs(10)) {
        return Err(server_failed(server, scenario, &how));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    wrk_requests_per_second(&stdout)
        .with_context(|| format!("wrk printed no Requests/sec: {stdout}"))
}

/// Whether `program` is on the `PATH`.
pub(super) fn cmd_exists(program: &str) -> bool {
    crate::cmd::succeeds("sh", &["-c", &format!("command -v {program}")])
}

/// The `Requests/sec:` figure of wrk's report.
fn wrk_requests_per_second(report: &str) -> Option<f64> {
    report
        .lines()
        .find_map(|line| line.trim().strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
}

/// What a round measures beyond the load generator's own figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Probe<'a> {
    /// Nothing more.
    Nothing,
    /// The server's syscalls, with `perf stat` attached for the counted requests.
    Syscalls,
    /// The server's instructions: it runs under `valgrind --tool=callgrind` (this output-file
    /// prefix), and the generator zeroes its counters after the warm-up and dumps them after
    /// the counted requests.
    Instructions(&'a str),
}

/// Starts `server`, runs the load generator against it with `probe`, and returns the
/// generator's output (`key=value` figures).
pub(super) fn run_server(
    bin: &Path,
    server: &str,
    scenario: &Scenario,
    probe: Probe<'_>,
) -> Result<String> {
    let callgrind = match probe {
        Probe::Instructions(prefix) => Some(prefix),
        _ => None,
    };
    let alloc_file = format!("/dev/shm/weir-bench-{}-{server}", std::process::id());
    // A proxy scenario: the upstream first (its own guard reaps it), then the proxy under test.
    let upstream_alloc_file = format!("{alloc_file}-upstream");
    let upstream = if scenario.mode.proxied() {
        Some(start_upstream(
            bin,
            scenario,
            scenario.conns,
            &upstream_alloc_file,
        )?)
    } else {
        None
    };
    let upstream_port = upstream.as_ref().map(|(_, port)| *port);
    let (mut process, port) =
        start_server(bin, server, scenario, callgrind, &alloc_file, upstream_port)?;

    let mut load = Command::new(bin.join("bench-load"));
    if let Some((upstream, _)) = &upstream {
        load.env("WEIR_BENCH_UPSTREAM_PID", upstream.child.id().to_string());
    }
    match probe {
        Probe::Instructions(_) => {
            load.env("WEIR_BENCH_CALLGRIND", "1");
        }
        Probe::Nothing => {
            load.env("WEIR_BENCH_NO_PERF", "1");
        }
        Probe::Syscalls => {}
    }
    if let Some(mode) = scenario.mode.load_env() {
        load.env("WEIR_BENCH_MODE", mode);
    }
    if let Mode::IdleTimed { window_ms } = scenario.mode {
        load.env("WEIR_BENCH_IDLE_WINDOW_MS", window_ms.to_string());
    }
    let rate = match scenario.mode {
        Mode::Open(share) => Some((share, &TOKIO_MAX, "B4 needs B2's tokio-ct throughput")),
        Mode::HttpOpen(share) => Some((
            share,
            &TOKIO_HTTP_MAX,
            "B10-50% needs B10's tokio-ct throughput",
        )),
        _ => None,
    };
    if let Some((share, max, why)) = rate {
        let max = max.get().copied().context(why)?;
        load.env("WEIR_BENCH_RATE", format!("{:.0}", max * share));
    }
    let output = load
        .args([
            &port.to_string(),
            &scenario.conns.to_string(),
            &scenario.bytes.to_string(),
            &scenario.warmup.to_string(),
            &scenario.requests.to_string(),
            &process.child.id().to_string(),
            &alloc_file,
        ])
        .output()
        .context("run bench-load")?;
    let _ = std::fs::remove_file(&alloc_file);
    let _ = std::fs::remove_file(&upstream_alloc_file);
    if !output.status.success() {
        // A load generator that failed may leave a server waiting for connections that never
        // come: that one is killed (by the guard), not blamed; one that already died is.
        if let Some(how) = process.crashed() {
            return Err(server_failed(server, scenario, &how));
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let why = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        bail!("bench-load failed ({}): {why}", output.status);
    }
    let within = Duration::from_secs(if callgrind.is_some() { 60 } else { 10 });
    if let Err(how) = process.finish(within) {
        return Err(server_failed(server, scenario, &how));
    }
    // The proxy has closed every upstream connection: the upstream exits too.
    if let Some((mut upstream, _)) = upstream {
        if let Err(how) = upstream.finish(within) {
            return Err(server_failed(UPSTREAM_NAME, scenario, &how));
        }
    }
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    check_client_pin(&stdout);
    Ok(stdout)
}

/// Records a failed pin unless the server's main thread may run on `cpu` alone.
fn check_server_pin(server: &str, pid: u32, cpu: &str) {
    if server == "tokio-mt" {
        return;
    }
    let allowed = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|list| list.trim().to_string())
        });
    match allowed.as_deref() {
        Some(list) if list == cpu => {}
        Some(list) => {
            health()
                .pin_failures
                .insert(format!("{server} runs on CPUs {list}, not CPU {cpu}"));
        }
        None => {
            health()
                .pin_failures
                .insert(format!("{server}'s affinity could not be read from /proc"));
        }
    }
}

/// Records a failed pin if the load generator says so (its `pin=` token).
fn check_client_pin(output: &str) {
    let token = output
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("pin="));
    match token {
        Some("ok") => {}
        Some(failure) => {
            health()
                .pin_failures
                .insert(format!("load generator on CPU 0: {failure}"));
        }
        None => {
            health()
                .pin_failures
                .insert("the load generator did not say whether it was pinned".to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_dies_is_reported_and_one_that_hangs_is_killed_and_reaped() {
        let child = Command::new("sh")
            .args(["-c", "kill -SEGV $$"])
            .spawn()
            .expect("sh");
        let mut process = ServerProcess { child };
        let how = process.finish(Duration::from_secs(10)).expect_err("crash");
        assert!(how.starts_with("crashed"), "{how}");

        let child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        let mut process = ServerProcess { child };
        let how = process.finish(Duration::ZERO).expect_err("hang");
        assert!(how.contains("killed"), "{how}");
        drop(process);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(!status.contains("zombie"), "reaped: {status}");

        let child = Command::new("true").spawn().expect("true");
        let mut process = ServerProcess { child };
        assert_eq!(process.finish(Duration::from_secs(10)), Ok(()));
    }

    #[test]
    fn wrk_s_rate_is_read_from_its_report() {
        let report = "Running 3s test @ http://127.0.0.1:4000/\n  1 threads and 50 connections\n  \
                      Thread Stats   Avg      Stdev     Max   +/- Stdev\n    Latency   612.00us\n  \
                      151234 requests in 3.00s, 12.6MB read\nRequests/sec:  50411.33\n\
                      Transfer/sec:      4.21MB\n";
        assert_eq!(wrk_requests_per_second(report), Some(50411.33));
        assert_eq!(wrk_requests_per_second("no figures"), None);
    }

    #[test]
    fn a_dropped_guard_kills_and_reaps_its_server() {
        let child = Command::new("sleep").arg("30").spawn().expect("sleep");
        let pid = child.id();
        drop(ServerProcess { child });
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        assert!(
            !status.contains("zombie") && !status.contains("sleeping"),
            "{status}"
        );
    }
}
