//! Cross-crate scenarios for Weir, run once per backend by `cargo xtask ci`.
//!
//! The scenarios live in `tests/`; this library holds the helpers they share.

/// The workspace README's examples (the quick start and the weir-shutdown snippet), compiled as
/// doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
