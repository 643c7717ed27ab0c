//! The executor: the task slab, the run queue's wakers, ticking and parking.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

use crate::driver::backend::BackendReport;
use crate::driver::{Driver, Timers, Unparker};
use crate::runqueue::{Queued, Ready, RunQueue, Unpark};

/// The index the main (`block_on`) future uses in the run queue.
pub(crate) const MAIN: usize = usize::MAX;
/// `Core::running` when no task is being polled.
pub(super) const NONE: usize = usize::MAX - 1;

pub(crate) struct Core {
    /// Unique among the process's runtimes (a timer names the runtime whose heap holds it).
    pub(crate) id: u64,
    pub(crate) driver: Driver,
    pub(crate) timers: RefCell<Timers<Option<Waker>>>,
    /// The wakers of the timers one tick fires, kept between ticks so firing allocates nothing.
    pub(super) due: RefCell<Vec<Waker>>,
    pub(super) tasks: RefCell<Vec<Slot>>,
    pub(super) free: RefCell<Vec<usize>>,
    /// The task being polled (`NONE` between polls), to free its slot if its poll panics.
    pub(super) running: Cell<usize>,
    pub(crate) queue: Arc<Queue>,
    /// What a tick runs, swapped with the queue's so that ticking allocates nothing.
    pub(super) scratch: RefCell<Ready>,
    pub(super) report: BackendReport,
    pub(super) pool_config: weir_bufpool::Config,
    /// Stream reads on the ring take from a multishot receive (`Builder::multishot_reads`).
    pub(super) multishot_reads: bool,
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
    /// The task, its waker's state and the waker (made once per task, not per poll).
    Present(Pin<Box<dyn Future<Output = ()>>>, Arc<TaskWaker>, Waker),
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

pub(crate) struct TaskWaker {
    index: usize,
    /// The runtime's id: a wake on the thread where that runtime runs goes to `LOCAL`.
    runtime: u64,
    /// Set while the task is queued, so a task woken many times is queued once.
    queued: Queued,
    queue: Arc<Queue>,
}

impl TaskWaker {
    pub(super) fn new(index: usize, core: &Core) -> Arc<TaskWaker> {
        Arc::new(TaskWaker {
            index,
            runtime: core.id,
            queued: Queued::new(),
            queue: core.queue.clone(),
        })
    }

    /// Called just before the task is polled: a wake from now on queues it again.
    pub(super) fn polling(&self) {
        self.queued.polling();
    }

    fn schedule(&self) {
        if !self.queued.wake() {
            return;
        }
        // On the runtime's own thread no lock and no unpark are needed: the thread is running
        // and takes `LOCAL` at its next tick. Elsewhere the run queue's protocol applies.
        let local = LOCAL
            .try_with(|local| local.push(self.runtime, self.index))
            .unwrap_or(false);
        if !local {
            self.queue.push(self.index);
        }
    }
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.schedule();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}

/// The tasks woken on a runtime's own thread, while that runtime runs there.
pub(super) struct Local {
    /// The id of the runtime in `block_on` on this thread; 0 when none.
    runtime: Cell<u64>,
    ready: RefCell<VecDeque<usize>>,
}

thread_local! {
    pub(super) static LOCAL: Local = const {
        Local {
            runtime: Cell::new(0),
            ready: RefCell::new(VecDeque::new()),
        }
    };
}

impl Local {
    fn push(&self, runtime: u64, index: usize) -> bool {
        if self.runtime.get() != runtime {
            return false;
        }
        match self.ready.try_borrow_mut() {
            Ok(mut ready) => {
                ready.push_back(index);
                true
            }
            Err(_) => false,
        }
    }

    /// Marks `runtime` as the one running on this thread (`0`: none), forgetting stale wakes.
    /// The queue gets its room here, so the first local wake of a busy loop allocates nothing.
    pub(super) fn enter(&self, runtime: u64) {
        self.runtime.set(runtime);
        let mut ready = self.ready.borrow_mut();
        ready.clear();
        if runtime != 0 {
            ready.reserve(crate::runqueue::READY_ROOM);
        }
    }

