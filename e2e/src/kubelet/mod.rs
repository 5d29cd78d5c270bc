//! The process kubelet: a Node of the real control plane whose pods run as local processes, each
//! pod in a network namespace of its own, plus a directory-backed PV provisioner.
//!
//! It does what a kubelet does, through the Kubernetes API only: registers the Node and renews
//! its Lease, watches the pods bound to it (the real kube-scheduler binds them), and for each pod
//! runs a worker that builds the pod's network, materializes its volumes as directories, starts
//! its containers as processes inside the pod's netns, probes them, restarts crashes with the
//! kubelet's backoff, writes `pods/status`, and on deletion runs preStop hooks, SIGTERM and the
//! grace period, makes sure nothing of the pod still runs, and only then deletes the object with
//! a UID precondition. What it keeps on disk lets a kubelet restarted after SIGKILL adopt the
//! processes that are still running. docs/e2e.md says how to run it and what it does not do.
//!
//! # Layout
//! - `network`: the node's bridge, the pod CIDR, IP allocation, per-pod netns and veth, and the
//!   processes in a netns
//! - `state`: `<root>/pods/<uid>/state.json`, what a restarted kubelet needs to re-adopt a pod
//! - `process`: a container (or probe, or hook) as a process in the pod's netns, with its uid/gid
//! - `env`: container env (fieldRef, Secret and ConfigMap keys) and `$(VAR)` expansion
//! - `volumes`: volumes as host directories, and where a container's paths are on the host
//! - `probe`: startup, readiness and liveness probes and lifecycle handlers
//! - `restart`: the crash-restart backoff
//! - `container`: a container spec as a process (image mapping, user), its status entry
//! - `status`: pod phase, conditions and QoS class, as the kubelet computes them
//! - `pod`: one pod's worker
//! - `node`: Node registration, status heartbeat and Lease
//! - `provisioner`: the `local-dir` StorageClass and its PVs

mod container;
mod env;
mod network;
mod node;
mod pod;
mod probe;
mod process;
pub mod provisioner;
mod restart;
mod state;
mod status;
pub mod volumes;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::runtime::watcher::Event;
use kube::{Api, Client};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
#[cfg(test)]
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use network::PodCidr;

/// The field manager of every write (status patches, Node, Lease, PVs).
pub const FIELD_MANAGER: &str = "process-kubelet";

/// The Kubernetes version this kubelet reports (the control plane's).
pub const KUBELET_VERSION: &str = "v1.37.2";

/// Settings of one kubelet, from its flags.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// The Node name; pods with `spec.nodeName` equal to it are ours.
    pub node_name: String,
    /// State directory: `pods/<uid>/` (state and volumes), `logs/`, `pv/`.
    pub root: PathBuf,
    /// The node's private /24; the bridge has its `.1`, pods get `.10` upward.
    pub pod_cidr: PodCidr,
    /// Name of the node's bridge (created when absent).
    pub bridge: String,
    /// The program of every container whose image contains `mapcache`.
    pub mapcache_bin: PathBuf,
    /// The program of every other container (the `sidecar-app` stand-in).
    pub app_bin: PathBuf,
    /// First crash-restart delay after the immediate first restart (kubelet: 10 s).
    pub restart_backoff_initial: Duration,
    /// Cap of the crash-restart delay (kubelet: 300 s).
    pub restart_backoff_max: Duration,
    /// Run the PV provisioner in this process (one per cluster is enough).
    pub provisioner: bool,
}

