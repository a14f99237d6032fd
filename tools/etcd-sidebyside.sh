#!/usr/bin/env bash
# mapreg on etcd against raw etcd, same cluster, same run (issue 11's targets): a 3-member etcd
# cluster on loopback, then ../shared/loadgen's create (and, with WATCH=1, watch) scenarios
#   1. against etcd itself (Txn if-absent + index put),
#   2. against ONE mapreg node on that cluster (--store etcd://...),
#   3. against THREE mapreg nodes on it, one loadgen per node at once (their ops/s add up).
# usage: tools/etcd-sidebyside.sh MAPREG_BIN OUT_DIR [LOADGEN_DIR]
# Needs etcd on PATH (Debian: apt-get install -y etcd-server). Loopback only, throwaway dirs.
set -euo pipefail
mapreg=$(realpath "$1"); out=$2; lgdir=${3:-$(dirname "$0")/../../shared/loadgen}
lg=${CARGO_TARGET_DIR:-${TMPDIR:-/tmp}/loadgen-target}/release/loadgen
[ -x "$lg" ] || "$lgdir/build.sh" >&2
mkdir -p "$out"
tmp=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 1; rm -rf "$tmp"; }
trap cleanup EXIT
wait_port() { for _ in $(seq 200); do (echo >/dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
durations=(--duration "${DURATION:-8}" --warmup 3)
conc=${CONCURRENCY:-16,64}

cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:2381$i"; done
for i in 0 1 2; do
  etcd --name m$i --data-dir "$tmp/etcd$i" \
    --listen-client-urls http://127.0.0.1:2379$i --advertise-client-urls http://127.0.0.1:2379$i \
    --listen-peer-urls http://127.0.0.1:2381$i --initial-advertise-peer-urls http://127.0.0.1:2381$i \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token sbs \
    >"$tmp/etcd$i.log" 2>&1 & pids+=($!)
done
etcd_pids=("${pids[@]}")
for i in 0 1 2; do wait_port 2379$i || exit 1; done
endpoints=127.0.0.1:23790,127.0.0.1:23791,127.0.0.1:23792
sleep 2

echo "== raw etcd (3 members), loadgen against member 0"
"$lg" etcd --endpoint http://127.0.0.1:23790 --server-pid "${etcd_pids[0]}" --scenario create \
  --concurrency "$conc" "${durations[@]}" --json "$out/etcd.json" | tee "$out/etcd.txt"

start_node() { # port prefix
  RUST_LOG=warn "$mapreg" serve --store "etcd://$endpoints/$2" --listen 127.0.0.1:$1 \
    >"$tmp/mapreg-$1.log" 2>&1 & pids+=($!)
  wait_port "$1" || { tail -20 "$tmp/mapreg-$1.log" >&2; exit 1; }
}

echo "== one mapreg node on the cluster"
start_node 50991 sbs1
node=${pids[-1]}
"$lg" mapreg --endpoint http://127.0.0.1:50991 --server-pid "$node" --scenario create \
  --concurrency "$conc" "${durations[@]}" --json "$out/mapreg-1node.json" | tee "$out/mapreg-1node.txt"
kill "$node"; wait "$node" 2>/dev/null || true

echo "== three mapreg nodes on the cluster, one loadgen each, at once (concurrency per loadgen)"
for p in 50992 50993 50994; do start_node $p sbs3; done
per=$(python3 -c "import sys; print(','.join(str(max(1, int(c) // 3)) for c in sys.argv[1].split(',')))" "$conc")
lgs=()
for p in 50992 50993 50994; do
  "$lg" mapreg --endpoint http://127.0.0.1:$p --scenario create --concurrency "$per" \
    "${durations[@]}" --json "$out/mapreg-3nodes-$p.json" >"$out/mapreg-3nodes-$p.txt" & lgs+=($!)
  sleep 1.1 # loadgen names its keys after the second it started: keep the three apart
done
for l in "${lgs[@]}"; do wait "$l"; done
if [ "${WATCH:-0}" = 1 ]; then
  echo "== watch fan-out: 1000 watchers per node x 3 nodes, each loadgen writing 200/s through its node"
  lgs=()
  for p in 50992 50993 50994; do
    "$lg" mapreg --endpoint http://127.0.0.1:$p --scenario watch --watchers 1000 --watch-rate 200 \
      --watch-duration 10 --json "$out/watch-3nodes-$p.json" >"$out/watch-3nodes-$p.txt" & lgs+=($!)
    sleep 1.1
  done
  for l in "${lgs[@]}"; do wait "$l"; done
  cat "$out"/watch-3nodes-*.txt
fi
python3 - "$out" <<'PY'
import json, sys, glob
out = sys.argv[1]
def rows(f):
    return {r["concurrency"]: r for r in json.load(open(f))["ops"] if r["scenario"] == "create"}
etcd, one = rows(f"{out}/etcd.json"), rows(f"{out}/mapreg-1node.json")
three = [rows(f) for f in sorted(glob.glob(f"{out}/mapreg-3nodes-*.json"))]
print("| clients | etcd Txn creates/s (p99 ms) | mapreg 1 node (p99 ms) | ratio | mapreg 3 nodes, sum (worst p99 ms) | ratio |")
print("|---|---|---|---|---|---|")
for c, e in sorted(etcd.items()):
    o = one.get(c)
    per = [t.get(max(1, c // 3)) for t in three]
    s = sum(p["ops_per_s"] for p in per if p)
    p99 = max((p["latency"]["p99_us"] for p in per if p), default=0) / 1000
    print(f"| {c} | {e['ops_per_s']:.0f} ({e['latency']['p99_us']/1000:.1f}) | "
          f"{o['ops_per_s']:.0f} ({o['latency']['p99_us']/1000:.1f}) | {o['ops_per_s']/e['ops_per_s']:.2f} | "
          f"{s:.0f} ({p99:.1f}) | {s/e['ops_per_s']:.2f} |")
PY
