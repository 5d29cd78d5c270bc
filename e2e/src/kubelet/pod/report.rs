//! The pod's status as the kubelet writes it to `pods/status`: phase, conditions (readiness
//! gates honoured), addresses, start time, QoS class and every container's status; written
//! only when it changed, as a strategic merge patch (the kubelet's own way): `conditions` merge
//! by `type`, so the patch carries only the conditions this kubelet owns and those of others
//! (the Eviction API's `DisruptionTarget`, a readiness gate's) stay as they are. The patch names
//! the pod's UID: the API server refuses it for a replacement of the same name.

use super::PodWorker;
use crate::kubelet::container::{ContainerRuntime, InitKind};
use crate::kubelet::status::{self, ContainerPhase};
use k8s_openapi::api::core::v1::{HostIP, Pod, PodCondition, PodIP, PodStatus};
use kube::Api;
use kube::api::{Patch, PatchParams};

impl PodWorker {
    /// Write `pods/status` if it differs from what was last written.
    pub(super) async fn write_status(&mut self, pod: &Pod) {
        if self.terminal {
            return; // the API's final status stands
        }
        let status = self.status(pod);
        let Ok(value) = serde_json::to_value(&status) else { return };
        if self.written.as_ref() == Some(&value) {
            return;
        }
        let patch = serde_json::json!({"metadata": {"uid": self.uid}, "status": value});
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.state.namespace);
        let params = PatchParams {
            field_manager: Some(crate::kubelet::FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match pods.patch_status(&self.state.name, &params, &Patch::Strategic(&patch)).await {
            Ok(_) => self.written = Some(value),
            Err(error) => {
                tracing::debug!(pod = self.pod_name(), %error, "status write failed; retrying");
                self.written = None;
            }
        }
    }

    /// The status as the kubelet computes it, with only the conditions it owns.
    pub(super) fn status(&mut self, pod: &Pod) -> PodStatus {
        let spec = pod.spec.clone().unwrap_or_default();
        let current = pod.status.clone().unwrap_or_default();
        let initialized = self.state.initialized
            || self.containers.iter().filter(|c| c.init.is_some()).all(|c| c.lets_next_start());
        let initializing = ("PodInitializing".to_string(), String::new());
        let waiting = self.pod_waiting.as_ref().or((!initialized).then_some(&initializing));
        let status_of = |c: &ContainerRuntime| {
            let mut status = c.status(waiting);
            if c.init == Some(InitKind::ToCompletion) && c.lets_next_start() {
                status.ready = true; // a completed init container, as the kubelet reports it
            }
            status
        };
        let init_statuses: Vec<_> =
            self.containers.iter().filter(|c| c.init.is_some()).map(status_of).collect();
        // Regular containers and native sidecars decide readiness.
        let statuses: Vec<_> =
            self.containers.iter().filter(|c| c.init.is_none()).map(status_of).collect();
        let sidecars_ready = self
            .containers
            .iter()
            .filter(|c| c.init == Some(InitKind::Sidecar))
            .all(|c| c.status(None).ready);
        let phases: Vec<ContainerPhase> = self
            .containers
            .iter()
            .filter(|c| c.init.is_none())
            .map(|c| {
                if c.running() {
                    ContainerPhase::Running
                } else if let Some(done) = &c.record.final_termination {
                    ContainerPhase::Terminated { exit_code: done.exit_code }
                } else {
                    ContainerPhase::Waiting {
                        terminated_before: c.record.last_termination.is_some(),
                    }
                }
            })
            .collect();
        let policy = if self.terminating {
            "Never"
        } else {
            spec.restart_policy.as_deref().unwrap_or("Always")
        };
        let init_failed = self.containers.iter().any(|c| {
            c.init == Some(InitKind::ToCompletion)
                && c.record.final_termination.as_ref().is_some_and(|t| t.exit_code != 0)
        });
        let phase = match (initialized, init_failed) {
            (false, true) => "Failed",
            (false, false) => "Pending",
            (true, _) => status::pod_phase(policy, &phases),
        };
        let unready: Vec<&str> =
            statuses.iter().filter(|s| !s.ready).map(|s| s.name.as_str()).collect();
        let containers_ready = unready.is_empty() && !statuses.is_empty() && sidecars_ready;
        let gates: Vec<&str> =
            spec.readiness_gates.iter().flatten().map(|g| g.condition_type.as_str()).collect();
        let gate_true = |kind: &str| {
            current.conditions.iter().flatten().any(|c| c.type_ == kind && c.status == "True")
        };
        let gates_ready = gates.iter().all(|g| gate_true(g));
        let ready_reason = if !containers_ready {
            Some("ContainersNotReady")
        } else if !gates_ready {
            Some("ReadinessGatesNotReady")
        } else {
            None
        };
        let finished = phase == "Succeeded" || phase == "Failed";
        let mut conditions: Vec<PodCondition> = vec![
            self.conditions.condition("PodReadyToStartContainers", self.network_ready, None),
            self.conditions.condition(
                "Initialized",
                initialized,
                (!initialized).then_some("ContainersNotInitialized"),
            ),
            self.conditions.condition(
                "ContainersReady",
                containers_ready,
                (!containers_ready).then_some("ContainersNotReady"),
            ),
            self.conditions.condition("Ready", containers_ready && gates_ready, ready_reason),
            self.conditions.condition("PodScheduled", true, None),
        ];
        if finished {
            for condition in &mut conditions[2..4] {
                condition.reason = Some("PodCompleted".into());
            }
        }
        let pod_ip =
            self.network_ready.then(|| self.addresses().pod_ip).filter(|ip| !ip.is_empty());
        let host_ip = self.ctx.config.host_ip();
        PodStatus {
            phase: Some(phase.to_string()),
            conditions: Some(conditions),
            host_ip: Some(host_ip.clone()),
            host_ips: Some(vec![HostIP { ip: host_ip }]),
            pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
            pod_ip,
            start_time: self
                .state
                .start_time
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
            qos_class: Some(
                current.qos_class.clone().unwrap_or_else(|| status::qos_class(&spec).to_string()),
            ),
            container_statuses: Some(statuses),
            init_container_statuses: Some(init_statuses).filter(|s| !s.is_empty()),
            ..PodStatus::default()
        }
    }
}
