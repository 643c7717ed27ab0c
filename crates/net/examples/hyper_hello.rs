//! hyper's HTTP/1.1 and HTTP/2 server on a Weir runtime, through the `hyper` compatibility
//! feature (Weir's streams as hyper's I/O, [`WeirExecutor`] and [`WeirTimer`] as its runtime),
//! with the [`Server`]'s admission limit and graceful shutdown (in-flight requests finish; idle
//! keep-alive connections close).
//!
//! ```text
//! cargo run -p weir-net --features hyper --example hyper_hello -- \
//!     --addr 127.0.0.1:8080 --backend auto --workers 1 --header-timeout-ms 5000
//! curl http://127.0.0.1:8080/anything
//! curl --http2-prior-knowledge http://127.0.0.1:8080/anything
//! ```
//!
//! A connection that starts with the HTTP/2 preface speaks HTTP/2 (h2c, prior knowledge); any
//! other speaks HTTP/1.1. A client that has not sent a request's headers within the header
//! timeout is disconnected (hyper's `header_read_timeout`, on Weir's timers). The first line on
//! stdout is the bound address. Every request gets
//! `Hello from Weir (<backend>, <version>): <method> <path>`.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use weir_net::hyper_rt::{WeirExecutor, WeirTimer};
use weir_net::server::Server;
use weir_net::{Backend, TcpStream};
use weir_shutdown::Token;

#[path = "support/args.rs"]
mod args;
#[path = "support/weir_log.rs"]
mod weir_log;
use args::Args;

/// What an HTTP/2 connection starts with.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A stream with bytes already read from it in front (the bytes looked at to pick the
/// protocol).
struct Rewind {
    prefix: Vec<u8>,
    taken: usize,
    stream: TcpStream,
}

impl hyper::rt::Read for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.taken < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.taken);
            buf.put_slice(&this.prefix[this.taken..this.taken + n]);
            this.taken += n;
            return Poll::Ready(Ok(()));
        }
        hyper::rt::Read::poll_read(Pin::new(&mut this.stream), cx, buf)
    }
}

impl hyper::rt::Write for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        hyper::rt::Write::poll_write(Pin::new(&mut self.get_mut().stream), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        hyper::rt::Write::poll_flush(Pin::new(&mut self.get_mut().stream), cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        hyper::rt::Write::poll_shutdown(Pin::new(&mut self.get_mut().stream), cx)
    }
}

/// Reads until the bytes are, or cannot be, the HTTP/2 preface. `None`: the peer closed or
/// failed first.
async fn sniff(stream: &mut TcpStream) -> Option<(bool, Vec<u8>)> {
    let mut seen = Vec::with_capacity(PREFACE.len());
    loop {
        let (read, buf) = stream.read(seen).await;
        seen = buf;
        if read.ok()? == 0 {
            return None;
        }
        let common = seen.len().min(PREFACE.len());
        if seen[..common] != PREFACE[..common] {
            return Some((false, seen));
        }
        if seen.len() >= PREFACE.len() {
            return Some((true, seen));
        }
        seen.reserve(PREFACE.len() - seen.len());
    }
}

/// Drives `connection` to its end; once `stop` is cancelled, asks it to finish what is in
/// flight and close (`graceful` is the connection's `graceful_shutdown`).
async fn until_done<C, E>(connection: C, graceful: fn(Pin<&mut C>), stop: &Token) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    let mut connection = std::pin::pin!(connection);
    let mut stopping = std::pin::pin!(stop.cancelled());
    let mut draining = false;
    std::future::poll_fn(|cx| {
        if !draining && stopping.as_mut().poll(cx).is_ready() {
            graceful(connection.as_mut());
            draining = true;
        }
        connection.as_mut().poll(cx)
    })
    .await
}

fn main() {
    weir_log::install(weir_log::to_stderr);
    let mut args = Args::parse(
        "hyper_hello",
        "[--addr HOST:PORT] [--backend uring|poll|auto] [--workers N] [--header-timeout-ms MS]",
    );
    let addr: String = args.get("--addr", "127.0.0.1:8080".into());
    let backend: Backend = args.get("--backend", Backend::Auto);
    let workers: usize = args.get("--workers", 1);
    let header_timeout = Duration::from_millis(args.get("--header-timeout-ms", 5_000));
    args.finish();
    let server = Server::builder()
        .bind(addr)
        .backend(backend)
        .workers(workers)
        .serve(move |mut stream, _peer, stop| async move {
            let _ = stream.set_nodelay(true);
            let answer = hyper::service::service_fn(|request: hyper::Request<_>| async move {
                let backend = match weir_net::backend_report().map(|r| r.backend) {
                    Some(Backend::Uring) => "io_uring",
                    _ => "poll",
                };
                let text = format!(
                    "Hello from Weir ({backend}, {:?}): {} {}\n",
                    request.version(),
                    request.method(),
                    request.uri().path()
                );
                Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(text))))
            });
            // The first bytes decide the protocol; a client that sends none within the header
            // timeout is cut off here, as hyper cuts off one that stops in the headers.
            let sniffed = stop
                .run_until_cancelled(weir_net::time::timeout(header_timeout, sniff(&mut stream)));
            let Some(Ok(Some((http2, prefix)))) = sniffed.await else {
                return;
            };
            let io = Rewind {
                prefix,
                taken: 0,
                stream,
            };
            let outcome = if http2 {
                let connection = hyper::server::conn::http2::Builder::new(WeirExecutor)
                    .timer(WeirTimer)
                    .serve_connection(io, answer);
                until_done(connection, |c| c.graceful_shutdown(), &stop).await
            } else {
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(WeirTimer)
                    .header_read_timeout(header_timeout)
                    .serve_connection(io, answer);
                until_done(connection, |c| c.graceful_shutdown(), &stop).await
            };
            if let Err(error) = outcome {
                if !error.is_timeout() {
                    eprintln!("hyper_hello: connection: {error}");
                }
            }
        });
    let server = args::or_exit("hyper_hello", server);
    println!("{}", server.local_addr());
    let report = server.join();
    println!(
        "report: accepted {} completed {} forced {}",
        report.accepted, report.completed, report.forced
    );
}
