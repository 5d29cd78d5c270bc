//! RENAME RENAMENX COPY TOUCH OBJECT SETBIT GETBIT BITCOUNT LCS: Redis 7's replies byte for byte
//! (every step table of the reply tests below was run against redis-server 7.0.15, started with
//! `--databases 1` as this node has one database, and gave these bytes, errors and RESP3 shapes
//! included), TTLs carried by RENAME and COPY, keys moved between shards and inside transactions,
//! WATCH seeing a renamed-onto key change (cases run with two clients against redis-server too),
//! the memory accounting back to the same figure once the copies are deleted, and SETBIT and
//! COPY refused a write that cannot fit under maxmemory (Redis's error texts, the node's rule).

mod server_support;

use std::time::Duration;

use mapcache::server::EvictionPolicy;
use mapcache::server::clock::ManualClock;
use server_support::{Raw, cmd, cmd_bytes, start, start_with};
use tokio::io::AsyncWriteExt;

/// A command's arguments and the reply it must get.
type Step<'a> = (&'a [&'a str], &'a [u8]);

/// Sends each command and checks its reply, in order.
async fn run(c: &mut Raw, steps: &[Step<'_>]) {
    for (args, reply) in steps {
        c.expect(&cmd(args), reply).await;
    }
}

/// Reads one line, `\r\n` included.
async fn read_line(c: &mut Raw) -> Vec<u8> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.extend(c.read_exact(1).await);
    }
    line
}

/// Switches the connection to RESP3 (HELLO 3), its reply (a map of 7) read and dropped.
async fn switch_to_resp3(c: &mut Raw) {
    c.stream.write_all(&cmd(&["HELLO", "3"])).await.expect("write");
    assert_eq!(read_line(c).await, b"%7\r\n");
    for _ in 0..7 {
        for _ in 0..2 {
            let line = read_line(c).await;
            if line[0] == b'$' {
                let len: usize = std::str::from_utf8(&line[1..line.len() - 2])
                    .ok()
                    .and_then(|n| n.parse().ok())
                    .expect("bulk length");
                c.read_exact(len + 2).await;
            } else if line.starts_with(b"*") {
                assert_eq!(line, b"*0\r\n", "HELLO's modules");
            }
        }
    }
}

/// INFO's `used_memory`.
async fn used_memory(c: &mut Raw) -> u64 {
    c.stream.write_all(&cmd(&["INFO", "memory"])).await.expect("write");
    let header = read_line(c).await;
    let len: usize = std::str::from_utf8(&header[1..header.len() - 2])
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("bulk");
    let body = String::from_utf8(c.read_exact(len + 2).await).expect("text");
    body.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.parse().ok())
        .expect("used_memory")
}

#[tokio::test]
async fn rename_and_renamenx_reply_like_redis_and_carry_the_ttl() {
    let node = start().await;
    let mut c = node.raw().await;
    let steps: &[Step] = &[
        (&["RENAME", "a", "b"], b"-ERR no such key\r\n"),
        (&["RENAME", "a", "a"], b"-ERR no such key\r\n"),
        (&["RENAMENX", "a", "b"], b"-ERR no such key\r\n"),
        (&["RENAMENX", "a", "a"], b"-ERR no such key\r\n"),
        (&["RENAME", "a"], b"-ERR wrong number of arguments for 'rename' command\r\n"),
        (&["RENAME", "a", "b", "c"], b"-ERR wrong number of arguments for 'rename' command\r\n"),
        (&["RENAMENX", "a"], b"-ERR wrong number of arguments for 'renamenx' command\r\n"),
        (&["SET", "a", "1"], b"+OK\r\n"),
        (&["RENAME", "a", "a"], b"+OK\r\n"),
        (&["RENAMENX", "a", "a"], b":0\r\n"),
        (&["SET", "b", "2"], b"+OK\r\n"),
        (&["RENAMENX", "a", "b"], b":0\r\n"),
        (&["GET", "b"], b"$1\r\n2\r\n"),
        // The TTL moves with the entry; a destination's own TTL goes with its old value.
        (&["PEXPIREAT", "a", "4000000000123"], b":1\r\n"),
        (&["RENAME", "a", "b"], b"+OK\r\n"),
        (&["PEXPIRETIME", "b"], b":4000000000123\r\n"),
        (&["EXISTS", "a"], b":0\r\n"),
        (&["GET", "b"], b"$1\r\n1\r\n"),
        (&["SET", "c", "3"], b"+OK\r\n"),
        (&["RENAME", "c", "b"], b"+OK\r\n"),
        (&["PEXPIRETIME", "b"], b":-1\r\n"),
        (&["GET", "b"], b"$1\r\n3\r\n"),
        (&["SET", "x", "1", "PXAT", "4000000000456"], b"+OK\r\n"),
        (&["RENAMENX", "x", "y"], b":1\r\n"),
        (&["PEXPIRETIME", "y"], b":4000000000456\r\n"),
        (&["RENAMENX", "x", "y"], b"-ERR no such key\r\n"),
        (&["DBSIZE"], b":2\r\n"),
    ];
    run(&mut c, steps).await;
    assert_eq!(node.handle.node.store.check_ttl_index(), Ok(()));
}

