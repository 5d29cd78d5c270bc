//! The commands the differential test sends, as proptest strategies: a small key space (so that
//! commands meet each other's keys), values and numbers chosen to reach every parse path, and
//! expiry times that cannot make two runs of the same sequence differ.
//!
//! Time is the one input the two servers do not share: each reads its own clock. So
//! - relative TTLs are long (over 15 minutes): nothing set in a case expires during it;
//! - two relative TTLs in one sequence are never equal, and differ by 1000 s or more (see
//!   [`relative_seconds`]): `EXPIRE ... GT|LT` compares deadlines computed from two clock
//!   readings, and equal numbers would make the answer depend on whether the readings fell in
//!   the same millisecond;
//! - absolute times are far in the future (year 2096) or long past, never near "now";
//! - no TTL is a few milliseconds, which would expire between two commands or not.
//!
//! A generated command is a template ([`Arg`]s); [`render`] turns a sequence of templates into
//! the bytes sent, once each command's place in the sequence is known.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

/// A command as sent: its name, then its arguments.
pub type Command = Vec<Vec<u8>>;

/// One argument of a generated command.
#[derive(Debug, Clone)]
pub enum Arg {
    Literal(Vec<u8>),
    /// A relative TTL in seconds, from slot `0..TTL_SLOTS`, rendered by [`relative_seconds`].
    RelativeSeconds(u8),
    /// The same in milliseconds.
    RelativeMillis(u8),
}

/// A strategy for part of a command: a few arguments.
type Part = BoxedStrategy<Vec<Arg>>;

/// Five plain keys and one with a hash tag and binary bytes (NUL, 0xff, CRLF).
pub const KEYS: &[&[u8]] = &[b"k1", b"k2", b"k3", b"k4", b"k5", b"{tag}\x00\xff\r\nbin"];

const VALUES: &[&[u8]] = &[
    b"",
    b"v",
    b"hello world",
    b"\x00\xff\r\n",
    b"0",
    b"1",
    b"-1",
    b"10",
    b"-10",
    b"007",
    b"+1",
    b" 1",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"123456789012345678901234567890",
    b"1.5",
    b"-2.25",
    b"1e3",
    b"0x10",
    b"inf",
    b"abc",
];

/// Integer arguments: INCRBY's increment, GETRANGE's indexes. Text and out-of-range numbers
/// too, for the parse errors.
const INTEGERS: &[&[u8]] = &[
    b"0",
    b"1",
    b"2",
    b"-1",
    b"-3",
    b"5",
    b"100",
    b"-100",
    b"9223372036854775807",
    b"-9223372036854775808",
    b"9223372036854775808",
    b"1.0",
    b" 1",
    b"",
    b"abc",
];

/// INCRBYFLOAT's increments: decimals, exponents (past f64's range too: Redis adds in
/// `long double`), hex, and what is no number or no finite one.
const FLOATS: &[&[u8]] = &[
    b"0.1", b"-0.2", b"1", b"-0", b"10.50", b"1e3", b"1.5e-3", b"1e400", b"0x10", b"inf", b"nan",
    b"abc", b"",
];

/// SETRANGE offsets. No valid offset near 512 MB: Redis would allocate it. 536870912 plus one
/// byte is over `proto-max-bulk-len`, an error before anything is allocated.
const OFFSETS: &[&[u8]] =
    &[b"0", b"1", b"3", b"10", b"-1", b"536870912", b"9223372036854775807", b"abc"];

/// Relative TTLs that are errors (SET) or delete the key at once (EXPIRE), including the
/// largest values, whose conversion to an absolute time in milliseconds overflows.
const BAD_SECONDS: &[&[u8]] =
    &[b"0", b"-1", b"-1000", b"", b"abc", b"1.5", b"9223372036854776", b"9223372036854775807"];
const BAD_MILLIS: &[&[u8]] = &[b"0", b"-1", b"abc", b"9223372036854775807"];

/// Absolute times in seconds: far future, past (the key is deleted), zero and negative (invalid
/// for SET, past for EXPIREAT), the largest that still fits in milliseconds, and one past it.
const ABSOLUTE_SECONDS: &[&[u8]] = &[
    b"4000000000",
    b"4000001000",
    b"1",
    b"1000000000",
    b"0",
    b"-1",
    b"9223372036854775",
    b"9223372036854776",
    b"abc",
];
/// Absolute times in milliseconds; 4000000000500 and the largest round up in EXPIRETIME.
const ABSOLUTE_MILLIS: &[&[u8]] = &[
    b"4000000000000",
    b"4000000000500",
    b"4000001000000",
    b"1",
    b"1000000000000",
    b"0",
    b"-1",
    b"9223372036854775807",
    b"abc",
];

