//! Pure builders: one file per child resource of a `MapCache`.
//!
//! Every builder takes the cache and the validated settings ([`Validated`]) and returns the
//! desired object; none touches the network, so each is unit-tested field by field. All children
//! carry the same labels ([`labels`]) and a controller owner reference to the cache, so deleting
//! the cache garbage-collects them.

pub mod configmap;
pub mod networkpolicy;
pub mod pdb;
pub mod secret;
pub mod service;
pub mod statefulset;

use crate::operator::crd::MapCache;
use crate::operator::validate::Validated;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "mapcache-operator";
/// Label `app.kubernetes.io/name` of every child: selects all mapcache objects.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label `app.kubernetes.io/instance`: the cache's name.
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
/// Label `app.kubernetes.io/managed-by`.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Pod-template label and annotation carrying the template hash ([`statefulset::revision`]).
pub const REVISION_LABEL: &str = "mapcache.io/revision";
/// Key of the admin token inside `<name>-admin-token`.
pub const ADMIN_TOKEN_KEY: &str = "token";
/// Where the admin token Secret is mounted in the engine container.
pub const ADMIN_TOKEN_DIR: &str = "/etc/mapcache/admin";
/// The engine's `--data-dir` (snapshots).
pub const DATA_DIR: &str = "/data";

/// The labels every child carries; the selector labels are the first two.
pub fn labels(mc: &MapCache) -> BTreeMap<String, String> {
    let mut labels = selector_labels(mc);
    labels.insert(MANAGED_BY_LABEL.into(), FIELD_MANAGER.into());
    labels
}

/// The labels that select the cache's pods (stable over the cache's life: never add to them,
/// a StatefulSet's selector is immutable).
pub fn selector_labels(mc: &MapCache) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), "mapcache".to_string()),
        (INSTANCE_LABEL.to_string(), mc.name_any()),
    ])
}

/// `app.kubernetes.io/instance=<name>,app.kubernetes.io/name=mapcache`, for list calls.
pub fn selector_string(mc: &MapCache) -> String {
    selector_labels(mc).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// The controller owner reference to the cache: deleting the cache garbage-collects the child.
pub fn owner_reference(mc: &MapCache) -> OwnerReference {
    // A cache read from the API server always has a uid; `controller_owner_ref` only returns
    // None for an object without one, which the reconciler never receives.
    mc.controller_owner_ref(&()).unwrap_or_else(|| OwnerReference {
        api_version: MapCache::api_version(&()).into_owned(),
        kind: MapCache::kind(&()).into_owned(),
        name: mc.name_any(),
        uid: String::new(),
        controller: Some(true),
        block_owner_deletion: None,
    })
}

/// Metadata of a child named `name`: namespace, labels and the owner reference.
pub fn child_meta(mc: &MapCache, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: mc.namespace(),
        labels: Some(labels(mc)),
        owner_references: Some(vec![owner_reference(mc)]),
        ..ObjectMeta::default()
    }
}

/// Name of the headless Service that gives pods stable DNS names.
pub fn headless_service_name(mc: &MapCache) -> String {
    format!("{}-headless", mc.name_any())
}

/// Name of the admin-token Secret.
pub fn admin_token_secret_name(mc: &MapCache) -> String {
    format!("{}-admin-token", mc.name_any())
}

/// Everything the operator wants to exist for one cache.
#[derive(Clone, Debug)]
pub struct Children {
    /// The admin token; applied first so the pods can mount it.
    pub secret: Secret,
    /// The effective engine settings, for humans and tools.
    pub config_map: ConfigMap,
    /// `<name>-headless` (pod DNS) and `<name>` (clients).
    pub services: [Service; 2],
    /// None when `spec.pdb.enabled` is false.
    pub pdb: Option<PodDisruptionBudget>,
    /// None when `spec.networkPolicy.enabled` is false.
    pub network_policy: Option<NetworkPolicy>,
    /// The cache pods.
    pub stateful_set: StatefulSet,
    /// Hash of the pod template ([`statefulset::revision`]).
    pub update_revision: String,
}

/// Builds every child. `admin_token` is the token to keep (or a fresh one for a new cache).
pub fn build(mc: &MapCache, validated: &Validated, admin_token: &str) -> Children {
    let (stateful_set, update_revision) = statefulset::build(mc, validated);
    Children {
        secret: secret::build(mc, admin_token),
        config_map: configmap::build(mc, validated),
        services: [service::build_headless(mc), service::build_client(mc)],
        pdb: mc.spec.pdb.enabled.then(|| pdb::build(mc)),
        network_policy: mc.spec.network_policy.enabled.then(|| networkpolicy::build(mc)),
        stateful_set,
        update_revision,
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use crate::operator::crd::{MapCache, MapCacheSpec};
    use kube::api::ObjectMeta;

    /// Test fixture builder: `MapCache::test()`, then `with_*` steps.
    impl MapCache {
        pub fn test() -> Self {
            let mut mc = MapCache::new(
                "cache",
                MapCacheSpec {
                    image: "ghcr.io/mapcache/mapcache:1.0".into(),
                    ..Default::default()
                },
            );
            mc.metadata = ObjectMeta {
                name: Some("cache".into()),
                namespace: Some("ns".into()),
                uid: Some("uid-1".into()),
                generation: Some(1),
                ..ObjectMeta::default()
            };
            mc.spec.replicas = 3;
            mc
        }

        pub fn with_replicas(mut self, replicas: i32) -> Self {
            self.spec.replicas = replicas;
            self
        }

        pub fn with_image(mut self, image: &str) -> Self {
            self.spec.image = image.into();
            self
        }

        pub fn with_generation(mut self, generation: i64) -> Self {
            self.metadata.generation = Some(generation);
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_name_instance_and_managed_by() {
        let mc = MapCache::test();
        assert_eq!(
            labels(&mc),
            BTreeMap::from([
                ("app.kubernetes.io/instance".to_string(), "cache".to_string()),
                ("app.kubernetes.io/managed-by".to_string(), "mapcache-operator".to_string()),
                ("app.kubernetes.io/name".to_string(), "mapcache".to_string()),
            ])
        );
        assert_eq!(
            selector_string(&mc),
            "app.kubernetes.io/instance=cache,app.kubernetes.io/name=mapcache"
        );
    }

    #[test]
    fn owner_reference_is_controller_of_the_cache() {
        let owner = owner_reference(&MapCache::test());
        assert_eq!(owner.api_version, "mapcache.io/v1alpha1");
        assert_eq!(owner.kind, "MapCache");
        assert_eq!(owner.name, "cache");
        assert_eq!(owner.uid, "uid-1");
        assert_eq!(owner.controller, Some(true));
        // Not blocking: that would need RBAC on mapcaches/finalizers for no gain.
        assert_eq!(owner.block_owner_deletion, None);
    }
}
