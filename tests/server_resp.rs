//! Byte-exact RESP replies of the cache node: commands, Redis 7 error strings, pipelining,
//! protocol errors, RESP3, AUTH, TTLs under a controlled clock, maxmemory.

mod server_support;

use mapcache::server::EvictionPolicy;
use mapcache::server::clock::ManualClock;
use server_support::{cmd, cmd_bytes, start, start_with};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn inline_and_multibulk_ping_answer_pong() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(b"PING\r\n", b"+PONG\r\n").await;
    c.expect(&cmd(&["PING"]), b"+PONG\r\n").await;
    c.expect(&cmd(&["ping", "hi"]), b"$2\r\nhi\r\n").await;
    c.expect(&cmd(&["ECHO", "x y"]), b"$3\r\nx y\r\n").await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let node = start().await;
    let mut c = node.raw().await;
    let mut batch = Vec::new();
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        batch.extend(cmd(&["SET", k, v]));
    }
    batch.extend(cmd(&["MGET", "a", "b", "c", "missing"]));
    batch.extend(cmd(&["INCR", "a"]));
    batch.extend(b"PING\r\n");
    c.expect(
        &batch,
        b"+OK\r\n+OK\r\n+OK\r\n*4\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n$-1\r\n:2\r\n+PONG\r\n",
    )
    .await;
}

/// A large request that arrives in many small writes (with Nagle off and pauses between them, so
/// the server most likely reads it in many pieces, each time resuming the frame it has) runs
/// once, whole, and the request that shares its last write runs after it. Whether the pieces
/// were resumed is the parser's unit tests' business; this checks the connection keeps its
/// parser and buffer together across reads.
#[tokio::test]
async fn a_request_in_many_small_writes_runs_once_and_whole() {
    let node = start().await;
    let mut c = node.raw().await;
    c.stream.set_nodelay(true).unwrap();
    let pairs: Vec<(String, String)> =
        (0..2000).map(|i| (format!("slow:{i}"), format!("value-{i}"))).collect();
    let mut args = vec!["MSET"];
    for (k, v) in &pairs {
        args.extend([k.as_str(), v.as_str()]);
    }
    let mut wire = cmd(&args);
    wire.extend(cmd(&["GET", "slow:1999"]));
    for (i, piece) in wire.chunks(61).enumerate() {
        c.stream.write_all(piece).await.unwrap();
        if i % 8 == 0 {
            // Let the server read what is there, so the request arrives in many reads.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }
    let expected = b"+OK\r\n$10\r\nvalue-1999\r\n";
    assert_eq!(c.read_exact(expected.len()).await, expected);
    let mut r = node.redis().await;
    let keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    let got: Vec<String> = redis::cmd("MGET").arg(&keys).query_async(&mut r).await.unwrap();
    let want: Vec<String> = pairs.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(got, want);
    let total: u64 = redis::cmd("DBSIZE").query_async(&mut r).await.unwrap();
    assert_eq!(total, 2000);
}

/// The connection parses up to 32 commands ahead of executing them (to prefetch their keys).
/// None of that shows: in one write of many more commands, an AUTH in the middle lifts the
/// unauthenticated limits for the very next command (a 20 KB value, over the 16 KB pre-AUTH
/// bulk limit), replies stay in order, and a protocol error after them is answered last.
#[tokio::test]
async fn long_pipelines_run_in_order_across_auth_and_end_at_a_protocol_error() {
    let node = start_with(|c| c.requirepass = Some("s3cret".into())).await;
    let big = "v".repeat(20 * 1024);
    let mut request = cmd(&["GET", "k"]);
    request.extend(cmd(&["AUTH", "s3cret"]));
    request.extend(cmd(&["SET", "big", &big]));
    let mut expected = b"-NOAUTH Authentication required.\r\n+OK\r\n+OK\r\n".to_vec();
    for i in 0..100 {
        let (key, value) = (format!("k{i}"), format!("{}", i * 7));
        request.extend(cmd(&["SET", &key, &value]));
        request.extend(cmd(&["INCR", &key]));
        expected.extend(format!("+OK\r\n:{}\r\n", i * 7 + 1).into_bytes());
    }
    request.extend(cmd(&["STRLEN", "big"]));
    expected.extend(b":20480\r\n");
    request.extend(b"*1\r\n$-5\r\n");
    expected.extend(b"-ERR Protocol error: invalid bulk length\r\n");
    let mut c = node.raw().await;
    let got = c.send_until_closed(&request).await;
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
}

/// QUIT in the middle of a long pipeline: everything before it runs and is answered, nothing
/// after it runs.
#[tokio::test]
async fn quit_in_a_long_pipeline_stops_what_follows() {
    let node = start().await;
    let mut request = Vec::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        request.extend(cmd(&["SET", &format!("q{i}"), "1"]));
        expected.extend(b"+OK\r\n");
    }
    request.extend(cmd(&["QUIT"]));
    expected.extend(b"+OK\r\n");
    request.extend(cmd(&["SET", "after-quit", "1"]));
    let mut c = node.raw().await;
    let got = c.send_until_closed(&request).await;
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected));
    let mut check = node.raw().await;
    check.expect(&cmd(&["EXISTS", "q39", "after-quit"]), b":1\r\n").await;
}

