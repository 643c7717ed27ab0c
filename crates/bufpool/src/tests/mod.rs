//! Loom models of the pool's concurrent state machines (`--cfg weir_loom`, see `cargo xtask ci`).

mod loom_freelist;
mod loom_pool;
