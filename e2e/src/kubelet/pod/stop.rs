//! How a pod's containers end: graceful deletion, a pod gone from the API, node shutdown (the
//! module docs of `pod` list the steps), the kill of a container that failed its liveness or
//! startup probe, and the cleanup of orphans a killed kubelet left on disk.
//!
//! Nothing of a pod may outlive it: a process that forked into the background, even into a
//! session of its own, is still in the pod's netns, and `ip netns del` only removes the
//! namespace's name, not the namespace, while a process holds it. So before the object is
//! deleted and before the network and the IP are released, every process still in the netns is
//! SIGKILLed and waited for; the pod object goes only when nothing of the pod runs (as the
//! kubelet deletes it only once the pod's resources are reclaimed), and the IP only when no
//! process can still answer on it.

use super::{Ending, PodWorker};
use crate::kubelet::container::ContainerRuntime;
use crate::kubelet::network;
use crate::kubelet::probe::{self, Probes};
use crate::kubelet::process;
use crate::kubelet::state::PodState;
use crate::kubelet::{AbortOnDrop, Context, KubeletConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, Preconditions};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Grace of a pod removed from the API without us (the kubelet's minimum grace period).
const GONE_GRACE: Duration = Duration::from_secs(2);
/// Grace of every container when the node shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The least time between SIGTERM and SIGKILL, even when preStop used up the grace period
/// (the kubelet's `minimumGracePeriodInSeconds`).
const MIN_GRACE_AFTER_PRE_STOP: Duration = Duration::from_secs(2);
/// How long exits are awaited after SIGKILL before the netns sweep takes over.
const AFTER_SIGKILL: Duration = Duration::from_secs(5);
/// First and longest delay between attempts of the final delete.
const DELETE_RETRY_FIRST: Duration = Duration::from_secs(1);
const DELETE_RETRY_MAX: Duration = Duration::from_secs(30);

/// How a wait during a stop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waited {
    /// What was waited for happened (hooks done, or no container runs).
    Done,
    DeadlinePassed,
    /// The node started shutting down: the stop continues as a node shutdown.
    NodeShutdown,
}

impl PodWorker {
    /// Graceful deletion (module docs of `pod`).
    pub(super) async fn terminate(&mut self, pod: &Pod) {
        self.terminating = true;
        self.keep_only_readiness_probes();
        self.write_status(pod).await;
        let grace = Duration::from_secs(
            pod.metadata.deletion_grace_period_seconds.unwrap_or(30).max(0) as u64,
        );
        tracing::info!(pod = self.pod_name(), ?grace, "pod deleted: stopping it");
        let deadline = Instant::now() + grace;
        if self.run_pre_stop_hooks(deadline).await == Waited::NodeShutdown {
            return self.shut_down().await;
        }
        let left = deadline.saturating_duration_since(Instant::now()).max(MIN_GRACE_AFTER_PRE_STOP);
        if !self.stop_all(left, Ending::Final).await || !self.kill_leftovers().await {
            return self.shut_down().await;
        }
        self.release_network().await;
        self.write_latest_status().await;
        if !self.delete_object().await {
            return self.shut_down().await;
        }
        self.remove_directory().await;
    }

    /// The pod is gone from the API (force deletion): a short stop, then everything goes.
    pub(super) async fn gone(&mut self) {
        tracing::info!(pod = self.pod_name(), "pod gone from the API; stopping it");
        for runtime in &mut self.containers {
            runtime.prober = None;
        }
        if !self.stop_all(GONE_GRACE, Ending::Final).await || !self.kill_leftovers().await {
            return self.shut_down().await;
        }
        self.release_network().await;
        self.remove_directory().await;
    }

    /// Node shutdown: SIGTERM, a short grace, SIGKILL, the netns emptied and removed. The state
    /// file stays: a later kubelet starts the pod again with its IP, or finishes its deletion.
    pub(super) async fn shut_down(&mut self) {
        for runtime in &mut self.containers {
            runtime.prober = None;
            runtime.liveness_kill = None;
        }
        self.stop_all(SHUTDOWN_GRACE, Ending::NodeShutdown).await;
        let netns = self.state.netns.clone();
        let sweep = network::kill_netns_processes(&netns);
        if tokio::time::timeout(SHUTDOWN_GRACE, sweep).await.is_err() {
            tracing::warn!(pod = self.pod_name(), "processes survive SIGKILL in the pod's netns");
        }
        self.teardown_network().await;
        self.save();
    }

