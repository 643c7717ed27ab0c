//! Draining: stop new work, wait for running work, give up at a deadline.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;

use crate::{Token, Tracker};

/// What a [`drain`] found.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use weir_shutdown::{Token, Tracker, drain};
/// let (token, tracker) = (Token::new(), Tracker::new());
/// let report = drain(&token, &tracker, std::future::pending::<()>()).await;
/// assert_eq!((report.in_flight_at_start, report.deadline_passed), (0, false));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Work in flight when the drain began.
    pub in_flight_at_start: usize,
    /// Of those, how many finished before the deadline.
    pub finished: usize,
    /// Still running when the drain returned (non-zero only if the deadline passed first).
    pub still_running: usize,
    /// `true` if the deadline, not the last guard, ended the drain.
    pub deadline_passed: bool,
}

/// Cancels `token`, closes `tracker`, and waits until the tracked work is done or `deadline`
/// resolves, whichever comes first.
///
/// The deadline is any future — a runtime's `sleep`, a channel, a test's hand-made trigger — so
/// this crate needs no clock. What still runs at the deadline is the caller's to force-close
/// (for instance through the connections' child tokens).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use weir_shutdown::{Token, Tracker, drain};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let token = Token::new();
/// let tracker = Tracker::new();
/// for delay_ms in [10, 5_000] {
///     let guard = tracker.track().expect("open");
///     tokio::spawn(async move {
///         let _guard = guard;
///         tokio::time::sleep(Duration::from_millis(delay_ms)).await;
///     });
/// }
/// let report = drain(&token, &tracker, tokio::time::sleep(Duration::from_millis(200))).await;
/// assert_eq!(report.in_flight_at_start, 2);
/// assert_eq!(report.finished, 1);
/// assert_eq!(report.still_running, 1);
/// assert!(report.deadline_passed);
/// # }
/// ```
pub async fn drain<D: Future>(token: &Token, tracker: &Tracker, deadline: D) -> DrainReport {
    token.cancel();
    tracker.close();
    let in_flight_at_start = tracker.len();
    let mut wait = pin!(tracker.wait());
    let mut deadline = pin!(deadline);
    let deadline_passed = std::future::poll_fn(|cx| {
        if wait.as_mut().poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        deadline.as_mut().poll(cx).map(|_| true)
    })
    .await;
    let still_running = tracker.len();
    DrainReport {
        in_flight_at_start,
        finished: in_flight_at_start.saturating_sub(still_running),
        still_running,
        deadline_passed,
    }
}
