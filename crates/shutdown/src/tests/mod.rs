//! Loom models of the crate's concurrent state machines (`--cfg weir_loom`, see `cargo xtask ci`).
//!
//! Each model is a couple of threads doing one or two operations, named after the interleaving
//! it explores.

mod loom_limit;
mod loom_token;
mod loom_tracker;
