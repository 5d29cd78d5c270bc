//! COMMAND DOCS: redis-server 7.0.15's replies byte for byte, RESP2 and RESP3. Every constant
//! below is what redis-server 7.0.15 answered (captured over a raw socket, after `HELLO 3` for
//! RESP3). A container's `subcommands` map lists only the subcommands the node implements, in its
//! table's order (Redis lists all of its own in the order of a randomly seeded hash table, which
//! changes each time redis-server starts): each entry is Redis's own bytes for that subcommand.
//! With no names, COMMAND DOCS documents every command of the node (the top-level names of
//! COMMAND LIST); unknown names are skipped.

mod server_support;

use server_support::{Raw, cmd, start};
use tokio::io::AsyncWriteExt;

/// Switches the connection to RESP3, HELLO's reply read and dropped (it ends with its empty
/// `modules` array).
async fn switch_to_resp3(c: &mut Raw) {
    c.stream.write_all(&cmd(&["HELLO", "3"])).await.expect("write");
    let mut reply = Vec::new();
    while !reply.ends_with(b"$7\r\nmodules\r\n*0\r\n") {
        reply.extend(c.read_exact(1).await);
        assert!(reply.len() < 300, "HELLO 3: {}", String::from_utf8_lossy(&reply));
    }
}

/// `entry` without its reply's header (`*2\r\n` or `%1\r\n`): the name and docs pair Redis sent
/// for one name.
fn pair(entry: &[u8], header: &[u8]) -> Vec<u8> {
    assert!(entry.starts_with(header), "{}", String::from_utf8_lossy(&entry[..8]));
    entry[header.len()..].to_vec()
}

/// The node's `COMMAND DOCS client`: Redis's own fields, then a `subcommands` map of the
/// implemented subcommands, each as Redis documents it.
fn client_docs(head: &[u8], subcommands: &[(&str, &[u8])], resp3: bool) -> Vec<u8> {
    let (map_header, pair_header) = if resp3 {
        (format!("%{}\r\n", subcommands.len()), &b"%1\r\n"[..])
    } else {
        (format!("*{}\r\n", 2 * subcommands.len()), &b"*2\r\n"[..])
    };
    let mut out = head.to_vec();
    out.extend(map_header.as_bytes());
    for (_, entry) in subcommands {
        out.extend(pair(entry, pair_header));
    }
    out
}

#[tokio::test]
async fn docs_of_get_hset_sadd_and_set_are_redis_bytes_in_resp2_and_resp3() {
    let node = start().await;
    let mut c = node.raw().await;
    let cases: [(&str, &[u8], &[u8]); 4] = [
        ("get", GET_RESP2, GET_RESP3),
        ("hset", HSET_RESP2, HSET_RESP3),
        ("sadd", SADD_RESP2, SADD_RESP3),
        ("set", SET_RESP2, SET_RESP3),
    ];
    for (name, resp2, _) in cases {
        c.expect(&cmd(&["COMMAND", "DOCS", name]), resp2).await;
    }
    // Any case; the reply names the command in lowercase.
    c.expect(&cmd(&["COMMAND", "DOCS", "SeT"]), SET_RESP2).await;
    switch_to_resp3(&mut c).await;
    for (name, _, resp3) in cases {
        c.expect(&cmd(&["COMMAND", "DOCS", name]), resp3).await;
    }
}

#[tokio::test]
async fn several_names_are_answered_in_the_order_given_and_unknown_ones_skipped() {
    let node = start().await;
    let mut c = node.raw().await;
    let mut expected = b"*6\r\n".to_vec();
    for entry in [SADD_RESP2, GET_RESP2, SADD_RESP2] {
        expected.extend(pair(entry, b"*2\r\n"));
    }
    c.expect(&cmd(&["COMMAND", "DOCS", "sadd", "nosuch", "get", "get|x", "sadd"]), &expected).await;
    // Names Redis's lookupCommandBySds does not find: unknown, a subcommand of a command that has
    // none, two levels, and CLIENT SETINFO (Redis 7.2's: 7.0.15 has no docs for it).
    for name in ["nosuch", "get|x", "client|list|x", "client|nosuch", "client|setinfo", ""] {
        c.expect(&cmd(&["COMMAND", "DOCS", name]), b"*0\r\n").await;
    }
    switch_to_resp3(&mut c).await;
    c.expect(&cmd(&["COMMAND", "DOCS", "nosuch"]), b"%0\r\n").await;
    let mut expected = b"%2\r\n".to_vec();
    for entry in [HSET_RESP3, GET_RESP3] {
        expected.extend(pair(entry, b"%1\r\n"));
    }
    c.expect(&cmd(&["COMMAND", "DOCS", "HSET", "nosuch", "get"]), &expected).await;
}

