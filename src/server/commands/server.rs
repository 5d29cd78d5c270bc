//! Server commands: INFO CONFIG (GET/SET/RESETSTAT) COMMAND (COUNT/DOCS/INFO) MEMORY USAGE TIME.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::connection::REDIS_COMPAT_VERSION;
use super::{COMMANDS, CommandSpec, Ctx, is, lookup, unknown_subcommand, wrong_sub_arity};
use crate::server::glob::glob_match;
use crate::server::resp::Reply;
use crate::server::state::parse_memory;
use crate::server::store::{EvictionPolicy, entry_cost};

pub fn info(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let node = ctx.node;
    let wanted: Vec<String> =
        args[1..].iter().map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()).collect();
    let all = wanted.is_empty()
        || wanted.iter().any(|w| w == "all" || w == "everything" || w == "default");
    let want = |section: &str| all || wanted.iter().any(|w| w == section);
    let stats = node.stats(Some(ctx.task));
    let mut out = String::new();
    if want("server") {
        let uptime = node.started.elapsed().as_secs();
        let port = ctx.task.local.map_or(0, |a| a.port());
        let _ = write!(
            out,
            "# Server\r\nredis_version:{REDIS_COMPAT_VERSION}\r\nmapcache_version:{}\r\nredis_mode:standalone\r\n\
             os:{}\r\narch_bits:64\r\nprocess_id:{}\r\ntcp_port:{port}\r\nuptime_in_seconds:{uptime}\r\n\
             uptime_in_days:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::OS,
            std::process::id(),
            uptime / 86_400
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nblocked_clients:0\r\n\r\n",
            node.tasks.connections()
        );
    }
    if want("memory") {
        let _ = write!(
            out,
            "# Memory\r\nused_memory:{}\r\nused_memory_dataset:{}\r\nmaxmemory:{}\r\nmaxmemory_policy:{}\r\n\
             mapcache_bytes_allocated:{}\r\n\r\n",
            stats.memory_bytes,
            stats.memory_bytes.saturating_sub(stats.bytes_allocated),
            stats.maxmemory,
            stats.eviction_policy,
            stats.bytes_allocated
        );
    }
    if want("persistence") {
        let last = node.last_snapshot.lock().clone();
        let _ = write!(
            out,
            "# Persistence\r\nloading:{}\r\nrdb_last_save_time:{}\r\nmapcache_snapshot_generation:{}\r\n\r\n",
            u8::from(!node.is_ready()),
            last.map_or(0, |s| s.written_at.as_second()),
            node.snapshot_generation.load(Ordering::Relaxed)
        );
    }
    if want("stats") {
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\nexpired_keys:{}\r\n\
             evicted_keys:{}\r\nmapcache_tombstones:{}\r\nmapcache_tombstone_ratio:{:.4}\r\n\r\n",
            node.total_connections.load(Ordering::Relaxed),
            node.total_commands.load(Ordering::Relaxed),
            stats
                .expired_keys_total
                .saturating_sub(node.store.expired_at_reset.load(Ordering::Relaxed)),
            stats
                .evicted_keys_total
                .saturating_sub(node.store.evicted_at_reset.load(Ordering::Relaxed)),
            stats.tombstones,
            stats.tombstone_ratio
        );
    }
    if want("replication") {
        out.push_str("# Replication\r\nrole:master\r\nconnected_slaves:0\r\n\r\n");
    }
    if want("keyspace") {
        out.push_str("# Keyspace\r\n");
        if stats.keys > 0 {
            let _ = write!(
                out,
                "db0:keys={},expires={},avg_ttl={}\r\n",
                stats.keys,
                node.store.ttl_keys_unlocked(),
                node.store.avg_ttl_ms()
            );
        }
        out.push_str("\r\n");
    }
    // Redis ends INFO without the last blank line.
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    Reply::Verbatim(out)
}

