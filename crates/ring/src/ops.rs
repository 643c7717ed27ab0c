//! The typed operations. Each boxes what the kernel will touch, and gives buffers back with
//! the result: `(io::Result<usize>, B)`.

use crate::sync::unmodelled::{Arc, AtomicUsize, Ordering};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, types};

use crate::buf::{IoBuf, IoBufMut};
use crate::lifecycle::Cqe;
use crate::ring::{MultiOp, Op, Ring, discard_fd};

/// A descriptor shared by the ops that use it: it stays open until the last op holding it has
/// seen its final CQE, so the kernel never acts on a closed or reused number.
pub type SharedFd = Arc<OwnedFd>;

/// Bytes that dropped receives had already taken from a socket, kept for the next read, and
/// how many of those receives the kernel has not finished yet.
///
/// A reader must not start a new receive while one is outstanding: the old one's bytes would
/// land in the stash *after* the new one's, out of order. Wait for [`is_settled`], then drain
/// the stash, then receive.
///
/// [`is_settled`]: Stash::is_settled
#[derive(Debug, Clone, Default)]
pub struct Stash {
    state: Arc<StashState>,
}

/// The counts a read checks on every call are atomics; the bytes themselves, rare, sit under a
/// lock.
#[derive(Debug, Default)]
struct StashState {
    /// Receives of this stash still in the kernel.
    outstanding: AtomicUsize,
    /// Bytes kept (the length of `bytes`, readable without the lock).
    kept: AtomicUsize,
    bytes: crate::sync::unmodelled::Mutex<std::collections::VecDeque<u8>>,
}

impl Stash {
    fn bytes(&self) -> crate::sync::unmodelled::MutexGuard<'_, std::collections::VecDeque<u8>> {
        self.state
            .bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `true` when no receive of this stash is still in the kernel.
    pub fn is_settled(&self) -> bool {
        // Acquire: pairs with `finished`, so bytes a finished receive kept are visible.
        self.state.outstanding.load(Ordering::Acquire) == 0
    }

    /// Kept bytes waiting to be read.
    pub fn len(&self) -> usize {
        self.state.kept.load(Ordering::Acquire)
    }

    /// `true` if no byte is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves up to `out.len()` kept bytes into `out`, oldest first; returns how many.
    pub fn take_into(&self, out: &mut [u8]) -> usize {
        let mut bytes = self.bytes();
        let n = out.len().min(bytes.len());
        for (slot, byte) in out.iter_mut().zip(bytes.drain(..n)) {
            *slot = byte;
        }
        self.state.kept.store(bytes.len(), Ordering::Release);
        n
    }

