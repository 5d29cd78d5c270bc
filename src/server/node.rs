//! Starting and stopping a node: restore, listeners, background maintenance, snapshots, drain.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::admin;
use super::io::IoThreads;
use super::snapshot::{self, SnapshotError, SnapshotInfo};
use super::state::{Config, MaintenanceFigures, MaintenanceKind, NodeState};
use super::tasks::{TaskKind, TaskState};
use crate::engine::Phase;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("--shards must be a power of two between 1 and 1024, got {0}")]
    Shards(usize),
    #[error(
        "the admin API has no token, so it must bind to a loopback address, not {0}; \
         set --admin-token-file or MAPCACHE_ADMIN_TOKEN"
    )]
    OpenAdminOnNonLoopback(std::net::IpAddr),
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the connection threads: {0}")]
    IoThreads(#[source] std::io::Error),
    #[error("cannot restore from {dir}: {source}")]
    Restore {
        dir: String,
        #[source]
        source: SnapshotError,
    },
}

/// A running node. Dropping it does not stop its tasks; call [`NodeHandle::shutdown`]. (Its
/// connection threads stop once both this handle and the accept loop are gone.)
#[derive(Debug)]
pub struct NodeHandle {
    pub node: Arc<NodeState>,
    resp_addr: SocketAddr,
    admin_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    io: Arc<IoThreads>,
}

/// The node as a library: tests start it in-process on port 0.
pub struct Node;

/// A node whose listeners are bound but which has neither restored its snapshot nor accepted a
/// client: its addresses are known and its admin API answers (`/readyz` 503 `restoring`).
/// [`BoundNode::run`] restores and starts serving. Dropping it stops its admin API.
#[derive(Debug)]
pub struct BoundNode {
    node: Arc<NodeState>,
    /// Taken by `run`; clients connecting before then wait in the listen backlog.
    resp: Option<TcpListener>,
    resp_addr: SocketAddr,
    admin_addr: SocketAddr,
    /// The admin API; aborted on drop unless `run` handed it to the `NodeHandle`.
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Binds both listeners, restores the newest valid snapshot, then accepts clients.
    /// `/readyz` answers 503 `restoring` until the restore finished.
    pub async fn start(config: Config) -> Result<NodeHandle, StartError> {
        Self::bind(config).await?.run().await
    }

    /// Binds both listeners and starts the admin API; nothing is restored or accepted yet.
    pub async fn bind(config: Config) -> Result<BoundNode, StartError> {
        if !config.shards.is_power_of_two() || config.shards > 1024 {
            return Err(StartError::Shards(config.shards));
        }
        if config.admin_token.is_none() && !config.admin_bind.is_loopback() {
            return Err(StartError::OpenAdminOnNonLoopback(config.admin_bind));
        }
        let resp_addr = SocketAddr::new(config.bind, config.port);
        let admin_addr = SocketAddr::new(config.admin_bind, config.admin_port);
        let resp = TcpListener::bind(resp_addr).await.map_err(|source| StartError::Bind {
            what: "RESP",
            addr: resp_addr,
            source,
        })?;
        let admin = TcpListener::bind(admin_addr).await.map_err(|source| StartError::Bind {
            what: "admin",
            addr: admin_addr,
            source,
        })?;
        let resp_addr = resp.local_addr().map_err(|source| StartError::Bind {
            what: "RESP",
            addr: resp_addr,
            source,
        })?;
        let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
            what: "admin",
            addr: admin_addr,
            source,
        })?;
        if config.protected_mode && config.requirepass.is_none() && !config.bind.is_loopback() {
            tracing::warn!(
                bind = %config.bind,
                "protected mode: no password is set, so clients not on the loopback interface \
                 are refused; set a password (MAPCACHE_PASSWORD) or --protected-mode no"
            );
        }
        let node = Arc::new(NodeState::new(config));
        let tasks = vec![tokio::spawn(admin::serve(node.clone(), admin))];
        Ok(BoundNode { node, resp: Some(resp), resp_addr, admin_addr, tasks })
    }
}

