//! Owned-buffer reads and writes. Each is a future holding the stream mutably: a read or write
//! dropped while the kernel still holds its operation hands that operation to the stream's
//! state machine (`io`), which finishes it before the next one starts.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use super::Stream;
use crate::buf::{BufResult, IoBuf, IoBufMut};
use crate::driver::{OrphanSend, Recv, Send, Socket, Writev};
use crate::io::read::Settled;
use crate::time::Sleep;

/// The largest step `read_exact` grows its buffer by before bytes arrive.
const READ_EXACT_STEP: usize = 64 * 1024;

impl Stream {
    /// See `stream_methods!`.
    pub(crate) fn read<B: IoBufMut>(&mut self, buf: B) -> Read<'_, B> {
        self.read_until(buf, None)
    }

    /// A read that gives up at `until` (or at the server's deadline, if that comes first),
    /// with `TimedOut` and the buffer back.
    pub(crate) fn read_until<B: IoBufMut>(
        &mut self,
        buf: B,
        until: Option<Instant>,
    ) -> Read<'_, B> {
        let server = self.timeouts.as_ref().and_then(|t| t.deadline());
        let (deadline, server_limit) = match (server, until) {
            (Some(server), Some(until)) if until < server => (Some(until), false),
            (Some(server), _) => (Some(server), true),
            (None, until) => (until, false),
        };
        Read {
            stream: self,
            state: ReadStage::Start(buf),
            budget: false,
            limit: deadline.map(crate::time::sleep_until),
            server_limit,
            timed_out: false,
            gave_a_turn: false,
        }
    }

    /// See `stream_methods!`.
    pub(crate) async fn read_exact(&mut self, buf: Vec<u8>, len: usize) -> BufResult<(), Vec<u8>> {
        let start = buf.len();
        let mut gathering = Gathering {
            stream: self,
            buf,
            start,
        };
        let mut chunk = Vec::new();
        while gathering.buf.len() < len {
            let want = (len - gathering.buf.len()).min(READ_EXACT_STEP);
            chunk.clear();
            chunk.reserve(want);
            let (result, back) = gathering.stream.read(chunk.slice_mut(..want)).await;
            chunk = back.into_inner();
            match result {
                Ok(0) => return (Err(io::ErrorKind::UnexpectedEof.into()), gathering.finish()),
                Ok(_) => gathering.buf.extend_from_slice(&chunk),
                Err(error) => return (Err(error), gathering.finish()),
            }
        }
        (Ok(()), gathering.finish())
    }

    /// See `stream_methods!`.
    pub(crate) fn write<B: IoBuf>(&mut self, buf: B) -> Sending<'_, One<B>> {
        Sending::new(self, One(buf))
    }

    /// See `stream_methods!`.
    pub(crate) async fn write_all<B: IoBuf>(&mut self, buf: B) -> BufResult<(), B> {
        let mut written = 0;
        let mut buf = buf;
        while written < buf.bytes_init() {
            let (result, back) = self.write(buf.slice(written..)).await;
            buf = back.into_inner();
            match result {
                Ok(0) => return (Err(io::ErrorKind::WriteZero.into()), buf),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return (Err(e), buf),
            }
        }
        (Ok(()), buf)
    }

    /// See `stream_methods!`.
    pub(crate) fn writev<B: IoBuf>(&mut self, bufs: Vec<B>) -> Sending<'_, Many<B>> {
        Sending::new(self, Many(bufs))
    }
}

/// A `read_exact` in progress: what it gathered goes back to the stream if it is dropped.
struct Gathering<'a> {
    stream: &'a mut Stream,
    buf: Vec<u8>,
    start: usize,
}

impl Gathering<'_> {
    fn finish(mut self) -> Vec<u8> {
        self.start = self.buf.len();
        std::mem::take(&mut self.buf)
    }
}

impl Drop for Gathering<'_> {
    fn drop(&mut self) {
        let gathered = self.buf.split_off(self.start.min(self.buf.len()));
        self.stream.read.unread(gathered);
    }
}

/// The future of [`Stream::read`].
pub(crate) struct Read<'a, B: IoBufMut> {
    stream: &'a mut Stream,
    state: ReadStage<B>,
    /// Whether the cooperative budget was spent for this read.
    budget: bool,
    /// The read's deadline (its own or the server's), if any.
    limit: Option<Sleep>,
    /// The limit is the server's (its expiries are counted).
    server_limit: bool,
    /// The limit passed while the receive was in the kernel: it was asked to cancel.
    timed_out: bool,
    /// The limit had passed once already, and the read yielded so that the driver turns before
    /// it gives up.
    gave_a_turn: bool,
}

