//! Pod volumes as host directories, `<root>/pods/<uid>/volumes/<name>`: emptyDir; Secret,
//! ConfigMap, downwardAPI and projected volumes materialized as one file per key (`items`,
//! `defaultMode`/`mode` and `optional` honoured; service-account tokens from the TokenRequest
//! API); a PersistentVolumeClaim is its bound PV's `hostPath`/`local` directory, which outlives
//! the pod. With a pod `fsGroup` the directories get that group, group access and the setgid
//! bit, as the kubelet's volume ownership does.
//!
//! Nothing is mounted: the container sees host paths. An arg or env value that is a `mountPath`
//! or a path below one is rewritten to the host directory ([`rewrite`]).

use super::env::{self, ConfigError, ObjectKind, PodAddresses};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod,
    ServiceAccount, Volume,
};
use kube::api::PostParams;
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Mode of Secret, ConfigMap, downwardAPI and projected files without `defaultMode`.
const DEFAULT_FILE_MODE: i32 = 0o644;
/// Token lifetime of a projected serviceAccountToken without `expirationSeconds`.
const DEFAULT_TOKEN_SECONDS: i64 = 3600;

/// A volume mount resolved to its host directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    /// The path the container was promised, without a trailing `/`.
    pub mount_path: String,
    /// Where that is on the host.
    pub host_path: PathBuf,
}

/// One file of a Secret/ConfigMap/downwardAPI/projected volume.
struct VolumeFile {
    /// Relative path inside the volume (`items[].path`, else the key).
    path: String,
    bytes: Vec<u8>,
    mode: u32,
}

/// Why the pod cannot start yet (reported as the containers' waiting message, retried).
pub type VolumeError = ConfigError;

/// Tokens of projected serviceAccountToken sources, renewed at 80 % of their lifetime as the
/// kubelet's token manager does.
#[derive(Default)]
pub struct Tokens {
    /// (volume, path) -> (token, renew after).
    cache: HashMap<(String, String), (String, Instant)>,
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
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or_else(|| ConfigError("pod has no spec".into()))?;
    let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group).map(|g| g as u32);
    let mut prepared = Vec::new();
    for volume in spec.volumes.iter().flatten() {
        let dir = pod_dir.join("volumes").join(&volume.name);
        let files = if let Some(claim) = &volume.persistent_volume_claim {
            let host = claim_directory(client, &namespace, &claim.claim_name).await?;
            own(&host, fs_group, false, true)?;
            prepared.push((volume.name.clone(), host));
            continue;
        } else if let Some(host_path) = &volume.host_path {
            prepared.push((volume.name.clone(), PathBuf::from(&host_path.path)));
            continue;
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            let mode = secret.default_mode.unwrap_or(DEFAULT_FILE_MODE);
            key_files(
                client,
                &namespace,
                ObjectKind::Secret,
                &name,
                secret.items.as_ref(),
                mode,
                secret.optional,
            )
            .await?
        } else if let Some(cm) = &volume.config_map {
            let mode = cm.default_mode.unwrap_or(DEFAULT_FILE_MODE);
            key_files(
                client,
                &namespace,
                ObjectKind::ConfigMap,
                &cm.name,
                cm.items.as_ref(),
                mode,
                cm.optional,
            )
            .await?
        } else if let Some(downward) = &volume.downward_api {
            let mode = downward.default_mode.unwrap_or(DEFAULT_FILE_MODE);
            downward_files(pod, addresses, downward.items.as_ref(), mode)?
        } else if volume.projected.is_some() {
            projected_files(client, pod, volume, addresses, tokens).await?
        } else {
            if volume.empty_dir.is_none() {
                tracing::warn!(
                    volume = volume.name,
                    "volume type not supported; an empty directory instead"
                );
            }
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            set_mode(&dir, 0o777)?; // emptyDir is world-writable, as the kubelet makes it
            own(&dir, fs_group, false, true)?;
            prepared.push((volume.name.clone(), dir));
            continue;
        };
        sync_files(&dir, &files)?;
        own(&dir, fs_group, true, false)?;
        prepared.push((volume.name.clone(), dir));
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

/// The host directory of a bound claim; the pod waits while the claim is unbound.
async fn claim_directory(
    client: &Client,
    namespace: &str,
    claim: &str,
) -> Result<PathBuf, VolumeError> {
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| ConfigError(format!("get persistentvolumeclaim {namespace}/{claim}: {e}")))?
        .ok_or_else(|| ConfigError(format!("persistentvolumeclaim \"{claim}\" not found")))?;
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).unwrap_or_default();
    if !bound || volume_name.is_empty() {
        return Err(ConfigError(format!("persistentvolumeclaim \"{claim}\" is not bound")));
    }
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pv = volumes
        .get_opt(&volume_name)
        .await
        .map_err(|e| ConfigError(format!("get persistentvolume {volume_name}: {e}")))?
        .ok_or_else(|| ConfigError(format!("persistentvolume \"{volume_name}\" not found")))?;
    let spec = pv.spec.unwrap_or_default();
    let path = spec.host_path.map(|h| h.path).or(spec.local.map(|l| l.path)).ok_or_else(|| {
        ConfigError(format!("persistentvolume {volume_name} is neither hostPath nor local"))
    })?;
    let path = PathBuf::from(path);
    std::fs::create_dir_all(&path).map_err(|e| io_error(&path, e))?;
    Ok(path)
}

