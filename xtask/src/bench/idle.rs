//! The scenarios with no requests to count: B8 (the server's resident memory per idle
//! connection) and B9 (the server's CPU while idle connections sit in a loop of timed reads).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use super::process::{Probe, run_server};
use super::stats::{Figure, Interval, cell};
use super::{
    BASELINE, IDLE_TIMED_FULL, IDLE_TIMED_QUICK, IDLE_TIMED_QUICK_WINDOW_MS, Mode, SERVERS,
    Scenario,
};

/// B8's figures: the server's resident memory per idle connection.
pub(super) struct IdleMemory {
    pub(super) scenario: Scenario,
    /// Bytes per connection, by server in [`SERVERS`] order.
    pub(super) figures: Vec<(&'static str, Figure)>,
}

/// B8: idle connections that send nothing; quick mode opens fewer to stay within its time.
fn idle_memory_scenario(full: bool) -> Scenario {
    let (conns, what) = if full {
        (10_000, "10,000 idle connections")
    } else {
        (2_000, "2,000 idle connections (10,000 with --full)")
    };
    Scenario {
        name: "B8",
        what,
        conns,
        bytes: 0,
        warmup: 0,
        requests: 0,
        mode: Mode::Echo,
    }
}

/// B8: the server's resident memory per idle connection, once per server (a count of bytes,
/// not a timing: one run is enough).
pub(super) fn idle_memory(bin: &Path, full: bool) -> IdleMemory {
    let scenario = idle_memory_scenario(full);
    let mut figures = Vec::new();
    for server in SERVERS {
        let per_conn = run_server(bin, server, &scenario, Probe::Nothing)
            .map_err(|e| {
                eprintln!("bench: B8 on {server} failed: {e:#}");
                "run failed".to_string()
            })
            .and_then(|output| {
                output
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("idle_bytes_per_conn="))
                    .and_then(|v| v.parse::<f64>().ok())
                    .ok_or_else(|| "bench-load printed no idle_bytes_per_conn".to_string())
            });
        figures.push((*server, per_conn));
    }
    IdleMemory { scenario, figures }
}

/// B8's table: bytes per connection and the ratio to tokio `current_thread`.
pub(super) fn idle_memory_table(memory: &IdleMemory) -> String {
    let mut out = format!(
        "\nB8 - {} (server resident memory per connection, one run each)\n{:<11} {:>14} {:>18}\n",
        memory.scenario.what, "server", "bytes/conn", "ratio vs tokio-ct"
    );
    let base = memory
        .figures
        .iter()
        .find(|(s, _)| *s == BASELINE)
        .and_then(|(_, f)| f.as_ref().ok().copied());
    for (server, per_conn) in &memory.figures {
        let ratio = match (per_conn, base) {
            (Ok(v), Some(b)) if b > 0.0 => format!("{:.2}", v / b),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "{server:<11} {:>14} {ratio:>18}\n",
            cell(per_conn, 0)
        ));
    }
    out
}

/// One B9 run's figures.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct IdleTimedSample {
    /// Server CPU time over the measured window, in % of one core.
    cpu_percent: f64,
    /// Resident memory the server gained per connection, by the end of the window.
    pub(super) bytes_per_conn: f64,
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
pub(super) struct IdleTimedResult {
    pub(super) scenario: Scenario,
    pub(super) runs: BTreeMap<&'static str, Vec<Result<IdleTimedSample, String>>>,
}

impl IdleTimedResult {
    pub(super) fn samples(&self, server: &str) -> impl Iterator<Item = &IdleTimedSample> {
        self.runs.get(server).into_iter().flatten().flatten()
    }

    fn median(&self, server: &str, metric: fn(&IdleTimedSample) -> f64) -> Option<f64> {
        let values: Vec<f64> = self.samples(server).map(metric).collect();
        super::stats::median(&values)
    }

    /// Median of `server`'s per-round CPU ratios against tokio `current_thread` (rounds where
    /// both ran), with its spread.
    pub(super) fn cpu_ratio(&self, server: &str) -> Option<Interval> {
        let mine = self.runs.get(server)?;
        let base = self.runs.get(BASELINE)?;
        let ratios: Vec<f64> = mine
            .iter()
            .zip(base)
            .filter_map(|(m, b)| Some(m.as_ref().ok()?.cpu_percent / b.as_ref().ok()?.cpu_percent))
            .collect();
        Interval::of(&ratios)
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
pub(super) fn idle_timed_reads(bin: &Path, full: bool) -> Vec<IdleTimedResult> {
    let rounds = if full { 4 } else { 3 };
    let mut scenarios: Vec<Scenario> = IDLE_TIMED_QUICK.to_vec();
    if full {
        scenarios.extend(IDLE_TIMED_FULL);
    } else {
        for scenario in &mut scenarios {
            scenario.mode = Mode::IdleTimed {
                window_ms: IDLE_TIMED_QUICK_WINDOW_MS,
            };
        }
    }
    let started = Instant::now();
    let mut results = Vec::new();
    for scenario in &scenarios {
        let mut runs: BTreeMap<&'static str, Vec<Result<IdleTimedSample, String>>> =
            BTreeMap::new();
        for round in 0..rounds {
            for offset in 0..SERVERS.len() {
                let server = SERVERS[(round + offset) % SERVERS.len()];
                if scenario.mode.skips(server) {
                    continue;
                }
                let run = run_server(bin, server, scenario, Probe::Nothing)
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
pub(super) fn idle_timed_table(results: &[IdleTimedResult]) -> String {
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
             {})\n",
            scenario.name,
            scenario.what,
            window.map_or("n/a".to_string(), |w| format!("{w:.1} s")),
            result.runs.get(BASELINE).map_or(0, Vec::len),
            super::stats::Spread::for_rounds(result.runs.get(BASELINE).map_or(0, Vec::len))
                .describe(),
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
                .map_or("-".to_string(), |interval| interval.cell());
            let figure = |f: fn(&IdleTimedSample) -> f64, decimals: usize| {
                result
                    .median(server, f)
                    .map_or_else(|| "n/a (no run)".to_string(), |v| format!("{v:.decimals$}"))
            };
            out.push_str(&format!(
                "{server:<11} {cpu:>16.2} {ratio:>22} {:>12} {:>12}{}\n",
                figure(|s| s.bytes_per_conn, 0),
                figure(|s| s.echo_ms, 1),
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
            out.push_str(&format!(
                "  sat out (no timed-read server): {}\n",
                sat_out.join(", ")
            ));
        }
    }
    out
}

/// B9 in `results.json`: per server the raw samples, the failed runs and the CPU ratio.
pub(super) fn idle_timed_json(result: &IdleTimedResult) -> Value {
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
                "cpu_ratio_vs_tokio_ct": result.cpu_ratio(server).map(Interval::to_json),
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
            .filter(|s| IDLE_TIMED_QUICK[0].mode.skips(s))
            .collect();
        assert_eq!(skipped, ["compio", "epoll", "uring-raw"]);
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
        let ratio = result.cpu_ratio("weir-uring").expect("one paired round");
        assert_eq!((ratio.median, ratio.low, ratio.high), (2.0, 2.0, 2.0));
        let table = idle_timed_table(std::slice::from_ref(&result));
        assert!(
            table.contains("(1 of its runs failed: bench-load failed: no echo)"),
            "{table}"
        );
        assert!(table.contains("weir-poll   n/a: it broke"), "{table}");
        assert!(
            table.contains("sat out (no timed-read server): compio, epoll, uring-raw"),
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
