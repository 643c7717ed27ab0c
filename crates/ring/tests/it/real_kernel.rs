//! Real io_uring: echo over loopback, multishot accept, CQ overflow on a tiny ring, a storm of
//! dropped ops, teardown with ops in flight.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use weir_ring::{Ring, SharedFd};

use crate::support::{block_on, fd_count, serial, settle};

fn ring(entries: u32) -> Ring {
    Ring::builder()
        .entries(entries)
        .build()
        .expect("io_uring is enabled on this machine")
}

fn shared(fd: impl Into<OwnedFd>) -> SharedFd {
    Arc::new(fd.into())
}

#[test]
fn setup_reports_flags_and_probe() {
    let _serial = serial();
    let ring = ring(8);
    let setup = ring.setup();
    assert!(setup.sq_entries >= 8);
    assert!(setup.flags.contains(&weir_ring::SetupFlag::SubmitAll) || setup.flags.is_empty());
    assert!(ring.probe().supports(weir_ring::Opcode::Nop));
    println!(
        "ring setup: {setup:?}; missing opcodes: {:?}",
        ring.probe().missing
    );
}

#[test]
fn nop_and_timeout_round_trips_batch_into_few_enters() {
    let _serial = serial();
    let ring = ring(64);
    let before = ring.counters();
    block_on(&ring, async {
        let ops: Vec<_> = (0..64).map(|_| ring.nop()).collect();
        for op in ops {
            op.await.expect("nop");
        }
    });
    let after = ring.counters();
    assert_eq!(after.cqes - before.cqes, 64);
    assert!(
        after.enters - before.enters <= 4,
        "64 nops took {} enters",
        after.enters - before.enters
    );
    let start = Instant::now();
    block_on(&ring, ring.timeout(Duration::from_millis(20))).expect("timeout");
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn echo_over_loopback_gives_buffers_back() {
    let _serial = serial();
    let ring = ring(32);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = shared(listener);
    // One thread throughout (the kernel's backlog and socket buffers hold the client's side), so
    // the test does not depend on how a checker such as Valgrind schedules threads.
    let mut client = TcpStream::connect(addr).expect("connect");
    client.write_all(b"hello ring").expect("write");
    block_on(&ring, async {
        let (stream, peer) = ring.accept(&listener).await.expect("accept");
        assert!(peer.to_std().is_some_and(|p| p.ip().is_loopback()));
        let stream = shared(stream);
        let (n, mut buf) = ring.recv(&stream, Vec::with_capacity(64)).await;
        let n = n.expect("recv");
        assert_eq!(n, 10);
        buf.truncate(n);
        let (sent, buf) = ring.send(&stream, buf).await;
        assert_eq!(sent.expect("send"), 10);
        assert_eq!(buf, b"hello ring", "the buffer came back with the data");
    });
    let mut reply = [0; 10];
    client.read_exact(&mut reply).expect("read");
    assert_eq!(&reply, b"hello ring");
}

#[test]
fn multishot_accept_yields_every_connection() {
    let _serial = serial();
    let ring = ring(32);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = shared(listener);
    let clients: Vec<_> = (0..5)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let accepted = block_on(&ring, async {
        let mut stream = ring.accept_multi(&listener);
        let mut accepted = Vec::new();
        while accepted.len() < 5 {
            accepted.push(
                stream
                    .next()
                    .await
                    .expect("multishot still armed")
                    .expect("accept"),
            );
        }
        accepted
    });
    assert_eq!(accepted.len(), 5);
    drop(clients);
    settle(&ring);
}

/// Ops in the kernel are bounded by the completion queue: 300 timeouts that would complete
/// together on a ring with 16 completion entries go to the kernel as room frees up, so the
/// completion queue never overflows (and every one of them completes).
#[test]
fn tiny_ring_bounds_its_ops_in_flight_to_its_completion_queue() {
    let _serial = serial();
    let ring = Ring::builder()
        .entries(4)
        .cq_entries(16)
        .build()
        .expect("ring");
    let completed = block_on(&ring, async {
        let ops: Vec<_> = (0..300)
            .map(|_| ring.timeout(Duration::from_millis(2)))
            .collect();
        let mut completed = 0;
        for op in ops {
            op.await.expect("timeout");
            completed += 1;
        }
        completed
    });
    assert_eq!(completed, 300);
    let counters = ring.counters();
    println!("tiny ring counters: {counters:?}");
    assert_eq!(
        counters.overflows, 0,
        "the completion queue overflowed: {counters:?}"
    );
    assert_eq!(ring.in_flight(), 0);
}

/// A multishot op can post more completions than the completion queue holds (one per
/// connection here); the kernel keeps the excess in its overflow list (`IORING_FEAT_NODROP`)
/// and the ring flushes it: every connection is accepted, the overflow is counted once per
/// episode, and nothing is dropped.
#[test]
fn multishot_beyond_the_completion_queue_overflows_and_loses_nothing() {
    let _serial = serial();
    let ring = Ring::builder()
        .entries(4)
        .cq_entries(8)
        .build()
        .expect("ring");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = shared(listener);
    const CLIENTS: usize = 64;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let mut stream = ring.accept_multi(&listener);
    let accepted = block_on(&ring, async {
        let mut accepted = Vec::new();
        while accepted.len() < CLIENTS {
            match stream.next().await {
                Some(Ok(fd)) => accepted.push(fd),
                Some(Err(error)) => panic!("accept: {error}"),
                // The kernel ended the multishot (it may, under overflow): arm a new one.
                None => stream = ring.accept_multi(&listener),
            }
        }
        accepted
    });
    assert_eq!(accepted.len(), CLIENTS);
    drop((stream, accepted, clients));
    settle(&ring);
    let counters = ring.counters();
    println!("multishot overflow counters: {counters:?}");
    assert!(
        counters.overflows > 0,
        "the completion queue never overflowed: {counters:?}"
    );
    assert!(
        counters.overflows < 10,
        "overflow counted per reap, not per episode: {counters:?}"
    );
}

#[test]
fn storm_of_dropped_ops_leaks_nothing() {
    let _serial = serial();
    let ring = ring(256);
    let baseline = fd_count();
    let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
    let a = shared(a);
    let listener = shared(TcpListener::bind("127.0.0.1:0").expect("bind"));
    let noop = &mut Context::from_waker(Waker::noop());
    for round in 0..100 {
        let mut ops: Vec<Pin<Box<dyn Future<Output = ()>>>> = Vec::new();
        for n in 0..1_000 {
            let op: Pin<Box<dyn Future<Output = ()>>> = match n % 4 {
                0 => Box::pin(async { drop(ring.recv(&a, Vec::with_capacity(64)).await) }),
                1 => Box::pin(async { drop(ring.timeout(Duration::from_secs(30)).await) }),
                2 => Box::pin(async { drop(ring.accept(&listener).await) }),
                _ => Box::pin(async { drop(ring.nop().await) }),
            };
            ops.push(op);
        }
        // Poll each 0..3 times (turning in between), then drop them all.
        for polls in 0..(round % 3) {
            for op in &mut ops {
                let _ = op.as_mut().poll(noop);
            }
            if polls % 2 == 0 {
                ring.turn(Some(Duration::ZERO)).expect("turn");
            }
        }
        drop(ops);
        settle(&ring);
    }
    assert_eq!(ring.in_flight(), 0);
    assert_eq!(
        fd_count(),
        baseline + 3,
        "descriptors leaked (baseline + socketpair + listener)"
    );
    println!("after 100k dropped ops: {:?}", ring.counters());
}

#[test]
fn teardown_with_pending_accept_recv_and_timeout_is_bounded() {
    let _serial = serial();
    let baseline = fd_count();
    {
        let ring = ring(16);
        let listener = shared(TcpListener::bind("127.0.0.1:0").expect("bind"));
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("socketpair");
        let a = shared(a);
        let noop = &mut Context::from_waker(Waker::noop());
        let mut accept = Box::pin(ring.accept(&listener));
        let mut recv = Box::pin(ring.recv(&a, Vec::with_capacity(16)));
        let mut timeout = Box::pin(ring.timeout(Duration::from_secs(60)));
        let _ = accept.as_mut().poll(noop);
        let _ = recv.as_mut().poll(noop);
        let _ = timeout.as_mut().poll(noop);
        ring.turn(Some(Duration::ZERO)).expect("submit");
        assert_eq!(ring.in_flight(), 3);
        drop((accept, recv, timeout));
        let start = Instant::now();
        drop(ring); // the last handle: cancels and reaps before returning
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "teardown was not bounded"
        );
    }
    assert_eq!(
        fd_count(),
        baseline,
        "the ring or a socket leaked a descriptor"
    );
}

