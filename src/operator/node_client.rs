//! Typed async client for a cache node's admin HTTP API (`docs/admin-api.md`).
//!
//! The operator and `mapcache admin` both talk to pods through this client. Every request has a
//! timeout (a hung node must not stall a reconcile), carries the bearer token when one is known,
//! and turns the node's `{"error": "..."}` bodies into [`NodeError::Status`] with the message kept.
//! Response types mirror the document field for field; fields the document marks nullable are
//! `Option`, and unknown fields are ignored so a newer node still talks to an older operator.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Timeout of a plain request (stats, compact, drain ...). Requests that take a window by design
/// (lock profile, checklist) get this plus their window.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Drain waits for in-flight commands and writes a verified snapshot, so it gets longer.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What can go wrong talking to a node. Variant names double as metric labels.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Connection refused, DNS, timeout, or a broken body.
    #[error("request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with a non-success status; `message` is its `error` field or raw body.
    #[error("{url} answered {status}: {message}")]
    Status { url: String, status: u16, message: String },
    /// The body was not the JSON the admin API documents.
    #[error("{url} answered with a body that does not match the admin API: {source}")]
    Decode {
        url: String,
        #[source]
        source: serde_json::Error,
    },
}

impl NodeError {
    /// The HTTP status the node answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            NodeError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Short label for metrics and Events.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Transport { .. } => "transport",
            NodeError::Status { .. } => "status",
            NodeError::Decode { .. } => "decode",
        }
    }
}

/// `GET /v1/stats`: the engine figures summed over shards.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct NodeStats {
    pub version: String,
    pub ready: bool,
    pub draining: bool,
    pub keys: u64,
    pub tombstones: u64,
    pub tombstone_ratio: f64,
    /// keys / (current-array buckets x 8): low after mass deletes, the trigger for a rebuild.
    pub fill_ratio: f64,
    pub buckets: u64,
    pub overflow_buckets: u64,
    pub empty_overflow_buckets: u64,
    pub bytes_allocated: u64,
    pub memory_bytes: u64,
    /// 0 = unlimited.
    pub maxmemory: u64,
    /// `idle`, or the first non-idle shard's phase (`growing`, `compacting`, `shrinking`).
    pub phase: String,
    pub evacuated: u64,
    pub to_evacuate: u64,
    /// What the node's start did with the snapshots it found (absent from older nodes).
    #[serde(default)]
    pub restore: RestoreStats,
    #[serde(default)]
    pub shards: Vec<ShardStats>,
}

/// `restore` inside [`NodeStats`]: how the node's start went with its snapshots.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct RestoreStats {
    /// `restoring`, `restored`, `no_snapshot`, or `all_corrupt` (there were snapshots and none
    /// could be used: the node started empty).
    #[serde(default)]
    pub outcome: String,
    /// The generation restored.
    #[serde(default)]
    pub generation: Option<u64>,
    /// The snapshot files that could not be used, newest first.
    #[serde(default)]
    pub unusable: Vec<UnusableSnapshot>,
    /// When the restore finished (RFC 3339): tells one start of the node from the next.
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// One snapshot file the node could not use.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct UnusableSnapshot {
    pub file: String,
    /// `truncated`, `checksum`, `format`, `key_count` or `io`.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub error: String,
    /// Where the node moved it (`corrupt/<file>`), if it could.
    #[serde(default)]
    pub moved_to: Option<String>,
}

/// One shard's engine stats inside [`NodeStats`].
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ShardStats {
    pub shard: u32,
    pub len: u64,
    pub tombstones: u64,
    pub tombstone_ratio: f64,
    pub buckets: u64,
    pub b: u8,
    pub overflow_buckets: u64,
    pub empty_overflow_buckets: u64,
    pub bytes_allocated: u64,
    pub load_factor: f64,
    pub phase: String,
    pub evacuated: u64,
    pub to_evacuate: u64,
}

/// Which online maintenance to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceKind {
    /// Same-size regrow: purges tombstones, collapses overflow chains.
    Compact,
    /// Regrow into the smallest array for the live count: returns memory.
    Rebuild,
}

