//! A load generator for what redis-benchmark cannot send: MULTI/EXEC transactions of several
//! commands. Each connection sends `pipeline` transactions at a time (MULTI, INCR of five random
//! keys, EXEC), reads every reply, checks each EXEC answered an array of five integers, and
//! records the batch's latency. Run side by side against mapcache and redis-server by
//! `bench/server-txn-scripts.sh`.
//!
//! Usage: txn_load <host:port> [connections=50] [transactions=200000] [pipeline=1]
//! Prints one CSV row: transactions per second, p50 and p99 batch latency in ms.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// One transaction of MULTI, five INCRs of keys from `keys`, EXEC, as RESP.
fn transaction(keys: &mut impl Iterator<Item = u64>) -> Vec<u8> {
    let mut out = b"*1\r\n$5\r\nMULTI\r\n".to_vec();
    for key in keys.take(5) {
        let key = format!("txn:{key:012}");
        out.extend(format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len()).as_bytes());
    }
    out.extend(b"*1\r\n$4\r\nEXEC\r\n");
    out
}

/// Reads one reply line (up to CRLF) into `line`.
async fn read_line(reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>) {
    line.clear();
    loop {
        let byte = reader.read_u8().await.expect("read a reply");
        line.push(byte);
        if line.ends_with(b"\r\n") {
            return;
        }
    }
}

/// Reads the replies to one transaction: +OK, five +QUEUED, then EXEC's `*5` of integers.
async fn read_transaction(reader: &mut BufReader<TcpStream>, line: &mut Vec<u8>) {
    for expected in [
        &b"+OK\r\n"[..],
        b"+QUEUED\r\n",
        b"+QUEUED\r\n",
        b"+QUEUED\r\n",
        b"+QUEUED\r\n",
        b"+QUEUED\r\n",
    ] {
        read_line(reader, line).await;
        assert_eq!(&line[..], expected, "{}", String::from_utf8_lossy(line));
    }
    read_line(reader, line).await;
    assert_eq!(&line[..], b"*5\r\n", "EXEC: {}", String::from_utf8_lossy(line));
    for _ in 0..5 {
        read_line(reader, line).await;
        assert_eq!(line[0], b':', "INCR in EXEC: {}", String::from_utf8_lossy(line));
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:6379".into());
    let connections: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(50);
    let total: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let pipeline: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(1);
    let batches_per_connection = (total / connections / pipeline).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = addr.clone();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(&addr).await.expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let mut reader = BufReader::with_capacity(64 * 1024, stream);
            let mut keys = (0u64..).map(move |i| (i * 2_654_435_761 + c as u64 * 97) % 100_000);
            let mut latencies = Vec::with_capacity(batches_per_connection);
            let mut line = Vec::new();
            for _ in 0..batches_per_connection {
                let batch: Vec<u8> = (0..pipeline).flat_map(|_| transaction(&mut keys)).collect();
                let sent = Instant::now();
                reader.get_mut().write_all(&batch).await.expect("send");
                for _ in 0..pipeline {
                    read_transaction(&mut reader, &mut line).await;
                }
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("connection"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    let done = latencies.len() * pipeline;
    println!("{:.0},{:.3},{:.3}", done as f64 / elapsed, at(0.5), at(0.99));
}
