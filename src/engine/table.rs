//! The raw table: bucket arrays, counters, lookup, insert and delete over raw buckets.
//!
//! Everything here works on hashes the caller computed; the safe [`super::Map`] owns the hasher
//! and passes `rehash` closures where an evacuation must recompute a key's hash. The evacuation
//! machinery (growWork and friends) is in `evacuate.rs`.

use std::marker::PhantomData;
use std::ptr::{self, NonNull};

use super::Phase;
use super::bucket::{self, Bucket, NextArray};
use super::tophash::{BUCKET_CNT, EMPTY_ONE, EMPTY_REST, Group, is_empty, tophash};

/// `overLoadFactor`: 13/2 = 6.5 entries per bucket on average.
const LOAD_FACTOR_NUM: usize = 13;
const LOAD_FACTOR_DEN: usize = 2;

/// Go's `overLoadFactor(count, B)`: more than 8 entries and more than 6.5 per bucket.
#[inline]
pub(crate) fn over_load_factor(count: usize, b: u8) -> bool {
    count > BUCKET_CNT && count > LOAD_FACTOR_NUM * ((1usize << b) / LOAD_FACTOR_DEN)
}

/// Go's `tooManyOverflowBuckets(noverflow, B)`: "as many overflow buckets as regular buckets".
///
/// Go caps B at 15 here because its `noverflow` is a `uint16` that, for B >= 16, is only
/// incremented with probability `1 / 2^(B-15)`: the cap and the sampling cancel out to roughly
/// `noverflow >= 2^B`. Our count is exact, so we compare with `2^B` directly (with the cap and
/// an exact count, a 2^21-bucket map at ordinary fill would regrow at ~33k overflow buckets).
#[inline]
pub(crate) fn too_many_overflow_buckets(noverflow: usize, b: u8) -> bool {
    noverflow >= 1usize << b
}

/// A map starts preparing the array of its next doubling (see [`RawTable::prepare_at`]) once it
/// holds this fraction of the entries that trigger the doubling: 3/4, so the helper thread has
/// the last quarter of the inserts before the doubling (1.6 inserts per bucket) to fault the new
/// array in. Below it no map pays for a second array.
const PREPARE_AT_NUM: usize = 3;
const PREPARE_AT_DEN: usize = 4;

/// The smallest array worth preparing ahead: 16 MiB. Preparing arrays from 256 KiB (mapped
/// arrays' own threshold) made inserting 1e4 keys into an empty map 1.6–1.8x slower (u64 92–100
/// ns per insert against 56, str16 146–185 against 98–102) and 3e4 keys 1.4–1.8x, while the
/// worst insert growing to 1e7 is the same from 16 MiB on (docs/BENCHMARKS.md, "Session 11").
/// The likely cause, not measured: an array the helper thread just faulted in is in the
/// helper's caches, and the inserting thread pulls each line across instead of finding it in
/// its own (fresh pages it faults itself are zeroed by its own CPU).
const PREPARE_MIN_BYTES: usize = 16 << 20;

/// A map's settings for preparing next arrays (`Map::set_prepare_growth`); they outlive
/// `clear_and_release`, which starts a new table.
#[derive(Clone, Copy)]
pub(crate) struct PrepareSettings {
    pub(crate) enabled: bool,
    /// Arrays smaller than this are not prepared.
    pub(crate) min_bytes: usize,
}

impl Default for PrepareSettings {
    fn default() -> Self {
        Self { enabled: true, min_bytes: PREPARE_MIN_BYTES }
    }
}

/// The smallest B whose table holds `count` entries without `overLoadFactor`.
pub(crate) fn b_for(count: usize) -> u8 {
    let mut b = 0u8;
    while over_load_factor(count, b) {
        b += 1;
    }
    b
}

/// Where a key lives (or will live): one slot of one bucket.
pub(crate) struct Slot<K, V> {
    pub(crate) bucket: NonNull<Bucket<K, V>>,
    pub(crate) index: usize,
    /// The bucket is an overflow bucket (counted in `empty_overflow`).
    pub(crate) in_overflow: bool,
}

impl<K, V> Clone for Slot<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for Slot<K, V> {}

