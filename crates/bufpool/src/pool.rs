//! The pool: configuration, acquisition, waiting when exhausted, growth, and statistics.
//!
//! # Ownership of the pool's memory
//!
//! The shared state (and with it every region) lives in one `Arc`. Each `Pool` handle holds one
//! strong count, and so does every id that is off the shared free list — in a `Buf`, in `Bytes`,
//! in a thread's cache, assigned to a waiter, or with the kernel after [`Buf::into_raw`]. These
//! per-id counts ("units") move with the id, so a buffer can change hands, or sit in a cache,
//! without touching the count; they are added and dropped only when ids leave or rejoin the
//! shared list, in batches.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use crate::cache::{self, MAX_CACHE};
use crate::freelist::FreeList;
use crate::regions::Regions;
use crate::sync::unmodelled::AtomicU64;
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering, lock};
use crate::{Buf, Error};

/// The most buffers one pool can hold: ids are `u16`.
pub const MAX_BUFFERS: usize = 1 << 16;

/// Keys for thread caches: unique per pool for the process's lifetime.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// How to build a [`Pool`].
///
/// # Examples
///
/// ```
/// use weir_bufpool::Config;
///
/// let pool = Config::new(16 * 1024, 256)  // 256 buffers of 16 KiB up front...
///     .max_buffers(1024)                    // ...growing to at most 1024...
///     .growth_chunk(256)                    // ...256 at a time
///     .align(4096)                          // page-aligned, for registration
///     .build()
///     .expect("valid configuration");
/// assert_eq!(pool.stats().capacity, 256);
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    buffer_size: usize,
    buffers: usize,
    max_buffers: Option<usize>,
    growth_chunk: Option<usize>,
    align: usize,
    thread_cache: Option<usize>,
}

impl Config {
    /// `buffers` buffers of `buffer_size` bytes, allocated up front, no growth, 64-byte aligned.
    pub fn new(buffer_size: usize, buffers: usize) -> Self {
        Config {
            buffer_size,
            buffers,
            max_buffers: None,
            growth_chunk: None,
            align: 64,
            thread_cache: None,
        }
    }

    /// Lets the pool grow up to `max` buffers when exhausted (at most [`MAX_BUFFERS`]).
    pub fn max_buffers(mut self, max: usize) -> Self {
        self.max_buffers = Some(max);
        self
    }

    /// How many buffers each growth step adds (default: the initial count).
    pub fn growth_chunk(mut self, chunk: usize) -> Self {
        self.growth_chunk = Some(chunk);
        self
    }

    /// Aligns every buffer to `align` bytes (a power of two; default 64).
    pub fn align(mut self, align: usize) -> Self {
        self.align = align;
        self
    }

    /// How many free buffers each thread may keep in its own cache (at most 64; `0` turns the
    /// caches off). Default: a sixteenth of the pool's cap, at most 64, and no cache for pools
    /// of fewer than 64 buffers — so caches never hold more than a small share of the pool.
    pub fn thread_cache(mut self, buffers: usize) -> Self {
        self.thread_cache = Some(buffers);
        self
    }

