//! `COMMAND DOCS`: what redis-server 7.0.15 answers for each command and subcommand the node
//! implements, from `command_docs.json` (written by `scripts/gen-command-docs.py`, which asks a
//! redis-server and keeps every element's RESP type; its header says how to regenerate).
//!
//! Each entry is parsed once into a [`Reply`] tree: maps stay maps (RESP3 `%`, flattened to
//! arrays in RESP2 as Redis does), sets stay sets (`~`, arrays in RESP2), flags stay status
//! strings (`+optional`). A container's `subcommands` map is built here from the subcommands the
//! node implements, in `SUBCOMMANDS` order: Redis lists all of its own, in the order of a hash
//! table seeded at random when redis-server starts (so no order is Redis's), and a client reading
//! the map to learn what it may send must not be shown subcommands that answer an error. A
//! subcommand newer than Redis 7.0 (`client|setinfo`, `client|no-touch`) has no entry and is
//! served no docs.

use std::sync::LazyLock;

use bytes::Bytes;
use serde::Deserialize;

use super::{COMMANDS, SUBCOMMANDS, lookup, lookup_subcommand, subcommands_of};
use crate::server::resp::Reply;

/// The data file as the generator writes it.
#[derive(Deserialize)]
struct DocsFile {
    /// The redis-server version the docs were read from (checked by a test).
    #[cfg_attr(not(test), allow(dead_code))]
    redis_version: String,
    /// `[name, docs]` per command then subcommand (`client|list`), in table order.
    docs: Vec<(String, serde_json::Value)>,
}

/// The docs reply of each command and subcommand, indexed as the tables are.
struct Docs {
    /// Per `COMMANDS` index, with a container's `subcommands` map appended.
    commands: Vec<Option<Reply>>,
    /// Per `SUBCOMMANDS` index.
    subcommands: Vec<Option<Reply>>,
}

static DOCS: LazyLock<Docs> = LazyLock::new(|| {
    let file: DocsFile = serde_json::from_str(include_str!("command_docs.json"))
        .expect("command_docs.json is the generator's output");
    load(file.docs)
});

fn load(entries: Vec<(String, serde_json::Value)>) -> Docs {
    let mut by_name: std::collections::HashMap<String, Reply> = entries
        .into_iter()
        .map(|(name, docs)| {
            let reply = to_reply(&docs).unwrap_or_else(|why| panic!("docs of {name}: {why}"));
            (name, reply)
        })
        .collect();
    let subcommands: Vec<Option<Reply>> =
        SUBCOMMANDS.iter().map(|sub| by_name.remove(sub.name)).collect();
    let commands = COMMANDS
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let mut docs = by_name.remove(spec.name)?;
            let documented: Vec<(Reply, Reply)> = subcommands_of(index as u16)
                .filter_map(|(j, sub)| Some((Reply::bulk_str(sub.name), subcommands[j].clone()?)))
                .collect();
            // `addReplyCommandDocs` puts `subcommands` last, after the container's own fields.
            if let (Reply::Map(pairs), false) = (&mut docs, documented.is_empty()) {
                pairs.push((Reply::bulk_str("subcommands"), Reply::Map(documented)));
            }
            Some(docs)
        })
        .collect();
    Docs { commands, subcommands }
}

