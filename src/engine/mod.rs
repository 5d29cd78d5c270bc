//! The embedded map engine: Go's classic runtime map (`runtime/map.go`, Go 1.21–1.23) in Rust,
//! plus exact tombstone accounting, online compaction, online shrinking and memory returned.
//!
//! # Layout
//!
//! A map is an array of `2^B` buckets. Each bucket holds up to 8 entries: 8 tophash bytes and
//! the overflow pointer (a 16-byte header for 8-aligned keys), then the 8 keys, then the 8
//! values (keys together and values together, as Go, so there is no padding between a key and
//! its value). Go puts the overflow pointer at the end of the bucket; here it shares the
//! tophash bytes' cache line, so a miss or an overflow walk reads one line per bucket, not two. The low-order bits of a
//! key's hash select its bucket; the top 8 bits are its tophash, which tells the entries of one
//! bucket apart without touching the keys. When more than 8 keys hash to a bucket, an overflow
//! bucket is chained on.
//!
//! # Tophash states (`tophash.rs`)
//!
//! A tophash byte below `minTopHash` (5) is a state: `emptyRest` (0: this slot and every later
//! slot of the chain are empty), `emptyOne` (1: empty, a tombstone), `evacuatedX` /
//! `evacuatedY` (2/3: moved to the first / second half of a doubled array), `evacuatedEmpty`
//! (4: was empty when its bucket was evacuated). A live key's tophash is its top hash byte,
//! plus 5 when below 5. A lookup loads all 8 tophash bytes as one `u64` and matches them at once
//! (SWAR; Go's classic map compares them one by one) and stops at the bucket holding an
//! `emptyRest`. Delete marks the slot `emptyOne`; when the slot ends a run, it walks back
//! turning the run's `emptyOne`s into `emptyRest`, across overflow buckets, as `mapdelete`.
//! Insert reuses the first empty slot on the key's path.
//!
//! # Growth and evacuation (`evacuate.rs`)
//!
//! When `count > 6.5 * 2^B` (`overLoadFactor`) the array doubles; when the overflow buckets
//! are as many as the regular ones (`tooManyOverflowBuckets`) a same-size grow repacks them.
//! Growing allocates the new array and keeps the old one as `oldbuckets`; entries move over
//! incrementally: each write first evacuates the old bucket it is about to use, then the one at
//! `nevacuate` (`growWork`), so no operation pays for the whole table. Beyond Go, the same
//! machinery runs three more regrows: `compact()` (same-size, on demand: purges tombstones and
//! empty overflow buckets), `shrink_to_fit()`/`rebuild()` (into a smaller array, several old
//! buckets merging into one), and `maintenance_step(budget)` advances any of them without a
//! write (Go's maps progress only on writes, so a read-mostly Go map keeps both arrays). Old
//! overflow chains are freed as soon as their bucket is evacuated, and the old array when the
//! last bucket is done (Go's maps never shrink: golang/go#20135).
//! Beyond Go too, a map of large arrays has the array of its next doubling allocated and
//! faulted in on the helper thread once it holds 3/4 of the entries that trigger the doubling
//! (`set_prepare_growth`), so evacuation writes do not page-fault (docs/engine.md).
//!
//! # Counters (`stats.rs`)
//!
//! `len`, `tombstones` (`emptyOne` slots), overflow buckets (current and old array), empty
//! overflow buckets and evacuation progress are kept exact on every transition, so `stats()` is
//! O(1). A test build recounts them by brute force after every step of the property tests
//! (`check_invariants`).
//!
//! # Iteration (`iter.rs`) and scanning (`scan.rs`)
//!
//! `iter()` starts at a random bucket and a random slot rotation. It borrows the map, so the
//! map cannot change under it: during a grow, compaction or shrink every entry is returned
//! exactly once. To remove entries while walking, use `retain` (a closure decides per entry),
//! or `scan`, a Redis-style reverse-binary cursor that returns every key present for the whole
//! scan at least once even when the map is written to, grows, compacts or shrinks between calls;
//! a key removed before its bucket is scanned is not returned.
//!
//! # Hashing
//!
//! The hasher `S` (default foldhash's `RandomState`) hashes the key; the result is mixed with
//! a per-map seed by a folded 64x64->128 multiply. `clear()` draws a new seed (Go re-seeds on
//! clear too), so collisions found against one generation of the map do not carry over.
//!
//! # Load factor
//!
//! Measured on this engine with `cargo run --release --example engine_loadfactor` (u64 keys
//! spread by a multiplicative hash, B = 16, filled to `loadFactor * 2^B` entries; the table grows
//! past 6.5, so that is the last row it can be measured at):
//!
//! ```text
//!  loadFactor  %overflow  bytes/entry  hitprobe  missprobe
//!        4.00       2.17        36.78      1.01       0.02
//!        4.50       3.93        33.26      1.01       0.02
//!        5.00       6.78        30.75      1.01       0.02
//!        5.50      10.60        28.96      1.01       0.02
//!        6.00      15.44        27.70      1.01       0.02
//!        6.50      20.87        26.78      1.01       0.03
//! ```
//!
//! Legend (as Go's): `%overflow` = overflow buckets per 100 regular buckets; `bytes/entry` =
//! bytes allocated (arrays + overflow buckets, u64 -> u64: 144-byte buckets) per entry;
//! `hitprobe` = keys compared (`Eq` calls) to find a present key; `missprobe` = keys compared
//! to find an absent one. Thanks to the tophash byte almost every probe compares one key on a
//! hit and almost none on a miss (1 in 256 tophash bytes collide); 6.5 trades memory against
//! overflow chains as Go's choice does.

