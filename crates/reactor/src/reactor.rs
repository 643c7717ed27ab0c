//! The reactor: a poller, the registered sources, the timers, and the turn that drives them.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::notify::{Coalescer, Notifier, NotifyShared};
use crate::readiness::{Direction, Interest, ReadyEvent, ScheduledIo};
use crate::source::{RawSource, Source};
use crate::sync::{Arc, AtomicU64, Mutex, Ordering, lock};
use crate::sys::{EVENT_BATCH, Selector, SysEvent};
use crate::timer::{TimerKey, Timers};

/// Counters a benchmark or a test can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Calls into the poller's wait (`epoll_wait`, `kevent`, ...).
    pub waits: u64,
    /// Readiness events received.
    pub events: u64,
    /// Wakers woken by readiness or timers.
    pub wakeups: u64,
    /// Timers fired.
    pub timers_fired: u64,
    /// `Notifier::notify` calls, and the wake-ups they actually cost.
    pub notifies_requested: u64,
    /// Wake-up syscalls performed for notifications.
    pub notifies_delivered: u64,
    /// Re-arming calls (oneshot platforms only; zero with edge-triggered polling).
    pub rearms: u64,
}

/// A readiness reactor for one thread: epoll on Linux, kqueue on the BSDs and macOS, event ports
/// on illumos (through `polling`).
///
/// # Mode
///
/// Sources are registered **edge-triggered** where the platform supports it (epoll, kqueue):
/// the kernel reports a transition once, the reactor remembers it in the source's readiness
/// word, and a task clears it only after its syscall returned `EAGAIN`. A socket with a
/// persistent error or a hang-up is reported once, so the reactor never spins on it; the task
/// sees the condition in its next syscall. Elsewhere (IOCP) sources are oneshot: the reactor
/// arms a source for the directions tasks wait in when one parks, and again after each event.
///
/// # Examples
///
/// ```
/// use std::io::{Read, Write};
/// use std::os::unix::net::UnixStream;
/// use std::time::Duration;
/// use weir_reactor::Reactor;
///
/// let reactor = Reactor::new().expect("poller");
/// let (a, mut b) = UnixStream::pair().expect("socketpair");
/// a.set_nonblocking(true).expect("nonblocking");
/// let a = reactor.register(a).expect("register");
///
/// b.write_all(b"hi").expect("write");
/// reactor.turn(Some(Duration::from_secs(1))).expect("turn");
/// let mut buf = [0; 2];
/// let n = a.try_io(weir_reactor::Direction::Read, |s| (&*s).read(&mut buf)).expect("ready");
/// assert_eq!(&buf[..n], b"hi");
/// ```
pub struct Reactor {
    inner: Arc<Inner>,
}

struct Inner {
    selector: Arc<Selector>,
    /// The process that made the poller. A forked child inherits an epoll instance shared with
    /// its parent (one kernel object, however many descriptors): a source the child added or
    /// deleted would be added to or deleted from the parent's, so in any other process
    /// `register` refuses and deregistering leaves the poller alone (the child closes only its
    /// own copy of the descriptor, which leaves the parent's registration in place).
    pid: u32,
    sources: Mutex<Sources>,
    timers: Mutex<Timers<Option<Waker>>>,
    /// Only `turn` takes it: the event buffer and the scratch list of sources to wake.
    turn_state: Mutex<TurnState>,
    notify: Arc<NotifyShared>,
    waits: AtomicU64,
    events: AtomicU64,
    wakeups: AtomicU64,
    rearms: AtomicU64,
}

#[derive(Default)]
struct Sources {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
}

/// One registered source, as the turn finds it by its key.
#[derive(Clone)]
struct Slot {
    scheduled: Arc<ScheduledIo>,
    /// The descriptor, for re-arming on oneshot platforms: open for as long as the slot is
    /// filled and the source not deregistered (`ScheduledIo::deregister` runs first).
    raw: RawSource,
}

struct TurnState {
    events: Vec<SysEvent>,
    ready: Vec<(Slot, SysEvent)>,
    wakers: Vec<Waker>,
}

impl Reactor {
    /// Creates a reactor with its own poller.
    ///
    /// # Errors
    ///
    /// The poller could not be created (`epoll_create1`/`kqueue` failed, e.g. `EMFILE`).
    pub fn new() -> io::Result<Self> {
        let selector = Arc::new(Selector::new()?);
        let notify = Arc::new(NotifyShared {
            coalescer: Coalescer::default(),
            requested: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            selector: selector.clone(),
        });
        Ok(Reactor {
            inner: Arc::new(Inner {
                selector,
                pid: std::process::id(),
                sources: Mutex::new(Sources::default()),
                timers: Mutex::new(Timers::new()),
                turn_state: Mutex::new(TurnState {
                    events: Vec::with_capacity(EVENT_BATCH),
                    ready: Vec::new(),
                    wakers: Vec::new(),
                }),
                notify,
                waits: AtomicU64::new(0),
                events: AtomicU64::new(0),
                wakeups: AtomicU64::new(0),
                rearms: AtomicU64::new(0),
            }),
        })
    }