#[tokio::test]
async fn client_lists_the_subcommands_the_node_implements_each_as_redis_documents_it() {
    let node = start().await;
    let mut c = node.raw().await;
    let expected = client_docs(CLIENT_HEAD_RESP2, CLIENT_SUBCOMMANDS_RESP2, false);
    c.expect(&cmd(&["COMMAND", "DOCS", "client"]), &expected).await;
    // A subcommand by its full name, any case, is answered under its full name.
    for (sub, entry) in CLIENT_SUBCOMMANDS_RESP2 {
        c.expect(&cmd(&["COMMAND", "DOCS", &format!("CLIENT|{}", sub.to_uppercase())]), entry)
            .await;
    }
    switch_to_resp3(&mut c).await;
    let expected = client_docs(CLIENT_HEAD_RESP3, CLIENT_SUBCOMMANDS_RESP3, true);
    c.expect(&cmd(&["COMMAND", "DOCS", "client"]), &expected).await;
    for (sub, entry) in CLIENT_SUBCOMMANDS_RESP3 {
        c.expect(&cmd(&["COMMAND", "DOCS", &format!("client|{sub}")]), entry).await;
    }
}

/// The names of a RESP2 `COMMAND DOCS` reply (every other element) or of `COMMAND LIST`.
fn names(reply: &redis::Value, step: usize) -> Vec<String> {
    let redis::Value::Array(items) = reply else { panic!("an array: {reply:?}") };
    items
        .iter()
        .step_by(step)
        .map(|item| match item {
            redis::Value::BulkString(name) => String::from_utf8(name.clone()).expect("utf-8"),
            other => panic!("a name: {other:?}"),
        })
        .collect()
}

#[tokio::test]
async fn docs_without_names_document_every_command_of_the_node() {
    let node = start().await;
    let mut conn = node.redis().await;
    let docs: redis::Value =
        redis::cmd("COMMAND").arg("DOCS").query_async(&mut conn).await.expect("COMMAND DOCS");
    let list: redis::Value =
        redis::cmd("COMMAND").arg("LIST").query_async(&mut conn).await.expect("COMMAND LIST");
    let documented = names(&docs, 2);
    let commands: Vec<String> = names(&list, 1).into_iter().filter(|n| !n.contains('|')).collect();
    assert_eq!(documented, commands);
    assert_eq!(documented.len(), mapcache::server::commands::COMMANDS.len());
    // Each entry is the one its name gets on its own.
    let redis::Value::Array(items) = &docs else { unreachable!() };
    let position = documented.iter().position(|n| n == "hset").expect("hset documented");
    let hset: redis::Value =
        redis::cmd("COMMAND").arg("DOCS").arg("hset").query_async(&mut conn).await.expect("hset");
    assert_eq!(redis::Value::Array(items[2 * position..2 * position + 2].to_vec()), hset);
    // RESP3: a map of as many commands.
    let mut c = node.raw().await;
    switch_to_resp3(&mut c).await;
    c.stream.write_all(&cmd(&["COMMAND", "DOCS"])).await.expect("write");
    let header = format!("%{}\r\n$4\r\nping\r\n", commands.len());
    assert_eq!(String::from_utf8_lossy(&c.read_exact(header.len()).await), header);
}

/// `COMMAND DOCS get`, RESP2.
const GET_RESP2: &[u8] =
    b"*2\r\n$3\r\nget\r\n*10\r\n$7\r\nsummary\r\n$22\r\nGet the value of a key\r\n$5\r\nsince\r\n\
    $5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\n\
    arguments\r\n*1\r\n*6\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\n\
    key_spec_index\r\n:0\r\n";

/// `COMMAND DOCS get`, RESP3.
const GET_RESP3: &[u8] =
    b"%1\r\n$3\r\nget\r\n%5\r\n$7\r\nsummary\r\n$22\r\nGet the value of a key\r\n$5\r\nsince\r\n\
    $5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\n\
    arguments\r\n*1\r\n%3\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\n\
    key_spec_index\r\n:0\r\n";

/// `COMMAND DOCS hset`, RESP2.
const HSET_RESP2: &[u8] = b"*2\r\n$4\r\nhset\r\n*12\r\n$7\r\nsummary\r\n$36\r\nSet the string value of a hash field\r\n\
    $5\r\nsince\r\n$5\r\n2.0.0\r\n$5\r\ngroup\r\n$4\r\nhash\r\n$10\r\ncomplexity\r\n$132\r\n\
    O(1) for each field/value pair added, so O(N) to add N field/value pairs when the command is called with multiple field/value pairs.\r\n\
    $7\r\nhistory\r\n*1\r\n*2\r\n$5\r\n4.0.0\r\n$47\r\n\
    Accepts multiple `field` and `value` arguments.\r\n$9\r\narguments\r\n*2\r\n*6\r\n$4\r\n\
    name\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n*8\r\n$4\r\n\
    name\r\n$11\r\nfield_value\r\n$4\r\ntype\r\n$5\r\nblock\r\n$5\r\nflags\r\n*1\r\n\
    +multiple\r\n$9\r\narguments\r\n*2\r\n*4\r\n$4\r\nname\r\n$5\r\nfield\r\n$4\r\ntype\r\n\
    $6\r\nstring\r\n*4\r\n$4\r\nname\r\n$5\r\nvalue\r\n$4\r\ntype\r\n$6\r\nstring\r\n";

