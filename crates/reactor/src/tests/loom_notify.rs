//! Loom model of notification coalescing.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use crate::notify::Coalescer;

#[test]
fn concurrent_notifies_cost_one_wake_up_and_none_is_lost() {
    loom::model(|| {
        let coalescer = Arc::new(Coalescer::default());
        let wakeups = Arc::new(AtomicUsize::new(0));
        let work = Arc::new(AtomicUsize::new(0));
        let notifiers: Vec<_> = (0..2)
            .map(|_| {
                let (coalescer, wakeups, work) = (coalescer.clone(), wakeups.clone(), work.clone());
                thread::spawn(move || {
                    work.fetch_add(1, Ordering::Relaxed);
                    if coalescer.request() {
                        wakeups.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        // The reactor: wakes, clears, then drains the work queued so far.
        coalescer.clear();
        let drained = work.swap(0, Ordering::AcqRel);
        for n in notifiers {
            n.join().expect("notifier");
        }
        let left = work.load(Ordering::Acquire);
        let wakeups = wakeups.load(Ordering::Relaxed);
        assert!(wakeups >= 1 && wakeups <= 2);
        // Work queued after the reactor's clear must have a wake-up pending for it.
        if left > 0 {
            assert!(
                !coalescer.request(),
                "work was queued with no wake-up pending"
            );
        }
        assert_eq!(drained + left, 2);
    });
}
