//! The task registry behind `/v1/debug/tasks`: every connection, the maintenance task and
//! snapshot writers, with what each is doing and which shard lock it holds or waits for.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU16, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;

use futures::task::AtomicWaker;
use parking_lot::Mutex;
use serde::Serialize;

/// What a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskKind {
    Connection,
    Maintenance,
    Snapshot,
}

/// What a task is doing now. A connection whose state is not `Idle` is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TaskState {
    Idle = 0,
    Reading = 1,
    Executing = 2,
    WaitingLock = 3,
    Writing = 4,
}

impl TaskState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => TaskState::Reading,
            2 => TaskState::Executing,
            3 => TaskState::WaitingLock,
            4 => TaskState::Writing,
            _ => TaskState::Idle,
        }
    }
}

/// No lock / no command, in the atomics below.
const NONE: i64 = -1;
const NO_COMMAND: u16 = u16::MAX;

/// One live task. Updated with atomics on the hot path; read by the task dump.
#[derive(Debug)]
pub struct Task {
    /// Stable id, also what the lock profile names as holder/waiter.
    pub id: u64,
    pub kind: TaskKind,
    /// The client's address (connections only).
    pub peer: Option<SocketAddr>,
    /// The node's address the client connected to (`laddr=`; connections only).
    pub local: Option<SocketAddr>,
    /// `CLIENT KILL` named this connection: it runs nothing more and closes.
    killed: AtomicBool,
    /// The connection's waker while it waits in a read or a write, so a kill wakes it: an
    /// atomic swap per wait, where a `Notify` took a lock to enqueue and another to dequeue.
    kill_waker: AtomicWaker,
    /// `CLIENT SETNAME`.
    pub name: Mutex<Option<String>>,
    /// `CLIENT SETINFO`: the client library's name and version, shown by `CLIENT LIST`.
    pub lib: Mutex<ClientLib>,
    /// The RESP version the client chose with `HELLO` (2 until it does).
    resp: AtomicU8,
    /// The modes `CLIENT NO-EVICT` and `CLIENT NO-TOUCH` set ([`ClientFlags`]), for `CLIENT
    /// LIST`'s `flags=`.
    flags: AtomicU8,
    /// When the task started (for `age_ms`).
    pub started: Instant,
    state: AtomicU8,
    /// Index into the command table of the command being executed, or `NO_COMMAND`.
    command: AtomicU16,
    /// The command table index of the last command the client ran (the one running included),
    /// or `NO_COMMAND`: `CLIENT LIST`'s `cmd=`.
    last_command: AtomicU16,
    /// Milliseconds since `started` at the last state change (for `idle_ms`).
    last_change_ms: AtomicU64,
    /// Bytes of a request still arriving (read, not yet a whole command), as of the connection's
    /// last batch: `CLIENT LIST`'s `qbuf=`, so that a client near `--client-query-buffer-limit`
    /// can be found.
    query_buffer: AtomicU64,
    /// The free room after them in the connection's input buffer then: `qbuf-free=`.
    query_buffer_free: AtomicU64,
    /// Bytes of replies the socket has not taken yet: `CLIENT LIST`'s `omem=`, INFO's
    /// `client_recent_max_output_buffer`, what `client-output-buffer-limit` and
    /// `--max-pending-reply-bytes` bound.
    output_buffer: AtomicU64,
    holds_lock: AtomicI64,
    waits_lock: AtomicI64,
}

/// Modes a client set, as `CLIENT LIST` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientFlags {
    /// `CLIENT NO-EVICT on`: `e`.
    pub no_evict: bool,
    /// `CLIENT NO-TOUCH on`: `T`.
    pub no_touch: bool,
}

impl ClientFlags {
    /// `CLIENT LIST`'s `flags=`, in Redis's order (`N` for none).
    pub fn letters(self) -> &'static str {
        match (self.no_evict, self.no_touch) {
            (false, false) => "N",
            (true, false) => "e",
            (false, true) => "T",
            (true, true) => "eT",
        }
    }
}

/// What `CLIENT SETINFO` recorded (empty: not set).
#[derive(Debug, Clone, Default)]
pub struct ClientLib {
    /// `LIB-NAME`: the client library's name, as `CLIENT LIST`'s `lib-name=` shows it.
    pub name: String,
    /// `LIB-VER`: the client library's version (`lib-ver=`).
    pub ver: String,
}

