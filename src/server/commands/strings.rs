//! String commands: GET SET (EX PX EXAT PXAT NX XX KEEPTTL GET) SETNX SETEX PSETEX GETSET GETDEL
//! GETEX MGET MSET MSETNX INCR DECR INCRBY DECRBY INCRBYFLOAT APPEND STRLEN GETRANGE SETRANGE.
//! Semantics and error strings follow Redis 7's `t_string.c`.

use bytes::{Bytes, BytesMut};

use super::long_double::{IncrError, incr_by_float};
use super::{
    Ctx, ERR_NOT_INTEGER, ERR_SYNTAX, Locked, int_arg, is, parse_i64, reserve_more, wrong_arity,
};
use crate::server::resp::{PROTO_MAX_BULK_LEN, Reply};
use crate::server::store::Entry;
use crate::server::value::Value;

/// A stored string for a reply, or `-WRONGTYPE` for a hash or a set. An inline one is copied
/// along in the reply, and a short shared one into a new buffer: cheaper than sharing it, which
/// touches the shared allocation's reference count (another cache line, written) twice per
/// reply.
fn reply_value(value: &Value) -> Reply {
    match value.as_bytes() {
        Err(wrong) => wrong.into(),
        Ok(_) if value.is_inline() => Reply::Value(value.clone()),
        Ok(bytes) if bytes.len() <= 64 => Reply::Bulk(Bytes::copy_from_slice(bytes)),
        Ok(_) => Reply::Bulk(value.to_bytes()),
    }
}

/// The expiry requested by SET/GETEX options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    /// Leave the key without a TTL (SET) / unchanged (GETEX).
    Unset,
    /// Absolute Unix milliseconds.
    At(u64),
    KeepTtl,
    Persist,
}

/// Redis's `getExpireMillisecondsOrReply`: relative units become absolute; non-positive or
/// overflowing times are `invalid expire time in '<cmd>' command`.
fn expire_at(
    arg: &[u8],
    seconds: bool,
    relative: bool,
    now_ms: u64,
    cmd: &str,
) -> Result<u64, Reply> {
    let value = int_arg(arg)?;
    let invalid = || Reply::error(format!("ERR invalid expire time in '{cmd}' command"));
    if value <= 0 || (seconds && value > i64::MAX / 1000) {
        return Err(invalid());
    }
    let mut ms = if seconds { value * 1000 } else { value };
    if relative {
        ms = ms.checked_add(now_ms as i64).ok_or_else(invalid)?;
    }
    Ok(ms as u64)
}

pub fn get(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    match guard.lookup_read(&args[1], now) {
        Some(entry) => reply_value(&entry.value),
        None => Reply::Nil,
    }
}

#[derive(Debug, Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    expiry: Option<Expiry>,
}

/// The expiry options SET and GETEX share, as `(in_seconds, relative)`: EX, PX, EXAT, PXAT.
fn expiry_unit(arg: &[u8]) -> Option<(bool, bool)> {
    if is(arg, "EX") {
        Some((true, true))
    } else if is(arg, "PX") {
        Some((false, true))
    } else if is(arg, "EXAT") {
        Some((true, false))
    } else if is(arg, "PXAT") {
        Some((false, false))
    } else {
        None
    }
}

/// What SET's and GETEX's options ask for before the expire time is checked: Redis's
/// `parseExtendedStringArgumentsOrReply` only collects flags and remembers the time argument,
/// which is checked later (SET: before the key is looked up; GETEX: after, so a missing key
/// answers nil whatever the time). Repeating an option is allowed (the last time wins); only a
/// conflicting one is a syntax error.
#[derive(Debug, Default)]
struct ExtendedArgs<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// The expire option's unit `(in_seconds, relative)` and its time argument, unchecked.
    expire: Option<((bool, bool), &'a Bytes)>,
}

