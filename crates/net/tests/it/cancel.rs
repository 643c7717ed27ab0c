//! Cancel safety: reads raced against timers lose no byte; dropped accepts leak no descriptor.

use std::time::Duration;

use weir_net::{TcpListener, TcpStream, spawn, time};

use crate::support::{fd_count, on_each_backend, pattern};

#[test]
fn reads_raced_against_short_timers_lose_no_byte() {
    const TOTAL: usize = 2 << 20;
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            spawn(async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                let mut at = 0;
                while at < TOTAL {
                    let len = (TOTAL - at).min(1 + (at * 7919) % 30_000);
                    let chunk: Vec<u8> = (at..at + len).map(pattern).collect();
                    stream.write_all(chunk).await.0.expect("write");
                    at += len;
                    time::sleep(Duration::from_micros(100)).await;
                }
            });
            let (mut conn, _) = listener.accept().await.expect("accept");
            let mut received = Vec::with_capacity(TOTAL);
            let mut timeouts = 0;
            let mut round = 0u64;
            while received.len() < TOTAL {
                round += 1;
                let limit = Duration::from_micros(round % 200);
                match time::timeout(limit, conn.read(Vec::with_capacity(4096))).await {
                    Ok((n, buf)) => {
                        assert!(n.expect("read") > 0, "early end of stream");
                        received.extend_from_slice(&buf);
                    }
                    Err(_) => timeouts += 1, // the read was dropped mid-flight
                }
            }
            assert_eq!(received.len(), TOTAL, "{backend:?}");
            assert!(
                timeouts > 0,
                "{backend:?}: no read was dropped: the race was not exercised"
            );
            let first_bad = received
                .iter()
                .enumerate()
                .position(|(i, &b)| b != pattern(i));
            assert_eq!(
                first_bad, None,
                "{backend:?}: the stream was corrupted ({timeouts} reads dropped)"
            );
            println!("{backend:?}: {timeouts} reads dropped by the timer, no byte lost");
        });
    });
}

#[test]
fn a_storm_of_dropped_accepts_leaks_no_descriptor() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let baseline = fd_count();
            let mut clients = Vec::new();
            let mut accepted = 0;
            for round in 0..300 {
                // A third of the rounds have a client waiting before the accept starts, a third
                // one arriving just after it was dropped (on the ring, into the listener's armed
                // multishot accept), a third none.
                if round % 3 == 0 {
                    clients.push(std::net::TcpStream::connect(addr).expect("connect"));
                }
                let accept = time::timeout(Duration::from_micros(round % 300), listener.accept());
                if let Ok(Ok((conn, _))) = accept.await {
                    accepted += 1;
                    drop(conn);
                }
                if round % 3 == 1 {
                    clients.push(std::net::TcpStream::connect(addr).expect("connect"));
                }
            }
            // The clients' own descriptors stay open until the closure checks below.
            let baseline = baseline + clients.len();
            let drained = drain_until_back(&listener, baseline).await;
            assert!(fd_count() <= baseline, "{backend:?}: descriptors leaked");
            // Every connection's server side was closed, whoever took it from the kernel: an
            // accept that returned, the drain, or an accept dropped after the kernel completed
            // it (its descriptor closed by the clean-up, or queued and closed with the rest).
            for (n, client) in clients.iter_mut().enumerate() {
                crate::support::assert_closed(client, &format!("{backend:?}: client {n}"));
            }
            println!(
                "{backend:?}: of {} connections, {accepted} accepted in the storm and {drained} \
                 after it; every one closed",
                clients.len(),
            );
            assert_eq!(
                accepted + drained,
                clients.len(),
                "{backend:?}: connections were lost or accepted twice"
            );
        });
    });
}

/// Accepts and drops what waits in `listener`'s backlog and lets the ring reap cancelled
/// operations, until this process holds no more descriptors than `baseline` (bounded: 5 s). A
/// descriptor an earlier test left closing may go meanwhile, hence at most the baseline.
async fn drain_until_back(listener: &TcpListener, baseline: usize) -> usize {
    let mut drained = 0;
    for _ in 0..250 {
        while let Ok(Ok((conn, _))) =
            time::timeout(Duration::from_millis(1), listener.accept()).await
        {
            drained += 1;
            drop(conn);
        }
        if fd_count() <= baseline {
            return drained;
        }
        time::sleep(Duration::from_millis(20)).await;
    }
    drained
}

