//! The crate's one source of synchronisation primitives: `std` normally, `loom` when the loom
//! models are built (`--cfg weir_loom`, tests only).

#[cfg(all(test, weir_loom))]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(not(all(test, weir_loom)))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Atomics for the syscall-free state machines that the loom models check (the notifier's
/// wake-up flag). `Ordering` is the same type under loom and std.
#[cfg(target_os = "linux")]
pub(crate) mod atomic {
    #[cfg(all(test, weir_loom))]
    pub(crate) use loom::sync::atomic::{AtomicBool, Ordering, fence};
    #[cfg(not(all(test, weir_loom)))]
    pub(crate) use std::sync::atomic::{AtomicBool, Ordering, fence};
}

/// Locks `mutex`, ignoring poisoning: no code in this crate runs user code while holding a lock.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The driver's own sharing, in code that makes real syscalls and so is never run under loom:
/// always `std`. (The op table and the notifier's wake-up flag are what the models check.)
#[cfg(target_os = "linux")]
pub(crate) mod unmodelled {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
    pub(crate) use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
}
