#!/usr/bin/env bash
# What /metrics costs a node (issue 26: scraping 10 times a second under 1 %
# of a core): a node with two peers, idle, for a window without scrapes and
# then for the same window scraped 10 times a second; the node's CPU time
# (utime + stime from /proc) in each, as a share of one core.
# Usage: bash bench/metrics.sh   (P2PA_BIN: the binary; release by default;
#                                 P2PA_METRICS_WINDOW: seconds, 20 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${P2PA_BIN:-$PWD/target/release/p2pa}
window=${P2PA_METRICS_WINDOW:-20}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
port=$((20000 + RANDOM % 20000))
net=(--multicast-ttl 0 --no-mdns --multicast-port "$port")
"$bin" "${net[@]}" --data-dir "$work/n" node --listen 127.0.0.1:0 --metrics 127.0.0.1:0 --json > "$work/node.log" 2>/dev/null &
node=$!
for i in 1 2; do
  "$bin" "${net[@]}" --data-dir "$work/p$i" node --listen 127.0.0.1:0 --json > /dev/null 2>&1 &
done
for _ in $(seq 100); do grep -q listening "$work/node.log" 2>/dev/null && break; sleep 0.1; done
addr=$(head -1 "$work/node.log" | python3 -c 'import json,sys; print(json.load(sys.stdin)["metrics"])')
sleep 3 # the peers meet
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$node/stat"; }
a=$(cpu); sleep "$window"; b=$(cpu)
python3 - "$addr" "$window" <<'EOF' > "$work/scrapes"
import sys, time, urllib.request
addr, window = sys.argv[1], float(sys.argv[2])
n, size, end = 0, 0, time.monotonic() + window
while time.monotonic() < end:
    t = time.monotonic()
    size = len(urllib.request.urlopen(f"http://{addr}/metrics", timeout=5).read())
    n += 1
    time.sleep(max(0.0, 0.1 - (time.monotonic() - t)))
print(n, size)
EOF
c=$(cpu)
read -r scrapes size < "$work/scrapes"
echo "$(date -u +%F), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), window ${window} s"
echo
echo "| node | CPU time | share of one core |"
echo "|---|---|---|"
awk -v t="$ticks" -v w="$window" -v x="$((b - a))" 'BEGIN {printf "| idle, two peers | %.2f s | %.2f %% |\n", x / t, 100 * x / t / w}'
awk -v t="$ticks" -v w="$window" -v x="$((c - b))" -v n="$scrapes" -v s="$size" \
  'BEGIN {printf "| scraped %d times (%.1f/s, %d-byte page) | %.2f s | %.2f %% |\n", n, n / w, s, x / t, 100 * x / t / w}'
