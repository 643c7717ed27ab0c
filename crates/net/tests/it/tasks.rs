//! The executor: spawn, join, abort, yield, timers, wakes from other threads.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use weir_net::{JoinError, spawn, time, yield_now};

use crate::support::on_each_backend;

#[test]
fn spawn_join_abort_and_panics() {
    on_each_backend(|_, rt| {
        rt.block_on(async {
            let local = Rc::new(Cell::new(0)); // !Send state is fine
            let l = local.clone();
            let task = spawn(async move {
                l.set(1);
                7
            });
            assert_eq!(task.await, Ok(7));
            assert_eq!(local.get(), 1);

            let sleeper = spawn(async {
                time::sleep(Duration::from_secs(60)).await;
            });
            yield_now().await;
            sleeper.abort();
            assert_eq!(sleeper.await, Err(JoinError::Cancelled));

            let panicking = spawn(async {
                panic!("handler failed");
            });
            assert_eq!(panicking.await, Err(JoinError::Cancelled));
        });
    });
}

#[test]
fn a_busy_task_does_not_starve_others() {
    on_each_backend(|_, rt| {
        rt.block_on(async {
            let stop = Rc::new(Cell::new(false));
            let s = stop.clone();
            let busy = spawn(async move {
                let mut spins = 0u64;
                while !s.get() {
                    spins += 1;
                    yield_now().await;
                }
                spins
            });
            let start = Instant::now();
            time::sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            stop.set(true);
            assert!(busy.await.expect("busy") > 0);
        });
    });
}

#[test]
fn a_wake_from_another_thread_unparks_the_driver() {
    on_each_backend(|_, rt| {
        rt.block_on(async {
            let (tx, rx) = std::sync::mpsc::channel::<std::task::Waker>();
            let waker_thread = std::thread::spawn(move || {
                let waker = rx.recv().expect("waker");
                std::thread::sleep(Duration::from_millis(30));
                waker.wake();
            });
            let mut sent = false;
            std::future::poll_fn(|cx| {
                if sent {
                    return std::task::Poll::Ready(());
                }
                sent = true;
                tx.send(cx.waker().clone()).expect("send");
                std::task::Poll::Pending
            })
            .await;
            waker_thread.join().expect("waker thread");
        });
    });
}

#[test]
fn interval_ticks_without_drift() {
    on_each_backend(|_, rt| {
        rt.block_on(async {
            let mut interval = time::interval(Duration::from_millis(5));
            let first = interval.tick().await;
            let fifth = {
                let mut last = first;
                for _ in 0..4 {
                    last = interval.tick().await;
                }
                last
            };
            assert_eq!(
                fifth - first,
                Duration::from_millis(20),
                "scheduled instants drifted"
            );
        });
    });
}
