//! Timers on the runtime's own timer heap (the same on both backends).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use weir_reactor::TimerKey;

use crate::runtime;

/// Waits until `duration` has passed.
///
/// # Panics
///
/// When first polled outside a Weir runtime.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(Instant::now() + duration)
}

/// Waits until `deadline`.
///
/// # Panics
///
/// When first polled outside a Weir runtime.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        deadline,
        key: None,
    }
}

/// Future returned by [`sleep`] and [`sleep_until`]; dropping it cancels the timer.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    deadline: Instant,
    key: Option<TimerKey>,
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
        let mut timers = core.timers.borrow_mut();
        timers.poll_deadline(&mut this.key, this.deadline, cx)
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            if let Some(core) = runtime::try_current() {
                core.timers.borrow_mut().remove(key);
            }
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

/// Ticks every `period`, without drift (each deadline is the previous plus `period`).
pub fn interval(period: Duration) -> Interval {
    Interval {
        next: Instant::now() + period,
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
        self.next = at + self.period;
        at
    }
}
