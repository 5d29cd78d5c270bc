//! What INFO's stats, commandstats and errorstats count, and `/metrics` with them: calls per
//! command (and per subcommand, as Redis 7 counts `client|list`), their time, rejected and
//! failed calls, error replies by their first word, network bytes, and the instantaneous rates
//! sampled from them.
//!
//! Every command adds to these, so no lock is taken on that path: each counter is striped, every
//! thread adding to its own stripe (one of [`STRIPES`], picked once per thread) with relaxed
//! atomics, and a reader sums the stripes. A connection thread's stripe stays in its cache, and
//! two connection threads seldom share one (there are half as many as CPUs by default).
//!
//! Counters only go up, since start (the Prometheus counters). INFO reports them since the last
//! `CONFIG RESETSTAT`, as Redis does: the reset records a [`Totals`] baseline that INFO subtracts.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

/// Stripes per counter.
pub const STRIPES: usize = 16;

/// The stripe the current thread adds to: assigned round-robin at its first use.
fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// One cache line's worth (two, for the adjacent-line prefetcher) per stripe.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// A counter for the hot path: each thread adds to its own stripe. Clones count into the same
/// stripes.
#[derive(Debug, Clone)]
pub struct StripedCounter {
    stripes: Arc<[Padded<AtomicU64>]>,
}

impl Default for StripedCounter {
    fn default() -> Self {
        Self { stripes: (0..STRIPES).map(|_| Padded::default()).collect() }
    }
}

impl StripedCounter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.stripes[stripe()].0.fetch_add(n, Ordering::Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The sum over stripes: every addition that happened before the call, and maybe some made
    /// during it.
    pub fn get(&self) -> u64 {
        self.stripes.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// Error codes the node sends (the first word of its error replies), counted without a lock.
/// Any other word is counted under a mutex (the node sends none; a later command might).
pub const ERROR_CODES: &[&str] =
    &["ERR", "EXECABORT", "NOAUTH", "NOPROTO", "OOM", "READONLY", "WRONGPASS", "WRONGTYPE"];

/// At most this many distinct error codes are counted (Redis's `ERROR_STATS_NUMBER`).
const MAX_ERROR_CODES: usize = 128;

/// Redis's `afterErrorReply`: the code of an error reply is its first word, when a space ends it
/// within the first 32 bytes; otherwise the reply counts as `ERR`.
pub fn error_code(text: &[u8]) -> &[u8] {
    let head = &text[..text.len().min(32)];
    match memchr::memchr(b' ', head) {
        Some(end) => &text[..end],
        None => b"ERR",
    }
}

/// One command's (or subcommand's) counts in one stripe.
#[derive(Debug, Default)]
struct CallCells {
    calls: AtomicU64,
    usec: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    /// Its calls' durations ([`latency_bucket`]), allocated at the stripe's first call of it.
    latency: OnceLock<Box<[AtomicU64; LATENCY_BUCKETS]>>,
}

/// Sub-buckets per power of two of a duration: 4, so a percentile is reported within 19% of the
/// true value (Redis's HdrHistogram keeps 2 significant digits).
const LATENCY_SUB_BITS: u32 = 2;
/// Durations under `2^LATENCY_MIN_EXP` ns (16 ns) share the first bucket.
const LATENCY_MIN_EXP: u32 = 4;
/// Powers of two covered one by one: 16 ns to 2^36 ns (68 s); longer calls share the last
/// bucket.
const LATENCY_OCTAVES: u32 = 32;
const LATENCY_BUCKETS: usize = ((LATENCY_OCTAVES << LATENCY_SUB_BITS) + 2) as usize;

/// The latency bucket of a call of `nanos`: log-linear (a power of two, then its quarter).
fn latency_bucket(nanos: u64) -> usize {
    if nanos < 1 << LATENCY_MIN_EXP {
        return 0;
    }
    let exp = 63 - nanos.leading_zeros();
    let octave = exp - LATENCY_MIN_EXP;
    if octave >= LATENCY_OCTAVES {
        return LATENCY_BUCKETS - 1;
    }
    let sub = (nanos >> (exp - LATENCY_SUB_BITS)) & ((1 << LATENCY_SUB_BITS) - 1);
    1 + ((octave << LATENCY_SUB_BITS) as usize) + sub as usize
}

/// The largest duration in ns bucket `index` holds (what a percentile falling in it reports, as
/// HdrHistogram reports a bucket's highest equivalent value).
fn latency_bucket_top(index: usize) -> u64 {
    if index == 0 {
        return (1 << LATENCY_MIN_EXP) - 1;
    }
    let i = (index - 1) as u64;
    let octave = i >> LATENCY_SUB_BITS;
    let sub = i & ((1 << LATENCY_SUB_BITS) - 1);
    let exp = octave + u64::from(LATENCY_MIN_EXP);
    let width = 1u64 << (exp - u64::from(LATENCY_SUB_BITS));
    (1u64 << exp) + (sub + 1) * width - 1
}

/// The percentiles INFO latencystats reports (Redis's `latency-tracking-info-percentiles`
/// default).
pub const LATENCY_PERCENTILES: [f64; 3] = [50.0, 99.0, 99.9];

/// One thread's stripe of every per-command and per-error counter, in one allocation of its own.
#[derive(Debug)]
struct Stripe {
    /// Indexed by stat slot (see `commands::stat_name`).
    calls: Box<[CallCells]>,
    /// Indexed like [`ERROR_CODES`].
    errors: [AtomicU64; ERROR_CODES.len()],
}

impl Stripe {
    fn new(slots: usize) -> Self {
        Self {
            calls: (0..slots).map(|_| CallCells::default()).collect(),
            errors: Default::default(),
        }
    }
}

/// How a command's call ended, for commandstats (Redis's `call` and `rejectCommand`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It ran (its reply may be an error: a failed call).
    Called,
    /// It was refused before running: arity, authentication, memory, draining, EXEC's checks.
    Rejected,
    /// Queued by MULTI: it is counted when EXEC runs it.
    Queued,
}

/// A command's counts, summed or subtracted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallTotals {
    pub calls: u64,
    pub usec: u64,
    pub rejected: u64,
    pub failed: u64,
}

