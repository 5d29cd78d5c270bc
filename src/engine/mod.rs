//! The embedded map engine: Go's classic runtime map (8-slot buckets, tophash bytes, overflow
//! chains, incremental evacuation, `emptyOne`/`emptyRest` tombstones) in Rust, plus exact
//! tombstone accounting, online compaction, online shrinking and memory returned.
//!
//! INTERIM: this file fixes the engine's public API (the contract the cache node codes against)
//! over a std `HashMap`. The Go-classic table replaces the internals (issue #2); the signatures
//! below stay.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// The default hasher: foldhash, seeded per map.
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// What the table is doing: an evacuation from an old bucket array into a new one is in progress
/// unless `Idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// No evacuation in progress.
    #[default]
    Idle,
    /// Doubling (`overLoadFactor`) or a same-size grow for `tooManyOverflowBuckets`.
    Growing,
    /// A same-size regrow started by `compact()`.
    Compacting,
    /// A regrow into a smaller bucket array started by `shrink_to_fit()` / `rebuild()`.
    Shrinking,
}

/// Exact counters, O(1) to read.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    /// Live entries.
    pub len: usize,
    /// Slots whose tophash is `emptyOne` (deleted, not yet reclaimed).
    pub tombstones: usize,
    /// `tombstones / (len + tombstones)`, 0 when both are 0.
    pub tombstone_ratio: f64,
    /// Buckets in the current array (`2^B`) plus, while evacuating, the old array.
    pub buckets: usize,
    /// log2 of the current bucket array's length.
    pub b: u8,
    /// Overflow buckets allocated (both arrays).
    pub overflow_buckets: usize,
    /// Overflow buckets whose 8 slots are all empty.
    pub empty_overflow_buckets: usize,
    /// Bytes held by bucket arrays and overflow buckets.
    pub bytes_allocated: usize,
    /// `len / (2^B * 8)`: live fill of the current array.
    pub load_factor: f64,
    /// What the table is doing.
    pub phase: Phase,
    /// Old buckets evacuated so far in the current evacuation.
    pub evacuated: usize,
    /// Old buckets still to evacuate (0 when idle).
    pub to_evacuate: usize,
}

/// A hash map with Go's classic layout. See the module docs.
pub struct Map<K, V, S = DefaultHashBuilder> {
    inner: HashMap<K, V, S>,
    tombstones: usize,
}

impl<K: Hash + Eq, V> Map<K, V, DefaultHashBuilder> {
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }

    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }
}

impl<K: Hash + Eq, V> Default for Map<K, V, DefaultHashBuilder> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> Map<K, V, S> {
    pub fn with_hasher(hasher: S) -> Self {
        Self { inner: HashMap::with_hasher(hasher), tombstones: 0 }
    }

    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        Self { inner: HashMap::with_capacity_and_hasher(capacity, hasher), tombstones: 0 }
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.inner.get(key)
    }

    pub fn get_key_value<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        self.inner.get_key_value(key)
    }

    /// A read: never advances an evacuation (as Go's `mapaccess`).
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.inner.get_mut(key)
    }

    pub fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.inner.contains_key(key)
    }

    /// Inserts or replaces; returns the previous value. Advances an evacuation (`growWork`).
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.inner.insert(key, value)
    }

    /// Removes; a missing key is a no-op. The value is returned (dropped by the caller at once).
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    pub fn remove_entry<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
    {
        let removed = self.inner.remove_entry(key);
        if removed.is_some() {
            self.tombstones += 1;
        }
        removed
    }

    /// Every slot empty, counters reset, a fresh hash seed; keeps the bucket array.
    pub fn clear(&mut self) {
        self.inner.clear();
        self.tombstones = 0;
    }

    /// As `clear`, and releases the bucket array too.
    pub fn clear_and_release(&mut self) {
        self.clear();
        self.inner.shrink_to_fit();
    }

    /// Keeps the entries for which `keep` returns true.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let before = self.inner.len();
        self.inner.retain(|k, v| keep(k, v));
        self.tombstones += before - self.inner.len();
    }

    /// Iterates from a random start; see the module docs for the guarantees under growth.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.inner.iter()
    }

    pub fn stats(&self) -> EngineStats {
        let total = self.inner.len() + self.tombstones;
        EngineStats {
            len: self.inner.len(),
            tombstones: self.tombstones,
            tombstone_ratio: if total == 0 { 0.0 } else { self.tombstones as f64 / total as f64 },
            buckets: self.inner.capacity().div_ceil(8).max(1),
            b: 0,
            overflow_buckets: 0,
            empty_overflow_buckets: 0,
            bytes_allocated: self.inner.capacity() * (std::mem::size_of::<(K, V)>() + 1),
            load_factor: 0.0,
            phase: Phase::Idle,
            evacuated: 0,
            to_evacuate: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        Phase::Idle
    }

    /// Starts a same-size regrow that purges tombstones and collapses overflow chains. Returns
    /// false when an evacuation is already in progress (nothing started).
    pub fn compact(&mut self) -> bool {
        self.tombstones = 0;
        true
    }

    /// Starts an online regrow into the smallest bucket array that holds `len` under the load
    /// factor. Returns false when an evacuation is already in progress.
    pub fn shrink_to_fit(&mut self) -> bool {
        self.inner.shrink_to_fit();
        self.tombstones = 0;
        true
    }

    /// `compact` when the live count still needs the current size, else `shrink_to_fit`.
    pub fn rebuild(&mut self) -> bool {
        self.shrink_to_fit()
    }

    /// Advances any evacuation by at most `budget` old buckets without a write. Returns the
    /// number of old buckets evacuated (0 when idle).
    pub fn maintenance_step(&mut self, budget: usize) -> usize {
        let _ = budget;
        0
    }

    /// Redis-style SCAN over bucket indexes with a reverse-binary cursor. Calls `f` for the
    /// entries of one or more buckets and returns the next cursor (0 when done). Every key present
    /// for the whole scan is returned at least once, even while the table grows, compacts or
    /// shrinks between calls. `count` is a hint of how many entries to visit.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&K, &V)) -> u64 {
        // INTERIM: a cursor is an index into iteration order (stable only without writes).
        let start = cursor as usize;
        let mut seen = 0;
        for (i, (k, v)) in self.inner.iter().enumerate().skip(start) {
            f(k, v);
            seen += 1;
            if seen >= count.max(1) {
                return if i + 1 >= self.inner.len() { 0 } else { (i + 1) as u64 };
            }
        }
        0
    }

    /// A pseudo-random entry (random bucket, then the first occupied slot from a random offset),
    /// for eviction and active-expiry sampling. `seed` is the caller's random number.
    pub fn sample(&self, seed: u64) -> Option<(&K, &V)> {
        if self.inner.is_empty() {
            return None;
        }
        self.inner.iter().nth(seed as usize % self.inner.len())
    }

    pub fn hasher(&self) -> &S {
        self.inner.hasher()
    }
}
