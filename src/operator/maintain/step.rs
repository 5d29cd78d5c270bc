//! The `maintain` step of the reconcile pipeline: poll, follow running maintenance, decide,
//! trigger, and record everything in status (figures, lastCompaction/lastRebuild with before and
//! after, the `Maintenance` condition), Events and metrics.
//!
//! Failures talking to a pod never fail the reconcile: the pod just gets no decision this round
//! (`NoStats`), and the next poll tries again.

use super::decide::{self, Action, Decision, Figures, LastRun, PodInput, Thresholds};
use super::snapshots::{self, PodRestore};
use crate::operator::context::Context;
use crate::operator::crd::{MaintenanceRecord, MapCache, MapCacheStatus, PodStatus};
use crate::operator::events::Event;
use crate::operator::node_client::{
    MaintenanceKind, MaintenanceProgress, NodeClient, NodeError, NodeStats,
};
use crate::operator::observe::{Observed, ObservedPod};
use crate::operator::reconcile::{pod_reference, publish_event};
use crate::operator::status::{condition, set_condition, sum_pod_figures};
use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::events::EventType;
use std::time::Duration;

/// How often to look again while a run is in progress (to record its end promptly).
pub const REQUEUE_WHILE_RUNNING: Duration = Duration::from_secs(2);

/// What one pod's poll returned.
#[derive(Debug)]
pub struct Polled {
    pub stats: Result<NodeStats, NodeError>,
    pub progress: Result<MaintenanceProgress, NodeError>,
}

/// A finished run, found by following a record without `finishedAt`.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    pub kind: MaintenanceKind,
    pub note: String,
}

/// Runs the step; returns how soon the cache wants the next reconcile.
pub async fn run(
    ctx: &Context,
    mc: &MapCache,
    observed: &Observed,
    status: &mut MapCacheStatus,
) -> Option<Duration> {
    let now = Timestamp::now();
    let thresholds = match Thresholds::from_spec(&mc.spec.maintenance) {
        Ok(thresholds) => thresholds,
        Err(error) => {
            set_maintenance(status, mc, false, "InvalidThresholds", error.to_string(), now);
            return None;
        }
    };
    let port = u16::try_from(mc.spec.engine.admin_port).unwrap_or(9090);
    let clients: Vec<Option<NodeClient>> = observed
        .pods
        .iter()
        .map(|pod| node_client(ctx, pod, port, observed.admin_token.clone()))
        .collect();
    let polled: Vec<Option<Polled>> = join_all(clients.iter().map(|client| async move {
        let client = client.as_ref()?;
        // Progress first, then stats, not both at once: a record is closed with the stats read
        // alongside a finished progress, and stats answered before the run's last step (it was
        // still running) would be closed as that run's after-figures (e2e saw a compaction
        // "leave" 95 tombstones that way).
        let progress = client.maintenance().await;
        let stats = client.stats().await;
        Some(Polled { stats, progress })
    }))
    .await;

    // Figures, and the ends of runs this operator started.
    let mut inputs = Vec::with_capacity(observed.pods.len());
    let mut running_pods = Vec::new();
    for (pod, polled) in observed.pods.iter().zip(&polled) {
        let Some(pod_status) = status.pods.iter_mut().find(|p| p.name == pod.name) else {
            continue;
        };
        let in_progress = match polled {
            Some(Polled { stats: Ok(stats), progress }) => {
                record_figures(pod_status, stats);
                let progress = progress.as_ref().ok();
                if let Some(finished) = follow_progress(pod_status, progress, stats, now) {
                    ctx.metrics.maintenance.count(finished.kind.as_str(), "succeeded");
                    let reason = match finished.kind {
                        MaintenanceKind::Compact => "Compacted",
                        MaintenanceKind::Rebuild => "Rebuilt",
                    };
                    let event = Event::new(EventType::Normal, reason, "Maintain", finished.note);
                    publish_event(ctx, mc, event.about(pod_reference(mc, observed, &pod.name)))
                        .await;
                }
                let running = maintenance_running(stats, progress);
                if running {
                    let kind = progress.and_then(|p| p.kind).map_or("maintenance", |k| k.as_str());
                    running_pods.push(format!("{}: {kind} running", pod.name));
                }
                running
            }
            _ => false,
        };
        let figures = match polled {
            Some(Polled { stats: Ok(stats), .. }) => Some(figures_of(stats)),
            _ => None,
        };
        inputs.push(PodInput {
            name: pod.name.clone(),
            ready: pod.ready && !pod.terminating,
            figures,
            in_progress,
            last_run: LastRun::from_records(
                pod_status.last_compaction.as_ref(),
                pod_status.last_rebuild.as_ref(),
            ),
        });
    }
    sum_pod_figures(status);
    snapshots_corrupt(ctx, mc, observed, &polled, status, now).await;

    let rollout_active = status.rollout.is_some() || observed.outdated_pods().next().is_some();
    let decisions = decide::decide(&thresholds, &inputs, rollout_active, now);
    let mut running = running_pods;
    for decision in &decisions {
        let Action::Start(kind) = decision.action else {
            continue;
        };
        let Some(index) = observed.pods.iter().position(|p| p.name == decision.pod) else {
            continue;
        };
        let Some(client) = &clients[index] else {
            continue;
        };
        match client.start_maintenance(kind).await {
            Ok(_) => {
                ctx.metrics.maintenance.count(kind.as_str(), "started");
                let record = started_record(decision, now);
                let note = format!(
                    "{} {}: {} (keys {}, tombstones {}, memory {} bytes)",
                    kind,
                    decision.pod,
                    decision.reason,
                    record.keys_before,
                    record.tombstones_before,
                    record.memory_bytes_before
                );
                if let Some(pod_status) = status.pods.iter_mut().find(|p| p.name == decision.pod) {
                    match kind {
                        MaintenanceKind::Compact => pod_status.last_compaction = Some(record),
                        MaintenanceKind::Rebuild => pod_status.last_rebuild = Some(record),
                    }
                }
                let reason = match kind {
                    MaintenanceKind::Compact => "CompactionStarted",
                    MaintenanceKind::Rebuild => "RebuildStarted",
                };
                running.push(format!("{}: {kind} ({})", decision.pod, decision.reason));
                let event = Event::new(EventType::Normal, reason, "Maintain", note);
                publish_event(ctx, mc, event.about(pod_reference(mc, observed, &decision.pod)))
                    .await;
            }
            Err(error) => {
                let result = if error.status() == Some(409) { "conflict" } else { "failed" };
                ctx.metrics.maintenance.count(kind.as_str(), result);
                let note = format!("{kind} {} not started: {error}", decision.pod);
                let event = Event::new(EventType::Warning, "MaintenanceFailed", "Maintain", note);
                publish_event(ctx, mc, event.about(pod_reference(mc, observed, &decision.pod)))
                    .await;
            }
        }
    }
    let (active, reason, message) = maintenance_condition(&running, rollout_active, &decisions);
    set_maintenance(status, mc, active, reason, message, now);
    Some(if active { REQUEUE_WHILE_RUNNING } else { thresholds.poll_interval })
}

