//! The real `mapcache serve` binary: SIGTERM drains, snapshots and exits 0; restart restores
//! keys and absolute TTLs; kill -9 mid-snapshot never leaves a half-loadable state; corrupt and
//! torn snapshots are skipped in favour of the previous good one.

mod server_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mapcache::server::snapshot;
use server_support::{Raw, cmd, file_names, get_json, post_json, start_with};

struct Proc {
    child: Child,
    resp: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on free ports and parses its `listening resp=ADDR admin=ADDR` line.
fn spawn(data_dir: &Path) -> Proc {
    spawn_with_env(data_dir, &[])
}

/// [`spawn`] with extra environment variables (test hooks).
fn spawn_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Proc {
    spawn_with(data_dir, env, "20", Stdio::null())
}

/// [`spawn`] with extra environment variables, a `--shutdown-grace` in seconds, and where its
/// log goes.
fn spawn_with(data_dir: &Path, env: &[(&str, &str)], grace: &str, log: Stdio) -> Proc {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mapcache"))
        .args([
            "serve",
            "--port",
            "0",
            "--admin-port",
            "0",
            "--shards",
            "4",
            "--shutdown-grace",
            grace,
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("MAPCACHE_ADMIN_TOKEN")
        .env_remove("MAPCACHE_PASSWORD")
        .env_remove(snapshot::BLOCK_DELAY_ENV)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn mapcache serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("listening line");
    let mut resp = None;
    let mut admin = None;
    for word in line.split_whitespace() {
        if let Some(a) = word.strip_prefix("resp=") {
            resp = a.parse().ok();
        }
        if let Some(a) = word.strip_prefix("admin=") {
            admin = a.parse().ok();
        }
    }
    assert!(line.starts_with("listening resp="), "unexpected first line {line:?}");
    Proc { child, resp: resp.expect("resp addr"), admin: admin.expect("admin addr") }
}

fn signal(proc: &Proc, sig: &str) {
    let status =
        Command::new("kill").arg(sig).arg(proc.child.id().to_string()).status().expect("kill");
    assert!(status.success());
}

fn wait_exit(proc: &mut Proc, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = proc.child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit in {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (off the runtime) for the process to exit, at most 30 s, and reaps it.
async fn exit_status(mut proc: Proc) -> std::process::ExitStatus {
    tokio::task::spawn_blocking(move || wait_exit(&mut proc, Duration::from_secs(30)))
        .await
        .expect("join")
}

#[tokio::test]
async fn sigterm_drains_snapshots_exits_zero_and_restart_restores_keys_and_ttls() {
    let dir = tempfile::tempdir().expect("dir");
    let proc = spawn(dir.path());
    let mut c = Raw::connect(proc.resp).await;
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend(cmd(&["SET", &format!("k{i}"), &format!("v{i}")]));
    }
    c.expect(&batch, &b"+OK\r\n".repeat(1000)).await;
    let expire_at = "4102444800000"; // 2100-01-01, absolute
    c.expect(&cmd(&["SET", "ttl", "x", "PXAT", expire_at]), b"+OK\r\n").await;
    signal(&proc, "-TERM");
    let status = exit_status(proc).await;
    assert_eq!(status.code(), Some(0));
    assert_eq!(file_names(dir.path()), ["mapcache-000001.snap"]);

    let proc = spawn(dir.path());
    let mut c = Raw::connect(proc.resp).await;
    c.expect(&cmd(&["DBSIZE"]), b":1001\r\n").await;
    c.expect(&cmd(&["GET", "k777"]), b"$4\r\nv777\r\n").await;
    c.expect(&cmd(&["PEXPIRETIME", "ttl"]), format!(":{expire_at}\r\n").as_bytes()).await;
    let (status, stats) = get_json(&format!("http://{}/v1/stats", proc.admin)).await;
    assert_eq!((status, stats["keys"].as_u64()), (200, Some(1001)));
}

/// Writes `count` keys `{prefix}:{i}` with a 200-byte value in one pipeline.
async fn fill(c: &mut Raw, prefix: &str, count: usize) {
    let value = "v".repeat(200);
    let mut batch = Vec::new();
    for i in 0..count {
        batch.extend(cmd(&["SET", &format!("{prefix}:{i}"), &value]));
    }
    c.expect(&batch, &b"+OK\r\n".repeat(count)).await;
}

/// `EXISTS {prefix}:0 .. {prefix}:{count-1}` in one command.
fn exists_all(prefix: &str, count: usize) -> Vec<u8> {
    let keys: Vec<String> = (0..count).map(|i| format!("{prefix}:{i}")).collect();
    let mut args = vec!["EXISTS"];
    args.extend(keys.iter().map(String::as_str));
    cmd(&args)
}

#[tokio::test]
async fn kill_9_while_a_snapshot_is_half_written_leaves_the_previous_snapshot_loadable() {
    let dir = tempfile::tempdir().expect("dir");
    // Generation 1, complete: 20,000 keys r0:*.
    let first = spawn(dir.path());
    let mut c = Raw::connect(first.resp).await;
    fill(&mut c, "r0", 20_000).await;
    let (status, snap) = post_json(&format!("http://{}/v1/snapshot", first.admin), None).await;
    assert_eq!((status, snap["generation"].as_u64()), (200, Some(1)));
    drop(first);

    // Generation 2 (40,000 keys, ~9 MB) by a node whose snapshot writer stops for ten minutes
    // after its first ~1 MB block: the kill below lands while the temp file is partly written.
    let second = spawn_with_env(dir.path(), &[(snapshot::BLOCK_DELAY_ENV, "600000")]);
    let mut c = Raw::connect(second.resp).await;
    c.expect(&cmd(&["DBSIZE"]), b":20000\r\n").await;
    fill(&mut c, "r1", 20_000).await;
    let url = format!("http://{}/v1/snapshot", second.admin);
    let pending =
        tokio::spawn(
            async move { server_support::http().post(url).send().await.map(|r| r.status()) },
        );
    let tmp = dir.path().join("mapcache-000002.snap.tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::metadata(&tmp).map_or(0, |m| m.len()) < 1 << 20 {
        assert!(Instant::now() < deadline, "the second snapshot never wrote its first block");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&second, "-KILL");
    let status = exit_status(second).await;
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "killed by SIGKILL, not finished: {status:?}");
    assert!(pending.await.expect("join").is_err(), "the snapshot request died with the process");
    // The kill landed mid-write: the temp file is there, partly written, and never renamed.
    assert_eq!(file_names(dir.path()), ["mapcache-000001.snap", "mapcache-000002.snap.tmp"]);
    let tmp_len = std::fs::metadata(&tmp).expect("temp file").len();
    assert!(
        (1 << 20..2 << 20).contains(&tmp_len),
        "the temp file holds the header and one block of the ~9 MB snapshot: {tmp_len} bytes"
    );

    let third = spawn(dir.path());
    let mut c = Raw::connect(third.resp).await;
    c.expect(&cmd(&["DBSIZE"]), b":20000\r\n").await;
    c.expect(&exists_all("r0", 20_000), b":20000\r\n").await;
    c.expect(&exists_all("r1", 20_000), b":0\r\n").await;
    assert_eq!(
        file_names(dir.path()),
        ["mapcache-000001.snap"],
        "the temp file of the interrupted write is removed at start"
    );
    let text = server_support::http()
        .get(format!("http://{}/metrics", third.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        !text.contains("mapcache_snapshot_failures_total{"),
        "the temp file is never read as a snapshot, so nothing failed to load:\n{text}"
    );
}

#[tokio::test]
async fn corrupt_and_torn_snapshots_are_skipped_for_the_previous_good_one() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_path_buf();
    let node = start_with(|c| c.data_dir = data.clone()).await;
    let mut c = node.raw().await;
    for i in 0..100 {
        c.expect(&cmd(&["SET", &format!("a{i}"), "1"]), b"+OK\r\n").await;
    }
    let (_, first) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!(first["generation"], 1);
    for i in 0..50 {
        c.expect(&cmd(&["SET", &format!("b{i}"), "2"]), b"+OK\r\n").await;
    }
    let (_, second) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!((second["generation"].as_u64(), second["keys"].as_u64()), (Some(2), Some(150)));
    node.handle.abort();

    // Flip a byte in the newest snapshot, and add an even newer one cut in half.
    let second_path = data.join("mapcache-000002.snap");
    let mut bytes = std::fs::read(&second_path).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&second_path, &bytes).expect("write");
    std::fs::write(data.join("mapcache-000003.snap"), &bytes[..middle]).expect("write torn");

    let node = start_with(|c| c.data_dir = data.clone()).await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["DBSIZE"]), b":100\r\n").await;
    let metrics =
        server_support::http().get(node.admin_url("/metrics")).send().await.expect("metrics");
    let text = metrics.text().await.expect("text");
    assert!(text.contains("mapcache_snapshot_failures_total{reason=\"checksum\"} 1"), "{text}");
    assert!(text.contains("mapcache_snapshot_failures_total{reason=\"truncated\"} 1"), "{text}");
    // The next snapshot sorts after every file found, valid or not (those are moved aside).
    let (_, next) = post_json(&node.admin_url("/v1/snapshot"), None).await;
    assert_eq!(next["generation"], 4);
}

