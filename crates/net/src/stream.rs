//! Byte-stream I/O shared by [`TcpStream`](crate::TcpStream) and
//! [`UnixStream`](crate::UnixStream), on both backends.
//!
//! # Cancel safety (both backends)
//!
//! * `read`: dropping the future loses no bytes. On the reactor the `read(2)` happens only
//!   inside a single poll, so nothing is taken from the socket unless it is returned. On the ring,
//!   a receive the kernel completed after the drop is kept in the stream's stash and returned by
//!   the next read.
//! * `write`, `writev`, `send_file`: a dropped write reports nothing; bytes it had handed to the
//!   kernel may have been sent (as with any socket write).

use std::io;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use socket2::SockRef;

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::runtime::{self, Driver};
use crate::{coop, time};

pub(crate) enum Io {
    Poll(weir_reactor::Registration<OwnedFd>),
    #[cfg(target_os = "linux")]
    Uring {
        ring: weir_ring::Ring,
        fd: weir_ring::SharedFd,
        stash: weir_ring::Stash,
    },
}

impl Io {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Io> {
        let core = runtime::current();
        match &core.driver {
            Driver::Poll(reactor) => {
                SockRef::from(&fd).set_nonblocking(true)?;
                Ok(Io::Poll(reactor.register(fd)?))
            }
            #[cfg(target_os = "linux")]
            Driver::Uring { ring, .. } => Ok(Io::Uring {
                ring: ring.clone(),
                fd: std::sync::Arc::new(fd),
                stash: weir_ring::Stash::default(),
            }),
        }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Io::Poll(registration) => registration.get_ref().as_fd(),
            #[cfg(target_os = "linux")]
            Io::Uring { fd, .. } => fd.as_fd(),
        }
    }
}
/// Deadlines a server puts on a connection's reads.
#[derive(Default)]
struct ReadTimeouts {
    /// Until the first byte arrives.
    first_byte: Option<std::time::Instant>,
    /// Between reads once data has flowed.
    idle: Option<std::time::Duration>,
    /// Set once a read returned data.
    seen_data: bool,
    /// Counts expiries, for the server's metrics.
    counter: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Io {
    /// Runs the non-blocking `op` until it stops failing with `WouldBlock`, waiting for
    /// readiness in `direction` in between: the reactor's readiness, or a poll on the ring.
    ///
    /// Cancel safety: `op` runs only inside a poll of this future, so dropping it between
    /// attempts loses nothing.
    pub(crate) async fn ready_io<R>(
        &self,
        direction: weir_reactor::Direction,
        mut op: impl FnMut(BorrowedFd<'_>) -> io::Result<R>,
    ) -> io::Result<R> {
        match self {
            Io::Poll(registration) => registration.io(direction, |fd| op(fd.as_fd())).await,
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => loop {
                match op(fd.as_fd()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        let events = match direction {
                            weir_reactor::Direction::Read => libc::POLLIN,
                            weir_reactor::Direction::Write => libc::POLLOUT,
                        };
                        ring.poll_add(fd, events as u32).await?;
                    }
                    result => return result,
                }
            },
        }
    }

    /// Finishes a non-blocking `connect(2)` that reported `EINPROGRESS` or `EAGAIN`: waits until
    /// the socket is writable and returns the connection's error, if any.
    pub(crate) async fn finish_connect(&self) -> io::Result<()> {
        match self {
            Io::Poll(registration) => {
                std::future::poll_fn(|cx| {
                    registration.poll_ready(weir_reactor::Direction::Write, cx)
                })
                .await;
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => {
                ring.poll_add(fd, libc::POLLOUT as u32).await?;
            }
        }
        match SockRef::from(&self.fd()).take_error()? {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// A connected byte stream: the I/O half of [`TcpStream`](crate::TcpStream) and
/// [`UnixStream`](crate::UnixStream).
pub(crate) struct Stream {
    pub(crate) io: Io,
    timeouts: ReadTimeouts,
    /// Ops in flight for the poll-based interface (the compatibility features), on the ring;
    /// allocated on first use.
    #[cfg(target_os = "linux")]
    polled: Option<Box<Polled>>,
    /// The multishot receive of pooled reads, once armed, and a buffer an owned read took
    /// only part of.
    #[cfg(target_os = "linux")]
    pooled_recv: Option<weir_ring::RecvStream>,
    #[cfg(target_os = "linux")]
    pooled_rest: Option<(weir_bufpool::Buf, usize)>,
}

/// The poll-based interface's state on the ring: an owned-buffer op in flight per direction,
/// and received bytes the caller's buffer had no room for.
#[cfg(target_os = "linux")]
#[derive(Default)]
struct Polled {
    read: Option<ReadOp>,
    leftover: Vec<u8>,
    leftover_at: usize,
    write: Option<WriteOp>,
}

#[cfg(target_os = "linux")]
type ReadOp = weir_ring::Op<
    (
        weir_ring::SharedFd,
        crate::buf::RingBuf<Vec<u8>>,
        weir_ring::Stash,
    ),
    BufResult<usize, crate::buf::RingBuf<Vec<u8>>>,
>;
#[cfg(target_os = "linux")]
type WriteOp = weir_ring::Op<
    (weir_ring::SharedFd, crate::buf::RingBuf<Vec<u8>>),
    BufResult<usize, crate::buf::RingBuf<Vec<u8>>>,
>;

impl Stream {
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<Stream> {
        Ok(Stream {
            io: Io::new(fd)?,
            timeouts: ReadTimeouts::default(),
            #[cfg(target_os = "linux")]
            polled: None,
            #[cfg(target_os = "linux")]
            pooled_recv: None,
            #[cfg(target_os = "linux")]
            pooled_rest: None,
        })
    }

    /// A second stream on a duplicate of the descriptor.
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Stream::from_fd(self.io.fd().try_clone_to_owned()?)
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
        self.timeouts = ReadTimeouts {
            first_byte: first_byte.map(|d| std::time::Instant::now() + d),
            idle,
            seen_data: false,
            counter: Some(counter),
        };
    }

    /// Reads into `buf`'s spare capacity; `Ok(0)` is the end of the stream.
    ///
    /// On a connection accepted by a [`Server`](crate::server::Server) with read timeouts, a read
    /// that waits too long fails with `TimedOut`.
    ///
    /// Cancel safety: see the module docs — no received byte is ever lost.
    pub(crate) async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        let limit = if self.timeouts.seen_data {
            self.timeouts
                .idle
                .map(|idle| std::time::Instant::now() + idle)
        } else {
            self.timeouts.first_byte.or(self
                .timeouts
                .idle
                .map(|idle| std::time::Instant::now() + idle))
        };
        let Some(deadline) = limit else {
            return self.read_now(buf).await;
        };
        // The read is cancel-safe, so giving up at the deadline loses no byte (on the ring a
        // late completion goes to the stash). The caller's buffer must come back either way, so
        // the timed read fills a scratch buffer that may be dropped, then copies.
        let space = buf.bytes_total() - buf.bytes_init();
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let outcome = time::timeout(wait, self.read_now(Vec::with_capacity(space))).await;
        match outcome {
            Ok((Ok(n), scratch)) => {
                let mut buf = buf;
                let start = buf.bytes_init();
                // SAFETY: `n <= space`: the scratch buffer had `space` bytes of capacity; the
                // copy stays inside the caller's spare capacity.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        scratch.as_ptr(),
                        buf.stable_mut_ptr().wrapping_add(start),
                        n,
                    )
                };
                // SAFETY: the copy above initialised `n` bytes after `start`.
                unsafe { buf.set_init(start + n) };
                if n > 0 {
                    self.timeouts.seen_data = true;
                }
                (Ok(n), buf)
            }
            Ok((Err(error), _)) => (Err(error), buf),
            Err(_) => {
                if let Some(counter) = &self.timeouts.counter {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                (
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer sent nothing in time",
                    )),
                    buf,
                )
            }
        }
    }

