//! Pod networking on one machine: a bridge per node holding the `.1` of the node's private /24,
//! and per pod a network namespace with one veth whose host side is on the bridge and whose pod
//! side is `eth0` with the pod IP and a default route via the bridge. Every pod can bind the same
//! ports, `127.0.0.1` inside a pod is shared by its containers, and the host reaches every pod
//! through the bridge; nothing is forwarded or NATed, traffic never leaves the machine.
//!
//! Everything goes through iproute2 (`ip`), and every step is idempotent, so a kubelet restarted
//! after SIGKILL can repair a half-built pod network without disturbing the processes inside.
//!
//! `ip netns del` removes a namespace's name only: a process still inside keeps `eth0` and the
//! pod IP. [`kill_netns_processes`] finds such processes (as `ip netns pids` does) and kills
//! them; a pod's network and IP are released only after it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Mutex;

/// The first host number handed to a pod; .1 is the bridge, .2-.9 stay free for the harness.
const FIRST_POD_HOST: u8 = 10;
/// The last usable host number of a /24 (.255 is the broadcast address).
const LAST_POD_HOST: u8 = 254;

/// A node's pod network, `a.b.c.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodCidr {
    /// The first three octets.
    prefix: [u8; 3],
}

impl PodCidr {
    /// The network address, `a.b.c.0`.
    pub fn network(&self) -> Ipv4Addr {
        self.host(0)
    }

    /// The bridge's address and every pod's default gateway, `a.b.c.1`.
    pub fn gateway(&self) -> Ipv4Addr {
        self.host(1)
    }

    fn host(&self, n: u8) -> Ipv4Addr {
        let [a, b, c] = self.prefix;
        Ipv4Addr::new(a, b, c, n)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.octets()[..3] == self.prefix
    }
}

impl std::fmt::Display for PodCidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/24", self.network())
    }
}

impl FromStr for PodCidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, bits) =
            text.split_once('/').ok_or_else(|| format!("{text}: expected a.b.c.0/24"))?;
        if bits != "24" {
            return Err(format!("{text}: only /24 pod networks are supported"));
        }
        let ip: Ipv4Addr = address.parse().map_err(|e| format!("{text}: {e}"))?;
        let [a, b, c, d] = ip.octets();
        if d != 0 {
            return Err(format!("{text}: the network address ends in .0"));
        }
        Ok(Self { prefix: [a, b, c] })
    }
}

/// The pod IPs in use on this node. An IP stays held while a pod's state file names it, so a
/// restarted kubelet never hands out the address of a pod that still exists.
#[derive(Debug)]
pub struct IpAllocator {
    cidr: PodCidr,
    /// Host numbers in use.
    held: Mutex<BTreeSet<u8>>,
}

