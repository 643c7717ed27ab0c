//! TCP semantics on both backends.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use weir_net::{TcpListener, TcpStream, spawn};

use crate::support::{backends, fnv, on_each_backend, strace_child, tcp_pair};

#[test]
fn echo_of_1_byte_to_16_mib_with_random_chunking() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            spawn(async move {
                loop {
                    let Ok((mut conn, _)) = listener.accept().await else {
                        return;
                    };
                    spawn(async move {
                        let mut buf = Vec::with_capacity(64 * 1024);
                        loop {
                            buf.clear();
                            let (n, back) = conn.read(buf).await;
                            buf = back;
                            match n {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {
                                    let (r, back) = conn.write_all(buf).await;
                                    buf = back;
                                    if r.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            });
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            for size in [1usize, 100, 4096, 65_537, 1 << 20, 16 << 20] {
                let payload: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let expected = fnv(&payload);
                // Random chunking: writes of 1 byte to 64 KiB.
                let mut chunks = Vec::new();
                let mut at = 0;
                while at < size {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let len = (1 + seed as usize % (64 * 1024)).min(size - at);
                    chunks.push(payload[at..at + len].to_vec());
                    at += len;
                }
                let mut client = TcpStream::connect(addr).await.expect("connect");
                let mut writer_half = client.try_clone().expect("clone");
                // Write and read concurrently, or both sides' buffers fill and stall.
                let writer = spawn(async move {
                    for chunk in chunks {
                        writer_half.write_all(chunk).await.0.expect("write");
                    }
                    writer_half.shutdown(Shutdown::Write).expect("half-close");
                });
                let (r, received) = client.read_exact(Vec::new(), size).await;
                r.expect("read back");
                writer.await.expect("writer");
                assert_eq!(received.len(), size, "{backend:?}: length");
                assert_eq!(
                    fnv(&received),
                    expected,
                    "{backend:?}: content of {size} bytes"
                );
            }
        });
    });
}

#[test]
fn half_close_in_both_directions() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let (r, request) = conn.read_exact(Vec::new(), 5).await;
                r.expect("request");
                let (n, _) = conn.read(Vec::with_capacity(8)).await;
                assert_eq!(n.expect("eof"), 0, "the client half-closed");
                let (r, _) = conn.write_all(b"reply".to_vec()).await;
                r.expect("reply after the client's half-close");
                conn.shutdown(Shutdown::Write).expect("server half-close");
                request
            });
            let mut client = TcpStream::connect(addr).await.expect("connect");
            client.write_all(b"hello".to_vec()).await.0.expect("write");
            client.shutdown(Shutdown::Write).expect("half-close");
            let (r, reply) = client.read_exact(Vec::new(), 5).await;
            r.expect("reply");
            assert_eq!(reply, b"reply", "{backend:?}");
            let (n, _) = client.read(Vec::with_capacity(8)).await;
            assert_eq!(n.expect("eof"), 0);
            assert_eq!(server.await.expect("server"), b"hello");
        });
    });
}

#[test]
fn peer_reset_mid_read_and_mid_write() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (client, server) = tcp_pair().await;
            server.set_linger(Some(Duration::ZERO)).expect("linger 0");
            drop(server); // RST
            let mut client = client;
            let (n, _) = client.read(Vec::with_capacity(16)).await;
            let error = n.expect_err("the peer reset");
            assert_eq!(error.kind(), io::ErrorKind::ConnectionReset, "{backend:?}");
            // Writing to the reset connection fails without SIGPIPE killing the test.
            let mut failed = false;
            for _ in 0..10 {
                let (r, _) = client.write(vec![1u8; 1024]).await;
                if let Err(e) = r {
                    assert!(
                        matches!(
                            e.kind(),
                            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                        ),
                        "{backend:?}: {e}"
                    );
                    failed = true;
                    break;
                }
            }
            assert!(
                failed,
                "{backend:?}: writes to a reset peer kept succeeding"
            );
        });
    });
}

