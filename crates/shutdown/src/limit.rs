//! A fair (FIFO) async semaphore for admission control.
//!
//! # State word
//!
//! ```text
//!  usize:  [ free permits : 62 bits ][ queued : 1 bit ][ closed : 1 bit ]
//! ```
//!
//! * **Fast paths.** An acquire that finds enough free permits and nobody queued takes them with
//!   one compare-and-swap; a release that finds nobody queued adds them with one. Neither locks.
//! * **Queue.** An acquire that cannot be served at once takes the queue lock, claims whatever
//!   free permits there are, sets `queued` and parks at the tail. While `queued` is set the word
//!   holds **zero** free permits: every release goes through the lock and is assigned to the
//!   waiters in order (partially to the head, if the head needs more than is released), so a
//!   later, smaller request can never overtake an earlier, larger one. `queued` is cleared, and
//!   leftover permits return to the word, only when the queue empties — under the lock.
//! * **Dropped waiters.** A waiter that is dropped gives back what it had been assigned,
//!   through the same in-order hand-off: a permit granted to a future that nobody polls again
//!   passes to the next waiter, never lost.
//!
//! The queue is a doubly linked list threaded through a slab of slots (safe code, O(1) removal);
//! each waiting future owns one slot until it completes or drops.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::Error;
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering, lock};

const CLOSED: usize = 0b01;
const QUEUED: usize = 0b10;
const PERMIT_SHIFT: u32 = 2;
/// The most permits a [`Limit`] can hold (or a single request can ask for).
pub const MAX_PERMITS: usize = usize::MAX >> PERMIT_SHIFT;

/// A fair async semaphore: permits are granted in arrival order, and a [`Permit`] gives its
/// share back when dropped (also while unwinding).
///
/// Clones share one pool of permits.
///
/// # Examples
///
/// ```
/// use weir_shutdown::Limit;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limit = Limit::new(2);
/// let first = limit.acquire().await.expect("open");
/// let _second = limit.acquire().await.expect("open");
/// assert!(limit.try_acquire().is_err(), "both permits are out");
/// drop(first);
/// let _third = limit.try_acquire().expect("one came back");
/// # }
/// ```
#[derive(Clone)]
pub struct Limit {
    inner: Arc<Inner>,
}

struct Inner {
    /// See the module docs for the layout. Invariant: `queued` set ⇒ zero free permits.
    state: AtomicUsize,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    slots: Vec<Slot>,
    free: Vec<usize>,
    head: Option<usize>,
    tail: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotStatus {
    /// Linked in the FIFO, still missing `Slot::missing` permits.
    Waiting,
    /// Unlinked; all requested permits were assigned.
    Granted,
    /// Unlinked by `close`; whatever was assigned goes back when the owner looks.
    Closed,
}

struct Slot {
    status: SlotStatus,
    requested: usize,
    missing: usize,
    waker: Option<Waker>,
    prev: Option<usize>,
    next: Option<usize>,
}

impl Slot {
    fn assigned(&self) -> usize {
        self.requested - self.missing
    }
}

impl Queue {
    fn push_back(&mut self, requested: usize, missing: usize, waker: Waker) -> usize {
        let slot = Slot {
            status: SlotStatus::Waiting,
            requested,
            missing,
            waker: Some(waker),
            prev: self.tail,
            next: None,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = slot;
                index
            }
            None => {
                self.slots.push(slot);
                self.slots.len() - 1
            }
        };
        match self.tail {
            Some(tail) => self.slots[tail].next = Some(index),
            None => self.head = Some(index),
        }
        self.tail = Some(index);
        index
    }

    fn unlink(&mut self, index: usize) {
        let (prev, next) = (self.slots[index].prev, self.slots[index].next);
        match prev {
            Some(prev) => self.slots[prev].next = next,
            None => self.head = next,
        }
        match next {
            Some(next) => self.slots[next].prev = prev,
            None => self.tail = prev,
        }
        self.slots[index].prev = None;
        self.slots[index].next = None;
    }

    /// Frees a slot that is no longer linked, returning the permits it had been assigned.
    fn release_slot(&mut self, index: usize) -> usize {
        let slot = &mut self.slots[index];
        let assigned = slot.assigned();
        slot.waker = None;
        self.free.push(index);
        if self.free.len() == self.slots.len() {
            self.slots.clear();
            self.free.clear();
        }
        assigned
    }
}

