//! One pod's worker: build its network and volumes, start its containers (or adopt the ones a
//! previous kubelet left running), probe them, restart exits per `restartPolicy` with backoff,
//! write `pods/status` when it changes, and end the pod in one of three ways:
//! - deletion (`deletionTimestamp`): not ready at once, preStop hooks, SIGTERM, the rest of the
//!   grace period, SIGKILL; then the object is deleted (grace 0, UID precondition) and the
//!   network and pod directory go;
//! - gone from the API (force deletion): the same without hooks, after a 2 s grace;
//! - node shutdown (kubelet SIGTERM): SIGTERM, 5 s, SIGKILL, network removed; the state file
//!   stays so a later kubelet starts the pod again with its IP.
//!
//! The state file is written before anything it describes is acted on (an IP before the netns,
//! a pid right after the spawn) and removed last, so a kubelet killed at any point finds either
//! what to adopt or what to clean, and never deletes anything twice.
//!
//! - `stop`: the three ends above, and orphans
//! - `report`: the status written to the API

mod report;
mod stop;

pub use stop::clean_orphan;
use stop::stop_process;

use super::container::{self, ContainerRuntime, InitKind, Target};
use super::env::{self, PodAddresses};
use super::network::{self, PodNetwork};
use super::probe::{self, ProbeEvent};
use super::process::{Exit, Running};
use super::restart::Backoff;
use super::state::{self, PodState};
use super::status::{self, Conditions};
use super::volumes::{self, Tokens};
use super::{AbortOnDrop, Context};
use k8s_openapi::api::core::v1::Pod;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often Secret, ConfigMap, downwardAPI and projected volumes are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// Retry delay of a pod or container that cannot start yet (missing Secret, unbound claim).
const RETRY: Duration = Duration::from_secs(2);
/// Grace of a pod removed from the API without us (the kubelet's minimum grace period).
const GONE_GRACE: Duration = Duration::from_secs(2);
/// Grace of every container when the node shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What the monitor and prober tasks report, tagged with container index and instance.
#[derive(Debug)]
enum Report {
    Exited(Exit),
    Probe(ProbeEvent),
}

/// What happens to a container that exits.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ending {
    /// Normal operation: restart per `restartPolicy`.
    PerPolicy,
    /// The pod is being deleted: the end is final.
    Final,
    /// The node shuts down: recorded as a termination, started again by a later kubelet.
    NodeShutdown,
}

pub struct PodWorker {
    ctx: Arc<Context>,
    uid: String,
    /// Every version of the pod the watch sees; None once it is gone from the API.
    updates: watch::Receiver<Option<Arc<Pod>>>,
    node_shutdown: watch::Receiver<bool>,
    /// `<root>/pods/<uid>`.
    pod_dir: PathBuf,
    /// The persisted part (IP, netns, per-container records).
    state: PodState,
    /// The netns and veth are in place.
    network_ready: bool,
    /// Volume directories by name, once prepared.
    volumes: Option<Vec<(String, PathBuf)>>,
    volumes_at: Instant,
    tokens: Tokens,
    /// Why the whole pod cannot start yet (reason, message).
    pod_waiting: Option<(String, String)>,
    containers: Vec<ContainerRuntime>,
    reports_tx: mpsc::UnboundedSender<(usize, u64, Report)>,
    reports: mpsc::UnboundedReceiver<(usize, u64, Report)>,
    conditions: Conditions,
    /// The last status written, to write only changes.
    written: Option<serde_json::Value>,
    /// Deletion is under way: nothing is ready.
    terminating: bool,
    next_instance: u64,
}
impl PodWorker {
    pub fn new(
        ctx: Arc<Context>,
        uid: &str,
        updates: watch::Receiver<Option<Arc<Pod>>>,
        node_shutdown: watch::Receiver<bool>,
    ) -> Self {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        let pod_dir = ctx.config.pod_dir(uid);
        Self {
            uid: uid.to_string(),
            pod_dir,
            state: PodState::default(),
            network_ready: false,
            volumes: None,
            volumes_at: Instant::now(),
            tokens: Tokens::default(),
            pod_waiting: None,
            containers: Vec::new(),
            reports_tx,
            reports,
            conditions: Conditions::default(),
            written: None,
            terminating: false,
            next_instance: 1,
            ctx,
            updates,
            node_shutdown,
        }
    }

