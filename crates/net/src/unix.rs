//! Unix-domain sockets on both backends: streams with the same I/O as TCP, and datagrams.
//!
//! Cancel safety: streams as TCP (a dropped read loses no bytes; a dropped accept never leaks a
//! connection). Datagram sends and receives run their syscall only inside a poll, on both
//! backends, so a dropped `recv_from` loses no datagram.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::SocketAddr;
use std::path::Path;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::coop;
use crate::driver::Socket as DriverSocket;
use crate::io::datagram::DatagramSocket;
use crate::stream::Stream;

/// A kernel-reported address as the standard library's type: a path, or unnamed (a client
/// that never bound, a socket pair).
fn unix_addr(addr: SockAddr) -> io::Result<SocketAddr> {
    if let Some(addr) = addr.as_unix() {
        return Ok(addr);
    }
    if addr.is_unnamed() {
        // The standard library builds unnamed addresses only from a socket: ask one, once.
        static UNNAMED: std::sync::OnceLock<io::Result<SocketAddr>> = std::sync::OnceLock::new();
        return match UNNAMED
            .get_or_init(|| std::os::unix::net::UnixDatagram::unbound()?.local_addr())
        {
            Ok(addr) => Ok(addr.clone()),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "not a pathname or unnamed Unix address (abstract names are not supported)",
    ))
}

/// A Unix-domain stream listener.
///
/// # Examples
///
/// ```
/// use weir_net::{Runtime, UnixListener, UnixStream};
///
/// let dir = std::env::temp_dir().join(format!("weir-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).expect("dir");
/// let path = dir.join("listener.sock");
/// let _ = std::fs::remove_file(&path);
/// let rt = Runtime::new().expect("runtime");
/// rt.block_on(async {
///     let listener = UnixListener::bind(&path).expect("bind");
///     let client = weir_net::spawn({
///         let path = path.clone();
///         async move {
///             let mut stream = UnixStream::connect(&path).await.expect("connect");
///             stream.write_all(b"ping".to_vec()).await.0.expect("write");
///         }
///     });
///     let (mut stream, _) = listener.accept().await.expect("accept");
///     let (result, buf) = stream.read_exact(Vec::new(), 4).await;
///     result.expect("read");
///     assert_eq!(buf, b"ping");
///     client.await.expect("client");
/// });
/// std::fs::remove_dir_all(&dir).expect("cleanup");
/// ```
pub struct UnixListener {
    socket: DriverSocket,
}

impl UnixListener {
    /// Binds to `path` (which must not exist) and listens (backlog 1024).
    ///
    /// # Errors
    ///
    /// `socket(2)`, `bind(2)` (`AddrInUse` if the path exists) or `listen(2)` failed.
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixListener> {
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        socket.listen(1024)?;
        Ok(UnixListener {
            socket: crate::runtime::socket(socket.into())?,
        })
    }

    /// Adopts a bound, listening socket.
    ///
    /// # Errors
    ///
    /// Registering it with the reactor failed.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            socket: crate::runtime::socket(listener.into())?,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(SockRef::from(&self.socket.fd()).local_addr()?)
    }

    /// Accepts one connection.
    ///
    /// Cancel safety: dropping the future never leaks a connection (one accepted meanwhile is
    /// closed).
    ///
    /// # Errors
    ///
    /// `accept4(2)` failed: `EMFILE`, `ECONNABORTED`... — the listener stays usable.
    pub async fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        coop::proceed().await;
        let (accepted, peer) = self.socket.accept().await?;
        let peer = unix_addr(peer)?;
        let stream = UnixStream {
            inner: Stream::from_accepted(accepted)?,
        };
        Ok((stream, peer))
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

/// A Unix-domain stream connection with owned-buffer I/O, like [`TcpStream`](crate::TcpStream).
pub struct UnixStream {
    inner: Stream,
}

impl UnixStream {
    fn from_fd(fd: OwnedFd) -> io::Result<UnixStream> {
        Ok(UnixStream {
            inner: Stream::from_fd(fd)?,
        })
    }

    /// Connects to the listener at `path`.
    ///
    /// # Errors
    ///
    /// `socket(2)` or `connect(2)` failed (`NotFound`, `ConnectionRefused`...).
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub async fn connect(path: impl AsRef<Path>) -> io::Result<UnixStream> {
        let addr = SockAddr::unix(path)?;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        let stream = UnixStream::from_fd(socket.into())?;
        stream.inner.socket().connect(&addr).await?;
        Ok(stream)
    }

