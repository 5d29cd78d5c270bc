//! Writing the files of a Secret, ConfigMap, downwardAPI or projected volume: each file replaced
//! atomically (a temporary file renamed over it), so a container reading it sees the old or the
//! new content, never half; a file no longer listed goes.

use super::{VolumeError, io_error, set_mode};
use crate::kubelet::env::ConfigError;
use std::collections::BTreeSet;
use std::path::Path;

/// One file of a Secret/ConfigMap/downwardAPI/projected volume.
#[derive(Debug)]
pub struct VolumeFile {
    /// Relative path inside the volume (`items[].path`, else the key).
    pub path: String,
    /// The content.
    pub bytes: Vec<u8>,
    /// Its mode (`mode`, else the source's `defaultMode`).
    pub mode: u32,
}

/// Write the files (each atomically: temp file, then rename) and drop files no longer listed.
pub fn sync_files(dir: &Path, files: &[VolumeFile]) -> Result<(), VolumeError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
}