impl Task {
    /// The RESP version of the connection (2, or 3 after `HELLO 3`), for `CLIENT LIST`.
    pub fn resp(&self) -> u8 {
        self.resp.load(Ordering::Relaxed)
    }

    /// Records the RESP version `HELLO` switched the connection to.
    pub fn set_resp(&self, version: u8) {
        self.resp.store(version, Ordering::Relaxed);
    }

    pub fn client_flags(&self) -> ClientFlags {
        let bits = self.flags.load(Ordering::Relaxed);
        ClientFlags { no_evict: bits & 1 != 0, no_touch: bits & 2 != 0 }
    }

    pub fn set_client_flags(&self, flags: ClientFlags) {
        let bits = u8::from(flags.no_evict) | u8::from(flags.no_touch) << 1;
        self.flags.store(bits, Ordering::Relaxed);
    }

    pub fn state(&self) -> TaskState {
        TaskState::from_u8(self.state.load(Ordering::SeqCst))
    }

    pub fn set_state(&self, state: TaskState) {
        self.state.store(state as u8, Ordering::SeqCst);
        self.last_change_ms.store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Marks the command about to run: `index` into the command table, `None` for a name the
    /// table does not know. It is also the client's last command from now on, unknown included
    /// (Redis's `c->lastcmd`, null after an unknown command).
    pub fn set_command(&self, index: Option<u16>) {
        let index = index.unwrap_or(NO_COMMAND);
        self.command.store(index, Ordering::Relaxed);
        self.last_command.store(index, Ordering::Relaxed);
    }

    /// No command is running any more (the last one stays the client's last command).
    pub fn clear_command(&self) {
        self.command.store(NO_COMMAND, Ordering::Relaxed);
    }

    pub fn command(&self) -> Option<u16> {
        match self.command.load(Ordering::Relaxed) {
            NO_COMMAND => None,
            i => Some(i),
        }
    }

    /// The last command the client ran, or is running (Redis's `c->lastcmd`).
    pub fn last_command(&self) -> Option<u16> {
        match self.last_command.load(Ordering::Relaxed) {
            NO_COMMAND => None,
            i => Some(i),
        }
    }

    pub fn set_holds_lock(&self, shard: Option<usize>) {
        self.holds_lock.store(shard.map_or(NONE, |s| s as i64), Ordering::SeqCst);
    }

    pub fn set_waits_lock(&self, shard: Option<usize>) {
        self.waits_lock.store(shard.map_or(NONE, |s| s as i64), Ordering::SeqCst);
    }

    pub fn holds_lock(&self) -> Option<usize> {
        usize::try_from(self.holds_lock.load(Ordering::SeqCst)).ok()
    }

    pub fn waits_lock(&self) -> Option<usize> {
        usize::try_from(self.waits_lock.load(Ordering::SeqCst)).ok()
    }

    /// `CLIENT KILL`: the connection runs no command after the one it may be running now (whose
    /// reply is lost), leaves any read or write it is waiting in, and closes.
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_waker.wake();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// Completes once the task is killed (at once if it was before). The flag is read again
    /// after the waker is registered, so a kill between the two is not missed.
    pub fn killed(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.killed.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            self.kill_waker.register(cx.waker());
            if self.killed.load(Ordering::SeqCst) { Poll::Ready(()) } else { Poll::Pending }
        })
    }

    /// Records the connection's input buffer after a read's requests were parsed: unparsed
    /// bytes and free room.
    pub fn set_query_buffer(&self, unparsed: usize, free: usize) {
        self.query_buffer.store(unparsed as u64, Ordering::Relaxed);
        self.query_buffer_free.store(free as u64, Ordering::Relaxed);
    }

    /// Records the replies waiting for the socket.
    pub fn set_output_buffer(&self, pending: usize) {
        self.output_buffer.store(pending as u64, Ordering::Relaxed);
    }

    /// Bytes of replies waiting for the socket; see `set_output_buffer`.
    pub fn output_buffer(&self) -> u64 {
        self.output_buffer.load(Ordering::Relaxed)
    }

    /// (unparsed bytes, free room) of the input buffer; see `set_query_buffer`.
    pub fn query_buffer(&self) -> (u64, u64) {
        (self.query_buffer.load(Ordering::Relaxed), self.query_buffer_free.load(Ordering::Relaxed))
    }

    pub fn idle_ms(&self) -> u64 {
        let age = self.started.elapsed().as_millis() as u64;
        age.saturating_sub(self.last_change_ms.load(Ordering::Relaxed))
    }
}

