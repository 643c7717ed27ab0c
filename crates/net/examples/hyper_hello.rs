//! hyper's HTTP/1.1 server on a Weir runtime, through the `hyper` compatibility feature, with
//! the [`Server`]'s admission limit and graceful shutdown (in-flight requests finish; idle
//! keep-alive connections close).
//!
//! ```text
//! cargo run -p weir-net --features hyper --example hyper_hello -- \
//!     --addr 127.0.0.1:8080 --backend auto --workers 1
//! curl http://127.0.0.1:8080/anything
//! ```
//!
//! The first line on stdout is the bound address. Every request gets
//! `Hello from Weir (<backend>): <method> <path>`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::Frame;
use weir_net::Backend;
use weir_net::server::Server;

#[path = "support/args.rs"]
mod args;
use args::Args;

/// A body of one chunk.
struct Text(Option<Bytes>);

impl hyper::body::Body for Text {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.get_mut().0.take().map(|chunk| Ok(Frame::data(chunk))))
    }
}

fn main() {
    let mut args = Args::parse(
        "hyper_hello",
        "[--addr HOST:PORT] [--backend uring|poll|auto] [--workers N]",
    );
    let addr: String = args.get("--addr", "127.0.0.1:8080".into());
    let backend: Backend = args.get("--backend", Backend::Auto);
    let workers: usize = args.get("--workers", 1);
    args.finish();
    let server = Server::builder()
        .bind(addr)
        .backend(backend)
        .workers(workers)
        .serve(|stream, _peer, stop| async move {
            let _ = stream.set_nodelay(true);
            let answer = hyper::service::service_fn(|request: hyper::Request<_>| async move {
                let backend = match weir_net::backend_report().map(|r| r.backend) {
                    Some(Backend::Uring) => "io_uring",
                    _ => "poll",
                };
                let text = format!(
                    "Hello from Weir ({backend}): {} {}\n",
                    request.method(),
                    request.uri().path()
                );
                let mut response = hyper::Response::new(Text(Some(Bytes::from(text.clone()))));
                response.headers_mut().insert(
                    hyper::header::CONTENT_LENGTH,
                    hyper::header::HeaderValue::from(text.len()),
                );
                Ok::<_, Infallible>(response)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(None)
                .serve_connection(stream, answer);
            let mut connection = std::pin::pin!(connection);
            let mut stopping = std::pin::pin!(stop.cancelled());
            let mut draining = false;
            let outcome = std::future::poll_fn(|cx| {
                if !draining && stopping.as_mut().poll(cx).is_ready() {
                    // Finish the request in flight, then close instead of keeping alive.
                    connection.as_mut().graceful_shutdown();
                    draining = true;
                }
                connection.as_mut().poll(cx)
            })
            .await;
            if let Err(error) = outcome {
                eprintln!("hyper_hello: connection: {error}");
            }
        });
    let server = match server {
        Ok(server) => server,
        Err(error) => {
            eprintln!("hyper_hello: {error}");
            std::process::exit(1);
        }
    };
    println!("{}", server.local_addr());
    let report = server.join();
    println!(
        "report: accepted {} completed {} forced {}",
        report.accepted, report.completed, report.forced
    );
}
