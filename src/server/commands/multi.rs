//! Transactions: MULTI EXEC DISCARD WATCH UNWATCH, with Redis 7's semantics and replies
//! (`multi.c`).
//!
//! After MULTI a command is checked as if it ran (unknown, arity, authentication, draining,
//! memory) and then queued, answered `+QUEUED`; a command refused there marks the transaction
//! failed, and its EXEC discards it whole (`-EXECABORT`). EXEC takes the locks of every shard its
//! commands and its watched keys live in, in ascending order (the one lock order node-wide, so a
//! transaction cannot deadlock with a multi-key command or another transaction), checks the
//! watched keys, and runs the commands one after another under those locks: no other client sees
//! a state between two of them, nor changes a key between them.
//!
//! WATCH registers the client with the shard of each key; every change a shard makes to a
//! watched key (a write, a delete, an expiry, an eviction, FLUSHALL) marks its watchers dirty,
//! and a dirty client's EXEC runs nothing and answers a null array.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{
    COMMANDS, ClientState, Ctx, Executed, HeldShards, Kind, Outcome, key_positions, value_growth,
};
use crate::server::resp::Reply;
use crate::server::store::WatchState;

/// A command queued by MULTI: its table index, its commandstats slot, its arguments.
type Queued = (u16, u16, Vec<Bytes>);

/// An open transaction: the commands queued since MULTI.
#[derive(Debug, Default)]
pub struct Transaction {
    queued: Vec<Queued>,
    /// A command was refused while queueing (Redis's `CLIENT_DIRTY_EXEC`).
    failed: bool,
}

/// The keys a client WATCHes and the flag their shards set when one changes.
#[derive(Debug, Default)]
pub struct Watched {
    state: Arc<WatchState>,
    keys: Vec<Bytes>,
}

/// The commands that run at once inside a transaction instead of being queued (Redis's
/// `processCommand`): the transaction's own, and QUIT.
pub(super) fn runs_in_multi(name: &str) -> bool {
    matches!(name, "exec" | "discard" | "multi" | "watch" | "quit")
}

/// Queues a command that passed every check (`stat` is its commandstats slot); the reply is
/// `+QUEUED`.
pub(super) fn queue(client: &mut ClientState, index: u16, stat: u16, args: &[Bytes]) -> Reply {
    if let Some(transaction) = client.multi.as_mut() {
        transaction.queued.push((index, stat, args.to_vec()));
    }
    Reply::Simple("QUEUED")
}

/// Marks an open transaction failed: a command was refused while it was being queued.
pub fn flag_failed(client: &mut ClientState) {
    if let Some(transaction) = client.multi.as_mut() {
        transaction.failed = true;
    }
}

