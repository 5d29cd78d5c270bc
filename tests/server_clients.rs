//! The node with a real Redis client (the `redis` crate, async, tokio) and SCAN's guarantee
//! while shards grow, compact and shrink underneath it.

mod server_support;

use std::collections::HashSet;
use std::time::Duration;

use mapcache::engine::Phase;
use mapcache::server::EvictionPolicy;
use mapcache::server::node::MaintenanceStepper;
use mapcache::server::state::NodeState;
use redis::AsyncCommands;
use serde_json::json;
use server_support::{TestNode, cmd, get_json, get_text, post_json, start, start_with};
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn redis_crate_client_works_unchanged() {
    let node = start().await;
    let mut con = node.redis().await;
    let _: () = con.set("greeting", "hello").await.expect("SET");
    let got: String = con.get("greeting").await.expect("GET");
    assert_eq!(got, "hello");
    let n: i64 = con.incr("counter", 5).await.expect("INCRBY");
    assert_eq!(n, 5);
    let _: () = con.set_ex("temp", "x", 100).await.expect("SETEX");
    let ttl: i64 = con.ttl("temp").await.expect("TTL");
    assert_eq!(ttl, 100);
    let values: Vec<Option<String>> = con.mget(&["greeting", "nothing"]).await.expect("MGET");
    assert_eq!(values, vec![Some("hello".to_string()), None]);
    let removed: i64 = con.del(&["greeting", "counter", "temp"]).await.expect("DEL");
    assert_eq!(removed, 3);
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.expect("DBSIZE");
    assert_eq!(size, 0);
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut con).await.expect("INFO");
    assert!(info.starts_with("# Server\r\nredis_version:7.2.4\r\n"), "{info}");
}

#[tokio::test]
async fn redis_crate_pipeline_gets_every_reply() {
    let node = start().await;
    let mut con = node.redis().await;
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.set(format!("k{i}"), i).ignore();
    }
    pipe.get("k499").cmd("DBSIZE");
    let (last, size): (i64, i64) = pipe.query_async(&mut con).await.expect("pipeline");
    assert_eq!((last, size), (499, 500));
}

// ---- SCAN while shards grow, shrink and compact; maxmemory eviction policies ----

/// Scans the whole keyspace with COUNT 50. After every SCAN call, `during(round, next)` runs
/// with the cursor of the next call (0 once the scan is complete).
async fn scan_all(
    con: &mut redis::aio::MultiplexedConnection,
    mut during: impl AsyncFnMut(usize, u64),
) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut cursor: u64 = 0;
    let mut round = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(50)
            .query_async(con)
            .await
            .expect("SCAN");
        seen.extend(keys);
        during(round, next).await;
        round += 1;
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
}

/// The shard a SCAN cursor is in the middle of (the node's cursor is `engine cursor × shards +
/// shard`), or None when it is at a shard's first bucket or the scan is over.
fn mid_scan_shard(next: u64, shards: u64) -> Option<usize> {
    (next / shards != 0).then_some((next % shards) as usize)
}

/// `count` new keys that route to `shard`, numbered from `*next_id` on.
fn keys_of_shard(state: &NodeState, shard: usize, count: usize, next_id: &mut u64) -> Vec<String> {
    let mut keys = Vec::with_capacity(count);
    while keys.len() < count {
        let key = format!("new:{next_id}");
        *next_id += 1;
        if state.store.shard_of(key.as_bytes()) == shard {
            keys.push(key);
        }
    }
    keys
}

