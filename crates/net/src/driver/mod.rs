//! The one internal socket interface, with one implementation per backend: `uring.rs` over
//! weir-ring, `poll.rs` over weir-reactor. Everything above this module — the socket types, the
//! read and write state machines, the compatibility traits, the runtime — calls only what is
//! here and never asks which backend it is on.
//!
//! # Invariants
//!
//! * The backend is chosen once per runtime ([`Driver::new`]); a [`Socket`] is made by a
//!   driver and keeps it for life (its *home*). Each `match` on the backend is in this file, one
//!   per operation (`dispatch!`), and no `cfg(target_os = "linux")` appears outside this module
//!   and `sys.rs` (both checked by `cargo xtask tidy`).
//! * Sockets are blocking on the ring (an op the kernel runs in its worker pool would otherwise
//!   complete with `EAGAIN`) and non-blocking on the reactor (its readiness loop needs it).
//! * Operations that may hold kernel state across polls are objects ([`Recv`], [`Send`],
//!   [`Writev`], [`RecvMsg`], [`PooledRecv`]): `into_orphan` turns one the kernel still works on
//!   into a boxed future that finishes it, so the state machines above can keep its bytes in
//!   order instead of losing them (`None`: nothing is in the kernel). On the reactor no
//!   operation is ever in the kernel between polls.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use socket2::{SockAddr, SockRef};
use weir_bufpool::Buf;

use crate::Error;
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::sys::{BorrowedSock, OwnedSock};

pub(crate) mod backend;
mod poll;
#[cfg(target_os = "linux")]
mod uring;

pub use backend::{Backend, BackendReport, backend_report};
/// The timer heap both backends share (it does no I/O).
pub(crate) use weir_reactor::{TimerKey, Timers};

/// Runs `$body` with `$name` bound to the backend's half of `$value` (`Poll(..)` or
/// `Uring(..)`): the one `match` on the backend each operation has.
macro_rules! dispatch {
    ($value:expr, $enum:ident, $name:ident => $body:expr) => {
        match $value {
            $enum::Poll($name) => $body,
            #[cfg(target_os = "linux")]
            $enum::Uring($name) => $body,
        }
    };
}

/// Pairs an operation with its socket's backend half. Both come from one socket (the state
/// machines keep an operation beside the socket that made it), so the halves always match; a
/// mismatch would only leave the operation pending, never touch the wrong backend.
macro_rules! paired {
    ($op:expr, $enum:ident, $socket:expr, $opt:ident, $sock:ident => $body:expr) => {
        match ($op, &$socket.0) {
            ($enum::Poll($opt), SocketInner::Poll($sock)) => $body,
            #[cfg(target_os = "linux")]
            ($enum::Uring($opt), SocketInner::Uring($sock)) => $body,
            #[cfg(target_os = "linux")]
            _ => Poll::Pending,
        }
    };
}

/// A receive whose caller went away while the kernel still held it: resolves to the bytes it
/// received (none at the end of the stream).
pub(crate) type OrphanRecv = Pin<Box<dyn Future<Output = io::Result<Vec<u8>>> + std::marker::Send>>;
/// A send whose caller went away while the kernel still held it: resolves when it is done.
pub(crate) type OrphanSend = Pin<Box<dyn Future<Output = io::Result<usize>> + std::marker::Send>>;
/// What an orphaned datagram receive got: the datagram's bytes and what the kernel said of it.
pub(crate) type OrphanedDatagram = io::Result<(Vec<u8>, Datagram)>;
/// A datagram receive whose caller went away: resolves to the datagram.
pub(crate) type OrphanDatagram =
    Pin<Box<dyn Future<Output = OrphanedDatagram> + std::marker::Send>>;

/// Which way a socket is waited on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Read,
    Write,
}

/// A runtime's I/O driver: a ring or a reactor.
pub(crate) struct Driver(DriverInner);

enum DriverInner {
    Poll(poll::Driver),
    #[cfg(target_os = "linux")]
    Uring(uring::Driver),
}

/// Wakes a driver blocked in [`Driver::turn`] from any thread.
pub(crate) struct Unparker(UnparkerInner);

