#!/usr/bin/env bash
# The INCR -P 16 tail and shard growth: on one `mapcache serve`, `redis-benchmark -t set` and then
# `-t incr` twice (-c 50 -n 500000 -P 16 -r 100000), three rounds (FLUSHALL between rounds). The
# first INCR pass creates 100k keys and doubles every shard's table once; the second runs over the
# same keys and grows nothing. After each pass: the connection thread's minor page faults and CPU
# ticks (1/100 s) during it, from /proc/<pid>/task/<tid>/stat.
# NOGROW=1 first fills the shards to twice the size (SET of 200k keys, then DEL of them all) so
# that no pass grows any table: the same passes without growth, for comparison.
# PEER=redis runs the same passes against Debian's redis-server (--save '') instead, for the side
# by side (its process has one thread: the io_* columns are the whole server's).
# Needs redis-tools (and redis-server for PEER=redis) and a release build. Usage:
#   [BIN=target/release/mapcache] [MCARGS=...] [NOGROW=1] [PEER=redis] bench/server-growth-tail.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/mapcache}
work=$(mktemp -d)
if [ "${PEER:-}" = redis ]; then
  redis-server --port 16379 --save '' --appendonly no --dir $work >/dev/null 2>&1 &
  mc=$!
  thread=redis-server
else
  $BIN serve --port 16379 --admin-port 19090 --data-dir $work/mc --shards 16 ${MCARGS:-} >/dev/null 2>&1 &
  mc=$!
  thread=mapcache-io-0
fi
trap 'kill -9 $mc 2>/dev/null; rm -rf $work' EXIT
sleep 1
io=$(grep -lx "$thread" /proc/$mc/task/*/comm | head -1 | cut -d/ -f5)
st() { awk '{print $10, $14 + $15}' /proc/$mc/task/$io/stat; }
p() {
  local f0 c0 f1 c1
  read -r f0 c0 < <(st)
  redis-benchmark -p 16379 -t $1 -c 50 -n $2 -P 16 -r 100000 --csv 2>/dev/null | tail -1 | tr -d '"' \
    | awk -F, '{printf "%s rps=%d p50=%s p99=%s max=%s", $1, $2, $5, $7, $8}'
  read -r f1 c1 < <(st)
  echo " io_minflt=$((f1 - f0)) io_cpu_ticks=$((c1 - c0))"
}
for r in 1 2 3; do
  if [ "${NOGROW:-0}" = 1 ]; then
    redis-cli -p 16379 flushall >/dev/null
    redis-benchmark -p 16379 -t set -c 50 -n 2000000 -P 16 -r 200000 -q >/dev/null 2>&1
    redis-benchmark -p 16379 -c 50 -n 3000000 -P 16 -r 200000 DEL key:__rand_int__ >/dev/null 2>&1
    redis-cli -p 16379 dbsize | sed 's/^/keys left after the DEL pass: /'
  else
    redis-cli -p 16379 flushall >/dev/null
  fi
  echo "round $r"
  p set 500000; p incr 500000; p incr 500000
done
