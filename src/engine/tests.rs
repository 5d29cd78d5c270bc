//! Unit tests of the tophash transitions, growth triggers, evacuation marks, phases and drops.
//! The model-based property tests are in `proptests.rs`.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use super::tophash::{
    EMPTY_ONE, EMPTY_REST, EVACUATED_EMPTY, EVACUATED_X, EVACUATED_Y, MIN_TOP_HASH,
};
use super::*;

/// Hashes a `u64` key to `key / group_size`: keys of one group collide completely (same
/// bucket, same tophash), so tests can build overflow chains on purpose.
#[derive(Clone, Default)]
pub(super) struct GroupHasher {
    pub(super) group_size: u64,
}

pub(super) struct GroupHasherState(u64, u64);

impl Hasher for GroupHasherState {
    fn finish(&self) -> u64 {
        self.0 / self.1.max(1)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

impl BuildHasher for GroupHasher {
    type Hasher = GroupHasherState;
    fn build_hasher(&self) -> GroupHasherState {
        GroupHasherState(0, self.group_size)
    }
}

fn colliding(capacity: usize) -> Map<u64, u64, GroupHasher> {
    Map::with_capacity_and_hasher(capacity, GroupHasher { group_size: 1_000_000 })
}

/// The tophash bytes of the chain that holds `key`'s hash, bucket by bucket.
fn chain_of<V, S: BuildHasher>(map: &Map<u64, V, S>, key: u64) -> Vec<[u8; 8]> {
    let mut out = Vec::new();
    let mut b = map.table.read_bucket(map.hash(&key));
    while !b.is_null() {
        // SAFETY: test-only walk of a live chain.
        unsafe {
            out.push((*b).tophash);
            b = (*b).overflow;
        }
    }
    out
}

fn check<K: Hash + Eq, V, S: BuildHasher>(map: &Map<K, V, S>) {
    if let Err(e) = map.check_invariants() {
        panic!("invariant broken: {e}");
    }
}

#[test]
fn delete_turns_trailing_emptyone_into_emptyrest_across_overflow_buckets() {
    let mut m = colliding(1000);
    for k in 0..20 {
        m.insert(k, k);
    }
    let t = tophash::tophash(m.hash(&0u64));
    assert_eq!(chain_of(&m, 0), vec![[t; 8], [t; 8], [t, t, t, t, 0, 0, 0, 0]]);
    assert_eq!(m.stats().overflow_buckets, 2);

    m.remove(&10);
    assert_eq!(chain_of(&m, 0)[1], [t, t, EMPTY_ONE, t, t, t, t, t]);
    assert_eq!(m.stats().tombstones, 1);

    for k in 16..19 {
        m.remove(&k);
    }
    assert_eq!(chain_of(&m, 0)[2], [EMPTY_ONE, EMPTY_ONE, EMPTY_ONE, t, 0, 0, 0, 0]);
    assert_eq!(m.stats().tombstones, 4);

    // Removing the last full slot of the chain walks back over the whole emptyOne run.
    m.remove(&19);
    assert_eq!(chain_of(&m, 0)[2], [EMPTY_REST; 8]);
    assert_eq!(m.stats().tombstones, 1);
    assert_eq!(m.stats().empty_overflow_buckets, 1);

    // Removing overflow 1's keys from its end: each removal sees emptyRest after it (the
    // last one through overflow 2's first slot), and the last walk also swallows key 10's
    // emptyOne, stopping at key 9.
    for k in (11..16).rev() {
        m.remove(&k);
    }
    assert_eq!(chain_of(&m, 0)[1], [t, t, 0, 0, 0, 0, 0, 0]);
    assert_eq!(m.stats().tombstones, 0);
    check(&m);

    for k in [8, 9] {
        m.remove(&k);
    }
    // The walk-back crosses from overflow 1 into the head bucket's slot 7 (full): stops there.
    assert_eq!(chain_of(&m, 0), vec![[t; 8], [EMPTY_REST; 8], [EMPTY_REST; 8]]);
    assert_eq!(m.stats().empty_overflow_buckets, 2);
    assert_eq!(m.len(), 8);
    check(&m);
}

#[test]
fn delete_in_the_middle_leaves_emptyone_and_insert_reuses_it_first() {
    let mut m = colliding(1000);
    for k in 0..12 {
        m.insert(k, k);
    }
    let t = tophash::tophash(m.hash(&0u64));
    m.remove(&3);
    m.remove(&5);
    assert_eq!(chain_of(&m, 0)[0], [t, t, t, EMPTY_ONE, t, EMPTY_ONE, t, t]);
    assert_eq!(m.stats().tombstones, 2);
    // A missing key is a no-op.
    assert_eq!(m.remove(&99), None);
    assert_eq!(m.stats().tombstones, 2);
    m.insert(100, 100);
    assert_eq!(chain_of(&m, 0)[0], [t, t, t, t, t, EMPTY_ONE, t, t]);
    assert_eq!(m.stats().tombstones, 1);
    assert_eq!(m.get(&100), Some(&100));
    check(&m);
}

#[test]
fn lookup_stops_at_emptyrest_and_finds_keys_past_emptyone() {
    let mut m = colliding(1000);
    for k in 0..10 {
        m.insert(k, k * 10);
    }
    m.remove(&2);
    assert_eq!(m.get(&9), Some(&90));
    assert_eq!(m.get(&2), None);
    assert!(!m.contains_key(&50));
    *m.get_mut(&9).unwrap() += 1;
    assert_eq!(m.get_key_value(&9), Some((&9, &91)));
}

#[test]
fn lookup_does_not_read_past_an_emptyrest_slot() {
    // One chain: a full head bucket (keys 0..8) and an overflow bucket (keys 8 and 9). Marking
    // the head's last slot emptyRest (a state only this test makes: the entry behind it is
    // left in place) says "nothing after this slot, in this bucket or its overflow"; a lookup
    // that honours it never reaches keys 8 and 9, one that walks on finds them.
    let mut m = colliding(1000);
    for k in 0..10 {
        m.insert(k, k);
    }
    assert_eq!(chain_of(&m, 0).len(), 2);
    let head = m.table.read_bucket(m.hash(&0));
    // SAFETY: test-only write of a tophash byte of a live bucket; u64 keys and values need no
    // drop, so the orphaned slot leaks nothing.
    unsafe { (*head).tophash[7] = EMPTY_REST };
    assert_eq!((m.get(&8), m.get(&9), m.get(&7)), (None, None, None));
    assert_eq!(m.get(&6), Some(&6));
}

#[test]
fn growth_starts_exactly_past_6_5_entries_per_bucket() {
    let mut m: Map<u64, u64> = Map::new();
    for k in 0..8 {
        m.insert(k, k);
    }
    assert_eq!((m.phase(), m.stats().b), (Phase::Idle, 0));
    m.insert(8, 8);
    assert_eq!(
        (m.phase(), m.stats().b),
        (Phase::Idle, 1),
        "B=0 grows at the 9th key and finishes at once"
    );

    let mut m: Map<u64, u64> = Map::with_capacity(104);
    assert_eq!(m.stats().b, 4);
    for k in 0..104 {
        m.insert(k, k);
    }
    assert_eq!((m.phase(), m.stats().b, m.stats().buckets), (Phase::Idle, 4, 16));
    m.insert(104, 104);
    let s = m.stats();
    assert_eq!((s.phase, s.b, s.buckets), (Phase::Growing, 5, 48));
    assert!(s.evacuated >= 1 && s.evacuated <= 2, "growWork evacuated {}", s.evacuated);
    check(&m);
    assert_eq!(m.maintenance_step(1000), 16 - s.evacuated);
    assert_eq!((m.phase(), m.stats().buckets, m.stats().to_evacuate), (Phase::Idle, 32, 0));
    check(&m);
}

#[test]
fn load_factor_predicates_match_go() {
    use table::{b_for, over_load_factor, too_many_overflow_buckets};
    assert!(!over_load_factor(8, 0) && over_load_factor(9, 0));
    assert!(!over_load_factor(13, 1) && over_load_factor(14, 1));
    assert!(!over_load_factor(6656, 10) && over_load_factor(6657, 10));
    assert!(!too_many_overflow_buckets(15, 4) && too_many_overflow_buckets(16, 4));
    // Exact count, so no cap at B = 15 (see `too_many_overflow_buckets`).
    assert!(!too_many_overflow_buckets(1 << 15, 20));
    assert!(
        !too_many_overflow_buckets((1 << 20) - 1, 20) && too_many_overflow_buckets(1 << 20, 20)
    );
    assert_eq!((b_for(0), b_for(8), b_for(9), b_for(104), b_for(105)), (0, 0, 1, 4, 5));
}

#[test]
fn too_many_overflow_buckets_starts_a_same_size_grow() {
    // Groups of colliding keys: fill one chain, empty it (its overflow buckets stay), then
    // fill another bucket's chain until the overflow count reaches 2^B.
    let mut m: Map<u64, u64, GroupHasher> =
        Map::with_capacity_and_hasher(26, GroupHasher { group_size: 1000 });
    assert_eq!(m.stats().b, 2);
    let bucket_of = |m: &Map<u64, u64, GroupHasher>, k: u64| m.hash(&k) as usize & m.table.mask();
    let first = 0u64;
    let full_bucket = bucket_of(&m, first);
    for k in first..first + 26 {
        m.insert(k, k);
    }
    assert_eq!(m.stats().overflow_buckets, 3);
    for k in first..first + 26 {
        m.remove(&k);
    }
    let s = m.stats();
    assert_eq!((s.len, s.tombstones, s.overflow_buckets, s.empty_overflow_buckets), (0, 0, 3, 3));
    // Another group, hashing (with the seed drawn when the map became empty) elsewhere.
    let second = (1..100u64).map(|g| g * 1000).find(|&k| bucket_of(&m, k) != full_bucket).unwrap();
    for k in second..second + 9 {
        m.insert(k, k);
    }
    // 8 in the head + 1 in a 4th overflow bucket: noverflow = 4 = 2^B, no grow yet (the check
    // runs before the append).
    assert_eq!((m.stats().overflow_buckets, m.phase()), (4, Phase::Idle));
    m.insert(second + 9, 0);
    let s = m.stats();
    assert_eq!((s.phase, s.b), (Phase::Growing, 2), "same-size grow");
    m.maintenance_step(usize::MAX);
    let s = m.stats();
    assert_eq!(
        (s.phase, s.len, s.overflow_buckets, s.empty_overflow_buckets),
        (Phase::Idle, 10, 1, 0)
    );
    check(&m);
}

/// A map just past the start of its doubling from B = 4 to 5, with tombstones.
fn map_starting_to_double() -> Map<u64, u64> {
    let mut m: Map<u64, u64> = Map::with_capacity(104);
    for k in 0..104 {
        m.insert(k, k);
    }
    for k in 0..20 {
        m.remove(&k);
    }
    m.insert(1000, 0);
    while m.phase() == Phase::Idle {
        let k = 2000 + m.len() as u64;
        m.insert(k, k);
    }
    assert_eq!((m.stats().b, m.table.old_b), (5, 4));
    m
}

/// The mark Go's `evacuate` must leave in each slot of old bucket `i`, if that bucket (without
/// a chain, still to evacuate) holds all three kinds of slot: an entry for X, one for Y and an
/// empty slot.
fn marks_due_in_mixed_old_bucket(m: &Map<u64, u64>, i: usize) -> Option<Vec<u8>> {
    let old_len = 1usize << m.table.old_b;
    let old = m.table.old_bucket(i);
    // SAFETY: test-only reads of a live old bucket; a full tophash marks an initialised key.
    let due: Vec<u8> = unsafe {
        if (*old).evacuated() || !(*old).overflow.is_null() {
            return None;
        }
        (0..8)
            .map(|s| match (*old).tophash[s] {
                top if top < MIN_TOP_HASH => EVACUATED_EMPTY,
                _ if m.hash((*old).keys[s].assume_init_ref()) as usize & old_len != 0 => {
                    EVACUATED_Y
                }
                _ => EVACUATED_X,
            })
            .collect()
    };
    [EVACUATED_X, EVACUATED_Y, EVACUATED_EMPTY].iter().all(|mark| due.contains(mark)).then_some(due)
}

#[test]
fn evacuation_marks_each_slot_x_y_or_empty() {
    // Seeds are random, so draw maps until one has an old bucket with all three kinds of slot.
    let (mut m, i, expected) = (0..1000)
        .find_map(|_| {
            let m = map_starting_to_double();
            let old_len = 1usize << m.table.old_b;
            let (i, due) =
                (0..old_len).find_map(|i| marks_due_in_mixed_old_bucket(&m, i).map(|d| (i, d)))?;
            Some((m, i, due))
        })
        .expect("some map has an old bucket with X, Y and empty slots still to evacuate");
    let old_len = 1usize << m.table.old_b;
    let old = m.table.old_bucket(i);
    let (hb, seed) = (m.hash_builder.clone(), m.seed);
    m.table.evacuate(i, &|k: &u64| make_hash(&hb, seed, k));
    assert!(m.table.growing(), "other old buckets are left, so the old array is still live");
    // SAFETY: test-only read of the old bucket after its evacuation (the old array is live
    // while the map is still growing, checked above).
    let marks = unsafe { (*old).tophash.to_vec() };
    assert_eq!(marks, expected);
    let x_count = expected.iter().filter(|&&t| t == EVACUATED_X).count();
    let y_count = expected.iter().filter(|&&t| t == EVACUATED_Y).count();
    // SAFETY: test-only reads of the two live destination buckets.
    let (x_full, y_full) = unsafe {
        (
            (*m.table.bucket(i)).group().match_full().count(),
            (*m.table.bucket(i + old_len)).group().match_full().count(),
        )
    };
    assert_eq!((x_full, y_full), (x_count, y_count));
    check(&m);
}

#[test]
fn compact_purges_tombstones_and_empty_overflow_buckets() {
    let mut m = colliding(1000);
    for k in 0..40 {
        m.insert(k, k);
    }
    for k in (0..40).step_by(2) {
        m.remove(&k);
    }
    let s = m.stats();
    assert_eq!((s.len, s.tombstones, s.overflow_buckets), (20, 20, 4));
    assert!(m.compact());
    assert!(!m.compact(), "a second compact while one runs starts nothing");
    assert_eq!(m.phase(), Phase::Compacting);
    for k in (1..40).step_by(2) {
        assert_eq!(m.get(&k), Some(&k), "reads stay correct mid-compaction");
    }
    m.maintenance_step(usize::MAX);
    let s = m.stats();
    assert_eq!(
        (
            s.phase,
            s.len,
            s.tombstones,
            s.overflow_buckets,
            s.empty_overflow_buckets,
            s.tombstone_ratio
        ),
        (Phase::Idle, 20, 0, 2, 0, 0.0)
    );
    check(&m);
}

#[test]
fn shrink_moves_into_the_smallest_array_and_frees_the_old_one() {
    let mut m: Map<u64, String> = Map::new();
    for k in 0..10_000 {
        m.insert(k, k.to_string());
    }
    let big = m.stats();
    assert_eq!(big.b, 11);
    for k in 100..10_000 {
        m.remove(&k);
    }
    assert!(m.shrink_to_fit());
    assert_eq!(m.phase(), Phase::Shrinking);
    assert_eq!(m.stats().b, 4);
    let mut steps = 0;
    while m.phase() != Phase::Idle {
        // Reads, writes and iteration stay correct throughout.
        assert_eq!(m.get(&7).map(String::as_str), Some("7"));
        assert_eq!(m.iter().count(), m.len());
        m.insert(20_000 + steps, String::new());
        m.remove(&(20_000 + steps));
        m.maintenance_step(100);
        check(&m);
        steps += 1;
    }
    let s = m.stats();
    assert_eq!((s.b, s.buckets, s.len), (4, 16, 100));
    assert!(
        s.bytes_allocated * 50 < big.bytes_allocated,
        "{} vs {}",
        s.bytes_allocated,
        big.bytes_allocated
    );
    assert!(!m.shrink_to_fit(), "already the smallest array");
    assert!(m.rebuild(), "rebuild falls back to a same-size compaction");
    assert_eq!(m.phase(), Phase::Compacting);
}

#[test]
fn clear_keeps_the_array_reseeds_and_release_frees_it() {
    let mut m: Map<u64, u64> = (0..1000).map(|k| (k, k)).collect();
    let b = m.stats().b;
    let seed = m.seed;
    m.clear();
    let s = m.stats();
    assert_eq!((s.len, s.tombstones, s.b, s.overflow_buckets, s.phase), (0, 0, b, 0, Phase::Idle));
    assert_ne!(m.seed, seed);
    assert_eq!(m.get(&5), None);
    m.insert(5, 6);
    assert_eq!(m.get(&5), Some(&6));
    m.clear_and_release();
    assert_eq!((m.stats().b, m.stats().buckets, m.len()), (0, 1, 0));
    check(&m);
}

#[test]
fn iteration_returns_every_entry_once_in_every_phase() {
    let n = if cfg!(miri) { 120 } else { 5000 };
    for phase in [Phase::Growing, Phase::Compacting, Phase::Shrinking] {
        let mut m: Map<u64, u64> = Map::new();
        for k in 0..n {
            m.insert(k, k);
        }
        match phase {
            Phase::Growing => {
                let mut k = n;
                while m.phase() != Phase::Growing {
                    m.insert(k, k);
                    k += 1;
                }
            }
            Phase::Compacting => assert!(m.compact()),
            _ => {
                for k in n / 10..n {
                    m.remove(&k);
                }
                assert!(m.shrink_to_fit());
            }
        }
        m.maintenance_step(m.stats().to_evacuate / 3);
        assert_eq!(m.phase(), phase);
        let seen: Vec<u64> = m.iter().map(|(k, _)| *k).collect();
        let unique: HashSet<u64> = seen.iter().copied().collect();
        assert_eq!((seen.len(), unique.len()), (m.len(), m.len()), "{phase:?}");
        assert!(unique.iter().all(|k| m.get(k) == Some(k)));
        assert_internal_iteration_matches_next(&m);
    }
    // And when idle (the walk of the current array only).
    let m: Map<u64, u64> = (0..n * 3 / 5).map(|k| (k, k)).collect();
    assert_eq!(m.phase(), Phase::Idle);
    assert_internal_iteration_matches_next(&m);
}

#[test]
fn iteration_starts_at_a_random_bucket_and_slot() {
    // As Go's: code must not come to depend on an order. 1000 keys fill 256 buckets; 20
    // iterations that all start at the same key would take a start drawn from a few buckets.
    let m: Map<u64, u64> = (0..1000).map(|k| (k, k)).collect();
    let firsts: HashSet<u64> = (0..20).map(|_| *m.iter().next().unwrap().0).collect();
    assert!(firsts.len() >= 5, "first keys of 20 iterations: {firsts:?}");
    // A random start within the bucket too: a map of one bucket starts at different slots.
    let one: Map<u64, u64> = (0..8).map(|k| (k, k)).collect();
    assert_eq!(one.stats().buckets, 1);
    let firsts: HashSet<u64> = (0..40).map(|_| *one.iter().next().unwrap().0).collect();
    assert!(firsts.len() >= 3, "first keys of 40 iterations over one bucket: {firsts:?}");
}

/// `fold` (behind `for_each`, `sum`, `count`, ...) walks the same entries as `next`, also when
/// it takes over an iterator that `next` has already advanced into the middle of a chain.
fn assert_internal_iteration_matches_next<S: BuildHasher>(m: &Map<u64, u64, S>) {
    let expected: HashSet<u64> = m.iter().map(|(k, _)| *k).collect();
    assert_eq!(expected.len(), m.len());
    for already_taken in [0, 1, 7, m.len() / 2, m.len()] {
        let mut it = m.iter();
        let mut seen: Vec<u64> = it.by_ref().take(already_taken).map(|(k, _)| *k).collect();
        assert_eq!(it.len(), m.len() - already_taken);
        it.for_each(|(k, v)| {
            assert_eq!(k, v);
            seen.push(*k);
        });
        let unique: HashSet<u64> = seen.iter().copied().collect();
        assert_eq!((seen.len(), &unique), (m.len(), &expected), "after {already_taken} by next");
    }
    assert_eq!(m.iter().map(|(_, v)| *v).sum::<u64>(), expected.iter().sum::<u64>());
}

#[test]
fn retain_removes_during_iteration_and_counts_tombstones() {
    let mut m: Map<u64, u64> = (0..1000).map(|k| (k, k)).collect();
    let mut visited = 0;
    m.retain(|k, v| {
        visited += 1;
        *v += 1;
        k % 3 == 0
    });
    assert_eq!((visited, m.len()), (1000, 334));
    assert!(m.iter().all(|(k, v)| k % 3 == 0 && *v == k + 1));
    check(&m);
}

#[test]
fn sample_returns_live_entries_in_every_phase() {
    let mut m: Map<u64, u64> = (0..2000).map(|k| (k, k)).collect();
    assert_eq!(Map::<u64, u64>::new().sample(7), None);
    for k in 10..2000 {
        m.remove(&k);
    }
    assert!(m.shrink_to_fit());
    let mut seen = HashSet::new();
    for seed in 0..500u64 {
        let (k, v) = m.sample(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).expect("non-empty");
        assert_eq!(k, v);
        assert!(*k < 10);
        seen.insert(*k);
    }
    assert!(seen.len() >= 5, "sample should spread over the keys, saw {seen:?}");
}

/// Within a bucket every full slot is equally likely: a first-full-slot-after-a-random-start
/// rule would return the slot that follows a run of empty ones far more often (a key behind a
/// neighbour came back 1 time in 8, which made volatile-ttl eviction miss its only candidate).
#[test]
fn sample_picks_every_full_slot_of_a_bucket_equally() {
    let mut m: Map<u64, u64> = Map::new();
    for k in 0..3 {
        m.insert(k, k);
    }
    assert_eq!(m.stats().buckets, 1, "one bucket, so the seed only picks the slot");
    let mut counts = [0usize; 3];
    for i in 0..24u64 {
        let (k, _) = m.sample(i << 40).expect("non-empty");
        counts[*k as usize] += 1;
    }
    assert_eq!(counts, [8, 8, 8]);
}

/// In a sparse map every key comes back about equally often: an empty bucket draws another
/// random bucket. Walking on to the next index instead returns each key in proportion to the run
/// of empty buckets before it (8 keys in 2048 buckets: the least likely key then comes back
/// below 350 times in 8000 in about 95% of seeds).
#[test]
fn sample_in_a_sparse_map_returns_every_key_about_equally() {
    let mut m: Map<u64, u64> = Map::with_capacity(13_000);
    for k in 0..8 {
        m.insert(k, k);
    }
    assert_eq!(m.stats().b, 11, "8 keys in 2048 buckets");
    let mut counts = [0usize; 8];
    let mut seed = 1u64;
    for _ in 0..8000 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let (k, _) = m.sample(seed).expect("non-empty");
        counts[*k as usize] += 1;
    }
    // Uniform over the non-empty buckets, then over a bucket's keys: 1000 each when the 8 keys
    // sit in 8 buckets, about 444 for a key sharing its bucket with two others.
    assert!(counts.iter().all(|&c| c >= 350), "counts {counts:?}");
}

#[test]
fn get_or_insert_with_borrowed_builds_the_key_only_when_absent() {
    let mut m: Map<String, u64> = Map::new();
    let mut built = 0;
    for round in 0..3u64 {
        for k in 0..500u64 {
            let (v, inserted) = m.get_or_insert_with_borrowed(k.to_string().as_str(), || {
                built += 1;
                (k.to_string(), 0)
            });
            assert_eq!(inserted, round == 0);
            *v += 1;
        }
    }
    assert_eq!(built, 500, "a present key builds nothing");
    assert_eq!(m.len(), 500);
    assert!(m.iter().all(|(_, v)| *v == 3));
    check(&m);
}

/// A value that counts its drops.
#[derive(Debug)]
struct Counted(Rc<Cell<usize>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let drops = Rc::new(Cell::new(0));
    {
        let mut m: Map<u64, Counted> = Map::new();
        for k in 0..3000 {
            m.insert(k, Counted(drops.clone()));
        }
        // Replacing returns the old value: dropped by the caller.
        drop(m.insert(1, Counted(drops.clone())));
        assert_eq!(drops.get(), 1);
        for k in 0..1000 {
            drop(m.remove(&k));
        }
        assert_eq!(drops.get(), 1001);
        m.retain(|k, _| k % 2 == 0);
        assert_eq!(drops.get(), 2001);
        assert!(m.shrink_to_fit());
        m.maintenance_step(3);
        // Dropped mid-shrink: entries in both arrays.
    }
    assert_eq!(drops.get(), 3001);
    let mut m: Map<u64, Counted> = Map::new();
    for k in 0..100 {
        m.insert(k, Counted(drops.clone()));
    }
    m.clear();
    assert_eq!(drops.get(), 3101);
    m.insert(1, Counted(drops.clone()));
    m.clear_and_release();
    assert_eq!(drops.get(), 3102);
}

/// A key whose `Hash` or `Eq` panics on demand.
#[derive(Debug)]
struct Touchy {
    id: u64,
    drops: Rc<Cell<usize>>,
    panic_hash: Rc<Cell<bool>>,
    panic_eq: Rc<Cell<bool>>,
}

impl Hash for Touchy {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if self.panic_hash.get() {
            panic!("hash panics on purpose");
        }
        self.id.hash(state);
    }
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        if self.panic_eq.get() {
            panic!("eq panics on purpose");
        }
        self.id == other.id
    }
}

