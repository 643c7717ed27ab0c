//! UDP on both backends: round trips, truncation, connected sockets.

use weir_net::{UdpSocket, time};

use crate::support::{on_each_backend, strace_child};

#[test]
fn round_trips_truncation_and_connected_sockets() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let (a_addr, b_addr) = (a.local_addr().expect("addr"), b.local_addr().expect("addr"));
            for size in [1usize, 64, 1200, 8000] {
                let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
                let (sent, _) = a.send_to(payload.clone(), b_addr).await;
                assert_eq!(sent.expect("send_to"), size, "{backend:?}");
                let (got, buf) = b.recv_from(Vec::with_capacity(9000)).await;
                let (n, from) = got.expect("recv_from");
                assert_eq!((n, from), (size, a_addr), "{backend:?}");
                assert_eq!(buf, payload, "{backend:?}");
            }
            // A datagram longer than the buffer is cut to fit; the next one is intact.
            a.send_to(vec![9u8; 100], b_addr).await.0.expect("send");
            a.send_to(b"next".to_vec(), b_addr).await.0.expect("send");
            let (got, buf) = b.recv_from(Vec::with_capacity(10)).await;
            assert_eq!(got.expect("recv").0, 10, "{backend:?}");
            assert_eq!(buf, [9u8; 10]);
            let (got, buf) = b.recv_from(Vec::with_capacity(10)).await;
            assert_eq!(got.expect("recv").0, 4, "{backend:?}");
            assert_eq!(buf, b"next");
            // Connected sockets.
            a.connect(b_addr).expect("connect");
            b.connect(a_addr).expect("connect");
            a.send(b"ping".to_vec()).await.0.expect("send");
            let (n, buf) = b.recv(Vec::with_capacity(16)).await;
            assert_eq!(&buf[..n.expect("recv")], b"ping", "{backend:?}");
        });
    });
}

/// Polls `fut` once, runs `meanwhile`, and resolves when the task is next woken — by `fut`'s
/// operation completing — without polling `fut` again, which it hands back unpolled.
pub(crate) async fn poll_once_then_wait<F: std::future::Future + Unpin>(
    mut fut: F,
    meanwhile: impl FnOnce(),
) -> F {
    let mut meanwhile = Some(meanwhile);
    std::future::poll_fn(|cx| match meanwhile.take() {
        Some(run) => {
            assert!(std::pin::Pin::new(&mut fut).poll(cx).is_pending());
            run();
            std::task::Poll::Pending
        }
        None => std::task::Poll::Ready(()),
    })
    .await;
    fut
}

#[test]
fn a_dropped_receive_loses_no_datagram() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            // The receive is in the kernel when the first datagram arrives; its future is dropped
            // after the completion woke the task, before anyone took the datagram.
            let receive = Box::pin(b.recv_from(Vec::with_capacity(64)));
            let receive = poll_once_then_wait(receive, || {
                a.send_to(b"first", to).expect("send");
            })
            .await;
            drop(receive);
            a.send_to(b"second", to).expect("send");
            let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
            got.expect("recv_from");
            assert_eq!(
                &buf[..],
                b"first",
                "{backend:?}: the dropped receive's datagram was lost"
            );
            let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
            got.expect("recv_from");
            assert_eq!(&buf[..], b"second", "{backend:?}");
        });
    });
}

#[test]
fn a_receive_the_kernel_retries_in_its_workers_waits_instead_of_failing() {
    // A receive whose poll fired but found no data (another reader took it) is handed to the
    // kernel's worker pool; on a non-blocking socket it would complete with EAGAIN.
    use std::os::fd::AsFd;
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            let thief = std::net::UdpSocket::from(b.as_fd().try_clone_to_owned().expect("dup"));
            let receive = weir_net::spawn(async move {
                let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
                got.map(|_| buf)
            });
            // Let the receive reach the kernel and wait there.
            weir_net::yield_now().await;
            weir_net::yield_now().await;
            peer.send_to(b"stolen", to).expect("send");
            let mut space = [0u8; 64];
            let (n, _) = thief.recv_from(&mut space).expect("the thief takes it");
            assert_eq!(&space[..n], b"stolen");
            // The woken receive retries, finds nothing, and goes to the kernel's workers.
            time::sleep(std::time::Duration::from_millis(20)).await;
            peer.send_to(b"kept", to).expect("send");
            let got = receive.await.expect("task");
            assert_eq!(
                got.expect("the receive failed instead of waiting"),
                b"kept",
                "{backend:?}"
            );
        });
    });
}

