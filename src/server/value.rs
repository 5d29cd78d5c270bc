//! A stored value. Values of up to [`INLINE_CAP`] bytes live inside the entry itself, in the
//! engine's slot, the way Redis keeps small strings in the object header (`OBJ_ENCODING_EMBSTR`)
//! and integers in the pointer (`OBJ_ENCODING_INT`): no allocation when stored, none freed when
//! replaced, and no second cache miss when read (INCR, GET). Longer values are a [`Bytes`] that
//! owns its allocation. Either form is 32 bytes, the size of a `Bytes` handle alone.

use std::fmt;
use std::ops::Deref;

use bytes::{Bytes, BytesMut};

/// The longest value stored inline.
pub const INLINE_CAP: usize = 23;

/// A stored value: inline up to [`INLINE_CAP`] bytes, else a shared [`Bytes`].
#[derive(Clone)]
pub struct Value(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` bytes at the start of `bytes`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_CAP],
    },
    Shared(Bytes),
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
        Some(Self(Repr::Inline { len: data.len() as u8, bytes }))
    }

    /// The same bytes in a value that shares no buffer with anything else.
    pub fn detach(self) -> Self {
        match self.0 {
            Repr::Inline { .. } => self,
            Repr::Shared(data) => Self(Repr::Shared(Bytes::copy_from_slice(&data))),
        }
    }

    /// The bytes as a `Bytes`: shared when long, copied when inline.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self),
            Repr::Shared(data) => data.clone(),
        }
    }

    pub fn into_bytes(self) -> Bytes {
        match self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(&self),
            Repr::Shared(data) => data,
        }
    }

    /// Changes the bytes in place, the length unchanged: an inline value's own bytes, a long
    /// one's allocation when nothing else shares it, else (a reply being written still holds
    /// it) a copy of its own, of exactly its length, which the value keeps from then on.
    pub fn modify(&mut self, f: impl FnOnce(&mut [u8])) {
        match &mut self.0 {
            Repr::Inline { len, bytes } => f(&mut bytes[..usize::from(*len)]),
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

    /// Stored inside the entry, without an allocation of its own.
    pub fn is_inline(&self) -> bool {
        matches!(self.0, Repr::Inline { .. })
    }
}

/// [`Value::from_owned`]: `data` must own its allocation, or go through [`Value::detach`].
impl From<Bytes> for Value {
    fn from(data: Bytes) -> Self {
        Self::from_owned(data)
    }
}

impl Deref for Value {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(data) => data,
        }
    }
}

impl AsRef<[u8]> for Value {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for Value {}

impl PartialEq<[u8]> for Value {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&Bytes::copy_from_slice(self), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_inline_and_long_ones_shared() {
        let short = Value::copy_from_slice(b"12345678901234567890123");
        assert!(short.is_inline());
        assert_eq!(&*short, b"12345678901234567890123");
        let long = Value::copy_from_slice(b"123456789012345678901234");
        assert!(!long.is_inline());
        assert_eq!(&*long, b"123456789012345678901234");
        assert!(Value::copy_from_slice(b"").is_inline());
        assert_eq!(Value::copy_from_slice(b"").len(), 0);
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
        assert_eq!(&*owned, &slice[..]);
        let range = buffer.as_ptr_range();
        assert!(!range.contains(&owned.as_ptr()));
        let copied = Value::copy_from_slice(&slice);
        assert!(!range.contains(&copied.as_ptr()));
        // A short slice is inline, so it shares nothing either.
        let short = Value::from_owned(buffer.slice(0..5));
        assert!(short.is_inline());
        assert!(!range.contains(&short.as_ptr()));
    }

    #[test]
    fn modify_changes_a_value_in_place_unless_a_reply_still_shares_it() {
        let mut short = Value::copy_from_slice(b"abc");
        short.modify(|b| b[0] = b'x');
        assert_eq!(&*short, b"xbc");
        // Nothing else holds the allocation: the same one is changed.
        let mut long = Value::copy_from_slice(&[0u8; 100]);
        let before = long.as_ptr();
        long.modify(|b| b[99] = 1);
        assert_eq!(long.as_ptr(), before);
        assert_eq!(long[99], 1);
        // A reply holds it: the reply keeps the old bytes, the value gets a copy of its own.
        let reply = long.to_bytes();
        long.modify(|b| b[0] = 7);
        assert_ne!(long.as_ptr(), before);
        assert_eq!((long[0], long[99], long.len()), (7, 1, 100));
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
}
