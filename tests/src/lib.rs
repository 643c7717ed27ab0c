//! Cross-crate scenarios for Weir, run once per backend by `cargo xtask ci`.
//!
//! The scenarios live in `tests/`; this library holds the helpers they share.