impl CallTotals {
    /// Whether INFO commandstats lists it (as Redis: called, rejected or failed at least once).
    pub fn any(&self) -> bool {
        self.calls > 0 || self.rejected > 0 || self.failed > 0
    }
}

/// Every counter's value at one instant: since start, or since a reset ([`Totals::since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// By stat slot.
    pub commands: Vec<CallTotals>,
    /// By error code, in byte order (Redis's `errorstat_` lines come from a radix tree).
    pub errors: BTreeMap<Vec<u8>, u64>,
    pub error_replies: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

impl Totals {
    /// Every call of every command: Redis's `total_commands_processed`.
    pub fn calls(&self) -> u64 {
        self.commands.iter().map(|c| c.calls).sum()
    }

    /// What was counted after `baseline` was taken.
    pub fn since(&self, baseline: &Totals) -> Totals {
        let minus = |now: u64, then: u64| now.saturating_sub(then);
        let commands = self
            .commands
            .iter()
            .enumerate()
            .map(|(i, now)| {
                let then = baseline.commands.get(i).copied().unwrap_or_default();
                CallTotals {
                    calls: minus(now.calls, then.calls),
                    usec: minus(now.usec, then.usec),
                    rejected: minus(now.rejected, then.rejected),
                    failed: minus(now.failed, then.failed),
                }
            })
            .collect();
        let errors = self
            .errors
            .iter()
            .map(|(code, &n)| {
                (code.clone(), minus(n, baseline.errors.get(code).copied().unwrap_or(0)))
            })
            .filter(|&(_, n)| n > 0)
            .collect();
        Totals {
            commands,
            errors,
            error_replies: minus(self.error_replies, baseline.error_replies),
            keyspace_hits: minus(self.keyspace_hits, baseline.keyspace_hits),
            keyspace_misses: minus(self.keyspace_misses, baseline.keyspace_misses),
            net_input_bytes: minus(self.net_input_bytes, baseline.net_input_bytes),
            net_output_bytes: minus(self.net_output_bytes, baseline.net_output_bytes),
            reads: minus(self.reads, baseline.reads),
            writes: minus(self.writes, baseline.writes),
        }
    }
}

