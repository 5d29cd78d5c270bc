//! Bad input on the cache node's non-command paths gets a clear error and loses nothing:
//! snapshot files and snapshot writes that fail, drain with a client stalled mid-request, the
//! admin API's methods and auth, and RESP length lines.

mod server_support;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use mapcache::server::snapshot::{self, SnapshotError};
use mapcache::server::tasks::{TaskKind, TaskState};
use server_support::{
    TestNode, cmd, file_names, get_text, hold_shard_lock, http, post_json, start_with, wait_until,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node in `dir` with 100 keys `k0..k99`.
async fn node_with_keys(dir: &Path) -> TestNode {
    let dir = dir.to_path_buf();
    let node = start_with(|c| c.data_dir = dir).await;
    let mut c = node.raw().await;
    let mut batch = Vec::new();
    for i in 0..100 {
        batch.extend(cmd(&["SET", &format!("k{i}"), "v"]));
    }
    c.expect(&batch, &b"+OK\r\n".repeat(100)).await;
    node
}

// ---------------------------------------------------------------------------------------------
// Snapshots

/// A disk that fills up mid-write (the temp file is a link to /dev/full, so every write of it
/// fails with ENOSPC): the snapshot fails naming the file and the cause, the previous snapshot
/// stays, the partial temp file does not stay behind holding the space, and the next attempt
/// on a disk with room succeeds.
#[tokio::test]
async fn a_snapshot_write_that_fails_removes_its_temp_file_and_keeps_the_previous_snapshot() {
    let dir = tempfile::tempdir().expect("dir");
    let node = node_with_keys(dir.path()).await;
    let (status, first) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!((status, first["generation"].as_u64()), (200, Some(1)));

    let tmp = dir.path().join("mapcache-000002.snap.tmp");
    std::os::unix::fs::symlink("/dev/full", &tmp).expect("symlink");
    let (status, failed) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!(status, 500, "{failed}");
    let message = failed["error"].as_str().expect("error message");
    assert!(
        message.starts_with(&format!("snapshot failed: i/o error on {}: ", tmp.display()))
            && message.contains("No space left on device"),
        "{message}"
    );
    assert!(std::fs::symlink_metadata(&tmp).is_err(), "the failed write's temp file is removed");
    assert_eq!(file_names(dir.path()), ["mapcache-000001.snap"]);
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("mapcache_snapshot_failures_total{reason=\"io\"} 1"), "{metrics}");

    let (status, retry) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!(
        (status, retry["generation"].as_u64(), retry["keys"].as_u64()),
        (200, Some(2), Some(100))
    );
    assert_eq!(file_names(dir.path()), ["mapcache-000001.snap", "mapcache-000002.snap"]);
}

/// Once the new snapshot is written and verified, an older one that cannot be removed (here a
/// directory that has a snapshot's name, older than the two kept) is logged, not reported as a
/// failed snapshot: a drain would otherwise answer 500 for a good snapshot and the checklist
/// never pass.
#[tokio::test]
async fn a_verified_snapshot_is_not_failed_by_an_older_one_that_cannot_be_removed() {
    let dir = tempfile::tempdir().expect("dir");
    let node = node_with_keys(dir.path()).await;
    let (status, first) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!((status, first["generation"].as_u64()), (200, Some(1)));
    std::fs::create_dir(dir.path().join("mapcache-000000.snap")).expect("mkdir");
    let (status, second) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!((status, second["generation"].as_u64()), (200, Some(2)));
    // Three names now: retention keeps 2 and 1, and tries to remove the directory, and cannot.
    let (status, drained) = post_json(&node.admin_url("/v1/drain"), None).await;
    assert_eq!(status, 200, "{drained}");
    let snap = &drained["snapshot"];
    assert_eq!(
        (snap["generation"].as_u64(), snap["keys"].as_u64(), snap["verified"].as_bool()),
        (Some(3), Some(100), Some(true))
    );
    assert_eq!(
        file_names(dir.path()),
        ["mapcache-000000.snap", "mapcache-000002.snap", "mapcache-000003.snap"]
    );
    let (_, checklist) = server_support::get_json(
        &node.admin_url("/v1/checklist?quiet_period_ms=0&lock_profile_seconds=0"),
    )
    .await;
    assert_eq!(checklist["items"][4]["passed"], true, "{checklist:#}");
}