/// KEYS and SCAN MATCH patterns: classes, negation, `?`, escapes, a NUL, an unclosed class.
const PATTERNS: &[&[u8]] =
    &[b"*", b"k*", b"k[1-3]", b"*[!1]", b"?3", b"{tag}*", b"*\x00*", b"[", b"k\\2", b"", b"K*"];

/// Commands this node implements, for wrong-arity calls. Not QUIT (it closes the connection),
/// nor the connection and server commands whose replies describe the server (HELLO, INFO, ...).
const IMPLEMENTED: &str = "GET SET SETNX SETEX PSETEX GETSET GETDEL GETEX MGET MSET MSETNX \
    INCR DECR INCRBY DECRBY INCRBYFLOAT APPEND STRLEN GETRANGE SUBSTR SETRANGE DEL UNLINK EXISTS \
    TYPE EXPIRE PEXPIRE EXPIREAT PEXPIREAT TTL PTTL EXPIRETIME PEXPIRETIME PERSIST DBSIZE KEYS \
    SCAN RANDOMKEY ECHO PING HSET HMSET HSETNX HGET HMGET HDEL HGETALL HKEYS HVALS HLEN HEXISTS \
    HSTRLEN HINCRBY HINCRBYFLOAT HRANDFIELD HSCAN SADD SREM SMEMBERS SISMEMBER SMISMEMBER SCARD \
    SPOP SRANDMEMBER SSCAN SMOVE SINTER SUNION SDIFF SINTERSTORE SUNIONSTORE SDIFFSTORE";

/// Names neither server knows: empty, a NUL, a CRLF (the error quotes it as spaces), and one
/// longer than the 128 bytes the error quotes.
const UNKNOWN: &[&[u8]] = &[b"NOSUCHCMD", b"gett", b"", b"x\x00y", b"bad\r\nname", &[b'z'; 200]];

/// Relative TTL slots, 100,000 s apart in [`relative_seconds`].
const TTL_SLOTS: u8 = 4;
/// Longer than any sequence, so that no two (slot, place) pairs give the same TTL.
const PLACES: u64 = 100;

/// The TTL in seconds of a relative slot for the command at `place` in its sequence: unique in
/// the sequence, 1000 s or more from any other, and between 1000 s and about 4.6 days. Slots make
/// a later command's TTL sometimes shorter than an earlier one's, so GT and LT go both ways.
pub fn relative_seconds(slot: u8, place: usize) -> u64 {
    assert!((place as u64) < PLACES, "sequence longer than {PLACES} commands");
    1000 * (1 + u64::from(slot) * PLACES + place as u64)
}

/// The bytes of one command at `place` in its sequence.
pub fn render(template: &[Arg], place: usize) -> Command {
    template
        .iter()
        .map(|arg| match arg {
            Arg::Literal(bytes) => bytes.clone(),
            Arg::RelativeSeconds(slot) => relative_seconds(*slot, place).to_string().into_bytes(),
            Arg::RelativeMillis(slot) => {
                (relative_seconds(*slot, place) * 1000).to_string().into_bytes()
            }
        })
        .collect()
}

/// Sequences of string and keyspace commands, with a few malformed ones.
pub fn sequence(max_len: usize) -> impl Strategy<Value = Vec<Command>> {
    let command = prop_oneof![
        6 => string_command(),
        4 => keyspace_command(),
        5 => collection_command(),
        2 => script_command(),
        1 => malformed_command(),
    ];
    let command = without_known_differences(with_name_case(command.boxed()));
    vec(command, 1..=max_len).prop_map(|templates| {
        let mut commands = Vec::new();
        for (place, template) in templates.iter().enumerate() {
            let command = render(template, place);
            if command.len() == 1 && command[0].eq_ignore_ascii_case(b"DBSIZE") {
                commands.push(touch_every_key());
            }
            commands.push(command);
        }
        commands
    })
}

