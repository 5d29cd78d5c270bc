//! Transactions (MULTI EXEC DISCARD WATCH UNWATCH): Redis 7's replies byte for byte (each
//! sequence below was run against redis-server 7.0.15 and gave these bytes), nothing of a
//! refused or discarded transaction applied, EXEC atomic against other clients' transactions and
//! multi-key writes, and WATCH seeing every change to a watched key.

mod server_support;

use std::time::Duration;

use redis::AsyncCommands;
use server_support::{Raw, cmd, start, start_with};

/// Sends each command on its connection and checks the reply, in order.
async fn run(conns: &mut [Raw], steps: &[(usize, &[&str], &[u8])]) {
    for (conn, args, reply) in steps {
        conns[*conn].expect(&cmd(args), reply).await;
    }
}

#[tokio::test]
async fn transaction_errors_and_replies_match_redis() {
    let node = start().await;
    let mut c = [node.raw().await];
    let steps: &[(usize, &[&str], &[u8])] = &[
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["MULTI"], b"-ERR MULTI calls can not be nested\r\n"),
        (0, &["SET", "a", "1"], b"+QUEUED\r\n"),
        (0, &["EXEC"], b"*1\r\n+OK\r\n"),
        (0, &["EXEC"], b"-ERR EXEC without MULTI\r\n"),
        (0, &["DISCARD"], b"-ERR DISCARD without MULTI\r\n"),
        // A queueing error (arity, unknown command) fails the transaction whole.
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["SET", "a"], b"-ERR wrong number of arguments for 'set' command\r\n"),
        (0, &["SET", "a", "2"], b"+QUEUED\r\n"),
        (0, &["EXEC"], b"-EXECABORT Transaction discarded because of previous errors.\r\n"),
        (0, &["GET", "a"], b"$1\r\n1\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["WATCH", "a"], b"-ERR WATCH inside MULTI is not allowed\r\n"),
        (0, &["INCR", "a"], b"+QUEUED\r\n"),
        (0, &["nosuch"], b"-ERR unknown command 'nosuch', with args beginning with: \r\n"),
        (0, &["EXEC"], b"-EXECABORT Transaction discarded because of previous errors.\r\n"),
        (0, &["GET", "a"], b"$1\r\n1\r\n"),
        // A runtime error is one element of EXEC's reply; the rest run.
        (0, &["SET", "s", "x"], b"+OK\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["INCR", "s"], b"+QUEUED\r\n"),
        (0, &["SET", "s", "y"], b"+QUEUED\r\n"),
        (0, &["GET", "s"], b"+QUEUED\r\n"),
        (0, &["EXEC"], b"*3\r\n-ERR value is not an integer or out of range\r\n+OK\r\n$1\r\ny\r\n"),
        // DISCARD drops what was queued.
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["SET", "s", "discarded"], b"+QUEUED\r\n"),
        (0, &["DEL", "a"], b"+QUEUED\r\n"),
        (0, &["DISCARD"], b"+OK\r\n"),
        (0, &["GET", "s"], b"$1\r\ny\r\n"),
        (0, &["EXISTS", "a"], b":1\r\n"),
        // Commands without keys run inside too.
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["DBSIZE"], b"+QUEUED\r\n"),
        (0, &["KEYS", "s"], b"+QUEUED\r\n"),
        (0, &["PING"], b"+QUEUED\r\n"),
        (0, &["MEMORY", "USAGE", "nosuch"], b"+QUEUED\r\n"),
        (0, &["FLUSHALL"], b"+QUEUED\r\n"),
        (0, &["DBSIZE"], b"+QUEUED\r\n"),
        (0, &["EXEC"], b"*6\r\n:2\r\n*1\r\n$1\r\ns\r\n+PONG\r\n$-1\r\n+OK\r\n:0\r\n"),
        // An empty transaction, and QUIT inside one.
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["EXEC"], b"*0\r\n"),
    ];
    run(&mut c, steps).await;
    c[0].expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    assert_eq!(c[0].send_until_closed(&cmd(&["QUIT"])).await, b"+OK\r\n");
}