impl IpAllocator {
    pub fn new(cidr: PodCidr) -> Self {
        Self { cidr, held: Mutex::new(BTreeSet::new()) }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeSet<u8>> {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Mark an IP recorded on disk as in use (an address outside the CIDR is ignored).
    pub fn claim(&self, ip: Ipv4Addr) {
        if self.cidr.contains(ip) {
            self.held().insert(ip.octets()[3]);
        }
    }

    /// The lowest free address from `.10`, or None when the /24 is full.
    pub fn allocate(&self) -> Option<Ipv4Addr> {
        let mut held = self.held();
        let host = lowest_free_host(&held)?;
        held.insert(host);
        Some(self.cidr.host(host))
    }

    pub fn release(&self, ip: Ipv4Addr) {
        if self.cidr.contains(ip) {
            self.held().remove(&ip.octets()[3]);
        }
    }
}

fn lowest_free_host(held: &BTreeSet<u8>) -> Option<u8> {
    (FIRST_POD_HOST..=LAST_POD_HOST).find(|host| !held.contains(host))
}

/// A failed `ip` command, with its arguments and stderr.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("ip {args}: cannot run: {source}")]
    Spawn {
        args: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ip {args}: exit {code:?}: {stderr}")]
    Failed { args: String, code: Option<i32>, stderr: String },
}

/// Run `ip` with these arguments; its stdout on success.
async fn ip(args: &[&str]) -> Result<String, NetworkError> {
    let output = tokio::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| NetworkError::Spawn { args: args.join(" "), source })?;
    if !output.status.success() {
        return Err(NetworkError::Failed {
            args: args.join(" "),
            code: output.status.code(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

async fn link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name]).await.is_ok()
}

/// The node's bridge with the gateway address, up. Idempotent.
pub async fn ensure_bridge(bridge: &str, cidr: &PodCidr) -> Result<(), NetworkError> {
    if !link_exists(bridge).await {
        ip(&["link", "add", "name", bridge, "type", "bridge"]).await?;
    }
    let address = format!("{}/24", cidr.gateway());
    ip(&["addr", "replace", &address, "dev", bridge]).await?;
    ip(&["link", "set", "dev", bridge, "up"]).await?;
    Ok(())
}

/// The pod's network namespace: `<bridge>-<first 12 chars of the pod uid>`.
pub fn netns_name(bridge: &str, uid: &str) -> String {
    format!("{bridge}-{}", uid.chars().take(12).collect::<String>())
}

/// The host side of the pod's veth: `v` + the first 12 hex digits of the uid (interface names
/// have at most 15 characters).
pub fn host_veth_name(uid: &str) -> String {
    let hex: String = uid.chars().filter(char::is_ascii_hexdigit).take(12).collect();
    format!("v{hex}")
}

/// Where `ip netns add` puts the namespace; containers `setns` into it.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/var/run/netns").join(name)
}

/// One pod's network, as recorded in its state.
#[derive(Clone, Debug)]
pub struct PodNetwork {
    pub netns: String,
    pub host_veth: String,
    pub ip: Ipv4Addr,
}

/// Build (or repair) the pod's netns, veth and addresses. Every step is idempotent and a netns
/// that exists is kept, so processes already inside it keep their network.
pub async fn setup_pod(bridge: &str, cidr: &PodCidr, pod: &PodNetwork) -> Result<(), NetworkError> {
    let ns = pod.netns.as_str();
    if !netns_path(ns).exists() {
        ip(&["netns", "add", ns]).await?;
    }
    if !link_exists(&pod.host_veth).await {
        // A pod side left without its peer (cannot happen with veth, but be safe) goes first.
        let _ = ip(&["-n", ns, "link", "del", "dev", "eth0"]).await;
        ip(&[
            "link",
            "add",
            "name",
            &pod.host_veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            ns,
        ])
        .await?;
    }
    ip(&["link", "set", "dev", &pod.host_veth, "master", bridge]).await?;
    ip(&["link", "set", "dev", &pod.host_veth, "up"]).await?;
    let address = format!("{}/24", pod.ip);
    ip(&["-n", ns, "addr", "replace", &address, "dev", "eth0"]).await?;
    ip(&["-n", ns, "link", "set", "dev", "eth0", "up"]).await?;
    ip(&["-n", ns, "link", "set", "dev", "lo", "up"]).await?;
    let gateway = cidr.gateway().to_string();
    ip(&["-n", ns, "route", "replace", "default", "via", &gateway, "dev", "eth0"]).await?;
    Ok(())
}

/// A network namespace's identity: the device and inode of its nsfs file.
type NetnsId = (u64, u64);

/// The identity of the named netns; None when the name does not exist.
fn netns_id(name: &str) -> Option<NetnsId> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(netns_path(name)).ok().map(|ns| (ns.dev(), ns.ino()))
}

/// Whether `pid` is inside that netns (its `/proc/<pid>/ns/net` is the same nsfs file).
fn in_netns(pid: u32, id: NetnsId) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net")).is_ok_and(|ns| (ns.dev(), ns.ino()) == id)
}

