//! The node's side of Lua scripts: the script cache (SCRIPT LOAD, EVALSHA), the thread scripts
//! run on, and how commands wait for a running script (Redis's busy script and `-BUSY`).
//!
//! A script is atomic over the whole keyspace, as in Redis: it runs holding every shard's lock.
//! It does not run on the connection's thread: a connection thread serves many connections, and
//! while a script runs those must still be able to wait, get `-BUSY` once the script has run
//! longer than the busy threshold, and send `SCRIPT KILL`. So a script runs on this node's script
//! thread, and the connection awaits its reply. Before the script takes the locks it raises
//! `pending` and waits until no connection is inside a command (`in_commands`); a connection
//! that finds `pending` raised before it starts a command does not start it: it waits for the
//! script to end (without blocking its thread), or answers `-BUSY` past the threshold. So no
//! connection thread ever blocks on a lock a script holds.
//!
//! The Lua side (the VM, conversions, `redis.call`) is in `commands::scripts`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::resp::Reply;

/// Redis's `busy-reply-threshold` (formerly `lua-time-limit`) default.
pub const DEFAULT_BUSY_THRESHOLD: Duration = Duration::from_secs(5);

/// Redis 7.0's reply to a command sent while a script has run past the busy threshold.
pub const ERR_BUSY: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";

/// Work for the script thread: one script, run while commands are held off (see
/// [`Scripting::submit`]).
pub type Job = Box<dyn FnOnce() + Send>;

/// Scripts run back to back under one hold-off of the commands, when that many are queued:
/// the hold-off's cost (waiting for the commands in flight) is paid once for them, and other
/// clients wait for at most this many short scripts.
const BATCH: usize = 32;

#[derive(Debug)]
pub struct Scripting {
    /// SHA1 (lowercase hex) -> body: every script EVAL ran or SCRIPT LOAD loaded, until SCRIPT
    /// FLUSH.
    scripts: Mutex<HashMap<String, Bytes>>,
    /// Where jobs go; the thread starts with the first script and ends with the node.
    runner: Mutex<Option<mpsc::Sender<Job>>>,
    /// A script waits for the shards or holds them: no command starts.
    pending: AtomicBool,
    /// Connections inside a command now (between `enter` and the end of the command).
    in_commands: AtomicUsize,
    /// When the running script took the shards.
    started: Mutex<Option<Instant>>,
    /// The running script has called a write command (SCRIPT KILL is then refused).
    wrote: AtomicBool,
    /// SCRIPT KILL asked the running script to stop (shared with the Lua VM's hook).
    kill: Arc<AtomicBool>,
    /// Woken when a script ends.
    idle: tokio::sync::Notify,
    busy_threshold: Mutex<Duration>,
}

impl Default for Scripting {
    fn default() -> Self {
        Self {
            scripts: Mutex::default(),
            runner: Mutex::default(),
            pending: AtomicBool::new(false),
            in_commands: AtomicUsize::new(0),
            started: Mutex::new(None),
            wrote: AtomicBool::new(false),
            kill: Arc::new(AtomicBool::new(false)),
            idle: tokio::sync::Notify::new(),
            busy_threshold: Mutex::new(DEFAULT_BUSY_THRESHOLD),
        }
    }
}

/// A connection inside a command; leaves on drop.
#[must_use]
pub struct InCommand<'a>(&'a Scripting);

