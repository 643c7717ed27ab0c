//! A minimal executor that turns the ring while a future is pending.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use weir_ring::Ring;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Polls `fut` to completion, turning `ring` while it is pending; fails after 10 s without a
/// wake-up (a lost completion would otherwise hang the suite).
pub(crate) fn block_on<F: Future>(ring: &Ring, fut: F) -> F::Output {
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let mut idle = 0;
    loop {
        if flag.0.swap(false, Ordering::SeqCst) {
            idle = 0;
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return out;
            }
        }
        ring.turn(Some(Duration::from_millis(100))).expect("turn");
        if !flag.0.load(Ordering::SeqCst) {
            idle += 1;
            assert!(idle < 100, "no completion for ten seconds");
        }
    }
}

/// Open descriptors of this process.
pub(crate) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Turns `ring` until nothing is in flight (cancelled ops reaped), or fails after 10 s.
pub(crate) fn settle(ring: &Ring) {
    for _ in 0..1_000 {
        if ring.in_flight() == 0 {
            return;
        }
        ring.turn(Some(Duration::from_millis(10))).expect("turn");
    }
    panic!("{} ops never completed", ring.in_flight());
}

/// Serialises the real-kernel tests: they count this process's descriptors, which tests
/// running in parallel would disturb.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
