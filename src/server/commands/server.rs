//! Server commands: CONFIG (GET SET RESETSTAT) COMMAND (COUNT DOCS INFO GETKEYS LIST) MEMORY
//! USAGE TIME. (INFO is in `info.rs`, SLOWLOG in `slowlog.rs`, COMMAND DOCS's data in
//! `command_docs.rs`.)

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{
    COMMANDS, CommandSpec, Ctx, is, lookup, lookup_subcommand, parse_i64, unknown_subcommand,
    wrong_sub_arity,
};
use crate::server::glob::glob_match;
use crate::server::resp::Reply;
use crate::server::state::parse_memory;
use crate::server::store::{EvictionPolicy, entry_cost};

/// The parameters CONFIG GET knows, with their current values.
fn config_params(ctx: &Ctx<'_, '_>) -> Vec<(&'static str, String)> {
    let node = ctx.node;
    vec![
        ("maxmemory", node.store.maxmemory().to_string()),
        ("maxmemory-policy", node.store.policy().name().to_string()),
        ("requirepass", node.requirepass.read().clone().unwrap_or_default()),
        ("protected-mode", yes_no(node.protected_mode.load(Ordering::Relaxed)).to_string()),
        ("databases", "1".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("proto-max-bulk-len", crate::server::resp::PROTO_MAX_BULK_LEN.to_string()),
        ("client-query-buffer-limit", node.config.query_buffer_limit.to_string()),
        ("client-output-buffer-limit", node.output_limits.config_text()),
        ("port", ctx.task.local.map_or(0, |a| a.port()).to_string()),
        ("bind", node.config.bind.to_string()),
        ("dir", node.config.data_dir.display().to_string()),
        ("maxmemory-samples", "5".to_string()),
        ("timeout", "0".to_string()),
        ("slowlog-log-slower-than", node.slowlog.slower_than_us().to_string()),
        ("slowlog-max-len", node.slowlog.max_len().to_string()),
        ("busy-reply-threshold", busy_ms(node).to_string()),
        ("lua-time-limit", busy_ms(node).to_string()),
    ]
}

fn yes_no(on: bool) -> &'static str {
    if on { "yes" } else { "no" }
}

fn busy_ms(node: &crate::server::state::NodeState) -> u128 {
    node.scripting.busy_threshold().as_millis()
}

/// A CONFIG SET value Redis 7 reads as an integer (`INTEGER_CONFIG`: `string2ll`, no units)
/// within `min..=max`, or its error naming the parameter.
fn config_integer(name: &str, value: &[u8], min: i64, max: i64) -> Result<i64, Reply> {
    let failed = |why: String| {
        Reply::error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
        ))
    };
    match parse_i64(value) {
        None => Err(failed("argument couldn't be parsed into an integer".to_string())),
        Some(v) if !(min..=max).contains(&v) => {
            Err(failed(format!("argument must be between {min} and {max} inclusive")))
        }
        Some(v) => Ok(v),
    }
}

/// `CONFIG HELP`'s lines for the subcommands this node has (Redis 7's text, REWRITE left out).
const CONFIG_HELP: &[&str] = &[
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
];

/// `COMMAND HELP`'s lines for the subcommands this node has (Redis 7's text).
const COMMAND_HELP: &[&str] = &[
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
];

/// `MEMORY HELP`'s lines for the subcommand this node has (Redis 7's text).
const MEMORY_HELP: &[&str] = &[
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
];