impl KubeletConfig {
    pub fn pods_dir(&self) -> PathBuf {
        self.root.join("pods")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// The node's address (InternalIP, pods' hostIP): the bridge's `.1`.
    pub fn host_ip(&self) -> String {
        self.pod_cidr.gateway().to_string()
    }

    /// Settings for unit tests: root `/r`, network `10.77.3.0/24`, the kubelet's backoff.
    #[cfg(test)]
    pub(crate) fn for_test() -> Self {
        Self {
            node_name: "n".into(),
            root: "/r".into(),
            pod_cidr: PodCidr::from_str("10.77.3.0/24").expect("cidr"),
            bridge: "br".into(),
            mapcache_bin: "/bin/mapcache-dev".into(),
            app_bin: "/bin/sidecar-app".into(),
            restart_backoff_initial: Duration::from_secs(10),
            restart_backoff_max: Duration::from_secs(300),
            provisioner: false,
        }
    }
}

/// Errors that stop the kubelet before it runs pods.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state directory {path}: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node network: {0}")]
    Network(#[from] network::NetworkError),
    #[error("node registration: {0}")]
    Node(#[from] node::NodeError),
}

/// What every pod worker shares.
pub(crate) struct Context {
    /// The API client (the admin identity).
    pub client: Client,
    /// The kubelet's settings.
    pub config: KubeletConfig,
    /// The node's pod IPs.
    pub ips: network::IpAllocator,
}

/// A pod's worker: it gets every new version of the pod (None: gone from the API).
struct Worker {
    /// Where new versions of the pod go.
    pod: watch::Sender<Option<Arc<Pod>>>,
    /// The worker; finished once the pod is deleted and cleaned up.
    task: JoinHandle<()>,
}

/// Run the kubelet until `shutdown` turns true; then stop every container and remove every
/// pod network of this node (the node is shut down) and return.
pub async fn run(
    client: Client,
    config: KubeletConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    prepare_root(&config)?;
    network::ensure_bridge(&config.bridge, &config.pod_cidr).await?;
    let ips = network::IpAllocator::new(config.pod_cidr);
    // Every IP recorded by a pod on disk stays held until that pod is gone.
    let on_disk = state::PodState::load_all(&config.pods_dir());
    for pod in &on_disk {
        if let Some(ip) = pod.pod_ip {
            ips.claim(ip);
        }
    }
    register_with_retries(&client, &config).await?;
    let ctx = Arc::new(Context { client: client.clone(), config: config.clone(), ips });
    let heartbeat = AbortOnDrop(tokio::spawn(node::heartbeat(client.clone(), config.clone())));
    let _provisioner = config
        .provisioner
        .then(|| AbortOnDrop(tokio::spawn(provisioner::run(client.clone(), config.clone()))));

    let (node_shutdown_tx, node_shutdown) = watch::channel(false);
    let mut workers: HashMap<String, Worker> = HashMap::new();
    // Pods whose worker finished (deleted, or gone): later events about them change nothing.
    let mut finished: BTreeSet<String> = BTreeSet::new();
    let mut orphans_swept = false;
    // Orphan cleanups run beside the watch (a stop takes its grace period); aborted at the
    // end, they are redone by the next kubelet from the state files that stay.
    let mut cleanups: Vec<AbortOnDrop> = Vec::new();
    let mut listed: BTreeSet<String> = BTreeSet::new();
    let pods: Api<Pod> = Api::all(client.clone());
    let selector = format!("spec.nodeName={}", config.node_name);
    let mut events = watcher(pods, watcher::Config::default().fields(&selector)).boxed();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        workers.retain(|uid, worker| {
            let done = worker.task.is_finished();
            if done {
                finished.insert(uid.clone());
            }
            !done
        });
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(error)) => {
                tracing::warn!(%error, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            None => break,
        };
        match event {
            Event::Init => listed.clear(),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let Some(uid) = pod.metadata.uid.clone() else { continue };
                listed.insert(uid.clone());
                if finished.contains(&uid) {
                    continue;
                }
                let pod = Arc::new(pod);
                match workers.get(&uid) {
                    Some(worker) => {
                        worker.pod.send_replace(Some(pod));
                    }
                    None => {
                        let (tx, rx) = watch::channel(Some(pod));
                        let worker =
                            pod::PodWorker::new(ctx.clone(), &uid, rx, node_shutdown.clone());
                        workers.insert(uid, Worker { pod: tx, task: tokio::spawn(worker.run()) });
                    }
                }
            }
            Event::Delete(pod) => {
                if let Some(worker) = pod.metadata.uid.as_ref().and_then(|uid| workers.get(uid)) {
                    worker.pod.send_replace(None);
                }
            }
            Event::InitDone => {
                for (uid, worker) in &workers {
                    if !listed.contains(uid) {
                        worker.pod.send_replace(None);
                    }
                }
                if !orphans_swept {
                    orphans_swept = true;
                    for orphan in on_disk.iter().filter(|p| !listed.contains(&p.uid)) {
                        finished.insert(orphan.uid.clone());
                        let cleanup = pod::clean_orphan(ctx.clone(), orphan.clone());
                        cleanups.push(AbortOnDrop(tokio::spawn(cleanup)));
                    }
                }
            }
        }
    }
    tracing::info!(pods = workers.len(), "shutting down: stopping every container");
    node_shutdown_tx.send_replace(true);
    for (_, worker) in workers {
        if let Err(error) = worker.task.await {
            tracing::warn!(%error, "pod worker panicked during shutdown");
        }
    }
    drop(cleanups);
    drop(heartbeat);
    Ok(())
}

/// Register the Node, retrying for a minute while the API server is not reachable yet (the
/// harness may start the kubelet as the control plane comes up). A CIDR conflict is final.
async fn register_with_retries(client: &Client, config: &KubeletConfig) -> Result<(), Error> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match node::register(client, config).await {
            Ok(()) => return Ok(()),
            Err(error @ node::NodeError::Api { .. }) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(%error, "node registration failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// The state directory and its layout; containers running as other users must reach their
/// volume directories, so every directory on the way is world-traversable.
fn prepare_root(config: &KubeletConfig) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    for dir in [config.root.clone(), config.pods_dir(), config.logs_dir(), config.root.join("pv")] {
        std::fs::create_dir_all(&dir)
            .map_err(|source| Error::Root { path: dir.clone(), source })?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
            .map_err(|source| Error::Root { path: dir.clone(), source })?;
    }
    let mut ancestor: Option<&Path> = config.root.parent();
    while let Some(dir) = ancestor {
        if let Ok(meta) = std::fs::metadata(dir)
            && meta.permissions().mode() & 0o001 == 0
        {
            tracing::warn!(
                dir = %dir.display(),
                "not traversable by other users: containers with runAsUser cannot reach their volumes"
            );
        }
        ancestor = dir.parent();
    }
    Ok(())
}

/// A background task that stops with its owner.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
