//! Assembles the safe-deletion checklist of one pod from what was observed: the EndpointSlices of
//! the cache's Services (`deregistered`), the node's own `/v1/checklist` (`no-inflight`,
//! `no-lock-waiters`, `cross-checked`, `maintenance-idle`, `snapshot-verified`), and the Eviction
//! API's answer (`disruption-allowed`). Pure: the runner fetches, these functions judge.

use super::machine::{ChecklistFacts, EvictionOutcome};
use crate::operator::crd::ChecklistItem;
use crate::operator::node_client::NodeChecklist;
use jiff::Timestamp;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Item names, in the order status shows them.
pub mod item {
    pub const DEREGISTERED: &str = "deregistered";
    pub const NO_INFLIGHT: &str = "no-inflight";
    pub const NO_LOCK_WAITERS: &str = "no-lock-waiters";
    pub const CROSS_CHECKED: &str = "cross-checked";
    pub const MAINTENANCE_IDLE: &str = "maintenance-idle";
    pub const SNAPSHOT_VERIFIED: &str = "snapshot-verified";
    pub const DISRUPTION_ALLOWED: &str = "disruption-allowed";

    /// The items the node itself reports in `/v1/checklist`.
    pub const FROM_NODE: [&str; 5] =
        [NO_INFLIGHT, NO_LOCK_WAITERS, CROSS_CHECKED, MAINTENANCE_IDLE, SNAPSHOT_VERIFIED];
}

/// The label EndpointSlices carry naming their Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

fn checked(name: &str, passed: bool, evidence: String, now: Timestamp) -> ChecklistItem {
    ChecklistItem { name: name.into(), passed, evidence, checked_at: now.to_string() }
}

/// `deregistered`: the pod (by IP, or by targetRef name) is in no *serving* endpoint of the
/// EndpointSlices of `services`.
///
/// `serving` rather than `ready`: a headless Service with `publishNotReadyAddresses` (the
/// StatefulSet's peer-discovery Service) has every endpoint `ready: true` whatever the pod's
/// readiness, and only `serving` follows the readiness probe. Where `serving` is absent, `ready`
/// decides; where both are absent the endpoint counts as serving, as the API defines it.
pub fn deregistered(
    pod_name: &str,
    pod_ip: Option<&str>,
    services: &[String],
    slices: &[EndpointSlice],
    now: Timestamp,
) -> ChecklistItem {
    let mut still_ready = Vec::new();
    let mut considered = 0;
    for slice in slices {
        let service = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL));
        let Some(service) = service.filter(|s| services.contains(s)) else {
            continue;
        };
        considered += 1;
        for endpoint in slice.endpoints.iter().flatten() {
            let by_ip = pod_ip.is_some_and(|ip| endpoint.addresses.iter().any(|a| a == ip));
            let by_ref = endpoint.target_ref.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("Pod") && r.name.as_deref() == Some(pod_name)
            });
            let conditions = endpoint.conditions.as_ref();
            let serving = conditions.and_then(|c| c.serving.or(c.ready)).unwrap_or(true);
            if (by_ip || by_ref) && serving {
                let slice_name = slice.metadata.name.as_deref().unwrap_or("<unnamed>");
                still_ready.push(format!("{slice_name} (service {service})"));
            }
        }
    }
    let address = pod_ip.unwrap_or("<no IP>");
    if still_ready.is_empty() {
        let evidence = format!(
            "{address} is in no serving endpoint of {considered} EndpointSlice(s) of services {}",
            services.join(", ")
        );
        checked(item::DEREGISTERED, true, evidence, now)
    } else {
        let evidence = format!("{address} still a serving endpoint in {}", still_ready.join(", "));
        checked(item::DEREGISTERED, false, evidence, now)
    }
}

