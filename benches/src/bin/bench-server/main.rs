//! One echo server per mode, all with the same logic: read into a 16 KiB buffer (larger than
//! any message), write it all back, `TCP_NODELAY`. Exits after `--conns` connections closed.
//!
//! `bench-server <mode> <conns> <alloc-file>`; prints its port on the first line of stdout.
//! Modes: `weir-uring`, `weir-poll`, `tokio-ct`, `tokio-mt`, `monoio` and `compio` (both on
//! io_uring), and the two
//! raw floors with no runtime at all: `epoll` (edge-triggered `epoll` with `read`/`write`) and
//! `uring-raw` (the `io-uring` crate driven by hand: multishot accept and receive over a
//! provided-buffer ring, each buffer sent back as received; see [`uring_raw`]).
//!
//! With `WEIR_BENCH_MODE=udp` the same modes echo UDP datagrams instead (B6): each datagram goes
//! back to its sender; an empty datagram stops the server. With `WEIR_BENCH_MODE=idle-timed`
//! each connection is served by a loop of timed reads instead (B9, see [`idle_timed`]); the raw
//! floors have no timers and refuse that mode. With `WEIR_BENCH_MODE=http` the Weir and tokio
//! modes serve hyper's HTTP/1.1 hello instead (B10, see [`http`]). With
//! `WEIR_BENCH_MODE=proxy` and `WEIR_BENCH_UPSTREAM=<host:port>` each mode proxies to that
//! upstream instead (B11, see [`proxy`]); `uring-raw` has no proxy and refuses that mode.
//!
//! Every mode but `tokio-mt` pins itself to CPU 1, or to `WEIR_BENCH_CPU` where that is set (B11
//! runs its upstream echo server on CPU 0, beside the load generator).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use weir_benches::{CountingAllocator, pin_to, publish_allocations};

mod compio_echo;
mod http;
mod idle_timed;
mod proxy;
mod uring_raw;

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const BUFFER: usize = 16 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(conns), Some(alloc_file)) = (args.get(1), args.get(2), args.get(3))
    else {
        eprintln!("usage: bench-server <mode> <conns> <alloc-file>");
        std::process::exit(2);
    };
    let conns: usize = conns.parse().unwrap_or(1);
    // The harness checks the affinity it got in /proc (tokio `multi_thread` has two workers
    // and stays unpinned).
    if mode != "tokio-mt" {
        let cpu = match std::env::var("WEIR_BENCH_CPU") {
            Ok(cpu) => cpu.parse().unwrap_or_else(|_| {
                eprintln!("bench-server: WEIR_BENCH_CPU={cpu} is not a CPU number");
                std::process::exit(2);
            }),
            Err(_) => 1,
        };
        if let Err(e) = pin_to(cpu) {
            eprintln!("bench-server: could not pin to CPU {cpu}: {e}");
        }
    }
    let bench_mode = std::env::var("WEIR_BENCH_MODE");
    if bench_mode.as_deref() == Ok("udp") {
        udp_main(mode, alloc_file);
        return;
    }
    let timed_reads = bench_mode.as_deref() == Ok("idle-timed");
    if timed_reads && !idle_timed::serves(mode) {
        eprintln!("mode {mode} has no timers: it cannot serve WEIR_BENCH_MODE=idle-timed");
        std::process::exit(2);
    }
    let hyper = bench_mode.as_deref() == Ok("http");
    if hyper && !http::serves(mode) {
        eprintln!("mode {mode} has no hyper glue: it cannot serve WEIR_BENCH_MODE=http");
        std::process::exit(2);
    }
    let upstream = if bench_mode.as_deref() == Ok("proxy") {
        if !proxy::serves(mode) {
            eprintln!("mode {mode} has no proxy: it cannot serve WEIR_BENCH_MODE=proxy");
            std::process::exit(2);
        }
        let upstream = std::env::var("WEIR_BENCH_UPSTREAM").ok();
        match upstream.as_deref().map(str::parse::<std::net::SocketAddr>) {
            Some(Ok(addr)) => Some(addr),
            _ => {
                eprintln!("WEIR_BENCH_MODE=proxy needs WEIR_BENCH_UPSTREAM=<host:port>");
                std::process::exit(2);
            }
        }
    } else {
        None
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    // The kernel's full backlog (std listens with 128): a scenario's load generator opens up to
    // 10,000 connections in one go, and a SYN dropped from a full queue costs its connect a
    // second or more of retransmission.
    // SAFETY: listen(2) again on our own listening socket only changes its backlog.
    let relisten = unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&listener), 4096) };
    assert_eq!(relisten, 0, "listen: {}", std::io::Error::last_os_error());
    println!("{}", listener.local_addr().expect("addr").port());
    std::io::stdout().flush().expect("stdout");
    publish_allocations(alloc_file).expect("allocation counter");
    if timed_reads {
        idle_timed::serve(mode, listener, conns);
        return;
    }
    if hyper {
        http::serve(mode, listener, conns);
        return;
    }
    if let Some(upstream) = upstream {
        proxy::serve(mode, listener, conns, upstream);
        return;
    }
    match mode.as_str() {
        "weir-uring" => weir(listener, conns, weir_net::Backend::Uring),
        "weir-poll" => weir(listener, conns, weir_net::Backend::Poll),
        "tokio-ct" => tokio_server(listener, conns, false),
        "tokio-mt" => tokio_server(listener, conns, true),
        "epoll" => epoll(listener, conns),
        "uring-raw" => uring_raw::tcp(listener, conns),
        "monoio" => monoio_server(listener, conns),
        "compio" => compio_echo::tcp(listener, conns),
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}

