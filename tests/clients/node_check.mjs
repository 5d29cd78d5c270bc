// Runs ioredis's and node-redis's transactions and scripts against a server, as an application
// would.
//
// Usage: node node_check.mjs <host> <port>
//
// Run by tests/server_real_clients.rs against an in-process mapcache node; it runs unchanged
// against a real Redis 7 (`redis-server --port 7396 --save ''`), which is how a difference is
// told from a bug in this script. Every check prints one line; the first failure prints what
// differed and exits 1. Keys are under `io:` (ioredis) and `nr:` (node-redis).
//
// What it leaves in the keyspace, which the Rust test reads back afterwards:
//   io:multi        "2"        (the multi() check)
//   io:watched      "changed"  (the other client's write that aborted the transaction)
//   io:capped       "10"       (defineCommand: capped increments, before and after SCRIPT FLUSH)
//   io:limiter      "7"        (the rate limiter's window counter, 7 allowed of 20 calls)
//   nr:multi        "2"        (node-redis multi())
//   nr:watched      "changed"
//   nr:eval         "9"        (node-redis scripts: 2 + 3 + 4)
// and none of io:queued, io:text, io:direct, io:watch:side, nr:text, nr:watch:side.

import { createHash } from "node:crypto";
import { isDeepStrictEqual, inspect } from "node:util";

import { Redis, ReplyError } from "ioredis";
import { createClient, defineScript, ErrorReply, MultiErrorReply, WatchError } from "redis";

class CheckFailed extends Error {}

function expect(what, got, want) {
  if (!isDeepStrictEqual(got, want)) {
    throw new CheckFailed(
      `${what}: got ${inspect(got, { depth: 5 })}, want ${inspect(want, { depth: 5 })}`,
    );
  }
}

/** Resolves to the error `promise` rejects with; fails the check if it resolves. */
async function rejection(what, promise) {
  try {
    const value = await promise;
    throw new CheckFailed(`${what}: resolved with ${inspect(value)} instead of rejecting`);
  } catch (e) {
    if (e instanceof CheckFailed) throw e;
    return e;
  }
}

const sha1 = (text) => createHash("sha1").update(text).digest("hex");

// ---------------------------------------------------------------------------------------------
// ioredis

function ioredis(host, port, protocol) {
  // No retries: a server that drops the connection fails the check instead of hiding it.
  return new Redis({
    host,
    port,
    protocol,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    lazyConnect: true,
  });
}

async function ioMulti(r) {
  await r.del("io:multi", "io:text", "io:queued");
  const got = await r
    .multi()
    .set("io:multi", "1")
    .incr("io:multi")
    .get("io:multi")
    .exists("io:multi", "io:none")
    .exec();
  expect("multi() results", got, [
    [null, "OK"],
    [null, 2],
    [null, "2"],
    [null, 1],
  ]);

  // A command that fails when run is one [error, undefined] element; the rest apply.
  await r.set("io:text", "x");
  const mixed = await r.multi().incr("io:text").set("io:text", "y").get("io:text").exec();
  expect("elements after the failing one", mixed.slice(1), [
    [null, "OK"],
    [null, "y"],
  ]);
  const [runError] = mixed[0];
  if (
    !(runError instanceof ReplyError) ||
    runError.message !== "ERR value is not an integer or out of range"
  ) {
    throw new CheckFailed(`run-time error element: ${inspect(mixed[0])}`);
  }
  await r.del("io:text");

  // A command refused when queued (wrong arity) makes EXEC answer EXECABORT.
  const aborted = await rejection(
    "multi() with a queue-time error",
    r.multi().set("io:queued", "1").call("SET", "io:queued").set("io:queued", "2").exec(),
  );
  if (!aborted.message.startsWith("EXECABORT Transaction discarded because of previous errors")) {
    throw new CheckFailed(`queue-time error: ${aborted.message}`);
  }
  const previous = (aborted.previousErrors ?? []).map((e) => e.message);
  expect("errors of the refused transaction", previous, [
    "ERR wrong number of arguments for 'set' command",
  ]);
  expect("io:queued after EXECABORT", await r.exists("io:queued"), 0);

  // multi({ pipeline: false }) sends MULTI and each command at once; each resolves to QUEUED.
  expect("MULTI", await r.multi({ pipeline: false }), "OK");
  expect("SET in MULTI", await r.set("io:direct", "1"), "QUEUED");
  expect("INCR in MULTI", await r.incr("io:direct"), "QUEUED");
  expect("EXEC", await r.exec(), [
    [null, "OK"],
    [null, 2],
  ]);
  await r.del("io:direct");
  return "results, a run-time error as one element, EXECABORT with previousErrors, pipeline: false";
}

