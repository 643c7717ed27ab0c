//! The typed operations. Each boxes what the kernel will touch, and gives buffers back with
//! the result: `(io::Result<usize>, B)`. Receives append to a buffer's initialised bytes (they
//! fill its spare capacity); sends send its initialised bytes.
//!
//! Sockets handed to these ops should be blocking (no `O_NONBLOCK`): io_uring never blocks the
//! submitting thread either way, but an op it runs in its worker pool honours the flag and
//! completes with `EAGAIN` instead of waiting. The accept ops make blocking sockets.

use crate::sync::unmodelled::Arc;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, types};

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::lifecycle::Cqe;
use crate::op::{Linked, MultiOp, Op};
use crate::ring::{Ring, discard_fd, discard_nothing};

/// A descriptor shared by the ops that use it: it stays open until the last op holding it has
/// seen its final CQE, so the kernel never acts on a closed or reused number.
pub type SharedFd = Arc<OwnedFd>;

/// A socket address in the kernel's form (`sockaddr_storage` and its length), for message ops
/// on any address family.
#[derive(Clone, Copy)]
pub struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    /// Room for any address, for the kernel to fill.
    pub fn empty() -> RawAddr {
        RawAddr {
            // SAFETY: all-zero is a valid `sockaddr_storage`.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        }
    }

    /// An address given as its storage and length (`len` is clamped to the storage).
    pub fn from_parts(storage: libc::sockaddr_storage, len: libc::socklen_t) -> RawAddr {
        let max = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        RawAddr {
            storage,
            len: len.min(max),
        }
    }

    /// The storage and the length of the address in it.
    pub fn into_parts(self) -> (libc::sockaddr_storage, libc::socklen_t) {
        (self.storage, self.len)
    }

    /// An IP address in the kernel's form.
    pub fn from_std(addr: SocketAddr) -> RawAddr {
        let mut raw = RawAddr::empty();
        let len = match addr {
            SocketAddr::V4(v4) => {
                // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in`.
                let sin = unsafe { &mut *(&raw mut raw.storage).cast::<libc::sockaddr_in>() };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = v4.port().to_be();
                sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
                std::mem::size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(v6) => {
                // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in6`.
                let sin6 = unsafe { &mut *(&raw mut raw.storage).cast::<libc::sockaddr_in6>() };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = v6.port().to_be();
                sin6.sin6_addr.s6_addr = v6.ip().octets();
                sin6.sin6_flowinfo = v6.flowinfo();
                sin6.sin6_scope_id = v6.scope_id();
                std::mem::size_of::<libc::sockaddr_in6>()
            }
        };
        raw.len = len as libc::socklen_t;
        raw
    }

    /// The address as an IP address, if it is one.
    pub fn to_std(&self) -> Option<SocketAddr> {
        let len = self.len as usize;
        match i32::from(self.storage.ss_family) {
            libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
                // SAFETY: the family says the storage holds a `sockaddr_in`, which it can contain.
                let addr = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::from((
                    u32::from_be(addr.sin_addr.s_addr).to_be_bytes(),
                    u16::from_be(addr.sin_port),
                )))
            }
            libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
                // SAFETY: the family says the storage holds a `sockaddr_in6`, which it can
                // contain.
                let addr = unsafe { &*(&raw const self.storage).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::from((
                    addr.sin6_addr.s6_addr,
                    u16::from_be(addr.sin6_port),
                )))
            }
            _ => None,
        }
    }
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawAddr")
            .field("family", &self.storage.ss_family)
            .field("len", &self.len)
            .field("ip", &self.to_std())
            .finish()
    }
}

/// What a message receive reports: bytes received, the sender, and whether the datagram was
/// longer than the buffer and cut to fit (`MSG_TRUNC`).
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    /// Bytes received into the buffer.
    pub len: usize,
    /// The sender.
    pub from: RawAddr,
    /// `true` if the datagram was longer than the buffer's spare capacity and was cut.
    pub truncated: bool,
}

fn result(cqe: Cqe) -> io::Result<u32> {
    if cqe.result < 0 {
        Err(io::Error::from_raw_os_error(-cqe.result))
    } else {
        Ok(cqe.result as u32)
    }
}

/// Where a receive writes: the buffer's spare capacity, as the SQE wants it.
fn spare<B: IoBufMut>(buf: &mut B) -> (*mut u8, u32) {
    let spare = buf.spare_mut();
    (
        spare.as_mut_ptr().cast(),
        u32::try_from(spare.len()).unwrap_or(u32::MAX),
    )
}