/// Where a read is.
enum ReadStage<B> {
    /// Not started: the buffer is the caller's still.
    Start(B),
    /// This read's own receive, once nothing the stream holds or owns comes first.
    Receiving(Recv<B>),
    /// Resolved.
    Done,
}

impl<B: IoBufMut> Read<'_, B> {
    /// `true` once the read's time limit (if any) has passed and the driver has turned since
    /// the read began to wait. The first time the limit is seen passed, the read wakes itself
    /// instead: the runtime turns the driver before the next poll, so what had already arrived
    /// (a completion not yet reaped, a readiness event not yet taken) is returned, not timed
    /// out. A zero limit thus takes what is there and waits for nothing more.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let passed = self
            .limit
            .as_mut()
            .is_some_and(|limit| Pin::new(limit).poll(cx).is_ready());
        if passed && !self.gave_a_turn {
            self.gave_a_turn = true;
            cx.waker().wake_by_ref();
            return false;
        }
        passed
    }

    fn timed_out(&self) -> io::Error {
        if let Some(timeouts) = self.stream.timeouts.as_ref().filter(|_| self.server_limit) {
            timeouts.counter.fetch_add(1, Ordering::Relaxed);
        }
        // A plain kind ("timed out"): no allocation, as a timed read loop on an idle connection
        // makes this error many times a second.
        io::ErrorKind::TimedOut.into()
    }
}

impl<B: IoBufMut> Future for Read<'_, B> {
    type Output = BufResult<usize, B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if !this.budget {
            ready!(crate::coop::poll_proceed(cx));
            this.budget = true;
        }
        loop {
            if let ReadStage::Receiving(recv) = &mut this.state {
                let Poll::Ready((result, buf)) = recv.poll(&this.stream.socket, cx) else {
                    if !this.timed_out && this.expired(cx) {
                        return this.time_out_receiving();
                    }
                    return Poll::Pending;
                };
                this.state = ReadStage::Done;
                let cancelled = result
                    .as_ref()
                    .is_err_and(|e| e.raw_os_error() == Some(crate::sys::ECANCELED));
                if this.timed_out && cancelled {
                    return Poll::Ready((Err(this.timed_out()), buf));
                }
                this.saw(&result);
                return Poll::Ready((result, buf));
            }
            if let ReadStage::Start(buf) = &this.state {
                if buf.bytes_total() <= buf.bytes_init() {
                    // No room: nothing to receive into (a receive of zero bytes would read as the
                    // end of the stream).
                    if let ReadStage::Start(buf) =
                        std::mem::replace(&mut this.state, ReadStage::Done)
                    {
                        return Poll::Ready((Ok(0), buf));
                    }
                }
            }
            let stream = &mut *this.stream;
            let settled = stream.read.poll_settle(&stream.socket, cx);
            let ReadStage::Start(buf) = std::mem::replace(&mut this.state, ReadStage::Done) else {
                return Poll::Pending;
            };
            match settled {
                Poll::Pending => {
                    if this.expired(cx) {
                        return Poll::Ready((Err(this.timed_out()), buf));
                    }
                    this.state = ReadStage::Start(buf);
                    return Poll::Pending;
                }
                Poll::Ready(Settled::Held) => {
                    let mut buf = buf;
                    let result = stream.read.take_into(&mut buf);
                    this.saw(&result);
                    return Poll::Ready((result, buf));
                }
                Poll::Ready(Settled::Idle) => {
                    if stream.arm_multishot() {
                        this.state = ReadStage::Start(buf);
                    } else {
                        this.state = ReadStage::Receiving(stream.socket.recv(buf));
                    }
                }
            }
        }
    }
}

