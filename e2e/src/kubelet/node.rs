//! The Node object and the heartbeats that keep it Ready: the kubelet creates (or updates) its
//! Node with labels, `spec.podCIDR(s)` and a full status, renews its Lease in `kube-node-lease`
//! every 10 s, and refreshes the conditions' `lastHeartbeatTime` every 20 s. The node-lifecycle
//! controller of kube-controller-manager marks a node NotReady and taints it when both go
//! stale (40 s by default); a fresh Ready=True status is what removes those taints, so the
//! kubelet never edits taints itself.

use super::{FIELD_MANAGER, KUBELET_VERSION, KubeletConfig};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::time::Duration;

/// Lease renewal period (the kubelet's default `nodeLeaseDurationSeconds` / 4).
const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The Lease's duration.
const LEASE_SECONDS: i32 = 40;
/// How often the Ready condition's heartbeat is refreshed (well inside the 40 s grace).
const STATUS_HEARTBEAT: Duration = Duration::from_secs(20);
/// The kubelet's default `maxPods`.
const MAX_PODS: &str = "110";

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{action} node {node}: {source}")]
    Api {
        action: &'static str,
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("node {node} has podCIDR {existing}, not {wanted}; delete the Node or use its CIDR")]
    CidrMismatch { node: String, existing: String, wanted: String },
}

/// Create the Node, or bring an existing one (a restarted kubelet's) up to date.
pub async fn register(client: &Client, config: &KubeletConfig) -> Result<(), NodeError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = &config.node_name;
    let api_error = |action| move |source| NodeError::Api { action, node: node.clone(), source };
    let cidr = config.pod_cidr.to_string();
    match nodes.get_opt(node).await.map_err(api_error("get"))? {
        None => {
            let object = Node {
                metadata: ObjectMeta {
                    name: Some(node.clone()),
                    labels: Some(labels(config)),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec {
                    pod_cidr: Some(cidr.clone()),
                    pod_cidrs: Some(vec![cidr]),
                    ..NodeSpec::default()
                }),
                status: Some(status(config)),
            };
            nodes.create(&PostParams::default(), &object).await.map_err(api_error("create"))?;
            tracing::info!(node, "node registered");
        }
        Some(existing) => {
            let existing_cidr = existing.spec.and_then(|s| s.pod_cidr).unwrap_or_default();
            if !existing_cidr.is_empty() && existing_cidr != cidr {
                return Err(NodeError::CidrMismatch {
                    node: node.clone(),
                    existing: existing_cidr,
                    wanted: cidr,
                });
            }
            let patch = serde_json::json!({
                "metadata": {"labels": labels(config)},
                "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
            });
            nodes
                .patch(node, &params(), &Patch::Merge(&patch))
                .await
                .map_err(api_error("update"))?;
            tracing::info!(node, "existing node taken over");
        }
    }
    write_status(&nodes, config).await.map_err(api_error("update status of"))?;
    Ok(())
}

fn params() -> PatchParams {
    PatchParams { field_manager: Some(FIELD_MANAGER.into()), ..PatchParams::default() }
}

fn labels(config: &KubeletConfig) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), config.node_name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), go_arch(std::env::consts::ARCH).to_string()),
    ])
}

async fn write_status(nodes: &Api<Node>, config: &KubeletConfig) -> Result<(), kube::Error> {
    // Strategic merge: conditions merge by type, so the transition times we keep stay put.
    let mut status = status(config);
    let existing = nodes.get_status(&config.node_name).await?;
    let previous = existing.status.and_then(|s| s.conditions).unwrap_or_default();
    for condition in status.conditions.iter_mut().flatten() {
        if let Some(old) = previous.iter().find(|c| c.type_ == condition.type_)
            && old.status == condition.status
        {
            condition.last_transition_time = old.last_transition_time.clone();
        }
    }
    let patch = serde_json::json!({"status": status});
    nodes.patch_status(&config.node_name, &params(), &Patch::Strategic(&patch)).await?;
    Ok(())
}

