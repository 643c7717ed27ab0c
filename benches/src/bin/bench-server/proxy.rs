//! B11: each mode as a TCP proxy in front of one upstream echo server (`WEIR_BENCH_UPSTREAM`,
//! the same server for every proxy). Each accepted connection gets its own connection to the
//! upstream (both `TCP_NODELAY`), and bytes flow both ways with the runtime's own primitive:
//!
//! - `weir-uring`, `weir-poll`: `OwnedReadHalf::splice_to` each way, 64 KiB at most a call (as
//!   the `proxy` example), or with `WEIR_BENCH_PROXY_COPY=1` a copy loop through a 16 KiB
//!   buffer (`read` + `write_all`);
//! - `monoio`: `monoio::io::zero_copy` (splice through a pipe, 4 KiB a call) each way (its
//!   `copy` cost as much or more, by hand);
//! - `tokio-ct`, `tokio-mt`: `tokio::io::copy_bidirectional`;
//! - `compio`: `compio::io::util::copy_bidirectional`;
//! - `epoll`: the floor, an edge-triggered epoll loop copying through a 16 KiB buffer per
//!   direction, with no runtime at all.
//!
//! The harness sets `WEIR_BENCH_PROXY_COPY` for 1 KiB messages and leaves it unset for the bulk
//! stream: Weir's cheaper primitive for each load.
//!
//! `uring-raw` has no proxy (a hand-driven splice chain on the ring is not written) and refuses
//! the mode. Each direction passes its end of stream on as a half-close; a connection is done
//! when both directions are, and the proxy exits after `conns` connections are done.

use std::net::{SocketAddr, TcpListener};

use super::BUFFER;

/// The most one Weir splice moves, as in the `proxy` example.
const SPLICE_CHUNK: usize = 64 * 1024;

/// Whether `mode` has a proxy.
pub(crate) fn serves(mode: &str) -> bool {
    mode != "uring-raw"
}

/// Proxies `conns` connections accepted on `listener` to `upstream`, then returns.
pub(crate) fn serve(mode: &str, listener: TcpListener, conns: usize, upstream: SocketAddr) {
    match mode {
        "weir-uring" => weir(listener, conns, upstream, weir_net::Backend::Uring),
        "weir-poll" => weir(listener, conns, upstream, weir_net::Backend::Poll),
        "tokio-ct" => tokio_proxy(listener, conns, upstream, false),
        "tokio-mt" => tokio_proxy(listener, conns, upstream, true),
        "monoio" => monoio_proxy(listener, conns, upstream),
        "compio" => compio_proxy(listener, conns, upstream),
        "epoll" => epoll::serve(listener, conns, upstream),
        other => {
            eprintln!("mode {other} has no proxy: it cannot serve WEIR_BENCH_MODE=proxy");
            std::process::exit(2);
        }
    }
}

