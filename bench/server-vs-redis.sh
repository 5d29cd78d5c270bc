#!/usr/bin/env bash
# redis-benchmark against `mapcache serve` and Debian's redis-server, same machine, same run.
# Needs: apt-get install -y redis-tools redis-server; a release build (cargo build --release).
# Usage: bench/server-vs-redis.sh [requests=500000] [clients=50]
# MC_PORT, MC_ADMIN, REDIS_PORT move the servers' ports (defaults 16379, 19090, 16380), for a
#   machine where something else already listens there.
# MAPCACHE_ARGS adds flags to `mapcache serve` (e.g. MAPCACHE_ARGS="--io-threads 2").
# ROUNDS=R (default 1) repeats the whole comparison R times, alternating the two servers, and
#   ends with the median of each figure and the per-round mapcache/redis ratios' median.
# PIN=1 runs both servers on CPU 0 and redis-benchmark on CPU 1 (taskset), so the client never
#   competes with the server it measures; unset, everything shares every CPU.
# Prints one CSV row per (round, server, pipeline, test): requests/s, p50/p99 latency in ms, the
#   server's CPU time per request in microseconds (user + system, from /proc/<pid>/stat around
#   that test's redis-benchmark run), the share of one CPU that redis-benchmark itself used
#   (near 1.0 = the client, not the server, set the pace: then rps cannot tell the servers apart,
#   and CPU per request is the figure that does) and the share of the machine's CPU time the
#   hypervisor took for other guests meanwhile (`steal` in /proc/stat: on a shared VM, a round
#   with steal well above the others' is the machine's, not the server's).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-500000}"
C="${2:-50}"
ROUNDS="${ROUNDS:-1}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
CLIENT_CPU=()
if [[ "${PIN:-0}" == 1 ]]; then SERVER_CPU=(taskset -c 0); CLIENT_CPU=(taskset -c 1); fi
# shellcheck disable=SC2206 # MAPCACHE_ARGS is a list of flags
MC_ARGS=(--shards 16 ${MAPCACHE_ARGS:-})
start_both

# CPU ticks (user + system) a process has used so far; and the ticks per second.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# The machine's steal ticks and total ticks so far (the first line of /proc/stat).
# (%.0f: Debian's mawk prints integers above 2^31 as 2.1e+09 with a plain print.)
steal_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; printf "%.0f %.0f\n", $9, t }' /proc/stat; }
hz="$(getconf CLK_TCK)"
TIMEFORMAT='%U %S %R'

echo "round,server,pipeline,test,rps,p50_ms,p99_ms,server_cpu_us_per_req,client_cpu,steal" | tee "$work/rows.csv"
for round in $(seq "$ROUNDS"); do
  order=("mapcache:$MC_PORT:$mc_pid" "redis:$REDIS_PORT:$redis_pid")
  (( round % 2 == 0 )) && order=("redis:$REDIS_PORT:$redis_pid" "mapcache:$MC_PORT:$mc_pid")
  for P in 1 16; do
    for target in "${order[@]}"; do
      IFS=: read -r name port pid <<<"$target"
      redis-cli -p "$port" flushall >/dev/null
      for test in set get incr mset; do
        server_before="$(cpu_ticks "$pid")"
        read -r steal_before total_before < <(steal_ticks)
        # `time` reports the client's user and system CPU seconds and the wall seconds.
        # --csv columns: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
        { time "${CLIENT_CPU[@]}" redis-benchmark -p "$port" -t "$test" -c "$C" -n "$N" -P "$P" -r 100000 --csv -q \
            >"$work/rb.csv" 2>/dev/null ; } 2>"$work/time"
        server_after="$(cpu_ticks "$pid")"
        read -r steal_after total_after < <(steal_ticks)
        read -r client_user client_sys wall <"$work/time"
        tail -n +2 "$work/rb.csv" | tr -d '"' | head -1 \
          | awk -F, -v r="$round" -v s="$name" -v p="$P" -v n="$N" -v hz="$hz" \
              -v st="$((server_after - server_before))" -v cu="$client_user" -v cs="$client_sys" -v w="$wall" \
              -v sl="$((steal_after - steal_before))" -v tt="$((total_after - total_before))" \
              '{ printf "%s,%s,%s,%s,%s,%s,%s,%.2f,%.2f,%.2f\n", r, s, p, $1, $2, $5, $7, st / hz * 1e6 / n, (cu + cs) / w, sl / (tt > 0 ? tt : 1) }' \
          | tee -a "$work/rows.csv"
      done
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
print("median over rounds: pipeline,test,mapcache_rps,redis_rps,rps_ratio,mapcache_p99,redis_p99,p99_ratio,"
      "mapcache_cpu_us,redis_cpu_us,cpu_ratio,client_cpu_max,steal_max (ratios: median of the per-round"
      " ratios; client_cpu_max near 1.0 = client-bound, rps cannot tell the servers apart; steal_max ="
      " the largest share of CPU time the hypervisor took during any of these runs)")
for (p, t, s) in sorted({(p, t, s) for (p, t, s) in by if s == "mapcache"}, key=lambda k: (int(k[0]), k[1])):
    mc, rd = by[(p, t, "mapcache")], by[(p, t, "redis")]
    med = lambda rs, f: statistics.median(float(x[f]) for x in rs)
    ratio = lambda f: statistics.median(float(a[f]) / float(b[f]) for a, b in zip(mc, rd))
    client = max(float(x["client_cpu"]) for x in mc + rd)
    steal = max(float(x["steal"]) for x in mc + rd)
    print(f"{p},{t},{med(mc,'rps'):.0f},{med(rd,'rps'):.0f},{ratio('rps'):.2f},"
          f"{med(mc,'p99_ms'):.3f},{med(rd,'p99_ms'):.3f},{ratio('p99_ms'):.2f},"
          f"{med(mc,'server_cpu_us_per_req'):.2f},{med(rd,'server_cpu_us_per_req'):.2f},"
          f"{ratio('server_cpu_us_per_req'):.2f},{client:.2f},{steal:.2f}")
PY
fi
