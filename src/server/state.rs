//! The node's shared state: configuration, storage, tasks, metrics, readiness and drain flags,
//! maintenance progress, the last snapshot.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use super::auth::AuthThrottle;
use super::clock::{Clock, SystemClock};
use super::counters::{Counters, Totals};
use super::metrics::{GaugeValues, Metrics};
use super::slowlog::SlowLog;
use super::snapshot::{RestoreReport, SnapshotInfo};
use super::store::{EvictionPolicy, Store};
use super::tasks::{Task, Tasks};
use crate::engine::{EngineStats, Phase};

/// `--client-query-buffer-limit`'s default, Redis's: 1 GiB.
pub const DEFAULT_QUERY_BUFFER_LIMIT: usize = 1 << 30;
/// Its least value, Redis's: 1 MiB.
pub const MIN_QUERY_BUFFER_LIMIT: usize = 1 << 20;
/// `--max-pending-reply-bytes`' default: room for a million small pipelined replies (about
/// 7 MB for 1e6 GETs of a short value) several times over, so a client that sends its whole
/// pipeline before it reads is served, while one connection's replies stay bounded.
pub const DEFAULT_MAX_PENDING_REPLY_BYTES: usize = 64 << 20;

/// `--admin-header-timeout`'s default: how long an admin connection may take to send a
/// request's headers, or sit idle between requests.
pub const DEFAULT_ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// `--admin-max-connections`'s default: far above what probes, scrapes and the operator open.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 128;

/// `--io-spin-us`'s default (docs/operations.md, "Connection threads", has the measurements).
pub const DEFAULT_IO_SPIN: Duration = Duration::from_micros(50);

/// Everything `Node::start` needs; `ServeArgs` converts into this, tests build it directly.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: IpAddr,
    /// 0 = any free port (tests).
    pub port: u16,
    pub admin_bind: IpAddr,
    pub admin_port: u16,
    /// A power of two.
    pub shards: usize,
    /// Connection threads (at least one is started).
    pub io_threads: usize,
    /// How long a busy connection thread polls its sockets before it sleeps (zero: never).
    pub io_spin: Duration,
    /// Bytes; 0 = unlimited.
    pub maxmemory: u64,
    pub eviction_policy: EvictionPolicy,
    pub data_dir: PathBuf,
    /// Bearer token for the admin API; None = open, loopback only.
    pub admin_token: Option<String>,
    /// Redis AUTH password of the `default` user.
    pub requirepass: Option<String>,
    /// Redis's protected mode: without a password, clients from other hosts are refused.
    pub protected_mode: bool,
    /// The admin API closes a connection that has not sent a request's headers this long after
    /// it opened or after its previous response.
    pub admin_header_timeout: Duration,
    /// Admin connections served at once; more are answered 503 and closed.
    pub admin_max_connections: usize,
    /// SIGTERM: drain + snapshot + exit within this.
    pub shutdown_grace: Duration,
    /// The source of "now" for TTLs.
    pub clock: Arc<dyn Clock>,
    /// How often the background task advances engine evacuations and expires keys while it has
    /// work; while it has none it ticks only when active expiry is due (every 100 ms), or every
    /// `maintenance_interval` if that is longer.
    pub maintenance_interval: Duration,
    /// Old buckets evacuated per shard per maintenance tick.
    pub maintenance_budget: usize,
    /// How long drain waits for in-flight commands before snapshotting anyway.
    pub drain_inflight_timeout: Duration,
    /// A connection whose unparsed input grows past this many bytes is closed (Redis's
    /// `client-query-buffer-limit`): one client cannot make the node buffer without bound.
    pub query_buffer_limit: usize,
    /// A connection stops taking new commands while more than this many bytes of its replies
    /// wait for the socket (0: never); see `outbuf`.
    pub max_pending_reply_bytes: usize,
}