#[test]
fn read_timeout_loses_nothing() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut client, mut server) = tcp_pair().await;
            let buf = Vec::with_capacity(8);
            let address = buf.as_ptr();
            let (timed_out, back) = server.read_timeout(buf, Duration::from_millis(30)).await;
            let error = timed_out.expect_err("nothing was sent");
            assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{backend:?}");
            assert_eq!(back.as_ptr(), address, "{backend:?}: the buffer comes back");
            client.write_all(b"late".to_vec()).await.0.expect("write");
            let (r, got) = server.read_exact(Vec::new(), 4).await;
            r.expect("read");
            assert_eq!(got, b"late", "{backend:?}");
        });
    });
}

/// A zero limit takes what has already arrived and waits for nothing: how a handler that sees
/// the shutdown serves a request that came in before it and closes an idle connection. On the
/// ring the bytes reach the stream only through the driver (the multishot receive's completion),
/// so the read must give the driver its turn before it times out.
#[test]
fn a_zero_limit_read_takes_what_has_already_arrived() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut client, mut server) = tcp_pair().await;
            let (nothing, _) = server
                .read_timeout(Vec::with_capacity(8), Duration::ZERO)
                .await;
            let error = nothing.expect_err("nothing was sent");
            assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{backend:?}");

            // Bytes that are in the socket before the read starts.
            client.write_all(b"ping".to_vec()).await.0.expect("write");
            let (n, got) = server
                .read_timeout(Vec::with_capacity(8), Duration::ZERO)
                .await;
            assert_eq!(n.expect("the bytes had arrived"), 4, "{backend:?}");
            assert_eq!(got, b"ping", "{backend:?}");

            // Bytes that arrive for a read dropped after its first poll (its receive armed).
            {
                let mut read = std::pin::pin!(server.read(Vec::with_capacity(8)));
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(read.as_mut().poll(cx).is_ready())
                })
                .await;
                assert!(!first, "{backend:?}: nothing was sent yet");
            }
            client.write_all(b"pong".to_vec()).await.0.expect("write");
            let (n, got) = server
                .read_timeout(Vec::with_capacity(8), Duration::ZERO)
                .await;
            assert_eq!(n.expect("the bytes had arrived"), 4, "{backend:?}");
            assert_eq!(got, b"pong", "{backend:?}");
        });
    });
}

#[test]
fn a_thousand_concurrent_connections() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            spawn(async move {
                while let Ok((mut conn, _)) = listener.accept().await {
                    spawn(async move {
                        let (r, buf) = conn.read_exact(Vec::new(), 8).await;
                        if r.is_ok() {
                            let _ = conn.write_all(buf).await;
                        }
                    });
                }
            });
            let clients: Vec<_> = (0..1_000u64)
                .map(|n| {
                    spawn(async move {
                        let mut stream = TcpStream::connect(addr).await.expect("connect");
                        stream
                            .write_all(n.to_le_bytes().to_vec())
                            .await
                            .0
                            .expect("write");
                        let (r, got) = stream.read_exact(Vec::new(), 8).await;
                        r.expect("read");
                        u64::from_le_bytes(got.try_into().expect("8 bytes"))
                    })
                })
                .collect();
            for (n, client) in clients.into_iter().enumerate() {
                assert_eq!(client.await.expect("client"), n as u64, "{backend:?}");
            }
        });
    });
}

#[test]
fn connect_refused_is_an_error() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("addr").port()
            };
            let error = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect_err("nobody listens");
            assert_eq!(
                error.kind(),
                io::ErrorKind::ConnectionRefused,
                "{backend:?}"
            );
        });
    });
}

