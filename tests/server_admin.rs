//! The admin HTTP API: shapes the operator parses (docs/admin-api.md), auth, maintenance,
//! lock profile and task dump, drain and the checklist.

mod server_support;

use std::time::Duration;

use mapcache::server::tasks::TaskKind;
use mapcache::server::{Config, Node, StartError};
use serde_json::{Value, json};
use server_support::{
    cmd, get_json, get_text, hold_shard_lock, http, post_json, start, start_with, wait_until,
};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn health_and_readiness_answer_plain_text() {
    let node = start().await;
    let health = http().get(node.admin_url("/healthz")).send().await.expect("healthz");
    assert_eq!(
        (health.status().as_u16(), health.text().await.expect("body")),
        (200, "ok".to_string())
    );
    let ready = http().get(node.admin_url("/readyz")).send().await.expect("readyz");
    assert_eq!(
        (ready.status().as_u16(), ready.text().await.expect("body")),
        (200, "ready".to_string())
    );
    let (status, body) = get_json(&node.admin_url("/v1/nope")).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not found")));
}

#[tokio::test]
async fn stats_sum_shards_with_every_documented_field() {
    let node = start().await;
    let mut c = node.raw().await;
    for i in 0..100 {
        c.expect(&cmd(&["SET", &format!("k{i}"), "v"]), b"+OK\r\n").await;
    }
    for i in 0..40 {
        c.expect(&cmd(&["DEL", &format!("k{i}")]), b":1\r\n").await;
    }
    let (status, stats) = get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!(status, 200);
    for field in [
        "version",
        "ready",
        "draining",
        "keys",
        "tombstones",
        "tombstone_ratio",
        "fill_ratio",
        "buckets",
        "overflow_buckets",
        "empty_overflow_buckets",
        "bytes_allocated",
        "memory_bytes",
        "maxmemory",
        "phase",
        "evacuated",
        "to_evacuate",
        "shards",
    ] {
        assert!(stats.get(field).is_some(), "missing {field}");
    }
    assert_eq!(stats["keys"], 60);
    assert_eq!(stats["ready"], true);
    let shards = stats["shards"].as_array().expect("shards");
    assert_eq!(shards.len(), 4);
    let sum_len: u64 = shards.iter().map(|s| s["len"].as_u64().expect("len")).sum();
    let sum_tomb: u64 = shards.iter().map(|s| s["tombstones"].as_u64().expect("tombstones")).sum();
    assert_eq!(sum_len, 60);
    assert_eq!(stats["tombstones"].as_u64(), Some(sum_tomb));
    for field in
        ["shard", "len", "tombstones", "tombstone_ratio", "buckets", "b", "load_factor", "phase"]
    {
        assert!(shards[0].get(field).is_some(), "shard missing {field}");
    }
}

#[tokio::test]
async fn metrics_expose_the_documented_names() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["SET", "a", "1"]), b"+OK\r\n").await;
    c.expect(&cmd(&["GET", "a"]), b"$1\r\n1\r\n").await;
    let text = get_text(&node.admin_url("/metrics")).await;
    for name in [
        "mapcache_keys 1",
        "mapcache_tombstones ",
        "mapcache_tombstone_ratio ",
        "mapcache_overflow_buckets ",
        "mapcache_memory_bytes ",
        "mapcache_commands_total{cmd=\"set\"} 1",
        "mapcache_commands_total{cmd=\"get\"} 1",
        "mapcache_command_duration_seconds_bucket",
        "mapcache_connections 1",
        "mapcache_inflight_requests 0",
        "mapcache_lock_waiters 0",
        "mapcache_maintenance_runs_total{kind=\"compact\"} 0",
        "mapcache_expired_keys_total 0",
        "mapcache_evicted_keys_total 0",
        "mapcache_io_spin_seconds_total{thread=\"0\"} ",
        "mapcache_io_spins_total{thread=\"0\",outcome=\"work\"} ",
        "mapcache_io_spins_total{thread=\"0\",outcome=\"ready\"} ",
        "mapcache_io_spins_total{thread=\"1\",outcome=\"timeout\"} ",
    ] {
        assert!(text.contains(name), "metrics lack {name:?}:\n{text}");
    }
}

