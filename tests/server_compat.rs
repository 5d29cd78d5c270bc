//! Byte-exact Redis 7 compatibility of edge cases found by comparing the node's replies with a
//! real Redis (7.0.15, x86-64) side by side: option parsing of SET and GETEX, SCAN cursors,
//! SELECT's index range, CONFIG GET names.

mod server_support;

use server_support::{cmd, cmd_bytes, start};
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
