//! Counters a running server updates and a report it returns.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::ErrorCounts;

/// Live counters of a server; readable while it runs.
#[derive(Default)]
pub struct Metrics {
    active: AtomicU64,
    accepted: AtomicU64,
    completed: AtomicU64,
    forced: AtomicU64,
    queued: AtomicU64,
    backoffs: AtomicU64,
    taken_at_stop: AtomicU64,
    timeouts: Arc<AtomicU64>,
    errors: Mutex<ErrorCounts>,
}

/// What a server did, returned by [`ServerHandle::join`](super::ServerHandle::join).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Connections accepted.
    pub accepted: u64,
    /// Handlers that returned on their own (including after the shutdown began).
    pub completed: u64,
    /// Handlers still running at the deadline, force-closed.
    pub forced: u64,
    /// Times the accept loop had to wait for a permit (the limit was reached).
    pub queued: u64,
    /// Backoffs after resource errors (EMFILE, ENFILE, ENOBUFS, ENOMEM) and accept errors Weir does
    /// not know (retried at once, they could spin).
    pub backoffs: u64,
    /// Of the connections accepted, those a listener's multishot accept (io_uring) had already
    /// taken from the kernel when the shutdown began: served like the others, with their stop
    /// token already cancelled, rather than reset with the listener.
    pub taken_at_stop: u64,
    /// Reads that failed because a client was too slow (first byte or idle timeout).
    pub timeouts: u64,
    /// Accept and setup errors, by kind.
    pub errors: ErrorCounts,
    /// From the shutdown signal to the end of the drain.
    pub drain_time: Duration,
    /// Admission permits free once every worker stopped: equal to `max_connections` unless a
    /// permit was lost.
    pub permits_available: usize,
}

impl Metrics {
    /// Connections being served now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Backoffs so far.
    pub fn backoffs(&self) -> u64 {
        self.backoffs.load(Ordering::Relaxed)
    }

    /// Slow-client read timeouts so far.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.load(Ordering::Relaxed)
    }

    pub(crate) fn timeouts_counter(&self) -> Arc<AtomicU64> {
        self.timeouts.clone()
    }

    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn completed(&self) {
        self.completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn forced(&self) {
        self.forced.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn taken_at_stop(&self) {
        self.taken_at_stop.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn backoff(&self) {
        self.backoffs.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, kind: &'static str) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(kind)
            .or_default() += 1;
    }

    /// Counts a connection as active until the guard drops (also on panic or abort).
    pub(crate) fn active_guard(&self) -> ActiveGuard<'_> {
        self.active.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self)
    }

    pub(crate) fn report(&self) -> Report {
        Report {
            accepted: self.accepted.load(Ordering::Relaxed),
            completed: self.completed.load(Ordering::Relaxed),
            forced: self.forced.load(Ordering::Relaxed),
            queued: self.queued.load(Ordering::Relaxed),
            backoffs: self.backoffs.load(Ordering::Relaxed),
            taken_at_stop: self.taken_at_stop.load(Ordering::Relaxed),
            timeouts: self.timeouts(),
            errors: self
                .errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            drain_time: Duration::ZERO,
            permits_available: 0,
        }
    }
}

pub(crate) struct ActiveGuard<'a>(&'a Metrics);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics")
            .field("active", &self.active())
            .field("accepted", &self.accepted_total())
            .field("backoffs", &self.backoffs())
            .finish_non_exhaustive()
    }
}
