//! The ring: submission (the one place Weir pushes SQEs), turning, reaping, and teardown.
//!
//! # Memory ownership
//!
//! Every op's data (buffers, `sockaddr`s, `timespec`s) is boxed before its SQE is built, the SQE
//! points into that box, and the box goes into the [`OpTable`](crate::OpTable) before the SQE is
//! pushed. The box leaves the table only after the op's final CQE (see `lifecycle`), so
//! dropping a future early parks the box instead of freeing it. Dropping the last handle of the
//! ring cancels whatever is still in flight and waits (bounded) for the final CQEs; what the
//! kernel still holds after that is leaked on purpose and counted — never freed.
//!
//! # Threads
//!
//! The thread that builds a ring owns it: only the owner enters the kernel (so the ring can be
//! set up `SINGLE_ISSUER`), and only the owner ever waits on the `uring` lock. An op started on
//! any other thread parks its data in the op table as usual, but its SQE goes to the `remote`
//! queue and the owner is woken through the [`Notifier`](crate::Notifier); the owner pushes
//! remote SQEs at the start of its next turn, in order. A future dropped on another thread
//! queues its cancel the same way. Completions wake the op's task wherever it runs (wakers are
//! `Send`). A ring whose last handle is dropped on another thread goes to its owner, which tears
//! it down at its next turn or build, or when it exits (`orphan`).
//!
//! # Fork
//!
//! A forked child shares the parent's ring (the kernel instance and its mapped queues), so in
//! a child a ring built by the parent is never pushed to, entered, cancelled in or
//! unregistered from; its teardown frees only the child's copy of the op data (`Process`).

use crate::sync::unmodelled::{Arc, AtomicBool, AtomicU64, AtomicUsize, Once, Ordering};
use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::ptr::NonNull;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use io_uring::types::BufRingEntry;
use io_uring::{IoUring, opcode, squeue};

use crate::error::Error;
use crate::kernel::{Enter, Kernel, RawCqe};
use crate::lifecycle::{CQE_F_MORE, CompleteOutcome, Cqe, OpId, OpTable};
use crate::notify::{Notifier, NotifyShared};
use crate::setup::{ProbeReport, SetupFlag, SetupReport};
use crate::sync::{Mutex, lock};

/// How long dropping a ring waits for the kernel to finish cancelled ops before leaking their
/// memory.
const TEARDOWN_BOUND: Duration = Duration::from_secs(2);

/// How many times a push hands a full submission queue to the kernel before it fails the op
/// (`EBUSY`) instead of waiting forever.
const PUSH_ATTEMPTS: u32 = 1_000;

/// What an op leaves in the table while the kernel works: its data, and how to clean up a CQE
/// nobody will consume (close an accepted descriptor, recycle a provided buffer).
pub(crate) struct OpBox {
    pub(crate) data: Box<dyn Any + Send>,
    pub(crate) discard: fn(&mut (dyn Any + Send), Cqe),
    /// `false` while the op's SQE waits in another thread's queue for the owner: a probe for
    /// lost completions (`probe_if_lost`) must not ask the kernel about it, or its "not found"
    /// would pass for "done" and free what the SQE, pushed later, points to.
    in_kernel: bool,
    /// Drops the data and keeps its box for the next op of its type (`recycle`).
    recycle: fn(Box<dyn Any + Send>),
}

impl OpBox {
    pub(crate) fn new<T: Send + 'static>(
        data: Box<T>,
        discard: fn(&mut (dyn Any + Send), Cqe),
    ) -> OpBox {
        OpBox {
            data,
            discard,
            in_kernel: true,
            recycle: recycle_as::<T>,
        }
    }

    /// Takes the data out (an op's future consumes it); what is left drops as nothing.
    pub(crate) fn take_data(&mut self) -> Box<dyn Any + Send> {
        std::mem::replace(&mut self.data, Box::new(()))
    }
}

fn recycle_as<T: 'static>(data: Box<dyn Any + Send>) {
    if let Ok(data) = data.downcast::<T>() {
        drop(crate::recycle::unbox(data));
    }
}

impl Drop for OpBox {
    fn drop(&mut self) {
        // Only ever dropped after the op's final CQE (the op table's invariant), or taken.
        let data = self.take_data();
        (self.recycle)(data);
    }
}

pub(crate) fn discard_nothing(_: &mut (dyn Any + Send), _: Cqe) {}

/// Closes the descriptor a successful accept-like CQE carries.
pub(crate) fn discard_fd(_: &mut (dyn Any + Send), cqe: Cqe) {
    if cqe.result >= 0 {
        // SAFETY: a non-negative result of an accept is a new descriptor that nobody owns
        // (the future that would have adopted it is gone).
        unsafe { libc::close(cqe.result) };
    }
}

/// Counters a benchmark can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// SQEs pushed.
    pub sqes: u64,
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// CQEs reaped.
    pub cqes: u64,
    /// Times the completion queue overflowed into the kernel's overflow list (completions it
    /// had to buffer, `IORING_FEAT_NODROP`), counted once per episode; the ring flushes them.
    /// Ops in the kernel are bounded by the completion queue, so only multishot ops, which may
    /// post many completions each, can make it overflow.
    pub overflows: u64,
    /// Completions the kernel dropped (it could not buffer them: out of memory), from its
    /// cumulative count. The ops they belonged to never see them; nonzero means trouble.
    pub dropped: u64,
    /// Ops that waited in the ring for room in the completion queue before reaching the kernel.
    pub held: u64,
    /// Async cancels queued for dropped futures.
    pub cancels: u64,
    /// CQEs that matched no op.
    pub stale: u64,
    /// Ops whose memory was leaked at teardown because the kernel never finished them.
    pub leaked: u64,
    /// SQEs that came from threads other than the owner (pushed at the owner's next turn).
    pub remote_sqes: u64,
}

#[derive(Default)]
struct Stats {
    sqes: AtomicU64,
    enters: AtomicU64,
    cqes: AtomicU64,
    overflows: AtomicU64,
    dropped: AtomicU64,
    held: AtomicU64,
    cancels: AtomicU64,
    leaked: AtomicU64,
    remote_sqes: AtomicU64,
}