#[tokio::test]
async fn copy_replies_like_redis_with_db_and_replace() {
    let node = start().await;
    let mut c = node.raw().await;
    let steps: &[Step] = &[
        (&["COPY", "y"], b"-ERR wrong number of arguments for 'copy' command\r\n"),
        (&["COPY", "nosuch", "z"], b":0\r\n"),
        (&["COPY", "nosuch", "nosuch"], b"-ERR source and destination objects are the same\r\n"),
        (&["SET", "y", "1"], b"+OK\r\n"),
        (&["COPY", "y", "z"], b":1\r\n"),
        (&["COPY", "y", "z"], b":0\r\n"),
        (&["COPY", "y", "z", "replace"], b":1\r\n"),
        (&["COPY", "y", "z", "REPLACE", "REPLACE"], b":1\r\n"),
        (&["COPY", "y", "y"], b"-ERR source and destination objects are the same\r\n"),
        (&["COPY", "y", "z", "DB", "0"], b":0\r\n"),
        (&["COPY", "y", "z", "db", "0", "replace"], b":1\r\n"),
        // Only database 0 exists: another is out of range, checked as the options come.
        (&["COPY", "y", "z", "DB", "1"], b"-ERR DB index is out of range\r\n"),
        (&["COPY", "y", "z", "DB", "1", "foo"], b"-ERR DB index is out of range\r\n"),
        (&["COPY", "y", "y", "DB", "1"], b"-ERR DB index is out of range\r\n"),
        (&["COPY", "nosuch", "z", "DB", "1"], b"-ERR DB index is out of range\r\n"),
        (&["COPY", "y", "z", "DB", "-1"], b"-ERR DB index is out of range\r\n"),
        (&["COPY", "y", "z", "DB", "x"], b"-ERR value is not an integer or out of range\r\n"),
        (
            &["COPY", "y", "z", "DB", "99999999999"],
            b"-ERR value is out of range, value must between -2147483648 and 2147483647\r\n",
        ),
        (&["COPY", "y", "z", "DB"], b"-ERR syntax error\r\n"),
        (&["COPY", "y", "z", "foo"], b"-ERR syntax error\r\n"),
        (&["COPY", "y", "z", "foo", "DB", "1"], b"-ERR syntax error\r\n"),
        // The copy keeps the source's TTL, and is a value of its own.
        (&["SET", "src", "hello", "PXAT", "4000000000123"], b"+OK\r\n"),
        (&["COPY", "src", "dst"], b":1\r\n"),
        (&["PEXPIRETIME", "dst"], b":4000000000123\r\n"),
        (&["PEXPIRETIME", "src"], b":4000000000123\r\n"),
        (&["SET", "plain", "text"], b"+OK\r\n"),
        (&["COPY", "plain", "dst", "REPLACE"], b":1\r\n"),
        (&["PEXPIRETIME", "dst"], b":-1\r\n"),
        (&["APPEND", "plain", "-more"], b":9\r\n"),
        (&["SETRANGE", "src", "0", "J"], b":5\r\n"),
        (
            &["MGET", "dst", "plain", "src"],
            b"*3\r\n$4\r\ntext\r\n$9\r\ntext-more\r\n$5\r\nJello\r\n",
        ),
        (&["DBSIZE"], b":5\r\n"),
    ];
    run(&mut c, steps).await;
    assert_eq!(node.handle.node.store.check_ttl_index(), Ok(()));
}

#[tokio::test]
async fn touch_and_object_reply_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    let steps: &[Step] = &[
        (&["TOUCH"], b"-ERR wrong number of arguments for 'touch' command\r\n"),
        (&["SET", "y", "1"], b"+OK\r\n"),
        (&["SET", "z", "2"], b"+OK\r\n"),
        (&["TOUCH", "y", "z", "nosuch", "y"], b":3\r\n"),
        (&["OBJECT"], b"-ERR wrong number of arguments for 'object' command\r\n"),
        (
            &["OBJECT", "help"],
            b"*15\r\n+OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n\
              +ENCODING <key>\r\n\
              +    Return the kind of internal representation used in order to store the value\r\n\
              +    associated with a <key>.\r\n\
              +FREQ <key>\r\n\
              +    Return the access frequency index of the <key>. The returned integer is\r\n\
              +    proportional to the logarithm of the recent access frequency of the key.\r\n\
              +IDLETIME <key>\r\n\
              +    Return the idle time of the <key>, that is the approximated number of\r\n\
              +    seconds elapsed since the last access to the key.\r\n\
              +REFCOUNT <key>\r\n\
              +    Return the number of references of the value associated with the specified\r\n\
              +    <key>.\r\n\
              +HELP\r\n\
              +    Prints this help.\r\n",
        ),
        (&["OBJECT", "help", "x"], b"-ERR wrong number of arguments for 'object|help' command\r\n"),
        (
            &["OBJECT", "encoding"],
            b"-ERR wrong number of arguments for 'object|encoding' command\r\n",
        ),
        (
            &["OBJECT", "encoding", "a", "b"],
            b"-ERR wrong number of arguments for 'object|encoding' command\r\n",
        ),
        (
            &["OBJECT", "freq", "y", "x"],
            b"-ERR wrong number of arguments for 'object|freq' command\r\n",
        ),
        (&["OBJECT", "foo"], b"-ERR unknown subcommand 'foo'. Try OBJECT HELP.\r\n"),
        (&["OBJECT", "foo", "bar"], b"-ERR unknown subcommand 'foo'. Try OBJECT HELP.\r\n"),
        (&["OBJECT", "encoding", "nosuch"], b"$-1\r\n"),
        (&["OBJECT", "freq", "nosuch"], b"$-1\r\n"),
        (&["OBJECT", "idletime", "nosuch"], b"$-1\r\n"),
        (&["OBJECT", "refcount", "nosuch"], b"$-1\r\n"),
        (&["OBJECT", "encoding", "Y"], b"$-1\r\n"),
        (
            &["OBJECT", "freq", "y"],
            b"-ERR An LFU maxmemory policy is not selected, access frequency not tracked. Please \
              note that when switching between policies at runtime LRU and LFU data will take \
              some time to adjust.\r\n",
        ),
        // Encodings as Redis stores a string it was SET: an integer as `int`, up to 44 bytes
        // `embstr`, longer `raw`; the integers 0 to 9999 are shared objects.
        (&["SET", "i", "123"], b"+OK\r\n"),
        (&["OBJECT", "ENCODING", "i"], b"$3\r\nint\r\n"),
        (&["OBJECT", "REFCOUNT", "i"], b":2147483647\r\n"),
        (&["SET", "s", "9999"], b"+OK\r\n"),
        (&["OBJECT", "refcount", "s"], b":2147483647\r\n"),
        (&["SET", "s2", "10000"], b"+OK\r\n"),
        (&["OBJECT", "refcount", "s2"], b":1\r\n"),
        (&["SET", "n", "-5"], b"+OK\r\n"),
        (&["OBJECT", "encoding", "n"], b"$3\r\nint\r\n"),
        (&["OBJECT", "refcount", "n"], b":1\r\n"),
        (&["SET", "big", "9223372036854775807"], b"+OK\r\n"),
        (&["OBJECT", "encoding", "big"], b"$3\r\nint\r\n"),
        (&["SET", "big2", "9223372036854775808"], b"+OK\r\n"),
        (&["OBJECT", "encoding", "big2"], b"$6\r\nembstr\r\n"),
        (&["SET", "lz", "0123"], b"+OK\r\n"),
        (&["OBJECT", "encoding", "lz"], b"$6\r\nembstr\r\n"),
        (&["SET", "m0", "-0"], b"+OK\r\n"),
        (&["OBJECT", "encoding", "m0"], b"$6\r\nembstr\r\n"),
        (&["SET", "e", "12345678901234567890123456789012345678901234"], b"+OK\r\n"),
        (&["OBJECT", "encoding", "e"], b"$6\r\nembstr\r\n"),
        (&["SET", "r", "123456789012345678901234567890123456789012345"], b"+OK\r\n"),
        (&["OBJECT", "encoding", "r"], b"$3\r\nraw\r\n"),
        (&["OBJECT", "refcount", "r"], b":1\r\n"),
        (&["SET", "emp", ""], b"+OK\r\n"),
        (&["OBJECT", "encoding", "emp"], b"$6\r\nembstr\r\n"),
    ];
    run(&mut c, steps).await;
    switch_to_resp3(&mut c).await;
    let resp3: &[Step] = &[
        (&["OBJECT", "encoding", "nosuch"], b"_\r\n"),
        (&["OBJECT", "encoding", "r"], b"$3\r\nraw\r\n"),
    ];
    run(&mut c, resp3).await;
}

