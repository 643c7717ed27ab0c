//! Sockets and timers moved between worker threads: a socket keeps its home driver and works
//! from anywhere; a timer stays on the heap it was registered with.

use std::time::Duration;

use weir_net::{Runtime, UnixStream, Workers, time};

use crate::support::{backends, serial};

/// Awaits `fut` on a runtime of this thread, giving up after 10 s. On timeout the workers are
/// leaked (a thread stuck in the defect under test could not be joined) and the test fails.
fn within_ten_seconds<T>(workers: Workers, fut: impl std::future::Future<Output = T>) -> T {
    let rt = Runtime::new().expect("runtime");
    match rt.block_on(time::timeout(Duration::from_secs(10), fut)) {
        Ok(out) => {
            drop(workers);
            out
        }
        Err(_) => {
            std::mem::forget(workers);
            panic!("no progress in 10 s: an operation on a moved socket or timer hung");
        }
    }
}

#[test]
fn a_stream_made_on_one_worker_works_on_another() {
    let _serial = serial();
    for backend in backends() {
        let workers = Runtime::builder()
            .backend(backend)
            .build_workers(2)
            .expect("workers");
        // Both ends are made on worker 0 (their home), then used on worker 1 while worker 0 is
        // idle, blocked in its driver.
        let (a, b) = pair_on_worker_0(&workers);
        let echoed = workers.handle(1).spawn(move || async move {
            let (mut a, mut b) = (a, b);
            let mut total = Vec::new();
            for round in 0..100u8 {
                a.write_all(vec![round; 1000]).await.0.expect("write");
                let (result, buf) = b.read_exact(Vec::new(), 1000).await;
                result.expect("read");
                total.extend_from_slice(&buf);
            }
            total
        });
        let echoed = within_ten_seconds(workers, echoed).expect("worker 1");
        assert_eq!(echoed.len(), 100_000, "{backend:?}");
        assert!(
            echoed
                .chunks(1000)
                .enumerate()
                .all(|(i, c)| c.iter().all(|&x| x == i as u8)),
            "{backend:?}: bytes out of order"
        );
    }
}

#[test]
fn a_stream_works_from_a_thread_with_no_weir_runtime() {
    // What a library polling Weir futures from another executor does: the operations go to the
    // stream's home driver on worker 0; this thread only polls and parks. More round trips than
    // the cooperative budget of one task poll, which applies on runtime threads only.
    let _serial = serial();
    for backend in backends() {
        let workers = Runtime::builder()
            .backend(backend)
            .build_workers(1)
            .expect("workers");
        let (mut a, mut b) = pair_on_worker_0(&workers);
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let total = weir_testkit::block_on(async move {
                let mut total = 0;
                for round in 0..300u32 {
                    a.write_all(round.to_le_bytes().to_vec())
                        .await
                        .0
                        .expect("write");
                    let (result, buf) = b.read_exact(Vec::new(), 4).await;
                    result.expect("read");
                    assert_eq!(buf, round.to_le_bytes());
                    total += buf.len();
                }
                total
            });
            let _ = done.send(total);
        });
        // A watchdog: an operation that yields forever off the runtime would spin, not hang.
        let Ok(echoed) = finished.recv_timeout(Duration::from_secs(30)) else {
            std::mem::forget(workers);
            panic!("{backend:?}: the no-runtime thread made no progress in 30 s");
        };
        assert_eq!(echoed, 1200, "{backend:?}");
        drop(workers);
    }
}

/// A connected pair made on (so homed on) worker 0.
fn pair_on_worker_0(workers: &Workers) -> (UnixStream, UnixStream) {
    within_ten_seconds_keep(workers, async {
        workers
            .handle(0)
            .spawn(|| async { UnixStream::pair().expect("pair") })
            .await
            .expect("worker 0")
    })
}

/// Like `within_ten_seconds`, keeping the workers.
fn within_ten_seconds_keep<T>(workers: &Workers, fut: impl std::future::Future<Output = T>) -> T {
    let _ = workers;
    let rt = Runtime::new().expect("runtime");
    rt.block_on(time::timeout(Duration::from_secs(10), fut))
        .unwrap_or_else(|_| panic!("no progress in 10 s"))
}

#[test]
fn a_timer_dropped_on_another_worker_cancels_only_itself() {
    let _serial = serial();
    for backend in backends() {
        let workers = Runtime::builder()
            .backend(backend)
            .build_workers(2)
            .expect("workers");
        // Worker 0 registers a long timer; it then moves to worker 1, which has a short timer of
        // its own when the moved one is dropped there.
        let moved = within_ten_seconds_keep(&workers, async {
            workers
                .handle(0)
                .spawn(|| async {
                    let mut sleep = Box::pin(time::sleep(Duration::from_secs(3600)));
                    std::future::poll_fn(|cx| {
                        assert!(sleep.as_mut().poll(cx).is_pending());
                        std::task::Poll::Ready(())
                    })
                    .await;
                    SendSleep(sleep)
                })
                .await
                .expect("worker 0")
        });
        let fired = workers.handle(1).spawn(move || async move {
            let mut own = Box::pin(time::sleep(Duration::from_millis(200)));
            let deadline = own.deadline();
            std::future::poll_fn(|cx| {
                assert!(own.as_mut().poll(cx).is_pending());
                std::task::Poll::Ready(())
            })
            .await;
            drop(moved);
            own.await;
            // A sleep never ends before its deadline; one the moved timer's drop had removed from
            // this worker's heap would end at once.
            std::time::Instant::now() >= deadline
        });
        assert!(
            within_ten_seconds(workers, fired).expect("worker 1"),
            "{backend:?}: this worker's own timer ended early: the moved timer's drop removed it"
        );
    }
}

/// A pinned, boxed `Sleep` carried to another thread.
struct SendSleep(
    #[allow(dead_code, reason = "held to be dropped")] std::pin::Pin<Box<time::Sleep>>,
);

use std::future::Future as _;

#[test]
fn a_pooled_read_of_a_ring_socket_on_a_reactor_runtime_fails_clearly() {
    let _serial = serial();
    if !backends().contains(&weir_net::Backend::Uring) {
        println!("SKIPPED: needs the io_uring backend (WEIR_BACKEND forces the reactor)");
        return;
    }
    let workers = Runtime::builder()
        .backend(weir_net::Backend::Uring)
        .build_workers(1)
        .expect("workers");
    let (mut a, _b) = pair_on_worker_0(&workers);
    let rt = Runtime::builder()
        .backend(weir_net::Backend::Poll)
        .build()
        .expect("reactor runtime");
    let result = rt
        .block_on(time::timeout(Duration::from_secs(10), a.read_pooled()))
        .expect("an error, not a hang");
    let error = result.expect_err("a ring socket's pooled read on a reactor runtime");
    assert_eq!(error.kind(), std::io::ErrorKind::Unsupported, "{error}");
    drop(workers);
}
