//! The request parser: RESP2 multibulk and inline commands.
//!
//! "Incomplete frame" is a value, not an error: the parser first checks that a whole frame is in
//! the buffer, and only then takes it off the buffer's front. A connection parses with one
//! [`RequestParser`], which remembers how far it got into a multibulk frame that is not complete
//! yet, so every byte of a request is read once however many reads it arrives in (Redis keeps
//! `multibulklen` and `bulklen` in its client for the same reason); [`parse_command`] is the
//! same parser without that memory. Limits and error strings follow Redis 7's `networking.c`
//! (`processMultibulkBuffer`, `processInlineBuffer`).

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::Reply;

/// Largest bulk string a client may send (Redis's `proto-max-bulk-len`, 512 MB). Refused before
/// any allocation.
pub const PROTO_MAX_BULK_LEN: usize = 512 * 1024 * 1024;
/// Largest length line or inline command without a newline (Redis's `PROTO_INLINE_MAX_SIZE`).
pub const PROTO_INLINE_MAX_SIZE: usize = 64 * 1024;
/// Largest multibulk count accepted (Redis rejects counts above `INT_MAX`; we bound it lower so a
/// hostile count cannot reserve a huge argument vector).
pub const PROTO_MAX_MULTIBULK_LEN: usize = 1024 * 1024;
/// Before AUTH, Redis accepts at most 10 arguments and 16 KB bulks from an unauthenticated client.
pub const UNAUTH_MAX_MULTIBULK_LEN: usize = 10;
pub const UNAUTH_MAX_BULK_LEN: usize = 16 * 1024;

/// A malformed request: the connection replies `-ERR Protocol error: <msg>` and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// More than 10 arguments before AUTH.
    #[error("unauthenticated multibulk length")]
    UnauthenticatedMultibulkLength,
    /// A bulk over 16 KB before AUTH.
    #[error("unauthenticated bulk length")]
    UnauthenticatedBulkLength,
    /// The byte found where a bulk's `$` should be; Redis echoes it raw (`'%c'`).
    #[error("expected '$', got '{}'", .0.escape_ascii())]
    ExpectedBulk(u8),
    #[error("too big mbulk count string")]
    TooBigMultibulkCount,
    #[error("too big bulk count string")]
    TooBigBulkCount,
    #[error("too big inline request")]
    TooBigInline,
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    #[error("expected CRLF after bulk string")]
    MissingCrlf,
}

impl ProtocolError {
    /// The reply Redis sends before closing: `-ERR Protocol error: <reason>`, any byte it echoes
    /// raw (a NUL or a non-ASCII byte goes out as it came; `\r` and `\n` become spaces when the
    /// reply is encoded, as Redis's `addReplyErrorFormat` does).
    pub fn reply(&self) -> Reply {
        let mut text = b"ERR Protocol error: ".to_vec();
        match self {
            ProtocolError::ExpectedBulk(found) => {
                text.extend_from_slice(b"expected '$', got '");
                text.push(*found);
                text.push(b'\'');
            }
            other => text.extend_from_slice(other.to_string().as_bytes()),
        }
        Reply::error(text)
    }
}

/// What the parser found at the front of the buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole command, already removed from the buffer.
    Command(Vec<Bytes>),
    /// A whole frame that carries no command (`*0`, `*-1`, an empty inline line): skipped.
    Empty,
    /// Not enough bytes yet; the buffer is untouched.
    Incomplete,
}

/// Where the arguments of one complete frame lie, and how long the frame is.
struct FrameLayout {
    len: usize,
    args: Vec<Range<usize>>,
}

/// Parses one request from the front of `buf`, with no memory of earlier calls (a fresh
/// [`RequestParser`] each time). On `Command`/`Empty` the frame is removed from the buffer; on
/// `Incomplete` nothing is consumed. `authenticated` selects Redis's tighter limits for clients
/// that have not passed AUTH yet.
pub fn parse_command(buf: &mut BytesMut, authenticated: bool) -> Result<Parsed, ProtocolError> {
    RequestParser::default().parse(buf, authenticated)
}

