//! What `cargo xtask bench` prints and writes: a summary that leads with the figures that
//! decide, one detailed table per scenario, and `results.json` (a missing figure is `null`).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::idle::{IdleMemory, IdleTimedResult, idle_timed_json};
use super::stats::{self, Figure, Interval, cell, to_json};
use super::{
    ALLOCS, BASELINE, CPU_PER_REQ, Counted, FLOORS, Metric, P99, RunInfo, Runs, SERVERS, SYSCALLS,
    Scenario, THROUGHPUT, UTILISATION, median_figure, paired, server_bound_throughput,
};

/// An interval's cell, or `-` where there is none.
fn interval_cell(interval: Option<Interval>) -> String {
    interval.map_or_else(|| "-".to_string(), |i| i.cell())
}

/// How many of `server`'s rounds were client-bound, of how many that ran.
fn client_bound_rounds(runs: &Runs, server: &str) -> (usize, usize) {
    let list = runs.get(server).map(Vec::as_slice).unwrap_or_default();
    let ran: Vec<_> = list.iter().flatten().collect();
    (ran.iter().filter(|s| s.client_bound).count(), ran.len())
}

/// The throughput cell of the summary: the ratio over the rounds the client did not pace, or
/// `client-bound (k/n)` if it paced them all.
pub(super) fn throughput_cell(runs: &Runs, server: &str) -> String {
    let (bound, ran) = client_bound_rounds(runs, server);
    let (base_bound, _) = client_bound_rounds(runs, BASELINE);
    match server_bound_throughput(runs, server, BASELINE) {
        Some(interval) if interval.rounds < ran => {
            format!("{} ({} of {ran} rounds)", interval.cell(), interval.rounds)
        }
        Some(interval) => interval.cell(),
        None if ran == 0 => "n/a (no run)".to_string(),
        None => format!("client-bound ({}/{ran})", bound.max(base_bound)),
    }
}

/// The summary: per scenario and server, the figures that decide between runtimes — server
/// CPU per request against tokio `current_thread`, instructions, syscalls, allocations, p99,
/// the server's utilisation, and throughput only where the client did not set the pace.
pub(super) fn summary(
    scenarios: &[&Scenario],
    results: &BTreeMap<&str, Runs>,
    counted: &Result<Counted, String>,
) -> String {
    let mut out = format!(
        "\nSUMMARY — ratios vs {BASELINE} (< 1 is cheaper or faster, except throughput); \
         throughput only from rounds that were not client-bound; instructions from callgrind \
         where counted (- elsewhere)\n"
    );
    out.push_str(&format!(
        "{:<9} {:<11} {:>17} {:>22} {:>9} {:>10} {:>9} {:>9} {:>46}\n",
        "scenario",
        "server",
        "CPU/req ratio",
        "instr/req (ratio)",
        "sys/req",
        "allocs/req",
        "p99 us",
        "srv util",
        "throughput ratio"
    ));
    for scenario in scenarios {
        let Some(runs) = results.get(scenario.name) else {
            continue;
        };
        for server in SERVERS {
            if !runs.contains_key(server) {
                continue;
            }
            let instructions = match counted {
                Ok(table) => match table.get(scenario.name) {
                    Some(row) => instructions_cell(row, server),
                    None => "-".to_string(),
                },
                Err(_) => "n/a (no callgrind)".to_string(),
            };
            let utilisation = median_figure(runs, server, UTILISATION).map(|u| u * 100.0);
            let throughput = if scenario.mode.open_loop() {
                format!("fixed rate: {}", throughput_cell(runs, server))
            } else if scenario.mode.bulk() {
                let gbits = match gbit_per_s(scenario, runs, server) {
                    Ok(gbits) => format!("{gbits:.1} Gbit/s"),
                    Err(why) => format!("n/a ({why})"),
                };
                format!("{}; {gbits}", throughput_cell(runs, server))
            } else {
                throughput_cell(runs, server)
            };
            out.push_str(&format!(
                "{:<9} {server:<11} {:>17} {instructions:>22} {:>9} {:>10} {:>9} {:>9} {throughput:>46}\n",
                scenario.name,
                interval_cell(paired(runs, server, BASELINE, CPU_PER_REQ)),
                cell(&median_figure(runs, server, SYSCALLS), 2),
                cell(&median_figure(runs, server, ALLOCS), 2),
                cell(&median_figure(runs, server, P99), 0),
                percent_cell(&utilisation),
            ));
        }
    }
    out
}

