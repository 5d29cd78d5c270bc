//! Feeds arbitrary bytes to the RESP parser exactly as a connection does: parse until
//! incomplete or a protocol error. Any panic, or a frame that consumes nothing, is a bug.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mapcache::server::resp::{Parsed, parse_command};

fuzz_target!(|data: &[u8]| {
    for authenticated in [true, false] {
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            match parse_command(&mut buf, authenticated) {
                Ok(Parsed::Command(_)) | Ok(Parsed::Empty) => assert!(buf.len() < before),
                Ok(Parsed::Incomplete) => {
                    assert_eq!(buf.len(), before);
                    break;
                }
                Err(_) => break,
            }
        }
    }
});