    /// Registers `io` (which must already be non-blocking) for both directions.
    ///
    /// The registration owns `io`: it is deleted from the poller before `io` — and its
    /// descriptor — is dropped, so a closed or reused descriptor can never be left behind in
    /// the poller.
    ///
    /// # Errors
    ///
    /// The poller refused the descriptor (`epoll_ctl`/`kevent` failed), or the reactor was
    /// inherited across `fork(2)` (it is the parent's: a forked child makes its own).
    pub fn register<T: Source>(&self, io: T) -> io::Result<Registration<T>> {
        if std::process::id() != self.inner.pid {
            return Err(io::Error::other(
                "weir-reactor: this reactor was inherited across fork(2) and belongs to the \
                 parent; make a new one in the child",
            ));
        }
        let scheduled = Arc::new(ScheduledIo::default());
        let raw = io.raw_source();
        let slot = Slot {
            scheduled: scheduled.clone(),
            raw,
        };
        let key = {
            let mut sources = lock(&self.inner.sources);
            match sources.free.pop() {
                Some(key) => {
                    sources.slots[key] = Some(slot);
                    key
                }
                None => {
                    sources.slots.push(Some(slot));
                    sources.slots.len() - 1
                }
            }
        };
        // SAFETY: the selector requires the source to be deleted before it is closed. The
        // `Registration` owns `io` (and so its descriptor) and deletes the source in its `Drop`
        // and `into_inner` before `io` can be dropped or handed back.
        let added = unsafe { self.inner.selector.add(raw, key) };
        if let Err(error) = added {
            self.inner.release_key(key);
            return Err(error);
        }
        Ok(Registration {
            io: Some(io),
            key,
            scheduled,
            inner: self.inner.clone(),
        })
    }

    /// Waits for readiness events (up to `timeout`, or the next timer, whichever is first),
    /// wakes the tasks they concern, fires due timers, and returns how many wakers were woken.
    ///
    /// `Some(Duration::ZERO)` polls without blocking; `None` waits until an event, a timer or a
    /// [`Notifier`]. Interruptions by signals (`EINTR`) are retried, never returned.
    ///
    /// # Errors
    ///
    /// The poller failed (`epoll_wait`/`kevent` returned an error other than `EINTR`).
    pub fn turn(&self, timeout: Option<Duration>) -> io::Result<usize> {
        let inner = &*self.inner;
        let mut turn = lock(&inner.turn_state);
        let turn = &mut *turn;
        let now = Instant::now();
        let timeout = match lock(&inner.timers).next_deadline() {
            Some(deadline) => {
                let until_timer = deadline.saturating_duration_since(now);
                Some(timeout.map_or(until_timer, |t| t.min(until_timer)))
            }
            None => timeout,
        };
        turn.events.clear();
        inner.waits.fetch_add(1, Ordering::Relaxed);
        inner.selector.wait(&mut turn.events, timeout)?;
        let count = turn.events.len();
        // Notifications before this point are served by this turn; later ones wake the next.
        inner.notify.coalescer.clear();
        inner.events.fetch_add(count as u64, Ordering::Relaxed);
        {
            let sources = lock(&inner.sources);
            for event in &turn.events {
                if let Some(Some(slot)) = sources.slots.get(event.key) {
                    turn.ready.push((slot.clone(), *event));
                }
            }
        }
        let mut woken = 0;
        let oneshot = inner.selector.needs_rearm();
        for (slot, event) in turn.ready.drain(..) {
            // A oneshot poller disarmed the source to report this event: arm it again for the
            // directions that still have waiters (a reader is still waiting after an event that
            // reported only writability).
            let rearm = |interest| inner.rearm(slot.raw, event.key, interest);
            woken += slot.scheduled.set_readiness(
                event.readable,
                event.writable,
                event.read_closed,
                oneshot.then_some(&rearm as &dyn Fn(Interest) -> io::Result<()>),
            );
        }
        {
            let mut timers = lock(&inner.timers);
            timers.fire_due(Instant::now(), |waker| turn.wakers.extend(waker));
        }
        woken += turn.wakers.len();
        turn.wakers.drain(..).for_each(Waker::wake);
        inner.wakeups.fetch_add(woken as u64, Ordering::Relaxed);
        Ok(woken)
    }