pub fn config(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    if is(sub, "GET") {
        if args.len() < 3 {
            return wrong_sub_arity("config", sub);
        }
        // As Redis 7's `configGetCommand`: an argument without `[*?` is a name, looked up in any
        // case and answered under the name as given; a pattern matches names in any case and
        // answers under their own. A parameter is listed once, however many arguments match it.
        let params = config_params(ctx);
        let mut listed: Vec<usize> = Vec::new();
        let mut pairs = Vec::new();
        for arg in &args[2..] {
            let pattern = arg.iter().any(|c| matches!(c, b'[' | b'*' | b'?'));
            let lower = arg.to_ascii_lowercase();
            for (i, (name, value)) in params.iter().enumerate() {
                let matched = if pattern {
                    glob_match(&lower, name.as_bytes())
                } else {
                    lower == name.as_bytes()
                };
                if matched && !listed.contains(&i) {
                    listed.push(i);
                    let shown =
                        if pattern { Bytes::from_static(name.as_bytes()) } else { arg.clone() };
                    pairs.push((Reply::Bulk(shown), Reply::bulk_str(value)));
                }
            }
        }
        Reply::Map(pairs)
    } else if is(sub, "SET") {
        if args.len() < 4 {
            return wrong_sub_arity("config", sub);
        }
        if !args.len().is_multiple_of(2) {
            return Reply::error(super::ERR_SYNTAX);
        }
        // As Redis 7's `configSetCommand`: every name is checked (an unknown one is reported as
        // given, before any bad value), then duplicates (as given), then each value (under the
        // parameter's own name); nothing is applied unless all pass.
        let settable = [
            "maxmemory",
            "maxmemory-policy",
            "slowlog-log-slower-than",
            "slowlog-max-len",
            "busy-reply-threshold",
            "lua-time-limit",
            "protected-mode",
            "client-output-buffer-limit",
        ];
        let mut names: Vec<&str> = Vec::new();
        for pair in args[2..].chunks(2) {
            let Some(name) = settable.into_iter().find(|n| is(&pair[0], n)) else {
                let prefix = "ERR Unknown option or number of arguments for CONFIG SET - ";
                return super::error_quoting(prefix, &pair[0]);
            };
            if names.contains(&name) {
                let mut text = b"ERR CONFIG SET failed (possibly related to argument '".to_vec();
                text.extend_from_slice(super::c_string_prefix(&pair[0], usize::MAX));
                text.extend_from_slice(b"') - duplicate parameter");
                return Reply::error(text);
            }
            names.push(name);
        }
        let mut memory = None;
        let mut policy = None;
        let mut busy = None;
        let mut slower_than = None;
        let mut max_len = None;
        let mut protected_mode = None;
        let mut output_limits = None;
        for (name, pair) in names.into_iter().zip(args[2..].chunks(2)) {
            let value = String::from_utf8_lossy(&pair[1]).into_owned();
            match name {
                "slowlog-log-slower-than" => match config_integer(name, &pair[1], -1, i64::MAX) {
                    Ok(v) => slower_than = Some(v),
                    Err(e) => return e,
                },
                "slowlog-max-len" => match config_integer(name, &pair[1], 0, i64::MAX) {
                    Ok(v) => max_len = Some(v as u64),
                    Err(e) => return e,
                },
                "maxmemory" => match parse_memory(&value) {
                    Ok(v) => memory = Some(v),
                    Err(_) => {
                        return Reply::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be a memory value"
                        ));
                    }
                },
                "maxmemory-policy" => match EvictionPolicy::parse(&value) {
                    Some(p) => policy = Some(p),
                    None => {
                        return Reply::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - argument(s) must be one of the following: noeviction, allkeys-random, allkeys-lru, volatile-ttl"
                        ));
                    }
                },
                "busy-reply-threshold" | "lua-time-limit" => {
                    match config_integer(name, &pair[1], 0, i64::MAX) {
                        Ok(ms) => busy = Some(std::time::Duration::from_millis(ms as u64)),
                        Err(e) => return e,
                    }
                }
                // Redis's `boolConfigSet`: yes or no, in any case.
                "protected-mode" if is(&pair[1], "yes") || is(&pair[1], "no") => {
                    protected_mode = Some(is(&pair[1], "yes"));
                }
                "protected-mode" => {
                    return Reply::error(format!(
                        "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be 'yes' or 'no'"
                    ));
                }
                "client-output-buffer-limit" => output_limits = Some(&pair[1]),
                _ => unreachable!("only settable names are kept"),
            }
        }
        if let Some(Err(why)) = output_limits.map(|text| ctx.node.output_limits.set(text)) {
            return Reply::error(format!(
                "ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - {why}"
            ));
        }
        if let Some(m) = memory {
            ctx.node.store.set_maxmemory(m);
        }
        if let Some(p) = policy {
            ctx.node.store.set_policy(p);
        }
        if let Some(on) = protected_mode {
            ctx.node.protected_mode.store(on, Ordering::Relaxed);
        }
        if let Some(threshold) = busy {
            ctx.node.scripting.set_busy_threshold(threshold);
        }
        let slowlog = &ctx.node.slowlog;
        if let Some(us) = slower_than {
            slowlog.set_slower_than_us(us);
        }
        if let Some(len) = max_len {
            slowlog.set_max_len(len);
        }
        if slower_than.is_some() || max_len.is_some() {
            // Redis trims the log as each command is considered for it, this one included.
            slowlog.trim();
        }
        Reply::ok()
    } else if is(sub, "RESETSTAT") {
        if args.len() != 2 {
            return wrong_sub_arity("config", sub);
        }
        // Redis's `resetServerStats`, commandstats and errorstats, for the figures INFO has. The
        // counts are also Prometheus counters, which must never go back: INFO subtracts a
        // baseline. The memory peak and the slow log stay, as in Redis 7.0.
        ctx.node.reset_stats();
        Reply::ok()
    } else if is(sub, "HELP") {
        super::help("config", args, CONFIG_HELP)
    } else {
        unknown_subcommand(sub, "config")
    }
}