/// The result of [`RawTable::prepare_insert`].
pub(crate) enum InsertSlot<K, V> {
    /// The key is present at this slot.
    Occupied(Slot<K, V>),
    /// The key is absent; this empty slot on its path is reserved for it.
    Vacant(Slot<K, V>),
}

pub(crate) struct RawTable<K, V> {
    /// The current bucket array, `2^b` buckets, never null.
    pub(crate) buckets: *mut Bucket<K, V>,
    /// log2 of the current array's length.
    pub(crate) b: u8,
    /// The array being evacuated, `2^old_b` buckets; null when idle.
    pub(crate) oldbuckets: *mut Bucket<K, V>,
    /// log2 of the old array's length (meaningless when idle).
    pub(crate) old_b: u8,
    /// What the evacuation is for; `Idle` exactly when `oldbuckets` is null.
    pub(crate) phase: Phase,
    /// Old buckets below this index are all evacuated (Go's `nevacuate`).
    pub(crate) nevacuate: usize,
    /// Old buckets evacuated so far, in any order (for `stats().evacuated`).
    pub(crate) evacuated: usize,
    /// Live entries.
    pub(crate) count: usize,
    /// `EMPTY_ONE` slots in both arrays.
    pub(crate) tombstones: usize,
    /// Overflow buckets hanging off the current array (drives `tooManyOverflowBuckets`).
    pub(crate) noverflow: usize,
    /// Overflow buckets still hanging off the old array.
    pub(crate) old_noverflow: usize,
    /// Overflow buckets (both arrays) whose 8 slots are all empty.
    pub(crate) empty_overflow: usize,
    /// The array of the next doubling (`2^(b+1)` buckets), being prepared or ready; requested
    /// when `count` reaches `prepare_at`.
    pub(crate) next: Option<NextArray<K, V>>,
    /// Inserting a new key with `count` at or above this requests `next`; `usize::MAX` when no
    /// request is due (growing, already requested, switched off, or the array too small).
    pub(crate) prepare_at: usize,
    /// Whether this table prepares its next array ahead at all, and from which array size.
    pub(crate) prepare: PrepareSettings,
    /// Test builds: doublings that started on a prepared array.
    #[cfg(test)]
    pub(crate) took_prepared: usize,
    pub(crate) marker: PhantomData<(K, V)>,
}

// SAFETY: the table owns its keys and values (like a `Vec<(K, V)>`); the raw pointers are
// private and only dereferenced through `&self`/`&mut self`, so the usual auto-trait rules of
// an owning container apply.
unsafe impl<K: Send, V: Send> Send for RawTable<K, V> {}
// SAFETY: `&RawTable` only hands out `&K`/`&V`, see above.
unsafe impl<K: Sync, V: Sync> Sync for RawTable<K, V> {}

impl<K, V> RawTable<K, V> {
    pub(crate) fn with_b(b: u8, prepare: PrepareSettings) -> Self {
        let mut table = Self {
            buckets: bucket::alloc_array(1usize << b),
            b,
            oldbuckets: ptr::null_mut(),
            old_b: 0,
            phase: Phase::Idle,
            nevacuate: 0,
            evacuated: 0,
            count: 0,
            tombstones: 0,
            noverflow: 0,
            old_noverflow: 0,
            empty_overflow: 0,
            next: None,
            prepare_at: usize::MAX,
            prepare,
            #[cfg(test)]
            took_prepared: 0,
            marker: PhantomData,
        };
        table.refresh_prepare_at();
        table
    }

    /// Recomputes `prepare_at` for the current state: 3/4 of the doubling's trigger count while
    /// idle, switched on, with nothing requested yet and a next array of `prepare.min_bytes` or
    /// more; otherwise never.
    pub(crate) fn refresh_prepare_at(&mut self) {
        let next_bytes = (1usize << (self.b + 1)).saturating_mul(bucket::bucket_size::<K, V>());
        self.prepare_at = if self.prepare.enabled
            && !self.growing()
            && self.next.is_none()
            && next_bytes >= self.prepare.min_bytes
        {
            // `over_load_factor` doubles past 6.5 * 2^B entries.
            LOAD_FACTOR_NUM * ((1usize << self.b) / LOAD_FACTOR_DEN) / PREPARE_AT_DEN
                * PREPARE_AT_NUM
        } else {
            usize::MAX
        };
    }

