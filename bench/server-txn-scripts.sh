#!/usr/bin/env bash
# Transactions and scripts, `mapcache serve` against Debian's redis-server in the same run:
# - EVALSHA of a small script (INCR of a random key, and GET of it) with redis-benchmark, at
#   -P 1 and -P 16;
# - MULTI + 5 INCRs + EXEC with examples/txn_load.rs (redis-benchmark sends one command per
#   request and cannot), at pipeline 1 and 16;
# - plain SET/GET at -P 1 and -P 16, the same run's baseline.
# Needs: redis-server and redis-tools; release builds (cargo build --release --bin mapcache
#   --example txn_load).
# Usage: bench/server-txn-scripts.sh [requests=200000] [clients=50]
# ROUNDS=R (default 3) alternates the servers' order each round; the summary is the median of
#   each figure and of the per-round mapcache/redis ratios.
# Prints CSV rows: round,server,pipeline,test,ops_per_s,p50_ms,p99_ms (for txn: transactions/s).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-200000}"
C="${2:-50}"
ROUNDS="${ROUNDS:-3}"
LOAD="${TXN_LOAD_BIN:-target/release/examples/txn_load}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
start_both

script='local v = redis.call("incr", KEYS[1]) return redis.call("get", KEYS[1])'

echo "round,server,pipeline,test,ops_per_s,p50_ms,p99_ms" | tee "$work/rows.csv"
for round in $(seq "$ROUNDS"); do
  order=("mapcache:$MC_PORT" "redis:$REDIS_PORT")
  (( round % 2 == 0 )) && order=("redis:$REDIS_PORT" "mapcache:$MC_PORT")
  for P in 1 16; do
    for target in "${order[@]}"; do
      IFS=: read -r name port <<<"$target"
      redis-cli -p "$port" flushall >/dev/null
      sha="$(redis-cli -p "$port" script load "$script")"
      for test in set get; do
        redis-benchmark -p "$port" -t "$test" -c "$C" -n "$N" -P "$P" -r 100000 --csv -q 2>/dev/null \
          | tail -n +2 | tr -d '"' | head -1 \
          | awk -F, -v r="$round" -v s="$name" -v p="$P" '{ printf "%s,%s,%s,%s,%s,%s,%s\n", r, s, p, $1, $2, $5, $7 }' \
          | tee -a "$work/rows.csv"
      done
      redis-benchmark -p "$port" -c "$C" -n "$N" -P "$P" -r 100000 --csv -q \
          EVALSHA "$sha" 1 script:__rand_int__ 2>/dev/null \
        | tail -n +2 | tr -d '"' | head -1 \
        | awk -F, -v r="$round" -v s="$name" -v p="$P" '{ printf "%s,%s,%s,EVALSHA,%s,%s,%s\n", r, s, p, $2, $5, $7 }' \
        | tee -a "$work/rows.csv"
      "$LOAD" "127.0.0.1:$port" "$C" "$((N / 5))" "$P" \
        | awk -F, -v r="$round" -v s="$name" -v p="$P" '{ printf "%s,%s,%s,MULTI5,%s,%s,%s\n", r, s, p, $1, $2, $3 }' \
        | tee -a "$work/rows.csv"
    done
  done
done

summarise
