//! The command table and dispatcher. One file per command family (`strings`, `bits`, `lcs`,
//! `keys`, `rename`, `object`, `connection`, `server`), each command in three steps: parse
//! (rejecting extra or bad arguments), apply, reply.
//!
//! The dispatcher checks in Redis's order (`processCommand` in `server.c`): unknown command or
//! subcommand, arity, authentication, then draining (writes refused) and maxmemory (writes that
//! may grow). What it comes to ([`Executed`]) is what INFO commandstats counts: a call, or a
//! rejection by those checks.

mod bits;
mod command_docs;
mod connection;
mod hashes;
mod info;
mod keys;
mod lcs;
mod long_double;
pub mod multi;
mod object;
mod rename;
pub mod scripts;
mod server;
mod sets;
mod slowlog;
mod strings;

use std::cell::{RefCell, RefMut};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::LazyLock;

use bytes::Bytes;

pub use super::counters::Outcome;
pub use connection::ReplyMode;

use super::collections::{Collection, ELEMENT_OVERHEAD};
use super::resp::{Protocol, Reply};
use super::state::NodeState;
use super::store::{Prefetch, ShardGuard};
use super::tasks::Task;
use super::value::Value;

/// Per-connection state the commands read and change.
#[derive(Debug)]
pub struct ClientState {
    pub id: u64,
    pub proto: Protocol,
    pub authenticated: bool,
    /// Set by QUIT: reply, then close.
    pub close_after_reply: bool,
    /// Since MULTI: the commands queued for EXEC.
    pub multi: Option<multi::Transaction>,
    /// Since WATCH: the keys watched for EXEC.
    pub watch: Option<multi::Watched>,
    /// A script EVAL asked for, which the connection runs on the script thread once the
    /// command returns (see [`scripts::Deferred`]).
    pub deferred: Option<scripts::Deferred>,
    /// `CLIENT REPLY`: which replies the client is sent.
    pub reply: ReplyMode,
    /// `CLIENT NO-TOUCH on`: the client's lookups leave the keys' LRU time alone.
    pub no_touch: bool,
    /// Failed AUTHs in a row (a success resets it): how long the next one is held back.
    pub auth_failures: u32,
    /// Set by a failed AUTH: how long the connection waits before its next command (and before
    /// the failure's reply goes out); see `server::auth`.
    pub auth_delay: Option<std::time::Duration>,
}

impl ClientState {
    pub fn new(id: u64, authenticated: bool) -> Self {
        Self {
            id,
            proto: Protocol::Resp2,
            authenticated,
            close_after_reply: false,
            multi: None,
            watch: None,
            deferred: None,
            reply: ReplyMode::default(),
            no_touch: false,
            auth_failures: 0,
            auth_delay: None,
        }
    }
}

/// What a command runs with: the node and the task for as long as the connection lives (`'n`),
/// the client's state and the shard locks a transaction holds for as long as the command runs
/// (`'c`).
pub struct Ctx<'c, 'n> {
    pub node: &'n NodeState,
    pub client: &'c mut ClientState,
    pub task: &'n Task,
    /// "Now" for the whole command, as Redis's `commandTimeSnapshot`.
    pub now_ms: u64,
    /// Value bytes made room for under maxmemory before the command ran (see [`Growth`];
    /// `usize::MAX`, as [`Ctx::new`] sets it, when nothing needed reserving). A command that
    /// finds under its shard lock that it would add more (a concurrent write shortened the value
    /// SETRANGE pads) reserves again first.
    pub reserved: usize,
    /// The shards a transaction (EXEC) locked for all of its commands, which take their locks
    /// from here; `None` for a command run on its own, which locks what it needs.
    held: Option<&'c HeldShards<'n>>,
    /// Set by a command that refused to run as Redis refuses before calling a command (EXEC's
    /// memory and draining checks, made once its queue is at hand): a rejected call in INFO
    /// commandstats, not a failed one.
    pub refused: bool,
}

impl<'c, 'n> Ctx<'c, 'n> {
    pub fn new(
        node: &'n NodeState,
        client: &'c mut ClientState,
        task: &'n Task,
        now_ms: u64,
    ) -> Self {
        Self { node, client, task, now_ms, reserved: usize::MAX, held: None, refused: false }
    }

    /// The lock of shard `index`: taken now, or lent by the transaction that holds it. Its
    /// lookups touch entries unless the client is in `CLIENT NO-TOUCH` mode.
    #[inline]
    pub fn lock_shard(&self, index: usize) -> Locked<'_, 'n> {
        let mut locked = match self.held {
            None => Locked::Own(self.node.store.lock(index, Some(self.task))),
            Some(held) => held.lend(index),
        };
        locked.set_touch(!self.client.no_touch);
        locked
    }

    /// The lock of the shard `key` lives in.
    #[inline]
    pub fn lock_key(&self, key: &[u8]) -> Locked<'_, 'n> {
        self.lock_shard(self.node.store.shard_of(key))
    }

    /// The locks of every shard in `indices` (deduplicated), taken in ascending order (the one
    /// lock order node-wide) or lent by the transaction.
    pub fn lock_many(&self, mut indices: Vec<usize>) -> Vec<Locked<'_, 'n>> {
        let mut locked: Vec<Locked<'_, 'n>> = match self.held {
            None => self
                .node
                .store
                .lock_many(indices, Some(self.task))
                .into_iter()
                .map(Locked::Own)
                .collect(),
            Some(held) => {
                indices.sort_unstable();
                indices.dedup();
                indices.into_iter().map(|i| held.lend(i)).collect()
            }
        };
        for guard in &mut locked {
            guard.set_touch(!self.client.no_touch);
        }
        locked
    }

    /// The locks of the shards two keys live in (RENAME, COPY, LCS), taken with one
    /// [`lock_many`](Self::lock_many): in ascending order, and one lock when they share a shard.
    pub fn lock_pair(&self, first: &[u8], second: &[u8]) -> PairLocks<'_, 'n> {
        let store = &self.node.store;
        let (a, b) = (store.shard_of(first), store.shard_of(second));
        let guards = self.lock_many(vec![a, b]);
        // `lock_many` sorts and deduplicates: one guard for one shard, else the lower first.
        let (first, second) = match a.cmp(&b) {
            std::cmp::Ordering::Equal => (0, 0),
            std::cmp::Ordering::Less => (0, 1),
            std::cmp::Ordering::Greater => (1, 0),
        };
        debug_assert_eq!((guards[first].index, guards[second].index), (a, b));
        PairLocks { guards, first, second }
    }

