#!/usr/bin/env bash
# Two builds of the engine side by side: runs two `engine_throughput` binaries (say, main and a
# patched engine) alternately, ROUNDS times each, on the engine only, and prints per workload
# the median ns/op of each and B/A. For trying an engine change on this noisy machine: the
# alternation spreads the machine's moods over both.
#
#   cargo build --release --example engine_throughput && cp target/release/examples/engine_throughput /tmp/a
#   (apply the change) ... cp target/release/examples/engine_throughput /tmp/b
#   bench/engine-ab.sh /tmp/a /tmp/b [ROUNDS=6] [KEYS=u64|str16] [N=1000000]
set -euo pipefail
A="$1"; B="$2"; ROUNDS="${3:-6}"; KEYS="${4:-u64}"; N="${5:-1000000}"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
for _ in $(seq "$ROUNDS"); do
  "$A" "$N" 1 "$KEYS" engine | grep '^throughput' | sed 's/^/A /' >>"$out"
  "$B" "$N" 1 "$KEYS" engine | grep '^throughput' | sed 's/^/B /' >>"$out"
done
python3 - "$out" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, _, *fields = line.split()
    f = dict(x.split("=") for x in fields)
    runs[(f["workload"], who)].append(float(f["ns_per_op"]))
for w in ["insert", "lookup_hit", "lookup_miss", "remove", "churn", "iterate"]:
    a, b = statistics.median(runs[(w, "A")]), statistics.median(runs[(w, "B")])
    print(f"{w:12s} A {a:8.1f}  B {b:8.1f}  B/A {b / a:5.2f}")
PY
