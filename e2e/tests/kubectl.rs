//! What a platform team types: kubectl v1.37.2 against the real control plane (printer
//! columns, explain, describe with Events, wait, scale through the scale subresource, a
//! server-side dry run), the CRD's schema and CEL rules refusing bad specs at apply time, and the
//! Helm chart installed, upgraded and uninstalled with Helm's own library.

use e2e::scenario::{Env, helm_release, pod_ready};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams};
use std::time::Duration;

fn cache(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: mapcache.io/v1alpha1\nkind: MapCache\nmetadata:\n  name: {name}\nspec:\n  \
         replicas: {replicas}\n  image: ghcr.io/mapcache/mapcache:0.1.0\n  persistence:\n    \
         enabled: false\n"
    )
}

async fn ready_pods(env: &Env, cache: &str) -> usize {
    Api::<Pod>::namespaced(env.client.clone(), &env.namespace)
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={cache}")))
        .await
        .map(|list| list.items.iter().filter(|p| pod_ready(p)).count())
        .unwrap_or(0)
}

#[tokio::test]
async fn kubectl_gets_explains_describes_waits_scales_and_dry_runs_a_mapcache() {
    let env = Env::start().await;
    env.install_crd().await;
    let mut operator = env.start_operator("operator-0").await;
    let manifest = env.work_dir.join("kubectl-cache.yaml");
    std::fs::write(&manifest, cache("kc", 1)).unwrap();

    let (ok, out, err) =
        env.kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]).await;
    assert!(ok, "kubectl apply: {err}");
    assert_eq!(out.trim(), "mapcache.mapcache.io/kc serverside-applied");

    let (ok, out, err) =
        env.kubectl(&["wait", "--for=condition=Ready", "mc/kc", "--timeout=240s"]).await;
    assert!(ok, "kubectl wait: {err}\n{}", env.diagnostics().await);
    assert_eq!(out.trim(), "mapcache.mapcache.io/kc condition met");
    operator.assert_running();

    // The printer columns, served by the API server as a Table.
    let (ok, out, err) = env.kubectl(&["get", "mc"]).await;
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "KEYS", "TOMBSTONES", "PHASE", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..5], ["kc", "True", "0", "0", "Running"], "{out}");

    // The schema's descriptions, from the published OpenAPI document.
    let (ok, out, err) = env.kubectl(&["explain", "mapcache.spec.engine.evictionPolicy"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("GROUP:      mapcache.io"), "{out}");
    assert!(out.contains("FIELD: evictionPolicy <string>"), "{out}");
    assert!(out.contains("allkeys-lru"), "{out}");

    // scale through the scale subresource: spec.replicas changes, the operator follows.
    let (ok, out, err) = env.kubectl(&["scale", "mc/kc", "--replicas=2"]).await;
    assert!(ok, "kubectl scale: {err}");
    assert_eq!(out.trim(), "mapcache.mapcache.io/kc scaled");
    env.wait_until("2 ready pods after kubectl scale", Duration::from_secs(240), || async {
        (ready_pods(&env, "kc").await == 2).then_some(())
    })
    .await;
    let (ok, out, _) = env
        .kubectl(&[
            "get",
            "mc",
            "kc",
            "-o",
            "jsonpath={.spec.replicas} {.status.replicas} {.status.selector}",
        ])
        .await;
    assert!(ok);
    assert_eq!(out, "2 2 app.kubernetes.io/instance=kc,app.kubernetes.io/name=mapcache");

    // A change of the pod template is a new revision, which the operator announces as an
    // Event; describe shows it.
    let (ok, _, err) = env
        .kubectl(&[
            "patch",
            "mc",
            "kc",
            "--type=merge",
            "-p",
            r#"{"spec":{"engine":{"maxMemory":"64Mi"}}}"#,
        ])
        .await;
    assert!(ok, "kubectl patch: {err}");
    let described = env
        .wait_until("describe shows the RevisionChanged Event", Duration::from_secs(60), || async {
            let (ok, out, _) = env.kubectl(&["describe", "mc", "kc"]).await;
            (ok && out.contains("RevisionChanged")).then_some(out)
        })
        .await;
    assert!(described.contains("Events:"), "{described}");
    assert!(
        described
            .lines()
            .any(|l| l.trim().starts_with("Max Memory:") && l.trim().ends_with("64Mi")),
        "describe prints the spec:\n{described}"
    );

    // A server-side dry run deletes nothing.
    let (ok, out, err) = env.kubectl(&["delete", "mc/kc", "--dry-run=server"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!(
            "mapcache.mapcache.io \"kc\" deleted from {} namespace (server dry run)",
            env.namespace
        )
    );
    let (ok, _, _) = env.kubectl(&["get", "mc", "kc"]).await;
    assert!(ok, "the dry run left the cache");
    operator.assert_running();
}

#[tokio::test]
async fn the_schema_and_cel_rules_refuse_invalid_specs_at_apply_time() {
    let env = Env::start().await;
    env.install_crd().await;
    let cases = [
        (
            "same-ports",
            "  engine:\n    port: 7000\n    adminPort: 7000\n",
            "engine.port and engine.adminPort must differ",
        ),
        (
            "odd-shards",
            "  engine:\n    shards: 3\n",
            "shards must be a power of two between 1 and 1024",
        ),
        (
            "bad-policy",
            "  engine:\n    evictionPolicy: allkeys-lfu\n",
            "Unsupported value: \"allkeys-lfu\"",
        ),
        (
            "ratios",
            "  maintenance:\n    compactAtTombstoneRatio: 0.6\n    rebuildAtTombstoneRatio: 0.5\n",
            "rebuildAtTombstoneRatio must be >= compactAtTombstoneRatio",
        ),
    ];
    for (name, extra, message) in cases {
        let manifest = env.work_dir.join(format!("{name}.yaml"));
        std::fs::write(&manifest, format!("{}{extra}", cache(name, 1))).unwrap();
        let (ok, _, err) =
            env.kubectl(&["apply", "--server-side", "-f", manifest.to_str().unwrap()]).await;
        assert!(!ok, "{name} was accepted");
        assert!(err.contains("is invalid"), "{name}: {err}");
        assert!(err.contains(message), "{name}: expected {message:?} in: {err}");
        let (exists, _, _) = env.kubectl(&["get", "mc", name]).await;
        assert!(!exists, "{name} was stored");
    }
}

#[tokio::test]
async fn the_chart_installs_upgrades_and_uninstalls_with_helms_library() {
    let env = Env::start().await;
    let release = format!("lifecycle-{}", std::process::id());
    let namespace = env.namespace.clone();
    let fullname = format!("{release}-mapcache-operator");
    let kubeconfig = env.kubeconfig.clone();
    let helm = |action: &'static str, values: serde_json::Value| {
        let (kubeconfig, namespace, release) =
            (kubeconfig.clone(), namespace.clone(), release.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                helm_release(&kubeconfig, &namespace, &release, action, &values)
            })
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("helm {action}: {e}"))
        }
    };

    let installed =
        helm("install", serde_json::json!({"replicaCount": 0, "logLevel": "info"})).await;
    assert_eq!(installed["status"], "deployed");
    assert_eq!(installed["revision"], 1);
    let deployments: Api<Deployment> = Api::namespaced(env.client.clone(), &env.namespace);
    let args = |deployment: Deployment| -> Vec<String> {
        deployment.spec.template.spec.unwrap().containers[0].args.clone().unwrap()
    };
    let deployment = deployments.get(&fullname).await.expect("the chart's Deployment");
    assert!(args(deployment).contains(&"--leader-election=true".to_string()));
    let roles: Api<ClusterRole> = Api::all(env.client.clone());
    assert!(roles.get_opt(&fullname).await.unwrap().is_some(), "the chart's ClusterRole");

    let upgraded =
        helm("upgrade", serde_json::json!({"replicaCount": 0, "watchNamespace": "caches"})).await;
    assert_eq!(upgraded["status"], "deployed");
    assert_eq!(upgraded["revision"], 2);
    let deployment = deployments.get(&fullname).await.unwrap();
    assert!(args(deployment).contains(&"--namespace=caches".to_string()));

    let removed = helm("uninstall", serde_json::json!({})).await;
    assert_eq!(removed["status"], "uninstalled");
    env.wait_until("the release's objects are gone", Duration::from_secs(60), || async {
        let deployment = deployments.get_opt(&fullname).await.ok()?;
        let role = roles.get_opt(&fullname).await.ok()?;
        (deployment.is_none() && role.is_none()).then_some(())
    })
    .await;
}
