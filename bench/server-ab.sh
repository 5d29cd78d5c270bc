#!/usr/bin/env bash
# Two mapcache builds (A and B) and redis-server side by side at `-P 16`: per round, for each
# server (the order reversed every other round), SET, GET, then INCR twice: the first INCR pass
# creates 100k counters (every shard's table doubles), the second only updates them. Prints one
# CSV row per (round, server, pass), then the medians over rounds per server and pass.
# For A/B experiments on the growth tail (BENCHMARKS, "Session 9", the helper at nice 10).
# Needs: apt-get install -y redis-tools redis-server.
# Usage: A=<mapcache binary> B=<mapcache binary> R=6 bench/server-ab.sh (P=16, N=500000).
set -euo pipefail
A="${A:?A=<mapcache binary>}"; B="${B:?B=<mapcache binary>}"
P="${P:-16}"; N="${N:-500000}"
w="$(mktemp -d)"
trap 'kill "${a:-}" "${b:-}" "${rd:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$w"' EXIT
"$A" serve --port 36401 --admin-port 39401 --data-dir "$w/a" --shards 16 >/dev/null 2>&1 & a=$!
"$B" serve --port 36402 --admin-port 39402 --data-dir "$w/b" --shards 16 >/dev/null 2>&1 & b=$!
redis-server --port 36380 --save '' --appendonly no --dir "$w" >/dev/null 2>&1 & rd=$!
for port in 36401 36402 36380; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"
for r in $(seq "${R:-3}"); do
  order="A:36401:$a B:36402:$b redis:36380:$rd"
  (( r % 2 == 0 )) && order="redis:36380:$rd B:36402:$b A:36401:$a"
  for s in $order; do
    IFS=: read -r name port pid <<<"$s"
    redis-cli -p "$port" flushall >/dev/null
    for t in set get incr incr2; do
      t0="$(ticks "$pid")"
      out="$(redis-benchmark -p "$port" -t "${t%2}" -c 50 -n "$N" -P "$P" -r 100000 --csv -q \
        | tail -1 | tr -d '"' | cut -d, -f2,5,7)"
      t1="$(ticks "$pid")"
      echo "$r,$name,$t,$out,$(awk -v d="$((t1 - t0))" -v hz="$hz" -v n="$N" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')"
    done
  done
done | tee "$w/rows.csv"
python3 - "$w/rows.csv" <<'PY'
import csv, statistics as st, sys
by = {}
for rnd, srv, t, rps, p50, p99, cpu in csv.reader(open(sys.argv[1])):
    by.setdefault((t, srv), []).append((float(rps), float(p99), float(cpu)))
print("\npass: server rps (median) p99 ms cpu us/req")
for t in ["set", "get", "incr", "incr2"]:
    cells = []
    for srv in ["A", "B", "redis"]:
        v = by.get((t, srv), [])
        if v:
            cells.append(f"{srv}: {st.median(x[0] for x in v) / 1e3:.0f}k {st.median(x[1] for x in v):.2f} {st.median(x[2] for x in v):.2f}")
    print(f"{t}: " + " | ".join(cells))
PY
