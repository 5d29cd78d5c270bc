//! Introspection a Redis dashboard reads, checked against redis-server 7.0.15: INFO's keyspace
//! hits and misses, commandstats, errorstats and section selection, SLOWLOG, CLIENT REPLY,
//! CLIENT NO-EVICT / NO-TOUCH, COMMAND GETKEYS / LIST, and the same counters in `/metrics`.
//! Every expected value below was read from redis-server 7.0.15 running the same commands
//! (`redis-server --port 7398 --save '' --appendonly no`), unless a comment says otherwise.

mod server_support;

use std::collections::BTreeMap;

use mapcache::server::clock::ManualClock;
use server_support::{Raw, cmd, cmd_bytes, get_text, start, start_with};
use tokio::io::AsyncWriteExt;

/// One RESP reply, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Value>),
}

impl Value {
    fn bulk(&self) -> &[u8] {
        match self {
            Value::Bulk(Some(b)) => b,
            other => panic!("not a bulk string: {other:?}"),
        }
    }

    fn array(&self) -> &[Value] {
        match self {
            Value::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Value::Int(n) => *n,
            other => panic!("not an integer: {other:?}"),
        }
    }

    fn text(&self) -> String {
        String::from_utf8(self.bulk().to_vec()).expect("utf-8")
    }
}

/// Reads one whole reply, returning its bytes and its parsed value.
async fn read_reply(c: &mut Raw) -> (Vec<u8>, Value) {
    let mut raw = Vec::new();
    let value = read_value(c, &mut raw).await;
    (raw, value)
}

async fn read_line(c: &mut Raw, raw: &mut Vec<u8>) -> Vec<u8> {
    let start = raw.len();
    while !raw[start..].ends_with(b"\r\n") {
        raw.extend(c.read_exact(1).await);
    }
    raw[start..raw.len() - 2].to_vec()
}

fn read_value<'a>(
    c: &'a mut Raw,
    raw: &'a mut Vec<u8>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Value> + 'a>> {
    Box::pin(async move {
        let line = read_line(c, raw).await;
        let rest = String::from_utf8_lossy(&line[1..]).into_owned();
        match line[0] {
            b'+' => Value::Status(rest),
            b'-' => Value::Error(rest),
            b':' => Value::Int(rest.parse().expect("integer")),
            b'$' => {
                let n: i64 = rest.parse().expect("length");
                if n < 0 {
                    return Value::Bulk(None);
                }
                let data = c.read_exact(n as usize + 2).await;
                raw.extend(&data);
                Value::Bulk(Some(data[..n as usize].to_vec()))
            }
            b'*' => {
                let n: i64 = rest.parse().expect("length");
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(read_value(c, raw).await);
                }
                Value::Array(items)
            }
            other => panic!("unexpected reply type {:?}", other as char),
        }
    })
}

/// Sends one command (arguments split on spaces) and returns its parsed reply.
async fn call(c: &mut Raw, line: &str) -> Value {
    let args: Vec<&str> = line.split(' ').collect();
    c.stream.write_all(&cmd(&args)).await.expect("write");
    read_reply(c).await.1
}

