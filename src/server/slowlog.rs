//! The slow log (Redis's `slowlog.c`): the latest commands that ran at least
//! `slowlog-log-slower-than` microseconds, newest first, at most `slowlog-max-len` of them, each
//! with its arguments trimmed as Redis trims them. Read and reset by `SLOWLOG`, configured by
//! `CONFIG SET`.
//!
//! Every command reads the threshold (one relaxed atomic); only a slow one takes the log's lock.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

/// `slowlog-log-slower-than`'s default, Redis's: 10 ms.
pub const DEFAULT_SLOWER_THAN_US: i64 = 10_000;
/// `slowlog-max-len`'s default, Redis's.
pub const DEFAULT_MAX_LEN: u64 = 128;
/// Arguments kept per entry (Redis's `SLOWLOG_ENTRY_MAX_ARGC`); the last one kept says how many
/// more there were.
pub const MAX_ARGS: usize = 32;
/// Bytes kept per argument (Redis's `SLOWLOG_ENTRY_MAX_STRING`); the rest is counted.
pub const MAX_ARG_BYTES: usize = 128;

/// One logged command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlowEntry {
    /// Unique and increasing since start; `SLOWLOG RESET` does not restart it.
    pub id: u64,
    /// Unix seconds when it was logged.
    pub time: i64,
    /// Microseconds it ran.
    pub duration_us: u64,
    /// Its arguments, trimmed (see [`logged_arguments`]).
    pub args: Vec<Bytes>,
    /// The client's `ip:port`.
    pub peer: String,
    /// The client's name (`CLIENT SETNAME`), empty when it has none.
    pub name: String,
}

/// The slow log and its two parameters.
#[derive(Debug)]
pub struct SlowLog {
    /// `slowlog-log-slower-than` in microseconds; negative turns the log off.
    slower_than_us: AtomicI64,
    /// `slowlog-max-len`.
    max_len: AtomicU64,
    /// Newest first.
    entries: Mutex<VecDeque<SlowEntry>>,
    next_id: AtomicU64,
}

impl Default for SlowLog {
    fn default() -> Self {
        Self {
            slower_than_us: AtomicI64::new(DEFAULT_SLOWER_THAN_US),
            max_len: AtomicU64::new(DEFAULT_MAX_LEN),
            entries: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(0),
        }
    }
}

impl SlowLog {
    /// Whether a command that ran `duration_us` is logged (Redis: `duration >= slower-than`).
    #[inline]
    pub fn is_slow(&self, duration_us: u64) -> bool {
        let threshold = self.slower_than_us.load(Ordering::Relaxed);
        threshold >= 0 && duration_us >= threshold as u64
    }

    /// Logs a command that ran `duration_us`: `args` trimmed, those at `secrets` redacted.
    pub fn push(
        &self,
        args: &[Bytes],
        secrets: &[usize],
        duration_us: u64,
        peer: Option<SocketAddr>,
        name: String,
    ) {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let entry = SlowEntry {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            time,
            duration_us,
            args: logged_arguments(args, secrets),
            peer: peer.map(|p| p.to_string()).unwrap_or_default(),
            name,
        };
        let mut entries = self.entries.lock();
        entries.push_front(entry);
        entries.truncate(self.max_len() as usize);
    }

    /// Drops the oldest entries past `slowlog-max-len`, unless the log is off: Redis trims as a
    /// command is considered for the log, which a log that is off does not do.
    pub fn trim(&self) {
        if self.slower_than_us.load(Ordering::Relaxed) >= 0 {
            self.entries.lock().truncate(self.max_len() as usize);
        }
    }

