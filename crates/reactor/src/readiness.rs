//! Per-source readiness with a tick, and one waker slot per direction.
//!
//! # State word
//!
//! ```text
//!  usize:  [ tick : usize::BITS - 3 ][ read closed : 1 ][ writable : 1 ][ readable : 1 ]
//! ```
//!
//! `read closed` is sticky: once the peer's end of stream (or a hang-up or error) was reported,
//! the read direction stays ready, so a read that drained the data that came with the end of
//! stream (a short read clears readiness) cannot make the next read wait for an event that
//! already happened.
//!
//! The reactor thread *sets* readiness (OR-ing bits and bumping the tick) when the poller reports
//! an event, then wakes the waker of each direction that became ready. A task *polls* a
//! direction: if its bit is set it gets a [`ReadyEvent`] (the bits and the tick it saw);
//! otherwise it parks its waker and checks again. After an operation fails with `EAGAIN`, the
//! task *clears* the bits it saw — but only if the tick is unchanged, so an event that arrived
//! between its syscall and the clear is never erased (no lost wake-up), and a readiness it
//! already consumed is never reported again (no stale readiness).
//!
//! The waker slots sit under a mutex that both the setter and the parker take; the parker
//! re-reads the word after parking, so whichever of the two runs first, the other sees it.

use std::task::{Context, Poll, Waker};

use crate::sync::{AtomicUsize, Mutex, Ordering, lock};

const READABLE: usize = 0b001;
const WRITABLE: usize = 0b010;
const READ_CLOSED: usize = 0b100;
const READY_MASK: usize = READABLE | WRITABLE | READ_CLOSED;
const TICK_SHIFT: u32 = 3;

/// A direction of readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The source can be read (or has hung up, or has an error to report).
    Read,
    /// The source can be written (or has an error to report).
    Write,
}

impl Direction {
    fn bit(self) -> usize {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }
}

/// What a successful readiness poll saw: hand it back to
/// [`Registration::clear_readiness`](crate::Registration::clear_readiness) after `EAGAIN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadyEvent {
    tick: usize,
    ready: usize,
}

/// The readiness state of one registered source.
#[derive(Debug, Default)]
pub(crate) struct ScheduledIo {
    /// See the module docs for the layout.
    state: AtomicUsize,
    /// `[reader, writer]`: every task waiting in that direction (usually one; several tasks may
    /// wait on a shared source, such as a datagram socket), all woken by its next event.
    wakers: Mutex<[Waiters; 2]>,
}

/// The tasks waiting in one direction: the first inline, any others beside it.
#[derive(Debug, Default)]
struct Waiters {
    first: Option<Waker>,
    others: Vec<Waker>,
}

impl Waiters {
    /// Adds `waker` unless a waker that wakes the same task is there already.
    fn park(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(first) if first.will_wake(waker) => {}
            Some(_) => {
                if !self.others.iter().any(|w| w.will_wake(waker)) {
                    self.others.push(waker.clone());
                }
            }
        }
    }

    /// Takes every waker out, into `out`.
    fn drain_into(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.first.take());
        out.append(&mut self.others);
    }
}

