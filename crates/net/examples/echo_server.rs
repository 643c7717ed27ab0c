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

#[path = "support/args.rs"]
mod args;
#[path = "support/weir_log.rs"]
mod weir_log;
use args::Args;

fn main() {
    weir_log::install(weir_log::to_stderr);
    let mut args = Args::parse(
        "echo_server",
        "[--addr HOST:PORT] [--backend uring|poll|auto] [--workers N] [--limit N] \
         [--deadline-ms MS] [--hold-ms MS] [--max-fds N]",
    );
    let addr: String = args.get("--addr", "127.0.0.1:7000".into());
    let backend: Backend = args.get("--backend", Backend::Auto);
    let workers: usize = args.get("--workers", 1);
    let limit: usize = args.get("--limit", 10_000);
    let deadline = Duration::from_millis(args.get("--deadline-ms", 5_000));
    // Holds each request up to this long before answering (a slow handler: the delay is the
    // peer's port modulo hold + 1, so it varies from connection to connection).
    let hold_ms: u64 = args.get("--hold-ms", 0);
    // Lowers RLIMIT_NOFILE before the server starts to N descriptors beyond those open now, the
    // server's own included (to exercise the EMFILE backoff). Before, not after: io_uring reads
    // the limit when an accept is submitted, so a multishot accept armed earlier keeps the old
    // one.
    let max_fds: Option<u64> = args.get_opt("--max-fds");
    args.finish();
    let fd_limited = max_fds.map(|limit| {
        // Descriptors are numbered lowest free first and the limit bounds the number: the cap
        // is where `limit` free numbers lie below it (inherited descriptors leave holes).
        let open: Vec<u64> = std::fs::read_dir("/proc/self/fd")
            .map(|dir| {
                dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let cap = (0..)
            .filter(|fd| !open.contains(fd))
            .nth(usize::try_from(limit).unwrap_or(usize::MAX))
            .unwrap_or(u64::MAX);
        let rlimit = libc::rlimit {
            rlim_cur: cap,
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
    });
    let server = Server::builder()
        .bind(addr)
        .backend(backend)
        .workers(workers)
        .max_connections(limit)
        .shutdown_timeout(deadline)
        .serve(move |mut stream, peer, stop| async move {
            let hold = Duration::from_millis(u64::from(peer.port()) % (hold_ms + 1));
            loop {
                // The read sleeps until data, end of stream or the shutdown (reads are
                // cancel-safe). Once the shutdown began, a request that had already arrived is
                // still served (a zero limit takes it without waiting), and a connection with
                // nothing pending is closed.
                let read = stream.read(Vec::with_capacity(16 * 1024));
                let (result, buf) = match stop.run_until_cancelled(read).await {
                    Some(done) => done,
                    None => {
                        let buf = Vec::with_capacity(16 * 1024);
                        stream.read_timeout(buf, Duration::ZERO).await
                    }
                };
                if !matches!(result, Ok(n) if n > 0) {
                    return;
                }
                time::sleep(hold).await; // finish the request even during a shutdown
                if stream.write_all(buf).await.0.is_err() {
                    return;
                }
            }
        });
    let server = args::or_exit("echo_server", server);
    println!("{}", server.local_addr());
    if fd_limited.is_some() {
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
