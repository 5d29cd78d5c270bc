//! Who may talk to the node: secrets compared in constant time, failed AUTH attempts throttled,
//! and Redis's protected mode.
//!
//! - [`secret_matches`]: the AUTH password and the admin token are compared on their SHA-256
//!   digests with `subtle`'s constant-time equality, so neither the position of the first wrong
//!   byte nor the secret's length shows in how long a refusal takes.
//! - [`AuthThrottle`]: every failed AUTH (or `HELLO ... AUTH`) holds its connection's reply,
//!   and so the connection's next command, back: 100 ms after the connection's first
//!   consecutive failure, doubling with each one after it, at most [`MAX_DELAY`]. While the node
//!   as a whole sees more than [`NODE_FAILURES_PER_SECOND`] failures a second, every failure
//!   waits [`MAX_DELAY`], so opening new connections does not buy fresh short delays. Only the
//!   failing connection waits: its thread serves its other connections meanwhile, and a
//!   successful AUTH resets the connection's count.
//! - Protected mode ([`PROTECTED_MODE_DENIED`]): as Redis's, while it is on (the default) and
//!   the `default` user has no password, a client connecting from anywhere but the loopback
//!   interface is sent Redis's `-DENIED` error and disconnected.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether `presented` is the secret `expected`, in time that depends on neither.
pub fn secret_matches(presented: &[u8], expected: &[u8]) -> bool {
    let presented = Sha256::digest(presented);
    let expected = Sha256::digest(expected);
    presented.ct_eq(&expected).into()
}

/// The hold-back after a connection's first failed AUTH; it doubles with each further one.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest hold-back of one failed AUTH.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// Past this many failed AUTHs in one second on the node, every failure waits [`MAX_DELAY`].
pub const NODE_FAILURES_PER_SECOND: u64 = 50;

/// The node-wide count of failed AUTHs, per one-second window.
#[derive(Debug)]
pub struct AuthThrottle {
    /// When the node started: windows are counted from it.
    epoch: Instant,
    /// The current window, as seconds since `epoch`.
    window: AtomicU64,
    /// Failures in the current window.
    failures: AtomicU64,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self { epoch: Instant::now(), window: AtomicU64::new(0), failures: AtomicU64::new(0) }
    }
}

impl AuthThrottle {
    /// Records one failed AUTH of a connection that has now failed `consecutive` times in a
    /// row (1 for its first), and returns how long its reply is held back.
    pub fn failed(&self, consecutive: u32) -> Duration {
        self.failed_in_window(self.epoch.elapsed().as_secs(), consecutive)
    }

    /// [`failed`](Self::failed) in the one-second window `now` (seconds since the epoch).
    fn failed_in_window(&self, now: u64, consecutive: u32) -> Duration {
        // A new window restarts the count; two connections racing on the switch may both
        // reset it, which only forgets a failure or two.
        if self.window.swap(now, Ordering::Relaxed) != now {
            self.failures.store(0, Ordering::Relaxed);
        }
        let node_failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if node_failures > NODE_FAILURES_PER_SECOND {
            return MAX_DELAY;
        }
        connection_delay(consecutive)
    }
}

/// The hold-back of a connection's `consecutive`-th failed AUTH in a row (1 for its first).
pub fn connection_delay(consecutive: u32) -> Duration {
    let doublings = consecutive.saturating_sub(1).min(16);
    (FIRST_DELAY * (1u32 << doublings)).min(MAX_DELAY)
}

/// What Redis (7.0.15, `clientAcceptHandler`) sends a client it refuses in protected mode,
/// byte for byte, before it closes the connection.
pub const PROTECTED_MODE_DENIED: &[u8] = b"-DENIED Redis is running in protected mode because \
protected mode is enabled and no password is set for the default user. In this mode connections \
are only accepted from the loopback interface. If you want to connect from external computers to \
Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the \
command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from \
the same host the server is running, however MAKE SURE Redis is not publicly accessible from \
internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you \
can just disable the protected mode by editing the Redis configuration file, and setting the \
protected mode option to 'no', and then restarting the server. 3) If you started the server \
manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an \
authentication password for the default user. NOTE: You only need to do one of the above things \
in order for the server to start accepting connections from the outside.\r\n";

/// Whether a client at `peer` is local as Redis's `connIsLocal` sees it: 127.0.0.0/8 or ::1
/// (an IPv4-mapped `::ffff:127.x.y.z` included).
pub fn is_loopback_peer(peer: IpAddr) -> bool {
    peer.to_canonical().is_loopback()
}

/// Refuses a client in protected mode: Redis's `-DENIED` error, then the connection is closed.
/// What the client sent meanwhile is read and dropped for up to a second, so that closing the
/// socket with unread input does not reset the connection before the error is read.
pub async fn deny_protected(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let refuse = async {
        stream.write_all(PROTECTED_MODE_DENIED).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), refuse).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3creT", b"s3cret"));
        assert!(!secret_matches(b"s3cre", b"s3cret"));
        assert!(!secret_matches(b"", b"s3cret"));
        assert!(secret_matches(b"", b""));
    }

    #[test]
    fn a_connection_delay_doubles_from_100_ms_up_to_two_seconds() {
        let ms = |n| connection_delay(n).as_millis();
        assert_eq!([ms(1), ms(2), ms(3), ms(4), ms(5), ms(6)], [100, 200, 400, 800, 1600, 2000]);
        assert_eq!(ms(u32::MAX), 2000);
    }

    #[test]
    fn past_the_node_rate_every_failure_waits_the_most_until_the_next_second() {
        let throttle = AuthThrottle::default();
        for _ in 0..NODE_FAILURES_PER_SECOND {
            assert_eq!(throttle.failed_in_window(7, 1), FIRST_DELAY);
        }
        assert_eq!(throttle.failed_in_window(7, 1), MAX_DELAY);
        assert_eq!(throttle.failed_in_window(7, 2), MAX_DELAY);
        assert_eq!(throttle.failed_in_window(8, 1), FIRST_DELAY, "a new second counts afresh");
        assert_eq!(throttle.failed_in_window(8, 3), Duration::from_millis(400));
    }

    #[test]
    fn loopback_peers_are_local_as_redis_sees_them() {
        let local = |ip: &str| is_loopback_peer(ip.parse().expect("ip"));
        assert!(local("127.0.0.1"));
        assert!(local("127.1.2.3"));
        assert!(local("::1"));
        assert!(local("::ffff:127.0.0.1"));
        assert!(!local("10.0.0.7"));
        assert!(!local("192.0.2.2"));
        assert!(!local("::ffff:10.0.0.7"));
        assert!(!local("fe80::1"));
    }

    #[test]
    fn the_denied_text_is_redis_own() {
        assert!(PROTECTED_MODE_DENIED.starts_with(b"-DENIED Redis is running in protected mode"));
        assert!(PROTECTED_MODE_DENIED.ends_with(b"accepting connections from the outside.\r\n"));
        // redis-server 7.0.15's own words (`strings redis-server`), typo included.
        assert!(PROTECTED_MODE_DENIED.windows(10).any(|w| w == b"Setup a an"));
    }
}
