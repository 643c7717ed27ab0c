//! Per-source readiness with a tick, and one waker slot per direction.
//!
//! # State word
//!
//! ```text
//!  usize:  [ tick : usize::BITS - 3 ][ read closed : 1 ][ writable : 1 ][ readable : 1 ]
//! ```
//!
//! `read closed` is sticky across a drained read: once the peer's end of stream (or a hang-up or
//! error) was reported, the read direction stays ready, so a read that drained the data that
//! came with the end of stream (a short read clears readiness) cannot make the next read wait
//! for an event that already happened. Only `EAGAIN` clears it: a read that would block proves
//! nothing is left to report — an end of stream or a reset is reported to every later read, but
//! a datagram socket's error (an ICMP "port unreachable") is reported once, to one receive, and
//! a mark kept after it would make every later receive spin on `EAGAIN`.
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
//!
//! # Oneshot arming
//!
//! A oneshot poller (IOCP) disarms a source, both directions at once, each time it reports an
//! event, and must be armed again for whatever is still awaited. The arming is done here, by a
//! callback the reactor passes in ([`Arm`]), always under the waker mutex, so that the arming
//! calls of one source are ordered with the changes of its waiter sets:
//!
//! * a task that parks in a direction the source is not known to be armed for arms it for every
//!   direction that has a waiter;
//! * [`set_readiness`](ScheduledIo::set_readiness) — the poller reported an event, so the source
//!   is disarmed — takes the wakers of the directions that became ready and arms the source for
//!   the directions that still have waiters (a reader parked while only writability was
//!   reported stays watched).
//!
//! Invariant: while a task waits in a direction, the source is armed for it in the poller, or
//! the poller has delivered an event for it that `set_readiness` has not handled yet (and will
//! arm it then). The record of what is armed (`Waiting::armed`) may claim more than the poller
//! has between a delivery and its handling, never less after it.
//!
//! Once the registration is deregistered the source is never armed again: its descriptor may
//! be closed and its number reused by another registration, whose key an arming would
//! overwrite.

use std::io;
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

/// The directions a source is armed for in a oneshot poller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Interest {
    pub(crate) read: bool,
    pub(crate) write: bool,
}

impl Interest {
    /// Both directions: what a source is armed for when it is registered.
    pub(crate) const BOTH: Interest = Interest {
        read: true,
        write: true,
    };

    fn is_empty(self) -> bool {
        !self.read && !self.write
    }

    pub(crate) fn covers(self, direction: Direction) -> bool {
        match direction {
            Direction::Read => self.read,
            Direction::Write => self.write,
        }
    }
}

/// Arms a oneshot source for `Interest` in the poller. Called only under the source's waker
/// mutex (see the module docs); an error leaves the source as it was.
pub(crate) type Arm<'a> = &'a dyn Fn(Interest) -> io::Result<()>;

/// The readiness state of one registered source.
#[derive(Debug, Default)]
pub(crate) struct ScheduledIo {
    /// See the module docs for the layout.
    state: AtomicUsize,
    /// The waiting tasks and, for oneshot pollers, what the source is armed for.
    waiting: Mutex<Waiting>,
}

/// What [`ScheduledIo::waiting`] guards.
#[derive(Debug)]
struct Waiting {
    /// `[reader, writer]`: every task waiting in that direction (usually one; several tasks may
    /// wait on a shared source, such as a datagram socket), all woken by its next event.
    tasks: [Waiters; 2],
    /// Oneshot pollers only: the directions the source was last armed for, emptied when an
    /// event is handled (the poller disarmed it). Read and changed only together with the
    /// arming call, under this mutex.
    armed: Interest,
    /// Set once the registration left the poller: nothing arms the source after that.
    deregistered: bool,
}

impl Default for Waiting {
    fn default() -> Self {
        Waiting {
            tasks: Default::default(),
            // Registration adds the source for both directions.
            armed: Interest::BOTH,
            deregistered: false,
        }
    }
}

impl Waiting {
    /// The directions that have a waiting task.
    fn awaited(&self) -> Interest {
        Interest {
            read: !self.tasks[0].is_empty(),
            write: !self.tasks[1].is_empty(),
        }
    }
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

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.others.is_empty()
    }

    /// Takes every waker out, into `out`.
    fn drain_into(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.first.take());
        out.append(&mut self.others);
    }
}

