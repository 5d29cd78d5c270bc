//! Replies waiting for a client to read them: Redis's `client-output-buffer-limit` and the
//! node's own read pause.
//!
//! A connection keeps reading and running commands while its replies wait for the socket, so a
//! client that sends its whole pipeline before reading any reply is served at full speed (it
//! used to stall: the node stopped reading until its replies were written, the client stopped
//! reading until its requests were). Two bounds keep that memory in check:
//!
//! - `--max-pending-reply-bytes` (the node's, not Redis's): past it the connection stops taking
//!   new commands until the socket has taken replies back below it. The client is still served,
//!   at the speed it reads; one that reads nothing until it has sent everything waits once its
//!   replies pass this plus what the socket buffers hold.
//! - `client-output-buffer-limit normal <hard> <soft> <soft-seconds>` (Redis's, CONFIG GET/SET,
//!   default `normal 0 0 0`: none): a connection whose pending replies reach `hard`, or stay at
//!   or above `soft` for more than `soft-seconds`, is closed as Redis closes it, its pending
//!   replies dropped. The `slave` and `pubsub` classes are kept and shown as Redis's (this node
//!   has neither kind of client).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// One class's limits, in bytes and seconds; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassLimit {
    pub hard: u64,
    pub soft: u64,
    pub soft_seconds: u64,
}

/// The classes `client-output-buffer-limit` names, in Redis's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Normal,
    Replica,
    Pubsub,
}

/// Redis 7's defaults (`normal 0 0 0 slave 256mb 64mb 60 pubsub 32mb 8mb 60`).
const DEFAULTS: [ClassLimit; 3] = [
    ClassLimit { hard: 0, soft: 0, soft_seconds: 0 },
    ClassLimit { hard: 256 << 20, soft: 64 << 20, soft_seconds: 60 },
    ClassLimit { hard: 32 << 20, soft: 8 << 20, soft_seconds: 60 },
];

/// The node's `client-output-buffer-limit`. The normal class, which every connection is, sits in
/// atomics a connection reads once per batch; the other two only answer CONFIG GET.
#[derive(Debug)]
pub struct OutputBufferLimits {
    hard: AtomicU64,
    soft: AtomicU64,
    soft_seconds: AtomicU64,
    others: Mutex<[ClassLimit; 2]>,
}

impl Default for OutputBufferLimits {
    fn default() -> Self {
        Self {
            hard: AtomicU64::new(DEFAULTS[0].hard),
            soft: AtomicU64::new(DEFAULTS[0].soft),
            soft_seconds: AtomicU64::new(DEFAULTS[0].soft_seconds),
            others: Mutex::new([DEFAULTS[1], DEFAULTS[2]]),
        }
    }
}

/// Redis 7.0.15's CONFIG SET errors for this parameter (after `... - `).
const WRONG_COUNT: &str = "Wrong number of arguments in buffer limit configuration.";
const BAD_CLASS: &str = "Invalid client class specified in buffer limit configuration.";
const BAD_VALUE: &str =
    "Error in hard, soft or soft_seconds setting in buffer limit configuration.";

impl OutputBufferLimits {
    /// The normal class's limits now.
    pub fn normal(&self) -> ClassLimit {
        ClassLimit {
            hard: self.hard.load(Ordering::Relaxed),
            soft: self.soft.load(Ordering::Relaxed),
            soft_seconds: self.soft_seconds.load(Ordering::Relaxed),
        }
    }

    /// CONFIG GET's value: `normal 0 0 0 slave 268435456 67108864 60 pubsub ...` in bytes.
    pub fn config_text(&self) -> String {
        let others = *self.others.lock();
        [("normal", self.normal()), ("slave", others[0]), ("pubsub", others[1])]
            .iter()
            .map(|(name, l)| format!("{name} {} {} {}", l.hard, l.soft, l.soft_seconds))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// CONFIG SET: groups of `<class> <hard> <soft> <soft-seconds>` separated by spaces, all
    /// checked before any applies (Redis's `updateClientOutputBufferLimit`). An empty value
    /// changes nothing. The error is Redis's text after `... - `.
    pub fn set(&self, text: &[u8]) -> Result<(), &'static str> {
        let words: Vec<&[u8]> = text.split(|c| *c == b' ').filter(|w| !w.is_empty()).collect();
        if !words.len().is_multiple_of(4) {
            return Err(WRONG_COUNT);
        }
        let mut parsed = Vec::with_capacity(words.len() / 4);
        for group in words.chunks(4) {
            let class = match group[0].to_ascii_lowercase().as_slice() {
                b"normal" => Class::Normal,
                b"slave" | b"replica" => Class::Replica,
                b"pubsub" => Class::Pubsub,
                _ => return Err(BAD_CLASS),
            };
            let hard = redis_memory(group[1]).ok_or(BAD_VALUE)?;
            let soft = redis_memory(group[2]).ok_or(BAD_VALUE)?;
            let soft_seconds = std::str::from_utf8(group[3])
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .filter(|s| *s >= 0)
                .ok_or(BAD_VALUE)? as u64;
            parsed.push((class, ClassLimit { hard, soft, soft_seconds }));
        }
        let mut others = self.others.lock();
        for (class, limit) in parsed {
            match class {
                Class::Normal => {
                    self.hard.store(limit.hard, Ordering::Relaxed);
                    self.soft.store(limit.soft, Ordering::Relaxed);
                    self.soft_seconds.store(limit.soft_seconds, Ordering::Relaxed);
                }
                Class::Replica => others[0] = limit,
                Class::Pubsub => others[1] = limit,
            }
        }
        Ok(())
    }
}