impl<B: IoBufMut> Read<'_, B> {
    /// The time limit passed while the receive was under way: on the reactor give up at once (no
    /// byte was taken); on the ring ask the kernel to cancel and wait for what the receive did.
    fn time_out_receiving(&mut self) -> Poll<BufResult<usize, B>> {
        let ReadStage::Receiving(recv) = std::mem::replace(&mut self.state, ReadStage::Done) else {
            return Poll::Pending;
        };
        match recv.into_buf() {
            Ok(buf) => Poll::Ready((Err(self.timed_out()), buf)),
            Err(mut in_kernel) => {
                // Data that raced the deadline is returned, not lost.
                in_kernel.cancel();
                self.state = ReadStage::Receiving(in_kernel);
                self.timed_out = true;
                Poll::Pending
            }
        }
    }

    /// Notes, for the idle timeout, that a read returned data.
    fn saw(&mut self, result: &io::Result<usize>) {
        if matches!(result, Ok(n) if *n > 0) {
            if let Some(timeouts) = self.stream.timeouts.as_mut() {
                timeouts.seen_data = true;
            }
        }
    }
}

impl<B: IoBufMut> Drop for Read<'_, B> {
    fn drop(&mut self) {
        if let ReadStage::Receiving(_) = self.state {
            if let ReadStage::Receiving(recv) = std::mem::replace(&mut self.state, ReadStage::Done)
            {
                self.stream.read.adopt(recv.into_orphan());
            }
        }
    }
}

/// What an owned send sends, and how it starts.
pub(crate) trait SendInput: Unpin {
    /// The driver's operation.
    type Op: Unpin;
    /// What the operation resolves to.
    type Output;
    fn start(self, socket: &Socket) -> Self::Op;
    fn poll(op: &mut Self::Op, socket: &Socket, cx: &mut Context<'_>) -> Poll<Self::Output>;
    fn into_orphan(op: Self::Op) -> Option<OrphanSend>;
}

/// One buffer (`write`).
pub(crate) struct One<B>(B);
/// Several buffers, one vectored send (`writev`).
pub(crate) struct Many<B>(Vec<B>);

impl<B: IoBuf> SendInput for One<B> {
    type Op = Send<B>;
    type Output = BufResult<usize, B>;
    fn start(self, socket: &Socket) -> Send<B> {
        socket.send(self.0)
    }
    fn poll(op: &mut Send<B>, socket: &Socket, cx: &mut Context<'_>) -> Poll<Self::Output> {
        op.poll(socket, cx)
    }
    fn into_orphan(op: Send<B>) -> Option<OrphanSend> {
        op.into_orphan()
    }
}

impl<B: IoBuf> SendInput for Many<B> {
    type Op = Writev<B>;
    type Output = BufResult<usize, Vec<B>>;
    fn start(self, socket: &Socket) -> Writev<B> {
        socket.writev(self.0)
    }
    fn poll(op: &mut Writev<B>, socket: &Socket, cx: &mut Context<'_>) -> Poll<Self::Output> {
        op.poll(socket, cx)
    }
    fn into_orphan(op: Writev<B>) -> Option<OrphanSend> {
        op.into_orphan()
    }
}

/// The future of [`Stream::write`] and [`Stream::writev`]: waits for any send in flight, then
/// sends.
pub(crate) struct Sending<'a, I: SendInput> {
    stream: &'a mut Stream,
    state: SendStage<I>,
    budget: bool,
}

/// Where an owned send is.
enum SendStage<I: SendInput> {
    /// Waiting for the send in flight, if any.
    Start(I),
    Sending(I::Op),
    Done,
}

impl<'a, I: SendInput> Sending<'a, I> {
    fn new(stream: &'a mut Stream, input: I) -> Self {
        Sending {
            stream,
            state: SendStage::Start(input),
            budget: false,
        }
    }
}

impl<I: SendInput> Future for Sending<'_, I> {
    type Output = I::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<I::Output> {
        let this = self.get_mut();
        if !this.budget {
            ready!(crate::coop::poll_proceed(cx));
            this.budget = true;
        }
        let stream = &mut *this.stream;
        if let SendStage::Start(_) = this.state {
            ready!(stream.write.poll_settle(&stream.socket, cx));
            if let SendStage::Start(input) = std::mem::replace(&mut this.state, SendStage::Done) {
                this.state = SendStage::Sending(input.start(&stream.socket));
            }
        }
        let SendStage::Sending(op) = &mut this.state else {
            return Poll::Pending;
        };
        let out = ready!(I::poll(op, &stream.socket, cx));
        this.state = SendStage::Done;
        Poll::Ready(out)
    }
}

impl<I: SendInput> Drop for Sending<'_, I> {
    fn drop(&mut self) {
        if let SendStage::Sending(_) = self.state {
            if let SendStage::Sending(op) = std::mem::replace(&mut self.state, SendStage::Done) {
                self.stream.write.adopt(I::into_orphan(op));
            }
        }
    }
}