fn weir(listener: TcpListener, conns: usize, backend: weir_net::Backend) {
    let rt = weir_runtime(backend);
    rt.block_on(async move {
        let listener = weir_net::TcpListener::from_std(listener).expect("listener");
        let closed = Rc::new(std::cell::Cell::new(0usize));
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            let closed = closed.clone();
            tasks.push(weir_net::spawn(async move {
                let mut buf = Vec::with_capacity(BUFFER);
                loop {
                    buf.clear();
                    let (n, back) = stream.read(buf).await;
                    buf = back;
                    match n {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let (r, back) = stream.write_all(buf).await;
                            buf = back;
                            if r.is_err() {
                                break;
                            }
                        }
                    }
                }
                closed.set(closed.get() + 1);
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// Weir's runtime on `backend`. Switches for measuring the ring's options by hand, outside the
/// default comparison: `WEIR_BENCH_SQPOLL=<idle ms>` turns SQPOLL on,
/// `WEIR_BENCH_SINGLE_SHOT=1` gives each read its own receive instead of the multishot one, and
/// `WEIR_BENCH_SEND_ZC=<bytes>` sends at least that many bytes with `SEND_ZC`.
fn weir_runtime(backend: weir_net::Backend) -> weir_net::Runtime {
    let mut builder = weir_net::Runtime::builder().backend(backend);
    if let Some(idle) = std::env::var("WEIR_BENCH_SQPOLL")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        builder = builder.sqpoll(std::time::Duration::from_millis(idle));
    }
    if std::env::var_os("WEIR_BENCH_SINGLE_SHOT").is_some() {
        builder = builder.multishot_reads(false);
    }
    if let Some(bytes) = std::env::var("WEIR_BENCH_SEND_ZC")
        .ok()
        .and_then(|bytes| bytes.parse().ok())
    {
        builder = builder.send_zc_threshold(bytes);
    }
    builder.build().expect("weir runtime")
}

/// tokio `current_thread`, or `multi_thread` with two workers, with the I/O driver (and no
/// timers: the echo needs none).
fn tokio_runtime(multi: bool) -> tokio::runtime::Runtime {
    tokio_builder(multi).build().expect("tokio runtime")
}

/// The builder behind [`tokio_runtime`]; B9's timed reads add the time driver to it.
fn tokio_builder(multi: bool) -> tokio::runtime::Builder {
    let mut builder = if multi {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_io();
    builder
}

fn tokio_server(listener: TcpListener, conns: usize, multi: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    listener.set_nonblocking(true).expect("nonblocking");
    let runtime = tokio_runtime(multi);
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let closed = std::sync::Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            let closed = closed.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; BUFFER];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                closed.fetch_add(1, Ordering::Relaxed);
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// The floor: edge-triggered epoll, `read` until a short read, `write` all.
fn epoll(listener: TcpListener, conns: usize) {
    use std::os::fd::AsRawFd;
    let mut streams = Vec::new();
    for _ in 0..conns {
        let (stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_nonblocking(true).expect("nonblocking");
        streams.push(Some(stream));
    }
    // SAFETY: plain epoll calls on descriptors we own; `event` lives across each call.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    for (key, stream) in streams.iter().enumerate() {
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: key as u64,
        };
        let fd = stream.as_ref().map_or(-1, |s| s.as_raw_fd());
        // SAFETY: as above.
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; BUFFER];
    let mut open = conns;
    while open > 0 {
        // SAFETY: `events` has room for its length.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
        for event in events.iter().take(n.max(0) as usize) {
            let key = event.u64 as usize;
            let Some(stream) = streams[key].as_mut() else {
                continue;
            };
            let mut close = false;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        close = true;
                        break;
                    }
                    Ok(n) => {
                        if write_all_nonblocking(stream, &buf[..n]).is_err() {
                            close = true;
                            break;
                        }
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        close = true;
                        break;
                    }
                }
            }
            if close {
                streams[key] = None;
                open -= 1;
            }
        }
    }
}

/// Writes all of `bytes` to a non-blocking socket, retrying while its send buffer is full.
fn write_all_nonblocking(
    stream: &mut std::net::TcpStream,
    mut bytes: &[u8],
) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// B6: a UDP echo server per mode; an empty datagram stops it.
fn udp_main(mode: &str, alloc_file: &str) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind loopback");
    println!("{}", socket.local_addr().expect("addr").port());
    std::io::stdout().flush().expect("stdout");
    publish_allocations(alloc_file).expect("allocation counter");
    match mode {
        "weir-uring" => udp_weir(socket, weir_net::Backend::Uring),
        "weir-poll" => udp_weir(socket, weir_net::Backend::Poll),
        "tokio-ct" | "tokio-mt" => udp_tokio(socket, mode == "tokio-mt"),
        "epoll" => udp_epoll(socket),
        "uring-raw" => uring_raw::udp(socket),
        "monoio" => udp_monoio(socket),
        "compio" => compio_echo::udp(socket),
        other => {
            eprintln!("unknown mode {other}");
            std::process::exit(2);
        }
    }
}