    /// Asks the helper thread for the array of the next doubling. Asked once per doubling: a
    /// refused request (no helper, a full queue) leaves that doubling to allocate as before.
    #[cold]
    fn request_next_array(&mut self) {
        self.prepare_at = usize::MAX;
        self.next = bucket::prepare_array(1usize << (self.b + 1));
    }

    /// Bytes of the requested next array, 0 when none.
    pub(crate) fn prepared_bytes(&self) -> usize {
        self.next.as_ref().map_or(0, |next| next.bytes())
    }

    /// Gives up a requested next array (its memory goes back) and asks for none until the next
    /// evacuation ends.
    pub(crate) fn release_next_array(&mut self) {
        self.next = None;
        self.prepare_at = usize::MAX;
    }

    #[inline]
    pub(crate) fn mask(&self) -> usize {
        (1usize << self.b) - 1
    }

    #[inline]
    pub(crate) fn old_mask(&self) -> usize {
        (1usize << self.old_b) - 1
    }

    #[inline]
    pub(crate) fn growing(&self) -> bool {
        !self.oldbuckets.is_null()
    }

    /// The current array's bucket `i`.
    #[inline]
    pub(crate) fn bucket(&self, i: usize) -> *mut Bucket<K, V> {
        debug_assert!(i <= self.mask());
        // SAFETY: `i < 2^b`, the array's length.
        unsafe { self.buckets.add(i) }
    }

    /// The old array's bucket `i`.
    #[inline]
    pub(crate) fn old_bucket(&self, i: usize) -> *mut Bucket<K, V> {
        debug_assert!(self.growing() && i <= self.old_mask());
        // SAFETY: `i < 2^old_b`, the old array's length, while growing.
        unsafe { self.oldbuckets.add(i) }
    }

    /// The head of the chain that holds `hash`'s key right now: the old bucket while it is not
    /// evacuated yet, else the current one (Go's `mapaccess`).
    #[inline]
    pub(crate) fn read_bucket(&self, hash: u64) -> *mut Bucket<K, V> {
        if self.growing() {
            let old = self.old_bucket(hash as usize & self.old_mask());
            // SAFETY: `old` points into the live old array.
            if unsafe { !(*old).evacuated() } {
                return old;
            }
        }
        self.bucket(hash as usize & self.mask())
    }

    /// Go's `mapaccess`: finds the slot of the key with this hash for which `eq` holds. Never
    /// advances an evacuation.
    #[inline]
    pub(crate) fn find(&self, hash: u64, eq: impl FnMut(&K) -> bool) -> Option<Slot<K, V>> {
        // SAFETY: `read_bucket` returns the live head of `hash`'s chain.
        unsafe { self.find_from(self.read_bucket(hash), hash, eq) }
    }

    /// `find` in the chain at `head`, for a caller that needs the head as well (`remove`).
    ///
    /// # Safety
    /// `head` is what `read_bucket(hash)` returns in the table's current state.
    #[inline]
    pub(crate) unsafe fn find_from(
        &self,
        head: *mut Bucket<K, V>,
        hash: u64,
        mut eq: impl FnMut(&K) -> bool,
    ) -> Option<Slot<K, V>> {
        let top = tophash(hash);
        let mut b = head;
        let mut in_overflow = false;
        loop {
            // SAFETY: `b` is a bucket of a live array or chain; a matching tophash
            // (>= MIN_TOP_HASH) marks an initialised key.
            unsafe {
                let group = (*b).group();
                for i in group.match_byte(top) {
                    if eq((*b).keys[i].assume_init_ref()) {
                        return Some(Slot {
                            bucket: NonNull::new_unchecked(b),
                            index: i,
                            in_overflow,
                        });
                    }
                }
                if group.has_empty_rest() || (*b).overflow.is_null() {
                    return None;
                }
                b = (*b).overflow;
            }
            in_overflow = true;
        }
    }

