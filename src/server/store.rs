//! Sharded storage: N shards (a power of two), each a `parking_lot::Mutex` around one engine
//! `Map<Key, Entry>` and its TTL index. A key goes to a shard by a hash of its own (a seed
//! independent of the engine's per-map seed), so shard choice and bucket choice do not correlate.
//!
//! The TTL index of a shard is the set of its keys whose entry has a TTL (a second engine map,
//! Redis's `expires` dict). Active expiry and volatile-ttl eviction sample it, so they find the
//! keys with a TTL however few they are among keys without one. Every [`ShardGuard`] method that
//! stores, removes or re-times an entry keeps it in step; a TTL is changed only through
//! [`ShardGuard::set_expiry`] (or by storing a new entry).
//!
//! Lock contention is observable: [`Store::lock`] tries the lock first; when that fails it counts
//! a contention, registers the task as waiting (for `/v1/debug/tasks` and `/v1/debug/locks`), then
//! blocks. Memory is accounted per shard (see `docs/operations.md`): every entry costs its key and
//! value bytes plus [`ENTRY_OVERHEAD`], and each shard's engine tables count with their
//! `bytes_allocated`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use prometheus_client::metrics::counter::Counter;
use rand::Rng;
use smallvec::SmallVec;

use super::clock::Clock;
use super::collections::{Collection, wants_rebuild};
use super::counters::StripedCounter;
use super::router::Router;
use super::tasks::{Task, TaskState};
use super::value::{Value, WrongType};
use crate::engine::{EngineStats, Map, Phase};

/// A stored key: up to 24 bytes inline in the engine's slot (no allocation, and no pointer to
/// chase when a probe compares keys), longer keys on the heap. Hashes and compares as `[u8]`, so
/// maps are probed with plain byte slices.
pub type Key = SmallVec<[u8; 24]>;

/// Accounted bytes per entry beyond its key and value: the engine slot (tophash byte, the
/// 32-byte key with its inline room, the 32-byte value with its inline room, the TTL and LRU
/// fields), a long value's allocation and shared header, and a long key's heap allocation. An
/// upper bound: a short key or value (up to 24 / 23 bytes) costs nothing beyond its slot.
pub const ENTRY_OVERHEAD: usize = 96;

/// Accounted bytes per key in a shard's TTL index beyond the key's length (its slot is in the
/// index's table bytes, which count like the map's): a long key's heap allocation header. An
/// upper bound, as `ENTRY_OVERHEAD`.
pub const TTL_INDEX_OVERHEAD: usize = 16;

/// Keys of the TTL index one active-expiry round samples (Redis's
/// `ACTIVE_EXPIRE_CYCLE_KEYS_PER_LOOP`).
const ACTIVE_EXPIRE_SAMPLES: usize = 20;

/// How many recent contention events each shard remembers for the lock profile's max wait.
const RECENT_WAITS: usize = 1024;

/// One value with its expiry and last access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    /// Absolute expiry in Unix milliseconds; 0 = no TTL.
    pub expires_at_ms: u64,
    /// Unix milliseconds of the last read or write, for allkeys-lru.
    pub last_access_ms: u64,
}

impl Entry {
    /// `value` is taken as it is ([`ShardGuard::insert`] makes it its own).
    pub fn new(value: impl Into<Value>, expires_at_ms: u64, now_ms: u64) -> Self {
        Self { value: value.into(), expires_at_ms, last_access_ms: now_ms }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }
}

/// The accounted cost of one entry whose value costs `value_cost` ([`Value::cost`]: a string's
/// length, or what a hash's or a set's elements and tables take).
pub fn entry_cost(key: &[u8], value_cost: usize) -> usize {
    key.len() + value_cost + ENTRY_OVERHEAD
}

/// The accounted cost of one key in the TTL index.
pub fn ttl_index_cost(key: &[u8]) -> usize {
    key.len() + TTL_INDEX_OVERHEAD
}

/// What to do when a write would take the node past `maxmemory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[repr(u8)]
pub enum EvictionPolicy {
    /// Refuse the write with Redis's OOM error.
    Noeviction = 0,
    /// Evict random keys.
    AllkeysRandom = 1,
    /// Evict the least recently used of a sample (Redis's approximated LRU, 5 samples).
    AllkeysLru = 2,
    /// Evict the key with the nearest expiry among sampled keys that have one.
    VolatileTtl = 3,
}

impl EvictionPolicy {
    pub fn name(self) -> &'static str {
        match self {
            EvictionPolicy::Noeviction => "noeviction",
            EvictionPolicy::AllkeysRandom => "allkeys-random",
            EvictionPolicy::AllkeysLru => "allkeys-lru",
            EvictionPolicy::VolatileTtl => "volatile-ttl",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Self::Noeviction, Self::AllkeysRandom, Self::AllkeysLru, Self::VolatileTtl]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::AllkeysRandom,
            2 => Self::AllkeysLru,
            3 => Self::VolatileTtl,
            _ => Self::Noeviction,
        }
    }
}

/// The two stages of a batch's prefetch (see `engine::Map::prefetch_slots`): every key's bucket
/// first, then every key's slot, once the buckets are on their way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefetch {
    /// The head bucket of the key's chain (`Map::prefetch`).
    Bucket,
    /// The key and value lines of the slots whose tophash matches (`Map::prefetch_slots`).
    Slots,
}

/// A write could not get memory: Redis's `-OOM` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("OOM command not allowed when used memory > 'maxmemory'.")]
pub struct OutOfMemory;

/// Shards prepare the array of their next doubling from this size on (the engine's default is
/// 16 MiB): in the pass that doubles all 16 shards the connection thread then took 0–160 page
/// faults instead of 5,300–5,850 (docs/BENCHMARKS.md, "Session 5").
const SHARD_PREPARE_MIN_BYTES: usize = 256 << 10;

/// What a shard's lock protects: the entries, the TTL index and the keys clients WATCH.
pub struct ShardData {
    map: Map<Key, Entry>,
    /// The keys of `map` whose entry has a TTL (`expires_at_ms != 0`), exactly.
    ttl_index: Map<Key, ()>,
    /// The keys of this shard some client WATCHes, each with its watchers (Redis's
    /// `db->watched_keys`). Empty but for transactions in progress: every write checks only
    /// `is_empty` on its way.
    watched: HashMap<Key, Vec<Watcher>, foldhash::fast::FixedState>,
    /// Engine tombstones inside this shard's hashes and sets, summed exactly.
    collection_tombstones: usize,
    /// Keys of the hashes and sets whose map is due a rebuild or has one under way: the
    /// maintenance tick advances them (see [`ShardGuard::tend_collections`]).
    upkeep: HashSet<Key, foldhash::fast::FixedState>,
}

/// The state a client's WATCH shares with the shards it watches keys in: set when any of them
/// is changed (Redis's `CLIENT_DIRTY_CAS`), read by its EXEC.
#[derive(Debug, Default)]
pub struct WatchState {
    dirty: AtomicBool,
}

impl WatchState {
    pub fn is_dirty(&self) -> bool {
        self.dirty.load(Ordering::Acquire)
    }
}

/// One client watching one key.
struct Watcher {
    client: u64,
    state: Arc<WatchState>,
    /// The key was stored but already expired when watched (Redis's `watchedKey.expired`): its
    /// removal is then no change, logically, and does not make the transaction fail.
    expired: bool,
}

/// One shard: the map and the counters the lock profile reads.
pub struct Shard {
    map: Mutex<ShardData>,
    /// Accounted bytes of the entries (keys + values + overhead).
    data_bytes: AtomicUsize,
    /// The engine's `bytes_allocated` of the map and the TTL index, refreshed whenever the lock
    /// is released.
    table_bytes: AtomicUsize,
    /// The map's `len()` as of the last release, so the checklist reads it without locking.
    len: AtomicUsize,
    /// At the last release the map or the TTL index was not `Idle`, or the index was due for a
    /// rebuild (see `ttl_index_wants_rebuild`): the maintenance tick has work here.
    busy: AtomicBool,
    /// Old buckets evacuated so far (map and TTL index) as of the last release: the maintenance
    /// tick leaves a shard alone while this moves without it (writes are evacuating it).
    evacuated: AtomicUsize,
    /// Tombstones inside the shard's hashes and sets as of the last release.
    collection_tombstones: AtomicUsize,
    /// Keys with a TTL as of the last release. Active expiry skips shards without one, as
    /// Redis's `activeExpireCycle` skips a database whose `expires` dict is empty.
    ttl_keys: AtomicUsize,
    /// Table bytes the next insert may add: a whole new bucket array (twice the current one)
    /// when it would cross Go's load factor, else one overflow bucket. Reserved by
    /// `ensure_memory` so a write admitted under maxmemory cannot push the tables past it.
    growth_headroom: AtomicUsize,
    /// Of `table_bytes`, the arrays the engine prepared ahead for the next doublings of the map
    /// and the TTL index (`EngineStats::prepared_bytes`): memory `ensure_memory` takes back
    /// before it evicts a key.
    prepared_bytes: AtomicUsize,
    /// Tasks blocked on this lock now.
    waiters: AtomicUsize,
    /// Acquisitions that found the lock held, since start.
    contentions: AtomicU64,
    /// Total nanoseconds spent waiting, since start.
    wait_ns: AtomicU64,
    /// Task id holding the lock (0 = none or an untracked holder).
    holder: AtomicU64,
    /// Ids of the tasks waiting now.
    waiter_ids: Mutex<Vec<u64>>,
    /// Recent contention events (when, nanoseconds waited), for the window's max wait.
    recent_waits: Mutex<VecDeque<(Instant, u64)>>,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard")
            .field("data_bytes", &self.data_bytes)
            .field("table_bytes", &self.table_bytes)
            .field("waiters", &self.waiters)
            .field("contentions", &self.contentions)
            .finish_non_exhaustive()
    }
}