/// What a send reads: the buffer's initialised bytes, as the SQE wants them.
fn init<B: IoBuf>(buf: &B) -> (*const u8, u32) {
    (
        buf.stable_ptr(),
        u32::try_from(buf.bytes_init()).unwrap_or(u32::MAX),
    )
}

/// Completes a receive-like op: records the `n` bytes the kernel appended and gives the buffer
/// back with the result.
fn filled<B: IoBufMut>(mut buf: B, cqe: Cqe) -> BufResult<usize, B> {
    let res = result(cqe).map(|n| n as usize);
    if let Ok(n) = res {
        appended(&mut buf, n);
    }
    (res, buf)
}

/// Records that the kernel wrote `n` bytes into `buf`'s spare capacity.
fn appended<B: IoBufMut>(buf: &mut B, n: usize) {
    let spare = buf.spare_mut();
    let n = n.min(spare.len());
    crate::memcheck::mark_initialised(spare.as_ptr().cast(), n);
    // SAFETY: the kernel initialised the first `n` spare bytes (its CQE says so).
    unsafe { buf.advance_init(n) };
}

fn raw(shared: &SharedFd) -> types::Fd {
    types::Fd(shared.as_raw_fd())
}

/// What an accept parks in the op table: the listener and the peer address the kernel fills.
#[derive(Debug)]
pub struct AcceptData {
    fd: SharedFd,
    addr: RawAddr,
}

impl Ring {
    /// A no-op round trip through the kernel.
    pub fn nop(&self) -> Op<(), io::Result<()>> {
        self.submit(
            (),
            |_| opcode::Nop::new().build(),
            discard_nothing,
            |(), cqe| result(cqe).map(drop),
        )
    }

    /// Completes after `duration` (`ETIME` is success here).
    pub fn timeout(&self, duration: Duration) -> Op<types::Timespec, io::Result<()>> {
        let ts = types::Timespec::new()
            .sec(duration.as_secs())
            .nsec(duration.subsec_nanos());
        self.submit(
            ts,
            |ts| opcode::Timeout::new(ts as *const types::Timespec).build(),
            discard_nothing,
            |_, cqe| match result(cqe) {
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(()),
                other => other.map(drop),
            },
        )
    }

