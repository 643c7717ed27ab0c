//! The load generator against a tiny server in this process: it must send exactly the
//! requests it reports, and count every reply.

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
