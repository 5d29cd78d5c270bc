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
# Huge pages: `engine_thp` is the engine with `set_huge_pages(true)` (its large bucket arrays on
# transparent huge pages); `hashbrown_thp` is hashbrown with glibc's
# `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` (malloc advises its mmapped chunks `MADV_HUGEPAGE`),
# so the table shows how much of a gain any map could have from huge pages. The `thp` lines give
# each process's `AnonHugePages` after filling the map, to check that the pages were huge.
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

THP=(env GLIBC_TUNABLES=glibc.malloc.hugetlb=1)
to_thp() { sed 's/map=hashbrown /map=hashbrown_thp /'; }

{
  "$EX/engine_throughput" "$N" "$ROUNDS"
  "$EX/engine_throughput" "$N" "$ROUNDS" all engine_thp
  "${THP[@]}" "$EX/engine_throughput" "$N" "$ROUNDS" all hashbrown | to_thp
  [ "$HAVE_GO" = 1 ] && "$OUT/gobench" throughput "$N" "$ROUNDS"
  for m in noop engine engine_thp hashbrown; do "$EX/engine_latency" "$m" "$BIG"; done
  "${THP[@]}" "$EX/engine_latency" hashbrown "$BIG" | to_thp
  [ "$HAVE_GO" = 1 ] && "$OUT/gobench" latency "$BIG"
  for m in engine engine_thp hashbrown fresh; do "$EX/engine_memory" "$m" "$BIG"; done
  "${THP[@]}" "$EX/engine_memory" hashbrown "$BIG" | to_thp
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
$1 == "thp"        { huge[field("map") " " field("keys")] = field("anon_huge_kib") }
function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
END {
  printf "\n== throughput, ns/op (best of '"$ROUNDS"'), n = '"$N"'\n"
  printf "%-20s %9s %9s %9s %9s %9s %9s   %9s %9s %9s\n", "keys workload", "engine", "eng_thp", "hashbrown", "brown_thp", "std", "go", "eng/brown", "thp/b_thp", "go/eng"
  split("u64 insert,u64 lookup_hit,u64 lookup_miss,u64 remove,u64 churn,u64 iterate,str16 insert,str16 lookup_hit,str16 lookup_miss,str16 remove,str16 churn,str16 iterate", order, ",")
  for (i = 1; i <= 12; i++) {
    r = order[i]
    printf "%-20s %9s %9s %9s %9s %9s %9s   %9s %9s %9s\n", r, t[r, "engine"], t[r, "engine_thp"], t[r, "hashbrown"], t[r, "hashbrown_thp"], t[r, "std"], t[r, "go"], ratio(t[r, "engine"], t[r, "hashbrown"]), ratio(t[r, "engine_thp"], t[r, "hashbrown_thp"]), ratio(t[r, "go"], t[r, "engine"])
  }
  printf "\nAnonHugePages after filling (KiB):"
  for (h in huge) printf "  %s=%s", h, huge[h]
  printf "\n"
  printf "\n== latency of every insert while growing to '"$BIG"' u64 keys\n"
  for (m in lat) printf "%-14s %s\n", m, lat[m]
  printf "\n== memory (RSS), '"$BIG"' u64 -> u64, remove 90%%, give memory back\n"
  for (m in mem) print mem[m]
}' "$OUT/raw.txt"
