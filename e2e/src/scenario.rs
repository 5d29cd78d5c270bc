//! Building blocks of the e2e scenarios (tests/scenarios.rs and the issue-6 scenarios): a fresh
//! environment per test (a local cluster, or a namespace of a real cluster with
//! `E2E_KUBECONFIG`), the CRD, the operator as a real process, YAML apply, waits that explain
//! themselves on timeout, and Redis access to the cache pods.

use crate::cluster::{ClusterConfig, LocalCluster, ensure_mapcache_bin};
use crate::kubelet::default_mapcache_bin;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use serde_json::Value;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Field manager of everything the scenarios apply.
pub const MANAGER: &str = "mapcache-e2e";

/// Where a scenario runs.
pub struct Env {
    pub client: kube::Client,
    pub namespace: String,
    pub kubeconfig: PathBuf,
    pub mapcache_bin: PathBuf,
    /// Operator logs and other scenario files.
    pub work_dir: PathBuf,
    /// The local cluster (None against a real cluster).
    pub cluster: Option<LocalCluster>,
    _temp: Option<tempfile::TempDir>,
}

/// The `mapcache.io/v1alpha1` MapCache resource, for `Api<DynamicObject>`.
pub fn mapcache_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("mapcache.io", "v1alpha1", "MapCache"),
        "mapcaches",
    )
}

impl Env {
    /// A local cluster with the process kubelet; or, with `E2E_KUBECONFIG=<file>`, a fresh
    /// namespace of that cluster (pods then run on its nodes, not here).
    pub async fn start() -> Self {
        let mapcache_bin = default_mapcache_bin();
        ensure_mapcache_bin(&mapcache_bin).expect("the mapcache binary builds");
        if let Some(path) = std::env::var_os("E2E_KUBECONFIG") {
            static SEQ: AtomicU32 = AtomicU32::new(0);
            let kubeconfig = PathBuf::from(path);
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(&kubeconfig)
                    .expect("E2E_KUBECONFIG is a readable kubeconfig"),
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .expect("E2E_KUBECONFIG is usable");
            let client = kube::Client::try_from(config).expect("client for E2E_KUBECONFIG");
            let namespace = format!(
                "mapcache-e2e-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::SeqCst)
            );
            let ns: Namespace =
                serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                    .expect("namespace");
            Api::<Namespace>::all(client.clone())
                .patch(&namespace, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&ns))
                .await
                .expect("create the test namespace");
            let temp =
                tempfile::Builder::new().prefix("mapcache-e2e-").tempdir().expect("temp dir");
            let work_dir = temp.path().to_path_buf();
            return Self {
                client,
                namespace,
                kubeconfig,
                mapcache_bin,
                work_dir,
                cluster: None,
                _temp: Some(temp),
            };
        }
        // E2E_KEEP: a state directory that outlives the test, for reading logs afterwards.
        let state_dir = std::env::var_os("E2E_KEEP").map(|_| {
            let dir = tempfile::Builder::new()
                .prefix("mapcache-e2e-")
                .tempdir()
                .expect("temp dir")
                .keep();
            eprintln!("E2E_KEEP: cluster state, operator and pod logs kept in {}", dir.display());
            dir
        });
        let cluster = LocalCluster::start(ClusterConfig {
            mapcache_bin: mapcache_bin.clone(),
            state_dir,
            ..ClusterConfig::default()
        })
        .await
        .expect("start the local cluster");
        let client = cluster.client().expect("client for the local cluster");
        Self {
            client,
            namespace: "default".into(),
            kubeconfig: cluster.kubeconfig_path.clone(),
            mapcache_bin,
            work_dir: cluster.state_dir.clone(),
            cluster: Some(cluster),
            _temp: None,
        }
    }

    pub fn is_local(&self) -> bool {
        self.cluster.is_some()
    }

    pub fn mapcaches(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &mapcache_resource())
    }

    /// `mapcache crd`, applied, then wait until Established.
    pub async fn install_crd(&self) {
        let output = std::process::Command::new(&self.mapcache_bin)
            .arg("crd")
            .output()
            .expect("run mapcache crd");
        assert!(
            output.status.success(),
            "mapcache crd failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.apply_yaml(&String::from_utf8_lossy(&output.stdout)).await;
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

    /// Start `mapcache operator` with this environment's kubeconfig.
    pub fn start_operator(&self, name: &str) -> Operator {
        let log = self.work_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("operator log file");
        let mut command = tokio::process::Command::new(&self.mapcache_bin);
        command
            .args(["operator", "--metrics-addr=127.0.0.1:0", "--leader-election=true"])
            .arg(format!("--leader-election-namespace={}", self.namespace))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("POD_NAME", name)
            .env("RUST_LOG", std::env::var("E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .kill_on_drop(true);
        if !self.is_local() {
            command.arg(format!("--namespace={}", self.namespace));
        }
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
            "work dir (operator logs, pod logs under logs/): {}\n",
            self.work_dir.display()
        );
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
        if self.cluster.is_none() && std::env::var_os("E2E_KEEP").is_none() {
            // A real cluster: delete the test's namespace (and so everything in it). Drop cannot
            // await, so a short-lived thread with its own runtime does it.
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