/// `EXISTS` of every key, sent before each DBSIZE: Redis keeps a key whose deadline has passed
/// (`SET ... EXAT <past>` leaves one) until a command touches it or its active expiry (10 times
/// a second) samples it, and DBSIZE counts it until then. Touched, it is gone, and Redis's count
/// is the live keys, as the node's is.
fn touch_every_key() -> Command {
    std::iter::once(b"EXISTS".to_vec()).chain(KEYS.iter().map(|k| k.to_vec())).collect()
}

/// Sequences of (connection 0 or 1, command): transactions, WATCH and the writes that break
/// them, with the mistakes Redis reports (nested MULTI, EXEC without MULTI, WATCH inside MULTI,
/// a command refused while queueing). Only commands whose replies are deterministic: no TTL
/// reads, KEYS, SCAN or RANDOMKEY, whose replies would have to be normalised inside EXEC's.
pub fn two_connection_sequence(max_len: usize) -> impl Strategy<Value = Vec<(usize, Command)>> {
    let step = (0..2usize, without_known_differences(with_name_case(transaction_command())));
    vec(step, 1..=max_len).prop_map(|steps| {
        steps.iter().enumerate().map(|(place, (conn, t))| (*conn, render(t, place))).collect()
    })
}

fn string_command() -> Part {
    prop_oneof![
        4 => command("GET", vec![key()]),
        6 => command("SET", vec![key(), value(), set_options()]),
        1 => command("SETNX", vec![key(), value()]),
        1 => command("SETEX", vec![key(), relative_or_bad_seconds(), value()]),
        1 => command("PSETEX", vec![key(), relative_or_bad_millis(), value()]),
        1 => command("GETSET", vec![key(), value()]),
        1 => command("GETDEL", vec![key()]),
        2 => command("GETEX", vec![key(), getex_options()]),
        2 => command("MGET", vec![keys(1..5)]),
        2 => command("MSET", vec![pairs()]),
        1 => command("MSETNX", vec![pairs()]),
        2 => command("INCR", vec![key()]),
        1 => command("DECR", vec![key()]),
        2 => command("INCRBY", vec![key(), from(INTEGERS)]),
        1 => command("DECRBY", vec![key(), from(INTEGERS)]),
        2 => command("INCRBYFLOAT", vec![key(), from(FLOATS)]),
        2 => command("APPEND", vec![key(), value()]),
        1 => command("STRLEN", vec![key()]),
        1 => command("GETRANGE", vec![key(), from(INTEGERS), from(INTEGERS)]),
        1 => command("SUBSTR", vec![key(), from(INTEGERS), from(INTEGERS)]),
        2 => command("SETRANGE", vec![key(), from(OFFSETS), value()]),
    ]
    .boxed()
}

fn keyspace_command() -> Part {
    prop_oneof![
        2 => command("DEL", vec![keys(1..4)]),
        1 => command("UNLINK", vec![keys(1..4)]),
        2 => command("EXISTS", vec![keys(1..4)]),
        1 => command("TYPE", vec![key()]),
        3 => command("EXPIRE", vec![key(), relative_or_bad_seconds(), expire_options()]),
        2 => command("PEXPIRE", vec![key(), relative_or_bad_millis(), expire_options()]),
        1 => command("EXPIREAT", vec![key(), from(ABSOLUTE_SECONDS), expire_options()]),
        1 => command("PEXPIREAT", vec![key(), from(ABSOLUTE_MILLIS), expire_options()]),
        3 => command("TTL", vec![key()]),
        2 => command("PTTL", vec![key()]),
        1 => command("EXPIRETIME", vec![key()]),
        2 => command("PEXPIRETIME", vec![key()]),
        2 => command("PERSIST", vec![key()]),
        1 => command("DBSIZE", vec![]),
        1 => command("KEYS", vec![from(PATTERNS)]),
        2 => command("SCAN", vec![scan_cursor(), scan_options()]),
        1 => command("RANDOMKEY", vec![]),
        1 => command("ECHO", vec![value()]),
        1 => command("PING", vec![vec(value(), 0..2).prop_map(flatten).boxed()]),
        // Rare: each ends whatever state the sequence has built.
        1 => prop_oneof![
            command("FLUSHDB", vec![]),
            command("FLUSHALL", vec![]),
            command("FLUSHALL", vec![from(&[b"SYNC", b"ASYNC", b"NOW"])]),
        ]
        .boxed(),
    ]
    .boxed()
}

