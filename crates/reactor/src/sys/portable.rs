//! Everywhere but Linux, and on Linux under `--cfg weir_reactor_portable`: the `polling` crate
//! (kqueue, event ports, IOCP, or epoll).
//!
//! # Per platform
//!
//! * kqueue (FreeBSD, macOS): edge-triggered as `EV_CLEAR` ([`PollMode::Edge`]); [`Poller::notify`]
//!   is an `EVFILT_USER` event, no pipe. Timers stay in [`Timers`](crate::Timers) and the next
//!   deadline is `kevent`'s timeout: one syscall per turn, where an `EVFILT_TIMER` would cost a
//!   registration change each time the earliest deadline moves.
//! * IOCP (Windows, sockets only): no edge mode, so sources are oneshot ([`Selector::needs_rearm`]):
//!   each event disarms the source in both directions, and the reactor arms it again for the
//!   directions tasks wait in, when a task parks and after each event (see `readiness.rs`,
//!   "Oneshot arming").
//!
//! # Differences from the raw epoll selector, and how they are absorbed
//!
//! * A hang-up or an error (`EPOLLHUP`/`EPOLLERR`, IOCP's abort and connect failure, ...) is
//!   reported as `read_closed` where `polling` can tell ([`Event::is_interrupt`],
//!   [`Event::is_err`]), so the read direction stays ready after it, as with raw epoll.
//! * A *half*-close by the peer cannot be told apart from plain readability: `polling` does not
//!   ask epoll for `EPOLLRDHUP`, and its kqueue backend drops `EV_EOF`. A short read therefore
//!   does not prove the source drained: the data and the end of stream may have come in one
//!   edge, and no new edge follows the end of stream. [`Selector::short_read_drains`] is `false`
//!   here, so the reactor keeps the readiness until a read returns `EAGAIN`.

use std::io;
use std::mem::ManuallyDrop;
use std::num::NonZeroUsize;
#[cfg(unix)]
use std::os::fd::BorrowedFd as Borrowed;
#[cfg(windows)]
use std::os::windows::io::BorrowedSocket as Borrowed;
use std::time::Duration;

use polling::{Event, Events, PollMode, Poller};

use super::{EVENT_BATCH, SysEvent};
use crate::readiness::Interest;
use crate::source::RawSource;
use crate::sync::{Mutex, lock};

#[derive(Debug)]
pub(crate) struct Selector {
    /// Dropped only in the process that made it (`Drop for Selector`): over epoll, `polling`'s
    /// drop deletes its own timer and notification descriptors from the epoll instance, which a
    /// forked child shares with its parent, so a child's drop would delete the parent's.
    poller: ManuallyDrop<Poller>,
    /// The process that made `poller`.
    pid: u32,
    mode: PollMode,
    events: Mutex<Events>,
}

impl Drop for Selector {
    fn drop(&mut self) {
        if std::process::id() == self.pid {
            // SAFETY: `poller` is dropped here only, once, and not used after.
            unsafe { ManuallyDrop::drop(&mut self.poller) };
        }
        // Else a forked child's copy: its descriptors stay open until the child exits.
    }
}

impl Selector {
    pub(crate) fn new() -> io::Result<Self> {
        let poller = Poller::new()?;
        // `weir_reactor_oneshot` (tests and CI only, with `weir_reactor_portable`) takes the
        // oneshot path IOCP needs on a platform that has edge mode, so that its re-arming is
        // tested on Linux.
        let mode = if poller.supports_edge() && !cfg!(weir_reactor_oneshot) {
            PollMode::Edge
        } else {
            PollMode::Oneshot
        };
        Ok(Selector {
            poller: ManuallyDrop::new(poller),
            pid: std::process::id(),
            mode,
            events: Mutex::new(Events::with_capacity(
                NonZeroUsize::new(EVENT_BATCH).unwrap_or(NonZeroUsize::MIN),
            )),
        })
    }

    /// Oneshot platforms disarm a source after each event.
    pub(crate) fn needs_rearm(&self) -> bool {
        self.mode != PollMode::Edge
    }

    /// Whether a short read may clear the read readiness: never here (see the module docs).
    pub(crate) fn short_read_drains(&self) -> bool {
        false
    }

    /// Adds `fd` for both directions.
    ///
    /// # Safety
    ///
    /// `fd` must be deleted with [`delete`](Selector::delete) before it is closed.
    pub(crate) unsafe fn add(&self, fd: RawSource, key: usize) -> io::Result<()> {
        // SAFETY: the caller deletes `fd` before closing it (this function's contract), which is
        // `polling::Poller::add`'s contract.
        unsafe { self.poller.add_with_mode(fd, Event::all(key), self.mode) }
    }

    fn borrowed(fd: RawSource) -> Borrowed<'static> {
        // SAFETY: the reactor calls this only for registered descriptors, which stay open until
        // after `delete` (the `add` contract); the borrow does not outlive the call.
        unsafe { Borrowed::borrow_raw(fd) }
    }

    /// Arms a oneshot source again, for `interest` only: a direction nobody waits for would
    /// report an event (a writable socket at once) that only disarms the source again.
    pub(crate) fn rearm(&self, fd: RawSource, key: usize, interest: Interest) -> io::Result<()> {
        self.poller.modify_with_mode(
            Self::borrowed(fd),
            Event::new(key, interest.read, interest.write),
            self.mode,
        )
    }

    pub(crate) fn delete(&self, fd: RawSource) -> io::Result<()> {
        self.poller.delete(Self::borrowed(fd))
    }

    pub(crate) fn wait(
        &self,
        out: &mut Vec<SysEvent>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let mut events = lock(&self.events);
        events.clear();
        loop {
            match self.poller.wait(&mut events, timeout) {
                Ok(_) => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
        out.extend(events.iter().map(|event| SysEvent {
            key: event.key,
            readable: event.readable,
            writable: event.writable,
            // A hang-up or an error: no read will block again (what raw epoll reports with
            // `EPOLLHUP | EPOLLERR`). Platforms that cannot tell answer `false`/`None`.
            read_closed: event.is_interrupt() || event.is_err() == Some(true),
        }));
        Ok(())
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        self.poller.notify()
    }
}
