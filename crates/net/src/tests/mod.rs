//! Loom models of the runtime's concurrent state machines (`--cfg weir_loom`, see
//! `cargo xtask ci`).

mod loom_queued;
mod loom_runqueue;
