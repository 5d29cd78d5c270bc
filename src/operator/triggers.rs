//! What makes the controller reconcile a cache: a change of its spec, of a child it owns, or of
//! what `observe` reads from one of its pods. Never the operator's own status write: with every
//! watch event a trigger, each reconcile's status patch (live figures that move under client
//! load) triggered the next one, 5-6 reconciles a second (issue #22). The live figures are
//! refreshed on the poll interval instead: the reconcile's requeue.
//!
//! Each watched kind gets a fingerprint of what matters to the reconcile; [`Changes`] lets an
//! object through when it is first seen, when its fingerprint changes, and when it is deleted
//! (a deleted child must be re-created). kube-runtime's `predicate_filter` does the first two but
//! drops a deletion whose fingerprint is unchanged, hence this small filter over watcher events.

use crate::operator::crd::MapCache;
use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The fingerprints of the objects seen so far, by uid (namespace/name when there is none).
#[derive(Debug, Default)]
pub struct Changes {
    seen: HashMap<String, u64>,
}

impl Changes {
    /// The object of `event` when it is worth a reconcile: first seen, changed in what
    /// `fingerprint` hashes, or deleted. A re-list (after a watch restart) repeats every object
    /// unchanged, which passes nothing.
    pub fn filter<K: Resource>(
        &mut self,
        event: watcher::Event<K>,
        fingerprint: impl Fn(&K) -> u64,
    ) -> Option<K> {
        match event {
            watcher::Event::Apply(object) | watcher::Event::InitApply(object) => {
                let print = fingerprint(&object);
                (self.seen.insert(key(&object), print) != Some(print)).then_some(object)
            }
            watcher::Event::Delete(object) => {
                self.seen.remove(&key(&object));
                Some(object)
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        }
    }
}

fn key<K: Resource>(object: &K) -> String {
    object.uid().unwrap_or_else(|| {
        format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any())
    })
}

/// The objects of a watcher's `events` that pass [`Changes::filter`]; errors pass through (the
/// controller logs them, the watcher's backoff retries).
pub fn changes<K, S>(
    events: S,
    fingerprint: fn(&K) -> u64,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource + Send,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut changes = Changes::default();
    events.filter_map(move |event| {
        future::ready(match event {
            Ok(event) => changes.filter(event, fingerprint).map(Ok),
            Err(error) => Some(Err(error)),
        })
    })
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// A MapCache: its spec (the generation, bumped by every spec change and by the deletion
/// marking), labels, annotations and finalizers. Not its status, which the operator writes.
pub fn cache_fingerprint(cache: &MapCache) -> u64 {
    let meta = &cache.metadata;
    hash_of(&(
        meta.generation,
        meta.deletion_timestamp.is_some(),
        &meta.labels,
        &meta.annotations,
        &meta.finalizers,
    ))
}

/// A child (StatefulSet, Services, ConfigMap, Secret, PDB, NetworkPolicy): the whole object but
/// its status and bookkeeping (`resourceVersion`, `managedFields`), so an edit of what the
/// operator applied triggers a re-apply while the StatefulSet's replica counts do not (the pods'
/// own watch reports readiness).
pub fn child_fingerprint<K: Serialize>(child: &K) -> u64 {
    let mut value = serde_json::to_value(child).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("status");
        if let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.remove("resourceVersion");
            meta.remove("managedFields");
        }
    }
    hash_of(&value.to_string())
}