enum UnparkerInner {
    Poll(weir_reactor::Notifier),
    #[cfg(target_os = "linux")]
    Uring(weir_ring::Notifier),
}

impl Unparker {
    pub(crate) fn unpark(&self) {
        match &self.0 {
            // A failed wake-up write means a wake-up is pending already.
            UnparkerInner::Poll(notifier) => drop(notifier.notify()),
            #[cfg(target_os = "linux")]
            UnparkerInner::Uring(notifier) => notifier.notify(),
        }
    }
}

impl Driver {
    /// The driver of `backend` (already resolved to `Uring` or `Poll`).
    pub(crate) fn new(
        backend: Backend,
        ring_entries: u32,
        sqpoll: Option<Duration>,
    ) -> Result<Driver, Error> {
        match backend {
            #[cfg(target_os = "linux")]
            Backend::Uring => Ok(Driver(DriverInner::Uring(uring::Driver::new(
                ring_entries,
                sqpoll,
            )?))),
            _ => {
                let _ = (ring_entries, sqpoll);
                Ok(Driver(DriverInner::Poll(poll::Driver::new()?)))
            }
        }
    }

    /// Stream sends of at least `bytes` use the ring's zero-copy send (`SEND_ZC`) where the
    /// kernel has it; the reactor has no such send and ignores it.
    pub(crate) fn set_zero_copy_from(&mut self, bytes: usize) {
        match &mut self.0 {
            DriverInner::Poll(_) => {
                let _ = bytes;
            }
            #[cfg(target_os = "linux")]
            DriverInner::Uring(driver) => driver.set_zero_copy_from(bytes),
        }
    }

    /// Waits for I/O (up to `timeout`; `Some(ZERO)` polls) and wakes the tasks it concerns.
    pub(crate) fn turn(&self, timeout: Option<Duration>) -> io::Result<()> {
        dispatch!(&self.0, DriverInner, driver => driver.turn(timeout))
    }

    /// A handle that ends a blocking [`turn`](Driver::turn) from any thread.
    pub(crate) fn unparker(&self) -> Unparker {
        match &self.0 {
            DriverInner::Poll(driver) => Unparker(UnparkerInner::Poll(driver.notifier())),
            #[cfg(target_os = "linux")]
            DriverInner::Uring(driver) => Unparker(UnparkerInner::Uring(driver.notifier())),
        }
    }

    /// Makes an accepted connection a socket of this driver. Accepted descriptors start
    /// blocking (`accept4` without `SOCK_NONBLOCK`), which is what the ring wants: no syscall to
    /// set the mode there.
    pub(crate) fn accepted(&self, accepted: Accepted) -> io::Result<Socket> {
        match &self.0 {
            DriverInner::Poll(driver) => Ok(Socket(SocketInner::Poll(driver.socket(accepted.0)?))),
            #[cfg(target_os = "linux")]
            DriverInner::Uring(driver) => Ok(Socket(SocketInner::Uring(
                driver.socket_blocking_already(accepted.0),
            ))),
        }
    }

    /// Makes `fd` a socket of this driver (blocking on the ring, non-blocking on the reactor).
    pub(crate) fn socket(&self, fd: OwnedSock) -> io::Result<Socket> {
        match &self.0 {
            DriverInner::Poll(driver) => Ok(Socket(SocketInner::Poll(driver.socket(fd)?))),
            #[cfg(target_os = "linux")]
            DriverInner::Uring(driver) => Ok(Socket(SocketInner::Uring(driver.socket(fd)?))),
        }
    }

    /// The kernel's view of `pool` for pooled reads: on the ring, a provided buffer ring it
    /// feeds; nothing on the reactor.
    pub(crate) fn provide(&self, pool: &weir_bufpool::Pool) -> io::Result<Provided> {
        match &self.0 {
            DriverInner::Poll(_) => {
                let _ = pool;
                Ok(Provided(ProvidedInner::Poll(())))
            }
            #[cfg(target_os = "linux")]
            DriverInner::Uring(driver) => Ok(Provided(ProvidedInner::Uring(driver.provide(pool)?))),
        }
    }