impl Config {
    /// Loopback defaults on port 0, a fresh data dir; for tests and embedding.
    pub fn for_test(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: 0,
            admin_bind: IpAddr::from([127, 0, 0, 1]),
            admin_port: 0,
            shards: 4,
            io_threads: 2,
            io_spin: DEFAULT_IO_SPIN,
            maxmemory: 0,
            eviction_policy: EvictionPolicy::Noeviction,
            data_dir: data_dir.into(),
            admin_token: None,
            requirepass: None,
            protected_mode: true,
            admin_header_timeout: DEFAULT_ADMIN_HEADER_TIMEOUT,
            admin_max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            shutdown_grace: Duration::from_secs(10),
            clock: Arc::new(SystemClock),
            maintenance_interval: Duration::from_millis(10),
            maintenance_budget: 64,
            drain_inflight_timeout: Duration::from_secs(5),
            query_buffer_limit: DEFAULT_QUERY_BUFFER_LIMIT,
            max_pending_reply_bytes: DEFAULT_MAX_PENDING_REPLY_BYTES,
        }
    }
}

/// Which online maintenance an operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceKind {
    Compact,
    Rebuild,
}

impl MaintenanceKind {
    pub fn name(self) -> &'static str {
        match self {
            MaintenanceKind::Compact => "compact",
            MaintenanceKind::Rebuild => "rebuild",
        }
    }
}

/// Keys, tombstones and bytes before/after a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MaintenanceFigures {
    pub keys: usize,
    pub tombstones: usize,
    pub bytes_allocated: usize,
}

/// Progress of the operator-requested maintenance.
#[derive(Debug, Default)]
pub struct MaintenanceStatus {
    pub kind: Option<MaintenanceKind>,
    pub running: bool,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: Option<jiff::Timestamp>,
    /// Per shard: the compact/rebuild still has to be started (the engine was busy growing).
    pub pending: Vec<bool>,
    /// Per shard: started, and its evacuation may still be running.
    pub started: Vec<bool>,
    pub before: Option<MaintenanceFigures>,
    pub after: Option<MaintenanceFigures>,
    pub runs_compact: u64,
    pub runs_rebuild: u64,
}

/// Stats summed over shards (the `/v1/stats` body).
#[derive(Debug, Clone, Serialize)]
pub struct NodeStats {
    pub version: &'static str,
    pub ready: bool,
    pub draining: bool,
    pub keys: usize,
    /// Keys with a TTL (the sizes of the shards' TTL indexes).
    pub keys_with_ttl: usize,
    /// Tombstones of the keyspace's maps (what `tombstone_ratio` and the operator's thresholds
    /// read).
    pub tombstones: usize,
    pub tombstone_ratio: f64,
    /// Tombstones inside hashes and sets, each an engine map of its own, purged by the node's
    /// own upkeep and by compaction.
    pub collection_tombstones: usize,
    pub fill_ratio: f64,
    pub buckets: usize,
    pub overflow_buckets: usize,
    pub empty_overflow_buckets: usize,
    pub bytes_allocated: usize,
    pub memory_bytes: usize,
    pub maxmemory: u64,
    pub eviction_policy: &'static str,
    pub phase: Phase,
    pub evacuated: usize,
    pub to_evacuate: usize,
    pub expired_keys_total: u64,
    pub evicted_keys_total: u64,
    /// How the start went with the snapshots on disk: `outcome` is `all_corrupt` when there were
    /// some and none could be used (the node started empty).
    pub restore: RestoreReport,
    pub shards: Vec<ShardStats>,
}

/// One shard's engine stats with its index.
#[derive(Debug, Clone, Serialize)]
pub struct ShardStats {
    pub shard: usize,
    #[serde(flatten)]
    pub engine: EngineStats,
}

