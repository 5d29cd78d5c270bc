//! Issue-6 hot-update scenarios on the real operator and cache nodes (see docs/rollout.md):
//! a 3-pod cache hot-updated under client load with zero keys lost and the checklist evidence in
//! status, and the refusal with persistence off.

use e2e::scenario::{Env, condition, shard_of};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

fn manifest(name: &str, image: &str, persistence: bool) -> String {
    format!(
        "apiVersion: mapcache.io/v1alpha1\nkind: MapCache\nmetadata:\n  name: {name}\nspec:\n  \
         replicas: 3\n  image: {image}\n  engine:\n    shards: 4\n  persistence:\n    enabled: \
         {persistence}\n  rollout:\n    checklistTimeout: 2m\n    quietPeriod: 1s\n    \
         lockProfileSeconds: 1\n"
    )
}

async fn wait_ready(env: &Env, cache: &str, pods: usize) {
    let caches = env.mapcaches();
    env.wait_until(
        "the MapCache is Ready with every pod ready",
        Duration::from_secs(180),
        || async {
            let object = caches.get(cache).await.ok()?;
            let ready = condition(&object.data, "Ready").is_some_and(|c| c["status"] == "True");
            (ready && env.cache_endpoints(cache).await.len() == pods).then_some(())
        },
    )
    .await;
}

async fn set_image(env: &Env, cache: &str, image: &str) {
    env.mapcaches()
        .patch(cache, &PatchParams::default(), &Patch::Merge(json!({"spec": {"image": image}})))
        .await
        .expect("patch the image");
}

async fn connections(env: &Env, cache: &str) -> Vec<(String, redis::aio::MultiplexedConnection)> {
    let mut out = Vec::new();
    for (pod, address) in env.cache_endpoints(cache).await {
        let connection =
            e2e::scenario::redis_connection(&format!("redis://{address}/")).await.expect("connect");
        out.push((pod, connection));
    }
    out
}

/// An error on `pod` is expected once the operator has started replacing it: it carries the
/// draining label, is terminating, is gone, or is a newer incarnation than `uid`.
async fn replacement_started(pods: &Api<Pod>, pod: &str, uid: &str) -> bool {
    match pods.get_opt(pod).await {
        Ok(Some(p)) => {
            p.metadata.uid.as_deref() != Some(uid)
                || p.metadata.deletion_timestamp.is_some()
                || p.metadata.labels.unwrap_or_default().contains_key("mapcache.io/draining")
        }
        Ok(None) => true,
        Err(_) => false,
    }
}

