//! The real `mapcache operator` process against a small fake API server over plain HTTP: it
//! takes the leader Lease, reconciles a MapCache (every child applied, status written), and on
//! SIGTERM stops gracefully, releases the Lease and exits 0.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Fake {
    objects: BTreeMap<String, Value>,
    log: Vec<String>,
    /// When set, MapCache watches stream every status write back as a MODIFIED event, as a
    /// real API server does; otherwise every watch stays quiet.
    cache_events: Option<tokio::sync::broadcast::Sender<Value>>,
}

type Shared = Arc<Mutex<Fake>>;

const CACHE: &str = "/apis/mapcache.io/v1alpha1/namespaces/default/mapcaches/demo";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/mapcache-operator";

fn json_response(code: StatusCode, body: &Value) -> Response {
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
    )
}

/// Answers what the operator asks: lists (the cache, or nothing), never-ending watches, gets,
/// server-side apply, status merge patches, events and the Lease.
async fn handle(State(fake): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut state = fake.lock().expect("state");
    state.log.push(format!("{method} {path}?{query}"));
    if query.contains("watch=true") || query.contains("watch=1") {
        if let Some(events) = state.cache_events.as_ref().filter(|_| path.ends_with("/mapcaches")) {
            let modified = futures::stream::unfold(events.subscribe(), |mut events| async move {
                let object = events.recv().await.ok()?;
                let line = format!("{}\n", json!({"type": "MODIFIED", "object": object}));
                Some((Ok::<_, std::io::Error>(Bytes::from(line)), events))
            });
            return Response::new(Body::from_stream(modified));
        }
        drop(state);
        // A watch that stays open and quiet until the operator hangs up.
        return Response::new(Body::from_stream(futures::stream::pending::<
            Result<Bytes, std::io::Error>,
        >()));
    }
    if path.ends_with("/status") {
        let Some(object) = state.objects.get_mut(path.trim_end_matches("/status")) else {
            return not_found();
        };
        if method == Method::GET {
            return json_response(StatusCode::OK, object);
        }
        object["status"] = body["status"].clone();
        let version = object["metadata"]["resourceVersion"].as_str().unwrap_or("1");
        let next = version.parse::<u64>().unwrap_or(1) + 1;
        object["metadata"]["resourceVersion"] = json!(next.to_string());
        let object = object.clone();
        if let Some(events) = &state.cache_events {
            let _ = events.send(object.clone());
        }
        return json_response(StatusCode::OK, &object);
    }
    let segments = path.trim_start_matches('/').split('/').count();
    let is_collection = method == Method::GET && !state.objects.contains_key(&path) && {
        // /api/v1/<plural> (3), /apis/<g>/<v>/<plural> (4), and the namespaced forms (+2).
        let core = path.starts_with("/api/");
        matches!((core, segments), (true, 3) | (true, 5) | (false, 4) | (false, 6))
    };
    if is_collection {
        let items: Vec<Value> = state
            .objects
            .iter()
            .filter(|(key, _)| {
                let plural = path.rsplit('/').next().unwrap_or_default();
                key.contains(&format!("/{plural}/")) && !key.contains("/leases/")
            })
            .map(|(_, object)| object.clone())
            .collect();
        return json_response(
            StatusCode::OK,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
        );
    }
    match method {
        Method::GET => match state.objects.get(&path) {
            Some(object) => json_response(StatusCode::OK, object),
            None => not_found(),
        },
        Method::POST => {
            let mut object = body;
            if path.ends_with("/leases") {
                if state.objects.contains_key(LEASE) {
                    return json_response(
                        StatusCode::CONFLICT,
                        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409}),
                    );
                }
                object["metadata"]["resourceVersion"] = json!("1");
                state.objects.insert(LEASE.into(), object.clone());
            }
            json_response(StatusCode::CREATED, &object)
        }
        // Lease updates are optimistic, as on a real API server: a stale resourceVersion conflicts.
        Method::PUT if path == LEASE => {
            let stored_version =
                state.objects.get(LEASE).map(|l| l["metadata"]["resourceVersion"].clone());
            if stored_version != Some(body["metadata"]["resourceVersion"].clone()) {
                return json_response(
                    StatusCode::CONFLICT,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409}),
                );
            }
            let next = stored_version
                .and_then(|v| v.as_str().and_then(|v| v.parse::<u64>().ok()))
                .unwrap_or(0)
                + 1;
            let mut lease = body;
            lease["metadata"]["resourceVersion"] = json!(next.to_string());
            state.objects.insert(path, lease.clone());
            json_response(StatusCode::OK, &lease)
        }
        Method::PUT | Method::PATCH => {
            let mut object = body;
            object["metadata"]["uid"] = json!(format!("uid:{path}"));
            object["metadata"]["resourceVersion"] = json!("2");
            state.objects.insert(path, object.clone());
            json_response(StatusCode::OK, &object)
        }
        _ => json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"kind": "Status", "code": 405})),
    }
}