/// Fields and members: few, so that commands meet each other's, one binary.
const ELEMENTS: &[&[u8]] = &[b"f1", b"f2", b"f3", b"1", b"\x00\xff\r\n"];

fn element() -> Part {
    from(ELEMENTS)
}

fn elements(count: std::ops::Range<usize>) -> Part {
    vec(element(), count).prop_map(flatten).boxed()
}

/// Hash and set commands, on the same keys as strings (so every WRONGTYPE path is met). Only
/// deterministic picks: SPOP takes none or every member (a count of 0 or at least the set's
/// size), and the random picks of HRANDFIELD and SRANDMEMBER are compared by their shape
/// (normalise.rs).
fn collection_command() -> Part {
    let field_values = vec((element(), value()).prop_map(|(f, v)| flatten(vec![f, v])), 1..4)
        .prop_map(flatten)
        .boxed();
    let random_count =
        || from(&[b"1", b"2", b"5", b"-1", b"-3", b"0", b"abc", b"-9223372036854775808"]);
    let collection_scan_options = || {
        let option = prop_oneof![
            2 => from(&[b"f*", b"*1", b"*"]).prop_map(|p| prefixed("MATCH", p)),
            1 => from(&[b"1000", b"0", b"abc"]).prop_map(|n| prefixed("COUNT", n)),
        ];
        some_of(option.boxed(), 2)
    };
    prop_oneof![
        6 => command("HSET", vec![key(), field_values.clone()]),
        1 => command("HSET", vec![key(), element()]),
        1 => command("HMSET", vec![key(), field_values]),
        1 => command("HSETNX", vec![key(), element(), value()]),
        3 => command("HGET", vec![key(), element()]),
        1 => command("HMGET", vec![key(), elements(1..4)]),
        3 => command("HDEL", vec![key(), elements(1..4)]),
        2 => command("HGETALL", vec![key()]),
        1 => command("HKEYS", vec![key()]),
        1 => command("HVALS", vec![key()]),
        1 => command("HLEN", vec![key()]),
        1 => command("HEXISTS", vec![key(), element()]),
        1 => command("HSTRLEN", vec![key(), element()]),
        2 => command("HINCRBY", vec![key(), element(), from(INTEGERS)]),
        2 => command("HINCRBYFLOAT", vec![key(), element(), from(FLOATS)]),
        1 => command("HRANDFIELD", vec![key()]),
        1 => command("HRANDFIELD", vec![key(), random_count(), some_of(from(&[b"WITHVALUES", b"FOO"]), 2)]),
        1 => command("HSCAN", vec![key(), scan_cursor(), collection_scan_options()]),
        6 => command("SADD", vec![key(), elements(1..4)]),
        3 => command("SREM", vec![key(), elements(1..4)]),
        2 => command("SMEMBERS", vec![key()]),
        2 => command("SISMEMBER", vec![key(), element()]),
        1 => command("SMISMEMBER", vec![key(), elements(1..4)]),
        2 => command("SCARD", vec![key()]),
        1 => command("SPOP", vec![key(), from(&[b"0", b"100", b"-1", b"abc"])]),
        1 => command("SRANDMEMBER", vec![key()]),
        1 => command("SRANDMEMBER", vec![key(), random_count()]),
        1 => command("SSCAN", vec![key(), scan_cursor(), collection_scan_options()]),
        1 => command("SMOVE", vec![key(), key(), element()]),
        1 => command("SINTER", vec![keys(1..4)]),
        1 => command("SUNION", vec![keys(1..4)]),
        1 => command("SDIFF", vec![keys(1..4)]),
        1 => command("SINTERSTORE", vec![key(), keys(1..4)]),
        1 => command("SUNIONSTORE", vec![key(), keys(1..4)]),
        1 => command("SDIFFSTORE", vec![key(), keys(1..4)]),
    ]
    .boxed()
}

/// A known command with 0 to 4 keys as its arguments (mostly the wrong number), and unknown
/// commands. Keys only: no argument is a number, so none sets a TTL of a few milliseconds.
fn malformed_command() -> Part {
    let names: Vec<&str> = IMPLEMENTED.split_whitespace().collect();
    let known = (select(names), keys(0..5)).prop_map(|(name, args)| {
        std::iter::once(Arg::Literal(name.as_bytes().to_vec())).chain(args).collect()
    });
    let unknown_arg = prop_oneof![key(), from(&[b"a\r\nb", b"a\x00b", &[b'y'; 150]])];
    let unknown = (select(UNKNOWN), vec(unknown_arg, 0..4)).prop_map(|(name, args)| {
        std::iter::once(Arg::Literal(name.to_vec())).chain(args.into_iter().flatten()).collect()
    });
    prop_oneof![3 => known, 1 => unknown].boxed()
}

