//! Reconcile against a mocked API server (tower-test, as kube-rs recommends): the real
//! `reconcile` runs through `kube::Client::new(mock_service, "default")`, and a fake API server
//! task answers every request from an in-memory store while recording it.

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use kube::api::ObjectMeta;
use kube::client::Body;
use mapcache::operator::context::Context;
use mapcache::operator::crd::{MapCache, MapCacheSpec, MapCacheStatus};
use mapcache::operator::metrics::{ErrorLabels, Metrics};
use mapcache::operator::reconcile::reconcile;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One request the operator made.
#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    query: String,
    body: Value,
}

/// The fake API server's state: objects by path, the pods a list returns, and the log.
#[derive(Default)]
struct ApiState {
    objects: BTreeMap<String, Value>,
    pods: Vec<Pod>,
    requests: Vec<Recorded>,
    /// Paths whose apply the server refuses with 422 Invalid.
    refuse: Vec<String>,
}

const NS: &str = "/namespaces/ns";

fn not_found() -> Response<Body> {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"});
    respond(StatusCode::NOT_FOUND, &status)
}

fn respond(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("response")
}

/// What the fake API server does with one request (a small subset of the real semantics:
/// server-side apply stores the applied object, the status merge patch replaces status).
fn serve(state: &mut ApiState, method: &Method, path: &str, body: &Value) -> Response<Body> {
    if path.ends_with("/pods") && *method == Method::GET {
        let items: Vec<Value> =
            state.pods.iter().map(|p| serde_json::to_value(p).expect("pod")).collect();
        return respond(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
        );
    }
    if path.ends_with("/events") && *method == Method::POST {
        return respond(StatusCode::CREATED, body);
    }
    if let Some(object_path) = path.strip_suffix("/status") {
        let Some(object) = state.objects.get_mut(object_path) else { return not_found() };
        if *method == Method::GET {
            return respond(StatusCode::OK, object);
        }
        let mut status = body["status"].clone();
        if let Some(fields) = status.as_object_mut() {
            fields.retain(|_, v| !v.is_null());
        }
        object["status"] = status;
        return respond(StatusCode::OK, object);
    }
    match *method {
        Method::GET => match state.objects.get(path) {
            Some(object) => respond(StatusCode::OK, object),
            None => not_found(),
        },
        Method::PATCH if state.refuse.iter().any(|p| p == path) => respond(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Invalid", "code": 422,
                    "message": "StatefulSet.apps \"cache\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"}),
        ),
        Method::PATCH => {
            let mut object = body.clone();
            object["metadata"]["uid"] = json!(format!("uid-of-{path}"));
            state.objects.insert(path.to_string(), object.clone());
            respond(StatusCode::OK, &object)
        }
        Method::DELETE => match state.objects.remove(path) {
            Some(_) => respond(
                StatusCode::OK,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            None => not_found(),
        },
        _ => respond(StatusCode::METHOD_NOT_ALLOWED, &json!({"kind": "Status", "code": 405})),
    }
}

/// A client wired to a fake API server over `state`.
fn fake_client(state: Arc<Mutex<ApiState>>) -> kube::Client {
    let (mock_service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.expect("request body");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("json body")
            };
            let path = parts.uri.path().to_string();
            let query = parts.uri.query().unwrap_or_default().to_string();
            let mut state = state.lock().expect("state");
            let response = serve(&mut state, &parts.method, &path, &body);
            state.requests.push(Recorded { method: parts.method, path, query, body });
            send.send_response(response);
        }
    });
    kube::Client::new(mock_service, "default")
}

