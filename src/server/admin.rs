//! The admin HTTP API (docs/admin-api.md is the contract the operator codes against).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::commands::COMMANDS;
use super::node;
use super::state::{MaintenanceKind, NodeState};
use super::tasks::TaskState;
use crate::engine::Phase;

type Node = State<Arc<NodeState>>;

/// What an admin connection past `--admin-max-connections` is sent before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
    content-type: application/json\r\ncontent-length: 38\r\nconnection: close\r\n\r\n\
    {\"error\":\"too many admin connections\"}";

/// Serves the admin API on `listener` until the task is aborted.
///
/// Each connection is HTTP/1.1 served by hyper with a header-read timeout
/// (`--admin-header-timeout`): hyper starts that clock whenever it waits for a request's head,
/// on a new connection and between keep-alive requests alike, so a client that sends its
/// headers slowly (slowloris) or sits idle between requests is cut off when it runs out.
/// (`axum::serve` gives hyper no timer, and without one hyper has no header timeout.) At most
/// `--admin-max-connections` connections are served at once: one more is answered 503 and
/// closed at once, so a flood of connections cannot exhaust the node's file descriptors or
/// memory, and is gone within one header timeout.
pub async fn serve(node: Arc<NodeState>, listener: TcpListener) {
    let app = router(node.clone());
    let permits = Arc::new(Semaphore::new(node.config.admin_max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(node.config.admin_header_timeout);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, say: back off rather than spin.
                tracing::warn!(error = %err, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            node.metrics.admin_connections_refused.inc();
            tracing::debug!(%peer, "admin connection refused: too many connections");
            // Best effort, never waiting: the socket is closed right after.
            let _ = stream.try_write(TOO_MANY_CONNECTIONS);
            continue;
        };
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%peer, error = %err, "admin connection ended");
            }
            drop(permit);
        });
    }
}

pub fn router(node: Arc<NodeState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/stats", get(stats))
        .route("/v1/maintenance", get(maintenance))
        .route("/v1/compact", post(compact))
        .route("/v1/rebuild", post(rebuild))
        .route("/v1/debug/tasks", get(debug_tasks))
        .route("/v1/debug/locks", get(debug_locks))
        .route("/v1/drain", post(drain))
        .route("/v1/snapshot", post(snapshot))
        .route("/v1/checklist", get(checklist))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
        // After every route: it applies to the routes registered before it. axum adds `Allow`.
        .method_not_allowed_fallback(|| async {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        })
        .with_state(node)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// An admin request refused before it ran: the status and the `{"error": ...}` message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error(self.status, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 (11.6.1): a 401 names the scheme that would be accepted.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// With a token configured, requires `Authorization: Bearer <token>`.
fn authorize(node: &NodeState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &node.config.admin_token else {
        return Ok(());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110, 11.1): `bearer` is as good as `Bearer`.
        .and_then(|(scheme, token)| scheme.eq_ignore_ascii_case("bearer").then_some(token));
    let ok = presented.is_some_and(|p| super::auth::secret_matches(p.as_bytes(), token.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(ApiError { status: StatusCode::UNAUTHORIZED, message: "unauthorized".into() })
    }
}

/// The query string's parameters, percent-decoded (`form_urlencoded`, as browsers and HTTP
/// clients encode them). A parameter given twice is a 400: which one was meant is not ours to
/// guess.
fn query_params(raw: Option<String>) -> Result<HashMap<String, String>, ApiError> {
    let mut params = HashMap::new();
    for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        if params.insert(name.to_string(), value.into_owned()).is_some() {
            return Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("{name} is given more than once"),
            });
        }
    }
    Ok(params)
}

/// A bounded integer query parameter: a bad value is a 400 with the parameter named.
fn int_param(
    params: &HashMap<String, String>,
    name: &str,
    default: u64,
    max: u64,
) -> Result<u64, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(ApiError {
                status: StatusCode::BAD_REQUEST,
                message: format!("{name} must be an integer between 0 and {max}, got {v:?}"),
            }),
        },
    }
}

async fn readyz(State(node): Node) -> Response {
    if node.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining").into_response()
    } else if !node.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "restoring").into_response()
    } else {
        (StatusCode::OK, "ready").into_response()
    }
}

async fn metrics(State(node): Node) -> Response {
    (
        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
        node.render_metrics(),
    )
        .into_response()
}

async fn stats(State(node): Node) -> Response {
    Json(node.stats(None)).into_response()
}

async fn maintenance(State(node): Node) -> Response {
    let stats = node.stats(None);
    let m = node.maintenance.lock();
    let shards_total = node.store.shard_count();
    let shards_done = if m.running {
        (0..shards_total)
            .filter(|&i| m.started[i] && stats.shards[i].engine.phase == Phase::Idle)
            .count()
    } else if m.kind.is_some() {
        shards_total
    } else {
        0
    };
    Json(json!({
        "running": m.running,
        "kind": m.kind,
        "started_at": m.started_at,
        "finished_at": m.finished_at,
        "shards_total": shards_total,
        "shards_done": shards_done,
        "evacuated": stats.evacuated,
        "to_evacuate": stats.to_evacuate,
        "before": m.before,
        "after": m.after,
        "runs_total": { "compact": m.runs_compact, "rebuild": m.runs_rebuild },
    }))
    .into_response()
}

