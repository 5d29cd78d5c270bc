//! Redis `dictScan` over the bucket arrays, and `sample` for eviction and expiry.
//!
//! The cursor is a bucket index whose bits are incremented from the top (reverse binary). A
//! cursor value therefore names the same "slice" of the key space whatever the array size:
//! for a table of `2^B` buckets, every bucket whose index reversed is below the cursor's has
//! been visited, and the buckets of a larger or smaller table that hold those keys are exactly
//! the ones with the same low bits. So when the table doubles, compacts or shrinks between two
//! calls, every key present for the whole scan is still returned at least once (a shrink may
//! return some keys twice, as Redis).
//!
//! While an evacuation runs, entries live in two arrays. As Redis with its two hash tables,
//! each step visits bucket `cursor & small_mask` of the smaller array and every bucket of the
//! larger array that shares those low bits; old buckets already evacuated are skipped, since
//! their entries sit in the new buckets of the same step.

use super::bucket::Bucket;
use super::table::RawTable;

/// Redis's `rev`: reverse the bits of a cursor.
#[inline]
fn rev(v: u64) -> u64 {
    v.reverse_bits()
}

/// Increments the reversed cursor within `mask` (Redis's `v |= ~m; v = rev(v); v++; rev(v)`).
#[inline]
fn next_cursor(v: u64, mask: u64) -> u64 {
    rev(rev(v | !mask).wrapping_add(1))
}

impl<K, V> RawTable<K, V> {
    /// Visits every live entry of the chain at `head` (skipped when it is an evacuated old
    /// bucket). Returns the number visited.
    fn visit_chain(&self, head: *mut Bucket<K, V>, f: &mut impl FnMut(&K, &V)) -> usize {
        let mut visited = 0;
        let mut b = head;
        // SAFETY: `b` walks a live chain; full slots hold initialised entries, and `&self`
        // keeps them in place while `f` runs.
        unsafe {
            if (*b).evacuated() {
                return 0;
            }
            while !b.is_null() {
                for i in (*b).group().match_full() {
                    f((*b).keys[i].assume_init_ref(), (*b).values[i].assume_init_ref());
                    visited += 1;
                }
                b = (*b).overflow;
            }
        }
        visited
    }

    /// One `dictScan` step at cursor `v`: returns the next cursor (0 when the scan is done) and
    /// the number of entries visited.
    pub(crate) fn scan_step(&self, mut v: u64, f: &mut impl FnMut(&K, &V)) -> (u64, usize) {
        let mut visited = 0;
        if !self.growing() {
            let m0 = self.mask() as u64;
            visited += self.visit_chain(self.bucket((v & m0) as usize), f);
            return (next_cursor(v, m0), visited);
        }
        // `small`/`large` as Redis's t0/t1; `true` marks the old array.
        let old_is_small = self.old_b <= self.b;
        let (m0, m1) = if old_is_small {
            (self.old_mask() as u64, self.mask() as u64)
        } else {
            (self.mask() as u64, self.old_mask() as u64)
        };
        let head = |old: bool, i: u64| {
            if old { self.old_bucket(i as usize) } else { self.bucket(i as usize) }
        };
        visited += self.visit_chain(head(old_is_small, v & m0), f);
        loop {
            visited += self.visit_chain(head(!old_is_small, v & m1), f);
            v = next_cursor(v, m1);
            if v & (m0 ^ m1) == 0 {
                break;
            }
        }
        (v, visited)
    }

    /// A pseudo-random live entry: bucket `seed & mask` (or the old bucket holding its keys
    /// while it is not evacuated), then a seed-chosen full slot, each equally likely. An empty
    /// bucket draws another random bucket, up to `SAMPLE_RANDOM_PROBES` times, as Redis's
    /// `dictGetRandomKey`, and only then moves on index by index. (Moving on at once would favour
    /// the key after the longest run of empty buckets: in a sparse map, one key could come back
    /// nearly every time, and the keys sampled and removed first lengthen its run further.)
    /// O(1) expected at ordinary fill.
    pub(crate) fn sample(&self, seed: u64) -> Option<(&K, &V)> {
        if self.count == 0 {
            return None;
        }
        let mut seed = seed;
        let mut index = seed as usize;
        for probe in 0..=self.mask() {
            if probe > 0 {
                index = if probe < SAMPLE_RANDOM_PROBES {
                    seed = splitmix64(seed);
                    seed as usize
                } else {
                    index.wrapping_add(1)
                };
            }
            let pick = (seed >> 40) as u32;
            index &= self.mask();
            let mut heads = [self.bucket(index), std::ptr::null_mut()];
            if self.growing() {
                // The old bucket whose entries evacuate into `index` (for a shrink, one of
                // several, chosen by the seed's high bits).
                let old = (index | ((seed >> 32) as usize) << self.b) & self.old_mask();
                heads[1] = self.old_bucket(old);
            }
            for head in heads.into_iter().rev().filter(|h| !h.is_null()) {
                let mut b = head;
                // SAFETY: `b` walks a live chain; full slots hold initialised entries.
                unsafe {
                    if (*b).evacuated() {
                        continue;
                    }
                    while !b.is_null() {
                        let mut full = (*b).group().match_full();
                        if full.any() {
                            // Every full slot of the bucket equally likely (the first full slot
                            // after a random start would favour a slot that follows empty ones).
                            let nth = pick as usize % full.count();
                            let i = full.nth(nth).unwrap_or(0);
                            return Some((
                                (*b).keys[i].assume_init_ref(),
                                (*b).values[i].assume_init_ref(),
                            ));
                        }
                        b = (*b).overflow;
                    }
                }
            }
        }
        // Only reachable mid-shrink, when the entries sit in old buckets the probes did not
        // pick: fall back to the first entry in iteration order.
        super::iter::Iter::new(self, seed).next()
    }
}

/// Random bucket draws `sample` makes before it walks on index by index: enough for a map
/// filled to 1/256 of its buckets to find a key this way 98 times in 100.
const SAMPLE_RANDOM_PROBES: usize = 1024;

/// One step of the splitmix64 generator: the next well-mixed value after `x`.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_cursor_walks_reverse_binary_order() {
        let mut v = 0u64;
        let mut order = Vec::new();
        loop {
            order.push(v);
            v = next_cursor(v, 7);
            if v == 0 {
                break;
            }
        }
        assert_eq!(order, vec![0, 4, 2, 6, 1, 5, 3, 7]);
    }
}