    async fn read_now<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
        coop::proceed().await;
        match &self.io {
            Io::Poll(registration) => {
                let result = registration
                    .io_drained(weir_reactor::Direction::Read, |fd| {
                        let space = buf.bytes_total() - buf.bytes_init();
                        // SAFETY: read(2) into the buffer's spare capacity, which it owns.
                        let n = unsafe {
                            libc::read(
                                std::os::fd::AsRawFd::as_raw_fd(fd),
                                buf.stable_mut_ptr().wrapping_add(buf.bytes_init()).cast(),
                                space,
                            )
                        };
                        if n < 0 {
                            return Err(io::Error::last_os_error());
                        }
                        let n = n as usize;
                        // A short read emptied the socket's receive queue (an end of stream,
                        // n == 0, stays ready so that every later read sees it too).
                        Ok((n, n > 0 && n < space))
                    })
                    .await;
                if let Ok(n) = result {
                    let init = buf.bytes_init() + n;
                    // SAFETY: the kernel initialised `n` more bytes after the old length.
                    unsafe { buf.set_init(init) };
                }
                (result, buf)
            }
            #[cfg(target_os = "linux")]
            Io::Uring { .. } if self.pooled_recv.is_some() || self.pooled_rest.is_some() => {
                // Pooled reads armed a multishot receive: owned reads take from it too, so
                // bytes stay in order.
                // Boxed: only streams with pooled reads pay for this path's state in their
                // read futures (B8 measures every byte of an idle connection).
                Box::pin(self.read_through_pool(buf)).await
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, stash } => {
                // A receive dropped earlier may still be in the kernel: its bytes come first,
                // so wait for it to settle before receiving anew.
                while !stash.is_settled() {
                    crate::runtime::yield_now().await;
                }
                if !stash.is_empty() {
                    let start = buf.bytes_init();
                    let space = buf.bytes_total() - start;
                    // SAFETY: the buffer's own spare capacity, `space` bytes from `start`.
                    let spare = unsafe {
                        std::slice::from_raw_parts_mut(
                            buf.stable_mut_ptr().wrapping_add(start),
                            space,
                        )
                    };
                    let n = stash.take_into(spare);
                    // SAFETY: `take_into` initialised `n` bytes after `start`.
                    unsafe { buf.set_init(start + n) };
                    return (Ok(n), buf);
                }
                let start = buf.bytes_init();
                let (result, back) = ring
                    .recv_or_stash(fd, crate::buf::RingBuf(Tail { buf, start }), stash)
                    .await;
                let mut tail = back.0;
                if let Ok(n) = result {
                    // SAFETY: the kernel initialised `n` bytes after `start`.
                    unsafe { tail.buf.set_init(tail.start + n) };
                }
                (result, tail.buf)
            }
        }
    }

    /// Writes some of `buf`'s bytes; returns how many.
    pub(crate) async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
        self.write_from(buf, 0).await
    }

    async fn write_from<B: IoBuf>(&mut self, buf: B, offset: usize) -> BufResult<usize, B> {
        coop::proceed().await;
        match &self.io {
            Io::Poll(registration) => {
                let result = registration
                    .io(weir_reactor::Direction::Write, |fd| {
                        // SAFETY: send(2) from the buffer's initialised bytes after `offset`.
                        let n = unsafe {
                            libc::send(
                                std::os::fd::AsRawFd::as_raw_fd(fd),
                                buf.stable_ptr().wrapping_add(offset).cast(),
                                buf.bytes_init() - offset,
                                libc::MSG_NOSIGNAL,
                            )
                        };
                        byte_count(n)
                    })
                    .await;
                (result, buf)
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => {
                let (result, back) = ring
                    .send(fd, crate::buf::RingBuf(Skip { buf, offset }))
                    .await;
                (result, back.0.buf)
            }
        }
    }

    /// Writes all of `buf`.
    ///
    /// # Errors
    ///
    /// The first failed write (`BrokenPipe`, `ConnectionReset`...), or `WriteZero`.
    pub(crate) async fn write_all<B: IoBuf>(&mut self, buf: B) -> BufResult<(), B> {
        let mut written = 0;
        let mut buf = buf;
        while written < buf.bytes_init() {
            let (result, back) = self.write_from(buf, written).await;
            buf = back;
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Reads until `buf` holds `len` bytes (appending to what it holds).
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the stream ends first; any read error.
    pub(crate) async fn read_exact(
        &mut self,
        mut buf: Vec<u8>,
        len: usize,
    ) -> BufResult<(), Vec<u8>> {
        buf.reserve(len.saturating_sub(buf.len()));
        while buf.len() < len {
            let want = len - buf.len();
            let chunk = Vec::with_capacity(want);
            let (result, chunk) = self.read(chunk).await;
            match result {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), buf),
                Ok(_) => buf.extend_from_slice(&chunk),
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Shuts down one or both directions (`shutdown(2)`); `Shutdown::Write` is a half-close.
    ///
    /// # Errors
    ///
    /// `shutdown(2)` failed (not connected...).
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        SockRef::from(&self.io.fd()).shutdown(how)
    }

    /// Writes the initialised bytes of every buffer in order, in one `writev`/`sendmsg`; returns
    /// how many bytes were written (possibly fewer than all) and the buffers.
    pub(crate) async fn writev<B: IoBuf>(&mut self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
        coop::proceed().await;
        match &self.io {
            Io::Poll(registration) => {
                let mut iovecs: Vec<libc::iovec> = bufs
                    .iter()
                    .map(|b| libc::iovec {
                        iov_base: b.stable_ptr().cast_mut().cast(),
                        iov_len: b.bytes_init(),
                    })
                    .collect();
                let result = registration
                    .io(weir_reactor::Direction::Write, |fd| {
                        // SAFETY: all-zero is a valid `msghdr`; the fields set below point at
                        // `iovecs`, which outlives the call.
                        let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
                        message.msg_iov = iovecs.as_mut_ptr();
                        message.msg_iovlen = iovecs.len() as _;
                        // SAFETY: each iovec covers a buffer's initialised bytes, owned by `bufs`.
                        let n =
                            unsafe { libc::sendmsg(fd.as_raw_fd(), &message, libc::MSG_NOSIGNAL) };
                        byte_count(n)
                    })
                    .await;
                (result, bufs)
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => {
                // In-place collections: the wrapper has the buffer's layout, no reallocation.
                let wrapped = bufs.into_iter().map(crate::buf::RingBuf).collect();
                let (result, back) = ring.writev(fd, wrapped).await;
                (result, back.into_iter().map(|b| b.0).collect())
            }
        }
    }

    /// Sends up to `len` bytes of `file` from `offset` without copying them through user space:
    /// `sendfile(2)` on the reactor, `splice(2)` through a pipe on the ring. Returns how many
    /// bytes were sent: `len`, or fewer if the file ends first.
    pub(crate) async fn send_file(
        &mut self,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> io::Result<usize> {
        coop::proceed().await;
        match &self.io {
            Io::Poll(registration) => sendfile(registration, file, offset, len).await,
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => splice_file(ring, fd, file, offset, len).await,
        }
    }

    /// Reads into a buffer from the runtime's pool; `None` at the end of the stream. See the
    /// `pooled` module for how each backend does it.
    ///
    /// Cancel safety: dropping the future loses nothing — on the ring the receive lives in the
    /// stream and its deliveries wait for the next read; on the reactor the read happens only
    /// inside a poll.
    pub(crate) async fn read_pooled(&mut self) -> io::Result<Option<weir_bufpool::Buf>> {
        coop::proceed().await;
        let core = runtime::current();
        let pooled = core.pooled()?;
        match &self.io {
            Io::Poll(registration) => {
                // Wait for data before taking a buffer, so an idle connection holds none.
                std::future::poll_fn(|cx| {
                    registration.poll_ready(weir_reactor::Direction::Read, cx)
                })
                .await;
                let buf = pooled.pool.get().await;
                match self.read_now(buf).await {
                    (Ok(0), _) => Ok(None),
                    (Ok(_), buf) => Ok(Some(buf)),
                    (Err(error), _) => Err(error),
                }
            }
            #[cfg(target_os = "linux")]
            Io::Uring { .. } => self.pooled_ring(pooled).await,
        }
    }

    /// An owned read on a ring stream whose pooled receive is armed: copies from the next pooled
    /// buffer and keeps what does not fit for the next read.
    #[cfg(target_os = "linux")]
    async fn read_through_pool<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
        let core = runtime::current();
        let pooled = match core.pooled() {
            Ok(pooled) => pooled,
            Err(error) => return (Err(error), buf),
        };
        let (chunk, used) = match self.pooled_rest.take() {
            Some(rest) => rest,
            None => match self.pooled_ring(pooled).await {
                Ok(Some(chunk)) => (chunk, 0),
                Ok(None) => return (Ok(0), buf),
                Err(error) => return (Err(error), buf),
            },
        };
        let start = buf.bytes_init();
        let n = (buf.bytes_total() - start).min(chunk.len() - used);
        let from = chunk[used..used + n].as_ptr();
        let to = buf.stable_mut_ptr().wrapping_add(start);
        // SAFETY: `n` bytes fit in the buffer's spare capacity after `start`; the source is
        // `chunk`'s own bytes, a different buffer.
        unsafe { std::ptr::copy_nonoverlapping(from, to, n) };
        // SAFETY: the copy initialised `n` bytes after `start`.
        unsafe { buf.set_init(start + n) };
        if used + n < chunk.len() {
            self.pooled_rest = Some((chunk, used + n));
        }
        (Ok(n), buf)
    }

    /// `read_pooled` on the ring.
    #[cfg(target_os = "linux")]
    async fn pooled_ring(
        &mut self,
        pooled: &crate::pooled::Pooled,
    ) -> io::Result<Option<weir_bufpool::Buf>> {
        let Io::Uring { fd, stash, .. } = &self.io else {
            return Err(io::Error::other("not a ring stream"));
        };
        if let Some((buf, used)) = self.pooled_rest.take() {
            return Ok(Some(rest_of(&pooled.pool, buf, used).await));
        }
        // Bytes of a dropped owned read come first.
        while !stash.is_settled() {
            crate::runtime::yield_now().await;
        }
        if !stash.is_empty() {
            let mut buf = pooled.pool.get().await;
            let n = stash.take_into(buf.as_full_mut());
            buf.set_len(n).map_err(io::Error::from)?;
            return Ok(Some(buf));
        }
        let Some(group) = &pooled.ring else {
            return Err(io::Error::other("the ring has no provided buffers"));
        };
        loop {
            pooled.top_up();
            let receive = self.pooled_recv.get_or_insert_with(|| group.recv_multi(fd));
            match receive.next().await {
                Some(Ok(weir_ring::Received::Data(provided))) => {
                    let (id, len) = provided.into_id();
                    // SAFETY: the kernel filled buffer `id` (its CQE was reaped) and it left
                    // the pool through `into_raw` when it went into the ring.
                    let buf = unsafe { pooled.pool.from_raw(id, len) }.map_err(io::Error::from)?;
                    pooled.top_up();
                    return Ok(Some(buf));
                }
                Some(Ok(weir_ring::Received::Eof)) => {
                    self.pooled_recv = None;
                    return Ok(None);
                }
                Some(Err(error)) if error.raw_os_error() == Some(libc::ENOBUFS) => {
                    // The pool ran dry; the data waits in the socket. Wait for a free buffer
                    // (it goes to the ring at the top of the loop) and receive again.
                    self.pooled_recv = None;
                    drop(pooled.pool.get().await);
                }
                Some(Err(error)) => {
                    self.pooled_recv = None;
                    return Err(error);
                }
                // The kernel ended the multishot receive: arm a new one.
                None => self.pooled_recv = None,
            }
        }
    }

    /// Poll-based read into `dst` (for the compatibility traits). On the reactor it reads when
    /// the socket is ready; on the ring it keeps a receive in flight in the stream, copies its
    /// bytes out and keeps any `dst` had no room for. Read timeouts do not apply.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "hyper")),
        allow(dead_code, reason = "used by the compatibility features")
    )]
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut std::task::Context<'_>,
        dst: &mut [std::mem::MaybeUninit<u8>],
    ) -> std::task::Poll<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        use std::task::Poll;
        match &self.io {
            Io::Poll(registration) => {
                registration.poll_io(weir_reactor::Direction::Read, cx, |fd| {
                    // SAFETY: read(2) into `dst`, which we borrow mutably; the kernel only
                    // writes.
                    let n =
                        unsafe { libc::read(fd.as_raw_fd(), dst.as_mut_ptr().cast(), dst.len()) };
                    byte_count(n)
                })
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, stash } => {
                let polled = self.polled.get_or_insert_default();
                if polled.leftover_at < polled.leftover.len() {
                    let n = copy_out(&polled.leftover[polled.leftover_at..], dst);
                    polled.leftover_at += n;
                    return Poll::Ready(Ok(n));
                }
                if polled.read.is_none() {
                    if !stash.is_settled() {
                        // A dropped owned-buffer read is still in the kernel; its bytes come
                        // first. Check again on the next turn.
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    if !stash.is_empty() {
                        let mut kept = vec![0; stash.len().min(dst.len())];
                        let n = stash.take_into(&mut kept);
                        return Poll::Ready(Ok(copy_out(&kept[..n], dst)));
                    }
                    let mut scratch = std::mem::take(&mut polled.leftover);
                    scratch.clear();
                    scratch.reserve(dst.len().max(1));
                    polled.leftover_at = 0;
                    polled.read = Some(ring.recv_or_stash(fd, crate::buf::RingBuf(scratch), stash));
                }
                let Some(op) = polled.read.as_mut() else {
                    return Poll::Pending;
                };
                let (result, scratch) = std::task::ready!(std::pin::Pin::new(op).poll(cx));
                polled.read = None;
                polled.leftover = scratch.0;
                Poll::Ready(result.map(|_| {
                    let n = copy_out(&polled.leftover, dst);
                    polled.leftover_at = n;
                    n
                }))
            }
        }
    }

    /// Poll-based write of `src` (for the compatibility traits). On the ring the bytes are
    /// copied into a send kept in flight in the stream; as the traits require, a caller that
    /// got `Pending` calls again with the same bytes, and the count of that send is returned.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "hyper")),
        allow(dead_code, reason = "used by the compatibility features")
    )]
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut std::task::Context<'_>,
        src: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        #[cfg(target_os = "linux")]
        use std::task::Poll;
        match &self.io {
            Io::Poll(registration) => {
                registration.poll_io(weir_reactor::Direction::Write, cx, |fd| {
                    // SAFETY: send(2) from `src`, which we borrow.
                    let n = unsafe {
                        libc::send(
                            fd.as_raw_fd(),
                            src.as_ptr().cast(),
                            src.len(),
                            libc::MSG_NOSIGNAL,
                        )
                    };
                    byte_count(n)
                })
            }
            #[cfg(target_os = "linux")]
            Io::Uring { ring, fd, .. } => {
                let polled = self.polled.get_or_insert_default();
                let op = polled.write.get_or_insert_with(|| {
                    let chunk = src[..src.len().min(256 * 1024)].to_vec();
                    ring.send(fd, crate::buf::RingBuf(chunk))
                });
                let (result, _) = std::task::ready!(std::pin::Pin::new(op).poll(cx));
                polled.write = None;
                Poll::Ready(result)
            }
        }
    }

    /// Waits for a send started by [`poll_write`](Stream::poll_write) to finish.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "hyper")),
        allow(dead_code, reason = "used by the compatibility features")
    )]
    pub(crate) fn poll_flush(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        #[cfg(target_os = "linux")]
        if let Some(op) = self.polled.as_mut().and_then(|p| p.write.as_mut()) {
            let (result, _) = std::task::ready!(std::pin::Pin::new(op).poll(cx));
            if let Some(polled) = self.polled.as_mut() {
                polled.write = None;
            }
            result?;
        }
        let _ = cx;
        std::task::Poll::Ready(Ok(()))
    }

    /// Flushes, then half-closes the write direction.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "hyper")),
        allow(dead_code, reason = "used by the compatibility features")
    )]
    pub(crate) fn poll_shutdown(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::task::ready!(self.poll_flush(cx))?;
        std::task::Poll::Ready(self.shutdown(Shutdown::Write))
    }

    /// Reads with a deadline: `None` if nothing arrives within `limit` (no byte lost).
    pub(crate) async fn read_timeout<B: IoBufMut>(
        &mut self,
        buf: B,
        limit: std::time::Duration,
    ) -> Option<BufResult<usize, B>> {
        time::timeout(limit, self.read(buf)).await.ok()
    }
}