#[test]
fn send_file_sends_a_range_and_stops_at_the_end_of_the_file() {
    let path = std::env::temp_dir().join(format!("weir-send-file-{}", std::process::id()));
    let content: Vec<u8> = (0..300_000).map(crate::support::pattern).collect();
    std::fs::write(&path, &content).expect("write file");
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = weir_net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let file = std::fs::File::open(&path).expect("open");
            let server = weir_net::spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                let ranged = conn.send_file(&file, 1_000, 200_000).await.expect("range");
                // Asking beyond the end sends what there is.
                let tail = conn.send_file(&file, 290_000, 50_000).await.expect("tail");
                (ranged, tail)
            });
            let mut client = weir_net::TcpStream::connect(addr).await.expect("connect");
            let (result, got) = client.read_exact(Vec::new(), 210_000).await;
            result.expect("read");
            assert_eq!(
                (&got[..200_000], &got[200_000..]),
                (&content[1_000..201_000], &content[290_000..]),
                "{backend:?}"
            );
            assert_eq!(
                server.await.expect("server"),
                (200_000, 10_000),
                "{backend:?}"
            );
        });
    });
    std::fs::remove_file(&path).expect("cleanup");
}

#[test]
fn tcp_socket_options_bind_before_connect_and_reuseport() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            // Two listeners on one port with SO_REUSEPORT.
            let first = weir_net::TcpSocket::new_v4().expect("socket");
            first.set_reuseport(true).expect("reuseport");
            first.set_recv_buffer_size(1 << 16).expect("rcvbuf");
            first
                .bind("127.0.0.1:0".parse().expect("addr"))
                .expect("bind");
            let addr = first.local_addr().expect("addr");
            let second = weir_net::TcpSocket::new_v4().expect("socket");
            second.set_reuseport(true).expect("reuseport");
            second.bind(addr).expect("second bind on the same port");
            let listeners = [
                first.listen(64).expect("listen"),
                second.listen(64).expect("listen"),
            ];
            let unshared = weir_net::TcpSocket::new_v4().expect("socket");
            let error = unshared.bind(addr).expect_err("the port is taken");
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{backend:?}");
            // A client bound before connecting shows up with that address.
            let client = weir_net::TcpSocket::new_v4().expect("socket");
            client.set_nodelay(true).expect("nodelay");
            client.set_keepalive(true).expect("keepalive");
            client.set_send_buffer_size(1 << 16).expect("sndbuf");
            client
                .set_linger(Some(Duration::from_secs(1)))
                .expect("linger");
            client
                .bind("127.0.0.1:0".parse().expect("addr"))
                .expect("bind");
            let from = client.local_addr().expect("addr");
            let mut stream = client.connect(addr).await.expect("connect");
            assert_eq!(stream.local_addr().expect("addr"), from, "{backend:?}");
            stream.write_all(b"x".to_vec()).await.0.expect("write");
            // Whichever listener the kernel chose has the connection.
            let accepted = futures_select_accept(&listeners).await;
            assert_eq!(accepted, from, "{backend:?}");
        });
    });
}

/// The peer address of the first connection either listener accepts.
async fn futures_select_accept(listeners: &[TcpListener; 2]) -> std::net::SocketAddr {
    let mut a = Box::pin(listeners[0].accept());
    let mut b = Box::pin(listeners[1].accept());
    std::future::poll_fn(|cx| {
        for accept in [&mut a, &mut b] {
            if let std::task::Poll::Ready(result) = accept.as_mut().poll(cx) {
                return std::task::Poll::Ready(result.expect("accept").1);
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Blocks (bounded: 10 s) until `stream`'s peer has shut down its side (`POLLRDHUP`): every byte
/// it sent before is in the receive queue.
fn wait_for_peer_shutdown(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let mut poll = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let ready = unsafe { libc::poll(&mut poll, 1, 10_000) };
    assert!(
        ready == 1 && poll.revents & libc::POLLRDHUP != 0,
        "no shutdown from the peer within 10 s (poll: {ready}, revents {:#x})",
        poll.revents
    );
}

#[test]
fn end_of_stream_that_arrived_with_the_last_data_is_seen() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut client, mut server) = tcp_pair().await;
            client.write_all(vec![7u8; 100]).await.0.expect("write");
            client.shutdown(Shutdown::Write).expect("half-close");
            // The data and the FIN both land before the first read: one readiness event.
            wait_for_peer_shutdown(&server);
            let (n, _) = server.read(Vec::with_capacity(64 * 1024)).await;
            assert_eq!(n.expect("data"), 100, "{backend:?}");
            // A short read drained the data; the end of stream must still be reported.
            let eof = weir_net::time::timeout(
                Duration::from_secs(5),
                server.read(Vec::with_capacity(64)),
            )
            .await;
            let (n, _) = eof.unwrap_or_else(|_| panic!("{backend:?}: the end of stream was lost"));
            assert_eq!(n.expect("eof"), 0, "{backend:?}");
        });
    });
}

