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
            for round in 0..200 {
                // Half the rounds have a client arriving as the accept is dropped.
                let client = if round % 2 == 0 {
                    Some(std::net::TcpStream::connect(addr).expect("connect"))
                } else {
                    None
                };
                let _ = time::timeout(Duration::from_micros(round % 300), listener.accept()).await;
                drop(client);
            }
            // Let the ring reap the cancellations.
            time::sleep(Duration::from_millis(50)).await;
            while let Ok(Ok((conn, _))) =
                time::timeout(Duration::from_millis(20), listener.accept()).await
            {
                drop(conn); // drain connections still in the backlog
            }
            time::sleep(Duration::from_millis(20)).await;
            assert_eq!(fd_count(), baseline, "{backend:?}: descriptors leaked");
        });
    });
}