#[cfg(target_os = "linux")]
/// The part of a buffer after `start`, for receiving without overwriting what it holds.
pub(crate) struct Tail<B> {
    buf: B,
    start: usize,
}

#[cfg(target_os = "linux")]
impl<B: IoBufMut> Tail<B> {
    pub(crate) fn new(buf: B, start: usize) -> Self {
        Tail { buf, start }
    }

    /// Records that `n` bytes after `start` were filled.
    ///
    /// # Safety
    ///
    /// Those bytes must be initialised.
    pub(crate) unsafe fn set_inner_init(&mut self, n: usize) {
        // SAFETY: the caller's guarantee, shifted by `start`.
        unsafe { self.buf.set_init(self.start + n) };
    }

    pub(crate) fn into_inner(self) -> B {
        self.buf
    }
}

#[cfg(target_os = "linux")]
// SAFETY: forwards to `B` shifted by `start` (≤ its initialised length).
unsafe impl<B: IoBufMut> IoBuf for Tail<B> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `start <= bytes_init <= bytes_total`: inside the buffer.
        unsafe { self.buf.stable_ptr().add(self.start) }
    }
    fn bytes_init(&self) -> usize {
        0
    }
}

#[cfg(target_os = "linux")]
// SAFETY: as above.
unsafe impl<B: IoBufMut> IoBufMut for Tail<B> {
    fn stable_mut_ptr(&mut self) -> *mut u8 {
        // SAFETY: as above.
        unsafe { self.buf.stable_mut_ptr().add(self.start) }
    }
    fn bytes_total(&self) -> usize {
        self.buf.bytes_total() - self.start
    }
    unsafe fn set_init(&mut self, _n: usize) {
        // Applied by the caller with the offset added.
    }
}