impl ScheduledIo {
    /// Records readiness from the poller and wakes the directions that became ready. Returns
    /// how many wakers were woken.
    pub(crate) fn set_readiness(&self, readable: bool, writable: bool, read_closed: bool) -> usize {
        let readable = readable || read_closed;
        let bits = (if readable { READABLE } else { 0 })
            | (if writable { WRITABLE } else { 0 })
            | (if read_closed { READ_CLOSED } else { 0 });
        if bits == 0 {
            return 0;
        }
        // AcqRel: Release publishes the readiness to pollers (Acquire in `poll_ready`); Acquire
        // orders it after earlier clears.
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let tick = (current >> TICK_SHIFT).wrapping_add(1);
                Some((tick << TICK_SHIFT) | (current & READY_MASK) | bits)
            });
        let (reader, writer, others) = {
            let mut wakers = lock(&self.wakers);
            let mut others = Vec::new();
            let reader = if readable {
                wakers[0].first.take()
            } else {
                None
            };
            let writer = if writable {
                wakers[1].first.take()
            } else {
                None
            };
            // The common case, one task per direction, allocates nothing.
            if readable && !wakers[0].others.is_empty() {
                wakers[0].drain_into(&mut others);
            }
            if writable && !wakers[1].others.is_empty() {
                wakers[1].drain_into(&mut others);
            }
            (reader, writer, others)
        };
        let count = usize::from(reader.is_some()) + usize::from(writer.is_some()) + others.len();
        reader
            .into_iter()
            .chain(writer)
            .chain(others)
            .for_each(Waker::wake);
        count
    }

    /// Ready in `direction`, or parks `cx`'s waker for it.
    pub(crate) fn poll_ready(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
    ) -> Poll<ReadyEvent> {
        let bit = direction.bit();
        if let Some(event) = self.ready_now(bit) {
            return Poll::Ready(event);
        }
        let mut wakers = lock(&self.wakers);
        wakers[usize::from(direction == Direction::Write)].park(cx.waker());
        // Re-check under the lock: a setter that ran before we parked is visible now; one that
        // runs after will find our waker.
        match self.ready_now(bit) {
            Some(event) => Poll::Ready(event),
            None => Poll::Pending,
        }
    }

    fn ready_now(&self, bit: usize) -> Option<ReadyEvent> {
        // Acquire: pairs with `set_readiness`.
        let current = self.state.load(Ordering::Acquire);
        (current & bit != 0).then_some(ReadyEvent {
            tick: current >> TICK_SHIFT,
            ready: current & bit,
        })
    }

    /// Forgets the readiness `event` reported, unless a newer event arrived since (or the read
    /// direction is closed: that stays ready).
    pub(crate) fn clear_readiness(&self, event: ReadyEvent) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                let keep = if current & READ_CLOSED != 0 {
                    READABLE
                } else {
                    0
                };
                (current >> TICK_SHIFT == event.tick).then_some(current & !(event.ready & !keep))
            });
    }

    /// Wakes both directions (the source is going away or the reactor shuts down).
    pub(crate) fn wake_all(&self) {
        let mut woken = Vec::new();
        for waiters in lock(&self.wakers).iter_mut() {
            waiters.drain_into(&mut woken);
        }
        woken.into_iter().for_each(Waker::wake);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn clear_keeps_a_newer_event() {
        let io = ScheduledIo::default();
        io.set_readiness(true, false, false);
        let Poll::Ready(seen) = io.poll_ready(Direction::Read, &mut noop()) else {
            panic!("readable was set");
        };
        io.set_readiness(true, false, false); // arrives while the task was reading
        io.clear_readiness(seen);
        assert!(io.poll_ready(Direction::Read, &mut noop()).is_ready());
    }

    #[test]
    fn clear_forgets_consumed_readiness() {
        let io = ScheduledIo::default();
        io.set_readiness(true, true, false);
        let Poll::Ready(seen) = io.poll_ready(Direction::Read, &mut noop()) else {
            panic!("readable was set");
        };
        io.clear_readiness(seen);
        assert!(io.poll_ready(Direction::Read, &mut noop()).is_pending());
        assert!(
            io.poll_ready(Direction::Write, &mut noop()).is_ready(),
            "other direction kept"
        );
    }

    #[test]
    fn a_closed_read_direction_stays_ready() {
        let io = ScheduledIo::default();
        // The last data and the peer's end of stream in one event.
        io.set_readiness(true, false, true);
        let Poll::Ready(seen) = io.poll_ready(Direction::Read, &mut noop()) else {
            panic!("readable was set");
        };
        // A short read drained the data and clears what it saw...
        io.clear_readiness(seen);
        // ...but the end of stream is still there to be read.
        assert!(io.poll_ready(Direction::Read, &mut noop()).is_ready());
        assert!(io.poll_ready(Direction::Write, &mut noop()).is_pending());
    }
}
