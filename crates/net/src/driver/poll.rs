//! The socket interface over weir-reactor: non-blocking syscalls (`sys`) run when the reactor
//! reports readiness, inside a poll. No operation is ever in the kernel between polls, so
//! dropping one loses nothing and none has an orphan.

use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use socket2::{SockAddr, SockRef};
use weir_bufpool::{Get, Pool};
use weir_reactor::{Direction, Reactor, Registration};

use super::{Datagram, Interest, OrphanDatagram, OrphanRecv, OrphanSend, appended};
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::sys::{self, BorrowedSock, OwnedSock};

pub(crate) struct Driver {
    reactor: Reactor,
}

impl Driver {
    pub(crate) fn new() -> io::Result<Driver> {
        Ok(Driver {
            reactor: Reactor::new()?,
        })
    }

    pub(crate) fn turn(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.reactor.turn(timeout).map(drop)
    }

    pub(crate) fn notifier(&self) -> weir_reactor::Notifier {
        self.reactor.notifier()
    }

    pub(crate) fn socket(&self, fd: OwnedSock) -> io::Result<Socket> {
        SockRef::from(&fd).set_nonblocking(true)?;
        Ok(Socket {
            registration: self.reactor.register(fd)?,
        })
    }

    pub(crate) fn tracked(&self) -> usize {
        self.reactor.registrations()
    }

    pub(crate) fn finish(&self) {}
}

/// The most one splice moves into the pipe: a default pipe's capacity, so the pipe never fills
/// while the socket has more.
const SPLICE_CHUNK: usize = 64 * 1024;

pub(crate) struct Socket {
    registration: Registration<OwnedSock>,
}

fn direction(interest: Interest) -> Direction {
    match interest {
        Interest::Read => Direction::Read,
        Interest::Write => Direction::Write,
    }
}

impl Socket {
    pub(crate) fn fd(&self) -> BorrowedSock<'_> {
        sys::borrow(self.registration.get_ref())
    }

    pub(crate) async fn accept(&self) -> io::Result<(OwnedSock, SockAddr)> {
        let (socket, peer) = self
            .registration
            .io(Direction::Read, |listener| SockRef::from(listener).accept())
            .await?;
        crate::stats::note(crate::stats::Count::Accepted);
        Ok((socket.into(), peer))
    }

    pub(crate) async fn connect(&self, addr: &SockAddr) -> io::Result<()> {
        match SockRef::from(&self.fd()).connect(addr) {
            Ok(()) => return Ok(()),
            Err(e) if sys::connect_in_progress(&e) => {}
            Err(e) => return Err(e),
        }
        self.ready(Interest::Write).await?;
        match SockRef::from(&self.fd()).take_error()? {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    pub(crate) async fn ready(&self, interest: Interest) -> io::Result<()> {
        std::future::poll_fn(|cx| self.registration.poll_ready(direction(interest), cx)).await;
        Ok(())
    }

    /// Each `sendfile(2)` runs inside a poll, so a dropped `send_file` leaves nothing in `_left`.
    #[cfg(unix)]
    pub(crate) async fn send_file(
        &self,
        file: &std::fs::File,
        offset: u64,
        len: usize,
        _left: &mut Option<OrphanSend>,
    ) -> io::Result<usize> {
        let mut at =
            i64::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut sent = 0;
        while sent < len {
            let n = self
                .registration
                .io(Direction::Write, |socket| {
                    sys::sendfile(
                        sys::borrow(socket),
                        std::os::fd::AsFd::as_fd(file),
                        &mut at,
                        len - sent,
                    )
                })
                .await?;
            if n == 0 {
                break;
            }
            sent += n;
        }
        Ok(sent)
    }

    /// Socket → pipe → socket with non-blocking `splice(2)`s, each inside a poll, so a dropped
    /// call leaves nothing in the kernel; bytes it had moved into the pipe stay there for the
    /// next call.
    pub(crate) async fn splice_to(
        &self,
        pipe: &super::SplicePipe,
        to: &Socket,
        len: usize,
    ) -> io::Result<usize> {
        let mut filled = pipe.len()?;
        if filled == 0 {
            filled = self
                .registration
                .io(Direction::Read, |socket| {
                    sys::splice(
                        sys::borrow(socket),
                        sys::borrow(&*pipe.write_end),
                        len.min(SPLICE_CHUNK),
                    )
                })
                .await?;
        }
        let mut drained = 0;
        while drained < filled {
            let n = to
                .registration
                .io(Direction::Write, |socket| {
                    sys::splice(
                        sys::borrow(&*pipe.read_end),
                        sys::borrow(socket),
                        filled - drained,
                    )
                })
                .await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            drained += n;
        }
        Ok(drained)
    }

    pub(crate) async fn send_msg<B: IoBuf>(
        &self,
        buf: B,
        to: Option<&SockAddr>,
    ) -> BufResult<usize, B> {
        let result = self
            .registration
            .io(Direction::Write, |fd| {
                sys::send_to(sys::borrow(fd), buf.as_init(), to)
            })
            .await;
        (result, buf)
    }

    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        self.registration
            .poll_io(Direction::Read, cx, |fd| sys::recv(sys::borrow(fd), dst))
    }

    pub(crate) fn poll_send(&self, cx: &mut Context<'_>, src: &[u8]) -> Poll<io::Result<usize>> {
        self.registration
            .poll_io(Direction::Write, cx, |fd| sys::send(sys::borrow(fd), src))
    }
}

