//! The read state machine of a stream, shared by owned reads (`read`, `read_exact`), pooled reads
//! and the poll-based reads of the compatibility traits.
//!
//! # States
//!
//! ```text
//!            held bytes?  ── yes ──► serve them first (any API), oldest first
//!                │ no
//!   receive in flight that belongs to the stream?  (a dropped owned read's orphan, or the
//!                │ no                                poll-based reads' own receive)
//!                │            ── yes ──► wait for it (a waker, never a spin); its bytes → held
//!   pooled receive armed?     ── yes ──► its next buffer → held   (every API takes from it)
//!                │ no
//!   start this API's own receive
//! ```
//!
//! # Invariants
//!
//! * Bytes come out in the order the socket received them, whatever mix of APIs asks: no new
//!   receive starts while `held` has bytes or a stream-owned receive is in flight, and once the
//!   pooled receive is armed every read takes from it.
//! * `held` holds one chunk; it is filled only when it is empty (from `inflight` or `pooled`),
//!   and a cancelled `read_exact` puts what it had read back in front of it.
//! * An end of stream or an error that a stream-owned receive produced is held like bytes and
//!   returned once, to the next read.

use std::io;
use std::task::{Context, Poll, ready};

use weir_bufpool::Buf;

use crate::buf::IoBufMut;
use crate::driver::{Chunk, OrphanRecv, PooledRecv, Recv, Socket};

/// What a stream received that no caller has taken yet.
#[derive(Default)]
pub(crate) enum Held {
    #[default]
    Empty,
    /// `bytes[at..]`.
    Bytes { bytes: Vec<u8>, at: usize },
    /// `buf[at..]`, delivered by the pooled receive (pooled reads hand it on without copying).
    Pooled { buf: Chunk, at: usize },
    /// The end of the stream.
    End,
    /// A receive failed.
    Failed(io::Error),
}

/// A receive in flight whose bytes belong to the stream rather than to a caller's buffer.
enum Inflight {
    /// A dropped owned read's receive, still in the kernel.
    Orphan(OrphanRecv),
    /// The poll-based reads' receive into a buffer of the stream's own.
    Scratch(Recv<Vec<u8>>),
}

#[derive(Default)]
pub(crate) struct ReadState {
    held: Held,
    inflight: Option<Inflight>,
    pooled: Option<PooledRecv>,
    /// The poll-based reads' buffer, kept between receives.
    scratch: Vec<u8>,
    /// An end of stream or error that a cancelled `read_exact`'s returned bytes went in front
    /// of: held once those are taken.
    pending_after: Option<Held>,
}

/// What [`ReadState::poll_settle`] found.
pub(crate) enum Settled {
    /// `held` has something to return.
    Held,
    /// Nothing is held or in flight, and no pooled receive is armed: the caller may start its
    /// own receive.
    Idle,
}

impl ReadState {
    /// Brings the state to one where a read can proceed: waits for a stream-owned receive in
    /// flight or the pooled receive, if `held` is empty.
    pub(crate) fn poll_settle(&mut self, socket: &Socket, cx: &mut Context<'_>) -> Poll<Settled> {
        if !matches!(self.held, Held::Empty) {
            return Poll::Ready(Settled::Held);
        }
        if let Some(inflight) = self.inflight.as_mut() {
            let held = match inflight {
                Inflight::Orphan(orphan) => match ready!(orphan.as_mut().poll(cx)) {
                    Ok(bytes) if bytes.is_empty() => Held::End,
                    Ok(bytes) => Held::Bytes { bytes, at: 0 },
                    // A read that timed out asked the kernel to cancel its receive, then was
                    // dropped: nothing was received, and nothing is owed to the next read.
                    Err(error) if error.raw_os_error() == Some(crate::sys::ECANCELED) => {
                        self.inflight = None;
                        return self.poll_settle(socket, cx);
                    }
                    Err(error) => Held::Failed(error),
                },
                Inflight::Scratch(recv) => {
                    let (result, bytes) = ready!(recv.poll(socket, cx));
                    match result {
                        Ok(0) => {
                            self.scratch = bytes;
                            Held::End
                        }
                        Ok(_) => Held::Bytes { bytes, at: 0 },
                        Err(error) => {
                            self.scratch = bytes;
                            Held::Failed(error)
                        }
                    }
                }
            };
            self.inflight = None;
            self.held = held;
            return Poll::Ready(Settled::Held);
        }
        if let Some(pooled) = self.pooled.as_mut() {
            self.held = match ready!(pooled.poll_next(socket, cx)) {
                Ok(Some(buf)) => Held::Pooled { buf, at: 0 },
                Ok(None) => {
                    self.pooled = None;
                    Held::End
                }
                Err(error) => {
                    self.pooled = None;
                    Held::Failed(error)
                }
            };
            return Poll::Ready(Settled::Held);
        }
        Poll::Ready(Settled::Idle)
    }

    /// `true` if nothing is held, in flight or armed: the socket's own queue is the next byte of
    /// the stream, so it may be read around this state (a splice).
    pub(crate) fn is_idle(&self) -> bool {
        matches!(self.held, Held::Empty)
            && self.inflight.is_none()
            && self.pooled.is_none()
            && self.pending_after.is_none()
    }