/// A number for the calling thread, unique for the life of the process (never 0).
fn this_thread() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        // Const-initialised (no lazy registration on each access); 0 until first asked.
        static ID: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }
    ID.with(|id| match id.get() {
        0 => {
            let new = NEXT.fetch_add(1, Ordering::Relaxed);
            id.set(new);
            new
        }
        known => known,
    })
}

/// Forks of this process that ran `fork(2)`'s handlers (`pthread_atfork(3)`), counted in the
/// child: a ring built before the count changed is the parent's.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork() {
    // Relaxed: the child has one thread at this point; the threads it starts later see it
    // through their spawn.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// The process a ring was built in. A forked child inherits the parent's ring: the same
/// kernel instance (its descriptor), and its queues mapped shared — so a child that pushed,
/// reaped, entered, cancelled or unregistered anything would do it to the parent's ring. Every
/// such path asks [`is_current`](Process::is_current) first; what the child holds of the ring
/// is its own copy of the op data (which the kernel never reads: it works in the parent's
/// memory), freed as ordinary memory.
#[derive(Clone, Copy)]
struct Process {
    pid: u32,
    forks: u64,
}

impl Process {
    fn current() -> Process {
        static WATCH: Once = Once::new();
        WATCH.call_once(|| {
            // SAFETY: `count_fork` is a plain `extern "C" fn` that only increments an atomic,
            // which is async-signal-safe, as a fork handler in a multithreaded process must be.
            // Registration fails only for lack of memory: forks then go uncounted, and
            // `is_current_exactly` still tells them apart at teardown.
            let _ = unsafe { libc::pthread_atfork(None, None, Some(count_fork)) };
        });
        Process {
            pid: std::process::id(),
            // Relaxed: see `count_fork`.
            forks: FORKS.load(Ordering::Relaxed),
        }
    }

    /// `false` in a forked child: one load, for the paths that run on every op or turn.
    fn is_current(self) -> bool {
        // Relaxed: see `count_fork`.
        FORKS.load(Ordering::Relaxed) == self.forks
    }

    /// As [`is_current`](Process::is_current), and asks the kernel for the process id too
    /// (a child made without the fork handlers, by a raw `clone(2)`): for teardown only.
    fn is_current_exactly(self) -> bool {
        self.is_current() && std::process::id() == self.pid
    }
}

/// The error of a ring used in a forked child.
fn inherited_ring() -> io::Error {
    io::Error::other(
        "weir-ring: this ring was inherited across fork(2) and belongs to the parent; build a \
         new one in the child",
    )
}

/// A handle to an io_uring instance. Clones share it; ops hold a clone until they are done.
///
/// The thread that built the ring owns it and drives it with [`turn`](Ring::turn). Ops may be
/// started, polled and dropped on any thread: from another thread, their submissions and
/// cancels reach the owner through a queue and a wake-up (module docs).
#[derive(Clone)]
pub struct Ring {
    /// Taken only in `Drop for Ring`, which decides where the ring is torn down.
    pub(crate) shared: ManuallyDrop<Arc<Shared>>,
}

pub(crate) struct Shared {
    /// Locked by the owner only (`this_thread() == owner`), so never contended.
    uring: Mutex<Kernel>,
    pub(crate) ops: OpTable<OpBox>,
    owner: u64,
    /// The process that built the ring: in any other (a forked child) the ring is left alone.
    process: Process,
    /// SQEs of ops started on other threads, for the owner's next turn, in order. `has_remote`
    /// says whether the owner needs to look.
    remote: Mutex<Vec<Submission>>,
    has_remote: AtomicBool,
    /// Cancels to submit at the next turn; `has_cancels` says whether there are any.
    pending_cancels: Mutex<Vec<u64>>,
    has_cancels: AtomicBool,
    /// Set while no turn is coming ([`Ring::set_detached`]): a cancel queued on the owner's
    /// thread is then flushed to the kernel at once.
    detached: AtomicBool,
    /// Set during such a flush, so a drop it runs does not start another.
    flushing: AtomicBool,
    /// `IORING_SETUP_DEFER_TASKRUN` is on: completion work runs only in an enter that asks for
    /// completions (`IORING_ENTER_GETEVENTS`), so even a non-blocking turn asks.
    defer_taskrun: bool,
    notify: Arc<NotifyShared>,
    /// The `user_data` of the read of the notifier's eventfd while it is armed (armed while a
    /// turn may block), or `NO_WAKE_READ`. Only the owner touches it.
    wake_read: AtomicU64,
    /// Set by a reap that took the wake-up read's CQE, so a turn looks for it only then.
    wake_read_done: AtomicBool,
    /// The wakers a turn collects, kept between turns so that turning allocates nothing.
    wake_buf: Mutex<Vec<Waker>>,
    /// Op data whose final CQE a reap took, dropped only once `uring` is unlocked
    /// ([`release_reaped`](Shared::release_reaped)): dropping it can run code that takes `uring`
    /// again (the last handle of a buffer group unregisters it), which under the lock would
    /// deadlock. Only the owner touches it; the storage is kept between turns.
    reaped: Mutex<Vec<OpBox>>,
    /// `reaped` holds op data (set under its lock), so a release with nothing to drop takes no
    /// lock.
    has_reaped: AtomicBool,
    /// Completions owed by the SQEs in the kernel: one per SQE pushed until its CQE without
    /// `F_MORE` is reaped. Only the owner touches it (under `uring`).
    owed: AtomicUsize,
    /// The most completions ops may owe at once: the completion queue's size, less one entry
    /// for the wake-up read. An op that would owe more waits in `held` (in order) until reaps
    /// make room, so the completion queue cannot overflow from single-shot ops. (An op is let
    /// through whatever the bound when nothing is owed, so a tiny ring still makes progress.)
    owed_limit: usize,
    /// Ops waiting for room (see `owed_limit`), pushed in order at the start of each turn.
    /// Only the owner touches it.
    held: Mutex<VecDeque<Submission>>,
    /// `held` is not empty (kept under its lock), so a push or a turn with nothing held takes
    /// no lock for it.
    has_held: AtomicBool,
    /// What the kernel's completion queue told the last reap (see [`OverflowWatch`]).
    overflow_watch: OverflowWatch,
    /// Set by a reap that found completions lost (the kernel dropped them): their ops would
    /// wait forever, so the ring probes every op in the kernel (`probe_if_lost`).
    lost: AtomicBool,
    /// Fault injection ([`Ring::inject_lost_completions`]): op completions the next reaps
    /// discard as if the kernel had dropped them.
    inject_lost: AtomicUsize,
    setup: SetupReport,
    probe: ProbeReport,
    stats: Stats,
}

