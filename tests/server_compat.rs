//! Byte-exact Redis 7 compatibility of edge cases found by comparing the node's replies with a
//! real Redis (7.0.15, x86-64) side by side: option parsing of SET and GETEX, SCAN cursors,
//! SELECT's index range, CONFIG GET names, and INCRBYFLOAT's `long double` arithmetic.

mod server_support;

use mapcache::server::EvictionPolicy;
use mapcache::server::tasks::Task;
use server_support::{cmd, cmd_bytes, get_json, start, start_with, wait_until};
use tokio::io::AsyncWriteExt;

/// `parseExtendedStringArgumentsOrReply` lets an expire option repeat (the last time wins, and
/// only it is checked), and KEEPTTL too; only a different unit conflicts.
#[tokio::test]
async fn set_accepts_a_repeated_expire_option_and_checks_only_the_last_time() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["SET", "k", "v", "EX", "abc", "EX", "100"]), b"+OK\r\n").await;
    c.expect(&cmd(&["TTL", "k"]), b":100\r\n").await;
    c.expect(&cmd(&["SET", "k", "v", "KEEPTTL", "GET", "KEEPTTL"]), b"$1\r\nv\r\n").await;
    c.expect(&cmd(&["TTL", "k"]), b":100\r\n").await;
    c.expect(&cmd(&["SET", "k", "v", "PX", "10", "EX", "10"]), b"-ERR syntax error\r\n").await;
    c.expect(&cmd(&["SET", "k", "v", "EX", "10", "KEEPTTL"]), b"-ERR syntax error\r\n").await;
}

/// Options are all parsed before the time is checked: a syntax error after a bad time is
/// reported as the syntax error.
#[tokio::test]
async fn set_reports_a_syntax_error_before_an_invalid_expire_time() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["SET", "k", "v", "EX", "0", "FOO"]), b"-ERR syntax error\r\n").await;
    c.expect(&cmd(&["SET", "k", "v", "EX", "0"]), b"-ERR invalid expire time in 'set' command\r\n")
        .await;
}

/// GETEX looks the key up before checking the time (`getexCommand`): a missing key is nil
/// whatever the time; PERSIST and an expire option may repeat.
#[tokio::test]
async fn getex_checks_the_time_only_for_an_existing_key_and_allows_repeats() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["GETEX", "missing", "EX", "0"]), b"$-1\r\n").await;
    c.expect(&cmd(&["GETEX", "missing", "EX", "abc"]), b"$-1\r\n").await;
    c.expect(&cmd(&["GETEX", "missing", "EX", "abc", "FOO"]), b"-ERR syntax error\r\n").await;
    c.expect(&cmd(&["SET", "k", "1"]), b"+OK\r\n").await;
    c.expect(&cmd(&["GETEX", "k", "EX", "0"]), b"-ERR invalid expire time in 'getex' command\r\n")
        .await;
    c.expect(&cmd(&["GETEX", "k", "EX", "abc", "EX", "100"]), b"$1\r\n1\r\n").await;
    c.expect(&cmd(&["TTL", "k"]), b":100\r\n").await;
    c.expect(&cmd(&["GETEX", "k", "PERSIST", "PERSIST"]), b"$1\r\n1\r\n").await;
    c.expect(&cmd(&["TTL", "k"]), b":-1\r\n").await;
    c.expect(&cmd(&["GETEX", "k", "PERSIST", "EX", "10"]), b"-ERR syntax error\r\n").await;
}

/// `parseScanCursorOrReply` reads the cursor with `strtoul`: an empty cursor is 0, a sign is
/// allowed (`-1` wraps to the largest cursor), the text ends at a NUL; a space, a bare sign or
/// trailing bytes are invalid.
#[tokio::test]
async fn scan_reads_its_cursor_as_strtoul_does() {
    let node = start().await;
    let mut c = node.raw().await;
    let done = b"*2\r\n$1\r\n0\r\n*0\r\n";
    for cursor in [&b""[..], b"-0", b"+0", b"00", b"0\x00junk"] {
        c.expect(&cmd_bytes(&[b"SCAN", cursor]), done).await;
    }
    for cursor in [&b" 0"[..], b"-", b"+", b"0x1", b"1.5", b"18446744073709551616"] {
        c.expect(&cmd_bytes(&[b"SCAN", cursor]), b"-ERR invalid cursor\r\n").await;
    }
    // -1 is the largest cursor: a valid one, whatever it visits.
    c.stream.write_all(&cmd(&["SCAN", "-1"])).await.expect("write");
    assert_eq!(c.read_exact(5).await, b"*2\r\n$");
}