/// A snapshot file that cannot even be read (here a directory with a snapshot's name) is
/// unusable like a corrupt one: moved aside at start, reported under `io`.
#[tokio::test]
async fn an_unreadable_snapshot_is_moved_aside_at_start_under_io() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::create_dir(dir.path().join("mapcache-000001.snap")).expect("mkdir");
    let node = node_with_keys(dir.path()).await;
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("mapcache_snapshot_failures_total{reason=\"io\"} 1"), "{metrics}");
    assert_eq!(file_names(&dir.path().join("corrupt")), ["mapcache-000001.snap"]);
    let (status, second) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!((status, second["generation"].as_u64()), (200, Some(2)));
    assert_eq!(file_names(dir.path()), ["corrupt", "mapcache-000002.snap"]);
}

/// The header and footer of a snapshot holding exactly the given blocks' records, with every
/// checksum right: a file only its records can make bad.
fn snapshot_file(blocks: &[(u32, Vec<u8>)], total_keys: u64) -> Vec<u8> {
    let mut data = b"MAPCACHE".to_vec();
    data.extend(1u32.to_le_bytes());
    data.extend(4u32.to_le_bytes());
    data.extend(1_000u64.to_le_bytes());
    data.extend(0u32.to_le_bytes());
    let header_crc = crc32c::crc32c(&data);
    data.extend(header_crc.to_le_bytes());
    for (records, payload) in blocks {
        data.push(b'B');
        data.extend(records.to_le_bytes());
        data.extend((payload.len() as u32).to_le_bytes());
        data.extend(crc32c::crc32c(payload).to_le_bytes());
        data.extend(payload);
    }
    data.push(b'E');
    data.extend(total_keys.to_le_bytes());
    data.extend((blocks.len() as u32).to_le_bytes());
    let file_crc = crc32c::crc32c(&data);
    data.extend(file_crc.to_le_bytes());
    data
}

fn record(key: &[u8], value: &[u8], expires_at_ms: u64) -> Vec<u8> {
    let mut out = (key.len() as u32).to_le_bytes().to_vec();
    out.extend(key);
    out.extend((value.len() as u32).to_le_bytes());
    out.extend(value);
    out.extend(expires_at_ms.to_le_bytes());
    out
}

/// A block whose checksum is good but whose record claims a 4 GB key is a malformed record
/// (reason `format`), not a torn file: the block arrived whole. Nothing of the claimed length
/// is allocated; the length is checked against the block first.
#[test]
fn a_record_longer_than_its_block_is_malformed_not_truncated() {
    let good = snapshot_file(&[(1, record(b"key", b"value", 0))], 1);
    let decoded = snapshot::decode(&Bytes::from(good)).expect("the hand-made file is valid");
    assert_eq!(decoded.records[0].key, Bytes::from("key"));

    for (name, payload) in [
        ("key length", {
            let mut p = record(b"key", b"value", 0);
            p[..4].copy_from_slice(&u32::MAX.to_le_bytes());
            p
        }),
        ("value length", {
            let mut p = record(b"key", b"value", 0);
            p[7..11].copy_from_slice(&0xF000_0000u32.to_le_bytes());
            p
        }),
        ("record count", record(b"key", b"value", 0)),
    ] {
        let records = if name == "record count" { 2 } else { 1 };
        let err = snapshot::decode(&Bytes::from(snapshot_file(&[(records, payload)], 1)))
            .expect_err(name);
        assert!(
            matches!(err, SnapshotError::Malformed("a record runs past its block")),
            "{name}: {err}"
        );
        assert_eq!(err.reason(), "format", "{name}");
    }
}

/// A file the node cannot use is skipped for the older one, under the reason it names.
#[tokio::test]
async fn a_snapshot_with_a_record_past_its_block_is_skipped_as_format_at_start() {
    let dir = tempfile::tempdir().expect("dir");
    let node = node_with_keys(dir.path()).await;
    let (status, _) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!(status, 200);
    node.handle.abort();
    let mut payload = record(b"key", b"value", 0);
    payload[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(dir.path().join("mapcache-000002.snap"), snapshot_file(&[(1, payload)], 1))
        .expect("write");

    let path = dir.path().to_path_buf();
    let node = start_with(|c| c.data_dir = path).await;
    node.raw().await.expect(&cmd(&["DBSIZE"]), b":100\r\n").await;
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("mapcache_snapshot_failures_total{reason=\"format\"} 1"), "{metrics}");
    assert!(!metrics.contains("reason=\"truncated\""), "{metrics}");
}