/// Tags a probe's cancel with the op it asks about (`probe_if_lost`): bit 31 of the index half
/// of `user_data`, which no op has (a table never holds 2^31 entries). `u64::MAX` (the SQEs that
/// carry no op) has it too, and is told apart first.
const PROBE: u64 = 1 << 31;

/// `wake_read` when no wake-up read is armed (`u64::MAX` is never an op's `user_data`).
const NO_WAKE_READ: u64 = u64::MAX;

/// One op's SQEs: one, or an op and its linked timeout (adjacent in the queue).
enum Submission {
    One(squeue::Entry),
    Linked([squeue::Entry; 2]),
}

impl Submission {
    fn entries(&self) -> &[squeue::Entry] {
        match self {
            Submission::One(entry) => std::slice::from_ref(entry),
            Submission::Linked(pair) => pair,
        }
    }
}

/// The eventfd read that wakes a blocked turn: the descriptor and the 8 bytes it reads.
struct WakeRead {
    fd: Arc<std::os::fd::OwnedFd>,
    counter: [u8; 8],
}

impl Ring {
    /// A ring with the default settings (256 entries, no SQPOLL).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`](crate::Builder::build).
    pub fn new() -> Result<Ring, Error> {
        crate::Builder::default().build()
    }

    /// Starts configuring a ring.
    pub fn builder() -> crate::Builder {
        crate::Builder::default()
    }

    pub(crate) fn from_uring(
        uring: IoUring,
        flags: Vec<SetupFlag>,
        sqpoll: bool,
    ) -> Result<Ring, Error> {
        let probe = crate::setup::check_and_probe(&uring)?;
        let params = uring.params();
        let setup = SetupReport {
            sq_entries: params.sq_entries(),
            cq_entries: params.cq_entries(),
            flags,
            sqpoll,
        };
        Ring::from_kernel(Kernel::Real(uring), setup, probe)
    }

    /// A ring over `kernel`, whose queues `setup` describes.
    pub(crate) fn from_kernel(
        kernel: Kernel,
        setup: SetupReport,
        probe: ProbeReport,
    ) -> Result<Ring, Error> {
        // The ring's descriptor is not registered (`IORING_REGISTER_RING_FDS`): a registration
        // keeps the ring's file in the thread's table until it is unregistered or the thread
        // exits, so a dropped ring would live on in the kernel (its SQPOLL thread too), and the
        // index it returns would have to be kept by every `io_uring_enter`.
        let owner = this_thread();
        let defer_taskrun = setup.flags.contains(&SetupFlag::DeferTaskrun);
        crate::orphan::register_owner(owner);
        crate::orphan::collect(owner);
        Ok(Ring::from_shared(Arc::new(Shared {
            uring: Mutex::new(kernel),
            ops: OpTable::new(),
            owner,
            process: Process::current(),
            remote: Mutex::new(Vec::new()),
            has_remote: AtomicBool::new(false),
            pending_cancels: Mutex::new(Vec::new()),
            has_cancels: AtomicBool::new(false),
            detached: AtomicBool::new(false),
            flushing: AtomicBool::new(false),
            defer_taskrun,
            notify: Arc::new(NotifyShared::new()?),
            wake_read: AtomicU64::new(NO_WAKE_READ),
            wake_read_done: AtomicBool::new(false),
            wake_buf: Mutex::new(Vec::new()),
            reaped: Mutex::new(Vec::new()),
            has_reaped: AtomicBool::new(false),
            owed: AtomicUsize::new(0),
            owed_limit: usize::try_from(setup.cq_entries)
                .unwrap_or(usize::MAX)
                .saturating_sub(1)
                .max(1),
            held: Mutex::new(VecDeque::new()),
            has_held: AtomicBool::new(false),
            overflow_watch: OverflowWatch::default(),
            lost: AtomicBool::new(false),
            inject_lost: AtomicUsize::new(0),
            setup,
            probe,
            stats: Stats::default(),
        })))
    }

    /// A handle to `shared`.
    pub(crate) fn from_shared(shared: Arc<Shared>) -> Ring {
        Ring {
            shared: ManuallyDrop::new(shared),
        }
    }

    /// What the setup got.
    pub fn setup(&self) -> &SetupReport {
        &self.shared.setup
    }

    /// Which opcodes exist.
    pub fn probe(&self) -> &ProbeReport {
        &self.shared.probe
    }

    /// Ops in flight (including cancelled ones waiting for their final CQE), not counting the
    /// ring's own wake-up read.
    pub fn in_flight(&self) -> usize {
        let own = usize::from(self.shared.wake_read.load(Ordering::Relaxed) != NO_WAKE_READ);
        self.shared.ops.len().saturating_sub(own)
    }

    /// `true` on the thread that owns (built) the ring.
    pub fn is_owner(&self) -> bool {
        this_thread() == self.shared.owner
    }