/// Redis's `parseExtendedStringArgumentsOrReply` for SET (`for_set`) or GETEX, from `args[first]`.
fn parse_extended_args(
    args: &[Bytes],
    first: usize,
    for_set: bool,
) -> Result<ExtendedArgs<'_>, Reply> {
    let mut opts = ExtendedArgs::default();
    let mut i = first;
    while i < args.len() {
        let arg = &args[i];
        let next = args.get(i + 1);
        if let Some(unit) = expiry_unit(arg) {
            let other_unit = opts.expire.is_some_and(|(u, _)| u != unit);
            match next {
                Some(value) if !(opts.keepttl || opts.persist || other_unit) => {
                    opts.expire = Some((unit, value));
                    i += 2;
                    continue;
                }
                _ => return Err(Reply::error(ERR_SYNTAX)),
            }
        }
        if for_set && is(arg, "NX") && !opts.xx {
            opts.nx = true;
        } else if for_set && is(arg, "XX") && !opts.nx {
            opts.xx = true;
        } else if for_set && is(arg, "GET") {
            opts.get = true;
        } else if for_set && is(arg, "KEEPTTL") && opts.expire.is_none() {
            opts.keepttl = true;
        } else if !for_set && is(arg, "PERSIST") && opts.expire.is_none() {
            opts.persist = true;
        } else {
            return Err(Reply::error(ERR_SYNTAX));
        }
        i += 1;
    }
    Ok(opts)
}

impl ExtendedArgs<'_> {
    /// The expiry asked for, the time argument checked as Redis's `getExpireMillisecondsOrReply`.
    fn expiry(&self, now_ms: u64, cmd: &str) -> Result<Expiry, Reply> {
        Ok(match self.expire {
            Some(((seconds, relative), value)) => {
                Expiry::At(expire_at(value, seconds, relative, now_ms, cmd)?)
            }
            None if self.keepttl => Expiry::KeepTtl,
            None if self.persist => Expiry::Persist,
            None => Expiry::Unset,
        })
    }
}

fn parse_set_options(args: &[Bytes], now_ms: u64) -> Result<SetOptions, Reply> {
    let parsed = parse_extended_args(args, 3, true)?;
    let expiry = match parsed.expiry(now_ms, "set")? {
        Expiry::Unset => None,
        expiry => Some(expiry),
    };
    Ok(SetOptions { nx: parsed.nx, xx: parsed.xx, get: parsed.get, expiry })
}

pub fn set(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let opts = match parse_set_options(args, ctx.now_ms) {
        Ok(o) => o,
        Err(e) => return e,
    };
    set_generic(ctx, args[1].clone(), args[2].clone(), opts)
}

fn set_generic(ctx: &mut Ctx<'_, '_>, key: Bytes, value: Bytes, opts: SetOptions) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&key);
    if !(opts.nx || opts.xx || opts.get) && opts.expiry.is_none() {
        // Plain SET: one upsert, no read of the old entry first. A replaced entry that had
        // expired counts as expired, as Redis's lookupKeyWrite would have counted it.
        if guard.insert(key, Entry::new(value, 0, now)).is_some_and(|old| old.is_expired(now)) {
            ctx.node.store.expired_total.inc();
        }
        return Reply::ok();
    }
    // SET ... GET reads the old value as GET does (a keyspace hit or miss); NX and XX only look.
    let old = if opts.get { guard.lookup_read(&key, now) } else { guard.get_live(&key, now) };
    // SET ... GET of a hash or a set is refused whole, as Redis's `getGenericCommand` refuses it
    // before anything is set; without GET, SET replaces a value of any kind.
    if opts.get
        && let Some(Err(wrong)) = old.map(|e| e.value.as_bytes())
    {
        return wrong.into();
    }
    let old = old.cloned();
    let ok_reply = |old: &Option<Entry>| {
        if opts.get {
            old.as_ref().map_or(Reply::Nil, |e| reply_value(&e.value))
        } else {
            Reply::ok()
        }
    };
    if (opts.nx && old.is_some()) || (opts.xx && old.is_none()) {
        return if opts.get { ok_reply(&old) } else { Reply::Nil };
    }
    let expires_at_ms = match opts.expiry {
        Some(Expiry::At(at)) => at,
        Some(Expiry::KeepTtl) => old.as_ref().map_or(0, |e| e.expires_at_ms),
        _ => 0,
    };
    if expires_at_ms != 0 && expires_at_ms <= now {
        // Redis sets and deletes at once: an already-past EXAT/PXAT leaves no key.
        guard.remove(&key);
    } else {
        guard.insert(key, Entry::new(value, expires_at_ms, now));
    }
    ok_reply(&old)
}