/// The flags Redis 7 reports for each command in `COMMAND INFO` (read from redis-server 7.0.15's
/// own `COMMAND INFO`; none for CLIENT, CONFIG, MEMORY and OBJECT, as there). Only what clients read:
/// the node's behaviour follows [`Kind`](super::Kind), not these. `None` for a name not in the
/// table.
fn redis_flags(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "ping" => Some(&["fast"]),
        "echo" | "select" | "time" => Some(&["loading", "stale", "fast"]),
        "quit" | "hello" | "auth" => {
            Some(&["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"])
        }
        "client" | "config" | "memory" | "object" => Some(&[]),
        "get" | "mget" | "strlen" | "exists" | "type" | "ttl" | "pttl" | "expiretime"
        | "pexpiretime" | "dbsize" | "touch" | "getbit" => Some(&["readonly", "fast"]),
        "set" | "setex" | "psetex" | "mset" | "msetnx" | "setrange" | "copy" | "setbit" => {
            Some(&["write", "denyoom"])
        }
        "setnx" | "getset" | "incr" | "decr" | "incrby" | "decrby" | "incrbyfloat" | "append" => {
            Some(&["write", "denyoom", "fast"])
        }
        "getdel" | "getex" | "unlink" | "expire" | "pexpire" | "expireat" | "pexpireat"
        | "persist" | "renamenx" => Some(&["write", "fast"]),
        "getrange" | "substr" | "keys" | "scan" | "randomkey" | "bitcount" | "lcs" => {
            Some(&["readonly"])
        }
        "del" | "flushdb" | "flushall" | "rename" => Some(&["write"]),
        "info" | "command" => Some(&["loading", "stale"]),
        "multi" | "discard" | "watch" | "unwatch" => {
            Some(&["noscript", "loading", "stale", "fast", "allow_busy"])
        }
        "exec" => Some(&["noscript", "loading", "stale", "skip_slowlog"]),
        "slowlog" => Some(&[]),
        "eval" | "evalsha" => {
            Some(&["noscript", "stale", "skip_monitor", "no_mandatory_keys", "movablekeys"])
        }
        "eval_ro" | "evalsha_ro" => Some(&[
            "readonly",
            "noscript",
            "stale",
            "skip_monitor",
            "no_mandatory_keys",
            "movablekeys",
        ]),
        "script" => Some(&[]),
        // Subcommands, as redis-server 7.0.15's COMMAND INFO lists them.
        "client|id" | "client|setname" | "client|getname" | "client|info" | "client|reply" => {
            Some(&["noscript", "loading", "stale"])
        }
        "client|setinfo" | "client|no-touch" => Some(&["noscript", "loading", "stale"]),
        "client|list" | "client|kill" | "client|no-evict" | "config|get" | "config|set"
        | "config|resetstat" => Some(&["admin", "noscript", "loading", "stale"]),
        "client|help" | "object|help" | "config|help" | "command|count" | "command|info"
        | "command|docs" | "command|getkeys" | "command|list" | "command|help" | "memory|help"
        | "slowlog|help" | "script|help" => Some(&["loading", "stale"]),
        "object|encoding" | "object|freq" | "object|idletime" | "object|refcount"
        | "memory|usage" => Some(&["readonly"]),
        "slowlog|get" | "slowlog|len" | "slowlog|reset" => Some(&["admin", "loading", "stale"]),
        "script|load" => Some(&["noscript", "stale"]),
        "script|exists" | "script|flush" => Some(&["noscript"]),
        "script|kill" => Some(&["noscript", "allow_busy"]),
        "hset" | "hmset" | "hsetnx" | "hincrby" | "hincrbyfloat" | "sadd" => {
            Some(&["write", "denyoom", "fast"])
        }
        "hget" | "hmget" | "hlen" | "hexists" | "hstrlen" | "sismember" | "smismember"
        | "scard" => Some(&["readonly", "fast"]),
        "hdel" | "srem" | "spop" | "smove" => Some(&["write", "fast"]),
        "hgetall" | "hkeys" | "hvals" | "hrandfield" | "hscan" | "smembers" | "srandmember"
        | "sscan" | "sinter" | "sunion" | "sdiff" => Some(&["readonly"]),
        "sinterstore" | "sunionstore" | "sdiffstore" => Some(&["write", "denyoom"]),
        _ => None,
    }
}

