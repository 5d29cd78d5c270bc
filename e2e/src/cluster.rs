//! A whole local cluster: the real control plane, one Node run by the process kubelet (pods in
//! network namespaces on a bridge of their own), and the kubelet's directory-backed PV
//! provisioner. `local-cluster` runs one by hand; the scenarios of a test binary share one
//! ([`shared`]), each in a namespace of its own, as they would on any cluster.

use crate::binaries;
use crate::controlplane::ControlPlane;
use crate::controlplane::process::ChildProcess;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Settings of a local cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Run the process kubelet (pods become processes). Off: pods stay Pending.
    pub kubelet: bool,
    /// The binary mapcache containers run.
    pub mapcache_bin: PathBuf,
    /// State directory (PKI, etcd, logs, PV directories, pods); None: a fresh temporary one.
    pub state_dir: Option<PathBuf>,
    /// Start from what `state_dir` holds (etcd's objects, the PV directories with the caches'
    /// snapshots) instead of emptying it.
    pub keep_state: bool,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            kubelet: true,
            mapcache_bin: binaries::mapcache(),
            state_dir: None,
            keep_state: false,
        }
    }
}

/// Makes `dir` the state directory of a new cluster: emptied first unless `keep`. A directory
/// that cannot be emptied is an error naming it: the previous run's etcd and PV directories
/// left behind (the wipe's error was ignored) brought its caches back, keys and all, into a
/// cluster that was meant to be fresh.
pub fn prepare_state_dir(dir: &Path, keep: bool) -> Result<(), String> {
    if !keep {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(format!(
                    "cannot empty the state directory {} for a fresh cluster: {error} (is a \
                     cluster still running on it? --keep-state starts from it instead)",
                    dir.display()
                ));
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))
}

/// The node's name: one node per cluster.
pub const NODE_NAME: &str = "e2e-node";

/// A pod network of our own, reserved machine-wide: index `i` gives the bridge `mcbr<i>` and
/// the pods' /24 `10.244.<i>.0/24`, which exists only inside this machine (the bridge has no
/// uplink). The reservation is a file `<tmp>/mapcache-e2e-networks/<i>` holding our pid; the
/// file of a dead pid is taken over, after removing what that run left (bridge, namespaces,
/// processes in them).
#[derive(Debug)]
pub struct NetworkLease {
    pub index: u8,
    path: PathBuf,
}