/// Teardown with the submission queue full (SQEs pushed since the last turn): the cancel of
/// everything in flight must still reach the kernel (submitting what fills the queue to make
/// room), so every op ends and its data is released: the listener a pending accept held is
/// closed and its port free again, and no descriptor is left.
#[test]
fn teardown_with_a_full_submission_queue_releases_everything() {
    let _serial = serial();
    let baseline = fd_count();
    let addr;
    {
        let ring = ring(2);
        assert_eq!(ring.setup().sq_entries, 2);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        addr = listener.local_addr().expect("addr");
        let listener = shared(listener);
        let noop = &mut Context::from_waker(Waker::noop());
        let mut accept = Box::pin(ring.accept(&listener));
        let _ = accept.as_mut().poll(noop);
        ring.turn(Some(Duration::ZERO)).expect("submit the accept");
        // Two more ops fill the two-entry queue; no turn submits them.
        let mut later: Vec<_> = (0..2)
            .map(|_| Box::pin(ring.timeout(Duration::from_secs(60))))
            .collect();
        for op in &mut later {
            let _ = op.as_mut().poll(noop);
        }
        assert_eq!(ring.in_flight(), 3);
        drop((accept, later, listener));
        drop(ring); // the last handle: cancels and reaps before returning
    }
    TcpListener::bind(addr).expect("the listener's port is still bound after teardown");
    assert_eq!(fd_count(), baseline, "a descriptor leaked");
}