impl Eq for Touchy {}

impl Drop for Touchy {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

#[test]
fn panics_in_hash_and_eq_neither_leak_nor_double_drop() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let drops = Rc::new(Cell::new(0));
    let panic_hash = Rc::new(Cell::new(false));
    let panic_eq = Rc::new(Cell::new(false));
    let key = |id| Touchy {
        id,
        drops: drops.clone(),
        panic_hash: panic_hash.clone(),
        panic_eq: panic_eq.clone(),
    };
    let created;
    {
        let mut m: Map<Touchy, Counted> = Map::new();
        for id in 0..500 {
            m.insert(key(id), Counted(drops.clone()));
        }
        let mut n = 1000; // keys + values created so far
        // Eq panics during an insert that hits an existing key: the new key and value are
        // dropped by the unwinding, the map is unchanged.
        panic_eq.set(true);
        let r = catch_unwind(AssertUnwindSafe(|| m.insert(key(5), Counted(drops.clone()))));
        assert!(r.is_err());
        n += 2;
        assert_eq!(drops.get(), 2);
        panic_eq.set(false);
        assert_eq!(m.len(), 500);
        check(&m);
        // Hash panics while an evacuation rehashes old keys: the guard drops the unmoved
        // entries of that one old chain and the map stays consistent.
        assert!(m.compact());
        panic_hash.set(true);
        let mut panicked = false;
        while !panicked && m.phase() != Phase::Idle {
            panicked = catch_unwind(AssertUnwindSafe(|| m.maintenance_step(1))).is_err();
        }
        assert!(panicked);
        panic_hash.set(false);
        check(&m);
        let lost = 500 - m.len();
        assert!(lost > 0, "the panicking chain's entries are dropped");
        assert_eq!(drops.get(), 2 + 2 * lost);
        m.maintenance_step(usize::MAX);
        assert_eq!(m.iter().count(), m.len());
        check(&m);
        created = n;
    }
    assert_eq!(drops.get(), created);
}

