//! The crate's one source of synchronisation primitives: `std` normally, `loom` when the loom
//! models are built (`--cfg weir_loom`, tests only). Nothing else in the crate imports
//! `std::sync` directly, so every atomic and lock the models explore is the one that ships.

#[cfg(all(test, weir_loom))]
pub(crate) use loom::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};
#[cfg(not(all(test, weir_loom)))]
pub(crate) use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

/// Immutable, shared payloads (a cancellation reason) that no model needs to explore.
pub(crate) type SharedStr = std::sync::Arc<str>;

/// Locks `mutex`, ignoring poisoning: no code in this crate runs user code while holding a lock,
/// so a poisoned lock only means some other thread panicked, and the data is still consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
