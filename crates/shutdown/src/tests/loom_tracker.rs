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