    /// Whether the command runs inside a transaction that holds its locks: it must not wait for
    /// memory to be made (eviction takes shard locks).
    pub fn in_transaction(&self) -> bool {
        self.held.is_some()
    }
}

/// The shard locks of a two-key command, from [`Ctx::lock_pair`].
pub struct PairLocks<'g, 'n> {
    guards: Vec<Locked<'g, 'n>>,
    /// The position in `guards` of the first key's shard.
    first: usize,
    /// The position in `guards` of the second key's shard (`first` when they share one).
    second: usize,
}

impl<'n> PairLocks<'_, 'n> {
    /// The lock of the first key's shard.
    pub fn first(&mut self) -> &mut ShardGuard<'n> {
        &mut self.guards[self.first]
    }

    /// The lock of the second key's shard (the same lock as `first` when they share a shard).
    pub fn second(&mut self) -> &mut ShardGuard<'n> {
        &mut self.guards[self.second]
    }
}

/// The shard locks a transaction took, in ascending order, before running its commands.
pub struct HeldShards<'n> {
    indices: Vec<usize>,
    guards: Vec<RefCell<ShardGuard<'n>>>,
}

impl<'n> HeldShards<'n> {
    /// Locks `indices` (any order, duplicates allowed) for `task`.
    pub fn lock(node: &'n NodeState, task: &'n Task, indices: Vec<usize>) -> Self {
        let guards = node.store.lock_many(indices, Some(task));
        let indices = guards.iter().map(|g| g.index).collect();
        Self { indices, guards: guards.into_iter().map(RefCell::new).collect() }
    }

    /// Shard `index`'s guard, for one command to use. A shard the transaction did not lock
    /// would have to be locked out of order: the transaction's shard list missed a command's
    /// keys, a bug, and a panic here says so rather than risking a deadlock.
    fn lend(&self, index: usize) -> Locked<'_, 'n> {
        match self.indices.binary_search(&index) {
            Ok(i) => Locked::Held(self.guards[i].borrow_mut()),
            Err(_) => {
                panic!("a command in a transaction used shard {index}, which it did not lock")
            }
        }
    }

    /// Every guard held, for checks across the transaction's shards.
    pub fn guards(&self) -> impl Iterator<Item = std::cell::Ref<'_, ShardGuard<'n>>> {
        self.guards.iter().map(RefCell::borrow)
    }
}

/// A shard lock a command uses: its own, or one its transaction lends it.
pub enum Locked<'g, 'n> {
    Own(ShardGuard<'n>),
    Held(RefMut<'g, ShardGuard<'n>>),
}

impl<'n> Deref for Locked<'_, 'n> {
    type Target = ShardGuard<'n>;

    #[inline]
    fn deref(&self) -> &ShardGuard<'n> {
        match self {
            Locked::Own(guard) => guard,
            Locked::Held(guard) => guard,
        }
    }
}

impl Locked<'_, '_> {
    fn set_touch(&mut self, touch: bool) {
        let guard: &mut ShardGuard<'_> = self;
        guard.set_touch(touch);
    }
}

impl<'n> DerefMut for Locked<'_, 'n> {
    #[inline]
    fn deref_mut(&mut self) -> &mut ShardGuard<'n> {
        match self {
            Locked::Own(guard) => guard,
            Locked::Held(guard) => guard,
        }
    }
}

type Handler = fn(&mut Ctx<'_, '_>, &[Bytes]) -> Reply;

/// The value bytes a growing write may add beyond its keys and their per-entry costs, known
/// before it runs so that room is made (or the write refused) before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// Its non-key argument bytes (SET's value, APPEND's suffix, MSET's values; options counted
    /// too, an overestimate of a few bytes).
    Args,
    /// The longest text of an integer (INCR and friends: the result is not in the arguments).
    Integer,
    /// The longest text of a double (INCRBYFLOAT).
    Double,
    /// Zero padding up to the offset, as SETRANGE writes it.
    Padding,
    /// Zero padding up to the byte of the bit offset, as SETBIT writes it.
    BitPadding,
    /// The source key's value, which COPY stores again under the destination key: known only by
    /// looking the source up.
    SourceValue,
    /// Fields and values in pairs after the key (HSET, HMSET, HSETNX): their bytes, each
    /// field's overhead, and the growth of the hash's own table.
    Fields,
    /// Members after the key (SADD): as `Fields`. (SMOVE is not checked against maxmemory, as
    /// in Redis, where it is not `denyoom`.)
    Members,
    /// One field of the hash whose value becomes an integer (HINCRBY).
    FieldInteger,
    /// One field of the hash whose value becomes a double (HINCRBYFLOAT).
    FieldDouble,
    /// A set computed from the sets at the other keys (SINTERSTORE, SUNIONSTORE, SDIFFSTORE): at
    /// most what those sets take.
    SetStore,
}

/// What a command does to the store: whether draining refuses it and maxmemory checks it.
/// (`COMMAND INFO`'s flags are Redis's own per command, in `server.rs`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Reads only.
    Read,
    /// Writes without growing memory (DEL, EXPIRE, PERSIST...): refused while draining only.
    Write,
    /// Writes that may grow memory: refused while draining and checked against maxmemory for
    /// what they may add.
    WriteGrow(Growth),
    /// Connection and server commands: no keys.
    Admin,
}

/// One row of the command table.
pub struct CommandSpec {
    /// Lowercase, as Redis prints it in errors and COMMAND replies.
    pub name: &'static str,
    /// Redis arity: positive = exact argument count including the name, negative = minimum.
    pub arity: i32,
    pub kind: Kind,
    /// Key positions for COMMAND INFO: first, last (-1 = last argument), step.
    pub keys: (i32, i32, i32),
    pub handler: Handler,
    /// Allowed before AUTH when a password is required.
    pub no_auth: bool,
}

macro_rules! cmd {
    ($name:literal, $arity:expr, $kind:ident $(($growth:ident))?, $keys:expr, $handler:path) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            kind: Kind::$kind $((Growth::$growth))?,
            keys: $keys,
            handler: $handler,
            no_auth: false,
        }
    };
    ($name:literal, $arity:expr, $kind:ident $(($growth:ident))?, $keys:expr, $handler:path, no_auth) => {
        CommandSpec {
            name: $name,
            arity: $arity,
            kind: Kind::$kind $((Growth::$growth))?,
            keys: $keys,
            handler: $handler,
            no_auth: true,
        }
    };
}

