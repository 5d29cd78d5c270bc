//! Latency run: times every single insert while a map grows from empty to `n` u64 -> u64
//! entries and prints p50 / p99 / p99.99 / max, twice: wall time (what a caller waits,
//! including any preemption by the scheduler) and the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`: what the insert itself cost, page faults included, time spent
//! descheduled excluded). On a loaded machine the wall-time tail is the scheduler's; the CPU-time
//! tail is the map's. One map per process, so allocator state is fresh.
//!
//! `cargo run --release --example engine_latency -- engine 10000000`
//! `cargo run --release --example engine_latency -- hashbrown 10000000`
//! (`bench/engine-peers.sh` runs both plus Go's classic map.)
//!
//! Reading the thread CPU clock is a system call (no vDSO path), ~0.2–0.5 µs, so the total time
//! of this run is longer than the inserts alone; the per-insert wall time is taken inside the
//! CPU-time window and does not include that call.

use std::time::Instant;

use mapcache::engine::{DefaultHashBuilder, Map};

fn key(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// This thread's CPU time in nanoseconds.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable `struct timespec`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// No per-thread CPU clock wired up here: the CPU column reports 0.
#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> u64 {
    0
}

/// Inserts `n` keys, timing each insert: (wall ns, thread CPU ns) per insert.
fn run(n: u64, mut insert: impl FnMut(u64, u64)) -> (Vec<u64>, Vec<u64>) {
    let mut wall = Vec::with_capacity(n as usize);
    let mut cpu = Vec::with_capacity(n as usize);
    for i in 0..n {
        let k = key(i);
        let cpu_start = thread_cpu_ns();
        let start = Instant::now();
        insert(k, i);
        let elapsed = start.elapsed().as_nanos() as u64;
        cpu.push(thread_cpu_ns() - cpu_start);
        wall.push(elapsed);
    }
    (wall, cpu)
}

/// p50, p99, p99.99 and max of `ns` (sorted in place).
fn percentiles(ns: &mut [u64]) -> [u64; 4] {
    ns.sort_unstable();
    let pct = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)];
    [pct(0.5), pct(0.99), pct(0.9999), ns[ns.len() - 1]]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "engine".into());
    let n: u64 = match args.next().map(|s| s.parse()) {
        None => 10_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(Ok(_)) => {
            eprintln!("usage: engine_latency [engine|hashbrown] [n]: n must be positive");
            std::process::exit(2);
        }
        Some(Err(e)) => {
            eprintln!("usage: engine_latency [engine|hashbrown] [n]: bad n: {e}");
            std::process::exit(2);
        }
    };
    let total = Instant::now();
    let (mut wall, mut cpu) = match which.as_str() {
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
    let [p50, p99, p9999, max] = percentiles(&mut wall);
    let [c50, c99, c9999, cmax] = percentiles(&mut cpu);
    println!(
        "latency map={which} n={n} p50_ns={p50} p99_ns={p99} p9999_ns={p9999} max_ns={max} \
         cpu_p50_ns={c50} cpu_p99_ns={c99} cpu_p9999_ns={c9999} cpu_max_ns={cmax} \
         total_s={total_s:.2}"
    );
}
