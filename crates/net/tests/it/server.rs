//! The `Server`: admission before accept, resets before accept, graceful shutdown, deadline.

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use weir_net::server::{Server, ServerHandle};
use weir_net::{Backend, time};

use crate::support::{accept_queue, assert_closed, backends, fd_count, serial};

/// Requests `request_reply` handlers have read and begun to hold, over all servers.
static REQUESTS_HELD: AtomicU64 = AtomicU64::new(0);

/// A handler that reads one 8-byte request, holds it for `hold`, and answers it, repeatedly,
/// until the peer closes or the server stops (finishing the current request first).
fn request_reply(
    hold: Duration,
) -> impl Fn(
    weir_net::TcpStream,
    std::net::SocketAddr,
    weir_shutdown::Token,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>
+ Send
+ Sync
+ 'static {
    move |mut stream, _, stop| {
        Box::pin(async move {
            // Bytes received but not yet answered; reads are cancel-safe, so a read dropped by
            // the idle check below loses nothing.
            let mut pending = Vec::new();
            loop {
                if pending.len() >= 8 {
                    let request: Vec<u8> = pending.drain(..8).collect();
                    let id = u64::from_le_bytes(request[..].try_into().expect("8 bytes"));
                    if id % 97 == 13 {
                        panic!("handler failed on request {id}");
                    }
                    REQUESTS_HELD.fetch_add(1, Ordering::Relaxed);
                    time::sleep(hold).await;
                    if stream.write_all(request).await.0.is_err() {
                        return;
                    }
                    continue;
                }
                // Wait for bytes, or for the shutdown while idle (no partial request).
                let read = time::timeout(
                    Duration::from_millis(20),
                    stream.read(Vec::with_capacity(64)),
                );
                match read.await {
                    Ok((Ok(n), buf)) if n > 0 => pending.extend_from_slice(&buf),
                    Ok(_) => return, // end of stream or error
                    Err(_) if stop.is_cancelled() && pending.is_empty() => return,
                    Err(_) => {}
                }
            }
        })
    }
}

fn start(backend: Backend, limit: usize, deadline: Duration, hold: Duration) -> ServerHandle {
    Server::builder()
        .bind("127.0.0.1:0")
        .backend(backend)
        .max_connections(limit)
        .shutdown_timeout(deadline)
        .handle_signals(false)
        .serve(request_reply(hold))
        .expect("server")
}

fn ask(addr: std::net::SocketAddr, id: u64) -> std::io::Result<u64> {
    let mut stream = StdStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(&id.to_le_bytes())?;
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply)?;
    Ok(u64::from_le_bytes(reply))
}

