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
//! Wakes and [`Handle::spawn`] jobs go through the run queue (`runqueue` module, with a loom
//! model): a wake is never lost, and a wake while the driver runs costs no syscall.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use crate::Error;
use crate::driver::backend::{self, Backend, BackendReport};
use crate::driver::{Driver, Socket, Timers, Unparker};
use crate::runqueue::{Ready, RunQueue, Unpark};

/// The index the main (`block_on`) future uses in the run queue.
const MAIN: usize = usize::MAX;

thread_local! {
    static CONTEXT: RefCell<Option<Rc<Core>>> = const { RefCell::new(None) };
}

/// Configures a [`Runtime`].
#[derive(Debug, Clone)]
pub struct Builder {
    backend: Backend,
    ring_entries: u32,
    buffer_pool: weir_bufpool::Config,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            backend: Backend::Auto,
            ring_entries: 256,
            buffer_pool: crate::pooled::default_config(),
        }
    }
}

impl Builder {
    /// Which backend to use (default [`Backend::Auto`]; `WEIR_BACKEND` overrides `Auto`).
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// io_uring submission queue size (default 256).
    pub fn ring_entries(mut self, entries: u32) -> Self {
        self.ring_entries = entries;
        self
    }

    /// The buffer pool behind pooled reads (`read_pooled`, `recv_pooled`); default 512 buffers of
    /// 16 KiB, allocated on the first pooled read. It must not grow (on io_uring its buffers are
    /// registered with the kernel up front).
    pub fn buffer_pool(mut self, config: weir_bufpool::Config) -> Self {
        self.buffer_pool = config;
        self
    }

