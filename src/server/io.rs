//! Connection threads. Client connections do not run on the node's multi-threaded runtime: each
//! accepted socket is handed to one of `--io-threads` threads, round-robin, and lives there until
//! it closes. Every connection thread runs its own single-threaded tokio runtime, so a
//! connection's reads, command execution and writes stay on one thread and a readable socket
//! wakes the thread that polls it: no work stealing and no cross-thread wakeups per request (the
//! multi-threaded scheduler spent more time in futex and eventfd wakeups than in commands; see
//! docs/BENCHMARKS.md). Shards are shared by all threads behind their locks, as before.
//!
//! Before a connection thread sleeps it may spin for a short while (`--io-spin-us`), polling its
//! own sockets, so that a request arriving a few microseconds later finds it awake: the client's
//! send then only queues data instead of waking a sleeping thread (on a VM an inter-processor
//! interrupt), and the reply leaves without the wake-up delay. The spin is gated: a thread spins
//! only while it is busy at least half of the time and its last idle gap was within the limit,
//! so a lightly loaded node sleeps at once and spends no CPU on it ([`IdleSpin`], [`SpinGate`];
//! docs/operations.md, "Connection threads").
//!
//! The accept loop, the admin API and background maintenance stay on the main runtime.
//! Connection threads outlive the accept loop (a draining node keeps serving the clients it has)
//! and stop when the node stops ([`IoThreads::stop`]): their runtimes are dropped, which cancels
//! the connection tasks and closes their sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::conn;
use super::metrics::SpinCounters;
use super::state::NodeState;

type Handoff = (std::net::TcpStream, SocketAddr);

/// The connection threads of one node.
#[derive(Debug)]
pub struct IoThreads {
    senders: Vec<mpsc::UnboundedSender<Handoff>>,
    next: AtomicUsize,
    stop: watch::Sender<bool>,
}

impl IoThreads {
    /// Starts `count` connection threads (at least one) serving `node`.
    pub fn start(node: &Arc<NodeState>, count: usize) -> std::io::Result<Arc<Self>> {
        let (stop, _) = watch::channel(false);
        let mut senders = Vec::with_capacity(count.max(1));
        for i in 0..count.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let spin = Arc::new(IdleSpin::new(node.config.io_spin, node.metrics.io_spin.clone())?);
            let (park, unpark) = (spin.clone(), spin.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(move || park.before_park())
                .on_thread_unpark(move || unpark.after_unpark())
                .build()?;
            let (node, stop) = (node.clone(), stop.subscribe());
            std::thread::Builder::new()
                .name(format!("mapcache-io-{i}"))
                .spawn(move || runtime.block_on(run(node, rx, stop, spin)))?;
            senders.push(tx);
        }
        Ok(Arc::new(Self { senders, next: AtomicUsize::new(0), stop }))
    }

    pub fn len(&self) -> usize {
        self.senders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.senders.is_empty()
    }

    /// Hands an accepted connection to the next thread. A socket that cannot be moved off the
    /// accepting runtime is closed with a warning; the client sees the connection drop.
    pub fn dispatch(&self, stream: TcpStream, peer: SocketAddr) {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!(%peer, error = %err, "cannot hand the connection to a thread");
                return;
            }
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.senders.len();
        if self.senders[i].send((stream, peer)).is_err() {
            tracing::warn!(%peer, "connection thread stopped; closing the connection");
        }
    }

    /// Stops every thread: its open connections are closed.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// One connection thread: takes handed-off sockets until the node stops.
