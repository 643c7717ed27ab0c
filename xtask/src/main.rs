//! Weir's developer commands, run as `cargo xtask <command>`.
//!
//! * `cargo xtask ci [--quick] [--only STEP]` — every check CI runs, in order, with a summary
//!   table (`--only`: the steps whose names start with STEP).
//! * `cargo xtask bench [--full] [--micro] [--only B1,B6,...]` — the benchmarks.
//! * `cargo xtask tidy` — the layering and source-hygiene checks alone.

mod bench;
mod ci;
mod cmd;
mod tidy;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("tidy") => tidy::run(),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 ci [--quick] [--only STEP]\n                  run every check (fmt, clippy, tests on both backends, docs, loom,\n                  \
                 Miri, Valgrind, cross-platform check, tidy); --quick skips Miri, Valgrind\n                  \
                 and the cross-platform check; --only STEP runs the steps named STEP...\n  \
                 bench [--full] [--micro] [--only B1,B6,...]\n                  \
                 run the benchmarks (--only: those scenarios alone)\n  \
                 tidy            check crate layering and source hygiene"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}
