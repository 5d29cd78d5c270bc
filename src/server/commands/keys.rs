//! Keyspace commands: DEL UNLINK EXISTS TYPE TOUCH EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL
//! EXPIRETIME PEXPIRETIME PERSIST DBSIZE FLUSHDB FLUSHALL KEYS SCAN RANDOMKEY.
//!
//! As in Redis, EXISTS, TYPE and the TTL family look a key up without marking it used
//! (`LOOKUP_NOTOUCH`): OBJECT IDLETIME and LRU eviction see the last read or write of its value.

use bytes::Bytes;
use rand::Rng;

use super::{Ctx, ERR_SYNTAX, int_arg, is};
use crate::server::glob::glob_match;
use crate::server::resp::Reply;

pub fn del(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let mut removed = 0;
    for key in &args[1..] {
        let mut guard = ctx.lock_key(key);
        if guard.get_live(key, now).is_some() && guard.remove(key).is_some() {
            removed += 1;
        }
    }
    Reply::Integer(removed)
}

pub fn exists(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let found =
        args[1..].iter().filter(|key| ctx.lock_key(key).peek_read(key, now).is_some()).count();
    Reply::Integer(found as i64)
}

/// Marks each key used now (for LRU and OBJECT IDLETIME); counts those that exist, a key named
/// twice twice.
pub fn touch(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let found =
        args[1..].iter().filter(|key| ctx.lock_key(key).lookup_read(key, now).is_some()).count();
    Reply::Integer(found as i64)
}

pub fn type_(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    Reply::Simple(guard.peek_read(&args[1], now).map_or("none", |e| e.value.kind().name()))
}

/// EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT with Redis 7's NX XX GT LT (`expireGenericCommand`).
fn expire_generic(
    ctx: &mut Ctx<'_, '_>,
    args: &[Bytes],
    seconds: bool,
    relative: bool,
    cmd: &str,
) -> Reply {
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &args[3..] {
        if is(opt, "NX") {
            nx = true;
        } else if is(opt, "XX") {
            xx = true;
        } else if is(opt, "GT") {
            gt = true;
        } else if is(opt, "LT") {
            lt = true;
        } else {
            // `%s`: the option up to a NUL, its bytes as sent.
            let mut text = b"ERR Unsupported option ".to_vec();
            text.extend_from_slice(super::c_string_prefix(opt, usize::MAX));
            return Reply::error(text);
        }
    }
    if nx && (xx || gt || lt) {
        return Reply::error("ERR NX and XX, GT or LT options at the same time are not compatible");
    }
    if gt && lt {
        return Reply::error("ERR GT and LT options at the same time are not compatible");
    }
    let value = match int_arg(&args[2]) {
        Ok(v) => v,
        Err(e) => return e,
    };
    let invalid = || Reply::error(format!("ERR invalid expire time in '{cmd}' command"));
    let mut when = value;
    if seconds {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return invalid();
        }
        when *= 1000;
    }
    let now = ctx.now_ms;
    if relative {
        let Some(abs) = when.checked_add(now as i64) else {
            return invalid();
        };
        when = abs;
    }
    let mut guard = ctx.lock_key(&args[1]);
    let Some(entry) = guard.get_live_mut(&args[1], now) else {
        return Reply::Integer(0);
    };
    let current = entry.expires_at_ms;
    // A key without TTL counts as an infinite TTL for GT/LT, as in Redis.
    let refused = (nx && current != 0)
        || (xx && current == 0)
        || (gt && (current == 0 || when <= current as i64))
        || (lt && current != 0 && when >= current as i64);
    if refused {
        return Reply::Integer(0);
    }
    if when <= now as i64 {
        guard.remove(&args[1]);
    } else {
        guard.set_expiry(&args[1], when as u64);
    }
    Reply::Integer(1)
}

pub fn expire(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, true, true, "expire")
}

pub fn pexpire(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, false, true, "pexpire")
}

pub fn expireat(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, true, false, "expireat")
}

pub fn pexpireat(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    expire_generic(ctx, args, false, false, "pexpireat")
}

/// -2 missing, -1 no TTL, else the remaining (or absolute) time in the unit asked.
fn ttl_generic(ctx: &mut Ctx<'_, '_>, key: &[u8], millis: bool, absolute: bool) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(key);
    let Some(entry) = guard.peek_read(key, now) else {
        return Reply::Integer(-2);
    };
    if entry.expires_at_ms == 0 {
        return Reply::Integer(-1);
    }
    let at = entry.expires_at_ms as i64;
    Reply::Integer(match (absolute, millis) {
        (true, true) => at,
        // Rounded to the nearest second, as Redis's `(ttl + 500) / 1000` (without its overflow
        // near i64::MAX, whose result it prints as if there were none).
        (true, false) => ((i128::from(at) + 500) / 1000) as i64,
        (false, true) => at - now as i64,
        (false, false) => (at - now as i64 + 500) / 1000,
    })
}

pub fn ttl(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, &args[1], false, false)
}

pub fn pttl(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, &args[1], true, false)
}

pub fn expiretime(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, &args[1], false, true)
}

pub fn pexpiretime(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    ttl_generic(ctx, &args[1], true, true)
}

