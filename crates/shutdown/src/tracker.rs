//! Counting in-flight work, and waiting for it to finish.
//!
//! # State word
//!
//! ```text
//!  usize:  [ count of live guards : 63 bits ][ closed : 1 bit ]
//! ```
//!
//! Everything a guard or `close` does is one read-modify-write of this word; the waiter list is
//! only locked when the word reaches `closed, 0` (one wake-up) or by a `wait()` that must park.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::Error;
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering, lock};
use crate::waiters::{WaiterKey, WakerSlab, wake_all};

const CLOSED: usize = 1;
const ONE_GUARD: usize = 2;

/// Counts in-flight work: each unit holds a [`Guard`], and [`wait`](Tracker::wait) resolves once
/// the tracker is [`close`](Tracker::close)d and every guard has dropped.
///
/// Clones share one count.
///
/// # Examples
///
/// ```
/// use weir_shutdown::Tracker;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tracker = Tracker::new();
/// for n in 0..3 {
///     let guard = tracker.track().expect("open");
///     tokio::spawn(async move {
///         let _guard = guard; // dropped when the task ends, also on panic
///         n * 2
///     });
/// }
/// tracker.close();
/// tracker.wait().await;
/// assert_eq!(tracker.len(), 0);
/// assert!(tracker.track().is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct Tracker {
    inner: Arc<Inner>,
}

struct Inner {
    /// See the module docs for the layout.
    state: AtomicUsize,
    /// Futures parked in `wait()`; woken once, when `state` becomes `CLOSED` with no guards.
    waiters: Mutex<WakerSlab>,
}

impl Tracker {
    /// Creates an open tracker with nothing in flight.
    pub fn new() -> Self {
        Tracker {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(0),
                waiters: Mutex::new(WakerSlab::default()),
            }),
        }
    }

    /// Counts one more unit of work until the returned guard drops.
    ///
    /// # Errors
    ///
    /// [`Error::TrackerClosed`] once the tracker is closed: no guard is handed out and the count
    /// is unchanged.
    pub fn track(&self) -> Result<Guard, Error> {
        Inner::add_guard(&self.inner, true)
    }

    /// Stops new tracking. Returns `true` if this call closed it, `false` if it already was.
    pub fn close(&self) -> bool {
        // AcqRel: Release so that a waiter seeing CLOSED sees what came before `close`; Acquire so
        // that if the count is already zero, this thread sees the guards' work before waking.
        let previous = self.inner.state.fetch_or(CLOSED, Ordering::AcqRel);
        if previous == 0 {
            self.inner.notify();
        }
        previous & CLOSED == 0
    }

    /// `true` once [`close`](Tracker::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Units of work in flight now.
    pub fn len(&self) -> usize {
        self.inner.state.load(Ordering::Acquire) / ONE_GUARD
    }

    /// `true` when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once the tracker is closed and every guard has dropped; all work those guards
    /// covered happens-before the resolution.
    ///
    /// Cancel safety: dropping it only removes its waker.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            inner: &self.inner,
            key: None,
        }
    }
}

