//! Weir's runtime and sockets: an executor per thread that drives TCP through io_uring
//! (`weir-ring`) or a readiness reactor (`weir-reactor`), chosen at start-up, with the same
//! semantics on both.
//!
//! # How it works
//!
//! * [`Runtime`] owns one executor, one driver and one timer heap on its thread;
//!   [`spawn`] runs `!Send` futures beside [`Runtime::block_on`]'s. Wakers are `Send + Sync`:
//!   another thread may wake a task, and a blocked driver is unparked (eventfd on the ring, the
//!   reactor's notifier on poll).
//! * [`Backend::Auto`] probes io_uring once per process and falls back to the reactor with the
//!   reason in [`backend_report`]; `WEIR_BACKEND=uring|poll` forces one.
//! * Sockets use owned buffers: `stream.read(buf).await` returns `(io::Result<usize>, buf)`
//!   ([`BufResult`]). Every method documents its cancel safety; no dropped read loses bytes.
//!
//! # Examples
//!
//! ```
//! use weir_net::{Runtime, TcpListener, TcpStream};
//!
//! let rt = Runtime::new().expect("runtime");
//! println!("{}", rt.backend_report());
//! rt.block_on(async {
//!     let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
//!     let addr = listener.local_addr().expect("addr");
//!     let server = weir_net::spawn(async move {
//!         let (mut conn, _) = listener.accept().await.expect("accept");
//!         let (n, buf) = conn.read(Vec::with_capacity(64)).await;
//!         let n = n.expect("read");
//!         conn.write_all(buf).await.0.expect("echo");
//!         n
//!     });
//!     let mut stream = TcpStream::connect(addr).await.expect("connect");
//!     stream.write_all(b"hello".to_vec()).await.0.expect("write");
//!     let (result, reply) = stream.read_exact(Vec::new(), 5).await;
//!     result.expect("read");
//!     assert_eq!(reply, b"hello");
//!     assert_eq!(server.await.expect("server"), 5);
//! });
//! ```
//!
//! # Features
//!
//! * `tokio`: tokio's `AsyncRead`/`AsyncWrite` for [`TcpStream`] and [`UnixStream`].
//! * `hyper`: hyper 1.x's `rt::Read`/`rt::Write` for the same, so hyper serves HTTP on a Weir
//!   runtime (see the `hyper_hello` example).
//!
//! # Status
//!
//! TCP and Unix streams (with `writev` and zero-copy `send_file`), UDP and Unix datagrams,
//! timers, spawn/abort/join, [`Handle`]s that spawn from other threads, [`Workers`]
//! (thread-per-core), both backends with the fallback, and the [`server::Server`] (admission,
//! backoff, graceful shutdown) work, and pooled reads ([`TcpStream::read_pooled`],
//! [`UdpSocket::recv_pooled`]): a multishot receive over a provided buffer ring fed by the
//! runtime's [`buffer_pool`] on io_uring.

/// Writes one log line to stderr, never panicking (a closed stderr must not take a server down).
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}
pub(crate) use log;

mod buf;
mod compat;
mod coop;
mod driver;
mod error;
mod io;
mod pooled;
mod runqueue;
mod runtime;
pub mod server;
mod stream;
mod sys;
mod tcp;
pub mod time;
mod udp;
mod unix;

pub use buf::{BufResult, IoBuf, IoBufMut, Slice};
pub use driver::{Backend, BackendReport, backend_report};
pub use error::Error;
pub use runtime::{
    Builder, Handle, JoinError, JoinHandle, RemoteJoinHandle, Runtime, Workers, buffer_pool, spawn,
    yield_now,
};
pub use tcp::{TcpListener, TcpSocket, TcpStream};
#[cfg(all(test, weir_loom))]
mod tests;
pub use udp::{RecvMeta, UdpSocket};
pub use unix::{UnixDatagram, UnixListener, UnixStream};
