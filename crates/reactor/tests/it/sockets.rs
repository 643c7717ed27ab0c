//! Readiness over socketpairs and loopback TCP: wake-ups, hang-ups, errors, many registrations.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use weir_reactor::{Direction, Reactor};

use crate::support::block_on;

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().expect("socketpair");
    a.set_nonblocking(true).expect("nonblocking");
    b.set_nonblocking(true).expect("nonblocking");
    (a, b)
}

#[test]
fn readable_wake_up_delivers_bytes() {
    let reactor = Reactor::new().expect("reactor");
    let (a, mut b) = pair();
    let a = reactor.register(a).expect("register");
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        b.write_all(b"ping").expect("write");
        b
    });
    let mut buf = [0; 16];
    let n = block_on(&reactor, a.io(Direction::Read, |s| (&*s).read(&mut buf))).expect("read");
    assert_eq!(&buf[..n], b"ping");
    drop(writer.join());
    assert!(reactor.counters().wakeups >= 1);
}

#[test]
fn writable_wakes_after_the_peer_drains() {
    let reactor = Reactor::new().expect("reactor");
    let (a, b) = pair();
    let a = reactor.register(a).expect("register");
    let chunk = [7u8; 64 * 1024];
    let mut written = 0usize;
    loop {
        match (a.get_ref()).write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    let reader = std::thread::spawn(move || {
        let mut b = b;
        b.set_nonblocking(false).expect("blocking");
        let mut sink = vec![0u8; written];
        b.read_exact(&mut sink).expect("drain");
        b
    });
    let n = block_on(&reactor, a.io(Direction::Write, |s| (&*s).write(&chunk))).expect("write");
    assert!(n > 0);
    drop(reader.join());
}

/// Turns the reactor for `window` and returns how many turns that took: a reactor that spins on
/// a persistent condition turns thousands of times; a quiet one about `window / 50 ms`.
fn turns_in(reactor: &Reactor, window: Duration) -> u64 {
    let before = reactor.counters().waits;
    let end = Instant::now() + window;
    while Instant::now() < end {
        reactor.turn(Some(Duration::from_millis(50))).expect("turn");
    }
    reactor.counters().waits - before
}

#[test]
fn hang_up_is_reported_once_without_spinning() {
    let reactor = Reactor::new().expect("reactor");
    let (a, b) = pair();
    let a = reactor.register(a).expect("register");
    drop(b);
    let mut buf = [0; 8];
    let n = block_on(&reactor, a.io(Direction::Read, |s| (&*s).read(&mut buf))).expect("read");
    assert_eq!(n, 0, "end of stream");
    let events_before = reactor.counters().events;
    let turns = turns_in(&reactor, Duration::from_millis(300));
    assert!(
        turns < 30,
        "the reactor spun on a hung-up socket: {turns} turns"
    );
    assert_eq!(
        reactor.counters().events,
        events_before,
        "the hang-up was reported again"
    );
}

#[test]
fn reset_connection_errors_once_without_spinning() {
    let reactor = Reactor::new().expect("reactor");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (server, _) = listener.accept().expect("accept");
    // SO_LINGER 0 then close: the peer sends RST.
    socket_linger_zero(&server);
    drop(server);
    client.set_nonblocking(true).expect("nonblocking");
    let client = reactor.register(client).expect("register");
    let mut buf = [0; 8];
    let error = block_on(
        &reactor,
        client.io(Direction::Read, |s| (&*s).read(&mut buf)),
    )
    .expect_err("the peer reset the connection");
    assert_eq!(error.kind(), io::ErrorKind::ConnectionReset);
    let turns = turns_in(&reactor, Duration::from_millis(300));
    assert!(
        turns < 30,
        "the reactor spun on an erroring socket: {turns} turns"
    );
}

fn socket_linger_zero(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized `linger` value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
}

#[test]
fn deregistration_happens_before_close_and_fd_reuse_is_safe() {
    let reactor = Reactor::new().expect("reactor");
    let (a, b) = pair();
    let registration = reactor.register(a).expect("register");
    let returned = registration.into_inner().expect("deregister");
    assert_eq!(reactor.registrations(), 0);
    drop(returned);
    drop(b);
    // A new socket likely reuses the descriptor number; it gets its own, working registration.
    let (c, mut d) = pair();
    let c = reactor.register(c).expect("register");
    d.write_all(b"x").expect("write");
    let mut buf = [0; 1];
    let n = block_on(&reactor, c.io(Direction::Read, |s| (&*s).read(&mut buf))).expect("read");
    assert_eq!(n, 1);
}

#[test]
fn ten_thousand_registrations() {
    let reactor = Reactor::new().expect("reactor");
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..5_000 {
        let (a, b) = pair();
        readers.push(reactor.register(a).expect("register"));
        writers.push(reactor.register(b).expect("register"));
    }
    assert_eq!(reactor.registrations(), 10_000);
    for w in &writers {
        w.get_ref().write_all(b"!").expect("write");
    }
    let mut pending: Vec<usize> = (0..readers.len()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} readers never became readable",
            pending.len()
        );
        reactor.turn(Some(Duration::from_millis(50))).expect("turn");
        pending.retain(|&i| {
            let mut buf = [0; 1];
            readers[i]
                .try_io(Direction::Read, |s| (&*s).read(&mut buf))
                .is_err()
        });
    }
    drop(readers);
    drop(writers);
    assert_eq!(reactor.registrations(), 0);
}

