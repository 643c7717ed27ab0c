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
//! armed (or next-armed) read sees. Step 1 and the swap each sit behind a SeqCst fence
//! ([`PendingWake`], the syscall-free part, which the loom models check): without the fences,
//! a notification could see the old `true` while the owner misses its queued work.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::sync::atomic::{AtomicBool, Ordering, fence};
use crate::sync::unmodelled::{Arc, AtomicU64};

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
    pending: PendingWake,
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
            pending: PendingWake::new(),
            requested: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        })
    }

    /// The owner consumed a wake-up (step 1 of the protocol).
    pub(crate) fn consumed(&self) {
        self.pending.consumed();
    }

    pub(crate) fn counts(&self) -> (u64, u64) {
        // Relaxed: statistics; a slightly stale pair is fine.
        (
            self.requested.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
        )
    }
}

/// The syscall-free half of the protocol: decides which notification writes the eventfd. The
/// loom models (`tests/loom_notify.rs`) check it with the eventfd write replaced by a count.
///
/// # Guarantee
///
/// What a thread did before [`claim_write`](Self::claim_write) (queue a submission, set
/// `has_remote`) is seen by what the owner reads after [`consumed`](Self::consumed), or that
/// claim, or a later one, returns `true` and writes. Between two `consumed` calls at most one
/// claim returns `true`.
pub(crate) struct PendingWake {
    /// `true` from a notification's claim (its write) until the owner consumed the wake-up.
    pending: AtomicBool,
}

impl PendingWake {
    /// No wake-up pending: the next [`claim_write`](Self::claim_write) wins.
    pub(crate) fn new() -> PendingWake {
        PendingWake {
            pending: AtomicBool::new(false),
        }
    }

    /// A notification: `true` if the caller must write the eventfd, `false` if a write since
    /// the last [`consumed`](Self::consumed) is already on its way.
    pub(crate) fn claim_write(&self) -> bool {
        // SeqCst fence, paired with the one in `consumed`: the caller's writes (its queue push,
        // `has_remote`) and the owner's `pending = false` are a store-buffering pattern. If
        // this fence comes first in the SeqCst order, the owner's later loads see the caller's
        // writes; if the owner's comes first, the swap below comes after its store and reads
        // `false`. Without both fences both sides could read stale values (a SeqCst swap alone
        // does not order the caller's earlier Release store of `has_remote`) and the submission
        // would be stranded, as the `remote_submission_races_consumed` model shows.
        fence(Ordering::SeqCst);
        // Relaxed: a read-modify-write always reads the latest value, so exactly one claim
        // per reset sees `false`; no memory is handed over through `pending` itself (the owner
        // learns of the write from the eventfd).
        !self.pending.swap(true, Ordering::Relaxed)
    }

    /// The owner consumed a wake-up (step 1): the next notification writes again. Call it
    /// before looking for the work other threads queued (step 2).
    pub(crate) fn consumed(&self) {
        // Relaxed: the fence below orders it; nothing is published through `pending`.
        self.pending.store(false, Ordering::Relaxed);
        // SeqCst fence, paired with the one in `claim_write` (see there): orders this store
        // before the owner's look at the remote queue, which Release/Acquire cannot do.
        fence(Ordering::SeqCst);
    }
}

impl Notifier {
    /// Wakes the ring's owner (a no-op if a wake-up is already on its way).
    pub fn notify(&self) {
        let shared = &*self.shared;
        // Relaxed (both counters): statistics for `Debug`; nothing is read through them.
        shared.requested.fetch_add(1, Ordering::Relaxed);
        if !shared.pending.claim_write() {
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
