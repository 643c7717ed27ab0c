//! Timers on the runtime's own timer heap (the same on both backends).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::driver::TimerKey;
use crate::runtime;

/// `now + duration`, or a deadline so far off it never comes (for `Duration::MAX` and the like).
pub(crate) fn deadline_after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// Waits until `duration` has passed (any duration: `Duration::MAX` waits forever).
///
/// # Panics
///
/// When first polled outside a Weir runtime.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(deadline_after(duration))
}

/// Waits until `deadline`.
///
/// # Panics
///
/// When first polled outside a Weir runtime.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        registered: None,
    }
}

/// Future returned by [`sleep`] and [`sleep_until`]; dropping it cancels the timer.
///
/// A `Sleep` is registered with the timer heap of the runtime that first polls it. Polled on
/// another runtime's thread later, it moves there (the first runtime is told to drop its entry);
/// dropped on another thread, it tells its runtime to drop the entry. So a timer never touches
/// another runtime's heap.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    deadline: Instant,
    registered: Option<Registered>,
}

/// Where a `Sleep`'s timer is: its key in the heap of the runtime `home`.
struct Registered {
    key: TimerKey,
    home: u64,
    /// The home runtime's queue, to remove the entry from another thread.
    queue: std::sync::Arc<runtime::Queue>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("key", &self.key)
            .field("home", &self.home)
            .finish_non_exhaustive()
    }
}

impl Registered {
    /// Removes the entry from its heap: directly on the home runtime's thread, through the home
    /// runtime's queue from anywhere else.
    fn remove(self, current: Option<&runtime::Core>) {
        match current {
            Some(core) if core.id == self.home => {
                core.timers.borrow_mut().remove(self.key);
            }
            _ => {
                let key = self.key;
                self.queue.push_job(Box::new(move || {
                    if let Some(core) = runtime::try_current() {
                        core.timers.borrow_mut().remove(key);
                    }
                }));
            }
        }
    }
}

impl Sleep {
    /// When it resolves.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let core = runtime::current();
        if let Some(registered) = this.registered.take_if(|r| r.home != core.id) {
            registered.remove(Some(&core));
        }
        let mut key = this.registered.as_ref().map(|r| r.key);
        let polled = core
            .timers
            .borrow_mut()
            .poll_deadline(&mut key, this.deadline, cx);
        this.registered = match (key, this.registered.take()) {
            (Some(key), Some(registered)) => Some(Registered { key, ..registered }),
            (Some(key), None) => Some(Registered {
                key,
                home: core.id,
                queue: core.queue.clone(),
            }),
            (None, _) => None,
        };
        polled
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(registered) = self.registered.take() {
            registered.remove(runtime::try_current().as_deref());
        }
    }
}

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Runs `fut` for at most `duration`. Dropping `fut` at the deadline follows its own
/// cancel-safety contract.
///
/// # Errors
///
/// [`Elapsed`] if the deadline came first.
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let mut fut = std::pin::pin!(fut);
    let mut sleep = std::pin::pin!(sleep(duration));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Ok(out));
        }
        sleep.as_mut().poll(cx).map(|()| Err(Elapsed))
    })
    .await
}

/// Ticks every `period`, without drift (each deadline is the previous plus `period`; a period
/// too long to add waits forever).
pub fn interval(period: Duration) -> Interval {
    Interval {
        next: deadline_after(period),
        period,
    }
}

/// Returned by [`interval`].
#[derive(Debug)]
pub struct Interval {
    next: Instant,
    period: Duration,
}

impl Interval {
    /// Waits for the next tick; returns its scheduled instant.
    pub async fn tick(&mut self) -> Instant {
        let at = self.next;
        sleep_until(at).await;
        self.next = at
            .checked_add(self.period)
            .unwrap_or_else(|| deadline_after(Duration::MAX));
        at
    }
}