    /// Go's `mapassign` up to the write: advances the evacuation (`growWork`), looks the key up,
    /// starts a grow when the table is overloaded, and reserves the first empty slot on the
    /// key's path (appending an overflow bucket when there is none). `rehash` recomputes a
    /// key's hash for evacuation.
    pub(crate) fn prepare_insert(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(&K) -> bool,
        rehash: &impl Fn(&K) -> u64,
    ) -> InsertSlot<K, V> {
        loop {
            if self.growing() {
                // growWork first waits on the key's old bucket; start loading the key's new
                // bucket meanwhile, so the two cache misses overlap.
                bucket::prefetch(self.bucket(hash as usize & self.mask()));
                self.grow_work(hash, rehash);
            }
            let top = tophash(hash);
            let mut b = self.bucket(hash as usize & self.mask());
            let mut in_overflow = false;
            let mut vacant: Option<Slot<K, V>> = None;
            let last = loop {
                // SAFETY: as in `find`; growWork evacuated the old bucket of `hash`, so the
                // current bucket holds the key if anything does.
                unsafe {
                    let group = (*b).group();
                    for i in group.match_byte(top) {
                        if eq((*b).keys[i].assume_init_ref()) {
                            let bucket = NonNull::new_unchecked(b);
                            return InsertSlot::Occupied(Slot { bucket, index: i, in_overflow });
                        }
                    }
                    if vacant.is_none()
                        && let Some(i) = group.match_empty().lowest()
                    {
                        let bucket = NonNull::new_unchecked(b);
                        vacant = Some(Slot { bucket, index: i, in_overflow });
                    }
                    if group.has_empty_rest() || (*b).overflow.is_null() {
                        break b;
                    }
                    b = (*b).overflow;
                }
                in_overflow = true;
            };
            // Did not find the key. Grow if that is due and not already under way, then retry.
            if !self.growing()
                && (over_load_factor(self.count + 1, self.b)
                    || too_many_overflow_buckets(self.noverflow, self.b))
            {
                self.hash_grow();
                continue;
            }
            if self.count >= self.prepare_at {
                self.request_next_array();
            }
            if let Some(slot) = vacant {
                return InsertSlot::Vacant(slot);
            }
            // The chain is full: append an overflow bucket to its last bucket.
            let overflow = self.new_overflow();
            // SAFETY: `last` is the chain's last bucket (full, so no EMPTY_REST) and `overflow`
            // is a fresh empty bucket that it now owns.
            unsafe {
                debug_assert!((*last).overflow.is_null());
                (*last).overflow = overflow;
                let bucket = NonNull::new_unchecked(overflow);
                return InsertSlot::Vacant(Slot { bucket, index: 0, in_overflow: true });
            }
        }
    }

    /// A fresh, empty overflow bucket for the current array (counted).
    pub(crate) fn new_overflow(&mut self) -> *mut Bucket<K, V> {
        self.noverflow += 1;
        self.empty_overflow += 1;
        bucket::alloc_overflow()
    }

    /// Writes a new entry into an empty slot and keeps the counters exact.
    ///
    /// # Safety
    /// `slot` is an empty slot (`EMPTY_REST`/`EMPTY_ONE`) of a live bucket of this table,
    /// reserved by `prepare_insert` or an evacuation cursor with no write since, and `top` is
    /// the tophash of the key's hash.
    #[inline]
    pub(crate) unsafe fn write_slot(&mut self, slot: Slot<K, V>, top: u8, key: K, value: V) {
        // SAFETY: `slot.bucket` is live and the slot is empty (caller's contract).
        unsafe {
            let b = slot.bucket.as_ptr();
            let prev = (*b).tophash[slot.index];
            debug_assert!(is_empty(prev));
            if slot.in_overflow && (*b).group().all_empty() {
                self.empty_overflow -= 1;
            }
            if prev == EMPTY_ONE {
                self.tombstones -= 1;
            }
            (*b).keys[slot.index].write(key);
            (*b).values[slot.index].write(value);
            (*b).tophash[slot.index] = top;
        }
        self.count += 1;
    }

    /// `write_slot` for an evacuation into a never-written chain: the slot and every later
    /// one are `EMPTY_REST`, so nothing needs reading (an overflow bucket was empty exactly when
    /// this is its slot 0).
    ///
    /// # Safety
    /// As `write_slot`, and the chain from this slot on was never written since allocation.
    #[inline]
    pub(crate) unsafe fn write_fresh_slot(&mut self, slot: Slot<K, V>, top: u8, key: K, value: V) {
        // SAFETY: `slot.bucket` is live and the slot never written (caller's contract).
        unsafe {
            let b = slot.bucket.as_ptr();
            debug_assert_eq!((*b).tophash[slot.index], EMPTY_REST);
            if slot.in_overflow && slot.index == 0 {
                self.empty_overflow -= 1;
            }
            (*b).keys[slot.index].write(key);
            (*b).values[slot.index].write(value);
            (*b).tophash[slot.index] = top;
        }
        self.count += 1;
    }

