//! The socket interface over weir-ring: each operation is one io_uring op (or, for pooled
//! reads, one multishot receive over a provided buffer ring the runtime's pool feeds). Sockets
//! are blocking here (see the module invariants in `mod.rs`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use socket2::{SockAddr, SockAddrStorage, SockRef};
use weir_bufpool::{Buf, Get, Pool};
use weir_ring::{
    AcceptStream, BufRing, Op, ProvidedBuf, RawAddr, Received, ReceivedMsg, RecvMsgStream,
    RecvStream, Ring, SharedFd,
};

use super::{Datagram, Interest, NextDatagram, OrphanDatagram, OrphanRecv, OrphanSend, appended};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::stats::{self, Count};
use crate::{Error, sys};

/// The opcodes the sockets need, for the backend probe.
const NEEDED: &[weir_ring::Opcode] = &[
    weir_ring::Opcode::Recv,
    weir_ring::Opcode::Send,
    weir_ring::Opcode::Accept,
    weir_ring::Opcode::Connect,
    weir_ring::Opcode::Timeout,
    weir_ring::Opcode::AsyncCancel,
    weir_ring::Opcode::Read,
    weir_ring::Opcode::Shutdown,
    weir_ring::Opcode::SendMsg,
    weir_ring::Opcode::RecvMsg,
];

/// Sets a small ring up and checks the opcodes the sockets need.
pub(crate) fn probe() -> Result<(), String> {
    let ring = Ring::builder()
        .entries(4)
        .build()
        .map_err(|e| e.to_string())?;
    let missing: Vec<_> = NEEDED
        .iter()
        .filter(|op| !ring.probe().supports(**op))
        .map(|op| op.name())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("the kernel lacks io_uring opcodes {missing:?}"))
    }
}

pub(crate) struct Driver {
    ring: Ring,
    /// Sends of at least this many bytes use `SEND_ZC` (`usize::MAX`: none).
    zero_copy_from: usize,
    /// The buffers multishot datagram receives pick from, registered with the first UDP
    /// socket (`None` inside: the kernel refused them, and datagrams use single-shot receives).
    datagram_buffers: std::cell::OnceCell<Option<BufRing>>,
}

impl Driver {
    pub(crate) fn new(entries: u32, sqpoll: Option<Duration>) -> Result<Driver, Error> {
        let builder = Ring::builder().entries(entries);
        let builder = match sqpoll {
            Some(idle) => builder.sqpoll(idle),
            None => builder,
        };
        // The ring bounds the ops in the kernel by its completion queue (ops beyond wait in the
        // ring), and a connection's armed receive stays in the kernel while it is idle: a
        // completion queue of at least `SERVED_OPS` lets that many connections and their sends
        // be in flight at once. Where the locked-memory limit refuses that much (kernels before
        // 5.12 count ring memory against RLIMIT_MEMLOCK), the default size does.
        let cq_entries = entries.saturating_mul(2).clamp(SERVED_OPS, MAX_CQ_ENTRIES);
        let ring = builder
            .clone()
            .cq_entries(cq_entries)
            .build()
            .or_else(|error| match error {
                weir_ring::Error::Unavailable { .. } => builder.build(),
                other => Err(other),
            })
            .map_err(|error| match error {
                weir_ring::Error::InvalidConfig(_) => Error::Io(error.into()),
                other => Error::UringUnavailable(other.to_string()),
            })?;
        Ok(Driver {
            ring,
            zero_copy_from: usize::MAX,
            datagram_buffers: std::cell::OnceCell::new(),
        })
    }

    /// Sends of at least `bytes` use `SEND_ZC` from now on, if the kernel has it.
    pub(crate) fn set_zero_copy_from(&mut self, bytes: usize) {
        if self.ring.probe().supports(weir_ring::Opcode::SendZc) {
            self.zero_copy_from = bytes;
        }
    }

    pub(crate) fn turn(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.ring.turn(timeout).map(drop)
    }

    pub(crate) fn notifier(&self) -> weir_ring::Notifier {
        self.ring.notifier()
    }

    pub(crate) fn set_detached(&self, detached: bool) {
        self.ring.set_detached(detached);
    }

    pub(crate) fn socket(&self, fd: OwnedFd) -> io::Result<Socket> {
        SockRef::from(&fd).set_nonblocking(false)?;
        Ok(self.socket_blocking_already(fd))
    }

    /// `fd` is known to be blocking (an accepted connection).
    pub(crate) fn socket_blocking_already(&self, fd: OwnedFd) -> Socket {
        Socket {
            ring: self.ring.clone(),
            fd: Arc::new(fd),
            zero_copy_from: self.zero_copy_from,
        }
    }

    /// Registers `pool`'s buffers as the runtime's provided buffer ring, half of them in it.
    pub(crate) fn provide(&self, pool: &Pool) -> io::Result<Provided> {
        let count = source_count(pool);
        let room = (count / 2).max(1);
        let group =
            BufRing::register_empty(&self.ring, GROUP, PoolSource(pool.clone(), count), room)?;
        top_up(pool, &group);
        Ok(Provided { group })
    }

    pub(crate) fn tracked(&self) -> usize {
        self.ring.in_flight()
    }

