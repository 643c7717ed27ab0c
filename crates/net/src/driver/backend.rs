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

/// Resolves the requested backend against `WEIR_BACKEND` and the probe.
pub(crate) fn choose(requested: Backend) -> Result<BackendReport, Error> {
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
    let report = match wanted {
        Backend::Poll => BackendReport {
            backend: Backend::Poll,
            reason: format!("requested by {source}"),
        },
        Backend::Uring => match probe() {
            Ok(()) => BackendReport {
                backend: Backend::Uring,
                reason: format!("requested by {source}"),
            },
            Err(why) => return Err(Error::UringUnavailable(why)),
        },
        Backend::Auto => match probe() {
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
