//! The engine side by side with hashbrown (same hasher: foldhash `RandomState`) and std
//! `HashMap` (its default SipHash), in one run: u64 keys and 16-byte string keys; insert from
//! empty (growing), lookup hit, lookup miss, remove, churn (remove + insert at constant size),
//! iteration. Every measurement covers `n` operations, so criterion's throughput is per op.
//!
//! `cargo bench --bench engine` runs sizes 1e4 and 1e6. Env:
//! - `ENGINE_BENCH_SIZES=10000,1000000,10000000` picks the sizes (1e7 runs with 10 samples);
//! - `ENGINE_BENCH_KEYS=u64` or `str` restricts the key types.
//!
//! Criterion's own filter works too: `cargo bench --bench engine -- 'lookup_hit/u64'`.

use std::collections::HashMap as StdHashMap;
use std::hash::Hash;
use std::hint::black_box;
use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use mapcache::engine::{DefaultHashBuilder, Map};

type Brown<K> = hashbrown::HashMap<K, u64, DefaultHashBuilder>;

/// The operations every peer offers, so one generic body runs them all.
trait BenchMap<K>: Sized {
    const NAME: &'static str;
    fn empty() -> Self;
    fn put(&mut self, k: K, v: u64);
    fn find(&self, k: &K) -> Option<&u64>;
    fn take(&mut self, k: &K) -> Option<u64>;
    fn sum(&self) -> u64;
}

impl<K: Hash + Eq> BenchMap<K> for Map<K, u64> {
    const NAME: &'static str = "engine";
    fn empty() -> Self {
        Map::new()
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
        self.iter().map(|(_, v)| *v).sum()
    }
}

impl<K: Hash + Eq> BenchMap<K> for Brown<K> {
    const NAME: &'static str = "hashbrown";
    fn empty() -> Self {
        Brown::default()
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
        self.values().sum()
    }
}

impl<K: Hash + Eq> BenchMap<K> for StdHashMap<K, u64> {
    const NAME: &'static str = "std";
    fn empty() -> Self {
        StdHashMap::new()
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
        self.values().sum()
    }
}

/// Key generators: `key(i)` is distinct per `i`.
trait Key: Hash + Eq + Clone {
    const NAME: &'static str;
    fn key(i: u64) -> Self;
}

impl Key for u64 {
    const NAME: &'static str = "u64";
    fn key(i: u64) -> Self {
        // Spread like real ids rather than a dense range (which flatters some hashers).
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

impl Key for String {
    const NAME: &'static str = "str16";
    fn key(i: u64) -> Self {
        format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }
}

fn build<K: Key, M: BenchMap<K>>(keys: &[K]) -> M {
    let mut m = M::empty();
    for (i, k) in keys.iter().enumerate() {
        m.put(k.clone(), i as u64);
    }
    m
}

fn workloads<K: Key, M: BenchMap<K>>(c: &mut Criterion, n: usize, keys: &[K], misses: &[K]) {
    let configure = |g: &mut BenchmarkGroup<'_, WallTime>| {
        g.throughput(Throughput::Elements(n as u64));
        if n >= 1_000_000 {
            g.sample_size(10).warm_up_time(Duration::from_millis(500));
            g.measurement_time(Duration::from_secs(if n >= 10_000_000 { 20 } else { 4 }));
        } else {
            g.sample_size(30).warm_up_time(Duration::from_millis(500));
            g.measurement_time(Duration::from_secs(2));
        }
    };
    let id = |what: &str| format!("{what}/{}/{n}", K::NAME);
    let param = BenchmarkId::from_parameter(M::NAME);

    let mut g = c.benchmark_group(id("insert"));
    configure(&mut g);
    g.bench_function(param.clone(), |b| {
        b.iter_batched(
            || keys.to_vec(),
            |ks| {
                let mut m = M::empty();
                for (i, k) in ks.into_iter().enumerate() {
                    m.put(k, i as u64);
                }
                m
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    let full: M = build(keys);
    let mut g = c.benchmark_group(id("lookup_hit"));
    configure(&mut g);
    g.bench_function(param.clone(), |b| {
        b.iter(|| keys.iter().filter_map(|k| full.find(k)).sum::<u64>())
    });
    g.finish();

    let mut g = c.benchmark_group(id("lookup_miss"));
    configure(&mut g);
    g.bench_function(param.clone(), |b| {
        b.iter(|| misses.iter().filter(|k| full.find(k).is_some()).count())
    });
    g.finish();

    let mut g = c.benchmark_group(id("iterate"));
    configure(&mut g);
    g.bench_function(param.clone(), |b| b.iter(|| black_box(&full).sum()));
    g.finish();
    drop(full);

    let mut g = c.benchmark_group(id("remove"));
    configure(&mut g);
    g.bench_function(param.clone(), |b| {
        b.iter_batched(
            || build::<K, M>(keys),
            |mut m| {
                for k in keys {
                    black_box(m.take(k));
                }
                m
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();

    // Churn: a window of n live keys slides over 2n keys: remove the oldest, insert the next.
    let mut g = c.benchmark_group(id("churn"));
    configure(&mut g);
    let all: Vec<K> = keys.iter().chain(misses.iter()).cloned().collect();
    let mut m: M = build(keys);
    let mut oldest = 0usize;
    g.bench_function(param, |b| {
        b.iter(|| {
            for _ in 0..n {
                let out = &all[oldest % all.len()];
                let inn = &all[(oldest + n) % all.len()];
                black_box(m.take(out));
                m.put(inn.clone(), oldest as u64);
                oldest += 1;
            }
        })
    });
    g.finish();
}

fn peers<K: Key>(c: &mut Criterion, n: usize) {
    let keys: Vec<K> = (0..n as u64).map(K::key).collect();
    let misses: Vec<K> = (n as u64..2 * n as u64).map(K::key).collect();
    workloads::<K, Map<K, u64>>(c, n, &keys, &misses);
    workloads::<K, Brown<K>>(c, n, &keys, &misses);
    workloads::<K, StdHashMap<K, u64>>(c, n, &keys, &misses);
}

fn sizes() -> Vec<usize> {
    let spec = std::env::var("ENGINE_BENCH_SIZES").unwrap_or_else(|_| "10000,1000000".into());
    spec.split(',')
        .map(|s| {
            s.trim().parse().unwrap_or_else(|e| panic!("ENGINE_BENCH_SIZES: bad size {s:?}: {e}"))
        })
        .collect()
}

fn engine_vs_peers(c: &mut Criterion) {
    let keys = std::env::var("ENGINE_BENCH_KEYS").unwrap_or_else(|_| "u64,str".into());
    for n in sizes() {
        if keys.contains("u64") {
            peers::<u64>(c, n);
        }
        if keys.contains("str") {
            peers::<String>(c, n);
        }
    }
}

criterion_group!(benches, engine_vs_peers);
criterion_main!(benches);
