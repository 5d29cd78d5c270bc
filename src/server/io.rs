//! Connection threads. Client connections do not run on the node's multi-threaded runtime: each
//! accepted socket is handed to one of `--io-threads` threads, round-robin, and lives there until
//! it closes. Every connection thread runs its own single-threaded tokio runtime, so a
//! connection's reads, command execution and writes stay on one thread and a readable socket
//! wakes the thread that polls it: no work stealing and no cross-thread wakeups per request (the
//! multi-threaded scheduler spent more time in futex and eventfd wakeups than in commands; see
//! docs/BENCHMARKS.md). Shards are shared by all threads behind their locks, as before.
//!
//! A busy connection thread spins briefly before it sleeps (`--io-spin-us`, [`IdleSpin`]).
//!
//! The accept loop, the admin API and background maintenance stay on the main runtime.
//! Connection threads outlive the accept loop (a draining node keeps serving the clients it has)
//! and stop when the node stops ([`IoThreads::stop`]): their runtimes are dropped, which cancels
//! the connection tasks and closes their sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::conn;
use super::spin::IdleSpin;
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
            let spin = Arc::new(IdleSpin::new(node.config.io_spin, node.metrics.io_spin(i))?);
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
