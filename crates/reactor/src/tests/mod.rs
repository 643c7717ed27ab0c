//! Loom models of the reactor's concurrent state machines (`--cfg weir_loom`, see
//! `cargo xtask ci`).

mod loom_notify;
mod loom_readiness;