fn weir(listener: TcpListener, conns: usize, upstream: SocketAddr, backend: weir_net::Backend) {
    use weir_net::{OwnedReadHalf, OwnedWriteHalf};
    let copy = std::env::var_os("WEIR_BENCH_PROXY_COPY").is_some();
    /// One direction: `from` to `to` until `from` ends; dropping `to` half-closes it.
    async fn pipe_through(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, copy: bool) {
        if copy {
            let mut buf = Vec::with_capacity(BUFFER);
            loop {
                buf.clear();
                let (n, back) = from.read(buf).await;
                buf = back;
                if !matches!(n, Ok(n) if n > 0) {
                    return;
                }
                let (written, back) = to.write_all(buf).await;
                buf = back;
                if written.is_err() {
                    return;
                }
            }
        }
        while let Ok(1..) = from.splice_to(&mut to, SPLICE_CHUNK).await {}
    }
    let rt = super::weir_runtime(backend);
    rt.block_on(async move {
        let listener = weir_net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (client, _) = listener.accept().await.expect("accept");
            let server = weir_net::TcpStream::connect(upstream)
                .await
                .expect("connect upstream");
            client.set_nodelay(true).expect("nodelay");
            server.set_nodelay(true).expect("nodelay");
            let (client_read, client_write) = client.into_split().await.expect("split");
            let (server_read, server_write) = server.into_split().await.expect("split");
            tasks.push(weir_net::spawn(pipe_through(
                client_read,
                server_write,
                copy,
            )));
            tasks.push(weir_net::spawn(pipe_through(
                server_read,
                client_write,
                copy,
            )));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

fn tokio_proxy(listener: TcpListener, conns: usize, upstream: SocketAddr, multi: bool) {
    listener.set_nonblocking(true).expect("nonblocking");
    super::tokio_runtime(multi).block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut client, _) = listener.accept().await.expect("accept");
            let mut server = tokio::net::TcpStream::connect(upstream)
                .await
                .expect("connect upstream");
            client.set_nodelay(true).expect("nodelay");
            server.set_nodelay(true).expect("nodelay");
            tasks.push(tokio::spawn(async move {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

fn monoio_proxy(listener: TcpListener, conns: usize, upstream: SocketAddr) {
    use monoio::io::{AsyncWriteRent, Splitable, zero_copy};
    super::monoio_runtime().block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (client, _) = listener.accept().await.expect("accept");
            let server = monoio::net::TcpStream::connect(upstream)
                .await
                .expect("connect upstream");
            client.set_nodelay(true).expect("nodelay");
            server.set_nodelay(true).expect("nodelay");
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            // Each direction half-closes its destination at the end of its source.
            tasks.push(monoio::spawn(async move {
                let _ = zero_copy(&mut client_read, &mut server_write).await;
                let _ = server_write.shutdown().await;
            }));
            tasks.push(monoio::spawn(async move {
                let _ = zero_copy(&mut server_read, &mut client_write).await;
                let _ = client_write.shutdown().await;
            }));
        }
        for task in tasks {
            task.await;
        }
    });
}

fn compio_proxy(listener: TcpListener, conns: usize, upstream: SocketAddr) {
    super::compio_echo::runtime().block_on(async move {
        let listener = compio::net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (client, _) = listener.accept().await.expect("accept");
            let server = compio::net::TcpStream::connect(upstream)
                .await
                .expect("connect upstream");
            client.set_nodelay(true).expect("nodelay");
            server.set_nodelay(true).expect("nodelay");
            // Each direction shuts its writer down at the end of its reader.
            tasks.push(compio::runtime::spawn(async move {
                let _ = compio::io::util::copy_bidirectional(client, server).await;
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// The floor: no runtime, one thread, edge-triggered epoll.
mod epoll {
    use std::io::{ErrorKind, Read, Write};
    use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::BUFFER;

    /// The listener's epoll key; a pair's key is its index.
    const LISTENER: u64 = u64::MAX;

    /// One direction of a proxied connection: bytes read from one socket and not yet written
    /// to the other.
    struct Direction {
        buf: Vec<u8>,
        /// `buf[start..end]` is still to be written.
        start: usize,
        end: usize,
        /// The source ended and the destination was half-closed.
        done: bool,
    }

    /// A client connection and its upstream connection.
    struct Pair {
        client: TcpStream,
        server: TcpStream,
        upward: Direction,
        downward: Direction,
    }

    /// Moves what `from` has to `to` until one of them would block or `from` ends. A failed
    /// socket ends the direction.
    fn pump(from: &mut TcpStream, to: &mut TcpStream, dir: &mut Direction) {
        while !dir.done {
            if dir.start < dir.end {
                match to.write(&dir.buf[dir.start..dir.end]) {
                    Ok(n) if n > 0 => dir.start += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Ok(_) | Err(_) => dir.done = true,
                }
                continue;
            }
            match from.read(&mut dir.buf) {
                Ok(0) => {
                    let _ = to.shutdown(Shutdown::Write);
                    dir.done = true;
                }
                Ok(n) => (dir.start, dir.end) = (0, n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    let _ = to.shutdown(Shutdown::Write);
                    dir.done = true;
                }
            }
        }
    }

    fn register(epoll: i32, fd: i32, key: u64, events: i32) {
        let mut event = libc::epoll_event {
            events: (events | libc::EPOLLET) as u32,
            u64: key,
        };
        // SAFETY: epoll_ctl on descriptors we own; `event` lives across the call.
        unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd, &mut event) };
    }

    pub(super) fn serve(listener: TcpListener, conns: usize, upstream: SocketAddr) {
        listener.set_nonblocking(true).expect("nonblocking");
        // SAFETY: epoll_create1 takes no pointers.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        register(epoll, listener.as_raw_fd(), LISTENER, libc::EPOLLIN);
        let mut pairs: Vec<Option<Pair>> = Vec::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let (mut accepted, mut finished) = (0, 0);
        while finished < conns {
            // SAFETY: `events` has room for its length.
            let n =
                unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), events.len() as i32, -1) };
            for event in events.iter().take(n.max(0) as usize) {
                let key = event.u64;
                if key == LISTENER {
                    while accepted < conns {
                        let Ok((client, _)) = listener.accept() else {
                            break;
                        };
                        // A blocking connect: on loopback the upstream's kernel accepts it
                        // at once.
                        let server = TcpStream::connect(upstream).expect("connect upstream");
                        for stream in [&client, &server] {
                            stream.set_nodelay(true).expect("nodelay");
                            stream.set_nonblocking(true).expect("nonblocking");
                        }
                        let key = pairs.len() as u64;
                        let both = libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP;
                        register(epoll, client.as_raw_fd(), key, both);
                        register(epoll, server.as_raw_fd(), key, both);
                        let direction = || Direction {
                            buf: vec![0; BUFFER],
                            start: 0,
                            end: 0,
                            done: false,
                        };
                        pairs.push(Some(Pair {
                            client,
                            server,
                            upward: direction(),
                            downward: direction(),
                        }));
                        accepted += 1;
                    }
                    continue;
                }
                let slot = &mut pairs[key as usize];
                let Some(pair) = slot.as_mut() else {
                    continue;
                };
                pump(&mut pair.client, &mut pair.server, &mut pair.upward);
                pump(&mut pair.server, &mut pair.client, &mut pair.downward);
                if pair.upward.done && pair.downward.done {
                    // Dropping both sockets closes them (and removes them from the epoll set).
                    *slot = None;
                    finished += 1;
                }
            }
        }
    }
}