fn cache(spec: MapCacheSpec) -> MapCache {
    let mut mc = MapCache::new("cache", spec);
    mc.metadata = ObjectMeta {
        name: Some("cache".into()),
        namespace: Some("ns".into()),
        uid: Some("cache-uid".into()),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    mc
}

fn basic_spec() -> MapCacheSpec {
    MapCacheSpec {
        replicas: 3,
        image: "ghcr.io/mapcache/mapcache:1.0".into(),
        ..MapCacheSpec::default()
    }
}

const MAPCACHE_PATH: &str = "/apis/mapcache.io/v1alpha1/namespaces/ns/mapcaches/cache";

struct Harness {
    state: Arc<Mutex<ApiState>>,
    ctx: Arc<Context>,
    metrics: Arc<Metrics>,
}

impl Harness {
    fn new() -> Self {
        let state = Arc::new(Mutex::new(ApiState::default()));
        let metrics = Arc::new(Metrics::default());
        let ctx = Arc::new(Context::new(
            fake_client(state.clone()),
            Some("test".into()),
            metrics.clone(),
        ));
        Self { state, ctx, metrics }
    }

    /// Runs one reconcile of `mc` (stored first, as the API server would have it) and returns
    /// the requests it made and the cache as the API server has it afterwards.
    async fn reconcile(&self, mc: &MapCache) -> (Vec<Recorded>, MapCache) {
        {
            let mut state = self.state.lock().expect("state");
            state.objects.insert(MAPCACHE_PATH.into(), serde_json::to_value(mc).expect("mc"));
            state.requests.clear();
        }
        reconcile(Arc::new(mc.clone()), self.ctx.clone()).await.expect("reconcile succeeds");
        let state = self.state.lock().expect("state");
        let stored =
            serde_json::from_value(state.objects[MAPCACHE_PATH].clone()).expect("stored mc");
        (state.requests.clone(), stored)
    }

    fn object(&self, path: &str) -> Option<Value> {
        self.state.lock().expect("state").objects.get(path).cloned()
    }

    fn set_pods(&self, pods: Vec<Pod>) {
        self.state.lock().expect("state").pods = pods;
    }
}

fn applies(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method == Method::PATCH && !r.path.ends_with("/status"))
        .map(|r| r.path.clone())
        .collect()
}

fn status_patches(requests: &[Recorded]) -> Vec<&Recorded> {
    requests.iter().filter(|r| r.method == Method::PATCH && r.path.ends_with("/status")).collect()
}

const STS: &str = "/apis/apps/v1/namespaces/ns/statefulsets/cache";
const SECRET: &str = "/api/v1/namespaces/ns/secrets/cache-admin-token";
const PDB: &str = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/cache";

fn every_child() -> Vec<String> {
    [
        SECRET.to_string(),
        format!("/api/v1{NS}/configmaps/cache-config"),
        format!("/api/v1{NS}/services/cache-headless"),
        format!("/api/v1{NS}/services/cache"),
        PDB.to_string(),
        format!("/apis/networking.k8s.io/v1{NS}/networkpolicies/cache"),
        STS.to_string(),
    ]
    .into()
}

