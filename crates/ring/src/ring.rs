//! The ring: setup with feature fallback, submission, completion, and teardown.
//!
//! # Memory ownership
//!
//! Every op's data (buffers, `sockaddr`s, `timespec`s) is boxed before its SQE is built, the SQE
//! points into that box, and the box goes into the [`OpTable`](crate::OpTable) before the SQE is
//! pushed. The box leaves the table only after the op's final CQE (see `lifecycle`), so
//! dropping a future early parks the box instead of freeing it. Dropping the last handle of the
//! ring cancels whatever is still in flight and waits (bounded) for the final CQEs; what the
//! kernel still holds after that is leaked on purpose and counted — never freed.

use crate::sync::unmodelled::{Arc, AtomicU64, Ordering};
use std::any::Any;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, opcode, squeue};

use crate::error::{Error, setup_error};
use crate::lifecycle::{CancelOutcome, CompleteOutcome, Cqe, OpId, OpTable};
use crate::sync::{Mutex, lock};

/// How long dropping a ring waits for the kernel to finish cancelled ops before leaking their
/// memory.
const TEARDOWN_BOUND: Duration = Duration::from_secs(2);

/// What an op leaves in the table while the kernel works: its data, and how to clean up a CQE
/// nobody will consume (close an accepted descriptor, recycle a provided buffer).
pub(crate) struct OpBox {
    pub(crate) data: Box<dyn Any + Send>,
    pub(crate) discard: fn(&mut (dyn Any + Send), Cqe),
}

fn discard_nothing(_: &mut (dyn Any + Send), _: Cqe) {}

/// Closes the descriptor a successful accept-like CQE carries.
pub(crate) fn discard_fd(_: &mut (dyn Any + Send), cqe: Cqe) {
    if cqe.result >= 0 {
        // SAFETY: a non-negative result of an accept is a new descriptor that nobody owns
        // (the future that would have adopted it is gone).
        unsafe { libc::close(cqe.result) };
    }
}

/// Which setup flags and features the ring got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupReport {
    /// Submission queue entries.
    pub sq_entries: u32,
    /// Completion queue entries.
    pub cq_entries: u32,
    /// The setup flags that were accepted, by name.
    pub flags: Vec<&'static str>,
    /// `true` if a kernel thread polls the submission queue.
    pub sqpoll: bool,
    /// `true` if the ring's descriptor is registered (cheaper `io_uring_enter`).
    pub registered_ring_fd: bool,
}

/// Which opcodes the kernel supports, from `IORING_REGISTER_PROBE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeReport {
    /// Opcode names Weir uses that the kernel supports.
    pub supported: Vec<&'static str>,
    /// Opcode names Weir uses that the kernel lacks.
    pub missing: Vec<&'static str>,
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
    /// Times the kernel reported completion-queue overflow (completions it had to buffer).
    pub overflows: u64,
    /// Async cancels queued for dropped futures.
    pub cancels: u64,
    /// CQEs that matched no op.
    pub stale: u64,
    /// Ops whose memory was leaked at teardown because the kernel never finished them.
    pub leaked: u64,
}

#[derive(Default)]
struct Stats {
    sqes: AtomicU64,
    enters: AtomicU64,
    cqes: AtomicU64,
    overflows: AtomicU64,
    cancels: AtomicU64,
    leaked: AtomicU64,
}

/// Builds a [`Ring`].
#[derive(Debug, Clone)]
pub struct Builder {
    entries: u32,
    cq_entries: Option<u32>,
    sqpoll_idle: Option<Duration>,
    plain: bool,
    defer_taskrun: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            entries: 256,
            cq_entries: None,
            sqpoll_idle: None,
            plain: false,
            defer_taskrun: true,
        }
    }
}

impl Builder {
    /// Submission queue entries (rounded up to a power of two by the kernel).
    pub fn entries(mut self, entries: u32) -> Self {
        self.entries = entries;
        self
    }

    /// Completion queue entries (default: twice the submission queue).
    pub fn cq_entries(mut self, entries: u32) -> Self {
        self.cq_entries = Some(entries);
        self
    }

