//! A TCP proxy: each accepted connection gets its own connection to the upstream, and bytes flow
//! both ways with `splice_to` (socket → pipe → socket in the kernel, never through user space).
//! Each direction passes its end of stream on as a half-close, so a client that shuts down its
//! writing side still reads the upstream's answer to the end. On SIGTERM/SIGINT the server stops
//! accepting and lets open connections finish (up to the deadline).
//!
//! ```text
//! cargo run -p weir-net --example proxy -- \
//!     --listen 127.0.0.1:7100 --upstream 127.0.0.1:7000 --backend auto --deadline-ms 5000
//! ```
//!
//! The first line on stdout is the bound address; the last is the shutdown report.

use std::net::SocketAddr;
use std::time::Duration;

use weir_net::server::Server;
use weir_net::{Backend, OwnedReadHalf, OwnedWriteHalf, TcpStream};

#[path = "support/args.rs"]
mod args;
#[path = "support/weir_log.rs"]
mod weir_log;
use args::Args;

/// The most one splice moves.
const CHUNK: usize = 64 * 1024;

/// Copies `from` to `to` until `from` ends, then half-closes `to` (by dropping it). Returns the
/// bytes copied.
async fn pipe_through(mut from: OwnedReadHalf, mut to: OwnedWriteHalf) -> std::io::Result<u64> {
    let mut total = 0;
    loop {
        match from.splice_to(&mut to, CHUNK).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}

/// Proxies one client connection to `upstream`.
async fn proxy(client: TcpStream, upstream: SocketAddr) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    let (client_read, client_write) = client.into_split().await?;
    let (server_read, server_write) = server.into_split().await?;
    let upward = weir_net::spawn(pipe_through(client_read, server_write));
    let downward = pipe_through(server_read, client_write).await;
    let upward = upward
        .await
        .map_err(|_| std::io::Error::other("the upward copy panicked"))?;
    upward.and(downward).map(drop)
}

fn main() {
    weir_log::install(weir_log::to_stderr);
    let mut args = Args::parse(
        "proxy",
        "[--listen HOST:PORT] --upstream HOST:PORT [--backend uring|poll|auto] [--workers N] \
         [--deadline-ms MS]",
    );
    // `--addr` is the other examples' name for the listening address.
    let listen: String = args
        .get_opt("--listen")
        .or_else(|| args.get_opt("--addr"))
        .unwrap_or_else(|| "127.0.0.1:7100".into());
    let upstream: Option<SocketAddr> = args.get_opt("--upstream");
    let backend: Backend = args.get("--backend", Backend::Auto);
    let workers: usize = args.get("--workers", 1);
    let deadline = Duration::from_millis(args.get("--deadline-ms", 5_000));
    args.finish();
    let Some(upstream) = upstream else {
        eprintln!("proxy: --upstream HOST:PORT is required");
        std::process::exit(2);
    };
    let server = Server::builder()
        .bind(listen)
        .backend(backend)
        .workers(workers)
        .shutdown_timeout(deadline)
        // A connection is left to finish during the drain: its copies end when both ends have
        // closed their writing sides, or the deadline forces them.
        .serve(move |stream, peer, _stop| async move {
            if let Err(error) = proxy(stream, upstream).await {
                eprintln!("proxy: {peer}: {error}");
            }
        });
    let server = args::or_exit("proxy", server);
    println!("{}", server.local_addr());
    let report = server.join();
    println!(
        "report: accepted {} completed {} forced {} errors {:?}",
        report.accepted, report.completed, report.forced, report.errors
    );
}
