//! Connection commands: PING ECHO QUIT HELLO AUTH SELECT CLIENT (ID SETNAME GETNAME LIST KILL
//! INFO SETINFO REPLY NO-EVICT NO-TOUCH).

use bytes::Bytes;

use super::{
    Ctx, ERR_NOT_INTEGER, ERR_SYNTAX, c_string_prefix, is, parse_i64, unknown_subcommand,
    wrong_arity, wrong_sub_arity,
};
use crate::server::auth::secret_matches;
use crate::server::resp::{Protocol, Reply};
use crate::server::tasks::Task;

/// The Redis version the node reports to clients (HELLO, INFO): the command set and replies
/// follow Redis 7.2, and some clients gate features on it.
pub const REDIS_COMPAT_VERSION: &str = "7.2.4";

pub fn ping(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    match args.len() {
        1 => Reply::Simple("PONG"),
        2 => Reply::Bulk(args[1].clone()),
        _ => {
            let _ = ctx;
            wrong_arity("ping")
        }
    }
}

pub fn echo(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    Reply::Bulk(args[1].clone())
}

pub fn quit(ctx: &mut Ctx<'_, '_>, _args: &[Bytes]) -> Reply {
    ctx.client.close_after_reply = true;
    Reply::ok()
}

/// AUTH's and HELLO's check. The password is compared in constant time; a failure holds the
/// connection's reply back (`auth`'s throttle), longer with each failure in a row.
fn check_password(ctx: &mut Ctx<'_, '_>, user: &[u8], password: &[u8]) -> Result<(), Reply> {
    let accepted = user == b"default"
        && match &*ctx.node.requirepass.read() {
            None => true,
            Some(pass) => secret_matches(password, pass.as_bytes()),
        };
    if accepted {
        ctx.client.authenticated = true;
        ctx.client.auth_failures = 0;
        return Ok(());
    }
    ctx.client.auth_failures = ctx.client.auth_failures.saturating_add(1);
    ctx.client.auth_delay = Some(ctx.node.auth_throttle.failed(ctx.client.auth_failures));
    ctx.node.metrics.auth_failures.inc();
    Err(Reply::error("WRONGPASS invalid username-password pair or user is disabled."))
}

/// The arguments of `AUTH` the slow log redacts: the password, and the user name with it, as
/// Redis's `authCommand` redacts them (not when it refuses more than three arguments).
pub(super) fn auth_secrets(args: &[Bytes]) -> Vec<usize> {
    match args.len() {
        2 => vec![1],
        3 => vec![1, 2],
        _ => Vec::new(),
    }
}

/// The arguments of `HELLO` the slow log redacts: the user name and password after each `AUTH`
/// its option loop reads, as Redis's `helloCommand` redacts them (none when the protocol version
/// is refused first).
pub(super) fn hello_secrets(args: &[Bytes]) -> Vec<usize> {
    let mut secrets = Vec::new();
    if args.get(1).is_some_and(|v| !matches!(parse_i64(v), Some(2 | 3))) {
        return secrets;
    }
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "AUTH") && more >= 2 {
            secrets.extend([i + 1, i + 2]);
            i += 3;
        } else if is(&args[i], "SETNAME") && more >= 1 {
            i += 2;
        } else {
            break;
        }
    }
    secrets
}

pub fn auth(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let result = match args.len() {
        2 => {
            if ctx.node.requirepass.read().is_none() {
                return Reply::error(
                    "ERR AUTH <password> called without any password configured for the default user. \
                     Are you sure your configuration is correct?",
                );
            }
            check_password(ctx, b"default", &args[1])
        }
        3 => check_password(ctx, &args[1], &args[2]),
        _ => return Reply::error(ERR_SYNTAX),
    };
    match result {
        Ok(()) => Reply::ok(),
        Err(e) => e,
    }
}

