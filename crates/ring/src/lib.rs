//! Weir's io_uring driver: submission batching, multishot ops and provided buffer rings, with an
//! op table that owns everything the kernel may touch until the op's final completion.
//!
//! # How it works
//!
//! * [`Ring`] wraps one io_uring instance. [`Builder`] asks for `SUBMIT_ALL`, `COOP_TASKRUN`,
//!   `SINGLE_ISSUER` and `DEFER_TASKRUN` and falls back to fewer flags on older kernels,
//!   recording what it got ([`SetupReport`]); [`ProbeReport`] lists the opcodes the kernel has.
//!   Setup failures come back as [`Error::Unavailable`] with a reason a log line can carry, so
//!   `weir-net` can fall back to the reactor and say why.
//! * Ops ([`Ring::read`], [`Ring::recv`], [`Ring::accept_multi`]...) box their data, build the
//!   SQE from the box, park the box in the [`OpTable`] and push the SQE. Nothing is submitted
//!   until [`Ring::turn`]: one `io_uring_enter` submits the batch and waits, then every CQE is
//!   reaped and the right tasks woken.
//! * Dropping an op's future parks its data in the table and queues an async cancel; the data
//!   is released only after the op's final CQE, and a result nobody will read (an accepted
//!   descriptor, a provided buffer) is cleaned up. The op lifecycle ([`OpTable`]) contains no
//!   syscalls, so loom, Miri and proptest check it against scripted completions.
//! * Buffers are owned: a read takes the buffer and gives it back with the result
//!   (`(io::Result<usize>, B)`), so no borrow can outlive a dropped future.
//!
//! Linux only; the op lifecycle compiles everywhere (it is plain data).

#[cfg(target_os = "linux")]
mod buf;
#[cfg(target_os = "linux")]
mod bufring;
#[cfg(target_os = "linux")]
mod error;
pub mod lifecycle;
#[cfg(target_os = "linux")]
mod memcheck;
#[cfg(target_os = "linux")]
mod ops;
#[cfg(target_os = "linux")]
mod ring;
mod sync;

#[cfg(all(test, weir_loom))]
mod tests;

#[cfg(target_os = "linux")]
pub use buf::{IoBuf, IoBufMut};
#[cfg(target_os = "linux")]
pub use bufring::{BufRing, BufferSource, ProvidedBuf, Received, RecvStream};
#[cfg(target_os = "linux")]
pub use error::Error;
pub use lifecycle::{Cqe, OpId, OpTable};
#[cfg(target_os = "linux")]
pub use ops::{
    AcceptData, AcceptStream, BufResult, Datagram, MsgData, SharedFd, Stash, WritevData,
};
#[cfg(target_os = "linux")]
pub use ring::{Builder, Counters, Linked, MultiOp, Op, ProbeReport, Ring, SetupReport};