fn udp_weir(socket: std::net::UdpSocket, backend: weir_net::Backend) {
    let rt = weir_net::Runtime::builder()
        .backend(backend)
        .build()
        .expect("weir runtime");
    rt.block_on(async move {
        let addr = socket.local_addr().expect("addr");
        drop(socket);
        let socket = weir_net::UdpSocket::bind(addr).expect("rebind");
        let mut buf = Vec::with_capacity(BUFFER);
        loop {
            buf.clear();
            let (received, back) = socket.recv_from(buf).await;
            let Ok((n, from)) = received else { return };
            if n == 0 {
                return;
            }
            let (_, back) = socket.send_to(back, from).await;
            buf = back;
        }
    });
}

fn udp_tokio(socket: std::net::UdpSocket, multi: bool) {
    socket.set_nonblocking(true).expect("nonblocking");
    let runtime = tokio_runtime(multi);
    runtime.block_on(async move {
        let socket = tokio::net::UdpSocket::from_std(socket).expect("socket");
        let mut buf = vec![0u8; BUFFER];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            if n == 0 {
                return;
            }
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
}

/// The floor: edge-triggered epoll, `recvfrom` until `EAGAIN`, `sendto` each datagram back.
fn udp_epoll(socket: std::net::UdpSocket) {
    use std::os::fd::AsRawFd;
    socket.set_nonblocking(true).expect("nonblocking");
    // SAFETY: plain epoll calls on a descriptor we own; `event` lives across the call.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    let mut event = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLET) as u32,
        u64: 0,
    };
    // SAFETY: as above.
    unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut event) };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 8];
    let mut buf = vec![0u8; BUFFER];
    loop {
        // SAFETY: `events` has room for its length.
        unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
        loop {
            match socket.recv_from(&mut buf) {
                Ok((0, _)) => return,
                Ok((n, from)) => {
                    let _ = socket.send_to(&buf[..n], from);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return,
            }
        }
    }
}

fn monoio_runtime() -> monoio::Runtime<monoio::IoUringDriver> {
    monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .build()
        .expect("monoio runtime")
}

fn monoio_server(listener: TcpListener, conns: usize) {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    monoio_runtime().block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tasks.push(monoio::spawn(async move {
                let mut buf = Vec::with_capacity(BUFFER);
                loop {
                    buf.clear();
                    let (n, back) = stream.read(buf).await;
                    buf = back;
                    match n {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let (r, back) = stream.write_all(buf).await;
                            buf = back;
                            if r.is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await;
        }
    });
}

fn udp_monoio(socket: std::net::UdpSocket) {
    monoio_runtime().block_on(async move {
        let socket = monoio::net::udp::UdpSocket::from_std(socket).expect("socket");
        let mut buf = Vec::with_capacity(BUFFER);
        loop {
            buf.clear();
            let (received, back) = socket.recv_from(buf).await;
            let Ok((n, from)) = received else { return };
            if n == 0 {
                return;
            }
            let (_, back) = socket.send_to(back, from).await;
            buf = back;
        }
    });
}
