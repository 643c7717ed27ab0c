//! The runtime: one executor, one driver (ring or reactor) and one timer heap per thread.
//!
//! # Scheduling
//!
//! Tasks live in a slab on the runtime's thread; their wakers carry only the task's index and a
//! handle to the run queue, so they are `Send + Sync` and may wake a task from any thread. Each
//! tick runs the tasks that were ready when it began (tasks woken meanwhile wait for the next
//! tick), then turns the driver — without blocking if anything is ready, else until the next
//! timer or completion. So neither a task that keeps waking itself nor a flood of I/O can starve
//! the others or the driver.
//!
//! # Waking a parked driver, and other threads
//!
//! A wake on the runtime's own thread (a completion reaped by the driver, a task waking another)
//! goes to a thread-local queue: no lock, no atomic beyond the task's queued flag. Wakes from
//! other threads and [`Handle::spawn`] jobs go through the run queue (`runqueue` module, with a
//! loom model): a wake is never lost, and a wake while the driver runs costs no syscall. A task
//! woken many times before its next poll is queued once (`runqueue::Queued`, loom-checked too).
//!
//! A panic in a task's poll drops that task (its join handle reports
//! [`JoinError::Cancelled`]); the tick catches it once for all its polls and goes on.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::Error;
use crate::driver::backend::{self, Backend, BackendReport};
use crate::driver::{Driver, Socket, Timers};
use crate::runqueue::{Ready, RunQueue};

mod executor;
mod handle;
mod task;
mod workers;

pub(crate) use executor::{Core, Queue};
use executor::{MAIN, TaskWaker};
pub use handle::{Handle, RemoteJoinHandle};
pub use task::{JoinError, JoinHandle, spawn, yield_now};
pub use workers::Workers;

thread_local! {
    static CONTEXT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    backend: Backend,
    ring_entries: u32,
    buffer_pool: weir_bufpool::Config,
    multishot_reads: bool,
    sqpoll: Option<Duration>,
    send_zc_threshold: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            backend: Backend::Auto,
            ring_entries: 256,
            buffer_pool: crate::pooled::default_config(),
            multishot_reads: true,
            sqpoll: None,
            send_zc_threshold: usize::MAX,
        }
    }
}

impl Builder {
    /// Which backend to use (default [`Backend::Auto`]; `WEIR_BACKEND` overrides `Auto`).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// io_uring submission queue size, 1 to 32,768 (default 256). Under `Backend::Auto` a size
    /// outside that range falls back to the reactor (the backend report says why); with
    /// `Backend::Uring` it makes [`build`](Builder::build) fail with `InvalidInput`.
    pub fn ring_entries(mut self, entries: u32) -> Self {
        self.ring_entries = entries;
        self
    }

    /// The buffer pool behind pooled reads (`read_pooled`, `recv_pooled`); default 512 buffers of
    /// 16 KiB, allocated on the first pooled read. It must not grow (on io_uring its buffers are
    /// registered with the kernel up front) and holds at most 32,768 buffers (what a provided
    /// buffer ring can name); the first pooled read fails with `InvalidInput` otherwise.
    pub fn buffer_pool(mut self, config: weir_bufpool::Config) -> Self {
        self.buffer_pool = config;
        self
    }

    /// On the ring backend, stream reads (`read`, `read_exact`, the compatibility traits) take
    /// from one multishot receive per connection over the runtime's buffer pool, armed at the
    /// first read and kept armed: no submission per read, no buffer held by an idle connection,
    /// and a read that times out leaves the receive armed. On by default; `false` gives each
    /// read its own single-shot receive into the caller's buffer. No effect on the reactor.
    pub fn multishot_reads(mut self, on: bool) -> Self {
        self.multishot_reads = on;
        self
    }

    /// On the ring backend, lets a kernel thread poll the submission queue (`SQPOLL`), going to
    /// sleep after `idle` without work: while busy, submissions need no `io_uring_enter` at
    /// all. The thread takes a core of its own; off by default. No effect on the reactor.
    pub fn sqpoll(mut self, idle: Duration) -> Self {
        self.sqpoll = Some(idle);
        self
    }

    /// On the ring backend, stream sends (`write`, `write_all`, the compatibility traits) of at
    /// least `bytes` use `IORING_OP_SEND_ZC` where the kernel has it: the kernel transmits from
    /// the caller's buffer instead of copying it, and the buffer comes back after the kernel's
    /// notification that it let go, so a write waits for that too. Off by default
    /// (`usize::MAX`): over loopback a stream of 64 KiB zero-copy writes ran at 0.25 Gbit/s
    /// against 7-12 Gbit/s for plain sends (BENCHMARKS.md); worth measuring for large sends on
    /// a real NIC. No effect on the reactor.
    pub fn send_zc_threshold(mut self, bytes: usize) -> Self {
        self.send_zc_threshold = bytes;
        self
    }

