//! Helpers shared by the integration tests.

use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Polls on this thread, parking between wake-ups, with a watchdog.
pub(crate) use weir_testkit::block_on;

/// Polls once with a waker that does nothing.
pub(crate) fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}
