#!/usr/bin/env python3
"""Runs redis-py's transactions, Lock, scripts, hashes and sets against a server, as an
application would.

Usage: redis_py_check.py <host> <port>

Run by tests/server_real_clients.rs against an in-process mapcache node; it runs unchanged
against a real Redis 7 (`redis-server --port 7396 --save ''`), which is how a difference is told
from a bug in this script. Every check prints one line; the first failure prints what differed
and exits 1. Keys are under `py:`; the script flushes nothing it did not write.

What it leaves in the keyspace, which the Rust test reads back afterwards:
  py:pipe:counter  "15"     (the pipeline check)
  py:pipe:name     "mapcache!"
  py:watched       "changed" (the other connection's write that aborted the transaction)
  py:cas           "200"    (THREADS x INCREMENTS check-and-set increments, none lost)
  py:script        "12"     (register_script: 5, then 7 after SCRIPT FLUSH)
and none of py:watch:side, py:qerr:a, py:qerr:b, py:lock, py:lock:dead.
"""

import sys
import threading
import time

import redis
from redis.exceptions import (
    LockError,
    LockNotOwnedError,
    ResponseError,
    WatchError,
)

THREADS = 4
INCREMENTS = 50


class CheckFailed(Exception):
    pass


def expect(what, got, want):
    if got != want:
        raise CheckFailed(f"{what}: got {got!r}, want {want!r}")


def client(host, port, protocol):
    # Generous timeouts: a debug build on a loaded 2-core machine can be slow, never hung.
    return redis.Redis(
        host=host,
        port=port,
        protocol=protocol,
        decode_responses=True,
        socket_timeout=30,
        socket_connect_timeout=10,
    )


def check_pipeline_transaction(r, other):
    r.delete("py:pipe:counter", "py:pipe:name")
    pipe = r.pipeline()  # transaction=True: MULTI ... EXEC
    pipe.set("py:pipe:counter", 1)
    pipe.incr("py:pipe:counter")
    pipe.incrby("py:pipe:counter", 13)
    pipe.set("py:pipe:name", "mapcache")
    pipe.append("py:pipe:name", "!")
    pipe.get("py:pipe:counter")
    pipe.mget("py:pipe:counter", "py:pipe:name", "py:pipe:missing")
    pipe.exists("py:pipe:counter", "py:pipe:name", "py:pipe:missing")
    got = pipe.execute()
    expect(
        "pipeline results",
        got,
        [True, 2, 15, True, 9, "15", ["15", "mapcache!", None], 2],
    )
    expect("counter after the pipeline (other connection)", other.get("py:pipe:counter"), "15")
    return "8 commands in MULTI/EXEC, replies as redis-py parses them"


def check_watch_error(r, other):
    r.set("py:watched", "original")
    r.delete("py:watch:side")
    with r.pipeline() as pipe:
        pipe.watch("py:watched")
        seen = pipe.get("py:watched")  # immediate mode between WATCH and MULTI
        expect("value read under WATCH", seen, "original")
        other.set("py:watched", "changed")
        pipe.multi()
        pipe.set("py:watched", "mine")
        pipe.set("py:watch:side", "applied")
        try:
            pipe.execute()
        except WatchError:
            pass
        else:
            raise CheckFailed("EXEC after another connection's write did not raise WatchError")
    expect("watched key", r.get("py:watched"), "changed")
    expect("side key of the aborted transaction", r.exists("py:watch:side"), 0)
    return "WatchError, nothing of the transaction applied"


