//! Datagram sockets (UDP, Unix datagrams) on either driver: sends, and receives that lose no
//! datagram when dropped.
//!
//! A receive dropped while the kernel holds it (the ring) becomes an *orphan*: it stays in the
//! socket's queue, and the next receive takes its datagram first (waiting for it with a waker).
//! Receives take `&self`, so several tasks may wait at once: each waiter registers, and when an
//! orphan's datagram is taken the others are woken to look again.
//!
//! # Invariants
//!
//! * No new receive starts while an orphan is queued: datagrams the kernel delivered to dropped
//!   receives come out before any later one.
//! * `has_orphans` is `true` whenever the queue is non-empty (set under the lock before the
//!   orphan is visible), so the common path — no orphan — takes no lock.
//!
//! A UDP socket on the ring receives through one multishot receive instead
//! (`driver::DatagramRecv`): its datagrams wait in the kernel's completions, each in a buffer of
//! its own, until a receive copies one out, so a dropped receive leaves nothing to adopt. Only
//! when its buffers run dry does one receive go single-shot, and then as above.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker, ready};

use socket2::SockAddr;

use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::{
    Datagram, DatagramRecv, Interest, NextDatagram, OrphanDatagram, OrphanedDatagram, RecvMsg,
    Socket,
};

pub(crate) struct DatagramSocket {
    socket: Socket,
    /// The socket's multishot receive, where the backend has one.
    multishot: Option<DatagramRecv>,
    orphans: Mutex<Orphans>,
    has_orphans: AtomicBool,
}

#[derive(Default)]
struct Orphans {
    queue: VecDeque<OrphanDatagram>,
    waiters: Vec<Waker>,
}

impl DatagramSocket {
    /// A socket whose receives are single-shot ones (Unix datagram sockets).
    #[cfg(unix)]
    pub(crate) fn new(socket: Socket) -> DatagramSocket {
        DatagramSocket::with_multishot(socket, None)
    }

    /// A socket whose receives take from `multishot`, if there is one.
    pub(crate) fn with_multishot(
        socket: Socket,
        multishot: Option<DatagramRecv>,
    ) -> DatagramSocket {
        DatagramSocket {
            socket,
            multishot,
            orphans: Mutex::new(Orphans::default()),
            has_orphans: AtomicBool::new(false),
        }
    }

    /// Waits until a receive would find a datagram (or an error) at once.
    pub(crate) async fn ready(&self) -> std::io::Result<()> {
        if let Some(multishot) = &self.multishot {
            let armed = std::future::poll_fn(|cx| multishot.poll_ready(&self.socket, cx)).await;
            if armed {
                return Ok(());
            }
        }
        self.socket.ready(Interest::Read).await
    }

    pub(crate) fn fd(&self) -> crate::sys::BorrowedSock<'_> {
        self.socket.fd()
    }

    /// Sends `buf` as one datagram to `to`, or to the connected peer.
    pub(crate) async fn send<B: IoBuf>(
        &self,
        buf: B,
        to: Option<&SockAddr>,
    ) -> BufResult<usize, B> {
        crate::coop::proceed().await;
        self.socket.send_msg(buf, to).await
    }

    /// Receives one datagram into `buf`'s spare capacity.
    pub(crate) fn recv<B: IoBufMut>(&self, buf: B) -> Recv<'_, B> {
        Recv {
            owner: self,
            buf: Some(buf),
            op: None,
            budget: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Orphans> {
        self.orphans.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest orphan's datagram, once it has one; `None` if there is no orphan.
    fn poll_orphan(&self, cx: &mut Context<'_>) -> Option<Poll<OrphanedDatagram>> {
        // Acquire: pairs with the release when an orphan is queued.
        if !self.has_orphans.load(Ordering::Acquire) {
            return None;
        }
        let mut orphans = self.lock();
        let front = orphans.queue.front_mut()?;
        let Poll::Ready(got) = front.as_mut().poll(cx) else {
            if !orphans.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                orphans.waiters.push(cx.waker().clone());
            }
            return Some(Poll::Pending);
        };
        orphans.queue.pop_front();
        self.has_orphans
            .store(!orphans.queue.is_empty(), Ordering::Release);
        // The others waiting look again: at the next orphan, or at the socket.
        orphans.waiters.drain(..).for_each(Waker::wake);
        Some(Poll::Ready(got))
    }

    fn adopt(&self, orphan: OrphanDatagram) {
        let mut orphans = self.lock();
        orphans.queue.push_back(orphan);
        self.has_orphans.store(true, Ordering::Release);
    }
}

/// The future of [`DatagramSocket::recv`].
pub(crate) struct Recv<'a, B: IoBufMut> {
    owner: &'a DatagramSocket,
    buf: Option<B>,
    op: Option<RecvMsg<B>>,
    budget: bool,
}

impl<B: IoBufMut> Future for Recv<'_, B> {
    type Output = BufResult<Datagram, B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.budget {
            ready!(crate::coop::poll_proceed(cx));
            this.budget = true;
        }
        if this.op.is_none() {
            if let Some(orphan) = this.owner.poll_orphan(cx) {
                let got = ready!(orphan);
                let Some(mut buf) = this.buf.take() else {
                    return Poll::Pending;
                };
                let result = got.map(|(bytes, datagram)| {
                    // The orphan received into a buffer of its own size; this one may be
                    // smaller.
                    let len = buf.extend_from(&bytes);
                    Datagram {
                        len,
                        truncated: datagram.truncated || len < bytes.len(),
                        ..datagram
                    }
                });
                return Poll::Ready((result, buf));
            }
            if let Some(multishot) = &this.owner.multishot {
                let Some(buf) = this.buf.as_mut() else {
                    return Poll::Pending;
                };
                if let NextDatagram::Received(got) =
                    ready!(multishot.poll_recv(&this.owner.socket, buf, cx))
                {
                    return match this.buf.take() {
                        Some(buf) => Poll::Ready((got, buf)),
                        None => Poll::Pending,
                    };
                }
            }
            match this.buf.take() {
                Some(buf) => this.op = Some(this.owner.socket.recv_msg(buf)),
                None => return Poll::Pending,
            }
        }
        let Some(op) = this.op.as_mut() else {
            return Poll::Pending;
        };
        let out = ready!(op.poll(&this.owner.socket, cx));
        this.op = None;
        Poll::Ready(out)
    }
}

impl<B: IoBufMut> Drop for Recv<'_, B> {
    fn drop(&mut self) {
        if let Some(orphan) = self.op.take().and_then(RecvMsg::into_orphan) {
            self.owner.adopt(orphan);
        } else if let Some(multishot) = self.owner.multishot.as_ref().filter(|_| self.buf.is_some())
        {
            // It may have waited on the multishot receive: the others look again.
            multishot.wake_waiters();
        } else if self.owner.has_orphans.load(Ordering::Acquire) {
            // This receive may have been the one whose waker the orphan kept: the others waiting
            // look again, and one of them takes over polling it.
            self.owner.lock().waiters.drain(..).for_each(Waker::wake);
        }
    }
}