    /// A handle that wakes the owner's [`turn`](Ring::turn) from any thread.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            shared: self.shared.notify.clone(),
        }
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let s = &self.shared.stats;
        Counters {
            sqes: s.sqes.load(Ordering::Relaxed),
            enters: s.enters.load(Ordering::Relaxed),
            cqes: s.cqes.load(Ordering::Relaxed),
            overflows: s.overflows.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            held: s.held.load(Ordering::Relaxed),
            cancels: s.cancels.load(Ordering::Relaxed),
            stale: self.shared.ops.stale(),
            leaked: s.leaked.load(Ordering::Relaxed),
            remote_sqes: s.remote_sqes.load(Ordering::Relaxed),
        }
    }

    /// Submits what is queued and waits for at least one completion, a [`Notifier`] wake-up or
    /// `timeout` (`Some(Duration::ZERO)`: don't wait), then reaps every CQE and wakes the ops'
    /// tasks: one `io_uring_enter` per turn. Returns how many CQEs were reaped.
    ///
    /// # Errors
    ///
    /// `WrongThread` (`io::ErrorKind::Other`) if called on a thread that is not the owner;
    /// `io_uring_enter` failed with something other than `EINTR`, `ETIME`, `EBUSY` or `EAGAIN`
    /// (which only mean "reap and turn again").
    pub fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        if !self.is_owner() {
            return Err(io::Error::other(
                "weir-ring: only the thread that built a ring may turn it",
            ));
        }
        if !self.shared.process.is_current() {
            return Err(inherited_ring());
        }
        crate::orphan::collect(self.shared.owner);
        self.shared.turn(timeout, true)
    }

    /// Boxes `data` (in a recycled box: `recycle`), builds its SQE from the boxed (address-stable) value and parks the box in
    /// the op table; returns the op's id and its SQE, tagged with the op's `user_data`.
    pub(crate) fn park<T: Send + 'static>(
        &self,
        data: T,
        build: impl FnOnce(&mut T) -> squeue::Entry,
        discard: fn(&mut (dyn Any + Send), Cqe),
    ) -> (OpId, squeue::Entry) {
        let mut boxed = crate::recycle::boxed(data);
        let entry = build(&mut boxed);
        let mut op = OpBox::new(boxed, discard);
        // Only the owner pushes SQEs: from another thread the SQE is queued first.
        op.in_kernel = self.is_owner();
        let id = self.shared.ops.insert(op);
        (id, entry.user_data(id.user_data()))
    }

    /// Fault injection for tests: the next `count` op completions are discarded by the reaps
    /// that find them, counted in [`Counters::dropped`], and recovered from, exactly as if the
    /// kernel had dropped them (it does only when it cannot buffer an overflowing completion).
    #[doc(hidden)]
    pub fn inject_lost_completions(&self, count: usize) {
        self.shared.inject_lost.fetch_add(count, Ordering::Relaxed);
    }

    /// Submits one op's SQE (see [`park`](Ring::park)).
    pub(crate) fn push(&self, entry: squeue::Entry) {
        self.shared.submit(Submission::One(entry));
    }

    /// Submits an op's SQE and the linked SQE that follows it (a `LINK_TIMEOUT`).
    pub(crate) fn push_linked(&self, entry: squeue::Entry, link: squeue::Entry) {
        self.shared.submit(Submission::Linked([entry, link]));
    }

    /// Pushes an SQE that carries no op of its own (a cancel): its CQE is stale by design.
    pub(crate) fn push_untracked(&self, entry: squeue::Entry) {
        self.push(entry.user_data(u64::MAX));
    }

    /// Asks the kernel to cancel op `user_data` at the next turn (a no-op if it has finished).
    pub(crate) fn queue_cancel(&self, user_data: u64) {
        let shared = &*self.shared;
        if !shared.process.is_current() {
            // A forked child cancels nothing of the parent's; the op's data is freed with the
            // child's copy of the ring.
            return;
        }
        shared.stats.cancels.fetch_add(1, Ordering::Relaxed);
        lock(&shared.pending_cancels).push(user_data);
        // Release: the queued cancel is visible to the turn that sees the flag.
        shared.has_cancels.store(true, Ordering::Release);
        if !self.is_owner() {
            self.notifier().notify();
        } else if shared.detached.load(Ordering::Relaxed) {
            self.flush();
        }
    }

    /// Tells the ring whether a turn is coming. While `detached` (the owner's event loop has
    /// returned, as a runtime's `block_on` does), a cancel queued on the owner's thread reaches
    /// the kernel at once, with a non-blocking turn: otherwise a dropped socket's armed
    /// receive, and with it the descriptor the receive holds, would stay in the kernel until
    /// the next turn, and the peer would not see the connection close. Setting it flushes what
    /// is queued. Only the owner's setting counts; it starts cleared.
    pub fn set_detached(&self, detached: bool) {
        if !self.is_owner() {
            return;
        }
        // Relaxed: only the owner reads and writes it.
        self.shared.detached.store(detached, Ordering::Relaxed);
        if detached {
            self.flush();
        }
    }

    /// On the owner's thread: submits the queued cancels (and other queued SQEs) and reaps
    /// what is ready, without blocking. A no-op on another thread, or inside another flush.
    pub fn flush(&self) {
        let shared = &*self.shared;
        // Relaxed: only the owner reads and writes it.
        if !self.is_owner()
            || !shared.process.is_current()
            || shared.flushing.swap(true, Ordering::Relaxed)
        {
            return;
        }
        crate::orphan::collect(shared.owner);
        // An enter that fails leaves the cancels queued for the next turn, the ring's teardown
        // at the latest; there is no caller to tell.
        let _ = shared.turn(Some(Duration::ZERO), false);
        shared.flushing.store(false, Ordering::Relaxed);
    }

    /// Registers a provided buffer ring.
    ///
    /// Soundness rests on the caller (`BufRing::register`): `memory` points to `entries`
    /// page-aligned entries that stay allocated until unregistered.
    pub(crate) fn register_buf_ring(
        &self,
        memory: NonNull<BufRingEntry>,
        entries: u16,
        group: u16,
    ) -> io::Result<()> {
        if !self.shared.process.is_current() {
            return Err(inherited_ring());
        }
        let mut uring = lock(&self.shared.uring);
        // SAFETY: see above; the memory outlives the registration.
        unsafe { uring.register_buf_ring(memory, entries, group) }
    }

    /// Unregisters buffer group `group`. In a forked child it does nothing and succeeds: the
    /// registration is the parent's, and the kernel reads only the parent's copy of the memory,
    /// so the child may free its own.
    pub(crate) fn unregister_buf_ring(&self, group: u16) -> io::Result<()> {
        if !self.shared.process.is_current_exactly() {
            return Ok(());
        }
        lock(&self.shared.uring).unregister_buf_ring(group)
    }
}

