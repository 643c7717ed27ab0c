//! TCP on both backends, with owned buffers.
//!
//! Cancel safety: as for every stream (see the `stream` module): a dropped read loses no bytes,
//! a dropped write reports nothing. A dropped `accept` loses no connection and leaks none: one
//! accepted meanwhile waits for the next accept, or is closed with the listener.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::coop;
use crate::driver::{self, Socket as DriverSocket};
use crate::stream::Stream;

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
    socket: DriverSocket,
    acceptor: driver::Acceptor,
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
        let socket = TcpSocket::new_for(addr)?;
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(1024)
    }

    /// Adopts a bound, listening socket (for example one built with `socket2`, `SO_REUSEPORT`).
    ///
    /// # Errors
    ///
    /// Registering it with the reactor failed.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        let socket = crate::runtime::socket(listener.into())?;
        Ok(TcpListener {
            acceptor: socket.acceptor(),
            socket,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.socket.fd())
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
    }

    /// Accepts one connection.
    ///
    /// On io_uring the first accept arms one multishot accept for the listener and it stays
    /// armed: connections the kernel accepts while no accept waits are queued (a few; beyond
    /// that the kernel's backlog holds them) for the next calls.
    ///
    /// Cancel safety: dropping the future loses no connection: one accepted meanwhile waits for
    /// the next accept, or is closed when the listener is dropped (the peer sees a reset).
    ///
    /// # Errors
    ///
    /// `accept4(2)` failed: `EMFILE`, `ECONNABORTED`... — the listener stays usable.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        coop::proceed().await;
        let (accepted, peer) = self.socket.accept_with(&self.acceptor).await?;
        adopt(accepted, &peer)
    }
}

/// An accepted connection as a stream of this thread's driver, with its peer's address.
fn adopt(
    accepted: driver::Accepted,
    peer: &socket2::SockAddr,
) -> io::Result<(TcpStream, SocketAddr)> {
    let stream = TcpStream {
        inner: Stream::from_accepted(accepted)?,
    };
    let peer = match driver::ip_addr(peer) {
        Ok(peer) => peer,
        Err(_) => stream.peer_addr()?,
    };
    Ok((stream, peer))
}

impl TcpListener {
    /// For a listener about to close: one connection its multishot accept had already taken
    /// from the kernel and no accept returned yet, or `None` once there are none (at once on
    /// the reactor). Served instead of dropped, such a connection's request is not reset.
    pub(crate) async fn take_accepted(&self) -> Option<io::Result<(TcpStream, SocketAddr)>> {
        let taken = self.socket.take_accepted(&self.acceptor).await?;
        Some(taken.and_then(|(accepted, peer)| adopt(accepted, &peer)))
    }

    /// Stops taking connections from the kernel until the next accept (see
    /// `driver::Acceptor::pause`).
    pub(crate) fn pause_accepting(&self) {
        self.acceptor.pause();
    }

    /// Multishot accepts on or off (off: each accept takes exactly one connection).
    pub(crate) fn set_multishot_accept(&self, on: bool) {
        self.acceptor.set_multishot(on);
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
    inner: Stream,
}

impl TcpStream {
    fn from_fd(fd: crate::sys::OwnedSock) -> io::Result<TcpStream> {
        Ok(TcpStream {
            inner: Stream::from_fd(fd)?,
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
        self.inner.set_read_timeouts(first_byte, idle, counter);
    }

    /// Connects to `addr`: a socket address, or a name (`"example.com:443"`,
    /// `("example.com", 443)`) resolved on another thread, so the executor never blocks on
    /// DNS. Each resolved address is tried in turn until one connects.
    ///
    /// # Errors
    ///
    /// Resolving failed or found nothing, or every address failed: the last address's error
    /// (refused, unreachable...).
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub async fn connect<A>(addr: A) -> io::Result<TcpStream>
    where
        A: ToSocketAddrs + Send + 'static,
    {
        let mut last = None;
        for addr in crate::resolve::resolve(addr).await? {
            let attempt = match TcpSocket::new_for(addr) {
                Ok(socket) => socket.connect(addr).await,
                Err(error) => Err(error),
            };
            match attempt {
                Ok(stream) => return Ok(stream),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to")
        }))
    }

    /// Connects `socket` (configured, perhaps bound) to `addr`.
    async fn connect_socket(socket: Socket, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::from_fd(socket.into())?;
        stream.inner.socket().connect(&addr.into()).await?;
        Ok(stream)
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `getpeername(2)` failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(&self.inner.fd()).peer_addr())
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(&self.inner.fd()).local_addr())
    }