#[tokio::test]
async fn error_strings_match_redis_byte_for_byte() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["GET"]), b"-ERR wrong number of arguments for 'get' command\r\n").await;
    c.expect(&cmd(&["SET", "k"]), b"-ERR wrong number of arguments for 'set' command\r\n").await;
    c.expect(
        &cmd(&["FOO", "a", "b"]),
        b"-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n",
    )
    .await;
    c.expect(&cmd(&["NOPE"]), b"-ERR unknown command 'NOPE', with args beginning with: \r\n").await;
    c.expect(&cmd(&["SET", "k", "v", "BOGUS"]), b"-ERR syntax error\r\n").await;
    c.expect(&cmd(&["SET", "k", "v", "NX", "XX"]), b"-ERR syntax error\r\n").await;
    c.expect(&cmd(&["SET", "k", "v", "EX", "0"]), b"-ERR invalid expire time in 'set' command\r\n")
        .await;
    c.expect(
        &cmd(&["SET", "k", "v", "EX", "ten"]),
        b"-ERR value is not an integer or out of range\r\n",
    )
    .await;
    c.expect(&cmd(&["SETEX", "k", "-1", "v"]), b"-ERR invalid expire time in 'setex' command\r\n")
        .await;
    c.expect(&cmd(&["SET", "n", "abc"]), b"+OK\r\n").await;
    c.expect(&cmd(&["INCR", "n"]), b"-ERR value is not an integer or out of range\r\n").await;
    c.expect(&cmd(&["SET", "n", "9223372036854775807"]), b"+OK\r\n").await;
    c.expect(&cmd(&["INCR", "n"]), b"-ERR increment or decrement would overflow\r\n").await;
    c.expect(&cmd(&["DECRBY", "n", "-9223372036854775808"]), b"-ERR decrement would overflow\r\n")
        .await;
    c.expect(&cmd(&["INCRBYFLOAT", "n", "x"]), b"-ERR value is not a valid float\r\n").await;
    c.expect(&cmd(&["SELECT", "1"]), b"-ERR DB index is out of range\r\n").await;
    c.expect(&cmd(&["SELECT", "0"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SETRANGE", "k", "-1", "x"]), b"-ERR offset is out of range\r\n").await;
    c.expect(
        &cmd(&["AUTH", "pw"]),
        b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n",
    )
    .await;
    c.expect(&cmd(&["CONFIG", "NOPE"]), b"-ERR unknown subcommand 'NOPE'. Try CONFIG HELP.\r\n")
        .await;
    c.expect(
        &cmd(&["CONFIG", "GET"]),
        b"-ERR wrong number of arguments for 'config|get' command\r\n",
    )
    .await;
    c.expect(
        &cmd(&["MSET", "a", "1", "b"]),
        b"-ERR wrong number of arguments for 'mset' command\r\n",
    )
    .await;
    c.expect(&cmd(&["SCAN", "x"]), b"-ERR invalid cursor\r\n").await;
    c.expect(&cmd(&["SCAN", "0", "COUNT", "0"]), b"-ERR syntax error\r\n").await;
    c.expect(
        &cmd(&["EXPIRE", "k", "10", "NX", "XX"]),
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
    )
    .await;
    // The connection still works after every error.
    c.expect(b"PING\r\n", b"+PONG\r\n").await;
}

#[tokio::test]
async fn set_options_follow_redis_semantics() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["SET", "k", "v1", "XX"]), b"$-1\r\n").await;
    c.expect(&cmd(&["SET", "k", "v1", "NX"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SET", "k", "v2", "NX"]), b"$-1\r\n").await;
    c.expect(&cmd(&["SET", "k", "v2", "XX", "GET"]), b"$2\r\nv1\r\n").await;
    c.expect(&cmd(&["SET", "k", "v3", "NX", "GET"]), b"$2\r\nv2\r\n").await;
    c.expect(&cmd(&["SET", "k", "v3", "EX", "100"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SET", "k", "v4", "KEEPTTL"]), b"+OK\r\n").await;
    c.expect(&cmd(&["TTL", "k"]), b":100\r\n").await;
    c.expect(&cmd(&["SET", "k", "v5"]), b"+OK\r\n").await;
    c.expect(&cmd(&["TTL", "k"]), b":-1\r\n").await;
    c.expect(&cmd(&["TTL", "missing"]), b":-2\r\n").await;
    c.expect(&cmd(&["SETNX", "k", "x"]), b":0\r\n").await;
    c.expect(&cmd(&["GETSET", "k", "v6"]), b"$2\r\nv5\r\n").await;
    c.expect(&cmd(&["GETDEL", "k"]), b"$2\r\nv6\r\n").await;
    c.expect(&cmd(&["EXISTS", "k"]), b":0\r\n").await;
    c.expect(&cmd(&["TYPE", "k"]), b"+none\r\n").await;
}

#[tokio::test]
async fn string_commands_reply_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["APPEND", "s", "Hello"]), b":5\r\n").await;
    c.expect(&cmd(&["APPEND", "s", " World"]), b":11\r\n").await;
    c.expect(&cmd(&["STRLEN", "s"]), b":11\r\n").await;
    c.expect(&cmd(&["GETRANGE", "s", "0", "4"]), b"$5\r\nHello\r\n").await;
    c.expect(&cmd(&["GETRANGE", "s", "-5", "-1"]), b"$5\r\nWorld\r\n").await;
    c.expect(&cmd(&["GETRANGE", "s", "5", "2"]), b"$0\r\n\r\n").await;
    c.expect(&cmd(&["SETRANGE", "s", "6", "Redis"]), b":11\r\n").await;
    c.expect(&cmd(&["GET", "s"]), b"$11\r\nHello Redis\r\n").await;
    c.expect(&cmd(&["SETRANGE", "z", "3", "ab"]), b":5\r\n").await;
    c.expect(&cmd(&["GET", "z"]), b"$5\r\n\x00\x00\x00ab\r\n").await;
    c.expect(&cmd(&["INCRBY", "n", "10"]), b":10\r\n").await;
    c.expect(&cmd(&["DECRBY", "n", "3"]), b":7\r\n").await;
    c.expect(&cmd(&["DECR", "n"]), b":6\r\n").await;
    c.expect(&cmd(&["INCRBYFLOAT", "f", "10.5"]), b"$4\r\n10.5\r\n").await;
    c.expect(&cmd(&["INCRBYFLOAT", "f", "0.1"]), b"$4\r\n10.6\r\n").await;
    c.expect(&cmd(&["INCRBYFLOAT", "f", "-5.6"]), b"$1\r\n5\r\n").await;
    c.expect(&cmd(&["MSETNX", "n", "1", "fresh", "2"]), b":0\r\n").await;
    c.expect(&cmd(&["EXISTS", "fresh"]), b":0\r\n").await;
    c.expect(&cmd(&["MSETNX", "fresh", "1", "fresh2", "2"]), b":1\r\n").await;
    c.expect(&cmd(&["DEL", "fresh", "fresh2", "nothere"]), b":2\r\n").await;
    c.expect(&cmd(&["EXISTS", "s", "s", "z"]), b":3\r\n").await;
    c.expect(&cmd(&["DBSIZE"]), b":4\r\n").await;
    c.expect(&cmd(&["FLUSHDB"]), b"+OK\r\n").await;
    c.expect(&cmd(&["DBSIZE"]), b":0\r\n").await;
    c.expect(&cmd(&["RANDOMKEY"]), b"$-1\r\n").await;
}

#[tokio::test]
async fn keys_and_scan_match_patterns() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["MSET", "user:1", "a", "user:2", "b", "session:1", "c"]), b"+OK\r\n").await;
    c.expect(&cmd(&["KEYS", "session:*"]), b"*1\r\n$9\r\nsession:1\r\n").await;
    c.expect(
        &cmd(&["SCAN", "0", "MATCH", "sess*", "COUNT", "1000"]),
        b"*2\r\n$1\r\n0\r\n*1\r\n$9\r\nsession:1\r\n",
    )
    .await;
    c.expect(&cmd(&["SCAN", "0", "TYPE", "hash", "COUNT", "1000"]), b"*2\r\n$1\r\n0\r\n*0\r\n")
        .await;
}

#[tokio::test]
async fn resp3_after_hello_3_changes_nil_and_maps() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["GET", "missing"]), b"$-1\r\n").await;
    c.stream_write_hello3().await;
    c.expect(&cmd(&["GET", "missing"]), b"_\r\n").await;
    c.expect(&cmd(&["CONFIG", "GET", "maxmemory"]), b"%1\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n").await;
    c.expect(&cmd(&["HELLO", "4"]), b"-NOPROTO unsupported protocol version\r\n").await;
}

trait Hello3 {
    async fn stream_write_hello3(&mut self);
}

impl Hello3 for server_support::Raw {
    async fn stream_write_hello3(&mut self) {
        let expected_prefix = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$5\r\n7.2.4\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:";
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(&cmd(&["HELLO", "3"])).await.expect("write");
        let got = self.read_exact(expected_prefix.len()).await;
        assert_eq!(&got[..], &expected_prefix[..]);
        // id digits, then mode/role/modules.
        let mut rest = Vec::new();
        let tail = b"$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
        while !rest.ends_with(tail) {
            rest.extend(self.read_exact(1).await);
            assert!(rest.len() < 200, "unexpected HELLO tail {:?}", String::from_utf8_lossy(&rest));
        }
    }
}