    /// Allocates the initial buffers.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyBuffers`] above [`MAX_BUFFERS`], [`Error::InvalidConfig`] for zero sizes,
    /// a bad alignment or a thread cache above 64, [`Error::OutOfMemory`] if the allocator
    /// refuses.
    pub fn build(self) -> Result<Pool, Error> {
        let max = self.max_buffers.unwrap_or(self.buffers).max(self.buffers);
        if max > MAX_BUFFERS {
            return Err(Error::TooManyBuffers { requested: max });
        }
        if self.buffer_size == 0 || self.buffers == 0 {
            return Err(Error::InvalidConfig(
                "buffer size and count must be non-zero",
            ));
        }
        if self.buffer_size > u32::MAX as usize {
            return Err(Error::InvalidConfig("a buffer is at most 4 GiB"));
        }
        let chunk = self.growth_chunk.unwrap_or(self.buffers);
        if chunk == 0 {
            return Err(Error::InvalidConfig("growth chunk must be non-zero"));
        }
        let cache_capacity = match self.thread_cache {
            Some(n) if n > MAX_CACHE => {
                return Err(Error::InvalidConfig(
                    "a thread cache holds at most 64 buffers",
                ));
            }
            Some(n) => n,
            None if max < 64 => 0,
            None => (max / 16).min(MAX_CACHE),
        };
        // The loom models check the shared structures; caches are per-thread and not modelled.
        let cache_capacity = if cfg!(all(test, weir_loom)) {
            0
        } else {
            cache_capacity
        };
        let regions = Regions::new(self.buffer_size, self.align, chunk, max)?;
        let shared = Shared {
            buffer_size: self.buffer_size,
            key: NEXT_KEY.fetch_add(1, Ordering::Relaxed),
            cache_capacity,
            regions,
            free: FreeList::new(max),
            handles: AtomicUsize::new(1),
            max_buffers: max,
            allocated: AtomicUsize::new(0),
            on_list: AtomicUsize::new(0),
            caches: Mutex::new(Vec::new()),
            growth: Mutex::new(0),
            waiters: Mutex::new(Waiters::default()),
            high_water: AtomicUsize::new(0),
            waits: AtomicUsize::new(0),
            growth_events: AtomicUsize::new(0),
        };
        let initial_regions = self.buffers.div_ceil(chunk);
        for _ in 0..initial_regions {
            shared.grow_locked(&mut lock(&shared.growth))?;
        }
        // Initial allocation is not a growth event.
        shared.growth_events.store(0, Ordering::Relaxed);
        Ok(Pool {
            shared: Arc::new(shared),
        })
    }
}

/// A pool of fixed-size I/O buffers. Cheap to clone (clones share the buffers), `Send + Sync`.
///
/// Each thread keeps a small cache of free buffers in front of the shared lock-free list (see
/// [`Config::thread_cache`]), so acquire and release on one thread are a few instructions. A
/// thread's cached buffers are out of other threads' reach until that thread next uses the
/// pool, drops its last handle, or exits; a release or acquire that sees a waiter gives the
/// thread's cache back to the shared list at once.
///
/// # Examples
///
/// ```
/// use weir_bufpool::Config;
///
/// let pool = Config::new(4096, 2).build().expect("config");
/// let mut buf = pool.try_get().expect("a free buffer");
/// buf.as_full_mut()[..5].copy_from_slice(b"hello");
/// buf.set_len(5).expect("within capacity");
/// let bytes = buf.freeze(); // zero-copy `bytes::Bytes`
/// assert_eq!(&bytes[..], b"hello");
/// assert_eq!(pool.stats().in_use, 1);
/// drop(bytes); // the buffer goes home when the last clone drops
/// assert_eq!(pool.stats().in_use, 0);
/// ```
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    // Read on every acquire and release; written once.
    pub(crate) buffer_size: usize,
    /// This pool's key in thread caches.
    pub(crate) key: u64,
    pub(crate) cache_capacity: usize,
    pub(crate) regions: Regions,
    pub(crate) free: FreeList,
    /// `Pool` handles alive; at zero, threads stop caching this pool's buffers.
    handles: AtomicUsize,
    max_buffers: usize,
    /// Buffers whose region exists (ids `0..allocated` are valid).
    allocated: AtomicUsize,
    /// Ids on the shared free list.
    on_list: AtomicUsize,
    /// The length of every thread cache of this pool (see `cache`).
    caches: Mutex<Vec<Arc<AtomicUsize>>>,
    /// Serialises growth; holds the number of regions allocated.
    growth: Mutex<usize>,
    /// Futures waiting for a buffer; non-empty exactly while the free list's waiters bit is set
    /// (both change under this lock).
    waiters: Mutex<Waiters>,
    high_water: AtomicUsize,
    waits: AtomicUsize,
    growth_events: AtomicUsize,
}

/// A pointer to a pool's shared state that keeps the provenance of its `Arc`, so units can be
/// added and dropped through it.
#[derive(Clone, Copy)]
pub(crate) struct SharedRef(NonNull<Shared>);

// SAFETY: a `SharedRef` is a pointer to `Sync` state (atomics and mutexes); what keeps it valid
// is a unit or a handle, which the holder carries alongside.
unsafe impl Send for SharedRef {}

impl SharedRef {
    fn of(shared: &Arc<Shared>) -> Self {
        // `Arc::as_ptr` points into a live allocation, so it is never null.
        SharedRef(NonNull::new(Arc::as_ptr(shared).cast_mut()).unwrap_or(NonNull::dangling()))
    }

