//! The cache node's pipelined batch without the network: how much each stage of the batch
//! prefetch saves (`Store::prefetch`; docs/operations.md, "Concurrency, shards, pipelining"). A
//! store of `keys` keys in 16
//! shards, as `bench/server-vs-redis.sh` leaves it, takes batches of 16 reads (GET's
//! `get_live`) or 16 read-modify-writes (INCR's `upsert_live`) on random existing keys, each
//! batch first prefetched with no stage, the bucket stage, or both stages. Modes alternate
//! within each round so the machine's drift hits all three alike; prints ns per key, the best
//! and the median of the rounds.
//!
//! `cargo run --release --example store_batch -- 200000 7`
//!
//! With a third argument `grow` it runs instead redis-benchmark's INCR pass on `keys` new
//! counters over a store of `keys` keys (every shard grows), times each batch of 16 and prints
//! the distribution and where the slowest batches fell:
//! `cargo run --release --example store_batch -- 100000 1 grow`

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use mapcache::server::clock::ManualClock;
use mapcache::server::store::{Entry, EvictionPolicy, Prefetch, Store};

const BATCH: usize = 16;
const SHARDS: usize = 16;
const KEY_LEN: usize = 16;

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Incr,
}

/// Runs every batch of `stream` (keys of `KEY_LEN` bytes back to back, as they sit in a
/// connection's read buffer) and returns the ns per key.
fn run(store: &Store, stream: &[u8], op: Op, stages: &[Prefetch]) -> f64 {
    let started = Instant::now();
    let mut sum = 0usize;
    for batch in stream.chunks_exact(BATCH * KEY_LEN) {
        for &stage in stages {
            for key in batch.chunks_exact(KEY_LEN) {
                store.prefetch(key, stage);
            }
        }
        for key in batch.chunks_exact(KEY_LEN) {
            let mut shard = store.lock(store.shard_of(key), None);
            sum += match op {
                Op::Get => shard.get_live(key, 1_000).map_or(0, |e| e.value.cost()),
                Op::Incr => shard
                    .upsert_live(
                        key,
                        1_000,
                        || Entry::new(Bytes::from_static(b"0"), 0, 0),
                        |e| {
                            e.last_access_ms += 1;
                            Ok::<_, ()>(e.value.cost())
                        },
                    )
                    .unwrap_or(0),
            };
        }
    }
    black_box(sum);
    started.elapsed().as_nanos() as f64 / (stream.len() / KEY_LEN) as f64
}

fn key(i: u64) -> String {
    format!("key:{i:012}")
}

/// INCR on `n` new keys' worth of random counters, as redis-benchmark's INCR pass after its SET
/// pass: every shard grows. Times each batch of 16 and prints the distribution and where in the
/// pass the slowest batches fell, to tell a growth pause from noise.
fn grow_pass(store: &Store, n: usize, passes: usize) {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut stream = Vec::with_capacity(passes * n * KEY_LEN);
    for _ in 0..passes * n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        stream.extend_from_slice(format!("cnt:{:012}", x % n as u64).as_bytes());
    }
    let mut times = Vec::with_capacity(stream.len() / (BATCH * KEY_LEN));
    for batch in stream.chunks_exact(BATCH * KEY_LEN) {
        let started = Instant::now();
        for stage in [Prefetch::Bucket, Prefetch::Slots] {
            for key in batch.chunks_exact(KEY_LEN) {
                store.prefetch(key, stage);
            }
        }
        for key in batch.chunks_exact(KEY_LEN) {
            let mut shard = store.lock(store.shard_of(key), None);
            let _ = black_box(shard.upsert_live(
                key,
                1_000,
                || Entry::new(Bytes::from_static(b"0"), 0, 0),
                |e| Ok::<_, ()>(e.value.cost()),
            ));
        }
        times.push(started.elapsed().as_nanos() as u64);
    }
    let mut sorted = times.clone();
    sorted.sort_unstable();
    let q = |f: f64| sorted[((sorted.len() - 1) as f64 * f) as usize] as f64 / 1e3;
    println!(
        "grow pass: {} batches of {BATCH}: p50 {:.1} µs, p99 {:.1}, p99.9 {:.1}, max {:.1}, total {:.1} ms",
        times.len(),
        q(0.5),
        q(0.99),
        q(0.999),
        q(1.0),
        times.iter().sum::<u64>() as f64 / 1e6
    );
    let mut slow: Vec<(u64, usize)> = times.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    slow.sort_unstable_by(|a, b| b.cmp(a));
    let listed: Vec<String> =
        slow.iter().take(12).map(|(t, i)| format!("#{i}: {:.0} µs", *t as f64 / 1e3)).collect();
    println!("slowest batches: {}", listed.join(", "));
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(200_000, |a| a.parse().expect("keys"));
    let rounds: usize = args.next().map_or(7, |a| a.parse().expect("rounds"));
    let store = Store::new(SHARDS, ManualClock::new(1_000), 0, EvictionPolicy::Noeviction);
    for i in 0..n as u64 {
        let key = Bytes::from(key(i));
        let mut shard = store.lock(store.shard_of(&key), None);
        shard.insert(key, Entry::new(Bytes::from_static(b"xxx"), 0, 0));
    }
    // 2M existing keys in a fixed pseudo-random order (xorshift).
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut stream = Vec::with_capacity(2_000_000 * KEY_LEN);
    for _ in 0..2_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        stream.extend_from_slice(key(x % n as u64).as_bytes());
    }
    let modes: [(&str, &[Prefetch]); 3] = [
        ("none", &[]),
        ("bucket", &[Prefetch::Bucket]),
        ("bucket+slots", &[Prefetch::Bucket, Prefetch::Slots]),
    ];
    if std::env::args().nth(3).as_deref() == Some("grow") {
        grow_pass(&store, n, 5);
        return;
    }
    for op in [Op::Get, Op::Incr] {
        let mut times = vec![Vec::new(); modes.len()];
        for _ in 0..rounds {
            for (m, (_, stages)) in modes.iter().enumerate() {
                times[m].push(run(&store, &stream, op, stages));
            }
        }
        for (m, (name, _)) in modes.iter().enumerate() {
            let t = &mut times[m];
            t.sort_by(f64::total_cmp);
            println!(
                "{op:?} keys={n} prefetch={name}: best {:.1} ns/key, median {:.1}",
                t[0],
                t[t.len() / 2]
            );
        }
    }
}
