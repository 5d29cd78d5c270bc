#!/usr/bin/env bash
# Hashes and sets, `mapcache serve` against Debian's redis-server in the same run: redis-benchmark's
# own HSET, SADD and SPOP tests (HSET myhash element:__rand_int__ VALUE, SADD myset
# element:__rand_int__, then SPOP myset; -r 100000 fields and members) at -P 1 and -P 16, with
# plain SET/GET as the same run's baseline.
# Needs: redis-server and redis-tools; a release build (cargo build --release --bin mapcache).
# Usage: bench/server-hash-set.sh [requests=200000] [clients=50]
# ROUNDS=R (default 3) alternates the servers' order each round; the summary is the median of
#   each figure and of the per-round mapcache/redis ratios.
# Prints CSV rows: round,server,pipeline,test,ops_per_s,p50_ms,p99_ms.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200000}"
C="${2:-50}"
ROUNDS="${ROUNDS:-3}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
start_both

echo "round,server,pipeline,test,ops_per_s,p50_ms,p99_ms" | tee "$work/rows.csv"
for round in $(seq "$ROUNDS"); do
  order=("mapcache:$MC_PORT" "redis:$REDIS_PORT")
  (( round % 2 == 0 )) && order=("redis:$REDIS_PORT" "mapcache:$MC_PORT")
  for P in 1 16; do
    for target in "${order[@]}"; do
      IFS=: read -r name port <<<"$target"
      redis-cli -p "$port" flushall >/dev/null
      redis-benchmark -p "$port" -t set,get,hset,sadd,spop -c "$C" -n "$N" -P "$P" -r 100000 --csv -q 2>/dev/null \
        | tail -n +2 | tr -d '"' \
        | awk -F, -v r="$round" -v s="$name" -v p="$P" '{ printf "%s,%s,%s,%s,%s,%s,%s\n", r, s, p, $1, $2, $5, $7 }' \
        | tee -a "$work/rows.csv"
    done
  done
done

summarise