async function ioWatch(r, other) {
  await r.set("io:watched", "original");
  await r.del("io:watch:side");
  expect("WATCH", await r.watch("io:watched"), "OK");
  expect("value read under WATCH", await r.get("io:watched"), "original");
  await other.set("io:watched", "changed");
  const aborted = await r.multi().set("io:watched", "mine").set("io:watch:side", "applied").exec();
  expect("exec() after another client's write", aborted, null);
  expect("io:watched", await r.get("io:watched"), "changed");
  expect("io:watch:side", await r.exists("io:watch:side"), 0);

  // Unchanged, the same sequence commits.
  await r.watch("io:watch:side");
  const committed = await r.multi().set("io:watch:side", "applied").exec();
  expect("exec() with an unchanged watched key", committed, [[null, "OK"]]);
  await r.del("io:watch:side");
  return "aborted exec() resolves null and applies nothing; an untouched WATCH commits";
}

const CAPPED_INCR = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local step = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
if current + step > cap then
  return redis.error_reply('CAPPED ' .. KEYS[1] .. ' stays at ' .. current)
end
return redis.call('INCRBY', KEYS[1], step)
`;

async function ioDefineCommand(r) {
  await r.del("io:capped");
  r.defineCommand("cappedIncr", { numberOfKeys: 1, lua: CAPPED_INCR });
  const sha = sha1(CAPPED_INCR);
  expect("cappedIncr 1", await r.cappedIncr("io:capped", 3, 10), 3);
  expect("cappedIncr 2", await r.cappedIncr("io:capped", 3, 10), 6);
  const capped = await rejection("cappedIncr over the cap", r.cappedIncr("io:capped", 5, 10));
  expect("error_reply of the script", capped.message, "CAPPED io:capped stays at 6");
  expect("SCRIPT EXISTS once called", await r.script("EXISTS", sha), [1]);

  // ioredis thinks the script is loaded on this connection and sends EVALSHA; NOSCRIPT makes it
  // send EVAL, which loads it again.
  expect("SCRIPT FLUSH", await r.script("FLUSH"), "OK");
  expect("SCRIPT EXISTS after SCRIPT FLUSH", await r.script("EXISTS", sha), [0]);
  expect("cappedIncr after SCRIPT FLUSH", await r.cappedIncr("io:capped", 2, 10), 8);
  expect("SCRIPT EXISTS after the EVAL fallback", await r.script("EXISTS", sha), [1]);
  expect("cappedIncr again (EVALSHA)", await r.cappedIncr("io:capped", 1, 10), 9);

  // A defined command inside multi().
  const inMulti = await r
    .multi()
    .cappedIncr("io:capped", 1, 10)
    .cappedIncr("io:capped", 1, 10)
    .get("io:capped")
    .exec();
  expect(
    "cappedIncr in multi() (second over the cap)",
    [inMulti[0], inMulti[2]],
    [
      [null, 10],
      [null, "10"],
    ],
  );
  if (
    !(inMulti[1][0] instanceof ReplyError) ||
    inMulti[1][0].message !== "CAPPED io:capped stays at 10"
  ) {
    throw new CheckFailed(`over-the-cap element in multi(): ${inspect(inMulti[1])}`);
  }
  return "EVAL then EVALSHA, error_reply, NOSCRIPT fallback to EVAL after SCRIPT FLUSH, in multi()";
}

// A fixed-window rate limiter: at most ARGV[1] calls per ARGV[2] ms;
// replies {allowed, count, pttl}.
const RATE_LIMIT = `
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local allowed = 0
if count <= tonumber(ARGV[1]) then
  allowed = 1
else
  redis.call('DECR', KEYS[1])
  count = count - 1
