//! B10: hyper's HTTP/1.1 server with one handler everywhere — every request gets the same
//! 13-byte `Hello, World!` — on Weir's ring, Weir's reactor and tokio (`current_thread`, and
//! `multi_thread(2)` beside it). Keep-alive, `TCP_NODELAY`, no header-read timeout (so no
//! runtime's timer is involved); exits after `conns` connections closed.
//!
//! The other modes have no hyper glue (monoio's is a separate crate; the raw floors have no
//! runtime) and refuse `WEIR_BENCH_MODE=http`.

use std::convert::Infallible;
use std::net::TcpListener;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};

/// The body every server sends.
const HELLO: &[u8] = b"Hello, World!";

/// Whether `mode` can serve HTTP.
pub(crate) fn serves(mode: &str) -> bool {
    matches!(mode, "weir-uring" | "weir-poll" | "tokio-ct" | "tokio-mt")
}

/// The one handler: the request is read, and ignored.
async fn hello(
    _request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(HELLO))))
}

/// The same connection settings everywhere.
fn builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.keep_alive(true).header_read_timeout(None);
    builder
}

pub(crate) fn serve(mode: &str, listener: TcpListener, conns: usize) {
    match mode {
        "weir-uring" => weir(listener, conns, weir_net::Backend::Uring),
        "weir-poll" => weir(listener, conns, weir_net::Backend::Poll),
        "tokio-ct" => tokio(listener, conns, false),
        "tokio-mt" => tokio(listener, conns, true),
        other => {
            eprintln!("mode {other} has no hyper glue");
            std::process::exit(2);
        }
    }
}

fn weir(listener: TcpListener, conns: usize, backend: weir_net::Backend) {
    let rt = super::weir_runtime(backend);
    rt.block_on(async move {
        let listener = weir_net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tasks.push(weir_net::spawn(async move {
                let _ = builder().serve_connection(stream, service_fn(hello)).await;
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

fn tokio(listener: TcpListener, conns: usize, multi: bool) {
    listener.set_nonblocking(true).expect("nonblocking");
    super::tokio_runtime(multi).block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            let io = hyper_util::rt::TokioIo::new(stream);
            tasks.push(tokio::spawn(async move {
                let _ = builder().serve_connection(io, service_fn(hello)).await;
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}