fn percent_cell(figure: &Figure) -> String {
    match figure {
        Ok(v) => format!("{v:.0}%"),
        Err(why) => format!("n/a ({why})"),
    }
}

/// `3,210 (0.91x)` for `server` in a scenario's callgrind row.
fn instructions_cell(row: &BTreeMap<&'static str, Figure>, server: &str) -> String {
    let base = row.get(BASELINE).and_then(|f| f.as_ref().ok());
    match (row.get(server), base) {
        (Some(Ok(n)), Some(b)) if *b > 0.0 => format!("{n:.0} ({:.2}x)", n / b),
        (Some(figure), _) => cell(figure, 0),
        (None, _) => "n/a (no run)".to_string(),
    }
}

/// One detailed table per scenario: every figure's median and the paired ratios.
pub(super) fn tables(
    scenarios: &[&Scenario],
    results: &BTreeMap<&str, Runs>,
    perf: bool,
) -> String {
    let mut out = String::new();
    for scenario in scenarios {
        let Some(runs) = results.get(scenario.name) else {
            continue;
        };
        let rounds = runs.get(BASELINE).map_or(0, Vec::len);
        out.push_str(&format!(
            "\n{} — {} (medians of {rounds} rounds; ratios vs {BASELINE}, paired, {})\n",
            scenario.name,
            scenario.what,
            stats::Spread::for_rounds(rounds).describe(),
        ));
        out.push_str(&format!(
            "{:<11} {:>10} {:>18} {:>11} {:>18} {:>9} {:>10} {:>10} {:>9} {:>9} {:>9}\n",
            "server",
            "req/s",
            "throughput ratio",
            "CPU us/req",
            "CPU ratio",
            "srv util",
            "sys/req",
            "allocs/req",
            "p50 us",
            "p99 us",
            "p99.9 us"
        ));
        for server in SERVERS {
            let Some(list) = runs.get(server) else {
                continue;
            };
            let med = |metric: Metric| median_figure(runs, server, metric);
            let syscalls = if perf {
                cell(&med(SYSCALLS), 2)
            } else {
                "n/a (no perf)".to_string()
            };
            let (bound, _) = client_bound_rounds(runs, server);
            let failed: Vec<&String> = list.iter().filter_map(|r| r.as_ref().err()).collect();
            let mut notes = Vec::new();
            if bound > 0 {
                notes.push(format!("client-bound in {bound} rounds"));
            }
            if let Some(first) = failed.first() {
                notes.push(format!(
                    "{} of {} runs failed: {}",
                    failed.len(),
                    list.len(),
                    first.lines().next().unwrap_or(first)
                ));
            }
            out.push_str(&format!(
                "{server:<11} {:>10} {:>18} {:>11} {:>18} {:>9} {syscalls:>10} {:>10} {:>9} {:>9} {:>9}{}\n",
                cell(&med(THROUGHPUT), 0),
                interval_cell(paired(runs, server, BASELINE, THROUGHPUT)),
                cell(&med(CPU_PER_REQ), 2),
                interval_cell(paired(runs, server, BASELINE, CPU_PER_REQ)),
                percent_cell(&med(UTILISATION).map(|u| u * 100.0)),
                cell(&med(ALLOCS), 2),
                cell(&med(|s| &s.p50_us), 0),
                cell(&med(P99), 0),
                cell(&med(|s| &s.p999_us), 0),
                if notes.is_empty() { String::new() } else { format!("  ({})", notes.join("; ")) },
            ));
        }
        out.push_str(&floor_distance(runs));
        if scenario.mode.bulk() {
            out.push_str("  as bandwidth (echoed bytes, each way):");
            for server in SERVERS {
                if let Ok(gbits) = gbit_per_s(scenario, runs, server) {
                    out.push_str(&format!(" {server} {gbits:.1} Gbit/s;"));
                }
            }
            out.push('\n');
        }
    }
    out
}

