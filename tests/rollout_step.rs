//! The wired `roll` and `maintain` steps against a mocked API server (tower-test) and a fake
//! cache node (axum on 127.0.0.1, port 0): which requests go out, in which order, and what lands
//! in status.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus as K8sPodStatus};
use kube::api::ObjectMeta;
use kube::client::Body;
use mapcache::operator::context::Context;
use mapcache::operator::crd::{MapCache, MapCacheSpec, MapCacheStatus, PodStatus};
use mapcache::operator::metrics::Metrics;
use mapcache::operator::observe::{Observed, from_pods};
use mapcache::operator::{maintain, rollout};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const OLD: &str = "rev-old";
const NEW: &str = "rev-new";

// ---- fake API server ----

#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    body: Value,
}

#[derive(Default)]
struct ApiState {
    requests: Vec<Recorded>,
    /// Status code the Eviction subresource answers (201 unless set).
    eviction_code: Option<u16>,
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

fn serve(state: &ApiState, method: &Method, path: &str, body: &Value) -> Response<Body> {
    if path.ends_with("/eviction") {
        let code = state.eviction_code.unwrap_or(201);
        if code == 429 {
            let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "TooManyRequests", "code": 429,
                "message": "Cannot evict pod as it would violate the pod's disruption budget."});
            return respond(429, &status);
        }
        return respond(code, &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}));
    }
    if path.ends_with("/endpointslices") {
        let slice = json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": "cache-abc", "labels": {"kubernetes.io/service-name": "cache"}},
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": false}}]
        });
        return respond(
            200,
            &json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSliceList",
                "metadata": {"resourceVersion": "1"}, "items": [slice]}),
        );
    }
    if path.ends_with("/status") {
        let cache = json!({"apiVersion": "mapcache.io/v1alpha1", "kind": "MapCache",
            "metadata": {"name": "cache", "namespace": "ns"}, "spec": {"image": "mapcache:2"},
            "status": body["status"].clone()});
        return respond(200, &cache);
    }
    match *method {
        Method::POST => respond(201, body),
        Method::PATCH => {
            let mut object = body.clone();
            object["apiVersion"] = json!("v1");
            object["metadata"]["name"] = json!(path.rsplit('/').next().unwrap_or_default());
            respond(200, &object)
        }
        _ => respond(404, &json!({"kind": "Status", "code": 404, "message": "not found"})),
    }
}

fn fake_client(state: Arc<Mutex<ApiState>>) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("json")
            };
            let path = parts.uri.path().to_string();
            let mut state = state.lock().expect("state");
            let response = serve(&state, &parts.method, &path, &body);
            state.requests.push(Recorded { method: parts.method, path, body });
            send.send_response(response);
        }
    });
    kube::Client::new(service, "default")
}

// ---- fake cache node ----

#[derive(Clone)]
struct NodeState {
    calls: Arc<Mutex<Vec<String>>>,
    checklist_passes: bool,
    keys: u64,
    tombstones: u64,
}

