//! StatefulSet controller: pods `<sts>-<ordinal>` from the template, one PVC per pod and
//! volumeClaimTemplate (never deleted with the pod, as the default Retain policy), OrderedReady
//! or Parallel creation, OnDelete or RollingUpdate (highest ordinal first, with partition), and
//! status replicas/readyReplicas/currentRevision/updateRevision.

use super::{
    controller_ref, info, is_ready, is_terminating, list_all, name_of, namespace_of, owned_by,
};
use crate::apiserver::store::{DeleteOptions, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const MANAGER: &str = "statefulset-controller";

/// FNV-1a of the template's JSON: the revision name suffix.
pub fn template_hash(template: &Value) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in template.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:010x}", hash & 0xff_ffff_ffff)
}

pub fn reconcile_all(store: &Store) {
    let Some(sts_info) = info(store, "apps", "statefulsets") else { return };
    for sts in list_all(store, &sts_info, None) {
        if let Err(error) = reconcile(store, &sts) {
            tracing::warn!(statefulset = name_of(&sts), %error, "statefulset reconcile failed");
        }
    }
}

fn ordinal_of(pod_name: &str, sts_name: &str) -> Option<i64> {
    pod_name.strip_prefix(sts_name)?.strip_prefix('-')?.parse().ok()
}

