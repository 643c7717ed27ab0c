//! proptest: random get/drop/freeze/clone/drop-clone sequences against a model.

use std::collections::HashMap;

use bytes::Bytes;
use proptest::prelude::*;
use weir_bufpool::{Buf, Config};

#[derive(Debug, Clone)]
enum Op {
    Get,
    DropBuf(usize),
    Freeze(usize),
    CloneBytes(usize),
    DropBytes(usize),
    Write(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Get),
        2 => any::<usize>().prop_map(Op::DropBuf),
        2 => any::<usize>().prop_map(Op::Freeze),
        2 => any::<usize>().prop_map(Op::CloneBytes),
        3 => any::<usize>().prop_map(Op::DropBytes),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Op::Write(i, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn pool_matches_model(ops in prop::collection::vec(op(), 1..200), cache in 0usize..=4) {
        const CAP: usize = 8;
        // With and without a thread cache in front of the shared list.
        let pool = Config::new(32, 4)
            .max_buffers(CAP)
            .growth_chunk(2)
            .thread_cache(cache)
            .build()
            .expect("config");
        // Live buffers with the byte each was filled with; frozen bytes with (id, byte).
        let mut bufs: Vec<(Buf, u8)> = Vec::new();
        let mut frozen: Vec<(Bytes, u16, u8)> = Vec::new();
        for op in ops {
            match op {
                Op::Get => {
                    let live_ids = live_ids(&bufs, &frozen);
                    match pool.try_get() {
                        Some(mut buf) => {
                            prop_assert!(!live_ids.contains_key(&buf.id()), "id {} handed out twice", buf.id());
                            let fill = buf.id() as u8 ^ 0x5a;
                            buf.as_full_mut().fill(fill);
                            buf.set_len(32).expect("fits");
                            bufs.push((buf, fill));
                        }
                        None => prop_assert_eq!(live_ids.len(), CAP, "refused with buffers free"),
                    }
                }
                Op::DropBuf(i) if !bufs.is_empty() => { bufs.swap_remove(i % bufs.len()); }
                Op::Freeze(i) if !bufs.is_empty() => {
                    let (buf, fill) = bufs.swap_remove(i % bufs.len());
                    let id = buf.id();
                    frozen.push((buf.freeze(), id, fill));
                }
                Op::CloneBytes(i) if !frozen.is_empty() => {
                    let (bytes, id, fill) = &frozen[i % frozen.len()];
                    let copy = (bytes.slice(1..), *id, *fill);
                    frozen.push(copy);
                }
                Op::DropBytes(i) if !frozen.is_empty() => { frozen.swap_remove(i % frozen.len()); }
                Op::Write(i, byte) if !bufs.is_empty() => {
                    let index = i % bufs.len();
                    bufs[index].0.fill(byte);
                    bufs[index].1 = byte;
                }
                _ => {}
            }
            // Contents never aliased: every live handle still sees exactly what it wrote.
            for (buf, fill) in &bufs {
                prop_assert!(buf.iter().all(|b| b == fill));
            }
            for (bytes, _, fill) in &frozen {
                prop_assert!(bytes.iter().all(|b| b == fill));
            }
            let live = live_ids(&bufs, &frozen).len();
            prop_assert_eq!(pool.stats().in_use, live);
            prop_assert!(pool.stats().capacity <= CAP);
        }
        drop(bufs);
        drop(frozen);
        let stats = pool.stats();
        prop_assert_eq!(stats.in_use, 0, "a buffer did not come back");
        prop_assert_eq!(stats.free, stats.capacity);
    }
}

fn live_ids(bufs: &[(Buf, u8)], frozen: &[(Bytes, u16, u8)]) -> HashMap<u16, ()> {
    bufs.iter()
        .map(|(b, _)| b.id())
        .chain(frozen.iter().map(|(_, id, _)| *id))
        .map(|id| (id, ()))
        .collect()
}