/// The node's items, plus the verified snapshot's key count. With `allow_data_loss`,
/// `snapshot-verified` passes whatever the node said (the evidence keeps what it said). An item
/// the node did not report fails: a node that skips a check has not passed it.
pub fn from_node(node: &NodeChecklist, allow_data_loss: bool, now: Timestamp) -> ChecklistFacts {
    let mut items = Vec::with_capacity(item::FROM_NODE.len());
    for name in item::FROM_NODE {
        let reported = node.items.iter().find(|i| i.name == name);
        let (passed, evidence) = match reported {
            Some(reported) => (reported.passed, reported.evidence.clone()),
            None => (false, "the node did not report this item".to_string()),
        };
        if name == item::SNAPSHOT_VERIFIED && allow_data_loss {
            let evidence = format!("skipped: allowDataLoss is true (node: {evidence})");
            items.push(checked(name, true, evidence, now));
        } else {
            items.push(checked(name, passed, evidence, now));
        }
    }
    let snapshot_keys = node
        .snapshot
        .as_ref()
        .filter(|s| s.verified && s.after_writes_stopped && s.keys == node.live_keys)
        .map(|s| s.keys);
    ChecklistFacts { items, snapshot_keys }
}

/// The node could not be asked: every node item fails with the reason.
pub fn node_unreachable(error: &str, allow_data_loss: bool, now: Timestamp) -> ChecklistFacts {
    let items = item::FROM_NODE
        .iter()
        .map(|name| {
            let evidence = format!("GET /v1/checklist failed: {error}");
            if *name == item::SNAPSHOT_VERIFIED && allow_data_loss {
                checked(name, true, format!("skipped: allowDataLoss is true ({evidence})"), now)
            } else {
                checked(name, false, evidence, now)
            }
        })
        .collect();
    ChecklistFacts { items, snapshot_keys: None }
}