/// Commands refused while queueing (an unknown name, a wrong number of arguments: EXEC then
/// answers EXECABORT), or queued and failing inside EXEC (a syntax or value error).
const MISTAKES: &[&str] = &[
    "NOSUCHCMD k1",
    "GET",
    "MULTI x",
    "EXEC x",
    "DISCARD x",
    "WATCH",
    "UNWATCH x",
    "SET k1 v FOO",
    "INCRBY k1 abc",
];

fn transaction_command() -> Part {
    let small_value = || from(&[b"v", b"1", b"10", b"abc"]);
    let set_option = prop_oneof![
        from(&[b"NX", b"XX", b"GET"]),
        relative_or_bad_seconds().prop_map(|t| prefixed("EX", t)),
    ];
    prop_oneof![
        4 => command("MULTI", vec![]),
        4 => command("EXEC", vec![]),
        1 => command("DISCARD", vec![]),
        3 => command("WATCH", vec![keys(1..3)]),
        1 => command("UNWATCH", vec![]),
        3 => command("GET", vec![key()]),
        4 => command("SET", vec![key(), small_value(), vec(set_option, 0..2).prop_map(flatten).boxed()]),
        2 => command("INCR", vec![key()]),
        1 => command("APPEND", vec![key(), small_value()]),
        2 => command("DEL", vec![keys(1..3)]),
        1 => command("EXISTS", vec![keys(1..3)]),
        2 => command("EXPIRE", vec![key(), relative_or_bad_seconds(), expire_options()]),
        1 => command("PERSIST", vec![key()]),
        1 => command("MGET", vec![keys(1..3)]),
        1 => command("MSET", vec![pairs()]),
        1 => command("GETDEL", vec![key()]),
        1 => command("DBSIZE", vec![]),
        1 => prop_oneof![command("FLUSHALL", vec![]), command("FLUSHDB", vec![])].boxed(),
        1 => script_command(),
        // Refused while queueing (EXECABORT), or failing inside EXEC (a runtime error).
        2 => select(MISTAKES)
            .prop_map(|line| line.split(' ').map(|a| Arg::Literal(a.as_bytes().to_vec())).collect())
            .boxed(),
    ]
    .boxed()
}

/// Script bodies: reads, writes, errors raised (`redis.call`) and returned (`redis.pcall`),
/// Lua's conversions both ways, over the generated keys and values. No TTLs: a deadline set
/// inside a script could not be told from an absolute one by the final check.
const SCRIPTS: &[&[u8]] = &[
    b"return redis.call('get', KEYS[1])",
    b"return redis.call('incr', KEYS[1])",
    b"return redis.pcall('incr', KEYS[1])",
    b"redis.call('set', KEYS[1], ARGV[1]) return redis.call('get', KEYS[1])",
    b"return {redis.call('exists', KEYS[1]), ARGV[1], tonumber(ARGV[1]), #ARGV}",
    b"return redis.call('del', KEYS[1])",
    b"return redis.call('append', KEYS[1], ARGV[1])",
    b"return redis.call('mget', KEYS[1], 'k2')",
    b"local v = redis.call('get', KEYS[1]) if v then return {ok = v} end return {err = 'NONE ' .. KEYS[1]}",
    b"return redis.call('setrange', KEYS[1], ARGV[1], 'x')",
    b"return x",
];