/// `COMMAND DOCS hset`, RESP3.
const HSET_RESP3: &[u8] = b"%1\r\n$4\r\nhset\r\n%6\r\n$7\r\nsummary\r\n$36\r\nSet the string value of a hash field\r\n\
    $5\r\nsince\r\n$5\r\n2.0.0\r\n$5\r\ngroup\r\n$4\r\nhash\r\n$10\r\ncomplexity\r\n$132\r\n\
    O(1) for each field/value pair added, so O(N) to add N field/value pairs when the command is called with multiple field/value pairs.\r\n\
    $7\r\nhistory\r\n~1\r\n*2\r\n$5\r\n4.0.0\r\n$47\r\n\
    Accepts multiple `field` and `value` arguments.\r\n$9\r\narguments\r\n*2\r\n%3\r\n$4\r\n\
    name\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n%4\r\n$4\r\n\
    name\r\n$11\r\nfield_value\r\n$4\r\ntype\r\n$5\r\nblock\r\n$5\r\nflags\r\n~1\r\n\
    +multiple\r\n$9\r\narguments\r\n*2\r\n%2\r\n$4\r\nname\r\n$5\r\nfield\r\n$4\r\ntype\r\n\
    $6\r\nstring\r\n%2\r\n$4\r\nname\r\n$5\r\nvalue\r\n$4\r\ntype\r\n$6\r\nstring\r\n";

/// `COMMAND DOCS sadd`, RESP2.
const SADD_RESP2: &[u8] = b"*2\r\n$4\r\nsadd\r\n*12\r\n$7\r\nsummary\r\n$32\r\nAdd one or more members to a set\r\n\
    $5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$3\r\nset\r\n$10\r\ncomplexity\r\n$106\r\n\
    O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments.\r\n\
    $7\r\nhistory\r\n*1\r\n*2\r\n$5\r\n2.4.0\r\n$36\r\nAccepts multiple `member` arguments.\r\n\
    $9\r\narguments\r\n*2\r\n*6\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\n\
    key_spec_index\r\n:0\r\n*6\r\n$4\r\nname\r\n$6\r\nmember\r\n$4\r\ntype\r\n$6\r\nstring\r\n\
    $5\r\nflags\r\n*1\r\n+multiple\r\n";

/// `COMMAND DOCS sadd`, RESP3.
const SADD_RESP3: &[u8] = b"%1\r\n$4\r\nsadd\r\n%6\r\n$7\r\nsummary\r\n$32\r\nAdd one or more members to a set\r\n$5\r\n\
    since\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$3\r\nset\r\n$10\r\ncomplexity\r\n$106\r\n\
    O(1) for each element added, so O(N) to add N elements when the command is called with multiple arguments.\r\n\
    $7\r\nhistory\r\n~1\r\n*2\r\n$5\r\n2.4.0\r\n$36\r\nAccepts multiple `member` arguments.\r\n\
    $9\r\narguments\r\n*2\r\n%3\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\n\
    key_spec_index\r\n:0\r\n%3\r\n$4\r\nname\r\n$6\r\nmember\r\n$4\r\ntype\r\n$6\r\nstring\r\n\
    $5\r\nflags\r\n~1\r\n+multiple\r\n";

/// `COMMAND DOCS set`, RESP2.
const SET_RESP2: &[u8] =
    b"*2\r\n$3\r\nset\r\n*12\r\n$7\r\nsummary\r\n$29\r\nSet the string value of a key\r\n$5\r\n\
    since\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n\
    $7\r\nhistory\r\n*4\r\n*2\r\n$6\r\n2.6.12\r\n$44\r\n\
    Added the `EX`, `PX`, `NX` and `XX` options.\r\n*2\r\n$5\r\n6.0.0\r\n$27\r\n\
    Added the `KEEPTTL` option.\r\n*2\r\n$5\r\n6.2.0\r\n$42\r\n\
    Added the `GET`, `EXAT` and `PXAT` option.\r\n*2\r\n$5\r\n7.0.0\r\n$55\r\n\
    Allowed the `NX` and `GET` options to be used together.\r\n$9\r\narguments\r\n*5\r\n*6\r\n\
    $4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n*4\r\n\
    $4\r\nname\r\n$5\r\nvalue\r\n$4\r\ntype\r\n$6\r\nstring\r\n*10\r\n$4\r\nname\r\n$9\r\n\
    condition\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\nsince\r\n$6\r\n2.6.12\r\n$5\r\nflags\r\n\
    *1\r\n+optional\r\n$9\r\narguments\r\n*2\r\n*6\r\n$4\r\nname\r\n$2\r\nnx\r\n$4\r\ntype\r\n\
    $10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nNX\r\n*6\r\n$4\r\nname\r\n$2\r\nxx\r\n$4\r\n\
    type\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nXX\r\n*10\r\n$4\r\nname\r\n$3\r\nget\r\n\
    $4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$3\r\nGET\r\n$5\r\nsince\r\n$5\r\n\
    6.2.0\r\n$5\r\nflags\r\n*1\r\n+optional\r\n*8\r\n$4\r\nname\r\n$10\r\nexpiration\r\n$4\r\n\
    type\r\n$5\r\noneof\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n*5\r\n*8\r\n\
    $4\r\nname\r\n$7\r\nseconds\r\n$4\r\ntype\r\n$7\r\ninteger\r\n$5\r\ntoken\r\n$2\r\nEX\r\n\
    $5\r\nsince\r\n$6\r\n2.6.12\r\n*8\r\n$4\r\nname\r\n$12\r\nmilliseconds\r\n$4\r\ntype\r\n\
    $7\r\ninteger\r\n$5\r\ntoken\r\n$2\r\nPX\r\n$5\r\nsince\r\n$6\r\n2.6.12\r\n*8\r\n$4\r\n\
    name\r\n$17\r\nunix-time-seconds\r\n$4\r\ntype\r\n$9\r\nunix-time\r\n$5\r\ntoken\r\n$4\r\n\
    EXAT\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n*8\r\n$4\r\nname\r\n$22\r\nunix-time-milliseconds\r\n\
    $4\r\ntype\r\n$9\r\nunix-time\r\n$5\r\ntoken\r\n$4\r\nPXAT\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n\
    *8\r\n$4\r\nname\r\n$7\r\nkeepttl\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n\
    $7\r\nKEEPTTL\r\n$5\r\nsince\r\n$5\r\n6.0.0\r\n";