/// All live tasks, plus the node-wide activity clock the checklist's quiet period reads.
#[derive(Debug)]
pub struct Tasks {
    next_id: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<Task>>>,
    /// When the node started; activity times are measured from here.
    epoch: Instant,
    /// Milliseconds since `epoch` of the last command from any client (0 = never).
    last_client_activity_ms: AtomicU64,
}

impl Default for Tasks {
    fn default() -> Self {
        Self {
            next_id: AtomicU64::new(1),
            live: Mutex::new(BTreeMap::new()),
            epoch: Instant::now(),
            last_client_activity_ms: AtomicU64::new(0),
        }
    }
}

/// Removes the task from the registry when dropped.
#[derive(Debug)]
pub struct TaskGuard {
    pub task: Arc<Task>,
    tasks: Arc<Tasks>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.tasks.live.lock().remove(&self.task.id);
    }
}

impl Tasks {
    pub fn register(self: &Arc<Self>, kind: TaskKind, peer: Option<SocketAddr>) -> TaskGuard {
        self.register_at(kind, peer, None)
    }

    /// A client connection from `peer` to the node's `local` address.
    pub fn register_connection(
        self: &Arc<Self>,
        peer: SocketAddr,
        local: Option<SocketAddr>,
    ) -> TaskGuard {
        self.register_at(TaskKind::Connection, Some(peer), local)
    }

    fn register_at(
        self: &Arc<Self>,
        kind: TaskKind,
        peer: Option<SocketAddr>,
        local: Option<SocketAddr>,
    ) -> TaskGuard {
        let task = Arc::new(Task {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            kind,
            peer,
            local,
            killed: AtomicBool::new(false),
            kill_waker: AtomicWaker::new(),
            name: Mutex::new(None),
            lib: Mutex::new(ClientLib::default()),
            resp: AtomicU8::new(2),
            flags: AtomicU8::new(0),
            started: Instant::now(),
            state: AtomicU8::new(TaskState::Idle as u8),
            command: AtomicU16::new(NO_COMMAND),
            last_command: AtomicU16::new(NO_COMMAND),
            last_change_ms: AtomicU64::new(0),
            query_buffer: AtomicU64::new(0),
            query_buffer_free: AtomicU64::new(0),
            output_buffer: AtomicU64::new(0),
            holds_lock: AtomicI64::new(NONE),
            waits_lock: AtomicI64::new(NONE),
        });
        self.live.lock().insert(task.id, task.clone());
        TaskGuard { task, tasks: self.clone() }
    }

    pub fn snapshot(&self) -> Vec<Arc<Task>> {
        self.live.lock().values().cloned().collect()
    }

    pub fn get(&self, id: u64) -> Option<Arc<Task>> {
        self.live.lock().get(&id).cloned()
    }

    /// Records a client command now.
    pub fn touch_client_activity(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.last_client_activity_ms.store(ms.max(1), Ordering::Relaxed);
    }

    /// Milliseconds since the last client command; since start when there was none.
    pub fn last_client_activity_ms_ago(&self) -> u64 {
        let now = self.epoch.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_client_activity_ms.load(Ordering::Relaxed))
    }

    pub fn connections(&self) -> usize {
        self.live.lock().values().filter(|t| t.kind == TaskKind::Connection).count()
    }

    /// Connections running a command now: executing it or waiting for a shard lock for it.
    /// What drain waits for and the checklist's `no-inflight` item requires to be zero: a
    /// connection only reading a request (a frame half received) or only writing replies runs
    /// nothing, and what it runs after draining began is refused if it writes (a connection
    /// marks itself executing before it checks for draining).
    pub fn executing(&self) -> usize {
        self.count_connections(|s| matches!(s, TaskState::Executing | TaskState::WaitingLock))
    }

    /// Connections not idle: commands being read, executed or answered.
    pub fn inflight(&self) -> usize {
        self.count_connections(|s| s != TaskState::Idle)
    }

    /// Connections whose state passes `counted`.
    fn count_connections(&self, counted: impl Fn(TaskState) -> bool) -> usize {
        let live = self.live.lock();
        live.values().filter(|t| t.kind == TaskKind::Connection && counted(t.state())).count()
    }
}
