//! After warm-up, acquiring, filling, freezing and releasing buffers allocates nothing beyond
//! what `Bytes` itself needs for a foreign owner.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use weir_bufpool::Config;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only counts calls on this thread.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: as above (the system's zeroed allocation may leave fresh pages untouched).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn acquire_and_release_allocate_nothing_after_warm_up() {
    let pool = Config::new(4096, 64).build().expect("config");
    // Warm-up.
    drop(pool.try_get());
    let before = allocations();
    for round in 0..10_000 {
        let mut held: [Option<weir_bufpool::Buf>; 4] = Default::default();
        for slot in &mut held {
            let mut buf = pool.try_get().expect("free");
            buf.as_full_mut()[0] = round as u8;
            buf.set_len(1).expect("fits");
            *slot = Some(buf);
        }
    }
    assert_eq!(allocations() - before, 0, "acquire/release allocated");
}

#[test]
fn freeze_allocates_only_the_bytes_owner_box() {
    let pool = Config::new(4096, 8).build().expect("config");
    drop(pool.try_get().expect("free").freeze());
    let before = allocations();
    for _ in 0..1_000 {
        let bytes = pool.try_get().expect("free").freeze();
        let _slice = bytes.slice(..0);
    }
    // `Bytes::from_owner` boxes its owner once per freeze: one allocation each, never more.
    assert_eq!(allocations() - before, 1_000);
}