    /// Sets `TCP_NODELAY`.
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        SockRef::from(&self.inner.fd()).set_tcp_nodelay(on)
    }

    /// Sets `SO_LINGER` (`Some(0)`: close with a reset).
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_linger(&self, linger: Option<std::time::Duration>) -> io::Result<()> {
        SockRef::from(&self.inner.fd()).set_linger(linger)
    }

    /// Splits the stream into a read half and a write half that two tasks can own, as a
    /// proxy's two copy loops do. The halves are two descriptors of one connection, each with
    /// its own receive and send state on the runtime. A send still in flight finishes first;
    /// bytes already received stay with the read half.
    ///
    /// Dropping the write half half-closes the connection (`shutdown(Write)`: the peer reads
    /// the end of the stream); the connection closes once both halves are gone.
    ///
    /// # Errors
    ///
    /// A send in flight failed, or `dup(2)` or the second registration failed.
    pub async fn into_split(mut self) -> io::Result<(OwnedReadHalf, OwnedWriteHalf)> {
        std::future::poll_fn(|cx| self.inner.poll_flush(cx)).await?;
        let write = self.inner.try_clone()?;
        Ok((
            OwnedReadHalf { inner: self.inner },
            OwnedWriteHalf { inner: write },
        ))
    }

    /// Moves up to `len` bytes from this stream to `to` without copying them through user
    /// space, once some are available: `splice(2)` from the socket into a pipe this stream
    /// keeps, then from the pipe into `to` (ring ops on io_uring, non-blocking `splice(2)`s on
    /// the reactor). Returns how many bytes reached `to`; `Ok(0)` is the end of this stream
    /// (`to` is left open: half-close it with `shutdown(Write)` or by dropping a write half).
    ///
    /// A send still in flight on `to` finishes first. If this stream's read state holds bytes
    /// (a read took part of a chunk, a dropped `read_exact` gave its bytes back) or has a
    /// receive armed (io_uring multishot reads), the call copies through it instead, one read
    /// and a `write_all`, so no byte is lost or reordered ([`io_stats`] counts these in
    /// `splice_fallbacks`). Off Linux it always copies.
    ///
    /// Cancel safety: not cancel-safe, as a write: bytes may have reached `to` unreported. No
    /// byte is lost: bytes the dropped call had moved into the pipe stay in it, and the next
    /// `splice_to` of this stream sends them first (to its own destination, before anything
    /// else). A read of this stream does not see them, so after dropping a splice, go on
    /// splicing (as a proxy does) or drop the stream.
    ///
    /// [`io_stats`]: crate::io_stats
    ///
    /// # Errors
    ///
    /// Either socket failed (`ConnectionReset`, `BrokenPipe`...), `pipe2(2)` failed, or
    /// `WriteZero`.
    pub async fn splice_to(&mut self, to: &mut TcpStream, len: usize) -> io::Result<usize> {
        self.inner.splice_to(&mut to.inner, len).await
    }

    crate::stream::stream_methods!(TcpStream);
}

/// The read half of a [`TcpStream`], from [`TcpStream::into_split`].
pub struct OwnedReadHalf {
    inner: Stream,
}

impl OwnedReadHalf {
    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `getpeername(2)` failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(&self.inner.fd()).peer_addr())
    }

    /// Moves up to `len` bytes from this half to `to`, another connection's write half,
    /// without copying them through user space: a proxy's copy loop. As
    /// [`TcpStream::splice_to`], with the same cancel safety.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::splice_to`].
    pub async fn splice_to(&mut self, to: &mut OwnedWriteHalf, len: usize) -> io::Result<usize> {
        self.inner.splice_to(&mut to.inner, len).await
    }

    crate::stream::read_methods!();
}

/// The write half of a [`TcpStream`], from [`TcpStream::into_split`]; dropping it half-closes
/// the connection.
pub struct OwnedWriteHalf {
    inner: Stream,
}

impl OwnedWriteHalf {
    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `getpeername(2)` failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        ip_addr(SockRef::from(&self.inner.fd()).peer_addr())
    }

    crate::stream::write_methods!();
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        // The peer sees the end of the stream although the read half keeps the socket open.
        let _ = self.inner.shutdown(Shutdown::Write);
    }
}

crate::stream::fd_impls!(OwnedReadHalf, inner);
crate::stream::fd_impls!(OwnedWriteHalf, inner);

impl fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedReadHalf")
            .field("peer", &self.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedWriteHalf")
            .field("peer", &self.peer_addr().ok())
            .finish_non_exhaustive()
    }
}

