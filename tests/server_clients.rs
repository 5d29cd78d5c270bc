//! The node with a real Redis client (the `redis` crate, async, tokio) and SCAN's guarantee
//! while shards grow, compact and shrink underneath it.

mod server_support;

use std::collections::HashSet;

use redis::AsyncCommands;
use server_support::{TestNode, cmd, post_json, start, start_with};
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

async fn scan_all(
    con: &mut redis::aio::MultiplexedConnection,
    mut during: impl AsyncFnMut(usize),
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
        during(round).await;
        round += 1;
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
}

#[tokio::test]
async fn scan_returns_every_stable_key_while_shards_grow() {
    let node = start().await;
    let mut con = node.redis().await;
    for i in 0..2000 {
        let _: () = con.set(format!("stable:{i}"), i).await.expect("SET");
    }
    let mut writer = node.redis().await;
    let seen = scan_all(&mut con, async |round| {
        // Double the keyspace during the scan: every shard grows (incremental evacuation).
        for j in 0..100 {
            let _: () = writer.set(format!("new:{round}:{j}"), j).await.expect("SET");
        }
    })
    .await;
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
async fn scan_returns_every_stable_key_while_shards_compact_and_shrink() {
    let node = start_with(|c| c.maintenance_budget = 1).await;
    let mut con = node.redis().await;
    for i in 0..4000 {
        let _: () = con.set(format!("k:{i}"), i).await.expect("SET");
    }
    // Delete most keys so a rebuild shrinks the tables.
    for i in 0..4000 {
        if i % 8 != 0 {
            let _: () = con.del(format!("k:{i}")).await.expect("DEL");
        }
    }
    let (status, _) = post_json(&node.admin_url("/v1/rebuild"), None).await;
    assert_eq!(status, 202);
    let mut deleter = node.redis().await;
    let seen = scan_all(&mut con, async |round| {
        if round == 3 {
            let _ = post_json(&node.admin_url("/v1/compact"), None).await;
        }
        let _: () = deleter.del(format!("gone:{round}")).await.expect("DEL");
    })
    .await;
    let missing: Vec<usize> =
        (0..4000).step_by(8).filter(|i| !seen.contains(&format!("k:{i}"))).collect();
    assert!(missing.is_empty(), "SCAN missed {} stable keys", missing.len());
    assert!(seen.iter().all(|k| k.starts_with("k:")));
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