/// The `field:value` lines of `INFO <section>` on connection `c`.
async fn info(c: &mut Raw, section: &str) -> BTreeMap<String, String> {
    let text = call(c, &format!("INFO {section}")).await.text();
    text.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn info_number(c: &mut Raw, section: &str, field: &str) -> u64 {
    let fields = info(c, section).await;
    let value = fields.get(field).unwrap_or_else(|| panic!("no {field} in INFO {section}"));
    value.parse().unwrap_or_else(|_| panic!("{field}:{value} is not a number"))
}

/// The section headers of `INFO <args>`.
async fn info_headers(c: &mut Raw, args: &str) -> Vec<String> {
    let line = if args.is_empty() { "INFO".to_string() } else { format!("INFO {args}") };
    let text = call(c, &line).await.text();
    text.split("\r\n").filter(|l| l.starts_with('#')).map(str::to_string).collect()
}

/// Each command with the keyspace hits and misses redis-server 7.0.15 counted for it (INFO
/// stats read after each one). Write lookups count nothing; GETEX, GETDEL, GETSET and `SET
/// .. GET` read as GET does; an error found before the lookup counts nothing; queued commands
/// count when EXEC runs them. `+100ms` moves the clock (Redis: a 200 ms sleep).
const HITS_AND_MISSES: &[(&str, u64, u64)] = &[
    ("SET a 1", 0, 0),
    ("GET a", 1, 0),
    ("GET missing", 0, 1),
    ("MGET a missing b", 1, 2),
    ("EXISTS a missing a", 2, 1),
    ("TYPE a", 1, 0),
    ("TYPE missing", 0, 1),
    ("TTL a", 1, 0),
    ("PTTL missing", 0, 1),
    ("EXPIRETIME a", 1, 0),
    ("PEXPIRETIME missing", 0, 1),
    ("STRLEN a", 1, 0),
    ("STRLEN missing", 0, 1),
    ("GETRANGE a 0 -1", 1, 0),
    ("SUBSTR missing 0 1", 0, 1),
    ("GETEX a", 1, 0),
    ("GETEX missing", 0, 1),
    ("GETDEL missing", 0, 1),
    ("SET d 1", 0, 0),
    ("GETDEL d", 1, 0),
    ("GETSET a 2", 1, 0),
    ("GETSET newkey 1", 0, 1),
    ("SET a 3 GET", 1, 0),
    ("SET b2 3 GET", 0, 1),
    ("SET a 4 NX", 0, 0),
    ("SET a 5 XX", 0, 0),
    ("SET a 6 NX GET", 1, 0),
    ("SETNX a x", 0, 0),
    ("APPEND a x", 0, 0),
    ("INCR c", 0, 0),
    ("INCRBYFLOAT f 1.5", 0, 0),
    ("SETRANGE a 0 x", 0, 0),
    ("DEL a missing", 0, 0),
    ("EXPIRE b2 10", 0, 0),
    ("PERSIST b2", 0, 0),
    ("MSETNX m1 1 m2 2", 0, 0),
    ("MSET m1 1 m2 2", 0, 0),
    ("MEMORY USAGE b2", 0, 0),
    ("RANDOMKEY", 0, 0),
    ("KEYS *", 0, 0),
    ("SCAN 0", 0, 0),
    ("DBSIZE", 0, 0),
    ("WATCH b2", 0, 0),
    ("UNWATCH", 0, 0),
    ("MULTI", 0, 0),
    ("GET nosuch", 0, 0),
    ("SET x 1 GET", 0, 0),
    ("EXEC", 0, 2),
    ("GETRANGE b2 x 1", 0, 0),
    ("SET b2 1 EX 0 GET", 0, 0),
    ("GETEX b2 EX -1", 1, 0),
    ("SET e 1 PX 100", 0, 0),
    ("+100ms", 0, 0),
    ("GET e", 0, 1),
];

#[tokio::test]
async fn keyspace_hits_and_misses_move_as_redis_counts_them() {
    let clock = ManualClock::new(1_000_000);
    let node = start_with(|c| c.clock = clock.clone()).await;
    let (mut c, mut stats) = (node.raw().await, node.raw().await);
    let mut counted = (0, 0);
    for &(line, hits, misses) in HITS_AND_MISSES {
        if line == "+100ms" {
            clock.advance_ms(100);
            continue;
        }
        call(&mut c, line).await;
        let now = (
            info_number(&mut stats, "stats", "keyspace_hits").await,
            info_number(&mut stats, "stats", "keyspace_misses").await,
        );
        assert_eq!((now.0 - counted.0, now.1 - counted.1), (hits, misses), "{line}");
        counted = now;
    }
    // redis-server's totals for the whole sequence.
    assert_eq!(counted, (15, 16));
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("\nmapcache_keyspace_hits_total 15\n"), "{metrics}");
    assert!(metrics.contains("\nmapcache_keyspace_misses_total 16\n"), "{metrics}");
}

/// `cmdstat_<name>` lines of INFO commandstats as (calls, rejected_calls, failed_calls), each
/// line's format checked.
async fn commandstats(c: &mut Raw) -> BTreeMap<String, (u64, u64, u64)> {
    let mut stats = BTreeMap::new();
    for (field, value) in info(c, "commandstats").await {
        let name = field.strip_prefix("cmdstat_").expect("cmdstat_ line").to_string();
        let parts: Vec<(&str, &str)> =
            value.split(',').map(|p| p.split_once('=').expect("key=value")).collect();
        let keys: Vec<&str> = parts.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["calls", "usec", "usec_per_call", "rejected_calls", "failed_calls"]);
        let number = |i: usize| parts[i].1.parse::<u64>().expect("number");
        let (calls, usec) = (number(0), number(1));
        let per_call = if calls == 0 { 0.0 } else { usec as f64 / calls as f64 };
        assert_eq!(parts[2].1, format!("{per_call:.2}"), "{name}");
        stats.insert(name, (calls, number(3), number(4)));
    }
    stats
}

