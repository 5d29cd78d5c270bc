//! Admission under maxmemory: a write that can never fit is refused with Redis's OOM error
//! before anything is evicted (issue 22, item 3: one 70 MB SET, or a 23-byte `SETRANGE k
//! 80000000 x`, evicted 10,000 keys at 64 MB and then failed anyway), whichever command makes
//! it: SET, APPEND, SETRANGE, SETBIT, MSET, EXEC, a script. A write that can fit still evicts
//! what it needs, however many keys that takes.

mod server_support;

use std::time::Duration;

use mapcache::server::store::EvictionPolicy;
use server_support::{Raw, TestNode, cmd, cmd_bytes, get_json, start_with};
use tokio::io::AsyncWriteExt;

const OOM: &[u8] = b"-OOM command not allowed when used memory > 'maxmemory'.\r\n";
const LIMIT: u64 = 4 << 20;

async fn node(policy: EvictionPolicy, limit: u64) -> TestNode {
    start_with(|c| {
        c.maxmemory = limit;
        c.eviction_policy = policy;
        // No background tick finishing a grow between two writes: memory changes only with the
        // test's own commands.
        c.maintenance_interval = Duration::from_secs(3600);
    })
    .await
}

/// `count` keys `{prefix}:{i}` of `size` bytes, with a TTL of an hour when `ttl`.
async fn fill(c: &mut Raw, prefix: &str, count: usize, size: usize, ttl: bool) {
    let value = "v".repeat(size);
    let mut batch = Vec::new();
    for i in 0..count {
        let key = format!("{prefix}:{i}");
        if ttl {
            batch.extend(cmd(&["SET", &key, &value, "EX", "3600"]));
        } else {
            batch.extend(cmd(&["SET", &key, &value]));
        }
    }
    c.expect(&batch, &b"+OK\r\n".repeat(count)).await;
}

/// Sends `request` and asserts the reply is exactly `expected`, without printing the request
/// (megabytes here) on failure.
async fn expect(c: &mut Raw, request: &[u8], expected: &[u8]) {
    c.stream.write_all(request).await.expect("write");
    let got = c.read_exact(expected.len()).await;
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(expected));
}

/// (keys, evicted keys) from `/v1/stats`.
async fn keys_and_evicted(node: &TestNode) -> (u64, u64) {
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    (
        stats["keys"].as_u64().expect("keys"),
        stats["evicted_keys_total"].as_u64().expect("evicted_keys_total"),
    )
}

/// Every kind of write whose growth alone is past maxmemory is refused at once, and the
/// allkeys-lru node keeps every key it had.
#[tokio::test]
async fn a_write_larger_than_maxmemory_is_refused_before_any_key_is_evicted() {
    let node = node(EvictionPolicy::AllkeysLru, LIMIT).await;
    let mut c = node.raw().await;
    fill(&mut c, "k", 2000, 1000, false).await;
    assert_eq!(keys_and_evicted(&node).await, (2000, 0));

    let huge = vec![b'x'; 5 << 20];
    expect(&mut c, &cmd_bytes(&[b"SET", b"big", &huge]), OOM).await;
    c.expect(&cmd(&["SETRANGE", "big", "8000000", "x"]), OOM).await;
    c.expect(&cmd(&["SETBIT", "big", "64000000", "1"]), OOM).await;
    expect(&mut c, &cmd_bytes(&[b"APPEND", b"k:0", &huge]), OOM).await;
    let half = vec![b'y'; 3 << 20];
    expect(&mut c, &cmd_bytes(&[b"MSET", b"a", &half, b"b", &half]), OOM).await;
    c.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    expect(&mut c, &cmd_bytes(&[b"SET", b"a", &half]), b"+QUEUED\r\n").await;
    expect(&mut c, &cmd_bytes(&[b"SET", b"b", &half]), b"+QUEUED\r\n").await;
    c.expect(
        &cmd(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of: OOM command not allowed when used \
          memory > 'maxmemory'.\r\n",
    )
    .await;
    let script = "return redis.pcall('SETRANGE', KEYS[1], 8000000, 'x')";
    c.expect(&cmd(&["EVAL", script, "1", "big"]), OOM).await;

    assert_eq!(keys_and_evicted(&node).await, (2000, 0), "a refused write evicted keys");
    c.expect(&cmd(&["EXISTS", "big", "a", "b"]), b":0\r\n").await;
    c.expect(&cmd(&["STRLEN", "k:0"]), b":1000\r\n").await;
}

/// Under volatile-ttl only keys with a TTL can go: a write that fits under maxmemory but not
/// beside the keys without a TTL is refused without evicting the keys that have one.
#[tokio::test]
async fn a_write_that_eviction_cannot_make_room_for_is_refused_before_any_key_is_evicted() {
    let node = node(EvictionPolicy::VolatileTtl, LIMIT).await;
    let mut c = node.raw().await;
    fill(&mut c, "keep", 2500, 1000, false).await;
    fill(&mut c, "ttl", 200, 1000, true).await;
    assert_eq!(keys_and_evicted(&node).await, (2700, 0));

    // 1.5 MB fits under 4 MB, and would if every key could go; the 200 KB of keys with a TTL
    // cannot make room for it beside 2.5 MB of keys without one.
    let big = vec![b'x'; 1536 << 10];
    expect(&mut c, &cmd_bytes(&[b"SET", b"big", &big]), OOM).await;
    c.expect(&cmd(&["SETRANGE", "big", "1572864", "x"]), OOM).await;
    assert_eq!(keys_and_evicted(&node).await, (2700, 0), "a refused write evicted keys");

    // A write that the keys with a TTL can make room for still evicts them.
    let fits = vec![b'z'; 100 << 10];
    let mut written = 0;
    while keys_and_evicted(&node).await.1 == 0 {
        expect(
            &mut c,
            &cmd_bytes(&[b"SET", format!("new:{written}").as_bytes(), &fits]),
            b"+OK\r\n",
        )
        .await;
        written += 1;
        assert!(written < 100, "nothing was evicted");
    }
    c.expect(&cmd(&["EXISTS", "keep:0", "keep:2499"]), b":2\r\n").await;
}

/// A write that can fit evicts every key it needs: here some 35,000 small ones for one 4 MB
/// value (eviction used to give up after 10,000 keys, evicted, and refuse the write).
#[tokio::test]
async fn a_write_that_fits_evicts_as_many_keys_as_it_needs() {
    let limit = 16 << 20;
    let node = node(EvictionPolicy::AllkeysRandom, limit).await;
    let mut c = node.raw().await;
    for batch in 0..25 {
        fill(&mut c, &format!("small{batch}"), 4000, 8, false).await;
    }
    let (keys, evicted) = keys_and_evicted(&node).await;
    assert!(keys > 50_000, "{keys} keys, {evicted} evicted while filling");
    let big = vec![b'x'; 4 << 20];
    expect(&mut c, &cmd_bytes(&[b"SET", b"big", &big]), b"+OK\r\n").await;
    c.expect(&cmd(&["STRLEN", "big"]), b":4194304\r\n").await;
    let (_, evicted_after) = keys_and_evicted(&node).await;
    assert!(evicted_after - evicted > 10_000, "{} evicted", evicted_after - evicted);
    assert!(node.handle.node.store.used_memory() as u64 <= limit);
}
