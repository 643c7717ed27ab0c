//! Per-thread caches: each thread keeps a few free buffers of each pool it uses, so that
//! acquiring and releasing on one thread touches no shared cache line in the common case.
//!
//! # Layout
//!
//! ```text
//!  thread-local: [ slot; 4 ]   slot = pool key, up to 64 (id, address) pairs, counter
//!
//!  try_get ─► own slot ──empty──► pop_many from the shared list (half a cache, one exchange)
//!  drop    ─► own slot ──full───► push_all half of it to the shared list (one exchange)
//! ```
//!
//! A cached buffer is counted as free (each slot publishes its length in a counter the pool
//! reads for [`Stats`](crate::Stats)) and holds its unit on the pool's memory, like a `Buf`.
//! A thread gives its cached buffers back when the slot overflows, when a waiter is flagged on
//! the shared list, when the slot is reused for another pool, when the last `Pool` handle drops
//! on that thread, and when the thread exits. Until then, up to one cache's worth of buffers per
//! thread is out of reach of other threads (the pool's docs say so).

use std::cell::RefCell;
use std::ptr::NonNull;

use crate::pool::SharedRef;
use crate::sync::{Arc, AtomicUsize, Ordering};

/// The most buffers one thread caches per pool.
pub(crate) const MAX_CACHE: usize = 64;
/// Pools one thread caches at once.
const SLOTS: usize = 4;

struct Slot {
    /// The pool's unique key (pointers may be reused after a pool is freed; keys are not).
    key: u64,
    /// Valid while `len > 0`: each cached id holds a unit on the pool.
    shared: SharedRef,
    len: usize,
    ids: [u16; MAX_CACHE],
    addresses: [NonNull<u8>; MAX_CACHE],
    /// `len`, published for the pool's statistics (written only by this thread).
    published: Arc<AtomicUsize>,
}

impl Slot {
    fn publish(&self) {
        // Relaxed: statistics only; a plain store on a line only this thread writes.
        self.published.store(self.len, Ordering::Relaxed);
    }

    /// Returns the `count` most recently cached buffers to the shared list.
    fn give_back(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        let start = self.len - count;
        self.len = start;
        self.publish();
        // SAFETY: the `count` ids each hold a unit, which `give_back` passes to the list.
        unsafe { self.shared.give_back(&self.ids[start..start + count]) };
    }
}

struct Caches {
    slots: [Option<Slot>; SLOTS],
    /// The slot used last: checked first.
    recent: usize,
    /// The thread is exiting: no new slots.
    exited: bool,
}

impl Caches {
    /// The recent slot, if it belongs to the pool with `key`.
    #[inline(always)]
    fn recent(&mut self, key: u64) -> Option<&mut Slot> {
        self.slots
            .get_mut(self.recent)?
            .as_mut()
            .filter(|slot| slot.key == key)
    }

    /// This thread's slot for the pool, found or (if `create`) claimed, and made recent.
    #[cold]
    fn find(&mut self, shared: SharedRef, create: bool) -> Option<&mut Slot> {
        // SAFETY: callers hold a unit or a `Pool` handle for the duration of the call.
        let key = unsafe { shared.get() }.key;
        let index = match self
            .slots
            .iter()
            .position(|slot| slot.as_ref().is_some_and(|s| s.key == key))
        {
            Some(index) => index,
            None if create && !self.exited => {
                // Registers the exit guard; `None` if the thread is already past that point.
                EXIT.try_with(|_| ()).ok()?;
                self.claim(shared)
            }
            None => return None,
        };
        self.recent = index;
        self.slots[index].as_mut()
    }

    /// Finds a slot for a pool this thread has no slot for: an unused one, else the last one,
    /// whose buffers go back to their pool. Registers the slot's counter with the pool.
    fn claim(&mut self, shared: SharedRef) -> usize {
        // Slots of pools whose last handle dropped give their buffers back now.
        for slot in self.slots.iter_mut().flatten() {
            // SAFETY: a slot with cached ids holds units, so its pool is alive.
            if slot.len > 0 && !unsafe { slot.shared.get() }.is_open() {
                slot.give_back(slot.len);
            }
        }
        let index = self
            .slots
            .iter()
            .position(|slot| slot.as_ref().is_none_or(|s| s.len == 0))
            .unwrap_or(SLOTS - 1);
        if let Some(slot) = self.slots[index].as_mut() {
            slot.give_back(slot.len);
        }
        // SAFETY: the caller holds a unit or a handle.
        let pool = unsafe { shared.get() };
        self.slots[index] = Some(Slot {
            key: pool.key,
            shared,
            len: 0,
            ids: [0; MAX_CACHE],
            addresses: [NonNull::dangling(); MAX_CACHE],
            published: pool.register_cache(),
        });
        index
    }
}

