//! End-to-end scenarios: the real `mapcache operator` process and real `mapcache serve` pods
//! on the local cluster (or, with `E2E_KUBECONFIG=<file>`, on a real cluster). See docs/e2e.md.

use e2e::scenario::{Env, condition, engine_process, pod_ready, shard_of};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use redis::AsyncCommands;
use std::time::Duration;

const BASIC: &str = include_str!("../../manifests/examples/basic.yaml");
const SIDECAR: &str = include_str!("../../manifests/examples/sidecar.yaml");
const TUNED: &str = include_str!("../../manifests/examples/tuned.yaml");

/// The children an operator creates for a cache, by their instance label, per kind.
async fn children(env: &Env, cache: &str) -> Vec<String> {
    let kinds = [
        ("apps", "v1", "StatefulSet", "statefulsets"),
        ("", "v1", "Service", "services"),
        ("", "v1", "ConfigMap", "configmaps"),
        ("", "v1", "Secret", "secrets"),
        ("", "v1", "Pod", "pods"),
        ("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets"),
        ("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies"),
    ];
    let mut found = Vec::new();
    for (group, version, kind, plural) in kinds {
        let resource =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> =
            Api::namespaced_with(env.client.clone(), &env.namespace, &resource);
        let selector = format!("app.kubernetes.io/instance={cache}");
        if let Ok(list) = api.list(&ListParams::default().labels(&selector)).await {
            found.extend(
                list.items
                    .into_iter()
                    .map(|o| format!("{kind}/{}", o.metadata.name.unwrap_or_default())),
            );
        }
    }
    found
}

#[tokio::test]
async fn basic_cache_serves_100k_keys_and_is_garbage_collected_on_delete() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    let applied = env.apply_yaml(BASIC).await;
    let cache = applied[0].metadata.name.clone().expect("the example names its cache");
    let replicas =
        applied[0].data.pointer("/spec/replicas").and_then(|r| r.as_i64()).unwrap_or(1) as usize;
    assert_eq!(replicas, 3, "basic.yaml runs three pods");

    let caches = env.mapcaches();
    env.wait_for_condition(&cache, "Ready", "True", Duration::from_secs(180)).await;
    env.wait_until("3 ready pods", Duration::from_secs(60), || async {
        (env.cache_endpoints(&cache).await.len() == replicas).then_some(())
    })
    .await;
    operator.assert_running();

    // 100k keys, sharded by the client across the three pods, then every one read back.
    let (pods, mut connections): (Vec<String>, Vec<_>) =
        env.connect_all(&cache).await.into_iter().unzip();
    const KEYS: usize = 100_000;
    let key = |i: usize| format!("key:{i:06}");
    let value = |i: usize| format!("value-{i}-{}", i * 7);
    let mut per_shard = vec![0usize; connections.len()];
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(2_000) {
        let mut pipes: Vec<redis::Pipeline> =
            (0..connections.len()).map(|_| redis::pipe()).collect();
        for &i in chunk {
            let shard = shard_of(key(i).as_bytes(), connections.len());
            per_shard[shard] += 1;
            pipes[shard].set(key(i), value(i)).ignore();
        }
        for (pipe, connection) in pipes.iter().zip(connections.iter_mut()) {
            let () = pipe.query_async(connection).await.expect("pipelined SET");
        }
    }
    assert!(per_shard.iter().all(|&n| n > KEYS / 4), "keys spread over every pod: {per_shard:?}");
    for (shard, connection) in connections.iter_mut().enumerate() {
        let size: usize = redis::cmd("DBSIZE").query_async(connection).await.expect("DBSIZE");
        assert_eq!(size, per_shard[shard], "pod {} holds exactly its share", pods[shard]);
    }
    let mut missing = 0;
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(2_000) {
        for (shard, connection) in connections.iter_mut().enumerate() {
            let keys: Vec<String> = chunk
                .iter()
                .map(|&i| key(i))
                .filter(|k| shard_of(k.as_bytes(), pods.len()) == shard)
                .collect();
            if keys.is_empty() {
                continue;
            }
            let values: Vec<Option<String>> = connection.mget(&keys).await.expect("MGET");
            for (k, v) in keys.iter().zip(values) {
                let i: usize = k[4..].parse().expect("key index");
                if v.as_deref() != Some(value(i).as_str()) {
                    missing += 1;
                }
            }
        }
    }
    assert_eq!(missing, 0, "every key reads back with its value");

    // Deleting the cache garbage-collects every child.
    let before = children(&env, &cache).await;
    assert!(
        before.iter().any(|c| c.starts_with("StatefulSet/")),
        "children exist before delete: {before:?}"
    );
    assert!(before.iter().filter(|c| c.starts_with("Pod/")).count() == replicas, "{before:?}");
    caches.delete(&cache, &DeleteParams::default()).await.expect("delete the MapCache");
    env.wait_until("every child of the cache is gone", Duration::from_secs(120), || async {
        let left = children(&env, &cache).await;
        let gone = caches.get_opt(&cache).await.ok()?.is_none();
        (left.is_empty() && gone).then_some(())
    })
    .await;
    operator.assert_running();
}