/// `O_NONBLOCK` on a descriptor.
pub(crate) fn is_nonblocking(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL on a descriptor the caller keeps open; no memory is passed.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    assert!(flags >= 0, "fcntl: {}", std::io::Error::last_os_error());
    flags & libc::O_NONBLOCK != 0
}

#[test]
fn sockets_are_blocking_on_the_ring_and_non_blocking_on_the_reactor() {
    // io_uring ops the kernel runs in its worker pool honour O_NONBLOCK and fail with EAGAIN;
    // the reactor needs it for its readiness loop.
    use std::os::fd::AsFd;
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
            assert_eq!(
                is_nonblocking(socket.as_fd()),
                backend == weir_net::Backend::Poll,
                "{backend:?}"
            );
        });
    });
}

#[test]
fn recv_msg_says_when_a_datagram_was_cut_even_after_a_dropped_receive() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            a.send_to(&[7u8; 100], to).expect("send");
            let (got, buf) = b.recv_msg(Vec::with_capacity(10)).await;
            let got = got.expect("recv_msg");
            assert_eq!(
                (got.len, got.truncated, buf.len()),
                (10, true, 10),
                "{backend:?}"
            );
            a.send_to(&[8u8; 64], to).expect("send");
            let (got, _) = b.recv_msg(Vec::with_capacity(64)).await;
            assert!(
                !got.expect("recv_msg").truncated,
                "{backend:?}: a whole datagram"
            );
            // A datagram a dropped receive took (into its 64 bytes) and a smaller buffer now.
            let receive = Box::pin(b.recv_from(Vec::with_capacity(64)));
            let receive = poll_once_then_wait(receive, || {
                a.send_to(&[9u8; 50], to).expect("send");
            })
            .await;
            drop(receive);
            let (got, buf) = b.recv_msg(Vec::with_capacity(20)).await;
            let got = got.expect("recv_msg");
            assert_eq!((got.len, got.truncated), (20, true), "{backend:?}");
            assert_eq!(buf, [9u8; 20]);
            assert_eq!(got.from, a.local_addr().expect("addr"));
        });
    });
}

#[test]
fn connected_sends_make_no_per_datagram_address_lookup() {
    // Re-runs this test in a child under strace, counting getpeername(2) calls; the child
    // sends the datagrams.
    const SENDS: usize = 200;
    if std::env::var_os("WEIR_UDP_STRACE_CHILD").is_some() {
        on_each_backend(|_, rt| {
            rt.block_on(async {
                let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
                let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                a.connect(b.local_addr().expect("addr")).expect("connect");
                for _ in 0..SENDS {
                    a.send(b"x".to_vec()).await.0.expect("send");
                }
            });
        });
        println!("child sent {SENDS} datagrams per backend");
        return;
    }
    let Some(trace) = strace_child(
        "udp::connected_sends_make_no_per_datagram_address_lookup",
        "getpeername",
        "WEIR_UDP_STRACE_CHILD",
        &format!("child sent {SENDS} datagrams"),
    ) else {
        return;
    };
    let calls = trace.lines().filter(|l| l.contains("getpeername(")).count();
    assert_eq!(
        calls, 0,
        "getpeername ran {calls} times for {SENDS} sends per backend"
    );
}

#[test]
fn receivers_waiting_on_a_dropped_receive_s_datagram_all_stay_awake() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = std::rc::Rc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
            let to = b.local_addr().expect("addr");
            // A receive dropped in the kernel (on the ring an orphan), then two waiters on it, the
            // second of which goes away.
            poll_once_and_drop_local(b.recv_from(Vec::with_capacity(64))).await;
            weir_net::yield_now().await;
            let first = weir_net::spawn({
                let b = b.clone();
                async move { b.recv_from(Vec::with_capacity(64)).await.1 }
            });
            weir_net::yield_now().await;
            let second = weir_net::spawn({
                let b = b.clone();
                async move { b.recv_from(Vec::with_capacity(64)).await.1 }
            });
            weir_net::yield_now().await;
            second.abort();
            weir_net::yield_now().await;
            peer.send_to(b"one", to).expect("send");
            let got = time::timeout(std::time::Duration::from_secs(10), first)
                .await
                .unwrap_or_else(|_| panic!("{backend:?}: the remaining receiver was never woken"))
                .expect("task");
            assert_eq!(got, b"one", "{backend:?}");
        });
    });
}