async fn start_maintenance(
    node: &NodeState,
    headers: &HeaderMap,
    kind: MaintenanceKind,
) -> Response {
    if let Err(denied) = authorize(node, headers) {
        return denied.into_response();
    }
    if node.is_draining() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match node::start_maintenance(node, kind) {
        Ok(shards) => {
            (StatusCode::ACCEPTED, Json(json!({ "started": true, "kind": kind, "shards": shards })))
                .into_response()
        }
        Err(running) => {
            error(StatusCode::CONFLICT, format!("maintenance already running: {}", running.name()))
        }
    }
}

async fn compact(State(node): Node, headers: HeaderMap) -> Response {
    start_maintenance(&node, &headers, MaintenanceKind::Compact).await
}

async fn rebuild(State(node): Node, headers: HeaderMap) -> Response {
    start_maintenance(&node, &headers, MaintenanceKind::Rebuild).await
}

/// One row of the task dump.
#[derive(Debug, Serialize)]
pub struct TaskRow {
    pub id: u64,
    pub kind: super::tasks::TaskKind,
    pub peer: Option<String>,
    pub name: Option<String>,
    pub state: TaskState,
    pub command: Option<String>,
    pub age_ms: u64,
    pub idle_ms: u64,
    /// Bytes read from the client and not parsed yet (a request still arriving).
    pub query_buffer_bytes: u64,
    pub holds_lock: Option<usize>,
    pub waits_lock: Option<usize>,
}

fn task_dump(node: &NodeState) -> serde_json::Value {
    let rows: Vec<TaskRow> = node
        .tasks
        .snapshot()
        .iter()
        .map(|t| TaskRow {
            id: t.id,
            kind: t.kind,
            peer: t.peer.map(|p| p.to_string()),
            name: t.name.lock().clone(),
            state: t.state(),
            command: t.command().map(|i| COMMANDS[i as usize].name.to_ascii_uppercase()),
            age_ms: t.started.elapsed().as_millis() as u64,
            idle_ms: t.idle_ms(),
            query_buffer_bytes: t.query_buffer().0,
            holds_lock: t.holds_lock(),
            waits_lock: t.waits_lock(),
        })
        .collect();
    json!({
        "now": jiff::Timestamp::now(),
        "connections": node.tasks.connections(),
        "inflight": node.tasks.inflight(),
        "last_client_activity_ms_ago": node.tasks.last_client_activity_ms_ago(),
        "tasks": rows,
    })
}

async fn debug_tasks(State(node): Node, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&node, &headers) {
        return denied.into_response();
    }
    Json(task_dump(&node)).into_response()
}

/// The lock profile over a window.
#[derive(Debug, Serialize)]
pub struct LockProfile {
    pub seconds: u64,
    pub total_contentions: u64,
    pub total_wait_seconds: f64,
    pub waiters_now: usize,
    pub shards: Vec<ShardLockProfile>,
}

#[derive(Debug, Serialize)]
pub struct ShardLockProfile {
    pub shard: usize,
    pub waiters_now: usize,
    pub contentions: u64,
    pub wait_seconds: f64,
    pub max_wait_seconds: f64,
    pub holder: Option<u64>,
    pub waiters: Vec<u64>,
}

pub async fn lock_profile(node: &NodeState, seconds: u64) -> LockProfile {
    let start = Instant::now();
    let before = node.store.lock_counters();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = node.store.lock_counters();
    let max_waits = node.store.max_wait_since(start);
    let shards: Vec<ShardLockProfile> = after
        .into_iter()
        .zip(before)
        .zip(max_waits)
        .enumerate()
        .map(|(shard, ((a, b), max))| ShardLockProfile {
            shard,
            waiters_now: a.waiters_now,
            contentions: a.contentions - b.contentions,
            wait_seconds: (a.wait_ns - b.wait_ns) as f64 / 1e9,
            max_wait_seconds: max.as_secs_f64(),
            holder: a.holder,
            waiters: a.waiters,
        })
        .collect();
    LockProfile {
        seconds,
        total_contentions: shards.iter().map(|s| s.contentions).sum(),
        total_wait_seconds: shards.iter().map(|s| s.wait_seconds).sum(),
        waiters_now: shards.iter().map(|s| s.waiters_now).sum(),
        shards,
    }
}

async fn debug_locks(State(node): Node, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if let Err(denied) = authorize(&node, &headers) {
        return denied.into_response();
    }
    let seconds = match query_params(query).and_then(|p| int_param(&p, "seconds", 1, 60)) {
        Ok(s) => s,
        Err(bad) => return bad.into_response(),
    };
    Json(lock_profile(&node, seconds).await).into_response()
}

async fn drain(State(node): Node, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&node, &headers) {
        return denied.into_response();
    }
    match node::drain(&node).await {
        Ok(info) => Json(json!({ "draining": true, "snapshot": info })).into_response(),
        Err(err) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("drain snapshot failed: {err}"))
        }
    }
}

