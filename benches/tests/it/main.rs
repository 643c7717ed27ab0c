//! The load generator against a tiny server in this process: it must send exactly the
//! requests it reports, and count every reply. Every B11 proxy in front of a tiny echo server
//! here: each stream must come back whole, its end of stream included, and the proxy exit.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A keep-alive HTTP/1.1 server on one thread per connection that counts the requests it
/// answers; each response goes out in two writes (head, then body), so the client sees
/// responses split across reads.
fn tiny_http_server(conns: usize) -> (u16, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let answered = Arc::new(AtomicU64::new(0));
    let count = answered.clone();
    let server = std::thread::spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            let count = count.clone();
            handlers.push(std::thread::spawn(move || {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        count.fetch_add(1, Ordering::Relaxed);
                        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n";
                        if stream.write_all(head).is_err()
                            || stream.write_all(b"Hello, World!").is_err()
                        {
                            return;
                        }
                    }
                }
            }));
        }
        for handler in handlers {
            let _ = handler.join();
        }
    });
    (port, answered, server)
}

#[test]
fn the_http_load_sends_exactly_the_requests_it_counts() {
    let (conns, warmup, requests) = (5, 37, 1_003);
    let (port, answered, server) = tiny_http_server(conns);
    let alloc_file = std::env::temp_dir().join(format!("weir-bench-it-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_bench-load"))
        .env("WEIR_BENCH_MODE", "http")
        .env("WEIR_BENCH_NO_PERF", "1")
        .args([
            port.to_string(),
            conns.to_string(),
            "13".to_string(),
            warmup.to_string(),
            requests.to_string(),
            std::process::id().to_string(),
            alloc_file.display().to_string(),
        ])
        .output()
        .expect("run bench-load");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.join().expect("server");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("requests={requests} ")),
        "{stdout}"
    );
    assert_eq!(answered.load(Ordering::Relaxed), warmup + requests);
}

/// An echo server on one thread per connection that passes each connection's end of stream
/// back as its own (read to the end, echo all, then close); it returns how many bytes it echoed.
fn tiny_echo_server(conns: usize) -> (u16, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let handlers: Vec<_> = (0..conns)
            .map(|_| {
                let (mut stream, _) = listener.accept().expect("accept");
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().expect("clone");
                    std::io::copy(&mut reader, &mut stream).expect("echo")
                })
            })
            .collect();
        handlers.into_iter().map(|h| h.join().expect("echo")).sum()
    });
    (port, server)
}

/// `len` bytes of a pattern that tells one connection's stream from another's.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A child process, killed and reaped if it is still running when this is dropped (a failed
/// assertion leaves no proxy behind).
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts `bench-server <mode>` as a proxy to `upstream`; its child and the port it prints.
fn start_proxy(mode: &str, conns: usize, upstream: u16, copy: bool) -> (Reaped, u16) {
    let alloc_file = std::env::temp_dir().join(format!(
        "weir-bench-it-proxy-{}-{mode}-{copy}",
        std::process::id()
    ));
    let mut command = Command::new(env!("CARGO_BIN_EXE_bench-server"));
    command
        .env("WEIR_BENCH_MODE", "proxy")
        .env("WEIR_BENCH_UPSTREAM", format!("127.0.0.1:{upstream}"))
        .args([mode, &conns.to_string(), &alloc_file.display().to_string()])
        .stdout(std::process::Stdio::piped());
    if copy {
        command.env("WEIR_BENCH_PROXY_COPY", "1");
    }
    let mut child = Reaped(command.spawn().expect("start bench-server"));
    let mut line = String::new();
    let stdout = child.0.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("port");
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{mode}: no port ({line:?})"));
    (child, port)
}

/// Waits for `child` to exit, up to 30 s (then fails; the guard kills it).
fn exits_cleanly(mut child: Reaped, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            assert!(status.success(), "{what} exited with {status}");
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("{what} did not exit after its connections closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn every_proxy_passes_each_stream_whole_both_ways_and_its_end_then_exits() {
    const CONNS: usize = 3;
    const BYTES: usize = 700_000;
    let modes = [
        ("weir-uring", false),
        ("weir-uring", true),
        ("weir-poll", false),
        ("weir-poll", true),
        ("tokio-ct", false),
        ("tokio-mt", false),
        ("monoio", false),
        ("compio", false),
        ("epoll", false),
    ];
    for (mode, copy) in modes {
        let what = format!("{mode} proxy{}", if copy { " (copy loop)" } else { "" });
        let (upstream, echo) = tiny_echo_server(CONNS);
        let (proxy, port) = start_proxy(mode, CONNS, upstream, copy);
        let clients: Vec<_> = (0..CONNS)
            .map(|c| {
                let sent = pattern(c as u64 + 1, BYTES);
                let stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
                stream
                    .set_read_timeout(Some(std::time::Duration::from_secs(30)))
                    .expect("timeout");
                let mut writer = stream.try_clone().expect("clone");
                let to_send = sent.clone();
                // Writes in uneven pieces from a thread of its own while this one reads, then
                // half-closes: the echo's end can only come back through the proxy's.
                let feeder = std::thread::spawn(move || {
                    for piece in to_send.chunks(1 + c * 4_093 + 17) {
                        writer.write_all(piece).expect("write");
                    }
                    writer
                        .shutdown(std::net::Shutdown::Write)
                        .expect("half-close");
                });
                (stream, sent, feeder)
            })
            .collect();
        for (mut stream, sent, feeder) in clients {
            let mut echoed = Vec::new();
            stream
                .read_to_end(&mut echoed)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            feeder.join().expect("feeder");
            assert!(
                echoed == sent,
                "{what}: {} of {BYTES} bytes back",
                echoed.len()
            );
        }
        assert_eq!(echo.join().expect("echo"), (CONNS * BYTES) as u64, "{what}");
        exits_cleanly(proxy, &what);
    }
}

#[test]
fn the_raw_io_uring_floor_refuses_the_proxy_mode_and_says_why() {
    let output = Command::new(env!("CARGO_BIN_EXE_bench-server"))
        .env("WEIR_BENCH_MODE", "proxy")
        .env("WEIR_BENCH_UPSTREAM", "127.0.0.1:9")
        .args(["uring-raw", "1", "/dev/null"])
        .output()
        .expect("run bench-server");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("has no proxy"), "{stderr}");
    let output = Command::new(env!("CARGO_BIN_EXE_bench-server"))
        .env("WEIR_BENCH_MODE", "proxy")
        .args(["epoll", "1", "/dev/null"])
        .output()
        .expect("run bench-server");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("WEIR_BENCH_UPSTREAM"));
}
