//! Incremental evacuation: `growWork`, `evacuate`, `advanceEvacuationMark`.
//!
//! An evacuation moves every entry from `oldbuckets` into `buckets`, one old bucket (with its
//! overflow chain) at a time. Where an old bucket `i` goes depends on the kind of regrow:
//!
//! | kind                          | new B     | destination of an entry of old bucket `i` |
//! |-------------------------------|-----------|-------------------------------------------|
//! | doubling (`overLoadFactor`)   | `B + 1`   | `i` (X) or `i + 2^oldB` (Y), by hash bit `oldB` |
//! | same-size (`compact`, overflow)| `B`      | `i` (X)                                   |
//! | shrink (`rebuild`)            | `< B`     | `i & newmask` (X): several old buckets merge |
//!
//! Each evacuated slot is marked `evacuatedX`/`evacuatedY`/`evacuatedEmpty` as in Go, and the
//! old bucket's overflow chain is freed at once (Rust's borrow rules mean no iterator can be
//! walking it), so memory goes back while the evacuation runs and the old array itself is freed
//! the moment the last bucket is done.
//!
//! Only a doubling and a same-size grow write into destination buckets that nobody wrote
//! before. A shrink merges several old buckets into one new bucket that may already hold
//! entries inserted since, and tombstones, so the destination cursor always takes the next
//! empty slot of the chain instead of assuming a fresh bucket.
//!
//! Panics: the key's hash is recomputed with the user's `Hash`. If that panics, a guard drops
//! the entries of the old chain not moved yet (they are lost, as hashbrown loses the elements of
//! a rehash that panics), marks the bucket evacuated and fixes the counters, so the table stays
//! consistent and nothing leaks or is dropped twice.

use std::ptr::{self, NonNull};

use super::Phase;
use super::bucket::{self, Bucket};
use super::table::{RawTable, Slot};
use super::tophash::{EMPTY_ONE, EMPTY_REST, EVACUATED_EMPTY, EVACUATED_X, EVACUATED_Y, is_empty};

/// How far `advance_evacuation_mark` looks ahead for already evacuated buckets per call, as Go.
const EVACUATION_MARK_LOOKAHEAD: usize = 1024;

/// Destination cursor of an evacuation (Go's `evacDst`).
struct EvacDst<K, V> {
    bucket: *mut Bucket<K, V>,
    index: usize,
    in_overflow: bool,
    /// The destination chain was never written (doubling and same-size grows: a new bucket
    /// is only written after its old bucket is evacuated), so every slot from the cursor on is
    /// empty and the cursor need not read it. Skipping that read matters: the new array is
    /// fresh zeroed memory, and a load there stalls on a cache miss and a page fault where a
    /// store would not.
    fresh: bool,
}

impl<K, V> EvacDst<K, V> {
    fn new(head: *mut Bucket<K, V>, fresh: bool) -> Self {
        Self { bucket: head, index: 0, in_overflow: false, fresh }
    }

    /// The next empty slot at or after the cursor, appending an overflow bucket to the current
    /// array when the chain is full.
    ///
    /// # Safety
    /// The cursor's bucket is a live bucket of `table`'s current array or its chains.
    unsafe fn next_slot(&mut self, table: &mut RawTable<K, V>) -> Slot<K, V> {
        // SAFETY: the cursor walks one live chain of the current array.
        unsafe {
            loop {
                if self.index == super::tophash::BUCKET_CNT {
                    let mut next = (*self.bucket).overflow;
                    if next.is_null() {
                        next = table.new_overflow();
                        (*self.bucket).overflow = next;
                    }
                    self.bucket = next;
                    self.index = 0;
                    self.in_overflow = true;
                }
                debug_assert!(!self.fresh || (*self.bucket).tophash[self.index] == EMPTY_REST);
                if self.fresh || is_empty((*self.bucket).tophash[self.index]) {
                    let slot = Slot {
                        bucket: NonNull::new_unchecked(self.bucket),
                        index: self.index,
                        in_overflow: self.in_overflow,
                    };
                    self.index += 1;
                    return slot;
                }
                self.index += 1;
            }
        }
    }
}

