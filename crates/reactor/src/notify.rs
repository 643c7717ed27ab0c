//! Waking the reactor from other threads, many notifications coalesced into one wake-up.

use std::fmt;
use std::io;

use crate::sync::{Arc, AtomicBool, AtomicU64, Ordering};
use crate::sys::Selector;

/// The coalescing state machine, separate from the syscall so that loom can check it.
///
/// `pending` is set by the first notifier after the reactor last looked; only that notifier
/// pays for the wake-up syscall. The reactor clears it *before* draining its work queues, so a
/// notification that arrives after the clear always produces a new wake-up.
#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    pending: AtomicBool,
}

impl Coalescer {
    /// Returns `true` if the caller must perform the wake-up.
    pub(crate) fn request(&self) -> bool {
        // AcqRel: the notifier's writes (work it queued) happen-before the reactor's `clear`
        // that observes `true`, and so before the reactor drains its queues.
        !self.pending.swap(true, Ordering::AcqRel)
    }

    /// Called by the reactor after waking, before looking at queued work.
    pub(crate) fn clear(&self) {
        // AcqRel, see `request`.
        self.pending.swap(false, Ordering::AcqRel);
    }
}

pub(crate) struct NotifyShared {
    pub(crate) coalescer: Coalescer,
    pub(crate) requested: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) selector: Arc<Selector>,
}

/// A cheap, cloneable, `Send + Sync` handle that wakes a [`Reactor`](crate::Reactor) blocked in
/// [`turn`](crate::Reactor::turn) from any thread. Many notifications before the reactor wakes
/// cost one wake-up.
#[derive(Clone)]
pub struct Notifier {
    pub(crate) shared: Arc<NotifyShared>,
}

impl Notifier {
    /// Wakes the reactor (or makes its next `turn` return at once).
    ///
    /// # Errors
    ///
    /// The wake-up syscall failed (the poller is gone); nothing was queued.
    pub fn notify(&self) -> io::Result<()> {
        self.shared.requested.fetch_add(1, Ordering::Relaxed);
        if self.shared.coalescer.request() {
            self.shared.delivered.fetch_add(1, Ordering::Relaxed);
            self.shared.selector.notify()?;
        }
        Ok(())
    }
}

impl fmt::Debug for Notifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}
