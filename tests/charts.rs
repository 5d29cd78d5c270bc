//! Runs `scripts/check-charts.py`: Helm lint + render (default and non-default values) with
//! Helm's own library, kubernetes-validate on every rendered object, the CRD schema on every
//! example, and the manifests/install.yaml drift check.
//!
//! Needs Python 3 with `pip install -r scripts/requirements.txt`; without them this test fails
//! and says so (it never passes vacuously).

use std::process::Command;

#[test]
fn chart_lints_renders_validates_and_install_yaml_is_current() {
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("python3")
        .arg(format!("{root}/scripts/check-charts.py"))
        .current_dir(root)
        .output()
        .expect("python3 runs (install Python 3 and `pip install -r scripts/requirements.txt`)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scripts/check-charts.py failed (missing modules? `pip install -r scripts/requirements.txt`)\n\
         --- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    assert!(stdout.trim_end().ends_with("all chart checks passed"), "{stdout}");
    assert!(!stdout.contains("FAIL "), "{stdout}");
}