    /// Lets a kernel thread poll the submission queue, sleeping after `idle`. Off by default: it
    /// burns a core.
    pub fn sqpoll(mut self, idle: Duration) -> Self {
        self.sqpoll_idle = Some(idle);
        self
    }

    /// Whether to ask for `IORING_SETUP_DEFER_TASKRUN` (on by default; see `build`).
    pub fn defer_taskrun(mut self, on: bool) -> Self {
        self.defer_taskrun = on;
        self
    }

    /// Asks for no optional setup flags at all (for comparisons and diagnostics).
    pub fn plain(mut self) -> Self {
        self.plain = true;
        self
    }

    /// Sets the ring up, with the best flags the kernel accepts.
    ///
    /// # Errors
    ///
    /// [`Error::Unavailable`] if `io_uring_setup` fails (ENOSYS, EPERM, EINVAL, ENOMEM...),
    /// [`Error::Missing`] if the kernel lacks a feature Weir relies on.
    pub fn build(self) -> Result<Ring, Error> {
        // Most capable first; each fallback drops the flags an older kernel refuses.
        // DEFER_TASKRUN batches completion work into our own io_uring_enter: in the echo
        // benchmark it cut B2's syscalls per request from 0.15 to 0.04-0.07. (A bare ping-pong
        // micro benchmark once showed much higher latency with it; `defer_taskrun(false)` turns
        // it off.)
        let best: &[&'static str] = if self.defer_taskrun {
            &[
                "SUBMIT_ALL",
                "COOP_TASKRUN",
                "TASKRUN_FLAG",
                "SINGLE_ISSUER",
                "DEFER_TASKRUN",
            ]
        } else {
            &[
                "SUBMIT_ALL",
                "COOP_TASKRUN",
                "TASKRUN_FLAG",
                "SINGLE_ISSUER",
            ]
        };
        let attempts: [&[&'static str]; 3] =
            [best, &["SUBMIT_ALL", "COOP_TASKRUN", "TASKRUN_FLAG"], &[]];
        let mut last_error = None;
        let skip = if self.plain { attempts.len() - 1 } else { 0 };
        for flags in attempts.into_iter().skip(skip) {
            let mut builder = IoUring::builder();
            for flag in flags {
                match *flag {
                    "SUBMIT_ALL" => builder.setup_submit_all(),
                    "COOP_TASKRUN" => builder.setup_coop_taskrun(),
                    "TASKRUN_FLAG" => builder.setup_taskrun_flag(),
                    "SINGLE_ISSUER" => builder.setup_single_issuer(),
                    "DEFER_TASKRUN" => builder.setup_defer_taskrun(),
                    _ => &mut builder,
                };
            }
            if let Some(cq) = self.cq_entries {
                builder.setup_cqsize(cq);
            }
            if let Some(idle) = self.sqpoll_idle {
                builder.setup_sqpoll(u32::try_from(idle.as_millis()).unwrap_or(u32::MAX));
            }
            match builder.build(self.entries) {
                Ok(uring) => {
                    return Ring::from_uring(uring, flags.to_vec(), self.sqpoll_idle.is_some());
                }
                Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                    last_error = Some(error)
                }
                Err(error) => return Err(setup_error(error)),
            }
        }
        Err(setup_error(last_error.unwrap_or_else(|| {
            io::Error::from_raw_os_error(libc::EINVAL)
        })))
    }
}

/// A handle to an io_uring instance. Clones share it; ops hold a clone until they are done.
///
/// The ring is driven by [`turn`](Ring::turn) from the thread that created it (it may be set up
/// with `SINGLE_ISSUER`); op futures may be dropped anywhere.
#[derive(Clone)]
pub struct Ring {
    shared: Arc<Shared>,
}

struct Shared {
    uring: Mutex<IoUring>,
    ops: OpTable<OpBox>,
    /// Cancels to submit at the next turn (the SQ was full, or the future dropped elsewhere).
    pending_cancels: Mutex<Vec<u64>>,
    /// The wakers a turn collects, kept between turns so that turning allocates nothing.
    wake_buf: Mutex<Vec<Waker>>,
    setup: SetupReport,
    probe: ProbeReport,
    stats: Stats,
}

/// The opcodes Weir uses, for the probe.
const OPCODES: &[(u8, &str)] = &[
    (opcode::Nop::CODE, "NOP"),
    (opcode::Read::CODE, "READ"),
    (opcode::Write::CODE, "WRITE"),
    (opcode::Recv::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::Accept::CODE, "ACCEPT"),
    (opcode::Connect::CODE, "CONNECT"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::Shutdown::CODE, "SHUTDOWN"),
    (opcode::Writev::CODE, "WRITEV"),
    (opcode::SendZc::CODE, "SEND_ZC"),
    (opcode::Splice::CODE, "SPLICE"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::RecvMsg::CODE, "RECVMSG"),
];

impl Ring {
    /// A ring with the default settings (256 entries, no SQPOLL).
    ///
    /// # Errors
    ///
    /// As [`Builder::build`].
    pub fn new() -> Result<Ring, Error> {
        Builder::default().build()
    }

