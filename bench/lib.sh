# Shared by the server benchmarks that run `mapcache serve` and Debian's redis-server side by
# side: sourced, not run. Defines BIN, MC_PORT, MC_ADMIN, REDIS_PORT and work (a temp dir removed
# at exit), and start_both, which starts both servers (killed at exit; their pids in mc_pid and
# redis_pid) and waits until both answer PING. Before start_both, a caller may set SERVER_CPU (a
# command prefix for both servers, e.g. `taskset -c 0`) and MC_ARGS (more `serve` flags).

BIN="${MAPCACHE_BIN:-target/release/mapcache}"
MC_PORT="${MC_PORT:-16379}"; MC_ADMIN="${MC_ADMIN:-19090}"; REDIS_PORT="${REDIS_PORT:-16380}"
work="$(mktemp -d)"
cleanup() {
  [[ -n "${mc_pid:-}" ]] && kill "$mc_pid" 2>/dev/null || true
  [[ -n "${redis_pid:-}" ]] && kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

SERVER_CPU=(); MC_ARGS=()
start_both() {
  "${SERVER_CPU[@]}" "$BIN" serve --port "$MC_PORT" --admin-port "$MC_ADMIN" --data-dir "$work/mc" "${MC_ARGS[@]}" >"$work/mc.out" 2>"$work/mc.err" &
  mc_pid=$!
  "${SERVER_CPU[@]}" redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
  redis_pid=$!
  for port in "$MC_PORT" "$REDIS_PORT"; do
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
}

# The summary of rows.csv (round,server,pipeline,test,ops_per_s,p50_ms,p99_ms): per pipeline and
# test, the median of each figure over the rounds and of the per-round mapcache/redis ratios.
summarise() {
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
}