pub fn multi(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> Reply {
    if ctx.client.multi.is_some() {
        return Reply::error("ERR MULTI calls can not be nested");
    }
    ctx.client.multi = Some(Transaction::default());
    Reply::ok()
}

pub fn discard(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> Reply {
    if ctx.client.multi.take().is_none() {
        return Reply::error("ERR DISCARD without MULTI");
    }
    unwatch_all(ctx);
    Reply::ok()
}

pub fn watch(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    if ctx.client.multi.is_some() {
        return Reply::error("ERR WATCH inside MULTI is not allowed");
    }
    let mut watched = ctx.client.watch.take().unwrap_or_default();
    for key in &args[1..] {
        ctx.lock_key(key).watch(key, ctx.client.id, &watched.state, ctx.now_ms);
        if !watched.keys.contains(key) {
            watched.keys.push(key.clone());
        }
    }
    ctx.client.watch = Some(watched);
    Reply::ok()
}

pub fn unwatch(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> Reply {
    unwatch_all(ctx);
    Reply::ok()
}

/// Forgets every key the client watches (UNWATCH, EXEC, DISCARD, and the connection's end).
/// The locks come through `ctx`: queued in MULTI, UNWATCH runs inside EXEC, which holds the
/// watched keys' shards.
pub fn unwatch_all(ctx: &mut Ctx<'_, '_>) {
    let Some(watched) = ctx.client.watch.take() else {
        return;
    };
    for key in &watched.keys {
        ctx.lock_key(key).unwatch(key, ctx.client.id);
    }
}

/// The reply of an EXEC refused as a whole before running anything, as Redis's
/// `execCommandAbort` words it.
fn abort(error: &Bytes) -> Reply {
    let reason = error.strip_prefix(b"-").unwrap_or(error);
    let mut text = b"EXECABORT Transaction discarded because of: ".to_vec();
    text.extend_from_slice(reason);
    Reply::error(text)
}

/// EXEC refused before it runs (its arity, authentication), as Redis's `rejectCommand` refuses
/// it: the transaction, if any, is discarded, and the reply is `-EXECABORT Transaction
/// discarded because of: <the error>` (an `ERR ` prefix left out), MULTI or not.
pub(super) fn abort_refused(ctx: &mut Ctx<'_, '_>, error: Reply) -> Reply {
    ctx.client.multi = None;
    unwatch_all(ctx);
    match error {
        Reply::Error(text) => abort(&text.slice(if text.starts_with(b"ERR ") { 4 } else { 0 }..)),
        other => other,
    }
}

pub fn exec(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> Reply {
    let Some(transaction) = ctx.client.multi.take() else {
        return Reply::error("ERR EXEC without MULTI");
    };
    let reply = run(ctx, transaction);
    unwatch_all(ctx);
    reply
}

/// EXEC's work once the transaction is out of the client: the checks Redis makes of the whole
/// transaction, the locks, then each command.
fn run(ctx: &mut Ctx<'_, '_>, transaction: Transaction) -> Reply {
    if transaction.failed {
        return Reply::error("EXECABORT Transaction discarded because of previous errors.");
    }
    let specs = || transaction.queued.iter().map(|(i, _, args)| (&COMMANDS[*i as usize], args));
    let writes = specs().any(|(spec, _)| matches!(spec.kind, Kind::Write | Kind::WriteGrow(_)));
    // The whole transaction's growth is made room for before any lock is taken (eviction takes
    // shard locks); each command then runs with its own share recorded.
    let mut growths = vec![usize::MAX; transaction.queued.len()];
    if ctx.node.store.maxmemory() != 0 {
        let mut keys: Vec<&[u8]> = Vec::new();
        let mut total = 0usize;
        for (n, (spec, args)) in specs().enumerate() {
            if let Kind::WriteGrow(grows) = spec.kind {
                let positions = key_positions(spec, args.len());
                growths[n] = value_growth(ctx, grows, args, &positions);
                total = total.saturating_add(growths[n]);
                keys.extend(positions.iter().map(|&i| &args[i][..]));
            }
        }
        if !keys.is_empty()
            && let Err(Reply::Error(oom)) = super::reserve(ctx, &keys, total)
        {
            // Redis refuses EXEC before running it (`processCommand`): a rejected call.
            ctx.refused = true;
            return abort(&oom);
        }
    }
    if writes && ctx.node.is_draining() {
        ctx.refused = true;
        return abort(&Bytes::from_static(super::ERR_DRAINING.as_bytes()));
    }
    let held = HeldShards::lock(ctx.node, ctx.task, shards(ctx, &transaction));
    let client = ctx.client.id;
    let watched = ctx.client.watch.as_ref();
    let changed = watched.is_some_and(|w| {
        w.state.is_dirty()
            || w.keys.iter().any(|key| {
                let shard = ctx.node.store.shard_of(key);
                held.guards()
                    .any(|g| g.index == shard && g.watched_key_expired(key, client, ctx.now_ms))
            })
    });
    if changed {
        return Reply::NilArray;
    }
    let mut inner = Ctx {
        node: ctx.node,
        client: &mut *ctx.client,
        task: ctx.task,
        now_ms: ctx.now_ms,
        reserved: usize::MAX,
        held: Some(&held),
        refused: false,
    };
    let mut replies = Vec::with_capacity(transaction.queued.len());
    for ((index, stat, args), growth) in transaction.queued.iter().zip(growths) {
        let spec = &COMMANDS[*index as usize];
        inner.reserved = growth;
        inner.task.set_command(Some(*index));
        // Each command counts as its own call in INFO commandstats and the slow log, as Redis's
        // `execCommand` calls each one; EXEC counts once more, for all of them.
        let started = Instant::now();
        let reply = (spec.handler)(&mut inner, args);
        let took = started.elapsed();
        let executed =
            Executed { index: Some(*index), stat: Some(*stat), outcome: Outcome::Called, reply };
        super::account(inner.node, inner.task, &executed, args, took);
        replies.push(executed.reply);
        inner.node.metrics.commands[*index as usize].inc();
    }
    inner.task.set_command(super::lookup(b"exec"));
    Reply::Array(replies)
}

/// Every shard the transaction's commands and its watched keys live in: the shards of their
/// keys (for MEMORY USAGE and OBJECT, named after the subcommand, outside the table's key
/// positions), or all of them when a command reads or writes without naming keys (DBSIZE, KEYS,
/// SCAN, RANDOMKEY, FLUSHALL; INFO, which reads every shard's figures).
fn shards(ctx: &Ctx<'_, '_>, transaction: &Transaction) -> Vec<usize> {
    let store = &ctx.node.store;
    let mut shards = Vec::new();
    for (index, _, args) in &transaction.queued {
        let spec = &COMMANDS[*index as usize];
        let positions = key_positions(spec, args.len());
        if matches!(spec.name, "memory" | "object") {
            shards.extend(args.get(2).map(|key| store.shard_of(key)));
        } else if (positions.is_empty() && spec.kind != Kind::Admin) || spec.name == "info" {
            return (0..store.shard_count()).collect();
        }
        shards.extend(positions.iter().map(|&i| store.shard_of(&args[i])));
    }
    if let Some(watched) = &ctx.client.watch {
        shards.extend(watched.keys.iter().map(|key| store.shard_of(key)));
    }
    shards
}
