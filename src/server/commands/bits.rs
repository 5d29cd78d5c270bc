//! Bit commands on string values: SETBIT GETBIT BITCOUNT (`start end`, `BYTE|BIT`). Semantics
//! and error strings follow Redis 7's `bitops.c`. Bit 0 is the most significant bit of byte 0.

use bytes::Bytes;

use super::{Ctx, ERR_SYNTAX, int_arg, is, parse_i64, reserve_more};
use crate::server::resp::{PROTO_MAX_BULK_LEN, Reply};
use crate::server::store::Entry;

const ERR_BIT_OFFSET: &str = "ERR bit offset is not an integer or out of range";

/// Redis's `getBitOffsetFromArgument`: a `string2ll` integer, not negative, whose byte is within
/// proto-max-bulk-len (so at most 2^32 - 1 at the default 512 MB).
fn bit_offset(arg: &[u8]) -> Result<u64, Reply> {
    match parse_i64(arg) {
        Some(offset) if offset >= 0 && ((offset >> 3) as usize) < PROTO_MAX_BULK_LEN => {
            Ok(offset as u64)
        }
        _ => Err(Reply::error(ERR_BIT_OFFSET)),
    }
}

/// SETBIT's offset and bit, checked in Redis's order (offset first).
fn setbit_args(args: &[Bytes]) -> Result<(u64, bool), Reply> {
    let offset = bit_offset(&args[2])?;
    match parse_i64(&args[3]) {
        Some(0) => Ok((offset, false)),
        Some(1) => Ok((offset, true)),
        _ => Err(Reply::error("ERR bit is not an integer or out of range")),
    }
}

/// The byte holding bit `offset`, and that bit's mask within it.
fn bit_position(offset: u64) -> (usize, u8) {
    ((offset >> 3) as usize, 1 << (7 - (offset & 7)))
}

/// The zero bytes SETBIT would add to the key's value as it is now, up to and including the
/// offset's byte (0 when the command will fail or the value is long enough).
pub(super) fn setbit_growth(ctx: &Ctx<'_, '_>, args: &[Bytes]) -> usize {
    let Ok((offset, _)) = setbit_args(args) else {
        return 0;
    };
    let needed = bit_position(offset).0 + 1;
    let current =
        ctx.lock_key(&args[1]).peek_live(&args[1], ctx.now_ms).map_or(0, |e| e.value.cost());
    needed.saturating_sub(current)
}

/// Redis's `setbitCommand`: replies with the bit's old value. A value too short is padded with
/// zero bytes first; a bit already as asked, in a value long enough, is no change (watchers are
/// not told).
pub fn setbit(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let (offset, on) = match setbit_args(args) {
        Ok(checked) => checked,
        Err(e) => return e,
    };
    let (byte, mask) = bit_position(offset);
    let now = ctx.now_ms;
    let key = &args[1];
    loop {
        let mut guard = ctx.lock_key(key);
        let current = match guard.get_live(key, now).map(|e| e.value.as_bytes()) {
            Some(Err(wrong)) => return wrong.into(),
            Some(Ok(bytes)) => Some(bytes),
            None => None,
        };
        let len = current.map_or(0, <[u8]>::len);
        if byte < len {
            let old = current.is_some_and(|v| v[byte] & mask != 0);
            if old != on {
                guard.modify_value(key, |v| v[byte] ^= mask);
            }
            return Reply::Integer(i64::from(old));
        }
        let growth = byte + 1 - len;
        if growth > ctx.reserved {
            // The value is shorter than when room was made for this write (another client
            // replaced it): make room for the difference before allocating it.
            drop(guard);
            match reserve_more(ctx, &[key], growth) {
                Ok(()) => continue,
                Err(oom) => return oom,
            }
        }
        // A new allocation of exactly the padded length: the accounting counts its length.
        let mut value = vec![0u8; byte + 1];
        value[..len].copy_from_slice(current.unwrap_or_default());
        if on {
            value[byte] |= mask;
        }
        if let Err(value) = guard.set_value(key, Bytes::from(value)) {
            guard.insert_owned(key.clone(), Entry::new(value, 0, now));
        }
        return Reply::Integer(0);
    }
}

pub fn getbit(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let offset = match bit_offset(&args[2]) {
        Ok(offset) => offset,
        Err(e) => return e,
    };
    let (byte, mask) = bit_position(offset);
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    let set = match guard.lookup_read(&args[1], now).map(|e| e.value.as_bytes()) {
        Some(Err(wrong)) => return wrong.into(),
        Some(Ok(bytes)) => bytes.get(byte).is_some_and(|b| b & mask != 0),
        None => false,
    };
    Reply::Integer(i64::from(set))
}

/// The range BITCOUNT counts, as `bitcountCommand` resolves it against a value of `len` bytes:
/// `None` for nothing to count (an empty range or value), else the bytes `first..=last` with the
/// bits of the edge bytes outside a BIT range masked off.
#[derive(Debug, PartialEq, Eq)]
struct CountRange {
    first: usize,
    last: usize,
    /// Bits of byte `first` before the range (BIT unit only).
    first_mask: u8,
    /// Bits of byte `last` after the range (BIT unit only).
    last_mask: u8,
}

