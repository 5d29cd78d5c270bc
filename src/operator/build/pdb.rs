//! The PodDisruptionBudget `<name>`: node drains and the operator's own evictions (the rollout's
//! `disruption-allowed` item goes through the Eviction API) take at most `maxUnavailable` pods.

use super::{child_meta, selector_labels};
use crate::operator::crd::MapCache;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

pub fn build(mc: &MapCache) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: child_meta(mc, mc.name_any()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(mc.spec.pdb.max_unavailable)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(mc)),
                match_expressions: None,
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pdb_selects_the_pods_with_max_unavailable() {
        let mut mc = MapCache::test();
        mc.spec.pdb.max_unavailable = 2;
        let pdb = build(&mc);
        assert_eq!(pdb.metadata.name.as_deref(), Some("cache"));
        let spec = pdb.spec.expect("spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(2)));
        assert_eq!(spec.min_available, None);
        assert_eq!(spec.selector.and_then(|s| s.match_labels), Some(selector_labels(&mc)));
    }
}
