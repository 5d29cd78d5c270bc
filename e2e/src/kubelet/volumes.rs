//! Pod volumes on the host: a PVC is a directory `<root>/pvc/<namespace>/<claim>` that outlives
//! its pod; emptyDir, Secret and ConfigMap volumes live under the pod's own directory (Secrets
//! and ConfigMaps materialized as one file per key). Paths in args and env are rewritten from
//! mount paths to these directories.

use crate::apiserver::store::Store;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// A volume mount resolved to its host directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    pub mount_path: String,
    pub host_path: PathBuf,
}

fn object_data(
    store: &Store,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let info =
        store.resource_by_key("", plural).ok_or_else(|| format!("{plural} are not served"))?;
    let object = store.get(&info, namespace, name).map_err(|e| e.message)?;
    let mut files = Vec::new();
    for (key, value) in object.get("data").and_then(Value::as_object).into_iter().flatten() {
        let bytes = if plural == "secrets" {
            serde_json::from_value::<k8s_openapi::ByteString>(value.clone())
                .map_err(|e| format!("secret {name} key {key}: {e}"))?
                .0
        } else {
            value.as_str().unwrap_or_default().as_bytes().to_vec()
        };
        files.push((key.clone(), bytes));
    }
    Ok(files)
}

fn materialize(dir: &Path, files: &[(String, Vec<u8>)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    for (key, bytes) in files {
        let path = dir.join(key);
        std::fs::write(&path, bytes).map_err(|e| format!("write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// Host directories of every volume of the pod, by volume name. An error (a missing Secret)
/// keeps the pod waiting, as the real kubelet does.
pub fn prepare_volumes(
    store: &Store,
    pod: &Value,
    root: &Path,
    pod_dir: &Path,
) -> Result<Vec<(String, PathBuf)>, String> {
    let namespace = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or_default();
    let mut volumes = Vec::new();
    for volume in pod.pointer("/spec/volumes").and_then(Value::as_array).into_iter().flatten() {
        let name = volume.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
        let dir = if let Some(claim) =
            volume.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str)
        {
            let dir = root.join("pvc").join(namespace).join(claim);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            dir
        } else if let Some(secret) = volume.pointer("/secret/secretName").and_then(Value::as_str) {
            let dir = pod_dir.join("volumes").join(&name);
            materialize(&dir, &object_data(store, "secrets", namespace, secret)?)?;
            dir
        } else if let Some(config_map) = volume.pointer("/configMap/name").and_then(Value::as_str) {
            let dir = pod_dir.join("volumes").join(&name);
            materialize(&dir, &object_data(store, "configmaps", namespace, config_map)?)?;
            dir
        } else {
            // emptyDir and anything else: a fresh directory of the pod.
            let dir = pod_dir.join("volumes").join(&name);
            std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            dir
        };
        volumes.push((name, dir));
    }
    Ok(volumes)
}

/// The container's mounts, longest mount path first so the most specific one wins.
pub fn container_mounts(container: &Value, volumes: &[(String, PathBuf)]) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|mount| {
            let name = mount.get("name").and_then(Value::as_str)?;
            let (_, dir) = volumes.iter().find(|(volume, _)| volume == name)?;
            let mut host_path = dir.clone();
            if let Some(sub) =
                mount.get("subPath").and_then(Value::as_str).filter(|s| !s.is_empty())
            {
                host_path = host_path.join(sub);
            }
            Some(Mount {
                mount_path: mount
                    .get("mountPath")
                    .and_then(Value::as_str)?
                    .trim_end_matches('/')
                    .to_string(),
                host_path,
            })
        })
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    mounts
}

/// Rewrite one arg or env value: a path under a mount moves to the host directory, and
/// `0.0.0.0` (the pod's wildcard bind) becomes the pod IP. `--flag=value` rewrites the value.
pub fn rewrite(value: &str, mounts: &[Mount], pod_ip: &str) -> String {
    if let Some(flag) = value.strip_prefix("--")
        && let Some((key, inner)) = flag.split_once('=')
    {
        return format!("--{key}={}", rewrite(inner, mounts, pod_ip));
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
    if value == "0.0.0.0" {
        return pod_ip.to_string();
    }
    if let Some(port) = value.strip_prefix("0.0.0.0:") {
        return format!("{pod_ip}:{port}");
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_maps_mount_paths_flags_and_wildcard_binds() {
        let mounts = vec![
            Mount {
                mount_path: "/etc/mapcache/admin".into(),
                host_path: "/tmp/p/volumes/admin-token".into(),
            },
            Mount { mount_path: "/data".into(), host_path: "/tmp/pvc/default/data-c-0".into() },
        ];
        assert_eq!(
            rewrite("--data-dir=/data", &mounts, "127.0.3.10"),
            "--data-dir=/tmp/pvc/default/data-c-0"
        );
        assert_eq!(
            rewrite("/etc/mapcache/admin/token", &mounts, "ip"),
            "/tmp/p/volumes/admin-token/token"
        );
        assert_eq!(rewrite("--bind=0.0.0.0", &mounts, "127.0.3.10"), "--bind=127.0.3.10");
        assert_eq!(rewrite("0.0.0.0:9090", &mounts, "127.0.3.10"), "127.0.3.10:9090");
        assert_eq!(
            rewrite("/database", &mounts, "ip"),
            "/database",
            "a mount path is a path prefix, not a string prefix"
        );
        assert_eq!(rewrite("serve", &mounts, "ip"), "serve");
    }
}
