//! The node agent crashes: the process kubelet is killed with SIGKILL while a cache serves, and
//! started again. Its pods keep running meanwhile (as a real node's containers outlive a kubelet
//! restart), the restarted kubelet adopts them, and nothing is deleted or restarted twice.
//!
//! The only scenario of its test binary: it kills the node every scenario of the binary shares.

use e2e::cluster::with_shared;
use e2e::scenario::{Env, engine_process, pod_ready};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::time::Duration;

/// Each pod's uid and (engine pid, restart count).
async fn snapshot(pods: &Api<Pod>) -> BTreeMap<String, (String, i32, i32)> {
    let list = pods
        .list(&ListParams::default().labels("app.kubernetes.io/instance=steady"))
        .await
        .unwrap();
    list.items
        .iter()
        .filter_map(|pod| {
            let (pid, restarts) = engine_process(pod)?;
            Some((pod.metadata.name.clone()?, (pod.metadata.uid.clone()?, pid, restarts)))
        })
        .collect()
}

#[tokio::test]
async fn the_kubelet_killed_and_restarted_adopts_its_running_pods_and_deletes_nothing() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    let manifest = "apiVersion: mapcache.io/v1alpha1\nkind: MapCache\nmetadata:\n  name: steady\nspec:\n  replicas: 2\n  image: ghcr.io/mapcache/mapcache:0.1.0\n  persistence:\n    enabled: false\n";
    env.apply_yaml(manifest).await;
    env.wait_for_condition("steady", "Ready", "True", Duration::from_secs(180)).await;
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let before = snapshot(&pods).await;
    assert_eq!(before.len(), 2, "{before:?}");

    let mut connections = env.connect_all("steady").await;
    for (pod, connection) in &mut connections {
        let () = redis::cmd("SET").arg("owner").arg(&*pod).query_async(connection).await.unwrap();
    }

    with_shared(|cluster| cluster.kill_kubelet()).expect("the shared cluster");
    // The node agent is gone; its pods are not. Clients keep being served.
    let mut errors = 0;
    for round in 0..20 {
        for (pod, connection) in &mut connections {
            let reply: redis::RedisResult<String> =
                redis::cmd("GET").arg("owner").query_async(connection).await;
            match reply {
                Ok(owner) => assert_eq!(&owner, pod),
                Err(error) => {
                    errors += 1;
                    eprintln!("round {round}: {pod}: {error}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(errors, 0, "client errors while the kubelet was down");
    for (name, (_, pid, _)) in &before {
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "{name}'s engine (pid {pid}) outlived the kubelet"
        );
    }

    with_shared(|cluster| cluster.start_kubelet()).expect("the shared cluster").expect("restart");
    // Adopted: same pods, same processes, no restart; Ready throughout the next probe periods.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let after = env
        .wait_until(
            "both pods Ready after the kubelet restart",
            Duration::from_secs(60),
            || async {
                let list = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/instance=steady"))
                    .await
                    .ok()?;
                (list.items.len() == 2 && list.items.iter().all(pod_ready)).then_some(())
            },
        )
        .await;
    let () = after;
    assert_eq!(snapshot(&pods).await, before, "the same pod uids, engine pids and restart counts");
    for (pod, connection) in &mut connections {
        let owner: String = redis::cmd("GET").arg("owner").query_async(connection).await.unwrap();
        assert_eq!(&owner, pod, "the same processes, with their data");
    }
    operator.assert_running();
}
