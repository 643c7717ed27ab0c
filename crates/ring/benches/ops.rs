//! Micro benchmark of the ring: nop round trips with 64 ops in flight, and a loopback TCP
//! ping-pong served over the ring, against a plain `epoll` + `read`/`write` loop in the same run.
//!
//! `cargo bench -p weir-ring --bench ops` (or `cargo xtask bench`). Reports `io_uring_enter`
//! calls per op (the ring's own counter) and nanoseconds per op; the epoll loop counts its own
//! syscalls. Nothing is asserted.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use weir_ring::Ring;

fn scale() -> u64 {
    if std::env::var_os("WEIR_BENCH_FULL").is_some() {
        10
    } else {
        1
    }
}

fn nops(ring: &Ring) -> (f64, f64) {
    let total = 200_000 * scale();
    let before = ring.counters();
    let start = Instant::now();
    let cx = &mut Context::from_waker(Waker::noop());
    let mut done = 0;
    while done < total {
        let mut batch: Vec<_> = (0..64).map(|_| Box::pin(ring.nop())).collect();
        while !batch.is_empty() {
            ring.turn(None).expect("turn");
            batch.retain_mut(|op| match op.as_mut().poll(cx) {
                Poll::Ready(r) => {
                    r.expect("nop");
                    false
                }
                Poll::Pending => true,
            });
        }
        done += 64;
    }
    let elapsed = start.elapsed();
    let enters = ring.counters().enters - before.enters;
    (
        enters as f64 / total as f64,
        elapsed.as_nanos() as f64 / total as f64,
    )
}

const MESSAGE: usize = 64;

fn client(addr: std::net::SocketAddr, round_trips: u64) -> Duration {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let message = [7u8; MESSAGE];
    let mut reply = [0u8; MESSAGE];
    for _ in 0..1_000 {
        stream.write_all(&message).expect("write");
        stream.read_exact(&mut reply).expect("read");
    }
    let start = Instant::now();
    for _ in 0..round_trips {
        stream.write_all(&message).expect("write");
        stream.read_exact(&mut reply).expect("read");
    }
    start.elapsed()
}

fn ring_pingpong(ring: Ring, round_trips: u64) -> (f64, f64) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = std::thread::spawn(move || client(addr, round_trips));
    let (stream, _) = listener.accept().expect("accept");
    stream.set_nodelay(true).expect("nodelay");
    let stream: Arc<OwnedFd> = Arc::new(stream.into());
    let cx = &mut Context::from_waker(Waker::noop());
    let mut buf = Vec::with_capacity(4096);
    let mut enters_at_start = None;
    let mut served = 0u64;
    loop {
        let mut recv = Box::pin(ring.recv(&stream, buf));
        let (n, got) = loop {
            ring.turn(None).expect("turn");
            if let Poll::Ready(out) = recv.as_mut().poll(cx) {
                break out;
            }
        };
        let n = match n {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut reply = got;
        reply.truncate(n);
        let mut send = Box::pin(ring.send(&stream, reply));
        let (sent, back) = loop {
            if let Poll::Ready(out) = send.as_mut().poll(cx) {
                break out;
            }
            ring.turn(None).expect("turn");
        };
        sent.expect("send");
        buf = back;
        buf.clear();
        served += 1;
        if served == 1_000 {
            enters_at_start = Some(ring.counters().enters);
        }
    }
    let elapsed = client.join().expect("client");
    let enters = ring.counters().enters - enters_at_start.unwrap_or(0);
    (
        enters as f64 / round_trips as f64,
        elapsed.as_nanos() as f64 / round_trips as f64,
    )
}

fn epoll_pingpong(round_trips: u64) -> (f64, f64) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let client = std::thread::spawn(move || client(addr, round_trips));
    let (mut stream, _) = listener.accept().expect("accept");
    stream.set_nodelay(true).expect("nodelay");
    stream.set_nonblocking(true).expect("nonblocking");
    // SAFETY: plain epoll setup on descriptors we own; `event` lives across the call.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 0,
    };
    // SAFETY: as above.
    unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, stream.as_raw_fd(), &mut event) };
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let mut buf = [0u8; 4096];
    let mut syscalls = 0u64;
    let mut served = 0u64;
    let mut counted_from = 0;
    'serve: loop {
        // SAFETY: `events` has room for 8 entries.
        unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 8, -1) };
        syscalls += 1;
        loop {
            syscalls += 1;
            match stream.read(&mut buf) {
                Ok(0) => break 'serve,
                Ok(n) => {
                    syscalls += 1;
                    if stream.write_all(&buf[..n]).is_err() {
                        break 'serve;
                    }
                    served += 1;
                    if served == 1_000 {
                        counted_from = syscalls;
                    }
                    if n < buf.len() {
                        break; // drained: the next arrival is a new edge
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => break 'serve,
            }
        }
    }
    // SAFETY: our own epoll descriptor.
    unsafe { libc::close(epoll) };
    let elapsed = client.join().expect("client");
    (
        (syscalls - counted_from) as f64 / round_trips as f64,
        elapsed.as_nanos() as f64 / round_trips as f64,
    )
}

fn main() {
    let ring = Ring::builder().entries(128).build().expect("io_uring");
    println!(
        "weir-ring micro benchmark (setup flags: {:?})",
        ring.setup().flags
    );
    let (enters, ns) = nops(&ring);
    println!("{:<44} {:>12} {:>12}", "operation", "enters/op", "ns/op");
    println!(
        "{:<44} {enters:>12.4} {ns:>12.1}",
        "nop, 64 in flight per turn"
    );
    let round_trips = 20_000 * scale();
    println!(
        "{:<44} {:>12} {:>12}",
        "loopback TCP ping-pong, 64 B", "syscalls/RT", "ns/RT"
    );
    let (ring_enters, ring_ns) = ring_pingpong(Ring::new().expect("ring"), round_trips);
    println!(
        "{:<44} {ring_enters:>12.2} {ring_ns:>12.0}",
        "weir ring (recv + send ops)"
    );
    let plain = Ring::builder().plain().build().expect("ring");
    let (plain_enters, plain_ns) = ring_pingpong(plain, round_trips);
    println!(
        "{:<44} {plain_enters:>12.2} {plain_ns:>12.0}",
        "weir ring, no optional setup flags"
    );
    let (epoll_syscalls, epoll_ns) = epoll_pingpong(round_trips);
    println!(
        "{:<44} {epoll_syscalls:>12.2} {epoll_ns:>12.0}",
        "plain epoll + read/write"
    );
    println!("ratio ring / epoll (ns per RT): {:.3}", ring_ns / epoll_ns);
}