async fn serve_node(state: NodeState) -> u16 {
    fn log(state: &NodeState, call: &str) {
        state.calls.lock().expect("calls").push(call.to_string());
    }
    let app = axum::Router::new()
        .route(
            "/v1/stats",
            get(|State(s): State<NodeState>| async move {
                log(&s, "GET /v1/stats");
                let ratio = s.tombstones as f64 / (s.keys + s.tombstones) as f64;
                Json(json!({"version": "0.1.0", "ready": true, "draining": false, "keys": s.keys,
                    "tombstones": s.tombstones, "tombstone_ratio": ratio, "fill_ratio": 0.5,
                    "buckets": 1, "overflow_buckets": 0, "empty_overflow_buckets": 0,
                    "bytes_allocated": 1, "memory_bytes": 5_000_000, "maxmemory": 0, "phase": "idle",
                    "evacuated": 0, "to_evacuate": 0, "shards": []}))
            }),
        )
        .route(
            "/v1/maintenance",
            get(|State(s): State<NodeState>| async move {
                log(&s, "GET /v1/maintenance");
                Json(json!({"running": false, "kind": null, "started_at": null, "finished_at": null,
                    "shards_total": 4, "shards_done": 0, "evacuated": 0, "to_evacuate": 0,
                    "before": null, "after": null, "runs_total": {"compact": 0, "rebuild": 0}}))
            }),
        )
        .route(
            "/v1/rebuild",
            post(|State(s): State<NodeState>| async move {
                log(&s, "POST /v1/rebuild");
                (StatusCode::ACCEPTED, Json(json!({"started": true, "kind": "rebuild", "shards": 4})))
            }),
        )
        .route(
            "/v1/drain",
            post(|State(s): State<NodeState>| async move {
                log(&s, "POST /v1/drain");
                Json(json!({"draining": true, "snapshot": snapshot(s.keys)}))
            }),
        )
        .route(
            "/v1/checklist",
            get(|State(s): State<NodeState>| async move {
                log(&s, "GET /v1/checklist");
                let passes = s.checklist_passes;
                let item = |name: &str, passed: bool, evidence: &str| {
                    json!({"name": name, "passed": passed, "evidence": evidence})
                };
                Json(json!({"draining": true, "live_keys": s.keys, "passed": passes, "items": [
                    item("no-inflight", passes, if passes { "0 in-flight requests" } else { "1 in-flight request (task 7: SET)" }),
                    item("no-lock-waiters", true, "0 waiters"),
                    item("cross-checked", true, "agree"),
                    item("maintenance-idle", true, "idle"),
                    item("snapshot-verified", true, "verified"),
                ], "snapshot": snapshot(s.keys)}))
            }),
        )
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

fn snapshot(keys: u64) -> Value {
    json!({"path": "/data/mapcache-000001.snap", "generation": 1, "keys": keys, "bytes": 100,
        "crc32c": "00000000", "written_at": "2026-11-22T03:00:00Z", "verified": true,
        "after_writes_stopped": true, "duration_ms": 1})
}

// ---- fixtures ----

fn pod(ordinal: i32, revision: &str, ip: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("cache-{ordinal}")),
            uid: Some(format!("uid-{ordinal}")),
            labels: Some(BTreeMap::from([(
                "mapcache.io/revision".to_string(),
                revision.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(K8sPodStatus {
            pod_ip: ip.map(str::to_string),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..PodCondition::default()
            }]),
            ..K8sPodStatus::default()
        }),
    }
}

struct Setup {
    api: Arc<Mutex<ApiState>>,
    node_calls: Arc<Mutex<Vec<String>>>,
    ctx: Context,
    mc: MapCache,
    observed: Observed,
    status: MapCacheStatus,
}

async fn setup(revisions: [&str; 3], checklist_passes: bool, keys: u64, tombstones: u64) -> Setup {
    let node_calls = Arc::new(Mutex::new(Vec::new()));
    let port =
        serve_node(NodeState { calls: node_calls.clone(), checklist_passes, keys, tombstones })
            .await;
    let api = Arc::new(Mutex::new(ApiState::default()));
    let ctx =
        Context::new(fake_client(api.clone()), Some("test".into()), Arc::new(Metrics::default()));
    let mut mc = MapCache::new(
        "cache",
        MapCacheSpec { replicas: 3, image: "mapcache:2".into(), ..MapCacheSpec::default() },
    );
    mc.metadata.namespace = Some("ns".into());
    mc.metadata.uid = Some("cache-uid".into());
    mc.metadata.generation = Some(2);
    mc.spec.engine.admin_port = i32::from(port);
    mc.spec.rollout.lock_profile_seconds = 1;
    // Only the highest ordinal is reachable; the others have no IP (nothing talks to them).
    let pods = [
        pod(0, revisions[0], None),
        pod(1, revisions[1], None),
        pod(2, revisions[2], Some("127.0.0.1")),
    ];
    let observed = from_pods("cache", &pods, NEW.into(), Some("s3cret".into()));
    let status = MapCacheStatus {
        pods: observed
            .pods
            .iter()
            .map(|p| PodStatus { name: p.name.clone(), ready: true, ..PodStatus::default() })
            .collect(),
        ..MapCacheStatus::default()
    };
    Setup { api, node_calls, ctx, mc, observed, status }
}