    /// Liveness and startup probes stop; readiness goes on for the containers that had started,
    /// so the pod stays Ready until its readiness probe fails, as with the kubelet.
    fn keep_only_readiness_probes(&mut self) {
        for index in 0..self.containers.len() {
            let runtime = &mut self.containers[index];
            runtime.prober = None;
            let probing =
                runtime.running() && runtime.record.started && runtime.liveness_kill.is_none();
            if let Some(readiness) = runtime.probes.readiness.clone().filter(|_| probing) {
                self.start_prober(
                    index,
                    Probes { readiness: Some(readiness), ..Probes::default() },
                );
            }
        }
    }

    /// SIGTERM to every running container, up to `grace` for them to exit, SIGKILL, and their
    /// exits. False when the node starts shutting down meanwhile (unless that is the ending).
    async fn stop_all(&mut self, grace: Duration, ending: Ending) -> bool {
        for runtime in &self.containers {
            if let (Some(pid), Some(ticks)) = (runtime.record.pid, runtime.record.start_ticks) {
                process::signal_container(pid, ticks, libc::SIGTERM);
            }
        }
        if self.await_exits(Instant::now() + grace, ending).await == Waited::NodeShutdown {
            return false;
        }
        for runtime in &self.containers {
            if let (Some(pid), Some(ticks)) = (runtime.record.pid, runtime.record.start_ticks)
                && process::signal_container(pid, ticks, libc::SIGKILL)
            {
                tracing::warn!(
                    pod = self.pod_name(),
                    container = runtime.spec.name,
                    "grace period over; SIGKILL"
                );
            }
        }
        if self.await_exits(Instant::now() + AFTER_SIGKILL, ending).await == Waited::NodeShutdown {
            return false;
        }
        for runtime in &mut self.containers {
            runtime.prober = None;
            runtime.monitor = None;
            runtime.liveness_kill = None;
            runtime.next_start = None;
        }
        true
    }

    /// Handle reports until no container runs (or the deadline, or node shutdown).
    async fn await_exits(&mut self, deadline: Instant, ending: Ending) -> Waited {
        self.serve_reports(deadline, ending, None::<std::future::Ready<()>>).await
    }

    /// preStop hooks of the running containers (but one a liveness kill already stops), side
    /// by side, cut at the deadline; reports are handled meanwhile.
    async fn run_pre_stop_hooks(&mut self, deadline: Instant) -> Waited {
        let config = self.ctx.config.clone();
        let pod_ip = self.addresses().pod_ip;
        let hooks: Vec<_> = self
            .containers
            .iter()
            .filter(|c| c.running() && c.liveness_kill.is_none())
            .filter_map(|c| pre_stop_hook(c, &config, &pod_ip, deadline, self.pod_name()))
            .collect();
        if hooks.is_empty() {
            return Waited::Done;
        }
        let hooks = async {
            futures::future::join_all(hooks).await;
        };
        self.serve_reports(deadline, Ending::Final, Some(hooks)).await
    }