/// A bulk scenario's median bandwidth on `server`: chunks echoed per second × chunk bytes × 8
/// (each way), in Gbit/s.
pub(super) fn gbit_per_s(scenario: &Scenario, runs: &Runs, server: &str) -> Figure {
    if !scenario.mode.bulk() {
        return Err("not a bulk stream".to_string());
    }
    let rate = median_figure(runs, server, THROUGHPUT)?;
    stats::measured(rate * scenario.bytes as f64 * 8.0 / 1e9, "no bandwidth")
}

/// One line: each Weir backend's throughput and CPU per request as ratios of its raw floor's,
/// paired by round (throughput 1.00 = as fast as the floor, CPU 1.00 = as cheap).
fn floor_distance(runs: &Runs) -> String {
    let mut parts = Vec::new();
    for (weir, floor) in FLOORS {
        let throughput = paired(runs, weir, floor, THROUGHPUT);
        let cpu = paired(runs, weir, floor, CPU_PER_REQ);
        if let (Some(t), Some(c)) = (throughput, cpu) {
            parts.push(format!(
                "{weir} vs {floor}: throughput {}, CPU/req {}",
                t.cell(),
                c.cell()
            ));
        }
    }
    if parts.is_empty() {
        return String::new();
    }
    format!("  distance to the raw floors: {}\n", parts.join("; "))
}

/// One scenario's runs in `results.json`: each run's figures (`null` where missing, the
/// failed runs with why) and the paired ratios.
fn scenario_json(scenario: &Scenario, runs: &Runs) -> Value {
    let mut servers = serde_json::Map::new();
    for (server, list) in runs {
        let samples: Vec<Value> = list
            .iter()
            .map(|run| match run {
                Ok(s) => json!({
                    "throughput_rps": to_json(&s.throughput),
                    "server_cpu_us_per_req": to_json(&s.cpu_us_per_req),
                    "server_utilisation": to_json(&s.utilisation),
                    "syscalls_per_req": to_json(&s.syscalls_per_req),
                    "allocs_per_req": to_json(&s.allocs_per_req),
                    "p50_us": to_json(&s.p50_us), "p99_us": to_json(&s.p99_us),
                    "p999_us": to_json(&s.p999_us), "client_bound": s.client_bound,
                }),
                Err(why) => json!({ "failed": why }),
            })
            .collect();
        let interval = |i: Option<Interval>| i.map_or(Value::Null, Interval::to_json);
        let mut entry = json!({
            "samples": samples,
            "throughput_ratio_vs_tokio_ct": interval(paired(runs, server, BASELINE, THROUGHPUT)),
            "throughput_ratio_vs_tokio_ct_not_client_bound":
                interval(server_bound_throughput(runs, server, BASELINE)),
            "cpu_ratio_vs_tokio_ct": interval(paired(runs, server, BASELINE, CPU_PER_REQ)),
            "p99_ratio_vs_tokio_ct": interval(paired(runs, server, BASELINE, P99)),
            "medians": {
                "syscalls_per_req": to_json(&median_figure(runs, server, SYSCALLS)),
                "allocs_per_req": to_json(&median_figure(runs, server, ALLOCS)),
                "p99_us": to_json(&median_figure(runs, server, P99)),
                "server_utilisation": to_json(&median_figure(runs, server, UTILISATION)),
            },
            "failed_runs": list.iter().filter(|run| run.is_err()).count(),
        });
        if scenario.mode.bulk() {
            entry["medians"]["gbit_per_s"] = to_json(&gbit_per_s(scenario, runs, server));
        }
        if let Some((_, floor)) = FLOORS.iter().find(|(weir, _)| weir == server) {
            entry["floor"] = json!(floor);
            entry["throughput_ratio_vs_floor"] = interval(paired(runs, server, floor, THROUGHPUT));
            entry["cpu_ratio_vs_floor"] = interval(paired(runs, server, floor, CPU_PER_REQ));
        }
        servers.insert((*server).to_string(), entry);
    }
    let sat_out: serde_json::Map<String, Value> = SERVERS
        .iter()
        .filter_map(|server| {
            Some((
                (*server).to_string(),
                json!(scenario.mode.sits_out(server)?),
            ))
        })
        .collect();
    let mut document = json!({
        "name": scenario.name, "description": scenario.what, "connections": scenario.conns,
        "message_bytes": scenario.bytes, "requests_per_round": scenario.requests,
        "servers": servers, "sat_out": sat_out,
    });
    if scenario.mode.proxied() {
        document["upstream"] = json!(format!(
            "{} echo (bench-server), the same for every proxy, pinned to CPU 0 beside the load \
             generator; every figure is the proxy's",
            super::process::UPSTREAM
        ));
    }
    document
}

