//! UDP on both backends, with owned buffers.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver;
use crate::io::datagram::DatagramSocket;

/// A UDP socket.
///
/// Cancel safety: dropping a receive loses no datagram on either backend (one the kernel
/// delivered to a dropped receive is returned by the next); a dropped send reports nothing (the
/// datagram may have gone).
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
    io: DatagramSocket,
    /// The peer of [`connect`](UdpSocket::connect), for `send`'s checks without a syscall.
    peer: OnceLock<SocketAddr>,
}

/// What [`UdpSocket::recv_msg`] received: the length, the sender, and whether the datagram was
/// longer than the buffer's spare capacity and was cut to fit (`MSG_TRUNC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received into the buffer.
    pub len: usize,
    /// The sender.
    pub from: SocketAddr,
    /// `true` if the datagram was longer than the buffer's spare capacity: its end was lost.
    pub truncated: bool,
}

impl UdpSocket {
    /// Binds a UDP socket to `addr`.
    ///
    /// # Errors
    ///
    /// Resolving, `socket(2)` or `bind(2)` failed, or no Weir runtime runs on this thread.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let addr = addr
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to bind"))?;
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.bind(&addr.into())?;
        let (socket, multishot) = crate::runtime::datagram_socket(socket.into())?;
        Ok(UdpSocket {
            io: DatagramSocket::with_multishot(socket, multishot),
            peer: OnceLock::new(),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    ///
    /// `getsockname(2)` failed.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        driver::ip_addr(&SockRef::from(&self.io.fd()).local_addr()?)
    }

    /// Connects the socket: `send`/`recv` then talk to `addr` only.
    ///
    /// # Errors
    ///
    /// `connect(2)` failed, or the socket was connected before (to change its peer, make a new
    /// socket).
    pub fn connect(&self, addr: SocketAddr) -> io::Result<()> {
        if self.peer.get().is_some_and(|peer| *peer != addr) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "this UDP socket is connected to another peer already",
            ));
        }
        SockRef::from(&self.io.fd()).connect(&addr.into())?;
        let _ = self.peer.set(addr);
        Ok(())
    }

    /// The connected peer, if [`connect`](UdpSocket::connect) succeeded.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer.get().copied()
    }

    /// Sends `buf` as one datagram to `addr`.
    ///
    /// Cancel safety: not cancel-safe: a dropped send may have sent the datagram.
    pub async fn send_to<B: IoBuf>(&self, buf: B, addr: SocketAddr) -> BufResult<usize, B> {
        self.io.send(buf, Some(&SockAddr::from(addr))).await
    }

    /// Receives one datagram into `buf`'s spare capacity, with its sender. A datagram longer
    /// than the space is cut to fit; [`recv_msg`](UdpSocket::recv_msg) says when.
    ///
    /// Cancel safety: cancel-safe (no datagram is lost).
    pub async fn recv_from<B: IoBufMut>(&self, buf: B) -> BufResult<(usize, SocketAddr), B> {
        let (result, buf) = self.recv_msg(buf).await;
        (result.map(|meta| (meta.len, meta.from)), buf)
    }

    /// Receives one datagram into `buf`'s spare capacity: its length, its sender, and whether
    /// it was cut to fit ([`RecvMeta::truncated`]).
    ///
    /// Cancel safety: cancel-safe (no datagram is lost).
    pub async fn recv_msg<B: IoBufMut>(&self, buf: B) -> BufResult<RecvMeta, B> {
        let (result, buf) = self.io.recv(buf).await;
        let result = result.and_then(|got| {
            Ok(RecvMeta {
                len: got.len,
                from: driver::ip_addr(&got.from)?,
                truncated: got.truncated,
            })
        });
        (result, buf)
    }

    /// Receives one datagram into a buffer from the runtime's pool (cut to the pool's buffer
    /// size; [`recv_pooled_msg`](UdpSocket::recv_pooled_msg) says when), with its sender. The socket's readiness is awaited first, so a waiting
    /// receive holds no buffer; an empty pool makes it wait, never fail.
    ///
    /// Cancel safety: cancel-safe, as [`recv_from`](UdpSocket::recv_from).
    ///
    /// # Errors
    ///
    /// The receive failed, the pool could not be set up, or no Weir runtime runs on this
    /// thread.
    pub async fn recv_pooled(&self) -> io::Result<(weir_bufpool::Buf, SocketAddr)> {
        let (buf, meta) = self.recv_pooled_msg().await?;
        Ok((buf, meta.from))
    }

    /// As [`recv_pooled`](UdpSocket::recv_pooled), and says whether the datagram was longer
    /// than the pool's buffers and was cut to fit ([`RecvMeta::truncated`]).
    ///
    /// Cancel safety: cancel-safe, as [`recv_from`](UdpSocket::recv_from).
    ///
    /// # Errors
    ///
    /// As [`recv_pooled`](UdpSocket::recv_pooled).
    pub async fn recv_pooled_msg(&self) -> io::Result<(weir_bufpool::Buf, RecvMeta)> {
        self.io.ready().await?;
        let (pool, _) = crate::runtime::pooled()?;
        let buf = pool.get().await;
        let (received, buf) = self.recv_msg(buf).await;
        received.map(|meta| (buf, meta))
    }

    /// Sends to the connected peer (no address is named, so no lookup is made per datagram).
    ///
    /// Cancel safety: not cancel-safe, as [`send_to`](UdpSocket::send_to).
    ///
    /// # Errors
    ///
    /// `NotConnected` if [`connect`](UdpSocket::connect) was not called; the send failed.
    pub async fn send<B: IoBuf>(&self, buf: B) -> BufResult<usize, B> {
        if self.peer.get().is_none() {
            return (
                Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "send needs a connected UDP socket (call connect first)",
                )),
                buf,
            );
        }
        self.io.send(buf, None).await
    }

    /// Receives from the connected peer.
    ///
    /// Cancel safety: cancel-safe, as [`recv_from`](UdpSocket::recv_from).
    pub async fn recv<B: IoBufMut>(&self, buf: B) -> BufResult<usize, B> {
        let (result, buf) = self.recv_msg(buf).await;
        (result.map(|meta| meta.len), buf)
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket")
            .field("local_addr", &self.local_addr().ok())
            .field("peer", &self.peer.get())
            .finish()
    }
}

crate::stream::fd_impls!(UdpSocket, io);