/// `getIntFromObjectOrReply`: an index that does not fit a C int has its own error.
#[tokio::test]
async fn select_reports_an_index_beyond_int_range_as_redis_does() {
    let node = start().await;
    let mut c = node.raw().await;
    let out_of_int =
        b"-ERR value is out of range, value must between -2147483648 and 2147483647\r\n";
    c.expect(&cmd(&["SELECT", "2147483648"]), out_of_int).await;
    c.expect(&cmd(&["SELECT", "-2147483649"]), out_of_int).await;
    c.expect(&cmd(&["SELECT", "2147483647"]), b"-ERR DB index is out of range\r\n").await;
    c.expect(&cmd(&["SELECT", "0"]), b"+OK\r\n").await;
}

/// `configGetCommand`: a plain name is answered under the spelling asked for, a pattern under
/// the parameter's own name, and a parameter once however many arguments match it.
#[tokio::test]
async fn config_get_answers_a_plain_name_as_it_was_asked() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["CONFIG", "GET", "MaxMemory"]), b"*2\r\n$9\r\nMaxMemory\r\n$1\r\n0\r\n").await;
    c.expect(
        &cmd(&["CONFIG", "GET", "MAXMEMORY", "maxmemory", "MAXMEM*ORY"]),
        b"*2\r\n$9\r\nMAXMEMORY\r\n$1\r\n0\r\n",
    )
    .await;
    c.expect(&cmd(&["CONFIG", "GET", "MAXMEM*ORY"]), b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n").await;
}

/// Redis adds in `long double` and prints `%.17Lf` without trailing zeros: 0.1 + 0.2 is 0.3
/// (not f64's 0.30000000000000004), sums past f64's range are fine, and hex input is read.
#[tokio::test]
async fn incrbyfloat_adds_in_long_double_as_redis_does() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["INCRBYFLOAT", "f", "0.1"]), b"$3\r\n0.1\r\n").await;
    c.expect(&cmd(&["INCRBYFLOAT", "f", "0.2"]), b"$3\r\n0.3\r\n").await;
    c.expect(&cmd(&["SET", "f", "10.5"]), b"+OK\r\n").await;
    c.expect(&cmd(&["INCRBYFLOAT", "f", "0.1"]), b"$4\r\n10.6\r\n").await;
    c.expect(
        &cmd(&["INCRBYFLOAT", "g", "123456789012345678901234567890"]),
        b"$30\r\n123456789012345678899921813504\r\n",
    )
    .await;
    c.expect(&cmd(&["INCRBYFLOAT", "h", "0x1.8p1"]), b"$1\r\n3\r\n").await;
    c.expect(&cmd(&["SET", "h", "0x10"]), b"+OK\r\n").await;
    c.expect(&cmd(&["INCRBYFLOAT", "h", "1"]), b"$2\r\n17\r\n").await;
    // Subnormal in f64, but printed with 17 decimals it is 0.
    c.expect(&cmd(&["INCRBYFLOAT", "s", "5e-324"]), b"$1\r\n0\r\n").await;
    // Ties at the 17th decimal go to even, as glibc's printf rounds them.
    c.expect(
        &cmd(&["INCRBYFLOAT", "t", "0.000003814697265625"]),
        b"$19\r\n0.00000381469726562\r\n",
    )
    .await;
}

#[tokio::test]
async fn incrbyfloat_goes_past_the_f64_range_like_redis() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(&cmd(&["INCRBYFLOAT", "big", "1e500"]), b"$500\r\n").await;
    let rest = c.read_exact(500 + 2).await;
    assert!(rest.starts_with(b"99999999999999999997532712669662876227443880427062624344814"));
    assert!(rest.ends_with(b"\r\n"));
    c.expect(&cmd(&["INCRBYFLOAT", "big", "1e4933"]), b"-ERR value is not a valid float\r\n").await;
    c.expect(&cmd(&["INCRBYFLOAT", "big", "1e-4951"]), b"-ERR value is not a valid float\r\n")
        .await;
    c.expect(
        &cmd(&["INCRBYFLOAT", "big", "inf"]),
        b"-ERR increment would produce NaN or Infinity\r\n",
    )
    .await;
    c.expect(&cmd(&["SET", "x", "1.18973149535723176502e+4932"]), b"+OK\r\n").await;
    c.expect(
        &cmd(&["INCRBYFLOAT", "x", "1e4932"]),
        b"-ERR increment would produce NaN or Infinity\r\n",
    )
    .await;
}