    fn started(&self) {
        self.state.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    fn finished(&self, late_bytes: &[u8]) {
        if !late_bytes.is_empty() {
            let mut bytes = self.bytes();
            bytes.extend(late_bytes);
            self.state.kept.store(bytes.len(), Ordering::Release);
        }
        // Release: the kept bytes are published before the receive counts as settled.
        let _ = self
            .state
            .outstanding
            .fetch_update(Ordering::Release, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }
}

/// A receive whose future is gone completed: keep its bytes, if any, and mark it finished.
fn stash_late_bytes<B: IoBufMut>(data: &mut (dyn std::any::Any + Send), cqe: Cqe) {
    let Some((_, buf, stash)) = data.downcast_mut::<(SharedFd, B, Stash)>() else {
        return;
    };
    let n = usize::try_from(cqe.result)
        .unwrap_or(0)
        .min(buf.bytes_total());
    crate::memcheck::mark_initialised(buf.stable_mut_ptr(), n);
    // SAFETY: the kernel wrote the first `n` bytes of the buffer (its CQE says so) and is done
    // with it; the buffer is still owned by the parked op data.
    let received = unsafe { std::slice::from_raw_parts(buf.stable_mut_ptr(), n) };
    stash.finished(received);
}

/// What [`Ring::recv_from`] reports: bytes received, the sender, and whether the datagram was
/// truncated to fit the buffer.
pub type Datagram = (usize, Option<SocketAddr>, bool);

/// A buffer op's output: the result and the buffer, always given back.
pub type BufResult<T, B> = (io::Result<T>, B);

fn result(cqe: Cqe) -> io::Result<u32> {
    if cqe.result < 0 {
        Err(io::Error::from_raw_os_error(-cqe.result))
    } else {
        Ok(cqe.result as u32)
    }
}

/// Completes a receive-like op: marks the `n` bytes the kernel wrote as initialised and gives the
/// buffer back with the result.
fn filled<B: IoBufMut>(mut buf: B, cqe: Cqe) -> BufResult<usize, B> {
    let res = result(cqe).map(|n| n as usize);
    if let Ok(n) = res {
        crate::memcheck::mark_initialised(buf.stable_mut_ptr(), n);
        // SAFETY: the kernel initialised the first `n` bytes (its CQE says so).
        unsafe { buf.set_init(n) };
    }
    (res, buf)
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET if len as usize >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in`, which it can contain.
            let addr: &libc::sockaddr_in =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            Some(SocketAddr::from((
                u32::from_be(addr.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(addr.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: the family says the storage holds a `sockaddr_in6`, which it can contain.
            let addr: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            Some(SocketAddr::from((
                addr.sin6_addr.s6_addr,
                u16::from_be(addr.sin6_port),
            )))
        }
        _ => None,
    }
}

fn std_to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid `sockaddr_storage`.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in`.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: `sockaddr_storage` is larger than and aligned for `sockaddr_in6`.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_scope_id = v6.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn raw(shared: &SharedFd) -> types::Fd {
    types::Fd(shared.as_raw_fd())
}

/// What an accept parks in the op table: the listener and the peer address the kernel fills.
#[derive(Debug)]
pub struct AcceptData {
    fd: SharedFd,
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl Ring {
    /// A no-op round trip through the kernel.
    pub fn nop(&self) -> Op<(), io::Result<()>> {
        self.submit(
            (),
            |_| opcode::Nop::new().build(),
            Ring::discard_default(),
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
            Ring::discard_default(),
            |_, cqe| match result(cqe) {
                Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(()),
                other => other.map(drop),
            },
        )
    }

    /// Reads into `buf` at `offset` (`u64::MAX`: the file position / a stream).
    pub fn read<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
        offset: u64,
    ) -> Op<(SharedFd, B), BufResult<usize, B>> {
        let len = u32::try_from(buf.bytes_total()).unwrap_or(u32::MAX);
        let ptr = buf.stable_mut_ptr();
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| opcode::Read::new(raw(fd_), ptr, len).offset(offset).build(),
            Ring::discard_default(),
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
        let len = u32::try_from(buf.bytes_init()).unwrap_or(u32::MAX);
        let ptr = buf.stable_ptr();
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| {
                opcode::Write::new(raw(fd_), ptr, len)
                    .offset(offset)
                    .build()
            },
            Ring::discard_default(),
            |(_, buf), cqe| (result(cqe).map(|n| n as usize), buf),
        )
    }

    /// Receives into `buf` (a socket).
    pub fn recv<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
    ) -> Op<(SharedFd, B), BufResult<usize, B>> {
        let len = u32::try_from(buf.bytes_total()).unwrap_or(u32::MAX);
        let ptr = buf.stable_mut_ptr();
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| opcode::Recv::new(raw(fd_), ptr, len).build(),
            Ring::discard_default(),
            |(_, buf), cqe| filled(buf, cqe),
        )
    }