// The unsafe core of the engine: every unsafe block says why it is sound, every unsafe fn what
// its caller must uphold. Clippy enforces the first everywhere here, tests included; the second
// it checks on public functions only, and the engine's are crate-private: review keeps those.
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod bucket;
mod evacuate;
mod iter;
mod prefetch;
#[cfg(test)]
mod proptests;
mod scan;
mod stats;
mod table;
#[cfg(test)]
mod tests;
mod tophash;

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};

pub use iter::Iter;
pub use stats::{EngineStats, Phase};
use table::{InsertSlot, PrepareSettings, RawTable, b_for};

/// The default hasher: foldhash, seeded per map.
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// Process-wide switch, off by default: bucket arrays of 4 MiB or more allocated from now on
/// (by any map: growth, compaction, shrink, `with_capacity`) are mapped on a 2 MiB boundary
/// and advised `MADV_HUGEPAGE`, so with transparent huge pages in `madvise` (or `always`) mode
/// the kernel backs them with 2 MiB pages. Arrays already allocated keep their pages. Linux
/// on x86_64 and aarch64 only; elsewhere a no-op.
///
/// What it buys: random lookups in a large array stop paying a TLB miss and page walk on top
/// of their cache misses (4 KiB pages give the 302 MB array of a 1e7-entry u64 map ~74,000
/// page-table entries; 2 MiB pages 144). Measured at 1e7 u64 entries (docs/BENCHMARKS.md):
/// lookups about 2x faster, churn 1.5–2x, remove 1.2x; at 1e6 no consistent gain.
///
/// What it costs: a page fault on a fresh 2 MiB page zeroes all of it at once, inside
/// whichever insert first writes there (evacuation writes the new array at random places).
/// That is ~0.2 ms on memory the machine has backed already, but on a VM whose host reclaims
/// free guest memory (virtio-balloon free page reporting, as the machine of the benchmarks)
/// each 2 MiB fault also takes 512 host faults: 5–8 ms, and single inserts of 15–39 ms while
/// growing to 1e7 entries, against well under 2 ms with 4 KiB pages. Hence off by default:
/// turn it on where lookup throughput on large maps matters more than the worst insert, or
/// where huge-page faults are known to be cheap. RSS rounds up to whole 2 MiB pages for
/// partly used arrays.
pub fn set_huge_pages(enabled: bool) {
    bucket::set_huge_pages(enabled);
}

