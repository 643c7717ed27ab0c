//! `Server`'s signal handling: whichever thread the kernel hands SIGTERM to, the process drains
//! instead of dying; a second signal during the drain forces it; one signal drains every server
//! of the process; the default disposition comes back after the last server; and a shutdown
//! future works instead of signals.
//!
//! Signals are process-wide, so each signal scenario runs in a child: this test binary re-run
//! on that one test, which checks that the test really ran there and printed its findings.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

use weir_net::server::{Server, ServerHandle};
use weir_shutdown::Token;

const CHILD: &str = "WEIR_TEST_SIGNAL_CHILD";

/// In the child: `true` (run the scenario). In the parent: runs the child on `test` (which must
/// pass that one test, within two minutes) and checks it printed `expect` on stderr; `false`.
fn in_child(test: &str, expect: &str) -> bool {
    if std::env::var(CHILD).as_deref() == Ok(test) {
        return true;
    }
    let _serial = crate::support::serial();
    let output = crate::support::run_child_test(&format!("signals::{test}"), &[(CHILD, test)]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(expect), "{test}: no {expect:?} in {stderr}");
    false
}

fn signal_self(signal: libc::c_int) {
    let me = i32::try_from(std::process::id()).expect("pid");
    // SAFETY: signalling this process.
    assert_eq!(unsafe { libc::kill(me, signal) }, 0);
}

/// SIGTERM's handler address now (`SIG_DFL` when nothing is installed).
fn sigterm_disposition() -> libc::sighandler_t {
    // SAFETY: all-zero is a valid out-value; a null new action only queries.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer.
    let rc = unsafe { libc::sigaction(libc::SIGTERM, std::ptr::null(), &mut current) };
    assert_eq!(rc, 0);
    current.sa_sigaction
}

/// A server on an ephemeral port, signals handled, whose handlers report `started` and (once
/// the shutdown starts) `draining`, then hold the connection until forced.
fn holding_server(events: mpsc::Sender<&'static str>, deadline: Duration) -> ServerHandle {
    Server::builder()
        .bind("127.0.0.1:0")
        .shutdown_timeout(deadline)
        .serve(move |_stream, _peer, stop| {
            let events = events.clone();
            async move {
                let _ = events.send("started");
                stop.cancelled().await;
                let _ = events.send("draining");
                std::future::pending::<()>().await;
            }
        })
        .expect("server")
}

#[test]
fn a_thread_started_before_the_server_cannot_die_of_sigterm() {
    if !in_child(
        "a_thread_started_before_the_server_cannot_die_of_sigterm",
        "DRAINED",
    ) {
        return;
    }
    // A thread from before the server, with nothing blocked: the kernel may pick it (or the
    // test's own thread) for a process-directed SIGTERM.
    let (_keep, parked) = mpsc::channel::<()>();
    std::thread::spawn(move || parked.recv());
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .shutdown_timeout(Duration::from_secs(10))
        .serve(|_stream, _peer, _stop| async {})
        .expect("server");
    assert_ne!(sigterm_disposition(), libc::SIG_DFL, "no handler installed");
    signal_self(libc::SIGTERM);
    let report = server.join();
    assert_eq!(sigterm_disposition(), libc::SIG_DFL, "not restored");
    eprintln!("DRAINED forced {}", report.forced);
}

#[test]
fn a_second_signal_during_the_drain_forces_it() {
    if !in_child("a_second_signal_during_the_drain_forces_it", "FORCED 1") {
        return;
    }
    let (events, seen) = mpsc::channel();
    // A deadline far beyond the child's two-minute watchdog: only the second signal ends it.
    let server = holding_server(events, Duration::from_secs(3600));
    let mut client = std::net::TcpStream::connect(server.local_addr()).expect("connect");
    let wait = |what| {
        let got = seen.recv_timeout(Duration::from_secs(20)).expect(what);
        assert_eq!(got, what);
    };
    wait("started");
    signal_self(libc::SIGTERM);
    wait("draining");
    signal_self(libc::SIGINT);
    let report = server.join();
    // The forced handler's connection is closed: a real end of stream.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("end of stream");
    eprintln!("FORCED {}", report.forced);
}

#[test]
fn one_signal_drains_every_server_of_the_process() {
    if !in_child(
        "one_signal_drains_every_server_of_the_process",
        "BOTH DRAINED",
    ) {
        return;
    }
    let (events, seen) = mpsc::channel();
    let first = holding_server(events.clone(), Duration::from_secs(3600));
    let second = holding_server(events, Duration::from_secs(3600));
    let _clients: Vec<_> = [first.local_addr(), second.local_addr()]
        .into_iter()
        .map(|addr| std::net::TcpStream::connect(addr).expect("connect"))
        .collect();
    for _ in 0..2 {
        assert_eq!(seen.recv_timeout(Duration::from_secs(20)), Ok("started"));
    }
    signal_self(libc::SIGTERM);
    // Both servers start draining on the one signal...
    for _ in 0..2 {
        assert_eq!(seen.recv_timeout(Duration::from_secs(20)), Ok("draining"));
    }
    // ...and a second forces both.
    signal_self(libc::SIGTERM);
    let (a, b) = (first.join(), second.join());
    assert_eq!((a.forced, b.forced), (1, 1));
    eprintln!("BOTH DRAINED");
}

#[test]
fn a_shutdown_future_starts_the_drain_instead_of_signals() {
    let _serial = crate::support::serial();
    let before = sigterm_disposition();
    let trigger = Token::new();
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .shutdown_on(trigger.clone().cancelled_owned())
        .serve(|mut stream, _peer, stop| async move {
            // Echo until the shutdown, then say goodbye.
            while let Some((Ok(n), buf)) = stop
                .run_until_cancelled(stream.read(Vec::with_capacity(64)))
                .await
            {
                if n == 0 || stream.write_all(buf).await.0.is_err() {
                    return;
                }
            }
            let _ = stream.write_all(b"bye".to_vec()).await;
        })
        .expect("server");
    // No signal handler for a server with a shutdown future.
    assert_eq!(sigterm_disposition(), before);
    let mut client = std::net::TcpStream::connect(server.local_addr()).expect("connect");
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    client.write_all(b"hi").expect("write");
    let mut echo = [0; 2];
    client.read_exact(&mut echo).expect("echo");
    trigger.cancel();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).expect("end of stream");
    assert_eq!(rest, b"bye");
    let report = server.join();
    assert_eq!((report.completed, report.forced), (1, 0));
}
