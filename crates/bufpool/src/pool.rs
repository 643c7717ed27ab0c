//! The pool: configuration, acquisition, waiting when exhausted, growth, and statistics.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll, Waker};

use crate::freelist::FreeList;
use crate::regions::Regions;
use crate::sync::{Arc, AtomicUsize, Mutex, Ordering, lock};
use crate::{Buf, Error};

/// The most buffers one pool can hold: ids are `u16`.
pub const MAX_BUFFERS: usize = 1 << 16;

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

    /// Allocates the initial buffers.
    ///
    /// # Errors
    ///
    /// [`Error::TooManyBuffers`] above [`MAX_BUFFERS`], [`Error::InvalidConfig`] for zero sizes
    /// or a bad alignment, [`Error::OutOfMemory`] if the allocator refuses.
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
        let regions = Regions::new(self.buffer_size, self.align, chunk, max)?;
        let shared = Shared {
            regions,
            free: FreeList::new(max),
            buffer_size: self.buffer_size,
            max_buffers: max,
            allocated: AtomicUsize::new(0),
            growth: Mutex::new(0),
            waiters: Mutex::new(Waiters::default()),
            in_use: AtomicUsize::new(0),
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
#[derive(Clone)]
pub struct Pool {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) regions: Regions,
    free: FreeList,
    pub(crate) buffer_size: usize,
    max_buffers: usize,
    /// Buffers whose region exists (ids `0..allocated` are valid).
    allocated: AtomicUsize,
    /// Serialises growth; holds the number of regions allocated.
    growth: Mutex<usize>,
    /// Futures waiting for a buffer; non-empty exactly while the free list's waiters bit is set
    /// (both change under this lock).
    waiters: Mutex<Waiters>,
    in_use: AtomicUsize,
    high_water: AtomicUsize,
    waits: AtomicUsize,
    growth_events: AtomicUsize,
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
    /// A buffer handed straight to this waiter by a release.
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
    /// Buffers free now.
    pub free: usize,
    /// The most buffers ever in use at once.
    pub high_water: usize,
    /// Acquisitions that had to wait for a buffer.
    pub waits: usize,
    /// Times the pool grew.
    pub growth_events: usize,
}

impl Pool {
    /// A free buffer (length 0), or `None` if every buffer is in use and the cap is reached.
    pub fn try_get(&self) -> Option<Buf> {
        let id = self.shared.free.pop().or_else(|| self.shared.grow())?;
        Some(self.shared.hand_out(&self.shared, id))
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
        let in_use = shared.in_use.load(Ordering::Relaxed);
        Stats {
            capacity,
            max_buffers: shared.max_buffers,
            in_use,
            free: capacity.saturating_sub(in_use),
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
        Ok(Buf::new(self.shared.clone(), ptr, id, len))
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

    fn hand_out(&self, shared: &Arc<Shared>, id: u16) -> Buf {
        // Relaxed: statistics only.
        let now = self.in_use.fetch_add(1, Ordering::Relaxed) + 1;
        self.high_water.fetch_max(now, Ordering::Relaxed);
        // Every id on the free list or handed out by growth has an allocated region.
        let ptr = self.regions.buffer(id).unwrap_or(NonNull::dangling());
        Buf::new(shared.clone(), ptr, id, 0)
    }

    /// Adds a region if the cap allows; returns one of its buffers (the rest go on the list).
    fn grow(&self) -> Option<u16> {
        let mut regions = lock(&self.growth);
        // Another thread may have grown while we waited for the lock.
        if let Some(id) = self.free.pop() {
            return Some(id);
        }
        if *regions >= self.regions.region_count() {
            return None;
        }
        self.grow_locked(&mut regions).ok()?;
        self.growth_events.fetch_add(1, Ordering::Relaxed);
        self.free.pop()
    }

    fn grow_locked(&self, regions: &mut usize) -> Result<(), Error> {
        let index = *regions;
        self.regions.allocate(index)?;
        *regions += 1;
        let first = index * self.regions_per_chunk();
        let count = self.regions.buffers_in(index);
        // Release: ids below `allocated` have their region published.
        self.allocated.fetch_add(count, Ordering::Release);
        for id in (first..first + count).rev() {
            // Ids stay below MAX_BUFFERS (checked in `Config::build`).
            self.free.push(id as u16);
        }
        Ok(())
    }

    fn regions_per_chunk(&self) -> usize {
        self.regions.buffers_in(0)
    }

    /// Returns buffer `id` to the pool: straight to the oldest waiter if there is one.
    pub(crate) fn release(&self, id: u16) {
        self.in_use.fetch_sub(1, Ordering::Relaxed);
        // The push reports the waiters bit from the same atomic word a waiter sets it in, so
        // either the waiter saw this buffer or this release sees the waiter.
        if self.free.push(id) {
            self.serve_waiters();
        }
    }

    /// Hands free buffers to queued waiters, oldest first.
    fn serve_waiters(&self) {
        let mut wakers = Vec::new();
        {
            let mut waiters = lock(&self.waiters);
            while let Some(&front) = waiters.queue.front() {
                let Some(id) = self.free.pop() else { break };
                waiters.queue.pop_front();
                let slot = &mut waiters.slots[front];
                slot.assigned = Some(id);
                wakers.extend(slot.waker.take());
            }
            if waiters.queue.is_empty() {
                self.free.clear_waiters();
            }
        }
        wakers.into_iter().for_each(Waker::wake);
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
        let shared = &this.pool.shared;
        if this.slot.is_none() {
            if let Some(buf) = this.pool.try_get() {
                return Poll::Ready(buf);
            }
        }
        let mut waiters = lock(&shared.waiters);
        if let Some(index) = this.slot {
            if let Some(id) = waiters.slots[index].assigned.take() {
                waiters.free_slots.push(index);
                this.slot = None;
                drop(waiters);
                return Poll::Ready(shared.hand_out(shared, id));
            }
            let slot = &mut waiters.slots[index];
            if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                slot.waker = Some(cx.waker().clone());
            }
            return Poll::Pending;
        }
        // Growth first (it only adds buffers), then pop or flag ourselves in one exchange: see
        // `Shared::release`.
        if let Some(id) = shared.grow() {
            drop(waiters);
            return Poll::Ready(shared.hand_out(shared, id));
        }
        if let Some(id) = shared.free.pop_or_flag_waiters() {
            if waiters.queue.is_empty() {
                shared.free.clear_waiters();
            }
            drop(waiters);
            return Poll::Ready(shared.hand_out(shared, id));
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
            shared.in_use.fetch_add(1, Ordering::Relaxed);
            shared.release(id);
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
}