/// Restores consistency if the user's `Hash` panics in the middle of evacuating one old chain.
struct EvacuateGuard<'a, K, V> {
    table: &'a mut RawTable<K, V>,
    old_index: usize,
    done: bool,
}

impl<K, V> Drop for EvacuateGuard<'_, K, V> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let table = &mut *self.table;
        let head = table.old_bucket(self.old_index);
        let mut b = head;
        // SAFETY: the chain is live; the slots already moved carry evacuation marks, the rest
        // are empty or full (owned entries), which `drop_entries` drops exactly once.
        unsafe {
            while !b.is_null() {
                let live = (*b).group().match_full().count();
                let tombstones = (*b).group().match_empty_one().count();
                table.count -= live;
                table.tombstones -= tombstones;
                // Marked X (not Empty) so the chain free below still sees the bucket held entries.
                (*b).drop_entries(EVACUATED_X);
                for top in (*b).tophash.iter_mut() {
                    if is_empty(*top) {
                        *top = EVACUATED_EMPTY;
                    }
                }
                b = (*b).overflow;
            }
            free_old_overflow_chain(table, head);
        }
        table.evacuated += 1;
    }
}

/// Frees the overflow buckets of an evacuated old chain, keeping the counters exact.
///
/// # Safety
/// `head` is an old bucket whose whole chain holds no live entry any more.
unsafe fn free_old_overflow_chain<K, V>(table: &mut RawTable<K, V>, head: *mut Bucket<K, V>) {
    // SAFETY: each overflow bucket is owned by its predecessor and freed once.
    unsafe {
        let mut next = (*head).overflow;
        (*head).overflow = ptr::null_mut();
        while !next.is_null() {
            let b = next;
            next = (*b).overflow;
            // Empty before the evacuation marked it: it was counted as an empty overflow.
            if (*b).tophash.iter().all(|&t| t == EVACUATED_EMPTY) {
                table.empty_overflow -= 1;
            }
            table.old_noverflow -= 1;
            bucket::free_overflow(b);
        }
    }
}

impl<K, V> RawTable<K, V> {
    /// Go's `growWork`: evacuate the old bucket `hash` is about to use, plus one more to make
    /// progress.
    pub(crate) fn grow_work(&mut self, hash: u64, rehash: &impl Fn(&K) -> u64) {
        self.evacuate(hash as usize & self.old_mask(), rehash);
        if self.growing() {
            self.evacuate(self.nevacuate, rehash);
            if self.growing() {
                self.prefetch_next_evacuation();
            }
        }
    }

    /// Starts loading the old bucket the next `growWork` will evacuate at `nevacuate`, and the
    /// head(s) it moves into, so the caller's own work until then overlaps those cache misses
    /// (an old bucket is two to three cache lines, and at 1e7 entries neither array is cached).
    #[inline]
    fn prefetch_next_evacuation(&self) {
        let old = self.old_bucket(self.nevacuate);
        let x = self.bucket(self.nevacuate & self.mask());
        // The old bucket is read whole (tophash, keys, values: up to three lines); the
        // destination heads are only written, and only their header and first key line matter.
        bucket::prefetch(old);
        bucket::prefetch(old.cast::<u8>().wrapping_add(64));
        bucket::prefetch(old.cast::<u8>().wrapping_add(128));
        bucket::prefetch(x);
        if self.b > self.old_b {
            bucket::prefetch(x.wrapping_add(1usize << self.old_b));
        }
    }

    /// Advances the evacuation by at most `budget` old buckets without a write. Returns how
    /// many old buckets it evacuated.
    pub(crate) fn maintenance_step(&mut self, budget: usize, rehash: &impl Fn(&K) -> u64) -> usize {
        let mut done = 0;
        while done < budget && self.growing() {
            done += usize::from(self.evacuate(self.nevacuate, rehash));
        }
        done
    }

