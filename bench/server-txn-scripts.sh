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
BIN="${MAPCACHE_BIN:-target/release/mapcache}"
LOAD="${TXN_LOAD_BIN:-target/release/examples/txn_load}"
MC_PORT="${MC_PORT:-16379}"; MC_ADMIN="${MC_ADMIN:-19090}"; REDIS_PORT="${REDIS_PORT:-16380}"
work="$(mktemp -d)"
cleanup() {
  [[ -n "${mc_pid:-}" ]] && kill "$mc_pid" 2>/dev/null || true
  [[ -n "${redis_pid:-}" ]] && kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN" serve --port "$MC_PORT" --admin-port "$MC_ADMIN" --data-dir "$work/mc" >"$work/mc.out" 2>"$work/mc.err" &
mc_pid=$!
redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
for port in "$MC_PORT" "$REDIS_PORT"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

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

python3 - "$work/rows.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault((r["pipeline"], r["test"], r["server"]), []).append(r)
print()
print("median over rounds: pipeline,test,mapcache_ops,redis_ops,ops_ratio,mapcache_p99,redis_p99,p99_ratio")
for (p, t) in sorted({(p, t) for (p, t, s) in by}, key=lambda k: (int(k[0]), k[1])):
    mc, rd = by[(p, t, "mapcache")], by[(p, t, "redis")]
    med = lambda rs, f: statistics.median(float(x[f]) for x in rs)
    ratio = lambda f: statistics.median(float(a[f]) / float(b[f]) for a, b in zip(mc, rd))
    print(f"{p},{t},{med(mc,'ops_per_s'):.0f},{med(rd,'ops_per_s'):.0f},{ratio('ops_per_s'):.2f},"
          f"{med(mc,'p99_ms'):.3f},{med(rd,'p99_ms'):.3f},{ratio('p99_ms'):.2f}")
PY