#[tokio::test]
async fn scan_returns_every_stable_key_while_the_shard_it_is_in_grows() {
    // No background tick: only writes evacuate, so the test sees every grow it causes.
    let node = start_with(|c| c.maintenance_interval = Duration::from_secs(3600)).await;
    let state = node.handle.node.clone();
    let shards = state.store.shard_count();
    let mut con = node.redis().await;
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.set(format!("stable:{i}"), i).ignore();
    }
    let () = pipe.query_async(&mut con).await.expect("preload");
    let mut writer = node.redis().await;
    let mut next_id = 0u64;
    // Per shard: SCAN rounds during which its table doubled while the cursor was inside it.
    let mut grew_under_cursor = vec![0usize; shards];
    let seen = scan_all(&mut con, async |_, next| {
        if next == 0 {
            return;
        }
        // 60 new keys per round into the shard being scanned (the scan visits about 50 per
        // call), so every shard more than doubles before its scan ends.
        let shard = (next % shards as u64) as usize;
        let b_before = state.stats(None).shards[shard].engine.b;
        let mut pipe = redis::pipe();
        for key in keys_of_shard(&state, shard, 60, &mut next_id) {
            pipe.set(key, 1).ignore();
        }
        let () = pipe.query_async(&mut writer).await.expect("writes");
        let after = state.stats(None);
        if mid_scan_shard(next, shards as u64) == Some(shard)
            && after.shards[shard].engine.b > b_before
        {
            grew_under_cursor[shard] += 1;
        }
    })
    .await;
    assert!(
        grew_under_cursor.iter().all(|&n| n > 0),
        "every shard's table doubled while SCAN was inside it: {grew_under_cursor:?}"
    );
    let missing: Vec<usize> =
        (0..2000).filter(|i| !seen.contains(&format!("stable:{i}"))).collect();
    assert!(
        missing.is_empty(),
        "SCAN missed {} stable keys, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test]
async fn scan_returns_every_stable_key_while_shards_shrink_then_compact_under_it() {
    // The test ticks maintenance itself, one bucket per shard per tick, between SCAN calls.
    let node = start_with(|c| {
        c.maintenance_interval = Duration::from_secs(3600);
        c.maintenance_budget = 1;
    })
    .await;
    let state = node.handle.node.clone();
    let shards = state.store.shard_count() as u64;
    let mut stepper = MaintenanceStepper::new(&state);
    let mut con = node.redis().await;
    let mut pipe = redis::pipe();
    for i in 0..4000 {
        pipe.set(format!("k:{i}"), i).ignore();
    }
    let () = pipe.query_async(&mut con).await.expect("preload");
    // Stable: k:i with i % 8 == 0. Churn, deleted during the scan: i % 8 == 1. The rest goes
    // now, so a rebuild shrinks every table.
    let mut pipe = redis::pipe();
    for i in (0..4000).filter(|i| i % 8 > 1) {
        pipe.del(format!("k:{i}")).ignore();
    }
    let () = pipe.query_async(&mut con).await.expect("deletes");
    let idle =
        |state: &NodeState| state.stats(None).shards.iter().all(|s| s.engine.phase == Phase::Idle);
    for _ in 0..100_000 {
        if idle(&state) {
            break;
        }
        stepper.tick(&state); // finish the grows the preload started
    }
    assert!(idle(&state));
    let buckets_before: Vec<u8> = state.stats(None).shards.iter().map(|s| s.engine.b).collect();

    let (status, body) = post_json(&node.admin_url("/v1/rebuild"), None).await;
    assert_eq!((status, body), (202, json!({"started": true, "kind": "rebuild", "shards": 4})));
    stepper.tick(&state);
    let phases: Vec<Phase> = state.stats(None).shards.iter().map(|s| s.engine.phase).collect();
    assert_eq!(phases, [Phase::Shrinking; 4]);
    let (status, body) = post_json(&node.admin_url("/v1/compact"), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("maintenance already running: rebuild"))
    );

    let mut deleter = node.redis().await;
    let mut churn = (0..4000).filter(|i| i % 8 == 1);
    let mut compact_started = false;
    // Per phase: SCAN rounds in which the evacuation of the shard SCAN was inside moved.
    let (mut shrank_under_cursor, mut compacted_under_cursor) = (0, 0);
    let seen = scan_all(&mut con, async |_, next| {
        for i in churn.by_ref().take(5) {
            let _: () = deleter.del(format!("k:{i}")).await.expect("DEL");
        }
        let Some(shard) = mid_scan_shard(next, shards) else {
            return;
        };
        // Shards 0 and 1 are scanned while the tables shrink; once the scan reaches shard 2
        // the rebuild is finished and a compaction runs under the rest of the scan.
        if shard >= 2 && !compact_started {
            for _ in 0..100_000 {
                if !state.maintenance.lock().running {
                    break;
                }
                stepper.tick(&state);
            }
            let (status, body) = post_json(&node.admin_url("/v1/compact"), None).await;
            assert_eq!(
                (status, body),
                (202, json!({"started": true, "kind": "compact", "shards": 4}))
            );
            compact_started = true;
            stepper.tick(&state);
        }
        let before = state.stats(None).shards[shard].engine;
        stepper.tick(&state);
        stepper.tick(&state);
        let after = state.stats(None).shards[shard].engine;
        if after.evacuated != before.evacuated || after.phase != before.phase {
            match before.phase {
                Phase::Shrinking => shrank_under_cursor += 1,
                Phase::Compacting => compacted_under_cursor += 1,
                _ => {}
            }
        }
    })
    .await;
    assert!(compact_started, "the scan reached shard 2");
    assert!(shrank_under_cursor > 0, "a shrink moved while SCAN was inside its shard");
    assert!(compacted_under_cursor > 0, "a compaction moved while SCAN was inside its shard");
    let missing: Vec<usize> =
        (0..4000).step_by(8).filter(|i| !seen.contains(&format!("k:{i}"))).collect();
    assert!(missing.is_empty(), "SCAN missed {} stable keys", missing.len());
    assert!(seen.iter().all(|k| k.starts_with("k:")));
    for _ in 0..100_000 {
        if !state.maintenance.lock().running {
            break;
        }
        stepper.tick(&state);
    }
    let (_, done) = get_json(&node.admin_url("/v1/maintenance")).await;
    assert_eq!((done["kind"].as_str(), done["running"].as_bool()), (Some("compact"), Some(false)));
    let buckets_after: Vec<u8> = state.stats(None).shards.iter().map(|s| s.engine.b).collect();
    assert!(
        buckets_after.iter().zip(&buckets_before).all(|(after, before)| after < before),
        "every table shrank: {buckets_before:?} -> {buckets_after:?}"
    );
}

