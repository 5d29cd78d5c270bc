//! EndpointSlice controller: one slice `<service>-local` per Service with a selector, listing
//! every matching pod that has an IP, with `conditions.ready` from the pod's Ready condition
//! (terminating pods are not ready), labelled `kubernetes.io/service-name`.

use super::{controller_ref, info, is_ready, is_terminating, list_all, name_of, namespace_of};
use crate::apiserver::selector::LabelSelector;
use crate::apiserver::store::Store;
use serde_json::{Value, json};

const MANAGER: &str = "endpointslice-controller";

pub fn reconcile_all(store: &Store) {
    let (Some(svc_info), Some(pods_info), Some(slice_info)) = (
        info(store, "", "services"),
        info(store, "", "pods"),
        info(store, "discovery.k8s.io", "endpointslices"),
    ) else {
        return;
    };
    for service in list_all(store, &svc_info, None) {
        let Some(selector) = service
            .pointer("/spec/selector")
            .filter(|s| s.as_object().is_some_and(|m| !m.is_empty()))
        else {
            continue;
        };
        if is_terminating(&service) {
            continue;
        }
        let namespace = namespace_of(&service).to_string();
        let service_name = name_of(&service).to_string();
        let selector = LabelSelector::from_map(selector);
        let publish_not_ready =
            service.pointer("/spec/publishNotReadyAddresses").and_then(Value::as_bool)
                == Some(true);
        let mut pods: Vec<Value> = list_all(store, &pods_info, Some(&namespace))
            .into_iter()
            .filter(|pod| {
                selector.matches(pod)
                    && pod
                        .pointer("/status/podIP")
                        .and_then(Value::as_str)
                        .is_some_and(|ip| !ip.is_empty())
            })
            .collect();
        pods.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        let endpoints: Vec<Value> = pods
            .iter()
            .map(|pod| {
                let terminating = is_terminating(pod);
                let ready = is_ready(pod) && !terminating;
                let mut endpoint = json!({
                    "addresses": [pod.pointer("/status/podIP")],
                    "conditions": {"ready": ready || publish_not_ready, "serving": is_ready(pod), "terminating": terminating},
                    "targetRef": {"kind": "Pod", "name": name_of(pod), "namespace": namespace, "uid": pod.pointer("/metadata/uid")},
                });
                if pod.pointer("/spec/subdomain").and_then(Value::as_str) == Some(service_name.as_str())
                    && let Some(hostname) = pod.pointer("/spec/hostname")
                {
                    endpoint["hostname"] = hostname.clone();
                }
                endpoint
            })
            .collect();
        let ports: Vec<Value> = service
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|port| {
                let target = resolve_target_port(port, pods.first());
                json!({"name": port.get("name").cloned().unwrap_or(json!("")), "port": target, "protocol": port.get("protocol").cloned().unwrap_or(json!("TCP"))})
            })
            .collect();
        let slice_name = format!("{service_name}-local");
        let desired = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": slice_name,
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": service_name, "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                "ownerReferences": [controller_ref(&service)],
            },
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports,
        });
        let result = match store.get(&slice_info, &namespace, &slice_name) {
            Err(_) => store.create(&slice_info, &namespace, desired, MANAGER).map(drop),
            Ok(existing)
                if existing["endpoints"] != desired["endpoints"]
                    || existing["ports"] != desired["ports"] =>
            {
                store
                    .update(&slice_info, &namespace, &slice_name, false, MANAGER, |current| {
                        let mut next = current.clone();
                        next["endpoints"] = desired["endpoints"].clone();
                        next["ports"] = desired["ports"].clone();
                        Ok(next)
                    })
                    .map(drop)
            }
            Ok(_) => Ok(()),
        };
        if let Err(error) = result {
            tracing::debug!(service = service_name, %error, "endpointslice write failed");
        }
    }
}

/// A numeric targetPort as is; a named one through the first pod's container ports.
fn resolve_target_port(port: &Value, pod: Option<&Value>) -> Value {
    match port.get("targetPort") {
        Some(Value::Number(n)) => Value::Number(n.clone()),
        Some(Value::String(name)) => pod
            .and_then(|pod| pod.pointer("/spec/containers").and_then(Value::as_array))
            .into_iter()
            .flatten()
            .flat_map(|c| c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
            .find(|p| p.get("name").and_then(Value::as_str) == Some(name.as_str()))
            .and_then(|p| p.get("containerPort").cloned())
            .unwrap_or_else(|| port.get("port").cloned().unwrap_or(Value::Null)),
        _ => port.get("port").cloned().unwrap_or(Value::Null),
    }
}