#[tokio::test]
async fn protocol_errors_close_only_the_offending_connection() {
    let node = start().await;
    let cases: &[(&[u8], &[u8])] = &[
        (b"*1\r\n$-5\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$536870913\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$abc\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*2000000\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n*1\r\n$1\r\na\r\n", b"-ERR Protocol error: expected '$', got '*'\r\n"),
        (b"*1\r\n$3\r\nGETxx", b"-ERR Protocol error: expected CRLF after bulk string\r\n"),
        (b"SET k \"unbalanced\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
    ];
    let mut bystander = node.raw().await;
    bystander.expect(&cmd(&["SET", "safe", "1"]), b"+OK\r\n").await;
    for (request, expected) in cases {
        let mut c = node.raw().await;
        let got = c.send_until_closed(request).await;
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected));
    }
    // Binary garbage and an overlong inline line.
    let mut c = node.raw().await;
    let got = c.send_until_closed(&vec![b'x'; 70 * 1024]).await;
    assert_eq!(&got[..], b"-ERR Protocol error: too big inline request\r\n");
    bystander.expect(&cmd(&["GET", "safe"]), b"$1\r\n1\r\n").await;
}

/// `bytes` written with non-printable bytes escaped, for readable assertion failures.
fn shown(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Real binary garbage (non-ASCII bytes, NULs, 0xff, RESP type bytes followed by junk) gets the
/// exact `-ERR Protocol error: ...` Redis sends, with the offending byte echoed raw, and the
/// connection closes; a client connected meanwhile is not affected.
#[tokio::test]
async fn binary_garbage_gets_redis_protocol_errors_and_closes_only_its_connection() {
    let node = start().await;
    let junk: Vec<u8> = (0..70 * 1024).map(|i| 0x80 | (i % 0x7f) as u8).collect();
    let mut star_junk = b"*".to_vec();
    star_junk.extend(&junk);
    let mut bulk_junk = b"*1\r\n$".to_vec();
    bulk_junk.extend(&junk);
    let cases: Vec<(Vec<u8>, &[u8])> = vec![
        (b"*\xff\r\n".to_vec(), b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\x00\r\n".to_vec(), b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n\xff\x00junk\r\n".to_vec(), b"-ERR Protocol error: expected '$', got '\xff'\r\n"),
        (b"*1\r\n\x00\x00\r\n".to_vec(), b"-ERR Protocol error: expected '$', got '\x00'\r\n"),
        (b"*1\r\n:1\r\n".to_vec(), b"-ERR Protocol error: expected '$', got ':'\r\n"),
        (
            b"*2\r\n$3\r\nGET\r\n+OK\xfe\r\n".to_vec(),
            b"-ERR Protocol error: expected '$', got '+'\r\n",
        ),
        (b"*1\r\n$\xff\xfe\r\n".to_vec(), b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$1\x00\r\n".to_vec(), b"-ERR Protocol error: invalid bulk length\r\n"),
        (
            b"\xff\xfe \"\x01\x02\r\n".to_vec(),
            b"-ERR Protocol error: unbalanced quotes in request\r\n",
        ),
        (junk.clone(), b"-ERR Protocol error: too big inline request\r\n"),
        (star_junk, b"-ERR Protocol error: too big mbulk count string\r\n"),
        (bulk_junk, b"-ERR Protocol error: too big bulk count string\r\n"),
    ];
    let mut bystander = node.raw().await;
    bystander.expect(&cmd(&["SET", "safe", "1"]), b"+OK\r\n").await;
    for (request, expected) in &cases {
        let mut c = node.raw().await;
        let got = c.send_until_closed(request).await;
        assert_eq!(
            shown(&got),
            shown(expected),
            "request {}",
            shown(&request[..40.min(request.len())])
        );
    }
    bystander.expect(&cmd(&["GET", "safe"]), b"$1\r\n1\r\n").await;
}

/// Redis echoes an unknown command's name and arguments as raw bytes (not UTF-8 text): a
/// non-UTF-8 byte goes out as it came, C's `%s` stops at a NUL, `\r` and `\n` become spaces. It
/// is an error reply, not a protocol error: the connection stays open.
#[tokio::test]
async fn unknown_command_echoes_its_raw_bytes_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    let request = cmd_bytes(&[b"\xffbad\xc3", b"\xfe\x80", b"a\r\nb", b"x\x00hidden", b""]);
    c.stream.write_all(&request).await.expect("write");
    let expected: &[u8] = b"-ERR unknown command '\xffbad\xc3', with args beginning with: \
        '\xfe\x80' 'a  b' 'x' '' \r\n";
    assert_eq!(shown(&c.read_exact(expected.len()).await), shown(expected));
    // Inline: the line is a C string, so a NUL ends it.
    c.stream.write_all(b"\xff\x00\x01 junk\r\n").await.expect("write");
    let expected: &[u8] = b"-ERR unknown command '\xff', with args beginning with: \r\n";
    assert_eq!(shown(&c.read_exact(expected.len()).await), shown(expected));
    c.expect(&cmd(&["PING"]), b"+PONG\r\n").await;
}

#[tokio::test]
async fn auth_is_required_when_a_password_is_set() {
    let node = start_with(|c| c.requirepass = Some("s3cret".into())).await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["GET", "k"]), b"-NOAUTH Authentication required.\r\n").await;
    c.expect(
        &cmd(&["AUTH", "wrong"]),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n",
    )
    .await;
    c.expect(&cmd(&["AUTH", "default", "s3cret"]), b"+OK\r\n").await;
    c.expect(&cmd(&["GET", "k"]), b"$-1\r\n").await;
}

