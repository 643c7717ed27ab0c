//! Steady-state I/O allocates nothing on the runtime's thread, on either backend: a TCP echo
//! through owned reads and writes, a UDP echo through `recv_from`/`send_to`, and reads that time
//! out (a timed read loop on an idle connection). A counting
//! allocator counts this thread's allocations only (the peer runs on another thread).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};

use weir_net::{Backend, Runtime, TcpListener, UdpSocket};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to the system allocator unchanged; only counts calls on this
// thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

const WARM_UP: usize = 200;
const COUNTED: usize = 1_000;
const MESSAGE: usize = 1024;

/// The backends to run, or none (said loudly) under Valgrind: it replaces the allocator
/// anyway, and it holds its lock across `io_uring_enter`, so the peer thread of these echoes
/// would wait out a capped park on every round trip.
fn backends(test: &str) -> Vec<Backend> {
    if std::env::var_os("WEIR_UNDER_VALGRIND").is_some() {
        println!("SKIPPED {test} under Valgrind (allocations are counted in the plain test run)");
        return Vec::new();
    }
    match std::env::var("WEIR_BACKEND").as_deref() {
        Ok("uring") => vec![Backend::Uring],
        Ok("poll") => vec![Backend::Poll],
        _ => vec![Backend::Uring, Backend::Poll],
    }
}

#[test]
fn a_tcp_echo_allocates_nothing_per_request() {
    for backend in backends("a_tcp_echo_allocates_nothing_per_request") {
        let rt = Runtime::builder()
            .backend(backend)
            .build()
            .expect("runtime");
        let during = rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let client = std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut back = [0u8; MESSAGE];
                for i in 0..WARM_UP + COUNTED {
                    stream.write_all(&[i as u8; MESSAGE]).expect("write");
                    stream.read_exact(&mut back).expect("read");
                    assert_eq!(back, [i as u8; MESSAGE]);
                }
            });
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            let mut buf = Vec::with_capacity(16 * 1024);
            let mut echoed = 0;
            let mut from = None;
            let mut during = None;
            loop {
                if echoed == WARM_UP * MESSAGE {
                    from = Some(allocations());
                }
                if echoed == (WARM_UP + COUNTED) * MESSAGE {
                    during = from.map(|from| allocations() - from);
                }
                buf.clear();
                let (n, back) = stream.read(buf).await;
                buf = back;
                if n.expect("read") == 0 {
                    break; // the client's real end of stream
                }
                let (written, back) = stream.write_all(buf).await;
                buf = back;
                written.expect("write");
                echoed += buf.len();
            }
            client.join().expect("client");
            assert_eq!(echoed, (WARM_UP + COUNTED) * MESSAGE, "{backend:?}");
            during.expect("the counted requests ran")
        });
        assert_eq!(
            during, 0,
            "{backend:?}: {during} allocations over {COUNTED} echoed requests"
        );
    }
}

#[test]
fn a_udp_echo_allocates_nothing_per_datagram() {
    for backend in backends("a_udp_echo_allocates_nothing_per_datagram") {
        let rt = Runtime::builder()
            .backend(backend)
            .build()
            .expect("runtime");
        let during = rt.block_on(async {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let addr = socket.local_addr().expect("addr");
            let client = std::thread::spawn(move || {
                let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                peer.connect(addr).expect("connect");
                let mut back = [0u8; 64];
                for i in 0..WARM_UP + COUNTED {
                    peer.send(&[i as u8; 64]).expect("send");
                    let n = peer.recv(&mut back).expect("recv");
                    assert_eq!(&back[..n], &[i as u8; 64]);
                }
            });
            let mut buf = Vec::with_capacity(2048);
            let mut from = 0;
            for i in 0..WARM_UP + COUNTED {
                if i == WARM_UP {
                    from = allocations();
                }
                buf.clear();
                let (got, back) = socket.recv_from(buf).await;
                let (_, peer) = got.expect("recv_from");
                let (sent, back) = socket.send_to(back, peer).await;
                sent.expect("send_to");
                buf = back;
            }
            let during = allocations() - from;
            client.join().expect("client");
            during
        });
        assert_eq!(
            during, 0,
            "{backend:?}: {during} allocations over {COUNTED} echoed datagrams"
        );
    }
}

#[test]
fn a_read_that_times_out_allocates_nothing() {
    use std::time::Duration;
    for backend in backends("a_read_that_times_out_allocates_nothing") {
        let rt = Runtime::builder()
            .backend(backend)
            .build()
            .expect("runtime");
        let during = rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            // The peer stays silent until told to close.
            let (close, closed) = std::sync::mpsc::channel::<()>();
            let client = std::thread::spawn(move || {
                let stream = std::net::TcpStream::connect(addr).expect("connect");
                let _ = closed.recv();
                drop(stream);
            });
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut buf = Vec::with_capacity(1024);
            let mut from = 0;
            for i in 0..20 + 100 {
                if i == 20 {
                    from = allocations();
                }
                buf.clear();
                let (got, back) = stream.read_timeout(buf, Duration::from_micros(200)).await;
                let error = got.expect_err("the peer sent nothing");
                assert_eq!(error.kind(), std::io::ErrorKind::TimedOut, "{backend:?}");
                buf = back;
            }
            let during = allocations() - from;
            close.send(()).expect("client");
            client.join().expect("client");
            // Then the real end of stream.
            buf.clear();
            let (got, _) = stream.read(buf).await;
            assert_eq!(got.expect("read"), 0, "{backend:?}");
            during
        });
        assert_eq!(
            during, 0,
            "{backend:?}: {during} allocations over 100 timed-out reads"
        );
    }
}
