//! Helpers shared by the reactor's integration tests: driving a future on the reactor.

use std::future::Future;

use weir_reactor::Reactor;

/// Polls `fut` to completion, turning `reactor` between polls; fails the test after
/// [`weir_testkit::WATCHDOG`] without a wake-up (a lost wake-up would otherwise hang the suite).
pub(crate) fn block_on<F: Future>(reactor: &Reactor, fut: F) -> F::Output {
    weir_testkit::block_on_turning(fut, |timeout| {
        reactor.turn(Some(timeout)).expect("turn");
    })
}