#[test]
fn notifier_wakes_a_blocked_turn_and_coalesces() {
    let reactor = Reactor::new().expect("reactor");
    let notifier = reactor.notifier();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        for _ in 0..100 {
            notifier.notify().expect("notify");
        }
    });
    let start = Instant::now();
    reactor.turn(None).expect("turn");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "turn(None) returned"
    );
    thread.join().expect("notifier");
    let counters = reactor.counters();
    assert_eq!(counters.notifies_requested, 100);
    assert!(
        counters.notifies_delivered < 100,
        "no coalescing: {counters:?}"
    );
}

#[test]
fn sleeps_fire_in_deadline_order() {
    let reactor = Reactor::new().expect("reactor");
    let start = Instant::now();
    let order = std::cell::RefCell::new(Vec::new());
    block_on(&reactor, async {
        let late = async {
            reactor.sleep_until(start + Duration::from_millis(30)).await;
            order.borrow_mut().push(30);
        };
        let early = async {
            reactor.sleep_until(start + Duration::from_millis(10)).await;
            order.borrow_mut().push(10);
        };
        join(late, early).await;
    });
    assert_eq!(*order.borrow(), [10, 30]);
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(reactor.timers_pending(), 0);
    assert_eq!(reactor.counters().timers_fired, 2);
}

#[test]
fn dropped_sleep_cancels_its_timer() {
    let reactor = Reactor::new().expect("reactor");
    let mut sleep = Box::pin(reactor.sleep_until(Instant::now() + Duration::from_secs(60)));
    let noop = &mut std::task::Context::from_waker(std::task::Waker::noop());
    assert!(sleep.as_mut().poll(noop).is_pending());
    assert_eq!(reactor.timers_pending(), 1);
    drop(sleep);
    assert_eq!(reactor.timers_pending(), 0);
}

use std::future::Future;

