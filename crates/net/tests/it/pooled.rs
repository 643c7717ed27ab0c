//! Pooled reads on both backends: a hashed echo, backpressure from an exhausted pool without
//! loss, cancel safety under a racing timer, owned reads mixed in, idle connections holding no
//! buffer, and pooled UDP receives.

use std::time::Duration;

use weir_bufpool::Config;
use weir_net::{Backend, Runtime, TcpListener, TcpStream, spawn, time};

use crate::support::{backends, fnv, pattern};

/// Runs `test` on a runtime per backend with the given pool.
pub(crate) fn with_pool(config: Config, test: impl Fn(Backend, &Runtime)) {
    let _serial = crate::support::serial();
    for backend in backends() {
        let rt = Runtime::builder()
            .backend(backend)
            .buffer_pool(config.clone())
            .build()
            .expect("runtime");
        test(backend, &rt);
    }
}

/// A connected pair: (client, server side).
pub(crate) async fn pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = spawn(async move { listener.accept().await.expect("accept").0 });
    let client = TcpStream::connect(addr).await.expect("connect");
    (client, accept.await.expect("accept task"))
}

/// Sends `len` bytes of the known pattern in uneven chunks, then half-closes.
pub(crate) fn stream_pattern(mut to: TcpStream, len: usize) -> weir_net::JoinHandle<()> {
    spawn(async move {
        let mut sent = 0;
        let mut step = 1;
        while sent < len {
            let n = (step * 997 % 40_000 + 1).min(len - sent);
            let chunk: Vec<u8> = (sent..sent + n).map(pattern).collect();
            to.write_all(chunk).await.0.expect("send");
            sent += n;
            step += 1;
        }
        to.shutdown(std::net::Shutdown::Write).expect("half-close");
    })
}

#[test]
fn pooled_reads_deliver_the_stream_in_order() {
    with_pool(Config::new(4096, 64), |backend, rt| {
        rt.block_on(async {
            let (client, mut server) = pair().await;
            let len = 2 << 20;
            let sender = stream_pattern(client, len);
            let mut got = Vec::with_capacity(len);
            while let Some(buf) = server.read_pooled().await.expect("read_pooled") {
                assert!(!buf.is_empty() && buf.len() <= 4096, "{backend:?}");
                got.extend_from_slice(&buf);
            }
            sender.await.expect("sender");
            let expected: Vec<u8> = (0..len).map(pattern).collect();
            assert_eq!(fnv(&got), fnv(&expected), "{backend:?}");
            // Every buffer handed out came back (the ring's share is the same as before).
            let pool = weir_net::buffer_pool().expect("pool");
            let stats = pool.stats();
            assert!(stats.in_use <= 32, "{backend:?}: {stats:?}");
        });
    });
}

#[test]
fn an_exhausted_pool_makes_reads_wait_without_losing_bytes() {
    // Eight 1 KiB buffers, no thread cache: holding them all stalls the reader.
    with_pool(Config::new(1024, 8).thread_cache(0), |backend, rt| {
        rt.block_on(async {
            let (client, mut server) = pair().await;
            let len = 256 * 1024;
            let sender = stream_pattern(client, len);
            let mut got = Vec::with_capacity(len);
            let mut held = Vec::new();
            let mut stalls = 0;
            loop {
                // Hold up to all the pool's buffers; once the pool is dry, a read must wait
                // until one comes back, which happens when the timer fires.
                let read = time::timeout(Duration::from_millis(20), server.read_pooled()).await;
                match read {
                    Ok(Ok(Some(buf))) => held.push(buf),
                    Ok(Ok(None)) => break,
                    Ok(Err(error)) => panic!("{backend:?}: {error}"),
                    Err(_) => {
                        stalls += 1;
                        for buf in held.drain(..) {
                            got.extend_from_slice(&buf);
                        }
                    }
                }
                if held.len() == 8 {
                    // Keep them a moment longer so the next read finds the pool empty.
                    continue;
                }
            }
            for buf in held.drain(..) {
                got.extend_from_slice(&buf);
            }
            sender.await.expect("sender");
            assert!(stalls > 0, "{backend:?}: the pool never ran dry");
            let expected: Vec<u8> = (0..len).map(pattern).collect();
            assert_eq!(got.len(), len, "{backend:?}");
            assert_eq!(fnv(&got), fnv(&expected), "{backend:?}");
        });
    });
}

#[test]
fn dropped_pooled_reads_and_mixed_owned_reads_lose_nothing() {
    with_pool(Config::new(2048, 64), |backend, rt| {
        rt.block_on(async {
            let (client, mut server) = pair().await;
            let len = 1 << 20;
            let sender = stream_pattern(client, len);
            let mut got = Vec::with_capacity(len);
            let mut round = 0u64;
            loop {
                round += 1;
                // Alternate pooled and owned reads, each racing a 0-1 ms timer.
                let limit = Duration::from_micros(round % 1000);
                if round % 3 == 0 {
                    match time::timeout(limit, server.read(Vec::with_capacity(700))).await {
                        Ok((Ok(0), _)) => break,
                        Ok((Ok(_), buf)) => got.extend_from_slice(&buf),
                        Ok((Err(error), _)) => panic!("{backend:?}: {error}"),
                        Err(_) => {}
                    }
                } else {
                    match time::timeout(limit, server.read_pooled()).await {
                        Ok(Ok(Some(buf))) => got.extend_from_slice(&buf),
                        Ok(Ok(None)) => break,
                        Ok(Err(error)) => panic!("{backend:?}: {error}"),
                        Err(_) => {}
                    }
                }
            }
            sender.await.expect("sender");
            let expected: Vec<u8> = (0..len).map(pattern).collect();
            assert_eq!(got.len(), len, "{backend:?}");
            assert_eq!(
                fnv(&got),
                fnv(&expected),
                "{backend:?}: reordered or lost bytes"
            );
        });
    });
}