    /// Go's `mapdelete` after the lookup: moves the entry out, marks the slot `EMPTY_ONE`, and
    /// when that slot ends a run of empties turns the run into `EMPTY_REST`, walking back across
    /// the chain from `head`.
    ///
    /// # Safety
    /// `slot` is a full slot in the chain starting at `head`, a live bucket of this table.
    pub(crate) unsafe fn remove_slot(
        &mut self,
        head: *mut Bucket<K, V>,
        slot: Slot<K, V>,
    ) -> (K, V) {
        // SAFETY: the slot is full (caller's contract): its key and value are initialised and
        // owned by the table; the tophash is changed before anything else can observe it.
        let (key, value) = unsafe {
            let b = slot.bucket.as_ptr();
            let entry = (
                (*b).keys[slot.index].assume_init_read(),
                (*b).values[slot.index].assume_init_read(),
            );
            (*b).tophash[slot.index] = EMPTY_ONE;
            if slot.in_overflow && (*b).group().all_empty() {
                self.empty_overflow += 1;
            }
            entry
        };
        self.count -= 1;
        self.tombstones += 1;
        // SAFETY: `head` and `slot.bucket` are in the same live chain.
        unsafe { self.settle_empty_rest(head, slot.bucket.as_ptr(), slot.index) };
        (key, value)
    }

    /// If slot `i` of `b` (just emptied) is followed only by empties, turn it and the
    /// `EMPTY_ONE` run before it into `EMPTY_REST`, across overflow buckets back to `head`.
    ///
    /// # Safety
    /// `b` is in the live chain starting at `head`, and slot `i` of `b` is `EMPTY_ONE`.
    unsafe fn settle_empty_rest(
        &mut self,
        head: *mut Bucket<K, V>,
        mut b: *mut Bucket<K, V>,
        mut i: usize,
    ) {
        // SAFETY: every bucket visited is in the live chain of `head`.
        unsafe {
            let next_is_rest = if i == BUCKET_CNT - 1 {
                let next = (*b).overflow;
                next.is_null() || (*next).tophash[0] == EMPTY_REST
            } else {
                (*b).tophash[i + 1] == EMPTY_REST
            };
            if !next_is_rest {
                return;
            }
            loop {
                debug_assert_eq!((*b).tophash[i], EMPTY_ONE);
                (*b).tophash[i] = EMPTY_REST;
                self.tombstones -= 1;
                if i == 0 {
                    if b == head {
                        break;
                    }
                    // Find the previous bucket and continue at its last slot.
                    let current = b;
                    b = head;
                    while (*b).overflow != current {
                        b = (*b).overflow;
                    }
                    i = BUCKET_CNT - 1;
                } else {
                    i -= 1;
                }
                if (*b).tophash[i] != EMPTY_ONE {
                    break;
                }
            }
        }
    }

    /// Go's `hashGrow`: double, or grow at the same size when the trigger was overflow buckets.
    fn hash_grow(&mut self) {
        if over_load_factor(self.count + 1, self.b) {
            self.start_evacuation(self.b + 1, Phase::Growing);
        } else {
            self.start_evacuation(self.b, Phase::Growing);
        }
    }

    /// Moves the current array to `oldbuckets` and allocates a new one of `2^new_b` buckets;
    /// the entries move over incrementally (growWork, `maintenance_step`).
    pub(crate) fn start_evacuation(&mut self, new_b: u8, phase: Phase) {
        debug_assert!(!self.growing() && phase != Phase::Idle);
        // A doubling takes the array prepared for it, if it is ready; any other regrow gives a
        // requested array up (dropping the handle frees it).
        let prepared = match self.next.take() {
            Some(next) if new_b == self.b + 1 => next.take(),
            _ => None,
        };
        #[cfg(test)]
        {
            self.took_prepared += usize::from(prepared.is_some());
        }
        let new = prepared.unwrap_or_else(|| bucket::alloc_array::<K, V>(1usize << new_b));
        self.prepare_at = usize::MAX;
        self.oldbuckets = self.buckets;
        self.old_b = self.b;
        self.buckets = new;
        self.b = new_b;
        self.phase = phase;
        self.nevacuate = 0;
        self.evacuated = 0;
        self.old_noverflow = self.noverflow;
        self.noverflow = 0;
    }