/// Files of a Secret or ConfigMap (all keys, or `items`). Missing and optional: no files.
async fn key_files(
    client: &Client,
    namespace: &str,
    kind: ObjectKind,
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: Option<bool>,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let optional = optional.unwrap_or(false);
    let Some(data) = env::object_data(client, namespace, kind, name).await? else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(ConfigError(format!("{} \"{name}\" not found", kind.as_str())))
        };
    };
    select_keys(kind, name, data, items, default_mode, optional)
}

fn select_keys(
    kind: ObjectKind,
    name: &str,
    mut data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: i32,
    optional: bool,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let mode = |m: Option<i32>| (m.unwrap_or(default_mode) as u32) & 0o777;
    let Some(items) = items.filter(|items| !items.is_empty()) else {
        return Ok(data
            .into_iter()
            .map(|(key, bytes)| VolumeFile { path: key, bytes, mode: mode(None) })
            .collect());
    };
    let mut files = Vec::new();
    for item in items {
        match data.remove(&item.key) {
            Some(bytes) => {
                files.push(VolumeFile { path: item.path.clone(), bytes, mode: mode(item.mode) })
            }
            None if optional => {}
            None => {
                return Err(ConfigError(format!(
                    "{} {name} references non-existent key: {}",
                    kind.as_str(),
                    item.key
                )));
            }
        }
    }
    Ok(files)
}

fn downward_files(
    pod: &Pod,
    addresses: &PodAddresses,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default_mode: i32,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let mut files = Vec::new();
    for item in items.into_iter().flatten() {
        let Some(field) = &item.field_ref else {
            tracing::info!(
                path = item.path,
                "downwardAPI resourceFieldRef not supported; file skipped"
            );
            continue;
        };
        let value = env::field_value(pod, addresses, &field.field_path).map_err(ConfigError)?;
        let mode = (item.mode.unwrap_or(default_mode) as u32) & 0o777;
        files.push(VolumeFile { path: item.path.clone(), bytes: value.into_bytes(), mode });
    }
    Ok(files)
}

async fn projected_files(
    client: &Client,
    pod: &Pod,
    volume: &Volume,
    addresses: &PodAddresses,
    tokens: &mut Tokens,
) -> Result<Vec<VolumeFile>, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let Some(projected) = &volume.projected else { return Ok(Vec::new()) };
    let default_mode = projected.default_mode.unwrap_or(DEFAULT_FILE_MODE);
    let mut files = Vec::new();
    for source in projected.sources.iter().flatten() {
        if let Some(cm) = &source.config_map {
            files.extend(
                key_files(
                    client,
                    &namespace,
                    ObjectKind::ConfigMap,
                    &cm.name,
                    cm.items.as_ref(),
                    default_mode,
                    cm.optional,
                )
                .await?,
            );
        } else if let Some(secret) = &source.secret {
            files.extend(
                key_files(
                    client,
                    &namespace,
                    ObjectKind::Secret,
                    &secret.name,
                    secret.items.as_ref(),
                    default_mode,
                    secret.optional,
                )
                .await?,
            );
        } else if let Some(downward) = &source.downward_api {
            files.extend(downward_files(pod, addresses, downward.items.as_ref(), default_mode)?);
        } else if let Some(token) = &source.service_account_token {
            let key = (volume.name.clone(), token.path.clone());
            let cached = tokens.cache.get(&key).filter(|(_, renew)| Instant::now() < *renew);
            let value = match cached {
                Some((value, _)) => value.clone(),
                None => {
                    let seconds = token.expiration_seconds.unwrap_or(DEFAULT_TOKEN_SECONDS);
                    let value = request_token(client, pod, token.audience.clone(), seconds).await?;
                    let renew =
                        Instant::now() + Duration::from_secs(seconds.max(1) as u64 * 8 / 10);
                    tokens.cache.insert(key, (value.clone(), renew));
                    value
                }
            };
            files.push(VolumeFile {
                path: token.path.clone(),
                bytes: value.into_bytes(),
                mode: (default_mode as u32) & 0o777,
            });
        } else {
            tracing::info!(volume = volume.name, "projected source not supported; skipped");
        }
    }
    Ok(files)
}