    /// The newest `count` entries (all of them for `None`), newest first.
    pub fn newest(&self, count: Option<usize>) -> Vec<SlowEntry> {
        let entries = self.entries.lock();
        entries.iter().take(count.unwrap_or(usize::MAX)).cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `SLOWLOG RESET`: every entry goes; ids go on.
    pub fn reset(&self) {
        self.entries.lock().clear();
    }

    pub fn slower_than_us(&self) -> i64 {
        self.slower_than_us.load(Ordering::Relaxed)
    }

    pub fn set_slower_than_us(&self, us: i64) {
        self.slower_than_us.store(us, Ordering::Relaxed);
    }

    pub fn max_len(&self) -> u64 {
        self.max_len.load(Ordering::Relaxed)
    }

    pub fn set_max_len(&self, len: u64) {
        self.max_len.store(len, Ordering::Relaxed);
    }
}

/// The arguments an entry keeps, as Redis's `slowlogCreateEntry`: at most [`MAX_ARGS`], the last
/// of them replaced by `... (N more arguments)` when there were more; each cut to
/// [`MAX_ARG_BYTES`] with `... (N more bytes)` after; those at `secrets` as `(redacted)`.
pub fn logged_arguments(args: &[Bytes], secrets: &[usize]) -> Vec<Bytes> {
    let kept = args.len().min(MAX_ARGS);
    (0..kept)
        .map(|j| {
            if kept != args.len() && j == kept - 1 {
                Bytes::from(format!("... ({} more arguments)", args.len() - kept + 1))
            } else if secrets.contains(&j) {
                Bytes::from_static(b"(redacted)")
            } else if args[j].len() > MAX_ARG_BYTES {
                let more = format!("... ({} more bytes)", args[j].len() - MAX_ARG_BYTES);
                Bytes::from([&args[j][..MAX_ARG_BYTES], more.as_bytes()].concat())
            } else {
                args[j].clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(texts: &[&str]) -> Vec<Bytes> {
        texts.iter().map(|t| Bytes::copy_from_slice(t.as_bytes())).collect()
    }

    #[test]
    fn many_arguments_end_with_how_many_more_there_were() {
        let many: Vec<String> = (0..41).map(|i| i.to_string()).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let logged = logged_arguments(&args(&many), &[]);
        assert_eq!(logged.len(), 32);
        assert_eq!(logged[30], Bytes::from("30"));
        assert_eq!(logged[31], Bytes::from("... (10 more arguments)"));
        let exactly: Vec<&str> = many[..32].to_vec();
        assert_eq!(logged_arguments(&args(&exactly), &[]), args(&exactly));
    }

    #[test]
    fn long_arguments_are_cut_at_128_bytes() {
        let long = "a".repeat(130);
        let edge = "b".repeat(128);
        let logged = logged_arguments(&args(&["SET", &long, &edge]), &[]);
        assert_eq!(logged[1], Bytes::from(format!("{}... (2 more bytes)", "a".repeat(128))));
        assert_eq!(logged[2], Bytes::from(edge));
    }

    #[test]
    fn secrets_are_redacted() {
        let logged = logged_arguments(&args(&["AUTH", "user", "pass"]), &[1, 2]);
        assert_eq!(logged, args(&["AUTH", "(redacted)", "(redacted)"]));
    }

    #[test]
    fn the_log_keeps_the_newest_max_len_entries_and_ids_survive_a_reset() {
        let log = SlowLog::default();
        log.set_max_len(2);
        for name in ["a", "b", "c"] {
            log.push(&args(&[name]), &[], 1, None, String::new());
        }
        let ids: Vec<u64> = log.newest(None).iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![2, 1]);
        assert_eq!(log.newest(Some(1))[0].args, args(&["c"]));
        log.reset();
        assert!(log.is_empty());
        log.push(&args(&["d"]), &[], 1, None, String::new());
        assert_eq!(log.newest(None)[0].id, 3);
    }

    #[test]
    fn a_shorter_max_len_trims_only_while_the_log_is_on() {
        let log = SlowLog::default();
        for _ in 0..5 {
            log.push(&args(&["x"]), &[], 1, None, String::new());
        }
        log.set_slower_than_us(-1);
        log.set_max_len(2);
        log.trim();
        assert_eq!(log.len(), 5);
        log.set_slower_than_us(0);
        log.trim();
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn the_threshold_is_inclusive_and_negative_turns_the_log_off() {
        let log = SlowLog::default();
        assert!(!log.is_slow(9_999));
        assert!(log.is_slow(10_000));
        log.set_slower_than_us(0);
        assert!(log.is_slow(0));
        log.set_slower_than_us(-1);
        assert!(!log.is_slow(u64::MAX));
    }
}
