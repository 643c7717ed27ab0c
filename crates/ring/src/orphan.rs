//! Rings whose last handle was dropped on a thread that is not their owner.
//!
//! Only the owner may enter the ring (the kernel refuses `io_uring_enter` from any other task
//! on a `SINGLE_ISSUER` ring with `EEXIST`, and runs `DEFER_TASKRUN` completion work only in
//! the owner's enters), so only the owner can cancel what is in flight and reap the final
//! completions; torn down anywhere else, every op — and the descriptors its data holds, a
//! listener staying bound — would be leaked. Such a ring waits here instead, and its owner tears
//! it down at its next [`collect`] (each `Ring::turn` and `Builder::build` on that thread) or
//! when the owner thread exits.
//!
//! # Invariants
//!
//! * `OWNERS` has an entry for a thread from its first ring until its exit; an orphan is
//!   adopted only into a live owner's entry (under the lock), and the owner's exit takes its
//!   entry and the orphans in it under the same lock, so no orphan is left behind by an exit.
//! * `ORPHANS` counts the orphans in `OWNERS`, so a `collect` with none costs one load.

use std::collections::HashMap;

use crate::ring::Shared;
use crate::sync::unmodelled::{AtomicUsize, Mutex, MutexGuard, Ordering};

/// Each live owner thread's orphans, by thread number.
static OWNERS: Mutex<Option<HashMap<u64, Vec<Shared>>>> = Mutex::new(None);

/// How many orphans `OWNERS` holds.
static ORPHANS: AtomicUsize = AtomicUsize::new(0);

/// Locks `OWNERS`, ignoring poisoning (nothing panics while holding it).
fn owners() -> MutexGuard<'static, Option<HashMap<u64, Vec<Shared>>>> {
    OWNERS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Drops the thread's entry, and tears down its orphans, when the thread exits.
struct OwnerExit(u64);

impl Drop for OwnerExit {
    fn drop(&mut self) {
        let orphans = owners()
            .as_mut()
            .and_then(|owners| owners.remove(&self.0))
            .unwrap_or_default();
        tear_down(orphans);
    }
}

thread_local! {
    static OWNER_EXIT: std::cell::RefCell<Option<OwnerExit>> = const {
        std::cell::RefCell::new(None)
    };
}

/// Registers the calling thread (number `thread`) as a ring owner, once.
pub(crate) fn register_owner(thread: u64) {
    // A thread that is exiting (its thread-locals being destroyed) cannot be registered: its
    // rings tear down where their last handle drops, as before.
    let _ = OWNER_EXIT.try_with(|exit| {
        let mut exit = exit.borrow_mut();
        if exit.is_none() {
            owners()
                .get_or_insert_with(HashMap::new)
                .entry(thread)
                .or_default();
            *exit = Some(OwnerExit(thread));
        }
    });
}

/// Hands `shared` to its live owner for teardown; gives it back if the owner has exited.
pub(crate) fn adopt(owner: u64, shared: Shared) -> Option<Shared> {
    let mut guard = owners();
    match guard.as_mut().and_then(|owners| owners.get_mut(&owner)) {
        Some(orphans) => {
            orphans.push(shared);
            // Relaxed: the count only tells `collect` whether to take the lock, which orders
            // the orphans themselves.
            ORPHANS.fetch_add(1, Ordering::Relaxed);
            None
        }
        None => Some(shared),
    }
}

/// Tears down the orphans of the calling thread (number `thread`), if it has any.
pub(crate) fn collect(thread: u64) {
    // Relaxed: see `adopt`; a miss is picked up at the next collect.
    if ORPHANS.load(Ordering::Relaxed) == 0 {
        return;
    }
    let orphans = owners()
        .as_mut()
        .and_then(|owners| owners.get_mut(&thread))
        .map(std::mem::take)
        .unwrap_or_default();
    tear_down(orphans);
}

fn tear_down(orphans: Vec<Shared>) {
    ORPHANS.fetch_sub(orphans.len(), Ordering::Relaxed);
    // Each drop cancels and reaps its ring's ops, on the owner's thread (`Drop for Shared`),
    // with no lock held.
    drop(orphans);
}
