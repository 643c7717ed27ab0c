//! Integration tests of `weir-shutdown`: the public API under threads, tokio, and proptest models.

mod limit_model;
mod support;
mod threads;
mod tokio_interplay;
