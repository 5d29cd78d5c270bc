//! RESP framing: the request parser (`request`: RESP2 multibulk and inline commands) and the
//! reply encoder (`reply`: RESP2, or RESP3 after `HELLO 3`).

mod reply;
mod request;

pub use reply::{Protocol, Reply, format_double};
pub use request::{
    PROTO_INLINE_MAX_SIZE, PROTO_MAX_BULK_LEN, PROTO_MAX_MULTIBULK_LEN, Parsed, ProtocolError,
    RequestParser, UNAUTH_MAX_BULK_LEN, UNAUTH_MAX_MULTIBULK_LEN, parse_command,
};
