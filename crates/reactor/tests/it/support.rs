//! A minimal single-threaded executor over the reactor, for the tests.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use weir_reactor::Reactor;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `fut` to completion, turning the reactor whenever it is pending. Fails the test if
/// nothing wakes it for five seconds (a lost wake-up would otherwise hang the suite).
pub(crate) fn block_on<F: Future>(reactor: &Reactor, fut: F) -> F::Output {
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut idle_turns = 0;
    loop {
        if flag.0.swap(false, Ordering::SeqCst) {
            idle_turns = 0;
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
        reactor
            .turn(Some(Duration::from_millis(100)))
            .expect("turn");
        if !flag.0.load(Ordering::SeqCst) {
            idle_turns += 1;
            assert!(idle_turns < 50, "no wake-up for five seconds");
        }
    }
}
