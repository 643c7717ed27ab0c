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
fn a_panic_drops_only_its_task_and_the_rest_of_the_tick_runs() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            // Spawned in one go: all three are polled in the same tick, the panicking one
            // between the others.
            let ran = Rc::new(Cell::new(0));
            let (a, b) = (ran.clone(), ran.clone());
            let before = spawn(async move { a.set(a.get() + 1) });
            let panicking = spawn(async { panic!("a task failed") });
            let after = spawn(async move { b.set(b.get() + 1) });
            assert_eq!(panicking.await, Err(JoinError::Cancelled));
            assert_eq!(before.await, Ok(()));
            assert_eq!(after.await, Ok(()), "{backend:?}");
            assert_eq!(ran.get(), 2);
            // The panicked task's slot is free and reusable.
            assert_eq!(spawn(async { 5 }).await, Ok(5));
        });
    });
}

#[test]
fn a_task_woken_many_times_in_one_tick_is_polled_once() {
    on_each_backend(|backend, rt| {
        rt.block_on(async {
            let polls = Rc::new(Cell::new(0u32));
            let counted = polls.clone();
            let task = spawn(std::future::poll_fn(move |cx| {
                counted.set(counted.get() + 1);
                if counted.get() == 1 {
                    for _ in 0..1000 {
                        cx.waker().wake_by_ref();
                    }
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            }));
            assert_eq!(task.await, Ok(()));
            assert_eq!(
                polls.get(),
                2,
                "{backend:?}: 1000 wakes queue the task once"
            );
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

#[test]
fn handles_spawn_from_other_threads_and_wake_a_blocked_runtime() {
    // Runtimes open descriptors: keep out of the descriptor-counting tests.
    let _serial = crate::support::serial();
    for backend in crate::support::backends() {
        let rt = weir_net::Runtime::builder()
            .backend(backend)
            .build()
            .expect("runtime");
        let handle = rt.handle();
        // The runtime blocks in its driver (no timers, no I/O) until the jobs arrive.
        let senders: Vec<_> = (0..4u64)
            .map(|t| {
                let handle = handle.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    (0..50u64)
                        .map(|i| {
                            handle.spawn(move || async move {
                                weir_net::yield_now().await;
                                std::thread::current()
                                    .name()
                                    .map(str::to_owned)
                                    .map(|_| t * 100 + i)
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let handles: Vec<_> = senders
            .into_iter()
            .flat_map(|s| s.join().expect("sender"))
            .collect();
        let total: u64 = rt.block_on(async {
            let mut total = 0;
            for handle in handles {
                total += handle.await.expect("task").expect("named thread");
            }
            total
        });
        let expected: u64 = (0..4u64)
            .flat_map(|t| (0..50u64).map(move |i| t * 100 + i))
            .sum();
        assert_eq!(total, expected, "{backend:?}");
    }
}

#[test]
fn a_job_for_a_dropped_runtime_resolves_as_cancelled() {
    // Runtimes open descriptors: keep out of the descriptor-counting tests.
    let _serial = crate::support::serial();
    let rt = weir_net::Runtime::new().expect("runtime");
    let handle = rt.handle();
    let queued = handle.spawn(|| async { 1 });
    drop(rt);
    let after = handle.spawn(|| async { 2 });
    let other = weir_net::Runtime::new().expect("runtime");
    assert_eq!(other.block_on(queued), Err(weir_net::JoinError::Cancelled));
    assert_eq!(other.block_on(after), Err(weir_net::JoinError::Cancelled));
}

#[test]
fn workers_run_tasks_on_their_own_threads_and_stop_on_shutdown() {
    // Runtimes open descriptors: keep out of the descriptor-counting tests.
    let _serial = crate::support::serial();
    let workers = weir_net::Runtime::builder()
        .build_workers(2)
        .expect("workers");
    assert_eq!(workers.len(), 2);
    let rt = weir_net::Runtime::new().expect("runtime");
    let names: Vec<String> = (0..2)
        .map(|i| {
            let task = workers.handle(i).spawn(|| async {
                // Worker tasks may do I/O on their worker's driver.
                let socket = weir_net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                let addr = socket.local_addr().expect("addr");
                socket.send_to(b"x".to_vec(), addr).await.0.expect("send");
                let (n, _) = socket.recv_from(Vec::with_capacity(4)).await;
                assert_eq!(n.expect("recv").0, 1);
                std::thread::current().name().unwrap_or("").to_owned()
            });
            rt.block_on(task).expect("worker task")
        })
        .collect();
    assert_eq!(names, ["weir-worker-0", "weir-worker-1"]);
    // A task still running at shutdown is dropped; its handle says so.
    let forever = workers.handle(0).spawn(std::future::pending::<()>);
    workers.shutdown();
    assert_eq!(rt.block_on(forever), Err(weir_net::JoinError::Cancelled));
}