impl MaintenanceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceKind::Compact => "compact",
            MaintenanceKind::Rebuild => "rebuild",
        }
    }
}

impl std::fmt::Display for MaintenanceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `202` body of `POST /v1/compact` and `POST /v1/rebuild`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct MaintenanceStarted {
    pub started: bool,
    pub kind: MaintenanceKind,
    pub shards: u32,
}

/// Figures before or after a maintenance run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct MaintenanceFigures {
    pub keys: u64,
    pub tombstones: u64,
    pub bytes_allocated: u64,
}

/// Completed runs per kind since the node started.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct RunsTotal {
    pub compact: u64,
    pub rebuild: u64,
}

/// `GET /v1/maintenance`: progress of the current or last run.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct MaintenanceProgress {
    pub running: bool,
    /// Null before the first run.
    pub kind: Option<MaintenanceKind>,
    pub started_at: Option<String>,
    /// Null while running.
    pub finished_at: Option<String>,
    pub shards_total: u32,
    pub shards_done: u32,
    pub evacuated: u64,
    pub to_evacuate: u64,
    pub before: Option<MaintenanceFigures>,
    pub after: Option<MaintenanceFigures>,
    #[serde(default)]
    pub runs_total: RunsTotal,
}

/// `GET /v1/debug/tasks`: the task dump.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct TaskDump {
    pub now: String,
    pub connections: u64,
    pub inflight: u64,
    /// Null when no client was ever seen.
    pub last_client_activity_ms_ago: Option<u64>,
    #[serde(default)]
    pub tasks: Vec<Task>,
}

/// One entry of the task dump.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Task {
    pub id: u64,
    /// `connection` | `maintenance` | `snapshot`
    pub kind: String,
    pub peer: Option<String>,
    pub name: Option<String>,
    /// `idle` | `reading` | `executing` | `waiting_lock` | `writing`
    pub state: String,
    pub command: Option<String>,
    pub age_ms: u64,
    pub idle_ms: u64,
    pub holds_lock: Option<u32>,
    pub waits_lock: Option<u32>,
}

/// `GET /v1/debug/locks?seconds=N`: the lock profile.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct LockProfile {
    pub seconds: u32,
    pub total_contentions: u64,
    pub total_wait_seconds: f64,
    pub waiters_now: u64,
    #[serde(default)]
    pub shards: Vec<ShardLockProfile>,
}

/// One shard of the lock profile.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct ShardLockProfile {
    pub shard: u32,
    pub waiters_now: u64,
    pub contentions: u64,
    pub wait_seconds: f64,
    pub max_wait_seconds: f64,
    /// Task id holding the lock at the end of the window.
    pub holder: Option<u64>,
    /// Task ids waiting at the end of the window.
    #[serde(default)]
    pub waiters: Vec<u64>,
}

/// A written snapshot (`POST /v1/snapshot`, inside drain and checklist answers).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct SnapshotInfo {
    pub path: String,
    pub generation: u64,
    pub keys: u64,
    pub bytes: u64,
    pub crc32c: String,
    pub written_at: String,
    /// Read back from disk: every block and the file checksum good, key count equal to `keys`.
    pub verified: bool,
    /// The node was refusing writes before the snapshot began.
    pub after_writes_stopped: bool,
    pub duration_ms: u64,
}

/// `200` body of `POST /v1/drain`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct DrainResponse {
    pub draining: bool,
    pub snapshot: Option<SnapshotInfo>,
}

/// `GET /v1/checklist`: the node's own checklist items.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct NodeChecklist {
    pub draining: bool,
    pub live_keys: u64,
    pub passed: bool,
    #[serde(default)]
    pub items: Vec<NodeChecklistItem>,
    pub snapshot: Option<SnapshotInfo>,
}

/// One item of the node's checklist.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct NodeChecklistItem {
    pub name: String,
    pub passed: bool,
    pub evidence: String,
}

/// Client for one node's admin API.
#[derive(Clone, Debug)]
pub struct NodeClient {
    http: reqwest::Client,
    /// `http://<ip>:<admin port>`, no trailing slash.
    base: String,
    token: Option<String>,
}

