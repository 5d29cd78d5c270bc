//! The four commands. Each runs against every target concurrently and returns a [`Report`]: a
//! table, the same data as JSON, and the exit status it earns.

use super::table::{Table, human_bytes};
use super::target::{KubeContext, NodeTarget};
use crate::operator::crd::ChecklistItem;
use crate::operator::maintain::duration::parse_duration;
use crate::operator::node_client::{MaintenanceKind, NodeClient, NodeError};
use crate::operator::rollout::checklist;
use futures::future::join_all;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use std::time::Duration;

/// Exit status of a command, from best to worst; the worst across pods wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// 0: everything asked for was done and every check passed.
    Ok = 0,
    /// 1: the node answered, but a check failed or the node refused the operation.
    CheckFailed = 1,
    /// 2: a node could not be reached (or a usage error, handled earlier).
    ConnectionError = 2,
}

/// What a command prints and returns.
#[derive(Debug)]
pub struct Report {
    pub table: Table,
    pub json: Value,
    pub status: Status,
    /// One line per pod that failed, for stderr (the table only says `error`).
    pub errors: Vec<String>,
}

fn status_of(error: &NodeError) -> Status {
    match error {
        // The node answered: 409 (already running), 503 (draining) and the like.
        NodeError::Status { status, .. } if *status != 401 && *status != 403 => Status::CheckFailed,
        _ => Status::ConnectionError,
    }
}

fn no_ip(target: &NodeTarget) -> NodeError {
    NodeError::Status {
        url: format!("pod/{}", target.pod),
        status: 503,
        message: "the pod has no IP yet".into(),
    }
}

async fn each<T, F, Fut>(targets: &[NodeTarget], call: F) -> Vec<Result<T, NodeError>>
where
    F: Fn(NodeClient) -> Fut,
    Fut: std::future::Future<Output = Result<T, NodeError>>,
{
    join_all(targets.iter().map(|target| {
        let client = target.client.clone();
        let call = &call;
        async move {
            match client {
                Some(client) => call(client).await,
                None => Err(no_ip(target)),
            }
        }
    }))
    .await
}

fn worst(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses.into_iter().max().unwrap_or(Status::Ok)
}

fn envelope(command: &str, pods: Vec<Value>) -> Value {
    json!({ "command": command, "pods": pods })
}

pub async fn stats(targets: &[NodeTarget]) -> Report {
    let results = each(targets, |client| async move { client.stats().await }).await;
    let mut table =
        Table::new(&["pod", "ready", "keys", "tombstones", "ratio", "fill", "memory", "phase"]);
    let mut pods = Vec::new();
    let mut statuses = Vec::new();
    let mut errors = Vec::new();
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok(stats) => {
                table.row(vec![
                    target.pod.clone(),
                    stats.ready.to_string(),
                    stats.keys.to_string(),
                    stats.tombstones.to_string(),
                    format!("{:.3}", stats.tombstone_ratio),
                    format!("{:.3}", stats.fill_ratio),
                    human_bytes(stats.memory_bytes),
                    stats.phase.clone(),
                ]);
                pods.push(json!({ "pod": target.pod, "stats": stats }));
                statuses.push(Status::Ok);
            }
            Err(error) => {
                table.row(vec![target.pod.clone(), "error".into()]);
                errors.push(format!("{}: {error}", target.pod));
                pods.push(json!({ "pod": target.pod, "error": error.to_string() }));
                statuses.push(status_of(&error));
            }
        }
    }
    Report { table, json: envelope("stats", pods), status: worst(statuses), errors }
}

pub async fn compact(targets: &[NodeTarget], kind: MaintenanceKind) -> Report {
    let results = each(targets, |client| async move { client.start_maintenance(kind).await }).await;
    let mut table = Table::new(&["pod", "kind", "started", "shards", "message"]);
    let mut pods = Vec::new();
    let mut statuses = Vec::new();
    let mut errors = Vec::new();
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok(started) => {
                table.row(vec![
                    target.pod.clone(),
                    started.kind.to_string(),
                    started.started.to_string(),
                    started.shards.to_string(),
                    String::new(),
                ]);
                pods.push(json!({ "pod": target.pod, "started": started }));
                statuses.push(if started.started { Status::Ok } else { Status::CheckFailed });
            }
            Err(error) => {
                let message = error.to_string();
                let short = match error.status() {
                    Some(status) => format!("refused ({status})"),
                    None => "error".to_string(),
                };
                table.row(vec![
                    target.pod.clone(),
                    kind.to_string(),
                    "false".into(),
                    String::new(),
                    short,
                ]);
                errors.push(format!("{}: {message}", target.pod));
                pods.push(json!({ "pod": target.pod, "error": error.to_string() }));
                statuses.push(status_of(&error));
            }
        }
    }
    Report { table, json: envelope(kind.as_str(), pods), status: worst(statuses), errors }
}