end
return {allowed, count, redis.call('PTTL', KEYS[1])}
`;

async function ioRateLimiter(r, clients) {
  await r.del("io:limiter");
  for (const c of clients) c.defineCommand("rateLimit", { numberOfKeys: 1, lua: RATE_LIMIT });
  // 20 calls from four clients at once, a ten-minute window (it outlives the test), 7 allowed.
  const calls = [];
  for (let i = 0; i < 20; i++)
    calls.push(clients[i % clients.length].rateLimit("io:limiter", 7, 600000));
  const replies = await Promise.all(calls);
  const allowed = replies.filter(([ok]) => ok === 1).length;
  expect("calls allowed", allowed, 7);
  for (const [ok, count, pttl] of replies) {
    if (!(pttl > 0 && pttl <= 600000) || count < 1 || count > 7 || (ok !== 0 && ok !== 1)) {
      throw new CheckFailed(`a rate-limiter reply: ${inspect([ok, count, pttl])}`);
    }
  }
  const counts = replies
    .filter(([ok]) => ok === 1)
    .map(([, count]) => count)
    .sort((a, b) => a - b);
  expect("counts of the allowed calls", counts, [1, 2, 3, 4, 5, 6, 7]);
  expect("io:limiter", await r.get("io:limiter"), "7");
  return "20 concurrent calls from 4 clients, exactly 7 allowed, each seeing the window's TTL";
}

// ---------------------------------------------------------------------------------------------
// node-redis

async function nodeRedis(host, port, RESP, scripts) {
  const client = createClient({
    socket: { host, port, reconnectStrategy: false, connectTimeout: 10000 },
    RESP,
    scripts,
  });
  client.on("error", () => {}); // surfaced by the rejected command instead
  await client.connect();
  return client;
}

async function nrMulti(c) {
  await c.del(["nr:multi", "nr:text"]);
  const got = await c
    .multi()
    .set("nr:multi", "1")
    .incr("nr:multi")
    .get("nr:multi")
    .exists(["nr:multi", "nr:none"])
    .exec();
  expect("multi().exec() results", got, ["OK", 2, "2", 1]);

  await c.set("nr:text", "x");
  const failed = await rejection(
    "multi() with a run-time error",
    c.multi().incr("nr:text").set("nr:text", "y").get("nr:text").exec(),
  );
  if (!(failed instanceof MultiErrorReply))
    throw new CheckFailed(`run-time error: ${inspect(failed)}`);
  expect("MultiErrorReply.errorIndexes", failed.errorIndexes, [0]);
  expect(
    "MultiErrorReply.replies[0]",
    failed.replies[0].message,
    "ERR value is not an integer or out of range",
  );
  expect("the rest of the replies", failed.replies.slice(1), ["OK", "y"]);
  expect("nr:text", await c.get("nr:text"), "y");
  await c.del("nr:text");
  return "exec() results; a run-time error as MultiErrorReply with the other replies";
}

async function nrWatch(c, other) {
  await c.set("nr:watched", "original");
  await c.del("nr:watch:side");
  // node-redis 5 has no isolation pool: WATCH goes on a connection of its own.
  const watcher = await c
    .duplicate()
    .on("error", () => {})
    .connect();
  try {
    expect("WATCH", await watcher.watch("nr:watched"), "OK");
    expect("value read under WATCH", await watcher.get("nr:watched"), "original");
    await other.set("nr:watched", "changed");
    const err = await rejection(
      "exec() after another client's write",
      watcher.multi().set("nr:watched", "mine").set("nr:watch:side", "applied").exec(),
    );
    if (!(err instanceof WatchError))
      throw new CheckFailed(`exec() rejected with ${inspect(err)}, not WatchError`);
    expect("nr:watched", await c.get("nr:watched"), "changed");
    expect("nr:watch:side", await c.exists("nr:watch:side"), 0);

    await watcher.watch("nr:watch:side");
    expect(
      "exec() with an unchanged watched key",
      await watcher.multi().set("nr:watch:side", "ok").exec(),
      ["OK"],
    );
    await c.del("nr:watch:side");
  } finally {
    watcher.destroy();
  }
  return "WatchError on a duplicate() connection, nothing applied; an untouched WATCH commits";
}

const NR_ADD = "return redis.call('INCRBY', KEYS[1], ARGV[1])";

async function nrScripts(c) {
  await c.del("nr:eval");
  expect("EVAL", await c.eval(NR_ADD, { keys: ["nr:eval"], arguments: ["2"] }), 2);
  const sha = await c.scriptLoad(NR_ADD);
  expect("SCRIPT LOAD's sha", sha, sha1(NR_ADD));
  expect("EVALSHA", await c.evalSha(sha, { keys: ["nr:eval"], arguments: ["3"] }), 5);
  expect(
    "EVAL_RO",
    await c.evalRo("return redis.call('GET', KEYS[1])", { keys: ["nr:eval"] }),
    "5",
  );
  const roWrite = await rejection(
    "a write in EVAL_RO",
    c.evalRo("return redis.call('SET', KEYS[1], 'x')", { keys: ["nr:eval"] }),
  );
  if (
    !(roWrite instanceof ErrorReply) ||
    !roWrite.message.includes("Write commands are not allowed from read-only scripts")
  ) {
    throw new CheckFailed(`a write in EVAL_RO: ${inspect(roWrite)}`);
  }
  expect("SCRIPT FLUSH", await c.scriptFlush(), "OK");
  const noScript = await rejection(
    "EVALSHA after SCRIPT FLUSH",
    c.evalSha(sha, { keys: ["nr:eval"], arguments: ["1"] }),
  );
  expect(
    "EVALSHA after SCRIPT FLUSH",
    noScript.message,
    "NOSCRIPT No matching script. Please use EVAL.",
  );
  expect(
    "sendCommand EVAL",
    await c.sendCommand(["EVAL", "return {KEYS[1], ARGV[1], 3, 'x'}", "1", "k", "v"]),
    ["k", "v", 3, "x"],
  );

  // A script defined on the client: EVALSHA, and EVAL when the server answers NOSCRIPT.
  expect("defined script after SCRIPT FLUSH (EVAL fallback)", await c.add("nr:eval", 4), 9);
  expect("SCRIPT EXISTS after the fallback", await c.scriptExists(sha), [1]);
  expect("nr:eval", await c.get("nr:eval"), "9");

  // In multi() node-redis sends a defined script's first use as EVAL and later ones as EVALSHA.
  const inMulti = await c.multi().add("nr:eval", 0).add("nr:eval", 0).get("nr:eval").exec();
  expect("defined script twice in multi()", inMulti, [9, 9, "9"]);
  return "EVAL, SCRIPT LOAD, evalSha, EVAL_RO, NOSCRIPT, sendCommand, defineScript (EVAL fallback, in multi())";
}

const nrScriptsConfig = {
  add: defineScript({
    SCRIPT: NR_ADD,
    NUMBER_OF_KEYS: 1,
    parseCommand(parser, key, step) {
      parser.pushKey(key);
      parser.push(step.toString());
    },
    transformReply: (reply) => reply,
  }),
};

// ---------------------------------------------------------------------------------------------

async function runChecks(label, checks) {
  for (const [name, check] of checks) {
    const started = performance.now();
    try {
      const detail = await check();
      console.log(
        `ok   ${label} ${name}: ${detail} (${((performance.now() - started) / 1000).toFixed(2)} s)`,
      );
    } catch (e) {
      const what =
        e instanceof CheckFailed
          ? e.message
          : `unexpected ${e?.constructor?.name}: ${e?.stack ?? e}`;
      console.log(`FAIL ${label} ${name}: ${what}`);
      return false;
    }
  }
  return true;
}

async function main() {
  const [host, portText] = process.argv.slice(2);
  const port = Number(portText);
  if (!host || !Number.isInteger(port)) {
    console.error("usage: node node_check.mjs <host> <port>");
    return 2;
  }
  const { createRequire } = await import("node:module");
  const require = createRequire(import.meta.url);
  const ioVersion = require("ioredis/package.json").version;
  const nrVersion = require("redis/package.json").version;
  console.log(
    `ioredis ${ioVersion}, node-redis ${nrVersion}, node ${process.version} against ${host}:${port}`,
  );

  // ioredis 6 speaks RESP3 by default; node-redis 5 RESP2. Each runs in both.
  for (const protocol of [3, 2]) {
    const clients = [0, 1, 2, 3].map(() => ioredis(host, port, protocol));
    try {
      await Promise.all(clients.map((c) => c.connect()));
      const [r, other] = clients;
      const ok = await runChecks(`ioredis RESP${protocol}`, [
        ["multi()", () => ioMulti(r)],
        ["watch + multi", () => ioWatch(r, other)],
        ["defineCommand", () => ioDefineCommand(r)],
        ["rate limiter", () => ioRateLimiter(r, clients)],
      ]);
      if (!ok) return 1;
    } finally {
      clients.forEach((c) => c.disconnect());
    }
  }
  for (const RESP of [2, 3]) {
    const c = await nodeRedis(host, port, RESP, nrScriptsConfig);
    const other = await nodeRedis(host, port, RESP);
    try {
      const ok = await runChecks(`node-redis RESP${RESP}`, [
        ["multi().exec()", () => nrMulti(c)],
        ["WATCH abort", () => nrWatch(c, other)],
        ["scripts", () => nrScripts(c)],
      ]);
      if (!ok) return 1;
    } finally {
      c.destroy();
      other.destroy();
    }
  }
  console.log("all Node.js client checks passed");
  return 0;
}

process.exitCode = await main().catch((e) => {
  console.log(`FAIL setup: ${e?.stack ?? e}`);
  return 1;
});