impl Limit {
    /// Creates a limit with `permits` permits (at most [`MAX_PERMITS`]; more are clamped).
    pub fn new(permits: usize) -> Self {
        Limit {
            inner: Arc::new(Inner {
                state: AtomicUsize::new(permits.min(MAX_PERMITS) << PERMIT_SHIFT),
                queue: Mutex::new(Queue::default()),
            }),
        }
    }

    /// Waits for one permit, in arrival order.
    ///
    /// Cancel safety: dropping the future returns whatever it had been granted to the next
    /// waiter; no permit is lost and no place in the queue is kept.
    pub fn acquire(&self) -> Acquire<'_> {
        self.acquire_many(1)
    }

    /// Waits for `n` permits at once, in arrival order (a large request blocks later small ones
    /// rather than starving).
    ///
    /// The future resolves to [`Error::Closed`] once the limit is closed, and to
    /// [`Error::TooManyPermits`] if `n` exceeds [`MAX_PERMITS`].
    pub fn acquire_many(&self, n: usize) -> Acquire<'_> {
        Acquire {
            limit: self,
            wait: WaitSlot::new(n),
        }
    }

    /// Like [`acquire`](Limit::acquire), but the permit owns a handle to the limit, so it can
    /// move into a `'static` task.
    pub fn acquire_owned(&self) -> AcquireOwned {
        self.acquire_many_owned(1)
    }

    /// Like [`acquire_many`](Limit::acquire_many), returning an [`OwnedPermit`].
    pub fn acquire_many_owned(&self, n: usize) -> AcquireOwned {
        AcquireOwned {
            limit: self.clone(),
            wait: WaitSlot::new(n),
        }
    }

    /// Takes one permit if one is free and nobody is queued ahead.
    ///
    /// # Errors
    ///
    /// [`Error::NoPermits`] if none is free (or others are waiting), [`Error::Closed`] once
    /// closed.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Error> {
        self.try_acquire_many(1)
    }

    /// Takes `n` permits if they are free and nobody is queued ahead.
    ///
    /// # Errors
    ///
    /// As [`try_acquire`](Limit::try_acquire), plus [`Error::TooManyPermits`] above
    /// [`MAX_PERMITS`].
    pub fn try_acquire_many(&self, n: usize) -> Result<Permit<'_>, Error> {
        self.inner.try_take(n)?;
        Ok(Permit {
            limit: &self.inner,
            count: n,
        })
    }

    /// Owned variant of [`try_acquire_many`](Limit::try_acquire_many).
    ///
    /// # Errors
    ///
    /// As [`try_acquire_many`](Limit::try_acquire_many).
    pub fn try_acquire_many_owned(&self, n: usize) -> Result<OwnedPermit, Error> {
        self.inner.try_take(n)?;
        Ok(OwnedPermit {
            limit: self.clone(),
            count: n,
        })
    }

    /// Adds `n` permits, serving queued waiters first.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyPermits`] if the limit would then hold more than [`MAX_PERMITS`] free
    /// permits; nothing is added in that case.
    pub fn add_permits(&self, n: usize) -> Result<(), Error> {
        if n > MAX_PERMITS {
            return Err(Error::TooManyPermits { requested: n });
        }
        self.inner.release(n, true)
    }

    /// Permits free right now (zero while anyone is queued).
    pub fn available(&self) -> usize {
        self.inner.state.load(Ordering::Acquire) >> PERMIT_SHIFT
    }

    /// Closes the limit: every queued and future acquire fails with [`Error::Closed`]. Permits
    /// already handed out stay valid and still return on drop.
    pub fn close(&self) {
        // AcqRel: the closed bit must be visible to fast-path acquirers before waiters are woken.
        self.inner.state.fetch_or(CLOSED, Ordering::AcqRel);
        let mut wakers = Vec::new();
        {
            let mut queue = lock(&self.inner.queue);
            while let Some(head) = queue.head {
                queue.unlink(head);
                let slot = &mut queue.slots[head];
                slot.status = SlotStatus::Closed;
                wakers.extend(slot.waker.take());
            }
            // The queue is empty: lift `queued` so releases take the lock-free path again.
            self.inner.state.fetch_and(!QUEUED, Ordering::AcqRel);
        }
        for waker in wakers {
            waker.wake();
        }
    }

    /// `true` once [`close`](Limit::close) has been called.
    pub fn is_closed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) & CLOSED != 0
    }

    /// Futures waiting in the queue now.
    pub fn waiting(&self) -> usize {
        let queue = lock(&self.inner.queue);
        let mut count = 0;
        let mut cursor = queue.head;
        while let Some(index) = cursor {
            count += 1;
            cursor = queue.slots[index].next;
        }
        count
    }
}

