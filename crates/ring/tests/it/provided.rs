//! Provided buffer rings under pressure, and multishot accept ended by EMFILE and re-armed.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use weir_ring::{BufRing, BufferSource, Received, Ring};

use crate::support::{block_on, serial};

/// Buffers carved from one boxed slice.
struct SliceSource {
    memory: NonNull<u8>,
    len: usize,
    count: u16,
    size: u32,
}

impl SliceSource {
    fn new(count: u16, size: u32) -> Self {
        let len = usize::from(count) * size as usize;
        let memory = Box::into_raw(vec![0u8; len].into_boxed_slice());
        SliceSource {
            memory: NonNull::new(memory.cast::<u8>()).expect("non-null box"),
            len,
            count,
            size,
        }
    }
}

impl Drop for SliceSource {
    fn drop(&mut self) {
        let slice = std::ptr::slice_from_raw_parts_mut(self.memory.as_ptr(), self.len);
        // SAFETY: `memory` came from `Box::into_raw` of a slice of exactly `len` bytes.
        drop(unsafe { Box::from_raw(slice) });
    }
}

// SAFETY: the memory is exclusively owned by the source and never moves; ids map to disjoint
// `size`-byte ranges inside it.
unsafe impl Send for SliceSource {}
// SAFETY: as above; the source itself is never written through a shared reference.
unsafe impl Sync for SliceSource {}

// SAFETY: see the `Send` impl: disjoint, stable, live for the source's lifetime.
unsafe impl BufferSource for SliceSource {
    fn buffer_count(&self) -> u16 {
        self.count
    }
    fn buffer_len(&self) -> u32 {
        self.size
    }
    fn buffer_ptr(&self, id: u16) -> NonNull<u8> {
        // SAFETY: `id < count`, so the offset stays inside the allocation.
        unsafe { self.memory.add(usize::from(id) * self.size as usize) }
    }
}

#[test]
fn two_buffers_under_64_flooding_senders_lose_nothing() {
    let _serial = serial();
    const SENDERS: usize = 64;
    const BYTES: usize = 16 * 1024;
    let ring = Ring::builder().entries(128).build().expect("ring");
    let group = BufRing::register(&ring, 7, SliceSource::new(2, 1024)).expect("register");
    let mut readers = Vec::new();
    for i in 0..SENDERS {
        let (mut writer, reader) = UnixStream::pair().expect("socketpair");
        writer.write_all(&vec![i as u8; BYTES]).expect("fill");
        writer
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        readers.push(Arc::new(std::os::fd::OwnedFd::from(reader)));
    }
    let mut streams: Vec<_> = readers.iter().map(|r| Some(group.recv_multi(r))).collect();
    let mut received = [0usize; SENDERS];
    let mut finished = [false; SENDERS];
    let mut enobufs = 0;
    let cx = &mut Context::from_waker(Waker::noop());
    let mut rounds = 0;
    while finished.iter().any(|f| !f) {
        rounds += 1;
        assert!(rounds < 100_000, "the flood never drained");
        let mut held = Vec::new();
        for i in 0..SENDERS {
            let Some(stream) = streams[i].as_mut() else {
                continue;
            };
            loop {
                match stream.poll_next(cx) {
                    Poll::Ready(Some(Ok(Received::Data(buf)))) => {
                        assert!(
                            buf.iter().all(|&b| b == i as u8),
                            "bytes from another sender"
                        );
                        received[i] += buf.len();
                        held.push(buf); // hold it across the sweep: the group runs dry
                    }
                    Poll::Ready(Some(Ok(Received::Eof))) => {
                        finished[i] = true;
                    }
                    Poll::Ready(Some(Err(e))) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        enobufs += 1;
                    }
                    Poll::Ready(Some(Err(e))) => panic!("recv {i}: {e}"),
                    Poll::Ready(None) => {
                        // The multishot ended (ENOBUFS or EOF): re-arm unless done.
                        streams[i] = (!finished[i]).then(|| group.recv_multi(&readers[i]));
                        break;
                    }
                    Poll::Pending => break,
                }
            }
        }
        drop(held); // buffers go back; dead streams were re-armed above
        ring.turn(Some(Duration::from_millis(5))).expect("turn");
    }
    assert!(
        received.iter().all(|&n| n == BYTES),
        "bytes lost: {received:?}"
    );
    assert!(
        enobufs > 0,
        "the group never ran dry: the test did not exercise ENOBUFS"
    );
    println!(
        "64 senders over 2 buffers: {enobufs} ENOBUFS re-arms, {} recycles",
        group.recycled()
    );
    drop(streams);
    crate::support::settle(&ring);
}