/// A pod: what `observe` and the rollout read from it (its incarnation, labels, readiness,
/// address, deletion, phase and container restarts), not the rest of its status.
pub fn pod_fingerprint(pod: &Pod) -> u64 {
    let status = pod.status.as_ref();
    let ready = status.and_then(|s| s.conditions.as_ref()).and_then(|conditions| {
        conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone())
    });
    let restarts: Vec<(String, i32)> = status
        .and_then(|s| s.container_statuses.as_ref())
        .map(|containers| containers.iter().map(|c| (c.name.clone(), c.restart_count)).collect())
        .unwrap_or_default();
    hash_of(&(
        pod.uid(),
        pod.labels(),
        pod.metadata.deletion_timestamp.is_some(),
        ready,
        status.and_then(|s| s.pod_ip.clone()),
        status.and_then(|s| s.phase.clone()),
        restarts,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::crd::{MapCacheStatus, PodStatus};
    use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus as CorePodStatus};
    use kube::api::ObjectMeta;

    fn cache(generation: i64) -> MapCache {
        let mut cache = MapCache::test().with_generation(generation);
        cache.metadata.uid = Some("uid-cache".into());
        cache
    }

    fn apply<K: Resource>(changes: &mut Changes, object: K, print: fn(&K) -> u64) -> bool {
        changes.filter(watcher::Event::Apply(object), print).is_some()
    }

    #[test]
    fn a_status_write_does_not_trigger_a_reconcile_but_a_spec_change_does() {
        let mut changes = Changes::default();
        assert!(apply(&mut changes, cache(1), cache_fingerprint), "first sighting");
        let mut written = cache(1);
        written.status = Some(MapCacheStatus {
            keys: 123_456,
            phase: Some("Running".into()),
            pods: vec![PodStatus { name: "cache-0".into(), keys: 123_456, ..PodStatus::default() }],
            ..MapCacheStatus::default()
        });
        written.metadata.resource_version = Some("99".into());
        assert!(!apply(&mut changes, written.clone(), cache_fingerprint), "own status write");
        written.status.as_mut().expect("status").keys = 123_999;
        assert!(!apply(&mut changes, written, cache_fingerprint), "figures only");
        assert!(apply(&mut changes, cache(2), cache_fingerprint), "spec change");
        assert!(!apply(&mut changes, cache(2), cache_fingerprint), "re-list, unchanged");
    }

    fn statefulset(replicas: i32, ready: i32) -> StatefulSet {
        StatefulSet {
            metadata: ObjectMeta {
                name: Some("cache".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-sts".into()),
                resource_version: Some(format!("{replicas}{ready}")),
                ..ObjectMeta::default()
            },
            spec: StatefulSetSpec { replicas: Some(replicas), ..StatefulSetSpec::default() },
            status: Some(StatefulSetStatus { ready_replicas: Some(ready), ..Default::default() }),
        }
    }

    #[test]
    fn a_child_triggers_on_its_spec_and_its_deletion_not_its_status() {
        let mut changes = Changes::default();
        let print = child_fingerprint::<StatefulSet>;
        assert!(apply(&mut changes, statefulset(3, 0), print));
        assert!(!apply(&mut changes, statefulset(3, 2), print), "status only");
        assert!(apply(&mut changes, statefulset(4, 2), print), "spec edited");
        let deleted = changes.filter(watcher::Event::Delete(statefulset(4, 2)), print);
        assert!(deleted.is_some(), "a deleted child is re-created");
        assert!(apply(&mut changes, statefulset(4, 0), print), "seen anew after deletion");
        assert_eq!(changes.filter(watcher::Event::<StatefulSet>::Init, print), None);
    }

    fn pod(ready: &str, restarts: i32, started_at_seconds: i64) -> Pod {
        use k8s_openapi::api::core::v1::ContainerStatus;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let started =
            Time(k8s_openapi::jiff::Timestamp::from_second(started_at_seconds).expect("t"));
        Pod {
            metadata: ObjectMeta {
                name: Some("cache-0".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-pod".into()),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(CorePodStatus {
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    last_probe_time: Some(started.clone()),
                    ..PodCondition::default()
                }]),
                container_statuses: Some(vec![ContainerStatus {
                    name: "engine".into(),
                    restart_count: restarts,
                    ..ContainerStatus::default()
                }]),
                pod_ip: Some("10.0.0.5".into()),
                phase: Some("Running".into()),
                start_time: Some(started),
                ..CorePodStatus::default()
            }),
        }
    }

    #[test]
    fn a_pod_triggers_on_readiness_and_restarts_not_on_probe_times() {
        let mut changes = Changes::default();
        assert!(apply(&mut changes, pod("True", 0, 10), pod_fingerprint));
        assert!(!apply(&mut changes, pod("True", 0, 20), pod_fingerprint), "probe time only");
        assert!(apply(&mut changes, pod("False", 0, 20), pod_fingerprint), "not ready");
        assert!(apply(&mut changes, pod("False", 1, 20), pod_fingerprint), "engine restarted");
    }
}