    /// The multishot receive of a datagram socket, where the backend has one (the ring: see
    /// [`DatagramRecv`]); on the reactor, none.
    pub(crate) fn datagram_recv(&self) -> Option<DatagramRecv> {
        match &self.0 {
            DriverInner::Poll(_) => None,
            #[cfg(target_os = "linux")]
            DriverInner::Uring(driver) => driver.datagram_recv().map(DatagramRecv),
        }
    }

    /// What the driver tracks now: on the ring, ops in flight (cancelled ones waiting for
    /// their final completion too, the ring's own wake-up read not); on the reactor, sources
    /// registered (every live socket of this runtime).
    pub(crate) fn tracked(&self) -> usize {
        dispatch!(&self.0, DriverInner, driver => driver.tracked())
    }

    /// Whether the runtime's event loop is away (between `block_on` calls): on io_uring, the
    /// cancels of sockets dropped meanwhile then reach the kernel at once, so their descriptors
    /// close and their peers see the end of stream without waiting for the next turn. The
    /// reactor needs nothing: a dropped socket deregisters and closes at once.
    pub(crate) fn set_detached(&self, detached: bool) {
        match &self.0 {
            DriverInner::Poll(_) => {
                let _ = detached;
            }
            #[cfg(target_os = "linux")]
            DriverInner::Uring(driver) => driver.set_detached(detached),
        }
    }

    /// At the runtime's end, after its tasks (and their ops) were dropped: lets the kernel finish
    /// what they left, so nothing they parked outlives the runtime.
    pub(crate) fn finish(&self) {
        dispatch!(&self.0, DriverInner, driver => driver.finish())
    }
}

/// The pooled reads' buffers as the kernel sees them (see [`Driver::provide`]).
#[derive(Clone)]
pub(crate) struct Provided(ProvidedInner);

#[derive(Clone)]
enum ProvidedInner {
    Poll(()),
    #[cfg(target_os = "linux")]
    Uring(uring::Provided),
}

impl Provided {
    /// Pool buffers lent to the kernel now (in the ring's provided buffer ring, waiting to be
    /// filled); none on the reactor.
    pub(crate) fn in_kernel(&self) -> usize {
        match &self.0 {
            ProvidedInner::Poll(()) => 0,
            #[cfg(target_os = "linux")]
            ProvidedInner::Uring(provided) => provided.in_kernel(),
        }
    }
}

/// The pipe a stream's socket-to-socket splices go through (see [`Socket::splice_to`]). It stays
/// with the source stream, so bytes a dropped splice left in it go out first at the next one.
pub(crate) struct SplicePipe {
    /// Shared: a ring splice holds the ends open until its final completion.
    read_end: std::sync::Arc<OwnedSock>,
    write_end: std::sync::Arc<OwnedSock>,
    /// A ring splice from the socket into the pipe that a dropped call left in the kernel: the
    /// next call waits for it before it counts the pipe's bytes, so two never race.
    #[cfg(target_os = "linux")]
    filling: Option<uring::Filling>,
}

