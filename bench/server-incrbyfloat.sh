#!/usr/bin/env bash
# INCRBYFLOAT side by side: redis-benchmark against `mapcache serve` and Debian's redis-server,
# `-c 50 -n 300000 -r 100000 INCRBYFLOAT k:__rand_int__ 0.1` at `-P 1` and `-P 16`, ROUNDS
# rounds (default 3). The first `-P 16` pass of mapcache's first round creates the keys.
# Prints redis-benchmark's CSV row per (round, server, pipeline): rps, avg, min, p50, p95, p99,
# max latency in ms.
# Needs: apt-get install -y redis-tools redis-server; cargo build --release.
# Usage: ROUNDS=3 bench/server-incrbyfloat.sh; MAPCACHE_BIN, MC_PORT, MC_ADMIN, REDIS_PORT as
# in bench/server-vs-redis.sh (defaults target/release/mapcache, 36380, 39090, 36379).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${MAPCACHE_BIN:-target/release/mapcache}"
MC_PORT="${MC_PORT:-36380}"; MC_ADMIN="${MC_ADMIN:-39090}"; REDIS_PORT="${REDIS_PORT:-36379}"
w="$(mktemp -d)"
trap 'kill "${mc:-}" "${rd:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$w"' EXIT
"$BIN" serve --port "$MC_PORT" --admin-port "$MC_ADMIN" --data-dir "$w/mc" --shards 16 >/dev/null 2>&1 & mc=$!
redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$w" >/dev/null 2>&1 & rd=$!
for port in "$MC_PORT" "$REDIS_PORT"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
echo "round,server,pipeline,test,rps,avg_ms,min_ms,p50_ms,p95_ms,p99_ms,max_ms"
for r in $(seq "${ROUNDS:-3}"); do
  for target in "mapcache:$MC_PORT" "redis:$REDIS_PORT"; do
    IFS=: read -r name port <<<"$target"
    for P in 1 16; do
      row="$(redis-benchmark -p "$port" -c 50 -n 300000 -P "$P" -r 100000 --csv \
        INCRBYFLOAT 'k:__rand_int__' 0.1 2>/dev/null | tail -1 | tr -d '"')"
      echo "$r,$name,$P,$row"
    done
  done
done
