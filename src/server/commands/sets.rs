//! Set commands: SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD SPOP SRANDMEMBER SSCAN SMOVE
//! SINTER SUNION SDIFF and their STORE forms. Semantics, argument checks (in Redis's
//! order) and error strings follow Redis 7's `t_set.c`. Each set is an engine map of its own
//! ([`crate::server::collections`]); one emptied by SREM, SPOP or SMOVE is removed, as in Redis.

use bytes::Bytes;
use rand::Rng;

use super::hashes::{
    ERR_RANDOM_RANGE, bulk, pick_random, read_collection, reply, scan_options, scan_reply,
};
use super::{Ctx, ERR_NOT_INTEGER, ERR_SYNTAX, Locked, parse_i64};
use crate::server::collections::SetValue;
use crate::server::glob::glob_match;
use crate::server::resp::Reply;
use crate::server::store::{Entry, ShardGuard};
use crate::server::value::{Value, WrongType};

/// [`read_collection`] of a set.
fn read_set<T>(
    ctx: &Ctx<'_, '_>,
    key: &[u8],
    f: impl FnOnce(&SetValue) -> T,
) -> Result<Option<T>, WrongType> {
    read_collection(ctx, key, Value::as_set, f)
}

/// Runs `f` on the set at `key` for writing, created empty first when `create` (and removed
/// again if `f` leaves it empty). `f` answers its result and whether it changed the set.
fn write_set<T>(
    guard: &mut ShardGuard<'_>,
    key: &[u8],
    now_ms: u64,
    create: bool,
    f: impl FnOnce(&mut SetValue) -> (T, bool),
) -> Result<Option<T>, WrongType> {
    let create = create.then_some(Value::new_set as fn() -> Value);
    guard.update_collection(key, now_ms, create, |value| value.as_set_mut().map(f))
}

pub fn sadd(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let mut guard = ctx.lock_key(&args[1]);
    let added = write_set(&mut guard, &args[1], ctx.now_ms, true, |set| {
        let added = args[2..].iter().filter(|m| set.insert(m, ()).is_none()).count();
        (added as i64, added > 0)
    });
    reply(added, |n| Reply::Integer(n.unwrap_or(0)))
}

pub fn srem(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let mut guard = ctx.lock_key(&args[1]);
    let removed = write_set(&mut guard, &args[1], ctx.now_ms, false, |set| {
        let removed = args[2..].iter().filter(|m| set.remove(m).is_some()).count();
        (removed as i64, removed > 0)
    });
    reply(removed, |n| Reply::Integer(n.unwrap_or(0)))
}

pub fn smembers(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let members = read_set(ctx, &args[1], |set| set.iter().map(|(m, ())| bulk(m)).collect());
    reply(members, |m| Reply::Set(m.unwrap_or_default()))
}

pub fn sismember(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let found = read_set(ctx, &args[1], |set| set.contains(&args[2]));
    reply(found, |found| Reply::Integer(i64::from(found == Some(true))))
}

pub fn smismember(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let members = &args[2..];
    let found = read_set(ctx, &args[1], |set| {
        members.iter().map(|m| Reply::Integer(i64::from(set.contains(m)))).collect()
    });
    reply(found, |f| Reply::Array(f.unwrap_or_else(|| vec![Reply::Integer(0); members.len()])))
}

pub fn scard(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    reply(read_set(ctx, &args[1], SetValue::len), |n| Reply::Integer(n.unwrap_or(0) as i64))
}