#[test]
fn slices_of_owned_buffers_send_and_receive_their_range() {
    use weir_net::{IoBuf, IoBufMut};
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut client, mut server) = tcp_pair().await;
            // Send a middle range; the buffer comes back whole.
            let (sent, back) = client.write_all(b"0123456789".to_vec().slice(2..5)).await;
            sent.expect("write slice");
            assert_eq!(back.into_inner(), b"0123456789");
            // A range past the end is clamped, never a panic: this one is empty.
            let (start, end) = (8, 3);
            let (empty, _) = client.write(b"abc".to_vec().slice(start..end)).await;
            assert_eq!(empty.expect("empty write"), 0, "{backend:?}");
            // Receive after a header already in the buffer.
            let mut header = Vec::with_capacity(16);
            header.extend_from_slice(b"got:");
            let (n, back) = server.read(header.slice_mut(4..)).await;
            assert_eq!(n.expect("read"), 3, "{backend:?}");
            assert_eq!(back.into_inner(), b"got:234", "{backend:?}");
            // Vectored, from ranges of `bytes::Bytes` (with `IoBuf` in scope, `slice` by value
            // is the owned-buffer range, not `Bytes::slice`).
            let parts = vec![
                bytes::Bytes::from_static(b"--ab--").slice(2..4),
                bytes::Bytes::from_static(b"cd").slice(..),
            ];
            let (n, _) = client.writev(parts).await;
            assert_eq!(n.expect("writev"), 4, "{backend:?}");
            let (result, got) = server.read_exact(Vec::new(), 4).await;
            result.expect("read");
            assert_eq!(got, b"abcd");
        });
    });
}

#[test]
fn accepted_streams_on_the_ring_make_no_mode_syscall() {
    // Re-runs this test in a child under strace, counting the file-status fcntls that read or
    // set a descriptor's blocking mode: an accepted socket is blocking already, which is what
    // the ring wants.
    const CONNS: usize = 100;
    if std::env::var_os("WEIR_ACCEPT_STRACE_CHILD").is_some() {
        let rt = weir_net::Runtime::builder()
            .backend(weir_net::Backend::Uring)
            .build()
            .expect("ring runtime");
        rt.block_on(async {
            let listener = weir_net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let clients = std::thread::spawn(move || {
                (0..CONNS)
                    .map(|_| std::net::TcpStream::connect(addr).expect("connect"))
                    .collect::<Vec<_>>()
            });
            let mut accepted = Vec::new();
            for _ in 0..CONNS {
                accepted.push(listener.accept().await.expect("accept").0);
            }
            drop(clients.join().expect("clients"));
        });
        println!("child accepted {CONNS} connections");
        return;
    }
    if !backends().contains(&weir_net::Backend::Uring) {
        println!("SKIPPED accepted_streams_on_the_ring_make_no_mode_syscall: ring not tested");
        return;
    }
    let Some(trace) = strace_child(
        "tcp::accepted_streams_on_the_ring_make_no_mode_syscall",
        "fcntl",
        "WEIR_ACCEPT_STRACE_CHILD",
        &format!("child accepted {CONNS} connections"),
    ) else {
        return;
    };
    let calls = trace
        .lines()
        .filter(|l| l.contains("F_GETFL") || l.contains("F_SETFL"))
        .count();
    // One for the listener, made blocking when it joins the ring.
    assert!(
        calls <= 1,
        "{calls} mode fcntls for {CONNS} accepted connections"
    );
}