pub fn hello(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let mut proto = ctx.client.proto;
    if let Some(ver) = args.get(1) {
        match parse_i64(ver) {
            Some(2) => proto = Protocol::Resp2,
            Some(3) => proto = Protocol::Resp3,
            Some(_) => return Reply::error("NOPROTO unsupported protocol version"),
            None => return Reply::error("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut name = None;
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - i - 1;
        if is(&args[i], "AUTH") && more >= 2 {
            if let Err(e) = check_password(ctx, &args[i + 1], &args[i + 2]) {
                return e;
            }
            i += 3;
        } else if is(&args[i], "SETNAME") && more >= 1 {
            name = Some(args[i + 1].clone());
            i += 2;
        } else {
            return Reply::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            ));
        }
    }
    if !ctx.client.authenticated {
        return Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> \
             AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol \
             version at the same time",
        );
    }
    if let Some(name) = name
        && let Err(e) = set_name(ctx.task, &name)
    {
        return e;
    }
    ctx.client.proto = proto;
    let proto_num = if proto == Protocol::Resp3 { 3 } else { 2 };
    ctx.task.set_resp(proto_num as u8);
    Reply::Map(vec![
        (Reply::bulk_str("server"), Reply::bulk_str("redis")),
        (Reply::bulk_str("version"), Reply::bulk_str(REDIS_COMPAT_VERSION)),
        (Reply::bulk_str("proto"), Reply::Integer(proto_num)),
        (Reply::bulk_str("id"), Reply::Integer(ctx.client.id as i64)),
        (Reply::bulk_str("mode"), Reply::bulk_str("standalone")),
        (Reply::bulk_str("role"), Reply::bulk_str("master")),
        (Reply::bulk_str("modules"), Reply::Array(Vec::new())),
    ])
}

/// Only database 0 exists.
pub fn select(_ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    match check_db_index(&args[1]) {
        Ok(()) => Reply::ok(),
        Err(e) => e,
    }
}

/// A database index as SELECT and COPY's `DB` read it: Redis's `getIntFromObjectOrReply` (an
/// integer that does not fit a C `int` has its own error, before the range of databases is
/// checked), then its `selectDb`, which only database 0 passes here.
pub(super) fn check_db_index(arg: &[u8]) -> Result<(), Reply> {
    match parse_i64(arg) {
        Some(0) => Ok(()),
        Some(id) if i32::try_from(id).is_err() => Err(Reply::error(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        )),
        Some(_) => Err(Reply::error("ERR DB index is out of range")),
        None => Err(Reply::error(ERR_NOT_INTEGER)),
    }
}

/// Redis's `validateClientAttr`: a client name or library attribute must keep `CLIENT LIST`
/// splittable on spaces, so only printable ASCII other than space ('!' to '~').
fn valid_client_attr(value: &[u8]) -> bool {
    value.iter().all(|c| (b'!'..=b'~').contains(c))
}