const NO_KEYS: (i32, i32, i32) = (0, 0, 0);
const ONE_KEY: (i32, i32, i32) = (1, 1, 1);
const TWO_KEYS: (i32, i32, i32) = (1, 2, 1);
const ALL_KEYS: (i32, i32, i32) = (1, -1, 1);
const PAIRS: (i32, i32, i32) = (1, -1, 2);

/// Every command the node knows.
pub static COMMANDS: &[CommandSpec] = &[
    cmd!("ping", -1, Admin, NO_KEYS, connection::ping),
    cmd!("echo", 2, Admin, NO_KEYS, connection::echo),
    cmd!("quit", -1, Admin, NO_KEYS, connection::quit, no_auth),
    cmd!("hello", -1, Admin, NO_KEYS, connection::hello, no_auth),
    cmd!("auth", -2, Admin, NO_KEYS, connection::auth, no_auth),
    cmd!("select", 2, Admin, NO_KEYS, connection::select),
    cmd!("client", -2, Admin, NO_KEYS, connection::client),
    cmd!("get", 2, Read, ONE_KEY, strings::get),
    cmd!("set", -3, WriteGrow(Args), ONE_KEY, strings::set),
    cmd!("setnx", 3, WriteGrow(Args), ONE_KEY, strings::setnx),
    cmd!("setex", 4, WriteGrow(Args), ONE_KEY, strings::setex),
    cmd!("psetex", 4, WriteGrow(Args), ONE_KEY, strings::psetex),
    cmd!("getset", 3, WriteGrow(Args), ONE_KEY, strings::getset),
    cmd!("getdel", 2, Write, ONE_KEY, strings::getdel),
    cmd!("getex", -2, Write, ONE_KEY, strings::getex),
    cmd!("mget", -2, Read, ALL_KEYS, strings::mget),
    cmd!("mset", -3, WriteGrow(Args), PAIRS, strings::mset),
    cmd!("msetnx", -3, WriteGrow(Args), PAIRS, strings::msetnx),
    cmd!("incr", 2, WriteGrow(Integer), ONE_KEY, strings::incr),
    cmd!("decr", 2, WriteGrow(Integer), ONE_KEY, strings::decr),
    cmd!("incrby", 3, WriteGrow(Integer), ONE_KEY, strings::incrby),
    cmd!("decrby", 3, WriteGrow(Integer), ONE_KEY, strings::decrby),
    cmd!("incrbyfloat", 3, WriteGrow(Double), ONE_KEY, strings::incrbyfloat),
    cmd!("append", 3, WriteGrow(Args), ONE_KEY, strings::append),
    cmd!("strlen", 2, Read, ONE_KEY, strings::strlen),
    cmd!("getrange", 4, Read, ONE_KEY, strings::getrange),
    cmd!("substr", 4, Read, ONE_KEY, strings::getrange),
    cmd!("setrange", 4, WriteGrow(Padding), ONE_KEY, strings::setrange),
    cmd!("setbit", 4, WriteGrow(BitPadding), ONE_KEY, bits::setbit),
    cmd!("getbit", 3, Read, ONE_KEY, bits::getbit),
    cmd!("bitcount", -2, Read, ONE_KEY, bits::bitcount),
    cmd!("lcs", -3, Read, TWO_KEYS, lcs::lcs),
    cmd!("hset", -4, WriteGrow(Fields), ONE_KEY, hashes::hset),
    cmd!("hmset", -4, WriteGrow(Fields), ONE_KEY, hashes::hmset),
    cmd!("hsetnx", 4, WriteGrow(Fields), ONE_KEY, hashes::hsetnx),
    cmd!("hget", 3, Read, ONE_KEY, hashes::hget),
    cmd!("hmget", -3, Read, ONE_KEY, hashes::hmget),
    cmd!("hdel", -3, Write, ONE_KEY, hashes::hdel),
    cmd!("hgetall", 2, Read, ONE_KEY, hashes::hgetall),
    cmd!("hkeys", 2, Read, ONE_KEY, hashes::hkeys),
    cmd!("hvals", 2, Read, ONE_KEY, hashes::hvals),
    cmd!("hlen", 2, Read, ONE_KEY, hashes::hlen),
    cmd!("hexists", 3, Read, ONE_KEY, hashes::hexists),
    cmd!("hstrlen", 3, Read, ONE_KEY, hashes::hstrlen),
    cmd!("hincrby", 4, WriteGrow(FieldInteger), ONE_KEY, hashes::hincrby),
    cmd!("hincrbyfloat", 4, WriteGrow(FieldDouble), ONE_KEY, hashes::hincrbyfloat),
    cmd!("hrandfield", -2, Read, ONE_KEY, hashes::hrandfield),
    cmd!("hscan", -3, Read, ONE_KEY, hashes::hscan),
    cmd!("sadd", -3, WriteGrow(Members), ONE_KEY, sets::sadd),
    cmd!("srem", -3, Write, ONE_KEY, sets::srem),
    cmd!("smembers", 2, Read, ONE_KEY, sets::smembers),
    cmd!("sismember", 3, Read, ONE_KEY, sets::sismember),
    cmd!("smismember", -3, Read, ONE_KEY, sets::smismember),
    cmd!("scard", 2, Read, ONE_KEY, sets::scard),
    cmd!("spop", -2, Write, ONE_KEY, sets::spop),
    cmd!("srandmember", -2, Read, ONE_KEY, sets::srandmember),
    cmd!("sscan", -3, Read, ONE_KEY, sets::sscan),
    cmd!("smove", 4, Write, TWO_KEYS, sets::smove),
    cmd!("sinter", -2, Read, ALL_KEYS, sets::sinter),
    cmd!("sunion", -2, Read, ALL_KEYS, sets::sunion),
    cmd!("sdiff", -2, Read, ALL_KEYS, sets::sdiff),
    cmd!("sinterstore", -3, WriteGrow(SetStore), ALL_KEYS, sets::sinterstore),
    cmd!("sunionstore", -3, WriteGrow(SetStore), ALL_KEYS, sets::sunionstore),
    cmd!("sdiffstore", -3, WriteGrow(SetStore), ALL_KEYS, sets::sdiffstore),
    cmd!("del", -2, Write, ALL_KEYS, keys::del),
    cmd!("unlink", -2, Write, ALL_KEYS, keys::del),
    cmd!("exists", -2, Read, ALL_KEYS, keys::exists),
    cmd!("type", 2, Read, ONE_KEY, keys::type_),
    cmd!("touch", -2, Read, ALL_KEYS, keys::touch),
    cmd!("rename", 3, Write, TWO_KEYS, rename::rename),
    cmd!("renamenx", 3, Write, TWO_KEYS, rename::renamenx),
    cmd!("copy", -3, WriteGrow(SourceValue), TWO_KEYS, rename::copy),
    cmd!("object", -2, Read, NO_KEYS, object::object),
    cmd!("expire", -3, Write, ONE_KEY, keys::expire),
    cmd!("pexpire", -3, Write, ONE_KEY, keys::pexpire),
    cmd!("expireat", -3, Write, ONE_KEY, keys::expireat),
    cmd!("pexpireat", -3, Write, ONE_KEY, keys::pexpireat),
    cmd!("ttl", 2, Read, ONE_KEY, keys::ttl),
    cmd!("pttl", 2, Read, ONE_KEY, keys::pttl),
    cmd!("expiretime", 2, Read, ONE_KEY, keys::expiretime),
    cmd!("pexpiretime", 2, Read, ONE_KEY, keys::pexpiretime),
    cmd!("persist", 2, Write, ONE_KEY, keys::persist),
    cmd!("dbsize", 1, Read, NO_KEYS, keys::dbsize),
    cmd!("flushdb", -1, Write, NO_KEYS, keys::flushdb),
    cmd!("flushall", -1, Write, NO_KEYS, keys::flushdb),
    cmd!("keys", 2, Read, NO_KEYS, keys::keys),
    cmd!("scan", -2, Read, NO_KEYS, keys::scan),
    cmd!("randomkey", 1, Read, NO_KEYS, keys::randomkey),
    cmd!("info", -1, Admin, NO_KEYS, info::info),
    cmd!("config", -2, Admin, NO_KEYS, server::config),
    cmd!("command", -1, Admin, NO_KEYS, server::command),
    cmd!("memory", -2, Admin, NO_KEYS, server::memory),
    cmd!("time", 1, Admin, NO_KEYS, server::time),
    cmd!("slowlog", -2, Admin, NO_KEYS, slowlog::slowlog),
    cmd!("multi", 1, Admin, NO_KEYS, multi::multi),
    cmd!("exec", 1, Admin, NO_KEYS, multi::exec),
    cmd!("discard", 1, Admin, NO_KEYS, multi::discard),
    cmd!("watch", -2, Admin, ALL_KEYS, multi::watch),
    cmd!("unwatch", 1, Admin, NO_KEYS, multi::unwatch),
    cmd!("eval", -3, Read, NO_KEYS, scripts::eval),
    cmd!("evalsha", -3, Read, NO_KEYS, scripts::evalsha),
    cmd!("eval_ro", -3, Read, NO_KEYS, scripts::eval_ro),
    cmd!("evalsha_ro", -3, Read, NO_KEYS, scripts::evalsha_ro),
    cmd!("script", -2, Admin, NO_KEYS, scripts::script),
];

