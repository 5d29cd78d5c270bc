//! `mapcache_operator_maintenance_total{kind,result}`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Labels of `mapcache_operator_maintenance_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MaintenanceLabels {
    /// `compact` | `rebuild`
    pub kind: String,
    /// `started` | `succeeded` | `conflict` (409: one was already running) | `failed`
    pub result: String,
}

/// Maintenance counters, shared by every reconcile.
#[derive(Clone, Debug, Default)]
pub struct MaintenanceMetrics {
    pub total: Family<MaintenanceLabels, Counter>,
}

impl MaintenanceMetrics {
    /// Registers under the `mapcache_operator` prefix the caller's registry already has.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "maintenance",
            "Compactions and rebuilds the operator triggered, by kind and result",
            self.total.clone(),
        );
    }

    pub fn count(&self, kind: &str, result: &str) {
        self.total
            .get_or_create(&MaintenanceLabels { kind: kind.into(), result: result.into() })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_render_with_kind_and_result_labels() {
        let metrics = MaintenanceMetrics::default();
        let mut registry = Registry::default();
        metrics.register(registry.sub_registry_with_prefix("mapcache_operator"));
        metrics.count("compact", "started");
        metrics.count("compact", "started");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains(
                "mapcache_operator_maintenance_total{kind=\"compact\",result=\"started\"} 2"
            ),
            "{text}"
        );
    }
}