fn fake_with_cache() -> Shared {
    let cache = json!({
        "apiVersion": "mapcache.io/v1alpha1", "kind": "MapCache",
        "metadata": {"name": "demo", "namespace": "default", "uid": "demo-uid", "generation": 1, "resourceVersion": "1"},
        "spec": {"replicas": 2, "image": "ghcr.io/mapcache/mapcache:0.1.0"}
    });
    Arc::new(Mutex::new(Fake {
        objects: BTreeMap::from([(CACHE.to_string(), cache)]),
        ..Fake::default()
    }))
}

/// Starts the fake API server and writes a kubeconfig for it into `dir`.
async fn start_fake(fake: Shared, dir: &std::path::Path) -> std::path::PathBuf {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().fallback(handle).with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: me\n\
             current-context: fake\nusers:\n- name: me\n  user: {{}}\n"
        ),
    )
    .expect("write kubeconfig");
    kubeconfig
}

/// The operator's stderr goes to `<identity>.log` beside the kubeconfig, not to a pipe: a pipe
/// nobody reads until exit fills at 64 KiB of logs and blocks the operator mid-shutdown (one CI
/// run hung here for ten minutes).
fn operator_log(kubeconfig: &std::path::Path, identity: &str) -> std::path::PathBuf {
    kubeconfig.with_file_name(format!("{identity}.log"))
}

fn spawn_operator(kubeconfig: &std::path::Path, identity: &str) -> std::process::Child {
    let log = std::fs::File::create(operator_log(kubeconfig, identity)).expect("operator log");
    Command::new(env!("CARGO_BIN_EXE_mapcache"))
        .args(["operator", "--metrics-addr=127.0.0.1:0"])
        .env("KUBECONFIG", kubeconfig)
        .env("POD_NAME", identity)
        .env("POD_NAMESPACE", "default")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn mapcache operator")
}

fn sigterm(child: &std::process::Child) {
    let killed =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
}