    /// Reads into `buf`'s spare capacity at `offset` (`u64::MAX`: the file position / a
    /// stream).
    pub fn read<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
        offset: u64,
    ) -> Op<(SharedFd, B), BufResult<usize, B>> {
        let (ptr, len) = spare(&mut buf);
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| opcode::Read::new(raw(fd_), ptr, len).offset(offset).build(),
            discard_nothing,
            |(_, buf), cqe| filled(buf, cqe),
        )
    }

    /// Writes `buf`'s initialised bytes at `offset` (`u64::MAX`: the file position / a stream).
    pub fn write<B: IoBuf>(
        &self,
        fd: &SharedFd,
        buf: B,
        offset: u64,
    ) -> Op<(SharedFd, B), BufResult<usize, B>> {
        let (ptr, len) = init(&buf);
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| {
                opcode::Write::new(raw(fd_), ptr, len)
                    .offset(offset)
                    .build()
            },
            discard_nothing,
            |(_, buf), cqe| (result(cqe).map(|n| n as usize), buf),
        )
    }

    /// Receives into `buf`'s spare capacity (a socket).
    pub fn recv<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
    ) -> Op<(SharedFd, B), BufResult<usize, B>> {
        let (ptr, len) = spare(&mut buf);
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| opcode::Recv::new(raw(fd_), ptr, len).build(),
            discard_nothing,
            |(_, buf), cqe| filled(buf, cqe),
        )
    }

    /// Sends `buf`'s initialised bytes (a socket); never raises `SIGPIPE`.
    pub fn send<B: IoBuf>(&self, fd: &SharedFd, buf: B) -> Op<(SharedFd, B), BufResult<usize, B>> {
        let (ptr, len) = init(&buf);
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| {
                opcode::Send::new(raw(fd_), ptr, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            },
            discard_nothing,
            |(_, buf), cqe| (result(cqe).map(|n| n as usize), buf),
        )
    }

    /// Accepts one connection (close-on-exec, blocking: see the module docs), with the peer's
    /// address.
    ///
    /// Cancel safety: a connection accepted after the future was dropped is closed, never leaked.
    pub fn accept(&self, listener: &SharedFd) -> Op<AcceptData, io::Result<(OwnedFd, RawAddr)>> {
        let data = AcceptData {
            fd: listener.clone(),
            addr: RawAddr::empty(),
        };
        self.submit(
            data,
            |d| {
                opcode::Accept::new(
                    raw(&d.fd),
                    (&raw mut d.addr.storage).cast(),
                    &raw mut d.addr.len,
                )
                .flags(libc::SOCK_CLOEXEC)
                .build()
            },
            discard_fd,
            |d, cqe| {
                let accepted = result(cqe)?;
                // SAFETY: a successful accept returns a new descriptor that we now own.
                let stream = unsafe { OwnedFd::from_raw_fd(accepted as RawFd) };
                Ok((stream, d.addr))
            },
        )
    }

    /// Accepts connections until cancelled or an error ends it: one SQE, many CQEs.
    ///
    /// Cancel safety: connections accepted after the stream was dropped are closed.
    pub fn accept_multi(&self, listener: &SharedFd) -> AcceptStream {
        AcceptStream {
            op: self.submit_multishot(
                listener.clone(),
                |l| {
                    opcode::AcceptMulti::new(raw(l))
                        .flags(libc::SOCK_CLOEXEC)
                        .build()
                },
                discard_fd,
            ),
        }
    }

    /// Connects `socket` to `addr` (any address family).
    pub fn connect(
        &self,
        socket: &SharedFd,
        addr: RawAddr,
    ) -> Op<(SharedFd, RawAddr), io::Result<()>> {
        self.submit(
            (socket.clone(), addr),
            |(s, addr)| {
                opcode::Connect::new(raw(s), (&raw const addr.storage).cast(), addr.len).build()
            },
            discard_nothing,
            |_, cqe| result(cqe).map(drop),
        )
    }

    /// Closes `fd` through the ring.
    pub fn close(&self, owned: OwnedFd) -> Op<(), io::Result<()>> {
        let raw = owned.into_raw_fd();
        self.submit(
            (),
            move |()| opcode::Close::new(types::Fd(raw)).build(),
            discard_nothing,
            |(), cqe| result(cqe).map(drop),
        )
    }

    /// Waits until `fd` is ready for `events` (`libc::POLLIN`...), returning the ready events.
    pub fn poll_add(&self, socket: &SharedFd, events: u32) -> Op<SharedFd, io::Result<u32>> {
        self.submit(
            socket.clone(),
            move |s| opcode::PollAdd::new(raw(s), events).build(),
            discard_nothing,
            |_, cqe| result(cqe),
        )
    }

    /// Shuts down one or both directions of a socket (`libc::SHUT_WR`...).
    pub fn shutdown(&self, socket: &SharedFd, how: i32) -> Op<SharedFd, io::Result<()>> {
        self.submit(
            socket.clone(),
            move |s| opcode::Shutdown::new(raw(s), how).build(),
            discard_nothing,
            |_, cqe| result(cqe).map(drop),
        )
    }

    /// Cancels every op on `socket` (`IORING_ASYNC_CANCEL_FD | ALL`): how a forced close
    /// completes ops that a bare `close` would leave pending.
    pub fn cancel_fd(&self, socket: &SharedFd) {
        let entry = opcode::AsyncCancel2::new(types::CancelBuilder::fd(raw(socket)).all()).build();
        self.push_untracked(entry);
    }
}

/// The stream of connections from [`Ring::accept_multi`].
#[derive(Debug)]
pub struct AcceptStream {
    op: MultiOp,
}

impl AcceptStream {
    /// The next connection; `None` once the kernel ended the multishot (re-arm with a new
    /// `accept_multi`), an error for a failed accept (the multishot may go on).
    pub async fn next(&mut self) -> Option<io::Result<OwnedFd>> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Polling form of [`next`](AcceptStream::next).
    pub fn poll_next(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<io::Result<OwnedFd>>> {
        self.op.poll_next(cx).map(|cqe| {
            cqe.map(|cqe| {
                result(cqe).map(|accepted| {
                    // SAFETY: a successful accept returns a new descriptor that we now own.
                    unsafe { OwnedFd::from_raw_fd(accepted as RawFd) }
                })
            })
        })
    }

    /// Connections (or the ending) that arrived and wait to be taken.
    pub fn queued(&self) -> usize {
        self.op.queued()
    }

    /// Asks the kernel to stop accepting: connections it accepted first are still delivered,
    /// then the stream ends with `ECANCELED` (or with its own ending if that came first).
    pub fn cancel(&mut self) {
        self.op.cancel();
    }
}

/// What a vectored read or write parks: the descriptor, the buffers and the iovec array
/// pointing into them.
#[derive(Debug)]
pub struct VectoredData<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
}

