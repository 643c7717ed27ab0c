//! Choosing the backend: io_uring where it works, the readiness reactor elsewhere, and why.

use std::fmt;
use std::sync::OnceLock;

use crate::Error;

/// Which driver a runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring if it works here, else the reactor (the default; `WEIR_BACKEND` overrides it).
    Auto,
    /// io_uring, or an error if it is unavailable.
    Uring,
    /// The readiness reactor (epoll, kqueue...).
    Poll,
}

impl std::str::FromStr for Backend {
    type Err = Error;

    /// `uring`, `poll` or `auto` (what `WEIR_BACKEND` and the examples' `--backend` accept).
    fn from_str(name: &str) -> Result<Backend, Error> {
        match name {
            "uring" => Ok(Backend::Uring),
            "poll" => Ok(Backend::Poll),
            "auto" | "" => Ok(Backend::Auto),
            other => Err(Error::BadBackend(other.to_string())),
        }
    }
}

/// The backend chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendReport {
    /// `Uring` or `Poll`.
    pub backend: Backend,
    /// Why: forced by configuration or the environment, or what the io_uring probe found.
    pub reason: String,
}

impl fmt::Display for BackendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.backend {
            Backend::Uring => "io_uring",
            _ => "poll",
        };
        write!(f, "weir backend: {name} ({})", self.reason)
    }
}

static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
static REPORT: OnceLock<BackendReport> = OnceLock::new();

/// The backend report of the first runtime this process started (`None` before any).
pub fn backend_report() -> Option<BackendReport> {
    REPORT.get().cloned()
}

/// Probes io_uring once per process: setup and the opcodes the sockets need.
fn probe() -> Result<(), String> {
    PROBE
        .get_or_init(|| {
            if let Some(reason) = test_hook_blocks_uring() {
                return Err(reason);
            }
            super::probe_uring()
        })
        .clone()
}

/// `WEIR_TEST_BLOCK_URING=1` makes the probe fail as a sandbox that forbids io_uring would,
/// so the fallback can be tested on a machine where io_uring works.
fn test_hook_blocks_uring() -> Option<String> {
    std::env::var_os("WEIR_TEST_BLOCK_URING").map(|_| {
        "io_uring_setup is not permitted (EPERM, simulated by WEIR_TEST_BLOCK_URING)".into()
    })
}

/// The largest io_uring submission queue (`IORING_MAX_ENTRIES`).
const MAX_RING_ENTRIES: u32 = 32_768;

/// Why a runtime configured with `ring_entries` cannot have a ring, if it cannot.
fn ring_entries_problem(ring_entries: u32) -> Option<String> {
    (ring_entries == 0 || ring_entries > MAX_RING_ENTRIES)
        .then(|| format!("ring_entries({ring_entries}) is outside 1 to {MAX_RING_ENTRIES}"))
}

/// Resolves the requested backend against `WEIR_BACKEND`, the probe and the ring's
/// configuration: under `Auto` a ring size io_uring cannot have falls back to the reactor (and
/// says so); an explicit io_uring fails with `InvalidInput`.
pub(crate) fn choose(requested: Backend, ring_entries: u32) -> Result<BackendReport, Error> {
    let from_env = match std::env::var("WEIR_BACKEND") {
        Ok(value) => Some(
            value
                .parse::<Backend>()
                .map_err(|_| Error::BadBackendVariable(value))?,
        )
        .filter(|b| *b != Backend::Auto),
        Err(_) => None,
    };
    let (wanted, source) = match (requested, from_env) {
        (Backend::Auto, Some(env)) => (env, "WEIR_BACKEND"),
        (requested, _) => (requested, "the runtime builder"),
    };
    let problem = ring_entries_problem(ring_entries);
    let report = match wanted {
        Backend::Poll => BackendReport {
            backend: Backend::Poll,
            reason: format!("requested by {source}"),
        },
        Backend::Uring => match probe() {
            Ok(()) if problem.is_some() => {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "invalid io_uring configuration: {}",
                        problem.unwrap_or_default()
                    ),
                )));
            }
            Ok(()) => BackendReport {
                backend: Backend::Uring,
                reason: format!("requested by {source}"),
            },
            Err(why) => return Err(Error::UringUnavailable(why)),
        },
        Backend::Auto => match probe() {
            Ok(()) if problem.is_some() => BackendReport {
                backend: Backend::Poll,
                reason: format!("fell back to the reactor: {}", problem.unwrap_or_default()),
            },
            Ok(()) => BackendReport {
                backend: Backend::Uring,
                reason: "io_uring probed and working".into(),
            },
            Err(why) => BackendReport {
                backend: Backend::Poll,
                reason: format!("fell back to the reactor: {why}"),
            },
        },
    };
    if REPORT.set(report.clone()).is_ok() {
        crate::event!(INFO, "{report}");
    }
    Ok(report)
}
