//! Property tests of the RESP parser on arbitrary bytes: it never panics, never consumes bytes
//! it did not parse, and a frame split at any point parses the same as the whole. The
//! cargo-fuzz target `fuzz/fuzz_targets/resp_parser.rs` drives the same entry point.

mod server_support;

use bytes::{Bytes, BytesMut};
use mapcache::server::resp::{Parsed, parse_command};
use proptest::prelude::*;
use server_support::cmd_bytes;

/// Parses everything in `input` as a server would, returning the commands and whether a
/// protocol error stopped it.
fn parse_all(input: &[u8], authenticated: bool) -> (Vec<Vec<Bytes>>, bool) {
    let mut buf = BytesMut::from(input);
    let mut commands = Vec::new();
    loop {
        let before = buf.len();
        match parse_command(&mut buf, authenticated) {
            Ok(Parsed::Command(args)) => {
                assert!(!args.is_empty());
                assert!(buf.len() < before, "a command consumed nothing");
                commands.push(args);
            }
            Ok(Parsed::Empty) => assert!(buf.len() < before, "an empty frame consumed nothing"),
            Ok(Parsed::Incomplete) => {
                assert_eq!(buf.len(), before, "incomplete consumed bytes");
                return (commands, false);
            }
            Err(_) => return (commands, true),
        }
    }
}

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    cmd_bytes(&args.iter().map(Vec::as_slice).collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..512), auth in any::<bool>()) {
        let _ = parse_all(&input, auth);
    }

    #[test]
    fn resp_shaped_garbage_never_panics(parts in proptest::collection::vec(
        prop_oneof![
            Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()), Just(b"-1".to_vec()),
            Just(b"3".to_vec()), Just(b"99999999999999999999".to_vec()), Just(b"GET".to_vec()),
            Just(b"\"".to_vec()), Just(b" ".to_vec()), Just(b"\n".to_vec()),
        ], 0..40)) {
        let input: Vec<u8> = parts.concat();
        let _ = parse_all(&input, true);
    }

    #[test]
    fn valid_commands_round_trip_at_every_split(
        commands in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..5), 1..4),
        split in any::<prop::sample::Index>(),
    ) {
        let wire: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
        let expected: Vec<Vec<Bytes>> =
            commands.iter().map(|c| c.iter().map(|a| Bytes::copy_from_slice(a)).collect()).collect();
        let (whole, err) = parse_all(&wire, true);
        prop_assert!(!err);
        prop_assert_eq!(&whole, &expected);
        // Feed the bytes in two reads, as a socket might deliver them.
        let cut = split.index(wire.len() + 1);
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        let mut fed_rest = false;
        loop {
            match parse_command(&mut buf, true) {
                Ok(Parsed::Command(args)) => got.push(args),
                Ok(Parsed::Empty) => {}
                Ok(Parsed::Incomplete) if !fed_rest => {
                    buf.extend_from_slice(&wire[cut..]);
                    fed_rest = true;
                }
                Ok(Parsed::Incomplete) => break,
                Err(e) => prop_assert!(false, "valid input rejected: {}", e),
            }
        }
        prop_assert_eq!(got, expected);
    }
}
