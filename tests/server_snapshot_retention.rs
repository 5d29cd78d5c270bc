//! Snapshot retention counts verified snapshots only, and a node whose every snapshot is
//! unusable says so (issue 22, item 2). Before: after a start from an older snapshot because the
//! newest was corrupt, the next snapshot removed the good one and kept the corrupt one; a junk
//! file with a high generation pushed valid snapshots out; and a node with nothing usable
//! started empty with an INFO line.

mod server_support;

use std::path::Path;

use mapcache::server::snapshot;
use server_support::{TestNode, cmd, file_names, get_json, get_text, post_json, start_with};

/// Where unusable snapshot files are moved (`snapshot::CORRUPT_DIR`).
const CORRUPT_DIR: &str = "corrupt";

async fn start_in(dir: &Path) -> TestNode {
    let dir = dir.to_path_buf();
    start_with(|c| c.data_dir = dir).await
}

/// Sets `count` keys `{prefix}{i}`.
async fn set_keys(node: &TestNode, prefix: &str, count: usize) {
    let mut c = node.raw().await;
    let mut batch = Vec::new();
    for i in 0..count {
        batch.extend(cmd(&["SET", &format!("{prefix}{i}"), "v"]));
    }
    c.expect(&batch, &b"+OK\r\n".repeat(count)).await;
}

async fn snapshot_now(node: &TestNode) -> serde_json::Value {
    let (status, info) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!(status, 200, "{info}");
    info
}

/// Flips one byte in the middle of a file.
fn corrupt(path: &Path) {
    let mut data = std::fs::read(path).expect("read");
    let middle = data.len() / 2;
    data[middle] ^= 0xff;
    std::fs::write(path, data).expect("write");
}

/// The snapshot files directly in `dir`, each of which must read back in full.
fn valid_snapshots(dir: &Path) -> Vec<String> {
    let names: Vec<String> = file_names(dir).into_iter().filter(|n| n.ends_with(".snap")).collect();
    for name in &names {
        snapshot::read(&dir.join(name)).unwrap_or_else(|err| panic!("{name} is kept: {err}"));
    }
    names
}

#[tokio::test]
async fn a_start_from_an_older_snapshot_keeps_it_through_the_next_snapshots() {
    let dir = tempfile::tempdir().expect("dir");
    let node = start_in(dir.path()).await;
    set_keys(&node, "a", 100).await;
    snapshot_now(&node).await;
    set_keys(&node, "b", 50).await;
    snapshot_now(&node).await;
    node.handle.abort();
    corrupt(&dir.path().join("mapcache-000002.snap"));

    let node = start_in(dir.path()).await;
    node.raw().await.expect(&cmd(&["DBSIZE"]), b":100\r\n").await;
    set_keys(&node, "c", 10).await;
    let third = snapshot_now(&node).await;
    assert_eq!(third["generation"], 3, "new snapshots sort after every file found");
    // The corrupt file neither counts nor stays: the good snapshot 1 is one of the two kept.
    assert_eq!(valid_snapshots(dir.path()), ["mapcache-000001.snap", "mapcache-000003.snap"]);
    assert_eq!(file_names(&dir.path().join(CORRUPT_DIR)), ["mapcache-000002.snap"]);
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    let restore = &stats["restore"];
    assert_eq!(
        (restore["outcome"].as_str(), restore["generation"].as_u64()),
        (Some("restored"), Some(1))
    );
    assert_eq!(restore["unusable"][0]["file"], "mapcache-000002.snap");
    assert_eq!(restore["unusable"][0]["reason"], "checksum");
    assert_eq!(restore["unusable"][0]["moved_to"], "corrupt/mapcache-000002.snap");
    node.handle.abort();

    // Should the newest go bad too, the older good one is still there to start from.
    corrupt(&dir.path().join("mapcache-000003.snap"));
    let node = start_in(dir.path()).await;
    node.raw().await.expect(&cmd(&["DBSIZE"]), b":100\r\n").await;
}

#[tokio::test]
async fn a_junk_file_with_a_high_generation_never_pushes_a_valid_snapshot_out() {
    let dir = tempfile::tempdir().expect("dir");
    let node = start_in(dir.path()).await;
    set_keys(&node, "a", 100).await;
    snapshot_now(&node).await;
    std::fs::write(dir.path().join("mapcache-999999.snap"), b"not a snapshot at all")
        .expect("junk");
    let second = snapshot_now(&node).await;
    snapshot_now(&node).await;
    assert_eq!(valid_snapshots(dir.path()), ["mapcache-000002.snap", "mapcache-000003.snap"]);
    assert_eq!(second["moved_aside"][0]["file"], "mapcache-999999.snap");
    assert_eq!(file_names(&dir.path().join(CORRUPT_DIR)), ["mapcache-999999.snap"]);
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("\nmapcache_snapshots_moved_aside_total 1\n"), "{metrics}");
    assert!(
        metrics.contains("mapcache_snapshot_failures_total{reason=\"truncated\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("\nmapcache_snapshots_all_corrupt 0\n"), "{metrics}");
}

#[tokio::test]
async fn a_node_whose_every_snapshot_is_unusable_starts_empty_and_says_so() {
    let dir = tempfile::tempdir().expect("dir");
    let node = start_in(dir.path()).await;
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!(stats["restore"]["outcome"], "no_snapshot");
    set_keys(&node, "a", 100).await;
    snapshot_now(&node).await;
    snapshot_now(&node).await;
    node.handle.abort();
    corrupt(&dir.path().join("mapcache-000001.snap"));
    std::fs::write(dir.path().join("mapcache-000002.snap"), b"MAPCACHE").expect("torn");

    let node = start_in(dir.path()).await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["DBSIZE"]), b":0\r\n").await;
    // It serves: a cache that lost its snapshots is a cold cache, not an outage.
    c.expect(&cmd(&["SET", "after", "1"]), b"+OK\r\n").await;
    let (status, stats) = get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!(status, 200);
    let restore = &stats["restore"];
    assert_eq!(restore["outcome"], "all_corrupt", "{restore}");
    assert_eq!(restore["generation"], serde_json::Value::Null);
    let unusable: Vec<(&str, &str)> = restore["unusable"]
        .as_array()
        .expect("unusable")
        .iter()
        .map(|u| (u["file"].as_str().unwrap_or(""), u["reason"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        unusable,
        [("mapcache-000002.snap", "truncated"), ("mapcache-000001.snap", "checksum")]
    );
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("\nmapcache_snapshots_all_corrupt 1\n"), "{metrics}");
    assert!(metrics.contains("\nmapcache_snapshots_moved_aside_total 2\n"), "{metrics}");
    assert_eq!(
        file_names(&dir.path().join(CORRUPT_DIR)),
        ["mapcache-000001.snap", "mapcache-000002.snap"]
    );
    assert_eq!(valid_snapshots(dir.path()), Vec::<String>::new());
    // The next snapshot numbers after the files moved aside, and is the one kept.
    assert_eq!(snapshot_now(&node).await["generation"], 3);
    assert_eq!(valid_snapshots(dir.path()), ["mapcache-000003.snap"]);
}
