//! The process kubelet against the real control plane. Every test runs a `process-kubelet` of
//! its own (own Node, bridge, /24, root directory; short crash backoff; no provisioner) next to
//! the shared cluster's node, and pins its pods there with a `kubernetes.io/hostname` node
//! selector, so the real scheduler binds them and each test can kill or restart its kubelet
//! without disturbing the others. Pods live in a namespace per test.

use e2e::cluster::{NetworkLease, shared};
use e2e::controlplane::process::ChildProcess;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    ContainerStatus, Namespace, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
    ServiceAccount,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long any wait may take on a busy 2-core machine.
const WAIT: Duration = Duration::from_secs(120);

/// A node of the test's own: a process kubelet with its network and root directory.
struct TestNode {
    name: String,
    /// The pod network; dropped last, removing whatever a killed run left.
    network: NetworkLease,
    root: tempfile::TempDir,
    args: Vec<String>,
    kubelet: Option<ChildProcess>,
    client: kube::Client,
    /// The test's namespace.
    namespace: String,
}

impl TestNode {
    async fn start() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let cluster = shared().expect("the shared cluster");
        let kubeconfig = Kubeconfig::read_from(&cluster.kubeconfig).expect("kubeconfig");
        let config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("client config");
        let client = kube::Client::try_from(config).expect("client");
        let network = NetworkLease::acquire().expect("a pod network");
        let root = tempfile::Builder::new().prefix("kubelet-test-").tempdir().expect("root");
        let name = format!("kt-{}", network.index);
        let args = vec![
            format!("--kubeconfig={}", cluster.kubeconfig.display()),
            format!("--node-name={name}"),
            format!("--root={}", root.path().display()),
            format!("--pod-cidr={}", network.pod_cidr()),
            format!("--bridge={}", network.bridge()),
            format!("--mapcache-bin={}", e2e::binaries::mapcache().display()),
            format!("--app-bin={}", e2e::binaries::own_binary("sidecar-app").display()),
            "--restart-backoff-initial=1s".to_string(),
            "--restart-backoff-max=4s".to_string(),
            "--provisioner=false".to_string(),
        ];
        let namespace =
            format!("kt-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let object: Namespace =
            serde_json::from_value(json!({"metadata": {"name": namespace}})).expect("namespace");
        namespaces.create(&PostParams::default(), &object).await.expect("create namespace");
        let mut node = Self { name, network, root, args, kubelet: None, client, namespace };
        node.start_kubelet();
        node.wait_ready().await;
        // Pods are admitted once the namespace's default ServiceAccount exists.
        let accounts: Api<ServiceAccount> = Api::namespaced(node.client.clone(), &node.namespace);
        node.eventually("the default ServiceAccount", || async {
            accounts.get_opt("default").await.ok().flatten().map(|_| ())
        })
        .await;
        node
    }

    /// SIGKILL the kubelet, as a crash: its containers go on running.
    fn kill_kubelet(&mut self) {
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.signal(libc::SIGKILL);
            kubelet.stop();
        }
    }

    fn start_kubelet(&mut self) {
        let log = self.root.path().join("process-kubelet.log");
        let kubelet = ChildProcess::start(
            "process-kubelet",
            &e2e::binaries::own_binary("process-kubelet"),
            &self.args,
            log,
            libc::SIGTERM,
        )
        .expect("start process-kubelet")
        .with_stop_grace(Duration::from_secs(30));
        self.kubelet = Some(kubelet);
    }

    async fn wait_ready(&self) {
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(self.client.clone());
        self.eventually("the node is Ready", || async {
            let node = nodes.get_opt(&self.name).await.ok().flatten()?;
            let conditions = node.status?.conditions?;
            conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
        })
        .await;
    }

    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn logs_dir(&self) -> PathBuf {
        self.root.path().join("logs")
    }

    fn cidr_prefix(&self) -> String {
        self.network.pod_cidr().trim_end_matches("0/24").to_string()
    }

    /// Create a pod from a JSON spec, pinned to this node.
    async fn create_pod(&self, name: &str, mut spec: Value) -> Pod {
        spec["nodeSelector"] = json!({"kubernetes.io/hostname": self.name});
        let pod: Pod =
            serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod");
        self.pods().create(&PostParams::default(), &pod).await.expect("create pod")
    }

    async fn create_secret(&self, name: &str, data: Value) {
        let secret: Secret =
            serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data}))
                .expect("secret");
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        api.create(&PostParams::default(), &secret).await.expect("create secret");
    }

    /// The kubelet's log and every container log, for a failing wait.
    fn diagnostics(&self) -> String {
        let mut out = String::new();
        if let Some(kubelet) = &self.kubelet {
            out.push_str(&format!("--- process-kubelet\n{}\n", kubelet.log_tail(40)));
        }
        for entry in std::fs::read_dir(self.logs_dir()).into_iter().flatten().flatten() {
            let path = entry.path();
            out.push_str(&format!(
                "--- {}\n{}\n",
                path.display(),
                e2e::controlplane::process::log_tail(&path, 20)
            ));
        }
        out
    }

    /// Poll `check` every 250 ms until it yields, or panic after [`WAIT`] with the logs.
    async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if start.elapsed() > WAIT {
                panic!("timed out after {WAIT:?} waiting for: {what}\n{}", self.diagnostics());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn ready_pod(&self, name: &str) -> Pod {
        let pods = self.pods();
        self.eventually(&format!("pod {name} is Ready"), || async {
            let pod = pods.get(name).await.ok()?;
            e2e::scenario::pod_ready(&pod).then_some(pod)
        })
        .await
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        // SIGTERM: the kubelet stops its containers and removes their namespaces.
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.stop();
        }
    }
}

