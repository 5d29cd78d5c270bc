//! Issue-6 maintenance scenario on the real operator and cache nodes (see docs/maintenance.md):
//! fill, delete most keys, and watch the operator bring every pod's tombstone ratio back under
//! the threshold, one pod at a time, while a client reading the surviving keys sees no error.

use e2e::scenario::{Env, condition, shard_of};
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const MANIFEST: &str = "apiVersion: mapcache.io/v1alpha1\nkind: MapCache\nmetadata:\n  name: churn\nspec:\n  replicas: 3\n  image: ghcr.io/mapcache/mapcache:0.1.0\n  engine:\n    shards: 4\n  maintenance:\n    pollInterval: 2s\n    cooldown: 30s\n    minKeys: 1000\n    maxConcurrent: 1\n";

#[tokio::test]
async fn mass_delete_triggers_maintenance_one_pod_at_a_time_without_client_errors() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0");
    env.apply_yaml(MANIFEST).await;
    let cache = "churn";
    let caches = env.mapcaches();
    env.wait_until("the MapCache is Ready with 3 pods", Duration::from_secs(180), || async {
        let object = caches.get(cache).await.ok()?;
        let ready = condition(&object.data, "Ready").is_some_and(|c| c["status"] == "True");
        (ready && env.cache_endpoints(cache).await.len() == 3).then_some(())
    })
    .await;

    let endpoints = env.cache_endpoints(cache).await;
    let mut conns = Vec::new();
    for (_, address) in &endpoints {
        let client = redis::Client::open(format!("redis://{address}/")).expect("redis url");
        conns.push(client.get_multiplexed_async_connection().await.expect("connect"));
    }
    const KEYS: usize = 200_000;
    let key = |i: usize| format!("key:{i:06}");
    let survives = |i: usize| i % 5 >= 3; // 40% survive, 60% deleted
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(5_000) {
        let mut pipes: Vec<redis::Pipeline> = (0..3).map(|_| redis::pipe()).collect();
        for &i in chunk {
            pipes[shard_of(key(i).as_bytes(), 3)].set(key(i), i).ignore();
        }
        for (pipe, connection) in pipes.iter().zip(conns.iter_mut()) {
            let () = pipe.query_async(connection).await.expect("pipelined SET");
        }
    }
    for chunk in (0..KEYS).filter(|&i| !survives(i)).collect::<Vec<_>>().chunks(5_000) {
        let mut pipes: Vec<redis::Pipeline> = (0..3).map(|_| redis::pipe()).collect();
        for &i in chunk {
            pipes[shard_of(key(i).as_bytes(), 3)].del(key(i)).ignore();
        }
        for (pipe, connection) in pipes.iter().zip(conns.iter_mut()) {
            let () = pipe.query_async(connection).await.expect("pipelined DEL");
        }
    }

    // A reader goes over the surviving keys the whole time.
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let reads = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, errors, reads) = (stop.clone(), errors.clone(), reads.clone());
        let mut conns = conns.clone();
        tokio::spawn(async move {
            let surviving: Vec<usize> = (0..KEYS).filter(|&i| survives(i)).collect();
            let mut cursor = 0;
            while !stop.load(Ordering::SeqCst) {
                let batch: Vec<usize> =
                    (0..300).map(|n| surviving[(cursor + n) % surviving.len()]).collect();
                cursor += 300;
                for (shard, connection) in conns.iter_mut().enumerate() {
                    let keys: Vec<String> = batch
                        .iter()
                        .map(|&i| key(i))
                        .filter(|k| shard_of(k.as_bytes(), 3) == shard)
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

    // The operator acts while the deletes land (the ratio crosses the compact threshold part-way),
    // one pod at a time; in the end every pod is under the threshold with no run left open.
    let pods = env
        .wait_until(
            "maintenance ran, finished, and every pod is under the compact threshold",
            Duration::from_secs(240),
            || async {
                let object = caches.get(cache).await.ok()?;
                let pods = object.data.pointer("/status/pods")?.as_array()?.clone();
                let runs: Vec<&Value> = pods.iter().filter_map(last_run).collect();
                let done = pods.len() == 3
                    && !runs.is_empty()
                    && runs.iter().all(|r| !r["finishedAt"].is_null())
                    && pods.iter().all(|p| p["tombstoneRatio"].as_f64().is_some_and(|r| r < 0.25));
                done.then_some(pods)
            },
        )
        .await;
    stop.store(true, Ordering::SeqCst);
    reader.await.expect("reader");
    assert!(reads.load(Ordering::SeqCst) > 0, "the reader ran");
    assert_eq!(errors.load(Ordering::SeqCst), 0, "no read error and no missing surviving key");

    // Each run purged tombstones, and with maxConcurrent 1 no two runs overlapped.
    let mut intervals = Vec::new();
    for pod in &pods {
        for kind in ["lastCompaction", "lastRebuild"] {
            let record = &pod[kind];
            if record.is_null() {
                continue;
            }
            let before = record["tombstonesBefore"].as_u64().expect("tombstones before");
            let after = record["tombstonesAfter"].as_u64().expect("tombstones after");
            assert!(after < before, "{} {kind}: tombstones {before} -> {after}", pod["name"]);
            let started: jiff::Timestamp =
                record["startedAt"].as_str().expect("start").parse().expect("time");
            let finished: jiff::Timestamp =
                record["finishedAt"].as_str().expect("finish").parse().expect("time");
            intervals.push((started, finished));
        }
    }
    intervals.sort();
    for pair in intervals.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlapped: {intervals:?}");
    }
    operator.assert_running();
}

/// The newer of `lastCompaction` / `lastRebuild`.
fn last_run(pod: &Value) -> Option<&Value> {
    let start = |v: &Value| v["startedAt"].as_str().map(str::to_string);
    match (
        pod.get("lastCompaction").filter(|v| !v.is_null()),
        pod.get("lastRebuild").filter(|v| !v.is_null()),
    ) {
        (Some(c), Some(r)) => Some(if start(r) >= start(c) { r } else { c }),
        (c, r) => c.or(r),
    }
}
