//! Shared pieces of the benchmark binaries: a counting allocator whose count lives in a shared
//! memory file (so the load generator can read it at phase boundaries), CPU pinning, and the
//! load generator's framing of requests and replies ([`framing`]).

pub mod framing;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// Counts heap allocations into a shared counter once [`publish_allocations`] has mapped one.
#[derive(Debug)]
pub struct CountingAllocator;

static COUNTER: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());

// SAFETY: forwards every call to the system allocator unchanged; counting has no effect on the
// memory handed out.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller's contract is passed on to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as above. Forwarded, not left to the default (allocate, then write zeros):
        // the system's zeroed allocation leaves fresh pages untouched, which the memory
        // figures (B8, B9) must see as the servers would without the counter.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn count() {
    let counter = COUNTER.load(Ordering::Relaxed);
    if !counter.is_null() {
        // SAFETY: `counter` points into a shared mapping that stays mapped for the process's
        // lifetime (see `publish_allocations`).
        unsafe { &*counter }.fetch_add(1, Ordering::Relaxed);
    }
}

/// Maps an 8-byte shared file at `path` and counts allocations into it from now on.
///
/// # Errors
///
/// Creating, sizing or mapping the file failed.
pub fn publish_allocations(path: &str) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.set_len(8)?;
    let map = map_shared(&file)?;
    COUNTER.store(map, Ordering::Relaxed);
    std::mem::forget(file); // the mapping outlives the descriptor either way; keep it simple
    Ok(())
}

/// Reads the allocation count another process publishes at `path`.
///
/// # Errors
///
/// Opening or mapping the file failed.
pub fn read_allocations(path: &str) -> std::io::Result<u64> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let map = map_shared(&file)?;
    // SAFETY: a live 8-byte shared mapping, aligned to a page.
    let value = unsafe { &*map }.load(Ordering::Relaxed);
    // SAFETY: unmapping what `map_shared` mapped.
    unsafe { libc::munmap(map.cast(), 8) };
    Ok(value)
}

fn map_shared(file: &std::fs::File) -> std::io::Result<*mut AtomicU64> {
    use std::os::fd::AsRawFd;
    // SAFETY: mmap(2) of 8 bytes of a file we opened read-write; the result is checked.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            8,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(map.cast())
}

/// Pins the calling thread to `cpu`.
///
/// # Errors
///
/// `sched_setaffinity(2)` refused: the CPU does not exist here, or is outside the process's
/// allowed set (a container's cpuset, say). The benchmark reports it rather than measure
/// unpinned without saying so.
pub fn pin_to(cpu: usize) -> std::io::Result<()> {
    // SAFETY: `cpu_set_t` is a plain bit set; all-zero is valid.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live; out-of-range CPUs are ignored (and then the call below fails).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is live and sized as the call expects; 0 is this thread.
    let done = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if done == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// How [`pin_to`] went, as one `key=value` token (no spaces) for a figures line:
/// `pin=ok`, or `pin=failed:<error>`.
pub fn pin_token(pinned: &std::io::Result<()>) -> String {
    match pinned {
        Ok(()) => "pin=ok".to_string(),
        Err(e) => format!(
            "pin=failed:{}",
            e.to_string().replace(char::is_whitespace, "_")
        ),
    }
}
