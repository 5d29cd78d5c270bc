//! Building blocks of the e2e scenarios: a fresh namespace per test on the cluster the test
//! binary shares (or, with `E2E_KUBECONFIG`, on any other cluster), the Helm chart installed with
//! Helm's own library, the operator as a real process under the chart's ServiceAccount and RBAC,
//! YAML apply, waits that explain themselves on timeout, and Redis access to the cache pods.

use crate::binaries;
use crate::cluster;
use crate::controlplane::kubeconfig::{self, Credentials};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Field manager of everything the scenarios apply.
pub const MANAGER: &str = "mapcache-e2e";
/// Namespace and release of the chart the scenarios' operators run under.
pub const OPERATOR_NAMESPACE: &str = "mapcache-system";
pub const RELEASE: &str = "mapcache-operator";

/// Where a scenario runs.
pub struct Env {
    pub client: kube::Client,
    /// A namespace of this test's own, deleted when the test ends.
    pub namespace: String,
    /// cluster-admin kubeconfig (the harness's; kubectl in scenarios).
    pub kubeconfig: PathBuf,
    pub mapcache_bin: PathBuf,
    /// Operator logs, kubeconfigs and other scenario files.
    pub work_dir: PathBuf,
    /// The local cluster shared by this test binary (None with `E2E_KUBECONFIG`).
    pub cluster: Option<cluster::SharedCluster>,
    _temp: Option<tempfile::TempDir>,
}

/// The `mapcache.io/v1alpha1` MapCache resource, for `Api<DynamicObject>`.
pub fn mapcache_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mapcache.io", "v1alpha1", "MapCache"),
        "mapcaches",
    )
}