/// Samples kept per instantaneous metric (Redis's `STATS_METRIC_SAMPLES`).
const RATE_SAMPLES: usize = 16;

/// One instantaneous metric (Redis's `inst_metric`): the per-second rate of a counter, averaged
/// over its last [`RATE_SAMPLES`] samples.
#[derive(Debug, Clone, Copy)]
struct Rate {
    samples: [u64; RATE_SAMPLES],
    next: usize,
    last_at: Instant,
    last_count: u64,
}

impl Rate {
    fn new(now: Instant, count: u64) -> Self {
        Self { samples: [0; RATE_SAMPLES], next: 0, last_at: now, last_count: count }
    }

    /// Redis's `trackInstantaneousMetric`.
    fn sample(&mut self, now: Instant, count: u64) {
        let ms = now.saturating_duration_since(self.last_at).as_millis() as u64;
        let delta = count.saturating_sub(self.last_count);
        self.samples[self.next] = (delta * 1000).checked_div(ms).unwrap_or(0);
        self.next = (self.next + 1) % RATE_SAMPLES;
        self.last_at = now;
        self.last_count = count;
    }

    /// Redis's `getInstantaneousMetric`.
    fn per_second(&self) -> u64 {
        self.samples.iter().sum::<u64>() / RATE_SAMPLES as u64
    }
}

/// The instantaneous rates INFO stats reports.
#[derive(Debug, Clone, Copy)]
struct Rates {
    commands: Rate,
    net_input: Rate,
    net_output: Rate,
}

impl Rates {
    fn new(now: Instant, totals: &Totals) -> Self {
        Self {
            commands: Rate::new(now, totals.calls()),
            net_input: Rate::new(now, totals.net_input_bytes),
            net_output: Rate::new(now, totals.net_output_bytes),
        }
    }
}

/// The instantaneous rates at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RatesNow {
    pub ops_per_sec: u64,
    pub input_bytes_per_sec: u64,
    pub output_bytes_per_sec: u64,
}

/// The node's counters.
#[derive(Debug)]
pub struct Counters {
    stripes: Box<[Padded<Stripe>]>,
    /// Error replies, all codes.
    error_replies: StripedCounter,
    /// Codes not in [`ERROR_CODES`] (none the node sends today).
    other_errors: Mutex<BTreeMap<Vec<u8>, u64>>,
    pub net_input_bytes: StripedCounter,
    pub net_output_bytes: StripedCounter,
    /// Reads from client sockets that returned data (`total_reads_processed`).
    pub reads: StripedCounter,
    /// Batches of replies written (`total_writes_processed`).
    pub writes: StripedCounter,
    /// The totals at the last `CONFIG RESETSTAT` (empty before one).
    baseline: Mutex<Totals>,
    rates: Mutex<Option<Rates>>,
    /// The most accounted memory seen (by the 100 ms sampling and INFO): `used_memory_peak`.
    peak_memory: AtomicU64,
}