/// Redis's `memtoull`: digits with an optional unit in any case, `b`, `k`/`m`/`g` (powers of
/// 1000) or `kb`/`mb`/`gb` (powers of 1024); nothing else.
fn redis_memory(word: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(word).ok()?.to_ascii_lowercase();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let multiplier: u64 = match unit {
        "" | "b" => 1,
        "k" => 1_000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

/// What a connection's pending replies mean under the normal class's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Within,
    /// At or past `hard`.
    Hard,
    /// At or past `soft` for longer than `soft-seconds`.
    Soft,
}

impl ClassLimit {
    /// Redis's `checkClientOutputBufferLimits`: `pending` bytes wait now; `over_soft_since` is
    /// when they first reached `soft` (kept here, cleared once they drop below it).
    pub fn check(
        &self,
        pending: usize,
        now: std::time::Instant,
        over_soft_since: &mut Option<std::time::Instant>,
    ) -> Verdict {
        let pending = pending as u64;
        if self.hard != 0 && pending >= self.hard {
            return Verdict::Hard;
        }
        if self.soft != 0 && pending >= self.soft {
            let since = *over_soft_since.get_or_insert(now);
            if now.duration_since(since) > Duration::from_secs(self.soft_seconds) {
                return Verdict::Soft;
            }
        } else {
            *over_soft_since = None;
        }
        Verdict::Within
    }

    /// When a connection over `soft` since `since` is to be closed if it still is.
    pub fn soft_deadline(&self, since: std::time::Instant) -> std::time::Instant {
        // Redis compares whole seconds; "more than soft-seconds" is checked just past them.
        since + Duration::from_secs(self.soft_seconds) + Duration::from_millis(1)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{BAD_CLASS, BAD_VALUE, ClassLimit, OutputBufferLimits, Verdict, WRONG_COUNT};

    #[test]
    fn defaults_read_back_as_redis_7() {
        let limits = OutputBufferLimits::default();
        assert_eq!(
            limits.config_text(),
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
        assert_eq!(limits.normal(), ClassLimit::default());
    }

    #[test]
    fn set_takes_redis_units_classes_in_any_case_and_the_last_group_of_a_class() {
        let limits = OutputBufferLimits::default();
        assert_eq!(limits.set(b"  Normal 1k 2KB 3  replica 1mb 1m 0 normal 4 5 6"), Ok(()));
        assert_eq!(
            limits.config_text(),
            "normal 4 5 6 slave 1048576 1000000 0 pubsub 33554432 8388608 60"
        );
        assert_eq!(limits.set(b""), Ok(()));
        assert_eq!(limits.normal(), ClassLimit { hard: 4, soft: 5, soft_seconds: 6 });
    }

    #[test]
    fn set_refuses_as_redis_and_applies_nothing() {
        let limits = OutputBufferLimits::default();
        assert_eq!(limits.set(b"normal 1mb"), Err(WRONG_COUNT));
        assert_eq!(limits.set(b"normal 1 2 3 master 1 2 3"), Err(BAD_CLASS));
        assert_eq!(limits.set(b"normal 1 2 3 pubsub -1 2 3"), Err(BAD_VALUE));
        assert_eq!(limits.set(b"normal 1x 2 3"), Err(BAD_VALUE));
        assert_eq!(limits.set(b"normal 1 2 -3"), Err(BAD_VALUE));
        assert_eq!(limits.normal(), ClassLimit::default());
    }

    #[test]
    fn hard_closes_at_once_and_soft_only_after_its_seconds_above_it() {
        let limit = ClassLimit { hard: 100, soft: 50, soft_seconds: 2 };
        let start = Instant::now();
        let mut since = None;
        assert_eq!(limit.check(100, start, &mut since), Verdict::Hard);
        assert_eq!(limit.check(50, start, &mut since), Verdict::Within);
        assert_eq!(since, Some(start));
        assert_eq!(limit.check(60, start + Duration::from_secs(2), &mut since), Verdict::Within);
        assert_eq!(limit.check(60, limit.soft_deadline(start), &mut since), Verdict::Soft);
        assert_eq!(limit.check(49, start + Duration::from_secs(3), &mut since), Verdict::Within);
        assert_eq!(since, None);
        let off = ClassLimit::default();
        assert_eq!(off.check(usize::MAX, start, &mut since), Verdict::Within);
    }
}