/// A token for the pod's service account, bound to the pod (TokenRequest API).
async fn request_token(
    client: &Client,
    pod: &Pod,
    audience: Option<String>,
    seconds: i64,
) -> Result<String, VolumeError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let account = pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".to_string());
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: audience.map(|a| vec![a]),
            expiration_seconds: Some(seconds),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: pod.metadata.name.clone(),
                uid: pod.metadata.uid.clone(),
            }),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &namespace);
    let issued = accounts
        .create_token_request(&account, &PostParams::default(), &request)
        .await
        .map_err(|e| ConfigError(format!("token for serviceaccount {namespace}/{account}: {e}")))?;
    issued.status.and_then(|s| s.token).ok_or_else(|| {
        ConfigError(format!("token for serviceaccount {namespace}/{account}: empty"))
    })
}

/// Write the files (each atomically: temp file, then rename) and drop files no longer listed.
fn sync_files(dir: &Path, files: &[VolumeFile]) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    set_mode(dir, 0o755)?;
    let mut keep = BTreeSet::new();
    for file in files {
        let relative = Path::new(&file.path);
        if relative.is_absolute() || relative.components().any(|c| c.as_os_str() == "..") {
            return Err(ConfigError(format!("volume file path {:?} leaves the volume", file.path)));
        }
        let path = dir.join(relative);
        if let Some(first) = relative.components().next() {
            keep.insert(first.as_os_str().to_owned());
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
        }
        if std::fs::read(&path).is_ok_and(|old| old == file.bytes) {
            set_mode(&path, file.mode)?;
            continue;
        }
        let tmp = path.with_extension("kubelet-tmp");
        std::fs::write(&tmp, &file.bytes).map_err(|e| io_error(&tmp, e))?;
        set_mode(&tmp, file.mode)?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    }
    for entry in std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?.flatten() {
        if !keep.contains(&entry.file_name()) {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| io_error(&path, e))?;
        }
    }
    Ok(())
}

/// Volume ownership for `fsGroup`: group set to it, group read (read-only volumes) or read and
/// write, and setgid directories so new files inherit the group. A writable volume whose root
/// already has it is left alone (`fsGroupChangePolicy: OnRootMismatch`), so large PVCs are not
/// walked at every start.
fn own(
    dir: &Path,
    fs_group: Option<u32>,
    read_only: bool,
    skip_if_root_matches: bool,
) -> Result<(), VolumeError> {
    let Some(group) = fs_group else { return Ok(()) };
    let (dir_bits, file_bits) = if read_only { (0o2050, 0o040) } else { (0o2070, 0o060) };
    if skip_if_root_matches
        && let Ok(meta) = std::fs::metadata(dir)
        && meta.gid() == group
        && meta.mode() & dir_bits == dir_bits
    {
        return Ok(());
    }
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io_error(&path, e))?;
        if meta.file_type().is_symlink() {
            continue;
        }
        std::os::unix::fs::lchown(&path, None, Some(group)).map_err(|e| io_error(&path, e))?;
        let bits = if meta.is_dir() { dir_bits } else { file_bits };
        set_mode(&path, (meta.mode() & 0o7777) | bits)?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).map_err(|e| io_error(&path, e))?.flatten() {
                pending.push(entry.path());
            }
        }
    }
    Ok(())
}

/// The container's mounts, longest mount path first so the most specific one wins. A `subPath`
/// is created inside its volume when missing, as the kubelet does.
pub fn container_mounts(container: &Container, volumes: &[(String, PathBuf)]) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|mount| {
            let (_, dir) = volumes.iter().find(|(name, _)| *name == mount.name)?;
            let mut host_path = dir.clone();
            if let Some(sub) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
                host_path = host_path.join(sub);
                if !host_path.exists()
                    && let Err(error) = std::fs::create_dir_all(&host_path)
                {
                    tracing::warn!(path = %host_path.display(), %error, "cannot create subPath");
                }
            }
            Some(Mount {
                mount_path: mount.mount_path.trim_end_matches('/').to_string(),
                host_path,
            })
        })
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    mounts
}