/// `disruption-allowed`, from the Eviction API's answer.
pub fn disruption_allowed(outcome: &EvictionOutcome, now: Timestamp) -> ChecklistItem {
    match outcome {
        EvictionOutcome::Evicted => checked(
            item::DISRUPTION_ALLOWED,
            true,
            "Eviction API accepted the eviction (PodDisruptionBudget allows it)".into(),
            now,
        ),
        EvictionOutcome::Gone => checked(
            item::DISRUPTION_ALLOWED,
            true,
            "pod already gone (Eviction API: 404)".into(),
            now,
        ),
        EvictionOutcome::Refused(message) => checked(
            item::DISRUPTION_ALLOWED,
            false,
            format!("Eviction API refused (429): {message}"),
            now,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::node_client::{NodeChecklistItem, SnapshotInfo};
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn now() -> Timestamp {
        "2026-11-22T03:00:00Z".parse().expect("timestamp")
    }

    fn endpoint(ip: &str, pod: &str, ready: Option<bool>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions { ready, serving: ready, ..Default::default() }),
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                name: Some(pod.into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn slice(name: &str, service: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: Some(endpoints),
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(SERVICE_NAME_LABEL.to_string(), service.to_string())].into()),
                ..Default::default()
            },
            ports: None,
        }
    }

    fn services() -> Vec<String> {
        vec!["mc".into(), "mc-headless".into()]
    }

    #[test]
    fn deregistered_passes_when_the_pod_is_only_a_not_ready_endpoint() {
        let slices = [
            slice(
                "mc-abc",
                "mc",
                vec![
                    endpoint("10.0.0.2", "mc-2", Some(false)),
                    endpoint("10.0.0.1", "mc-1", Some(true)),
                ],
            ),
            slice(
                "mc-headless-xyz",
                "mc-headless",
                vec![endpoint("10.0.0.2", "mc-2", Some(false))],
            ),
            slice("other-1", "other", vec![endpoint("10.0.0.2", "mc-2", Some(true))]),
        ];
        let item = deregistered("mc-2", Some("10.0.0.2"), &services(), &slices, now());
        assert!(item.passed);
        assert_eq!(
            item.evidence,
            "10.0.0.2 is in no serving endpoint of 2 EndpointSlice(s) of services mc, mc-headless"
        );
        assert_eq!(item.checked_at, "2026-11-22T03:00:00Z");
    }

    #[test]
    fn deregistered_fails_while_any_slice_still_lists_the_pod_ready() {
        let slices = [
            slice("mc-abc", "mc", vec![endpoint("10.0.0.2", "mc-2", Some(false))]),
            slice("mc-headless-xyz", "mc-headless", vec![endpoint("10.0.0.2", "mc-2", Some(true))]),
        ];
        let item = deregistered("mc-2", Some("10.0.0.2"), &services(), &slices, now());
        assert!(!item.passed);
        assert_eq!(
            item.evidence,
            "10.0.0.2 still a serving endpoint in mc-headless-xyz (service mc-headless)"
        );
    }

    #[test]
    fn publish_not_ready_addresses_slices_are_judged_by_serving() {
        // What a headless Service with publishNotReadyAddresses shows for a drained pod.
        let mut drained = endpoint("10.0.0.2", "mc-2", Some(true));
        drained.conditions = Some(EndpointConditions {
            ready: Some(true),
            serving: Some(false),
            terminating: Some(false),
        });
        let slices = [slice("mc-headless-xyz", "mc-headless", vec![drained])];
        assert!(deregistered("mc-2", Some("10.0.0.2"), &services(), &slices, now()).passed);
    }

    #[test]
    fn an_endpoint_without_a_ready_condition_counts_as_ready() {
        let slices = [slice("mc-abc", "mc", vec![endpoint("10.0.0.2", "mc-2", None)])];
        assert!(!deregistered("mc-2", Some("10.0.0.2"), &services(), &slices, now()).passed);
    }

    #[test]
    fn endpoints_match_by_target_ref_when_the_pod_ip_is_unknown() {
        let slices = [slice("mc-abc", "mc", vec![endpoint("10.0.0.9", "mc-2", Some(true))])];
        let item = deregistered("mc-2", None, &services(), &slices, now());
        assert!(!item.passed);
        assert_eq!(item.evidence, "<no IP> still a serving endpoint in mc-abc (service mc)");
    }

    fn node(snapshot_verified: bool) -> NodeChecklist {
        let reported = |name: &str, passed: bool| NodeChecklistItem {
            name: name.into(),
            passed,
            evidence: format!("{name} evidence"),
        };
        NodeChecklist {
            draining: true,
            live_keys: 1000,
            passed: snapshot_verified,
            items: vec![
                reported("no-inflight", true),
                reported("no-lock-waiters", true),
                reported("cross-checked", true),
                reported("maintenance-idle", true),
                reported("snapshot-verified", snapshot_verified),
            ],
            snapshot: Some(SnapshotInfo {
                keys: 1000,
                verified: snapshot_verified,
                after_writes_stopped: true,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn node_items_are_copied_with_their_evidence_and_the_snapshot_keys_kept() {
        let facts = from_node(&node(true), false, now());
        let names: Vec<&str> = facts.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, item::FROM_NODE);
        assert!(facts.items.iter().all(|i| i.passed));
        assert_eq!(facts.items[0].evidence, "no-inflight evidence");
        assert_eq!(facts.snapshot_keys, Some(1000));
    }

    #[test]
    fn an_unverified_snapshot_fails_and_gives_no_key_count() {
        let facts = from_node(&node(false), false, now());
        assert!(!facts.items[4].passed);
        assert_eq!(facts.snapshot_keys, None);
    }

    #[test]
    fn a_snapshot_with_a_different_key_count_gives_no_key_count() {
        let mut node = node(true);
        node.live_keys = 1001;
        assert_eq!(from_node(&node, false, now()).snapshot_keys, None);
    }

    #[test]
    fn allow_data_loss_passes_snapshot_verified_and_keeps_what_the_node_said() {
        let facts = from_node(&node(false), true, now());
        assert!(facts.items[4].passed);
        assert_eq!(
            facts.items[4].evidence,
            "skipped: allowDataLoss is true (node: snapshot-verified evidence)"
        );
    }

    #[test]
    fn an_item_the_node_did_not_report_fails() {
        let mut node = node(true);
        node.items.retain(|i| i.name != "cross-checked");
        let facts = from_node(&node, false, now());
        assert!(!facts.items[2].passed);
        assert_eq!(facts.items[2].evidence, "the node did not report this item");
    }

    #[test]
    fn an_unreachable_node_fails_every_node_item() {
        let facts = node_unreachable("connection refused", false, now());
        assert_eq!(facts.items.len(), 5);
        assert!(facts.items.iter().all(|i| !i.passed));
        assert_eq!(facts.items[0].evidence, "GET /v1/checklist failed: connection refused");
    }

    #[test]
    fn disruption_allowed_follows_the_eviction_answer() {
        assert!(disruption_allowed(&EvictionOutcome::Evicted, now()).passed);
        let refused = disruption_allowed(&EvictionOutcome::Refused("budget".into()), now());
        assert!(!refused.passed);
        assert_eq!(refused.evidence, "Eviction API refused (429): budget");
    }
}
