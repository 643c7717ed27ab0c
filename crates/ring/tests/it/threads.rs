//! Ops started, polled and dropped on threads other than the ring's owner, the notifier, and
//! cancelling an op while still waiting for what it did.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use weir_ring::Ring;

use crate::support::{block_on, serial, settle};

/// Turns `ring` (on its owner) until `done` reports, failing after 10 s: a watchdog, so a
/// submission that never reaches the kernel fails the test instead of hanging it.
fn turn_until<T>(ring: &Ring, done: &mpsc::Receiver<T>) -> T {
    for _ in 0..1_000 {
        if let Ok(value) = done.try_recv() {
            return value;
        }
        // Blocks until a completion or a notification: the other thread's submission must wake
        // this turn (the timeout only bounds the test).
        ring.turn(Some(Duration::from_millis(10))).expect("turn");
    }
    panic!("the other thread's op never completed");
}

#[test]
fn an_op_started_on_another_thread_reaches_the_owner_and_completes() {
    let _serial = serial();
    let ring = Ring::builder().entries(8).build().expect("ring");
    let (a, mut b) = UnixStream::pair().expect("socketpair");
    let a = Arc::new(OwnedFd::from(a));
    b.write_all(b"across").expect("write");
    let (tx, rx) = mpsc::channel();
    let worker = {
        let ring = ring.clone();
        std::thread::spawn(move || {
            assert!(!ring.is_owner());
            // Polled here, parking between wake-ups; the owner's turn completes it.
            let (n, buf) = weir_testkit::block_on(ring.recv(&a, Vec::with_capacity(16)));
            tx.send((n.expect("recv"), buf)).expect("report");
        })
    };
    let (n, buf) = turn_until(&ring, &rx);
    worker.join().expect("worker");
    assert_eq!((n, &buf[..]), (6, &b"across"[..]));
    let counters = ring.counters();
    assert!(counters.remote_sqes >= 1, "{counters:?}");
    assert_eq!(ring.in_flight(), 0);
    let notifier = ring.notifier();
    assert!(format!("{notifier:?}").contains("delivered"));
    drop(b);
}

#[test]
fn turning_from_another_thread_is_refused() {
    let ring = Ring::builder().entries(4).build().expect("ring");
    let other = ring.clone();
    let error = std::thread::spawn(move || other.turn(Some(Duration::ZERO)).unwrap_err())
        .join()
        .expect("thread");
    assert!(
        error.to_string().contains("only the thread that built"),
        "{error}"
    );
}

#[test]
fn a_notification_ends_a_blocking_turn() {
    if std::env::var_os("WEIR_UNDER_VALGRIND").is_some() {
        // Valgrind runs one thread at a time and holds its lock across io_uring_enter: the
        // notifying thread could never run while this one blocks.
        println!(
            "SKIPPED a_notification_ends_a_blocking_turn: under Valgrind a blocked io_uring_enter \
             stops every other thread (cargo xtask ci runs it in the test step)"
        );
        return;
    }
    let _serial = serial();
    let ring = Ring::builder().entries(4).build().expect("ring");
    let notifier = ring.notifier();
    let started = std::time::Instant::now();
    let poker = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        notifier.notify();
    });
    // Without the notification this turn would wait its whole minute.
    ring.turn(Some(Duration::from_secs(60))).expect("turn");
    poker.join().expect("poker");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the notification was lost"
    );
    assert_eq!(
        ring.in_flight(),
        0,
        "the wake-up read is not an op of the caller's"
    );
}

#[test]
fn a_dropped_op_on_another_thread_is_cancelled_by_the_owner() {
    let _serial = serial();
    let ring = Ring::builder().entries(8).build().expect("ring");
    let (a, _b) = UnixStream::pair().expect("socketpair");
    let a = Arc::new(OwnedFd::from(a));
    // Submitted and pushed on the owner, then dropped elsewhere: its cancel must reach the
    // owner's next turn.
    let recv = ring.recv(&a, Vec::with_capacity(16));
    ring.turn(Some(Duration::ZERO)).expect("turn");
    std::thread::spawn(move || drop(recv)).join().expect("drop");
    settle(&ring);
    assert!(ring.counters().cancels >= 1);
}

#[test]
fn cancel_keeps_waiting_and_returns_what_the_op_did() {
    let _serial = serial();
    let ring = Ring::builder().entries(8).build().expect("ring");
    let (a, mut b) = UnixStream::pair().expect("socketpair");
    let a = Arc::new(OwnedFd::from(a));
    // Nothing arrives: the cancel ends the receive with ECANCELED and the buffer comes back.
    let mut recv = ring.recv(&a, Vec::with_capacity(16));
    ring.turn(Some(Duration::ZERO)).expect("turn");
    recv.cancel();
    let (result, buf) = block_on(&ring, recv);
    assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::ECANCELED));
    assert_eq!(buf.capacity(), 16);
    // Data that arrived before the cancel is returned, not lost.
    let mut recv = ring.recv(&a, Vec::with_capacity(16));
    b.write_all(b"kept").expect("write");
    block_on(&ring, async {
        // Let the kernel complete the receive first.
        let _ = ring.nop().await;
    });
    recv.cancel();
    let (result, buf) = block_on(&ring, recv);
    assert_eq!((result.expect("data won"), &buf[..]), (4, &b"kept"[..]));
    let mut rest = [0u8; 1];
    b.set_nonblocking(true).expect("nonblocking");
    assert!(b.read(&mut rest).is_err(), "nothing else was sent");
}

#[test]
fn an_op_started_and_dropped_on_another_thread_before_the_owner_turns_is_cancelled() {
    let _serial = serial();
    let ring = Ring::builder().entries(8).build().expect("ring");
    let (a, _b) = UnixStream::pair().expect("socketpair");
    let a = Arc::new(OwnedFd::from(a));
    // Its SQE and its cancel are both queued for the owner: the cancel must follow the SQE into
    // the kernel, or it finds nothing and the receive waits forever.
    {
        let ring = ring.clone();
        std::thread::spawn(move || drop(ring.recv(&a, Vec::with_capacity(16))))
            .join()
            .expect("thread");
    }
    settle(&ring);
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn a_dropped_ring_is_gone_from_the_kernel() {
    // An SQPOLL ring has a kernel thread for as long as the kernel keeps the ring: it must end
    // when the ring is dropped (nothing, such as a registered ring descriptor, keeps it alive).
    let ring = match Ring::builder().sqpoll(Duration::from_millis(10)).build() {
        Ok(ring) => ring,
        Err(error) => {
            println!("SKIPPED a_dropped_ring_is_gone_from_the_kernel: no SQPOLL here ({error})");
            return;
        }
    };
    // The kernel names its polling thread once the thread first runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while weir_testkit::sqpoll_threads() == 0 {
        assert!(std::time::Instant::now() < deadline, "no polling thread");
        std::thread::yield_now();
    }
    let before = weir_testkit::sqpoll_threads();
    drop(ring);
    while weir_testkit::sqpoll_threads() >= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the ring's polling thread outlived the ring: the kernel still holds it"
        );
        std::thread::yield_now();
    }
}