impl SplicePipe {
    /// A new pipe (Linux only: the only platform with `splice(2)`).
    pub(crate) fn new() -> io::Result<SplicePipe> {
        #[cfg(target_os = "linux")]
        {
            let (read_end, write_end) = crate::sys::pipe()?;
            Ok(SplicePipe {
                read_end: std::sync::Arc::new(read_end),
                write_end: std::sync::Arc::new(write_end),
                filling: None,
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    /// The bytes waiting in the pipe.
    pub(crate) fn len(&self) -> io::Result<usize> {
        crate::sys::pipe_len(crate::sys::borrow(&*self.read_end))
    }
}

/// One socket on its home driver.
pub(crate) struct Socket(SocketInner);

enum SocketInner {
    Poll(poll::Socket),
    #[cfg(target_os = "linux")]
    Uring(uring::Socket),
}

/// A listener's accepts: on the ring one multishot accept, kept armed, whose connections wait
/// queued for the next accept; on the reactor nothing (each accept is an `accept(2)` on
/// readiness, taking one connection).
pub(crate) struct Acceptor(AcceptorInner);

enum AcceptorInner {
    Poll,
    #[cfg(target_os = "linux")]
    Uring(uring::Acceptor),
}

impl Acceptor {
    /// Stops taking connections from the kernel until the next accept, so its backlog holds
    /// them (a no-op on the reactor, which takes one per accept anyway).
    pub(crate) fn pause(&self) {
        match &self.0 {
            AcceptorInner::Poll => {}
            #[cfg(target_os = "linux")]
            AcceptorInner::Uring(acceptor) => acceptor.pause(),
        }
    }

    /// Multishot accepts on (the default) or off: off, each accept takes exactly one
    /// connection from the kernel (the reactor always does).
    pub(crate) fn set_multishot(&self, on: bool) {
        match &self.0 {
            AcceptorInner::Poll => {
                let _ = on;
            }
            #[cfg(target_os = "linux")]
            AcceptorInner::Uring(acceptor) => acceptor.set_multishot(on),
        }
    }
}

/// A datagram socket's multishot receive on the ring (see [`Driver::datagram_recv`]):
/// datagrams queue in its completions until a receive copies one out, so a dropped receive
/// loses none.
pub(crate) struct DatagramRecv(#[cfg(target_os = "linux")] uring::DatagramRecv);

/// What [`DatagramRecv::poll_recv`] has for a receive.
pub(crate) enum NextDatagram {
    /// A datagram from the multishot receive (only the ring has one).
    #[cfg_attr(not(target_os = "linux"), expect(dead_code))]
    Received(io::Result<Datagram>),
    /// Nothing multishot now (its buffers ran dry): receive single-shot this once.
    Single,
}

impl DatagramRecv {
    /// The next datagram, copied into `buf`'s spare capacity (cut to fit: then `truncated`).
    pub(crate) fn poll_recv<B: IoBufMut>(
        &self,
        socket: &Socket,
        buf: &mut B,
        cx: &mut Context<'_>,
    ) -> Poll<NextDatagram> {
        match &socket.0 {
            #[cfg(target_os = "linux")]
            SocketInner::Uring(socket) => self.0.poll_recv(socket, buf, cx),
            _ => {
                let _ = (buf, cx);
                Poll::Ready(NextDatagram::Single)
            }
        }
    }

    /// Ready once a datagram is there for the next receive; `false`: wait on the socket.
    pub(crate) fn poll_ready(&self, socket: &Socket, cx: &mut Context<'_>) -> Poll<bool> {
        match &socket.0 {
            #[cfg(target_os = "linux")]
            SocketInner::Uring(socket) => self.0.poll_ready(socket, cx),
            _ => {
                let _ = cx;
                Poll::Ready(false)
            }
        }
    }

    /// A waiting receive went away: the other waiting ones look again.
    pub(crate) fn wake_waiters(&self) {
        #[cfg(target_os = "linux")]
        self.0.wake_waiters();
    }
}

/// A descriptor [`Socket::accept`] returned: a blocking socket of no driver yet.
pub(crate) struct Accepted(OwnedSock);

/// A datagram received: how many bytes, from whom, and whether it was cut to fit.
#[derive(Debug, Clone)]
pub(crate) struct Datagram {
    pub(crate) len: usize,
    pub(crate) from: SockAddr,
    pub(crate) truncated: bool,
}

impl Socket {
    /// The descriptor, for socket options and addresses.
    pub(crate) fn fd(&self) -> BorrowedSock<'_> {
        dispatch!(&self.0, SocketInner, socket => socket.fd())
    }

    /// Shuts down one or both directions (`shutdown(2)`).
    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        SockRef::from(&self.fd()).shutdown(how)
    }

    /// Accepts one connection: its descriptor (not yet a socket of any driver) and its peer.
    ///
    /// Cancel safety: a connection accepted after the future was dropped is closed.
    pub(crate) async fn accept(&self) -> io::Result<(Accepted, SockAddr)> {
        let (fd, peer) = dispatch!(&self.0, SocketInner, socket => socket.accept().await)?;
        Ok((Accepted(fd), peer))
    }

    /// The accept state of a listener (see [`Acceptor`]).
    pub(crate) fn acceptor(&self) -> Acceptor {
        match &self.0 {
            SocketInner::Poll(_) => Acceptor(AcceptorInner::Poll),
            #[cfg(target_os = "linux")]
            SocketInner::Uring(_) => Acceptor(AcceptorInner::Uring(uring::Acceptor::new())),
        }
    }

    /// Accepts one connection through `acceptor` (this listener's: see [`Acceptor`]).
    ///
    /// Cancel safety: dropped, it loses no connection: on the ring, one the multishot accept
    /// took stays queued for the next accept (closed if the listener goes first).
    pub(crate) async fn accept_with(
        &self,
        acceptor: &Acceptor,
    ) -> io::Result<(Accepted, SockAddr)> {
        match (&self.0, &acceptor.0) {
            #[cfg(target_os = "linux")]
            (SocketInner::Uring(socket), AcceptorInner::Uring(acceptor)) => {
                let (fd, peer) = socket.accept_with(acceptor).await?;
                Ok((Accepted(fd), peer))
            }
            _ => self.accept().await,
        }
    }

    /// For a listener about to close: one connection a multishot accept of `acceptor` had
    /// already taken from the kernel (the multishot is cancelled for good), or `None` once
    /// there are no more — at once on the reactor, which takes none ahead of its accepts.
    pub(crate) async fn take_accepted(
        &self,
        acceptor: &Acceptor,
    ) -> Option<io::Result<(Accepted, SockAddr)>> {
        match (&self.0, &acceptor.0) {
            #[cfg(target_os = "linux")]
            (SocketInner::Uring(socket), AcceptorInner::Uring(acceptor)) => Some(
                socket
                    .take_accepted(acceptor)
                    .await?
                    .map(|(fd, peer)| (Accepted(fd), peer)),
            ),
            _ => None,
        }
    }

    /// Connects to `addr`.
    pub(crate) async fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        dispatch!(&self.0, SocketInner, socket => socket.connect(addr).await)
    }

    /// Waits until the socket is ready in `interest` (or has an error to report).
    pub(crate) async fn ready(&self, interest: Interest) -> io::Result<()> {
        dispatch!(&self.0, SocketInner, socket => socket.ready(interest).await)
    }

    /// Sends up to `len` bytes of `file` from `offset` without copying them through user space
    /// (`splice` through a pipe on the ring, `sendfile` on the reactor). Dropped while the
    /// kernel sends to the socket, it leaves that send in `left` to be finished first.
    #[cfg(unix)]
    pub(crate) async fn send_file(
        &self,
        file: &std::fs::File,
        offset: u64,
        len: usize,
        left: &mut Option<OrphanSend>,
    ) -> io::Result<usize> {
        dispatch!(&self.0, SocketInner, socket => socket.send_file(file, offset, len, left).await)
    }

    /// Whether [`splice_to`](Socket::splice_to) can move bytes from this socket to `to` inside
    /// the kernel: both of one backend, on Linux (elsewhere there is no `splice(2)`).
    pub(crate) fn can_splice_to(&self, to: &Socket) -> bool {
        match (&self.0, &to.0) {
            #[cfg(target_os = "linux")]
            (SocketInner::Poll(_), SocketInner::Poll(_))
            | (SocketInner::Uring(_), SocketInner::Uring(_)) => true,
            _ => false,
        }
    }

    /// Moves up to `len` bytes from this socket to `to` through `pipe` without copying them
    /// through user space, once some are available; `Ok(0)` at the end of this socket's stream.
    /// Bytes already in the pipe (left by a dropped call) go first and alone: the call returns
    /// once they are out. Only where [`can_splice_to`](Socket::can_splice_to) says so.
    ///
    /// Dropped while the kernel moves pipe bytes into `to`, it leaves that splice in `left` (the
    /// destination's write state finishes it before its next write); bytes still in the pipe
    /// stay there for the next call.
    pub(crate) async fn splice_to(
        &self,
        pipe: &mut SplicePipe,
        to: &Socket,
        len: usize,
        left: &mut Option<OrphanSend>,
    ) -> io::Result<usize> {
        // Only the ring can leave a splice in the kernel.
        #[cfg(not(target_os = "linux"))]
        let _ = left;
        match (&self.0, &to.0) {
            (SocketInner::Poll(from), SocketInner::Poll(to)) => {
                #[cfg(not(target_os = "linux"))]
                let _ = left;
                from.splice_to(pipe, to, len).await
            }
            #[cfg(target_os = "linux")]
            (SocketInner::Uring(from), SocketInner::Uring(to)) => {
                from.splice_to(pipe, to, len, left).await
            }
            #[cfg(target_os = "linux")]
            _ => {
                let _ = left;
                Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "splice between sockets of different backends",
                ))
            }
        }
    }

