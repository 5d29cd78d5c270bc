//! Where the programs of the local cluster are: the control plane's (built from their Go
//! modules by `scripts/k8s-binaries.sh`, cached by version), this crate's own (`process-kubelet`,
//! `sidecar-app`) and `mapcache`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kubectl:
/// `$MAPCACHE_K8S_BIN_DIR`, else what `scripts/k8s-binaries.sh` prints (it builds them first
/// when they are not cached, which takes minutes once; `.ci/run` runs it before the tests).
pub fn k8s_bin_dir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(dir) = std::env::var_os("MAPCACHE_K8S_BIN_DIR") {
            return Ok(PathBuf::from(dir));
        }
        let script = repo_root().join("scripts/k8s-binaries.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("run {}: {e}", script.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let dir = stdout.lines().last().unwrap_or_default().trim();
        if !output.status.success() || dir.is_empty() {
            return Err(format!("{} failed ({})", script.display(), output.status));
        }
        Ok(PathBuf::from(dir))
    })
    .clone()
}

/// kubectl v1.37.2, built with the control plane.
pub fn kubectl() -> Result<PathBuf, String> {
    Ok(k8s_bin_dir()?.join("kubectl"))
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The cargo target directory's profile folder the running executable belongs to
/// (`target/debug` for a test in `target/debug/deps` or a binary in `target/debug`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.parent().unwrap_or(dir).to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// One of this crate's binaries (`process-kubelet`, `sidecar-app`), next to the running
/// executable. `cargo test` builds a package's binaries before its integration tests.
pub fn own_binary(name: &str) -> PathBuf {
    profile_dir().join(name)
}

/// The `mapcache` binary pods and the operator run: `$MAPCACHE_BIN`, else the one in this
/// profile's target directory.
pub fn mapcache() -> PathBuf {
    std::env::var_os("MAPCACHE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("mapcache"))
}

/// Build `mapcache` (debug) unless the binary is there already.
pub fn ensure_mapcache(bin: &Path) -> std::io::Result<()> {
    if bin.exists() {
        return Ok(());
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "-p", "mapcache", "--bin", "mapcache"])
        .current_dir(repo_root())
        .status()?;
    if !status.success() || !bin.exists() {
        return Err(std::io::Error::other(format!(
            "cargo build -p mapcache failed ({status}); {} is missing",
            bin.display()
        )));
    }
    Ok(())
}
