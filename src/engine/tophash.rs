//! Tophash states and the SWAR matcher over a bucket's 8 tophash bytes.
//!
//! Each slot of a bucket has one tophash byte. Values below [`MIN_TOP_HASH`] are states; values
//! at or above it are the top 8 bits of a live key's hash (bumped by `MIN_TOP_HASH` when they
//! would collide with a state). The numbering is Go's, so `runtime/map.go` reads across.

/// Slots per bucket (Go's `bucketCnt`).
pub(crate) const BUCKET_CNT: usize = 8;

pub(crate) const EMPTY_REST: u8 = 0; // this slot is empty, and so is every later slot and overflow
pub(crate) const EMPTY_ONE: u8 = 1; // this slot is empty (a tombstone); later slots may be full
pub(crate) const EVACUATED_X: u8 = 2; // key/elem moved to the first half of the larger table
pub(crate) const EVACUATED_Y: u8 = 3; // same as above, but evacuated to the second half
pub(crate) const EVACUATED_EMPTY: u8 = 4; // slot was empty when its bucket was evacuated
pub(crate) const MIN_TOP_HASH: u8 = 5; // minimum tophash of a normally filled slot

const LO: u64 = 0x0101_0101_0101_0101;
const HI7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The tophash of `hash`: its top byte, moved above the state values.
#[inline]
pub(crate) fn tophash(hash: u64) -> u8 {
    let top = (hash >> 56) as u8;
    if top < MIN_TOP_HASH { top + MIN_TOP_HASH } else { top }
}

/// `true` for `EMPTY_REST` and `EMPTY_ONE` (Go's `isEmpty`).
#[inline]
pub(crate) fn is_empty(top: u8) -> bool {
    top <= EMPTY_ONE
}

/// `true` when a bucket's first tophash byte says it was evacuated (Go's `evacuated`).
#[inline]
pub(crate) fn is_evacuated_mark(top0: u8) -> bool {
    top0 > EMPTY_ONE && top0 < MIN_TOP_HASH
}

/// The 8 tophash bytes of one bucket as one little-endian word: byte `i` is slot `i`.
#[derive(Clone, Copy)]
pub(crate) struct Group(pub(crate) u64);

impl Group {
    #[inline]
    pub(crate) fn load(tophash: &[u8; BUCKET_CNT]) -> Self {
        Group(u64::from_le_bytes(*tophash))
    }

    /// High bit of every byte that is exactly zero. Exact (no false positives): the `+ HI7`
    /// carry stays inside each byte because the high bit was masked off first.
    #[inline]
    fn zero_bytes(x: u64) -> BitMask {
        BitMask(!(((x & HI7).wrapping_add(HI7)) | x | HI7))
    }

    /// Slots whose tophash equals `top`.
    #[inline]
    pub(crate) fn match_byte(self, top: u8) -> BitMask {
        Self::zero_bytes(self.0 ^ (LO.wrapping_mul(u64::from(top))))
    }

    /// Slots that are `EMPTY_REST` or `EMPTY_ONE`.
    #[inline]
    pub(crate) fn match_empty(self) -> BitMask {
        Self::zero_bytes(self.0 & !LO)
    }

    /// Slots that are exactly `EMPTY_ONE`.
    #[inline]
    pub(crate) fn match_empty_one(self) -> BitMask {
        self.match_byte(EMPTY_ONE)
    }

    /// Slots that hold a live entry (tophash >= `MIN_TOP_HASH`).
    #[inline]
    pub(crate) fn match_full(self) -> BitMask {
        // Per byte: high bit set, or the low 7 bits plus (0x80 - MIN_TOP_HASH) carry into the
        // high bit exactly when the byte is >= MIN_TOP_HASH. The sum stays below 0x100, so no
        // carry crosses into the next byte.
        const BIAS: u64 = LO * (0x80 - MIN_TOP_HASH as u64);
        BitMask((((self.0 & HI7).wrapping_add(BIAS)) | self.0) & (LO << 7))
    }

    /// `true` when some slot is `EMPTY_REST`: the chain ends in this bucket.
    #[inline]
    pub(crate) fn has_empty_rest(self) -> bool {
        Self::zero_bytes(self.0).any()
    }

    /// `true` when all 8 slots are empty (`EMPTY_REST` or `EMPTY_ONE`).
    #[inline]
    pub(crate) fn all_empty(self) -> bool {
        self.0 & !LO == 0
    }
}

/// One bit (the high bit of the byte) per matching slot.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct BitMask(pub(crate) u64);

impl BitMask {
    #[inline]
    pub(crate) fn any(self) -> bool {
        self.0 != 0
    }

    /// Number of matching slots.
    #[inline]
    pub(crate) fn count(self) -> usize {
        self.0.count_ones() as usize
    }

    /// Index of the lowest matching slot.
    #[inline]
    pub(crate) fn lowest(self) -> Option<usize> {
        if self.0 == 0 { None } else { Some(self.0.trailing_zeros() as usize / 8) }
    }
}

impl Iterator for BitMask {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let slot = self.lowest()?;
        self.0 &= self.0 - 1;
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(m: BitMask) -> Vec<usize> {
        m.collect()
    }

    #[test]
    fn tophash_moves_small_top_bytes_above_the_states() {
        assert_eq!(tophash(0x00ff_ffff_ffff_ffff), 5);
        assert_eq!(tophash(0x04ff_ffff_ffff_ffff), 9);
        assert_eq!(tophash(0x0500_0000_0000_0000), 5);
        assert_eq!(tophash(0xff00_0000_0000_0000), 0xff);
    }

    #[test]
    fn match_byte_is_exact_even_next_to_zero_bytes() {
        // A naive SWAR zero test reports a false match in the byte above a true zero byte
        // (0x01 above 0x00 after the xor): the exact version must not.
        let g = Group::load(&[7, 0, 1, 7, 0x87, 6, 7, 8]);
        assert_eq!(slots(g.match_byte(7)), vec![0, 3, 6]);
        assert_eq!(slots(g.match_byte(6)), vec![5]);
        assert_eq!(slots(g.match_byte(0x87)), vec![4]);
        assert_eq!(slots(g.match_byte(9)), Vec::<usize>::new());
    }

    #[test]
    fn match_empty_sees_emptyrest_and_emptyone_only() {
        let g = Group::load(&[0, 1, 2, 3, 4, 5, 1, 0]);
        assert_eq!(slots(g.match_empty()), vec![0, 1, 6, 7]);
        assert_eq!(slots(g.match_empty_one()), vec![1, 6]);
        assert_eq!(slots(g.match_full()), vec![5]);
        assert!(g.has_empty_rest());
        assert!(!g.all_empty());
        assert!(Group::load(&[1, 1, 0, 0, 0, 0, 0, 0]).all_empty());
        assert!(!Group::load(&[9, 9, 9, 9, 9, 9, 9, 1]).has_empty_rest());
    }

    #[test]
    fn evacuated_marks_are_the_three_middle_states() {
        let marks: Vec<u8> = (0..=6).filter(|&t| is_evacuated_mark(t)).collect();
        assert_eq!(marks, vec![EVACUATED_X, EVACUATED_Y, EVACUATED_EMPTY]);
        assert!(is_empty(EMPTY_REST) && is_empty(EMPTY_ONE) && !is_empty(EVACUATED_X));
    }
}
