//! UDP on both backends, with owned buffers.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::coop;
use crate::runtime::{self, Driver};

enum Io {
    Poll(weir_reactor::Registration<OwnedFd>),
    #[cfg(target_os = "linux")]
    Uring {
        ring: weir_ring::Ring,
        fd: weir_ring::SharedFd,
    },
}

/// A UDP socket.
///
/// Cancel safety: dropping `recv_from` loses no datagram on the reactor (it is only taken from
/// the socket inside a poll that returns it). On the ring a datagram the kernel delivered to a
/// dropped receive is lost — as a datagram may be anyway; `send_to` reports nothing when dropped.
///
/// # Examples
///
/// ```
/// use weir_net::{Runtime, UdpSocket};
///
/// let rt = Runtime::new().expect("runtime");
/// rt.block_on(async {
///     let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
///     let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
///     let to = b.local_addr().expect("addr");
///     a.send_to(b"hello".to_vec(), to).await.0.expect("send");
///     let (got, buf) = b.recv_from(Vec::with_capacity(64)).await;
///     let (n, from) = got.expect("recv");
///     assert_eq!(&buf[..n], b"hello");
///     assert_eq!(from, a.local_addr().expect("addr"));
/// });
/// ```
pub struct UdpSocket {
    io: Io,
}

impl UdpSocket {
    /// Binds a UDP socket to `addr`.
    ///
    /// # Errors
    ///
    /// Resolving, `socket(2)` or `bind(2)` failed.
    ///
    /// # Panics
    ///
    /// Outside a Weir runtime.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let fd: OwnedFd = socket.into();
        let core = runtime::current();
        let io = match &core.driver {
            Driver::Poll(reactor) => Io::Poll(reactor.register(fd)?),
            #[cfg(target_os = "linux")]
            Driver::Uring { ring, .. } => Io::Uring {
                ring: ring.clone(),
                fd: std::sync::Arc::new(fd),
            },
        };
        Ok(UdpSocket { io })
    }

    fn sock(&self) -> SockRef<'_> {
        match &self.io {
            Io::Poll(registration) => SockRef::from(registration.get_ref()),
            #[cfg(target_os = "linux")]
            Io::Uring { fd, .. } => SockRef::from(&**fd),
        }
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock()
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
    }

    /// Connects the socket: `send`/`recv` then talk to `addr` only.
    ///
    /// # Errors
    ///
    /// `connect(2)` failed.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        self.sock().connect(&addr.into())
    }

    /// Sends `buf` as one datagram to `addr`.
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: SocketAddr) -> BufResult<usize, B> {
        coop::proceed().await;
        match &self.io {
            Io::Poll(registration) => {
                let to = SockAddr::from(addr);
                let result = registration
                    .io(weir_reactor::Direction::Write, |fd| {
                        // SAFETY: the buffer's initialised bytes, which it owns.
                        let bytes = unsafe {
                            std::slice::from_raw_parts(buf.stable_ptr(), buf.bytes_init())
                        };
                        SockRef::from(fd).send_to(bytes, &to)
                    })
                    .await;
                (result, buf)
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd } => {
                let (result, back) = ring.send_to(fd, crate::buf::RingBuf(buf), addr).await;
                (result, back.0)
            }
        }
    }

    /// Receives one datagram into `buf`'s spare capacity, with its sender. A datagram longer
    /// than the space is truncated to fit.
    pub async fn recv_from<B: IoBufMut>(&self, mut buf: B) -> BufResult<(usize, SocketAddr), B> {
        coop::proceed().await;
        let start = buf.bytes_init();
        match &self.io {
            Io::Poll(registration) => {
                let result = registration
                    .io(weir_reactor::Direction::Read, |fd| {
                        let space = buf.bytes_total() - start;
                        // SAFETY: the buffer's spare capacity, viewed as possibly uninitialised
                        // bytes, which `recv_from` only writes.
                        let spare = unsafe {
                            std::slice::from_raw_parts_mut(
                                buf.stable_mut_ptr()
                                    .wrapping_add(start)
                                    .cast::<std::mem::MaybeUninit<u8>>(),
                                space,
                            )
                        };
                        let (n, from) = SockRef::from(fd).recv_from(spare)?;
                        let from = from.as_socket().ok_or_else(|| {
                            io::Error::new(io::ErrorKind::InvalidData, "not an IP peer")
                        })?;
                        Ok((n, from))
                    })
                    .await;
                if let Ok((n, _)) = result {
                    // SAFETY: `recv_from` initialised `n` bytes after `start`.
                    unsafe { buf.set_init(start + n) };
                }
                (result, buf)
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd } => {
                let (result, back) = ring
                    .recv_from(
                        fd,
                        crate::buf::RingBuf(crate::stream::Tail::new(buf, start)),
                    )
                    .await;
                let mut tail = back.0;
                let result = result.and_then(|(n, from, _truncated)| {
                    // SAFETY: the kernel initialised `n` bytes after `start`.
                    unsafe { tail.set_inner_init(n) };
                    from.map(|from| (n, from))
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP peer"))
                });
                (result, tail.into_inner())
            }
        }
    }

    /// Receives one datagram into a buffer from the runtime's pool (truncated to the pool's
    /// buffer size), with its sender. The socket's readiness is awaited first, so a waiting
    /// receive holds no buffer; an empty pool makes it wait, never fail.
    ///
    /// Cancel safety: as [`recv_from`](UdpSocket::recv_from).
    ///
    /// # Errors
    ///
    /// The receive failed, or the pool could not be set up.
    pub async fn recv_pooled(&self) -> io::Result<(weir_bufpool::Buf, SocketAddr)> {
        match &self.io {
            Io::Poll(registration) => {
                std::future::poll_fn(|cx| {
                    registration.poll_ready(weir_reactor::Direction::Read, cx)
                })
                .await;
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd } => {
                ring.poll_add(fd, libc::POLLIN as u32).await?;
            }
        }
        let pool = runtime::current().pooled()?.pool.clone();
        let buf = pool.get().await;
        let (received, buf) = self.recv_from(buf).await;
        received.map(|(_, from)| (buf, from))
    }

    /// Sends to the connected peer.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        match self.sock().peer_addr().map(|a| a.as_socket()) {
            Ok(Some(peer)) => self.send_to(buf, peer).await,
            Ok(None) => (
                Err(io::Error::new(io::ErrorKind::InvalidData, "not an IP peer")),
                buf,
            ),
            Err(error) => (Err(error), buf),
        }
    }

    /// Receives from the connected peer.
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        let (result, buf) = self.recv_from(buf).await;
        (result.map(|(n, _)| n), buf)
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local_addr", &self.local_addr().ok())
            .finish()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match &self.io {
            Io::Poll(registration) => registration.get_ref().as_fd(),
            #[cfg(target_os = "linux")]
            Io::Uring { fd, .. } => fd.as_fd(),
        }
    }
}
