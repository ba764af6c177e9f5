#!/usr/bin/env bash
# A batch over real workers of different speeds (issue 26: within 1.15x of
# the ideal finish time). Four local workers, one slot each, run a real
# audio model (aecmos, from scripts/real-models.sh): one fast, three 5x
# slower, both made so by --max-cpu-percent (the fast one FAST % of the
# machine, the slow ones FAST/5 %), so that together they leave the machine
# room for the requester and the nodes' own work.
#
# The ideal: every worker busy to the end, each at the speed it measured of
# itself in this same run (`status` work.speed, its mean run time per task):
# (N - 1) / sum(1 / mean_i). The measured: the wall time of the N-line batch
# less that of a 1-line batch on the same warm pool (start, discovery and
# the wait for more workers are in both). Also printed: each worker's share
# of the lines and who ran the last ones.
# Usage: bash bench/hetero.sh   (P2PA_BIN: the binary; release by default;
# P2PA_HETERO_LINES: N, 300; P2PA_HETERO_FAST: FAST, 25)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${P2PA_REAL_DIR:-$PWD/target/real-models}
bin=${P2PA_BIN:-$PWD/target/release/p2pa}
py=$work/venv/bin/python
lines=${P2PA_HETERO_LINES:-300}
fast=${P2PA_HETERO_FAST:-25}
slow=$((fast / 5))
model=$work/models/aecmos.onnx
if [ ! -x "$py" ] || [ ! -f "$model" ] || [ ! -f "$work/aecmos/in1.npz" ]; then
  echo "SKIPPED: heterogeneous batch: run scripts/real-models.sh first (it fetches the model and its input)"
  exit 0
fi
d=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$d"; }
trap cleanup EXIT
echo "$(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); aecmos, $lines lines; workers at $fast % and 3 x $slow % of the machine"
echo
cp "$work/aecmos/in1.npz" "$d/in.npz"
for _ in $(seq "$lines"); do echo '{"input": "in.npz"}'; done > "$d/all.jsonl"
head -1 "$d/all.jsonl" > "$d/one.jsonl"
head -8 "$d/all.jsonl" > "$d/warm.jsonl"
for w in fast slow1 slow2 slow3; do
  pct=$slow; [ "$w" = fast ] && pct=$fast
  "$bin" "${net[@]}" --data-dir "$d/$w" node --listen 127.0.0.1:0 --workers 1 --engine tract \
    --max-cpu-percent "$pct" >/dev/null 2>&1 &
  pids+=($!)
done
for w in fast slow1 slow2 slow3; do
  for _ in $(seq 50); do [ -S "$d/$w/p2pa.sock" ] && break; sleep 0.1; done
done
batch() { # inputs out: wall seconds of the batch command
  local s e
  s=$(date +%s.%N)
  "$bin" "${net[@]}" --data-dir "$d/me" batch --kind infer --model "$model" --inputs "$d/$1" \
    --out "$d/$2" --timeout 300 --wait 5000 --concurrency 16 >/dev/null 2>&1 || true
  e=$(date +%s.%N)
  awk -v a="$s" -v b="$e" 'BEGIN {printf "%.3f", b - a}'
}
# Warm: the model travels to every worker and each child loads it (twice,
# so each has run it at least once).
batch warm.jsonl w1.jsonl >/dev/null
batch warm.jsonl w2.jsonl >/dev/null
t1=$(batch one.jsonl r1.jsonl)
tn=$(batch all.jsonl rn.jsonl)
for w in fast slow1 slow2 slow3; do
  "$bin" --data-dir "$d/$w" status --json > "$d/$w.status" 2>/dev/null || echo '{}' > "$d/$w.status"
done
FAST=$fast SLOW=$slow "$py" - "$d" "$lines" "$t1" "$tn" <<'PY'
import collections, json, os, sys
d, n, t1, tn = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
names, mean = {}, {}
for w in ("fast", "slow1", "slow2", "slow3"):
    s = json.load(open(os.path.join(d, w + ".status")))
    names[s.get("node_id")] = w
    speed = [x for x in s.get("work", {}).get("speed", []) if x.get("kind") == "infer"]
    mean[w] = speed[0]["mean_ms"] if speed else float("nan")
rows = [json.loads(l) for l in open(os.path.join(d, "rn.jsonl"))]
once = collections.Counter(r["line"] for r in rows)
ok = len(once) == n and max(once.values()) == 1 and all(r["status"] == "completed" for r in rows)
split = collections.Counter(names.get(r.get("worker"), "?") for r in rows)
rate = sum(1e3 / m for m in mean.values())
ideal = (n - 1) / rate
measured = tn - t1
print("| worker | --max-cpu-percent | its mean run time (status) | lines run |")
print("|---|---|---|---|")
for w in ("fast", "slow1", "slow2", "slow3"):
    pct = os.environ.get("FAST") if w == "fast" else os.environ.get("SLOW")
    print(f"| {w} | {pct} | {mean[w]:.1f} ms | {split.get(w, 0)} |")
print()
print(f"| lines | each once, all completed | {n} lines (s) | 1 line (s) | measured: difference (s) | ideal (N-1)/sum(1/mean) (s) | ratio |")
print("|---|---|---|---|---|---|---|")
print(f"| {n} | {'yes' if ok else 'NO'} | {tn:.2f} | {t1:.2f} | {measured:.2f} | {ideal:.2f} | {measured / ideal:.2f} |")
print()
print("last 8 results by worker (journal order):", " ".join(names.get(r.get("worker"), "?") for r in rows[-8:]))
PY
