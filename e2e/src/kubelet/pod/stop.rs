//! How a pod's containers end: graceful deletion (preStop hooks, SIGTERM, the rest of the
//! grace period, SIGKILL, then the object is deleted with a UID precondition), a pod gone from
//! the API, node shutdown, and the cleanup of orphans a killed kubelet left on disk.

use super::{Ending, GONE_GRACE, PodWorker, Report};
use crate::kubelet::Context;
use crate::kubelet::container::{self, ContainerRuntime, Target};
use crate::kubelet::network;
use crate::kubelet::probe;
use crate::kubelet::process;
use crate::kubelet::state::{self, PodState};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use std::time::{Duration, Instant};

impl PodWorker {
    /// Stop every running container: SIGTERM, up to `grace`, SIGKILL; then their exits.
    pub(super) async fn stop_all(&mut self, grace: Duration, ending: Ending) {
        let pod = self.latest();
        let deadline = Instant::now() + grace;
        for runtime in &mut self.containers {
            runtime.prober = None;
            runtime.record.ready = false;
            if let (Some(pid), Some(ticks)) = (runtime.record.pid, runtime.record.start_ticks)
                && state::is_same_process(pid, ticks)
            {
                process::signal_group(pid, libc::SIGTERM);
            }
        }
        self.await_exits(deadline, pod.as_deref(), ending).await;
        for runtime in &self.containers {
            if let (Some(pid), Some(ticks)) = (runtime.record.pid, runtime.record.start_ticks)
                && state::is_same_process(pid, ticks)
            {
                tracing::warn!(
                    pod = self.pod_name(),
                    container = runtime.spec.name,
                    "grace period over; SIGKILL"
                );
                process::signal_group(pid, libc::SIGKILL);
            }
        }
        self.await_exits(Instant::now() + Duration::from_secs(5), pod.as_deref(), ending).await;
        for runtime in &mut self.containers {
            runtime.monitor = None;
            runtime.next_start = None;
        }
    }