/// A shard's lock profile counters at one instant.
#[derive(Debug, Clone, Default)]
pub struct LockCounters {
    pub contentions: u64,
    pub wait_ns: u64,
    pub waiters_now: usize,
    pub holder: Option<u64>,
    pub waiters: Vec<u64>,
}

/// The node's storage.
#[derive(Debug)]
pub struct Store {
    shards: Box<[Shard]>,
    router: Router,
    pub clock: Arc<dyn Clock>,
    maxmemory: AtomicU64,
    policy: AtomicU8,
    /// Keys removed because their TTL passed (lazily or by active expiry).
    pub expired_total: Counter,
    /// Keys removed by the eviction policy.
    pub evicted_total: Counter,
    /// Read lookups that found their key live ([`ShardGuard::lookup_read`]): Redis's
    /// `keyspace_hits`, since start.
    pub keyspace_hits: StripedCounter,
    /// Read lookups that did not: `keyspace_misses`.
    pub keyspace_misses: StripedCounter,
    /// `expired_total` and `evicted_total` at the last `CONFIG RESETSTAT`: INFO reports the
    /// counts since then, as Redis does, while the Prometheus counters never go back.
    pub expired_at_reset: AtomicU64,
    pub evicted_at_reset: AtomicU64,
    /// Redis's `avg_ttl` estimate in milliseconds (see `note_sampled_ttl`).
    avg_ttl_ms: AtomicU64,
}

impl Store {
    /// `shards` must be a power of two (checked by the config).
    pub fn new(
        shards: usize,
        clock: Arc<dyn Clock>,
        maxmemory: u64,
        policy: EvictionPolicy,
    ) -> Self {
        assert!(shards.is_power_of_two(), "shard count must be a power of two");
        let shards: Box<[Shard]> = (0..shards)
            .map(|_| {
                let mut data = ShardData {
                    map: Map::new(),
                    ttl_index: Map::new(),
                    watched: HashMap::default(),
                    collection_tombstones: 0,
                    upkeep: HashSet::default(),
                };
                // A node's shards double together, on the thread that serves every client: it
                // prepares from the engine's mapped-array size on, below the embedded default
                // (`Map::set_prepare_min_bytes`, measured in docs/BENCHMARKS.md, "Session 5").
                data.map.set_prepare_min_bytes(SHARD_PREPARE_MIN_BYTES);
                data.ttl_index.set_prepare_min_bytes(SHARD_PREPARE_MIN_BYTES);
                let table =
                    data.map.stats().bytes_allocated + data.ttl_index.stats().bytes_allocated;
                Shard {
                    map: Mutex::new(data),
                    data_bytes: AtomicUsize::new(0),
                    table_bytes: AtomicUsize::new(table),
                    len: AtomicUsize::new(0),
                    busy: AtomicBool::new(false),
                    ttl_keys: AtomicUsize::new(0),
                    collection_tombstones: AtomicUsize::new(0),
                    evacuated: AtomicUsize::new(0),
                    growth_headroom: AtomicUsize::new(table),
                    prepared_bytes: AtomicUsize::new(0),
                    waiters: AtomicUsize::new(0),
                    contentions: AtomicU64::new(0),
                    wait_ns: AtomicU64::new(0),
                    holder: AtomicU64::new(0),
                    waiter_ids: Mutex::new(Vec::new()),
                    recent_waits: Mutex::new(VecDeque::new()),
                }
            })
            .collect();
        Self {
            router: Router::new(shards.len()),
            shards,
            clock,
            maxmemory: AtomicU64::new(maxmemory),
            policy: AtomicU8::new(policy as u8),
            expired_total: Counter::default(),
            evicted_total: Counter::default(),
            keyspace_hits: StripedCounter::default(),
            keyspace_misses: StripedCounter::default(),
            expired_at_reset: AtomicU64::new(0),
            evicted_at_reset: AtomicU64::new(0),
            avg_ttl_ms: AtomicU64::new(0),
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that holds `key`: by a hash of the key, with unequal shares so that shards do
    /// not double together (see `router.rs`).
    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> usize {
        self.router.shard_of(key)
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn maxmemory(&self) -> u64 {
        self.maxmemory.load(Ordering::Relaxed)
    }

    pub fn set_maxmemory(&self, bytes: u64) {
        self.maxmemory.store(bytes, Ordering::Relaxed);
    }

    pub fn policy(&self) -> EvictionPolicy {
        EvictionPolicy::from_u8(self.policy.load(Ordering::Relaxed))
    }

    pub fn set_policy(&self, policy: EvictionPolicy) {
        self.policy.store(policy as u8, Ordering::Relaxed);
    }

    /// Accounted memory: entries plus engine tables, summed over shards.
    pub fn used_memory(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.data_bytes.load(Ordering::Relaxed) + s.table_bytes.load(Ordering::Relaxed))
            .sum()
    }

    /// Starts loading `key`'s bucket (or, in the second stage, its slot) into the cache ahead of
    /// a command that will read or write it (see `Map::prefetch` and `Map::prefetch_slots`).
    /// Skipped when the shard is locked by someone else: a hint never waits.
    #[inline]
    pub fn prefetch(&self, key: &[u8], stage: Prefetch) {
        if let Some(data) = self.shards[self.shard_of(key)].map.try_lock() {
            match stage {
                Prefetch::Bucket => data.map.prefetch(key),
                Prefetch::Slots => data.map.prefetch_slots(key),
            }
        }
    }

    /// Locks one shard. When the lock is busy the contention is counted and `task` is shown as
    /// waiting for it until it gets the lock.
    ///
    /// A task that already holds the lock (a transaction holds its shards while its commands
    /// run, and they take them from it, not from here) panics instead of waiting for itself.
    pub fn lock<'a>(&'a self, index: usize, task: Option<&'a Task>) -> ShardGuard<'a> {
        let shard = &self.shards[index];
        if let Some(t) = task {
            assert_ne!(
                shard.holder.load(Ordering::Relaxed),
                t.id,
                "task {} locks shard {index}, which it already holds",
                t.id
            );
        }
        let map = match shard.map.try_lock() {
            Some(map) => map,
            None => {
                let started = Instant::now();
                shard.contentions.fetch_add(1, Ordering::Relaxed);
                let task_id = task.map_or(0, |t| t.id);
                // The task is marked before the waiter count moves, so anyone who sees a waiter
                // also finds it in the task dump.
                if let Some(t) = task {
                    t.set_waits_lock(Some(index));
                    t.set_state(TaskState::WaitingLock);
                    shard.waiter_ids.lock().push(task_id);
                }
                shard.waiters.fetch_add(1, Ordering::SeqCst);
                let map = shard.map.lock();
                let waited = started.elapsed().as_nanos() as u64;
                shard.waiters.fetch_sub(1, Ordering::SeqCst);
                shard.wait_ns.fetch_add(waited, Ordering::Relaxed);
                {
                    let mut recent = shard.recent_waits.lock();
                    if recent.len() >= RECENT_WAITS {
                        recent.pop_front();
                    }
                    recent.push_back((Instant::now(), waited));
                }
                if let Some(t) = task {
                    shard.waiter_ids.lock().retain(|&id| id != task_id);
                    t.set_waits_lock(None);
                    t.set_state(TaskState::Executing);
                }
                map
            }
        };
        self.held(index, map, task)
    }

    /// Locks shard `index` if nobody holds it now; never waits. For background work that can
    /// come back later (the maintenance tick), so it never makes a connection wait behind it.
    pub fn try_lock<'a>(&'a self, index: usize, task: Option<&'a Task>) -> Option<ShardGuard<'a>> {
        let map = self.shards[index].map.try_lock()?;
        Some(self.held(index, map, task))
    }

    /// The guard of a lock just taken, with `task` recorded as its holder.
    fn held<'a>(
        &'a self,
        index: usize,
        data: MutexGuard<'a, ShardData>,
        task: Option<&'a Task>,
    ) -> ShardGuard<'a> {
        let shard = &self.shards[index];
        if let Some(t) = task {
            t.set_holds_lock(Some(index));
            shard.holder.store(t.id, Ordering::SeqCst);
        }
        ShardGuard { data, shard, index, store: self, task, touch: true }
    }

    /// Old buckets of shard `index` evacuated so far, as of its last lock release (no lock
    /// taken). It moves whenever a write or a maintenance step evacuates.
    pub fn evacuated_unlocked(&self, index: usize) -> usize {
        self.shards[index].evacuated.load(Ordering::Relaxed)
    }