/// The ACL categories Redis 7 puts each command and subcommand in (read from redis-server
/// 7.0.15's `COMMAND INFO`; `client|setinfo` and `client|no-touch` from Redis 7.2), without the
/// `@`: what `COMMAND LIST FILTERBY ACLCAT` matches. `None` for a name the node does not have.
fn acl_categories(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "ping" | "echo" | "quit" | "hello" | "auth" | "select" => &["fast", "connection"],
        "client" | "config" | "memory" | "slowlog" => &["slow"],
        "client|id" | "client|setname" | "client|getname" | "client|info" | "client|setinfo"
        | "client|reply" | "client|no-touch" | "client|help" => &["slow", "connection"],
        "client|list" | "client|kill" | "client|no-evict" => {
            &["admin", "slow", "dangerous", "connection"]
        }
        "get" | "mget" | "strlen" => &["read", "string", "fast"],
        "getrange" | "substr" => &["read", "string", "slow"],
        "set" | "setex" | "psetex" | "mset" | "msetnx" | "setrange" => &["write", "string", "slow"],
        "setnx" | "getset" | "getdel" | "getex" | "incr" | "decr" | "incrby" | "decrby"
        | "incrbyfloat" | "append" => &["write", "string", "fast"],
        "del" => &["keyspace", "write", "slow"],
        "unlink" | "expire" | "pexpire" | "expireat" | "pexpireat" | "persist" => {
            &["keyspace", "write", "fast"]
        }
        "exists" | "type" | "ttl" | "pttl" | "expiretime" | "pexpiretime" | "dbsize" => {
            &["keyspace", "read", "fast"]
        }
        "flushdb" | "flushall" => &["keyspace", "write", "slow", "dangerous"],
        "keys" => &["keyspace", "read", "slow", "dangerous"],
        "scan" | "randomkey" => &["keyspace", "read", "slow"],
        "info" => &["slow", "dangerous"],
        "config|get" | "config|set" | "config|resetstat" | "slowlog|get" | "slowlog|len"
        | "slowlog|reset" => &["admin", "slow", "dangerous"],
        "config|help" | "memory|help" | "slowlog|help" => &["slow"],
        "command" | "command|count" | "command|info" | "command|docs" | "command|getkeys"
        | "command|list" | "command|help" => &["slow", "connection"],
        "memory|usage" => &["read", "slow"],
        "time" => &["fast"],
        "multi" | "discard" | "watch" | "unwatch" => &["fast", "transaction"],
        "exec" => &["slow", "transaction"],
        "touch" => &["keyspace", "read", "fast"],
        "rename" | "copy" => &["keyspace", "write", "slow"],
        "renamenx" => &["keyspace", "write", "fast"],
        "object" => &["slow"],
        "object|encoding" | "object|freq" | "object|idletime" | "object|refcount" => {
            &["keyspace", "read", "slow"]
        }
        "object|help" => &["keyspace", "slow"],
        "setbit" => &["write", "bitmap", "slow"],
        "hset" | "hmset" | "hsetnx" | "hdel" | "hincrby" | "hincrbyfloat" => {
            &["write", "hash", "fast"]
        }
        "hget" | "hmget" | "hlen" | "hexists" | "hstrlen" => &["read", "hash", "fast"],
        "hgetall" | "hkeys" | "hvals" | "hrandfield" | "hscan" => &["read", "hash", "slow"],
        "sadd" | "srem" | "spop" | "smove" => &["write", "set", "fast"],
        "smembers" | "srandmember" | "sscan" | "sinter" | "sunion" | "sdiff" => {
            &["read", "set", "slow"]
        }
        "sismember" | "smismember" | "scard" => &["read", "set", "fast"],
        "sinterstore" | "sunionstore" | "sdiffstore" => &["write", "set", "slow"],
        "getbit" => &["read", "bitmap", "fast"],
        "bitcount" => &["read", "bitmap", "slow"],
        "lcs" => &["read", "string", "slow"],
        "script" => &["slow"],
        "eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "script|load" | "script|exists"
        | "script|flush" | "script|kill" | "script|help" => &["slow", "scripting"],
        _ => return None,
    })
}

