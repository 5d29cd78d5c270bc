//! Exact counters (`stats()`), the phase, and a brute-force recount that checks them.

use super::bucket::{Bucket, bucket_size};
use super::table::RawTable;
use super::tophash::{
    BUCKET_CNT, EMPTY_ONE, EMPTY_REST, EVACUATED_EMPTY, EVACUATED_X, EVACUATED_Y, MIN_TOP_HASH,
    is_evacuated_mark, tophash,
};

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
    /// Bytes held by bucket arrays and overflow buckets, including `prepared_bytes`.
    pub bytes_allocated: usize,
    /// The array prepared ahead for the next doubling (requested at 3/4 of the doubling's
    /// trigger count, see `Map::set_prepare_growth`), 0 when none. Part of `bytes_allocated`.
    #[serde(default)]
    pub prepared_bytes: usize,
    /// `len / (2^B * 8)`: live fill of the current array.
    pub load_factor: f64,
    /// What the table is doing.
    pub phase: Phase,
    /// Old buckets evacuated so far in the current evacuation.
    pub evacuated: usize,
    /// Old buckets still to evacuate (0 when idle).
    pub to_evacuate: usize,
}

impl<K, V> RawTable<K, V> {
    /// `stats().bytes_allocated`, without the rest of the stats.
    #[inline]
    pub(crate) fn bytes_allocated(&self) -> usize {
        let old_len = if self.growing() { 1usize << self.old_b } else { 0 };
        let buckets = (1usize << self.b) + old_len + self.noverflow + self.old_noverflow;
        buckets * bucket_size::<K, V>() + self.prepared_bytes()
    }

    pub(crate) fn stats(&self) -> EngineStats {
        let old_len = if self.growing() { 1usize << self.old_b } else { 0 };
        let buckets = (1usize << self.b) + old_len;
        let overflow_buckets = self.noverflow + self.old_noverflow;
        let total = self.count + self.tombstones;
        let prepared_bytes = self.prepared_bytes();
        EngineStats {
            len: self.count,
            tombstones: self.tombstones,
            tombstone_ratio: if total == 0 { 0.0 } else { self.tombstones as f64 / total as f64 },
            buckets,
            b: self.b,
            overflow_buckets,
            empty_overflow_buckets: self.empty_overflow,
            bytes_allocated: (buckets + overflow_buckets) * bucket_size::<K, V>() + prepared_bytes,
            prepared_bytes,
            load_factor: self.count as f64 / ((1usize << self.b) * BUCKET_CNT) as f64,
            phase: self.phase,
            evacuated: self.evacuated,
            to_evacuate: old_len - self.evacuated,
        }
    }

    /// Recounts everything by walking every bucket and checks the structural invariants:
    /// counters equal the recount; after an `EMPTY_REST` the rest of the chain is
    /// `EMPTY_REST`; every entry sits in the bucket its hash selects; old buckets are either
    /// untouched (no marks) or fully marked with no chain; every old bucket below `nevacuate`
    /// is evacuated. `hash` must be the map's hash function.
    pub(crate) fn check_invariants(&self, hash: impl Fn(&K) -> u64) -> Result<(), String> {
        if self.next.is_some() && (self.growing() || self.prepare_at != usize::MAX) {
            return Err("a next array is held while growing, or a second one is still due".into());
        }
        if self.growing() && self.prepare_at != usize::MAX {
            return Err("a next array would be requested during an evacuation".into());
        }
        let mut live = 0;
        let mut tombstones = 0;
        let mut empty_overflow = 0;
        let mut noverflow = 0;
        let mut old_noverflow = 0;
        let mut evacuated = 0;
        let mut check_chain = |head: *mut Bucket<K, V>, index: usize, mask: usize, old: bool| {
            let mut overflow_count = 0;
            let mut seen_rest = false;
            let mut b = head;
            let mut first = true;
            // SAFETY: walks live chains; full slots hold initialised keys.
            unsafe {
                if old && (*b).evacuated() {
                    if !(*b).overflow.is_null() {
                        return Err(format!(
                            "evacuated old bucket {index} keeps an overflow chain"
                        ));
                    }
                    if (*b).tophash.iter().any(|&t| !is_evacuated_mark(t)) {
                        return Err(format!(
                            "old bucket {index} is partly evacuated: {:?}",
                            (*b).tophash
                        ));
                    }
                    evacuated += 1;
                    return Ok(0);
                }
                while !b.is_null() {
                    if !first {
                        overflow_count += 1;
                        if RawTable::is_empty_bucket(&*b) {
                            empty_overflow += 1;
                        }
                    }
                    for (i, &top) in (*b).tophash.iter().enumerate() {
                        match top {
                            EMPTY_REST => seen_rest = true,
                            _ if seen_rest => {
                                return Err(format!(
                                    "bucket {index}: slot {i} = {top} after emptyRest"
                                ));
                            }
                            EMPTY_ONE => tombstones += 1,
                            EVACUATED_X | EVACUATED_Y | EVACUATED_EMPTY => {
                                return Err(format!(
                                    "bucket {index}: evacuation mark {top} in a live chain"
                                ));
                            }
                            _ => {
                                debug_assert!(top >= MIN_TOP_HASH);
                                let h = hash((*b).keys[i].assume_init_ref());
                                if tophash(h) != top {
                                    return Err(format!(
                                        "bucket {index}: slot {i} tophash {top} != {}",
                                        tophash(h)
                                    ));
                                }
                                if h as usize & mask != index {
                                    return Err(format!(
                                        "bucket {index}: key with hash {h:#x} belongs elsewhere"
                                    ));
                                }
                                live += 1;
                            }
                        }
                    }
                    first = false;
                    b = (*b).overflow;
                }
            }
            Ok(overflow_count)
        };
        for i in 0..=self.mask() {
            noverflow += check_chain(self.bucket(i), i, self.mask(), false)?;
        }
        if self.growing() {
            for i in 0..=self.old_mask() {
                old_noverflow += check_chain(self.old_bucket(i), i, self.old_mask(), true)?;
                // SAFETY: `i` is inside the live old array.
                if i < self.nevacuate && unsafe { !(*self.old_bucket(i)).evacuated() } {
                    return Err(format!(
                        "old bucket {i} below nevacuate {} is not evacuated",
                        self.nevacuate
                    ));
                }
            }
        }
        let recount = (live, tombstones, noverflow, old_noverflow, empty_overflow, evacuated);
        let counters = (
            self.count,
            self.tombstones,
            self.noverflow,
            self.old_noverflow,
            self.empty_overflow,
            self.evacuated,
        );
        if recount != counters {
            return Err(format!(
                "(live, tombstones, noverflow, old_noverflow, empty_overflow, evacuated): \
                 counters {counters:?} != recount {recount:?}"
            ));
        }
        if self.growing() == (self.phase == Phase::Idle) {
            return Err(format!(
                "phase {:?} disagrees with growing = {}",
                self.phase,
                self.growing()
            ));
        }
        Ok(())
    }
}