impl Shared {
    /// Submits `sqes`: pushed now on the owner's thread, queued for the owner's next turn
    /// elsewhere.
    fn submit(&self, sqes: Submission) {
        if !self.process.is_current() {
            // A forked child's op never reaches the parent's ring: it ends here.
            if let Some(first) = sqes
                .entries()
                .first()
                .filter(|e| e.get_user_data() != u64::MAX)
            {
                let mut wakers = Vec::new();
                let refused = Cqe {
                    result: -libc::EBADFD,
                    flags: 0,
                };
                self.complete(first.get_user_data(), refused, &mut wakers);
                self.release_reaped();
                wakers.into_iter().for_each(Waker::wake);
            }
            return;
        }
        if this_thread() == self.owner {
            let mut wakers = Vec::new();
            {
                let mut uring = lock(&self.uring);
                self.push_bounded(&mut uring, sqes, &mut wakers);
            }
            self.release_reaped();
            wakers.into_iter().for_each(Waker::wake);
        } else {
            let count = sqes.entries().len() as u64;
            lock(&self.remote).push(sqes);
            self.stats.remote_sqes.fetch_add(count, Ordering::Relaxed);
            // Release: the queued SQEs are visible to the owner that sees the flag.
            self.has_remote.store(true, Ordering::Release);
            Notifier {
                shared: self.notify.clone(),
            }
            .notify();
        }
    }

    /// The one place Weir pushes SQEs: pushes one op's entries back to back, handing a full
    /// queue to the kernel (and reaping) to make room. If the kernel will not take entries, the
    /// op is completed here with the error (`EBUSY` after [`PUSH_ATTEMPTS`]) instead of waiting
    /// forever.
    ///
    /// Returns `true` if the entries were pushed.
    fn push_locked(
        &self,
        uring: &mut Kernel,
        sqes: &[squeue::Entry],
        wakers: &mut Vec<Waker>,
    ) -> bool {
        let mut attempts = 0;
        loop {
            if uring.sq_room() >= sqes.len() {
                // SAFETY: every SQE Weir builds points into its op's box, which the op table
                // keeps until the op's final CQE (module docs); a link timeout's timespec lives
                // in its op's box too; cancel SQEs point at nothing.
                let pushed = unsafe { uring.push(sqes) };
                if pushed {
                    self.stats
                        .sqes
                        .fetch_add(sqes.len() as u64, Ordering::Relaxed);
                    // Relaxed: only the owner reads and writes it, under `uring`.
                    self.owed.fetch_add(sqes.len(), Ordering::Relaxed);
                    return true;
                }
            }
            self.stats.enters.fetch_add(1, Ordering::Relaxed);
            let submitted = uring.enter(Enter::Submit);
            self.reap(uring, wakers);
            attempts += 1;
            let errno = match submitted {
                Err(error)
                    if !matches!(
                        error.raw_os_error(),
                        Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                    ) =>
                {
                    Some(error.raw_os_error().unwrap_or(libc::EIO))
                }
                _ if attempts > PUSH_ATTEMPTS => Some(libc::EBUSY),
                _ => None,
            };
            if let Some(errno) = errno {
                let failed = Cqe {
                    result: -errno,
                    flags: 0,
                };
                // An SQE that carries no op (a cancel) has nothing to complete.
                if let Some(first) = sqes.first().filter(|e| e.get_user_data() != u64::MAX) {
                    self.complete(first.get_user_data(), failed, wakers);
                }
                return false;
            }
        }
    }

    /// Pushes one op's SQEs if the completions it will owe fit in the bound (`owed_limit`),
    /// else holds it, behind any op held before it. SQEs that carry no op (cancels) are never
    /// held: they free the kernel's resources.
    fn push_bounded(&self, uring: &mut Kernel, sqes: Submission, wakers: &mut Vec<Waker>) {
        let untracked = sqes
            .entries()
            .first()
            .is_none_or(|e| e.get_user_data() == u64::MAX);
        // Relaxed: only the owner reads and writes it.
        if !untracked
            && (self.has_held.load(Ordering::Relaxed) || !self.has_room_for(sqes.entries().len()))
        {
            lock(&self.held).push_back(sqes);
            self.has_held.store(true, Ordering::Relaxed);
            self.stats.held.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.push_locked(uring, sqes.entries(), wakers);
    }

    /// `true` if ops may owe `count` more completions (always when nothing is owed).
    fn has_room_for(&self, count: usize) -> bool {
        // Relaxed: only the owner reads and writes it, under `uring`.
        let owed = self.owed.load(Ordering::Relaxed);
        owed == 0 || owed + count <= self.owed_limit
    }

    /// Pushes the held ops that fit now, in order.
    fn push_held(&self, uring: &mut Kernel, wakers: &mut Vec<Waker>) {
        // Relaxed: only the owner reads and writes it.
        while self.has_held.load(Ordering::Relaxed) {
            let next = {
                let mut held = lock(&self.held);
                let next = match held.front() {
                    Some(sqes) if self.has_room_for(sqes.entries().len()) => held.pop_front(),
                    _ => None,
                };
                self.has_held.store(!held.is_empty(), Ordering::Relaxed);
                next
            };
            let Some(sqes) = next else {
                return;
            };
            self.push_locked(uring, sqes.entries(), wakers);
        }
    }

    /// Ends a held op that was cancelled before it reached the kernel; `false` if `user_data`
    /// is not held (it is in the kernel, or done).
    fn cancel_held(&self, user_data: u64, wakers: &mut Vec<Waker>) -> bool {
        // Relaxed: only the owner reads and writes it.
        if !self.has_held.load(Ordering::Relaxed) {
            return false;
        }
        {
            let mut held = lock(&self.held);
            let Some(at) = held.iter().position(|sqes| {
                sqes.entries()
                    .first()
                    .is_some_and(|e| e.get_user_data() == user_data)
            }) else {
                return false;
            };
            // The SQEs never reached the kernel: forget them.
            held.remove(at);
            self.has_held.store(!held.is_empty(), Ordering::Relaxed);
        }
        let cancelled = Cqe {
            result: -libc::ECANCELED,
            flags: 0,
        };
        self.complete(user_data, cancelled, wakers);
        true
    }

    /// One turn; `wake_read` arms the notifier's read before a blocking enter (not during
    /// teardown, which waits for every op to finish).
    fn turn(&self, timeout: Option<Duration>, wake_read: bool) -> io::Result<usize> {
        // Reuse one buffer for the wakers, so a turn allocates nothing.
        let mut wakers = std::mem::take(&mut *lock(&self.wake_buf));
        let reaped;
        {
            let mut uring = lock(&self.uring);
            self.push_queued(&mut uring, &mut wakers);
            self.push_held(&mut uring, &mut wakers);
            self.probe_if_lost(&mut uring, &mut wakers);
            let may_block = timeout != Some(Duration::ZERO);
            if may_block && wake_read {
                self.arm_wake_read(&mut uring, &mut wakers);
            }
            // A turn that must not block, with nothing to submit, no deferred completion work
            // flagged (`TASKRUN_FLAG` is set with `DEFER_TASKRUN`) and no overflow, has nothing to
            // ask the kernel: reap what is already in the completion queue, without a syscall.
            let skip_enter = uring.is_idle() && !may_block;
            if !skip_enter {
                self.stats.enters.fetch_add(1, Ordering::Relaxed);
            }
            // The SQEs submitted point into op boxes the op table keeps until their final CQEs
            // (`park`).
            let result = match timeout {
                Some(_) if skip_enter => Ok(0),
                Some(t) if t.is_zero() && self.defer_taskrun => uring.enter(Enter::GetEvents),
                Some(t) if t.is_zero() => uring.enter(Enter::Submit),
                Some(t) => uring.enter(Enter::WaitFor(t)),
                None => uring.enter(Enter::Wait),
            };
            let failed = match result {
                // EBADR: the kernel dropped completions (counted from its cumulative count by
                // the reap below); the ring goes on.
                Err(error)
                    if !matches!(
                        error.raw_os_error(),
                        Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN | libc::EBADR)
                    ) =>
                {
                    Some(error)
                }
                _ => None,
            };
            // Reap even after a failed enter: CQEs reaped while making room above are already
            // gathered, and their tasks must be woken.
            reaped = self.reap(&mut uring, &mut wakers);
            // Probes pushed now go in with the next turn's enter, which they then end promptly.
            self.probe_if_lost(&mut uring, &mut wakers);
            self.collect_wake_read();
            if let Some(error) = failed {
                drop(uring);
                self.release_reaped();
                wakers.drain(..).for_each(Waker::wake);
                *lock(&self.wake_buf) = wakers;
                return Err(error);
            }
        }
        self.release_reaped();
        wakers.drain(..).for_each(Waker::wake);
        *lock(&self.wake_buf) = wakers;
        Ok(reaped)
    }

