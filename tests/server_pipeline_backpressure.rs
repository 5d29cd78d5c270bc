//! Replies a client has not read yet (issue #22, item 4): a client that sends its whole pipeline
//! before reading is served, one connection's pending replies stay bounded by
//! `--max-pending-reply-bytes`, and Redis's `client-output-buffer-limit` closes a client that
//! never reads, with Redis's CONFIG syntax and replies.

mod server_support;

use std::time::Duration;

use server_support::{TestNode, cmd, start, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bounds a step that must not stall (a stall was forever: the node and the client each waited
/// for the other to read).
const NO_STALL: Duration = Duration::from_secs(60);

/// `count` pipelined `GET key` requests.
fn gets(key: &str, count: usize) -> Vec<u8> {
    cmd(&["GET", key]).repeat(count)
}

/// The bulk reply to a GET of `value`.
fn bulk(value: &str) -> Vec<u8> {
    format!("${}\r\n{value}\r\n", value.len()).into_bytes()
}

async fn set(node: &TestNode, key: &str, value: &str) {
    let mut r = node.redis().await;
    let _: () = redis::cmd("SET").arg(key).arg(value).query_async(&mut r).await.unwrap();
}

/// The largest `omem=` in `CLIENT LIST`: the most reply bytes any connection has waiting.
async fn max_omem(r: &mut redis::aio::MultiplexedConnection) -> u64 {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(r).await.unwrap();
    list.lines()
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("omem=")))
        .map(|omem| omem.parse::<u64>().unwrap())
        .max()
        .unwrap_or(0)
}

/// An INFO field's value.
async fn info_field(
    r: &mut redis::aio::MultiplexedConnection,
    section: &str,
    field: &str,
) -> String {
    let info: String = redis::cmd("INFO").arg(section).query_async(r).await.unwrap();
    let prefix = format!("{field}:");
    info.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {field} in {info}"))
        .to_string()
}

/// 200,000 GETs of a 100-byte key sent in one write before any reply is read (25 MB of requests,
/// 14 MB of replies: more than the sockets buffer either way): the write completes and every
/// reply arrives, in order. Before the fix the node stopped reading until its replies were
/// written and the client stopped reading until its requests were: neither moved again.
#[tokio::test]
async fn a_client_that_sends_its_whole_pipeline_before_reading_is_served() {
    let node = start().await;
    let (key, value) = ("k".repeat(100), "v".repeat(64));
    set(&node, &key, &value).await;
    let count = 200_000;
    let mut stream = TcpStream::connect(node.resp()).await.unwrap();
    tokio::time::timeout(NO_STALL, stream.write_all(&gets(&key, count)))
        .await
        .expect("the whole pipeline is taken before any reply is read")
        .unwrap();
    let expected = bulk(&value).repeat(count);
    let mut replies = vec![0u8; expected.len()];
    tokio::time::timeout(NO_STALL, stream.read_exact(&mut replies))
        .await
        .expect("every reply arrives")
        .unwrap();
    assert!(replies == expected, "200000 replies, each the value, in order");
}

