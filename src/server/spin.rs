//! A connection thread's spin before it sleeps (`--io-spin-us`).
//!
//! When a connection thread has nothing to run, tokio puts it to sleep in `epoll_wait`. The next
//! request then has to wake it: the client's `sendto` does the wake-up inside its own system
//! call (on a VM an inter-processor interrupt), and the reply waits for the thread to be
//! scheduled again. A thread that finishes its work quickly sleeps often: at `-P 1` the node's
//! thread slept 0.10–0.16 times per request where Redis's slept 0.07–0.08 (docs/BENCHMARKS.md,
//! session 7). So before it sleeps, a busy thread polls its own sockets for a few microseconds,
//! and a request that arrives meanwhile finds it awake.
//!
//! [`SpinGate`] decides when that pays; [`IdleSpin`] does the polling and counts what happened
//! in `mapcache_io_spin_seconds_total{thread}` and `mapcache_io_spins_total{thread,outcome}`.

use std::time::{Duration, Instant};

use super::metrics::SpinCounters;

/// How a spin ended, as counted in `mapcache_io_spins_total{outcome}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpinOutcome {
    /// A socket became readable during the spin: the request found the thread awake.
    Work,
    /// A socket was readable already when the spin began: bytes tokio has not read yet, or a
    /// connection that is not reading (its task is waiting to write to a slow client). No spin.
    Ready,
    /// Nothing arrived within the limit; the thread sleeps.
    Timeout,
}

/// A connection thread's spin before it sleeps.
///
/// tokio calls [`IdleSpin::before_park`] (`on_thread_park`) when the thread has no task to run
/// and is about to block in `epoll_wait`, and [`IdleSpin::after_unpark`] when that returns. If
/// [`SpinGate`] opens, the thread polls a level-triggered epoll set of its own sockets without
/// blocking until one is readable or the limit has passed, then lets tokio park (which returns
/// at once when a socket is readable). Work that reaches the thread another way (a new
/// connection, a timer, a wake from another thread, a socket turning writable) waits for the end
/// of the spin at most: tokio checks for it before it blocks, so nothing is lost.
///
/// Closing a socket removes it from the set (the kernel drops an epoll registration when the
/// last descriptor of the file closes, and the node never duplicates one), so sockets are only
/// ever added.
#[derive(Debug)]
pub struct IdleSpin {
    /// The thread's sockets, watched for readability (level-triggered); `None` when the spin is
    /// off, so a node that never spins does not create it.
    #[cfg(target_os = "linux")]
    epoll: Option<rustix::fd::OwnedFd>,
    /// Origin of the nanosecond clock [`SpinGate`] runs on.
    epoch: Instant,
    /// Locked by the connection thread only, so never contended; a lock because tokio's park
    /// hooks must be `Send + Sync`.
    gate: parking_lot::Mutex<SpinGate>,
    /// This thread's series.
    counters: SpinCounters,
}

impl IdleSpin {
    /// A spin of at most `limit` (zero: never spin; always off where there is no epoll).
    pub fn new(limit: Duration, counters: SpinCounters) -> std::io::Result<Self> {
        let limit = if cfg!(target_os = "linux") { limit } else { Duration::ZERO };
        Ok(Self {
            #[cfg(target_os = "linux")]
            epoll: if limit.is_zero() {
                None
            } else {
                Some(rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC)?)
            },
            epoch: Instant::now(),
            gate: parking_lot::Mutex::new(SpinGate::new(limit)),
            counters,
        })
    }

    /// Nanoseconds since `epoch` (u64 lasts 584 years).
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Adds a socket of this thread to the set the spin polls.
    pub fn watch(&self, stream: &std::net::TcpStream) -> std::io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(epoll) = &self.epoll {
            use rustix::event::epoll::{EventData, EventFlags, add};
            add(epoll, stream, EventData::new_u64(0), EventFlags::IN)?;
        }
        #[cfg(not(target_os = "linux"))]
        let _ = stream;
        Ok(())
    }

    /// Whether a watched socket is readable (or at its end, or failed) right now; `None` if
    /// the set cannot be polled (then the spin stops).
    fn readable(&self) -> Option<bool> {
        #[cfg(target_os = "linux")]
        if let Some(epoll) = &self.epoll {
            use rustix::event::{Timespec, epoll::Event, epoll::wait};
            let mut events = [std::mem::MaybeUninit::<Event>::uninit(); 1];
            let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
            return wait(epoll, &mut events, Some(&zero)).ok().map(|(ready, _)| !ready.is_empty());
        }
        None
    }

    /// tokio's `on_thread_park`: spins if [`SpinGate`] opens.
    pub fn before_park(&self) {
        let start = self.now();
        let limit = {
            let mut gate = self.gate.lock();
            if !gate.going_idle(start) {
                return;
            }
            gate.limit_ns
        };
        let outcome = match self.readable() {
            Some(true) => SpinOutcome::Ready,
            // A set that cannot be polled (it never fails in practice): sleep as usual.
            None => return,
            Some(false) => loop {
                std::hint::spin_loop();
                match self.readable() {
                    Some(true) => break SpinOutcome::Work,
                    None => break SpinOutcome::Timeout,
                    Some(false) if self.now() - start >= limit => break SpinOutcome::Timeout,
                    Some(false) => {}
                }
            },
        };
        self.counters.record(outcome, Duration::from_nanos(self.now() - start));
    }

    /// tokio's `on_thread_unpark`.
    pub fn after_unpark(&self) {
        self.gate.lock().woke(self.now());
    }
}