/// Redis's `bitcountCommand` argument handling for a stored value of `len` bytes: `start end`,
/// negative from the end, clamped to the value; `BYTE` (the default) or `BIT` units.
fn count_range(args: &[Bytes], len: usize) -> Result<Option<CountRange>, Reply> {
    let total = len as i64;
    let (mut start, mut end, bits) = match args.len() {
        2 => (0, total - 1, false),
        4 | 5 => {
            let start = int_arg(&args[2])?;
            let end = int_arg(&args[3])?;
            if start < 0 && end < 0 && start > end {
                return Ok(None);
            }
            let bits = match args.get(4) {
                None => false,
                Some(unit) if is(unit, "BIT") => true,
                Some(unit) if is(unit, "BYTE") => false,
                Some(_) => return Err(Reply::error(ERR_SYNTAX)),
            };
            let total = if bits { total << 3 } else { total };
            let resolve = |i: i64| if i < 0 { (total + i).max(0) } else { i };
            (resolve(start), resolve(end).min(total - 1), bits)
        }
        _ => return Err(Reply::error(ERR_SYNTAX)),
    };
    if start > end {
        return Ok(None);
    }
    let (mut first_mask, mut last_mask) = (0, 0);
    if bits {
        first_mask = !(0xffu16 >> (start & 7)) as u8;
        last_mask = (0xffu16 >> ((end & 7) + 1)) as u8;
        start >>= 3;
        end >>= 3;
    }
    Ok(Some(CountRange { first: start as usize, last: end as usize, first_mask, last_mask }))
}

/// The set bits of `bytes`, eight bytes at a time.
fn popcount(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let mut count: u64 = (&mut words)
        .map(|w| u64::from_ne_bytes(w.try_into().unwrap_or_default()).count_ones() as u64)
        .sum();
    count += words.remainder().iter().map(|b| b.count_ones() as u64).sum::<u64>();
    count
}

/// Redis's `bitcountCommand`. A missing key counts 0 before any argument is read (so
/// `BITCOUNT missing x` is 0, not an error).
pub fn bitcount(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    // The value is counted after the lock is let go: a long one is shared, not copied.
    let value = match ctx.lock_key(&args[1]).lookup_read(&args[1], now) {
        Some(entry) => entry.value.clone(),
        None => return Reply::Integer(0),
    };
    let value = match value.as_bytes() {
        Ok(bytes) => bytes,
        Err(wrong) => return wrong.into(),
    };
    let range = match count_range(args, value.len()) {
        Ok(Some(range)) => range,
        Ok(None) => return Reply::Integer(0),
        Err(e) => return e,
    };
    let edges = [value[range.first] & range.first_mask, value[range.last] & range.last_mask];
    Reply::Integer((popcount(&value[range.first..=range.last]) - popcount(&edges)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::copy_from_slice(a.as_bytes())).collect()
    }

    #[test]
    fn bit_offsets_stop_at_the_last_bit_of_proto_max_bulk_len() {
        assert_eq!(bit_offset(b"4294967295"), Ok(4_294_967_295));
        assert!(bit_offset(b"4294967296").is_err());
        assert!(bit_offset(b"-1").is_err());
        assert!(bit_offset(b"01").is_err());
        assert_eq!(bit_position(0), (0, 0x80));
        assert_eq!(bit_position(13), (1, 0x04));
    }

    #[test]
    fn count_ranges_resolve_like_bitcount_command() {
        let range = |list: &[&str], len| count_range(&args(list), len);
        let bytes = |first, last| Ok(Some(CountRange { first, last, first_mask: 0, last_mask: 0 }));
        assert_eq!(range(&["bitcount", "k"], 6), bytes(0, 5));
        assert_eq!(range(&["bitcount", "k", "-100", "-1"], 6), bytes(0, 5));
        assert_eq!(range(&["bitcount", "k", "0", "-100"], 6), bytes(0, 0));
        assert_eq!(range(&["bitcount", "k", "-1", "-2"], 6), Ok(None));
        assert_eq!(range(&["bitcount", "k", "100", "200"], 6), Ok(None));
        assert_eq!(range(&["bitcount", "k", "0", "-1"], 0), Ok(None));
        // Bits 5..=30: byte 0 without its first five bits, byte 3 without its last bit.
        let bits = CountRange { first: 0, last: 3, first_mask: 0xf8, last_mask: 0x01 };
        assert_eq!(range(&["bitcount", "k", "5", "30", "bit"], 6), Ok(Some(bits)));
        assert!(range(&["bitcount", "k", "0"], 6).is_err());
        assert!(range(&["bitcount", "k", "0", "1", "word"], 6).is_err());
    }

    #[test]
    fn popcount_counts_words_and_the_tail() {
        assert_eq!(popcount(b"foobar"), 26);
        assert_eq!(popcount(&[0xff; 19]), 152);
        assert_eq!(popcount(&[]), 0);
    }
}