#[cfg(target_os = "linux")]
/// A buffer's bytes after `offset`, for sending the rest of a partial write.
struct Skip<B> {
    buf: B,
    offset: usize,
}

#[cfg(target_os = "linux")]
// SAFETY: forwards to `B` shifted by `offset` (≤ its initialised length).
unsafe impl<B: IoBuf> IoBuf for Skip<B> {
    fn stable_ptr(&self) -> *const u8 {
        // SAFETY: `offset <= bytes_init`: inside the buffer.
        unsafe { self.buf.stable_ptr().add(self.offset) }
    }
    fn bytes_init(&self) -> usize {
        self.buf.bytes_init() - self.offset
    }
}

/// `send_file` on the ring: file → pipe → socket, a pipe's worth at a time.
#[cfg(target_os = "linux")]
async fn splice_file(
    ring: &weir_ring::Ring,
    socket: &weir_ring::SharedFd,
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    const CHUNK: usize = 64 * 1024;
    let source: weir_ring::SharedFd = std::sync::Arc::new(file.as_fd().try_clone_to_owned()?);
    let mut ends = [0; 2];
    // SAFETY: `pipe2` writes two descriptors into `ends`, which we then own.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: `pipe2` succeeded: both descriptors are new and ours alone.
    let read_end = unsafe { OwnedFd::from_raw_fd(ends[0]) };
    // SAFETY: as above.
    let write_end = unsafe { OwnedFd::from_raw_fd(ends[1]) };
    let (read_end, write_end): (weir_ring::SharedFd, weir_ring::SharedFd) = (
        std::sync::Arc::new(read_end),
        std::sync::Arc::new(write_end),
    );
    let mut sent = 0;
    while sent < len {
        let at = i64::try_from(offset + sent as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let want = u32::try_from((len - sent).min(CHUNK)).unwrap_or(u32::MAX);
        let filled = ring.splice(&source, at, &write_end, -1, want).await?;
        if filled == 0 {
            break;
        }
        let mut drained = 0;
        while drained < filled {
            let chunk = u32::try_from(filled - drained).unwrap_or(u32::MAX);
            match ring.splice(&read_end, -1, socket, -1, chunk).await {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => drained += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ring.poll_add(socket, libc::POLLOUT as u32).await?;
                }
                Err(e) => return Err(e),
            }
        }
        sent += filled;
    }
    Ok(sent)
}

