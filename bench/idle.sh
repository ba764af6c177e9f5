#!/usr/bin/env bash
# How fast an idle-gated worker yields (issue 26: within 2 s of the owner's
# load starting, the batch completing elsewhere with no line lost or twice):
# a `--only-when-idle` worker and a plain one, a batch of `sleep` tasks
# (they use no CPU, so the gate sees only the owner), and after 2 s the
# owner starts one CPU-bound loop per core. Prints the time from the load's
# start to the node's status saying paused (polled every 100 ms), then
# checks the batch's journal. Rounds: P2PA_IDLE_ROUNDS (3).
# Usage: bash bench/idle.sh   (P2PA_BIN: the binary; release by default)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${P2PA_BIN:-$PWD/target/release/p2pa}
rounds=${P2PA_IDLE_ROUNDS:-3}
cores=$(nproc)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
echo "$(date -u +%F), $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
echo "| round | load start → paused | lines | each once, all completed |"
echo "|---|---|---|---|"
for r in $(seq "$rounds"); do
  port=$((20000 + RANDOM % 20000))
  net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
  rm -rf "$work"/{g,o,r,out.jsonl}
  "$bin" "${net[@]}" --data-dir "$work/g" node --listen 127.0.0.1:0 --workers 2 \
    --only-when-idle --idle-wait 5 --json > /dev/null 2>&1 &
  g=$!
  "$bin" "${net[@]}" --data-dir "$work/o" node --listen 127.0.0.1:0 --workers 2 --json > /dev/null 2>&1 &
  o=$!
  for _ in $(seq 50); do [ -S "$work/g/p2pa.sock" ] && break; sleep 0.1; done
  sleep 2 # the gate's first samples: idle
  for _ in $(seq 200); do echo '{"input": "100"}'; done > "$work/in.jsonl"
  "$bin" "${net[@]}" --data-dir "$work/r" batch --kind sleep --concurrency 8 \
    --inputs "$work/in.jsonl" --out "$work/out.jsonl" > /dev/null 2>&1 &
  batch=$!
  sleep 2
  start=$(date +%s.%N)
  loops=()
  for _ in $(seq "$cores"); do timeout 30 sh -c 'while :; do :; done' & loops+=($!); done
  took="-"
  for _ in $(seq 100); do
    if "$bin" --data-dir "$work/g" status --json 2>/dev/null | grep -q '"paused":true'; then
      took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f s", b - a}')
      break
    fi
    sleep 0.1
  done
  kill "${loops[@]}" 2>/dev/null || true
  wait "$batch" || true
  check=$(python3 -c '
import json, sys, collections
lines = [json.loads(l) for l in open(sys.argv[1])]
c = collections.Counter(l["line"] for l in lines)
ok = len(c) == 200 and max(c.values()) == 1 and all(l["status"] == "completed" for l in lines)
print(len(lines), "yes" if ok else "NO")' "$work/out.jsonl")
  echo "| $r | $took | ${check% *} | ${check#* } |"
  kill "$g" "$o" 2>/dev/null || true
  wait "$g" "$o" 2>/dev/null || true
done
