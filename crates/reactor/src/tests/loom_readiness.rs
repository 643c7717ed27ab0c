//! Loom models of the readiness word and the waker slots.

use std::future::poll_fn;

use loom::future::block_on;
use loom::sync::Arc;
use loom::thread;

use crate::readiness::{Direction, ScheduledIo};

#[test]
fn readiness_set_races_waker_registration() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        let setter = {
            let io = io.clone();
            thread::spawn(move || {
                io.set_readiness(true, false, false);
            })
        };
        // Deadlocks (loom reports it) if the event slipped between the check and the parking.
        block_on(poll_fn(|cx| io.poll_ready(Direction::Read, cx)));
        setter.join().expect("setter");
    });
}

#[test]
fn clear_after_eagain_never_erases_a_racing_event() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        io.set_readiness(true, false, false);
        let seen = block_on(poll_fn(|cx| io.poll_ready(Direction::Read, cx)));
        let setter = {
            let io = io.clone();
            thread::spawn(move || {
                io.set_readiness(true, false, false);
            })
        };
        // The task's syscall returned EAGAIN: it clears what it saw, racing a new event.
        io.clear_readiness(seen);
        setter.join().expect("setter");
        // The new event must survive the clear, whichever came first.
        block_on(poll_fn(|cx| io.poll_ready(Direction::Read, cx)));
    });
}

#[test]
fn directions_are_independent_under_races() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        let writer_ready = {
            let io = io.clone();
            thread::spawn(move || {
                io.set_readiness(false, true, false);
            })
        };
        block_on(poll_fn(|cx| io.poll_ready(Direction::Write, cx)));
        writer_ready.join().expect("setter");
        let reader = block_on(poll_fn(|cx| {
            std::task::Poll::Ready(io.poll_ready(Direction::Read, cx).is_ready())
        }));
        assert!(!reader, "write readiness leaked into the read direction");
    });
}
