//! `cargo xtask tidy`: the architecture invariants that a machine can check.
//!
//! * **Layering** (from `cargo metadata`): `weir-ring`, `weir-reactor`, `weir-bufpool` and
//!   `weir-shutdown` depend on no other Weir crate (but for the ring's optional `bufpool` feature,
//!   its buffer traits for the pool's buffers); only `weir-net` composes them; nothing in
//!   the runtime path depends on tokio, monoio or hyper (except optional compatibility features
//!   of `weir-net`); the pure crates (`weir-bufpool`, `weir-shutdown`) depend on no I/O crate;
//!   the ring does not use `polling` and the reactor does not use `io-uring`.
//! * **Docs**: every Rust file starts with a `//!` comment.
//! * **Loom shims**: a crate with `src/sync.rs` imports `std::sync` nowhere else in `src/`.
//! * **No stubs**: no to-do or unimplemented macro calls, and no ignored tests.
//! * **weir-net's driver split**: outside `crates/net/src/driver/` and `sys.rs`, no code names
//!   a backend (`Backend::Uring`/`Backend::Poll`: no `match` on the backend), uses a backend
//!   crate (`weir_ring::`, `weir_reactor::`; `buf.rs` re-exports the ring's buffer traits), has a
//!   platform `cfg(target_os = ...)`, or calls `libc` (raw syscalls live in `sys.rs`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd::{self, cargo};

/// The four lower crates: each owns one concern and depends on no other Weir crate.
const LOWER: &[&str] = &["weir-ring", "weir-reactor", "weir-bufpool", "weir-shutdown"];
/// Packages that may depend on anything: they are not part of any shipped crate.
const HARNESSES: &[&str] = &["xtask", "weir-tests", "weir-benches", "weir-testkit"];
/// Runtimes that may appear only as baselines or optional compatibility features.
const FOREIGN_RUNTIMES: &[&str] = &["tokio", "tokio-util", "monoio", "hyper", "async-std"];
/// Crates that perform I/O, forbidden in the pure crates.
const IO_CRATES: &[&str] = &["io-uring", "polling", "socket2", "libc", "mio"];

/// One declared dependency of one workspace package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Edge {
    pub(crate) from: String,
    pub(crate) to: String,
    /// `normal`, `build` or `dev`.
    pub(crate) kind: String,
    pub(crate) optional: bool,
}

pub(crate) fn run() -> Result<bool> {
    let mut problems = layering(&workspace_edges()?);
    problems.extend(source_hygiene()?);
    problems.extend(driver_split()?);
    if problems.is_empty() {
        eprintln!("tidy: layering, docs, loom shims, stubs and the driver split are clean");
        return Ok(true);
    }
    for problem in &problems {
        eprintln!("tidy: {problem}");
    }
    Ok(false)
}

/// Reads every workspace package's declared dependencies.
pub(crate) fn workspace_edges() -> Result<Vec<Edge>> {
    let json = cmd::output(cargo().args(["metadata", "--format-version", "1", "--no-deps"]))?;
    let metadata: Value = serde_json::from_str(&json).context("cargo metadata is not JSON")?;
    let mut edges = Vec::new();
    for package in metadata["packages"].as_array().context("no packages")? {
        let from = package["name"].as_str().context("package without name")?;
        for dep in package["dependencies"]
            .as_array()
            .context("no dependencies")?
        {
            edges.push(Edge {
                from: from.to_string(),
                to: dep["name"]
                    .as_str()
                    .context("dependency without name")?
                    .to_string(),
                kind: dep["kind"].as_str().unwrap_or("normal").to_string(),
                optional: dep["optional"].as_bool().unwrap_or(false),
            });
        }
    }
    Ok(edges)
}

/// Every edge that breaks the design's layering, described.
pub(crate) fn layering(edges: &[Edge]) -> Vec<String> {
    let mut problems = Vec::new();
    for edge in edges {
        let from = edge.from.as_str();
        let to = edge.to.as_str();
        if HARNESSES.contains(&from) || edge.kind == "dev" {
            continue;
        }
        // The ring implements its buffer traits for the pool's buffers behind an optional
        // feature: the pool is pure memory, so the ring still depends on no I/O of another crate.
        let ring_buffer_impls = (from, to) == ("weir-ring", "weir-bufpool") && edge.optional;
        let why = if LOWER.contains(&from) && to.starts_with("weir-") && !ring_buffer_impls {
            Some("the lower crates depend on no other Weir crate; only weir-net composes them")
        } else if from != "weir-net" && to == "weir-net" {
            Some("nothing but tests, benchmarks and tools depends on weir-net")
        } else if FOREIGN_RUNTIMES.contains(&to) && !(from == "weir-net" && edge.optional) {
            Some(
                "foreign runtimes are baselines or optional compatibility features, never Weir's runtime path",
            )
        } else if ["weir-bufpool", "weir-shutdown"].contains(&from) && IO_CRATES.contains(&to) {
            Some("weir-bufpool and weir-shutdown perform no I/O")
        } else if (from, to) == ("weir-ring", "polling")
            || (from, to) == ("weir-reactor", "io-uring")
        {
            Some("the ring and the reactor never share a backend")
        } else {
            None
        };
        if let Some(why) = why {
            problems.push(format!(
                "forbidden dependency {from} -> {to} ({} dependency): {why}",
                edge.kind
            ));
        }
    }
    problems
}

