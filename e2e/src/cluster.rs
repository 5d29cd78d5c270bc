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
    /// Third octet of the pod addresses 127.0.X.N; 0 reserves a free one ([`OctetLease`]).
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
            ip_octet: 0,
            state_dir: None,
        }
    }
}

/// A third octet for pod addresses, reserved machine-wide by a file
/// `<tmp>/mapcache-e2e-octets/<octet>` holding our pid (a file of a dead pid is taken over), so
/// clusters of parallel tests and of other processes on the machine never share addresses.
#[derive(Debug)]
pub struct OctetLease {
    pub octet: u8,
    path: Option<PathBuf>,
}

impl OctetLease {
    pub fn acquire() -> Self {
        static NEXT: AtomicU8 = AtomicU8::new(0);
        let start = (std::process::id() % 24) as u8 * 10 + NEXT.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join("mapcache-e2e-octets");
        if std::fs::create_dir_all(&dir).is_ok() {
            for step in 0..240u16 {
                let octet = 10 + ((u16::from(start) + step) % 240) as u8;
                let path = dir.join(octet.to_string());
                for _ in 0..2 {
                    match std::fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                        Ok(mut file) => {
                            let _ = std::io::Write::write_all(
                                &mut file,
                                std::process::id().to_string().as_bytes(),
                            );
                            return Self { octet, path: Some(path) };
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
        }
        // No reservation possible: fall back to the spread alone.
        Self { octet: 10 + start % 240, path: None }
    }
}

impl Drop for OctetLease {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
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
    /// The pods' third octet.
    pub ip_octet: u8,
    _temp: Option<tempfile::TempDir>,
    _octet_lease: Option<OctetLease>,
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
        let octet_lease = (config.ip_octet == 0).then(OctetLease::acquire);
        let ip_octet = octet_lease.as_ref().map_or(config.ip_octet, |lease| lease.octet);
        if config.kubelet {
            ensure_mapcache_bin(&config.mapcache_bin)?;
            let kubelet_config = KubeletConfig {
                mapcache_bin: config.mapcache_bin.clone(),
                root: state_dir.clone(),
                ip_octet,
                probe_period_cap: Duration::from_secs(1),
                max_backoff: Duration::from_secs(10),
            };
            tasks.push(kubelet::spawn(api.store.clone(), kubelet_config));
        }
        Ok(Self {
            api,
            state_dir,
            kubeconfig_path,
            ip_octet,
            _temp: temp,
            _octet_lease: octet_lease,
            tasks,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octet_leases_are_distinct_and_released_on_drop() {
        let first = OctetLease::acquire();
        let second = OctetLease::acquire();
        assert_ne!(first.octet, second.octet);
        assert!((10..250).contains(&first.octet) && (10..250).contains(&second.octet));
        let path = first.path.clone().expect("the temp dir is writable");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), std::process::id().to_string());
        drop(first);
        assert!(!path.exists(), "dropping the lease frees the octet");
    }
}