    /// Drops the op data reaps took since the last call (see `reaped`); `uring` must not be
    /// locked by the caller.
    fn release_reaped(&self) {
        // Acquire: pairs with the release in `complete`, which set it under the lock.
        if !self.has_reaped.load(Ordering::Acquire) {
            return;
        }
        let mut reaped = {
            let mut kept = lock(&self.reaped);
            self.has_reaped.store(false, Ordering::Relaxed);
            std::mem::take(&mut *kept)
        };
        // Each box is released here, after its final CQE, with no lock held.
        reaped.clear();
        let mut kept = lock(&self.reaped);
        if kept.is_empty() {
            *kept = reaped;
        }
    }

    /// After completions were lost: asks the kernel to cancel every op in it, tagging each
    /// cancel with its op (`PROBE`). A cancel that finds nothing (`ENOENT`) means the op is done
    /// in the kernel — and since its completion came before the cancel's and was not reaped, it
    /// was lost: the reap ends that op with `EIO` (`reap_probe`) instead of leaving it to wait
    /// forever. The others end cancelled (or with their own result). Ops whose SQEs have not
    /// reached the kernel (held, or queued by another thread) are left alone.
    fn probe_if_lost(&self, uring: &mut Kernel, wakers: &mut Vec<Waker>) {
        // Relaxed, and a plain load then store: only the owner reads and writes it, under
        // `uring`.
        if !self.lost.load(Ordering::Relaxed) {
            return;
        }
        self.lost.store(false, Ordering::Relaxed);
        let held: Vec<u64> = lock(&self.held)
            .iter()
            .filter_map(|sqes| sqes.entries().first().map(squeue::Entry::get_user_data))
            .collect();
        for user_data in self.ops.pending(|op| op.in_kernel) {
            if held.contains(&user_data) {
                continue;
            }
            let probe = opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(user_data | PROBE);
            self.push_locked(uring, &[probe], wakers);
        }
    }

    /// A probe's completion (see `probe_if_lost`).
    fn reap_probe(&self, user_data: u64, result: i32, wakers: &mut Vec<Waker>) {
        if result != -libc::ENOENT || !self.ops.is_pending(user_data) {
            return;
        }
        if user_data == self.wake_read.load(Ordering::Relaxed) {
            self.wake_read_done.store(true, Ordering::Relaxed);
        }
        let lost = Cqe {
            result: -libc::EIO,
            flags: 0,
        };
        self.complete(user_data, lost, wakers);
    }

    /// Records a CQE for op `user_data`: its task's waker goes to `wakers`; an op whose future
    /// is gone has its box released after its final CQE, once `uring` is unlocked (`reaped`).
    fn complete(&self, user_data: u64, cqe: Cqe, wakers: &mut Vec<Waker>) {
        match self.ops.complete(user_data, cqe, discard) {
            CompleteOutcome::Queued(waker) => wakers.extend(waker),
            CompleteOutcome::Reaped(op) => {
                let mut reaped = lock(&self.reaped);
                reaped.push(op);
                // Release, under the lock: a release that sees the flag finds the data.
                self.has_reaped.store(true, Ordering::Release);
            }
            CompleteOutcome::Discarded | CompleteOutcome::Stale => {}
        }
    }