/// With `--max-pending-reply-bytes` at 256 KiB, a client that sends 20 MB worth of GETs and does
/// not read: its pending replies reach the threshold (the node has stopped taking its commands)
/// and stay within it plus one parsed-ahead chunk of replies (32); once the client reads, every
/// reply arrives and its writer finishes.
#[tokio::test]
async fn pending_replies_stay_under_the_pause_threshold_while_the_client_does_not_read() {
    let pause = 256 * 1024;
    let node = start_with(|c| c.max_pending_reply_bytes = pause).await;
    let value = "v".repeat(1000);
    set(&node, "k", &value).await;
    let count = 20_000;
    let stream = TcpStream::connect(node.resp()).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move { writer.write_all(&gets("k", count)).await });

    let mut r = node.redis().await;
    let bound = (pause + 32 * bulk(&value).len()) as u64;
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + NO_STALL;
    while seen < pause as u64 {
        assert!(tokio::time::Instant::now() < deadline, "pending replies never reached {pause}");
        seen = max_omem(&mut r).await;
        assert!(seen <= bound, "omem {seen} past {bound}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Paused: it stays there while the client still reads nothing.
    for _ in 0..20 {
        let omem = max_omem(&mut r).await;
        assert!((pause as u64..=bound).contains(&omem), "omem {omem} outside {pause}..={bound}");
        let recent: u64 =
            info_field(&mut r, "clients", "client_recent_max_output_buffer").await.parse().unwrap();
        assert!(recent <= bound, "client_recent_max_output_buffer {recent} past {bound}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let expected = bulk(&value).repeat(count);
    let mut replies = vec![0u8; expected.len()];
    tokio::time::timeout(NO_STALL, reader.read_exact(&mut replies))
        .await
        .expect("every reply arrives once the client reads")
        .unwrap();
    assert!(replies == expected, "20000 replies, each the value, in order");
    tokio::time::timeout(NO_STALL, writing).await.expect("writer done").unwrap().unwrap();
    let deadline = tokio::time::Instant::now() + NO_STALL;
    while max_omem(&mut r).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "replies still pending after all were read"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `count` GETs of a 10 KB value on a connection that never reads, and waits until the
/// node has closed it for its output buffer; returns what the client then reads.
async fn never_read_until_closed(node: &TestNode, count: usize) -> Vec<u8> {
    let mut stream = TcpStream::connect(node.resp()).await.unwrap();
    stream.write_all(&cmd(&["CLIENT", "ID"])).await.unwrap();
    let mut line = [0u8; 16];
    let n = stream.read(&mut line).await.unwrap();
    let id = String::from_utf8_lossy(&line[1..n]).trim_end().to_string();
    stream.write_all(&gets("big", count)).await.unwrap();
    let mut r = node.redis().await;
    let deadline = tokio::time::Instant::now() + NO_STALL;
    loop {
        let closed = info_field(&mut r, "stats", "client_output_buffer_limit_disconnections").await;
        if closed == "1" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the client was never closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut r).await.unwrap();
    assert!(!list.contains(&format!("id={id} ")), "client {id} closed: {list}");
    let mut got = Vec::new();
    // Replies the node dropped while bytes were unread on its side may reach us as a reset.
    let _ = tokio::time::timeout(NO_STALL, stream.read_to_end(&mut got)).await.expect("closed");
    got
}

/// `client-output-buffer-limit normal 1mb 0 0`: a client that asks for 20 MB and never reads is
/// closed once 1 MB waits (not the pause threshold, 64 MB by default), counted in INFO and
/// `/metrics`, and does not get every reply; other clients are served.
#[tokio::test]
async fn the_hard_output_limit_closes_a_client_that_never_reads() {
    let node = start().await;
    set(&node, "big", &"x".repeat(10_000)).await;
    let mut r = node.redis().await;
    let ok: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("normal 1mb 0 0")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(ok, "OK");
    let count = 2000;
    let got = never_read_until_closed(&node, count).await;
    assert!(got.len() < count * bulk(&"x".repeat(10_000)).len(), "closed before every reply");
    let metrics = server_support::get_text(&node.admin_url("/metrics")).await;
    assert!(
        metrics.lines().any(|l| l == "mapcache_client_output_buffer_limit_disconnections_total 1"),
        "{metrics}"
    );
    let pong: String = redis::cmd("PING").query_async(&mut r).await.unwrap();
    assert_eq!(pong, "PONG");
    let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query_async(&mut r).await.unwrap();
    let closed = info_field(&mut r, "stats", "client_output_buffer_limit_disconnections").await;
    assert_eq!(closed, "0", "CONFIG RESETSTAT starts the count again");
}

/// `normal 0 512kb 1`: a client whose replies wait past 512 KB for more than a second is closed,
/// even though it sends nothing more (the node checks when the second is up, not only when a
/// reply is added).
#[tokio::test]
async fn the_soft_output_limit_closes_a_client_over_it_for_its_seconds() {
    let node = start().await;
    set(&node, "big", &"x".repeat(10_000)).await;
    let mut r = node.redis().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("normal 0 512kb 1")
        .query_async(&mut r)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    never_read_until_closed(&node, 2000).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "not before its second");
}

/// CONFIG GET and SET of `client-output-buffer-limit`, byte for byte as Redis 7.0.15 answers:
/// the defaults, units, the class-by-class update, and each error, after which nothing changed.
#[tokio::test]
async fn client_output_buffer_limit_config_round_trips_as_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    let get = cmd(&["CONFIG", "GET", "client-output-buffer-limit"]);
    let shown = |value: &str| {
        format!("*2\r\n$26\r\nclient-output-buffer-limit\r\n${}\r\n{value}\r\n", value.len())
    };
    c.expect(
        &get,
        shown("normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60").as_bytes(),
    )
    .await;
    let set = |value: &str| cmd(&["CONFIG", "SET", "client-output-buffer-limit", value]);
    c.expect(&set("normal 1mb 512kb 10"), b"+OK\r\n").await;
    c.expect(&set("replica 1k 2KB 3"), b"+OK\r\n").await;
    let now = "normal 1048576 524288 10 slave 1000 2048 3 pubsub 33554432 8388608 60";
    c.expect(&get, shown(now).as_bytes()).await;
    let failed = |why: &str| {
        format!(
            "-ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - {why}\r\n"
        )
    };
    let refused = [
        ("normal 1mb", "Wrong number of arguments in buffer limit configuration."),
        ("master 1 2 3", "Invalid client class specified in buffer limit configuration."),
        (
            "normal 1x 2 3",
            "Error in hard, soft or soft_seconds setting in buffer limit configuration.",
        ),
        (
            "normal 1 2 -3",
            "Error in hard, soft or soft_seconds setting in buffer limit configuration.",
        ),
    ];
    for (value, why) in refused {
        c.expect(&set(value), failed(why).as_bytes()).await;
    }
    c.expect(&get, shown(now).as_bytes()).await;
}
