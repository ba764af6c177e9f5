#!/usr/bin/env bash
# What a worker costs the machine's owner (issue 26's --nice target): the
# owner runs one CPU-bound loop per core for a fixed window, alone and then
# beside a local worker node (one slot per core, tract) that runs PP-OCR
# direction classification (models/ppocr_cls.onnx) for the whole window, at
# `--nice 10` (the default) and at `--nice 0`. Prints the owner's loop
# iterations in each case and their ratio to alone, and the inferences the
# node finished. The requester (on another machine in a real pool) runs here
# at the node's niceness, so its CPU counts as the node's.
# Usage: bash bench/nice.sh   (P2PA_BIN: the binary; release by default;
#                              P2PA_NICE_WINDOW: seconds, 8 by default;
#                              P2PA_NICE_MODEL, P2PA_NICE_INPUT: another
#                              model and its .npy/.npz input, e.g. aecmos
#                              from scripts/real-models.sh;
#                              P2PA_NICE_OWNERS: the owner's loops, one per
#                              core by default; 1 is issue 26's case of one
#                              CPU-bound owner process)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${P2PA_BIN:-$PWD/target/release/p2pa}
window=${P2PA_NICE_WINDOW:-8}
cores=$(nproc)
owners=${P2PA_NICE_OWNERS:-$cores}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
model=${P2PA_NICE_MODEL:-models/ppocr_cls.onnx}
input=${P2PA_NICE_INPUT:-models/ppocr_cls_input.npy}
ext=${input##*.}
cp "$input" "$work/in.$ext"
for _ in $(seq 4000); do echo "\"in.$ext\""; done > "$work/inputs.jsonl"
port=$((20000 + RANDOM % 20000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")

# One loop per core: iterations of a fixed body in $window seconds.
owner() {
  local pids=() i
  for i in $(seq "$owners"); do
    python3 -c "
import time
end = time.monotonic() + $window
n = 0
while time.monotonic() < end:
    for _ in range(1000):
        pass
    n += 1
print(n)" > "$work/owner.$i" &
    pids+=($!)
  done
  wait "${pids[@]}"
  cat "$work"/owner.* | awk '{s += $1} END {print s}'
}

beside() { # nice
  rm -rf "$work/w" "$work/r" "$work/out.jsonl"
  "$bin" "${net[@]}" --data-dir "$work/w" node --listen 127.0.0.1:0 --engine tract \
    --workers "$cores" --nice "$1" --json > "$work/node.log" 2>/dev/null &
  local node=$!
  for _ in $(seq 100); do grep -q listening "$work/node.log" 2>/dev/null && break; sleep 0.1; done
  local addr
  addr=$(head -1 "$work/node.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["addr"])')
  # Warm: the model reaches the worker and loads before the window starts.
  nice -n "$1" "$bin" "${net[@]}" --data-dir "$work/r" batch --kind infer --model "$model" \
    --peer "$addr" --inputs <(head -4 "$work/inputs.jsonl") --out /dev/null >/dev/null 2>&1 || true
  cp "$work/inputs.jsonl" "$work/run.jsonl"
  nice -n "$1" "$bin" "${net[@]}" --data-dir "$work/r" batch --kind infer --model "$model" \
    --peer "$addr" --inputs "$work/run.jsonl" --out "$work/out.jsonl" >/dev/null 2>&1 &
  local batch=$!
  sleep 2 # the batch under way
  local before n
  before=$(wc -l < "$work/out.jsonl" 2>/dev/null || echo 0)
  n=$(owner)
  done_in_window=$(( $(wc -l < "$work/out.jsonl") - before ))
  kill "$batch" "$node" 2>/dev/null || true
  wait "$batch" "$node" 2>/dev/null || true
  echo "$n $done_in_window"
}

# Interleaved rounds (this machine is shared: its speed drifts).
rounds=${P2PA_NICE_ROUNDS:-2}
levels=(10 19 0)
declare -A owned done_
alone=0 list=""
for _ in $(seq "$rounds"); do
  a=$(owner); alone=$((alone + a)); list="$list $a"
  for l in "${levels[@]}"; do
    read -r n i < <(beside "$l")
    owned[$l]=$(( ${owned[$l]:-0} + n )); done_[$l]=$(( ${done_[$l]:-0} + i ))
  done
done
a=$(owner); alone=$((alone + a)); list="$list $a"
base=$(( alone / (rounds + 1) ))
echo "$(date -u +%F), $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), window ${window} s, means of $rounds rounds, $(basename "$model"), $owners owner loop(s)"
echo
echo "| owner's loops beside | owner iterations | vs alone | node inferences in the window |"
echo "|---|---|---|---|"
echo "| nothing (each round, and after) | $base (${list# }) | 1.00 | - |"
for l in "${levels[@]}"; do
  awk -v n="${owned[$l]}" -v b="$base" -v i="${done_[$l]}" -v r="$rounds" -v l="$l" \
    'BEGIN {printf "| a worker at --nice %d | %d | %.2f | %d |\n", l, n / r, n / r / b, i / r}'
done