/// Room for INCRBYFLOAT is made before it runs for results in the f64 range; a wider
/// `long double` result (up to 4934 bytes) makes room for the rest itself before it is stored,
/// so a node at its limit evicts enough and stays under maxmemory.
#[tokio::test]
async fn incrbyfloat_makes_room_for_a_result_wider_than_f64() {
    const LIMIT: usize = 256 * 1024;
    let node = start_with(|c| {
        c.maxmemory = LIMIT as u64;
        c.eviction_policy = EvictionPolicy::AllkeysRandom;
    })
    .await;
    let store = &node.handle.node.store;
    let mut c = node.raw().await;
    let value = "v".repeat(1000);
    let mut i = 0;
    while store.evicted_total.get() == 0 {
        c.expect(&cmd(&["SET", &format!("k{i}"), &value]), b"+OK\r\n").await;
        i += 1;
    }
    for key in ["wide1", "wide2", "wide3"] {
        c.expect(&cmd(&["INCRBYFLOAT", key, "1e4900"]), b"$4901\r\n").await;
        let digits = c.read_exact(4901 + 2).await;
        assert!(digits.starts_with(b"1000000000000000000"), "{:?}", &digits[..30]);
        assert!(store.used_memory() <= LIMIT, "used {}", store.used_memory());
    }
}

/// A bulk string reply's text (RESP2).
async fn bulk(c: &mut server_support::Raw, request: &[u8]) -> String {
    c.stream.write_all(request).await.expect("write");
    let header = read_line(c).await;
    let text = std::str::from_utf8(&header[1..]).expect("header");
    let len: usize = text.parse().expect("bulk length");
    let body = c.read_exact(len + 2).await;
    String::from_utf8(body[..len].to_vec()).expect("text")
}

/// The `cmd=` field of a CLIENT LIST / CLIENT INFO line.
fn cmd_field(line: &str) -> &str {
    field(line, "cmd")
}

/// A `CLIENT LIST` / `CLIENT INFO` line's field `name=`.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}=");
    line.split(' ').find_map(|f| f.strip_prefix(prefix.as_str())).expect("field")
}

/// `cmd=` is the last command each client ran (Redis's `c->lastcmd`): `client|list` or
/// `client|info` for the client asking, `NULL` for one that has run nothing yet.
#[tokio::test]
async fn client_list_shows_each_clients_last_command() {
    let node = start().await;
    let mut asking = node.raw().await;
    let mut reader = node.raw().await;
    let _silent = node.raw().await;
    let tasks = &node.handle.node.tasks;
    wait_until("three connections are registered", || tasks.connections() == 3).await;
    reader.expect(&cmd(&["GET", "missing"]), b"$-1\r\n").await;
    let list = bulk(&mut asking, &cmd(&["CLIENT", "LIST"])).await;
    let mut fields: Vec<&str> = list.lines().map(cmd_field).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["NULL", "client|list", "get"], "{list}");
    let info = bulk(&mut asking, &cmd(&["CLIENT", "INFO"])).await;
    assert_eq!(cmd_field(&info), "client|info", "{info}");
    reader.expect(&cmd(&["SET", "k", "v"]), b"+OK\r\n").await;
    let list = bulk(&mut asking, &cmd(&["CLIENT", "LIST"])).await;
    assert!(list.lines().any(|l| cmd_field(l) == "set"), "{list}");
    // An unknown command is no command: `lastcmd` is null again, as in Redis.
    reader
        .expect(&cmd(&["NOSUCH"]), b"-ERR unknown command 'NOSUCH', with args beginning with: \r\n")
        .await;
    let list = bulk(&mut asking, &cmd(&["CLIENT", "LIST"])).await;
    let mut fields: Vec<&str> = list.lines().map(cmd_field).collect();
    fields.sort_unstable();
    assert_eq!(fields, ["NULL", "NULL", "client|list"], "{list}");
}

