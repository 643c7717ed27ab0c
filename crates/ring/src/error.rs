//! The crate's error type.

use std::io;

/// Why a ring could not be set up or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// io_uring cannot be used here; `reason` says why in words a log line can carry (no kernel
    /// support, blocked by seccomp or `kernel.io_uring_disabled`, locked-memory limit...).
    #[error("io_uring is unavailable: {reason}")]
    Unavailable {
        /// What was found.
        reason: String,
        /// The failed syscall's error, if one failed.
        #[source]
        source: Option<io::Error>,
    },
    /// The ring was configured with a value the kernel cannot accept (a queue size of zero or
    /// beyond the kernel's maximum...); the text says which.
    #[error("invalid io_uring configuration: {0}")]
    InvalidConfig(String),
    /// The kernel lacks an opcode or feature Weir needs.
    #[error("io_uring lacks {0}, which Weir needs")]
    Missing(&'static str),
    /// A syscall on the ring failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Io(error) => error,
            Error::Unavailable {
                source: Some(ref s),
                ..
            } => io::Error::new(s.kind(), error),
            Error::InvalidConfig(_) => io::Error::new(io::ErrorKind::InvalidInput, error),
            other => io::Error::new(io::ErrorKind::Unsupported, other),
        }
    }
}

/// Classifies a failed `io_uring_setup`.
pub(crate) fn setup_error(error: io::Error) -> Error {
    let reason = match error.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (ENOSYS)",
        Some(libc::EPERM) => {
            "io_uring_setup is not permitted (EPERM: seccomp, a container policy, or kernel.io_uring_disabled)"
        }
        Some(libc::EINVAL) => "the kernel rejected the ring parameters (EINVAL: too old for them)",
        Some(libc::ENOMEM) => {
            "not enough locked memory for the ring (ENOMEM: raise RLIMIT_MEMLOCK)"
        }
        Some(libc::EMFILE) | Some(libc::ENFILE) => {
            "no descriptor left for the ring (EMFILE/ENFILE)"
        }
        _ => "io_uring_setup failed",
    };
    Error::Unavailable {
        reason: reason.to_string(),
        source: Some(error),
    }
}