/// EVAL, EVAL_RO and EVALSHA of the scripts above (EVALSHA of one not loaded answers
/// NOSCRIPT), and SCRIPT LOAD, EXISTS and FLUSH: the cache is part of what both servers keep
/// between commands.
fn script_command() -> Part {
    let sha = |body: &[u8]| mapcache::server::commands::scripts::sha1_hex(body).into_bytes();
    let body = || select(SCRIPTS).prop_map(|b| vec![Arg::Literal(b.to_vec())]).boxed();
    let sha_of = move || select(SCRIPTS).prop_map(move |b| vec![Arg::Literal(sha(b))]).boxed();
    let one_key = || from(&[b"1"]);
    prop_oneof![
        4 => command("EVAL", vec![body(), one_key(), key(), value()]),
        1 => command("EVAL_RO", vec![body(), one_key(), key(), value()]),
        3 => command("EVALSHA", vec![sha_of(), one_key(), key(), value()]),
        2 => command("SCRIPT", vec![from(&[b"LOAD"]), body()]),
        1 => command("SCRIPT", vec![from(&[b"EXISTS"]), sha_of(), sha_of()]),
        1 => command("SCRIPT", vec![from(&[b"FLUSH"])]),
    ]
    .boxed()
}

/// Differences from Redis 7.0.15 found by this test and not fixed yet: the commands that would
/// meet them are not generated, so that the test keeps checking everything else. Remove an
/// entry once the node is fixed. Each returns what it avoids. (None today: the two it found,
/// EXPIRE's unsupported option quoted past a NUL and EXPIRETIME truncated instead of rounded,
/// are fixed.)
fn known_difference(template: &[Arg]) -> Option<&'static str> {
    let literal = |i: usize| match template.get(i) {
        Some(Arg::Literal(bytes)) => Some(bytes.as_slice()),
        _ => None,
    };
    let _name = literal(0)?.to_ascii_uppercase();
    None
}

fn without_known_differences(command: Part) -> Part {
    command.prop_filter("a known difference", |t| known_difference(t).is_none()).boxed()
}

/// Sends a command name as written (mostly, and what a failing case shrinks to), in lower
/// case, or in mixed case: names are case-insensitive, and an error quoting the name quotes it
/// as sent.
fn with_name_case(command: Part) -> Part {
    (command, 0..8u8)
        .prop_map(|(mut args, case)| {
            if let Some(Arg::Literal(name)) = args.first_mut() {
                match case {
                    6 => name.make_ascii_lowercase(),
                    7 => name.iter_mut().step_by(2).for_each(|c| c.make_ascii_lowercase()),
                    _ => {}
                }
            }
            args
        })
        .boxed()
}

/// `name` followed by the arguments its parts generate.
fn command(name: &'static str, parts: Vec<Part>) -> Part {
    parts
        .prop_map(move |parts| {
            std::iter::once(Arg::Literal(name.as_bytes().to_vec()))
                .chain(parts.into_iter().flatten())
                .collect()
        })
        .boxed()
}

/// Any key, k1 and k2 more often than the others, so that commands meet each other's values.
fn key() -> Part {
    prop_oneof![3 => from(&[b"k1"]), 2 => from(&[b"k2"]), 4 => from(KEYS)].boxed()
}

fn keys(count: std::ops::Range<usize>) -> Part {
    vec(key(), count).prop_map(flatten).boxed()
}

/// One of [`VALUES`], or a few arbitrary bytes.
fn value() -> Part {
    prop_oneof![
        4 => from(VALUES),
        1 => vec(any::<u8>(), 0..6).prop_map(|bytes| vec![Arg::Literal(bytes)]),
    ]
    .boxed()
}

/// 1 to 3 key/value pairs.
fn pairs() -> Part {
    vec((key(), value()), 1..4)
        .prop_map(|pairs| pairs.into_iter().flat_map(|(k, v)| k.into_iter().chain(v)).collect())
        .boxed()
}

/// One argument, one of `choices`.
fn from(choices: &'static [&'static [u8]]) -> Part {
    select(choices).prop_map(|bytes| vec![Arg::Literal(bytes.to_vec())]).boxed()
}

fn relative_or_bad_seconds() -> Part {
    prop_oneof![
        4 => (0..TTL_SLOTS).prop_map(|slot| vec![Arg::RelativeSeconds(slot)]),
        1 => from(BAD_SECONDS),
    ]
    .boxed()
}

fn relative_or_bad_millis() -> Part {
    prop_oneof![
        4 => (0..TTL_SLOTS).prop_map(|slot| vec![Arg::RelativeMillis(slot)]),
        1 => from(BAD_MILLIS),
    ]
    .boxed()
}

