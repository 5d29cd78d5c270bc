//! Hash commands: HSET HMSET HSETNX HGET HMGET HDEL HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN
//! HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN. Semantics, argument checks (in Redis's order) and error
//! strings follow Redis 7's `t_hash.c`. Each hash is an engine map of its own
//! ([`crate::server::collections`]); one emptied by HDEL is removed, as in Redis.

use bytes::Bytes;
use rand::Rng;

use super::long_double::{IncrError, incr_by_float};
use super::{Ctx, ERR_NOT_INTEGER, ERR_SYNTAX, int_arg, is, parse_i64, wrong_arity};
use crate::server::collections::HashValue;
use crate::server::glob::glob_match;
use crate::server::resp::{Protocol, Reply};
use crate::server::value::{Value, WrongType};

pub(super) fn bulk(bytes: &[u8]) -> Reply {
    Reply::Bulk(Bytes::copy_from_slice(bytes))
}

fn bulk_value(value: &Value) -> Reply {
    bulk(value.as_bytes().unwrap_or_default())
}

/// Runs `f` on the collection at `key` for reading (a keyspace hit or miss), as `view` finds it
/// in the value (`Value::as_hash`, `Value::as_set`: [`WrongType`] for any other kind); `None`
/// when absent.
pub(super) fn read_collection<C, T>(
    ctx: &Ctx<'_, '_>,
    key: &[u8],
    view: for<'v> fn(&'v Value) -> Result<&'v C, WrongType>,
    f: impl FnOnce(&C) -> T,
) -> Result<Option<T>, WrongType> {
    let mut guard = ctx.lock_key(key);
    match guard.lookup_read(key, ctx.now_ms) {
        None => Ok(None),
        Some(entry) => view(&entry.value).map(|c| Some(f(c))),
    }
}

/// [`read_collection`] of a hash.
fn read_hash<T>(
    ctx: &Ctx<'_, '_>,
    key: &[u8],
    f: impl FnOnce(&HashValue) -> T,
) -> Result<Option<T>, WrongType> {
    read_collection(ctx, key, Value::as_hash, f)
}

/// Runs `f` on the hash at `key` for writing, created empty first when `create` (and then
/// removed again if `f` leaves it empty). `f` answers its result and whether it changed the hash.
fn write_hash<T>(
    ctx: &Ctx<'_, '_>,
    key: &[u8],
    create: bool,
    f: impl FnOnce(&mut HashValue) -> (T, bool),
) -> Result<Option<T>, WrongType> {
    let mut guard = ctx.lock_key(key);
    let create = create.then_some(Value::new_hash as fn() -> Value);
    guard.update_collection(key, ctx.now_ms, create, |value| value.as_hash_mut().map(f))
}

/// `f`'s reply for a result, or `-WRONGTYPE`.
pub(super) fn reply<T>(result: Result<T, WrongType>, f: impl FnOnce(T) -> Reply) -> Reply {
    result.map_or_else(Reply::from, f)
}

/// HSET and HMSET: fields and values in pairs.
fn set_fields(ctx: &mut Ctx<'_, '_>, args: &[Bytes], name: &str) -> Result<Option<i64>, Reply> {
    if args.len() % 2 == 1 {
        return Err(wrong_arity(name));
    }
    let added = write_hash(ctx, &args[1], true, |hash| {
        let mut added = 0;
        for pair in args[2..].chunks(2) {
            if hash.insert(&pair[0], Value::copy_from_slice(&pair[1])).is_none() {
                added += 1;
            }
        }
        (added, true)
    });
    added.map_err(Reply::from)
}

pub fn hset(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    match set_fields(ctx, args, "hset") {
        Ok(added) => Reply::Integer(added.unwrap_or(0)),
        Err(e) => e,
    }
}

pub fn hmset(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    match set_fields(ctx, args, "hmset") {
        Ok(_) => Reply::ok(),
        Err(e) => e,
    }
}

pub fn hsetnx(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let set = write_hash(ctx, &args[1], true, |hash| {
        if hash.contains(&args[2]) {
            (false, false)
        } else {
            hash.insert(&args[2], Value::copy_from_slice(&args[3]));
            (true, true)
        }
    });
    reply(set, |set| Reply::Integer(i64::from(set == Some(true))))
}

pub fn hget(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let value = read_hash(ctx, &args[1], |hash| hash.get(&args[2]).map(bulk_value));
    reply(value, |v| v.flatten().unwrap_or(Reply::Nil))
}

pub fn hmget(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let fields = &args[2..];
    let values = read_hash(ctx, &args[1], |hash| {
        fields.iter().map(|f| hash.get(f).map_or(Reply::Nil, bulk_value)).collect()
    });
    reply(values, |v| Reply::Array(v.unwrap_or_else(|| vec![Reply::Nil; fields.len()])))
}