    /// A receive into `buf`'s spare capacity.
    pub(crate) fn recv<B: IoBufMut>(&self, buf: B) -> Recv<B> {
        match &self.0 {
            SocketInner::Poll(_) => Recv(RecvInner::Poll(poll::Recv::new(buf))),
            #[cfg(target_os = "linux")]
            SocketInner::Uring(socket) => Recv(RecvInner::Uring(socket.recv(buf))),
        }
    }

    /// A send of `buf`'s initialised bytes.
    pub(crate) fn send<B: IoBuf>(&self, buf: B) -> Send<B> {
        match &self.0 {
            SocketInner::Poll(_) => Send(SendInner::Poll(poll::Send::new(buf))),
            #[cfg(target_os = "linux")]
            SocketInner::Uring(socket) => Send(SendInner::Uring(socket.send(buf))),
        }
    }

    /// One vectored send of every buffer's initialised bytes, in order.
    pub(crate) fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> Writev<B> {
        match &self.0 {
            SocketInner::Poll(_) => Writev(WritevInner::Poll(poll::Writev::new(bufs))),
            #[cfg(target_os = "linux")]
            SocketInner::Uring(socket) => Writev(WritevInner::Uring(socket.writev(bufs))),
        }
    }

    /// A receive of one datagram into `buf`'s spare capacity, with its sender.
    pub(crate) fn recv_msg<B: IoBufMut>(&self, buf: B) -> RecvMsg<B> {
        match &self.0 {
            SocketInner::Poll(_) => RecvMsg(RecvMsgInner::Poll(poll::RecvMsg::new(buf))),
            #[cfg(target_os = "linux")]
            SocketInner::Uring(socket) => RecvMsg(RecvMsgInner::Uring(socket.recv_msg(buf))),
        }
    }