    /// A datagram socket's multishot receive over the runtime's datagram buffers (registered
    /// on first use); `None` where the kernel refused them.
    pub(crate) fn datagram_recv(&self) -> Option<DatagramRecv> {
        let group = self.datagram_buffers.get_or_init(|| {
            match BufRing::register(&self.ring, DATAGRAM_GROUP, DatagramBuffers::new()?) {
                Ok(group) => Some(group),
                Err(error) => {
                    crate::event!(
                        WARN,
                        "weir: no multishot datagram receives ({error}); single-shot instead"
                    );
                    None
                }
            }
        });
        group.clone().map(DatagramRecv::new)
    }

    pub(crate) fn finish(&self) {
        // The dropped tasks' ops were cancelled; reap their final completions now, so the data
        // they parked (descriptors, the provided ring's group) is released while the runtime
        // is still whole. Bounded: what the kernel still holds after a second stays with the
        // ring's own teardown.
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.ring.in_flight() > 0 && Instant::now() < deadline {
            if self.ring.turn(Some(Duration::from_millis(10))).is_err() {
                break;
            }
        }
    }
}

/// Completion queue entries a runtime's ring asks for at least (256 KiB of completion queue):
/// the ops it can have in the kernel at once.
const SERVED_OPS: u32 = 16_384;

/// The largest completion queue the kernel accepts (`IORING_MAX_CQ_ENTRIES`).
const MAX_CQ_ENTRIES: u32 = 65_536;

/// The provided buffer ring's group id (one ring per runtime).
const GROUP: u16 = 0;

/// The pooled reads' provided buffer ring.
#[derive(Clone)]
pub(crate) struct Provided {
    group: BufRing,
}

impl Provided {
    pub(crate) fn in_kernel(&self) -> usize {
        self.group.in_ring()
    }
}

/// How many pool buffers the kernel can name: all of them (`Pooled::get` refuses a pool of more
/// than `MAX_POOLED_BUFFERS`, 32,768).
fn source_count(pool: &Pool) -> u16 {
    let count = pool.stats().capacity.min(crate::pooled::MAX_POOLED_BUFFERS);
    u16::try_from(count).unwrap_or(u16::MAX)
}

/// Fills the provided ring with free pool buffers, up to its room.
fn top_up(pool: &Pool, group: &BufRing) {
    while group.has_room() {
        let Some(buf) = pool.try_get() else {
            break;
        };
        let id = buf.into_raw();
        // SAFETY: `id` left the pool through `into_raw`: we own it until its CQE, and it is
        // not in the ring (ids in the ring are out of the pool).
        if unsafe { group.provide(id) }.is_err() {
            // Full: take it back.
            // SAFETY: `id` came from `into_raw` just above and is rebuilt once.
            drop(unsafe { pool.from_raw(id, 0) });
            break;
        }
    }
}

/// The pool as the kernel sees it, and how many of its buffers the kernel can name.
struct PoolSource(Pool, u16);

// SAFETY: the pool's buffers have fixed addresses for its lifetime, which this handle extends;
// every id below the count is allocated (the runtime's pool does not grow: checked when it is
// made); and only ids taken out of the pool (`into_raw`) are ever put in the ring, so nothing
// else touches a buffer while the kernel may fill it.
unsafe impl weir_ring::BufferSource for PoolSource {
    fn buffer_count(&self) -> u16 {
        self.1
    }

    fn buffer_len(&self) -> u32 {
        u32::try_from(self.0.buffer_size()).unwrap_or(u32::MAX)
    }

    fn buffer_ptr(&self, id: u16) -> std::ptr::NonNull<u8> {
        self.0
            .buffer_address(id)
            .unwrap_or(std::ptr::NonNull::dangling())
    }

    fn reclaim(&self, id: u16) {
        // SAFETY: an id still in the ring at unregistration left the pool through `into_raw`
        // and was never rebuilt; the kernel is done with it.
        drop(unsafe { self.0.from_raw(id, 0) });
    }
}

/// A splice from a socket into a stream's splice pipe (see `super::SplicePipe`).
pub(crate) type Filling = Op<(SharedFd, SharedFd, Vec<SharedFd>), io::Result<usize>>;

pub(crate) struct Socket {
    ring: Ring,
    fd: SharedFd,
    /// Sends of at least this many bytes use `SEND_ZC`.
    zero_copy_from: usize,
}

/// A send into the socket that, dropped while the kernel still works on it, leaves itself in
/// `slot` as an orphan for the stream's write state machine to finish.
struct LeaveOnDrop<'a, T: std::marker::Send + 'static> {
    slot: &'a mut Option<OrphanSend>,
    op: Option<Op<T, io::Result<usize>>>,
}

impl<T: std::marker::Send + 'static> std::future::Future for LeaveOnDrop<'_, T> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let Some(op) = this.op.as_mut() else {
            return Poll::Pending;
        };
        let out = ready!(Pin::new(op).poll(cx));
        this.op = None;
        Poll::Ready(out)
    }
}

impl<T: std::marker::Send + 'static> Drop for LeaveOnDrop<'_, T> {
    fn drop(&mut self) {
        if let Some(op) = self.op.take().filter(|op| op.is_pending()) {
            let send: OrphanSend = Box::pin(op);
            *self.slot = Some(send);
        }
    }
}