impl TestNode {
    /// A directory of the test's, world-writable, for a `hostPath` volume: what a container
    /// or hook writes there outlives the pod, for the test to read.
    fn shared_dir(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.root.path().join("shared").join(name);
        std::fs::create_dir_all(&dir).expect("shared dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        dir
    }

    /// Delete a pod with its own grace period and return how its object ended: the last
    /// version before it went, as the watch saw it. Panics after [`WAIT`].
    async fn delete_and_watch_until_gone(&self, pod: &Pod) -> Pod {
        let pods = self.pods();
        let name = pod.metadata.name.clone().expect("name");
        let version = pod.metadata.resource_version.clone().expect("resourceVersion");
        let params = WatchParams::default().fields(&format!("metadata.name={name}"));
        let mut events = pods.watch(&params, &version).await.expect("watch").boxed();
        pods.delete(&name, &DeleteParams::default()).await.expect("delete");
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, events.try_next()).await {
                Ok(Ok(Some(WatchEvent::Deleted(last)))) => return last,
                Ok(Ok(Some(_))) => {}
                other => {
                    panic!("watching {name} until it is gone: {other:?}\n{}", self.diagnostics())
                }
            }
        }
    }

    /// Eventually, the text of a file a container writes.
    async fn file_text(&self, path: &std::path::Path, wanted: &str) -> String {
        self.eventually(&format!("{} reads {wanted:?}", path.display()), || async {
            std::fs::read_to_string(path).ok().filter(|text| text == wanted)
        })
        .await
    }
}

fn try_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == name))
}

fn container<'a>(pod: &'a Pod, name: &str) -> &'a ContainerStatus {
    try_container(pod, name).unwrap_or_else(|| panic!("no status of {name} in {:?}", pod.status))
}

/// The pid behind `containerID: process://<pid>`.
fn pid_of(status: &ContainerStatus) -> u32 {
    let id = status.container_id.as_deref().expect("containerID");
    id.strip_prefix("process://").and_then(|pid| pid.parse().ok()).expect("process://<pid>")
}