#[test]
fn multishot_accept_ended_by_emfile_is_re_armed() {
    let _serial = serial();
    // Lowering RLIMIT_NOFILE affects the whole process, so the scenario runs in a child.
    if std::env::var_os("WEIR_RING_EMFILE_CHILD").is_some() {
        emfile_scenario();
        return;
    }
    weir_testkit::run_child_test(
        "provided::multishot_accept_ended_by_emfile_is_re_armed",
        &[("WEIR_RING_EMFILE_CHILD", "1")],
    );
}

fn emfile_scenario() {
    let ring = Ring::builder().entries(32).build().expect("ring");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let listener = Arc::new(std::os::fd::OwnedFd::from(listener));
    let clients: Vec<_> = (0..6)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let open = std::fs::read_dir("/proc/self/fd").expect("fds").count();
    let limit = libc::rlimit {
        rlim_cur: (open + 2) as libc::rlim_t,
        rlim_max: libc::RLIM_INFINITY,
    };
    let mut hard = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `hard` is a valid out-pointer.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
    let limit = libc::rlimit {
        rlim_max: hard.rlim_max,
        ..limit
    };
    // SAFETY: `limit` is a valid rlimit value.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut accepted_total = 0;
    let mut emfile_endings = 0;
    while accepted_total < clients.len() {
        let mut held = Vec::new();
        let mut stream = ring.accept_multi(&listener);
        block_on(&ring, async {
            while let Some(result) = stream.next().await {
                match result {
                    Ok(fd) => held.push(fd),
                    // Out of descriptors: whether or not the kernel keeps the multishot armed,
                    // it cannot make progress until descriptors are freed. Stop, free, re-arm.
                    Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                        emfile_endings += 1;
                        break;
                    }
                    Err(e) => panic!("accept: {e}"),
                }
                if accepted_total + held.len() == clients.len() {
                    break;
                }
            }
        });
        drop(stream); // cancels the multishot if it is still armed
        accepted_total += held.len();
        drop(held); // descriptors free again
        assert!(
            emfile_endings <= clients.len(),
            "re-arming never made progress"
        );
    }
    crate::support::settle(&ring);
    assert_eq!(accepted_total, clients.len());
    assert!(
        emfile_endings > 0,
        "the descriptor limit never ended the multishot"
    );
    println!("multishot accept: {accepted_total} accepted across {emfile_endings} EMFILE endings");
}

/// `provide` from two threads at once never puts more buffers in the ring than it has room for
/// (a fullness check and an increment that are not one step let both threads through the last
/// slot, and the tail would overrun entries the kernel has not consumed). Each thread plays the
/// kernel for its own buffer: it takes it back with a CQE naming it, as a pool's reader would.
#[test]
fn concurrent_provides_never_overrun_the_ring() {
    const ROUNDS: usize = 200_000;
    let ring = Ring::builder().entries(4).build().expect("ring");
    let group = BufRing::register_empty(&ring, 9, SliceSource::new(2, 64), 1).expect("register");
    // Threads between a successful `provide` and the take-out of their buffer: the ring counts
    // each of them, so more than one is an overrun of a ring with room for one.
    let holding = std::sync::atomic::AtomicUsize::new(0);
    let overruns = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for id in 0..2u16 {
            let (group, holding, overruns) = (&group, &holding, &overruns);
            scope.spawn(move || {
                for _ in 0..ROUNDS {
                    // SAFETY: buffer `id` belongs to this thread alone, and it is out of the
                    // ring (taken out below after each successful provide).
                    if unsafe { group.provide(id) }.is_err() {
                        continue;
                    }
                    if holding.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                        overruns.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    holding.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    // IORING_CQE_F_BUFFER, with the buffer id in the upper 16 bits.
                    let cqe = weir_ring::Cqe {
                        result: 0,
                        flags: 1 | (u32::from(id) << 16),
                    };
                    let taken = group.take(cqe).expect("the CQE names a buffer");
                    assert_eq!(taken.into_id().0, id);
                }
            });
        }
    });
    let overruns = overruns.into_inner();
    assert_eq!(
        overruns, 0,
        "{overruns} provides overran a ring with room for one"
    );
}

