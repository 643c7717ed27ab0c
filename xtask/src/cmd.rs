//! Running commands and installing the tools the checks need.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of this crate's folder).
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A `cargo` command run from the workspace root, with the toolchain cargo was invoked with.
pub(crate) fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(root());
    command
}

/// `cargo` from the nightly toolchain (for Miri), run from the workspace root through rustup.
pub(crate) fn nightly_cargo() -> Command {
    let mut command = Command::new("rustup");
    command
        .current_dir(root())
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .args(["run", "nightly", "cargo"]);
    command
}

/// Runs `command`, echoing it, and fails if it exits non-zero.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    eprintln!("$ {}", describe(command));
    let status = command
        .status()
        .with_context(|| format!("could not start {}", describe(command)))?;
    if !status.success() {
        bail!("{} exited with {status}", describe(command));
    }
    Ok(())
}

/// Runs `command` like [`run`], in its own process group, for at most `limit`: a command still
/// running then (a hung test) is killed and reported, and whatever the command left running
/// in its group (a test's stray child holding CI's output open) is killed when it ends.
pub(crate) fn run_bounded(command: &mut Command, limit: std::time::Duration) -> Result<()> {
    use std::os::unix::process::CommandExt;
    eprintln!("$ {}", describe(command));
    let mut child = command
        .process_group(0)
        .spawn()
        .with_context(|| format!("could not start {}", describe(command)))?;
    let group = format!("-{}", child.id());
    let (done, finished) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = done.send(());
        status
    });
    let timed_out = finished.recv_timeout(limit).is_err();
    let kill_group = || {
        Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if timed_out {
        kill_group();
    }
    let status = waiter
        .join()
        .map_err(|_| anyhow::anyhow!("the wait thread panicked"))?
        .with_context(|| format!("wait for {}", describe(command)))?;
    if kill_group() {
        eprintln!(
            "WARNING: {} left processes running in its group: killed",
            describe(command)
        );
    }
    if timed_out {
        bail!(
            "{} still running after {} s: killed (the test running longest above hangs)",
            describe(command),
            limit.as_secs()
        );
    }
    if !status.success() {
        bail!("{} exited with {status}", describe(command));
    }
    Ok(())
}

/// Runs `command` and returns its standard output; fails if it exits non-zero.
pub(crate) fn output(command: &mut Command) -> Result<String> {
    let out = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("could not start {}", describe(command)))?;
    if !out.status.success() {
        bail!("{} exited with {}", describe(command), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `true` if `program` runs and exits successfully with `args`.
pub(crate) fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn describe(command: &Command) -> String {
    let envs: Vec<String> = command
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
        .collect();
    let args: Vec<String> = command
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let program = Path::new(command.get_program())
        .file_name()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    [envs.join(" "), program, args.join(" ")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes sure `target` is installed for the active toolchain; returns why not if it can't be.
pub(crate) fn ensure_rust_target(target: &str) -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is not available ({e})"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == target)
    {
        return Ok(());
    }
    eprintln!("$ rustup target add {target}");
    if succeeds("rustup", &["target", "add", target]) {
        Ok(())
    } else {
        Err(format!("`rustup target add {target}` failed"))
    }
}

/// Makes sure a nightly toolchain with Miri is installed; returns why not if it can't be.
pub(crate) fn ensure_miri() -> Result<(), String> {
    if succeeds("rustup", &["run", "nightly", "cargo", "miri", "--version"]) {
        return Ok(());
    }
    eprintln!("$ rustup toolchain install nightly --profile minimal --component miri,rust-src");
    let installed = succeeds(
        "rustup",
        &[
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "miri,rust-src",
        ],
    ) || succeeds(
        "rustup",
        &[
            "component",
            "add",
            "miri",
            "rust-src",
            "--toolchain",
            "nightly",
        ],
    );
    if installed && succeeds("rustup", &["run", "nightly", "cargo", "miri", "--version"]) {
        Ok(())
    } else {
        Err("nightly Miri could not be installed with rustup".into())
    }
}

/// Makes sure `program` exists, installing Debian package `package` with apt if it does not;
/// returns why not if it can't be.
pub(crate) fn ensure_apt_program(program: &str, package: &str) -> Result<(), String> {
    if succeeds("sh", &["-c", &format!("command -v {program}")]) {
        return Ok(());
    }
    static UPDATED: OnceLock<bool> = OnceLock::new();
    if !succeeds("sh", &["-c", "command -v apt-get"]) {
        return Err(format!(
            "{program} is missing and there is no apt-get to install {package}"
        ));
    }
    let updated = *UPDATED.get_or_init(|| {
        eprintln!("$ apt-get update");
        succeeds("apt-get", &["update", "-qq"])
    });
    eprintln!("$ apt-get install -y {package}");
    if updated && succeeds("apt-get", &["install", "-y", "-qq", package]) {
        Ok(())
    } else {
        Err(format!(
            "{program} is missing and `apt-get install {package}` failed (not root, or no registry)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_bounded_command_that_overruns_is_killed_and_reported() {
        let started = Instant::now();
        let error = run_bounded(
            Command::new("sh").args(["-c", "sleep 600"]),
            Duration::from_secs(1),
        )
        .expect_err("a 600 s command within 1 s");
        assert!(
            error
                .to_string()
                .contains("still running after 1 s: killed"),
            "{error}"
        );
        assert!(started.elapsed() < Duration::from_secs(300), "not killed");
    }

    #[test]
    fn what_a_bounded_command_leaves_running_is_killed() {
        // The shell exits at once, leaving a child that holds the pipe's write end open.
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 600 & exit 0"]).stdout(writer);
        run_bounded(&mut command, Duration::from_secs(60)).expect("the shell succeeds");
        drop(command);
        // End of stream only once the left-over `sleep` is gone.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut reader, &mut rest).expect("end of stream");
        assert!(rest.is_empty());
    }

    #[test]
    fn a_bounded_command_that_fails_is_an_error() {
        let error = run_bounded(
            Command::new("sh").args(["-c", "exit 3"]),
            Duration::from_secs(60),
        )
        .expect_err("exit 3");
        assert!(error.to_string().contains("exited with"), "{error}");
    }
}