fn environ(pid: u32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    raw.split(|b| *b == 0)
        .filter_map(|entry| {
            let text = String::from_utf8_lossy(entry);
            text.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Whether `pid` still runs (a zombie waiting for its parent does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_string()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// The condition `kind` of a pod, as (status, reason).
fn condition(pod: &Pod, kind: &str) -> Option<(String, Option<String>)> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let found = conditions.iter().find(|c| c.type_ == kind)?;
    Some((found.status.clone(), found.reason.clone()))
}

/// A container whose process is `sh -c script` on the host: an image containing `mapcache`
/// with a command other than `mapcache` runs that host program (docs/e2e.md). `extra` adds
/// fields (env, volumeMounts, probes, lifecycle).
fn shell(name: &str, script: &str, extra: Value) -> Value {
    let mut container = json!({
        "name": name,
        "image": "ghcr.io/mapcache/mapcache:test",
        "command": ["sh", "-c", script],
    });
    if let (Some(container), Some(extra)) = (container.as_object_mut(), extra.as_object()) {
        container.extend(extra.clone());
    }
    container
}

/// A `hostPath` volume of a directory of the test's ([`TestNode::shared_dir`]).
fn host_path(name: &str, dir: &std::path::Path) -> Value {
    json!({"name": name, "hostPath": {"path": dir.display().to_string()}})
}

/// Ignores SIGTERM, so that only SIGKILL ends it.
const IGNORES_SIGTERM: &str = "trap '' TERM; while :; do sleep 1; done";
/// Appends `term` to `$LOG` on SIGTERM and carries on; only SIGKILL ends it.
const LOGS_SIGTERM: &str = "trap 'echo term >> \"$LOG\"' TERM; while :; do sleep 1; done";

fn engine(args: &[&str], extra: Value) -> Value {
    let mut container = json!({
        "name": "engine",
        "image": "ghcr.io/mapcache/mapcache:test",
        "command": ["mapcache"],
        "args": args,
        "ports": [{"name": "redis", "containerPort": 6379}, {"name": "admin", "containerPort": 9090}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 1},
        // The admin API binds 0.0.0.0 (probes come from the host), which needs a token.
        "env": [{"name": "MAPCACHE_ADMIN_TOKEN", "value": "t0k3n"}],
    });
    if let (Some(container), Some(extra)) = (container.as_object_mut(), extra.as_object()) {
        container.extend(extra.clone());
    }
    container
}

// Clients reach the engine from the host, not its loopback: without a password, protected
// mode would refuse them.
const SERVE: &[&str] = &[
    "serve",
    "--bind=0.0.0.0",
    "--port=6379",
    "--admin-bind=0.0.0.0",
    "--admin-port=9090",
    "--data-dir=/data",
    "--protected-mode=no",
];

async fn redis_url_works(url: &str, key: &str) -> Result<String, String> {
    let mut connection = e2e::scenario::redis_connection(url).await.map_err(|e| e.to_string())?;
    let () = redis::cmd("SET")
        .arg(key)
        .arg("v")
        .query_async(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("GET").arg(key).query_async(&mut connection).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn pods_get_their_own_ip_become_ready_by_probe_and_bind_the_same_port() {
    let node = TestNode::start().await;
    node.create_secret("auth", json!({"password": "pw", "admin": "adm1n"})).await;
    let env = json!({"env": [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "TEAM", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['team']"}}},
        {"name": "MAPCACHE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "password"}}},
        {"name": "ADDR", "value": "$(POD_IP):6379"},
        {"name": "MAPCACHE_ADMIN_TOKEN", "valueFrom": {"secretKeyRef": {"name": "auth", "key": "admin"}}}
    ], "volumeMounts": [{"name": "data", "mountPath": "/data"}]});
    for name in ["cache-a", "cache-b"] {
        let spec = json!({"containers": [engine(SERVE, env.clone())],
                          "volumes": [{"name": "data", "emptyDir": {}}]});
        node.create_pod(name, spec).await;
    }
    let a = node.ready_pod("cache-a").await;
    let b = node.ready_pod("cache-b").await;
    let ip = |pod: &Pod| pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("podIP");
    let mut ips = vec![ip(&a), ip(&b)];
    ips.sort();
    let prefix = node.cidr_prefix();
    assert_eq!(ips, vec![format!("{prefix}10"), format!("{prefix}11")], "the first two pod IPs");
    for pod in [&a, &b] {
        let status = pod.status.as_ref().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.host_ip.as_deref(), Some(format!("{prefix}1").as_str()));
        assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
        let engine = container(pod, "engine");
        assert_eq!((engine.ready, engine.restart_count, engine.started), (true, 0, Some(true)));
        // Both engines bind 0.0.0.0:6379, each in its own netns; AUTH with the Secret's value.
        let pod_ip = ip(pod);
        let got = redis_url_works(&format!("redis://:pw@{pod_ip}:6379/"), "k").await;
        assert_eq!(got, Ok("v".to_string()), "redis on {pod_ip}");
        let unauthenticated = redis_url_works(&format!("redis://{pod_ip}:6379/"), "k").await;
        assert!(unauthenticated.is_err(), "the password from the Secret is required");
        // The env the process got: fieldRefs, the Secret key, $(VAR) expansion; nothing else.
        let vars = environ(pid_of(engine));
        let get = |key: &str| vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        assert_eq!(get("POD_IP"), Some(pod_ip.clone()));
        assert_eq!(get("NODE"), Some(node.name.clone()));
        assert_eq!(get("TEAM"), Some(String::new()), "a missing label is empty");
        assert_eq!(get("MAPCACHE_PASSWORD"), Some("pw".to_string()));
        assert_eq!(get("MAPCACHE_ADMIN_TOKEN"), Some("adm1n".to_string()));
        assert_eq!(get("ADDR"), Some(format!("{pod_ip}:6379")));
        assert_eq!(get("HOSTNAME"), pod.metadata.name.clone());
        assert_eq!(get("HOME"), None, "the kubelet's own environment is not inherited");
    }
}

#[tokio::test]
async fn a_crashing_container_restarts_with_backoff_and_reports_its_exit_code() {
    let node = TestNode::start().await;
    node.create_pod(
        "crash",
        json!({"containers": [engine(&["serve", "--no-such-flag"], json!({}))]}),
    )
    .await;
    let pods = node.pods();
    let engine = node
        .eventually("the engine restarted twice", || async {
            let pod = pods.get("crash").await.ok()?;
            let engine = try_container(&pod, "engine")?.clone();
            (engine.restart_count >= 2).then_some(engine)
        })
        .await;
    let last = engine.last_state.and_then(|s| s.terminated).expect("lastState.terminated");
    assert_eq!(last.exit_code, 2, "clap's usage error");
    assert_eq!(last.reason.as_deref(), Some("Error"));
    assert!(last.started_at.is_some() && last.finished_at.is_some());
    assert!(!engine.ready);
    let waiting = node
        .eventually("CrashLoopBackOff between restarts", || async {
            let pod = pods.get("crash").await.ok()?;
            try_container(&pod, "engine")?.state.clone()?.waiting
        })
        .await;
    assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    let pod = pods.get("crash").await.expect("pod");
    assert!(!e2e::scenario::pod_ready(&pod));
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
}

#[tokio::test]
async fn deletion_runs_sigterm_in_the_grace_period_on_a_provisioned_claim_and_removes_the_pod() {
    let node = TestNode::start().await;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(node.client.clone(), &node.namespace);
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .expect("claim");
    claims.create(&PostParams::default(), &claim).await.expect("create claim");
    // The shared cluster's kubelet provisions (the default class); kube-controller-manager binds.
    let volume_name = node
        .eventually("the claim is bound", || async {
            let claim = claims.get("data").await.ok()?;
            let bound = claim.status.as_ref()?.phase.as_deref() == Some("Bound");
            bound.then(|| claim.spec?.volume_name).flatten()
        })
        .await;
    let volumes: Api<PersistentVolume> = Api::all(node.client.clone());
    let volume = volumes.get(&volume_name).await.expect("pv");
    let dir = PathBuf::from(volume.spec.and_then(|s| s.host_path).expect("hostPath").path);
    assert!(dir.is_dir(), "{} exists", dir.display());

    // As the operator builds it: a non-root user, fsGroup, the admin token in a 0440 Secret
    // volume (readable through the fsGroup only).
    node.create_secret("admin", json!({"token": "s3cret"})).await;
    let mut args = SERVE.to_vec();
    args.push("--admin-token-file=/etc/admin/token");
    let engine = engine(
        &args,
        json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532},
            "env": [],
            "volumeMounts": [{"name": "data", "mountPath": "/data"},
                             {"name": "admin", "mountPath": "/etc/admin", "readOnly": true}]
        }),
    );
    node.create_pod(
        "cache",
        json!({
            "terminationGracePeriodSeconds": 20,
            "securityContext": {"fsGroup": 65532},
            "containers": [engine],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "admin", "secret": {"secretName": "admin", "defaultMode": 0o440}}]
        }),
    )
    .await;
    let pod = node.ready_pod("cache").await;
    let pid = pid_of(container(&pod, "engine"));
    let netns =
        format!("{}-{}", node.network.bridge(), &pod.metadata.uid.clone().expect("uid")[..12]);
    assert!(PathBuf::from("/var/run/netns").join(&netns).exists(), "the pod's netns {netns}");

    let pods = node.pods();
    let deleted = pods.delete("cache", &DeleteParams::default()).await.expect("delete");
    let terminating = deleted.left().expect("the object stays while the pod terminates");
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(20));
    node.eventually("the pod object is removed", || async {
        pods.get_opt("cache").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!PathBuf::from(format!("/proc/{pid}")).exists(), "the engine process is gone");
    assert!(!PathBuf::from("/var/run/netns").join(&netns).exists(), "the netns is removed");
    // mapcache writes a snapshot on SIGTERM, as uid 65532, into the claim's directory.
    let snapshots: Vec<_> = std::fs::read_dir(&dir)
        .expect("pv dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
        .collect();
    assert!(!snapshots.is_empty(), "a snapshot in {}\n{}", dir.display(), node.diagnostics());
    let owner = std::os::unix::fs::MetadataExt::uid(&snapshots[0].metadata().expect("meta"));
    assert_eq!(owner, 65532, "written by the container's user");

    // The claim goes: its volume is Released, and the provisioner deletes it and its directory.
    claims.delete("data", &DeleteParams::default()).await.expect("delete claim");
    node.eventually("the released volume is deleted", || async {
        volumes.get_opt(&volume_name).await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!dir.exists(), "{} is removed with its volume", dir.display());
}

#[tokio::test]
async fn a_failing_liveness_probe_runs_pre_stop_and_restarts_the_container_under_on_failure() {
    let node = TestNode::start().await;
    let work = node.shared_dir("work");
    // Healthy while /work/kill-me does not exist. The preStop hook removes it (so the restarted
    // engine stays healthy) and leaves a mark; SIGTERM drains the engine, which exits 0, and
    // OnFailure restarts it all the same: the kubelet killed it.
    let engine = engine(
        &["serve", "--port=6379", "--admin-bind=0.0.0.0", "--admin-port=9090"],
        json!({
            "env": [{"name": "MAPCACHE_ADMIN_TOKEN", "value": "t0k3n"},
                    {"name": "KILL", "value": "/work/kill-me"},
                    {"name": "MARKS", "value": "/work/marks"}],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
            "livenessProbe": {"exec": {"command": ["test", "!", "-e", "/work/kill-me"]},
                              "periodSeconds": 1, "failureThreshold": 1,
                              "terminationGracePeriodSeconds": 10},
            "lifecycle": {"preStop": {"exec": {"command":
                ["sh", "-c", "rm \"$KILL\"; echo pre-stop >> \"$MARKS\""]}}}
        }),
    );
    node.create_pod(
        "unhealthy",
        json!({"restartPolicy": "OnFailure", "terminationGracePeriodSeconds": 600,
               "containers": [engine],
               "volumes": [host_path("work", &work)]}),
    )
    .await;
    let before = node.ready_pod("unhealthy").await;
    std::fs::write(work.join("kill-me"), b"").expect("fail the liveness probe");
    let pods = node.pods();
    let engine = node
        .eventually("the engine restarted and is ready again", || async {
            let pod = pods.get("unhealthy").await.ok()?;
            let engine = try_container(&pod, "engine")?.clone();
            (engine.restart_count >= 1 && engine.ready).then_some(engine)
        })
        .await;
    assert_eq!(engine.restart_count, 1, "killed once");
    assert_ne!(pid_of(&engine), pid_of(container(&before, "engine")));
    let last = engine.last_state.and_then(|s| s.terminated).expect("lastState.terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (0, Some("Completed")), "a drained stop");
    assert_eq!(std::fs::read_to_string(work.join("marks")).ok().as_deref(), Some("pre-stop\n"));
    assert!(!work.join("kill-me").exists(), "removed by the hook");
}

#[tokio::test]
async fn the_app_container_reaches_its_own_engine_on_localhost() {
    let node = TestNode::start().await;
    let app = json!({"name": "web", "image": "busybox:1.36",
                     "command": ["sh", "-c", "while true; do sleep 3600; done"],
                     "env": [{"name": "CACHE_ADDR", "value": "127.0.0.1:6379"}]});
    // --data-dir=/data without a volumeMount, and a workingDir: both in the engine's own
    // writable layer, never the host's /data.
    let mut engine = engine(
        &["serve", "--port=6379", "--admin-bind=0.0.0.0", "--admin-port=9090", "--data-dir=/data"],
        json!({}),
    );
    engine["workingDir"] = json!("/srv/engine");
    node.create_pod("sidecar", json!({"containers": [app, engine]})).await;
    let pod = node.ready_pod("sidecar").await;
    assert_eq!(container(&pod, "web").image, "busybox:1.36");
    let uid = pod.metadata.uid.clone().expect("uid");
    let layer = node.root.path().join(format!("pods/{uid}/rootfs/engine"));
    let engine_pid = pid_of(container(&pod, "engine"));
    let cmdline = std::fs::read(format!("/proc/{engine_pid}/cmdline")).expect("cmdline");
    let args: Vec<String> =
        cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let data_dir = format!("--data-dir={}", layer.join("data").display());
    assert!(args.contains(&data_dir), "{data_dir} in {args:?}");
    let cwd = std::fs::read_link(format!("/proc/{engine_pid}/cwd")).expect("cwd");
    assert_eq!(cwd, layer.join("srv/engine").canonicalize().expect("working dir"));
    let log = node.logs_dir().join(format!("{}_sidecar_web.log", node.namespace));
    node.eventually("the app's SET/GET rounds succeed", || async {
        let text = std::fs::read_to_string(&log).ok()?;
        text.lines().filter(|l| l.starts_with("ok ")).nth(2).map(str::to_string)
    })
    .await;
    // The engine bound 127.0.0.1 (the default): only its own pod reaches it.
    let pod_ip = pod.status.and_then(|s| s.pod_ip).expect("podIP");
    assert!(redis_url_works(&format!("redis://{pod_ip}:6379/"), "k").await.is_err());
}

#[tokio::test]
async fn init_containers_run_to_completion_before_the_containers_start() {
    let node = TestNode::start().await;
    // The busybox init container runs its command on the host (the app stand-in never ends);
    // MARKER is a path in its emptyDir mount, rewritten to the volume's host directory.
    let init = json!({"name": "prepare", "image": "busybox:1.36",
        "command": ["sh", "-c", "echo prepared > \"$MARKER\""],
        "env": [{"name": "MARKER", "value": "/work/marker"}],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}]});
    let app = json!({"name": "web", "image": "busybox:1.36"});
    node.create_pod(
        "init",
        json!({"initContainers": [init], "containers": [app],
                                    "volumes": [{"name": "work", "emptyDir": {}}]}),
    )
    .await;
    let pod = node.ready_pod("init").await;
    let status = pod.status.clone().expect("status");
    let init = status.init_container_statuses.expect("initContainerStatuses");
    let done = init[0].state.clone().and_then(|s| s.terminated).expect("terminated");
    assert_eq!((done.exit_code, done.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(init[0].restart_count, 0);
    let uid = pod.metadata.uid.expect("uid");
    let marker = node.root.path().join(format!("pods/{uid}/volumes/work/marker"));
    assert_eq!(std::fs::read_to_string(&marker).ok().as_deref(), Some("prepared\n"));
}

#[tokio::test]
async fn a_kubelet_killed_and_restarted_adopts_its_running_containers() {
    let mut node = TestNode::start().await;
    let engine = engine(SERVE, json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]}));
    node.create_pod(
        "steady",
        json!({"containers": [engine], "volumes": [{"name": "data", "emptyDir": {}}]}),
    )
    .await;
    let before = node.ready_pod("steady").await;
    let pid = pid_of(container(&before, "engine"));
    let pod_ip = before.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("podIP");

    node.kill_kubelet();
    assert_eq!(redis_url_works(&format!("redis://{pod_ip}:6379/"), "k").await, Ok("v".into()));
    node.start_kubelet();
    // A new pod becoming Ready proves the new kubelet is at work.
    node.create_pod("probe", json!({"containers": [{"name": "app", "image": "busybox:1.36"}]}))
        .await;
    let fresh = node.ready_pod("probe").await;
    let fresh_ip = fresh.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("podIP");
    assert_ne!(fresh_ip, pod_ip, "the adopted pod's IP stays held");

    let after = node.ready_pod("steady").await;
    let engine = container(&after, "engine");
    assert_eq!(pid_of(engine), pid, "the same process");
    assert_eq!(engine.restart_count, 0);
    assert_eq!(after.metadata.uid, before.metadata.uid);
    assert_eq!(after.status.and_then(|s| s.pod_ip), Some(pod_ip.clone()));
    assert_eq!(redis_url_works(&format!("redis://{pod_ip}:6379/"), "k").await, Ok("v".into()));

    // Killed again, and a pod is force-deleted meanwhile: the next kubelet finds its state
    // without a pod in the API and cleans it up (process, netns, directory).
    let orphan_pid = pid_of(container(&fresh, "app"));
    let orphan_uid = fresh.metadata.uid.clone().expect("uid");
    let orphan_netns = format!("{}-{}", node.network.bridge(), &orphan_uid[..12]);
    node.kill_kubelet();
    let force = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    node.pods().delete("probe", &force).await.expect("force delete");
    node.start_kubelet();
    let orphan_dir = node.root.path().join("pods").join(&orphan_uid);
    node.eventually("the orphan is cleaned up", || async {
        let gone = !orphan_dir.exists()
            && !PathBuf::from(format!("/proc/{orphan_pid}")).exists()
            && !PathBuf::from("/var/run/netns").join(&orphan_netns).exists();
        gone.then_some(())
    })
    .await;
    let steady = node.ready_pod("steady").await;
    assert_eq!(pid_of(container(&steady, "engine")), pid, "the adopted pod is untouched");
}