/// One subcommand of a container command (CLIENT, CONFIG, COMMAND, MEMORY, SLOWLOG). Redis 7
/// resolves it before running anything: an unknown one is `-ERR unknown subcommand ...`, and its
/// own arity is checked (`'client|id'`), both rejections; and it counts on a line of its own in
/// INFO commandstats (`cmdstat_client|list`).
pub struct SubcommandSpec {
    /// `container|name`, lowercase, as Redis names it.
    pub name: &'static str,
    /// Redis arity, the container's name included.
    pub arity: i32,
    /// Key positions for COMMAND GETKEYS (first, last, step), counted from the container's name.
    pub keys: (i32, i32, i32),
}

impl SubcommandSpec {
    /// The container's name (`client`).
    pub fn container(&self) -> &'static str {
        self.name.split_once('|').map_or(self.name, |(container, _)| container)
    }

    /// The subcommand's own name (`list`).
    pub fn short_name(&self) -> &'static str {
        self.name.split_once('|').map_or(self.name, |(_, sub)| sub)
    }
}

macro_rules! sub {
    ($name:literal, $arity:expr) => {
        SubcommandSpec { name: $name, arity: $arity, keys: NO_KEYS }
    };
    ($name:literal, $arity:expr, $keys:expr) => {
        SubcommandSpec { name: $name, arity: $arity, keys: $keys }
    };
}

/// Every subcommand the node knows, grouped by container, with redis-server 7.0.15's arities
/// (`client|setinfo` and `client|no-touch` are Redis 7.2's).
pub static SUBCOMMANDS: &[SubcommandSpec] = &[
    sub!("client|id", 2),
    sub!("client|setname", 3),
    sub!("client|getname", 2),
    sub!("client|list", -2),
    sub!("client|kill", -3),
    sub!("client|info", 2),
    sub!("client|setinfo", 4),
    sub!("client|reply", 3),
    sub!("client|no-evict", 3),
    sub!("client|no-touch", 3),
    sub!("client|help", 2),
    sub!("config|get", -3),
    sub!("config|set", -4),
    sub!("config|resetstat", 2),
    sub!("config|help", 2),
    sub!("command|count", 2),
    sub!("command|info", -2),
    sub!("command|docs", -2),
    sub!("command|getkeys", -4),
    sub!("command|list", -2),
    sub!("command|help", 2),
    sub!("memory|usage", -3, (2, 2, 1)),
    sub!("memory|help", 2),
    sub!("slowlog|get", -2),
    sub!("slowlog|len", 2),
    sub!("slowlog|reset", 2),
    sub!("slowlog|help", 2),
    sub!("object|encoding", 3, (2, 2, 1)),
    sub!("object|freq", 3, (2, 2, 1)),
    sub!("object|idletime", 3, (2, 2, 1)),
    sub!("object|refcount", 3, (2, 2, 1)),
    sub!("object|help", 2),
    sub!("script|load", 3),
    sub!("script|exists", -3),
    sub!("script|flush", -2),
    sub!("script|kill", 2),
    sub!("script|help", 2),
];

/// Per command-table index: the range of `SUBCOMMANDS` that are its subcommands (empty for a
/// command that is not a container).
static SUBCOMMAND_RANGES: LazyLock<Vec<std::ops::Range<usize>>> = LazyLock::new(|| {
    COMMANDS
        .iter()
        .map(|spec| {
            let first = SUBCOMMANDS.iter().position(|s| s.container() == spec.name);
            let count = SUBCOMMANDS.iter().filter(|s| s.container() == spec.name).count();
            first.map_or(0..0, |first| first..first + count)
        })
        .collect()
});

