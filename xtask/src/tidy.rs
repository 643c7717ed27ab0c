//! `cargo xtask tidy`: the architecture invariants that a machine can check.
//!
//! * **Layering** (from `cargo metadata`): `weir-ring`, `weir-reactor`, `weir-bufpool` and
//!   `weir-shutdown` depend on no other Weir crate; only `weir-net` composes them; nothing in
//!   the runtime path depends on tokio, monoio or hyper (except optional compatibility features
//!   of `weir-net`); the pure crates (`weir-bufpool`, `weir-shutdown`) depend on no I/O crate;
//!   the ring does not use `polling` and the reactor does not use `io-uring`.
//! * **Docs**: every Rust file starts with a `//!` comment.
//! * **Loom shims**: a crate with `src/sync.rs` imports `std::sync` nowhere else in `src/`.
//! * **No stubs**: no to-do or unimplemented macro calls, and no ignored tests.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd::{self, cargo};

/// The four lower crates: each owns one concern and depends on no other Weir crate.
const LOWER: &[&str] = &["weir-ring", "weir-reactor", "weir-bufpool", "weir-shutdown"];
/// Packages that may depend on anything: they are not part of any shipped crate.
const HARNESSES: &[&str] = &["xtask", "weir-tests", "weir-benches"];
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
    if problems.is_empty() {
        eprintln!("tidy: layering, docs, loom shims and stubs are clean");
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
        let why = if LOWER.contains(&from) && to.starts_with("weir-") {
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
    fn std_sync_imports_are_caught_but_comments_are_not() {
        assert!(imports_std_sync("use std::sync::Arc;"));
        assert!(!imports_std_sync("// mentions std::sync in prose"));
    }
}
