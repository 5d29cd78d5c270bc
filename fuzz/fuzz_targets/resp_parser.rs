//! Feeds arbitrary bytes to the RESP parser exactly as a connection does: parse until
//! incomplete or a protocol error. Any panic, or a frame that consumes nothing, is a bug. Then
//! feeds the same bytes to one `RequestParser` in pieces (of the size the first byte picks, as
//! reads might deliver them): it must find exactly what the whole parse found, commands and
//! error alike.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use mapcache::server::resp::{Parsed, ProtocolError, RequestParser, parse_command};

type Outcome = (Vec<Vec<Bytes>>, Option<ProtocolError>);

fn whole(data: &[u8], authenticated: bool) -> Outcome {
    let mut buf = BytesMut::from(data);
    let mut commands = Vec::new();
    loop {
        let before = buf.len();
        match parse_command(&mut buf, authenticated) {
            Ok(Parsed::Command(args)) => {
                assert!(buf.len() < before);
                commands.push(args);
            }
            Ok(Parsed::Empty) => assert!(buf.len() < before),
            Ok(Parsed::Incomplete) => {
                assert_eq!(buf.len(), before);
                return (commands, None);
            }
            Err(err) => return (commands, Some(err)),
        }
    }
}

fn in_pieces(data: &[u8], piece: usize, authenticated: bool) -> Outcome {
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut rest = data;
    let mut commands = Vec::new();
    loop {
        match parser.parse(&mut buf, authenticated) {
            Ok(Parsed::Command(args)) => commands.push(args),
            Ok(Parsed::Empty) => {}
            Ok(Parsed::Incomplete) if rest.is_empty() => return (commands, None),
            Ok(Parsed::Incomplete) => {
                let (read, left) = rest.split_at(piece.min(rest.len()));
                buf.extend_from_slice(read);
                rest = left;
            }
            Err(err) => return (commands, Some(err)),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else {
        return;
    };
    let piece = usize::from(first % 16) + 1;
    for authenticated in [true, false] {
        assert_eq!(in_pieces(data, piece, authenticated), whole(data, authenticated));
    }
});