fn command_info(spec: &CommandSpec) -> Reply {
    let index = lookup(spec.name.as_bytes()).expect("a command of the table");
    let subcommands = super::subcommands_of(index)
        .map(|(_, sub)| info_reply(sub.name, sub.arity, sub.keys, Reply::Set(Vec::new())));
    info_reply(spec.name, spec.arity, spec.keys, Reply::Set(subcommands.collect()))
}

/// `COMMAND INFO` of one name: a command, or `container|sub` (any case) for a subcommand, as
/// Redis 7 looks names up; nil for a name the node does not have.
fn info_of(name: &[u8]) -> Reply {
    let found = match name.iter().position(|&b| b == b'|') {
        None => lookup(name).map(|i| command_info(&COMMANDS[i as usize])),
        Some(bar) => {
            lookup(&name[..bar]).and_then(|i| lookup_subcommand(i, &name[bar + 1..])).map(|j| {
                let sub = &super::SUBCOMMANDS[j];
                info_reply(sub.name, sub.arity, sub.keys, Reply::Set(Vec::new()))
            })
        }
    };
    found.unwrap_or(Reply::Nil)
}

/// One command's or subcommand's `COMMAND INFO` entry, `subcommands` its last element.
fn info_reply(name: &str, arity: i32, keys: (i32, i32, i32), subcommands: Reply) -> Reply {
    let flags = redis_flags(name).unwrap_or_default();
    let categories = acl_categories(name).unwrap_or_default();
    // Redis 7's `addReplyCommandInfo`: flags, ACL categories, tips and subcommands are sets
    // (RESP3 `~`), key specs an array. Tips and key specs are not served (empty).
    Reply::Array(vec![
        Reply::bulk_str(name),
        Reply::Integer(i64::from(arity)),
        Reply::Set(flags.iter().map(|f| Reply::Status((*f).to_string())).collect()),
        Reply::Integer(i64::from(keys.0)),
        Reply::Integer(i64::from(keys.1)),
        Reply::Integer(i64::from(keys.2)),
        Reply::Set(categories.iter().map(|c| Reply::Status(format!("@{c}"))).collect()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        subcommands,
    ])
}

/// `COMMAND GETKEYS <command> <arg>...`, as Redis 7's `getKeysSubcommandImpl`: the command (or
/// the subcommand of a container) must exist, have keys, and be given its arity; then its key
/// arguments, in order.
fn command_getkeys(args: &[Bytes]) -> Reply {
    let command = &args[2..];
    let Some(index) = lookup(&command[0]) else {
        return Reply::error("ERR Invalid command specified");
    };
    let spec = &COMMANDS[index as usize];
    let (arity, keys) = if command.len() >= 2 && super::subcommands_of(index).next().is_some() {
        match lookup_subcommand(index, &command[1]) {
            Some(j) => (super::SUBCOMMANDS[j].arity, super::SUBCOMMANDS[j].keys),
            None => return Reply::error("ERR Invalid command specified"),
        }
    } else {
        (spec.arity, spec.keys)
    };
    if keys.0 <= 0 {
        return Reply::error("ERR The command has no key arguments");
    }
    let argc = command.len() as i32;
    if (arity > 0 && arity != argc) || argc < -arity {
        return Reply::error("ERR Invalid number of arguments specified for command");
    }
    let found: Vec<Reply> =
        super::keys_in(keys, command.len()).map(|i| Reply::Bulk(command[i].clone())).collect();
    if found.is_empty() {
        return Reply::error("ERR Invalid arguments specified for command");
    }
    Reply::Array(found)
}

/// Which names `COMMAND LIST FILTERBY` keeps.
enum ListFilter<'a> {
    /// No modules are loaded: no command is a module's.
    Module,
    /// An ACL category, any case, without `@`.
    AclCategory(&'a [u8]),
    /// A glob pattern, matched without regard to case.
    Pattern(Vec<u8>),
}

impl ListFilter<'_> {
    fn keeps(&self, name: &str) -> bool {
        match self {
            ListFilter::Module => false,
            ListFilter::AclCategory(category) => {
                acl_categories(name).unwrap_or_default().iter().any(|c| is(category, c))
            }
            ListFilter::Pattern(pattern) => glob_match(pattern, name.as_bytes()),
        }
    }
}

