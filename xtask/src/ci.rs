//! `cargo xtask ci`: every check, in order, then a summary table.
//!
//! A step whose tool cannot be installed here is reported as `SKIPPED: <reason>`; a step that ran
//! and failed makes the whole command fail, but the remaining steps still run so that one CI run
//! shows everything that is wrong.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd::{self, cargo};
use crate::tidy;

/// The longest one test command (its build included) may run: a hung test fails CI within
/// this, naming the command, instead of stalling it.
const TEST_LIMIT: std::time::Duration = std::time::Duration::from_secs(20 * 60);
/// The crates whose loom models, Miri runs and Valgrind runs are part of CI.
const MIRI_CRATES: &[&str] = &["weir-bufpool", "weir-shutdown"];
/// The ring's modules whose unit tests (`<module>::tests`) Miri runs: the op lifecycle state
/// machine, the buffer traits, the op-box recycling, and the ring itself over the fake kernel
/// (`fake`: submit, reap, cancel and teardown, the ops' and the provided-buffer ring's `unsafe`,
/// scripted and proptest-generated orders). The other modules' tests need the real kernel.
const MIRI_RING_MODULES: &[&str] = &["lifecycle", "buf", "recycle", "fake"];
/// weir-reactor's suites are not among them: its timer tests count timers that fired, and under
/// Valgrind's slowdown a 10 ms deadline can pass before its sleep is first polled, so the sleep
/// ends without registering a timer (`sockets::sleeps_fire_in_deadline_order` counted 1 of 2).
/// The reactor's socket and timer paths run under Valgrind through weir-net's suites.
const VALGRIND_CRATES: &[&str] = &["weir-ring", "weir-net"];
/// Test targets Valgrind does not run: the soak (thousands of connections with megabytes each,
/// hours under Valgrind); each of its paths runs under Valgrind in the `it` suites.
const VALGRIND_SKIP_TARGETS: &[&str] = &["soak"];
/// Tests Valgrind does not run. `server::`: multi-threaded server scenarios whose threads
/// Valgrind serialises (it holds its one lock across `io_uring_enter`, so a worker blocked in
/// the ring stops every other thread until its capped wait ends), while the server's own
/// timeouts (20-500 ms) and the tests' 10 s waits keep running: `slowloris_…`'s normal client is
/// cut by the idle timeout, `limit_of_50_…` runs past 15 minutes, and in a clean-clone run
/// `connections_beyond_the_limit_…` waited 10 s with a connection taken from the kernel's backlog
/// and not yet counted as accepted (6 runs of it alone under Valgrind and 60 beside two busy
/// loops without Valgrind passed; the other five of the module passed under Valgrind in 13-75 s
/// each). Their I/O paths (accept, read, write, cancel, timers) run under Valgrind in the `tcp`,
/// `udp`, `cancel`, `mixed_io`, `sigterm` and `tasks` modules of the same binary, and the
/// ring's cross-thread submission in weir-ring's `threads` module.
///
/// `affinity::` (tasks handed between worker threads) for the same lock: each cross-thread hop
/// waits out a capped park, minutes in all; the ring's own cross-thread tests (weir-ring's
/// `threads`) run under Valgrind.
///
/// `tls::` is skipped for another reason: the ciphertext rustls hands Weir's writes comes out
/// of `ring`'s assembly, which memcheck cannot follow, so it reports those bytes as
/// uninitialised when Weir's send state compares or sends them (false positives outside Weir:
/// `--track-origins` places the origin in ring's AEAD key set-up, on both backends).
/// The same compatibility write path runs under Valgrind with plain bytes in `mixed_io` and
/// `examples::a_tokio_util_framed_codec_echoes_length_delimited_frames`.
///
/// `fork::`: its children run under Valgrind too, which reports (and sets the exit status for)
/// what a forked copy of the whole test process holds when it `_exit`s; three of the four
/// failed on their child's exit status in the full binary's run.
const VALGRIND_SKIP: &[&str] = &["server::", "affinity::", "tls::", "fork::"];
const PORTABLE_CRATES: &[&str] = &["weir-reactor", "weir-bufpool", "weir-shutdown", "weir-net"];
/// Targets that are compiled (`cargo check`, and `cargo clippy -D warnings` on the libraries),
/// never run: FreeBSD (kqueue), macOS (kqueue), Windows (IOCP), each through `polling`.
const CROSS_TARGETS: &[&str] = &[
    "x86_64-unknown-freebsd",
    "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
];
/// The cfg that puts weir-reactor on its `polling` backend on Linux.
const PORTABLE_REACTOR_CFG: &str = "weir_reactor_portable";
/// With [`PORTABLE_REACTOR_CFG`]: sources are oneshot (re-armed after each event), as on IOCP.
const ONESHOT_REACTOR_CFG: &str = "weir_reactor_oneshot";
/// Suites run a second time over the portable reactor (weir-net's with `WEIR_BACKEND=poll`).
const PORTABLE_REACTOR_SUITES: &[&str] = &["weir-reactor", "weir-net"];
/// Suites that run a second time forced onto the reactor.
const BACKEND_SUITES: &[&str] = &["weir-net", "weir-tests"];