/// The subcommands of the command at table index `index` (none unless it is a container), each
/// with its index in `SUBCOMMANDS`.
pub fn subcommands_of(index: u16) -> impl Iterator<Item = (usize, &'static SubcommandSpec)> {
    SUBCOMMAND_RANGES[index as usize].clone().map(|j| (j, &SUBCOMMANDS[j]))
}

/// The subcommand `name` (any case) of the command at table index `index`, by its index in
/// `SUBCOMMANDS`.
pub fn lookup_subcommand(index: u16, name: &[u8]) -> Option<usize> {
    subcommands_of(index).find(|(_, s)| is(name, s.short_name())).map(|(j, _)| j)
}

/// How many lines INFO commandstats can have: one per command, then one per subcommand.
pub fn stat_slots() -> usize {
    COMMANDS.len() + SUBCOMMANDS.len()
}

/// The name a commandstats slot is reported under (`get`, `client|list`).
pub fn stat_name(slot: usize) -> &'static str {
    match COMMANDS.get(slot) {
        Some(spec) => spec.name,
        None => SUBCOMMANDS[slot - COMMANDS.len()].name,
    }
}

/// The commandstats slot of subcommand `j` (an index in `SUBCOMMANDS`).
fn subcommand_slot(j: usize) -> u16 {
    (COMMANDS.len() + j) as u16
}

/// Name -> table index. foldhash, not the default SipHash: this lookup runs once per command.
static BY_NAME: LazyLock<HashMap<&'static str, u16, foldhash::fast::FixedState>> =
    LazyLock::new(|| COMMANDS.iter().enumerate().map(|(i, c)| (c.name, i as u16)).collect());

/// The table index of a command name (any case).
pub fn lookup(name: &[u8]) -> Option<u16> {
    let mut lower = [0u8; 16];
    if name.len() > lower.len() {
        return None;
    }
    for (dst, src) in lower.iter_mut().zip(name) {
        *dst = src.to_ascii_lowercase();
    }
    let lower = std::str::from_utf8(&lower[..name.len()]).ok()?;
    BY_NAME.get(lower).copied()
}

/// What Redis's `%.Ns` prints of an argument: its bytes up to the first NUL (it reads a C
/// string), at most `max` of them.
pub(super) fn c_string_prefix(arg: &[u8], max: usize) -> &[u8] {
    let arg = &arg[..memchr::memchr(0, arg).unwrap_or(arg.len())];
    &arg[..arg.len().min(max)]
}

/// An error that ends by quoting what the client sent, as Redis's `"<prefix>'%s'"`: the raw
/// bytes up to a NUL.
pub(super) fn error_quoting(prefix: &str, arg: &[u8]) -> Reply {
    let mut text = prefix.as_bytes().to_vec();
    text.push(b'\'');
    text.extend_from_slice(c_string_prefix(arg, usize::MAX));
    text.push(b'\'');
    Reply::error(text)
}

/// Redis's reply to an unknown command (`commandCheckExistence` in `server.c`): the name (128
/// bytes at most) and the arguments, each quoted and followed by a space, while fewer than 128
/// argument bytes are listed, the last cut to fit 128. Raw bytes, as the client sent them;
/// `\r` and `\n` become spaces when the reply is encoded.
fn unknown_command(args: &[Bytes]) -> Reply {
    let mut listed = Vec::new();
    for arg in &args[1..] {
        if listed.len() >= 128 {
            break;
        }
        let room = 128 - listed.len();
        listed.push(b'\'');
        listed.extend_from_slice(c_string_prefix(arg, room));
        listed.extend_from_slice(b"' ");
    }
    let mut text = b"ERR unknown command '".to_vec();
    text.extend_from_slice(c_string_prefix(&args[0], 128));
    text.extend_from_slice(b"', with args beginning with: ");
    text.extend_from_slice(&listed);
    Reply::error(text)
}

pub fn wrong_arity(name: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{name}' command"))
}

/// What one command came to.
#[derive(Debug)]
pub struct Executed {
    /// Its command table index; `None` for a name the table does not know.
    pub index: Option<u16>,
    /// Its INFO commandstats slot (a subcommand's for a container command, see [`stat_name`]);
    /// `None` for an unknown command or subcommand, which Redis counts only in errorstats.
    pub stat: Option<u16>,
    /// Whether it ran, was refused, or was queued by MULTI.
    pub outcome: Outcome,
    pub reply: Reply,
}

impl Executed {
    fn rejected(index: Option<u16>, stat: Option<u16>, reply: Reply) -> Self {
        Self { index, stat, outcome: Outcome::Rejected, reply }
    }
}

/// Executes one command, `index` being `lookup(&args[0])` (the connection looks each name up
/// once, for the prefetch and for this). `args` is never empty (the parser skips empty frames).
///
/// Inside MULTI a command that passes these checks is queued instead (see [`multi`]), and one
/// refused by them fails the transaction.
pub fn execute(ctx: &mut Ctx<'_, '_>, index: Option<u16>, args: &[Bytes]) -> Executed {
    dispatch(ctx, index, args)
}

/// The commandstats slot of a known command: its own, or, for a container called with a
/// subcommand, the subcommand's, checked as Redis checks it before running anything (unknown
/// subcommand: no slot to count under; wrong arity: a rejection counted on the subcommand).
fn resolve_subcommand(index: u16, args: &[Bytes]) -> Result<u16, (Option<u16>, Reply)> {
    if args.len() < 2 || SUBCOMMAND_RANGES[index as usize].is_empty() {
        return Ok(index);
    }
    let Some(j) = lookup_subcommand(index, &args[1]) else {
        return Err((None, unknown_subcommand(&args[1], COMMANDS[index as usize].name)));
    };
    let sub = &SUBCOMMANDS[j];
    let argc = args.len() as i32;
    if (sub.arity > 0 && argc != sub.arity) || argc < -sub.arity {
        return Err((Some(subcommand_slot(j)), wrong_arity(sub.name)));
    }
    Ok(subcommand_slot(j))
}

/// A command refused by the dispatcher's checks (Redis's `rejectCommand`): it fails an open
/// transaction; EXEC refused discards it, with Redis's EXECABORT reply. (A command's own error,
/// such as MULTI's inside MULTI, does neither.)
fn refused(ctx: &mut Ctx<'_, '_>, index: Option<u16>, stat: Option<u16>, error: Reply) -> Executed {
    let reply = match index.map(|i| COMMANDS[i as usize].name) {
        Some("exec") => multi::abort_refused(ctx, error),
        _ => {
            multi::flag_failed(ctx.client);
            error
        }
    };
    Executed::rejected(index, stat, reply)
}