pub fn persist(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    let has_ttl = guard.get_live(&args[1], now).is_some_and(|e| e.expires_at_ms != 0);
    Reply::Integer(i64::from(has_ttl && guard.set_expiry(&args[1], 0)))
}

pub fn dbsize(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> Reply {
    let shards = 0..ctx.node.store.shard_count();
    Reply::Integer(shards.map(|shard| ctx.lock_shard(shard).map().len()).sum::<usize>() as i64)
}

pub fn flushdb(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    match args.get(1) {
        None => {}
        Some(mode) if args.len() == 2 && (is(mode, "ASYNC") || is(mode, "SYNC")) => {}
        Some(_) => return Reply::error(ERR_SYNTAX),
    }
    let store = &ctx.node.store;
    for shard in 0..store.shard_count() {
        ctx.lock_shard(shard).clear();
    }
    Reply::ok()
}

pub fn keys(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let store = &ctx.node.store;
    let mut found = Vec::new();
    for shard in 0..store.shard_count() {
        let guard = ctx.lock_shard(shard);
        for (key, entry) in guard.map().iter() {
            if !entry.is_expired(now) && glob_match(&args[1], key) {
                found.push(Reply::Bulk(Bytes::copy_from_slice(key)));
            }
        }
    }
    Reply::Array(found)
}

/// A SCAN cursor as Redis's `parseScanCursorOrReply` reads it with `strtoul(.., 10)`: a C string
/// (up to the first NUL), an optional sign then decimal digits; "" is cursor 0 and a `-` wraps as
/// C's unsigned negation does (`-1` is `u64::MAX`). No leading space, nothing after the digits,
/// no overflow.
pub(super) fn parse_cursor(arg: &[u8]) -> Option<u64> {
    let text = super::c_string_prefix(arg, usize::MAX);
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() {
        // strtoul found no number: it points back at the start, which is valid only when empty.
        return text.is_empty().then_some(0);
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(if negative { value.wrapping_neg() } else { value })
}

/// The SCAN cursor spans shards: `engine_cursor * shards + shard`. The engine's reverse-binary
/// cursor gives Redis's guarantee within a shard; shards are visited in order.
pub fn scan(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let Some(cursor) = parse_cursor(&args[1]) else {
        return Reply::error("ERR invalid cursor");
    };
    let mut pattern: Option<&Bytes> = None;
    let mut count = 10usize;
    let mut type_filter: Option<&Bytes> = None;
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Reply::error(ERR_SYNTAX);
        };
        if is(&args[i], "MATCH") {
            pattern = Some(value);
        } else if is(&args[i], "COUNT") {
            match int_arg(value) {
                Ok(c) if c < 1 => return Reply::error(ERR_SYNTAX),
                Ok(c) => count = c as usize,
                Err(e) => return e,
            }
        } else if is(&args[i], "TYPE") {
            type_filter = Some(value);
        } else {
            return Reply::error(ERR_SYNTAX);
        }
        i += 2;
    }
    let store = &ctx.node.store;
    let shards = store.shard_count() as u64;
    let mut shard = cursor % shards;
    let mut engine_cursor = cursor / shards;
    let now = ctx.now_ms;
    let mut keys = Vec::new();
    // Visit at least `count` entries (a hint, as in Redis) or finish the scan.
    let mut visited = 0usize;
    let next = loop {
        let guard = ctx.lock_shard(shard as usize);
        engine_cursor =
            guard.map().scan(engine_cursor, count - visited.min(count - 1), |key, entry| {
                visited += 1;
                if entry.is_expired(now) {
                    return;
                }
                if pattern.is_some_and(|p| !glob_match(p, key)) {
                    return;
                }
                // Redis compares the type name case-insensitively; a name no type has keeps
                // nothing.
                if type_filter.is_some_and(|t| !is(t, entry.value.kind().name())) {
                    return;
                }
                keys.push(key.clone());
            });
        drop(guard);
        if engine_cursor == 0 {
            shard += 1;
            if shard == shards {
                break 0;
            }
        }
        if visited >= count {
            match engine_cursor.checked_mul(shards).and_then(|c| c.checked_add(shard)) {
                Some(c) => break c,
                None => return Reply::error("ERR invalid cursor"),
            }
        }
    };
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        Reply::Array(keys.iter().map(|k| Reply::Bulk(Bytes::copy_from_slice(k))).collect()),
    ])
}

pub fn randomkey(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> Reply {
    let store = &ctx.node.store;
    let now = ctx.now_ms;
    let mut rng = rand::rng();
    let n = store.shard_count();
    let start = rng.random_range(0..n);
    // Try random shards first, then every shard in order so a non-empty store always answers.
    for round in 0..n * 2 {
        let shard = if round < n { rng.random_range(0..n) } else { (start + round) % n };
        let guard = ctx.lock_shard(shard);
        if let Some((key, entry)) = guard.map().sample(rng.random())
            && !entry.is_expired(now)
        {
            return Reply::Bulk(Bytes::copy_from_slice(key));
        }
    }
    for shard in 0..n {
        let guard = ctx.lock_shard(shard);
        if let Some((key, _)) = guard.map().iter().find(|(_, e)| !e.is_expired(now)) {
            return Reply::Bulk(Bytes::copy_from_slice(key));
        }
    }
    Reply::Nil
}
