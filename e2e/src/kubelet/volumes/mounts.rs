//! Where a container's paths are on the host. Nothing is mounted (there are no mount
//! namespaces): a path the container is given, as an arg, an env value or its `workingDir`, is
//! rewritten before the process starts. The rule, for a value that is an absolute path, or the
//! value of `--flag=/abs/path` (lexically normalized first, so `..` cannot climb out):
//!
//! 1. at or below a volume's `mountPath`: the volume's host directory (the longest mount path
//!    wins, a `subPath` is inside its volume);
//! 2. else, where the container would write: its writable layer, the scratch directory
//!    `<root>/pods/<uid>/rootfs/<container>/`, emptied whenever the container (re)starts as a
//!    new container's layer is. That is always the case for `workingDir` (other than `/`), and
//!    for an arg or env value made of plain path characters whose first component is not one
//!    of the host's system directories ([`SYSTEM_DIRS`]) and which is not below the kubelet's
//!    own root. So `--data-dir=/data` without its volumeMount writes `<scratch>/data`, never
//!    the host's `/data`;
//! 3. anything else stays as written: system paths (the host's programs that exec probes and
//!    hooks run, `/dev/null`, `/tmp`), relative paths, URLs, lists such as `/a:/b`.
//!
//! Only whole values are paths: a shell script (`sh -c 'echo x > /data/f'`) is not parsed, so
//! a path inside one is the host's. Pass it through an env variable, which is rewritten.

use super::{VolumeError, io_error, set_mode};
use k8s_openapi::api::core::v1::Container;
use std::path::{Path, PathBuf};

/// First path components that name the host's own programs, libraries, configuration, devices
/// and kernel interfaces (and `/tmp`): left as written, since what a container reads there is
/// the host's anyway (its image does not exist here) and an exec probe runs host programs.
pub const SYSTEM_DIRS: [&str; 17] = [
    "bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "nix", "opt", "proc", "run",
    "sbin", "snap", "sys", "tmp", "usr",
];

/// A volume mount resolved to its host directory.
#[derive(Clone, Debug, PartialEq)]
pub struct Mount {
    /// The path the container was promised, without a trailing `/`.
    pub mount_path: String,
    /// Where that is on the host.
    pub host_path: PathBuf,
    /// The mount is a `subPath` of its volume, created when missing (as the kubelet does).
    pub sub_path: bool,
}

/// How one container's paths map to the host (module docs).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PathMap {
    /// The container's mounts, longest mount path first.
    pub mounts: Vec<Mount>,
    /// The container's writable layer, `<root>/pods/<uid>/rootfs/<container>`.
    pub scratch: PathBuf,
    /// The kubelet's root: a path below it is one the kubelet handed out, already the host's.
    pub kubelet_root: PathBuf,
}

/// Which rule 2 applies to a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scratch {
    /// An arg or env value: only plain, non-system paths go to the writable layer.
    IfWritable,
    /// `workingDir`: any directory but `/`.
    Always,
}

impl PathMap {
    /// Rewrite one arg or env value (a path, or `--flag=path`).
    pub fn rewrite(&self, value: &str) -> String {
        if let Some(flag) = value.strip_prefix("--")
            && let Some((key, inner)) = flag.split_once('=')
        {
            return match self.host_path(inner, Scratch::IfWritable) {
                Some(path) => format!("--{key}={}", path.display()),
                None => value.to_string(),
            };
        }
        match self.host_path(value, Scratch::IfWritable) {
            Some(path) => path.display().to_string(),
            None => value.to_string(),
        }
    }

    /// The host directory of a `workingDir`.
    pub fn working_dir(&self, dir: &str) -> PathBuf {
        self.host_path(dir, Scratch::Always).unwrap_or_else(|| PathBuf::from(dir))
    }

    /// Where `value` is on the host, None when it stays as written.
    fn host_path(&self, value: &str, scratch: Scratch) -> Option<PathBuf> {
        let path = normalize(value)?;
        for mount in &self.mounts {
            if path == mount.mount_path {
                return Some(mount.host_path.clone());
            }
            if let Some(rest) = path.strip_prefix(&mount.mount_path)
                && let Some(rest) = rest.strip_prefix('/')
            {
                return Some(mount.host_path.join(rest));
            }
        }
        let relative = path.strip_prefix('/').filter(|r| !r.is_empty())?;
        if Path::new(&path).starts_with(&self.kubelet_root) {
            return None;
        }
        let writable = match scratch {
            Scratch::Always => true,
            Scratch::IfWritable => {
                let first = relative.split('/').next().unwrap_or_default();
                plain_path(value) && !SYSTEM_DIRS.contains(&first)
            }
        };
        writable.then(|| self.scratch.join(relative))
    }
}

/// An absolute path with `.`, `..` and repeated `/` resolved lexically (`..` stops at `/`);
/// None for anything that does not start with `/`.
fn normalize(value: &str) -> Option<String> {
    if !value.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in value.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Made of the characters file names in args usually have: not a list (`:`), a glob, a
/// template or a sentence.
fn plain_path(value: &str) -> bool {
    value.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@~%".contains(c))
}

/// The container's mounts, longest mount path first so the most specific one wins.
pub fn container_mounts(container: &Container, volumes: &[(String, PathBuf)]) -> Vec<Mount> {
    let mut mounts: Vec<Mount> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|mount| {
            let (_, dir) = volumes.iter().find(|(name, _)| *name == mount.name)?;
            let sub = mount.sub_path.as_deref().filter(|s| !s.is_empty());
            Some(Mount {
                mount_path: mount.mount_path.trim_end_matches('/').to_string(),
                host_path: sub.map_or_else(|| dir.clone(), |sub| dir.join(sub)),
                sub_path: sub.is_some(),
            })
        })
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_path.len()));
    mounts
}