    /// Pushes the cancels and the other threads' SQEs queued since the last turn.
    /// The other threads' SQEs go first: a cancel queued for an op started on another thread
    /// must reach the kernel after that op, or it would find nothing to cancel.
    fn push_queued(&self, uring: &mut Kernel, wakers: &mut Vec<Waker>) {
        // Acquire: pairs with the release in `submit`, so the queued SQEs are visible. The load
        // first keeps the common case (nothing queued) free of a read-modify-write.
        if self.has_remote.load(Ordering::Relaxed) && self.has_remote.swap(false, Ordering::Acquire)
        {
            let remote = std::mem::take(&mut *lock(&self.remote));
            for sqes in remote {
                if let Some(first) = sqes.entries().first() {
                    // From here on its SQE is the owner's: pushed now, or held (and a probe
                    // leaves held ops alone).
                    self.ops
                        .update(first.get_user_data(), |op| op.in_kernel = true);
                }
                self.push_bounded(uring, sqes, wakers);
            }
        }
        // Acquire: pairs with the release in `queue_cancel`; the load first keeps the common
        // case (no cancel) free of a lock and a read-modify-write.
        if !(self.has_cancels.load(Ordering::Relaxed)
            && self.has_cancels.swap(false, Ordering::Acquire))
        {
            return;
        }
        let mut cancels = std::mem::take(&mut *lock(&self.pending_cancels));
        for &user_data in &cancels {
            if self.cancel_held(user_data, wakers) {
                continue;
            }
            let entry = opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(u64::MAX);
            self.push_locked(uring, &[entry], wakers);
        }
        // Give the storage back, so queueing cancels allocates nothing in steady state.
        cancels.clear();
        let mut pending = lock(&self.pending_cancels);
        if pending.is_empty() {
            *pending = cancels;
        }
    }

    /// Arms the read of the notifier's eventfd if it is not armed, so that a wake-up from
    /// another thread ends a blocking turn.
    fn arm_wake_read(&self, uring: &mut Kernel, wakers: &mut Vec<Waker>) {
        // A reap that made room in a full submission queue may have taken the read's CQE:
        // consume it first, or the turn would block with no read armed while `pending` keeps
        // every notification from writing.
        self.collect_wake_read();
        // Relaxed: only the owner reads and writes it.
        if self.wake_read.load(Ordering::Relaxed) != NO_WAKE_READ {
            return;
        }
        let data = WakeRead {
            fd: self.notify.eventfd.clone(),
            counter: [0; 8],
        };
        let mut boxed = crate::recycle::boxed(data);
        let fd = io_uring::types::Fd(std::os::fd::AsRawFd::as_raw_fd(&*boxed.fd));
        let entry = opcode::Read::new(fd, boxed.counter.as_mut_ptr(), 8)
            .offset(u64::MAX)
            .build();
        let id = self.ops.insert(OpBox::new(boxed, discard_nothing));
        self.wake_read.store(id.user_data(), Ordering::Relaxed);
        self.push_locked(uring, &[entry.user_data(id.user_data())], wakers);
    }

    /// After a reap: if the wake-up read completed, take it (and re-arm before the next blocking
    /// turn). Its data is released here, after its final CQE.
    fn collect_wake_read(&self) {
        // Relaxed, and a plain load then store: only the owner reads and writes both, under
        // `uring`.
        if !self.wake_read_done.load(Ordering::Relaxed) {
            return;
        }
        self.wake_read_done.store(false, Ordering::Relaxed);
        let armed = self.wake_read.load(Ordering::Relaxed);
        if armed == NO_WAKE_READ {
            return;
        }
        let mut cx = Context::from_waker(Waker::noop());
        if self
            .ops
            .poll_complete(OpId::from_user_data(armed), &mut cx)
            .is_ready()
        {
            self.wake_read.store(NO_WAKE_READ, Ordering::Relaxed);
            self.notify.consumed();
        }
    }

    /// Reaps every CQE; returns how many, and the wakers to wake once the lock is released.
    fn reap(&self, uring: &mut Kernel, wakers: &mut Vec<Waker>) -> usize {
        let mut count = 0;
        let mut finals = 0;
        // The kernel's count of completions it dropped, since the ring was set up.
        let dropped_total = uring.dropped();
        let wake_read = self.wake_read.load(Ordering::Relaxed);
        let mut injected = 0;
        uring.reap(|cqe: RawCqe| {
            count += 1;
            let user_data = cqe.user_data;
            // Relaxed: a test's knob, read and decremented by the owner only.
            if user_data != u64::MAX && self.inject_lost.load(Ordering::Relaxed) > 0 {
                self.inject_lost.fetch_sub(1, Ordering::Relaxed);
                injected += 1;
                return;
            }
            if user_data != u64::MAX && user_data & PROBE != 0 {
                finals += 1;
                self.reap_probe(user_data & !PROBE, cqe.result, wakers);
                return;
            }
            if user_data == wake_read {
                self.wake_read_done.store(true, Ordering::Relaxed);
            }
            let record = Cqe {
                result: cqe.result,
                flags: cqe.flags,
            };
            if record.flags & CQE_F_MORE == 0 {
                finals += 1;
            }
            self.complete(user_data, record, wakers);
        });
        // Set while the kernel holds completions in its overflow list; the next enter with
        // GETEVENTS (every turn's) flushes them.
        let overflowing = uring.cq_overflow();
        let seen = self.overflow_watch.observe(dropped_total, overflowing);
        if seen.new_episode {
            self.stats.overflows.fetch_add(1, Ordering::Relaxed);
        }
        let dropped = u64::from(seen.dropped) + injected as u64;
        if dropped > 0 {
            self.stats.dropped.fetch_add(dropped, Ordering::Relaxed);
            // Relaxed: only the owner reads and writes it.
            self.lost.store(true, Ordering::Relaxed);
        }
        // Final completions pay what their SQEs owed; dropped ones will never come, so they
        // are owed no more either (or the bound would shrink for good).
        let paid = finals + usize::try_from(dropped).unwrap_or(usize::MAX);
        // Relaxed: only the owner reads and writes it, under `uring`.
        let owed = self.owed.load(Ordering::Relaxed);
        self.owed
            .store(owed.saturating_sub(paid), Ordering::Relaxed);
        self.stats.cqes.fetch_add(count as u64, Ordering::Relaxed);
        count
    }
}