    /// Handle exit reports until no container runs or the deadline passes.
    pub(super) async fn await_exits(
        &mut self,
        deadline: Instant,
        pod: Option<&Pod>,
        ending: Ending,
    ) {
        let fallback = Pod::default();
        let pod = pod.unwrap_or(&fallback);
        while self.containers.iter().any(ContainerRuntime::running) {
            let report = tokio::time::timeout_at(deadline.into(), self.reports.recv()).await;
            match report {
                Ok(Some((index, instance, report @ Report::Exited(_)))) => {
                    self.handle(pod, index, instance, report, ending);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
    }

    /// Graceful deletion, then the object, the network and the pod directory go.
    pub(super) async fn terminate(&mut self, pod: &Pod) {
        self.terminating = true;
        if self.containers.iter().any(ContainerRuntime::running) {
            self.write_status(pod).await;
        }
        let grace = Duration::from_secs(
            pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64,
        );
        tracing::info!(pod = self.pod_name(), ?grace, "pod deleted: stopping it");
        let deadline = Instant::now() + grace;
        self.run_pre_stop_hooks(deadline).await;
        let left = deadline.saturating_duration_since(Instant::now());
        self.stop_all(left, Ending::Final).await;
        self.write_status(pod).await;
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.state.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match pods.delete(&self.state.name, &params).await {
            Ok(_) => tracing::info!(pod = self.pod_name(), "pod object deleted"),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => {
                tracing::warn!(pod = self.pod_name(), %error, "cannot delete the pod object")
            }
        }
        self.remove_everything().await;
    }

    /// preStop hooks of the running containers, side by side, bounded by the grace period.
    pub(super) async fn run_pre_stop_hooks(&self, deadline: Instant) {
        let config = &self.ctx.config;
        let pod_ip = self.addresses().pod_ip;
        let mut hooks = Vec::new();
        for runtime in self.containers.iter().filter(|c| c.running()) {
            let Some(pre_stop) = runtime.spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
            else {
                continue;
            };
            let base = runtime.exec_base.clone().unwrap_or_default();
            let env: Vec<(String, String)> = base.env.clone();
            let exec = |command: &[String]| {
                let target = Target { mapcache_image: runtime.is_mapcache(), container: false };
                container::program_launch(
                    config,
                    &base,
                    target,
                    command,
                    &[],
                    &env,
                    &runtime.mounts,
                )
            };
            let handler = probe::Handler {
                exec: pre_stop.exec.as_ref(),
                http_get: pre_stop.http_get.as_ref(),
                tcp_socket: pre_stop.tcp_socket.as_ref(),
            };
            let action =
                match (&pre_stop.sleep, probe::action(handler, &runtime.spec, &pod_ip, &exec)) {
                    (Some(sleep), _) => {
                        probe::Action::Sleep(Duration::from_secs(sleep.seconds.max(0) as u64))
                    }
                    (None, Some(action)) => action,
                    (None, None) => continue,
                };
            let (name, log) = (runtime.spec.name.clone(), runtime.log.clone());
            let pod_name = self.pod_name();
            hooks.push(async move {
                let timeout =
                    deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
                tracing::info!(pod = pod_name, container = name, "running the preStop hook");
                if let Err(error) = probe::run_action(&action, timeout, Some(&log)).await {
                    tracing::warn!(pod = pod_name, container = name, %error, "preStop hook failed");
                }
            });
        }
        let _ = tokio::time::timeout_at(deadline.into(), futures::future::join_all(hooks)).await;
    }

    pub(super) async fn teardown_network(&mut self) {
        if let Err(error) = network::teardown_pod(&self.state.netns, &self.state.host_veth).await {
            tracing::warn!(pod = self.pod_name(), %error, "cannot remove the pod network");
        }
        self.network_ready = false;
    }

    /// After the pod's end: network, IP, then the pod directory with its state file (last, so
    /// a kubelet killed halfway cleans up the rest as an orphan).
    pub(super) async fn remove_everything(&mut self) {
        self.teardown_network().await;
        if let Some(ip) = self.state.pod_ip {
            self.ctx.ips.release(ip);
        }
        if let Err(error) = std::fs::remove_dir_all(&self.pod_dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(pod = self.pod_name(), %error, "cannot remove the pod directory");
        }
    }
}

/// SIGTERM, then SIGKILL after `grace` if it is still the same process.
pub(super) async fn stop_process(pid: u32, start_ticks: u64, grace: Duration) {
    process::signal_group(pid, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !state::is_same_process(pid, start_ticks) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if state::is_same_process(pid, start_ticks) {
        process::signal_group(pid, libc::SIGKILL);
    }
}

/// A pod on disk that the API no longer has: its processes (if still the recorded ones) are
/// stopped, its network and directory removed, its IP freed.
pub async fn clean_orphan(ctx: &Context, orphan: PodState) {
    tracing::info!(
        pod = format!("{}/{}", orphan.namespace, orphan.name),
        uid = orphan.uid,
        "cleaning up an orphaned pod"
    );
    let stops =
        orphan.containers.values().filter_map(|record| match (record.pid, record.start_ticks) {
            (Some(pid), Some(ticks)) => Some(stop_process(pid, ticks, GONE_GRACE)),
            _ => None,
        });
    futures::future::join_all(stops).await;
    if let Err(error) = network::teardown_pod(&orphan.netns, &orphan.host_veth).await {
        tracing::warn!(uid = orphan.uid, %error, "cannot remove an orphan's network");
    }
    if let Some(ip) = orphan.pod_ip {
        ctx.ips.release(ip);
    }
    let dir = ctx.config.pod_dir(&orphan.uid);
    if let Err(error) = std::fs::remove_dir_all(&dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), %error, "cannot remove an orphan's directory");
    }
}