/// An op held back for room in the completion queue and dropped before it reached the kernel
/// ends at once (it must not reach the kernel after its cancel and run there unwatched).
#[test]
fn held_ops_dropped_before_reaching_the_kernel_end_at_once() {
    let _serial = serial();
    let ring = Ring::builder()
        .entries(4)
        .cq_entries(4)
        .build()
        .expect("ring");
    let noop = &mut Context::from_waker(Waker::noop());
    let mut ops: Vec<_> = (0..10)
        .map(|_| Box::pin(ring.timeout(Duration::from_secs(3600))))
        .collect();
    for op in &mut ops {
        let _ = op.as_mut().poll(noop);
    }
    ring.turn(Some(Duration::ZERO)).expect("submit");
    assert_eq!(ring.in_flight(), 10);
    assert!(ring.counters().held >= 6, "{:?}", ring.counters());
    drop(ops);
    settle(&ring);
    assert_eq!(ring.in_flight(), 0);
}

/// A ring with an accept in flight on `listener`, the accept's future dropped (cancelled).
fn ring_with_a_cancelled_accept() -> (Ring, std::net::SocketAddr) {
    let ring = ring(8);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = shared(listener);
    let noop = &mut Context::from_waker(Waker::noop());
    let mut accept = Box::pin(ring.accept(&listener));
    let _ = accept.as_mut().poll(noop);
    ring.turn(Some(Duration::ZERO)).expect("submit the accept");
    assert_eq!(ring.in_flight(), 1);
    drop((accept, listener));
    (ring, addr)
}

/// The ring's last handle dropped on a thread that is not its owner: the kernel lets only the
/// owner enter a `SINGLE_ISSUER` ring, so the teardown (cancel, reap, release the accept's
/// listener) waits for the owner's next ring call — here the owner builds another ring — instead
/// of failing its enters and leaking every op with the descriptors their data holds.
#[test]
fn a_ring_dropped_on_another_thread_is_torn_down_by_its_owner() {
    let _serial = serial();
    let baseline = fd_count();
    let (ring, addr) = ring_with_a_cancelled_accept();
    std::thread::spawn(move || drop(ring))
        .join()
        .expect("dropping thread");
    // The owner's next ring call tears the orphan down.
    let next = self::ring(2);
    TcpListener::bind(addr).expect("the listener's port is still bound after teardown");
    drop(next);
    assert_eq!(fd_count(), baseline, "a descriptor leaked");
}

/// As above, with the owner thread exiting instead: its exit tears the orphan down.
#[test]
fn a_ring_dropped_on_another_thread_is_torn_down_when_its_owner_exits() {
    let _serial = serial();
    let baseline = fd_count();
    let addr = std::thread::spawn(|| {
        let (ring, addr) = ring_with_a_cancelled_accept();
        std::thread::spawn(move || drop(ring))
            .join()
            .expect("dropping thread");
        addr
    })
    .join()
    .expect("owner thread");
    TcpListener::bind(addr).expect("the listener's port is still bound after teardown");
    assert_eq!(fd_count(), baseline, "a descriptor leaked");
}

/// A completion the kernel dropped (it does when it cannot buffer an overflowing completion;
/// injected here) must not leave its op waiting forever: the ring notices the loss, asks the
/// kernel about every op in it, and ends the one whose completion was lost with `EIO` (the
/// others are cancelled: the ring cannot tell which of them will ever complete otherwise).
#[test]
fn an_op_whose_completion_was_dropped_ends_instead_of_hanging() {
    let _serial = serial();
    let ring = ring(8);
    let long = ring.timeout(Duration::from_secs(3600));
    let mut long = Box::pin(long);
    let noop = &mut Context::from_waker(Waker::noop());
    let _ = long.as_mut().poll(noop);
    ring.inject_lost_completions(1);
    // Its completion is the one dropped; without recovery this waits until the watchdog.
    let lost = block_on(&ring, ring.timeout(Duration::from_millis(1)));
    let error = lost.expect_err("the op's completion was lost");
    assert_eq!(error.raw_os_error(), Some(libc::EIO), "{error}");
    let cancelled = block_on(&ring, long).expect_err("cancelled by the recovery");
    assert_eq!(
        cancelled.raw_os_error(),
        Some(libc::ECANCELED),
        "{cancelled}"
    );
    assert_eq!(ring.counters().dropped, 1, "{:?}", ring.counters());
    settle(&ring);
}