/// A source that says when it is dropped (the group's teardown released it).
struct Flagged(SliceSource, Arc<std::sync::atomic::AtomicBool>);

// SAFETY: delegates to `SliceSource`, whose buffers are disjoint, stable and live as long as it.
unsafe impl BufferSource for Flagged {
    fn buffer_count(&self) -> u16 {
        self.0.buffer_count()
    }
    fn buffer_len(&self) -> u32 {
        self.0.buffer_len()
    }
    fn buffer_ptr(&self, id: u16) -> NonNull<u8> {
        self.0.buffer_ptr(id)
    }
}

impl Drop for Flagged {
    fn drop(&mut self) {
        self.1.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// The last handle of a buffer group can be the one a cancelled receive parked: it is dropped
/// when the receive's final CQE is reaped, inside the ring's turn. Unregistering the group there
/// must not take the ring's lock the turn holds (it deadlocked). Run in a thread with a deadline,
/// so a deadlock fails the test instead of hanging it.
#[test]
fn the_last_group_handle_dropped_by_a_reap_unregisters_it() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let ring = Ring::builder().entries(8).build().expect("ring");
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = Flagged(SliceSource::new(2, 64), released.clone());
        let group = BufRing::register(&ring, 11, source).expect("register");
        let (_writer, reader) = UnixStream::pair().expect("socketpair");
        let reader = Arc::new(std::os::fd::OwnedFd::from(reader));
        let stream = group.recv_multi(&reader);
        ring.turn(Some(Duration::ZERO)).expect("submit the receive");
        // The receive is cancelled; its parked data now holds the group's last handle.
        drop(stream);
        drop(group);
        crate::support::settle(&ring);
        let unregistered = released.load(std::sync::atomic::Ordering::SeqCst);
        // The group id is free again only if the reap really unregistered it.
        let again = BufRing::register(&ring, 11, SliceSource::new(1, 64)).map(drop);
        let _ = tx.send((unregistered, again.map_err(|e| e.to_string())));
    });
    let (unregistered, again) = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the ring deadlocked dropping the group inside its own reap");
    assert!(unregistered, "the group's source was never released");
    again.expect("the group id is registered still");
}

/// A ring whose handles are all dropped while a receive over a buffer group is still in flight
/// tears down: the receive's parked data holds the group, and the group must not hold the ring
/// (a reference cycle kept the ring, its descriptors and the group alive for good).
#[test]
fn a_ring_dropped_with_a_group_receive_in_flight_tears_down() {
    let _serial = serial();
    let before = crate::support::fd_count();
    let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let ring = Ring::builder().entries(8).build().expect("ring");
        let source = Flagged(SliceSource::new(2, 64), released.clone());
        let group = BufRing::register(&ring, 12, source).expect("register");
        let (writer, reader) = UnixStream::pair().expect("socketpair");
        let reader = Arc::new(std::os::fd::OwnedFd::from(reader));
        let stream = group.recv_multi(&reader);
        ring.turn(Some(Duration::ZERO)).expect("submit the receive");
        drop((stream, group, reader, writer));
        // The last ring handle: teardown cancels the receive and reaps it.
        drop(ring);
    }
    assert!(
        released.load(std::sync::atomic::Ordering::SeqCst),
        "the group (and the ring it held) were never torn down"
    );
    assert_eq!(crate::support::fd_count(), before, "descriptors leaked");
}