/// Collects the `.rs` files below `dir` (none if it does not exist).
pub(crate) fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn source_hygiene() -> Result<Vec<String>> {
    let root = cmd::root();
    let mut problems = Vec::new();
    let mut files = Vec::new();
    for top in ["crates", "xtask", "tests", "benches"] {
        rust_files(&root.join(top), &mut files)?;
    }
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let shown = file.strip_prefix(&root).unwrap_or(file).display();
        problems.extend(
            file_problems(&text)
                .into_iter()
                .map(|p| format!("{shown}: {p}")),
        );
    }
    // Loom shims: in a crate that has `src/sync.rs`, nothing else in `src/` names `std::sync`.
    for entry in std::fs::read_dir(root.join("crates"))? {
        let src = entry?.path().join("src");
        if !src.join("sync.rs").is_file() {
            continue;
        }
        let mut sources = Vec::new();
        rust_files(&src, &mut sources)?;
        for file in sources.iter().filter(|f| !f.ends_with("sync.rs")) {
            let text = std::fs::read_to_string(file)?;
            if imports_std_sync(&text) {
                problems.push(format!(
                    "{}: imports std::sync in a loom-modelled crate; use the crate's sync shim",
                    file.strip_prefix(&root).unwrap_or(file).display()
                ));
            }
        }
    }
    Ok(problems)
}

/// Problems in one source file: a missing `//!` header, or a stub.
fn file_problems(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if !first.trim_start().starts_with("//!") {
        problems.push("does not start with a `//!` doc comment".to_string());
    }
    // Spelled in pieces so that this file does not flag itself.
    let stubs = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("#[", "ignore"),
    ];
    for (number, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        if let Some(stub) = stubs.iter().find(|s| line.contains(*s)) {
            problems.push(format!(
                "line {}: `{stub}` is a stub or an ignored test",
                number + 1
            ));
        }
    }
    problems
}

/// The files of weir-net that may know which backend they are on.
fn knows_the_backend(relative: &Path) -> bool {
    relative.starts_with("driver") || relative == Path::new("sys.rs")
}

/// weir-net's driver split, over the real sources (see the module docs).
fn driver_split() -> Result<Vec<String>> {
    let src = cmd::root().join("crates/net/src");
    let mut files = Vec::new();
    rust_files(&src, &mut files)?;
    files.sort();
    let mut problems = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap_or(file);
        if knows_the_backend(relative) {
            continue;
        }
        let text = std::fs::read_to_string(file)?;
        problems.extend(
            driver_split_problems(relative, &text)
                .into_iter()
                .map(|p| format!("crates/net/src/{}: {p}", relative.display())),
        );
    }
    Ok(problems)
}

/// What in one weir-net file outside the driver breaks the driver split.
fn driver_split_problems(relative: &Path, text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let may_reexport_ring_buffers = relative == Path::new("buf.rs");
    for (number, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let why = if code.contains("Backend::Uring") || code.contains("Backend::Poll") {
            Some("names a backend (a match on the backend belongs in driver/)")
        } else if code.contains("cfg(target_os") || code.contains("cfg(not(target_os") {
            Some("has a platform cfg (only driver/ and sys.rs have them)")
        } else if code.contains("weir_reactor::")
            || (code.contains("weir_ring::") && !may_reexport_ring_buffers)
        {
            Some("uses a backend crate (only driver/ does)")
        } else if calls_libc(code) {
            Some("calls libc (raw syscalls live in sys.rs)")
        } else {
            None
        };
        if let Some(why) = why {
            problems.push(format!("line {}: {why}", number + 1));
        }
    }
    problems
}