    /// Copies held bytes into `buf`'s spare capacity: `Ok(0)` for a held end of stream, the held
    /// error, or how many bytes (the rest stays held).
    pub(crate) fn take_into<B: IoBufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        let n = match &mut self.held {
            Held::Empty => return Ok(0),
            Held::Bytes { bytes, at } => {
                let n = buf.extend_from(&bytes[*at..]);
                *at += n;
                n
            }
            Held::Pooled { buf: pooled, at } => {
                let n = buf.extend_from(&pooled[*at..]);
                *at += n;
                n
            }
            Held::End => {
                self.held = Held::Empty;
                return Ok(0);
            }
            Held::Failed(_) => match std::mem::take(&mut self.held) {
                Held::Failed(error) => return Err(error),
                _ => return Ok(0),
            },
        };
        self.forget_consumed();
        Ok(n)
    }

    /// Copies held bytes into `dst` (the poll-based reads), like [`take_into`].
    ///
    /// [`take_into`]: ReadState::take_into
    pub(crate) fn take_into_slice(
        &mut self,
        dst: &mut [std::mem::MaybeUninit<u8>],
    ) -> io::Result<usize> {
        let copy = |src: &[u8], dst: &mut [std::mem::MaybeUninit<u8>]| {
            let n = src.len().min(dst.len());
            for (slot, &byte) in dst.iter_mut().zip(&src[..n]) {
                slot.write(byte);
            }
            n
        };
        let n = match &mut self.held {
            Held::Bytes { bytes, at } => {
                let n = copy(&bytes[*at..], dst);
                *at += n;
                n
            }
            Held::Pooled { buf, at } => {
                let n = copy(&buf[*at..], dst);
                *at += n;
                n
            }
            _ => {
                let mut none = Vec::new();
                return self.take_into(&mut none);
            }
        };
        self.forget_consumed();
        Ok(n)
    }

    /// Takes what is held if it is a whole pool buffer (a pooled read hands it on as it is).
    pub(crate) fn take_pool_buffer(&mut self) -> Option<io::Result<Buf>> {
        match std::mem::take(&mut self.held) {
            Held::Pooled { buf, at: 0 } => {
                if let Some(after) = self.pending_after.take() {
                    self.held = after;
                }
                Some(buf.into_buf())
            }
            other => {
                self.held = other;
                None
            }
        }
    }

    /// `true` if an end of stream or an error is what is held (no bytes to copy).
    pub(crate) fn holds_an_ending(&self) -> bool {
        matches!(self.held, Held::End | Held::Failed(_))
    }

    /// Bytes a cancelled `read_exact` had gathered go back in front of whatever is held.
    pub(crate) fn unread(&mut self, mut bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match std::mem::take(&mut self.held) {
            Held::Empty => {}
            Held::Bytes { bytes: rest, at } => bytes.extend_from_slice(&rest[at..]),
            Held::Pooled { buf, at } => bytes.extend_from_slice(&buf[at..]),
            // An end or an error comes after the bytes: keep it for the read after.
            other @ (Held::End | Held::Failed(_)) => {
                self.held = Held::Bytes { bytes, at: 0 };
                self.pending_after = Some(other);
                return;
            }
        }
        self.held = Held::Bytes { bytes, at: 0 };
    }

    /// A dropped owned read's receive is still in the kernel: its bytes come before any other.
    pub(crate) fn adopt(&mut self, recv: Option<OrphanRecv>) {
        if let Some(orphan) = recv {
            self.inflight = Some(Inflight::Orphan(orphan));
        }
    }

    /// Starts the poll-based reads' own receive of up to `len` bytes (it stays in flight across
    /// polls; see `poll_settle`).
    pub(crate) fn start_scratch(&mut self, socket: &Socket, len: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        scratch.reserve(len.max(1));
        self.inflight = Some(Inflight::Scratch(socket.recv(scratch)));
    }

    /// Arms the pooled receive (pooled reads take from it from now on, and so does every other
    /// read).
    pub(crate) fn arm_pooled(&mut self, recv: PooledRecv) {
        if self.pooled.is_none() {
            self.pooled = Some(recv);
        }
    }

    fn forget_consumed(&mut self) {
        let consumed = match &self.held {
            Held::Bytes { bytes, at } => *at >= bytes.len(),
            Held::Pooled { buf, at } => *at >= buf.len(),
            _ => false,
        };
        if !consumed {
            if matches!(self.held, Held::Pooled { .. }) {
                if let Held::Pooled { buf, at } = std::mem::take(&mut self.held) {
                    // The rest stays held: out of the ring with it, so it holds no slot there.
                    self.held = match buf.detached() {
                        Ok(buf) => Held::Pooled { buf, at },
                        Err(error) => Held::Failed(error),
                    };
                }
            }
            return;
        }
        // A consumed ring chunk goes straight back to the kernel as it drops here.
        if let Held::Bytes { bytes, .. } = std::mem::take(&mut self.held) {
            if bytes.capacity() > self.scratch.capacity() {
                self.scratch = bytes;
            }
        }
        if let Some(after) = self.pending_after.take() {
            self.held = after;
        }
    }
}
