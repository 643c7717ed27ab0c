//! Loom models of acquisition, cross-thread release and waiting.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use loom::future::block_on;
use loom::thread;

use crate::Config;

#[test]
fn cross_thread_return_races_acquire() {
    loom::model(|| {
        let pool = Config::new(8, 1).build().expect("config");
        let buf = pool.try_get().expect("free");
        let dropper = thread::spawn(move || drop(buf));
        // Either the buffer is back already, or it comes back while we look again.
        let again = loop {
            if let Some(buf) = pool.try_get() {
                break buf;
            }
            thread::yield_now();
        };
        assert_eq!(again.id(), 0);
        dropper.join().expect("dropper");
    });
}

#[test]
fn waiter_races_release_without_lost_wake_up() {
    loom::model(|| {
        let pool = Config::new(8, 1).build().expect("config");
        let buf = pool.try_get().expect("free");
        let releaser = thread::spawn(move || drop(buf));
        // Deadlocks (loom reports it) if the release slipped past the waiter.
        let got = block_on(pool.get());
        drop(got);
        releaser.join().expect("releaser");
        assert_eq!(pool.stats().in_use, 0);
    });
}

#[test]
fn dropped_waiter_passes_a_racing_release_on() {
    loom::model(|| {
        let pool = Config::new(8, 1).build().expect("config");
        let buf = pool.try_get().expect("free");
        let waiter = {
            let pool = pool.clone();
            thread::spawn(move || drop(block_on(pool.get())))
        };
        {
            let mut abandoned = pin!(pool.get());
            let _ = abandoned
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            drop(buf);
        }
        waiter.join().expect("waiter");
        assert_eq!(pool.stats().in_use, 0);
    });
}
