//! OBJECT ENCODING|FREQ|IDLETIME|REFCOUNT|HELP, as Redis 7's `objectCommand` (`object.c`)
//! answers for a string. The key is looked up without being marked used (`LOOKUP_NOTOUCH`); a
//! missing key is nil.
//!
//! Redis's answers describe its object for the value. Every value here is a string, and the node
//! keeps no object: ENCODING and REFCOUNT answer from the bytes, as Redis encodes a string it
//! stores from SET, MSET and the like (`tryObjectEncoding`). Redis also keeps the encoding a
//! command left (APPEND to a stored key, SETRANGE and SETBIT leave `raw`, INCRBYFLOAT `embstr`,
//! and COPY makes a shared integer its own); those histories are not kept here.

use bytes::Bytes;

use super::{Ctx, help, is, parse_i64, unknown_subcommand, wrong_sub_arity};
use crate::server::resp::Reply;
use crate::server::store::EvictionPolicy;

/// `OBJECT HELP`'s lines (Redis 7's text).
const OBJECT_HELP: &[&str] = &[
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
];

/// Redis's `OBJ_ENCODING_EMBSTR_SIZE_LIMIT`: longer strings are `raw`.
const EMBSTR_SIZE_LIMIT: usize = 44;

/// Redis's `OBJ_SHARED_INTEGERS`: integers below it are one shared object.
const SHARED_INTEGERS: i64 = 10_000;

/// The reference count Redis reports for a shared object (`OBJ_SHARED_REFCOUNT`, `INT_MAX`).
const SHARED_REFCOUNT: i64 = i32::MAX as i64;

/// Redis's error for OBJECT FREQ under a policy that is not LFU, as every policy here is.
const ERR_NOT_LFU: &str = "ERR An LFU maxmemory policy is not selected, access frequency not \
                           tracked. Please note that when switching between policies at runtime \
                           LRU and LFU data will take some time to adjust.";

/// The subcommand asked for.
#[derive(Debug, Clone, Copy)]
enum Subcommand {
    Encoding,
    Freq,
    IdleTime,
    RefCount,
}

/// The integer a string stores as, per `tryObjectEncoding`: at most 20 bytes that `string2l`
/// reads (no sign but `-`, no leading zero, no space).
fn as_integer(value: &[u8]) -> Option<i64> {
    if value.len() <= 20 { parse_i64(value) } else { None }
}

/// `int`, `embstr` or `raw`, as Redis encodes a string it stores.
fn encoding(value: &[u8]) -> &'static str {
    if as_integer(value).is_some() {
        "int"
    } else if value.len() <= EMBSTR_SIZE_LIMIT {
        "embstr"
    } else {
        "raw"
    }
}

/// Redis shares the objects of the integers 0 to 9999 (reported with `INT_MAX` references)
/// unless a maxmemory limit evicts by LRU or LFU, which needs an object per key.
fn refcount(value: &[u8], maxmemory: u64, policy: EvictionPolicy) -> i64 {
    let shares = maxmemory == 0 || policy != EvictionPolicy::AllkeysLru;
    match as_integer(value) {
        Some(n) if shares && (0..SHARED_INTEGERS).contains(&n) => SHARED_REFCOUNT,
        _ => 1,
    }
}

/// Seconds since the key was last used, as Redis's `estimateObjectIdleTime` counts them: the
/// difference of whole-second clocks.
fn idle_seconds(last_access_ms: u64, now_ms: u64) -> i64 {
    ((now_ms / 1000).saturating_sub(last_access_ms / 1000)) as i64
}

pub fn object(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let sub_arg = &args[1];
    let sub = if is(sub_arg, "HELP") {
        return help("object", args, OBJECT_HELP);
    } else if is(sub_arg, "ENCODING") {
        Subcommand::Encoding
    } else if is(sub_arg, "FREQ") {
        Subcommand::Freq
    } else if is(sub_arg, "IDLETIME") {
        Subcommand::IdleTime
    } else if is(sub_arg, "REFCOUNT") {
        Subcommand::RefCount
    } else {
        return unknown_subcommand(sub_arg, "object");
    };
    if args.len() != 3 {
        return wrong_sub_arity("object", sub_arg);
    }
    let now = ctx.now_ms;
    let store = &ctx.node.store;
    let mut guard = ctx.lock_key(&args[2]);
    let Some(entry) = guard.peek_read(&args[2], now) else {
        return Reply::Nil;
    };
    match sub {
        // A hash or a set is always an engine map here, never Redis's listpack or intset.
        Subcommand::Encoding => match entry.value.as_bytes() {
            Ok(bytes) => Reply::bulk_str(encoding(bytes)),
            Err(_) => Reply::bulk_str("hashtable"),
        },
        Subcommand::Freq => Reply::error(ERR_NOT_LFU),
        Subcommand::IdleTime => Reply::Integer(idle_seconds(entry.last_access_ms, now)),
        Subcommand::RefCount => {
            let value = entry.value.as_bytes().unwrap_or_default();
            let shared =
                entry.value.is_string() && refcount(value, store.maxmemory(), store.policy()) != 1;
            Reply::Integer(if shared { SHARED_REFCOUNT } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_follow_try_object_encoding() {
        for (value, expected) in [
            (&b"123"[..], "int"),
            (b"-9223372036854775808", "int"),
            (b"9223372036854775808", "embstr"),
            (b"0123", "embstr"),
            (b"+1", "embstr"),
            (b"-0", "embstr"),
            (b" 1", "embstr"),
            (b"", "embstr"),
            (&[b'x'; 44], "embstr"),
            (&[b'x'; 45], "raw"),
        ] {
            assert_eq!(encoding(value), expected, "{value:?}");
        }
    }

    #[test]
    fn small_integers_are_shared_unless_lru_evicts() {
        let lru = EvictionPolicy::AllkeysLru;
        assert_eq!(refcount(b"0", 0, EvictionPolicy::Noeviction), SHARED_REFCOUNT);
        assert_eq!(refcount(b"9999", 1 << 20, EvictionPolicy::VolatileTtl), SHARED_REFCOUNT);
        assert_eq!(refcount(b"9999", 0, lru), SHARED_REFCOUNT);
        assert_eq!(refcount(b"9999", 1 << 20, lru), 1);
        assert_eq!(refcount(b"10000", 0, EvictionPolicy::Noeviction), 1);
        assert_eq!(refcount(b"-5", 0, EvictionPolicy::Noeviction), 1);
        assert_eq!(refcount(b"text", 0, EvictionPolicy::Noeviction), 1);
    }

    #[test]
    fn idle_time_counts_whole_second_clock_ticks() {
        assert_eq!(idle_seconds(10_900, 11_100), 1);
        assert_eq!(idle_seconds(10_000, 10_999), 0);
        assert_eq!(idle_seconds(5_000, 4_000), 0);
    }
}
