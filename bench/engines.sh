#!/usr/bin/env bash
# The inference engines against Python onnxruntime, on the real models of
# scripts/real-models.sh (run it first: it fetches the wheels, the venv and
# the inputs into target/real-models). Prints Markdown:
#   1. time per inference, one thread, same input, back to back: p2pa's
#      `model run --engine tract|onnxruntime` vs Python onnxruntime;
#   2. a batch over local workers, one per core (`--workers 1` each), with
#      each engine, after a warm-up batch (the model is on the workers and
#      loaded): inferences/s over the whole `p2pa batch` command (its start,
#      discovery and its wait of up to 300 ms for more workers included) vs the
#      machine's ideal (Python onnxruntime's single-thread rate x cores);
#   3. CPU per task of p2pa's own processes in that batch (the requester and
#      the worker nodes, the inference children excluded) vs the children's.
# Usage: bash bench/engines.sh   (P2PA_BIN: the binary; release by default;
#   P2PA_ENGINES_PART=pool: the batch table alone; P2PA_ENGINES_BATCHES="ppocr_det"
#   and P2PA_ENGINES_ENGINES=onnxruntime: only those rows of it)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${P2PA_REAL_DIR:-$PWD/target/real-models}
bin=${P2PA_BIN:-$PWD/target/release/p2pa}
py=$work/venv/bin/python
helper=scripts/real_models/gen_and_check.py
if [ ! -x "$py" ] || ! "$py" -c 'import onnxruntime' 2>/dev/null || [ ! -f "$work/nudenet/inputs.jsonl" ]; then
  echo "SKIPPED: engine benchmarks: run scripts/real-models.sh first (it fetches the models and onnxruntime)"
  exit 0
fi
ortlib=$("$py" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[-1])')
cores=$(nproc)
tract=$("$bin" model run models/ppocr_cls.onnx --engine tract --input-file models/ppocr_cls_input.npy --json 2>/dev/null | "$py" -c 'import json,sys; print(json.load(sys.stdin)["engine_version"])' 2>/dev/null || echo '?')
echo "onnxruntime $("$py" -c 'import onnxruntime; print(onnxruntime.__version__)') ($ortlib), tract $tract, $cores cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
if [ "${P2PA_ENGINES_PART:-all}" != pool ]; then  # P2PA_ENGINES_PART=pool: the batch table alone
echo "| model (first case) | Python onnxruntime ms | p2pa onnxruntime ms | ratio | p2pa tract ms | ratio |"
echo "|---|---|---|---|---|---|"
median() { # model-file input engine
  "$bin" model run "$1" --engine "$3" --onnxruntime-lib "$ortlib" --input-file "$2" --repeat 21 --json 2>/dev/null \
    | "$py" -c 'import json,sys; print("%.2f" % json.load(sys.stdin)["median_ms"])' 2>/dev/null || echo "-"
}
for m in $("$py" "$helper" list); do
  file=$work/models/$("$py" "$helper" file "$m")
  first=$work/$m/$(head -1 "$work/$m/inputs.jsonl" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["input"])')
  # Interleaved: Python, p2pa onnxruntime, tract, Python again (the median of both Python runs).
  p1=$("$py" "$helper" time "$work" "$m" 20)
  o=$(median "$file" "$first" onnxruntime)
  t=$(median "$file" "$first" tract)
  p2=$("$py" "$helper" time "$work" "$m" 20)
  "$py" - "$m" "$p1" "$p2" "$o" "$t" <<'PY'
import sys
m, p1, p2, o, t = sys.argv[1:]
p = (float(p1) + float(p2)) / 2
def r(x):
    return f"{float(x) / p:.2f}" if x != "-" else "fails (see real-models.sh)"
print(f"| {m} | {p:.2f} | {o} | {r(o)} | {t} | {r(t)} |")
PY
done
fi
echo

