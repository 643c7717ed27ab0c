//! Accepts: the ring's multishot accept queues connections for later accepts, so a dropped
//! accept loses none, and a listener dropped with connections queued closes them (no leak).

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::time::Duration;

use weir_net::{Backend, TcpListener, io_stats, time};

use crate::support::{accept_queue, fd_count, on_each_backend};

/// Turns the runtime until the kernel's accept queue of `port` holds `count` connections
/// (bounded).
async fn until_kernel_queue(port: u16, count: u64) {
    for _ in 0..5_000 {
        if accept_queue(port) == Some(count) {
            return;
        }
        time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "the kernel's accept queue holds {:?}, not {count}",
        accept_queue(port)
    );
}

#[test]
fn a_dropped_accept_loses_no_connection() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let before = io_stats();
            // An accept that gives up before any client comes: on the ring it armed the
            // listener's multishot accept, which stays armed.
            let gave_up = time::timeout(Duration::from_millis(5), listener.accept()).await;
            assert!(gave_up.is_err(), "{backend:?}: nobody connected yet");
            let mut clients: Vec<StdStream> = (0..3)
                .map(|_| StdStream::connect(addr).expect("connect"))
                .collect();
            if backend == Backend::Uring {
                // The kernel hands the connections to the armed accept while no accept waits.
                until_kernel_queue(addr.port(), 0).await;
                let after = io_stats();
                assert_eq!(after.accept_arms - before.accept_arms, 1, "{after:?}");
                assert_eq!(after.accepts, before.accepts, "none was handed out yet");
            } else {
                // The reactor takes none before an accept asks.
                until_kernel_queue(addr.port(), 3).await;
            }
            for (i, client) in clients.iter_mut().enumerate() {
                client.write_all(&[i as u8; 4]).expect("write");
            }
            // Every one of them is accepted now, none lost; order is the kernel's.
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (mut stream, peer) = listener.accept().await.expect("accept");
                assert!(peer.ip().is_loopback(), "{backend:?}: peer {peer}");
                let (read, buf) = stream.read_exact(Vec::with_capacity(4), 4).await;
                read.expect("read");
                assert!(buf.iter().all(|b| *b == buf[0]), "{buf:?}");
                seen.push(buf[0]);
            }
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2], "{backend:?}");
            let stats = io_stats();
            assert_eq!(stats.accepts - before.accepts, 3, "{backend:?}: {stats:?}");
            if backend == Backend::Uring {
                assert_eq!(
                    stats.accept_arms - before.accept_arms,
                    1,
                    "re-armed: {stats:?}"
                );
            }
        });
    });
}

#[test]
fn a_listener_dropped_with_connections_queued_closes_them() {
    on_each_backend(|backend, rt| {
        let fds = fd_count();
        let tracked = rt.driver_tracked();
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let gave_up = time::timeout(Duration::from_millis(5), listener.accept()).await;
            assert!(gave_up.is_err(), "{backend:?}: nobody connected yet");
            let mut clients: Vec<StdStream> = (0..4)
                .map(|_| StdStream::connect(addr).expect("connect"))
                .collect();
            let queued = if backend == Backend::Uring { 0 } else { 4 };
            until_kernel_queue(addr.port(), queued).await;
            drop(listener);
            // The cancelled accept is tracked until its last completion is reaped; then the
            // driver is back to what it tracked before the listener.
            for _ in 0..5_000 {
                if rt.driver_tracked() <= tracked {
                    break;
                }
                time::sleep(Duration::from_millis(1)).await;
            }
            assert!(
                rt.driver_tracked() <= tracked,
                "{backend:?}: the driver tracks {} now, {tracked} before",
                rt.driver_tracked()
            );
            // Queued connections were closed, not leaked: each client sees its end (or a
            // reset, on the reactor's never-accepted ones).
            for client in &mut clients {
                client
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut byte = [0u8; 1];
                match client.read(&mut byte) {
                    Ok(0) => {}
                    Ok(n) => panic!("{backend:?}: {n} bytes from a closed connection"),
                    Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
                }
            }
        });
        assert!(
            fd_count() <= fds + 4,
            "{backend:?}: {} descriptors now, {fds} before (4 clients)",
            fd_count()
        );
    });
}
