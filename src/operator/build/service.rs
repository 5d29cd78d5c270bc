//! The Services: `<name>-headless` gives each pod a stable DNS name (the StatefulSet's
//! `serviceName`); `<name>` is what clients connect to (RESP port only).

use super::{child_meta, headless_service_name, selector_labels};
use crate::operator::crd::MapCache;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

fn port(name: &str, port: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// `<name>-headless`: both ports, and not-ready pods published too, so a restoring pod already
/// has its DNS name (the operator reaches it through the pod IP in any case).
pub fn build_headless(mc: &MapCache) -> Service {
    Service {
        metadata: child_meta(mc, headless_service_name(mc)),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(mc)),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![
                port("redis", mc.spec.engine.port),
                port("admin", mc.spec.engine.admin_port),
            ]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// `<name>`: the client Service, ready pods only, RESP port only (the admin API is not for
/// clients).
pub fn build_client(mc: &MapCache) -> Service {
    Service {
        metadata: child_meta(mc, mc.name_any()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(mc)),
            ports: Some(vec![port("redis", mc.spec.engine.port)]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headless_service_publishes_both_ports_for_not_ready_pods() {
        let svc = build_headless(&MapCache::test());
        assert_eq!(svc.metadata.name.as_deref(), Some("cache-headless"));
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector, Some(selector_labels(&MapCache::test())));
        let ports = spec.ports.expect("ports");
        assert_eq!(
            ports
                .iter()
                .map(|p| (p.name.as_deref(), p.port, p.target_port.clone()))
                .collect::<Vec<_>>(),
            [
                (Some("redis"), 6379, Some(IntOrString::String("redis".into()))),
                (Some("admin"), 9090, Some(IntOrString::String("admin".into()))),
            ]
        );
        assert_eq!(
            svc.metadata.owner_references.map(|o| o[0].name.clone()),
            Some("cache".to_string())
        );
    }

    #[test]
    fn client_service_exposes_only_the_resp_port() {
        let svc = build_client(&MapCache::test());
        assert_eq!(svc.metadata.name.as_deref(), Some("cache"));
        let spec = svc.spec.expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.publish_not_ready_addresses, None);
        let ports = spec.ports.expect("ports");
        assert_eq!(
            ports.iter().map(|p| (p.name.as_deref(), p.port)).collect::<Vec<_>>(),
            [(Some("redis"), 6379)]
        );
    }
}