/// Polls `fut` once and drops it.
async fn poll_once_and_drop_local<F: std::future::Future>(fut: F) {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

#[test]
fn queued_datagrams_are_taken_at_once_and_an_empty_socket_waits_in_the_kernel() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            for i in 0..50u8 {
                peer.send_to(&[i; 16], to).expect("send");
            }
            let before = weir_net::io_stats();
            for i in 0..50u8 {
                let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
                got.expect("recv_from");
                assert_eq!(&buf[..], &[i; 16], "{backend:?}: datagram {i} out of order");
            }
            let after = weir_net::io_stats();
            let direct = after.datagram_direct_receives - before.datagram_direct_receives;
            // The reactor counts nothing (its receives are all non-blocking calls); the ring
            // took every queued datagram through its multishot receive.
            assert_eq!(direct, 0, "{backend:?}: direct receives");
            if backend == weir_net::Backend::Uring {
                assert!(after.datagram_arms > before.datagram_arms, "{after:?}");
            }

            // Nothing queued: this receive waits (in the ring: an op in the kernel).
            let b = std::rc::Rc::new(b);
            let receiver = b.clone();
            let receive = weir_net::spawn(async move {
                let (got, buf) = receiver.recv_from(Vec::with_capacity(64)).await;
                got.map(|_| buf)
            });
            weir_net::yield_now().await;
            peer.send_to(b"late", to).expect("send");
            let got = receive.await.expect("task").expect("recv_from");
            assert_eq!(got, b"late", "{backend:?}");
            assert_eq!(
                weir_net::io_stats().datagram_direct_receives,
                after.datagram_direct_receives,
                "{backend:?}: the receive on an empty socket was not a direct one"
            );

            let before = weir_net::io_stats();
            let from = peer.local_addr().expect("addr");
            for i in 0..20u8 {
                let (sent, _) = b.send_to(vec![i; 8], from).await;
                assert_eq!(sent.expect("send_to"), 8);
            }
            let mut space = [0u8; 64];
            for i in 0..20u8 {
                let (n, _) = peer.recv_from(&mut space).expect("recv");
                assert_eq!(&space[..n], &[i; 8], "{backend:?}: sent datagram {i}");
            }
            let sent = weir_net::io_stats().datagram_direct_sends - before.datagram_direct_sends;
            let expected = if backend == weir_net::Backend::Uring {
                20
            } else {
                0
            };
            assert_eq!(sent, expected, "{backend:?}: direct sends");
        });
    });
}

#[test]
fn a_datagram_send_to_a_full_peer_waits_for_room_and_loses_nothing() {
    // A Unix datagram peer that does not read fills up: the non-blocking send fails with
    // EAGAIN and the send must wait (on the ring, as an op in the kernel) until the peer reads.
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (ours, theirs) = weir_net::UnixDatagram::pair().expect("pair");
            // Fill the peer from outside the runtime, without waiting (MSG_DONTWAIT leaves the
            // socket's own blocking mode alone).
            let filler = socket2::SockRef::from(&ours);
            let mut queued = 0u32;
            loop {
                match filler.send_with_flags(&queued.to_be_bytes(), libc::MSG_DONTWAIT) {
                    Ok(n) => assert_eq!(n, 4),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{backend:?}: filling the peer: {e}"),
                }
                queued += 1;
                assert!(queued < 100_000, "{backend:?}: the peer never filled up");
            }
            let before = weir_net::io_stats();
            let blocked = Box::pin(ours.send(queued.to_be_bytes().to_vec()));
            let blocked = match poll_once(blocked).await {
                Ok((sent, _)) => panic!("{backend:?}: a send to a full peer completed: {sent:?}"),
                Err(pending) => pending,
            };
            // The peer reads what was queued: room for the waiting send (a Unix datagram
            // sender counts as writable again once most of its queued memory is freed).
            for i in 0..queued {
                let (got, buf) = theirs.recv(Vec::with_capacity(8)).await;
                got.expect("recv");
                assert_eq!(&buf[..], &i.to_be_bytes(), "{backend:?}: datagram {i}");
            }
            let (sent, _) = blocked.await;
            assert_eq!(sent.expect("the waiting send"), 4, "{backend:?}");
            let (got, last) = theirs.recv(Vec::with_capacity(8)).await;
            got.expect("recv");
            assert_eq!(
                &last[..],
                &queued.to_be_bytes(),
                "{backend:?}: the waiting send's datagram"
            );
            assert_eq!(
                weir_net::io_stats().datagram_direct_sends - before.datagram_direct_sends,
                0,
                "{backend:?}: the send that found the peer full counted as a direct one"
            );
        });
    });
}