    /// # Safety
    ///
    /// The caller holds a unit or a `Pool` handle for as long as the reference is used.
    pub(crate) unsafe fn get<'a>(self) -> &'a Shared {
        // SAFETY: the pointer came from `Arc::as_ptr` and the caller keeps the `Arc` alive.
        unsafe { self.0.as_ref() }
    }

    /// Takes up to `out.len()` ids off the shared list, each with a new unit; returns how many.
    pub(crate) fn take(self, out: &mut [u16]) -> usize {
        // SAFETY: `take` is called with a handle or a unit held (every caller is a `Pool`
        // method, a cache slot in use by one, or a release holding the releasing id's unit).
        let shared = unsafe { self.get() };
        let taken = match out {
            [one] => shared.free.pop().map(|id| *one = id).is_some().into(),
            _ => shared.free.pop_many(out),
        };
        self.took(taken);
        taken
    }

    /// Accounts for `count` ids that just left the shared list: a unit each, and the counters.
    fn took(self, count: usize) {
        if count == 0 {
            return;
        }
        for _ in 0..count {
            // SAFETY: the pointer came from `Arc::as_ptr` of a live `Arc` (the caller's handle
            // or unit keeps it alive); the new count is owned by the id just taken.
            unsafe { Arc::increment_strong_count(self.0.as_ptr().cast_const()) };
        }
        // SAFETY: as in `take`.
        let shared = unsafe { self.get() };
        // Relaxed: statistics only.
        let left = shared.on_list.fetch_sub(count, Ordering::Relaxed) - count;
        let out = shared
            .allocated
            .load(Ordering::Relaxed)
            .saturating_sub(left);
        shared.high_water.fetch_max(out, Ordering::Relaxed);
    }

    /// Puts `ids` back on the shared list, serves waiters, then drops the ids' units — which
    /// may free the pool, so `self` must not be used afterwards unless another unit or a handle
    /// is held.
    ///
    /// # Safety
    ///
    /// The caller owns `ids` (none is on the list or held by anyone else) and each holds a unit.
    #[cold]
    pub(crate) unsafe fn give_back(self, ids: &[u16]) {
        {
            // SAFETY: the ids' units keep the pool alive until the loop below.
            let shared = unsafe { self.get() };
            // Count before pushing, so a concurrent pop never drives the counter below zero.
            shared.on_list.fetch_add(ids.len(), Ordering::Relaxed);
            // The push reports the waiters bit from the same atomic word a waiter sets it in,
            // so either the waiter saw these buffers or we see the waiter.
            if shared.free.push_all(ids) {
                self.serve_waiters();
            }
        }
        for _ in ids {
            // SAFETY: each id held one count, taken with `increment_strong_count` (or the
            // initial `Arc::new` for ids of the build); nothing of the pool is touched after
            // the last one is dropped.
            unsafe { Arc::decrement_strong_count(self.0.as_ptr().cast_const()) };
        }
    }