/// The kernel's form of an address, as `socket2` holds it.
fn to_sockaddr(raw: RawAddr) -> SockAddr {
    let (storage, len) = raw.into_parts();
    let mut converted = SockAddrStorage::zeroed();
    // SAFETY: `sockaddr_storage` is one of the platform's `sockaddr_*` types.
    *unsafe { converted.view_as::<libc::sockaddr_storage>() } = storage;
    // SAFETY: the kernel wrote a valid address of `len` bytes (clamped to the storage).
    unsafe { SockAddr::new(converted, len) }
}

/// An address in the ring's form.
fn to_raw(addr: &SockAddr) -> RawAddr {
    let mut storage = addr.clone().as_storage();
    // SAFETY: `sockaddr_storage` is one of the platform's `sockaddr_*` types.
    let storage = *unsafe { storage.view_as::<libc::sockaddr_storage>() };
    RawAddr::from_parts(storage, addr.len())
}

impl Socket {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub(crate) async fn accept(&self) -> io::Result<(OwnedFd, SockAddr)> {
        let (fd, peer) = self.ring.accept(&self.fd).await?;
        stats::note(Count::Accepted);
        Ok((fd, to_sockaddr(peer)))
    }

    /// The next connection of `acceptor`'s multishot accept (see [`Acceptor`]), or of a
    /// single-shot accept where it takes them one at a time.
    pub(crate) async fn accept_with(&self, acceptor: &Acceptor) -> io::Result<(OwnedFd, SockAddr)> {
        let waiting = WakeOtherAccepts(acceptor);
        let next = std::future::poll_fn(|cx| acceptor.poll_next(self, cx)).await;
        drop(waiting);
        match next {
            NextAccept::Accepted(fd) => {
                let fd = fd?;
                stats::note(Count::Accepted);
                // A multishot accept names no peer; the connection knows it (unless it was
                // reset meanwhile: a per-connection failure, as `accept(2)` reports one).
                let peer = SockRef::from(&fd)
                    .peer_addr()
                    .map_err(|_| io::Error::from_raw_os_error(libc::ECONNABORTED))?;
                Ok((fd, peer))
            }
            NextAccept::Single => self.accept().await,
        }
    }

    /// The connections `acceptor`'s multishot accept had already taken from the kernel, one a
    /// call, for a listener about to close (see [`Acceptor::poll_taken`]).
    pub(crate) async fn take_accepted(
        &self,
        acceptor: &Acceptor,
    ) -> Option<io::Result<(OwnedFd, SockAddr)>> {
        let fd = match std::future::poll_fn(|cx| acceptor.poll_taken(cx)).await? {
            Ok(fd) => fd,
            Err(error) => return Some(Err(error)),
        };
        stats::note(Count::Accepted);
        let peer = SockRef::from(&fd)
            .peer_addr()
            .map_err(|_| io::Error::from_raw_os_error(libc::ECONNABORTED));
        Some(peer.map(|peer| (fd, peer)))
    }