/// `qbuf=` is the bytes of a request still arriving: a request half sent shows them (all of
/// them; Redis would show only what it has not parsed into arguments) until the rest arrives,
/// and the task dump says the same.
#[tokio::test]
async fn client_list_shows_a_request_still_arriving_in_qbuf() {
    let node = start().await;
    let mut asking = node.raw().await;
    let mut slow = node.raw().await;
    slow.expect(&cmd(&["CLIENT", "SETNAME", "slow"]), b"+OK\r\n").await;
    let request = cmd(&["SET", "k", "a value that arrives in two parts"]);
    let (first, rest) = request.split_at(20);
    slow.stream.write_all(first).await.expect("write");
    let tasks = node.handle.node.tasks.clone();
    wait_until("the node has read the first part", || {
        let slow = |t: &Task| t.name.lock().as_deref() == Some("slow");
        tasks.snapshot().iter().any(|t| slow(t) && t.query_buffer().0 == 20)
    })
    .await;
    let list = bulk(&mut asking, &cmd(&["CLIENT", "LIST"])).await;
    let line = list.lines().find(|l| field(l, "name") == "slow").expect("slow's line");
    assert_eq!(field(line, "qbuf"), "20", "{line}");
    assert_ne!(field(line, "qbuf-free"), "0", "{line}");
    let (status, dump) = get_json(&node.admin_url("/v1/debug/tasks")).await;
    assert_eq!(status, 200);
    let row = dump["tasks"].as_array().unwrap().iter().find(|t| t["name"] == "slow").unwrap();
    assert_eq!(row["query_buffer_bytes"], 20, "{row}");
    slow.expect(rest, b"+OK\r\n").await;
    let list = bulk(&mut asking, &cmd(&["CLIENT", "LIST"])).await;
    let line = list.lines().find(|l| field(l, "name") == "slow").expect("slow's line");
    assert_eq!(field(line, "qbuf"), "0", "{line}");
}

/// Waits until the server closes `c` (an end of stream or a reset), with nothing more to read.
async fn assert_closed(c: &mut server_support::Raw) {
    use tokio::io::AsyncReadExt;
    let mut rest = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(10), c.stream.read_to_end(&mut rest))
            .await
            .expect("the node closes the connection");
    if let Err(err) = read {
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    }
    assert_eq!(rest, b"", "nothing after the kill");
}

/// `CLIENT KILL` as Redis 7.0 answers it (strings checked against redis-server 7.0.15): the old
/// form by address (`+OK`, or `No such client`; a client may kill itself and still gets its
/// `+OK`), the new form's filters (a count; `SKIPME yes` by default), and each error.
#[tokio::test]
async fn client_kill_closes_the_connections_it_names() {
    let node = start().await;
    let tasks = node.handle.node.tasks.clone();
    let mut admin = node.raw().await;
    let mut by_id = node.raw().await;
    let mut by_addr = node.raw().await;
    let mut by_laddr = node.raw().await;
    let mut old_form = node.raw().await;
    let addr_of = |c: &server_support::Raw| c.stream.local_addr().unwrap().to_string();
    let gone = |c: &server_support::Raw| {
        let addr = c.stream.local_addr().unwrap();
        let tasks = tasks.clone();
        move || !tasks.snapshot().iter().any(|t| t.peer == Some(addr))
    };

    let victim = client_id(&mut by_id).await;
    admin.expect(&cmd(&["CLIENT", "KILL", "ID", &victim]), b":1\r\n").await;
    assert_closed(&mut by_id).await;
    // The last TYPE counts, as in Redis.
    let addr = addr_of(&by_addr);
    let kill = ["client", "kill", "addr", &addr, "type", "master", "type", "normal"];
    admin.expect(&cmd(&kill), b":1\r\n").await;
    assert_closed(&mut by_addr).await;
    let (addr, laddr) = (addr_of(&by_laddr), by_laddr.stream.peer_addr().unwrap().to_string());
    admin.expect(&cmd(&["CLIENT", "KILL", "ADDR", &addr, "LADDR", &laddr]), b":1\r\n").await;
    assert_closed(&mut by_laddr).await;
    let addr = addr_of(&old_form);
    admin.expect(&cmd(&["CLIENT", "KILL", &addr]), b"+OK\r\n").await;
    assert_closed(&mut old_form).await;
    wait_until("the killed connection is gone", gone(&old_form)).await;
    admin.expect(&cmd(&["CLIENT", "KILL", &addr]), b"-ERR No such client\r\n").await;

    // Filters that match nobody, and SKIPME's default.
    let me = client_id(&mut admin).await;
    admin.expect(&cmd(&["CLIENT", "KILL", "ID", &me]), b":0\r\n").await;
    admin.expect(&cmd(&["CLIENT", "KILL", "TYPE", "master"]), b":0\r\n").await;
    admin.expect(&cmd(&["CLIENT", "KILL", "LADDR", "1.2.3.4:5"]), b":0\r\n").await;
    admin.expect(&cmd(&["CLIENT", "KILL", "ID", "99999"]), b":0\r\n").await;
    admin.expect(&cmd(&["PING"]), b"+PONG\r\n").await;

    // Redis's errors, in its words.
    for (args, reply) in [
        (&["CLIENT", "KILL"][..], "-ERR wrong number of arguments for 'client|kill' command"),
        (&["CLIENT", "KILL", "ID"][..], "-ERR No such client"),
        (&["CLIENT", "KILL", "ID", "0"][..], "-ERR client-id should be greater than 0"),
        (&["CLIENT", "KILL", "ID", "abc"][..], "-ERR client-id should be greater than 0"),
        (&["CLIENT", "KILL", "TYPE", "foo"][..], "-ERR Unknown client type 'foo'"),
        (&["CLIENT", "KILL", "USER", "nosuch"][..], "-ERR No such user 'nosuch'"),
        (&["CLIENT", "KILL", "SKIPME", "maybe"][..], "-ERR syntax error"),
        (&["CLIENT", "KILL", "ADDR", "1.2.3.4:5", "ID"][..], "-ERR syntax error"),
        (&["CLIENT", "KILL", "MAXAGE", "5"][..], "-ERR syntax error"),
    ] {
        admin.expect(&cmd(args), format!("{reply}\r\n").as_bytes()).await;
    }

    // The old form may name the caller: it gets its +OK, then the connection closes, and what
    // it sent after the kill does not run. So does the new form with SKIPME no.
    let addr = addr_of(&admin);
    let mut request = cmd(&["CLIENT", "KILL", &addr]);
    request.extend(cmd(&["SET", "after-the-kill", "1"]));
    admin.expect(&request, b"+OK\r\n").await;
    assert_closed(&mut admin).await;
    let mut last = node.raw().await;
    let me = client_id(&mut last).await;
    last.expect(&cmd(&["CLIENT", "KILL", "ID", &me, "SKIPME", "no"]), b":1\r\n").await;
    assert_closed(&mut last).await;
    wait_until("every connection is gone", || tasks.connections() == 0).await;
    let mut r = node.redis().await;
    let exists: u64 = redis::cmd("EXISTS").arg("after-the-kill").query_async(&mut r).await.unwrap();
    assert_eq!(exists, 0);
}

