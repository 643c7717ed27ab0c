//! Waking a ring's owner from another thread: an eventfd that the owner keeps a read armed on
//! whenever a turn may block.
//!
//! # Protocol
//!
//! ```text
//!  any thread: notify()                    owner: turn()
//!    pending.swap(true) was false? ──┐       1. a completed wake read: pending = false
//!      yes: write(eventfd, 1)        │       2. take the remote submissions (queued before 1
//!      no:  a write is on its way ◄──┘          are seen here, later ones write again)
//!                                            3. about to block: arm a READ of the eventfd
//!                                            4. io_uring_enter; the read completes on a write
//! ```
//!
//! At most one write is outstanding per wake-up (`pending` coalesces them), and a notification
//! can never be lost: one that lands after step 1 finds `pending` false and writes, which the
//! armed (or next-armed) read sees.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sync::unmodelled::{Arc, AtomicBool, AtomicU64, Ordering};

/// Wakes a [`Ring`](crate::Ring)'s owner from any thread: its blocked [`turn`] returns, and work
/// queued for it from other threads is submitted. `Send + Sync`; clones share the eventfd.
///
/// [`turn`]: crate::Ring::turn
#[derive(Clone)]
pub struct Notifier {
    pub(crate) shared: Arc<NotifyShared>,
}

pub(crate) struct NotifyShared {
    pub(crate) eventfd: Arc<OwnedFd>,
    /// `true` from a notification's write until the owner consumed it (see the module docs).
    pending: AtomicBool,
    requested: AtomicU64,
    delivered: AtomicU64,
}

impl NotifyShared {
    pub(crate) fn new() -> io::Result<NotifyShared> {
        // SAFETY: eventfd(2) with valid flags; the result is checked before use.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor that nothing else owns.
        let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(NotifyShared {
            eventfd: Arc::new(eventfd),
            pending: AtomicBool::new(false),
            requested: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        })
    }

    /// The owner consumed a wake-up (step 1 of the protocol).
    pub(crate) fn consumed(&self) {
        // SeqCst: ordered before the owner's look at the remote queue (step 2), so a
        // notification whose queue push that look misses finds `pending` false and writes.
        self.pending.store(false, Ordering::SeqCst);
    }

    pub(crate) fn counts(&self) -> (u64, u64) {
        (
            self.requested.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
        )
    }
}

impl Notifier {
    /// Wakes the ring's owner (a no-op if a wake-up is already on its way).
    pub fn notify(&self) {
        let shared = &*self.shared;
        shared.requested.fetch_add(1, Ordering::Relaxed);
        // SeqCst: pairs with `consumed`; the caller's queue push before this call is visible to
        // the owner once it sees the write.
        if shared.pending.swap(true, Ordering::SeqCst) {
            return;
        }
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        let one = 1u64;
        // SAFETY: write(2) of 8 bytes from `one` to an eventfd this handle keeps open. A failure
        // can only be EAGAIN (the counter is saturated: a wake-up is pending anyway).
        let _ = unsafe { libc::write(self.shared.eventfd.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (requested, delivered) = self.shared.counts();
        f.debug_struct("Notifier")
            .field("requested", &requested)
            .field("delivered", &delivered)
            .finish()
    }
}