/// How long a kept-alive connection to a node's admin API is reused: under the node's
/// `--admin-header-timeout` (5 s by default), after which the node closes it, so a request is
/// never sent on a connection the node is closing at that moment.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(3);

/// The shared HTTP client: connect timeout short (a dead pod IP should fail fast), no proxy (pods
/// are addressed directly), plain http only, idle connections dropped before the node drops them.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(DEFAULT_TIMEOUT)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .no_proxy()
        .build()
}

/// `http://host:port`, bracketing IPv6 literals.
pub fn base_url(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("http://[{host}]:{port}")
    } else {
        format!("http://{host}:{port}")
    }
}

impl NodeClient {
    /// A client for the node at `host:port`; `token` is sent as `Authorization: Bearer`.
    pub fn new(http: reqwest::Client, host: &str, port: u16, token: Option<String>) -> Self {
        Self { http, base: base_url(host, port), token }
    }

    /// The base URL this client talks to.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v1/stats`.
    pub async fn stats(&self) -> Result<NodeStats, NodeError> {
        self.get("/v1/stats", DEFAULT_TIMEOUT).await
    }

    /// `POST /v1/compact` or `POST /v1/rebuild`.
    pub async fn start_maintenance(
        &self,
        kind: MaintenanceKind,
    ) -> Result<MaintenanceStarted, NodeError> {
        let path = match kind {
            MaintenanceKind::Compact => "/v1/compact",
            MaintenanceKind::Rebuild => "/v1/rebuild",
        };
        self.post(path, DEFAULT_TIMEOUT).await
    }

    /// `GET /v1/maintenance`.
    pub async fn maintenance(&self) -> Result<MaintenanceProgress, NodeError> {
        self.get("/v1/maintenance", DEFAULT_TIMEOUT).await
    }

    /// `GET /v1/debug/tasks`.
    pub async fn debug_tasks(&self) -> Result<TaskDump, NodeError> {
        self.get("/v1/debug/tasks", DEFAULT_TIMEOUT).await
    }

    /// `GET /v1/debug/locks?seconds=N`; returns after the window.
    pub async fn debug_locks(&self, seconds: u32) -> Result<LockProfile, NodeError> {
        let path = format!("/v1/debug/locks?seconds={seconds}");
        self.get(&path, DEFAULT_TIMEOUT + Duration::from_secs(u64::from(seconds))).await
    }

    /// `POST /v1/drain`.
    pub async fn drain(&self) -> Result<DrainResponse, NodeError> {
        self.post("/v1/drain", DRAIN_TIMEOUT).await
    }

    /// `GET /v1/checklist?quiet_period_ms=Q&lock_profile_seconds=L`; takes about L seconds.
    pub async fn checklist(
        &self,
        quiet_period: Duration,
        lock_profile_seconds: u32,
    ) -> Result<NodeChecklist, NodeError> {
        let path = format!(
            "/v1/checklist?quiet_period_ms={}&lock_profile_seconds={lock_profile_seconds}",
            quiet_period.as_millis()
        );
        let timeout = DEFAULT_TIMEOUT + Duration::from_secs(u64::from(lock_profile_seconds));
        self.get(&path, timeout).await
    }

    /// `POST /v1/snapshot`.
    pub async fn snapshot(&self) -> Result<SnapshotInfo, NodeError> {
        self.post("/v1/snapshot", DRAIN_TIMEOUT).await
    }

    /// `GET /readyz`: `Ok(true)` on 200, `Ok(false)` on 503, an error otherwise.
    pub async fn readyz(&self) -> Result<bool, NodeError> {
        let url = format!("{}/readyz", self.base);
        let response = self
            .http
            .get(&url)
            .timeout(DEFAULT_TIMEOUT)
            .send()
            .await
            .map_err(|source| NodeError::Transport { url: url.clone(), source })?;
        match response.status().as_u16() {
            200 => Ok(true),
            503 => Ok(false),
            status => {
                let body = response.text().await.unwrap_or_default();
                Err(NodeError::Status { url, status, message: body.trim().to_string() })
            }
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, NodeError> {
        let url = format!("{}{path}", self.base);
        let request = self.http.get(&url).timeout(timeout);
        self.send(url, request).await
    }

    async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, NodeError> {
        let url = format!("{}{path}", self.base);
        let request = self.http.post(&url).timeout(timeout);
        self.send(url, request).await
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        url: String,
        mut request: reqwest::RequestBuilder,
    ) -> Result<T, NodeError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request
            .send()
            .await
            .map_err(|source| NodeError::Transport { url: url.clone(), source })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|source| NodeError::Transport { url: url.clone(), source })?;
        if !status.is_success() {
            return Err(NodeError::Status {
                url,
                status: status.as_u16(),
                message: error_message(&body),
            });
        }
        serde_json::from_slice(&body).map_err(|source| NodeError::Decode { url, source })
    }
}

