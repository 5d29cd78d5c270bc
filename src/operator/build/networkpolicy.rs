//! The NetworkPolicy `<name>`: the RESP port stays open to any client; the admin port (drain,
//! compact, debug dumps) admits only the operator's pods and the cache's own pods.

use super::{child_meta, selector_labels};
use crate::operator::crd::MapCache;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use std::collections::BTreeMap;

/// The label the operator's pods carry (set by the Helm chart and manifests/install.yaml).
pub const OPERATOR_POD_LABEL: (&str, &str) = ("app.kubernetes.io/name", "mapcache-operator");

fn tcp(port: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(port)),
        protocol: Some("TCP".into()),
        end_port: None,
    }
}

pub fn build(mc: &MapCache) -> NetworkPolicy {
    let operator_pods = NetworkPolicyPeer {
        // An empty namespace selector matches every namespace: the operator may run anywhere.
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                OPERATOR_POD_LABEL.0.to_string(),
                OPERATOR_POD_LABEL.1.to_string(),
            )])),
            match_expressions: None,
        }),
        ip_block: None,
    };
    let cache_pods = NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(selector_labels(mc)),
            match_expressions: None,
        }),
        ..NetworkPolicyPeer::default()
    };
    NetworkPolicy {
        metadata: child_meta(mc, mc.name_any()),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(mc)),
                match_expressions: None,
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(vec![tcp(mc.spec.engine.port)]),
                    from: None,
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![tcp(mc.spec.engine.admin_port)]),
                    from: Some(vec![operator_pods, cache_pods]),
                },
            ]),
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_port_is_open_and_admin_port_only_for_operator_and_cache_pods() {
        let mc = MapCache::test();
        let policy = build(&mc);
        assert_eq!(policy.metadata.name.as_deref(), Some("cache"));
        let spec = policy.spec.expect("spec");
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
        assert_eq!(spec.pod_selector.and_then(|s| s.match_labels), Some(selector_labels(&mc)));
        let rules = spec.ingress.expect("ingress");
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0].ports.as_ref().map(|p| p[0].port.clone()),
            Some(Some(IntOrString::Int(6379)))
        );
        assert_eq!(rules[0].from, None);
        assert_eq!(
            rules[1].ports.as_ref().map(|p| p[0].port.clone()),
            Some(Some(IntOrString::Int(9090)))
        );
        let from = rules[1].from.clone().expect("from");
        assert_eq!(
            from[0].pod_selector.clone().and_then(|s| s.match_labels),
            Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                "mapcache-operator".to_string()
            )]))
        );
        assert_eq!(from[0].namespace_selector, Some(LabelSelector::default()));
        assert_eq!(
            from[1].pod_selector.clone().and_then(|s| s.match_labels),
            Some(selector_labels(&mc))
        );
    }
}
