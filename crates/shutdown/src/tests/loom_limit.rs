//! Loom models of the fair semaphore.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Waker};

use loom::future::block_on;
use loom::thread;

use crate::{Error, Limit};

#[test]
fn release_races_acquire() {
    loom::model(|| {
        let limit = Limit::new(1);
        let held = limit.try_acquire_many_owned(1).expect("free");
        let releaser = thread::spawn(move || drop(held));
        let permit = block_on(limit.acquire()).expect("open");
        drop(permit);
        releaser.join().expect("releaser");
        assert_eq!(limit.available(), 1);
    });
}

#[test]
fn two_acquirers_share_one_permit() {
    loom::model(|| {
        let limit = Limit::new(1);
        let other = {
            let limit = limit.clone();
            thread::spawn(move || drop(block_on(limit.acquire()).expect("open")))
        };
        drop(block_on(limit.acquire()).expect("open"));
        other.join().expect("other");
        assert_eq!(limit.available(), 1);
    });
}

#[test]
fn dropped_granted_acquire_hands_permit_on() {
    loom::model(|| {
        let limit = Limit::new(0);
        let waiter = {
            let limit = limit.clone();
            thread::spawn(move || drop(block_on(limit.acquire()).expect("open")))
        };
        {
            let mut abandoned = pin!(limit.acquire());
            let _ = abandoned
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            limit.add_permits(1).expect("room");
            // `abandoned` may have been granted the permit; dropping it must pass it on.
        }
        // Deadlocks (loom reports it) if the permit was lost with the dropped future.
        waiter.join().expect("waiter");
        assert_eq!(limit.available(), 1);
    });
}

#[test]
fn close_races_waiters() {
    loom::model(|| {
        let limit = Limit::new(0);
        let waiter = {
            let limit = limit.clone();
            thread::spawn(move || block_on(limit.acquire()).map(|p| p.count()))
        };
        limit.close();
        assert_eq!(waiter.join().expect("waiter"), Err(Error::Closed));
    });
}

#[test]
fn partial_grant_races_release() {
    loom::model(|| {
        let limit = Limit::new(1);
        let held = limit.try_acquire_many_owned(1).expect("free");
        let releaser = thread::spawn(move || drop(held));
        let permit = block_on(limit.acquire_many(1)).expect("open");
        assert_eq!(permit.count(), 1);
        drop(permit);
        releaser.join().expect("releaser");
        limit.add_permits(1).expect("room");
        let both = block_on(limit.acquire_many(2)).expect("open");
        assert_eq!(both.count(), 2);
    });
}