impl Inner {
    /// The lock-free fast path: take `n` permits if free and nobody is queued.
    fn try_take(&self, n: usize) -> Result<(), Error> {
        if n > MAX_PERMITS {
            return Err(Error::TooManyPermits { requested: n });
        }
        // Acquire on load and success: a permit handed back by `release` (Release) carries the
        // previous holder's work with it.
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            if state & CLOSED != 0 {
                return Err(Error::Closed);
            }
            let free = state >> PERMIT_SHIFT;
            if state & QUEUED != 0 || free < n {
                return Err(Error::NoPermits);
            }
            match self.state.compare_exchange_weak(
                state,
                state - (n << PERMIT_SHIFT),
                Ordering::Acquire,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => state = actual,
            }
        }
    }

    /// Gives `n` permits back: to the word if nobody waits, else in order to the queue.
    ///
    /// `checked` refuses to grow the free count past `MAX_PERMITS` (for `add_permits`);
    /// returning permits that were taken can never overflow.
    fn release(&self, n: usize, checked: bool) -> Result<(), Error> {
        if n == 0 {
            return Ok(());
        }
        // Release on success: the returned permits carry this holder's work to the next one.
        let mut state = self.state.load(Ordering::Relaxed);
        while state & QUEUED == 0 {
            let free = state >> PERMIT_SHIFT;
            if checked && free.checked_add(n).is_none_or(|total| total > MAX_PERMITS) {
                return Err(Error::TooManyPermits { requested: n });
            }
            match self.state.compare_exchange_weak(
                state,
                state + (n << PERMIT_SHIFT),
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => state = actual,
            }
        }
        let mut queue = lock(&self.queue);
        let wakers = self.release_locked(&mut queue, n);
        drop(queue);
        for waker in wakers {
            waker.wake();
        }
        Ok(())
    }

    /// Hands `n` permits to the queue in order; leftovers (only once the queue is empty) return
    /// to the word and `queued` is lifted. Returns the wakers to wake once the lock is released.
    fn release_locked(&self, queue: &mut Queue, mut n: usize) -> Vec<Waker> {
        let mut wakers = Vec::new();
        while n > 0 {
            let Some(head) = queue.head else { break };
            let slot = &mut queue.slots[head];
            let given = n.min(slot.missing);
            slot.missing -= given;
            n -= given;
            if slot.missing > 0 {
                break;
            }
            slot.status = SlotStatus::Granted;
            wakers.extend(slot.waker.take());
            queue.unlink(head);
        }
        if queue.head.is_none() {
            // Under the lock: nobody can enqueue meanwhile, and while `queued` is set no one else
            // changes the permit bits, so one update publishes the leftovers and lifts the flag.
            let mut state = self.state.load(Ordering::Relaxed);
            loop {
                let next = ((state & !QUEUED) >> PERMIT_SHIFT)
                    .saturating_add(n)
                    .min(MAX_PERMITS)
                    << PERMIT_SHIFT
                    | (state & CLOSED);
                match self.state.compare_exchange_weak(
                    state,
                    next,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(actual) => state = actual,
                }
            }
        }
        wakers
    }

    /// The slow path of an acquire: under the lock, claim what is free and queue for the rest.
    fn poll_acquire(&self, wait: &mut WaitSlot, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if wait.done {
            // Polled after completion: report closed rather than hand out permits twice.
            return Poll::Ready(Err(Error::Closed));
        }
        let mut queue = lock(&self.queue);
        if let Some(index) = wait.slot {
            let slot = &mut queue.slots[index];
            match slot.status {
                SlotStatus::Waiting => {
                    if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        slot.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                SlotStatus::Granted => {
                    // The permits are ours now; the slot goes back without returning them.
                    queue.slots[index].missing = queue.slots[index].requested;
                    queue.release_slot(index);
                    wait.slot = None;
                    wait.done = true;
                    Poll::Ready(Ok(()))
                }
                SlotStatus::Closed => {
                    let assigned = queue.release_slot(index);
                    wait.slot = None;
                    wait.done = true;
                    let wakers = self.release_locked(&mut queue, assigned);
                    drop(queue);
                    wakers.into_iter().for_each(Waker::wake);
                    Poll::Ready(Err(Error::Closed))
                }
            }
        } else {
            // First poll, fast path already failed: claim the free permits and queue.
            let mut state = self.state.load(Ordering::Acquire);
            loop {
                if state & CLOSED != 0 {
                    wait.done = true;
                    return Poll::Ready(Err(Error::Closed));
                }
                let free = state >> PERMIT_SHIFT;
                let claimed = free.min(wait.requested);
                let satisfied = claimed == wait.requested;
                let next = (state - (claimed << PERMIT_SHIFT)) | if satisfied { 0 } else { QUEUED };
                match self.state.compare_exchange_weak(
                    state,
                    next,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) if satisfied => {
                        wait.done = true;
                        return Poll::Ready(Ok(()));
                    }
                    Ok(_) => {
                        let index = queue.push_back(
                            wait.requested,
                            wait.requested - claimed,
                            cx.waker().clone(),
                        );
                        wait.slot = Some(index);
                        return Poll::Pending;
                    }
                    Err(actual) => state = actual,
                }
            }
        }
    }

    /// A waiting future is dropped: leave the queue and pass on what was assigned.
    fn abandon(&self, wait: &mut WaitSlot) {
        let Some(index) = wait.slot.take() else {
            return;
        };
        let mut queue = lock(&self.queue);
        if queue.slots[index].status == SlotStatus::Waiting {
            queue.unlink(index);
        }
        let assigned = queue.release_slot(index);
        let wakers = if assigned > 0 || queue.head.is_none() {
            // Also when nothing was assigned but the queue emptied: `queued` must be lifted.
            self.release_locked(&mut queue, assigned)
        } else {
            Vec::new()
        };
        drop(queue);
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// The per-future part of an acquire.
#[derive(Debug)]
struct WaitSlot {
    requested: usize,
    /// Our slot in the queue while parked.
    slot: Option<usize>,
    /// Resolved (either way); the permits, if any, now belong to a `Permit`.
    done: bool,
}

impl WaitSlot {
    fn new(requested: usize) -> Self {
        WaitSlot {
            requested,
            slot: None,
            done: false,
        }
    }

    fn poll(&mut self, inner: &Inner, cx: &mut Context<'_>) -> Poll<Result<usize, Error>> {
        if self.slot.is_none() && !self.done {
            match inner.try_take(self.requested) {
                Ok(()) => {
                    self.done = true;
                    return Poll::Ready(Ok(self.requested));
                }
                Err(Error::NoPermits) => {}
                Err(error) => {
                    self.done = true;
                    return Poll::Ready(Err(error));
                }
            }
        }
        inner
            .poll_acquire(self, cx)
            .map(|result| result.map(|()| self.requested))
    }
}

/// Future returned by [`Limit::acquire`] and [`Limit::acquire_many`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limit = weir_shutdown::Limit::new(3);
/// let permits = limit.acquire_many(2).await.expect("open");
/// assert_eq!((permits.count(), limit.available()), (2, 1));
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct Acquire<'a> {
    limit: &'a Limit,
    wait: WaitSlot,
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<Permit<'a>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let limit = this.limit;
        this.wait.poll(&limit.inner, cx).map(|result| {
            result.map(|count| Permit {
                limit: &limit.inner,
                count,
            })
        })
    }
}

