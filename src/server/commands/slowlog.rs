//! SLOWLOG GET LEN RESET HELP (Redis 7's `slowlogCommand`), and logging a command that ran slow.

use bytes::Bytes;

use super::{Ctx, is, parse_i64, secret_arguments, unknown_subcommand};
use crate::server::resp::Reply;
use crate::server::slowlog::SlowEntry;
use crate::server::state::NodeState;
use crate::server::tasks::Task;

/// Logs the command at table index `index` if it ran at least `slowlog-log-slower-than`
/// (`usec`), unless it is one Redis never logs (EXEC: its commands are logged one by one).
pub fn log_if_slow(node: &NodeState, task: &Task, index: u16, args: &[Bytes], usec: u64) {
    if !node.slowlog.is_slow(usec) || super::skips_slowlog(index) {
        return;
    }
    let name = task.name.lock().clone().unwrap_or_default();
    node.slowlog.push(args, &secret_arguments(index, args), usec, task.peer, name);
}

/// `SLOWLOG HELP`'s lines (Redis 7's text).
const SLOWLOG_HELP: &[&str] = &[
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
];

/// Entries `SLOWLOG GET` returns without a count.
const DEFAULT_COUNT: usize = 10;

/// One entry as Redis 7 replies it: id, Unix time, microseconds, arguments, `ip:port`, name.
fn entry_reply(entry: SlowEntry) -> Reply {
    Reply::Array(vec![
        Reply::Integer(entry.id as i64),
        Reply::Integer(entry.time),
        Reply::Integer(entry.duration_us as i64),
        Reply::Array(entry.args.into_iter().map(Reply::Bulk).collect()),
        Reply::Bulk(Bytes::from(entry.peer)),
        Reply::Bulk(Bytes::from(entry.name)),
    ])
}

pub fn slowlog(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    let log = &ctx.node.slowlog;
    if is(sub, "GET") {
        // Redis checks GET's own arity here, after the table's `slowlog|get -2`.
        if args.len() > 3 {
            let mut text = b"ERR unknown subcommand or wrong number of arguments for '".to_vec();
            text.extend_from_slice(super::c_string_prefix(sub, 128));
            text.extend_from_slice(b"'. Try SLOWLOG HELP.");
            return Reply::error(text);
        }
        let count = match args.get(2).map(|c| parse_i64(c)) {
            None => Some(DEFAULT_COUNT),
            Some(Some(-1)) => None,
            Some(Some(n)) if n >= 0 => Some(n as usize),
            Some(_) => return Reply::error("ERR count should be greater than or equal to -1"),
        };
        Reply::Array(log.newest(count).into_iter().map(entry_reply).collect())
    } else if is(sub, "LEN") {
        Reply::Integer(log.len() as i64)
    } else if is(sub, "RESET") {
        log.reset();
        Reply::ok()
    } else if is(sub, "HELP") {
        super::help("slowlog", args, SLOWLOG_HELP)
    } else {
        unknown_subcommand(sub, "slowlog")
    }
}
