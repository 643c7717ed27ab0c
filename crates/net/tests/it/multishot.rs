//! Stream reads on the ring take from one multishot receive per connection (on by default):
//! timed-out reads leave it armed, a reader that falls behind pauses it without losing a byte,
//! and `Builder::multishot_reads(false)` gives the single-shot receives back. The reactor runs
//! the same scenarios (its counts stay at zero: it has no multishot receive).

use std::io::Write;
use std::time::Duration;

use weir_bufpool::Config;
use weir_net::{Backend, Runtime, TcpListener, io_stats};

use crate::pooled::{pair, with_pool};
use crate::support::{backends, fnv, pattern};

#[test]
fn timed_out_reads_leave_the_multishot_receive_armed() {
    with_pool(Config::new(4096, 64), |backend, rt| {
        rt.block_on(async {
            let (mut client, mut server) = pair().await;
            let before = io_stats();
            let mut buf = Vec::with_capacity(64);
            for _ in 0..20 {
                let (timed, back) = server.read_timeout(buf, Duration::from_millis(2)).await;
                let kind = timed.expect_err("nothing was sent yet").kind();
                assert_eq!(kind, std::io::ErrorKind::TimedOut, "{backend:?}");
                buf = back;
            }
            let (sent, _) = client.write_all(b"hello".to_vec()).await;
            sent.expect("write");
            let (n, buf) = server.read(Vec::with_capacity(64)).await;
            assert_eq!(n.expect("read"), 5, "{backend:?}");
            assert_eq!(&buf[..], b"hello");
            let arms = io_stats().receive_arms - before.receive_arms;
            match backend {
                Backend::Uring => assert_eq!(
                    arms, 1,
                    "21 reads, 20 of them timed out, share one multishot receive"
                ),
                _ => assert_eq!(arms, 0, "the reactor has no multishot receive"),
            }
        });
    });
}

#[test]
fn a_reader_that_falls_behind_pauses_the_receive_and_loses_nothing() {
    // Twelve 4 KiB buffers' worth: fits the socket's buffers, so the writer finishes while
    // nobody reads.
    const LEN: usize = 48 * 1024;
    const TAIL: usize = 5000;
    with_pool(Config::new(4096, 64), |backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let before = io_stats();
            // The writer sends LEN bytes and says so, waits for the reader to take them, then
            // sends TAIL more and half-closes: the tail arrives only if the paused receive was
            // armed again.
            let (written, wait_written) = std::sync::mpsc::channel::<()>();
            let (go, wait_go) = std::sync::mpsc::channel::<()>();
            let writer = std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).expect("connect");
                let data: Vec<u8> = (0..LEN + TAIL).map(pattern).collect();
                stream.write_all(&data[..LEN]).expect("write");
                written.send(()).expect("written");
                wait_go.recv().expect("go");
                stream.write_all(&data[LEN..]).expect("write the tail");
                stream
                    .shutdown(std::net::Shutdown::Write)
                    .expect("half-close");
                stream
            });
            let (mut server, _) = listener.accept().await.expect("accept");
            // The first read arms the receive and takes one byte.
            let (n, mut got) = server.read(Vec::with_capacity(1)).await;
            assert_eq!(n.expect("first read"), 1, "{backend:?}");
            // This thread reads nothing until the writer has written LEN (an event, not a
            // sleep): the arrivals pile up in the receive's queue.
            wait_written.recv().expect("writer");
            let mut go = Some(go);
            loop {
                if got.len() == LEN {
                    // Everything sent so far is read: let the tail come.
                    if let Some(go) = go.take() {
                        go.send(()).expect("go");
                    }
                }
                got.reserve(1000);
                let (n, back) = server.read(got).await;
                got = back;
                if n.expect("read") == 0 {
                    break; // the real end of stream: the writer's half-close
                }
            }
            let _client = writer.join().expect("writer");
            assert_eq!(got.len(), LEN + TAIL, "{backend:?}");
            let expected: Vec<u8> = (0..LEN + TAIL).map(pattern).collect();
            assert_eq!(
                fnv(&got),
                fnv(&expected),
                "{backend:?}: bytes lost or reordered"
            );
            let after = io_stats();
            if backend == Backend::Uring {
                assert!(
                    after.receive_pauses > before.receive_pauses,
                    "the backlog paused the receive"
                );
                assert!(
                    after.receive_rearms > before.receive_rearms,
                    "the read that drained the backlog re-armed it"
                );
            }
        });
    });
}