pub async fn drain(targets: &[NodeTarget]) -> Report {
    let results = each(targets, |client| async move { client.drain().await }).await;
    let mut table = Table::new(&["pod", "draining", "snapshot-keys", "verified", "snapshot"]);
    let mut pods = Vec::new();
    let mut statuses = Vec::new();
    let mut errors = Vec::new();
    for (target, result) in targets.iter().zip(results) {
        match result {
            Ok(drained) => {
                let snapshot = drained.snapshot.as_ref();
                let verified = snapshot.is_some_and(|s| s.verified && s.after_writes_stopped);
                table.row(vec![
                    target.pod.clone(),
                    drained.draining.to_string(),
                    snapshot.map(|s| s.keys.to_string()).unwrap_or_else(|| "-".into()),
                    verified.to_string(),
                    snapshot.map(|s| s.path.clone()).unwrap_or_else(|| "-".into()),
                ]);
                pods.push(json!({ "pod": target.pod, "drain": drained }));
                statuses.push(if drained.draining && verified {
                    Status::Ok
                } else {
                    Status::CheckFailed
                });
            }
            Err(error) => {
                table.row(vec![target.pod.clone(), "error".into()]);
                errors.push(format!("{}: {error}", target.pod));
                pods.push(json!({ "pod": target.pod, "error": error.to_string() }));
                statuses.push(status_of(&error));
            }
        }
    }
    Report { table, json: envelope("drain", pods), status: worst(statuses), errors }
}

/// Settings of the checklist: from the MapCache spec, overridable by flags.
pub struct ChecklistSettings {
    pub quiet_period: Duration,
    pub lock_profile_seconds: u32,
    pub allow_data_loss: bool,
}

impl ChecklistSettings {
    pub fn resolve(
        kube: Option<&KubeContext>,
        quiet_period: Option<&str>,
        lock_profile_seconds: Option<u32>,
    ) -> Result<Self, super::AdminError> {
        let spec = kube.map(|k| k.cache.spec.rollout.clone()).unwrap_or_default();
        let quiet = quiet_period.unwrap_or(&spec.quiet_period);
        let field =
            if quiet_period.is_some() { "--quiet-period" } else { "spec.rollout.quietPeriod" };
        let quiet_period =
            parse_duration(field, quiet).map_err(|e| super::AdminError::Usage(e.to_string()))?;
        Ok(Self {
            quiet_period,
            lock_profile_seconds: lock_profile_seconds.unwrap_or(spec.lock_profile_seconds),
            allow_data_loss: spec.allow_data_loss,
        })
    }
}

pub async fn run_checklist(
    targets: &[NodeTarget],
    kube: Option<&KubeContext>,
    settings: &ChecklistSettings,
) -> Report {
    let now = jiff::Timestamp::now();
    let (quiet, seconds) = (settings.quiet_period, settings.lock_profile_seconds);
    let results =
        each(targets, |client| async move { client.checklist(quiet, seconds).await }).await;
    let cluster = match kube {
        Some(kube) => Some(cluster_facts(kube).await),
        None => None,
    };
    let mut table = Table::new(&["pod", "item", "passed", "evidence"]);
    let mut pods = Vec::new();
    let mut statuses = Vec::new();
    let mut errors = Vec::new();
    for (target, result) in targets.iter().zip(results) {
        let (facts, mut status) = match &result {
            Ok(node) => (checklist::from_node(node, settings.allow_data_loss, now), Status::Ok),
            Err(error) => (
                {
                    errors.push(format!("{}: {error}", target.pod));
                    checklist::node_unreachable(&error.to_string(), settings.allow_data_loss, now)
                },
                status_of(error).max(Status::CheckFailed),
            ),
        };
        let mut items: Vec<ChecklistItem> = Vec::new();
        if let Some(cluster) = &cluster {
            items.push(deregistered(cluster, target, now));
            items.extend(facts.items);
            items.push(cluster.disruption.clone());
        } else {
            items.extend(facts.items);
        }
        let passed = items.iter().all(|i| i.passed);
        if !passed {
            status = status.max(Status::CheckFailed);
        }
        for item in &items {
            table.row(vec![
                target.pod.clone(),
                item.name.clone(),
                if item.passed { "yes" } else { "NO" }.into(),
                item.evidence.clone(),
            ]);
        }
        pods.push(json!({
            "pod": target.pod,
            "passed": passed,
            "items": items,
            "snapshot_keys": facts.snapshot_keys,
        }));
        statuses.push(status);
    }
    Report { table, json: envelope("checklist", pods), status: worst(statuses), errors }
}

/// The cluster-side evidence, fetched once for all pods.
struct ClusterFacts {
    slices: Result<Vec<EndpointSlice>, String>,
    services: Vec<String>,
    disruption: ChecklistItem,
}