impl Drop for Acquire<'_> {
    fn drop(&mut self) {
        self.limit.inner.abandon(&mut self.wait);
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire").field("wait", &self.wait).finish()
    }
}

/// Future returned by [`Limit::acquire_owned`] and [`Limit::acquire_many_owned`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let limit = weir_shutdown::Limit::new(1);
/// let permit = limit.acquire_owned().await.expect("open");
/// tokio::spawn(async move {
///     let _permit = permit; // held for the task's life, returned when it ends
/// })
/// .await
/// .unwrap();
/// assert_eq!(limit.available(), 1);
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
pub struct AcquireOwned {
    limit: Limit,
    wait: WaitSlot,
}

impl Future for AcquireOwned {
    type Output = Result<OwnedPermit, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.wait.poll(&this.limit.inner, cx).map(|result| {
            result.map(|count| OwnedPermit {
                limit: this.limit.clone(),
                count,
            })
        })
    }
}

impl Drop for AcquireOwned {
    fn drop(&mut self) {
        self.limit.inner.abandon(&mut self.wait);
    }
}

impl fmt::Debug for AcquireOwned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcquireOwned")
            .field("wait", &self.wait)
            .finish()
    }
}

/// Permits borrowed from a [`Limit`]; given back when dropped.
///
/// # Examples
///
/// ```
/// let limit = weir_shutdown::Limit::new(2);
/// let permit = limit.try_acquire().expect("free");
/// assert_eq!(limit.available(), 1);
/// drop(permit);
/// assert_eq!(limit.available(), 2);
/// ```
#[must_use = "the permits return as soon as this is dropped"]
pub struct Permit<'a> {
    limit: &'a Inner,
    count: usize,
}