    /// A handle that wakes this reactor from any thread.
    pub fn notifier(&self) -> Notifier {
        Notifier {
            shared: self.inner.notify.clone(),
        }
    }

    /// A future that resolves at `deadline`; dropping it cancels the timer.
    pub fn sleep_until(&self, deadline: Instant) -> Sleep {
        Sleep {
            inner: self.inner.clone(),
            deadline,
            key: None,
        }
    }

    /// Timers pending now.
    pub fn timers_pending(&self) -> usize {
        lock(&self.inner.timers).len()
    }

    /// Sources registered now.
    pub fn registrations(&self) -> usize {
        let sources = lock(&self.inner.sources);
        sources.slots.len() - sources.free.len()
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        let inner = &self.inner;
        Counters {
            waits: inner.waits.load(Ordering::Relaxed),
            events: inner.events.load(Ordering::Relaxed),
            wakeups: inner.wakeups.load(Ordering::Relaxed),
            timers_fired: lock(&inner.timers).fired_total(),
            notifies_requested: inner.notify.requested.load(Ordering::Relaxed),
            notifies_delivered: inner.notify.delivered.load(Ordering::Relaxed),
            rearms: inner.rearms.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    /// Arms a oneshot source for `interest`; only `ScheduledIo` calls it, under the source's
    /// waker mutex.
    fn rearm(&self, raw: RawSource, key: usize, interest: Interest) -> io::Result<()> {
        self.rearms.fetch_add(1, Ordering::Relaxed);
        self.selector.rearm(raw, key, interest)
    }

    fn release_key(&self, key: usize) {
        let mut sources = lock(&self.sources);
        if let Some(slot) = sources.slots.get_mut(key) {
            if slot.take().is_some() {
                sources.free.push(key);
            }
        }
    }
}

impl fmt::Debug for Reactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reactor")
            .field("selector", &self.inner.selector)
            .field("registrations", &self.registrations())
            .field("counters", &self.counters())
            .finish()
    }
}

/// An I/O object registered with a [`Reactor`]; owns it, and deregisters before dropping it.
pub struct Registration<T: Source> {
    /// `Some` until `into_inner` or `drop` takes it, after deleting it from the poller.
    io: Option<T>,
    key: usize,
    scheduled: Arc<ScheduledIo>,
    inner: Arc<Inner>,
}

impl<T: Source> Registration<T> {
    /// The registered object, for syscalls.
    pub fn get_ref(&self) -> &T {
        // `io` is only `None` inside `into_inner`/`drop`, after which `self` is gone.
        self.io.as_ref().unwrap_or_else(|| unreachable_io())
    }

    /// Ready in `direction`, or parks the task's waker until it is.
    pub fn poll_ready(&self, direction: Direction, cx: &mut Context<'_>) -> Poll<ReadyEvent> {
        if !self.inner.selector.needs_rearm() {
            return self.scheduled.poll_ready(direction, cx, None);
        }
        // Oneshot platforms disarm a source after each event: a task that parks arms it for
        // the directions awaited, unless it is armed for this one already. If the poller
        // refuses, the task is woken to try again rather than left waiting unwatched.
        let raw = self.get_ref().raw_source();
        let arm = |interest| self.inner.rearm(raw, self.key, interest);
        self.scheduled.poll_ready(direction, cx, Some(&arm))
    }

    /// Forgets the readiness `event` reported, after the syscall returned `EAGAIN` (with it, in
    /// the read direction, a hang-up or error the poller reported: the operation found nothing
    /// left to report); a newer event that arrived meanwhile is kept.
    pub fn clear_readiness(&self, event: ReadyEvent) {
        self.scheduled.clear_readiness(event);
    }