/// Before a container starts (blocking: it may empty a large directory): its missing
/// `subPath`s, its writable layer emptied (a fresh container's), and its working directory
/// there when it has one. The layer and the directories made in it are world-writable, so a
/// container running as any user can write where it was told to.
pub fn prepare_container_dirs(paths: &PathMap, workdir: &Path) -> Result<(), VolumeError> {
    for mount in paths.mounts.iter().filter(|m| m.sub_path && !m.host_path.exists()) {
        std::fs::create_dir_all(&mount.host_path).map_err(|e| io_error(&mount.host_path, e))?;
    }
    match std::fs::remove_dir_all(&paths.scratch) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(io_error(&paths.scratch, error));
        }
        _ => {}
    }
    std::fs::create_dir_all(&paths.scratch).map_err(|e| io_error(&paths.scratch, e))?;
    set_mode(&paths.scratch, 0o777)?;
    if let Ok(inside) = workdir.strip_prefix(&paths.scratch) {
        let mut dir = paths.scratch.clone();
        for part in inside.components() {
            dir.push(part);
            std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
            set_mode(&dir, 0o777)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> PathMap {
        PathMap {
            mounts: vec![
                Mount {
                    mount_path: "/etc/mapcache/admin".into(),
                    host_path: "/k/pods/u/volumes/admin-token".into(),
                    sub_path: false,
                },
                Mount {
                    mount_path: "/data".into(),
                    host_path: "/k/pv/pvc-1".into(),
                    sub_path: false,
                },
            ],
            scratch: "/k/pods/u/rootfs/engine".into(),
            kubelet_root: "/k".into(),
        }
    }

    #[test]
    fn mount_paths_map_to_their_volumes() {
        let paths = paths();
        assert_eq!(paths.rewrite("--data-dir=/data"), "--data-dir=/k/pv/pvc-1");
        assert_eq!(paths.rewrite("/data/"), "/k/pv/pvc-1");
        assert_eq!(
            paths.rewrite("/etc/mapcache/admin/token"),
            "/k/pods/u/volumes/admin-token/token"
        );
        assert_eq!(paths.rewrite("/data/../data/x"), "/k/pv/pvc-1/x");
        let climbing = "/data/../../etc/passwd";
        assert_eq!(paths.rewrite(climbing), climbing, "not the volume: a host system path");
    }

    #[test]
    fn other_writable_paths_go_to_the_container_layer() {
        let paths = paths();
        assert_eq!(
            paths.rewrite("/database"),
            "/k/pods/u/rootfs/engine/database",
            "a path prefix, not a string prefix"
        );
        assert_eq!(paths.rewrite("--dir=/var/lib/x"), "--dir=/k/pods/u/rootfs/engine/var/lib/x");
        assert_eq!(paths.rewrite("/srv/../data2"), "/k/pods/u/rootfs/engine/data2");
        assert_eq!(paths.working_dir("/srv/app"), PathBuf::from("/k/pods/u/rootfs/engine/srv/app"));
        assert_eq!(
            paths.working_dir("/tmp/w"),
            PathBuf::from("/k/pods/u/rootfs/engine/tmp/w"),
            "workingDir always"
        );
        assert_eq!(paths.working_dir("/data/w"), PathBuf::from("/k/pv/pvc-1/w"));
        assert_eq!(paths.working_dir("/"), PathBuf::from("/"));
    }

    #[test]
    fn system_paths_and_non_paths_stay() {
        let paths = paths();
        for value in [
            "serve",
            "--bind=0.0.0.0",
            "--config=/etc/app.toml",
            "/bin/sh",
            "/usr/local/bin/tool",
            "/dev/null",
            "/tmp/x",
            "/",
            "relative/path",
            "/a:/b",
            "/some dir",
            "redis://h:1/0",
            "/k/pods/u/volumes/admin-token/token",
            "--flag",
        ] {
            assert_eq!(paths.rewrite(value), value);
        }
    }

    #[test]
    fn a_restarting_container_gets_an_empty_layer_and_its_working_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut paths = paths();
        paths.scratch = dir.path().join("rootfs/engine");
        paths.mounts = vec![Mount {
            mount_path: "/conf".into(),
            host_path: dir.path().join("volumes/v/sub"),
            sub_path: true,
        }];
        let workdir = paths.scratch.join("srv/app");
        prepare_container_dirs(&paths, &workdir).expect("prepare");
        std::fs::write(workdir.join("left-over"), b"x").expect("write");
        prepare_container_dirs(&paths, &workdir).expect("again");
        assert!(workdir.is_dir());
        assert_eq!(std::fs::read_dir(&workdir).expect("list").count(), 0, "emptied");
        assert!(dir.path().join("volumes/v/sub").is_dir(), "the subPath exists");
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(dir.path().join("rootfs/engine/srv")).expect("meta").mode();
        assert_eq!(mode & 0o777, 0o777);
    }
}
