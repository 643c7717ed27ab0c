//! TCP on both backends, with owned buffers.
//!
//! # Cancel safety (both backends)
//!
//! * `read`: dropping the future loses no bytes. On the reactor the `read(2)` happens only
//!   inside a single poll, so nothing is taken from the socket unless it is returned. On the ring,
//!   a receive the kernel completed after the drop is kept in the stream's stash and returned by
//!   the next read.
//! * `accept`: a connection accepted after the drop is closed, never leaked.
//! * `write`: a dropped write reports nothing; bytes it had handed to the kernel may have been
//!   sent (as with any socket write).

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::runtime::{self, Driver};
use crate::{coop, time};

enum Io {
    Poll(weir_reactor::Registration<OwnedFd>),
    #[cfg(target_os = "linux")]
    Uring {
        ring: weir_ring::Ring,
        fd: weir_ring::SharedFd,
        stash: weir_ring::Stash,
    },
}

impl Io {
    fn new(fd: OwnedFd) -> io::Result<Io> {
        let core = runtime::current();
        match &core.driver {
            Driver::Poll(reactor) => {
                SockRef::from(&fd).set_nonblocking(true)?;
                Ok(Io::Poll(reactor.register(fd)?))
            }
            #[cfg(target_os = "linux")]
            Driver::Uring { ring, .. } => Ok(Io::Uring {
                ring: ring.clone(),
                fd: std::sync::Arc::new(fd),
                stash: weir_ring::Stash::default(),
            }),
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Io::Poll(registration) => registration.get_ref().as_fd(),
            #[cfg(target_os = "linux")]
            Io::Uring { fd, .. } => fd.as_fd(),
        }
    }
}

fn resolve(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to use"))
}

/// A TCP listener.
///
/// # Examples
///
/// ```
/// use weir_net::{Runtime, TcpListener, TcpStream};
///
/// let rt = Runtime::new().expect("runtime");
/// rt.block_on(async {
///     let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
///     let addr = listener.local_addr().expect("addr");
///     let client = weir_net::spawn(async move {
///         let mut stream = TcpStream::connect(addr).await.expect("connect");
///         stream.write_all(b"ping".to_vec()).await.0.expect("write");
///     });
///     let (mut stream, _) = listener.accept().await.expect("accept");
///     let (n, buf) = stream.read(Vec::with_capacity(16)).await;
///     assert_eq!(&buf[..n.expect("read")], b"ping");
///     client.await.expect("client");
/// });
/// ```
pub struct TcpListener {
    io: Io,
}

