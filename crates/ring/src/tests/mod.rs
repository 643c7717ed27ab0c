//! Loom models of the op lifecycle and the notifier's wake-up protocol (`--cfg weir_loom`, see
//! `cargo xtask ci`).

mod loom_lifecycle;
#[cfg(target_os = "linux")]
mod loom_notify;