/// A killed connection runs none of the requests it had already sent: a client stalled
/// writing (it reads no replies) with a pipeline queued behind a command waiting for a shard
/// lock is killed; once the lock is free, none of the queued writes has happened.
#[tokio::test]
async fn a_killed_connection_runs_nothing_it_had_queued() {
    let node = start().await;
    // Connections go to the node's two connection threads in turn: the victim blocks its
    // thread on the lock, the admin's runs on the other.
    let mut admin = node.raw().await;
    let mut victim = node.raw().await;
    let victim_id = client_id(&mut victim).await;
    let state = node.handle.node.clone();
    let (release, holder) =
        server_support::hold_shard_lock(&state, state.store.shard_of(b"queued:0"));
    let mut pipeline = Vec::new();
    for i in 0..200 {
        pipeline.extend(cmd(&["SET", &format!("queued:{i}"), "1"]));
    }
    victim.stream.write_all(&pipeline).await.unwrap();
    let tasks = node.handle.node.tasks.clone();
    let id: u64 = victim_id.parse().unwrap();
    wait_until("the victim waits for the lock", || {
        tasks.get(id).is_some_and(|t| t.waits_lock().is_some())
    })
    .await;
    admin.expect(&cmd(&["CLIENT", "KILL", "ID", &victim_id]), b":1\r\n").await;
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_closed(&mut victim).await;
    wait_until("the victim is gone", || tasks.get(id).is_none()).await;
    let mut r = node.redis().await;
    let keys: Vec<String> = redis::cmd("KEYS").arg("queued:*").query_async(&mut r).await.unwrap();
    // The command waiting for the lock when the kill came may finish; nothing after it runs.
    assert!(keys.len() <= 1, "{keys:?}");
}

/// The connection's id, by `CLIENT ID`.
async fn client_id(c: &mut server_support::Raw) -> String {
    c.stream.write_all(&cmd(&["CLIENT", "ID"])).await.unwrap();
    String::from_utf8(read_line(c).await[1..].to_vec()).unwrap()
}

/// One reply line, without its CRLF.
async fn read_line(c: &mut server_support::Raw) -> Vec<u8> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.extend(c.read_exact(1).await);
    }
    line.truncate(line.len() - 2);
    line
}

