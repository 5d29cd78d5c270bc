//! Volume ownership for a pod's `fsGroup`, as the kubelet's `SetVolumeOwnership` does: every
//! file and directory gets that group and group access (read, or read and write), directories
//! the setgid bit so that new files inherit the group. Symlinks are left alone.

use super::{VolumeError, io_error, set_mode};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What the group may do in the volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Secret, ConfigMap, downwardAPI, projected.
    ReadOnly,
    /// emptyDir, a claim.
    ReadWrite,
}

/// When the tree is walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangePolicy {
    /// Every time (small volumes the kubelet itself just wrote).
    Always,
    /// Only when the root does not have the group and bits yet (`fsGroupChangePolicy:
    /// OnRootMismatch`), so a large claim is not walked at every start.
    OnRootMismatch,
}

/// Give `dir`'s tree to `fs_group` (nothing to do without one).
pub fn own(
    dir: &Path,
    fs_group: Option<u32>,
    access: Access,
    policy: ChangePolicy,
) -> Result<(), VolumeError> {
    let Some(group) = fs_group else { return Ok(()) };
    let (dir_bits, file_bits) = match access {
        Access::ReadOnly => (0o2050, 0o040),
        Access::ReadWrite => (0o2070, 0o060),
    };
    if policy == ChangePolicy::OnRootMismatch
        && let Ok(meta) = std::fs::metadata(dir)
        && meta.gid() == group
        && meta.mode() & dir_bits == dir_bits
    {
        return Ok(());
    }
    let mut pending: Vec<PathBuf> = vec![dir.to_path_buf()];
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fs_group_ownership_gives_the_group_access_and_setgid_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("data");
        std::fs::create_dir_all(volume.join("sub")).expect("mkdir");
        std::fs::write(volume.join("sub/f"), b"x").expect("write");
        set_mode(&volume.join("sub/f"), 0o600).expect("chmod");
        own(&volume, Some(4321), Access::ReadWrite, ChangePolicy::OnRootMismatch).expect("own");
        let meta = |p: &Path| std::fs::metadata(p).expect("meta");
        assert_eq!(meta(&volume).gid(), 4321);
        assert_eq!(meta(&volume).mode() & 0o2070, 0o2070);
        assert_eq!(meta(&volume.join("sub/f")).gid(), 4321);
        assert_eq!(meta(&volume.join("sub/f")).mode() & 0o777, 0o660);
    }

    #[test]
    fn on_root_mismatch_skips_a_tree_whose_root_is_already_owned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("data");
        std::fs::create_dir_all(&volume).expect("mkdir");
        own(&volume, Some(4321), Access::ReadWrite, ChangePolicy::OnRootMismatch).expect("own");
        std::fs::write(volume.join("late"), b"x").expect("write");
        set_mode(&volume.join("late"), 0o600).expect("chmod");
        own(&volume, Some(4321), Access::ReadWrite, ChangePolicy::OnRootMismatch).expect("again");
        let mode = std::fs::metadata(volume.join("late")).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600, "not walked again");
        own(&volume, Some(4321), Access::ReadWrite, ChangePolicy::Always).expect("always");
        let mode = std::fs::metadata(volume.join("late")).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o660);
    }
}