    /// Locks every shard in `indices` (sorted and deduplicated here) in ascending order, the one
    /// lock order used node-wide, so multi-shard commands cannot deadlock.
    pub fn lock_many<'a>(
        &'a self,
        mut indices: Vec<usize>,
        task: Option<&'a Task>,
    ) -> Vec<ShardGuard<'a>> {
        indices.sort_unstable();
        indices.dedup();
        indices.into_iter().map(|i| self.lock(i, task)).collect()
    }

    /// The lock profile counters of every shard now.
    pub fn lock_counters(&self) -> Vec<LockCounters> {
        self.shards
            .iter()
            .map(|s| LockCounters {
                contentions: s.contentions.load(Ordering::Relaxed),
                wait_ns: s.wait_ns.load(Ordering::Relaxed),
                waiters_now: s.waiters.load(Ordering::SeqCst),
                holder: match s.holder.load(Ordering::SeqCst) {
                    0 => None,
                    id => Some(id),
                },
                waiters: s.waiter_ids.lock().clone(),
            })
            .collect()
    }

    /// The longest single wait per shard among contentions after `since`.
    pub fn max_wait_since(&self, since: Instant) -> Vec<Duration> {
        self.shards
            .iter()
            .map(|s| {
                let recent = s.recent_waits.lock();
                let max = recent.iter().filter(|(at, _)| *at >= since).map(|(_, ns)| *ns).max();
                Duration::from_nanos(max.unwrap_or(0))
            })
            .collect()
    }

    /// Live keys as of each shard's last lock release, read without locking (the checklist must
    /// not block behind the very lock holders it reports).
    pub fn len_unlocked(&self) -> usize {
        self.shards.iter().map(|s| s.len.load(Ordering::Relaxed)).sum()
    }

    /// Whether shard `index` was growing, compacting or shrinking when its lock was last
    /// released (no lock taken: a hint that is at most one release old).
    pub fn is_busy_unlocked(&self, index: usize) -> bool {
        self.shards[index].busy.load(Ordering::Relaxed)
    }

    /// Keys with a TTL over all shards as of each shard's last lock release (Redis's
    /// `expires=` in INFO keyspace); no lock taken.
    /// Tombstones inside hashes and sets, as of each shard's last lock release.
    pub fn collection_tombstones_unlocked(&self) -> usize {
        self.shards.iter().map(|s| s.collection_tombstones.load(Ordering::Relaxed)).sum()
    }

    pub fn ttl_keys_unlocked(&self) -> usize {
        self.shards.iter().map(|s| s.ttl_keys.load(Ordering::Relaxed)).sum()
    }

    /// Checks every shard's TTL index against its map: exactly the keys whose entry has a TTL.
    /// O(n): for tests and debugging.
    #[doc(hidden)]
    pub fn check_ttl_index(&self) -> Result<(), String> {
        for index in 0..self.shards.len() {
            let guard = self.lock(index, None);
            let data = &*guard.data;
            let mut with_ttl = 0;
            for (key, entry) in data.map.iter() {
                let indexed = data.ttl_index.contains_key(&key[..]);
                if indexed != (entry.expires_at_ms != 0) {
                    return Err(format!(
                        "shard {index}: key {key:?} with expires_at_ms {} is{} in the TTL index",
                        entry.expires_at_ms,
                        if indexed { "" } else { " not" }
                    ));
                }
                with_ttl += usize::from(indexed);
            }
            if with_ttl != data.ttl_index.len() {
                return Err(format!(
                    "shard {index}: {} keys in the TTL index, {with_ttl} entries with a TTL",
                    data.ttl_index.len()
                ));
            }
        }
        Ok(())
    }

    /// Shards whose evacuation was in progress at their last lock release, read without locking.
    pub fn busy_shards_unlocked(&self) -> Vec<usize> {
        self.shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.busy.load(Ordering::Relaxed))
            .map(|(i, _)| i)
            .collect()
    }

    pub fn total_waiters(&self) -> usize {
        self.shards.iter().map(|s| s.waiters.load(Ordering::SeqCst)).sum()
    }

    /// Engine stats of every shard (each lock taken briefly).
    pub fn shard_stats(&self, task: Option<&Task>) -> Vec<EngineStats> {
        (0..self.shards.len()).map(|i| self.lock(i, task).map().stats()).collect()
    }

    /// Live keys over all shards (expired-but-not-yet-removed keys included, as Redis's DBSIZE).
    pub fn len(&self, task: Option<&Task>) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i, task).map().len()).sum()
    }

    pub fn is_empty(&self, task: Option<&Task>) -> bool {
        self.len(task) == 0
    }

    /// Makes room for a write of about `incoming` bytes under the eviction policy. Must be called
    /// without any shard lock held.
    /// `shards` are the shards the write touches; their possible table growth is reserved too.
    ///
    /// A write that can never fit is refused before anything is evicted: one whose bytes alone,
    /// beside what eviction cannot take back (the engine tables, less the arrays prepared ahead,
    /// and the keys the policy may not evict), pass maxmemory. Otherwise keys are evicted until
    /// it fits, however many that takes.
    pub fn ensure_memory(
        &self,
        incoming: usize,
        shards: &[usize],
        task: Option<&Task>,
    ) -> Result<(), OutOfMemory> {
        let max = self.maxmemory() as usize;
        if max == 0 {
            return Ok(());
        }
        let needed = |store: &Self| {
            incoming
                + shards
                    .iter()
                    .map(|&s| store.shards[s].growth_headroom.load(Ordering::Relaxed))
                    .sum::<usize>()
        };
        if self.used_memory() + needed(self) <= max {
            return Ok(());
        }
        if !self.eviction_can_make_room(incoming, max, task) {
            return Err(OutOfMemory);
        }
        // Each round takes back prepared arrays or evicts one key; it ends when the write fits
        // or nothing more can go. The bound (every key there was, and as many again written
        // meanwhile by other clients) only stops a node whose clients refill it as fast as
        // this write evicts.
        let rounds = 2 * self.len_unlocked() + 1_000;
        for _ in 0..rounds {
            if self.used_memory() + needed(self) <= max {
                return Ok(());
            }
            if !self.release_prepared(task) && !self.evict_one(task) {
                return Err(OutOfMemory);
            }
        }
        Err(OutOfMemory)
    }

    /// Whether evicting what the policy allows could bring the node under `max` with `incoming`
    /// bytes more. What eviction cannot take back: the engine tables (evicting keys leaves
    /// tombstones, not a smaller array) less the arrays prepared ahead (`release_prepared`
    /// gives them back), and the entries the policy may not evict (every one under noeviction,
    /// those without a TTL under volatile-ttl). Table growth is left out: a shard that evicts
    /// keys may no longer be about to double.
    fn eviction_can_make_room(&self, incoming: usize, max: usize, task: Option<&Task>) -> bool {
        let Some(room) = max.checked_sub(incoming) else {
            return false;
        };
        let tables: usize = self
            .shards
            .iter()
            .map(|s| {
                s.table_bytes
                    .load(Ordering::Relaxed)
                    .saturating_sub(s.prepared_bytes.load(Ordering::Relaxed))
            })
            .sum();
        let data: usize = self.shards.iter().map(|s| s.data_bytes.load(Ordering::Relaxed)).sum();
        if tables > room {
            return false;
        }
        // The entry bytes that must go for the write to fit.
        let deficit = (tables + data).saturating_sub(room);
        match self.policy() {
            EvictionPolicy::Noeviction => deficit == 0,
            EvictionPolicy::AllkeysRandom | EvictionPolicy::AllkeysLru => true,
            EvictionPolicy::VolatileTtl => deficit == 0 || self.volatile_bytes_reach(deficit, task),
        }
    }

    /// Whether the entries with a TTL (with their TTL index keys: what volatile-ttl can evict)
    /// hold at least `target` accounted bytes. Walks the TTL indexes, each shard's lock held
    /// for its own, and stops as soon as the answer is yes: a write that needs little room
    /// reads a few keys; only a write that will be refused reads them all.
    fn volatile_bytes_reach(&self, target: usize, task: Option<&Task>) -> bool {
        let mut found = 0usize;
        for i in 0..self.shards.len() {
            let guard = self.lock(i, task);
            let data = &*guard.data;
            for (key, ()) in data.ttl_index.iter() {
                if let Some(entry) = data.map.get(&key[..]) {
                    found += entry_cost(key, entry.value.cost()) + ttl_index_cost(key);
                    if found >= target {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Gives back every array the engine prepared ahead for a coming doubling (see
    /// `Map::set_prepare_growth`): memory no key lives in yet, so it goes before any key is
    /// evicted. Those shards' next doublings allocate their arrays themselves. Returns whether
    /// anything was given back.
    fn release_prepared(&self, task: Option<&Task>) -> bool {
        let mut released = 0;
        for (i, shard) in self.shards.iter().enumerate() {
            if shard.prepared_bytes.load(Ordering::Relaxed) > 0 {
                let mut guard = self.lock(i, task);
                released += guard.data.map.release_prepared();
                released += guard.data.ttl_index.release_prepared();
            }
        }
        released > 0
    }

    /// A shard index drawn with probability proportional to `weight` (read from the shards'
    /// counters as of their last lock release); `None` when every weight is 0.
    fn pick_weighted(&self, rng: &mut impl Rng, weight: impl Fn(&Shard) -> usize) -> Option<usize> {
        let total: usize = self.shards.iter().map(&weight).sum();
        if total == 0 {
            return None;
        }
        let mut draw = rng.random_range(0..total);
        let mut last = None;
        for (i, shard) in self.shards.iter().enumerate() {
            let w = weight(shard);
            if w > 0 {
                last = Some(i);
            }
            if draw < w {
                return Some(i);
            }
            draw -= w;
        }
        // The counters moved between the two reads: any shard that has keys will do.
        last
    }

    /// Evicts one key per the policy; false when nothing can be evicted.
    fn evict_one(&self, task: Option<&Task>) -> bool {
        let policy = self.policy();
        if policy == EvictionPolicy::Noeviction {
            return false;
        }
        let mut rng = rand::rng();
        let n = self.shards.len();
        // Candidates: (shard, key, score); the lowest score is evicted.
        let mut best: Option<(usize, Key, u64)> = None;
        let samples = match policy {
            EvictionPolicy::AllkeysRandom => 1,
            _ => 5,
        };
        let volatile = policy == EvictionPolicy::VolatileTtl;
        // Each sample's shard is drawn in proportion to its keys (with a TTL, for volatile-ttl),
        // so every key is as likely to be sampled as any other: shards hold unequal shares by
        // design (`router.rs`), and some may be empty.
        let weight =
            |s: &Shard| if volatile { &s.ttl_keys } else { &s.len }.load(Ordering::Relaxed);
        let mut tries = 0;
        let mut taken = 0;
        while taken < samples && tries < samples * n * 2 {
            tries += 1;
            let Some(shard) = self.pick_weighted(&mut rng, weight) else {
                break;
            };
            let guard = self.lock(shard, task);
            let data = &*guard.data;
            let sampled = if volatile {
                // Sample the TTL index (Redis samples its `expires` dict for volatile-*).
                data.ttl_index.sample(rng.random()).and_then(|(k, ())| data.map.get_key_value(k))
            } else {
                data.map.sample(rng.random())
            };
            let Some((key, entry)) = sampled else {
                continue;
            };
            let score = match policy {
                EvictionPolicy::AllkeysLru => entry.last_access_ms,
                EvictionPolicy::VolatileTtl => entry.expires_at_ms,
                _ => 0,
            };
            taken += 1;
            if best.as_ref().is_none_or(|(_, _, s)| score < *s) {
                best = Some((shard, key.clone(), score));
            }
        }
        let Some((shard, key, _)) = best else {
            return false;
        };
        let mut guard = self.lock(shard, task);
        if guard.remove(&key).is_some() {
            self.evicted_total.inc();
        }
        true
    }

    /// One round of Redis's active expiry on one shard: sample up to 20 keys of its TTL index;
    /// delete the expired; repeat while more than 10% of the sampled keys were expired (Redis 7's
    /// `ACTIVE_EXPIRE_CYCLE_ACCEPTABLE_STALE` at the default effort), within
    /// `budget`. Folds the sampled keys' remaining TTL into `avg_ttl_ms`. Returns the number of
    /// keys expired.
    pub fn active_expire_shard(
        &self,
        index: usize,
        budget: Duration,
        task: Option<&Task>,
    ) -> usize {
        if self.shards[index].ttl_keys.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let started = Instant::now();
        let mut rng = rand::rng();
        let mut expired = 0;
        loop {
            let now = self.now_ms();
            // Never wait behind a connection (see the maintenance tick): a shard in use now is
            // sampled on the next round, 100 ms on; keys read meanwhile expire lazily.
            let Some(mut guard) = self.try_lock(index, task) else {
                return expired;
            };
            // As Redis: as many samples as there are keys with a TTL, at most 20.
            let samples = guard.data.ttl_index.len().min(ACTIVE_EXPIRE_SAMPLES);
            if samples == 0 {
                return expired;
            }
            let (mut round_expired, mut ttl_sum, mut ttl_count) = (0, 0u64, 0u64);
            for _ in 0..samples {
                let data = &*guard.data;
                let Some((key, ())) = data.ttl_index.sample(rng.random()) else {
                    break;
                };
                let Some(entry) = data.map.get(&key[..]) else {
                    debug_assert!(false, "TTL index holds {key:?}, the map does not");
                    continue;
                };
                if !entry.is_expired(now) {
                    ttl_sum += entry.expires_at_ms - now;
                    ttl_count += 1;
                    continue;
                }
                // Deleted at once, as Redis does, so the next sample cannot draw it again.
                let key = key.clone();
                if guard.remove(&key).is_some() {
                    self.expired_total.inc();
                    round_expired += 1;
                }
            }
            expired += round_expired;
            drop(guard);
            if let Some(avg) = ttl_sum.checked_div(ttl_count) {
                self.note_sampled_ttl(avg);
            }
            if round_expired * 10 <= samples || started.elapsed() >= budget {
                return expired;
            }
        }
    }

    /// Redis's `avg_ttl` estimate: a running average of the remaining TTL of the keys active
    /// expiry samples, each round weighing 1/50 (as `activeExpireCycle`).
    fn note_sampled_ttl(&self, round_avg_ms: u64) {
        let old = self.avg_ttl_ms.load(Ordering::Relaxed);
        let new = if old == 0 { round_avg_ms } else { old / 50 * 49 + round_avg_ms / 50 };
        self.avg_ttl_ms.store(new, Ordering::Relaxed);
    }

    /// The estimated average remaining TTL in milliseconds of keys with a TTL (0 when none).
    pub fn avg_ttl_ms(&self) -> u64 {
        if self.ttl_keys_unlocked() == 0 { 0 } else { self.avg_ttl_ms.load(Ordering::Relaxed) }
    }
}

/// Go's `overLoadFactor`: the map doubles when `count > 6.5 * 2^B`. An array prepared for that
/// doubling is counted in `bytes_allocated` already.
fn growth_headroom(stats: &EngineStats) -> usize {
    let array_buckets = 1usize << stats.b;
    let bucket_bytes = (stats.bytes_allocated - stats.prepared_bytes) / stats.buckets.max(1);
    if (stats.len + 1) * 2 > 13 * array_buckets && stats.prepared_bytes == 0 {
        2 * array_buckets * bucket_bytes
    } else {
        bucket_bytes
    }
}

/// A held shard lock. Keeps the memory accounting, the TTL index and the lock profile's holder
/// in step.
pub struct ShardGuard<'a> {
    data: MutexGuard<'a, ShardData>,
    shard: &'a Shard,
    pub index: usize,
    store: &'a Store,
    task: Option<&'a Task>,
    /// Whether a lookup marks the entry accessed (for LRU); off for a client in `CLIENT NO-TOUCH`
    /// mode (see [`ShardGuard::set_touch`]).
    touch: bool,
}

impl ShardGuard<'_> {
    /// Whether this guard's lookups update the LRU time of the entries they find: a connection
    /// in `CLIENT NO-TOUCH` mode reads without changing what eviction sees (Redis 7.2's
    /// `LOOKUP_NOTOUCH`). Entries it stores are new, and as recent as any.
    pub fn set_touch(&mut self, touch: bool) {
        self.touch = touch;
    }

    /// The live entry for `key`, looked up for reading, as Redis's `lookupKeyRead`: counted as a
    /// keyspace hit or miss (INFO's `keyspace_hits`/`keyspace_misses`). Read commands use this for
    /// the keys they read (GET, MGET, STRLEN, GETRANGE, EXISTS, TYPE, TTL...), and so do GETEX,
    /// GETDEL, GETSET and `SET ... GET`, which read with it in Redis too; writes look up with
    /// [`ShardGuard::get_live`], which counts nothing.
    pub fn lookup_read(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.lookup_read_mut(key, now_ms).map(|e| &*e)
    }

    /// As `lookup_read`, without marking the entry accessed: Redis's `LOOKUP_NOTOUCH` reads
    /// (EXISTS, TYPE, TTL...), counted as hits and misses all the same.
    pub fn peek_read(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        let store = self.store;
        let entry = self.lookup_live(key, now_ms, false);
        match entry {
            Some(_) => store.keyspace_hits.inc(),
            None => store.keyspace_misses.inc(),
        }
        entry.map(|e| &*e)
    }

    /// As `lookup_read`, for a command that then changes the entry (GETEX), under the rules of
    /// `get_live_mut`.
    pub fn lookup_read_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        let store = self.store;
        let entry = self.get_live_mut(key, now_ms);
        match entry {
            Some(_) => store.keyspace_hits.inc(),
            None => store.keyspace_misses.inc(),
        }
        entry
    }

    pub fn map(&self) -> &Map<Key, Entry> {
        &self.data.map
    }

    /// Direct access for maintenance (compact, rebuild, steps). Entries must not be added,
    /// removed or re-timed through it: that is what the other methods are for.
    pub fn map_mut(&mut self) -> &mut Map<Key, Entry> {
        &mut self.data.map
    }

    /// The live entry for `key` (an expired one is removed first, as Redis's `lookupKey`),
    /// marked accessed (for LRU).
    pub fn get_live(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.get_live_mut(key, now_ms).map(|e| &*e)
    }

    /// As `get_live`, without marking the entry accessed: Redis's `LOOKUP_NOTOUCH`, for the
    /// commands that look at a key without using its value (EXISTS, TYPE, TTL, OBJECT, MEMORY
    /// USAGE), so that OBJECT IDLETIME and LRU eviction see the last real use.
    pub fn peek_live(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        self.lookup_live(key, now_ms, false).map(|e| &*e)
    }

    /// As `get_live`, mutable. The caller may change the value (keeping the accounting with
    /// `upsert_live`, `set_value` or `modify_value`) but not `expires_at_ms`: a TTL changes
    /// through `set_expiry`, which keeps the TTL index in step.
    pub fn get_live_mut(&mut self, key: &[u8], now_ms: u64) -> Option<&mut Entry> {
        self.lookup_live(key, now_ms, true)
    }

    /// The live entry for `key`, an expired one removed first; `touch` marks it accessed.
    fn lookup_live(&mut self, key: &[u8], now_ms: u64, touch: bool) -> Option<&mut Entry> {
        // One probe. The borrow checker cannot see that the entry is only returned on the path
        // that does not touch the map again (a conditional return of a borrow), so the entry
        // goes through a raw pointer.
        let entry: *mut Entry = self.data.map.get_mut(key)?;
        // SAFETY: `entry` points at a live value inside the map, valid until the map is next
        // changed; on the expired path it is not used after `remove` changes the map, and on the
        // live path it is returned with the lifetime of `&mut self`, which keeps the map
        // untouched for as long as the reference lives.
        let entry = unsafe { &mut *entry };
        // Lazy expiry: an expired key is removed (an engine tombstone) and reads as absent.
        if entry.is_expired(now_ms) {
            self.remove(key);
            self.store.expired_total.inc();
            return None;
        }
        // A NO-TOUCH client's guard never marks an access.
        if touch && self.touch {
            entry.last_access_ms = now_ms;
        }
        Some(entry)
    }

    /// Runs `f` on the live entry for `key`, first storing `new()` when the key is absent or
    /// expired, all in one probe (INCR on a new key: no miss followed by an insert). `new()`
    /// must build an entry without a TTL whose value owns its allocation; `f` must not change
    /// the TTL. An expired entry is replaced (and counted as expired, as lazy expiry does).
    /// Keeps the accounting and the TTL index exact.
    ///
    /// `f` fails without changing the entry (INCR of a value that is not a number): watchers of
    /// the key are then not told of a change (only when the key was created or replaced first).
    pub fn upsert_live<T, E>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        new: impl Fn() -> Entry,
        f: impl FnOnce(&mut Entry) -> Result<T, E>,
    ) -> Result<T, E> {
        let (shard, store, touch) = (self.shard, self.store, self.touch);
        let (entry, inserted) =
            self.data.map.get_or_insert_with_borrowed(key, || (Key::from_slice(key), new()));
        let mut dropped_ttl = false;
        let mut dropped_tombstones = 0;
        let before = if inserted {
            shard.data_bytes.fetch_add(entry_cost(key, 0), Ordering::Relaxed);
            0
        } else if entry.is_expired(now_ms) {
            store.expired_total.inc();
            dropped_ttl = true;
            let before = entry.value.cost();
            dropped_tombstones = entry.value.tombstones();
            *entry = new();
            before
        } else {
            if touch {
                entry.last_access_ms = now_ms;
            }
            entry.value.cost()
        };
        debug_assert_eq!(inserted.then_some(entry.expires_at_ms), inserted.then_some(0));
        let ttl = entry.expires_at_ms;
        let result = f(&mut *entry);
        debug_assert_eq!(entry.expires_at_ms, ttl, "upsert_live must not re-time {key:?}");
        debug_assert!(entry.value.is_string() || result.is_err(), "upsert_live stores strings");
        shard.data_bytes.fetch_add(entry.value.cost(), Ordering::Relaxed);
        shard.data_bytes.fetch_sub(before, Ordering::Relaxed);
        self.data.collection_tombstones -= dropped_tombstones;
        if dropped_ttl {
            self.unindex_ttl(key);
        }
        if result.is_ok() || inserted || dropped_ttl {
            self.touched(key);
        }
        result
    }

    /// Inserts or replaces, keeping the memory accounting and the TTL index exact. Returns the
    /// replaced entry, expired or not.
    ///
    /// The value, and the key when it is new, are copied into allocations of their own
    /// ([`Value::detach`]; a short value is stored inline): arguments arrive as slices of the
    /// connection's read buffer (and restored entries as slices of a snapshot block), and storing
    /// such a slice would keep the whole buffer alive for as long as the key lives, memory the
    /// accounting never sees. A replaced entry keeps the key already stored.
    pub fn insert(&mut self, key: Bytes, mut entry: Entry) -> Option<Entry> {
        entry.value = entry.value.detach();
        self.insert_owned(key, entry)
    }

    /// As [`insert`](Self::insert), for an entry whose value owns its allocation already: built
    /// by the command (SETBIT's padded value), or taken out of a shard with
    /// [`remove`](Self::remove) (RENAME moves an entry, TTL and last access included, to its new
    /// key). The value is stored as it is, not copied.
    pub fn insert_owned(&mut self, key: Bytes, entry: Entry) -> Option<Entry> {
        let has_ttl = entry.expires_at_ms != 0;
        // One probe: the entry goes into the slot that probe reserves when the key is new, and
        // replaces the stored one otherwise.
        let mut pending = Some(entry);
        let (slot, inserted) = self.data.map.get_or_insert_with_borrowed(&key[..], || {
            (Key::from_slice(&key), pending.take().expect("taken once"))
        });
        let Some(entry) = pending else {
            self.shard.data_bytes.fetch_add(entry_cost(&key, slot.value.cost()), Ordering::Relaxed);
            let tombstones = slot.value.tombstones();
            let upkeep = slot.value.as_collection().is_some_and(Collection::needs_upkeep);
            self.data.collection_tombstones += tombstones;
            if upkeep {
                self.data.upkeep.insert(Key::from_slice(&key));
            }
            if has_ttl {
                self.index_ttl(Key::from_slice(&key));
            }
            self.touched(&key);
            return None;
        };
        debug_assert!(!inserted);
        let (new_cost, new_tombstones) = (entry.value.cost(), entry.value.tombstones());
        let upkeep = entry.value.as_collection().is_some_and(Collection::needs_upkeep);
        let old = std::mem::replace(slot, entry);
        self.shard.data_bytes.fetch_add(new_cost, Ordering::Relaxed);
        self.shard.data_bytes.fetch_sub(old.value.cost(), Ordering::Relaxed);
        self.data.collection_tombstones += new_tombstones;
        self.data.collection_tombstones -= old.value.tombstones();
        if upkeep {
            self.data.upkeep.insert(Key::from_slice(&key));
        }
        self.retime(&key, old.expires_at_ms != 0, has_ttl);
        self.touched(&key);
        Some(old)
    }

    /// Sets (`expires_at_ms` > 0) or clears (0) the TTL of a stored entry, keeping the TTL index
    /// in step. Returns false when `key` is not stored. Expired or not is the caller's concern.
    pub fn set_expiry(&mut self, key: &[u8], expires_at_ms: u64) -> bool {
        let Some(entry) = self.data.map.get_mut(key) else {
            return false;
        };
        let had_ttl = entry.expires_at_ms != 0;
        entry.expires_at_ms = expires_at_ms;
        self.retime(key, had_ttl, expires_at_ms != 0);
        self.touched(key);
        true
    }

    /// Replaces the value of an existing entry in place (APPEND, SETRANGE, INCR), keeping TTL.
    /// `value` must own its allocation (built by the command, not sliced from a request): it is
    /// stored as it is. An absent key gets the value back, unstored.
    pub fn set_value(&mut self, key: &[u8], value: Bytes) -> Result<(), Bytes> {
        let Some(entry) = self.data.map.get_mut(key) else {
            return Err(value);
        };
        debug_assert!(entry.value.is_string(), "set_value replaces strings");
        let old_len = entry.value.cost();
        let new_len = value.len();
        entry.value = Value::from_owned(value);
        self.shard.data_bytes.fetch_add(new_len, Ordering::Relaxed);
        self.shard.data_bytes.fetch_sub(old_len, Ordering::Relaxed);
        self.touched(key);
        Ok(())
    }

    /// Changes the bytes of a stored value in place, its length unchanged (SETBIT within the
    /// value): no copy unless a reply being written still shares the value's allocation (see
    /// [`Value::modify`]). Returns false when `key` is not stored.
    pub fn modify_value(&mut self, key: &[u8], f: impl FnOnce(&mut [u8])) -> bool {
        let Some(entry) = self.data.map.get_mut(key) else {
            return false;
        };
        entry.value.modify(f);
        self.touched(key);
        true
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (k, old) = self.data.map.remove_entry(key)?;
        self.shard.data_bytes.fetch_sub(entry_cost(&k, old.value.cost()), Ordering::Relaxed);
        if old.value.as_collection().is_some() {
            self.data.collection_tombstones -= old.value.tombstones();
            self.data.upkeep.remove(&k[..]);
        }
        if old.expires_at_ms != 0 {
            self.unindex_ttl(&k);
        }
        self.touched(&k);
        Some(old)
    }

    /// Runs `f` on the value of the live key `key`, a hash or a set, keeping the accounting, the
    /// tombstone sum and the watchers exact: HSET, HDEL, SADD, SPOP... When the key is absent
    /// (or expired) and `create` is given, an entry of `create()` is stored first; without it
    /// the answer is `Ok(None)` and nothing changes. `f` answers its result and whether it
    /// changed the collection; a collection left empty is removed, as Redis removes an emptied
    /// hash or set. `f` meeting a value of another kind answers [`WrongType`] and changes
    /// nothing.
    pub fn update_collection<T>(
        &mut self,
        key: &[u8],
        now_ms: u64,
        create: Option<fn() -> Value>,
        f: impl FnOnce(&mut Value) -> Result<(T, bool), WrongType>,
    ) -> Result<Option<T>, WrongType> {
        // One probe for a stored key: the entry goes through a raw pointer, as in `lookup_live`.
        let found: Option<*mut Entry> = self.get_live_mut(key, now_ms).map(|e| e as *mut Entry);
        let (entry, created) = match (found, create) {
            (Some(entry), _) => (entry, false),
            (None, None) => return Ok(None),
            (None, Some(create)) => {
                self.insert_owned(Bytes::copy_from_slice(key), Entry::new(create(), 0, now_ms));
                (self.data.map.get_mut(key).expect("stored above") as *mut Entry, true)
            }
        };
        // SAFETY: `entry` points at a live entry of the map, and nothing touches the shard's data
        // until the last use of `entry` below (the counters and `remove` come after it).
        let entry = unsafe { &mut *entry };
        let (cost, tombstones) = (entry.value.cost(), entry.value.tombstones());
        let (result, changed) = match f(&mut entry.value) {
            Ok(done) => done,
            Err(wrong) => {
                debug_assert!(!created, "a created value has the kind asked for");
                return Err(wrong);
            }
        };
        let emptied = entry.value.as_collection().is_some_and(Collection::is_empty);
        let upkeep = entry.value.as_collection().is_some_and(Collection::needs_upkeep);
        let (new_cost, new_tombstones) = (entry.value.cost(), entry.value.tombstones());
        // `entry` is not used past this point: the shard's data is borrowed whole again below.
        self.shard.data_bytes.fetch_add(new_cost, Ordering::Relaxed);
        self.shard.data_bytes.fetch_sub(cost, Ordering::Relaxed);
        self.data.collection_tombstones += new_tombstones;
        self.data.collection_tombstones -= tombstones;
        if emptied {
            self.remove(key);
        } else {
            if upkeep {
                self.data.upkeep.insert(Key::from_slice(key));
            }
            if changed && !created {
                self.touched(key);
            }
        }
        Ok(Some(result))
    }

    /// Advances the rebuilds of this shard's hashes and sets that are due or under way (see
    /// [`Collection::maintain`]), `budget` old buckets each. Run by the maintenance tick.
    pub fn tend_collections(&mut self, budget: usize) {
        let keys: Vec<Key> = self.data.upkeep.iter().take(64).cloned().collect();
        for key in keys {
            if !self.maintain_collection(&key, |c| c.maintain(budget)) {
                self.data.upkeep.remove(&key[..]);
            }
        }
    }

    /// Starts a rebuild of every hash and set of this shard that has tombstones (an operator's
    /// compaction reaches inside them); the maintenance tick then finishes them.
    pub fn rebuild_collections(&mut self) {
        if self.data.collection_tombstones == 0 {
            return;
        }
        let keys: Vec<Key> = (self.data.map.iter())
            .filter(|(_, e)| e.value.tombstones() > 0)
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            if self.maintain_collection(&key, Collection::start_rebuild) {
                self.data.upkeep.insert(key);
            }
        }
    }

    /// Runs `step` on the collection at `key`, keeping its accounting; answers what `step`
    /// answers (false when `key` holds no collection).
    fn maintain_collection(
        &mut self,
        key: &[u8],
        step: impl FnOnce(&mut Collection) -> bool,
    ) -> bool {
        let Some(collection) = self.data.map.get_mut(key).and_then(|e| e.value.as_collection_mut())
        else {
            return false;
        };
        let (cost, tombstones) = (collection.cost(), collection.tombstones());
        let more = step(collection);
        self.shard.data_bytes.fetch_add(collection.cost(), Ordering::Relaxed);
        self.shard.data_bytes.fetch_sub(cost, Ordering::Relaxed);
        self.data.collection_tombstones += collection.tombstones();
        self.data.collection_tombstones -= tombstones;
        more
    }

    /// Tombstones inside this shard's hashes and sets.
    pub fn collection_tombstones(&self) -> usize {
        self.data.collection_tombstones
    }

    /// Tells the clients watching `key` that it changed (Redis's `touchWatchedKey`). Called after
    /// the change: a key stored but already expired when it was watched and now removed has
    /// not changed, logically, and stays clean (its watcher then watches an absent key).
    fn touched(&mut self, key: &[u8]) {
        if self.data.watched.is_empty() {
            return;
        }
        let ShardData { map, watched, .. } = &mut *self.data;
        let Some(watchers) = watched.get_mut(key) else {
            return;
        };
        let removed = map.get(key).is_none();
        for w in watchers.iter_mut() {
            if w.expired && removed {
                w.expired = false;
            } else {
                w.state.dirty.store(true, Ordering::Release);
            }
        }
    }

    /// WATCH: `client` (with its shared `state`) watches `key` of this shard. Watching a key
    /// twice is watching it once.
    pub fn watch(&mut self, key: &[u8], client: u64, state: &Arc<WatchState>, now_ms: u64) {
        let expired = self.data.map.get(key).is_some_and(|e| e.is_expired(now_ms));
        let watchers = self.data.watched.entry(Key::from_slice(key)).or_default();
        if watchers.iter().all(|w| w.client != client) {
            watchers.push(Watcher { client, state: Arc::clone(state), expired });
        }
    }

    /// Forgets `client`'s watch of `key` (UNWATCH, EXEC, DISCARD, a closed connection).
    pub fn unwatch(&mut self, key: &[u8], client: u64) {
        if let Some(watchers) = self.data.watched.get_mut(key) {
            watchers.retain(|w| w.client != client);
            if watchers.is_empty() {
                self.data.watched.remove(key);
            }
        }
    }

    /// Whether `key`, watched by `client`, was live when watched and has expired since, not yet
    /// removed (Redis's `isWatchedKeyExpired`, which EXEC checks: expiry is a change).
    pub fn watched_key_expired(&self, key: &[u8], client: u64, now_ms: u64) -> bool {
        let Some(watchers) = self.data.watched.get(key) else {
            return false;
        };
        watchers.iter().any(|w| w.client == client && !w.expired)
            && self.data.map.get(key).is_some_and(|e| e.is_expired(now_ms))
    }

    /// Keeps the TTL index in step when a stored key's TTL goes from `had` to `has`.
    fn retime(&mut self, key: &[u8], had: bool, has: bool) {
        match (had, has) {
            (false, true) => self.index_ttl(Key::from_slice(key)),
            (true, false) => self.unindex_ttl(key),
            _ => {}
        }
    }

    fn index_ttl(&mut self, key: Key) {
        self.shard.data_bytes.fetch_add(ttl_index_cost(&key), Ordering::Relaxed);
        let previous = self.data.ttl_index.insert(key, ());
        debug_assert!(previous.is_none(), "a key without a TTL was in the TTL index");
    }

    fn unindex_ttl(&mut self, key: &[u8]) {
        let removed = self.data.ttl_index.remove_entry(key);
        debug_assert!(removed.is_some(), "a key with a TTL was not in the TTL index");
        if let Some((k, ())) = removed {
            self.shard.data_bytes.fetch_sub(ttl_index_cost(&k), Ordering::Relaxed);
        }
    }

    /// Advances the TTL index's own evacuation by `budget` buckets, first starting a rebuild when
    /// it is due (most of its keys expired or lost their TTL: it shrinks online like any map, and
    /// gives its memory back). Run by the maintenance tick on shards marked busy.
    pub fn tend_ttl_index(&mut self, budget: usize) {
        let index = &mut self.data.ttl_index;
        if index.phase() == Phase::Idle && ttl_index_wants_rebuild(&index.stats()) {
            index.rebuild();
        }
        if index.phase() != Phase::Idle {
            index.maintenance_step(budget);
        }
    }

    /// Whether the map and the TTL index are both idle (no evacuation under way).
    pub fn is_idle(&self) -> bool {
        self.data.map.phase() == Phase::Idle && self.data.ttl_index.phase() == Phase::Idle
    }

    /// Removes every entry and releases the tables. Watchers of the keys that were stored are
    /// told, as Redis's `touchAllWatchedKeysInDb` tells those of an emptied database.
    pub fn clear(&mut self) {
        if !self.data.watched.is_empty() {
            let ShardData { map, watched, .. } = &mut *self.data;
            for (key, watchers) in watched.iter_mut() {
                if map.get(&key[..]).is_some() {
                    for w in watchers.iter_mut() {
                        w.state.dirty.store(true, Ordering::Release);
                    }
                }
            }
        }
        self.data.map.clear_and_release();
        self.data.ttl_index.clear_and_release();
        self.data.collection_tombstones = 0;
        self.data.upkeep.clear();
        self.shard.data_bytes.store(0, Ordering::Relaxed);
    }
}

