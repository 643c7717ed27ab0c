//! Loom models of the op lifecycle (`--cfg weir_loom`, see `cargo xtask ci`).

mod loom_lifecycle;