    fn latest(&self) -> Option<Arc<Pod>> {
        self.updates.borrow().clone()
    }

    fn pod_name(&self) -> String {
        format!("{}/{}", self.state.namespace, self.state.name)
    }

    pub async fn run(mut self) {
        let Some(pod) = self.latest() else { return };
        self.adopt(&pod);
        loop {
            if *self.node_shutdown.borrow() {
                self.stop_all(SHUTDOWN_GRACE, Ending::NodeShutdown).await;
                self.teardown_network().await;
                self.save();
                return;
            }
            let Some(pod) = self.latest() else {
                tracing::info!(pod = self.pod_name(), "pod gone from the API; stopping it");
                self.stop_all(GONE_GRACE, Ending::Final).await;
                self.remove_everything().await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                self.terminate(&pod).await;
                return;
            }
            self.sync(&pod).await;
            self.write_status(&pod).await;
            let wake = self.next_wake();
            tokio::select! {
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        // The kubelet is going away; only the shutdown signal matters now.
                        let _ = self.node_shutdown.wait_for(|stop| *stop).await;
                    }
                }
                Some((index, instance, report)) = self.reports.recv() => {
                    self.handle(&pod, index, instance, report, Ending::PerPolicy);
                }
                _ = self.node_shutdown.changed() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
    }

    /// Load the state file (if a previous kubelet left one) and adopt live containers.
    fn adopt(&mut self, pod: &Pod) {
        self.conditions = Conditions::seeded(pod);
        let previous = match PodState::load(&self.pod_dir) {
            Ok(previous) => previous.filter(|s| s.uid == self.uid),
            Err(error) => {
                tracing::warn!(%error, "unreadable pod state; starting the pod afresh");
                None
            }
        };
        let config = &self.ctx.config;
        self.state = previous.unwrap_or_else(|| PodState {
            uid: self.uid.clone(),
            netns: network::netns_name(&config.bridge, &self.uid),
            host_veth: network::host_veth_name(&self.uid),
            ..PodState::default()
        });
        self.state.namespace = pod.metadata.namespace.clone().unwrap_or_default();
        self.state.name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let inits = spec.init_containers.unwrap_or_default().into_iter().map(|c| {
            let sidecar = c.restart_policy.as_deref() == Some("Always");
            (c, Some(if sidecar { InitKind::Sidecar } else { InitKind::ToCompletion }))
        });
        let regular = spec.containers.into_iter().map(|c| (c, None));
        for (spec, init) in inits.chain(regular) {
            let log = config
                .logs_dir()
                .join(format!("{}_{}_{}.log", self.state.namespace, self.state.name, spec.name));
            let record = self.state.containers.get(&spec.name).cloned().unwrap_or_default();
            let backoff = Backoff::new(config.restart_backoff_initial, config.restart_backoff_max);
            let mut runtime = ContainerRuntime::new(spec, log, record, backoff);
            runtime.init = init;
            let index = self.containers.len();
            if let Some(pid) = runtime.record.pid {
                // No start time: it was already gone (a zombie) when it was recorded.
                let alive = runtime.record.start_ticks.filter(|t| state::is_same_process(pid, *t));
                if let Some(ticks) = alive {
                    tracing::info!(
                        pod = self.pod_name(),
                        container = runtime.spec.name,
                        pid,
                        "adopted a running container"
                    );
                    runtime.next_start = None;
                    runtime.instance = self.next_instance;
                    self.next_instance += 1;
                    let started_ago = runtime
                        .record
                        .started_at
                        .map(|at| jiff::Timestamp::now().duration_since(at).unsigned_abs())
                        .unwrap_or_default();
                    runtime.started_instant = Some(Instant::now() - started_ago);
                    let running = Running::Adopted { pid, start_ticks: ticks };
                    runtime.monitor = Some(self.monitor(index, runtime.instance, running));
                } else {
                    // It ended while no kubelet watched: an exit with an unknown status.
                    tracing::info!(
                        pod = self.pod_name(),
                        container = runtime.spec.name,
                        pid,
                        "container ended while the kubelet was down"
                    );
                    runtime.record.last_termination = Some(runtime.termination(Exit::unknown()));
                    runtime.record.pid = None;
                    runtime.record.start_ticks = None;
                    runtime.record.ready = false;
                    runtime.record.started = false;
                    if !runtime.restarts(&restart_policy(pod), Exit::unknown().code) {
                        runtime.record.final_termination = runtime.record.last_termination.take();
                        runtime.next_start = None;
                    }
                }
            } else if runtime.record.final_termination.is_some() {
                runtime.next_start = None;
            }
            self.containers.push(runtime);
        }
    }