#[tokio::test]
async fn invalid_spec_sets_invalid_spec_and_creates_nothing() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    // An app container named `engine` collides with the sidecar: the schema accepts it, the
    // operator's validation does not.
    let manifest = "apiVersion: mapcache.io/v1alpha1\nkind: MapCache\nmetadata:\n  name: invalid\nspec:\n  replicas: 1\n  image: ghcr.io/mapcache/mapcache:0.1.0\n  podTemplate:\n    spec:\n      containers:\n      - name: engine\n        image: example.com/app:1\n";
    env.apply_yaml(manifest).await;
    let object =
        env.wait_for_condition("invalid", "InvalidSpec", "True", Duration::from_secs(60)).await;
    let invalid = condition(&object, "InvalidSpec").cloned().expect("the condition");
    let message = invalid["message"].as_str().unwrap_or_default();
    assert!(message.contains("engine"), "the condition names the problem: {message}");
    // Give the operator time to (wrongly) create something, then check nothing exists.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(children(&env, "invalid").await, Vec::<String>::new());
    operator.assert_running();
}

#[tokio::test]
async fn sidecar_example_runs_the_engine_beside_the_app_container() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    env.apply_yaml(SIDECAR).await;
    env.wait_for_condition("sidecar", "Ready", "True", Duration::from_secs(180)).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=sidecar"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
    for pod in &list.items {
        assert!(pod_ready(pod));
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(
            labels.get("team").map(String::as_str),
            Some("web"),
            "podTemplate labels reach the pod"
        );
        let mut containers: Vec<String> =
            pod.spec.as_ref().unwrap().containers.iter().map(|c| c.name.clone()).collect();
        containers.sort();
        assert_eq!(containers, vec!["engine", "web"]);
    }
    for (pod, mut connection) in env.connect_all("sidecar").await {
        let () =
            redis::cmd("SET").arg("owner").arg(&pod).query_async(&mut connection).await.unwrap();
        let owner: String =
            redis::cmd("GET").arg("owner").query_async(&mut connection).await.unwrap();
        assert_eq!(owner, pod);
        // The app container (sidecar-app standing in for the example's busybox) writes
        // `sidecar:<its hostname>` through 127.0.0.1:6379 every second: only its own pod's
        // engine, over the pod's shared loopback, can hold that key.
        let key = format!("sidecar:{pod}");
        let rounds: u64 = env
            .wait_until(
                &format!("{pod}'s app container writes {key}"),
                Duration::from_secs(60),
                || {
                    let mut connection = connection.clone();
                    let key = key.clone();
                    async move {
                        let value: Option<u64> =
                            redis::cmd("GET").arg(&key).query_async(&mut connection).await.ok()?;
                        value.filter(|rounds| *rounds >= 2)
                    }
                },
            )
            .await;
        assert!(rounds >= 2);
    }
    operator.assert_running();
}

