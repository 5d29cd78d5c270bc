//! Issue-6 maintenance scenario on the real operator and cache nodes (see docs/maintenance.md).
//!
//! Phase 1 (compaction): fill 200k keys, delete 60%, then arm maintenance; the operator compacts
//! every pod, one at a time, each run starting within two poll intervals, and every pod's
//! tombstone ratio ends under `compactAtTombstoneRatio`.
//! Phase 2 (rebuild): delete 80% of one pod's surviving keys, then arm again; the operator
//! rebuilds that pod (its fill ratio fell to `rebuildAtFillRatio`) and only that pod, and
//! the memory drops: in status (`memoryBytesAfter < memoryBytesBefore`) and in the node's own
//! `/v1/stats` `bytes_allocated`.
//! A client reads the keys that survive both phases the whole time and sees no error and no
//! missing key.
//!
//! Maintenance is held off while the deletes land (a `minKeys` no pod reaches), so the figures the
//! operator decides on are the final ones and the kind of every run is deterministic: the test
//! never races the operator's poll.

use e2e::scenario::{Env, condition, redis_connection, shard_of};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const CACHE: &str = "churn";
const PODS: usize = 3;
const KEYS: usize = 200_000;
const COMPACT_AT: f64 = 0.25;
const REBUILD_AT_TOMBSTONES: f64 = 0.7;
const REBUILD_AT_FILL: f64 = 0.1;
/// Seconds; the bound "within two poll intervals" is twice this.
const POLL_SECONDS: i64 = 15;
/// Held off: no pod has this many live keys.
const MIN_KEYS_OFF: u64 = 1_000_000_000;
const MIN_KEYS_ON: u64 = 1_000;
/// The pod (by index in the sorted endpoints) that loses most of its keys in phase 2.
const REBUILT: usize = 0;

const MANIFEST: &str = "apiVersion: mapcache.io/v1alpha1\nkind: MapCache\nmetadata:\n  name: churn\nspec:\n  replicas: 3\n  image: ghcr.io/mapcache/mapcache:0.1.0\n  engine:\n    shards: 4\n  maintenance:\n    pollInterval: 15s\n    cooldown: 5s\n    minKeys: 1000000000\n    maxConcurrent: 1\n    compactAtTombstoneRatio: 0.25\n    rebuildAtTombstoneRatio: 0.7\n    rebuildAtFillRatio: 0.1\n";

fn key(i: usize) -> String {
    format!("key:{i:06}")
}

/// Phase 1 deletes 60%: 40% survive.
fn survives_phase1(i: usize) -> bool {
    i % 5 >= 3
}

/// Phase 2 deletes 80% of the rebuilt pod's phase-1 survivors.
fn survives_phase2(i: usize) -> bool {
    survives_phase1(i)
        && (shard_of(key(i).as_bytes(), PODS) != REBUILT || (i / 5).is_multiple_of(5))
}