/// A number from one `INFO <section>` field.
async fn info_field(
    con: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> u64 {
    let info: String = redis::cmd("INFO").arg(section).query_async(con).await.expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in {info}"))
}

async fn info_evicted_keys(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    info_field(con, "stats", "evicted_keys").await
}

async fn info_used_memory(con: &mut redis::aio::MultiplexedConnection) -> u64 {
    info_field(con, "memory", "used_memory").await
}

async fn metrics_text(node: &TestNode) -> String {
    get_text(&node.admin_url("/metrics")).await
}

/// How many of `keys` exist, in one EXISTS.
async fn existing(con: &mut redis::aio::MultiplexedConnection, keys: &[String]) -> usize {
    redis::cmd("EXISTS").arg(keys).query_async(con).await.expect("EXISTS")
}

fn names(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}:{i}")).collect()
}

#[tokio::test]
async fn allkeys_random_evicts_recently_read_keys_too_and_counts_evictions() {
    let maxmemory = 256 * 1024;
    let node = start_with(|c| {
        c.maxmemory = maxmemory;
        c.eviction_policy = EvictionPolicy::AllkeysRandom;
    })
    .await;
    let mut con = node.redis().await;
    let value = "r".repeat(500);
    let hot = names("hot", 0..20);
    for key in &hot {
        let () = con.set(key, &value).await.expect("SET");
    }
    for i in 0..2000 {
        // The hot keys are read before every write: recency must not protect them.
        let (_, reply): (Vec<Option<String>>, String) = redis::pipe()
            .mget(&hot)
            .set(format!("k:{i}"), &value)
            .query_async(&mut con)
            .await
            .expect("every write past maxmemory succeeds by evicting");
        assert_eq!(reply, "OK");
    }
    let evicted = info_evicted_keys(&mut con).await;
    let size: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.expect("DBSIZE");
    assert!(evicted > 1000, "about 300 keys of 500 bytes fit: {evicted} evicted");
    assert_eq!(size + evicted, 2020);
    assert!(info_used_memory(&mut con).await <= maxmemory);
    let metrics = metrics_text(&node).await;
    assert!(metrics.contains(&format!("\nmapcache_evicted_keys_total {evicted}\n")), "{metrics}");
    // Each hot key outlives 1000+ random evictions among ~300 keys with odds under 1%; an
    // LRU-like policy would keep all 20.
    let hot_left = existing(&mut con, &hot).await;
    assert!(hot_left < 20, "every key read before each write survived: not random");
}