/// `COMMAND DOCS set`, RESP3.
const SET_RESP3: &[u8] =
    b"%1\r\n$3\r\nset\r\n%6\r\n$7\r\nsummary\r\n$29\r\nSet the string value of a key\r\n$5\r\n\
    since\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n\
    $7\r\nhistory\r\n~4\r\n*2\r\n$6\r\n2.6.12\r\n$44\r\n\
    Added the `EX`, `PX`, `NX` and `XX` options.\r\n*2\r\n$5\r\n6.0.0\r\n$27\r\n\
    Added the `KEEPTTL` option.\r\n*2\r\n$5\r\n6.2.0\r\n$42\r\n\
    Added the `GET`, `EXAT` and `PXAT` option.\r\n*2\r\n$5\r\n7.0.0\r\n$55\r\n\
    Allowed the `NX` and `GET` options to be used together.\r\n$9\r\narguments\r\n*5\r\n%3\r\n\
    $4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n%2\r\n\
    $4\r\nname\r\n$5\r\nvalue\r\n$4\r\ntype\r\n$6\r\nstring\r\n%5\r\n$4\r\nname\r\n$9\r\n\
    condition\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\nsince\r\n$6\r\n2.6.12\r\n$5\r\nflags\r\n\
    ~1\r\n+optional\r\n$9\r\narguments\r\n*2\r\n%3\r\n$4\r\nname\r\n$2\r\nnx\r\n$4\r\ntype\r\n\
    $10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nNX\r\n%3\r\n$4\r\nname\r\n$2\r\nxx\r\n$4\r\n\
    type\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\nXX\r\n%5\r\n$4\r\nname\r\n$3\r\nget\r\n\
    $4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$3\r\nGET\r\n$5\r\nsince\r\n$5\r\n\
    6.2.0\r\n$5\r\nflags\r\n~1\r\n+optional\r\n%4\r\n$4\r\nname\r\n$10\r\nexpiration\r\n$4\r\n\
    type\r\n$5\r\noneof\r\n$5\r\nflags\r\n~1\r\n+optional\r\n$9\r\narguments\r\n*5\r\n%4\r\n\
    $4\r\nname\r\n$7\r\nseconds\r\n$4\r\ntype\r\n$7\r\ninteger\r\n$5\r\ntoken\r\n$2\r\nEX\r\n\
    $5\r\nsince\r\n$6\r\n2.6.12\r\n%4\r\n$4\r\nname\r\n$12\r\nmilliseconds\r\n$4\r\ntype\r\n\
    $7\r\ninteger\r\n$5\r\ntoken\r\n$2\r\nPX\r\n$5\r\nsince\r\n$6\r\n2.6.12\r\n%4\r\n$4\r\n\
    name\r\n$17\r\nunix-time-seconds\r\n$4\r\ntype\r\n$9\r\nunix-time\r\n$5\r\ntoken\r\n$4\r\n\
    EXAT\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n%4\r\n$4\r\nname\r\n$22\r\nunix-time-milliseconds\r\n\
    $4\r\ntype\r\n$9\r\nunix-time\r\n$5\r\ntoken\r\n$4\r\nPXAT\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n\
    %4\r\n$4\r\nname\r\n$7\r\nkeepttl\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n\
    $7\r\nKEEPTTL\r\n$5\r\nsince\r\n$5\r\n6.0.0\r\n";

/// `COMMAND DOCS client`, RESP2, up to its `subcommands` key.
const CLIENT_HEAD_RESP2: &[u8] = b"*2\r\n$6\r\nclient\r\n*10\r\n$7\r\nsummary\r\n$42\r\n\
    A container for client connection commands\r\n$5\r\nsince\r\n$5\r\n2.4.0\r\n$5\r\ngroup\r\n\
    $10\r\nconnection\r\n$10\r\ncomplexity\r\n$22\r\nDepends on subcommand.\r\n$11\r\n\
    subcommands\r\n";

/// `COMMAND DOCS client`, RESP3, up to its `subcommands` key.
const CLIENT_HEAD_RESP3: &[u8] = b"%1\r\n$6\r\nclient\r\n%5\r\n$7\r\nsummary\r\n$42\r\n\
    A container for client connection commands\r\n$5\r\nsince\r\n$5\r\n2.4.0\r\n$5\r\ngroup\r\n\
    $10\r\nconnection\r\n$10\r\ncomplexity\r\n$22\r\nDepends on subcommand.\r\n$11\r\n\
    subcommands\r\n";