/// The parameters CONFIG GET knows, with their current values.
fn config_params(ctx: &Ctx<'_, '_>) -> Vec<(&'static str, String)> {
    let node = ctx.node;
    vec![
        ("maxmemory", node.store.maxmemory().to_string()),
        ("maxmemory-policy", node.store.policy().name().to_string()),
        ("requirepass", node.requirepass.read().clone().unwrap_or_default()),
        ("databases", "1".to_string()),
        ("save", String::new()),
        ("appendonly", "no".to_string()),
        ("proto-max-bulk-len", crate::server::resp::PROTO_MAX_BULK_LEN.to_string()),
        ("client-query-buffer-limit", node.config.query_buffer_limit.to_string()),
        ("port", ctx.task.local.map_or(0, |a| a.port()).to_string()),
        ("bind", node.config.bind.to_string()),
        ("dir", node.config.data_dir.display().to_string()),
        ("maxmemory-samples", "5".to_string()),
        ("timeout", "0".to_string()),
        ("busy-reply-threshold", busy_ms(node).to_string()),
        ("lua-time-limit", busy_ms(node).to_string()),
    ]
}

fn busy_ms(node: &crate::server::state::NodeState) -> u128 {
    node.scripting.busy_threshold().as_millis()
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
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
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
        let settable = ["maxmemory", "maxmemory-policy", "busy-reply-threshold", "lua-time-limit"];
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
        for (name, pair) in names.into_iter().zip(args[2..].chunks(2)) {
            let value = String::from_utf8_lossy(&pair[1]).into_owned();
            match name {
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
                "busy-reply-threshold" | "lua-time-limit" => match value.parse::<i64>() {
                    Ok(ms) if ms >= 0 => busy = Some(std::time::Duration::from_millis(ms as u64)),
                    Ok(_) => {
                        return Reply::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - argument must be between 0 and 9223372036854775807 inclusive"
                        ));
                    }
                    Err(_) => {
                        return Reply::error(format!(
                            "ERR CONFIG SET failed (possibly related to argument '{name}') - argument couldn't be parsed into an integer"
                        ));
                    }
                },
                _ => unreachable!("only settable names are kept"),
            }
        }
        if let Some(m) = memory {
            ctx.node.store.set_maxmemory(m);
        }
        if let Some(p) = policy {
            ctx.node.store.set_policy(p);
        }
        if let Some(threshold) = busy {
            ctx.node.scripting.set_busy_threshold(threshold);
        }
        Reply::ok()
    } else if is(sub, "RESETSTAT") {
        if args.len() != 2 {
            return wrong_sub_arity("config", sub);
        }
        // Redis's `resetServerStats`, for the figures INFO has. The expired and evicted counts
        // are also Prometheus counters, which must never go back: INFO subtracts a baseline.
        let node = ctx.node;
        node.total_commands.store(0, Ordering::Relaxed);
        node.total_connections.store(0, Ordering::Relaxed);
        node.store.expired_at_reset.store(node.store.expired_total.get(), Ordering::Relaxed);
        node.store.evicted_at_reset.store(node.store.evicted_total.get(), Ordering::Relaxed);
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
        _ => None,
    }
}

fn command_info(spec: &CommandSpec) -> Reply {
    let flags = redis_flags(spec.name).unwrap_or_default();
    // Redis 7's `addReplyCommandInfo`: flags, ACL categories, tips and subcommands are sets
    // (RESP3 `~`), key specs an array. Categories, tips, key specs and subcommands are not
    // served (empty).
    Reply::Array(vec![
        Reply::bulk_str(spec.name),
        Reply::Integer(i64::from(spec.arity)),
        Reply::Set(flags.iter().map(|f| Reply::Status((*f).to_string())).collect()),
        Reply::Integer(i64::from(spec.keys.0)),
        Reply::Integer(i64::from(spec.keys.1)),
        Reply::Integer(i64::from(spec.keys.2)),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Set(Vec::new()),
    ])
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
            args[2..]
                .iter()
                .map(|name| {
                    lookup(name).map_or(Reply::Nil, |i| command_info(&COMMANDS[i as usize]))
                })
                .collect()
        };
        Reply::Array(infos)
    } else if is(sub, "DOCS") {
        // Documentation is not served; clients (redis-cli) accept an empty map.
        Reply::Map(Vec::new())
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
        Some(entry) => Reply::Integer(entry_cost(&args[2], &entry.value) as i64),
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
    fn every_command_has_its_redis_flags() {
        for spec in COMMANDS {
            assert!(redis_flags(spec.name).is_some(), "{} has no flags row", spec.name);
        }
        assert_eq!(redis_flags("del"), Some(&["write"][..]));
        assert_eq!(redis_flags("nosuch"), None);
    }
}
