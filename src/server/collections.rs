//! Hashes and sets. Each is an engine map of its own (fields or members as its keys), as a Redis
//! hash or set is a dict of its own: the same buckets, tombstones, incremental growth and online
//! rebuild as the keyspace, so a hash that lost most of its fields gives its memory back the
//! same way a shard does. Its tombstones count in the node's figures (the shard sums them, see
//! `ShardGuard::update_collection`), and the maintenance tick advances its rebuilds.
//!
//! Every collection knows its accounted cost: its elements' bytes plus [`ELEMENT_OVERHEAD`]
//! each, plus its tables' `bytes_allocated`, so maxmemory and `used_memory` cover it.

use std::fmt;

use super::store::Key;
use super::value::Value;
use crate::engine::{EngineStats, Map, Phase};

/// Accounted bytes per field or member beyond its bytes (its slot is in the table's bytes): a
/// long field's heap allocation and a long value's allocation and shared header. An upper bound,
/// as the keyspace's `ENTRY_OVERHEAD`.
pub const ELEMENT_OVERHEAD: usize = 48;

/// What a collection's map holds for each element: a hash's value, nothing for a set.
pub trait Element: Clone + PartialEq {
    /// Accounted bytes of the element's payload.
    fn cost(&self) -> usize;
}

impl Element for Value {
    fn cost(&self) -> usize {
        self.cost()
    }
}

impl Element for () {
    fn cost(&self) -> usize {
        0
    }
}

/// A hash or a set.
#[derive(Clone, PartialEq)]
pub enum Collection {
    Hash(HashValue),
    Set(SetValue),
}

impl Collection {
    /// Accounted bytes: elements, their overhead and the tables.
    pub fn cost(&self) -> usize {
        match self {
            Collection::Hash(h) => h.cost(),
            Collection::Set(s) => s.cost(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Collection::Hash(h) => h.len(),
            Collection::Set(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn tombstones(&self) -> usize {
        match self {
            Collection::Hash(h) => h.map.tombstones(),
            Collection::Set(s) => s.map.tombstones(),
        }
    }

    pub fn stats(&self) -> EngineStats {
        match self {
            Collection::Hash(h) => h.map.stats(),
            Collection::Set(s) => s.map.stats(),
        }
    }

    /// One step of upkeep: starts a rebuild when the map is due one ([`wants_rebuild`]), and
    /// advances a rebuild or growth under way by at most `budget` old buckets. Returns whether
    /// work is left.
    pub fn maintain(&mut self, budget: usize) -> bool {
        match self {
            Collection::Hash(h) => h.maintain(budget),
            Collection::Set(s) => s.maintain(budget),
        }
    }

    /// Starts a rebuild now whatever the thresholds (an operator's compaction); false when one
    /// is under way already or there is nothing to purge.
    pub fn start_rebuild(&mut self) -> bool {
        match self {
            Collection::Hash(h) => h.start_rebuild(),
            Collection::Set(s) => s.start_rebuild(),
        }
    }

    /// Whether upkeep is due or under way.
    pub fn needs_upkeep(&self) -> bool {
        match self {
            Collection::Hash(h) => h.needs_upkeep(),
            Collection::Set(s) => s.needs_upkeep(),
        }
    }
}

impl fmt::Debug for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Collection::Hash(h) => f.debug_map().entries(h.iter()).finish(),
            Collection::Set(s) => f.debug_set().entries(s.iter().map(|(m, ())| m)).finish(),
        }
    }
}

/// A map is rebuilt (shrunk or compacted) when its tombstones outnumber its elements (and 64),
/// or when it has 4 times the buckets its elements need: without this a hash that once held a
/// million fields would keep its largest array for good.
pub fn wants_rebuild(stats: &EngineStats) -> bool {
    rebuild_due(stats.len, stats.tombstones, stats.b)
}

/// [`wants_rebuild`] from the three figures it reads.
fn rebuild_due(len: usize, tombstones: usize, b: u8) -> bool {
    let needed_buckets = len.div_ceil(6).max(1);
    tombstones > 64.max(len) || (1usize << b) > 4 * needed_buckets.next_power_of_two()
}

/// The elements of one hash (field to value) or set (member to `()`).
pub struct Elements<V> {
    map: Map<Key, V>,
    /// Accounted bytes of the elements: their bytes plus [`ELEMENT_OVERHEAD`] each.
    bytes: usize,
}

pub type HashValue = Elements<Value>;
pub type SetValue = Elements<()>;

impl<V> Default for Elements<V> {
    fn default() -> Self {
        Self { map: Map::new(), bytes: 0 }
    }
}

impl<V: Element> Clone for Elements<V> {
    fn clone(&self) -> Self {
        let mut copy = Self { map: Map::with_capacity(self.len()), bytes: 0 };
        for (k, v) in self.iter() {
            copy.insert(k, v.clone());
        }
        copy
    }
}

impl<V: Element> PartialEq for Elements<V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().all(|(k, v)| other.get(k) == Some(v))
    }
}

