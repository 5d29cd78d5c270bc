//! A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler, built from their Go modules by `scripts/k8s-binaries.sh`, each a child process
//! with its log in `<dir>/logs/`. Talked to only through the API, as a user would.
//!
//! - `pki`: the CA and every certificate and key
//! - `flags`: each component's exact command line
//! - `kubeconfig`: self-contained kubeconfig files
//! - `process`: child processes that never outlive the harness

pub mod flags;
pub mod kubeconfig;
pub mod pki;
pub mod process;

use flags::Ports;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kubeconfig::Credentials;
use pki::Pki;
use process::ChildProcess;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why the control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Setup(String),
    #[error("start {component}: {source}")]
    Spawn {
        component: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{component} exited ({status}) while starting; its log ends:\n{log_tail}")]
    Exited { component: String, status: String, log_tail: String },
    #[error("{what} not ready after {waited:?}; logs:\n{logs}")]
    NotReady { what: String, waited: Duration, logs: String },
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
}

/// How long each component may take to come up on a loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running control plane; dropping it stops every component (scheduler first, etcd last).
pub struct ControlPlane {
    /// State directory: `pki/`, `etcd/`, `logs/`, kubeconfigs.
    pub dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    pub pki: Pki,
    pub ports: Ports,
    /// cluster-admin (`system:masters`) kubeconfig: the harness, kubectl, the process kubelet.
    pub admin_kubeconfig: PathBuf,
    /// In start order; stopped in reverse.
    processes: Vec<ChildProcess>,
}

/// A free loopback port (the listener is closed again; the component binds it a moment later).
fn free_port() -> Result<u16, Error> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|e| Error::Setup(format!("no free loopback port: {e}")))
}

impl ControlPlane {
    /// Start every component under `dir` with the binaries in `bin_dir`, and return once the API
    /// server is ready and the controller manager and scheduler hold their leader Leases.
    pub async fn start(dir: &Path, bin_dir: &Path) -> Result<Self, Error> {
        let setup = |what: String| move |e: std::io::Error| Error::Setup(format!("{what}: {e}"));
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(setup(format!("create {}", logs.display())))?;
        let pki = Pki::generate(
            &dir.join("pki"),
            &[
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                flags::KUBERNETES_SERVICE_IP.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ],
            &[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
        )
        .map_err(Error::Setup)?;
        let ports = Ports {
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            apiserver: free_port()?,
            controller_manager: free_port()?,
            scheduler: free_port()?,
        };
        let server = format!("https://127.0.0.1:{}", ports.apiserver);
        let write_kubeconfig = |file: &str, pair: &pki::CertPair| -> Result<PathBuf, Error> {
            let path = dir.join(file);
            let credentials = Credentials::ClientCertificate {
                cert_pem: pair.cert_pem.clone(),
                key_pem: pair.key_pem.clone(),
            };
            std::fs::write(
                &path,
                kubeconfig::render(&server, &pki.ca.cert_pem, &credentials, "default"),
            )
            .map_err(setup(format!("write {}", path.display())))?;
            Ok(path)
        };
        let admin_kubeconfig = write_kubeconfig("admin.kubeconfig", &pki.admin)?;
        let controller_manager_kubeconfig =
            write_kubeconfig("controller-manager.kubeconfig", &pki.controller_manager)?;
        let scheduler_kubeconfig = write_kubeconfig("scheduler.kubeconfig", &pki.scheduler)?;

        let mut plane = Self {
            dir: dir.to_path_buf(),
            server,
            ports,
            admin_kubeconfig,
            processes: Vec::new(),
            pki,
        };
        plane.spawn(bin_dir, "etcd", flags::etcd(&dir.join("etcd"), ports))?;
        plane.spawn(bin_dir, "kube-apiserver", flags::apiserver(&plane.pki, ports))?;
        let client = plane.client().await?;
        plane.wait_for_api_server(&client).await?;
        let args = flags::controller_manager(&controller_manager_kubeconfig, &plane.pki, ports);
        plane.spawn(bin_dir, "kube-controller-manager", args)?;
        plane.spawn(bin_dir, "kube-scheduler", flags::scheduler(&scheduler_kubeconfig, ports))?;
        for lease in ["kube-controller-manager", "kube-scheduler"] {
            plane.wait_for_leader(&client, lease).await?;
        }
        Ok(plane)
    }

    fn spawn(&mut self, bin_dir: &Path, component: &str, args: Vec<String>) -> Result<(), Error> {
        let log = self.dir.join("logs").join(format!("{component}.log"));
        let process =
            ChildProcess::start(component, &bin_dir.join(component), &args, log, libc::SIGKILL)
                .map_err(|source| Error::Spawn { component: component.into(), source })?;
        self.processes.push(process);
        Ok(())
    }

    /// A cluster-admin client.
    pub async fn client(&self) -> Result<kube::Client, kube::Error> {
        let text = std::fs::read_to_string(&self.admin_kubeconfig)
            .map_err(|e| kube::Error::Service(Box::new(e)))?;
        kubeconfig::client(&text).await
    }

    /// A kubeconfig for this cluster with other credentials (a service account's token).
    pub fn kubeconfig(&self, credentials: &Credentials, namespace: &str) -> String {
        kubeconfig::render(&self.server, &self.pki.ca.cert_pem, credentials, namespace)
    }

    /// An error if a component has exited, with the end of its log.
    pub fn check_running(&mut self) -> Result<(), Error> {
        for process in &mut self.processes {
            if let Some(status) = process.exited() {
                return Err(Error::Exited {
                    component: process.name.clone(),
                    status: status.to_string(),
                    log_tail: process.log_tail(30),
                });
            }
        }
        Ok(())
    }

    /// The last `lines` lines of every component's log.
    pub fn logs(&self, lines: usize) -> String {
        self.processes
            .iter()
            .map(|p| format!("--- {} ({})\n{}\n", p.name, p.log.display(), p.log_tail(lines)))
            .collect()
    }

    async fn poll<F, Fut>(&mut self, what: &str, mut ready: F) -> Result<(), Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            self.check_running()?;
            if ready().await {
                return Ok(());
            }
            if start.elapsed() > START_TIMEOUT {
                return Err(Error::NotReady {
                    what: what.into(),
                    waited: START_TIMEOUT,
                    logs: self.logs(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn wait_for_api_server(&mut self, client: &kube::Client) -> Result<(), Error> {
        self.poll("kube-apiserver /readyz", || async {
            let request = http::Request::get("/readyz").body(Vec::new());
            match request {
                Ok(request) => client.request_text(request).await.is_ok_and(|body| body == "ok"),
                Err(_) => false,
            }
        })
        .await
    }

    /// The component's leader-election Lease has a holder: it is connected and working.
    async fn wait_for_leader(&mut self, client: &kube::Client, lease: &str) -> Result<(), Error> {
        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
        self.poll(&format!("{lease} leader Lease"), || async {
            leases
                .get_opt(lease)
                .await
                .ok()
                .flatten()
                .and_then(|lease| lease.spec?.holder_identity)
                .is_some()
        })
        .await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            process.stop();
        }
    }
}