async fn wait_maintenance_done(node: &server_support::TestNode) -> Value {
    for _ in 0..600 {
        let (_, m) = get_json(&node.admin_url("/v1/maintenance")).await;
        if m["running"] == false && m["kind"] != Value::Null {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("maintenance did not finish");
}

#[tokio::test]
async fn compaction_runs_online_and_purges_tombstones() {
    let node = start().await;
    let (_, before) = get_json(&node.admin_url("/v1/maintenance")).await;
    assert_eq!(before["kind"], Value::Null);
    assert_eq!(before["runs_total"]["compact"], 0);
    let mut c = node.raw().await;
    for i in 0..3000 {
        c.expect(&cmd(&["SET", &format!("k{i}"), "v"]), b"+OK\r\n").await;
    }
    for i in 0..3000 {
        if i % 4 != 0 {
            c.expect(&cmd(&["DEL", &format!("k{i}")]), b":1\r\n").await;
        }
    }
    let (status, started) = post_json(&node.admin_url("/v1/compact"), None).await;
    assert_eq!(status, 202);
    assert_eq!(started, serde_json::json!({"started": true, "kind": "compact", "shards": 4}));
    // Clients keep working during the compaction.
    c.expect(&cmd(&["GET", "k0"]), b"$1\r\nv\r\n").await;
    let done = wait_maintenance_done(&node).await;
    assert_eq!(done["kind"], "compact");
    assert_eq!(done["shards_done"], 4);
    assert_eq!(done["after"]["tombstones"], 0);
    assert_eq!(done["after"]["keys"], 750);
    assert_eq!(done["before"]["keys"], 750);
    assert_eq!(done["runs_total"]["compact"], 1);
    assert!(done["finished_at"].is_string());
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!((stats["keys"].as_u64(), stats["tombstones"].as_u64()), (Some(750), Some(0)));
    let (status, _) = post_json(&node.admin_url("/v1/rebuild"), None).await;
    assert_eq!(status, 202);
    let done = wait_maintenance_done(&node).await;
    assert_eq!(
        (done["kind"].as_str(), done["runs_total"]["rebuild"].as_u64()),
        (Some("rebuild"), Some(1))
    );
}

#[tokio::test]
async fn a_second_maintenance_request_while_one_runs_is_a_conflict() {
    let node = start_with(|c| c.maintenance_interval = Duration::from_secs(3600)).await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["SET", "k", "v"]), b"+OK\r\n").await;
    let (status, _) = post_json(&node.admin_url("/v1/rebuild"), None).await;
    assert_eq!(status, 202);
    let (status, body) = post_json(&node.admin_url("/v1/compact"), None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("maintenance already running: rebuild"))
    );
}

#[tokio::test]
async fn a_configured_token_guards_mutating_and_debug_endpoints() {
    let node = start_with(|c| c.admin_token = Some("t0ken".into())).await;
    for path in ["/v1/snapshot", "/v1/compact", "/v1/drain"] {
        let (status, body) = post_json(&node.admin_url(path), None).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("unauthorized")), "{path}");
        let (status, _) = post_json(&node.admin_url(path), Some("wrong")).await;
        assert_eq!(status, 401, "{path}");
    }
    for path in
        ["/v1/debug/tasks", "/v1/debug/locks?seconds=0", "/v1/checklist?lock_profile_seconds=0"]
    {
        let (status, _) = get_json(&node.admin_url(path)).await;
        assert_eq!(status, 401, "{path}");
    }
    for path in ["/v1/stats", "/v1/maintenance"] {
        let (status, _) = get_json(&node.admin_url(path)).await;
        assert_eq!(status, 200, "{path}");
    }
    let (status, snap) = post_json(&node.admin_url("/v1/snapshot"), Some("t0ken")).await;
    assert_eq!((status, snap["verified"].as_bool()), (200, Some(true)));
}

