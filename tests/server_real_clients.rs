//! Real application clients against the node: redis-py (`pipeline()`, `transaction()`, `Lock`,
//! `register_script`) and the Node.js clients ioredis (`multi()`, `watch`, `defineCommand`, a Lua
//! rate limiter) and node-redis (`multi()`, WATCH and `WatchError`, `eval`/`evalSha`,
//! `defineScript`), each in RESP2 and RESP3. The scripts in `tests/clients/` check every reply
//! as the client library parses it; this test runs them against an in-process node and then
//! reads back, through the `redis` crate, what they say they left in the keyspace, so a node that
//! ignored their writes cannot pass.
//!
//! Needs `pip install -r scripts/requirements.txt` (the `redis` package) and
//! `npm ci --prefix tests/clients`; `.ci/run` does both. Without them this test fails and says
//! how to install them (it never passes vacuously). The scripts run unchanged against a real
//! Redis 7 (docs/architecture.md, "Tests: real client libraries").

mod server_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use server_support::{TestNode, start};
use tokio::process::Command;

/// Long enough for a debug node on a loaded 2-core machine; only a hung script reaches it.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs `program args.. <host> <port>` against `node`; fails the test, with the script's output,
/// unless it exits 0 and its last line is `last_line`.
async fn run_client_script(node: &TestNode, program: &str, args: &[&str], last_line: &str) {
    let addr = node.resp();
    let mut command = Command::new(program);
    command
        .args(args)
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let shown = format!("{program} {} {addr}", args.join(" "));
    let output = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("`{shown}` still running after {SCRIPT_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("`{shown}` could not start: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim_end().ends_with(last_line),
        "`{shown}` failed ({})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    assert!(!stdout.contains("FAIL "), "{stdout}");
    // The checks' lines, shown with `cargo test -- --nocapture`.
    println!("{stdout}");
}

/// Fails the test unless `program args` exits 0, with `install` as the way to fix it.
async fn require(what: &str, program: &str, args: &[&str], install: &str) {
    let ran = Command::new(program)
        .args(args)
        .current_dir(clients_dir())
        .stdin(Stdio::null())
        .output()
        .await;
    let why = match ran {
        Ok(output) if output.status.success() => return,
        Ok(output) => String::from_utf8_lossy(&output.stderr).trim_end().to_string(),
        Err(e) => format!("{program}: {e}"),
    };
    panic!("{what} is missing; install it with `{install}` (.ci/run does)\n{why}");
}

/// The values of `keys`, read through the `redis` crate.
async fn values(node: &TestNode, keys: &[&str]) -> Vec<Option<String>> {
    let mut conn = node.redis().await;
    redis::cmd("MGET").arg(keys).query_async(&mut conn).await.expect("MGET")
}

/// How many of `keys` exist.
async fn existing(node: &TestNode, keys: &[&str]) -> i64 {
    let mut conn = node.redis().await;
    redis::cmd("EXISTS").arg(keys).query_async(&mut conn).await.expect("EXISTS")
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

#[tokio::test]
async fn redis_py_pipeline_transaction_lock_and_scripts_work() {
    require(
        "Python's redis package",
        "python3",
        &["-c", "import redis"],
        "python3 -m pip install -r scripts/requirements.txt",
    )
    .await;
    let node = start().await;
    run_client_script(&node, "python3", &["redis_py_check.py"], "all redis-py checks passed").await;

    // What redis_py_check.py's docstring says it leaves.
    let keys = ["py:pipe:counter", "py:pipe:name", "py:watched", "py:cas", "py:script"];
    assert_eq!(values(&node, &keys).await, some(&["15", "mapcache!", "changed", "200", "12"]));
    let gone = ["py:watch:side", "py:qerr:a", "py:qerr:b", "py:lock", "py:lock:dead"];
    assert_eq!(existing(&node, &gone).await, 0);
}

#[tokio::test]
async fn ioredis_and_node_redis_multi_watch_and_scripts_work() {
    require("Node.js", "node", &["--version"], "apt-get install nodejs").await;
    for package in ["ioredis", "redis"] {
        let installed = clients_dir().join("node_modules").join(package).join("package.json");
        assert!(
            installed.exists(),
            "{} is missing; install the Node.js clients with `npm ci --prefix tests/clients` \
             (.ci/run does)",
            installed.display()
        );
    }
    let node = start().await;
    run_client_script(&node, "node", &["node_check.mjs"], "all Node.js client checks passed").await;

    // What node_check.mjs's header says it leaves.
    let keys = ["io:multi", "io:watched", "io:capped", "io:limiter", "nr:multi", "nr:watched"];
    assert_eq!(values(&node, &keys).await, some(&["2", "changed", "10", "7", "2", "changed"]));
    assert_eq!(values(&node, &["nr:eval"]).await, some(&["9"]));
    let gone = ["io:queued", "io:text", "io:direct", "io:watch:side", "nr:text", "nr:watch:side"];
    assert_eq!(existing(&node, &gone).await, 0);
}
