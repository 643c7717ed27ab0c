//! Loom models of the notifier's wake-up protocol: another thread's submission racing the
//! owner's reset of the wake-up flag, and notifications racing each other.
//!
//! The eventfd write is replaced by a count; the remote queue and its `has_remote` flag copy
//! `Shared::submit` and `Shared::push_queued` in `ring.rs`, with their orderings.

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::notify::PendingWake;

#[test]
fn remote_submission_races_consumed() {
    loom::model(|| {
        let wake = Arc::new(PendingWake::new());
        // The previous cycle: a notification wrote, and the owner's armed read completed.
        assert!(wake.claim_write());
        let queue = Arc::new(Mutex::new(Vec::new()));
        let has_remote = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicUsize::new(0));
        let remote = {
            let (wake, queue) = (wake.clone(), queue.clone());
            let (has_remote, writes) = (has_remote.clone(), writes.clone());
            thread::spawn(move || {
                queue.lock().unwrap().push(7);
                has_remote.store(true, Ordering::Release);
                if wake.claim_write() {
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // The owner: step 1, then step 2 (its next turn's drain).
        wake.consumed();
        let drained =
            if has_remote.load(Ordering::Relaxed) && has_remote.swap(false, Ordering::Acquire) {
                std::mem::take(&mut *queue.lock().unwrap())
            } else {
                Vec::new()
            };
        remote.join().expect("remote");
        // A write can only follow `consumed` (the flag was set until then), so it completes the
        // read the owner arms next.
        let woken = writes.load(Ordering::Relaxed) == 1;
        assert!(drained == [7] || woken, "the submission is stranded");
    });
}

#[test]
fn concurrent_notifies_coalesce_into_one_write() {
    loom::model(|| {
        let wake = Arc::new(PendingWake::new());
        let writes = Arc::new(AtomicUsize::new(0));
        let notify = || {
            let (wake, writes) = (wake.clone(), writes.clone());
            thread::spawn(move || {
                if wake.claim_write() {
                    writes.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        let (first, second) = (notify(), notify());
        first.join().expect("first");
        second.join().expect("second");
        assert_eq!(writes.load(Ordering::Relaxed), 1, "one write per wake-up");
        // The owner consumes it; the next notification writes again.
        wake.consumed();
        assert!(wake.claim_write());
    });
}