    /// Starts configuring a ring.
    pub fn builder() -> Builder {
        Builder::default()
    }

    fn from_uring(uring: IoUring, flags: Vec<&'static str>, sqpoll: bool) -> Result<Ring, Error> {
        let params = uring.params();
        if !params.is_feature_nodrop() {
            return Err(Error::Missing("IORING_FEAT_NODROP (kernel 5.5+)"));
        }
        if !params.is_feature_ext_arg() {
            return Err(Error::Missing("IORING_FEAT_EXT_ARG (kernel 5.11+)"));
        }
        let (sq_entries, cq_entries) = (params.sq_entries(), params.cq_entries());
        let mut probe = Probe::new();
        uring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|e| Error::Unavailable {
                reason: "IORING_REGISTER_PROBE failed".into(),
                source: Some(e),
            })?;
        let (supported, missing): (Vec<_>, Vec<_>) = OPCODES
            .iter()
            .partition(|(code, _)| probe.is_supported(*code));
        let registered_ring_fd = uring.submitter().register_ring_fd().is_ok();
        Ok(Ring {
            shared: Arc::new(Shared {
                uring: Mutex::new(uring),
                ops: OpTable::new(),
                pending_cancels: Mutex::new(Vec::new()),
                wake_buf: Mutex::new(Vec::new()),
                setup: SetupReport {
                    sq_entries,
                    cq_entries,
                    flags,
                    sqpoll,
                    registered_ring_fd,
                },
                probe: ProbeReport {
                    supported: supported.iter().map(|(_, name)| *name).collect(),
                    missing: missing.iter().map(|(_, name)| *name).collect(),
                },
                stats: Stats::default(),
            }),
        })
    }

    /// What the setup got.
    pub fn setup(&self) -> &SetupReport {
        &self.shared.setup
    }

    /// Which opcodes exist.
    pub fn probe(&self) -> &ProbeReport {
        &self.shared.probe
    }

    /// Ops in flight (including cancelled ones waiting for their final CQE).
    pub fn in_flight(&self) -> usize {
        self.shared.ops.len()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let s = &self.shared.stats;
        Counters {
            sqes: s.sqes.load(Ordering::Relaxed),
            enters: s.enters.load(Ordering::Relaxed),
            cqes: s.cqes.load(Ordering::Relaxed),
            overflows: s.overflows.load(Ordering::Relaxed),
            cancels: s.cancels.load(Ordering::Relaxed),
            stale: self.shared.ops.stale(),
            leaked: s.leaked.load(Ordering::Relaxed),
        }
    }

