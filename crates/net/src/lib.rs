//! Weir's runtime and sockets: thread-per-core executors that drive TCP, UDP and Unix sockets
//! through io_uring (`weir-ring`) or a readiness reactor (`weir-reactor`), chosen at start-up.
//!
//! **Status: not built yet.** This is the crate users depend on; it composes the four lower
//! crates (see `ARCHITECTURE.md`). The design: `Runtime::builder()` with `Backend::Auto` probing
//! io_uring once and falling back to the reactor with a recorded reason, owned-buffer I/O
//! (`(io::Result<usize>, B)`), pooled receive from `weir-bufpool`, cancellation that never loses
//! bytes, and a `Server` built on `weir-shutdown`. Until it lands the crate exports nothing.