/// A connection's request parser: [`parse_command`], plus where it stopped in a multibulk frame
/// that is not complete yet. The next call resumes there instead of reading the frame's earlier
/// arguments again, so a request of `n` arguments that arrives in `r` reads costs `O(n + r)`, not
/// `O(n * r)` (a 1M-argument MSET over a slow link would otherwise be read from its start on
/// every read).
///
/// The memory is valid while the caller leaves the front of the buffer alone between calls, as a
/// connection does: it only appends what it reads, and only the parser consumes.
#[derive(Debug, Default)]
pub struct RequestParser {
    partial: Option<PartialFrame>,
}

/// What is known of a multibulk frame that is not complete yet.
#[derive(Debug)]
struct PartialFrame {
    /// The frame's argument count.
    count: usize,
    /// The arguments read so far, as ranges of the buffer.
    args: Vec<Range<usize>>,
    /// Where the next argument's `$` is.
    pos: usize,
    /// The limits the arguments so far were checked against.
    authenticated: bool,
}

impl RequestParser {
    /// As [`parse_command`], resuming a frame an earlier call left incomplete.
    pub fn parse(
        &mut self,
        buf: &mut BytesMut,
        authenticated: bool,
    ) -> Result<Parsed, ProtocolError> {
        let layout = match buf.first() {
            None => {
                self.partial = None;
                return Ok(Parsed::Incomplete);
            }
            Some(b'*') => self.multibulk_layout(buf, authenticated)?,
            Some(_) => {
                self.partial = None;
                inline_layout(buf)?
            }
        };
        let Some(layout) = layout else {
            return Ok(Parsed::Incomplete);
        };
        let frame = buf.split_to(layout.len).freeze();
        if layout.args.is_empty() {
            return Ok(Parsed::Empty);
        }
        Ok(Parsed::Command(layout.args.into_iter().map(|r| frame.slice(r)).collect()))
    }

    /// Arguments of the incomplete frame at the front of the buffer read so far (0 when there is
    /// none): how far the next call starts into it.
    pub fn pending_args(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.args.len())
    }

    /// Redis's `processMultibulkBuffer`: the count line, then each bulk in turn, from where the
    /// last call stopped. Any outcome but `Ok(None)` forgets the frame.
    fn multibulk_layout(
        &mut self,
        buf: &[u8],
        authenticated: bool,
    ) -> Result<Option<FrameLayout>, ProtocolError> {
        if let Some(p) = &self.partial {
            debug_assert!(p.pos <= buf.len(), "the buffer lost bytes under a partial frame");
        }
        // AUTH runs only between frames, so the limits cannot change inside one. A buffer shorter
        // than what was read means the caller broke the contract; that much can be noticed, and
        // costs a re-read. A buffer whose front was replaced cannot be noticed here.
        let resume = (self.partial.take())
            .filter(|p| p.authenticated == authenticated && p.pos <= buf.len());
        let mut frame = match resume {
            Some(p) => p,
            None => match multibulk_header(buf, authenticated)? {
                Header::Incomplete => return Ok(None),
                Header::Empty(len) => return Ok(Some(FrameLayout { len, args: Vec::new() })),
                Header::Args(frame) => frame,
            },
        };
        while frame.args.len() < frame.count {
            match bulk_at(buf, frame.pos, authenticated)? {
                Some(arg) => {
                    frame.pos = arg.end + 2;
                    if frame.args.len() == frame.args.capacity() {
                        // Kept between reads now: grow as a Vec does, but never past the count.
                        let more = frame.args.capacity().max(4).min(frame.count - frame.args.len());
                        frame.args.reserve_exact(more);
                    }
                    frame.args.push(arg);
                }
                None => {
                    self.partial = Some(frame);
                    return Ok(None);
                }
            }
        }
        Ok(Some(FrameLayout { len: frame.pos, args: frame.args }))
    }
}

