//! A real SIGTERM to the `echo_server` example in a child process: in-flight echoes complete,
//! idle connections close, the process exits with a report of zero forced connections.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::{assert_closed, backends, flag, start_example, terminate};

/// The scenario: 200 slow in-flight requests (held 0-500 ms each) and 100 idle
/// keep-alive connections, then a real SIGTERM.
#[test]
fn sigterm_drains_and_exits_with_a_report() {
    for backend in backends() {
        let name = flag(backend);
        let (mut child, mut stdout, addr) = start_example(
            "echo_server",
            &[
                "--backend",
                name,
                "--workers",
                "2",
                "--deadline-ms",
                "5000",
                "--hold-ms",
                "500",
            ],
        );
        let mut idle: Vec<TcpStream> = (0..100)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let mut busy: Vec<TcpStream> = (0..200)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        for (n, stream) in busy.iter_mut().enumerate() {
            stream
                .write_all(format!("request {n:04}").as_bytes())
                .expect("write");
        }
        // Wait until the server accepted them all (connections still in the backlog when the
        // listener closes would be refused, which is the point of closing it).
        crate::support::wait_for_accept_queue(addr.port(), 0);
        // SAFETY: kill(2) with SIGTERM to our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        let signalled = std::time::Instant::now();
        // New connections are refused once the listeners close.
        let refused_after = loop {
            if TcpStream::connect(addr).is_err() {
                break signalled.elapsed();
            }
            assert!(
                signalled.elapsed() < Duration::from_secs(5),
                "{name}: still accepting"
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        for (n, stream) in busy.iter_mut().enumerate() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut reply = [0u8; 12];
            stream
                .read_exact(&mut reply)
                .expect("the in-flight response arrives whole");
            assert_eq!(&reply, format!("request {n:04}").as_bytes(), "{name}");
        }
        for stream in idle.iter_mut().chain(busy.iter_mut()) {
            assert_closed(stream, &format!("{name}: a connection the drain closes"));
        }
        let status = child.wait().expect("exit");
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).expect("report");
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .expect("stderr")
            .read_to_string(&mut stderr)
            .expect("stderr");
        assert!(status.success(), "{name}: exit {status}; stderr: {stderr}");
        if cfg!(feature = "tracing") {
            // The example prints Weir's tracing events: the signal and the shutdown's progress.
            for line in [
                "weir server: SIGTERM received, shutting down",
                "weir server: shutting down (SIGTERM), draining",
                "weir server: stopped after",
            ] {
                assert!(stderr.contains(line), "{name}: no {line:?} in {stderr}");
            }
        } else {
            eprintln!("{name}: tracing events not checked: built without the `tracing` feature");
        }
        // Probe connections that got in before the listener closed are accepted (and complete)
        // too, so the count is at least 300.
        let field = |key: &str| -> u64 {
            rest.split_whitespace()
                .skip_while(|w| *w != key)
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name}: no {key} in the report: {rest}"))
        };
        assert!(field("accepted") >= 300, "{name}: {rest}");
        assert_eq!(field("completed"), field("accepted"), "{name}: {rest}");
        assert_eq!(field("forced"), 0, "{name}: {rest}");
        println!(
            "{name}: refused new connections {refused_after:?} after SIGTERM; {}",
            rest.trim()
        );
    }
}

/// CPU time (user + system) of process `pid` in clock ticks, from `/proc/<pid>/stat`.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
    let stime: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    utime + stime
}

#[test]
fn out_of_descriptors_the_server_backs_off_without_spinning_and_recovers() {
    for backend in backends() {
        let name = flag(backend);
        let (child, mut stdout, addr) = start_example(
            "echo_server",
            &["--backend", name, "--max-fds", "8", "--deadline-ms", "1000"],
        );
        let mut line = String::new();
        stdout.read_line(&mut line).expect("limit line");
        // Two connections fit under the limit; they keep being served throughout.
        let mut served: Vec<TcpStream> = (0..2)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        for stream in &mut served {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            stream.write_all(b"ping").expect("write");
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).expect("echo");
        }
        // More than the descriptors left: accepts fail with EMFILE and the server backs off.
        let waiting: Vec<TcpStream> = (0..10)
            .map(|_| TcpStream::connect(addr).expect("connect (backlog)"))
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let before = cpu_ticks(child.id());
        std::thread::sleep(Duration::from_millis(1_000));
        let spent = cpu_ticks(child.id()) - before;
        // A spinning accept loop would burn ~100 ticks (a whole core) in this second.
        assert!(
            spent < 20,
            "{name}: the server spun while out of descriptors ({spent} ticks in 1 s)"
        );
        for stream in &mut served {
            stream.write_all(b"pong").expect("write while exhausted");
            let mut reply = [0u8; 4];
            stream
                .read_exact(&mut reply)
                .expect("existing connections still echo");
            assert_eq!(&reply, b"pong");
        }
        println!("{name}: exhausted without spinning; freeing descriptors");
        // Free descriptors: the waiting clients get in within the backoff window.
        drop(served);
        drop(waiting);
        let mut late = TcpStream::connect(addr).expect("connect");
        late.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        late.write_all(b"late").expect("write");
        let mut reply = [0u8; 4];
        late.read_exact(&mut reply)
            .expect("accepted again once descriptors are free");
        drop(late);
        println!("{name}: recovered; stopping the server");
        // SIGTERM, then the report; `terminate` asserts a successful exit.
        let rest = terminate(child, stdout);
        assert!(
            rest.contains("EMFILE"),
            "{name}: no EMFILE in the report: {rest}"
        );
        println!(
            "{name}: {spent} CPU ticks in 1 s while exhausted; {}",
            rest.trim()
        );
    }
}