/// When a connection thread spins before it sleeps: only while it was busy at least half of the
/// last few milliseconds, and only after an idle gap no longer than the spin limit.
///
/// Busy is the wall time from waking to going idle again, idle the time from going idle to
/// waking (spins included); both are kept over a sliding window of about [`Self::WINDOW_NS`].
/// A thread busy at least half of the time pays for a wake-up per gap between requests, which
/// is what the spin saves, and its spins can at most double its busy time. Below half load the
/// thread sleeps at once; the last-gap condition stops it spinning right after a pause.
#[derive(Debug)]
pub struct SpinGate {
    /// The spin limit in nanoseconds; zero closes the gate for good.
    limit_ns: u64,
    /// When the thread last went idle or woke, in nanoseconds on the caller's clock.
    mark: u64,
    /// Busy time in the window.
    busy_ns: u64,
    /// Idle time in the window.
    idle_ns: u64,
    /// The idle period that ended last.
    last_idle_ns: u64,
}

impl SpinGate {
    const WINDOW_NS: u64 = 2_000_000; // 2 ms: a few hundred requests of one busy connection thread

    pub fn new(limit: Duration) -> Self {
        Self {
            limit_ns: u64::try_from(limit.as_nanos()).unwrap_or(u64::MAX),
            mark: 0,
            busy_ns: 0,
            idle_ns: 0,
            last_idle_ns: 0,
        }
    }

    /// Halves both sums until they fit the window again, so a long pause weighs for about one
    /// window and no longer.
    fn decay(&mut self) {
        while self.busy_ns + self.idle_ns > Self::WINDOW_NS {
            self.busy_ns /= 2;
            self.idle_ns /= 2;
        }
    }

    /// The thread goes idle at `now`; returns whether it should spin first.
    pub fn going_idle(&mut self, now: u64) -> bool {
        self.busy_ns += now.saturating_sub(self.mark);
        self.mark = now;
        self.decay();
        self.limit_ns > 0 && self.last_idle_ns <= self.limit_ns && self.busy_ns >= self.idle_ns
    }