#[tokio::test]
async fn setbit_and_getbit_reply_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    let steps: &[Step] = &[
        (&["SETBIT", "b", "7", "1"], b":0\r\n"),
        (&["GET", "b"], b"$1\r\n\x01\r\n"),
        (&["SETBIT", "b", "7", "1"], b":1\r\n"),
        (&["SETBIT", "b", "7", "0"], b":1\r\n"),
        (&["SETBIT", "b", "100", "1"], b":0\r\n"),
        (&["STRLEN", "b"], b":13\r\n"),
        (&["GETBIT", "b", "100"], b":1\r\n"),
        (&["GETBIT", "b", "99"], b":0\r\n"),
        (&["GETBIT", "b", "100000"], b":0\r\n"),
        (&["GETBIT", "nosuch", "5"], b":0\r\n"),
        (&["SETBIT", "b", "-1", "1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["SETBIT", "b", "x", "1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["SETBIT", "b", "x", "2"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["SETBIT", "b", "01", "1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (
            &["SETBIT", "b", "4294967296", "1"],
            b"-ERR bit offset is not an integer or out of range\r\n",
        ),
        (&["SETBIT", "b", "1", "2"], b"-ERR bit is not an integer or out of range\r\n"),
        (&["SETBIT", "b", "1", "-1"], b"-ERR bit is not an integer or out of range\r\n"),
        (&["SETBIT", "b", "1", "x"], b"-ERR bit is not an integer or out of range\r\n"),
        (&["SETBIT", "b", "1", "01"], b"-ERR bit is not an integer or out of range\r\n"),
        (&["SETBIT", "b", "1", "+1"], b"-ERR bit is not an integer or out of range\r\n"),
        (&["SETBIT", "b", "1"], b"-ERR wrong number of arguments for 'setbit' command\r\n"),
        (&["GETBIT", "b"], b"-ERR wrong number of arguments for 'getbit' command\r\n"),
        (&["GETBIT", "b", "4294967296"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["GETBIT", "b", "4294967295"], b":0\r\n"),
        (&["GETBIT", "b", "-1"], b"-ERR bit offset is not an integer or out of range\r\n"),
        (&["GETBIT", "b", "x"], b"-ERR bit offset is not an integer or out of range\r\n"),
        // SETBIT keeps the TTL, and reads and writes the bits of any string.
        (&["PEXPIREAT", "b", "4000000000123"], b":1\r\n"),
        (&["SETBIT", "b", "3", "1"], b":0\r\n"),
        (&["SETBIT", "b", "200", "1"], b":0\r\n"),
        (&["PEXPIRETIME", "b"], b":4000000000123\r\n"),
        (&["SET", "s", "a"], b"+OK\r\n"),
        (&["SETBIT", "s", "6", "1"], b":0\r\n"),
        (&["SETBIT", "s", "7", "0"], b":1\r\n"),
        (&["GET", "s"], b"$1\r\nb\r\n"),
        (&["GETBIT", "s", "1"], b":1\r\n"),
        (&["SET", "long", "0123456789012345678901234567890123456789"], b"+OK\r\n"),
        (&["SETBIT", "long", "316", "0"], b":1\r\n"),
        (&["SETBIT", "long", "318", "0"], b":0\r\n"),
        (&["GET", "long"], b"$40\r\n0123456789012345678901234567890123456781\r\n"),
    ];
    run(&mut c, steps).await;
}

#[tokio::test]
async fn bitcount_replies_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    let steps: &[Step] = &[
        (&["BITCOUNT"], b"-ERR wrong number of arguments for 'bitcount' command\r\n"),
        // A missing key counts 0 before its arguments are read.
        (&["BITCOUNT", "nosuch"], b":0\r\n"),
        (&["BITCOUNT", "nosuch", "0"], b":0\r\n"),
        (&["BITCOUNT", "nosuch", "a", "b"], b":0\r\n"),
        (&["BITCOUNT", "nosuch", "0", "1", "foo"], b":0\r\n"),
        (&["BITCOUNT", "nosuch", "0", "1", "2", "3"], b":0\r\n"),
        (&["SET", "s", "foobar"], b"+OK\r\n"),
        (&["BITCOUNT", "s"], b":26\r\n"),
        (&["BITCOUNT", "s", "0", "0"], b":4\r\n"),
        (&["BITCOUNT", "s", "1", "1"], b":6\r\n"),
        (&["BITCOUNT", "s", "1", "1", "byte"], b":6\r\n"),
        (&["BITCOUNT", "s", "1", "1", "BIT"], b":1\r\n"),
        (&["BITCOUNT", "s", "5", "30", "bit"], b":17\r\n"),
        (&["BITCOUNT", "s", "0", "-1", "bit"], b":26\r\n"),
        (&["BITCOUNT", "s", "-9", "-1", "bit"], b":5\r\n"),
        (&["BITCOUNT", "s", "-1", "-2"], b":0\r\n"),
        (&["BITCOUNT", "s", "-2", "-1"], b":7\r\n"),
        (&["BITCOUNT", "s", "100", "200"], b":0\r\n"),
        (&["BITCOUNT", "s", "-100", "-1"], b":26\r\n"),
        (&["BITCOUNT", "s", "-100", "-1", "bit"], b":26\r\n"),
        (&["BITCOUNT", "s", "0", "-100"], b":4\r\n"),
        (&["BITCOUNT", "s", "9223372036854775807", "-1", "bit"], b":0\r\n"),
        (&["BITCOUNT", "s", "-9223372036854775808", "-1", "bit"], b":26\r\n"),
        (&["BITCOUNT", "s", "0"], b"-ERR syntax error\r\n"),
        (&["BITCOUNT", "s", "0", "1", "2"], b"-ERR syntax error\r\n"),
        (&["BITCOUNT", "s", "0", "1", "foo"], b"-ERR syntax error\r\n"),
        (&["BITCOUNT", "s", "0", "1", "2", "3"], b"-ERR syntax error\r\n"),
        (&["BITCOUNT", "s", "a", "1"], b"-ERR value is not an integer or out of range\r\n"),
        (&["BITCOUNT", "s", "0", "a"], b"-ERR value is not an integer or out of range\r\n"),
        (&["BITCOUNT", "s", "0", "a", "foo"], b"-ERR value is not an integer or out of range\r\n"),
        (&["SET", "e", ""], b"+OK\r\n"),
        (&["BITCOUNT", "e"], b":0\r\n"),
        (&["BITCOUNT", "e", "0", "-1"], b":0\r\n"),
        (&["BITCOUNT", "e", "0", "-1", "bit"], b":0\r\n"),
        (&["SET", "w", "\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}\u{7f}"], b"+OK\r\n"),
        (&["BITCOUNT", "w"], b":70\r\n"),
        (&["BITCOUNT", "w", "1", "79", "bit"], b":70\r\n"),
        (&["BITCOUNT", "w", "2", "78", "bit"], b":68\r\n"),
    ];
    run(&mut c, steps).await;
}

#[tokio::test]
async fn lcs_replies_like_redis_in_resp2_and_resp3() {
    let node = start().await;
    let mut c = node.raw().await;
    let steps: &[Step] = &[
        (&["LCS", "key1"], b"-ERR wrong number of arguments for 'lcs' command\r\n"),
        (&["MSET", "key1", "ohmytext", "key2", "mynewtext"], b"+OK\r\n"),
        (&["LCS", "key1", "key2"], b"$6\r\nmytext\r\n"),
        (&["LCS", "key1", "key2", "LEN"], b":6\r\n"),
        (
            &["LCS", "key1", "key2", "IDX"],
            b"*4\r\n$7\r\nmatches\r\n*2\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n\
              *2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:6\r\n",
        ),
        (
            &["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "4"],
            b"*4\r\n$7\r\nmatches\r\n*1\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n\
              $3\r\nlen\r\n:6\r\n",
        ),
        (
            &["LCS", "key1", "key2", "idx", "minmatchlen", "4", "withmatchlen"],
            b"*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
              $3\r\nlen\r\n:6\r\n",
        ),
        (
            &["LCS", "key1", "key2", "IDX", "WITHMATCHLEN"],
            b"*4\r\n$7\r\nmatches\r\n*2\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
              *3\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n:2\r\n$3\r\nlen\r\n:6\r\n",
        ),
        (
            &["LCS", "key1", "key2", "MINMATCHLEN", "-5", "IDX"],
            b"*4\r\n$7\r\nmatches\r\n*2\r\n*2\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n\
              *2\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n$3\r\nlen\r\n:6\r\n",
        ),
        (
            &["LCS", "key1", "key1", "IDX", "WITHMATCHLEN"],
            b"*4\r\n$7\r\nmatches\r\n*1\r\n*3\r\n*2\r\n:0\r\n:7\r\n*2\r\n:0\r\n:7\r\n:8\r\n\
              $3\r\nlen\r\n:8\r\n",
        ),
        (
            &["LCS", "key1", "key2", "LEN", "IDX"],
            b"-ERR If you want both the length and indexes, please just use IDX.\r\n",
        ),
        (
            &["LCS", "key1", "key2", "IDX", "MINMATCHLEN", "2", "WITHMATCHLEN", "LEN"],
            b"-ERR If you want both the length and indexes, please just use IDX.\r\n",
        ),
        (&["LCS", "key1", "key2", "MINMATCHLEN"], b"-ERR syntax error\r\n"),
        (
            &["LCS", "key1", "key2", "MINMATCHLEN", "x"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (
            &["LCS", "key1", "key2", "MINMATCHLEN", "x", "LEN", "IDX"],
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (&["LCS", "key1", "key2", "foo"], b"-ERR syntax error\r\n"),
        (&["LCS", "key1", "key2", "LEN", "IDX", "foo"], b"-ERR syntax error\r\n"),
        (&["LCS", "key1", "key2", "WITHMATCHLEN"], b"$6\r\nmytext\r\n"),
        (&["LCS", "key1", "key2", "LEN", "WITHMATCHLEN"], b":6\r\n"),
        (&["LCS", "key1", "key2", "LEN", "LEN"], b":6\r\n"),
        // A missing key is an empty string.
        (&["LCS", "key1", "nosuch"], b"$0\r\n\r\n"),
        (&["LCS", "nosuch", "nosuch2", "LEN"], b":0\r\n"),
        (&["LCS", "nosuch", "nosuch2", "IDX"], b"*4\r\n$7\r\nmatches\r\n*0\r\n$3\r\nlen\r\n:0\r\n"),
        (&["MSET", "a", "abcXdefYghi", "b", "abcZdefWghi"], b"+OK\r\n"),
        (
            &["LCS", "a", "b", "IDX", "WITHMATCHLEN"],
            b"*4\r\n$7\r\nmatches\r\n*3\r\n*3\r\n*2\r\n:8\r\n:10\r\n*2\r\n:8\r\n:10\r\n:3\r\n\
              *3\r\n*2\r\n:4\r\n:6\r\n*2\r\n:4\r\n:6\r\n:3\r\n*3\r\n*2\r\n:0\r\n:2\r\n\
              *2\r\n:0\r\n:2\r\n:3\r\n$3\r\nlen\r\n:9\r\n",
        ),
        (
            &["LCS", "a", "b", "IDX", "MINMATCHLEN", "10"],
            b"*4\r\n$7\r\nmatches\r\n*0\r\n$3\r\nlen\r\n:9\r\n",
        ),
    ];
    run(&mut c, steps).await;
    switch_to_resp3(&mut c).await;
    let resp3: &[Step] = &[
        (
            &["LCS", "key1", "key2", "IDX", "WITHMATCHLEN"],
            b"%2\r\n$7\r\nmatches\r\n*2\r\n*3\r\n*2\r\n:4\r\n:7\r\n*2\r\n:5\r\n:8\r\n:4\r\n\
              *3\r\n*2\r\n:2\r\n:3\r\n*2\r\n:0\r\n:1\r\n:2\r\n$3\r\nlen\r\n:6\r\n",
        ),
        (&["LCS", "nosuch", "nosuch2", "IDX"], b"%2\r\n$7\r\nmatches\r\n*0\r\n$3\r\nlen\r\n:0\r\n"),
        (&["LCS", "key1", "key2"], b"$6\r\nmytext\r\n"),
        (&["LCS", "key1", "key2", "LEN"], b":6\r\n"),
    ];
    run(&mut c, resp3).await;
}

/// Redis refuses an LCS whose table (4 bytes per pair of prefixes) would pass
/// proto-max-bulk-len, before computing anything: two 11,601-byte values need 538 MB.
#[tokio::test]
async fn lcs_refuses_a_table_larger_than_proto_max_bulk_len() {
    let node = start().await;
    let mut c = node.raw().await;
    let (a, b) = (vec![b'a'; 11_601], vec![b'b'; 11_601]);
    c.expect(&cmd_bytes(&[b"SET", b"la", &a]), b"+OK\r\n").await;
    c.expect(&cmd_bytes(&[b"SET", b"lb", &b]), b"+OK\r\n").await;
    for option in ["LEN", "IDX"] {
        c.expect(
            &cmd(&["LCS", "la", "lb", option]),
            b"-ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len\r\n",
        )
        .await;
    }
}

#[tokio::test]
async fn rename_and_copy_run_inside_multi_exec() {
    let node = start().await;
    let mut c = node.raw().await;
    let steps: &[Step] = &[
        (&["MULTI"], b"+OK\r\n"),
        (&["SET", "m1", "x"], b"+QUEUED\r\n"),
        (&["RENAME", "m1", "m2"], b"+QUEUED\r\n"),
        (&["COPY", "m2", "m3"], b"+QUEUED\r\n"),
        (&["RENAME", "nosuch", "m4"], b"+QUEUED\r\n"),
        (&["COPY", "m2", "m2"], b"+QUEUED\r\n"),
        (&["OBJECT", "ENCODING", "m3"], b"+QUEUED\r\n"),
        (&["LCS", "m2", "m3"], b"+QUEUED\r\n"),
        (&["SETBIT", "m3", "15", "1"], b"+QUEUED\r\n"),
        (&["BITCOUNT", "m3"], b"+QUEUED\r\n"),
        (&["MGET", "m1", "m2", "m3"], b"+QUEUED\r\n"),
        (
            &["EXEC"],
            b"*10\r\n+OK\r\n+OK\r\n:1\r\n-ERR no such key\r\n\
              -ERR source and destination objects are the same\r\n$6\r\nembstr\r\n$1\r\nx\r\n\
              :0\r\n:5\r\n*3\r\n$-1\r\n$1\r\nx\r\n$2\r\nx\x01\r\n",
        ),
        (&["MULTI"], b"+OK\r\n"),
        (&["RENAME", "m2"], b"-ERR wrong number of arguments for 'rename' command\r\n"),
        (&["COPY", "m2", "m5"], b"+QUEUED\r\n"),
        (&["EXEC"], b"-EXECABORT Transaction discarded because of previous errors.\r\n"),
        (&["EXISTS", "m5"], b":0\r\n"),
    ];
    run(&mut c, steps).await;
}

/// Two keys of the same length that live in different shards.
fn keys_in_two_shards(node: &server_support::TestNode) -> (String, String) {
    let store = &node.handle.node.store;
    let first = "k000".to_string();
    let other = (1..1000)
        .map(|i| format!("k{i:03}"))
        .find(|k| store.shard_of(k.as_bytes()) != store.shard_of(first.as_bytes()))
        .expect("a key in another shard");
    (first, other)
}

#[tokio::test]
async fn rename_and_copy_move_keys_across_shards() {
    let node = start().await;
    let mut c = node.raw().await;
    let (a, b) = keys_in_two_shards(&node);
    let value = "v".repeat(100);
    c.expect(&cmd(&["SET", &a, &value, "PXAT", "4000000000123"]), b"+OK\r\n").await;
    c.expect(&cmd(&["RENAME", &a, &b]), b"+OK\r\n").await;
    c.expect(&cmd(&["EXISTS", &a]), b":0\r\n").await;
    c.expect(&cmd(&["PEXPIRETIME", &b]), b":4000000000123\r\n").await;
    c.expect(&cmd(&["GET", &b]), format!("$100\r\n{value}\r\n").as_bytes()).await;
    c.expect(&cmd(&["RENAMENX", &b, &a]), b":1\r\n").await;
    c.expect(&cmd(&["COPY", &a, &b]), b":1\r\n").await;
    c.expect(&cmd(&["PEXPIRETIME", &b]), b":4000000000123\r\n").await;
    c.expect(&cmd(&["LCS", &a, &b, "LEN"]), b":100\r\n").await;
    c.expect(&cmd(&["DBSIZE"]), b":2\r\n").await;
    let store = &node.handle.node.store;
    assert_eq!(store.check_ttl_index(), Ok(()));
    assert_eq!(store.ttl_keys_unlocked(), 2);
}

/// One WATCH case: the keys set first, the keys watched, another client's write and its reply,
/// and whether the watcher's EXEC then fails.
struct WatchCase<'a> {
    setup: &'a [(&'a str, &'a str)],
    watched: &'a [&'a str],
    write: &'a [&'a str],
    write_reply: &'a [u8],
    exec_fails: bool,
}

/// WATCH sees RENAME and COPY change the destination (and RENAME the source), but not a rename
/// onto itself, a COPY or RENAMENX refused, a TOUCH or a SETBIT that changes no bit: each case as
/// redis-server 7.0.15 ran it with two clients.
#[tokio::test]
async fn watch_fails_exec_after_a_rename_onto_the_watched_key() {
    let node = start().await;
    let mut c = [node.raw().await, node.raw().await];
    let moved = &[("src", "v"), ("dst", "old")][..];
    // "1" is 0x31: bit 0 is 0, bit 2 is 1.
    let one = &[("a", "1"), ("copied", "x")][..];
    let cases = [
        WatchCase {
            setup: moved,
            watched: &["dst"],
            write: &["RENAME", "src", "dst"],
            write_reply: b"+OK\r\n",
            exec_fails: true,
        },
        WatchCase {
            setup: moved,
            watched: &["src"],
            write: &["RENAME", "src", "dst"],
            write_reply: b"+OK\r\n",
            exec_fails: true,
        },
        WatchCase {
            setup: moved,
            watched: &["fresh"],
            write: &["RENAMENX", "src", "fresh"],
            write_reply: b":1\r\n",
            exec_fails: true,
        },
        WatchCase {
            setup: one,
            watched: &["new"],
            write: &["COPY", "a", "new"],
            write_reply: b":1\r\n",
            exec_fails: true,
        },
        WatchCase {
            setup: one,
            watched: &["copied"],
            write: &["COPY", "a", "copied", "REPLACE"],
            write_reply: b":1\r\n",
            exec_fails: true,
        },
        WatchCase {
            setup: one,
            watched: &["a"],
            write: &["SETBIT", "a", "0", "1"],
            write_reply: b":0\r\n",
            exec_fails: true,
        },
        WatchCase {
            setup: one,
            watched: &["a"],
            write: &["RENAME", "a", "a"],
            write_reply: b"+OK\r\n",
            exec_fails: false,
        },
        WatchCase {
            setup: one,
            watched: &["a"],
            write: &["RENAMENX", "a", "a"],
            write_reply: b":0\r\n",
            exec_fails: false,
        },
        WatchCase {
            setup: moved,
            watched: &["src", "dst"],
            write: &["RENAMENX", "src", "dst"],
            write_reply: b":0\r\n",
            exec_fails: false,
        },
        WatchCase {
            setup: one,
            watched: &["a", "copied"],
            write: &["COPY", "a", "copied"],
            write_reply: b":0\r\n",
            exec_fails: false,
        },
        WatchCase {
            setup: one,
            watched: &["a"],
            write: &["TOUCH", "a"],
            write_reply: b":1\r\n",
            exec_fails: false,
        },
        WatchCase {
            setup: one,
            watched: &["a"],
            write: &["SETBIT", "a", "2", "1"],
            write_reply: b":1\r\n",
            exec_fails: false,
        },
        WatchCase {
            setup: one,
            watched: &["nosuch"],
            write: &["RENAME", "nosuch", "other"],
            write_reply: b"-ERR no such key\r\n",
            exec_fails: false,
        },
    ];
    for case in cases {
        c[1].expect(&cmd(&["FLUSHALL"]), b"+OK\r\n").await;
        for (key, value) in case.setup {
            c[1].expect(&cmd(&["SET", key, value]), b"+OK\r\n").await;
        }
        let watch: Vec<&str> =
            std::iter::once("WATCH").chain(case.watched.iter().copied()).collect();
        c[0].expect(&cmd(&watch), b"+OK\r\n").await;
        c[1].expect(&cmd(case.write), case.write_reply).await;
        c[0].expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
        c[0].expect(&cmd(&["PING"]), b"+QUEUED\r\n").await;
        let expected: &[u8] = if case.exec_fails { b"*-1\r\n" } else { b"*1\r\n+PONG\r\n" };
        c[0].expect(&cmd(&["EXEC"]), expected).await;
    }
}

/// RENAME moves the accounted bytes from one key to the other, COPY adds one entry's cost, and
/// deleting the copy and the key brings `used_memory` back to the figures before.
#[tokio::test]
async fn memory_accounting_comes_back_after_rename_copy_and_delete() {
    let node = start_with(|c| c.maintenance_interval = Duration::from_secs(3600)).await;
    let mut c = node.raw().await;
    // Every shard's tables allocated first, so that the figures below move by entries only.
    for i in 0..64 {
        c.expect(&cmd(&["SET", &format!("warm{i}"), "v"]), b"+OK\r\n").await;
        c.expect(&cmd(&["DEL", &format!("warm{i}")]), b":1\r\n").await;
    }
    let empty = used_memory(&mut c).await;
    let (a, renamed) = keys_in_two_shards(&node);
    let value = "v".repeat(1000);
    c.expect(&cmd(&["SET", &a, &value, "PXAT", "4000000000123"]), b"+OK\r\n").await;
    let one = used_memory(&mut c).await;
    assert!(one > empty + 1000, "{empty} -> {one}");
    c.expect(&cmd(&["RENAME", &a, &renamed]), b"+OK\r\n").await;
    assert_eq!(used_memory(&mut c).await, one, "RENAME moved the entry's cost, no more");
    c.expect(&cmd(&["COPY", &renamed, &a]), b":1\r\n").await;
    assert_eq!(used_memory(&mut c).await - one, one - empty, "COPY added one entry's cost");
    c.expect(&cmd(&["DEL", &a]), b":1\r\n").await;
    assert_eq!(used_memory(&mut c).await, one);
    c.expect(&cmd(&["DEL", &renamed]), b":1\r\n").await;
    assert_eq!(used_memory(&mut c).await, empty);
    assert_eq!(node.handle.node.store.check_ttl_index(), Ok(()));
}

/// SETBIT pads its value up to the offset's byte: a write that cannot fit under maxmemory is
/// refused with Redis's OOM error before anything is allocated (on its own, or as EXEC's
/// reservation for the whole transaction), and one that fits succeeds; COPY likewise for the
/// source's value. The error texts are Redis's; the rule (room for what the write adds, made
/// before it runs) is the node's: Redis only checks the memory already used.
#[tokio::test]
async fn setbit_under_maxmemory_refuses_a_write_that_cannot_fit() {
    let node = start_with(|c| c.maxmemory = 1024 * 1024).await;
    let mut c = node.raw().await;
    let before = node.handle.node.store.used_memory();
    c.expect(
        &cmd(&["SETBIT", "big", "16000000", "1"]),
        b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    )
    .await;
    c.expect(&cmd(&["EXISTS", "big"]), b":0\r\n").await;
    assert_eq!(node.handle.node.store.used_memory(), before);
    c.expect(&cmd(&["SETBIT", "big", "800000", "1"]), b":0\r\n").await;
    c.expect(&cmd(&["STRLEN", "big"]), b":100001\r\n").await;
    // Growing it past the limit is refused too; a bit within it is not a growth.
    c.expect(
        &cmd(&["SETBIT", "big", "16000000", "1"]),
        b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    )
    .await;
    c.expect(&cmd(&["SETBIT", "big", "799999", "1"]), b":0\r\n").await;
    c.expect(&cmd(&["BITCOUNT", "big"]), b":2\r\n").await;
    // EXEC makes room for its SETBIT's padding before running anything, and refuses it whole.
    let oom_exec: &[Step] = &[
        (&["MULTI"], b"+OK\r\n"),
        (&["SETBIT", "huge", "16000000", "1"], b"+QUEUED\r\n"),
        (
            &["EXEC"],
            b"-EXECABORT Transaction discarded because of: OOM command not allowed when used \
              memory > 'maxmemory'.\r\n",
        ),
        (&["EXISTS", "huge"], b":0\r\n"),
    ];
    run(&mut c, oom_exec).await;
    // COPY makes room for the source's value: a second copy of 600 KB cannot fit in 1 MB.
    let value = vec![b'x'; 600_000];
    c.expect(&cmd(&["DEL", "big"]), b":1\r\n").await;
    c.expect(&cmd_bytes(&[b"SET", b"src", &value]), b"+OK\r\n").await;
    c.expect(
        &cmd(&["COPY", "src", "dst"]),
        b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    )
    .await;
    c.expect(&cmd(&["EXISTS", "dst"]), b":0\r\n").await;
    let copy_exec: &[Step] = &[
        (&["MULTI"], b"+OK\r\n"),
        (&["COPY", "src", "dst"], b"+QUEUED\r\n"),
        (
            &["EXEC"],
            b"-EXECABORT Transaction discarded because of: OOM command not allowed when used \
              memory > 'maxmemory'.\r\n",
        ),
        (&["EXISTS", "dst"], b":0\r\n"),
    ];
    run(&mut c, copy_exec).await;
    assert!(node.handle.node.store.used_memory() <= 1024 * 1024);
}

/// With an eviction policy, COPY evicts enough keys for the source's value first: the copy
/// succeeds and the accounted memory stays under maxmemory.
#[tokio::test]
async fn copy_evicts_enough_for_the_source_value() {
    const LIMIT: usize = 1024 * 1024;
    let node = start_with(|c| {
        c.maxmemory = LIMIT as u64;
        c.eviction_policy = EvictionPolicy::VolatileTtl;
    })
    .await;
    let store = &node.handle.node.store;
    let mut c = node.raw().await;
    // Only these have a TTL, so only these can be evicted: never the source.
    let filler = "f".repeat(1000);
    for i in 0..500 {
        c.expect(&cmd(&["SET", &format!("k{i}"), &filler, "EX", "1000"]), b"+OK\r\n").await;
    }
    let value = vec![b'x'; 300_000];
    c.expect(&cmd_bytes(&[b"SET", b"src", &value]), b"+OK\r\n").await;
    let evicted = store.evicted_total.get();
    c.expect(&cmd(&["COPY", "src", "dst"]), b":1\r\n").await;
    assert!(store.evicted_total.get() > evicted, "COPY made room by evicting");
    assert!(store.used_memory() <= LIMIT, "used {}", store.used_memory());
    c.expect(&cmd(&["STRLEN", "dst"]), b":300000\r\n").await;
}

/// OBJECT IDLETIME counts whole seconds since the key's value was last read or written; it and
/// EXISTS, TYPE, TTL and MEMORY USAGE do not count as a use (Redis's `LOOKUP_NOTOUCH`), while
/// GET and TOUCH do, and RENAME and COPY leave a key just used.
#[tokio::test]
async fn object_idletime_counts_from_the_last_use_without_touching() {
    let clock = ManualClock::new(1_000_000);
    let node = start_with({
        let clock = clock.clone();
        move |c| c.clock = clock
    })
    .await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["SET", "k", "hello"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SET", "other", "hello"]), b"+OK\r\n").await;
    clock.advance_ms(5_500);
    let looks: &[Step] = &[
        (&["EXISTS", "k"], b":1\r\n"),
        (&["TYPE", "k"], b"+string\r\n"),
        (&["TTL", "k"], b":-1\r\n"),
        (&["PTTL", "k"], b":-1\r\n"),
        (&["EXPIRETIME", "k"], b":-1\r\n"),
        // The node's accounted cost (1 + 5 + 96 bytes), not Redis's allocator figure.
        (&["MEMORY", "USAGE", "k"], b":102\r\n"),
        (&["OBJECT", "ENCODING", "k"], b"$6\r\nembstr\r\n"),
        (&["OBJECT", "IDLETIME", "k"], b":5\r\n"),
    ];
    run(&mut c, looks).await;
    c.expect(&cmd(&["OBJECT", "IDLETIME", "k"]), b":5\r\n").await;
    c.expect(&cmd(&["GET", "k"]), b"$5\r\nhello\r\n").await;
    c.expect(&cmd(&["OBJECT", "IDLETIME", "k"]), b":0\r\n").await;
    clock.advance_ms(2_000);
    c.expect(&cmd(&["OBJECT", "IDLETIME", "k"]), b":2\r\n").await;
    c.expect(&cmd(&["TOUCH", "k"]), b":1\r\n").await;
    c.expect(&cmd(&["OBJECT", "IDLETIME", "k"]), b":0\r\n").await;
    c.expect(&cmd(&["OBJECT", "IDLETIME", "other"]), b":7\r\n").await;
    c.expect(&cmd(&["RENAME", "other", "renamed"]), b"+OK\r\n").await;
    c.expect(&cmd(&["OBJECT", "IDLETIME", "renamed"]), b":0\r\n").await;
    clock.advance_ms(3_000);
    c.expect(&cmd(&["COPY", "renamed", "copied"]), b":1\r\n").await;
    c.expect(&cmd(&["OBJECT", "IDLETIME", "copied"]), b":0\r\n").await;
    c.expect(&cmd(&["OBJECT", "IDLETIME", "k"]), b":3\r\n").await;
}

/// A command's name, arity, flags and key positions (first, last, step) in COMMAND INFO.
type CommandRow<'a> = (&'a str, i32, &'a [&'a str], (i32, i32, i32), &'a [&'a str]);

/// COMMAND INFO reports each new command's arity, flags and key positions as redis-server
/// 7.0.15's own COMMAND INFO does.
#[tokio::test]
async fn command_info_reports_redis_flags_for_the_new_commands() {
    let node = start().await;
    let mut c = node.raw().await;
    let info = server_support::command_info_reply;
    let expected: &[CommandRow] = &[
        ("rename", 3, &["write"], (1, 2, 1), &["keyspace", "write", "slow"]),
        ("renamenx", 3, &["write", "fast"], (1, 2, 1), &["keyspace", "write", "fast"]),
        ("copy", -3, &["write", "denyoom"], (1, 2, 1), &["keyspace", "write", "slow"]),
        ("touch", -2, &["readonly", "fast"], (1, -1, 1), &["keyspace", "read", "fast"]),
        ("object|help", 2, &["loading", "stale"], (0, 0, 0), &["keyspace", "slow"]),
        ("setbit", 4, &["write", "denyoom"], (1, 1, 1), &["write", "bitmap", "slow"]),
        ("getbit", 3, &["readonly", "fast"], (1, 1, 1), &["read", "bitmap", "fast"]),
        ("bitcount", -2, &["readonly"], (1, 1, 1), &["read", "bitmap", "slow"]),
        ("lcs", -3, &["readonly"], (1, 2, 1), &["read", "string", "slow"]),
    ];
    for (name, arity, flags, keys, categories) in expected {
        let reply = info(name, *arity, flags, *keys, categories);
        c.expect(&cmd(&["COMMAND", "INFO", name]), &reply).await;
    }
}
