//! Integration tests of `weir-ring`: the op lifecycle against scripted completions (proptest),
//! and real-kernel tests over io_uring.

mod lifecycle_model;
mod more_ops;
mod provided;
mod real_kernel;
mod support;
mod threads;
