//! `cargo xtask bench`: Weir's benchmarks.
//!
//! What exists today are the micro benchmarks of the primitives (each against its tokio or
//! system-allocator counterpart in the same run). The side-by-side server benchmark (Weir on the
//! ring and on the reactor against tokio, monoio and a raw epoll loop) needs `weir-net`'s
//! runtime and is not built yet: this command says so instead of printing invented figures.

use anyhow::{Result, bail};

use crate::cmd::{self, cargo};

/// Micro benchmarks: (package, bench target).
const MICRO: &[(&str, &str)] = &[("weir-shutdown", "primitives"), ("weir-bufpool", "pool")];

pub(crate) fn run(args: &[String]) -> Result<bool> {
    let full = args.iter().any(|a| a == "--full");
    if let Some(unknown) = args.iter().find(|a| *a != "--full") {
        bail!("unknown flag {unknown} (bench takes --full)");
    }
    for (package, bench) in MICRO {
        let folder = package.trim_start_matches("weir-");
        if !cmd::root()
            .join("crates")
            .join(folder)
            .join("benches")
            .join(format!("{bench}.rs"))
            .is_file()
        {
            eprintln!("bench: {package}/{bench} does not exist yet, skipped");
            continue;
        }
        let mut command = cargo();
        command.args(["bench", "--package", package, "--bench", bench]);
        if full {
            command.env("WEIR_BENCH_FULL", "1");
        }
        cmd::run(&mut command)?;
    }
    println!(
        "\nNOT BUILT YET: the side-by-side server benchmark (Weir ring/reactor vs tokio, monoio and \
         a raw epoll loop) needs weir-net's runtime; only the micro benchmarks above ran."
    );
    Ok(true)
}