pub fn hdel(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let removed = write_hash(ctx, &args[1], false, |hash| {
        let removed = args[2..].iter().filter(|f| hash.remove(f).is_some()).count();
        (removed as i64, removed > 0)
    });
    reply(removed, |n| Reply::Integer(n.unwrap_or(0)))
}

pub fn hlen(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    reply(read_hash(ctx, &args[1], HashValue::len), |n| Reply::Integer(n.unwrap_or(0) as i64))
}

pub fn hstrlen(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let len = read_hash(ctx, &args[1], |hash| {
        hash.get(&args[2]).map_or(0, |v| v.as_bytes().map_or(0, <[u8]>::len))
    });
    reply(len, |n| Reply::Integer(n.unwrap_or(0) as i64))
}

pub fn hexists(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let found = read_hash(ctx, &args[1], |hash| hash.contains(&args[2]));
    reply(found, |found| Reply::Integer(i64::from(found == Some(true))))
}

/// HGETALL, HKEYS and HVALS: `fields` and `values` say which halves to send.
fn all(ctx: &mut Ctx<'_, '_>, args: &[Bytes], fields: bool, values: bool) -> Reply {
    let items = read_hash(ctx, &args[1], |hash| {
        let mut items =
            Vec::with_capacity(hash.len() * (usize::from(fields) + usize::from(values)));
        for (field, value) in hash.iter() {
            if fields {
                items.push(bulk(field));
            }
            if values {
                items.push(bulk_value(value));
            }
        }
        items
    });
    reply(items, |items| {
        let items = items.unwrap_or_default();
        if fields && values {
            // A map in RESP3, flat pairs in RESP2.
            let mut pairs = items.into_iter();
            let mut map = Vec::new();
            while let (Some(f), Some(v)) = (pairs.next(), pairs.next()) {
                map.push((f, v));
            }
            Reply::Map(map)
        } else {
            Reply::Array(items)
        }
    })
}

pub fn hgetall(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    all(ctx, args, true, true)
}

pub fn hkeys(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    all(ctx, args, true, false)
}

pub fn hvals(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    all(ctx, args, false, true)
}

pub fn hincrby(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let by = match int_arg(&args[3]) {
        Ok(by) => by,
        Err(e) => return e,
    };
    let result = write_hash(ctx, &args[1], true, |hash| {
        let current = match hash.get(&args[2]) {
            None => 0,
            Some(v) => match v.as_bytes().ok().and_then(parse_i64) {
                Some(n) => n,
                None => return (Err(Reply::error("ERR hash value is not an integer")), false),
            },
        };
        let Some(next) = current.checked_add(by) else {
            return (Err(Reply::error("ERR increment or decrement would overflow")), false);
        };
        let text = itoa::Buffer::new().format(next).as_bytes().to_vec();
        hash.insert(&args[2], Value::copy_from_slice(&text));
        (Ok(next), true)
    });
    match result {
        Ok(Some(Ok(next))) => Reply::Integer(next),
        Ok(Some(Err(e))) => e,
        Ok(None) => unreachable!("created when absent"),
        Err(wrong) => wrong.into(),
    }
}

pub fn hincrbyfloat(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    // The increment is checked on its own first, as Redis reads it before the key.
    match incr_by_float(None, &args[3]) {
        Err(IncrError::NotAFloat) => return Reply::error("ERR value is not a valid float"),
        Err(IncrError::NanOrInfinity) => return Reply::error("ERR value is NaN or Infinity"),
        Ok(_) => {}
    }
    let result = write_hash(ctx, &args[1], true, |hash| {
        let current = hash.get(&args[2]).map(|v| v.as_bytes().unwrap_or_default());
        match incr_by_float(current, &args[3]) {
            Err(IncrError::NotAFloat) => {
                (Err(Reply::error("ERR hash value is not a float")), false)
            }
            Err(IncrError::NanOrInfinity) => {
                (Err(Reply::error("ERR increment would produce NaN or Infinity")), false)
            }
            Ok(text) => {
                hash.insert(&args[2], Value::copy_from_slice(&text));
                (Ok(Bytes::from(text)), true)
            }
        }
    });
    match result {
        Ok(Some(Ok(text))) => Reply::Bulk(text),
        Ok(Some(Err(e))) => e,
        Ok(None) => unreachable!("created when absent"),
        Err(wrong) => wrong.into(),
    }
}

/// The reply of a random-pick command (HRANDFIELD, SRANDMEMBER) for a count outside what Redis
/// accepts: `-LONG_MAX..=LONG_MAX`.
pub(super) const ERR_RANDOM_RANGE: &str =
    "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";