pub fn spop(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let count = match args.len() {
        2 => None,
        // Redis's `getPositiveLongFromObjectOrReply`: text and negatives get the same error.
        3 => match parse_i64(&args[2]) {
            Some(c) if c >= 0 => Some(c as usize),
            _ => return Reply::error("ERR value is out of range, must be positive"),
        },
        _ => return Reply::error(ERR_SYNTAX),
    };
    let mut guard = ctx.lock_key(&args[1]);
    let popped = write_set(&mut guard, &args[1], ctx.now_ms, false, |set| {
        let mut rng = rand::rng();
        let n = count.unwrap_or(1).min(set.len());
        let mut popped = Vec::with_capacity(n);
        for _ in 0..n {
            let member = set.sample(rng.random()).map(|(m, ())| Bytes::copy_from_slice(m));
            if let Some(member) = member {
                set.remove(&member);
                popped.push(member);
            }
        }
        let changed = !popped.is_empty();
        (popped, changed)
    });
    reply(popped, |popped| match (count, popped) {
        (None, popped) => popped.and_then(|p| p.into_iter().next()).map_or(Reply::Nil, Reply::Bulk),
        (Some(_), popped) => {
            Reply::Set(popped.unwrap_or_default().into_iter().map(Reply::Bulk).collect())
        }
    })
}

pub fn srandmember(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    if args.len() == 2 {
        let member =
            read_set(ctx, &args[1], |set| set.sample(rand::rng().random()).map(|(m, ())| bulk(m)));
        return reply(member, |m| m.flatten().unwrap_or(Reply::Nil));
    }
    if args.len() != 3 {
        return Reply::error(ERR_SYNTAX);
    }
    let count = match parse_i64(&args[2]) {
        Some(i64::MIN) => return Reply::error(ERR_RANDOM_RANGE),
        Some(c) => c,
        None => return Reply::error(ERR_NOT_INTEGER),
    };
    let picked = read_set(ctx, &args[1], |set| {
        let picked = pick_random(
            set.len(),
            count,
            |seed| set.sample(seed).map(|(m, ())| m),
            || set.iter().map(|(m, ())| m).collect(),
        );
        picked.into_iter().map(bulk).collect::<Vec<_>>()
    });
    reply(picked, |items| Reply::Array(items.unwrap_or_default()))
}

pub fn sscan(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let (cursor, opts) = match scan_options(args) {
        Ok(parsed) => parsed,
        Err(e) => return e,
    };
    let scanned = read_set(ctx, &args[1], |set| {
        let opts = opts?;
        let mut items = Vec::new();
        let next = set.scan(cursor, opts.count, |member, ()| {
            if opts.pattern.is_none_or(|p| glob_match(p, member)) {
                items.push(bulk(member));
            }
        });
        Ok((next, items))
    });
    reply(scanned, |s| match s.unwrap_or(Ok((0, Vec::new()))) {
        Ok((next, items)) => scan_reply(next, items),
        Err(e) => e,
    })
}

pub fn smove(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let (src, dst, member) = (&args[1], &args[2], &args[3]);
    let now = ctx.now_ms;
    let mut locks = ctx.lock_pair(src, dst);
    // Both keys are type-checked before anything moves, as Redis's `smoveCommand` does.
    let src_has = match locks.first().lookup_read(src, now).map(|e| e.value.as_set()) {
        None => return Reply::Integer(0),
        Some(Err(wrong)) => return wrong.into(),
        Some(Ok(set)) => set.contains(member),
    };
    if let Some(Err(wrong)) = locks.second().lookup_read(dst, now).map(|e| e.value.as_set()) {
        return wrong.into();
    }
    if src == dst || !src_has {
        return Reply::Integer(i64::from(src_has));
    }
    let _ = write_set(locks.first(), src, now, false, |set| (set.remove(member), true));
    let _ = write_set(locks.second(), dst, now, true, |set| {
        let added = set.insert(member, ()).is_none();
        ((), added)
    });
    Reply::Integer(1)
}