/// Before AUTH, Redis 7 refuses more than 10 arguments and bulks over 16 KB with its own words
/// (`processMultibulkBuffer`), and closes the connection; after AUTH the same requests run.
#[tokio::test]
async fn unauthenticated_clients_get_redis_pre_auth_protocol_errors() {
    let node = start_with(|c| c.requirepass = Some("s3cret".into())).await;
    let big = "v".repeat(16 * 1024 + 1);
    let eleven: Vec<&str> = std::iter::once("MSET").chain(["k"; 10]).collect();
    let cases: &[(Vec<u8>, &[u8])] = &[
        (cmd(&eleven), b"-ERR Protocol error: unauthenticated multibulk length\r\n"),
        (b"*100\r\n".to_vec(), b"-ERR Protocol error: unauthenticated multibulk length\r\n"),
        (cmd(&["SET", "k", &big]), b"-ERR Protocol error: unauthenticated bulk length\r\n"),
        (b"*1\r\n$100000000\r\n".to_vec(), b"-ERR Protocol error: unauthenticated bulk length\r\n"),
        (b"*1\r\n$-1\r\n".to_vec(), b"-ERR Protocol error: invalid bulk length\r\n"),
    ];
    for (request, expected) in cases {
        let mut c = node.raw().await;
        let got = c.send_until_closed(request).await;
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected));
    }
    let mut c = node.raw().await;
    c.expect(&cmd(&["AUTH", "s3cret"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SET", "k", &big]), b"+OK\r\n").await;
    let mut mset: Vec<String> = vec!["MSET".into()];
    for i in 0..6 {
        mset.extend([format!("k{i}"), format!("{i}")]);
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    c.expect(&cmd(&mset), b"+OK\r\n").await;
}

#[tokio::test]
async fn ttls_follow_the_injected_clock() {
    let clock = ManualClock::new(1_000_000);
    let node = start_with({
        let clock = clock.clone();
        move |c| c.clock = clock
    })
    .await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["SET", "k", "v", "EX", "10"]), b"+OK\r\n").await;
    c.expect(&cmd(&["PSETEX", "p", "1500", "v"]), b"+OK\r\n").await;
    c.expect(&cmd(&["TTL", "k"]), b":10\r\n").await;
    clock.advance_ms(9_400);
    c.expect(&cmd(&["TTL", "k"]), b":1\r\n").await;
    c.expect(&cmd(&["PTTL", "k"]), b":600\r\n").await;
    c.expect(&cmd(&["GET", "p"]), b"$-1\r\n").await;
    c.expect(&cmd(&["PEXPIRETIME", "k"]), b":1010000\r\n").await;
    clock.advance_ms(600);
    c.expect(&cmd(&["GET", "k"]), b"$-1\r\n").await;
    c.expect(&cmd(&["TTL", "k"]), b":-2\r\n").await;
    c.expect(&cmd(&["SET", "e", "v"]), b"+OK\r\n").await;
    c.expect(&cmd(&["EXPIRE", "e", "5", "XX"]), b":0\r\n").await;
    c.expect(&cmd(&["EXPIRE", "e", "5"]), b":1\r\n").await;
    c.expect(&cmd(&["EXPIRE", "e", "3", "GT"]), b":0\r\n").await;
    c.expect(&cmd(&["EXPIRE", "e", "3", "LT"]), b":1\r\n").await;
    c.expect(&cmd(&["PERSIST", "e"]), b":1\r\n").await;
    c.expect(&cmd(&["TTL", "e"]), b":-1\r\n").await;
    c.expect(&cmd(&["EXPIRE", "e", "-1"]), b":1\r\n").await;
    c.expect(&cmd(&["EXISTS", "e"]), b":0\r\n").await;
    c.expect(&cmd(&["SET", "g", "v"]), b"+OK\r\n").await;
    c.expect(&cmd(&["GETEX", "g", "PX", "200"]), b"$1\r\nv\r\n").await;
    c.expect(&cmd(&["PTTL", "g"]), b":200\r\n").await;
    c.expect(&cmd(&["GETEX", "g", "PERSIST"]), b"$1\r\nv\r\n").await;
    c.expect(&cmd(&["PTTL", "g"]), b":-1\r\n").await;
    c.expect(&cmd(&["SET", "at", "v", "PXAT", "1009999"]), b"+OK\r\n").await;
    c.expect(&cmd(&["EXISTS", "at"]), b":0\r\n").await;
    assert_eq!(node.handle.node.store.expired_total.get(), 2, "k and p expired lazily");
    // Every command above that gave, changed or took a TTL kept the TTL index exact.
    assert_eq!(node.handle.node.store.check_ttl_index(), Ok(()));
}

/// A node on a manual clock at 1,000,000 ms, for active-expiry tests.
async fn start_on_manual_clock() -> (server_support::TestNode, std::sync::Arc<ManualClock>) {
    let clock = ManualClock::new(1_000_000);
    let node = start_with({
        let clock = clock.clone();
        move |c| c.clock = clock
    })
    .await;
    (node, clock)
}

/// Waits (up to 20 s) for active expiry to bring the node down to `keys` keys, then checks that
/// it did, and how many keys it expired.
async fn assert_actively_expired_down_to(
    node: &server_support::TestNode,
    keys: usize,
    expired: u64,
) {
    let store = &node.handle.node.store;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.len(None) > keys && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(store.len(None), keys);
    assert_eq!(store.expired_total.get(), expired);
}

/// An expired key is removed from its shard's engine map like a DEL: its slot becomes an
/// engine tombstone (`emptyOne`, where a live entry follows it on its bucket's path), and
/// `/v1/stats` counts it. Keys with and without a TTL are written alternately, so most expired
/// slots sit before a live one; the background tick (and with it active expiry) is kept off, so
/// every expiry here is a lazy one, by GET.
#[tokio::test]
async fn expired_keys_become_engine_tombstones_counted_in_stats() {
    let clock = ManualClock::new(1_000_000);
    let node = start_with({
        let clock = clock.clone();
        move |c| {
            c.clock = clock;
            c.maintenance_interval = std::time::Duration::from_secs(3600);
        }
    })
    .await;
    let mut c = node.raw().await;
    for i in 0..1000 {
        c.expect(&cmd(&["SET", &format!("t{i}"), "v", "PX", "100"]), b"+OK\r\n").await;
        c.expect(&cmd(&["SET", &format!("k{i}"), "v"]), b"+OK\r\n").await;
    }
    let (status, before) = server_support::get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!(
        (status, before["keys"].as_u64(), before["keys_with_ttl"].as_u64()),
        (200, Some(2000), Some(1000))
    );
    let tombstones_before = before["tombstones"].as_u64().expect("tombstones");
    clock.advance_ms(1_000);
    for i in 0..1000 {
        c.expect(&cmd(&["GET", &format!("t{i}")]), b"$-1\r\n").await;
    }
    let (_, after) = server_support::get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!((after["keys"].as_u64(), after["keys_with_ttl"].as_u64()), (Some(1000), Some(0)));
    let tombstones = after["tombstones"].as_u64().expect("tombstones");
    assert!(
        tombstones >= tombstones_before + 250,
        "1000 expired keys left only {} new tombstones",
        tombstones - tombstones_before
    );
    let shard_sum: u64 = after["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["tombstones"].as_u64().expect("n"))
        .sum();
    assert_eq!(shard_sum, tombstones);
    let ratio = after["tombstone_ratio"].as_f64().expect("ratio");
    assert!((ratio - tombstones as f64 / (1000 + tombstones) as f64).abs() < 1e-9);
    assert_eq!(node.handle.node.store.expired_total.get(), 1000);
}

#[tokio::test]
async fn active_expiry_removes_keys_nobody_reads() {
    let (node, clock) = start_on_manual_clock().await;
    let mut c = node.raw().await;
    for i in 0..200 {
        c.expect(&cmd(&["SET", &format!("t{i}"), "v", "PX", "100"]), b"+OK\r\n").await;
    }
    c.expect(&cmd(&["SET", "keep", "v"]), b"+OK\r\n").await;
    clock.advance_ms(1_000);
    assert_actively_expired_down_to(&node, 1, 200).await;
}

/// Active expiry skips shards that never held a key with a TTL; a TTL given later to a stored
/// key (EXPIRE, GETEX) must still make its shard a candidate.
#[tokio::test]
async fn active_expiry_finds_ttls_given_by_expire_and_getex() {
    let (node, clock) = start_on_manual_clock().await;
    let mut c = node.raw().await;
    for i in 0..50 {
        c.expect(&cmd(&["SET", &format!("e{i}"), "v"]), b"+OK\r\n").await;
        c.expect(&cmd(&["SET", &format!("g{i}"), "v"]), b"+OK\r\n").await;
    }
    c.expect(&cmd(&["SET", "keep", "v"]), b"+OK\r\n").await;
    for i in 0..50 {
        c.expect(&cmd(&["PEXPIRE", &format!("e{i}"), "100"]), b":1\r\n").await;
        c.expect(&cmd(&["GETEX", &format!("g{i}"), "PX", "100"]), b"$1\r\nv\r\n").await;
    }
    clock.advance_ms(1_000);
    assert_actively_expired_down_to(&node, 1, 100).await;
}

/// The keyspace line of INFO.
async fn info_keyspace(c: &mut redis::aio::MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO").arg("keyspace").query_async(c).await.expect("INFO");
    info.lines().find(|l| l.starts_with("db0:")).unwrap_or_default().to_string()
}

/// Active expiry samples each shard's TTL index (Redis's `expires` dict), not all of its keys:
/// 30 expired keys among 50,000 without a TTL go within a few ticks. Sampling all keys, each of
/// them turns up in about 1 round in 150 (20 samples among ~3,100 keys a shard, one round every
/// 100 ms), so the last of the 30 would take about a minute.
#[tokio::test]
async fn active_expiry_finds_a_few_keys_with_a_ttl_among_many_without() {
    let (node, clock) = start_on_manual_clock().await;
    let mut c = node.redis().await;
    let mut pipe = redis::pipe();
    for i in 0..50_000 {
        pipe.cmd("SET").arg(format!("keep{i}")).arg("v").ignore();
    }
    for i in 0..30 {
        pipe.cmd("SET").arg(format!("ttl{i}")).arg("v").arg("PX").arg(100).ignore();
    }
    pipe.query_async::<()>(&mut c).await.expect("pipeline");
    let before = info_keyspace(&mut c).await;
    assert!(before.starts_with("db0:keys=50030,expires=30,avg_ttl="), "{before}");
    clock.advance_ms(1_000);
    assert_actively_expired_down_to(&node, 50_000, 30).await;
    assert_eq!(info_keyspace(&mut c).await, "db0:keys=50000,expires=0,avg_ttl=0");
    assert_eq!(node.handle.node.store.check_ttl_index(), Ok(()));
}

#[tokio::test]
async fn noeviction_refuses_writes_past_maxmemory_with_redis_oom_error() {
    let node = start_with(|c| c.maxmemory = 64 * 1024).await;
    let mut c = node.raw().await;
    let value = "x".repeat(1000);
    let mut refused = false;
    for i in 0..200 {
        let request = cmd(&["SET", &format!("k{i}"), &value]);
        use tokio::io::AsyncWriteExt;
        c.stream.write_all(&request).await.expect("write");
        let first = c.read_exact(1).await;
        if first[0] == b'-' {
            let rest = b"OOM command not allowed when used memory > 'maxmemory'.\r\n";
            assert_eq!(c.read_exact(rest.len()).await, rest.to_vec());
            refused = true;
            break;
        }
        assert_eq!(c.read_exact(4).await, b"OK\r\n".to_vec());
    }
    assert!(
        refused,
        "writes past maxmemory were refused; used {}",
        node.handle.node.store.used_memory()
    );
    let stats = node.handle.node.stats(None);
    assert!(
        stats.memory_bytes <= 64 * 1024,
        "used {} tables {} phase {:?}",
        stats.memory_bytes,
        stats.bytes_allocated,
        stats.shards.iter().map(|s| (s.engine.bytes_allocated, s.engine.phase)).collect::<Vec<_>>()
    );
    // Reads and deletes still work.
    c.expect(&cmd(&["DEL", "k0"]), b":1\r\n").await;
    c.expect(&cmd(&["GET", "k0"]), b"$-1\r\n").await;
}

#[tokio::test]
async fn allkeys_lru_stays_under_maxmemory_and_counts_evictions() {
    let node = start_with(|c| {
        c.maxmemory = 256 * 1024;
        c.eviction_policy = EvictionPolicy::AllkeysLru;
    })
    .await;
    let mut c = node.raw().await;
    let value = "y".repeat(500);
    for i in 0..2000 {
        c.expect(&cmd(&["SET", &format!("k{i}"), &value]), b"+OK\r\n").await;
    }
    let state = &node.handle.node;
    assert!(state.store.used_memory() <= 256 * 1024, "used {}", state.store.used_memory());
    assert!(state.store.evicted_total.get() > 0);
    assert_eq!(state.store.len(None) as u64 + state.store.evicted_total.get(), 2000);
}

const OOM: &[u8] = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";

/// SETRANGE pads with zeros up to its offset: what it adds is not in its arguments, and the room
/// made before it runs is what it would really add. Under noeviction a SETRANGE past the limit is
/// refused before anything is allocated (on a new key and on an existing one), a SETRANGE over
/// proto-max-bulk-len keeps Redis's own error, and one that fits still works.
#[tokio::test]
async fn setrange_reserves_its_padding_before_allocating_it() {
    const LIMIT: usize = 1024 * 1024;
    let node = start_with(|c| c.maxmemory = LIMIT as u64).await;
    let store = &node.handle.node.store;
    let mut c = node.raw().await;
    for offset in ["4000000", "500000000"] {
        c.expect(&cmd(&["SETRANGE", "big", offset, "x"]), OOM).await;
        c.expect(&cmd(&["EXISTS", "big"]), b":0\r\n").await;
        assert!(store.used_memory() <= LIMIT, "used {}", store.used_memory());
    }
    c.expect(&cmd(&["SET", "small", "abc"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SETRANGE", "small", "4000000", "x"]), OOM).await;
    c.expect(&cmd(&["GET", "small"]), b"$3\r\nabc\r\n").await;
    // Rewriting bytes inside the value adds nothing and is not refused, even at the limit.
    c.expect(&cmd(&["SETRANGE", "small", "1", "Z"]), b":3\r\n").await;
    c.expect(
        &cmd(&["SETRANGE", "small", "536870911", "xy"]),
        b"-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n",
    )
    .await;
    c.expect(&cmd(&["SETRANGE", "padded", "100000", "x"]), b":100001\r\n").await;
    assert!(store.used_memory() <= LIMIT, "used {}", store.used_memory());
}

/// With an eviction policy, a SETRANGE that pads past the limit evicts enough keys first: the
/// write succeeds and the accounted memory stays under maxmemory.
#[tokio::test]
async fn setrange_evicts_enough_for_its_padding() {
    const LIMIT: usize = 1024 * 1024;
    let node = start_with(|c| {
        c.maxmemory = LIMIT as u64;
        c.eviction_policy = EvictionPolicy::AllkeysRandom;
    })
    .await;
    let store = &node.handle.node.store;
    let mut c = node.raw().await;
    let value = "v".repeat(1000);
    for i in 0..600 {
        c.expect(&cmd(&["SET", &format!("k{i}"), &value]), b"+OK\r\n").await;
    }
    assert_eq!(store.evicted_total.get(), 0);
    c.expect(&cmd(&["SETRANGE", "big", "600000", "x"]), b":600001\r\n").await;
    assert!(store.used_memory() <= LIMIT, "used {}", store.used_memory());
    assert!(store.evicted_total.get() > 0);
    c.expect(&cmd(&["STRLEN", "big"]), b":600001\r\n").await;
}

/// Reads one whole RESP reply from `c`, whatever its length.
async fn read_reply(c: &mut server_support::Raw) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pending = 1usize;
    while pending > 0 {
        pending -= 1;
        let start = out.len();
        while !out.ends_with(b"\r\n") || out.len() - start < 3 {
            out.extend(c.read_exact(1).await);
        }
        let line = out[start..out.len() - 2].to_vec();
        let n: i64 = std::str::from_utf8(&line[1..]).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
        match line[0] {
            b'$' | b'=' if n >= 0 => out.extend(c.read_exact(n as usize + 2).await),
            b'*' | b'~' if n > 0 => pending += n as usize,
            b'%' if n > 0 => pending += 2 * n as usize,
            _ => {}
        }
    }
    out
}

/// Sends `request` and returns its whole reply.
async fn call(c: &mut server_support::Raw, args: &[&str]) -> Vec<u8> {
    c.stream.write_all(&cmd(args)).await.expect("write");
    read_reply(c).await
}

#[tokio::test]
async fn unlink_expireat_pexpireat_flushall_reply_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["MSET", "a", "1", "b", "2"]), b"+OK\r\n").await;
    c.expect(&cmd(&["UNLINK", "a", "b", "missing"]), b":2\r\n").await;
    c.expect(&cmd(&["UNLINK", "a"]), b":0\r\n").await;
    c.expect(&cmd(&["UNLINK"]), b"-ERR wrong number of arguments for 'unlink' command\r\n").await;

    c.expect(&cmd(&["SET", "k", "v"]), b"+OK\r\n").await;
    c.expect(&cmd(&["EXPIREAT", "k", "4000000000"]), b":1\r\n").await;
    c.expect(&cmd(&["EXPIRETIME", "k"]), b":4000000000\r\n").await;
    c.expect(&cmd(&["EXPIREAT", "k", "4000000001", "NX"]), b":0\r\n").await;
    c.expect(&cmd(&["EXPIREAT", "k", "4000000001", "GT"]), b":1\r\n").await;
    c.expect(&cmd(&["EXPIREAT", "missing", "4000000000"]), b":0\r\n").await;
    c.expect(&cmd(&["EXPIREAT", "k", "soon"]), b"-ERR value is not an integer or out of range\r\n")
        .await;
    c.expect(&cmd(&["EXPIREAT", "k", "1", "FOO"]), b"-ERR Unsupported option FOO\r\n").await;
    c.expect(
        &cmd(&["EXPIREAT", "k", "1", "NX", "XX"]),
        b"-ERR NX and XX, GT or LT options at the same time are not compatible\r\n",
    )
    .await;
    c.expect(
        &cmd(&["EXPIREAT", "k", "9223372036854775807"]),
        b"-ERR invalid expire time in 'expireat' command\r\n",
    )
    .await;
    // A time in the past deletes the key and still answers 1.
    c.expect(&cmd(&["EXPIREAT", "k", "1"]), b":1\r\n").await;
    c.expect(&cmd(&["EXISTS", "k"]), b":0\r\n").await;

    c.expect(&cmd(&["SET", "p", "v"]), b"+OK\r\n").await;
    c.expect(&cmd(&["PEXPIREAT", "p", "4000000000123"]), b":1\r\n").await;
    c.expect(&cmd(&["PEXPIRETIME", "p"]), b":4000000000123\r\n").await;
    c.expect(&cmd(&["EXPIRETIME", "p"]), b":4000000000\r\n").await;
    c.expect(&cmd(&["PEXPIREAT", "p", "4000000000000", "LT"]), b":1\r\n").await;
    c.expect(&cmd(&["PEXPIREAT", "p", "4000000000001", "LT"]), b":0\r\n").await;
    c.expect(&cmd(&["PEXPIREAT", "p", "1000"]), b":1\r\n").await;
    c.expect(&cmd(&["GET", "p"]), b"$-1\r\n").await;

    c.expect(&cmd(&["MSET", "x", "1", "y", "2"]), b"+OK\r\n").await;
    c.expect(&cmd(&["FLUSHALL"]), b"+OK\r\n").await;
    c.expect(&cmd(&["DBSIZE"]), b":0\r\n").await;
    c.expect(&cmd(&["FLUSHALL", "ASYNC"]), b"+OK\r\n").await;
    c.expect(&cmd(&["FLUSHALL", "sync"]), b"+OK\r\n").await;
    c.expect(&cmd(&["FLUSHALL", "later"]), b"-ERR syntax error\r\n").await;
    c.expect(&cmd(&["FLUSHALL", "SYNC", "SYNC"]), b"-ERR syntax error\r\n").await;
}

#[tokio::test]
async fn time_memory_usage_and_command_reply_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    // TIME: two bulk strings, Unix seconds and the microseconds within the second.
    let time = String::from_utf8(call(&mut c, &["TIME"]).await).expect("ascii");
    let parts: Vec<&str> = time.split("\r\n").collect();
    assert_eq!(parts.len(), 6, "{time:?}");
    assert_eq!((parts[0], parts[5]), ("*2", ""));
    let seconds: u64 = parts[2].parse().expect("seconds");
    let micros: u64 = parts[4].parse().expect("microseconds");
    assert_eq!(parts[1], format!("${}", parts[2].len()));
    assert_eq!(parts[3], format!("${}", parts[4].len()));
    assert!(seconds > 1_700_000_000 && micros < 1_000_000, "{time:?}");

    // MEMORY USAGE: the key's accounted cost (1 + 1 + 96 bytes), nil for a missing key.
    c.expect(&cmd(&["SET", "k", "v"]), b"+OK\r\n").await;
    c.expect(&cmd(&["MEMORY", "USAGE", "k"]), b":98\r\n").await;
    c.expect(&cmd(&["MEMORY", "USAGE", "k", "SAMPLES", "0"]), b":98\r\n").await;
    c.expect(&cmd(&["MEMORY", "USAGE", "k", "SAMPLES", "5", "samples", "1"]), b":98\r\n").await;
    c.expect(&cmd(&["MEMORY", "USAGE", "missing"]), b"$-1\r\n").await;
    c.expect(&cmd(&["MEMORY", "USAGE", "k", "FOO"]), b"-ERR syntax error\r\n").await;
    c.expect(&cmd(&["MEMORY", "USAGE", "k", "SAMPLES"]), b"-ERR syntax error\r\n").await;
    c.expect(&cmd(&["MEMORY", "USAGE", "k", "SAMPLES", "-1"]), b"-ERR syntax error\r\n").await;
    c.expect(
        &cmd(&["MEMORY", "USAGE", "k", "SAMPLES", "x"]),
        b"-ERR value is not an integer or out of range\r\n",
    )
    .await;
    c.expect(
        &cmd(&["MEMORY", "USAGE"]),
        b"-ERR wrong number of arguments for 'memory|usage' command\r\n",
    )
    .await;
    c.expect(
        &cmd(&["MEMORY", "DOCTOR"]),
        b"-ERR unknown subcommand 'DOCTOR'. Try MEMORY HELP.\r\n",
    )
    .await;

    // COMMAND COUNT / INFO / DOCS: the count is the command table's.
    let count = mapcache::server::commands::COMMANDS.len();
    c.expect(&cmd(&["COMMAND", "COUNT"]), format!(":{count}\r\n").as_bytes()).await;
    let get_info = b"*10\r\n$3\r\nget\r\n:2\r\n*2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n*3\r\n+@read\r\n+@string\r\n+@fast\r\n*0\r\n*0\r\n*0\r\n";
    let mut expected = b"*2\r\n".to_vec();
    expected.extend(get_info);
    expected.extend(b"$-1\r\n");
    c.expect(&cmd(&["COMMAND", "INFO", "GET", "nosuch"]), &expected).await;
    c.expect(
        &cmd(&["COMMAND", "INFO", "mset"]),
        b"*1\r\n*10\r\n$4\r\nmset\r\n:-3\r\n*2\r\n+write\r\n+denyoom\r\n:1\r\n:-1\r\n:2\r\n*3\r\n+@write\r\n+@string\r\n+@slow\r\n*0\r\n*0\r\n*0\r\n",
    )
    .await;
    let all = call(&mut c, &["COMMAND", "INFO"]).await;
    let head = format!("*{count}\r\n*10\r\n$4\r\nping\r\n");
    assert!(all.starts_with(head.as_bytes()), "{}", shown(&all[..40]));
    assert_eq!(call(&mut c, &["COMMAND"]).await, all);
    c.expect(&cmd(&["COMMAND", "DOCS", "nosuch"]), b"*0\r\n").await;
    c.expect(
        &cmd(&["COMMAND", "COUNT", "x"]),
        b"-ERR wrong number of arguments for 'command|count' command\r\n",
    )
    .await;

    // RESP3: nil is `_`, COMMAND INFO's flags, categories, tips and subcommands are sets.
    c.stream_write_hello3().await;
    c.expect(&cmd(&["MEMORY", "USAGE", "missing"]), b"_\r\n").await;
    c.expect(
        &cmd(&["COMMAND", "INFO", "get", "nosuch"]),
        b"*2\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n:1\r\n:1\r\n:1\r\n~3\r\n+@read\r\n+@string\r\n+@fast\r\n~0\r\n*0\r\n~0\r\n_\r\n",
    )
    .await;
    c.expect(&cmd(&["COMMAND", "DOCS", "nosuch"]), b"%0\r\n").await;
    c.expect(&cmd(&["COMMAND", "COUNT"]), format!(":{count}\r\n").as_bytes()).await;
}