def check_transaction_helper(r, other, host, port, protocol):
    # First a retry made certain: the first attempt's key is changed from another connection.
    r.set("py:cas:once", 10)
    attempts = []

    def bump_once(pipe):
        current = int(pipe.get("py:cas:once"))
        attempts.append(current)
        if len(attempts) == 1:
            other.incr("py:cas:once")
        pipe.multi()
        pipe.set("py:cas:once", current + 1)

    r.transaction(bump_once, "py:cas:once")
    expect("values read by the attempts", attempts, [10, 11])
    expect("py:cas:once after a retried transaction", r.get("py:cas:once"), "12")
    r.delete("py:cas:once")

    # Then contention from threads, each with its own client (and so connections).
    r.set("py:cas", 0)
    retries = [0] * THREADS
    errors = []

    def worker(index):
        try:
            mine = client(host, port, protocol)
            for _ in range(INCREMENTS):
                def increment(pipe):
                    retries[index] += 1
                    current = int(pipe.get("py:cas"))
                    pipe.multi()
                    pipe.set("py:cas", current + 1)

                mine.transaction(increment, "py:cas")
                retries[index] -= 1  # the attempt that succeeded is not a retry
            mine.close()
        except Exception as e:  # reported by the main thread
            errors.append(f"thread {index}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise CheckFailed("; ".join(errors))
    expect("py:cas after the threads", r.get("py:cas"), str(THREADS * INCREMENTS))
    return (
        f"a forced retry re-read the new value; {THREADS} threads x {INCREMENTS} increments, "
        f"none lost ({sum(retries)} WatchError retries)"
    )


def check_lock(r, other, host, port, protocol):
    r.delete("py:lock", "py:lock:dead")
    owner = r.lock("py:lock", timeout=10)
    expect("acquire a free lock", owner.acquire(blocking=False), True)
    expect("owned", owner.owned(), True)
    expect("lock value is the owner's token", r.get("py:lock"), owner.local.token.decode())
    ttl = r.pttl("py:lock")
    if not 0 < ttl <= 10_000:
        raise CheckFailed(f"PTTL of a lock taken with timeout=10: {ttl}")

    contender = other.lock("py:lock", timeout=10, sleep=0.05)
    expect(
        "blocking acquire (blocking_timeout=0.3) of a held lock",
        contender.acquire(blocking=True, blocking_timeout=0.3),
        False,
    )
    expect("a held lock, non-blocking", contender.acquire(blocking=False), False)
    expect("locked() seen by the contender", contender.locked(), True)
    expect("owned() seen by the contender", contender.owned(), False)

    expect("extend by 100 s", owner.extend(100), True)
    ttl = r.pttl("py:lock")
    if not 10_000 < ttl <= 110_000:
        raise CheckFailed(f"PTTL after extend(100) of a 10 s lock: {ttl}")
    expect("extend replacing the TTL with 60 s", owner.extend(60, replace_ttl=True), True)
    ttl = r.pttl("py:lock")
    if not 10_000 < ttl <= 60_000:
        raise CheckFailed(f"PTTL after extend(60, replace_ttl=True): {ttl}")
    expect("reacquire (TTL back to 10 s)", owner.reacquire(), True)
    ttl = r.pttl("py:lock")
    if not 0 < ttl <= 10_000:
        raise CheckFailed(f"PTTL after reacquire(): {ttl}")

    intruder = other.lock("py:lock", timeout=10)
    for action, call in [("release", intruder.release), ("extend", lambda: intruder.extend(5))]:
        intruder.local.token = b"not-the-owner"  # a failed release clears it
        try:
            call()
        except LockNotOwnedError:
            pass
        else:
            raise CheckFailed(f"{action} by a non-owner did not raise LockNotOwnedError")
    expect("lock value after the intruder", r.get("py:lock"), owner.local.token.decode())

    owner.release()
    expect("lock key after release", r.exists("py:lock"), 0)
    try:
        owner.release()
    except LockError:
        pass
    else:
        raise CheckFailed("a second release did not raise LockError")
    expect("acquire after release", contender.acquire(blocking=False), True)
    contender.release()

    with r.lock("py:lock", timeout=5) as held:
        expect("context-manager lock held", r.get("py:lock"), held.local.token.decode())
    expect("lock key after the with block", r.exists("py:lock"), 0)

    # An owner that dies: takes a lock with a short timeout and closes its connections without
    # releasing it. A blocking acquire from elsewhere gets it once the key expires.
    doomed_client = client(host, port, protocol)
    doomed = doomed_client.lock("py:lock:dead", timeout=0.5)
    expect("the doomed owner acquires", doomed.acquire(blocking=False), True)
    doomed_client.close()
    heir = r.lock("py:lock:dead", timeout=10, sleep=0.05)
    expect(
        "the heir acquires after the expiry",
        heir.acquire(blocking=True, blocking_timeout=30),
        True,
    )
    expect("lock value is the heir's token", r.get("py:lock:dead"), heir.local.token.decode())
    try:
        doomed.release()
    except LockNotOwnedError:
        pass
    else:
        raise CheckFailed("release by the expired owner did not raise LockNotOwnedError")
    heir.release()
    expect("dead owner's lock key after the heir released", r.exists("py:lock:dead"), 0)
    return (
        "acquire, blocking_timeout on a held lock, extend, reacquire, non-owner release/extend "
        "(LockNotOwnedError), release, expiry of a dead owner's lock"
    )


def check_register_script(r, other):
    r.delete("py:script")
    incr_by = r.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    expect(
        "first call (EVALSHA, NOSCRIPT, SCRIPT LOAD, EVALSHA)",
        incr_by(keys=["py:script"], args=[5]),
        5,
    )
    expect("SCRIPT EXISTS after the first call", r.script_exists(incr_by.sha), [True])
    expect("SCRIPT FLUSH", r.script_flush(), True)
    expect("SCRIPT EXISTS after SCRIPT FLUSH", r.script_exists(incr_by.sha), [False])
    expect("call after SCRIPT FLUSH", incr_by(keys=["py:script"], args=[7]), 12)
    expect("SCRIPT EXISTS after the fallback", r.script_exists(incr_by.sha), [True])

    # In a transaction pipeline redis-py checks SCRIPT EXISTS and loads before MULTI.
    r.script_flush()
    echo = r.register_script("return {KEYS[1], ARGV[1], redis.call('GET', KEYS[1])}")
    pipe = r.pipeline()
    echo(keys=["py:script"], args=["in-a-pipeline"], client=pipe)
    pipe.get("py:script")
    expect(
        "script in a transaction pipeline",
        pipe.execute(),
        [["py:script", "in-a-pipeline", "12"], "12"],
    )

    try:
        r.eval("return redis.call('INCR', KEYS[1])", 1, "py:pipe:name")
    except ResponseError as e:
        if "not an integer" not in str(e):
            raise CheckFailed(f"script error text: {e}") from e
    else:
        raise CheckFailed("a script's failing redis.call did not raise")
    return "EVALSHA, NOSCRIPT fallback after SCRIPT FLUSH, scripts in a pipeline, script errors"


def check_queue_time_error(r, other):
    r.delete("py:qerr:a", "py:qerr:b")
    pipe = r.pipeline()
    pipe.set("py:qerr:a", "1")
    pipe.execute_command("SET", "py:qerr:b")  # wrong arity: refused when queued
    pipe.set("py:qerr:b", "2")
    try:
        pipe.execute()
    except ResponseError as e:
        if "wrong number of arguments" not in str(e):
            raise CheckFailed(f"queue-time error text: {e}") from e
    else:
        raise CheckFailed("a pipeline with a command refused at queue time did not raise")

    pipe = r.pipeline()
    pipe.set("py:qerr:a", "1")
    pipe.execute_command("NOSUCHCOMMAND", "py:qerr:a")
    try:
        pipe.execute()
    except ResponseError as e:
        if "unknown command" not in str(e):
            raise CheckFailed(f"unknown-command error text: {e}") from e
    else:
        raise CheckFailed("a pipeline with an unknown command did not raise")
    expect("keys of the refused transactions", r.exists("py:qerr:a", "py:qerr:b"), 0)

    # A run-time error is one element; the rest of the transaction applies.
    r.set("py:qerr:text", "x")
    pipe = r.pipeline()
    pipe.incr("py:qerr:text")
    pipe.set("py:qerr:text", "y")
    pipe.get("py:qerr:text")
    got = pipe.execute(raise_on_error=False)
    if not (isinstance(got[0], ResponseError) and "not an integer" in str(got[0])):
        raise CheckFailed(f"run-time error element: {got[0]!r}")
    expect("the rest of the transaction", got[1:], [True, "y"])
    r.delete("py:qerr:text")
    return "queue-time errors raise and apply nothing; a run-time error is one element"


def check_hashes_and_sets(r, other):
    """A session store (a hash per session) and cache tags (a set per tag), as applications use
    them, in both protocols: redis-py turns RESP3 maps and sets into dicts and sets itself."""
    r.delete("py:session", "py:tag:a", "py:tag:b", "py:tag:both")
    session = {"user": "ada", "visits": "1", "cart": "\u00e9\u00e8"}
    expect("hset mapping", r.hset("py:session", mapping=session), 3)
    expect("hgetall", r.hgetall("py:session"), session)
    expect("hincrby", other.hincrby("py:session", "visits", 4), 5)
    expect("hmget", r.hmget("py:session", ["user", "none"]), ["ada", None])
    expect("hscan_iter", dict(r.hscan_iter("py:session", match="v*")), {"visits": "5"})
    expect("hdel", r.hdel("py:session", "cart", "none"), 1)
    expect("hkeys", sorted(r.hkeys("py:session")), ["user", "visits"])
    expect("sadd", r.sadd("py:tag:a", "k1", "k2", "k3"), 3)
    expect("sadd", r.sadd("py:tag:b", "k2", "k3", "k4"), 3)
    expect("smembers", r.smembers("py:tag:a"), {"k1", "k2", "k3"})
    expect("sinter", r.sinter("py:tag:a", "py:tag:b"), {"k2", "k3"})
    expect("sinterstore", r.sinterstore("py:tag:both", ["py:tag:a", "py:tag:b"]), 2)
    expect("smismember", r.smismember("py:tag:both", ["k1", "k2"]), [0, 1])
    pipe = r.pipeline()
    pipe.srem("py:tag:a", "k1")
    pipe.scard("py:tag:a")
    pipe.type("py:session")
    expect("a transaction over both types", pipe.execute(), [1, 2, "hash"])
    try:
        r.get("py:session")
    except ResponseError as e:
        if not str(e).startswith("WRONGTYPE"):
            raise CheckFailed(f"GET of a hash: {e}") from e
    else:
        raise CheckFailed("GET of a hash did not raise")
    r.delete("py:session", "py:tag:a", "py:tag:b", "py:tag:both")
    return "a session hash, tag sets, SINTERSTORE, a transaction over both, WRONGTYPE raised"


def run_checks(host, port, protocol):
    """Runs every check with clients speaking RESP`protocol`; False after the first failure."""
    r = client(host, port, protocol)
    other = client(host, port, protocol)
    checks = [
        ("pipeline() transaction", lambda: check_pipeline_transaction(r, other)),
        ("WATCH abort", lambda: check_watch_error(r, other)),
        (
            "transaction() retry helper",
            lambda: check_transaction_helper(r, other, host, port, protocol),
        ),
        ("Lock", lambda: check_lock(r, other, host, port, protocol)),
        ("register_script", lambda: check_register_script(r, other)),
        ("queue-time errors", lambda: check_queue_time_error(r, other)),
        ("hashes and sets", lambda: check_hashes_and_sets(r, other)),
    ]
    try:
        for name, check in checks:
            started = time.monotonic()
            try:
                detail = check()
            except CheckFailed as e:
                print(f"FAIL RESP{protocol} {name}: {e}")
                return False
            except Exception as e:  # a client exception the check did not expect
                print(f"FAIL RESP{protocol} {name}: unexpected {type(e).__name__}: {e}")
                return False
            print(f"ok   RESP{protocol} {name}: {detail} ({time.monotonic() - started:.2f} s)")
        return True
    finally:
        r.close()
        other.close()


def main():
    if len(sys.argv) != 3:
        print("usage: redis_py_check.py <host> <port>", file=sys.stderr)
        return 2
    host, port = sys.argv[1], int(sys.argv[2])
    print(f"redis-py {redis.__version__} against {host}:{port}")
    # RESP3 (HELLO 3) is redis-py 8's default; RESP2 is what older deployments pin.
    for protocol in (3, 2):
        if not run_checks(host, port, protocol):
            return 1
    print("all redis-py checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