impl Counters {
    /// Counters for `slots` commands and subcommands.
    pub fn new(slots: usize) -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Padded(Stripe::new(slots))).collect(),
            error_replies: StripedCounter::default(),
            other_errors: Mutex::new(BTreeMap::new()),
            net_input_bytes: StripedCounter::default(),
            net_output_bytes: StripedCounter::default(),
            reads: StripedCounter::default(),
            writes: StripedCounter::default(),
            baseline: Mutex::new(Totals::default()),
            rates: Mutex::new(None),
            peak_memory: AtomicU64::new(0),
        }
    }

    /// Counts one command: a call (`usec` long, failed when its reply is an error), a rejection,
    /// or nothing for a queued one. `slot` is `None` for an unknown command or subcommand, which
    /// Redis counts nowhere but in errorstats.
    #[inline]
    pub fn record(&self, slot: Option<u16>, outcome: Outcome, usec: u64, failed: bool) {
        let Some(slot) = slot else {
            return;
        };
        let cells = &self.stripes[stripe()].0.calls[slot as usize];
        match outcome {
            Outcome::Called => {
                cells.calls.fetch_add(1, Ordering::Relaxed);
                cells.usec.fetch_add(usec, Ordering::Relaxed);
                if failed {
                    cells.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Outcome::Rejected => {
                cells.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Queued => {}
        }
    }

    /// Counts one call's duration for INFO latencystats.
    #[inline]
    pub fn record_latency(&self, slot: u16, nanos: u64) {
        let cells = &self.stripes[stripe()].0.calls[slot as usize];
        let buckets =
            cells.latency.get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        buckets[latency_bucket(nanos)].fetch_add(1, Ordering::Relaxed);
    }

    /// The [`LATENCY_PERCENTILES`] of `slot`'s calls since the last reset, in microseconds;
    /// `None` when it has none.
    pub fn latency_percentiles(&self, slot: u16) -> Option<[f64; 3]> {
        let mut sum = [0u64; LATENCY_BUCKETS];
        for stripe in self.stripes.iter() {
            if let Some(buckets) = stripe.0.calls[slot as usize].latency.get() {
                for (total, b) in sum.iter_mut().zip(buckets.iter()) {
                    *total += b.load(Ordering::Relaxed);
                }
            }
        }
        let count: u64 = sum.iter().sum();
        if count == 0 {
            return None;
        }
        Some(LATENCY_PERCENTILES.map(|p| {
            let rank = ((p / 100.0 * count as f64).ceil() as u64).max(1);
            let mut seen = 0;
            let index = sum.iter().position(|&n| {
                seen += n;
                seen >= rank
            });
            latency_bucket_top(index.unwrap_or(LATENCY_BUCKETS - 1)) as f64 / 1000.0
        }))
    }

    /// Counts one error reply under its code (see [`error_code`]).
    pub fn record_error(&self, text: &[u8]) {
        self.error_replies.inc();
        let code = error_code(text);
        match ERROR_CODES.iter().position(|c| c.as_bytes() == code) {
            Some(i) => {
                self.stripes[stripe()].0.errors[i].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                let mut other = self.other_errors.lock();
                if let Some(n) = other.get_mut(code) {
                    *n += 1;
                } else if other.len() < MAX_ERROR_CODES - ERROR_CODES.len() {
                    other.insert(code.to_vec(), 1);
                }
            }
        }
    }

    /// Every counter since start. The keyspace hits and misses are the store's, passed in.
    pub fn totals(&self, keyspace_hits: u64, keyspace_misses: u64) -> Totals {
        let slots = self.stripes.first().map_or(0, |s| s.0.calls.len());
        let mut commands = vec![CallTotals::default(); slots];
        let mut by_code = [0u64; ERROR_CODES.len()];
        for Padded(stripe) in self.stripes.iter() {
            for (total, cells) in commands.iter_mut().zip(&stripe.calls) {
                total.calls += cells.calls.load(Ordering::Relaxed);
                total.usec += cells.usec.load(Ordering::Relaxed);
                total.rejected += cells.rejected.load(Ordering::Relaxed);
                total.failed += cells.failed.load(Ordering::Relaxed);
            }
            for (total, cell) in by_code.iter_mut().zip(&stripe.errors) {
                *total += cell.load(Ordering::Relaxed);
            }
        }
        let mut errors = self.other_errors.lock().clone();
        for (code, n) in ERROR_CODES.iter().zip(by_code) {
            if n > 0 {
                errors.insert(code.as_bytes().to_vec(), n);
            }
        }
        Totals {
            commands,
            errors,
            error_replies: self.error_replies.get(),
            keyspace_hits,
            keyspace_misses,
            net_input_bytes: self.net_input_bytes.get(),
            net_output_bytes: self.net_output_bytes.get(),
            reads: self.reads.get(),
            writes: self.writes.get(),
        }
    }

    /// The totals since the last reset.
    pub fn since_reset(&self, totals: &Totals) -> Totals {
        totals.since(&self.baseline.lock())
    }

    /// `CONFIG RESETSTAT`: INFO counts from `totals` (taken now) on, and the instantaneous rates
    /// start over, as Redis's `resetServerStats`.
    pub fn reset(&self, totals: Totals) {
        *self.rates.lock() = Some(Rates::new(Instant::now(), &totals));
        *self.baseline.lock() = totals;
        // Latency histograms start over, as Redis's `resetCommandTableStats` frees them (calls
        // counted meanwhile may be lost to the reset or kept: either is a reset).
        for stripe in self.stripes.iter() {
            for cells in stripe.0.calls.iter() {
                if let Some(buckets) = cells.latency.get() {
                    buckets.iter().for_each(|b| b.store(0, Ordering::Relaxed));
                }
            }
        }
    }

    /// Takes one sample of each instantaneous rate (Redis takes one every 100 ms).
    pub fn sample_rates(&self, now: Instant, totals: &Totals) {
        let mut rates = self.rates.lock();
        match rates.as_mut() {
            None => *rates = Some(Rates::new(now, totals)),
            Some(r) => {
                r.commands.sample(now, totals.calls());
                r.net_input.sample(now, totals.net_input_bytes);
                r.net_output.sample(now, totals.net_output_bytes);
            }
        }
    }

    pub fn rates(&self) -> RatesNow {
        self.rates.lock().map_or_else(RatesNow::default, |r| RatesNow {
            ops_per_sec: r.commands.per_second(),
            input_bytes_per_sec: r.net_input.per_second(),
            output_bytes_per_sec: r.net_output.per_second(),
        })
    }

    /// Records `used` bytes of accounted memory; returns the peak so far.
    pub fn note_memory(&self, used: u64) -> u64 {
        self.peak_memory.fetch_max(used, Ordering::Relaxed).max(used)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn error_codes_are_the_first_word_within_32_bytes_as_redis_counts_them() {
        assert_eq!(error_code(b"ERR syntax error"), b"ERR");
        assert_eq!(error_code(b"WRONGPASS invalid username-password pair"), b"WRONGPASS");
        assert_eq!(error_code(b"NOSPACE"), b"ERR");
        let long = [&[b'X'; 40][..], b" rest"].concat();
        assert_eq!(error_code(&long), b"ERR");
        let edge = [&[b'Y'; 31][..], b" rest"].concat();
        assert_eq!(error_code(&edge), &[b'Y'; 31][..]);
    }

    #[test]
    fn latency_buckets_are_log_linear_and_their_tops_bound_them() {
        for nanos in [0u64, 1, 15, 16, 17, 19, 20, 999, 1000, 1003, 65_535, 1 << 30, 1 << 40] {
            let index = latency_bucket(nanos);
            // The last bucket holds everything longer than its nominal top.
            assert!(
                index == LATENCY_BUCKETS - 1 || nanos <= latency_bucket_top(index),
                "{nanos} in bucket {index}"
            );
            if index > 0 && index < LATENCY_BUCKETS - 1 {
                assert!(nanos > latency_bucket_top(index - 1), "{nanos} in bucket {index}");
                // Within a quarter of its power of two: the resolution the docs state.
                assert!(latency_bucket_top(index) - nanos < nanos / 4 + 1, "{nanos}");
            }
        }
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
        assert!(
            (1..LATENCY_BUCKETS - 1).all(|i| latency_bucket_top(i) > latency_bucket_top(i - 1))
        );
    }

    #[test]
    fn latency_percentiles_come_from_every_thread_and_start_over_at_a_reset() {
        let counters = Counters::new(2);
        assert_eq!(counters.latency_percentiles(0), None);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    // 980 calls of 1 µs, 17 of 100 µs, 3 of 10 ms per thread.
                    (0..980).for_each(|_| counters.record_latency(0, 1_000));
                    (0..17).for_each(|_| counters.record_latency(0, 100_000));
                    (0..3).for_each(|_| counters.record_latency(0, 10_000_000));
                });
            }
        });
        let [p50, p99, p999] = counters.latency_percentiles(0).expect("calls");
        assert!((1.0..1.25).contains(&p50), "{p50}");
        assert!((100.0..125.0).contains(&p99), "{p99}");
        assert!((10_000.0..12_500.0).contains(&p999), "{p999}");
        assert_eq!(counters.latency_percentiles(1), None);
        counters.reset(counters.totals(0, 0));
        assert_eq!(counters.latency_percentiles(0), None);
    }

    #[test]
    fn striped_counters_sum_what_every_thread_added() {
        let counter = StripedCounter::default();
        std::thread::scope(|s| {
            for _ in 0..8 {
                let counter = counter.clone();
                s.spawn(move || (0..1000).for_each(|_| counter.inc()));
            }
        });
        assert_eq!(counter.get(), 8000);
    }

    #[test]
    fn calls_rejections_failures_and_errors_count_since_the_last_reset() {
        let counters = Counters::new(3);
        counters.record(Some(0), Outcome::Called, 10, false);
        counters.record(Some(0), Outcome::Called, 5, true);
        counters.record(Some(1), Outcome::Rejected, 0, true);
        counters.record(Some(2), Outcome::Queued, 0, false);
        counters.record(None, Outcome::Rejected, 0, true);
        for text in [&b"ERR x"[..], b"ERR y", b"EXECABORT z", b"CUSTOM w"] {
            counters.record_error(text);
        }
        let totals = counters.totals(7, 3);
        let get = CallTotals { calls: 2, usec: 15, rejected: 0, failed: 1 };
        let rejected = CallTotals { rejected: 1, ..CallTotals::default() };
        assert_eq!(totals.commands, vec![get, rejected, CallTotals::default()]);
        assert_eq!(totals.calls(), 2);
        assert_eq!(totals.error_replies, 4);
        let errors: Vec<(&[u8], u64)> = totals.errors.iter().map(|(k, &v)| (&k[..], v)).collect();
        assert_eq!(errors, vec![(&b"CUSTOM"[..], 1), (b"ERR", 2), (b"EXECABORT", 1)]);
        counters.reset(totals.clone());
        counters.record(Some(0), Outcome::Called, 1, false);
        counters.record_error(b"ERR again");
        let since = counters.since_reset(&counters.totals(9, 3));
        assert_eq!(since.commands[0], CallTotals { calls: 1, usec: 1, rejected: 0, failed: 0 });
        assert!(!since.commands[1].any());
        assert_eq!(since.errors.into_iter().collect::<Vec<_>>(), vec![(b"ERR".to_vec(), 1)]);
        assert_eq!((since.keyspace_hits, since.keyspace_misses, since.error_replies), (2, 0, 1));
    }

    #[test]
    fn the_ops_rate_is_the_mean_of_the_last_16_samples_as_redis_computes_it() {
        let start = Instant::now();
        let mut rate = Rate::new(start, 0);
        // 100 commands every 100 ms: 1000 per second in each sample.
        for i in 1..=4 {
            rate.sample(start + Duration::from_millis(100 * i), 100 * i);
        }
        assert_eq!(rate.per_second(), 4 * 1000 / 16);
        for i in 5..=20 {
            rate.sample(start + Duration::from_millis(100 * i), 100 * i);
        }
        assert_eq!(rate.per_second(), 1000);
    }

    #[test]
    fn the_memory_peak_only_rises() {
        let counters = Counters::new(0);
        assert_eq!(counters.note_memory(10), 10);
        assert_eq!(counters.note_memory(4), 10);
        assert_eq!(counters.note_memory(12), 12);
    }
}
