//! The executor: the task slab, the run queue's wakers, ticking and parking.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::driver::backend::BackendReport;
use crate::driver::{Driver, Timers, Unparker};
use crate::runqueue::{Ready, RunQueue, Unpark};

/// The index the main (`block_on`) future uses in the run queue.
pub(crate) const MAIN: usize = usize::MAX;

pub(crate) struct Core {
    /// Unique among the process's runtimes (a timer names the runtime whose heap holds it).
    pub(crate) id: u64,
    pub(crate) driver: Driver,
    pub(crate) timers: RefCell<Timers<Option<Waker>>>,
    pub(super) tasks: RefCell<Vec<Slot>>,
    pub(super) free: RefCell<Vec<usize>>,
    pub(crate) queue: Arc<Queue>,
    /// What a tick runs, swapped with the queue's so that ticking allocates nothing.
    pub(super) scratch: RefCell<Ready>,
    pub(super) report: BackendReport,
    pub(super) pool_config: weir_bufpool::Config,
    /// The buffer pool (and provided ring) of pooled reads, made on first use.
    pub(super) pooled: std::cell::OnceCell<crate::pooled::Pooled>,
}

impl Core {
    /// The runtime's buffer pool state, created on first use.
    pub(crate) fn pooled(&self) -> io::Result<&crate::pooled::Pooled> {
        crate::pooled::Pooled::get(&self.pooled, &self.pool_config, &self.driver)
    }
}

pub(super) enum Slot {
    Vacant,
    /// The task and its waker (made once per task, not per poll).
    Present(Pin<Box<dyn Future<Output = ()>>>, Waker),
    /// Taken out while being polled.
    Running,
    /// Aborted while running: drop it when it comes back.
    Aborted,
}

pub(crate) type Queue = RunQueue<Unparker>;

impl Unpark for Unparker {
    fn unpark(&self) {
        Unparker::unpark(self);
    }
}

pub(super) struct TaskWaker {
    pub(super) index: usize,
    pub(super) queue: Arc<Queue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.index);
    }
}

impl Core {
    pub(super) fn park(&self) {
        let now = Instant::now();
        let timeout = self
            .timers
            .borrow()
            .next_deadline()
            .map(|deadline| deadline.saturating_duration_since(now));
        let timeout = match max_park() {
            Some(cap) => Some(timeout.map_or(cap, |t| t.min(cap))),
            None => timeout,
        };
        // The queue's protocol: see the `runqueue` module.
        let result = self.queue.park(
            || self.driver.turn(timeout),
            || self.driver.turn(Some(Duration::ZERO)),
        );
        if let Err(error) = result {
            // A failing driver would otherwise spin; report once and back off briefly.
            crate::log!("weir: driver turn failed: {error}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub(super) fn fire_timers(&self) {
        let mut due = Vec::new();
        self.timers
            .borrow_mut()
            .fire_due(Instant::now(), |waker| due.extend(waker));
        due.into_iter().for_each(Waker::wake);
    }

    pub(super) fn run_task(self: &Rc<Self>, index: usize) {
        let taken = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(index) {
                Some(slot @ Slot::Present(..)) => std::mem::replace(slot, Slot::Running),
                _ => return,
            }
        };
        let Slot::Present(mut fut, waker) = taken else {
            return;
        };
        let mut cx = Context::from_waker(&waker);
        crate::coop::reset();
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)));
        let mut tasks = self.tasks.borrow_mut();
        let finished =
            !matches!(polled, Ok(Poll::Pending)) || matches!(tasks[index], Slot::Aborted);
        if finished {
            tasks[index] = Slot::Vacant;
            drop(tasks);
            self.free.borrow_mut().push(index);
            drop(fut); // may run destructors that touch the runtime: no borrow held
        } else {
            tasks[index] = Slot::Present(fut, waker);
        }
    }

    pub(super) fn insert_task(&self, fut: Pin<Box<dyn Future<Output = ()>>>) -> usize {
        let reused = self.free.borrow_mut().pop();
        let index = reused.unwrap_or_else(|| self.tasks.borrow().len());
        let waker = Waker::from(Arc::new(TaskWaker {
            index,
            queue: self.queue.clone(),
        }));
        let mut tasks = self.tasks.borrow_mut();
        match reused {
            Some(index) => tasks[index] = Slot::Present(fut, waker),
            None => tasks.push(Slot::Present(fut, waker)),
        }
        drop(tasks);
        self.queue.push(index);
        index
    }

    pub(super) fn abort_task(&self, index: usize) {
        let removed = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(index) {
                Some(Slot::Running) => {
                    tasks[index] = Slot::Aborted;
                    None
                }
                Some(slot @ Slot::Present(..)) => Some(std::mem::replace(slot, Slot::Vacant)),
                _ => None,
            }
        };
        if let Some(slot) = removed {
            self.free.borrow_mut().push(index);
            drop(slot);
        }
    }
}

/// `WEIR_MAX_PARK_MS` caps how long a driver blocks in one turn. Checkers that run one thread
/// at a time and do not know `io_uring_enter` blocks (Valgrind) would otherwise never schedule
/// the thread that is about to wake it; `cargo xtask ci` sets it for the Valgrind step.
fn max_park() -> Option<Duration> {
    static CAP: std::sync::OnceLock<Option<Duration>> = std::sync::OnceLock::new();
    *CAP.get_or_init(|| {
        std::env::var("WEIR_MAX_PARK_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map(Duration::from_millis)
    })
}