#[tokio::test]
async fn config_set_checks_like_redis_and_applies_all_or_nothing() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["CONFIG", "SET", "maxmemory", "1mb"]), b"+OK\r\n").await;
    c.expect(&cmd(&["CONFIG", "GET", "maxmemory"]), b"*2\r\n$9\r\nmaxmemory\r\n$7\r\n1048576\r\n")
        .await;
    c.expect(
        &cmd(&["CONFIG", "SET", "MAXMEMORY", "0", "maxmemory-policy", "allkeys-lru"]),
        b"+OK\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CONFIG", "GET", "maxmemory", "maxmemory-p*"]),
        b"*4\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CONFIG", "SET", "maxmemory"]),
        b"-ERR wrong number of arguments for 'config|set' command\r\n",
    )
    .await;
    // An odd number of arguments past the arity is a syntax error in Redis 7.
    c.expect(
        &cmd(&["CONFIG", "SET", "maxmemory", "1", "maxmemory-policy"]),
        b"-ERR syntax error\r\n",
    )
    .await;
    // Unknown names are echoed as given, and reported before a bad value.
    c.expect(
        &cmd(&["CONFIG", "SET", "maxmemory", "lots", "Save-Me", "1"]),
        b"-ERR Unknown option or number of arguments for CONFIG SET - 'Save-Me'\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CONFIG", "SET", "maxmemory", "1", "MaxMemory", "2"]),
        b"-ERR CONFIG SET failed (possibly related to argument 'MaxMemory') - duplicate parameter\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CONFIG", "SET", "MAXMEMORY", "lots"]),
        b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory') - argument must be a memory value\r\n",
    )
    .await;
    // Nothing is applied when one pair fails.
    let bad_policy = cmd(&["CONFIG", "SET", "maxmemory", "5mb", "maxmemory-policy", "sometimes"]);
    c.stream.write_all(&bad_policy).await.expect("write");
    let reply = read_reply(&mut c).await;
    assert!(
        reply.starts_with(b"-ERR CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: "),
        "{}",
        shown(&reply)
    );
    c.expect(&cmd(&["CONFIG", "GET", "maxmemory"]), b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n").await;
    c.expect(&cmd(&["CONFIG", "FOO"]), b"-ERR unknown subcommand 'FOO'. Try CONFIG HELP.\r\n")
        .await;
}