#[tokio::test]
async fn commandstats_and_errorstats_count_calls_rejections_and_failures_as_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    call(&mut c, "CONFIG RESETSTAT").await;
    let script = [
        "SET a 1",
        "GET a",
        "GET",
        "INCR a b",
        "INCRBY a x",
        "FOO",
        "CLIENT FOO",
        "CLIENT ID x",
        "CLIENT ID",
        "MULTI",
        "INCR a",
        "GET",
        "EXEC",
        "MULTI",
        "SET a x",
        "INCR a",
        "EXEC",
        "EXEC",
        "AUTH x",
    ];
    for line in script {
        call(&mut c, line).await;
    }
    let expected: BTreeMap<String, (u64, u64, u64)> = [
        ("auth", (1, 0, 1)),
        ("client|id", (1, 1, 0)),
        ("config|resetstat", (1, 0, 0)),
        ("exec", (3, 0, 2)),
        ("get", (1, 2, 0)),
        ("incr", (1, 1, 1)),
        ("incrby", (1, 0, 1)),
        ("multi", (2, 0, 0)),
        ("set", (2, 0, 0)),
    ]
    .into_iter()
    .map(|(name, counts)| (name.to_string(), counts))
    .collect();
    assert_eq!(commandstats(&mut c).await, expected);
    let errorstats = call(&mut c, "INFO errorstats").await;
    assert_eq!(
        errorstats.text(),
        "# Errorstats\r\nerrorstat_ERR:count=10\r\nerrorstat_EXECABORT:count=1\r\n"
    );
    // Calls only (rejected and queued commands are not processed), the two INFOs included.
    assert_eq!(info_number(&mut c, "stats", "total_commands_processed").await, 15);
    assert_eq!(info_number(&mut c, "stats", "total_error_replies").await, 11);

    let metrics = get_text(&node.admin_url("/metrics")).await;
    for line in [
        "mapcache_command_calls_total{cmd=\"exec\"} 3",
        "mapcache_command_failed_calls_total{cmd=\"exec\"} 2",
        "mapcache_command_rejected_calls_total{cmd=\"get\"} 2",
        "mapcache_command_calls_total{cmd=\"client|id\"} 1",
        "mapcache_command_rejected_calls_total{cmd=\"client|id\"} 1",
        "mapcache_error_replies_total{prefix=\"ERR\"} 10",
        "mapcache_error_replies_total{prefix=\"EXECABORT\"} 1",
    ] {
        assert!(metrics.contains(&format!("\n{line}\n")), "{line} in {metrics}");
    }

    // CONFIG RESETSTAT starts INFO over (the reset itself is then its one call); /metrics
    // counts on from the start.
    call(&mut c, "GET a").await;
    call(&mut c, "CONFIG RESETSTAT").await;
    let after: Vec<String> = commandstats(&mut c).await.into_keys().collect();
    assert_eq!(after, ["config|resetstat"]);
    assert_eq!(call(&mut c, "INFO errorstats").await.text(), "# Errorstats\r\n");
    let stats = info(&mut c, "stats").await;
    for field in ["keyspace_hits", "keyspace_misses", "total_error_replies"] {
        assert_eq!(stats[field], "0", "{field}");
    }
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("\nmapcache_command_calls_total{cmd=\"exec\"} 3\n"), "{metrics}");
    assert!(metrics.contains("\nmapcache_keyspace_hits_total 2\n"), "{metrics}");
}

#[tokio::test]
async fn slowlog_logs_every_command_at_threshold_0_trimmed_and_redacted_as_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SLOWLOG", "RESET"]), b"+OK\r\n").await;
    c.expect(&cmd(&["CLIENT", "SETNAME", "tester"]), b"+OK\r\n").await;
    let (long_key, value) = ("a".repeat(130), "b".repeat(128));
    c.expect(&cmd(&["SET", &long_key, &value]), b"+OK\r\n").await;
    let many: Vec<String> = (0..40).map(|i| i.to_string()).collect();
    let mget: Vec<&str> = std::iter::once("MGET").chain(many.iter().map(String::as_str)).collect();
    c.stream.write_all(&cmd(&mget)).await.unwrap();
    read_reply(&mut c).await;
    for line in ["AUTH secret", "AUTH user pass", "HELLO 2 AUTH user pass", "MULTI", "GET x"] {
        call(&mut c, line).await;
    }
    c.expect(&cmd(&["EXEC"]), b"*1\r\n$-1\r\n").await;
    // Refused commands never ran: not logged.
    call(&mut c, "GET").await;
    call(&mut c, "FOO").await;
    c.stream.write_all(&cmd(&["SLOWLOG", "GET", "-1"])).await.unwrap();
    let (raw, entries) = read_reply(&mut c).await;
    let peer = c.stream.local_addr().unwrap().to_string();
    let expected: Vec<(i64, Vec<String>)> = vec![
        (9, vec!["GET".into(), "x".into()]),
        (8, vec!["MULTI".into()]),
        (7, ["HELLO", "2", "AUTH", "(redacted)", "(redacted)"].map(String::from).to_vec()),
        (6, ["AUTH", "(redacted)", "(redacted)"].map(String::from).to_vec()),
        (5, ["AUTH", "(redacted)"].map(String::from).to_vec()),
        (4, {
            let mut args = vec!["MGET".to_string()];
            args.extend(many[..30].iter().cloned());
            args.push("... (10 more arguments)".into());
            args
        }),
        (3, vec!["SET".into(), format!("{}... (2 more bytes)", "a".repeat(128)), value.clone()]),
        (2, ["CLIENT", "SETNAME", "tester"].map(String::from).to_vec()),
        (1, ["SLOWLOG", "RESET"].map(String::from).to_vec()),
    ];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64;
    assert_eq!(entries.array().len(), expected.len(), "{entries:?}");
    for (entry, (id, args)) in entries.array().iter().zip(&expected) {
        let fields = entry.array();
        assert_eq!(fields.len(), 6);
        assert_eq!(fields[0].int(), *id);
        assert!((now - 60..=now).contains(&fields[1].int()), "{:?}", fields[1]);
        assert!(fields[2].int() >= 0);
        let logged: Vec<String> = fields[3].array().iter().map(Value::text).collect();
        assert_eq!(&logged, args, "entry {id}");
        assert_eq!(fields[4].text(), peer);
        // Named from the entry after CLIENT SETNAME on, as Redis names it.
        assert_eq!(fields[5].text(), if *id >= 2 { "tester" } else { "" });
    }
    // The trimmed SET, byte for byte as redis-server sends it, with its client.
    let mut set_entry =
        format!("*3\r\n$3\r\nSET\r\n$146\r\n{}... (2 more bytes)\r\n", "a".repeat(128));
    set_entry
        .push_str(&format!("$128\r\n{value}\r\n${}\r\n{peer}\r\n$6\r\ntester\r\n", peer.len()));
    assert!(raw.windows(set_entry.len()).any(|w| w == set_entry.as_bytes()));
    c.expect(&cmd(&["SLOWLOG", "LEN"]), b":10\r\n").await;
    c.expect(&cmd(&["SLOWLOG", "GET", "1"]), b"*1\r\n*6\r\n:11\r\n").await;
}