    /// Creates the runtime on this thread.
    ///
    /// # Errors
    ///
    /// [`Error::UringUnavailable`] if `Backend::Uring` was asked for and io_uring cannot be used;
    /// [`Error::BadBackendVariable`]; or the driver's setup failed.
    pub fn build(self) -> Result<Runtime, Error> {
        let report = backend::choose(self.backend)?;
        let driver = Driver::new(report.backend, self.ring_entries)?;
        let unpark = driver.unparker();
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Runtime {
            core: Rc::new(Core {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                driver,
                timers: RefCell::new(Timers::new()),
                tasks: RefCell::new(Vec::new()),
                free: RefCell::new(Vec::new()),
                queue: Arc::new(RunQueue::new(unpark)),
                scratch: RefCell::new(Ready::default()),
                report,
                pool_config: self.buffer_pool,
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

pub(crate) struct Core {
    /// Unique among the process's runtimes (a timer names the runtime whose heap holds it).
    pub(crate) id: u64,
    pub(crate) driver: Driver,
    pub(crate) timers: RefCell<Timers<Option<Waker>>>,
    tasks: RefCell<Vec<Slot>>,
    free: RefCell<Vec<usize>>,
    pub(crate) queue: Arc<Queue>,
    /// What a tick runs, swapped with the queue's so that ticking allocates nothing.
    scratch: RefCell<Ready>,
    report: BackendReport,
    pool_config: weir_bufpool::Config,
    /// The buffer pool (and provided ring) of pooled reads, made on first use.
    pooled: std::cell::OnceCell<crate::pooled::Pooled>,
}

impl Core {
    /// The runtime's buffer pool state, created on first use.
    pub(crate) fn pooled(&self) -> io::Result<&crate::pooled::Pooled> {
        crate::pooled::Pooled::get(&self.pooled, &self.pool_config, &self.driver)
    }
}

enum Slot {
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

struct TaskWaker {
    index: usize,
    queue: Arc<Queue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.index);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.index);
    }
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
        let _reset = ResetContext;
        let mut fut = std::pin::pin!(fut);
        let main_waker = Waker::from(Arc::new(TaskWaker {
            index: MAIN,
            queue: self.core.queue.clone(),
        }));
        let mut main_ready = true;
        loop {
            if main_ready {
                crate::coop::reset();
                if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&main_waker)) {
                    return out;
                }
            }
            main_ready = false;
            let mut batch = std::mem::take(&mut *self.core.scratch.borrow_mut());
            self.core.queue.take_all(&mut batch);
            // Jobs from other threads first: they spawn the tasks they carry.
            batch.jobs.drain(..).for_each(|job| job());
            for index in batch.tasks.drain(..) {
                if index == MAIN {
                    main_ready = true;
                } else {
                    self.core.run_task(index);
                }
            }
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
}

struct ResetContext;

impl Drop for ResetContext {
    fn drop(&mut self) {
        CONTEXT.with(|c| c.borrow_mut().take());
    }
}

impl Core {
    fn park(&self) {
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

    fn fire_timers(&self) {
        let mut due = Vec::new();
        self.timers
            .borrow_mut()
            .fire_due(Instant::now(), |waker| due.extend(waker));
        due.into_iter().for_each(Waker::wake);
    }

    fn run_task(self: &Rc<Self>, index: usize) {
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

    fn insert_task(&self, fut: Pin<Box<dyn Future<Output = ()>>>) -> usize {
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

    fn abort_task(&self, index: usize) {
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
pub(crate) fn socket(fd: std::os::fd::OwnedFd) -> io::Result<Socket> {
    try_current().ok_or_else(no_runtime)?.driver.socket(fd)
}

/// This thread's runtime pool and the driver's view of it, for pooled reads.
pub(crate) fn pooled() -> io::Result<(weir_bufpool::Pool, crate::driver::Provided)> {
    let core = try_current().ok_or_else(no_runtime)?;
    let pooled = core.pooled()?;
    Ok((pooled.pool.clone(), pooled.provided.clone()))
}

/// Spawns `fut` on this thread's runtime; it runs alongside the `block_on` future.
///
/// `!Send` futures are welcome: a task never leaves its thread.
///
/// # Panics
///
/// Outside [`Runtime::block_on`].
pub fn spawn<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let core = current();
    let state = Rc::new(RefCell::new(JoinState {
        output: None,
        done: false,
        waker: None,
    }));
    let task_state = state.clone();
    let task = async move {
        let guard = CompleteOnDrop(task_state.clone());
        let out = fut.await;
        task_state.borrow_mut().output = Some(out);
        drop(guard);
    };
    let index = core.insert_task(Box::pin(task));
    JoinHandle {
        state,
        index,
        core: Rc::downgrade(&core),
    }
}

/// Marks the join state done however the task ends (output, panic, abort).
struct CompleteOnDrop<T>(Rc<RefCell<JoinState<T>>>);

impl<T> Drop for CompleteOnDrop<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.borrow_mut();
            state.done = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

struct JoinState<T> {
    output: Option<T>,
    done: bool,
    waker: Option<Waker>,
}

/// Why a task produced no output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// It was aborted, or it panicked (the panic is caught and the task dropped).
    #[error("the task was aborted or panicked")]
    Cancelled,
}

/// Awaits a spawned task's output. Dropping it detaches the task (it keeps running).
pub struct JoinHandle<T> {
    state: Rc<RefCell<JoinState<T>>>,
    index: usize,
    core: Weak<Core>,
}

impl<T> JoinHandle<T> {
    /// Stops the task: its future is dropped (at once, or when its current poll returns).
    pub fn abort(&self) {
        if self.state.borrow().done {
            return;
        }
        if let Some(core) = self.core.upgrade() {
            core.abort_task(self.index);
        }
    }

    /// `true` once the task has ended.
    pub fn is_finished(&self) -> bool {
        self.state.borrow().done
    }
}

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.state.borrow_mut();
        if state.done {
            return Poll::Ready(state.output.take().ok_or(JoinError::Cancelled));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("finished", &self.is_finished())
            .finish()
    }
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

/// Yields once to the other tasks and the driver.
pub async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// A `Send + Sync` handle to a [`Runtime`]: spawns onto it from any thread, waking it if it is
/// blocked.
///
/// # Examples
///
/// ```
/// let rt = weir_net::Runtime::new().expect("runtime");
/// let handle = rt.handle();
/// let answer = std::thread::spawn(move || {
///     // Built on the runtime's thread, so the future itself need not be `Send`.
///     handle.spawn(|| async { std::rc::Rc::new(40).as_ref() + 2 })
/// })
/// .join()
/// .expect("thread");
/// assert_eq!(rt.block_on(answer), Ok(42));
/// ```
#[derive(Clone)]
pub struct Handle {
    queue: Arc<Queue>,
}

impl Runtime {
    /// A handle for spawning onto this runtime from other threads.
    pub fn handle(&self) -> Handle {
        Handle {
            queue: self.core.queue.clone(),
        }
    }
}

impl Handle {
    /// Runs `make` on the runtime's thread and spawns the future it returns there. The returned
    /// handle (`Send`) resolves to the output, or to [`JoinError::Cancelled`] if the task was
    /// aborted, panicked, or the runtime was dropped before running it.
    pub fn spawn<M, F>(&self, make: M) -> RemoteJoinHandle<F::Output>
    where
        M: FnOnce() -> F + Send + 'static,
        F: Future + 'static,
        F::Output: Send + 'static,
    {
        let state = Arc::new(Mutex::new(RemoteState {
            output: None,
            done: false,
            waker: None,
        }));
        // Dropped unrun (runtime gone) or run to the end, the guard marks the handle done.
        let guard = RemoteGuard(state.clone());
        self.queue.push_job(Box::new(move || {
            let fut = make();
            drop(spawn(async move {
                let out = fut.await;
                guard.finish(out);
            }));
        }));
        RemoteJoinHandle { state }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

struct RemoteState<T> {
    output: Option<T>,
    done: bool,
    waker: Option<Waker>,
}

struct RemoteGuard<T>(Arc<Mutex<RemoteState<T>>>);

impl<T> RemoteGuard<T> {
    fn finish(self, out: T) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).output = Some(out);
    }
}

impl<T> Drop for RemoteGuard<T> {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.0.lock().unwrap_or_else(|p| p.into_inner());
            state.done = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// Awaits the output of a task spawned through a [`Handle`]; `Send`, awaitable anywhere.
/// Dropping it detaches the task.
pub struct RemoteJoinHandle<T> {
    state: Arc<Mutex<RemoteState<T>>>,
}

impl<T> Future for RemoteJoinHandle<T> {
    type Output = Result<T, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.done {
            return Poll::Ready(state.output.take().ok_or(JoinError::Cancelled));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T> fmt::Debug for RemoteJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJoinHandle").finish_non_exhaustive()
    }
}

/// Worker threads, each with its own [`Runtime`] (thread-per-core), fed through [`Handle`]s.
/// Dropping it (or [`shutdown`](Workers::shutdown)) stops the workers and joins them; their
/// tasks are dropped.
///
/// # Examples
///
/// ```
/// let workers = weir_net::Runtime::builder().build_workers(2).expect("workers");
/// let answers: Vec<_> = (0..2)
///     .map(|i| workers.handle(i).spawn(move || async move { i * 10 }))
///     .collect();
/// let rt = weir_net::Runtime::new().expect("runtime");
/// for (i, answer) in answers.into_iter().enumerate() {
///     assert_eq!(rt.block_on(answer), Ok(i * 10));
/// }
/// workers.shutdown();
/// ```
pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stop: weir_shutdown::Token,
}

impl Builder {
    /// Starts `n` worker threads, each running a runtime built with this configuration.
    ///
    /// # Errors
    ///
    /// As [`build`](Builder::build), for the first worker that fails (the others are stopped);
    /// or a thread could not be started.
    pub fn build_workers(self, n: usize) -> Result<Workers, Error> {
        let stop = weir_shutdown::Token::new();
        let mut workers = Workers {
            handles: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
            stop: stop.clone(),
        };
        for index in 0..n {
            let (tx, rx) = std::sync::mpsc::channel();
            let builder = self.clone();
            let stop = stop.clone();
            let thread = std::thread::Builder::new()
                .name(format!("weir-worker-{index}"))
                .spawn(move || match builder.build() {
                    Ok(rt) => {
                        let _ = tx.send(Ok(rt.handle()));
                        rt.block_on(stop.cancelled());
                    }
                    Err(error) => drop(tx.send(Err(error))),
                })?;
            workers.threads.push(thread);
            match rx.recv() {
                Ok(Ok(handle)) => workers.handles.push(handle),
                Ok(Err(error)) => return Err(error),
                Err(_) => {
                    return Err(io::Error::other("a worker thread exited during start-up").into());
                }
            }
        }
        Ok(workers)
    }
}

impl Workers {
    /// The handle of worker `index`.
    ///
    /// # Panics
    ///
    /// If `index >= self.len()`.
    pub fn handle(&self, index: usize) -> &Handle {
        &self.handles[index]
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// `true` if there are no workers.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Stops every worker and waits for its thread.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for Workers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.handles.len())
            .finish()
    }
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
        // Drop the tasks (and the I/O they own) while the driver still exists.
        let tasks = std::mem::take(&mut *self.core.tasks.borrow_mut());
        drop(tasks);
        // The dropped tasks' operations were cancelled; let the driver finish them.
        self.core.driver.finish();
    }
}