impl Inner {
    /// One more guard; refused once closed if `unless_closed`.
    fn add_guard(inner: &Arc<Inner>, unless_closed: bool) -> Result<Guard, Error> {
        // Relaxed throughout: taking a guard publishes nothing; only the guards' decrements must
        // be ordered before `wait()` returns (see `Guard::drop`).
        let mut state = inner.state.load(Ordering::Relaxed);
        loop {
            if unless_closed && state & CLOSED != 0 {
                return Err(Error::TrackerClosed);
            }
            let Some(next) = state.checked_add(ONE_GUARD) else {
                return Err(Error::TrackerFull);
            };
            match inner.state.compare_exchange_weak(
                state,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    return Ok(Guard {
                        inner: inner.clone(),
                    });
                }
                Err(actual) => state = actual,
            }
        }
    }

    fn is_done(&self) -> bool {
        // Acquire: pairs with the Release decrement of every guard (each heads a release sequence
        // that the final value ends), so the waiter sees all tracked work.
        self.state.load(Ordering::Acquire) == CLOSED
    }

    fn notify(&self) {
        let wakers = lock(&self.waiters).take_all();
        wake_all(wakers);
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// One unit of tracked work; dropping it (also while unwinding) decrements the count.
///
/// # Examples
///
/// ```
/// let tracker = weir_shutdown::Tracker::new();
/// let guard = tracker.track().expect("open");
/// assert_eq!(tracker.len(), 1);
/// drop(guard);
/// assert_eq!(tracker.len(), 0);
/// ```
#[must_use = "the work is untracked as soon as the guard drops"]
pub struct Guard {
    inner: Arc<Inner>,
}

impl Guard {
    /// Counts one more unit of work, also once the tracker is closed: for work this guard's
    /// unit hands on (a connection taken before the close and served after it). While this
    /// guard lives, [`wait`](Tracker::wait) has not resolved, so the new unit is always awaited.
    ///
    /// # Errors
    ///
    /// [`Error::TrackerFull`] if the count is at its limit.
    ///
    /// # Examples
    ///
    /// ```
    /// let tracker = weir_shutdown::Tracker::new();
    /// let guard = tracker.track().expect("open");
    /// tracker.close();
    /// assert!(tracker.track().is_err());
    /// let another = guard.track_another().expect("a guard lives");
    /// drop(guard);
    /// assert_eq!(tracker.len(), 1);
    /// drop(another);
    /// assert!(tracker.is_empty());
    /// ```
    pub fn track_another(&self) -> Result<Guard, Error> {
        // The count is at least this guard's, so `wait` cannot resolve meanwhile.
        Inner::add_guard(&self.inner, false)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // Release: the guarded work happens-before a `wait()` that observes the final state.
        let previous = self.inner.state.fetch_sub(ONE_GUARD, Ordering::Release);
        if previous == CLOSED | ONE_GUARD {
            // We took the tracker to "closed and empty": wake the waiters (the waker slab's lock
            // orders this after every waiter's re-check).
            self.inner.notify();
        }
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

/// Future returned by [`Tracker::wait`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let tracker = weir_shutdown::Tracker::new();
/// tracker.close();
/// tracker.wait().await; // closed and empty: resolves at once
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Wait<'a> {
    inner: &'a Inner,
    key: Option<WaiterKey>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.inner.is_done() {
            this.key = None;
            return Poll::Ready(());
        }
        let mut waiters = lock(&this.inner.waiters);
        // Re-check under the lock: a notifier that changed the state before we locked either
        // already woke the slab (and we see its state now) or will take the lock after us.
        if this.inner.is_done() {
            this.key = None;
            return Poll::Ready(());
        }
        waiters.register(&mut this.key, cx.waker());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.inner.waiters).remove(key);
        }
    }
}

impl fmt::Debug for Wait<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wait")
            .field("registered", &self.key.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn track_after_close_gives_nothing_away() {
        let tracker = Tracker::new();
        let guard = tracker.track().expect("open");
        tracker.close();
        assert_eq!(tracker.track().err(), Some(Error::TrackerClosed));
        assert_eq!(tracker.len(), 1);
        drop(guard);
        assert_eq!(tracker.len(), 0);
    }

    #[test]
    fn wait_is_pending_until_closed_and_empty() {
        let tracker = Tracker::new();
        let mut cx = Context::from_waker(Waker::noop());
        let guard = tracker.track().expect("open");
        let mut wait = Box::pin(tracker.wait());
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        tracker.close();
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        drop(guard);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn close_reports_whether_it_closed() {
        let tracker = Tracker::new();
        assert!(tracker.close());
        assert!(!tracker.close());
    }

    #[test]
    fn guard_drops_during_unwind() {
        let tracker = Tracker::new();
        let t = tracker.clone();
        let result = std::panic::catch_unwind(move || {
            let _guard = t.track().expect("open");
            panic!("handler failed");
        });
        assert!(result.is_err());
        assert_eq!(tracker.len(), 0);
    }
}
