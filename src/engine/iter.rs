//! Iteration (Go's `mapiterinit`/`mapiternext`), without Go's cross-array bookkeeping.
//!
//! Go's iterator can run while the map is written to, so it walks the new array and, for old
//! buckets not yet evacuated, reads the old bucket and filters the keys that belong to its
//! current new bucket. Here an [`Iter`] borrows the map, so no write can happen while it runs:
//! every entry is in exactly one place (an old bucket that is not evacuated, or the current
//! array), and walking the not-yet-evacuated old buckets and then the current array returns
//! every entry exactly once, whatever the phase. Order: a random start bucket in each array and
//! a random rotation of the slots within each bucket, as Go, so nobody comes to rely on order.
//!
//! Removal during iteration goes through [`super::Map::retain`] (a closure decides per entry)
//! or the cursor of [`super::Map::scan`], which tolerates any writes between calls.

use std::iter::FusedIterator;
use std::marker::PhantomData;

use super::bucket::Bucket;
use super::table::RawTable;

/// Iterator over `(&K, &V)`; see the module docs for order and guarantees.
pub struct Iter<'a, K, V> {
    table: &'a RawTable<K, V>,
    /// Still walking the old array (only while an evacuation is in progress).
    in_old: bool,
    /// Random first bucket index (masked per array).
    start: usize,
    /// Buckets of the current array (old or new) already started.
    step: usize,
    /// The bucket being read, null between chains.
    bucket: *const Bucket<K, V>,
    /// Full slots of `bucket` not yet returned, rotated by `offset` (bit `8j+7` = slot `j+offset`).
    pending: u64,
    /// Random slot rotation.
    offset: usize,
    /// Entries not yet returned.
    remaining: usize,
    marker: PhantomData<(&'a K, &'a V)>,
}

impl<'a, K, V> Iter<'a, K, V> {
    pub(crate) fn new(table: &'a RawTable<K, V>, random: u64) -> Self {
        Self {
            table,
            in_old: table.growing(),
            start: random as usize,
            step: 0,
            bucket: std::ptr::null(),
            pending: 0,
            offset: (random >> 61) as usize,
            remaining: table.count,
            marker: PhantomData,
        }
    }

    /// Moves to the next chain head holding entries; `false` when every array is done.
    fn next_head(&mut self) -> bool {
        loop {
            let len = if self.in_old { 1usize << self.table.old_b } else { 1usize << self.table.b };
            if self.step == len {
                if self.in_old {
                    self.in_old = false;
                    self.step = 0;
                    continue;
                }
                return false;
            }
            let index = self.start.wrapping_add(self.step) & (len - 1);
            self.step += 1;
            let head =
                if self.in_old { self.table.old_bucket(index) } else { self.table.bucket(index) };
            // SAFETY: `head` is in a live array of the borrowed table.
            if self.in_old && unsafe { (*head).evacuated() } {
                continue;
            }
            self.enter(head);
            return true;
        }
    }

    fn enter(&mut self, bucket: *const Bucket<K, V>) {
        self.bucket = bucket;
        // SAFETY: `bucket` is live for `'a`.
        let full = unsafe { (*bucket).group().match_full().0 };
        self.pending = full.rotate_right(8 * self.offset as u32);
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        loop {
            if self.bucket.is_null() && !self.next_head() {
                debug_assert!(false, "iterator ran out with {} entries left", self.remaining);
                return None;
            }
            if self.pending != 0 {
                let j = self.pending.trailing_zeros() as usize / 8;
                self.pending &= self.pending - 1;
                let i = (j + self.offset) & 7;
                self.remaining -= 1;
                // SAFETY: slot `i` is full (from `match_full`) and the table is borrowed for
                // `'a`, so the entry stays put and initialised.
                return unsafe {
                    let b = &*self.bucket;
                    Some((b.keys[i].assume_init_ref(), b.values[i].assume_init_ref()))
                };
            }
            // SAFETY: `self.bucket` is live; its overflow is null or a live bucket.
            let next = unsafe { (*self.bucket).overflow };
            if next.is_null() {
                self.bucket = std::ptr::null();
            } else {
                self.enter(next);
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}
impl<K, V> FusedIterator for Iter<'_, K, V> {}

impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Self { ..*self }
    }
}

// SAFETY: an `Iter` only hands out shared references into a table it borrows shared, like
// `std::slice::Iter<(K, V)>`.
unsafe impl<K: Sync, V: Sync> Send for Iter<'_, K, V> {}
// SAFETY: as above.
unsafe impl<K: Sync, V: Sync> Sync for Iter<'_, K, V> {}
