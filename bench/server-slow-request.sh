#!/usr/bin/env bash
# One large request arriving slowly: an MSET of N pairs (one RESP frame of N*2+1 arguments) sent
# in CHUNK-byte writes with PAUSE_MS between them, to `mapcache serve` and Debian's redis-server
# in turn, ROUNDS rounds. Prints each server's CPU seconds for the request (from /proc) and wall
# seconds to the reply. A parser that reads a frame from its start on every read costs O(args *
# reads) here; Redis's (and ours since session 10) resumes where it stopped. Every round sets
# the same keys (from round 2 on, MSET overwrites), and mapcache goes first in each round.
# Needs: apt-get install -y redis-server; python3; cargo build --release.
# Usage: N=300000 CHUNK=8192 PAUSE_MS=1 ROUNDS=3 bench/server-slow-request.sh; MAPCACHE_BIN,
# MC_PORT, MC_ADMIN, REDIS_PORT as in bench/server-vs-redis.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${MAPCACHE_BIN:-target/release/mapcache}"
MC_PORT="${MC_PORT:-36380}"; MC_ADMIN="${MC_ADMIN:-39090}"; REDIS_PORT="${REDIS_PORT:-36379}"
N="${N:-300000}"; CHUNK="${CHUNK:-8192}"; PAUSE_MS="${PAUSE_MS:-1}"
w="$(mktemp -d)"
trap 'kill "${mc:-}" "${rd:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$w"' EXIT
"$BIN" serve --port "$MC_PORT" --admin-port "$MC_ADMIN" --data-dir "$w/mc" >/dev/null 2>&1 & mc=$!
redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$w" >/dev/null 2>&1 & rd=$!
for port in "$MC_PORT" "$REDIS_PORT"; do
  up=0
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && { up=1; break; }; sleep 0.1; done
  [ "$up" = 1 ] || { echo "no server answers on port $port" >&2; exit 1; }
done
echo "N=$N CHUNK=$CHUNK PAUSE_MS=$PAUSE_MS"
for r in $(seq "${ROUNDS:-3}"); do
  for target in "mapcache:$MC_PORT:$mc" "redis:$REDIS_PORT:$rd"; do
    IFS=: read -r name port pid <<<"$target"
    result="$(python3 bench/slow_request.py "$port" "$pid" "$N" "$CHUNK" "$PAUSE_MS")"
    echo "round=$r server=$name $result"
  done
done
