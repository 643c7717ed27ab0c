//! Loom models of the run queue: a wake or a job from another thread racing the runtime's park
//! is never lost.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use crate::runqueue::{Ready, RunQueue, Unpark};

/// A driver that blocks until unparked (a binary semaphore, like an eventfd).
#[derive(Default)]
struct Blocker {
    pending: Mutex<bool>,
    signal: Condvar,
    unparks: AtomicUsize,
}

impl Unpark for Arc<Blocker> {
    fn unpark(&self) {
        self.unparks.fetch_add(1, Ordering::Relaxed);
        *self.pending.lock().expect("lock") = true;
        self.signal.notify_one();
    }
}

impl Blocker {
    fn block(&self) {
        let mut pending = self.pending.lock().expect("lock");
        while !*pending {
            pending = self.signal.wait(pending).expect("wait");
        }
        *pending = false;
    }
}

/// The runtime's loop: park until something is queued, then take it.
fn run_until_queued(queue: &RunQueue<Arc<Blocker>>, blocker: &Blocker) -> Ready {
    let mut taken = Ready::default();
    loop {
        queue.take_all(&mut taken);
        if !taken.tasks.is_empty() || !taken.jobs.is_empty() {
            return taken;
        }
        // Deadlocks (loom reports it) if the push slipped past the park.
        queue.park(|| blocker.block(), || ());
    }
}

#[test]
fn loom_a_wake_from_another_thread_is_never_lost() {
    loom::model(|| {
        let blocker = Arc::new(Blocker::default());
        let queue = Arc::new(RunQueue::new(blocker.clone()));
        let waker = {
            let queue = queue.clone();
            thread::spawn(move || queue.push(7))
        };
        let taken = run_until_queued(&queue, &blocker);
        assert_eq!(taken.tasks, [7]);
        waker.join().expect("waker");
    });
}

#[test]
fn loom_a_job_from_another_thread_is_never_lost_and_runs_once() {
    loom::model(|| {
        let blocker = Arc::new(Blocker::default());
        let queue = Arc::new(RunQueue::new(blocker.clone()));
        let ran = Arc::new(AtomicUsize::new(0));
        let sender = {
            let (queue, ran) = (queue.clone(), ran.clone());
            thread::spawn(move || {
                queue.push_job(Box::new(move || {
                    ran.fetch_add(1, Ordering::Relaxed);
                }))
            })
        };
        let taken = run_until_queued(&queue, &blocker);
        taken.jobs.into_iter().for_each(|job| job());
        sender.join().expect("sender");
        assert_eq!(ran.load(Ordering::Relaxed), 1);
    });
}