/// Run `scripts/helm-release.py` (Helm's library through helm-python-sdk) and return its JSON.
pub fn helm_release(
    kubeconfig: &std::path::Path,
    namespace: &str,
    release: &str,
    action: &str,
    values: &Value,
) -> Result<Value, String> {
    let script = binaries::repo_root().join("scripts/helm-release.py");
    let output = std::process::Command::new("python3")
        .arg(&script)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--namespace={namespace}"))
        .arg(format!("--release={release}"))
        .arg(action)
        .arg(format!("--values={values}"))
        .output()
        .map_err(|e| {
            format!("run {}: {e} (python3 with scripts/requirements.txt)", script.display())
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answer: Value = serde_json::from_str(stdout.trim()).map_err(|_| {
        format!(
            "helm {action} {release}: no JSON answer ({})\nstdout: {stdout}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    if !output.status.success() {
        return Err(format!("helm {action} {release}: {answer}"));
    }
    Ok(answer)
}

/// The chart as the scenarios' operators use it: installed once per cluster (per test binary),
/// CRD included, with no operator Deployment replicas (each scenario runs its own operator
/// process, under this release's ServiceAccount).
pub fn install_chart_once(kubeconfig: &std::path::Path) -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            let values = serde_json::json!({"replicaCount": 0});
            match helm_release(kubeconfig, OPERATOR_NAMESPACE, RELEASE, "status", &values) {
                Ok(status) if status["status"] == "deployed" => Ok(()),
                _ => helm_release(kubeconfig, OPERATOR_NAMESPACE, RELEASE, "install", &values)
                    .map(|_| ()),
            }
        })
        .clone()
}

impl Env {
    /// A fresh namespace on this test binary's shared local cluster; or, with
    /// `E2E_KUBECONFIG=<file>`, on that cluster (pods then run on its nodes, not here).
    pub async fn start() -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let mapcache_bin = binaries::mapcache();
        binaries::ensure_mapcache(&mapcache_bin).expect("the mapcache binary builds");
        let (kubeconfig, shared) = match std::env::var_os("E2E_KUBECONFIG") {
            Some(path) => (PathBuf::from(path), None),
            None => {
                let shared =
                    cluster::shared().unwrap_or_else(|e| panic!("start the local cluster: {e}"));
                (shared.kubeconfig.clone(), Some(shared))
            }
        };
        let text = std::fs::read_to_string(&kubeconfig).expect("a readable kubeconfig");
        let client = kubeconfig::client(&text).await.expect("a client for the kubeconfig");
        let namespace =
            format!("e2e-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .patch(&namespace, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&ns))
            .await
            .expect("create the test namespace");
        let (temp, work_dir) = match &shared {
            Some(shared) => (None, shared.state_dir.join("scenarios").join(&namespace)),
            None => {
                let temp =
                    tempfile::Builder::new().prefix("mapcache-e2e-").tempdir().expect("temp dir");
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        std::fs::create_dir_all(&work_dir).expect("scenario work dir");
        let kubeconfig_for_install = kubeconfig.clone();
        tokio::task::spawn_blocking(move || install_chart_once(&kubeconfig_for_install))
            .await
            .expect("helm install")
            .unwrap_or_else(|e| panic!("install the chart: {e}"));
        Self { client, namespace, kubeconfig, mapcache_bin, work_dir, cluster: shared, _temp: temp }
    }

    pub fn is_local(&self) -> bool {
        self.cluster.is_some()
    }

    pub fn mapcaches(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &mapcache_resource())
    }

    /// The MapCache CRD (installed with the chart, from `crds/mapcache.yaml`) is Established.
    pub async fn install_crd(&self) {
        let crds: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
                "customresourcedefinitions",
            ),
        );
        self.wait_until("the MapCache CRD is Established", Duration::from_secs(30), || async {
            let crd = crds.get_opt("mapcaches.mapcache.io").await.ok()??;
            condition_is(&crd.data, "Established", "True").then_some(())
        })
        .await;
    }

    /// A kubeconfig as the chart's ServiceAccount (see [`operator_kubeconfig`]).
    pub async fn operator_kubeconfig(&self) -> String {
        operator_kubeconfig(&self.client, &self.kubeconfig, &self.namespace).await
    }

    /// Start `mapcache operator` as a local process that watches this test's namespace, with the
    /// chart's ServiceAccount token and its own leader Lease in the chart's namespace.
    pub async fn start_operator(&self, name: &str) -> Operator {
        let log = self.work_dir.join(format!("{name}.log"));
        let kubeconfig = self.work_dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&kubeconfig, self.operator_kubeconfig().await).expect("operator kubeconfig");
        let file = std::fs::File::create(&log).expect("operator log file");
        let mut command = tokio::process::Command::new(&self.mapcache_bin);
        command
            .args(["operator", "--metrics-addr=127.0.0.1:0", "--leader-election=true"])
            .arg(format!("--leader-election-namespace={OPERATOR_NAMESPACE}"))
            .arg(format!("--leader-election-lease-name=mapcache-operator-{}", self.namespace))
            .arg(format!("--namespace={}", self.namespace))
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true);
        let child = command.spawn().expect("start mapcache operator");
        Operator { child, log }
    }

    /// Server-side apply every document of a YAML stream into this namespace.
    pub async fn apply_yaml(&self, yaml: &str) -> Vec<DynamicObject> {
        let mut applied = Vec::new();
        for document in serde_yaml::Deserializer::from_str(yaml) {
            let value: Value = serde::Deserialize::deserialize(document).expect("valid YAML");
            if value.is_null() {
                continue;
            }
            let object: DynamicObject = serde_json::from_value(value).expect("a Kubernetes object");
            let types = object.types.clone().expect("apiVersion and kind");
            let gvk = GroupVersionKind::try_from(&types).expect("a valid apiVersion");
            let (resource, capabilities) =
                kube::discovery::pinned_kind(&self.client, &gvk).await.expect("the kind is served");
            let api: Api<DynamicObject> = match capabilities.scope {
                Scope::Namespaced => {
                    Api::namespaced_with(self.client.clone(), &self.namespace, &resource)
                }
                Scope::Cluster => Api::all_with(self.client.clone(), &resource),
            };
            let name = object.metadata.name.clone().expect("metadata.name");
            let result = api
                .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&object))
                .await;
            applied.push(result.unwrap_or_else(|e| panic!("apply {} {name}: {e}", gvk.kind)));
        }
        applied
    }

    /// Run kubectl v1.37.2 (built with the control plane) with the admin kubeconfig in this
    /// test's namespace; returns (success, stdout, stderr).
    pub async fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let kubectl = binaries::kubectl().unwrap_or_else(|e| panic!("kubectl: {e}"));
        let output = tokio::process::Command::new(&kubectl)
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg(format!("--namespace={}", self.namespace))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("run {}: {e}", kubectl.display()));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// Poll `check` every 250 ms until it yields a value; on timeout, panic with where to look.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, timeout: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        let start = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for: {what}\n{}",
                    self.diagnostics().await
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Pods, their phases and where their logs are: printed when a scenario fails.
    pub async fn diagnostics(&self) -> String {
        let mut out = format!(
            "namespace {}; work dir (operator logs and kubeconfigs): {}\n",
            self.namespace,
            self.work_dir.display()
        );
        if let Some(shared) = &self.cluster {
            out.push_str(&format!(
                "container logs: {} (<namespace>_<pod>_<container>.log)\n",
                shared.logs_dir.display()
            ));
        }
        if let Ok(pods) = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default())
            .await
        {
            for pod in pods {
                let status = pod.status.unwrap_or_default();
                out.push_str(&format!(
                    "pod {} phase={:?} ip={:?} restarts={:?}\n",
                    pod.metadata.name.unwrap_or_default(),
                    status.phase,
                    status.pod_ip,
                    status
                        .container_statuses
                        .map(|cs| cs.iter().map(|c| c.restart_count).collect::<Vec<_>>())
                ));
            }
        }
        if let Ok(caches) = self.mapcaches().list(&ListParams::default()).await {
            for cache in caches {
                out.push_str(&format!(
                    "mapcache {} status={}\n",
                    cache.metadata.name.unwrap_or_default(),
                    cache.data.get("status").cloned().unwrap_or_default()
                ));
            }
        }
        if self.cluster.is_some() {
            out.push_str(&cluster::shared_diagnostics(15));
        }
        out
    }

    /// Wait until the MapCache `name` has condition `kind` with `status`; returns the object's
    /// JSON (metadata, spec, status).
    pub async fn wait_for_condition(
        &self,
        name: &str,
        kind: &str,
        status: &str,
        timeout: Duration,
    ) -> Value {
        let caches = self.mapcaches();
        let what = format!("MapCache {name} condition {kind}={status}");
        self.wait_until(&what, timeout, || async {
            let object = caches.get(name).await.ok()?;
            condition_is(&object.data, kind, status).then(|| object.data.clone())
        })
        .await
    }

    /// A Redis connection to every ready pod of a cache, by pod name (sorted).
    pub async fn connect_all(
        &self,
        cache: &str,
    ) -> Vec<(String, redis::aio::MultiplexedConnection)> {
        let mut connections = Vec::new();
        for (pod, address) in self.cache_endpoints(cache).await {
            let connection = redis_connection(&format!("redis://{address}/"))
                .await
                .unwrap_or_else(|e| panic!("connect to {pod} at {address}: {e}"));
            connections.push((pod, connection));
        }
        connections
    }

    /// Ready pods of a cache with their Redis addresses (`ip:port`), by pod name.
    pub async fn cache_endpoints(&self, cache: &str) -> Vec<(String, String)> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={cache}")))
            .await
            .map(|list| list.items)
            .unwrap_or_default();
        let mut endpoints: Vec<(String, String)> = pods
            .into_iter()
            .filter(|pod| pod_ready(pod) && pod.metadata.deletion_timestamp.is_none())
            .filter_map(|pod| {
                let ip = pod.status.as_ref()?.pod_ip.clone()?;
                let port = pod
                    .spec
                    .as_ref()?
                    .containers
                    .iter()
                    .flat_map(|c| c.ports.clone().unwrap_or_default())
                    .find(|p| p.name.as_deref() == Some("redis"))
                    .map_or(6379, |p| p.container_port);
                Some((pod.metadata.name.clone()?, format!("{ip}:{port}")))
            })
            .collect();
        endpoints.sort();
        endpoints
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if std::env::var_os("E2E_KEEP").is_none() {
            // Delete the test's namespace (and so everything in it), so that a shared cluster
            // does not run the pods of finished scenarios. Drop cannot await, so a short-lived
            // thread with its own runtime does it.
            // The test's client belongs to the test's runtime, which this thread blocks: build
            // a fresh one from the kubeconfig.
            let (kubeconfig, namespace) = (self.kubeconfig.clone(), self.namespace.clone());
            let cleanup = std::thread::spawn(move || {
                let Ok(runtime) =
                    tokio::runtime::Builder::new_current_thread().enable_all().build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    let Ok(file) = kube::config::Kubeconfig::read_from(&kubeconfig) else { return };
                    let options = kube::config::KubeConfigOptions::default();
                    let Ok(config) = kube::Config::from_custom_kubeconfig(file, &options).await
                    else {
                        return;
                    };
                    let Ok(client) = kube::Client::try_from(config) else { return };
                    let namespaces: Api<Namespace> = Api::all(client);
                    if let Err(error) = namespaces.delete(&namespace, &Default::default()).await {
                        eprintln!("could not delete test namespace {namespace}: {error}");
                    }
                });
            });
            let _ = cleanup.join();
        }
        if std::env::var_os("E2E_KEEP").is_some()
            && let Some(temp) = self._temp.take()
        {
            eprintln!("E2E_KEEP: scenario files kept in {}", temp.keep().display());
        }
    }
}

