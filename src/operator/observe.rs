//! `observe`: what the cache's pods look like right now, read after `apply`.
//!
//! Pods are listed by the cache's selector labels. The engine figures (`/v1/stats`) are read by
//! the maintenance step, which gets this snapshot of the pods.

use crate::operator::build::{REVISION_LABEL, selector_string};
use crate::operator::crd::MapCache;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;

/// Why the pods could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listing the pods of {cache}: {source}")]
    ListPods {
        cache: String,
        #[source]
        source: kube::Error,
    },
}

/// The cache's pods and revisions, as seen after apply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// Every pod of the cache, by ordinal (pods without an ordinal last, by name).
    pub pods: Vec<ObservedPod>,
    /// The revision of the pod template just applied (`mapcache.io/revision`).
    pub update_revision: String,
    /// The revision all ready pods share, when they share one and at least one is ready.
    pub current_revision: Option<String>,
    /// The admin token the pods mount (`<name>-admin-token`, key `token`).
    pub admin_token: Option<String>,
}

impl Observed {
    /// Ready pods that are not being deleted.
    pub fn ready_pods(&self) -> impl Iterator<Item = &ObservedPod> {
        self.pods.iter().filter(|pod| pod.ready && !pod.terminating)
    }

    /// Ready, not terminating pods (what `status.readyReplicas` reports).
    pub fn ready_count(&self) -> i32 {
        i32::try_from(self.ready_pods().count()).unwrap_or(i32::MAX)
    }

    /// Pods still on another revision than `update_revision`.
    pub fn outdated_pods(&self) -> impl Iterator<Item = &ObservedPod> {
        self.pods
            .iter()
            .filter(|pod| pod.revision.as_deref() != Some(self.update_revision.as_str()))
    }
}

/// One pod of the cache.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObservedPod {
    /// `<cache>-<ordinal>`.
    pub name: String,
    /// Identifies this incarnation of the pod (a recreated pod keeps the name, not the uid).
    pub uid: String,
    /// The StatefulSet ordinal (`<name>-<ordinal>`), -1 when the name has none.
    pub ordinal: i32,
    /// The `Ready` condition is True.
    pub ready: bool,
    /// The pod's `mapcache.io/revision` label: the template revision it was created from.
    pub revision: Option<String>,
    /// Where the admin API is reachable (`http://<pod_ip>:<adminPort>`).
    pub pod_ip: Option<String>,
    /// The pod has a deletionTimestamp.
    pub terminating: bool,
    /// All the pod's labels (the rollout marks a draining pod with `mapcache.io/draining`).
    pub labels: BTreeMap<String, String>,
}

impl ObservedPod {
    pub fn from_pod(cache: &str, pod: &Pod) -> Self {
        let name = pod.name_any();
        let ordinal = name
            .strip_prefix(cache)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|ordinal| ordinal.parse().ok())
            .unwrap_or(-1);
        let status = pod.status.as_ref();
        let ready = status.and_then(|s| s.conditions.as_ref()).is_some_and(|conditions| {
            conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
        });
        Self {
            uid: pod.uid().unwrap_or_default(),
            ordinal,
            ready,
            revision: pod.labels().get(REVISION_LABEL).cloned(),
            pod_ip: status.and_then(|s| s.pod_ip.clone()).filter(|ip| !ip.is_empty()),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            labels: pod.labels().clone(),
            name,
        }
    }
}

/// Builds [`Observed`] from listed pods (pure, so the revision rules are unit-tested).
pub fn from_pods(
    cache: &str,
    pods: &[Pod],
    update_revision: String,
    admin_token: Option<String>,
) -> Observed {
    let mut pods: Vec<ObservedPod> =
        pods.iter().map(|pod| ObservedPod::from_pod(cache, pod)).collect();
    pods.sort_by(|a, b| {
        (a.ordinal < 0, a.ordinal, &a.name).cmp(&(b.ordinal < 0, b.ordinal, &b.name))
    });
    let mut ready_revisions =
        pods.iter().filter(|p| p.ready && !p.terminating).map(|p| p.revision.as_deref());
    let current_revision = match ready_revisions.next() {
        Some(Some(first)) if ready_revisions.all(|r| r == Some(first)) => Some(first.to_string()),
        _ => None,
    };
    Observed { pods, update_revision, current_revision, admin_token }
}

/// Lists the cache's pods. `admin_token` is the token just applied (so it is not read again).
pub async fn observe(
    client: &kube::Client,
    mc: &MapCache,
    update_revision: String,
    admin_token: String,
) -> Result<Observed, Error> {
    let namespace = mc.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let listed = pods
        .list(&ListParams::default().labels(&selector_string(mc)))
        .await
        .map_err(|source| Error::ListPods { cache: mc.name_any(), source })?;
    Ok(from_pods(&mc.name_any(), &listed.items, update_revision, Some(admin_token)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use kube::api::ObjectMeta;

    /// A pod of cache `cache` with the given ordinal, readiness and revision.
    pub fn pod(ordinal: i32, ready: bool, revision: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(format!("cache-{ordinal}")),
                uid: Some(format!("uid-pod-{ordinal}")),
                labels: Some(BTreeMap::from([(REVISION_LABEL.to_string(), revision.to_string())])),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(PodStatus {
                pod_ip: Some(format!("10.0.0.{}", ordinal + 1)),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
        }
    }

    #[test]
    fn pods_are_sorted_by_ordinal_with_fields_read() {
        let observed = from_pods(
            "cache",
            &[pod(2, true, "a"), pod(0, false, "a"), pod(10, true, "a")],
            "a".into(),
            None,
        );
        assert_eq!(observed.pods.iter().map(|p| p.ordinal).collect::<Vec<_>>(), [0, 2, 10]);
        let first = &observed.pods[0];
        assert_eq!(first.name, "cache-0");
        assert_eq!(first.uid, "uid-pod-0");
        assert!(!first.ready);
        assert_eq!(first.revision.as_deref(), Some("a"));
        assert_eq!(first.pod_ip.as_deref(), Some("10.0.0.1"));
        assert!(!first.terminating);
        assert_eq!(observed.ready_count(), 2);
    }

    #[test]
    fn current_revision_is_the_one_all_ready_pods_share() {
        let shared = from_pods(
            "cache",
            &[pod(0, true, "a"), pod(1, true, "a"), pod(2, false, "b")],
            "b".into(),
            None,
        );
        assert_eq!(shared.current_revision.as_deref(), Some("a"));
        assert_eq!(
            shared.outdated_pods().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["cache-0", "cache-1"]
        );
        let mixed = from_pods("cache", &[pod(0, true, "a"), pod(1, true, "b")], "b".into(), None);
        assert_eq!(mixed.current_revision, None);
        let none_ready = from_pods("cache", &[pod(0, false, "a")], "a".into(), None);
        assert_eq!(none_ready.current_revision, None);
    }

    #[test]
    fn name_without_ordinal_gets_minus_one() {
        let mut odd = pod(0, true, "a");
        odd.metadata.name = Some("other-x".into());
        assert_eq!(ObservedPod::from_pod("cache", &odd).ordinal, -1);
    }
}