/// The `error` field of a `{"error": "..."}` body, else the body itself (trimmed, bounded).
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct ErrorBody {
        error: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => parsed.error,
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            match text.char_indices().nth(200) {
                Some((cut, _)) => format!("{}...", &text[..cut]),
                None => text.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples below are copied from docs/admin-api.md; if the document changes, so must they.

    #[test]
    fn stats_example_from_admin_api_doc_deserializes() {
        let json = r#"{
          "version": "0.1.0", "ready": true, "draining": false, "keys": 1000, "tombstones": 12,
          "tombstone_ratio": 0.0118, "fill_ratio": 0.49, "buckets": 256, "overflow_buckets": 3,
          "empty_overflow_buckets": 0, "bytes_allocated": 123456, "memory_bytes": 234567,
          "maxmemory": 0, "phase": "idle", "evacuated": 0, "to_evacuate": 0,
          "shards": [ { "shard": 0, "len": 62, "tombstones": 1, "tombstone_ratio": 0.0159,
                        "buckets": 16, "b": 4, "overflow_buckets": 0, "empty_overflow_buckets": 0,
                        "bytes_allocated": 7000, "load_factor": 0.48, "phase": "idle",
                        "evacuated": 0, "to_evacuate": 0 } ]
        }"#;
        let stats: NodeStats = serde_json::from_str(json).expect("documented example");
        assert_eq!(stats.keys, 1000);
        assert_eq!(stats.tombstones, 12);
        assert_eq!(stats.tombstone_ratio, 0.0118);
        assert_eq!(stats.fill_ratio, 0.49);
        assert_eq!(stats.memory_bytes, 234567);
        assert_eq!(stats.phase, "idle");
        assert_eq!(stats.shards.len(), 1);
        assert_eq!(stats.shards[0].b, 4);
        assert_eq!(stats.shards[0].len, 62);
    }

    #[test]
    fn maintenance_example_from_admin_api_doc_deserializes() {
        let json = r#"{
          "running": false, "kind": "compact", "started_at": "2026-11-22T02:00:00Z",
          "finished_at": "2026-11-22T02:00:01Z", "shards_total": 16, "shards_done": 16,
          "evacuated": 4096, "to_evacuate": 0,
          "before": { "keys": 1000, "tombstones": 900, "bytes_allocated": 1000000 },
          "after":  { "keys": 1000, "tombstones": 0,   "bytes_allocated": 100000 },
          "runs_total": { "compact": 3, "rebuild": 1 }
        }"#;
        let progress: MaintenanceProgress = serde_json::from_str(json).expect("documented example");
        assert!(!progress.running);
        assert_eq!(progress.kind, Some(MaintenanceKind::Compact));
        assert_eq!(progress.before.as_ref().map(|b| b.tombstones), Some(900));
        assert_eq!(progress.after.as_ref().map(|a| a.bytes_allocated), Some(100000));
        assert_eq!(progress.runs_total, RunsTotal { compact: 3, rebuild: 1 });
    }

    #[test]
    fn maintenance_before_first_run_has_null_kind_and_figures() {
        let json = r#"{ "running": false, "kind": null, "started_at": null, "finished_at": null,
          "shards_total": 16, "shards_done": 0, "evacuated": 0, "to_evacuate": 0,
          "before": null, "after": null, "runs_total": { "compact": 0, "rebuild": 0 } }"#;
        let progress: MaintenanceProgress = serde_json::from_str(json).expect("nullable fields");
        assert_eq!(progress.kind, None);
        assert_eq!(progress.before, None);
    }

    #[test]
    fn maintenance_started_example_deserializes() {
        let json = r#"{"started": true, "kind": "compact", "shards": 16}"#;
        let started: MaintenanceStarted = serde_json::from_str(json).expect("documented example");
        assert_eq!(
            started,
            MaintenanceStarted { started: true, kind: MaintenanceKind::Compact, shards: 16 }
        );
    }

    #[test]
    fn task_dump_example_from_admin_api_doc_deserializes() {
        let json = r#"{
          "now": "2026-11-22T02:00:00Z", "connections": 2, "inflight": 1,
          "last_client_activity_ms_ago": 3,
          "tasks": [
            { "id": 7, "kind": "connection", "peer": "127.0.0.1:50000", "name": "app",
              "state": "executing", "command": "SET", "age_ms": 5000, "idle_ms": 0,
              "holds_lock": 3, "waits_lock": null },
            { "id": 8, "kind": "connection", "peer": "127.0.0.1:50001", "name": null,
              "state": "idle", "command": null, "age_ms": 100, "idle_ms": 100,
              "holds_lock": null, "waits_lock": null }
          ]
        }"#;
        let dump: TaskDump = serde_json::from_str(json).expect("documented example");
        assert_eq!(dump.inflight, 1);
        assert_eq!(dump.last_client_activity_ms_ago, Some(3));
        assert_eq!(dump.tasks.len(), 2);
        assert_eq!(dump.tasks[0].holds_lock, Some(3));
        assert_eq!(dump.tasks[0].command.as_deref(), Some("SET"));
        assert_eq!(dump.tasks[1].name, None);
        assert_eq!(dump.tasks[1].state, "idle");
    }

    #[test]
    fn lock_profile_example_from_admin_api_doc_deserializes() {
        let json = r#"{ "seconds": 2, "total_contentions": 0, "total_wait_seconds": 0.0,
          "waiters_now": 0,
          "shards": [ { "shard": 0, "waiters_now": 0, "contentions": 0, "wait_seconds": 0.0,
                        "max_wait_seconds": 0.0, "holder": null, "waiters": [] } ] }"#;
        let profile: LockProfile = serde_json::from_str(json).expect("documented example");
        assert_eq!(profile.seconds, 2);
        assert_eq!(profile.shards[0].holder, None);
        assert!(profile.shards[0].waiters.is_empty());
    }

    #[test]
    fn snapshot_and_drain_examples_deserialize() {
        let snapshot = r#"{ "path": "/data/mapcache-000017.snap", "generation": 17, "keys": 1000,
          "bytes": 40960, "crc32c": "1a2b3c4d", "written_at": "2026-11-22T02:00:00Z",
          "verified": true, "after_writes_stopped": true, "duration_ms": 12 }"#;
        let info: SnapshotInfo = serde_json::from_str(snapshot).expect("documented example");
        assert_eq!(info.generation, 17);
        assert_eq!(info.crc32c, "1a2b3c4d");
        assert!(info.verified && info.after_writes_stopped);
        let drain = format!(r#"{{ "draining": true, "snapshot": {snapshot} }}"#);
        let drained: DrainResponse = serde_json::from_str(&drain).expect("drain example");
        assert!(drained.draining);
        assert_eq!(drained.snapshot, Some(info));
    }

    #[test]
    fn checklist_example_from_admin_api_doc_deserializes() {
        let json = r#"{
          "draining": true, "live_keys": 1000, "passed": false,
          "items": [
            { "name": "no-inflight", "passed": true,
              "evidence": "0 in-flight requests, 0 connections, last client activity 6200 ms ago (quiet period 5000 ms)" },
            { "name": "no-lock-waiters", "passed": true,
              "evidence": "lock profile over 1 s: 0 waiters, 0 contentions on 16 shards" },
            { "name": "cross-checked", "passed": true,
              "evidence": "task dump: no task holds or waits for a shard lock; lock profile: no holder, no waiter" },
            { "name": "maintenance-idle", "passed": true, "evidence": "no compaction or rebuild running; all 16 shards idle" },
            { "name": "snapshot-verified", "passed": false,
              "evidence": "no snapshot written since writes stopped" }
          ],
          "snapshot": null
        }"#;
        let checklist: NodeChecklist = serde_json::from_str(json).expect("documented example");
        assert_eq!(checklist.live_keys, 1000);
        assert!(!checklist.passed);
        let names: Vec<&str> = checklist.items.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "no-inflight",
                "no-lock-waiters",
                "cross-checked",
                "maintenance-idle",
                "snapshot-verified"
            ]
        );
        assert!(!checklist.items[4].passed);
        assert_eq!(checklist.snapshot, None);
    }

    #[test]
    fn error_message_prefers_the_error_field_and_bounds_raw_bodies() {
        assert_eq!(
            error_message(br#"{"error": "maintenance already running: rebuild"}"#),
            "maintenance already running: rebuild"
        );
        assert_eq!(error_message(b"  draining\n"), "draining");
        let long = "x".repeat(500);
        assert_eq!(error_message(long.as_bytes()), format!("{}...", "x".repeat(200)));
    }

    #[test]
    fn base_url_brackets_ipv6_literals() {
        assert_eq!(base_url("10.0.0.7", 9090), "http://10.0.0.7:9090");
        assert_eq!(base_url("fd00::7", 9090), "http://[fd00::7]:9090");
        assert_eq!(base_url("[fd00::7]", 9090), "http://[fd00::7]:9090");
    }

    /// A tiny admin API on port 0: answers only with the right bearer token, like a real node.
    async fn serve_fake_node() -> std::net::SocketAddr {
        use axum::http::{HeaderMap, StatusCode};
        use axum::routing::{get, post};
        fn authorized(headers: &HeaderMap) -> bool {
            headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer s3cret")
        }
        let app = axum::Router::new()
            .route(
                "/v1/compact",
                post(|headers: HeaderMap| async move {
                    if !authorized(&headers) {
                        return (StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#);
                    }
                    (StatusCode::CONFLICT, r#"{"error": "maintenance already running: rebuild"}"#)
                }),
            )
            .route(
                "/v1/rebuild",
                post(|headers: HeaderMap| async move {
                    if !authorized(&headers) {
                        return (StatusCode::UNAUTHORIZED, r#"{"error":"unauthorized"}"#);
                    }
                    (StatusCode::ACCEPTED, r#"{"started": true, "kind": "rebuild", "shards": 4}"#)
                }),
            )
            .route("/v1/stats", get(|| async { "{not json" }))
            .route("/readyz", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "draining") }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    #[tokio::test]
    async fn client_sends_bearer_token_and_maps_statuses() {
        let addr = serve_fake_node().await;
        let http = http_client().expect("http client");
        let host = addr.ip().to_string();
        let with_token = NodeClient::new(http.clone(), &host, addr.port(), Some("s3cret".into()));
        let without = NodeClient::new(http, &host, addr.port(), None);

        let started = with_token.start_maintenance(MaintenanceKind::Rebuild).await.expect("202");
        assert_eq!(started.kind, MaintenanceKind::Rebuild);
        assert_eq!(started.shards, 4);

        let unauthorized = without.start_maintenance(MaintenanceKind::Rebuild).await.unwrap_err();
        assert_eq!(unauthorized.status(), Some(401));
        assert!(unauthorized.to_string().ends_with("answered 401: unauthorized"), "{unauthorized}");

        let conflict = with_token.start_maintenance(MaintenanceKind::Compact).await.unwrap_err();
        assert_eq!(conflict.status(), Some(409));
        assert!(conflict.to_string().contains("maintenance already running: rebuild"));

        let decode = with_token.stats().await.unwrap_err();
        assert_eq!(decode.kind(), "decode");

        assert!(!with_token.readyz().await.expect("503 is an answer"));
    }

    #[tokio::test]
    async fn unreachable_node_is_a_transport_error() {
        // Bind and drop, so the port is (almost certainly) closed.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
            listener.local_addr().expect("local addr").port()
        };
        let client = NodeClient::new(http_client().expect("http client"), "127.0.0.1", port, None);
        let error = client.stats().await.unwrap_err();
        assert_eq!(error.kind(), "transport");
        assert_eq!(error.status(), None);
    }
}
