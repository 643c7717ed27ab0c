//! The crate's one source of synchronisation primitives: `std` normally, `loom` when the loom
//! models are built (`--cfg weir_loom`, tests only).

#[cfg(all(test, weir_loom))]
pub(crate) use loom::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};
#[cfg(not(all(test, weir_loom)))]
pub(crate) use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering},
};

/// Locks `mutex`, ignoring poisoning: no code in this crate runs user code while holding a lock.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Process-wide counters that live in statics, outside any loom model: always `std`.
pub(crate) mod unmodelled {
    pub(crate) use std::sync::atomic::AtomicU64;
}
