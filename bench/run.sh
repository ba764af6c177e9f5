#!/usr/bin/env bash
# Every benchmark behind BENCHMARKS.md, in one run on one machine:
#   bash bench/run.sh            → prints Markdown and writes target/bench-report.md
# Needs root for the network-namespace discovery figures (SKIPPED otherwise).
# About 35 minutes on 2 cores, 20 of them the 500- and 1 000-node simulation;
# P2PA_SCALE_SIZES=25,50,100 skips the big ones.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
report=target/bench-report.md
mkdir -p target

echo "building (release, with and without onnx)..." >&2
cargo build -q --release -p p2pa -p p2pa-bench
CARGO_TARGET_DIR=target/minimal cargo build -q --release -p p2pa --no-default-features
CARGO_TARGET_DIR=target/minimal cargo build -q --profile minimal -p p2pa --no-default-features
# The build meant for boards: static musl, size-optimised (memory rows).
board=target/minimal/minimal/p2pa
if rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 &&
  CARGO_TARGET_DIR=target/minimal cargo build -q --profile minimal --target x86_64-unknown-linux-musl -p p2pa --no-default-features; then
  board=target/minimal/x86_64-unknown-linux-musl/minimal/p2pa
else
  echo "SKIPPED: static musl build (target x86_64-unknown-linux-musl not installable); memory rows use $board" >&2
fi
# rust-libp2p doing the same job, in its own Cargo project (bench/libp2p):
# p2pa-bench rtt runs it interleaved with the floor and p2pa when it is built.
cargo build -q --release --manifest-path bench/libp2p/Cargo.toml ||
  echo "SKIPPED: the rust-libp2p echo (bench/libp2p) did not build; the round-trip table has no libp2p column" >&2
cargo test -q --release -p p2pa-node --test scale --no-run 2>/dev/null
python3 models/make_bench_model.py target/bench-mlp.onnx 2>/dev/null || echo "note: numpy/onnx missing; the ≥ 1 ms inference row will be SKIPPED" >&2
cargo test -q --release -p p2pa-tests --test netns --no-run 2>/dev/null

crates() { cargo tree -p p2pa -e normal --prefix none "$@" | sed 's/ (\*)//; s/ (proc-macro)//' | sort -u | wc -l; }
size() { stat -c %s "$1"; }

{
  echo "## Run of $(date -u +%Y-%m-%d) on $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
  echo
  echo "$(rustc -V); command: \`bash bench/run.sh\`"
  echo
  echo "### Signed round trip: p2pa vs the raw-TCP floor and rust-libp2p"
  echo
  ./target/release/p2pa-bench rtt --n 3000
  echo
  ./target/release/p2pa-bench handshake --n 500
  echo
  echo "### Memory (node built without onnx)"
  echo
  P2PA_BIN="$board" ./target/release/p2pa-bench memory --n 100000
  echo
  echo "### Size"
  echo
  echo "| binary | stripped size | crates (normal deps) | target |"
  echo "|---|---|---|---|"
  echo "| p2pa without onnx | $(size target/minimal/release/p2pa) bytes | $(crates --no-default-features) | ≤ 60 crates |"
  echo "| p2pa without onnx, \`--profile minimal\` (opt-level z) | $(size target/minimal/minimal/p2pa) bytes | $(crates --no-default-features) | |"
  echo "| p2pa with onnx (default) | $(size target/release/p2pa) bytes | $(crates) | |"
  echo
  if [ -f target/cross-sizes.md ]; then
    echo "The binaries a board runs, from the last \`scripts/cross.sh\` run (target ≤ 1.5 MiB for the static musl ones without inference):"
    echo
    cat target/cross-sizes.md
    echo
  else
    echo "SKIPPED: board binary sizes (run scripts/cross.sh first)"
    echo
  fi
  echo "Worker built with \`--profile minimal\` (requester side unchanged):"
  echo
  P2PA_BIN=target/minimal/minimal/p2pa ./target/release/p2pa-bench rtt --n 2000
  echo
  echo "### Inference"
  echo
  ./target/release/p2pa-bench infer
  echo
  echo "### Inference engines against Python onnxruntime (real models)"
  echo
  bash bench/engines.sh
  echo
  echo "### Discovery latency in network namespaces"
  echo
  P2PA_BIN="$PWD/target/release/p2pa" cargo test -q --release -p p2pa-tests --test netns -- --ignored --nocapture discovery_latency 2>/dev/null | grep -E '^\||SKIPPED'
  echo
  echo "### Scale (simulated with the deterministic core)"
  echo
  P2PA_SCALE_SIZES="${P2PA_SCALE_SIZES:-25,50,100,200,500,1000}" cargo test -q --release -p p2pa-node --test scale -- --ignored --nocapture 2>/dev/null | grep -E '^\|'
} | tee "$report"
echo "report written to $report" >&2