/// Polls `fut` once: its output, or the future itself if it is still pending.
async fn poll_once<F: std::future::Future + Unpin>(mut fut: F) -> Result<F::Output, F> {
    let ready =
        std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut fut).poll(cx)))
            .await;
    match ready {
        std::task::Poll::Ready(out) => Ok(out),
        std::task::Poll::Pending => Err(fut),
    }
}

/// The bytes the kernel holds for the UDP socket bound to loopback `port` (`rx_queue` in
/// `/proc/net/udp`: the datagrams' buffer sizes, the same for datagrams of one size).
fn udp_rx_queue(port: u16) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (_, local_port) = fields.get(1)?.split_once(':')?;
        if u16::from_str_radix(local_port, 16).ok()? != port {
            return None;
        }
        let (_, rx) = fields.get(4)?.split_once(':')?;
        u64::from_str_radix(rx, 16).ok()
    })
}

/// Turns the runtime until the kernel holds `bytes` for the socket on `port` (bounded).
async fn until_rx_queue(port: u16, bytes: u64) {
    for _ in 0..5_000 {
        if udp_rx_queue(port) == Some(bytes) {
            return;
        }
        weir_net::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    panic!(
        "the socket holds {:?} bytes, not {bytes}",
        udp_rx_queue(port)
    );
}

/// Sends `count` datagrams `[i; 32]` to `to` (sent on the same thread, so all are queued at the
/// receiver when this returns); returns the bytes the kernel holds for them.
fn send_numbered(peer: &std::net::UdpSocket, to: std::net::SocketAddr, count: u8) -> u64 {
    for i in 0..count {
        peer.send_to(&[i; 32], to).expect("send");
    }
    udp_rx_queue(to.port()).expect("the socket in /proc/net/udp")
}

/// Runs `test` with a socket `b` on `to` and a std `peer`, on the ring only: the reactor has no
/// multishot receive (it says so).
fn on_the_ring(test: impl AsyncFn(std::net::UdpSocket, UdpSocket, std::net::SocketAddr)) {
    on_each_backend(|backend, rt| {
        if backend != weir_net::Backend::Uring {
            println!("{backend:?}: no multishot datagram receive to test");
            return;
        }
        rt.block_on(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            test(peer, b, to).await;
        });
    });
}

#[test]
fn a_multishot_datagram_receive_that_falls_behind_pauses_re_arms_and_loses_nothing() {
    on_the_ring(async |peer, b, to| {
        let before = weir_net::io_stats();
        send_numbered(&peer, to, 40);
        // A receive that gives up at once arms the multishot receive, which then takes every
        // datagram from the socket while no receive waits (the kernel holds none after).
        poll_once_and_drop_local(b.recv_from(Vec::with_capacity(64))).await;
        until_rx_queue(to.port(), 0).await;
        // Past its backlog it is paused; its datagrams all come out, in order.
        for i in 0..40u8 {
            let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
            got.expect("recv_from");
            assert_eq!(&buf[..], &[i; 32], "datagram {i}");
        }
        // The next receive arms it again.
        peer.send_to(b"late", to).expect("send");
        let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
        assert_eq!(got.expect("recv_from").0, 4);
        assert_eq!(&buf[..], b"late");
        let after = weir_net::io_stats();
        assert_eq!(after.datagram_arms - before.datagram_arms, 2, "{after:?}");
        assert_eq!(
            after.datagram_rearms - before.datagram_rearms,
            1,
            "{after:?}"
        );
        assert_eq!(
            after.datagram_direct_receives,
            before.datagram_direct_receives
        );
    });
}

#[test]
fn a_multishot_datagram_receive_whose_buffers_run_dry_re_arms_and_loses_nothing() {
    on_the_ring(async |peer, b, to| {
        let before = weir_net::io_stats();
        // More datagrams than the runtime has datagram buffers (64).
        let held = send_numbered(&peer, to, 100);
        poll_once_and_drop_local(b.recv_from(Vec::with_capacity(64))).await;
        // The receive took 64 and ended with ENOBUFS: the kernel still holds 36.
        until_rx_queue(to.port(), held / 100 * 36).await;
        for i in 0..100u8 {
            let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
            got.expect("recv_from");
            assert_eq!(&buf[..], &[i; 32], "datagram {i}");
        }
        let after = weir_net::io_stats();
        assert_eq!(after.datagram_dry - before.datagram_dry, 1, "{after:?}");
        // One receive went single-shot (at once: a datagram was queued), then it re-armed.
        assert_eq!(
            after.datagram_direct_receives - before.datagram_direct_receives,
            1
        );
        assert_eq!(after.datagram_arms - before.datagram_arms, 2, "{after:?}");
    });
}