/// Generates the parts every readiness operation shares: never in the kernel, so nothing to
/// cancel and no orphan.
macro_rules! never_in_kernel {
    ($orphan:ty) => {
        pub(crate) fn into_orphan(self) -> Option<$orphan> {
            None
        }
    };
}

pub(crate) struct Recv<B> {
    buf: Option<B>,
}

impl<B: IoBufMut> Recv<B> {
    pub(crate) fn new(buf: B) -> Recv<B> {
        Recv { buf: Some(buf) }
    }

    pub(crate) fn poll(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<BufResult<usize, B>> {
        let Some(buf) = self.buf.as_mut() else {
            return Poll::Pending;
        };
        let result = ready!(
            socket
                .registration
                .poll_io_drained(Direction::Read, cx, |fd| {
                    let spare = buf.spare_mut();
                    let room = spare.len();
                    let n = sys::recv(sys::borrow(fd), spare)?;
                    // A short read emptied the receive queue (an end of stream, n == 0, stays ready so
                    // that every later read sees it too).
                    Ok((n, n > 0 && n < room))
                })
        );
        let Some(mut buf) = self.buf.take() else {
            return Poll::Pending;
        };
        if let Ok(n) = result {
            appended(&mut buf, n);
        }
        Poll::Ready((result, buf))
    }

    pub(crate) fn cancel(&mut self) {}

    pub(crate) fn into_buf(self) -> Result<B, Recv<B>> {
        match self.buf {
            Some(buf) => Ok(buf),
            None => Err(self),
        }
    }

    never_in_kernel!(OrphanRecv);
}

pub(crate) struct Send<B> {
    buf: Option<B>,
}

impl<B: IoBuf> Send<B> {
    pub(crate) fn new(buf: B) -> Send<B> {
        Send { buf: Some(buf) }
    }

    pub(crate) fn poll(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<BufResult<usize, B>> {
        let Some(buf) = self.buf.as_ref() else {
            return Poll::Pending;
        };
        let result = ready!(socket.poll_send(cx, buf.as_init()));
        match self.buf.take() {
            Some(buf) => Poll::Ready((result, buf)),
            None => Poll::Pending,
        }
    }

    never_in_kernel!(OrphanSend);
}

pub(crate) struct Writev<B> {
    bufs: Option<Vec<B>>,
}

impl<B: IoBuf> Writev<B> {
    pub(crate) fn new(bufs: Vec<B>) -> Writev<B> {
        Writev { bufs: Some(bufs) }
    }

    pub(crate) fn poll(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<BufResult<usize, Vec<B>>> {
        let Some(bufs) = self.bufs.as_ref() else {
            return Poll::Pending;
        };
        let slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b.as_init())).collect();
        let result = ready!(socket.registration.poll_io(Direction::Write, cx, |fd| {
            sys::send_vectored(sys::borrow(fd), &slices)
        }));
        drop(slices);
        match self.bufs.take() {
            Some(bufs) => Poll::Ready((result, bufs)),
            None => Poll::Pending,
        }
    }

    never_in_kernel!(OrphanSend);
}

pub(crate) struct RecvMsg<B> {
    buf: Option<B>,
}

impl<B: IoBufMut> RecvMsg<B> {
    pub(crate) fn new(buf: B) -> RecvMsg<B> {
        RecvMsg { buf: Some(buf) }
    }

    pub(crate) fn poll(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<BufResult<Datagram, B>> {
        let Some(buf) = self.buf.as_mut() else {
            return Poll::Pending;
        };
        let result = ready!(socket.registration.poll_io(Direction::Read, cx, |fd| {
            sys::recv_msg(sys::borrow(fd), buf.spare_mut())
        }));
        let Some(mut buf) = self.buf.take() else {
            return Poll::Pending;
        };
        let result = result.map(|(len, from, truncated)| {
            appended(&mut buf, len);
            Datagram {
                len,
                from,
                truncated,
            }
        });
        Poll::Ready((result, buf))
    }

    never_in_kernel!(OrphanDatagram);
}

/// Pooled reads on the reactor: wait for data first (an idle connection holds no buffer), then
/// take a pool buffer (waiting fairly if the pool is empty) and receive into it.
pub(crate) struct PooledRecv {
    pool: Pool,
    waiting: Option<Get>,
}

impl PooledRecv {
    pub(crate) fn new(pool: &Pool) -> PooledRecv {
        PooledRecv {
            pool: pool.clone(),
            waiting: None,
        }
    }

    pub(crate) fn poll_next(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<super::Chunk>>> {
        loop {
            ready!(socket.registration.poll_ready(Direction::Read, cx));
            let buf = match self.pool.try_get() {
                Some(buf) => buf,
                None => {
                    let get = self.waiting.get_or_insert_with(|| self.pool.get());
                    let buf = ready!(Pin::new(get).poll(cx));
                    self.waiting = None;
                    buf
                }
            };
            let mut recv = Recv::new(buf);
            // Ready, so this completes now, or finds the readiness stale and waits again (the
            // buffer then goes back to the pool with `recv`).
            if let Poll::Ready((result, buf)) = recv.poll(socket, cx) {
                return Poll::Ready(match result {
                    Ok(0) => Ok(None),
                    Ok(_) => Ok(Some(super::Chunk::pool(buf))),
                    Err(error) => Err(error),
                });
            }
        }
    }
}