    /// A connected pair (`socketpair(2)`).
    ///
    /// # Errors
    ///
    /// `socketpair(2)` or the registration failed.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM, None)?;
        Ok((
            UnixStream::from_fd(a.into())?,
            UnixStream::from_fd(b.into())?,
        ))
    }

    /// Adopts a connected standard-library stream.
    ///
    /// # Errors
    ///
    /// The registration failed.
    pub fn from_std(stream: std::os::unix::net::UnixStream) -> io::Result<UnixStream> {
        UnixStream::from_fd(stream.into())
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(SockRef::from(&self.inner.fd()).local_addr()?)
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `getpeername(2)` failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(SockRef::from(&self.inner.fd()).peer_addr()?)
    }

    crate::stream::stream_methods!(UnixStream);
}

crate::compat::compat_impls!(UnixStream);
crate::stream::fd_impls!(UnixStream, inner);
crate::stream::fd_impls!(UnixListener, socket);
crate::stream::fd_impls!(UnixDatagram, io);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}

/// A Unix-domain datagram socket.
///
/// # Examples
///
/// ```
/// use weir_net::{Runtime, UnixDatagram};
///
/// let rt = Runtime::new().expect("runtime");
/// rt.block_on(async {
///     let (a, b) = UnixDatagram::pair().expect("pair");
///     a.send(b"hello".to_vec()).await.0.expect("send");
///     let (n, buf) = b.recv(Vec::with_capacity(64)).await;
///     assert_eq!(&buf[..n.expect("recv")], b"hello");
/// });
/// ```
pub struct UnixDatagram {
    io: DatagramSocket,
}

impl UnixDatagram {
    fn from_socket(socket: Socket) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram {
            io: DatagramSocket::new(crate::runtime::socket(socket.into())?),
        })
    }

    /// A socket bound to `path`.
    ///
    /// # Errors
    ///
    /// `socket(2)` or `bind(2)` failed.
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub fn bind(path: impl AsRef<Path>) -> io::Result<UnixDatagram> {
        let socket = Socket::new(Domain::UNIX, Type::DGRAM, None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        UnixDatagram::from_socket(socket)
    }

    /// A socket bound to no address (it can send, and receive replies only once connected).
    ///
    /// # Errors
    ///
    /// `socket(2)` failed.
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_socket(Socket::new(Domain::UNIX, Type::DGRAM, None)?)
    }

    /// A connected pair (`socketpair(2)`).
    ///
    /// # Errors
    ///
    /// `socketpair(2)` failed.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::DGRAM, None)?;
        Ok((UnixDatagram::from_socket(a)?, UnixDatagram::from_socket(b)?))
    }

    /// Sets the default destination for [`send`](UnixDatagram::send) and the only source
    /// [`recv`](UnixDatagram::recv) accepts.
    ///
    /// # Errors
    ///
    /// `connect(2)` failed (`NotFound`...).
    pub fn connect(&self, path: impl AsRef<Path>) -> io::Result<()> {
        SockRef::from(&self.io.fd()).connect(&SockAddr::unix(path)?)
    }

    /// The local address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(SockRef::from(&self.io.fd()).local_addr()?)
    }

    /// Sends `buf`'s bytes as one datagram to `path`.
    ///
    /// Cancel safety: not cancel-safe: a dropped send may have sent the datagram.
    pub async fn send_to<B: IoBuf>(&self, buf: B, path: impl AsRef<Path>) -> BufResult<usize, B> {
        let addr = match SockAddr::unix(path) {
            Ok(addr) => addr,
            Err(e) => return (Err(e), buf),
        };
        self.io.send(buf, Some(&addr)).await
    }

    /// Sends `buf`'s bytes as one datagram to the connected peer.
    ///
    /// Cancel safety: not cancel-safe, as [`send_to`](UnixDatagram::send_to).
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        self.io.send(buf, None).await
    }

    /// Receives one datagram into `buf`'s spare capacity; a longer datagram is truncated.
    /// Returns the length received and the sender.
    ///
    /// Cancel safety: cancel-safe (no datagram is lost).
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (result, buf) = self.io.recv(buf).await;
        (
            result.and_then(|got| Ok((got.len, unix_addr(got.from)?))),
            buf,
        )
    }

    /// Receives one datagram from the connected peer into `buf`'s spare capacity.
    ///
    /// Cancel safety: cancel-safe (no datagram is lost).
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        let (result, buf) = self.io.recv(buf).await;
        (result.map(|got| got.len), buf)
    }

    /// Shuts down one or both directions.
    ///
    /// # Errors
    ///
    /// `shutdown(2)` failed.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.io.fd()).shutdown(how)
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}