    /// Creates the runtime on this thread.
    ///
    /// # Errors
    ///
    /// [`Error::UringUnavailable`] if `Backend::Uring` was asked for and io_uring cannot be used;
    /// [`Error::BadBackendVariable`]; or the driver's setup failed.
    pub fn build(self) -> Result<Runtime, Error> {
        let report = backend::choose(self.backend, self.ring_entries)?;
        let mut driver = Driver::new(report.backend, self.ring_entries, self.sqpoll)?;
        driver.set_zero_copy_from(self.send_zc_threshold);
        // No event loop runs until the first `block_on`.
        driver.set_detached(true);
        let unpark = driver.unparker();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Runtime {
            core: Rc::new(Core {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                driver,
                timers: RefCell::new(Timers::new()),
                due: RefCell::new(Vec::new()),
                tasks: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                running: std::cell::Cell::new(executor::NONE),
                queue: Arc::new(RunQueue::new(unpark)),
                // Room up front: a first wake in steady state must not allocate.
                scratch: RefCell::new(Ready::with_capacity(crate::runqueue::READY_ROOM)),
                report,
                pool_config: self.buffer_pool,
                multishot_reads: self.multishot_reads,
                pooled: std::cell::OnceCell::new(),
            }),
        })
    }
}

/// A single-threaded async runtime: an executor, a driver and timers.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// let rt = weir_net::Runtime::new().expect("runtime");
/// let answer = rt.block_on(async {
///     let task = weir_net::spawn(async { 40 + 2 });
///     weir_net::time::sleep(Duration::from_millis(1)).await;
///     task.await.expect("not aborted")
/// });
/// assert_eq!(answer, 42);
/// ```
pub struct Runtime {
    core: Rc<Core>,
}

impl Runtime {
    /// A runtime with the default settings.
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new() -> Result<Runtime, Error> {
        Builder::default().build()
    }

    /// Starts configuring a runtime.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// Which backend this runtime drives, and why.
    pub fn backend_report(&self) -> &BackendReport {
        &self.core.report
    }

    /// What this runtime's driver tracks now: on io_uring, the operations in flight (including
    /// cancelled ones waiting for their final completion; a listener's armed accept and a
    /// connection's armed receive count); on the reactor, the sockets registered with it. For
    /// monitoring, and for tests that check nothing was left behind: with every socket gone it
    /// falls back to what it was before they were made.
    pub fn driver_tracked(&self) -> usize {
        self.core.driver.tracked()
    }

    /// Buffers of the runtime's buffer pool lent to the kernel now: on io_uring, those in the
    /// provided buffer ring, waiting for receives to fill them; none on the reactor, or before
    /// the pool is first used. The pool counts them in use, so the pool's
    /// [`in_use`](weir_bufpool::Stats::in_use) less this is what the application (and data
    /// received but not yet read) holds: with every read done and every buffer dropped, zero.
    pub fn buffers_lent_to_kernel(&self) -> usize {
        self.core
            .pooled
            .get()
            .map_or(0, |pooled| pooled.provided.in_kernel())
    }

    /// Runs `fut` to completion on this thread, with the spawned tasks alongside.
    ///
    /// # Panics
    ///
    /// If called from inside another `block_on` on the same thread (a runtime cannot nest).
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        let previous = CONTEXT.with(|c| c.borrow_mut().replace(self.core.clone()));
        assert!(
            previous.is_none(),
            "weir: block_on cannot be nested on one thread"
        );
        self.core.driver.set_detached(false);
        // Declared before `fut`, so dropped after it: what the future's drop cancels is flushed.
        let _reset = ResetContext(&self.core);
        executor::LOCAL.with(|local| local.enter(self.core.id));
        let mut fut = std::pin::pin!(fut);
        let main_state = TaskWaker::new(MAIN, &self.core);
        let main_waker = Waker::from(main_state.clone());
        let mut main_ready = true;
        loop {
            if main_ready {
                main_state.polling();
                crate::coop::reset();
                if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&main_waker)) {
                    return out;
                }
            }
            let mut batch = std::mem::take(&mut *self.core.scratch.borrow_mut());
            self.core.queue.take_all(&mut batch);
            executor::LOCAL.with(|local| local.take_into(&mut batch.tasks));
            // Jobs from other threads first: they spawn the tasks they carry.
            batch.jobs.drain(..).for_each(|job| job());
            main_ready = self.run_batch(&mut batch.tasks);
            *self.core.scratch.borrow_mut() = batch;
            if main_ready {
                // Turn without blocking, so I/O still progresses while the main future is busy.
                let _ = self.core.driver.turn(Some(Duration::ZERO));
            } else {
                self.core.park();
            }
            self.core.fire_timers();
        }
    }

    /// Polls the tasks of one tick; returns whether the main future was among them. A task
    /// whose poll panics is dropped (its join handle reports `Cancelled`) and the tick goes on
    /// with the rest: one `catch_unwind` per tick, not per poll.
    fn run_batch(&self, tasks: &mut std::collections::VecDeque<usize>) -> bool {
        let mut main_ready = false;
        loop {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                while let Some(index) = tasks.pop_front() {
                    if index == MAIN {
                        main_ready = true;
                    } else {
                        self.core.run_task(index);
                    }
                }
            }));
            match ran {
                Ok(()) => return main_ready,
                Err(_) => self.core.forget_running(),
            }
        }
    }
}

