#!/usr/bin/env bash
# Worker memory while 8 requesters each send a 10 MB input at once: one
# `p2pa node --workers 2` on loopback (TTL 0), 8 `p2pa submit` processes
# started together; prints the node process's peak RSS (VmHWM) and the
# largest inference child seen. Bounded: each submit has a 300 s timeout.
#
#   bench/worker-memory.sh hash|echo     (10 MB of random bytes)
#   bench/worker-memory.sh infer         (PP-OCRv4 det, 1x3x1024x832 f32;
#                                         run scripts/real-models.sh first)
# P2PA_BIN picks the binary (default target/release/p2pa); extra node flags
# in NODE_FLAGS (e.g. "--input-buffer-mb 16").
set -u
cd "$(dirname "$0")/.."
kind=${1:-infer}
P=${P2PA_BIN:-target/release/p2pa}
D=$(mktemp -d /tmp/p2pa-worker-memory-XXXX)
trap 'kill $pid 2>/dev/null; rm -rf "$D"' EXIT
port=$((30000 + RANDOM % 5000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
"$P" "${net[@]}" --data-dir "$D/w" node --listen 127.0.0.1:0 --workers 2 ${NODE_FLAGS:-} >"$D/w.log" 2>&1 &
pid=$!
sleep 1
args=(--kind "$kind")
if [ "$kind" = infer ]; then
  model=target/real-models/models/ch_PP-OCRv4_det_infer.onnx
  [ -f "$model" ] || { echo "SKIPPED: $model missing; run scripts/real-models.sh first"; exit 0; }
  target/real-models/venv/bin/python -c "import numpy as np; np.save('$D/in.npy', np.random.default_rng(5).random((1,3,1024,832),dtype=np.float32))"
  "$P" --data-dir "$D/w" model add "$model" >/dev/null
  args+=(--model "$model" --input-file "$D/in.npy")
else
  head -c $((10 * 1024 * 1024)) /dev/urandom >"$D/in.bin"
  args+=(--input-file "$D/in.bin")
fi
subs=()
for r in 1 2 3 4 5 6 7 8; do
  "$P" "${net[@]}" --data-dir "$D/r$r" submit "${args[@]}" --out-dir "$D/o$r" --timeout 300 --json >"$D/r$r.json" 2>"$D/r$r.err" &
  subs+=($!)
done
running() { for s in "${subs[@]}"; do kill -0 "$s" 2>/dev/null && return 0; done; return 1; }
child=0
for _ in $(seq 1 3000); do   # at most 10 minutes of 0.2 s samples
  running || break
  for c in $(pgrep -P "$pid"); do
    v=$(awk '/VmRSS/ {print $2}' "/proc/$c/status" 2>/dev/null)
    [ -n "$v" ] && [ "$v" -gt "$child" ] && child=$v
  done
  sleep 0.2
done
wait "${subs[@]}" 2>/dev/null
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
ok=$(grep -l '"completed"' "$D"/r*.json | wc -l)
echo "$kind: worker node peak $((hwm / 1024)) MiB; largest inference child $((child / 1024)) MiB; completed $ok/8"