impl NetworkLease {
    pub fn acquire() -> Result<Self, String> {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let start = (std::process::id() % 24) as u8 * 10 + NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join("mapcache-e2e-networks");
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        for step in 0..240u16 {
            let index = 10 + ((u16::from(start) + step) % 240) as u8;
            let path = dir.join(index.to_string());
            for _ in 0..2 {
                match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut file) => {
                        std::io::Write::write_all(
                            &mut file,
                            std::process::id().to_string().as_bytes(),
                        )
                        .map_err(|e| format!("write {}: {e}", path.display()))?;
                        let lease = Self { index, path };
                        remove_network_leftovers(&lease.bridge());
                        return Ok(lease);
                    }
                    Err(_) => {
                        let owner = std::fs::read_to_string(&path).unwrap_or_default();
                        let alive = !owner.trim().is_empty()
                            && Path::new("/proc").join(owner.trim()).exists();
                        if alive {
                            break;
                        }
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        Err(format!("all 240 pod networks in {} are taken", dir.display()))
    }

    pub fn bridge(&self) -> String {
        format!("mcbr{}", self.index)
    }

    pub fn pod_cidr(&self) -> String {
        format!("10.244.{}.0/24", self.index)
    }
}

impl Drop for NetworkLease {
    fn drop(&mut self) {
        remove_network_leftovers(&self.bridge());
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Kill the processes in, and delete, every network namespace named `<bridge>-*`, then the
/// bridge (which takes the host ends of the veths with it). A clean kubelet stop leaves nothing;
/// this is for runs that were killed.
fn remove_network_leftovers(bridge: &str) {
    let ip = |args: &[&str]| std::process::Command::new("ip").args(args).output();
    if let Ok(output) = ip(&["netns", "list"]) {
        let prefix = format!("{bridge}-");
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let Some(name) = line.split_whitespace().next().filter(|n| n.starts_with(&prefix))
            else {
                continue;
            };
            if let Ok(pids) = ip(&["netns", "pids", name]) {
                for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<libc::pid_t>() {
                        // SAFETY: kill(2) with a pid read from the namespace a run of ours made;
                        // at worst the process is gone already and this fails with ESRCH.
                        unsafe {
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
            }
            let _ = ip(&["netns", "delete", name]);
        }
    }
    let _ = ip(&["link", "delete", bridge]);
}

/// A running local cluster; dropping it stops the kubelet (which stops its pods), then the
/// control plane, then removes the pod network.
pub struct LocalCluster {
    pub control_plane: ControlPlane,
    pub state_dir: PathBuf,
    /// The process kubelet's root: `logs/<ns>_<pod>_<container>.log`, `pods/`, `pv/`.
    pub kubelet_root: PathBuf,
    kubelet_args: Vec<String>,
    kubelet: Option<ChildProcess>,
    // Dropped after the kubelet and the control plane, in this order.
    network: NetworkLease,
    _temp: Option<tempfile::TempDir>,
}

impl LocalCluster {
    pub async fn start(config: ClusterConfig) -> Result<Self, String> {
        let (temp, state_dir) = match &config.state_dir {
            Some(dir) => {
                // A fresh state unless the caller keeps it: an old etcd would hold old objects.
                prepare_state_dir(dir, config.keep_state)?;
                (None, dir.clone())
            }
            None => {
                let temp = tempfile::Builder::new()
                    .prefix("mapcache-e2e-")
                    .tempdir()
                    .map_err(|e| format!("temp dir: {e}"))?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| format!("create {}: {e}", state_dir.display()))?;
        let bin_dir = binaries::k8s_bin_dir()?;
        let network = NetworkLease::acquire()?;
        let control_plane = ControlPlane::start(&state_dir.join("control-plane"), &bin_dir)
            .await
            .map_err(|e| e.to_string())?;
        let kubelet_root = state_dir.join("kubelet");
        let kubelet_args = vec![
            format!("--kubeconfig={}", control_plane.admin_kubeconfig.display()),
            format!("--node-name={NODE_NAME}"),
            format!("--root={}", kubelet_root.display()),
            format!("--pod-cidr={}", network.pod_cidr()),
            format!("--bridge={}", network.bridge()),
            format!("--mapcache-bin={}", config.mapcache_bin.display()),
            format!("--app-bin={}", binaries::own_binary("sidecar-app").display()),
        ];
        let mut cluster = Self {
            control_plane,
            state_dir,
            kubelet_root,
            kubelet_args,
            kubelet: None,
            network,
            _temp: temp,
        };
        if config.kubelet {
            binaries::ensure_mapcache(&config.mapcache_bin).map_err(|e| e.to_string())?;
            cluster.start_kubelet()?;
            cluster.wait_for_node().await?;
        }
        Ok(cluster)
    }

    /// The admin (cluster-admin) kubeconfig.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.control_plane.admin_kubeconfig
    }

    pub async fn client(&self) -> Result<kube::Client, kube::Error> {
        self.control_plane.client().await
    }

    /// Where each container's stdout/stderr goes.
    pub fn logs_dir(&self) -> PathBuf {
        self.kubelet_root.join("logs")
    }

    pub fn pod_cidr(&self) -> String {
        self.network.pod_cidr()
    }

    /// Start the process kubelet (again, after [`Self::kill_kubelet`]).
    pub fn start_kubelet(&mut self) -> Result<(), String> {
        std::fs::create_dir_all(&self.kubelet_root)
            .map_err(|e| format!("create {}: {e}", self.kubelet_root.display()))?;
        let log = self.state_dir.join("control-plane/logs/process-kubelet.log");
        // SIGTERM when the harness dies: the kubelet then stops its pods and their namespaces.
        let process = ChildProcess::start(
            "process-kubelet",
            &binaries::own_binary("process-kubelet"),
            &self.kubelet_args,
            log,
            libc::SIGTERM,
        )
        .map_err(|e| e.to_string())?
        .with_stop_grace(Duration::from_secs(30));
        self.kubelet = Some(process);
        Ok(())
    }

    /// SIGKILL the kubelet, as a node agent crash: its pods' processes keep running.
    pub fn kill_kubelet(&mut self) {
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.signal(libc::SIGKILL);
            kubelet.stop();
        }
    }

    /// The kubelet's pid, while it runs.
    pub fn kubelet_pid(&self) -> Option<u32> {
        self.kubelet.as_ref().and_then(ChildProcess::pid)
    }

    /// The node is registered and Ready, and the provisioner's default StorageClass exists.
    async fn wait_for_node(&mut self) -> Result<(), String> {
        let client = self.client().await.map_err(|e| e.to_string())?;
        let nodes: Api<Node> = Api::all(client.clone());
        let classes: Api<StorageClass> = Api::all(client);
        let start = Instant::now();
        loop {
            if let Some(kubelet) = self.kubelet.as_mut()
                && let Some(status) = kubelet.exited()
            {
                return Err(format!(
                    "process-kubelet exited ({status}); its log ends:\n{}",
                    kubelet.log_tail(30)
                ));
            }
            let ready = nodes.get_opt(NODE_NAME).await.ok().flatten().is_some_and(|node| {
                node.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            let class = classes.list(&Default::default()).await.is_ok_and(|list| {
                list.items.iter().any(|class| {
                    class.metadata.annotations.as_ref().is_some_and(|a| {
                        a.get("storageclass.kubernetes.io/is-default-class").map(String::as_str)
                            == Some("true")
                    })
                })
            });
            if ready && class {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(120) {
                return Err(format!(
                    "node {NODE_NAME} not Ready (or no default StorageClass) after 120 s:\n{}",
                    self.diagnostics(20)
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The end of every component's log and the kubelet's.
    pub fn diagnostics(&self, lines: usize) -> String {
        let mut out = self.control_plane.logs(lines);
        if let Some(kubelet) = &self.kubelet {
            out.push_str(&format!(
                "--- process-kubelet ({})\n{}\n",
                kubelet.log.display(),
                kubelet.log_tail(lines)
            ));
        }
        out.push_str(&format!("container logs: {}\n", self.logs_dir().display()));
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.stop();
        }
    }
}

/// What the scenarios of a test binary need of the cluster they share.
#[derive(Clone, Debug)]
pub struct SharedCluster {
    pub kubeconfig: PathBuf,
    pub state_dir: PathBuf,
    pub logs_dir: PathBuf,
    /// The pods' network, e.g. `10.244.17.0/24`.
    pub pod_cidr: String,
}

static SHARED: OnceLock<Mutex<Option<LocalCluster>>> = OnceLock::new();

/// The cluster the scenarios of this test binary share, started on first use (on a thread of
/// its own, so it belongs to no test's runtime) and stopped when the process exits. With
/// `E2E_KEEP` its state directory survives for reading logs afterwards.
pub fn shared() -> Result<SharedCluster, String> {
    static INFO: OnceLock<Result<SharedCluster, String>> = OnceLock::new();
    INFO.get_or_init(|| {
        let started = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("runtime: {e}"))?;
            let state_dir = std::env::var_os("E2E_KEEP").map(|_| {
                let dir =
                    std::env::temp_dir().join(format!("mapcache-e2e-kept-{}", std::process::id()));
                eprintln!("E2E_KEEP: cluster state and every log kept in {}", dir.display());
                dir
            });
            runtime.block_on(LocalCluster::start(ClusterConfig { state_dir, ..Default::default() }))
        })
        .join()
        .map_err(|_| "starting the shared cluster panicked".to_string())??;
        let info = SharedCluster {
            kubeconfig: started.kubeconfig_path().to_path_buf(),
            state_dir: started.state_dir.clone(),
            logs_dir: started.logs_dir(),
            pod_cidr: started.pod_cidr(),
        };
        let _ = SHARED.set(Mutex::new(Some(started)));
        // SAFETY: registering a plain `extern "C" fn` with atexit(3); it runs once at exit.
        unsafe {
            libc::atexit(stop_shared);
        }
        Ok(info)
    })
    .clone()
}

/// Run `f` on the shared cluster (started first if need be): for the scenarios that kill and
/// restart one of its parts, which must be the only scenario of their test binary.
pub fn with_shared<R>(f: impl FnOnce(&mut LocalCluster) -> R) -> Result<R, String> {
    shared()?;
    let cluster = SHARED.get().ok_or("the shared cluster is gone")?;
    let mut guard = cluster.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cluster = guard.as_mut().ok_or("the shared cluster is stopped")?;
    Ok(f(cluster))
}

/// The end of every component's log of the shared cluster, for a failing scenario.
pub fn shared_diagnostics(lines: usize) -> String {
    SHARED
        .get()
        .and_then(|cluster| {
            cluster.try_lock().ok().map(|c| c.as_ref().map(|c| c.diagnostics(lines)))
        })
        .flatten()
        .unwrap_or_default()
}

extern "C" fn stop_shared() {
    if let Some(cluster) = SHARED.get() {
        let taken = cluster.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        drop(taken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state directory as a run leaves it: etcd's data and a cache's snapshot on its PV.
    fn previous_run(state: &Path) -> [PathBuf; 2] {
        let etcd = state.join("control-plane/etcd/member/snap/db");
        let snapshot = state.join("kubelet/pv/pvc-1/snapshot-000007.mcs");
        for file in [&etcd, &snapshot] {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, b"the previous run's keys").unwrap();
        }
        [etcd, snapshot]
    }

    #[test]
    fn a_new_cluster_starts_from_an_empty_state_directory() {
        let temp = tempfile::tempdir().unwrap();
        let state = temp.path().join("local-cluster");
        let left = previous_run(&state);
        prepare_state_dir(&state, false).unwrap();
        assert!(left.iter().all(|file| !file.exists()), "nothing of the previous run is left");
        assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
        prepare_state_dir(&temp.path().join("never-used"), false).unwrap();
        assert!(temp.path().join("never-used").is_dir());
    }

    #[test]
    fn keep_state_starts_from_the_previous_run() {
        let temp = tempfile::tempdir().unwrap();
        let state = temp.path().join("local-cluster");
        let left = previous_run(&state);
        prepare_state_dir(&state, true).unwrap();
        assert!(left.iter().all(|file| file.exists()));
    }

    #[test]
    fn a_state_directory_that_cannot_be_emptied_is_an_error_naming_it() {
        let temp = tempfile::tempdir().unwrap();
        let not_a_directory = temp.path().join("state");
        std::fs::write(&not_a_directory, b"").unwrap();
        let error = prepare_state_dir(&not_a_directory, false).unwrap_err();
        assert!(error.starts_with("cannot empty the state directory"), "{error}");
        assert!(error.contains(&not_a_directory.display().to_string()), "{error}");
    }

    #[test]
    fn network_leases_are_distinct_and_released_on_drop() {
        let first = NetworkLease::acquire().unwrap();
        let second = NetworkLease::acquire().unwrap();
        assert_ne!(first.index, second.index);
        assert_ne!(first.bridge(), second.bridge());
        assert_eq!(first.pod_cidr(), format!("10.244.{}.0/24", first.index));
        assert_eq!(std::fs::read_to_string(&first.path).unwrap(), std::process::id().to_string());
        let path = first.path.clone();
        drop(first);
        assert!(!path.exists(), "dropping the lease frees the network");
    }
}