/// 0 to 3 of SET's options, repeats and conflicts included, and an option without its time.
fn set_options() -> Part {
    let option = prop_oneof![
        3 => from(&[b"NX", b"XX", b"GET", b"KEEPTTL", b"nx", b"get", b"FOO", b"EX"]),
        3 => relative_or_bad_seconds().prop_map(|t| prefixed("EX", t)),
        2 => relative_or_bad_millis().prop_map(|t| prefixed("PX", t)),
        1 => from(ABSOLUTE_SECONDS).prop_map(|t| prefixed("EXAT", t)),
        1 => from(ABSOLUTE_MILLIS).prop_map(|t| prefixed("pxat", t)),
    ];
    some_of(option.boxed(), 3)
}

/// 0 to 2 of GETEX's options.
fn getex_options() -> Part {
    let option = prop_oneof![
        2 => from(&[b"PERSIST"]),
        1 => from(&[b"FOO", b"PX"]),
        2 => relative_or_bad_seconds().prop_map(|t| prefixed("EX", t)),
        1 => relative_or_bad_millis().prop_map(|t| prefixed("PX", t)),
        1 => from(ABSOLUTE_SECONDS).prop_map(|t| prefixed("EXAT", t)),
        1 => from(ABSOLUTE_MILLIS).prop_map(|t| prefixed("PXAT", t)),
    ];
    some_of(option.boxed(), 2)
}

/// 0 to 2 of EXPIRE's conditions, conflicting pairs and an unknown one included.
fn expire_options() -> Part {
    some_of(from(&[b"NX", b"XX", b"GT", b"LT", b"gt", b"FOO"]), 2)
}

/// Cursor 0 as written several ways, and invalid cursors. No other valid cursor: where a scan
/// resumes is each server's own business.
fn scan_cursor() -> Part {
    prop_oneof![
        4 => from(&[b"0"]),
        1 => from(&[b"", b"00", b"abc", b"1.5", b"18446744073709551616"]),
    ]
    .boxed()
}

/// 0 to 2 of SCAN's options, an unknown one and one without its value included.
fn scan_options() -> Part {
    let option = prop_oneof![
        2 => from(PATTERNS).prop_map(|p| prefixed("MATCH", p)),
        2 => from(&[b"1", b"2", b"10", b"0", b"-1", b"abc"]).prop_map(|n| prefixed("COUNT", n)),
        // Not `TYPE none`: Redis 7.0 lists under it a key whose deadline has passed but which
        // it has not removed yet (`SET ... EXAT <past>` leaves one): its type lookup removes the
        // key, then matches the missing key's type, "none". Whether such a key is still there
        // depends on Redis's active expiry, so the reply is not Redis's to set.
        1 => from(&[b"string", b"STRING", b"hash", b"nosuchtype"])
            .prop_map(|t| prefixed("TYPE", t)),
        1 => from(&[b"FOO", b"COUNT"]),
    ];
    some_of(option.boxed(), 2)
}

/// None, one or (less often) 2 to `max` options: most calls valid, some conflicting.
fn some_of(option: Part, max: usize) -> Part {
    prop_oneof![
        2 => Just(Vec::new()),
        3 => option.clone(),
        1 => vec(option, 2..=max).prop_map(flatten),
    ]
    .boxed()
}

fn prefixed(option: &str, rest: Vec<Arg>) -> Vec<Arg> {
    std::iter::once(Arg::Literal(option.as_bytes().to_vec())).chain(rest).collect()
}

fn flatten(parts: Vec<Vec<Arg>>) -> Vec<Arg> {
    parts.into_iter().flatten().collect()
}

/// A command as redis-cli takes it: plain words bare, anything else double-quoted with
/// `\xHH` escapes, so that a printed sequence can be pasted into `redis-cli` to replay it.
pub fn show(command: &[Vec<u8>]) -> String {
    command.iter().map(|arg| show_arg(arg)).collect::<Vec<_>>().join(" ")
}

fn show_arg(arg: &[u8]) -> String {
    let plain = |c: &u8| c.is_ascii_graphic() && !matches!(c, b'"' | b'\'' | b'\\');
    if !arg.is_empty() && arg.iter().all(plain) {
        return String::from_utf8_lossy(arg).into_owned();
    }
    quote(arg)
}

/// `arg` in double quotes, with redis-cli's escapes for what is not printable ASCII.
pub fn quote(arg: &[u8]) -> String {
    let mut out = String::from("\"");
    for &c in arg {
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c if c.is_ascii_graphic() || c == b' ' => out.push(c as char),
            c => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out.push('"');
    out
}
