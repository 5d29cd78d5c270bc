//! `update_status`: the status subresource, computed from what `observe` saw (pure, tested) and
//! written with one merge patch at the end of the pipeline.
//!
//! Conditions follow `metav1.Condition`: `lastTransitionTime` changes only when the status
//! flips, `observedGeneration` says which spec the condition speaks about.

use crate::operator::crd::{MapCache, MapCacheStatus, PodStatus};
use crate::operator::observe::Observed;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

/// Condition types the operator maintains (Maintenance and RollingUpdate are set by the
/// maintenance and rollout steps).
pub mod condition {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const MAINTENANCE: &str = "Maintenance";
    pub const ROLLING_UPDATE: &str = "RollingUpdate";
    /// A pod found snapshots at start and could use none: it started empty (set by the
    /// maintenance step, which reads the pods' `/v1/stats`).
    pub const SNAPSHOTS_CORRUPT: &str = "SnapshotsCorrupt";
}

/// Values of `status.phase`.
pub mod phase {
    pub const PENDING: &str = "Pending";
    pub const RUNNING: &str = "Running";
    pub const UPDATING: &str = "Updating";
    pub const MAINTENANCE: &str = "Maintenance";
    pub const DEGRADED: &str = "Degraded";
    pub const INVALID: &str = "Invalid";
}

/// Sets condition `type_` in `conditions`, keeping `lastTransitionTime` unless the status
/// changes. Reason and message are always refreshed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status {
                existing.last_transition_time = now.clone();
            }
            existing.status = status;
            existing.reason = reason.into();
            existing.message = message;
            existing.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: type_.into(),
            status,
            reason: reason.into(),
            message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The StatefulSet ordinal at the end of a pod name (`cache-2` -> 2).
