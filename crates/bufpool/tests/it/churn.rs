//! Memory stays at the configured cap over millions of acquire/release cycles.

use weir_bufpool::Config;

/// A tiny deterministic generator, so the churn is reproducible.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn ten_million_cycles_stay_at_the_cap() {
    const CAP: usize = 256;
    let pool = Config::new(1024, 64)
        .max_buffers(CAP)
        .growth_chunk(64)
        .build()
        .expect("config");
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    // Buffers held for a random number of steps: a ring of slots, each released when reused.
    let mut held: Vec<Option<weir_bufpool::Buf>> = (0..CAP).map(|_| None).collect();
    for _ in 0..10_000_000 {
        let slot = (rng.next() as usize) % CAP;
        held[slot] = None;
        if rng.next() % 4 != 0 {
            held[slot] = pool.try_get();
            assert!(
                held[slot].is_some(),
                "a free buffer must exist: at most CAP are held"
            );
        }
    }
    let stats = pool.stats();
    assert!(stats.capacity <= CAP, "grew beyond the cap: {stats:?}");
    assert!(stats.high_water <= CAP);
    drop(held);
    let stats = pool.stats();
    assert_eq!(stats.in_use, 0);
    assert_eq!(stats.free, stats.capacity);
}

/// This process's resident memory, from `/proc/self/statm` (pages × 4 KiB); `None` elsewhere.
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn untouched_buffers_cost_no_resident_memory() {
    const BYTES: usize = 64 << 20;
    let Some(before) = resident_bytes() else {
        println!("SKIPPED untouched_buffers_cost_no_resident_memory: no /proc/self/statm");
        return;
    };
    // 64 MiB of 64-byte aligned buffers, none of them used yet.
    let pool = Config::new(16 * 1024, BYTES / (16 * 1024))
        .build()
        .expect("config");
    let after = resident_bytes().expect("statm");
    let grown = after.saturating_sub(before);
    assert!(
        grown < BYTES / 8,
        "a fresh 64 MiB pool made {grown} bytes resident: its memory was written"
    );
    // Every buffer still reads as zeroes.
    let buf = pool.try_get().expect("a buffer");
    assert!(buf.as_ptr().as_ptr().addr() % 64 == 0, "aligned");
    assert_eq!(pool.stats().capacity, BYTES / (16 * 1024));
}