/// Whether [`set_huge_pages`] is on.
pub fn huge_pages() -> bool {
    bucket::huge_pages()
}

/// Mixes the hasher's output with the map's seed (folded multiply: every input bit reaches the
/// low bits that pick the bucket and the top byte that makes the tophash).
#[inline]
fn mix(hash: u64, seed: u64) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let full = u128::from(hash ^ seed) * u128::from(K);
    (full as u64) ^ ((full >> 64) as u64)
}

fn fresh_seed() -> u64 {
    rand::random()
}

/// A hash map with Go's classic layout. See the module docs.
pub struct Map<K, V, S = DefaultHashBuilder> {
    table: RawTable<K, V>,
    hash_builder: S,
    /// Mixed into every hash; changed by `clear` (and when the map becomes empty by removes,
    /// as Go's `mapdelete` re-seeds).
    seed: u64,
}

impl<K: Hash + Eq, V> Map<K, V, DefaultHashBuilder> {
    /// An empty map with one bucket (B = 0).
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }

    /// An empty map with enough buckets for `capacity` entries without growing.
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
        Self::with_capacity_and_hasher(0, hasher)
    }

    /// Go's `makemap`: the smallest B whose array holds `capacity` under the load factor.
    pub fn with_capacity_and_hasher(capacity: usize, hasher: S) -> Self {
        Self {
            table: RawTable::with_b(b_for(capacity), PrepareSettings::default()),
            hash_builder: hasher,
            seed: fresh_seed(),
        }
    }

    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        make_hash(&self.hash_builder, self.seed, key)
    }

    pub fn len(&self) -> usize {
        self.table.count
    }

    pub fn is_empty(&self) -> bool {
        self.table.count == 0
    }

    #[inline]
    pub fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    #[inline]
    pub fn get_key_value<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
    {
        let slot = self.table.find(self.hash(key), |k| k.borrow() == key)?;
        // SAFETY: `find` returns a full slot of the table, which `&self` keeps in place.
        unsafe {
            let b = &*slot.bucket.as_ptr();
            Some((b.keys[slot.index].assume_init_ref(), b.values[slot.index].assume_init_ref()))
        }
    }

    /// A read: never advances an evacuation (as Go's `mapaccess`).
    #[inline]
    pub fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        let slot = self.table.find(self.hash(key), |k| k.borrow() == key)?;
        // SAFETY: a full slot; `&mut self` makes the reference unique for its lifetime.
        unsafe { Some((*slot.bucket.as_ptr()).values[slot.index].assume_init_mut()) }
    }

    #[inline]
    pub fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.table.find(self.hash(key), |k| k.borrow() == key).is_some()
    }

    /// Inserts or replaces; returns the previous value (the stored key is kept, as std's
    /// `HashMap`). Advances an evacuation (`growWork`).
    #[inline]
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hash(&key);
        let (hash_builder, seed) = (&self.hash_builder, self.seed);
        let rehash = |k: &K| make_hash(hash_builder, seed, k);
        match self.table.prepare_insert(hash, |k| *k == key, &rehash) {
            // SAFETY: an occupied slot holds an initialised value; `&mut self` is unique.
            InsertSlot::Occupied(slot) => unsafe {
                let old = (*slot.bucket.as_ptr()).values[slot.index].assume_init_mut();
                Some(std::mem::replace(old, value))
            },
            InsertSlot::Vacant(slot) => {
                // SAFETY: `prepare_insert` reserved this empty slot for `hash`'s key.
                unsafe { self.table.write_slot(slot, tophash::tophash(hash), key, value) };
                None
            }
        }
    }

    /// Returns the value for `key`, inserting `default()` first when absent (an `entry`-style
    /// upsert with one lookup).
    pub fn get_or_insert_with(&mut self, key: K, default: impl FnOnce() -> V) -> &mut V {
        let hash = self.hash(&key);
        let (hash_builder, seed) = (&self.hash_builder, self.seed);
        let rehash = |k: &K| make_hash(hash_builder, seed, k);
        let slot = match self.table.prepare_insert(hash, |k| *k == key, &rehash) {
            InsertSlot::Occupied(slot) => slot,
            InsertSlot::Vacant(slot) => {
                // `default` runs before the write: if it panics, the reserved slot stays empty
                // and the map unchanged.
                let value = default();
                // SAFETY: `prepare_insert` reserved this empty slot for `hash`'s key.
                unsafe { self.table.write_slot(slot, tophash::tophash(hash), key, value) };
                slot
            }
        };
        // SAFETY: the slot is full now; `&mut self` makes the reference unique.
        unsafe { (*slot.bucket.as_ptr()).values[slot.index].assume_init_mut() }
    }

    /// As `get_or_insert_with`, for a borrowed key: `make()` builds the owned key and the value
    /// only when `key` is absent, in the same probe that found it absent. Returns the value and
    /// whether it was inserted. `make()`'s key must equal `key` (and so hash like it).
    pub fn get_or_insert_with_borrowed<Q: Hash + Eq + ?Sized>(
        &mut self,
        key: &Q,
        make: impl FnOnce() -> (K, V),
    ) -> (&mut V, bool)
    where
        K: Borrow<Q>,
    {
        let hash = self.hash(key);
        let (hash_builder, seed) = (&self.hash_builder, self.seed);
        let rehash = |k: &K| make_hash(hash_builder, seed, k);
        let (slot, inserted) = match self.table.prepare_insert(hash, |k| k.borrow() == key, &rehash)
        {
            InsertSlot::Occupied(slot) => (slot, false),
            InsertSlot::Vacant(slot) => {
                // As in `get_or_insert_with`: a panicking `make` leaves the slot empty.
                let (k, v) = make();
                debug_assert!(k.borrow() == key, "make() built another key");
                // SAFETY: `prepare_insert` reserved this empty slot for `hash`'s key.
                unsafe { self.table.write_slot(slot, tophash::tophash(hash), k, v) };
                (slot, true)
            }
        };
        // SAFETY: the slot is full now; `&mut self` makes the reference unique.
        (unsafe { (*slot.bucket.as_ptr()).values[slot.index].assume_init_mut() }, inserted)
    }

    /// Removes; a missing key is a no-op. The value is returned (dropped by the caller at once).
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Go's `mapdelete`: growWork, then delete with the `emptyOne` -> `emptyRest` walk-back.
    pub fn remove_entry<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
    {
        let hash = self.hash(key);
        if self.table.growing() {
            let (hash_builder, seed) = (&self.hash_builder, self.seed);
            self.table.grow_work(hash, &|k: &K| make_hash(hash_builder, seed, k));
        }
        let head = self.table.read_bucket(hash);
        // SAFETY: `head` is `read_bucket(hash)` of the current state.
        let slot = unsafe { self.table.find_from(head, hash, |k| k.borrow() == key) }?;
        // SAFETY: `slot` is a full slot of the chain at `head` (both from the same state).
        let entry = unsafe { self.table.remove_slot(head, slot) };
        if self.table.count == 0 {
            // Go: "Reset the hash seed to make it more difficult for attackers to repeatedly
            // trigger hash collisions." No live entry depends on the seed.
            self.seed = fresh_seed();
        }
        Some(entry)
    }

    /// Every slot empty, counters reset, a fresh hash seed; keeps the bucket array (frees
    /// overflow buckets and any old array). If a key's or value's `Drop` panics, the map is
    /// still left empty; the entries after that one are leaked, never dropped twice.
    pub fn clear(&mut self) {
        // The seed first: dropping entries never hashes, and a panicking drop still re-seeds.
        self.seed = fresh_seed();
        self.table.clear();
    }

    /// As `clear`, and releases the bucket array too (back to one bucket, B = 0).
    pub fn clear_and_release(&mut self) {
        self.table = RawTable::with_b(0, self.table.prepare);
        self.seed = fresh_seed();
    }

    /// Whether the map prepares the bucket array of its next doubling ahead of time (on by
    /// default). Once a map of large arrays (the next one 16 MiB or more) holds 3/4 of the
    /// entries that make it double, the engine's helper thread allocates that array and faults
    /// in its pages; the doubling then starts on memory that is ready, and its evacuation writes
    /// fault nothing (on Linux, a fresh array's pages otherwise fault in one at a time inside
    /// the inserts that evacuate into them, most of them within the first few hundred inserts
    /// of a doubling).
    ///
    /// The cost is memory held early: from 3/4 of the trigger count until the doubling, the map
    /// also holds its next array (twice its current one), counted in `stats().bytes_allocated`
    /// and `stats().prepared_bytes`. A map that stops growing in that window keeps it until it
    /// shrinks, compacts, is cleared, or [`release_prepared`](Self::release_prepared) is called.
    /// Switching it off gives up an array already requested.
    pub fn set_prepare_growth(&mut self, enabled: bool) {
        self.table.prepare.enabled = enabled;
        if !enabled {
            self.table.next = None;
        }
        self.table.refresh_prepare_at();
    }

    /// See [`set_prepare_growth`](Self::set_prepare_growth).
    pub fn prepare_growth(&self) -> bool {
        self.table.prepare.enabled
    }

    /// Gives back the array prepared for the next doubling, if any (its memory returns at once
    /// or, while the helper is still preparing it, when the helper is done), and prepares none
    /// until the map's next grow, compaction or shrink ends. For callers under memory pressure:
    /// the doubling then allocates its array itself, as with preparation switched off. Returns
    /// the bytes given back (as counted in `stats().prepared_bytes`).
    pub fn release_prepared(&mut self) -> usize {
        let bytes = self.table.prepared_bytes();
        self.table.release_next_array();
        bytes
    }

    /// Prepares next arrays (see [`set_prepare_growth`](Self::set_prepare_growth)) only from
    /// this size on; default 16 MiB. Preparing smaller arrays cost a single inserting thread
    /// more than the page faults it saved: from 256 KiB, inserting 1e4 keys into an empty map
    /// was 1.6–1.8x slower. A caller whose serving thread's tail matters more than its inserts'
    /// throughput (the cache node's shards, which double together) sets it lower; tests set 0
    /// so that small maps prepare too. An array already requested is kept (see
    /// [`release_prepared`](Self::release_prepared)).
    pub fn set_prepare_min_bytes(&mut self, bytes: usize) {
        self.table.prepare.min_bytes = bytes;
        self.table.refresh_prepare_at();
    }

    /// Test hook: whether the array prepared for the next doubling is ready (false when none).
    #[doc(hidden)]
    pub fn prepared_ready(&self) -> bool {
        self.table.next.as_ref().is_some_and(|next| next.is_ready())
    }

    /// Keeps the entries for which `keep` returns true; the others are removed as by `remove`
    /// (tombstones, `emptyRest` walk-back) and dropped at once. Finishes any evacuation first
    /// (retain is O(n) anyway). This is the way to remove while iterating. If `keep` panics,
    /// the map stays consistent: entries already removed are gone, the rest are kept.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.maintenance_step(usize::MAX);
        for index in 0..=self.table.mask() {
            let head = self.table.bucket(index);
            let mut b = head;
            let mut in_overflow = false;
            while !b.is_null() {
                // SAFETY: `b` walks a live chain of the current array; full slots hold
                // initialised entries; `remove_slot` only rewrites tophash bytes at or before
                // the removed slot, so the snapshot of full slots stays valid.
                unsafe {
                    for i in (*b).group().match_full() {
                        let (k, v) =
                            ((*b).keys[i].assume_init_ref(), (*b).values[i].assume_init_mut());
                        if !keep(k, v) {
                            let slot = table::Slot {
                                bucket: std::ptr::NonNull::new_unchecked(b),
                                index: i,
                                in_overflow,
                            };
                            drop(self.table.remove_slot(head, slot));
                        }
                    }
                    b = (*b).overflow;
                }
                in_overflow = true;
            }
        }
    }

    /// Iterates from a random start; see the module docs for the guarantees under growth.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter::new(&self.table, rand::random())
    }

    pub fn stats(&self) -> EngineStats {
        self.table.stats()
    }

    /// `stats().bytes_allocated`, in O(1) without the rest.
    #[inline]
    pub fn bytes_allocated(&self) -> usize {
        self.table.bytes_allocated()
    }

    /// `stats().tombstones`, in O(1) without the rest.
    #[inline]
    pub fn tombstones(&self) -> usize {
        self.table.tombstones
    }

    /// `stats().b`: log2 of the current bucket array's length.
    #[inline]
    pub fn log2_buckets(&self) -> u8 {
        self.table.b
    }

    pub fn phase(&self) -> Phase {
        self.table.phase
    }

    /// Starts a same-size regrow that purges tombstones and collapses overflow chains. Returns
    /// false when an evacuation is already in progress (nothing started).
    pub fn compact(&mut self) -> bool {
        if self.table.growing() {
            return false;
        }
        self.table.start_evacuation(self.table.b, Phase::Compacting);
        true
    }

    /// Starts an online regrow into the smallest bucket array that holds `len` under the load
    /// factor. Returns false when an evacuation is already in progress, or when the array is
    /// already that small (nothing started; `rebuild` compacts in that case).
    pub fn shrink_to_fit(&mut self) -> bool {
        if self.table.growing() {
            return false;
        }
        let target = b_for(self.table.count);
        if target >= self.table.b {
            return false;
        }
        self.table.start_evacuation(target, Phase::Shrinking);
        true
    }

    /// `shrink_to_fit` when the live count fits a smaller array, else `compact` (a same-size
    /// regrow). Returns false when an evacuation is already in progress.
    pub fn rebuild(&mut self) -> bool {
        self.shrink_to_fit() || self.compact()
    }

    /// Advances any evacuation by at most `budget` old buckets without a write. Returns the
    /// number of old buckets evacuated (0 when idle).
    pub fn maintenance_step(&mut self, budget: usize) -> usize {
        let (hash_builder, seed) = (&self.hash_builder, self.seed);
        self.table.maintenance_step(budget, &|k: &K| make_hash(hash_builder, seed, k))
    }

    /// Redis-style SCAN over bucket indexes with a reverse-binary cursor. Calls `f` for the
    /// entries of one or more buckets and returns the next cursor (0 when done). Every key present
    /// for the whole scan is returned at least once, even while the table grows, compacts or
    /// shrinks between calls. `count` is a hint of how many entries to visit (as Redis, at most
    /// `10 * count` buckets are visited per call).
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&K, &V)) -> u64 {
        let want = count.max(1);
        let mut cursor = cursor;
        let mut visited = 0;
        for _ in 0..want.saturating_mul(10) {
            let (next, n) = self.table.scan_step(cursor, &mut f);
            cursor = next;
            visited += n;
            if cursor == 0 || visited >= want {
                break;
            }
        }
        cursor
    }

    /// A pseudo-random entry (a random bucket, drawn again while empty, then a random full slot
    /// of it), for eviction and active-expiry sampling. `seed` is the caller's random number.
    pub fn sample(&self, seed: u64) -> Option<(&K, &V)> {
        self.table.sample(seed)
    }

    pub fn hasher(&self) -> &S {
        &self.hash_builder
    }

    /// Recounts every counter by walking all buckets and checks the structural invariants
    /// (see `stats.rs`). O(n): for tests and debugging.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.table.check_invariants(|k| self.hash(k))
    }
}

#[inline]
fn make_hash<Q: Hash + ?Sized, S: BuildHasher>(hash_builder: &S, seed: u64, key: &Q) -> u64 {
    mix(hash_builder.hash_one(key), seed)
}

impl<'a, K, V, S> IntoIterator for &'a Map<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        Iter::new(&self.table, rand::random())
    }
}

impl<K: Hash + Eq, V, S: BuildHasher> Extend<(K, V)> for Map<K, V, S> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Hash + Eq, V> FromIterator<(K, V)> for Map<K, V, DefaultHashBuilder> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = Map::new();
        map.extend(iter);
        map
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for Map<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self).finish()
    }
}