    /// Handle reports (exits, readiness changes) and write the status they change, until
    /// `hooks` complete (or, without hooks, no container runs), the deadline passes, or the
    /// node starts shutting down. Dropping unfinished hooks kills their processes.
    async fn serve_reports<F: Future<Output = ()>>(
        &mut self,
        deadline: Instant,
        ending: Ending,
        hooks: Option<F>,
    ) -> Waited {
        let waits_for_hooks = hooks.is_some();
        let hooks = async move {
            match hooks {
                Some(hooks) => hooks.await,
                None => std::future::pending().await,
            }
        };
        let shutdown = node_shuts_down(self.node_shutdown.clone());
        tokio::pin!(hooks, shutdown);
        loop {
            if !waits_for_hooks && !self.containers.iter().any(ContainerRuntime::running) {
                return Waited::Done;
            }
            tokio::select! {
                () = &mut hooks => return Waited::Done,
                Some((index, instance, report)) = self.reports.recv() => {
                    self.handle(index, instance, report, ending);
                    if ending == Ending::Final {
                        self.write_latest_status().await;
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => return Waited::DeadlinePassed,
                () = &mut shutdown, if ending != Ending::NodeShutdown => {
                    return Waited::NodeShutdown;
                }
            }
        }
    }

    /// Write the status of the pod as the API has it now, if it still has it.
    async fn write_latest_status(&mut self) {
        if let Some(pod) = self.latest() {
            self.write_status(&pod).await;
        }
    }

    /// Kill a container that failed its liveness or startup probe, as the kubelet does: its
    /// preStop hook, then SIGTERM with what is left of `grace` (at least 2 s), then SIGKILL.
    /// Its exit restarts it (under any policy but Never).
    pub(super) fn kill_for_probe(&mut self, index: usize, grace: Duration) {
        let config = self.ctx.config.clone();
        let pod_ip = self.addresses().pod_ip;
        let pod_name = self.pod_name();
        let Some(runtime) = self.containers.get_mut(index) else { return };
        runtime.record.ready = false;
        runtime.prober = None;
        let (Some(pid), Some(ticks)) = (runtime.record.pid, runtime.record.start_ticks) else {
            return;
        };
        let deadline = Instant::now() + grace;
        let hook = pre_stop_hook(runtime, &config, &pod_ip, deadline, pod_name);
        let kill = async move {
            if let Some(hook) = hook {
                let _ = tokio::time::timeout_at(deadline.into(), hook).await;
            }
            let left =
                deadline.saturating_duration_since(Instant::now()).max(MIN_GRACE_AFTER_PRE_STOP);
            stop_process(pid, ticks, left).await;
        };
        runtime.liveness_kill = Some(AbortOnDrop(tokio::spawn(kill)));
        self.save();
    }

    /// SIGKILL whatever still runs in the pod's netns and wait until nothing does. False when
    /// the node starts shutting down first.
    async fn kill_leftovers(&self) -> bool {
        tokio::select! {
            () = network::kill_netns_processes(&self.state.netns) => true,
            () = node_shuts_down(self.node_shutdown.clone()) => false,
        }
    }

    /// Delete the pod object with grace 0 and a UID precondition (a replacement of the same
    /// name is another pod, never touched), retrying with backoff until the API server settles
    /// it. False when the node starts shutting down first.
    async fn delete_object(&self) -> bool {
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.state.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let shutdown = node_shuts_down(self.node_shutdown.clone());
        tokio::pin!(shutdown);
        let mut delay = DELETE_RETRY_FIRST;
        loop {
            let result = tokio::select! {
                result = pods.delete(&self.state.name, &params) => result,
                () = &mut shutdown => return false,
            };
            match delete_settled(&result) {
                Ok(outcome) => {
                    tracing::info!(pod = self.pod_name(), outcome, "final delete");
                    return true;
                }
                Err(error) => tracing::warn!(
                    pod = self.pod_name(),
                    %error,
                    retry_in = ?delay,
                    "cannot delete the pod object"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut shutdown => return false,
            }
            delay = (delay * 2).min(DELETE_RETRY_MAX);
        }
    }

    pub(super) async fn teardown_network(&mut self) {
        if let Err(error) = network::teardown_pod(&self.state.netns, &self.state.host_veth).await {
            tracing::warn!(pod = self.pod_name(), %error, "cannot remove the pod network");
        }
        self.network_ready = false;
    }

    /// Once nothing of the pod runs: the netns and veth go, then the IP is dropped from the
    /// state file and only then handed back (a kubelet restarted in between must not hold an
    /// address another pod got meanwhile).
    async fn release_network(&mut self) {
        self.teardown_network().await;
        if let Some(ip) = self.state.pod_ip.take() {
            self.save();
            self.ctx.ips.release(ip);
        }
    }

    /// The pod directory with its state file, last: a kubelet killed before finds the rest to
    /// finish (an orphan to clean, or a deletion to complete).
    async fn remove_directory(&mut self) {
        if let Err(error) = remove_pod_dir(self.pod_dir.clone()).await {
            tracing::warn!(pod = self.pod_name(), %error, "cannot remove the pod directory");
        }
    }
}

/// Resolves once the node shuts down (or the kubelet drops the signal, which it does only
/// after every worker has ended).
async fn node_shuts_down(mut node_shutdown: watch::Receiver<bool>) {
    let _ = node_shutdown.wait_for(|stop| *stop).await;
}

/// Whether the final delete is settled, and how: deleted, already gone (404), or the name
/// belongs to a pod of another UID now (409: the precondition). Anything else is retried.
fn delete_settled<T>(result: &Result<T, kube::Error>) -> Result<&'static str, String> {
    match result {
        Ok(_) => Ok("deleted"),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok("already gone"),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok("the name has another UID"),
        Err(error) => Err(error.to_string()),
    }
}

/// A container's preStop hook as a future that owns what it needs; None without a hook.
fn pre_stop_hook(
    runtime: &ContainerRuntime,
    config: &KubeletConfig,
    pod_ip: &str,
    deadline: Instant,
    pod_name: String,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let action = runtime.pre_stop_action(config, pod_ip)?;
    let (name, log) = (runtime.spec.name.clone(), runtime.log.clone());
    Some(async move {
        let timeout =
            deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        tracing::info!(pod = pod_name, container = name, "running the preStop hook");
        if let Err(error) = probe::run_action(&action, timeout, Some(&log)).await {
            tracing::warn!(pod = pod_name, container = name, %error, "preStop hook failed");
        }
    })
}

/// SIGTERM, up to `grace`, SIGKILL; returns once the process is gone. Nothing is sent once
/// the pid is no longer the recorded process.
async fn stop_process(pid: u32, start_ticks: u64, grace: Duration) {
    if !process::signal_container(pid, start_ticks, libc::SIGTERM) {
        return;
    }
    let gone = process::poll_until_gone(pid, start_ticks);
    if tokio::time::timeout(grace, gone).await.is_ok() {
        return;
    }
    process::signal_container(pid, start_ticks, libc::SIGKILL);
    process::poll_until_gone(pid, start_ticks).await;
}

/// Remove a pod directory (volumes, writable layers: maybe large) off the runtime's threads.
async fn remove_pod_dir(dir: PathBuf) -> std::io::Result<()> {
    let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&dir)).await;
    match removed.map_err(std::io::Error::other)? {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// A pod on disk that the API no longer has: its processes (if still the recorded ones) are
/// stopped, whatever else runs in its netns killed, its network and directory removed, its IP
/// freed last.
pub async fn clean_orphan(ctx: Arc<Context>, orphan: PodState) {
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
    network::kill_netns_processes(&orphan.netns).await;
    if let Err(error) = network::teardown_pod(&orphan.netns, &orphan.host_veth).await {
        tracing::warn!(uid = orphan.uid, %error, "cannot remove an orphan's network");
    }
    if let Some(ip) = orphan.pod_ip {
        ctx.ips.release(ip);
    }
    let dir = ctx.config.pod_dir(&orphan.uid);
    if let Err(error) = remove_pod_dir(dir.clone()).await {
        tracing::warn!(dir = %dir.display(), %error, "cannot remove an orphan's directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> Result<(), kube::Error> {
        Err(kube::Error::Api(kube::core::Status::failure("x", "y").with_code(code).boxed()))
    }

    #[test]
    fn the_final_delete_is_settled_only_by_success_404_and_409() {
        assert_eq!(delete_settled(&Ok(())), Ok("deleted"));
        assert_eq!(delete_settled(&api_error(404)), Ok("already gone"));
        assert_eq!(delete_settled(&api_error(409)), Ok("the name has another UID"));
        for retried in [403, 429, 500, 503] {
            assert!(delete_settled(&api_error(retried)).is_err(), "{retried} is retried");
        }
    }
}
