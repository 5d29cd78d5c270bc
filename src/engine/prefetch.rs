//! Software prefetch for batched callers. A caller that knows the next keys it will touch (the
//! cache node, with a pipelined batch of commands in hand) asks for their buckets first, so the
//! cache misses of the whole batch overlap instead of being paid one after the other.
//!
//! It comes in two stages, because a hit reads more than the bucket's header: the header line
//! (tophash bytes), then the line of the matching slot's key, then its value's. `prefetch` starts
//! the header for every key of the batch; `prefetch_slots`, called for every key once all the
//! headers are on their way, reads each header's tophash bytes and starts the key and value lines
//! of the slots that match. The three misses of a hit become one round of overlapped misses per
//! stage instead of three in a row per key.

use std::hash::{BuildHasher, Hash};
use std::ptr;

use super::Map;
use super::bucket::{self, Bucket};
use super::tophash::{BitMask, tophash};

impl<K, V, S: BuildHasher> Map<K, V, S> {
    /// Starts loading the head bucket of `key`'s chain into the cache: the current array's
    /// bucket, and the old array's as well while a grow, compaction or shrink is under way (a
    /// read may land on either). A hint only: nothing is read or changed, the map's state and
    /// every later result are the same with or without it.
    #[inline]
    pub fn prefetch<Q: Hash + ?Sized>(&self, key: &Q) {
        let hash = super::make_hash(&self.hash_builder, self.seed, key) as usize;
        let table = &self.table;
        bucket::prefetch(table.bucket(hash & table.mask()));
        if table.growing() {
            bucket::prefetch(table.old_bucket(hash & table.old_mask()));
        }
    }

    /// The second stage (see the module docs): reads the tophash bytes of the bucket that holds
    /// `key` right now, a line `prefetch` started loading, and starts loading the key and the
    /// value of each slot whose tophash matches (none for most absent keys, one for most present
    /// ones). Follows no overflow chain. A hint only, like `prefetch`.
    #[inline]
    pub fn prefetch_slots<Q: Hash + ?Sized>(&self, key: &Q) {
        let (b, matching) = self.matching_slots(key);
        for i in matching {
            // SAFETY: `b` is a bucket of a live array and `i < 8`: the slots are addressed (in
            // bounds of the bucket, no reference made), never read.
            unsafe {
                prefetch_whole(ptr::addr_of!((*b).keys[i]));
                prefetch_whole(ptr::addr_of!((*b).values[i]));
            }
        }
    }

    /// The bucket that holds `key` right now if anything does (the head of its chain), and its
    /// slots whose tophash matches `key`'s.
    #[inline]
    fn matching_slots<Q: Hash + ?Sized>(&self, key: &Q) -> (*mut Bucket<K, V>, BitMask) {
        let hash = super::make_hash(&self.hash_builder, self.seed, key);
        let b = self.table.read_bucket(hash);
        // SAFETY: `read_bucket` returns a bucket of a live array; only its tophash bytes are read.
        (b, unsafe { (*b).group() }.match_byte(tophash(hash)))
    }
}

/// Prefetches the line of `slot`'s first byte and, when the slot straddles two lines, of its last.
#[inline(always)]
fn prefetch_whole<T>(slot: *const T) {
    bucket::prefetch(slot);
    let size = size_of::<T>();
    if size > 1 {
        bucket::prefetch(slot.cast::<u8>().wrapping_add(size - 1));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Map, Phase};

    /// The second stage aims at the right slot in every phase: for each key in the head bucket
    /// of its chain, the slots it prefetches include the one the key is in (keys in overflow
    /// buckets are not followed), whether the key still sits in an old bucket or was evacuated.
    #[test]
    fn prefetch_slots_aims_at_the_keys_slot_idle_growing_compacting_and_shrinking() {
        let check_phase = |map: &Map<u64, u64>, keys: &[u64], phase: Phase| {
            assert_eq!(map.stats().phase, phase);
            let mut in_head = 0;
            for k in keys {
                let hash = super::super::make_hash(&map.hash_builder, map.seed, k);
                let slot = map.table.find(hash, |x| x == k).expect("present");
                if slot.in_overflow {
                    continue;
                }
                in_head += 1;
                let (b, mut matching) = map.matching_slots(k);
                assert_eq!(b, slot.bucket.as_ptr(), "key {k} in {phase:?}: head bucket");
                assert!(
                    Iterator::any(&mut matching, |i| i == slot.index),
                    "key {k} in {phase:?}: its slot"
                );
            }
            // Most keys sit in their head bucket, so the check above covered something.
            assert!(in_head * 10 > keys.len() * 8, "{in_head} of {} in {phase:?}", keys.len());
        };
        // Smaller under Miri, to stay in its time (`.ci/run` runs these tests under it).
        let n: u64 = if cfg!(miri) { 300 } else { 5_000 };
        let mut map: Map<u64, u64> = Map::new();
        let mut keys: Vec<u64> = (0..n).collect();
        for &k in &keys {
            map.insert(k, k);
        }
        check_phase(&map, &keys, Phase::Idle);
        // Half-way through a grow: some keys evacuated, some not.
        let mut next = n;
        while map.stats().phase == Phase::Idle {
            map.insert(next, next);
            keys.push(next);
            next += 1;
        }
        map.maintenance_step(map.stats().to_evacuate / 2);
        check_phase(&map, &keys, Phase::Growing);
        map.maintenance_step(usize::MAX);
        assert!(map.compact());
        map.maintenance_step(map.stats().to_evacuate / 2);
        check_phase(&map, &keys, Phase::Compacting);
        map.maintenance_step(usize::MAX);
        for k in keys.drain(n as usize / 5..) {
            map.remove(&k);
        }
        assert!(map.shrink_to_fit());
        map.maintenance_step(map.stats().to_evacuate / 2);
        check_phase(&map, &keys, Phase::Shrinking);
    }

    /// A prefetch (either stage) is a hint: on an idle map and in the middle of a grow it changes
    /// neither the contents nor any counter, and asking for absent keys is harmless.
    #[test]
    fn prefetch_changes_nothing_idle_or_growing() {
        let n: u64 = if cfg!(miri) { 300 } else { 10_000 };
        let mut map: Map<u64, u64> = Map::new();
        for k in 0..n {
            map.insert(k, k * 3);
        }
        // Insert until a grow has started and is still in progress.
        let mut next = n;
        while map.stats().phase == Phase::Idle {
            map.insert(next, next * 3);
            next += 1;
        }
        let before = map.stats();
        for k in 0..next + 1_000 {
            map.prefetch(&k);
            map.prefetch_slots(&k);
        }
        assert_eq!(map.stats(), before);
        for k in 0..next {
            assert_eq!(map.get(&k), Some(&(k * 3)));
        }
        assert_eq!(map.get(&(next + 1)), None);
        let empty: Map<String, u64> = Map::new();
        empty.prefetch_slots("absent");
        assert_eq!(empty.get("absent"), None);
    }
}