#[test]
fn panicking_hash_or_eq_in_get_remove_and_insert_changes_nothing_mid_grow() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let drops = Rc::new(Cell::new(0));
    let created = Cell::new(0);
    let (panic_hash, panic_eq) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
    let key = |id| {
        created.set(created.get() + 1);
        Touchy {
            id,
            drops: drops.clone(),
            panic_hash: panic_hash.clone(),
            panic_eq: panic_eq.clone(),
        }
    };
    let mut m: Map<Touchy, u64> = Map::new();
    let (mut n, at_least) = (0, if cfg!(miri) { 100 } else { 1000 });
    while n < at_least || m.phase() != Phase::Growing {
        m.insert(key(n), n);
        n += 1;
    }
    let evacuated = m.stats().evacuated;
    let unchanged = |m: &Map<Touchy, u64>| {
        check(m);
        assert_eq!(m.len() as u64, n);
        assert!((0..n).all(|id| m.get(&key(id)) == Some(&id)));
    };
    // A panicking Hash: nothing is looked up, nothing evacuated (the hash comes first).
    panic_hash.set(true);
    assert!(catch_unwind(AssertUnwindSafe(|| m.get(&key(3)).is_some())).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| m.remove(&key(3)))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| m.insert(key(n + 1), 0))).is_err());
    panic_hash.set(false);
    assert_eq!(m.stats().evacuated, evacuated, "no growWork before the hash");
    unchanged(&m);
    // A panicking Eq: a remove or an insert of a present key has run its growWork (Go's order)
    // but changes no entry.
    panic_eq.set(true);
    assert!(catch_unwind(AssertUnwindSafe(|| m.get(&key(5)).is_some())).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| m.remove(&key(5)))).is_err());
    assert!(catch_unwind(AssertUnwindSafe(|| m.insert(key(7), 0))).is_err());
    panic_eq.set(false);
    assert_eq!(m.phase(), Phase::Growing);
    unchanged(&m);
    drop(m);
    assert_eq!(drops.get(), created.get(), "every key dropped exactly once");
}

