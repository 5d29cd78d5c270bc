//! Latency run: times every single insert while a map grows from empty to `n` u64 -> u64
//! entries and prints p50 / p99 / p99.99 / max. One map per process, so allocator state is fresh.
//!
//! `cargo run --release --example engine_latency -- engine 10000000`
//! `cargo run --release --example engine_latency -- hashbrown 10000000`
//! (`bench/engine-peers.sh` runs both plus Go's classic map.)

use std::time::Instant;

use mapcache::engine::{DefaultHashBuilder, Map};

fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Inserts `n` keys, timing each insert in nanoseconds.
fn run(n: u64, mut insert: impl FnMut(u64, u64)) -> Vec<u64> {
    let mut ns = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = key(i);
        let start = Instant::now();
        insert(k, i);
        ns.push(start.elapsed().as_nanos() as u64);
    }
    ns
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "engine".into());
    let n: u64 = match args.next().map(|s| s.parse()) {
        None => 10_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("usage: engine_latency [engine|hashbrown] [n]: bad n: {e}");
            std::process::exit(2);
        }
    };
    let total = Instant::now();
    let mut ns = match which.as_str() {
        "engine" => {
            let mut m: Map<u64, u64> = Map::new();
            let ns = run(n, |k, v| {
                m.insert(k, v);
            });
            assert_eq!(m.len() as u64, n);
            ns
        }
        "hashbrown" => {
            let mut m: hashbrown::HashMap<u64, u64, DefaultHashBuilder> = Default::default();
            let ns = run(n, |k, v| {
                m.insert(k, v);
            });
            assert_eq!(m.len() as u64, n);
            ns
        }
        other => {
            eprintln!("usage: engine_latency [engine|hashbrown] [n]: unknown map {other:?}");
            std::process::exit(2);
        }
    };
    let total_s = total.elapsed().as_secs_f64();
    ns.sort_unstable();
    let pct = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)];
    println!(
        "latency map={which} n={n} p50_ns={} p99_ns={} p9999_ns={} max_ns={} total_s={total_s:.2}",
        pct(0.5),
        pct(0.99),
        pct(0.9999),
        ns[ns.len() - 1]
    );
}
