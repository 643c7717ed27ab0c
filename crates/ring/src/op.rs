//! The futures of ops in flight: [`Op`] for single-shot ops, [`MultiOp`] for multishot ones.
//! Dropping either before its final CQE parks the op's data in the table and asks the kernel to
//! cancel it; [`Op::cancel`] asks for the cancel while still waiting for the outcome.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use io_uring::{opcode, squeue};

use crate::lifecycle::{CancelOutcome, Cqe, OpId};
use crate::ring::{OpBox, Ring, discard};

/// An op's data together with the timespec of its linked timeout (see
/// `Ring::submit_linked_timeout`).
#[derive(Debug)]
pub struct Linked<T, O> {
    data: T,
    timespec: io_uring::types::Timespec,
    complete: fn(T, Cqe) -> O,
}

// SAFETY: `Timespec` is plain data; the rest is `T`, which is `Send`.
unsafe impl<T: Send, O> Send for Linked<T, O> {}

impl Ring {
    /// Boxes `data`, builds its SQE from the boxed (address-stable) value, parks the box in the
    /// op table and pushes the SQE. The returned future completes with `complete(data, cqe)`.
    pub(crate) fn submit<T, O>(
        &self,
        data: T,
        build: impl FnOnce(&mut T) -> squeue::Entry,
        discard: fn(&mut (dyn Any + Send), Cqe),
        complete: fn(T, Cqe) -> O,
    ) -> Op<T, O>
    where
        T: Send + 'static,
    {
        let (id, entry) = self.park(data, build, discard);
        self.push(entry);
        Op {
            ring: self.clone(),
            id: Some(id),
            complete,
            _data: PhantomData,
        }
    }

    /// Like [`submit`](Ring::submit) for multishot ops: the result is a stream of CQEs.
    pub(crate) fn submit_multishot<T: Send + 'static>(
        &self,
        data: T,
        build: impl FnOnce(&mut T) -> squeue::Entry,
        discard: fn(&mut (dyn Any + Send), Cqe),
    ) -> MultiOp {
        let (id, entry) = self.park(data, build, discard);
        self.push(entry);
        MultiOp {
            ring: self.clone(),
            id: Some(id),
        }
    }

    /// Like [`submit`](Ring::submit), followed by a `LINK_TIMEOUT` SQE linked to it: the kernel
    /// cancels the op (`ECANCELED`) if it has not completed within `timeout`. The timespec lives
    /// in the op's box (the kernel reads it when the SQEs are submitted, later than this call);
    /// the timeout's own CQE carries no op and is ignored.
    #[allow(
        clippy::type_complexity,
        reason = "the op's data wrapped with its timespec"
    )]
    pub(crate) fn submit_linked_timeout<T, O>(
        &self,
        data: T,
        timeout: Duration,
        build: impl FnOnce(&mut T) -> squeue::Entry,
        discard: fn(&mut (dyn Any + Send), Cqe),
        complete: fn(T, Cqe) -> O,
    ) -> Op<Linked<T, O>, O>
    where
        T: Send + 'static,
        O: 'static,
    {
        let linked = Linked {
            data,
            timespec: io_uring::types::Timespec::new()
                .sec(timeout.as_secs())
                .nsec(timeout.subsec_nanos()),
            complete,
        };
        let mut link = None;
        let (id, entry) = self.park(
            linked,
            |boxed| {
                link = Some(
                    opcode::LinkTimeout::new(&raw const boxed.timespec)
                        .build()
                        .user_data(u64::MAX),
                );
                build(&mut boxed.data).flags(squeue::Flags::IO_LINK)
            },
            discard,
        );
        match link {
            Some(link) => self.push_linked(entry, link),
            None => self.push(entry),
        }
        Op {
            ring: self.clone(),
            id: Some(id),
            complete: |linked: Linked<T, O>, cqe| (linked.complete)(linked.data, cqe),
            _data: PhantomData,
        }
    }
}