    fn monitor(&self, index: usize, instance: u64, running: Running) -> AbortOnDrop {
        let reports = self.reports_tx.clone();
        AbortOnDrop(tokio::spawn(async move {
            let exit = running.wait().await;
            let _ = reports.send((index, instance, Report::Exited(exit)));
        }))
    }

    fn addresses(&self) -> PodAddresses {
        PodAddresses {
            pod_ip: self.state.pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            host_ip: self.ctx.config.host_ip(),
        }
    }

    fn save(&mut self) {
        for runtime in &self.containers {
            self.state.containers.insert(runtime.spec.name.clone(), runtime.record.clone());
        }
        if let Err(error) = self.state.save(&self.pod_dir) {
            tracing::error!(pod = self.pod_name(), %error, "cannot write the pod state");
        }
    }

    /// Bring the pod towards running: network, volumes, then every container due to start.
    async fn sync(&mut self, pod: &Pod) {
        if !self.network_ready {
            if let Err(message) = self.setup_network().await {
                tracing::warn!(pod = self.pod_name(), %message, "pod network not ready");
                self.pod_waiting = Some(("ContainerCreating".into(), message));
                return;
            }
            self.network_ready = true;
        }
        let refresh_due = self.volumes_at.elapsed() >= VOLUME_REFRESH;
        if self.volumes.is_none() || refresh_due {
            let addresses = self.addresses();
            let prepared = volumes::prepare(
                &self.ctx.client,
                pod,
                &self.pod_dir,
                &addresses,
                &mut self.tokens,
            )
            .await;
            self.volumes_at = Instant::now();
            match prepared {
                Ok(volumes) => {
                    self.volumes = Some(volumes);
                    self.pod_waiting = None;
                }
                Err(error) if self.volumes.is_none() => {
                    tracing::info!(pod = self.pod_name(), %error, "pod waits for its volumes");
                    self.pod_waiting = Some(("ContainerCreating".into(), error.0));
                    self.volumes_at = Instant::now() - VOLUME_REFRESH + RETRY;
                    return;
                }
                Err(error) => {
                    tracing::warn!(pod = self.pod_name(), %error, "volume refresh failed")
                }
            }
        }
        if self.state.start_time.is_none() {
            self.state.start_time = Some(status::now().0);
            self.save();
        }
        // Init containers in order, each gating the next; then all regular containers.
        let mut gate_open = true;
        for index in 0..self.containers.len() {
            let runtime = &self.containers[index];
            let due = gate_open && runtime.next_start.is_some_and(|at| at <= Instant::now());
            let needs_prober = runtime.running() && runtime.prober.is_none() && !runtime.killing;
            if due || needs_prober {
                self.start_container(pod, index).await;
            }
            gate_open = gate_open && self.containers[index].lets_next_start();
        }
    }

