//! Property tests of the RESP parser on arbitrary bytes: it never panics, never consumes bytes
//! it did not parse, and a frame split at any point parses the same as the whole; a connection's
//! `RequestParser`, which resumes a frame where the last read stopped, finds exactly what a
//! parse of all the bytes at once finds, commands and errors alike, however the bytes are cut.
//! The cargo-fuzz target `fuzz/fuzz_targets/resp_parser.rs` drives the same entry points.

mod server_support;

use bytes::{Bytes, BytesMut};
use mapcache::server::resp::{Parsed, ProtocolError, RequestParser, parse_command};
use proptest::prelude::*;
use server_support::cmd_bytes;

/// What parsing `input` yields: the commands, then the protocol error that stopped it, if any.
type Outcome = (Vec<Vec<Bytes>>, Option<ProtocolError>);

/// Parses everything in `input` at once, as a server would, each frame with no memory of earlier
/// calls; asserts that every frame consumes bytes and that an incomplete one consumes none.
fn parse_all(input: &[u8], authenticated: bool) -> Outcome {
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
                return (commands, None);
            }
            Err(err) => return (commands, Some(err)),
        }
    }
}

/// Parses `input` as a connection does when it arrives in pieces cut at `cuts`: one
/// `RequestParser`, a read appended whenever it wants more.
fn outcome_in_pieces(input: &[u8], cuts: &[usize], authenticated: bool) -> Outcome {
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    ends.push(input.len());
    ends.sort_unstable();
    let mut parser = RequestParser::default();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut next_end = ends.into_iter();
    let mut commands = Vec::new();
    loop {
        let before = buf.len();
        match parser.parse(&mut buf, authenticated) {
            Ok(Parsed::Command(args)) => commands.push(args),
            Ok(Parsed::Empty) => {}
            Ok(Parsed::Incomplete) => {
                assert_eq!(buf.len(), before, "incomplete consumed bytes");
                match next_end.next() {
                    Some(end) => {
                        buf.extend_from_slice(&input[fed..end]);
                        fed = end;
                    }
                    None => return (commands, None),
                }
            }
            Err(err) => return (commands, Some(err)),
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
    fn resumed_parsing_finds_what_a_whole_parse_finds(
        input in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..256),
            proptest::collection::vec(prop_oneof![
                Just(b"*".to_vec()), Just(b"$".to_vec()), Just(b"\r\n".to_vec()),
                Just(b"2".to_vec()), Just(b"1".to_vec()), Just(b"-1".to_vec()), Just(b"0".to_vec()),
                Just(b"ab".to_vec()), Just(b"*2\r\n".to_vec()), Just(b"$1\r\n".to_vec()),
                Just(b"$2\r\nab\r\n".to_vec()), Just(b" ".to_vec()), Just(b"\n".to_vec()),
            ], 0..60).prop_map(|parts| parts.concat()),
        ],
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
        auth in any::<bool>(),
    ) {
        prop_assert_eq!(outcome_in_pieces(&input, &cuts, auth), parse_all(&input, auth));
    }

    #[test]
    fn valid_commands_resume_across_any_reads(
        commands in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..8), 1..4),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let wire: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
        let expected: Vec<Vec<Bytes>> =
            commands.iter().map(|c| c.iter().map(|a| Bytes::copy_from_slice(a)).collect()).collect();
        prop_assert_eq!(outcome_in_pieces(&wire, &cuts, true), (expected, None));
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
        prop_assert!(err.is_none());
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
