//! A stored value. Values of up to [`INLINE_CAP`] bytes live inside the entry itself, in the
//! engine's slot, the way Redis keeps small strings in the object header (`OBJ_ENCODING_EMBSTR`)
//! and integers in the pointer (`OBJ_ENCODING_INT`): no allocation when stored, none freed when
//! replaced, and no second cache miss when read (INCR, GET). Longer values are a [`Bytes`] that
//! owns its allocation. A hash or a set is a [`Collection`] on the heap, an engine map of its
//! own, reached through a pointer kept where an inline string keeps its bytes. Every form is 32
//! bytes, the size of a `Bytes` handle alone.
//!
//! String commands read a value through [`Value::as_bytes`], which answers [`WrongType`] for a
//! hash or a set (Redis's `-WRONGTYPE`); nothing reads a collection as bytes by accident.

use std::fmt;

use bytes::{Bytes, BytesMut};

use super::collections::{Collection, HashValue, SetValue};

/// The longest value stored inline.
pub const INLINE_CAP: usize = 23;

/// The `len` byte of a [`Repr::Inline`] that holds a collection's pointer, not bytes (every
/// string length is at most [`INLINE_CAP`]).
const COLLECTION: u8 = u8::MAX;

/// A stored value: a string (inline up to [`INLINE_CAP`] bytes, else a shared [`Bytes`]), a
/// hash or a set.
pub struct Value(Repr);

enum Repr {
    /// `len` bytes at the start of `small.bytes`; or, when `len` is [`COLLECTION`], a boxed
    /// collection this value owns, at `small.collection`.
    Inline {
        len: u8,
        small: Small,
    },
    Shared(Bytes),
}

const EMPTY: Repr = Repr::Inline { len: 0, small: Small { bytes: [0; INLINE_CAP] } };

/// An inline string's bytes or a collection's pointer. Packed (alignment 1) so that the
/// `Inline` variant stays 24 bytes and fits beside the niche of `Bytes`, keeping `Value` at 32
/// bytes; a union (not a byte array holding the pointer) so that copies keep the pointer's
/// provenance.
#[derive(Clone, Copy)]
#[repr(C, packed)]
union Small {
    bytes: [u8; INLINE_CAP],
    collection: *mut Collection,
}

// SAFETY: a `Value` owns its collection exclusively (as a `Box` would): the pointer is never
// shared between two values (`Clone` copies the collection), and `Collection` is `Send + Sync`.
unsafe impl Send for Value {}
// SAFETY: as above; `&Value` gives only `&Collection`.
unsafe impl Sync for Value {}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Collection>();
};

/// A string command met a hash or a set (or the reverse): Redis's `-WRONGTYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
pub struct WrongType;

/// What a value is, as `TYPE` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Hash,
    Set,
}

impl Kind {
    /// `TYPE`'s reply and SCAN's `TYPE` filter.
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Hash => "hash",
            Kind::Set => "set",
        }
    }
}

impl Value {
    /// A value of its own with these bytes: inline when short enough, else copied into an
    /// allocation of exactly its length, so it never pins a larger buffer it was sliced from.
    pub fn copy_from_slice(data: &[u8]) -> Self {
        Self::inline(data).unwrap_or_else(|| Self(Repr::Shared(Bytes::copy_from_slice(data))))
    }

    /// Takes `data` as the value: inline when short enough, else as it is. `data` must own its
    /// allocation (built by a command, not sliced from a request); [`Value::detach`] makes sure.
    pub fn from_owned(data: Bytes) -> Self {
        Self::inline(&data).unwrap_or(Self(Repr::Shared(data)))
    }

    fn inline(data: &[u8]) -> Option<Self> {
        if data.len() > INLINE_CAP {
            return None;
        }
        let mut bytes = [0u8; INLINE_CAP];
        bytes[..data.len()].copy_from_slice(data);
        Some(Self(Repr::Inline { len: data.len() as u8, small: Small { bytes } }))
    }

    /// The empty string.
    pub const fn empty() -> Self {
        Self(EMPTY)
    }

    /// An empty hash.
    pub fn new_hash() -> Self {
        Self::collection(Collection::Hash(HashValue::default()))
    }

    /// An empty set.
    pub fn new_set() -> Self {
        Self::collection(Collection::Set(SetValue::default()))
    }

    pub fn collection(collection: Collection) -> Self {
        let collection = Box::into_raw(Box::new(collection));
        Self(Repr::Inline { len: COLLECTION, small: Small { collection } })
    }

    /// The collection this value owns, if it is one.
    fn collection_ptr(&self) -> Option<*mut Collection> {
        match &self.0 {
            // SAFETY: `len` says which field of the union was written.
            Repr::Inline { len: COLLECTION, small } => Some(unsafe { small.collection }),
            _ => None,
        }
    }

    pub fn kind(&self) -> Kind {
        match self.as_collection() {
            None => Kind::String,
            Some(Collection::Hash(_)) => Kind::Hash,
            Some(Collection::Set(_)) => Kind::Set,
        }
    }