#[tokio::test]
async fn an_open_admin_api_refuses_a_non_loopback_bind() {
    let dir = tempfile::tempdir().expect("dir");
    let mut config = Config::for_test(dir.path());
    config.admin_bind = "0.0.0.0".parse().expect("ip");
    let err = Node::start(config).await.expect_err("must refuse");
    assert!(matches!(err, StartError::OpenAdminOnNonLoopback(_)), "{err}");
}

#[tokio::test]
async fn bad_query_parameters_are_a_400_naming_the_parameter() {
    let node = start().await;
    let (status, body) = get_json(&node.admin_url("/v1/debug/locks?seconds=abc")).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "seconds must be an integer between 0 and 60, got \"abc\"");
    let (status, _) = get_json(&node.admin_url("/v1/debug/locks?seconds=61")).await;
    assert_eq!(status, 400);
    // Percent-encoded values are decoded; a parameter given twice is refused, not guessed.
    let (status, body) = get_json(&node.admin_url("/v1/debug/locks?seconds=%30")).await;
    assert_eq!((status, body["waiters_now"].as_u64()), (200, Some(0)), "{body}");
    let url = "/v1/checklist?lock_profile_seconds=0&quiet_period_ms=0&quiet_period_ms=9";
    let (status, body) = get_json(&node.admin_url(url)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("quiet_period_ms is given more than once"))
    );
}

// Several workers: the blocked shard lock may stall the worker that runs into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn task_dump_and_lock_profile_see_a_task_waiting_for_a_shard_lock() {
    // Background maintenance would queue on the held lock too; keep it out of the count.
    let node = start_with(|c| c.maintenance_interval = Duration::from_secs(3600)).await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["CLIENT", "SETNAME", "app"]), b"+OK\r\n").await;
    let (_, dump) = get_json(&node.admin_url("/v1/debug/tasks")).await;
    let conn = dump["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["kind"] == "connection")
        .cloned()
        .expect("conn");
    assert_eq!((conn["name"].as_str(), conn["state"].as_str()), (Some("app"), Some("idle")));
    assert_eq!((dump["connections"].as_u64(), dump["inflight"].as_u64()), (Some(1), Some(0)));

    // Hold shard 2's lock from one thread; a registered task blocks on it in another.
    let state = node.handle.node.clone();
    let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let holder_state = state.clone();
    let holder = std::thread::spawn(move || {
        let _guard = holder_state.store.lock(2, None);
        held_tx.send(()).expect("signal");
        hold_rx.recv().expect("release");
    });
    held_rx.recv().expect("held");
    let waiter_state = state.clone();
    let waiter = std::thread::spawn(move || {
        let task = waiter_state.tasks.register(TaskKind::Maintenance, None);
        let _guard = waiter_state.store.lock(2, Some(&task.task));
    });
    while state.store.lock_counters()[2].waiters_now == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (_, dump) = get_json(&node.admin_url("/v1/debug/tasks")).await;
    let waiting: Vec<&Value> =
        dump["tasks"].as_array().expect("tasks").iter().filter(|t| t["waits_lock"] == 2).collect();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0]["state"], "waiting_lock");
    let (_, profile) = get_json(&node.admin_url("/v1/debug/locks?seconds=1")).await;
    assert_eq!(profile["waiters_now"], 1);
    assert_eq!(profile["shards"][2]["waiters"], serde_json::json!([waiting[0]["id"]]));
    let (_, checklist) =
        get_json(&node.admin_url("/v1/checklist?quiet_period_ms=0&lock_profile_seconds=0")).await;
    let item = |name: &str| server_support::checklist_item(&checklist, name);
    assert_eq!(item("no-lock-waiters")["passed"], false);
    assert_eq!(item("cross-checked")["passed"], false);
    hold_tx.send(()).expect("release");
    holder.join().expect("holder");
    waiter.join().expect("waiter");
    let counters = &state.store.lock_counters()[2];
    assert_eq!((counters.contentions, counters.waiters_now), (1, 0));
}

