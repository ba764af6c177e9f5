#!/usr/bin/env bash
# The firmware worker's numbers (issue 27): flash and static RAM of the
# image, its stack high-water mark after a handshake and 100 tasks, and
# instructions per handshake and per 64-byte hash task, under
# `qemu-system-arm -icount shift=0` (one instruction per nanosecond of
# virtual time; SysTick runs at the MPS2's 25 MHz, so a tick is 40
# instructions), converted to milliseconds at 168 MHz and one instruction
# per cycle.
#   bash bench/firmware.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-system-arm >/dev/null || { echo "SKIPPED: qemu-system-arm is not installed (apt-get install qemu-system-arm)"; exit 0; }
command -v llvm-size >/dev/null || { echo "SKIPPED: llvm-size is not installed (apt-get install llvm)"; exit 0; }
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
(cd firmware && cargo build -q --release)
cargo build -q -p p2pa
elf=firmware/target/thumbv7em-none-eabihf/release/p2pa-firmware
p2pa=target/debug/p2pa
work=$(mktemp -d)
trap 'kill "$qemu" 2>/dev/null || true; rm -rf "$work"' EXIT
llvm-size -A "$elf" | awk '$1 ~ /^\.(vector_table|text|rodata|data|bss|uninit)$/ {print}' > "$work/size"
flash=$(awk '$1 ~ /^\.(vector_table|text|rodata|data)$/ {s += $2} END {print s}' "$work/size")
ram=$(awk '$1 ~ /^\.(data|bss|uninit)$/ {s += $2} END {print s}' "$work/size")
port=$((20000 + RANDOM % 20000))
qemu-system-arm -machine mps2-an386 -nographic -monitor none -icount shift=0 \
  -serial "tcp:127.0.0.1:$port,server,nowait" -serial "file:$work/log" -kernel "$elf" &
qemu=$!
for _ in $(seq 50); do grep -q 'node ' "$work/log" 2>/dev/null && break; sleep 0.1; done
net=(--multicast-ttl 0 --no-mdns --multicast-port $((port + 1)))
x64=$(printf 'x%.0s' $(seq 64))
"$p2pa" "${net[@]}" submit --kind hash --input "$x64" --peer "127.0.0.1:$port" >/dev/null
for _ in $(seq 100); do echo "\"$x64\""; done > "$work/in.jsonl"
"$p2pa" "${net[@]}" batch --kind hash --inputs "$work/in.jsonl" --out "$work/out.jsonl" \
  --peer "127.0.0.1:$port" --concurrency 1 >/dev/null 2>&1
"$p2pa" verify "$work/out.jsonl" | tail -1
for _ in $(seq 50); do grep -q '^session 2' "$work/log" && break; sleep 0.1; done
cat "$work/log"
one=$(awk '/^session 1:/ {for (i = 1; i <= NF; i++) if ($i == "busy") print $(i + 1)}' "$work/log")
hundred=$(awk '/^session 2:/ {for (i = 1; i <= NF; i++) if ($i == "busy") print $(i + 1)}' "$work/log")
stack=$(awk '/^session 2:/ {for (i = 1; i <= NF; i++) if ($i == "stack") print $(i + 1)}' "$work/log")
python3 - "$flash" "$ram" "$stack" "$one" "$hundred" <<'PY'
import sys
flash, ram, stack, one, hundred = map(int, sys.argv[1:])
per_task = (hundred - one) / 99 * 40
handshake = one * 40 - per_task
ms = lambda instr: instr / 168e6 * 1e3
print(f"| flash (.vector_table + .text + .rodata + .data) | {flash} B ({flash / 1024:.1f} KiB) | target 64 KiB |")
print(f"| static RAM (.data + .bss) | {ram} B | |")
print(f"| stack high-water, a handshake and 100 tasks | {stack} B | |")
print(f"| static RAM + stack | {ram + stack} B ({(ram + stack) / 1024:.1f} KiB) | target 16 KiB |")
print(f"| handshake | {handshake / 1e6:.2f} M instructions = {ms(handshake):.1f} ms at 168 MHz | target 50 ms |")
print(f"| 64-byte hash task | {per_task / 1e6:.2f} M instructions = {ms(per_task):.1f} ms at 168 MHz | target 10 ms |")
PY
