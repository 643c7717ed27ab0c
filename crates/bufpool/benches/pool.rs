//! Micro benchmark of the buffer pool against the system allocator, in one run.
//!
//! `cargo bench -p weir-bufpool --bench pool` (or `cargo xtask bench`). Figures are the best of
//! several rounds, in nanoseconds per acquire+release; the ratio is pool / allocator.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::Instant;

use bytes::BytesMut;
use weir_bufpool::Config;

const ROUNDS: usize = 7;

fn iterations() -> u64 {
    if std::env::var_os("WEIR_BENCH_FULL").is_some() {
        10_000_000
    } else {
        1_000_000
    }
}

fn best(mut body: impl FnMut(u64)) -> f64 {
    let n = iterations();
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            body(n);
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .fold(f64::MAX, f64::min)
}

/// Producer acquires and sends batches of 64, consumer drops them: every release happens on
/// the other thread. Batching keeps the channel's cost (the same for both sides) small.
fn cross_thread<T: Send>(n: u64, mut make: impl FnMut() -> T) {
    const BATCH: u64 = 64;
    let (tx, rx) = mpsc::sync_channel::<Vec<T>>(16);
    std::thread::scope(|scope| {
        scope.spawn(move || rx.iter().for_each(drop));
        for _ in 0..n / BATCH {
            tx.send((0..BATCH).map(|_| make()).collect())
                .expect("consumer alive");
        }
        drop(tx);
    });
}

fn row(name: &str, pool: f64, alloc: f64) {
    println!("{name:<46} {pool:>9.2} {alloc:>9.2} {:>8.2}x", pool / alloc);
}

fn main() {
    println!(
        "weir-bufpool micro benchmark ({} iterations x {ROUNDS} rounds, best round)",
        iterations()
    );
    println!(
        "{:<46} {:>9} {:>9} {:>9}",
        "operation (ns/op)", "pool", "malloc", "ratio"
    );
    for size in [4096usize, 16 * 1024, 64 * 1024] {
        let pool = Config::new(size, 1024).build().expect("config");
        row(
            &format!("acquire+release {} KiB, 1 thread (vs Vec)", size / 1024),
            best(|n| (0..n).for_each(|_| drop(black_box(pool.try_get().expect("free"))))),
            best(|n| (0..n).for_each(|_| drop(black_box(Vec::<u8>::with_capacity(size))))),
        );
        row(
            &format!("acquire+freeze+drop {} KiB (vs BytesMut)", size / 1024),
            best(|n| (0..n).for_each(|_| drop(black_box(pool.try_get().expect("free").freeze())))),
            best(|n| (0..n).for_each(|_| drop(black_box(BytesMut::with_capacity(size).freeze())))),
        );
        let cross_pool = pool.clone();
        row(
            &format!("acquire, release on other thread {} KiB", size / 1024),
            best(|n| {
                cross_thread(n, || {
                    loop {
                        if let Some(buf) = cross_pool.try_get() {
                            break buf;
                        }
                        std::hint::spin_loop();
                    }
                })
            }),
            best(|n| cross_thread(n, || Vec::<u8>::with_capacity(size))),
        );
    }
}
