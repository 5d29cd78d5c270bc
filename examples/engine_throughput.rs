//! Throughput run for the peer table (`bench/engine-peers.sh`): the criterion workloads, timed
//! plainly so Go's program can run the very same loops: insert from empty, lookup hit, lookup
//! miss, remove, churn (remove the oldest + insert a new key at constant size), iteration.
//! Prints one line per (map, keys, workload) with ns/op, best of `rounds` runs.
//!
//! `cargo run --release --example engine_throughput -- 1000000 3`
//! `cargo run --release --example engine_throughput -- 1000000 3 str16 engine` (only those keys
//! and that map; `all` or nothing for every one of engine, hashbrown and std; `engine_thp` for
//! the engine with `set_huge_pages(true)`, large arrays on transparent huge pages)
//!
//! After filling each map it also prints the process's `AnonHugePages` (from
//! `/proc/self/smaps_rollup`): how much of its memory the kernel backs with huge pages, to check
//! that `engine_thp`, or glibc's `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` for hashbrown, took
//! effect.

use std::collections::HashMap as StdHashMap;
use std::hash::Hash;
use std::hint::black_box;
use std::time::Instant;

use mapcache::engine::{DefaultHashBuilder, Map, set_huge_pages};

trait Peer<K> {
    fn empty() -> Self;
    fn put(&mut self, k: K, v: u64);
    fn find(&self, k: &K) -> Option<&u64>;
    fn take(&mut self, k: &K) -> Option<u64>;
    fn sum(&self) -> u64;
}

macro_rules! peer {
    ($ty:ty, $new:expr, $sum:expr) => {
        impl<K: Hash + Eq> Peer<K> for $ty {
            fn empty() -> Self {
                $new
            }
            fn put(&mut self, k: K, v: u64) {
                self.insert(k, v);
            }
            fn find(&self, k: &K) -> Option<&u64> {
                self.get(k)
            }
            fn take(&mut self, k: &K) -> Option<u64> {
                self.remove(k)
            }
            fn sum(&self) -> u64 {
                #[allow(clippy::redundant_closure_call)]
                ($sum)(self)
            }
        }
    };
}

peer!(Map<K, u64>, Map::new(), |m: &Map<K, u64>| m.iter().map(|(_, v)| *v).sum());
peer!(hashbrown::HashMap<K, u64, DefaultHashBuilder>, Default::default(), |m: &hashbrown::HashMap<K, u64, DefaultHashBuilder>| m.values().sum());
peer!(StdHashMap<K, u64>, StdHashMap::new(), |m: &StdHashMap<K, u64>| m.values().sum());

fn time(rounds: usize, ops: usize, mut f: impl FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos() as f64 / ops as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// `AnonHugePages` of this process in KiB (Linux; 0 where unavailable).
fn anon_huge_kib() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    rollup
        .lines()
        .find_map(|l| l.strip_prefix("AnonHugePages:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn run<K: Hash + Eq + Clone, M: Peer<K>>(
    name: &str,
    kname: &str,
    keys: &[K],
    misses: &[K],
    rounds: usize,
) {
    let n = keys.len();
    let report = |what: &str, ns: f64| {
        println!("throughput map={name} keys={kname} n={n} workload={what} ns_per_op={ns:.1}")
    };
    report(
        "insert",
        time(rounds, n, || {
            let mut m = M::empty();
            for (i, k) in keys.iter().enumerate() {
                m.put(k.clone(), i as u64);
            }
            black_box(&m);
        }),
    );
    let mut m = M::empty();
    for (i, k) in keys.iter().enumerate() {
        m.put(k.clone(), i as u64);
    }
    println!("thp map={name} keys={kname} n={n} anon_huge_kib={}", anon_huge_kib());
    report(
        "lookup_hit",
        time(rounds, n, || {
            black_box(keys.iter().filter_map(|k| m.find(k)).sum::<u64>());
        }),
    );
    report(
        "lookup_miss",
        time(rounds, n, || {
            black_box(misses.iter().filter(|k| m.find(k).is_some()).count());
        }),
    );
    report(
        "iterate",
        time(rounds, n, || {
            black_box(m.sum());
        }),
    );
    let all: Vec<K> = keys.iter().chain(misses).cloned().collect();
    let mut oldest = 0usize;
    report(
        "churn",
        time(rounds, n, || {
            for _ in 0..n {
                black_box(m.take(&all[oldest % all.len()]));
                m.put(all[(oldest + n) % all.len()].clone(), oldest as u64);
                oldest += 1;
            }
        }),
    );
    // Remove needs a full map per round: rebuild outside the timed part.
    let mut best = f64::INFINITY;
    for _ in 0..rounds {
        let mut m = M::empty();
        for (i, k) in keys.iter().enumerate() {
            m.put(k.clone(), i as u64);
        }
        best = best.min(time(1, n, || {
            for k in keys {
                black_box(m.take(k));
            }
        }));
    }
    report("remove", best);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(3);
    let key_filter = args.next().unwrap_or_else(|| "all".into());
    let map_filter = args.next().unwrap_or_else(|| "all".into());
    let want = |filter: &str, name: &str| filter == "all" || filter == name;
    let u = |i: u64| i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    if want(&key_filter, "u64") {
        let keys: Vec<u64> = (0..n).map(u).collect();
        let misses: Vec<u64> = (n..2 * n).map(u).collect();
        if want(&map_filter, "engine") {
            run::<u64, Map<u64, u64>>("engine", "u64", &keys, &misses, rounds);
        }
        if map_filter == "engine_thp" {
            set_huge_pages(true);
            run::<u64, Map<u64, u64>>("engine_thp", "u64", &keys, &misses, rounds);
            set_huge_pages(false);
        }
        if want(&map_filter, "hashbrown") {
            run::<u64, hashbrown::HashMap<u64, u64, DefaultHashBuilder>>(
                "hashbrown",
                "u64",
                &keys,
                &misses,
                rounds,
            );
        }
        if want(&map_filter, "std") {
            run::<u64, StdHashMap<u64, u64>>("std", "u64", &keys, &misses, rounds);
        }
    }
    if want(&key_filter, "str16") {
        let s = |i: u64| format!("{:016x}", u(i));
        let keys: Vec<String> = (0..n).map(s).collect();
        let misses: Vec<String> = (n..2 * n).map(s).collect();
        if want(&map_filter, "engine") {
            run::<String, Map<String, u64>>("engine", "str16", &keys, &misses, rounds);
        }
        if map_filter == "engine_thp" {
            set_huge_pages(true);
            run::<String, Map<String, u64>>("engine_thp", "str16", &keys, &misses, rounds);
            set_huge_pages(false);
        }
        if want(&map_filter, "hashbrown") {
            run::<String, hashbrown::HashMap<String, u64, DefaultHashBuilder>>(
                "hashbrown",
                "str16",
                &keys,
                &misses,
                rounds,
            );
        }
        if want(&map_filter, "std") {
            run::<String, StdHashMap<String, u64>>("std", "str16", &keys, &misses, rounds);
        }
    }
}
