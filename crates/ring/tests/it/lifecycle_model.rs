//! proptest: scripted CQE orders against the op table; every entry released exactly once,
//! only after its final CQE, and every CQE consumed or cleaned up exactly once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use proptest::prelude::*;
use weir_ring::lifecycle::{CQE_F_MORE, CancelOutcome, CompleteOutcome, Cqe, OpId, OpTable};

#[derive(Debug, Clone)]
enum Step {
    Submit {
        multishot: bool,
    },
    /// A CQE for op `n`; multishot ops get `F_MORE` unless `last`.
    Complete {
        n: usize,
        last: bool,
    },
    Poll(usize),
    Drop(usize),
    /// A garbage CQE for a random user_data.
    Garbage(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => any::<bool>().prop_map(|multishot| Step::Submit { multishot }),
        4 => (any::<usize>(), any::<bool>()).prop_map(|(n, last)| Step::Complete { n, last }),
        3 => any::<usize>().prop_map(Step::Poll),
        2 => any::<usize>().prop_map(Step::Drop),
        1 => any::<u64>().prop_map(Step::Garbage),
    ]
}

/// The resources: record their release, and check the kernel had finished with them.
struct Parked {
    op: usize,
    log: Rc<RefCell<Log>>,
}

#[derive(Default)]
struct Log {
    final_cqe_sent: HashMap<usize, bool>,
    released: HashMap<usize, u32>,
    cqes_handled: u64,
}

impl Drop for Parked {
    fn drop(&mut self) {
        let mut log = self.log.borrow_mut();
        assert!(
            log.final_cqe_sent.get(&self.op).copied().unwrap_or(false),
            "op {} released before its final CQE",
            self.op
        );
        *log.released.entry(self.op).or_default() += 1;
    }
}

struct Live {
    id: OpId,
    multishot: bool,
    finished_in_kernel: bool,
    /// `None` while the future exists; `Some` after it dropped (parked or released).
    dropped: bool,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_entry_is_released_once_after_its_final_cqe(steps in prop::collection::vec(step(), 1..120)) {
        let log = Rc::new(RefCell::new(Log::default()));
        let table: OpTable<Parked> = OpTable::new();
        let mut ops: Vec<Live> = Vec::new();
        let mut cqes_sent = 0u64;
        let cx = &mut Context::from_waker(Waker::noop());
        let count = |log: &Rc<RefCell<Log>>| log.borrow_mut().cqes_handled += 1;
        for step in steps {
            match step {
                Step::Submit { multishot } => {
                    let op = ops.len();
                    log.borrow_mut().final_cqe_sent.insert(op, false);
                    let id = table.insert(Parked { op, log: log.clone() });
                    ops.push(Live { id, multishot, finished_in_kernel: false, dropped: false });
                }
                Step::Complete { n, last } if !ops.is_empty() => {
                    let op = n % ops.len();
                    let live = &mut ops[op];
                    if live.finished_in_kernel {
                        continue; // the kernel sends nothing after the final CQE
                    }
                    let last = last || !live.multishot;
                    let cqe = Cqe { result: op as i32, flags: if last { 0 } else { CQE_F_MORE } };
                    if last {
                        live.finished_in_kernel = true;
                        log.borrow_mut().final_cqe_sent.insert(op, true);
                    }
                    cqes_sent += 1;
                    match table.complete(live.id.user_data(), cqe, |_, _| count(&log)) {
                        CompleteOutcome::Queued(_) => prop_assert!(!live.dropped),
                        CompleteOutcome::Discarded => prop_assert!(live.dropped && !last),
                        CompleteOutcome::Reaped(parked) => {
                            prop_assert!(live.dropped && last);
                            drop(parked);
                        }
                        CompleteOutcome::Stale => prop_assert!(false, "a live op's CQE was stale"),
                    }
                }
                Step::Poll(n) if !ops.is_empty() => {
                    let op = n % ops.len();
                    let live = &ops[op];
                    if live.dropped {
                        continue;
                    }
                    if live.multishot {
                        loop {
                            match table.poll_next(live.id, cx) {
                                Poll::Ready(Some(_)) => count(&log),
                                Poll::Ready(None) => {
                                    prop_assert!(live.finished_in_kernel);
                                    ops[op].dropped = true; // the stream ended: nothing left
                                    break;
                                }
                                Poll::Pending => break,
                            }
                        }
                    } else if let Poll::Ready(done) = table.poll_complete(live.id, cx) {
                        let (parked, _) = done.expect("a finished single-shot op is ready");
                        count(&log);
                        prop_assert!(live.finished_in_kernel);
                        drop(parked);
                        ops[op].dropped = true;
                    }
                }
                Step::Drop(n) if !ops.is_empty() => {
                    let op = n % ops.len();
                    if ops[op].dropped {
                        continue;
                    }
                    ops[op].dropped = true;
                    match table.cancel(ops[op].id, |_, _| count(&log)) {
                        CancelOutcome::Released(parked) => {
                            prop_assert!(ops[op].finished_in_kernel);
                            drop(parked);
                        }
                        CancelOutcome::CancelInKernel(_) => prop_assert!(!ops[op].finished_in_kernel),
                        CancelOutcome::Gone => prop_assert!(false, "a live op was gone"),
                    }
                }
                Step::Garbage(user_data) => {
                    let known = ops.iter().any(|o| o.id.user_data() == user_data && !o.finished_in_kernel);
                    if !known {
                        let garbage = Cqe { result: 0, flags: 0 };
                        let outcome = table.complete(user_data, garbage, |_, _| {});
                        prop_assert!(matches!(outcome, CompleteOutcome::Stale));
                    }
                }
                _ => {}
            }
        }
        // The kernel finishes everything (the final CQE of each op), then every future drops.
        for (op, live) in ops.iter_mut().enumerate() {
            if !live.finished_in_kernel {
                live.finished_in_kernel = true;
                log.borrow_mut().final_cqe_sent.insert(op, true);
                cqes_sent += 1;
                if let CompleteOutcome::Reaped(parked) = table.complete(live.id.user_data(), Cqe { result: 0, flags: 0 }, |_, _| count(&log)) {
                    drop(parked);
                }
            }
            if !live.dropped {
                live.dropped = true;
                if let CancelOutcome::Released(parked) = table.cancel(live.id, |_, _| count(&log)) {
                    drop(parked);
                }
            }
        }
        prop_assert!(table.is_empty(), "entries left behind");
        let log = log.borrow();
        for op in 0..ops.len() {
            prop_assert_eq!(log.released.get(&op).copied(), Some(1), "op {} released {:?} times", op, log.released.get(&op));
        }
        prop_assert_eq!(log.cqes_handled, cqes_sent, "a CQE was lost or handled twice");
    }
}