/// What the `Bomb`s of one test share: how often each id was dropped, the drops so far, and
/// which drop panics.
struct DropLog {
    per_id: RefCell<Vec<u32>>,
    total: Cell<usize>,
    panic_at: Cell<usize>,
}

/// A value that records its drop under its id and panics on the `panic_at`-th drop overall.
struct Bomb {
    id: usize,
    log: Rc<DropLog>,
}

impl Drop for Bomb {
    fn drop(&mut self) {
        self.log.per_id.borrow_mut()[self.id] += 1;
        self.log.total.set(self.log.total.get() + 1);
        if self.log.total.get() == self.log.panic_at.get() {
            panic!("drop panics on purpose");
        }
    }
}

#[test]
fn a_panicking_drop_in_clear_leaves_an_empty_map_and_drops_nothing_twice() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let (n, more) = if cfg!(miri) { (100, 10) } else { (3000, 100) };
    // The first drop (in the old array, which is walked first), one half-way, the last.
    for part in [0, 1, 2] {
        // Inserting stops at the doubling after n keys: under 2n + 1 ids, then `more`.
        let log = Rc::new(DropLog {
            per_id: RefCell::new(vec![0; 2 * n + 1 + more]),
            total: Cell::new(0),
            panic_at: Cell::new(usize::MAX),
        });
        let bomb = |id| Bomb { id, log: log.clone() };
        let mut m: Map<usize, Bomb> = Map::new();
        let mut inserted = 0;
        while inserted < n || m.phase() != Phase::Growing {
            m.insert(inserted, bomb(inserted));
            inserted += 1;
        }
        m.maintenance_step(m.stats().to_evacuate / 2);
        log.panic_at.set([1, inserted / 2, inserted][part]);
        assert!(catch_unwind(AssertUnwindSafe(|| m.clear())).is_err(), "part {part}");
        let per_id = || log.per_id.borrow().clone();
        let dropped = |per_id: &[u32]| per_id[..inserted].iter().filter(|&&d| d == 1).count();
        assert!(per_id().iter().all(|&d| d <= 1), "a double drop");
        assert_eq!(dropped(&per_id()), log.panic_at.get(), "the rest is leaked");
        let s = m.stats();
        assert_eq!((s.len, s.phase, s.overflow_buckets, s.tombstones), (0, Phase::Idle, 0, 0));
        assert_eq!(m.iter().count(), 0);
        check(&m);
        // The map works on; what clear leaked stays leaked.
        for id in inserted..inserted + more {
            m.insert(id, bomb(id));
        }
        assert!((inserted..inserted + more).all(|id| m.get(&id).is_some_and(|b| b.id == id)));
        check(&m);
        drop(m);
        let per_id = per_id();
        assert!(per_id.iter().all(|&d| d <= 1), "a double drop");
        assert!(per_id[inserted..inserted + more].iter().all(|&d| d == 1));
        assert_eq!(dropped(&per_id), log.panic_at.get());
    }
}