/// Rewrite one arg or env value: a path at or under a mount moves to the host directory;
/// `--flag=value` rewrites the value. (Binds need no rewriting: each pod has its own netns.)
pub fn rewrite(value: &str, mounts: &[Mount]) -> String {
    if let Some(flag) = value.strip_prefix("--")
        && let Some((key, inner)) = flag.split_once('=')
    {
        return format!("--{key}={}", rewrite(inner, mounts));
    }
    for mount in mounts {
        if value == mount.mount_path {
            return mount.host_path.display().to_string();
        }
        if let Some(rest) = value.strip_prefix(&mount.mount_path)
            && rest.starts_with('/')
        {
            return format!("{}{rest}", mount.host_path.display());
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_maps_mount_paths_and_flag_values() {
        let mounts = vec![
            Mount {
                mount_path: "/etc/mapcache/admin".into(),
                host_path: "/tmp/p/volumes/admin-token".into(),
            },
            Mount { mount_path: "/data".into(), host_path: "/tmp/pv/pvc-1".into() },
        ];
        assert_eq!(rewrite("--data-dir=/data", &mounts), "--data-dir=/tmp/pv/pvc-1");
        assert_eq!(
            rewrite("/etc/mapcache/admin/token", &mounts),
            "/tmp/p/volumes/admin-token/token"
        );
        assert_eq!(rewrite("--bind=0.0.0.0", &mounts), "--bind=0.0.0.0", "binds stay");
        assert_eq!(
            rewrite("/database", &mounts),
            "/database",
            "a path prefix, not a string prefix"
        );
        assert_eq!(rewrite("serve", &mounts), "serve");
    }

    #[test]
    fn items_select_keys_and_modes() {
        let data = BTreeMap::from([
            ("password".to_string(), b"pw".to_vec()),
            ("token".to_string(), b"t".to_vec()),
        ]);
        let all =
            select_keys(ObjectKind::Secret, "s", data.clone(), None, 0o440, false).expect("all");
        let listed: Vec<(String, u32)> = all.iter().map(|f| (f.path.clone(), f.mode)).collect();
        assert_eq!(listed, vec![("password".into(), 0o440), ("token".into(), 0o440)]);
        let items = vec![KeyToPath {
            key: "token".into(),
            path: "dir/t".into(),
            mode: Some(0o400),
            ..KeyToPath::default()
        }];
        let some = select_keys(ObjectKind::Secret, "s", data.clone(), Some(&items), 0o644, false)
            .expect("items");
        assert_eq!(some.len(), 1);
        assert_eq!(
            (some[0].path.as_str(), some[0].mode, some[0].bytes.as_slice()),
            ("dir/t", 0o400, &b"t"[..])
        );
        let missing =
            vec![KeyToPath { key: "nope".into(), path: "n".into(), ..KeyToPath::default() }];
        assert!(
            select_keys(ObjectKind::Secret, "s", data.clone(), Some(&missing), 0o644, false)
                .is_err()
        );
        let optional = select_keys(ObjectKind::Secret, "s", data, Some(&missing), 0o644, true);
        assert_eq!(optional.map(|f| f.len()), Ok(0));
    }

    #[test]
    fn sync_files_replaces_contents_and_drops_stale_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("v");
        let file = |path: &str, bytes: &[u8]| VolumeFile {
            path: path.into(),
            bytes: bytes.to_vec(),
            mode: 0o440,
        };
        sync_files(&volume, &[file("a", b"1"), file("b", b"2")]).expect("first");
        sync_files(&volume, &[file("a", b"3")]).expect("second");
        assert_eq!(std::fs::read(volume.join("a")).expect("a"), b"3");
        assert!(!volume.join("b").exists());
        let mode = std::fs::metadata(volume.join("a")).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o440);
        assert!(sync_files(&volume, &[file("../escape", b"x")]).is_err());
    }

    #[test]
    fn fs_group_ownership_gives_the_group_access_and_setgid_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("data");
        std::fs::create_dir_all(volume.join("sub")).expect("mkdir");
        std::fs::write(volume.join("sub/f"), b"x").expect("write");
        set_mode(&volume.join("sub/f"), 0o600).expect("chmod");
        own(&volume, Some(4321), false, true).expect("own");
        let meta = |p: &Path| std::fs::metadata(p).expect("meta");
        assert_eq!(meta(&volume).gid(), 4321);
        assert_eq!(meta(&volume).mode() & 0o2070, 0o2070);
        assert_eq!(meta(&volume.join("sub/f")).gid(), 4321);
        assert_eq!(meta(&volume.join("sub/f")).mode() & 0o777, 0o660);
    }
}