#[tokio::test]
async fn slowlog_subcommands_and_parameters_answer_as_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(
        &cmd(&["CONFIG", "GET", "slowlog*"]),
        b"*4\r\n$23\r\nslowlog-log-slower-than\r\n$5\r\n10000\r\n$15\r\nslowlog-max-len\r\n$3\r\n128\r\n",
    )
    .await;
    // Nothing this fast is logged at the default 10 ms.
    c.expect(&cmd(&["SLOWLOG", "LEN"]), b":0\r\n").await;
    c.expect(&cmd(&["SLOWLOG", "GET"]), b"*0\r\n").await;
    let errors: [(&[&str], &[u8]); 11] = [
        (&["SLOWLOG"], b"-ERR wrong number of arguments for 'slowlog' command\r\n"),
        (&["SLOWLOG", "GET", "-2"], b"-ERR count should be greater than or equal to -1\r\n"),
        (&["SLOWLOG", "GET", "x"], b"-ERR count should be greater than or equal to -1\r\n"),
        (
            &["SLOWLOG", "Get", "1", "2"],
            b"-ERR unknown subcommand or wrong number of arguments for 'Get'. Try SLOWLOG HELP.\r\n",
        ),
        (&["SLOWLOG", "LEN", "x"], b"-ERR wrong number of arguments for 'slowlog|len' command\r\n"),
        (
            &["SLOWLOG", "RESET", "x"],
            b"-ERR wrong number of arguments for 'slowlog|reset' command\r\n",
        ),
        (&["SLOWLOG", "FOO"], b"-ERR unknown subcommand 'FOO'. Try SLOWLOG HELP.\r\n"),
        (
            &["CONFIG", "SET", "slowlog-log-slower-than", "-2"],
            b"-ERR CONFIG SET failed (possibly related to argument 'slowlog-log-slower-than') - argument must be between -1 and 9223372036854775807 inclusive\r\n",
        ),
        (
            &["CONFIG", "SET", "slowlog-log-slower-than", "1k"],
            b"-ERR CONFIG SET failed (possibly related to argument 'slowlog-log-slower-than') - argument couldn't be parsed into an integer\r\n",
        ),
        (
            &["CONFIG", "SET", "slowlog-max-len", "-1"],
            b"-ERR CONFIG SET failed (possibly related to argument 'slowlog-max-len') - argument must be between 0 and 9223372036854775807 inclusive\r\n",
        ),
        (
            &["CONFIG", "SET", "slowlog-max-len", "+5"],
            b"-ERR CONFIG SET failed (possibly related to argument 'slowlog-max-len') - argument couldn't be parsed into an integer\r\n",
        ),
    ];
    for (args, reply) in errors {
        c.expect(&cmd(args), reply).await;
    }
    c.expect(
        &cmd(&["SLOWLOG", "HELP"]),
        b"*12\r\n+SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n\
          +GET [<count>]\r\n\
          +    Return top <count> entries from the slowlog (default: 10, -1 mean all).\r\n\
          +    Entries are made of:\r\n\
          +    id, timestamp, time in microseconds, arguments array, client IP and port,\r\n\
          +    client name\r\n\
          +LEN\r\n\
          +    Return the length of the slowlog.\r\n\
          +RESET\r\n\
          +    Reset the slowlog.\r\n\
          +HELP\r\n\
          +    Prints this help.\r\n",
    )
    .await;
    // A shorter log keeps the newest entries; a log that is off is not trimmed (Redis trims as
    // it considers a command for the log).
    c.expect(&cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "0"]), b"+OK\r\n").await;
    for _ in 0..4 {
        c.expect(&cmd(&["PING"]), b"+PONG\r\n").await;
    }
    c.expect(&cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "100000000"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SLOWLOG", "LEN"]), b":5\r\n").await;
    c.expect(&cmd(&["CONFIG", "SET", "slowlog-max-len", "2"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SLOWLOG", "LEN"]), b":2\r\n").await;
    c.expect(&cmd(&["CONFIG", "SET", "slowlog-log-slower-than", "-1"]), b"+OK\r\n").await;
    c.expect(&cmd(&["CONFIG", "SET", "slowlog-max-len", "1"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SLOWLOG", "LEN"]), b":2\r\n").await;
    c.expect(
        &cmd(&["CONFIG", "GET", "slowlog-max-len"]),
        b"*2\r\n$15\r\nslowlog-max-len\r\n$1\r\n1\r\n",
    )
    .await;
    c.expect(&cmd(&["SLOWLOG", "RESET"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SLOWLOG", "LEN"]), b":0\r\n").await;
}

#[tokio::test]
async fn client_reply_off_skip_and_on_answer_as_redis_byte_for_byte() {
    let node = start().await;
    let mut c = node.raw().await;
    let script = [
        "CLIENT REPLY OFF",
        "PING",
        "GET",
        "CLIENT REPLY ON",
        "PING",
        "CLIENT REPLY SKIP",
        "PING",
        "PING a",
        "CLIENT REPLY SKIP",
        "CLIENT REPLY ON",
        "PING b",
        "CLIENT REPLY SKIP",
        "CLIENT REPLY SKIP",
        "PING c",
        "PING d",
        "CLIENT REPLY FOO",
        "CLIENT REPLY",
        "CLIENT REPLY ON x",
        "CLIENT REPLY OFF",
        "CLIENT REPLY SKIP",
        "PING e",
        "CLIENT REPLY ON",
        "CLIENT REPLY SKIP",
        "FOO",
        "PING f",
        "client reply on",
    ];
    let mut request = Vec::new();
    for line in script {
        request.extend(cmd(&line.split(' ').collect::<Vec<_>>()));
    }
    c.expect(
        &request,
        b"+OK\r\n+PONG\r\n$1\r\na\r\n+OK\r\n$1\r\nb\r\n$1\r\nd\r\n-ERR syntax error\r\n\
          -ERR wrong number of arguments for 'client|reply' command\r\n\
          -ERR wrong number of arguments for 'client|reply' command\r\n+OK\r\n$1\r\nf\r\n+OK\r\n",
    )
    .await;
    // Nothing more was sent: the next reply is the next command's.
    c.expect(&cmd(&["PING", "end"]), b"$3\r\nend\r\n").await;
    // Replies not sent are counted all the same: the syntax error, two arity errors, GET's and
    // FOO's (ERR).
    assert_eq!(info_number(&mut c, "stats", "total_error_replies").await, 5);
}

/// `flags=` of the caller's CLIENT INFO line.
async fn client_flags(c: &mut Raw) -> String {
    let line = call(c, "CLIENT INFO").await.text();
    let flags = line.split(' ').find_map(|f| f.strip_prefix("flags="));
    flags.expect("flags=").to_string()
}

/// CLIENT NO-EVICT is Redis 7.0's (answered as there; no client is evicted here). CLIENT
/// NO-TOUCH is Redis 7.2's (redis-server 7.0.15 answers `unknown subcommand`): built as 7.2
/// documents it, the client's reads leave a key's LRU time alone.
#[tokio::test]
async fn client_no_evict_and_no_touch_set_flags_and_no_touch_reads_leave_the_lru_time() {
    let clock = ManualClock::new(1_000_000);
    let node = start_with(|c| c.clock = clock.clone()).await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["CLIENT", "NO-EVICT", "on"]), b"+OK\r\n").await;
    assert_eq!(client_flags(&mut c).await, "e");
    c.expect(&cmd(&["CLIENT", "NO-TOUCH", "ON"]), b"+OK\r\n").await;
    assert_eq!(client_flags(&mut c).await, "eT");
    c.expect(&cmd(&["CLIENT", "NO-EVICT", "off"]), b"+OK\r\n").await;
    assert_eq!(client_flags(&mut c).await, "T");
    c.expect(&cmd(&["CLIENT", "NO-EVICT", "x"]), b"-ERR syntax error\r\n").await;
    c.expect(
        &cmd(&["CLIENT", "NO-EVICT"]),
        b"-ERR wrong number of arguments for 'client|no-evict' command\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CLIENT", "NO-TOUCH", "on", "x"]),
        b"-ERR wrong number of arguments for 'client|no-touch' command\r\n",
    )
    .await;

    let state = node.handle.node.clone();
    let last_access = |key: &str| {
        let shard = state.store.shard_of(key.as_bytes());
        let guard = state.store.lock(shard, None);
        guard.map().get(key.as_bytes()).map(|e| e.last_access_ms)
    };
    c.expect(&cmd(&["SET", "k", "v"]), b"+OK\r\n").await;
    assert_eq!(last_access("k"), Some(1_000_000), "a NO-TOUCH client's writes store new entries");
    clock.advance_ms(5_000);
    for line in ["GET k", "MGET k", "STRLEN k", "GETRANGE k 0 -1", "EXISTS k", "TTL k", "INCR n"] {
        call(&mut c, line).await;
    }
    assert_eq!(last_access("k"), Some(1_000_000), "reads in NO-TOUCH mode touched the key");
    // Inside a transaction too.
    for line in ["MULTI", "GET k"] {
        call(&mut c, line).await;
    }
    c.expect(&cmd(&["EXEC"]), b"*1\r\n$1\r\nv\r\n").await;
    assert_eq!(last_access("k"), Some(1_000_000));
    // Another client's read touches it.
    let mut other = node.raw().await;
    other.expect(&cmd(&["GET", "k"]), b"$1\r\nv\r\n").await;
    assert_eq!(last_access("k"), Some(1_005_000));
    clock.advance_ms(5_000);
    c.expect(&cmd(&["CLIENT", "NO-TOUCH", "off"]), b"+OK\r\n").await;
    assert_eq!(client_flags(&mut c).await, "N");
    c.expect(&cmd(&["GET", "k"]), b"$1\r\nv\r\n").await;
    assert_eq!(last_access("k"), Some(1_010_000));
}

#[tokio::test]
async fn command_getkeys_and_list_answer_as_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    let cases: [(&str, &[u8]); 20] = [
        ("COMMAND GETKEYS", b"-ERR wrong number of arguments for 'command|getkeys' command\r\n"),
        (
            "COMMAND GETKEYS get",
            b"-ERR wrong number of arguments for 'command|getkeys' command\r\n",
        ),
        ("COMMAND GETKEYS nosuch a", b"-ERR Invalid command specified\r\n"),
        ("COMMAND GETKEYS get a b", b"-ERR Invalid number of arguments specified for command\r\n"),
        ("COMMAND GETKEYS GET a", b"*1\r\n$1\r\na\r\n"),
        ("COMMAND GETKEYS mset a 1 b 2", b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
        ("COMMAND GETKEYS mset a 1 b", b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
        ("COMMAND GETKEYS mset a", b"-ERR Invalid number of arguments specified for command\r\n"),
        ("COMMAND GETKEYS memory usage k", b"*1\r\n$1\r\nk\r\n"),
        ("COMMAND GETKEYS memory nosuch", b"-ERR Invalid command specified\r\n"),
        (
            "COMMAND GETKEYS memory usage",
            b"-ERR Invalid number of arguments specified for command\r\n",
        ),
        ("COMMAND GETKEYS client list", b"-ERR The command has no key arguments\r\n"),
        ("COMMAND GETKEYS watch a b", b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"),
        ("COMMAND GETKEYS set k v EX 10", b"*1\r\n$1\r\nk\r\n"),
        ("COMMAND GETKEYS del a b c", b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n"),
        ("COMMAND GETKEYS scan 0", b"-ERR The command has no key arguments\r\n"),
        ("COMMAND GETKEYS config get x", b"-ERR The command has no key arguments\r\n"),
        ("COMMAND LIST FILTERBY PATTERN g?t", b"*1\r\n$3\r\nget\r\n"),
        ("COMMAND LIST FILTERBY aclcat nosuch", b"*0\r\n"),
        ("COMMAND LIST FILTERBY module x", b"*0\r\n"),
    ];
    for (line, reply) in cases {
        c.expect(&cmd(&line.split(' ').collect::<Vec<_>>()), reply).await;
    }
    for line in [
        "COMMAND LIST FILTERBY",
        "COMMAND LIST FILTERBY pattern",
        "COMMAND LIST FILTERBY foo bar",
        "COMMAND LIST x y z",
        "COMMAND LIST FILTERBY pattern get FILTERBY pattern set",
    ] {
        c.expect(&cmd(&line.split(' ').collect::<Vec<_>>()), b"-ERR syntax error\r\n").await;
    }
    let names = |value: Value| {
        let mut names: Vec<String> = value.array().iter().map(Value::text).collect();
        names.sort();
        names
    };
    // Redis lists these in its hash tables' order; the names are the same.
    let slowlog = names(call(&mut c, "COMMAND LIST FILTERBY pattern slowlog*").await);
    assert_eq!(slowlog, ["slowlog", "slowlog|get", "slowlog|help", "slowlog|len", "slowlog|reset"]);
    let transaction = names(call(&mut c, "COMMAND LIST FILTERBY aclcat TRANSACTION").await);
    assert_eq!(transaction, ["discard", "exec", "multi", "unwatch", "watch"]);
    // Every command and every subcommand, once; subcommands by their full names.
    let all = names(call(&mut c, "COMMAND LIST").await);
    let count = call(&mut c, "COMMAND COUNT").await.int() as usize;
    let subcommands = all.iter().filter(|n| n.contains('|')).count();
    assert_eq!(all.len() - subcommands, count);
    for name in ["client|no-touch", "client|reply", "config|get", "command|getkeys", "get"] {
        assert!(all.binary_search(&name.to_string()).is_ok(), "{name} in {all:?}");
    }
    let mut unique = all.clone();
    unique.dedup();
    assert_eq!(unique, all);
}

#[tokio::test]
async fn info_sections_are_chosen_as_redis_chooses_them() {
    let node = start().await;
    let mut c = node.raw().await;
    let default = [
        "# Server",
        "# Clients",
        "# Memory",
        "# Persistence",
        "# Stats",
        "# Replication",
        "# CPU",
        "# Modules",
        "# Errorstats",
        "# Cluster",
        "# Keyspace",
    ];
    assert_eq!(info_headers(&mut c, "").await, default);
    assert_eq!(info_headers(&mut c, "default").await, default);
    let mut all = default.to_vec();
    all.insert(8, "# Commandstats");
    all.insert(10, "# Latencystats");
    assert_eq!(info_headers(&mut c, "all").await, all);
    assert_eq!(info_headers(&mut c, "everything").await, all);
    assert_eq!(info_headers(&mut c, "cpu").await, ["# CPU"]);
    assert_eq!(info_headers(&mut c, "commandstats").await, ["# Commandstats"]);
    assert_eq!(info_headers(&mut c, "server clients").await, ["# Server", "# Clients"]);
    assert_eq!(info_headers(&mut c, "CPU server").await, ["# Server", "# CPU"]);
    // Sections are separated by one blank line; the reply ends with the last field's CRLF.
    c.expect(&cmd(&["INFO", "nosuch"]), b"$0\r\n\r\n").await;
    c.expect(
        &cmd(&["INFO", "cluster", "modules"]),
        b"$43\r\n# Modules\r\n\r\n# Cluster\r\ncluster_enabled:0\r\n\r\n",
    )
    .await;
    let cpu = call(&mut c, "INFO cpu").await.text();
    let fields: Vec<&str> =
        cpu.split("\r\n").filter_map(|l| l.split_once(':')).map(|f| f.0).collect();
    assert_eq!(
        fields,
        ["used_cpu_sys", "used_cpu_user", "used_cpu_sys_children", "used_cpu_user_children"]
    );
    for value in cpu.split("\r\n").filter_map(|l| l.split_once(':')).map(|f| f.1) {
        let (secs, micros) = value.split_once('.').expect("seconds.micros");
        assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "{value}");
    }
}

/// The fields a dashboard reads first have real values.
#[tokio::test]
async fn info_reports_memory_rates_and_process_figures() {
    let node = start().await;
    let mut c = node.raw().await;
    let value = "v".repeat(100_000);
    for i in 0..20 {
        c.expect(&cmd(&["SET", &format!("k{i}"), &value]), b"+OK\r\n").await;
    }
    let memory = info(&mut c, "memory").await;
    let number = |field: &str| memory[field].parse::<u64>().expect(field);
    let used = number("used_memory");
    assert!(used >= 20 * 100_000, "{memory:?}");
    assert!(number("used_memory_rss") > 0);
    assert!(number("used_memory_peak") >= used);
    assert!(number("total_system_memory") > number("used_memory_rss"));
    let ratio: f64 = memory["mem_fragmentation_ratio"].parse().unwrap();
    let expected = number("used_memory_rss") as f64 / used as f64;
    assert!((ratio - expected).abs() < 0.01, "{ratio} vs {expected}");
    assert_eq!(memory["maxmemory_policy"], "noeviction");
    // The peak stays when keys go (and CONFIG RESETSTAT leaves it too, as Redis 7.0).
    let peak = number("used_memory_peak");
    c.expect(&cmd(&["FLUSHALL"]), b"+OK\r\n").await;
    c.expect(&cmd(&["CONFIG", "RESETSTAT"]), b"+OK\r\n").await;
    let memory = info(&mut c, "memory").await;
    assert!(memory["used_memory"].parse::<u64>().unwrap() < used);
    assert_eq!(memory["used_memory_peak"].parse::<u64>().unwrap(), peak);

    let server = info(&mut c, "server").await;
    assert_eq!(server["process_id"], std::process::id().to_string());
    assert_eq!(server["tcp_port"], node.resp().port().to_string());
    assert_eq!(server["run_id"].len(), 40);
    assert_eq!(server["executable"], std::env::current_exe().unwrap().display().to_string());
    // The 100 ms sampling sees the traffic while it lasts (however slowly this machine runs it).
    let mut pinger = node.raw().await;
    for round in 0.. {
        for _ in 0..200 {
            pinger.expect(&cmd(&["PING"]), b"+PONG\r\n").await;
        }
        if info_number(&mut c, "stats", "instantaneous_ops_per_sec").await > 0 {
            break;
        }
        assert!(round < 3_000, "instantaneous_ops_per_sec stayed 0");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let stats = info(&mut c, "stats").await;
    assert!(stats["total_net_input_bytes"].parse::<u64>().unwrap() > 200 * 14);
    assert!(stats["total_net_output_bytes"].parse::<u64>().unwrap() > 200 * 7);
}

#[tokio::test]
async fn raw_bytes_in_an_error_count_under_their_first_word() {
    let node = start().await;
    let mut c = node.raw().await;
    // An unknown command's reply echoes what was sent: its code is still its first word.
    c.expect(
        &cmd_bytes(&[b"NO\xffSUCH"]),
        b"-ERR unknown command 'NO\xffSUCH', with args beginning with: \r\n",
    )
    .await;
    c.expect(
        &cmd(&["AUTH", "a", "b"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    assert_eq!(
        call(&mut c, "INFO errorstats").await.text(),
        "# Errorstats\r\nerrorstat_ERR:count=1\r\nerrorstat_WRONGPASS:count=1\r\n"
    );
}

/// INFO reads every shard: inside EXEC it takes them from the transaction, which locks them all
/// for it (as for DBSIZE), instead of locking a shard its own transaction holds.
#[tokio::test]
async fn info_runs_inside_a_transaction() {
    let node = start().await;
    let mut c = node.raw().await;
    for line in ["MULTI", "SET a 1", "INFO keyspace", "GET a"] {
        call(&mut c, line).await;
    }
    let replies = call(&mut c, "EXEC").await;
    let replies = replies.array();
    assert_eq!(replies[0], Value::Status("OK".into()));
    assert_eq!(replies[1].text(), "# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n");
    assert_eq!(replies[2].text(), "1");
    c.expect(&cmd(&["PING"]), b"+PONG\r\n").await;
}

/// INFO latencystats: a line per command called since the last reset, named as commandstats
/// names it, with p50, p99 and p99.9 in microseconds to 3 decimals as Redis 7 prints them
/// (`latency_percentiles_usec_get:p50=1.003,p99=3.007,p99.9=5.023` from redis-server 7.0.15),
/// ordered, and gone after CONFIG RESETSTAT.
#[tokio::test]
async fn latencystats_reports_each_commands_percentiles_since_the_last_reset() {
    let node = start().await;
    let mut c = node.raw().await;
    for _ in 0..50 {
        call(&mut c, "SET k v").await;
        call(&mut c, "GET k").await;
    }
    call(&mut c, "CLIENT ID").await;
    // A slow call: p99.9 of DEBUG-less commands is reached with a big MSET, a few ms long.
    let big: Vec<String> = (0..20_000).flat_map(|i| [format!("key{i}"), "v".into()]).collect();
    let mut args = vec!["MSET"];
    args.extend(big.iter().map(String::as_str));
    c.stream.write_all(&cmd(&args)).await.expect("write");
    read_reply(&mut c).await;
    let fields = info(&mut c, "latencystats").await;
    for name in ["set", "get", "client|id", "mset"] {
        let line = fields
            .get(&format!("latency_percentiles_usec_{name}"))
            .unwrap_or_else(|| panic!("no line for {name}: {fields:?}"));
        let values: Vec<f64> = line
            .split(',')
            .zip(["p50=", "p99=", "p99.9="])
            .map(|(part, label)| {
                let number = part.strip_prefix(label).unwrap_or_else(|| panic!("{line}"));
                assert_eq!(number.split_once('.').map(|(_, d)| d.len()), Some(3), "{line}");
                number.parse().expect("number")
            })
            .collect();
        assert_eq!(values.len(), 3, "{line}");
        assert!(values[0] > 0.0 && values[0] <= values[1] && values[1] <= values[2], "{line}");
    }
    // The MSET of 20,000 keys took longer than a GET's median.
    let p50 = |name: &str| -> f64 {
        let line = &fields[&format!("latency_percentiles_usec_{name}")];
        line.split(',').next().and_then(|p| p.strip_prefix("p50=")).unwrap().parse().unwrap()
    };
    assert!(p50("mset") > p50("get"), "{fields:?}");
    assert!(!fields.contains_key("latency_percentiles_usec_del"), "never called");
    call(&mut c, "CONFIG RESETSTAT").await;
    let fields = info(&mut c, "latencystats").await;
    let names: Vec<&String> = fields.keys().collect();
    // Only INFO itself (and CONFIG RESETSTAT's own call, counted after the reset) remain.
    assert!(
        names.iter().all(|n| n.ends_with("_info") || n.ends_with("_config|resetstat")),
        "{names:?}"
    );
}
