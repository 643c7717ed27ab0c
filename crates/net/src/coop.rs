//! The cooperative budget: a task may complete this many I/O operations in one poll before its
//! next operation yields once, so a socket that is always ready cannot monopolise the thread.

use std::cell::Cell;
use std::task::{Context, Poll};

const BUDGET: u32 = 128;

thread_local! {
    static REMAINING: Cell<u32> = const { Cell::new(BUDGET) };
}

/// Called by the executor before each task poll.
pub(crate) fn reset() {
    REMAINING.with(|r| r.set(BUDGET));
}

/// Spends one unit; when none is left, wakes the task and returns `Pending` once.
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    REMAINING.with(|r| {
        let left = r.get();
        if left == 0 {
            cx.waker().wake_by_ref();
            Poll::Pending
        } else {
            r.set(left - 1);
            Poll::Ready(())
        }
    })
}

/// Awaits one unit of budget.
pub(crate) async fn proceed() {
    std::future::poll_fn(poll_proceed).await
}
