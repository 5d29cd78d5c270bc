//! The StatefulSet, EndpointSlice and PDB controllers, without a kubelet: the tests play the
//! kubelet by writing pod status themselves.

use e2e::apiserver::{ApiServer, ApiServerConfig};
use e2e::controllers;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use std::time::Duration;

async fn start() -> (ApiServer, kube::Client, tokio::task::JoinHandle<()>) {
    let server = ApiServer::start(ApiServerConfig::default()).await.expect("stand-in");
    let controllers = controllers::spawn(server.store.clone(), Duration::from_millis(50));
    let client = server.client().expect("client");
    (server, client, controllers)
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn statefulset(strategy: &str, image: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "c"},
        "spec": {
            "replicas": 3,
            "serviceName": "c-headless",
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": strategy},
            "selector": {"matchLabels": {"app": "c"}},
            "template": {
                "metadata": {"labels": {"app": "c"}},
                "spec": {"containers": [{"name": "engine", "image": image, "ports": [{"name": "redis", "containerPort": 6379}]}]}
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
        }
    }))
    .expect("statefulset")
}

async fn pod_names(pods: &Api<Pod>) -> Vec<String> {
    let mut names: Vec<String> = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    names.sort();
    names
}

async fn make_ready(pods: &Api<Pod>, name: &str, ip: &str) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
}

#[tokio::test]
async fn statefulset_creates_ordinal_pods_with_claims_and_counts_ready_replicas() {
    let (_server, client, _controllers) = start().await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sts_api.create(&PostParams::default(), &statefulset("OnDelete", "mapcache:1")).await.unwrap();
    eventually("three pods", || async { (pod_names(&pods).await.len() == 3).then_some(()) }).await;
    assert_eq!(pod_names(&pods).await, vec!["c-0", "c-1", "c-2"]);

    let pod = pods.get("c-1").await.unwrap();
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["statefulset.kubernetes.io/pod-name"], "c-1");
    assert_eq!(labels["apps.kubernetes.io/pod-index"], "1");
    assert!(labels["controller-revision-hash"].starts_with("c-"));
    let spec = pod.spec.unwrap();
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("c-1"), Some("c-headless"))
    );
    let claim = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "data")
        .unwrap()
        .persistent_volume_claim
        .unwrap()
        .claim_name;
    assert_eq!(claim, "data-c-1");
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    assert_eq!(pvcs.get("data-c-1").await.unwrap().status.unwrap().phase.as_deref(), Some("Bound"));

    make_ready(&pods, "c-0", "127.0.0.10").await;
    make_ready(&pods, "c-2", "127.0.0.12").await;
    let status = eventually("readyReplicas 2", || async {
        let status = sts_api.get("c").await.ok()?.status?;
        (status.ready_replicas == Some(2)).then_some(status)
    })
    .await;
    assert_eq!(status.replicas, 3);
    assert_eq!(status.current_revision, status.update_revision);
}

#[tokio::test]
async fn on_delete_waits_for_deletion_and_rolling_update_replaces_the_highest_ordinal_first() {
    let (_server, client, _controllers) = start().await;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sts_api.create(&PostParams::default(), &statefulset("OnDelete", "mapcache:1")).await.unwrap();
    eventually("three pods", || async { (pod_names(&pods).await.len() == 3).then_some(()) }).await;
    for (i, name) in ["c-0", "c-1", "c-2"].iter().enumerate() {
        make_ready(&pods, name, &format!("127.0.0.{}", 10 + i)).await;
    }
    let image_of = |pod: Pod| pod.spec.unwrap().containers[0].image.clone().unwrap();
    sts_api.patch("c", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "engine", "image": "mapcache:2"}]}}}}))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        image_of(pods.get("c-2").await.unwrap()),
        "mapcache:1",
        "OnDelete leaves pods alone"
    );
    let status = sts_api.get("c").await.unwrap().status.unwrap();
    assert_ne!(status.current_revision, status.update_revision);
    assert_eq!(status.updated_replicas, Some(0));

    pods.delete("c-1", &DeleteParams::default()).await.unwrap();
    eventually("c-1 comes back on the new template", || async {
        let pod = pods.get_opt("c-1").await.ok()??;
        (image_of(pod) == "mapcache:2").then_some(())
    })
    .await;

    // Switch to RollingUpdate: c-1 is new but not Ready, so nothing moves until it is.
    sts_api
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"updateStrategy": {"type": "RollingUpdate"}}})),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(image_of(pods.get("c-2").await.unwrap()), "mapcache:1");
    make_ready(&pods, "c-1", "127.0.0.11").await;
    eventually("c-2 (highest out of date) is replaced first", || async {
        let pod = pods.get_opt("c-2").await.ok()??;
        (image_of(pod) == "mapcache:2").then_some(())
    })
    .await;
    assert_eq!(
        image_of(pods.get("c-0").await.unwrap()),
        "mapcache:1",
        "c-0 waits until c-2 is Ready"
    );
}

#[tokio::test]
async fn endpointslice_lists_pod_ips_with_readiness_and_pdb_status_counts_healthy_pods() {
    let (_server, client, _controllers) = start().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for name in ["p0", "p1"] {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "c"}}, "spec": {"containers": [{"name": "engine", "image": "x", "ports": [{"name": "redis", "containerPort": 6379}]}]}})).unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    make_ready(&pods, "p0", "127.0.0.10").await;
    pods.patch_status("p1", &PatchParams::default(), &Patch::Merge(json!({"status": {"podIP": "127.0.0.11", "conditions": [{"type": "Ready", "status": "False"}]}}))).await.unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "c"}, "spec": {"selector": {"app": "c"}, "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}]}})).unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();

    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = eventually("the service's slice", || async {
        slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=c"))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let endpoints: Vec<(String, Option<bool>)> = slice
        .endpoints
        .iter()
        .map(|e| (e.addresses[0].clone(), e.conditions.as_ref().unwrap().ready))
        .collect();
    assert_eq!(
        endpoints,
        vec![("127.0.0.10".to_string(), Some(true)), ("127.0.0.11".to_string(), Some(false))]
    );
    assert_eq!(slice.ports.unwrap()[0].port, Some(6379));

    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client, "default");
    let pdb = serde_json::from_value(json!({"metadata": {"name": "b"}, "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "c"}}}})).unwrap();
    pdbs.create(&PostParams::default(), &pdb).await.unwrap();
    let status = eventually("pdb status", || async { pdbs.get("b").await.ok()?.status }).await;
    assert_eq!(
        (
            status.expected_pods,
            status.current_healthy,
            status.desired_healthy,
            status.disruptions_allowed
        ),
        (2, 1, 1, 0)
    );

    // Deleting the Service garbage-collects its slice.
    services.delete("c", &DeleteParams::default()).await.unwrap();
    eventually("the slice is collected", || async {
        slices.list(&ListParams::default()).await.ok()?.items.is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_malformed_statefulset_is_skipped_without_stopping_the_controller() {
    let (server, client, _controllers) = start().await;
    // The stand-in does not validate built-in kinds, so a malformed template reaches the controller.
    let info = server.store.resource("apps", "v1", "statefulsets").unwrap();
    let broken = json!({"metadata": {"name": "broken"}, "spec": {"replicas": 1, "template": {"metadata": "x", "spec": "y"}}});
    server.store.create(&info, "default", broken, "test").unwrap();
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    sts_api.create(&PostParams::default(), &statefulset("OnDelete", "mapcache:1")).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "default");
    eventually("the valid statefulset still gets its pods", || async {
        (pod_names(&pods).await == vec!["c-0", "c-1", "c-2"]).then_some(())
    })
    .await;
}