    async fn setup_network(&mut self) -> Result<(), String> {
        let ctx = self.ctx.clone();
        let config = &ctx.config;
        let ip = match self.state.pod_ip {
            Some(ip) => ip,
            None => {
                let ip = self.ctx.ips.allocate().ok_or_else(|| {
                    format!("no free IP left in the pod network {}", config.pod_cidr)
                })?;
                self.state.pod_ip = Some(ip);
                self.save();
                ip
            }
        };
        let network = PodNetwork {
            netns: self.state.netns.clone(),
            host_veth: self.state.host_veth.clone(),
            ip,
        };
        network::setup_pod(&config.bridge, &config.pod_cidr, &network)
            .await
            .map_err(|e| e.to_string())
    }

    /// Start a container due to start, or, for a running (adopted) one, resolve its env and
    /// start its prober.
    async fn start_container(&mut self, pod: &Pod, index: usize) {
        let config = self.ctx.config.clone();
        let addresses = self.addresses();
        let volumes = self.volumes.clone().unwrap_or_default();
        let netns = network::netns_path(&self.state.netns);
        let pod_name = self.pod_name();
        let spec = self.containers[index].spec.clone();
        let prepared = match env::resolve(&self.ctx.client, pod, &spec, &addresses).await {
            Ok(env) => {
                let mounts = volumes::container_mounts(&spec, &volumes);
                container::exec_base(pod, &spec, &env, &mounts, netns)
                    .map(|base| (env, mounts, base))
            }
            Err(error) => Err(error),
        };
        let runtime = &mut self.containers[index];
        let (env, mounts, base) = match prepared {
            Ok(prepared) => prepared,
            Err(error) => {
                if runtime.running() {
                    tracing::warn!(pod = pod_name, container = spec.name, %error, "cannot resolve the env of a running container; probes wait");
                    return;
                }
                tracing::info!(pod = pod_name, container = spec.name, %error, "container waits");
                runtime.waiting = Some(("CreateContainerConfigError".into(), error.0));
                runtime.next_start = Some(Instant::now() + RETRY);
                return;
            }
        };
        runtime.mounts = mounts;
        runtime.exec_base = Some(base.clone());
        if !runtime.running() {
            let long_running = runtime.init != Some(InitKind::ToCompletion);
            let target = Target { mapcache_image: runtime.is_mapcache(), container: long_running };
            let launch = container::program_launch(
                &config,
                &base,
                target,
                spec.command.as_deref().unwrap_or_default(),
                spec.args.as_deref().unwrap_or_default(),
                &env,
                &runtime.mounts,
            );
            tracing::info!(pod = pod_name, container = spec.name, program = %launch.program.display(), args = ?launch.args, "starting container");
            let child = match launch.spawn(&runtime.log) {
                Ok(child) => child,
                Err(error) => {
                    tracing::error!(pod = pod_name, container = spec.name, %error, "cannot start the container");
                    runtime.waiting = Some(("RunContainerError".into(), error));
                    runtime.next_start =
                        Some(Instant::now() + RETRY.max(runtime.backoff.on_exit(Instant::now())));
                    return;
                }
            };
            let Some(pid) = child.id() else {
                runtime.next_start = Some(Instant::now() + RETRY);
                return;
            };
            if runtime.record.last_termination.is_some() {
                runtime.record.restart_count += 1;
            }
            runtime.record.pid = Some(pid);
            runtime.record.start_ticks = state::process_start_ticks(pid);
            runtime.record.started_at = Some(status::now().0);
            runtime.record.ready = false;
            runtime.record.started = false;
            runtime.waiting = None;
            runtime.next_start = None;
            runtime.killing = false;
            runtime.started_instant = Some(Instant::now());
            runtime.instance = self.next_instance;
            self.next_instance += 1;
            let instance = self.containers[index].instance;
            self.containers[index].monitor =
                Some(self.monitor(index, instance, Running::Child(child)));
            self.save();
        }
        let runtime = &self.containers[index];
        let probes = container::probes(&config, runtime, &base, &env, &addresses.pod_ip);
        let started_at = runtime.started_instant.unwrap_or_else(Instant::now);
        let (started, ready) = (runtime.record.started, runtime.record.ready);
        let (instance, reports) = (runtime.instance, self.reports_tx.clone());
        let (tx, mut rx) = mpsc::unbounded_channel();
        let prober = tokio::spawn(async move {
            let forward = async {
                while let Some(event) = rx.recv().await {
                    let _ = reports.send((index, instance, Report::Probe(event)));
                }
            };
            tokio::join!(probe::run(probes, started_at, started, ready, tx), forward);
        });
        self.containers[index].prober = Some(AbortOnDrop(prober));
    }

