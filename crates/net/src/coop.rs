//! The cooperative budget: a task may complete this many I/O operations in one poll before its
//! next operation yields once, so a socket that is always ready cannot monopolise the thread.
//!
//! The budget exists only while a runtime polls a task (it resets it before each poll). A Weir
//! future polled by anything else — another executor, a plain thread — has no budget: nothing
//! would reset it, so spending it would make every later operation yield forever.

use std::cell::Cell;
use std::task::{Context, Poll};

const BUDGET: u32 = 128;

/// `REMAINING` outside a runtime's task polls: no budget is kept.
const UNLIMITED: u32 = u32::MAX;

thread_local! {
    static REMAINING: Cell<u32> = const { Cell::new(UNLIMITED) };
}

/// Called by the executor before each task poll.
pub(crate) fn reset() {
    REMAINING.with(|r| r.set(BUDGET));
}

/// Called when a runtime stops polling on this thread: futures polled here from now on are not
/// the runtime's tasks.
pub(crate) fn lift() {
    REMAINING.with(|r| r.set(UNLIMITED));
}

/// Spends one unit; when none is left, wakes the task and returns `Pending` once.
pub(crate) fn poll_proceed(cx: &mut Context<'_>) -> Poll<()> {
    REMAINING.with(|r| {
        let left = r.get();
        if left == UNLIMITED {
            Poll::Ready(())
        } else if left == 0 {
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