/// A kubeconfig that authenticates as the chart's ServiceAccount (a bound token from the
/// TokenRequest API, asked for with `client`), for the cluster of the kubeconfig `admin`, so
/// the operator has exactly the chart's RBAC and nothing more.
pub async fn operator_kubeconfig(
    client: &kube::Client,
    admin: &std::path::Path,
    namespace: &str,
) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600 * 4),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token: TokenRequest = accounts
        .create_subresource("token", RELEASE, &PostParams::default(), &request)
        .await
        .expect("a token for the chart's ServiceAccount");
    let token = token.status.and_then(|status| status.token).expect("the TokenRequest's token");
    let admin = kube::config::Kubeconfig::read_from(admin).expect("kubeconfig");
    let cluster = admin.clusters[0].cluster.clone().expect("a cluster in the kubeconfig");
    let ca = cluster
        .certificate_authority_data
        .map(|data| {
            serde_json::from_value::<k8s_openapi::ByteString>(Value::String(data))
                .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned())
                .expect("the CA is base64")
        })
        .expect("the kubeconfig carries its CA");
    kubeconfig::render(
        cluster.server.as_deref().expect("a server"),
        &ca,
        &Credentials::Token(token),
        namespace,
    )
}

/// The engine container of a pod as the process kubelet reports it: its pid (from
/// `containerID: process://<pid>`) and its restart count.
pub fn engine_process(pod: &Pod) -> Option<(i32, i32)> {
    let status =
        pod.status.as_ref()?.container_statuses.as_ref()?.iter().find(|c| c.name == "engine")?;
    let pid = status.container_id.as_deref()?.strip_prefix("process://")?.parse().ok()?;
    Some((pid, status.restart_count))
}

pub fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| {
        conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// Whether `object.status.conditions` has `type` with `status`.
pub fn condition_is(object: &Value, kind: &str, status: &str) -> bool {
    condition(object, kind).is_some_and(|c| c["status"] == status)
}

pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)?
        .iter()
        .find(|c| c["type"] == kind)
}

/// The operator as a process; killed when dropped.
pub struct Operator {
    pub child: tokio::process::Child,
    pub log: PathBuf,
}

impl Operator {
    /// SIGKILL, no goodbye: the crash case of the resume scenarios.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Whether it is still running; a dead operator's log is the first thing to read.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> =
                log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            panic!("the operator exited ({status}); last log lines:\n{}", tail.join("\n"));
        }
    }
}

/// A multiplexed Redis connection with timeouts for a loaded CI machine: the crate's default
/// 500 ms response timeout is too short for big pipelines to a debug build on 2 shared cores.
pub async fn redis_connection(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(10)))
        .set_response_timeout(Some(Duration::from_secs(60)));
    redis::Client::open(url)?.get_multiplexed_async_connection_with_config(&config).await
}

/// Which pod a key lives on: the client-side sharding the scenarios use (FNV-1a).
pub fn shard_of(key: &[u8], shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}