#[test]
fn a_panicking_retain_closure_leaves_a_consistent_map() {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let drops = Rc::new(Cell::new(0));
    let n = if cfg!(miri) { 300 } else { 2000 };
    let mut m: Map<u64, Counted> = (0..n).map(|k| (k, Counted(drops.clone()))).collect();
    let mut visited = 0;
    let r = catch_unwind(AssertUnwindSafe(|| {
        m.retain(|k, _| {
            visited += 1;
            assert!(visited < n / 2, "retain's closure panics on purpose");
            k % 2 == 0
        })
    }));
    assert!(r.is_err());
    check(&m);
    let removed = drops.get();
    assert!(removed > 0 && (removed as u64) < n / 2, "{removed}");
    assert_eq!(m.len() as u64, n - removed as u64);
    assert!((0..n).all(|k| m.get(&k).is_some() || k % 2 == 1), "only rejected keys are gone");
    drop(m);
    assert_eq!(drops.get() as u64, n);
}

#[test]
fn reads_never_advance_an_evacuation_but_writes_do() {
    let mut m: Map<u64, u64> = (0..1000).map(|k| (k, k)).collect();
    assert!(m.compact());
    let before = m.stats().evacuated;
    for k in 0..1000 {
        *m.get_mut(&k).unwrap() += 1;
        assert_eq!(m.get(&k), Some(&(k + 1)));
    }
    assert_eq!(m.stats().evacuated, before, "get/get_mut are reads (Go's mapaccess)");
    m.insert(5000, 0);
    assert!(m.stats().evacuated > before, "a write runs growWork");
    check(&m);
}