/// The processes inside the named netns, as `ip netns pids` finds them. Empty when the name
/// does not exist.
pub fn netns_pids(name: &str) -> Vec<u32> {
    let Some(id) = netns_id(name) else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| in_netns(*pid, id))
        .collect()
}

/// SIGKILL every process in the named netns until none is left (a zombie has left its netns
/// already). Each kill is checked on a pidfd: a pid reused since the listing is not touched.
pub async fn kill_netns_processes(name: &str) {
    let Some(id) = netns_id(name) else { return };
    let started = std::time::Instant::now();
    let mut warned = false;
    loop {
        let listed = name.to_string();
        let pids =
            tokio::task::spawn_blocking(move || netns_pids(&listed)).await.unwrap_or_default();
        if pids.is_empty() {
            return;
        }
        for pid in &pids {
            super::process::signal_if(*pid, libc::SIGKILL, |pid| in_netns(pid, id));
        }
        if !warned && started.elapsed() > std::time::Duration::from_secs(10) {
            warned = true;
            tracing::warn!(netns = name, ?pids, "processes in the netns survive SIGKILL; waiting");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Remove the pod's netns and veth; what is already gone is skipped, so this is safe to repeat.
pub async fn teardown_pod(netns: &str, host_veth: &str) -> Result<(), NetworkError> {
    if netns_path(netns).exists() {
        // Deleting the namespace destroys eth0 and with it the host side of the pair.
        ip(&["netns", "del", netns]).await?;
    }
    if !host_veth.is_empty() && link_exists(host_veth).await {
        ip(&["link", "del", "dev", host_veth]).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cidr_parses_only_slash_24_networks() {
        let cidr: PodCidr = "10.77.3.0/24".parse().expect("cidr");
        assert_eq!(cidr.gateway(), Ipv4Addr::new(10, 77, 3, 1));
        assert_eq!(cidr.to_string(), "10.77.3.0/24");
        assert!(cidr.contains(Ipv4Addr::new(10, 77, 3, 200)));
        assert!(!cidr.contains(Ipv4Addr::new(10, 77, 4, 200)));
        assert!("10.77.3.0/16".parse::<PodCidr>().is_err());
        assert!("10.77.3.5/24".parse::<PodCidr>().is_err());
        assert!("10.77.3.0".parse::<PodCidr>().is_err());
    }

    #[test]
    fn allocation_starts_at_10_and_never_reuses_a_held_ip() {
        let ips = IpAllocator::new("10.77.3.0/24".parse().expect("cidr"));
        ips.claim(Ipv4Addr::new(10, 77, 3, 11)); // recorded by a pod on disk
        ips.claim(Ipv4Addr::new(192, 168, 0, 10)); // not ours: ignored
        assert_eq!(ips.allocate(), Some(Ipv4Addr::new(10, 77, 3, 10)));
        assert_eq!(ips.allocate(), Some(Ipv4Addr::new(10, 77, 3, 12)));
        ips.release(Ipv4Addr::new(10, 77, 3, 10));
        assert_eq!(ips.allocate(), Some(Ipv4Addr::new(10, 77, 3, 10)));
    }

    #[test]
    fn allocation_fails_when_the_network_is_full() {
        let held: BTreeSet<u8> = (FIRST_POD_HOST..=LAST_POD_HOST).collect();
        assert_eq!(lowest_free_host(&held), None);
        let ips = IpAllocator::new("10.77.3.0/24".parse().expect("cidr"));
        let handed: Vec<_> = std::iter::from_fn(|| ips.allocate()).collect();
        assert_eq!(handed.len(), 245);
        assert_eq!(handed.last(), Some(&Ipv4Addr::new(10, 77, 3, 254)));
    }

    #[test]
    fn names_fit_the_kernel_limits() {
        let uid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
        assert_eq!(netns_name("mcbr0", uid), "mcbr0-1b4e28ba-2fa");
        assert_eq!(host_veth_name(uid), "v1b4e28ba2fa1");
        assert!(host_veth_name(uid).len() <= 15);
    }
}