impl BoundNode {
    pub fn resp_addr(&self) -> SocketAddr {
        self.resp_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The node's state, before anything was restored into it.
    pub fn node(&self) -> &Arc<NodeState> {
        &self.node
    }

    /// Restores the newest valid snapshot, then turns ready and accepts clients.
    pub async fn run(mut self) -> Result<NodeHandle, StartError> {
        let node = self.node.clone();
        let restore_node = node.clone();
        let restored = tokio::task::spawn_blocking(move || restore(&restore_node)).await;
        let restored = restored.unwrap_or_else(|join| Err(join_error(&node, join)));
        if let Err(source) = restored {
            return Err(StartError::Restore {
                dir: node.config.data_dir.display().to_string(),
                source,
            });
        }
        let io = IoThreads::start(&node, node.config.io_threads).map_err(StartError::IoThreads)?;
        let resp = self.resp.take().expect("a BoundNode runs once");
        let mut tasks = std::mem::take(&mut self.tasks);
        node.set_ready();
        tasks.push(tokio::spawn(accept_loop(node.clone(), resp, io.clone())));
        tasks.push(tokio::spawn(maintenance_loop(node.clone())));
        Ok(NodeHandle { node, resp_addr: self.resp_addr, admin_addr: self.admin_addr, tasks, io })
    }
}

impl Drop for BoundNode {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl NodeHandle {
    pub fn resp_addr(&self) -> SocketAddr {
        self.resp_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Drain (stop accepting, refuse writes, wait for in-flight commands), write a verified
    /// snapshot, and stop every task of the node.
    pub async fn shutdown(self) -> Result<SnapshotInfo, SnapshotError> {
        let result = drain(&self.node).await;
        for t in &self.tasks {
            t.abort();
        }
        self.io.stop();
        result
    }

    /// Stops every task at once and closes every connection, without drain or snapshot (a
    /// crash, for tests).
    pub fn abort(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.io.stop();
    }

    /// How many connection threads serve clients.
    pub fn io_threads(&self) -> usize {
        self.io.len()
    }
}

/// Restores the newest valid snapshot into the empty store. Unusable files are logged, counted
/// in `mapcache_snapshot_failures_total{reason}` and moved aside. A node that found snapshots
/// and could use none starts empty, and says so: an ERROR line, `mapcache_snapshots_all_corrupt`
/// 1, and `restore.outcome: all_corrupt` in `/v1/stats` (which the operator turns into a
/// condition and an Event). See docs/operations.md, "Snapshots", for why it serves rather than
/// refuses to start.
fn restore(node: &NodeState) -> Result<(), SnapshotError> {
    let dir = &node.config.data_dir;
    std::fs::create_dir_all(dir)
        .map_err(|source| SnapshotError::Io { path: dir.clone(), source })?;
    let removed = snapshot::remove_temp_files(dir)?;
    if removed > 0 {
        tracing::warn!(removed, "removed temp files of interrupted snapshot writes");
    }
    let started = Instant::now();
    let report = snapshot::restore(dir, &node.store)?;
    // New snapshots must sort after every file found, valid or not.
    node.snapshot_generation.store(report.newest_generation, Ordering::SeqCst);
    for unusable in &report.unusable {
        record_unusable(node, unusable, "snapshot is unusable; skipped (trying an older one)");
    }
    let ms = started.elapsed().as_millis() as u64;
    match report.outcome {
        snapshot::RestoreOutcome::Restored => {
            tracing::info!(dir = %dir.display(), generation = report.generation, keys = report.keys,
                ms, "restored snapshot");
        }
        snapshot::RestoreOutcome::AllCorrupt => {
            node.metrics.snapshots_all_corrupt.set(1);
            tracing::error!(dir = %dir.display(), files = report.unusable.len(),
                moved_to = snapshot::CORRUPT_DIR,
                "EVERY SNAPSHOT IS UNUSABLE: starting EMPTY; the files are kept in the data \
                 directory's corrupt/ for a post-mortem");
        }
        _ => tracing::info!(dir = %dir.display(), "no snapshot; starting empty"),
    }
    *node.restore.lock() = report;
    Ok(())
}

/// Logs an unusable snapshot file and counts it (its reason, and its move aside).
fn record_unusable(node: &NodeState, unusable: &snapshot::Unusable, what: &str) {
    node.metrics.record_snapshot_failure(unusable.reason);
    if unusable.moved_to.is_some() {
        node.metrics.snapshots_moved_aside.inc();
    }
    tracing::error!(file = %unusable.file, generation = unusable.generation,
        error = %unusable.error, moved_to = ?unusable.moved_to, "{what}");
}

async fn accept_loop(node: Arc<NodeState>, listener: TcpListener, io: Arc<IoThreads>) {
    let mut stop = node.stop_accepting.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                // Protected mode, checked as Redis checks it: when the client connects.
                Ok((stream, peer)) if node.protected_mode_refuses(peer.ip()) => {
                    node.metrics.protected_mode_rejections.inc();
                    tracing::debug!(%peer, "refused by protected mode");
                    tokio::spawn(super::auth::deny_protected(stream));
                }
                Ok((stream, peer)) => io.dispatch(stream, peer),
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => {
                tracing::info!("draining: no longer accepting connections");
                return;
            }
        }
    }
}

/// Waits until no connection is executing a command ([`Tasks::executing`](super::tasks::Tasks::executing)), up to `limit`.
/// True when none is. A client that stalls mid-request does not delay the drain, nor leave its
/// snapshot without `after_writes_stopped`.
async fn wait_for_inflight(node: &NodeState, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if node.tasks.executing() == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Writes and verifies a snapshot now. While draining, waits for in-flight commands first so
/// the snapshot is taken after writes stopped.
pub async fn take_snapshot(node: &Arc<NodeState>) -> Result<SnapshotInfo, SnapshotError> {
    // On a task of its own: the caller (an admin request whose client hung up) may be dropped,
    // and the snapshot must still finish and be recorded, with the lock held, so a second
    // snapshot can never write the same generation beside it.
    let owned = node.clone();
    tokio::spawn(async move { take_snapshot_to_the_end(&owned).await })
        .await
        .unwrap_or_else(|join| Err(join_error(node, join)))
}

/// A snapshot or restore task that panicked (or was cancelled), as the error it reports.
fn join_error(node: &NodeState, join: tokio::task::JoinError) -> SnapshotError {
    SnapshotError::Io { path: node.config.data_dir.clone(), source: std::io::Error::other(join) }
}

async fn take_snapshot_to_the_end(node: &Arc<NodeState>) -> Result<SnapshotInfo, SnapshotError> {
    let _serialised = node.snapshot_lock.lock().await;
    let draining = node.is_draining();
    let quiesced = draining && wait_for_inflight(node, node.config.drain_inflight_timeout).await;
    let generation = node.snapshot_generation.load(Ordering::SeqCst) + 1;
    let worker = node.clone();
    let result = tokio::task::spawn_blocking(move || {
        let guard = worker.tasks.register(TaskKind::Snapshot, None);
        guard.task.set_state(TaskState::Executing);
        snapshot::write_verified(&worker.store, &worker.config.data_dir, generation, quiesced)
    })
    .await
    .unwrap_or_else(|join| Err(join_error(node, join)));
    match &result {
        Ok(info) => {
            node.snapshot_generation.store(generation, Ordering::SeqCst);
            *node.last_snapshot.lock() = Some(info.clone());
            for unusable in &info.moved_aside {
                record_unusable(node, unusable, "an older snapshot does not verify; moved aside");
            }
            tracing::info!(path = %info.path, keys = info.keys, bytes = info.bytes,
                ms = info.duration_ms, "snapshot written and verified");
        }
        Err(err) => {
            node.metrics.record_snapshot_failure(err.reason());
            tracing::error!(error = %err, "snapshot failed");
        }
    }
    result
}

/// `POST /v1/drain` and SIGTERM: stop accepting, refuse writes, wait for in-flight commands,
/// then write a verified snapshot.
pub async fn drain(node: &Arc<NodeState>) -> Result<SnapshotInfo, SnapshotError> {
    if node.start_draining() {
        tracing::info!("drain started: readyz 503, writes refused");
    }
    if !wait_for_inflight(node, node.config.drain_inflight_timeout).await {
        tracing::warn!(
            executing = node.tasks.executing(),
            "drain: in-flight commands did not finish in time"
        );
    }
    take_snapshot(node).await
}

/// Starts a compact or rebuild on every shard; the maintenance loop finishes it.
pub fn start_maintenance(
    node: &NodeState,
    kind: MaintenanceKind,
) -> Result<usize, MaintenanceKind> {
    let stats = node.stats(None);
    let mut m = node.maintenance.lock();
    if m.running {
        return Err(m.kind.unwrap_or(kind));
    }
    let shards = node.store.shard_count();
    m.kind = Some(kind);
    m.running = true;
    m.started_at = Some(jiff::Timestamp::now());
    m.finished_at = None;
    m.pending = vec![true; shards];
    m.started = vec![false; shards];
    m.before = Some(MaintenanceFigures {
        keys: stats.keys,
        tombstones: stats.tombstones,
        bytes_allocated: stats.bytes_allocated,
    });
    m.after = None;
    match kind {
        MaintenanceKind::Compact => m.runs_compact += 1,
        MaintenanceKind::Rebuild => m.runs_rebuild += 1,
    }
    node.metrics
        .maintenance_runs
        .get_or_create(&super::metrics::KindLabel { kind: kind.name().into() })
        .inc();
    tracing::info!(kind = kind.name(), shards, "maintenance started");
    Ok(shards)
}

/// How often active expiry samples the shards (Redis's `hz 10`), and how often the maintenance
/// tick runs while it has nothing to do.
const ACTIVE_EXPIRE_PERIOD: Duration = Duration::from_millis(100);

/// How long the maintenance loop sleeps before its next tick: `period` while the last tick had
/// work, else until active expiry is next due (so idling does not slow its cadence), never less
/// than `period`.
fn next_tick_in(idle: bool, period: Duration, since_expire: Duration) -> Duration {
    if idle { ACTIVE_EXPIRE_PERIOD.saturating_sub(since_expire).max(period) } else { period }
}

/// Every tick: start pending compactions/rebuilds on idle shards, advance every evacuation by
/// `maintenance_budget` buckets (so read-mostly shards finish), and run active expiry every 100 ms.
/// Every 100 ms too, INFO's instantaneous rates and memory peak take a sample (Redis's cron
/// does), on the tick's own wake-ups.
async fn maintenance_loop(node: Arc<NodeState>) {
    let guard = node.tasks.register(TaskKind::Maintenance, None);
    let task = guard.task.clone();
    let period = node.config.maintenance_interval;
    let mut last_expire = Instant::now();
    let mut last_sample = Instant::now();
    let mut memory = TickMemory::default();
    let mut idle = false;
    loop {
        // With nothing to do, tick at the active-expiry cadence instead of every `period`: each
        // tick wakes a runtime thread, and on a node whose CPUs are busy serving (or running
        // the client beside it) every wake-up preempts one of them. A grow that starts meanwhile
        // is advanced by its own writes, and a compaction or rebuild asked for is a long job: the
        // tick joins in within the active-expiry period (100 ms).
        tokio::time::sleep(next_tick_in(idle, period, last_expire.elapsed())).await;
        let expire = last_expire.elapsed() >= ACTIVE_EXPIRE_PERIOD;
        if expire {
            last_expire = Instant::now();
        }
        if last_sample.elapsed() >= ACTIVE_EXPIRE_PERIOD {
            last_sample = Instant::now();
            node.sample_rates();
        }
        // Shard locks are blocking locks: take them on the blocking pool, never on a runtime
        // worker, so a long-held shard cannot stall the admin API or other connections.
        // Active expiry has nothing to do before any key has had a TTL.
        let expire = expire && node.store.ttl_keys_unlocked() > 0;
        idle = !expire
            && !node.maintenance.lock().running
            && !(0..node.store.shard_count()).any(|i| node.store.is_busy_unlocked(i));
        if idle {
            continue;
        }
        let (worker, worker_task) = (node.clone(), task.clone());
        let ran = tokio::task::spawn_blocking(move || {
            worker_task.set_state(TaskState::Executing);
            maintenance_tick(&worker, &worker_task, &mut memory);
            if expire {
                for shard in 0..worker.store.shard_count() {
                    worker.store.active_expire_shard(
                        shard,
                        Duration::from_millis(1),
                        Some(&worker_task),
                    );
                }
            }
            worker_task.set_state(TaskState::Idle);
            memory
        })
        .await;
        memory = match ran {
            Ok(memory) => memory,
            Err(err) => {
                tracing::error!(error = %err, "maintenance tick failed");
                TickMemory::default()
            }
        };
    }
}

/// What the maintenance tick saw of each shard's evacuation after its own last step.
#[derive(Debug, Default)]
struct TickMemory {
    /// `Store::evacuated_unlocked` per shard right after this tick's last step on it.
    evacuated_after_step: Vec<usize>,
}

/// Runs the background maintenance tick by hand, one tick per call, on the caller's thread. A
/// test starts the node with a long `maintenance_interval` (so its own loop never ticks) and
/// steps compactions, rebuilds and grows exactly between two client commands.
#[derive(Debug)]
pub struct MaintenanceStepper {
    memory: TickMemory,
    /// The tick's task in the task dump, as the background loop's.
    guard: super::tasks::TaskGuard,
}

impl MaintenanceStepper {
    pub fn new(node: &NodeState) -> Self {
        Self {
            memory: TickMemory::default(),
            guard: node.tasks.register(TaskKind::Maintenance, None),
        }
    }

    /// One tick: starts pending maintenance on idle shards and advances every evacuation the
    /// writes are not advancing by `maintenance_budget` buckets (no active expiry).
    pub fn tick(&mut self, node: &NodeState) {
        maintenance_tick(node, &self.guard.task, &mut self.memory);
    }
}

fn maintenance_tick(node: &NodeState, task: &super::tasks::Task, memory: &mut TickMemory) {
    let (kind, mut pending) = {
        let m = node.maintenance.lock();
        (m.kind, if m.running { m.pending.clone() } else { vec![false; node.store.shard_count()] })
    };
    memory.evacuated_after_step.resize(node.store.shard_count(), usize::MAX);
    let mut all_idle = true;
    for (shard, pending) in pending.iter_mut().enumerate() {
        // An idle shard with nothing to start is not locked: every lock taken here is one a
        // connection may have to wait for.
        if !*pending && !node.store.is_busy_unlocked(shard) {
            continue;
        }
        // A shard whose evacuation moved since our last step is being written to, and every
        // write evacuates (growWork): it needs no help, and stepping it would only compete with
        // those writes for its lock.
        let evacuated = node.store.evacuated_unlocked(shard);
        if !*pending && evacuated != memory.evacuated_after_step[shard] {
            memory.evacuated_after_step[shard] = evacuated;
            all_idle = false;
            continue;
        }
        // Never wait for a lock here: a connection holds it, and a connection that then waited
        // behind this tick (parked, then rescheduled on a busy machine) would stall every client
        // of its thread for milliseconds. A busy shard is simply tried again next tick.
        let Some(mut guard) = node.store.try_lock(shard, Some(task)) else {
            all_idle = false;
            continue;
        };
        guard.tend_ttl_index(node.config.maintenance_budget);
        if *pending && guard.map().phase() == Phase::Idle {
            // An operator's compaction or rebuild reaches into the shard's hashes and sets too.
            guard.rebuild_collections();
        }
        guard.tend_collections(node.config.maintenance_budget);
        let map = guard.map_mut();
        if *pending && map.phase() == Phase::Idle {
            let started = match kind {
                Some(MaintenanceKind::Rebuild) => map.rebuild(),
                _ => map.compact(),
            };
            *pending = !started;
        }
        if map.phase() != Phase::Idle {
            map.maintenance_step(node.config.maintenance_budget);
        }
        all_idle &= map.phase() == Phase::Idle;
        drop(guard);
        memory.evacuated_after_step[shard] = node.store.evacuated_unlocked(shard);
    }
    let mut m = node.maintenance.lock();
    if !m.running {
        return;
    }
    for (shard, was_pending) in pending.iter().enumerate() {
        if !was_pending && m.pending[shard] {
            m.pending[shard] = false;
            m.started[shard] = true;
        }
    }
    if all_idle && m.pending.iter().all(|p| !p) {
        drop(m);
        let stats = node.stats(Some(task));
        let mut m = node.maintenance.lock();
        m.running = false;
        m.finished_at = Some(jiff::Timestamp::now());
        m.after = Some(MaintenanceFigures {
            keys: stats.keys,
            tombstones: stats.tombstones,
            bytes_allocated: stats.bytes_allocated,
        });
        tracing::info!(
            kind = m.kind.map_or("none", |k| k.name()),
            tombstones = stats.tombstones,
            bytes_allocated = stats.bytes_allocated,
            "maintenance finished"
        );
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::server::store::Entry;

    /// A one-shard node whose shard has just started doubling from 512 buckets (so hundreds of
    /// old buckets are left to evacuate).
    fn node_with_a_growing_shard() -> NodeState {
        let config = Config { shards: 1, ..Config::for_test(std::env::temp_dir()) };
        let node = NodeState::new(config);
        {
            let mut guard = node.store.lock(0, None);
            for i in 0u64.. {
                guard.insert(Bytes::from(i.to_string()), Entry::new(Bytes::from("v"), 0, 0));
                let stats = guard.map().stats();
                if stats.phase == Phase::Growing && stats.b == 10 {
                    assert!(stats.to_evacuate > 400, "{stats:?}");
                    break;
                }
            }
        }
        node
    }

    #[test]
    fn the_tick_leaves_shards_that_writes_are_evacuating_to_the_writes() {
        let node = node_with_a_growing_shard();
        let task = node.tasks.register(TaskKind::Maintenance, None);
        let mut memory = TickMemory::default();
        let evacuated = || node.store.evacuated_unlocked(0);
        let start = evacuated();
        maintenance_tick(&node, &task.task, &mut memory); // first sight: only noted
        assert_eq!(evacuated(), start);
        maintenance_tick(&node, &task.task, &mut memory); // nothing moved since: one step
        assert_eq!(evacuated(), start + 64);
        let mut guard = node.store.lock(0, None);
        guard.insert(Bytes::from("a write"), Entry::new(Bytes::from("v"), 0, 0));
        drop(guard);
        let after_write = evacuated();
        assert!(after_write > start + 64, "a write evacuates (growWork)");
        maintenance_tick(&node, &task.task, &mut memory); // the write moved it: left alone
        assert_eq!(evacuated(), after_write);
        maintenance_tick(&node, &task.task, &mut memory); // quiet again: a step
        assert_eq!(evacuated(), after_write + 64);
    }

    #[test]
    fn an_idle_loop_ticks_when_active_expiry_is_due_and_a_busy_one_every_period() {
        let (ms, period) = (Duration::from_millis, Duration::from_millis(10));
        assert_eq!(next_tick_in(false, period, ms(30)), period);
        assert_eq!(next_tick_in(true, period, ms(30)), ms(70));
        assert_eq!(next_tick_in(true, period, ms(0)), ms(100));
        assert_eq!(next_tick_in(true, period, ms(95)), period, "never sooner than the period");
        assert_eq!(next_tick_in(true, period, ms(250)), period);
        let hour = Duration::from_secs(3600); // tests that step by hand: the loop stays asleep
        assert_eq!(next_tick_in(true, hour, ms(0)), hour);
        assert_eq!(next_tick_in(false, hour, ms(0)), hour);
    }

    #[test]
    fn the_tick_never_waits_for_a_shard_lock_a_connection_holds() {
        let node = node_with_a_growing_shard();
        let task = node.tasks.register(TaskKind::Maintenance, None);
        let mut memory = TickMemory::default();
        maintenance_tick(&node, &task.task, &mut memory); // noted; the next tick would step
        let start = node.store.evacuated_unlocked(0);
        let held = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            s.spawn(|| {
                let _guard = node.store.lock(0, None);
                held.wait();
                // Holds the lock a while (no assertion on time): a tick that waited for it
                // would get it only after this and count a contention.
                std::thread::sleep(Duration::from_millis(200));
            });
            held.wait();
            maintenance_tick(&node, &task.task, &mut memory);
        });
        assert_eq!(node.store.lock_counters()[0].contentions, 0);
        assert_eq!(node.store.evacuated_unlocked(0), start, "skipped, to be tried next tick");
        maintenance_tick(&node, &task.task, &mut memory);
        assert_eq!(node.store.evacuated_unlocked(0), start + 64);
    }
}