/// The danger the issue found: a client that sent MULTI must never see its queued writes applied
/// before EXEC, nor after DISCARD or a dropped connection.
#[tokio::test]
async fn nothing_queued_runs_before_exec_or_after_discard_or_disconnect() {
    let node = start().await;
    let mut writer = node.raw().await;
    let mut reader = node.raw().await;
    writer.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    writer.expect(&cmd(&["SET", "k", "v"]), b"+QUEUED\r\n").await;
    reader.expect(&cmd(&["EXISTS", "k"]), b":0\r\n").await;
    writer.expect(&cmd(&["DISCARD"]), b"+OK\r\n").await;
    reader.expect(&cmd(&["EXISTS", "k"]), b":0\r\n").await;
    writer.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    writer.expect(&cmd(&["SET", "k", "v"]), b"+QUEUED\r\n").await;
    drop(writer);
    tokio::time::sleep(Duration::from_millis(50)).await;
    reader.expect(&cmd(&["EXISTS", "k"]), b":0\r\n").await;
}

#[tokio::test]
async fn watch_fails_exec_on_any_change_to_a_watched_key_like_redis() {
    let node = start().await;
    let mut c = [node.raw().await, node.raw().await];
    let steps: &[(usize, &[&str], &[u8])] = &[
        // Another client's write.
        (0, &["SET", "s", "x"], b"+OK\r\n"),
        (0, &["WATCH", "s"], b"+OK\r\n"),
        (1, &["SET", "s", "z"], b"+OK\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["SET", "s", "mine"], b"+QUEUED\r\n"),
        (0, &["EXEC"], b"*-1\r\n"),
        (0, &["GET", "s"], b"$1\r\nz\r\n"),
        // UNWATCH forgets; watching twice is once.
        (0, &["WATCH", "s", "t"], b"+OK\r\n"),
        (0, &["WATCH", "s"], b"+OK\r\n"),
        (0, &["UNWATCH"], b"+OK\r\n"),
        (1, &["SET", "s", "z"], b"+OK\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["GET", "s"], b"+QUEUED\r\n"),
        (0, &["EXEC"], b"*1\r\n$1\r\nz\r\n"),
        // Writes that change nothing do not fail it: SETNX of a stored key, DEL of an absent
        // one, a write to another key.
        (0, &["WATCH", "s", "absent"], b"+OK\r\n"),
        (1, &["SETNX", "s", "w"], b":0\r\n"),
        (1, &["DEL", "absent"], b":0\r\n"),
        (1, &["SET", "other", "1"], b"+OK\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["EXEC"], b"*0\r\n"),
        // Creating a watched absent key does.
        (0, &["WATCH", "absent"], b"+OK\r\n"),
        (1, &["SET", "absent", "1"], b"+OK\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["EXEC"], b"*-1\r\n"),
        // FLUSHALL fails watchers of stored keys, not of absent ones.
        (0, &["WATCH", "s", "zz"], b"+OK\r\n"),
        (1, &["FLUSHALL"], b"+OK\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["PING"], b"+QUEUED\r\n"),
        (0, &["EXEC"], b"*-1\r\n"),
        (0, &["WATCH", "zz"], b"+OK\r\n"),
        (1, &["FLUSHALL"], b"+OK\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["PING"], b"+QUEUED\r\n"),
        (0, &["EXEC"], b"*1\r\n+PONG\r\n"),
        // The client's own write, and a TTL set or removed, count; a read does not. RESP3's
        // null is `_`.
        (0, &["SET", "k", "1"], b"+OK\r\n"),
    ];
    run(&mut c, steps).await;
    // RESP3 (HELLO's map, which holds the connection's id, is read up to the PING after it).
    c[0].expect(&[cmd(&["HELLO", "3"]), cmd(&["PING"])].concat(), b"").await;
    let mut hello = Vec::new();
    while !hello.ends_with(b"+PONG\r\n") {
        hello.extend(c[0].read_exact(1).await);
    }
    let steps: &[(usize, &[&str], &[u8])] = &[
        (0, &["WATCH", "k"], b"+OK\r\n"),
        (0, &["SET", "k", "2"], b"+OK\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["EXEC"], b"_\r\n"),
        (0, &["WATCH", "k"], b"+OK\r\n"),
        (1, &["EXPIRE", "k", "100"], b":1\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["EXEC"], b"_\r\n"),
        (0, &["WATCH", "k"], b"+OK\r\n"),
        (1, &["PERSIST", "k"], b":1\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["EXEC"], b"_\r\n"),
        (0, &["WATCH", "k"], b"+OK\r\n"),
        (1, &["GETEX", "k"], b"$1\r\n2\r\n"),
        (1, &["INCRBY", "k", "0"], b":2\r\n"),
        (0, &["MULTI"], b"+OK\r\n"),
        (0, &["EXEC"], b"_\r\n"),
    ];
    run(&mut c, steps).await;
    // INCRBY 0 writes (Redis signals it), so the last one failed; a plain read does not.
    c[0].expect(&cmd(&["WATCH", "k"]), b"+OK\r\n").await;
    c[1].expect(&cmd(&["GET", "k"]), b"$1\r\n2\r\n").await;
    c[0].expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    c[0].expect(&cmd(&["EXEC"]), b"*0\r\n").await;
}

/// A watched key that expires fails EXEC, whether or not it was removed yet (Redis's
/// `isWatchedKeyExpired`, and its active expiry, which tells watchers). One difference, on
/// purpose: redis-server 7.0.15 lets EXEC run when another client's read removed the expired key
/// first (its lazy expiry tells no watcher), although the value the client read is gone all the
/// same; here every expiry is a change (docs/operations.md, "Transactions").
#[tokio::test]
async fn a_watched_key_that_expires_fails_exec() {
    let node = start().await;
    let mut c = [node.raw().await, node.raw().await];
    run(
        &mut c,
        &[
            (0, &["SET", "e", "1", "PX", "100"], b"+OK\r\n"),
            (0, &["WATCH", "e"], b"+OK\r\n"),
            (0, &["MULTI"], b"+OK\r\n"),
            (0, &["GET", "e"], b"+QUEUED\r\n"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    c[0].expect(&cmd(&["EXEC"]), b"*-1\r\n").await;
    // Removed lazily by another client's read before EXEC: still a change.
    c[0].expect(&cmd(&["SET", "e", "1", "PX", "100"]), b"+OK\r\n").await;
    c[0].expect(&cmd(&["WATCH", "e"]), b"+OK\r\n").await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    c[1].expect(&cmd(&["GET", "e"]), b"$-1\r\n").await;
    c[0].expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    c[0].expect(&cmd(&["EXEC"]), b"*-1\r\n").await;
}

#[tokio::test]
async fn exec_is_refused_whole_when_the_node_drains_or_memory_runs_out() {
    let node = start_with(|config| config.maxmemory = 64 << 20).await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SET", "k", "v"]), b"+QUEUED\r\n").await;
    node.handle.node.store.set_maxmemory(1);
    c.expect(
        &cmd(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of: OOM command not allowed when used memory > 'maxmemory'.\r\n",
    )
    .await;
    // Over the limit, queueing itself is refused, and fails the transaction.
    c.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    c.expect(&cmd(&["GET", "k"]), b"-OOM command not allowed when used memory > 'maxmemory'.\r\n")
        .await;
    c.expect(&cmd(&["EXEC"]), b"-EXECABORT Transaction discarded because of previous errors.\r\n")
        .await;
    node.handle.node.store.set_maxmemory(0);
    c.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    c.expect(&cmd(&["SET", "k", "v"]), b"+QUEUED\r\n").await;
    c.expect(&cmd(&["GET", "k"]), b"+QUEUED\r\n").await;
    node.handle.node.start_draining();
    c.expect(
        &cmd(&["EXEC"]),
        b"-EXECABORT Transaction discarded because of: READONLY You can't write against a draining node.\r\n",
    )
    .await;
    c.expect(&cmd(&["EXISTS", "k"]), b":0\r\n").await;
    // Reads still run, and a write queued while draining is refused at once.
    c.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    c.expect(&cmd(&["EXISTS", "k"]), b"+QUEUED\r\n").await;
    c.expect(&cmd(&["EXEC"]), b"*1\r\n:0\r\n").await;
    c.expect(&cmd(&["MULTI"]), b"+OK\r\n").await;
    c.expect(&cmd(&["DEL", "k"]), b"-READONLY You can't write against a draining node.\r\n").await;
    c.expect(&cmd(&["EXEC"]), b"-EXECABORT Transaction discarded because of previous errors.\r\n")
        .await;
}

/// Transactions that move one unit between two keys in different shards (from several
/// connections), readers that read both in a transaction of their own, and MSETs that set both:
/// no reader ever sees a state between two commands of a transaction or an MSET.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exec_is_atomic_against_other_transactions_and_multi_key_writes() {
    let node = start().await;
    // Two keys in different shards, so only EXEC's locks keep their sum.
    let store = &node.handle.node.store;
    let a = "a".to_string();
    let b = (0..)
        .map(|i| format!("b{i}"))
        .find(|k| store.shard_of(k.as_bytes()) != store.shard_of(b"a"));
    let b = b.expect("a key in another shard");
    let mut setup = node.redis().await;
    let _: () = setup.mset(&[(&a, 1000), (&b, 1000)]).await.expect("MSET");
    let rounds = 300;
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut conn = node.redis().await;
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..rounds {
                let (_, _): (i64, i64) = redis::pipe()
                    .atomic()
                    .decr(&a, 1)
                    .incr(&b, 1)
                    .query_async(&mut conn)
                    .await
                    .expect("EXEC");
            }
        }));
    }
    let mut reader = node.redis().await;
    let mut checks = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        let (x, y): (i64, i64) =
            redis::pipe().atomic().get(&a).get(&b).query_async(&mut reader).await.expect("read");
        assert_eq!(x + y, 2000, "a transaction's two writes seen apart: {x} + {y}");
        checks += 1;
    }
    for task in tasks {
        task.await.expect("writer");
    }
    let (x, y): (i64, i64) =
        redis::pipe().get(&a).get(&b).query_async(&mut reader).await.expect("read");
    assert_eq!((x, y), (1000 - 3 * rounds, 1000 + 3 * rounds));
    assert!(checks > 0);

    // MSET's two writes are never seen apart by a transaction either.
    let _: () = setup.mset(&[(&a, -1), (&b, -1)]).await.expect("MSET");
    let mut writer = node.redis().await;
    let (wa, wb) = (a.clone(), b.clone());
    let msets = tokio::spawn(async move {
        for i in 0..500 {
            let _: () = writer.mset(&[(&wa, i), (&wb, i)]).await.expect("MSET");
        }
    });
    while !msets.is_finished() {
        let (x, y): (i64, i64) =
            redis::pipe().atomic().get(&a).get(&b).query_async(&mut reader).await.expect("read");
        assert_eq!(x, y, "an MSET seen half done inside a transaction");
    }
    msets.await.expect("MSET writer");
}

/// The check-and-set pattern WATCH exists for: concurrent increments through WATCH, GET, MULTI,
/// SET, EXEC, retried when EXEC fails, lose no increment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn optimistic_increments_through_watch_lose_nothing() {
    let node = start().await;
    let per_client = 100;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let client = redis::Client::open(format!("redis://{}/", node.resp())).expect("client");
        tasks.push(tokio::spawn(async move {
            // WATCH is per connection: a dedicated (not multiplexed) connection.
            let mut conn = client.get_multiplexed_async_connection().await.expect("connect");
            let mut retries = 0u64;
            for _ in 0..per_client {
                loop {
                    let _: () = redis::cmd("WATCH")
                        .arg("counter")
                        .query_async(&mut conn)
                        .await
                        .expect("WATCH");
                    let current: Option<i64> = conn.get("counter").await.expect("GET");
                    let next = current.unwrap_or(0) + 1;
                    let done: Option<((),)> = redis::pipe()
                        .atomic()
                        .set("counter", next)
                        .query_async(&mut conn)
                        .await
                        .expect("EXEC");
                    if done.is_some() {
                        break;
                    }
                    retries += 1;
                }
            }
            retries
        }));
    }
    let mut retries = 0;
    for task in tasks {
        retries += task.await.expect("client");
    }
    let mut conn = node.redis().await;
    let total: i64 = conn.get("counter").await.expect("GET");
    assert_eq!(total, 4 * per_client, "increments lost ({retries} retries)");
}