enum Outcome {
    Passed,
    Failed(String),
    Skipped(String),
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    seconds: f64,
}

pub(crate) fn run(args: &[String]) -> Result<bool> {
    let mut quick = false;
    let mut only: Option<String> = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => match rest.next() {
                Some(name) => only = Some(name.clone()),
                None => bail!("--only needs a step's name (fmt, clippy, test, ..., package)"),
            },
            unknown => bail!("unknown flag {unknown} (ci takes --quick and --only STEP)"),
        }
    }
    type StepFn = fn() -> Result<Option<String>>;
    let all: &[(&'static str, StepFn, bool)] = &[
        ("fmt", fmt, false),
        ("clippy", clippy, false),
        ("test (both backends)", test, false),
        ("test (portable reactor)", test_portable_reactor, false),
        ("doc", doc, false),
        ("loom", loom, false),
        ("miri", miri, true),
        ("valgrind", valgrind, true),
        ("cross-platform check", cross_check, true),
        ("tidy", tidy_step, false),
        ("package", package, false),
    ];
    let chosen = |name: &str| {
        only.as_ref()
            .is_none_or(|only| name.starts_with(only.as_str()))
    };
    if let Some(only) = &only {
        if !all.iter().any(|(name, _, _)| chosen(name)) {
            let names: Vec<&str> = all.iter().map(|(name, _, _)| *name).collect();
            bail!("no ci step is named {only:?}; the steps: {names:?}");
        }
    }
    let mut steps = Vec::new();
    for &(name, step, slow) in all {
        if !chosen(name) {
            continue;
        }
        eprintln!("\n==== ci: {name} ====");
        let started = Instant::now();
        let outcome = if quick && slow {
            Outcome::Skipped("--quick".into())
        } else {
            match step() {
                Ok(None) => Outcome::Passed,
                Ok(Some(reason)) => Outcome::Skipped(reason),
                Err(error) => Outcome::Failed(format!("{error:#}")),
            }
        };
        steps.push(Step {
            name,
            outcome,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(summarize(&steps))
}

fn summarize(steps: &[Step]) -> bool {
    println!("\nci summary");
    println!("{:<24} {:>8}  result", "step", "seconds");
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for step in steps {
        let result = match &step.outcome {
            Outcome::Passed => {
                passed += 1;
                "ok".to_string()
            }
            Outcome::Failed(why) => {
                failed += 1;
                format!("FAILED: {why}")
            }
            Outcome::Skipped(why) => {
                skipped += 1;
                format!("SKIPPED: {why}")
            }
        };
        println!("{:<24} {:>8.1}  {result}", step.name, step.seconds);
    }
    let total: f64 = steps.iter().map(|s| s.seconds).sum();
    println!("{:<24} {:>8.1}", "total", total);
    println!("ci: {passed} passed, {failed} failed, {skipped} skipped");
    failed == 0
}

fn fmt() -> Result<Option<String>> {
    if !cmd::succeeds("cargo", &["fmt", "--version"]) {
        cmd::run(std::process::Command::new("rustup").args(["component", "add", "rustfmt"]))?;
    }
    cmd::run(cargo().args(["fmt", "--all", "--check"]))?;
    Ok(None)
}

fn clippy() -> Result<Option<String>> {
    if !cmd::succeeds("cargo", &["clippy", "--version"]) {
        cmd::run(std::process::Command::new("rustup").args(["component", "add", "clippy"]))?;
    }
    cmd::run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))?;
    Ok(None)
}

fn test() -> Result<Option<String>> {
    // Everything once (unit, integration, doc tests) with the default backend choice...
    // `--all-features`: weir-net's tokio/hyper compatibility and the `hyper_hello` example.
    cmd::run_bounded(
        cargo().args(["test", "--workspace", "--all-features"]),
        TEST_LIMIT,
    )?;
    // ...then the soak's short form (both backends; not part of plain `cargo test`)...
    cmd::run_bounded(
        cargo().args([
            "test",
            "--package",
            "weir-net",
            "--all-features",
            "--test",
            "soak",
        ]),
        TEST_LIMIT,
    )?;
    // ...then the socket suites forced onto the reactor. The socket tests run on both backends
    // by themselves; what this adds is the tests that take the default choice, which on a
    // machine with io_uring the first run already made the ring.
    let mut command = cargo();
    command
        .env("WEIR_BACKEND", "poll")
        .args(["test", "--all-features"]);
    for suite in BACKEND_SUITES {
        command.args(["--package", suite]);
    }
    cmd::run_bounded(&mut command, TEST_LIMIT)?;
    Ok(None)
}

/// weir-reactor's suites and weir-net's over the reactor a second time, with the reactor on its
/// `polling` backend (`portable.rs`, what kqueue, event ports and IOCP use) instead of raw epoll,
/// then weir-reactor's a third time with that backend in oneshot mode. Their own target folders
/// keep the cfgs from invalidating the normal build.
fn test_portable_reactor() -> Result<Option<String>> {
    cmd::run_bounded(
        cargo()
            .env("RUSTFLAGS", format!("--cfg {PORTABLE_REACTOR_CFG}"))
            .env("WEIR_BACKEND", "poll")
            .args(["test", "--all-features", "--target-dir"])
            .arg(cmd::root().join("target/portable"))
            .args(
                PORTABLE_REACTOR_SUITES
                    .iter()
                    .flat_map(|s| ["--package", s]),
            ),
        TEST_LIMIT,
    )?;
    // Oneshot mode, as on IOCP: the re-arming code that no Linux poller needs otherwise.
    cmd::run_bounded(
        cargo()
            .env(
                "RUSTFLAGS",
                format!("--cfg {PORTABLE_REACTOR_CFG} --cfg {ONESHOT_REACTOR_CFG}"),
            )
            .args(["test", "--package", "weir-reactor", "--target-dir"])
            .arg(cmd::root().join("target/oneshot")),
        TEST_LIMIT,
    )?;
    Ok(None)
}

fn doc() -> Result<Option<String>> {
    cmd::run(cargo().env("RUSTDOCFLAGS", "-D warnings").args([
        "doc",
        "--workspace",
        "--no-deps",
        "--all-features",
    ]))?;
    Ok(None)
}

/// Crates with loom models: those with a `src/**/tests/loom_*.rs` file.
fn loom_crates() -> Result<Vec<String>> {
    let mut crates = Vec::new();
    for entry in std::fs::read_dir(cmd::root().join("crates"))? {
        let dir = entry?.path();
        let mut files = Vec::new();
        tidy::rust_files(&dir.join("src"), &mut files)?;
        let has_models = files.iter().any(|f| {
            f.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("loom_"))
        });
        if has_models {
            let name = dir
                .file_name()
                .context("crate folder has no name")?
                .to_string_lossy()
                .into_owned();
            crates.push(format!("weir-{name}"));
        }
    }
    crates.sort();
    Ok(crates)
}

