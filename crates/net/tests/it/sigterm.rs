//! A real SIGTERM to the `echo_server` example in a child process: in-flight echoes complete,
//! idle connections close, the process exits with a report of zero forced connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::backends;

fn example_binary() -> std::path::PathBuf {
    // `cargo test` builds the examples next to the test binaries: target/<profile>/examples.
    let exe = std::env::current_exe().expect("own path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("echo_server"))
        .expect("target layout")
}

#[test]
fn sigterm_drains_and_exits_with_a_report() {
    let binary = example_binary();
    assert!(
        binary.exists(),
        "the echo_server example was not built at {}",
        binary.display()
    );
    for backend in backends() {
        let name = if backend == weir_net::Backend::Uring {
            "uring"
        } else {
            "poll"
        };
        let mut child = Command::new(&binary)
            .args([
                "--addr",
                "127.0.0.1:0",
                "--backend",
                name,
                "--workers",
                "2",
                "--deadline-ms",
                "3000",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start echo_server");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut addr = String::new();
        stdout.read_line(&mut addr).expect("address line");
        let addr: std::net::SocketAddr = addr.trim().parse().expect("address");
        let mut idle: Vec<TcpStream> = (0..20)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        let mut busy: Vec<TcpStream> = (0..20)
            .map(|_| TcpStream::connect(addr).expect("connect"))
            .collect();
        for (n, stream) in busy.iter_mut().enumerate() {
            stream
                .write_all(format!("request {n:04}").as_bytes())
                .expect("write");
        }
        for (n, stream) in busy.iter_mut().enumerate() {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut reply = [0u8; 12];
            stream
                .read_exact(&mut reply)
                .expect("echo before the signal");
            assert_eq!(&reply, format!("request {n:04}").as_bytes());
        }
        // SAFETY: kill(2) with SIGTERM to our own child process.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
        for stream in idle.iter_mut().chain(busy.iter_mut()) {
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut byte = [0u8; 1];
            assert_eq!(
                stream.read(&mut byte).unwrap_or(0),
                0,
                "{name}: connection closed by the drain"
            );
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
        assert!(stderr.contains("SIGTERM received"), "{name}: {stderr}");
        assert!(
            rest.contains("accepted 40 completed 40 forced 0"),
            "{name}: {rest}"
        );
        println!("{name}: {}", rest.trim());
    }
}
