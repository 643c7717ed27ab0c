//! Arguments at the edge of their range return errors or saturate; none panics (a panic on a
//! worker or the shutdown coordinator would kill it silently).

use std::io::{Read, Write};
use std::time::Duration;

use weir_net::server::Server;
use weir_net::time::{Elapsed, interval, sleep, timeout};
use weir_net::{Backend, Runtime, TcpListener, TcpStream, spawn};

use crate::support::{assert_closed, backends, on_each_backend, run_child_test};

#[test]
fn timers_take_duration_max() {
    on_each_backend(|_, rt| {
        rt.block_on(async {
            assert_eq!(timeout(Duration::MAX, async { 7 }).await, Ok(7));
            let never = timeout(Duration::from_millis(5), sleep(Duration::MAX)).await;
            assert_eq!(never, Err(Elapsed));
            let mut ticks = interval(Duration::MAX);
            let tick = timeout(Duration::from_millis(5), ticks.tick()).await;
            assert!(tick.is_err(), "an interval of Duration::MAX never ticks");
        });
    });
}

#[test]
fn read_exact_of_a_huge_length_grows_as_bytes_arrive() {
    on_each_backend(|_, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let peer = spawn(async move {
                let (mut conn, _) = listener.accept().await.expect("accept");
                conn.write_all(b"0123456789".to_vec())
                    .await
                    .0
                    .expect("write");
            });
            let mut client = TcpStream::connect(addr).await.expect("connect");
            peer.await.expect("peer");
            // A length a peer could announce: nothing is reserved for it up front.
            let (result, buf) = client.read_exact(Vec::new(), usize::MAX).await;
            let error = result.expect_err("the stream ended first");
            assert_eq!(error.kind(), std::io::ErrorKind::UnexpectedEof);
            assert_eq!(buf, b"0123456789");
            assert!(buf.capacity() < 1 << 20, "capacity {}", buf.capacity());
        });
    });
}

/// `ring_entries` outside 1..=32,768: a clear `InvalidInput` for an explicit io_uring, and the
/// reactor (with the reason) under `Auto`.
#[test]
fn ring_entries_out_of_range() {
    let _serial = crate::support::serial();
    for entries in [0, 32_769, u32::MAX] {
        if backends().contains(&Backend::Uring) {
            let error = Runtime::builder()
                .backend(Backend::Uring)
                .ring_entries(entries)
                .build()
                .expect_err("out of range");
            let error = std::io::Error::from(error);
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{error}");
            assert!(error.to_string().contains("entries"), "{error}");
        }
        let forced = std::env::var("WEIR_BACKEND").ok().filter(|v| !v.is_empty());
        let auto = Runtime::builder()
            .backend(Backend::Auto)
            .ring_entries(entries)
            .build();
        match forced.as_deref() {
            // WEIR_BACKEND=uring turns `Auto` into an explicit io_uring.
            Some("uring") => assert!(auto.is_err()),
            _ => {
                let rt = auto.unwrap_or_else(|e| panic!("Auto with {entries} entries: {e}"));
                let report = rt.backend_report();
                assert_eq!(report.backend, Backend::Poll, "{report:?}");
                if forced.is_none() {
                    assert!(report.reason.contains("ring_entries"), "{report:?}");
                }
                assert_eq!(rt.block_on(async { spawn(async { 1 }).await }), Ok(1));
            }
        }
    }
}

/// `first_byte_timeout(Duration::MAX)` means no timeout, and `shutdown_timeout(Duration::MAX)`
/// waits for the handlers: the coordinator survives and reports the drain. Run in a child, so
/// that a panic on a server thread (which would otherwise only be printed) fails the test.
#[test]
fn server_timeouts_of_duration_max() {
    if std::env::var_os("WEIR_TEST_SERVER_MAX").is_none() {
        for backend in backends() {
            let output = run_child_test(
                "bad_args::server_timeouts_of_duration_max",
                &[
                    ("WEIR_TEST_SERVER_MAX", "1"),
                    ("WEIR_BACKEND", crate::support::flag(backend)),
                ],
            );
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!stderr.contains("panicked"), "{backend:?}: {stderr}");
        }
        return;
    }
    let backend = backends()[0];
    let handle = Server::builder()
        .bind("127.0.0.1:0")
        .backend(backend)
        .handle_signals(false)
        .first_byte_timeout(Duration::MAX)
        .shutdown_timeout(Duration::MAX)
        .serve(|mut stream, _, stop| async move {
            let (result, buf) = stream.read(Vec::with_capacity(16)).await;
            if result.is_ok() && stream.write_all(buf).await.0.is_err() {
                return;
            }
            stop.cancelled().await;
        })
        .expect("server");
    let mut client = std::net::TcpStream::connect(handle.local_addr()).expect("connect");
    client.write_all(b"ping").expect("write");
    let mut reply = [0; 4];
    client.read_exact(&mut reply).expect("echo");
    assert_eq!(&reply, b"ping");
    handle.shutdown();
    let report = handle.join();
    assert_eq!(report.accepted, 1, "{report:?}");
    assert_eq!(report.completed, 1, "{report:?}");
    assert_eq!(report.forced, 0, "{report:?}");
    assert_eq!(report.timeouts, 0, "{report:?}");
    assert_closed(&mut client, "the served connection");
}