    pub(crate) async fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        self.ring.connect(&self.fd, to_raw(addr)).await
    }

    pub(crate) async fn ready(&self, interest: Interest) -> io::Result<()> {
        let events = match interest {
            Interest::Read => libc::POLLIN,
            Interest::Write => libc::POLLOUT,
        };
        self.ring.poll_add(&self.fd, events as u32).await.map(drop)
    }

    /// `send_file` on the ring: file → pipe → socket, a pipe's worth at a time. A splice into
    /// the socket still in the kernel when the future is dropped goes to `left`.
    pub(crate) async fn send_file(
        &self,
        file: &std::fs::File,
        offset: u64,
        len: usize,
        left: &mut Option<OrphanSend>,
    ) -> io::Result<usize> {
        const CHUNK: usize = 64 * 1024;
        let source: SharedFd = Arc::new(file.as_fd().try_clone_to_owned()?);
        let (read_end, write_end) = crate::sys::pipe()?;
        let (read_end, write_end): (SharedFd, SharedFd) = (Arc::new(read_end), Arc::new(write_end));
        let mut sent = 0;
        while sent < len {
            let at = i64::try_from(offset.saturating_add(sent as u64))
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            let want = u32::try_from((len - sent).min(CHUNK)).unwrap_or(u32::MAX);
            // Each splice keeps the pipe's other end (and the file) open until it ends: closing
            // a pipe end waits for the lock a running splice holds (see `Ring::splice`).
            let keep = vec![read_end.clone()];
            let filled = self
                .ring
                .splice(&source, at, &write_end, -1, want, keep)
                .await?;
            if filled == 0 {
                break;
            }
            let mut drained = 0;
            while drained < filled {
                let chunk = u32::try_from(filled - drained).unwrap_or(u32::MAX);
                let to_socket = LeaveOnDrop {
                    slot: &mut *left,
                    op: Some(self.ring.splice(
                        &read_end,
                        -1,
                        &self.fd,
                        -1,
                        chunk,
                        vec![write_end.clone(), source.clone()],
                    )),
                };
                match to_socket.await {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => drained += n,
                    Err(e) => return Err(e),
                }
            }
            sent += filled;
        }
        Ok(sent)
    }

    /// Socket → pipe → socket on the ring: wait until the socket is readable (a poll, which
    /// moves nothing), splice what is there into the pipe, then splice the pipe into `to` until
    /// it is empty. A splice into `to` still in the kernel when the future is dropped goes to
    /// `left`; one out of the socket stays in `pipe`, and the next call waits for it and sends
    /// what it moved before anything else.
    pub(crate) async fn splice_to(
        &self,
        pipe: &mut super::SplicePipe,
        to: &Socket,
        len: usize,
        left: &mut Option<OrphanSend>,
    ) -> io::Result<usize> {
        const CHUNK: usize = 64 * 1024;
        if pipe.filling.is_none() && pipe.len()? == 0 {
            self.ready(Interest::Read).await?;
            let want = u32::try_from(len.min(CHUNK)).unwrap_or(u32::MAX);
            // The splice keeps the pipe's other end open until it ends (see `Ring::splice`).
            pipe.filling = Some(self.ring.splice(
                &self.fd,
                -1,
                &pipe.write_end,
                -1,
                want,
                vec![pipe.read_end.clone()],
            ));
        }
        // Kept in the pipe while it runs: dropped here, the next call finishes it first.
        if let Some(filling) = pipe.filling.as_mut() {
            let result = filling.await;
            pipe.filling = None;
            if result? == 0 && pipe.len()? == 0 {
                return Ok(0);
            }
        }
        let filled = pipe.len()?;
        let mut drained = 0;
        while drained < filled {
            let chunk = u32::try_from(filled - drained).unwrap_or(u32::MAX);
            let to_socket = LeaveOnDrop {
                slot: &mut *left,
                op: Some(self.ring.splice(
                    &pipe.read_end,
                    -1,
                    &to.fd,
                    -1,
                    chunk,
                    vec![pipe.write_end.clone()],
                )),
            };
            match to_socket.await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drained += n,
                Err(e) => return Err(e),
            }
        }
        Ok(drained)
    }

    /// A datagram goes out at once when the socket has room (a non-blocking `sendmsg(2)`, as a
    /// send op would make inside the kernel anyway, without waiting a turn for its completion);
    /// on `EAGAIN` it goes to the ring, which waits for room.
    pub(crate) async fn send_msg<B: IoBuf>(
        &self,
        buf: B,
        to: Option<&SockAddr>,
    ) -> BufResult<usize, B> {
        match sys::send_to(self.fd(), buf.as_init(), to) {
            Ok(n) => {
                stats::note(Count::DirectSend);
                return (Ok(n), buf);
            }
            Err(e) if !retry_in_ring(&e) => return (Err(e), buf),
            Err(_) => {}
        }
        match to {
            Some(to) => self.ring.send_msg(&self.fd, buf, Some(to_raw(to))).await,
            // A connected socket: a plain send names no address.
            None => self.ring.send(&self.fd, buf).await,
        }
    }

    pub(crate) fn recv<B: IoBufMut>(&self, buf: B) -> Recv<B> {
        let start = buf.bytes_init();
        Recv {
            op: self.ring.recv(&self.fd, buf),
            start,
        }
    }

    pub(crate) fn send<B: IoBuf>(&self, buf: B) -> Send<B> {
        let op = if buf.bytes_init() >= self.zero_copy_from {
            stats::note(Count::ZeroCopySend);
            self.ring.send_zc(&self.fd, buf)
        } else {
            self.ring.send(&self.fd, buf)
        };
        Send { op }
    }

    pub(crate) fn writev<B: IoBuf>(&self, bufs: Vec<B>) -> Writev<B> {
        Writev {
            op: self.ring.writev(&self.fd, bufs),
        }
    }

    /// A queued datagram is taken at once (a non-blocking `recvmsg(2)`); only when none is
    /// queued does a receive go to the ring to wait for one.
    pub(crate) fn recv_msg<B: IoBufMut>(&self, mut buf: B) -> RecvMsg<B> {
        let start = buf.bytes_init();
        let op = match sys::recv_msg(self.fd(), buf.spare_mut()) {
            Ok((len, from, truncated)) => {
                stats::note(Count::DirectReceive);
                appended(&mut buf, len);
                let got = Datagram {
                    len,
                    from,
                    truncated,
                };
                RecvMsgState::Done(Some((Ok(got), buf)))
            }
            Err(e) if !retry_in_ring(&e) => RecvMsgState::Done(Some((Err(e), buf))),
            Err(_) => RecvMsgState::InRing(self.ring.recv_msg(&self.fd, buf)),
        };
        RecvMsg { op, start }
    }

    pub(crate) fn pooled_recv(&self, pool: &Pool, provided: &Provided) -> PooledRecv {
        PooledRecv {
            pool: pool.clone(),
            group: provided.group.clone(),
            recv: None,
            waiting: None,
            paused: false,
        }
    }
}

/// Generates the kernel-side methods every ring operation shares.
macro_rules! in_kernel_while_pending {
    () => {
        fn in_kernel(&self) -> bool {
            self.op.is_pending()
        }
    };
}

type BufOp<D, O> = Op<D, O>;

pub(crate) struct Recv<B> {
    op: BufOp<(SharedFd, B), BufResult<usize, B>>,
    /// The buffer's initialised length before the receive: the received bytes start here.
    start: usize,
}

impl<B: IoBufMut> Recv<B> {
    pub(crate) fn poll(&mut self, _: &Socket, cx: &mut Context<'_>) -> Poll<BufResult<usize, B>> {
        Pin::new(&mut self.op).poll(cx)
    }