    /// Runs `op` if the source is ready in `direction`: `EAGAIN` clears the readiness and comes
    /// back as `WouldBlock`; anything else is returned as is.
    ///
    /// # Errors
    ///
    /// `WouldBlock` if the source is not ready (or `op` found it was not); `op`'s own errors.
    pub fn try_io<R>(
        &self,
        direction: Direction,
        op: impl FnOnce(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        let Some(event) = self.scheduled.ready_now(direction) else {
            return Err(io::ErrorKind::WouldBlock.into());
        };
        match op(self.get_ref()) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                self.clear_readiness(event);
                Err(error)
            }
            result => result,
        }
    }

    /// Waits until `op` succeeds or fails with something other than `EAGAIN`: the readiness
    /// loop every non-blocking socket operation needs.
    ///
    /// Cancel safety: dropping the future between attempts loses nothing; `op` is only ever
    /// called when the source reported readiness.
    pub async fn io<R>(
        &self,
        direction: Direction,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> io::Result<R> {
        std::future::poll_fn(|cx| self.poll_io(direction, cx, &mut op)).await
    }

    /// The polling form of [`io`](Registration::io), for `poll_*` methods of I/O traits: runs
    /// `op` while the source is ready, clearing the readiness on `EAGAIN`, and parks `cx`'s waker
    /// once it is not.
    pub fn poll_io<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<R>,
    ) -> Poll<io::Result<R>> {
        loop {
            let event = std::task::ready!(self.poll_ready(direction, cx));
            match op(self.get_ref()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.clear_readiness(event)
                }
                result => return Poll::Ready(result),
            }
        }
    }

    /// Like [`io`](Registration::io), for operations that can tell they drained the source:
    /// `op` returns the result and `true` if it consumed everything that was ready (a read
    /// shorter than its buffer on a stream socket). Over raw epoll the readiness is then cleared
    /// at once — an edge-triggered poller reports the next arrival as a new event, and an end of
    /// stream that came with the data stays ready — so the next call waits instead of spending a
    /// syscall on `EAGAIN`. Over `polling`, which cannot see a peer's half-close, the readiness
    /// is kept until an `EAGAIN`, so that such an end of stream is never waited for.
    ///
    /// Cancel safety: as [`io`](Registration::io).
    pub async fn io_drained<R>(
        &self,
        direction: Direction,
        mut op: impl FnMut(&T) -> io::Result<(R, bool)>,
    ) -> io::Result<R> {
        std::future::poll_fn(|cx| self.poll_io_drained(direction, cx, &mut op)).await
    }

    /// The polling form of [`io_drained`](Registration::io_drained).
    pub fn poll_io_drained<R>(
        &self,
        direction: Direction,
        cx: &mut Context<'_>,
        mut op: impl FnMut(&T) -> io::Result<(R, bool)>,
    ) -> Poll<io::Result<R>> {
        loop {
            let event = std::task::ready!(self.poll_ready(direction, cx));
            match op(self.get_ref()) {
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.clear_readiness(event)
                }
                Ok((result, drained)) => {
                    // Only where the selector would remember an end of stream that came with
                    // the data; elsewhere the next read pays one `EAGAIN` instead of hanging.
                    if drained
                        && !self.inner.selector.needs_rearm()
                        && self.inner.selector.short_read_drains()
                    {
                        self.scheduled.clear_drained(event);
                    }
                    return Poll::Ready(Ok(result));
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }

    /// Deregisters and gives the object back.
    ///
    /// # Errors
    ///
    /// The poller refused to delete the source; the object is dropped (and closed) only after
    /// the attempt, never before.
    pub fn into_inner(mut self) -> io::Result<T> {
        let deleted = self.deregister();
        let io = self.io.take().unwrap_or_else(|| unreachable_io());
        deleted.map(|()| io)
    }

    fn deregister(&mut self) -> io::Result<()> {
        let Some(io) = self.io.as_ref() else {
            return Ok(());
        };
        // First: from here on nothing arms the descriptor, which may close after `delete`.
        self.scheduled.deregister();
        // A forked child's copy of a registration: deleting it would delete the parent's.
        let result = if std::process::id() == self.inner.pid {
            self.inner.selector.delete(io.raw_source())
        } else {
            Ok(())
        };
        self.inner.release_key(self.key);
        result
    }
}

/// `Registration::io` is `Some` for as long as the registration can be used.
#[cold]
fn unreachable_io() -> ! {
    // The field is taken only by `into_inner` (which consumes the registration) and by `drop`.
    panic!("weir-reactor: a registration was used after its object was taken")
}

impl<T: Source> Drop for Registration<T> {
    fn drop(&mut self) {
        // Delete first, then let `io` (and its descriptor) drop with the struct.
        let _ = self.deregister();
    }
}

impl<T: Source + fmt::Debug> fmt::Debug for Registration<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registration")
            .field("io", &self.io)
            .field("key", &self.key)
            .finish()
    }
}

/// Future returned by [`Reactor::sleep_until`].
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    inner: Arc<Inner>,
    deadline: Instant,
    key: Option<TimerKey>,
}

impl Sleep {
    /// When it resolves.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let polled = lock(&this.inner.timers).poll_deadline(&mut this.key, this.deadline, cx);
        if polled.is_ready() {
            this.deadline = Instant::now().min(this.deadline);
        }
        polled
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.inner.timers).remove(key);
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}
