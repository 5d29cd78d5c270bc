//! Inserting `n` keys into an empty map, per threshold from which the next doubling's array is
//! prepared ahead (`Map::set_prepare_min_bytes`; "off" is `set_prepare_growth(false)`): the
//! median ns per insert over `rounds` maps, u64 -> u64 and 16-byte `String` -> u64 keys. The
//! measurement behind the engine's default threshold (docs/BENCHMARKS.md, "Session 11").
//!
//! `cargo run --release --example engine_prepare_threshold -- 10000 200`

use std::hint::black_box;
use std::time::Instant;

use mapcache::engine::Map;

const THRESHOLDS: [(&str, usize); 6] = [
    ("256K", 256 << 10),
    ("1M", 1 << 20),
    ("4M", 4 << 20),
    ("16M", 16 << 20),
    ("64M", 64 << 20),
    ("off", usize::MAX),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median ns per insert of `keys` into a fresh map with preparation from `min` bytes on.
fn insert_median<K: std::hash::Hash + Eq + Clone>(keys: &[K], min: usize, rounds: usize) -> f64 {
    let times = (0..rounds)
        .map(|_| {
            let batch = keys.to_vec();
            let start = Instant::now();
            let mut m: Map<K, u64> = Map::new();
            if min == usize::MAX {
                m.set_prepare_growth(false);
            } else {
                m.set_prepare_min_bytes(min);
            }
            for (i, k) in batch.into_iter().enumerate() {
                m.insert(k, i as u64);
            }
            let ns = start.elapsed().as_nanos() as f64 / keys.len() as f64;
            drop(black_box(m));
            ns
        })
        .collect();
    median(times)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(200);
    let u = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let u64_keys: Vec<u64> = (0..n).map(u).collect();
    let str_keys: Vec<String> = (0..n).map(|i| format!("{:016x}", u(i))).collect();
    let mut line = format!("n={n:>8}");
    for (name, min) in THRESHOLDS {
        line += &format!(" u64/{name} {:6.1}", insert_median(&u64_keys, min, rounds));
    }
    for (name, min) in THRESHOLDS {
        line += &format!(" str16/{name} {:6.1}", insert_median(&str_keys, min, rounds));
    }
    println!("{line}");
}