fn revision_of(pod: &Value) -> &str {
    pod.pointer("/metadata/labels/controller-revision-hash")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn reconcile(store: &Store, sts: &Value) -> Result<(), crate::apiserver::error::ApiError> {
    let (Some(pods_info), Some(pvc_info), Some(sts_info)) = (
        info(store, "", "pods"),
        info(store, "", "persistentvolumeclaims"),
        info(store, "apps", "statefulsets"),
    ) else {
        return Ok(());
    };
    let namespace = namespace_of(sts).to_string();
    let name = name_of(sts).to_string();
    let uid = sts.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    if is_terminating(sts) {
        return Ok(());
    }
    let replicas = sts.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1);
    let template = sts.pointer("/spec/template").cloned().unwrap_or(json!({}));
    if !template.get("spec").is_some_and(Value::is_object)
        || template.get("metadata").is_some_and(|m| !m.is_object())
    {
        tracing::warn!(statefulset = name, "spec.template is not a pod template; skipped");
        return Ok(());
    }
    let update_revision = format!("{name}-{}", template_hash(&template));
    let parallel =
        sts.pointer("/spec/podManagementPolicy").and_then(Value::as_str) == Some("Parallel");
    let on_delete =
        sts.pointer("/spec/updateStrategy/type").and_then(Value::as_str) == Some("OnDelete");
    let partition = sts
        .pointer("/spec/updateStrategy/rollingUpdate/partition")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let claim_templates: Vec<Value> = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();

    let pods: BTreeMap<i64, Value> = list_all(store, &pods_info, Some(&namespace))
        .into_iter()
        .filter(|pod| owned_by(pod, &uid))
        .filter_map(|pod| ordinal_of(name_of(&pod), &name).map(|ordinal| (ordinal, pod)))
        .collect();

    // Create missing pods (and their claims).
    for ordinal in 0..replicas {
        if pods.contains_key(&ordinal) {
            continue;
        }
        if !parallel
            && (0..ordinal)
                .any(|lower| !pods.get(&lower).is_some_and(|p| is_ready(p) && !is_terminating(p)))
        {
            break;
        }
        let pod_name = format!("{name}-{ordinal}");
        let mut volumes: Vec<Value> = template
            .pointer("/spec/volumes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for claim in &claim_templates {
            let claim_name =
                claim.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("data");
            let pvc_name = format!("{claim_name}-{pod_name}");
            if store.get(&pvc_info, &namespace, &pvc_name).is_err() {
                let mut labels = template.pointer("/metadata/labels").cloned().unwrap_or(json!({}));
                if let Some(extra) = claim.pointer("/metadata/labels").and_then(Value::as_object) {
                    for (key, value) in extra {
                        labels[key] = value.clone();
                    }
                }
                let capacity = claim
                    .pointer("/spec/resources/requests/storage")
                    .cloned()
                    .unwrap_or(json!("1Gi"));
                let pvc = json!({
                    "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": pvc_name, "namespace": namespace, "labels": labels},
                    "spec": claim.get("spec").cloned().unwrap_or(json!({})),
                    "status": {"phase": "Bound", "accessModes": claim.pointer("/spec/accessModes"), "capacity": {"storage": capacity}},
                });
                store.create(&pvc_info, &namespace, pvc, MANAGER)?;
            }
            volumes.retain(|v| v["name"] != claim_name);
            volumes.push(
                json!({"name": claim_name, "persistentVolumeClaim": {"claimName": pvc_name}}),
            );
        }
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": template.get("metadata").cloned().unwrap_or(json!({})),
            "spec": template.get("spec").cloned().unwrap_or(json!({})),
        });
        pod["metadata"]["name"] = json!(pod_name);
        pod["metadata"]["namespace"] = json!(namespace);
        pod["metadata"]["ownerReferences"] = json!([controller_ref(sts)]);
        if !pod["metadata"]["labels"].is_object() {
            pod["metadata"]["labels"] = json!({});
        }
        pod["metadata"]["labels"]["controller-revision-hash"] = json!(update_revision);
        pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
        pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] = json!(ordinal.to_string());
        pod["spec"]["hostname"] = json!(pod_name);
        if let Some(service) = sts.pointer("/spec/serviceName") {
            pod["spec"]["subdomain"] = service.clone();
        }
        if !volumes.is_empty() {
            pod["spec"]["volumes"] = json!(volumes);
        }
        store.create(&pods_info, &namespace, pod, MANAGER)?;
    }

    // Scale down: highest ordinals first (all at once when Parallel).
    let terminating = pods.values().any(is_terminating);
    for (ordinal, pod) in pods.iter().rev() {
        if *ordinal < replicas || is_terminating(pod) {
            continue;
        }
        if !parallel && terminating {
            break;
        }
        store.delete(&pods_info, &namespace, name_of(pod), &DeleteOptions::default())?;
        if !parallel {
            break;
        }
    }

    // RollingUpdate: replace the highest out-of-date pod once every pod is up and Ready.
    let all_ready =
        (0..replicas).all(|o| pods.get(&o).is_some_and(|p| is_ready(p) && !is_terminating(p)));
    if !on_delete && all_ready {
        let stale = (partition..replicas)
            .rev()
            .find(|o| pods.get(o).is_some_and(|p| revision_of(p) != update_revision));
        if let Some(pod) = stale.and_then(|o| pods.get(&o)) {
            store.delete(&pods_info, &namespace, name_of(pod), &DeleteOptions::default())?;
        }
    }

    // Status.
    let in_range: Vec<&Value> =
        pods.iter().filter(|(o, _)| **o < replicas).map(|(_, p)| p).collect();
    let ready = in_range.iter().filter(|p| is_ready(p)).count();
    let updated = in_range.iter().filter(|p| revision_of(p) == update_revision).count();
    let previous_current = sts
        .pointer("/status/currentRevision")
        .and_then(Value::as_str)
        .unwrap_or(&update_revision)
        .to_string();
    let current_revision =
        if updated as i64 == replicas { update_revision.clone() } else { previous_current };
    let current = in_range.iter().filter(|p| revision_of(p) == current_revision).count();
    let status = json!({
        "observedGeneration": sts.pointer("/metadata/generation"),
        "replicas": pods.len(),
        "readyReplicas": ready,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_revision,
        "updateRevision": update_revision,
        "collisionCount": 0,
    });
    if sts.get("status") != Some(&status) {
        store.update(&sts_info, &namespace, &name, true, MANAGER, |current| {
            let mut next = current.clone();
            next["status"] = status;
            Ok(next)
        })?;
    }
    Ok(())
}