fn pod(ordinal: i32, ready: bool, revision: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(format!("cache-{ordinal}")),
            namespace: Some("ns".into()),
            uid: Some(format!("pod-uid-{ordinal}")),
            labels: Some(BTreeMap::from([(
                "mapcache.io/revision".to_string(),
                revision.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            // No pod IP: the maintain and roll steps then have no node to call, so these tests
            // never send traffic anywhere (their node calls are tested in tests/rollout_step.rs).
            pod_ip: None,
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
    }
}

fn revision_of(sts: &Value) -> String {
    sts["spec"]["template"]["metadata"]["labels"]["mapcache.io/revision"]
        .as_str()
        .expect("revision label")
        .to_string()
}

#[tokio::test]
async fn first_pass_applies_every_child_with_field_manager_and_owner() {
    let harness = Harness::new();
    let (requests, stored) = harness.reconcile(&cache(basic_spec())).await;

    assert_eq!(applies(&requests), every_child());
    for apply in
        requests.iter().filter(|r| r.method == Method::PATCH && !r.path.ends_with("/status"))
    {
        assert_eq!(apply.query, "&force=true&fieldManager=mapcache-operator", "{}", apply.path);
        assert_eq!(
            apply.body["metadata"]["ownerReferences"][0]["uid"], "cache-uid",
            "{}",
            apply.path
        );
        assert_eq!(apply.body["metadata"]["ownerReferences"][0]["kind"], "MapCache");
        assert_eq!(apply.body["metadata"]["ownerReferences"][0]["controller"], true);
    }
    assert!(!requests.iter().any(|r| r.method == Method::DELETE));

    let sts = harness.object(STS).expect("statefulset applied");
    assert_eq!(sts["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(sts["spec"]["replicas"], 3);
    let token = harness.object(SECRET).expect("secret")["data"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(token.len(), 88, "64 hex chars, base64-encoded");

    let status = stored.status.expect("status written");
    assert_eq!(status_patches(&requests).len(), 1);
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert_eq!(status.update_revision, Some(revision_of(&sts)));
    assert_eq!(status.current_revision, None);
    assert_eq!(harness.metrics.reconciles.get(), 1);
}

#[tokio::test]
async fn second_pass_changes_nothing_and_keeps_the_token() {
    let harness = Harness::new();
    let (_, after_first) = harness.reconcile(&cache(basic_spec())).await;
    let objects_after_first = harness.state.lock().expect("state").objects.clone();

    let (requests, after_second) = harness.reconcile(&after_first).await;
    let objects_after_second = harness.state.lock().expect("state").objects.clone();

    assert_eq!(
        objects_after_first, objects_after_second,
        "every child applied identically, token kept"
    );
    assert!(status_patches(&requests).is_empty(), "status unchanged, so not written");
    assert!(!requests.iter().any(|r| r.method == Method::DELETE || r.method == Method::POST));
    assert_eq!(after_first.status, after_second.status);
}

#[tokio::test]
async fn spec_change_updates_template_and_update_revision() {
    let harness = Harness::new();
    harness.set_pods(vec![pod(0, true, "x"), pod(1, true, "x"), pod(2, true, "x")]);
    let (_, first) = harness.reconcile(&cache(basic_spec())).await;
    let first_revision = revision_of(&harness.object(STS).expect("sts"));
    harness.set_pods(vec![
        pod(0, true, &first_revision),
        pod(1, true, &first_revision),
        pod(2, true, &first_revision),
    ]);
    let (_, running) = harness.reconcile(&first).await;
    assert_eq!(running.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));

    let mut changed = running.clone();
    changed.spec.image = "ghcr.io/mapcache/mapcache:1.1".into();
    changed.metadata.generation = Some(2);
    let (requests, updated) = harness.reconcile(&changed).await;

    let sts = harness.object(STS).expect("sts");
    let second_revision = revision_of(&sts);
    assert_ne!(first_revision, second_revision);
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/mapcache/mapcache:1.1"
    );
    let status = updated.status.expect("status");
    assert_eq!(status.update_revision, Some(second_revision));
    assert_eq!(status.current_revision, Some(first_revision));
    assert_eq!(status.observed_generation, Some(2));
    assert_eq!(status.phase.as_deref(), Some("Updating"));
    assert_eq!(status_patches(&requests).len(), 1);
    assert!(
        !requests.iter().any(|r| r.method == Method::DELETE),
        "OnDelete: the operator deletes no pod here"
    );
}

#[tokio::test]
async fn invalid_spec_sets_invalidspec_and_event_and_applies_nothing() {
    let harness = Harness::new();
    let mut spec = basic_spec();
    spec.image = String::new();
    let (requests, stored) = harness.reconcile(&cache(spec)).await;

    assert_eq!(applies(&requests), Vec::<String>::new());
    assert!(!requests.iter().any(|r| r.method == Method::DELETE));
    let events: Vec<&Recorded> = requests.iter().filter(|r| r.path.ends_with("/events")).collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].path, "/apis/events.k8s.io/v1/namespaces/ns/events");
    assert_eq!(events[0].body["type"], "Warning");
    assert_eq!(events[0].body["reason"], "InvalidSpec");
    assert_eq!(events[0].body["note"], "spec.image must not be empty");
    assert_eq!(events[0].body["regarding"]["name"], "cache");

    let status = stored.status.expect("status");
    assert_eq!(status.phase.as_deref(), Some("Invalid"));
    let invalid = status.conditions.iter().find(|c| c.type_ == "InvalidSpec").expect("InvalidSpec");
    assert_eq!(invalid.status, "True");
    assert_eq!(invalid.message, "spec.image must not be empty");
    assert_eq!(requests.len(), 2, "event + status, nothing else: {requests:?}");
    let invalid_count =
        harness.metrics.errors.get_or_create(&ErrorLabels { error: "InvalidSpec".into() }).get();
    assert_eq!(invalid_count, 1);
}

#[tokio::test]
async fn invalid_spec_after_valid_one_deletes_nothing() {
    let harness = Harness::new();
    let (_, valid) = harness.reconcile(&cache(basic_spec())).await;
    let mut broken = valid.clone();
    broken.spec.maintenance.compact_at_tombstone_ratio = 0.9;
    broken.spec.pdb.enabled = false;
    let (requests, stored) = harness.reconcile(&broken).await;
    assert!(
        !requests.iter().any(|r| r.method == Method::DELETE
            || r.method == Method::PATCH && !r.path.ends_with("/status"))
    );
    assert!(harness.object(PDB).is_some(), "PDB kept although the invalid spec disables it");
    assert!(harness.object(STS).is_some());
    let invalid = stored
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "InvalidSpec")
        .expect("cond");
    assert_eq!(
        invalid.message,
        "spec.maintenance.rebuildAtTombstoneRatio (0.5) must be >= compactAtTombstoneRatio (0.9)"
    );
}

#[tokio::test]
async fn status_reports_ready_pods_revisions_and_conditions() {
    let harness = Harness::new();
    let (_, first) = harness.reconcile(&cache(basic_spec())).await;
    let revision = revision_of(&harness.object(STS).expect("sts"));
    harness.set_pods(vec![
        pod(2, true, &revision),
        pod(0, true, &revision),
        pod(1, false, &revision),
    ]);
    let (_, partial) = harness.reconcile(&first).await;
    let status = partial.status.clone().expect("status");
    assert_eq!(status.ready_replicas, 2);
    assert_eq!(status.current_revision.as_deref(), Some(revision.as_str()));
    assert_eq!(
        status
            .pods
            .iter()
            .map(|p| (p.name.as_str(), p.ready, p.revision.clone()))
            .collect::<Vec<_>>(),
        [
            ("cache-0", true, Some(revision.clone())),
            ("cache-1", false, Some(revision.clone())),
            ("cache-2", true, Some(revision.clone()))
        ]
    );
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!((ready.status.as_str(), ready.message.as_str()), ("False", "2/3 pods ready"));
    let pending_since = ready.last_transition_time.clone();

    harness.set_pods(vec![
        pod(0, true, &revision),
        pod(1, true, &revision),
        pod(2, true, &revision),
    ]);
    let (requests, all_ready) = harness.reconcile(&partial).await;
    let status: MapCacheStatus = all_ready.status.expect("status");
    assert_eq!(status_patches(&requests).len(), 1);
    assert_eq!(status.ready_replicas, 3);
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "AllPodsReady"));
    assert!(ready.last_transition_time.0 >= pending_since.0);
}

