//! Shared helpers for the cache-node integration tests: start a node in-process on port 0, talk
//! raw RESP to it, call its admin API.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use mapcache::server::{Config, Node, NodeHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A node in a temp data dir, stopped with the dir when dropped by the test's end.
pub struct TestNode {
    pub handle: NodeHandle,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> TestNode {
    start_with(|_| {}).await
}

pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestNode {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::for_test(dir.path());
    configure(&mut config);
    let handle = Node::start(config).await.expect("node starts");
    TestNode { handle, dir }
}

impl TestNode {
    pub fn resp(&self) -> SocketAddr {
        self.handle.resp_addr()
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.handle.admin_addr(), path)
    }

    pub async fn raw(&self) -> Raw {
        Raw::connect(self.resp()).await
    }

    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        // The crate's default 500 ms response timeout is too short for a debug build on a loaded
        // 2-core CI machine; a hung reply still fails the test, just later.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(10)))
            .set_response_timeout(Some(std::time::Duration::from_secs(30)));
        let client = redis::Client::open(format!("redis://{}/", self.resp())).expect("client");
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("redis connection")
    }
}

/// A raw TCP connection for byte-exact replies.
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self { stream: TcpStream::connect(addr).await.expect("connect") }
    }

    /// One whole reply frame, as sent (aggregates with their elements, RESP2 or RESP3).
    pub async fn read_frame(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut pending = 1usize;
        while pending > 0 {
            pending -= 1;
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                line.push(self.stream.read_u8().await.expect("read"));
            }
            let n: i64 =
                std::str::from_utf8(&line[1..line.len() - 2]).unwrap_or("0").parse().unwrap_or(0);
            match line[0] {
                b'$' | b'=' | b'!' if n >= 0 => {
                    let mut body = vec![0; n as usize + 2];
                    self.stream.read_exact(&mut body).await.expect("read");
                    line.extend(body);
                }
                b'*' | b'~' | b'>' if n > 0 => pending += n as usize,
                b'%' if n > 0 => pending += 2 * n as usize,
                _ => {}
            }
            out.extend(line);
        }
        out
    }

    /// Sends `request` and asserts the reply is exactly `expected`.
    pub async fn expect(&mut self, request: &[u8], expected: &[u8]) {
        self.stream.write_all(request).await.expect("write");
        let got = self.read_exact(expected.len()).await;
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(expected),
            "request {:?}",
            String::from_utf8_lossy(request)
        );
    }

    pub async fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_exact(&mut buf))
            .await
            .expect("reply in time")
            .expect("read reply");
        buf
    }

    /// Sends `request`, reads until the server closes the connection, returns everything read.
    pub async fn send_until_closed(&mut self, request: &[u8]) -> Vec<u8> {
        self.stream.write_all(request).await.expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), self.stream.read_to_end(&mut out))
            .await
            .expect("server closes the connection")
            .expect("read");
        out
    }
}

/// Encodes a command as a RESP multibulk.
pub fn cmd(args: &[&str]) -> Vec<u8> {
    cmd_bytes(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>())
}

/// A RESP multibulk of raw (not necessarily UTF-8) arguments.
pub fn cmd_bytes(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend(format!("${}\r\n", a.len()).into_bytes());
        out.extend_from_slice(a);
        out.extend(b"\r\n");
    }
    out
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("http client")
}

/// The body of a GET (the Prometheus text of `/metrics`, say).
pub async fn get_text(url: &str) -> String {
    http().get(url).send().await.expect("GET").text().await.expect("body")
}

pub async fn get_json(url: &str) -> (u16, serde_json::Value) {
    let resp = http().get(url).send().await.expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

pub async fn post_json(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let mut req = http().post(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("POST");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// Polls `condition` every 5 ms; fails the test after a minute.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Holds shard `shard`'s lock on a thread of its own until the returned sender is dropped or
/// sent to; returns once the lock is held.
pub fn hold_shard_lock(
    state: &std::sync::Arc<mapcache::server::state::NodeState>,
    shard: usize,
) -> (std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let (held_tx, held_rx) = std::sync::mpsc::channel::<()>();
    let state = state.clone();
    let holder = std::thread::spawn(move || {
        let _guard = state.store.lock(shard, None);
        held_tx.send(()).expect("signal");
        let _ = release_rx.recv();
    });
    held_rx.recv().expect("held");
    (release_tx, holder)
}

/// The names of the files in `dir`, sorted.
pub fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// The item `name` of a `/v1/checklist` answer.
pub fn checklist_item(checklist: &serde_json::Value, name: &str) -> serde_json::Value {
    let items = checklist["items"].as_array().expect("items");
    items.iter().find(|i| i["name"] == name).cloned().expect(name)
}

/// COMMAND INFO's reply (RESP2) for one command: name, arity, flags, key positions (first, last,
/// step), and the empty categories, tips, key specs and subcommands this node serves.
pub fn command_info_reply(
    name: &str,
    arity: i32,
    flags: &[&str],
    keys: (i32, i32, i32),
    categories: &[&str],
) -> Vec<u8> {
    let mut out =
        format!("*1\r\n*10\r\n${}\r\n{name}\r\n:{arity}\r\n*{}\r\n", name.len(), flags.len());
    for flag in flags {
        out.push_str(&format!("+{flag}\r\n"));
    }
    out.push_str(&format!(
        ":{}\r\n:{}\r\n:{}\r\n*{}\r\n",
        keys.0,
        keys.1,
        keys.2,
        categories.len()
    ));
    for category in categories {
        out.push_str(&format!("+@{category}\r\n"));
    }
    out.push_str("*0\r\n*0\r\n*0\r\n");
    out.into_bytes()
}