#[tokio::test]
async fn volatile_ttl_evicts_only_keys_with_a_ttl_nearest_expiry_first_then_refuses() {
    let maxmemory = 1 << 20;
    let node = start_with(|c| {
        c.maxmemory = maxmemory;
        c.eviction_policy = EvictionPolicy::VolatileTtl;
        // No background tick finishing a grow (and freeing its old array) between two writes:
        // the memory state changes only with the test's own commands.
        c.maintenance_interval = Duration::from_secs(3600);
    })
    .await;
    let mut con = node.redis().await;
    let value = "t".repeat(1000);
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.set(format!("keep:{i}"), &value).ignore();
    }
    for i in 0..300 {
        pipe.set_ex(format!("short:{i}"), &value, 1000 + i as u64).ignore();
    }
    for i in 0..100 {
        pipe.set_ex(format!("long:{i}"), &value, 1_000_000 + i as u64).ignore();
    }
    let () = pipe.query_async(&mut con).await.expect("preload under the limit");
    assert_eq!(info_evicted_keys(&mut con).await, 0);

    // Writes without a TTL past the limit evict keys with one, until 100 are gone.
    let mut filled = 0;
    while info_evicted_keys(&mut con).await < 100 {
        let reply: String = redis::cmd("SET")
            .arg(format!("fill:{filled}"))
            .arg(&value)
            .query_async(&mut con)
            .await
            .expect("a key with a TTL is evicted to make room");
        assert_eq!(reply, "OK");
        filled += 1;
        assert!(filled < 2000, "nothing was evicted");
    }
    let evicted = info_evicted_keys(&mut con).await as usize;
    assert_eq!(existing(&mut con, &names("keep", 0..200)).await, 200, "no key without a TTL goes");
    assert_eq!(existing(&mut con, &names("fill", 0..filled)).await, filled);
    let short_gone = 300 - existing(&mut con, &names("short", 0..300)).await;
    let long_gone = 100 - existing(&mut con, &names("long", 0..100)).await;
    assert_eq!(short_gone + long_gone, evicted);
    // Nearest expiry first among 5 samples: a key 1000x further from expiry goes only when all
    // 5 samples are such keys (under 1% of draws here; at random it would be a quarter).
    assert!(long_gone <= 10, "{long_gone} far-expiry keys evicted with {short_gone} near ones");
    assert!(info_used_memory(&mut con).await <= maxmemory);
    let metrics = metrics_text(&node).await;
    assert!(metrics.contains(&format!("\nmapcache_evicted_keys_total {evicted}\n")), "{metrics}");

    // Once no key has a TTL, a write that needs room is refused with Redis's OOM error.
    let refused = loop {
        let reply: redis::RedisResult<String> =
            redis::cmd("SET").arg(format!("fill:{filled}")).arg(&value).query_async(&mut con).await;
        match reply {
            Ok(ok) => assert_eq!(ok, "OK"),
            Err(err) => break err,
        }
        filled += 1;
        assert!(filled < 5000, "never refused");
    };
    assert_eq!(refused.code(), Some("OOM"), "{refused}");
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!(
        (stats["keys_with_ttl"].as_u64(), stats["evicted_keys_total"].as_u64()),
        (Some(0), Some(400))
    );
    assert_eq!(existing(&mut con, &names("keep", 0..200)).await, 200);
    assert_eq!(existing(&mut con, &names("fill", 0..filled)).await, filled);
    // The same write again, byte for byte (the room a write needs depends on its key's shard:
    // one about to double needs room for the new array).
    let mut raw = node.raw().await;
    raw.expect(
        &cmd(&["SET", &format!("fill:{filled}"), &value]),
        b"-OOM command not allowed when used memory > 'maxmemory'.\r\n",
    )
    .await;
    raw.expect(&cmd(&["GET", "keep:0"]), format!("$1000\r\n{value}\r\n").as_bytes()).await;
}

/// Connections are spread over the connection threads (`--io-threads`): clients served by
/// different threads see each other's writes at once, and stopping the node closes every open
/// connection on every thread.
#[tokio::test]
async fn clients_on_every_connection_thread_share_the_store_and_are_closed_on_stop() {
    let node = start_with(|c| c.io_threads = 3).await;
    assert_eq!(node.handle.io_threads(), 3);
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(node.raw().await);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        c.expect(&cmd(&["SET", &format!("k{i}"), &format!("v{i}")]), b"+OK\r\n").await;
    }
    for c in conns.iter_mut() {
        for i in 0..6 {
            c.expect(&cmd(&["GET", &format!("k{i}")]), format!("$2\r\nv{i}\r\n").as_bytes()).await;
        }
    }
    let TestNode { handle, dir: _dir } = node;
    handle.abort();
    for mut c in conns {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            c.stream.read_to_end(&mut rest),
        )
        .await
        .expect("the connection is closed when the node stops");
        // A reset instead of a clean close is a close too.
        assert_eq!(read.unwrap_or(0), 0, "nothing more arrives: {rest:?}");
    }
}