/// What SINTER, SUNION and SDIFF compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// The members `op` gives over the sets at `keys` (a missing key is an empty set), or
/// `-WRONGTYPE` when any key holds another kind of value (every key is checked, as Redis looks
/// them all up first).
fn combine(
    guards: &mut [Locked<'_, '_>],
    store: &crate::server::store::Store,
    keys: &[Bytes],
    now: u64,
    op: Op,
) -> Result<Vec<Bytes>, WrongType> {
    // Expired keys are removed first (each lookup may change its shard), then the sets are read.
    for key in keys {
        let shard = store.shard_of(key);
        let guard = guards.iter_mut().find(|g| g.index == shard).expect("locked");
        if let Some(Err(wrong)) = guard.lookup_read(key, now).map(|e| e.value.as_set().map(|_| ()))
        {
            return Err(wrong);
        }
    }
    let mut sets: Vec<Option<&SetValue>> = Vec::with_capacity(keys.len());
    for key in keys {
        let shard = store.shard_of(key);
        let guard = guards.iter().find(|g| g.index == shard).expect("locked");
        sets.push(guard.map().get(&key[..]).and_then(|e| e.value.as_set().ok()));
    }
    let own = |m: &[u8]| Bytes::copy_from_slice(m);
    Ok(match op {
        Op::Inter => {
            if sets.iter().any(Option::is_none) {
                return Ok(Vec::new());
            }
            let mut sets: Vec<&SetValue> = sets.into_iter().flatten().collect();
            // The smallest set drives the walk, as in Redis.
            sets.sort_by_key(|s| s.len());
            (sets[0].iter())
                .filter(|(m, ())| sets[1..].iter().all(|s| s.contains(m)))
                .map(|(m, ())| own(m))
                .collect()
        }
        Op::Union => {
            let mut seen = SetValue::default();
            let mut out = Vec::new();
            for set in sets.into_iter().flatten() {
                for (m, ()) in set.iter() {
                    if seen.insert(m, ()).is_none() {
                        out.push(own(m));
                    }
                }
            }
            out
        }
        Op::Diff => {
            let Some(Some(first)) = sets.first() else {
                return Ok(Vec::new());
            };
            let others: Vec<&SetValue> = sets[1..].iter().flatten().copied().collect();
            (first.iter())
                .filter(|(m, ())| others.iter().all(|s| !s.contains(m)))
                .map(|(m, ())| own(m))
                .collect()
        }
    })
}

fn op_generic(ctx: &mut Ctx<'_, '_>, keys: &[Bytes], op: Op) -> Reply {
    let store = &ctx.node.store;
    let mut guards = ctx.lock_many(keys.iter().map(|k| store.shard_of(k)).collect());
    match combine(&mut guards, store, keys, ctx.now_ms, op) {
        Ok(members) => Reply::Set(members.into_iter().map(Reply::Bulk).collect()),
        Err(wrong) => wrong.into(),
    }
}

/// The STORE forms: the result replaces whatever `dst` held (any kind, its TTL gone); an empty
/// result removes `dst`.
fn store_generic(ctx: &mut Ctx<'_, '_>, args: &[Bytes], op: Op) -> Reply {
    let (dst, keys) = (&args[1], &args[2..]);
    let store = &ctx.node.store;
    let now = ctx.now_ms;
    let shards = args[1..].iter().map(|k| store.shard_of(k)).collect();
    let mut guards = ctx.lock_many(shards);
    let members = match combine(&mut guards, store, keys, now, op) {
        Ok(members) => members,
        Err(wrong) => return wrong.into(),
    };
    let shard = store.shard_of(dst);
    let guard = guards.iter_mut().find(|g| g.index == shard).expect("locked");
    let n = members.len() as i64;
    if members.is_empty() {
        guard.remove(dst);
    } else {
        let mut value = Value::new_set();
        let set = value.as_set_mut().expect("a new set");
        for m in &members {
            set.insert(m, ());
        }
        guard.insert_owned(dst.clone(), Entry::new(value, 0, now));
    }
    Reply::Integer(n)
}

pub fn sinter(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    op_generic(ctx, &args[1..], Op::Inter)
}

pub fn sunion(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    op_generic(ctx, &args[1..], Op::Union)
}

pub fn sdiff(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    op_generic(ctx, &args[1..], Op::Diff)
}

pub fn sinterstore(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    store_generic(ctx, args, Op::Inter)
}

pub fn sunionstore(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    store_generic(ctx, args, Op::Union)
}

pub fn sdiffstore(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    store_generic(ctx, args, Op::Diff)
}