/// INFO's `expired_keys:` and `evicted_keys:` after CONFIG RESETSTAT.
async fn info_stat(c: &mut server_support::Raw, field: &str) -> u64 {
    let info = String::from_utf8(call(c, &["INFO", "stats"]).await).expect("text");
    let line = info.split("\r\n").find(|l| l.starts_with(&format!("{field}:"))).expect(field);
    line[field.len() + 1..].parse().expect("number")
}

/// CONFIG RESETSTAT zeroes what Redis's `resetServerStats` zeroes among INFO's figures, the
/// expired and evicted counts included, while the Prometheus counters keep counting up.
#[tokio::test]
async fn config_resetstat_zeroes_info_stats_but_not_prometheus_counters() {
    let node = start_with(|c| {
        c.maxmemory = 128 * 1024;
        c.eviction_policy = EvictionPolicy::AllkeysRandom;
    })
    .await;
    let store = &node.handle.node.store;
    let mut c = node.raw().await;
    let value = "v".repeat(1000);
    for i in 0..300 {
        c.expect(&cmd(&["SET", &format!("k{i}"), &value]), b"+OK\r\n").await;
    }
    c.expect(&cmd(&["SET", "short", "1", "PX", "1"]), b"+OK\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.expect(&cmd(&["GET", "short"]), b"$-1\r\n").await;
    let (expired, evicted) = (store.expired_total.get(), store.evicted_total.get());
    assert!(expired >= 1 && evicted > 0, "expired {expired} evicted {evicted}");
    assert_eq!(info_stat(&mut c, "expired_keys").await, expired);
    assert_eq!(info_stat(&mut c, "evicted_keys").await, evicted);
    assert!(info_stat(&mut c, "total_commands_processed").await > 300);
    c.expect(&cmd(&["CONFIG", "RESETSTAT"]), b"+OK\r\n").await;
    assert_eq!(info_stat(&mut c, "expired_keys").await, 0);
    assert_eq!(info_stat(&mut c, "evicted_keys").await, 0);
    assert_eq!(info_stat(&mut c, "total_connections_received").await, 0);
    assert!(info_stat(&mut c, "total_commands_processed").await < 5);
    assert_eq!((store.expired_total.get(), store.evicted_total.get()), (expired, evicted));
    // Counting resumes from the reset.
    c.expect(&cmd(&["SET", "short", "1", "PX", "1"]), b"+OK\r\n").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    c.expect(&cmd(&["GET", "short"]), b"$-1\r\n").await;
    assert_eq!(info_stat(&mut c, "expired_keys").await, 1);
    assert_eq!(store.expired_total.get(), expired + 1);
    c.expect(
        &cmd(&["CONFIG", "RESETSTAT", "x"]),
        b"-ERR wrong number of arguments for 'config|resetstat' command\r\n",
    )
    .await;
}

/// An integer reply's value.
fn integer(reply: &[u8]) -> i64 {
    std::str::from_utf8(&reply[1..reply.len() - 2]).expect("ascii").parse().expect("integer")
}

#[tokio::test]
async fn client_commands_reply_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    let mut other = node.raw().await;
    let id = integer(&call(&mut c, &["CLIENT", "ID"]).await);
    let other_id = integer(&call(&mut other, &["CLIENT", "ID"]).await);
    assert!(id > 0 && other_id > 0 && id != other_id);
    c.expect(&cmd(&["CLIENT", "GETNAME"]), b"$-1\r\n").await;
    c.expect(&cmd(&["CLIENT", "SETNAME", "worker-1"]), b"+OK\r\n").await;
    c.expect(&cmd(&["CLIENT", "GETNAME"]), b"$8\r\nworker-1\r\n").await;
    c.expect(
        &cmd(&["CLIENT", "SETNAME", "two words"]),
        b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CLIENT", "SETNAME"]),
        b"-ERR wrong number of arguments for 'client|setname' command\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CLIENT", "ID", "x"]),
        b"-ERR wrong number of arguments for 'client|id' command\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CLIENT", "PAUSE", "10"]),
        b"-ERR unknown subcommand 'PAUSE'. Try CLIENT HELP.\r\n",
    )
    .await;

    // CLIENT INFO: one line as a bulk string (RESP2), ending in "\n".
    let info = call(&mut c, &["CLIENT", "INFO"]).await;
    let text = String::from_utf8(info.clone()).expect("text");
    let (header, body) = text.split_once("\r\n").expect("bulk");
    assert_eq!(header, format!("${}", body.len() - 2));
    let line = body.strip_suffix("\n\r\n").expect("line ends in \\n");
    assert!(line.starts_with(&format!("id={id} addr=")), "{line}");
    assert!(line.contains(" name=worker-1 ") && line.contains(" db=0 "), "{line}");
    assert!(!line.contains('\n'));

    // CLIENT LIST: one line per connection; TYPE and ID filter as Redis's do.
    let list = String::from_utf8(call(&mut c, &["CLIENT", "LIST"]).await).expect("text");
    let lines: Vec<&str> = list.split_once("\r\n").expect("bulk").1.lines().collect();
    assert_eq!(lines.len(), 3, "{list}"); // the two connections and the bulk's CRLF
    assert!(lines.iter().any(|l| l.starts_with(&format!("id={other_id} "))), "{list}");
    let normal = call(&mut c, &["CLIENT", "LIST", "TYPE", "normal"]).await;
    assert!(normal.len() > 100, "{}", shown(&normal));
    c.expect(&cmd(&["CLIENT", "LIST", "TYPE", "pubsub"]), b"$0\r\n\r\n").await;
    c.expect(&cmd(&["CLIENT", "LIST", "TYPE", "robots"]), b"-ERR Unknown client type 'robots'\r\n")
        .await;
    let only_other = String::from_utf8(
        call(&mut c, &["CLIENT", "LIST", "ID", &other_id.to_string(), "999999"]).await,
    )
    .expect("text");
    let only_other = only_other.split_once("\r\n").expect("bulk").1;
    assert!(only_other.starts_with(&format!("id={other_id} ")), "{only_other}");
    assert_eq!(only_other.matches('\n').count(), 2, "{only_other}");
    c.expect(&cmd(&["CLIENT", "LIST", "ID", "me"]), b"-ERR Invalid client ID\r\n").await;
    c.expect(&cmd(&["CLIENT", "LIST", "everything"]), b"-ERR syntax error\r\n").await;

    // RESP3: nil is `_`, INFO and LIST are verbatim text.
    c.expect(&cmd(&["CLIENT", "SETNAME", ""]), b"+OK\r\n").await;
    c.stream_write_hello3().await;
    c.expect(&cmd(&["CLIENT", "GETNAME"]), b"_\r\n").await;
    let info = String::from_utf8(call(&mut c, &["CLIENT", "INFO"]).await).expect("text");
    let (header, body) = info.split_once("\r\n").expect("verbatim");
    assert_eq!(header, format!("={}", body.len() - 2));
    assert!(body.starts_with(&format!("txt:id={id} addr=")), "{body}");
    assert!(body.contains(" name= ") && body.contains(" resp=3"), "{body}");
    let list = call(&mut c, &["CLIENT", "LIST"]).await;
    assert!(list.starts_with(b"=") && list.windows(4).any(|w| w == b"txt:"), "{}", shown(&list));
}

