#!/usr/bin/env python3
"""Writes src/server/commands/command_docs.json: what redis-server answers to `COMMAND DOCS`
for each command and subcommand the node implements, as the node embeds and serves it.

Regenerate (after adding a command to `COMMANDS` or `SUBCOMMANDS` in
src/server/commands/mod.rs):

    redis-server --port 7790 --save '' --daemonize yes
    scripts/gen-command-docs.py --port 7790
    redis-cli -p 7790 shutdown nosave

The node answers as redis-server 7.0.15; the script refuses another version unless
`--any-version` is given. It reads the names from mod.rs (`cmd!("name"` and `sub!("a|b"`), asks
`COMMAND DOCS <name>` for each in RESP3 (after `HELLO 3`), and keeps every reply element's type:

    "text"                    bulk string ($)
    5                         integer (:)
    [...]                     array (*)
    {"map": [[k, v], ...]}    map (%), pairs in Redis's order; RESP2 flattens it to an array
    {"set": [...]}            set (~); RESP2 sends an array
    {"status": "text"}        status string (+)

A container's `subcommands` entry (always its last) is left out of its own docs: the node builds
it from the entries of the subcommands it implements (`client|list`, ...), which are stored on
their own. Each reply is also asked in RESP2 and checked to be the RESP3 reply flattened, so the
one tree serves both protocols byte for byte. A name redis-server does not know (a subcommand
newer than its version) is reported and left out; the node then serves no docs for it.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import socket
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TABLE = ROOT / "src" / "server" / "commands" / "mod.rs"
OUTPUT = ROOT / "src" / "server" / "commands" / "command_docs.json"
REDIS_VERSION = "7.0.15"


class Connection:
    """One RESP connection to redis-server; replies parsed into typed trees."""

    def __init__(self, host: str, port: int, protocol: int):
        self.sock = socket.create_connection((host, port))
        self.buf = b""
        self.pos = 0
        if protocol == 3:
            self.call("HELLO", "3")

    def call(self, *args: str):
        """Sends a command; its reply as a typed tree."""
        return self.exchange(args)[0]

    def raw(self, *args: str) -> bytes:
        """Sends a command; its reply's exact bytes."""
        return self.exchange(args)[1]

    def exchange(self, args):
        self.sock.sendall(encode_command(args))
        value = self._value()
        raw = self.buf[: self.pos]
        self.buf, self.pos = self.buf[self.pos :], 0
        return value, raw

    def _need(self, n: int) -> None:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            self.buf += chunk

    def _line(self) -> bytes:
        while (end := self.buf.find(b"\r\n", self.pos)) < 0:
            self._need(len(self.buf) + 1)
        line, self.pos = self.buf[self.pos : end], end + 2
        return line

    def _value(self):
        line = self._line()
        tag, body = line[:1], line[1:].decode()
        if tag == b"$":
            n = int(body)
            self._need(self.pos + n + 2)
            text = self.buf[self.pos : self.pos + n].decode()
            self.pos += n + 2
            return text
        if tag == b":":
            return int(body)
        if tag == b"+":
            return {"status": body}
        if tag == b"-":
            raise RuntimeError(f"redis-server answered an error: {body}")
        if tag == b"*":
            return [self._value() for _ in range(int(body))]
        if tag == b"~":
            return {"set": [self._value() for _ in range(int(body))]}
        if tag == b"%":
            return {"map": [[self._value(), self._value()] for _ in range(int(body))]}
        raise RuntimeError(f"unexpected RESP type {line!r} in a COMMAND DOCS reply")


def encode_command(args) -> bytes:
    out = b"*%d\r\n" % len(args)
    for arg in args:
        data = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(data), data)
    return out


def encode_resp2(value) -> bytes:
    """The RESP2 bytes the node sends for a typed tree (maps and sets flattened to arrays)."""
    if isinstance(value, str):
        data = value.encode()
        return b"$%d\r\n%s\r\n" % (len(data), data)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(encode_resp2(v) for v in value)
    if "status" in value:
        return b"+%s\r\n" % value["status"].encode()
    if "set" in value:
        return encode_resp2(value["set"])
    pairs = value["map"]
    return b"*%d\r\n" % (2 * len(pairs)) + b"".join(
        encode_resp2(k) + encode_resp2(v) for k, v in pairs
    )


def node_names() -> list[str]:
    """The node's commands, then its subcommands, in table order."""
    text = TABLE.read_text()
    commands = re.findall(r'^\s*cmd!\("([a-z_]+)"', text, re.MULTILINE)
    subcommands = re.findall(r'^\s*sub!\("([a-z_]+\|[a-z_-]+)"', text, re.MULTILINE)
    if not commands or not subcommands:
        sys.exit(f"no cmd!/sub! rows found in {TABLE}")
    return commands + subcommands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7790)
    parser.add_argument("--any-version", action="store_true")
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args()

    resp3 = Connection(args.host, args.port, 3)
    resp2 = Connection(args.host, args.port, 2)
    info = resp2.call("INFO", "server")
    version = re.search(r"redis_version:(\S+)", info).group(1)
    if version != REDIS_VERSION and not args.any_version:
        sys.exit(f"redis-server is {version}; the node answers as {REDIS_VERSION}")

    entries = []
    missing = []
    for name in node_names():
        reply = resp3.call("COMMAND", "DOCS", name)
        if not reply["map"]:
            missing.append(name)
            continue
        [[fullname, docs]] = reply["map"]
        assert fullname == name, (fullname, name)
        flat = encode_resp2(reply)
        assert flat == resp2.raw("COMMAND", "DOCS", name), f"{name}: RESP2 is not RESP3 flattened"
        pairs = docs["map"]
        if any(key == "subcommands" for key, _ in pairs):
            assert pairs[-1][0] == "subcommands", f"{name}: subcommands is not the last entry"
            pairs.pop()
        entries.append([name, docs])

    with args.output.open("w") as out:
        # One command per line: a diff shows which commands' docs changed.
        out.write('{"redis_version": %s, "docs": [\n' % json.dumps(version))
        out.write(",\n".join(json.dumps(entry, ensure_ascii=False) for entry in entries))
        out.write("\n]}\n")
    print(f"wrote {len(entries)} entries to {args.output}")
    for name in missing:
        print(f"redis-server {version} has no docs for {name}: left out", file=sys.stderr)


if __name__ == "__main__":
    main()
