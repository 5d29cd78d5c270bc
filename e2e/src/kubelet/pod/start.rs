//! How a pod comes up: the state a previous kubelet left is adopted (live containers kept,
//! the others recorded as ended), then the network, the volumes and every container due to
//! start, init containers in order; each process gets a monitor (its exit) and a prober.

use super::{PodWorker, RETRY, Report, VOLUME_REFRESH};
use crate::kubelet::AbortOnDrop;
use crate::kubelet::container::{self, ContainerRuntime, InitKind, Target};
use crate::kubelet::env;
use crate::kubelet::network::{self, PodNetwork};
use crate::kubelet::probe::{self, Probes};
use crate::kubelet::process::{Exit, Launch, Running};
use crate::kubelet::restart::Backoff;
use crate::kubelet::state::{self, PodState};
use crate::kubelet::status::{self, Conditions};
use crate::kubelet::volumes::{self, PathMap};
use k8s_openapi::api::core::v1::Pod;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

impl PodWorker {
    /// Load the state file (if a previous kubelet left one) and adopt live containers.
    pub(super) fn adopt(&mut self, pod: &Pod) {
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
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        self.terminal = matches!(phase, Some("Succeeded" | "Failed"));
        let spec = pod.spec.clone().unwrap_or_default();
        self.restart_policy = spec.restart_policy.clone().unwrap_or_else(|| "Always".into());
        let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0);
        self.grace = Duration::from_secs(grace as u64);
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
                    runtime.record.ended();
                    if !runtime.restarts(&self.restart_policy, Exit::unknown().code, false) {
                        runtime.record.final_termination = runtime.record.last_termination.take();
                        runtime.next_start = None;
                    }
                }
            } else if runtime.record.final_termination.is_some() {
                runtime.next_start = None;
            }
            if self.terminal {
                runtime.next_start = None;
            }
            self.containers.push(runtime);
        }
        if self.terminal {
            tracing::info!(pod = self.pod_name(), phase, "pod already finished; nothing starts");
        }
    }

    fn monitor(&self, index: usize, instance: u64, running: Running) -> AbortOnDrop {
        let reports = self.reports_tx.clone();
        AbortOnDrop(tokio::spawn(async move {
            let exit = running.wait().await;
            let _ = reports.send((index, instance, Report::Exited(exit)));
        }))
    }

    /// Bring the pod towards running: network, volumes, then every container due to start.
    pub(super) async fn sync(&mut self, pod: &Pod) {
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
        // Init containers in order, each gating the next; then all regular containers. Once
        // every gate has opened the pod is initialized for good: a restarting sidecar holds
        // nothing up any more.
        let mut gate_open = true;
        for index in 0..self.containers.len() {
            let runtime = &self.containers[index];
            let may_start = gate_open || self.state.initialized;
            let due = may_start && runtime.next_start.is_some_and(|at| at <= Instant::now());
            let needs_prober =
                runtime.running() && runtime.prober.is_none() && runtime.liveness_kill.is_none();
            if due || needs_prober {
                self.start_container(pod, index).await;
            }
            gate_open = gate_open && self.containers[index].lets_next_start();
        }
        if gate_open && !self.state.initialized {
            self.state.initialized = true;
            self.save();
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
        let paths = PathMap {
            mounts: volumes::container_mounts(&spec, &volumes),
            scratch: self.pod_dir.join("rootfs").join(&spec.name),
            kubelet_root: config.root.clone(),
        };
        let prepared = match env::resolve(&self.ctx.client, pod, &spec, &addresses).await {
            Ok(env) => container::exec_base(pod, &spec, &env, &paths, netns).map(|b| (env, b)),
            Err(error) => Err(error),
        };
        let runtime = &mut self.containers[index];
        let (env, base) = match prepared {
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
        runtime.env = env;
        runtime.paths = paths;
        runtime.exec_base = Some(base.clone());
        if !runtime.running() && !self.launch(index, &base).await {
            return;
        }
        let runtime = &mut self.containers[index];
        runtime.probes = runtime.resolve_probes(&config, &addresses.pod_ip);
        let probes = runtime.probes.clone();
        self.start_prober(index, probes);
    }

    /// Start the container's process: a fresh writable layer, then the program. False when it
    /// could not start (it is retried with backoff).
    async fn launch(&mut self, index: usize, base: &Launch) -> bool {
        let config = self.ctx.config.clone();
        let pod_name = self.pod_name();
        let runtime = &mut self.containers[index];
        let (paths, workdir) = (runtime.paths.clone(), base.workdir.clone());
        let dirs = tokio::task::spawn_blocking(move || {
            volumes::prepare_container_dirs(&paths, &workdir).map_err(|e| e.0)
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        let long_running = runtime.init != Some(InitKind::ToCompletion);
        let target = Target { mapcache_image: runtime.is_mapcache(), container: long_running };
        let spec = &runtime.spec;
        let launch = container::program_launch(
            &config,
            base,
            target,
            spec.command.as_deref().unwrap_or_default(),
            spec.args.as_deref().unwrap_or_default(),
            &runtime.env,
            &runtime.paths,
        );
        tracing::info!(pod = pod_name, container = spec.name, program = %launch.program.display(), args = ?launch.args, "starting container");
        let child = match dirs.and_then(|()| launch.spawn(&runtime.log)) {
            Ok(child) => child,
            Err(error) => {
                tracing::error!(pod = pod_name, container = spec.name, %error, "cannot start the container");
                runtime.waiting = Some(("RunContainerError".into(), error));
                runtime.next_start =
                    Some(Instant::now() + RETRY.max(runtime.backoff.on_exit(Instant::now())));
                return false;
            }
        };
        let Some(pid) = child.id() else {
            runtime.next_start = Some(Instant::now() + RETRY);
            return false;
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
        runtime.liveness_kill = None;
        runtime.started_instant = Some(Instant::now());
        runtime.instance = self.next_instance;
        self.next_instance += 1;
        let instance = self.containers[index].instance;
        self.containers[index].monitor = Some(self.monitor(index, instance, Running::Child(child)));
        self.save();
        true
    }

    /// Probe the container's current instance with `probes`, reporting to the worker.
    pub(super) fn start_prober(&mut self, index: usize, probes: Probes) {
        let runtime = &self.containers[index];
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
}