    /// Hands free buffers to queued waiters, oldest first. Each id handed over takes a unit.
    fn serve_waiters(self) {
        // SAFETY: called from `give_back`, with units held.
        let shared = unsafe { self.get() };
        let mut wakers = Vec::new();
        {
            let mut waiters = lock(&shared.waiters);
            while let Some(&front) = waiters.queue.front() {
                let mut id = [0];
                if self.take(&mut id) == 0 {
                    break;
                }
                waiters.queue.pop_front();
                let slot = &mut waiters.slots[front];
                slot.assigned = Some(id[0]);
                wakers.extend(slot.waker.take());
            }
            if waiters.queue.is_empty() {
                shared.free.clear_waiters();
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Returns a released buffer: to this thread's cache when it can, else to the shared list.
    ///
    /// # Safety
    ///
    /// As for [`give_back`](SharedRef::give_back) with one id: the caller owns `id` and its
    /// unit, and passes both on.
    #[inline(always)]
    pub(crate) unsafe fn release(self, id: u16, address: NonNull<u8>) {
        // SAFETY: `id`'s unit keeps the pool alive for this check.
        let shared = unsafe { self.get() };
        if shared.cache_capacity > 0 && shared.is_open() {
            if !shared.free.has_waiters() {
                if cache::push(self, id, address) {
                    return;
                }
            } else {
                // Someone waits: this thread's cached buffers go to the shared list too.
                cache::flush(self);
            }
        }
        // SAFETY: the caller's contract.
        unsafe { self.give_back(&[id]) };
    }
}

/// Futures waiting for a buffer, served first come, first served.
#[derive(Default)]
struct Waiters {
    slots: Vec<WaitSlot>,
    free_slots: Vec<usize>,
    queue: VecDeque<usize>,
}

#[derive(Default)]
struct WaitSlot {
    waker: Option<Waker>,
    /// A buffer handed straight to this waiter by a release (with its unit).
    assigned: Option<u16>,
}

/// A snapshot of a pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Buffers allocated so far.
    pub capacity: usize,
    /// The cap growth may reach.
    pub max_buffers: usize,
    /// Buffers held by `Buf`s, `Bytes` or the kernel now.
    pub in_use: usize,
    /// Buffers free now, on the shared list or in a thread's cache.
    pub free: usize,
    /// The most buffers ever taken from the shared list at once. Buffers in thread caches count
    /// as taken, so with caches on this may exceed the true peak by up to a cache per thread.
    pub high_water: usize,
    /// Acquisitions that had to wait for a buffer.
    pub waits: usize,
    /// Times the pool grew.
    pub growth_events: usize,
}

impl Pool {
    fn shared_ref(&self) -> SharedRef {
        SharedRef::of(&self.shared)
    }

    /// A free buffer (length 0), or `None` if every buffer is in use and the cap is reached.
    #[inline(always)]
    pub fn try_get(&self) -> Option<Buf> {
        let shared = self.shared_ref();
        if self.shared.cache_capacity > 0 {
            if let Some((id, address)) = cache::pop(shared) {
                return Some(Buf::new(shared, address, id, 0));
            }
        }
        self.try_get_shared()
    }

    /// `try_get` from the shared list (or by growing).
    #[cold]
    fn try_get_shared(&self) -> Option<Buf> {
        let shared = self.shared_ref();
        let mut id = [0];
        if shared.take(&mut id) == 0 && !self.shared.grow(shared, &mut id[0]) {
            return None;
        }
        Some(self.shared.hand_out(shared, id[0]))
    }

    /// Waits for a free buffer; waiters are served in arrival order.
    ///
    /// Cancel safety: a dropped future keeps no place in the queue, and a buffer already handed
    /// to it passes to the next waiter.
    pub fn get(&self) -> Get {
        Get {
            pool: self.clone(),
            slot: None,
        }
    }

    /// The capacity of every buffer, in bytes.
    pub fn buffer_size(&self) -> usize {
        self.shared.buffer_size
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let shared = &self.shared;
        let capacity = shared.allocated.load(Ordering::Acquire);
        let cached: usize = lock(&shared.caches)
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum();
        let free = (shared.on_list.load(Ordering::Relaxed) + cached).min(capacity);
        Stats {
            capacity,
            max_buffers: shared.max_buffers,
            in_use: capacity - free,
            free,
            high_water: shared.high_water.load(Ordering::Relaxed),
            waits: shared.waits.load(Ordering::Relaxed),
            growth_events: shared.growth_events.load(Ordering::Relaxed),
        }
    }

    /// The allocated memory as `(address, length)` pairs, for `IORING_REGISTER_BUFFERS`, with
    /// the id of each region's first buffer. Buffers are `stride` bytes apart.
    ///
    /// A pool that may grow gains regions later; register a pool without growth.
    pub fn regions(&self) -> Vec<RegionView> {
        self.shared
            .regions
            .allocated()
            .map(|(address, len, first_id)| RegionView {
                address,
                len,
                first_id,
                stride: self.shared.regions.stride(),
            })
            .collect()
    }

    /// The address of buffer `id`, for filling a provided buffer ring.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownId`] if the pool never allocated `id`.
    pub fn buffer_address(&self, id: u16) -> Result<NonNull<u8>, Error> {
        self.shared.address_of(id)
    }

    /// Rebuilds the `Buf` for `id` with `len` valid bytes, after the kernel reported filling it
    /// (a provided-buffer-ring completion).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownId`] for an id the pool never allocated, [`Error::LengthOutOfRange`] for a
    /// length beyond the capacity; `id` stays with the caller in both cases.
    ///
    /// # Safety
    ///
    /// `id` must have left this pool through [`Buf::into_raw`] and must not have been rebuilt
    /// since: the returned `Buf` is then its only owner. The kernel must be done with the
    /// memory (its completion was reaped), so no one else writes it while the `Buf` lives.
    pub unsafe fn from_raw(&self, id: u16, len: usize) -> Result<Buf, Error> {
        let ptr = self.shared.address_of(id)?;
        if len > self.shared.buffer_size {
            return Err(Error::LengthOutOfRange {
                len,
                capacity: self.shared.buffer_size,
            });
        }
        // The unit `into_raw` kept passes to the new `Buf`.
        Ok(Buf::new(self.shared_ref(), ptr, id, len))
    }
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        // Relaxed: like an `Arc` count; `Drop` orders the last decrement.
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Pool {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 && self.shared.cache_capacity > 0
        {
            // The last handle: this thread's cache gives the pool's buffers back now; other
            // threads' caches do when they next touch any cache slot, or exit.
            cache::flush(self.shared_ref());
        }
    }
}

/// One allocated region, as the kernel sees it.
#[derive(Debug, Clone, Copy)]
pub struct RegionView {
    /// Start of the region.
    pub address: NonNull<u8>,
    /// Length of the region in bytes.
    pub len: usize,
    /// Id of the buffer at `address`; ids increase by one every `stride` bytes.
    pub first_id: usize,
    /// Distance between consecutive buffers (the buffer size rounded up to the alignment).
    pub stride: usize,
}

impl Shared {
    fn address_of(&self, id: u16) -> Result<NonNull<u8>, Error> {
        if usize::from(id) >= self.allocated.load(Ordering::Acquire) {
            return Err(Error::UnknownId(id));
        }
        self.regions.buffer(id).ok_or(Error::UnknownId(id))
    }

    /// The address of an id just taken from the list (its region exists).
    pub(crate) fn address_of_taken(&self, id: u16) -> NonNull<u8> {
        self.regions.buffer(id).unwrap_or(NonNull::dangling())
    }

    /// Whether a `Pool` handle is still alive.
    pub(crate) fn is_open(&self) -> bool {
        self.handles.load(Ordering::Relaxed) > 0
    }

    /// A counter for a new thread cache's length, registered for [`Pool::stats`].
    pub(crate) fn register_cache(&self) -> Arc<AtomicUsize> {
        let counter = Arc::new(AtomicUsize::new(0));
        let mut caches = lock(&self.caches);
        // Counters of caches that moved on read zero and are held only here.
        caches.retain(|c| Arc::strong_count(c) > 1 || c.load(Ordering::Relaxed) > 0);
        caches.push(counter.clone());
        counter
    }

    fn hand_out(&self, shared: SharedRef, id: u16) -> Buf {
        Buf::new(shared, self.address_of_taken(id), id, 0)
    }

    /// Adds a region if the cap allows and takes one of its buffers into `id` (the rest go on
    /// the list). `false` at the cap.
    fn grow(&self, this: SharedRef, id: &mut u16) -> bool {
        let mut regions = lock(&self.growth);
        // Another thread may have grown while we waited for the lock.
        let mut one = [0];
        if this.take(&mut one) == 1 {
            *id = one[0];
            return true;
        }
        if *regions >= self.regions.region_count() || self.grow_locked(&mut regions).is_err() {
            return false;
        }
        self.growth_events.fetch_add(1, Ordering::Relaxed);
        let taken = this.take(&mut one) == 1;
        *id = one[0];
        taken
    }

    fn grow_locked(&self, regions: &mut usize) -> Result<(), Error> {
        let index = *regions;
        self.regions.allocate(index)?;
        *regions += 1;
        let first = index * self.regions_per_chunk();
        let count = self.regions.buffers_in(index);
        // Release: ids below `allocated` have their region published.
        self.allocated.fetch_add(count, Ordering::Release);
        self.on_list.fetch_add(count, Ordering::Relaxed);
        for id in (first..first + count).rev() {
            // Ids stay below MAX_BUFFERS (checked in `Config::build`).
            self.free.push(id as u16);
        }
        Ok(())
    }

    fn regions_per_chunk(&self) -> usize {
        self.regions.buffers_in(0)
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("buffer_size", &self.shared.buffer_size)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Future returned by [`Pool::get`].
#[must_use = "futures do nothing unless polled"]
pub struct Get {
    pool: Pool,
    /// Our slot in the waiter slab while queued.
    slot: Option<usize>,
}

impl Future for Get {
    type Output = Buf;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Buf> {
        let this = self.get_mut();
        if this.slot.is_none() {
            if let Some(buf) = this.pool.try_get() {
                return Poll::Ready(buf);
            }
        }
        let shared = &this.pool.shared;
        let me = this.pool.shared_ref();
        let mut waiters = lock(&shared.waiters);
        if let Some(index) = this.slot {
            if let Some(id) = waiters.slots[index].assigned.take() {
                waiters.free_slots.push(index);
                this.slot = None;
                drop(waiters);
                return Poll::Ready(shared.hand_out(me, id));
            }
            let slot = &mut waiters.slots[index];
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        // Growth first (it only adds buffers), then pop or flag ourselves in one exchange: see
        // `SharedRef::give_back`.
        let mut id = 0;
        if shared.grow(me, &mut id) {
            drop(waiters);
            return Poll::Ready(shared.hand_out(me, id));
        }
        if let Some(id) = shared.free.pop_or_flag_waiters() {
            me.took(1);
            if waiters.queue.is_empty() {
                shared.free.clear_waiters();
            }
            drop(waiters);
            return Poll::Ready(shared.hand_out(me, id));
        }
        shared.waits.fetch_add(1, Ordering::Relaxed);
        let index = match waiters.free_slots.pop() {
            Some(index) => index,
            None => {
                waiters.slots.push(WaitSlot::default());
                waiters.slots.len() - 1
            }
        };
        waiters.slots[index].waker = Some(cx.waker().clone());
        waiters.queue.push_back(index);
        this.slot = Some(index);
        Poll::Pending
    }
}

impl Drop for Get {
    fn drop(&mut self) {
        let Some(index) = self.slot.take() else {
            return;
        };
        let shared = &self.pool.shared;
        let mut waiters = lock(&shared.waiters);
        let assigned = waiters.slots[index].assigned.take();
        waiters.slots[index].waker = None;
        if assigned.is_none() {
            if let Some(position) = waiters.queue.iter().position(|&i| i == index) {
                waiters.queue.remove(position);
            }
            if waiters.queue.is_empty() {
                shared.free.clear_waiters();
            }
        }
        waiters.free_slots.push(index);
        drop(waiters);
        if let Some(id) = assigned {
            // Handed to us but never taken: pass it on (to the next waiter, if any).
            // SAFETY: the assigned id is ours alone and carries its unit; our handle keeps the
            // pool alive past the call.
            unsafe { self.pool.shared_ref().give_back(&[id]) };
        }
    }
}

impl fmt::Debug for Get {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Get")
            .field("queued", &self.slot.is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noop() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn ids_are_unique_and_addresses_stable() {
        let pool = Config::new(100, 4).align(64).build().expect("config");
        let bufs: Vec<Buf> = (0..4).map(|_| pool.try_get().expect("free")).collect();
        let mut ids: Vec<u16> = bufs.iter().map(Buf::id).collect();
        ids.sort_unstable();
        assert_eq!(ids, [0, 1, 2, 3]);
        for buf in &bufs {
            assert_eq!(pool.buffer_address(buf.id()), Ok(buf.as_ptr()));
            assert_eq!(buf.as_ptr().as_ptr() as usize % 64, 0);
        }
        assert!(pool.try_get().is_none());
    }

    #[test]
    fn growth_stops_at_the_cap() {
        let pool = Config::new(16, 2)
            .max_buffers(5)
            .growth_chunk(2)
            .build()
            .expect("config");
        let bufs: Vec<Buf> = std::iter::from_fn(|| pool.try_get()).collect();
        assert_eq!(bufs.len(), 5);
        let stats = pool.stats();
        assert_eq!(
            (stats.capacity, stats.growth_events, stats.high_water),
            (5, 2, 5)
        );
        assert_eq!(pool.regions().len(), 3);
    }

    #[test]
    fn configuration_errors_are_reported() {
        assert_eq!(
            Config::new(16, 70_000).build().err(),
            Some(Error::TooManyBuffers { requested: 70_000 })
        );
        assert!(matches!(
            Config::new(0, 1).build(),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            Config::new(16, 1).align(3).build(),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(
            Config::new(16, 128).thread_cache(65).build(),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn raw_round_trip_for_the_kernel() {
        let pool = Config::new(64, 2).build().expect("config");
        let mut buf = pool.try_get().expect("free");
        buf.as_full_mut()[..3].copy_from_slice(b"abc");
        let id = buf.into_raw();
        assert_eq!(pool.stats().in_use, 1);
        // SAFETY: `id` came from `into_raw` on this pool and is rebuilt once.
        let back = unsafe { pool.from_raw(id, 3) }.expect("valid id");
        assert_eq!(&back[..], b"abc");
        drop(back);
        assert_eq!(pool.stats().in_use, 0);
        // SAFETY: an id the pool never allocated: the call fails before any `Buf` is built.
        let unknown = unsafe { pool.from_raw(9, 0) };
        assert_eq!(unknown.err(), Some(Error::UnknownId(9)));
        // SAFETY: a length beyond the capacity: the call fails before any `Buf` is built.
        let too_long = unsafe { pool.from_raw(0, 65) };
        assert!(matches!(too_long, Err(Error::LengthOutOfRange { .. })));
    }

    #[test]
    fn set_len_refuses_beyond_capacity() {
        let pool = Config::new(8, 1).build().expect("config");
        let mut buf = pool.try_get().expect("free");
        assert!(buf.set_len(9).is_err());
        assert_eq!(buf.len(), 0);
        buf.set_len(8).expect("fits");
        assert_eq!(&buf[..], &[0; 8], "fresh buffers are zeroed");
    }

    #[test]
    fn freeze_returns_the_buffer_with_the_last_clone() {
        let pool = Config::new(8, 1).build().expect("config");
        let bytes = pool.try_get().expect("free").freeze();
        let clone = bytes.clone();
        drop(bytes);
        assert!(pool.try_get().is_none());
        drop(clone);
        assert!(pool.try_get().is_some());
    }

    #[test]
    fn waiter_is_served_by_a_release_and_a_dropped_one_passes_it_on() {
        let pool = Config::new(8, 1).build().expect("config");
        let held = pool.try_get().expect("free");
        let mut first = Box::pin(pool.get());
        let mut second = Box::pin(pool.get());
        assert!(first.as_mut().poll(&mut noop()).is_pending());
        assert!(second.as_mut().poll(&mut noop()).is_pending());
        drop(held);
        drop(first);
        assert!(second.as_mut().poll(&mut noop()).is_ready());
        assert_eq!(pool.stats().in_use, 0);
    }

    #[test]
    fn thread_caches_recycle_overflow_and_give_back_on_exit() {
        let pool = Config::new(16, 16).thread_cache(4).build().expect("config");
        // Refill (a batch of 2), overflow (give back 2 of 4), and reuse of the same ids.
        let bufs: Vec<Buf> = (0..6).map(|_| pool.try_get().expect("free")).collect();
        drop(bufs);
        assert_eq!(pool.stats().in_use, 0);
        let again = pool.try_get().expect("free");
        assert_eq!(pool.stats().in_use, 1);
        // Released on another thread: that thread's cache takes it, and gives it back when the
        // thread exits.
        let remote = pool.clone();
        std::thread::spawn(move || {
            drop(again);
            let local = remote.try_get().expect("free");
            assert_eq!(remote.stats().in_use, 1);
            drop(local);
        })
        .join()
        .expect("remote thread");
        let all: Vec<Buf> = std::iter::from_fn(|| pool.try_get()).collect();
        assert_eq!(all.len(), 16, "every buffer is reachable again");
        let mut ids: Vec<u16> = all.iter().map(Buf::id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 16, "an id was handed out twice");
    }

    #[test]
    fn a_pool_dropped_with_cached_buffers_frees_its_memory() {
        let pool = Config::new(16, 8).thread_cache(4).build().expect("config");
        let buf = pool.try_get().expect("free");
        let kept = buf.freeze();
        drop(pool);
        // The cache gave its ids back when the last handle dropped; the frozen buffer still
        // reads its memory, and releasing it last frees the pool (Miri reports a leak if not).
        assert_eq!(kept.len(), 0);
        drop(kept);
    }
}
