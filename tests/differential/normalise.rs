//! Replies that two correct servers may word differently, reduced to what both must agree on.
//! Everything else is compared exactly as sent.
//!
//! - TTL, PTTL: `-2` (no key) and `-1` (no TTL) exactly; any other value is "a TTL", because
//!   each server counts down from its own clock reading. Whether the TTL is the one set is
//!   checked through EXPIRETIME where it can be, and through GT/LT, PERSIST and the key's
//!   survival everywhere else.
//! - EXPIRETIME, PEXPIRETIME: exactly, except a deadline computed from a relative TTL ("now"
//!   plus at most a few days, below [`RELATIVE_HORIZON_SECONDS`]): the sequences' absolute
//!   times are far beyond it (commands.rs), so those deadlines are compared to the second.
//! - KEYS: the same keys in any order (each server lists its own table's order).
//! - RANDOMKEY: nil, or some key of the key space, not which one.
//!
//! SCAN, which takes more requests to normalise, is followed to its end by the harness and
//! compared as the sorted set of keys it returned ([`scan_result`]).

use std::collections::BTreeSet;

use super::commands::KEYS;
use super::frame;

/// Deadlines (in seconds since the epoch) below this come from relative TTLs: now is about
/// 1.8e9 and the longest relative TTL a few days, until 2065. The absolute times the sequences
/// use are 4e9 and above.
const RELATIVE_HORIZON_SECONDS: i64 = 3_000_000_000;

/// `reply` to `command` as it is compared.
pub fn normalise(command: &[Vec<u8>], reply: &[u8]) -> Vec<u8> {
    let name = command[0].to_ascii_uppercase();
    match (name.as_slice(), frame::integer(reply)) {
        (b"TTL" | b"PTTL", Some(ttl)) if ttl >= 0 => b":(a TTL)\r\n".to_vec(),
        (b"EXPIRETIME", Some(at)) if (0..RELATIVE_HORIZON_SECONDS).contains(&at) => {
            b":(now + a relative TTL)\r\n".to_vec()
        }
        (b"PEXPIRETIME", Some(at)) if (0..RELATIVE_HORIZON_SECONDS * 1000).contains(&at) => {
            b":(now + a relative TTL)\r\n".to_vec()
        }
        (b"KEYS" | b"SMEMBERS" | b"SINTER" | b"SUNION" | b"SDIFF" | b"HKEYS" | b"HVALS", _)
        | (b"SPOP", _) => sorted(reply),
        (b"HGETALL", _) => sorted_pairs(reply),
        (b"HSCAN" | b"SSCAN", _) => sorted_scan_page(reply, name.as_slice() == b"HSCAN"),
        // Which elements a random pick returns is each server's own; how many is not.
        (b"HRANDFIELD" | b"SRANDMEMBER", _) => match frame::elements(reply) {
            Some((b'*', elements)) => {
                format!("*{} (random picks)\r\n", elements.len()).into_bytes()
            }
            _ if frame::bulk_payload(reply).is_some() => b"$(a random pick)\r\n".to_vec(),
            _ => reply.to_vec(),
        },
        (b"RANDOMKEY", _) => match frame::bulk_payload(reply) {
            Some(key) if KEYS.contains(&key) => b"$(a key)\r\n".to_vec(),
            _ => reply.to_vec(),
        },
        _ => reply.to_vec(),
    }
}

/// An array reply with its elements sorted; any other reply as it is.
fn sorted(reply: &[u8]) -> Vec<u8> {
    let Some((kind @ (b'*' | b'~'), mut elements)) = frame::elements(reply) else {
        return reply.to_vec();
    };
    elements.sort_unstable();
    let mut out = format!("{}{}\r\n", kind as char, elements.len()).into_bytes();
    elements.iter().for_each(|e| out.extend_from_slice(e));
    out
}

/// An array reply of field, value pairs with the pairs sorted; any other reply as it is.
fn sorted_pairs(reply: &[u8]) -> Vec<u8> {
    let (header, elements) = match frame::elements(reply) {
        Some((b'*', elements)) => (format!("*{}\r\n", elements.len()), elements),
        Some((b'%', elements)) => (format!("%{}\r\n", elements.len() / 2), elements),
        _ => return reply.to_vec(),
    };
    let mut pairs: Vec<Vec<u8>> = elements.chunks(2).map(|p| p.concat()).collect();
    pairs.sort_unstable();
    let mut out = header.into_bytes();
    pairs.iter().for_each(|p| out.extend_from_slice(p));
    out
}

/// A collection's SCAN page (cursor, elements) with its elements (or pairs) sorted.
fn sorted_scan_page(reply: &[u8], pairs: bool) -> Vec<u8> {
    let Some((b'*', page)) = frame::elements(reply) else {
        return reply.to_vec();
    };
    let [cursor, items] = page.as_slice() else {
        return reply.to_vec();
    };
    let mut out = b"*2\r\n".to_vec();
    out.extend_from_slice(cursor);
    out.extend_from_slice(&if pairs { sorted_pairs(items) } else { sorted(items) });
    out
}

/// What a whole SCAN is compared as: the last page's shape, cursor 0, holding every key the
/// pages returned (each element as sent), sorted, each once.
pub fn scan_result(keys: &BTreeSet<Vec<u8>>) -> Vec<u8> {
    let mut out = format!("*2\r\n$1\r\n0\r\n*{}\r\n", keys.len()).into_bytes();
    keys.iter().for_each(|k| out.extend_from_slice(k));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn a_ttl_is_compared_as_missing_persistent_or_set() {
        let ttl = command(&["pttl", "k1"]);
        assert_eq!(normalise(&ttl, b":-2\r\n"), b":-2\r\n");
        assert_eq!(normalise(&ttl, b":-1\r\n"), b":-1\r\n");
        assert_eq!(normalise(&ttl, b":999\r\n"), normalise(&ttl, b":1000\r\n"));
        assert_eq!(normalise(&ttl, b":0\r\n"), normalise(&ttl, b":1000\r\n"));
    }

    #[test]
    fn only_a_deadline_from_a_relative_ttl_is_compared_loosely() {
        let at = command(&["EXPIRETIME", "k1"]);
        assert_eq!(normalise(&at, b":1800001000\r\n"), normalise(&at, b":1800001001\r\n"));
        assert_eq!(normalise(&at, b":4000000000\r\n"), b":4000000000\r\n");
        assert_eq!(normalise(&at, b":-9223372036854775\r\n"), b":-9223372036854775\r\n");
        let pat = command(&["PEXPIRETIME", "k1"]);
        assert_eq!(normalise(&pat, b":1800001000000\r\n"), normalise(&pat, b":1800001000999\r\n"));
        assert_eq!(normalise(&pat, b":4000000000500\r\n"), b":4000000000500\r\n");
    }

    #[test]
    fn keys_are_compared_in_any_order_and_randomkey_as_nil_or_a_key() {
        let keys = command(&["KEYS", "*"]);
        assert_eq!(
            normalise(&keys, b"*2\r\n$2\r\nk2\r\n$2\r\nk1\r\n"),
            b"*2\r\n$2\r\nk1\r\n$2\r\nk2\r\n"
        );
        let random = command(&["RANDOMKEY"]);
        assert_eq!(normalise(&random, b"$2\r\nk1\r\n"), normalise(&random, b"$2\r\nk5\r\n"));
        assert_eq!(normalise(&random, b"$-1\r\n"), b"$-1\r\n");
        assert_eq!(normalise(&random, b"$2\r\nzz\r\n"), b"$2\r\nzz\r\n");
    }
}