#[test]
fn repeated_grow_and_shrink_cycles_keep_every_entry() {
    let mut m: Map<u64, u64> = Map::new();
    for cycle in 0..4u64 {
        for k in 0..20_000 {
            m.insert(k, k + cycle);
        }
        assert_eq!(m.stats().b, 12);
        for k in 200..20_000 {
            assert_eq!(m.remove(&k), Some(k + cycle));
        }
        assert!(m.rebuild());
        assert_eq!(m.phase(), Phase::Shrinking);
        while m.maintenance_step(64) > 0 {}
        let s = m.stats();
        assert_eq!((s.phase, s.b, s.len, s.tombstones, s.to_evacuate), (Phase::Idle, 5, 200, 0, 0));
        assert!((0..200).all(|k| m.get(&k) == Some(&(k + cycle))));
        check(&m);
    }
}

#[test]
fn scan_with_a_stable_map_returns_each_key_once() {
    let m: Map<u64, u64> = (0..3000).map(|k| (k, k)).collect();
    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        cursor = m.scan(cursor, 10, |k, _| seen.push(*k));
        if cursor == 0 {
            break;
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..3000).collect::<Vec<_>>());
}

#[test]
fn growth_past_the_off_thread_free_threshold_keeps_every_entry() {
    // 2^14 buckets of 144 bytes = 2.25 MiB: the evacuation that doubles to 2^15 frees that old
    // array on the helper thread.
    let mut m: Map<u64, u64> = Map::new();
    for k in 0..110_000 {
        m.insert(k, !k);
    }
    m.maintenance_step(usize::MAX);
    let s = m.stats();
    assert_eq!((s.b, s.phase, s.len), (15, Phase::Idle, 110_000));
    assert!((0..110_000).step_by(7).all(|k| m.get(&k) == Some(&!k)));
}