/// The node.
#[derive(Debug)]
pub struct NodeState {
    pub config: Config,
    pub store: Store,
    pub tasks: Arc<Tasks>,
    pub metrics: Metrics,
    ready: AtomicBool,
    draining: AtomicBool,
    /// Wakes the accept loops when draining starts, and every task at shutdown.
    pub stop_accepting: tokio::sync::watch::Sender<bool>,
    pub maintenance: Mutex<MaintenanceStatus>,
    /// Serialises snapshot writers.
    pub snapshot_lock: tokio::sync::Mutex<()>,
    pub last_snapshot: Mutex<Option<SnapshotInfo>>,
    /// The newest generation on disk (restored or written).
    pub snapshot_generation: AtomicU64,
    /// What the restore at start found and did (`restore` in `/v1/stats`).
    pub restore: Mutex<RestoreReport>,
    pub requirepass: RwLock<Option<String>>,
    /// `protected-mode` (CONFIG SET changes it).
    pub protected_mode: AtomicBool,
    /// Failed AUTHs node-wide, for their throttling.
    pub auth_throttle: AuthThrottle,
    pub started: Instant,
    /// Random per start, as Redis's `run_id`: tells a restarted node from the one before.
    pub run_id: String,
    pub next_client_id: AtomicU64,
    pub total_connections: AtomicU64,
    /// `mapcache_protected_mode_rejections_total` at the last `CONFIG RESETSTAT`: INFO's
    /// `rejected_connections` counts from it.
    pub rejected_at_reset: AtomicU64,
    /// `client-output-buffer-limit` (CONFIG SET changes it).
    pub output_limits: super::outbuf::OutputBufferLimits,
    /// `mapcache_client_output_buffer_limit_disconnections_total` and its query-buffer twin at
    /// the last `CONFIG RESETSTAT`: INFO counts from them.
    pub output_limit_closed_at_reset: AtomicU64,
    pub query_limit_closed_at_reset: AtomicU64,
    /// Calls, errors and bytes, for INFO and `/metrics` (`total_commands_processed` is the sum of
    /// the calls).
    pub counters: Arc<Counters>,
    /// `SLOWLOG`.
    pub slowlog: SlowLog,
    /// Lua scripts: the cache, the script thread, and how commands wait for a running script.
    pub scripting: Arc<super::scripting::Scripting>,
}

impl NodeState {
    pub fn new(config: Config) -> Self {
        let store = Store::new(
            config.shards,
            config.clock.clone(),
            config.maxmemory,
            config.eviction_policy,
        );
        let counters = Arc::new(Counters::new(super::commands::stat_slots()));
        let metrics = Metrics::new(&store, &counters);
        let shards = config.shards;
        Self {
            requirepass: RwLock::new(config.requirepass.clone()),
            protected_mode: AtomicBool::new(config.protected_mode),
            auth_throttle: AuthThrottle::default(),
            config,
            store,
            tasks: Arc::new(Tasks::default()),
            metrics,
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stop_accepting: tokio::sync::watch::channel(false).0,
            maintenance: Mutex::new(MaintenanceStatus {
                pending: vec![false; shards],
                started: vec![false; shards],
                ..MaintenanceStatus::default()
            }),
            snapshot_lock: tokio::sync::Mutex::new(()),
            last_snapshot: Mutex::new(None),
            snapshot_generation: AtomicU64::new(0),
            restore: Mutex::new(RestoreReport::default()),
            started: Instant::now(),
            run_id: rand::random::<[u8; 20]>().iter().map(|b| format!("{b:02x}")).collect(),
            next_client_id: AtomicU64::new(1),
            total_connections: AtomicU64::new(0),
            rejected_at_reset: AtomicU64::new(0),
            output_limits: Default::default(),
            output_limit_closed_at_reset: AtomicU64::new(0),
            query_limit_closed_at_reset: AtomicU64::new(0),
            counters,
            slowlog: SlowLog::default(),
            scripting: Default::default(),
        }
    }

    /// Every counter since start, the store's keyspace hits and misses included.
    pub fn counted_since_start(&self) -> Totals {
        let store = &self.store;
        self.counters.totals(store.keyspace_hits.get(), store.keyspace_misses.get())
    }