/// A client's command is in the task dump while it runs, waiting for its shard's lock
/// included, and leaves it once answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn task_dump_names_the_command_a_connection_waits_with() {
    let node = start().await;
    let state = node.handle.node.clone();
    let shard = state.store.shard_of(b"held");
    let (release, holder) = hold_shard_lock(&state, shard);
    let mut client = node.raw().await;
    client.stream.write_all(&cmd(&["GET", "held"])).await.expect("write");
    wait_until("the GET waits for its shard", || {
        state.store.lock_counters()[shard].waiters_now == 1
    })
    .await;
    let (_, dump) = get_json(&node.admin_url("/v1/debug/tasks")).await;
    let waiting: Vec<&Value> = dump["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["kind"] == "connection" && t["waits_lock"] == shard)
        .collect();
    assert_eq!(waiting.len(), 1, "{dump}");
    assert_eq!(
        (&waiting[0]["state"], &waiting[0]["command"]),
        (&json!("waiting_lock"), &json!("GET"))
    );

    release.send(()).expect("release");
    holder.join().expect("holder");
    assert_eq!(client.read_exact(5).await, b"$-1\r\n");
    let id = waiting[0]["id"].clone();
    wait_until("the connection is idle", || {
        state.tasks.snapshot().iter().any(|t| json!(t.id) == id && t.command().is_none())
    })
    .await;
    let (_, dump) = get_json(&node.admin_url("/v1/debug/tasks")).await;
    let row = dump["tasks"].as_array().expect("tasks").iter().find(|t| t["id"] == id).cloned();
    assert_eq!(row.expect("row")["command"], Value::Null, "{dump}");
}

#[tokio::test]
async fn stats_say_not_ready_while_draining_as_readyz_does() {
    let node = start().await;
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!((&stats["ready"], &stats["draining"]), (&json!(true), &json!(false)));
    let (status, _) = post_json(&node.admin_url("/v1/drain"), None).await;
    assert_eq!(status, 200);
    let (_, stats) = get_json(&node.admin_url("/v1/stats")).await;
    assert_eq!((&stats["ready"], &stats["draining"]), (&json!(false), &json!(true)));
    let ready = http().get(node.admin_url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
}

#[tokio::test]
async fn drain_refuses_writes_snapshots_and_passes_the_checklist() {
    let node = start().await;
    let mut c = node.raw().await;
    for i in 0..250 {
        c.expect(&cmd(&["SET", &format!("k{i}"), "v"]), b"+OK\r\n").await;
    }
    let (_, before) =
        get_json(&node.admin_url("/v1/checklist?quiet_period_ms=0&lock_profile_seconds=0")).await;
    assert_eq!(before["passed"], false);
    assert_eq!(before["draining"], false);

    let (status, drained) = post_json(&node.admin_url("/v1/drain"), None).await;
    assert_eq!(status, 200);
    assert_eq!(drained["draining"], true);
    let snap = &drained["snapshot"];
    assert_eq!((snap["keys"].as_u64(), snap["verified"].as_bool()), (Some(250), Some(true)));
    assert_eq!(snap["after_writes_stopped"], true);
    assert_eq!(snap["generation"], 1);
    assert!(std::path::Path::new(snap["path"].as_str().expect("path")).exists());

    let ready = http().get(node.admin_url("/readyz")).send().await.expect("readyz");
    assert_eq!(
        (ready.status().as_u16(), ready.text().await.expect("body")),
        (503, "draining".to_string())
    );
    c.expect(&cmd(&["SET", "k", "v"]), b"-READONLY You can't write against a draining node.\r\n")
        .await;
    c.expect(&cmd(&["DEL", "k1"]), b"-READONLY You can't write against a draining node.\r\n").await;
    c.expect(&cmd(&["GET", "k1"]), b"$1\r\nv\r\n").await;
    assert!(
        tokio::net::TcpStream::connect(node.resp()).await.is_err(),
        "no new connections after drain"
    );

    let (status, checklist) =
        get_json(&node.admin_url("/v1/checklist?quiet_period_ms=0&lock_profile_seconds=1")).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = checklist["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "no-inflight",
            "no-lock-waiters",
            "cross-checked",
            "maintenance-idle",
            "snapshot-verified"
        ]
    );
    assert_eq!(checklist["passed"], true, "{checklist:#}");
    assert_eq!(checklist["live_keys"], 250);
    assert_eq!(checklist["snapshot"]["keys"], 250);
    assert_eq!(
        checklist["items"][1]["evidence"],
        "lock profile over 1 s: 0 waiters, 0 contentions on 4 shards"
    );
    // Idempotent: a second drain returns a fresher snapshot.
    let (status, again) = post_json(&node.admin_url("/v1/drain"), None).await;
    assert_eq!((status, again["snapshot"]["generation"].as_u64()), (200, Some(2)));
    let (status, _) = post_json(&node.admin_url("/v1/compact"), None).await;
    assert_eq!(status, 503);
}