/// What the kernel's completion queue says about overflow, as events: its count of dropped
/// completions is cumulative (and wraps), and its overflow flag stays set until the overflow
/// list is flushed; so a reap must count the change, not the value.
/// Only the owner's reaps touch it (relaxed atomics, so a reap takes no lock for it).
#[derive(Debug, Default)]
struct OverflowWatch {
    /// The kernel's dropped count at the last reap (a `u32`).
    dropped_total: AtomicU64,
    /// The overflow flag at the last reap.
    overflowing: AtomicBool,
}

/// What one reap newly saw ([`OverflowWatch::observe`]).
#[derive(Debug, PartialEq, Eq)]
struct OverflowSeen {
    /// Completions dropped since the last reap.
    dropped: u32,
    /// The completion queue began to overflow into the kernel's list.
    new_episode: bool,
}

impl OverflowWatch {
    fn observe(&self, dropped_total: u32, overflowing: bool) -> OverflowSeen {
        // Relaxed: only the owner reads and writes them.
        let last = self.dropped_total.load(Ordering::Relaxed) as u32;
        let seen = OverflowSeen {
            dropped: dropped_total.wrapping_sub(last),
            new_episode: overflowing && !self.overflowing.load(Ordering::Relaxed),
        };
        self.dropped_total
            .store(u64::from(dropped_total), Ordering::Relaxed);
        self.overflowing.store(overflowing, Ordering::Relaxed);
        seen
    }
}

/// Hands a CQE nobody will consume to its op's clean-up (close a descriptor, recycle a buffer).
pub(crate) fn discard(op: &mut OpBox, cqe: Cqe) {
    (op.discard)(op.data.as_mut(), cqe);
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !self.process.is_current_exactly() {
            // A forked child's copy: the kernel works on the parent's memory and the parent
            // still drives the ring, so nothing is cancelled or entered; the child's copies of
            // the ops' data (and the descriptors they hold) are simply freed.
            drop(self.ops.take_all_for_leak());
            return;
        }
        // Every op future holds a `Ring`, so any op still here was cancelled (or is the wake-up
        // read). Ask the kernel to drop them all, then wait (bounded) for their final CQEs.
        // This runs on the owner's thread (`Drop for Ring` hands the ring to its owner,
        // `orphan`), unless the owner has exited: then the kernel refuses the enters and
        // what is in flight is leaked below.
        let armed = self.wake_read.swap(NO_WAKE_READ, Ordering::Relaxed);
        if armed != NO_WAKE_READ {
            drop(self.ops.cancel(OpId::from_user_data(armed), |_, _| {}));
        }
        // SQEs queued by other threads or held for room never reached the kernel: their ops end
        // here.
        let held = std::mem::take(&mut *lock(&self.held));
        for sqes in std::mem::take(&mut *lock(&self.remote))
            .into_iter()
            .chain(held)
        {
            if let Some(first) = sqes.entries().first() {
                let cancelled = Cqe {
                    result: -libc::ECANCELED,
                    flags: 0,
                };
                drop(self.ops.complete(first.get_user_data(), cancelled, discard));
            }
        }
        let deadline = Instant::now() + TEARDOWN_BOUND;
        // The cancel of everything must reach the kernel: if the queue would not take it (the
        // push hands a full queue to the kernel to make room, and gives up only when the kernel
        // refuses entries), it is pushed again at each turn of the wait.
        let mut cancelled_all = false;
        while !self.ops.is_empty() && Instant::now() < deadline {
            if !cancelled_all {
                let mut uring = lock(&self.uring);
                let cancel_all = opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::any())
                    .build()
                    .user_data(u64::MAX);
                let mut wakers = Vec::new();
                cancelled_all = self.push_locked(&mut uring, &[cancel_all], &mut wakers);
                drop(uring);
                self.release_reaped();
                wakers.into_iter().for_each(Waker::wake);
            }
            if self.turn(Some(Duration::from_millis(10)), false).is_err() {
                break;
            }
        }
        // Whatever the kernel still holds stays allocated: freeing it could let the kernel write
        // into reused memory.
        let leaked = self.ops.take_all_for_leak();
        self.stats
            .leaked
            .fetch_add(leaked.len() as u64, Ordering::Relaxed);
        for op in leaked {
            std::mem::forget(op);
        }
    }
}

impl Drop for Ring {
    /// The last handle tears the ring down (`Drop for Shared`) — on the owner's thread, the only
    /// one the kernel lets enter it: dropped elsewhere, the ring goes to its owner (`orphan`),
    /// which tears it down at its next turn or build, or when it exits.
    fn drop(&mut self) {
        // SAFETY: this is the handle's drop; `shared` is not used again.
        let shared = unsafe { ManuallyDrop::take(&mut self.shared) };
        // Of all the handles' drops, exactly one gets the ring.
        let Some(shared) = Arc::into_inner(shared) else {
            return;
        };
        if this_thread() != shared.owner && shared.process.is_current() {
            let owner = shared.owner;
            // The owner has exited: tear it down here, as well as can be done without it.
            drop(crate::orphan::adopt(owner, shared));
        }
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("setup", &self.shared.setup)
            .field("in_flight", &self.in_flight())
            .field("counters", &self.counters())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{OverflowSeen, OverflowWatch};

    #[test]
    fn overflow_is_counted_by_its_changes_not_its_value() {
        let watch = OverflowWatch::default();
        let seen = |dropped, new_episode| OverflowSeen {
            dropped,
            new_episode,
        };
        assert_eq!(watch.observe(0, false), seen(0, false));
        // Three completions dropped: counted once, not again at every later reap.
        assert_eq!(watch.observe(3, false), seen(3, false));
        assert_eq!(watch.observe(3, false), seen(0, false));
        assert_eq!(watch.observe(5, false), seen(2, false));
        // The overflow flag stays set across reaps: one episode.
        assert_eq!(watch.observe(5, true), seen(0, true));
        assert_eq!(watch.observe(5, true), seen(0, false));
        assert_eq!(watch.observe(5, false), seen(0, false));
        assert_eq!(watch.observe(5, true), seen(0, true));
        // The kernel's count is a wrapping u32.
        let watch = OverflowWatch::default();
        watch.observe(u32::MAX, false);
        assert_eq!(watch.observe(1, false), seen(2, false));
    }
}