/// Threads of this process named `name` (Linux: `/proc/self/task/*/comm`).
#[cfg(target_os = "linux")]
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn large_arrays_are_freed_by_one_long_lived_helper_thread() {
    // Two maps each free a 2.25 MiB old array (2^14 buckets) when they double to 2^15; both
    // go to the same parked helper, which stays for the next one (no thread per array).
    for _ in 0..2 {
        let mut m: Map<u64, u64> = Map::new();
        for k in 0..110_000 {
            m.insert(k, k);
        }
        m.maintenance_step(usize::MAX);
        assert_eq!((m.stats().b, m.phase()), (15, Phase::Idle));
        assert_eq!(threads_named("mapcache-free"), 1);
    }
}

/// The `VmFlags` of the mapping of this process that contains `addr` (`/proc/self/smaps`).
#[cfg(target_os = "linux")]
fn vm_flags_at(addr: usize) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut inside = false;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16))
        {
            inside = (start..end).contains(&addr);
        } else if inside && let Some(flags) = line.strip_prefix("VmFlags:") {
            return flags.split_whitespace().map(str::to_string).collect();
        }
    }
    panic!("no mapping contains {addr:#x}");
}

#[cfg(all(target_os = "linux", any(target_arch = "x86_64", target_arch = "aarch64")))]
#[test]
fn huge_pages_switch_aligns_and_advises_large_arrays_only_while_on() {
    // 2^15 buckets of 144 bytes = 4.5 MiB, at the huge-page threshold's side of 4 MiB. No other
    // test touches the switch; arrays other tests allocate meanwhile only change page size.
    assert!(!huge_pages(), "off by default");
    set_huge_pages(true);
    let mut on: Map<u64, u64> = Map::with_capacity(200_000);
    let small: Map<u64, u64> = Map::with_capacity(100_000); // 2^14 buckets: 2.25 MiB
    set_huge_pages(false);
    let off: Map<u64, u64> = Map::with_capacity(200_000);
    assert_eq!((on.stats().b, small.stats().b, off.stats().b), (15, 14, 15));

    let addr = on.table.buckets as usize;
    assert_eq!(addr % (2 << 20), 0, "a huge-page array starts on a 2 MiB boundary");
    if std::path::Path::new("/sys/kernel/mm/transparent_hugepage").exists() {
        assert!(vm_flags_at(addr).iter().any(|f| f == "hg"), "advised MADV_HUGEPAGE");
        assert!(vm_flags_at(small.table.buckets as usize).iter().all(|f| f != "hg"));
        assert!(vm_flags_at(off.table.buckets as usize).iter().all(|f| f != "hg"));
    }
    for k in 0..200_000u64 {
        on.insert(k, k + 1);
    }
    assert!((0..200_000u64).all(|k| on.get(&k) == Some(&(k + 1))));
    assert_eq!(on.stats().b, 15);
    // Freed with the same length it was mapped with (valgrind and the debug munmap check
    // would report a mismatch).
    drop(on);
}

/// Inserts fresh keys from `next` until `stop` says so; returns the next unused key.
fn insert_until(
    map: &mut Map<u64, u64>,
    mut next: u64,
    stop: impl Fn(&Map<u64, u64>) -> bool,
) -> u64 {
    while !stop(map) {
        map.insert(next, next);
        next += 1;
    }
    next
}