    /// A report from a container's monitor or prober.
    fn handle(&mut self, pod: &Pod, index: usize, instance: u64, report: Report, ending: Ending) {
        let pod_name = self.pod_name();
        let grace = grace_seconds(pod);
        let Some(runtime) = self.containers.get_mut(index) else { return };
        if runtime.instance != instance {
            return;
        }
        match report {
            Report::Exited(exit) => {
                let terminated = runtime.termination(exit);
                tracing::info!(pod = pod_name, container = runtime.spec.name, code = exit.code, log = %runtime.log.display(), "container exited");
                runtime.record.pid = None;
                runtime.record.start_ticks = None;
                runtime.record.ready = false;
                runtime.record.started = false;
                runtime.prober = None;
                runtime.monitor = None;
                runtime.killing = false;
                match ending {
                    Ending::PerPolicy if runtime.restarts(&restart_policy(pod), exit.code) => {
                        let delay = runtime.backoff.on_exit(Instant::now());
                        runtime.record.last_termination = Some(terminated);
                        runtime.next_start = Some(Instant::now() + delay);
                        runtime.waiting = (!delay.is_zero()).then(|| {
                            let message = format!(
                                "back-off {}s restarting failed container={} pod={pod_name}",
                                delay.as_secs(),
                                runtime.spec.name
                            );
                            ("CrashLoopBackOff".to_string(), message)
                        });
                    }
                    Ending::NodeShutdown => {
                        runtime.record.last_termination = Some(terminated);
                        runtime.next_start = None;
                    }
                    Ending::PerPolicy | Ending::Final => {
                        runtime.record.final_termination = Some(terminated);
                        runtime.next_start = None;
                    }
                }
                self.save();
            }
            Report::Probe(ProbeEvent::Started) => {
                runtime.record.started = true;
                self.save();
            }
            Report::Probe(ProbeEvent::Ready(ready)) => {
                runtime.record.ready = ready;
                self.save();
            }
            Report::Probe(ProbeEvent::Unhealthy(reason)) => {
                if runtime.killing {
                    return;
                }
                tracing::warn!(pod = pod_name, container = runtime.spec.name, %reason, "container unhealthy; killing it");
                runtime.killing = true;
                runtime.record.ready = false;
                runtime.prober = None;
                if let (Some(pid), Some(ticks)) = (runtime.record.pid, runtime.record.start_ticks) {
                    tokio::spawn(stop_process(pid, ticks, Duration::from_secs(grace)));
                }
            }
        }
    }

    /// When the loop must wake up without news: the next due start, a volume retry, and at
    /// least once a second (a cheap status comparison).
    fn next_wake(&self) -> Instant {
        let soon = Instant::now() + Duration::from_secs(1);
        self.containers.iter().filter_map(|c| c.next_start).fold(soon, Instant::min)
    }
}

/// The pod's `restartPolicy` (Always by default).
fn restart_policy(pod: &Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_else(|| "Always".into())
}

/// The pod's `terminationGracePeriodSeconds` (30 by default), for liveness kills.
fn grace_seconds(pod: &Pod) -> u64 {
    pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30).max(0) as u64
}