/// The public I/O methods of a stream type wrapping a [`Stream`] in a field `inner`, with their
/// documentation: the same on every stream type.
macro_rules! stream_methods {
    ($ty:ident) => {
        /// A second handle to the same connection (a duplicated descriptor), so that one task
        /// can read while another writes.
        ///
        /// # Errors
        ///
        /// `dup(2)` or the registration failed.
        pub fn try_clone(&self) -> io::Result<$ty> {
            Ok($ty {
                inner: self.inner.try_clone()?,
            })
        }

        /// Reads into `buf`'s spare capacity; `Ok(0)` is the end of the stream.
        ///
        /// On a connection accepted by a [`Server`](crate::server::Server) with read timeouts,
        /// a read that waits too long fails with `TimedOut`.
        ///
        /// Cancel safety: no received byte is ever lost — bytes a dropped read received are
        /// returned by the next read.
        pub async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
            self.inner.read(buf).await
        }

        /// Reads into a buffer from the runtime's pool ([`Builder::buffer_pool`]); `Ok(None)`
        /// at the end of the stream.
        ///
        /// On io_uring this is a multishot receive over a provided buffer ring the pool feeds:
        /// an idle connection holds no buffer, and one submission serves many reads. On the
        /// reactor the read waits for data, then takes a buffer. When the pool is empty the read
        /// waits for a buffer; it never fails for lack of one and never loses bytes. Owned reads
        /// may be mixed in; they take from the same receive, in order.
        ///
        /// Cancel safety: dropping the future loses no bytes.
        ///
        /// [`Builder::buffer_pool`]: crate::Builder::buffer_pool
        ///
        /// # Errors
        ///
        /// The read failed (`ConnectionReset`...), or the pool could not be set up.
        pub async fn read_pooled(&mut self) -> io::Result<Option<weir_bufpool::Buf>> {
            self.inner.read_pooled().await
        }

        /// Reads with a deadline: `None` if nothing arrives within `limit` (no byte lost).
        pub async fn read_timeout<B: IoBufMut>(
            &mut self,
            buf: B,
            limit: std::time::Duration,
        ) -> Option<BufResult<usize, B>> {
            self.inner.read_timeout(buf, limit).await
        }

        /// Reads until `buf` holds `len` bytes (appending to what it holds).
        ///
        /// # Errors
        ///
        /// `UnexpectedEof` if the stream ends first; any read error.
        pub async fn read_exact(&mut self, buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
            self.inner.read_exact(buf, len).await
        }

        /// Writes some of `buf`'s bytes; returns how many.
        ///
        /// Cancel safety: a dropped write reports nothing; bytes already handed to the kernel
        /// may have been sent.
        pub async fn write<B: IoBuf>(&mut self, buf: B) -> BufResult<usize, B> {
            self.inner.write(buf).await
        }

        /// Writes all of `buf`.
        ///
        /// # Errors
        ///
        /// The first failed write (`BrokenPipe`, `ConnectionReset`...), or `WriteZero`.
        pub async fn write_all<B: IoBuf>(&mut self, buf: B) -> BufResult<(), B> {
            self.inner.write_all(buf).await
        }

        /// Writes the buffers' bytes in order with one vectored write; returns how many bytes
        /// were written (possibly fewer than all) and the buffers.
        pub async fn writev<B: IoBuf>(&mut self, bufs: Vec<B>) -> BufResult<usize, Vec<B>> {
            self.inner.writev(bufs).await
        }

        /// Sends up to `len` bytes of `file` from `offset` without copying them through user
        /// space (`splice` through a pipe on the ring, `sendfile` on the reactor). Returns the
        /// bytes sent: `len`, or fewer if the file ends first.
        ///
        /// # Errors
        ///
        /// The socket or the file failed; `InvalidInput` for an offset beyond `i64::MAX`.
        pub async fn send_file(
            &mut self,
            file: &std::fs::File,
            offset: u64,
            len: usize,
        ) -> io::Result<usize> {
            self.inner.send_file(file, offset, len).await
        }

        /// Shuts down one or both directions (`shutdown(2)`); `Shutdown::Write` is a
        /// half-close.
        ///
        /// # Errors
        ///
        /// `shutdown(2)` failed (not connected...).
        pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
            self.inner.shutdown(how)
        }
    };
}
pub(crate) use stream_methods;