#[test]
fn limit_of_50_with_500_clients_in_bursts() {
    let _serial = serial();
    for backend in backends() {
        // Each request is held 20 ms: far longer than accepting 50 waiting connections takes,
        // so the limit is reached however the threads are scheduled.
        let server = Arc::new(start(
            backend,
            50,
            Duration::from_secs(5),
            Duration::from_millis(20),
        ));
        let addr = server.local_addr();
        let peak = Arc::new(AtomicU64::new(0));
        let sampler = {
            let (server, peak) = (server.clone(), peak.clone());
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    peak.fetch_max(server.metrics().active(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(500));
                }
            })
        };
        let served = Arc::new(AtomicU64::new(0));
        // Ten bursts of 50 clients that all connect and send before any reads its reply: 460
        // want in at once, 50 may. Each connection closes once answered, and each burst reads
        // its replies in the order it connected (the order the server accepts in), so the
        // answered ones always free their permits.
        let all_sent = Arc::new(std::sync::Barrier::new(10));
        let clients: Vec<_> = (0..10u64)
            .map(|burst| {
                let served = served.clone();
                let all_sent = all_sent.clone();
                std::thread::spawn(move || {
                    let mut open = Vec::new();
                    for n in 0..50u64 {
                        let id = burst * 50 + n;
                        let mut stream = StdStream::connect(addr).expect("connect");
                        if id % 31 == 7 {
                            continue; // a client that vanishes: dropped unanswered
                        }
                        stream
                            .set_read_timeout(Some(Duration::from_secs(30)))
                            .expect("timeout");
                        stream.write_all(&id.to_le_bytes()).expect("request");
                        open.push((id, stream));
                    }
                    all_sent.wait();
                    for (id, mut stream) in open {
                        let mut reply = [0u8; 8];
                        match stream.read_exact(&mut reply) {
                            Ok(()) => {
                                assert_eq!(u64::from_le_bytes(reply), id);
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            // The handler for this id panics: the connection just closes.
                            Err(_) => assert_eq!(id % 97, 13, "request {id} failed"),
                        }
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("client thread");
        }
        sampler.join().expect("sampler");
        let expected = (0..500u64)
            .filter(|id| id % 31 != 7 && id % 97 != 13)
            .count() as u64;
        assert_eq!(
            served.load(Ordering::Relaxed),
            expected,
            "{backend:?}: every client served"
        );
        assert!(
            peak.load(Ordering::Relaxed) <= 50,
            "{backend:?}: more than 50 active"
        );
        let server = Arc::try_unwrap(server).expect("sampler done");
        server.shutdown();
        let report = server.join();
        // Permits return on every path (normal, panic, vanished client, shutdown).
        assert_eq!(
            report.permits_available, 50,
            "{backend:?}: a permit was lost"
        );
        assert_eq!(report.accepted, 500, "{backend:?}: {report:?}");
        assert_eq!(report.forced, 0, "{backend:?}: {report:?}");
        assert!(
            report.queued > 0,
            "{backend:?}: the limit was never reached: {report:?}"
        );
        println!(
            "{backend:?}: peak active {} of 50; report {report:?}",
            peak.load(Ordering::Relaxed)
        );
    }
}

#[test]
fn reset_before_accept_does_not_disturb_other_clients() {
    let _serial = serial();
    for backend in backends() {
        let server = start(backend, 10, Duration::from_secs(5), Duration::ZERO);
        let addr = server.local_addr();
        for _ in 0..20 {
            let stream = StdStream::connect(addr).expect("connect");
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .expect("linger 0");
            drop(stream); // RST, possibly before the server accepts
        }
        for id in (0..21).filter(|id| id % 97 != 13) {
            assert_eq!(ask(addr, id).expect("a normal client"), id, "{backend:?}");
        }
        server.shutdown();
        let report = server.join();
        assert_eq!(report.forced, 0, "{backend:?}: {report:?}");
    }
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests_and_closes_idle_ones() {
    let _serial = serial();
    for backend in backends() {
        let server = start(
            backend,
            1_000,
            Duration::from_secs(10),
            Duration::from_millis(200),
        );
        let addr = server.local_addr();
        // 100 idle keep-alive connections.
        let idle: Vec<StdStream> = (0..100)
            .map(|_| StdStream::connect(addr).expect("connect"))
            .collect();
        // 200 in-flight slow requests (the handler holds each for 200 ms).
        let held_before = REQUESTS_HELD.load(Ordering::Relaxed);
        let slow: Vec<_> = (0..200u64)
            .filter(|id| id % 97 != 13)
            .map(|id| {
                let mut stream = StdStream::connect(addr).expect("connect");
                stream.write_all(&id.to_le_bytes()).expect("request");
                (id, stream)
            })
            .collect();
        // Let the requests reach their handlers, then shut down mid-request.
        let expected = (idle.len() + slow.len()) as u64;
        while server.metrics().accepted_total() < expected {
            std::thread::sleep(Duration::from_millis(1));
        }
        wait_until("the slow requests reaching their handlers", || {
            let held = REQUESTS_HELD.load(Ordering::Relaxed) - held_before;
            if held >= slow.len() as u64 {
                Ok(())
            } else {
                Err(format!("{held} of {} held", slow.len()))
            }
        });
        let began = Instant::now();
        server.shutdown();
        // New connections are refused soon (the listeners close at once).
        let refused_after = loop {
            if StdStream::connect(addr).is_err() {
                break began.elapsed();
            }
            assert!(
                began.elapsed() < Duration::from_secs(5),
                "{backend:?}: still accepting"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        for (id, mut stream) in slow {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut reply = [0u8; 8];
            stream
                .read_exact(&mut reply)
                .expect("the in-flight response arrives whole");
            assert_eq!(u64::from_le_bytes(reply), id, "{backend:?}");
        }
        for mut stream in idle {
            assert_closed(&mut stream, &format!("{backend:?}: idle connection"));
        }
        let report = server.join();
        assert_eq!(report.forced, 0, "{backend:?}: {report:?}");
        assert_eq!(report.completed, report.accepted, "{backend:?}: {report:?}");
        println!(
            "{backend:?}: refused new connections {refused_after:?} after shutdown; drain took {:?}; {report:?}",
            report.drain_time
        );
    }
}

#[test]
fn handlers_that_never_finish_are_forced_at_the_deadline() {
    let _serial = serial();
    for backend in backends() {
        let baseline = fd_count();
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .backend(backend)
            .shutdown_timeout(Duration::from_millis(200))
            .handle_signals(false)
            .serve(|mut stream, _, _stop| async move {
                // Ignores the token: reads forever.
                loop {
                    let (n, _) = stream.read(Vec::with_capacity(64)).await;
                    if !matches!(n, Ok(n) if n > 0) {
                        break;
                    }
                }
            })
            .expect("server");
        let addr = server.local_addr();
        let clients: Vec<StdStream> = (0..20)
            .map(|_| StdStream::connect(addr).expect("connect"))
            .collect();
        while server.metrics().active() < 20 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let began = Instant::now();
        server.shutdown();
        let report = server.join();
        let took = began.elapsed();
        assert_eq!(report.forced, 20, "{backend:?}: {report:?}");
        for mut client in clients {
            assert_closed(&mut client, &format!("{backend:?}: forced connection"));
        }
        // The server's descriptors close as its workers finish their last turn.
        wait_until("the forced connections' descriptors closing", || {
            let open = fd_count();
            if open <= baseline {
                Ok(())
            } else {
                Err(format!("{open} descriptors open, {baseline} before"))
            }
        });
        println!(
            "{backend:?}: 20 handlers forced {took:?} after the shutdown began (deadline 200 ms)"
        );
    }
}

#[test]
fn slowloris_connections_are_closed_at_the_timeouts_while_others_are_served() {
    let _serial = serial();
    for backend in backends() {
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .backend(backend)
            .first_byte_timeout(Duration::from_millis(300))
            .idle_timeout(Duration::from_millis(500))
            .handle_signals(false)
            .serve(|mut stream, _, _stop| async move {
                loop {
                    let (n, buf) = stream.read(Vec::with_capacity(1024)).await;
                    match n {
                        Ok(n) if n > 0 => {
                            if stream.write_all(buf).await.0.is_err() {
                                return;
                            }
                        }
                        _ => return, // end of stream, error, or a slow client timed out
                    }
                }
            })
            .expect("server");
        let addr = server.local_addr();
        let began = Instant::now();
        // 200 slow clients: half never send, half send one byte and then stall.
        let mut slow: Vec<StdStream> = (0..200)
            .map(|n| {
                let mut stream = StdStream::connect(addr).expect("connect");
                if n % 2 == 0 {
                    stream.write_all(b"x").expect("one byte");
                }
                stream
            })
            .collect();
        // A normal client keeps being served meanwhile.
        let mut normal = StdStream::connect(addr).expect("connect");
        normal
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        for round in 0..10u8 {
            normal.write_all(&[round]).expect("write");
            let mut reply = [0u8; 1];
            normal
                .read_exact(&mut reply)
                .expect("served while slow clients wait");
            assert_eq!(reply[0], round);
            std::thread::sleep(Duration::from_millis(40));
        }
        for (n, stream) in slow.iter_mut().enumerate() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            if n % 2 == 0 {
                let mut echo = [0u8; 1];
                stream
                    .read_exact(&mut echo)
                    .expect("the one byte is echoed");
            }
            assert_closed(stream, &format!("{backend:?}: slow client {n}"));
        }
        let closed_after = began.elapsed();
        assert!(
            server.metrics().timeouts() >= 200,
            "{backend:?}: {:?}",
            server.metrics()
        );
        server.shutdown();
        let report = server.join();
        assert_eq!(report.forced, 0, "{backend:?}: {report:?}");
        println!("{backend:?}: 200 slow clients closed within {closed_after:?}; {report:?}");
    }
}

/// Waits (bounded) until `ready` holds; the last state seen on failure.
fn wait_until(what: &str, mut ready: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ready() {
            Ok(()) => return,
            Err(state) if Instant::now() > deadline => panic!("{what}: still {state} after 10 s"),
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Waits (bounded) until the server has accepted `accepted` connections and the kernel's backlog
/// holds `queued`.
fn until_accepted_and_queued(what: &str, server: &ServerHandle, accepted: u64, queued: u64) {
    wait_until(what, || {
        let state = (
            server.metrics().accepted_total(),
            accept_queue(server.local_addr().port()),
        );
        if state == (accepted, Some(queued)) {
            Ok(())
        } else {
            Err(format!(
                "{state:?} (accepted, backlog); {:?}",
                server.metrics()
            ))
        }
    });
}

#[test]
fn connections_beyond_the_limit_wait_unaccepted_in_the_kernel_backlog() {
    let _serial = serial();
    for backend in backends() {
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .backend(backend)
            .workers(1)
            .max_connections(2)
            .handle_signals(false)
            .serve(request_reply(Duration::ZERO))
            .expect("server");
        let addr = server.local_addr();
        let mut clients: Vec<StdStream> = (0..5)
            .map(|_| StdStream::connect(addr).expect("connect"))
            .collect();
        // Two are served; the other three are complete connections the server never accepted.
        until_accepted_and_queued("two accepted, three in the backlog", &server, 2, 3);
        assert_eq!(server.metrics().active(), 2, "{backend:?}");
        // The first two are answered; the third waits.
        for (id, client) in clients.iter_mut().enumerate().take(2) {
            client
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            client
                .write_all(&(id as u64).to_le_bytes())
                .expect("request");
            let mut reply = [0u8; 8];
            client.read_exact(&mut reply).expect("reply");
            assert_eq!(u64::from_le_bytes(reply), id as u64, "{backend:?}");
        }
        assert_eq!(
            server.metrics().accepted_total(),
            2,
            "{backend:?}: accepted past the limit"
        );
        // One served client leaves: its permit admits exactly one more.
        drop(clients.remove(0));
        until_accepted_and_queued("a third accepted once a permit returned", &server, 3, 2);
        // Stopped with two still in the backlog: they were never accepted (the listener closes
        // at once; the served ones end at the drain).
        server.shutdown();
        let report = server.join();
        drop(clients);
        assert_eq!(report.accepted, 3, "{backend:?}: {report:?}");
        assert_eq!(report.permits_available, 2, "{backend:?}: {report:?}");
    }
}

/// Echoes what it reads; a read of exactly `?` is answered with this worker's accept counts
/// instead (connections accepts returned, multishot accepts armed, and cancelled), 24 bytes.
fn echo_or_stats(
    mut stream: weir_net::TcpStream,
    _: std::net::SocketAddr,
    _: weir_shutdown::Token,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async move {
        loop {
            let (read, buf) = stream.read(Vec::with_capacity(4096)).await;
            let reply = match read {
                Ok(n) if n > 0 && buf[..] == *b"?" => {
                    let stats = weir_net::io_stats();
                    [stats.accepts, stats.accept_arms, stats.accept_pauses]
                        .iter()
                        .flat_map(|count| count.to_le_bytes())
                        .collect()
                }
                Ok(n) if n > 0 => buf,
                _ => return,
            };
            if stream.write_all(reply).await.0.is_err() {
                return;
            }
        }
    })
}

/// The worker's accept counts, through `client`'s connection (see [`echo_or_stats`]).
fn accept_counts(client: &mut StdStream) -> [u64; 3] {
    client.write_all(b"?").expect("ask");
    let mut reply = [0u8; 24];
    client.read_exact(&mut reply).expect("counts");
    let count = |i: usize| u64::from_le_bytes(reply[i * 8..i * 8 + 8].try_into().expect("8"));
    [count(0), count(1), count(2)]
}

/// A client connection whose reads give up after 20 s (a test failure, not a hang).
fn connect_client(addr: std::net::SocketAddr) -> StdStream {
    let client = StdStream::connect(addr).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    client
}

/// Sends a patterned payload (no byte is `?`) and checks it comes back byte for byte.
fn echo_exactly(client: &mut StdStream, seed: usize) {
    let payload: Vec<u8> = (0..10_000)
        .map(|i| crate::support::pattern(i + seed) | 0x80)
        .collect();
    client.write_all(&payload).expect("payload");
    let mut echoed = vec![0u8; payload.len()];
    client.read_exact(&mut echoed).expect("echo");
    assert!(echoed == payload, "the echo of client {seed} differs");
}

#[test]
fn multishot_accepts_stop_at_the_limit_and_resume_when_a_permit_returns() {
    const LIMIT: usize = 8;
    const BEYOND: usize = 3;
    let _serial = serial();
    for backend in backends() {
        // A small backlog, so the limit is above it: the multishot accept serves the first
        // connections, single-shot accepts the last permits, and none is taken beyond them.
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .backend(backend)
            .workers(1)
            .max_connections(LIMIT)
            .listen_backlog(4)
            .handle_signals(false)
            .serve(echo_or_stats)
            .expect("server");
        let addr = server.local_addr();
        let connect = || connect_client(addr);
        // One at a time, each accepted before the next: a burst beyond the small backlog would
        // overflow it, and a connection whose handshake the kernel dropped comes back only at
        // its SYN-ACK retransmission, seconds later on a slow (Valgrind) run.
        let mut served = Vec::new();
        for n in 1..=LIMIT {
            served.push(connect());
            until_accepted_and_queued("the limit's worth accepted", &server, n as u64, 0);
        }
        let mut waiting: Vec<StdStream> = (0..BEYOND).map(|_| connect()).collect();
        until_accepted_and_queued(
            "the rest in the kernel's backlog",
            &server,
            LIMIT as u64,
            BEYOND as u64,
        );
        // While the limit is full, the worker has taken exactly the limit from the kernel (the
        // backlog still holds the rest: counted by the kernel), and on the ring it got them
        // through a multishot accept it then cancelled.
        let [accepts, arms, pauses] = accept_counts(&mut served[0]);
        assert_eq!(accepts, LIMIT as u64, "{backend:?}");
        assert_eq!(
            accept_queue(addr.port()),
            Some(BEYOND as u64),
            "{backend:?}"
        );
        if backend == Backend::Uring {
            assert!(
                arms >= 1 && pauses >= 1,
                "{backend:?}: {arms} arms, {pauses} pauses"
            );
        }
        // One served client finishes: exactly one more is taken from the kernel.
        echo_exactly(&mut served[LIMIT - 1], LIMIT - 1);
        drop(served.pop());
        until_accepted_and_queued(
            "one more accepted once a permit returned",
            &server,
            LIMIT as u64 + 1,
            BEYOND as u64 - 1,
        );
        assert_eq!(
            accept_counts(&mut served[0])[0],
            LIMIT as u64 + 1,
            "{backend:?}"
        );
        // The rest are served, byte for byte, as permits return.
        for (i, client) in served.iter_mut().enumerate() {
            echo_exactly(client, i);
        }
        drop(served);
        for (i, client) in waiting.iter_mut().enumerate() {
            echo_exactly(client, LIMIT + i);
        }
        drop(waiting);
        server.shutdown();
        let report = server.join();
        assert_eq!(
            report.accepted,
            (LIMIT + BEYOND) as u64,
            "{backend:?}: {report:?}"
        );
        assert_eq!(report.permits_available, LIMIT, "{backend:?}: {report:?}");
    }
}

/// The shutdown begins while a multishot accept holds connections it took from the kernel and
/// no accept returned yet (on the ring: the worker was blocked while they arrived, and the
/// handler that stops the server runs in the same turn as their accept completions). They are
/// served, their requests answered whole; on the reactor, which takes none ahead, each is either
/// served the same way or refused with the kernel's backlog, never accepted and then dropped.
#[test]
fn connections_a_multishot_accept_took_before_the_shutdown_are_served() {
    const QUEUED: usize = 8;
    let _serial = serial();
    for backend in backends() {
        let handle: Arc<std::sync::Mutex<Option<ServerHandle>>> = Arc::default();
        let (blocked_tx, blocked_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let blocked = Arc::new(std::sync::Mutex::new((blocked_tx, release_rx)));
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .backend(backend)
            .workers(1)
            .handle_signals(false)
            .serve({
                let handle = handle.clone();
                move |mut stream, _, stop| {
                    let (handle, blocked) = (handle.clone(), blocked.clone());
                    async move {
                        loop {
                            let read = stream.read(Vec::with_capacity(64));
                            let (result, buf) = match stop.run_until_cancelled(read).await {
                                Some(done) => done,
                                None => {
                                    stream
                                        .read_timeout(Vec::with_capacity(64), Duration::ZERO)
                                        .await
                                }
                            };
                            if !matches!(result, Ok(n) if n > 0) {
                                return;
                            }
                            match &buf[..] {
                                // Blocks the worker's thread (and so its ring) until released.
                                b"block" => {
                                    let blocked = blocked.lock().expect("lock");
                                    blocked.0.send(()).expect("blocked");
                                    blocked.1.recv().expect("release");
                                }
                                b"stop" => {
                                    if let Some(server) = &*handle.lock().expect("lock") {
                                        server.shutdown();
                                    }
                                }
                                _ => {}
                            }
                            if stream.write_all(buf).await.0.is_err() {
                                return;
                            }
                        }
                    }
                }
            })
            .expect("server");
        let addr = server.local_addr();
        *handle.lock().expect("lock") = Some(server);
        let connect = || connect_client(addr);
        let echo = |client: &mut StdStream, what: &[u8]| -> std::io::Result<Vec<u8>> {
            client.write_all(what)?;
            let mut reply = vec![0u8; what.len()];
            client.read_exact(&mut reply)?;
            Ok(reply)
        };
        let (mut blocker, mut stopper) = (connect(), connect());
        for client in [&mut blocker, &mut stopper] {
            assert_eq!(
                echo(client, b"ping").expect("served"),
                b"ping",
                "{backend:?}"
            );
        }
        blocker.write_all(b"block").expect("block");
        blocked_rx.recv().expect("the worker blocks");
        // While the worker is blocked: the stop request, then connections with a request each,
        // all waiting in the kernel (its accept queue holds the connections).
        stopper.write_all(b"stop").expect("stop");
        let mut queued: Vec<StdStream> = (0..QUEUED).map(|_| connect()).collect();
        for (n, client) in queued.iter_mut().enumerate() {
            client
                .write_all(format!("request {n}").as_bytes())
                .expect("request");
        }
        crate::support::wait_for_accept_queue(addr.port(), QUEUED as u64);
        release_tx.send(()).expect("release");
        let mut reply = [0u8; 4];
        stopper.read_exact(&mut reply).expect("the stop answered");
        let mut echoed = 0;
        for (n, client) in queued.iter_mut().enumerate() {
            let request = format!("request {n}");
            let mut reply = vec![0u8; request.len()];
            match client.read_exact(&mut reply) {
                Ok(()) => {
                    assert_eq!(reply, request.as_bytes(), "{backend:?}");
                    echoed += 1;
                }
                Err(error) if backend == Backend::Uring => {
                    panic!("{backend:?}: connection {n}, taken before the shutdown: {error}")
                }
                // The reactor had not taken it from the kernel: refused with the backlog.
                Err(error) => assert!(
                    matches!(
                        error.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof
                    ),
                    "{backend:?}: connection {n}: {error}"
                ),
            }
        }
        let mut reply = [0u8; 5];
        blocker.read_exact(&mut reply).expect("the block answered");
        drop((blocker, stopper, queued));
        let server = handle.lock().expect("lock").take().expect("server");
        let report = server.join();
        assert_eq!(report.accepted, 2 + echoed, "{backend:?}: {report:?}");
        assert_eq!(report.completed, report.accepted, "{backend:?}: {report:?}");
        if backend == Backend::Uring {
            // The path ran: the connections came from the multishot accept's queue at the stop.
            assert_eq!(
                report.taken_at_stop, QUEUED as u64,
                "{backend:?}: {report:?}"
            );
        }
        println!("{backend:?}: {echoed} of {QUEUED} queued connections served: {report:?}");
    }
}
