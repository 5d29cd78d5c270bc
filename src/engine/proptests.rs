//! Model-based property tests: random operation sequences against std `HashMap`, with the
//! brute-force recount (`check_invariants`) after every step, and the SCAN guarantee under
//! writes, growth, compaction and shrinking between cursor calls.
//!
//! Case counts are modest so `cargo test` stays fast; raise them with `PROPTEST_CASES=1000`.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(u64, u64),
    Remove(u64),
    Get(u64),
    /// Insert keys `start..start + len` (crosses several doublings at once).
    InsertRange(u64, u64),
    /// Remove keys `start..start + len`.
    RemoveRange(u64, u64),
    Clear,
    Compact,
    /// Finish any evacuation, compact, finish the compaction with no write in between.
    CompactToEnd,
    Shrink,
    Rebuild,
    Step(usize),
    Iterate,
    Retain(u64),
    Sample(u64),
    /// Switch preparing the next doubling's array on or off.
    PrepareGrowth(bool),
    /// Give a prepared array back.
    ReleasePrepared,
    /// Wait (bounded) until a requested array is ready, so the doubling takes it.
    AwaitPrepared,
}

const KEYS: u64 = 6000;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        20 => (0..KEYS, any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        10 => (0..KEYS).prop_map(Op::Remove),
        10 => (0..KEYS).prop_map(Op::Get),
        4 => (0..KEYS, 0..3000u64).prop_map(|(s, n)| Op::InsertRange(s, n)),
        4 => (0..KEYS, 0..4000u64).prop_map(|(s, n)| Op::RemoveRange(s, n)),
        1 => Just(Op::Clear),
        2 => Just(Op::Compact),
        1 => Just(Op::CompactToEnd),
        3 => Just(Op::Shrink),
        2 => Just(Op::Rebuild),
        4 => (0..64usize).prop_map(Op::Step),
        2 => Just(Op::Iterate),
        1 => (2..5u64).prop_map(Op::Retain),
        2 => any::<u64>().prop_map(Op::Sample),
        1 => any::<bool>().prop_map(Op::PrepareGrowth),
        1 => Just(Op::ReleasePrepared),
        2 => Just(Op::AwaitPrepared),
    ]
}

fn apply(
    map: &mut Map<u64, u64>,
    model: &mut HashMap<u64, u64>,
    op: &Op,
) -> Result<(), TestCaseError> {
    match *op {
        Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
        Op::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
        Op::Get(k) => prop_assert_eq!(map.get(&k), model.get(&k)),
        Op::InsertRange(s, n) => {
            for k in s..s + n {
                prop_assert_eq!(map.insert(k, k ^ 0x55), model.insert(k, k ^ 0x55));
            }
        }
        Op::RemoveRange(s, n) => {
            for k in s..s + n {
                prop_assert_eq!(map.remove_entry(&k), model.remove_entry(&k));
            }
        }
        Op::Clear => {
            map.clear();
            model.clear();
        }
        Op::Compact => {
            let idle = map.phase() == Phase::Idle;
            prop_assert_eq!(map.compact(), idle);
        }
        Op::CompactToEnd => {
            map.maintenance_step(usize::MAX);
            prop_assert!(map.compact());
            map.maintenance_step(usize::MAX);
            let s = map.stats();
            prop_assert_eq!((s.phase, s.tombstones, s.empty_overflow_buckets), (Phase::Idle, 0, 0));
        }
        Op::Shrink => {
            let before = map.stats();
            let started = map.shrink_to_fit();
            prop_assert_eq!(
                started,
                before.phase == Phase::Idle && table::b_for(before.len) < before.b
            );
        }
        Op::Rebuild => {
            let idle = map.phase() == Phase::Idle;
            prop_assert_eq!(map.rebuild(), idle);
        }
        Op::Step(n) => {
            let before = map.stats().to_evacuate;
            let done = map.maintenance_step(n);
            // The budget bounds what the step did, read off the evacuation's own counter.
            prop_assert!(done <= n);
            prop_assert_eq!(before - map.stats().to_evacuate, done);
        }
        Op::Iterate => {
            let mut seen = HashMap::new();
            for (k, v) in map.iter() {
                prop_assert!(seen.insert(*k, *v).is_none(), "key {} returned twice", k);
            }
            prop_assert_eq!(&seen, model);
        }
        Op::Retain(m) => {
            map.retain(|k, _| k % m != 0);
            model.retain(|k, _| k % m != 0);
        }
        Op::Sample(seed) => match map.sample(seed) {
            Some((k, v)) => prop_assert_eq!(model.get(k), Some(v)),
            None => prop_assert!(model.is_empty()),
        },
        Op::PrepareGrowth(on) => {
            map.set_prepare_growth(on);
            prop_assert!(on || map.stats().prepared_bytes == 0);
        }
        Op::ReleasePrepared => {
            let held = map.stats().prepared_bytes;
            prop_assert_eq!(map.release_prepared(), held);
            prop_assert_eq!(map.stats().prepared_bytes, 0);
        }
        Op::AwaitPrepared => {
            if map.stats().prepared_bytes > 0 {
                await_prepared(map);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(48)
    ))]

    /// Half the cases prepare next arrays at every size, so the small maps here exercise it.
    #[test]
    fn map_matches_std_hashmap_and_its_recount_after_every_step(
        ops in prop::collection::vec(op(), 1..120),
        prepare_small in any::<bool>(),
    ) {
        let mut map = Map::new();
        if prepare_small {
            map.set_prepare_min_bytes(0);
        }
        let mut model = HashMap::new();
        for op in &ops {
            apply(&mut map, &mut model, op)?;
            prop_assert_eq!(map.len(), model.len());
            if let Err(e) = map.check_invariants() {
                return Err(TestCaseError::fail(format!("after {op:?}: {e}")));
            }
        }
        let all: HashMap<u64, u64> = map.iter().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(all, model);
    }
}

