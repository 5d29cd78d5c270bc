//! Differential test against a real Redis: random sequences of commands are sent to a
//! `redis-server` child process (the reference, Debian's 7.0.15 in CI) and to an in-process node,
//! one command at a time to each, and every reply is read as one complete RESP frame and
//! compared byte for byte. Replies that may differ between two correct servers (TTLs, KEYS and
//! SCAN order, RANDOMKEY's choice) are normalised first (differential/normalise.rs); nothing
//! else is.
//!
//! Each case starts from FLUSHALL on new connections, and after its sequence compares what both
//! servers hold (every key's value and deadline, KEYS, DBSIZE). A mismatch fails the case with
//! the command, both replies and the whole sequence, which proptest then shrinks: the failure
//! printed is a shortest sequence that still differs, in redis-cli syntax. `PROPTEST_CASES`
//! sets the number of cases (default [`DEFAULT_CASES`]). docs/architecture.md, "Tests", says
//! how to replay one.
//!
//! `transactions_match_redis` drives two connections per server; it adds MULTI, EXEC, DISCARD,
//! WATCH and UNWATCH.
//!
//! With `MAPCACHE_DIFF_SELF_CHECK=1` a second `redis-server` stands in for the node: every case
//! must pass, or the generator or the normalisation lets something nondeterministic through.

