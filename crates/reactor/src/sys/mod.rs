//! The one place the reactor picks its OS interface.
//!
//! * Linux: `epoll` directly (`epoll.rs`): sources edge-triggered, an `eventfd` for
//!   notifications, the timeout passed to `epoll_wait` itself. One syscall per turn.
//! * Everywhere else: the `polling` crate (`portable.rs`): kqueue, event ports, IOCP, and the
//!   rest. `RUSTFLAGS="--cfg weir_reactor_portable"` selects it on Linux too (over `polling`'s
//!   epoll), so that the code every other platform depends on runs in CI; it is a test and CI
//!   option, never a feature a dependent could switch on.
//!
//! Why not `polling` on Linux too: its epoll backend re-arms a timerfd and its notification
//! eventfd around every wait (`timerfd_settime`, `epoll_ctl` twice, a `read`), which is four extra
//! syscalls per turn — more than the work of a ping-pong round trip. Both implementations offer
//! the same `Selector` interface and the same edge-triggered semantics.

#[cfg(all(target_os = "linux", not(weir_reactor_portable)))]
mod epoll;
#[cfg(any(not(target_os = "linux"), weir_reactor_portable))]
mod portable;

#[cfg(all(target_os = "linux", not(weir_reactor_portable)))]
pub(crate) use epoll::Selector;
#[cfg(any(not(target_os = "linux"), weir_reactor_portable))]
pub(crate) use portable::Selector;

/// One readiness event, as the reactor consumes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SysEvent {
    pub(crate) key: usize,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer ended its stream, or the source hung up or failed: reads will not block again.
    pub(crate) read_closed: bool,
}

/// Most events one wait returns.
pub(crate) const EVENT_BATCH: usize = 1024;
