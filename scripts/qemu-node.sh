#!/usr/bin/env bash
# The aarch64 board binary as a node under qemu-user, serving tasks that
# this host's p2pa sends over loopback: what a Pi does, minus the Pi.
#   scripts/qemu-node.sh BOARD_BINARY [HOST_P2PA]
# P2PA_BOARD_RUNNER replaces qemu-aarch64-static (" ": run it directly, for
# the x86_64 board binary).
# HOST_P2PA defaults to target/debug/p2pa (built if missing). qemu-user lacks
# the multicast socket options, so the node warns and runs without beacons;
# the requester names it with --peer.
set -uo pipefail
cd "$(dirname "$0")/.."
board=$1
host=${2:-target/debug/p2pa}
[ -x "$host" ] || cargo build -q -p p2pa || exit 1
dir=$(mktemp -d /tmp/p2pa-qemu-XXXXXX)
port=$((20000 + RANDOM % 20000))
runner=${P2PA_BOARD_RUNNER:-qemu-aarch64-static}
# shellcheck disable=SC2086 # the runner is a word, or nothing
$runner "$board" --multicast-ttl 0 --no-mdns --data-dir "$dir/board" \
  node --listen "127.0.0.1:$port" --json >"$dir/node.jsonl" 2>"$dir/node.err" &
pid=$!
stop() { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"; }
trap stop EXIT
for _ in $(seq 1 300); do
  grep -q '"listening"' "$dir/node.jsonl" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '"listening"' "$dir/node.jsonl"; then
  echo "FAILED: the board node ($board) did not start (runner: ${runner}):"
  cat "$dir/node.err"
  exit 1
fi
ok=1
for kind in echo hash; do
  out=$("$host" --multicast-ttl 0 --no-mdns --data-dir "$dir/host" \
    submit --peer "127.0.0.1:$port" --kind "$kind" --input hello-from-the-host --json --timeout 30)
  if echo "$out" | grep -q '"status":"completed"'; then
    echo "board node ($(basename "$(dirname "$(dirname "$board")")"), ${runner// /native}) ran $kind: $(echo "$out" | grep -o '"output":"[^"]*"' | head -n 1)"
  else
    echo "FAILED: $kind on the board node ($board): $out"
    ok=0
  fi
done
grep -i "warn" "$dir/node.err" | head -n 3
[ "$ok" = 1 ]