/// Finds `\r\n` from `start`; `None` when absent. A line longer than the inline limit is refused
/// with `too_big`, as Redis does.
fn find_line(
    buf: &[u8],
    start: usize,
    too_big: ProtocolError,
) -> Result<Option<usize>, ProtocolError> {
    match memchr::memchr(b'\r', &buf[start..]) {
        Some(i) => {
            if i > PROTO_INLINE_MAX_SIZE {
                return Err(too_big);
            }
            Ok(Some(start + i))
        }
        None if buf.len() - start > PROTO_INLINE_MAX_SIZE => Err(too_big),
        None => Ok(None),
    }
}

/// Redis's `string2ll` for length lines: optional `-`, digits, no leading `+`, no spaces, and
/// no leading zero (`0` alone is the only number that starts with one; `01` and `-0` are not
/// numbers to Redis, so `*01` is an invalid multibulk length there and here).
fn parse_len(line: &[u8]) -> Option<i64> {
    if line == b"0" {
        return Some(0);
    }
    let (neg, digits) = match line.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if digits[0] == b'0' {
        return None;
    }
    // The magnitude as unsigned, so that i64::MIN, which string2ll accepts, fits too.
    let mut magnitude: u64 = 0;
    for d in digits {
        magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() }
}

/// What a multibulk frame's count line says.
enum Header {
    Incomplete,
    /// `*0`, `*-1` and the like: a frame of this many bytes that carries no command.
    Empty(usize),
    Args(PartialFrame),
}