/// Whether a compaction or rebuild runs on the pod: the node's maintenance run, started through
/// its admin API (by this operator, or by hand with `mapcache admin compact`). The engine's own
/// growth (`phase: growing`: a doubling, or a same-size grow for overflow buckets, started by
/// inserts) is not maintenance and never makes the cache's phase `Maintenance`. When the run's
/// progress could not be read, an engine phase only maintenance starts stands in for it.
pub fn maintenance_running(stats: &NodeStats, progress: Option<&MaintenanceProgress>) -> bool {
    match progress {
        Some(progress) => progress.running,
        None => matches!(stats.phase.as_str(), "compacting" | "shrinking"),
    }
}

/// The Maintenance condition (status, reason, message): True only while a run is in progress or
/// was just started (`running`, one entry per pod), as the operator's doing and nothing else.
pub fn maintenance_condition(
    running: &[String],
    rollout_active: bool,
    decisions: &[Decision],
) -> (bool, &'static str, String) {
    if !running.is_empty() {
        (true, "Running", running.join("; "))
    } else if rollout_active {
        (false, "RolloutActive", "maintenance waits for the rollout to finish".into())
    } else {
        (false, "Idle", idle_message(decisions))
    }
}

/// Sets the `SnapshotsCorrupt` condition from the pods' `restore` reports, with a Warning Event
/// for each pod start that found every snapshot unusable ([`snapshots`]).
async fn snapshots_corrupt(
    ctx: &Context,
    mc: &MapCache,
    observed: &Observed,
    polled: &[Option<Polled>],
    status: &mut MapCacheStatus,
    now: Timestamp,
) {
    let pods: Vec<PodRestore<'_>> = observed
        .pods
        .iter()
        .zip(polled)
        .map(|(pod, polled)| PodRestore {
            pod: &pod.name,
            restore: match polled {
                Some(Polled { stats: Ok(stats), .. }) => Some(&stats.restore),
                _ => None,
            },
        })
        .collect();
    let previous = status.conditions.iter().find(|c| c.type_ == condition::SNAPSHOTS_CORRUPT);
    let verdict = snapshots::evaluate(previous, &pods);
    set_condition(
        &mut status.conditions,
        condition::SNAPSHOTS_CORRUPT,
        verdict.corrupt,
        verdict.reason,
        verdict.message,
        mc.metadata.generation,
        &Time(now),
    );
    for (pod, note) in verdict.events {
        let event = Event::new(EventType::Warning, snapshots::REASON, "Restore", note);
        publish_event(ctx, mc, event.about(pod_reference(mc, observed, &pod))).await;
    }
}

