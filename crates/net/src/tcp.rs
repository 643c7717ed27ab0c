//! TCP on both backends, with owned buffers.
//!
//! Cancel safety: as for every stream (see the `stream` module): a dropped read loses no bytes,
//! a dropped write reports nothing. A dropped `accept` never leaks a connection: one accepted
//! meanwhile is closed.

use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::coop;
use crate::stream::{Io, Stream};

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
    inner: Stream,
}

impl TcpStream {
    fn from_fd(fd: OwnedFd) -> io::Result<TcpStream> {
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
        match &stream.inner.io {
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

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `getpeername(2)` failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        SockRef::from(&self.inner.io.fd())
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
        SockRef::from(&self.inner.io.fd())
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
        SockRef::from(&self.inner.io.fd()).set_tcp_nodelay(on)
    }

    /// Sets `SO_LINGER` (`Some(0)`: close with a reset).
    ///
    /// # Errors
    ///
    /// `setsockopt(2)` failed.
    pub fn set_linger(&self, linger: Option<std::time::Duration>) -> io::Result<()> {
        SockRef::from(&self.inner.io.fd()).set_linger(linger)
    }

    crate::stream::stream_methods!(TcpStream);
}

crate::compat::compat_impls!(TcpStream);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("peer_addr", &self.peer_addr().ok())
            .finish()
    }
}
