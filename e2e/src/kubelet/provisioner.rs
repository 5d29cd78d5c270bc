//! A dynamic PV provisioner for directories, the `local-dir` StorageClass (the default class):
//! kube-controller-manager's PV controller marks a pending claim of that class with
//! `volume.kubernetes.io/storage-provisioner: mapcache.io/local-dir`; we create
//! `<root>/pv/<pv-name>` and a `hostPath` PV `pvc-<claim uid>` pre-bound to the claim
//! (`claimRef` with the uid), which the PV controller then binds. A PV of ours that is Released
//! with reclaim policy Delete loses its directory and is deleted.
//!
//! Everything runs on one machine, so a `hostPath` PV without node affinity is reachable from
//! every node of the local cluster. Directories are world-writable (as local-path-provisioner
//! makes them), so a pod's `fsGroup`/user finds them writable.

use super::{FIELD_MANAGER, KubeletConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// The StorageClass name.
pub const STORAGE_CLASS: &str = "local-dir";
/// Our provisioner name.
pub const PROVISIONER: &str = "mapcache.io/local-dir";
const PROVISIONER_ANNOTATIONS: [&str; 2] =
    ["volume.kubernetes.io/storage-provisioner", "volume.beta.kubernetes.io/storage-provisioner"];
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";

/// Ensure the class, then provision and reclaim until aborted.
pub async fn run(client: Client, config: KubeletConfig) {
    while let Err(error) = ensure_storage_class(&client).await {
        tracing::warn!(%error, "cannot create the local-dir StorageClass; retrying");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::join!(claims(client.clone(), config.clone()), volumes(client, config));
}

async fn ensure_storage_class(client: &Client) -> Result<(), kube::Error> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    if classes.get_opt(STORAGE_CLASS).await?.is_some() {
        return Ok(());
    }
    let class = StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_string(),
                "true".to_string(),
            )])),
            ..ObjectMeta::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..StorageClass::default()
    };
    match classes.create(&post_params(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()), // another kubelet's
        Err(error) => Err(error),
    }
}

fn post_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() }
}

async fn claims(client: Client, config: KubeletConfig) {
    let api: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(claim) | Event::InitApply(claim)) => {
                if let Err(error) = provision(&client, &config, &claim).await {
                    tracing::warn!(claim = claim.metadata.name, %error, "cannot provision");
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "claim watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Whether this claim waits for us.
pub fn wants_us(claim: &PersistentVolumeClaim) -> bool {
    let annotations = claim.metadata.annotations.as_ref();
    let ours = PROVISIONER_ANNOTATIONS
        .iter()
        .any(|key| annotations.and_then(|a| a.get(*key)).map(String::as_str) == Some(PROVISIONER));
    let pending =
        claim.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending") == "Pending";
    let unbound =
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()).unwrap_or("").is_empty();
    ours && pending && unbound && claim.metadata.deletion_timestamp.is_none()
}

/// The PV for a claim (pure, for tests).
pub fn volume_for(claim: &PersistentVolumeClaim, dir: PathBuf) -> Option<PersistentVolume> {
    let uid = claim.metadata.uid.clone()?;
    let spec = claim.spec.clone().unwrap_or_default();
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()?;
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(format!("pvc-{uid}")),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), request)])),
            access_modes: spec.access_modes.clone(),
            storage_class_name: spec.storage_class_name.clone(),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            volume_mode: spec.volume_mode.clone(),
            host_path: Some(HostPathVolumeSource {
                path: dir.display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.metadata.namespace.clone(),
                name: claim.metadata.name.clone(),
                uid: Some(uid),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    })
}

