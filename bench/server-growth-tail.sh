#!/usr/bin/env bash
# The INCR -P 16 tail and shard growth: on one `mapcache serve`, `redis-benchmark -t set` and then
# `-t incr` twice (-c 50 -n 500000 -P 16 -r 100000), three rounds. The first INCR pass creates
# 100k keys and grows every shard; the second runs over the same keys and grows nothing.
# Needs redis-tools and a release build. Usage: [BIN=target/release/mapcache] [MCARGS=...]
#   bench/server-growth-tail.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/mapcache}
work=$(mktemp -d)
$BIN serve --port 16379 --admin-port 19090 --data-dir $work/mc --shards 16 ${MCARGS:-} >/dev/null 2>&1 &
mc=$!
trap 'kill -9 $mc 2>/dev/null; rm -rf $work' EXIT
sleep 1
p() { redis-benchmark -p 16379 -t $1 -c 50 -n $2 -P 16 -r 100000 --csv 2>/dev/null | tail -1 | tr -d '"' | awk -F, '{printf "%s rps=%d p50=%s p99=%s max=%s | ", $1, $2, $5, $7, $8}'; }
for r in 1 2 3; do
  redis-cli -p 16379 flushall >/dev/null
  p set 500000; p incr 500000; p incr 500000; echo
done