#[tokio::test]
async fn disabling_pdb_deletes_the_owned_one_only() {
    let harness = Harness::new();
    let (_, first) = harness.reconcile(&cache(basic_spec())).await;
    assert_eq!(
        harness.object(PDB).expect("pdb")["metadata"]["ownerReferences"][0]["uid"],
        "cache-uid"
    );
    let mut without_pdb = first.clone();
    without_pdb.spec.pdb.enabled = false;
    let (requests, _) = harness.reconcile(&without_pdb).await;
    let deletes: Vec<&str> =
        requests.iter().filter(|r| r.method == Method::DELETE).map(|r| r.path.as_str()).collect();
    assert_eq!(deletes, [PDB]);
    assert_eq!(harness.object(PDB), None);

    // A PDB of the same name that someone else owns is left alone.
    harness.state.lock().expect("state").objects.insert(
        PDB.into(),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "cache", "namespace": "ns"}}),
    );
    let (requests, _) = harness.reconcile(&without_pdb).await;
    assert!(!requests.iter().any(|r| r.method == Method::DELETE));
    assert!(harness.object(PDB).is_some());
}

#[tokio::test]
async fn refused_apply_is_an_apply_error_with_a_warning_event() {
    let harness = Harness::new();
    harness.state.lock().expect("state").refuse.push(STS.into());
    let mc = cache(basic_spec());
    harness
        .state
        .lock()
        .expect("state")
        .objects
        .insert(MAPCACHE_PATH.into(), serde_json::to_value(&mc).expect("mc"));
    let error = reconcile(Arc::new(mc), harness.ctx.clone()).await.expect_err("apply refused");
    assert_eq!(error.metric_label(), "Apply");
    assert!(error.to_string().starts_with("applying StatefulSet cache: "), "{error}");
    let state = harness.state.lock().expect("state");
    let event = state.requests.iter().find(|r| r.path.ends_with("/events")).expect("event");
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "ApplyFailed");
    assert!(event.body["note"].as_str().expect("note").contains("updates to statefulset spec"));
    // The refusal is in status too: Degraded=True, reason ApplyFailed, the API server's answer.
    let patch = state
        .requests
        .iter()
        .find(|r| r.method == Method::PATCH && r.path.ends_with("/status"))
        .expect("the ApplyFailed condition is written");
    let degraded = patch.body["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Degraded")
        .expect("Degraded")
        .clone();
    assert_eq!(degraded["status"], "True");
    assert_eq!(degraded["reason"], "ApplyFailed");
    assert!(degraded["message"].as_str().expect("message").contains("updates to statefulset spec"));
    drop(state);
    assert_eq!(
        harness.metrics.errors.get_or_create(&ErrorLabels { error: "Apply".into() }).get(),
        1
    );
}

