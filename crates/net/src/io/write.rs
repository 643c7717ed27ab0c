//! The write state machine of a stream, shared by owned writes (`write`, `write_all`, `writev`,
//! `send_file`) and the poll-based writes of the compatibility traits.
//!
//! # States
//!
//! ```text
//!   no send in flight ──► a write starts its own send
//!        ▲
//!        │ finished (its count goes to nobody, or to the poll_write that retries its bytes)
//!   a send in flight that no caller awaits:
//!     * Orphan:    an owned write was dropped while the kernel held its send;
//!     * Polled:    poll_write returned Pending with a copy of its bytes in the kernel;
//!     * Collected: a Polled send that finished while nobody polled it (poll_flush waited for
//!                  it), its count kept for the poll_write that retries the same bytes.
//! ```
//!
//! # Invariants
//!
//! * At most one send is on the socket at a time, so bytes never interleave: every write waits
//!   (with a waker) for the send in flight before starting its own.
//! * A send's count is reported exactly once, to the call whose bytes it carried: an owned
//!   write's to that write (or to nobody if it was dropped), a poll-based send's to the
//!   `poll_write` whose buffer begins with the bytes the send carried — the retry the traits
//!   require after `Pending`. A different `poll_write` (its first caller gave up, say on a
//!   timeout) gets nothing from it and sends its own bytes, whole.

use std::io;
use std::task::{Context, Poll, ready};

use crate::driver::{OrphanSend, Send, Socket};

/// How much a poll-based write copies into one send on backends that cannot send from the
/// caller's slice.
const POLLED_CHUNK: usize = 256 * 1024;

enum Inflight {
    Orphan(OrphanSend),
    Polled(Send<Vec<u8>>),
    Collected {
        result: io::Result<usize>,
        bytes: Vec<u8>,
    },
}

#[derive(Default)]
pub(crate) struct WriteState {
    inflight: Option<Inflight>,
    /// Where an operation that cannot hand its send over as it is dropped (the ring's
    /// `send_file` splice) leaves it; it joins `inflight` before anything else happens.
    left: Option<OrphanSend>,
}

impl WriteState {
    /// The slot a dropped `send_file` or splice leaves its send in flight in.
    pub(crate) fn orphan_slot(&mut self) -> &mut Option<OrphanSend> {
        self.adopt_left();
        &mut self.left
    }

    fn adopt_left(&mut self) {
        if self.inflight.is_none() {
            if let Some(left) = self.left.take() {
                self.inflight = Some(Inflight::Orphan(left));
            }
        }
    }

    /// Waits until no send is in flight, for a write that starts its own: what the one in flight
    /// did is nobody's to report now.
    pub(crate) fn poll_settle(&mut self, socket: &Socket, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            self.adopt_left();
            match self.inflight.as_mut() {
                None => return Poll::Ready(()),
                Some(Inflight::Orphan(orphan)) => drop(ready!(orphan.as_mut().poll(cx))),
                Some(Inflight::Polled(send)) => drop(ready!(send.poll(socket, cx))),
                Some(Inflight::Collected { .. }) => {}
            }
            self.inflight = None;
        }
    }

    /// A dropped owned write's send is still in the kernel: later writes wait for it.
    pub(crate) fn adopt(&mut self, send: Option<OrphanSend>) {
        if let Some(orphan) = send {
            self.inflight = Some(Inflight::Orphan(orphan));
        }
    }

    /// Poll-based write of `src` (the compatibility traits): straight from `src` where the
    /// backend can; elsewhere a copy of up to 256 KiB goes into a send kept in flight, and the
    /// retry with the same bytes collects its count.
    pub(crate) fn poll_write(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            self.adopt_left();
            let finished = match self.inflight.as_mut() {
                None => break,
                Some(Inflight::Orphan(orphan)) => {
                    drop(ready!(orphan.as_mut().poll(cx)));
                    None
                }
                Some(Inflight::Polled(send)) => Some(ready!(send.poll(socket, cx))),
                Some(Inflight::Collected { .. }) => match self.inflight.take() {
                    Some(Inflight::Collected { result, bytes }) => Some((result, bytes)),
                    _ => None,
                },
            };
            self.inflight = None;
            if let Some((result, bytes)) = finished {
                if src.starts_with(&bytes) {
                    return Poll::Ready(result);
                }
                // The send belonged to a write whose caller went away: its bytes went (as a
                // dropped write's may), its count is nobody's. This write sends its own.
            }
        }
        if src.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(sent) = socket.poll_send_borrowed(cx, src) {
            return sent;
        }
        let copy = src[..src.len().min(POLLED_CHUNK)].to_vec();
        let mut send = socket.send(copy);
        if let Poll::Ready((result, _)) = send.poll(socket, cx) {
            return Poll::Ready(result);
        }
        self.inflight = Some(Inflight::Polled(send));
        Poll::Pending
    }

    /// Waits for the send in flight (the traits' flush). A poll-based send's outcome is kept
    /// for its retry; its error, if it failed, is returned here instead.
    pub(crate) fn poll_flush(
        &mut self,
        socket: &Socket,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.inflight.as_mut() {
                None => return Poll::Ready(Ok(())),
                Some(Inflight::Orphan(orphan)) => {
                    drop(ready!(orphan.as_mut().poll(cx)));
                    self.inflight = None;
                }
                Some(Inflight::Polled(send)) => {
                    let (result, bytes) = ready!(send.poll(socket, cx));
                    self.inflight = Some(Inflight::Collected { result, bytes });
                }
                Some(Inflight::Collected { result, .. }) => {
                    if result.is_err() {
                        if let Some(Inflight::Collected { result, .. }) = self.inflight.take() {
                            return Poll::Ready(result.map(drop));
                        }
                    }
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}
