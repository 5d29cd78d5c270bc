//! The reply encoder: RESP2, or RESP3 after `HELLO 3`.

use bytes::{Bytes, BytesMut};

/// Which reply dialect the connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Resp2,
    Resp3,
}

/// One reply, encoded per the connection's protocol.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Simple(&'static str),
    /// `+...` built at run time (TYPE, INFO-like status lines).
    Status(String),
    /// `+...` of raw bytes (a script's `{ok=...}`); `\r` and `\n` are sent as spaces.
    StatusBytes(Bytes),
    /// `-ERR ...` (the full message including its prefix word). Bytes, not text: Redis echoes
    /// what the client sent (an unknown command's name and arguments) as it came.
    Error(Bytes),
    Integer(i64),
    Bulk(Bytes),
    /// A stored value as a bulk string, without copying an inline value into an allocation.
    Value(crate::server::value::Value),
    /// RESP2 `$-1`, RESP3 `_`.
    Nil,
    /// RESP2 `*-1`, RESP3 `_`.
    NilArray,
    Array(Vec<Reply>),
    /// RESP3 map; RESP2 flattens it to an array of key, value, ...
    Map(Vec<(Reply, Reply)>),
    /// RESP3 set (`~`); RESP2 array.
    Set(Vec<Reply>),
    /// RESP3 double; RESP2 bulk string.
    Double(f64),
    /// RESP3 verbatim text (`=`); RESP2 bulk string.
    Verbatim(String),
    /// RESP3 boolean (`#t`, `#f`); RESP2 `:1` and `:0`. (A script's `true` and `false` reach a
    /// RESP2 client as `:1` and a nil: the script builds those replies itself.)
    Bool(bool),
}

impl Reply {
    pub fn ok() -> Self {
        Reply::Simple("OK")
    }

    /// An error reply: text, or raw client bytes it echoes (a `String`, a `Vec<u8>`, ...).
    pub fn error(msg: impl Into<Bytes>) -> Self {
        Reply::Error(msg.into())
    }

    pub fn bulk(data: impl Into<Bytes>) -> Self {
        Reply::Bulk(data.into())
    }

    pub fn bulk_str(s: &str) -> Self {
        Reply::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the wire form of this reply to `out`.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        match self {
            Reply::Simple(s) => line(out, b'+', s.as_bytes()),
            Reply::Status(s) => line(out, b'+', s.as_bytes()),
            // A newline would end the line early: Redis replaces them with spaces.
            Reply::StatusBytes(s) => line_without_newlines(out, b'+', s),
            Reply::Error(s) => line_without_newlines(out, b'-', s),
            Reply::Integer(n) => line_int(out, b':', *n),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Value(v) => bulk(out, v.as_bytes().unwrap_or_default()),
            Reply::Nil => match proto {
                Protocol::Resp2 => out.extend_from_slice(b"$-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::NilArray => match proto {
                Protocol::Resp2 => out.extend_from_slice(b"*-1\r\n"),
                Protocol::Resp3 => out.extend_from_slice(b"_\r\n"),
            },
            Reply::Array(items) | Reply::Set(items) => {
                let tag = match (self, proto) {
                    (Reply::Set(_), Protocol::Resp3) => b'~',
                    _ => b'*',
                };
                line_int(out, tag, items.len() as i64);
                for item in items {
                    item.encode(proto, out);
                }
            }
            Reply::Map(pairs) => {
                match proto {
                    Protocol::Resp2 => line_int(out, b'*', pairs.len() as i64 * 2),
                    Protocol::Resp3 => line_int(out, b'%', pairs.len() as i64),
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Double(d) => {
                let text = format_double(*d);
                match proto {
                    Protocol::Resp2 => bulk(out, text.as_bytes()),
                    Protocol::Resp3 => line(out, b',', text.as_bytes()),
                }
            }
            Reply::Bool(b) => match proto {
                Protocol::Resp2 => out.extend_from_slice(if *b { b":1\r\n" } else { b":0\r\n" }),
                Protocol::Resp3 => out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
            },
            Reply::Verbatim(text) => match proto {
                Protocol::Resp2 => bulk(out, text.as_bytes()),
                Protocol::Resp3 => {
                    line_int(out, b'=', text.len() as i64 + 4);
                    out.extend_from_slice(b"txt:");
                    out.extend_from_slice(text.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
            },
        }
    }
}

/// A line of `body` with its `\r` and `\n` sent as spaces.
fn line_without_newlines(out: &mut BytesMut, tag: u8, body: &[u8]) {
    let start = out.len() + 1;
    line(out, tag, body);
    for b in &mut out[start..start + body.len()] {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
}

/// A line holding an integer (`:n`, `*n`, `$n`...), formatted without an allocation.
fn line_int(out: &mut BytesMut, prefix: u8, n: i64) {
    line(out, prefix, itoa::Buffer::new().format(n).as_bytes());
}

fn line(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.reserve(body.len() + 3);
    out.extend_from_slice(&[tag]);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    line_int(out, b'$', data.len() as i64);
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Formats a double as Redis's `INCRBYFLOAT` does (`%.17Lg`, trailing zeros trimmed): the
/// shortest text that round-trips, never an exponent for ordinary magnitudes.
pub fn format_double(d: f64) -> String {
    if d.is_infinite() {
        return if d > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if d == d.trunc() && d.abs() < 1e17 {
        return format!("{}", d as i64);
    }
    format!("{d}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp2_and_resp3_encode_nil_and_maps_differently() {
        let mut out = BytesMut::new();
        Reply::Nil.encode(Protocol::Resp2, &mut out);
        Reply::Nil.encode(Protocol::Resp3, &mut out);
        let map = Reply::Map(vec![(Reply::bulk_str("a"), Reply::Integer(1))]);
        map.encode(Protocol::Resp2, &mut out);
        map.encode(Protocol::Resp3, &mut out);
        assert_eq!(&out[..], b"$-1\r\n_\r\n*2\r\n$1\r\na\r\n:1\r\n%1\r\n$1\r\na\r\n:1\r\n");
    }

    #[test]
    fn doubles_format_like_incrbyfloat() {
        assert_eq!(format_double(10.5), "10.5");
        assert_eq!(format_double(3.0), "3");
        assert_eq!(format_double(5.0e3), "5000");
    }
}
