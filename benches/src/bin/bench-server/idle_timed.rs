//! B9: the echo served through a loop of timed reads, the way applications wrap reads in a
//! timeout. Each connection loops on "read with a [`READ_TIMEOUT`] deadline": a timeout loops
//! again, data is echoed, end of stream closes. The load generator keeps the connections idle,
//! so what the server spends is the cost of expiring and re-arming the reads.
//!
//! The runtimes with timers serve it, each with its own timeout: Weir's
//! `TcpStream::read_timeout` on both backends, `tokio::time::timeout` around a read (time driver
//! on), and for monoio `monoio::time::timeout` around a cancelable receive (timer on). The raw
//! floors have no timers and sit this mode out.

use std::net::TcpListener;
use std::time::Duration;

use crate::BUFFER;

/// The deadline on every read.
const READ_TIMEOUT: Duration = Duration::from_millis(25);

/// Whether `mode` can serve timed reads.
pub(super) fn serves(mode: &str) -> bool {
    matches!(
        mode,
        "weir-uring" | "weir-poll" | "tokio-ct" | "tokio-mt" | "monoio"
    )
}

/// Serves `conns` connections with timed reads; returns once all of them closed.
pub(super) fn serve(mode: &str, listener: TcpListener, conns: usize) {
    match mode {
        "weir-uring" => weir(listener, conns, weir_net::Backend::Uring),
        "weir-poll" => weir(listener, conns, weir_net::Backend::Poll),
        "tokio-ct" => tokio(listener, conns, false),
        "tokio-mt" => tokio(listener, conns, true),
        "monoio" => monoio(listener, conns),
        other => {
            eprintln!("mode {other} cannot serve timed reads");
            std::process::exit(2);
        }
    }
}

fn weir(listener: TcpListener, conns: usize, backend: weir_net::Backend) {
    let rt = weir_net::Runtime::builder()
        .backend(backend)
        .build()
        .expect("weir runtime");
    rt.block_on(async move {
        let listener = weir_net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tasks.push(weir_net::spawn(async move {
                let mut buf = Vec::with_capacity(BUFFER);
                loop {
                    buf.clear();
                    match stream.read_timeout(buf, READ_TIMEOUT).await {
                        // A timed-out read gives its buffer back.
                        (Err(error), back) if error.kind() == std::io::ErrorKind::TimedOut => {
                            buf = back;
                        }
                        (Ok(0) | Err(_), _) => break,
                        (Ok(_), back) => {
                            let (written, back) = stream.write_all(back).await;
                            buf = back;
                            if written.is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

fn tokio(listener: TcpListener, conns: usize, multi: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    listener.set_nonblocking(true).expect("nonblocking");
    let runtime = crate::tokio_builder(multi)
        .enable_time()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; BUFFER];
                loop {
                    // tokio's read is cancel-safe: a timed-out read received nothing.
                    match tokio::time::timeout(READ_TIMEOUT, stream.read(&mut buf)).await {
                        Err(_elapsed) => {}
                        Ok(Ok(0) | Err(_)) => break,
                        Ok(Ok(n)) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            let _ = task.await;
        }
    });
}

/// monoio's plain `read` is not cancel-safe on io_uring: dropping it at a timeout leaves the
/// receive in the kernel (it would take the next bytes, and one would pile up per timeout). So
/// the read is a cancelable receive: at the timeout it is cancelled and then awaited, which
/// gives back the buffer and any bytes that arrived before the cancel took effect.
fn monoio(listener: TcpListener, conns: usize) {
    use monoio::io::{AsyncWriteRentExt, CancelableAsyncReadRent, Canceller};
    let mut runtime = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime");
    runtime.block_on(async move {
        let listener = monoio::net::TcpListener::from_std(listener).expect("listener");
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (mut stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tasks.push(monoio::spawn(async move {
                let mut buf = Vec::with_capacity(BUFFER);
                let mut canceller = Canceller::new();
                loop {
                    buf.clear();
                    let (timed_out, (received, back)) = {
                        let read = stream.cancelable_read(buf, canceller.handle());
                        let mut read = std::pin::pin!(read);
                        match monoio::time::timeout(READ_TIMEOUT, read.as_mut()).await {
                            Ok(done) => (false, done),
                            Err(_elapsed) => {
                                canceller = canceller.cancel();
                                (true, read.await)
                            }
                        }
                    };
                    buf = back;
                    match received {
                        // Cancelled at the timeout with nothing received.
                        Err(_) if timed_out => {}
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let (written, back) = stream.write_all(buf).await;
                            buf = back;
                            if written.is_err() {
                                break;
                            }
                        }
                    }
                }
            }));
        }
        for task in tasks {
            task.await;
        }
    });
}