/// A single-shot op in flight. Resolves to the op's output (which gives back its buffers).
///
/// Cancel safety: dropping it before it resolves is memory-safe and leaks nothing: the op's data
/// stays parked until the kernel's final CQE, an async cancel is queued, and a result the kernel
/// produced meanwhile is cleaned up (an accepted descriptor is closed). To give up on an op but
/// still learn what it did, call [`cancel`](Op::cancel) and keep polling.
#[must_use = "an op does nothing useful unless awaited; dropping it cancels it"]
pub struct Op<T, O> {
    ring: Ring,
    id: Option<OpId>,
    complete: fn(T, Cqe) -> O,
    _data: PhantomData<fn() -> T>,
}

impl<T, O> Op<T, O> {
    /// Asks the kernel to cancel the op; the future still resolves, to what the op did: its
    /// result if it finished first (nothing is lost), else `ECANCELED`. A no-op once resolved.
    pub fn cancel(&mut self) {
        if let Some(id) = self.id {
            self.ring.queue_cancel(id.user_data());
        }
    }

    /// `true` until the op's outcome has been returned.
    pub fn is_pending(&self) -> bool {
        self.id.is_some()
    }
}

impl<T: 'static, O> std::future::Future for Op<T, O> {
    type Output = O;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let this = self.get_mut();
        let Some(id) = this.id else {
            return Poll::Pending;
        };
        match this.ring.shared.ops.poll_complete(id, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some((mut op, cqe))) => {
                this.id = None;
                match op.take_data().downcast::<T>() {
                    Ok(data) => Poll::Ready((this.complete)(crate::recycle::unbox(data), cqe)),
                    // The box was built from a `T` in `Ring::submit`; a mismatch cannot happen,
                    // and if it did, the op simply never resolves rather than misread memory.
                    Err(_) => Poll::Pending,
                }
            }
            // Taken already (polled after completion): never resolves again.
            Poll::Ready(None) => Poll::Pending,
        }
    }
}

impl<T, O> Drop for Op<T, O> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            cancel_op(&self.ring, id);
        }
    }
}

/// The future of op `id` is gone: release its data now if it finished, else park it and cancel.
fn cancel_op(ring: &Ring, id: OpId) {
    match ring.shared.ops.cancel(id, discard) {
        // Finished already: the kernel is done with the box.
        CancelOutcome::Released(op) => drop::<OpBox>(op),
        CancelOutcome::CancelInKernel(user_data) => ring.queue_cancel(user_data),
        CancelOutcome::Gone => {}
    }
}

impl<T, O> fmt::Debug for Op<T, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op").field("id", &self.id).finish()
    }
}

/// A multishot op in flight: a stream of CQEs, ending after the one without `F_MORE`.
///
/// Cancel safety: as [`Op`]; CQEs that arrive after the drop are cleaned up.
#[must_use = "dropping a multishot op cancels it"]
pub struct MultiOp {
    ring: Ring,
    id: Option<OpId>,
}

impl MultiOp {
    /// The next CQE, or `None` once the op has ended (its final CQE was returned before).
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Cqe>> {
        let Some(id) = self.id else {
            return Poll::Ready(None);
        };
        let next = self.ring.shared.ops.poll_next(id, cx);
        if let Poll::Ready(None) = next {
            self.id = None;
        }
        next
    }

    /// CQEs that arrived and wait for [`poll_next`](MultiOp::poll_next).
    pub fn queued(&self) -> usize {
        self.id.map_or(0, |id| self.ring.shared.ops.queued(id))
    }

    /// Asks the kernel to end the op: the CQEs already produced still come, then a final one
    /// (`ECANCELED`, or the op's own ending if it came first). A no-op once ended.
    pub fn cancel(&mut self) {
        if let Some(id) = self.id {
            self.ring.queue_cancel(id.user_data());
        }
    }

    /// Awaits the next CQE.
    pub async fn next(&mut self) -> Option<Cqe> {
        std::future::poll_fn(|cx| self.poll_next(cx)).await
    }
}

impl Drop for MultiOp {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            cancel_op(&self.ring, id);
        }
    }
}

impl fmt::Debug for MultiOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiOp").field("id", &self.id).finish()
    }
}
