//! The Eviction subresource: a pod is deleted only if every PodDisruptionBudget covering it
//! still allows a disruption; otherwise 429, as the real server answers.

use super::error::{ApiError, ApiResult, success_status};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{DeleteOptions, Store};
use serde_json::{Value, json};

/// Whether a pod counts as healthy for a budget: Ready and not terminating.
pub fn pod_is_healthy(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_none()
        && pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|conditions| {
            conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The figures of a PDB's status: (expectedPods, currentHealthy, desiredHealthy, disruptionsAllowed).
pub fn budget(store: &Store, pdb: &Value) -> (i64, i64, i64, i64) {
    let namespace = pdb.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let selector =
        LabelSelector::from_structured(pdb.pointer("/spec/selector").unwrap_or(&Value::Null));
    let Some(pods_info) = store.resource("", "v1", "pods") else { return (0, 0, 0, 0) };
    let (pods, _) = store.list(&pods_info, Some(namespace), &selector, &FieldSelector::default());
    let healthy = pods.iter().filter(|pod| pod_is_healthy(pod)).count() as i64;
    // Expected pods: the owning controller's scale when there is one, else the pods that exist.
    let sts_info = store.resource("apps", "v1", "statefulsets");
    let mut expected = 0i64;
    let mut counted_owners = Vec::new();
    for pod in &pods {
        let owner =
            pod.pointer("/metadata/ownerReferences").and_then(Value::as_array).and_then(|refs| {
                refs.iter().find(|r| r["kind"] == "StatefulSet" && r["controller"] == true)
            });
        match (owner, &sts_info) {
            (Some(owner), Some(sts_info)) => {
                let name = owner["name"].as_str().unwrap_or_default();
                if !counted_owners.contains(&name.to_string()) {
                    counted_owners.push(name.to_string());
                    expected += store
                        .get(sts_info, namespace, name)
                        .ok()
                        .and_then(|sts| sts.pointer("/spec/replicas").and_then(Value::as_i64))
                        .unwrap_or(1);
                }
            }
            _ => expected += 1,
        }
    }
    let resolve = |value: &Value| -> Option<i64> {
        match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s
                .strip_suffix('%')
                .and_then(|p| p.parse::<i64>().ok())
                .map(|p| (expected * p + 99) / 100),
            _ => None,
        }
    };
    let desired =
        if let Some(max_unavailable) = pdb.pointer("/spec/maxUnavailable").and_then(resolve) {
            (expected - max_unavailable).max(0)
        } else if let Some(min_available) = pdb.pointer("/spec/minAvailable").and_then(resolve) {
            min_available
        } else {
            expected
        };
    (expected, healthy, desired, (healthy - desired).max(0))
}

pub fn evict(store: &Store, namespace: &str, name: &str, body: &Value) -> ApiResult<Value> {
    let pods_info = store
        .resource("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = store.get(&pods_info, namespace, name)?;
    let options = DeleteOptions::from_json(body.get("deleteOptions").unwrap_or(&Value::Null));
    if pod.pointer("/metadata/deletionTimestamp").is_some() {
        return Ok(success_status(200));
    }
    let pdbs: Vec<Value> = match store.resource("policy", "v1", "poddisruptionbudgets") {
        Some(info) => {
            let (pdbs, _) = store.list(
                &info,
                Some(namespace),
                &LabelSelector::default(),
                &FieldSelector::default(),
            );
            pdbs.into_iter()
                .filter(|pdb| {
                    LabelSelector::from_structured(
                        pdb.pointer("/spec/selector").unwrap_or(&Value::Null),
                    )
                    .matches(&pod)
                })
                .collect()
        }
        None => Vec::new(),
    };
    if pdbs.len() > 1 {
        return Err(ApiError::internal(
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    if let Some(pdb) = pdbs.first()
        && pod_is_healthy(&pod)
    {
        let (_, healthy, desired, allowed) = budget(store, pdb);
        if allowed <= 0 {
            let pdb_name =
                pdb.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
            return Err(ApiError::too_many_requests("Cannot evict pod as it would violate the pod's disruption budget.").with_details(json!({
                "causes": [{"reason": "DisruptionBudget", "message": format!("The disruption budget {pdb_name} needs {desired} healthy pods and has {healthy} currently")}]
            })));
        }
    }
    store.delete(&pods_info, namespace, name, &options)?;
    Ok(success_status(201))
}
