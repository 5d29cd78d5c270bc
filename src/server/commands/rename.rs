//! Commands that move or copy a key's entry to another key: RENAME RENAMENX COPY (`DB`,
//! `REPLACE`). Semantics and error strings follow Redis 7's `renameGenericCommand` and
//! `copyCommand` (`db.c`).
//!
//! Both keys' shards are locked together (one `lock_pair`), so no client sees the entry under
//! both keys or under neither. The entry keeps its TTL: RENAME moves it whole (value, TTL), COPY
//! stores a copy of the value with the same TTL. Each key written or removed tells its watchers.

use bytes::Bytes;

use super::connection::check_db_index;
use super::{Ctx, ERR_SYNTAX, is, reserve_more};
use crate::server::resp::Reply;
use crate::server::store::Entry;

const ERR_NO_SUCH_KEY: &str = "ERR no such key";

pub fn rename(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    rename_generic(ctx, &args[1], &args[2], false)
}

pub fn renamenx(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    rename_generic(ctx, &args[1], &args[2], true)
}

/// Redis's `renameGenericCommand`: a missing source is an error even onto itself; a key renamed
/// onto itself is left alone (RENAME `+OK`, RENAMENX `:0`, no watcher told); otherwise the
/// destination (if any, and unless NX refuses) is replaced by the source's entry, TTL included.
fn rename_generic(ctx: &mut Ctx<'_, '_>, src: &Bytes, dst: &Bytes, nx: bool) -> Reply {
    let now = ctx.now_ms;
    let mut locks = ctx.lock_pair(src, dst);
    if locks.first().get_live(src, now).is_none() {
        return Reply::error(ERR_NO_SUCH_KEY);
    }
    if src == dst {
        return if nx { Reply::Integer(0) } else { Reply::ok() };
    }
    // Looked up either way, as Redis's `lookupKeyWrite`: an expired destination is removed (and
    // counted) here, not replaced below as if it were live.
    if locks.second().get_live(dst, now).is_some() && nx {
        return Reply::Integer(0);
    }
    let Some(entry) = locks.first().remove(src) else {
        return Reply::error(ERR_NO_SUCH_KEY);
    };
    locks.second().insert_owned(dst.clone(), entry);
    if nx { Reply::Integer(1) } else { Reply::ok() }
}

/// COPY's options after the two keys: `REPLACE`, and `DB <index>`, which only database 0 passes.
/// Parsed in order as `copyCommand` does: the first bad option is the error.
fn parse_copy_options(args: &[Bytes]) -> Result<bool, Reply> {
    let mut replace = false;
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "REPLACE") {
            replace = true;
        } else if let (true, Some(index)) = (is(&args[i], "DB"), args.get(i + 1)) {
            check_db_index(index)?;
            i += 1;
        } else {
            return Err(Reply::error(ERR_SYNTAX));
        }
        i += 1;
    }
    Ok(replace)
}

/// The value bytes COPY would add: the source's value as it is now (0 when the command will fail
/// or copy nothing). Its TTL and the destination key are counted by the reservation itself.
pub(super) fn copy_growth(ctx: &Ctx<'_, '_>, args: &[Bytes]) -> usize {
    if parse_copy_options(args).is_err() || args[1] == args[2] {
        return 0;
    }
    ctx.lock_key(&args[1]).peek_live(&args[1], ctx.now_ms).map_or(0, |e| e.value.cost())
}

pub fn copy(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let replace = match parse_copy_options(args) {
        Ok(replace) => replace,
        Err(e) => return e,
    };
    let (src, dst) = (&args[1], &args[2]);
    if src == dst {
        return Reply::error("ERR source and destination objects are the same");
    }
    let now = ctx.now_ms;
    loop {
        let mut locks = ctx.lock_pair(src, dst);
        let Some(source) = locks.first().get_live(src, now) else {
            return Reply::Integer(0);
        };
        // A copy shares nothing with its source: `insert` gives the value its own allocation.
        let (value, expires_at_ms) = (source.value.clone(), source.expires_at_ms);
        if locks.second().get_live(dst, now).is_some() && !replace {
            return Reply::Integer(0);
        }
        if value.cost() > ctx.reserved {
            // The source grew after room was made for its copy: make room for what it is now.
            drop(locks);
            match reserve_more(ctx, &[dst], value.cost()) {
                Ok(()) => continue,
                Err(oom) => return oom,
            }
        }
        locks.second().insert(dst.clone(), Entry::new(value, expires_at_ms, now));
        return Reply::Integer(1);
    }
}