#[tokio::test]
async fn hot_update_replaces_every_pod_behind_the_checklist_and_loses_no_key() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    let cache = "hot";
    env.apply_yaml(&manifest(cache, "ghcr.io/mapcache/mapcache:0.1.0", true)).await;
    wait_ready(&env, cache, 3).await;

    // 100k keys, sharded by the client over the three pods (pod i holds shard i).
    let mut conns = connections(&env, cache).await;
    const KEYS: usize = 100_000;
    let key = |i: usize| format!("key:{i:06}");
    let value = |i: usize| format!("value-{i}");
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(5_000) {
        let mut pipes: Vec<redis::Pipeline> = (0..3).map(|_| redis::pipe()).collect();
        for &i in chunk {
            pipes[shard_of(key(i).as_bytes(), 3)].set(key(i), value(i)).ignore();
        }
        for (pipe, (_, connection)) in pipes.iter().zip(conns.iter_mut()) {
            let () = pipe.query_async(connection).await.expect("pipelined SET");
        }
    }
    let pods_api: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let uids: BTreeMap<String, String> = {
        let mut uids = BTreeMap::new();
        for (pod, _) in &conns {
            let p = pods_api.get(pod).await.expect("pod");
            uids.insert(pod.clone(), p.metadata.uid.unwrap_or_default());
        }
        uids
    };

    // A client keeps reading and writing its own keys on every pod during the update; an error
    // counts only if the operator had not started replacing that pod.
    let stop = Arc::new(AtomicBool::new(false));
    let unexpected = Arc::new(AtomicU64::new(0));
    let during_replacement = Arc::new(AtomicU64::new(0));
    let operations = Arc::new(AtomicU64::new(0));
    let load = {
        let (stop, unexpected, operations) = (stop.clone(), unexpected.clone(), operations.clone());
        let during_replacement = during_replacement.clone();
        let pods_api = pods_api.clone();
        let uids = uids.clone();
        let mut live: Vec<(String, Option<redis::aio::MultiplexedConnection>)> =
            conns.into_iter().map(|(pod, c)| (pod, Some(c))).collect();
        tokio::spawn(async move {
            let mut round = 0u64;
            while !stop.load(Ordering::SeqCst) {
                round += 1;
                for (pod, connection) in live.iter_mut() {
                    let Some(conn) = connection.as_mut() else { continue };
                    let write: redis::RedisResult<()> = redis::cmd("SET")
                        .arg(format!("load:{pod}:{round}"))
                        .arg(round)
                        .query_async(conn)
                        .await;
                    let read: redis::RedisResult<Option<String>> = redis::cmd("GET")
                        .arg(format!("load:{pod}:{round}"))
                        .query_async(conn)
                        .await;
                    operations.fetch_add(2, Ordering::SeqCst);
                    let failed = write.is_err()
                        || read.as_ref().map_or(true, |v| v.as_deref() != Some(&round.to_string()));
                    if failed {
                        if replacement_started(&pods_api, pod, &uids[pod]).await {
                            during_replacement.fetch_add(1, Ordering::SeqCst);
                        } else {
                            eprintln!("unexpected error on {pod}: write {write:?} read {read:?}");
                            unexpected.fetch_add(1, Ordering::SeqCst);
                        }
                        *connection = None; // this pod is being replaced; stop using it
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let caches = env.mapcaches();
    let before = caches.get(cache).await.expect("cache");
    let old_revision = before.data.pointer("/status/updateRevision").cloned().unwrap_or_default();
    set_image(&env, cache, "ghcr.io/mapcache/mapcache:0.1.1").await;
    let updated = env
        .wait_until(
            "every pod on the new revision and the rollout finished",
            Duration::from_secs(420),
            || async {
                let object = caches.get(cache).await.ok()?;
                let status = object.data.get("status")?;
                let update = status.get("updateRevision")?;
                let done = *update != old_revision
                    && status.get("currentRevision") == Some(update)
                    && status.get("rollout").is_none_or(Value::is_null)
                    && condition(&object.data, "RollingUpdate")
                        .is_some_and(|c| c["reason"] == "UpToDate")
                    && env.cache_endpoints(cache).await.len() == 3;
                done.then_some(object)
            },
        )
        .await;
    operator.assert_running();
    stop.store(true, Ordering::SeqCst);
    load.await.expect("load task");
    assert!(operations.load(Ordering::SeqCst) > 0, "the client ran during the update");
    // Without the slot handoff (issue 20) a client of a pod being replaced sees its connection
    // fail once; it stops using that pod then. Counted and printed, not hidden.
    eprintln!(
        "client errors: {} of {} operations, {} on pods being replaced, {} elsewhere",
        during_replacement.load(Ordering::SeqCst) + unexpected.load(Ordering::SeqCst),
        operations.load(Ordering::SeqCst),
        during_replacement.load(Ordering::SeqCst),
        unexpected.load(Ordering::SeqCst)
    );
    assert_eq!(
        unexpected.load(Ordering::SeqCst),
        0,
        "no error on pods that were not being replaced"
    );

    // Every pod is a new incarnation, and its checklist evidence is in status.
    for (pod, uid) in &uids {
        let now = pods_api.get(pod).await.expect("pod");
        assert_ne!(now.metadata.uid.as_deref(), Some(uid.as_str()), "{pod} was replaced");
    }
    let pods = updated.data.pointer("/status/pods").and_then(Value::as_array).expect("status.pods");
    for pod in pods {
        let items: Vec<(&str, bool)> = pod["checklist"]
            .as_array()
            .expect("checklist")
            .iter()
            .map(|i| (i["name"].as_str().unwrap_or_default(), i["passed"] == true))
            .collect();
        assert_eq!(
            items,
            [
                ("deregistered", true),
                ("no-inflight", true),
                ("no-lock-waiters", true),
                ("cross-checked", true),
                ("maintenance-idle", true),
                ("snapshot-verified", true),
                ("disruption-allowed", true),
            ],
            "checklist of {}",
            pod["name"]
        );
    }

    // Every key written before the update reads back.
    let mut conns = connections(&env, cache).await;
    let mut missing = 0;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(5_000) {
        for (shard, (_, connection)) in conns.iter_mut().enumerate() {
            let keys: Vec<String> = chunk
                .iter()
                .map(|&i| key(i))
                .filter(|k| shard_of(k.as_bytes(), 3) == shard)
                .collect();
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(connection).await.expect("MGET");
            for (k, v) in keys.iter().zip(values) {
                let i: usize = k[4..].parse().expect("key index");
                if v.as_deref() != Some(value(i).as_str()) {
                    missing += 1;
                }
            }
        }
    }
    assert_eq!(missing, 0, "every key written before the update is readable after it");
}

#[tokio::test]
async fn persistence_off_refuses_the_rollout_and_deletes_nothing() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    let cache = "volatile";
    env.apply_yaml(&manifest(cache, "ghcr.io/mapcache/mapcache:0.1.0", false)).await;
    wait_ready(&env, cache, 3).await;
    let pods_api: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let uids_before: Vec<Option<String>> = {
        let mut uids = Vec::new();
        for i in 0..3 {
            uids.push(pods_api.get(&format!("{cache}-{i}")).await.expect("pod").metadata.uid);
        }
        uids
    };
    set_image(&env, cache, "ghcr.io/mapcache/mapcache:0.1.1").await;
    let caches = env.mapcaches();
    let refused = env
        .wait_until(
            "RollingUpdate=False reason DataLossRefused",
            Duration::from_secs(120),
            || async {
                let object = caches.get(cache).await.ok()?;
                condition(&object.data, "RollingUpdate")
                    .filter(|c| c["status"] == "False" && c["reason"] == "DataLossRefused")
                    .cloned()
            },
        )
        .await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("allowDataLoss"), "the condition says how to proceed: {message}");
    // Give the operator time to (wrongly) drain or evict, then check nothing moved.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (i, uid) in uids_before.iter().enumerate() {
        let pod = pods_api.get(&format!("{cache}-{i}")).await.expect("pod still there");
        assert_eq!(&pod.metadata.uid, uid, "{cache}-{i} was not replaced");
        assert!(pod.metadata.deletion_timestamp.is_none());
        assert!(
            !pod.metadata.labels.unwrap_or_default().contains_key("mapcache.io/draining"),
            "{cache}-{i} was not drained"
        );
    }
    operator.assert_running();
}

#[tokio::test]
async fn busy_client_blocks_the_rollout_until_it_goes_idle() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    let cache = "busy";
    let manifest = manifest(cache, "ghcr.io/mapcache/mapcache:0.1.0", true)
        .replace("checklistTimeout: 2m", "checklistTimeout: 5s");
    env.apply_yaml(&manifest).await;
    wait_ready(&env, cache, 3).await;
    let pods_api: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let first = format!("{cache}-2");
    let first_uid = pods_api.get(&first).await.expect("pod").metadata.uid;

    // A client keeps a connection busy on the pod drained first (highest ordinal).
    let address = env
        .cache_endpoints(cache)
        .await
        .into_iter()
        .find(|(pod, _)| *pod == first)
        .map(|(_, address)| address)
        .expect("the pod's address");
    let busy = Arc::new(AtomicBool::new(true));
    let client_task = {
        let busy = busy.clone();
        let mut connection =
            e2e::scenario::redis_connection(&format!("redis://{address}/")).await.expect("connect");
        tokio::spawn(async move {
            while busy.load(Ordering::SeqCst) {
                let _: redis::RedisResult<Option<String>> =
                    redis::cmd("GET").arg("busy-key").query_async(&mut connection).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    set_image(&env, cache, "ghcr.io/mapcache/mapcache:0.1.1").await;
    let caches = env.mapcaches();
    let blocked = env
        .wait_until(
            "RollingUpdate=False blocked on no-inflight",
            Duration::from_secs(120),
            || async {
                let object = caches.get(cache).await.ok()?;
                let rollout = object.data.pointer("/status/rollout")?.clone();
                let rolling = condition(&object.data, "RollingUpdate")?.clone();
                (rollout["step"] == "Blocked"
                    && rollout["blockedOn"] == "no-inflight"
                    && rolling["status"] == "False"
                    && rolling["reason"] == "ChecklistTimeout")
                    .then_some(rolling)
            },
        )
        .await;
    let message = blocked["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("no-inflight") && message.contains("nothing was deleted"),
        "{message}"
    );
    let still = pods_api.get(&first).await.expect("the pod is still there");
    assert_eq!(still.metadata.uid, first_uid, "nothing was deleted while blocked");
    assert!(still.metadata.deletion_timestamp.is_none());

    // The client goes idle: after the quiet period the checklist passes and the rollout goes on.
    busy.store(false, Ordering::SeqCst);
    client_task.await.expect("client task");
    env.wait_until("the blocked pod is replaced", Duration::from_secs(180), || async {
        let pod = pods_api.get_opt(&first).await.ok()??;
        (pod.metadata.uid != first_uid).then_some(())
    })
    .await;
    env.wait_until("every pod on the new revision", Duration::from_secs(420), || async {
        let object = caches.get(cache).await.ok()?;
        condition(&object.data, "RollingUpdate").filter(|c| c["reason"] == "UpToDate").map(|_| ())
    })
    .await;
    operator.assert_running();
}

#[tokio::test]
async fn operator_killed_after_an_eviction_resumes_and_never_evicts_twice() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    let cache = "resume";
    env.apply_yaml(&manifest(cache, "ghcr.io/mapcache/mapcache:0.1.0", true)).await;
    wait_ready(&env, cache, 3).await;
    let pods_api: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let mut uids = BTreeMap::new();
    for i in 0..3 {
        let name = format!("{cache}-{i}");
        uids.insert(name.clone(), pods_api.get(&name).await.expect("pod").metadata.uid);
    }

    set_image(&env, cache, "ghcr.io/mapcache/mapcache:0.1.1").await;
    let caches = env.mapcaches();
    env.wait_until("the first eviction is recorded", Duration::from_secs(180), || async {
        let object = caches.get(cache).await.ok()?;
        let rollout = object.data.pointer("/status/rollout")?;
        (rollout["evictedUid"].is_string()
            && (rollout["step"] == "WaitingReady" || rollout["step"] == "Evicting"))
            .then_some(())
    })
    .await;
    operator.kill().await;

    let mut second = env.start_operator("operator-1").await;
    let done = env
        .wait_until("the resumed rollout finishes", Duration::from_secs(420), || async {
            let object = caches.get(cache).await.ok()?;
            condition(&object.data, "RollingUpdate")
                .filter(|c| c["reason"] == "UpToDate")
                .map(|_| object.clone())
        })
        .await;
    second.assert_running();
    // Each old pod was replaced, was evicted at most once, and no replacement was evicted.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(env.client.clone(), &env.namespace);
    let evicted: Vec<String> = events
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Evicted"))
        .filter_map(|e| e.note)
        .collect();
    for (name, uid) in &uids {
        let pod = pods_api.get(name).await.expect("pod");
        assert_ne!(&pod.metadata.uid, uid, "{name} was replaced");
        let old = uid.clone().unwrap_or_default();
        let new = pod.metadata.uid.clone().unwrap_or_default();
        let count = |u: &str| evicted.iter().filter(|n| n.contains(&format!("(uid {u})"))).count();
        assert!(count(&old) <= 1, "{name} ({old}) evicted {} times: {evicted:?}", count(&old));
        assert_eq!(count(&new), 0, "the replacement {name} ({new}) was never evicted: {evicted:?}");
    }
    assert!(done.data.pointer("/status/rollout").is_none_or(Value::is_null));
}
