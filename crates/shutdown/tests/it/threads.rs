//! The primitives under real threads and the minimal executor.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use weir_shutdown::{Limit, Token, Tracker};

use crate::support::block_on;

#[test]
fn cancelling_a_parent_with_100k_children_uses_no_deep_stack() {
    let parent = Token::new();
    let children: Vec<Token> = (0..100_000).map(|_| parent.child()).collect();
    let grandchildren: Vec<Token> = children.iter().take(1_000).map(Token::child).collect();
    // A 64 KiB stack would overflow long before 100k frames of recursion.
    let canceller = thread::Builder::new()
        .stack_size(64 * 1024)
        .spawn({
            let parent = parent.clone();
            move || parent.cancel_with("stop")
        })
        .expect("spawn");
    canceller
        .join()
        .expect("cancel without overflowing the stack");
    assert!(children.iter().all(Token::is_cancelled));
    assert!(grandchildren.iter().all(Token::is_cancelled));
    assert_eq!(grandchildren[0].reason().as_deref(), Some("stop"));
}

#[test]
fn dropping_100k_children_empties_the_parent() {
    let parent = Token::new();
    let children: Vec<Token> = (0..100_000).map(|_| parent.child()).collect();
    assert_eq!(parent.children_len(), 100_000);
    drop(children);
    assert_eq!(parent.children_len(), 0);
}

#[test]
fn waiters_on_many_threads_all_wake() {
    let token = Token::new();
    let woken = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let child = token.child();
            let woken = woken.clone();
            thread::spawn(move || {
                block_on(child.cancelled());
                woken.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    token.cancel();
    for t in threads {
        t.join().expect("waiter");
    }
    assert_eq!(woken.load(Ordering::SeqCst), 8);
}

#[test]
fn tracker_wait_sees_all_work_done() {
    let tracker = Tracker::new();
    let done = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let guard = tracker.track().expect("open");
            let done = done.clone();
            thread::spawn(move || {
                let _guard = guard;
                done.fetch_add(1, Ordering::Relaxed);
            })
        })
        .collect();
    tracker.close();
    block_on(tracker.wait());
    assert_eq!(done.load(Ordering::Relaxed), 16);
    for w in workers {
        w.join().expect("worker");
    }
}

#[test]
fn limit_never_admits_more_than_its_permits_under_contention() {
    const PERMITS: usize = 3;
    let limit = Limit::new(PERMITS);
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (limit, inside, peak, start) =
                (limit.clone(), inside.clone(), peak.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for _ in 0..500 {
                    let permit = block_on(limit.acquire()).expect("open");
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(permit);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("worker");
    }
    assert!(peak.load(Ordering::SeqCst) <= PERMITS);
    assert_eq!(limit.available(), PERMITS);
}

#[test]
fn permit_returns_when_holder_panics() {
    let limit = Limit::new(1);
    let l = limit.clone();
    let result = thread::spawn(move || {
        let _permit = l.try_acquire_many_owned(1).expect("free");
        panic!("handler failed");
    })
    .join();
    assert!(result.is_err());
    assert_eq!(limit.available(), 1);
}

#[test]
fn run_until_cancelled_sleeps_until_the_cancel_from_another_thread_and_drops_the_future() {
    use std::sync::atomic::AtomicUsize;
    use std::task::Poll;
    let token = Token::new();
    let polls = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    struct Forever(Arc<AtomicUsize>, Arc<AtomicUsize>);
    impl std::future::Future for Forever {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Poll::Pending
        }
    }
    impl Drop for Forever {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let canceller = {
        let token = token.clone();
        let polls = polls.clone();
        std::thread::spawn(move || {
            // Cancel once the future has been polled (the waiting task is asleep by then).
            while polls.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            token.cancel();
        })
    };
    let out = block_on(token.run_until_cancelled(Forever(polls.clone(), dropped.clone())));
    canceller.join().expect("canceller");
    assert_eq!(out, None, "cancelled, so no output");
    assert_eq!(dropped.load(Ordering::SeqCst), 1, "the future was dropped");
    // Polled at the start and at most once more when the cancel woke the task: never a loop.
    let polled = polls.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&polled),
        "the future was polled {polled} times"
    );
    // Ready first: its output, even though the token is cancelled afterwards.
    let token = Token::new();
    assert_eq!(block_on(token.run_until_cancelled(async { 5 })), Some(5));
}