    /// The thread woke at `now` (after a spin, a sleep, or both).
    pub fn woke(&mut self, now: u64) {
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

    /// Runs `cycles` (at least 100) of `busy` then `idle` microseconds through a gate and
    /// returns in how many of the last 100 idle periods it would have spun.
    fn spins(gate: &mut SpinGate, busy: u64, idle: u64, cycles: usize) -> usize {
        assert!(cycles >= 100);
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
    fn the_gate_opens_only_for_a_thread_busy_at_least_half_of_the_time() {
        let limit = Duration::from_micros(50);
        let gate = || SpinGate::new(limit);
        // 70k requests a second at 10 us each: busy 70%, gaps of 4 us.
        assert_eq!(spins(&mut gate(), 10, 4, 1_000), 100);
        // Either side of half, gaps within the limit: busy 55% spins, busy 45% does not.
        assert_eq!(spins(&mut gate(), 44, 36, 1_000), 100);
        assert_eq!(spins(&mut gate(), 36, 44, 1_000), 0);
        // 20k requests a second at 10 us each: busy 20%, gaps of 40 us.
        assert_eq!(spins(&mut gate(), 10, 40, 1_000), 0);
        // A limit of zero never spins.
        assert_eq!(spins(&mut SpinGate::new(Duration::ZERO), 10, 1, 1_000), 0);
    }

    #[test]
    fn the_gate_opens_only_after_a_gap_within_the_limit() {
        let limit = Duration::from_micros(50);
        // Busy 2/3 of the time either way: gaps of exactly the limit spin, one microsecond more
        // does not (a spin would time out every time).
        assert_eq!(spins(&mut SpinGate::new(limit), 100, 50, 1_000), 100);
        assert_eq!(spins(&mut SpinGate::new(limit), 102, 51, 1_000), 0);
    }

    #[test]
    fn the_gate_closes_after_a_pause_for_about_one_window() {
        let mut gate = SpinGate::new(Duration::from_micros(50));
        assert_eq!(spins(&mut gate, 10, 4, 1_000), 100);
        // A 1 s pause, then the thread works 10 us: the gap was over the limit, no spin.
        let woke = gate.mark + 1_000_000 * US;
        gate.woke(woke);
        assert!(!gate.going_idle(woke + 10 * US));
        // Under steady load again (busy 70%), the pause is forgotten within about one window
        // (2 ms here is some 140 requests).
        let mut now = gate.mark;
        let mut first_spin = None;
        for request in 0..1_000 {
            now += 4 * US;
            gate.woke(now);
            now += 10 * US;
            if gate.going_idle(now) {
                first_spin = Some(request);
                break;
            }
        }
        let first_spin = first_spin.expect("the gate never reopened");
        assert!((1..=200).contains(&first_spin), "reopened after {first_spin} requests");
    }

    /// Polls `spin`'s set until a socket is readable (a loopback write lands within
    /// microseconds; the loop gives up after 10 s rather than hang).
    #[cfg(target_os = "linux")]
    fn wait_readable(spin: &IdleSpin) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while spin.readable() != Some(true) {
            assert!(Instant::now() < deadline, "the written bytes never showed as readable");
        }
    }

    /// Gives `spin` a fresh gate, as a thread that has only worked so far: the next park spins.
    fn reopen(spin: &IdleSpin) {
        let mut gate = spin.gate.lock();
        *gate = SpinGate::new(Duration::from_nanos(gate.limit_ns));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_spin_ends_when_a_watched_socket_becomes_readable_or_at_the_limit() {
        use std::io::{Read, Write};
        let counters = SpinCounters::standalone();
        let spin = IdleSpin::new(Duration::from_millis(20), counters.clone()).unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        spin.watch(&server).unwrap();
        assert_eq!(spin.readable(), Some(false));
        // Bytes waiting when the thread goes idle: no spin, and they stay readable
        // (level-triggered) until read.
        client.write_all(b"PING\r\n").unwrap();
        wait_readable(&spin);
        reopen(&spin);
        spin.before_park();
        spin.after_unpark();
        assert_eq!(spin.readable(), Some(true));
        assert_eq!(counters.counts(), (0, 1, 0));
        let mut buf = [0u8; 6];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(spin.readable(), Some(false));
        // Nothing to read: the spin runs to its limit and counts as a timeout.
        reopen(&spin);
        let start = Instant::now();
        spin.before_park();
        assert!(start.elapsed() >= Duration::from_millis(20));
        spin.after_unpark();
        assert_eq!(counters.counts(), (0, 1, 1));
        // That idle period was longer than the limit: the next one sleeps without a spin.
        spin.before_park();
        spin.after_unpark();
        assert_eq!(counters.counts(), (0, 1, 1));
        // With a 10 s limit: bytes written while the thread spins end the spin as work, and so
        // does the peer closing the connection.
        let spin = IdleSpin::new(Duration::from_secs(10), counters.clone()).unwrap();
        spin.watch(&server).unwrap();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            client.write_all(b"PING\r\n").unwrap();
            client
        });
        reopen(&spin);
        spin.before_park();
        spin.after_unpark();
        let client = writer.join().unwrap();
        assert_eq!(counters.counts(), (1, 1, 1));
        server.read_exact(&mut buf).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            drop(client);
        });
        reopen(&spin);
        spin.before_park();
        spin.after_unpark();
        closer.join().unwrap();
        assert_eq!(counters.counts(), (2, 1, 1));
    }

    #[test]
    fn a_spin_limit_of_zero_creates_no_epoll_set_and_never_spins() {
        let counters = SpinCounters::standalone();
        let spin = IdleSpin::new(Duration::ZERO, counters.clone()).unwrap();
        #[cfg(target_os = "linux")]
        assert!(spin.epoll.is_none());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        spin.watch(&server).unwrap();
        for _ in 0..10 {
            spin.before_park();
            spin.after_unpark();
        }
        assert_eq!(counters.counts(), (0, 0, 0));
    }
}
