#!/usr/bin/env bash
# redis-benchmark against `mapcache serve` and Debian's redis-server, same machine, same run.
# Needs: apt-get install -y redis-tools redis-server; a release build (cargo build --release).
# Usage: bench/server-vs-redis.sh [requests=500000] [clients=50]
# MAPCACHE_ARGS adds flags to `mapcache serve` (e.g. MAPCACHE_ARGS="--io-threads 2").
# ROUNDS=R (default 1) repeats the whole comparison R times, alternating the two servers, and
#   ends with the median of each figure and the per-round mapcache/redis ratios' median.
# PIN=1 runs both servers on CPU 0 and redis-benchmark on CPU 1 (taskset), so the client never
#   competes with the server it measures; unset, everything shares every CPU.
# Prints one CSV row per (round, server, pipeline, test): requests/s and p50/p99 latency in ms.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-500000}"
C="${2:-50}"
ROUNDS="${ROUNDS:-1}"
BIN="${MAPCACHE_BIN:-target/release/mapcache}"
MC_PORT=16379; MC_ADMIN=19090; REDIS_PORT=16380
SERVER_CPU=(); CLIENT_CPU=()
if [[ "${PIN:-0}" == 1 ]]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); fi
work="$(mktemp -d)"
cleanup() {
  [[ -n "${mc_pid:-}" ]] && kill "$mc_pid" 2>/dev/null || true
  [[ -n "${redis_pid:-}" ]] && kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# shellcheck disable=SC2086 # MAPCACHE_ARGS is a list of flags
"${SERVER_CPU[@]}" "$BIN" serve --port "$MC_PORT" --admin-port "$MC_ADMIN" --data-dir "$work/mc" --shards 16 ${MAPCACHE_ARGS:-} >"$work/mc.out" 2>"$work/mc.err" &
mc_pid=$!
"${SERVER_CPU[@]}" redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
for port in "$MC_PORT" "$REDIS_PORT"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done

echo "round,server,pipeline,test,rps,p50_ms,p99_ms" | tee "$work/rows.csv"
for round in $(seq "$ROUNDS"); do
  order=("mapcache:$MC_PORT" "redis:$REDIS_PORT")
  (( round % 2 == 0 )) && order=("redis:$REDIS_PORT" "mapcache:$MC_PORT")
  for P in 1 16; do
    for target in "${order[@]}"; do
      name="${target%%:*}"; port="${target##*:}"
      redis-cli -p "$port" flushall >/dev/null
      # --csv columns: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
      "${CLIENT_CPU[@]}" redis-benchmark -p "$port" -t set,get,incr,mset -c "$C" -n "$N" -P "$P" -r 100000 --csv -q 2>/dev/null \
        | tail -n +2 | tr -d '"' \
        | awk -F, -v r="$round" -v s="$name" -v p="$P" '{ printf "%s,%s,%s,%s,%s,%s,%s\n", r, s, p, $1, $2, $5, $7 }' \
        | tee -a "$work/rows.csv"
    done
  done
done

if (( ROUNDS > 1 )); then
  python3 - "$work/rows.csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = {}
for r in rows:
    by.setdefault((r["pipeline"], r["test"], r["server"]), []).append(r)
print()
print("median over rounds: pipeline,test,mapcache_rps,redis_rps,rps_ratio,mapcache_p99,redis_p99,p99_ratio"
      " (ratios: median of the per-round ratios)")
for (p, t, s) in sorted({(p, t, s) for (p, t, s) in by if s == "mapcache"}, key=lambda k: (int(k[0]), k[1])):
    mc, rd = by[(p, t, "mapcache")], by[(p, t, "redis")]
    med = lambda rs, f: statistics.median(float(x[f]) for x in rs)
    rps_ratio = statistics.median(float(a["rps"]) / float(b["rps"]) for a, b in zip(mc, rd))
    p99_ratio = statistics.median(float(a["p99_ms"]) / float(b["p99_ms"]) for a, b in zip(mc, rd))
    print(f"{p},{t},{med(mc,'rps'):.0f},{med(rd,'rps'):.0f},{rps_ratio:.2f},"
          f"{med(mc,'p99_ms'):.3f},{med(rd,'p99_ms'):.3f},{p99_ratio:.2f}")
PY
fi