#[test]
fn sends_at_the_zero_copy_threshold_use_send_zc_and_arrive_intact() {
    for backend in backends() {
        let rt = weir_net::Runtime::builder()
            .backend(backend)
            .send_zc_threshold(16 * 1024)
            .build()
            .expect("runtime");
        let has_send_zc = weir_ring::Ring::new()
            .is_ok_and(|ring| ring.probe().supports(weir_ring::Opcode::SendZc));
        if backend == weir_net::Backend::Uring && !has_send_zc {
            println!("SKIPPED zero-copy sends on {backend:?}: this kernel lacks IORING_OP_SEND_ZC");
            continue;
        }
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let reader = std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                let mut got = Vec::new();
                io::Read::read_to_end(&mut stream, &mut got).expect("read to the end");
                got
            });
            let (mut stream, _) = listener.accept().await.expect("accept");
            let before = weir_net::io_stats();
            let mut sent = Vec::new();
            for chunk in 0..4u8 {
                let bytes: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8 ^ chunk).collect();
                sent.extend_from_slice(&bytes);
                let (written, _) = stream.write_all(bytes).await;
                written.expect("write_all");
            }
            let zero_copy = weir_net::io_stats().zero_copy_sends - before.zero_copy_sends;
            // A small send stays an ordinary one.
            let (written, _) = stream.write_all(b"tail".to_vec()).await;
            written.expect("write_all");
            sent.extend_from_slice(b"tail");
            assert_eq!(
                weir_net::io_stats().zero_copy_sends - before.zero_copy_sends,
                zero_copy,
                "{backend:?}: a 4-byte send went zero-copy"
            );
            drop(stream);
            let got = reader.join().expect("reader");
            assert_eq!(got.len(), sent.len(), "{backend:?}");
            assert!(
                got == sent,
                "{backend:?}: the zero-copy stream arrived changed"
            );
            if backend == weir_net::Backend::Uring {
                assert!(
                    zero_copy >= 4,
                    "{backend:?}: {zero_copy} zero-copy sends for 4 chunks"
                );
            } else {
                assert_eq!(
                    zero_copy, 0,
                    "{backend:?}: the reactor has no zero-copy send"
                );
            }
        });
    }
}

/// Addresses handed out only once `gate` opens: a stand-in for a slow DNS lookup that only
/// another task of the same runtime can finish.
struct GatedLookup {
    addrs: Vec<std::net::SocketAddr>,
    gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
}

impl std::net::ToSocketAddrs for GatedLookup {
    type Iter = std::vec::IntoIter<std::net::SocketAddr>;

    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        let gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        gate.recv_timeout(Duration::from_secs(10)).map_err(|_| {
            io::Error::other("the lookup ran on the executor's thread: the gate never opened")
        })?;
        Ok(self.addrs.clone().into_iter())
    }
}

#[test]
fn connect_resolves_off_the_executor_and_tries_each_address_in_turn() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let good = listener.local_addr().expect("addr");
            // A port nothing listens on: the first address is refused.
            let refused = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port");
            let (open, gate) = std::sync::mpsc::channel();
            // This task can only run while the lookup runs elsewhere.
            let opener = spawn(async move { open.send(()).expect("gate") });
            let lookup = GatedLookup {
                addrs: vec![refused, good],
                gate: std::sync::Mutex::new(gate),
            };
            // The kernel completes the handshake into the backlog; accept afterwards.
            let stream = TcpStream::connect(lookup)
                .await
                .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
            let (_, peer) = listener.accept().await.expect("accept");
            assert_eq!(stream.local_addr().expect("addr"), peer, "{backend:?}");
            opener.await.expect("opener");

            // Every address refused: the error is the last one's.
            let (open, gate) = std::sync::mpsc::channel();
            open.send(()).expect("gate");
            let lookup = GatedLookup {
                addrs: vec![refused, refused],
                gate: std::sync::Mutex::new(gate),
            };
            let error = TcpStream::connect(lookup).await.expect_err("refused");
            assert_eq!(
                error.kind(),
                io::ErrorKind::ConnectionRefused,
                "{backend:?}"
            );
            // A name that resolves to nothing is a clear error, not a panic.
            let error = TcpStream::connect("host.invalid:80")
                .await
                .expect_err("no such host");
            assert!(!error.to_string().is_empty(), "{backend:?}");
        });
    });
}

