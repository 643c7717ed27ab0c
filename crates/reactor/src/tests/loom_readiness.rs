//! Loom models of the readiness word, the waker slots, and oneshot re-arming.

use std::future::poll_fn;
use std::io;
use std::task::{Context, Waker};

use loom::future::block_on;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use crate::readiness::{Direction, Interest, ScheduledIo};

#[test]
fn readiness_set_races_waker_registration() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        let setter = {
            let io = io.clone();
            thread::spawn(move || {
                io.set_readiness(true, false, false, None);
            })
        };
        // Deadlocks (loom reports it) if the event slipped between the check and the parking.
        block_on(poll_fn(|cx| io.poll_ready(Direction::Read, cx, None)));
        setter.join().expect("setter");
    });
}

#[test]
fn clear_after_eagain_never_erases_a_racing_event() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        io.set_readiness(true, false, false, None);
        let seen = block_on(poll_fn(|cx| io.poll_ready(Direction::Read, cx, None)));
        let setter = {
            let io = io.clone();
            thread::spawn(move || {
                io.set_readiness(true, false, false, None);
            })
        };
        // The task's syscall returned EAGAIN: it clears what it saw, racing a new event.
        io.clear_readiness(seen);
        setter.join().expect("setter");
        // The new event must survive the clear, whichever came first.
        block_on(poll_fn(|cx| io.poll_ready(Direction::Read, cx, None)));
    });
}

#[test]
fn directions_are_independent_under_races() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        let writer_ready = {
            let io = io.clone();
            thread::spawn(move || {
                io.set_readiness(false, true, false, None);
            })
        };
        block_on(poll_fn(|cx| io.poll_ready(Direction::Write, cx, None)));
        writer_ready.join().expect("setter");
        let reader = block_on(poll_fn(|cx| {
            std::task::Poll::Ready(io.poll_ready(Direction::Read, cx, None).is_ready())
        }));
        assert!(!reader, "write readiness leaked into the read direction");
    });
}

/// A oneshot poller watching one source: what the source is armed for; reporting an event
/// disarms it in both directions, as IOCP (and epoll's `EPOLLONESHOT`) do.
struct OneshotPoller {
    armed: Mutex<Interest>,
    deleted: AtomicBool,
}

impl OneshotPoller {
    /// As the reactor registers a source: armed for both directions.
    fn registered() -> Self {
        OneshotPoller {
            armed: Mutex::new(Interest::BOTH),
            deleted: AtomicBool::new(false),
        }
    }

    fn arm(&self, interest: Interest) -> io::Result<()> {
        assert!(
            !self.deleted.load(Ordering::SeqCst),
            "armed a source after it left the poller"
        );
        *self.armed.lock().expect("poller") = interest;
        Ok(())
    }

    /// The source became ready in `direction`: reported (and disarmed) if armed for it.
    fn report(&self, direction: Direction) -> bool {
        let mut armed = self.armed.lock().expect("poller");
        let reported = armed.covers(direction);
        if reported {
            *armed = Interest::default();
        }
        reported
    }

    fn armed_for(&self, direction: Direction) -> bool {
        self.armed.lock().expect("poller").covers(direction)
    }
}

/// The reactor's turn for a writability event on a oneshot source.
fn handle_writable(io: &ScheduledIo, poller: &OneshotPoller) {
    if poller.report(Direction::Write) {
        io.set_readiness(false, true, false, Some(&|interest| poller.arm(interest)));
    }
}

#[test]
fn a_reader_parking_while_writability_is_reported_stays_armed() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        let poller = Arc::new(OneshotPoller::registered());
        let reactor = {
            let (io, poller) = (io.clone(), poller.clone());
            thread::spawn(move || handle_writable(&io, &poller))
        };
        // No byte ever arrives: the reader stays parked, and must stay watched.
        let polled = io.poll_ready(
            Direction::Read,
            &mut Context::from_waker(Waker::noop()),
            Some(&|interest| poller.arm(interest)),
        );
        assert!(polled.is_pending());
        reactor.join().expect("reactor");
        assert!(
            poller.armed_for(Direction::Read),
            "the reader waits on a source the poller no longer watches"
        );
    });
}

#[test]
fn a_writability_event_wakes_the_writer_and_rearms_for_the_reader() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        let poller = Arc::new(OneshotPoller::registered());
        let reactor = {
            let (io, poller) = (io.clone(), poller.clone());
            thread::spawn(move || handle_writable(&io, &poller))
        };
        let writer = {
            let (io, poller) = (io.clone(), poller.clone());
            thread::spawn(move || {
                // Deadlocks (loom reports it) if the writability event is lost.
                block_on(poll_fn(|cx| {
                    io.poll_ready(Direction::Write, cx, Some(&|i| poller.arm(i)))
                }));
            })
        };
        let polled = io.poll_ready(
            Direction::Read,
            &mut Context::from_waker(Waker::noop()),
            Some(&|interest| poller.arm(interest)),
        );
        assert!(polled.is_pending());
        writer.join().expect("writer");
        reactor.join().expect("reactor");
        assert!(
            poller.armed_for(Direction::Read),
            "the reader waits on a source the poller no longer watches"
        );
    });
}

#[test]
fn an_event_handled_during_deregistration_never_arms_the_deleted_source() {
    loom::model(|| {
        let io = Arc::new(ScheduledIo::default());
        let poller = Arc::new(OneshotPoller::registered());
        let polled = io.poll_ready(
            Direction::Read,
            &mut Context::from_waker(Waker::noop()),
            Some(&|interest| poller.arm(interest)),
        );
        assert!(polled.is_pending());
        let reactor = {
            let (io, poller) = (io.clone(), poller.clone());
            thread::spawn(move || handle_writable(&io, &poller))
        };
        // `Registration::deregister`: then the descriptor may close and its number be reused.
        io.deregister();
        poller.deleted.store(true, Ordering::SeqCst);
        reactor.join().expect("reactor");
    });
}