#[test]
fn idle_connections_hold_no_pool_buffer() {
    with_pool(Config::new(4096, 256), |backend, rt| {
        rt.block_on(async {
            let pool = weir_net::buffer_pool().expect("pool");
            let baseline = pool.stats().in_use;
            let mut clients = Vec::new();
            let mut readers = Vec::new();
            let waiting = std::rc::Rc::new(std::cell::Cell::new(0));
            for _ in 0..100 {
                let (client, mut server) = pair().await;
                clients.push(client);
                let waiting = waiting.clone();
                readers.push(spawn(async move {
                    waiting.set(waiting.get() + 1);
                    server.read_pooled().await.map(|b| b.map(|b| b.len()))
                }));
            }
            // Each reader counts itself in the poll that starts its read, which then waits: once
            // all 100 counted, all 100 reads wait.
            while waiting.get() < 100 {
                weir_net::yield_now().await;
            }
            assert_eq!(
                pool.stats().in_use,
                baseline,
                "{backend:?}: 100 idle pooled reads must not hold buffers"
            );
            for client in &mut clients {
                client.write_all(b"hi".to_vec()).await.0.expect("write");
            }
            for reader in readers {
                assert_eq!(reader.await.expect("reader").expect("read"), Some(2));
            }
        });
    });
}

#[test]
fn udp_recv_pooled_round_trips() {
    with_pool(Config::new(1500, 16), |backend, rt| {
        rt.block_on(async {
            let a = weir_net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let b = weir_net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let to = b.local_addr().expect("addr");
            for size in [1usize, 512, 1500] {
                let payload: Vec<u8> = (0..size).map(pattern).collect();
                a.send_to(payload.clone(), to).await.0.expect("send");
                let (buf, from) = b.recv_pooled().await.expect("recv_pooled");
                assert_eq!(from, a.local_addr().expect("addr"), "{backend:?}");
                assert_eq!(&buf[..], &payload[..], "{backend:?}");
            }
        });
    });
}

#[test]
fn a_growing_pool_is_refused_with_a_clear_error() {
    // Buffers registered with the kernel up front cannot grow: the first pooled read says so.
    with_pool(Config::new(1024, 4).max_buffers(8), |backend, rt| {
        rt.block_on(async {
            let (_client, mut server) = pair().await;
            let error = server.read_pooled().await.expect_err("a growing pool");
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::InvalidInput,
                "{backend:?}"
            );
            let error = weir_net::buffer_pool().expect_err("a growing pool");
            assert!(
                error.to_string().contains("must not grow"),
                "{backend:?}: {error}"
            );
        });
    });
}

/// io_uring's provided buffer ring names at most 32,768 buffers: a bigger pool is refused with a
/// clear error on both backends (on the ring, buffers beyond that were refused one by one and
/// handed back to the top of the pool, which handed the same one out again: pooled reads spun
/// forever). Run in a thread with a deadline, so a spin fails the test instead of hanging it.
#[test]
fn a_pool_of_more_than_32768_buffers_is_refused_with_a_clear_error() {
    let _serial = crate::support::serial();
    for backend in backends() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = Runtime::builder()
                .backend(backend)
                .buffer_pool(Config::new(64, 32_769))
                .build()
                .expect("runtime");
            let outcome = rt.block_on(async {
                let (mut client, mut server) = pair().await;
                client.write_all(b"x".to_vec()).await.0.expect("send");
                server.read_pooled().await.map(|b| b.map(|b| b.len()))
            });
            let _ = tx.send(outcome.map_err(|e| (e.kind(), e.to_string())));
        });
        let outcome = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("{backend:?}: the pooled read never returned"));
        let (kind, message) = outcome.expect_err("a pool of 32769 buffers");
        assert_eq!(
            kind,
            std::io::ErrorKind::InvalidInput,
            "{backend:?}: {message}"
        );
        assert!(message.contains("32768"), "{backend:?}: {message}");
    }
}

#[test]
fn buffers_lent_to_the_kernel_are_told_apart_from_buffers_held() {
    with_pool(Config::new(4096, 64), |backend, rt| {
        rt.block_on(async {
            let pool = weir_net::buffer_pool().expect("pool");
            let held = || pool.stats().in_use - rt.buffers_lent_to_kernel();
            let (mut client, mut server) = pair().await;
            client.write_all(b"ping".to_vec()).await.0.expect("write");
            let buf = server
                .read_pooled()
                .await
                .expect("read")
                .expect("not the end");
            assert_eq!(&buf[..], b"ping");
            assert_eq!(held(), 1, "{backend:?}: the buffer read is held");
            drop(buf);
            assert_eq!(held(), 0, "{backend:?}: nothing held once it is dropped");
            let lent = rt.buffers_lent_to_kernel();
            if backend == Backend::Uring {
                assert!(lent > 0, "the ring's provided buffer ring holds none");
            } else {
                assert_eq!(lent, 0, "the reactor lends the kernel no buffer");
            }
        });
    });
}