    /// Sends `buf` as one datagram to `to`, or to the connected peer.
    pub(crate) async fn send_msg<B: IoBuf>(
        &self,
        buf: B,
        to: Option<&SockAddr>,
    ) -> BufResult<usize, B> {
        dispatch!(&self.0, SocketInner, socket => socket.send_msg(buf, to).await)
    }

    /// Receives from a poll-style caller straight into `dst` — on backends that can lend borrowed
    /// memory to a receive within one poll (the reactor). `None` on those that cannot (the ring:
    /// the kernel may write after the poll returns): the caller keeps an owned [`Recv`] in flight
    /// instead.
    pub(crate) fn poll_recv_borrowed(
        &self,
        cx: &mut Context<'_>,
        dst: &mut [std::mem::MaybeUninit<u8>],
    ) -> Option<Poll<io::Result<usize>>> {
        match &self.0 {
            SocketInner::Poll(socket) => Some(socket.poll_recv(cx, dst)),
            #[cfg(target_os = "linux")]
            SocketInner::Uring(_) => None,
        }
    }

    /// Sends for a poll-style caller straight from `src`, where the backend can (see
    /// [`poll_recv_borrowed`](Socket::poll_recv_borrowed)); `None` where it cannot.
    pub(crate) fn poll_send_borrowed(
        &self,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Option<Poll<io::Result<usize>>> {
        match &self.0 {
            SocketInner::Poll(socket) => Some(socket.poll_send(cx, src)),
            #[cfg(target_os = "linux")]
            SocketInner::Uring(_) => None,
        }
    }

    /// The pooled receive of this socket over `pool` and the driver's view of it.
    /// Whether this socket's reads can take from a multishot receive over `provided` (a ring
    /// socket, and buffers the kernel knows).
    pub(crate) fn multishot_over(&self, provided: &Provided) -> bool {
        match (&self.0, &provided.0) {
            #[cfg(target_os = "linux")]
            (SocketInner::Uring(_), ProvidedInner::Uring(_)) => true,
            _ => false,
        }
    }

    /// `true` for a socket of the io_uring backend.
    pub(crate) fn is_uring(&self) -> bool {
        match &self.0 {
            SocketInner::Poll(_) => false,
            #[cfg(target_os = "linux")]
            SocketInner::Uring(_) => true,
        }
    }

    pub(crate) fn pooled_recv(&self, pool: &weir_bufpool::Pool, provided: &Provided) -> PooledRecv {
        match (&self.0, &provided.0) {
            #[cfg(target_os = "linux")]
            (SocketInner::Uring(socket), ProvidedInner::Uring(provided)) => {
                PooledRecv(PooledRecvInner::Uring(socket.pooled_recv(pool, provided)))
            }
            #[cfg(target_os = "linux")]
            (SocketInner::Uring(_), _) => PooledRecv(PooledRecvInner::Mismatch),
            _ => PooledRecv(PooledRecvInner::Poll(poll::PooledRecv::new(pool))),
        }
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let backend = match &self.0 {
            SocketInner::Poll(_) => "poll",
            #[cfg(target_os = "linux")]
            SocketInner::Uring(_) => "uring",
        };
        f.debug_struct("Socket")
            .field("backend", &backend)
            .field("fd", &self.fd())
            .finish()
    }
}

/// Declares an operation object over its two backend halves, with its common methods.
macro_rules! operation {
    (
        $(#[$doc:meta])*
        $ty:ident, $inner:ident < $b:ident : $bound:path >, $output:ty, $orphan:ty
    ) => {
        $(#[$doc])*
        pub(crate) struct $ty<$b>($inner<$b>);

        enum $inner<$b> {
            Poll(poll::$ty<$b>),
            #[cfg(target_os = "linux")]
            Uring(uring::$ty<$b>),
        }

        impl<$b: $bound> $ty<$b> {
            /// Drives the operation; `socket` is the one that made it.
            pub(crate) fn poll(&mut self, socket: &Socket, cx: &mut Context<'_>) -> Poll<$output> {
                paired!(&mut self.0, $inner, socket, op, socket => op.poll(socket, cx))
            }

            /// The operation as a future that finishes it, if it is in the kernel (else
            /// `None`: nothing happened, nothing to finish).
            pub(crate) fn into_orphan(self) -> Option<$orphan> {
                dispatch!(self.0, $inner, op => op.into_orphan())
            }
        }
    };
}

operation!(
    /// A receive into an owned buffer (see [`Socket::recv`]).
    Recv, RecvInner<B: IoBufMut>, BufResult<usize, B>, OrphanRecv
);
impl<B: IoBufMut> Recv<B> {
    /// Asks the kernel to stop the receive; polling goes on until the kernel says what it did
    /// (data that arrived first is returned, not lost). A no-op where nothing is in the kernel.
    pub(crate) fn cancel(&mut self) {
        dispatch!(&mut self.0, RecvInner, op => op.cancel())
    }

    /// The buffer back, if the kernel does not hold it (a reactor's receive never does); else
    /// the receive itself, to [`cancel`](Recv::cancel) and finish.
    pub(crate) fn into_buf(self) -> Result<B, Recv<B>> {
        match self.0 {
            RecvInner::Poll(op) => op.into_buf().map_err(|op| Recv(RecvInner::Poll(op))),
            #[cfg(target_os = "linux")]
            RecvInner::Uring(op) => Err(Recv(RecvInner::Uring(op))),
        }
    }
}

operation!(
    /// A send from an owned buffer (see [`Socket::send`]).
    Send, SendInner<B: IoBuf>, BufResult<usize, B>, OrphanSend
);
operation!(
    /// A vectored send (see [`Socket::writev`]).
    Writev, WritevInner<B: IoBuf>, BufResult<usize, Vec<B>>, OrphanSend
);
operation!(
    /// A datagram receive (see [`Socket::recv_msg`]).
    RecvMsg, RecvMsgInner<B: IoBufMut>, BufResult<Datagram, B>, OrphanDatagram
);

/// Pooled reads' receive (see [`Socket::pooled_recv`]): on the ring a multishot receive over the
/// provided buffers, on the reactor a receive into a pool buffer taken once data is ready. It
/// may stay armed between reads; its deliveries are in stream order.
pub(crate) struct PooledRecv(PooledRecvInner);

enum PooledRecvInner {
    Poll(poll::PooledRecv),
    #[cfg(target_os = "linux")]
    Uring(uring::PooledRecv),
    /// A ring socket read on a reactor runtime's thread: its pool is not the kernel's.
    #[cfg(target_os = "linux")]
    Mismatch,
}

impl PooledRecv {
    /// The next chunk of data; `None` at the end of the stream.
    pub(crate) fn poll_next(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Chunk>>> {
        #[cfg(target_os = "linux")]
        if let PooledRecvInner::Mismatch = self.0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "pooled reads of an io_uring socket need a runtime of the same backend on the \
                 thread that reads",
            )));
        }
        paired!(&mut self.0, PooledRecvInner, socket, op, socket => op.poll_next(socket, cx))
    }
}