fn dispatch(ctx: &mut Ctx<'_, '_>, index: Option<u16>, args: &[Bytes]) -> Executed {
    let Some(index) = index else {
        return refused(ctx, None, None, unknown_command(args));
    };
    let spec = &COMMANDS[index as usize];
    let argc = args.len() as i32;
    if (spec.arity > 0 && argc != spec.arity) || argc < -spec.arity {
        return refused(ctx, Some(index), Some(index), wrong_arity(spec.name));
    }
    let stat = match resolve_subcommand(index, args) {
        Ok(stat) => stat,
        Err((stat, reply)) => return refused(ctx, Some(index), stat, reply),
    };
    if !ctx.client.authenticated && !spec.no_auth {
        return refused(
            ctx,
            Some(index),
            Some(stat),
            Reply::error("NOAUTH Authentication required."),
        );
    }
    if ctx.client.multi.is_some() && !multi::runs_in_multi(spec.name) {
        // Redis refuses every queued command while memory cannot be made under maxmemory (a
        // queue may grow without bound), and a write on a node that refuses writes.
        if ctx.node.store.maxmemory() != 0
            && let Err(oom) = ctx.node.store.ensure_memory(0, &[], Some(ctx.task))
        {
            return refused(ctx, Some(index), Some(stat), Reply::error(oom.to_string()));
        }
        if matches!(spec.kind, Kind::Write | Kind::WriteGrow(_)) && ctx.node.is_draining() {
            return refused(ctx, Some(index), Some(stat), Reply::error(ERR_DRAINING));
        }
        let reply = multi::queue(ctx.client, index, stat, args);
        return Executed { index: Some(index), stat: Some(stat), outcome: Outcome::Queued, reply };
    }
    let rejected = |reply: Reply| Executed::rejected(Some(index), Some(stat), reply);
    if matches!(spec.kind, Kind::Write | Kind::WriteGrow(_)) && ctx.node.is_draining() {
        return rejected(Reply::error(ERR_DRAINING));
    }
    // Without a limit there is nothing to reserve (`ensure_memory` would return at once).
    if let Kind::WriteGrow(grows) = spec.kind
        && ctx.node.store.maxmemory() != 0
    {
        let keys = key_positions(spec, args.len());
        let growth = value_growth(ctx, grows, args, &keys);
        let keys: Vec<&[u8]> = keys.iter().map(|&i| &args[i][..]).collect();
        if let Err(oom) = reserve(ctx, &keys, growth) {
            return rejected(oom);
        }
        ctx.reserved = growth;
    }
    let reply = (spec.handler)(ctx, args);
    let outcome = if ctx.refused { Outcome::Rejected } else { Outcome::Called };
    Executed { index: Some(index), stat: Some(stat), outcome, reply }
}

/// Counts a command in INFO commandstats, latencystats and errorstats (and `/metrics`), `took`
/// being how long it ran, and logs it in the slow log if it ran slow.
pub fn account(
    node: &NodeState,
    task: &Task,
    executed: &Executed,
    args: &[Bytes],
    took: std::time::Duration,
) {
    let error = match &executed.reply {
        Reply::Error(text) => Some(text),
        _ => None,
    };
    let usec = took.as_micros() as u64;
    node.counters.record(executed.stat, executed.outcome, usec, error.is_some());
    if let (Outcome::Called, Some(stat)) = (executed.outcome, executed.stat) {
        node.counters.record_latency(stat, took.as_nanos() as u64);
    }
    if let Some(text) = error {
        node.counters.record_error(text);
    }
    if let (Outcome::Called, Some(index)) = (executed.outcome, executed.index) {
        slowlog::log_if_slow(node, task, index, args, usec);
    }
}

/// Whether a command's calls stay out of the slow log (Redis's `skip_slowlog` flag: EXEC, whose
/// commands are logged one by one).
pub fn skips_slowlog(index: u16) -> bool {
    COMMANDS[index as usize].name == "exec"
}

/// The positions of the arguments the slow log shows as `(redacted)`: passwords (Redis's
/// `redactClientCommandArgument`, called by AUTH and HELLO as they read their arguments).
pub fn secret_arguments(index: u16, args: &[Bytes]) -> Vec<usize> {
    match COMMANDS[index as usize].name {
        "auth" => connection::auth_secrets(args),
        "hello" => connection::hello_secrets(args),
        _ => Vec::new(),
    }
}

/// Longest text an integer value can have (`-9223372036854775808`): what INCR and friends may
/// store, whatever their arguments.
const MAX_INTEGER_TEXT: usize = 20;

/// Room made before INCRBYFLOAT runs: the longest text of a result within the f64 range (309
/// integer digits, or 17 decimals, and a sign), rounded up. Its `long double` results may be
/// wider, up to 4934 bytes; the command makes room for those itself, under its lock, when it
/// finds one.
pub(super) const MAX_DOUBLE_TEXT: usize = 340;

/// What a growing write of `args` may add in value bytes, per its [`Growth`].
fn value_growth(ctx: &Ctx<'_, '_>, grows: Growth, args: &[Bytes], keys: &[usize]) -> usize {
    match grows {
        Growth::Integer => MAX_INTEGER_TEXT,
        Growth::Double => MAX_DOUBLE_TEXT,
        Growth::Padding => strings::setrange_growth(ctx, args),
        Growth::BitPadding => bits::setbit_growth(ctx, args),
        Growth::SourceValue => rename::copy_growth(ctx, args),
        Growth::Fields => {
            let elements = args.len().saturating_sub(2) / 2;
            let bytes: usize = args[2..].iter().map(Bytes::len).sum();
            collection_growth(ctx, &args[1], elements, bytes)
        }
        Growth::Members => {
            let bytes: usize = args[2..].iter().map(Bytes::len).sum();
            collection_growth(ctx, &args[1], args.len() - 2, bytes)
        }
        Growth::FieldInteger => {
            collection_growth(ctx, &args[1], 1, args[2].len() + MAX_INTEGER_TEXT)
        }
        Growth::FieldDouble => collection_growth(ctx, &args[1], 1, args[2].len() + MAX_DOUBLE_TEXT),
        Growth::SetStore => args[2..]
            .iter()
            .map(|key| ctx.lock_key(key).peek_live(key, ctx.now_ms).map_or(0, |e| e.value.cost()))
            .sum(),
        Growth::Args => {
            let all: usize = args[1..].iter().map(|a| a.len()).sum();
            all - keys.iter().map(|&i| args[i].len()).sum::<usize>()
        }
    }
}

