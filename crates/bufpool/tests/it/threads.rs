//! Buffers crossing threads, and waiting when the pool is exhausted.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use weir_bufpool::Config;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        thread::park();
    }
}

#[test]
fn buffers_freed_on_other_threads_come_home() {
    let pool = Config::new(512, 8).build().expect("config");
    for _ in 0..100 {
        let bufs: Vec<_> = (0..8).map(|_| pool.try_get().expect("free")).collect();
        assert!(pool.try_get().is_none());
        thread::spawn(move || drop(bufs)).join().expect("dropper");
        assert_eq!(pool.stats().free, 8);
    }
}

#[test]
fn waiters_on_an_exhausted_pool_are_all_served() {
    let pool = Config::new(256, 2).build().expect("config");
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let pool = pool.clone();
            thread::spawn(move || {
                let mut ids = HashSet::new();
                for _ in 0..500 {
                    let mut buf = block_on(pool.get());
                    buf.as_full_mut()[0] = t;
                    buf.set_len(1).expect("fits");
                    assert_eq!(buf[0], t, "another thread wrote into a buffer we own");
                    ids.insert(buf.id());
                }
                ids
            })
        })
        .collect();
    for t in threads {
        let ids = t.join().expect("worker");
        assert!(ids.iter().all(|&id| id < 2));
    }
    let stats = pool.stats();
    assert_eq!(stats.in_use, 0);
    assert_eq!(stats.capacity, 2);
}

#[test]
fn dropped_waiter_passes_its_buffer_on() {
    let pool = Config::new(64, 1).build().expect("config");
    let held = pool.try_get().expect("free");
    let noop = &mut Context::from_waker(Waker::noop());
    let mut first = Box::pin(pool.get());
    let mut second = Box::pin(pool.get());
    assert!(first.as_mut().poll(noop).is_pending());
    assert!(second.as_mut().poll(noop).is_pending());
    drop(held); // handed to `first`...
    drop(first); // ...which never takes it
    assert!(matches!(second.as_mut().poll(noop), Poll::Ready(_)));
}

#[test]
fn waiters_are_served_in_arrival_order() {
    let pool = Config::new(64, 1).build().expect("config");
    let held = pool.try_get().expect("free");
    let noop = &mut Context::from_waker(Waker::noop());
    let mut waiters: Vec<_> = (0..4).map(|_| Box::pin(pool.get())).collect();
    for w in &mut waiters {
        assert!(w.as_mut().poll(noop).is_pending());
    }
    drop(held);
    for index in 0..4 {
        let later_pending = waiters[index + 1..]
            .iter_mut()
            .all(|w| w.as_mut().poll(noop).is_pending());
        assert!(later_pending, "a later waiter was served first");
        let Poll::Ready(buf) = waiters[index].as_mut().poll(noop) else {
            panic!("waiter {index} was skipped");
        };
        drop(buf);
    }
    assert_eq!(pool.stats().waits, 4);
}