#[test]
fn truncation_is_recvmsg_s_on_both_backends() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            // The largest UDP datagram, a small one and an empty one, into small and large
            // buffers: cut only to the caller's buffer, as std's recv_from cuts them.
            let big: Vec<u8> = (0..65_507).map(crate::support::pattern).collect();
            for (datagram, room) in [
                (&big[..], 70_000),
                (&big[..], 1_000),
                (&big[..100], 100),
                (&big[..100], 99),
                (&big[..0], 10),
            ] {
                peer.send_to(datagram, to).expect("send");
                let (got, buf) = b.recv_msg(Vec::with_capacity(room)).await;
                let meta = got.expect("recv_msg");
                let kept = datagram.len().min(room);
                assert_eq!(
                    meta.len,
                    kept,
                    "{backend:?}: {} into {room}",
                    datagram.len()
                );
                assert_eq!(meta.truncated, datagram.len() > room, "{backend:?}");
                assert!(buf[..] == datagram[..kept], "{backend:?}: bytes differ");
                assert_eq!(meta.from, peer.local_addr().expect("addr"));
            }
        });
    });
}

/// An address no socket is bound to (its port was just freed).
fn closed_port() -> std::net::SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// Waits (up to 10 s, in poll(2)) until `socket` has an error pending: the ICMP "port
/// unreachable" a datagram to a closed port brings back.
fn until_error_pending(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd that outlives the call; POLLERR is reported whatever `events`.
    let ready = unsafe { libc::poll(&mut fd, 1, 10_000) };
    assert_eq!(ready, 1, "no error came back within 10 s");
    assert_ne!(fd.revents & libc::POLLERR, 0, "revents {:#x}", fd.revents);
}

