//! The exact command line of each control-plane component: pure functions of the layout, the
//! ports and the certificates, so the configuration can be read (and tested) in one place.
//!
//! What is deliberately not the default, and why:
//! - etcd `--unsafe-no-fsync`: a test cluster's data dies with it; fsync only costs time.
//! - kube-apiserver `--endpoint-reconciler-type=none`: the API server listens on loopback only,
//!   and Kubernetes refuses a loopback address as the `kubernetes` Service's endpoint. Nothing in
//!   a pod here talks to the API server through that Service (the cache pods never call the API),
//!   so the Service simply has no endpoints. docs/e2e.md lists this.
//!
//! Everything else is a real cluster's: secure serving only, client certificates, RBAC and the
//! Node authorizer, every default admission plugin (plus NodeRestriction, as kubeadm sets it),
//! bound service-account tokens signed by our key, each controller with its own service account.

use super::pki::Pki;
use std::path::Path;

/// Loopback ports of one control plane, chosen once and passed to every component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub etcd_client: u16,
    pub etcd_peer: u16,
    pub apiserver: u16,
    pub controller_manager: u16,
    pub scheduler: u16,
}

/// The range ClusterIPs come from. Nothing routes it: no kube-proxy runs here.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// The first address of `SERVICE_CIDR`, which the `kubernetes` Service takes.
pub const KUBERNETES_SERVICE_IP: &str = "10.96.0.1";

fn path(p: &Path) -> String {
    p.display().to_string()
}

pub fn etcd(data_dir: &Path, ports: Ports) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=e2e".into(),
        format!("--data-dir={}", path(data_dir)),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=e2e={peer}"),
        "--unsafe-no-fsync".into(),
        "--log-level=warn".into(),
    ]
}

pub fn apiserver(pki: &Pki, ports: Ports) -> Vec<String> {
    vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        "--endpoint-reconciler-type=none".into(),
        format!("--secure-port={}", ports.apiserver),
        format!("--tls-cert-file={}", path(&pki.apiserver.cert_file)),
        format!("--tls-private-key-file={}", path(&pki.apiserver.key_file)),
        format!("--client-ca-file={}", path(&pki.ca.cert_file)),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", path(&pki.service_account_pub)),
        format!("--service-account-signing-key-file={}", path(&pki.service_account_key)),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allow-privileged=true".into(),
        // The front proxy's request-header authentication, as kubeadm sets it up: the controller
        // manager and scheduler read it for their delegated authentication (and log an error
        // every few seconds without it).
        format!("--requestheader-client-ca-file={}", path(&pki.ca.cert_file)),
        format!("--requestheader-allowed-names={}", super::pki::FRONT_PROXY.user),
        "--requestheader-username-headers=X-Remote-User".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        format!("--proxy-client-cert-file={}", path(&pki.front_proxy.cert_file)),
        format!("--proxy-client-key-file={}", path(&pki.front_proxy.key_file)),
        "--profiling=false".into(),
    ]
}

pub fn controller_manager(kubeconfig: &Path, pki: &Pki, ports: Ports) -> Vec<String> {
    let kubeconfig = path(kubeconfig);
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--controllers=*".into(),
        "--use-service-account-credentials=true".into(),
        format!("--service-account-private-key-file={}", path(&pki.service_account_key)),
        format!("--root-ca-file={}", path(&pki.ca.cert_file)),
        format!("--cluster-signing-cert-file={}", path(&pki.ca.cert_file)),
        format!("--cluster-signing-key-file={}", path(&pki.ca.key_file)),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.controller_manager),
        "--profiling=false".into(),
    ]
}

pub fn scheduler(kubeconfig: &Path, ports: Ports) -> Vec<String> {
    let kubeconfig = path(kubeconfig);
    vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.scheduler),
        "--profiling=false".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ports() -> Ports {
        Ports {
            etcd_client: 1001,
            etcd_peer: 1002,
            apiserver: 1003,
            controller_manager: 1004,
            scheduler: 1005,
        }
    }

    #[test]
    fn the_api_server_authorizes_with_rbac_and_keeps_every_default_admission_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let pki =
            Pki::generate(dir.path(), &[IpAddr::V4(Ipv4Addr::LOCALHOST)], &["localhost"]).unwrap();
        let args = apiserver(&pki, ports());
        assert!(args.contains(&"--authorization-mode=Node,RBAC".to_string()));
        assert!(args.contains(&"--secure-port=1003".to_string()));
        assert!(args.contains(&"--etcd-servers=http://127.0.0.1:1001".to_string()));
        assert!(!args.iter().any(|a| a.starts_with("--disable-admission-plugins")));
        assert!(!args.iter().any(|a| a.contains("insecure")));
        assert!(!args.iter().any(|a| a.starts_with("--authorization-mode=AlwaysAllow")));
    }

    #[test]
    fn controllers_run_with_their_own_service_accounts_and_leader_election_on() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path(), &[IpAddr::V4(Ipv4Addr::LOCALHOST)], &[]).unwrap();
        let args = controller_manager(Path::new("/k"), &pki, ports());
        assert!(args.contains(&"--controllers=*".to_string()));
        assert!(args.contains(&"--use-service-account-credentials=true".to_string()));
        // Leader election stays at its default (on): its Lease is how the harness knows the
        // controller manager is running.
        assert!(!args.iter().any(|a| a.starts_with("--leader-elect")));
        assert!(
            !scheduler(Path::new("/k"), ports()).iter().any(|a| a.starts_with("--leader-elect"))
        );
    }

    #[test]
    fn etcd_listens_on_loopback_only() {
        let args = etcd(Path::new("/d"), ports());
        for flag in ["--listen-client-urls=", "--listen-peer-urls="] {
            let value = args.iter().find_map(|a| a.strip_prefix(flag)).unwrap();
            assert!(value.starts_with("http://127.0.0.1:"), "{flag}{value}");
        }
    }
}