async fn readyz(admin: std::net::SocketAddr) -> (u16, String) {
    let resp = http().get(format!("http://{admin}/readyz")).send().await.expect("readyz");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

#[tokio::test]
async fn readyz_is_503_restoring_while_a_large_snapshot_loads_and_200_with_every_key_after() {
    let dir = tempfile::tempdir().expect("dir");
    let first = Node::start(Config::for_test(dir.path())).await.expect("start");
    let mut c = server_support::Raw::connect(first.resp_addr()).await;
    let value = "v".repeat(100);
    let mut batch = Vec::new();
    for i in 0..50_000 {
        batch.extend(cmd(&["SET", &format!("k{i}"), &value]));
    }
    c.expect(&batch, &b"+OK\r\n".repeat(50_000)).await;
    let (status, snap) =
        post_json(&format!("http://{}/v1/snapshot", first.admin_addr()), None).await;
    assert_eq!((status, snap["keys"].as_u64()), (200, Some(50_000)));
    assert!(snap["bytes"].as_u64().expect("bytes") > 5 << 20, "several 1 MB blocks: {snap}");
    first.abort();

    let bound = Node::bind(Config::for_test(dir.path())).await.expect("bind");
    let (state, admin, resp) = (bound.node().clone(), bound.admin_addr(), bound.resp_addr());
    assert_eq!(readyz(admin).await, (503, "restoring".to_string()));
    // The restore inserts each record under its shard's lock: with the last shard's lock held
    // it stops at that shard's first record, part of the snapshot loaded.
    let shard = state.store.shard_count() - 1;
    let (release, holder) = hold_shard_lock(&state, shard);
    let running = tokio::spawn(bound.run());
    // A client that connects during the restore is answered only once the node is ready.
    let mut early = server_support::Raw::connect(resp).await;
    use tokio::io::AsyncWriteExt;
    early.stream.write_all(&cmd(&["DBSIZE"])).await.expect("write");
    wait_until("the restore waits for the held shard", || {
        state.store.lock_counters()[shard].waiters_now == 1
    })
    .await;
    assert_eq!(readyz(admin).await, (503, "restoring".to_string()));
    assert!(state.store.len_unlocked() < 50_000, "the restore is not done");
    assert!(!state.is_ready() && !running.is_finished());

    release.send(()).expect("release");
    holder.join().expect("holder");
    let handle = running.await.expect("join").expect("restore");
    assert_eq!(readyz(admin).await, (200, "ready".to_string()));
    assert_eq!(early.read_exact(8).await, b":50000\r\n", "the first answer sees every key");
    let (_, stats) = get_json(&format!("http://{admin}/v1/stats")).await;
    assert_eq!((stats["keys"].as_u64(), stats["ready"].as_bool()), (Some(50_000), Some(true)));
    let mut c = server_support::Raw::connect(resp).await;
    c.expect(&cmd(&["GET", "k49999"]), format!("$100\r\n{value}\r\n").as_bytes()).await;
    handle.abort();
}

#[tokio::test]
async fn drain_lets_an_in_flight_mset_finish_into_its_snapshot_and_refuses_later_writes() {
    let node = start_with(|c| {
        // No background tick takes shard locks, and only the MSET's end lets the drain go on.
        c.maintenance_interval = Duration::from_secs(3600);
        c.drain_inflight_timeout = Duration::from_secs(600);
    })
    .await;
    let state = node.handle.node.clone();
    let mut c = node.raw().await;
    let mut other = node.raw().await;
    for i in 0..100 {
        c.expect(&cmd(&["SET", &format!("pre:{i}"), "v"]), b"+OK\r\n").await;
    }
    // The MSET will wait for one of its shards, held here; the SET before it must not.
    let shard = state.store.shard_of(b"mset:0");
    let before = (0..)
        .map(|i| format!("before:{i}"))
        .find(|k| state.store.shard_of(k.as_bytes()) != shard)
        .expect("a key of another shard");
    let mset_keys: Vec<String> = (0..2000).map(|i| format!("mset:{i}")).collect();
    let mut mset = vec!["MSET"];
    for k in &mset_keys {
        mset.extend([k.as_str(), "m"]);
    }
    let mut pipeline = cmd(&["SET", &before, "1"]);
    pipeline.extend(cmd(&mset));
    pipeline.extend(cmd(&["SET", "late", "1"]));
    pipeline.extend(cmd(&["GET", &before]));
    let (release, holder) = hold_shard_lock(&state, shard);
    use tokio::io::AsyncWriteExt;
    c.stream.write_all(&pipeline).await.expect("write");
    wait_until("the MSET waits for the held shard", || {
        state.store.lock_counters()[shard].waiters_now == 1
    })
    .await;
    let (_, dump) = get_json(&node.admin_url("/v1/debug/tasks")).await;
    assert_eq!(dump["inflight"], 1, "{dump:#}");

    let drain_url = node.admin_url("/v1/drain");
    let drain = tokio::spawn(async move { post_json(&drain_url, None).await });
    let admin = node.handle.admin_addr();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while readyz(admin).await != (503, "draining".to_string()) {
        assert!(std::time::Instant::now() < deadline, "readyz never turned 503 draining");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Draining: a new write is refused at once, while the MSET already running goes on.
    let readonly = b"-READONLY You can't write against a draining node.\r\n";
    other.expect(&cmd(&["SET", "other", "1"]), readonly).await;
    assert!(!drain.is_finished(), "the drain waits for the in-flight MSET");

    release.send(()).expect("release");
    holder.join().expect("holder");
    let mut replies = b"+OK\r\n+OK\r\n".to_vec();
    replies.extend_from_slice(readonly);
    replies.extend_from_slice(b"$1\r\n1\r\n");
    assert_eq!(
        String::from_utf8_lossy(&c.read_exact(replies.len()).await),
        String::from_utf8_lossy(&replies),
        "every reply of the pipeline arrives; the SET after the MSET ran while draining"
    );
    let (status, drained) = drain.await.expect("join");
    assert_eq!(status, 200, "{drained}");
    let snap = &drained["snapshot"];
    assert_eq!(
        (snap["keys"].as_u64(), snap["after_writes_stopped"].as_bool()),
        (Some(2101), Some(true))
    );
    let decoded = mapcache::server::snapshot::read(std::path::Path::new(
        snap["path"].as_str().expect("path"),
    ))
    .expect("snapshot reads back");
    let saved: std::collections::HashSet<String> =
        decoded.records.iter().map(|r| String::from_utf8_lossy(&r.key).into_owned()).collect();
    assert!(
        mset_keys.iter().all(|k| saved.contains(k)),
        "every key of the MSET is in the snapshot"
    );
    assert!(saved.contains(&before) && saved.contains("pre:99"));
    assert!(!saved.contains("late") && !saved.contains("other"));
    c.expect(&cmd(&["MSET", "after", "1"]), readonly).await;
    c.expect(&cmd(&["GET", "mset:1999"]), b"$1\r\nm\r\n").await;
}
