#!/usr/bin/env bash
# Runs the engine and its peers (hashbrown with the same hasher, std HashMap, Go 1.19's classic
# map) on the same workloads and prints one table. Results are ratios within one run; the
# machine may be shared, so repeat and compare ratios rather than absolute times.
#
#   bench/engine-peers.sh                  # N=1e6 throughput, 1e7 latency and memory
#   N=100000 BIG=1000000 ROUNDS=3 bench/engine-peers.sh
#
# The latency part also times `noop` (the same loop around no map): its tail is the machine's.
#
# Needs: cargo, and Go 1.19 (`apt-get install -y golang-1.19-go`; GO=/usr/lib/go-1.19/bin/go).
set -euo pipefail
cd "$(dirname "$0")/.."

N="${N:-1000000}"
BIG="${BIG:-10000000}"
ROUNDS="${ROUNDS:-3}"
GO="${GO:-/usr/lib/go-1.19/bin/go}"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

cargo build --release --quiet --example engine_throughput --example engine_latency --example engine_memory
EX=target/release/examples
HAVE_GO=0
if [ -x "$GO" ]; then
  (cd bench/go && GOFLAGS=-mod=mod "$GO" build -o "$OUT/gobench" .) && HAVE_GO=1
else
  echo "note: $GO not found: Go columns left empty (apt-get install -y golang-1.19-go)" >&2
fi

{
  "$EX/engine_throughput" "$N" "$ROUNDS"
  [ "$HAVE_GO" = 1 ] && "$OUT/gobench" throughput "$N" "$ROUNDS"
  for m in noop engine hashbrown; do "$EX/engine_latency" "$m" "$BIG"; done
  [ "$HAVE_GO" = 1 ] && "$OUT/gobench" latency "$BIG"
  for m in engine hashbrown fresh; do "$EX/engine_memory" "$m" "$BIG"; done
  [ "$HAVE_GO" = 1 ] && "$OUT/gobench" memory "$BIG"
} | tee "$OUT/raw.txt" >&2

awk '
function field(name,   i, kv) {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] }
  return ""
}
$1 == "throughput" { t[field("keys") " " field("workload"), field("map")] = field("ns_per_op"); rows[field("keys") " " field("workload")] = 1 }
$1 == "latency"    { lat[field("map")] = sprintf("wall: p50 %6d  p99 %7d  p99.99 %9d  max %11d ns | thread cpu: p50 %6d  p99 %7d  p99.99 %9d  max %11d ns  (total %ss)", field("p50_ns"), field("p99_ns"), field("p9999_ns"), field("max_ns"), field("cpu_p50_ns"), field("cpu_p99_ns"), field("cpu_p9999_ns"), field("cpu_max_ns"), field("total_s")) }
$1 == "memory"     { mem[field("map")] = $0 }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
END {
  printf "\n== throughput, ns/op (best of '"$ROUNDS"'), n = '"$N"'\n"
  printf "%-20s %9s %9s %9s %9s   %12s %9s\n", "keys workload", "engine", "hashbrown", "std", "go", "eng/brown", "go/eng"
  split("u64 insert,u64 lookup_hit,u64 lookup_miss,u64 remove,u64 churn,u64 iterate,str16 insert,str16 lookup_hit,str16 lookup_miss,str16 remove,str16 churn,str16 iterate", order, ",")
  for (i = 1; i <= 12; i++) {
    r = order[i]
    printf "%-20s %9s %9s %9s %9s   %12s %9s\n", r, t[r, "engine"], t[r, "hashbrown"], t[r, "std"], t[r, "go"], ratio(t[r, "engine"], t[r, "hashbrown"]), ratio(t[r, "go"], t[r, "engine"])
  }
  printf "\n== latency of every insert while growing to '"$BIG"' u64 keys\n"
  for (m in lat) printf "%-10s %s\n", m, lat[m]
  printf "\n== memory (RSS), '"$BIG"' u64 -> u64, remove 90%%, give memory back\n"
  for (m in mem) print mem[m]
}' "$OUT/raw.txt"
