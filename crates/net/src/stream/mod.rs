//! Byte-stream I/O shared by [`TcpStream`](crate::TcpStream) and
//! [`UnixStream`](crate::UnixStream), on both backends: a socket of the driver, and the read and
//! write state machines (`io`) every read and write API goes through.
//!
//! * `owned.rs` — owned-buffer reads and writes (`read`, `read_exact`, `write`, `write_all`,
//!   `writev`), with the server's read timeouts;
//! * `pooled.rs` — reads into the runtime's buffer pool;
//! * `polled.rs` — the poll-based reads and writes behind the compatibility traits;
//! * `file.rs` — `send_file`;
//! * `splice.rs` — socket-to-socket `splice_to`.

use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use crate::driver::Socket;
use crate::io::read::ReadState;
use crate::io::write::WriteState;

#[cfg(unix)]
mod file;
mod owned;
mod polled;
mod pooled;
mod splice;

/// Deadlines a server puts on a connection's reads.
struct ReadTimeouts {
    /// Until the first byte arrives.
    first_byte: Option<Instant>,
    /// Between reads once data has flowed.
    idle: Option<Duration>,
    /// Set once a read returned data.
    seen_data: bool,
    /// Counts expiries, for the server's metrics.
    counter: Arc<AtomicU64>,
}

impl ReadTimeouts {
    /// When the read starting now gives up.
    fn deadline(&self) -> Option<Instant> {
        let idle = || self.idle.and_then(|idle| Instant::now().checked_add(idle));
        if self.seen_data {
            idle()
        } else {
            self.first_byte.or_else(idle)
        }
    }
}

/// A connected byte stream: the I/O half of [`TcpStream`](crate::TcpStream) and
/// [`UnixStream`](crate::UnixStream).
pub(crate) struct Stream {
    socket: Socket,
    read: ReadState,
    write: WriteState,
    /// The pipe of this stream's splices to another (made at the first): bytes a dropped
    /// splice left in it go out before any other splice of this stream.
    splice_pipe: Option<crate::driver::SplicePipe>,
    /// Boxed: only a server's connections have them, and idle connections count every byte.
    timeouts: Option<Box<ReadTimeouts>>,
}

impl Stream {
    /// A stream over `fd`, on this thread's runtime.
    pub(crate) fn from_fd(fd: crate::sys::OwnedSock) -> io::Result<Stream> {
        Ok(Stream::from_socket(crate::runtime::socket(fd)?))
    }

    /// A stream over an accepted connection, on this thread's runtime.
    pub(crate) fn from_accepted(accepted: crate::driver::Accepted) -> io::Result<Stream> {
        Ok(Stream::from_socket(crate::runtime::accepted_socket(
            accepted,
        )?))
    }

    pub(crate) fn from_socket(socket: Socket) -> Stream {
        Stream {
            socket,
            read: ReadState::default(),
            write: WriteState::default(),
            splice_pipe: None,
            timeouts: None,
        }
    }

    /// Called by a read that finds nothing held or in flight: arms the stream's multishot
    /// receive where that is the default (ring sockets, `Builder::multishot_reads`), and the
    /// read then takes from it. `false`: the read makes its own receive.
    pub(crate) fn arm_multishot(&mut self) -> bool {
        if !self.socket.is_uring() {
            return false;
        }
        let Some((pool, provided)) = crate::runtime::multishot_pool() else {
            return false;
        };
        if !self.socket.multishot_over(&provided) {
            return false;
        }
        self.read
            .arm_pooled(self.socket.pooled_recv(&pool, &provided));
        true
    }

    /// The driver's socket.
    pub(crate) fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The descriptor.
    pub(crate) fn fd(&self) -> crate::sys::BorrowedSock<'_> {
        self.socket.fd()
    }

    /// A second stream on a duplicate of the descriptor, on this thread's runtime.
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Stream::from_fd(self.fd().try_clone_to_owned()?)
    }

    /// Makes reads fail with `TimedOut` if no first byte arrives within `first_byte`, or if a
    /// later read waits longer than `idle` (the server's slow-client defence). Expiries are
    /// counted in `counter`.
    pub(crate) fn set_read_timeouts(
        &mut self,
        first_byte: Option<Duration>,
        idle: Option<Duration>,
        counter: Arc<AtomicU64>,
    ) {
        self.timeouts = Some(Box::new(ReadTimeouts {
            first_byte: first_byte.and_then(|d| Instant::now().checked_add(d)),
            idle,
            seen_data: false,
            counter,
        }));
    }

    /// Shuts down one or both directions (`shutdown(2)`); `Shutdown::Write` is a half-close.
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.socket.shutdown(how)
    }
}