/// `COMMAND DOCS client|<sub>`, RESP2, for each CLIENT subcommand the node implements
/// (in its table's order) that Redis 7.0 has.
const CLIENT_SUBCOMMANDS_RESP2: &[(&str, &[u8])] = &[
    ("id", b"*2\r\n$9\r\nclient|id\r\n*8\r\n$7\r\nsummary\r\n$48\r\n\
        Returns the client ID for the current connection\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n$5\r\n\
        group\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"),
    ("setname", b"*2\r\n$14\r\nclient|setname\r\n*10\r\n$7\r\nsummary\r\n$31\r\n\
        Set the current connection name\r\n$5\r\nsince\r\n$5\r\n2.6.9\r\n$5\r\ngroup\r\n$10\r\n\
        connection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n*4\r\n$4\r\n\
        name\r\n$15\r\nconnection-name\r\n$4\r\ntype\r\n$6\r\nstring\r\n"),
    ("getname", b"*2\r\n$14\r\nclient|getname\r\n*8\r\n$7\r\nsummary\r\n$31\r\n\
        Get the current connection name\r\n$5\r\nsince\r\n$5\r\n2.6.9\r\n$5\r\ngroup\r\n$10\r\n\
        connection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"),
    ("list", b"*2\r\n$11\r\nclient|list\r\n*12\r\n$7\r\nsummary\r\n$34\r\n\
        Get the list of client connections\r\n$5\r\nsince\r\n$5\r\n2.4.0\r\n$5\r\ngroup\r\n$10\r\n\
        connection\r\n$10\r\ncomplexity\r\n$48\r\n\
        O(N) where N is the number of client connections\r\n$7\r\nhistory\r\n*6\r\n*2\r\n$6\r\n\
        2.8.12\r\n$31\r\nAdded unique client `id` field.\r\n*2\r\n$5\r\n5.0.0\r\n$29\r\n\
        Added optional `TYPE` filter.\r\n*2\r\n$5\r\n6.0.0\r\n$19\r\nAdded `user` field.\r\n*2\r\n\
        $5\r\n6.2.0\r\n$85\r\n\
        Added `argv-mem`, `tot-mem`, `laddr` and `redir` fields and the optional `ID` filter.\r\n\
        *2\r\n$5\r\n7.0.0\r\n$50\r\nAdded `resp`, `multi-mem`, `rbs` and `rbp` fields.\r\n*2\r\n\
        $5\r\n7.0.3\r\n$19\r\nAdded `ssub` field.\r\n$9\r\narguments\r\n*2\r\n*12\r\n$4\r\nname\r\n\
        $28\r\nnormal_master_replica_pubsub\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\ntoken\r\n$4\r\n\
        TYPE\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n$5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n\
        *4\r\n*6\r\n$4\r\nname\r\n$6\r\nnormal\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n\
        $6\r\nNORMAL\r\n*6\r\n$4\r\nname\r\n$6\r\nmaster\r\n$4\r\ntype\r\n$10\r\npure-token\r\n\
        $5\r\ntoken\r\n$6\r\nMASTER\r\n*6\r\n$4\r\nname\r\n$7\r\nreplica\r\n$4\r\ntype\r\n$10\r\n\
        pure-token\r\n$5\r\ntoken\r\n$7\r\nREPLICA\r\n*6\r\n$4\r\nname\r\n$6\r\npubsub\r\n$4\r\n\
        type\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$6\r\nPUBSUB\r\n*12\r\n$4\r\nname\r\n$2\r\n\
        id\r\n$4\r\ntype\r\n$5\r\nblock\r\n$5\r\ntoken\r\n$2\r\nID\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n\
        $5\r\nflags\r\n*1\r\n+optional\r\n$9\r\narguments\r\n*1\r\n*6\r\n$4\r\nname\r\n$9\r\n\
        client-id\r\n$4\r\ntype\r\n$7\r\ninteger\r\n$5\r\nflags\r\n*1\r\n+multiple\r\n"),
    ("kill", b"*2\r\n$11\r\nclient|kill\r\n*12\r\n$7\r\nsummary\r\n$31\r\n\
        Kill the connection of a client\r\n$5\r\nsince\r\n$5\r\n2.4.0\r\n$5\r\ngroup\r\n$10\r\n\
        connection\r\n$10\r\ncomplexity\r\n$48\r\n\
        O(N) where N is the number of client connections\r\n$7\r\nhistory\r\n*5\r\n*2\r\n$6\r\n\
        2.8.12\r\n$24\r\nAdded new filter format.\r\n*2\r\n$6\r\n2.8.12\r\n$12\r\n`ID` option.\r\n\
        *2\r\n$5\r\n3.2.0\r\n$41\r\nAdded `master` type in for `TYPE` option.\r\n*2\r\n$5\r\n\
        5.0.0\r\n$91\r\n\
        Replaced `slave` `TYPE` with `replica`. `slave` still supported for backward compatibility.\r\n\
        *2\r\n$5\r\n6.2.0\r\n$15\r\n`LADDR` option.\r\n$9\r\narguments\r\n*1\r\n*6\r\n$4\r\nname\r\n\
        $6\r\nfilter\r\n$4\r\ntype\r\n$5\r\noneof\r\n$9\r\narguments\r\n*2\r\n*6\r\n$4\r\nname\r\n\
        $7\r\nip:port\r\n$4\r\ntype\r\n$6\r\nstring\r\n$16\r\ndeprecated_since\r\n$6\r\n2.8.12\r\n\
        *8\r\n$4\r\nname\r\n$10\r\nnew-format\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\nflags\r\n*1\r\n\
        +multiple\r\n$9\r\narguments\r\n*6\r\n*10\r\n$4\r\nname\r\n$9\r\nclient-id\r\n$4\r\ntype\r\n\
        $7\r\ninteger\r\n$5\r\ntoken\r\n$2\r\nID\r\n$5\r\nsince\r\n$6\r\n2.8.12\r\n$5\r\nflags\r\n\
        *1\r\n+optional\r\n*12\r\n$4\r\nname\r\n$26\r\nnormal_master_slave_pubsub\r\n$4\r\ntype\r\n\
        $5\r\noneof\r\n$5\r\ntoken\r\n$4\r\nTYPE\r\n$5\r\nsince\r\n$6\r\n2.8.12\r\n$5\r\nflags\r\n\
        *1\r\n+optional\r\n$9\r\narguments\r\n*5\r\n*6\r\n$4\r\nname\r\n$6\r\nnormal\r\n$4\r\n\
        type\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$6\r\nNORMAL\r\n*8\r\n$4\r\nname\r\n$6\r\n\
        master\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$6\r\nMASTER\r\n$5\r\nsince\r\n\
        $5\r\n3.2.0\r\n*6\r\n$4\r\nname\r\n$5\r\nslave\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\n\
        token\r\n$5\r\nSLAVE\r\n*8\r\n$4\r\nname\r\n$7\r\nreplica\r\n$4\r\ntype\r\n$10\r\n\
        pure-token\r\n$5\r\ntoken\r\n$7\r\nREPLICA\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n*6\r\n$4\r\n\
        name\r\n$6\r\npubsub\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$6\r\nPUBSUB\r\n\
        *8\r\n$4\r\nname\r\n$8\r\nusername\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$4\r\n\
        USER\r\n$5\r\nflags\r\n*1\r\n+optional\r\n*8\r\n$4\r\nname\r\n$7\r\nip:port\r\n$4\r\n\
        type\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$4\r\nADDR\r\n$5\r\nflags\r\n*1\r\n+optional\r\n\
        *10\r\n$4\r\nname\r\n$7\r\nip:port\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$5\r\n\
        LADDR\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n$5\r\nflags\r\n*1\r\n+optional\r\n*8\r\n$4\r\n\
        name\r\n$6\r\nyes/no\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$6\r\nSKIPME\r\n$5\r\n\
        flags\r\n*1\r\n+optional\r\n"),
    ("info", b"*2\r\n$11\r\nclient|info\r\n*8\r\n$7\r\nsummary\r\n$56\r\n\
        Returns information about the current client connection.\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n\
        $5\r\ngroup\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"),
    ("reply", b"*2\r\n$12\r\nclient|reply\r\n*10\r\n$7\r\nsummary\r\n$48\r\n\
        Instruct the server whether to reply to commands\r\n$5\r\nsince\r\n$5\r\n3.2.0\r\n$5\r\n\
        group\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n\
        *6\r\n$4\r\nname\r\n$11\r\non_off_skip\r\n$4\r\ntype\r\n$5\r\noneof\r\n$9\r\narguments\r\n\
        *3\r\n*6\r\n$4\r\nname\r\n$2\r\non\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n\
        $2\r\nON\r\n*6\r\n$4\r\nname\r\n$3\r\noff\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\n\
        token\r\n$3\r\nOFF\r\n*6\r\n$4\r\nname\r\n$4\r\nskip\r\n$4\r\ntype\r\n$10\r\npure-token\r\n\
        $5\r\ntoken\r\n$4\r\nSKIP\r\n"),
    ("no-evict", b"*2\r\n$15\r\nclient|no-evict\r\n*10\r\n$7\r\nsummary\r\n$51\r\n\
        Set client eviction mode for the current connection\r\n$5\r\nsince\r\n$5\r\n7.0.0\r\n$5\r\n\
        group\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n\
        *6\r\n$4\r\nname\r\n$7\r\nenabled\r\n$4\r\ntype\r\n$5\r\noneof\r\n$9\r\narguments\r\n*2\r\n\
        *6\r\n$4\r\nname\r\n$2\r\non\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\n\
        ON\r\n*6\r\n$4\r\nname\r\n$3\r\noff\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n\
        $3\r\nOFF\r\n"),
    ("help", b"*2\r\n$11\r\nclient|help\r\n*8\r\n$7\r\nsummary\r\n$49\r\n\
        Show helpful text about the different subcommands\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n$5\r\n\
        group\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"),
];

