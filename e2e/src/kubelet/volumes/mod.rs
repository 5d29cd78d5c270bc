//! Pod volumes as host directories, `<root>/pods/<uid>/volumes/<name>`: emptyDir; Secret,
//! ConfigMap, downwardAPI and projected volumes materialized as one file per key (`items`,
//! `defaultMode`/`mode` and `optional` honoured; service-account tokens from the TokenRequest
//! API); a PersistentVolumeClaim is its bound PV's `hostPath`/`local` directory, which outlives
//! the pod; a hostPath volume is that host directory. With a pod `fsGroup` the directories get
//! that group, group access and the setgid bit, as the kubelet's volume ownership does. Any
//! other volume type makes the pod wait in ContainerCreating with a message that names it.
//!
//! Preparation reads through the API first (what each volume holds), then does all the disk
//! work in one blocking task: writing files and walking a large claim for `fsGroup` never
//! holds up the runtime's threads.
//!
//! Nothing is mounted: the container sees host paths ([`PathMap`]).
//!
//! # Layout
//! - `sources`: what a volume holds, read through the API (Secret and ConfigMap keys,
//!   downwardAPI fields, projected sources and their tokens, a claim's PV directory)
//! - `files`: writing a volume's files, each atomically, and dropping stale ones
//! - `ownership`: `fsGroup` ownership of a volume's tree
//! - `mounts`: a container's mounts and how its paths map to the host

mod files;
mod mounts;
mod ownership;
mod sources;

pub use mounts::{Mount, PathMap, container_mounts, prepare_container_dirs};
pub use sources::Tokens;

use super::env::{ConfigError, PodAddresses};
use files::VolumeFile;
use k8s_openapi::api::core::v1::{Pod, Volume};
use kube::Client;
use ownership::{Access, ChangePolicy};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why the pod cannot start yet (reported as the containers' waiting message, retried).
pub type VolumeError = ConfigError;

/// The volume types this kubelet materializes (the API's field names).
const SUPPORTED: [&str; 7] = [
    "emptyDir",
    "secret",
    "configMap",
    "downwardAPI",
    "projected",
    "persistentVolumeClaim",
    "hostPath",
];

/// What one volume becomes on disk, decided (through the API) before anything is written.
enum Content {
    /// emptyDir: a world-writable directory of the pod's.
    Empty,
    /// Secret, ConfigMap, downwardAPI, projected: these files, read-only for the fsGroup.
    Files(Vec<VolumeFile>),
    /// A bound claim: its PV's directory, which outlives the pod.
    Claim(PathBuf),
    /// hostPath: the host's directory, used as it is.
    Host(PathBuf),
}

/// The pod's volumes by name. Called at pod start and periodically after, so Secret and
/// ConfigMap changes and token renewals reach the files (each write is atomic).
pub async fn prepare(
    client: &Client,
    pod: &Pod,
    pod_dir: &Path,
    addresses: &PodAddresses,
    tokens: &mut Tokens,
) -> Result<Vec<(String, PathBuf)>, VolumeError> {
    let spec = pod.spec.as_ref().ok_or_else(|| ConfigError("pod has no spec".into()))?;
    let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group).map(|g| g as u32);
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    if let Some(message) = volumes.iter().find_map(unsupported) {
        return Err(ConfigError(message));
    }
    let mut planned = Vec::with_capacity(volumes.len());
    for volume in volumes {
        planned.push((
            volume.name.clone(),
            sources::content(client, pod, volume, addresses, tokens).await?,
        ));
    }
    let volumes_dir = pod_dir.join("volumes");
    tokio::task::spawn_blocking(move || write_all(&volumes_dir, planned, fs_group))
        .await
        .map_err(|e| ConfigError(format!("volume preparation failed: {e}")))?
}

/// Why this kubelet cannot give the pod this volume, if it cannot.
fn unsupported(volume: &Volume) -> Option<String> {
    let value = serde_json::to_value(volume).ok()?;
    let kind =
        value.as_object()?.keys().find(|k| *k != "name" && !SUPPORTED.contains(&k.as_str()))?;
    Some(format!(
        "volume {:?}: {kind} volumes are not supported by the process kubelet (supported: {})",
        volume.name,
        SUPPORTED.join(", ")
    ))
}

/// The disk side of [`prepare`]: directories, files and ownership.
fn write_all(
    volumes_dir: &Path,
    planned: Vec<(String, Content)>,
    fs_group: Option<u32>,
) -> Result<Vec<(String, PathBuf)>, VolumeError> {
    let mut prepared = Vec::with_capacity(planned.len());
    for (name, content) in planned {
        let dir = volumes_dir.join(&name);
        let path = match content {
            Content::Empty => {
                std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
                set_mode(&dir, 0o777)?; // emptyDir is world-writable, as the kubelet makes it
                ownership::own(&dir, fs_group, Access::ReadWrite, ChangePolicy::OnRootMismatch)?;
                dir
            }
            Content::Files(files) => {
                files::sync_files(&dir, &files)?;
                ownership::own(&dir, fs_group, Access::ReadOnly, ChangePolicy::Always)?;
                dir
            }
            Content::Claim(host) => {
                std::fs::create_dir_all(&host).map_err(|e| io_error(&host, e))?;
                ownership::own(&host, fs_group, Access::ReadWrite, ChangePolicy::OnRootMismatch)?;
                host
            }
            Content::Host(host) => host,
        };
        prepared.push((name, path));
    }
    Ok(prepared)
}

fn io_error(path: &Path, error: std::io::Error) -> VolumeError {
    ConfigError(format!("{}: {error}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), VolumeError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsupported_volume_type_is_named_in_the_waiting_message() {
        let volume =
            |json: serde_json::Value| -> Volume { serde_json::from_value(json).expect("volume") };
        let nfs =
            volume(serde_json::json!({"name": "shared", "nfs": {"server": "s", "path": "/x"}}));
        assert_eq!(
            unsupported(&nfs).as_deref(),
            Some(
                "volume \"shared\": nfs volumes are not supported by the process kubelet \
                 (supported: emptyDir, secret, configMap, downwardAPI, projected, \
                 persistentVolumeClaim, hostPath)"
            )
        );
        assert_eq!(unsupported(&volume(serde_json::json!({"name": "d", "emptyDir": {}}))), None);
        let claim =
            volume(serde_json::json!({"name": "c", "persistentVolumeClaim": {"claimName": "x"}}));
        assert_eq!(unsupported(&claim), None);
    }

    #[test]
    fn empty_dirs_and_files_land_in_the_pod_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = VolumeFile { path: "k".into(), bytes: b"v".to_vec(), mode: 0o440 };
        let planned = vec![
            ("scratch".to_string(), Content::Empty),
            ("config".to_string(), Content::Files(vec![file])),
        ];
        let prepared = write_all(dir.path(), planned, None).expect("write");
        assert_eq!(
            prepared,
            vec![
                ("scratch".to_string(), dir.path().join("scratch")),
                ("config".to_string(), dir.path().join("config")),
            ]
        );
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(dir.path().join("scratch")).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o777);
        assert_eq!(std::fs::read(dir.path().join("config/k")).expect("file"), b"v");
    }
}
