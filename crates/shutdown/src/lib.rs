//! Lifecycle primitives for network services: when to stop, what still runs, how much to admit.
//!
//! `weir-shutdown` does no I/O and needs no runtime: its futures park plain
//! [`Waker`](std::task::Waker)s, so they work under Weir, tokio or any other executor.
//!
//! | type | what it is for |
//! |---|---|
//! | [`Token`] | hierarchical cancellation: a server token, one child per connection |
//! | [`Tracker`] | counting in-flight work and waiting until it is done |
//! | [`Limit`] | a fair (FIFO) semaphore: admit no more connections than the service carries |
//! | [`drain`] | cancel, stop admitting, wait for the rest — up to a deadline you provide |
//!
//! # How it works
//!
//! Each primitive keeps its hot path in one atomic word (documented on the type's module) and
//! takes a lock only to park or wake waiters. Every concurrent state machine here is checked by
//! loom models (`cargo xtask ci` runs them) and the unit tests run under Miri.
//!
//! # A graceful shutdown, end to end
//!
//! ```
//! use std::time::Duration;
//! use weir_shutdown::{Limit, Token, Tracker, drain};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shutdown = Token::new();
//! let in_flight = Tracker::new();
//! let admission = Limit::new(2); // at most two connections at once
//!
//! // The accept loop: a permit first, then the connection.
//! let accept_loop = tokio::spawn({
//!     let (shutdown, in_flight, admission) = (shutdown.clone(), in_flight.clone(), admission.clone());
//!     async move {
//!         let mut served = 0;
//!         loop {
//!             let permit = tokio::select! {
//!                 _ = shutdown.cancelled() => break,
//!                 permit = admission.acquire_owned() => permit.expect("limit open"),
//!             };
//!             let Ok(guard) = in_flight.track() else { break };
//!             let connection = shutdown.child();
//!             tokio::spawn(async move {
//!                 let (_permit, _guard) = (permit, guard);
//!                 // Serve requests until told to stop; finish the current one.
//!                 connection.cancelled().await;
//!             });
//!             served += 1;
//!             tokio::task::yield_now().await;
//!         }
//!         served
//!     }
//! });
//!
//! tokio::time::sleep(Duration::from_millis(10)).await;
//! // SIGTERM arrives: stop, and give connections one second to finish.
//! let report = drain(&shutdown, &in_flight, tokio::time::sleep(Duration::from_secs(1))).await;
//! assert!(!report.deadline_passed);
//! assert_eq!(report.still_running, 0);
//! assert_eq!(accept_loop.await.unwrap(), 2, "the limit admitted two connections");
//! # }
//! ```
//!
//! # Features
//!
//! None: the crate depends on `thiserror` alone.

mod drain;
mod error;
mod limit;
mod sync;
mod token;
mod tracker;
mod waiters;

#[cfg(all(test, weir_loom))]
mod tests;

pub use drain::{DrainReport, drain};
pub use error::Error;
pub use limit::{Acquire, AcquireOwned, Limit, MAX_PERMITS, OwnedPermit, Permit};
pub use token::{Cancelled, CancelledOwned, DropGuard, Token};
pub use tracker::{Guard, Tracker, Wait};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
