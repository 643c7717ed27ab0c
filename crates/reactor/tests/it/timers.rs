//! proptest: the timer heap against a sorted-list model.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use weir_reactor::{TimerKey, TimerState, Timers};

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    Cancel(usize),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (0u64..50).prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Cancel),
        2 => (0u64..30).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn timers_match_model(ops in prop::collection::vec(op(), 1..200)) {
        let base = Instant::now();
        let mut now = 0u64;
        let mut timers = Timers::new();
        // Model: (deadline, insertion number, key, pending).
        let mut model: Vec<(u64, usize, TimerKey, bool)> = Vec::new();
        for op in ops {
            match op {
                Op::Insert(delta) => {
                    let deadline = now + delta;
                    let id = model.len();
                    let key = timers.insert(base + Duration::from_millis(deadline), id);
                    model.push((deadline, id, key, true));
                }
                Op::Cancel(i) if !model.is_empty() => {
                    let len = model.len();
                    let entry = &mut model[i % len];
                    let was_pending = entry.3;
                    prop_assert_eq!(timers.remove(entry.2), was_pending);
                    entry.3 = false;
                }
                Op::Advance(delta) => {
                    now += delta;
                    let mut expected: Vec<(u64, usize)> = model
                        .iter()
                        .filter(|e| e.3 && e.0 <= now)
                        .map(|e| (e.0, e.1))
                        .collect();
                    expected.sort_unstable();
                    let mut fired = Vec::new();
                    timers.fire_due(base + Duration::from_millis(now), |id| fired.push(id));
                    let expected_ids: Vec<usize> = expected.iter().map(|e| e.1).collect();
                    prop_assert_eq!(&fired, &expected_ids, "fire order or set differs");
                    for id in fired {
                        model[id].3 = false;
                        prop_assert_eq!(timers.state(model[id].2), TimerState::Fired);
                    }
                }
                _ => {}
            }
            let pending = model.iter().filter(|e| e.3).count();
            prop_assert_eq!(timers.len(), pending);
            let next = model.iter().filter(|e| e.3).map(|e| e.0).min();
            prop_assert_eq!(timers.next_deadline(), next.map(|d| base + Duration::from_millis(d)));
        }
    }
}
