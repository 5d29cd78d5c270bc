//! Latency run: times every single insert while a map grows from empty to `n` u64 -> u64
//! entries and prints p50 / p99 / p99.99 / max, twice: wall time (what a caller waits,
//! including any preemption by the scheduler) and the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID`: what the insert itself cost, page faults included, time spent
//! descheduled excluded). On a loaded machine the wall-time tail is the scheduler's; the CPU-time
//! tail is the map's. One map per process, so allocator state is fresh.
//!
//! `cargo run --release --example engine_latency -- engine 10000000`
//! `cargo run --release --example engine_latency -- hashbrown 10000000`
//! `cargo run --release --example engine_latency -- engine_thp 10000000` (the engine with
//! `set_huge_pages(true)`: large arrays on transparent huge pages)
//! `cargo run --release --example engine_latency -- noop 10000000` (the timing loop around no
//! map: the machine's own tail, the floor under every row)
//! `cargo run --release --example engine_latency -- engine 10000000 20` (instead lists the 20
//! slowest inserts by wall time, with what the map did in each: see [`Slow`]; `engine_thp`
//! too)
//! (`bench/engine-peers.sh` runs both plus Go's classic map.)
//!
//! Reading the thread CPU clock is a system call (no vDSO path), ~0.2–0.5 µs, so the total time
//! of this run is longer than the inserts alone; the per-insert wall time is taken inside the
//! CPU-time window and does not include that call.

use std::time::Instant;

use mapcache::engine::{DefaultHashBuilder, EngineStats, Map, set_huge_pages};

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

/// Minor and major page faults of this thread so far (`getrusage(RUSAGE_THREAD)`).
#[cfg(target_os = "linux")]
fn thread_faults() -> (u64, u64) {
    // SAFETY: an all-zero `struct rusage` is a valid value to be overwritten.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable `struct rusage`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_THREAD) failed");
    (usage.ru_minflt as u64, usage.ru_majflt as u64)
}

#[cfg(not(target_os = "linux"))]
fn thread_faults() -> (u64, u64) {
    (0, 0)
}

/// One of the slowest inserts of a diagnostic run: which insert it was, what it cost and what
/// the map did in it (the engine's counters before and after, page faults taken).
struct Slow {
    index: u64,
    cpu_ns: u64,
    wall_ns: u64,
    minor_faults: u64,
    major_faults: u64,
    before: EngineStats,
    after: EngineStats,
}

impl Slow {
    /// What changed in the map during this insert, in the engine's vocabulary.
    fn what(&self) -> String {
        let (b, a) = (&self.before, &self.after);
        let mut did = Vec::new();
        if a.b != b.b || (a.to_evacuate > b.to_evacuate) {
            did.push(format!("started grow B {}->{}", b.b, a.b));
        }
        if b.to_evacuate > 0 && a.to_evacuate == 0 {
            did.push("finished evacuation (old array freed)".to_string());
        }
        if a.to_evacuate > 0 || b.to_evacuate > 0 {
            did.push(format!(
                "evacuated {} -> {} of {}",
                b.evacuated,
                a.evacuated,
                b.to_evacuate + b.evacuated
            ));
        }
        if a.overflow_buckets > b.overflow_buckets {
            did.push(format!("+{} overflow buckets", a.overflow_buckets - b.overflow_buckets));
        }
        did.join(", ")
    }
}

/// Inserts `n` keys into the engine like [`run`], and returns the `top` slowest inserts by
/// wall time with what the map did in each (two more system calls per insert for the fault
/// counts, so run it apart from the timing run). Ranked by wall time because the thread CPU
/// clock has outliers of its own on a VM (the `noop` run shows milliseconds of "CPU" around
/// nothing); the CPU time is printed beside it.
fn slowest_engine_inserts(n: u64, top: usize) -> Vec<Slow> {
    let mut m: Map<u64, u64> = Map::new();
    let mut worst: Vec<Slow> = Vec::with_capacity(top + 1);
    for i in 0..n {
        let k = key(i);
        let before = m.stats();
        let (min0, maj0) = thread_faults();
        let cpu_start = thread_cpu_ns();
        let start = Instant::now();
        m.insert(k, i);
        let wall_ns = start.elapsed().as_nanos() as u64;
        let cpu_ns = thread_cpu_ns() - cpu_start;
        let (min1, maj1) = thread_faults();
        if worst.len() < top || wall_ns > worst[worst.len() - 1].wall_ns {
            worst.push(Slow {
                index: i,
                cpu_ns,
                wall_ns,
                minor_faults: min1 - min0,
                major_faults: maj1 - maj0,
                before,
                after: m.stats(),
            });
            worst.sort_by_key(|s| std::cmp::Reverse(s.wall_ns));
            worst.truncate(top);
        }
    }
    worst
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
            eprintln!(
                "usage: engine_latency [engine|engine_thp|hashbrown|noop] [n]: n must be positive"
            );
            std::process::exit(2);
        }
        Some(Err(e)) => {
            eprintln!("usage: engine_latency [engine|engine_thp|hashbrown|noop] [n]: bad n: {e}");
            std::process::exit(2);
        }
    };
    if which == "engine_thp" {
        set_huge_pages(true);
    }
    if let Some(top) = args.next() {
        let top: usize = match top.parse() {
            Ok(t) if which == "engine" || which == "engine_thp" => t,
            _ => {
                eprintln!(
                    "usage: engine_latency engine|engine_thp [n] [slowest]: slowest is a count, \
                     engine only"
                );
                std::process::exit(2);
            }
        };
        for s in slowest_engine_inserts(n, top) {
            println!(
                "slow insert={} cpu_ns={} wall_ns={} minflt={} majflt={} B={} phase={:?} overflow={} | {}",
                s.index,
                s.cpu_ns,
                s.wall_ns,
                s.minor_faults,
                s.major_faults,
                s.before.b,
                s.before.phase,
                s.before.overflow_buckets,
                s.what()
            );
        }
        return;
    }
    let total = Instant::now();
    let (mut wall, mut cpu) = match which.as_str() {
        "engine" | "engine_thp" => {
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
        // The measurement floor: the same timing loop around no map at all. Its tail is what
        // the machine (scheduler, hypervisor, interrupts, the clock calls) adds to any insert.
        "noop" => run(n, |k, v| {
            std::hint::black_box((k, v));
        }),
        other => {
            eprintln!(
                "usage: engine_latency [engine|engine_thp|hashbrown|noop] [n]: unknown map {other:?}"
            );
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