pub fn setnx(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    if guard.get_live(&args[1], now).is_some() {
        return Reply::Integer(0);
    }
    guard.insert(args[1].clone(), Entry::new(args[2].clone(), 0, now));
    Reply::Integer(1)
}

fn setex_generic(ctx: &mut Ctx<'_, '_>, args: &[Bytes], seconds: bool, cmd: &str) -> Reply {
    let at = match expire_at(&args[2], seconds, true, ctx.now_ms, cmd) {
        Ok(at) => at,
        Err(e) => return e,
    };
    let opts = SetOptions { expiry: Some(Expiry::At(at)), ..SetOptions::default() };
    set_generic(ctx, args[1].clone(), args[3].clone(), opts)
}

pub fn setex(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    setex_generic(ctx, args, true, "setex")
}

pub fn psetex(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    setex_generic(ctx, args, false, "psetex")
}

pub fn getset(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let opts = SetOptions { get: true, ..SetOptions::default() };
    set_generic(ctx, args[1].clone(), args[2].clone(), opts)
}

pub fn getdel(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    match guard.lookup_read(&args[1], now).map(|e| e.value.as_bytes()) {
        None => return Reply::Nil,
        Some(Err(wrong)) => return wrong.into(),
        Some(Ok(_)) => {}
    }
    guard.remove(&args[1]).map_or(Reply::Nil, |e| Reply::Bulk(e.value.into_bytes()))
}

pub fn getex(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let parsed = match parse_extended_args(args, 2, false) {
        Ok(parsed) => parsed,
        Err(e) => return e,
    };
    let mut guard = ctx.lock_key(&args[1]);
    let Some(entry) = guard.lookup_read_mut(&args[1], now) else {
        return Reply::Nil;
    };
    if let Err(wrong) = entry.value.as_bytes() {
        return wrong.into();
    }
    let expiry = match parsed.expiry(now, "getex") {
        Ok(expiry) => expiry,
        Err(e) => return e,
    };
    let reply = reply_value(&entry.value);
    match expiry {
        Expiry::At(at) if at <= now => {
            guard.remove(&args[1]);
        }
        Expiry::At(at) => {
            guard.set_expiry(&args[1], at);
        }
        Expiry::Persist => {
            guard.set_expiry(&args[1], 0);
        }
        Expiry::Unset | Expiry::KeepTtl => {}
    }
    reply
}

pub fn mget(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let values = args[1..]
        .iter()
        .map(|key| {
            let mut guard = ctx.lock_key(key);
            // MGET answers nil for a hash or a set, as Redis does.
            guard
                .lookup_read(key, now)
                .filter(|e| e.value.is_string())
                .map_or(Reply::Nil, |e| reply_value(&e.value))
        })
        .collect();
    Reply::Array(values)
}

pub fn mset(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    if args.len().is_multiple_of(2) {
        return wrong_arity(if is(&args[0], "msetnx") { "msetnx" } else { "mset" });
    }
    let now = ctx.now_ms;
    // All shards locked together so no reader sees half of an MSET.
    let shards = args[1..].chunks(2).map(|p| ctx.node.store.shard_of(&p[0])).collect();
    let mut guards = ctx.lock_many(shards);
    for pair in args[1..].chunks(2) {
        let shard = ctx.node.store.shard_of(&pair[0]);
        if let Some(g) = guards.iter_mut().find(|g| g.index == shard) {
            g.insert(pair[0].clone(), Entry::new(pair[1].clone(), 0, now));
        }
    }
    Reply::ok()
}