/// Ends a `block_on`: the thread leaves the runtime, whose driver then flushes what is
/// cancelled while no event loop runs (see [`Driver::set_detached`]).
struct ResetContext<'a>(&'a Core);

impl Drop for ResetContext<'_> {
    fn drop(&mut self) {
        self.0.driver.set_detached(true);
        CONTEXT.with(|c| c.borrow_mut().take());
        let _ = executor::LOCAL.try_with(|local| local.enter(0));
        crate::coop::lift();
    }
}

/// The runtime running on this thread.
///
/// # Panics
///
/// Outside [`Runtime::block_on`]: sockets and timers need a runtime.
pub(crate) fn current() -> Rc<Core> {
    try_current()
        .unwrap_or_else(|| panic!("weir: this needs a runtime (call it inside Runtime::block_on)"))
}

pub(crate) fn try_current() -> Option<Rc<Core>> {
    CONTEXT.with(|c| c.borrow().clone())
}

/// The error of a socket or pool operation outside any runtime.
fn no_runtime() -> io::Error {
    io::Error::other("weir: this needs a runtime on this thread (call it inside Runtime::block_on)")
}

/// `fd` as a socket of this thread's runtime.
pub(crate) fn socket(fd: crate::sys::OwnedSock) -> io::Result<Socket> {
    try_current().ok_or_else(no_runtime)?.driver.socket(fd)
}

/// `fd` as a datagram socket of this thread's runtime, with its multishot receive where the
/// backend has one.
pub(crate) fn datagram_socket(
    fd: crate::sys::OwnedSock,
) -> io::Result<(Socket, Option<crate::driver::DatagramRecv>)> {
    let core = try_current().ok_or_else(no_runtime)?;
    Ok((core.driver.socket(fd)?, core.driver.datagram_recv()))
}

pub(crate) fn accepted_socket(accepted: crate::driver::Accepted) -> io::Result<Socket> {
    try_current()
        .ok_or_else(no_runtime)?
        .driver
        .accepted(accepted)
}

/// This thread's runtime pool and the driver's view of it, for pooled reads.
/// The pool and provided buffers for a stream's default multishot receive, if this thread's
/// runtime uses one (`Builder::multishot_reads`) and its pool could be set up.
pub(crate) fn multishot_pool() -> Option<(weir_bufpool::Pool, crate::driver::Provided)> {
    let core = try_current()?;
    if !core.multishot_reads {
        return None;
    }
    let pooled = core.pooled().ok()?;
    Some((pooled.pool.clone(), pooled.provided.clone()))
}

pub(crate) fn pooled() -> io::Result<(weir_bufpool::Pool, crate::driver::Provided)> {
    let core = try_current().ok_or_else(no_runtime)?;
    let pooled = core.pooled()?;
    Ok((pooled.pool.clone(), pooled.provided.clone()))
}

/// This thread's runtime buffer pool (the one pooled reads fill; see
/// [`Builder::buffer_pool`]), for taking buffers to write from or for its statistics. Buffers the
/// ring holds for incoming data count as in use.
///
/// # Errors
///
/// The pool could not be set up (allocation, registration with the ring).
///
/// # Panics
///
/// Outside [`Runtime::block_on`].
pub fn buffer_pool() -> io::Result<weir_bufpool::Pool> {
    Ok(current().pooled()?.pool.clone())
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("backend", &self.core.report)
            .finish_non_exhaustive()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Jobs sent by handles from now on are dropped, so their join handles resolve.
        self.core.queue.close();
        // The tasks' cancels are many: `finish` turns once for them all.
        self.core.driver.set_detached(false);
        // Drop the tasks (and the I/O they own) while the driver still exists.
        let tasks = std::mem::take(&mut *self.core.tasks.borrow_mut());
        drop(tasks);
        // The dropped tasks' operations were cancelled; let the driver finish them.
        self.core.driver.finish();
    }
}