    /// Drops every entry and frees every overflow bucket and the old array; the current array
    /// is zeroed (all `EMPTY_REST`) and kept.
    ///
    /// If a key's or value's `Drop` panics, the table is still left empty and consistent (as
    /// hashbrown's `clear` leaves it): the entries not dropped yet, and the overflow buckets
    /// that hold them, are leaked, never dropped twice.
    pub(crate) fn clear(&mut self) {
        /// Empties the table when `clear` ends, also when it unwinds out of an entry's `Drop`.
        struct ClearGuard<'a, K, V>(&'a mut RawTable<K, V>);
        impl<K, V> Drop for ClearGuard<'_, K, V> {
            fn drop(&mut self) {
                let t = &mut *self.0;
                // Only on unwinding is there an old array left: `drop_all_chains` frees it when
                // it returns.
                t.free_old_array();
                t.next = None;
                // SAFETY: zero bytes are a valid empty bucket. Chains not consumed (only after
                // a panicking drop) lose their heads' entries and overflow buckets: leaked.
                unsafe { ptr::write_bytes(t.buckets, 0, 1usize << t.b) };
                (t.count, t.tombstones, t.noverflow, t.empty_overflow) = (0, 0, 0, 0);
                t.refresh_prepare_at();
            }
        }
        let guard = ClearGuard(self);
        guard.0.drop_all_chains();
        // `guard` empties the table here, or on the way out of a panicking drop.
    }

    /// Drops all entries, frees all overflow buckets and the old array (leaves the current
    /// array's heads with stale tophash bytes; callers zero or free it). An array with no
    /// overflow bucket whose entries have no drop glue is not walked at all: dropping a map of
    /// plain data then costs the array frees only, as hashbrown's, instead of a cache miss per
    /// bucket.
    fn drop_all_chains(&mut self) {
        let walk =
            |overflow_buckets: usize| overflow_buckets != 0 || bucket::entries_need_drop::<K, V>();
        if self.growing() {
            if walk(self.old_noverflow) {
                for i in 0..=self.old_mask() {
                    // SAFETY: each old head is visited once; full slots own their entries.
                    unsafe { bucket::drop_chain(self.old_bucket(i)) };
                }
            }
            self.free_old_array();
        }
        if walk(self.noverflow) {
            for i in 0..=self.mask() {
                // SAFETY: each current head is visited once; full slots own their entries.
                unsafe { bucket::drop_chain(self.bucket(i)) };
            }
        }
    }

    /// Frees the old array, if any, and ends the evacuation. What its chains still own
    /// (nothing, after `drop_all_chains` consumed them; entries and overflow buckets, when a
    /// drop panicked half-way) is leaked, never dropped.
    fn free_old_array(&mut self) {
        if !self.growing() {
            return;
        }
        // SAFETY: the old array is live while growing, freed once here and the pointer cleared;
        // leaking what its slots own is safe.
        unsafe { bucket::free_array(self.oldbuckets, 1usize << self.old_b) };
        self.end_evacuation();
    }

    /// Back to idle once the old array is gone (freed, or handed to the helper thread).
    pub(crate) fn end_evacuation(&mut self) {
        self.oldbuckets = ptr::null_mut();
        self.phase = Phase::Idle;
        self.old_noverflow = 0;
        self.nevacuate = 0;
        self.evacuated = 0;
    }

    /// Whether all 8 slots of an overflow bucket are empty (used by the invariant checks).
    pub(crate) fn is_empty_bucket(b: &Bucket<K, V>) -> bool {
        Group::all_empty(b.group())
    }
}

impl<K, V> Drop for RawTable<K, V> {
    fn drop(&mut self) {
        self.drop_all_chains();
        // SAFETY: every chain was consumed; the array is freed once and never used again.
        unsafe { bucket::free_array(self.buckets, 1usize << self.b) };
    }
}