#[test]
fn multishot_reads_can_be_turned_off() {
    if !backends().contains(&Backend::Uring) {
        eprintln!("multishot_reads_can_be_turned_off: SKIPPED, the ring backend is not tested");
        return;
    }
    let rt = Runtime::builder()
        .backend(Backend::Uring)
        .multishot_reads(false)
        .build()
        .expect("ring runtime");
    rt.block_on(async {
        let (mut client, mut server) = pair().await;
        let before = io_stats();
        let (sent, _) = client.write_all(b"ping".to_vec()).await;
        sent.expect("write");
        let (n, buf) = server.read(Vec::with_capacity(16)).await;
        assert_eq!(n.expect("read"), 4);
        assert_eq!(&buf[..], b"ping");
        assert_eq!(
            io_stats().receive_arms,
            before.receive_arms,
            "single-shot receives"
        );
    });
}

#[test]
fn an_sqpoll_runtime_serves_streams_with_its_polling_thread() {
    if !backends().contains(&Backend::Uring) {
        eprintln!("an_sqpoll_runtime_serves_streams...: SKIPPED, the ring backend is not tested");
        return;
    }
    let rt = Runtime::builder()
        .backend(Backend::Uring)
        .sqpoll(Duration::from_millis(50))
        .build()
        .expect("ring runtime");
    // The kernel names its polling thread once the thread first runs.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while weir_testkit::sqpoll_threads() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the runtime's ring has no polling thread"
        );
        std::thread::yield_now();
    }
    rt.block_on(async {
        let (mut client, mut server) = pair().await;
        for round in 0..100u32 {
            let (sent, _) = client.write_all(round.to_le_bytes().to_vec()).await;
            sent.expect("write");
            let (got, buf) = server.read_exact(Vec::new(), 4).await;
            got.expect("read");
            assert_eq!(buf, round.to_le_bytes());
        }
    });
}

#[test]
fn provided_buffers_all_come_back_after_connections_drop() {
    with_pool(Config::new(4096, 64), |backend, rt| {
        rt.block_on(async {
            let pool = weir_net::buffer_pool().expect("pool");
            // One connection's first read makes the runtime's provided ring: the buffers the
            // kernel holds from then on count as in use.
            let (mut client, mut server) = pair().await;
            let (sent, _) = client.write_all(vec![1u8; 10]).await;
            sent.expect("write");
            let (n, _) = server.read(Vec::with_capacity(64)).await;
            assert_eq!(n.expect("read"), 10);
            drop((client, server));
            let baseline = pool.stats().in_use;
            // Twenty connections, each left holding part of a chunk (a 1-byte read of 3,000
            // bytes) and dropped with more data arriving.
            for _ in 0..20 {
                let (mut client, mut server) = pair().await;
                let (sent, _) = client.write_all(vec![7u8; 3000]).await;
                sent.expect("write");
                let (n, _) = server.read(Vec::with_capacity(1)).await;
                assert_eq!(n.expect("read"), 1, "{backend:?}");
                let (sent, _) = client.write_all(vec![8u8; 3000]).await;
                sent.expect("write");
                drop((client, server));
            }
            // The dropped receives' last completions come back through the runtime's turns.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while pool.stats().in_use > baseline {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{backend:?}: {} buffers in use, {baseline} before the connections",
                    pool.stats().in_use
                );
                weir_net::time::sleep(Duration::from_millis(1)).await;
            }
        });
    });
}

#[test]
fn owned_reads_over_a_tiny_pool_re_arm_after_enobufs_and_lose_nothing() {
    // Eight 4 KiB buffers (four in the kernel's ring): a 1 MiB stream runs the ring dry again
    // and again; each time the kernel ends the receive with ENOBUFS and the next read re-arms.
    const LEN: usize = 1 << 20;
    with_pool(Config::new(4096, 8), |backend, rt| {
        rt.block_on(async {
            let (client, mut server) = pair().await;
            let before = io_stats();
            let sender = crate::pooled::stream_pattern(client, LEN);
            let mut got = Vec::with_capacity(LEN);
            loop {
                got.reserve(700); // reads smaller than a chunk: some chunks stay held
                let (n, back) = server.read(got).await;
                got = back;
                if n.expect("read") == 0 {
                    break;
                }
            }
            sender.await.expect("sender");
            let expected: Vec<u8> = (0..LEN).map(pattern).collect();
            assert_eq!(got.len(), LEN, "{backend:?}");
            assert_eq!(
                fnv(&got),
                fnv(&expected),
                "{backend:?}: bytes lost or reordered"
            );
            if backend == Backend::Uring {
                // The whole stream arrived after the ring ran dry: the receive was re-armed.
                assert!(
                    io_stats().receive_dry > before.receive_dry,
                    "the kernel ended the receive with ENOBUFS"
                );
            }
        });
    });
}