/// A node whose snapshot writer stops for ten minutes after each ~1 MB block (a disk that
/// hangs), holding 20,000 keys (~4.5 MB of snapshot), its log in `log`.
async fn spawn_with_a_hung_disk(dir: &Path, grace: &str, log: &Path) -> Proc {
    let log = std::fs::File::create(log).expect("log file");
    let proc = spawn_with(dir, &[(snapshot::BLOCK_DELAY_ENV, "600000")], grace, log.into());
    let mut c = Raw::connect(proc.resp).await;
    fill(&mut c, "k", 20_000).await;
    proc
}

#[tokio::test]
async fn past_the_shutdown_grace_the_process_exits_even_while_its_snapshot_hangs() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let proc = spawn_with_a_hung_disk(&data, "1", &log).await;
    signal(&proc, "-TERM");
    // Without the hard limit the process waited for the snapshot (ten minutes a block).
    let status = exit_status(proc).await;
    assert_eq!(status.code(), Some(1), "a shutdown cut short is a failure: {status:?}");
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(
        log.contains("shutdown did not finish within the grace period; exiting now"),
        "the log says why:\n{log}"
    );
    // Only the temp file of the snapshot cut short is left, for the next start to remove.
    assert_eq!(file_names(&data), ["mapcache-000001.snap.tmp"]);
}

#[tokio::test]
async fn a_second_sigterm_exits_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let log = dir.path().join("serve.log");
    let proc = spawn_with_a_hung_disk(&data, "600", &log).await;
    signal(&proc, "-TERM");
    // The first signal is being handled once the drain's snapshot has started writing.
    let tmp = data.join("mapcache-000001.snap.tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tmp.exists() {
        assert!(Instant::now() < deadline, "the drain's snapshot never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&proc, "-TERM");
    let status = exit_status(proc).await;
    assert_eq!(status.code(), Some(1), "{status:?}");
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(log.contains("second signal: exiting now"), "the log says why:\n{log}");
}

#[tokio::test]
async fn the_admin_token_from_the_environment_is_trimmed_as_the_file_is() {
    let dir = tempfile::tempdir().expect("dir");
    let proc = spawn_with_env(dir.path(), &[("MAPCACHE_ADMIN_TOKEN", " t0k3n\n")]);
    let url = format!("http://{}/v1/snapshot", proc.admin);
    let (status, _) = post_json(&url, Some("t0k3n")).await;
    assert_eq!(status, 200, "the token as clients send it, without the newline");
    let (status, _) = post_json(&url, Some(" t0k3n")).await;
    assert_eq!(status, 401);
}
