//! A whole local cluster: the API-server stand-in, the controllers and (optionally) the process
//! kubelet, with a kubeconfig on disk for the operator binary and kubectl-like tools.

use crate::apiserver::store::Store;
use crate::apiserver::{ApiServer, ApiServerConfig};
use crate::controllers;
use crate::kubelet::{self, KubeletConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Settings of a local cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub api: ApiServerConfig,
    /// Run the process kubelet (pods become processes). Off: pods stay Pending.
    pub kubelet: bool,
    pub mapcache_bin: PathBuf,
    /// Third octet of the pod addresses 127.0.X.N.
    pub ip_octet: u8,
    /// State directory (PVCs, pod volumes, logs, kubeconfig); None: a fresh temporary one.
    pub state_dir: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            api: ApiServerConfig::default(),
            kubelet: true,
            mapcache_bin: kubelet::default_mapcache_bin(),
            ip_octet: next_ip_octet(),
            state_dir: None,
        }
    }
}

/// A third octet no other cluster of this process uses, spread by pid across processes.
pub fn next_ip_octet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    let base = (std::process::id() % 23) as u8 * 10;
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    10 + (base.wrapping_add(n) % 240)
}

/// Build `mapcache` (debug) unless the binary is there already.
pub fn ensure_mapcache_bin(bin: &Path) -> std::io::Result<()> {
    if bin.exists() {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "mapcache", "--bin", "mapcache"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()?;
    if !status.success() || !bin.exists() {
        return Err(std::io::Error::other(format!(
            "cargo build -p mapcache failed ({status}); {} is missing",
            bin.display()
        )));
    }
    Ok(())
}

/// A running local cluster; dropping it stops every part (and kills pod processes).
pub struct LocalCluster {
    pub api: ApiServer,
    pub state_dir: PathBuf,
    pub kubeconfig_path: PathBuf,
    _temp: Option<tempfile::TempDir>,
    tasks: Vec<JoinHandle<()>>,
}

impl LocalCluster {
    pub async fn start(config: ClusterConfig) -> std::io::Result<Self> {
        let (temp, state_dir) = match &config.state_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::Builder::new().prefix("mapcache-e2e-").tempdir()?;
                let dir = temp.path().to_path_buf();
                (Some(temp), dir)
            }
        };
        std::fs::create_dir_all(&state_dir)?;
        let api = ApiServer::start(config.api.clone()).await?;
        let kubeconfig_path = state_dir.join("kubeconfig");
        std::fs::write(&kubeconfig_path, api.kubeconfig())?;
        let mut tasks = vec![controllers::spawn(api.store.clone(), Duration::from_millis(100))];
        if config.kubelet {
            ensure_mapcache_bin(&config.mapcache_bin)?;
            let kubelet_config = KubeletConfig {
                mapcache_bin: config.mapcache_bin.clone(),
                root: state_dir.clone(),
                ip_octet: config.ip_octet,
                probe_period_cap: Duration::from_secs(1),
                max_backoff: Duration::from_secs(10),
            };
            tasks.push(kubelet::spawn(api.store.clone(), kubelet_config));
        }
        Ok(Self { api, state_dir, kubeconfig_path, _temp: temp, tasks })
    }

    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        self.api.client()
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.api.store
    }

    /// Where the kubelet writes each container's stdout/stderr.
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