// SAFETY: the iovecs point into `bufs`, which the data owns and which are `Send`; the raw
// pointers are never used to alias across threads.
unsafe impl<B: Send> Send for VectoredData<B> {}

/// What a message send or receive parks: descriptor, buffer, its iovec, the address and the
/// `msghdr` pointing at all of them.
#[derive(Debug)]
pub struct MsgData<B> {
    fd: SharedFd,
    buf: B,
    iovec: libc::iovec,
    addr: RawAddr,
    msghdr: libc::msghdr,
}

// SAFETY: the iovec and msghdr point into the boxed data itself and into `buf`, which it owns.
unsafe impl<B: Send> Send for MsgData<B> {}

impl Ring {
    /// Writes the initialised bytes of every buffer in order (`writev(2)`), returning how many
    /// bytes were written and the buffers.
    pub fn writev<B: IoBuf>(
        &self,
        fd: &SharedFd,
        bufs: Vec<B>,
    ) -> Op<VectoredData<B>, BufResult<usize, Vec<B>>> {
        let data = VectoredData {
            fd: fd.clone(),
            iovecs: bufs
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.stable_ptr().cast_mut().cast(),
                    iov_len: b.bytes_init(),
                })
                .collect(),
            bufs,
        };
        self.submit(
            data,
            |d| {
                opcode::Writev::new(raw(&d.fd), d.iovecs.as_ptr(), d.iovecs.len() as u32)
                    .offset(u64::MAX)
                    .build()
            },
            discard_nothing,
            |d, cqe| (result(cqe).map(|n| n as usize), d.bufs),
        )
    }

    /// Reads into the buffers in order (`readv(2)`), filling each one's spare capacity before the
    /// next; returns how many bytes were read and the buffers, each with its new length.
    pub fn readv<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut bufs: Vec<B>,
    ) -> Op<VectoredData<B>, BufResult<usize, Vec<B>>> {
        let iovecs = bufs
            .iter_mut()
            .map(|b| {
                let (ptr, len) = spare(b);
                libc::iovec {
                    iov_base: ptr.cast(),
                    iov_len: len as usize,
                }
            })
            .collect();
        self.submit(
            VectoredData {
                fd: fd.clone(),
                bufs,
                iovecs,
            },
            |d| {
                opcode::Readv::new(raw(&d.fd), d.iovecs.as_ptr(), d.iovecs.len() as u32)
                    .offset(u64::MAX)
                    .build()
            },
            discard_nothing,
            |mut d, cqe| {
                let res = result(cqe).map(|n| n as usize);
                if let Ok(total) = res {
                    let mut left = total;
                    for (buf, iov) in d.bufs.iter_mut().zip(&d.iovecs) {
                        let n = left.min(iov.iov_len);
                        appended(buf, n);
                        left -= n;
                    }
                }
                (res, d.bufs)
            },
        )
    }

    /// Sends `buf` with `IORING_OP_SEND_ZC`: the kernel transmits from the buffer without copying
    /// it, and the buffer comes back only after the kernel's second, notification completion says
    /// it let go. Worth it for large sends only.
    pub fn send_zc<B: IoBuf>(
        &self,
        fd: &SharedFd,
        buf: B,
    ) -> Op<(SharedFd, B), BufResult<usize, B>> {
        let (ptr, len) = init(&buf);
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| opcode::SendZc::new(raw(fd_), ptr, len).build(),
            discard_nothing,
            |(_, buf), cqe| (result(cqe).map(|n| n as usize), buf),
        )
    }

    /// Sends `buf`'s initialised bytes as one message (`sendmsg(2)`), to `to` or, for a connected
    /// socket, to its peer; never raises `SIGPIPE`.
    pub fn send_msg<B: IoBuf>(
        &self,
        fd: &SharedFd,
        buf: B,
        to: Option<RawAddr>,
    ) -> Op<MsgData<B>, BufResult<usize, B>> {
        let (ptr, len) = init(&buf);
        let named = to.is_some();
        let data = msg_data(
            fd,
            buf,
            (ptr.cast_mut(), len),
            to.unwrap_or_else(RawAddr::empty),
        );
        self.submit(
            data,
            move |d| {
                fix_msghdr(d, named);
                opcode::SendMsg::new(raw(&d.fd), &raw const d.msghdr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            },
            discard_nothing,
            |d, cqe| (result(cqe).map(|n| n as usize), d.buf),
        )
    }

    /// Sends `buf` as one datagram to `addr` (`sendmsg(2)`).
    pub fn send_to<B: IoBuf>(
        &self,
        fd: &SharedFd,
        buf: B,
        addr: SocketAddr,
    ) -> Op<MsgData<B>, BufResult<usize, B>> {
        self.send_msg(fd, buf, Some(RawAddr::from_std(addr)))
    }

    /// Receives one message into `buf`'s spare capacity (`recvmsg(2)`): its length, the
    /// sender's address, and whether it was longer than the space and truncated (`MSG_TRUNC`).
    pub fn recv_msg<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
    ) -> Op<MsgData<B>, BufResult<Datagram, B>> {
        let iov = spare(&mut buf);
        let data = msg_data(fd, buf, iov, RawAddr::empty());
        self.submit(
            data,
            |d| {
                fix_msghdr(d, true);
                opcode::RecvMsg::new(raw(&d.fd), &raw mut d.msghdr).build()
            },
            discard_nothing,
            |mut d, cqe| {
                let res = result(cqe).map(|n| {
                    let len = n as usize;
                    appended(&mut d.buf, len);
                    let from = RawAddr::from_parts(d.addr.storage, d.msghdr.msg_namelen);
                    let truncated = d.msghdr.msg_flags & libc::MSG_TRUNC != 0;
                    Datagram {
                        len,
                        from,
                        truncated,
                    }
                });
                (res, d.buf)
            },
        )
    }

    /// Moves up to `len` bytes from `from` to `to` inside the kernel (`splice(2)`; one side must
    /// be a pipe). Offsets of `-1` mean "the current position".
    ///
    /// `keep` are descriptors the op holds open until its final CQE besides its own two: a
    /// splice into a blocking socket holds the pipe's lock while it waits for room, and closing
    /// either end of that pipe takes the same lock, so the caller's last handles on a pipe must
    /// not be closed while the splice runs (pass them here).
    pub fn splice(
        &self,
        from: &SharedFd,
        from_offset: i64,
        to: &SharedFd,
        to_offset: i64,
        len: u32,
        keep: Vec<SharedFd>,
    ) -> Op<(SharedFd, SharedFd, Vec<SharedFd>), io::Result<usize>> {
        self.submit(
            (from.clone(), to.clone(), keep),
            move |(f, t, _)| {
                opcode::Splice::new(raw(f), from_offset, raw(t), to_offset, len).build()
            },
            discard_nothing,
            |_, cqe| result(cqe).map(|n| n as usize),
        )
    }

    /// Receives into `buf`'s spare capacity, cancelled by the kernel (`ECANCELED`) if nothing
    /// arrives within `limit`: a receive and a linked timeout in one submission.
    #[allow(
        clippy::type_complexity,
        reason = "the op's data and its output, spelled out"
    )]
    pub fn recv_timeout<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
        limit: Duration,
    ) -> Op<Linked<(SharedFd, B), BufResult<usize, B>>, BufResult<usize, B>> {
        let (ptr, len) = spare(&mut buf);
        self.submit_linked_timeout(
            (fd.clone(), buf),
            limit,
            move |(fd_, _)| opcode::Recv::new(raw(fd_), ptr, len).build(),
            discard_nothing,
            |(_, buf), cqe| filled(buf, cqe),
        )
    }
}

fn msg_data<B: IoBuf>(fd: &SharedFd, buf: B, iov: (*mut u8, u32), addr: RawAddr) -> MsgData<B> {
    MsgData {
        fd: fd.clone(),
        buf,
        iovec: libc::iovec {
            iov_base: iov.0.cast(),
            iov_len: iov.1 as usize,
        },
        addr,
        // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths); `fix_msghdr` fills
        // it once the data is boxed at its final address.
        msghdr: unsafe { std::mem::zeroed() },
    }
}

/// Points the boxed `msghdr` at the boxed address (if `named`) and iovec (the iovec already
/// points into the buffer's heap memory, which did not move when the data was boxed).
fn fix_msghdr<B>(d: &mut MsgData<B>, named: bool) {
    if named {
        d.msghdr.msg_name = (&raw mut d.addr.storage).cast();
        d.msghdr.msg_namelen = d.addr.len;
    }
    d.msghdr.msg_iov = &raw mut d.iovec;
    d.msghdr.msg_iovlen = 1;
}