pub fn msetnx(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    if args.len().is_multiple_of(2) {
        return wrong_arity("msetnx");
    }
    let now = ctx.now_ms;
    let store = &ctx.node.store;
    let shards = args[1..].chunks(2).map(|p| store.shard_of(&p[0])).collect();
    let mut guards = ctx.lock_many(shards);
    let guard_of =
        |shard: usize, guards: &[Locked<'_, '_>]| guards.iter().position(|g| g.index == shard);
    for pair in args[1..].chunks(2) {
        if let Some(i) = guard_of(store.shard_of(&pair[0]), &guards)
            && guards[i].get_live(&pair[0], now).is_some()
        {
            return Reply::Integer(0);
        }
    }
    for pair in args[1..].chunks(2) {
        if let Some(i) = guard_of(store.shard_of(&pair[0]), &guards) {
            guards[i].insert(pair[0].clone(), Entry::new(pair[1].clone(), 0, now));
        }
    }
    Reply::Integer(1)
}

fn incr_generic(ctx: &mut Ctx<'_, '_>, key: &Bytes, by: i64) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(key);
    // Read, checked and rewritten in place, or created as "0" first: one probe either way.
    let zero = || Entry::new(Value::copy_from_slice(b"0"), 0, now);
    let updated = guard.upsert_live(key, now, zero, |entry| {
        let current =
            parse_i64(entry.value.as_bytes()?).ok_or_else(|| Reply::error(ERR_NOT_INTEGER))?;
        let next = current
            .checked_add(by)
            .ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
        entry.value = Value::copy_from_slice(itoa::Buffer::new().format(next).as_bytes());
        Ok(next)
    });
    match updated {
        Ok(next) => Reply::Integer(next),
        Err(reply) => reply,
    }
}

pub fn incr(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    incr_generic(ctx, &args[1], 1)
}

pub fn decr(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    incr_generic(ctx, &args[1], -1)
}

pub fn incrby(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    match int_arg(&args[2]) {
        Ok(by) => incr_generic(ctx, &args[1], by),
        Err(e) => e,
    }
}

pub fn decrby(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    match int_arg(&args[2]) {
        Ok(i64::MIN) => Reply::error("ERR decrement would overflow"),
        Ok(by) => incr_generic(ctx, &args[1], -by),
        Err(e) => e,
    }
}

pub fn incrbyfloat(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let key = &args[1];
    loop {
        let mut guard = ctx.lock_key(key);
        let current = match guard.get_live(key, now).map(|entry| entry.value.as_bytes()) {
            Some(Err(wrong)) => return wrong.into(),
            Some(Ok(bytes)) => Some(bytes),
            None => None,
        };
        let current_len = current.map_or(0, <[u8]>::len);
        let value = match incr_by_float(current, &args[2]) {
            Ok(text) => Bytes::from(text),
            Err(IncrError::NotAFloat) => return Reply::error("ERR value is not a valid float"),
            Err(IncrError::NanOrInfinity) => {
                return Reply::error("ERR increment would produce NaN or Infinity");
            }
        };
        let growth = value.len().saturating_sub(current_len);
        if growth > ctx.reserved {
            // Past the f64 range room was made for (results up to 4934 bytes): make room for
            // what the value grows by before storing it, as SETRANGE does.
            drop(guard);
            match reserve_more(ctx, &[key], growth) {
                Ok(()) => continue,
                Err(oom) => return oom,
            }
        }
        if let Err(value) = guard.set_value(key, value.clone()) {
            guard.insert(key.clone(), Entry::new(value, 0, now));
        }
        return Reply::Bulk(value);
    }
}

pub fn append(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    match guard.get_live(&args[1], now) {
        None => {
            guard.insert(args[1].clone(), Entry::new(args[2].clone(), 0, now));
            Reply::Integer(args[2].len() as i64)
        }
        Some(entry) => {
            let current = match entry.value.as_bytes() {
                Ok(bytes) => bytes,
                Err(wrong) => return wrong.into(),
            };
            let total = current.len() + args[2].len();
            if total > PROTO_MAX_BULK_LEN {
                return Reply::error(ERR_STRING_TOO_LONG);
            }
            let mut joined = BytesMut::with_capacity(total);
            joined.extend_from_slice(current);
            joined.extend_from_slice(&args[2]);
            // The key was just read under this lock, so it is there.
            let _ = guard.set_value(&args[1], joined.freeze());
            Reply::Integer(total as i64)
        }
    }
}

