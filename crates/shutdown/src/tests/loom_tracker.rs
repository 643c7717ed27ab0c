//! Loom models of the in-flight tracker.

use loom::future::block_on;
use loom::thread;

use crate::Tracker;

#[test]
fn close_races_last_guard_drop() {
    loom::model(|| {
        let tracker = Tracker::new();
        let guard = tracker.track().expect("open");
        let dropper = thread::spawn(move || drop(guard));
        let closer = {
            let tracker = tracker.clone();
            thread::spawn(move || tracker.close())
        };
        block_on(tracker.wait());
        assert!(tracker.is_empty());
        dropper.join().expect("dropper");
        assert!(
            closer.join().expect("closer"),
            "close ran once and closed it"
        );
    });
}

#[test]
fn track_races_close() {
    loom::model(|| {
        let tracker = Tracker::new();
        let worker = {
            let tracker = tracker.clone();
            thread::spawn(move || {
                // Either refused, or counted until this thread lets go.
                let guard = tracker.track();
                drop(guard);
            })
        };
        tracker.close();
        block_on(tracker.wait());
        worker.join().expect("worker");
        assert_eq!(tracker.len(), 0);
    });
}

#[test]
fn a_guard_handed_on_after_close_is_awaited() {
    loom::model(|| {
        let tracker = Tracker::new();
        let guard = tracker.track().expect("open");
        let done = loom::sync::Arc::new(loom::sync::atomic::AtomicBool::new(false));
        let worker = {
            let done = done.clone();
            thread::spawn(move || {
                let handed_on = guard.track_another().expect("a guard lives");
                drop(guard);
                done.store(true, loom::sync::atomic::Ordering::Relaxed);
                drop(handed_on);
            })
        };
        tracker.close();
        block_on(tracker.wait());
        // The handed-on guard's work happens-before the wait resolves.
        assert!(done.load(loom::sync::atomic::Ordering::Relaxed));
        worker.join().expect("worker");
    });
}
