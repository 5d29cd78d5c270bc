#!/usr/bin/env bash
# redis-benchmark against `mapcache serve` and Debian's redis-server, same machine, same run.
# Needs: apt-get install -y redis-tools redis-server; a release build (cargo build --release).
# Usage: bench/server-vs-redis.sh [requests=500000] [clients=50]
# MAPCACHE_ARGS adds flags to `mapcache serve` (e.g. MAPCACHE_ARGS="--io-threads 1").
# Prints one CSV row per (server, pipeline, test): requests/s and p50/p99 latency in ms.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-500000}"
C="${2:-50}"
BIN="${MAPCACHE_BIN:-target/release/mapcache}"
MC_PORT=16379; MC_ADMIN=19090; REDIS_PORT=16380
work="$(mktemp -d)"
cleanup() {
  [[ -n "${mc_pid:-}" ]] && kill "$mc_pid" 2>/dev/null || true
  [[ -n "${redis_pid:-}" ]] && kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2086 # MAPCACHE_ARGS is a list of flags
"$BIN" serve --port "$MC_PORT" --admin-port "$MC_ADMIN" --data-dir "$work/mc" --shards 16 ${MAPCACHE_ARGS:-} >"$work/mc.out" 2>"$work/mc.err" &
mc_pid=$!
redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
for port in "$MC_PORT" "$REDIS_PORT"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

echo "server,pipeline,test,rps,p50_ms,p99_ms"
for P in 1 16; do
  for target in "mapcache:$MC_PORT" "redis:$REDIS_PORT"; do
    name="${target%%:*}"; port="${target##*:}"
    redis-cli -p "$port" flushall >/dev/null
    # --csv columns: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    redis-benchmark -p "$port" -t set,get,incr,mset -c "$C" -n "$N" -P "$P" -r 100000 --csv -q 2>/dev/null \
      | tail -n +2 | tr -d '"' | awk -F, -v s="$name" -v p="$P" '{ printf "%s,%s,%s,%s,%s,%s\n", s, p, $1, $2, $5, $7 }'
  done
done
