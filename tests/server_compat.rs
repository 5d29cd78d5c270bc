//! Byte-exact Redis 7 compatibility of edge cases found by comparing the node's replies with a
//! real Redis (7.0.15, x86-64) side by side.

mod server_support;

use server_support::{cmd, start};

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
