//! Owned buffers: an operation takes its buffer by value and gives it back with the result.
//! The traits are weir-ring's (the crate that hands memory to the kernel), re-exported here and
//! used on both backends.

pub use weir_ring::{BufResult, IoBuf, IoBufMut, Slice};