fn set_name(task: &Task, name: &[u8]) -> Result<(), Reply> {
    if !valid_client_attr(name) {
        return Err(Reply::error(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    *task.name.lock() =
        if name.is_empty() { None } else { Some(String::from_utf8_lossy(name).into_owned()) };
    Ok(())
}

/// `CLIENT SETINFO LIB-NAME|LIB-VER <value>` (Redis 7.2's `clientSetinfoCommand`): an empty value
/// clears the attribute; errors name the attribute as the client spelled it.
fn set_info(task: &Task, attr: &[u8], value: &[u8]) -> Reply {
    // The attribute is echoed as C's `%s` prints it: raw bytes, up to the first NUL.
    let shown = c_string_prefix(attr, usize::MAX);
    let mut lib = task.lib.lock();
    let slot = if is(attr, "LIB-NAME") {
        &mut lib.name
    } else if is(attr, "LIB-VER") {
        &mut lib.ver
    } else {
        return Reply::error([&b"ERR Unrecognized option '"[..], shown, b"'"].concat());
    };
    if !valid_client_attr(value) {
        let text = b" cannot contain spaces, newlines or special characters.";
        return Reply::error([&b"ERR "[..], shown, text].concat());
    }
    // Valid means printable ASCII, so this is the value byte for byte.
    *slot = String::from_utf8_lossy(value).into_owned();
    Reply::ok()
}

/// An address as `CLIENT LIST` shows it and `CLIENT KILL` matches it (`ip:port`; empty when
/// unknown).
fn addr_text(addr: Option<std::net::SocketAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_default()
}

/// One `CLIENT LIST` line. `cmd=` is the last command the client ran, as Redis's
/// `c->lastcmd`: for the client asking, the `CLIENT` subcommand it is running (`own`,
/// `client|list` or `client|info`); for the others the command's name (without the subcommand
/// of a container command, which is not recorded), or `NULL` before their first. `qbuf=` and
/// `qbuf-free=` are the client's unparsed input (a request still arriving) and its buffer's free
/// room as its connection left them after its last batch of requests (for the caller, the batch
/// before this one). `omem=` is the bytes of its replies the socket has not taken yet, and
/// `events=rw` says some wait (Redis's write handler is then installed).
fn client_line(ctx: &Ctx<'_, '_>, task: &Task, own: &str) -> String {
    let cmd = if task.id == ctx.client.id {
        own
    } else {
        task.last_command().map_or("NULL", |i| super::COMMANDS[i as usize].name)
    };
    let lib = task.lib.lock();
    let (qbuf, qbuf_free) = task.query_buffer();
    let omem = task.output_buffer();
    format!(
        "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 multi=-1 \
         qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 obl=0 oll=0 omem={} tot-mem=0 events={} cmd={} user=default \
         redir=-1 resp={} lib-name={} lib-ver={}\n",
        task.id,
        addr_text(task.peer),
        addr_text(task.local),
        task.name.lock().clone().unwrap_or_default(),
        task.started.elapsed().as_secs(),
        task.idle_ms() / 1000,
        task.client_flags().letters(),
        qbuf,
        qbuf_free,
        omem,
        if omem > 0 { "rw" } else { "r" },
        cmd,
        task.resp(),
        lib.name,
        lib.ver,
    )
}

/// `CLIENT LIST [TYPE type | ID id ...]`, with Redis 7's `clientCommand` checks. Every
/// connection is a normal client: other types list none.
fn client_list(ctx: &Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let mut ids = None;
    let mut normal = true;
    if args.len() == 4 && is(&args[2], "TYPE") {
        normal = match is_normal_type(&args[3]) {
            Ok(normal) => normal,
            Err(e) => return e,
        };
    } else if args.len() > 3 && is(&args[2], "ID") {
        let parsed: Option<Vec<i64>> = args[3..].iter().map(|a| parse_i64(a)).collect();
        let Some(parsed) = parsed else {
            return Reply::error("ERR Invalid client ID");
        };
        ids = Some(parsed);
    } else if args.len() != 2 {
        return Reply::error(ERR_SYNTAX);
    }
    let connections: Vec<_> = ctx
        .node
        .tasks
        .snapshot()
        .into_iter()
        .filter(|t| normal && t.kind == crate::server::tasks::TaskKind::Connection)
        .collect();
    let mut text = String::new();
    match ids {
        // In the order asked, as Redis looks each id up.
        Some(ids) => {
            for id in ids {
                if let Some(task) = connections.iter().find(|t| t.id as i64 == id) {
                    text.push_str(&client_line(ctx, task, "client|list"));
                }
            }
        }
        None => connections.iter().for_each(|t| text.push_str(&client_line(ctx, t, "client|list"))),
    }
    Reply::Verbatim(text)
}

/// A client type named in `CLIENT LIST|KILL TYPE`: whether it is `normal`, the type of every
/// connection here (the others are valid names that match none), or Redis's error for a name it
/// does not know.
fn is_normal_type(kind: &[u8]) -> Result<bool, Reply> {
    if is(kind, "normal") {
        return Ok(true);
    }
    if ["master", "replica", "slave", "pubsub"].iter().any(|t| is(kind, t)) {
        return Ok(false);
    }
    Err(super::error_quoting("ERR Unknown client type ", kind))
}

/// Which connections `CLIENT KILL` closes: every filter given must match.
#[derive(Default)]
struct KillFilter {
    /// `ID`: the connection's id.
    id: Option<u64>,
    /// `ADDR` (and the old form's argument): the client's `ip:port`, as `CLIENT LIST` shows it.
    addr: Option<Bytes>,
    /// `LADDR`: the node's `ip:port` the client connected to.
    laddr: Option<Bytes>,
    /// `TYPE` named a type no connection here has.
    type_matches_none: bool,
    /// `SKIPME`: leave the caller alone (the new form's default).
    skip_me: bool,
}

/// `CLIENT KILL <ip:port>` (the old form: `+OK`, or `No such client`; the caller may kill
/// itself) or `CLIENT KILL <option> <value> ...` (how many were killed; `SKIPME yes` by
/// default), with Redis 7.0's checks and words. A killed connection runs nothing more, leaves
/// any read or write it waits in, and closes. The caller killing itself gets its reply first
/// (`QUIT`'s path).
fn client_kill(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let old_form = args.len() == 3;
    let mut filter = KillFilter { skip_me: !old_form, ..KillFilter::default() };
    if old_form {
        filter.addr = Some(args[2].clone());
    } else {
        for pair in args[2..].chunks(2) {
            let [option, value] = pair else {
                return Reply::error(ERR_SYNTAX);
            };
            if is(option, "ID") {
                match parse_i64(value).filter(|&id| id > 0) {
                    Some(id) => filter.id = Some(id as u64),
                    None => return Reply::error("ERR client-id should be greater than 0"),
                }
            } else if is(option, "TYPE") {
                match is_normal_type(value) {
                    // The last TYPE given counts, as in Redis.
                    Ok(normal) => filter.type_matches_none = !normal,
                    Err(e) => return e,
                }
            } else if is(option, "ADDR") {
                filter.addr = Some(value.clone());
            } else if is(option, "LADDR") {
                filter.laddr = Some(value.clone());
            } else if is(option, "USER") {
                if value.as_ref() != b"default" {
                    return super::error_quoting("ERR No such user ", value);
                }
            } else if is(option, "SKIPME") && (is(value, "yes") || is(value, "no")) {
                filter.skip_me = is(value, "yes");
            } else {
                return Reply::error(ERR_SYNTAX);
            }
        }
    }
    let mut killed = 0;
    for task in ctx.node.tasks.snapshot() {
        let matches = task.kind == crate::server::tasks::TaskKind::Connection
            && !filter.type_matches_none
            && filter.id.is_none_or(|id| task.id == id)
            && filter.addr.as_ref().is_none_or(|a| a.as_ref() == addr_text(task.peer).as_bytes())
            && filter.laddr.as_ref().is_none_or(|a| a.as_ref() == addr_text(task.local).as_bytes());
        if !matches || (filter.skip_me && task.id == ctx.client.id) {
            continue;
        }
        if task.id == ctx.client.id {
            ctx.client.close_after_reply = true;
        } else {
            task.kill();
        }
        killed += 1;
    }
    match (old_form, killed) {
        (true, 0) => Reply::error("ERR No such client"),
        (true, _) => Reply::ok(),
        (false, n) => Reply::Integer(n),
    }
}

/// `CLIENT HELP`'s lines for the subcommands this node has (Redis 7's text and order; SETINFO's
/// from 7.2).
const CLIENT_HELP: &[&str] = &[
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <option> <value>",
    "    Set client meta attr. Options are:",
    "    * LIB-NAME: the client lib name.",
    "    * LIB-VER: the client lib version.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Will not touch LRU/LFU stats when this mode is on.",
];

/// Which replies a client is sent (`CLIENT REPLY`), as Redis's `CLIENT_REPLY_OFF`,
/// `CLIENT_REPLY_SKIP_NEXT` and `CLIENT_REPLY_SKIP` flags. A reply not sent is still counted
/// (errorstats), as in Redis.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyMode {
    /// `CLIENT REPLY OFF`, until `CLIENT REPLY ON`.
    off: bool,
    /// The command running now is not answered: it follows `CLIENT REPLY SKIP`, or is one.
    skip_this: bool,
    /// `CLIENT REPLY SKIP` ran: the next command is not answered.
    skip_next: bool,
}

impl ReplyMode {
    /// Whether a reply made now is sent.
    pub fn sends(&self) -> bool {
        !(self.off || self.skip_this)
    }

    /// Once a command is done (answered or not, run or refused): a `SKIP` before it moves on to
    /// the next one (Redis's `resetClient`).
    pub fn command_done(&mut self) {
        self.skip_this = std::mem::take(&mut self.skip_next);
    }
}

/// `CLIENT REPLY ON|OFF|SKIP`, as Redis 7's `clientCommand`: OFF and SKIP are not answered (SKIP
/// while OFF changes nothing); ON is, even right after a SKIP.
fn client_reply(ctx: &mut Ctx<'_, '_>, mode: &[u8]) -> Reply {
    let reply = &mut ctx.client.reply;
    if is(mode, "ON") {
        *reply = ReplyMode::default();
    } else if is(mode, "OFF") {
        reply.off = true;
    } else if is(mode, "SKIP") {
        reply.skip_this = true;
        reply.skip_next = !reply.off;
    } else {
        return Reply::error(ERR_SYNTAX);
    }
    Reply::ok()
}

/// `on` or `off` (any case), as `CLIENT NO-EVICT|NO-TOUCH` take them; `-ERR syntax error`
/// otherwise.
fn on_off(arg: &[u8]) -> Result<bool, Reply> {
    if is(arg, "ON") {
        Ok(true)
    } else if is(arg, "OFF") {
        Ok(false)
    } else {
        Err(Reply::error(ERR_SYNTAX))
    }
}

/// `CLIENT NO-EVICT on|off` (Redis 7.0) and `CLIENT NO-TOUCH on|off` (Redis 7.2). No client is
/// ever evicted here (there is no `maxmemory-clients`), so NO-EVICT is only recorded and shown
/// (`flags=e`); NO-TOUCH makes the client's lookups leave the keys' LRU time as it was
/// (`flags=T`).
fn client_mode(ctx: &mut Ctx<'_, '_>, no_touch: bool, value: &[u8]) -> Reply {
    let on = match on_off(value) {
        Ok(on) => on,
        Err(e) => return e,
    };
    let mut flags = ctx.task.client_flags();
    if no_touch {
        flags.no_touch = on;
        ctx.client.no_touch = on;
    } else {
        flags.no_evict = on;
    }
    ctx.task.set_client_flags(flags);
    Reply::ok()
}

pub fn client(ctx: &mut Ctx<'_, '_>, args: &[Bytes]) -> Reply {
    let sub = &args[1];
    let argc = args.len();
    if is(sub, "ID") && argc == 2 {
        Reply::Integer(ctx.client.id as i64)
    } else if is(sub, "SETNAME") {
        if argc != 3 {
            return wrong_sub_arity("client", sub);
        }
        match set_name(ctx.task, &args[2]) {
            Ok(()) => Reply::ok(),
            Err(e) => e,
        }
    } else if is(sub, "GETNAME") && argc == 2 {
        match ctx.task.name.lock().clone() {
            Some(name) => Reply::Bulk(Bytes::from(name)),
            None => Reply::Nil,
        }
    } else if is(sub, "LIST") {
        client_list(ctx, args)
    } else if is(sub, "KILL") {
        if argc < 3 {
            return wrong_sub_arity("client", sub);
        }
        client_kill(ctx, args)
    } else if is(sub, "INFO") && argc == 2 {
        let task = ctx.task;
        Reply::Verbatim(client_line(ctx, task, "client|info"))
    } else if is(sub, "SETINFO") {
        if argc != 4 {
            return wrong_sub_arity("client", sub);
        }
        set_info(ctx.task, &args[2], &args[3])
    } else if is(sub, "REPLY") && argc == 3 {
        client_reply(ctx, &args[2])
    } else if is(sub, "NO-EVICT") && argc == 3 {
        client_mode(ctx, false, &args[2])
    } else if is(sub, "NO-TOUCH") && argc == 3 {
        client_mode(ctx, true, &args[2])
    } else if ["ID", "GETNAME", "INFO", "REPLY", "NO-EVICT", "NO-TOUCH"].iter().any(|s| is(sub, s))
    {
        wrong_sub_arity("client", sub)
    } else if is(sub, "HELP") {
        super::help("client", args, CLIENT_HELP)
    } else {
        unknown_subcommand(sub, "client")
    }
}