/// Random elements of a collection, as Redis's HRANDFIELD and SRANDMEMBER pick them: a positive
/// `count` picks distinct elements (all of them when `count` is at least the size), a negative
/// one `|count|` elements that may repeat. `sample` draws one element from a random seed;
/// `all` lists every element.
pub(super) fn pick_random<T>(
    len: usize,
    count: i64,
    sample: impl Fn(u64) -> Option<T>,
    all: impl FnOnce() -> Vec<T>,
) -> Vec<T> {
    let mut rng = rand::rng();
    if count < 0 {
        let n = count.unsigned_abs() as usize;
        return (0..n).filter_map(|_| sample(rng.random())).collect();
    }
    let n = count as usize;
    let mut every = all();
    if n >= len {
        return every;
    }
    // Distinct: a partial shuffle of every element (Redis removes random ones from a copy when
    // the count is near the size, and adds random ones to a dict otherwise; both give `n`
    // distinct elements chosen uniformly).
    for i in 0..n {
        let j = rng.random_range(i..every.len());
        every.swap(i, j);
    }
    every.truncate(n);
    every
}

pub fn hrandfield(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    if args.len() == 2 {
        let field = read_hash(ctx, &args[1], |hash| {
            hash.sample(rand::rng().random()).map(|(f, _)| bulk(f))
        });
        return reply(field, |f| f.flatten().unwrap_or(Reply::Nil));
    }
    let count = match parse_i64(&args[2]) {
        Some(c) if c == i64::MIN => return Reply::error(ERR_RANDOM_RANGE),
        Some(c) => c,
        None => return Reply::error(ERR_NOT_INTEGER),
    };
    let with_values = match args.get(3) {
        None => false,
        Some(arg) if args.len() == 4 && is(arg, "WITHVALUES") => true,
        Some(_) => return Reply::error(ERR_SYNTAX),
    };
    let resp3 = ctx.client.proto == Protocol::Resp3;
    let picked = read_hash(ctx, &args[1], |hash| {
        let picked =
            pick_random(hash.len(), count, |seed| hash.sample(seed), || hash.iter().collect());
        picked
            .into_iter()
            .flat_map(|(f, v)| match (with_values, resp3) {
                (false, _) => vec![bulk(f)],
                (true, true) => vec![Reply::Array(vec![bulk(f), bulk_value(v)])],
                (true, false) => vec![bulk(f), bulk_value(v)],
            })
            .collect::<Vec<_>>()
    });
    reply(picked, |items| Reply::Array(items.unwrap_or_default()))
}

/// The options of HSCAN and SSCAN after the cursor: `MATCH pattern` and `COUNT n`.
pub(super) struct ScanOptions<'a> {
    pub pattern: Option<&'a Bytes>,
    pub count: usize,
}

/// Redis's checks for a collection's SCAN: the cursor (`-ERR invalid cursor`) first; the
/// options (the inner result) only once the key is found and of the right kind, as
/// `scanGenericCommand` reads them after `hscanCommand` looked the key up.
#[allow(clippy::type_complexity)]
pub(super) fn scan_options(args: &[Bytes]) -> Result<(u64, Result<ScanOptions<'_>, Reply>), Reply> {
    let cursor =
        super::keys::parse_cursor(&args[2]).ok_or_else(|| Reply::error("ERR invalid cursor"))?;
    Ok((cursor, scan_option_args(args)))
}

fn scan_option_args(args: &[Bytes]) -> Result<ScanOptions<'_>, Reply> {
    let mut opts = ScanOptions { pattern: None, count: 10 };
    let mut i = 3;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Err(Reply::error(ERR_SYNTAX));
        };
        if is(&args[i], "MATCH") {
            opts.pattern = Some(value);
        } else if is(&args[i], "COUNT") {
            match int_arg(value)? {
                c if c < 1 => return Err(Reply::error(ERR_SYNTAX)),
                c => opts.count = c as usize,
            }
        } else {
            return Err(Reply::error(ERR_SYNTAX));
        }
        i += 2;
    }
    Ok(opts)
}

pub(super) fn scan_reply(next: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![Reply::Bulk(Bytes::from(next.to_string())), Reply::Array(items)])
}

pub fn hscan(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let (cursor, opts) = match scan_options(args) {
        Ok(parsed) => parsed,
        Err(e) => return e,
    };
    let scanned = read_hash(ctx, &args[1], |hash| {
        let opts = opts?;
        let mut items = Vec::new();
        let next = hash.scan(cursor, opts.count, |field, value| {
            if opts.pattern.is_none_or(|p| glob_match(p, field)) {
                items.push(bulk(field));
                items.push(bulk_value(value));
            }
        });
        Ok((next, items))
    });
    reply(scanned, |s| match s.unwrap_or(Ok((0, Vec::new()))) {
        Ok((next, items)) => scan_reply(next, items),
        Err(e) => e,
    })
}