/// A typed JSON tree (see the generator's header) as a reply: a string is a bulk string, a
/// number an integer, an array an array; `{"map": [[k, v]...]}`, `{"set": [...]}` and
/// `{"status": "..."}` are the other RESP3 types.
fn to_reply(value: &serde_json::Value) -> Result<Reply, String> {
    use serde_json::Value;
    let all = |items: &Vec<Value>| items.iter().map(to_reply).collect::<Result<Vec<_>, _>>();
    // The one `"kind": inner` entry of an object.
    fn only(object: &serde_json::Map<String, Value>) -> Option<(&str, &Value)> {
        let (kind, inner) = object.iter().next()?;
        (object.len() == 1).then_some((kind.as_str(), inner))
    }
    match value {
        Value::String(text) => Ok(Reply::Bulk(Bytes::from(text.clone()))),
        Value::Number(n) => n.as_i64().map(Reply::Integer).ok_or(format!("{n} is not an integer")),
        Value::Array(items) => all(items).map(Reply::Array),
        Value::Object(object) => match only(object) {
            Some(("set", Value::Array(items))) => all(items).map(Reply::Set),
            Some(("status", Value::String(text))) => Ok(Reply::Status(text.clone())),
            Some(("map", Value::Array(pairs))) => pairs
                .iter()
                .map(|pair| match pair.as_array().map(Vec::as_slice) {
                    Some([key, value]) => Ok((to_reply(key)?, to_reply(value)?)),
                    _ => Err(format!("{pair} is not a [key, value] pair")),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Reply::Map),
            _ => Err(format!("{value} is not a map, set or status")),
        },
        Value::Null | Value::Bool(_) => Err(format!("{value} has no RESP type here")),
    }
}

/// The full name and docs of `name` as Redis 7's `lookupCommandBySds` finds it: a command
/// (`get`), or a container's subcommand written `container|sub` (`client|list`), any case. A
/// known name the node has no docs for is not found either.
fn find(name: &[u8]) -> Option<(&'static str, &'static Reply)> {
    let mut parts = name.split(|&b| b == b'|');
    let (first, second) = (parts.next()?, parts.next());
    if parts.next().is_some() {
        return None; // one level of subcommands only
    }
    let index = lookup(first)?;
    match second {
        None => Some((COMMANDS[index as usize].name, DOCS.commands[index as usize].as_ref()?)),
        Some(sub) => {
            let j = lookup_subcommand(index, sub)?;
            Some((SUBCOMMANDS[j].name, DOCS.subcommands[j].as_ref()?))
        }
    }
}

/// `COMMAND DOCS [<name> ...]`, as Redis 7's `commandDocsCommand`: a map of full name to docs,
/// for every command (not subcommand: those are inside their container's) when no name is
/// given; else for each name found, in the order given (a name given twice is answered twice),
/// unknown names skipped.
pub fn command_docs(names: &[Bytes]) -> Reply {
    let pairs = if names.is_empty() {
        COMMANDS
            .iter()
            .zip(&DOCS.commands)
            .filter_map(|(spec, docs)| Some((Reply::bulk_str(spec.name), docs.clone()?)))
            .collect()
    } else {
        names
            .iter()
            .filter_map(|name| find(name))
            .map(|(name, docs)| (Reply::bulk_str(name), docs.clone()))
            .collect()
    };
    Reply::Map(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::resp::Protocol;

    /// Subcommands the node has from Redis 7.2: redis-server 7.0.15 has no docs to serve.
    const NEWER_THAN_REDIS_7_0: &[&str] = &["client|setinfo", "client|no-touch"];

    #[test]
    fn every_command_and_subcommand_has_docs() {
        for (spec, docs) in COMMANDS.iter().zip(&DOCS.commands) {
            assert!(docs.is_some(), "{} has no docs: run scripts/gen-command-docs.py", spec.name);
        }
        for (sub, docs) in SUBCOMMANDS.iter().zip(&DOCS.subcommands) {
            let newer = NEWER_THAN_REDIS_7_0.contains(&sub.name);
            assert_eq!(docs.is_some(), !newer, "{}: docs present? run the generator", sub.name);
        }
    }

    #[test]
    fn every_docs_entry_is_a_command_or_subcommand_of_the_node() {
        let file: DocsFile =
            serde_json::from_str(include_str!("command_docs.json")).expect("data file parses");
        assert_eq!(file.redis_version, "7.0.15");
        for (name, _) in &file.docs {
            let known = COMMANDS.iter().any(|c| c.name == name)
                || SUBCOMMANDS.iter().any(|s| s.name == name);
            assert!(known, "docs of {name}, which the node does not implement");
        }
    }

    #[test]
    fn get_docs_encode_as_redis_sends_them() {
        let mut out = bytes::BytesMut::new();
        command_docs(&[Bytes::from_static(b"GET")]).encode(Protocol::Resp3, &mut out);
        let expected: &[u8] = b"%1\r\n$3\r\nget\r\n%5\r\n$7\r\nsummary\r\n$22\r\nGet the value of a key\r\n$5\r\nsince\r\n$5\r\n1.0.0\r\n$5\r\ngroup\r\n$6\r\nstring\r\n$10\r\ncomplexity\r\n$4\r\nO(1)\r\n$9\r\narguments\r\n*1\r\n%3\r\n$4\r\nname\r\n$3\r\nkey\r\n$4\r\ntype\r\n$3\r\nkey\r\n$14\r\nkey_spec_index\r\n:0\r\n";
        assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(expected));
    }

    #[test]
    fn names_are_found_as_lookup_command_by_sds_finds_them() {
        let name = |arg: &[u8]| find(arg).map(|(name, _)| name);
        assert_eq!(name(b"Client|LIST"), Some("client|list"));
        assert_eq!(name(b"client"), Some("client"));
        assert_eq!(name(b"get|x"), None, "get has no subcommands");
        assert_eq!(name(b"client|list|x"), None, "one level only");
        assert_eq!(name(b"client|"), None);
        assert_eq!(name(b""), None);
        assert_eq!(name(b"client|setinfo"), None, "no docs in Redis 7.0");
    }

    #[test]
    fn a_container_lists_its_implemented_subcommands_last() {
        let config = lookup(b"config").expect("config is a command") as usize;
        let Some(Reply::Map(pairs)) = &DOCS.commands[config] else { panic!("config has docs") };
        let Some((key, Reply::Map(subcommands))) = pairs.last() else {
            panic!("a subcommands map last")
        };
        assert_eq!(key, &Reply::bulk_str("subcommands"));
        let names: Vec<Reply> = subcommands.iter().map(|(name, _)| name.clone()).collect();
        let expected = ["config|get", "config|set", "config|resetstat", "config|help"];
        assert_eq!(names, expected.map(Reply::bulk_str));
    }
}