#[tokio::test]
async fn a_container_ignoring_sigterm_is_killed_at_the_end_of_the_grace_period_before_its_pod_goes()
{
    let node = TestNode::start().await;
    let main = shell("main", IGNORES_SIGTERM, json!({}));
    node.create_pod("stubborn", json!({"terminationGracePeriodSeconds": 3, "containers": [main]}))
        .await;
    let pod = node.ready_pod("stubborn").await;
    let pid = pid_of(container(&pod, "main"));
    let asked = Instant::now();
    let last = node.delete_and_watch_until_gone(&pod).await;
    // The object went only once the process was gone, and not before the grace period ended.
    assert!(!alive(pid), "the container's process outlived its pod object");
    assert!(asked.elapsed() >= Duration::from_secs(3), "deleted after {:?}", asked.elapsed());
    let state = container(&last, "main").state.clone().expect("state");
    let ended = state.terminated.expect("terminated before the object went");
    assert_eq!(
        (ended.exit_code, ended.signal, ended.reason.as_deref()),
        (137, Some(9), Some("Error")),
        "SIGKILL"
    );
}

#[tokio::test]
async fn pre_stop_runs_inside_the_grace_period_and_sigterm_still_gets_two_seconds() {
    let node = TestNode::start().await;
    let events = node.shared_dir("events");
    // The hook would take 600 s: it is cut at the end of the 4 s grace period, SIGTERM follows,
    // and SIGKILL no sooner than 2 s after it (the kubelet's minimum), so the trap can log.
    // `$$$$`: Kubernetes expands `$$` to `$` in a command, so the shell gets `$$` (its pid).
    let hook = "echo $$$$ > \"$HOOK_PID\"; echo pre-stop >> \"$LOG\"; sleep 600; \
                echo done >> \"$LOG\"";
    let main = shell(
        "main",
        LOGS_SIGTERM,
        json!({
            "env": [{"name": "LOG", "value": "/events/log"},
                    {"name": "HOOK_PID", "value": "/events/hook.pid"}],
            "volumeMounts": [{"name": "events", "mountPath": "/events"}],
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", hook]}}}
        }),
    );
    node.create_pod(
        "hooked",
        json!({"terminationGracePeriodSeconds": 4, "containers": [main],
               "volumes": [host_path("events", &events)]}),
    )
    .await;
    let pod = node.ready_pod("hooked").await;
    let pid = pid_of(container(&pod, "main"));
    let asked = Instant::now();
    node.delete_and_watch_until_gone(&pod).await;
    let took = asked.elapsed();
    assert!(took >= Duration::from_secs(6), "4 s of grace, then 2 s after SIGTERM: {took:?}");
    let log = std::fs::read_to_string(events.join("log")).expect("log");
    assert_eq!(log, "pre-stop\nterm\n", "the hook ran, was cut, then SIGTERM came");
    let hook_pid: u32 = std::fs::read_to_string(events.join("hook.pid"))
        .expect("hook pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(!alive(hook_pid), "the cut hook is gone");
    assert!(!alive(pid), "the container is gone");
}

#[tokio::test]
async fn a_pod_recreated_under_the_same_name_survives_the_old_ones_final_delete() {
    let node = TestNode::start().await;
    let events = node.shared_dir("events");
    let volumes = json!([host_path("events", &events)]);
    let stubborn = shell(
        "main",
        LOGS_SIGTERM,
        json!({"env": [{"name": "LOG", "value": "/events/log"}],
               "volumeMounts": [{"name": "events", "mountPath": "/events"}]}),
    );
    node.create_pod(
        "same",
        json!({"terminationGracePeriodSeconds": 6, "containers": [stubborn], "volumes": volumes}),
    )
    .await;
    let old = node.ready_pod("same").await;
    let old_uid = old.metadata.uid.clone().expect("uid");
    let pods = node.pods();
    pods.delete("same", &DeleteParams::default()).await.expect("delete");
    node.file_text(&events.join("log"), "term\n").await; // the old pod is in its grace period
    let force = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    pods.delete("same", &force).await.expect("force delete");
    node.eventually("the name is free", || async {
        pods.get_opt("same").await.ok()?.is_none().then_some(())
    })
    .await;
    node.create_pod(
        "same",
        json!({"containers": [shell("main", "while :; do sleep 1; done", json!({}))]}),
    )
    .await;
    let new = node.ready_pod("same").await;
    let new_uid = new.metadata.uid.clone().expect("uid");
    assert_ne!(new_uid, old_uid);
    // The old pod's worker ends with its final delete and then removes its directory.
    let old_dir = node.root.path().join("pods").join(&old_uid);
    node.eventually("the old pod is cleaned up", || async { (!old_dir.exists()).then_some(()) })
        .await;
    let now = pods.get("same").await.expect("the replacement still exists");
    assert_eq!(now.metadata.uid.as_deref(), Some(new_uid.as_str()));
    assert_eq!(now.metadata.deletion_timestamp, None, "and is not being deleted");
    assert!(e2e::scenario::pod_ready(&now));
}

#[tokio::test]
async fn readiness_drives_ready_and_a_terminating_pod_stays_ready_while_its_probe_passes() {
    let node = TestNode::start().await;
    let flags = node.shared_dir("flags");
    std::fs::write(flags.join("ready"), b"").expect("ready flag");
    let main = shell(
        "main",
        LOGS_SIGTERM,
        json!({
            "env": [{"name": "LOG", "value": "/flags/log"}],
            "volumeMounts": [{"name": "flags", "mountPath": "/flags"}],
            "readinessProbe": {"exec": {"command": ["test", "-e", "/flags/ready"]},
                               "periodSeconds": 1, "failureThreshold": 1}
        }),
    );
    node.create_pod(
        "flagged",
        json!({"terminationGracePeriodSeconds": 300, "containers": [main],
               "volumes": [host_path("flags", &flags)]}),
    )
    .await;
    node.ready_pod("flagged").await;
    let pods = node.pods();
    // Another component's condition (the Eviction API's) survives the kubelet's status writes.
    // Fresh: the disruption controller resets a DisruptionTarget older than 2 minutes.
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("now");
    let disruption = json!({"status": {"conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "EvictionByEvictionAPI", "message": "test", "lastTransitionTime": now.to_string()}]}});
    pods.patch_status("flagged", &PatchParams::default(), &Patch::Strategic(&disruption))
        .await
        .expect("add DisruptionTarget");
    let ready = |want: &'static str| {
        let pods = pods.clone();
        move || {
            let pods = pods.clone();
            async move {
                let pod = pods.get("flagged").await.ok()?;
                (condition(&pod, "Ready")?.0 == want).then_some(pod)
            }
        }
    };
    std::fs::remove_file(flags.join("ready")).expect("unready");
    let unready = node.eventually("Ready=False", ready("False")).await;
    assert_eq!(
        condition(&unready, "Ready"),
        Some(("False".into(), Some("ContainersNotReady".into())))
    );
    assert!(!container(&unready, "main").ready);
    assert_eq!(container(&unready, "main").restart_count, 0, "readiness does not restart");
    assert_eq!(
        condition(&unready, "DisruptionTarget"),
        Some(("True".into(), Some("EvictionByEvictionAPI".into())))
    );
    std::fs::write(flags.join("ready"), b"").expect("ready again");
    node.eventually("Ready=True", ready("True")).await;

    pods.delete("flagged", &DeleteParams::default()).await.expect("delete");
    node.file_text(&flags.join("log"), "term\n").await; // SIGTERM: the kubelet is stopping it
    tokio::time::sleep(Duration::from_secs(3)).await; // three more readiness periods
    let terminating = pods.get("flagged").await.expect("terminating pod");
    assert!(terminating.metadata.deletion_timestamp.is_some());
    assert_eq!(condition(&terminating, "Ready").map(|c| c.0).as_deref(), Some("True"));
    assert!(container(&terminating, "main").ready, "still passing its readiness probe");
    std::fs::remove_file(flags.join("ready")).expect("unready while terminating");
    let unready = node.eventually("Ready=False while terminating", ready("False")).await;
    assert!(unready.metadata.deletion_timestamp.is_some());
    assert_eq!(condition(&unready, "DisruptionTarget").map(|c| c.0).as_deref(), Some("True"));
    let force = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    pods.delete("flagged", &force).await.expect("force delete");
}

#[tokio::test]
async fn a_failing_container_under_restart_policy_never_ends_the_pod_failed_for_good() {
    let mut node = TestNode::start().await;
    node.create_pod(
        "once",
        json!({"restartPolicy": "Never",
               "containers": [engine(&["serve", "--no-such-flag"], json!({}))]}),
    )
    .await;
    let pods = node.pods();
    node.eventually("phase Failed", || async {
        let pod = pods.get("once").await.ok()?;
        (pod.status?.phase.as_deref() == Some("Failed")).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await; // three initial backoffs: no restart
    let pod = pods.get("once").await.expect("pod");
    assert_eq!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed"));
    let engine = container(&pod, "engine");
    let ended = engine.state.clone().and_then(|s| s.terminated).expect("terminated");
    assert_eq!((ended.exit_code, ended.reason.as_deref()), (2, Some("Error")));
    assert_eq!((engine.restart_count, engine.ready), (0, false));
    assert_eq!(engine.last_state.clone().and_then(|s| s.terminated), None, "never restarted");
    assert_eq!(condition(&pod, "Ready"), Some(("False".into(), Some("PodCompleted".into()))));

    // A kubelet that finds the pod Failed in the API starts nothing of it, even when its
    // state file has lost the containers' records (the IP stays recorded, and held).
    let log = node.logs_dir().join(format!("{}_once_engine.log", node.namespace));
    let ran = std::fs::read_to_string(&log).expect("the engine's log");
    node.kill_kubelet();
    let uid = pod.metadata.uid.clone().expect("uid");
    let state_file = node.root.path().join(format!("pods/{uid}/state.json"));
    let mut state: Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state")).expect("json");
    state["containers"] = json!({});
    std::fs::write(&state_file, serde_json::to_vec(&state).expect("json")).expect("write");
    node.start_kubelet();
    node.create_pod("probe", json!({"containers": [{"name": "app", "image": "busybox:1.36"}]}))
        .await;
    node.ready_pod("probe").await; // the new kubelet is at work
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(std::fs::read_to_string(&log).expect("log"), ran, "the engine did not run again");
    let after = pods.get("once").await.expect("pod");
    assert_eq!(after.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Failed"));
    assert_eq!(container(&after, "engine"), container(&pod, "engine"));
}

#[tokio::test]
async fn a_restarting_native_sidecar_never_sends_the_pod_back_to_pending() {
    let node = TestNode::start().await;
    let mut sidecar = shell("helper", "sleep 2; exit 1", json!({}));
    sidecar["restartPolicy"] = json!("Always");
    let app = json!({"name": "app", "image": "busybox:1.36"});
    node.create_pod("sidecar", json!({"initContainers": [sidecar], "containers": [app]})).await;
    let pods = node.pods();
    let running = node
        .eventually("the pod runs", || async {
            let pod = pods.get("sidecar").await.ok()?;
            (pod.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(pod)
        })
        .await;
    let version = running.metadata.resource_version.clone().expect("resourceVersion");
    let params = WatchParams::default().fields("metadata.name=sidecar");
    let mut events = pods.watch(&params, &version).await.expect("watch").boxed();
    let mut seen = 0;
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let pod = match tokio::time::timeout(left, events.try_next()).await {
            Ok(Ok(Some(WatchEvent::Modified(pod)))) => pod,
            Ok(Ok(Some(_))) => continue,
            other => panic!("watching the pod: {other:?}\n{}", node.diagnostics()),
        };
        seen += 1;
        let status = pod.status.clone().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"), "version {seen}");
        assert_eq!(condition(&pod, "Initialized").map(|c| c.0).as_deref(), Some("True"));
        let helper = status.init_container_statuses.expect("initContainerStatuses");
        if helper[0].restart_count >= 3 {
            break;
        }
    }
}

#[tokio::test]
async fn a_background_process_dies_with_its_pod_and_the_pod_ip_is_free_again() {
    let node = TestNode::start().await;
    let events = node.shared_dir("events");
    // setsid: the background process leaves the container's process group and session, so
    // only the sweep of the pod's netns can find it.
    let main = shell(
        "main",
        "setsid sleep 600 & echo $! > \"$BACKGROUND\"; while :; do sleep 1; done",
        json!({"env": [{"name": "BACKGROUND", "value": "/events/background.pid"}],
               "volumeMounts": [{"name": "events", "mountPath": "/events"}]}),
    );
    node.create_pod(
        "forking",
        json!({"terminationGracePeriodSeconds": 5, "containers": [main],
               "volumes": [host_path("events", &events)]}),
    )
    .await;
    let pod = node.ready_pod("forking").await;
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("podIP");
    assert_eq!(ip, format!("{}10", node.cidr_prefix()), "the node's first pod IP");
    let pid_file = events.join("background.pid");
    let background: u32 = node
        .eventually("the background pid", || async {
            std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok()
        })
        .await;
    node.eventually("the background process left the group", || async {
        let stat = std::fs::read_to_string(format!("/proc/{background}/stat")).ok()?;
        let (_, rest) = stat.rsplit_once(')')?;
        // Fields after the name: state, ppid, pgrp, session.
        let pgrp: u32 = rest.split_whitespace().nth(2)?.parse().ok()?;
        (pgrp == background).then_some(())
    })
    .await;
    assert!(alive(background));
    node.delete_and_watch_until_gone(&pod).await;
    assert!(!alive(background), "the background process outlived its pod");
    let next = json!({"containers": [{"name": "app", "image": "busybox:1.36"}]});
    node.create_pod("next", next).await;
    let next = node.ready_pod("next").await;
    assert_eq!(next.status.and_then(|s| s.pod_ip), Some(ip), "the freed IP is handed out again");
}