#[test]
fn a_doubling_starts_on_the_array_prepared_for_it_at_three_quarters_of_its_trigger() {
    // u64 -> u64 buckets are 144 bytes: from B = 10 on the next array is 2^11 x 144 = 288 KiB,
    // above 256 KiB, the cache node's threshold (the default, 16 MiB, is tested below).
    let mut map: Map<u64, u64> = Map::with_capacity(6 * 1024);
    map.set_prepare_min_bytes(256 << 10);
    let b = map.stats().b;
    assert_eq!(b, 10);
    let trigger = 13 * (1usize << b) / 2; // doubles past this many entries
    let next = insert_until(&mut map, 0, |m| m.stats().prepared_bytes > 0);
    // Requested by the insert that found the map at 3/4 of the trigger count.
    assert_eq!(map.len(), trigger * 3 / 4 + 1);
    let stats = map.stats();
    assert_eq!(stats.prepared_bytes, (1 << (b + 1)) * 144);
    assert_eq!(
        stats.bytes_allocated,
        ((1 << b) + stats.overflow_buckets) * 144 + stats.prepared_bytes
    );
    proptests::await_prepared(&map);
    let next = insert_until(&mut map, next, |m| m.phase() == Phase::Growing);
    assert_eq!(map.len(), trigger + 1);
    assert_eq!(map.table.took_prepared, 1, "the doubling allocated an array of its own");
    let stats = map.stats();
    assert_eq!((stats.b, stats.prepared_bytes), (b + 1, 0));
    check(&map);
    while map.maintenance_step(64) > 0 {}
    check(&map);
    // The next doubling is prepared again, from the new size's 3/4 on.
    let trigger = 13 * (1usize << (b + 1)) / 2;
    insert_until(&mut map, next, |m| m.stats().prepared_bytes > 0);
    assert_eq!(map.len(), trigger * 3 / 4 + 1);
    for k in 0..map.len() as u64 {
        assert_eq!(map.get(&k), Some(&k));
    }
}

#[test]
fn without_preparation_or_below_its_size_a_doubling_allocates_its_own_array() {
    let mut off: Map<u64, u64> = Map::with_capacity(6 * 1024);
    off.set_prepare_growth(false);
    assert!(!off.prepare_growth());
    insert_until(&mut off, 0, |m| m.phase() == Phase::Growing);
    assert_eq!((off.table.took_prepared, off.stats().prepared_bytes), (0, 0));
    // B = 9: the next array would be 144 KiB, below a threshold of 256 KiB.
    let mut small: Map<u64, u64> = Map::with_capacity(3 * 1024);
    small.set_prepare_min_bytes(256 << 10);
    assert_eq!(small.stats().b, 9);
    insert_until(&mut small, 0, |m| m.phase() == Phase::Growing);
    assert_eq!((small.table.took_prepared, small.stats().prepared_bytes), (0, 0));
    check(&off);
    check(&small);
}

#[test]
fn by_default_only_arrays_from_16_mib_are_prepared() {
    // B = 16: the next array is 2^17 x 144 bytes = 18 MiB, prepared; at B = 15 (9 MiB) not.
    for (b, prepared) in [(15u8, false), (16, true)] {
        let mut map: Map<u64, u64> = Map::with_capacity(6 << b);
        assert_eq!(map.stats().b, b);
        let trigger = 13 * (1usize << b) / 2;
        insert_until(&mut map, 0, |m| m.len() > trigger * 3 / 4);
        assert_eq!(map.stats().prepared_bytes > 0, prepared, "B = {b}");
        check(&map);
    }
}

#[test]
fn a_prepared_array_given_up_in_any_state_leaves_the_map_whole() {
    // Each way of giving the array up, once right after the request (the helper may still be
    // preparing it) and once after it is ready. Leaks and double frees show under valgrind
    // (docs/BENCHMARKS.md, "Safety runs") and Miri (`.ci/run`); here the map must stay
    // consistent and keep counting. Under Miri the maps grow less far, to stay in its time.
    let grow_to = if cfg!(miri) { 300 } else { 2000 };
    for wait in [false, true] {
        for way in 0..6 {
            let mut map: Map<u64, u64> = Map::new();
            map.set_prepare_min_bytes(0);
            let next =
                insert_until(&mut map, 0, |m| m.stats().prepared_bytes > 0 && m.stats().b >= 4);
            if wait {
                proptests::await_prepared(&map);
            }
            match way {
                0 => assert!(map.compact()),
                1 => {
                    for k in 0..next - 10 {
                        map.remove(&k);
                    }
                    assert!(map.shrink_to_fit());
                }
                2 => map.clear(),
                3 => map.clear_and_release(),
                4 => map.set_prepare_growth(false),
                _ => assert!(map.release_prepared() > 0),
            }
            assert_eq!(map.stats().prepared_bytes, 0, "way {way}, waited {wait}");
            check(&map);
            // Still a working map: it grows (and, where preparation is on, prepares) again.
            insert_until(&mut map, 1 << 40, |m| m.len() > grow_to);
            while map.maintenance_step(64) > 0 {}
            check(&map);
            drop(map);
        }
    }
    // A map dropped with a request outstanding.
    let mut map: Map<u64, u64> = Map::new();
    map.set_prepare_min_bytes(0);
    insert_until(&mut map, 0, |m| m.stats().prepared_bytes > 0);
}

#[test]
fn the_o1_figures_equal_the_stats_through_growth_removes_and_rebuilds() {
    let mut map: Map<u64, u64> = Map::new();
    let check = |map: &Map<u64, u64>| {
        let stats = map.stats();
        assert_eq!(
            (map.bytes_allocated(), map.tombstones(), map.log2_buckets()),
            (stats.bytes_allocated, stats.tombstones, stats.b)
        );
    };
    for i in 0..5_000u64 {
        map.insert(i, i);
        check(&map);
    }
    for i in (0..5_000u64).step_by(3) {
        map.remove(&i);
        check(&map);
    }
    assert!(map.rebuild());
    while map.maintenance_step(7) > 0 {
        check(&map);
    }
    check(&map);
}