    /// Go's `evacuate`: moves every entry of old bucket `old_index` (and its chain) to the
    /// current array and marks its slots. Returns whether it moved anything (false when the
    /// bucket was evacuated already).
    pub(crate) fn evacuate(&mut self, old_index: usize, rehash: &impl Fn(&K) -> u64) -> bool {
        let old_len = 1usize << self.old_b;
        // SAFETY: `old_index < old_len`, in the live old array.
        let moved = unsafe { !(*self.old_bucket(old_index)).evacuated() };
        if moved {
            self.move_old_chain(old_index, rehash);
        }
        if old_index == self.nevacuate {
            self.advance_evacuation_mark(old_len);
        }
        moved
    }

    fn move_old_chain(&mut self, old_index: usize, rehash: &impl Fn(&K) -> u64) {
        let head = self.old_bucket(old_index);
        let old_len = 1usize << self.old_b;
        let doubling = self.b > self.old_b;
        // Doubling and same-size grows write into chains nobody wrote; a shrink merges.
        let fresh = self.b >= self.old_b;
        let mut x = EvacDst::new(self.bucket(old_index & self.mask()), fresh);
        let y_head = if doubling { self.bucket(old_index + old_len) } else { ptr::null_mut() };
        let mut y = EvacDst::new(y_head, fresh);
        let mut guard = EvacuateGuard { table: self, old_index, done: false };
        let table = &mut *guard.table;
        let mut b = head;
        // SAFETY: `b` walks the live old chain; full slots own initialised entries which are
        // moved (read, then marked) exactly once into empty slots of the current array.
        unsafe {
            while !b.is_null() {
                for i in 0..super::tophash::BUCKET_CNT {
                    let top = (*b).tophash[i];
                    if is_empty(top) {
                        if top == EMPTY_ONE {
                            table.tombstones -= 1;
                        }
                        (*b).tophash[i] = EVACUATED_EMPTY;
                        continue;
                    }
                    // May panic: the guard then drops what is left of this chain.
                    let hash = rehash((*b).keys[i].assume_init_ref());
                    let use_y = doubling && hash as usize & old_len != 0;
                    let dst = if use_y { &mut y } else { &mut x };
                    let slot = dst.next_slot(table);
                    let key = (*b).keys[i].assume_init_read();
                    let value = (*b).values[i].assume_init_read();
                    (*b).tophash[i] = if use_y { EVACUATED_Y } else { EVACUATED_X };
                    // `write_slot` counts a new entry; the old one is gone, so undo first.
                    table.count -= 1;
                    if fresh {
                        table.write_fresh_slot(slot, top, key, value);
                    } else {
                        table.write_slot(slot, top, key, value);
                    }
                }
                b = (*b).overflow;
            }
            free_old_overflow_chain(table, head);
        }
        table.evacuated += 1;
        guard.done = true;
    }

    /// Go's `advanceEvacuationMark`: move `nevacuate` past evacuated buckets (a bounded number
    /// per call) and end the evacuation when it reaches the end.
    fn advance_evacuation_mark(&mut self, old_len: usize) {
        self.nevacuate += 1;
        let stop = (self.nevacuate + EVACUATION_MARK_LOOKAHEAD).min(old_len);
        // SAFETY: indexes below `old_len` are in the live old array.
        while self.nevacuate != stop && unsafe { (*self.old_bucket(self.nevacuate)).evacuated() } {
            self.nevacuate += 1;
        }
        if self.nevacuate == old_len {
            debug_assert_eq!(self.evacuated, old_len);
            debug_assert_eq!(self.old_noverflow, 0);
            // A shrink or a compaction freed overflow buckets (small heap blocks) and leaves a
            // smaller footprint behind: give the allocator's free pages back too. A grow ends
            // with a larger table, so there is nothing worth trimming.
            let trim = matches!(self.phase, Phase::Shrinking | Phase::Compacting);
            // SAFETY: every old bucket is evacuated: no entries, no overflow chains left.
            unsafe { bucket::free_array_off_thread(self.oldbuckets, old_len, trim) };
            self.end_evacuation();
            self.refresh_prepare_at();
        }
    }
}
