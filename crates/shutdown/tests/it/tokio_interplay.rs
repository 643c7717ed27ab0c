//! The primitives under tokio's executor (they know nothing of it: plain wakers).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weir_shutdown::{Limit, Token, Tracker, drain};

#[test]
fn graceful_drain_under_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let token = Token::new();
        let tracker = Tracker::new();
        let limit = Limit::new(5);
        let inside = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for _ in 0..100 {
            let permit = limit.acquire_owned().await.expect("open");
            let guard = tracker.track().expect("open");
            let (stop, inside, peak) = (token.child(), inside.clone(), peak.clone());
            tokio::spawn(async move {
                // Locals drop in reverse: the permit returns before the guard ends the tracked work.
                let _guard = guard;
                let _permit = permit;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
                inside.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let report = drain(&token, &tracker, tokio::time::sleep(Duration::from_secs(5))).await;
        assert!(!report.deadline_passed);
        assert_eq!(report.still_running, 0);
        assert!(peak.load(Ordering::SeqCst) <= 5);
        assert_eq!(limit.available(), 5);
    });
}

#[test]
fn drain_reports_work_still_running_at_the_deadline() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let token = Token::new();
        let tracker = Tracker::new();
        let mut stuck = Vec::new();
        for _ in 0..20 {
            stuck.push(tracker.track().expect("open")); // never finishes before the deadline
        }
        for _ in 0..5 {
            let guard = tracker.track().expect("open");
            let stop = token.child();
            tokio::spawn(async move {
                stop.cancelled().await;
                drop(guard);
            });
        }
        let report = drain(
            &token,
            &tracker,
            tokio::time::sleep(Duration::from_millis(50)),
        )
        .await;
        assert_eq!(report.in_flight_at_start, 25);
        assert_eq!(report.finished, 5);
        assert_eq!(report.still_running, 20);
        assert!(report.deadline_passed);
        drop(stuck);
        assert!(tracker.is_empty());
    });
}