/// `COMMAND LIST [FILTERBY MODULE <name> | ACLCAT <category> | PATTERN <pattern>]`, as Redis 7's
/// `commandListCommand`: every command and subcommand (`client|list`) by its full name, kept by
/// the filter if one is given. `FILTERBY` must be followed by exactly its type and argument.
fn command_list(args: &[Bytes]) -> Reply {
    let filter = match &args[2..] {
        [] => None,
        [filterby, kind, arg] if is(filterby, "FILTERBY") => Some(if is(kind, "MODULE") {
            ListFilter::Module
        } else if is(kind, "ACLCAT") {
            ListFilter::AclCategory(arg)
        } else if is(kind, "PATTERN") {
            ListFilter::Pattern(arg.to_ascii_lowercase())
        } else {
            return Reply::error(super::ERR_SYNTAX);
        }),
        _ => return Reply::error(super::ERR_SYNTAX),
    };
    let mut names = Vec::new();
    for (index, spec) in COMMANDS.iter().enumerate() {
        let subcommands = super::subcommands_of(index as u16).map(|(_, s)| s.name);
        for name in std::iter::once(spec.name).chain(subcommands) {
            if filter.as_ref().is_none_or(|f| f.keeps(name)) {
                names.push(Reply::bulk_str(name));
            }
        }
    }
    Reply::Array(names)
}

pub fn command(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let Some(sub) = args.get(1) else {
        return Reply::Array(COMMANDS.iter().map(command_info).collect());
    };
    if is(sub, "COUNT") {
        if args.len() != 2 {
            return wrong_sub_arity("command", sub);
        }
        Reply::Integer(COMMANDS.len() as i64)
    } else if is(sub, "INFO") {
        let infos = if args.len() == 2 {
            COMMANDS.iter().map(command_info).collect()
        } else {
            args[2..].iter().map(|name| info_of(name)).collect()
        };
        Reply::Array(infos)
    } else if is(sub, "GETKEYS") {
        command_getkeys(args)
    } else if is(sub, "LIST") {
        command_list(args)
    } else if is(sub, "DOCS") {
        super::command_docs::command_docs(&args[2..])
    } else if is(sub, "HELP") {
        super::help("command", args, COMMAND_HELP)
    } else {
        unknown_subcommand(sub, "command")
    }
}

pub fn memory(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    if is(sub, "HELP") {
        return super::help("memory", args, MEMORY_HELP);
    }
    if !is(sub, "USAGE") {
        return unknown_subcommand(sub, "memory");
    }
    if args.len() < 3 {
        return wrong_sub_arity("memory", sub);
    }
    // Redis's `memoryCommand`: `SAMPLES <count>` pairs, any number of them; the count must be an
    // integer (and not negative). Values are never sampled here: the cost is exact.
    for option in args[3..].chunks(2) {
        match option {
            [name, count] if is(name, "SAMPLES") => match super::int_arg(count) {
                Ok(n) if n < 0 => return Reply::error(super::ERR_SYNTAX),
                Ok(_) => {}
                Err(e) => return e,
            },
            _ => return Reply::error(super::ERR_SYNTAX),
        }
    }
    let now = ctx.now_ms;
    let mut guard = ctx.lock_key(&args[2]);
    match guard.peek_live(&args[2], now) {
        Some(entry) => Reply::Integer(entry_cost(&args[2], entry.value.cost()) as i64),
        None => Reply::Nil,
    }
}

pub fn time(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> Reply {
    let now = jiff::Timestamp::now();
    let _ = ctx;
    let micros = now.as_microsecond();
    Reply::Array(vec![
        Reply::Bulk(Bytes::from((micros / 1_000_000).to_string())),
        Reply::Bulk(Bytes::from((micros % 1_000_000).to_string())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_and_subcommand_has_its_acl_categories() {
        for spec in COMMANDS {
            assert!(acl_categories(spec.name).is_some(), "{} has no categories", spec.name);
        }
        for sub in super::super::SUBCOMMANDS {
            assert!(acl_categories(sub.name).is_some(), "{} has no categories", sub.name);
        }
        assert_eq!(acl_categories("get"), Some(&["read", "string", "fast"][..]));
        assert_eq!(acl_categories("nosuch"), None);
    }

    #[test]
    fn every_command_has_its_redis_flags() {
        for spec in COMMANDS {
            assert!(redis_flags(spec.name).is_some(), "{} has no flags row", spec.name);
        }
        assert_eq!(redis_flags("del"), Some(&["write"][..]));
        assert_eq!(redis_flags("nosuch"), None);
    }
}
