//! What a client cannot do to the node: hold admin connections open with slow headers, open
//! more of them than the cap, guess the AUTH password at speed, or reach a password-less node
//! from another host (Redis's protected mode).

mod server_support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use server_support::{Raw, cmd, get_text, start_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (an orderly close or a reset), at most until
/// `deadline`; what was read.
async fn read_until_closed(stream: &mut TcpStream, deadline: tokio::time::Instant) -> Vec<u8> {
    let mut out = Vec::new();
    let read = tokio::time::timeout_at(deadline, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection in time");
    out
}

#[tokio::test]
async fn a_thousand_slow_header_admin_connections_are_cut_off_and_the_api_keeps_answering() {
    let node = start_with(|c| {
        c.admin_header_timeout = Duration::from_secs(1);
        // The cap is not what closes them here: the header timeout is.
        c.admin_max_connections = 2000;
    })
    .await;
    let admin = node.handle.admin_addr();
    let mut slow = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(admin).await.expect("connect");
        // Headers begun, never finished (slowloris).
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n").await.expect("write");
        slow.push(stream);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for stream in &mut slow {
        let got = read_until_closed(stream, deadline).await;
        assert!(!got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    }
    let health = get_text(&node.admin_url("/healthz")).await;
    assert_eq!(health, "ok");
}

#[tokio::test]
async fn an_idle_admin_connection_is_closed_after_the_header_timeout() {
    let node = start_with(|c| c.admin_header_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(node.handle.admin_addr()).await.expect("connect");
    // One request answered, then nothing: the connection is closed, not kept alive forever.
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: node\r\n\r\n").await.expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = read_until_closed(&mut stream, deadline).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nok"), "{text}");
}

#[tokio::test]
async fn admin_connections_past_the_cap_are_answered_503_and_closed_at_once() {
    let node = start_with(|c| {
        c.admin_max_connections = 4;
        c.admin_header_timeout = Duration::from_secs(600);
    })
    .await;
    let admin = node.handle.admin_addr();
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(TcpStream::connect(admin).await.expect("connect"));
    }
    let mut fifth = TcpStream::connect(admin).await.expect("connect");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = read_until_closed(&mut fifth, deadline).await;
    assert_eq!(
        String::from_utf8_lossy(&got),
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: 38\r\nconnection: close\r\n\r\n{\"error\":\"too many admin connections\"}"
    );
    // A connection that ends gives its place back.
    drop(held.pop());
    let url = node.admin_url("/metrics");
    let mut metrics = String::new();
    for _ in 0..200 {
        match server_support::http().get(&url).send().await {
            Ok(resp) if resp.status() == 200 => {
                metrics = resp.text().await.expect("body");
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(metrics.contains("mapcache_admin_connections_refused_total 1\n"), "{metrics}");
}

const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";

#[tokio::test]
async fn failed_auths_are_held_back_longer_each_time_and_a_success_resets_the_count() {
    let node = start_with(|c| c.requirepass = Some("s3cret".into())).await;
    let mut c = node.raw().await;
    for least_ms in [100, 200, 400] {
        let sent = Instant::now();
        c.expect(&cmd(&["AUTH", "guess"]), WRONGPASS).await;
        let waited = sent.elapsed();
        assert!(waited >= Duration::from_millis(least_ms), "held back {waited:?}");
    }
    c.expect(&cmd(&["AUTH", "s3cret"]), b"+OK\r\n").await;
    let sent = Instant::now();
    c.expect(&cmd(&["HELLO", "2", "AUTH", "default", "guess"]), WRONGPASS).await;
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(100), "HELLO's AUTH too: {waited:?}");
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("mapcache_auth_failures_total 4\n"), "{metrics}");
}

#[tokio::test]
async fn pipelined_guesses_are_each_held_back_while_other_clients_are_served() {
    // One connection thread: the throttled client and the other one share it.
    let node = start_with(|c| {
        c.requirepass = Some("s3cret".into());
        c.io_threads = 1;
    })
    .await;
    let mut guesser = node.raw().await;
    let guesses: Vec<u8> = (0..6).flat_map(|i| cmd(&["AUTH", &format!("guess{i}")])).collect();
    let sent = Instant::now();
    guesser.stream.write_all(&guesses).await.expect("write");
    // 100 + 200 + 400 + 800 + 1600 ms before the sixth guess is even tried.
    let mut other = node.raw().await;
    other.expect(&cmd(&["AUTH", "s3cret"]), b"+OK\r\n").await;
    other.expect(&cmd(&["PING"]), b"+PONG\r\n").await;
    let mut early = vec![0u8; WRONGPASS.len() * 6];
    let ready = guesser.stream.try_read(&mut early).unwrap_or(0);
    assert!(ready < WRONGPASS.len() * 6, "the guesses are still held back");
    let mut replies = early[..ready].to_vec();
    replies.extend(guesser.read_exact(WRONGPASS.len() * 6 - ready).await);
    assert_eq!(replies, WRONGPASS.repeat(6));
    let waited = sent.elapsed();
    assert!(waited >= Duration::from_millis(3100 + 2000), "held back {waited:?}");
}

/// INFO stats' `rejected_connections:N` line.
async fn rejected_connections(c: &mut Raw) -> Option<String> {
    c.stream.write_all(&cmd(&["INFO", "stats"])).await.expect("write");
    let mut text = Vec::new();
    let mut buf = [0u8; 8192];
    // The line is in the middle of the section: what follows it may still be arriving.
    while !String::from_utf8_lossy(&text).contains("evicted_keys:") {
        let n = c.stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "INFO reply");
        text.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&text).into_owned();
    text.lines().find(|l| l.starts_with("rejected_connections:")).map(str::to_string)
}

/// An address of this machine other than loopback (the one its default route leaves from), or
/// None on a machine without one.
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it only picks the route and so the local address.
    socket.connect("192.0.2.1:9").or_else(|_| socket.connect("8.8.8.8:53")).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn protected_mode_refuses_other_hosts_with_redis_words_until_turned_off() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    let node = start_with(|c| c.bind = IpAddr::from([0, 0, 0, 0])).await;
    let from_outside = SocketAddr::new(ip, node.resp().port());
    let mut outside = TcpStream::connect(from_outside).await.expect("connect");
    outside.write_all(&cmd(&["PING"])).await.expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = read_until_closed(&mut outside, deadline).await;
    assert_eq!(got, mapcache::server::auth::PROTECTED_MODE_DENIED);
    assert!(got.starts_with(
        b"-DENIED Redis is running in protected mode because protected mode is enabled and no \
          password is set for the default user."
    ));

    // Loopback is served; from there protected mode can be turned off.
    let loopback = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), node.resp().port());
    let mut local = Raw::connect(loopback).await;
    local
        .expect(
            &cmd(&["CONFIG", "GET", "protected-mode"]),
            b"*2\r\n$14\r\nprotected-mode\r\n$3\r\nyes\r\n",
        )
        .await;
    local
        .expect(
            &cmd(&["CONFIG", "SET", "protected-mode", "maybe"]),
            b"-ERR CONFIG SET failed (possibly related to argument 'protected-mode') - argument \
              must be 'yes' or 'no'\r\n",
        )
        .await;
    local.expect(&cmd(&["CONFIG", "SET", "protected-mode", "NO"]), b"+OK\r\n").await;
    let mut outside = Raw::connect(from_outside).await;
    outside.expect(&cmd(&["PING"]), b"+PONG\r\n").await;
    let metrics = get_text(&node.admin_url("/metrics")).await;
    assert!(metrics.contains("mapcache_protected_mode_rejections_total 1\n"), "{metrics}");
    // INFO counts it as Redis does, from the last CONFIG RESETSTAT.
    assert_eq!(rejected_connections(&mut local).await.as_deref(), Some("rejected_connections:1"));
    let mut local = Raw::connect(loopback).await;
    local.expect(&cmd(&["CONFIG", "RESETSTAT"]), b"+OK\r\n").await;
    assert_eq!(rejected_connections(&mut local).await.as_deref(), Some("rejected_connections:0"));
}

#[tokio::test]
async fn protected_mode_lets_other_hosts_authenticate_when_a_password_is_set_or_it_is_off() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this machine has no address but loopback");
        return;
    };
    let guarded = start_with(|c| {
        c.bind = IpAddr::from([0, 0, 0, 0]);
        c.requirepass = Some("s3cret".into());
    })
    .await;
    let mut outside = Raw::connect(SocketAddr::new(ip, guarded.resp().port())).await;
    outside.expect(&cmd(&["PING"]), b"-NOAUTH Authentication required.\r\n").await;
    outside.expect(&cmd(&["AUTH", "s3cret"]), b"+OK\r\n").await;

    let open = start_with(|c| {
        c.bind = IpAddr::from([0, 0, 0, 0]);
        c.protected_mode = false;
    })
    .await;
    let mut outside = Raw::connect(SocketAddr::new(ip, open.resp().port())).await;
    outside.expect(&cmd(&["PING"]), b"+PONG\r\n").await;
}