#[tokio::test]
async fn a_cache_process_killed_with_sigkill_is_restarted_and_the_cache_is_ready_again() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    let manifest = "apiVersion: mapcache.io/v1alpha1\nkind: MapCache\nmetadata:\n  name: crashy\nspec:\n  replicas: 1\n  image: ghcr.io/mapcache/mapcache:0.1.0\n  persistence:\n    enabled: true\n    size: 64Mi\n";
    env.apply_yaml(manifest).await;
    env.wait_for_condition("crashy", "Ready", "True", Duration::from_secs(180)).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let before = pods.get("crashy-0").await.unwrap();
    let (pid, restarts) = engine_process(&before).expect("the engine runs as a process");
    assert_eq!(restarts, 0);
    // SAFETY: kill(2) on the engine process the kubelet reported for this test's own pod.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
    let after = env
        .wait_until(
            "the engine restarted and the pod Ready again",
            Duration::from_secs(120),
            || async {
                let pod = pods.get("crashy-0").await.ok()?;
                let (new_pid, restarts) = engine_process(&pod)?;
                (restarts == 1 && new_pid != pid && pod_ready(&pod)).then_some(pod)
            },
        )
        .await;
    assert_eq!(after.metadata.uid, before.metadata.uid, "the same pod, restarted in place");
    let engine = after
        .status
        .unwrap()
        .container_statuses
        .unwrap()
        .into_iter()
        .find(|c| c.name == "engine")
        .unwrap();
    let terminated = engine.last_state.and_then(|s| s.terminated).expect("lastState.terminated");
    assert_eq!(terminated.exit_code, 128 + libc::SIGKILL);
    env.wait_for_condition("crashy", "Ready", "True", Duration::from_secs(120)).await;
    let mut connections = env.connect_all("crashy").await;
    let (_, connection) = &mut connections[0];
    let () = redis::cmd("SET").arg("after").arg("crash").query_async(connection).await.unwrap();
    let value: String = redis::cmd("GET").arg("after").query_async(connection).await.unwrap();
    assert_eq!(value, "crash");
    operator.assert_running();
}

#[tokio::test]
async fn a_child_the_api_server_refuses_shows_as_degraded_with_its_answer() {
    let env = Env::start().await;
    env.install_crd().await;
    // A ResourceQuota that allows no Secret: the API server's quota admission refuses the
    // cache's admin-token Secret, as it would on a cluster with a tight quota.
    env.apply_yaml("apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: no-secrets\nspec:\n  hard:\n    secrets: \"0\"\n")
        .await;
    env.wait_until("the quota is in force", Duration::from_secs(30), || async {
        let (ok, out, _) = env
            .kubectl(&[
                "get",
                "resourcequota",
                "no-secrets",
                "-o",
                "jsonpath={.status.hard.secrets}",
            ])
            .await;
        (ok && out == "0").then_some(())
    })
    .await;
    let mut operator = env.start_operator("operator-0").await;
    env.apply_yaml("apiVersion: mapcache.io/v1alpha1\nkind: MapCache\nmetadata:\n  name: quota\nspec:\n  replicas: 1\n  image: ghcr.io/mapcache/mapcache:0.1.0\n")
        .await;
    let object = env.wait_for_condition("quota", "Degraded", "True", Duration::from_secs(60)).await;
    let degraded = condition(&object, "Degraded").cloned().expect("the condition");
    assert_eq!(degraded["reason"], "ApplyFailed");
    let message = degraded["message"].as_str().unwrap_or_default();
    assert!(message.contains("exceeded quota: no-secrets"), "{message}");
    assert_eq!(object.pointer("/status/phase").and_then(|p| p.as_str()), Some("Degraded"));
    let (ok, out, _) =
        env.kubectl(&["get", "events", "--field-selector=reason=ApplyFailed", "-o", "name"]).await;
    assert!(ok && !out.trim().is_empty(), "an ApplyFailed Event: {out}");
    operator.assert_running();
}

#[tokio::test]
async fn tuned_example_runs_with_its_memory_cap_policy_and_disruption_budget() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    env.apply_yaml(TUNED).await;
    env.wait_for_condition("tuned", "Ready", "True", Duration::from_secs(240)).await;
    // The scheduler placed three pods that request 250m CPU and 640Mi each on the node.
    let connections = env.connect_all("tuned").await;
    assert_eq!(connections.len(), 3);
    for (pod, mut connection) in connections {
        let config: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory*")
            .query_async(&mut connection)
            .await
            .unwrap();
        let pairs: std::collections::BTreeMap<&str, &str> =
            config.chunks(2).map(|kv| (kv[0].as_str(), kv[1].as_str())).collect();
        assert_eq!(pairs.get("maxmemory"), Some(&"536870912"), "{pod}: {config:?}");
        assert_eq!(pairs.get("maxmemory-policy"), Some(&"allkeys-lru"), "{pod}: {config:?}");
    }
    let (ok, out, err) = env
        .kubectl(&[
            "get",
            "pdb",
            "tuned",
            "-o",
            "jsonpath={.spec.maxUnavailable} {.status.disruptionsAllowed}",
        ])
        .await;
    assert!(ok, "{err}");
    assert_eq!(out, "1 1", "the disruption controller counts three healthy pods");
    operator.assert_running();
}
