#!/usr/bin/env bash
# Peak RSS of `mapcache serve --maxmemory 64mb --eviction-policy allkeys-lru` after writing far
# more than the limit (redis-benchmark SET, 300k requests over 2M random keys, -P 16) with values
# of 100 B, 1 KB and 10 KB: checks docs/operations.md's bound (RSS <= maxmemory x 1.2 + 64 MB).
# Needs redis-tools and a release build. Usage: [MAPCACHE_BIN=...] bench/server-maxmemory-rss.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${MAPCACHE_BIN:-target/release/mapcache}"
PORT=16390; ADMIN=19190
work="$(mktemp -d)"
cleanup() { [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
echo "value_bytes,keys,used_memory,vm_hwm_kib,vm_rss_kib"
for d in 100 1000 10000; do
  "$BIN" serve --port "$PORT" --admin-port "$ADMIN" --data-dir "$work/mc" --shards 16 \
    --maxmemory 64mb --eviction-policy allkeys-lru >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-benchmark -p "$PORT" -t set -d "$d" -c 50 -n 300000 -P 16 -r 2000000 -q >/dev/null 2>&1
  used="$(redis-cli -p "$PORT" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')"
  hwm="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")"
  rss="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")"
  echo "$d,$(redis-cli -p "$PORT" dbsize),$used,$hwm,$rss"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  rm -rf "$work/mc"
done