impl TcpListener {
    /// Binds to `addr` (`SO_REUSEADDR`, backlog 1024).
    ///
    /// # Errors
    ///
    /// Resolving, `socket(2)`, `bind(2)` or `listen(2)` failed.
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let addr = resolve(addr)?;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        TcpListener::from_std(socket.into())
    }

    /// Adopts a bound, listening socket (for example one built with `socket2`, `SO_REUSEPORT`).
    ///
    /// # Errors
    ///
    /// Registering it with the reactor failed.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener {
            io: Io::new(listener.into())?,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.io.fd())
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
    }

    /// Accepts one connection.
    ///
    /// Cancel safety: dropping the future never leaks a connection (one accepted meanwhile is
    /// closed; the peer sees a reset).
    ///
    /// # Errors
    ///
    /// `accept4(2)` failed: `EMFILE`, `ECONNABORTED`... — the listener stays usable.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        coop::proceed().await;
        let (fd, peer) = match &self.io {
            Io::Poll(registration) => {
                registration
                    .io(weir_reactor::Direction::Read, |listener| {
                        let (socket, addr) = SockRef::from(listener).accept()?;
                        Ok((OwnedFd::from(socket), addr.as_socket()))
                    })
                    .await?
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => ring.accept(fd).await?,
        };
        let stream = TcpStream::from_fd(fd)?;
        let peer = match peer {
            Some(peer) => peer,
            None => stream.peer_addr()?,
        };
        Ok((stream, peer))
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A TCP connection with owned-buffer I/O: each operation takes its buffer and gives it back.
pub struct TcpStream {
    io: Io,
    timeouts: ReadTimeouts,
}

/// Deadlines a server puts on a connection's reads.
#[derive(Default)]
struct ReadTimeouts {
    /// Until the first byte arrives.
    first_byte: Option<std::time::Instant>,
    /// Between reads once data has flowed.
    idle: Option<std::time::Duration>,
    /// Set once a read returned data.
    seen_data: bool,
    /// Counts expiries, for the server's metrics.
    counter: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl TcpStream {
    fn from_fd(fd: OwnedFd) -> io::Result<TcpStream> {
        Ok(TcpStream {
            io: Io::new(fd)?,
            timeouts: ReadTimeouts::default(),
        })
    }

    /// Makes reads fail with `TimedOut` if no first byte arrives within `first_byte`, or if a
    /// later read waits longer than `idle` (the server's slow-client defence). Expiries are
    /// counted in `counter`.
    pub(crate) fn set_read_timeouts(
        &mut self,
        first_byte: Option<std::time::Duration>,
        idle: Option<std::time::Duration>,
        counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) {
        self.timeouts = ReadTimeouts {
            first_byte: first_byte.map(|d| std::time::Instant::now() + d),
            idle,
            seen_data: false,
            counter: Some(counter),
        };
    }

    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// Resolving, `socket(2)` or the connection failed (refused, unreachable...).
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let addr = resolve(addr)?;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        let stream = TcpStream::from_fd(socket.into())?;
        match &stream.io {
            Io::Poll(registration) => {
                match SockRef::from(registration.get_ref()).connect(&addr.into()) {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                        std::future::poll_fn(|cx| {
                            registration.poll_ready(weir_reactor::Direction::Write, cx)
                        })
                        .await;
                        if let Some(error) = SockRef::from(registration.get_ref()).take_error()? {
                            return Err(error);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => ring.connect(fd, addr).await?,
        }
        Ok(stream)
    }

    /// A second handle to the same connection (a duplicated descriptor), so that one task can
    /// read while another writes.
    ///
    /// # Errors
    ///
    /// `dup(2)` or the registration failed.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        let fd = self.io.fd().try_clone_to_owned()?;
        TcpStream::from_fd(fd)
    }

    /// Reads into `buf`'s spare capacity; `Ok(0)` is the end of the stream.
    ///
    /// On a connection accepted by a [`Server`](crate::server::Server) with read timeouts, a read
    /// that waits too long fails with `TimedOut`.
    ///
    /// Cancel safety: see the module docs — no received byte is ever lost.
    pub async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        let limit = if self.timeouts.seen_data {
            self.timeouts
                .idle
                .map(|idle| std::time::Instant::now() + idle)
        } else {
            self.timeouts.first_byte.or(self
                .timeouts
                .idle
                .map(|idle| std::time::Instant::now() + idle))
        };
        let Some(deadline) = limit else {
            return self.read_now(buf).await;
        };
        // The read is cancel-safe, so giving up at the deadline loses no byte (on the ring a
        // late completion goes to the stash). The caller's buffer must come back either way, so
        // the timed read fills a scratch buffer that may be dropped, then copies.
        let space = buf.bytes_total() - buf.bytes_init();
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let outcome = time::timeout(wait, self.read_now(Vec::with_capacity(space))).await;
        match outcome {
            Ok((Ok(n), scratch)) => {
                let mut buf = buf;
                let start = buf.bytes_init();
                // SAFETY: `n <= space`: the scratch buffer had `space` bytes of capacity; the
                // copy stays inside the caller's spare capacity.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        scratch.as_ptr(),
                        buf.stable_mut_ptr().wrapping_add(start),
                        n,
                    )
                };
                // SAFETY: the copy above initialised `n` bytes after `start`.
                unsafe { buf.set_init(start + n) };
                if n > 0 {
                    self.timeouts.seen_data = true;
                }
                (Ok(n), buf)
            }
            Ok((Err(error), _)) => (Err(error), buf),
            Err(_) => {
                if let Some(counter) = &self.timeouts.counter {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer sent nothing in time",
                    )),
                    buf,
                )
            }
        }
    }

    async fn read_now<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
        coop::proceed().await;
        match &self.io {
            Io::Poll(registration) => {
                let result = registration
                    .io_drained(weir_reactor::Direction::Read, |fd| {
                        let space = buf.bytes_total() - buf.bytes_init();
                        // SAFETY: read(2) into the buffer's spare capacity, which it owns.
                        let n = unsafe {
                            libc::read(
                                std::os::fd::AsRawFd::as_raw_fd(fd),
                                buf.stable_mut_ptr().wrapping_add(buf.bytes_init()).cast(),
                                space,
                            )
                        };
                        if n < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        let n = n as usize;
                        // A short read emptied the socket's receive queue (an end of stream,
                        // n == 0, stays ready so that every later read sees it too).
                        Ok((n, n > 0 && n < space))
                    })
                    .await;
                if let Ok(n) = result {
                    let init = buf.bytes_init() + n;
                    // SAFETY: the kernel initialised `n` more bytes after the old length.
                    unsafe { buf.set_init(init) };
                }
                (result, buf)
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, stash } => {
                // A receive dropped earlier may still be in the kernel: its bytes come first,
                // so wait for it to settle before receiving anew.
                while !stash.is_settled() {
                    crate::runtime::yield_now().await;
                }
                if !stash.is_empty() {
                    let start = buf.bytes_init();
                    let space = buf.bytes_total() - start;
                    // SAFETY: the buffer's own spare capacity, `space` bytes from `start`.
                    let spare = unsafe {
                        std::slice::from_raw_parts_mut(
                            buf.stable_mut_ptr().wrapping_add(start),
                            space,
                        )
                    };
                    let n = stash.take_into(spare);
                    // SAFETY: `take_into` initialised `n` bytes after `start`.
                    unsafe { buf.set_init(start + n) };
                    return (Ok(n), buf);
                }
                let start = buf.bytes_init();
                let (result, back) = ring
                    .recv_or_stash(fd, crate::buf::RingBuf(Tail { buf, start }), stash)
                    .await;
                let mut tail = back.0;
                if let Ok(n) = result {
                    // SAFETY: the kernel initialised `n` bytes after `start`.
                    unsafe { tail.buf.set_init(tail.start + n) };
                }
                (result, tail.buf)
            }
        }
    }

    /// Writes some of `buf`'s bytes; returns how many.
    pub async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        self.write_from(buf, 0).await
    }

    async fn write_from<B: IoBuf>(&mut self, buf: B, offset: usize) -> BufResult<usize, B> {
        coop::proceed().await;
        match &self.io {
            Io::Poll(registration) => {
                let result = registration
                    .io(weir_reactor::Direction::Write, |fd| {
                        // SAFETY: send(2) from the buffer's initialised bytes after `offset`.
                        let n = unsafe {
                            libc::send(
                                std::os::fd::AsRawFd::as_raw_fd(fd),
                                buf.stable_ptr().wrapping_add(offset).cast(),
                                buf.bytes_init() - offset,
                                libc::MSG_NOSIGNAL,
                            )
                        };
                        if n < 0 {
                            Err(io::Error::last_os_error())
                        } else {
                            Ok(n as usize)
                        }
                    })
                    .await;
                (result, buf)
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => {
                let (result, back) = ring
                    .send(fd, crate::buf::RingBuf(Skip { buf, offset }))
                    .await;
                (result, back.0.buf)
            }
        }
    }

    /// Writes all of `buf`.
    ///
    /// # Errors
    ///
    /// The first failed write (`BrokenPipe`, `ConnectionReset`...), or `WriteZero`.
    pub async fn write_all<B: IoBuf>(&mut self, buf: B) -> BufResult<(), B> {
        let mut written = 0;
        let mut buf = buf;
        while written < buf.bytes_init() {
            let (result, back) = self.write_from(buf, written).await;
            buf = back;
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Reads until `buf` holds `len` bytes (appending to what it holds).
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the stream ends first; any read error.
    pub async fn read_exact(&mut self, mut buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
        buf.reserve(len.saturating_sub(buf.len()));
        while buf.len() < len {
            let want = len - buf.len();
            let chunk = Vec::with_capacity(want);
            let (result, chunk) = self.read(chunk).await;
            match result {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
                Ok(_) => buf.extend_from_slice(&chunk),
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Shuts down one or both directions (`shutdown(2)`); `Shutdown::Write` is a half-close.
    ///
    /// # Errors
    ///
    /// `shutdown(2)` failed (not connected...).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.io.fd()).shutdown(how)
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `getpeername(2)` failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.io.fd())
            .peer_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.io.fd())
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
    }

    /// Sets `TCP_NODELAY`.
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.io.fd()).set_tcp_nodelay(on)
    }

    /// Sets `SO_LINGER` (`Some(0)`: close with a reset).
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_linger(&self, linger: Option<std::time::Duration>) -> io::Result<()> {
        SockRef::from(&self.io.fd()).set_linger(linger)
    }

    /// Reads with a deadline: `Err(TimedOut)` if nothing arrives within `limit` (no byte lost).
    pub async fn read_timeout<B: IoBufMut>(
        &mut self,
        buf: B,
        limit: std::time::Duration,
    ) -> Option<BufResult<usize, B>> {
        time::timeout(limit, self.read(buf)).await.ok()
    }
}