    /// The string's bytes; [`WrongType`] for a hash or a set.
    #[inline]
    pub fn as_bytes(&self) -> Result<&[u8], WrongType> {
        match &self.0 {
            Repr::Inline { len: COLLECTION, .. } => Err(WrongType),
            // SAFETY: a `len` other than `COLLECTION` means the union holds bytes.
            Repr::Inline { len, small } => Ok(unsafe { &small.bytes[..usize::from(*len)] }),
            Repr::Shared(data) => Ok(data),
        }
    }

    pub fn is_string(&self) -> bool {
        self.collection_ptr().is_none()
    }

    pub fn as_collection(&self) -> Option<&Collection> {
        // SAFETY: the value owns the collection; `&self` keeps it alive and unchanged.
        self.collection_ptr().map(|p| unsafe { &*p })
    }

    pub fn as_collection_mut(&mut self) -> Option<&mut Collection> {
        // SAFETY: the value owns the collection exclusively; `&mut self` makes this the only
        // reference to it.
        self.collection_ptr().map(|p| unsafe { &mut *p })
    }

    pub fn as_hash(&self) -> Result<&HashValue, WrongType> {
        match self.as_collection() {
            Some(Collection::Hash(hash)) => Ok(hash),
            _ => Err(WrongType),
        }
    }

    pub fn as_hash_mut(&mut self) -> Result<&mut HashValue, WrongType> {
        match self.as_collection_mut() {
            Some(Collection::Hash(hash)) => Ok(hash),
            _ => Err(WrongType),
        }
    }

    pub fn as_set(&self) -> Result<&SetValue, WrongType> {
        match self.as_collection() {
            Some(Collection::Set(set)) => Ok(set),
            _ => Err(WrongType),
        }
    }

    pub fn as_set_mut(&mut self) -> Result<&mut SetValue, WrongType> {
        match self.as_collection_mut() {
            Some(Collection::Set(set)) => Ok(set),
            _ => Err(WrongType),
        }
    }

    /// Accounted bytes beyond the entry's own overhead: a string's length, or what a
    /// collection's elements and tables take ([`Collection::cost`]).
    pub fn cost(&self) -> usize {
        match self.as_collection() {
            None => self.as_bytes().map_or(0, <[u8]>::len),
            Some(c) => c.cost(),
        }
    }

    /// A collection's engine tombstones (0 for a string).
    pub fn tombstones(&self) -> usize {
        self.as_collection().map_or(0, Collection::tombstones)
    }

    /// The same value sharing no buffer with anything else (a collection's elements always own
    /// theirs).
    pub fn detach(self) -> Self {
        match &self.0 {
            Repr::Shared(data) => Self(Repr::Shared(Bytes::copy_from_slice(data))),
            Repr::Inline { .. } => self,
        }
    }

    /// A string's bytes as a `Bytes`: shared when long, copied when inline; empty for a
    /// collection (callers check the kind first).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Shared(data) => data.clone(),
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_bytes().unwrap_or_default()),
        }
    }

    pub fn into_bytes(mut self) -> Bytes {
        match std::mem::replace(&mut self.0, EMPTY) {
            Repr::Shared(data) => data,
            other => {
                self.0 = other;
                Bytes::copy_from_slice(self.as_bytes().unwrap_or_default())
            }
        }
    }

    /// Changes a string's bytes in place, the length unchanged: an inline value's own bytes, a
    /// long one's allocation when nothing else shares it, else (a reply being written still
    /// holds it) a copy of its own, of exactly its length, which the value keeps from then on.
    /// Does nothing to a collection (callers check the kind first).
    pub fn modify(&mut self, f: impl FnOnce(&mut [u8])) {
        match &mut self.0 {
            Repr::Inline { len: COLLECTION, .. } => {}
            // SAFETY: a `len` other than `COLLECTION` means the union holds bytes.
            Repr::Inline { len, small } => f(unsafe { &mut small.bytes[..usize::from(*len)] }),
            Repr::Shared(data) => {
                let mut owned = match std::mem::take(data).try_into_mut() {
                    Ok(owned) => owned,
                    Err(shared) => BytesMut::from(&shared[..]),
                };
                f(&mut owned);
                *data = owned.freeze();
            }
        }
    }

    /// A string stored inside the entry, without an allocation of its own.
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { len, .. } if len != COLLECTION)
    }
}

impl Clone for Value {
    /// A string shares its bytes; a collection is copied whole.
    fn clone(&self) -> Self {
        match (&self.0, self.as_collection()) {
            (_, Some(collection)) => Self::collection(collection.clone()),
            (Repr::Inline { len, small }, None) => Self(Repr::Inline { len: *len, small: *small }),
            (Repr::Shared(data), None) => Self(Repr::Shared(data.clone())),
        }
    }
}

impl Drop for Value {
    fn drop(&mut self) {
        if let Some(collection) = self.collection_ptr() {
            // SAFETY: the pointer came from `Box::into_raw` in `Value::collection` and this value
            // owns it; nothing uses it after this.
            drop(unsafe { Box::from_raw(collection) });
        }
    }
}

impl Default for Value {
    fn default() -> Self {
        Self::empty()
    }
}