/// An IP socket address from `getpeername`/`getsockname`.
fn ip_addr(addr: io::Result<socket2::SockAddr>) -> io::Result<SocketAddr> {
    addr?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
}

crate::compat::compat_impls!(TcpStream);
crate::stream::fd_impls!(TcpStream, inner);
crate::stream::fd_impls!(TcpListener, socket);
crate::stream::fd_impls!(TcpSocket, socket, socket2);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

/// A TCP socket before it connects or listens: set its options, perhaps bind it, then
/// [`connect`](TcpSocket::connect) or [`listen`](TcpSocket::listen).
///
/// # Examples
///
/// ```
/// use weir_net::{Runtime, TcpSocket};
///
/// let rt = Runtime::new().expect("runtime");
/// rt.block_on(async {
///     let server = TcpSocket::new_v4().expect("socket");
///     server.set_reuseport(true).expect("reuseport");
///     server.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
///     let listener = server.listen(128).expect("listen");
///     let addr = listener.local_addr().expect("addr");
///
///     let client = TcpSocket::new_v4().expect("socket");
///     client.set_nodelay(true).expect("nodelay");
///     client.bind("127.0.0.1:0".parse().expect("addr")).expect("bind before connect");
///     let from = client.local_addr().expect("addr");
///     let _stream = client.connect(addr).await.expect("connect");
///     let (_, peer) = listener.accept().await.expect("accept");
///     assert_eq!(peer, from);
/// });
/// ```
pub struct TcpSocket {
    socket: Socket,
}

impl TcpSocket {
    /// A new IPv4 TCP socket.
    ///
    /// # Errors
    ///
    /// `socket(2)` failed.
    pub fn new_v4() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV4)
    }

    /// A new IPv6 TCP socket.
    ///
    /// # Errors
    ///
    /// `socket(2)` failed.
    pub fn new_v6() -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::IPV6)
    }

    /// A new TCP socket of `addr`'s family.
    ///
    /// # Errors
    ///
    /// `socket(2)` failed.
    pub fn new_for(addr: SocketAddr) -> io::Result<TcpSocket> {
        TcpSocket::new(Domain::for_address(addr))
    }

    fn new(domain: Domain) -> io::Result<TcpSocket> {
        Ok(TcpSocket {
            socket: Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
        })
    }

    /// Sets `SO_REUSEADDR`.
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_reuseaddr(&self, on: bool) -> io::Result<()> {
        self.socket.set_reuse_address(on)
    }

    /// Sets `SO_REUSEPORT` (several listeners on one port, the kernel spreading connections).
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    #[cfg(unix)]
    pub fn set_reuseport(&self, on: bool) -> io::Result<()> {
        self.socket.set_reuse_port(on)
    }

    /// Sets `SO_SNDBUF`.
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_send_buffer_size(&self, bytes: usize) -> io::Result<()> {
        self.socket.set_send_buffer_size(bytes)
    }

    /// Sets `SO_RCVBUF`.
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_recv_buffer_size(&self, bytes: usize) -> io::Result<()> {
        self.socket.set_recv_buffer_size(bytes)
    }

    /// Sets `SO_KEEPALIVE`.
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_keepalive(&self, on: bool) -> io::Result<()> {
        self.socket.set_keepalive(on)
    }

    /// Sets `SO_LINGER` (`Some(0)`: close with a reset).
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_linger(&self, linger: Option<std::time::Duration>) -> io::Result<()> {
        self.socket.set_linger(linger)
    }

    /// Sets `TCP_NODELAY` (kept by the connected stream).
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.socket.set_tcp_nodelay(on)
    }

    /// Binds to `addr` (before `listen`, or before `connect` to choose the source address).
    ///
    /// # Errors
    ///
    /// `bind(2)` failed (`AddrInUse`...).
    pub fn bind(&self, addr: SocketAddr) -> io::Result<()> {
        self.socket.bind(&addr.into())
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
    }

    /// Listens with room for `backlog` pending connections.
    ///
    /// # Errors
    ///
    /// `listen(2)` failed (not bound...), or the registration failed.
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub fn listen(self, backlog: u32) -> io::Result<TcpListener> {
        self.socket
            .listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
        TcpListener::from_std(self.socket.into())
    }

    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// The connection failed (refused, unreachable...).
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub async fn connect(self, addr: SocketAddr) -> io::Result<TcpStream> {
        TcpStream::connect_socket(self.socket, addr).await
    }
}

impl fmt::Debug for TcpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpSocket")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