fn requests(api: &Arc<Mutex<ApiState>>) -> Vec<Recorded> {
    api.lock().expect("state").requests.clone()
}

fn position(requests: &[Recorded], method: Method, suffix: &str) -> Option<usize> {
    requests.iter().position(|r| r.method == method && r.path.ends_with(suffix))
}

fn condition<'a>(status: &'a MapCacheStatus, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = status.conditions.iter().find(|c| c.type_ == type_).expect("condition");
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

// ---- roll ----

#[tokio::test]
async fn rollout_drains_checks_records_intent_then_evicts_the_highest_ordinal() {
    let mut s = setup([OLD, OLD, OLD], true, 1000, 0).await;
    let requeue = rollout::run(&s.ctx, &s.mc, &s.observed, &mut s.status).await.expect("runs");
    assert_eq!(requeue, Some(rollout::machine::REQUEUE_WAITING));

    let node_calls = s.node_calls.lock().expect("calls").clone();
    assert_eq!(node_calls, ["POST /v1/drain", "GET /v1/checklist"]);

    let requests = requests(&s.api);
    let label =
        position(&requests, Method::PATCH, "/namespaces/ns/pods/cache-2").expect("label patch");
    assert_eq!(
        requests[label].body,
        json!({"metadata": {"labels": {"mapcache.io/draining": "true"}}})
    );
    let intent =
        position(&requests, Method::PATCH, "/mapcaches/cache/status").expect("intent written");
    let eviction = position(&requests, Method::POST, "/pods/cache-2/eviction").expect("evicted");
    assert!(
        label < intent && intent < eviction,
        "order: label {label}, intent {intent}, eviction {eviction}"
    );
    assert_eq!(requests[intent].body["status"]["rollout"]["evictedUid"], "uid-2");
    assert_eq!(requests[intent].body["status"]["rollout"]["step"], "Evicting");
    assert_eq!(requests[eviction].body["deleteOptions"]["preconditions"]["uid"], "uid-2");
    assert_eq!(requests.iter().filter(|r| r.path.ends_with("/eviction")).count(), 1);

    let rollout = s.status.rollout.clone().expect("rollout in status");
    assert_eq!(rollout.pod, "cache-2");
    assert_eq!(rollout.step, "WaitingReady");
    assert_eq!(rollout.snapshot_keys, Some(1000));
    assert_eq!(rollout.evicted_uid.as_deref(), Some("uid-2"));

    let checklist = &s.status.pods[2].checklist;
    let items: Vec<(&str, bool)> = checklist.iter().map(|i| (i.name.as_str(), i.passed)).collect();
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
        ]
    );
    assert_eq!(
        condition(&s.status, "RollingUpdate"),
        ("True", "WaitingReady", "cache-2: evicted; waiting for the replacement")
    );
    let events: Vec<String> = requests
        .iter()
        .filter(|r| r.path.ends_with("/events"))
        .map(|r| r.body["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(events, ["Drained", "Evicted"]);
}

#[tokio::test]
async fn failing_checklist_past_the_timeout_blocks_and_evicts_nothing() {
    let mut s = setup([OLD, OLD, OLD], false, 1000, 0).await;
    s.mc.spec.rollout.checklist_timeout = "0s".into();
    rollout::run(&s.ctx, &s.mc, &s.observed, &mut s.status).await.expect("runs");
    let requests = requests(&s.api);
    assert_eq!(position(&requests, Method::POST, "/eviction"), None);
    let rollout = s.status.rollout.clone().expect("rollout");
    assert_eq!(rollout.step, "Blocked");
    assert_eq!(rollout.blocked_on.as_deref(), Some("no-inflight"));
    assert_eq!(
        condition(&s.status, "RollingUpdate"),
        (
            "False",
            "ChecklistTimeout",
            "cache-2: blocked on no-inflight: 1 in-flight request (task 7: SET); nothing was deleted"
        )
    );
    let no_inflight =
        s.status.pods[2].checklist.iter().find(|i| i.name == "no-inflight").expect("item");
    assert!(!no_inflight.passed);
    let reasons: Vec<&str> = requests.iter().filter_map(|r| r.body["reason"].as_str()).collect();
    assert!(reasons.contains(&"RolloutBlocked"), "{reasons:?}");
}

#[tokio::test]
async fn pdb_refusal_keeps_the_pod_and_records_disruption_allowed_failed() {
    let mut s = setup([OLD, OLD, OLD], true, 1000, 0).await;
    s.api.lock().expect("state").eviction_code = Some(429);
    rollout::run(&s.ctx, &s.mc, &s.observed, &mut s.status).await.expect("runs");
    let rollout = s.status.rollout.clone().expect("rollout");
    assert_eq!(rollout.step, "Evicting");
    let item =
        s.status.pods[2].checklist.iter().find(|i| i.name == "disruption-allowed").expect("item");
    assert!(!item.passed);
    assert_eq!(
        item.evidence,
        "Eviction API refused (429): Cannot evict pod as it would violate the pod's disruption budget."
    );
}

#[tokio::test]
async fn persistence_off_refuses_without_touching_pods_or_nodes() {
    let mut s = setup([OLD, OLD, OLD], true, 1000, 0).await;
    s.mc.spec.persistence.enabled = false;
    rollout::run(&s.ctx, &s.mc, &s.observed, &mut s.status).await.expect("runs");
    assert!(s.node_calls.lock().expect("calls").is_empty());
    let requests = requests(&s.api);
    assert!(requests.iter().all(|r| r.path.ends_with("/events")), "{requests:?}");
    assert_eq!(s.status.rollout, None);
    let (status, reason, _) = condition(&s.status, "RollingUpdate");
    assert_eq!((status, reason), ("False", "DataLossRefused"));
}

#[tokio::test]
async fn up_to_date_cache_makes_no_request() {
    let mut s = setup([NEW, NEW, NEW], true, 1000, 0).await;
    let requeue = rollout::run(&s.ctx, &s.mc, &s.observed, &mut s.status).await.expect("runs");
    assert_eq!(requeue, None);
    assert!(requests(&s.api).is_empty());
    assert_eq!(
        condition(&s.status, "RollingUpdate"),
        ("False", "UpToDate", "all pods on revision rev-new")
    );
}

// ---- maintain ----

#[tokio::test]
async fn maintain_rebuilds_a_pod_past_the_rebuild_ratio_and_records_it() {
    let mut s = setup([NEW, NEW, NEW], true, 80_000, 120_000).await;
    let requeue = maintain::run(&s.ctx, &s.mc, &s.observed, &mut s.status).await;
    assert_eq!(requeue, Some(maintain::step::REQUEUE_WHILE_RUNNING));
    let node_calls = s.node_calls.lock().expect("calls").clone();
    assert_eq!(node_calls.last().map(String::as_str), Some("POST /v1/rebuild"));
    let pod = &s.status.pods[2];
    assert_eq!((pod.keys, pod.tombstones, pod.memory_bytes), (80_000, 120_000, 5_000_000));
    let record = pod.last_rebuild.clone().expect("rebuild recorded");
    assert_eq!(record.reason, "tombstone ratio 0.600 >= 0.5");
    assert_eq!((record.keys_before, record.tombstones_before), (80_000, 120_000));
    assert_eq!(record.finished_at, None);
    assert_eq!(s.status.keys, 80_000);
    let (status, reason, message) = condition(&s.status, "Maintenance");
    assert_eq!((status, reason), ("True", "Running"));
    assert_eq!(message, "cache-2: rebuild (tombstone ratio 0.600 >= 0.5)");
    let mut text = String::new();
    let mut registry = prometheus_client::registry::Registry::default();
    s.ctx.metrics.register(&mut registry);
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("mapcache_operator_maintenance_total{kind=\"rebuild\",result=\"started\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn maintain_waits_while_pods_are_outdated() {
    let mut s = setup([OLD, OLD, OLD], true, 80_000, 120_000).await;
    maintain::run(&s.ctx, &s.mc, &s.observed, &mut s.status).await;
    let node_calls = s.node_calls.lock().expect("calls").clone();
    assert!(!node_calls.iter().any(|c| c.starts_with("POST")), "{node_calls:?}");
    assert_eq!(
        condition(&s.status, "Maintenance"),
        ("False", "RolloutActive", "maintenance waits for the rollout to finish")
    );
}