/// Polls (bounded, as a hang guard: 60 s) until `done` holds on the fake's state.
async fn wait_until(fake: &Shared, done: impl Fn(&Fake) -> bool) -> bool {
    for _ in 0..600 {
        if done(&fake.lock().expect("state")) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn lease_holder(fake: &Fake) -> Option<String> {
    fake.objects.get(LEASE)?["spec"]["holderIdentity"].as_str().map(String::from)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_leads_reconciles_and_releases_the_lease_on_sigterm() {
    let fake = fake_with_cache();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = start_fake(fake.clone(), dir.path()).await;
    let child = spawn_operator(&kubeconfig, "operator-a");

    // Wait (bounded, as a hang guard) for the reconcile to write the status.
    let mut status = Value::Null;
    for _ in 0..600 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = fake.lock().expect("state").objects[CACHE]["status"].clone();
        if status.is_object() {
            break;
        }
    }
    let (objects, log) = {
        let state = fake.lock().expect("state");
        (state.objects.clone(), state.log.clone())
    };
    assert!(status.is_object(), "no status written; requests: {log:#?}");
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(objects[LEASE]["spec"]["holderIdentity"], "operator-a");
    for child in [
        "/apis/apps/v1/namespaces/default/statefulsets/demo",
        "/api/v1/namespaces/default/services/demo",
        "/api/v1/namespaces/default/services/demo-headless",
        "/api/v1/namespaces/default/configmaps/demo-config",
        "/api/v1/namespaces/default/secrets/demo-admin-token",
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets/demo",
        "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/demo",
    ] {
        assert_eq!(objects[child]["metadata"]["ownerReferences"][0]["uid"], "demo-uid", "{child}");
    }
    assert!(
        log.iter().any(|line| line.starts_with("GET /apis/apps/v1/statefulsets?")
            && line.contains("watch=true")),
        "{log:#?}"
    );

    let killed =
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let stderr = std::fs::read_to_string(operator_log(&kubeconfig, "operator-a")).expect("log");
    assert!(exit.status.success(), "exit {:?}\n{stderr}", exit.status);
    assert!(stderr.contains("SIGTERM: shutting down"), "{stderr}");
    let lease = fake.lock().expect("state").objects[LEASE].clone();
    assert_eq!(lease["spec"].get("holderIdentity"), None, "Lease released: {lease}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_replica_waits_and_takes_over_when_the_leader_stops() {
    let fake = fake_with_cache();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = start_fake(fake.clone(), dir.path()).await;
    let first = spawn_operator(&kubeconfig, "operator-a");
    assert!(wait_until(&fake, |f| lease_holder(f).as_deref() == Some("operator-a")).await);
    let second = spawn_operator(&kubeconfig, "operator-b");
    // The standby asks for the Lease at start and gets "held by another".
    let lease_reads =
        |f: &Fake| f.log.iter().filter(|l| l.starts_with(&format!("GET {LEASE}"))).count();
    let before = lease_reads(&fake.lock().expect("state"));
    assert!(wait_until(&fake, |f| lease_reads(f) >= before + 2).await);
    assert_eq!(lease_holder(&fake.lock().expect("state")).as_deref(), Some("operator-a"));

    sigterm(&first);
    let first_exit = tokio::task::spawn_blocking(move || first.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert!(first_exit.status.success());
    assert!(
        wait_until(&fake, |f| lease_holder(f).as_deref() == Some("operator-b")).await,
        "standby took the released Lease"
    );
    let transitions =
        fake.lock().expect("state").objects[LEASE]["spec"]["leaseTransitions"].clone();
    assert_eq!(transitions, 1);

    sigterm(&second);
    let second_exit = tokio::task::spawn_blocking(move || second.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    let stderr = std::fs::read_to_string(operator_log(&kubeconfig, "operator-b")).expect("log");
    assert!(second_exit.status.success(), "{stderr}");
    assert!(stderr.contains("leading"), "{stderr}");
}

/// Issue #22: the operator's own status write, seen back through its MapCache watch, started
/// another reconcile (and under client load, whose figures changed every time, another write:
/// 5-6 reconciles a second). Only spec and child changes trigger one now; the figures are
/// refreshed on the poll interval (30 s here, well past this test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operators_own_status_write_does_not_trigger_another_reconcile() {
    let fake = fake_with_cache();
    fake.lock().expect("state").cache_events = Some(tokio::sync::broadcast::channel(16).0);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = start_fake(fake.clone(), dir.path()).await;
    let child = spawn_operator(&kubeconfig, "operator-a");
    // A reconcile lists the cache's pods once (observe) and patches status when it changed.
    let pod_lists = |f: &Fake| {
        f.log.iter().filter(|l| l.starts_with("GET /api/v1/namespaces/default/pods?")).count()
    };
    let status_writes =
        |f: &Fake| f.log.iter().filter(|l| l.starts_with(&format!("PATCH {CACHE}/status"))).count();
    assert!(wait_until(&fake, |f| status_writes(f) == 1).await, "the first reconcile wrote status");
    // The write went back out as a watch event at once; give a second reconcile, if one were
    // coming, ample time to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (lists, writes, log) = {
        let state = fake.lock().expect("state");
        (pod_lists(&state), status_writes(&state), state.log.clone())
    };
    sigterm(&child);
    let exit = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.status.success());
    assert_eq!((lists, writes), (1, 1), "one reconcile, one status write: {log:#?}");
}