    /// Every counter since the last `CONFIG RESETSTAT` (since start before one): what INFO shows.
    pub fn counted_since_reset(&self) -> Totals {
        self.counters.since_reset(&self.counted_since_start())
    }

    /// `CONFIG RESETSTAT`, as Redis's `resetServerStats` with the command and error tables: INFO
    /// counts from zero again; the Prometheus counters, which never go back, keep counting.
    pub fn reset_stats(&self) {
        self.total_connections.store(0, Ordering::Relaxed);
        self.rejected_at_reset
            .store(self.metrics.protected_mode_rejections.get(), Ordering::Relaxed);
        self.output_limit_closed_at_reset
            .store(self.metrics.output_buffer_limit_disconnections.get(), Ordering::Relaxed);
        self.query_limit_closed_at_reset
            .store(self.metrics.query_buffer_limit_disconnections.get(), Ordering::Relaxed);
        let store = &self.store;
        store.expired_at_reset.store(store.expired_total.get(), Ordering::Relaxed);
        store.evicted_at_reset.store(store.evicted_total.get(), Ordering::Relaxed);
        self.counters.reset(self.counted_since_start());
    }

    /// One 100 ms sample of the instantaneous rates, and of the memory peak (Redis's cron does
    /// both).
    pub fn sample_rates(&self) {
        self.counters.sample_rates(Instant::now(), &self.counted_since_start());
        self.counters.note_memory(self.store.used_memory() as u64);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Whether a client at `peer` is refused by protected mode: it is on, the `default` user
    /// has no password, and the client is not on the loopback interface.
    pub fn protected_mode_refuses(&self, peer: IpAddr) -> bool {
        self.protected_mode.load(Ordering::Relaxed)
            && self.requirepass.read().is_none()
            && !super::auth::is_loopback_peer(peer)
    }

    /// Turns draining on (idempotent); true the first time.
    pub fn start_draining(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::SeqCst);
        self.stop_accepting.send_replace(true);
        first
    }

    pub fn stats(&self, task: Option<&Task>) -> NodeStats {
        self.stats_of(self.store.shard_stats(task))
    }

    /// The node's stats from every shard's engine stats (in shard order), read by the caller
    /// under whichever locks it holds.
    pub fn stats_of(&self, per_shard: Vec<EngineStats>) -> NodeStats {
        let sum = |f: fn(&EngineStats) -> usize| per_shard.iter().map(f).sum::<usize>();
        let keys = sum(|s| s.len);
        let tombstones = sum(|s| s.tombstones);
        let current_buckets: usize = per_shard.iter().map(|s| 1usize << s.b).sum();
        let phase =
            per_shard.iter().map(|s| s.phase).find(|p| *p != Phase::Idle).unwrap_or(Phase::Idle);
        NodeStats {
            version: env!("CARGO_PKG_VERSION"),
            // As `/readyz`: a draining node is not ready, whatever it restored.
            ready: self.is_ready() && !self.is_draining(),
            draining: self.is_draining(),
            keys,
            keys_with_ttl: self.store.ttl_keys_unlocked(),
            tombstones,
            tombstone_ratio: ratio(tombstones, keys + tombstones),
            collection_tombstones: self.store.collection_tombstones_unlocked(),
            fill_ratio: ratio(keys, current_buckets * 8),
            buckets: sum(|s| s.buckets),
            overflow_buckets: sum(|s| s.overflow_buckets),
            empty_overflow_buckets: sum(|s| s.empty_overflow_buckets),
            bytes_allocated: sum(|s| s.bytes_allocated),
            memory_bytes: self.store.used_memory(),
            maxmemory: self.store.maxmemory(),
            eviction_policy: self.store.policy().name(),
            phase,
            evacuated: sum(|s| s.evacuated),
            to_evacuate: sum(|s| s.to_evacuate),
            expired_keys_total: self.store.expired_total.get(),
            evicted_keys_total: self.store.evicted_total.get(),
            restore: self.restore.lock().clone(),
            shards: per_shard
                .into_iter()
                .enumerate()
                .map(|(shard, engine)| ShardStats { shard, engine })
                .collect(),
        }
    }

