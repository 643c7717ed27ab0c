//! Cross-crate scenario: connections that each hold an admission permit, a tracker guard and a
//! pooled buffer drain cleanly, and every permit and buffer comes home.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use weir_bufpool::Config;
use weir_shutdown::{Limit, Token, Tracker, drain};
use weir_testkit::block_on;

#[test]
fn draining_connections_returns_every_permit_and_buffer() {
    const CONNECTIONS: usize = 64;
    const LIMIT: usize = 8;
    let pool = Config::new(4096, LIMIT).build().expect("pool");
    let limit = Limit::new(LIMIT);
    let tracker = Tracker::new();
    let shutdown = Token::new();
    let served = Arc::new(AtomicUsize::new(0));

    let mut handles = Vec::new();
    for n in 0..CONNECTIONS {
        // Admission before "accept": a permit, then a guard, then a buffer.
        let permit = limit_acquire_blocking(&limit);
        let guard = tracker.track().expect("open");
        let mut buf = pool.try_get().expect("one buffer per admitted connection");
        let (stop, served) = (shutdown.child(), served.clone());
        handles.push(thread::spawn(move || {
            let (_permit, _guard) = (permit, guard);
            buf.as_full_mut()[..8].copy_from_slice(&(n as u64).to_le_bytes());
            buf.set_len(8).expect("fits");
            let frozen = buf.freeze();
            assert_eq!(
                u64::from_le_bytes(frozen[..8].try_into().expect("8 bytes")),
                n as u64
            );
            if n >= CONNECTIONS - LIMIT {
                // The last connections are "keep-alive": they stay until told to stop.
                while !stop.is_cancelled() {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            served.fetch_add(1, Ordering::SeqCst);
        }));
    }

    let deadline = Instant::now() + Duration::from_secs(10);
    let report = block_on(drain(&shutdown, &tracker, until(deadline)));
    for handle in handles {
        handle.join().expect("connection");
    }
    assert!(!report.deadline_passed, "{report:?}");
    assert_eq!(report.still_running, 0);
    assert_eq!(served.load(Ordering::SeqCst), CONNECTIONS);
    assert_eq!(limit.available(), LIMIT, "a permit was lost");
    assert_eq!(pool.stats().in_use, 0, "a buffer was lost");
}

fn limit_acquire_blocking(limit: &Limit) -> weir_shutdown::OwnedPermit {
    block_on(limit.acquire_owned()).expect("limit open")
}

/// A deadline future driven by polling the clock (the scenario runs on plain threads).
async fn until(deadline: Instant) {
    std::future::poll_fn(|cx| {
        if Instant::now() >= deadline {
            return std::task::Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}
