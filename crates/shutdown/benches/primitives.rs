//! Micro benchmark of the lifecycle primitives against their tokio counterparts, in one run.
//!
//! `cargo bench -p weir-shutdown --bench primitives` (or `cargo xtask bench`). Each figure is the
//! best of several rounds, in nanoseconds per operation; the ratio is Weir / tokio, so below 1.0
//! means Weir is faster. Timings are never asserted anywhere.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

const ROUNDS: usize = 7;

fn iterations() -> u64 {
    if std::env::var_os("WEIR_BENCH_FULL").is_some() {
        20_000_000
    } else {
        2_000_000
    }
}

/// Best-of-`ROUNDS` nanoseconds per iteration of `body`, run on `threads` threads at once.
fn measure(threads: usize, body: impl Fn(u64) + Send + Sync) -> f64 {
    let n = iterations();
    let mut best = f64::MAX;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| body(n));
            }
        });
        best = best.min(start.elapsed().as_nanos() as f64 / n as f64);
    }
    best
}

/// Polls a future that is expected to be ready at once.
fn ready<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => {
            panic!("the benchmark only measures uncontended, immediately ready acquires")
        }
    }
}

fn row(name: &str, weir: f64, tokio: f64) {
    println!("{name:<44} {weir:>9.2} {tokio:>9.2} {:>8.2}x", weir / tokio);
}

fn main() {
    println!(
        "weir-shutdown micro benchmark ({} iterations x {ROUNDS} rounds, best round)",
        iterations()
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9}",
        "operation (ns/op)", "weir", "tokio", "ratio"
    );

    let limit = weir_shutdown::Limit::new(64);
    let semaphore = tokio::sync::Semaphore::new(64);
    row(
        "limit: try_acquire + drop, 1 thread",
        measure(1, |n| {
            (0..n).for_each(|_| drop(black_box(limit.try_acquire().expect("free"))))
        }),
        measure(1, |n| {
            (0..n).for_each(|_| drop(black_box(semaphore.try_acquire().expect("free"))))
        }),
    );
    row(
        "limit: acquire().await + drop, 1 thread",
        measure(1, |n| {
            (0..n).for_each(|_| drop(black_box(ready(limit.acquire()).expect("open"))))
        }),
        measure(1, |n| {
            (0..n).for_each(|_| drop(black_box(ready(semaphore.acquire()).expect("open"))))
        }),
    );
    row(
        "limit: acquire().await + drop, 2 threads",
        measure(2, |n| {
            (0..n).for_each(|_| drop(black_box(ready(limit.acquire()).expect("open"))))
        }),
        measure(2, |n| {
            (0..n).for_each(|_| drop(black_box(ready(semaphore.acquire()).expect("open"))))
        }),
    );
    let owned_limit = limit.clone();
    let owned_semaphore = Arc::new(tokio::sync::Semaphore::new(64));
    row(
        "limit: owned acquire + drop, 1 thread",
        measure(1, |n| {
            (0..n).for_each(|_| drop(black_box(ready(owned_limit.acquire_owned()).expect("open"))))
        }),
        measure(1, |n| {
            (0..n).for_each(|_| {
                drop(black_box(
                    ready(owned_semaphore.clone().acquire_owned()).expect("open"),
                ))
            })
        }),
    );

    let tracker = weir_shutdown::Tracker::new();
    let task_tracker = tokio_util::task::TaskTracker::new();
    row(
        "tracker: track + drop, 1 thread",
        measure(1, |n| {
            (0..n).for_each(|_| drop(black_box(tracker.track().expect("open"))))
        }),
        measure(1, |n| {
            (0..n).for_each(|_| drop(black_box(task_tracker.token())))
        }),
    );
    row(
        "tracker: track + drop, 2 threads",
        measure(2, |n| {
            (0..n).for_each(|_| drop(black_box(tracker.track().expect("open"))))
        }),
        measure(2, |n| {
            (0..n).for_each(|_| drop(black_box(task_tracker.token())))
        }),
    );

    let token = weir_shutdown::Token::new();
    let tokio_token = tokio_util::sync::CancellationToken::new();
    row(
        "token: child + drop, 1 thread",
        measure(1, |n| {
            (0..n / 10).for_each(|_| drop(black_box(token.child())))
        }) * 10.0,
        measure(1, |n| {
            (0..n / 10).for_each(|_| drop(black_box(tokio_token.child_token())))
        }) * 10.0,
    );
}
