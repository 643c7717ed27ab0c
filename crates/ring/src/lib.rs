//! Weir's io_uring driver: submission batching, multishot ops and provided buffer rings, with an op
//! slab that owns everything the kernel may touch until the op's final completion.
//!
//! **Status: not built yet.** This crate's design is fixed (see `ARCHITECTURE.md` and the
//! workspace's issue for `weir-ring`): an op slab keyed by `user_data` with generations, a
//! syscall-free op-lifecycle state machine checked by loom and Miri, one `io_uring_enter` per
//! driver turn, multishot accept/recv over provided buffer rings, and a teardown that never frees
//! memory the kernel can still write. Until it lands the crate exports nothing, so that nothing
//! can depend on an unfinished driver.
//!
//! Linux only: on other systems the crate is empty and `weir-net` uses `weir-reactor`.
