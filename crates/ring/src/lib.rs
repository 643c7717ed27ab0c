//! Weir's io_uring driver: submission batching, multishot ops and provided buffer rings, with an
//! op table that owns everything the kernel may touch until the op's final completion.
//!
//! # How it works
//!
//! * [`Ring`] wraps one io_uring instance. [`Builder`] asks for the [`SetupFlag`]s
//!   `SUBMIT_ALL`, `COOP_TASKRUN`, `TASKRUN_FLAG`, `SINGLE_ISSUER` and `DEFER_TASKRUN` and falls
//!   back to fewer on older kernels, recording what it got ([`SetupReport`]); [`ProbeReport`]
//!   lists the [`Opcode`]s the kernel has. Setup failures come back as [`Error::Unavailable`]
//!   with a reason a log line can carry, so `weir-net` can fall back to the reactor and say why.
//! * Ops ([`Ring::read`], [`Ring::recv`], [`Ring::accept_multi`]...) box their data, build the
//!   SQE from the box, park the box in the [`OpTable`] and push the SQE. Nothing is submitted
//!   until [`Ring::turn`]: one `io_uring_enter` submits the batch and waits, then every CQE is
//!   reaped and the right tasks woken.
//! * The thread that builds a ring owns it and turns it. Ops may be started, polled and dropped
//!   on any thread: from elsewhere their SQEs and cancels are queued for the owner, which a
//!   [`Notifier`] (an eventfd the ring keeps a read armed on) wakes.
//! * Ops in the kernel are bounded by the completion queue: an op that would owe more
//!   completions than it holds waits in the ring and goes in as reaps make room, so single-shot
//!   ops cannot overflow it. What multishot ops overflow the kernel buffers and the ring flushes
//!   ([`Counters::overflows`]); completions the kernel really dropped ([`Counters::dropped`]) end
//!   their ops with `EIO` instead of leaving them waiting.
//! * A ring whose last handle is dropped on another thread is torn down by its owner (at its
//!   next turn or ring build, or when it exits): only the owner may enter the ring.
//! * Dropping an op's future parks its data in the table and queues an async cancel; the data
//!   is released only after the op's final CQE, and a result nobody will read (an accepted
//!   descriptor, a provided buffer) is cleaned up. The op lifecycle ([`OpTable`]) contains no
//!   syscalls, so loom, Miri and proptest check it against scripted completions.
//! * Buffers are owned ([`IoBuf`], [`IoBufMut`], [`Slice`]): an op takes the buffer and gives it
//!   back with the result ([`BufResult`]), so no borrow can outlive a dropped future.
//!
//! # Features
//!
//! * `bufpool`: the buffer traits for `weir_bufpool::Buf`.
//!
//! Linux only; the op lifecycle and the buffer traits compile everywhere (they are plain data).

mod buf;
#[cfg(target_os = "linux")]
mod bufring;
#[cfg(target_os = "linux")]
mod error;
#[cfg(all(test, target_os = "linux"))]
mod fake;
#[cfg(target_os = "linux")]
mod kernel;
pub mod lifecycle;
#[cfg(target_os = "linux")]
mod memcheck;
#[cfg(target_os = "linux")]
mod notify;
#[cfg(target_os = "linux")]
mod op;
#[cfg(target_os = "linux")]
mod ops;
#[cfg(target_os = "linux")]
mod orphan;
#[cfg(target_os = "linux")]
mod recycle;
#[cfg(target_os = "linux")]
mod ring;
#[cfg(target_os = "linux")]
mod setup;
mod sync;

#[cfg(all(test, weir_loom))]
mod tests;

pub use buf::{BufResult, IoBuf, IoBufMut, Slice};
#[cfg(target_os = "linux")]
pub use bufring::{
    BufRing, BufferSource, Message, ProvidedBuf, Received, ReceivedMsg, RecvMsgStream, RecvStream,
};
#[cfg(target_os = "linux")]
pub use error::Error;
pub use lifecycle::{Cqe, OpId, OpTable};
#[cfg(target_os = "linux")]
pub use notify::Notifier;
#[cfg(target_os = "linux")]
pub use op::{Linked, MultiOp, Op};
#[cfg(target_os = "linux")]
pub use ops::{AcceptData, AcceptStream, Datagram, MsgData, RawAddr, SharedFd, VectoredData};
#[cfg(target_os = "linux")]
pub use ring::{Counters, Ring};
#[cfg(target_os = "linux")]
pub use setup::{Builder, MAX_ENTRIES, Opcode, ProbeReport, SetupFlag, SetupReport};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