/// What adding `elements` elements of `bytes` bytes in all to the hash or set at `key` may take:
/// their bytes and overhead, and, when they may take its map past Go's load factor, the array
/// of its next doubling (its old array stays until evacuated).
fn collection_growth(ctx: &Ctx<'_, '_>, key: &[u8], elements: usize, bytes: usize) -> usize {
    let tables = ctx
        .lock_key(key)
        .peek_live(key, ctx.now_ms)
        .and_then(|e| e.value.as_collection().map(Collection::stats))
        .map_or(0, |stats| {
            let capacity = (1usize << stats.b) * 13 / 2;
            if stats.len + elements > capacity { 2 * stats.bytes_allocated } else { 0 }
        });
    bytes + elements * ELEMENT_OVERHEAD + tables + *EMPTY_COLLECTION_COST
}

/// What a new, empty hash's tables take (a set's take less).
static EMPTY_COLLECTION_COST: LazyLock<usize> = LazyLock::new(|| Value::new_hash().cost());

/// Makes room under maxmemory (evicting per the policy) for a write of `growth` value bytes to
/// `keys`: each key may be new (its bytes and the per-entry overhead) and may enter its shard's
/// TTL index (its bytes again), and each shard touched may grow its table. Must be called without
/// a shard lock held. The error is Redis's `-OOM` reply.
pub(super) fn reserve(ctx: &Ctx<'_, '_>, keys: &[&[u8]], growth: usize) -> Result<(), Reply> {
    let store = &ctx.node.store;
    let incoming = growth
        + keys.iter().map(|k| k.len() + super::store::ttl_index_cost(k)).sum::<usize>()
        + super::store::ENTRY_OVERHEAD * keys.len().max(1);
    if ctx.in_transaction() {
        // Eviction takes shard locks, which the transaction (or script) holds: inside one, only
        // a write that fits as things stand runs.
        let max = store.maxmemory() as usize;
        return if max == 0 || store.used_memory() + incoming <= max {
            Ok(())
        } else {
            Err(Reply::error(super::store::OutOfMemory.to_string()))
        };
    }
    let mut shards: Vec<usize> = keys.iter().map(|k| store.shard_of(k)).collect();
    shards.sort_unstable();
    shards.dedup();
    store
        .ensure_memory(incoming, &shards, Some(ctx.task))
        .map_err(|oom| Reply::error(oom.to_string()))
}

/// For a write that learns under its shard locks that it grows by more than the room made before
/// it ran: makes room for `growth` value bytes written to `keys` (the caller has let go of its
/// locks, since eviction takes shard locks itself) and records it; the caller then looks its
/// keys up again, as they may have changed meanwhile.
///
/// Inside a transaction nothing is reserved, only recorded: EXEC made room for the whole
/// transaction before it took its locks, and Redis checks no command of a running EXEC against
/// maxmemory; evicting here would take shard locks the transaction holds.
pub(super) fn reserve_more(
    ctx: &mut Ctx<'_, '_>,
    keys: &[&[u8]],
    growth: usize,
) -> Result<(), Reply> {
    if !ctx.in_transaction() {
        reserve(ctx, keys, growth)?;
    }
    ctx.reserved = growth;
    Ok(())
}

/// The argument indexes holding keys, from the table's (first, last, step).
fn key_positions(spec: &CommandSpec, argc: usize) -> Vec<usize> {
    key_range(spec, argc).collect()
}

fn key_range(
    spec: &CommandSpec,
    argc: usize,
) -> std::iter::StepBy<std::ops::RangeInclusive<usize>> {
    keys_in(spec.keys, argc)
}

/// The argument indexes a (first, last, step) key spec names among `argc` arguments (`last`
/// negative: counted back from the end).
fn keys_in(
    (first, last, step): (i32, i32, i32),
    argc: usize,
) -> std::iter::StepBy<std::ops::RangeInclusive<usize>> {
    if first <= 0 || argc <= first as usize {
        #[allow(clippy::reversed_empty_ranges)]
        return (1..=0).step_by(1);
    }
    let last = if last < 0 { argc as i32 + last } else { last.min(argc as i32 - 1) };
    (first as usize..=last as usize).step_by(step.max(1) as usize)
}

/// Prefetches what a pipelined batch's commands (each with its `lookup` index) will read, all
/// parsed before the first runs, so their cache misses overlap instead of queueing: the buckets
/// of all their keys, then, with those on their way, the keys' matching slots. Unknown commands
/// and commands without keys are skipped; nothing is checked or executed here.
pub fn prefetch_batch(node: &NodeState, batch: &[(Option<u16>, Vec<Bytes>)]) {
    for stage in [Prefetch::Bucket, Prefetch::Slots] {
        for (index, args) in batch {
            prefetch_keys(node, *index, args, stage);
        }
    }
}

/// One stage of `prefetch_batch` for one command's keys.
fn prefetch_keys(node: &NodeState, index: Option<u16>, args: &[Bytes], stage: Prefetch) {
    let Some(index) = index else {
        return;
    };
    for i in key_range(&COMMANDS[index as usize], args.len()) {
        node.store.prefetch(&args[i], stage);
    }
}

// ---- argument helpers shared by the families ----

pub const ERR_DRAINING: &str = "READONLY You can't write against a draining node.";
pub const ERR_NOT_INTEGER: &str = "ERR value is not an integer or out of range";

/// `-WRONGTYPE`: a command met a key holding another kind of value.
impl From<crate::server::value::WrongType> for Reply {
    fn from(wrong: crate::server::value::WrongType) -> Self {
        Reply::error(wrong.to_string())
    }
}
pub const ERR_SYNTAX: &str = "ERR syntax error";

/// Redis's `string2ll`: an optional `-`, digits, no spaces, no `+`, no leading zeros but "0".
pub fn parse_i64(arg: &[u8]) -> Option<i64> {
    if arg.is_empty() || arg.len() > 20 {
        return None;
    }
    let (neg, digits) = match arg.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, arg),
    };
    if digits.is_empty() || (digits[0] == b'0' && digits.len() > 1) || (neg && digits == b"0") {
        return None;
    }
    let mut value: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let digit = i64::from(d - b'0');
        value = if neg {
            value.checked_mul(10)?.checked_sub(digit)?
        } else {
            value.checked_mul(10)?.checked_add(digit)?
        };
    }
    Some(value)
}

