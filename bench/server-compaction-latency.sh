#!/usr/bin/env bash
# p50/p99 GET latency of `mapcache serve` before, during and after an online compaction.
# Loads 1e6 keys, deletes half (tombstones), then runs redis-benchmark GETs three times:
# (keys are named as redis-benchmark's `-r` names them, `key:` and 12 zero-padded digits, so
# half the GETs hit a live key and half find a deleted one)
# before, while POST /v1/compact runs (started right after the benchmark begins), and after.
# Needs: redis-tools, curl, a release build. Usage: bench/server-compaction-latency.sh [keys=1000000]
# MAPCACHE_ARGS adds flags to `mapcache serve` (e.g. MAPCACHE_ARGS="--io-threads 2").
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${1:-1000000}"
BIN="${MAPCACHE_BIN:-target/release/mapcache}"
PORT=16381; ADMIN=19091
work="$(mktemp -d)"
cleanup() { [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck disable=SC2086 # MAPCACHE_ARGS is a list of flags
"$BIN" serve --port "$PORT" --admin-port "$ADMIN" --data-dir "$work" --shards 16 ${MAPCACHE_ARGS:-} >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "loading $KEYS keys" >&2
seq 0 $((KEYS - 1)) | awk '{ printf "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$5\r\nvalue\r\n", $1 }' \
  | redis-cli -p "$PORT" --pipe >/dev/null
echo "deleting half" >&2
seq 0 2 $((KEYS - 1)) | awk '{ printf "*2\r\n$3\r\nDEL\r\n$16\r\nkey:%012d\r\n", $1 }' \
  | redis-cli -p "$PORT" --pipe >/dev/null
stats="$(curl -s "http://127.0.0.1:$ADMIN/v1/stats")"; echo "${stats:0:300}" >&2  # not `| head`: curl fails on the closed pipe under pipefail

run() {  # $1 = phase label
  redis-benchmark -p "$PORT" -t get -c 50 -n 300000 -r "$KEYS" --csv -q 2>/dev/null | tail -n +2 | tr -d '"' \
    | awk -F, -v ph="$1" '{ printf "%s,%s,%s,%s\n", ph, $2, $5, $7 }'
}
echo "phase,rps,p50_ms,p99_ms"
run before
( sleep 0.3; curl -s -X POST "http://127.0.0.1:$ADMIN/v1/compact" >&2; echo >&2 ) &
starter=$!
run during
wait "$starter" || true
for _ in $(seq 600); do
  status="$(curl -s "http://127.0.0.1:$ADMIN/v1/maintenance")"
  [[ "$status" == *'"running":false'* ]] && break
  sleep 0.1
done
curl -s "http://127.0.0.1:$ADMIN/v1/maintenance" >&2; echo >&2
run after
