//! A real `redis-server` as a child process, the reference the differential test compares the
//! node against: on a free loopback port, without persistence, its working directory and log in
//! a temp dir, killed when dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to do when the binary is missing: the test must fail, never pass without a reference.
const INSTALL_HINT: &str = "redis-server is not on PATH: tests/server_differential.rs compares \
     the node with a real Redis; install Debian's redis-server (`apt-get install redis-server`, \
     as .ci/run does)";

/// How many ports to try: another process may take the free port found between the probe and
/// Redis's bind.
const PORT_ATTEMPTS: usize = 5;

/// A liveness guard, not a speed check: a Redis that has not answered PING by then never will.
const READY_DEADLINE: Duration = Duration::from_secs(60);

pub struct RedisServer {
    /// Killed and reaped on drop: no Redis outlives its test.
    child: Child,
    /// Where it listens (loopback only).
    addr: SocketAddr,
    /// `redis-server --version`, printed with every mismatch: the replies are this version's.
    version: String,
    /// Holds `--dir` and the log, kept for as long as the server runs.
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server`; panics with how to install it when it is not on PATH.
    pub fn start() -> Self {
        let version = match Command::new("redis-server").arg("--version").output() {
            // "Redis server v=7.0.15 sha=... bits=64 build=...": the version is v=.
            Ok(out) => String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .find_map(|word| word.strip_prefix("v="))
                .unwrap_or("(unknown version)")
                .to_string(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            Err(err) => panic!("redis-server --version: {err}"),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut child = spawn(port, &dir);
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if wait_ready(&mut child, addr) {
                return Self { child, addr, version, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "redis-server did not start in {PORT_ATTEMPTS} attempts; its log:\n{}",
            std::fs::read_to_string(log_path(&dir)).unwrap_or_default()
        );
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn version(&self) -> &str {
        &self.version
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // A Redis that exited on its own (a crash) says why in its log.
        if !matches!(self.child.try_wait(), Ok(None)) {
            eprintln!(
                "redis-server log ({}):\n{}",
                self.version,
                std::fs::read_to_string(log_path(&self.dir)).unwrap_or_default()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn log_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("redis.log")
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let probe = TcpListener::bind(("127.0.0.1", 0)).expect("bind a probe port");
    probe.local_addr().expect("probe addr").port()
}

/// `redis-server` on `port`: loopback only, no RDB snapshots (`--save ''`), no AOF, its files
/// in `dir`, in the foreground so that it stays our child.
fn spawn(port: u16, dir: &tempfile::TempDir) -> Child {
    let log = std::fs::File::create(log_path(dir)).expect("redis log file");
    Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log file"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|err| match err.kind() {
            std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
            _ => panic!("spawn redis-server: {err}"),
        })
}

/// Waits until `addr` answers PING; `false` if the child exited first (its port was taken).
fn wait_ready(child: &mut Child, addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if child.try_wait().expect("redis-server status").is_some() {
            return false;
        }
        if let Ok(mut conn) = TcpStream::connect(addr) {
            let mut pong = [0u8; 7];
            let answered =
                conn.write_all(b"PING\r\n").is_ok() && conn.read_exact(&mut pong).is_ok();
            if answered && &pong == b"+PONG\r\n" {
                return true;
            }
        }
        assert!(Instant::now() < deadline, "redis-server on {addr} did not answer PING");
        std::thread::sleep(Duration::from_millis(10));
    }
}