#[test]
fn split_halves_stream_both_ways_at_once_from_two_tasks_and_the_write_half_half_closes() {
    const LEN: usize = 2 * 1024 * 1024 + 7;
    let data: std::sync::Arc<Vec<u8>> =
        std::sync::Arc::new((0..LEN).map(crate::support::pattern).collect());
    on_each_backend(|backend, rt| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        // The peer, on plain threads: sends `data` while reading what Weir sends, then checks
        // for Weir's end of stream before sending its last byte.
        let theirs = data.clone();
        let peer = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            let mut writer = stream.try_clone().expect("clone");
            let sending = {
                let theirs = theirs.clone();
                std::thread::spawn(move || writer.write_all(&theirs).map(|()| writer))
            };
            let mut got = Vec::new();
            (&stream)
                .read_to_end(&mut got)
                .expect("read to Weir's end of stream");
            let mut writer = sending.join().expect("sender").expect("send");
            // Weir's read half is still open after its write half went.
            writer.write_all(b"!").expect("late byte");
            fnv(&got)
        });
        rt.block_on(async {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut reader, mut writer) = stream.into_split().await.expect("split");
            let ours = data.clone();
            let writing = spawn(async move {
                let mut at = 0;
                while at < ours.len() {
                    let end = (at + 100_003).min(ours.len());
                    writer
                        .write_all(ours[at..end].to_vec())
                        .await
                        .0
                        .expect("write");
                    at = end;
                }
                // Dropping the write half half-closes the connection.
                drop(writer);
            });
            let mut got = Vec::with_capacity(LEN + 1);
            loop {
                let (n, back) = reader.read(Vec::with_capacity(64 * 1024)).await;
                let n = n.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&back);
                if got.len() == LEN + 1 {
                    break;
                }
            }
            writing.await.expect("writer task");
            assert_eq!(got.len(), LEN + 1, "{backend:?}");
            assert_eq!(fnv(&got[..LEN]), fnv(&data), "{backend:?}: the bytes read");
            assert_eq!(got[LEN], b'!', "{backend:?}");
        });
        assert_eq!(
            peer.join().expect("peer"),
            fnv(&data),
            "{backend:?}: the bytes written"
        );
    });
}

#[test]
fn socket_options_reach_accepted_streams_through_sockref() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let _client = std::net::TcpStream::connect(addr).expect("connect");
            let (stream, _) = listener.accept().await.expect("accept");
            let socket = socket2::SockRef::from(&stream);
            socket.set_keepalive(true).expect("keepalive");
            socket.set_tcp_nodelay(true).expect("nodelay");
            socket.set_send_buffer_size(64 * 1024).expect("sndbuf");
            socket.set_recv_buffer_size(64 * 1024).expect("rcvbuf");
            socket
                .set_linger(Some(Duration::from_secs(3)))
                .expect("linger");
            assert!(socket.keepalive().expect("keepalive"), "{backend:?}");
            assert!(socket.tcp_nodelay().expect("nodelay"), "{backend:?}");
            // Linux doubles the buffer sizes it is given.
            assert!(socket.send_buffer_size().expect("sndbuf") >= 64 * 1024);
            assert!(socket.recv_buffer_size().expect("rcvbuf") >= 64 * 1024);
            assert_eq!(
                socket.linger().expect("linger"),
                Some(Duration::from_secs(3)),
                "{backend:?}"
            );
            let raw = std::os::fd::AsRawFd::as_raw_fd(&stream);
            assert!(raw >= 0, "{backend:?}");
        });
    });
}
