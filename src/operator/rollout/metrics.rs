//! Rollout metrics: pods replaced, checklist failures by item, rollouts blocked and finished.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Label of the per-item checklist failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ItemLabels {
    /// The checklist item (`no-inflight`, ...), or `drain` / `restored-keys`.
    pub item: String,
}

/// Rollout counters, shared by every reconcile.
#[derive(Clone, Debug, Default)]
pub struct RolloutMetrics {
    /// `mapcache_operator_rollout_pods_replaced_total`
    pub pods_replaced: Counter,
    /// `mapcache_operator_rollouts_completed_total`
    pub completed: Counter,
    /// `mapcache_operator_rollout_checklist_failures_total{item}`: failing checks seen.
    pub checklist_failures: Family<ItemLabels, Counter>,
    /// `mapcache_operator_rollout_blocked_total{item}`: timeouts that blocked a rollout.
    pub blocked: Family<ItemLabels, Counter>,
    /// `mapcache_operator_rollout_proceeded_despite_checklist_total`: `onTimeout: Proceed` used.
    pub proceeded: Counter,
}

impl RolloutMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "rollout_pods_replaced",
            "Pods replaced by hot updates",
            self.pods_replaced.clone(),
        );
        registry.register("rollouts_completed", "Hot updates finished", self.completed.clone());
        registry.register(
            "rollout_checklist_failures",
            "Failing safe-deletion checklist items seen, by item",
            self.checklist_failures.clone(),
        );
        registry.register(
            "rollout_blocked",
            "Hot updates blocked at checklistTimeout, by item",
            self.blocked.clone(),
        );
        registry.register(
            "rollout_proceeded_despite_checklist",
            "Pods evicted with failing checklist items (onTimeout: Proceed)",
            self.proceeded.clone(),
        );
    }

    pub fn checklist_failure(&self, item: &str) {
        self.checklist_failures.get_or_create(&ItemLabels { item: item.into() }).inc();
    }

    pub fn blocked_on(&self, item: &str) {
        self.blocked.get_or_create(&ItemLabels { item: item.into() }).inc();
    }
}