    in_kernel_while_pending!();

    pub(crate) fn cancel(&mut self) {
        self.op.cancel();
    }

    pub(crate) fn into_orphan(self) -> Option<OrphanRecv> {
        if !self.in_kernel() {
            return None;
        }
        let Recv { op, start } = self;
        Some(Box::pin(async move {
            let (result, buf) = op.await;
            result.map(|_| buf.as_init().get(start..).unwrap_or_default().to_vec())
        }))
    }
}

pub(crate) struct Send<B> {
    op: BufOp<(SharedFd, B), BufResult<usize, B>>,
}

impl<B: IoBuf> Send<B> {
    pub(crate) fn poll(&mut self, _: &Socket, cx: &mut Context<'_>) -> Poll<BufResult<usize, B>> {
        Pin::new(&mut self.op).poll(cx)
    }

    in_kernel_while_pending!();

    pub(crate) fn into_orphan(self) -> Option<OrphanSend> {
        if !self.in_kernel() {
            return None;
        }
        let op = self.op;
        Some(Box::pin(async move { op.await.0 }))
    }
}

pub(crate) struct Writev<B> {
    op: BufOp<weir_ring::VectoredData<B>, BufResult<usize, Vec<B>>>,
}

impl<B: IoBuf> Writev<B> {
    pub(crate) fn poll(
        &mut self,
        _: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<BufResult<usize, Vec<B>>> {
        Pin::new(&mut self.op).poll(cx)
    }

    in_kernel_while_pending!();

    pub(crate) fn into_orphan(self) -> Option<OrphanSend> {
        if !self.in_kernel() {
            return None;
        }
        let op = self.op;
        Some(Box::pin(async move { op.await.0 }))
    }
}

fn datagram(got: weir_ring::Datagram) -> Datagram {
    Datagram {
        len: got.len,
        from: to_sockaddr(got.from),
        truncated: got.truncated,
    }
}

/// Whether a non-blocking datagram call that failed with `e` should be made again by the ring
/// (which waits instead of failing).
fn retry_in_ring(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

pub(crate) struct RecvMsg<B> {
    op: RecvMsgState<B>,
    start: usize,
}

enum RecvMsgState<B> {
    /// Received at once (or failed at once); `None` once returned.
    Done(Option<BufResult<Datagram, B>>),
    InRing(BufOp<weir_ring::MsgData<B>, BufResult<weir_ring::Datagram, B>>),
}

impl<B: IoBufMut> RecvMsg<B> {
    pub(crate) fn poll(
        &mut self,
        _: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<BufResult<Datagram, B>> {
        match &mut self.op {
            RecvMsgState::Done(done) => done.take().map_or(Poll::Pending, Poll::Ready),
            RecvMsgState::InRing(op) => {
                let (result, buf) = ready!(Pin::new(op).poll(cx));
                Poll::Ready((result.map(datagram), buf))
            }
        }
    }

    pub(crate) fn into_orphan(self) -> Option<OrphanDatagram> {
        let RecvMsg {
            op: RecvMsgState::InRing(op),
            start,
        } = self
        else {
            return None;
        };
        if !op.is_pending() {
            return None;
        }
        Some(Box::pin(async move {
            let (result, buf) = op.await;
            let got = datagram(result?);
            Ok((buf.as_init().get(start..).unwrap_or_default().to_vec(), got))
        }))
    }
}

/// Pooled reads on the ring: one multishot receive over the provided buffer ring the pool
/// feeds. The kernel picks a buffer only when data arrives, so an idle connection holds none.
/// Each delivered buffer leaves the ring for good (it becomes the caller's `Buf`, which returns
/// to the pool on drop) and a fresh one from the pool takes its place. When the pool runs dry the
/// ring empties, the kernel ends the receive with `ENOBUFS` and the data stays in the socket;
/// the next read waits for a free buffer and re-arms — reads wait, never fail, never lose bytes.
///
/// A connection whose reader falls behind must not take the whole pool: once [`BACKLOG`]
/// arrivals wait unread, the receive is cancelled (what arrived is still delivered, in order, and
/// further data waits in the socket, under TCP's own flow control); the read that drains the
/// backlog re-arms it.
pub(crate) struct PooledRecv {
    pool: Pool,
    group: BufRing,
    recv: Option<RecvStream>,
    /// A free buffer being waited for after `ENOBUFS`.
    waiting: Option<Get>,
    /// The receive was cancelled because its backlog was full: its `ECANCELED` ending re-arms.
    paused: bool,
}

/// Arrivals a multishot stream receive may queue unread before it is paused.
const BACKLOG: usize = 4;

/// A provided buffer the kernel filled, still counted in the ring: dropped, it goes straight
/// back to the kernel; [`into_buf`](Chunk::into_buf) takes it out as a pool buffer instead.
pub(crate) struct Chunk {
    provided: ProvidedBuf,
    pool: Pool,
}

impl Chunk {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.provided
    }

    /// The buffer as the pool's (it leaves the ring for good; a fresh one takes its place).
    pub(crate) fn into_buf(self) -> io::Result<Buf> {
        let (id, len) = self.provided.into_id();
        // SAFETY: the kernel filled buffer `id` (its CQE was reaped) and it left the pool
        // through `into_raw` when it went into the ring.
        unsafe { self.pool.from_raw(id, len) }.map_err(io::Error::from)
    }
}

impl PooledRecv {
    pub(crate) fn poll_next(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<super::Chunk>>> {
        loop {
            if let Some(get) = self.waiting.as_mut() {
                // The buffer goes back to the pool, and from there into the ring below.
                drop(ready!(Pin::new(get).poll(cx)));
                self.waiting = None;
            }
            top_up(&self.pool, &self.group);
            let recv = self.recv.get_or_insert_with(|| {
                stats::note(Count::Arm);
                self.group.recv_multi(&socket.fd)
            });
            match ready!(recv.poll_next(cx)) {
                Some(Ok(Received::Data(provided))) => {
                    if !self.paused && recv.queued() >= BACKLOG {
                        recv.cancel();
                        self.paused = true;
                        stats::note(Count::Pause);
                    }
                    let chunk = Chunk {
                        provided,
                        pool: self.pool.clone(),
                    };
                    return Poll::Ready(Ok(Some(super::Chunk::ring(chunk))));
                }
                Some(Ok(Received::Eof)) => {
                    self.recv = None;
                    return Poll::Ready(Ok(None));
                }
                // The backlog was taken: receive again.
                Some(Err(error))
                    if self.paused && error.raw_os_error() == Some(libc::ECANCELED) =>
                {
                    self.recv = None;
                    self.paused = false;
                    stats::note(Count::Rearm);
                }
                Some(Err(error)) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The pool ran dry; the data waits in the socket.
                    self.recv = None;
                    self.paused = false;
                    stats::note(Count::Rearm);
                    stats::note(Count::Dry);
                    self.waiting = Some(self.pool.get());
                }
                Some(Err(error)) => {
                    self.recv = None;
                    self.paused = false;
                    return Poll::Ready(Err(error));
                }
                // The kernel ended the multishot receive: arm a new one.
                None => {
                    self.recv = None;
                    self.paused = false;
                    stats::note(Count::Rearm);
                }
            }
        }
    }
}

/// A listener's accepts on the ring: one multishot accept, armed by the first accept and kept
/// armed. Connections it takes while no accept waits stay queued in its completions for the
/// next accept (closed with it if the listener goes first: none leaks), so a dropped accept
/// loses none. Past [`ACCEPT_BACKLOG`] queued, or when [`pause`](Acceptor::pause)d, it is
/// cancelled — what the kernel accepted first is still delivered — and the accept that drains
/// it arms a new one; so does the accept after any other ending (`EMFILE`, `ENFILE`...: the
/// error is returned once). With multishot off ([`set_multishot`](Acceptor::set_multishot)),
/// each accept is a single-shot one of its own, taking exactly one connection.
pub(crate) struct Acceptor {
    state: Mutex<AcceptState>,
}

struct AcceptState {
    stream: Option<AcceptStream>,
    /// The stream was cancelled here (a pause or a full queue): its `ECANCELED` ending is no
    /// error, only the cue to arm again.
    cancelled: bool,
    /// Single-shot accepts only: no multishot is armed.
    single: bool,
    /// Accepts waiting besides the one whose waker the stream holds: woken when a connection
    /// is taken or a waiting accept goes away, so one of them takes over the stream's waker.
    waiters: Vec<Waker>,
}

/// Connections a multishot accept may queue untaken before it is cancelled. A soft bound: the
/// kernel may accept a burst in one turn before the cancel reaches it.
const ACCEPT_BACKLOG: usize = 16;

/// What an [`Acceptor`] has for an accept.
enum NextAccept {
    Accepted(io::Result<OwnedFd>),
    /// Multishot is off and none is left to drain: accept with a single-shot accept.
    Single,
}

impl AcceptState {
    fn cancel(&mut self) {
        if let Some(stream) = self.stream.as_mut().filter(|_| !self.cancelled) {
            stream.cancel();
            self.cancelled = true;
            stats::note(Count::AcceptPause);
        }
    }

    fn wake_waiters(&mut self) {
        self.waiters.drain(..).for_each(Waker::wake);
    }

    /// Wakes the waiting accepts but the one of `cx` (which is not waiting any more).
    fn wake_others(&mut self, cx: &Context<'_>) {
        self.waiters.retain(|w| !w.will_wake(cx.waker()));
        self.wake_waiters();
    }
}

impl Acceptor {
    pub(crate) fn new() -> Acceptor {
        Acceptor {
            state: Mutex::new(AcceptState {
                stream: None,
                cancelled: false,
                single: false,
                waiters: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, AcceptState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops taking connections from the kernel until the next accept (the kernel's backlog
    /// holds them): the multishot accept is cancelled; what it accepted first stays queued.
    pub(crate) fn pause(&self) {
        self.lock().cancel();
    }

    /// Multishot accepts on (the default) or off (single-shot accepts, one connection each).
    pub(crate) fn set_multishot(&self, on: bool) {
        let mut state = self.lock();
        state.single = !on;
        if !on {
            state.cancel();
        }
    }

    /// For a listener about to close: the multishot accept is cancelled for good, and each call
    /// returns one connection it had already taken from the kernel, until its stream has ended
    /// (`None`).
    fn poll_taken(&self, cx: &mut Context<'_>) -> Poll<Option<io::Result<OwnedFd>>> {
        let mut state = self.lock();
        state.single = true;
        state.cancel();
        loop {
            let Some(stream) = state.stream.as_mut() else {
                return Poll::Ready(None);
            };
            match stream.poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(fd))) => return Poll::Ready(Some(Ok(fd))),
                Poll::Ready(Some(Err(error))) if error.raw_os_error() == Some(libc::ECANCELED) => {
                    state.stream = None;
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => state.stream = None,
            }
        }
    }

    fn poll_next(&self, socket: &Socket, cx: &mut Context<'_>) -> Poll<NextAccept> {
        let mut state = self.lock();
        loop {
            let state = &mut *state;
            let stream = match state.stream.as_mut() {
                Some(stream) => stream,
                None if state.single => return Poll::Ready(NextAccept::Single),
                None => {
                    stats::note(Count::AcceptArm);
                    state.cancelled = false;
                    state.stream.insert(socket.ring.accept_multi(&socket.fd))
                }
            };
            match stream.poll_next(cx) {
                Poll::Pending => {
                    if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        state.waiters.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(fd))) => {
                    if stream.queued() >= ACCEPT_BACKLOG {
                        state.cancel();
                    }
                    state.wake_others(cx);
                    return Poll::Ready(NextAccept::Accepted(Ok(fd)));
                }
                Poll::Ready(Some(Err(error)))
                    if state.cancelled && error.raw_os_error() == Some(libc::ECANCELED) =>
                {
                    state.stream = None;
                }
                // The kernel may have ended the stream with it: the next poll sees the end.
                Poll::Ready(Some(Err(error))) => {
                    state.wake_others(cx);
                    return Poll::Ready(NextAccept::Accepted(Err(error)));
                }
                // Ended (after an error, or by the kernel): arm again.
                Poll::Ready(None) => state.stream = None,
            }
        }
    }
}

/// Held by a waiting accept: when it goes away (done or dropped), the other waiting accepts
/// look again, in case the stream held its waker.
struct WakeOtherAccepts<'a>(&'a Acceptor);

impl Drop for WakeOtherAccepts<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if !state.waiters.is_empty() {
            state.wake_waiters();
        }
    }
}

/// The datagram buffers' group id (beside the pooled reads' `GROUP`).
const DATAGRAM_GROUP: u16 = 1;

/// Datagram buffers in the group: enough for a few sockets' backlogs ([`DATAGRAM_BACKLOG`]
/// each); past that the group runs dry and receives go single-shot until buffers return.
const DATAGRAM_BUFFERS: u16 = 64;

/// Bytes of each datagram buffer: the kernel's 16-byte header, the sender's address
/// ([`DATAGRAM_NAME_LEN`]) and the largest UDP payload (65,527 bytes), rounded up to whole
/// pages — so the kernel never cuts a datagram, and a receive truncates only to the caller's
/// buffer, as `recvmsg(2)` does. Pages no datagram reached are never touched, so small
/// datagrams keep the resident cost to a page a buffer.
const DATAGRAM_BUFFER_LEN: usize = 68 * 1024;

/// The room each datagram buffer keeps for the sender's address (`sockaddr_storage`).
const DATAGRAM_NAME_LEN: u32 = std::mem::size_of::<libc::sockaddr_storage>() as u32;

/// Datagrams a socket's multishot receive may queue untaken before it is paused (the rest wait
/// in the socket's receive buffer, as they would for any receiver that falls behind).
const DATAGRAM_BACKLOG: usize = 16;

/// The datagram buffers: one zeroed, page-aligned allocation that lives as long as its group
/// (the group drops its source only after the kernel let go of it).
struct DatagramBuffers {
    memory: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl DatagramBuffers {
    fn new() -> Option<DatagramBuffers> {
        let len = DATAGRAM_BUFFER_LEN * usize::from(DATAGRAM_BUFFERS);
        let layout = std::alloc::Layout::from_size_align(len, 4096).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let memory = std::ptr::NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(DatagramBuffers { memory, layout })
    }
}

impl Drop for DatagramBuffers {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with `layout`; dropped once, after the kernel let go.
        unsafe { std::alloc::dealloc(self.memory.as_ptr(), self.layout) };
    }
}

// SAFETY: the memory is owned by this value alone and never moves; ids map to disjoint ranges.
unsafe impl std::marker::Send for DatagramBuffers {}
// SAFETY: as above; the group hands each range to one reader at a time.
unsafe impl Sync for DatagramBuffers {}

// SAFETY: `DATAGRAM_BUFFERS` disjoint ranges of `DATAGRAM_BUFFER_LEN` bytes of an allocation
// that lives and stays put as long as the source; nothing but the group touches them.
unsafe impl weir_ring::BufferSource for DatagramBuffers {
    fn buffer_count(&self) -> u16 {
        DATAGRAM_BUFFERS
    }

