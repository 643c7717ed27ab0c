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
//!   ([`BufResult`]); reads append to what the buffer holds. Every method documents its cancel
//!   safety (table below); no dropped read loses bytes.
//! * Inside, one driver per backend implements one socket interface (`driver/`), and every
//!   stream has one read and one write state machine (`io/`) that all its read and write
//!   methods share.
//!
//! # Cancel safety
//!
//! Dropping any I/O future is memory-safe and leaks nothing. A method is *cancel-safe* when
//! dropping its future (in a `select!`, under a timeout) also loses nothing. Each stream has one
//! read and one write state machine behind every read and write method, so a dropped operation
//! never reorders or mixes up the bytes of the next one, whichever method that is.
//!
//! | method | cancel-safe | what a dropped future leaves | test |
//! |---|---|---|---|
//! | `TcpStream::read`, `UnixStream::read` | yes | bytes it received go to the next read, of any method | `cancel::reads_raced_against_short_timers_lose_no_byte`, `mixed_io::every_pair_of_read_apis_in_either_order_returns_the_stream_exactly` |
//! | `read_exact` | yes | the bytes it gathered go back, in front, for the next read | `cancel::a_dropped_read_exact_gives_back_what_it_gathered` |
//! | `read_pooled` | yes | as `read` | `pooled::dropped_pooled_reads_and_mixed_owned_reads_lose_nothing` |
//! | `read_timeout` | yes | as `read` | `tcp::read_timeout_loses_nothing` |
//! | tokio `AsyncRead` / hyper `rt::Read` | — (poll-based) | a receive left in flight keeps its bytes for any later read | `mixed_io::every_pair_of_read_apis_in_either_order_returns_the_stream_exactly` |
//! | `write`, `write_all`, `writev`, `send_file` | no | a prefix of its bytes may have been sent, and is not reported; the next write starts after it | `mixed_io::a_timed_out_owned_write_does_not_corrupt_the_next_one`, `cancel::a_dropped_writev_never_interleaves_with_the_next_write`, `cancel::a_dropped_send_file_never_interleaves_with_the_next_write` |
//! | `splice_to` | no | bytes may have reached the destination unreported; bytes already in the source's pipe stay there and go first at its next `splice_to` (a read does not see them) | `splice::held_bytes_go_first_through_the_read_state_then_the_rest_splices` |
//! | tokio `AsyncWrite` / hyper `rt::Write` | — (poll-based) | after `Pending`, the retry with the same bytes gets the count; a different write sends its own bytes whole | `mixed_io::a_timed_out_compat_write_does_not_corrupt_the_next_one` |
//! | `TcpListener::accept`, `UnixListener::accept` | yes | a connection accepted meanwhile is closed, never leaked | `cancel::a_storm_of_dropped_accepts_leaks_no_descriptor` |
//! | `TcpStream::connect`, `UnixStream::connect` | yes | the socket is closed | `cancel::a_storm_of_dropped_connects_leaks_no_descriptor` |
//! | `UdpSocket::recv_from`, `recv_msg`, `recv`, `UnixDatagram::recv_from`, `recv` | yes | a datagram it received is returned by the next receive (other receives waiting on it stay awake) | `udp::a_dropped_receive_loses_no_datagram`, `udp::receivers_waiting_on_a_dropped_receive_s_datagram_all_stay_awake` |
//! | `UdpSocket::recv_pooled`, `recv_pooled_msg` | yes | as `recv_from` | `cancel::dropped_pooled_udp_receives_and_sends_lose_nothing_they_owe` |
//! | `send_to`, `send` (UDP, Unix datagrams) | no | the datagram may have gone, whole | `cancel::dropped_pooled_udp_receives_and_sends_lose_nothing_they_owe` |
//! | `time::sleep`, `time::timeout` | yes | the timer is removed from the heap that holds it | `affinity::a_timer_dropped_on_another_worker_cancels_only_itself` |
//!
//! # Threads
//!
//! Sockets and timers are `Send`. A socket belongs to the runtime that made it (its *home*);
//! used from another thread — another worker, or a thread with no Weir runtime — its operations
//! still go to the home driver: on io_uring they are queued for the home ring's thread, which a
//! notifier wakes (weir-ring's owner routing; the ring is only ever entered by its owner), and on
//! the reactor the home reactor reports readiness to whichever task waits. On the home thread
//! this costs what it costs without it: one thread-local comparison per submission. Pooled reads
//! and the server's read timeouts use the runtime of the thread that polls them (off any
//! runtime, a pooled read fails with an error and a timer panics, as documented). A `Sleep`
//! registers with the timer heap of the runtime that polls it and moves if it is polled on
//! another, so it never touches a heap that is not its own. Tasks themselves stay on the thread
//! they were spawned on (`spawn` takes `!Send` futures); [`Handle::spawn`] builds a future on
//! another runtime's thread. Tests: `affinity::a_stream_made_on_one_worker_works_on_another`,
//! `affinity::a_timer_dropped_on_another_worker_cancels_only_itself`.
//!
//! # Fork
//!
//! A process may `fork(2)` while its runtimes have connections in flight. The child inherits
//! the parent's ring or epoll instance — one kernel object the two share — so the child leaves
//! it alone: dropping the inherited runtime and sockets frees the child's copies and closes its
//! descriptors without cancelling, entering or deregistering anything of the parent's, and
//! using the inherited runtime fails at once with an error (a forked child builds its own). The
//! drivers' descriptors are close-on-exec. Sockets are plain shared descriptors across a fork,
//! as with `std`: bytes a child writes to an inherited socket go to the parent's peer. Tests:
//! `fork::a_child_that_drops_what_it_inherited_leaves_the_parent_s_driver_alone`,
//! `fork::a_child_builds_its_own_runtime_and_serves`,
//! `fork::an_exec_d_child_holds_no_ring_epoll_or_socket_of_the_parent`.
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
//!
//! On io_uring every stream read (`read`, `read_exact`, the compatibility traits) takes from
//! that same multishot receive, armed at a connection's first read and kept armed: no
//! submission per read, no buffer held by an idle connection, and a read that times out leaves
//! the receive armed (nothing to cancel, nothing to submit again). A reader that falls behind
//! pauses it (at four unread arrivals) so one connection cannot take the pool; the data then
//! waits in the socket. [`Builder::multishot_reads`] turns it off; [`io_stats`] counts arms,
//! pauses and re-arms.