    /// Appends the locally woken tasks to `into`. Copied, not swapped: each queue keeps the
    /// capacity it grew to, so steady traffic never finds a smaller one and grows it again.
    pub(super) fn take_into(&self, into: &mut VecDeque<usize>) {
        into.extend(self.ready.borrow_mut().drain(..));
    }

    fn is_empty(&self) -> bool {
        self.ready.borrow().is_empty()
    }
}

impl Core {
    pub(super) fn park(&self) {
        if !LOCAL.with(Local::is_empty) {
            // Tasks woken on this thread are ready: turn without blocking.
            if let Err(error) = self.driver.turn(Some(Duration::ZERO)) {
                self.driver_failed(&error);
            }
            return;
        }
        let next = self.timers.borrow().next_deadline();
        let timeout = next.map(|deadline| deadline.saturating_duration_since(Instant::now()));
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
            self.driver_failed(&error);
        }
    }

    fn driver_failed(&self, error: &io::Error) {
        // A failing driver would otherwise spin; report it and back off briefly.
        crate::event!(ERROR, "weir: driver turn failed: {error}");
        std::thread::sleep(Duration::from_millis(1));
    }

    pub(super) fn fire_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        // Taken out while the wakers run: a waker may do anything, even fire timers again.
        let mut due = std::mem::take(&mut *self.due.borrow_mut());
        self.timers
            .borrow_mut()
            .fire_due(Instant::now(), |waker| due.extend(waker));
        due.drain(..).for_each(Waker::wake);
        *self.due.borrow_mut() = due;
    }

    /// Polls task `index` once. A panic unwinds out of here (the tick catches it once for all
    /// its tasks, see `Runtime::block_on`) with the slot left `Running`: [`Core::forget_running`]
    /// frees it.
    pub(super) fn run_task(self: &Rc<Self>, index: usize) {
        let taken = {
            let mut tasks = self.tasks.borrow_mut();
            match tasks.get_mut(index) {
                Some(slot @ Slot::Present(..)) => std::mem::replace(slot, Slot::Running),
                _ => return,
            }
        };
        let Slot::Present(mut fut, state, waker) = taken else {
            return;
        };
        self.running.set(index);
        state.polling();
        crate::coop::reset();
        let polled = fut.as_mut().poll(&mut Context::from_waker(&waker));
        self.running.set(NONE);
        let mut tasks = self.tasks.borrow_mut();
        let finished = polled.is_ready() || matches!(tasks[index], Slot::Aborted);
        if finished {
            tasks[index] = Slot::Vacant;
            drop(tasks);
            self.free.borrow_mut().push(index);
            drop(fut); // may run destructors that touch the runtime: no borrow held
        } else {
            tasks[index] = Slot::Present(fut, state, waker);
        }
    }

    /// After a task's poll panicked: its future was dropped by the unwind; free its slot.
    pub(super) fn forget_running(&self) {
        let index = self.running.replace(NONE);
        if index == NONE {
            return;
        }
        let mut tasks = self.tasks.borrow_mut();
        if let Some(slot @ (Slot::Running | Slot::Aborted)) = tasks.get_mut(index) {
            *slot = Slot::Vacant;
            drop(tasks);
            self.free.borrow_mut().push(index);
        }
    }

    pub(super) fn insert_task(&self, fut: Pin<Box<dyn Future<Output = ()>>>) -> usize {
        let reused = self.free.borrow_mut().pop();
        let index = reused.unwrap_or_else(|| self.tasks.borrow().len());
        let state = TaskWaker::new(index, self);
        let waker = Waker::from(state.clone());
        let mut tasks = self.tasks.borrow_mut();
        match reused {
            Some(index) => tasks[index] = Slot::Present(fut, state, waker.clone()),
            None => tasks.push(Slot::Present(fut, state, waker.clone())),
        }
        drop(tasks);
        waker.wake();
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
