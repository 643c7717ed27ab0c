//! Buffers crossing threads, and waiting when the pool is exhausted.

use std::collections::HashSet;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::thread;

use weir_bufpool::Config;
use weir_testkit::block_on;

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

#[test]
fn a_thread_cache_gives_its_buffers_back_when_the_thread_exits() {
    let pool = Config::new(64, 128)
        .thread_cache(16)
        .build()
        .expect("config");
    let worker = pool.clone();
    thread::spawn(move || {
        // Fill this thread's cache: take a batch, return it, take and return again.
        let bufs: Vec<_> = (0..20).map(|_| worker.try_get().expect("free")).collect();
        drop(bufs);
        let cached = worker.stats();
        assert_eq!(cached.in_use, 0, "cached buffers count as free");
    })
    .join()
    .expect("worker");
    // Every buffer is reachable from here: the exiting thread's cache went back to the list.
    let all: Vec<_> = (0..128).map(|_| pool.try_get()).collect();
    assert!(
        all.iter().all(Option::is_some),
        "a buffer stayed in a dead thread's cache"
    );
    assert!(pool.try_get().is_none());
}

#[test]
fn a_waiter_is_served_from_another_threads_cache_on_its_next_release() {
    let pool = Config::new(64, 64).thread_cache(8).build().expect("config");
    let (to_holder, holder_rx) = std::sync::mpsc::channel::<()>();
    let (to_main, main_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let pool = pool.clone();
        thread::spawn(move || {
            // Take every buffer, then return some: they land in this thread's cache.
            let mut bufs: Vec<_> = std::iter::from_fn(|| pool.try_get()).collect();
            assert_eq!(bufs.len(), 64);
            bufs.truncate(60);
            to_main.send(()).expect("main alive");
            holder_rx.recv().expect("main alive");
            // The next release sees the waiter and hands its whole cache over.
            bufs.pop();
            to_main.send(()).expect("main alive");
            holder_rx.recv().expect("main alive");
        })
    };
    main_rx.recv().expect("holder alive");
    assert_eq!(
        pool.stats().free,
        4,
        "four buffers sit in the holder's cache"
    );
    assert!(
        pool.try_get().is_none(),
        "another thread's cache is out of reach"
    );
    let mut waiter = pin!(pool.get());
    // Queued before the holder's release; `block_on` re-polls with its own waker at once.
    assert!(
        waiter
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    to_holder.send(()).expect("holder alive");
    let buf = block_on(waiter);
    assert_eq!(buf.capacity(), 64);
    main_rx.recv().expect("holder alive");
    // The rest of the holder's cache went to the shared list too.
    let rest: Vec<_> = std::iter::from_fn(|| pool.try_get()).collect();
    assert_eq!(rest.len(), 4, "the holder's cache stayed stranded");
    to_holder.send(()).expect("holder alive");
    holder.join().expect("holder");
}