    /// Receives into `buf` like [`recv`](Ring::recv), but if the future is dropped after the
    /// kernel already received bytes, those bytes are appended to `stash` instead of being lost:
    /// the caller's next read takes them from there first.
    pub fn recv_or_stash<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
        stash: &Stash,
    ) -> Op<(SharedFd, B, Stash), BufResult<usize, B>> {
        let len = u32::try_from(buf.bytes_total()).unwrap_or(u32::MAX);
        let ptr = buf.stable_mut_ptr();
        stash.started();
        self.submit(
            (fd.clone(), buf, stash.clone()),
            move |(fd_, _, _)| opcode::Recv::new(raw(fd_), ptr, len).build(),
            stash_late_bytes::<B>,
            |(_, buf, stash), cqe| {
                stash.finished(&[]);
                filled(buf, cqe)
            },
        )
    }

    /// Sends `buf`'s initialised bytes (a socket); never raises `SIGPIPE`.
    pub fn send<B: IoBuf>(&self, fd: &SharedFd, buf: B) -> Op<(SharedFd, B), BufResult<usize, B>> {
        let len = u32::try_from(buf.bytes_init()).unwrap_or(u32::MAX);
        let ptr = buf.stable_ptr();
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| {
                opcode::Send::new(raw(fd_), ptr, len)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            },
            Ring::discard_default(),
            |(_, buf), cqe| (result(cqe).map(|n| n as usize), buf),
        )
    }

    /// Accepts one connection (close-on-exec, non-blocking).
    ///
    /// Cancel safety: a connection accepted after the future was dropped is closed, never leaked.
    pub fn accept(
        &self,
        listener: &SharedFd,
    ) -> Op<AcceptData, io::Result<(OwnedFd, Option<SocketAddr>)>> {
        let data = AcceptData {
            fd: listener.clone(),
            // SAFETY: all-zero is a valid `sockaddr_storage`.
            storage: unsafe { std::mem::zeroed() },
            len: std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t,
        };
        self.submit(
            data,
            |d| {
                opcode::Accept::new(raw(&d.fd), (&raw mut d.storage).cast(), &raw mut d.len)
                    .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                    .build()
            },
            discard_fd,
            |d, cqe| {
                let accepted = result(cqe)?;
                // SAFETY: a successful accept returns a new descriptor that we now own.
                let stream = unsafe { OwnedFd::from_raw_fd(accepted as RawFd) };
                Ok((stream, sockaddr_to_std(&d.storage, d.len)))
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
                        .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                        .build()
                },
                discard_fd,
            ),
        }
    }

    /// Connects `socket` to `addr`.
    pub fn connect(
        &self,
        socket: &SharedFd,
        addr: SocketAddr,
    ) -> Op<(SharedFd, libc::sockaddr_storage, libc::socklen_t), io::Result<()>> {
        let (storage, len) = std_to_sockaddr(addr);
        self.submit(
            (socket.clone(), storage, len),
            |(s, storage, len)| {
                opcode::Connect::new(
                    raw(s),
                    (storage as *const libc::sockaddr_storage).cast(),
                    *len,
                )
                .build()
            },
            Ring::discard_default(),
            |_, cqe| result(cqe).map(drop),
        )
    }

    /// Closes `fd` through the ring.
    pub fn close(&self, owned: OwnedFd) -> Op<(), io::Result<()>> {
        let raw = owned.into_raw_fd();
        self.submit(
            (),
            move |()| opcode::Close::new(types::Fd(raw)).build(),
            Ring::discard_default(),
            |(), cqe| result(cqe).map(drop),
        )
    }

    /// Waits until `fd` is ready for `events` (`libc::POLLIN`...), returning the ready events.
    pub fn poll_add(&self, socket: &SharedFd, events: u32) -> Op<SharedFd, io::Result<u32>> {
        self.submit(
            socket.clone(),
            move |s| opcode::PollAdd::new(raw(s), events).build(),
            Ring::discard_default(),
            |_, cqe| result(cqe),
        )
    }

    /// Shuts down one or both directions of a socket (`libc::SHUT_WR`...).
    pub fn shutdown(&self, socket: &SharedFd, how: i32) -> Op<SharedFd, io::Result<()>> {
        self.submit(
            socket.clone(),
            move |s| opcode::Shutdown::new(raw(s), how).build(),
            Ring::discard_default(),
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
        let cqe = self.op.next().await?;
        Some(result(cqe).map(|accepted| {
            // SAFETY: a successful accept returns a new descriptor that we now own.
            unsafe { OwnedFd::from_raw_fd(accepted as RawFd) }
        }))
    }
}