fn loom() -> Result<Option<String>> {
    let crates = loom_crates()?;
    if crates.is_empty() {
        bail!("no crate has loom models, but the design requires them");
    }
    let mut command = cargo();
    // `weir_loom` is Weir's own cfg, so dependencies never see loom switched on. A separate target
    // folder keeps these flags from invalidating the normal build.
    command
        .env("RUSTFLAGS", "--cfg weir_loom -C debug-assertions")
        .env("LOOM_MAX_PREEMPTIONS", "2")
        .args(["test", "--release", "--target-dir"])
        .arg(cmd::root().join("target/loom"));
    for name in &crates {
        command.args(["--package", name]);
    }
    command.args(["--lib", "loom_"]);
    cmd::run_bounded(&mut command, TEST_LIMIT)?;
    Ok(None)
}

fn miri() -> Result<Option<String>> {
    if let Err(reason) = cmd::ensure_miri() {
        return Ok(Some(reason));
    }
    let target_dir = cmd::root().join("target/miri");
    let mut command = cmd::nightly_cargo();
    command
        .env("MIRIFLAGS", "-Zmiri-strict-provenance")
        .args(["miri", "test", "--target-dir"])
        .arg(&target_dir);
    for name in MIRI_CRATES {
        command.args(["--package", name]);
    }
    command.arg("--lib");
    cmd::run_bounded(&mut command, TEST_LIMIT)?;
    // `buf::tests::`, not `buf`: a bare module name would also pick up `bufring` tests.
    let ring_filters: Vec<String> = MIRI_RING_MODULES
        .iter()
        .filter(|module| has_lib_tests_named("weir-ring", module))
        .map(|module| format!("{module}::tests::"))
        .collect();
    if !ring_filters.is_empty() {
        cmd::run_bounded(
            cmd::nightly_cargo()
                .env("MIRIFLAGS", "-Zmiri-strict-provenance")
                .args(["miri", "test", "--target-dir"])
                .arg(&target_dir)
                .args(["--package", "weir-ring", "--lib", "--"])
                .args(&ring_filters),
            TEST_LIMIT,
        )?;
    }
    Ok(None)
}

