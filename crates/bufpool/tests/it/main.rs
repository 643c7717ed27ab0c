//! Integration tests of `weir-bufpool`: model checking with proptest, threads, churn, and
//! allocation counting.

mod alloc_count;
mod churn;
mod model;
mod threads;