/// Each `unknown subcommand ... Try <CMD> HELP.` points at a command that answers, as Redis's
/// `addReplyHelp` does: the usage line, the subcommands (those this node has), HELP's own lines.
#[tokio::test]
async fn every_container_command_answers_help() {
    let node = start().await;
    let mut c = node.raw().await;
    c.expect(
        &cmd(&["config", "help"]),
        b"*9\r\n+CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n\
          +GET <pattern>\r\n\
          +    Return parameters matching the glob-like <pattern> and their values.\r\n\
          +SET <directive> <value>\r\n\
          +    Set the configuration <directive> to <value>.\r\n\
          +RESETSTAT\r\n\
          +    Reset statistics reported by the INFO command.\r\n\
          +HELP\r\n\
          +    Prints this help.\r\n",
    )
    .await;
    c.expect(
        &cmd(&["CONFIG", "HELP", "x"]),
        b"-ERR wrong number of arguments for 'config|help' command\r\n",
    )
    .await;
    for (command, lines) in [("CLIENT", 39), ("COMMAND", 19), ("MEMORY", 6), ("SLOWLOG", 12)] {
        let usage =
            format!("+{command} <subcommand> [<arg> [value] [opt] ...]. Subcommands are:\r\n");
        let expected = format!("*{lines}\r\n{usage}").into_bytes();
        c.expect(&cmd(&[command, "HELP"]), &expected).await;
        // The rest: status lines, the last two HELP's.
        let mut rest = Vec::new();
        while rest.iter().filter(|&&b| b == b'\n').count() < lines - 1 {
            rest.extend(c.read_exact(1).await);
        }
        assert!(rest.ends_with(b"+HELP\r\n+    Prints this help.\r\n"), "{command}");
        assert!(rest.split(|&b| b == b'\n').all(|l| l.is_empty() || l[0] == b'+'), "{command}");
    }
}

/// COMMAND INFO's flags are Redis's for each command (redis-server 7.0.15's own COMMAND INFO):
/// DEL is not `fast`, INCRBYFLOAT is, container commands have none; and its ACL categories.
#[tokio::test]
async fn command_info_reports_redis_flags() {
    let node = start().await;
    let mut c = node.raw().await;
    let info = server_support::command_info_reply;
    c.expect(
        &cmd(&["COMMAND", "INFO", "del"]),
        &info("del", -2, &["write"], (1, -1, 1), &["keyspace", "write", "slow"]),
    )
    .await;
    let incrbyfloat = info(
        "incrbyfloat",
        3,
        &["write", "denyoom", "fast"],
        (1, 1, 1),
        &["write", "string", "fast"],
    );
    c.expect(&cmd(&["COMMAND", "INFO", "incrbyfloat"]), &incrbyfloat).await;
    // A subcommand by its `container|name` (any case), as redis-server 7.0.15 answers it.
    let get = info(
        "config|get",
        -3,
        &["admin", "noscript", "loading", "stale"],
        (0, 0, 0),
        &["admin", "slow", "dangerous"],
    );
    c.expect(&cmd(&["COMMAND", "INFO", "CONFIG|get"]), &get).await;
    c.expect(&cmd(&["COMMAND", "INFO", "config|nosuch", "nosuch|get"]), b"*2\r\n$-1\r\n$-1\r\n")
        .await;
    // A container lists its subcommands (those the node has), each as above, last.
    let admin = ["admin", "noscript", "loading", "stale"];
    let dangerous = ["admin", "slow", "dangerous"];
    let rows = [
        info("config|get", -3, &admin, (0, 0, 0), &dangerous),
        info("config|set", -4, &admin, (0, 0, 0), &dangerous),
        info("config|resetstat", 2, &admin, (0, 0, 0), &dangerous),
        info("config|help", 2, &["loading", "stale"], (0, 0, 0), &["slow"]),
    ];
    let mut config = b"*1\r\n*10\r\n$6\r\nconfig\r\n:-2\r\n*0\r\n:0\r\n:0\r\n:0\r\n*1\r\n+@slow\r\n*0\r\n*0\r\n*4\r\n".to_vec();
    rows.iter().for_each(|row| config.extend_from_slice(&row[4..]));
    c.expect(&cmd(&["COMMAND", "INFO", "config"]), &config).await;
    let hello = ["noscript", "loading", "stale", "fast", "no_auth", "allow_busy"];
    c.expect(
        &cmd(&["COMMAND", "INFO", "hello"]),
        &info("hello", -1, &hello, (0, 0, 0), &["fast", "connection"]),
    )
    .await;
}
