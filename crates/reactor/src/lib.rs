//! Weir's portable readiness reactor: epoll, kqueue, event ports or IOCP through `polling`, with
//! per-direction wakers, timers and a cross-thread notifier.
//!
//! **Status: not built yet.** The design (see `ARCHITECTURE.md` and the workspace's issue for
//! `weir-reactor`): registrations that delete their source from the poller before its descriptor
//! can close, a readiness tick per direction so that no wake-up is lost and no stale readiness is
//! reported, a timer structure both backends share, and counters a benchmark can read. Until it
//! lands the crate exports nothing.