/// A TTL index is rebuilt (shrunk or compacted) when its tombstones outnumber its keys, or when
/// it has 4 times the buckets its keys need: it only ever takes keys out as they expire, so
/// without this a burst of TTL keys would keep its largest array for good. The same rule as a
/// hash's or a set's ([`wants_rebuild`]).
fn ttl_index_wants_rebuild(stats: &EngineStats) -> bool {
    wants_rebuild(stats)
}

impl Drop for ShardGuard<'_> {
    fn drop(&mut self) {
        let (map, index) = (self.data.map.stats(), self.data.ttl_index.stats());
        self.shard
            .table_bytes
            .store(map.bytes_allocated + index.bytes_allocated, Ordering::Relaxed);
        self.shard.len.store(map.len, Ordering::Relaxed);
        self.shard.ttl_keys.store(index.len, Ordering::Relaxed);
        self.shard.collection_tombstones.store(self.data.collection_tombstones, Ordering::Relaxed);
        self.shard.evacuated.store(map.evacuated + index.evacuated, Ordering::Relaxed);
        let busy = map.phase != Phase::Idle
            || index.phase != Phase::Idle
            || ttl_index_wants_rebuild(&index)
            || !self.data.upkeep.is_empty();
        self.shard.busy.store(busy, Ordering::Relaxed);
        self.shard
            .growth_headroom
            .store(growth_headroom(&map) + growth_headroom(&index), Ordering::Relaxed);
        self.shard
            .prepared_bytes
            .store(map.prepared_bytes + index.prepared_bytes, Ordering::Relaxed);
        if let Some(t) = self.task {
            t.set_holds_lock(None);
            let _ = self.shard.holder.compare_exchange(t.id, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::clock::ManualClock;

    fn store(max: u64, policy: EvictionPolicy) -> Store {
        Store::new(4, ManualClock::new(1_000), max, policy)
    }

    #[test]
    fn memory_accounting_tracks_inserts_replacements_and_removals() {
        let s = store(0, EvictionPolicy::Noeviction);
        let key = Bytes::from("key");
        let idx = s.shard_of(&key);
        let mut g = s.lock(idx, None);
        g.insert(key.clone(), Entry::new(Bytes::from("12345"), 0, 0));
        g.insert(key.clone(), Entry::new(Bytes::from("1234567"), 0, 0));
        let data: usize = s.shards.iter().map(|s| s.data_bytes.load(Ordering::Relaxed)).sum();
        assert_eq!(data, 3 + 7 + ENTRY_OVERHEAD);
        g.remove(&key);
        drop(g);
        let data: usize = s.shards.iter().map(|s| s.data_bytes.load(Ordering::Relaxed)).sum();
        assert_eq!(data, 0);
    }

    #[test]
    fn stored_keys_and_values_do_not_pin_the_buffer_they_were_sliced_from() {
        let s = store(0, EvictionPolicy::Noeviction);
        // A read buffer holding a whole SET frame; the parser hands out slices of it.
        let frame = Bytes::from(vec![b'x'; 16 * 1024]);
        let range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        let (key, value) = (frame.slice(0..3), frame.slice(3..8));
        let idx = s.shard_of(&key);
        let mut g = s.lock(idx, None);
        g.insert(key.clone(), Entry::new(value, 0, 0));
        assert!(g.set_value(&key, Bytes::from(vec![b'y'; 4])).is_ok());
        g.insert(frame.slice(12..20), Entry::new(frame.slice(20..30), 0, 0));
        for (k, e) in g.map().iter() {
            assert!(!range.contains(&(k.as_ptr() as usize)), "key {k:?} points into the frame");
            let v = e.value.as_bytes().unwrap().as_ptr() as usize;
            assert!(!range.contains(&v), "value of {k:?} points into the frame");
        }
        assert_eq!(g.map().get(&b"xxx"[..]).map(|e| e.value.cost()), Some(4));
    }

    #[test]
    fn upsert_live_keeps_the_accounting_exact_and_long_keys_live_on_the_heap() {
        let s = store(0, EvictionPolicy::Noeviction);
        let data = |s: &Store| -> usize {
            s.shards.iter().map(|s| s.data_bytes.load(Ordering::Relaxed)).sum()
        };
        let short = Bytes::from("k");
        let long = Bytes::from(vec![b'L'; 40]);
        let mut g = s.lock(s.shard_of(&short), None);
        g.insert(short.clone(), Entry::new(Bytes::from("9"), 0, 0));
        let unused = || unreachable!("the key is live");
        let next = g.upsert_live(&short, 0, unused, |e| {
            e.value = Bytes::from_static(b"10").into();
            Ok::<_, ()>(10)
        });
        assert_eq!(next, Ok(10));
        drop(g);
        assert_eq!(data(&s), 1 + 2 + ENTRY_OVERHEAD);
        let mut g = s.lock(s.shard_of(&long), None);
        g.insert(long.clone(), Entry::new(Bytes::from("v"), 0, 0));
        let (stored, _) = g.map().get_key_value(&long[..]).expect("long key stored");
        assert!(stored.spilled(), "a 40-byte key is on the heap");
        assert_eq!(&stored[..], &long[..]);
        drop(g);
        assert_eq!(data(&s), 1 + 2 + 40 + 1 + 2 * ENTRY_OVERHEAD);
        let g = s.lock(s.shard_of(&short), None);
        assert!(!g.map().get_key_value(&short[..]).expect("short key").0.spilled());
    }

    #[test]
    fn arrays_prepared_for_growth_go_back_before_any_key_is_evicted() {
        let s = Store::new(1, ManualClock::new(1_000), 0, EvictionPolicy::AllkeysRandom);
        let prepared = |s: &Store| s.lock(0, None).map().stats().prepared_bytes;
        let mut n = 0u64;
        while prepared(&s) == 0 {
            let mut g = s.lock(0, None);
            for _ in 0..64 {
                g.insert(Bytes::from(format!("key:{n}")), Entry::new(Bytes::from("v"), 0, 0));
                n += 1;
            }
        }
        let held = prepared(&s);
        // The shard's own threshold (256 KiB), far below the engine's default of 16 MiB.
        assert!((256 << 10..1 << 20).contains(&held), "{held} bytes prepared");
        assert_eq!(s.shards[0].prepared_bytes.load(Ordering::Relaxed), held);
        // The limit leaves room once the prepared array is given back, and not before.
        let used = s.used_memory();
        s.set_maxmemory((used - held / 2) as u64);
        assert_eq!(s.ensure_memory(100, &[0], None), Ok(()));
        assert_eq!(s.len(None), n as usize, "a key was evicted while a prepared array was held");
        assert_eq!(prepared(&s), 0);
        assert_eq!(s.used_memory(), used - held);
        // Given back for good: the shard's next doubling allocates its own array.
        let mut g = s.lock(0, None);
        for _ in 0..64 {
            g.insert(Bytes::from(format!("key:{n}")), Entry::new(Bytes::from("v"), 0, 0));
            n += 1;
        }
        assert_eq!(g.map().stats().prepared_bytes, 0);
    }

    #[test]
    fn eviction_samples_shards_in_proportion_to_their_keys() {
        let s = Store::new(4, ManualClock::new(1_000), 0, EvictionPolicy::AllkeysRandom);
        // 900 keys in one shard, 100 in another, none in the other two.
        let (mut big, mut small) = (0, 0);
        for k in 0.. {
            let key = Bytes::from(format!("key:{k}"));
            let shard = s.shard_of(&key);
            let room = match shard {
                0 if big < 900 => &mut big,
                1 if small < 100 => &mut small,
                _ => continue,
            };
            *room += 1;
            s.lock(shard, None).insert(key, Entry::new(Bytes::from("v"), 0, 0));
            if big == 900 && small == 100 {
                break;
            }
        }
        for _ in 0..100 {
            assert!(s.evict_one(None));
        }
        let left = |i: usize| s.shards[i].len.load(Ordering::Relaxed);
        assert_eq!(left(0) + left(1), 900);
        // In proportion: about 10 of the 100 from the small shard (a uniform pick of a shard
        // that has keys took about 50 from each).
        assert!(left(1) >= 80, "{} of the small shard's 100 keys left", left(1));
    }

    #[test]
    fn noeviction_refuses_past_maxmemory() {
        let s = store(1, EvictionPolicy::Noeviction);
        assert_eq!(s.ensure_memory(1_000_000, &[0], None), Err(OutOfMemory));
    }

    #[test]
    fn a_write_eviction_cannot_make_room_for_evicts_nothing() {
        for policy in [EvictionPolicy::AllkeysLru, EvictionPolicy::VolatileTtl] {
            let s = store(0, policy);
            for i in 0..200 {
                put(&s, &format!("plain:{i}"), 0);
                put(&s, &format!("ttl:{i}"), 5_000);
            }
            let used = s.used_memory();
            s.set_maxmemory(used as u64 + 64);
            // Past maxmemory on its own: refused under every policy, nothing evicted.
            assert_eq!(s.ensure_memory(used + 65, &[], None), Err(OutOfMemory), "{policy:?}");
            assert_eq!(s.evicted_total.get(), 0, "{policy:?}");
            // Room only if keys without a TTL could go too: refused under volatile-ttl alone.
            let ttl_keys_bytes = 200 * (entry_cost(b"ttl:100", 1) + ttl_index_cost(b"ttl:100"));
            let beyond_ttl_keys = ttl_keys_bytes + 64 + 2_000;
            let refused = s.ensure_memory(beyond_ttl_keys, &[], None);
            let expected =
                if policy == EvictionPolicy::VolatileTtl { Err(OutOfMemory) } else { Ok(()) };
            assert_eq!(refused, expected, "{policy:?}");
            if policy == EvictionPolicy::VolatileTtl {
                assert_eq!(s.evicted_total.get(), 0);
                // What the keys with a TTL can make room for, they do.
                assert_eq!(s.ensure_memory(2_000, &[], None), Ok(()));
                assert!(s.evicted_total.get() > 0);
                assert_eq!(s.len(None) as u64 + s.evicted_total.get(), 400);
            }
        }
    }

    #[test]
    fn volatile_ttl_evicts_only_keys_with_a_ttl() {
        let s = store(0, EvictionPolicy::VolatileTtl);
        for (k, ttl) in [("a", 0), ("b", 5_000), ("c", 0)] {
            let key = Bytes::from(k);
            let mut g = s.lock(s.shard_of(&key), None);
            g.insert(key, Entry::new(Bytes::from("v"), ttl, 0));
        }
        assert!(s.evict_one(None));
        assert_eq!(s.evicted_total.get(), 1);
        let b = Bytes::from("b");
        assert!(s.lock(s.shard_of(&b), None).map().get(&b[..]).is_none());
        assert!(!s.evict_one(None), "no key with a TTL is left");
        assert_eq!(s.len(None), 2);
    }

    /// Sets `key` with `ttl` (0 = none) in its shard.
    fn put(s: &Store, key: &str, ttl: u64) {
        let key = Bytes::copy_from_slice(key.as_bytes());
        s.lock(s.shard_of(&key), None).insert(key, Entry::new(Bytes::from("v"), ttl, 0));
    }

    fn data_bytes(s: &Store) -> usize {
        s.shards.iter().map(|s| s.data_bytes.load(Ordering::Relaxed)).sum()
    }

    #[test]
    fn the_ttl_index_follows_every_way_a_ttl_is_given_or_taken() {
        let s = store(0, EvictionPolicy::Noeviction);
        let long = "L".repeat(40);
        let (k, idx) = (Bytes::from("k"), s.shard_of(b"k"));
        let check = |s: &Store, ttl_keys: usize, data: usize| {
            assert_eq!(s.check_ttl_index(), Ok(()));
            assert_eq!(s.ttl_keys_unlocked(), ttl_keys);
            assert_eq!(data_bytes(s), data);
        };
        let one = 1 + 1 + ENTRY_OVERHEAD;
        put(&s, "k", 5_000);
        check(&s, 1, one + ttl_index_cost(b"k"));
        put(&s, "k", 0); // SET without KEEPTTL drops the TTL
        check(&s, 0, one);
        assert!(s.lock(idx, None).set_expiry(b"k", 7_000)); // EXPIRE
        check(&s, 1, one + ttl_index_cost(b"k"));
        put(&s, "k", 9_000); // a new TTL over an old one: still one index entry
        check(&s, 1, one + ttl_index_cost(b"k"));
        assert!(s.lock(idx, None).set_expiry(b"k", 0)); // PERSIST
        check(&s, 0, one);
        assert!(!s.lock(idx, None).set_expiry(b"absent", 1));
        put(&s, &long, 3_000);
        check(&s, 1, one + 40 + 1 + ENTRY_OVERHEAD + ttl_index_cost(long.as_bytes()));
        s.lock(s.shard_of(long.as_bytes()), None).remove(long.as_bytes()); // DEL
        check(&s, 0, one);
        assert!(s.lock(idx, None).set_expiry(b"k", 1_500));
        assert!(s.lock(idx, None).get_live(&k, 1_500).is_none()); // lazy expiry
        check(&s, 0, 0);
        put(&s, "k", 2_000);
        for index in 0..s.shard_count() {
            s.lock(index, None).clear(); // FLUSHALL
        }
        check(&s, 0, 0);
    }

    /// Both prefetch stages are hints: they change no entry and no counter, and on a shard
    /// someone else holds they return at once instead of waiting for the lock.
    #[test]
    fn prefetch_stages_change_nothing_and_never_wait_for_a_lock() {
        let s = store(0, EvictionPolicy::Noeviction);
        let keys: Vec<Bytes> = (0..2_000).map(|i| Bytes::from(format!("key:{i}"))).collect();
        for key in &keys {
            s.lock(s.shard_of(key), None).insert(key.clone(), Entry::new(key.clone(), 0, 0));
        }
        let counters = |s: &Store| {
            let locks = s.lock_counters();
            (s.used_memory(), locks.iter().map(|l| l.contentions).sum::<u64>())
        };
        let before = counters(&s);
        for stage in [Prefetch::Bucket, Prefetch::Slots] {
            for key in keys.iter().map(|k| &k[..]).chain([&b"absent"[..]]) {
                s.prefetch(key, stage);
            }
        }
        let held = s.lock(s.shard_of(&keys[0]), None);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                s.prefetch(&keys[0], Prefetch::Bucket);
                s.prefetch(&keys[0], Prefetch::Slots);
                done_tx.send(()).unwrap();
            });
            let done = done_rx.recv_timeout(std::time::Duration::from_secs(10));
            drop(held);
            assert_eq!(done, Ok(()), "a prefetch waited for a held shard lock");
        });
        assert_eq!(counters(&s), before);
        for key in &keys {
            let mut shard = s.lock(s.shard_of(key), None);
            assert_eq!(shard.get_live(key, 1_000).map(|e| e.value.cost()), Some(key.len()));
        }
    }

    #[test]
    fn upsert_live_creates_updates_and_replaces_expired_entries_in_one_probe() {
        let s = store(0, EvictionPolicy::Noeviction);
        let (k, idx) = (b"counter", s.shard_of(b"counter"));
        let zero = || Entry::new(Bytes::from_static(b"0"), 0, 0);
        let bump = |e: &mut Entry| {
            let next =
                std::str::from_utf8(e.value.as_bytes().unwrap()).unwrap().parse::<i64>().unwrap()
                    + 10;
            e.value = Bytes::from(next.to_string()).into();
            Ok::<_, ()>(next)
        };
        let mut g = s.lock(idx, None);
        assert_eq!(g.upsert_live(k, 100, zero, bump), Ok(10)); // created
        assert_eq!(g.upsert_live(k, 200, zero, bump), Ok(20)); // updated in place
        assert_eq!(g.map().get(&k[..]).map(|e| e.last_access_ms), Some(200));
        drop(g);
        assert_eq!(data_bytes(&s), k.len() + 2 + ENTRY_OVERHEAD);
        assert!(s.lock(idx, None).set_expiry(k, 300));
        assert_eq!(s.ttl_keys_unlocked(), 1);
        // Past its TTL: counted as expired, replaced by a fresh "0" (no TTL), then bumped.
        assert_eq!(s.lock(idx, None).upsert_live(k, 300, zero, bump), Ok(10));
        assert_eq!(s.expired_total.get(), 1);
        assert_eq!(s.ttl_keys_unlocked(), 0);
        assert_eq!(s.check_ttl_index(), Ok(()));
        assert_eq!(data_bytes(&s), k.len() + 2 + ENTRY_OVERHEAD);
        assert_eq!(s.len(None), 1);
    }

    #[test]
    fn active_expiry_finds_the_few_keys_with_a_ttl_among_many_without() {
        let clock = ManualClock::new(1_000);
        let s = Store::new(4, clock.clone(), 0, EvictionPolicy::Noeviction);
        for i in 0..20_000 {
            put(&s, &format!("keep{i}"), 0);
        }
        for i in 0..12 {
            put(&s, &format!("ttl{i}"), 1_500);
        }
        clock.advance_ms(1_000);
        // One call per shard (with a budget that cannot run out) expires them all: each round
        // samples only keys with a TTL and repeats while most of them were expired. Sampling
        // the whole map would see one of these 12 keys in about 1 of 1,700 samples.
        let expired: usize = (0..s.shard_count())
            .map(|i| s.active_expire_shard(i, Duration::from_secs(3600), None))
            .sum();
        assert_eq!(expired, 12);
        assert_eq!(s.len(None), 20_000);
        assert_eq!(s.ttl_keys_unlocked(), 0);
        assert_eq!(s.check_ttl_index(), Ok(()));
    }

    #[test]
    fn volatile_ttl_finds_the_one_key_with_a_ttl_among_many_without() {
        let s = store(0, EvictionPolicy::VolatileTtl);
        for i in 0..20_000 {
            put(&s, &format!("keep{i}"), 0);
        }
        put(&s, "soon", 90_000);
        assert!(s.evict_one(None), "the one key with a TTL is evictable");
        assert!(s.lock(s.shard_of(b"soon"), None).map().get(&b"soon"[..]).is_none());
        assert!(!s.evict_one(None), "no key with a TTL is left");
        assert_eq!(s.len(None), 20_000);
    }

    #[test]
    fn the_ttl_index_gives_its_memory_back_once_its_keys_expire() {
        let clock = ManualClock::new(1_000);
        let s = Store::new(1, clock.clone(), 0, EvictionPolicy::Noeviction);
        for i in 0..5_000 {
            put(&s, &format!("t{i}"), 2_000);
        }
        put(&s, "last", 9_000);
        let index_bytes = |s: &Store| s.lock(0, None).data.ttl_index.stats().bytes_allocated;
        let full = index_bytes(&s);
        assert!(!s.is_busy_unlocked(0));
        clock.advance_ms(1_500);
        // A round stops once most of its samples are live, so the last few expired keys may
        // take a few more rounds (the maintenance tick runs one per shard every 100 ms).
        let mut expired = 0;
        for _ in 0..50 {
            expired += s.active_expire_shard(0, Duration::from_secs(3600), None);
        }
        assert_eq!(expired, 5_000);
        assert!(s.is_busy_unlocked(0), "an index of 1 key in 1024 buckets wants a rebuild");
        let mut steps = 0;
        while s.is_busy_unlocked(0) {
            s.lock(0, None).tend_ttl_index(64);
            steps += 1;
            assert!(steps < 100, "the rebuild finishes");
        }
        let after = index_bytes(&s);
        assert_eq!(s.ttl_keys_unlocked(), 1);
        assert_eq!(s.check_ttl_index(), Ok(()));
        assert!(after * 100 < full, "index bytes {after} after, {full} full");
        assert_eq!(s.lock(0, None).data.ttl_index.stats().b, 0);
    }

    #[test]
    fn lazy_expiry_removes_and_counts_the_key() {
        let s = store(0, EvictionPolicy::Noeviction);
        let key = Bytes::from("k");
        let mut g = s.lock(s.shard_of(&key), None);
        g.insert(key.clone(), Entry::new(Bytes::from("v"), 1_500, 0));
        assert!(g.get_live(&key, 1_499).is_some());
        assert!(g.get_live(&key, 1_500).is_none());
        assert_eq!(g.map().len(), 0);
        drop(g);
        assert_eq!(s.expired_total.get(), 1);
    }
}
