//! The process kubelet with the real `mapcache` binary: addresses, volumes, env, probes,
//! sidecar app containers, crash restarts and graceful deletion.

use e2e::cluster::{ClusterConfig, LocalCluster};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::time::Duration;

async fn eventually<T, F, Fut>(what: &str, cluster: &LocalCluster, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..240 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for: {what}; container logs in {}", cluster.logs_dir().display());
}

fn cache_pod(args: &[&str]) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "cache"},
        "spec": {
            "terminationGracePeriodSeconds": 20,
            "containers": [
                {"name": "app", "image": "example.com/app:1"},
                {
                    "name": "engine",
                    "image": "ghcr.io/mapcache/mapcache:test",
                    "command": ["mapcache"],
                    "args": args,
                    "ports": [{"name": "redis", "containerPort": 6379}, {"name": "admin", "containerPort": 9090}],
                    "env": [
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "MAPCACHE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "password"}}}
                    ],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 1},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9090}, "periodSeconds": 1},
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "token", "mountPath": "/etc/admin", "readOnly": true}]
                }
            ],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data-cache"}},
                {"name": "token", "secret": {"secretName": "token"}}
            ]
        }
    }))
    .expect("pod")
}

async fn secrets(client: &kube::Client) {
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    for (name, key, value) in [("token", "token", "s3cret-token"), ("auth", "password", "pw")] {
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {key: value}}))
                .unwrap();
        api.create(&PostParams::default(), &secret).await.unwrap();
    }
}

const SERVE: &[&str] = &[
    "serve",
    "--bind=0.0.0.0",
    "--port=6379",
    "--admin-bind=0.0.0.0",
    "--admin-port=9090",
    "--data-dir=/data",
    "--admin-token-file=/etc/admin/token",
];

#[tokio::test]
async fn mapcache_pod_runs_on_its_own_address_becomes_ready_and_stops_gracefully() {
    let cluster = LocalCluster::start(ClusterConfig::default()).await.expect("cluster");
    let client = cluster.client().unwrap();
    secrets(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &cache_pod(SERVE)).await.unwrap();
    let pod = eventually("the pod is Ready", &cluster, || async {
        let pod = pods.get("cache").await.ok()?;
        e2e::scenario::pod_ready(&pod).then_some(pod)
    })
    .await;
    let status = pod.status.unwrap();
    let ip = status.pod_ip.clone().unwrap();
    assert!(ip.starts_with("127.0.") && ip.ends_with(".10"), "first pod address: {ip}");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let containers = status.container_statuses.unwrap();
    let ready: Vec<(String, bool, i32)> =
        containers.iter().map(|c| (c.name.clone(), c.ready, c.restart_count)).collect();
    assert_eq!(ready, vec![("app".to_string(), true, 0), ("engine".to_string(), true, 0)]);

    // The engine listens on the pod address, with the password from the Secret.
    let mut connection = e2e::scenario::redis_connection(&format!("redis://:pw@{ip}:6379/"))
        .await
        .expect("connect with AUTH");
    let () = redis::cmd("SET").arg("k").arg("v").query_async(&mut connection).await.unwrap();
    // The admin token file came from the Secret volume.
    let stats = reqwest::Client::new()
        .post(format!("http://{ip}:9090/v1/snapshot"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .unwrap();
    assert!(stats.status().is_success(), "snapshot with the mounted token: {}", stats.status());

    // Deletion: SIGTERM (drain + snapshot into the PVC directory), then the object goes.
    let terminating = pods.delete("cache", &DeleteParams::default()).await.unwrap();
    let terminating = terminating.left().expect("the pod object, still there while it terminates");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(20));
    eventually("the pod object is removed", &cluster, || async {
        pods.get_opt("cache").await.ok()?.is_none().then_some(())
    })
    .await;
    let pvc_dir = cluster.state_dir.join("pvc/default/data-cache");
    let snapshots = std::fs::read_dir(&pvc_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .count();
    assert!(snapshots >= 1, "a snapshot in {} after SIGTERM", pvc_dir.display());
    assert!(
        redis::Client::open(format!("redis://{ip}:6379/"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .is_err(),
        "the process is gone"
    );
}

#[tokio::test]
async fn crashing_container_restarts_with_backoff_and_reports_its_exit_code() {
    let cluster = LocalCluster::start(ClusterConfig::default()).await.expect("cluster");
    let client = cluster.client().unwrap();
    secrets(&client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &cache_pod(&["serve", "--no-such-flag"])).await.unwrap();
    let engine = eventually("the engine restarted once", &cluster, || async {
        let pod = pods.get("cache").await.ok()?;
        let engine = pod.status?.container_statuses?.into_iter().find(|c| c.name == "engine")?;
        (engine.restart_count >= 1).then_some(engine)
    })
    .await;
    assert!(!engine.ready);
    let exit_code = engine.last_state.and_then(|s| s.terminated).map(|t| t.exit_code);
    assert_eq!(exit_code, Some(2), "clap's usage error exit code");
    let pod = pods.get("cache").await.unwrap();
    assert!(!e2e::scenario::pod_ready(&pod));
}