/// Waits until the map's requested next array is ready: the helper thread prepares it within
/// milliseconds; the bound only keeps a broken helper from hanging the test.
pub(super) fn await_prepared<K: std::hash::Hash + Eq, V>(map: &Map<K, V>) {
    for _ in 0..10_000 {
        if map.prepared_ready() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    panic!("the next array was not prepared within 10 s");
}

#[derive(Debug, Clone)]
enum Between {
    InsertFresh(u64),
    RemoveSome(u64),
    Grow(u64),
    ShrinkHard,
    Compact,
    Step(usize),
}

fn between() -> impl Strategy<Value = Between> {
    prop_oneof![
        3 => (1..50u64).prop_map(Between::InsertFresh),
        3 => (1..400u64).prop_map(Between::RemoveSome),
        1 => (100..2000u64).prop_map(Between::Grow),
        1 => Just(Between::ShrinkHard),
        1 => Just(Between::Compact),
        3 => (0..40usize).prop_map(Between::Step),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(32)
    ))]

    /// Redis's SCAN guarantee: a key present from the first call to the last is returned; a key
    /// removed during the scan is not returned after its removal.
    #[test]
    fn scan_returns_every_key_present_throughout_despite_grow_compact_and_shrink(
        initial in 1..4000u64,
        count in 1..40usize,
        mutations in prop::collection::vec(between(), 0..200),
    ) {
        let mut map: Map<u64, u64> = (0..initial).map(|k| (k, k)).collect();
        let mut removed = HashSet::new();
        let mut next_fresh = 1_000_000u64;
        let mut returned = HashSet::new();
        let mut cursor = 0u64;
        let mut calls = 0usize;
        let mut mutations = mutations.into_iter();
        loop {
            cursor = map.scan(cursor, count, |k, v| {
                assert_eq!(k, v);
                // Removed keys are never inserted again (fresh keys start at 1e6).
                assert!(!removed.contains(k), "key {k} returned after its removal");
                returned.insert(*k);
            });
            calls += 1;
            prop_assert!(calls < 1_000_000, "scan does not terminate");
            if cursor == 0 {
                break;
            }
            match mutations.next() {
                Some(Between::InsertFresh(n)) | Some(Between::Grow(n)) => {
                    for _ in 0..n {
                        map.insert(next_fresh, next_fresh);
                        next_fresh += 1;
                    }
                }
                Some(Between::RemoveSome(n)) => {
                    // Remove every n-th initial key still present.
                    for k in (0..initial).step_by(n as usize + 1) {
                        if map.remove(&k).is_some() {
                            removed.insert(k);
                        }
                    }
                }
                Some(Between::ShrinkHard) => {
                    for k in 0..initial {
                        if k % 8 != 0 && map.remove(&k).is_some() {
                            removed.insert(k);
                        }
                    }
                    map.shrink_to_fit();
                }
                Some(Between::Compact) => {
                    map.compact();
                }
                Some(Between::Step(n)) => {
                    map.maintenance_step(n);
                }
                None => continue,
            }
            if let Err(e) = map.check_invariants() {
                return Err(TestCaseError::fail(e));
            }
        }
        for k in 0..initial {
            if !removed.contains(&k) {
                prop_assert!(returned.contains(&k), "key {} present throughout was not returned", k);
            }
        }
    }
}
