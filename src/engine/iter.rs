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
///
/// Per entry the hot path is one bitmask step; per bucket, one tophash load and one overflow
/// pointer read from the same (header) cache line. The old array, when an evacuation is in
/// progress, is walked first with an `evacuated` check per head; the current array (all of the
/// walk when the map is idle) has no per-bucket check beyond its index.
pub struct Iter<'a, K, V> {
    table: &'a RawTable<K, V>,
    /// The array being walked: the old one first while an evacuation is in progress.
    array: *const Bucket<K, V>,
    /// `len - 1` of `array`.
    mask: usize,
    /// `array` is the old array (its evacuated heads are skipped).
    in_old: bool,
    /// Random first bucket index (masked per array).
    start: usize,
    /// Heads of `array` not yet started.
    heads_left: usize,
    /// The bucket being read (null before the first head).
    bucket: *const Bucket<K, V>,
    /// Full slots of `bucket` not yet returned, rotated by `offset` (bit `8j+7` = slot `j+offset`).
    pending: u64,
    /// Random slot rotation, in bits (`8 * slots`).
    offset_bits: u32,
    /// Entries not yet returned.
    remaining: usize,
    marker: PhantomData<(&'a K, &'a V)>,
}

impl<'a, K, V> Iter<'a, K, V> {
    pub(crate) fn new(table: &'a RawTable<K, V>, random: u64) -> Self {
        let (array, b) = if table.growing() {
            (table.oldbuckets as *const Bucket<K, V>, table.old_b)
        } else {
            (table.buckets as *const Bucket<K, V>, table.b)
        };
        Self {
            table,
            array,
            mask: (1usize << b) - 1,
            in_old: table.growing(),
            start: random as usize,
            heads_left: 1usize << b,
            bucket: std::ptr::null(),
            pending: 0,
            offset_bits: 8 * (random >> 61) as u32,
            remaining: table.count,
            marker: PhantomData,
        }
    }

    /// Moves to the next bucket holding the chain after `bucket`, or the next head; `false`
    /// when every array is done.
    #[inline]
    fn advance(&mut self) -> bool {
        if !self.bucket.is_null() {
            // SAFETY: `self.bucket` is live for `'a`; its overflow is null or a live bucket.
            let next = unsafe { (*self.bucket).overflow };
            if !next.is_null() {
                self.enter(next);
                return true;
            }
        }
        loop {
            if self.heads_left == 0 {
                if !self.in_old {
                    return false;
                }
                self.in_old = false;
                self.array = self.table.buckets;
                self.mask = self.table.mask();
                self.heads_left = self.mask + 1;
            }
            self.heads_left -= 1;
            let index = self.start.wrapping_add(self.heads_left) & self.mask;
            // SAFETY: `index <= mask`, inside the live array `array` of the borrowed table.
            let head = unsafe { self.array.add(index) };
            // SAFETY: `head` is in a live array of the borrowed table.
            if self.in_old && unsafe { (*head).evacuated() } {
                continue;
            }
            self.enter(head);
            return true;
        }
    }

    #[inline]
    fn enter(&mut self, bucket: *const Bucket<K, V>) {
        self.bucket = bucket;
        // SAFETY: `bucket` is live for `'a`.
        let full = unsafe { (*bucket).group().match_full().0 };
        self.pending = full.rotate_right(self.offset_bits);
    }

    /// The entry of the lowest pending slot (which the caller then clears).
    ///
    /// # Safety
    /// `self.pending != 0`, and `self.bucket` is the live bucket it was computed from.
    #[inline]
    unsafe fn pending_entry(&self) -> (&'a K, &'a V) {
        let rotated = self.pending.trailing_zeros() + self.offset_bits;
        let i = (rotated as usize / 8) & 7;
        // SAFETY: slot `i` is full (from `match_full`) and the table is borrowed for `'a`, so
        // the entry stays put and initialised.
        unsafe {
            let b = &*self.bucket;
            (b.keys[i].assume_init_ref(), b.values[i].assume_init_ref())
        }
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        while self.pending == 0 {
            if !self.advance() {
                debug_assert!(false, "iterator ran out with {} entries left", self.remaining);
                return None;
            }
        }
        // SAFETY: `pending != 0`, computed from `self.bucket`.
        let entry = unsafe { self.pending_entry() };
        self.pending &= self.pending - 1;
        self.remaining -= 1;
        Some(entry)
    }

    /// Internal iteration (`for_each`, `sum`, `count`, ...): the same walk as `next` with the
    /// cursor in registers, stopping as soon as the last entry is returned.
    #[inline]
    fn fold<B, F>(mut self, init: B, mut f: F) -> B
    where
        F: FnMut(B, Self::Item) -> B,
    {
        let mut acc = init;
        while self.remaining != 0 {
            while self.pending != 0 {
                // SAFETY: `pending != 0`, computed from `self.bucket`.
                let entry = unsafe { self.pending_entry() };
                self.pending &= self.pending - 1;
                self.remaining -= 1;
                acc = f(acc, entry);
            }
            if self.remaining == 0 || !self.advance() {
                break;
            }
        }
        debug_assert_eq!(self.remaining, 0, "iterator ran out early");
        acc
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