/// `CLIENT SETINFO` as Redis 7.2 has it: the two attributes are stored and shown at the end of
/// every `CLIENT LIST` line, with the RESP version each client chose; other attributes and
/// values that would break the line's `key=value` format are refused, naming the attribute as
/// the client spelled it.
#[tokio::test]
async fn client_setinfo_is_stored_and_listed() {
    let node = start().await;
    let mut c = node.raw().await;
    let mut other = node.raw().await;
    let other_id = integer(&call(&mut other, &["CLIENT", "ID"]).await);
    let line_of = |list: &[u8], id: i64| -> String {
        let text = String::from_utf8(list.to_vec()).expect("text");
        let body = text.split_once("\r\n").expect("bulk").1.to_string();
        body.lines().find(|l| l.starts_with(&format!("id={id} "))).expect("listed").to_string()
    };
    let list = call(&mut c, &["CLIENT", "LIST"]).await;
    assert!(line_of(&list, other_id).ends_with(" resp=2 lib-name= lib-ver="), "{}", shown(&list));

    other
        .expect(&cmd(&["CLIENT", "SETINFO", "lib-name", "redis-py(django_v1.0)"]), b"+OK\r\n")
        .await;
    other.expect(&cmd(&["CLIENT", "SETINFO", "LIB-VER", "5.0.1"]), b"+OK\r\n").await;
    other.stream_write_hello3().await;
    let list = call(&mut c, &["CLIENT", "LIST"]).await;
    assert!(
        line_of(&list, other_id).ends_with(" resp=3 lib-name=redis-py(django_v1.0) lib-ver=5.0.1"),
        "{}",
        shown(&list)
    );

    c.expect(
        &cmd(&["CLIENT", "SETINFO", "Lib-Name", "two words"]),
        b"-ERR Lib-Name cannot contain spaces, newlines or special characters.\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CLIENT", "SETINFO", "lib-ver", "1.0\n"]),
        b"-ERR lib-ver cannot contain spaces, newlines or special characters.\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CLIENT", "SETINFO", "lib-color", "red"]),
        b"-ERR Unrecognized option 'lib-color'\r\n",
    )
    .await;
    // The attribute is echoed as C's `%s` would: raw bytes, cut at a NUL.
    c.expect(
        &cmd_bytes(&[b"CLIENT", b"SETINFO", b"lib-\xff\x00hidden", b"x"]),
        b"-ERR Unrecognized option 'lib-\xff'\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CLIENT", "SETINFO", "lib-name"]),
        b"-ERR wrong number of arguments for 'client|setinfo' command\r\n",
    )
    .await;
    // A refused value leaves the stored one; an empty value clears it.
    other
        .expect(
            &cmd(&["CLIENT", "SETINFO", "lib-ver", "bad value"]),
            b"-ERR lib-ver cannot contain spaces, newlines or special characters.\r\n",
        )
        .await;
    other.expect(&cmd(&["CLIENT", "SETINFO", "lib-name", ""]), b"+OK\r\n").await;
    let list = call(&mut c, &["CLIENT", "LIST"]).await;
    assert!(line_of(&list, other_id).ends_with(" lib-name= lib-ver=5.0.1"), "{}", shown(&list));
}
