//! The process kubelet: runs every pod as local processes on its own loopback address.
//!
//! A container whose image contains `mapcache` runs as the real binary (`MAPCACHE_BIN`); any
//! other container (an app container next to the `engine` sidecar) is reported running and ready
//! without a process. Probes, restarts with backoff, graceful deletion with preStop hooks and
//! status reporting follow the real kubelet; see docs/e2e.md for the exact rules.
//! - `volumes`: host directories for volumes, and the arg/env path rewriting
//! - `pod`: one pod's worker (start, probe, restart, stop, status)

mod pod;
pub mod volumes;

use crate::apiserver::selector::{FieldSelector, LabelSelector};
use crate::apiserver::store::Store;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Settings of one kubelet.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// The `mapcache` binary every mapcache container runs.
    pub mapcache_bin: PathBuf,
    /// State directory: `pvc/`, `pods/`, `logs/`.
    pub root: PathBuf,
    /// Pods get 127.0.<octet>.N, N from 10 up; distinct octets keep parallel clusters apart.
    pub ip_octet: u8,
    /// Probes run at `min(periodSeconds, probe_period_cap)` to keep tests quick.
    pub probe_period_cap: Duration,
    /// Crash-restart backoff doubles from 1 s up to this.
    pub max_backoff: Duration,
}

/// Loopback addresses handed to pods.
#[derive(Debug)]
pub struct IpPool {
    octet: u8,
    used: Mutex<BTreeSet<u8>>,
}

impl IpPool {
    pub fn new(octet: u8) -> Self {
        Self { octet, used: Mutex::new(BTreeSet::new()) }
    }

    pub fn allocate(&self) -> Option<String> {
        let mut used = self.used.lock().unwrap_or_else(|p| p.into_inner());
        let host = (10..=250u8).find(|n| !used.contains(n))?;
        used.insert(host);
        Some(format!("127.0.{}.{host}", self.octet))
    }

    pub fn release(&self, ip: &str) {
        if let Some(host) = ip.rsplit('.').next().and_then(|h| h.parse::<u8>().ok()) {
            self.used.lock().unwrap_or_else(|p| p.into_inner()).remove(&host);
        }
    }
}

/// The `mapcache` binary: `MAPCACHE_BIN`, else `<target dir>/debug/mapcache`.
pub fn default_mapcache_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MAPCACHE_BIN") {
        return PathBuf::from(bin);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("target"));
    target.join("debug").join("mapcache")
}

/// Start the kubelet: pods are deleted gracefully from now on, and every pod gets a worker.
pub fn spawn(store: Arc<Store>, config: KubeletConfig) -> JoinHandle<()> {
    store.set_graceful_pod_deletion(true);
    let pool = Arc::new(IpPool::new(config.ip_octet));
    tokio::spawn(async move {
        let mut workers: HashMap<String, AbortOnDrop> = HashMap::new();
        let mut changes = store.subscribe();
        let Some(pods_info) = store.resource_by_key("", "pods") else { return };
        loop {
            let (pods, _) =
                store.list(&pods_info, None, &LabelSelector::default(), &FieldSelector::default());
            let mut live = BTreeSet::new();
            for pod in pods {
                let Some(uid) =
                    pod.pointer("/metadata/uid").and_then(Value::as_str).map(str::to_string)
                else {
                    continue;
                };
                live.insert(uid.clone());
                if workers.contains_key(&uid) {
                    continue;
                }
                let worker = pod::PodWorker::new(store.clone(), config.clone(), pool.clone(), &pod);
                workers.insert(uid, AbortOnDrop(tokio::spawn(worker.run())));
            }
            workers.retain(|uid, worker| live.contains(uid) || !worker.0.is_finished());
            let _ = tokio::time::timeout(Duration::from_millis(500), changes.recv()).await;
            while changes.try_recv().is_ok() {}
        }
    })
}

/// A pod worker task, aborted when the kubelet stops: its processes are killed on drop.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
