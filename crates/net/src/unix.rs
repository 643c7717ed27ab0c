//! Unix-domain sockets on both backends: streams with the same I/O as TCP, and datagrams.
//!
//! Cancel safety: streams as TCP (a dropped read loses no bytes; a dropped accept never leaks a
//! connection). Datagram sends and receives run their syscall only inside a poll, on both
//! backends, so a dropped `recv_from` loses no datagram.

use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::os::unix::net::SocketAddr;
use std::path::Path;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::coop;
use crate::stream::{Io, Stream};

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

fn in_progress(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EINPROGRESS | libc::EAGAIN))
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
    io: Io,
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
            io: Io::new(socket.into())?,
        })
    }

    /// Adopts a bound, listening socket.
    ///
    /// # Errors
    ///
    /// Registering it with the reactor failed.
    pub fn from_std(listener: std::os::unix::net::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener {
            io: Io::new(listener.into())?,
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(SockRef::from(&self.io.fd()).local_addr()?)
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
        let fd = match &self.io {
            Io::Poll(registration) => {
                registration
                    .io(weir_reactor::Direction::Read, |listener| {
                        Ok(OwnedFd::from(SockRef::from(listener).accept()?.0))
                    })
                    .await?
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => ring.accept(fd).await?.0,
        };
        let peer = unix_addr(SockRef::from(&fd).peer_addr()?)?;
        Ok((UnixStream::from_fd(fd)?, peer))
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
        socket.set_nonblocking(true)?;
        let stream = UnixStream::from_fd(socket.into())?;
        match SockRef::from(&stream.inner.io.fd()).connect(&addr) {
            Ok(()) => {}
            Err(e) if in_progress(&e) => stream.inner.io.finish_connect().await?,
            Err(e) => return Err(e),
        }
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
        unix_addr(SockRef::from(&self.inner.io.fd()).local_addr()?)
    }

    /// The peer's address.
    ///
    /// # Errors
    ///
    /// `getpeername(2)` failed.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        unix_addr(SockRef::from(&self.inner.io.fd()).peer_addr()?)
    }

    crate::stream::stream_methods!(UnixStream);
}

crate::compat::compat_impls!(UnixStream);

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
    io: Io,
}

impl UnixDatagram {
    fn from_socket(socket: Socket) -> io::Result<UnixDatagram> {
        socket.set_nonblocking(true)?;
        Ok(UnixDatagram {
            io: Io::new(socket.into())?,
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
    pub async fn send_to<B: IoBuf>(&self, buf: B, path: impl AsRef<Path>) -> BufResult<usize, B> {
        let addr = match SockAddr::unix(path) {
            Ok(addr) => addr,
            Err(e) => return (Err(e), buf),
        };
        coop::proceed().await;
        let result = self
            .io
            .ready_io(weir_reactor::Direction::Write, |fd| {
                SockRef::from(&fd).send_to(initialised(&buf), &addr)
            })
            .await;
        (result, buf)
    }

    /// Sends `buf`'s bytes as one datagram to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        coop::proceed().await;
        let result = self
            .io
            .ready_io(weir_reactor::Direction::Write, |fd| {
                SockRef::from(&fd).send(initialised(&buf))
            })
            .await;
        (result, buf)
    }

    /// Receives one datagram into `buf`'s spare capacity; a longer datagram is truncated.
    /// Returns the length received and the sender.
    pub async fn recv_from<B: IoBufMut>(&self, mut buf: B) -> BufResult<(usize, SocketAddr), B> {
        coop::proceed().await;
        let result = self
            .io
            .ready_io(weir_reactor::Direction::Read, |fd| {
                SockRef::from(&fd).recv_from(spare(&mut buf))
            })
            .await
            .and_then(|(n, from)| {
                // SAFETY: the kernel initialised `n` bytes after the old length.
                unsafe { buf.set_init(buf.bytes_init() + n) };
                Ok((n, unix_addr(from)?))
            });
        (result, buf)
    }

    /// Receives one datagram from the connected peer into `buf`'s spare capacity.
    pub async fn recv<B: IoBufMut>(&self, mut buf: B) -> BufResult<usize, B> {
        coop::proceed().await;
        let result = self
            .io
            .ready_io(weir_reactor::Direction::Read, |fd| {
                SockRef::from(&fd).recv(spare(&mut buf))
            })
            .await;
        if let Ok(n) = result {
            // SAFETY: the kernel initialised `n` bytes after the old length.
            unsafe { buf.set_init(buf.bytes_init() + n) };
        }
        (result, buf)
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

/// The buffer's initialised bytes.
fn initialised<B: IoBuf>(buf: &B) -> &[u8] {
    // SAFETY: `IoBuf` guarantees `bytes_init` initialised bytes at `stable_ptr`, borrowed with
    // `buf`.
    unsafe { std::slice::from_raw_parts(buf.stable_ptr(), buf.bytes_init()) }
}

/// The buffer's spare capacity, for the kernel to fill.
fn spare<B: IoBufMut>(buf: &mut B) -> &mut [MaybeUninit<u8>] {
    let start = buf.bytes_init();
    let len = buf.bytes_total() - start;
    let at = buf
        .stable_mut_ptr()
        .wrapping_add(start)
        .cast::<MaybeUninit<u8>>();
    // SAFETY: `IoBufMut` guarantees `bytes_total` writable bytes at `stable_mut_ptr`, borrowed
    // mutably with `buf`; `at` is `start <= bytes_total` bytes in; `MaybeUninit` asks nothing of
    // their contents.
    unsafe { std::slice::from_raw_parts_mut(at, len) }
}
