//! Software prefetch for batched callers. A caller that knows the next keys it will touch (the
//! cache node, with a pipelined batch of commands in hand) asks for their buckets first, so the
//! cache misses of the whole batch overlap instead of being paid one after the other.

use std::hash::{BuildHasher, Hash};

use super::Map;
use super::bucket;

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
}

#[cfg(test)]
mod tests {
    use super::super::{Map, Phase};

    /// A prefetch is a hint: on an idle map and in the middle of a grow it changes neither the
    /// contents nor any counter, and asking for absent keys is harmless.
    #[test]
    fn prefetch_changes_nothing_idle_or_growing() {
        let mut map: Map<u64, u64> = Map::new();
        for k in 0..10_000u64 {
            map.insert(k, k * 3);
        }
        // Insert until a grow has started and is still in progress.
        let mut next = 10_000u64;
        while map.stats().phase == Phase::Idle {
            map.insert(next, next * 3);
            next += 1;
        }
        let before = map.stats();
        for k in 0..next + 1_000 {
            map.prefetch(&k);
        }
        assert_eq!(map.stats(), before);
        for k in 0..next {
            assert_eq!(map.get(&k), Some(&(k * 3)));
        }
        assert_eq!(map.get(&(next + 1)), None);
    }
}