fn element_cost(key: &[u8], value: &impl Element) -> usize {
    key.len() + value.cost() + ELEMENT_OVERHEAD
}

impl<V: Element> Elements<V> {
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.map.get(key)
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts or replaces; returns the replaced element. Keys and values are copied into
    /// allocations of their own (arguments arrive as slices of a read buffer).
    pub fn insert(&mut self, key: &[u8], value: V) -> Option<V> {
        self.bytes += element_cost(key, &value);
        let old = self.map.insert(Key::from_slice(key), value);
        if let Some(old) = &old {
            self.bytes -= element_cost(key, old);
        }
        old
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<V> {
        let old = self.map.remove(key)?;
        self.bytes -= element_cost(key, &old);
        Some(old)
    }

    /// Every element, from a random start.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.map.iter().map(|(k, v)| (&k[..], v))
    }

    /// One step of a SCAN over the elements (the engine's reverse-binary cursor).
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&[u8], &V)) -> u64 {
        self.map.scan(cursor, count, |k, v| f(k, v))
    }

    /// A pseudo-random element; `seed` is the caller's random number.
    pub fn sample(&self, seed: u64) -> Option<(&[u8], &V)> {
        self.map.sample(seed).map(|(k, v)| (&k[..], v))
    }

    /// Accounted bytes: elements, their overhead and the tables.
    pub fn cost(&self) -> usize {
        self.bytes + self.map.bytes_allocated()
    }

    fn needs_upkeep(&self) -> bool {
        self.map.phase() != Phase::Idle
            || rebuild_due(self.map.len(), self.map.tombstones(), self.map.log2_buckets())
    }

    fn maintain(&mut self, budget: usize) -> bool {
        if self.map.phase() == Phase::Idle && wants_rebuild(&self.map.stats()) {
            self.map.rebuild();
        }
        if self.map.phase() != Phase::Idle {
            self.map.maintenance_step(budget);
        }
        self.map.phase() != Phase::Idle
    }

    fn start_rebuild(&mut self) -> bool {
        let stats = self.map.stats();
        (stats.tombstones > 0 || wants_rebuild(&stats)) && self.map.rebuild()
    }

    #[cfg(test)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.map.check_invariants()?;
        let bytes: usize = self.iter().map(|(k, v)| element_cost(k, v)).sum();
        if bytes != self.bytes {
            return Err(format!("accounted {} bytes, elements take {bytes}", self.bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(s: &str) -> Value {
        Value::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn accounting_follows_inserts_replacements_and_removals() {
        let mut h = HashValue::default();
        assert_eq!(h.insert(b"f", value("v")), None);
        assert_eq!(h.bytes, 2 + ELEMENT_OVERHEAD);
        let long = "x".repeat(100);
        assert_eq!(h.insert(b"f", value(&long)), Some(value("v")));
        assert_eq!(h.bytes, 101 + ELEMENT_OVERHEAD);
        h.check_invariants().unwrap();
        assert_eq!(h.remove(b"f"), Some(value(&long)));
        assert_eq!((h.bytes, h.len()), (0, 0));
        assert_eq!(h.remove(b"f"), None);
    }

    #[test]
    fn a_collection_emptied_by_removes_is_rebuilt_smaller_by_upkeep() {
        let mut s = Collection::Set(SetValue::default());
        let Collection::Set(set) = &mut s else { unreachable!() };
        for i in 0..10_000u32 {
            set.insert(&i.to_le_bytes(), ());
        }
        let full = s.cost();
        let Collection::Set(set) = &mut s else { unreachable!() };
        for i in 0..9_990u32 {
            set.remove(&i.to_le_bytes());
        }
        assert!(s.tombstones() > 0 && s.needs_upkeep());
        while s.maintain(64) {}
        assert!(!s.needs_upkeep(), "{:?}", s.stats());
        assert_eq!((s.len(), s.tombstones()), (10, 0));
        assert!(s.cost() * 20 < full, "{} of {full} bytes left", s.cost());
        let Collection::Set(set) = &s else { unreachable!() };
        set.check_invariants().unwrap();
    }

    #[test]
    fn clones_are_equal_and_independent() {
        let mut h = HashValue::default();
        for i in 0..100 {
            h.insert(format!("f{i}").as_bytes(), value(&"v".repeat(i)));
        }
        let mut copy = h.clone();
        assert!(copy == h);
        copy.insert(b"f1", value("changed"));
        assert!(copy != h);
        assert_eq!(h.get(b"f1"), Some(&value("v")));
        copy.check_invariants().unwrap();
    }
}