/// The public I/O methods of a stream type wrapping a [`Stream`] in a field `inner`, with their
/// documentation: the same on every stream type. The crate docs' cancel-safety table covers
/// each one.
macro_rules! stream_methods {
    ($ty:ident) => {
        /// A second handle to the same connection (a duplicated descriptor), so that one task
        /// can read while another writes. It belongs to this thread's runtime.
        ///
        /// # Errors
        ///
        /// `dup(2)` or the registration failed, or no Weir runtime runs on this thread.
        pub fn try_clone(&self) -> io::Result<$ty> {
            Ok($ty {
                inner: self.inner.try_clone()?,
            })
        }

        crate::stream::read_methods!();

        crate::stream::write_methods!();

        /// Shuts down one or both directions (`shutdown(2)`); `Shutdown::Write` is a
        /// half-close.
        ///
        /// # Errors
        ///
        /// `shutdown(2)` failed (not connected...).
        pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
            self.inner.shutdown(how)
        }
    };
}
pub(crate) use stream_methods;

/// The reading methods of a type holding a `Stream` in a field `inner` (streams and read
/// halves).
macro_rules! read_methods {
    () => {
        /// Reads into `buf`'s spare capacity (after the bytes it holds); `Ok(0)` is the end of
        /// the stream (or a buffer with no spare capacity).
        ///
        /// On a connection accepted by a [`Server`](crate::server::Server) with read timeouts,
        /// a read that waits too long fails with `TimedOut`.
        ///
        /// Cancel safety: cancel-safe. No received byte is ever lost: bytes a dropped read
        /// received are returned by the next read, whichever read method it is.
        pub fn read<B: IoBufMut>(
            &mut self,
            buf: B,
        ) -> impl std::future::Future<Output = BufResult<usize, B>> {
            self.inner.read(buf)
        }

        /// Reads into a buffer from the runtime's pool ([`Builder::buffer_pool`]); `Ok(None)`
        /// at the end of the stream.
        ///
        /// On io_uring this is a multishot receive over a provided buffer ring the pool feeds:
        /// an idle connection holds no buffer, and one submission serves many reads. On the
        /// reactor the read waits for data, then takes a buffer. When the pool is empty the read
        /// waits for a buffer; it never fails for lack of one and never loses bytes. Once a
        /// pooled read ran, every read of the stream takes from the same receive, in order.
        ///
        /// Cancel safety: cancel-safe (no byte is lost).
        ///
        /// [`Builder::buffer_pool`]: crate::Builder::buffer_pool
        ///
        /// # Errors
        ///
        /// The read failed (`ConnectionReset`...), the pool could not be set up, or no Weir
        /// runtime runs on this thread (the pool is the runtime's).
        pub fn read_pooled(
            &mut self,
        ) -> impl std::future::Future<Output = io::Result<Option<weir_bufpool::Buf>>> {
            self.inner.read_pooled()
        }

        /// Reads with a time limit: if nothing arrives within `limit`, fails with
        /// `io::ErrorKind::TimedOut` and gives the buffer back (no byte lost; on io_uring the
        /// connection's multishot receive stays armed, so a timed-out read costs no
        /// submission). `Duration::MAX` waits as long as [`read`](Self::read);
        /// `Duration::ZERO` takes what has already arrived and waits for nothing more (on
        /// io_uring it lets the driver turn once, to reap what the kernel already received).
        ///
        /// Cancel safety: cancel-safe.
        pub async fn read_timeout<B: IoBufMut>(
            &mut self,
            buf: B,
            limit: std::time::Duration,
        ) -> BufResult<usize, B> {
            let until = std::time::Instant::now().checked_add(limit);
            self.inner.read_until(buf, until).await
        }

        /// Reads until `buf` holds `len` bytes (appending to what it holds). The buffer grows as
        /// bytes arrive, so a huge `len` from a peer costs no memory up front.
        ///
        /// Cancel safety: cancel-safe. The bytes a dropped `read_exact` had gathered go back to
        /// the stream, in front of the rest, for the next read.
        ///
        /// # Errors
        ///
        /// `UnexpectedEof` if the stream ends first; any read error.
        pub fn read_exact(
            &mut self,
            buf: Vec<u8>,
            len: usize,
        ) -> impl std::future::Future<Output = BufResult<(), Vec<u8>>> {
            self.inner.read_exact(buf, len)
        }
    };
}
pub(crate) use read_methods;

