//! The ring over the fake kernel: scripted orders of completions, cancels and faults, and a
//! proptest over generated orders. Miri runs these (`cargo xtask ci`).

use std::future::Future;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use io_uring::opcode;
use proptest::prelude::*;

use super::{Script, ring};
use crate::buf::{IoBuf, IoBufMut};
use crate::bufring::tests::{Owned, SIZE, owned};
use crate::bufring::{BufRing, Received};
use crate::ops::SharedFd;
use crate::ring::Ring;
use crate::sync::unmodelled::Arc;
use crate::sync::{Mutex, lock};

fn poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

fn ready<F: Future + Unpin>(future: &mut F) -> F::Output {
    match poll(future) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the op has not completed"),
    }
}

/// A non-blocking turn.
fn turn(ring: &Ring) {
    ring.turn(Some(Duration::ZERO)).expect("a turn");
}

/// A descriptor of our own (an eventfd: Miri has them too).
fn descriptor() -> OwnedFd {
    // SAFETY: eventfd(2) with valid flags; the result is checked before use.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(raw >= 0, "eventfd: {}", io::Error::last_os_error());
    // SAFETY: a new descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(raw) }
}

fn socket() -> SharedFd {
    Arc::new(descriptor())
}

/// A descriptor for the fake to hand out as accepted (`raw`: the number, owned by whoever the
/// completion reaches), with the other end of its socket pair, which tells whether it was
/// closed by its identity, not its number: a test running alongside may reuse the number.
struct Handed {
    raw: RawFd,
    peer: OwnedFd,
}

fn accepted() -> Handed {
    let mut ends = [0; 2];
    // SAFETY: socketpair(2) writes two descriptors into `ends`; the result is checked.
    let made = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            ends.as_mut_ptr(),
        )
    };
    assert_eq!(made, 0, "socketpair: {}", io::Error::last_os_error());
    Handed {
        raw: ends[0],
        // SAFETY: a new descriptor that nothing else owns.
        peer: unsafe { OwnedFd::from_raw_fd(ends[1]) },
    }
}

impl Handed {
    /// `true` once `raw` is closed: the peer then reads the end of the stream (while it is
    /// open, the read would block).
    fn closed(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into `byte`, which outlives the call.
        let read = unsafe {
            libc::read(
                std::os::fd::AsRawFd::as_raw_fd(&self.peer),
                (&raw mut byte).cast(),
                1,
            )
        };
        read == 0
    }
}

/// What happened to the tracked buffers.
#[derive(Default)]
struct Log {
    /// Buffer ids, once per drop.
    dropped: Vec<usize>,
    /// Buffers dropped while an SQE in the fake kernel still named their memory.
    premature: Vec<usize>,
}

/// A buffer that records its drop, and whether the fake kernel could still touch it then.
struct Tracked {
    vec: Vec<u8>,
    id: usize,
    log: Arc<Mutex<Log>>,
    script: Script,
}

impl Tracked {
    /// An empty buffer of `capacity` bytes, exposed to the fake.
    fn empty(id: usize, capacity: usize, log: &Arc<Mutex<Log>>, script: &Script) -> Tracked {
        Tracked::holding(id, Vec::with_capacity(capacity), log, script)
    }

    /// A buffer holding `bytes`, exposed to the fake.
    fn holding(id: usize, mut vec: Vec<u8>, log: &Arc<Mutex<Log>>, script: &Script) -> Tracked {
        script.expose(vec.as_mut_ptr(), vec.capacity());
        Tracked {
            vec,
            id,
            log: log.clone(),
            script: script.clone(),
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let premature = self
            .script
            .names_memory(self.vec.as_ptr(), self.vec.capacity());
        let mut log = lock(&self.log);
        log.dropped.push(self.id);
        if premature {
            log.premature.push(self.id);
        }
    }
}

// SAFETY: delegates to the `Vec`, whose heap memory does not move with the `Tracked`.
unsafe impl IoBuf for Tracked {
    fn stable_ptr(&self) -> *const u8 {
        self.vec.as_ptr()
    }
    fn bytes_init(&self) -> usize {
        self.vec.len()
    }
}

// SAFETY: as above; the whole capacity belongs to the `Vec`.
unsafe impl IoBufMut for Tracked {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        self.vec.as_mut_ptr()
    }
    fn bytes_total(&self) -> usize {
        self.vec.capacity()
    }
    unsafe fn set_init(&mut self, n: usize) {
        // SAFETY: the caller's guarantee: the first `n` bytes are initialised.
        unsafe { self.vec.set_len(n) };
    }
}

