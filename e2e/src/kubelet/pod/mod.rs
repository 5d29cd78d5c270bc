//! One pod's worker: build its network and volumes, start its containers (or adopt the ones a
//! previous kubelet left running), probe them, restart exits per `restartPolicy` with backoff,
//! write `pods/status` when it changes, and end the pod in one of three ways:
//! - deletion (`deletionTimestamp`): liveness and startup probes stop while readiness goes on
//!   (the pod stays Ready until its readiness probe fails, as with the kubelet); preStop hooks;
//!   SIGTERM with the rest of the grace period, never less than 2 s; SIGKILL; every process
//!   left in the pod's netns SIGKILLed and gone; the network and the IP released; only then
//!   the object is deleted (grace 0, UID precondition; retried until the API server settles
//!   it), and the pod directory goes last;
//! - gone from the API (force deletion): the same without hooks, after a 2 s grace;
//! - node shutdown (kubelet SIGTERM): SIGTERM, 5 s, SIGKILL, network removed; the state file
//!   stays so a later kubelet starts the pod again with its IP (or finishes its deletion).
//!
//! The state file is written before anything it describes is acted on (an IP before the netns,
//! a pid right after the spawn) and removed last, so a kubelet killed at any point finds either
//! what to adopt or what to clean, and never deletes anything twice.
//!
//! - `start`: adoption, network, volumes, container starts, monitors and probers
//! - `stop`: the three ends above, liveness kills, and orphans
//! - `report`: the status written to the API

mod report;
mod start;
mod stop;

pub use stop::clean_orphan;

use super::Context;
use super::container::ContainerRuntime;
use super::env::PodAddresses;
use super::probe::ProbeEvent;
use super::process::Exit;
use super::state::PodState;
use super::status::Conditions;
use super::volumes::Tokens;
use k8s_openapi::api::core::v1::Pod;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often Secret, ConfigMap, downwardAPI and projected volumes are refreshed.
const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// Retry delay of a pod or container that cannot start yet (missing Secret, unbound claim).
const RETRY: Duration = Duration::from_secs(2);

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
    /// What every worker shares: the client, the kubelet's settings, the IP allocator.
    ctx: Arc<Context>,
    /// The pod's UID: its identity (a replacement of the same name is another pod).
    uid: String,
    /// Every version of the pod the watch sees; None once it is gone from the API.
    updates: watch::Receiver<Option<Arc<Pod>>>,
    /// Turns true when the kubelet shuts the node down.
    node_shutdown: watch::Receiver<bool>,
    /// `<root>/pods/<uid>`.
    pod_dir: PathBuf,
    /// The persisted part (IP, netns, per-container records, init done).
    state: PodState,
    /// The netns and veth are in place.
    network_ready: bool,
    /// Volume directories by name, once prepared.
    volumes: Option<Vec<(String, PathBuf)>>,
    /// When the volumes were last prepared; a refresh is due [`VOLUME_REFRESH`] later.
    volumes_at: Instant,
    /// Service-account tokens of projected volumes, until they are due for renewal.
    tokens: Tokens,
    /// Why the whole pod cannot start yet (reason, message).
    pod_waiting: Option<(String, String)>,
    /// Init containers in order, then the regular ones: the order of gates and statuses.
    containers: Vec<ContainerRuntime>,
    /// Cloned into monitors and probers: (container index, instance, what happened).
    reports_tx: mpsc::UnboundedSender<(usize, u64, Report)>,
    /// What monitors and probers report.
    reports: mpsc::UnboundedReceiver<(usize, u64, Report)>,
    /// Transition times of the conditions this kubelet owns.
    conditions: Conditions,
    /// The last status written, to write only changes.
    written: Option<serde_json::Value>,
    /// Deletion is under way: no restarts (the phase is computed as under `Never`).
    terminating: bool,
    /// The API had the pod Succeeded or Failed when this worker started: nothing of it starts
    /// again and its final status is left as it is (the API refuses a way back anyway).
    terminal: bool,
    /// The instance id the next started or adopted process gets.
    next_instance: u64,
    /// `spec.restartPolicy` (Always by default; immutable).
    restart_policy: String,
    /// `spec.terminationGracePeriodSeconds` (30 s by default): the grace of a liveness kill
    /// whose probe has none of its own.
    grace: Duration,
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
            terminal: false,
            next_instance: 1,
            restart_policy: "Always".into(),
            grace: Duration::from_secs(30),
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
                self.shut_down().await;
                return;
            }
            let Some(pod) = self.latest() else {
                self.gone().await;
                return;
            };
            if pod.metadata.deletion_timestamp.is_some() {
                self.terminate(&pod).await;
                return;
            }
            if !self.terminal {
                self.sync(&pod).await;
                self.write_status(&pod).await;
            }
            let wake = self.next_wake();
            tokio::select! {
                changed = self.updates.changed() => {
                    if changed.is_err() {
                        // The kubelet is going away; only the shutdown signal matters now.
                        let _ = self.node_shutdown.wait_for(|stop| *stop).await;
                    }
                }
                Some((index, instance, report)) = self.reports.recv() => {
                    self.handle(index, instance, report, Ending::PerPolicy);
                }
                _ = self.node_shutdown.changed() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
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

    /// A report from a container's monitor or prober.
    fn handle(&mut self, index: usize, instance: u64, report: Report, ending: Ending) {
        let pod_name = self.pod_name();
        let Some(runtime) = self.containers.get_mut(index) else { return };
        if runtime.instance != instance {
            return;
        }
        match report {
            Report::Exited(exit) => {
                let terminated = runtime.termination(exit);
                tracing::info!(pod = pod_name, container = runtime.spec.name, code = exit.code, log = %runtime.log.display(), "container exited");
                let killed_for_probe = runtime.liveness_kill.take().is_some();
                runtime.record.ended();
                runtime.prober = None;
                runtime.monitor = None;
                match ending {
                    Ending::PerPolicy
                        if runtime.restarts(&self.restart_policy, exit.code, killed_for_probe) =>
                    {
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
            Report::Probe(ProbeEvent::Unhealthy { reason, termination_grace }) => {
                if runtime.liveness_kill.is_some() || ending != Ending::PerPolicy {
                    return;
                }
                tracing::warn!(pod = pod_name, container = runtime.spec.name, %reason, "container unhealthy; killing it");
                self.kill_for_probe(index, termination_grace.unwrap_or(self.grace));
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