/// A pod whose node found snapshots at start and could use none (`restore.outcome: all_corrupt`
/// in its `/v1/stats`, here from a real node on loopback) sets `SnapshotsCorrupt=True` naming
/// the pod and its files, with one Warning Event for that start, not one per reconcile.
#[tokio::test]
async fn a_pod_that_started_with_every_snapshot_corrupt_sets_a_condition_and_one_event() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("mapcache-000001.snap"), b"not a snapshot").expect("junk");
    let node = mapcache::server::Node::start(mapcache::server::Config::for_test(dir.path()))
        .await
        .expect("node starts");
    let harness = Harness::new();
    let mut spec = MapCacheSpec { replicas: 1, ..basic_spec() };
    spec.engine.admin_port = i32::from(node.admin_addr().port());
    let (_, first) = harness.reconcile(&cache(spec)).await;
    let revision = revision_of(&harness.object(STS).expect("sts"));
    let mut on_loopback = pod(0, true, &revision);
    on_loopback.status.as_mut().expect("status").pod_ip = Some("127.0.0.1".into());
    harness.set_pods(vec![on_loopback]);

    let (requests, corrupt) = harness.reconcile(&first).await;
    let status = corrupt.status.clone().expect("status");
    let condition =
        status.conditions.iter().find(|c| c.type_ == "SnapshotsCorrupt").expect("condition");
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "SnapshotsCorrupt")
    );
    assert!(
        condition.message.starts_with("cache-0 started empty at ")
            && condition
                .message
                .ends_with(": every snapshot unusable (mapcache-000001.snap truncated)"),
        "{}",
        condition.message
    );
    let events: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.path.ends_with("/events") && r.body["reason"] == "SnapshotsCorrupt")
        .collect();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body["type"], "Warning");
    let note = events[0].body["note"].as_str().expect("note");
    assert!(note.starts_with("pod cache-0 started EMPTY: none of its 1 snapshots"), "{note}");
    assert!(note.contains("moved to corrupt/mapcache-000001.snap"), "{note}");

    let (requests, again) = harness.reconcile(&corrupt).await;
    assert!(
        !requests
            .iter()
            .any(|r| r.path.ends_with("/events") && r.body["reason"] == "SnapshotsCorrupt"),
        "a second Event for the same start"
    );
    let condition = again
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == "SnapshotsCorrupt")
        .expect("condition");
    assert_eq!(condition.status, "True");
    node.abort();
}