/// Data a pooled receive delivered: a pool buffer, or on the ring a provided buffer the kernel
/// filled, still counted in its ring — a reader that copies it out whole gives it straight back
/// to the kernel (no trip through the pool); one that keeps it takes it out first
/// ([`detached`](Chunk::detached)), so held data never holds a slot of the ring.
pub(crate) struct Chunk(ChunkInner);

enum ChunkInner {
    Pool(Buf),
    #[cfg(target_os = "linux")]
    Ring(uring::Chunk),
}

impl Chunk {
    #[cfg(target_os = "linux")]
    fn ring(chunk: uring::Chunk) -> Chunk {
        Chunk(ChunkInner::Ring(chunk))
    }

    fn pool(buf: Buf) -> Chunk {
        Chunk(ChunkInner::Pool(buf))
    }

    /// The chunk as a buffer of the runtime's pool (pooled reads hand that on).
    pub(crate) fn into_buf(self) -> io::Result<Buf> {
        match self.0 {
            ChunkInner::Pool(buf) => Ok(buf),
            #[cfg(target_os = "linux")]
            ChunkInner::Ring(chunk) => chunk.into_buf(),
        }
    }

    /// The chunk taken out of its ring (as a pool buffer), for data that stays held.
    pub(crate) fn detached(self) -> io::Result<Chunk> {
        match self.0 {
            #[cfg(target_os = "linux")]
            ChunkInner::Ring(chunk) => chunk.into_buf().map(Chunk::pool),
            ChunkInner::Pool(_) => Ok(self),
        }
    }
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            ChunkInner::Pool(buf) => buf,
            #[cfg(target_os = "linux")]
            ChunkInner::Ring(chunk) => chunk.bytes(),
        }
    }
}

/// The io_uring probe (see `backend`).
fn probe_uring() -> Result<(), String> {
    #[cfg(target_os = "linux")]
    {
        uring::probe()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err("io_uring exists only on Linux".to_string())
    }
}

/// Turns a kernel-reported address into the standard library's IP address.
/// Records `n` bytes a syscall wrote into `buf`'s spare capacity.
fn appended<B: IoBufMut>(buf: &mut B, n: usize) {
    // SAFETY: the syscall that returned `n` initialised the first `n` spare bytes.
    unsafe { buf.advance_init(n) };
}

pub(crate) fn ip_addr(addr: &SockAddr) -> io::Result<std::net::SocketAddr> {
    addr.as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP address"))
}
