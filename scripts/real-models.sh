#!/usr/bin/env bash
# Real, publicly released models over p2pa, checked against onnxruntime.
#
# Fetches from PyPI (never from a model hub): onnxruntime and numpy into a
# venv, and the wheels that ship the models: rapidocr-onnxruntime 1.4.4
# (PP-OCRv4 text detection, a CNN with dynamic height and width; PP-OCRv4
# text recognition, SVTR with attention blocks; PP-OCR direction classifier;
# Apache-2.0) and magika 1.0.3 (Google's content-type model over raw bytes;
# Apache-2.0). Starts three local worker nodes (TTL 0, loopback only), runs
# each model's inputs (.npy files, seeded) through `p2pa batch --out-dir`,
# and compares every output with onnxruntime's on the same input (1e-4
# relative; integers exactly). With P2PA_REAL_TIMING=1 it also times tract
# alone vs onnxruntime alone, and batch throughput over 1 and 3 workers.
#
# Usage: scripts/real-models.sh            (P2PA_BIN to pick the binary)
# Exit: 0 all equal, 1 a mismatch or failure; prints SKIPPED and exits 0
# when PyPI cannot be reached.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=${P2PA_REAL_DIR:-$root/target/real-models}
bin=${P2PA_BIN:-}
if [ -z "$bin" ]; then
  if [ -x target/release/p2pa ]; then bin=$root/target/release/p2pa; else
    cargo build -q -p p2pa; bin=$root/target/debug/p2pa; fi
fi
mkdir -p "$work/models" "$work/wheels"
py=$work/venv/bin/python
if [ ! -x "$py" ]; then
  python3 -m venv "$work/venv" >/dev/null 2>&1 || { echo "SKIPPED: real models: python3 -m venv failed"; exit 0; }
fi
if ! "$py" -c 'import numpy, onnxruntime' 2>/dev/null; then
  if ! timeout 600 "$py" -m pip install -q numpy onnxruntime >/dev/null 2>&1; then
    echo "SKIPPED: real models: could not install numpy and onnxruntime from PyPI (offline?)"; exit 0
  fi
fi
fetch_wheel() { # name==version
  ls "$work/wheels/"*.whl 2>/dev/null | grep -qi "${1%%==*}" && return 0
  timeout 300 "$py" -m pip download -q --no-deps -d "$work/wheels" "$1" >/dev/null 2>&1
}
if ! fetch_wheel rapidocr-onnxruntime==1.4.4 || ! fetch_wheel magika==1.0.3; then
  echo "SKIPPED: real models: could not download the model wheels from PyPI"; exit 0
fi
(cd "$work/models" && for w in "$work"/wheels/*.whl; do
  "$py" - "$w" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if n.endswith(".onnx") and ("rapidocr_onnxruntime/models/" in n or "standard_v3_3/model.onnx" in n):
            open(n.rsplit("/", 1)[1], "wb").write(z.read(n))
PY
done)
helper=$root/scripts/real_models/gen_and_check.py
"$py" "$helper" gen "$work"

port=$((20000 + RANDOM % 20000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
start_workers() { # n
  for i in $(seq 1 "$1"); do
    "$bin" "${net[@]}" --data-dir "$work/node$i" node --listen 127.0.0.1:0 --workers 1 >"$work/node$i.log" 2>&1 &
    pids+=($!)
  done
}
stop_workers() { cleanup; pids=(); }
start_workers 3
status=0
for m in $("$py" "$helper" list); do
  file=$("$py" "$helper" file "$m")
  rm -rf "$work/$m/out" "$work/$m/results.jsonl"
  echo "== $m ($file, $(stat -c %s "$work/models/$file") bytes)"
  if ! "$bin" "${net[@]}" --data-dir "$work/me" batch --kind infer --model "$work/models/$file" \
      --inputs "$work/$m/inputs.jsonl" --out "$work/$m/results.jsonl" --out-dir "$work/$m/out" \
      --timeout 300 --wait 5000; then
    echo "FAIL: $m: batch failed"; status=1; continue
  fi
  "$py" "$helper" check "$work" "$m" || { echo "FAIL: $m differs from onnxruntime"; status=1; }
done

if [ "${P2PA_REAL_TIMING:-0}" = 1 ]; then
  echo
  echo "== time per inference, first case of each model (median of 20; one thread each)"
  for m in $("$py" "$helper" list); do
    file=$("$py" "$helper" file "$m")
    first=$(head -1 "$work/$m/inputs.jsonl" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["input"])')
    tract=$("$bin" model run "$work/models/$file" --input-file "$work/$m/$first" --repeat 20 --out-dir "$work/$m/local" 2>&1 >/dev/null | sed -n 's/.*median \([0-9.]*\) ms.*/\1/p')
    ort=$("$py" "$helper" time "$work" "$m" 20)
    echo "$m: tract $tract ms, onnxruntime $ort ms"
  done
  echo
  echo "== batch throughput: ppocr_det, 48 inputs of 1x3x320x320 (1.2 MB in, 0.4 MB out), over 1 and 3 workers"
  echo "   (steady: completions per second between the first and the last result; wall: the whole command,"
  echo "    discovery, model fetch and process start included)"
  "$py" - "$work" <<'PY'
import json, os, sys, numpy as np
d = os.path.join(sys.argv[1], "through"); os.makedirs(d, exist_ok=True)
rng = np.random.default_rng(3)
with open(os.path.join(d, "inputs.jsonl"), "w") as f:
    for i in range(48):
        np.save(os.path.join(d, f"x{i}.npy"), rng.random((1, 3, 320, 320), dtype=np.float32))
        f.write(json.dumps({"input": f"x{i}.npy"}) + "\n")
PY
  for n in 3 1; do
    stop_workers; start_workers "$n"; sleep 1
    rm -f "$work/through/r$n.jsonl"
    t0=$(date +%s.%N)
    "$bin" "${net[@]}" --data-dir "$work/me" batch --kind infer --model "$work/models/ch_PP-OCRv4_det_infer.onnx" \
      --inputs "$work/through/inputs.jsonl" --out "$work/through/r$n.jsonl" --timeout 300 --wait 5000 >/dev/null 2>"$work/through/log$n"
    t1=$(date +%s.%N)
    steady=$("$py" -c 'import json,sys; e=sorted(json.loads(l)["elapsed_ms"] for l in open(sys.argv[1])); print(f"{(len(e)-1)*1e3/(e[-1]-e[0]):.1f}")' "$work/through/r$n.jsonl")
    echo "$n worker(s): steady $steady inferences/s, wall $(echo "48 / ($t1 - $t0)" | bc -l | cut -c1-5) inferences/s ($(tail -1 "$work/through/log$n"))"
  done
fi
exit $status
