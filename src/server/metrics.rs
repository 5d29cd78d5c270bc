//! Prometheus metrics of the node (`GET /metrics`). Counters are updated on the hot path
//! (one pre-created counter per command, no label lookup); gauges are set at scrape time from
//! the store, the task registry and the lock counters. What INFO counts (keyspace hits and
//! misses, calls per command, errors by code) is read from the node's striped [`Counters`] at
//! scrape time, since start.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::commands::{COMMANDS, stat_name};
use super::counters::{CallTotals, Counters, StripedCounter};
use super::spin::SpinOutcome;
use super::store::Store;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CmdLabel {
    pub cmd: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ThreadLabel {
    /// The connection thread's index (`mapcache-io-<thread>`).
    pub thread: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpinLabel {
    pub thread: String,
    /// How a spin ended: `work`, `ready` or `timeout` ([`SpinOutcome`]).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrefixLabel {
    /// An error reply's first word (`ERR`, `WRONGPASS`...), Redis's errorstats key.
    pub prefix: String,
}

/// One per-command counter of [`InfoCounters`]: its name, its help, and which count it reports.
type PerCommand = (&'static str, &'static str, fn(&CallTotals) -> u64);

/// INFO's counters as Prometheus counters, read at scrape time: keyspace hits and misses, calls,
/// rejected and failed calls per command (and subcommand, `client|list`: Redis's commandstats
/// names; a command appears once it has been called or refused), error replies by their first
/// word. Since start: `CONFIG RESETSTAT` resets INFO's figures, not these.
#[derive(Debug)]
struct InfoCounters {
    counters: Arc<Counters>,
    hits: StripedCounter,
    misses: StripedCounter,
}

impl InfoCounters {
    fn counter(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        value: u64,
    ) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        ConstCounter::new(value).encode(metric)
    }
}

impl Collector for InfoCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let totals = self.counters.totals(self.hits.get(), self.misses.get());
        let hits = "Read lookups that found their key (INFO keyspace_hits)";
        Self::counter(&mut encoder, "mapcache_keyspace_hits", hits, totals.keyspace_hits)?;
        let misses = "Read lookups that did not find their key (INFO keyspace_misses)";
        Self::counter(&mut encoder, "mapcache_keyspace_misses", misses, totals.keyspace_misses)?;
        let per_command: [PerCommand; 3] = [
            (
                "mapcache_command_calls",
                "Calls that ran, by command or subcommand (INFO commandstats calls)",
                |c| c.calls,
            ),
            (
                "mapcache_command_rejected_calls",
                "Calls refused before running (arity, auth, memory, draining), by command",
                |c| c.rejected,
            ),
            (
                "mapcache_command_failed_calls",
                "Calls that ran and answered an error, by command",
                |c| c.failed,
            ),
        ];
        for (name, help, value) in per_command {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (slot, calls) in totals.commands.iter().enumerate().filter(|(_, c)| c.any()) {
                let label = CmdLabel { cmd: stat_name(slot).to_string() };
                ConstCounter::new(value(calls)).encode(metric.encode_family(&label)?)?;
            }
        }
        let help = "Error replies sent, by their first word (INFO errorstats)";
        let mut metric =
            encoder.encode_descriptor("mapcache_error_replies", help, None, MetricType::Counter)?;
        for (code, &count) in &totals.errors {
            let label = PrefixLabel { prefix: String::from_utf8_lossy(code).into_owned() };
            ConstCounter::new(count).encode(metric.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// Every metric the node exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `mapcache_commands_total{cmd}`, indexed like the command table.
    pub commands: Vec<Counter>,
    /// Commands not in the table count under `cmd="unknown"`.
    pub unknown_commands: Counter,
    pub command_duration: AtomicHistogram,
    pub maintenance_runs: Family<KindLabel, Counter>,
    pub snapshot_failures: Family<ReasonLabel, Counter>,
    /// 1 when this process found snapshots at start and could use none of them: it started
    /// empty. Alert on it.
    pub snapshots_all_corrupt: Gauge,
    /// Snapshot files moved into `corrupt/` (at start or by retention) as unusable.
    pub snapshots_moved_aside: Counter,
    /// Connections closed because their unparsed input passed `--client-query-buffer-limit`.
    pub query_buffer_limit_disconnections: Counter,
    /// Connections closed because their pending replies passed `client-output-buffer-limit`.
    pub output_buffer_limit_disconnections: Counter,
    /// Failed AUTH (and HELLO AUTH) attempts.
    pub auth_failures: Counter,
    /// Clients refused by protected mode (Redis's `rejected_connections` for the same cause).
    pub protected_mode_rejections: Counter,
    /// Admin connections past `--admin-max-connections`, answered 503 and closed.
    pub admin_connections_refused: Counter,
    /// The connection threads' spin before sleeping (`src/server/spin.rs`), one series per
    /// thread so that threads never share a counter's cache line.
    io_spin_seconds: Family<ThreadLabel, Counter<f64, AtomicU64>>,
    io_spins: Family<SpinLabel, Counter>,
    keys: Gauge,
    tombstones: Gauge,
    collection_tombstones: Gauge,
    tombstone_ratio: Gauge<f64, AtomicU64>,
    overflow_buckets: Gauge,
    memory_bytes: Gauge,
    connections: Gauge,
    inflight: Gauge,
    lock_waiters: Gauge,
}

impl Metrics {
    pub fn new(store: &Store, counters: &Arc<Counters>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(InfoCounters {
            counters: counters.clone(),
            hits: store.keyspace_hits.clone(),
            misses: store.keyspace_misses.clone(),
        }));
        let family = Family::<CmdLabel, Counter>::default();
        let commands = COMMANDS
            .iter()
            .map(|c| family.get_or_create_owned(&CmdLabel { cmd: c.name.to_string() }))
            .collect();
        let unknown_commands = family.get_or_create_owned(&CmdLabel { cmd: "unknown".into() });
        registry.register("mapcache_commands", "Commands executed, by command", family);
        let command_duration = AtomicHistogram::default();
        registry.register(
            "mapcache_command_duration_seconds",
            "Command execution time (to its reply encoded; parsing and network excluded)",
            command_duration.clone(),
        );
        let maintenance_runs = Family::<KindLabel, Counter>::default();
        for kind in ["compact", "rebuild"] {
            let _ = maintenance_runs.get_or_create_owned(&KindLabel { kind: kind.into() });
        }
        registry.register(
            "mapcache_maintenance_runs",
            "Maintenance runs started, by kind",
            maintenance_runs.clone(),
        );
        let snapshot_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "mapcache_snapshot_failures",
            "Snapshots that failed to write, verify or restore, by reason",
            snapshot_failures.clone(),
        );
        let snapshots_all_corrupt = Gauge::default();
        registry.register(
            "mapcache_snapshots_all_corrupt",
            "1 when snapshots were found at start and none could be used: the node started empty",
            snapshots_all_corrupt.clone(),
        );
        let snapshots_moved_aside = Counter::default();
        registry.register(
            "mapcache_snapshots_moved_aside",
            "Unusable snapshot files moved into the data directory's corrupt/, at start or by retention",
            snapshots_moved_aside.clone(),
        );
        let query_buffer_limit_disconnections = Counter::default();
        registry.register(
            "mapcache_client_query_buffer_limit_disconnections",
            "Connections closed because their unparsed input passed --client-query-buffer-limit",
            query_buffer_limit_disconnections.clone(),
        );
        let output_buffer_limit_disconnections = Counter::default();
        registry.register(
            "mapcache_client_output_buffer_limit_disconnections",
            "Connections closed because their pending replies passed client-output-buffer-limit",
            output_buffer_limit_disconnections.clone(),
        );
        let auth_failures = Counter::default();
        registry.register(
            "mapcache_auth_failures",
            "Failed AUTH attempts (each one throttled)",
            auth_failures.clone(),
        );
        let protected_mode_rejections = Counter::default();
        registry.register(
            "mapcache_protected_mode_rejections",
            "Clients refused by protected mode: not on loopback, and no password set",
            protected_mode_rejections.clone(),
        );
        let admin_connections_refused = Counter::default();
        registry.register(
            "mapcache_admin_connections_refused",
            "Admin connections refused past --admin-max-connections",
            admin_connections_refused.clone(),
        );
        registry.register(
            "mapcache_expired_keys",
            "Keys removed because their TTL passed",
            store.expired_total.clone(),
        );
        registry.register(
            "mapcache_evicted_keys",
            "Keys removed by the eviction policy",
            store.evicted_total.clone(),
        );
        let io_spin_seconds = Family::<ThreadLabel, Counter<f64, AtomicU64>>::default();
        registry.register(
            "mapcache_io_spin_seconds",
            "Wall time connection threads spent polling their sockets before sleeping",
            io_spin_seconds.clone(),
        );
        let io_spins = Family::<SpinLabel, Counter>::default();
        registry.register(
            "mapcache_io_spins",
            "Spins of connection threads before sleeping, by how they ended",
            io_spins.clone(),
        );
        let metrics = Self {
            io_spin_seconds,
            io_spins,
            commands,
            unknown_commands,
            command_duration,
            maintenance_runs,
            snapshot_failures,
            snapshots_all_corrupt,
            snapshots_moved_aside,
            query_buffer_limit_disconnections,
            output_buffer_limit_disconnections,
            auth_failures,
            protected_mode_rejections,
            admin_connections_refused,
            keys: Gauge::default(),
            tombstones: Gauge::default(),
            collection_tombstones: Gauge::default(),
            tombstone_ratio: Gauge::default(),
            overflow_buckets: Gauge::default(),
            memory_bytes: Gauge::default(),
            connections: Gauge::default(),
            inflight: Gauge::default(),
            lock_waiters: Gauge::default(),
            registry,
        };
        let mut metrics = metrics;
        let gauges: [(&str, &str, Gauge); 8] = [
            ("mapcache_keys", "Live keys", metrics.keys.clone()),
            (
                "mapcache_tombstones",
                "Engine tombstones (emptyOne slots) of the keyspace",
                metrics.tombstones.clone(),
            ),
            (
                "mapcache_collection_tombstones",
                "Engine tombstones inside hashes and sets",
                metrics.collection_tombstones.clone(),
            ),
            (
                "mapcache_overflow_buckets",
                "Engine overflow buckets",
                metrics.overflow_buckets.clone(),
            ),
            (
                "mapcache_memory_bytes",
                "Accounted memory (see docs/operations.md)",
                metrics.memory_bytes.clone(),
            ),
            ("mapcache_connections", "Open client connections", metrics.connections.clone()),
            (
                "mapcache_inflight_requests",
                "Connections executing a command",
                metrics.inflight.clone(),
            ),
            (
                "mapcache_lock_waiters",
                "Tasks waiting for a shard lock now",
                metrics.lock_waiters.clone(),
            ),
        ];
        for (name, help, gauge) in gauges {
            metrics.registry.register(name, help, gauge);
        }
        let ratio = metrics.tombstone_ratio.clone();
        metrics.registry.register(
            "mapcache_tombstone_ratio",
            "tombstones / (keys + tombstones)",
            ratio,
        );
        metrics
    }

    /// Connection thread `thread`'s spin series (created at zero).
    pub fn io_spin(&self, thread: usize) -> SpinCounters {
        let thread = thread.to_string();
        let spins = |outcome: &str| {
            let label = SpinLabel { thread: thread.clone(), outcome: outcome.into() };
            self.io_spins.get_or_create_owned(&label)
        };
        SpinCounters {
            seconds: self
                .io_spin_seconds
                .get_or_create_owned(&ThreadLabel { thread: thread.clone() }),
            work: spins("work"),
            ready: spins("ready"),
            timeout: spins("timeout"),
        }
    }

    pub fn record_snapshot_failure(&self, reason: &str) {
        self.snapshot_failures.get_or_create(&ReasonLabel { reason: reason.into() }).inc();
    }

    /// Sets the gauges and renders the text exposition.
    pub fn render(&self, snapshot: &GaugeValues) -> String {
        self.keys.set(snapshot.keys as i64);
        self.tombstones.set(snapshot.tombstones as i64);
        self.collection_tombstones.set(snapshot.collection_tombstones as i64);
        self.tombstone_ratio.set(snapshot.tombstone_ratio);
        self.overflow_buckets.set(snapshot.overflow_buckets as i64);
        self.memory_bytes.set(snapshot.memory_bytes as i64);
        self.connections.set(snapshot.connections as i64);
        self.inflight.set(snapshot.inflight as i64);
        self.lock_waiters.set(snapshot.lock_waiters as i64);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One connection thread's spin series: the wall time it spent spinning and how its spins
/// ended. Cheap to clone; clones count into the same series.
#[derive(Debug, Clone)]
pub struct SpinCounters {
    seconds: Counter<f64, AtomicU64>,
    work: Counter,
    ready: Counter,
    timeout: Counter,
}

impl SpinCounters {
    pub fn record(&self, outcome: SpinOutcome, spent: Duration) {
        self.seconds.inc_by(spent.as_secs_f64());
        match outcome {
            SpinOutcome::Work => &self.work,
            SpinOutcome::Ready => &self.ready,
            SpinOutcome::Timeout => &self.timeout,
        }
        .inc();
    }

    /// Counters in no registry.
    #[cfg(test)]
    pub fn standalone() -> Self {
        Self {
            seconds: Counter::default(),
            work: Counter::default(),
            ready: Counter::default(),
            timeout: Counter::default(),
        }
    }

    /// (work, ready, timeout).
    #[cfg(test)]
    pub fn counts(&self) -> (u64, u64, u64) {
        (self.work.get(), self.ready.get(), self.timeout.get())
    }
}

/// The gauge values read at scrape time.
#[derive(Debug, Default)]
pub struct GaugeValues {
    pub keys: usize,
    pub tombstones: usize,
    pub collection_tombstones: usize,
    pub tombstone_ratio: f64,
    pub overflow_buckets: usize,
    pub memory_bytes: usize,
    pub connections: usize,
    pub inflight: usize,
    pub lock_waiters: usize,
}

/// Upper bounds of the command-duration buckets in seconds: 1 µs × 4^i.
const DURATION_BOUNDS: [f64; 12] = [
    1e-6, 4e-6, 1.6e-5, 6.4e-5, 2.56e-4, 1.024e-3, 4.096e-3, 1.6384e-2, 6.5536e-2, 0.262144,
    1.048576, 4.194304,
];

/// A histogram of atomic counters: every command observes one, so it must not take a lock
/// (prometheus-client's `Histogram` locks a mutex per observation).
#[derive(Debug, Clone, Default)]
pub struct AtomicHistogram {
    inner: Arc<AtomicHistogramInner>,
}

#[derive(Debug, Default)]
struct AtomicHistogramInner {
    /// Per-bucket (non-cumulative) counts; the last is `+Inf`.
    buckets: [AtomicU64; DURATION_BOUNDS.len() + 1],
    count: AtomicU64,
    /// Sum in nanoseconds.
    sum_ns: AtomicU64,
}

impl AtomicHistogram {
    pub fn observe(&self, seconds: f64) {
        let index =
            DURATION_BOUNDS.iter().position(|&b| seconds <= b).unwrap_or(DURATION_BOUNDS.len());
        self.inner.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.inner.count.fetch_add(1, Ordering::Relaxed);
        self.inner.sum_ns.fetch_add((seconds * 1e9) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.inner.count.load(Ordering::Relaxed)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = DURATION_BOUNDS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let sum = self.inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, self.count(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_histogram_encodes_cumulative_buckets() {
        let h = AtomicHistogram::default();
        h.observe(2e-6);
        h.observe(3e-6);
        h.observe(10.0);
        let mut registry = Registry::default();
        registry.register("d", "help", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encode");
        let expected = "d_sum 10.000005\nd_count 3\nd_bucket{le=\"0.000001\"} 0\nd_bucket{le=\"0.000004\"} 2\n";
        assert!(out.contains(expected), "{out}");
        assert!(out.contains("d_bucket{le=\"4.194304\"} 2\nd_bucket{le=\"+Inf\"} 3\n"), "{out}");
    }
}
