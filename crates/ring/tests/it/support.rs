//! Helpers shared by the ring's integration tests: driving a future on the ring, counting
//! descriptors, settling cancelled ops, serialising the real-kernel tests.

use std::future::Future;
use std::time::Duration;

use weir_ring::Ring;

/// Polls `fut` to completion, turning `ring` between polls; fails after
/// [`weir_testkit::WATCHDOG`] without a wake-up (a lost completion would otherwise hang the
/// suite).
pub(crate) fn block_on<F: Future>(ring: &Ring, fut: F) -> F::Output {
    weir_testkit::block_on_turning(fut, |timeout| {
        ring.turn(Some(timeout)).expect("turn");
    })
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