mod differential;
mod server_support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use differential::commands::{self, Command, quote, show};
use differential::frame;
use differential::normalise::{normalise, scan_result};
use differential::redis_server::RedisServer;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use server_support::{Raw, TestNode, cmd_bytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Cases per test unless `PROPTEST_CASES` says otherwise: a few seconds in a debug build.
const DEFAULT_CASES: u32 = 200;

/// The longest sequences: long enough for a transaction and the write that breaks it.
const MAX_SEQUENCE: usize = 30;
const MAX_TWO_CONNECTION_SEQUENCE: usize = 40;

/// A liveness guard, not a speed check: a reply not complete by then will never be.
const REPLY_DEADLINE: Duration = Duration::from_secs(30);

/// More pages than any SCAN of six keys takes; a scan still going after them never ends.
const MAX_SCAN_PAGES: usize = 1000;

/// Set to compare Redis with a second Redis instead of the node.
const SELF_CHECK_ENV: &str = "MAPCACHE_DIFF_SELF_CHECK";

#[test]
fn strings_and_keys_match_redis_in_resp2() {
    single_connection_sequences_match_redis(Protocol::Resp2);
}

#[test]
fn strings_and_keys_match_redis_in_resp3() {
    single_connection_sequences_match_redis(Protocol::Resp3);
}

/// Two connections per server, each command sent on the one its step names, every reply read
/// before the next step is sent: the interleaving is the same on both servers.
#[test]
fn transactions_match_redis() {
    let runtime = runtime();
    let _context = runtime.enter();
    let servers = Servers::start(&runtime);
    let shape = Shape { protocol: Protocol::Resp2, connections: 2 };
    check_cases(commands::two_connection_sequence(MAX_TWO_CONNECTION_SEQUENCE), |steps| {
        runtime.block_on(servers.run(shape, steps))
    });
}

fn single_connection_sequences_match_redis(protocol: Protocol) {
    let runtime = runtime();
    let _context = runtime.enter();
    let servers = Servers::start(&runtime);
    let shape = Shape { protocol, connections: 1 };
    check_cases(commands::sequence(MAX_SEQUENCE), |sequence| {
        let steps: Vec<(usize, Command)> = sequence.iter().map(|c| (0, c.clone())).collect();
        runtime.block_on(servers.run(shape, &steps))
    });
}

/// The node's own runtime: its accept loop and maintenance keep running between cases.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Runs `check` on `PROPTEST_CASES` cases of `strategy`; fails with the shrunk case's report.
fn check_cases<S: Strategy>(strategy: S, check: impl Fn(&S::Value) -> Result<(), String>) {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|s| s.parse().ok());
    let config = Config {
        cases: cases.unwrap_or(DEFAULT_CASES),
        // Nothing saved to replay: the report prints the sequence itself.
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    match runner.run(&strategy, |case| check(&case).map_err(TestCaseError::fail)) {
        Ok(()) => {}
        Err(TestError::Fail(report, _)) => panic!("{report}"),
        Err(TestError::Abort(why)) => panic!("proptest aborted: {why}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Resp2,
    Resp3,
}

/// How a case talks to each server.
#[derive(Debug, Clone, Copy)]
struct Shape {
    protocol: Protocol,
    /// New connections per server; each step names one.
    connections: usize,
}

/// The reference and the server under test.
struct Servers {
    /// The reference: its replies are the expected ones.
    redis: RedisServer,
    /// Compared with the reference.
    subject: Subject,
}

/// The server compared with Redis: the node, or another Redis for the self-check.
enum Subject {
    Node(TestNode),
    Redis(RedisServer),
}

impl Servers {
    fn start(runtime: &tokio::runtime::Runtime) -> Self {
        let redis = RedisServer::start();
        let subject = match std::env::var_os(SELF_CHECK_ENV) {
            Some(_) => Subject::Redis(RedisServer::start()),
            None => Subject::Node(runtime.block_on(server_support::start())),
        };
        Self { redis, subject }
    }

    fn subject_addr(&self) -> SocketAddr {
        match &self.subject {
            Subject::Node(node) => node.resp(),
            Subject::Redis(redis) => redis.addr(),
        }
    }

    /// Runs one case: FLUSHALL, then `steps` on new connections to each server, then the
    /// comparison of what both hold. The first difference is the error, as a report.
    async fn run(&self, shape: Shape, steps: &[(usize, Command)]) -> Result<(), String> {
        let mut redis = Vec::new();
        let mut subject = Vec::new();
        for _ in 0..shape.connections {
            redis.push(Conn::open(self.redis.addr(), shape.protocol).await);
            subject.push(Conn::open(self.subject_addr(), shape.protocol).await);
        }
        for conn in [&mut redis[0], &mut subject[0]] {
            let flushed = conn.call(&words(&["FLUSHALL"])).await;
            assert_eq!(flushed, b"+OK\r\n", "FLUSHALL before the case");
        }
        for (place, (on, command)) in steps.iter().enumerate() {
            let expected = Outcome::of(&mut redis[*on], command).await;
            let got = Outcome::of(&mut subject[*on], command).await;
            if expected.compared != got.compared {
                let at = format!("step {} of {}", place + 1, steps.len());
                let mismatch = Mismatch { at, command, expected, got, step: Some(place) };
                return Err(self.report(shape, steps, mismatch));
            }
        }
        self.compare_contents(shape, steps).await
    }

    /// After a case, on new connections (the case's may be inside MULTI): every key's value and
    /// deadline, KEYS and DBSIZE (after the GETs, which remove the keys whose deadline passed).
    async fn compare_contents(
        &self,
        shape: Shape,
        steps: &[(usize, Command)],
    ) -> Result<(), String> {
        let mut redis = Conn::open(self.redis.addr(), shape.protocol).await;
        let mut subject = Conn::open(self.subject_addr(), shape.protocol).await;
        let mut checks: Vec<Command> = Vec::new();
        for key in commands::KEYS {
            checks.push(vec![b"GET".to_vec(), key.to_vec()]);
            checks.push(vec![b"PEXPIRETIME".to_vec(), key.to_vec()]);
        }
        checks.push(words(&["KEYS", "*"]));
        checks.push(words(&["DBSIZE"]));
        for command in &checks {
            let expected = Outcome::of(&mut redis, command).await;
            let got = Outcome::of(&mut subject, command).await;
            if expected.compared != got.compared {
                let at = "the check after the sequence, on a new connection".to_string();
                let mismatch = Mismatch { at, command, expected, got, step: None };
                return Err(self.report(shape, steps, mismatch));
            }
        }
        Ok(())
    }

    /// What a failure prints: where, the command, both replies (and what was compared, where
    /// normalised), then the whole sequence as redis-cli takes it.
    fn report(&self, shape: Shape, steps: &[(usize, Command)], mismatch: Mismatch<'_>) -> String {
        let Mismatch { at, command, expected, got, step } = mismatch;
        let subject = match self.subject {
            Subject::Node(_) => "mapcache",
            Subject::Redis(_) => "redis #2",
        };
        let mut out = format!(
            "the replies differ from redis-server {} ({:?}) at {at}\n  command:  {}\n  \
             redis:    {}\n  {subject}: {}\n",
            self.redis.version(),
            shape.protocol,
            show(command),
            quote(&expected.raw),
            quote(&got.raw),
        );
        if expected.raw != expected.compared || got.raw != got.compared {
            let _ = writeln!(
                out,
                "  compared after normalising: redis {}, {subject} {}",
                quote(&expected.compared),
                quote(&got.compared)
            );
        }
        let hello = if shape.protocol == Protocol::Resp3 { ", HELLO 3 on each" } else { "" };
        let _ = writeln!(
            out,
            "the sequence ({} new connection(s) to each server{hello}, after FLUSHALL):",
            shape.connections
        );
        for (place, (on, command)) in steps.iter().enumerate() {
            let marker = if step == Some(place) { ">>" } else { "  " };
            let conn = if shape.connections > 1 { format!("[conn {on}] ") } else { String::new() };
            let _ = writeln!(out, "{marker}{:3}. {conn}{}", place + 1, show(command));
        }
        out
    }
}

/// Where two servers' replies first differ.
struct Mismatch<'a> {
    /// Which step, or the check after the sequence, in words.
    at: String,
    command: &'a [Vec<u8>],
    /// Redis's reply.
    expected: Outcome,
    /// The subject's reply.
    got: Outcome,
    /// The step's index in the sequence; `None` in the check after it.
    step: Option<usize>,
}

/// One server's reply to a command: as sent, and as compared.
struct Outcome {
    /// The reply's bytes, one complete frame, printed in a report.
    raw: Vec<u8>,
    /// What is compared: `raw`, or its normalised form (normalise.rs).
    compared: Vec<u8>,
}

impl Outcome {
    async fn of(conn: &mut Conn, command: &Command) -> Self {
        let raw = conn.call(command).await;
        let compared = if command[0].eq_ignore_ascii_case(b"SCAN") {
            conn.scan_to_end(command, &raw).await
        } else {
            normalise(command, &raw)
        };
        Self { raw, compared }
    }
}

/// A connection that reads replies one complete frame at a time.
struct Conn {
    raw: Raw,
    /// Bytes read past the last reply returned: none while requests go one at a time, but a
    /// server sending more shows up in the next reply instead of being lost.
    unread: Vec<u8>,
}

impl Conn {
    /// A new connection, switched to RESP3 by HELLO 3 if asked (its reply, which names the
    /// server and its version, is not compared).
    async fn open(addr: SocketAddr, protocol: Protocol) -> Self {
        let mut conn = Self { raw: Raw::connect(addr).await, unread: Vec::new() };
        if protocol == Protocol::Resp3 {
            let hello = conn.call(&words(&["HELLO", "3"])).await;
            assert!(hello.starts_with(b"%"), "HELLO 3 to {addr}: {}", quote(&hello));
        }
        conn
    }

    async fn call(&mut self, command: &[Vec<u8>]) -> Vec<u8> {
        let args: Vec<&[u8]> = command.iter().map(Vec::as_slice).collect();
        self.raw.stream.write_all(&cmd_bytes(&args)).await.expect("send a command");
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Vec<u8> {
        loop {
            match frame::reply_len(&self.unread) {
                Ok(Some(len)) => return self.unread.drain(..len).collect(),
                Ok(None) => {}
                Err(why) => panic!("not a RESP reply ({why}): {}", quote(&self.unread)),
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout(REPLY_DEADLINE, self.raw.stream.read(&mut chunk))
                .await
                .expect("a reply in time")
                .expect("read a reply");
            assert!(read > 0, "connection closed inside a reply: {}", quote(&self.unread));
            self.unread.extend_from_slice(&chunk[..read]);
        }
    }

    /// Follows a SCAN that started at cursor 0 to its end, each page with the same options,
    /// and returns the keys of all pages as [`scan_result`]; a reply that is no scan page (an
    /// error) is returned as it is.
    async fn scan_to_end(&mut self, command: &Command, first: &[u8]) -> Vec<u8> {
        let mut page = first.to_vec();
        let mut keys = BTreeSet::new();
        for _ in 0..MAX_SCAN_PAGES {
            let Some((b'*', parts)) = frame::elements(&page) else {
                return page;
            };
            let [cursor, batch] = parts[..] else {
                return page;
            };
            let (Some(cursor), Some((b'*', batch))) =
                (frame::bulk_payload(cursor), frame::elements(batch))
            else {
                return page;
            };
            keys.extend(batch.iter().map(|key| key.to_vec()));
            if cursor == b"0" {
                return scan_result(&keys);
            }
            let mut next = command.clone();
            next[1] = cursor.to_vec();
            page = self.call(&next).await;
        }
        format!("-(SCAN did not return cursor 0 in {MAX_SCAN_PAGES} pages)\r\n").into_bytes()
    }
}

fn words(words: &[&str]) -> Command {
    words.iter().map(|w| w.as_bytes().to_vec()).collect()
}