impl ScheduledIo {
    /// Records readiness from the poller and wakes the directions that became ready. With
    /// `rearm` (a oneshot poller, which disarmed the source to report this event), arms the
    /// source again for the directions that still have waiters; if that fails, wakes them too,
    /// so that their next poll tries again instead of waiting on a source nothing watches.
    /// Returns how many wakers were woken.
    pub(crate) fn set_readiness(
        &self,
        readable: bool,
        writable: bool,
        read_closed: bool,
        rearm: Option<Arm<'_>>,
    ) -> usize {
        let readable = readable || read_closed;
        let bits = (if readable { READABLE } else { 0 })
            | (if writable { WRITABLE } else { 0 })
            | (if read_closed { READ_CLOSED } else { 0 });
        if bits == 0 && rearm.is_none() {
            return 0;
        }
        if bits != 0 {
            // AcqRel: Release publishes the readiness to pollers (Acquire in `poll_ready`);
            // Acquire orders it after earlier clears.
            let _ = self
                .state
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                    let tick = (current >> TICK_SHIFT).wrapping_add(1);
                    Some((tick << TICK_SHIFT) | (current & READY_MASK) | bits)
                });
        }
        let (reader, writer, others) = {
            let mut waiting = lock(&self.waiting);
            let tasks = &mut waiting.tasks;
            let mut others = Vec::new();
            let reader = if readable {
                tasks[0].first.take()
            } else {
                None
            };
            let writer = if writable {
                tasks[1].first.take()
            } else {
                None
            };
            // The common case, one task per direction, allocates nothing.
            if readable && !tasks[0].others.is_empty() {
                tasks[0].drain_into(&mut others);
            }
            if writable && !tasks[1].others.is_empty() {
                tasks[1].drain_into(&mut others);
            }
            if let Some(arm) = rearm {
                waiting.armed = Interest::default();
                let awaited = waiting.awaited();
                if !waiting.deregistered && !awaited.is_empty() {
                    match arm(awaited) {
                        Ok(()) => waiting.armed = awaited,
                        Err(_) => waiting
                            .tasks
                            .iter_mut()
                            .for_each(|w| w.drain_into(&mut others)),
                    }
                }
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

    /// Ready in `direction`, or parks `cx`'s waker for it. With `arm` (a oneshot poller), a
    /// task that parks in a direction the source is not armed for arms it for every awaited
    /// direction; if that fails, the task is woken at once to try again.
    pub(crate) fn poll_ready(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        arm: Option<Arm<'_>>,
    ) -> Poll<ReadyEvent> {
        if let Some(event) = self.ready_now(direction) {
            return Poll::Ready(event);
        }
        let mut waiting = lock(&self.waiting);
        waiting.tasks[usize::from(direction == Direction::Write)].park(cx.waker());
        // Re-check under the lock: a setter that ran before we parked is visible now; one that
        // runs after will find our waker.
        if let Some(event) = self.ready_now(direction) {
            return Poll::Ready(event);
        }
        if let Some(arm) = arm {
            if !waiting.armed.covers(direction) && !waiting.deregistered {
                let awaited = waiting.awaited();
                match arm(awaited) {
                    Ok(()) => waiting.armed = awaited,
                    Err(_) => cx.waker().wake_by_ref(),
                }
            }
        }
        Poll::Pending
    }

    /// Ready in `direction` now, without parking anything.
    pub(crate) fn ready_now(&self, direction: Direction) -> Option<ReadyEvent> {
        let bit = direction.bit();
        // Acquire: pairs with `set_readiness`.
        let current = self.state.load(Ordering::Acquire);
        (current & bit != 0).then_some(ReadyEvent {
            tick: current >> TICK_SHIFT,
            ready: current & bit,
        })
    }

    /// After `EAGAIN`: forgets the readiness `event` reported, and a closed (or failed) read
    /// direction with it — an operation that would block found nothing to report — unless a
    /// newer event arrived since.
    pub(crate) fn clear_readiness(&self, event: ReadyEvent) {
        let forget = if event.ready & READABLE != 0 {
            event.ready | READ_CLOSED
        } else {
            event.ready
        };
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |current| {
                (current >> TICK_SHIFT == event.tick).then_some(current & !forget)
            });
    }

    /// After a read that drained the source (a short read): forgets the readiness `event`
    /// reported, unless a newer event arrived since, or the read direction is closed (the end
    /// of stream that came with the data is still to be read).
    pub(crate) fn clear_drained(&self, event: ReadyEvent) {
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

    /// The source is leaving the poller: it is never armed again, and every waiting task is
    /// woken. Called before the source is deleted from the poller, so that an event the reactor
    /// is handling at the same time either arms the source while it is still registered or not
    /// at all.
    pub(crate) fn deregister(&self) {
        let mut woken = Vec::new();
        {
            let mut waiting = lock(&self.waiting);
            waiting.deregistered = true;
            for waiters in &mut waiting.tasks {
                waiters.drain_into(&mut woken);
            }
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
        io.set_readiness(true, false, false, None);
        let Poll::Ready(seen) = io.poll_ready(Direction::Read, &mut noop(), None) else {
            panic!("readable was set");
        };
        io.set_readiness(true, false, false, None); // arrives while the task was reading
        io.clear_readiness(seen);
        assert!(io.poll_ready(Direction::Read, &mut noop(), None).is_ready());
    }

    #[test]
    fn clear_forgets_consumed_readiness() {
        let io = ScheduledIo::default();
        io.set_readiness(true, true, false, None);
        let Poll::Ready(seen) = io.poll_ready(Direction::Read, &mut noop(), None) else {
            panic!("readable was set");
        };
        io.clear_readiness(seen);
        assert!(
            io.poll_ready(Direction::Read, &mut noop(), None)
                .is_pending()
        );
        assert!(
            io.poll_ready(Direction::Write, &mut noop(), None)
                .is_ready(),
            "other direction kept"
        );
    }

    #[test]
    fn a_closed_read_direction_stays_ready() {
        let io = ScheduledIo::default();
        // The last data and the peer's end of stream in one event.
        io.set_readiness(true, false, true, None);
        let Poll::Ready(seen) = io.poll_ready(Direction::Read, &mut noop(), None) else {
            panic!("readable was set");
        };
        // A short read drained the data and clears what it saw...
        io.clear_drained(seen);
        // ...but the end of stream is still there to be read.
        let Poll::Ready(seen) = io.poll_ready(Direction::Read, &mut noop(), None) else {
            panic!("the closed read direction stays ready");
        };
        assert!(
            io.poll_ready(Direction::Write, &mut noop(), None)
                .is_pending()
        );
        // A read that would block (a datagram socket's error was taken by the read before)
        // found nothing to report: the read direction waits again, until a new event.
        io.clear_readiness(seen);
        assert!(
            io.poll_ready(Direction::Read, &mut noop(), None)
                .is_pending()
        );
        io.set_readiness(true, false, false, None);
        assert!(io.poll_ready(Direction::Read, &mut noop(), None).is_ready());
    }
}
