//! The crate's error type.

use std::io;

/// What can go wrong with a buffer pool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A pool identifies buffers by `u16`, so it holds at most 65,536 of them.
    #[error("a pool holds at most 65536 buffers (ids are 16 bits), {requested} were configured")]
    TooManyBuffers {
        /// The configured maximum.
        requested: usize,
    },
    /// The configuration cannot describe a pool (zero sizes, a bad alignment, or regions larger
    /// than memory can address).
    #[error("invalid pool configuration: {0}")]
    InvalidConfig(&'static str),
    /// The system allocator refused a region.
    #[error("could not allocate a region of {bytes} bytes")]
    OutOfMemory {
        /// The size of the refused region.
        bytes: usize,
    },
    /// A length beyond the buffer's capacity.
    #[error("length {len} exceeds the buffer capacity {capacity}")]
    LengthOutOfRange {
        /// The length asked for.
        len: usize,
        /// The buffer's capacity.
        capacity: usize,
    },
    /// An id the pool never handed out.
    #[error("buffer id {0} does not belong to this pool")]
    UnknownId(u16),
}

impl From<Error> for io::Error {
    fn from(error: Error) -> Self {
        let kind = match error {
            Error::TooManyBuffers { .. }
            | Error::InvalidConfig(_)
            | Error::LengthOutOfRange { .. }
            | Error::UnknownId(_) => io::ErrorKind::InvalidInput,
            Error::OutOfMemory { .. } => io::ErrorKind::OutOfMemory,
        };
        io::Error::new(kind, error)
    }
}
