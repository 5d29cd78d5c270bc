//! The crash-restart backoff of the real kubelet (`flowcontrol.Backoff` keyed per container):
//! the first restart is immediate and records a delay of `initial`; each later crash waits the
//! recorded delay and doubles it up to `max`. A container that ran longer than `2 * max` since
//! the last backoff step starts over (the kubelet's `hasExpired`).

use std::time::{Duration, Instant};

/// One container's backoff.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// First non-zero delay (`--restart-backoff-initial`, 10 s).
    initial: Duration,
    /// Cap (`--restart-backoff-max`, 300 s).
    max: Duration,
    /// The delay the next crash waits; None before the first crash.
    current: Option<Duration>,
    /// When the delay last changed.
    last_update: Option<Instant>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, current: None, last_update: None }
    }

    /// The delay before restarting a container that exited at `exited_at`.
    pub fn on_exit(&mut self, exited_at: Instant) -> Duration {
        if self.last_update.is_some_and(|last| exited_at.duration_since(last) > self.max * 2) {
            self.current = None;
        }
        let delay = self.current.unwrap_or(Duration::ZERO);
        self.current = Some(match self.current {
            None => self.initial.min(self.max),
            Some(current) => (current * 2).min(self.max),
        });
        // The kubelet steps the backoff when it restarts, i.e. after the delay.
        self.last_update = Some(exited_at + delay);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_immediate_then_10s_doubling_to_300s() {
        let mut backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let mut now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..9 {
            let delay = backoff.on_exit(now);
            delays.push(delay.as_secs());
            now += delay + Duration::from_secs(1); // crashes one second after each start
        }
        assert_eq!(delays, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn backoff_starts_over_after_a_long_run() {
        let mut backoff = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let start = Instant::now();
        assert_eq!(backoff.on_exit(start), Duration::ZERO);
        assert_eq!(backoff.on_exit(start + Duration::from_secs(1)), Duration::from_secs(10));
        // Ran 601 s (more than 2 * max) since the last step: back to an immediate restart.
        let later = start + Duration::from_secs(11 + 601);
        assert_eq!(backoff.on_exit(later), Duration::ZERO);
        assert_eq!(backoff.on_exit(later + Duration::from_secs(1)), Duration::from_secs(10));
    }

    #[test]
    fn short_test_settings_are_honoured() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let now = Instant::now();
        let delays: Vec<u64> = (0..5).map(|_| backoff.on_exit(now).as_secs()).collect();
        assert_eq!(delays, vec![0, 1, 2, 4, 4]);
    }
}