/// Polls two futures until both finish.
async fn join(a: impl Future<Output = ()>, b: impl Future<Output = ()>) {
    let (mut a, mut b) = (Box::pin(a), Box::pin(b));
    let (mut a_done, mut b_done) = (false, false);
    std::future::poll_fn(|cx| {
        if !a_done {
            a_done = a.as_mut().poll(cx).is_ready();
        }
        if !b_done {
            b_done = b.as_mut().poll(cx).is_ready();
        }
        if a_done && b_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// A waker that counts its wake-ups.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Turns `reactor` until `count` has been woken, failing after [`weir_testkit::WATCHDOG`].
fn turn_until_woken(reactor: &Reactor, count: &Count, what: &str) {
    let deadline = Instant::now() + weir_testkit::WATCHDOG;
    while count.0.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "{what} was never woken");
        reactor
            .turn(Some(Duration::from_millis(100)))
            .expect("turn");
    }
}

/// In oneshot mode the event for the other direction re-armed the source for the waiter (the
/// path under test); with edge-triggered polling nothing is ever re-armed.
fn assert_rearmed_for_the_waiter(reactor: &Reactor, rearms_before: u64) {
    let rearms = reactor.counters().rearms;
    if cfg!(weir_reactor_oneshot) {
        assert!(rearms > rearms_before, "the source was never re-armed");
    } else {
        assert_eq!(rearms, 0, "re-armed an edge-triggered source");
    }
}

/// A task waits to read while the source reports only the other direction (a fresh socket is
/// writable at once, and no task waits to write). Bytes that arrive after that event still wake
/// the reader: a oneshot poller disarms the whole source on each event, so the reactor has to
/// arm it again for the direction that still has a waiter.
#[test]
fn a_reader_is_woken_after_an_event_only_the_other_direction_saw() {
    let reactor = Reactor::new().expect("reactor");
    let (a, mut b) = pair();
    let a = reactor.register(a).expect("register");
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let polled = a.poll_ready(Direction::Read, &mut Context::from_waker(&waker));
    assert!(polled.is_pending(), "nothing was written yet");
    let events = reactor.counters().events;
    let rearms = reactor.counters().rearms;
    reactor.turn(Some(Duration::from_secs(5))).expect("turn");
    assert!(reactor.counters().events > events, "the writability event");
    assert_eq!(count.0.load(Ordering::SeqCst), 0, "no reader woken by it");
    b.write_all(b"ping").expect("write");
    turn_until_woken(&reactor, &count, "the reader");
    assert_rearmed_for_the_waiter(&reactor, rearms);
    let mut buf = [0; 16];
    let n = a
        .try_io(Direction::Read, |s| (&*s).read(&mut buf))
        .expect("read");
    assert_eq!(&buf[..n], b"ping");
}

/// The same for a writer: it waits on a full socket while the source reports only readability
/// (the peer wrote to it); once the peer drains, the writer is woken.
#[test]
fn a_writer_is_woken_after_an_event_only_the_other_direction_saw() {
    let reactor = Reactor::new().expect("reactor");
    let (a, mut b) = pair();
    let a = reactor.register(a).expect("register");
    let chunk = [7u8; 64 * 1024];
    let mut written = 0usize;
    loop {
        match (a.get_ref()).write(&chunk) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("write: {e}"),
        }
    }
    // The registration's first event (writable, from before the socket filled up) is not the
    // one this test is about: let it pass with nobody waiting.
    reactor.turn(Some(Duration::ZERO)).expect("turn");
    let count = Arc::new(Count(AtomicUsize::new(0)));
    let waker = Waker::from(count.clone());
    let cx = &mut Context::from_waker(&waker);
    // Park the writer: poll until the readiness it sees is gone (the socket is full).
    while let std::task::Poll::Ready(event) = a.poll_ready(Direction::Write, cx) {
        match (a.get_ref()).write(&chunk) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => a.clear_readiness(event),
            Ok(n) => written += n,
            Err(e) => panic!("write: {e}"),
        }
    }
    b.write_all(b"x").expect("write");
    let events = reactor.counters().events;
    let rearms = reactor.counters().rearms;
    reactor.turn(Some(Duration::from_secs(5))).expect("turn");
    assert!(reactor.counters().events > events, "the readability event");
    assert_eq!(count.0.load(Ordering::SeqCst), 0, "no writer woken by it");
    let drain = std::thread::spawn(move || {
        b.set_nonblocking(false).expect("blocking");
        let mut sink = vec![0u8; written];
        b.read_exact(&mut sink).expect("drain");
        b
    });
    turn_until_woken(&reactor, &count, "the writer");
    assert_rearmed_for_the_waiter(&reactor, rearms);
    drop(drain.join());
}

#[test]
fn every_task_waiting_on_a_direction_is_woken() {
    let reactor = Reactor::new().expect("reactor");
    let (a, mut b) = pair();
    let a = reactor.register(a).expect("register");
    // Three tasks wait to read the same source (as receives on a shared datagram socket do),
    // each polling twice: a task's second poll registers nothing new.
    let counts: Vec<Arc<Count>> = (0..3)
        .map(|_| Arc::new(Count(AtomicUsize::new(0))))
        .collect();
    for count in &counts {
        let waker = Waker::from(count.clone());
        for _ in 0..2 {
            let polled = a.poll_ready(Direction::Read, &mut Context::from_waker(&waker));
            assert!(polled.is_pending(), "nothing was written yet");
        }
    }
    b.write_all(b"x").expect("write");
    let woken = reactor.turn(Some(Duration::from_secs(5))).expect("turn");
    assert_eq!(woken, 3, "every waiting task, once each");
    assert!(counts.iter().all(|c| c.0.load(Ordering::SeqCst) == 1));
}

/// Bytes and the peer's half-close arrive in one edge; a short read then takes the bytes. The
/// end of stream must still be seen by the next read: no further edge will come for it.
#[test]
fn end_of_stream_behind_a_short_read_is_not_waited_for() {
    let reactor = Reactor::new().expect("reactor");
    let (a, mut b) = pair();
    b.write_all(b"last words").expect("write");
    b.shutdown(std::net::Shutdown::Write).expect("half-close");
    let a = reactor.register(a).expect("register");
    let read = |buf: &mut [u8]| {
        let room = buf.len();
        block_on(
            &reactor,
            a.io_drained(Direction::Read, |s| {
                let n = (&*s).read(buf)?;
                Ok((n, n > 0 && n < room))
            }),
        )
        .expect("read")
    };
    let mut buf = [0; 64];
    let n = read(&mut buf);
    assert_eq!(&buf[..n], b"last words");
    assert_eq!(read(&mut buf), 0, "the end of stream after the bytes");
    assert_eq!(read(&mut buf), 0, "and again: it stays ready");
    drop(b);
}