/// `true` if `code` calls a `libc` function (`libc::name(`; constants are upper case).
fn calls_libc(code: &str) -> bool {
    code.match_indices("libc::").any(|(at, _)| {
        let rest = &code[at + "libc::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        !name.is_empty()
            && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && rest[name.len()..].starts_with('(')
    })
}

fn imports_std_sync(text: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        !line.starts_with("//") && line.contains("std::sync")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: &str, to: &str, kind: &str, optional: bool) -> Edge {
        Edge {
            from: from.into(),
            to: to.into(),
            kind: kind.into(),
            optional,
        }
    }

    #[test]
    fn the_real_workspace_is_layered() {
        let edges = workspace_edges().expect("cargo metadata");
        assert!(
            edges.iter().any(|e| e.from == "weir-shutdown"),
            "metadata was read"
        );
        assert_eq!(layering(&edges), Vec::<String>::new());
    }

    #[test]
    fn ring_depending_on_reactor_is_caught() {
        let mut edges = workspace_edges().expect("cargo metadata");
        edges.push(edge("weir-ring", "weir-reactor", "normal", false));
        let problems = layering(&edges);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("weir-ring -> weir-reactor"));
    }

    #[test]
    fn other_forbidden_edges_are_caught() {
        for (from, to, optional) in [
            ("weir-bufpool", "weir-net", false),
            ("weir-shutdown", "libc", false),
            ("weir-reactor", "io-uring", false),
            ("weir-ring", "polling", false),
            ("weir-net", "tokio", false),
            ("weir-ring", "tokio", true),
            ("weir-ring", "weir-bufpool", false),
            ("weir-ring", "weir-shutdown", true),
        ] {
            let problems = layering(&[edge(from, to, "normal", optional)]);
            assert_eq!(problems.len(), 1, "{from} -> {to} was not caught");
        }
    }

    #[test]
    fn allowed_edges_pass() {
        for (from, to, kind, optional) in [
            ("weir-net", "weir-ring", "normal", false),
            ("weir-net", "tokio", "normal", true),
            ("weir-shutdown", "tokio", "dev", false),
            ("weir-tests", "weir-net", "normal", false),
            ("weir-ring", "io-uring", "normal", false),
            ("weir-ring", "weir-bufpool", "normal", true),
        ] {
            assert!(
                layering(&[edge(from, to, kind, optional)]).is_empty(),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn missing_header_and_stubs_are_caught() {
        assert_eq!(file_problems("//! ok\nfn f() {}\n"), Vec::<String>::new());
        assert_eq!(file_problems("fn f() {}\n").len(), 1);
        let stub = format!("//! x\nfn f() {{ {}) }}\n", concat!("todo", "!("));
        assert_eq!(file_problems(&stub).len(), 1);
    }

    #[test]
    fn the_real_net_sources_keep_the_driver_split() {
        assert_eq!(driver_split().expect("sources"), Vec::<String>::new());
    }

    #[test]
    fn a_match_on_the_backend_outside_the_driver_is_refused() {
        let injected = "//! x\nfn f(b: Backend) -> u8 {\n    match b {\n        Backend::Uring => 1,\n        _ => 0,\n    }\n}\n";
        let problems = driver_split_problems(Path::new("tcp.rs"), injected);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("line 4") && problems[0].contains("names a backend"));
        assert!(knows_the_backend(Path::new("driver/uring.rs")));
        assert!(!knows_the_backend(Path::new("stream/owned.rs")));
    }

    #[test]
    fn platform_cfgs_backend_crates_and_libc_calls_outside_the_driver_are_refused() {
        for (line, what) in [
            ("#[cfg(target_os = \"linux\")]", "platform cfg"),
            ("let ring: weir_ring::Ring = todo;", "backend crate"),
            ("use weir_reactor::Reactor;", "backend crate"),
            ("let n = unsafe { libc::read(fd, p, 1) };", "calls libc"),
        ] {
            let problems = driver_split_problems(Path::new("udp.rs"), line);
            assert_eq!(problems.len(), 1, "{line}: {problems:?}");
            assert!(problems[0].contains(what), "{line}: {problems:?}");
        }
        // Allowed: comments, libc constants, the buffer traits' re-export, std's Poll.
        for line in [
            "// Backend::Uring in prose",
            "Some(libc::EMFILE) => 1,",
            "std::task::Poll::Ready(())",
        ] {
            assert!(
                driver_split_problems(Path::new("tcp.rs"), line).is_empty(),
                "{line}"
            );
        }
        assert!(driver_split_problems(Path::new("buf.rs"), "pub use weir_ring::IoBuf;").is_empty());
    }

    #[test]
    fn std_sync_imports_are_caught_but_comments_are_not() {
        assert!(imports_std_sync("use std::sync::Arc;"));
        assert!(!imports_std_sync("// mentions std::sync in prose"));
    }
}