async fn snapshot(State(node): Node, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&node, &headers) {
        return denied.into_response();
    }
    match node::take_snapshot(&node).await {
        Ok(info) => Json(info).into_response(),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("snapshot failed: {err}")),
    }
}

fn item(name: &str, passed: bool, evidence: String) -> serde_json::Value {
    json!({ "name": name, "passed": passed, "evidence": evidence })
}

async fn checklist(State(node): Node, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    if let Err(denied) = authorize(&node, &headers) {
        return denied.into_response();
    }
    let params = match query_params(query) {
        Ok(params) => params,
        Err(bad) => return bad.into_response(),
    };
    let (quiet_ms, profile_s) = match (
        int_param(&params, "quiet_period_ms", 5000, 3_600_000),
        int_param(&params, "lock_profile_seconds", 1, 60),
    ) {
        (Ok(q), Ok(l)) => (q, l),
        (Err(bad), _) | (_, Err(bad)) => return bad.into_response(),
    };
    let profile = lock_profile(&node, profile_s).await;
    let executing = node.tasks.executing();
    let inflight = node.tasks.inflight();
    let connections = node.tasks.connections();
    let quiet = node.tasks.last_client_activity_ms_ago();
    let tasks = node.tasks.snapshot();
    let shards = node.store.shard_count();
    let mut items = Vec::new();

    items.push(item(
        "no-inflight",
        // What drain waits for: commands running. A connection half-way through sending a
        // request, or receiving replies, runs none; the quiet period covers it.
        executing == 0 && quiet >= quiet_ms,
        format!(
            "{executing} in-flight requests, {} connections reading a request or writing replies, \
             {connections} connections, last client activity {quiet} ms ago (quiet period {quiet_ms} ms)",
            inflight.saturating_sub(executing)
        ),
    ));

    let contended: Vec<usize> = profile
        .shards
        .iter()
        .filter(|s| s.contentions > 0 || s.waiters_now > 0)
        .map(|s| s.shard)
        .collect();
    items.push(item(
        "no-lock-waiters",
        profile.waiters_now == 0 && profile.total_contentions == 0,
        if contended.is_empty() {
            format!(
                "lock profile over {profile_s} s: {} waiters, {} contentions on {shards} shards",
                profile.waiters_now, profile.total_contentions
            )
        } else {
            format!(
                "lock profile over {profile_s} s: {} waiters, {} contentions on {shards} shards (contended shards: {contended:?})",
                profile.waiters_now, profile.total_contentions
            )
        },
    ));

    // Cross-check: the task dump's holders/waiters against the lock profile's, id by id.
    let dump_lock_ids: Vec<u64> = tasks
        .iter()
        .filter(|t| t.holds_lock().is_some() || t.waits_lock().is_some())
        .map(|t| t.id)
        .collect();
    let mut profile_ids: Vec<u64> = profile
        .shards
        .iter()
        .flat_map(|s| s.holder.into_iter().chain(s.waiters.iter().copied()))
        .collect();
    profile_ids.sort_unstable();
    profile_ids.dedup();
    let cross_ok = dump_lock_ids.is_empty() && profile_ids.is_empty();
    items.push(item(
        "cross-checked",
        cross_ok,
        if cross_ok {
            "task dump: no task holds or waits for a shard lock; lock profile: no holder, no waiter".to_string()
        } else {
            format!("task dump: tasks {dump_lock_ids:?} hold or wait for shard locks; lock profile: holders/waiters {profile_ids:?}")
        },
    ));

    let maintenance_running = node.maintenance.lock().running;
    let busy = node.store.busy_shards_unlocked();
    items.push(item(
        "maintenance-idle",
        !maintenance_running && busy.is_empty(),
        if !maintenance_running && busy.is_empty() {
            format!("no compaction or rebuild running; all {shards} shards idle")
        } else {
            format!("maintenance running: {maintenance_running}; shards not idle: {busy:?}")
        },
    ));

    let last = node.last_snapshot.lock().clone();
    let live_keys = node.store.len_unlocked();
    let (snap_ok, snap_evidence) = match &last {
        None => (false, "no snapshot written since writes stopped".to_string()),
        Some(s) if !s.after_writes_stopped => {
            (false, format!("newest snapshot {} was written before writes stopped", s.path))
        }
        Some(s) if !s.verified => (false, format!("snapshot {} failed verification", s.path)),
        Some(s) if s.keys != live_keys as u64 => {
            (false, format!("snapshot {} holds {} keys, node has {live_keys}", s.path, s.keys))
        }
        Some(s) => (
            true,
            format!(
                "snapshot {} generation {} verified: crc32c {}, {} keys = live keys, written after writes stopped",
                s.path, s.generation, s.crc32c, s.keys
            ),
        ),
    };
    items.push(item("snapshot-verified", snap_ok, snap_evidence));

    let passed = items.iter().all(|i| i["passed"] == true);
    Json(json!({
        "draining": node.is_draining(),
        "live_keys": live_keys,
        "passed": passed,
        "items": items,
        "snapshot": last,
    }))
    .into_response()
}