    fn buffer_len(&self) -> u32 {
        DATAGRAM_BUFFER_LEN as u32
    }

    fn buffer_ptr(&self, id: u16) -> std::ptr::NonNull<u8> {
        let offset = usize::from(id.min(DATAGRAM_BUFFERS - 1)) * DATAGRAM_BUFFER_LEN;
        // SAFETY: `id` is clamped below the count, so the offset is inside the allocation.
        unsafe { self.memory.add(offset) }
    }
}

/// A datagram socket's receives on the ring: one multishot `recvmsg` over the datagram
/// buffers, armed by the first receive and kept armed. Datagrams that arrive while no receive
/// waits stay queued in its completions (each in its buffer) for the next receives, so a
/// dropped receive loses none; a receive copies one into the caller's buffer (cut to fit, and
/// then reported truncated, as `recvmsg(2)` does) and the buffer goes straight back to the
/// kernel. Past [`DATAGRAM_BACKLOG`] queued the receive is paused (cancelled: what arrived is
/// still delivered) and the receive that drains it arms a new one; so does the one after any
/// other ending. When the buffers run dry (`ENOBUFS`), one receive goes single-shot into the
/// caller's buffer, and the next arms again.
pub(crate) struct DatagramRecv {
    group: BufRing,
    state: Mutex<MsgState>,
}

struct MsgState {
    stream: Option<RecvMsgStream>,
    /// A datagram (or an error) taken from the stream by a readiness wait, for the next receive.
    peeked: Option<io::Result<ReceivedMsg>>,
    /// The stream was paused here: its `ECANCELED` ending is only the cue to arm again.
    cancelled: bool,
    /// The buffers ran dry: the next receive is a single-shot one.
    dry: bool,
    /// Receives waiting besides the one whose waker the stream holds (see [`Acceptor`]).
    waiters: Vec<Waker>,
}

impl MsgState {
    fn wake_others(&mut self, cx: &Context<'_>) {
        self.waiters.retain(|w| !w.will_wake(cx.waker()));
        self.waiters.drain(..).for_each(Waker::wake);
    }
}

impl DatagramRecv {
    fn new(group: BufRing) -> DatagramRecv {
        DatagramRecv {
            group,
            state: Mutex::new(MsgState {
                stream: None,
                peeked: None,
                cancelled: false,
                dry: false,
                waiters: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MsgState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next datagram of the multishot receive, arming it if need be; `None`: receive
    /// single-shot this once.
    fn poll_message(
        &self,
        state: &mut MsgState,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<Option<io::Result<ReceivedMsg>>> {
        if let Some(peeked) = state.peeked.take() {
            return Poll::Ready(Some(peeked));
        }
        loop {
            let stream = match state.stream.as_mut() {
                Some(stream) => stream,
                None if state.dry => {
                    state.dry = false;
                    return Poll::Ready(None);
                }
                None => {
                    stats::note(Count::DatagramArm);
                    state.cancelled = false;
                    state
                        .stream
                        .insert(self.group.recv_msg_multi(&socket.fd, DATAGRAM_NAME_LEN))
                }
            };
            match stream.poll_next(cx) {
                Poll::Pending => {
                    if !state.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                        state.waiters.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(msg))) => {
                    if !state.cancelled && stream.queued() >= DATAGRAM_BACKLOG {
                        stream.cancel();
                        state.cancelled = true;
                    }
                    return Poll::Ready(Some(Ok(msg)));
                }
                Poll::Ready(Some(Err(error)))
                    if state.cancelled && error.raw_os_error() == Some(libc::ECANCELED) =>
                {
                    state.stream = None;
                    stats::note(Count::DatagramRearm);
                }
                Poll::Ready(Some(Err(error))) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    state.stream = None;
                    state.dry = true;
                    stats::note(Count::DatagramRearm);
                    stats::note(Count::DatagramDry);
                }
                // The kernel may have ended the stream with it: the next poll sees the end.
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => {
                    state.stream = None;
                    stats::note(Count::DatagramRearm);
                }
            }
        }
    }

    /// The next datagram, copied into `buf`'s spare capacity.
    pub(crate) fn poll_recv<B: IoBufMut>(
        &self,
        socket: &Socket,
        buf: &mut B,
        cx: &mut Context<'_>,
    ) -> Poll<NextDatagram> {
        let mut state = self.lock();
        let next = ready!(self.poll_message(&mut state, socket, cx));
        state.wake_others(cx);
        drop(state);
        let Some(received) = next else {
            return Poll::Ready(NextDatagram::Single);
        };
        let got = received.and_then(|received| {
            let message = received.message()?;
            let len = buf.extend_from(message.payload);
            Ok(Datagram {
                len,
                from: to_sockaddr(message.from),
                truncated: message.truncated || message.len > len,
            })
        });
        Poll::Ready(NextDatagram::Received(got))
    }

    /// Ready once a datagram (or an error) is there for the next receive — `false`: the
    /// multishot receive is not armed (the buffers ran dry), so wait on the socket instead.
    pub(crate) fn poll_ready(&self, socket: &Socket, cx: &mut Context<'_>) -> Poll<bool> {
        let mut state = self.lock();
        match ready!(self.poll_message(&mut state, socket, cx)) {
            Some(received) => {
                state.peeked = Some(received);
                Poll::Ready(true)
            }
            None => {
                // Still this receive's: the next receive goes single-shot.
                state.dry = true;
                Poll::Ready(false)
            }
        }
    }

    /// A waiting receive went away: the others look again, in case the stream held its waker.
    pub(crate) fn wake_waiters(&self) {
        let mut state = self.lock();
        state.waiters.drain(..).for_each(Waker::wake);
    }
}
