//! The operator's Prometheus metrics, served on `/metrics` of `--metrics-addr`.
//!
//! Error labels are the `Error` variant names of the reconcile layers ([`crate::operator::reconcile::Error::metric_label`]),
//! as in kube-rs's controller-rs.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Label set of `mapcache_operator_reconcile_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The failing step's error variant (`InvalidSpec`, `Apply`, `Observe`, `UpdateStatus`, ...).
    pub error: String,
}

/// Counters and histograms of the reconcile loop. Cheap to clone handles (they share state).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `mapcache_operator_reconciles_total`: every reconcile started.
    pub reconciles: Counter,
    /// `mapcache_operator_reconcile_errors_total{error}`: failed reconciles by error kind.
    pub errors: Family<ErrorLabels, Counter>,
    /// `mapcache_operator_reconcile_duration_seconds`: wall time of a reconcile.
    pub duration: Histogram,
    /// `mapcache_operator_leader`: 1 while this replica holds the Lease.
    pub leader: prometheus_client::metrics::gauge::Gauge,
    /// `mapcache_operator_maintenance_total{kind,result}` (the maintain step).
    pub maintenance: crate::operator::maintain::metrics::MaintenanceMetrics,
    /// `mapcache_operator_rollout_*` (the roll step).
    pub rollout: crate::operator::rollout::metrics::RolloutMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Counter::default(),
            errors: Family::default(),
            duration: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            leader: Default::default(),
            maintenance: Default::default(),
            rollout: Default::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under the prefix `mapcache_operator`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("mapcache_operator");
        registry.register("reconciles", "Reconciles started", self.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles by error kind",
            self.errors.clone(),
        );
        registry.register_with_unit(
            "reconcile_duration",
            "Duration of a reconcile",
            prometheus_client::registry::Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            self.leader.clone(),
        );
        self.maintenance.register(registry);
        self.rollout.register(registry);
    }

    /// Counts a failed reconcile under `error` (an Error variant name).
    pub fn count_error(&self, error: &str) {
        self.errors.get_or_create(&ErrorLabels { error: error.to_string() }).inc();
    }

    /// Records a finished reconcile's duration.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_prefix_and_error_label() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.reconciles.inc();
        metrics.count_error("InvalidSpec");
        metrics.count_error("InvalidSpec");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("mapcache_operator_reconciles_total 1\n"), "{text}");
        assert!(
            text.contains("mapcache_operator_reconcile_errors_total{error=\"InvalidSpec\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("mapcache_operator_reconcile_duration_seconds_count 0\n"), "{text}");
        assert!(text.contains("mapcache_operator_leader 0\n"), "{text}");
    }
}
