//! A portable readiness reactor for one thread: registrations, per-direction wakers with a
//! readiness tick, deadline timers, and a cross-thread notifier, over `polling` (epoll, kqueue,
//! event ports).
//!
//! `weir-net` drives sockets through this reactor where io_uring is unavailable or when asked
//! to (`WEIR_BACKEND=poll`). It is also usable alone: register a non-blocking socket, poll a
//! direction from a task, and call [`Reactor::turn`] from the thread's loop.
//!
//! # How it works
//!
//! * [`Reactor::register`] takes ownership of the I/O object, so its descriptor cannot close
//!   before it leaves the poller ([`Registration`] deletes it first, on drop or `into_inner`).
//! * Each registration has a readiness word with a tick (see [`ReadyEvent`]): the reactor sets
//!   bits, tasks clear them after `EAGAIN` only if no newer event arrived. Edge-triggered where
//!   supported, so errors and hang-ups are reported once, never spun on.
//! * [`Timers`] is an indexed binary heap: O(log n) insert, cancel and fire, FIFO among equal
//!   deadlines; `weir-net` uses it beside the io_uring driver too.
//! * A [`Notifier`] wakes a blocked `turn` from another thread; notifications coalesce.
//!
//! # Platforms
//!
//! Unix (Linux, FreeBSD, macOS, illumos). `cargo xtask ci` tests Linux twice — over raw epoll,
//! and over the `polling` backend every other platform uses (`--cfg weir_reactor_portable`) —
//! and compiles FreeBSD and macOS.

mod notify;
mod reactor;
mod readiness;
mod source;
mod sync;
mod sys;
mod timer;

#[cfg(all(test, weir_loom))]
mod tests;

pub use notify::Notifier;
pub use reactor::{Counters, Reactor, Registration, Sleep};
pub use readiness::{Direction, ReadyEvent};
pub use source::Source;
pub use timer::{TimerKey, TimerState, Timers};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