#[tokio::test]
async fn mass_delete_compacts_every_pod_one_at_a_time_then_a_rebuild_returns_memory() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    env.apply_yaml(MANIFEST).await;
    let caches = env.mapcaches();
    env.wait_until("the MapCache is Ready with 3 pods", Duration::from_secs(180), || async {
        let object = caches.get(CACHE).await.ok()?;
        let ready = condition(&object.data, "Ready").is_some_and(|c| c["status"] == "True");
        (ready && env.cache_endpoints(CACHE).await.len() == PODS).then_some(())
    })
    .await;

    let endpoints = env.cache_endpoints(CACHE).await;
    let names: Vec<String> = endpoints.iter().map(|(name, _)| name.clone()).collect();
    let admin: Vec<String> = endpoints
        .iter()
        .map(|(_, address)| {
            let ip = address.rsplit_once(':').expect("ip:port").0;
            format!("http://{ip}:9090")
        })
        .collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http");
    let mut conns = Vec::new();
    for (_, address) in &endpoints {
        // With timeouts for a loaded CI machine (redis-rs' default 500 ms response timeout is
        // too tight for 5000-command pipelines to a debug build).
        let connection = redis_connection(&format!("redis://{address}/")).await;
        conns.push(connection.unwrap_or_else(|e| panic!("connect to {address}: {e:?}")));
    }

    // Fill, then delete 60%, while maintenance is held off.
    let all: Vec<usize> = (0..KEYS).collect();
    run_pipelined(&mut conns, &all, |pipe, i| {
        pipe.set(key(i), i).ignore();
    })
    .await;
    // The engine grows by itself while it fills, and a grow's evacuation drops tombstones: let
    // every node finish growing before the deletes, so the tombstones stay for the operator.
    env.wait_until("every node finished growing", Duration::from_secs(180), || async {
        for url in &admin {
            if stats(&http, url).await["phase"] != "idle" {
                return None;
            }
        }
        Some(())
    })
    .await;
    let deleted: Vec<usize> = (0..KEYS).filter(|&i| !survives_phase1(i)).collect();
    run_pipelined(&mut conns, &deleted, |pipe, i| {
        pipe.del(key(i)).ignore();
    })
    .await;

    // A reader goes over the keys that survive both phases the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, errors, reads) = (stop.clone(), errors.clone(), reads.clone());
        let mut conns = conns.clone();
        tokio::spawn(async move {
            let surviving: Vec<usize> = (0..KEYS).filter(|&i| survives_phase2(i)).collect();
            let mut cursor = 0;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<usize> =
                    (0..300).map(|n| surviving[(cursor + n) % surviving.len()]).collect();
                cursor += 300;
                for (shard, connection) in conns.iter_mut().enumerate() {
                    let keys: Vec<String> = batch
                        .iter()
                        .map(|&i| key(i))
                        .filter(|k| shard_of(k.as_bytes(), PODS) == shard)
                        .collect();
                    let values: redis::RedisResult<Vec<Option<String>>> =
                        redis::cmd("MGET").arg(&keys).query_async(connection).await;
                    reads.fetch_add(keys.len() as u64, Ordering::SeqCst);
                    match values {
                        Ok(values) => {
                            for (k, v) in keys.iter().zip(values) {
                                let i: usize = k[4..].parse().expect("key index");
                                if v.as_deref() != Some(i.to_string().as_str()) {
                                    errors.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        })
    };

    // The figures the operator will decide on: every pod past the compact threshold, below both
    // rebuild thresholds, so phase 1 is a compaction on every pod.
    for (name, url) in names.iter().zip(&admin) {
        let stats = stats(&http, url).await;
        let ratio = stats["tombstone_ratio"].as_f64().expect("tombstone_ratio");
        let fill = stats["fill_ratio"].as_f64().expect("fill_ratio");
        eprintln!("{name} before phase 1: tombstone ratio {ratio}, fill {fill}");
        assert!(
            (COMPACT_AT..REBUILD_AT_TOMBSTONES).contains(&ratio) && fill > REBUILD_AT_FILL,
            "{name}: tombstone ratio {ratio}, fill {fill}"
        );
    }

    // Phase 1: arm; every pod is compacted, one at a time.
    let armed = arm(&env, MIN_KEYS_ON).await;
    let pods = env
        .wait_until("every pod compacted, each run finished", Duration::from_secs(300), || async {
            let object = caches.get(CACHE).await.ok()?;
            let pods = object.data.pointer("/status/pods")?.as_array()?.clone();
            let done = pods.len() == PODS
                && pods.iter().all(|p| !p["lastCompaction"]["finishedAt"].is_null());
            done.then_some(pods)
        })
        .await;
    let mut runs = Vec::new();
    let mut node_runs = Vec::new();
    for url in &admin {
        node_runs.push(node_run(&http, url, "compact", (1, 0)).await);
    }
    for pod in &pods {
        assert_eq!(pod["lastRebuild"], Value::Null, "{}: no rebuild in phase 1", pod["name"]);
        let record = &pod["lastCompaction"];
        assert!(record["tombstonesBefore"].as_u64().expect("before") > 0, "{record}");
        assert_eq!(record["tombstonesAfter"], 0, "{}: compaction purged all", pod["name"]);
        assert_eq!(pod["tombstones"], 0, "{}", pod["name"]);
        let ratio = pod["tombstoneRatio"].as_f64().expect("tombstoneRatio");
        assert!(ratio < COMPACT_AT, "{}: ratio {ratio}", pod["name"]);
        runs.push(interval(record));
    }
    runs.sort();
    node_runs.sort();
    // The operator's startedAt is the time of the poll that decided the run; the node's own
    // start and finish times bound the run exactly, so they show that no two ran at once.
    assert_within_two_polls(armed, &runs[..1]);
    assert_within_two_polls(node_runs[0].1, &node_runs[1..]);

    // Phase 2: hold off, delete 80% of one pod's surviving keys, arm; that pod is rebuilt.
    arm(&env, MIN_KEYS_OFF).await;
    let deleted: Vec<usize> =
        (0..KEYS).filter(|&i| survives_phase1(i) && !survives_phase2(i)).collect();
    run_pipelined(&mut conns, &deleted, |pipe, i| {
        pipe.del(key(i)).ignore();
    })
    .await;
    let before = stats(&http, &admin[REBUILT]).await;
    // Go's delete turns the trailing tombstones of a bucket chain back into emptyRest, so after
    // deleting most keys the tombstone ratio undercounts the deletes; the fill ratio (live keys
    // over slots) is what shows the oversized table, and it decides the rebuild.
    let fill = before["fill_ratio"].as_f64().expect("fill_ratio");
    eprintln!("{} before phase 2: {before}", names[REBUILT]);
    assert!(fill <= REBUILD_AT_FILL, "{}: fill {fill}", names[REBUILT]);
    for (name, url) in names.iter().zip(&admin).filter(|(n, _)| **n != names[REBUILT]) {
        let stats = stats(&http, url).await;
        let (ratio, fill) = (stats["tombstone_ratio"].as_f64(), stats["fill_ratio"].as_f64());
        assert_eq!(ratio, Some(0.0), "{name}: untouched since its compaction");
        assert!(fill.is_some_and(|f| f > REBUILD_AT_FILL), "{name}: fill {fill:?}");
    }
    let armed = arm(&env, MIN_KEYS_ON).await;
    let rebuilt = env
        .wait_until("the pod is rebuilt", Duration::from_secs(300), || async {
            let object = caches.get(CACHE).await.ok()?;
            let pods = object.data.pointer("/status/pods")?.as_array()?;
            let pod = pods.iter().find(|p| p["name"] == names[REBUILT].as_str())?;
            (!pod["lastRebuild"]["finishedAt"].is_null()).then(|| pod.clone())
        })
        .await;
    let after = stats(&http, &admin[REBUILT]).await;
    stop.store(true, Ordering::SeqCst);
    reader.await.expect("reader");

    let record = &rebuilt["lastRebuild"];
    let reason = record["reason"].as_str().expect("reason");
    assert!(reason.starts_with("fill ratio "), "rebuilt for the fill ratio: {reason}");
    assert_eq!(record["keysBefore"], before["keys"]);
    assert_eq!(record["tombstonesBefore"], before["tombstones"]);
    assert_eq!(record["tombstonesAfter"], 0);
    assert_eq!(after["keys"], before["keys"], "a rebuild keeps every live key");
    // Memory: the operator's record and the node's own figures agree, and both dropped.
    let memory_before = record["memoryBytesBefore"].as_u64().expect("memoryBytesBefore");
    let memory_after = record["memoryBytesAfter"].as_u64().expect("memoryBytesAfter");
    assert_eq!(Some(memory_before), before["memory_bytes"].as_u64());
    assert_eq!(Some(memory_after), after["memory_bytes"].as_u64());
    assert!(memory_after < memory_before, "memory {memory_before} -> {memory_after}");
    let allocated_before = before["bytes_allocated"].as_u64().expect("bytes_allocated");
    let allocated_after = after["bytes_allocated"].as_u64().expect("bytes_allocated");
    assert!(allocated_after < allocated_before, "bytes {allocated_before} -> {allocated_after}");
    // The live entries did not change, so the whole drop is the engine's arrays.
    assert_eq!(memory_before - memory_after, allocated_before - allocated_after);
    assert_eq!(after["phase"], "idle");

    // Only that pod was rebuilt, and no other run started in phase 2.
    let object = caches.get(CACHE).await.expect("MapCache");
    let pods = object.data.pointer("/status/pods").and_then(Value::as_array).expect("pods");
    for pod in pods.iter().filter(|p| p["name"] != names[REBUILT].as_str()) {
        assert_eq!(pod["lastRebuild"], Value::Null, "{}: not rebuilt", pod["name"]);
    }
    let mut compactions: Vec<_> = pods.iter().map(|p| interval(&p["lastCompaction"])).collect();
    compactions.sort();
    assert_eq!(compactions, runs, "no compaction in phase 2");
    assert_within_two_polls(armed, &[interval(record)]);
    node_runs.push(node_run(&http, &admin[REBUILT], "rebuild", (1, 1)).await);
    for (name, url) in names.iter().zip(&admin).filter(|(n, _)| **n != names[REBUILT]) {
        let progress = get(&http, &format!("{url}/v1/maintenance")).await;
        assert_eq!(progress["runs_total"], json!({"compact": 1, "rebuild": 0}), "{name}");
    }
    node_runs.sort();
    for pair in node_runs.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlapped on the nodes: {node_runs:?}");
    }

    assert!(reads.load(Ordering::SeqCst) > 0, "the reader ran");
    eprintln!(
        "client errors: {} of {} reads during maintenance",
        errors.load(Ordering::SeqCst),
        reads.load(Ordering::SeqCst)
    );
    assert_eq!(errors.load(Ordering::SeqCst), 0, "no read error and no missing surviving key");
    operator.assert_running();
}

/// Runs `op` for every index, pipelined per pod in chunks.
async fn run_pipelined(
    conns: &mut [redis::aio::MultiplexedConnection],
    indexes: &[usize],
    op: impl Fn(&mut redis::Pipeline, usize),
) {
    for chunk in indexes.chunks(5_000) {
        let mut pipes: Vec<redis::Pipeline> = (0..PODS).map(|_| redis::pipe()).collect();
        for &i in chunk {
            op(&mut pipes[shard_of(key(i).as_bytes(), PODS)], i);
        }
        for (pipe, connection) in pipes.iter().zip(conns.iter_mut()) {
            if pipe.cmd_iter().next().is_none() {
                continue; // no key of this chunk lives on that pod
            }
            let result: redis::RedisResult<()> = pipe.query_async(connection).await;
            result.unwrap_or_else(|e| panic!("pipelined command: {e:?}"));
        }
    }
}

/// Sets `spec.maintenance.minKeys` and waits until the operator reconciled that generation;
/// returns the time it was set.
async fn arm(env: &Env, min_keys: u64) -> jiff::Timestamp {
    let caches = env.mapcaches();
    let at = jiff::Timestamp::now();
    let patch = Patch::Merge(json!({"spec": {"maintenance": {"minKeys": min_keys}}}));
    let object = caches.patch(CACHE, &PatchParams::default(), &patch).await.expect("patch");
    let generation = object.metadata.generation.expect("generation");
    env.wait_until("the operator saw the maintenance change", Duration::from_secs(120), || async {
        let object = caches.get(CACHE).await.ok()?;
        let observed = object.data.pointer("/status/observedGeneration")?.as_i64()?;
        (observed >= generation).then_some(())
    })
    .await;
    at
}

/// `GET /v1/stats` of a node.
async fn stats(http: &reqwest::Client, url: &str) -> Value {
    get(http, &format!("{url}/v1/stats")).await
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.expect("JSON body")
}

/// The node's last run from `GET /v1/maintenance`: finished, of `kind`, with the node's run
/// counts `(compact, rebuild)`; returns its `(started_at, finished_at)`.
async fn node_run(
    http: &reqwest::Client,
    url: &str,
    kind: &str,
    totals: (u64, u64),
) -> (jiff::Timestamp, jiff::Timestamp) {
    let progress = get(http, &format!("{url}/v1/maintenance")).await;
    assert_eq!(progress["running"], false, "{url}: {progress}");
    assert_eq!(progress["kind"], kind, "{url}: {progress}");
    assert_eq!(progress["runs_total"], json!({"compact": totals.0, "rebuild": totals.1}));
    let time = |field: &str| -> jiff::Timestamp {
        progress[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field}: {progress}"))
            .parse()
            .expect("time")
    };
    (time("started_at"), time("finished_at"))
}

/// `(startedAt, finishedAt)` of a maintenance record.
fn interval(record: &Value) -> (jiff::Timestamp, jiff::Timestamp) {
    let time = |field: &str| -> jiff::Timestamp {
        record[field]
            .as_str()
            .unwrap_or_else(|| panic!("{field} in {record}"))
            .parse()
            .expect("time")
    };
    (time("startedAt"), time("finishedAt"))
}

/// With maxConcurrent 1, the first run starts within two poll intervals of arming, and each next
/// one within two poll intervals of the previous one's end.
fn assert_within_two_polls(armed: jiff::Timestamp, runs: &[(jiff::Timestamp, jiff::Timestamp)]) {
    let bound = jiff::SignedDuration::from_secs(2 * POLL_SECONDS);
    let mut ready = armed;
    for &(started, finished) in runs {
        let waited = started.duration_since(ready);
        assert!(waited <= bound, "run started {waited:?} after it was due (runs {runs:?})");
        ready = finished;
    }
}