/// `COMMAND DOCS client|<sub>`, RESP3, for each CLIENT subcommand the node implements
/// (in its table's order) that Redis 7.0 has.
const CLIENT_SUBCOMMANDS_RESP3: &[(&str, &[u8])] = &[
    ("id", b"%1\r\n$9\r\nclient|id\r\n%4\r\n$7\r\nsummary\r\n$48\r\n\
        Returns the client ID for the current connection\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n$5\r\n\
        group\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"),
    ("setname", b"%1\r\n$14\r\nclient|setname\r\n%5\r\n$7\r\nsummary\r\n$31\r\n\
        Set the current connection name\r\n$5\r\nsince\r\n$5\r\n2.6.9\r\n$5\r\ngroup\r\n$10\r\n\
        connection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n%2\r\n$4\r\n\
        name\r\n$15\r\nconnection-name\r\n$4\r\ntype\r\n$6\r\nstring\r\n"),
    ("getname", b"%1\r\n$14\r\nclient|getname\r\n%4\r\n$7\r\nsummary\r\n$31\r\n\
        Get the current connection name\r\n$5\r\nsince\r\n$5\r\n2.6.9\r\n$5\r\ngroup\r\n$10\r\n\
        connection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"),
    ("list", b"%1\r\n$11\r\nclient|list\r\n%6\r\n$7\r\nsummary\r\n$34\r\n\
        Get the list of client connections\r\n$5\r\nsince\r\n$5\r\n2.4.0\r\n$5\r\ngroup\r\n$10\r\n\
        connection\r\n$10\r\ncomplexity\r\n$48\r\n\
        O(N) where N is the number of client connections\r\n$7\r\nhistory\r\n~6\r\n*2\r\n$6\r\n\
        2.8.12\r\n$31\r\nAdded unique client `id` field.\r\n*2\r\n$5\r\n5.0.0\r\n$29\r\n\
        Added optional `TYPE` filter.\r\n*2\r\n$5\r\n6.0.0\r\n$19\r\nAdded `user` field.\r\n*2\r\n\
        $5\r\n6.2.0\r\n$85\r\n\
        Added `argv-mem`, `tot-mem`, `laddr` and `redir` fields and the optional `ID` filter.\r\n\
        *2\r\n$5\r\n7.0.0\r\n$50\r\nAdded `resp`, `multi-mem`, `rbs` and `rbp` fields.\r\n*2\r\n\
        $5\r\n7.0.3\r\n$19\r\nAdded `ssub` field.\r\n$9\r\narguments\r\n*2\r\n%6\r\n$4\r\nname\r\n\
        $28\r\nnormal_master_replica_pubsub\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\ntoken\r\n$4\r\n\
        TYPE\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n$5\r\nflags\r\n~1\r\n+optional\r\n$9\r\narguments\r\n\
        *4\r\n%3\r\n$4\r\nname\r\n$6\r\nnormal\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n\
        $6\r\nNORMAL\r\n%3\r\n$4\r\nname\r\n$6\r\nmaster\r\n$4\r\ntype\r\n$10\r\npure-token\r\n\
        $5\r\ntoken\r\n$6\r\nMASTER\r\n%3\r\n$4\r\nname\r\n$7\r\nreplica\r\n$4\r\ntype\r\n$10\r\n\
        pure-token\r\n$5\r\ntoken\r\n$7\r\nREPLICA\r\n%3\r\n$4\r\nname\r\n$6\r\npubsub\r\n$4\r\n\
        type\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$6\r\nPUBSUB\r\n%6\r\n$4\r\nname\r\n$2\r\nid\r\n\
        $4\r\ntype\r\n$5\r\nblock\r\n$5\r\ntoken\r\n$2\r\nID\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n$5\r\n\
        flags\r\n~1\r\n+optional\r\n$9\r\narguments\r\n*1\r\n%3\r\n$4\r\nname\r\n$9\r\nclient-id\r\n\
        $4\r\ntype\r\n$7\r\ninteger\r\n$5\r\nflags\r\n~1\r\n+multiple\r\n"),
    ("kill", b"%1\r\n$11\r\nclient|kill\r\n%6\r\n$7\r\nsummary\r\n$31\r\n\
        Kill the connection of a client\r\n$5\r\nsince\r\n$5\r\n2.4.0\r\n$5\r\ngroup\r\n$10\r\n\
        connection\r\n$10\r\ncomplexity\r\n$48\r\n\
        O(N) where N is the number of client connections\r\n$7\r\nhistory\r\n~5\r\n*2\r\n$6\r\n\
        2.8.12\r\n$24\r\nAdded new filter format.\r\n*2\r\n$6\r\n2.8.12\r\n$12\r\n`ID` option.\r\n\
        *2\r\n$5\r\n3.2.0\r\n$41\r\nAdded `master` type in for `TYPE` option.\r\n*2\r\n$5\r\n\
        5.0.0\r\n$91\r\n\
        Replaced `slave` `TYPE` with `replica`. `slave` still supported for backward compatibility.\r\n\
        *2\r\n$5\r\n6.2.0\r\n$15\r\n`LADDR` option.\r\n$9\r\narguments\r\n*1\r\n%3\r\n$4\r\nname\r\n\
        $6\r\nfilter\r\n$4\r\ntype\r\n$5\r\noneof\r\n$9\r\narguments\r\n*2\r\n%3\r\n$4\r\nname\r\n\
        $7\r\nip:port\r\n$4\r\ntype\r\n$6\r\nstring\r\n$16\r\ndeprecated_since\r\n$6\r\n2.8.12\r\n\
        %4\r\n$4\r\nname\r\n$10\r\nnew-format\r\n$4\r\ntype\r\n$5\r\noneof\r\n$5\r\nflags\r\n~1\r\n\
        +multiple\r\n$9\r\narguments\r\n*6\r\n%5\r\n$4\r\nname\r\n$9\r\nclient-id\r\n$4\r\ntype\r\n\
        $7\r\ninteger\r\n$5\r\ntoken\r\n$2\r\nID\r\n$5\r\nsince\r\n$6\r\n2.8.12\r\n$5\r\nflags\r\n\
        ~1\r\n+optional\r\n%6\r\n$4\r\nname\r\n$26\r\nnormal_master_slave_pubsub\r\n$4\r\ntype\r\n\
        $5\r\noneof\r\n$5\r\ntoken\r\n$4\r\nTYPE\r\n$5\r\nsince\r\n$6\r\n2.8.12\r\n$5\r\nflags\r\n\
        ~1\r\n+optional\r\n$9\r\narguments\r\n*5\r\n%3\r\n$4\r\nname\r\n$6\r\nnormal\r\n$4\r\n\
        type\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$6\r\nNORMAL\r\n%4\r\n$4\r\nname\r\n$6\r\n\
        master\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$6\r\nMASTER\r\n$5\r\nsince\r\n\
        $5\r\n3.2.0\r\n%3\r\n$4\r\nname\r\n$5\r\nslave\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\n\
        token\r\n$5\r\nSLAVE\r\n%4\r\n$4\r\nname\r\n$7\r\nreplica\r\n$4\r\ntype\r\n$10\r\n\
        pure-token\r\n$5\r\ntoken\r\n$7\r\nREPLICA\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n%3\r\n$4\r\n\
        name\r\n$6\r\npubsub\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$6\r\nPUBSUB\r\n\
        %4\r\n$4\r\nname\r\n$8\r\nusername\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$4\r\n\
        USER\r\n$5\r\nflags\r\n~1\r\n+optional\r\n%4\r\n$4\r\nname\r\n$7\r\nip:port\r\n$4\r\n\
        type\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$4\r\nADDR\r\n$5\r\nflags\r\n~1\r\n+optional\r\n\
        %5\r\n$4\r\nname\r\n$7\r\nip:port\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$5\r\n\
        LADDR\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n$5\r\nflags\r\n~1\r\n+optional\r\n%4\r\n$4\r\n\
        name\r\n$6\r\nyes/no\r\n$4\r\ntype\r\n$6\r\nstring\r\n$5\r\ntoken\r\n$6\r\nSKIPME\r\n$5\r\n\
        flags\r\n~1\r\n+optional\r\n"),
    ("info", b"%1\r\n$11\r\nclient|info\r\n%4\r\n$7\r\nsummary\r\n$56\r\n\
        Returns information about the current client connection.\r\n$5\r\nsince\r\n$5\r\n6.2.0\r\n\
        $5\r\ngroup\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"),
    ("reply", b"%1\r\n$12\r\nclient|reply\r\n%5\r\n$7\r\nsummary\r\n$48\r\n\
        Instruct the server whether to reply to commands\r\n$5\r\nsince\r\n$5\r\n3.2.0\r\n$5\r\n\
        group\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n\
        %3\r\n$4\r\nname\r\n$11\r\non_off_skip\r\n$4\r\ntype\r\n$5\r\noneof\r\n$9\r\narguments\r\n\
        *3\r\n%3\r\n$4\r\nname\r\n$2\r\non\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n\
        $2\r\nON\r\n%3\r\n$4\r\nname\r\n$3\r\noff\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\n\
        token\r\n$3\r\nOFF\r\n%3\r\n$4\r\nname\r\n$4\r\nskip\r\n$4\r\ntype\r\n$10\r\npure-token\r\n\
        $5\r\ntoken\r\n$4\r\nSKIP\r\n"),
    ("no-evict", b"%1\r\n$15\r\nclient|no-evict\r\n%5\r\n$7\r\nsummary\r\n$51\r\n\
        Set client eviction mode for the current connection\r\n$5\r\nsince\r\n$5\r\n7.0.0\r\n$5\r\n\
        group\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n\
        %3\r\n$4\r\nname\r\n$7\r\nenabled\r\n$4\r\ntype\r\n$5\r\noneof\r\n$9\r\narguments\r\n*2\r\n\
        %3\r\n$4\r\nname\r\n$2\r\non\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n$2\r\n\
        ON\r\n%3\r\n$4\r\nname\r\n$3\r\noff\r\n$4\r\ntype\r\n$10\r\npure-token\r\n$5\r\ntoken\r\n\
        $3\r\nOFF\r\n"),
    ("help", b"%1\r\n$11\r\nclient|help\r\n%4\r\n$7\r\nsummary\r\n$49\r\n\
        Show helpful text about the different subcommands\r\n$5\r\nsince\r\n$5\r\n5.0.0\r\n$5\r\n\
        group\r\n$10\r\nconnection\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n"),
];