fn ordinal(name: &str) -> Option<u32> {
    name.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

/// Whether condition `type_` is present and True.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// The status after a successful apply + observe: replicas, revisions, pods and the Ready,
/// Progressing, Degraded and InvalidSpec conditions. Fields the later steps own (pod engine
/// figures, checklists, `rollout`, Maintenance/RollingUpdate) are carried over from `previous`.
pub fn observed_status(
    mc: &MapCache,
    observed: &Observed,
    previous: Option<&MapCacheStatus>,
    now: &Time,
) -> MapCacheStatus {
    let mut status = previous.cloned().unwrap_or_default();
    let generation = mc.metadata.generation;
    let replicas = mc.spec.replicas;
    status.observed_generation = generation;
    status.replicas = observed.pods.len() as i32;
    status.ready_replicas = observed.ready_count();
    status.selector = Some(crate::operator::build::selector_string(mc));
    status.update_revision = Some(observed.update_revision.clone());
    status.current_revision = observed.current_revision.clone();
    status.pods = observed
        .pods
        .iter()
        .map(|pod| {
            let mut pod_status =
                status.pods.iter().find(|known| known.name == pod.name).cloned().unwrap_or_else(
                    || PodStatus { name: pod.name.clone(), ..PodStatus::default() },
                );
            pod_status.ready = pod.ready && !pod.terminating;
            pod_status.revision = pod.revision.clone();
            pod_status
        })
        .collect();
    // A pod between its deletion and its replacement's creation is not observed, but it is
    // still one of the cache's ordinals: keep its entry (not ready) so the evidence recorded for
    // it (checklist, maintenance) survives the replacement. A reconcile in that window dropped it.
    let previous_pods = previous.map(|p| p.pods.as_slice()).unwrap_or_default();
    for known in previous_pods {
        let in_range = ordinal(&known.name).is_some_and(|o| i64::from(o) < i64::from(replicas));
        if in_range && !status.pods.iter().any(|p| p.name == known.name) {
            status.pods.push(PodStatus { ready: false, ..known.clone() });
        }
    }
    status.pods.sort_by_key(|p| ordinal(&p.name));
    sum_pod_figures(&mut status);

    let ready = status.ready_replicas;
    let outdated = observed.outdated_pods().count();
    let all_ready = ready >= replicas;
    let conditions = &mut status.conditions;
    let was_healthy =
        is_true(conditions, condition::READY) || is_true(conditions, condition::DEGRADED);
    set_condition(
        conditions,
        condition::INVALID_SPEC,
        false,
        "Valid",
        "the spec is valid".into(),
        generation,
        now,
    );
    set_condition(
        conditions,
        condition::READY,
        all_ready,
        if all_ready { "AllPodsReady" } else { "PodsNotReady" },
        format!("{ready}/{replicas} pods ready"),
        generation,
        now,
    );
    let progressing = !all_ready || outdated > 0;
    set_condition(
        conditions,
        condition::PROGRESSING,
        progressing,
        if outdated > 0 {
            "PodsOutdated"
        } else if progressing {
            "PodsStarting"
        } else {
            "UpToDate"
        },
        match (outdated, all_ready) {
            (0, true) => format!("all pods on revision {}", observed.update_revision),
            (0, false) => format!("{} of {replicas} pods not ready yet", replicas - ready),
            _ => format!("{outdated} pods not on revision {}", observed.update_revision),
        },
        generation,
        now,
    );
    let degraded = !all_ready && was_healthy;
    set_condition(
        conditions,
        condition::DEGRADED,
        degraded,
        if degraded { "PodsLost" } else { "Healthy" },
        if degraded {
            format!("{} pods of {replicas} not ready after the cache was ready", replicas - ready)
        } else {
            "no pod lost".into()
        },
        generation,
        now,
    );
    status
}

/// `keys` and `tombstones` of the cache: the sums over its pods.
pub fn sum_pod_figures(status: &mut MapCacheStatus) {
    status.keys = status.pods.iter().map(|p| p.keys).sum();
    status.tombstones = status.pods.iter().map(|p| p.tombstones).sum();
}

/// Sets `phase` from the conditions, after maintain and roll had their say.
pub fn set_phase(status: &mut MapCacheStatus, replicas: i32) {
    let conditions = &status.conditions;
    let phase = if is_true(conditions, condition::INVALID_SPEC) {
        phase::INVALID
    } else if status.rollout.is_some() || is_true(conditions, condition::ROLLING_UPDATE) {
        phase::UPDATING
    } else if is_true(conditions, condition::DEGRADED) {
        phase::DEGRADED
    } else if is_true(conditions, condition::MAINTENANCE) {
        phase::MAINTENANCE
    } else if status.ready_replicas == 0 && replicas > 0 {
        phase::PENDING
    } else if is_true(conditions, condition::PROGRESSING) {
        phase::UPDATING
    } else {
        phase::RUNNING
    };
    status.phase = Some(phase.into());
}

/// The status of a cache whose spec failed validation: InvalidSpec=True with `message`, phase
/// Invalid; everything else stays as it was (nothing was applied).
pub fn invalid_status(mc: &MapCache, message: String, now: &Time) -> MapCacheStatus {
    status_with_condition(mc, condition::INVALID_SPEC, "InvalidSpec", message, now)
}

/// The status of a cache whose children the API server refused (RBAC, a quota, an immutable
/// field): Degraded=True, reason ApplyFailed, with the API server's answer, so `kubectl get mc`
/// and `describe` show why nothing runs. The next successful reconcile recomputes Degraded.
pub fn apply_failed_status(mc: &MapCache, message: String, now: &Time) -> MapCacheStatus {
    status_with_condition(mc, condition::DEGRADED, "ApplyFailed", message, now)
}

/// The previous status with one condition set True and the phase that follows from it.
fn status_with_condition(
    mc: &MapCache,
    kind: &str,
    reason: &str,
    message: String,
    now: &Time,
) -> MapCacheStatus {
    let mut status = mc.status.clone().unwrap_or_default();
    status.observed_generation = mc.metadata.generation;
    set_condition(&mut status.conditions, kind, true, reason, message, mc.metadata.generation, now);
    set_phase(&mut status, mc.spec.replicas);
    status
}

/// How far a live engine figure (a pod's keys, tombstones, memory, as a fraction of the larger
/// value; its tombstone ratio, absolute) must move before that change alone is worth a status
/// write. Under client load the figures move on every poll; writing each move made a status
/// patch per reconcile. A figure that crosses zero is always written.
pub const FIGURE_TOLERANCE: f64 = 0.01;

/// Whether `new` says something `old` does not: any field but the live engine figures changed
/// (a condition, a record, a pod's readiness, a revision), or a figure moved past
/// [`FIGURE_TOLERANCE`]. When it says nothing new the patch is skipped, so the figures in status
/// lag the node's by at most the tolerance; any real change writes them fresh.
pub fn worth_writing(old: Option<&MapCacheStatus>, new: &MapCacheStatus) -> bool {
    let Some(old) = old else { return true };
    if without_figures(old) != without_figures(new) {
        return true;
    }
    old.pods.iter().zip(&new.pods).any(|(old, new)| {
        count_moved(old.keys, new.keys)
            || count_moved(old.tombstones, new.tombstones)
            || count_moved(old.memory_bytes, new.memory_bytes)
            || (old.tombstone_ratio - new.tombstone_ratio).abs() > FIGURE_TOLERANCE
    })
}

/// The status with every live figure zeroed: what must match exactly.
fn without_figures(status: &MapCacheStatus) -> MapCacheStatus {
    let mut status = status.clone();
    status.keys = 0;
    status.tombstones = 0;
    for pod in &mut status.pods {
        pod.keys = 0;
        pod.tombstones = 0;
        pod.tombstone_ratio = 0.0;
        pod.memory_bytes = 0;
    }
    status
}

fn count_moved(old: u64, new: u64) -> bool {
    if (old == 0) != (new == 0) {
        return true;
    }
    old.abs_diff(new) as f64 > old.max(new) as f64 * FIGURE_TOLERANCE
}

/// The merge patch body: `{"status": ...}` with explicit nulls for cleared optional fields, so
/// a finished rollout or a vanished revision is removed rather than left behind.
pub fn patch_body(status: &MapCacheStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(object) = value.as_object_mut() {
        for key in ["observedGeneration", "phase", "currentRevision", "updateRevision", "rollout"] {
            object.entry(key).or_insert(serde_json::Value::Null);
        }
        // A merge patch merges objects field by field: the rollout's optional fields must be
        // nulled too, or the previous pod's evictedUid/snapshotKeys/blockedOn would survive
        // into the next pod's state.
        if let Some(rollout) = object.get_mut("rollout").and_then(|r| r.as_object_mut()) {
            for key in ["blockedOn", "snapshotKeys", "evictedUid"] {
                rollout.entry(key).or_insert(serde_json::Value::Null);
            }
        }
    }
    serde_json::json!({ "status": value })
}

/// Writes the status subresource (merge patch).
pub async fn update_status(
    client: &kube::Client,
    mc: &MapCache,
    status: &MapCacheStatus,
) -> Result<(), kube::Error> {
    let api: Api<MapCache> = Api::namespaced(client.clone(), &mc.namespace().unwrap_or_default());
    api.patch_status(&mc.name_any(), &PatchParams::default(), &Patch::Merge(patch_body(status)))
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::RolloutStatus;
    use crate::operator::observe::from_pods;
    use crate::operator::observe::tests::pod;
    use k8s_openapi::jiff::Timestamp;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).expect("valid time"))
    }

    fn condition<'a>(status: &'a MapCacheStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).expect("condition present")
    }

    #[test]
    fn transition_time_changes_only_when_status_flips() {
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Ready",
            false,
            "PodsNotReady",
            "0/3".into(),
            Some(1),
            &at(100),
        );
        set_condition(
            &mut conditions,
            "Ready",
            false,
            "PodsNotReady",
            "1/3".into(),
            Some(2),
            &at(200),
        );
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].message, "1/3");
        assert_eq!(conditions[0].observed_generation, Some(2));
        set_condition(
            &mut conditions,
            "Ready",
            true,
            "AllPodsReady",
            "3/3".into(),
            Some(2),
            &at(300),
        );
        assert_eq!(conditions[0].last_transition_time, at(300));
        assert_eq!(conditions[0].status, "True");
        assert_eq!(conditions[0].reason, "AllPodsReady");
    }

    #[test]
    fn a_refused_apply_is_degraded_with_the_api_servers_answer() {
        let mc = MapCache::test();
        let status = apply_failed_status(&mc, "secrets is forbidden".into(), &at(10));
        assert_eq!(condition(&status, "Degraded").status, "True");
        assert_eq!(condition(&status, "Degraded").reason, "ApplyFailed");
        assert_eq!(condition(&status, "Degraded").message, "secrets is forbidden");
        assert_eq!(status.phase.as_deref(), Some("Degraded"));
        assert_eq!(status.observed_generation, Some(1));
    }

    #[test]
    fn all_ready_pods_on_update_revision_are_running() {
        let mc = MapCache::test();
        let observed = from_pods(
            "cache",
            &[pod(0, true, "r1"), pod(1, true, "r1"), pod(2, true, "r1")],
            "r1".into(),
            None,
        );
        let mut status = observed_status(&mc, &observed, None, &at(10));
        set_phase(&mut status, 3);
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.ready_replicas, 3);
        assert_eq!(status.replicas, 3);
        assert_eq!(
            status.selector.as_deref(),
            Some("app.kubernetes.io/instance=cache,app.kubernetes.io/name=mapcache")
        );
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.current_revision.as_deref(), Some("r1"));
        assert_eq!(status.update_revision.as_deref(), Some("r1"));
        assert_eq!(condition(&status, "Ready").status, "True");
        assert_eq!(condition(&status, "Progressing").status, "False");
        assert_eq!(condition(&status, "Progressing").message, "all pods on revision r1");
        assert_eq!(condition(&status, "Degraded").status, "False");
        assert_eq!(condition(&status, "InvalidSpec").status, "False");
        assert_eq!(
            status.pods.iter().map(|p| (p.name.as_str(), p.ready)).collect::<Vec<_>>(),
            [("cache-0", true), ("cache-1", true), ("cache-2", true)]
        );
    }

    #[test]
    fn new_template_makes_progressing_and_updating() {
        let mc = MapCache::test();
        let observed = from_pods(
            "cache",
            &[pod(0, true, "r1"), pod(1, true, "r1"), pod(2, true, "r1")],
            "r2".into(),
            None,
        );
        let mut status = observed_status(&mc, &observed, None, &at(10));
        set_phase(&mut status, 3);
        assert_eq!(status.phase.as_deref(), Some("Updating"));
        let progressing = condition(&status, "Progressing");
        assert_eq!(
            (progressing.status.as_str(), progressing.reason.as_str()),
            ("True", "PodsOutdated")
        );
        assert_eq!(progressing.message, "3 pods not on revision r2");
    }

    #[test]
    fn losing_a_pod_after_ready_is_degraded_but_startup_is_pending() {
        let mc = MapCache::test();
        let starting = from_pods("cache", &[pod(0, false, "r1")], "r1".into(), None);
        let mut first = observed_status(&mc, &starting, None, &at(10));
        set_phase(&mut first, 3);
        assert_eq!(first.phase.as_deref(), Some("Pending"));
        assert_eq!(condition(&first, "Progressing").message, "3 of 3 pods not ready yet");
        assert_eq!(condition(&first, "Degraded").status, "False");

        let healthy = from_pods(
            "cache",
            &[pod(0, true, "r1"), pod(1, true, "r1"), pod(2, true, "r1")],
            "r1".into(),
            None,
        );
        let ready = observed_status(&mc, &healthy, Some(&first), &at(20));
        let lost = from_pods(
            "cache",
            &[pod(0, true, "r1"), pod(1, true, "r1"), pod(2, false, "r1")],
            "r1".into(),
            None,
        );
        let mut degraded = observed_status(&mc, &lost, Some(&ready), &at(30));
        set_phase(&mut degraded, 3);
        assert_eq!(degraded.phase.as_deref(), Some("Degraded"));
        let condition = condition(&degraded, "Degraded");
        assert_eq!(condition.status, "True");
        assert_eq!(condition.message, "1 pods of 3 not ready after the cache was ready");
        assert_eq!(condition.last_transition_time, at(30));
    }

    #[test]
    fn engine_figures_of_known_pods_are_kept_and_summed() {
        let mc = MapCache::test();
        let previous = MapCacheStatus {
            pods: vec![
                PodStatus {
                    name: "cache-0".into(),
                    keys: 10,
                    tombstones: 4,
                    ..PodStatus::default()
                },
                PodStatus { name: "cache-9".into(), keys: 99, ..PodStatus::default() },
            ],
            ..MapCacheStatus::default()
        };
        let observed =
            from_pods("cache", &[pod(0, true, "r1"), pod(1, true, "r1")], "r1".into(), None);
        let status = observed_status(&mc, &observed, Some(&previous), &at(1));
        assert_eq!(
            status.pods.iter().map(|p| (p.name.as_str(), p.keys)).collect::<Vec<_>>(),
            [("cache-0", 10), ("cache-1", 0)]
        );
        assert_eq!((status.keys, status.tombstones), (10, 4));
    }

    #[test]
    fn a_pod_between_deletion_and_replacement_keeps_its_checklist_evidence() {
        let mc = MapCache::test();
        let item = crate::operator::crd::ChecklistItem {
            name: "no-inflight".into(),
            passed: true,
            evidence: "0 connections executing".into(),
            checked_at: "2026-11-22T07:00:00Z".into(),
        };
        let previous = MapCacheStatus {
            pods: vec![
                PodStatus { name: "cache-0".into(), ready: true, ..PodStatus::default() },
                PodStatus {
                    name: "cache-2".into(),
                    ready: true,
                    checklist: vec![item.clone()],
                    ..PodStatus::default()
                },
            ],
            ..MapCacheStatus::default()
        };
        // cache-2 was evicted and its replacement is not created yet.
        let observed =
            from_pods("cache", &[pod(0, true, "r1"), pod(1, true, "r1")], "r2".into(), None);
        let status = observed_status(&mc, &observed, Some(&previous), &at(1));
        assert_eq!(
            status.pods.iter().map(|p| (p.name.as_str(), p.ready)).collect::<Vec<_>>(),
            [("cache-0", true), ("cache-1", true), ("cache-2", false)]
        );
        assert_eq!(status.pods[2].checklist, vec![item]);
    }

    #[test]
    fn invalid_status_sets_condition_and_phase_and_keeps_the_rest() {
        let mut mc = MapCache::test().with_generation(4);
        mc.status = Some(MapCacheStatus { ready_replicas: 2, ..MapCacheStatus::default() });
        let status = invalid_status(&mc, "spec.image must not be empty".into(), &at(5));
        assert_eq!(status.phase.as_deref(), Some("Invalid"));
        assert_eq!(status.ready_replicas, 2);
        assert_eq!(status.observed_generation, Some(4));
        let invalid = condition(&status, "InvalidSpec");
        assert_eq!(
            (invalid.status.as_str(), invalid.message.as_str()),
            ("True", "spec.image must not be empty")
        );
    }

    fn pod_with_figures(name: &str, keys: u64, tombstones: u64, memory: u64) -> PodStatus {
        PodStatus {
            name: name.into(),
            ready: true,
            keys,
            tombstones,
            tombstone_ratio: tombstones as f64 / (keys + tombstones) as f64,
            memory_bytes: memory,
            ..PodStatus::default()
        }
    }

    fn running_status(pods: Vec<PodStatus>) -> MapCacheStatus {
        let mut status = MapCacheStatus {
            phase: Some("Running".into()),
            ready_replicas: 2,
            pods,
            ..MapCacheStatus::default()
        };
        sum_pod_figures(&mut status);
        status
    }

    #[test]
    fn figures_that_moved_within_the_tolerance_are_not_worth_a_write() {
        let old = running_status(vec![
            pod_with_figures("cache-0", 1_000_000, 20_000, 64 << 20),
            pod_with_figures("cache-1", 900_000, 0, 60 << 20),
        ]);
        // Client load between two polls: a few thousand keys, a few hundred tombstones.
        let new = running_status(vec![
            pod_with_figures("cache-0", 1_004_000, 20_150, (64 << 20) + 4096),
            pod_with_figures("cache-1", 899_000, 0, 60 << 20),
        ]);
        assert_ne!(old, new);
        assert!(!worth_writing(Some(&old), &new));
        assert!(!worth_writing(Some(&old), &old.clone()));
    }

    #[test]
    fn a_figure_past_the_tolerance_or_across_zero_or_any_other_change_is_written() {
        let old = running_status(vec![pod_with_figures("cache-0", 1_000_000, 0, 64 << 20)]);
        let grown = running_status(vec![pod_with_figures("cache-0", 1_020_000, 0, 64 << 20)]);
        assert!(worth_writing(Some(&old), &grown), "keys +2%");
        let tombstones = running_status(vec![pod_with_figures("cache-0", 1_000_000, 1, 64 << 20)]);
        assert!(worth_writing(Some(&old), &tombstones), "tombstones 0 -> 1");
        let mut not_ready = old.clone();
        not_ready.pods[0].ready = false;
        assert!(worth_writing(Some(&old), &not_ready), "readiness");
        let mut message = old.clone();
        set_condition(
            &mut message.conditions,
            condition::MAINTENANCE,
            false,
            "Idle",
            "no pod needs maintenance".into(),
            Some(1),
            &at(1),
        );
        assert!(worth_writing(Some(&old), &message), "a condition");
        assert!(worth_writing(None, &old), "no status yet");
    }

    #[test]
    fn patch_body_nulls_cleared_fields_and_rollout_sets_updating() {
        let mut status = MapCacheStatus::default();
        let body = patch_body(&status);
        assert_eq!(body["status"]["rollout"], serde_json::Value::Null);
        assert!(body["status"].as_object().expect("object").contains_key("rollout"));
        assert_eq!(body["status"]["currentRevision"], serde_json::Value::Null);
        status.rollout = Some(RolloutStatus { pod: "cache-2".into(), ..RolloutStatus::default() });
        set_phase(&mut status, 3);
        assert_eq!(status.phase.as_deref(), Some("Updating"));
        let body = patch_body(&status);
        assert_eq!(body["status"]["rollout"]["pod"], "cache-2");
        for cleared in ["blockedOn", "snapshotKeys", "evictedUid"] {
            let rollout = body["status"]["rollout"].as_object().expect("rollout object");
            assert_eq!(rollout.get(cleared), Some(&serde_json::Value::Null), "{cleared}");
        }
    }
}
