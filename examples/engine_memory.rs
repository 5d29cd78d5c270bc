//! Memory run: RSS (from /proc/self/statm) with `n` u64 -> u64 entries, after removing 90% of
//! them, and after the map gives memory back: the engine's online shrink (`shrink_to_fit` then
//! `maintenance_step` in 1024-bucket steps, lookups in between) or hashbrown's `shrink_to_fit`.
//! `fresh` builds a map holding only the remaining 10%, the reference for "after shrink".
//!
//! `cargo run --release --example engine_memory -- engine 10000000`
//! `cargo run --release --example engine_memory -- engine_thp 10000000` (the engine with
//! `set_huge_pages(true)`: large arrays on transparent huge pages)
//! `cargo run --release --example engine_memory -- hashbrown 10000000`
//! `cargo run --release --example engine_memory -- fresh 10000000`

use mapcache::engine::{DefaultHashBuilder, Map, set_huge_pages};

fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Resident set size in bytes (statm's second field is in pages).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    pages * 4096
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "engine".into());
    let n: u64 = match args.next().map(|s| s.parse()) {
        None => 10_000_000,
        Some(Ok(n)) => n,
        Some(Err(e)) => {
            eprintln!("usage: engine_memory [engine|engine_thp|hashbrown|fresh] [n]: bad n: {e}");
            std::process::exit(2);
        }
    };
    if which == "engine_thp" {
        set_huge_pages(true);
    }
    let base = rss();
    let keep = |i: u64| i.is_multiple_of(10);
    match which.as_str() {
        "engine" | "engine_thp" => {
            let mut m: Map<u64, u64> = Map::new();
            (0..n).for_each(|i| {
                m.insert(key(i), i);
            });
            let full = rss() - base;
            let alloc_full = m.stats().bytes_allocated as u64;
            (0..n).filter(|&i| !keep(i)).for_each(|i| {
                m.remove(&key(i));
            });
            let removed = rss() - base;
            m.shrink_to_fit();
            let mut steps = 0u64;
            while m.maintenance_step(1024) > 0 {
                // Reads keep going during the online shrink.
                assert_eq!(m.get(&key(steps * 10 % n)), Some(&(steps * 10 % n)));
                steps += 1;
            }
            // The old array goes back to the allocator, and the freed overflow buckets' pages
            // to the OS (`malloc_trim`), on a helper thread (see `free_array_off_thread`):
            // give it a moment before reading RSS.
            std::thread::sleep(std::time::Duration::from_millis(500));
            let shrunk = rss() - base;
            let s = m.stats();
            println!(
                "memory map={which} n={n} full_mib={:.1} bytes_per_entry={:.1} alloc_bytes_per_entry={:.1} \
                 after_remove_mib={:.1} after_shrink_mib={:.1} alloc_after_shrink_mib={:.1} shrink_steps={steps} len={}",
                mib(full),
                full as f64 / n as f64,
                alloc_full as f64 / n as f64,
                mib(removed),
                mib(shrunk),
                mib(s.bytes_allocated as u64),
                m.len()
            );
        }
        "hashbrown" => {
            let mut m: hashbrown::HashMap<u64, u64, DefaultHashBuilder> = Default::default();
            (0..n).for_each(|i| {
                m.insert(key(i), i);
            });
            let full = rss() - base;
            let alloc_full = m.allocation_size() as u64;
            (0..n).filter(|&i| !keep(i)).for_each(|i| {
                m.remove(&key(i));
            });
            let removed = rss() - base;
            m.shrink_to_fit();
            let shrunk = rss() - base;
            println!(
                "memory map=hashbrown n={n} full_mib={:.1} bytes_per_entry={:.1} alloc_bytes_per_entry={:.1} \
                 after_remove_mib={:.1} after_shrink_mib={:.1} alloc_after_shrink_mib={:.1} len={}",
                mib(full),
                full as f64 / n as f64,
                alloc_full as f64 / n as f64,
                mib(removed),
                mib(shrunk),
                mib(m.allocation_size() as u64),
                m.len()
            );
        }
        "fresh" => {
            let mut m: Map<u64, u64> = Map::new();
            (0..n).filter(|&i| keep(i)).for_each(|i| {
                m.insert(key(i), i);
            });
            let full = rss() - base;
            println!(
                "memory map=engine-fresh n={} rss_mib={:.1} alloc_mib={:.1}",
                m.len(),
                mib(full),
                mib(m.stats().bytes_allocated as u64)
            );
        }
        other => {
            eprintln!(
                "usage: engine_memory [engine|engine_thp|hashbrown|fresh] [n]: unknown map {other:?}"
            );
            std::process::exit(2);
        }
    }
}
