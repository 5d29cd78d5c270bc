//! Hashes and sets: Redis 7's replies byte for byte (the step table below was run against
//! redis-server 7.0.15 and gave these bytes, errors included; every string command on a hash
//! answers -WRONGTYPE), the RESP3 shapes, WATCH, the memory accounting back to its figure once
//! the collections are gone, tombstones inside a hash counted in `/v1/stats` and purged by the
//! node's own upkeep, maxmemory refusing or evicting for HSET and SADD, and a snapshot restoring
//! both types with their TTLs. Random-order replies (more than one element) are compared as
//! sets; the differential test (tests/server_differential.rs) covers random sequences.

mod server_support;

use std::collections::BTreeSet;

use mapcache::server::EvictionPolicy;
use redis::AsyncCommands;
use server_support::{cmd, get_json, post_json, start, start_with};
use tokio::io::AsyncWriteExt;

/// A command's arguments and the reply it must get.
type Step<'a> = (&'a [&'a str], &'a [u8]);

const STEPS: &[Step<'_>] = &[
    (&["HSET", "h", "f1", "v1"], b":1\r\n"),
    (&["HSET", "h", "f1", "v2", "f2", "v3"], b":1\r\n"),
    (&["HSET", "h", "f1"], b"-ERR wrong number of arguments for 'hset' command\r\n"),
    (&["HMSET", "h", "f3", "10"], b"+OK\r\n"),
    (&["HSETNX", "h", "f3", "x"], b":0\r\n"),
    (&["HSETNX", "h", "f4", "x"], b":1\r\n"),
    (&["HGET", "h", "f1"], b"$2\r\nv2\r\n"),
    (&["HGET", "h", "nofield"], b"$-1\r\n"),
    (&["HGET", "nokey", "f1"], b"$-1\r\n"),
    (&["HMGET", "h", "f1", "nofield", "f3"], b"*3\r\n$2\r\nv2\r\n$-1\r\n$2\r\n10\r\n"),
    (&["HMGET", "nokey", "a", "b"], b"*2\r\n$-1\r\n$-1\r\n"),
    (&["HLEN", "h"], b":4\r\n"),
    (&["HLEN", "nokey"], b":0\r\n"),
    (&["HEXISTS", "h", "f1"], b":1\r\n"),
    (&["HEXISTS", "h", "nofield"], b":0\r\n"),
    (&["HSTRLEN", "h", "f2"], b":2\r\n"),
    (&["HSTRLEN", "h", "nofield"], b":0\r\n"),
    (&["HINCRBY", "h", "f3", "5"], b":15\r\n"),
    (&["HINCRBY", "h", "f3", "-20"], b":-5\r\n"),
    (&["HINCRBY", "h", "f1", "1"], b"-ERR hash value is not an integer\r\n"),
    (&["HINCRBY", "h", "f3", "abc"], b"-ERR value is not an integer or out of range\r\n"),
    (&["HINCRBY", "h", "big", "9223372036854775807"], b":9223372036854775807\r\n"),
    (&["HINCRBY", "h", "big", "1"], b"-ERR increment or decrement would overflow\r\n"),
    (&["HINCRBYFLOAT", "h", "f3", "1.5"], b"$4\r\n-3.5\r\n"),
    (&["HINCRBYFLOAT", "h", "f1", "1"], b"-ERR hash value is not a float\r\n"),
    (&["HINCRBYFLOAT", "h", "f3", "abc"], b"-ERR value is not a valid float\r\n"),
    (&["HINCRBYFLOAT", "h", "f3", "inf"], b"-ERR value is NaN or Infinity\r\n"),
    (&["HINCRBYFLOAT", "h", "new", "3.0e2"], b"$3\r\n300\r\n"),
    (&["HDEL", "h", "f1", "f2", "nofield"], b":2\r\n"),
    (&["HDEL", "h", "f1"], b":0\r\n"),
    (&["HDEL", "nokey", "f1"], b":0\r\n"),
    (&["HRANDFIELD", "nokey"], b"$-1\r\n"),
    (&["HRANDFIELD", "nokey", "3"], b"*0\r\n"),
    (&["HRANDFIELD", "h", "abc"], b"-ERR value is not an integer or out of range\r\n"),
    (&["HRANDFIELD", "h", "1", "WITHVALUE"], b"-ERR syntax error\r\n"),
    (&["HRANDFIELD", "h", "-9223372036854775808"], b"-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"),
    (&["HRANDFIELD", "h", "0"], b"*0\r\n"),
    (&["HSCAN", "h", "abc"], b"-ERR invalid cursor\r\n"),
    (&["HSCAN", "nokey", "0", "COUNT", "0"], b"*2\r\n$1\r\n0\r\n*0\r\n"),
    (&["HSCAN", "h", "0", "COUNT", "0"], b"-ERR syntax error\r\n"),
    (&["HSCAN", "h", "0", "MATCH"], b"-ERR syntax error\r\n"),
    (&["HSET", "one", "only", "1"], b":1\r\n"),
    (&["HGETALL", "one"], b"*2\r\n$4\r\nonly\r\n$1\r\n1\r\n"),
    (&["HKEYS", "one"], b"*1\r\n$4\r\nonly\r\n"),
    (&["HVALS", "one"], b"*1\r\n$1\r\n1\r\n"),
    (&["HSCAN", "one", "0", "MATCH", "o*"], b"*2\r\n$1\r\n0\r\n*2\r\n$4\r\nonly\r\n$1\r\n1\r\n"),
    (&["HRANDFIELD", "one", "5", "WITHVALUES"], b"*2\r\n$4\r\nonly\r\n$1\r\n1\r\n"),
    (&["HRANDFIELD", "one"], b"$4\r\nonly\r\n"),
    (&["HGETALL", "nokey"], b"*0\r\n"),
    (&["HKEYS", "nokey"], b"*0\r\n"),
    (&["SADD", "s", "a", "b", "a"], b":2\r\n"),
    (&["SADD", "s", "c"], b":1\r\n"),
    (&["SREM", "s", "a", "z"], b":1\r\n"),
    (&["SREM", "nokey", "a"], b":0\r\n"),
    (&["SISMEMBER", "s", "b"], b":1\r\n"),
    (&["SISMEMBER", "s", "z"], b":0\r\n"),
    (&["SMISMEMBER", "s", "b", "z", "c"], b"*3\r\n:1\r\n:0\r\n:1\r\n"),
    (&["SMISMEMBER", "nokey", "a"], b"*1\r\n:0\r\n"),
    (&["SCARD", "s"], b":2\r\n"),
    (&["SCARD", "nokey"], b":0\r\n"),
    (&["SPOP", "nokey"], b"$-1\r\n"),
    (&["SPOP", "nokey", "3"], b"*0\r\n"),
    (&["SPOP", "s", "-1"], b"-ERR value is out of range, must be positive\r\n"),
    (&["SPOP", "s", "abc"], b"-ERR value is out of range, must be positive\r\n"),
    (&["SPOP", "s", "0"], b"*0\r\n"),
    (&["SRANDMEMBER", "nokey"], b"$-1\r\n"),
    (&["SRANDMEMBER", "nokey", "2"], b"*0\r\n"),
    (&["SRANDMEMBER", "s", "abc"], b"-ERR value is not an integer or out of range\r\n"),
    (&["SRANDMEMBER", "s", "1", "2"], b"-ERR syntax error\r\n"),
    (&["SRANDMEMBER", "s", "-9223372036854775808"], b"-ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807\r\n"),
    (&["SADD", "one1", "m"], b":1\r\n"),
    (&["SMEMBERS", "one1"], b"*1\r\n$1\r\nm\r\n"),
    (&["SMEMBERS", "nokey"], b"*0\r\n"),
    (&["SRANDMEMBER", "one1", "3"], b"*1\r\n$1\r\nm\r\n"),
    (&["SRANDMEMBER", "one1", "-2"], b"*2\r\n$1\r\nm\r\n$1\r\nm\r\n"),
    (&["SSCAN", "one1", "0"], b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nm\r\n"),
    (&["SSCAN", "one1", "x"], b"-ERR invalid cursor\r\n"),
    (&["SADD", "s2", "b", "x"], b":2\r\n"),
    (&["SINTER", "s", "s2"], b"*1\r\n$1\r\nb\r\n"),
    (&["SINTER", "s", "nokey"], b"*0\r\n"),
    (&["SUNION", "one1", "nokey"], b"*1\r\n$1\r\nm\r\n"),
    (&["SDIFF", "s", "s2", "one1"], b"*1\r\n$1\r\nc\r\n"),
    (&["SDIFF", "nokey", "s"], b"*0\r\n"),
    (&["SINTERSTORE", "dst", "s", "s2"], b":1\r\n"),
    (&["SMEMBERS", "dst"], b"*1\r\n$1\r\nb\r\n"),
    (&["SINTERSTORE", "dst", "s", "nokey"], b":0\r\n"),
    (&["EXISTS", "dst"], b":0\r\n"),
    (&["SUNIONSTORE", "dst", "one1"], b":1\r\n"),
    (&["SDIFFSTORE", "dst", "s", "s"], b":0\r\n"),
    (&["EXISTS", "dst"], b":0\r\n"),
    (&["SET", "str", "v"], b"+OK\r\n"),
    (&["SINTER", "s", "str"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SINTERSTORE", "str", "one1"], b":1\r\n"),
    (&["TYPE", "str"], b"+set\r\n"),
    (&["SMEMBERS", "str"], b"*1\r\n$1\r\nm\r\n"),
    (&["SMOVE", "one1", "s2", "m"], b":1\r\n"),
    (&["SMOVE", "one1", "s2", "m"], b":0\r\n"),
    (&["EXISTS", "one1"], b":0\r\n"),
    (&["SMOVE", "s2", "s2", "m"], b":1\r\n"),
    (&["SMOVE", "nokey", "s2", "m"], b":0\r\n"),
    (&["SET", "str", "v"], b"+OK\r\n"),
    (&["SMOVE", "s2", "str", "m"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SMOVE", "str", "s2", "m"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["TYPE", "h"], b"+hash\r\n"),
    (&["TYPE", "s2"], b"+set\r\n"),
    (&["OBJECT", "ENCODING", "str"], b"$6\r\nembstr\r\n"),
    (&["HSET", "str", "f", "v"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SADD", "str", "m"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["HGET", "str", "f"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SCARD", "str"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["GET", "h"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SET", "h", "v", "GET"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["GETDEL", "h"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["GETEX", "h"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["APPEND", "h", "x"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["INCR", "h"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["INCRBYFLOAT", "h", "1"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["STRLEN", "h"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["GETRANGE", "h", "0", "1"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SETRANGE", "h", "0", "x"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SETRANGE", "h", "536870912", "x"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SETBIT", "h", "0", "1"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["GETBIT", "h", "0"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["BITCOUNT", "h"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["LCS", "h", "str"], b"-ERR The specified keys must contain string values\r\n"),
    (&["MGET", "h", "str"], b"*2\r\n$-1\r\n$1\r\nv\r\n"),
    (&["HSET", "s", "f", "v"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["SADD", "h", "m"], b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
    (&["EXISTS", "h", "s2"], b":2\r\n"),
    (&["SCAN", "0", "TYPE", "set", "MATCH", "s2", "COUNT", "1000"], b"*2\r\n$1\r\n0\r\n*1\r\n$2\r\ns2\r\n"),
    (&["SCAN", "0", "TYPE", "HASH", "MATCH", "o*", "COUNT", "1000"], b"*2\r\n$1\r\n0\r\n*1\r\n$3\r\none\r\n"),
    (&["RENAME", "h", "h2"], b"+OK\r\n"),
    (&["HGET", "h2", "f3"], b"$4\r\n-3.5\r\n"),
    (&["COPY", "h2", "h3"], b":1\r\n"),
    (&["HLEN", "h3"], b":4\r\n"),
    (&["SET", "h3", "plain"], b"+OK\r\n"),
    (&["TYPE", "h3"], b"+string\r\n"),
    (&["EXPIRE", "h2", "100"], b":1\r\n"),
    (&["HDEL", "h2", "f3", "big", "f4", "new"], b":4\r\n"),
    (&["EXISTS", "h2"], b":0\r\n"),
    (&["TTL", "h2"], b":-2\r\n"),
    (&["HSET"], b"-ERR wrong number of arguments for 'hset' command\r\n"),
    (&["HGET", "h"], b"-ERR wrong number of arguments for 'hget' command\r\n"),
    (&["SADD", "s"], b"-ERR wrong number of arguments for 'sadd' command\r\n"),
];

#[tokio::test]
async fn every_reply_matches_redis_byte_for_byte() {
    let node = start().await;
    let mut c = node.raw().await;
    for (args, reply) in STEPS {
        c.expect(&cmd(args), reply).await;
    }
}

#[tokio::test]
async fn resp3_sends_maps_sets_and_pairs_as_redis_does() {
    let node = start().await;
    let mut c = node.raw().await;
    c.stream.write_all(&cmd(&["HELLO", "3"])).await.expect("write");
    c.read_frame().await;
    // From redis-server 7.0.15 with HELLO 3.
    for (args, reply) in [
        (&["HSET", "h", "f", "v"][..], &b":1\r\n"[..]),
        (&["HGETALL", "h"], b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n"),
        (&["HGETALL", "nokey"], b"%0\r\n"),
        (&["HRANDFIELD", "h", "1", "WITHVALUES"], b"*1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n"),
        (
            &["HRANDFIELD", "h", "-2", "WITHVALUES"],
            b"*2\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
        ),
        (&["SADD", "s", "m"], b":1\r\n"),
        (&["SMEMBERS", "s"], b"~1\r\n$1\r\nm\r\n"),
        (&["SMEMBERS", "nokey"], b"~0\r\n"),
        (&["SINTER", "s", "s"], b"~1\r\n$1\r\nm\r\n"),
        (&["SPOP", "s", "5"], b"~1\r\n$1\r\nm\r\n"),
        (&["HGET", "h", "nofield"], b"_\r\n"),
    ] {
        c.stream.write_all(&cmd(args)).await.expect("write");
        assert_eq!(c.read_frame().await, reply, "{args:?}");
    }
}

#[tokio::test]
async fn random_picks_are_distinct_unless_the_count_is_negative() {
    let node = start().await;
    let mut r = node.redis().await;
    let fields: Vec<(String, String)> =
        (0..50).map(|i| (format!("f{i}"), format!("v{i}"))).collect();
    let _: () = r.hset_multiple("h", &fields).await.expect("hset");
    let members: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    let _: () = r.sadd("s", &members).await.expect("sadd");
    for count in [1, 10, 49, 50, 80] {
        let picked: Vec<String> =
            redis::cmd("HRANDFIELD").arg("h").arg(count).query_async(&mut r).await.expect("pick");
        let distinct: BTreeSet<&String> = picked.iter().collect();
        assert_eq!((picked.len(), distinct.len()), (count.min(50), count.min(50)), "{count}");
        let picked: Vec<String> =
            redis::cmd("SRANDMEMBER").arg("s").arg(count).query_async(&mut r).await.expect("pick");
        let distinct: BTreeSet<&String> = picked.iter().collect();
        assert_eq!((picked.len(), distinct.len()), (count.min(50), count.min(50)), "{count}");
        assert!(picked.iter().all(|m| members.contains(m)));
    }
    let picked: Vec<String> =
        redis::cmd("SRANDMEMBER").arg("s").arg(-200).query_async(&mut r).await.expect("pick");
    assert_eq!(picked.len(), 200);
    assert!(picked.iter().collect::<BTreeSet<_>>().len() < 200, "200 picks of 50 repeat");
    let with_values: Vec<String> = redis::cmd("HRANDFIELD")
        .arg("h")
        .arg(-7)
        .arg("WITHVALUES")
        .query_async(&mut r)
        .await
        .expect("pick");
    assert_eq!(with_values.len(), 14);
    for pair in with_values.chunks(2) {
        assert_eq!(pair[1], pair[0].replace('f', "v"), "a field with its own value");
    }
    // SPOP takes distinct members out, and the emptied set is gone.
    let popped: Vec<String> =
        redis::cmd("SPOP").arg("s").arg(30).query_async(&mut r).await.expect("spop");
    assert_eq!(popped.iter().collect::<BTreeSet<_>>().len(), 30);
    let left: usize = r.scard("s").await.expect("scard");
    assert_eq!(left, 20);
    let _: Vec<String> =
        redis::cmd("SPOP").arg("s").arg(30).query_async(&mut r).await.expect("spop");
    let exists: bool = r.exists("s").await.expect("exists");
    assert!(!exists);
}

#[tokio::test]
async fn scans_of_a_large_hash_and_set_return_every_element_once_at_least() {
    let node = start().await;
    let mut r = node.redis().await;
    let fields: Vec<(String, String)> =
        (0..3000).map(|i| (format!("f{i}"), i.to_string())).collect();
    let _: () = r.hset_multiple("h", &fields).await.expect("hset");
    let mut seen = BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, items): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg("h")
            .arg(cursor)
            .arg("COUNT")
            .arg(100)
            .query_async(&mut r)
            .await
            .expect("hscan");
        for pair in items.chunks(2) {
            assert!(pair[0].starts_with("extra") || pair[0] == format!("f{}", pair[1]), "{pair:?}");
            seen.insert(pair[0].clone());
        }
        // Writes between pages do not make the scan miss what stays.
        let _: () = r.hset("h", format!("extra{cursor}"), "x").await.expect("hset");
        if next == 0 {
            break;
        }
        cursor = next;
    }
    assert!(fields.iter().all(|(f, _)| seen.contains(f)), "{} of 3000 seen", seen.len());
    let matched: (u64, Vec<String>) =
        redis::cmd("SSCAN").arg("nokey").arg(0).query_async(&mut r).await.expect("sscan");
    assert_eq!(matched, (0, vec![]));
}

#[tokio::test]
async fn watch_sees_changes_to_hashes_and_sets_and_not_what_changes_nothing() {
    let node = start().await;
    let mut a = node.raw().await;
    let mut b = node.raw().await;
    a.expect(&cmd(&["HSET", "h", "f", "1"]), b":1\r\n").await;
    a.expect(&cmd(&["SADD", "s", "m"]), b":1\r\n").await;
    for (change, fails) in [
        (&["HDEL", "h", "nofield"][..], false),
        (&["SREM", "s", "nomember"], false),
        (&["SADD", "s", "m"], false),
        (&["HSETNX", "h", "f", "2"], false),
        (&["HSET", "h", "f", "2"], true),
        (&["HINCRBY", "h", "f", "1"], true),
        (&["SADD", "s", "other"], true),
        (&["SREM", "s", "other"], true),
        (&["SPOP", "s", "0"], false),
    ] {
        a.expect(&cmd(&["WATCH", "h", "s"]), b"+OK\r\n").await;
        b.stream.write_all(&cmd(change)).await.expect("write");
        b.read_frame().await;
        a.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
        a.expect(&cmd(&["HLEN", "h"]), b"+QUEUED\r\n").await;
        a.stream.write_all(&cmd(&["EXEC"])).await.expect("write");
        let reply = a.read_frame().await;
        assert_eq!(reply == b"*-1\r\n", fails, "{change:?}: {}", String::from_utf8_lossy(&reply));
    }
}

/// INFO's `used_memory`.
async fn used_memory(r: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query_async(r).await.expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.parse().ok())
        .expect("used_memory")
}

#[tokio::test]
async fn memory_is_accounted_while_collections_live_and_given_back_when_they_go() {
    let node = start().await;
    let mut r = node.redis().await;
    let _: () = r.set("anchor", "x").await.expect("set");
    let base = used_memory(&mut r).await;
    let fields: Vec<(String, String)> =
        (0..5000).map(|i| (format!("field:{i}"), "v".repeat(100))).collect();
    let _: () = r.hset_multiple("h", &fields).await.expect("hset");
    let members: Vec<String> = (0..5000).map(|i| format!("member:{i}")).collect();
    let _: () = r.sadd("s", &members).await.expect("sadd");
    let _: () =
        redis::cmd("SUNIONSTORE").arg("s2").arg("s").query_async(&mut r).await.expect("store");
    let full = used_memory(&mut r).await;
    // At least the field and value bytes: 5000 * (10 + 100), and the members twice.
    assert!(full > base + 5000 * 110 + 2 * 5000 * 11, "{base} -> {full}");
    let usage: u64 =
        redis::cmd("MEMORY").arg("USAGE").arg("h").query_async(&mut r).await.expect("usage");
    assert!(usage > 5000 * 110, "{usage}");
    let half: Vec<String> = (0..2500).map(|i| format!("field:{i}")).collect();
    let _: () = r.hdel("h", &half).await.expect("hdel");
    let _: () = redis::cmd("SPOP").arg("s").arg(100).query_async(&mut r).await.expect("spop");
    let _: () = r.del(&["h", "s", "s2"]).await.expect("del");
    assert_eq!(used_memory(&mut r).await, base, "every byte accounted for came back");
}

#[tokio::test]
async fn tombstones_inside_a_hash_count_in_stats_and_the_node_purges_them() {
    let node = start().await;
    let mut r = node.redis().await;
    let fields: Vec<(String, String)> =
        (0..20_000).map(|i| (format!("f{i}"), "v".into())).collect();
    let _: () = r.hset_multiple("h", &fields).await.expect("hset");
    let full: u64 =
        redis::cmd("MEMORY").arg("USAGE").arg("h").query_async(&mut r).await.expect("usage");
    // HDEL one field at a time, so that the node sees the tombstones pile up between commands.
    for i in 0..19_900 {
        let _: () = r.hdel("h", format!("f{i}")).await.expect("hdel");
    }
    // The node's own upkeep (no operator, no POST) rebuilds the hash smaller once its tombstones
    // outnumber its fields (and 64): what is left is below that line.
    let stats_url = node.admin_url("/v1/stats");
    let mut last = (serde_json::Value::Null, 0);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (_, stats) = get_json(&stats_url).await;
        let usage: u64 =
            redis::cmd("MEMORY").arg("USAGE").arg("h").query_async(&mut r).await.expect("usage");
        let tombstones = stats["collection_tombstones"].as_u64().expect("field");
        if tombstones <= 100 && usage * 20 < full {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not purged ({full} bytes before): {last:?}");
        last = (stats, usage);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let len: usize = r.hlen("h").await.expect("hlen");
    assert_eq!(len, 100);
    let metrics = server_support::get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("mapcache_collection_tombstones "), "{metrics}");
}

#[tokio::test]
async fn an_operator_compaction_reaches_inside_hashes_and_sets() {
    // Upkeep alone starts only past its thresholds; a compaction purges any tombstones.
    let node = start().await;
    let mut r = node.redis().await;
    let members: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let _: () = r.sadd("s", &members).await.expect("sadd");
    let _: () = r.srem("s", &members[..200]).await.expect("srem");
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    // Not one per SREM: a delete that ends a run of empty slots leaves none (`emptyRest`).
    assert!(stats["collection_tombstones"].as_u64().expect("field") > 100, "{stats}");
    let (status, _) = post_json(&node.admin_url("/v1/compact"), None).await;
    assert_eq!(status, 202);
    let url = node.admin_url("/v1/stats");
    let mut purged = false;
    for _ in 0..6000 {
        let (_, stats) = get_json(&url).await;
        if stats["collection_tombstones"] == 0 {
            purged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(purged, "the compaction left the set's tombstones");
    let left: usize = r.scard("s").await.expect("scard");
    assert_eq!(left, 800);
}

#[tokio::test]
async fn maxmemory_refuses_or_evicts_for_hash_and_set_writes() {
    let node = start_with(|c| {
        c.maxmemory = 4 << 20;
        c.eviction_policy = EvictionPolicy::Noeviction;
    })
    .await;
    let mut c = node.raw().await;
    let value = "x".repeat(100_000);
    let mut refused = false;
    for i in 0..100 {
        c.stream.write_all(&cmd(&["HSET", "h", &format!("f{i}"), &value])).await.expect("write");
        let reply = c.read_frame().await;
        if reply.starts_with(b"-OOM") {
            assert_eq!(reply, b"-OOM command not allowed when used memory > 'maxmemory'.\r\n");
            refused = true;
            break;
        }
        assert_eq!(reply, b":1\r\n");
    }
    assert!(refused, "4 MiB cannot hold 100 fields of 100 kB");
    // Reads and deletes still work; SADD is refused as well.
    c.stream.write_all(&cmd(&["SADD", "s", &value])).await.expect("write");
    assert!(c.read_frame().await.starts_with(b"-OOM"));
    c.expect(&cmd(&["DEL", "h"]), b":1\r\n").await;
    c.expect(&cmd(&["SADD", "s", "m"]), b":1\r\n").await;

    let node = start_with(|c| {
        c.maxmemory = 4 << 20;
        c.eviction_policy = EvictionPolicy::AllkeysLru;
    })
    .await;
    let mut r = node.redis().await;
    for i in 0..100 {
        let _: () = r.hset(format!("h{i}"), "f", &value).await.expect("evicts to make room");
    }
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    assert!(stats["evicted_keys_total"].as_u64().expect("evicted") > 0, "{stats}");
    assert!(stats["memory_bytes"].as_u64().expect("memory") <= 4 << 20, "{stats}");
}

#[tokio::test]
async fn a_snapshot_restores_hashes_and_sets_with_their_ttls() {
    let node = start().await;
    let mut r = node.redis().await;
    let fields: Vec<(String, String)> =
        (0..300).map(|i| (format!("f{i}"), format!("v{i}"))).collect();
    let _: () = r.hset_multiple("h", &fields).await.expect("hset");
    let _: () = r.sadd("s", &["a", "b", "\u{0}\r\n"]).await.expect("sadd");
    let _: () = r.expire("s", 1000).await.expect("expire");
    let _: () = r.set("str", "v").await.expect("set");
    let (status, body) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!(status, 200, "{body}");
    let dir = node.dir.path().to_path_buf();
    drop(r);
    node.handle.shutdown().await.expect("shutdown snapshot");

    let restored = start_with(|c| c.data_dir = dir.clone()).await;
    let mut r = restored.redis().await;
    let all: std::collections::HashMap<String, String> = r.hgetall("h").await.expect("hgetall");
    assert_eq!(all.len(), 300);
    assert_eq!(all["f7"], "v7");
    let members: BTreeSet<String> = r.smembers("s").await.expect("smembers");
    assert_eq!(members, ["a", "b", "\u{0}\r\n"].iter().map(|m| m.to_string()).collect());
    let ttl: i64 = r.ttl("s").await.expect("ttl");
    assert!((1..=1000).contains(&ttl), "{ttl}");
    let kind: String = redis::cmd("TYPE").arg("h").query_async(&mut r).await.expect("type");
    assert_eq!(kind, "hash");
    let value: String = r.get("str").await.expect("get");
    assert_eq!(value, "v");
}