/// What a vectored write parks: the descriptor, the buffers and the iovec array pointing into
/// them.
#[derive(Debug)]
pub struct WritevData<B> {
    fd: SharedFd,
    bufs: Vec<B>,
    iovecs: Vec<libc::iovec>,
}

// SAFETY: the iovecs point into `bufs`, which the data owns and which are `Send`; the raw
// pointers are never used to alias across threads.
unsafe impl<B: Send> Send for WritevData<B> {}

/// What a message send/receive parks: descriptor, buffer, its iovec, the address and the
/// `msghdr` pointing at all of them.
#[derive(Debug)]
pub struct MsgData<B> {
    fd: SharedFd,
    buf: B,
    iovec: libc::iovec,
    addr: libc::sockaddr_storage,
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
    ) -> Op<WritevData<B>, BufResult<usize, Vec<B>>> {
        let data = WritevData {
            fd: fd.clone(),
            iovecs: bufs
                .iter()
                .map(|b| libc::iovec {
                    iov_base: b.stable_ptr() as *mut libc::c_void,
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
            Ring::discard_default(),
            |d, cqe| (result(cqe).map(|n| n as usize), d.bufs),
        )
    }

    /// Reads into the buffers in order (`readv(2)`), filling each one's spare capacity before the
    /// next; returns how many bytes were read and the buffers, each with its new length.
    pub fn readv<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut bufs: Vec<B>,
    ) -> Op<WritevData<B>, BufResult<usize, Vec<B>>> {
        let iovecs = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.stable_mut_ptr().wrapping_add(b.bytes_init()).cast(),
                iov_len: b.bytes_total() - b.bytes_init(),
            })
            .collect();
        self.submit(
            WritevData {
                fd: fd.clone(),
                bufs,
                iovecs,
            },
            |d| {
                opcode::Readv::new(raw(&d.fd), d.iovecs.as_ptr(), d.iovecs.len() as u32)
                    .offset(u64::MAX)
                    .build()
            },
            Ring::discard_default(),
            |mut d, cqe| {
                let res = result(cqe).map(|n| n as usize);
                if let Ok(total) = res {
                    let mut left = total;
                    for (buf, iov) in d.bufs.iter_mut().zip(&d.iovecs) {
                        let n = left.min(iov.iov_len);
                        crate::memcheck::mark_initialised(iov.iov_base.cast(), n);
                        let init = buf.bytes_init() + n;
                        // SAFETY: the kernel filled `n` bytes after the old length.
                        unsafe { buf.set_init(init) };
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
        let len = u32::try_from(buf.bytes_init()).unwrap_or(u32::MAX);
        let ptr = buf.stable_ptr();
        self.submit(
            (fd.clone(), buf),
            move |(fd_, _)| opcode::SendZc::new(raw(fd_), ptr, len).build(),
            Ring::discard_default(),
            |(_, buf), cqe| (result(cqe).map(|n| n as usize), buf),
        )
    }

    /// Sends `buf` as one datagram to `addr` (`sendmsg(2)`).
    pub fn send_to<B: IoBuf>(
        &self,
        fd: &SharedFd,
        buf: B,
        addr: SocketAddr,
    ) -> Op<MsgData<B>, BufResult<usize, B>> {
        let (storage, addr_len) = std_to_sockaddr(addr);
        let iov = (buf.stable_ptr() as *mut u8, buf.bytes_init());
        let data = msg_data(fd, buf, iov, storage, addr_len);
        self.submit(
            data,
            |d| {
                fix_msghdr(d);
                opcode::SendMsg::new(raw(&d.fd), &raw const d.msghdr).build()
            },
            Ring::discard_default(),
            |d, cqe| (result(cqe).map(|n| n as usize), d.buf),
        )
    }

    /// Receives one datagram into `buf` (`recvmsg(2)`): its length, the sender's address, and
    /// whether it was longer than the buffer and truncated (`MSG_TRUNC`).
    pub fn recv_from<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
    ) -> Op<MsgData<B>, BufResult<Datagram, B>> {
        // SAFETY: all-zero is a valid `sockaddr_storage`.
        let storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let iov = (buf.stable_mut_ptr(), buf.bytes_total());
        let data = msg_data(fd, buf, iov, storage, len);
        self.submit(
            data,
            |d| {
                fix_msghdr(d);
                opcode::RecvMsg::new(raw(&d.fd), &raw mut d.msghdr).build()
            },
            Ring::discard_default(),
            |mut d, cqe| {
                let res = result(cqe).map(|n| {
                    let n = n as usize;
                    crate::memcheck::mark_initialised(d.buf.stable_mut_ptr(), n);
                    // SAFETY: the kernel initialised `n` bytes of the buffer.
                    unsafe { d.buf.set_init(n) };
                    let truncated = d.msghdr.msg_flags & libc::MSG_TRUNC != 0;
                    (n, sockaddr_to_std(&d.addr, d.msghdr.msg_namelen), truncated)
                });
                (res, d.buf)
            },
        )
    }

    /// Moves up to `len` bytes from `from` to `to` inside the kernel (`splice(2)`; one side must
    /// be a pipe). Offsets of `-1` mean "the current position".
    pub fn splice(
        &self,
        from: &SharedFd,
        from_offset: i64,
        to: &SharedFd,
        to_offset: i64,
        len: u32,
    ) -> Op<(SharedFd, SharedFd), io::Result<usize>> {
        self.submit(
            (from.clone(), to.clone()),
            move |(f, t)| opcode::Splice::new(raw(f), from_offset, raw(t), to_offset, len).build(),
            Ring::discard_default(),
            |_, cqe| result(cqe).map(|n| n as usize),
        )
    }

    /// Receives into `buf`, cancelled by the kernel (`ECANCELED`) if nothing arrives within
    /// `limit`: a receive and a linked timeout in one submission.
    #[allow(
        clippy::type_complexity,
        reason = "the op's data and its output, spelled out"
    )]
    pub fn recv_timeout<B: IoBufMut>(
        &self,
        fd: &SharedFd,
        mut buf: B,
        limit: Duration,
    ) -> Op<crate::ring::Linked<(SharedFd, B), BufResult<usize, B>>, BufResult<usize, B>> {
        let len = u32::try_from(buf.bytes_total()).unwrap_or(u32::MAX);
        let ptr = buf.stable_mut_ptr();
        self.submit_linked_timeout(
            (fd.clone(), buf),
            limit,
            move |(fd_, _)| opcode::Recv::new(raw(fd_), ptr, len).build(),
            Ring::discard_default(),
            |(_, buf), cqe| filled(buf, cqe),
        )
    }
}

fn msg_data<B: IoBuf>(
    fd: &SharedFd,
    buf: B,
    iov: (*mut u8, usize),
    addr: libc::sockaddr_storage,
    addr_len: libc::socklen_t,
) -> MsgData<B> {
    // SAFETY: all-zero is a valid `msghdr` (null pointers, zero lengths); `fix_msghdr` fills it
    // once the data is boxed at its final address.
    let mut msghdr: libc::msghdr = unsafe { std::mem::zeroed() };
    msghdr.msg_namelen = addr_len;
    MsgData {
        fd: fd.clone(),
        buf,
        iovec: libc::iovec {
            iov_base: iov.0.cast(),
            iov_len: iov.1,
        },
        addr,
        msghdr,
    }
}

/// Points the boxed `msghdr` at the boxed address and iovec (the iovec already points into the
/// buffer's heap memory, which did not move when the data was boxed).
fn fix_msghdr<B>(d: &mut MsgData<B>) {
    d.msghdr.msg_name = (&raw mut d.addr).cast();
    d.msghdr.msg_iov = &raw mut d.iovec;
    d.msghdr.msg_iovlen = 1;
}