async fn run(
    node: Arc<NodeState>,
    mut incoming: mpsc::UnboundedReceiver<Handoff>,
    mut stop: watch::Receiver<bool>,
    spin: Arc<IdleSpin>,
) {
    let mut accepting = true;
    loop {
        tokio::select! {
            handoff = incoming.recv(), if accepting => match handoff {
                Some((stream, peer)) => {
                    // Without the spin the connection is served all the same, only woken
                    // from sleep more often.
                    if let Err(err) = spin.watch(&stream) {
                        tracing::debug!(%peer, error = %err, "connection not in the idle spin's set");
                    }
                    match TcpStream::from_std(stream) {
                        Ok(stream) => {
                            tokio::spawn(conn::serve(node.clone(), stream, peer));
                        }
                        Err(err) => tracing::warn!(%peer, error = %err, "cannot register the connection"),
                    }
                }
                // Nothing more to take; the open connections are served until the node stops.
                None => accepting = false,
            },
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// A connection thread's spin before it sleeps.
///
/// tokio calls [`IdleSpin::before_park`] when the thread has no task to run and is about to
/// block in `epoll_wait`. If [`SpinGate`] says the thread is busy, it polls a level-triggered
/// epoll set of its own sockets without blocking until one is readable or the limit has passed,
/// then lets tokio park (which returns at once when a socket is readable). Work that reaches
/// the thread another way (a new connection, a timer, a wake from another thread) waits for the
/// end of the spin at most; tokio checks for it before it blocks.
///
/// Closing a socket removes it from the set (the kernel drops an epoll registration when the
/// last descriptor of the file closes), so sockets are only ever added.
#[derive(Debug)]
pub(crate) struct IdleSpin {
    #[cfg(target_os = "linux")]
    epoll: rustix::fd::OwnedFd,
    limit: Duration,
    epoch: Instant,
    /// Touched by the connection thread only (tokio's park hooks must be `Sync`).
    gate: parking_lot::Mutex<SpinGate>,
    counters: SpinCounters,
}

impl IdleSpin {
    /// A spin of at most `limit` (zero: never spin; off where there is no epoll).
    pub(crate) fn new(limit: Duration, counters: SpinCounters) -> std::io::Result<Self> {
        let limit = if cfg!(target_os = "linux") { limit } else { Duration::ZERO };
        Ok(Self {
            #[cfg(target_os = "linux")]
            epoll: rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)?,
            limit,
            epoch: Instant::now(),
            gate: parking_lot::Mutex::new(SpinGate::new(limit)),
            counters,
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Adds a socket of this thread to the set the spin polls.
    pub(crate) fn watch(&self, stream: &std::net::TcpStream) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        {
            use rustix::event::epoll;
            epoll::add(&self.epoll, stream, epoll::EventData::new_u64(0), epoll::EventFlags::IN)?;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = stream;
        Ok(())
    }

    /// Whether a watched socket is readable (or closed, or failed) right now.
    fn readable(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            use rustix::event::{Timespec, epoll};
            let mut events = [std::mem::MaybeUninit::<epoll::Event>::uninit(); 1];
            let now = Timespec { tv_sec: 0, tv_nsec: 0 };
            // An error (EINTR) counts as readable: stop spinning and let tokio park.
            epoll::wait(&self.epoll, &mut events, Some(&now))
                .map_or(true, |(ready, _)| !ready.is_empty())
        }
        #[cfg(not(target_os = "linux"))]
        true
    }

    /// tokio's `on_thread_park`: spins while [`SpinGate`] allows it.
    pub(crate) fn before_park(&self) {
        let start = self.now();
        if !self.gate.lock().going_idle(start) {
            return;
        }
        let limit = self.limit.as_nanos() as u64;
        let found = loop {
            if self.readable() {
                break true;
            }
            if self.now() - start >= limit {
                break false;
            }
            std::hint::spin_loop();
        };
        self.counters.record(found, Duration::from_nanos(self.now() - start));
    }

    /// tokio's `on_thread_unpark`.
    pub(crate) fn after_unpark(&self) {
        self.gate.lock().woke(self.now());
    }
}

/// When a connection thread spins before it sleeps: only while it is busy at least half of the
/// time, and only after an idle period no longer than the spin limit.
///
/// Busy and idle time (idle includes spinning) are summed over the last few milliseconds, both
/// halved whenever together they pass [`SpinGate::WINDOW_NS`]. A thread at half load or more
/// pays for a wake-up per gap between requests, which is what the spin saves, and spinning can
/// at most double its CPU time. Below half load the thread sleeps at once, so a lightly loaded
/// node spends no CPU on spinning; the last-gap condition stops it spinning right after a pause.
#[derive(Debug)]
pub(crate) struct SpinGate {
    limit_ns: u64,
    /// When the thread last went idle or woke, in nanoseconds on the caller's clock.
    mark: u64,
    busy_ns: u64,
    idle_ns: u64,
    last_idle_ns: u64,
}

impl SpinGate {
    const WINDOW_NS: u64 = 2_000_000;

    pub(crate) fn new(limit: Duration) -> Self {
        Self { limit_ns: limit.as_nanos() as u64, mark: 0, busy_ns: 0, idle_ns: 0, last_idle_ns: 0 }
    }

    fn decay(&mut self) {
        if self.busy_ns + self.idle_ns > Self::WINDOW_NS {
            self.busy_ns /= 2;
            self.idle_ns /= 2;
        }
    }

    /// The thread goes idle at `now`; returns whether it should spin first.
    pub(crate) fn going_idle(&mut self, now: u64) -> bool {
        self.busy_ns += now.saturating_sub(self.mark);
        self.mark = now;
        self.decay();
        self.limit_ns > 0 && self.last_idle_ns <= self.limit_ns && self.busy_ns >= self.idle_ns
    }

    /// The thread woke at `now` (after a spin, a sleep, or both).
    pub(crate) fn woke(&mut self, now: u64) {
        self.last_idle_ns = now.saturating_sub(self.mark);
        self.idle_ns += self.last_idle_ns;
        self.mark = now;
        self.decay();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: u64 = 1_000;

    /// Runs `cycles` of `busy` then `idle` microseconds through a gate and returns how many of
    /// the last 100 idle periods it would have spun in.
    fn spins(gate: &mut SpinGate, busy: u64, idle: u64, cycles: usize) -> usize {
        let mut now = gate.mark;
        let mut spun = 0;
        for cycle in 0..cycles {
            now += busy * US;
            if gate.going_idle(now) && cycle >= cycles - 100 {
                spun += 1;
            }
            now += idle * US;
            gate.woke(now);
        }
        spun
    }

    #[test]
    fn the_gate_spins_only_for_a_thread_busy_at_least_half_of_the_time() {
        let limit = Duration::from_micros(50);
        // 70k requests a second at 10 us each: busy 70%, gaps of 4 us.
        assert_eq!(spins(&mut SpinGate::new(limit), 10, 4, 1_000), 100);
        // Busy 60% with gaps up to the limit: still spins.
        assert_eq!(spins(&mut SpinGate::new(limit), 60, 40, 1_000), 100);
        // 20k requests a second at 10 us each: busy 20%, gaps of 40 us (under the limit).
        assert_eq!(spins(&mut SpinGate::new(limit), 10, 40, 1_000), 0);
        // Busy 90% but each gap is longer than the limit: a spin would time out every time.
        assert_eq!(spins(&mut SpinGate::new(limit), 900, 100, 1_000), 0);
        // A limit of zero never spins.
        assert_eq!(spins(&mut SpinGate::new(Duration::ZERO), 10, 1, 1_000), 0);
    }

    #[test]
    fn the_gate_closes_after_a_pause_and_reopens_under_load() {
        let mut gate = SpinGate::new(Duration::from_micros(50));
        assert_eq!(spins(&mut gate, 10, 4, 1_000), 100);
        // A 5 ms pause: the first idle period after it is over the limit, so no spin, and the
        // pause outweighs the busy time until the window has decayed it.
        let mut now = gate.mark + 5_000 * US;
        gate.woke(now);
        now += 10 * US;
        assert!(!gate.going_idle(now));
        gate.woke(now + 4 * US);
        // Busy 70% again but the pause still outweighs it: no spin for the next few cycles.
        assert!(!gate.going_idle(gate.mark + 10 * US));
        gate.woke(gate.mark + 4 * US);
        // Back under steady load, the gate opens again.
        assert_eq!(spins(&mut gate, 10, 4, 1_000), 100);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_spin_ends_when_a_watched_socket_becomes_readable_or_at_the_limit() {
        use std::io::{Read, Write};
        let counters = super::super::metrics::SpinCounters::for_test();
        let spin = IdleSpin::new(Duration::from_millis(20), counters.clone()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        spin.watch(&server).unwrap();
        assert!(!spin.readable());
        client.write_all(b"PING\r\n").unwrap();
        // Level-triggered: readable until the bytes are read, however often it is asked.
        while !spin.readable() {}
        assert!(spin.readable());
        // A busy thread (no idle time yet) spins, and stops at once for the waiting bytes.
        spin.before_park();
        spin.after_unpark();
        assert_eq!(counters.counts(), (1, 0));
        let mut buf = [0u8; 6];
        server.read_exact(&mut buf).unwrap();
        assert!(!spin.readable());
        // Nothing to read: a spin runs to its limit and counts as a timeout.
        let start = Instant::now();
        spin.before_park();
        assert!(start.elapsed() >= Duration::from_millis(20));
        spin.after_unpark();
        assert_eq!(counters.counts(), (1, 1));
        // That idle period was longer than the limit: the next one sleeps without a spin.
        spin.before_park();
        spin.after_unpark();
        assert_eq!(counters.counts(), (1, 1));
        // A fresh (busy) thread: the socket's peer closing ends its spin too (the read will
        // see the end of the stream).
        let spin = IdleSpin::new(Duration::from_secs(60), counters.clone()).unwrap();
        spin.watch(&server).unwrap();
        drop(client);
        spin.before_park();
        spin.after_unpark();
        assert_eq!(counters.counts(), (2, 1));
    }
}