async fn provision(
    client: &Client,
    config: &KubeletConfig,
    claim: &PersistentVolumeClaim,
) -> Result<(), String> {
    if !wants_us(claim) {
        return Ok(());
    }
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let name = format!("pvc-{uid}");
    let dir = config.root.join("pv").join(&name);
    let Some(volume) = volume_for(claim, dir.clone()) else {
        return Err("claim without uid or storage request".into());
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    if volumes.get_opt(&name).await.map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    match volumes.create(&post_params(), &volume).await {
        Ok(_) => {
            tracing::info!(claim = claim.metadata.name, volume = name, dir = %dir.display(), "provisioned");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

/// Whether `path` is a directory this provisioner made: `<root>/pv/<name>`, nothing above or
/// beside it (a PV's `hostPath` is whatever its author wrote; only ours may be removed).
pub fn is_our_directory(config: &KubeletConfig, path: &Path) -> bool {
    let pv_root = config.root.join("pv");
    let plain = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    plain && path.parent() == Some(pv_root.as_path())
}

async fn volumes(client: Client, config: KubeletConfig) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    while let Some(event) = events.next().await {
        let volume = match event {
            Ok(Event::Apply(volume) | Event::InitApply(volume)) => volume,
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "volume watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let ours = volume
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PROVISIONED_BY))
            .map(String::as_str)
            == Some(PROVISIONER);
        let released = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
        let spec = volume.spec.clone().unwrap_or_default();
        let delete = spec.persistent_volume_reclaim_policy.as_deref() == Some("Delete");
        if !(ours && released && delete) || volume.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = volume.metadata.name.clone().unwrap_or_default();
        if let Some(path) = spec.host_path.map(|h| PathBuf::from(h.path)) {
            if !is_our_directory(&config, &path) {
                tracing::warn!(volume = name, dir = %path.display(), "a released volume of ours outside {}/pv: left alone", config.root.display());
                continue;
            }
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&path))
                .await
                .map_err(std::io::Error::other)
                .and_then(|removed| removed);
            if let Err(error) = removed
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(volume = name, %error, "cannot remove the volume directory");
                continue;
            }
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(volume = name, "released volume deleted"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => tracing::warn!(volume = name, %error, "cannot delete a released volume"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(annotation: &str, phase: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({
            "metadata": {"name": "data-cache-0", "namespace": "ns", "uid": "c-1",
                "annotations": {"volume.kubernetes.io/storage-provisioner": annotation}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-dir",
                "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": phase}
        }))
        .expect("claim")
    }

    #[test]
    fn only_our_pending_claims_are_provisioned() {
        assert!(wants_us(&claim(PROVISIONER, "Pending")));
        assert!(!wants_us(&claim(PROVISIONER, "Bound")));
        assert!(!wants_us(&claim("other.io/x", "Pending")));
    }

    #[test]
    fn only_directories_under_the_pv_root_are_removed() {
        let config = KubeletConfig::for_test();
        assert!(is_our_directory(&config, Path::new("/r/pv/pvc-c-1")));
        for other in
            ["/r/pv", "/r", "/", "/r/pv/pvc-1/sub", "/r/pv/../pods", "/r/pods/x", "/etc", "r/pv/x"]
        {
            assert!(!is_our_directory(&config, Path::new(other)), "{other}");
        }
    }

    #[test]
    fn the_volume_is_prebound_to_the_claim() {
        let volume =
            volume_for(&claim(PROVISIONER, "Pending"), "/r/pv/pvc-c-1".into()).expect("pv");
        let value = serde_json::to_value(&volume).expect("json");
        assert_eq!(value["metadata"]["name"], "pvc-c-1");
        assert_eq!(value["metadata"]["annotations"][PROVISIONED_BY], PROVISIONER);
        assert_eq!(value["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(value["spec"]["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(value["spec"]["storageClassName"], "local-dir");
        assert_eq!(value["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(
            value["spec"]["hostPath"],
            json!({"path": "/r/pv/pvc-c-1", "type": "DirectoryOrCreate"})
        );
        assert_eq!(value["spec"]["claimRef"]["uid"], "c-1");
        assert_eq!(value["spec"]["claimRef"]["namespace"], "ns");
        assert_eq!(value["spec"]["claimRef"]["name"], "data-cache-0");
    }
}