/// Emits a `tracing` event at `$level` (`ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`) with a
/// formatted message, with the `tracing` feature; without it, nothing (the arguments are still
/// type-checked). Weir never writes to stderr itself.
macro_rules! event {
    ($level:ident, $($arg:tt)+) => {{
        #[cfg(feature = "tracing")]
        tracing::event!(target: "weir", tracing::Level::$level, $($arg)+);
        #[cfg(not(feature = "tracing"))]
        if false {
            let _ = format_args!($($arg)+);
        }
    }};
}
pub(crate) use event;

mod buf;
mod compat;
mod coop;
mod driver;
mod error;
#[cfg(feature = "hyper")]
pub mod hyper_rt;
mod io;
mod pooled;
mod resolve;
mod runqueue;
mod runtime;
pub mod server;
mod stats;
mod stream;
mod sys;
mod tcp;
pub mod time;
mod udp;
#[cfg(unix)]
mod unix;

pub use buf::{BufResult, IoBuf, IoBufMut, Slice};
pub use driver::{Backend, BackendReport, backend_report};
pub use error::Error;
pub use runtime::{
    Builder, Handle, JoinError, JoinHandle, RemoteJoinHandle, Runtime, Workers, buffer_pool, spawn,
    yield_now,
};
pub use stats::{IoStats, io_stats};
pub use tcp::{OwnedReadHalf, OwnedWriteHalf, TcpListener, TcpSocket, TcpStream};
#[cfg(all(test, weir_loom))]
mod tests;
pub use udp::{RecvMeta, UdpSocket};
#[cfg(unix)]
pub use unix::{UnixDatagram, UnixListener, UnixStream};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
