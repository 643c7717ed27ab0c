//! A TCP echo server with everything wired: admission limit, worker threads, graceful shutdown
//! on SIGTERM/SIGINT with a deadline, and the report printed on exit.
//!
//! ```text
//! cargo run -p weir-net --example echo_server -- \
//!     --addr 127.0.0.1:7000 --backend auto --workers 2 --limit 10000 --deadline-ms 5000
//! ```
//!
//! The first line on stdout is the bound address; the last is the shutdown report.

use std::time::Duration;

use weir_net::server::Server;
use weir_net::{Backend, time};

fn main() {
    let mut addr = "127.0.0.1:7000".to_string();
    let mut backend = Backend::Auto;
    let mut workers = 1;
    let mut limit = 10_000;
    let mut deadline = Duration::from_secs(5);
    let mut max_fds: Option<u64> = None;
    let mut hold_ms: u64 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_default();
        match flag.as_str() {
            "--addr" => addr = value,
            "--backend" => backend = value.parse().unwrap_or(Backend::Auto),
            "--workers" => workers = value.parse().unwrap_or(1),
            "--limit" => limit = value.parse().unwrap_or(10_000),
            "--deadline-ms" => deadline = Duration::from_millis(value.parse().unwrap_or(5_000)),
            // Holds each request up to this long before answering (a slow handler: the delay is
            // the peer's port modulo hold + 1, so it varies from connection to connection).
            "--hold-ms" => hold_ms = value.parse().unwrap_or(0),
            // Lowers RLIMIT_NOFILE once started (to exercise the EMFILE backoff).
            "--max-fds" => max_fds = value.parse().ok(),
            other => {
                eprintln!("unknown flag {other}");
                std::process::exit(2);
            }
        }
    }
    let server = Server::builder()
        .bind(addr)
        .backend(backend)
        .workers(workers)
        .max_connections(limit)
        .shutdown_timeout(deadline)
        .serve(move |mut stream, peer, stop| async move {
            let hold = Duration::from_millis(u64::from(peer.port()) % (hold_ms + 1));
            loop {
                // Wake up now and then to notice the shutdown while idle; reads are cancel-safe.
                let read = time::timeout(
                    Duration::from_millis(25),
                    stream.read(Vec::with_capacity(16 * 1024)),
                );
                match read.await {
                    Ok((Ok(n), buf)) if n > 0 => {
                        time::sleep(hold).await; // finish the request even during a shutdown
                        if stream.write_all(buf).await.0.is_err() {
                            return;
                        }
                    }
                    Ok(_) => return,
                    Err(_) if stop.is_cancelled() => return,
                    Err(_) => {}
                }
            }
        });
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            eprintln!("echo_server: {error}");
            std::process::exit(1);
        }
    };
    println!("{}", server.local_addr());
    if let Some(limit) = max_fds {
        let open = std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count() as u64)
            .unwrap_or(0);
        let rlimit = libc::rlimit {
            rlim_cur: open + limit,
            rlim_max: libc::RLIM_INFINITY,
        };
        let mut hard = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid out-pointer.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) };
        let rlimit = libc::rlimit {
            rlim_max: hard.rlim_max,
            ..rlimit
        };
        // SAFETY: a valid rlimit value.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) } != 0 {
            eprintln!("echo_server: setrlimit failed");
        }
        println!("fd limit set");
    }
    let report = server.join();
    println!(
        "report: accepted {} completed {} forced {} queued {} backoffs {} errors {:?} drain {:?}",
        report.accepted,
        report.completed,
        report.forced,
        report.queued,
        report.backoffs,
        report.errors,
        report.drain_time
    );
}
