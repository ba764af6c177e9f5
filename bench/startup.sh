#!/usr/bin/env bash
# How long a short job takes from the command's start to its exit: one
# `p2pa node --workers 1` on loopback (TTL 0), then N (default 12) runs back
# to back of `p2pa batch` with one echo line and of `p2pa submit --kind
# echo`, each a new requester (discovery, session, the task, goodbye).
# Prints min / median / max wall seconds of each. Bounded: N runs, each
# with --wait 3000 and --timeout 30.
#
#   bench/startup.sh [N]     (P2PA_BIN picks the binary; default target/release/p2pa)
set -u
cd "$(dirname "$0")/.."
n=${1:-12}
P=${P2PA_BIN:-target/release/p2pa}
D=$(mktemp -d /tmp/p2pa-startup-XXXX)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$D"' EXIT
port=$((30000 + RANDOM % 5000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
"$P" "${net[@]}" --data-dir "$D/w" node --listen 127.0.0.1:0 --workers 1 >"$D/w.log" 2>&1 &
pid=$!
sleep 1
echo '"hello"' >"$D/in.jsonl"
stats() { sort -n | awk '{ a[NR] = $1 } END { printf "%.2f / %.2f / %.2f s", a[1], a[int((NR + 1) / 2)], a[NR] }'; }
failed=0
batch=$(for i in $(seq 1 "$n"); do
  rm -f "$D/r.jsonl"
  /usr/bin/time -f '%e' -o "$D/t" "$P" "${net[@]}" --data-dir "$D/me" batch --kind echo --inputs "$D/in.jsonl" \
    --out "$D/r.jsonl" --wait 3000 --timeout 30 >/dev/null 2>&1 || echo "batch run $i failed" >&2
  tail -1 "$D/t"
done | stats)
submit=$(for i in $(seq 1 "$n"); do
  /usr/bin/time -f '%e' -o "$D/t" "$P" "${net[@]}" --data-dir "$D/me" submit --kind echo --input hello \
    --wait 3000 --timeout 30 >/dev/null 2>&1 || echo "submit run $i failed" >&2
  tail -1 "$D/t"
done | stats)
echo "| command, $n runs back to back | min / median / max |"
echo "|---|---|"
echo "| \`p2pa batch\`, one echo line | $batch |"
echo "| \`p2pa submit --kind echo\` | $submit |"