thread_local! {
    // No destructor on the caches themselves, so the hot path reaches them without a
    // registration check; `EXIT` below gives their buffers back when the thread ends.
    static CACHES: RefCell<Caches> = const {
        RefCell::new(Caches {
            slots: [const { None }; SLOTS],
            recent: 0,
            exited: false,
        })
    };
    static EXIT: ExitGuard = const { ExitGuard };
}

/// Registered (touched) when a thread first claims a slot; at thread exit it gives every cached
/// buffer back and turns caching off for the rest of the thread's teardown, so a `Buf` dropped
/// by a later thread-local destructor goes straight to its pool's shared list.
struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let _ = CACHES.try_with(|caches| {
            if let Ok(mut caches) = caches.try_borrow_mut() {
                caches.exited = true;
                for slot in &mut caches.slots {
                    if let Some(slot) = slot.as_mut() {
                        slot.give_back(slot.len);
                    }
                    *slot = None;
                }
            }
        });
    }
}

/// Runs `f` on this thread's cache. `None` while the thread is exiting (its caches are gone) or
/// if called re-entrantly.
#[inline(always)]
fn with_caches<R>(f: impl FnOnce(&mut Caches) -> Option<R>) -> Option<R> {
    CACHES
        .try_with(|caches| f(&mut *caches.try_borrow_mut().ok()?))
        .ok()
        .flatten()
}

/// A cached buffer of the pool, refilling the cache from the shared list if it is empty.
/// `None` if this thread has none and the shared list is empty too, or a waiter is flagged
/// (this thread's cached buffers then go to the shared list, to serve it).
///
/// The caller holds a `Pool` handle.
#[inline(always)]
pub(crate) fn pop(shared: SharedRef) -> Option<(u16, NonNull<u8>)> {
    // SAFETY: the caller holds a handle.
    let pool = unsafe { shared.get() };
    with_caches(|caches| {
        if let Some(slot) = caches.recent(pool.key) {
            if slot.len > 0 && !pool.free.has_waiters() {
                slot.len -= 1;
                slot.publish();
                return Some((slot.ids[slot.len], slot.addresses[slot.len]));
            }
        }
        pop_slow(caches.find(shared, true)?, shared)
    })
}

#[cold]
fn pop_slow(slot: &mut Slot, shared: SharedRef) -> Option<(u16, NonNull<u8>)> {
    // SAFETY: the caller holds a handle.
    let pool = unsafe { shared.get() };
    if pool.free.has_waiters() {
        slot.give_back(slot.len);
        return None;
    }
    if slot.len == 0 {
        let batch = pool.cache_capacity.div_ceil(2);
        let taken = shared.take(&mut slot.ids[..batch]);
        for i in 0..taken {
            slot.addresses[i] = pool.address_of_taken(slot.ids[i]);
        }
        slot.len = taken;
    }
    slot.len = slot.len.checked_sub(1)?;
    slot.publish();
    Some((slot.ids[slot.len], slot.addresses[slot.len]))
}

/// Caches a released buffer; gives back half the cache first if it is full. `false` if this
/// thread cannot cache (it is exiting), so the caller returns the buffer to the shared list.
///
/// The caller passes its unit for `id` to the cache.
#[inline(always)]
pub(crate) fn push(shared: SharedRef, id: u16, address: NonNull<u8>) -> bool {
    // SAFETY: the caller holds a unit (that of `id`).
    let pool = unsafe { shared.get() };
    with_caches(|caches| {
        let slot = match caches.recent(pool.key) {
            Some(slot) if slot.len < pool.cache_capacity => slot,
            _ => {
                let slot = caches.find(shared, true)?;
                if slot.len == pool.cache_capacity {
                    slot.give_back(pool.cache_capacity.div_ceil(2));
                }
                slot
            }
        };
        slot.ids[slot.len] = id;
        slot.addresses[slot.len] = address;
        slot.len += 1;
        slot.publish();
        Some(())
    })
    .is_some()
}

/// Gives this thread's cached buffers of the pool back to its shared list.
pub(crate) fn flush(shared: SharedRef) {
    with_caches(|caches| {
        let slot = caches.find(shared, false)?;
        slot.give_back(slot.len);
        Some(())
    });
}
