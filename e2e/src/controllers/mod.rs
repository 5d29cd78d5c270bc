//! The built-in controllers mapcache relies on, acting on the store directly (they run inside
//! the stand-in, like kube-controller-manager beside a real API server):
//! - `statefulset`: ordinal pods, PVCs, OnDelete / RollingUpdate, status
//! - `endpointslice`: one EndpointSlice per Service from its selector and pod readiness
//! - `pdb`: PodDisruptionBudget status

pub mod endpointslice;
pub mod pdb;
pub mod statefulset;

use crate::apiserver::registry::ResourceInfo;
use crate::apiserver::selector::{FieldSelector, LabelSelector};
use crate::apiserver::store::Store;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Run every controller until the returned tasks are aborted. Each pass runs after any change,
/// at most every `interval`, and at least every second.
pub fn spawn(store: Arc<Store>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut changes = store.subscribe();
        loop {
            statefulset::reconcile_all(&store);
            endpointslice::reconcile_all(&store);
            pdb::reconcile_all(&store);
            tokio::time::sleep(interval).await;
            // Wait for a change (or a second), then drain the rest of the burst.
            let _ = tokio::time::timeout(Duration::from_secs(1), changes.recv()).await;
            while changes.try_recv().is_ok() {}
        }
    })
}

pub(crate) fn info(store: &Store, group: &str, plural: &str) -> Option<ResourceInfo> {
    store.resource_by_key(group, plural)
}

pub(crate) fn list_all(store: &Store, info: &ResourceInfo, namespace: Option<&str>) -> Vec<Value> {
    store.list(info, namespace, &LabelSelector::default(), &FieldSelector::default()).0
}

pub(crate) fn name_of(object: &Value) -> &str {
    object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn namespace_of(object: &Value) -> &str {
    object.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default()
}

pub(crate) fn is_terminating(object: &Value) -> bool {
    object.pointer("/metadata/deletionTimestamp").is_some()
}

pub(crate) fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions").and_then(Value::as_array).is_some_and(|conditions| {
        conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")
    })
}

/// Whether `object` names `owner_uid` among its ownerReferences.
pub(crate) fn owned_by(object: &Value, owner_uid: &str) -> bool {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
}

pub(crate) fn controller_ref(owner: &Value) -> Value {
    serde_json::json!({
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner.pointer("/metadata/name"),
        "uid": owner.pointer("/metadata/uid"),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}
