//! Measures the load-factor table in the engine's module docs (Go's map.go has the same
//! table): for average loads 4.0..6.5 entries per bucket at B = 16, the overflow buckets per
//! 100 buckets, bytes per entry, and keys compared (`Eq` calls) per hit and per miss.
//! The engine grows past 6.5, so that is the highest load it can be measured at.
//!
//! `cargo run --release --example engine_loadfactor`

use std::cell::Cell;
use std::hash::{Hash, Hasher};

use mapcache::engine::Map;

thread_local! {
    static EQ_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// A u64 key that counts its `Eq` calls.
struct Probe(u64);

impl PartialEq for Probe {
    fn eq(&self, other: &Self) -> bool {
        EQ_CALLS.with(|c| c.set(c.get() + 1));
        self.0 == other.0
    }
}
impl Eq for Probe {}
impl Hash for Probe {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

fn eq_calls() -> u64 {
    EQ_CALLS.with(Cell::get)
}

fn main() {
    const B: u32 = 16;
    let buckets = 1u64 << B;
    let key = |i: u64| Probe(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    println!(" loadFactor  %overflow  bytes/entry  hitprobe  missprobe");
    for tenths in [40u64, 45, 50, 55, 60, 65] {
        let n = buckets * tenths / 10;
        // Capacity for exactly 2^B buckets: the most the table holds at B = 16 is 6.5 * 2^B.
        let mut m: Map<Probe, u64> = Map::with_capacity((buckets * 13 / 2) as usize);
        for i in 0..n {
            m.insert(key(i), i);
        }
        let s = m.stats();
        assert_eq!(s.b as u32, B, "the table must not have grown");
        let before = eq_calls();
        for i in 0..n {
            assert!(m.contains_key(&key(i)));
        }
        let hit = (eq_calls() - before) as f64 / n as f64;
        let before = eq_calls();
        for i in n..2 * n {
            assert!(!m.contains_key(&key(i)));
        }
        let miss = (eq_calls() - before) as f64 / n as f64;
        println!(
            "{:>11.2}  {:>9.2}  {:>11.2}  {:>8.2}  {:>9.2}",
            tenths as f64 / 10.0,
            100.0 * s.overflow_buckets as f64 / buckets as f64,
            s.bytes_allocated as f64 / n as f64,
            hit,
            miss
        );
    }
}