    pub fn render_metrics(&self) -> String {
        let stats = self.stats(None);
        self.metrics.render(&GaugeValues {
            keys: stats.keys,
            tombstones: stats.tombstones,
            collection_tombstones: stats.collection_tombstones,
            tombstone_ratio: stats.tombstone_ratio,
            overflow_buckets: stats.overflow_buckets,
            memory_bytes: stats.memory_bytes,
            connections: self.tasks.connections(),
            inflight: self.tasks.inflight(),
            lock_waiters: self.store.total_waiters(),
        })
    }
}

pub fn ratio(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// Parses a memory size: plain bytes, Redis units (`100mb`, `1gb`, `10k`) or Kubernetes
/// quantities (`512Mi`, `1Gi`, `2G`). Redis's `kb/mb/gb` and Kubernetes's `Ki/Mi/Gi` are powers
/// of 1024; bare `k/m/g` (Redis) and `k/M/G` (Kubernetes) are powers of 1000.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    let split = lower.find(|c: char| !c.is_ascii_digit()).unwrap_or(lower.len());
    let (digits, unit) = lower.split_at(split);
    let invalid = || format!("invalid memory size {text:?} (examples: 1048576, 100mb, 1gb, 512Mi)");
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" | "ki" => 1 << 10,
        "m" => 1_000_000,
        "mb" | "mi" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" | "gi" => 1 << 30,
        "t" => 1_000_000_000_000,
        "tb" | "ti" => 1 << 40,
        _ => return Err(invalid()),
    };
    n.checked_mul(multiplier).ok_or_else(invalid)
}

/// `--client-query-buffer-limit`: a memory size (as `parse_memory`) of at least 1 MiB, Redis's
/// least `client-query-buffer-limit`.
pub fn parse_query_buffer_limit(text: &str) -> Result<usize, String> {
    let bytes = parse_memory(text)?;
    if bytes < MIN_QUERY_BUFFER_LIMIT as u64 {
        return Err(format!("{text:?} is below the least query buffer limit, 1mb"));
    }
    usize::try_from(bytes).map_err(|_| format!("{text:?} does not fit this machine's memory"))
}

/// `--max-pending-reply-bytes`: a memory size (as `parse_memory`); 0 turns the pause off.
pub fn parse_pending_reply_bytes(text: &str) -> Result<usize, String> {
    let bytes = parse_memory(text)?;
    usize::try_from(bytes).map_err(|_| format!("{text:?} does not fit this machine's memory"))
}

#[cfg(test)]
mod tests {
    use super::{parse_memory, parse_query_buffer_limit};

    #[test]
    fn query_buffer_limits_start_at_redis_least_one() {
        assert_eq!(parse_query_buffer_limit("1gb"), Ok(1 << 30));
        assert_eq!(parse_query_buffer_limit("1mb"), Ok(1 << 20));
        assert!(parse_query_buffer_limit("1048575").unwrap_err().contains("least"));
        assert!(parse_query_buffer_limit("lots").unwrap_err().contains("invalid memory size"));
    }

    #[test]
    fn memory_sizes_accept_redis_and_kubernetes_units() {
        assert_eq!(parse_memory("0"), Ok(0));
        assert_eq!(parse_memory("1048576"), Ok(1_048_576));
        assert_eq!(parse_memory("100mb"), Ok(100 * 1024 * 1024));
        assert_eq!(parse_memory("1gb"), Ok(1 << 30));
        assert_eq!(parse_memory("512Mi"), Ok(512 << 20));
        assert_eq!(parse_memory("2G"), Ok(2_000_000_000));
        assert_eq!(parse_memory("10k"), Ok(10_000));
        assert!(parse_memory("ten").is_err());
        assert!(parse_memory("10xb").is_err());
        assert!(parse_memory("-1").is_err());
        assert!(parse_memory("99999999999999999999gb").is_err());
    }
}
