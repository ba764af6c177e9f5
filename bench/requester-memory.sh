#!/usr/bin/env bash
# The requester's memory over a long batch: one `p2pa node --workers 1` on
# loopback (TTL 0), then `p2pa batch --out-dir` of PP-OCRv4 detection
# (1x3x320x320 f32 in, 400 KB out a line) with 100 lines and with N lines
# (default 1000) over the same 8 input files; prints the requester's peak
# RSS, minor faults and CPU for each and the RSS growth per extra line (it
# should be about zero: a batch of a million lines must fit where one of a
# hundred does). Bounded: each batch has a 300 s timeout per task, and the
# lines are counted.
#
#   bench/requester-memory.sh [N]     (run scripts/real-models.sh first)
# P2PA_BIN picks the binary (default target/release/p2pa).
set -u
cd "$(dirname "$0")/.."
n=${1:-1000}
P=${P2PA_BIN:-target/release/p2pa}
W=target/real-models
model=$W/models/ch_PP-OCRv4_det_infer.onnx
[ -f "$model" ] && [ -x "$W/venv/bin/python" ] || { echo "SKIPPED: $model missing; run scripts/real-models.sh first"; exit 0; }
D=$(mktemp -d /tmp/p2pa-requester-memory-XXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$D"' EXIT
port=$((30000 + RANDOM % 5000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
"$W/venv/bin/python" - "$D" <<'PY'
import numpy as np, sys
rng = np.random.default_rng(7)
for i in range(8):
    np.save(f"{sys.argv[1]}/det{i}.npy", rng.random((1, 3, 320, 320), dtype=np.float32))
PY
lines() { for i in $(seq 0 $(($1 - 1))); do echo "{\"input\": \"det$((i % 8)).npy\"}"; done > "$D/in$1.jsonl"; }
"$P" "${net[@]}" --data-dir "$D/w" node --listen 127.0.0.1:0 --workers 1 >"$D/w.log" 2>&1 &
pid=$!
sleep 1
batch() { # lines: prints "peak_kb faults user+sys_s completed"
  rm -rf "$D/r.jsonl" "$D/outs"
  /usr/bin/time -f '%M %R %U %S' -o "$D/time" "$P" "${net[@]}" --data-dir "$D/me" batch --kind infer --model "$model" \
    --inputs "$D/in$1.jsonl" --out "$D/r.jsonl" --timeout 300 --wait 3000 --concurrency 8 --out-dir "$D/outs" >/dev/null 2>"$D/err"
  read -r kb faults u s < <(tail -1 "$D/time")
  echo "$kb $faults $(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }') $(grep -c '"completed"' "$D/r.jsonl")"
}
lines 100; lines "$n"
batch 100 >/dev/null # warm-up: the model travels to the worker and loads
read -r kb1 f1 c1 ok1 < <(batch 100)
read -r kb2 f2 c2 ok2 < <(batch "$n")
echo "| lines | completed | requester peak RSS | minor faults | requester CPU |"
echo "|---|---|---|---|---|"
echo "| 100 | $ok1 | $((kb1 / 1024)) MiB | $f1 | ${c1} s |"
echo "| $n | $ok2 | $((kb2 / 1024)) MiB | $f2 | ${c2} s |"
echo
echo "RSS growth per line beyond the first 100: $(( (kb2 - kb1) / (n - 100) )) KiB"
[ "$ok1" = 100 ] && [ "$ok2" = "$n" ] || { echo "FAILED: not every line completed ($D/err: $(tail -1 "$D/err"))"; exit 1; }