/// Polls `fut` once and drops it.
async fn poll_once_and_drop<F: std::future::Future>(fut: F) {
    let mut fut = Box::pin(fut);
    std::future::poll_fn(|cx| {
        let _ = fut.as_mut().poll(cx);
        std::task::Poll::Ready(())
    })
    .await;
}

#[test]
fn a_dropped_read_exact_gives_back_what_it_gathered() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut client, mut server) = crate::mixed_io::tcp_pair().await;
            let sent: Vec<u8> = (0..1000).map(pattern).collect();
            client
                .write_all(sent[..600].to_vec())
                .await
                .0
                .expect("first part");
            // 600 bytes arrive at once; the rest never comes before the deadline.
            let timed_out = time::timeout(
                Duration::from_millis(200),
                server.read_exact(Vec::new(), 1000),
            )
            .await;
            assert!(
                timed_out.is_err(),
                "{backend:?}: only 600 of 1000 bytes were sent"
            );
            client
                .write_all(sent[600..].to_vec())
                .await
                .0
                .expect("second part");
            let (result, got) = server.read_exact(Vec::new(), 1000).await;
            result.expect("read_exact");
            assert_eq!(
                got, sent,
                "{backend:?}: the dropped read_exact's bytes were lost"
            );
        });
    });
}

#[test]
fn a_dropped_writev_never_interleaves_with_the_next_write() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut client, mut server) = crate::mixed_io::tcp_pair().await;
            // Vectored writes of the same eight buffers until one cannot finish before its
            // deadline (the peer reads nothing): that one is dropped while in flight.
            let parts: Vec<Vec<u8>> = (0..8)
                .map(|p| (0..256 << 10).map(|i| pattern(i * 7 + p)).collect())
                .collect();
            let all: Vec<u8> = parts.concat();
            let mut before = Vec::new();
            let mut parts = parts;
            loop {
                match time::timeout(Duration::from_millis(50), client.writev(parts.clone())).await {
                    Ok((result, back)) => {
                        let n = result.expect("writev");
                        before.extend_from_slice(&all[..n]);
                        parts = back;
                    }
                    Err(_) => break,
                }
                assert!(
                    before.len() < 256 << 20,
                    "{backend:?}: the peer's buffers never filled"
                );
            }
            let second: Vec<u8> = (0..100_000).map(|i| pattern(i) ^ 0xa5).collect();
            let reader = spawn(async move {
                let mut got = Vec::new();
                loop {
                    let (n, buf) = server.read(Vec::with_capacity(1 << 16)).await;
                    if n.expect("read") == 0 {
                        return got;
                    }
                    got.extend_from_slice(&buf);
                }
            });
            client
                .write_all(second.clone())
                .await
                .0
                .expect("second write");
            client
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
            let got = reader.await.expect("reader");
            assert_eq!(
                &got[..before.len()],
                &before[..],
                "{backend:?}: the completed writes"
            );
            let kept = got.len() - before.len() - second.len();
            let dropped = &got[before.len()..before.len() + kept];
            assert_eq!(
                dropped,
                &all[..kept],
                "{backend:?}: not a prefix of the dropped writev"
            );
            assert_eq!(
                &got[got.len() - second.len()..],
                &second[..],
                "{backend:?}: corrupted"
            );
        });
    });
}

#[test]
fn a_storm_of_dropped_connects_leaks_no_descriptor() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let baseline = fd_count();
            for _ in 0..100 {
                poll_once_and_drop(TcpStream::connect(addr)).await;
            }
            drain_until_back(&listener, baseline).await;
            assert!(fd_count() <= baseline, "{backend:?}: descriptors leaked");
        });
    });
}

#[test]
fn dropped_pooled_udp_receives_and_sends_lose_nothing_they_owe() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let a = weir_net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = weir_net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            // A pooled receive dropped while it waits for data holds nothing.
            poll_once_and_drop(b.recv_pooled()).await;
            // A dropped send either sent its datagram whole or not at all.
            poll_once_and_drop(a.send_to(b"maybe".to_vec(), to)).await;
            a.send_to(b"surely".to_vec(), to).await.0.expect("send");
            let (first, _) = b.recv_pooled().await.expect("recv_pooled");
            let first = first.to_vec();
            let second = if first == b"maybe" {
                b.recv_pooled().await.expect("recv_pooled").0.to_vec()
            } else {
                first.clone()
            };
            assert!(
                first == b"maybe" || first == b"surely",
                "{backend:?}: got {first:?}"
            );
            assert_eq!(second, b"surely", "{backend:?}");
        });
    });
}