/// An admin client that gives up on `POST /v1/snapshot` (an HTTP timeout, say) while the
/// snapshot is being written does not end that snapshot early: it finishes and is recorded, and
/// the next snapshot starts only after it, as the next generation. Before, the hung-up request
/// dropped the snapshot's bookkeeping and its lock while its writer went on, and the next
/// snapshot wrote the same generation, through the same temp file, beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_snapshot_whose_client_hangs_up_finishes_before_the_next_one_starts() {
    let dir = tempfile::tempdir().expect("dir");
    let node = node_with_keys(dir.path()).await;
    let state = node.handle.node.clone();
    // The writer copies shard 0 first: holding its lock keeps the first snapshot mid-way.
    let (release, holder) = hold_shard_lock(&state, 0);
    let mut abandoned =
        tokio::net::TcpStream::connect(node.handle.admin_addr()).await.expect("connect admin");
    abandoned
        .write_all(b"POST /v1/snapshot HTTP/1.1\r\nHost: node\r\nContent-Length: 0\r\n\r\n")
        .await
        .expect("write request");
    wait_until("the first snapshot waits for shard 0", || {
        state.store.lock_counters()[0].waiters_now == 1
    })
    .await;
    drop(abandoned);
    // Give the HTTP server time to see the hang-up and drop the request. Should it not have
    // within this time, the hang-up plays no part and the test passes without exercising the
    // fix (a very slow machine); it cannot fail wrongly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let url = node.admin_url("/v1/snapshot");
    let second = tokio::spawn(async move { post_json(&url, None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second snapshot waits for the first");

    release.send(()).expect("release");
    holder.join().expect("holder");
    let (status, info) = second.await.expect("join");
    assert_eq!(status, 200, "{info}");
    assert_eq!((info["generation"].as_u64(), info["keys"].as_u64()), (Some(2), Some(100)));
    assert_eq!(file_names(dir.path()), ["mapcache-000001.snap", "mapcache-000002.snap"]);
    for name in ["mapcache-000001.snap", "mapcache-000002.snap"] {
        let decoded = snapshot::read(&dir.path().join(name)).expect("verified snapshot");
        assert_eq!(decoded.records.len(), 100, "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// Drain

/// A client that sent half a command and stalls runs nothing: drain does not wait for it, its
/// snapshot counts as taken after writes stopped, and the command, once complete, is a write
/// refused like any other.
#[tokio::test]
async fn drain_does_not_wait_for_a_client_stalled_mid_request() {
    // Zero: drain snapshots at once unless a command is running right then.
    let node = start_with(|c| c.drain_inflight_timeout = Duration::ZERO).await;
    let state = node.handle.node.clone();
    let mut idle = node.raw().await;
    idle.expect(&cmd(&["SET", "kept", "1"]), b"+OK\r\n").await;
    let mut stalled = node.raw().await;
    stalled.stream.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nlate\r\n$1").await.expect("write");
    wait_until("the half request is read", || {
        state
            .tasks
            .snapshot()
            .iter()
            .any(|t| t.kind == TaskKind::Connection && t.state() == TaskState::Reading)
    })
    .await;

    let (status, drained) = post_json(&node.admin_url("/v1/drain"), None).await;
    assert_eq!(status, 200, "{drained}");
    let snap = &drained["snapshot"];
    assert_eq!(
        (snap["keys"].as_u64(), snap["after_writes_stopped"].as_bool()),
        (Some(1), Some(true)),
        "{drained}"
    );
    // The checklist agrees with drain: the stalled client runs nothing.
    let url = "/v1/checklist?quiet_period_ms=0&lock_profile_seconds=0";
    let (_, checklist) = server_support::get_json(&node.admin_url(url)).await;
    let no_inflight = server_support::checklist_item(&checklist, "no-inflight");
    assert_eq!(no_inflight["passed"], true, "{no_inflight}");
    let evidence = no_inflight["evidence"].as_str().expect("evidence");
    assert!(evidence.starts_with("0 in-flight requests, 1 connections reading"), "{evidence}");
    stalled.expect(b"\r\nx\r\n", b"-READONLY You can't write against a draining node.\r\n").await;
    idle.expect(&cmd(&["GET", "kept"]), b"$1\r\n1\r\n").await;
    idle.expect(&cmd(&["EXISTS", "late"]), b":0\r\n").await;
}

// ---------------------------------------------------------------------------------------------
// Admin API

/// A known path with a method it does not serve: `405` with `Allow`, and a JSON error body
/// like every other admin error (docs/admin-api.md), not an empty body.
#[tokio::test]
async fn a_wrong_method_is_a_405_json_error_with_allow() {
    let node = start_with(|_| {}).await;
    for (method, path, allow) in [
        (reqwest::Method::POST, "/v1/stats", "GET,HEAD"),
        (reqwest::Method::DELETE, "/healthz", "GET,HEAD"),
        (reqwest::Method::GET, "/v1/drain", "POST"),
        (reqwest::Method::PUT, "/v1/snapshot", "POST"),
    ] {
        let resp =
            http().request(method.clone(), node.admin_url(path)).send().await.expect("request");
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").and_then(|v| v.to_str().ok()),
            Some(allow),
            "{method} {path}"
        );
        let body: serde_json::Value = resp.json().await.expect("a JSON body");
        assert_eq!(body, serde_json::json!({ "error": "method not allowed" }), "{method} {path}");
    }
    // Nothing ran: the node is not draining and wrote no snapshot.
    let (_, stats) = server_support::get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!(stats["draining"], false);
}

/// `401` says which scheme it wants (RFC 9110: a 401 carries `WWW-Authenticate`), and the
/// scheme name is case-insensitive, as HTTP defines it.
#[tokio::test]
async fn a_401_names_the_bearer_scheme_which_is_case_insensitive() {
    let node = start_with(|c| c.admin_token = Some("t0ken".into())).await;
    let url = node.admin_url("/v1/debug/tasks");
    for authorization in [None, Some("Bearer wrong"), Some("Basic t0ken"), Some("t0ken")] {
        let mut req = http().get(&url);
        if let Some(value) = authorization {
            req = req.header("authorization", value);
        }
        let resp = req.send().await.expect("request");
        assert_eq!(resp.status().as_u16(), 401, "{authorization:?}");
        assert_eq!(
            resp.headers().get("www-authenticate").and_then(|v| v.to_str().ok()),
            Some("Bearer"),
            "{authorization:?}"
        );
        let body: serde_json::Value = resp.json().await.expect("a JSON body");
        assert_eq!(body["error"], "unauthorized");
    }
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let resp = http()
            .get(&url)
            .header("authorization", format!("{scheme} t0ken"))
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), 200, "{scheme}");
    }
}

// ---------------------------------------------------------------------------------------------
// RESP

/// Redis reads length lines with `string2ll`, which takes no leading zero (`0` alone is the
/// only number starting with one, `-0` is not a number) and takes i64::MIN: `*01` is an invalid
/// multibulk length, `$03` an invalid bulk length, and a count of i64::MIN an empty command.
#[tokio::test]
async fn length_lines_with_a_leading_zero_are_invalid_as_in_redis() {
    let node = start_with(|_| {}).await;
    let cases: &[(&[u8], &[u8])] = &[
        (b"*01\r\n$4\r\nPING\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*-0\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*00\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$04\r\nPING\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$00\r\n\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
    ];
    for (request, expected) in cases {
        let mut c = node.raw().await;
        let got = c.send_until_closed(request).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "{}",
            request.escape_ascii()
        );
    }
    let mut c = node.raw().await;
    c.expect(b"*-9223372036854775808\r\n*0\r\n*1\r\n$4\r\nPING\r\n", b"+PONG\r\n").await;
    c.expect(b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", b"$0\r\n\r\n").await;
}

/// A client whose request still arriving passes `client-query-buffer-limit` (here 64 KiB;
/// Redis's least is 1 MB, which only the command line enforces) is closed without a reply and
/// counted; complete requests that together pass the limit in one write, and other clients, are
/// served.
#[tokio::test]
async fn a_query_buffer_past_the_limit_closes_only_that_connection() {
    let limit = 64 * 1024;
    let node = start_with(|c| c.query_buffer_limit = limit).await;
    let mut r = node.redis().await;
    let shown: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("client-query-buffer-limit")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(shown, ["client-query-buffer-limit", "65536"]);

    // Complete requests, together twice the limit, in one write: all served, whichever way the
    // node's reads cut them (only a request still arriving counts).
    let mut c = node.raw().await;
    let value = "v".repeat(limit / 4);
    let mut batch = Vec::new();
    for i in 0..8 {
        batch.extend(cmd(&["SET", &format!("big{i}"), &value]));
    }
    c.expect(&batch, &b"+OK\r\n".repeat(8)).await;

    // One request that would need more than the limit: closed, with no reply and nothing set.
    let mut big = node.raw().await;
    let mut request = format!("*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n${}\r\n", 2 * limit).into_bytes();
    request.extend(vec![b'x'; 2 * limit]);
    for piece in request.chunks(8 * 1024) {
        if big.stream.write_all(piece).await.is_err() {
            break; // closed under our writes
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), big.stream.read_to_end(&mut reply))
        .await
        .expect("the node closes the connection");
    // A close with our bytes still unread reaches us as a reset, else as the end of the stream.
    if let Err(err) = read {
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    }
    assert_eq!(reply, b"", "closed without a reply");
    let exists: u64 = redis::cmd("EXISTS").arg("huge").query_async(&mut r).await.unwrap();
    assert_eq!(exists, 0);
    let got: String = redis::cmd("GET").arg("big7").query_async(&mut r).await.unwrap();
    assert_eq!(got.len(), limit / 4);
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(
        metrics.lines().any(|l| l == "mapcache_client_query_buffer_limit_disconnections_total 1"),
        "{metrics}"
    );
}
