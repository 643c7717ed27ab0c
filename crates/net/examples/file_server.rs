//! Serves the files of one directory with zero-copy `send_file` (`splice` on io_uring,
//! `sendfile` on the reactor), with the [`Server`]'s limits and graceful shutdown.
//!
//! ```text
//! cargo run -p weir-net --example file_server -- --dir ./public --addr 127.0.0.1:7002
//! printf 'GET hello.txt\n' | nc 127.0.0.1 7002
//! ```
//!
//! Protocol, one request per line: `GET <name>\n` → `OK <length>\n` and the file's bytes, or
//! `ERR <reason>\n`. Names are plain file names inside the directory (no `/`, no `..`). The
//! first line on stdout is the bound address.

use std::path::PathBuf;

use weir_net::server::Server;
use weir_net::{Backend, TcpStream};

#[path = "support/args.rs"]
mod args;
#[path = "support/weir_log.rs"]
mod weir_log;
use args::Args;

fn main() {
    weir_log::install(weir_log::to_stderr);
    let mut args = Args::parse(
        "file_server",
        "[--addr HOST:PORT] [--dir PATH] [--backend uring|poll|auto]",
    );
    let addr: String = args.get("--addr", "127.0.0.1:7002".into());
    let dir: PathBuf = args.get("--dir", PathBuf::from("."));
    let backend: Backend = args.get("--backend", Backend::Auto);
    args.finish();
    let server = Server::builder()
        .bind(addr)
        .backend(backend)
        .serve(move |stream, _peer, _stop| serve(stream, dir.clone()));
    let server = args::or_exit("file_server", server);
    println!("{}", server.local_addr());
    let report = server.join();
    println!(
        "report: accepted {} completed {} forced {}",
        report.accepted, report.completed, report.forced
    );
}

/// Answers requests on one connection until the peer closes it.
async fn serve(mut stream: TcpStream, dir: PathBuf) {
    let mut pending = Vec::new();
    loop {
        let Some(end) = pending.iter().position(|&b| b == b'\n') else {
            let (read, buf) = stream.read(Vec::with_capacity(1024)).await;
            match read {
                Ok(n) if n > 0 && pending.len() < 4096 => pending.extend_from_slice(&buf),
                _ => return,
            }
            continue;
        };
        let line: Vec<u8> = pending.drain(..=end).collect();
        let request = String::from_utf8_lossy(&line);
        let sent = match open(&dir, request.trim_end()) {
            Ok((file, len)) => {
                let header = format!("OK {len}\n").into_bytes();
                stream.write_all(header).await.0.is_ok()
                    && matches!(stream.send_file(&file, 0, len).await, Ok(n) if n == len)
            }
            Err(reason) => stream
                .write_all(format!("ERR {reason}\n").into_bytes())
                .await
                .0
                .is_ok(),
        };
        if !sent {
            return;
        }
    }
}

/// The file a request names, with its length.
fn open(dir: &std::path::Path, request: &str) -> Result<(std::fs::File, usize), String> {
    let name = request.strip_prefix("GET ").ok_or("expected GET <name>")?;
    if name.is_empty() || name.contains('/') || name == ".." || name == "." {
        return Err("not a plain file name".into());
    }
    let file = std::fs::File::open(dir.join(name)).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let len = usize::try_from(len).map_err(|_| "file too large".to_string())?;
    Ok((file, len))
}
