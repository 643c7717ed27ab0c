//! The crate's error type.

use std::io;

/// What can go wrong with the lifecycle primitives.
///
/// # Examples
///
/// ```
/// let limit = weir_shutdown::Limit::new(0);
/// let error = limit.try_acquire().unwrap_err();
/// assert_eq!(error, weir_shutdown::Error::NoPermits);
/// let io: std::io::Error = error.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::WouldBlock);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The [`Limit`](crate::Limit) was closed: no more permits are handed out.
    #[error("the limit is closed")]
    Closed,
    /// `try_acquire` found too few free permits, or others already waiting.
    #[error("no permits are free right now")]
    NoPermits,
    /// A request or an addition beyond [`MAX_PERMITS`](crate::MAX_PERMITS).
    #[error("{requested} permits is more than a limit can hold")]
    TooManyPermits {
        /// The number asked for.
        requested: usize,
    },
    /// The [`Tracker`](crate::Tracker) was closed: no new work may start.
    #[error("the tracker is closed to new work")]
    TrackerClosed,
    /// The [`Tracker`](crate::Tracker) already counts as much work as its word can hold.
    #[error("the tracker cannot count any more work")]
    TrackerFull,
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        let kind = match error {
            Error::Closed | Error::TrackerClosed => io::ErrorKind::BrokenPipe,
            Error::NoPermits => io::ErrorKind::WouldBlock,
            Error::TooManyPermits { .. } => io::ErrorKind::InvalidInput,
            Error::TrackerFull => io::ErrorKind::QuotaExceeded,
        };
        io::Error::new(kind, error)
    }
}
