//! The run queue between wakers (any thread) and the runtime's thread: task indices to poll,
//! jobs sent by [`Handle`](crate::Handle)s, and the park protocol that never loses a wake-up.
//!
//! # The protocol
//!
//! ```text
//!  waker / Handle (any thread)            runtime thread
//!  ───────────────────────────            ──────────────
//!  lock; push index or job; unlock        parked ← true            (SeqCst)
//!  if parked (SeqCst): unpark()           lock; empty? unlock      → block in the driver
//!                                                      otherwise   → turn without blocking
//!                                         parked ← false
//! ```
//!
//! The pusher writes under the lock and then reads `parked`; the runtime writes `parked` and
//! then reads under the same lock. Whichever comes second sees the other's write, so either the
//! runtime finds the item before blocking or the pusher unparks it. A push from the runtime's
//! own thread never unparks (the thread is running). The loom model in
//! `tests/loom_runqueue.rs` checks this with a blocking unparker.

use std::collections::VecDeque;

#[cfg(all(test, weir_loom))]
use loom::{
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread::{ThreadId, current as current_thread},
};
#[cfg(not(all(test, weir_loom)))]
use std::{
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread::{ThreadId, current as current_thread},
};

/// A job sent from another thread: it runs on the runtime's thread (and usually spawns a task).
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// Wakes a runtime blocked in its driver.
pub(crate) trait Unpark: Send + Sync {
    fn unpark(&self);
}

/// What is waiting for the runtime's thread.
#[derive(Default)]
pub(crate) struct Ready {
    pub(crate) tasks: VecDeque<usize>,
    pub(crate) jobs: Vec<Job>,
    /// The runtime is gone: jobs are dropped instead of queued.
    closed: bool,
}

/// Woken tasks a run queue holds before it grows: a loop whose first wake comes late (every
/// operation completing at once until then) must not allocate at that wake.
pub(crate) const READY_ROOM: usize = 64;

impl Ready {
    /// Room for `tasks` woken tasks before the first wake has to grow the queue.
    pub(crate) fn with_capacity(tasks: usize) -> Ready {
        Ready {
            tasks: VecDeque::with_capacity(tasks),
            ..Ready::default()
        }
    }
}

pub(crate) struct RunQueue<U> {
    ready: Mutex<Ready>,
    parked: AtomicBool,
    unpark: U,
    /// The runtime's thread: a push from it never needs an unpark.
    owner: ThreadId,
}

impl<U: Unpark> RunQueue<U> {
    pub(crate) fn new(unpark: U) -> Self {
        RunQueue {
            // The queue and the executor's batch swap buffers at every tick: both get room.
            ready: Mutex::new(Ready::with_capacity(READY_ROOM)),
            parked: AtomicBool::new(false),
            unpark,
            owner: current_thread().id(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ready> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues task `index` (a wake-up).
    pub(crate) fn push(&self, index: usize) {
        let mut ready = self.lock();
        // A task already queued need not be queued twice (bounded scan).
        if ready.tasks.len() > 64 || !ready.tasks.contains(&index) {
            ready.tasks.push_back(index);
        }
        drop(ready);
        self.unpark_if_parked();
    }

    /// Queues a job from another thread; drops it (outside the lock) if the runtime is gone.
    pub(crate) fn push_job(&self, job: Job) {
        let mut ready = self.lock();
        if ready.closed {
            drop(ready);
            drop(job);
            return;
        }
        ready.jobs.push(job);
        drop(ready);
        self.unpark_if_parked();
    }

    /// Refuses further jobs and drops the queued ones (the runtime is shutting down).
    pub(crate) fn close(&self) {
        let jobs = {
            let mut ready = self.lock();
            ready.closed = true;
            std::mem::take(&mut ready.jobs)
        };
        drop(jobs);
    }

    fn unpark_if_parked(&self) {
        // SeqCst: see the module docs (the lock orders it against the runtime's check).
        if self.parked.load(Ordering::SeqCst) && current_thread().id() != self.owner {
            self.unpark.unpark();
        }
    }

    /// Moves everything queued into `into` (which must be empty), keeping both allocations.
    pub(crate) fn take_all(&self, into: &mut Ready) {
        let mut ready = self.lock();
        std::mem::swap(&mut ready.tasks, &mut into.tasks);
        std::mem::swap(&mut ready.jobs, &mut into.jobs);
    }

    /// Runs `block` if nothing is queued — the driver's blocking turn, which an `unpark` ends —
    /// else `turn` (the same without blocking).
    pub(crate) fn park<R>(&self, block: impl FnOnce() -> R, turn: impl FnOnce() -> R) -> R {
        self.parked.store(true, Ordering::SeqCst);
        let empty = {
            let ready = self.lock();
            ready.tasks.is_empty() && ready.jobs.is_empty()
        };
        let result = if empty { block() } else { turn() };
        self.parked.store(false, Ordering::SeqCst);
        result
    }
}

/// Whether a task is in a queue: a task woken many times before its next poll is queued once,
/// and a wake is never lost.
///
/// A wake sets the flag and queues the task only if it was clear; the runtime clears it just
/// before polling the task. Both are read-modify-writes with acquire-release ordering, so when
/// a wake finds the flag still set (and queues nothing), the runtime's clearing reads that wake's
/// write and the poll that follows sees everything the waker did before waking. The loom model
/// in `tests/loom_queued.rs` checks this.
pub(crate) struct Queued(AtomicBool);

impl Queued {
    /// A task that is not queued.
    pub(crate) fn new() -> Self {
        Queued(AtomicBool::new(false))
    }

    /// A wake: `true` if the caller must queue the task.
    pub(crate) fn wake(&self) -> bool {
        !self.0.swap(true, Ordering::AcqRel)
    }

    /// Called just before the task is polled: a wake from now on queues it again.
    pub(crate) fn polling(&self) {
        self.0.swap(false, Ordering::AcqRel);
    }
}