/// Provided buffers (the buffer ring's own test source), exposed to the fake.
fn source(count: u16, script: &Script) -> Owned {
    let source = owned(count);
    script.expose(source.memory.as_ptr(), usize::from(count) * SIZE as usize);
    source
}

fn log() -> Arc<Mutex<Log>> {
    Arc::new(Mutex::new(Log::default()))
}

#[test]
fn a_recv_fills_the_buffer_its_sqe_names() {
    let (ring, script) = ring(8, 16);
    let log = log();
    let fd = socket();
    let mut recv = ring.recv(&fd, Tracked::empty(0, 8, &log, &script));
    turn(&ring);
    let sqe = script
        .op(opcode::Recv::CODE)
        .expect("the recv is in the kernel");
    assert_eq!(script.fill(sqe.user_data, b"hello"), 5);
    assert!(poll(&mut recv).is_pending(), "not reaped before a turn");
    turn(&ring);
    let (n, buf) = ready(&mut recv);
    assert_eq!(n.expect("received"), 5);
    assert_eq!(buf.vec, b"hello");
    drop(buf);
    assert_eq!(lock(&log).dropped, [0]);
    assert!(lock(&log).premature.is_empty());
}

#[test]
fn a_recv_cancelled_before_it_completes_frees_its_buffer_after_the_final_cqe() {
    let (ring, script) = ring(8, 16);
    let log = log();
    let fd = socket();
    let recv = ring.recv(&fd, Tracked::empty(0, 8, &log, &script));
    turn(&ring);
    drop(recv);
    assert!(
        lock(&log).dropped.is_empty(),
        "freed while the kernel held it"
    );
    turn(&ring);
    assert!(script.in_flight().is_empty(), "the cancel ended the recv");
    assert_eq!(lock(&log).dropped, [0]);
    assert!(lock(&log).premature.is_empty());
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn a_recv_completed_before_its_cancel_keeps_its_bytes() {
    let (ring, script) = ring(8, 16);
    let log = log();
    let fd = socket();
    let mut recv = ring.recv(&fd, Tracked::empty(0, 8, &log, &script));
    turn(&ring);
    let sqe = script.op(opcode::Recv::CODE).expect("in the kernel");
    script.fill(sqe.user_data, b"kept");
    recv.cancel();
    turn(&ring);
    let (n, buf) = ready(&mut recv);
    assert_eq!(n.expect("the result, not ECANCELED"), 4);
    assert_eq!(buf.vec, b"kept");
    assert_eq!(ring.counters().cancels, 1);
}

#[test]
fn an_accept_completed_after_its_future_was_dropped_is_closed() {
    let (ring, script) = ring(8, 16);
    let listener = socket();
    let accept = ring.accept(&listener);
    turn(&ring);
    let sqe = script.op(opcode::Accept::CODE).expect("in the kernel");
    let late = accepted();
    // The kernel accepts, the future is dropped before the completion is reaped.
    script.complete(sqe.user_data, late.raw);
    drop(accept);
    assert!(!late.closed());
    turn(&ring);
    assert!(late.closed(), "the late accept's descriptor leaked");
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn enters_failing_with_eagain_ebusy_eintr_lose_no_submission() {
    let (ring, script) = ring(8, 16);
    let mut nops: Vec<_> = (0..3).map(|_| ring.nop()).collect();
    script.fail_enter(libc::EAGAIN, false);
    script.fail_enter(libc::EBUSY, false);
    script.fail_enter(libc::EINTR, true);
    for _ in 0..3 {
        turn(&ring);
    }
    let more: Vec<_> = (0..2).map(|_| ring.nop()).collect();
    turn(&ring);
    nops.extend(more);
    for nop in &mut nops {
        ready(nop).expect("the nop completed");
    }
    assert_eq!(script.enters(), 4);
}

#[test]
fn a_full_submission_queue_is_handed_to_the_kernel_to_make_room() {
    let (ring, script) = ring(2, 16);
    let mut nops: Vec<_> = (0..5).map(|_| ring.nop()).collect();
    assert!(
        script.enters() >= 1,
        "a full queue was submitted to make room"
    );
    assert!(script.queued() <= 2);
    turn(&ring);
    for nop in &mut nops {
        ready(nop).expect("the nop completed");
    }
}

#[test]
fn a_full_submission_queue_the_kernel_refuses_fails_the_op_with_its_error() {
    let (ring, script) = ring(1, 16);
    let mut first = ring.nop();
    script.fail_enter(libc::ENOMEM, false);
    let mut second = ring.nop();
    let error = ready(&mut second).expect_err("the kernel refused room");
    assert_eq!(error.raw_os_error(), Some(libc::ENOMEM));
    turn(&ring);
    ready(&mut first).expect("the first nop went in at the next turn");
}

#[test]
fn teardown_with_a_full_submission_queue_cancels_and_frees_every_op() {
    let (ring, script) = ring(2, 16);
    let log = log();
    let fd = socket();
    let mut recvs: Vec<_> = (0..2)
        .map(|id| ring.recv(&fd, Tracked::empty(id, 8, &log, &script)))
        .collect();
    turn(&ring);
    recvs.extend((2..4).map(|id| ring.recv(&fd, Tracked::empty(id, 8, &log, &script))));
    assert_eq!(script.queued(), 2, "the submission queue is full");
    drop(recvs);
    drop(ring);
    assert!(
        script.in_flight().is_empty(),
        "teardown left ops in the kernel"
    );
    let mut dropped = lock(&log).dropped.clone();
    dropped.sort_unstable();
    assert_eq!(
        dropped,
        [0, 1, 2, 3],
        "each buffer freed exactly once, none leaked"
    );
    assert!(lock(&log).premature.is_empty());
}

#[test]
fn an_overflowing_completion_queue_is_flushed_and_loses_nothing() {
    let (ring, script) = ring(8, 2);
    let listener = socket();
    let mut stream = ring.accept_multi(&listener);
    turn(&ring);
    let sqe = script.op(opcode::Accept::CODE).expect("in the kernel");
    let fds: Vec<Handed> = (0..4).map(|_| accepted()).collect();
    for fd in &fds {
        script.more(sqe.user_data, fd.raw);
    }
    assert_eq!(script.unreaped(), 4);
    turn(&ring);
    turn(&ring);
    let mut got = Vec::new();
    while let Poll::Ready(Some(next)) = stream.poll_next(&mut Context::from_waker(Waker::noop())) {
        got.push(next.expect("an accepted connection"));
        if got.len() == 4 {
            break;
        }
    }
    assert_eq!(got.len(), 4, "an overflowed completion was lost");
    assert_eq!(ring.counters().overflows, 1);
    assert_eq!(ring.counters().dropped, 0);
}

#[test]
fn a_dropped_completion_ends_its_op_with_eio() {
    let (ring, script) = ring(8, 4);
    let log = log();
    let (listener, fd) = (socket(), socket());
    let mut stream = ring.accept_multi(&listener);
    let mut recv = ring.recv(&fd, Tracked::empty(0, 8, &log, &script));
    turn(&ring);
    let accept = script.op(opcode::Accept::CODE).expect("in the kernel");
    let recv_sqe = script.op(opcode::Recv::CODE).expect("in the kernel");
    script.drop_overflow(true);
    let fds: Vec<Handed> = (0..4).map(|_| accepted()).collect();
    for fd in &fds {
        script.more(accept.user_data, fd.raw);
    }
    // The queue is full: the recv's completion is dropped.
    script.fill(recv_sqe.user_data, b"lost");
    turn(&ring);
    assert_eq!(ring.counters().dropped, 1);
    turn(&ring);
    let (result, buf) = ready(&mut recv);
    assert_eq!(result.expect_err("lost").raw_os_error(), Some(libc::EIO));
    drop(buf);
    assert!(lock(&log).premature.is_empty());
    let mut taken = 0;
    while let Poll::Ready(Some(Ok(_))) = stream.poll_next(&mut Context::from_waker(Waker::noop())) {
        taken += 1;
    }
    assert_eq!(taken, 4);
    drop(stream);
    turn(&ring);
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn a_multishot_recv_over_provided_buffers_ends_with_enobufs_and_its_buffers_come_back() {
    let (ring, script) = ring(8, 16);
    let group = BufRing::register(&ring, 1, source(2, &script)).expect("register");
    let fd = socket();
    let mut stream = group.recv_multi(&fd);
    turn(&ring);
    let sqe = script.op(opcode::RecvMulti::CODE).expect("in the kernel");
    assert_eq!(script.provided_left(1), 2);
    let first = script.recv_provided(sqe.user_data, b"ab", true);
    let second = script.recv_provided(sqe.user_data, b"cd", true);
    assert!(first.is_some() && second.is_some() && first != second);
    assert_eq!(script.recv_provided(sqe.user_data, b"ef", true), None);
    turn(&ring);
    let mut cx = Context::from_waker(Waker::noop());
    let mut data = Vec::new();
    let ending = loop {
        match stream.poll_next(&mut cx) {
            Poll::Ready(Some(Ok(Received::Data(buf)))) => data.push(buf),
            Poll::Ready(Some(other)) => break other,
            other => panic!("the stream ended early: {other:?}"),
        }
    };
    assert_eq!(
        ending.expect_err("the ending").raw_os_error(),
        Some(libc::ENOBUFS)
    );
    assert_eq!(&*data[0], b"ab");
    assert_eq!(&*data[1], b"cd");
    assert!(matches!(stream.poll_next(&mut cx), Poll::Ready(None)));
    drop(data);
    assert_eq!(
        script.provided_left(1),
        2,
        "every buffer went back to the ring"
    );
}

#[test]
fn emfile_ends_a_multishot_accept_and_an_accept_after_the_drop_is_closed() {
    let (ring, script) = ring(8, 16);
    let listener = socket();
    let mut stream = ring.accept_multi(&listener);
    turn(&ring);
    let sqe = script.op(opcode::Accept::CODE).expect("in the kernel");
    let handed = accepted();
    script.more(sqe.user_data, handed.raw);
    script.complete(sqe.user_data, -libc::EMFILE);
    turn(&ring);
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        stream.poll_next(&mut cx),
        Poll::Ready(Some(Ok(_)))
    ));
    let Poll::Ready(Some(Err(error))) = stream.poll_next(&mut cx) else {
        panic!("no EMFILE ending");
    };
    assert_eq!(error.raw_os_error(), Some(libc::EMFILE));
    assert!(matches!(stream.poll_next(&mut cx), Poll::Ready(None)));

    let stream = ring.accept_multi(&listener);
    turn(&ring);
    let sqe = script.op(opcode::Accept::CODE).expect("in the kernel");
    drop(stream);
    let late = accepted();
    script.more(sqe.user_data, late.raw);
    turn(&ring);
    assert!(late.closed(), "the late accept's descriptor leaked");
    assert_eq!(ring.in_flight(), 0);
}

#[test]
fn a_short_send_reports_what_the_kernel_took() {
    let (ring, script) = ring(8, 16);
    let log = log();
    let fd = socket();
    let buf = Tracked::holding(0, b"0123456789".to_vec(), &log, &script);
    let mut send = ring.send(&fd, buf);
    turn(&ring);
    let sqe = script.op(opcode::Send::CODE).expect("in the kernel");
    assert_eq!(script.drain(sqe.user_data, 4), b"0123");
    turn(&ring);
    let (n, buf) = ready(&mut send);
    assert_eq!(n.expect("sent"), 4);
    assert_eq!(buf.vec, b"0123456789");
    assert_eq!(script.written(), b"0123");
}

#[test]
fn the_last_buffer_group_handle_dropped_in_a_reap_unregisters_it() {
    let (ring, script) = ring(8, 16);
    let group = BufRing::register(&ring, 2, source(2, &script)).expect("register");
    let fd = socket();
    let stream = group.recv_multi(&fd);
    turn(&ring);
    // Only the receive's op data holds the group now; its final completion releases it.
    drop(group);
    drop(stream);
    assert_eq!(script.groups(), 1);
    turn(&ring);
    assert_eq!(script.groups(), 0, "the group was not unregistered");
    assert_eq!(ring.in_flight(), 0);
}

/// One step of a generated order.
#[derive(Debug, Clone)]
enum Step {
    /// Start an op: 0 recv, 1 send, 2 accept, 3 multishot accept.
    Start(u8),
    Turn,
    /// The kernel completes op `n` (modulo the ops started): success, or an error if `fail`.
    Kernel {
        op: usize,
        fail: bool,
    },
    /// The op's future is polled once (an output is consumed: buffers dropped, descriptors
    /// closed).
    Poll(usize),
    Cancel(usize),
    Drop(usize),
    /// The next enter fails (EAGAIN, EBUSY, EINTR), after submitting if `submit_first`.
    FailEnter {
        errno: u8,
        submit_first: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4).prop_map(Step::Start),
        Just(Step::Turn),
        (0usize..8, any::<bool>()).prop_map(|(op, fail)| Step::Kernel { op, fail }),
        (0usize..8).prop_map(Step::Poll),
        (0usize..8).prop_map(Step::Cancel),
        (0usize..8).prop_map(Step::Drop),
        (0u8..3, any::<bool>()).prop_map(|(errno, submit_first)| Step::FailEnter {
            errno,
            submit_first
        }),
    ]
}