/// The part of a buffer after `start`, for receiving without overwriting what it holds.
pub(crate) struct Tail<B> {
    buf: B,
    start: usize,
}

impl<B: IoBufMut> Tail<B> {
    pub(crate) fn new(buf: B, start: usize) -> Self {
        Tail { buf, start }
    }

    /// Records that `n` bytes after `start` were filled.
    ///
    /// # Safety
    ///
    /// Those bytes must be initialised.
    pub(crate) unsafe fn set_inner_init(&mut self, n: usize) {
        // SAFETY: the caller's guarantee, shifted by `start`.
        unsafe { self.buf.set_init(self.start + n) };
    }

    pub(crate) fn into_inner(self) -> B {
        self.buf
    }
}

// SAFETY: forwards to `B` shifted by `start` (≤ its initialised length).
unsafe impl<B: IoBufMut> IoBuf for Tail<B> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `start <= bytes_init <= bytes_total`: inside the buffer.
        unsafe { self.buf.stable_ptr().add(self.start) }
    }
    fn bytes_init(&self) -> usize {
        0
    }
}

// SAFETY: as above.
unsafe impl<B: IoBufMut> IoBufMut for Tail<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: as above.
        unsafe { self.buf.stable_mut_ptr().add(self.start) }
    }
    fn bytes_total(&self) -> usize {
        self.buf.bytes_total() - self.start
    }
    unsafe fn set_init(&mut self, _n: usize) {
        // Applied by the caller with the offset added.
    }
}

/// A buffer's bytes after `offset`, for sending the rest of a partial write.
struct Skip<B> {
    buf: B,
    offset: usize,
}

// SAFETY: forwards to `B` shifted by `offset` (≤ its initialised length).
unsafe impl<B: IoBuf> IoBuf for Skip<B> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `offset <= bytes_init`: inside the buffer.
        unsafe { self.buf.stable_ptr().add(self.offset) }
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init() - self.offset
    }
}

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}