    /// Submits what is queued and waits for at least one completion or `timeout`
    /// (`Some(Duration::ZERO)`: don't wait), then reaps every CQE and wakes the ops' tasks:
    /// one `io_uring_enter` per turn. Returns how many CQEs were reaped.
    ///
    /// # Errors
    ///
    /// `io_uring_enter` failed with something other than `EINTR`, `ETIME`, `EBUSY` or `EAGAIN`
    /// (which only mean "reap and turn again").
    pub fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        self.shared.turn(timeout)
    }

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
        let id = self.park_and_push(data, build, discard);
        Op {
            ring: self.clone(),
            id: Some(id),
            complete,
            _data: PhantomData,
        }
    }

    /// Boxes `data`, builds its SQE from the boxed (address-stable) value, parks the box in the
    /// op table, and pushes the SQE tagged with the entry's `user_data`.
    fn park_and_push<T: Send + 'static>(
        &self,
        data: T,
        build: impl FnOnce(&mut T) -> squeue::Entry,
        discard: fn(&mut (dyn Any + Send), Cqe),
    ) -> OpId {
        let mut boxed = Box::new(data);
        let entry = build(&mut boxed);
        let id = self.shared.ops.insert(OpBox {
            data: boxed,
            discard,
        });
        self.shared.push(entry.user_data(id.user_data()));
        id
    }

    /// Like [`submit`](Ring::submit) for multishot ops: the result is a stream of CQEs.
    pub(crate) fn submit_multishot<T: Send + 'static>(
        &self,
        data: T,
        build: impl FnOnce(&mut T) -> squeue::Entry,
        discard: fn(&mut (dyn Any + Send), Cqe),
    ) -> MultiOp {
        let id = self.park_and_push(data, build, discard);
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
        let mut boxed = Box::new(Linked {
            data,
            timespec: io_uring::types::Timespec::new()
                .sec(timeout.as_secs())
                .nsec(timeout.subsec_nanos()),
            complete,
        });
        let entry = build(&mut boxed.data).flags(squeue::Flags::IO_LINK);
        let link = opcode::LinkTimeout::new(&raw const boxed.timespec)
            .build()
            .user_data(u64::MAX);
        let id = self.shared.ops.insert(OpBox {
            data: boxed,
            discard,
        });
        self.shared.push_pair(entry.user_data(id.user_data()), link);
        Op {
            ring: self.clone(),
            id: Some(id),
            complete: |linked: Linked<T, O>, cqe| (linked.complete)(linked.data, cqe),
            _data: PhantomData,
        }
    }

    /// Pushes an SQE that carries no op of its own (a cancel): its CQE is stale by design.
    pub(crate) fn push_untracked(&self, entry: squeue::Entry) {
        self.shared.push(entry.user_data(u64::MAX));
    }

    /// Registers a provided buffer ring.
    ///
    /// Soundness rests on the caller (`BufRing::register`): `addr` points to `entries`
    /// page-aligned entries that stay allocated until unregistered.
    pub(crate) fn register_buf_ring(&self, addr: u64, entries: u16, group: u16) -> io::Result<()> {
        let uring = lock(&self.shared.uring);
        // SAFETY: see above; the memory outlives the registration.
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(addr, entries, group, 0)
        }
    }

    pub(crate) fn unregister_buf_ring(&self, group: u16) -> io::Result<()> {
        lock(&self.shared.uring)
            .submitter()
            .unregister_buf_ring(group)
    }

    pub(crate) fn discard_default() -> fn(&mut (dyn Any + Send), Cqe) {
        discard_nothing
    }
}

