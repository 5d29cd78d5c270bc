//! What a kubelet keeps on disk per pod, `<root>/pods/<uid>/state.json`, so that a kubelet
//! restarted after SIGKILL re-adopts the pod instead of starting it again: the pod IP and netns,
//! and per container the pid with its start time (field 22 of `/proc/<pid>/stat`, which tells a
//! live container from an unrelated process that got the same pid), restart count and last
//! termination. The file is replaced atomically (write a temporary file, rename it over the old
//! one): a kubelet killed at any point leaves either the old or the new record. There is no
//! fsync: what this guards against is the kubelet's death, not the machine's (a machine that
//! loses power loses its pods' processes with it).

use k8s_openapi::api::core::v1::ContainerStateTerminated;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

const STATE_FILE: &str = "state.json";

/// One pod's record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodState {
    /// The pod's UID: the name of its directory and the key of everything here.
    pub uid: String,
    /// For logs and orphan cleanup messages.
    pub namespace: String,
    /// For logs and orphan cleanup messages.
    pub name: String,
    /// The pod IP, held (never handed to another pod) while this file exists.
    pub pod_ip: Option<Ipv4Addr>,
    /// The pod's network namespace (`ip netns` name).
    pub netns: String,
    /// The host side of the pod's veth.
    pub host_veth: String,
    /// When the kubelet first started the pod (`status.startTime`), RFC 3339.
    pub start_time: Option<jiff::Timestamp>,
    /// Per container name.
    pub containers: BTreeMap<String, ContainerRecord>,
    /// Every init container has let the next one start once: the pod is `Initialized`, and a
    /// native sidecar that restarts later neither blocks the regular containers nor sends the
    /// pod back to Pending.
    #[serde(default)]
    pub initialized: bool,
}

/// One container's record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRecord {
    /// The running process, if any.
    pub pid: Option<u32>,
    /// Its start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: Option<u64>,
    /// When it started, for `state.running.startedAt`.
    pub started_at: Option<jiff::Timestamp>,
    /// Restarts so far (`restartCount`).
    pub restart_count: i32,
    /// The previous instance's end (`lastState.terminated`).
    pub last_termination: Option<ContainerStateTerminated>,
    /// Set when the container ended for good (restartPolicy Never/OnFailure).
    pub final_termination: Option<ContainerStateTerminated>,
    /// Readiness when the record was written, so an adopted container keeps it until probed.
    pub ready: bool,
    /// The startup probe had passed (or there is none).
    pub started: bool,
}

impl ContainerRecord {
    /// The record once its process has ended: no pid, neither started nor ready.
    pub fn ended(&mut self) {
        self.pid = None;
        self.start_ticks = None;
        self.ready = false;
        self.started = false;
    }
}

impl PodState {
    pub fn path(pod_dir: &Path) -> PathBuf {
        pod_dir.join(STATE_FILE)
    }

    /// The pod's record, None when there is none (a new pod).
    pub fn load(pod_dir: &Path) -> Result<Option<Self>, String> {
        let path = Self::path(pod_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(format!("{}: {error}", path.display())),
        }
    }

    /// Every readable record under `pods_dir` (unreadable ones are logged and skipped).
    pub fn load_all(pods_dir: &Path) -> Vec<Self> {
        let Ok(entries) = std::fs::read_dir(pods_dir) else { return Vec::new() };
        let mut all = Vec::new();
        for entry in entries.flatten() {
            match Self::load(&entry.path()) {
                Ok(Some(state)) => all.push(state),
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "unreadable pod state; ignored"),
            }
        }
        all
    }

    /// Replace the record (module docs: atomic, no fsync).
    pub fn save(&self, pod_dir: &Path) -> Result<(), String> {
        std::fs::create_dir_all(pod_dir).map_err(|e| format!("{}: {e}", pod_dir.display()))?;
        let path = Self::path(pod_dir);
        let tmp = pod_dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| format!("encode state: {e}"))?;
        std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Start time (clock ticks since boot) of a live process; None when it is gone or a zombie.
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (state, ticks) = parse_stat(&stat)?;
    (state != 'Z' && state != 'X').then_some(ticks)
}

/// `(state, starttime)` from a `/proc/<pid>/stat` line. The command name (field 2) is in
/// parentheses and may itself contain spaces and parentheses, so fields count from the last ')'.
pub fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: field 3 (state) is the first; field 22 (starttime) is the 20th.
    let state = fields.next()?.chars().next()?;
    let ticks = fields.nth(18)?.parse().ok()?;
    Some((state, ticks))
}

/// Whether the process recorded as (pid, start ticks) is still that process.
pub fn is_same_process(pid: u32, start_ticks: u64) -> bool {
    process_start_ticks(pid) == Some(start_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(PodState::load(dir.path()), Ok(None));
        let mut state = PodState {
            uid: "u-1".into(),
            namespace: "ns".into(),
            name: "cache-0".into(),
            pod_ip: Some(Ipv4Addr::new(10, 77, 3, 10)),
            netns: "mcbr0-u-1".into(),
            host_veth: "v1".into(),
            start_time: Some(jiff::Timestamp::from_second(1_800_000_000).expect("time")),
            containers: BTreeMap::new(),
            initialized: true,
        };
        state.containers.insert(
            "engine".into(),
            ContainerRecord {
                pid: Some(4242),
                start_ticks: Some(123_456),
                restart_count: 2,
                last_termination: Some(ContainerStateTerminated {
                    exit_code: 2,
                    reason: Some("Error".into()),
                    ..ContainerStateTerminated::default()
                }),
                ready: true,
                started: true,
                ..ContainerRecord::default()
            },
        );
        let pod_dir = dir.path().join("u-1");
        state.save(&pod_dir).expect("save");
        assert_eq!(PodState::load(&pod_dir), Ok(Some(state.clone())));
        assert_eq!(PodState::load_all(dir.path()), vec![state]);
    }

    #[test]
    fn a_state_file_of_an_older_kubelet_loads_as_not_initialized() {
        let dir = tempfile::tempdir().expect("tempdir");
        let old = r#"{"uid": "u-1", "namespace": "ns", "name": "p", "podIp": null,
                      "netns": "n", "hostVeth": "v", "startTime": null, "containers": {}}"#;
        std::fs::write(PodState::path(dir.path()), old).expect("write");
        let loaded = PodState::load(dir.path()).expect("load").expect("a state");
        assert_eq!((loaded.uid.as_str(), loaded.initialized), ("u-1", false));
    }

    #[test]
    fn stat_parsing_counts_fields_after_the_command_name() {
        let stat = "4242 (my (odd) prog) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 \
                    1 0 987654 12345678 300 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(('S', 987_654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_recognized_and_a_wrong_start_time_is_not() {
        let pid = std::process::id();
        let ticks = process_start_ticks(pid).expect("our own stat");
        assert!(is_same_process(pid, ticks));
        assert!(!is_same_process(pid, ticks + 1));
    }
}