fn multibulk_header(buf: &[u8], authenticated: bool) -> Result<Header, ProtocolError> {
    let Some(cr) = find_line(buf, 1, ProtocolError::TooBigMultibulkCount)? else {
        return Ok(Header::Incomplete);
    };
    if buf.len() < cr + 2 {
        return Ok(Header::Incomplete);
    }
    if buf[cr + 1] != b'\n' {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    let count = parse_len(&buf[1..cr]).ok_or(ProtocolError::InvalidMultibulkLength)?;
    // Redis's order: a count past INT_MAX is invalid for anyone, then the pre-AUTH limit.
    if count > i64::from(i32::MAX) {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    if !authenticated && count > UNAUTH_MAX_MULTIBULK_LEN as i64 {
        return Err(ProtocolError::UnauthenticatedMultibulkLength);
    }
    if count > PROTO_MAX_MULTIBULK_LEN as i64 {
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    let pos = cr + 2;
    if count <= 0 {
        return Ok(Header::Empty(pos));
    }
    let count = count as usize;
    // Reserve by what the buffer could hold, never by the client's claim.
    let args = Vec::with_capacity(count.min(buf.len() / 4 + 1));
    Ok(Header::Args(PartialFrame { count, args, pos, authenticated }))
}

/// The bulk string whose `$` is at `pos`: its bytes' range, `None` while it is incomplete.
fn bulk_at(
    buf: &[u8],
    pos: usize,
    authenticated: bool,
) -> Result<Option<Range<usize>>, ProtocolError> {
    let Some(&tag) = buf.get(pos) else {
        return Ok(None);
    };
    if tag != b'$' {
        return Err(ProtocolError::ExpectedBulk(tag));
    }
    let Some(cr) = find_line(buf, pos + 1, ProtocolError::TooBigBulkCount)? else {
        return Ok(None);
    };
    if buf.len() < cr + 2 {
        return Ok(None);
    }
    if buf[cr + 1] != b'\n' {
        return Err(ProtocolError::InvalidBulkLength);
    }
    let len = parse_len(&buf[pos + 1..cr]).ok_or(ProtocolError::InvalidBulkLength)?;
    if len < 0 || len as u64 > PROTO_MAX_BULK_LEN as u64 {
        return Err(ProtocolError::InvalidBulkLength);
    }
    if !authenticated && len as u64 > UNAUTH_MAX_BULK_LEN as u64 {
        return Err(ProtocolError::UnauthenticatedBulkLength);
    }
    let start = cr + 2;
    let end = start + len as usize;
    if buf.len() < end + 2 {
        return Ok(None);
    }
    if &buf[end..end + 2] != b"\r\n" {
        return Err(ProtocolError::MissingCrlf);
    }
    Ok(Some(start..end))
}

/// An inline command (`PING\r\n`, as telnet sends): split like Redis's `sdssplitargs`, with
/// double quotes (and `\n`, `\xHH` escapes) and single quotes.
fn inline_layout(buf: &[u8]) -> Result<Option<FrameLayout>, ProtocolError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > PROTO_INLINE_MAX_SIZE {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(None);
    };
    if nl > PROTO_INLINE_MAX_SIZE {
        return Err(ProtocolError::TooBigInline);
    }
    let line_end = if nl > 0 && buf[nl - 1] == b'\r' { nl - 1 } else { nl };
    // Quoted arguments may differ from the raw bytes; such a frame is re-encoded below.
    let args = split_inline_args(&buf[..line_end])?;
    Ok(Some(FrameLayout { len: nl + 1, args }))
}

/// C's `isspace`: what Redis's `sdssplitargs` skips between arguments and accepts after a
/// closing quote.
fn is_c_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Argument ranges of an inline line, split as Redis's `sdssplitargs` splits it: the line is a C
/// string (a NUL ends it), arguments are separated by `isspace` bytes, an unquoted argument ends
/// at a space, tab, CR or LF (a vertical tab or form feed is part of it), and a closing quote
/// must be followed by a space or the end. A quoted part that `sdssplitargs` would rewrite
/// cannot be a plain range of the frame: escapes in double quotes, `\'` in single quotes, and a
/// quote inside an unquoted argument (Redis joins `a"b c"` into `ab c`) are refused the way Redis
/// refuses a malformed quote.
fn split_inline_args(line: &[u8]) -> Result<Vec<Range<usize>>, ProtocolError> {
    let line = &line[..memchr::memchr(0, line).unwrap_or(line.len())];
    let ends_unquoted = |c: u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_c_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        match line[i] {
            quote @ (b'"' | b'\'') => {
                let start = i + 1;
                let Some(close) = memchr::memchr(quote, &line[start..]) else {
                    return Err(ProtocolError::UnbalancedQuotes);
                };
                let end = start + close;
                let escaped = if quote == b'"' {
                    line[start..end].contains(&b'\\')
                } else {
                    end > start && line[end - 1] == b'\\'
                };
                if escaped || (end + 1 < line.len() && !is_c_space(line[end + 1])) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                args.push(start..end);
                i = end + 1;
            }
            _ => {
                let start = i;
                while i < line.len() && !ends_unquoted(line[i]) {
                    if matches!(line[i], b'"' | b'\'') {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    i += 1;
                }
                args.push(start..i);
            }
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::super::Protocol;
    use super::*;

    fn parse(input: &[u8]) -> (Result<Parsed, ProtocolError>, usize) {
        let mut buf = BytesMut::from(input);
        let r = parse_command(&mut buf, true);
        (r, buf.len())
    }

    #[test]
    fn multibulk_command_is_split_into_arguments_and_consumed() {
        let (r, left) = parse(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n");
        assert_eq!(r, Ok(Parsed::Command(vec![Bytes::from("GET"), Bytes::from("k")])));
        assert_eq!(left, 4);
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete_and_consumes_nothing() {
        let frame = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
        for cut in 0..frame.len() {
            let (r, left) = parse(&frame[..cut]);
            assert_eq!(r, Ok(Parsed::Incomplete), "cut at {cut}");
            assert_eq!(left, cut);
        }
    }

    #[test]
    fn a_frame_fed_byte_by_byte_resumes_where_it_stopped() {
        let frame = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n*1\r\n$4\r\nPING\r\n";
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::new();
        let mut commands = Vec::new();
        let mut pending_seen = Vec::new();
        for &byte in frame {
            buf.extend_from_slice(&[byte]);
            match parser.parse(&mut buf, true) {
                Ok(Parsed::Command(args)) => commands.push(args),
                Ok(Parsed::Incomplete) => pending_seen.push(parser.pending_args()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(commands, [vec!["SET", "k", "hello"], vec!["PING"]]);
        assert!(buf.is_empty());
        // The SET's first two arguments were known before its last byte came.
        assert!(pending_seen.contains(&2), "{pending_seen:?}");
        assert_eq!(parser.pending_args(), 0);
    }

    #[test]
    fn arguments_already_read_are_not_read_again() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$1"[..]);
        assert_eq!(parser.parse(&mut buf, true), Ok(Parsed::Incomplete));
        assert_eq!(parser.pending_args(), 1);
        // Spoil the first argument's `$` under the parser: a parser that read the frame from
        // its start again would now answer `expected '$', got 'X'`.
        buf[4] = b'X';
        buf.extend_from_slice(b"\r\nk\r\n");
        assert_eq!(
            parser.parse(&mut buf, true),
            Ok(Parsed::Command(vec![Bytes::from("GET"), Bytes::from("k")]))
        );
        // Without the memory, the same bytes are read from the start.
        let mut buf = BytesMut::from(&b"*2\r\nX3\r\nGET\r\n$1\r\nk\r\n"[..]);
        assert_eq!(parse_command(&mut buf, true), Err(ProtocolError::ExpectedBulk(b'X')));
    }

    #[test]
    fn a_protocol_error_in_a_resumed_frame_is_the_one_a_whole_read_finds() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"*3\r\n$1\r\na\r\n"[..]);
        assert_eq!(parser.parse(&mut buf, true), Ok(Parsed::Incomplete));
        buf.extend_from_slice(b"$1\r\nbXY");
        assert_eq!(parser.parse(&mut buf, true), Err(ProtocolError::MissingCrlf));
        assert_eq!(parser.pending_args(), 0);
        assert_eq!(
            parse_command(&mut BytesMut::from(&b"*3\r\n$1\r\na\r\n$1\r\nbXY"[..]), true),
            Err(ProtocolError::MissingCrlf)
        );
    }

    #[test]
    fn an_overlong_length_line_in_a_resumed_frame_is_refused() {
        let mut parser = RequestParser::default();
        let mut buf = BytesMut::from(&b"*2\r\n$1\r\na\r\n$"[..]);
        assert_eq!(parser.parse(&mut buf, true), Ok(Parsed::Incomplete));
        assert_eq!(parser.pending_args(), 1);
        buf.extend_from_slice(&[b'1'; PROTO_INLINE_MAX_SIZE]);
        assert_eq!(parser.parse(&mut buf, true), Ok(Parsed::Incomplete));
        buf.extend_from_slice(b"1");
        assert_eq!(parser.parse(&mut buf, true), Err(ProtocolError::TooBigBulkCount));
    }

    #[test]
    fn negative_bulk_length_is_a_protocol_error() {
        assert_eq!(parse(b"*1\r\n$-5\r\n").0, Err(ProtocolError::InvalidBulkLength));
    }

    #[test]
    fn bulk_over_proto_max_bulk_len_is_refused_before_allocation() {
        assert_eq!(parse(b"*1\r\n$536870913\r\n").0, Err(ProtocolError::InvalidBulkLength));
    }

    fn parse_unauthenticated(input: &[u8]) -> Result<Parsed, ProtocolError> {
        parse_command(&mut BytesMut::from(input), false)
    }

    #[test]
    fn unauthenticated_clients_get_redis_tighter_limits_and_words() {
        use ProtocolError::*;
        assert_eq!(parse_unauthenticated(b"*11\r\n"), Err(UnauthenticatedMultibulkLength));
        // Above our own 1M cap but within INT_MAX: Redis still names the pre-AUTH limit.
        assert_eq!(parse_unauthenticated(b"*2000000\r\n"), Err(UnauthenticatedMultibulkLength));
        assert_eq!(parse_unauthenticated(b"*2147483648\r\n"), Err(InvalidMultibulkLength));
        assert_eq!(parse_unauthenticated(b"*10\r\n"), Ok(Parsed::Incomplete));
        assert_eq!(parse_unauthenticated(b"*1\r\n$16385\r\n"), Err(UnauthenticatedBulkLength));
        assert_eq!(parse_unauthenticated(b"*1\r\n$16384\r\n"), Ok(Parsed::Incomplete));
        // Checked first, as Redis does: a bad length is invalid before it is too long.
        assert_eq!(parse_unauthenticated(b"*1\r\n$-1\r\n"), Err(InvalidBulkLength));
        assert_eq!(parse_unauthenticated(b"*1\r\n$536870913\r\n"), Err(InvalidBulkLength));
        // Authenticated, the same frames are fine.
        assert_eq!(parse(b"*11\r\n").0, Ok(Parsed::Incomplete));
        assert_eq!(parse(b"*1\r\n$16385\r\n").0, Ok(Parsed::Incomplete));
    }

    #[test]
    fn nested_array_as_command_is_refused() {
        assert_eq!(parse(b"*1\r\n*1\r\n$1\r\na\r\n").0, Err(ProtocolError::ExpectedBulk(b'*')));
    }

    #[test]
    fn garbage_multibulk_count_is_refused() {
        assert_eq!(parse(b"*x\r\n").0, Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(parse(b"*+1\r\n").0, Err(ProtocolError::InvalidMultibulkLength));
    }

    #[test]
    fn missing_crlf_after_bulk_is_refused() {
        assert_eq!(parse(b"*1\r\n$1\r\naXY").0, Err(ProtocolError::MissingCrlf));
    }

    #[test]
    fn empty_multibulk_is_skipped() {
        let (r, left) = parse(b"*0\r\n");
        assert_eq!(r, Ok(Parsed::Empty));
        assert_eq!(left, 0);
    }

    #[test]
    fn inline_commands_split_on_whitespace_and_quotes() {
        let (r, _) = parse(b"SET k \"hello world\"\r\n");
        assert_eq!(
            r,
            Ok(Parsed::Command(vec![
                Bytes::from("SET"),
                Bytes::from("k"),
                Bytes::from("hello world")
            ]))
        );
        assert_eq!(parse(b"SET k \"open\r\n").0, Err(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn inline_lines_split_like_sdssplitargs() {
        let args = |input: &[u8]| match parse(input).0 {
            Ok(Parsed::Command(args)) => args.iter().map(|a| a.to_vec()).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        // A NUL ends the line as C reads it; \v and \f separate arguments but do not end one.
        assert_eq!(args(b"\xff\x00\x01 more\r\n"), vec![b"\xff".to_vec()]);
        assert_eq!(args(b"\x0bGET\x0c k\x0bv\r\n"), vec![b"GET\x0c".to_vec(), b"k\x0bv".to_vec()]);
        assert_eq!(args(b"'a\\b' \"\"\n"), vec![b"a\\b".to_vec(), Vec::new()]);
        assert_eq!(parse(b"\x00\r\n").0, Ok(Parsed::Empty));
        // Redis rewrites these (or refuses them); they are refused here.
        for refused in [&b"a\"b c\"\r\n"[..], b"'a\\'\r\n", b"\"a\\n\"\r\n", b"\"a\"b\r\n"] {
            assert_eq!(parse(refused).0, Err(ProtocolError::UnbalancedQuotes), "{refused:?}");
        }
    }

    #[test]
    fn protocol_error_replies_echo_the_raw_byte_found() {
        let mut out = BytesMut::new();
        ProtocolError::ExpectedBulk(0xff).reply().encode(Protocol::Resp2, &mut out);
        ProtocolError::ExpectedBulk(0).reply().encode(Protocol::Resp2, &mut out);
        ProtocolError::ExpectedBulk(b'\n').reply().encode(Protocol::Resp2, &mut out);
        assert_eq!(
            &out[..],
            b"-ERR Protocol error: expected '$', got '\xff'\r\n\
              -ERR Protocol error: expected '$', got '\x00'\r\n\
              -ERR Protocol error: expected '$', got ' '\r\n"
        );
    }

    #[test]
    fn overlong_inline_request_is_refused() {
        let big = vec![b'a'; PROTO_INLINE_MAX_SIZE + 1];
        assert_eq!(parse(&big).0, Err(ProtocolError::TooBigInline));
    }
}
