//! Key -> shard, by a hash of the key, with shards of deliberately unequal shares so that their
//! tables do not double at the same moment.
//!
//! Each shard is an engine map that doubles when it holds more than 6.5 keys per bucket, and its
//! evacuation then costs every write to it two old buckets (Go's `growWork`) until the old array
//! is empty. With equal shares, uniformly hashed keys fill every shard at the same pace, so all
//! shards cross the same power-of-two threshold together and evacuate together: for a few
//! thousand writes every write of the node pays for evacuation. Measured on a node of 16 shards
//! (docs/BENCHMARKS.md): the redis-benchmark INCR pass whose new keys doubled all 16 shards had a
//! p99 of 2.9–5.8 ms, the same pass over maps that did not grow 2.0 ms.
//!
//! So shard `i` of `n` gets a share proportional to `2^(i/n)`: the largest shard takes twice the
//! keys of the smallest, and the shares' logarithms are evenly spaced over one doubling. As the
//! node fills, the shards cross their thresholds one after another, evenly spread over every
//! doubling of the node's key count, each at Go's own load factor (no table is grown early, so no
//! memory is spent on it). The price is uneven shards: the largest holds 2x the keys (and takes
//! 2x the lock acquisitions) of the smallest, about 1.4x the average at most.
//!
//! Routing is one lookup in a table of `64 x n` entries (at least 1024) indexed by the top bits of
//! the key's hash (the router's own seed, independent of the engine's per-map seed, so shard
//! choice and bucket choice do not correlate).

use std::hash::BuildHasher;

use rand::Rng;

/// Entries per shard in the routing table: shares are exact to 1/64 of an average shard.
const SLOTS_PER_SHARD: usize = 64;
const MIN_SLOTS: usize = 1024;

#[derive(Debug)]
pub struct Router {
    hasher: foldhash::fast::FixedState,
    /// Top hash bits -> shard; a power-of-two length.
    table: Box<[u16]>,
    /// `64 - log2(table.len())`.
    shift: u32,
}

impl Router {
    /// A router over `shards` shards (a power of two, at most 65,536), with a random seed.
    pub fn new(shards: usize) -> Self {
        Self::with_seed(shards, rand::rng().random())
    }

    pub fn with_seed(shards: usize, seed: u64) -> Self {
        assert!(shards.is_power_of_two() && shards <= 1 << 16, "shard count {shards}");
        let len = (shards * SLOTS_PER_SHARD).max(MIN_SLOTS);
        // Cumulative shares: shard i owns slots [bounds[i], bounds[i + 1]).
        let weights: Vec<f64> = (0..shards).map(|i| (i as f64 / shards as f64).exp2()).collect();
        let total: f64 = weights.iter().sum();
        let mut table = Vec::with_capacity(len);
        let mut cumulative = 0.0;
        for (shard, weight) in weights.iter().enumerate() {
            cumulative += weight / total;
            let end =
                if shard + 1 == shards { len } else { (cumulative * len as f64).round() as usize };
            table.resize(end.max(table.len()), shard as u16);
        }
        debug_assert_eq!(table.len(), len);
        Self {
            hasher: foldhash::fast::FixedState::with_seed(seed),
            table: table.into_boxed_slice(),
            shift: 64 - len.trailing_zeros(),
        }
    }

    #[inline]
    pub fn shard_of(&self, key: &[u8]) -> usize {
        let hash = self.hasher.hash_one(key);
        // `hash >> shift` is below `2^(64 - shift)` = `table.len()`.
        self.table[(hash >> self.shift) as usize] as usize
    }

    /// The share of keys shard `i` gets (for tests and the docs).
    pub fn share(&self, i: usize) -> f64 {
        self.table.iter().filter(|&&s| s as usize == i).count() as f64 / self.table.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_grow_by_2_to_the_1_over_n_from_shard_to_shard_and_cover_every_shard() {
        for shards in [1usize, 2, 4, 16, 64, 1024] {
            let router = Router::with_seed(shards, 7);
            let shares: Vec<f64> = (0..shards).map(|i| router.share(i)).collect();
            assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            assert!(shares.iter().all(|&s| s > 0.0), "{shards} shards: a shard gets no keys");
            if shards > 1 {
                // Largest / smallest: 2^((n-1)/n), within the table's rounding (1/64 of a share).
                let ratio = shares[shards - 1] / shares[0];
                let expected = ((shards - 1) as f64 / shards as f64).exp2();
                assert!((ratio - expected).abs() < 0.1, "{shards} shards: ratio {ratio}");
            }
        }
    }

    #[test]
    fn keys_land_on_shards_in_proportion_to_their_shares() {
        let router = Router::with_seed(16, 42);
        let mut counts = [0usize; 16];
        let n = 400_000;
        for k in 0..n {
            counts[router.shard_of(format!("key:{k:012}").as_bytes())] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let expected = router.share(i) * n as f64;
            // ~6 standard deviations of a binomial count of this size.
            assert!(
                (c as f64 - expected).abs() < 6.0 * expected.sqrt(),
                "shard {i}: {c} vs {expected}"
            );
        }
        assert!(counts[15] as f64 > 1.8 * counts[0] as f64, "{counts:?}");
    }

    #[test]
    fn uniform_keys_make_the_shards_cross_their_doubling_thresholds_one_at_a_time() {
        // Fill 16 shards with uniform keys and record the global key count at which each shard
        // crosses 6.5 * 2^14 keys (an engine doubling): the crossings spread over the whole
        // doubling of the node's count instead of falling together.
        let router = Router::with_seed(16, 3);
        let threshold = 13 * (1 << 14) / 2;
        let mut counts = [0usize; 16];
        let mut crossed_at = Vec::new();
        let mut k = 0u64;
        while crossed_at.len() < 16 {
            let s = router.shard_of(&k.to_le_bytes());
            counts[s] += 1;
            if counts[s] == threshold + 1 {
                crossed_at.push(k);
            }
            k += 1;
        }
        let (first, last) = (crossed_at[0] as f64, crossed_at[15] as f64);
        assert!(last / first > 1.7, "crossings from {first} to {last}");
        // Neighbouring crossings are about 1/16 of a doubling apart (~70k keys here), none nearly
        // together (with equal shares all 16 fall within a few thousand keys of each other).
        let min_gap = crossed_at.windows(2).map(|w| w[1] - w[0]).min().unwrap();
        assert!(min_gap > 20_000, "crossings {crossed_at:?}");
    }
}