/// CPU time this thread has used.
fn thread_cpu_time() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` outlives the call.
    let r = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(r, 0, "clock_gettime: {}", std::io::Error::last_os_error());
    std::time::Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Waits `period` in a receive on `socket` that must find nothing, and checks the thread was
/// idle meanwhile: a receive that spins on a stale error or readiness burns the thread's CPU for
/// the whole wait (whatever the machine's load, far more than a quarter of it), an idle one
/// microseconds.
async fn receive_idles(socket: &UdpSocket, period: std::time::Duration, what: &str) {
    let (cpu, wall) = (thread_cpu_time(), std::time::Instant::now());
    let waited = time::timeout(period, socket.recv(Vec::with_capacity(64))).await;
    let (cpu, wall) = (thread_cpu_time() - cpu, wall.elapsed());
    match waited {
        Err(time::Elapsed) => {}
        Ok((got, _)) => panic!("{what}: an idle receive returned {got:?}"),
    }
    assert!(
        cpu < wall / 4,
        "{what}: the thread was busy while the receive waited: {cpu:?} of CPU in {wall:?}"
    );
}

#[test]
fn a_connected_socket_refused_by_a_closed_port_reports_it_and_goes_on() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let closed = closed_port();
            let a = std::rc::Rc::new(UdpSocket::bind("127.0.0.1:0").expect("bind"));
            let a_addr = a.local_addr().expect("addr");
            a.connect(closed).expect("connect");
            let before = weir_net::io_stats();
            // The refusal comes back after the send: the next send reports it.
            let (sent, _) = a.send(b"nobody".to_vec()).await;
            assert_eq!(sent.expect("the first send"), 6, "{backend:?}");
            until_error_pending(&a);
            let (sent, _) = a.send(b"again".to_vec()).await;
            assert_eq!(
                sent.map_err(|e| e.kind()),
                Err(std::io::ErrorKind::ConnectionRefused),
                "{backend:?}: the send after the refusal"
            );
            // A receive waiting when the refusal comes reports it, as often as it comes.
            for round in 0..3 {
                let receiver = a.clone();
                let receive =
                    weir_net::spawn(async move { receiver.recv(Vec::with_capacity(64)).await.0 });
                weir_net::yield_now().await;
                let (sent, _) = a.send(b"nobody".to_vec()).await;
                sent.expect("a send after a refusal");
                let got = time::timeout(std::time::Duration::from_secs(10), receive)
                    .await
                    .unwrap_or_else(|_| panic!("{backend:?}: round {round}: the receive hung"))
                    .expect("receive task");
                assert_eq!(
                    got.map_err(|e| e.kind()),
                    Err(std::io::ErrorKind::ConnectionRefused),
                    "{backend:?}: round {round}: the waiting receive"
                );
            }
            // Nothing pending: a receive waits, without spinning.
            receive_idles(
                &a,
                std::time::Duration::from_millis(300),
                &format!("{backend:?}: after the refusals"),
            )
            .await;
            // A peer on the port now: both directions work again.
            let live = std::net::UdpSocket::bind(closed).expect("rebind the freed port");
            a.send(b"hello".to_vec())
                .await
                .0
                .expect("send to the live peer");
            let mut got = [0u8; 16];
            live.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .expect("timeout");
            let (n, from) = live.recv_from(&mut got).expect("the live peer's receive");
            assert_eq!((&got[..n], from), (&b"hello"[..], a_addr), "{backend:?}");
            live.send_to(b"back", a_addr).expect("send back");
            let (n, buf) = a.recv(Vec::with_capacity(64)).await;
            assert_eq!(
                &buf[..n.expect("recv from the live peer")],
                b"back",
                "{backend:?}"
            );
            // On the ring each refusal may end the multishot receive once, and the next
            // receive arms it again: never more (a receive re-armed on its own error would
            // count without end).
            let after = weir_net::io_stats();
            let refusals = 4;
            let (arms, rearms) = (
                after.datagram_arms - before.datagram_arms,
                after.datagram_rearms - before.datagram_rearms,
            );
            assert!(
                arms <= refusals + 1 && rearms <= refusals,
                "{backend:?}: {arms} receives armed, {rearms} re-armed for {refusals} refusals"
            );
        });
    });
}

#[test]
fn a_datagram_over_the_udp_limit_is_emsgsize_and_the_socket_goes_on() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            peer.set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .expect("timeout");
            let to = peer.local_addr().expect("addr");
            let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let largest: Vec<u8> = (0..65_507).map(crate::support::pattern).collect();
            let mut got = vec![0u8; 70_000];
            for size in [65_508usize, 70_000, 1 << 20] {
                let (sent, back) = a.send_to(vec![1u8; size], to).await;
                let error = sent.expect_err("a datagram over the limit");
                assert_eq!(
                    error.raw_os_error(),
                    Some(libc::EMSGSIZE),
                    "{backend:?}: {size} bytes: {error}"
                );
                assert_eq!(back.len(), size, "{backend:?}: the buffer comes back");
                // The socket goes on: the largest datagram there is still goes, whole.
                let (sent, _) = a.send_to(largest.clone(), to).await;
                assert_eq!(sent.expect("the largest datagram"), 65_507, "{backend:?}");
                let n = peer.recv(&mut got).expect("receive");
                assert!(got[..n] == largest[..], "{backend:?}: the largest datagram");
            }
            // The same on a connected socket.
            a.connect(to).expect("connect");
            let (sent, _) = a.send(vec![2u8; 65_508]).await;
            assert_eq!(
                sent.expect_err("over the limit").raw_os_error(),
                Some(libc::EMSGSIZE),
                "{backend:?}"
            );
            a.send(b"small".to_vec()).await.0.expect("send");
            let n = peer.recv(&mut got).expect("receive");
            assert_eq!(&got[..n], b"small", "{backend:?}");
        });
    });
}

#[test]
fn a_pooled_receive_says_when_a_datagram_was_longer_than_the_pool_s_buffers() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            let room = weir_net::buffer_pool()
                .expect("pool")
                .get()
                .await
                .capacity();
            let big: Vec<u8> = (0..room + 4_000).map(crate::support::pattern).collect();
            for (datagram, cut) in [(&big[..], true), (&big[..room], false), (&big[..7], false)] {
                peer.send_to(datagram, to).expect("send");
                let (buf, meta) = b.recv_pooled_msg().await.expect("recv_pooled_msg");
                let kept = datagram.len().min(room);
                assert_eq!(
                    (meta.len, meta.truncated, buf.len()),
                    (kept, cut, kept),
                    "{backend:?}: {} bytes into pool buffers of {room}",
                    datagram.len()
                );
                assert!(buf[..] == datagram[..kept], "{backend:?}: bytes differ");
                assert_eq!(meta.from, peer.local_addr().expect("addr"));
            }
        });
    });
}