impl Permit<'_> {
    /// How many permits this holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Keeps the permits out of the limit for good (shrinking its capacity).
    pub fn forget(mut self) {
        self.count = 0;
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // Returning permits that were taken cannot overflow, so the result is always `Ok`.
        let _ = self.limit.release(self.count, false);
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("count", &self.count)
            .finish()
    }
}

/// Permits that own a handle to their [`Limit`]; given back when dropped.
///
/// # Examples
///
/// ```
/// let limit = weir_shutdown::Limit::new(2);
/// let permit = limit.try_acquire_many_owned(2).expect("free");
/// permit.forget(); // the capacity shrinks for good
/// assert_eq!(limit.available(), 0);
/// ```
#[must_use = "the permits return as soon as this is dropped"]
pub struct OwnedPermit {
    limit: Limit,
    count: usize,
}

impl OwnedPermit {
    /// How many permits this holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Keeps the permits out of the limit for good (shrinking its capacity).
    pub fn forget(mut self) {
        self.count = 0;
    }
}

impl Drop for OwnedPermit {
    fn drop(&mut self) {
        // See `Permit::drop`.
        let _ = self.limit.inner.release(self.count, false);
    }
}

impl fmt::Debug for OwnedPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnedPermit")
            .field("count", &self.count)
            .finish()
    }
}

impl fmt::Debug for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limit")
            .field("available", &self.available())
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
        Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn large_request_is_not_overtaken_by_small_ones() {
        let limit = Limit::new(3);
        let held = limit.try_acquire_many(3).expect("free");
        let mut big = limit.acquire_many(2);
        let mut small = limit.acquire();
        assert!(poll(&mut big).is_pending());
        assert!(poll(&mut small).is_pending());
        drop(held);
        assert!(matches!(poll(&mut big), Poll::Ready(Ok(ref p)) if p.count() == 2));
        assert!(matches!(poll(&mut small), Poll::Ready(Ok(_))));
    }

    #[test]
    fn partial_assignment_returns_when_waiter_drops() {
        let limit = Limit::new(1);
        let mut big = limit.acquire_many(3);
        assert!(poll(&mut big).is_pending());
        assert_eq!(
            limit.available(),
            0,
            "the free permit was assigned to the head"
        );
        drop(big);
        assert_eq!(limit.available(), 1);
        assert!(limit.try_acquire().is_ok());
    }

    #[test]
    fn granted_but_dropped_future_hands_permit_on() {
        let limit = Limit::new(1);
        let held = limit.try_acquire().expect("free");
        let mut first = limit.acquire();
        let mut second = limit.acquire();
        assert!(poll(&mut first).is_pending());
        assert!(poll(&mut second).is_pending());
        drop(held); // granted to `first`, which is never polled again
        drop(first);
        assert!(matches!(poll(&mut second), Poll::Ready(Ok(_))));
    }

    #[test]
    fn close_fails_waiters_and_new_acquires() {
        let limit = Limit::new(0);
        let mut waiter = limit.acquire();
        assert!(poll(&mut waiter).is_pending());
        limit.close();
        assert!(matches!(poll(&mut waiter), Poll::Ready(Err(Error::Closed))));
        assert!(matches!(limit.try_acquire(), Err(Error::Closed)));
    }

    #[test]
    fn add_permits_refuses_overflow() {
        let limit = Limit::new(MAX_PERMITS);
        assert_eq!(
            limit.add_permits(1),
            Err(Error::TooManyPermits { requested: 1 })
        );
        assert_eq!(limit.available(), MAX_PERMITS);
    }

    #[test]
    fn forget_shrinks_capacity() {
        let limit = Limit::new(2);
        limit.try_acquire().expect("free").forget();
        assert_eq!(limit.available(), 1);
    }

    #[test]
    fn zero_permit_request_is_immediate() {
        let limit = Limit::new(0);
        let mut zero = limit.acquire_many(0);
        assert!(matches!(poll(&mut zero), Poll::Ready(Ok(ref p)) if p.count() == 0));
    }
}