fn node_client(
    ctx: &Context,
    pod: &ObservedPod,
    port: u16,
    token: Option<String>,
) -> Option<NodeClient> {
    if !pod.ready || pod.terminating {
        return None;
    }
    let ip = pod.pod_ip.as_deref()?;
    Some(NodeClient::new(ctx.http.clone(), ip, port, token))
}

fn set_maintenance(
    status: &mut MapCacheStatus,
    mc: &MapCache,
    active: bool,
    reason: &str,
    message: String,
    now: Timestamp,
) {
    let generation = mc.metadata.generation;
    set_condition(
        &mut status.conditions,
        condition::MAINTENANCE,
        active,
        reason,
        message,
        generation,
        &Time(now),
    );
}

/// "no pod needs maintenance" or why each candidate waits (cooldown, hysteresis, concurrency),
/// in words that stay the same from one poll to the next.
fn idle_message(decisions: &[Decision]) -> String {
    let waiting: Vec<String> = decisions
        .iter()
        .filter(|d| {
            matches!(
                d.reason,
                decide::Reason::Cooldown { .. }
                    | decide::Reason::Hysteresis { .. }
                    | decide::Reason::ConcurrencyLimit { .. }
            )
        })
        .map(|d| match &d.reason {
            // The trigger's live figure would change the message on every poll.
            decide::Reason::Hysteresis { .. } => {
                format!("{}: the last run did not clear its trigger; waiting for it to move", d.pod)
            }
            reason => format!("{}: {reason}", d.pod),
        })
        .collect();
    if waiting.is_empty() { "no pod needs maintenance".into() } else { waiting.join("; ") }
}

/// The engine figures of a pod from its stats.
pub fn figures_of(stats: &NodeStats) -> Figures {
    Figures {
        keys: stats.keys,
        tombstones: stats.tombstones,
        tombstone_ratio: stats.tombstone_ratio,
        fill_ratio: stats.fill_ratio,
        memory_bytes: stats.memory_bytes,
    }
}

/// Copies the figures into the pod's status.
pub fn record_figures(pod: &mut PodStatus, stats: &NodeStats) {
    pod.keys = stats.keys;
    pod.tombstones = stats.tombstones;
    pod.tombstone_ratio = stats.tombstone_ratio;
    pod.memory_bytes = stats.memory_bytes;
}

/// The record of a run just started, with the figures it was decided on.
pub fn started_record(decision: &Decision, now: Timestamp) -> MaintenanceRecord {
    let figures = decision.figures.unwrap_or_default();
    MaintenanceRecord {
        started_at: now.to_string(),
        finished_at: None,
        reason: decision.reason.to_string(),
        keys_before: figures.keys,
        tombstones_before: figures.tombstones,
        memory_bytes_before: figures.memory_bytes,
        tombstones_after: None,
        memory_bytes_after: None,
    }
}

