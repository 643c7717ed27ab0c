//! proptest: a `Limit` driven by random operations, against a plain FIFO model.

use std::collections::VecDeque;
use std::task::Poll;

use proptest::prelude::*;
use weir_shutdown::{Acquire, Error, Limit, Permit};

use crate::support::poll_once;

#[derive(Debug, Clone)]
enum Op {
    Acquire(usize),
    TryAcquire(usize),
    ReleaseOldest,
    ReleaseNewest,
    DropWaiter(usize),
    ReleaseThenDropWaiter(usize),
    Add(usize),
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..=3).prop_map(Op::Acquire),
        1 => (1usize..=2).prop_map(Op::TryAcquire),
        3 => Just(Op::ReleaseOldest),
        1 => Just(Op::ReleaseNewest),
        2 => (0usize..8).prop_map(Op::DropWaiter),
        2 => (0usize..8).prop_map(Op::ReleaseThenDropWaiter),
        1 => (1usize..=2).prop_map(Op::Add),
        1 => Just(Op::Close),
    ]
}

/// The oracle: a counter of free permits and a FIFO of (id, wanted).
struct Model {
    free: usize,
    queue: VecDeque<(usize, usize)>,
    closed: bool,
    grants: Vec<usize>,
}

impl Model {
    fn serve(&mut self) {
        while let Some(&(id, wanted)) = self.queue.front() {
            if wanted > self.free {
                break;
            }
            self.free -= wanted;
            self.queue.pop_front();
            self.grants.push(id);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn limit_matches_fifo_model(initial in 0usize..4, ops in prop::collection::vec(op(), 1..60)) {
        let limit = Limit::new(initial);
        let mut model = Model { free: initial, queue: VecDeque::new(), closed: false, grants: Vec::new() };
        let mut capacity = initial;
        let mut waiters: Vec<(usize, usize, Acquire<'_>)> = Vec::new();
        let mut permits: VecDeque<Permit<'_>> = VecDeque::new();
        let mut grants = Vec::new();
        let mut next_id = 0;

        for op in ops {
            match op {
                Op::Acquire(n) => {
                    let id = next_id;
                    next_id += 1;
                    let mut fut = limit.acquire_many(n);
                    match poll_once(&mut fut) {
                        Poll::Ready(Ok(permit)) => {
                            prop_assert!(!model.closed);
                            prop_assert!(model.queue.is_empty() && model.free >= n, "granted out of turn");
                            model.free -= n;
                            model.grants.push(id);
                            grants.push(id);
                            permits.push_back(permit);
                        }
                        Poll::Ready(Err(error)) => {
                            prop_assert!(model.closed);
                            prop_assert_eq!(error, Error::Closed);
                        }
                        Poll::Pending => {
                            prop_assert!(!model.closed);
                            model.queue.push_back((id, n));
                            waiters.push((id, n, fut));
                        }
                    }
                }
                Op::TryAcquire(n) => match limit.try_acquire_many(n) {
                    Ok(permit) => {
                        prop_assert!(!model.closed && model.queue.is_empty() && model.free >= n);
                        model.free -= n;
                        permits.push_back(permit);
                    }
                    Err(Error::Closed) => prop_assert!(model.closed),
                    Err(Error::NoPermits) => prop_assert!(model.closed || !model.queue.is_empty() || model.free < n),
                    Err(other) => prop_assert!(false, "unexpected {other:?}"),
                },
                Op::ReleaseOldest | Op::ReleaseNewest => {
                    let permit = if matches!(op, Op::ReleaseOldest) { permits.pop_front() } else { permits.pop_back() };
                    if let Some(permit) = permit {
                        model.free += permit.count();
                        drop(permit);
                        model.serve();
                    }
                }
                Op::DropWaiter(index) => drop_waiter(&mut waiters, &mut model, index),
                Op::ReleaseThenDropWaiter(index) => {
                    // The release may grant the waiter that is then dropped before it is polled:
                    // its permits must pass on.
                    if let Some(permit) = permits.pop_front() {
                        model.free += permit.count();
                        drop(permit);
                        model.serve();
                    }
                    drop_waiter(&mut waiters, &mut model, index);
                }
                Op::Add(n) => {
                    limit.add_permits(n).expect("far below the maximum");
                    capacity += n;
                    model.free += n;
                    model.serve();
                }
                Op::Close => {
                    limit.close();
                    model.closed = true;
                    model.queue.clear();
                }
            }

            // Collect what the limit granted, in arrival order, and compare with the model.
            let mut still_waiting = Vec::new();
            for (id, n, mut fut) in waiters.drain(..) {
                match poll_once(&mut fut) {
                    Poll::Ready(Ok(permit)) => {
                        prop_assert_eq!(permit.count(), n);
                        grants.push(id);
                        permits.push_back(permit);
                    }
                    Poll::Ready(Err(error)) => {
                        prop_assert!(model.closed);
                        prop_assert_eq!(error, Error::Closed);
                    }
                    Poll::Pending => still_waiting.push((id, n, fut)),
                }
            }
            waiters = still_waiting;
            let model_grants: Vec<usize> = model.grants.clone();
            prop_assert_eq!(&grants, &model_grants, "grant order differs from FIFO");
            let out: usize = permits.iter().map(Permit::count).sum();
            prop_assert!(out <= capacity, "{out} permits out of {capacity}");
            if !model.closed {
                prop_assert_eq!(limit.available(), if model.queue.is_empty() { model.free } else { 0 });
            }
        }

        drop(waiters);
        drop(permits);
        prop_assert_eq!(limit.available(), capacity, "permits were lost");
    }
}

/// Drops the `index`-th pending future, in the implementation and in the model.
fn drop_waiter(waiters: &mut Vec<(usize, usize, Acquire<'_>)>, model: &mut Model, index: usize) {
    if waiters.is_empty() {
        return;
    }
    let (id, wanted, fut) = waiters.remove(index % waiters.len());
    drop(fut);
    if let Some(position) = model.queue.iter().position(|&(q, _)| q == id) {
        model.queue.remove(position);
    } else if let Some(position) = model.grants.iter().position(|&g| g == id) {
        // Granted but never collected: the grant is void and its permits pass on.
        model.grants.remove(position);
        model.free += wanted;
    }
    model.serve();
}