/// [`Value::from_owned`]: `data` must own its allocation, or go through [`Value::detach`].
impl From<Bytes> for Value {
    fn from(data: Bytes) -> Self {
        Self::from_owned(data)
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self.as_collection(), other.as_collection()) {
            (None, None) => self.as_bytes() == other.as_bytes(),
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Value {}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == Ok(other)
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.as_collection(), self.as_bytes()) {
            (Some(collection), _) => fmt::Debug::fmt(collection, f),
            (None, bytes) => fmt::Debug::fmt(&Bytes::copy_from_slice(bytes.unwrap_or_default()), f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(value: &Value) -> &[u8] {
        value.as_bytes().expect("a string")
    }

    #[test]
    fn short_values_are_inline_and_long_ones_shared() {
        let short = Value::copy_from_slice(b"12345678901234567890123");
        assert!(short.is_inline());
        assert_eq!(b(&short), b"12345678901234567890123");
        let long = Value::copy_from_slice(b"123456789012345678901234");
        assert!(!long.is_inline());
        assert_eq!(b(&long), b"123456789012345678901234");
        assert!(Value::copy_from_slice(b"").is_inline());
        assert_eq!(b(&Value::copy_from_slice(b"")).len(), 0);
    }

    #[test]
    fn a_value_is_no_larger_than_a_bytes_handle() {
        assert_eq!(std::mem::size_of::<Value>(), std::mem::size_of::<Bytes>());
    }

    #[test]
    fn detach_and_copy_share_nothing_with_the_source_buffer() {
        let buffer = Bytes::from(vec![7u8; 4096]);
        let slice = buffer.slice(100..200);
        let owned = Value::from_owned(slice.clone()).detach();
        assert_eq!(b(&owned), &slice[..]);
        let range = buffer.as_ptr_range();
        assert!(!range.contains(&b(&owned).as_ptr()));
        let copied = Value::copy_from_slice(&slice);
        assert!(!range.contains(&b(&copied).as_ptr()));
        // A short slice is inline, so it shares nothing either.
        let short = Value::from_owned(buffer.slice(0..5));
        assert!(short.is_inline());
        assert!(!range.contains(&b(&short).as_ptr()));
    }

    #[test]
    fn modify_changes_a_value_in_place_unless_a_reply_still_shares_it() {
        let mut short = Value::copy_from_slice(b"abc");
        short.modify(|b| b[0] = b'x');
        assert_eq!(b(&short), b"xbc");
        // Nothing else holds the allocation: the same one is changed.
        let mut long = Value::copy_from_slice(&[0u8; 100]);
        let before = b(&long).as_ptr();
        long.modify(|b| b[99] = 1);
        assert_eq!(b(&long).as_ptr(), before);
        assert_eq!(b(&long)[99], 1);
        // A reply holds it: the reply keeps the old bytes, the value gets a copy of its own.
        let reply = long.to_bytes();
        long.modify(|b| b[0] = 7);
        assert_ne!(b(&long).as_ptr(), before);
        assert_eq!((b(&long)[0], b(&long)[99], b(&long).len()), (7, 1, 100));
        assert_eq!((reply[0], reply[99]), (0, 1));
    }

    #[test]
    fn bytes_round_trip_both_forms() {
        for data in [&b"abc"[..], &[9u8; 100][..]] {
            let value = Value::copy_from_slice(data);
            assert_eq!(value.to_bytes(), Bytes::copy_from_slice(data));
            assert_eq!(value.clone().into_bytes(), Bytes::copy_from_slice(data));
            assert_eq!(value, Value::from_owned(Bytes::copy_from_slice(data)));
        }
    }

    #[test]
    fn a_collection_is_owned_cloned_and_dropped_with_its_value() {
        let mut hash = Value::new_hash();
        assert_eq!(hash.kind(), Kind::Hash);
        assert_eq!(hash.as_bytes(), Err(WrongType));
        assert!(!hash.is_inline() && !hash.is_string());
        hash.as_hash_mut().unwrap().insert(b"field", Value::copy_from_slice(&[1u8; 100]));
        let copy = hash.clone();
        hash.as_hash_mut().unwrap().insert(b"other", Value::copy_from_slice(b"x"));
        assert_eq!((hash.as_hash().unwrap().len(), copy.as_hash().unwrap().len()), (2, 1));
        assert_ne!(hash, copy);
        assert_eq!(copy.as_set().err(), Some(WrongType));
        // Moved around, as the engine moves entries when it grows.
        let moved: Vec<Value> = vec![copy, Value::new_set(), Value::copy_from_slice(b"s")];
        assert_eq!(
            moved.iter().map(Value::kind).collect::<Vec<_>>(),
            [Kind::Hash, Kind::Set, Kind::String]
        );
        assert_eq!(moved[0].as_hash().unwrap().get(b"field").map(Value::cost), Some(100));
        assert!(moved[1].cost() > 0 && moved[1].as_set().unwrap().is_empty());
        drop(moved);
        // `into_bytes` of a collection gives no bytes and frees it (Miri checks the leak).
        assert!(hash.into_bytes().is_empty());
    }
}