/// `send_file` on the reactor: `sendfile(2)` whenever the socket is writable.
#[cfg(target_os = "linux")]
async fn sendfile(
    registration: &weir_reactor::Registration<OwnedFd>,
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    let mut sent = 0;
    while sent < len {
        let mut at = libc::off_t::try_from(offset + sent as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let n = registration
            .io(weir_reactor::Direction::Write, |socket| {
                // SAFETY: both descriptors are open for the call; `at` is ours.
                let n = unsafe {
                    libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut at, len - sent)
                };
                byte_count(n)
            })
            .await?;
        if n == 0 {
            break;
        }
        sent += n;
    }
    Ok(sent)
}

/// `send_file` on the reactor where `sendfile(2)` differs by platform: read a chunk with
/// `pread`, then send it.
#[cfg(not(target_os = "linux"))]
async fn sendfile(
    registration: &weir_reactor::Registration<OwnedFd>,
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut chunk = vec![0; len.min(64 * 1024)];
    let mut sent = 0;
    while sent < len {
        let want = (len - sent).min(chunk.len());
        let got = file.read_at(&mut chunk[..want], offset + sent as u64)?;
        if got == 0 {
            break;
        }
        let mut done = 0;
        while done < got {
            done += registration
                .io(weir_reactor::Direction::Write, |socket| {
                    SockRef::from(socket).send(&chunk[done..got])
                })
                .await?;
        }
        sent += got;
    }
    Ok(sent)
}

/// A byte-count syscall's result: the count, or the error `errno` holds.
fn byte_count(n: isize) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// Copies as much of `src` as fits into `dst`; returns how many bytes.
#[cfg(target_os = "linux")]
fn copy_out(src: &[u8], dst: &mut [std::mem::MaybeUninit<u8>]) -> usize {
    let n = src.len().min(dst.len());
    for (slot, &byte) in dst.iter_mut().zip(&src[..n]) {
        slot.write(byte);
    }
    n
}

/// The unread part of a pooled buffer an owned read took `used` bytes of, as a buffer of its own.
#[cfg(target_os = "linux")]
async fn rest_of(
    pool: &weir_bufpool::Pool,
    buf: weir_bufpool::Buf,
    used: usize,
) -> weir_bufpool::Buf {
    if used == 0 {
        return buf;
    }
    let mut rest = pool.get().await;
    let n = buf.len() - used;
    rest.as_full_mut()[..n].copy_from_slice(&buf[used..]);
    let _ = rest.set_len(n);
    rest
}
