//! Linux: `epoll(7)` and `eventfd(2)` directly.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::{EVENT_BATCH, SysEvent};
use crate::readiness::Interest;

/// The key reserved for the selector's own notification eventfd.
const NOTIFY_KEY: usize = usize::MAX;

/// Runs a libc call that returns -1 and sets `errno` on failure.
macro_rules! syscall {
    ($name:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every call site passes valid descriptors and pointers to live, correctly
        // sized values, as its man page requires; see the comment at the call site.
        let result = unsafe { libc::$name($($arg),*) };
        if result == -1 { Err(io::Error::last_os_error()) } else { Ok(result) }
    }};
}

#[derive(Debug)]
pub(crate) struct Selector {
    epoll: OwnedFd,
    notify: OwnedFd,
}

const READ_FLAGS: u32 =
    (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
const WRITE_FLAGS: u32 = (libc::EPOLLOUT | libc::EPOLLHUP | libc::EPOLLERR) as u32;
const CLOSED_FLAGS: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;

impl Selector {
    pub(crate) fn new() -> io::Result<Self> {
        // epoll_create1(2): a new descriptor we own at once.
        let epoll = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: `epoll` was just returned by the kernel and is owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(epoll) };
        // eventfd(2): likewise.
        let notify = syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?;
        // SAFETY: as above.
        let notify = unsafe { OwnedFd::from_raw_fd(notify) };
        let selector = Selector { epoll, notify };
        // Edge-triggered: every `write` to the eventfd is a new edge, so it never needs
        // re-arming; it is drained only when it fires.
        selector.ctl(
            libc::EPOLL_CTL_ADD,
            selector.notify.as_raw_fd(),
            NOTIFY_KEY,
            libc::EPOLLIN as u32,
        )?;
        Ok(selector)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, key: usize, flags: u32) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: flags | libc::EPOLLET as u32,
            u64: key as u64,
        };
        // epoll_ctl(2): `event` lives across the call.
        syscall!(epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event))?;
        Ok(())
    }

    /// Edge-triggered is native here; there is nothing to re-arm.
    pub(crate) fn needs_rearm(&self) -> bool {
        false
    }

    /// Adds `fd` for both directions.
    ///
    /// # Safety
    ///
    /// `fd` must be deleted with [`delete`](Selector::delete) before it is closed.
    pub(crate) unsafe fn add(&self, fd: RawFd, key: usize) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, key, READ_FLAGS | WRITE_FLAGS)
    }

    /// Whether a short read may clear the read readiness: yes, every event carries
    /// `EPOLLRDHUP`, so an end of stream that came with the data is remembered as `read_closed`
    /// and keeps the source readable.
    pub(crate) fn short_read_drains(&self) -> bool {
        true
    }

    pub(crate) fn rearm(&self, _fd: RawFd, _key: usize, _interest: Interest) -> io::Result<()> {
        Ok(())
    }

    pub(crate) fn delete(&self, fd: RawFd) -> io::Result<()> {
        // epoll_ctl(2) with EPOLL_CTL_DEL ignores the event argument (non-null for old kernels).
        let mut unused = libc::epoll_event { events: 0, u64: 0 };
        syscall!(epoll_ctl(
            self.epoll.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd,
            &mut unused
        ))?;
        Ok(())
    }

    /// Waits for events, retrying `EINTR`. Notifications are consumed here and not returned.
    pub(crate) fn wait(
        &self,
        out: &mut Vec<SysEvent>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let timeout_ms: libc::c_int = match timeout {
            None => -1,
            // Round up: a sub-millisecond timeout must not become a busy poll.
            Some(t) => t
                .as_nanos()
                .div_ceil(1_000_000)
                .min(libc::c_int::MAX as u128) as libc::c_int,
        };
        // Left uninitialised: zeroing EVENT_BATCH entries on every wait cost more user-space
        // instructions than the rest of a request; the kernel fills the first `count`.
        let mut events =
            [const { std::mem::MaybeUninit::<libc::epoll_event>::uninit() }; EVENT_BATCH];
        let count = loop {
            // epoll_wait(2): `events` has room for EVENT_BATCH entries.
            match syscall!(epoll_wait(
                self.epoll.as_raw_fd(),
                events.as_mut_ptr().cast::<libc::epoll_event>(),
                EVENT_BATCH as libc::c_int,
                timeout_ms
            )) {
                Ok(count) => break count as usize,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        };
        for event in &events[..count.min(EVENT_BATCH)] {
            // SAFETY: epoll_wait(2) initialised the first `count` entries.
            let event = unsafe { event.assume_init_read() };
            let key = event.u64 as usize;
            if key == NOTIFY_KEY {
                self.drain_notify();
                continue;
            }
            out.push(SysEvent {
                key,
                readable: event.events & READ_FLAGS != 0,
                writable: event.events & WRITE_FLAGS != 0,
                read_closed: event.events & CLOSED_FLAGS != 0,
            });
        }
        Ok(())
    }

    fn drain_notify(&self) {
        let mut counter = 0u64;
        // read(2) of an eventfd: 8 bytes into `counter`. EAGAIN (already drained) is fine.
        let _ = syscall!(read(
            self.notify.as_raw_fd(),
            (&raw mut counter).cast(),
            std::mem::size_of::<u64>()
        ));
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        let one = 1u64;
        // write(2) to an eventfd: 8 bytes from `one`. EAGAIN means the counter is saturated,
        // which still leaves the descriptor readable: the wake-up is pending either way.
        match syscall!(write(
            self.notify.as_raw_fd(),
            (&raw const one).cast(),
            std::mem::size_of::<u64>()
        )) {
            Ok(_) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(error) => Err(error),
        }
    }
}