/// The writing methods of a type holding a `Stream` in a field `inner` (streams and write
/// halves).
macro_rules! write_methods {
    () => {
        /// Writes some of `buf`'s bytes; returns how many.
        ///
        /// Cancel safety: not cancel-safe. A dropped write reports nothing; the bytes it had
        /// handed to the kernel may have been sent (as with any socket write), and a later write
        /// starts only after them, so bytes never interleave.
        pub fn write<B: IoBuf>(
            &mut self,
            buf: B,
        ) -> impl std::future::Future<Output = BufResult<usize, B>> {
            self.inner.write(buf)
        }

        /// Writes all of `buf`.
        ///
        /// Cancel safety: not cancel-safe, as [`write`](Self::write): a prefix of `buf` may have
        /// been sent.
        ///
        /// # Errors
        ///
        /// The first failed write (`BrokenPipe`, `ConnectionReset`...), or `WriteZero`.
        pub fn write_all<B: IoBuf>(
            &mut self,
            buf: B,
        ) -> impl std::future::Future<Output = BufResult<(), B>> {
            self.inner.write_all(buf)
        }

        /// Writes the buffers' bytes in order with one vectored write; returns how many bytes
        /// were written (possibly fewer than all) and the buffers.
        ///
        /// Cancel safety: not cancel-safe, as [`write`](Self::write).
        pub fn writev<B: IoBuf>(
            &mut self,
            bufs: Vec<B>,
        ) -> impl std::future::Future<Output = BufResult<usize, Vec<B>>> {
            self.inner.writev(bufs)
        }

        /// Sends up to `len` bytes of `file` from `offset` without copying them through user
        /// space (`splice` through a pipe on the ring, `sendfile` on the reactor). Returns the
        /// bytes sent: `len`, or fewer if the file ends first.
        ///
        /// Cancel safety: not cancel-safe, as [`write`](Self::write).
        ///
        /// Unix only: Windows has no `sendfile(2)` for the reactor to call.
        ///
        /// # Errors
        ///
        /// The socket or the file failed; `InvalidInput` for an offset beyond `i64::MAX`.
        #[cfg(unix)]
        pub async fn send_file(
            &mut self,
            file: &std::fs::File,
            offset: u64,
            len: usize,
        ) -> io::Result<usize> {
            self.inner.send_file(file, offset, len).await
        }
    };
}
pub(crate) use write_methods;

/// `AsFd` and `AsRawFd` (`AsSocket` and `AsRawSocket` on Windows) for a socket type whose field
/// `$field` has an `fd()` method: the descriptor for socket options Weir does not wrap (the
/// socket stays Weir's; closing or changing its blocking mode behind Weir's back is the caller's
/// risk).
macro_rules! fd_impls {
    // A `socket2::Socket` field: its own `AsFd`/`AsSocket`.
    ($ty:ident, $field:ident, socket2) => {
        #[cfg(windows)]
        impl std::os::windows::io::AsSocket for $ty {
            fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
                std::os::windows::io::AsSocket::as_socket(&self.$field)
            }
        }

        #[cfg(windows)]
        impl std::os::windows::io::AsRawSocket for $ty {
            fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
                std::os::windows::io::AsRawSocket::as_raw_socket(&self.$field)
            }
        }

        #[cfg(unix)]
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                std::os::fd::AsFd::as_fd(&self.$field)
            }
        }

        #[cfg(unix)]
        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.$field)
            }
        }
    };
    ($ty:ident, $field:ident) => {
        #[cfg(windows)]
        impl std::os::windows::io::AsSocket for $ty {
            fn as_socket(&self) -> std::os::windows::io::BorrowedSocket<'_> {
                self.$field.fd()
            }
        }

        #[cfg(windows)]
        impl std::os::windows::io::AsRawSocket for $ty {
            fn as_raw_socket(&self) -> std::os::windows::io::RawSocket {
                std::os::windows::io::AsRawSocket::as_raw_socket(&self.$field.fd())
            }
        }

        #[cfg(unix)]
        impl std::os::fd::AsFd for $ty {
            fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
                self.$field.fd()
            }
        }

        #[cfg(unix)]
        impl std::os::fd::AsRawFd for $ty {
            fn as_raw_fd(&self) -> std::os::fd::RawFd {
                std::os::fd::AsRawFd::as_raw_fd(&self.$field.fd())
            }
        }
    };
}
pub(crate) use fd_impls;