# A batch over `cores` local workers; CPU from /proc for each process.
port=$((20000 + RANDOM % 20000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
ticks() { # pid...: utime+stime in clock ticks, summed
  local s=0
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    s=$((s + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$s"
}
children() { for p in "$@"; do pgrep -P "$p" || true; done; }
d=$work/through; mkdir -p "$d"
"$py" - "$d" <<'PY'
import json, os, sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(3)
# 384 lines over 96 files (each named four times), so the command's start,
# discovery and its wait (up to 300 ms) for more workers weigh little.
for i in range(96):
    np.save(os.path.join(d, f"det{i}.npy"), rng.random((1, 3, 320, 320), dtype=np.float32))
with open(os.path.join(d, "det.jsonl"), "w") as f:
    for i in range(384):
        f.write(json.dumps({"input": f"det{i % 96}.npy"}) + "\n")
# AECMOS (audio quality: a GRU over spectrogram frames, its hidden state an
# input), 384 lines over 96 files, as for PP-OCR.
for i in range(96):
    np.savez(os.path.join(d, f"aec{i}.npz"), input=rng.random((1, 3, 200, 160), dtype=np.float32),
             h0=np.zeros((4, 1, 96), np.float32))
with open(os.path.join(d, "aec.jsonl"), "w") as f:
    for i in range(384):
        f.write(json.dumps({"input": f"aec{i % 96}.npz"}) + "\n")
with open(os.path.join(d, "enc.jsonl"), "w") as f:
    for i in range(1024):
        ids = rng.integers(1000, 30000, (1, 9)).astype(np.int64); ids[:, 0], ids[:, -1] = 101, 102
        np.savez(os.path.join(d, f"enc{i}.npz"), input_ids=ids, attention_mask=np.ones((1, 9), np.int64), token_type_ids=np.zeros((1, 9), np.int64))
        f.write(json.dumps({"input": f"enc{i}.npz"}) + "\n")
PY
# The job floor: what a line's bytes cost any implementation on one machine,
# the wire's cryptography (AEAD both ways, SHA-256 at both ends) and the
# copies (loopback TCP, the pipes to the inference process, the files);
# `p2pa-bench job-floor`. The ideal is the definition's (single-thread rate
# x cores); "at once" is Python onnxruntime measured in one process per core
# running together, what the cores really give when all are busy.
benchbin=${P2PA_BENCH_BIN:-$PWD/target/release/p2pa-bench}
echo "| batch over $cores local workers | engine | lines | inferences/s (whole command) | ideal ($cores x Python onnxruntime, one line per run) | ratio | Python onnxruntime, $cores processes at once | ratio | p2pa CPU per line (requester + nodes) | engine CPU per line | p2pa / engine | job floor per line (crypto + copies) | floor / engine | p2pa / floor |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
# The fifth field: outputs as JSON in the results file (json) or as .npy
# files (--out-dir, what a user with image-sized outputs writes).
for job in "ppocr_det det ch_PP-OCRv4_det_infer.onnx 1 json" "ppocr_det det ch_PP-OCRv4_det_infer.onnx 1 npy" \
    "minilm_int8 enc minilm_int8.onnx 1 json" "minilm_int8 enc minilm_int8.onnx 32 json" \
    "aecmos aec aecmos.onnx 1 json"; do
  set -- $job
  m=$1 inputs=$d/$2.jsonl model=$work/models/$3 bs=$4 outs=()
  [ "$5" = npy ] && outs=(--out-dir "$d/outs")
  case " ${P2PA_ENGINES_BATCHES:-$m} " in *" $m "*) ;; *) continue ;; esac
  pms=$("$py" "$helper" time "$work" "$m" 20)
  # The median ms of each of $cores processes timing at once (bounded: 60 runs each).
  cms=$(for i in $(seq 1 "$cores"); do "$py" "$helper" time "$work" "$m" 60 & done; wait)
  for engine in ${P2PA_ENGINES_ENGINES:-onnxruntime tract}; do
    cleanup; pids=()
    for i in $(seq 1 "$cores"); do
      "$bin" "${net[@]}" --data-dir "$d/node$i" node --listen 127.0.0.1:0 --workers 1 --engine "$engine" \
        --onnxruntime-lib "$ortlib" >/dev/null 2>&1 &
      pids+=($!)
    done
    sleep 1
    # A warm-up batch: the model travels to the workers and each child loads it.
    "$bin" "${net[@]}" --data-dir "$d/me" batch --kind infer --model "$model" --inputs "$inputs" \
      --out "$d/warm.jsonl" --timeout 300 --wait 5000 --concurrency 8 --batch-size "$bs" >/dev/null 2>&1 || true
    rm -f "$d/warm.jsonl" "$d/r.jsonl"
    kids=$(children "${pids[@]}")
    n0=$(ticks "${pids[@]}"); c0=$(ticks $kids)
    /usr/bin/time -f '%U %S %e' -o "$d/req.time" "$bin" "${net[@]}" --data-dir "$d/me" batch --kind infer --model "$model" \
      --inputs "$inputs" --out "$d/r.jsonl" --timeout 300 --wait 5000 --concurrency 8 --batch-size "$bs" "${outs[@]}" >/dev/null 2>&1 || true
    rm -rf "$d/outs"
    req=$(tail -1 "$d/req.time")
    n1=$(ticks "${pids[@]}"); c1=$(ticks $kids)
    "$py" - "$d/r.jsonl" "$m" "$engine" "$pms" "$cores" "$req" "$((n1 - n0))" "$((c1 - c0))" "$bs" "$5" "$inputs" "$benchbin" "$cms" <<'PY'
import json, os, subprocess, sys
path, m, engine, pms, cores, req, nodes, kids, bs, outs, inputs, benchbin, cms = sys.argv[1:]
lines = [json.loads(l) for l in open(path)]
ok = [l for l in lines if l.get("status") == "completed"]
u, s, wall = (float(x) for x in req.split())
steady = len(ok) / wall
ideal = int(cores) * 1e3 / float(pms)
together = sum(1e3 / float(x) for x in cms.split())
reqms, nodems = (u + s) * 1e3, int(nodes) * 10.0  # ms; /proc ticks are 10 ms
own = reqms + nodems
eng = int(kids) * 10.0
n = max(len(ok), 1)
label = m if bs == "1" else f"{m}, --batch-size {bs}"
label += ", --out-dir" if outs == "npy" else ""
# A line's bytes: its input file's size, its output's length in the receipt.
names = [json.loads(l)["input"] for l in open(inputs)]
in_len = sum(os.path.getsize(os.path.join(os.path.dirname(inputs), f)) for f in names) // max(len(names), 1)
outs_len = [l["receipt"].get("output_blob_len") or len(l["receipt"].get("output_inline_hex", "")) // 2 for l in ok]
out_len = sum(outs_len) // max(len(outs_len), 1) // int(bs)  # a stacked task's output, per line
try:
    # "TOTAL crypto C copies K (tcp T pipe P file F)"
    f = subprocess.run([benchbin, "job-floor", "--input", str(in_len), "--output", str(out_len)],
                       capture_output=True, text=True, check=True).stdout.split()
    floor, crypto, copies = float(f[0]), float(f[2]), float(f[4])
    floor_cols = f"{floor:.2f} ms ({crypto:.2f} + {copies:.2f}) | {floor * n / max(eng, 1e-9):.2f} | {own / n / max(floor, 1e-9):.1f}"
except (OSError, ValueError, IndexError, subprocess.CalledProcessError):
    floor_cols = "- (build p2pa-bench) | - | -"
print(f"| {label} | {engine} | {len(ok)}/{len(lines)} | {steady:.1f} | {ideal:.1f} | {steady / ideal:.2f} | {together:.1f} | {steady / together:.2f} | {own / n:.2f} ms ({reqms / n:.2f} + {nodems / n:.2f}) | {eng / n:.2f} ms | {own / max(eng, 1e-9):.2f} | {floor_cols} |")
PY
  done
done