impl Shared {
    /// Pushes two SQEs back to back (a linked pair), making room for both first.
    fn push_pair(&self, first: squeue::Entry, second: squeue::Entry) {
        let mut wakers = Vec::new();
        {
            let mut uring = lock(&self.uring);
            let mut attempts = 0;
            let room = |uring: &mut IoUring| {
                let sq = uring.submission();
                sq.capacity() - sq.len()
            };
            while room(&mut uring) < 2 && attempts < 1_000 {
                self.stats.enters.fetch_add(1, Ordering::Relaxed);
                let _ = uring.submitter().submit();
                self.reap(&mut uring, &mut wakers);
                attempts += 1;
            }
            // SAFETY: as in `push`: the op's SQE points into its parked box; the link timeout's
            // timespec is copied by the kernel when it takes the SQE, during the enter that
            // submits both.
            #[allow(clippy::disallowed_methods, reason = "the one place Weir pushes SQEs")]
            let pushed = unsafe { uring.submission().push_multiple(&[first.clone(), second]) };
            if pushed.is_ok() {
                self.stats.sqes.fetch_add(2, Ordering::Relaxed);
            } else {
                // The queue never drained: fail the op rather than wait forever.
                let failed = Cqe {
                    result: -libc::EBUSY,
                    flags: 0,
                };
                if let CompleteOutcome::Queued(waker) =
                    self.ops.complete(first.get_user_data(), failed, discard)
                {
                    wakers.extend(waker);
                }
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Pushes `entry`, submitting to make room if the queue is full. If the kernel refuses to
    /// take entries at all, the op is completed here with that error instead of waiting forever.
    fn push(&self, entry: squeue::Entry) {
        let mut wakers = Vec::new();
        {
            let mut uring = lock(&self.uring);
            let mut attempts = 0;
            loop {
                // SAFETY: every SQE Weir builds points into the op's box, which the op table
                // keeps until the op's final CQE (module docs); cancel SQEs point at nothing.
                #[allow(clippy::disallowed_methods, reason = "the one place Weir pushes SQEs")]
                let pushed = unsafe { uring.submission().push(&entry) };
                if pushed.is_ok() {
                    self.stats.sqes.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                // Full: hand the queue to the kernel now, reap, and try again.
                self.stats.enters.fetch_add(1, Ordering::Relaxed);
                let submitted = uring.submitter().submit();
                self.reap(&mut uring, &mut wakers);
                attempts += 1;
                if let Err(error) = submitted {
                    let transient = matches!(
                        error.raw_os_error(),
                        Some(libc::EBUSY | libc::EAGAIN | libc::EINTR)
                    );
                    if !transient || attempts > 1_000 {
                        let errno = error.raw_os_error().unwrap_or(libc::EIO);
                        let failed = Cqe {
                            result: -errno,
                            flags: 0,
                        };
                        if let CompleteOutcome::Queued(waker) =
                            self.ops.complete(entry.get_user_data(), failed, discard)
                        {
                            wakers.extend(waker);
                        }
                        break;
                    }
                }
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    fn queue_cancel(&self, user_data: u64) {
        self.stats.cancels.fetch_add(1, Ordering::Relaxed);
        lock(&self.pending_cancels).push(user_data);
    }

    fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        // Reuse one buffer for the wakers, so a turn allocates nothing.
        let mut wakers = std::mem::take(&mut *lock(&self.wake_buf));
        let reaped;
        {
            let mut uring = lock(&self.uring);
            self.push_pending_cancels(&mut uring);
            // A turn that must not block, with nothing to submit, no deferred completion work
            // flagged (`TASKRUN_FLAG` is set with `DEFER_TASKRUN`) and no overflow, has nothing to
            // ask the kernel: reap what is already in the completion queue, without a syscall.
            let idle = {
                let sq = uring.submission();
                sq.is_empty() && !sq.taskrun() && !sq.cq_overflow()
            };
            let skip_enter = idle && timeout.is_some_and(|t| t.is_zero());
            if !skip_enter {
                self.stats.enters.fetch_add(1, Ordering::Relaxed);
            }
            let submitter = uring.submitter();
            let result = match timeout {
                Some(_) if skip_enter => Ok(0),
                Some(t) if t.is_zero() => submitter.submit(),
                Some(t) => {
                    let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                    submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))
                }
                None => submitter.submit_and_wait(1),
            };
            if let Err(error) = result {
                match error.raw_os_error() {
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                    _ => return Err(error),
                }
            }
            reaped = self.reap(&mut uring, &mut wakers);
        }
        wakers.drain(..).for_each(Waker::wake);
        *lock(&self.wake_buf) = wakers;
        Ok(reaped)
    }

    fn push_pending_cancels(&self, uring: &mut IoUring) {
        let cancels = std::mem::take(&mut *lock(&self.pending_cancels));
        for user_data in cancels {
            let entry = opcode::AsyncCancel::new(user_data)
                .build()
                .user_data(u64::MAX);
            // SAFETY: a cancel SQE references no memory.
            #[allow(clippy::disallowed_methods, reason = "the one place Weir pushes SQEs")]
            let pushed = unsafe { uring.submission().push(&entry) };
            if pushed.is_err() {
                // No room: keep it for the next turn (this turn's enter frees the queue).
                lock(&self.pending_cancels).push(user_data);
            } else {
                self.stats.sqes.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reaps every CQE; returns how many, and the wakers to wake once the lock is released.
    fn reap(&self, uring: &mut IoUring, wakers: &mut Vec<Waker>) -> usize {
        let mut count = 0;
        let mut completion = uring.completion();
        if completion.overflow() > 0 {
            // The kernel counts completions it dropped (only without NODROP, which we require)
            // or buffered; either way, note it.
            self.stats.overflows.fetch_add(1, Ordering::Relaxed);
        }
        for cqe in &mut completion {
            count += 1;
            let record = Cqe {
                result: cqe.result(),
                flags: cqe.flags(),
            };
            match self.ops.complete(cqe.user_data(), record, discard) {
                CompleteOutcome::Queued(waker) => wakers.extend(waker),
                // The box is released here, after its final CQE.
                CompleteOutcome::Reaped(op) => drop(op),
                CompleteOutcome::Discarded | CompleteOutcome::Stale => {}
            }
        }
        completion.sync();
        drop(completion);
        if uring.submission().cq_overflow() {
            self.stats.overflows.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.cqes.fetch_add(count as u64, Ordering::Relaxed);
        count
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Every op future holds a `Ring`, so any op still here was cancelled. Ask the kernel to
        // drop them all, then wait (bounded) for their final CQEs.
        let deadline = Instant::now() + TEARDOWN_BOUND;
        {
            let mut uring = lock(&self.uring);
            let cancel_all = opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::any())
                .build()
                .user_data(u64::MAX);
            // SAFETY: a cancel SQE references no memory.
            #[allow(clippy::disallowed_methods, reason = "the one place Weir pushes SQEs")]
            let _ = unsafe { uring.submission().push(&cancel_all) };
        }
        while !self.ops.is_empty() && Instant::now() < deadline {
            if self.turn(Some(Duration::from_millis(10))).is_err() {
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

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("setup", &self.shared.setup)
            .field("in_flight", &self.in_flight())
            .field("counters", &self.counters())
            .finish()
    }
}

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

/// A single-shot op in flight. Resolves to the op's output (which gives back its buffers).
///
/// Cancel safety: dropping it before it resolves is memory-safe and leaks nothing: the op's data
/// stays parked until the kernel's final CQE, an async cancel is queued, and a result the kernel
/// produced meanwhile is cleaned up (an accepted descriptor is closed).
#[must_use = "an op does nothing useful unless awaited; dropping it cancels it"]
pub struct Op<T, O> {
    ring: Ring,
    id: Option<OpId>,
    complete: fn(T, Cqe) -> O,
    _data: PhantomData<fn() -> T>,
}

impl<T: 'static, O> std::future::Future for Op<T, O> {
    type Output = O;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<O> {
        let this = self.get_mut();
        let Some(id) = this.id else {
            return Poll::Pending;
        };
        match this.ring.shared.ops.poll_complete(id, cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some((op, cqe))) => {
                this.id = None;
                match op.data.downcast::<T>() {
                    Ok(data) => Poll::Ready((this.complete)(*data, cqe)),
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

fn cancel_op(ring: &Ring, id: OpId) {
    match ring.shared.ops.cancel(id, discard) {
        // Finished already: the kernel is done with the box.
        CancelOutcome::Released(op) => drop(op),
        CancelOutcome::CancelInKernel(user_data) => ring.shared.queue_cancel(user_data),
        CancelOutcome::Gone => {}
    }
}

/// Hands a CQE nobody will consume to its op's clean-up (close a descriptor, recycle a buffer).
fn discard(op: &mut OpBox, cqe: Cqe) {
    (op.discard)(op.data.as_mut(), cqe);
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