#[test]
fn a_dropped_read_with_no_room_is_not_an_end_of_stream() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let (mut client, mut server) = crate::mixed_io::tcp_pair().await;
            poll_once_and_drop(server.read(Vec::new())).await;
            weir_net::yield_now().await;
            client.write_all(b"data".to_vec()).await.0.expect("write");
            let (n, buf) = server.read(Vec::with_capacity(64)).await;
            assert_eq!(
                n.expect("read"),
                4,
                "{backend:?}: a read with no room read as the end"
            );
            assert_eq!(buf, b"data");
        });
    });
}

#[test]
fn a_dropped_send_file_never_interleaves_with_the_next_write() {
    let path = std::env::temp_dir().join(format!("weir-send-file-drop-{}", std::process::id()));
    let contents: Vec<u8> = (0..(16 << 20)).map(|i| pattern(i * 3)).collect();
    std::fs::write(&path, &contents).expect("file");
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let file = std::fs::File::open(&path).expect("open");
            let (mut client, mut server) = crate::mixed_io::tcp_pair().await;
            // 16 MiB to a peer that reads nothing: the send is in flight at its deadline.
            let timed_out = time::timeout(
                Duration::from_millis(50),
                client.send_file(&file, 0, contents.len()),
            )
            .await;
            assert!(timed_out.is_err(), "{backend:?}: 16 MiB fitted");
            let reader = spawn(async move {
                let mut got = Vec::new();
                loop {
                    let (n, buf) = server.read(Vec::with_capacity(1 << 16)).await;
                    if n.expect("read") == 0 {
                        return got;
                    }
                    got.extend_from_slice(&buf);
                }
            });
            let next: Vec<u8> = (0..100_000).map(|i| pattern(i) ^ 0x3c).collect();
            client.write_all(next.clone()).await.0.expect("next write");
            client
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
            let got = reader.await.expect("reader");
            assert!(got.len() >= next.len(), "{backend:?}");
            let kept = got.len() - next.len();
            assert_eq!(
                &got[..kept],
                &contents[..kept],
                "{backend:?}: not a prefix of the file"
            );
            assert_eq!(
                &got[kept..],
                &next[..],
                "{backend:?}: the next write was interleaved"
            );
        });
    });
    let _ = std::fs::remove_file(&path);
}

/// Connects to a std listener, arms the stream's receive with a read that times out, and
/// returns the stream and the accepted peer.
async fn stream_with_an_armed_read(
    listener: &std::net::TcpListener,
) -> (TcpStream, std::net::TcpStream) {
    let addr = listener.local_addr().expect("addr");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let (peer, _) = listener.accept().expect("accept");
    let read = time::timeout(
        Duration::from_millis(5),
        stream.read(Vec::with_capacity(64)),
    )
    .await;
    assert!(read.is_err(), "the read got {read:?} from a silent peer");
    (stream, peer)
}

/// Reads from `peer` until its end of stream; a read timeout fails the test.
fn expect_end_of_stream(backend: weir_net::Backend, mut peer: std::net::TcpStream, case: &str) {
    use std::io::Read;
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    match peer.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{backend:?}, {case}: the peer read {n} bytes nobody sent"),
        Err(e) => panic!("{backend:?}, {case}: no end of stream within 10 s ({e})"),
    }
}

#[test]
fn a_stream_dropped_as_block_on_returns_closes_its_connection() {
    on_each_backend(|backend, rt| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        // The stream is dropped in the main future's last poll; the runtime lives on.
        let peer = rt.block_on(async {
            let (stream, peer) = stream_with_an_armed_read(&listener).await;
            drop(stream);
            peer
        });
        expect_end_of_stream(backend, peer, "dropped in block_on's last poll");
    });
}

#[test]
fn a_stream_dropped_outside_block_on_closes_its_connection() {
    on_each_backend(|backend, rt| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let (stream, peer) = rt.block_on(stream_with_an_armed_read(&listener));
        // Dropped with no runtime on the thread; the runtime lives on.
        drop(stream);
        expect_end_of_stream(backend, peer, "dropped outside block_on");
    });
}
