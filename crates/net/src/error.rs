//! The crate's error type.

use std::io;

/// What can go wrong when starting a runtime.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `Backend::Uring` was requested but io_uring cannot be used here.
    #[error("the io_uring backend was requested but is unavailable: {0}")]
    UringUnavailable(String),
    /// `WEIR_BACKEND` holds something other than `uring`, `poll` or `auto`.
    #[error("WEIR_BACKEND={0:?} is not one of uring, poll, auto")]
    BadBackendVariable(String),
    /// A backend name other than `uring`, `poll` or `auto` (from [`Backend`]'s `FromStr`).
    ///
    /// [`Backend`]: crate::Backend
    #[error("unknown backend {0:?}: expected one of uring, poll, auto")]
    BadBackend(String),
    /// The driver could not be created.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        match error {
            Error::Io(error) => error,
            Error::UringUnavailable(_) => io::Error::new(io::ErrorKind::Unsupported, error),
            Error::BadBackendVariable(_) | Error::BadBackend(_) => {
                io::Error::new(io::ErrorKind::InvalidInput, error)
            }
        }
    }
}