type Recv = crate::op::Op<(SharedFd, Tracked), crate::buf::BufResult<usize, Tracked>>;
type Accept = crate::op::Op<crate::ops::AcceptData, io::Result<(OwnedFd, crate::ops::RawAddr)>>;

enum Live {
    Recv(Recv),
    Send(Recv),
    Accept(Accept),
    Multi(crate::ops::AcceptStream),
}

struct Started {
    user_data: u64,
    kind: u8,
    live: Option<Live>,
}

/// Op `op` modulo the ops started, if any were.
fn pick(ops: &mut [Started], op: usize) -> Option<&mut Started> {
    let count = ops.len();
    (count > 0).then(move || &mut ops[op % count])
}

/// Runs `steps` against a ring over the fake, drops everything, and checks: each buffer freed
/// exactly once and never while the kernel could touch it; every descriptor the kernel handed
/// out closed; nothing left in the kernel.
fn run(steps: &[Step]) {
    let (ring, script) = ring(64, 128);
    let log = log();
    let fd = socket();
    let mut ops: Vec<Started> = Vec::new();
    let mut handed_out: Vec<Handed> = Vec::new();
    let mut buffers = 0;
    let mut cx = Context::from_waker(Waker::noop());
    for step in steps {
        match *step {
            Step::Start(kind) => {
                let live = match kind {
                    0 => Live::Recv(ring.recv(&fd, Tracked::empty(buffers, 8, &log, &script))),
                    1 => {
                        let bytes = vec![kind; 8];
                        Live::Send(ring.send(&fd, Tracked::holding(buffers, bytes, &log, &script)))
                    }
                    2 => Live::Accept(ring.accept(&fd)),
                    _ => Live::Multi(ring.accept_multi(&fd)),
                };
                buffers += usize::from(kind < 2);
                let sqe = script.last_queued().expect("the op's SQE is queued");
                ops.push(Started {
                    user_data: sqe.user_data,
                    kind,
                    live: Some(live),
                });
            }
            Step::Turn => turn(&ring),
            Step::Kernel { op, fail } => {
                let Some(started) = pick(&mut ops, op) else {
                    continue;
                };
                let user_data = started.user_data;
                if !script.in_flight().iter().any(|s| s.user_data == user_data) {
                    continue;
                }
                match (started.kind, fail) {
                    (0, false) => drop(script.fill(user_data, b"data")),
                    (1, false) => drop(script.drain(user_data, 3)),
                    (2, false) => {
                        let fd = accepted();
                        script.complete(user_data, fd.raw);
                        handed_out.push(fd);
                    }
                    (3, false) => {
                        let fd = accepted();
                        script.more(user_data, fd.raw);
                        handed_out.push(fd);
                    }
                    (3, true) => script.complete(user_data, -libc::EMFILE),
                    (_, _) => script.complete(user_data, -libc::ECONNRESET),
                }
            }
            Step::Poll(op) => {
                let Some(started) = pick(&mut ops, op) else {
                    continue;
                };
                let done = match started.live.as_mut() {
                    Some(Live::Recv(op) | Live::Send(op)) => poll(op).is_ready(),
                    Some(Live::Accept(op)) => poll(op).is_ready(),
                    Some(Live::Multi(stream)) => {
                        matches!(stream.poll_next(&mut cx), Poll::Ready(None))
                    }
                    None => false,
                };
                if done {
                    started.live = None;
                }
            }
            Step::Cancel(op) => {
                if let Some(started) = pick(&mut ops, op) {
                    match started.live.as_mut() {
                        Some(Live::Recv(op) | Live::Send(op)) => op.cancel(),
                        Some(Live::Accept(op)) => op.cancel(),
                        Some(Live::Multi(stream)) => stream.cancel(),
                        None => {}
                    }
                }
            }
            Step::Drop(op) => {
                if let Some(started) = pick(&mut ops, op) {
                    started.live = None;
                }
            }
            Step::FailEnter {
                errno,
                submit_first,
            } => {
                let errno = [libc::EAGAIN, libc::EBUSY, libc::EINTR][usize::from(errno)];
                script.fail_enter(errno, submit_first);
            }
        }
        assert!(
            lock(&log).premature.is_empty(),
            "a buffer was freed while the kernel could touch it: {steps:?}"
        );
    }
    drop(ops);
    drop(ring);
    let log = lock(&log);
    assert!(log.premature.is_empty(), "freed early: {steps:?}");
    let mut dropped = log.dropped.clone();
    dropped.sort_unstable();
    assert_eq!(
        dropped,
        (0..buffers).collect::<Vec<_>>(),
        "each buffer is freed exactly once"
    );
    assert!(script.in_flight().is_empty(), "left in the kernel");
    for fd in handed_out {
        assert!(fd.closed(), "descriptor {} leaked: {steps:?}", fd.raw);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 8 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_order_frees_each_op_once_after_its_final_cqe(
        steps in proptest::collection::vec(step(), 1..40)
    ) {
        run(&steps);
    }
}
