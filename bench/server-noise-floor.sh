#!/usr/bin/env bash
# The noise floor of bench/server-vs-redis.sh: the same redis-benchmark passes (-c 50 -n 500000
# -r 100000, -P 1 and -P 16, set get incr mset, the order of the two servers alternating per
# round) against two identical redis-servers, A and B. Prints, per test, the median over rounds
# of the ratio B / A for requests per second and for p99, and the range of the rounds' ratios.
# Identical servers differ only by the machine's noise, so a mapcache / Redis ratio inside that
# range cannot be told from 1.0 on this machine.
# Needs: apt-get install -y redis-tools redis-server.
# Usage: ROUNDS=5 bench/server-noise-floor.sh; A_PORT, B_PORT move the servers (36391, 36392).
set -euo pipefail
R="${ROUNDS:-5}"
A_PORT="${A_PORT:-36391}"; B_PORT="${B_PORT:-36392}"
w="$(mktemp -d)"
trap 'kill "${a:-}" "${b:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$w"' EXIT
redis-server --port "$A_PORT" --save '' --appendonly no --dir "$w" >/dev/null 2>&1 & a=$!
redis-server --port "$B_PORT" --save '' --appendonly no --dir "$w" >/dev/null 2>&1 & b=$!
for port in "$A_PORT" "$B_PORT"; do
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
for r in $(seq "$R"); do
  order="A:$A_PORT B:$B_PORT"; (( r % 2 == 0 )) && order="B:$B_PORT A:$A_PORT"
  for P in 1 16; do for s in $order; do
    IFS=: read -r name port <<<"$s"
    redis-cli -p "$port" flushall >/dev/null
    for t in set get incr mset; do
      redis-benchmark -p "$port" -t "$t" -c 50 -n 500000 -P "$P" -r 100000 --csv -q 2>/dev/null | tail -1 | tr -d '"' \
        | awk -F, -v r="$r" -v n="$name" -v p="$P" '{print r","n","p","$1","$2","$7}'
    done
  done; done
done >"$w/rows.csv"
python3 - "$w/rows.csv" <<'PY'
import csv, sys, statistics as st
rows = list(csv.reader(open(sys.argv[1])))
d = {}
for r, n, p, t, rps, p99 in rows:
    d[(r, p, t, n)] = (float(rps), float(p99))
tests = sorted({(p, t) for r, p, t, n in d}, key=lambda x: (int(x[0]), x[1]))
rounds = sorted({r for r, *_ in d})
for p, t in tests:
    rr = [d[(r, p, t, "B")][0] / d[(r, p, t, "A")][0] for r in rounds]
    pr = [d[(r, p, t, "B")][1] / d[(r, p, t, "A")][1] for r in rounds]
    print(f"P={p} {t:16s} rps B/A median {st.median(rr):.2f} (rounds {min(rr):.2f}-{max(rr):.2f})  p99 B/A median {st.median(pr):.2f} (rounds {min(pr):.2f}-{max(pr):.2f})")
PY
