//! The pool's memory: a few large, zeroed, contiguous regions, each holding a run of buffers.
//!
//! # Layout
//!
//! ```text
//!  region 0                              region 1 (allocated on growth)
//!  ┌────────┬────────┬─────┬────────┐    ┌────────┬────────┬─────┐
//!  │ id 0   │ id 1   │ ... │ id c-1 │    │ id c   │ id c+1 │ ... │
//!  └────────┴────────┴─────┴────────┘    └────────┴────────┴─────┘
//!   ◄stride►  (stride = buffer size rounded up to the alignment; c = buffers per region)
//! ```
//!
//! A buffer's address is `start(regions[id / c]) + (id % c) * stride`, fixed for the pool's
//! lifetime. Regions are allocated zeroed, so every byte a [`Buf`](crate::Buf) can expose is
//! initialised. They are allocated byte-aligned with room to align their start by hand: the
//! allocator then hands out fresh zero pages (calloc's large-allocation path) instead of
//! writing zeros over an aligned allocation, so a pool's untouched buffers cost no resident
//! memory.
//! A region's slot is written once (under the growth lock) and freed only when the pool's last
//! handle — every `Pool` and every `Buf` hold one — is gone.

use std::alloc::{self, Layout};
use std::ptr::{self, NonNull};

use crate::Error;
use crate::sync::{AtomicPtr, Ordering};

pub(crate) struct Regions {
    slots: Box<[AtomicPtr<u8>]>,
    per_region: usize,
    stride: usize,
    align: usize,
    max_buffers: usize,
}

impl Regions {
    pub(crate) fn new(
        buffer_size: usize,
        align: usize,
        per_region: usize,
        max_buffers: usize,
    ) -> Result<Self, Error> {
        if !align.is_power_of_two() {
            return Err(Error::InvalidConfig("alignment must be a power of two"));
        }
        let stride = buffer_size
            .checked_next_multiple_of(align)
            .ok_or(Error::InvalidConfig(
                "buffer size overflows with this alignment",
            ))?;
        stride
            .checked_mul(per_region)
            .and_then(|bytes| bytes.checked_add(align - 1))
            .filter(|bytes| *bytes <= isize::MAX as usize)
            .ok_or(Error::InvalidConfig(
                "a region would exceed the address space",
            ))?;
        let count = max_buffers.div_ceil(per_region);
        Ok(Regions {
            slots: (0..count)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect(),
            per_region,
            stride,
            align,
            max_buffers,
        })
    }

    /// Buffers in region `index` (the last one may be short, so the cap is never exceeded).
    pub(crate) fn buffers_in(&self, index: usize) -> usize {
        self.per_region
            .min(self.max_buffers - index * self.per_region)
    }

    pub(crate) fn region_count(&self) -> usize {
        self.slots.len()
    }

    /// The allocation of region `index`: its buffers plus room to align their start.
    fn layout(&self, index: usize) -> Layout {
        // `new` checked that a full region's size, with that room, fits.
        Layout::from_size_align(self.stride * self.buffers_in(index) + self.align - 1, 1)
            .unwrap_or(Layout::new::<u8>())
    }

    /// Where a region's buffers start in its allocation `base`.
    fn start(&self, base: NonNull<u8>) -> NonNull<u8> {
        let offset = base.addr().get().next_multiple_of(self.align) - base.addr().get();
        // SAFETY: `offset < align`, and the allocation has `align - 1` bytes to spare.
        unsafe { base.add(offset) }
    }

    /// Allocates region `index`. Called once per index, under the pool's growth lock.
    pub(crate) fn allocate(&self, index: usize) -> Result<(), Error> {
        let layout = self.layout(index);
        // SAFETY: `layout` has a non-zero size: `stride` and `buffers_in` are at least 1 (the
        // config rejects zero sizes and counts).
        let memory = unsafe { alloc::alloc_zeroed(layout) };
        if memory.is_null() {
            return Err(Error::OutOfMemory {
                bytes: layout.size(),
            });
        }
        // Release: a thread that later learns of an id in this region (through the free list,
        // which is itself ordered after this store) sees the pointer.
        self.slots[index].store(memory, Ordering::Release);
        Ok(())
    }

    /// The address of buffer `id`, if its region exists.
    pub(crate) fn buffer(&self, id: u16) -> Option<NonNull<u8>> {
        let id = usize::from(id);
        let region = self.slots.get(id / self.per_region)?;
        let start = self.start(NonNull::new(region.load(Ordering::Acquire))?);
        // SAFETY: `id % per_region < buffers_in(region)` whenever `id < max_buffers`, which
        // holds because the region exists only for ids below the cap; the offset is therefore
        // inside the region's allocation.
        Some(unsafe { start.add((id % self.per_region) * self.stride) })
    }

    pub(crate) fn stride(&self) -> usize {
        self.stride
    }

    /// The allocated regions as `(address, length in bytes, first id)`.
    pub(crate) fn allocated(&self) -> impl Iterator<Item = (NonNull<u8>, usize, usize)> + '_ {
        self.slots.iter().enumerate().filter_map(|(index, slot)| {
            let base = NonNull::new(slot.load(Ordering::Acquire))?;
            Some((
                self.start(base),
                self.stride * self.buffers_in(index),
                index * self.per_region,
            ))
        })
    }
}

impl Drop for Regions {
    fn drop(&mut self) {
        for index in 0..self.slots.len() {
            let memory = self.slots[index].load(Ordering::Acquire);
            if !memory.is_null() {
                // SAFETY: `memory` was returned by `alloc_zeroed` with exactly this layout and is
                // freed once: `Regions` is dropped once, after every `Buf` (each holds the pool).
                unsafe { alloc::dealloc(memory, self.layout(index)) };
            }
        }
    }
}
