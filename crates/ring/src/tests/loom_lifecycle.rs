//! Loom models: a completion on the driver's thread racing a future dropped on another.

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

use crate::lifecycle::{CancelOutcome, CompleteOutcome, Cqe, OpTable};

/// Resources that count their release and check the kernel was done with them.
struct Parked {
    kernel_done: Arc<AtomicUsize>,
    released: Arc<AtomicUsize>,
}

impl Drop for Parked {
    fn drop(&mut self) {
        assert_eq!(
            self.kernel_done.load(Ordering::SeqCst),
            1,
            "released before the final CQE"
        );
        self.released.fetch_add(1, Ordering::SeqCst);
    }
}

const DONE: Cqe = Cqe {
    result: 0,
    flags: 0,
};

#[test]
fn cancel_races_completion() {
    loom::model(|| {
        let table = Arc::new(OpTable::new());
        let kernel_done = Arc::new(AtomicUsize::new(0));
        let released = Arc::new(AtomicUsize::new(0));
        let id = table.insert(Parked {
            kernel_done: kernel_done.clone(),
            released: released.clone(),
        });
        let driver = {
            let (table, kernel_done) = (table.clone(), kernel_done.clone());
            thread::spawn(move || {
                kernel_done.store(1, Ordering::SeqCst);
                match table.complete(id.user_data(), DONE, |_, _| {}) {
                    CompleteOutcome::Reaped(parked) => drop(parked),
                    CompleteOutcome::Queued(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            })
        };
        match table.cancel(id, |_, _| {}) {
            CancelOutcome::Released(parked) => drop(parked),
            CancelOutcome::CancelInKernel(_) => {}
            CancelOutcome::Gone => panic!("the op vanished"),
        }
        driver.join().expect("driver");
        assert_eq!(released.load(Ordering::SeqCst), 1, "released exactly once");
        assert!(table.is_empty());
    });
}

#[test]
fn late_cqe_races_slot_reuse() {
    loom::model(|| {
        let table = Arc::new(OpTable::new());
        let first = table.insert(1u8);
        table.complete(first.user_data(), DONE, |_, _| {});
        let late = {
            let table = table.clone();
            thread::spawn(move || {
                // A duplicate CQE for the first op, arriving whenever.
                matches!(
                    table.complete(first.user_data(), DONE, |_, _| {}),
                    CompleteOutcome::Stale
                )
            })
        };
        let cx = &mut std::task::Context::from_waker(std::task::Waker::noop());
        let _ = table.poll_complete(first, cx);
        let second = table.insert(2u8);
        // Whatever the interleaving, the second op is still waiting for its own CQE.
        assert!(table.poll_complete(second, cx).is_pending());
        late.join().expect("late");
    });
}

impl std::fmt::Debug for Parked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parked")
    }
}