/// Closes an open record (no `finishedAt`) once the node reports the run of that kind finished:
/// after-figures from the node's current stats. Returns the Event note when it closed one.
pub fn follow_progress(
    pod: &mut PodStatus,
    progress: Option<&MaintenanceProgress>,
    stats: &NodeStats,
    now: Timestamp,
) -> Option<Finished> {
    let progress = progress?;
    if progress.running {
        return None;
    }
    let mut finished = None;
    for (kind, record) in [
        (MaintenanceKind::Compact, pod.last_compaction.as_mut()),
        (MaintenanceKind::Rebuild, pod.last_rebuild.as_mut()),
    ] {
        let Some(record) = record else { continue };
        if record.finished_at.is_some() {
            continue;
        }
        // A node that restarted has no run to report: close the record with what is known.
        let finished_at = match (progress.kind, progress.finished_at.as_deref()) {
            (Some(k), Some(at)) if k == kind => at.to_string(),
            _ => now.to_string(),
        };
        record.finished_at = Some(finished_at);
        record.tombstones_after = Some(stats.tombstones);
        record.memory_bytes_after = Some(stats.memory_bytes);
        finished = Some(Finished {
            kind,
            note: format!(
                "{kind} {} finished: tombstones {} -> {}, memory {} -> {} bytes, keys {} -> {}",
                pod.name,
                record.tombstones_before,
                stats.tombstones,
                record.memory_bytes_before,
                stats.memory_bytes,
                record.keys_before,
                stats.keys
            ),
        });
    }
    finished
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::node_client::MaintenanceFigures;

    fn now() -> Timestamp {
        "2026-11-22T03:00:00Z".parse().expect("timestamp")
    }

    fn stats(keys: u64, tombstones: u64, memory: u64) -> NodeStats {
        NodeStats {
            keys,
            tombstones,
            tombstone_ratio: tombstones as f64 / (keys + tombstones) as f64,
            fill_ratio: 0.5,
            memory_bytes: memory,
            phase: "idle".into(),
            ..NodeStats::default()
        }
    }

    fn open_record() -> MaintenanceRecord {
        MaintenanceRecord {
            started_at: "2026-11-22T02:59:00Z".into(),
            reason: "tombstone ratio 0.600 >= 0.5".into(),
            keys_before: 80_000,
            tombstones_before: 120_000,
            memory_bytes_before: 9_000_000,
            ..MaintenanceRecord::default()
        }
    }

    fn finished_progress(kind: MaintenanceKind) -> MaintenanceProgress {
        MaintenanceProgress {
            running: false,
            kind: Some(kind),
            started_at: Some("2026-11-22T02:59:00Z".into()),
            finished_at: Some("2026-11-22T02:59:03Z".into()),
            before: Some(MaintenanceFigures::default()),
            after: Some(MaintenanceFigures::default()),
            ..MaintenanceProgress::default()
        }
    }

    #[test]
    fn a_finished_run_closes_the_open_record_with_after_figures() {
        let mut pod = PodStatus {
            name: "mc-1".into(),
            last_rebuild: Some(open_record()),
            ..Default::default()
        };
        let progress = finished_progress(MaintenanceKind::Rebuild);
        let finished =
            follow_progress(&mut pod, Some(&progress), &stats(80_000, 0, 3_000_000), now())
                .expect("closed");
        assert_eq!(finished.kind, MaintenanceKind::Rebuild);
        assert_eq!(
            finished.note,
            "rebuild mc-1 finished: tombstones 120000 -> 0, memory 9000000 -> 3000000 bytes, keys 80000 -> 80000"
        );
        let record = pod.last_rebuild.expect("record");
        assert_eq!(record.finished_at.as_deref(), Some("2026-11-22T02:59:03Z"));
        assert_eq!(record.tombstones_after, Some(0));
        assert_eq!(record.memory_bytes_after, Some(3_000_000));
    }

    #[test]
    fn a_running_run_leaves_the_record_open() {
        let mut pod = PodStatus {
            name: "mc-1".into(),
            last_compaction: Some(open_record()),
            ..Default::default()
        };
        let progress =
            MaintenanceProgress { running: true, ..finished_progress(MaintenanceKind::Compact) };
        assert_eq!(follow_progress(&mut pod, Some(&progress), &stats(1, 1, 1), now()), None);
        assert_eq!(pod.last_compaction.and_then(|r| r.finished_at), None);
    }

    #[test]
    fn a_closed_record_is_not_closed_again() {
        let closed =
            MaintenanceRecord { finished_at: Some("2026-11-22T02:00:00Z".into()), ..open_record() };
        let mut pod = PodStatus {
            name: "mc-1".into(),
            last_compaction: Some(closed.clone()),
            ..Default::default()
        };
        let progress = finished_progress(MaintenanceKind::Compact);
        assert_eq!(follow_progress(&mut pod, Some(&progress), &stats(1, 1, 1), now()), None);
        assert_eq!(pod.last_compaction, Some(closed));
    }

    #[test]
    fn a_restarted_node_without_the_run_closes_the_record_at_now() {
        let mut pod = PodStatus {
            name: "mc-1".into(),
            last_compaction: Some(open_record()),
            ..Default::default()
        };
        let progress = MaintenanceProgress::default();
        let finished = follow_progress(&mut pod, Some(&progress), &stats(5, 0, 7), now());
        assert_eq!(finished.map(|f| f.kind), Some(MaintenanceKind::Compact));
        assert_eq!(
            pod.last_compaction.and_then(|r| r.finished_at).as_deref(),
            Some("2026-11-22T03:00:00Z")
        );
    }

    #[test]
    fn started_record_keeps_the_decision_figures_and_reason() {
        let decision = Decision {
            pod: "mc-0".into(),
            action: Action::Start(MaintenanceKind::Compact),
            reason: decide::Reason::TombstoneRatio { ratio: 0.3, threshold: 0.25 },
            figures: Some(figures_of(&stats(7_000, 3_000, 1_234))),
        };
        let record = started_record(&decision, now());
        assert_eq!(
            record,
            MaintenanceRecord {
                started_at: "2026-11-22T03:00:00Z".into(),
                finished_at: None,
                reason: "tombstone ratio 0.300 >= 0.25".into(),
                keys_before: 7_000,
                tombstones_before: 3_000,
                memory_bytes_before: 1_234,
                tombstones_after: None,
                memory_bytes_after: None,
            }
        );
    }

    #[test]
    fn an_engine_growing_by_itself_is_not_maintenance_and_leaves_the_phase_running() {
        use crate::operator::status::{phase, set_phase};
        // Inserts made one shard double its array: phase growing, no maintenance run.
        let growing = NodeStats { phase: "growing".into(), ..stats(500_000, 0, 1 << 26) };
        let no_run = MaintenanceProgress::default();
        assert!(!maintenance_running(&growing, Some(&no_run)));
        assert!(!maintenance_running(&growing, None), "progress unreadable");

        let mut status = MapCacheStatus { ready_replicas: 3, ..MapCacheStatus::default() };
        let (active, reason, message) = maintenance_condition(&[], false, &[]);
        let now = Time(now());
        set_condition(
            &mut status.conditions,
            condition::MAINTENANCE,
            active,
            reason,
            message,
            Some(1),
            &now,
        );
        set_phase(&mut status, 3);
        assert_eq!(status.phase.as_deref(), Some(phase::RUNNING));
        let maintenance = &status.conditions[0];
        assert_eq!(
            (
                maintenance.status.as_str(),
                maintenance.reason.as_str(),
                maintenance.message.as_str()
            ),
            ("False", "Idle", "no pod needs maintenance")
        );
    }

    #[test]
    fn a_compaction_or_rebuild_run_is_maintenance() {
        let running =
            MaintenanceProgress { running: true, ..finished_progress(MaintenanceKind::Compact) };
        let compacting = NodeStats { phase: "compacting".into(), ..stats(1, 1, 1) };
        assert!(maintenance_running(&stats(1, 1, 1), Some(&running)));
        assert!(maintenance_running(&compacting, None), "progress unreadable, engine compacting");
        let (active, reason, message) =
            maintenance_condition(&["mc-1: compact running".into()], false, &[]);
        assert_eq!((active, reason, message.as_str()), (true, "Running", "mc-1: compact running"));
    }

    #[test]
    fn the_idle_message_stays_the_same_from_poll_to_poll() {
        let waiting =
            |reason| Decision { pod: "mc-0".into(), action: Action::None, reason, figures: None };
        let at = |ratio| {
            let until = "2026-11-22T03:10:00Z".parse().expect("time");
            let trigger = decide::Reason::TombstoneRatio { ratio, threshold: 0.25 }.to_string();
            idle_message(&[
                waiting(decide::Reason::Cooldown { until }),
                Decision { pod: "mc-1".into(), ..waiting(decide::Reason::Hysteresis { trigger }) },
            ])
        };
        assert_eq!(at(0.31), at(0.32));
        assert_eq!(
            at(0.31),
            "mc-0: cooldown until 2026-11-22T03:10:00Z; mc-1: the last run did not clear its trigger; waiting for it to move"
        );
    }

    #[test]
    fn record_figures_copies_the_engine_figures() {
        let mut pod = PodStatus::default();
        record_figures(&mut pod, &stats(3, 1, 99));
        assert_eq!(
            (pod.keys, pod.tombstones, pod.tombstone_ratio, pod.memory_bytes),
            (3, 1, 0.25, 99)
        );
    }
}