pub fn int_arg(arg: &[u8]) -> Result<i64, Reply> {
    parse_i64(arg).ok_or_else(|| Reply::error(ERR_NOT_INTEGER))
}

/// Case-insensitive comparison of an argument with an ASCII option name.
pub fn is(arg: &[u8], option: &str) -> bool {
    arg.eq_ignore_ascii_case(option.as_bytes())
}

/// `-ERR unknown subcommand 'x'. Try CONFIG HELP.`
pub fn unknown_subcommand(sub: &[u8], command: &str) -> Reply {
    let mut text = b"ERR unknown subcommand '".to_vec();
    text.extend_from_slice(c_string_prefix(sub, 128));
    text.extend_from_slice(format!("'. Try {} HELP.", command.to_ascii_uppercase()).as_bytes());
    Reply::error(text)
}

/// `<COMMAND> HELP`, as Redis's `addReplyHelp`: the usage line, `lines` (the subcommands this
/// node has, in Redis's words and order), then HELP's own two lines, each a status reply. HELP
/// takes no argument: `CONFIG HELP x` is an arity error there and here.
pub fn help(command: &str, args: &[Bytes], lines: &[&str]) -> Reply {
    if args.len() != 2 {
        return wrong_sub_arity(command, &args[1]);
    }
    let usage = format!(
        "{} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        command.to_ascii_uppercase()
    );
    let own = ["HELP", "    Prints this help."];
    let rest = lines.iter().chain(&own).map(|line| Reply::Status((*line).to_owned()));
    Reply::Array(std::iter::once(Reply::Status(usage)).chain(rest).collect())
}

pub fn wrong_sub_arity(command: &str, sub: &[u8]) -> Reply {
    let sub = String::from_utf8_lossy(sub).to_ascii_lowercase();
    Reply::error(format!("ERR wrong number of arguments for '{command}|{sub}' command"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_i64_is_as_strict_as_string2ll() {
        assert_eq!(parse_i64(b"42"), Some(42));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"+1"), None);
        assert_eq!(parse_i64(b" 1"), None);
        assert_eq!(parse_i64(b"01"), None);
        assert_eq!(parse_i64(b"-0"), None);
        assert_eq!(parse_i64(b""), None);
    }

    #[test]
    fn unknown_command_lists_its_arguments_like_redis() {
        let reply = unknown_command(&[Bytes::from("foo"), Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(
            reply,
            Reply::error("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
        );
    }

    #[test]
    fn incrbyfloat_reserves_room_for_results_in_the_f64_range() {
        let length = |text: &str| match long_double::incr_by_float(None, text.as_bytes()) {
            Ok(printed) => printed.len(),
            Err(err) => panic!("{text}: {err:?}"),
        };
        let longest = ["-1.7976931348623157e308", "-1.5e-17", "-123456.00000000000000001"]
            .into_iter()
            .map(length)
            .max();
        assert_eq!(longest, Some(310));
        assert!(longest.is_some_and(|l| l <= MAX_DOUBLE_TEXT));
        assert_eq!(length("-1.18973149535723176502e+4932"), 4934);
    }

    fn error_text(reply: Reply) -> Vec<u8> {
        match reply {
            Reply::Error(text) => text.to_vec(),
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn unknown_command_echoes_raw_bytes_up_to_a_nul() {
        let args = [&b"f\xffo\x00hidden"[..], b"\xfe\xc3(", b"a\x00b", b"\r\n"];
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        assert_eq!(
            error_text(unknown_command(&args)),
            b"ERR unknown command 'f\xffo', with args beginning with: '\xfe\xc3(' 'a' '\r\n' "
                .to_vec()
        );
    }

    #[test]
    fn unknown_command_cuts_name_and_arguments_at_128_bytes_like_redis() {
        let name = Bytes::from(vec![b'n'; 200]);
        let long = Bytes::from(vec![b'a'; 100]);
        let args = [name, long.clone(), long.clone(), long];
        let mut expected = b"ERR unknown command '".to_vec();
        expected.extend([b'n'; 128]);
        expected.extend(b"', with args beginning with: '");
        // The first argument in full (listed: 103 bytes), the second cut to the 25 bytes left,
        // then the list is at 128 + 3 bytes and the third is not listed.
        expected.extend([b'a'; 100]);
        expected.extend(b"' '");
        expected.extend([b'a'; 25]);
        expected.extend(b"' ");
        assert_eq!(error_text(unknown_command(&args)), expected);
    }

    #[test]
    fn unknown_subcommand_echoes_raw_bytes() {
        assert_eq!(
            error_text(unknown_subcommand(b"\xff\x01x\x00y", "config")),
            b"ERR unknown subcommand '\xff\x01x'. Try CONFIG HELP.".to_vec()
        );
    }

    #[test]
    fn key_positions_follow_the_table() {
        let spec = |name: &[u8]| &COMMANDS[lookup(name).expect("known") as usize];
        assert_eq!(key_positions(spec(b"set"), 3), vec![1]);
        assert_eq!(key_positions(spec(b"mset"), 7), vec![1, 3, 5]);
        assert_eq!(key_positions(spec(b"del"), 4), vec![1, 2, 3]);
        assert_eq!(key_positions(spec(b"ping"), 1), Vec::<usize>::new());
    }

    #[test]
    fn subcommands_are_grouped_under_a_container_of_the_table() {
        for (index, spec) in COMMANDS.iter().enumerate() {
            let listed: Vec<&str> =
                SUBCOMMANDS.iter().filter(|s| s.container() == spec.name).map(|s| s.name).collect();
            let ranged: Vec<&str> = subcommands_of(index as u16).map(|(_, s)| s.name).collect();
            assert_eq!(ranged, listed, "{}", spec.name);
        }
        for sub in SUBCOMMANDS {
            assert!(lookup(sub.container().as_bytes()).is_some(), "{}", sub.name);
        }
        let client = lookup(b"client").expect("client");
        let list = lookup_subcommand(client, b"LiSt").expect("client|list");
        assert_eq!(stat_name(subcommand_slot(list) as usize), "client|list");
        assert_eq!(stat_name(client as usize), "client");
        assert_eq!(stat_slots(), COMMANDS.len() + SUBCOMMANDS.len());
        assert_eq!(lookup_subcommand(lookup(b"get").expect("get"), b"list"), None);
    }

    #[test]
    fn lookup_ignores_case_and_refuses_long_names() {
        assert_eq!(lookup(b"GeT").map(|i| COMMANDS[i as usize].name), Some("get"));
        assert_eq!(lookup(b"averyveryverylongname"), None);
    }
}