pub fn strlen(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    match guard.lookup_read(&args[1], now).map(|e| e.value.as_bytes()) {
        None => Reply::Integer(0),
        Some(Ok(bytes)) => Reply::Integer(bytes.len() as i64),
        Some(Err(wrong)) => wrong.into(),
    }
}

pub fn getrange(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let (mut start, mut end) = match (int_arg(&args[2]), int_arg(&args[3])) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[1]);
    let Some(entry) = guard.lookup_read(&args[1], now) else {
        return Reply::bulk(Bytes::new());
    };
    let len = match entry.value.as_bytes() {
        Ok(bytes) => bytes.len() as i64,
        Err(wrong) => return wrong.into(),
    };
    if start < 0 && end < 0 && start > end {
        return Reply::bulk(Bytes::new());
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Reply::bulk(Bytes::new());
    }
    Reply::Bulk(entry.value.to_bytes().slice(start as usize..=end as usize))
}

const ERR_STRING_TOO_LONG: &str = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";

/// SETRANGE's offset and patch, checked as Redis's `setrangeCommand` checks them, or its error.
fn setrange_args(args: &[Bytes]) -> Result<(usize, &Bytes), Reply> {
    let offset = match int_arg(&args[2])? {
        o if o < 0 => return Err(Reply::error("ERR offset is out of range")),
        o => o as usize,
    };
    Ok((offset, &args[3]))
}

/// SETRANGE's length check, which Redis makes after the key's type check.
fn setrange_length(offset: usize, patch: &[u8]) -> Result<(), Reply> {
    if !patch.is_empty() && offset.saturating_add(patch.len()) > PROTO_MAX_BULK_LEN {
        return Err(Reply::error(ERR_STRING_TOO_LONG));
    }
    Ok(())
}

/// The bytes SETRANGE would add to the key's value as it is now: the zeros up to `offset` and
/// the patch past the current end (0 when the command will fail or change nothing).
pub(super) fn setrange_growth(ctx: &Ctx<'_, '_>, args: &[Bytes]) -> usize {
    let Ok((offset, patch)) = setrange_args(args) else {
        return 0;
    };
    if setrange_length(offset, patch).is_err() {
        return 0;
    }
    if patch.is_empty() {
        return 0;
    }
    let current =
        ctx.lock_key(&args[1]).get_live(&args[1], ctx.now_ms).map_or(0, |e| e.value.cost());
    (offset + patch.len()).saturating_sub(current)
}

pub fn setrange(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let (offset, patch) = match setrange_args(args) {
        Ok(checked) => checked,
        Err(e) => return e,
    };
    let now = ctx.now_ms;
    let key = &args[1];
    loop {
        let mut guard = ctx.lock_key(key);
        let existing = guard.get_live(key, now).map(|e| e.value.clone());
        let existing = match existing.as_ref().map(Value::as_bytes) {
            Some(Err(wrong)) => return wrong.into(),
            Some(Ok(bytes)) => bytes,
            None => &[],
        };
        if let Err(e) = setrange_length(offset, patch) {
            return e;
        }
        let current = existing.len();
        if patch.is_empty() {
            return Reply::Integer(current as i64);
        }
        let end = offset + patch.len();
        let growth = end.saturating_sub(current);
        if growth > ctx.reserved {
            // The value is shorter than when room was made for this write (another client
            // replaced it): make room for the difference before allocating it.
            drop(guard);
            match reserve_more(ctx, &[key], growth) {
                Ok(()) => continue,
                Err(oom) => return oom,
            }
        }
        let mut value = BytesMut::from(existing);
        if value.len() < end {
            value.resize(end, 0);
        }
        value[offset..end].copy_from_slice(patch);
        let len = value.len() as i64;
        if let Err(value) = guard.set_value(key, value.freeze()) {
            guard.insert(key.clone(), Entry::new(value, 0, now));
        }
        return Reply::Integer(len);
    }
}
