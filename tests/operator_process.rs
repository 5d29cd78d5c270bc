//! The operator process's plumbing: a kubeconfig pointing at a plain http:// API server works
//! (the e2e harness relies on it), and `/healthz`, `/readyz`, `/metrics` answer as documented.

use axum::Router;
use axum::routing::get;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use mapcache::operator::http::{Health, router};
use mapcache::operator::metrics::Metrics;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

#[tokio::test]
async fn client_from_kubeconfig_talks_plain_http() {
    let app = Router::new().route(
        "/api/v1/namespaces/default/pods",
        get(|| async {
            axum::Json(serde_json::json!({
                "apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"}, "items": []
            }))
        }),
    );
    let addr = serve(app).await;
    let kubeconfig = Kubeconfig::from_yaml(&format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: http://{addr}\n\
         contexts:\n- name: local\n  context:\n    cluster: local\n    user: me\n    namespace: default\n\
         current-context: local\nusers:\n- name: me\n  user: {{}}\n"
    ))
    .expect("kubeconfig parses");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(client);
    let list = pods.list(&Default::default()).await.expect("list over http");
    assert_eq!(list.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(list.items.len(), 0);
}

#[tokio::test]
async fn health_endpoints_and_metrics_answer() {
    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    metrics.reconciles.inc();
    metrics.count_error("Apply");
    let ready = Arc::new(AtomicBool::new(false));
    let addr = serve(router(Health { registry: Arc::new(registry), ready: ready.clone() })).await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        async move {
            let response = http.get(format!("http://{addr}{path}")).send().await.expect("request");
            (response.status().as_u16(), response.text().await.expect("body"))
        }
    };

    assert_eq!(get("/healthz").await, (200, "ok".to_string()));
    assert_eq!(get("/readyz").await, (503, "starting".to_string()));
    ready.store(true, Ordering::Relaxed);
    assert_eq!(get("/readyz").await, (200, "ready".to_string()));
    let (code, text) = get("/metrics").await;
    assert_eq!(code, 200);
    assert!(text.contains("mapcache_operator_reconciles_total 1\n"), "{text}");
    assert!(
        text.contains("mapcache_operator_reconcile_errors_total{error=\"Apply\"} 1\n"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}