async fn cluster_facts(kube: &KubeContext) -> ClusterFacts {
    let now = jiff::Timestamp::now();
    let cache = kube.cache.metadata.name.clone().unwrap_or_default();
    let services = vec![cache.clone(), format!("{cache}-headless")];
    let selector = format!("kubernetes.io/service-name in ({})", services.join(","));
    let slices: Api<EndpointSlice> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let slices = slices
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|list| list.items)
        .map_err(|e| e.to_string());
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let instance = format!("app.kubernetes.io/instance={cache}");
    let disruption = match pdbs.list(&ListParams::default().labels(&instance)).await {
        Ok(list) => disruption_from_pdbs(&list.items, now),
        Err(error) => ChecklistItem {
            name: checklist::item::DISRUPTION_ALLOWED.into(),
            passed: false,
            evidence: format!("cannot list PodDisruptionBudgets: {error}"),
            checked_at: now.to_string(),
        },
    };
    ClusterFacts { slices, services, disruption }
}

/// By hand nothing is evicted, so `disruption-allowed` reads the PDB's `disruptionsAllowed`.
pub fn disruption_from_pdbs(pdbs: &[PodDisruptionBudget], now: jiff::Timestamp) -> ChecklistItem {
    let (passed, evidence) = match pdbs.first() {
        None => (true, "no PodDisruptionBudget selects the cache".to_string()),
        Some(pdb) => {
            let name = pdb.metadata.name.as_deref().unwrap_or("<unnamed>");
            let allowed = pdb.status.as_ref().and_then(|s| s.disruptions_allowed).unwrap_or(0);
            (allowed > 0, format!("PodDisruptionBudget {name}: disruptionsAllowed {allowed}"))
        }
    };
    ChecklistItem {
        name: checklist::item::DISRUPTION_ALLOWED.into(),
        passed,
        evidence,
        checked_at: now.to_string(),
    }
}

fn deregistered(
    cluster: &ClusterFacts,
    target: &NodeTarget,
    now: jiff::Timestamp,
) -> ChecklistItem {
    match &cluster.slices {
        Ok(slices) => checklist::deregistered(
            &target.pod,
            target.ip.as_deref(),
            &cluster.services,
            slices,
            now,
        ),
        Err(error) => ChecklistItem {
            name: checklist::item::DEREGISTERED.into(),
            passed: false,
            evidence: format!("cannot list EndpointSlices: {error}"),
            checked_at: now.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn now() -> jiff::Timestamp {
        "2026-11-22T03:00:00Z".parse().expect("timestamp")
    }

    #[test]
    fn the_worst_status_wins() {
        assert_eq!(worst([Status::Ok, Status::CheckFailed, Status::Ok]), Status::CheckFailed);
        assert_eq!(worst([Status::CheckFailed, Status::ConnectionError]), Status::ConnectionError);
        assert_eq!(worst([]), Status::Ok);
    }

    #[test]
    fn node_refusals_are_check_failures_and_auth_or_transport_are_connection_errors() {
        let answered = |status| NodeError::Status { url: "u".into(), status, message: "m".into() };
        assert_eq!(status_of(&answered(409)), Status::CheckFailed);
        assert_eq!(status_of(&answered(503)), Status::CheckFailed);
        assert_eq!(status_of(&answered(401)), Status::ConnectionError);
    }

    #[test]
    fn disruption_allowed_by_hand_reads_the_pdb() {
        let pdb = |allowed| PodDisruptionBudget {
            metadata: ObjectMeta { name: Some("mc".into()), ..Default::default() },
            status: Some(PodDisruptionBudgetStatus {
                disruptions_allowed: Some(allowed),
                ..Default::default()
            }),
            ..Default::default()
        };
        let item = disruption_from_pdbs(&[pdb(1)], now());
        assert!(item.passed);
        assert_eq!(item.evidence, "PodDisruptionBudget mc: disruptionsAllowed 1");
        assert!(!disruption_from_pdbs(&[pdb(0)], now()).passed);
        assert!(disruption_from_pdbs(&[], now()).passed);
    }

    #[tokio::test]
    async fn a_pod_without_ip_is_reported_not_skipped() {
        let targets = [NodeTarget { pod: "mc-0".into(), ip: None, client: None }];
        let report = stats(&targets).await;
        assert_eq!(report.status, Status::CheckFailed);
        assert_eq!(report.json["pods"][0]["pod"], "mc-0");
        assert_eq!(
            report.table.render(),
            "POD    READY   KEYS   TOMBSTONES   RATIO   FILL   MEMORY   PHASE\nmc-0   error\n"
        );
        assert_eq!(report.errors, ["mc-0: pod/mc-0 answered 503: the pod has no IP yet"]);
    }
}