/// Renew the Lease and the status heartbeat until aborted.
pub async fn heartbeat(client: Client, config: KubeletConfig) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let mut last_status = tokio::time::Instant::now();
    loop {
        if let Err(error) = renew_lease(&leases, &config).await {
            tracing::warn!(%error, "cannot renew the node lease");
        }
        if last_status.elapsed() >= STATUS_HEARTBEAT {
            match write_status(&nodes, &config).await {
                Ok(()) => last_status = tokio::time::Instant::now(),
                Err(error) => tracing::warn!(%error, "cannot refresh the node status"),
            }
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

async fn renew_lease(leases: &Api<Lease>, config: &KubeletConfig) -> Result<(), kube::Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let spec = LeaseSpec {
        holder_identity: Some(config.node_name.clone()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(now),
        ..LeaseSpec::default()
    };
    match leases.get_opt(&config.node_name).await? {
        Some(mut lease) => {
            let mut merged = lease.spec.take().unwrap_or_default();
            merged.holder_identity = spec.holder_identity;
            merged.lease_duration_seconds = spec.lease_duration_seconds;
            merged.renew_time = spec.renew_time;
            lease.spec = Some(merged);
            leases.replace(&config.node_name, &PostParams::default(), &lease).await?;
        }
        None => {
            // Owned by the Node, as the kubelet's, so deleting the Node removes it.
            let nodes: Api<Node> = Api::all(leases.clone().into_client());
            let owner = nodes.get(&config.node_name).await?;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.node_name.clone()),
                    owner_references: Some(vec![
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                            api_version: "v1".into(),
                            kind: "Node".into(),
                            name: config.node_name.clone(),
                            uid: owner.metadata.uid.unwrap_or_default(),
                            ..Default::default()
                        },
                    ]),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// The full node status: conditions with a fresh heartbeat, capacity, addresses, nodeInfo.
fn status(config: &KubeletConfig) -> NodeStatus {
    let now = super::status::now();
    let condition = |kind: &str, status: &str, reason: &str, message: &str| NodeCondition {
        type_: kind.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    };
    let capacity = capacity(config);
    NodeStatus {
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            ),
            condition(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: config.host_ip() },
            NodeAddress { type_: "Hostname".into(), address: config.node_name.clone() },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: 10250 }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: go_arch(std::env::consts::ARCH).into(),
            operating_system: "linux".into(),
            os_image: "process-kubelet".into(),
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            machine_id: read_trimmed("/etc/machine-id"),
            system_uuid: read_trimmed("/etc/machine-id"),
            container_runtime_version: "process://0.1.0".into(),
            kubelet_version: KUBELET_VERSION.into(),
            kube_proxy_version: String::new(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// Go's name (`GOARCH`, what `kubernetes.io/arch` and `nodeInfo.architecture` hold) for Rust's
/// `std::env::consts::ARCH`; the same name where they agree.
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other, // arm, s390x, riscv64, mips64, ...
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// cpu (online CPUs), memory (MemTotal), pods, ephemeral-storage (the state directory's disk).
fn capacity(config: &KubeletConfig) -> BTreeMap<String, Quantity> {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let memory_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| mem_total_kib(&text))
        .unwrap_or(0);
    let mut capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{memory_kib}Ki"))),
        ("pods".to_string(), Quantity(MAX_PODS.into())),
    ]);
    if let Some(bytes) = disk_bytes(&config.root) {
        capacity.insert("ephemeral-storage".into(), Quantity(format!("{}Ki", bytes / 1024)));
    }
    capacity
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn disk_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a NUL-terminated string and stats points to writable memory of the
    // right type; statvfs fills it completely when it returns 0.
    let stats = unsafe {
        if libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    Some(stats.f_blocks * stats.f_frsize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architectures_get_go_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("s390x"), "s390x");
        let labels = labels(&KubeletConfig::for_test());
        #[cfg(target_arch = "x86_64")]
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        #[cfg(target_arch = "aarch64")]
        assert_eq!(labels["kubernetes.io/arch"], "arm64");
        assert_eq!(labels["kubernetes.io/os"], "linux");
    }

    #[test]
    fn mem_total_is_read_in_kib() {
        let meminfo = "MemTotal:       24567812 kB\nMemFree:        1234 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(24_567_812));
        assert_eq!(mem_total_kib("nothing"), None);
    }
}
