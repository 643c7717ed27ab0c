//! The poll-based reads and writes behind the compatibility traits (tokio's
//! `AsyncRead`/`AsyncWrite`, hyper's `rt::Read`/`rt::Write`): the same state machines as the
//! owned-buffer methods, so the two can be mixed in any order. Read timeouts do not apply.

use std::io;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::task::{Context, Poll, ready};

use super::Stream;
use crate::io::read::Settled;

impl Stream {
    /// Poll-based read into `dst`. Straight into `dst` where the backend can; elsewhere a
    /// receive into the stream's own buffer stays in flight across polls, and what `dst` has no
    /// room for is held for the next read.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "hyper")),
        allow(dead_code, reason = "used by the compatibility features")
    )]
    pub(crate) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        dst: &mut [MaybeUninit<u8>],
    ) -> Poll<io::Result<usize>> {
        loop {
            match ready!(self.read.poll_settle(&self.socket, cx)) {
                Settled::Held => return Poll::Ready(self.read.take_into_slice(dst)),
                Settled::Idle if dst.is_empty() => return Poll::Ready(Ok(0)),
                Settled::Idle => {
                    if self.arm_multishot() {
                        continue;
                    }
                    if let Some(received) = self.socket.poll_recv_borrowed(cx, dst) {
                        return received;
                    }
                    self.read.start_scratch(&self.socket, dst.len());
                }
            }
        }
    }

    /// Poll-based write of `src`: see `io::write` for how a send kept in flight is counted.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "hyper")),
        allow(dead_code, reason = "used by the compatibility features")
    )]
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write.poll_write(&self.socket, cx, src)
    }

    /// Waits for a send in flight to finish.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "hyper")),
        allow(dead_code, reason = "used by the compatibility features")
    )]
    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write.poll_flush(&self.socket, cx)
    }

    /// Flushes, then half-closes the write direction.
    #[cfg_attr(
        not(any(feature = "tokio", feature = "hyper")),
        allow(dead_code, reason = "used by the compatibility features")
    )]
    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_flush(cx))?;
        Poll::Ready(self.shutdown(Shutdown::Write))
    }
}
