//! Loom model of a task's queued flag: a wake from another thread while the runtime is about to
//! poll the task either queues it again or is seen by that poll.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use crate::runqueue::Queued;

#[test]
fn a_wake_racing_the_poll_is_seen_or_queues_again() {
    loom::model(|| {
        // The task is in the queue (its flag set) and the runtime is about to poll it.
        let queued = Arc::new(Queued::new());
        assert!(queued.wake());
        // What the waker publishes before waking (relaxed: only the flag may order it).
        let data = Arc::new(AtomicUsize::new(0));
        let waker = {
            let (queued, data) = (queued.clone(), data.clone());
            thread::spawn(move || {
                data.store(1, Ordering::Relaxed);
                queued.wake()
            })
        };
        queued.polling();
        let seen = data.load(Ordering::Relaxed);
        let queued_again = waker.join().expect("waker");
        assert!(
            seen == 1 || queued_again,
            "the wake was lost: the poll did not see it and the task was not queued again"
        );
    });
}

#[test]
fn many_wakes_before_a_poll_queue_the_task_once() {
    loom::model(|| {
        let queued = Arc::new(Queued::new());
        let other = {
            let queued = queued.clone();
            thread::spawn(move || queued.wake())
        };
        let here = queued.wake();
        let there = other.join().expect("waker");
        assert!(here ^ there, "exactly one of two wakes queues the task");
    });
}