/// `true` if `crate_name`'s sources have a module file called `module` (its tests live there).
fn has_lib_tests_named(crate_name: &str, module: &str) -> bool {
    let folder = crate_name.trim_start_matches("weir-");
    let mut files = Vec::new();
    let _ = tidy::rust_files(
        &cmd::root().join("crates").join(folder).join("src"),
        &mut files,
    );
    files
        .iter()
        .any(|f| f.file_stem().is_some_and(|s| s.to_string_lossy() == module))
}

fn valgrind() -> Result<Option<String>> {
    if let Err(reason) = cmd::ensure_apt_program("valgrind", "valgrind") {
        return Ok(Some(reason));
    }
    let mut build = cargo();
    build.args([
        "test",
        "--no-run",
        "--all-features",
        "--message-format=json",
    ]);
    for name in VALGRIND_CRATES {
        build.args(["--package", name]);
    }
    let messages = cmd::output(&mut build)?;
    let mut binaries = Vec::new();
    for line in messages.lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" || message["profile"]["test"] != true {
            continue;
        }
        let target = message["target"]["name"].as_str().unwrap_or_default();
        if VALGRIND_SKIP_TARGETS.contains(&target) {
            eprintln!("valgrind: NOT running the {target} target (see VALGRIND_SKIP_TARGETS)");
            continue;
        }
        if let Some(exe) = message["executable"].as_str() {
            binaries.push(exe.to_string());
        }
    }
    if binaries.is_empty() {
        bail!("no test binaries were built for {VALGRIND_CRATES:?}");
    }
    eprintln!(
        "valgrind: NOT running the tests {VALGRIND_SKIP:?} (timing-bound or cross-thread \
         scenarios that Valgrind serialises into minutes each, and rustls' assembly: see \
         VALGRIND_SKIP); their I/O paths run under Valgrind elsewhere"
    );
    // Valgrind runs a process one thread at a time: the tests run in one lane per core, each
    // test binary's tests dealt out among the lanes, each lane one test at a time.
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
    let mut work: Vec<Vec<(String, Vec<String>)>> = vec![Vec::new(); lanes];
    for binary in &binaries {
        let listed = cmd::output(
            std::process::Command::new(binary)
                .current_dir(cmd::root())
                .args(["--list", "--format", "terse"])
                .args(VALGRIND_SKIP.iter().flat_map(|m| ["--skip", m])),
        )?;
        let tests: Vec<String> = listed
            .lines()
            .filter_map(|line| line.strip_suffix(": test"))
            .map(str::to_string)
            .collect();
        for (lane, share) in work.iter_mut().enumerate() {
            let mine: Vec<String> = tests.iter().skip(lane).step_by(lanes).cloned().collect();
            if !mine.is_empty() {
                share.push((binary.clone(), mine));
            }
        }
    }
    let logs = cmd::root().join("target").join("valgrind-lanes");
    std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
    let results: Vec<(std::path::PathBuf, Result<()>)> = std::thread::scope(|scope| {
        let running: Vec<_> = work
            .iter()
            .enumerate()
            .map(|(lane, share)| {
                let log = logs.join(format!("lane-{lane}.log"));
                scope.spawn(move || {
                    let result = valgrind_lane(share, &log);
                    (log, result)
                })
            })
            .collect();
        running
            .into_iter()
            .map(|lane| {
                lane.join()
                    .unwrap_or_else(|_| (logs.clone(), Err(anyhow::anyhow!("a lane panicked"))))
            })
            .collect()
    });
    let mut failed = Vec::new();
    for (lane, (log, result)) in results.into_iter().enumerate() {
        eprintln!("---- valgrind lane {lane} ({}) ----", log.display());
        match std::fs::read_to_string(&log) {
            Ok(text) => eprint!("{text}"),
            Err(error) => eprintln!("(no output: {error})"),
        }
        if let Err(error) = result {
            eprintln!("valgrind lane {lane}: {error:#}");
            failed.push(format!("lane {lane}: {error:#}"));
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(None)
}

/// Runs `share` (test binaries with the tests of each this lane runs) under Valgrind, one after
/// another, with their output in `log`; stops at the first binary with errors.
fn valgrind_lane(share: &[(String, Vec<String>)], log: &Path) -> Result<()> {
    let out = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    for (binary, tests) in share {
        let name = Path::new(binary)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        cmd::run_bounded(
            std::process::Command::new("valgrind")
                .current_dir(cmd::root())
                .env("WEIR_MAX_PARK_MS", "10")
                .env("WEIR_UNDER_VALGRIND", "1")
                .stdout(out.try_clone().context("duplicate the lane's log")?)
                .stderr(out.try_clone().context("duplicate the lane's log")?)
                .args([
                    // Valgrind runs one thread at a time. Its default lock is not fair: a thread
                    // looping in `io_uring_enter` (which Valgrind does not treat as blocking)
                    // took it back each time, and a test's peer thread never ran.
                    "--fair-sched=yes",
                    "--error-exitcode=1",
                    "--quiet",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite",
                    "--track-fds=no",
                ])
                .arg(binary)
                .args(["--test-threads=1", "--exact"])
                .args(tests),
            TEST_LIMIT,
        )
        .with_context(|| format!("valgrind found errors in {name}"))?;
    }
    Ok(())
}

fn cross_check() -> Result<Option<String>> {
    let mut skipped = Vec::new();
    for target in CROSS_TARGETS {
        if let Err(reason) = cmd::ensure_rust_target(target) {
            eprintln!("SKIPPED: {target}: {reason}");
            skipped.push(format!("{target}: {reason}"));
            continue;
        }
        let packages = PORTABLE_CRATES.iter().flat_map(|name| ["--package", name]);
        cmd::run(
            cargo()
                .args(["check", "--target", target])
                .args(packages.clone()),
        )?;
        cmd::run(
            cargo()
                .args(["clippy", "--target", target])
                .args(packages)
                .args(["--", "-D", "warnings"]),
        )?;
    }
    if skipped.is_empty() {
        Ok(None)
    } else {
        Ok(Some(skipped.join("; ")))
    }
}

/// `cargo package` of every publishable crate (`--no-verify`: the steps above built and tested
/// them): manifests, READMEs and licence files complete enough to publish, and each crate's
/// files inside its package. Needs the crates.io index; skipped, loudly, when it is
/// unreachable.
fn package() -> Result<Option<String>> {
    let mut command = cargo();
    command.args(["package", "--workspace", "--no-verify", "--allow-dirty"]);
    for unpublished in ["xtask", "weir-benches", "weir-tests", "weir-testkit"] {
        command.args(["--exclude", unpublished]);
    }
    let output = command.output().context("run cargo package")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprint!("{stderr}");
    if output.status.success() {
        return Ok(None);
    }
    let offline = [
        "failed to get",
        "failed to download",
        "Couldn't resolve",
        "network",
    ];
    if offline.iter().any(|sign| stderr.contains(sign)) {
        return Ok(Some(
            "the crates.io index is unreachable (cargo package resolves dependencies there)".into(),
        ));
    }
    bail!("cargo package failed (above)")
}

fn tidy_step() -> Result<Option<String>> {
    if tidy::run()? {
        Ok(None)
    } else {
        bail!("tidy found problems (listed above)")
    }
}