impl Drop for InCommand<'_> {
    fn drop(&mut self) {
        self.0.in_commands.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Why a connection may not start its command now.
#[derive(Debug, PartialEq, Eq)]
pub enum Blocked {
    /// A script waits for the shards or runs: wait for it.
    Wait,
    /// The running script is past the busy threshold: answer `-BUSY`.
    Busy,
}

impl Scripting {
    pub fn body(&self, sha: &str) -> Option<Bytes> {
        self.scripts.lock().get(sha).cloned()
    }

    pub fn exists(&self, sha: &str) -> bool {
        self.scripts.lock().contains_key(sha)
    }

    pub fn store(&self, sha: String, body: Bytes) {
        self.scripts.lock().entry(sha).or_insert(body);
    }

    pub fn flush(&self) {
        self.scripts.lock().clear();
    }

    pub fn busy_threshold(&self) -> Duration {
        *self.busy_threshold.lock()
    }

    pub fn set_busy_threshold(&self, threshold: Duration) {
        *self.busy_threshold.lock() = threshold;
    }

    /// Enters a command, unless a script waits or runs. `runs_while_busy`: a command that takes
    /// no shard lock and that Redis serves during a busy script (SCRIPT KILL, AUTH, HELLO,
    /// QUIT) enters anyway.
    #[inline]
    pub fn enter(&self, runs_while_busy: bool) -> Result<InCommand<'_>, Blocked> {
        self.in_commands.fetch_add(1, Ordering::SeqCst);
        let entered = InCommand(self);
        if runs_while_busy || !self.pending.load(Ordering::SeqCst) {
            return Ok(entered);
        }
        drop(entered);
        let past = self.started.lock().is_some_and(|t| t.elapsed() >= self.busy_threshold());
        Err(if past { Blocked::Busy } else { Blocked::Wait })
    }

    /// Waits until no script waits or runs, or until the running one passes the busy
    /// threshold, whichever comes first; never blocks the thread.
    pub async fn wait(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.pending.load(Ordering::SeqCst) {
                return;
            }
            let left = match *self.started.lock() {
                Some(t) => self.busy_threshold().saturating_sub(t.elapsed()),
                // Waiting for the commands in flight to finish: moments.
                None => Duration::from_millis(1),
            };
            if left.is_zero() {
                return;
            }
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    /// Runs `job` on the script thread (started on first use), with commands held off
    /// ([`quiesce`](Self::quiesce) before, [`release`](Self::release) after, once for the
    /// scripts queued together, at most [`BATCH`]); the job starts its script with
    /// [`begin_script`](Self::begin_script), takes the locks and sends its own reply.
    pub fn submit(self: &Arc<Self>, job: Job) {
        let mut runner = self.runner.lock();
        let sender = runner.get_or_insert_with(|| {
            let (sender, jobs) = mpsc::channel::<Job>();
            // The thread holds the state weakly: it ends when the node's state is dropped
            // (the sender with it).
            let scripting = Arc::downgrade(self);
            std::thread::Builder::new()
                .name("mapcache-scripts".into())
                .spawn(move || {
                    while let Ok(first) = jobs.recv() {
                        let mut batch = vec![first];
                        while batch.len() < BATCH {
                            match jobs.try_recv() {
                                Ok(job) => batch.push(job),
                                Err(_) => break,
                            }
                        }
                        let Some(scripting) = scripting.upgrade() else {
                            return;
                        };
                        scripting.quiesce();
                        for job in batch {
                            // A job catches a panic of its script itself; one escaping here must
                            // still not leave the commands held off.
                            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err()
                            {
                                tracing::error!("a script job panicked");
                            }
                        }
                        scripting.release();
                    }
                })
                .expect("spawn the script thread");
            sender
        });
        if let Err(mpsc::SendError(job)) = sender.send(job) {
            // The thread died (a panic in a script job): start another for this job.
            *runner = None;
            drop(runner);
            self.submit(job);
        }
    }

    /// On the script thread: stops new commands and waits for those in flight (microseconds:
    /// a command never waits inside), so that taking every shard lock next cannot make a
    /// connection thread block behind a script.
    fn quiesce(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let mut spins = 0u32;
        while self.in_commands.load(Ordering::SeqCst) > 0 {
            if spins < 2_000 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// On the script thread, before each script: the busy clock starts, and SCRIPT KILL and
    /// the write mark are the new script's.
    pub fn begin_script(&self) {
        self.wrote.store(false, Ordering::SeqCst);
        self.kill.store(false, Ordering::SeqCst);
        *self.started.lock() = Some(Instant::now());
    }

    /// On the script thread, after each script and before its reply goes out: no script runs
    /// (commands still wait for the rest of the batch, but are not answered `-BUSY` for the
    /// script that ended).
    pub fn end_script(&self) {
        *self.started.lock() = None;
    }

    /// On the script thread, once the batch's scripts are done: commands may start again.
    fn release(&self) {
        *self.started.lock() = None;
        self.pending.store(false, Ordering::SeqCst);
        self.idle.notify_waiters();
    }

    pub fn note_write(&self) {
        self.wrote.store(true, Ordering::SeqCst);
    }

    /// Whether SCRIPT KILL asked the running script to stop.
    pub fn kill_requested(&self) -> bool {
        self.kill.load(Ordering::SeqCst)
    }

    /// The flag SCRIPT KILL sets, for the Lua VM's instruction hook.
    pub fn kill_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.kill)
    }

    /// SCRIPT KILL, with Redis's replies.
    pub fn kill(&self) -> Reply {
        if self.started.lock().is_none() {
            return Reply::error("NOTBUSY No scripts in execution right now.");
        }
        if self.wrote.load(Ordering::SeqCst) {
            return Reply::error(
                "UNKILLABLE Sorry the script already executed write commands against the dataset. \
                 You can either wait the script termination or kill the server in a hard way \
                 using the SHUTDOWN NOSAVE command.",
            );
        }
        self.kill.store(true, Ordering::SeqCst);
        Reply::ok()
    }
}

/// Shared ownership helper for jobs: the node state they run against.
pub type Node = Arc<super::state::NodeState>;