/// The whole of `results.json`.
pub(super) fn json(
    info: &RunInfo,
    scenarios: &[&Scenario],
    results: &BTreeMap<&str, Runs>,
    counted: &Result<Counted, String>,
    idle_memory: Option<&IdleMemory>,
    idle_timed: &[IdleTimedResult],
    table: &str,
) -> Value {
    let mut json_scenarios: Vec<Value> = scenarios
        .iter()
        .filter_map(|s| Some(scenario_json(s, results.get(s.name)?)))
        .collect();
    json_scenarios.extend(idle_timed.iter().map(idle_timed_json));
    let instructions = match counted {
        Ok(table) => {
            let rows: serde_json::Map<String, Value> = table
                .iter()
                .map(|(scenario, row)| {
                    let cells: serde_json::Map<String, Value> = row
                        .iter()
                        .map(|(server, f)| ((*server).to_string(), to_json(f)))
                        .collect();
                    (scenario.clone(), Value::Object(cells))
                })
                .collect();
            Value::Object(rows)
        }
        Err(why) => json!({ "not_measured": why }),
    };
    let memory = idle_memory.map_or(Value::Null, |memory| {
        Value::Object(
            memory
                .figures
                .iter()
                .map(|(server, f)| ((*server).to_string(), to_json(f)))
                .collect(),
        )
    });
    json!({
        "machine": info.machine, "kernel": info.kernel, "rustc": info.rustc,
        "commit": info.commit, "date": info.date, "rounds": info.rounds,
        "interval": stats::Spread::for_rounds(info.rounds).describe(),
        "cpu_pinning": super::process::pinning_line(),
        "server_failures": super::process::server_failures(),
        "baseline": BASELINE,
        "scenarios": json_scenarios,
        "user_instructions_per_request": instructions,
        "idle_memory_bytes_per_conn": memory,
        "table": table,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::Sample;

    fn sample(throughput: f64, cpu: f64, client_bound: bool) -> Result<Sample, String> {
        Ok(Sample {
            throughput: Ok(throughput),
            cpu_us_per_req: Ok(cpu),
            syscalls_per_req: Err("perf counted nothing".to_string()),
            allocs_per_req: Ok(0.0),
            p50_us: Ok(10.0),
            p99_us: Ok(20.0),
            p999_us: Ok(30.0),
            utilisation: Ok(0.5),
            client_bound,
        })
    }

    fn runs() -> Runs {
        Runs::from([
            (
                BASELINE,
                vec![
                    sample(100.0, 10.0, true),
                    sample(100.0, 10.0, false),
                    Err("crashed".to_string()),
                ],
            ),
            (
                "weir-uring",
                vec![
                    sample(200.0, 5.0, true),
                    sample(150.0, 8.0, false),
                    sample(1.0, 1.0, false),
                ],
            ),
        ])
    }

    #[test]
    fn a_missing_figure_is_null_in_the_json_and_n_a_in_the_tables() {
        let scenario = crate::bench::QUICK[1];
        let results = BTreeMap::from([(scenario.name, runs())]);
        let json = scenario_json(&scenario, &results[scenario.name]);
        let first = &json["servers"]["weir-uring"]["samples"][0];
        assert_eq!(first["syscalls_per_req"], Value::Null);
        assert_eq!(first["throughput_rps"], 200.0);
        assert_eq!(json["servers"][BASELINE]["samples"][2]["failed"], "crashed");
        assert_eq!(
            json["servers"]["weir-uring"]["medians"]["syscalls_per_req"],
            Value::Null
        );
        let text = serde_json::to_string(&json).expect("json");
        assert!(!text.contains("NaN") && !text.contains("nan"), "{text}");
        let table = tables(&[&scenario], &results, true);
        assert!(table.contains("n/a (perf counted nothing)"), "{table}");
        assert!(table.contains("1 of 3 runs failed: crashed"), "{table}");
        assert!(!table.contains("NaN"), "{table}");
    }

    #[test]
    fn a_proxy_bulk_scenario_reports_bandwidth_the_upstream_and_who_sat_out() {
        let scenario = *crate::bench::QUICK_EXTRA
            .iter()
            .find(|s| s.name == "B11-bulk")
            .expect("B11-bulk");
        // 200 and 150 chunks of 64 KiB a second: medians 0.10 Gbit/s and 0.079 Gbit/s.
        let runs = runs();
        let json = scenario_json(&scenario, &runs);
        let gbits = json["servers"]["weir-uring"]["medians"]["gbit_per_s"]
            .as_f64()
            .expect("a bandwidth");
        assert!(
            (gbits - 150.0 * 65_536.0 * 8.0 / 1e9).abs() < 1e-12,
            "{gbits}"
        );
        assert!(
            json["upstream"]
                .as_str()
                .expect("upstream")
                .contains("tokio-ct echo")
        );
        assert!(
            json["sat_out"]["uring-raw"]
                .as_str()
                .expect("why")
                .contains("no proxy")
        );
        assert_eq!(json["sat_out"].as_object().map(|o| o.len()), Some(1));
        let results = BTreeMap::from([(scenario.name, runs)]);
        let text = summary(&[&scenario], &results, &Err("none".to_string()));
        let line = text
            .lines()
            .find(|l| l.contains("weir-uring"))
            .expect("a line");
        assert!(line.contains("0.1 Gbit/s"), "{line}");
        let table = tables(&[&scenario], &results, true);
        assert!(table.contains("as bandwidth"), "{table}");
        // An echo scenario has no bandwidth.
        let echo = crate::bench::QUICK[1];
        assert!(gbit_per_s(&echo, &results[scenario.name], "weir-uring").is_err());
        assert_eq!(
            scenario_json(&echo, &results[scenario.name])["servers"]["weir-uring"]["medians"]["gbit_per_s"],
            Value::Null
        );
    }

    #[test]
    fn throughput_is_summarised_only_over_rounds_neither_side_was_client_bound() {
        let runs = runs();
        // Round 0: the client paced both; round 2: the baseline failed. Round 1 is left.
        let interval = server_bound_throughput(&runs, "weir-uring", BASELINE).expect("round 1");
        assert_eq!((interval.median, interval.rounds), (1.5, 1));
        assert_eq!(
            throughput_cell(&runs, "weir-uring"),
            "1.50 [1.50,1.50] (1 of 3 rounds)"
        );
        let all_bound = Runs::from([
            (BASELINE, vec![sample(100.0, 1.0, true)]),
            ("weir-poll", vec![sample(90.0, 1.0, true)]),
        ]);
        assert_eq!(
            throughput_cell(&all_bound, "weir-poll"),
            "client-bound (1/1)"
        );
    }

    #[test]
    fn the_summary_leads_with_cpu_per_request_and_marks_client_bound_throughput() {
        let scenario = crate::bench::QUICK[1];
        let results = BTreeMap::from([(scenario.name, runs())]);
        let counted = Ok(Counted::from([(
            scenario.name.to_string(),
            BTreeMap::from([(BASELINE, Ok(1000.0)), ("weir-uring", Ok(900.0))]),
        )]));
        let text = summary(&[&scenario], &results, &counted);
        let line = text
            .lines()
            .find(|l| l.contains("weir-uring"))
            .expect("a weir-uring line");
        // CPU ratios per round: 0.5, 0.8 (round 2's baseline failed): median 0.65.
        assert!(line.contains("0.65 [0.50,0.80]"), "{line}");
        assert!(line.contains("900 (0.90x)"), "{line}");
        assert!(line.contains("50%"), "{line}");
        assert!(text.contains("throughput ratio"), "{text}");
    }
}
