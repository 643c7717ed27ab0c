//! Fixed-size I/O buffers for network I/O: pre-allocated regions, stable addresses, a 16-bit id
//! per buffer, lock-free recycling and zero-copy hand-off as `bytes::Bytes`.
//!
//! # How it works
//!
//! A [`Pool`] allocates its buffers in a few large zeroed regions (never one allocation per
//! buffer), so every buffer keeps one address for the pool's lifetime and has a `u16` id — what
//! io_uring's provided buffer rings and registered buffers speak. Free ids sit on a lock-free,
//! ABA-safe stack, fronted by a small per-thread cache so that acquire and release on one thread
//! touch no shared cache line; a [`Buf`] is an owned handle that returns its id on drop, from
//! any thread.
//! When the pool is exhausted, [`Pool::get`] waits in a FIFO queue and a release hands its buffer
//! straight to the oldest waiter. A pool may grow in chunks up to a cap, never beyond it; a pool
//! holds at most [`MAX_BUFFERS`] (65,536) buffers.
//!
//! The kernel's view: [`Pool::regions`] for buffer registration, [`Buf::into_raw`] and the
//! `unsafe` [`Pool::from_raw`] for buffers the kernel fills and reports by id.
//!
//! # Examples
//!
//! ```
//! use weir_bufpool::Config;
//!
//! let pool = Config::new(2048, 64).build().expect("config");
//! let mut buf = pool.try_get().expect("free");
//! let n = {
//!     let space = buf.as_full_mut();
//!     space[..4].copy_from_slice(b"ping");
//!     4
//! };
//! buf.set_len(n).expect("fits");
//! assert_eq!(&buf[..], b"ping");
//!
//! // Hand it on without copying; it returns to the pool when the last `Bytes` drops.
//! let frozen = buf.freeze();
//! let head = frozen.slice(..2);
//! drop(frozen);
//! assert_eq!(&head[..], b"pi");
//! assert_eq!(pool.stats().in_use, 1);
//! drop(head);
//! assert_eq!(pool.stats().in_use, 0);
//! ```
//!
//! # Features
//!
//! None. Depends on `bytes` and `thiserror`.

mod buf;
mod cache;
mod error;
mod freelist;
mod pool;
mod regions;
mod sync;

#[cfg(all(test, weir_loom))]
mod tests;

pub use buf::Buf;
pub use error::Error;
pub use pool::{Config, Get, MAX_BUFFERS, Pool, RegionView, Stats};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
