//! Reads exactly one RESP2 or RESP3 reply off the front of a buffer, as the server sent it, so
//! that two servers' replies can be compared byte for byte.
//!
//! A reply is one frame, possibly nested: simple strings, errors, integers, nulls, doubles,
//! booleans and big numbers are one line; bulk strings, bulk errors and verbatim strings a length
//! line and that many bytes; arrays, sets and pushes a count of frames; maps a count of key/value
//! pairs. An attribute (`|`) is a map followed by the reply it annotates, and is read together
//! with it. "Incomplete" is a value (`Ok(None)`), not an error: the caller reads more and asks
//! again.

/// The length of the first complete reply in `buf`; `Ok(None)` while it is still incomplete.
pub fn reply_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let mut pos = 0;
    // Frames still to read: the reply itself, then the elements of each aggregate met.
    let mut pending: u64 = 1;
    while pending > 0 {
        let Some((kind, line, after_line)) = header(buf, pos) else {
            return Ok(None);
        };
        pos = after_line;
        pending -= 1;
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {}
            b'$' | b'!' | b'=' => {
                // `$-1` is RESP2's null bulk string: the line is the whole frame.
                if let Some(len) = count(line, kind)? {
                    let end = pos + len as usize + 2;
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(format!("a bulk of {len} bytes not followed by CRLF"));
                    }
                    pos = end;
                }
            }
            // `*-1` is RESP2's null array.
            b'*' | b'~' | b'>' => pending += count(line, kind)?.unwrap_or(0),
            b'%' => pending += 2 * count(line, kind)?.unwrap_or(0),
            // The attribute's pairs, then the reply they annotate.
            b'|' => pending += 2 * count(line, kind)?.unwrap_or(0) + 1,
            other => return Err(format!("no RESP reply starts with {:?}", other as char)),
        }
    }
    Ok(Some(pos))
}

/// An aggregate reply's type byte and its elements, each a complete frame (a map's keys and
/// values alternate); `None` for a reply that is not an aggregate, or a null one.
pub fn elements(reply: &[u8]) -> Option<(u8, Vec<&[u8]>)> {
    let (kind, line, mut pos) = header(reply, 0)?;
    if !matches!(kind, b'*' | b'~' | b'>' | b'%') {
        return None;
    }
    let frames = count(line, kind).ok()?? * if kind == b'%' { 2 } else { 1 };
    let mut out = Vec::new();
    for _ in 0..frames {
        let len = reply_len(&reply[pos..]).ok()??;
        out.push(&reply[pos..pos + len]);
        pos += len;
    }
    Some((kind, out))
}

/// The payload of a bulk string reply (`$3\r\nabc\r\n` is `abc`); `None` for any other reply.
pub fn bulk_payload(reply: &[u8]) -> Option<&[u8]> {
    let (kind, line, pos) = header(reply, 0)?;
    let len = count(line, kind).ok()?? as usize;
    (kind == b'$' && reply.len() == pos + len + 2).then(|| &reply[pos..pos + len])
}

/// The value of an integer reply (`:12\r\n` is 12); `None` for any other reply.
pub fn integer(reply: &[u8]) -> Option<i64> {
    let (kind, line, pos) = header(reply, 0)?;
    if kind != b':' || pos != reply.len() {
        return None;
    }
    std::str::from_utf8(line).ok()?.parse().ok()
}

/// The frame at `pos`: its type byte, the rest of its first line, and where that line ends
/// (after its CRLF); `None` until the whole line is in `buf`.
fn header(buf: &[u8], pos: usize) -> Option<(u8, &[u8], usize)> {
    let rest = buf.get(pos..)?;
    let cr = rest.windows(2).position(|w| w == b"\r\n")?;
    if cr == 0 {
        // An empty line has no type byte: report it as the (invalid) type CR.
        return Some((b'\r', &[], pos + 2));
    }
    Some((rest[0], &rest[1..cr], pos + cr + 2))
}

/// A length or element count; `None` for the RESP2 null (`-1`).
fn count(line: &[u8], kind: u8) -> Result<Option<u64>, String> {
    let text =
        std::str::from_utf8(line).map_err(|_| format!("{:?} count not ASCII", kind as char))?;
    if text == "-1" {
        return Ok(None);
    }
    text.parse::<u64>().map(Some).map_err(|_| format!("{:?} count {text:?}", kind as char))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every prefix shorter than the reply is incomplete, and the whole reply is read to its
    /// last byte even with the next reply behind it.
    fn assert_one_reply(reply: &[u8]) {
        for cut in 0..reply.len() {
            assert_eq!(reply_len(&reply[..cut]), Ok(None), "prefix {:?}", &reply[..cut]);
        }
        let mut two = reply.to_vec();
        two.extend_from_slice(b"+NEXT\r\n");
        assert_eq!(reply_len(&two), Ok(Some(reply.len())), "{:?}", reply.escape_ascii());
    }

    #[test]
    fn reads_each_resp2_reply_to_its_last_byte() {
        for reply in [
            &b"+OK\r\n"[..],
            b"-ERR syntax error\r\n",
            b":-12\r\n",
            b"$-1\r\n",
            b"$0\r\n\r\n",
            b"$4\r\na\r\nb\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\n0\r\n*2\r\n$2\r\nk1\r\n$-1\r\n",
        ] {
            assert_one_reply(reply);
        }
    }

    #[test]
    fn reads_each_resp3_reply_to_its_last_byte() {
        for reply in [
            &b"_\r\n"[..],
            b",1.5\r\n",
            b"#t\r\n",
            b"(12345678901234567890\r\n",
            b"!3\r\nERR\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"%2\r\n$1\r\na\r\n:1\r\n+b\r\n*1\r\n_\r\n",
            b"~2\r\n:1\r\n:2\r\n",
            b">2\r\n+message\r\n$1\r\nx\r\n",
            b"|1\r\n+ttl\r\n:3\r\n$1\r\nv\r\n",
            b"%1\r\n+key\r\n|1\r\n+a\r\n:1\r\n*1\r\n:2\r\n",
        ] {
            assert_one_reply(reply);
        }
    }

    #[test]
    fn refuses_what_no_reply_starts_with() {
        assert!(reply_len(b"?x\r\n").is_err());
        assert!(reply_len(b"\r\n").is_err());
        assert!(reply_len(b"$1\r\nab\r\n").is_err());
        assert!(reply_len(b"*-2\r\n").is_err());
    }

    #[test]
    fn splits_an_aggregate_into_its_frames() {
        let reply = b"*3\r\n$2\r\nk1\r\n*1\r\n:1\r\n_\r\n";
        assert_eq!(
            elements(reply),
            Some((b'*', vec![&b"$2\r\nk1\r\n"[..], b"*1\r\n:1\r\n", b"_\r\n"]))
        );
        let map = b"%1\r\n+a\r\n:1\r\n";
        assert_eq!(elements(map), Some((b'%', vec![&b"+a\r\n"[..], b":1\r\n"])));
        assert_eq!(elements(b"*-1\r\n"), None);
        assert_eq!(elements(b"+OK\r\n"), None);
        assert_eq!(bulk_payload(b"$2\r\nk1\r\n"), Some(&b"k1"[..]));
        assert_eq!(bulk_payload(b"$-1\r\n"), None);
        assert_eq!(integer(b":-2\r\n"), Some(-2));
        assert_eq!(integer(b"+1\r\n"), None);
    }
}
